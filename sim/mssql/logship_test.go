package mssql

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mssqldrv "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"
)

// openNamed opens an instance called name on a loopback port.
func openNamed(t *testing.T, name, dir string, mod func(*Config)) *testInstance {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cfg := Config{Name: name, DataDir: dir, Logins: map[string]string{"sa": "pass"}, AgentTick: 50 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	in, err := Open(cfg)
	require.NoError(t, err)
	addr, err := in.Serve("127.0.0.1:0")
	require.NoError(t, err)
	ti := &testInstance{in: in, dir: dir, addr: addr.String()}
	t.Cleanup(func() { _ = in.Close() })
	return ti
}

// eventually polls cond every 50 ms until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func queryStr(t *testing.T, db *sql.DB, q string, args ...any) string {
	t.Helper()
	var s sql.NullString
	require.NoError(t, db.QueryRowContext(t.Context(), q, args...).Scan(&s), q)
	return s.String
}

// rpc calls a procedure by name and checks its return status is 0.
func rpc(t *testing.T, db *sql.DB, proc string, args ...any) {
	t.Helper()
	var rs mssqldrv.ReturnStatus
	_, err := db.ExecContext(t.Context(), proc, append(args, &rs)...)
	require.NoError(t, err, proc)
	require.EqualValues(t, 0, rs, proc)
}

// lsPair is a primary and a secondary with log shipping of mgc configured
// with the calls plugins/mssql/setup.go makes (1 s schedules).
type lsPair struct {
	p, s         *testInstance
	pdb, sdb     *sql.DB
	share, dest  string
	restoreMode  int
	copyJob      string
	restoreJob   string
	backupJobID  mssqldrv.UniqueIdentifier
	secondaryDir string
}

func schedule1s(t *testing.T, db *sql.DB, job mssqldrv.UniqueIdentifier, name string) {
	rpc(t, db, "msdb.dbo.sp_add_jobschedule", sql.Named("job_id", job), sql.Named("name", name), sql.Named("enabled", 1),
		sql.Named("freq_type", 4), sql.Named("freq_interval", 1), sql.Named("freq_subday_type", 2),
		sql.Named("freq_subday_interval", 1), sql.Named("active_start_time", 0))
	rpc(t, db, "msdb.dbo.sp_update_job", sql.Named("job_id", job), sql.Named("enabled", 1))
}

