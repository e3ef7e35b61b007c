package mssql

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	mssqldb "github.com/microsoft/go-mssqldb"

	"github.com/chatdr/chatdr/pluginsdk"
)

// Snapshot is the log-shipping configuration of a secondary database, read
// before sp_delete_log_shipping_secondary_database deletes it (domain §5.1).
type Snapshot struct {
	PrimaryServer              string    `json:"primary_server"`
	PrimaryDatabase            string    `json:"primary_database"`
	SecondaryDatabase          string    `json:"secondary_database"`
	BackupSourceDirectory      string    `json:"backup_source_directory"`
	BackupDestinationDirectory string    `json:"backup_destination_directory"`
	LastCopiedFile             string    `json:"last_copied_file"`
	LastRestoredFile           string    `json:"last_restored_file"`
	RestoreMode                int64     `json:"restore_mode"` // 0 NORECOVERY, 1 STANDBY
	CopyJob                    string    `json:"copy_job"`
	RestoreJob                 string    `json:"restore_job"`
	TakenAt                    time.Time `json:"taken_at"`
}

func (s Snapshot) output(fromFile bool) pluginsdk.Output {
	b, _ := json.Marshal(s)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	out["from_file"] = fromFile
	return out
}

// snapshotQuery is the dbatools-shaped read of the secondary's msdb rows.
const snapshotQuery = `SELECT lss.primary_server, lss.primary_database, lsd.secondary_database,
 lss.backup_source_directory, lss.backup_destination_directory,
 lss.last_copied_file, lsd.last_restored_file, lsd.restore_mode,
 j1.name AS copy_job, j2.name AS restore_job
FROM msdb.dbo.log_shipping_secondary lss
JOIN msdb.dbo.log_shipping_secondary_databases lsd ON lsd.secondary_id = lss.secondary_id
JOIN msdb.dbo.sysjobs j1 ON j1.job_id = lss.copy_job_id
JOIN msdb.dbo.sysjobs j2 ON j2.job_id = lss.restore_job_id
WHERE lsd.secondary_database = @p1`

func (p *Plugin) snapshotPath(name string) string {
	return filepath.Join(p.stateDir, "ls-snapshot-"+strings.ToLower(name)+".json")
}

// snapshot returns the live msdb configuration (saved to disk) or, when
// msdb no longer has it, the saved one.
func (p *Plugin) snapshot(ctx context.Context, db *sql.DB, name string) (Snapshot, bool, error) {
	rows, err := queryRows(ctx, db, snapshotQuery, name)
	if err != nil {
		return Snapshot{}, false, sqlError("read the log-shipping configuration", err)
	}
	if len(rows) == 0 {
		b, err := os.ReadFile(p.snapshotPath(name))
		if err != nil {
			return Snapshot{}, false, pluginsdk.Terminal("not_secondary", "%s has no log-shipping secondary configuration in msdb and no saved snapshot", name).
				WithHint("run mssql.ls.snapshot while log shipping is still configured, or give the directories as parameters")
		}
		var s Snapshot
		if err := json.Unmarshal(b, &s); err != nil {
			return Snapshot{}, false, pluginsdk.Terminal("snapshot_corrupt", "%s: %v", p.snapshotPath(name), err)
		}
		return s, true, nil
	}
	r := rows[0]
	s := Snapshot{
		PrimaryServer: r.str("primary_server"), PrimaryDatabase: r.str("primary_database"), SecondaryDatabase: r.str("secondary_database"),
		BackupSourceDirectory: r.str("backup_source_directory"), BackupDestinationDirectory: r.str("backup_destination_directory"),
		LastCopiedFile: r.str("last_copied_file"), LastRestoredFile: r.str("last_restored_file"), RestoreMode: r.int("restore_mode"),
		CopyJob: r.str("copy_job"), RestoreJob: r.str("restore_job"), TakenAt: time.Now().UTC(),
	}
	if p.stateDir != "" {
		if err := writeFileAtomic(p.snapshotPath(name), mustJSON(s)); err != nil {
			return Snapshot{}, false, pluginsdk.Retryable("state_unwritable", "save the log-shipping snapshot: %v", err)
		}
	}
	return s, false, nil
}

