package mssql

import (
	"fmt"
	"strings"

	"github.com/chatdr/chatdr/sim/mssql/tds"
)

// Log shipping and SQL Server Agent tables in msdb: real tables (SELECT and
// joins work on them), written by the procedures below and by the jobs.
func init() {
	for k, v := range map[string]string{
		"log_shipping_primary_databases": `CREATE TABLE msdb.dbo.log_shipping_primary_databases (
			primary_id uniqueidentifier NOT NULL PRIMARY KEY, primary_database sysname NOT NULL,
			backup_directory nvarchar(500) NOT NULL, backup_share nvarchar(500) NOT NULL,
			backup_retention_period int NOT NULL, backup_job_id uniqueidentifier NOT NULL,
			monitor_server sysname NULL, user_specified_monitor bit NULL, monitor_server_security_mode bit NULL,
			last_backup_file nvarchar(500) NULL, last_backup_date datetime NULL, backup_compression tinyint NOT NULL)`,
		"log_shipping_primary_secondaries": `CREATE TABLE msdb.dbo.log_shipping_primary_secondaries (
			secondary_id uniqueidentifier NOT NULL PRIMARY KEY, primary_id uniqueidentifier NOT NULL,
			secondary_server sysname NOT NULL, secondary_database sysname NOT NULL)`,
		"log_shipping_secondary": `CREATE TABLE msdb.dbo.log_shipping_secondary (
			secondary_id uniqueidentifier NOT NULL PRIMARY KEY, primary_server sysname NOT NULL,
			primary_database sysname NOT NULL, backup_source_directory nvarchar(500) NOT NULL,
			backup_destination_directory nvarchar(500) NOT NULL, file_retention_period int NOT NULL,
			copy_job_id uniqueidentifier NOT NULL, restore_job_id uniqueidentifier NOT NULL,
			monitor_server sysname NULL, monitor_server_security_mode bit NULL, user_specified_monitor bit NULL,
			last_copied_file nvarchar(500) NULL, last_copied_date datetime NULL)`,
		"log_shipping_secondary_databases": `CREATE TABLE msdb.dbo.log_shipping_secondary_databases (
			secondary_database sysname NOT NULL PRIMARY KEY, secondary_id uniqueidentifier NOT NULL,
			restore_delay int NOT NULL, restore_all bit NOT NULL, restore_mode bit NOT NULL,
			disconnect_users bit NOT NULL, block_size int NULL, buffer_count int NULL, max_transfer_size int NULL,
			last_restored_file nvarchar(500) NULL, last_restored_date datetime NULL)`,
		"log_shipping_monitor_primary": `CREATE TABLE msdb.dbo.log_shipping_monitor_primary (
			primary_id uniqueidentifier NOT NULL PRIMARY KEY, primary_server sysname NOT NULL,
			primary_database sysname NOT NULL, backup_threshold int NOT NULL, threshold_alert int NOT NULL,
			threshold_alert_enabled bit NOT NULL, last_backup_file nvarchar(500) NULL,
			last_backup_date datetime NULL, last_backup_date_utc datetime NULL, history_retention_period int NOT NULL)`,
		"log_shipping_monitor_secondary": `CREATE TABLE msdb.dbo.log_shipping_monitor_secondary (
			secondary_server sysname NOT NULL, secondary_database sysname NOT NULL PRIMARY KEY,
			secondary_id uniqueidentifier NOT NULL, primary_server sysname NOT NULL, primary_database sysname NOT NULL,
			restore_threshold int NOT NULL, threshold_alert int NOT NULL, threshold_alert_enabled bit NOT NULL,
			last_copied_file nvarchar(500) NULL, last_copied_date datetime NULL, last_copied_date_utc datetime NULL,
			last_restored_file nvarchar(500) NULL, last_restored_date datetime NULL, last_restored_date_utc datetime NULL,
			last_restored_latency int NULL, history_retention_period int NOT NULL)`,
		"log_shipping_monitor_history_detail": `CREATE TABLE msdb.dbo.log_shipping_monitor_history_detail (
			agent_id uniqueidentifier NOT NULL, agent_type tinyint NOT NULL, session_id int NOT NULL,
			database_name sysname NULL, session_status tinyint NOT NULL, log_time datetime NOT NULL,
			log_time_utc datetime NOT NULL, message nvarchar(4000) NULL)`,
		"log_shipping_monitor_error_detail": `CREATE TABLE msdb.dbo.log_shipping_monitor_error_detail (
			agent_id uniqueidentifier NOT NULL, agent_type tinyint NOT NULL, session_id int NOT NULL,
			database_name sysname NULL, sequence_number int NOT NULL, log_time datetime NOT NULL,
			log_time_utc datetime NOT NULL, message nvarchar(4000) NULL, source nvarchar(4000) NULL, help_url nvarchar(4000) NULL)`,
		"sysjobs": `CREATE TABLE msdb.dbo.sysjobs (
			job_id uniqueidentifier NOT NULL PRIMARY KEY, originating_server_id int NOT NULL, name sysname NOT NULL,
			enabled tinyint NOT NULL, description nvarchar(512) NULL, start_step_id int NOT NULL, category_id int NOT NULL,
			owner_sid varbinary(85) NULL, date_created datetime NOT NULL, date_modified datetime NOT NULL, version_number int NOT NULL)`,
		"sysjobsteps": `CREATE TABLE msdb.dbo.sysjobsteps (
			job_id uniqueidentifier NOT NULL, step_id int NOT NULL, step_name sysname NOT NULL, subsystem nvarchar(40) NOT NULL,
			command nvarchar(max) NULL, database_name sysname NULL, last_run_outcome int NOT NULL,
			last_run_duration int NOT NULL, last_run_date int NOT NULL, last_run_time int NOT NULL)`,
		"sysschedules": `CREATE TABLE msdb.dbo.sysschedules (
			schedule_id int IDENTITY(1,1) NOT NULL PRIMARY KEY, schedule_uid uniqueidentifier NOT NULL,
			originating_server_id int NOT NULL, name sysname NOT NULL, owner_sid varbinary(85) NULL, enabled int NOT NULL,
			freq_type int NOT NULL, freq_interval int NOT NULL, freq_subday_type int NOT NULL, freq_subday_interval int NOT NULL,
			freq_relative_interval int NOT NULL, freq_recurrence_factor int NOT NULL, active_start_date int NOT NULL,
			active_end_date int NOT NULL, active_start_time int NOT NULL, active_end_time int NOT NULL,
			date_created datetime NOT NULL, date_modified datetime NOT NULL, version_number int NOT NULL)`,
		"sysjobschedules": `CREATE TABLE msdb.dbo.sysjobschedules (
			schedule_id int NOT NULL, job_id uniqueidentifier NOT NULL, next_run_date int NOT NULL, next_run_time int NOT NULL)`,
		"sysjobactivity": `CREATE TABLE msdb.dbo.sysjobactivity (
			session_id int NOT NULL, job_id uniqueidentifier NOT NULL, run_requested_date datetime NULL,
			run_requested_source sysname NULL, queued_date datetime NULL, start_execution_date datetime NULL,
			last_executed_step_id int NULL, last_executed_step_date datetime NULL, stop_execution_date datetime NULL,
			job_history_id int NULL, next_scheduled_run_date datetime NULL)`,
		"syssessions": `CREATE TABLE msdb.dbo.syssessions (
			session_id int IDENTITY(1,1) NOT NULL PRIMARY KEY, agent_start_date datetime NOT NULL)`,
		"sysjobhistory": `CREATE TABLE msdb.dbo.sysjobhistory (
			instance_id int IDENTITY(1,1) NOT NULL PRIMARY KEY, job_id uniqueidentifier NOT NULL, step_id int NOT NULL,
			step_name sysname NOT NULL, sql_message_id int NOT NULL, sql_severity int NOT NULL, message nvarchar(4000) NULL,
			run_status int NOT NULL, run_date int NOT NULL, run_time int NOT NULL, run_duration int NOT NULL,
			operator_id_emailed int NOT NULL, operator_id_netsent int NOT NULL, operator_id_paged int NOT NULL,
			retries_attempted int NOT NULL, server sysname NOT NULL)`,
	} {
		msdbTables[k] = v
	}
	for k, v := range map[int32]msgDef{
		201:   {16, 4, "Procedure or function '%s' expects parameter '%s', which was not supplied."},
		8145:  {16, 2, "%s is not a parameter for procedure %s."},
		15010: {16, 1, "The database '%s' does not exist. Supply a valid database name. To see available databases, use sys.databases."},
		14273: {16, 1, "You must provide either @job_id or @job_name (and, optionally, @schedule_name), or @schedule_id."},
		14294: {16, 1, "Supply either @job_id or @job_name to identify the job."},
		14262: {16, 1, "The specified %s ('%s') does not exist."},
		14261: {16, 1, "The specified %s ('%s') already exists."},
		14266: {16, 1, "The specified '%s' is invalid (valid values are: %s)."},
		22022: {16, 1, "%s"},
		22003: {16, 1, "%s"},
		32010: {16, 1, "Database %s does not exist as log shipping secondary."},
		32012: {16, 1, "Secondary %s.%s already exists for primary %s."},
		32013: {16, 1, "A log shipping entry already exists for secondary database %s."},
		32014: {16, 1, "Database %s does not exist as log shipping primary."},
		32015: {16, 1, "The primary database %s cannot have SIMPLE recovery for log shipping to work properly."},
		32001: {16, 1, "Log shipping primary database %s already exists."},
		32023: {16, 1, "An entry for primary server %s, primary database %s does not exist on this secondary. Register the primary first."},
		32024: {16, 1, "An entry for primary server %s, primary database %s already exists."},
		32011: {16, 1, "Primary Database %s has active log shipping secondary database(s). Drop the secondary database(s) first."},
		32025: {16, 1, "Secondary database %s must be in RESTORING or STANDBY state (it is %s)."},
		4305:  {16, 1, "The log in this backup set begins at LSN %s, which is too recent to apply to the database. An earlier log backup that includes LSN %s can be restored."},
	} {
		if _, ok := msgTable[k]; !ok {
			msgTable[k] = v
		}
	}
}

