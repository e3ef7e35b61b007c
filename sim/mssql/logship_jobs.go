package mssql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/chatdr/chatdr/sim/mssql/tds"
)

// The log-shipping jobs. Their step is the command SQL Server writes
// (sqllogship.exe -Backup|-Copy|-Restore <id> -server <name>); the Agent
// runs it here: BACKUP LOG and RESTORE LOG run as ordinary statements (each
// under the engine lock, like a client's), file copies outside it.

var stepCommand = regexp.MustCompile(`(?i)-(backup|copy|restore)\s+([0-9a-f-]{36})`)

// jobHistoryMaxRows is how many sysjobhistory rows are kept.
const jobHistoryMaxRows = 1000

// lsHistorySessions is how many sessions of each log-shipping agent the
// monitor history keeps; lsHistoryRetention is the default
// history_retention_period (14420 minutes).
const (
	lsHistorySessions  = 500
	lsHistoryRetention = 14420 * time.Minute
)

// LS agent types in log_shipping_monitor_history_detail.
const (
	lsAgentBackup  = 0
	lsAgentCopy    = 1
	lsAgentRestore = 2
)

// startJobLocked starts a run of a job (the lock is held).
func (in *Instance) startJobLocked(id tds.GUID, source, user string) error {
	a := in.agent
	j, err := in.findJob(id, true, "")
	if err != nil {
		return err
	}
	if j == nil {
		return sqlErr(14262, "@job_id", strings.ToUpper(id.String()))
	}
	now := in.cfg.Now()
	session := a.session
	if _, err := in.q(`DELETE FROM dbo.sysjobactivity WHERE session_id = @s AND job_id = @j`, "@s", session, "@j", id); err != nil {
		return err
	}
	if _, err := in.q(`INSERT INTO dbo.sysjobactivity (session_id, job_id, run_requested_date, run_requested_source, start_execution_date,
		last_executed_step_id) VALUES (@s, @j, @now, @src, @now, NULL)`, "@s", session, "@j", id, "@now", now, "@src", source); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &jobRun{cancel: cancel, user: user}
	a.runs[id] = run
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer cancel()
		start := in.cfg.Now()
		msg, num, err := in.runStep(ctx, j)
		in.mu.Lock()
		defer in.mu.Unlock()
		if a.runs[id] == run {
			delete(a.runs, id)
		}
		if in.closed {
			return
		}
		if ferr := in.finishJobLocked(j, session, source, user, start, msg, num, err, ctx.Err() != nil); ferr != nil {
			in.log.Warn("record job outcome", "job", j.name, "err", ferr)
		}
	}()
	return nil
}

