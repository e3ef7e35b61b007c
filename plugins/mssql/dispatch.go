package mssql

import (
	"context"
	"database/sql"
	"os"
	"strings"
	"time"

	"github.com/chatdr/chatdr/pluginsdk"
)

// Execute runs one action.
func (p *Plugin) Execute(ctx context.Context, req *pluginsdk.Request, emit pluginsdk.Emitter) (pluginsdk.Output, error) {
	if err := p.init(); err != nil {
		return nil, err
	}
	db, err := p.conn.get(ctx)
	if err != nil {
		return nil, err
	}
	pr := req.Params
	switch strings.TrimPrefix(req.Action, "mssql.") {
	case "db.state":
		return p.dbStateAction(ctx, db, pr)
	case "db.kill_sessions":
		return p.killSessions(ctx, db, pr, emit)
	case "db.recover":
		return p.recoverDB(ctx, db, pr, emit)
	case "db.tail_log_backup":
		return p.tailLogBackup(ctx, db, pr, emit)
	case "db.fence":
		return p.fence(ctx, db, pr, emit)
	case "db.backup_full":
		return p.backupFull(ctx, db, pr, emit)
	case "db.restore_full":
		return p.restoreFull(ctx, db, pr, emit)
	case "ls.snapshot":
		return p.lsSnapshot(ctx, db, pr)
	case "ls.disable_jobs":
		return p.setJobs(ctx, db, pr, emit, false)
	case "ls.enable_jobs":
		return p.setJobs(ctx, db, pr, emit, true)
	case "ls.remove_secondary":
		return p.removeSecondary(ctx, db, pr)
	case "ls.copy_pending":
		return p.copyPending(ctx, db, pr, emit, req.IdempotencyKey)
	case "ls.restore_pending":
		return p.restorePending(ctx, db, pr, emit)
	case "ls.setup_primary":
		return p.setupPrimary(ctx, db, pr)
	case "ls.setup_secondary":
		return p.setupSecondary(ctx, db, pr)
	case "mirror.status":
		return p.mirrorStatus(ctx, db, pr)
	case "mirror.remove":
		return p.mirrorRemove(ctx, db, pr)
	case "mirror.failover":
		return p.mirrorFailover(ctx, db, pr)
	case "drill.restore_copy":
		return p.drillRestoreCopy(ctx, db, pr, emit)
	}
	return nil, pluginsdk.Terminal("unknown_action", "mssql does not offer %q", req.Action)
}

// Probe evaluates one probe.
func (p *Plugin) Probe(ctx context.Context, name string, params pluginsdk.Params) (pluginsdk.Output, error) {
	if err := p.init(); err != nil {
		return nil, err
	}
	db, err := p.conn.get(ctx)
	if err != nil {
		return nil, err
	}
	switch name {
	case "mssql.server":
		rows, err := queryRows(ctx, db, `SELECT @@SERVERNAME AS server_name, CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS version`)
		if err != nil || len(rows) == 0 {
			return nil, sqlError("read server properties", err)
		}
		agent, err := queryRows(ctx, db, `SELECT COUNT(*) AS n FROM sys.dm_exec_sessions WHERE program_name LIKE N'SQLAgent%'`)
		if err != nil {
			return nil, sqlError("look for SQL Server Agent", err)
		}
		return pluginsdk.Output{"server_name": rows[0].str("server_name"), "version": rows[0].str("version"),
			"agent_running": len(agent) > 0 && agent[0].int("n") > 0}, nil
	case "mssql.databases":
		var dbs []any
		for _, d := range p.probeDatabases(params) {
			st, err := readState(ctx, db, d)
			if err != nil {
				return nil, err
			}
			out := st.output(d)
			if m, err := readMirror(ctx, db, d); err == nil && m.Mirrored {
				out["mirroring_role"], out["mirroring_state"], out["mirroring_partner"] = m.Role, m.State, m.Partner
			}
			dbs = append(dbs, map[string]any(out))
		}
		return pluginsdk.Output{"databases": nonNil(dbs)}, nil
	case "mssql.log_shipping":
		var out []any
		for _, d := range p.probeDatabases(params) {
			o, err := p.logShippingStatus(ctx, db, d)
			if err != nil {
				return nil, err
			}
			out = append(out, map[string]any(o))
		}
		return pluginsdk.Output{"databases": nonNil(out)}, nil
	}
	return nil, pluginsdk.Terminal("unknown_probe", "mssql does not offer probe %q", name)
}

func (p *Plugin) probeDatabases(params pluginsdk.Params) []string {
	if d, ok := params["database"].(string); ok && d != "" {
		if _, err := checkDatabase(d); err == nil {
			return []string{d}
		}
	}
	return p.cfg.Databases
}