const lsCategory = 6 // "Log Shipping" job category

// lsAddPrimary is sp_add_log_shipping_primary_database: the primary row,
// its monitor row and the backup job LSBackup_<db> (created disabled,
// without a schedule).
func (x *execCtx) lsAddPrimary(c *procCall) (int32, error) {
	in := x.in
	name := c.str("database")
	d := in.db(name)
	if d == nil || d.system() {
		return 1, sqlErr(15010, name)
	}
	if d.Recovery == "SIMPLE" {
		return 1, sqlErr(32015, d.Name)
	}
	if pid, job, ok, err := in.primaryRow(d.Name); err != nil {
		return 1, err
	} else if ok {
		if c.num("overwrite", 0) == 0 {
			return 1, sqlErr(32001, d.Name)
		}
		// @overwrite = 1: the existing configuration takes the new settings.
		if _, err := in.q(`UPDATE dbo.log_shipping_primary_databases SET backup_directory = @dir, backup_share = @share,
			backup_retention_period = @ret, backup_compression = @comp WHERE primary_id = @id`,
			"@dir", c.str("backup_directory"), "@share", c.str("backup_share"), "@ret", c.num("backup_retention_period", 4320),
			"@comp", c.num("backup_compression", 2), "@id", pid); err != nil {
			return 1, err
		}
		c.out("backup_job_id", job)
		c.out("primary_id", pid)
		return 0, nil
	}
	jobName := c.str("backup_job_name")
	primaryID := newGUID()
	cmd := fmt.Sprintf(`"C:\Program Files\Microsoft SQL Server\120\Tools\Binn\sqllogship.exe" -Backup %s -server %s`, strings.ToUpper(primaryID.String()), in.cfg.Name)
	jobID, err := x.createJob(jobName, "Log shipping backup log job.", "Log shipping backup log job step.", cmd)
	if err != nil {
		return 1, err
	}
	if _, err := in.q(`INSERT INTO dbo.log_shipping_primary_databases (primary_id, primary_database, backup_directory, backup_share,
		backup_retention_period, backup_job_id, monitor_server, user_specified_monitor, monitor_server_security_mode, backup_compression)
		VALUES (@id, @db, @dir, @share, @ret, @job, @srv, 0, 1, @comp)`,
		"@id", primaryID, "@db", d.Name, "@dir", c.str("backup_directory"), "@share", c.str("backup_share"),
		"@ret", c.num("backup_retention_period", 4320), "@job", jobID, "@srv", in.cfg.Name, "@comp", c.num("backup_compression", 2)); err != nil {
		return 1, err
	}
	if _, err := in.q(`INSERT INTO dbo.log_shipping_monitor_primary (primary_id, primary_server, primary_database, backup_threshold,
		threshold_alert, threshold_alert_enabled, history_retention_period) VALUES (@id, @srv, @db, @thr, @alert, @en, @hist)`,
		"@id", primaryID, "@srv", in.cfg.Name, "@db", d.Name, "@thr", c.num("backup_threshold", 60),
		"@alert", c.num("threshold_alert", 14420), "@en", c.num("threshold_alert_enabled", 0) != 0,
		"@hist", c.num("history_retention_period", 14420)); err != nil {
		return 1, err
	}
	c.out("backup_job_id", jobID)
	c.out("primary_id", primaryID)
	return 0, nil
}

