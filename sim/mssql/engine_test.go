package mssql

import (
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const createMessages = `CREATE TABLE dbo.messages (
	id bigint IDENTITY(1,1) NOT NULL PRIMARY KEY,
	room nvarchar(256) NOT NULL,
	sender nvarchar(256) NOT NULL,
	body nvarchar(max) NULL,
	posted_at datetime2 NOT NULL DEFAULT SYSUTCDATETIME()
)`

// setupMessages creates mgc with dbo.messages and n rows; it returns a pool
// on mgc.
func setupMessages(t *testing.T, ti *testInstance, n int) *sql.DB {
	t.Helper()
	master := ti.connect(t, "master")
	exec(t, master, "CREATE DATABASE mgc")
	db := ti.connect(t, "mgc")
	exec(t, db, createMessages)
	for i := 1; i <= n; i++ {
		var id int64
		err := db.QueryRowContext(t.Context(),
			"INSERT INTO dbo.messages (room, sender, body, posted_at) OUTPUT INSERTED.id VALUES (@p1, @p2, @p3, @p4)",
			fmt.Sprintf("room%d", i%3), "alice", fmt.Sprintf("message %d", i), time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC)).Scan(&id)
		require.NoError(t, err)
		require.Equal(t, int64(i), id)
	}
	return db
}

func TestInstance_Messages_insertAndQuery(t *testing.T) {
	ti := openTestInstance(t, "")
	db := setupMessages(t, ti, 100)

	require.Equal(t, int64(100), queryInt(t, db, "SELECT COUNT(*) FROM dbo.messages"))
	require.Equal(t, int64(100), queryInt(t, db, "SELECT MAX(id) FROM messages"))
	require.Equal(t, int64(1), queryInt(t, db, "select min(id) from [dbo].[messages]"))
	require.Equal(t, int64(34), queryInt(t, db, "SELECT COUNT(*) FROM mgc.dbo.messages WHERE room = N'room1'"))
	require.Equal(t, int64(11), queryInt(t, db, "SELECT COUNT(*) FROM dbo.messages WHERE id BETWEEN @p1 AND @p2", 10, 20))
	require.Equal(t, int64(2), queryInt(t, db, "SELECT COUNT(*) FROM dbo.messages WHERE id < 3 OR id > 100 OR body IS NULL"))

	rows, err := db.QueryContext(t.Context(), "SELECT TOP (3) id, body FROM dbo.messages WHERE room <> 'room0' ORDER BY id DESC")
	require.NoError(t, err)
	var got []string
	for rows.Next() {
		var id int64
		var body string
		require.NoError(t, rows.Scan(&id, &body))
		got = append(got, fmt.Sprintf("%d:%s", id, body))
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"100:message 100", "98:message 98", "97:message 97"}, got)

	// Paging.
	require.Equal(t, int64(11), queryInt(t, db, "SELECT id FROM dbo.messages ORDER BY id OFFSET 10 ROWS FETCH NEXT 5 ROWS ONLY"))
	require.Equal(t, int64(5), queryInt(t, db, "SELECT COUNT(*) FROM dbo.messages WHERE CASE WHEN id > 95 THEN 1 ELSE 0 END = 1"))

	// GROUP BY / HAVING / ORDER BY an alias or an aggregate.
	rows, err = db.QueryContext(t.Context(), "SELECT room, COUNT(*) AS n, MAX(id) FROM dbo.messages GROUP BY room HAVING COUNT(*) >= 33 ORDER BY n DESC, room")
	require.NoError(t, err)
	got = nil
	for rows.Next() {
		var room string
		var n, maxID int64
		require.NoError(t, rows.Scan(&room, &n, &maxID))
		got = append(got, fmt.Sprintf("%s:%d:%d", room, n, maxID))
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"room1:34:100", "room0:33:99", "room2:33:98"}, got)
	_, err = db.ExecContext(t.Context(), "SELECT room, sender FROM dbo.messages GROUP BY room")
	e := sqlError(t, err)
	require.Equal(t, int32(8120), e.Number)

	var posted time.Time
	var sender string
	require.NoError(t, db.QueryRowContext(t.Context(), "SELECT * FROM dbo.messages WHERE id = 5").Scan(new(int64), new(string), &sender, new(string), &posted))
	require.Equal(t, "alice", sender)
	require.Equal(t, time.Date(2026, 1, 1, 0, 0, 5, 0, time.UTC), posted.UTC())

	// Several rows in one statement, defaults, row counts.
	r := exec(t, db, "INSERT INTO dbo.messages (room, sender, body) VALUES ('r', 'bob', NULL), ('r', 'bob', N'it''s')")
	n, err := r.RowsAffected()
	require.NoError(t, err)
	require.Equal(t, int64(2), n)
	var body string
	require.NoError(t, db.QueryRowContext(t.Context(), "SELECT body FROM dbo.messages WHERE id = 102").Scan(&body))
	require.Equal(t, "it's", body)
	r = exec(t, db, "UPDATE dbo.messages SET body = 'edited' WHERE sender = 'BOB'")
	n, _ = r.RowsAffected()
	require.Equal(t, int64(2), n)
	r = exec(t, db, "DELETE FROM dbo.messages WHERE room = 'r'")
	n, _ = r.RowsAffected()
	require.Equal(t, int64(2), n)
	require.Equal(t, int64(100), queryInt(t, db, "SELECT COUNT(*) FROM dbo.messages"))
	// Identity values are not reused.
	require.Equal(t, int64(103), queryInt(t, db, "INSERT INTO dbo.messages (room, sender) OUTPUT inserted.id VALUES ('x', 'y')"))
}

