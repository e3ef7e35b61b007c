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

// drillInfix names the scratch databases of restore drills:
// <db>_chatdr_drill_<UTC yyyymmddhhmmss>. A database whose name starts with
// <db>_chatdr_drill_ is a drill's and nothing else's: the next drill drops
// what a crashed one left.
const drillInfix = "_chatdr_drill_"

// drillDirName is the scratch directory's name under the data directory
// (or beside the copy directory): each drill's files go to a subdirectory
// named after its scratch database.
const drillDirName = "chatdr-drill"

// drillPhase is one timed phase of a drill.
type drillPhase struct {
	name string
	dur  time.Duration
}

// drill is the state of one restore drill while it runs.
type drill struct {
	p       *Plugin
	db      *sql.DB
	emit    pluginsdk.Emitter
	name    string // the log-shipping secondary database (never touched)
	scratch string // the scratch database
	q       string // scratch, bracket-quoted
	dir     string // scratch directory of this drill
	full    string // the full backup to use, when given
	phases  []drillPhase
	out     pluginsdk.Output
}

func (d *drill) timed(name string, f func() error) error {
	d.emit.Log("info", "drill phase "+name)
	start := time.Now()
	err := f()
	d.phases = append(d.phases, drillPhase{name, time.Since(start)})
	return err
}

// drillRestoreCopy restores the log-shipped copy of a database under a
// scratch name, as a real failover would (full backup, every log backup in
// LSN order WITH NORECOVERY, then RECOVERY), times each phase, validates
// the result and drops the scratch database and its files, also on failure
// (dbatools Test-DbaLastBackup). It reads the secondary database's
// metadata (sys.databases, sys.master_files) and the log-shipping
// configuration, and never alters the secondary, its jobs, msdb's
// log-shipping tables or the copy directory: pending files of the share
// are copied into the scratch directory, not the copy directory.
func (p *Plugin) drillRestoreCopy(ctx context.Context, db *sql.DB, params pluginsdk.Params, emit pluginsdk.Emitter) (pluginsdk.Output, error) {
	name, _, err := database(params)
	if err != nil {
		return nil, err
	}
	table, tcol := str(params, "table"), str(params, "time_column")
	if table == "" {
		table = "dbo.messages"
	}
	if tcol == "" {
		tcol = "posted_at"
	}
	schema, tbl, ok := strings.Cut(table, ".")
	if !ok {
		schema, tbl = "dbo", table
	}
	for _, id := range []string{schema, tbl, tcol} {
		if !identRe.MatchString(id) {
			return nil, pluginsdk.Terminal("bad_param", "%q is not a valid SQL Server identifier", id)
		}
	}
	started := time.Now().UTC()
	st, err := readState(ctx, db, name)
	if err != nil {
		return nil, err
	}
	if !st.Exists || !st.restoring() {
		state := "missing"
		if st.Exists {
			state = st.State
		}
		return nil, pluginsdk.Terminal("not_secondary", "database %s on this instance is %s, not a log-shipping secondary (RESTORING or STANDBY): there is no shipped copy to drill", name, state).
			WithHint("run the drill on the backup SQL host while log shipping runs")
	}

	// Directories: the snapshot's, or the parameters'.
	src, copyDir := str(params, "source_dir"), str(params, "copy_dir")
	primaryDB := name
	if src == "" || copyDir == "" {
		s, _, err := p.snapshot(ctx, db, name)
		if err != nil {
			return nil, err
		}
		if src == "" {
			src = s.BackupSourceDirectory
		}
		if copyDir == "" {
			copyDir = s.BackupDestinationDirectory
		}
		if s.PrimaryDatabase != "" {
			primaryDB = s.PrimaryDatabase
		}
	}
	if copyDir, err = confine(p.roots, copyDir); err != nil {
		return nil, err
	}
	srcOK := true
	if src, err = confine(p.roots, src); err != nil {
		srcOK = false
	}
	scratchRoot, err := p.drillScratchRoot(ctx, db, name, copyDir, str(params, "scratch_dir"))
	if err != nil {
		return nil, err
	}

	scratch := name + drillInfix + started.Format("20060102150405")
	q, err := checkDatabase(scratch)
	if err != nil {
		return nil, err
	}
	d := &drill{p: p, db: db, emit: emit, name: name, scratch: scratch, q: q, dir: filepath.Join(scratchRoot, scratch), full: str(params, "full_backup"),
		out: pluginsdk.Output{"database": name, "scratch_database": scratch, "scratch_dir": scratchRoot, "started_at": started.Format(time.RFC3339Nano),
			"secondary_state": st.State, "secondary_redo_lsn": st.Redo.String(), "copy_dir": copyDir, "source_dir": src}}

	// A crashed drill's leftovers go first.
	cleaned, err := d.cleanLeftovers(ctx, scratchRoot)
	if err != nil {
		return nil, err
	}
	d.out["leftovers_cleaned"] = nonNil(cleaned)

	runErr := d.run(ctx, primaryDB, src, srcOK, copyDir, st, schema, tbl, tcol)
	// Always drop the scratch database and its files, also after a failure
	// or a cancellation (with a fresh deadline then).
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	cleanErr := d.timed("cleanup", func() error { return d.drop(cctx, scratch, d.dir) })
	d.out["cleaned_up"] = cleanErr == nil
	if runErr != nil {
		if cleanErr != nil {
			emit.Log("error", "drill cleanup: "+cleanErr.Error())
		}
		return nil, runErr
	}
	if cleanErr != nil {
		return nil, pluginsdk.Retryable("drill_cleanup", "drill of %s succeeded but dropping %s failed: %v", name, scratch, cleanErr).
			WithHint("the next drill drops it (name prefix %s%s); or DROP DATABASE it by hand", name, drillInfix)
	}
	var phases []any
	for _, ph := range d.phases {
		phases = append(phases, map[string]any{"name": ph.name, "seconds": ph.dur.Seconds()})
	}
	d.out["phases"] = nonNil(phases)
	d.out["finished_at"] = time.Now().UTC().Format(time.RFC3339Nano)
	d.out["changed"] = true // a scratch database came and went
	return d.out, nil
}

