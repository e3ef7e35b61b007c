package mssql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestInstance_Login_failures(t *testing.T) {
	ti := openTestInstance(t, "")
	tests := []struct {
		name, dsn string
		number    int32
		first     int32
	}{
		{"bad password", fmt.Sprintf("sqlserver://sa:wrong@%s?database=master&encrypt=disable", ti.addr), 18456, 18456},
		{"unknown database", fmt.Sprintf("sqlserver://sa:pass@%s?database=nodb&encrypt=disable", ti.addr), 18456, 4060},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := sql.Open("sqlserver", tt.dsn)
			require.NoError(t, err)
			defer db.Close()
			e := sqlError(t, db.PingContext(t.Context()))
			require.Equal(t, tt.number, e.Number)
			require.Equal(t, tt.first, e.All[0].Number)
		})
	}
}

func TestInstance_DatabaseOptions(t *testing.T) {
	ti := openTestInstance(t, "")
	db := setupMessages(t, ti, 3)
	m := ti.connect(t, "master")
	// Named parameters, LIKE, IN, NOCOUNT.
	require.Equal(t, int64(3), queryInt(t, db, "SELECT COUNT(*) FROM dbo.messages WHERE body LIKE @pat AND sender IN ('alice', 'bob')", sql.Named("pat", "message _")))
	r := exec(t, db, "SET NOCOUNT ON; UPDATE dbo.messages SET body = 'x'")
	n, err := r.RowsAffected()
	require.NoError(t, err)
	require.Equal(t, int64(0), n)

	require.NoError(t, db.Close())
	exec(t, m, "ALTER DATABASE mgc SET READ_ONLY WITH ROLLBACK IMMEDIATE")
	require.Equal(t, int64(1), queryInt(t, m, "SELECT COUNT(*) FROM sys.databases WHERE name = 'mgc' AND is_read_only = 1 AND state_desc = 'ONLINE'"))
	_, err = m.ExecContext(t.Context(), "INSERT INTO mgc.dbo.messages (room, sender) VALUES ('a', 'b')")
	e := sqlError(t, err)
	require.Equal(t, int32(3906), e.Number)
	exec(t, m, "ALTER DATABASE mgc SET READ_WRITE")
	exec(t, m, "ALTER DATABASE mgc SET OFFLINE")
	_, err = m.ExecContext(t.Context(), "SELECT COUNT(*) FROM mgc.dbo.messages")
	e = sqlError(t, err)
	require.Equal(t, int32(942), e.Number)
	exec(t, m, "ALTER DATABASE mgc SET ONLINE")
	require.Equal(t, int64(3), queryInt(t, m, "SELECT COUNT(*) FROM mgc.dbo.messages"))
	exec(t, m, "DROP DATABASE mgc")
	require.Equal(t, int64(0), queryInt(t, m, "SELECT COUNT(*) FROM sys.databases WHERE name = 'mgc'"))
	_, err = m.ExecContext(t.Context(), "ALTER DATABASE mgc SET RECOVERY SIMPLE")
	e = sqlError(t, err)
	require.Equal(t, int32(5069), e.Number)
	require.Equal(t, int32(5011), e.All[0].Number)
}

func TestInstance_ControlFlow_ifAndObjectID(t *testing.T) {
	ti := openTestInstance(t, "")
	m := ti.connect(t, "master")
	setup := `IF DB_ID('mgc') IS NULL CREATE DATABASE mgc;
IF OBJECT_ID(N'mgc.dbo.messages', 'U') IS NULL
BEGIN
	USE mgc;
	` + createMessages + `;
	PRINT 'created'
END
ELSE PRINT 'exists'`
	require.Equal(t, []string{"Changed database context to 'mgc'.", "created"}, messages(t, m, setup))
	require.Equal(t, []string{"exists"}, messages(t, m, setup)) // idempotent
	var id int64
	require.NoError(t, m.QueryRowContext(t.Context(), "SELECT OBJECT_ID('mgc..messages')").Scan(&id))
	var name string
	var objectID int64
	require.NoError(t, m.QueryRowContext(t.Context(), "SELECT name, object_id FROM mgc.sys.tables WHERE type = 'U'").Scan(&name, &objectID))
	require.Equal(t, "messages", name)
	require.Equal(t, id, objectID)
	_, err := m.ExecContext(t.Context(), "BEGIN TRAN; SELECT 1")
	e := sqlError(t, err)
	require.Equal(t, int32(156), e.Number)
}

func TestInstance_WaitForRaiseError(t *testing.T) {
	ti := openTestInstance(t, "")
	db := ti.connect(t, "master")
	db.SetMaxOpenConns(1)

	// A cancelled WAITFOR returns at once and the connection stays usable.
	ctx, cancel := context.WithCancel(t.Context())
	start := time.Now()
	go func() {
		// Cancel once the statement is running.
		for ctx.Err() == nil {
			for _, s := range ti.in.srv.Sessions() {
				if s.Running() {
					cancel()
					return
				}
			}
			runtime.Gosched()
		}
	}()
	_, err := db.ExecContext(ctx, "WAITFOR DELAY '00:00:30'")
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, time.Since(start), 10*time.Second)
	require.Equal(t, int64(1), queryInt(t, db, "SELECT 1"))
	exec(t, db, "WAITFOR DELAY '00:00:00.010'")

	_, err = db.ExecContext(t.Context(), "RAISERROR('bad %s %d', 16, 2, 'thing', 7)")
	e := sqlError(t, err)
	require.Equal(t, int32(50000), e.Number)
	require.Equal(t, "bad thing 7", e.Message)
	require.Equal(t, uint8(16), e.Class)
	_, err = db.ExecContext(t.Context(), "THROW 51000, N'thrown', 1")
	e = sqlError(t, err)
	require.Equal(t, int32(51000), e.Number)
	require.Equal(t, []string{"just info"}, messages(t, db, "RAISERROR('just info', 0, 1) WITH NOWAIT"))
}