// finishJobLocked records a run's outcome in sysjobhistory, sysjobsteps
// and sysjobactivity.
func (in *Instance) finishJobLocked(j *jobInfo, session int64, source, user string, start time.Time, msg string, num int32, runErr error, cancelled bool) error {
	if exists, err := in.findJob(j.id, true, ""); err != nil || exists == nil {
		return err
	}
	end := in.cfg.Now()
	status, outcome := int64(1), "succeeded"
	switch {
	case cancelled:
		status, outcome = 3, "was cancelled"
	case runErr != nil:
		status, outcome = 0, "failed"
	}
	if runErr != nil {
		msg = errText(runErr)
	}
	dur := end.Sub(start)
	durInt := int64(dur/time.Hour)*10000 + int64(dur/time.Minute%60)*100 + int64(dur/time.Second%60)
	sev := int64(0)
	if runErr != nil && !cancelled {
		sev = 16
	}
	by := "User " + user
	if source == "SCHEDULER" {
		by = "Schedule"
	}
	for _, h := range []struct {
		step int64
		name string
		msg  string
		num  int64
		sev  int64
	}{
		{1, j.step, msg, int64(num), sev},
		{0, "(Job outcome)", fmt.Sprintf("The job %s.  The Job was invoked by %s.  The last step to run was step 1 (%s).", outcome, by, j.step), 0, 0},
	} {
		if _, err := in.q(`INSERT INTO dbo.sysjobhistory (job_id, step_id, step_name, sql_message_id, sql_severity, message, run_status,
			run_date, run_time, run_duration, operator_id_emailed, operator_id_netsent, operator_id_paged, retries_attempted, server)
			VALUES (@j, @step, @name, @num, @sev, @msg, @st, @d, @t, @dur, 0, 0, 0, 0, @srv)`,
			"@j", j.id, "@step", h.step, "@name", h.name, "@num", h.num, "@sev", h.sev, "@msg", truncate(h.msg, 4000), "@st", status,
			"@d", dateInt(start), "@t", timeInt(start), "@dur", durInt, "@srv", in.cfg.Name); err != nil {
			return err
		}
	}
	rows, err := in.q(`SELECT MAX(instance_id) FROM dbo.sysjobhistory`)
	if err != nil {
		return err
	}
	// SQL Server Agent keeps at most 1000 rows of job history by default
	// (jobhistory_max_rows).
	if _, err := in.q(`DELETE FROM dbo.sysjobhistory WHERE instance_id <= @cut`, "@cut", asInt(rows[0][0])-jobHistoryMaxRows); err != nil {
		return err
	}
	if _, err := in.q(`UPDATE dbo.sysjobsteps SET last_run_outcome = @st, last_run_duration = @dur, last_run_date = @d, last_run_time = @t
		WHERE job_id = @j AND step_id = 1`, "@st", status, "@dur", durInt, "@d", dateInt(start), "@t", timeInt(start), "@j", j.id); err != nil {
		return err
	}
	_, err = in.q(`UPDATE dbo.sysjobactivity SET stop_execution_date = @end, last_executed_step_id = 1, last_executed_step_date = @start,
		job_history_id = @h WHERE session_id = @s AND job_id = @j`, "@end", end, "@start", start, "@h", rows[0][0], "@s", session, "@j", j.id)
	return err
}

func truncate(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// runStep runs a job's step; it returns the step's message, the SQL error
// number of its failure and the error.
func (in *Instance) runStep(ctx context.Context, j *jobInfo) (string, int32, error) {
	if strings.Contains(strings.ToLower(j.command), "sp_check_log_shipping_monitor_alert") {
		return "The log shipping thresholds were checked.", 0, nil
	}
	m := stepCommand.FindStringSubmatch(j.command)
	if m == nil {
		return "", 0, fmt.Errorf("the step command %q is not supported by the simulator", j.command)
	}
	v, err := coerce(m[2], typeGUID)
	if err != nil {
		return "", 0, err
	}
	id := v.(tds.GUID)
	var msg string
	switch strings.ToLower(m[1]) {
	case "backup":
		msg, err = in.lsBackupJob(ctx, id)
	case "copy":
		msg, err = in.lsCopyJob(ctx, id)
	default:
		msg, err = in.lsRestoreJob(ctx, id)
	}
	return msg, causeNumber(err), err
}

// lsLog writes log_shipping_monitor_history_detail (status 0 started, 1
// succeeded... as SQL Server: 0 Starting, 1 Running, 2 Success, 3 Error,
// 4 Warning) and, for errors, log_shipping_monitor_error_detail.
func (in *Instance) lsLog(agentID tds.GUID, agentType int, db string, status int, msg string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return
	}
	now := in.cfg.Now()
	rows, err := in.q(`SELECT MAX(session_id) FROM dbo.log_shipping_monitor_history_detail WHERE agent_id = @a AND agent_type = @t`,
		"@a", agentID, "@t", int64(agentType))
	if err != nil {
		return
	}
	session := asInt(rows[0][0]) + 1
	if status != 0 {
		session-- // the session its start opened
	} else {
		// History retention: SQL Server deletes rows older than
		// history_retention_period; the simulator also keeps only the last
		// lsHistorySessions sessions of each agent.
		for _, tbl := range []string{"log_shipping_monitor_history_detail", "log_shipping_monitor_error_detail"} {
			_, _ = in.q(`DELETE FROM dbo.`+tbl+` WHERE agent_id = @a AND agent_type = @t AND (session_id <= @cut OR log_time_utc < @old)`,
				"@a", agentID, "@t", int64(agentType), "@cut", session-lsHistorySessions, "@old", now.UTC().Add(-lsHistoryRetention))
		}
	}
	_, _ = in.q(`INSERT INTO dbo.log_shipping_monitor_history_detail (agent_id, agent_type, session_id, database_name, session_status,
		log_time, log_time_utc, message) VALUES (@a, @t, @s, @d, @st, @now, @utc, @m)`,
		"@a", agentID, "@t", int64(agentType), "@s", session, "@d", db, "@st", int64(status), "@now", now, "@utc", now.UTC(), "@m", truncate(msg, 4000))
	if status == 3 {
		_, _ = in.q(`INSERT INTO dbo.log_shipping_monitor_error_detail (agent_id, agent_type, session_id, database_name, sequence_number,
			log_time, log_time_utc, message, source) VALUES (@a, @t, @s, @d, 1, @now, @utc, @m, N'Microsoft.SqlServer.Management.LogShipping')`,
			"@a", agentID, "@t", int64(agentType), "@s", session, "@d", db, "@now", now, "@utc", now.UTC(), "@m", truncate(msg, 4000))
	}
}