// primaryRow returns (primary_id, backup_job_id) of a primary database.
func (in *Instance) primaryRow(db string) (tds.GUID, tds.GUID, bool, error) {
	rows, err := in.q(`SELECT primary_id, backup_job_id FROM dbo.log_shipping_primary_databases WHERE primary_database = @db`, "@db", db)
	if err != nil || len(rows) == 0 {
		return tds.GUID{}, tds.GUID{}, false, err
	}
	p, _ := rows[0][0].(tds.GUID)
	j, _ := rows[0][1].(tds.GUID)
	return p, j, true, nil
}

func (x *execCtx) lsAddPrimarySecondary(c *procCall) (int32, error) {
	in := x.in
	db, srv, sdb := c.str("primary_database"), c.str("secondary_server"), c.str("secondary_database")
	pid, _, ok, err := in.primaryRow(db)
	if err != nil {
		return 1, err
	}
	if !ok {
		return 1, sqlErr(32014, db)
	}
	rows, err := in.q(`SELECT secondary_id FROM dbo.log_shipping_primary_secondaries WHERE primary_id = @p AND secondary_server = @s AND secondary_database = @d`,
		"@p", pid, "@s", srv, "@d", sdb)
	if err != nil {
		return 1, err
	}
	if len(rows) > 0 {
		if c.num("overwrite", 0) == 0 {
			return 1, sqlErr(32012, srv, sdb, db)
		}
		return 0, nil
	}
	_, err = in.q(`INSERT INTO dbo.log_shipping_primary_secondaries (secondary_id, primary_id, secondary_server, secondary_database) VALUES (@id, @p, @s, @d)`,
		"@id", newGUID(), "@p", pid, "@s", srv, "@d", sdb)
	if err != nil {
		return 1, err
	}
	return 0, nil
}

