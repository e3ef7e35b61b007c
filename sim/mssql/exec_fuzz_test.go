package mssql

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzInstance_Exec runs arbitrary batches through the engine: no panic and
// no hang, whatever the text.
func FuzzInstance_Exec(f *testing.F) {
	in, err := Open(Config{Name: "SQL1", DataDir: f.TempDir(), Logins: map[string]string{"sa": "pass"}})
	require.NoError(f, err)
	f.Cleanup(func() { _ = in.Close() })
	_, err = in.Exec(context.Background(), "master", "CREATE DATABASE mgc")
	require.NoError(f, err)
	_, err = in.Exec(context.Background(), "mgc", createMessages+"; INSERT INTO dbo.messages (room, sender, body) VALUES ('a', 'b', 'c'), ('d', 'e', NULL)")
	require.NoError(f, err)
	// A full backup starts the log chain, so that writes are logged too.
	_, err = in.Exec(context.Background(), "master", "BACKUP DATABASE mgc TO DISK = '"+filepath.Join(f.TempDir(), "f.bak")+"'")
	require.NoError(f, err)
	for _, s := range []string{
		"SELECT TOP (3) id, body FROM dbo.messages WHERE room <> 'room0' ORDER BY id DESC",
		"SELECT COUNT(*), MAX(id), MIN(body) FROM dbo.messages WHERE body LIKE '%c%' OR id BETWEEN 1 AND 2",
		"INSERT INTO dbo.messages (room, sender) OUTPUT INSERTED.* VALUES ('x', 'y')",
		"UPDATE dbo.messages SET body = body + 'x' WHERE id IN (1, 2)",
		"SELECT DISTINCT state_desc FROM sys.databases ORDER BY state_desc",
		"SELECT CAST('2026-01-01' AS datetime2), CONVERT(int, '2') / 0",
		"SELECT * FROM sys.master_files WHERE redo_start_lsn IS NULL",
		"SELECT DB_NAME(DB_ID()), SERVERPROPERTY('Edition'), @@VERSION",
		"EXEC master.dbo.sp_add_log_shipping_primary_database @database = N'mgc', @backup_directory = N'/nonexistent', @backup_share = N'x', @backup_job_name = N'LSBackup_mgc'",
		"EXEC msdb.dbo.sp_add_jobschedule @job_name = N'LSBackup_mgc', @name = N's', @freq_type = 4, @freq_interval = 1, @freq_subday_type = 2, @freq_subday_interval = 1",
		"EXEC msdb.dbo.sp_update_job @job_name = N'LSBackup_mgc', @enabled = 1; EXEC msdb.dbo.sp_start_job N'LSBackup_mgc'",
		"EXEC master.dbo.xp_servicecontrol N'QUERYSTATE', N'SQLServerAgent'",
		"EXEC sp_help_log_shipping_monitor; EXEC msdb.dbo.sp_help_job",
		"SELECT j.name, a.start_execution_date FROM msdb.dbo.sysjobactivity a JOIN msdb.dbo.sysjobs j ON j.job_id = a.job_id",
		"ALTER DATABASE mgc SET PARTNER = 'TCP://127.0.0.1:1'",
		"ALTER DATABASE mgc SET PARTNER SAFETY OFF; ALTER DATABASE mgc SET WITNESS OFF",
		"SELECT * FROM sys.database_mirroring WHERE mirroring_guid IS NOT NULL",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = in.Exec(ctx, "mgc", sql)
	})
}
