package mssql

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chatdr/chatdr/sim/mssql/tds"
	bolt "go.etcd.io/bbolt"
)

// Backup files hold one or more backup sets (BACKUP appends unless INIT or
// FORMAT). Each set is:
//
//	"CHDRBAK1" | u32 header length | header JSON | u64 content length |
//	content (JSON, gzip when COMPRESSION) | SHA-256(header|content)
//
// The content of a full backup is a snapshot of the tables and rows; that of
// a log backup is the log entries since the previous log backup (wal.go).
const backupMagic = "CHDRBAK1"

// backupHeader is one backup set's header (RESTORE HEADERONLY).
type backupHeader struct {
	BackupType        int      `json:"backup_type"` // 1 full, 2 log
	DatabaseName      string   `json:"database_name"`
	ServerName        string   `json:"server_name"`
	FirstLSN          uint64   `json:"first_lsn"`
	LastLSN           uint64   `json:"last_lsn"`
	CheckpointLSN     uint64   `json:"checkpoint_lsn"`
	DatabaseBackupLSN uint64   `json:"database_backup_lsn"`
	RecoveryForkID    tds.GUID `json:"recovery_fork_id"`
	// FirstRecoveryForkID is the fork at FirstLSN; it differs from
	// RecoveryForkID when the backup spans a recovery at ForkPointLSN.
	FirstRecoveryForkID tds.GUID  `json:"first_recovery_fork_id"`
	ForkPointLSN        uint64    `json:"fork_point_lsn,omitempty"`
	BackupStartDate     time.Time `json:"backup_start_date"`
	BackupFinishDate    time.Time `json:"backup_finish_date"`
	DatabaseCreated     time.Time `json:"database_created"`
	IsCopyOnly          bool      `json:"is_copy_only"`
	Compressed          bool      `json:"compressed"`
	HasChecksums        bool      `json:"has_checksums"`
	BeginsLogChain      bool      `json:"begins_log_chain"`
	RecoveryModel       string    `json:"recovery_model"`
	BackupSetGUID       tds.GUID  `json:"backup_set_guid"`
	BackupSize          int64     `json:"backup_size"`
	DataFile            string    `json:"data_file"`
	LogFile             string    `json:"log_file"`
}

// snapshot is the content of a backup.
type snapshot struct {
	Tables []snapTable `json:"tables"`
}

type snapTable struct {
	Meta tableMeta `json:"meta"`
	Rows []snapRow `json:"rows"`
}

type snapRow struct {
	ID   uint64    `json:"id"`
	Vals []*string `json:"vals"`
}

// backupSet is a decoded backup set.
type backupSet struct {
	hdr     backupHeader
	content []byte // decompressed snapshot JSON
}

func takeSnapshot(d *database) ([]byte, error) {
	var s snapshot
	for _, t := range d.tables {
		st := snapTable{Meta: t.tableMeta}
		for _, r := range t.rows {
			enc := make([]*string, len(r.vals))
			for i, v := range r.vals {
				enc[i] = encodeValue(v)
			}
			st.Rows = append(st.Rows, snapRow{ID: r.id, Vals: enc})
		}
		s.Tables = append(s.Tables, st)
	}
	return json.Marshal(s)
}

func loadSnapshot(b []byte) (map[string]*table, error) {
	var s snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	out := map[string]*table{}
	for _, st := range s.Tables {
		t := &table{tableMeta: st.Meta}
		if err := t.prepare(); err != nil {
			return nil, err
		}
		for _, sr := range st.Rows {
			r := &row{id: sr.ID, vals: make([]any, len(t.Cols))}
			for i, c := range t.Cols {
				if i < len(sr.Vals) {
					v, err := decodeValue(sr.Vals[i], c.Type)
					if err != nil {
						return nil, err
					}
					r.vals[i] = v
				}
			}
			t.rows = append(t.rows, r)
		}
		out[t.key()] = t
	}
	return out, nil
}

// loadLogContent decodes the content of a log backup.
func loadLogContent(b []byte) ([]logEntry, error) {
	var c logContent
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	return c.Entries, nil
}

