package mssql

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// spid returns the session id of a dedicated connection.
func spid(t *testing.T, c *sql.Conn) int64 {
	t.Helper()
	var id int64
	require.NoError(t, c.QueryRowContext(t.Context(), "SELECT @@SPID").Scan(&id))
	return id
}

func TestInstance_Sessions_listAndKill(t *testing.T) {
	ti := openTestInstance(t, "")
	setupMessages(t, ti, 1)
	pool := ti.connect(t, "master")
	victimDB := ti.connect(t, "mgc")
	victim, err := victimDB.Conn(t.Context())
	require.NoError(t, err)
	defer victim.Close()
	vid := spid(t, victim)

	admin, err := pool.Conn(t.Context())
	require.NoError(t, err)
	defer admin.Close()

	var login, status string
	var dbid int64
	require.NoError(t, admin.QueryRowContext(t.Context(),
		"SELECT login_name, status, database_id FROM sys.dm_exec_sessions WHERE session_id = @p1", vid).Scan(&login, &status, &dbid))
	require.Equal(t, "sa", login)
	require.Equal(t, "sleeping", status)
	require.Equal(t, int64(5), dbid)

	var prog string
	require.NoError(t, admin.QueryRowContext(t.Context(), "SELECT RTRIM(program_name) FROM master.dbo.sysprocesses WHERE spid = @p1 AND dbid = DB_ID('mgc')", vid).Scan(&prog))
	require.Equal(t, "go-mssqldb", prog)
	require.Equal(t, int64(1), queryInt(t, ti.connect(t, "master"), "SELECT COUNT(*) FROM sys.sysprocesses WHERE spid = @p1", vid))

	// sp_who2 by RPC (procedure by name) and as a batch.
	for _, q := range []string{"sp_who2", "EXEC sp_who2"} {
		rows, err := admin.QueryContext(t.Context(), q)
		require.NoError(t, err)
		cols, err := rows.Columns()
		require.NoError(t, err)
		require.Equal(t, []string{"SPID", "Status", "Login", "HostName", "BlkBy", "DBName", "Command", "CPUTime", "DiskIO", "LastBatch", "ProgramName", "SPID", "REQUESTID"}, cols)
		found := false
		for rows.Next() {
			vals := make([]any, 13)
			ptrs := make([]any, 13)
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			require.NoError(t, rows.Scan(ptrs...))
			if vals[5] == "mgc" {
				found = true
			}
		}
		require.NoError(t, rows.Err())
		require.True(t, found, q)
	}

	// Filters: 'active' keeps the running session (the caller), a spid keeps one.
	countWho := func(q string, args ...any) int {
		rows, err := admin.QueryContext(t.Context(), q, args...)
		require.NoError(t, err)
		defer rows.Close()
		n := 0
		for rows.Next() {
			n++
		}
		require.NoError(t, rows.Err())
		return n
	}
	require.Equal(t, 1, countWho("EXEC sp_who2 'active'"))
	require.Equal(t, 1, countWho("EXEC sp_who2 @p1", vid))
	require.Equal(t, 0, countWho("EXEC sp_who2 'nobody'"))

	_, err = admin.ExecContext(t.Context(), "KILL @p1", vid)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		return victim.PingContext(ctx) != nil
	}, 5*time.Second, 10*time.Millisecond)
	_, err = admin.ExecContext(t.Context(), "KILL @p1", vid)
	e := sqlError(t, err)
	require.Equal(t, int32(6106), e.Number)
}

func TestInstance_AlterDatabase_singleUser(t *testing.T) {
	ti := openTestInstance(t, "")
	setupMessages(t, ti, 1)
	other := ti.connect(t, "mgc")
	oc, err := other.Conn(t.Context())
	require.NoError(t, err)
	defer oc.Close()
	spid(t, oc)

	admin, err := ti.connect(t, "master").Conn(t.Context())
	require.NoError(t, err)
	defer admin.Close()

	_, err = admin.ExecContext(t.Context(), "ALTER DATABASE mgc SET SINGLE_USER")
	e := sqlError(t, err)
	require.Equal(t, int32(5069), e.Number)
	require.Equal(t, int32(5061), e.All[0].Number)

	_, err = admin.ExecContext(t.Context(), "ALTER DATABASE mgc SET SINGLE_USER WITH ROLLBACK IMMEDIATE")
	require.NoError(t, err)
	info, _ := ti.in.Database("mgc")
	require.Equal(t, "SINGLE_USER", info.UserAccess)
	require.Error(t, oc.PingContext(t.Context()))

	// The admin takes the single connection; nobody else gets in.
	_, err = admin.ExecContext(t.Context(), "USE mgc")
	require.NoError(t, err)
	third, err := sql.Open("sqlserver", ti.dsn("master"))
	require.NoError(t, err)
	defer third.Close()
	_, err = third.ExecContext(t.Context(), "USE mgc")
	e = sqlError(t, err)
	require.Equal(t, int32(924), e.Number)
	require.Equal(t, "Database 'mgc' is already open and can only have one user at a time.", e.Message)

	_, err = admin.ExecContext(t.Context(), "ALTER DATABASE mgc SET MULTI_USER")
	require.NoError(t, err)
	_, err = third.ExecContext(t.Context(), "USE mgc")
	require.NoError(t, err)
}