func TestInstance_Select_scalars(t *testing.T) {
	ti := openTestInstance(t, "")
	db := ti.connect(t, "master")
	exec(t, db, "CREATE DATABASE mgc")
	tests := []struct {
		q    string
		want any
	}{
		{"SELECT 1", int64(1)},
		{"SELECT @@SERVERNAME", "SQL1"},
		{"SELECT SERVERPROPERTY('ProductVersion')", ProductVersion},
		{"SELECT SERVERPROPERTY('ServerName')", "SQL1"},
		{"SELECT SERVERPROPERTY('MachineName')", "SQL1"},
		{"SELECT SERVERPROPERTY('InstanceName')", nil},
		{"SELECT SERVERPROPERTY('Edition')", Edition},
		{"SELECT DB_ID('mgc')", int64(5)},
		{"SELECT IS_SRVROLEMEMBER('sysadmin')", int64(1)},
		{"SELECT CASE WHEN 1 = 2 THEN 'a' WHEN 2 = 2 THEN 'b' ELSE 'c' END", "b"},
		{"SELECT CASE DB_NAME() WHEN 'master' THEN 1 ELSE 0 END", int64(1)},
		{"SELECT CASE 1 WHEN 2 THEN 3 END", nil},
		{"SELECT DATEDIFF(minute, '2026-01-01 10:59:59', '2026-01-01 11:00:00')", int64(1)},
		{"SELECT DATEDIFF(day, '2026-01-01 23:00', '2026-01-03 01:00')", int64(2)},
		{"SELECT DATEPART(hour, DATEADD(mi, 90, '2026-01-01 10:00'))", int64(11)},
		{"SELECT DATEADD(month, 1, '2026-01-31')", time.Date(2026, 2, 28, 0, 0, 0, 0, time.UTC)},
		{"SELECT DATEADD(year, 1, '2024-02-29')", time.Date(2025, 2, 28, 0, 0, 0, 0, time.UTC)},
		{"SELECT CAST(SERVERPROPERTY('ProductMajorVersion') AS int)", int64(12)},
		{"SELECT DB_ID('nope')", nil},
		{"SELECT DB_NAME()", "master"},
		{"SELECT DB_NAME(4)", "msdb"},
		{"SELECT 2 + 3 * 4", int64(14)},
		{"SELECT N'a' + 'b' -- comment\n", "ab"},
		{"/* block /* nested */ */ SELECT [x] = 7", int64(7)},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			var v any
			require.NoError(t, db.QueryRowContext(t.Context(), tt.q).Scan(&v))
			require.Equal(t, tt.want, v)
		})
	}
	var version string
	require.NoError(t, db.QueryRowContext(t.Context(), "SELECT @@VERSION").Scan(&version))
	require.Contains(t, version, "Microsoft SQL Server 2014 (SP3)")
	require.Contains(t, version, "(simulated by chatdr)")
}

func TestInstance_SysDatabases(t *testing.T) {
	ti := openTestInstance(t, "")
	db := ti.connect(t, "master")
	exec(t, db, "CREATE DATABASE mgc; CREATE DATABASE mgccomp")
	exec(t, db, "ALTER DATABASE mgccomp SET RECOVERY SIMPLE")
	type dbrow struct {
		name, state, recovery, access string
		id                            int64
		standby, ro                   bool
	}
	read := func(where string, args ...any) []dbrow {
		rows, err := db.QueryContext(t.Context(), "SELECT name, database_id, state_desc, is_in_standby, recovery_model_desc, is_read_only, user_access_desc FROM sys.databases "+where, args...)
		require.NoError(t, err)
		defer rows.Close()
		var out []dbrow
		for rows.Next() {
			var r dbrow
			require.NoError(t, rows.Scan(&r.name, &r.id, &r.state, &r.standby, &r.recovery, &r.ro, &r.access))
			out = append(out, r)
		}
		require.NoError(t, rows.Err())
		return out
	}
	all := read("ORDER BY database_id")
	require.Len(t, all, 6)
	require.Equal(t, "master", all[0].name)
	require.Equal(t, "msdb", all[3].name)
	require.Equal(t, []dbrow{{name: "mgc", id: 5, state: "ONLINE", recovery: "FULL", access: "MULTI_USER"}}, read("WHERE name = @p1", "mgc"))
	require.Equal(t, []dbrow{{name: "mgccomp", id: 6, state: "ONLINE", recovery: "SIMPLE", access: "MULTI_USER"}}, read("WHERE database_id = 6"))

	// sys.master_files: redo_start_lsn is NULL for an ONLINE database.
	rows, err := db.QueryContext(t.Context(), "SELECT DISTINCT redo_start_lsn, redo_start_fork_guid FROM sys.master_files WHERE database_id=DB_ID('mgc')")
	require.NoError(t, err)
	defer rows.Close()
	count := 0
	for rows.Next() {
		var lsn, fork any
		require.NoError(t, rows.Scan(&lsn, &fork))
		require.Nil(t, lsn)
		require.Nil(t, fork)
		count++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, 1, count)
	require.Equal(t, int64(2), queryInt(t, db, "SELECT COUNT(*) FROM sys.master_files WHERE database_id = DB_ID(N'mgc')"))
}
