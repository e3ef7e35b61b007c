package mssql

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/chatdr/chatdr/pluginsdk"
)

// dbState is what the plugin reads of a database before acting on it.
type dbState struct {
	Exists        bool
	State         string // ONLINE, RESTORING, OFFLINE, ...
	Standby       bool
	ReadOnly      bool
	RecoveryModel string
	UserAccess    string
	// Redo and Fork are the redo point while RESTORING or in STANDBY
	// within a restore sequence (sys.master_files), else unset.
	Redo    LSN
	HasRedo bool
	Fork    string
}

// restoring reports whether logs can still be applied.
func (s dbState) restoring() bool { return s.State == "RESTORING" || s.Standby }

// writable reports whether the database is online for writes.
func (s dbState) writable() bool { return s.State == "ONLINE" && !s.Standby && !s.ReadOnly }

func (s dbState) output(name string) pluginsdk.Output {
	return pluginsdk.Output{
		"database": name, "exists": s.Exists, "state": s.State, "standby": s.Standby, "read_only": s.ReadOnly,
		"recovery_model": s.RecoveryModel, "user_access": s.UserAccess,
		"redo_start_lsn": s.Redo.String(), "redo_start_fork_guid": s.Fork, "writable": s.writable(),
	}
}

func readState(ctx context.Context, db *sql.DB, name string) (dbState, error) {
	rows, err := queryRows(ctx, db, `SELECT name, state_desc, is_in_standby, is_read_only, recovery_model_desc, user_access_desc
FROM sys.databases WHERE name = @p1`, name)
	if err != nil {
		return dbState{}, sqlError("read sys.databases", err)
	}
	if len(rows) == 0 {
		return dbState{}, nil
	}
	r := rows[0]
	st := dbState{Exists: true, State: r.str("state_desc"), Standby: r.bool("is_in_standby"), ReadOnly: r.bool("is_read_only"),
		RecoveryModel: r.str("recovery_model_desc"), UserAccess: r.str("user_access_desc")}
	redo, err := queryRows(ctx, db, `SELECT DISTINCT redo_start_lsn, redo_start_fork_guid FROM sys.master_files WHERE database_id = DB_ID(@p1)`, name)
	if err != nil {
		return dbState{}, sqlError("read sys.master_files", err)
	}
	if len(redo) == 1 {
		l, ok, err := parseLSN(redo[0].str("redo_start_lsn"))
		if err != nil {
			return dbState{}, pluginsdk.Terminal("bad_lsn", "sys.master_files.redo_start_lsn of %s: %v", name, err)
		}
		st.Redo, st.HasRedo, st.Fork = l, ok, strings.ToUpper(redo[0].str("redo_start_fork_guid"))
	}
	return st, nil
}

// database returns the validated name and bracket-quoted form of params.database.
func database(params pluginsdk.Params) (string, string, error) {
	name, _ := params["database"].(string)
	q, err := checkDatabase(name)
	return name, q, err
}

func (p *Plugin) dbStateAction(ctx context.Context, db *sql.DB, params pluginsdk.Params) (pluginsdk.Output, error) {
	name, _, err := database(params)
	if err != nil {
		return nil, err
	}
	st, err := readState(ctx, db, name)
	if err != nil {
		return nil, err
	}
	return st.output(name), nil
}

// killSessions ends every other user session on the database.
func (p *Plugin) killSessions(ctx context.Context, db *sql.DB, params pluginsdk.Params, emit pluginsdk.Emitter) (pluginsdk.Output, error) {
	name, _, err := database(params)
	if err != nil {
		return nil, err
	}
	var killed []any
	for attempt := 1; attempt <= 5; attempt++ {
		rows, err := queryRows(ctx, db, `SELECT session_id, login_name, host_name, program_name FROM sys.dm_exec_sessions
WHERE database_id = DB_ID(@p1) AND session_id <> @@SPID AND is_user_process = 1`, name)
		if err != nil {
			return nil, sqlError("list sessions", err)
		}
		if len(rows) == 0 {
			return pluginsdk.Output{"database": name, "killed": killed, "changed": len(killed) > 0, "remaining": 0.0}, nil
		}
		for _, r := range rows {
			id := r.int("session_id")
			// KILL takes no parameters; id is an integer read from SQL Server.
			if _, err := db.ExecContext(ctx, fmt.Sprintf("KILL %d", id)); err != nil {
				if n := sqlNumber(err); n == 6106 { // already gone
					continue
				}
				return nil, sqlError(fmt.Sprintf("KILL %d", id), err)
			}
			emit.Log("info", fmt.Sprintf("killed session %d (%s from %s, %s)", id, r.str("login_name"), r.str("host_name"), r.str("program_name")))
			killed = append(killed, float64(id))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond): // let rollbacks finish before looking again
		}
	}
	return nil, pluginsdk.Retryable("sessions_reconnect", "sessions keep reconnecting to %s after 5 rounds of KILL", name).
		WithHint("stop the clients first: clear the Persistent Chat active server list and stop the chat services")
}