// checkContent decodes a backup set's content (RESTORE VERIFYONLY).
func checkContent(s backupSet) error {
	if s.hdr.BackupType == 2 {
		_, err := loadLogContent(s.content)
		return err
	}
	_, err := loadSnapshot(s.content)
	return err
}

// backupFailed joins the cause with 3013 "<what> is terminating abnormally.".
func backupFailed(what string, cause error) error {
	return errors.Join(cause, sqlErr(3013, what))
}

func cannotOpenDevice(path string, err error) *tds.Error {
	code, text := 5, "Access is denied."
	switch {
	case errors.Is(err, fs.ErrNotExist):
		code, text = 2, "The system cannot find the file specified."
		if _, serr := os.Stat(filepath.Dir(path)); serr != nil {
			code, text = 3, "The system cannot find the path specified."
		}
	case errors.Is(err, fs.ErrPermission):
	default:
		code, text = 1117, "The request could not be performed because of an I/O device error."
	}
	return sqlErr(3201, path, code, text)
}

// writeBackupSet writes (or appends) a backup set and fsyncs it.
func writeBackupSet(path string, hdr backupHeader, content []byte, init bool) error {
	if hdr.Compressed {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(content)
		_ = zw.Close()
		content = buf.Bytes()
	}
	hb, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.WriteString(backupMagic)
	_ = binary.Write(&b, binary.LittleEndian, uint32(len(hb)))
	b.Write(hb)
	_ = binary.Write(&b, binary.LittleEndian, uint64(len(content)))
	b.Write(content)
	sum := sha256.New()
	sum.Write(hb)
	sum.Write(content)
	b.Write(sum.Sum(nil))
	flags := os.O_WRONLY | os.O_CREATE
	if init {
		flags |= os.O_TRUNC
	} else {
		flags |= os.O_APPEND
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// readBackupSets reads and verifies every backup set of a file. what names
// the statement for 3013.
func readBackupSets(path, what string) ([]backupSet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, backupFailed(what, cannotOpenDevice(path, err))
	}
	malformed := backupFailed(what, sqlErr(3241, path))
	eof := backupFailed(what, sqlErr(3203, path))
	if len(data) == 0 {
		return nil, malformed
	}
	var sets []backupSet
	for len(data) > 0 {
		if len(data) < len(backupMagic)+4 {
			return nil, eof
		}
		if string(data[:len(backupMagic)]) != backupMagic {
			return nil, malformed
		}
		data = data[len(backupMagic):]
		hl := int(binary.LittleEndian.Uint32(data))
		data = data[4:]
		if len(data) < hl+8 {
			return nil, eof
		}
		hb := data[:hl]
		data = data[hl:]
		cl := binary.LittleEndian.Uint64(data)
		data = data[8:]
		if uint64(len(data)) < sha256.Size || cl > uint64(len(data))-sha256.Size { // cl+Size may overflow
			return nil, eof
		}
		content := data[:cl]
		want := data[cl : cl+sha256.Size]
		data = data[cl+sha256.Size:]
		var hdr backupHeader
		if err := json.Unmarshal(hb, &hdr); err != nil {
			return nil, malformed
		}
		sum := sha256.New()
		sum.Write(hb)
		sum.Write(content)
		if !bytes.Equal(sum.Sum(nil), want) {
			return nil, backupFailed(what, sqlErr(3183, 1+len(sets)*8, hdr.DatabaseName))
		}
		if hdr.Compressed {
			zr, err := gzip.NewReader(bytes.NewReader(content))
			if err != nil {
				return nil, malformed
			}
			content, err = io.ReadAll(zr)
			if err != nil {
				return nil, malformed
			}
		}
		sets = append(sets, backupSet{hdr: hdr, content: content})
	}
	return sets, nil
}

// stringArg evaluates a name or path argument.
func (x *execCtx) stringArg(e expr) (string, error) {
	v, err := (&env{x: x}).eval(e)
	if err != nil {
		return "", err
	}
	s, err := coerce(v, typeNVarMax)
	if err != nil || s == nil {
		return "", err
	}
	return s.(string), nil
}

// progress queues the 3211 messages of STATS = n, each flushed on its own.
func (x *execCtx) progress(stats int) {
	if stats <= 0 || x.w == nil {
		return
	}
	w := x.w
	for p := stats; p <= 100; p += stats {
		m := sqlErr(3211, p)
		x.emit(func() error {
			if err := w.Info(m); err != nil {
				return err
			}
			return w.Flush()
		})
	}
}

func pagesOf(n int) int { return n/8192 + 2 }

// exclusive reports 3101 when other sessions use the database.
func (x *execCtx) exclusive(d *database) error {
	if strings.EqualFold(x.db, d.Name) || x.in.sessionsIn(x.sess, d.Name) > 0 {
		return sqlErr(3101)
	}
	return nil
}

func (x *execCtx) backup(s *stBackup) error {
	what := "BACKUP DATABASE"
	if s.Log {
		what = "BACKUP LOG"
	}
	name, err := x.stringArg(s.DB)
	if err != nil {
		return err
	}
	path, err := x.stringArg(s.Disk)
	if err != nil {
		return err
	}
	if err := x.in.shareCheck(path); err != nil {
		return backupFailed(what, err)
	}
	d := x.in.db(name)
	if d == nil {
		return backupFailed(what, sqlErr(msgDBNotExists, name))
	}
	if err := d.readable(); err != nil {
		return backupFailed(what, err)
	}
	if s.Log {
		if d.Recovery == "SIMPLE" {
			return backupFailed(what, sqlErr(4208))
		}
		if d.LogBackupLSN == 0 {
			return backupFailed(what, sqlErr(4214))
		}
		if s.Opts.NoRecovery {
			if err := x.exclusive(d); err != nil {
				return backupFailed(what, err)
			}
		}
	} else if s.Opts.NoRecovery {
		return backupFailed(what, sqlErr(3032))
	}
	start := x.in.cfg.Now().UTC()
	nd := *d
	hdr := backupHeader{
		DatabaseName: d.Name, ServerName: x.in.cfg.Name, RecoveryForkID: d.ForkGUID, DatabaseCreated: d.Created,
		IsCopyOnly: s.Opts.CopyOnly, Compressed: s.Opts.Compression, HasChecksums: s.Opts.Checksum,
		RecoveryModel: d.Recovery, BackupSetGUID: newGUID(), BackupStartDate: start,
		DataFile: d.DataFile, LogFile: d.LogFile,
	}
	hdr.FirstRecoveryForkID = d.ForkGUID
	if s.Log {
		hdr.BackupType = 2
		hdr.FirstLSN = d.LogBackupLSN
		if d.ForkPointLSN != 0 && d.PrevForkGUID != (tds.GUID{}) && hdr.FirstLSN <= d.ForkPointLSN {
			hdr.FirstRecoveryForkID, hdr.ForkPointLSN = d.PrevForkGUID, d.ForkPointLSN
		}
		nd.advance(1)
		hdr.LastLSN = nd.LSN
		hdr.CheckpointLSN = d.DatabaseBackupLSN
		hdr.DatabaseBackupLSN = d.DatabaseBackupLSN
		if !s.Opts.CopyOnly {
			nd.LogBackupLSN = hdr.LastLSN
		}
	} else {
		hdr.BackupType = 1
		hdr.FirstLSN = d.LSN
		nd.advance(1)
		hdr.CheckpointLSN = nd.LSN
		nd.advance(1)
		hdr.LastLSN = nd.LSN
		hdr.DatabaseBackupLSN = d.DatabaseBackupLSN
		if !s.Opts.CopyOnly {
			nd.DatabaseBackupLSN = hdr.CheckpointLSN
			if d.LogBackupLSN == 0 && d.Recovery != "SIMPLE" {
				nd.LogBackupLSN = hdr.FirstLSN
				hdr.BeginsLogChain = true
			}
		}
	}
	var content []byte
	if s.Log {
		entries, err := x.in.store.readLog(d)
		if err != nil {
			return err
		}
		if content, err = json.Marshal(logContent{Entries: entries}); err != nil {
			return err
		}
	} else {
		var err error
		if content, err = takeSnapshot(d); err != nil {
			return err
		}
	}
	hdr.BackupSize = int64(len(content)) + 8192
	hdr.BackupFinishDate = x.in.cfg.Now().UTC()
	if err := writeBackupSet(path, hdr, content, s.Opts.Init); err != nil {
		return backupFailed(what, cannotOpenDevice(path, err))
	}
	if s.Log && s.Opts.NoRecovery {
		nd.State, nd.Standby = stateRestoring, false
		nd.RedoStartLSN, nd.RedoStartFork = hdr.LastLSN, d.ForkGUID
	}
	hist, _, err := x.in.backupHistory(hdr, path)
	if err != nil {
		return err
	}
	if err := x.in.commit(func(tx *bolt.Tx) error {
		if err := writeInserts(tx, hist); err != nil {
			return err
		}
		if s.Log && !s.Opts.CopyOnly {
			// The entries are in the backup now.
			// A mirrored principal keeps what the mirror has not
			// hardened yet.
			if mm := d.Mirror; mm != nil && mm.Role == "PRINCIPAL" && x.in.mir != nil {
				x.in.mir.mu.Lock()
				keep := x.in.mir.shipped[strings.ToLower(d.Name)]
				x.in.mir.mu.Unlock()
				return errors.Join(truncateLogTo(tx, d, min(keep, hdr.LastLSN)), putDB(tx, &nd))
			}
			if err := truncateLog(tx, d); err != nil {
				return err
			}
		}
		return putDB(tx, &nd)
	}); err != nil {
		return err
	}
	applyInserts(hist)
	d.dbMeta = nd.dbMeta
	x.progress(s.Opts.Stats)
	pages := pagesOf(len(content))
	if !s.Log {
		x.info(sqlErr(4035, pages, d.Name, d.Name))
	}
	x.info(sqlErr(4035, 2, d.Name, d.Name+"_log"))
	secs := max(hdr.BackupFinishDate.Sub(start).Seconds(), 0.001)
	x.info(sqlErr(3014, what, pages+2, secs, float64(len(content))/1048576/secs))
	x.done(0, 0, false)
	return nil
}

// pickSet returns the backup set WITH FILE = n chose (default 1).
func (x *execCtx) pickSet(sets []backupSet, s *stRestore, what, path string) (backupSet, int, error) {
	pos := 1
	if s.Opts.File != nil {
		v, err := (&env{x: x}).eval(s.Opts.File)
		if err != nil {
			return backupSet{}, 0, err
		}
		n, err := coerce(v, typeInt)
		if err != nil || n == nil {
			return backupSet{}, 0, sqlErr(msgConvertFailed, "nvarchar", fmt.Sprint(v), "int")
		}
		pos = int(n.(int64))
	}
	if pos < 1 || pos > len(sets) {
		return backupSet{}, 0, backupFailed(what, sqlErr(4038, pos, path))
	}
	return sets[pos-1], pos, nil
}

// restoreWhat names a RESTORE statement in 3013.
func restoreWhat(s *stRestore) string {
	switch s.Kind {
	case "FILELISTONLY":
		return "RESTORE FILELIST"
	case "VERIFYONLY":
		return "VERIFY DATABASE"
	}
	return "RESTORE " + s.Kind
}

// restoreInput is a backup file read and verified before the engine lock
// is taken, so that reading a large file does not stall other sessions.
type restoreInput struct {
	path string
	sets []backupSet
}

// readRestoreInput reads the device of a RESTORE. The path is a literal or a
// parameter, so no engine state is needed.
func (x *execCtx) readRestoreInput(s *stRestore) (*restoreInput, error) {
	path, err := x.stringArg(s.Disk)
	if err != nil {
		return nil, err
	}
	if err := x.in.shareCheck(path); err != nil {
		return nil, backupFailed(restoreWhat(s), err)
	}
	sets, err := readBackupSets(path, restoreWhat(s))
	if err != nil {
		return nil, err
	}
	return &restoreInput{path: path, sets: sets}, nil
}

func (x *execCtx) restore(s *stRestore, input *restoreInput) error {
	what := restoreWhat(s)
	var sets []backupSet
	var path string
	if input != nil {
		sets, path = input.sets, input.path
	}
	switch s.Kind {
	case "HEADERONLY":
		x.headerOnly(sets)
		return nil
	case "FILELISTONLY":
		set, _, err := x.pickSet(sets, s, what, path)
		if err != nil {
			return err
		}
		x.fileListOnly(set)
		return nil
	case "VERIFYONLY":
		set, pos, err := x.pickSet(sets, s, what, path)
		if err != nil {
			return err
		}
		if err := checkContent(set); err != nil {
			return backupFailed(what, sqlErr(3189))
		}
		x.info(sqlErr(3262, pos))
		x.done(0, 0, false)
		return nil
	case "LABELONLY":
		return backupFailed(what, sqlErr(msgSyntax, "LABELONLY"))
	}
	name, err := x.stringArg(s.DB)
	if err != nil {
		return err
	}
	if d := x.in.db(name); d != nil && d.Mirror != nil {
		return backupFailed(what, sqlErr(3104, d.Name))
	}
	if s.Disk == nil {
		return x.recoverOnly(name, s, what)
	}
	set, _, err := x.pickSet(sets, s, what, path)
	if err != nil {
		return err
	}
	h := set.hdr
	var tables map[string]*table
	var entries []logEntry
	if h.BackupType == 1 {
		tables, err = loadSnapshot(set.content)
	} else {
		entries, err = loadLogContent(set.content)
	}
	if err != nil {
		return backupFailed(what, sqlErr(3189))
	}
	d := x.in.db(name)
	var nd database
	if h.BackupType == 1 && s.Kind == "DATABASE" {
		if d != nil {
			if err := x.exclusive(d); err != nil {
				return backupFailed(what, err)
			}
			if !s.Opts.Replace {
				if !strings.EqualFold(d.Name, h.DatabaseName) {
					return backupFailed(what, sqlErr(3154, d.Name))
				}
				if d.State == stateOnline && !d.Standby && d.Recovery != "SIMPLE" && d.LogBackupLSN != 0 {
					return backupFailed(what, sqlErr(3159, d.Name))
				}
			}
			nd.dbMeta = d.dbMeta
		} else {
			nd = *x.in.newDatabase(name, x.in.freeID())
		}
		nd.Name = name
		if d != nil {
			nd.Name = d.Name
		}
		nd.Created, nd.ForkGUID, nd.LSN, nd.Recovery = h.DatabaseCreated, h.RecoveryForkID, h.LastLSN, h.RecoveryModel
		nd.DatabaseBackupLSN, nd.LogBackupLSN = h.CheckpointLSN, h.FirstLSN
		nd.PrevForkGUID, nd.ForkPointLSN = tds.GUID{}, 0
		nd.ReadOnly, nd.UserAccess = false, "MULTI_USER"
		// Without MOVE, files go where the backup says they were.
		if h.DataFile != "" {
			nd.DataFile, nd.LogFile = h.DataFile, h.LogFile
		}
		logical := map[string]*string{strings.ToLower(h.DatabaseName): &nd.DataFile, strings.ToLower(h.DatabaseName + "_log"): &nd.LogFile}
		for _, mv := range s.Opts.Moves {
			from, err := x.stringArg(mv[0])
			if err != nil {
				return err
			}
			to, err := x.stringArg(mv[1])
			if err != nil {
				return err
			}
			ptr := logical[strings.ToLower(from)]
			if ptr == nil {
				return backupFailed(what, sqlErr(3234, from, nd.Name))
			}
			*ptr = to
		}
		// The files must not belong to another database (restore a copy
		// WITH MOVE).
		for _, f := range []struct{ logical, phys string }{{h.DatabaseName, nd.DataFile}, {h.DatabaseName + "_log", nd.LogFile}} {
			for _, other := range x.in.dbs {
				if d != nil && other == d {
					continue
				}
				if strings.EqualFold(other.DataFile, f.phys) || strings.EqualFold(other.LogFile, f.phys) {
					return backupFailed(what, errors.Join(sqlErr(1834, f.phys, other.Name), sqlErr(3156, f.logical, f.phys), sqlErr(3119)))
				}
			}
		}
	} else {
		// A log backup.
		if h.BackupType == 1 {
			return backupFailed(what, sqlErr(3135, path))
		}
		if d == nil {
			return backupFailed(what, sqlErr(msgDBNotExists, name))
		}
		if d.State == stateOffline {
			return backupFailed(what, sqlErr(msgDBOffline, d.Name))
		}
		if d.State == stateOnline && !d.Standby || d.RedoStartLSN == 0 {
			return backupFailed(what, sqlErr(3117))
		}
		if err := x.exclusive(d); err != nil {
			return backupFailed(what, err)
		}
		redo := d.RedoStartLSN
		crossesFork := h.ForkPointLSN != 0 && h.FirstRecoveryForkID == d.RedoStartFork && redo <= h.ForkPointLSN
		if h.RecoveryForkID != d.RedoStartFork && !crossesFork {
			return backupFailed(what, sqlErr(4330))
		}
		if h.LastLSN <= redo {
			return backupFailed(what, sqlErr(4326, h.LastLSN, redo))
		}
		if h.FirstLSN > redo {
			return backupFailed(what, sqlErr(4305, h.FirstLSN, redo))
		}
		if tables, err = applyLog(d.tables, entries, redo); err != nil {
			return backupFailed(what, errors.Join(sqlErr(3189), err))
		}
		nd.dbMeta = d.dbMeta
		nd.LSN = h.LastLSN
		nd.LogBackupLSN = h.LastLSN
		nd.Recovery = h.RecoveryModel
		nd.ForkGUID = h.RecoveryForkID
		if crossesFork {
			nd.PrevForkGUID, nd.ForkPointLSN = h.FirstRecoveryForkID, h.ForkPointLSN
		}
	}
	// End state of the restore.
	switch {
	case s.Opts.NoRecovery:
		nd.State, nd.Standby = stateRestoring, false
		nd.RedoStartLSN, nd.RedoStartFork = h.LastLSN, h.RecoveryForkID
	case s.Opts.Standby != nil:
		undo, err := x.stringArg(s.Opts.Standby)
		if err != nil {
			return err
		}
		if err := os.WriteFile(undo, []byte("chatdr standby undo file\n"), 0o644); err != nil {
			return backupFailed(what, sqlErr(3201, undo, 3, "The system cannot find the path specified."))
		}
		nd.State, nd.Standby = stateOnline, true
		nd.RedoStartLSN, nd.RedoStartFork = h.LastLSN, h.RecoveryForkID
	default:
		nd.State, nd.Standby = stateOnline, false
		nd.recover(h.RecoveryForkID)
	}
	nd.tables = tables
	hist, setID, err := x.in.backupHistory(h, path)
	if err != nil {
		return err
	}
	restoreType := "D"
	if h.BackupType == 2 {
		restoreType = "L"
	}
	rh, err := x.in.prepareInsert("msdb", "restorehistory", map[string]any{
		"restore_date": x.in.cfg.Now().UTC(), "destination_database_name": nd.Name, "user_name": x.login,
		"backup_set_id": setID, "restore_type": restoreType, "replace": s.Opts.Replace,
		"recovery": nd.State == stateOnline && !nd.Standby, "restart": false, "device_count": int64(1),
	})
	if err != nil {
		return err
	}
	hist = append(hist, rh)
	if err := x.in.commit(func(tx *bolt.Tx) error {
		if d != nil && !strings.EqualFold(d.Name, nd.Name) {
			if err := dropDBTx(tx, d.Name); err != nil {
				return err
			}
		}
		if err := writeInserts(tx, hist); err != nil {
			return err
		}
		return putDBContent(tx, &nd)
	}); err != nil {
		return err
	}
	applyInserts(hist)
	x.in.dbs[strings.ToLower(nd.Name)] = &nd
	x.progress(s.Opts.Stats)
	pages := pagesOf(len(set.content))
	if h.BackupType == 1 {
		x.info(sqlErr(4035, pages, nd.Name, h.DatabaseName))
	}
	x.info(sqlErr(4035, 2, nd.Name, h.DatabaseName+"_log"))
	kind := "DATABASE"
	if h.BackupType == 2 {
		kind = "LOG"
	}
	x.info(sqlErr(3014, "RESTORE "+kind, pages+2, 0.01, float64(len(set.content))/1048576/0.01))
	x.done(0, 0, false)
	return nil
}

// recoverOnly is RESTORE DATABASE x WITH RECOVERY (or STANDBY/NORECOVERY)
// without a backup: it ends a restore sequence.
func (x *execCtx) recoverOnly(name string, s *stRestore, what string) error {
	d := x.in.db(name)
	if d == nil {
		return backupFailed(what, sqlErr(msgDBNotExists, name))
	}
	if d.State != stateRestoring && !d.Standby {
		return backupFailed(what, sqlErr(3153))
	}
	if err := x.exclusive(d); err != nil {
		return backupFailed(what, err)
	}
	nd := *d
	switch {
	case s.Opts.NoRecovery:
		nd.State, nd.Standby = stateRestoring, false
	case s.Opts.Standby != nil:
		nd.State, nd.Standby = stateOnline, true
	default:
		nd.State, nd.Standby = stateOnline, false
		from := d.RedoStartFork
		if from == (tds.GUID{}) {
			from = d.ForkGUID
		}
		nd.recover(from)
	}
	if err := x.in.commit(func(tx *bolt.Tx) error { return putDB(tx, &nd) }); err != nil {
		return err
	}
	d.dbMeta = nd.dbMeta
	x.info(sqlErr(3014, "RESTORE DATABASE", 0, 0.001, 0.0))
	x.done(0, 0, false)
	return nil
}

// headerOnly writes RESTORE HEADERONLY's result set, one row per set.
func (x *execCtx) headerOnly(sets []backupSet) {
	cols := []resultCol{
		{"BackupName", nvarchar(128)}, {"BackupDescription", nvarchar(255)}, {"BackupType", typeSmallInt},
		{"ExpirationDate", typeDateTime}, {"Compressed", typeBit}, {"Position", typeSmallInt}, {"DeviceType", typeTinyInt},
		{"UserName", typeSysname}, {"ServerName", typeSysname}, {"DatabaseName", typeSysname}, {"DatabaseVersion", typeInt},
		{"DatabaseCreationDate", typeDateTime}, {"BackupSize", typeLSN}, {"FirstLSN", typeLSN}, {"LastLSN", typeLSN},
		{"CheckpointLSN", typeLSN}, {"DatabaseBackupLSN", typeLSN}, {"BackupStartDate", typeDateTime},
		{"BackupFinishDate", typeDateTime}, {"SortOrder", typeSmallInt}, {"CodePage", typeSmallInt},
		{"CompatibilityLevel", typeTinyInt}, {"SoftwareVersionMajor", typeInt}, {"SoftwareVersionMinor", typeInt},
		{"SoftwareVersionBuild", typeInt}, {"MachineName", typeSysname}, {"Flags", typeInt}, {"BindingID", typeGUID},
		{"RecoveryForkID", typeGUID}, {"Collation", typeSysname}, {"FamilyGUID", typeGUID}, {"HasBulkLoggedData", typeBit},
		{"IsSnapshot", typeBit}, {"IsReadOnly", typeBit}, {"IsSingleUser", typeBit}, {"HasBackupChecksums", typeBit},
		{"IsDamaged", typeBit}, {"BeginsLogChain", typeBit}, {"HasIncompleteMetaData", typeBit}, {"IsForceOffline", typeBit},
		{"IsCopyOnly", typeBit}, {"FirstRecoveryForkID", typeGUID}, {"ForkPointLSN", typeLSN}, {"RecoveryModel", nvarchar(60)},
		{"DifferentialBaseLSN", typeLSN}, {"DifferentialBaseGUID", typeGUID}, {"BackupTypeDescription", nvarchar(60)},
		{"BackupSetGUID", typeGUID}, {"CompressedBackupSize", typeLSN}, {"Containment", typeTinyInt},
	}
	var rows [][]any
	for i, s := range sets {
		h := s.hdr
		desc := "Database"
		if h.BackupType == 2 {
			desc = "Transaction Log"
		}
		machine, _, _ := strings.Cut(h.ServerName, `\`)
		rows = append(rows, []any{
			nil, nil, int64(h.BackupType), nil, h.Compressed, int64(i + 1), int64(2),
			"sa", h.ServerName, h.DatabaseName, int64(782),
			h.DatabaseCreated, lsnValue(uint64(h.BackupSize)), lsnValue(h.FirstLSN), lsnValue(h.LastLSN),
			lsnValue(h.CheckpointLSN), lsnZero(h.DatabaseBackupLSN), h.BackupStartDate,
			h.BackupFinishDate, int64(52), int64(0),
			int64(120), int64(12), int64(0),
			int64(6024), machine, int64(512), newGUID(),
			h.RecoveryForkID, "SQL_Latin1_General_CP1_CI_AS", h.RecoveryForkID, false,
			false, false, false, h.HasChecksums,
			false, h.BeginsLogChain, false, false,
			h.IsCopyOnly, firstFork(h), lsnValue(h.ForkPointLSN), h.RecoveryModel,
			nil, nil, desc,
			h.BackupSetGUID, lsnValue(uint64(h.BackupSize)), int64(0),
		})
	}
	x.resultSet(cols, rows, tds.CmdSelect)
}

// fileListOnly writes RESTORE FILELISTONLY's result set.
func (x *execCtx) fileListOnly(s backupSet) {
	h := s.hdr
	cols := []resultCol{
		{"LogicalName", typeSysname}, {"PhysicalName", nvarchar(260)}, {"Type", colType{Name: "nchar", Len: 1}},
		{"FileGroupName", typeSysname}, {"Size", typeLSN}, {"MaxSize", typeLSN}, {"FileId", typeBigInt},
		{"CreateLSN", typeLSN}, {"DropLSN", typeLSN}, {"UniqueId", typeGUID}, {"ReadOnlyLSN", typeLSN},
		{"ReadWriteLSN", typeLSN}, {"BackupSizeInBytes", typeBigInt}, {"SourceBlockSize", typeInt},
		{"FileGroupId", typeInt}, {"LogGroupGUID", typeGUID}, {"DifferentialBaseLSN", typeLSN},
		{"DifferentialBaseGUID", typeGUID}, {"IsReadOnly", typeBit}, {"IsPresent", typeBit}, {"TDEThumbprint", colType{Name: "varbinary", Len: 32}},
	}
	size := int64(len(s.content)) + 8192
	rows := [][]any{
		{h.DatabaseName, h.DataFile, "D", "PRIMARY", lsnValue(uint64(size)), lsnValue(35184372080640), int64(1),
			nil, nil, h.RecoveryForkID, nil, nil, size, int64(512), int64(1), nil, nil, nil, false, true, nil},
		{h.DatabaseName + "_log", h.LogFile, "L", nil, lsnValue(2097152), lsnValue(2199023255552), int64(2),
			nil, nil, h.BackupSetGUID, nil, nil, int64(0), int64(512), int64(0), nil, nil, nil, false, true, nil},
	}
	x.resultSet(cols, rows, tds.CmdSelect)
}

// firstFork is the fork at the backup's FirstLSN.
func firstFork(h backupHeader) tds.GUID {
	if h.FirstRecoveryForkID == (tds.GUID{}) {
		return h.RecoveryForkID
	}
	return h.FirstRecoveryForkID
}

// lsnZero is an LSN column that shows 0 rather than NULL.
func lsnZero(lsn uint64) any {
	return tds.Decimal{Unscaled: new(big.Int).SetUint64(lsn), Scale: 0}
}