func (x *execCtx) lsDeletePrimarySecondary(c *procCall) (int32, error) {
	in := x.in
	db := c.str("primary_database")
	pid, _, ok, err := in.primaryRow(db)
	if err != nil {
		return 1, err
	}
	if !ok {
		return 1, sqlErr(32014, db)
	}
	_, err = in.q(`DELETE FROM dbo.log_shipping_primary_secondaries WHERE primary_id = @p AND secondary_server = @s AND secondary_database = @d`,
		"@p", pid, "@s", c.str("secondary_server"), "@d", c.str("secondary_database"))
	if err != nil {
		return 1, err
	}
	return 0, nil
}

// lsDeletePrimary is sp_delete_log_shipping_primary_database: it refuses
// while secondaries are registered (32011), then deletes the primary rows,
// the monitor rows and history, and the backup job.
func (x *execCtx) lsDeletePrimary(c *procCall) (int32, error) {
	in := x.in
	db := c.str("database")
	pid, job, ok, err := in.primaryRow(db)
	if err != nil {
		return 1, err
	}
	if !ok {
		return 1, sqlErr(32014, db)
	}
	if rows, err := in.q(`SELECT COUNT(*) FROM dbo.log_shipping_primary_secondaries WHERE primary_id = @p`, "@p", pid); err != nil {
		return 1, err
	} else if n, _ := rows[0][0].(int64); n > 0 {
		return 1, sqlErr(32011, db)
	}
	for _, q := range []string{
		`DELETE FROM dbo.log_shipping_primary_databases WHERE primary_id = @p`,
		`DELETE FROM dbo.log_shipping_monitor_primary WHERE primary_id = @p`,
		`DELETE FROM dbo.log_shipping_monitor_history_detail WHERE agent_id = @p AND agent_type = 0`,
		`DELETE FROM dbo.log_shipping_monitor_error_detail WHERE agent_id = @p AND agent_type = 0`,
	} {
		if _, err := in.q(q, "@p", pid); err != nil {
			return 1, err
		}
	}
	if err := x.deleteJob(job); err != nil {
		return 1, err
	}
	return 0, nil
}

func (x *execCtx) lsChangePrimary(c *procCall) (int32, error) {
	in := x.in
	db := c.str("database")
	pid, _, ok, err := in.primaryRow(db)
	if err != nil {
		return 1, err
	}
	if !ok {
		return 1, sqlErr(32014, db)
	}
	set := func(table, col, arg string, v any) error {
		if !c.given[arg] || c.vals[arg] == nil {
			return nil
		}
		_, err := in.q(`UPDATE dbo.`+table+` SET `+col+` = @v WHERE primary_id = @p`, "@v", v, "@p", pid)
		return err
	}
	for _, s := range []struct{ table, col, arg string }{
		{"log_shipping_primary_databases", "backup_directory", "backup_directory"},
		{"log_shipping_primary_databases", "backup_share", "backup_share"},
		{"log_shipping_primary_databases", "backup_retention_period", "backup_retention_period"},
		{"log_shipping_primary_databases", "backup_compression", "backup_compression"},
		{"log_shipping_monitor_primary", "backup_threshold", "backup_threshold"},
		{"log_shipping_monitor_primary", "threshold_alert", "threshold_alert"},
		{"log_shipping_monitor_primary", "threshold_alert_enabled", "threshold_alert_enabled"},
		{"log_shipping_monitor_primary", "history_retention_period", "history_retention_period"},
	} {
		if err := set(s.table, s.col, s.arg, c.vals[s.arg]); err != nil {
			return 1, err
		}
	}
	return 0, nil
}