// execParams runs a statement with parameters as sa, without a session.
func (in *Instance) execParams(ctx context.Context, db, sql string, params map[string]any) error {
	x := &execCtx{in: in, ctx: ctx, db: db, login: "sa"}
	return x.runBatch(sql, params)
}

func quoteName(s string) string { return "[" + strings.ReplaceAll(s, "]", "]]") + "]" }

// lsFiles lists the <db>_*.trn files of dir, sorted by name.
func lsFiles(dir, db string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	prefix := strings.ToLower(db) + "_"
	var out []string
	for _, e := range ents {
		n := strings.ToLower(e.Name())
		if e.Type().IsRegular() && strings.HasPrefix(n, prefix) && strings.HasSuffix(n, ".trn") {
			out = append(out, e.Name())
		}
	}
	sort.Slice(out, func(i, j int) bool { return strings.ToLower(out[i]) < strings.ToLower(out[j]) })
	return out, nil
}

func after(name, last string) bool {
	return last == "" || strings.ToLower(name) > strings.ToLower(filepath.Base(last))
}

// lsBackupJob is LSBackup_<db>: a BACKUP LOG to <dir>/<db>_yyyymmddhhmmss.trn
// (UTC), then the monitor rows, then files older than the retention are
// deleted. A primary that is RESTORING (a mirror) is skipped with success.
func (in *Instance) lsBackupJob(ctx context.Context, pid tds.GUID) (string, error) {
	in.mu.Lock()
	rows, err := in.q(`SELECT primary_database, backup_directory, backup_retention_period FROM dbo.log_shipping_primary_databases WHERE primary_id = @p`, "@p", pid)
	var state string
	if err == nil && len(rows) > 0 {
		if d := in.db(rows[0][0].(string)); d != nil {
			state = d.State
		}
	}
	in.mu.Unlock()
	if err != nil {
		return "", err
	}
	if len(rows) == 0 {
		return "", fmt.Errorf("log shipping primary %s is not configured", pid)
	}
	db, dir, retention := rows[0][0].(string), rows[0][1].(string), asInt(rows[0][2])
	in.lsLog(pid, lsAgentBackup, db, 0, "Starting transaction log backup. Primary ID: '"+pid.String()+"'")
	if state == stateRestoring {
		msg := fmt.Sprintf("Skipping log backup for primary database '%s' because it is in the RESTORING state (a mirror).", db)
		in.lsLog(pid, lsAgentBackup, db, 2, msg)
		return msg, nil
	}
	now := in.cfg.Now().UTC()
	file := filepath.Join(dir, db+"_"+now.Format("20060102150405")+".trn")
	if _, err := os.Stat(file); err == nil {
		msg := "Skipping log backup: " + file + " already exists (a backup ran this second)."
		in.lsLog(pid, lsAgentBackup, db, 2, msg)
		return msg, nil
	}
	if err := in.execParams(ctx, "master", "BACKUP LOG "+quoteName(db)+" TO DISK = @p1", map[string]any{"@p1": file}); err != nil {
		in.lsLog(pid, lsAgentBackup, db, 3, errText(err))
		return "", err
	}
	in.mu.Lock()
	t := in.cfg.Now()
	_, err = in.q(`UPDATE dbo.log_shipping_primary_databases SET last_backup_file = @f, last_backup_date = @d WHERE primary_id = @p`,
		"@f", file, "@d", t, "@p", pid)
	if err == nil {
		_, err = in.q(`UPDATE dbo.log_shipping_monitor_primary SET last_backup_file = @f, last_backup_date = @d, last_backup_date_utc = @u WHERE primary_id = @p`,
			"@f", file, "@d", t, "@u", t.UTC(), "@p", pid)
	}
	in.mu.Unlock()
	if err != nil {
		return "", err
	}
	// Retention: delete this database's .trn files older than the period.
	if files, lerr := lsFiles(dir, db); lerr == nil && retention > 0 {
		limit := in.cfg.Now().Add(-time.Duration(retention) * time.Minute)
		for _, f := range files {
			p := filepath.Join(dir, f)
			if st, err := os.Stat(p); err == nil && st.ModTime().Before(limit) && p != file {
				_ = os.Remove(p)
			}
		}
	}
	msg := fmt.Sprintf("Backed up log of database '%s' to file '%s'.", db, file)
	in.lsLog(pid, lsAgentBackup, db, 2, msg)
	return msg, nil
}

