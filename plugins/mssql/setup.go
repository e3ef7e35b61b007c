package mssql

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	mssqldb "github.com/microsoft/go-mssqldb"

	"github.com/chatdr/chatdr/pluginsdk"
)

// num reads a number parameter with a default.
func num(params pluginsdk.Params, key string, def int) int {
	if v, ok := params[key].(float64); ok && v > 0 {
		return int(v)
	}
	return def
}

// schedule adds a schedule that runs job every interval seconds, all day.
func schedule(ctx context.Context, db *sql.DB, jobID mssqldb.UniqueIdentifier, name string, interval int) error {
	subdayType, subday := 2, interval // seconds
	if interval%60 == 0 {
		subdayType, subday = 4, interval/60 // minutes
	}
	var rs mssqldb.ReturnStatus
	_, err := db.ExecContext(ctx, "msdb.dbo.sp_add_jobschedule",
		sql.Named("job_id", jobID), sql.Named("name", name), sql.Named("enabled", 1),
		sql.Named("freq_type", 4), sql.Named("freq_interval", 1),
		sql.Named("freq_subday_type", subdayType), sql.Named("freq_subday_interval", subday),
		sql.Named("active_start_time", 0), &rs)
	if err != nil {
		return sqlError("sp_add_jobschedule "+name, err)
	}
	if rs != 0 {
		return pluginsdk.Terminal("sp_failed", "sp_add_jobschedule %s returned %d", name, rs)
	}
	return nil
}

func enableJob(ctx context.Context, db *sql.DB, jobID mssqldb.UniqueIdentifier) error {
	var rs mssqldb.ReturnStatus
	if _, err := db.ExecContext(ctx, "msdb.dbo.sp_update_job", sql.Named("job_id", jobID), sql.Named("enabled", 1), &rs); err != nil {
		return sqlError("sp_update_job", err)
	}
	if rs != 0 {
		return pluginsdk.Terminal("sp_failed", "sp_update_job returned %d", rs)
	}
	return nil
}

// setupPrimary configures log shipping on the primary (domain §5.5 steps 2 and 5).
func (p *Plugin) setupPrimary(ctx context.Context, db *sql.DB, params pluginsdk.Params) (pluginsdk.Output, error) {
	name, _, err := database(params)
	if err != nil {
		return nil, err
	}
	backupDir, err := confine(p.roots, str(params, "backup_dir"))
	if err != nil {
		return nil, err
	}
	share := str(params, "backup_share") // as the secondary sees it: not a local path here
	secondary := str(params, "secondary_server")
	if share == "" || secondary == "" {
		return nil, pluginsdk.Terminal("bad_param", "backup_share and secondary_server are required")
	}
	interval := num(params, "interval_seconds", 300)
	changed := false
	rows, err := queryRows(ctx, db, `SELECT primary_id, backup_job_id FROM msdb.dbo.log_shipping_primary_databases WHERE primary_database = @p1`, name)
	if err != nil {
		return nil, sqlError("read msdb.dbo.log_shipping_primary_databases", err)
	}
	if len(rows) == 0 {
		var jobID, primaryID mssqldb.UniqueIdentifier
		var rs mssqldb.ReturnStatus
		_, err := db.ExecContext(ctx, "master.dbo.sp_add_log_shipping_primary_database",
			sql.Named("database", name), sql.Named("backup_directory", backupDir), sql.Named("backup_share", share),
			sql.Named("backup_job_name", "LSBackup_"+name), sql.Named("backup_retention_period", num(params, "retention_minutes", 4320)),
			sql.Named("backup_threshold", 60), sql.Named("threshold_alert_enabled", 1), sql.Named("history_retention_period", 5760),
			sql.Named("backup_job_id", sql.Out{Dest: &jobID}), sql.Named("primary_id", sql.Out{Dest: &primaryID}), &rs)
		if err != nil {
			return nil, sqlError("sp_add_log_shipping_primary_database "+name, err)
		}
		if rs != 0 {
			return nil, pluginsdk.Terminal("sp_failed", "sp_add_log_shipping_primary_database returned %d", rs)
		}
		if err := schedule(ctx, db, jobID, "LSBackupSchedule_"+name, interval); err != nil {
			return nil, err
		}
		if err := enableJob(ctx, db, jobID); err != nil {
			return nil, err
		}
		changed = true
	}
	links, err := queryRows(ctx, db, `SELECT s.secondary_server FROM msdb.dbo.log_shipping_primary_secondaries s
JOIN msdb.dbo.log_shipping_primary_databases d ON d.primary_id = s.primary_id
WHERE d.primary_database = @p1 AND s.secondary_server = @p2 AND s.secondary_database = @p1`, name, secondary)
	if err != nil {
		return nil, sqlError("read msdb.dbo.log_shipping_primary_secondaries", err)
	}
	if len(links) == 0 {
		var rs mssqldb.ReturnStatus
		if _, err := db.ExecContext(ctx, "master.dbo.sp_add_log_shipping_primary_secondary",
			sql.Named("primary_database", name), sql.Named("secondary_server", secondary), sql.Named("secondary_database", name), &rs); err != nil {
			return nil, sqlError("sp_add_log_shipping_primary_secondary", err)
		}
		if rs != 0 {
			return nil, pluginsdk.Terminal("sp_failed", "sp_add_log_shipping_primary_secondary returned %d", rs)
		}
		changed = true
	}
	return pluginsdk.Output{"database": name, "backup_dir": backupDir, "secondary_server": secondary, "interval_seconds": float64(interval), "changed": changed}, nil
}