// secondaryRow returns (secondary_id, copy_job_id, restore_job_id).
func (in *Instance) secondaryRow(server, db string) (sid, copyJob, restoreJob tds.GUID, ok bool, err error) {
	rows, err := in.q(`SELECT secondary_id, copy_job_id, restore_job_id FROM dbo.log_shipping_secondary WHERE primary_server = @s AND primary_database = @d`,
		"@s", server, "@d", db)
	if err != nil || len(rows) == 0 {
		return sid, copyJob, restoreJob, false, err
	}
	sid, _ = rows[0][0].(tds.GUID)
	copyJob, _ = rows[0][1].(tds.GUID)
	restoreJob, _ = rows[0][2].(tds.GUID)
	return sid, copyJob, restoreJob, true, nil
}

// lsAddSecondaryPrimary is sp_add_log_shipping_secondary_primary: the
// secondary row and the LSCopy / LSRestore jobs (created disabled).
func (x *execCtx) lsAddSecondaryPrimary(c *procCall) (int32, error) {
	in := x.in
	srv, db := c.str("primary_server"), c.str("primary_database")
	if sid, cj, rj, ok, err := in.secondaryRow(srv, db); err != nil {
		return 1, err
	} else if ok {
		if c.num("overwrite", 0) == 0 {
			return 1, sqlErr(32024, srv, db)
		}
		if _, err := in.q(`UPDATE dbo.log_shipping_secondary SET backup_source_directory = @src, backup_destination_directory = @dst,
			file_retention_period = @ret WHERE secondary_id = @id`, "@src", c.str("backup_source_directory"),
			"@dst", c.str("backup_destination_directory"), "@ret", c.num("file_retention_period", 14420), "@id", sid); err != nil {
			return 1, err
		}
		c.out("copy_job_id", cj)
		c.out("restore_job_id", rj)
		c.out("secondary_id", sid)
		return 0, nil
	}
	sid := newGUID()
	sidText := strings.ToUpper(sid.String())
	exe := `"C:\Program Files\Microsoft SQL Server\120\Tools\Binn\sqllogship.exe"`
	copyID, err := x.createJob(c.str("copy_job_name"), "Log shipping copy job.", "Log shipping copy job step.",
		fmt.Sprintf(`%s -Copy %s -server %s`, exe, sidText, in.cfg.Name))
	if err != nil {
		return 1, err
	}
	restoreID, err := x.createJob(c.str("restore_job_name"), "Log shipping restore log job.", "Log shipping restore log job step.",
		fmt.Sprintf(`%s -Restore %s -server %s`, exe, sidText, in.cfg.Name))
	if err != nil {
		return 1, err
	}
	if _, err := in.q(`INSERT INTO dbo.log_shipping_secondary (secondary_id, primary_server, primary_database, backup_source_directory,
		backup_destination_directory, file_retention_period, copy_job_id, restore_job_id, monitor_server, monitor_server_security_mode, user_specified_monitor)
		VALUES (@id, @s, @d, @src, @dst, @ret, @cj, @rj, @mon, 1, 0)`,
		"@id", sid, "@s", srv, "@d", db, "@src", c.str("backup_source_directory"), "@dst", c.str("backup_destination_directory"),
		"@ret", c.num("file_retention_period", 14420), "@cj", copyID, "@rj", restoreID, "@mon", in.cfg.Name); err != nil {
		return 1, err
	}
	c.out("copy_job_id", copyID)
	c.out("restore_job_id", restoreID)
	c.out("secondary_id", sid)
	return 0, nil
}