// drillScratchRoot picks the scratch directory: the parameter, else
// chatdr-drill beside the secondary's data file, else beside the copy
// directory; the first one under the agent's roots.
func (p *Plugin) drillScratchRoot(ctx context.Context, db *sql.DB, name, copyDir, param string) (string, error) {
	if param != "" {
		return confine(p.roots, param)
	}
	var cands []string
	rows, err := queryRows(ctx, db, `SELECT physical_name FROM sys.master_files WHERE database_id = DB_ID(@p1) AND type = 0`, name)
	if err != nil {
		return "", sqlError("read sys.master_files", err)
	}
	if len(rows) > 0 && rows[0].str("physical_name") != "" {
		cands = append(cands, filepath.Join(filepath.Dir(rows[0].str("physical_name")), drillDirName))
	}
	cands = append(cands, filepath.Join(filepath.Dir(copyDir), drillDirName))
	for _, c := range cands {
		if r, err := confine(p.roots, c); err == nil {
			return r, nil
		}
	}
	return "", pluginsdk.Terminal("path_not_allowed", "no scratch directory for the drill is under the agent's roots (tried %s)", strings.Join(cands, ", ")).
		WithHint("give scratch_dir, or add one of these to plugin_config.mssql.roots")
}

// cleanLeftovers drops the scratch databases and directories of earlier
// drills of the same database.
func (d *drill) cleanLeftovers(ctx context.Context, scratchRoot string) ([]any, error) {
	prefix := strings.ToLower(d.name + drillInfix)
	rows, err := queryRows(ctx, d.db, `SELECT name FROM sys.databases`)
	if err != nil {
		return nil, sqlError("read sys.databases", err)
	}
	var cleaned []any
	seen := map[string]bool{}
	for _, r := range rows {
		n := r.str("name")
		if !strings.HasPrefix(strings.ToLower(n), prefix) || !identRe.MatchString(n) {
			continue
		}
		if err := d.drop(ctx, n, filepath.Join(scratchRoot, n)); err != nil {
			return nil, pluginsdk.Retryable("drill_leftover", "drop the leftover drill database %s: %v", n, err)
		}
		d.emit.Log("warn", "dropped the leftover drill database "+n)
		cleaned = append(cleaned, n)
		seen[strings.ToLower(n)] = true
	}
	entries, _ := os.ReadDir(scratchRoot)
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(strings.ToLower(e.Name()), prefix) || seen[strings.ToLower(e.Name())] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(scratchRoot, e.Name())); err != nil {
			return nil, pluginsdk.Retryable("drill_leftover", "remove the leftover drill directory %s: %v", e.Name(), err)
		}
		cleaned = append(cleaned, e.Name()+" (files)")
	}
	return cleaned, nil
}