// recoverDB runs RESTORE DATABASE ... WITH RECOVERY when the database is
// still restoring.
func (p *Plugin) recoverDB(ctx context.Context, db *sql.DB, params pluginsdk.Params, emit pluginsdk.Emitter) (pluginsdk.Output, error) {
	name, q, err := database(params)
	if err != nil {
		return nil, err
	}
	st, err := readState(ctx, db, name)
	if err != nil {
		return nil, err
	}
	switch {
	case !st.Exists:
		return nil, pluginsdk.Terminal("no_database", "database %s does not exist on this instance", name)
	case st.State == "ONLINE" && !st.Standby:
		out := st.output(name)
		out["changed"] = false
		return out, nil
	case !st.restoring():
		return nil, pluginsdk.Terminal("wrong_state", "database %s is %s, not RESTORING or STANDBY; RESTORE WITH RECOVERY does not apply", name, st.State)
	}
	emit.Log("info", fmt.Sprintf("RESTORE DATABASE %s WITH RECOVERY from redo point %s", q, st.Redo))
	if err := execProgress(ctx, db, emit, "recover "+name, "RESTORE DATABASE "+q+" WITH RECOVERY"); err != nil {
		return nil, sqlError("RESTORE DATABASE "+name+" WITH RECOVERY", err)
	}
	after, err := readState(ctx, db, name)
	if err != nil {
		return nil, err
	}
	if !after.writable() {
		return nil, pluginsdk.Terminal("not_online", "after RESTORE WITH RECOVERY database %s is %s", name, after.State)
	}
	out := after.output(name)
	out["changed"] = true
	out["recovered_from_lsn"] = st.Redo.String()
	return out, nil
}

// tailLogBackup takes the tail-log backup WITH NORECOVERY, or recognizes
// that it was already taken to this file.
func (p *Plugin) tailLogBackup(ctx context.Context, db *sql.DB, params pluginsdk.Params, emit pluginsdk.Emitter) (pluginsdk.Output, error) {
	name, q, err := database(params)
	if err != nil {
		return nil, err
	}
	// Either a file (path), or a directory (dir) in which the file is named
	// now, like a log-shipping backup but to the millisecond
	// (<db>_yyyymmddhhmmssfff.trn, UTC): it can then neither overwrite a
	// file the backup job wrote in the same second nor sort before one the
	// job wrote after the plan was made, which the copy of F2 would take
	// as already restored.
	path, dir := str(params, "path"), str(params, "dir")
	switch {
	case path != "" && dir != "":
		return nil, pluginsdk.Terminal("bad_params", "give path or dir, not both")
	case path == "" && dir == "":
		return nil, pluginsdk.Terminal("bad_params", "path or dir is required")
	case dir != "":
		if dir, err = confine(p.roots, dir); err != nil {
			return nil, err
		}
		now := time.Now().UTC()
		path = filepath.Join(dir, fmt.Sprintf("%s_%s%03d.trn", name, now.Format("20060102150405"), now.Nanosecond()/int(time.Millisecond)))
	}
	if path, err = confine(p.roots, path); err != nil {
		return nil, err
	}
	st, err := readState(ctx, db, name)
	if err != nil {
		return nil, err
	}
	if !st.Exists {
		return nil, pluginsdk.Terminal("no_database", "database %s does not exist on this instance", name)
	}
	if st.restoring() {
		// Already fenced: done if our file holds the tail that ends at the
		// redo point; otherwise someone else fenced it and we must not guess.
		candidates := []string{path}
		if dir != "" {
			candidates = newestLogFiles(dir, name, 20)
		}
		for _, c := range candidates {
			if hs, err := readHeaders(ctx, db, c); err == nil && len(hs) > 0 {
				h := hs[len(hs)-1]
				if h.BackupType == 2 && strings.EqualFold(h.DatabaseName, name) && st.HasRedo && h.LastLSN.Cmp(st.Redo) == 0 {
					return tailFields(pluginsdk.Output{"database": name, "path": c, "changed": false}, h), nil
				}
			}
		}
		where := path
		if dir != "" {
			where = "no log backup in " + dir
		}
		return nil, pluginsdk.Terminal("already_restoring", "database %s is already %s and %s holds its tail-log backup", name, st.State, where).
			WithHint("find the tail-log backup that was taken (msdb.dbo.backupset) before going on")
	}
	if st.State != "ONLINE" {
		return nil, pluginsdk.Terminal("wrong_state", "database %s is %s; a tail-log backup needs it ONLINE", name, st.State)
	}
	// Never overwrite another backup (WITH INIT would): a log backup of the
	// database there is a link of the log chain.
	if hs, err := readHeaders(ctx, db, path); err == nil && len(hs) > 0 {
		return nil, pluginsdk.Terminal("file_exists", "%s already holds a %s backup of %s; overwriting it would break the log chain", path, backupTypeName(hs[len(hs)-1].BackupType), hs[len(hs)-1].DatabaseName).
			WithHint("give another path, or pass dir to let the action name the file")
	}
	if err := backupTail(ctx, db, emit, "tail-log backup", name, q, path); err != nil {
		return nil, err
	}
	hs, err := readHeaders(ctx, db, path)
	if err != nil || len(hs) == 0 {
		return nil, pluginsdk.Terminal("backup_unreadable", "tail-log backup %s was written but cannot be read back: %v", path, err)
	}
	return tailFields(pluginsdk.Output{"database": name, "path": path, "changed": true}, hs[len(hs)-1]), nil
}