// logShippingStatus reports a database's log-shipping role and lag: as a
// primary, its last backup; as a secondary, its last copy and restore, the
// files waiting in the copy directory, and the data-loss window if the
// primary were lost now (the time since the newest backup it holds).
func (p *Plugin) logShippingStatus(ctx context.Context, db *sql.DB, name string) (pluginsdk.Output, error) {
	out := pluginsdk.Output{"database": name, "role": "none"}
	prim, err := queryRows(ctx, db, `SELECT last_backup_file, last_backup_date_utc FROM msdb.dbo.log_shipping_monitor_primary WHERE primary_database = @p1`, name)
	if err != nil {
		return nil, sqlError("read msdb.dbo.log_shipping_monitor_primary", err)
	}
	if len(prim) > 0 {
		out["role"] = "primary"
		out["last_backup_file"] = prim[0].str("last_backup_file")
		if t := prim[0].time("last_backup_date_utc"); !t.IsZero() {
			out["last_backup_time"] = t.UTC().Format(time.RFC3339)
		}
	}
	sec, err := queryRows(ctx, db, `SELECT last_copied_file, last_copied_date_utc, last_restored_file, last_restored_date_utc, last_restored_latency
FROM msdb.dbo.log_shipping_monitor_secondary WHERE secondary_database = @p1`, name)
	if err != nil {
		return nil, sqlError("read msdb.dbo.log_shipping_monitor_secondary", err)
	}
	if len(sec) > 0 {
		r := sec[0]
		out["role"] = "secondary"
		out["last_copied_file"], out["last_restored_file"] = r.str("last_copied_file"), r.str("last_restored_file")
		out["last_restored_latency_minutes"] = float64(r.int("last_restored_latency"))
		if t := r.time("last_copied_date_utc"); !t.IsZero() {
			out["last_copied_time"] = t.UTC().Format(time.RFC3339)
		}
		if t := r.time("last_restored_date_utc"); !t.IsZero() {
			out["last_restored_time"] = t.UTC().Format(time.RFC3339)
		}
		// The newest backup the secondary holds: its name carries the time
		// the primary took it; anything after that is at risk.
		newest, haveNewest := fileTime(name, r.str("last_copied_file"))
		if s, _, err := p.snapshot(ctx, db, name); err == nil {
			p.probeDirs(out, s)
			if entries, err := os.ReadDir(s.BackupDestinationDirectory); err == nil {
				waiting := 0
				last := strings.ToLower(baseName(r.str("last_restored_file")))
				for _, e := range entries {
					if logFileRe(name).MatchString(e.Name()) && strings.ToLower(e.Name()) > last {
						waiting++
					}
					if t, ok := fileTime(name, e.Name()); ok && t.After(newest) {
						newest, haveNewest = t, true
					}
				}
				out["files_waiting"] = float64(waiting)
			}
		}
		if haveNewest {
			out["newest_backup_held"] = newest.Format(time.RFC3339)
			out["estimated_data_loss_seconds"] = time.Since(newest).Round(time.Second).Seconds()
		}
	} else if s, fromFile, err := p.snapshot(ctx, db, name); err == nil && fromFile {
		// Log shipping was removed by a failover (F1): the saved snapshot
		// still names the share a failback writes its full backup to.
		p.probeDirs(out, s)
	}
	return out, nil
}

// probeDirs reports whether the copy job could work now: the backup share
// readable (source_readable) and the copy directory writable
// (copy_dir_writable), each with the reason when not. A directory outside
// the agent's roots counts as unusable, since the copy action would refuse
// it. The write test creates and removes an empty temporary file, nothing
// else.
func (p *Plugin) probeDirs(out pluginsdk.Output, s Snapshot) {
	out["source_dir"], out["copy_dir"] = s.BackupSourceDirectory, s.BackupDestinationDirectory
	if src, err := confine(p.roots, s.BackupSourceDirectory); err != nil {
		out["source_readable"], out["source_error"] = false, err.Error()
	} else if _, err := os.ReadDir(src); err != nil {
		out["source_readable"], out["source_error"] = false, err.Error()
	} else {
		out["source_readable"] = true
	}
	dst, err := confine(p.roots, s.BackupDestinationDirectory)
	if err != nil {
		out["copy_dir_writable"], out["copy_dir_error"] = false, err.Error()
		return
	}
	f, err := os.CreateTemp(dst, ".chatdr-probe-*.tmp")
	if err != nil {
		out["copy_dir_writable"], out["copy_dir_error"] = false, err.Error()
		return
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		out["copy_dir_writable"], out["copy_dir_error"] = false, "remove probe file: "+err.Error()
		return
	}
	out["copy_dir_writable"] = true
}

func baseName(p string) string {
	if i := strings.LastIndexAny(p, `/\`); i >= 0 {
		return p[i+1:]
	}
	return p
}