func setupLogShipping(t *testing.T, standby bool) *lsPair {
	t.Helper()
	share := t.TempDir()
	lp := &lsPair{share: share, dest: t.TempDir(), secondaryDir: t.TempDir()}
	lp.p = openNamed(t, "SQLP", "", func(c *Config) { c.Share = share })
	lp.s = openNamed(t, "SQLB", lp.secondaryDir, func(c *Config) { c.Share = share })
	lp.pdb, lp.sdb = lp.p.connect(t, "master"), lp.s.connect(t, "master")
	exec(t, lp.pdb, "CREATE DATABASE mgc")
	exec(t, lp.pdb, "USE mgc; "+createMessages)
	exec(t, lp.pdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', 'first')")
	full := filepath.Join(share, "mgc_full.bak")
	exec(t, lp.pdb, "BACKUP DATABASE mgc TO DISK = @p1 WITH INIT", full)
	if standby {
		lp.restoreMode = 1
		exec(t, lp.sdb, "RESTORE DATABASE mgc FROM DISK = @p1 WITH STANDBY = @p2", full, filepath.Join(lp.dest, "mgc_undo.tuf"))
	} else {
		exec(t, lp.sdb, "RESTORE DATABASE mgc FROM DISK = @p1 WITH NORECOVERY", full)
	}

	// Primary (setup.go setupPrimary).
	var primaryID mssqldrv.UniqueIdentifier
	rpc(t, lp.pdb, "master.dbo.sp_add_log_shipping_primary_database",
		sql.Named("database", "mgc"), sql.Named("backup_directory", share), sql.Named("backup_share", share),
		sql.Named("backup_job_name", "LSBackup_mgc"), sql.Named("backup_retention_period", 4320),
		sql.Named("backup_threshold", 60), sql.Named("threshold_alert_enabled", 1), sql.Named("history_retention_period", 5760),
		sql.Named("backup_job_id", sql.Out{Dest: &lp.backupJobID}), sql.Named("primary_id", sql.Out{Dest: &primaryID}))
	require.NotEqual(t, mssqldrv.UniqueIdentifier{}, lp.backupJobID)
	require.Equal(t, strings.ToUpper(lp.backupJobID.String()),
		strings.ToUpper(queryStr(t, lp.pdb, "SELECT CAST(job_id AS nvarchar(36)) FROM msdb.dbo.sysjobs WHERE name = N'LSBackup_mgc'")))
	schedule1s(t, lp.pdb, lp.backupJobID, "LSBackupSchedule_mgc")
	rpc(t, lp.pdb, "master.dbo.sp_add_log_shipping_primary_secondary",
		sql.Named("primary_database", "mgc"), sql.Named("secondary_server", "SQLB"), sql.Named("secondary_database", "mgc"))

	// Secondary (setup.go setupSecondary).
	var copyID, restoreID, secID mssqldrv.UniqueIdentifier
	lp.copyJob, lp.restoreJob = "LSCopy_SQLP_mgc", "LSRestore_SQLP_mgc"
	rpc(t, lp.sdb, "master.dbo.sp_add_log_shipping_secondary_primary",
		sql.Named("primary_server", "SQLP"), sql.Named("primary_database", "mgc"),
		sql.Named("backup_source_directory", share), sql.Named("backup_destination_directory", lp.dest),
		sql.Named("copy_job_name", lp.copyJob), sql.Named("restore_job_name", lp.restoreJob),
		sql.Named("file_retention_period", 4320),
		sql.Named("copy_job_id", sql.Out{Dest: &copyID}), sql.Named("restore_job_id", sql.Out{Dest: &restoreID}),
		sql.Named("secondary_id", sql.Out{Dest: &secID}))
	schedule1s(t, lp.sdb, copyID, "LSCopySchedule_SQLP_mgc")
	schedule1s(t, lp.sdb, restoreID, "LSRestoreSchedule_SQLP_mgc")
	rpc(t, lp.sdb, "master.dbo.sp_add_log_shipping_secondary_database",
		sql.Named("secondary_database", "mgc"), sql.Named("primary_server", "SQLP"), sql.Named("primary_database", "mgc"),
		sql.Named("restore_delay", 0), sql.Named("restore_all", 1), sql.Named("restore_mode", lp.restoreMode),
		sql.Named("disconnect_users", 0), sql.Named("restore_threshold", 45), sql.Named("threshold_alert_enabled", 1))
	return lp
}

func (lp *lsPair) lastRestored(t *testing.T) string {
	return queryStr(t, lp.sdb, "SELECT last_restored_file FROM msdb.dbo.log_shipping_monitor_secondary WHERE secondary_database = N'mgc'")
}

func (lp *lsPair) lastBackup(t *testing.T) string {
	return queryStr(t, lp.pdb, "SELECT last_backup_file FROM msdb.dbo.log_shipping_monitor_primary WHERE primary_database = N'mgc'")
}

// waitBackups waits until the primary's backup job took n more backups.
func (lp *lsPair) waitBackups(t *testing.T, n int) {
	t.Helper()
	last := lp.lastBackup(t)
	for range n {
		eventually(t, 10*time.Second, "a new log backup on the primary", func() bool {
			b := lp.lastBackup(t)
			if b != last {
				last = b
				return true
			}
			return false
		})
	}
}

func TestLogShipping_endToEndStandby(t *testing.T) {
	lp := setupLogShipping(t, true)
	for i := range 5 {
		exec(t, lp.pdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', @p1)", fmt.Sprint("m", i))
	}
	eventually(t, 15*time.Second, "6 rows on the secondary", func() bool {
		var n int64
		err := lp.sdb.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM mgc.dbo.messages").Scan(&n)
		return err == nil && n == 6
	})
	// The snapshot query of plugins/mssql/logship.go.
	row := lp.sdb.QueryRowContext(t.Context(), `SELECT lss.primary_server, lss.primary_database, lsd.secondary_database,
 lss.backup_source_directory, lss.backup_destination_directory, lss.last_copied_file, lsd.last_restored_file, lsd.restore_mode,
 j1.name AS copy_job, j2.name AS restore_job
FROM msdb.dbo.log_shipping_secondary lss
JOIN msdb.dbo.log_shipping_secondary_databases lsd ON lsd.secondary_id = lss.secondary_id
JOIN msdb.dbo.sysjobs j1 ON j1.job_id = lss.copy_job_id
JOIN msdb.dbo.sysjobs j2 ON j2.job_id = lss.restore_job_id
WHERE lsd.secondary_database = @p1`, "mgc")
	var ps, pd, sd, src, dst, job1, job2 string
	var lc, lr sql.NullString
	var mode bool
	require.NoError(t, row.Scan(&ps, &pd, &sd, &src, &dst, &lc, &lr, &mode, &job1, &job2))
	require.Equal(t, "SQLP", ps)
	require.Equal(t, lp.share, src)
	require.Equal(t, lp.dest, dst)
	require.True(t, mode)
	require.Equal(t, lp.copyJob, job1)
	require.Equal(t, lp.restoreJob, job2)
	require.True(t, strings.HasSuffix(lc.String, ".trn"), lc.String)
	require.NotEmpty(t, lr.String)
	// File names: <db>_yyyymmddhhmmss.trn; no .wrk left behind.
	files, err := os.ReadDir(lp.dest)
	require.NoError(t, err)
	for _, f := range files {
		require.NotContains(t, f.Name(), ".wrk")
		if strings.HasSuffix(f.Name(), ".trn") {
			require.Regexp(t, `^mgc_\d{14}\.trn$`, f.Name())
		}
	}
	// History and monitor: a job's outcome row is written when the job run
	// ends, which can be just after the restore it made is visible.
	eventually(t, 30*time.Second, "a successful restore job outcome in sysjobhistory", func() bool {
		return queryInt(t, lp.sdb, `SELECT COUNT(*) FROM msdb.dbo.sysjobhistory h JOIN msdb.dbo.sysjobs j ON j.job_id = h.job_id
		WHERE j.name = @p1 AND h.step_id = 0 AND h.run_status = 1`, lp.restoreJob) > 0
	})
	eventually(t, 30*time.Second, "a successful backup session in the monitor history", func() bool {
		return queryInt(t, lp.pdb, `SELECT COUNT(*) FROM msdb.dbo.log_shipping_monitor_history_detail WHERE agent_type = 0 AND session_status = 2`) > 0
	})
	rows, err := lp.sdb.QueryContext(t.Context(), "EXEC master.dbo.sp_help_log_shipping_monitor")
	require.NoError(t, err)
	n := 0
	for rows.Next() {
		n++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, 1, n)
	// The Agent session is visible.
	require.EqualValues(t, 1, queryInt(t, lp.sdb, "SELECT COUNT(*) FROM sys.dm_exec_sessions WHERE program_name LIKE N'SQLAgent%'"))
}

func TestLogShipping_agentStopStartAndGap(t *testing.T) {
	lp := setupLogShipping(t, true)
	count := func() int64 {
		var n int64
		if err := lp.sdb.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM mgc.dbo.messages").Scan(&n); err != nil {
			return -1
		}
		return n
	}
	exec(t, lp.pdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', 'x')")
	eventually(t, 15*time.Second, "2 rows on the secondary", func() bool { return count() == 2 })

	// Stop SQL Server Agent on the secondary: shipping stops.
	var state string
	require.NoError(t, lp.sdb.QueryRowContext(t.Context(), "EXEC master.dbo.xp_servicecontrol N'QUERYSTATE', N'SQLServerAgent'").Scan(&state))
	require.Equal(t, "Running.", state)
	sessions := queryInt(t, lp.sdb, "SELECT MAX(session_id) FROM msdb.dbo.syssessions")
	exec(t, lp.sdb, "EXEC master.dbo.xp_servicecontrol N'STOP', N'SQLServerAgent'")
	require.NoError(t, lp.sdb.QueryRowContext(t.Context(), "EXEC master.dbo.xp_servicecontrol N'QUERYSTATE', N'SQLServerAgent'").Scan(&state))
	require.Equal(t, "Stopped.", state)
	require.EqualValues(t, 0, queryInt(t, lp.sdb, "SELECT COUNT(*) FROM sys.dm_exec_sessions WHERE program_name LIKE N'SQLAgent%'"))
	_, err := lp.sdb.ExecContext(t.Context(), "msdb.dbo.sp_start_job", sql.Named("job_name", lp.copyJob))
	require.EqualValues(t, 22022, sqlError(t, err).Number)
	eventually(t, 10*time.Second, "no job running on the secondary", func() bool {
		return queryInt(t, lp.sdb, `SELECT COUNT(*) FROM msdb.dbo.sysjobactivity WHERE session_id = @p1
			AND start_execution_date IS NOT NULL AND stop_execution_date IS NULL`, sessions) == 0
	})
	copied := queryStr(t, lp.sdb, "SELECT last_copied_file FROM msdb.dbo.log_shipping_secondary")
	exec(t, lp.pdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', 'y')")
	lp.waitBackups(t, 2)
	require.Equal(t, copied, queryStr(t, lp.sdb, "SELECT last_copied_file FROM msdb.dbo.log_shipping_secondary"))
	require.EqualValues(t, 2, count())

	// A gap: delete the first backup the secondary has not copied.
	files, err := lsFiles(lp.share, "mgc")
	require.NoError(t, err)
	var missing string
	for _, f := range files {
		if after(f, copied) {
			missing = f
			break
		}
	}
	require.NotEmpty(t, missing)
	require.NoError(t, os.Remove(filepath.Join(lp.share, missing)))

	// Start the Agent: a new session; the copy job runs, the restore job
	// stops at the gap with 4305.
	exec(t, lp.sdb, "EXEC master.dbo.xp_servicecontrol N'START', N'SQLServerAgent'")
	require.EqualValues(t, sessions+1, queryInt(t, lp.sdb, "SELECT MAX(session_id) FROM msdb.dbo.syssessions"))
	eventually(t, 15*time.Second, "the copy job to resume", func() bool {
		return queryStr(t, lp.sdb, "SELECT last_copied_file FROM msdb.dbo.log_shipping_secondary") != copied
	})
	require.EqualValues(t, 1, queryInt(t, lp.sdb, "SELECT COUNT(*) FROM sys.dm_exec_sessions WHERE program_name = N'SQLAgent - Generic Refresher'"))
	eventually(t, 15*time.Second, "4305 in the log-shipping monitor", func() bool {
		return queryInt(t, lp.sdb, `SELECT COUNT(*) FROM msdb.dbo.log_shipping_monitor_error_detail
			WHERE database_name = N'mgc' AND agent_type = 2 AND message LIKE N'%Msg 4305%'`) > 0
	})
	eventually(t, 10*time.Second, "a failed restore job in sysjobhistory", func() bool {
		return queryInt(t, lp.sdb, `SELECT COUNT(*) FROM msdb.dbo.sysjobhistory h JOIN msdb.dbo.sysjobs j ON j.job_id = h.job_id
			WHERE j.name = @p1 AND h.step_id = 1 AND h.run_status = 0 AND h.sql_message_id = 4305`, lp.restoreJob) > 0
	})
	require.EqualValues(t, 2, count())
}

func TestLogShipping_tailLogThenRecovery(t *testing.T) {
	lp := setupLogShipping(t, false)
	for i := range 3 {
		exec(t, lp.pdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', @p1)", fmt.Sprint("m", i))
	}
	want := queryInt(t, lp.pdb, "SELECT COUNT(*) FROM mgc.dbo.messages")
	// The secondary refuses reads while RESTORING.
	_, err := lp.sdb.ExecContext(t.Context(), "SELECT COUNT(*) FROM mgc.dbo.messages")
	require.EqualValues(t, 927, sqlError(t, err).Number)

	tail := filepath.Join(lp.share, "mgc_99991231235959.trn")
	exec(t, lp.pdb, "BACKUP LOG mgc TO DISK = @p1 WITH NORECOVERY", tail)
	eventually(t, 15*time.Second, "the tail-log backup restored on the secondary", func() bool {
		return lp.lastRestored(t) == filepath.Join(lp.dest, filepath.Base(tail))
	})
	// Stop and disable the jobs as the plugin does, then recover.
	for _, job := range []string{lp.copyJob, lp.restoreJob} {
		_, err := lp.sdb.ExecContext(t.Context(), "msdb.dbo.sp_stop_job", sql.Named("job_name", job))
		if err != nil {
			require.EqualValues(t, 22022, sqlError(t, err).Number)
		}
		rpc(t, lp.sdb, "msdb.dbo.sp_update_job", sql.Named("job_name", job), sql.Named("enabled", 0))
	}
	exec(t, lp.sdb, "RESTORE DATABASE mgc WITH RECOVERY")
	info, ok := lp.s.in.Database("mgc")
	require.True(t, ok)
	require.Equal(t, "ONLINE", info.State)
	require.Equal(t, want, queryInt(t, lp.sdb, "SELECT COUNT(*) FROM mgc.dbo.messages"))

	// F1: sp_delete_log_shipping_secondary_database removes the rows and
	// the copy and restore jobs.
	rpc(t, lp.sdb, "master.dbo.sp_delete_log_shipping_secondary_database", sql.Named("secondary_database", "mgc"))
	require.EqualValues(t, 0, queryInt(t, lp.sdb, "SELECT COUNT(*) FROM msdb.dbo.log_shipping_secondary_databases"))
	require.EqualValues(t, 0, queryInt(t, lp.sdb, "SELECT COUNT(*) FROM msdb.dbo.log_shipping_secondary"))
	require.EqualValues(t, 0, queryInt(t, lp.sdb, "SELECT COUNT(*) FROM msdb.dbo.sysjobs"))
	var rs mssqldrv.ReturnStatus
	_, err = lp.sdb.ExecContext(t.Context(), "master.dbo.sp_delete_log_shipping_secondary_database", sql.Named("secondary_database", "mgc"), &rs)
	require.EqualValues(t, 32010, sqlError(t, err).Number)
}

func TestLogShipping_procedureErrors(t *testing.T) {
	ti := openNamed(t, "SQLP", "", nil)
	db := ti.connect(t, "master")
	call := func(proc string, args ...any) error {
		_, err := db.ExecContext(t.Context(), proc, args...)
		return err
	}
	add := func(name string) error {
		return call("master.dbo.sp_add_log_shipping_primary_database", sql.Named("database", name),
			sql.Named("backup_directory", t.TempDir()), sql.Named("backup_share", `\\x\y`), sql.Named("backup_job_name", "LSBackup_"+name))
	}
	require.EqualValues(t, 15010, sqlError(t, add("nope")).Number)
	exec(t, db, "CREATE DATABASE s1; ALTER DATABASE s1 SET RECOVERY SIMPLE")
	require.EqualValues(t, 32015, sqlError(t, add("s1")).Number)
	exec(t, db, "CREATE DATABASE f1")
	require.NoError(t, add("f1"))
	require.EqualValues(t, 32001, sqlError(t, add("f1")).Number)
	// The backup job is created disabled, without a schedule.
	require.EqualValues(t, 0, queryInt(t, db, "SELECT enabled FROM msdb.dbo.sysjobs WHERE name = N'LSBackup_f1'"))
	// Bad arguments.
	require.EqualValues(t, 201, sqlError(t, call("master.dbo.sp_add_log_shipping_primary_database", sql.Named("database", "f1"))).Number)
	require.EqualValues(t, 8145, sqlError(t, call("msdb.dbo.sp_update_job", sql.Named("job_name", "LSBackup_f1"), sql.Named("bogus", 1))).Number)
	require.EqualValues(t, 14262, sqlError(t, call("msdb.dbo.sp_update_job", sql.Named("job_name", "nope"), sql.Named("enabled", 1))).Number)
	require.EqualValues(t, 2812, sqlError(t, call("master.dbo.sp_update_job", sql.Named("job_name", "LSBackup_f1"), sql.Named("enabled", 1))).Number)
	require.EqualValues(t, 22022, sqlError(t, call("msdb.dbo.sp_stop_job", sql.Named("job_name", "LSBackup_f1"))).Number)
	require.EqualValues(t, 14266, sqlError(t, call("msdb.dbo.sp_add_jobschedule", sql.Named("job_name", "LSBackup_f1"), sql.Named("name", "s"),
		sql.Named("freq_type", 4), sql.Named("freq_interval", 1), sql.Named("freq_subday_type", 3), sql.Named("freq_subday_interval", 1))).Number)
	// A secondary database needs its primary registered first.
	require.EqualValues(t, 32023, sqlError(t, call("master.dbo.sp_add_log_shipping_secondary_database", sql.Named("secondary_database", "f1"),
		sql.Named("primary_server", "X"), sql.Named("primary_database", "f1"))).Number)
	// Delete the primary: the job goes with it.
	rpc(t, db, "master.dbo.sp_delete_log_shipping_primary_database", sql.Named("database", "f1"))
	require.EqualValues(t, 0, queryInt(t, db, "SELECT COUNT(*) FROM msdb.dbo.sysjobs"))
	require.EqualValues(t, 32014, sqlError(t, call("master.dbo.sp_delete_log_shipping_primary_database", sql.Named("database", "f1"))).Number)
	// EXEC form with positional arguments.
	_, err := ti.in.Exec(context.Background(), "master", "EXEC sp_delete_log_shipping_secondary_database mgc")
	require.EqualValues(t, 32010, sqlNumber(err))
}

func TestLogShipping_jobsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	ti := openNamed(t, "SQLP", dir, nil)
	db := ti.connect(t, "master")
	exec(t, db, "CREATE DATABASE mgc")
	var jobID mssqldrv.UniqueIdentifier
	rpc(t, db, "master.dbo.sp_add_log_shipping_primary_database", sql.Named("database", "mgc"),
		sql.Named("backup_directory", t.TempDir()), sql.Named("backup_share", `\\x\y`), sql.Named("backup_job_name", "LSBackup_mgc"),
		sql.Named("backup_job_id", sql.Out{Dest: &jobID}))
	schedule1s(t, db, jobID, "LSBackupSchedule_mgc")
	exec(t, db, "EXEC master.dbo.xp_servicecontrol N'STOP', N'SQLServerAgent'")
	require.NoError(t, db.Close())
	require.NoError(t, ti.in.Close())

	ti2 := openNamed(t, "SQLP", dir, nil)
	db2 := ti2.connect(t, "master")
	require.EqualValues(t, 1, queryInt(t, db2, `SELECT j.enabled FROM msdb.dbo.sysjobs j JOIN msdb.dbo.sysjobschedules js ON js.job_id = j.job_id
		JOIN msdb.dbo.sysschedules s ON s.schedule_id = js.schedule_id WHERE j.name = N'LSBackup_mgc' AND s.freq_subday_interval = 1`))
	// Agent stays stopped across the restart.
	require.False(t, ti2.in.AgentRunning())
	exec(t, db2, "EXEC master.dbo.xp_servicecontrol N'START', N'SQLServerAgent'")
	require.EqualValues(t, 2, queryInt(t, db2, "SELECT MAX(session_id) FROM msdb.dbo.syssessions"))
	eventually(t, 5*time.Second, "next_run_date set by the scheduler", func() bool {
		return queryInt(t, db2, "SELECT next_run_date FROM msdb.dbo.sysjobschedules") > 20000101
	})
}

func TestChatdrFault_shareAndRequests(t *testing.T) {
	share := t.TempDir()
	ti := openNamed(t, "SQLP", "", func(c *Config) { c.Share = share })
	db := ti.connect(t, "master")
	exec(t, db, "CREATE DATABASE mgc")
	exec(t, db, "BACKUP DATABASE mgc TO DISK = @p1", filepath.Join(share, "a.bak"))

	// The share becomes unreadable: BACKUP and RESTORE under it fail with
	// operating system error 5; elsewhere they work.
	exec(t, db, "EXEC master.dbo.sp_chatdr_fault @action = N'share_unreadable'")
	_, err := db.ExecContext(t.Context(), "BACKUP DATABASE mgc TO DISK = @p1", filepath.Join(share, "b.bak"))
	e := sqlError(t, err)
	require.EqualValues(t, 3201, e.All[0].Number)
	require.Contains(t, e.All[0].Message, "Access is denied")
	require.EqualValues(t, 3013, e.Number)
	_, err = db.ExecContext(t.Context(), "RESTORE HEADERONLY FROM DISK = @p1", filepath.Join(share, "a.bak"))
	require.EqualValues(t, 3201, sqlError(t, err).All[0].Number)
	exec(t, db, "BACKUP DATABASE mgc TO DISK = @p1", filepath.Join(t.TempDir(), "c.bak"))
	exec(t, db, "EXEC master.dbo.sp_chatdr_fault @action = N'share_readable'")
	exec(t, db, "RESTORE HEADERONLY FROM DISK = @p1", filepath.Join(share, "a.bak"))

	// Request faults from outside the process.
	rpc(t, db, "master.dbo.sp_chatdr_fault", sql.Named("action", "add"), sql.Named("match", "(?i)^SELECT 42"),
		sql.Named("error", 1205), sql.Named("count", 1))
	_, err = db.ExecContext(t.Context(), "SELECT 42")
	require.EqualValues(t, 1205, sqlError(t, err).Number)
	require.EqualValues(t, 42, queryInt(t, db, "SELECT 42"))
	rpc(t, db, "master.dbo.sp_chatdr_fault", sql.Named("action", "add"), sql.Named("match", "SELECT 43"),
		sql.Named("error", 50001), sql.Named("count", -1))
	_, err = db.ExecContext(t.Context(), "SELECT 43")
	require.EqualValues(t, 50001, sqlError(t, err).Number)
	exec(t, db, "EXEC master.dbo.sp_chatdr_fault @action = N'clear'")
	require.EqualValues(t, 43, queryInt(t, db, "SELECT 43"))
	_, err = db.ExecContext(t.Context(), "EXEC master.dbo.sp_chatdr_fault @action = N'bogus'")
	require.EqualValues(t, 50000, sqlError(t, err).Number)
}

// TestLogShipping_ssmsScript runs the T-SQL SSMS generates ("Script
// Configuration"): variables, EXEC @rc = …, OUTPUT into variables,
// sp_add_schedule + sp_attach_schedule, @overwrite = 1.
func TestLogShipping_ssmsScript(t *testing.T) {
	ti := openNamed(t, "SQLP", "", nil)
	db := ti.connect(t, "master")
	exec(t, db, "CREATE DATABASE mgc")
	dir := t.TempDir()
	script := `DECLARE @LS_BackupJobId	AS uniqueidentifier
DECLARE @LS_PrimaryId	AS uniqueidentifier
DECLARE @SP_Add_RetCode	As int

EXEC @SP_Add_RetCode = master.dbo.sp_add_log_shipping_primary_database
		@database = N'mgc'
		,@backup_directory = N'` + dir + `'
		,@backup_share = N'\\fs\share'
		,@backup_job_name = N'LSBackup_mgc'
		,@backup_retention_period = 4320
		,@backup_compression = 2
		,@backup_threshold = 60
		,@threshold_alert_enabled = 1
		,@history_retention_period = 5760
		,@backup_job_id = @LS_BackupJobId OUTPUT
		,@primary_id = @LS_PrimaryId OUTPUT
		,@overwrite = 1

IF (@@ERROR = 0 AND @SP_Add_RetCode = 0)
BEGIN

DECLARE @LS_BackUpScheduleUID	As uniqueidentifier
DECLARE @LS_BackUpScheduleID	AS int

EXEC msdb.dbo.sp_add_schedule
		@schedule_name =N'LSBackupSchedule_SQLP1'
		,@enabled = 1
		,@freq_type = 4
		,@freq_interval = 1
		,@freq_subday_type = 4
		,@freq_subday_interval = 15
		,@freq_recurrence_factor = 0
		,@active_start_date = 20260101
		,@active_end_date = 99991231
		,@active_start_time = 0
		,@active_end_time = 235900
		,@schedule_uid = @LS_BackUpScheduleUID OUTPUT
		,@schedule_id = @LS_BackUpScheduleID OUTPUT

EXEC msdb.dbo.sp_attach_schedule
		@job_id = @LS_BackupJobId
		,@schedule_id = @LS_BackUpScheduleID

EXEC msdb.dbo.sp_update_job
		@job_id = @LS_BackupJobId
		,@enabled = 1

END

EXEC master.dbo.sp_add_log_shipping_alert_job

EXEC master.dbo.sp_add_log_shipping_primary_secondary
		@primary_database = N'mgc'
		,@secondary_server = N'SQLB'
		,@secondary_database = N'mgc'
		,@overwrite = 1
SELECT @SP_Add_RetCode AS rc, CAST(@LS_BackupJobId AS nvarchar(36)) AS job`
	var rc int64
	var job string
	require.NoError(t, db.QueryRowContext(t.Context(), script).Scan(&rc, &job))
	require.EqualValues(t, 0, rc)
	require.Equal(t, job, queryStr(t, db, "SELECT CAST(job_id AS nvarchar(36)) FROM msdb.dbo.sysjobs WHERE name = N'LSBackup_mgc'"))
	require.EqualValues(t, 1, queryInt(t, db, `SELECT COUNT(*) FROM msdb.dbo.sysjobs j JOIN msdb.dbo.sysjobschedules js ON js.job_id = j.job_id
		JOIN msdb.dbo.sysschedules s ON s.schedule_id = js.schedule_id WHERE j.name = N'LSBackup_mgc' AND j.enabled = 1 AND s.freq_subday_interval = 15`))
	require.EqualValues(t, 1, queryInt(t, db, "SELECT COUNT(*) FROM msdb.dbo.sysjobs WHERE name = N'LSAlert_SQLP'"))
	// Running it again (@overwrite = 1) keeps one configuration.
	_, err := db.ExecContext(t.Context(), script)
	require.NoError(t, err)
	require.EqualValues(t, 1, queryInt(t, db, "SELECT COUNT(*) FROM msdb.dbo.log_shipping_primary_databases"))
	require.EqualValues(t, 1, queryInt(t, db, "SELECT COUNT(*) FROM msdb.dbo.log_shipping_primary_secondaries"))
}

// TestLogShipping_standbyDisconnectsUsers: with restore_mode 1 and
// disconnect_users 1 the restore job ends the sessions in the secondary
// database that would block RESTORE (3101).
func TestLogShipping_standbyDisconnectsUsers(t *testing.T) {
	lp := setupLogShipping(t, true)
	rpc(t, lp.sdb, "master.dbo.sp_change_log_shipping_secondary_database", sql.Named("secondary_database", "mgc"), sql.Named("disconnect_users", 1))
	require.True(t, queryInt(t, lp.sdb, "SELECT CAST(disconnect_users AS int) FROM msdb.dbo.log_shipping_secondary_databases") == 1)
	reader := lp.s.connect(t, "mgc")
	conn, err := reader.Conn(t.Context())
	require.NoError(t, err)
	defer conn.Close()
	var n int64
	require.NoError(t, conn.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM dbo.messages").Scan(&n))
	require.EqualValues(t, 1, n)
	exec(t, lp.pdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', 'x')")
	eventually(t, 15*time.Second, "2 rows on the secondary", func() bool {
		return queryInt(t, lp.sdb, "SELECT COUNT(*) FROM mgc.dbo.messages") == 2
	})
	// The reader's session was ended.
	err = conn.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM dbo.messages").Scan(&n)
	require.Error(t, err)
}