// lsCopyJob is LSCopy_<primary>_<db>: every <db>_*.trn of the source
// directory newer than last_copied_file is copied to the destination as
// <name>.wrk and renamed to <name> once complete and synced.
func (in *Instance) lsCopyJob(ctx context.Context, sid tds.GUID) (string, error) {
	in.mu.Lock()
	rows, err := in.q(`SELECT primary_database, backup_source_directory, backup_destination_directory, last_copied_file, file_retention_period
		FROM dbo.log_shipping_secondary WHERE secondary_id = @s`, "@s", sid)
	in.mu.Unlock()
	if err != nil {
		return "", err
	}
	if len(rows) == 0 {
		return "", fmt.Errorf("log shipping secondary %s is not configured", sid)
	}
	db, src, dst := rows[0][0].(string), rows[0][1].(string), rows[0][2].(string)
	last, _ := rows[0][3].(string)
	in.lsLog(sid, lsAgentCopy, db, 0, "Starting transaction log copy. Secondary ID: '"+sid.String()+"'")
	fail := func(err error) (string, error) {
		in.lsLog(sid, lsAgentCopy, db, 3, errText(err))
		return "", err
	}
	if err := in.shareCheck(src); err != nil {
		return fail(err)
	}
	if err := in.shareCheck(dst); err != nil {
		return fail(err)
	}
	files, err := lsFiles(src, db)
	if err != nil {
		return fail(fmt.Errorf("*** Error: Could not retrieve backup files for primary database '%s' from '%s': %w", db, src, err))
	}
	n := 0
	for _, f := range files {
		if !after(f, last) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return "", err
		}
		if err := copyFile(filepath.Join(src, f), filepath.Join(dst, f)); err != nil {
			return fail(fmt.Errorf("*** Error: Could not copy backup file '%s' to '%s': %w", filepath.Join(src, f), dst, err))
		}
		target := filepath.Join(dst, f)
		in.mu.Lock()
		t := in.cfg.Now()
		_, err = in.q(`UPDATE dbo.log_shipping_secondary SET last_copied_file = @f, last_copied_date = @d WHERE secondary_id = @s`,
			"@f", target, "@d", t, "@s", sid)
		if err == nil {
			_, err = in.q(`UPDATE dbo.log_shipping_monitor_secondary SET last_copied_file = @f, last_copied_date = @d, last_copied_date_utc = @u
				WHERE secondary_id = @s`, "@f", target, "@d", t, "@u", t.UTC(), "@s", sid)
		}
		in.mu.Unlock()
		if err != nil {
			return "", err
		}
		in.lsLog(sid, lsAgentCopy, db, 1, "Copied "+filepath.Join(src, f)+" to "+target)
		n++
	}
	// file_retention_period: copied files older than it are deleted.
	if ret := asInt(rows[0][4]); ret > 0 {
		if old, err := lsFiles(dst, db); err == nil {
			limit := in.cfg.Now().Add(-time.Duration(ret) * time.Minute)
			for _, f := range old {
				if st, err := os.Stat(filepath.Join(dst, f)); err == nil && st.ModTime().Before(limit) {
					_ = os.Remove(filepath.Join(dst, f))
				}
			}
		}
	}
	msg := fmt.Sprintf("The copy operation was successful. Secondary ID: '%s'. Number of log backup files copied: %d", sid, n)
	in.lsLog(sid, lsAgentCopy, db, 2, msg)
	return msg, nil
}