func TestInstance_InjectFault(t *testing.T) {
	ti := openTestInstance(t, "")
	db := ti.connect(t, "master")
	remove := ti.in.InjectFault(Fault{Match: regexp.MustCompile(`(?i)^RESTORE LOG`), Count: 2,
		Err: errors.Join(sqlErr(3201, "x.trn", 5, "Access is denied."), sqlErr(3013, "RESTORE LOG"))})
	defer remove()
	for range 2 {
		_, err := db.ExecContext(t.Context(), "RESTORE LOG mgc FROM DISK = @p1", "x.trn")
		e := sqlError(t, err)
		require.Equal(t, int32(3013), e.Number)
		require.Equal(t, "Cannot open backup device 'x.trn'. Operating system error 5(Access is denied.).", e.All[0].Message)
	}
	// Used up: the real engine answers now (no such database).
	_, err := db.ExecContext(t.Context(), "RESTORE LOG mgc FROM DISK = @p1", "x.trn")
	e := sqlError(t, err)
	require.Equal(t, int32(3201), e.All[0].Number)
	require.Contains(t, e.All[0].Message, "Operating system error 2")

	require.Equal(t, int64(1), queryInt(t, db, "SELECT 1"))
	require.GreaterOrEqual(t, ti.in.DropConnections(), 1)
	// The pooled connection is broken; the next ones are new.
	var n int64
	_ = db.QueryRowContext(t.Context(), "SELECT 1").Scan(&n)
	require.Equal(t, int64(1), queryInt(t, db, "SELECT 1"))
}

func TestInstance_Subqueries(t *testing.T) {
	ti := openTestInstance(t, "")
	db := setupMessages(t, ti, 9)
	require.Equal(t, []string{"yes"}, messages(t, db, "IF EXISTS (SELECT 1 FROM sys.databases WHERE name = N'mgc') PRINT 'yes' ELSE PRINT 'no'"))
	require.Equal(t, []string{"absent"}, messages(t, db, "IF NOT EXISTS (SELECT * FROM sys.tables WHERE name = 'nope') PRINT 'absent'"))
	require.Equal(t, int64(9), queryInt(t, db, "SELECT (SELECT MAX(id) FROM dbo.messages)"))
	require.Equal(t, int64(3), queryInt(t, db, "SELECT COUNT(*) FROM dbo.messages WHERE id IN (SELECT MAX(id) FROM dbo.messages GROUP BY room)"))
	require.Equal(t, int64(6), queryInt(t, db, "SELECT COUNT(*) FROM dbo.messages WHERE id NOT IN (SELECT MIN(id) FROM dbo.messages GROUP BY room)"))
	// Correlated: the latest message of each room.
	require.Equal(t, int64(3), queryInt(t, db, "SELECT COUNT(*) FROM dbo.messages m WHERE m.id = (SELECT MAX(i.id) FROM dbo.messages i WHERE i.room = m.room)"))
	for _, tt := range []struct {
		q      string
		number int32
	}{
		{"SELECT (SELECT id FROM dbo.messages)", 512},
		{"SELECT 1 WHERE 1 IN (SELECT id, room FROM dbo.messages)", 116},
	} {
		_, err := db.ExecContext(t.Context(), tt.q)
		e := sqlError(t, err)
		require.Equal(t, tt.number, e.Number, tt.q)
	}
}

func TestInstance_Variables(t *testing.T) {
	ti := openTestInstance(t, "")
	db := setupMessages(t, ti, 5)
	var last int64
	var note string
	require.NoError(t, db.QueryRowContext(t.Context(), `DECLARE @last bigint, @n int = 0, @note nvarchar(20) = N'x';
		SELECT @last = MAX(id) FROM dbo.messages;
		SET @n = @n + 1;
		SET @note = @note + CAST(@n AS nvarchar(5));
		SELECT @last, @note`).Scan(&last, &note))
	require.Equal(t, int64(5), last)
	require.Equal(t, "x1", note)
	// sp_executesql parameters and variables together.
	require.Equal(t, int64(3), queryInt(t, db, "DECLARE @lo int = @p1; SELECT COUNT(*) FROM dbo.messages WHERE id >= @lo", 3))
	for _, tt := range []struct {
		q      string
		number int32
	}{
		{"DECLARE @a int; DECLARE @a int", 134},
		{"SET @nope = 1", 137},
		{"DECLARE @a int; SELECT @a = id, room FROM dbo.messages", 141},
		{"DECLARE @s nvarchar(2) = N'abc'", 8152},
	} {
		_, err := db.ExecContext(t.Context(), tt.q)
		e := sqlError(t, err)
		require.Equal(t, tt.number, e.Number, tt.q)
	}
}

func TestInstance_While(t *testing.T) {
	ti := openTestInstance(t, "")
	db := setupMessages(t, ti, 0)
	exec(t, db, `DECLARE @i int = 0;
		WHILE @i < 10
		BEGIN
			SET @i = @i + 1;
			IF @i = 3 CONTINUE;
			IF @i > 7 BREAK;
			INSERT INTO dbo.messages (room, sender) VALUES ('r', CAST(@i AS nvarchar(5)));
		END`)
	require.Equal(t, int64(6), queryInt(t, db, "SELECT COUNT(*) FROM dbo.messages")) // 1 2 4 5 6 7
	_, err := db.ExecContext(t.Context(), "SELECT 1; BREAK")
	e := sqlError(t, err)
	require.Equal(t, int32(102), e.Number)
}