// backupTail takes the tail-log backup of database name (q: its quoted
// identifier) to path WITH NORECOVERY, which leaves the database RESTORING:
// the one statement both the planned failover's F0a and db.fence use.
func backupTail(ctx context.Context, db *sql.DB, emit pluginsdk.Emitter, stage, name, q, path string) error {
	if err := execProgress(ctx, db, emit, stage+" "+name,
		"BACKUP LOG "+q+" TO DISK = @p1 WITH NORECOVERY, INIT, FORMAT, CHECKSUM, STATS = 10", path); err != nil {
		return sqlError("BACKUP LOG "+name+" WITH NORECOVERY", err)
	}
	return nil
}

// tailFields adds a log backup's LSN range and finish time to out.
func tailFields(out pluginsdk.Output, h backupHeader) pluginsdk.Output {
	out["first_lsn"], out["last_lsn"] = h.FirstLSN.String(), h.LastLSN.String()
	out["backup_finish_date"] = h.FinishDate.Format(time.RFC3339)
	return out
}

// newestLogFiles returns up to n log-shipping-named files of database db in
// dir, newest name first.
func newestLogFiles(dir, db string, n int) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	re := logFileRe(db)
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && re.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(names)))
	if len(names) > n {
		names = names[:n]
	}
	out := make([]string, len(names))
	for i, nm := range names {
		out[i] = filepath.Join(dir, nm)
	}
	return out
}

// backupTypeName names a RESTORE HEADERONLY BackupType.
func backupTypeName(t int) string {
	switch t {
	case 1:
		return "full"
	case 2:
		return "log"
	case 5:
		return "differential"
	}
	return fmt.Sprintf("type %d", t)
}

// backupFull takes a full backup to path.
func (p *Plugin) backupFull(ctx context.Context, db *sql.DB, params pluginsdk.Params, emit pluginsdk.Emitter) (pluginsdk.Output, error) {
	name, q, err := database(params)
	if err != nil {
		return nil, err
	}
	path, err := confine(p.roots, str(params, "path"))
	if err != nil {
		return nil, err
	}
	opts := []string{"CHECKSUM", "STATS = 10"}
	if b, ok := params["init"].(bool); !ok || b {
		opts = append(opts, "INIT", "FORMAT")
	}
	if b, _ := params["copy_only"].(bool); b {
		opts = append(opts, "COPY_ONLY")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, pluginsdk.Retryable("dir_unwritable", "create %s: %v", filepath.Dir(path), err)
	}
	if err := execProgress(ctx, db, emit, "backup "+name, "BACKUP DATABASE "+q+" TO DISK = @p1 WITH "+strings.Join(opts, ", "), path); err != nil {
		return nil, sqlError("BACKUP DATABASE "+name, err)
	}
	hs, err := readHeaders(ctx, db, path)
	if err != nil || len(hs) == 0 {
		return nil, pluginsdk.Terminal("backup_unreadable", "backup %s cannot be read back: %v", path, err)
	}
	h := hs[len(hs)-1]
	return pluginsdk.Output{"database": name, "path": path, "changed": true, "first_lsn": h.FirstLSN.String(), "last_lsn": h.LastLSN.String(),
		"database_backup_lsn": h.DatabaseBackupLSN.String(), "backup_finish_date": h.FinishDate.Format(time.RFC3339)}, nil
}