func (x *execCtx) lsAddSecondaryDatabase(c *procCall) (int32, error) {
	in := x.in
	name, srv, pdb := c.str("secondary_database"), c.str("primary_server"), c.str("primary_database")
	d := in.db(name)
	if d == nil {
		return 1, sqlErr(15010, name)
	}
	sid, _, _, ok, err := in.secondaryRow(srv, pdb)
	if err != nil {
		return 1, err
	}
	if !ok {
		return 1, sqlErr(32023, srv, pdb)
	}
	if rows, err := in.q(`SELECT secondary_id FROM dbo.log_shipping_secondary_databases WHERE secondary_database = @d`, "@d", d.Name); err != nil {
		return 1, err
	} else if len(rows) > 0 {
		if c.num("overwrite", 0) == 0 {
			return 1, sqlErr(32013, d.Name)
		}
		if _, err := in.q(`UPDATE dbo.log_shipping_secondary_databases SET restore_delay = @delay, restore_all = @all,
			restore_mode = @mode, disconnect_users = @disc WHERE secondary_database = @d`,
			"@d", d.Name, "@delay", c.num("restore_delay", 0), "@all", c.num("restore_all", 1) != 0,
			"@mode", c.num("restore_mode", 0) != 0, "@disc", c.num("disconnect_users", 0) != 0); err != nil {
			return 1, err
		}
		return 0, nil
	}
	if _, err := in.q(`INSERT INTO dbo.log_shipping_secondary_databases (secondary_database, secondary_id, restore_delay, restore_all,
		restore_mode, disconnect_users, block_size, buffer_count, max_transfer_size) VALUES (@d, @id, @delay, @all, @mode, @disc, @bs, @bc, @mts)`,
		"@d", d.Name, "@id", sid, "@delay", c.num("restore_delay", 0), "@all", c.num("restore_all", 1) != 0,
		"@mode", c.num("restore_mode", 0) != 0, "@disc", c.num("disconnect_users", 0) != 0,
		"@bs", c.num("block_size", -1), "@bc", c.num("buffer_count", -1), "@mts", c.num("max_transfer_size", 0)); err != nil {
		return 1, err
	}
	if _, err := in.q(`INSERT INTO dbo.log_shipping_monitor_secondary (secondary_server, secondary_database, secondary_id, primary_server,
		primary_database, restore_threshold, threshold_alert, threshold_alert_enabled, history_retention_period)
		VALUES (@srv, @d, @id, @ps, @pd, @thr, @alert, @en, @hist)`,
		"@srv", in.cfg.Name, "@d", d.Name, "@id", sid, "@ps", srv, "@pd", pdb, "@thr", c.num("restore_threshold", 45),
		"@alert", c.num("threshold_alert", 14421), "@en", c.num("threshold_alert_enabled", 0) != 0,
		"@hist", c.num("history_retention_period", 14420)); err != nil {
		return 1, err
	}
	return 0, nil
}

func (x *execCtx) lsChangeSecondaryDatabase(c *procCall) (int32, error) {
	in := x.in
	name := c.str("secondary_database")
	rows, err := in.q(`SELECT secondary_id FROM dbo.log_shipping_secondary_databases WHERE secondary_database = @d`, "@d", name)
	if err != nil {
		return 1, err
	}
	if len(rows) == 0 {
		return 1, sqlErr(32010, name)
	}
	for _, s := range []struct{ table, col string }{
		{"log_shipping_secondary_databases", "restore_delay"}, {"log_shipping_secondary_databases", "restore_all"},
		{"log_shipping_secondary_databases", "restore_mode"}, {"log_shipping_secondary_databases", "disconnect_users"},
		{"log_shipping_secondary_databases", "block_size"}, {"log_shipping_secondary_databases", "buffer_count"},
		{"log_shipping_secondary_databases", "max_transfer_size"},
		{"log_shipping_monitor_secondary", "restore_threshold"}, {"log_shipping_monitor_secondary", "threshold_alert"},
		{"log_shipping_monitor_secondary", "threshold_alert_enabled"}, {"log_shipping_monitor_secondary", "history_retention_period"},
	} {
		if c.isNull(s.col) {
			continue
		}
		if _, err := in.q(`UPDATE dbo.`+s.table+` SET `+s.col+` = @v WHERE secondary_database = @d`, "@v", c.vals[s.col], "@d", name); err != nil {
			return 1, err
		}
	}
	return 0, nil
}

func (x *execCtx) lsChangeSecondaryPrimary(c *procCall) (int32, error) {
	in := x.in
	srv, db := c.str("primary_server"), c.str("primary_database")
	sid, _, _, ok, err := in.secondaryRow(srv, db)
	if err != nil {
		return 1, err
	}
	if !ok {
		return 1, sqlErr(32023, srv, db)
	}
	for _, col := range []string{"backup_source_directory", "backup_destination_directory", "file_retention_period"} {
		if c.isNull(col) {
			continue
		}
		if _, err := in.q(`UPDATE dbo.log_shipping_secondary SET `+col+` = @v WHERE secondary_id = @id`, "@v", c.vals[col], "@id", sid); err != nil {
			return 1, err
		}
	}
	return 0, nil
}