// drop drops a scratch database (if it exists) and removes its directory.
// It refuses any name that is not a drill's.
func (d *drill) drop(ctx context.Context, scratch, dir string) error {
	if !strings.HasPrefix(strings.ToLower(scratch), strings.ToLower(d.name+drillInfix)) {
		return fmt.Errorf("%s is not a drill database", scratch)
	}
	q, err := checkDatabase(scratch)
	if err != nil {
		return err
	}
	st, err := readState(ctx, d.db, scratch)
	if err != nil {
		return err
	}
	if st.Exists {
		if st.State == "ONLINE" && !st.Standby {
			if _, err := d.db.ExecContext(ctx, "ALTER DATABASE "+q+" SET SINGLE_USER WITH ROLLBACK IMMEDIATE"); err != nil {
				return sqlError("ALTER DATABASE "+scratch+" SET SINGLE_USER", err)
			}
		}
		if _, err := d.db.ExecContext(ctx, "DROP DATABASE "+q); err != nil {
			return sqlError("DROP DATABASE "+scratch, err)
		}
	}
	// DROP DATABASE deletes the database files; what remains are the
	// copied log backups and anything SQL Server left.
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// run is the drill proper; the caller cleans up.
func (d *drill) run(ctx context.Context, primaryDB, src string, srcOK bool, copyDir string, sec dbState, schema, tbl, tcol string) error {
	logDir := filepath.Join(d.dir, "logs")
	if err := os.MkdirAll(logDir, 0o750); err != nil {
		return pluginsdk.Retryable("dir_unwritable", "create %s: %v", logDir, err)
	}
	// F2 as a real failover would do it: copy what the share holds and the
	// copy directory does not, timed, but into the scratch directory.
	var pendingCopy []any
	var copyBytes int64
	err := d.timed("copy_pending", func() error {
		if !srcOK {
			d.out["source_readable"] = false
			return nil
		}
		entries, err := os.ReadDir(src)
		if err != nil {
			d.out["source_readable"], d.out["source_error"] = false, err.Error()
			return nil
		}
		d.out["source_readable"] = true
		re := logFileRe(primaryDB)
		for _, e := range entries {
			if !re.MatchString(e.Name()) || !e.Type().IsRegular() {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue
			}
			if di, err := os.Stat(filepath.Join(copyDir, e.Name())); err == nil && di.Size() == info.Size() {
				continue
			}
			n, err := copyFile(ctx, filepath.Join(src, e.Name()), filepath.Join(logDir, e.Name()), d.scratch, func(int64) {})
			if err != nil {
				if ctx.Err() != nil {
					return pluginsdk.AsError(ctx.Err())
				}
				d.emit.Log("warn", fmt.Sprintf("copy %s: %v", e.Name(), err))
				continue
			}
			copyBytes += n
			pendingCopy = append(pendingCopy, e.Name())
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.out["pending_copy_files"], d.out["pending_copy_bytes"] = nonNil(pendingCopy), float64(copyBytes)

	// Locate the full backup and the log backups.
	var full backupHeader
	var plan restorePlan
	var newest time.Time
	var unreadable []unapplied
	err = d.timed("locate", func() error {
		var logs []backupHeader
		for _, dir := range []string{copyDir, logDir} {
			entries, err := os.ReadDir(dir)
			if err != nil {
				return pluginsdk.Retryable("dir_unreadable", "read %s: %v", dir, err)
			}
			re := logFileRe(primaryDB)
			for _, e := range entries {
				if !re.MatchString(e.Name()) || !e.Type().IsRegular() {
					continue
				}
				hs, err := readHeaders(ctx, d.db, filepath.Join(dir, e.Name()))
				if err != nil {
					if ctx.Err() != nil {
						return pluginsdk.AsError(ctx.Err())
					}
					unreadable = append(unreadable, unapplied{File: e.Name(), Reason: "unreadable: " + err.Error()})
					continue
				}
				for _, h := range hs {
					if h.BackupType == 2 && strings.EqualFold(h.DatabaseName, primaryDB) {
						h.File = filepath.Join(dir, e.Name())
						logs = append(logs, h)
						if h.FinishDate.After(newest) {
							newest = h.FinishDate
						}
					}
				}
			}
		}
		var err error
		full, plan, err = d.pickFull(ctx, primaryDB, []string{src, copyDir}, logs)
		return err
	})
	if err != nil {
		return err
	}
	d.out["full_backup"] = full.File
	d.out["full_backup_time"] = full.FinishDate.UTC().Format(time.RFC3339)
	d.out["full_backup_last_lsn"] = full.LastLSN.String()

	// Restore the full backup under the scratch name, its files moved.
	err = d.timed("restore_full", func() error {
		files, err := queryRows(ctx, d.db, "RESTORE FILELISTONLY FROM DISK = @p1", full.File)
		if err != nil {
			return sqlError("RESTORE FILELISTONLY FROM "+full.File, err)
		}
		args := []any{full.File}
		with := []string{"NORECOVERY"}
		for i, f := range files {
			logical := f.str("LogicalName")
			ext := filepath.Ext(strings.ReplaceAll(f.str("PhysicalName"), `\`, "/"))
			if ext == "" {
				ext = ".dat"
			}
			target := filepath.Join(d.dir, fmt.Sprintf("%s_%d%s", d.scratch, i+1, ext))
			args = append(args, logical, target)
			with = append(with, fmt.Sprintf("MOVE @p%d TO @p%d", len(args)-1, len(args)))
		}
		with = append(with, "CHECKSUM", "STATS = 10")
		if err := execProgress(ctx, d.db, d.emit, "restore "+d.scratch, "RESTORE DATABASE "+d.q+" FROM DISK = @p1 WITH "+strings.Join(with, ", "), args...); err != nil {
			return sqlError("RESTORE DATABASE "+d.scratch+" FROM "+full.File, err)
		}
		return nil
	})
	if err != nil {
		return err
	}

	// Every log backup of the chain, in LSN order, WITH NORECOVERY.
	var applied []any
	var pendingDur time.Duration
	pendingLogs := 0
	reached := full.LastLSN
	reachedTime := full.FinishDate
	stop := plan.Stop
	remaining := plan.Unapplied
	err = d.timed("restore_logs", func() error {
		for i, h := range plan.Apply {
			d.emit.Progress("restore logs", int64(i), int64(len(plan.Apply)), "files")
			t0 := time.Now()
			err := execProgress(ctx, d.db, pluginsdk.DiscardEmitter{}, "", "RESTORE LOG "+d.q+" FROM DISK = @p1 WITH NORECOVERY", h.File)
			if err == nil {
				after, rerr := readState(ctx, d.db, d.scratch)
				if rerr != nil {
					return rerr
				}
				if !after.HasRedo || after.Redo.Cmp(h.LastLSN) != 0 {
					err = fmt.Errorf("after restoring %s the redo point is %s, expected %s", filepath.Base(h.File), after.Redo, h.LastLSN)
				}
			}
			if err != nil {
				if ctx.Err() != nil {
					return pluginsdk.AsError(ctx.Err())
				}
				stop = fmt.Sprintf("restore of %s failed: %v", filepath.Base(h.File), sqlError("RESTORE LOG", err))
				for _, rest := range plan.Apply[i:] {
					remaining = append([]unapplied{{File: rest.File, Reason: stop}}, remaining...)
				}
				return nil
			}
			dur := time.Since(t0)
			// The logs beyond the secondary's redo point are what a
			// failover's F3 would still restore.
			if !sec.HasRedo || h.LastLSN.Cmp(sec.Redo) > 0 {
				pendingDur += dur
				pendingLogs++
			}
			applied = append(applied, filepath.Base(h.File))
			reached, reachedTime = h.LastLSN, h.FinishDate
		}
		d.emit.Progress("restore logs", int64(len(applied)), int64(len(plan.Apply)), "files")
		return nil
	})
	if err != nil {
		return err
	}
	var un []any
	for _, u := range append(remaining, unreadable...) {
		un = append(un, map[string]any{"file": filepath.Base(u.File), "reason": u.Reason})
	}
	d.out["logs_restored"] = nonNil(applied)
	d.out["logs_pending"] = float64(pendingLogs)
	d.out["unapplied"] = nonNil(un)
	d.out["stop_reason"] = stop
	d.out["complete"] = stop == "" && len(unreadable) == 0
	d.out["reached_lsn"] = reached.String()
	d.out["reached_backup_time"] = reachedTime.UTC().Format(time.RFC3339)
	if !newest.IsZero() {
		d.out["newest_backup_time"] = newest.UTC().Format(time.RFC3339)
	}

	// RESTORE WITH RECOVERY: allowed on a scratch copy, and timed, since a
	// failover's F4b does the same.
	err = d.timed("recovery", func() error {
		if err := execProgress(ctx, d.db, d.emit, "recover "+d.scratch, "RESTORE DATABASE "+d.q+" WITH RECOVERY"); err != nil {
			return sqlError("RESTORE DATABASE "+d.scratch+" WITH RECOVERY", err)
		}
		return nil
	})
	if err != nil {
		return err
	}

	// Validate.
	var problems []any
	err = d.timed("validate", func() error {
		after, err := readState(ctx, d.db, d.scratch)
		if err != nil {
			return err
		}
		d.out["recovered_state"] = after.State
		if !after.writable() {
			problems = append(problems, fmt.Sprintf("after recovery %s is %s (standby %v, read-only %v), not ONLINE", d.scratch, after.State, after.Standby, after.ReadOnly))
		}
		tables, err := queryRows(ctx, d.db, "SELECT COUNT(*) AS n FROM "+d.q+".sys.tables")
		if err != nil {
			return sqlError("read "+d.scratch+".sys.tables", err)
		}
		if len(tables) > 0 {
			d.out["tables"] = float64(tables[0].int("n"))
		}
		obj := quoteIdent(schema) + "." + quoteIdent(tbl)
		exists, err := queryRows(ctx, d.db, "SELECT OBJECT_ID(@p1) AS id", d.scratch+"."+schema+"."+tbl)
		if err != nil {
			return sqlError("OBJECT_ID", err)
		}
		if len(exists) == 0 || exists[0].int("id") == 0 {
			problems = append(problems, fmt.Sprintf("table %s.%s is missing from the restored copy", schema, tbl))
			return nil
		}
		rows, err := queryRows(ctx, d.db, "SELECT COUNT_BIG(*) AS n, MAX("+quoteIdent(tcol)+") AS last FROM "+d.q+"."+obj)
		if err != nil {
			return sqlError("count "+schema+"."+tbl+" of "+d.scratch, err)
		}
		if len(rows) > 0 {
			d.out["rows"] = float64(rows[0].int("n"))
			if t := rows[0].time("last"); !t.IsZero() {
				d.out["last_message_time"] = t.UTC().Format(time.RFC3339Nano)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.out["valid"] = len(problems) == 0
	d.out["problems"] = nonNil(problems)

	// Estimates. The data-loss window is what a disaster now would lose
	// with the backups at hand: the time since the restore point.
	now := time.Now().UTC()
	d.out["data_loss_window_seconds"] = now.Sub(reachedTime).Round(time.Millisecond).Seconds()
	if !newest.IsZero() && newest.After(reachedTime) {
		d.out["unrestorable_seconds"] = newest.Sub(reachedTime).Seconds()
	} else {
		d.out["unrestorable_seconds"] = 0.0
	}
	ph := map[string]time.Duration{}
	for _, p := range d.phases {
		ph[p.name] += p.dur
	}
	d.out["restore_seconds"] = (ph["restore_full"] + ph["restore_logs"] + ph["recovery"]).Seconds()
	d.out["rto_copy_seconds"] = ph["copy_pending"].Seconds()
	d.out["rto_restore_seconds"] = pendingDur.Seconds()
	d.out["rto_recovery_seconds"] = ph["recovery"].Seconds()
	d.out["rto_estimate_seconds"] = (ph["copy_pending"] + pendingDur + ph["recovery"]).Seconds()
	return nil
}

// pickFull finds the full backup to start the drill from: the one the
// secondary was initialized from (msdb restore history) and the full
// backups of the share and the copy directory, keeping the one whose log
// chain reaches furthest (the newest on a tie).
func (d *drill) pickFull(ctx context.Context, primaryDB string, dirs []string, logs []backupHeader) (backupHeader, restorePlan, error) {
	var paths []string
	if d.full != "" {
		full, err := confine(d.p.roots, d.full)
		if err != nil {
			return backupHeader{}, restorePlan{}, err
		}
		paths, dirs = append(paths, full), nil
	}
	rows, err := queryRows(ctx, d.db, `SELECT bmf.physical_device_name AS path, rh.restore_date
FROM msdb.dbo.restorehistory rh
JOIN msdb.dbo.backupset bs ON bs.backup_set_id = rh.backup_set_id
JOIN msdb.dbo.backupmediafamily bmf ON bmf.media_set_id = bs.media_set_id
WHERE rh.destination_database_name = @p1 AND rh.restore_type = 'D'
ORDER BY rh.restore_date DESC`, d.name)
	if err != nil {
		return backupHeader{}, restorePlan{}, sqlError("read msdb restore history", err)
	}
	for _, r := range rows {
		if d.full == "" {
			paths = append(paths, r.str("path"))
		}
	}
	for _, dir := range dirs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Type().IsRegular() && strings.EqualFold(filepath.Ext(e.Name()), ".bak") {
				paths = append(paths, filepath.Join(dir, e.Name()))
			}
		}
	}
	var fulls []backupHeader
	seen := map[string]bool{}
	var skipped []string
	for _, p := range paths {
		cp, err := confine(d.p.roots, p)
		if err != nil {
			skipped = append(skipped, p+": outside the agent's roots")
			continue
		}
		if seen[strings.ToLower(cp)] {
			continue
		}
		seen[strings.ToLower(cp)] = true
		hs, err := readHeaders(ctx, d.db, cp)
		if err != nil {
			if ctx.Err() != nil {
				return backupHeader{}, restorePlan{}, pluginsdk.AsError(ctx.Err())
			}
			skipped = append(skipped, cp+": unreadable")
			continue
		}
		if len(hs) == 0 {
			continue
		}
		h := hs[len(hs)-1]
		if h.BackupType == 1 && strings.EqualFold(h.DatabaseName, primaryDB) {
			h.File = cp
			fulls = append(fulls, h)
		}
	}
	if len(skipped) > 0 {
		d.out["full_backups_skipped"] = stringsAny(skipped)
	}
	if len(fulls) == 0 {
		return backupHeader{}, restorePlan{}, pluginsdk.Terminal("no_full_backup", "no readable full backup of %s found (msdb restore history of %s, *.bak in %s)", primaryDB, d.name, strings.Join(dirs, ", ")).
			WithHint("the drill starts from the full backup the secondary was initialized from; keep it on the backup share")
	}
	best, bestPlan := -1, restorePlan{}
	for i, f := range fulls {
		pl := planLogRestore(f.LastLSN, f.RecoveryForkID, logs)
		if best < 0 || pl.Reached.Cmp(bestPlan.Reached) > 0 || pl.Reached.Cmp(bestPlan.Reached) == 0 && f.LastLSN.Cmp(fulls[best].LastLSN) > 0 {
			best, bestPlan = i, pl
		}
	}
	// The logs older than the full are not part of its chain.
	bestPlan.Skipped = nil
	return fulls[best], bestPlan, nil
}

func stringsAny(ss []string) []any {
	sort.Strings(ss)
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