func (p *Plugin) lsSnapshot(ctx context.Context, db *sql.DB, params pluginsdk.Params) (pluginsdk.Output, error) {
	name, _, err := database(params)
	if err != nil {
		return nil, err
	}
	s, fromFile, err := p.snapshot(ctx, db, name)
	if err != nil {
		return nil, err
	}
	return s.output(fromFile), nil
}

// agentSession returns the current SQL Server Agent session id.
func agentSession(ctx context.Context, db *sql.DB) (int64, error) {
	rows, err := queryRows(ctx, db, `SELECT MAX(session_id) AS session_id FROM msdb.dbo.syssessions`)
	if err != nil {
		return 0, sqlError("read msdb.dbo.syssessions", err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	return rows[0].int("session_id"), nil
}

// jobState reads one job: whether it exists, is enabled, is running.
func jobState(ctx context.Context, db *sql.DB, job string) (exists, enabled, running bool, err error) {
	rows, err := queryRows(ctx, db, `SELECT job_id, enabled FROM msdb.dbo.sysjobs WHERE name = @p1`, job)
	if err != nil {
		return false, false, false, sqlError("read msdb.dbo.sysjobs", err)
	}
	if len(rows) == 0 {
		return false, false, false, nil
	}
	sess, err := agentSession(ctx, db)
	if err != nil {
		return false, false, false, err
	}
	act, err := queryRows(ctx, db, `SELECT ja.job_id FROM msdb.dbo.sysjobactivity ja JOIN msdb.dbo.sysjobs j ON j.job_id = ja.job_id
WHERE j.name = @p1 AND ja.session_id = @p2 AND ja.start_execution_date IS NOT NULL AND ja.stop_execution_date IS NULL`, job, sess)
	if err != nil {
		return false, false, false, sqlError("read msdb.dbo.sysjobactivity", err)
	}
	return true, rows[0].bool("enabled"), len(act) > 0, nil
}

// setJobs stops (when disabling) and disables or enables the copy and
// restore jobs, then waits until none runs.
func (p *Plugin) setJobs(ctx context.Context, db *sql.DB, params pluginsdk.Params, emit pluginsdk.Emitter, enable bool) (pluginsdk.Output, error) {
	name, _, err := database(params)
	if err != nil {
		return nil, err
	}
	s, _, err := p.snapshot(ctx, db, name)
	if err != nil {
		return nil, err
	}
	report := map[string]any{}
	changed := false
	for _, job := range []string{s.CopyJob, s.RestoreJob} {
		exists, enabled, running, err := jobState(ctx, db, job)
		if err != nil {
			return nil, err
		}
		if !exists {
			report[job] = "absent"
			continue
		}
		if !enable && running {
			var rs mssqldb.ReturnStatus
			if _, err := db.ExecContext(ctx, "msdb.dbo.sp_stop_job", sql.Named("job_name", job), &rs); err != nil && sqlNumber(err) != 22022 {
				return nil, sqlError("sp_stop_job "+job, err)
			}
			emit.Log("info", "asked SQL Server Agent to stop "+job)
			changed = true
		}
		if enabled != enable {
			val := 0
			if enable {
				val = 1
			}
			var rs mssqldb.ReturnStatus
			if _, err := db.ExecContext(ctx, "msdb.dbo.sp_update_job", sql.Named("job_name", job), sql.Named("enabled", val), &rs); err != nil {
				return nil, sqlError("sp_update_job "+job, err)
			}
			if rs != 0 {
				return nil, pluginsdk.Terminal("sp_failed", "sp_update_job %s returned %d", job, rs)
			}
			changed = true
		}
		if enable {
			report[job] = "enabled"
		} else {
			report[job] = "disabled"
		}
	}
	if !enable {
		// A restore job stopped mid-RESTORE finishes that statement first;
		// nothing may race the manual restores (domain §6.7).
		for {
			busy := []string{}
			for _, job := range []string{s.CopyJob, s.RestoreJob} {
				_, _, running, err := jobState(ctx, db, job)
				if err != nil {
					return nil, err
				}
				if running {
					busy = append(busy, job)
				}
			}
			if len(busy) == 0 {
				break
			}
			emit.Log("info", "waiting for "+strings.Join(busy, ", ")+" to finish")
			select {
			case <-ctx.Done():
				return nil, pluginsdk.Retryable("job_still_running", "%s still running", strings.Join(busy, ", "))
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	return pluginsdk.Output{"database": name, "jobs": report, "changed": changed}, nil
}

// removeSecondary runs sp_delete_log_shipping_secondary_database.
func (p *Plugin) removeSecondary(ctx context.Context, db *sql.DB, params pluginsdk.Params) (pluginsdk.Output, error) {
	name, _, err := database(params)
	if err != nil {
		return nil, err
	}
	rows, err := queryRows(ctx, db, `SELECT secondary_database FROM msdb.dbo.log_shipping_secondary_databases WHERE secondary_database = @p1`, name)
	if err != nil {
		return nil, sqlError("read msdb.dbo.log_shipping_secondary_databases", err)
	}
	if len(rows) == 0 {
		return pluginsdk.Output{"database": name, "changed": false}, nil
	}
	if _, _, err := p.snapshot(ctx, db, name); err != nil {
		return nil, err // never delete what was not saved first
	}
	var rs mssqldb.ReturnStatus
	if _, err := db.ExecContext(ctx, "master.dbo.sp_delete_log_shipping_secondary_database", sql.Named("secondary_database", name), &rs); err != nil {
		return nil, sqlError("sp_delete_log_shipping_secondary_database "+name, err)
	}
	if rs != 0 {
		return nil, pluginsdk.Terminal("sp_failed", "sp_delete_log_shipping_secondary_database %s returned %d", name, rs)
	}
	return pluginsdk.Output{"database": name, "changed": true}, nil
}

// logFileRe matches a log-shipping backup file of a database: <db>_<UTC timestamp>.trn.
func logFileRe(db string) *regexp.Regexp {
	return regexp.MustCompile(`(?i)^` + regexp.QuoteMeta(db) + `_(\d{14,17})\.trn$`)
}

// fileTime returns the UTC time encoded in a log-shipping file name.
func fileTime(db, file string) (time.Time, bool) {
	m := logFileRe(db).FindStringSubmatch(filepath.Base(file))
	if m == nil {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102150405", m[1][:14])
	return t, err == nil
}

// copyPending copies the log backups not yet copied from the share.
func (p *Plugin) copyPending(ctx context.Context, db *sql.DB, params pluginsdk.Params, emit pluginsdk.Emitter, key string) (pluginsdk.Output, error) {
	name, _, err := database(params)
	if err != nil {
		return nil, err
	}
	src, dst := str(params, "source_dir"), str(params, "dest_dir")
	var s Snapshot
	if src == "" || dst == "" {
		if s, _, err = p.snapshot(ctx, db, name); err != nil {
			return nil, err
		}
		if src == "" {
			src = s.BackupSourceDirectory
		}
		if dst == "" {
			dst = s.BackupDestinationDirectory
		}
	}
	if src, err = confine(p.roots, src); err != nil {
		return nil, err
	}
	if dst, err = confine(p.roots, dst); err != nil {
		return nil, err
	}
	verify := true
	if v, ok := params["verify"].(bool); ok {
		verify = v
	}
	out := pluginsdk.Output{"database": name, "source_dir": src, "dest_dir": dst, "verified": verify}
	entries, err := os.ReadDir(src)
	if err != nil {
		// The share went with the primary site: what was copied is all
		// there is (domain §6.3). Not a failure of this step.
		out["source_readable"] = false
		out["error"] = err.Error()
		out["copied"] = []any{}
		out["changed"] = false
		emit.Log("warn", "backup share unreadable: "+err.Error())
		return out, nil
	}
	re := logFileRe(name)
	var todo []os.DirEntry
	var wrk []any
	for _, e := range entries {
		switch {
		case strings.HasSuffix(strings.ToLower(e.Name()), ".wrk"):
			wrk = append(wrk, e.Name())
		case re.MatchString(e.Name()) && e.Type().IsRegular():
			if s.LastRestoredFile != "" && strings.ToLower(e.Name()) <= strings.ToLower(filepath.Base(s.LastRestoredFile)) {
				continue // already restored: not needed
			}
			todo = append(todo, e)
		}
	}
	sort.Slice(todo, func(i, j int) bool { return todo[i].Name() < todo[j].Name() })
	var total int64
	var need []os.DirEntry
	for _, e := range todo {
		info, err := e.Info()
		if err != nil {
			continue
		}
		if di, err := os.Stat(filepath.Join(dst, e.Name())); err == nil && di.Size() == info.Size() {
			continue // copied already
		}
		need = append(need, e)
		total += info.Size()
	}
	if err := os.MkdirAll(dst, 0o750); err != nil {
		return nil, pluginsdk.Retryable("dir_unwritable", "create %s: %v", dst, err)
	}
	var copied, unreadable []any
	var done int64
	// Each copied file is verified (RESTORE HEADERONLY) while the next one
	// copies; the results are collected in order.
	type verdict struct {
		name string
		err  error
	}
	verdicts := make([]chan verdict, 0, len(need))
	for _, e := range need {
		n, err := copyFile(ctx, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()), key, func(b int64) {
			emit.Progress("copy "+e.Name(), done+b, total, "bytes")
		})
		done += n
		ch := make(chan verdict, 1)
		verdicts = append(verdicts, ch)
		if err != nil {
			if ctx.Err() != nil {
				return nil, pluginsdk.AsError(ctx.Err())
			}
			ch <- verdict{e.Name(), err}
			continue
		}
		if !verify {
			ch <- verdict{e.Name(), nil}
			continue
		}
		go func(name string) {
			_, err := readHeaders(ctx, db, filepath.Join(dst, name))
			ch <- verdict{name, err}
		}(e.Name())
	}
	for _, ch := range verdicts {
		v := <-ch
		if v.err != nil {
			unreadable = append(unreadable, map[string]any{"file": v.name, "error": v.err.Error()})
			continue
		}
		copied = append(copied, v.name)
	}
	if ctx.Err() != nil {
		return nil, pluginsdk.AsError(ctx.Err())
	}
	out["source_readable"] = true
	out["copied"] = nonNil(copied)
	out["unreadable"] = nonNil(unreadable)
	out["skipped_wrk"] = nonNil(wrk)
	out["bytes"] = float64(done)
	out["changed"] = len(copied) > 0
	return out, nil
}

func nonNil(v []any) []any {
	if v == nil {
		return []any{}
	}
	return v
}

// copyFile copies src to dst through a temporary name, syncs, checks the
// size and renames, so that a half-copied file never has the final name.
func copyFile(ctx context.Context, src, dst, key string, progress func(int64)) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return 0, err
	}
	tmp := dst + ".chatdr-" + sanitize(key) + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp)
	// io.CopyN between files lets the kernel copy (copy_file_range) while
	// progress is still reported every chunk.
	const chunk = 8 << 20
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			out.Close()
			return n, err
		}
		c, err := io.CopyN(out, in, chunk)
		n += c
		progress(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			out.Close()
			return n, err
		}
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return n, err
	}
	if err := out.Close(); err != nil {
		return n, err
	}
	if n != fi.Size() {
		return n, fmt.Errorf("copied %d bytes of %d", n, fi.Size())
	}
	return n, os.Rename(tmp, dst)
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err) // only plain structs are passed
	}
	return b
}

// writeFileAtomic writes data to path through a synced temporary file.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
