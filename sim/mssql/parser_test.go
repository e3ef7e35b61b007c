package mssql

import (
	"strings"
	"testing"

	"github.com/chatdr/chatdr/sim/mssql/tds"
	"github.com/stretchr/testify/require"
)

func TestParseBatch_subset(t *testing.T) {
	tests := []struct {
		sql   string
		count int
	}{
		{"SELECT 1", 1},
		{"select 1; select 2;;", 2},
		{"SELECT 1\nSELECT 2", 2},
		{"USE [mgc] SELECT * FROM dbo.messages WHERE id >= 1 AND room IS NOT NULL ORDER BY 1 DESC", 2},
		{"INSERT dbo.messages (room) OUTPUT INSERTED.id, inserted.room VALUES (N'a'), ('b')", 1},
		{"ALTER DATABASE mgc SET SINGLE_USER WITH ROLLBACK IMMEDIATE; ALTER DATABASE mgc SET MULTI_USER", 2},
		{"BACKUP LOG mgc TO DISK = N'x.trn' WITH INIT, NORECOVERY, STATS = 10", 1},
		{"RESTORE LOG mgc FROM DISK = @p1 WITH FILE = 1, STANDBY = N'u.tuf'", 1},
		{"RESTORE DATABASE mgc WITH RECOVERY", 1},
		{"EXEC sp_who2 'active'", 1},
		{`SELECT "quoted", [br]]acket] FROM t`, 1},
		{"SELECT 'it''s' AS x -- trailing comment", 1},
		{"SET NOCOUNT ON; KILL 53", 2},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			stmts, err := parseBatch(tt.sql)
			require.NoError(t, err)
			require.Len(t, stmts, tt.count)
		})
	}
}

func TestParseBatch_errors(t *testing.T) {
	tests := []struct {
		sql    string
		number int32
		msg    string
	}{
		{"GO", 0, ""},                     // a bare name is EXEC GO: fails at run time with 2812
		{"SELECT 1\nGO\nSELECT 2", 0, ""}, // as in SQL Server: GO is the column alias of 1
		{"CREATE DATABASE x\nGO", 102, "Incorrect syntax near 'GO'."},
		{"SELECT * FROM t WHERE", 102, "Incorrect syntax near 'WHERE'."},
		{"SELECT * FROM WHERE", 156, "Incorrect syntax near the keyword 'WHERE'."},
		{"RESTORE LOG mgc FROM DISK = 'x' WITH RECOVERY, NORECOVERY", 102, "Incorrect syntax near 'NORECOVERY'."},
		{"/* unterminated", 102, "Incorrect syntax near '/* unterminated'."},
		{"SELECT " + strings.Repeat("(", 100000) + "1", 191, "Some part of your SQL statement is nested too deeply. Rewrite the query or break it up into smaller queries."},
		{"SELECT " + strings.Repeat("- ", 100000) + "1", 191, "Some part of your SQL statement is nested too deeply. Rewrite the query or break it up into smaller queries."},
		{strings.Repeat("BEGIN ", 100000), 191, "Some part of your SQL statement is nested too deeply. Rewrite the query or break it up into smaller queries."},
	}
	for _, tt := range tests {
		t.Run(tt.sql[:min(len(tt.sql), 40)], func(t *testing.T) {
			_, err := parseBatch(tt.sql)
			if tt.number == 0 {
				require.NoError(t, err)
				return
			}
			var e *tds.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, tt.number, e.Number)
			require.Equal(t, tt.msg, e.Message)
		})
	}
}

func FuzzParseBatch(f *testing.F) {
	for _, s := range []string{
		"SELECT TOP (3) id, body FROM dbo.messages WHERE room <> 'room0' ORDER BY id DESC",
		"INSERT INTO dbo.messages (room, sender, body) OUTPUT INSERTED.id VALUES (@p1, @p2, @p3)",
		"ALTER DATABASE mgc SET PARTNER = N'TCP://sqlpm.example:5022'",
		"ALTER DATABASE mgc SET PARTNER FAILOVER; ALTER DATABASE mgc SET PARTNER OFF",
		"ALTER DATABASE mgc SET PARTNER SAFETY FULL; ALTER DATABASE mgc SET PARTNER FORCE_SERVICE_ALLOW_DATA_LOSS",
		"ALTER DATABASE mgc SET WITNESS = 'TCP://w:7022'; ALTER DATABASE mgc SET WITNESS OFF",
		"EXEC msdb.dbo.sp_add_jobschedule @job_name = N'LSCopy_SQLP_mgc', @name = N's', @freq_type = 4, @freq_subday_type = 2, @freq_subday_interval = 10",
		"EXEC master.dbo.xp_servicecontrol N'STOP', N'SQLServerAgent'",
		"CREATE TABLE dbo.messages (id bigint IDENTITY(1,1) NOT NULL PRIMARY KEY, body nvarchar(max) DEFAULT N'x')",
		"BACKUP DATABASE mgc TO DISK = N'c:\\x.bak' WITH INIT, FORMAT, COPY_ONLY, CHECKSUM, COMPRESSION, STATS = 5",
		"RESTORE DATABASE mgc FROM DISK = N'x' WITH MOVE 'mgc' TO 'y', REPLACE, NORECOVERY",
		"SELECT DISTINCT redo_start_lsn FROM sys.master_files WHERE database_id=DB_ID('mgc') /* c */ -- d",
		"UPDATE t SET a = a + 1 WHERE b BETWEEN 1 AND 2 OR c IN (1, 2) AND d NOT LIKE 'x%'",
		"SELECT CAST(1 AS nvarchar(10)), CONVERT(int, '2'), -1.5e3, 0x0AFF, N'[', \"q\"",
		"IF DB_ID('mgc') IS NULL BEGIN CREATE DATABASE mgc; PRINT 'x' END ELSE SELECT 1",
		"IF NOT EXISTS (SELECT 1 FROM sys.tables WHERE name IN (SELECT name FROM t)) SELECT (SELECT MAX(id) FROM t) x",
		"SELECT CASE WHEN DATEDIFF(mi, a, GETDATE()) > 5 THEN 1 END FROM t ORDER BY a OFFSET 1 ROWS FETCH NEXT 2 ROWS ONLY",
		"SELECT a.x, COUNT(*) FROM t a LEFT JOIN u b ON a.id = b.id GROUP BY a.x HAVING COUNT(*) > 1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		stmts, err := parseBatch(sql)
		if err != nil {
			var e *tds.Error
			require.ErrorAs(t, err, &e)
			require.NotZero(t, e.Number)
			require.Nil(t, stmts)
		}
	})
}