// setupSecondary configures log shipping on the secondary (domain §5.5 steps 3 and 4).
func (p *Plugin) setupSecondary(ctx context.Context, db *sql.DB, params pluginsdk.Params) (pluginsdk.Output, error) {
	name, _, err := database(params)
	if err != nil {
		return nil, err
	}
	primary := str(params, "primary_server")
	src, err := confine(p.roots, str(params, "source_dir"))
	if err != nil {
		return nil, err
	}
	dst, err := confine(p.roots, str(params, "dest_dir"))
	if err != nil {
		return nil, err
	}
	if primary == "" {
		return nil, pluginsdk.Terminal("bad_param", "primary_server is required")
	}
	mode := 0
	switch str(params, "mode") {
	case "", "norecovery":
	case "standby":
		mode = 1
	default:
		return nil, pluginsdk.Terminal("bad_param", "mode %q: want norecovery or standby", str(params, "mode"))
	}
	st, err := readState(ctx, db, name)
	if err != nil {
		return nil, err
	}
	if !st.restoring() {
		return nil, pluginsdk.Terminal("not_restoring", "database %s is %s; a log-shipping secondary must be initialized RESTORING or STANDBY from a full backup of the primary", name, st.State)
	}
	interval := num(params, "interval_seconds", 300)
	changed := false
	rows, err := queryRows(ctx, db, `SELECT secondary_id FROM msdb.dbo.log_shipping_secondary WHERE primary_server = @p1 AND primary_database = @p2`, primary, name)
	if err != nil {
		return nil, sqlError("read msdb.dbo.log_shipping_secondary", err)
	}
	if len(rows) == 0 {
		var copyID, restoreID, secID mssqldb.UniqueIdentifier
		var rs mssqldb.ReturnStatus
		_, err := db.ExecContext(ctx, "master.dbo.sp_add_log_shipping_secondary_primary",
			sql.Named("primary_server", primary), sql.Named("primary_database", name),
			sql.Named("backup_source_directory", src), sql.Named("backup_destination_directory", dst),
			sql.Named("copy_job_name", fmt.Sprintf("LSCopy_%s_%s", primary, name)),
			sql.Named("restore_job_name", fmt.Sprintf("LSRestore_%s_%s", primary, name)),
			sql.Named("file_retention_period", 4320),
			sql.Named("copy_job_id", sql.Out{Dest: &copyID}), sql.Named("restore_job_id", sql.Out{Dest: &restoreID}),
			sql.Named("secondary_id", sql.Out{Dest: &secID}), &rs)
		if err != nil {
			return nil, sqlError("sp_add_log_shipping_secondary_primary", err)
		}
		if rs != 0 {
			return nil, pluginsdk.Terminal("sp_failed", "sp_add_log_shipping_secondary_primary returned %d", rs)
		}
		if err := schedule(ctx, db, copyID, fmt.Sprintf("LSCopySchedule_%s_%s", primary, name), interval); err != nil {
			return nil, err
		}
		if err := schedule(ctx, db, restoreID, fmt.Sprintf("LSRestoreSchedule_%s_%s", primary, name), interval); err != nil {
			return nil, err
		}
		for _, id := range []mssqldb.UniqueIdentifier{copyID, restoreID} {
			if err := enableJob(ctx, db, id); err != nil {
				return nil, err
			}
		}
		changed = true
	}
	dbs, err := queryRows(ctx, db, `SELECT secondary_database FROM msdb.dbo.log_shipping_secondary_databases WHERE secondary_database = @p1`, name)
	if err != nil {
		return nil, sqlError("read msdb.dbo.log_shipping_secondary_databases", err)
	}
	if len(dbs) == 0 {
		var rs mssqldb.ReturnStatus
		if _, err := db.ExecContext(ctx, "master.dbo.sp_add_log_shipping_secondary_database",
			sql.Named("secondary_database", name), sql.Named("primary_server", primary), sql.Named("primary_database", name),
			sql.Named("restore_delay", 0), sql.Named("restore_all", 1), sql.Named("restore_mode", mode),
			sql.Named("disconnect_users", 0), sql.Named("restore_threshold", 45), sql.Named("threshold_alert_enabled", 1), &rs); err != nil {
			return nil, sqlError("sp_add_log_shipping_secondary_database", err)
		}
		if rs != 0 {
			return nil, pluginsdk.Terminal("sp_failed", "sp_add_log_shipping_secondary_database returned %d", rs)
		}
		changed = true
	}
	return pluginsdk.Output{"database": name, "primary_server": primary, "source_dir": src, "dest_dir": dst,
		"interval_seconds": float64(interval), "changed": changed, "configured_at": time.Now().UTC().Format(time.RFC3339)}, nil
}