// lsDeleteSecondaryDatabase is sp_delete_log_shipping_secondary_database:
// it deletes the secondary database's rows (log_shipping_secondary_databases,
// log_shipping_monitor_secondary) and its local restore history; when it
// was the last secondary database of its primary it also runs
// sp_delete_log_shipping_secondary_primary, which deletes the
// log_shipping_secondary row, the copy history and the LSCopy and
// LSRestore jobs (as SQL Server does).
func (x *execCtx) lsDeleteSecondaryDatabase(c *procCall) (int32, error) {
	in := x.in
	name := c.str("secondary_database")
	rows, err := in.q(`SELECT s.secondary_id, s.primary_server, s.primary_database FROM dbo.log_shipping_secondary_databases d
		JOIN dbo.log_shipping_secondary s ON s.secondary_id = d.secondary_id WHERE d.secondary_database = @d`, "@d", name)
	if err != nil {
		return 1, err
	}
	if len(rows) == 0 {
		return 1, sqlErr(32010, name)
	}
	sid := rows[0][0].(tds.GUID)
	for _, q := range []string{
		`DELETE FROM dbo.log_shipping_secondary_databases WHERE secondary_database = @d`,
		`DELETE FROM dbo.log_shipping_monitor_secondary WHERE secondary_database = @d`,
		`DELETE FROM dbo.log_shipping_monitor_history_detail WHERE agent_id = @id AND agent_type = 2 AND database_name = @d`,
		`DELETE FROM dbo.log_shipping_monitor_error_detail WHERE agent_id = @id AND agent_type = 2 AND database_name = @d`,
	} {
		if _, err := in.q(q, "@d", name, "@id", sid); err != nil {
			return 1, err
		}
	}
	left, err := in.q(`SELECT COUNT(*) FROM dbo.log_shipping_secondary_databases WHERE secondary_id = @id`, "@id", sid)
	if err != nil {
		return 1, err
	}
	if n, _ := left[0][0].(int64); n == 0 {
		ps, _ := rows[0][1].(string)
		pd, _ := rows[0][2].(string)
		if err := x.deleteSecondaryPrimary(ps, pd); err != nil {
			return 1, err
		}
	}
	return 0, nil
}

func (x *execCtx) deleteSecondaryPrimary(server, db string) error {
	in := x.in
	sid, cj, rj, ok, err := in.secondaryRow(server, db)
	if err != nil {
		return err
	}
	if !ok {
		return sqlErr(32023, server, db)
	}
	for _, q := range []string{
		`DELETE FROM dbo.log_shipping_secondary WHERE secondary_id = @id`,
		`DELETE FROM dbo.log_shipping_monitor_history_detail WHERE agent_id = @id`,
		`DELETE FROM dbo.log_shipping_monitor_error_detail WHERE agent_id = @id`,
	} {
		if _, err := in.q(q, "@id", sid); err != nil {
			return err
		}
	}
	if err := x.deleteJob(cj); err != nil {
		return err
	}
	return x.deleteJob(rj)
}

func (x *execCtx) lsDeleteSecondaryPrimary(c *procCall) (int32, error) {
	srv, db := c.str("primary_server"), c.str("primary_database")
	sid, _, _, ok, err := x.in.secondaryRow(srv, db)
	if err != nil {
		return 1, err
	}
	if !ok {
		return 1, sqlErr(32023, srv, db)
	}
	if rows, err := x.in.q(`SELECT COUNT(*) FROM dbo.log_shipping_secondary_databases WHERE secondary_id = @id`, "@id", sid); err != nil {
		return 1, err
	} else if n, _ := rows[0][0].(int64); n > 0 {
		return 1, sqlErr(32011, db)
	}
	if err := x.deleteSecondaryPrimary(srv, db); err != nil {
		return 1, err
	}
	return 0, nil
}

// lsHelpMonitor is sp_help_log_shipping_monitor: one row per primary and
// secondary database known to this server, with status 0 (good) or 1
// (alert: threshold passed or last job failed).
func (x *execCtx) lsHelpMonitor(c *procCall) (int32, error) {
	in := x.in
	cols := []resultCol{{"status", typeBit}, {"is_primary", typeBit}, {"server", typeSysname}, {"database_name", typeSysname},
		{"time_since_last_backup", typeInt}, {"last_backup_file", nvarchar(500)}, {"backup_threshold", typeInt},
		{"is_backup_alert_enabled", typeBit}, {"time_since_last_copy", typeInt}, {"last_copied_file", nvarchar(500)},
		{"time_since_last_restore", typeInt}, {"last_restored_file", nvarchar(500)}, {"last_restored_latency", typeInt},
		{"restore_threshold", typeInt}, {"is_restore_alert_enabled", typeBit}}
	now := in.cfg.Now().UTC()
	since := func(v any) any {
		t, ok := v.(interface{ Unix() int64 })
		if !ok || v == nil {
			return nil
		}
		return (now.Unix() - t.Unix()) / 60
	}
	var out [][]any
	prim, err := in.q(`SELECT primary_server, primary_database, last_backup_date_utc, last_backup_file, backup_threshold, threshold_alert_enabled
		FROM dbo.log_shipping_monitor_primary ORDER BY primary_database`)
	if err != nil {
		return 1, err
	}
	for _, r := range prim {
		status := false
		if m, ok := since(r[2]).(int64); (ok && m > asInt(r[4])) || r[2] == nil {
			status = true
		}
		out = append(out, []any{status, true, r[0], r[1], since(r[2]), r[3], r[4], r[5], nil, nil, nil, nil, nil, nil, nil})
	}
	sec, err := in.q(`SELECT secondary_server, secondary_database, last_copied_date_utc, last_copied_file, last_restored_date_utc,
		last_restored_file, last_restored_latency, restore_threshold, threshold_alert_enabled FROM dbo.log_shipping_monitor_secondary ORDER BY secondary_database`)
	if err != nil {
		return 1, err
	}
	for _, r := range sec {
		status := false
		if m, ok := since(r[4]).(int64); (ok && m > asInt(r[7])) || r[4] == nil {
			status = true
		}
		out = append(out, []any{status, false, r[0], r[1], nil, nil, nil, nil, since(r[2]), r[3], since(r[4]), r[5], r[6], r[7], r[8]})
	}
	c.result(cols, out)
	return 0, nil
}