// restoreFull restores a full backup; when the database already holds that
// backup (restoring, at its LastLSN, or online after it with recovery
// asked) it does nothing.
func (p *Plugin) restoreFull(ctx context.Context, db *sql.DB, params pluginsdk.Params, emit pluginsdk.Emitter) (pluginsdk.Output, error) {
	name, q, err := database(params)
	if err != nil {
		return nil, err
	}
	path, err := confine(p.roots, str(params, "path"))
	if err != nil {
		return nil, err
	}
	mode := str(params, "recovery")
	if mode == "" {
		mode = "recovery"
	}
	var with []string
	var args []any
	args = append(args, path)
	switch mode {
	case "recovery":
		with = append(with, "RECOVERY")
	case "norecovery":
		with = append(with, "NORECOVERY")
	case "standby":
		undo, err := confine(p.roots, str(params, "standby_file"))
		if err != nil {
			return nil, err
		}
		args = append(args, undo)
		with = append(with, fmt.Sprintf("STANDBY = @p%d", len(args)))
	default:
		return nil, pluginsdk.Terminal("bad_param", "recovery %q: want recovery, norecovery or standby", mode)
	}
	if b, ok := params["replace"].(bool); !ok || b {
		with = append(with, "REPLACE")
	}
	if mv, ok := params["move"].(map[string]any); ok {
		for logical, phys := range mv {
			target, err := confine(p.roots, fmt.Sprint(phys))
			if err != nil {
				return nil, err
			}
			args = append(args, logical, target)
			with = append(with, fmt.Sprintf("MOVE @p%d TO @p%d", len(args)-1, len(args)))
		}
	}
	with = append(with, "CHECKSUM", "STATS = 10")

	hs, err := readHeaders(ctx, db, path)
	if err != nil {
		return nil, err
	}
	if len(hs) == 0 || hs[len(hs)-1].BackupType != 1 {
		return nil, pluginsdk.Terminal("not_full_backup", "%s does not hold a full database backup", path)
	}
	h := hs[len(hs)-1]
	st, err := readState(ctx, db, name)
	if err != nil {
		return nil, err
	}
	if st.Exists && st.restoring() && mode != "recovery" && st.HasRedo && st.Redo.Cmp(h.LastLSN) == 0 {
		out := st.output(name)
		out["changed"] = false
		return out, nil
	}
	if err := execProgress(ctx, db, emit, "restore "+name, "RESTORE DATABASE "+q+" FROM DISK = @p1 WITH "+strings.Join(with, ", "), args...); err != nil {
		return nil, sqlError("RESTORE DATABASE "+name+" FROM "+path, err)
	}
	after, err := readState(ctx, db, name)
	if err != nil {
		return nil, err
	}
	out := after.output(name)
	out["changed"] = true
	out["backup_last_lsn"] = h.LastLSN.String()
	return out, nil
}

// readHeaders runs RESTORE HEADERONLY on a backup file.
func readHeaders(ctx context.Context, db *sql.DB, path string) ([]backupHeader, error) {
	rows, err := queryRows(ctx, db, "RESTORE HEADERONLY FROM DISK = @p1", path)
	if err != nil {
		return nil, sqlError("RESTORE HEADERONLY FROM "+path, err)
	}
	var out []backupHeader
	for _, r := range rows {
		h := backupHeader{File: path, BackupType: int(r.int("BackupType")), DatabaseName: r.str("DatabaseName"),
			RecoveryForkID: strings.ToUpper(r.str("RecoveryForkID")), FinishDate: r.time("BackupFinishDate"), IsCopyOnly: r.bool("IsCopyOnly")}
		var ok bool
		if h.FirstLSN, ok, err = parseLSN(r.str("FirstLSN")); err != nil || !ok {
			return nil, pluginsdk.Terminal("bad_header", "%s: FirstLSN %q", path, r.str("FirstLSN"))
		}
		if h.LastLSN, ok, err = parseLSN(r.str("LastLSN")); err != nil || !ok {
			return nil, pluginsdk.Terminal("bad_header", "%s: LastLSN %q", path, r.str("LastLSN"))
		}
		h.DatabaseBackupLSN, _, _ = parseLSN(r.str("DatabaseBackupLSN"))
		out = append(out, h)
	}
	return out, nil
}

func str(params pluginsdk.Params, key string) string {
	s, _ := params[key].(string)
	return s
}