// copyFile copies src to dst through dst.wrk (fsynced, then renamed).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	wrk := dst + ".wrk"
	out, err := os.OpenFile(wrk, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		_ = os.Remove(wrk)
		return err
	}
	if err := out.Sync(); err != nil {
		_ = out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(wrk, dst)
}

// lsRestoreJob is LSRestore_<primary>_<db>: for each secondary database of
// the configuration, the <db>_*.trn files of the destination directory
// newer than last_restored_file are read, ordered by FirstLSN and applied
// WITH NORECOVERY (restore_mode 0) or WITH STANDBY (1, after disconnecting
// users if disconnect_users = 1); files already applied (LastLSN <=
// redo_start_lsn) are skipped; a gap ends the job with 4305.
func (in *Instance) lsRestoreJob(ctx context.Context, sid tds.GUID) (string, error) {
	in.mu.Lock()
	rows, err := in.q(`SELECT d.secondary_database, d.restore_mode, d.disconnect_users, d.last_restored_file, d.restore_delay,
		d.restore_all, s.backup_destination_directory, s.primary_database FROM dbo.log_shipping_secondary_databases d
		JOIN dbo.log_shipping_secondary s ON s.secondary_id = d.secondary_id WHERE d.secondary_id = @s`, "@s", sid)
	in.mu.Unlock()
	if err != nil {
		return "", err
	}
	total := 0
	for _, r := range rows {
		sdb, standby, disconnect := r[0].(string), r[1] == true, r[2] == true
		last, _ := r[3].(string)
		delay, all, dst, pdb := asInt(r[4]), r[5] == true, r[6].(string), r[7].(string)
		n, err := in.restoreOne(ctx, sid, sdb, pdb, dst, last, standby, disconnect, delay, all)
		total += n
		if err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("The restore operation was successful. Secondary ID: '%s'. Number of log backup files restored: %d", sid, total), nil
}

type lsCandidate struct {
	path  string
	hdr   backupHeader
	mtime time.Time
}

func (in *Instance) restoreOne(ctx context.Context, sid tds.GUID, sdb, pdb, dst, last string, standby, disconnect bool, delay int64, all bool) (int, error) {
	in.lsLog(sid, lsAgentRestore, sdb, 0, "Starting transaction log restore. Secondary ID: '"+sid.String()+"'")
	fail := func(err error) (int, error) {
		in.lsLog(sid, lsAgentRestore, sdb, 3, errText(err))
		return 0, err
	}
	if err := in.shareCheck(dst); err != nil {
		return fail(err)
	}
	files, err := lsFiles(dst, pdb)
	if err != nil {
		return fail(err)
	}
	var cands []lsCandidate
	for _, f := range files {
		if !after(f, last) {
			continue
		}
		p := filepath.Join(dst, f)
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		sets, err := readBackupSets(p, "RESTORE HEADERONLY")
		if err != nil {
			return fail(fmt.Errorf("*** Error: the file '%s' is not a valid backup: %w", p, err))
		}
		if sets[0].hdr.BackupType != 2 {
			continue
		}
		cands = append(cands, lsCandidate{path: p, hdr: sets[0].hdr, mtime: st.ModTime()})
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].hdr.FirstLSN < cands[j].hdr.FirstLSN })
	n := 0
	for _, cnd := range cands {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if delay > 0 && cnd.mtime.After(in.cfg.Now().Add(-time.Duration(delay)*time.Minute)) {
			break
		}
		in.mu.Lock()
		d := in.db(sdb)
		var redo uint64
		if d != nil {
			redo = d.RedoStartLSN
		}
		if d != nil && standby && disconnect {
			for _, s := range in.otherSessions(nil, d.Name) {
				_ = s.Kill()
			}
		}
		in.mu.Unlock()
		if redo != 0 && cnd.hdr.LastLSN <= redo {
			in.lsLog(sid, lsAgentRestore, sdb, 1, fmt.Sprintf("Skipped log backup file '%s' for secondary database '%s' because the file could not be applied (already restored).", cnd.path, sdb))
			continue
		}
		stmt := "RESTORE LOG " + quoteName(sdb) + " FROM DISK = @p1 WITH NORECOVERY"
		params := map[string]any{"@p1": cnd.path}
		if standby {
			stmt = "RESTORE LOG " + quoteName(sdb) + " FROM DISK = @p1 WITH STANDBY = @p2"
			params["@p2"] = filepath.Join(dst, sdb+"_undo.tuf")
		}
		if err := in.execParams(ctx, "master", stmt, params); err != nil {
			if errors.Is(err, context.Canceled) {
				return n, err
			}
			_, e := fail(errors.Join(fmt.Errorf("*** Error: An error occurred restoring the database access mode. The file '%s' could not be applied to secondary database '%s'.", cnd.path, sdb), err))
			return n, e
		}
		in.mu.Lock()
		t := in.cfg.Now()
		latency := int64(t.Sub(cnd.hdr.BackupFinishDate) / time.Minute)
		_, err = in.q(`UPDATE dbo.log_shipping_secondary_databases SET last_restored_file = @f, last_restored_date = @d WHERE secondary_database = @db`,
			"@f", cnd.path, "@d", t, "@db", sdb)
		if err == nil {
			_, err = in.q(`UPDATE dbo.log_shipping_monitor_secondary SET last_restored_file = @f, last_restored_date = @d, last_restored_date_utc = @u,
				last_restored_latency = @l WHERE secondary_database = @db`, "@f", cnd.path, "@d", t, "@u", t.UTC(), "@l", latency, "@db", sdb)
		}
		in.mu.Unlock()
		if err != nil {
			return n, err
		}
		in.lsLog(sid, lsAgentRestore, sdb, 1, fmt.Sprintf("Restored log backup file '%s' to secondary database '%s'.", cnd.path, sdb))
		n++
		if !all {
			break
		}
	}
	in.lsLog(sid, lsAgentRestore, sdb, 2, fmt.Sprintf("The restore operation was successful. Secondary Database: '%s', Number of log backup files restored: %d", sdb, n))
	return n, nil
}

// causeNumber returns the number of the first *tds.Error in err (the
// cause; 3013 "terminating abnormally" follows it), 0 if none.
func causeNumber(err error) int32 {
	for _, e := range flatten(err) {
		var te *tds.Error
		if errors.As(e, &te) {
			return te.Number
		}
	}
	return 0
}