// lsAddAlertJob is sp_add_log_shipping_alert_job: the job LSAlert_<server>
// (created once; its step checks the thresholds, which
// sp_help_log_shipping_monitor reports; it has no schedule here).
func (x *execCtx) lsAddAlertJob(c *procCall) (int32, error) {
	in := x.in
	name := "LSAlert_" + in.cfg.Name
	j, err := in.findJob(tds.GUID{}, false, name)
	if err != nil {
		return 1, err
	}
	id := tds.GUID{}
	if j != nil {
		id = j.id
	} else if id, err = x.createJob(name, "Log shipping alert job.", "Log shipping alert job step.",
		"EXEC master.dbo.sp_check_log_shipping_monitor_alert"); err != nil {
		return 1, err
	}
	c.out("alert_job_id", id)
	return 0, nil
}

func asInt(v any) int64 {
	i, _ := v.(int64)
	return i
}

func (x *execCtx) lsHelpPrimary(c *procCall) (int32, error) {
	rows, err := x.in.q(`SELECT p.primary_id, p.primary_database, p.backup_directory, p.backup_share, p.backup_retention_period,
		p.backup_compression, p.backup_job_id, p.monitor_server, p.monitor_server_security_mode, m.backup_threshold, m.threshold_alert,
		m.threshold_alert_enabled, p.last_backup_file, p.last_backup_date, m.last_backup_date_utc, m.history_retention_period
		FROM dbo.log_shipping_primary_databases p JOIN dbo.log_shipping_monitor_primary m ON m.primary_id = p.primary_id
		WHERE p.primary_database = @d`, "@d", c.str("database"))
	if err != nil {
		return 1, err
	}
	if len(rows) == 0 {
		return 1, sqlErr(32014, c.str("database"))
	}
	names := []string{"primary_id", "primary_database", "backup_directory", "backup_share", "backup_retention_period",
		"backup_compression", "backup_job_id", "monitor_server", "monitor_server_security_mode", "backup_threshold", "threshold_alert",
		"threshold_alert_enabled", "last_backup_file", "last_backup_date", "last_backup_date_utc", "history_retention_period"}
	c.result(inferCols(names, rows), rows)
	return 0, nil
}

func (x *execCtx) lsHelpSecondary(c *procCall) (int32, error) {
	rows, err := x.in.q(`SELECT s.secondary_id, s.primary_server, s.primary_database, s.backup_source_directory,
		s.backup_destination_directory, s.file_retention_period, s.copy_job_id, s.restore_job_id, s.monitor_server,
		d.secondary_database, d.restore_delay, d.restore_all, d.restore_mode, d.disconnect_users, d.block_size, d.buffer_count,
		d.max_transfer_size, m.restore_threshold, m.threshold_alert, m.threshold_alert_enabled, s.last_copied_file, s.last_copied_date,
		m.last_copied_date_utc, d.last_restored_file, d.last_restored_date, m.last_restored_date_utc, m.history_retention_period
		FROM dbo.log_shipping_secondary_databases d JOIN dbo.log_shipping_secondary s ON s.secondary_id = d.secondary_id
		JOIN dbo.log_shipping_monitor_secondary m ON m.secondary_database = d.secondary_database
		WHERE d.secondary_database = @d`, "@d", c.str("secondary_database"))
	if err != nil {
		return 1, err
	}
	if len(rows) == 0 {
		return 1, sqlErr(32010, c.str("secondary_database"))
	}
	names := []string{"secondary_id", "primary_server", "primary_database", "backup_source_directory",
		"backup_destination_directory", "file_retention_period", "copy_job_id", "restore_job_id", "monitor_server",
		"secondary_database", "restore_delay", "restore_all", "restore_mode", "disconnect_users", "block_size", "buffer_count",
		"max_transfer_size", "restore_threshold", "threshold_alert", "threshold_alert_enabled", "last_copied_file", "last_copied_date",
		"last_copied_date_utc", "last_restored_file", "last_restored_date", "last_restored_date_utc", "history_retention_period"}
	c.result(inferCols(names, rows), rows)
	return 0, nil
}

func inferCols(names []string, rows [][]any) []resultCol {
	cols := make([]resultCol, len(names))
	for i, n := range names {
		cols[i] = resultCol{n, inferType(rows, i)}
	}
	return cols
}
