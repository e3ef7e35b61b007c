package mssql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	mssqldrv "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"
)

// testInstance is an Instance served on a loopback port.
type testInstance struct {
	in   *Instance
	dir  string
	addr string
}

func openTestInstance(t *testing.T, dir string) *testInstance {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	in, err := Open(Config{Name: "SQL1", DataDir: dir, Logins: map[string]string{"sa": "pass", "chat": "chatpw"}})
	require.NoError(t, err)
	addr, err := in.Serve("127.0.0.1:0")
	require.NoError(t, err)
	ti := &testInstance{in: in, dir: dir, addr: addr.String()}
	t.Cleanup(func() { _ = in.Close() })
	return ti
}

func (ti *testInstance) dsn(db string) string {
	return fmt.Sprintf("sqlserver://sa:pass@%s?database=%s&encrypt=disable&dial+timeout=5", ti.addr, db)
}

// connect opens a pool on database db.
func (ti *testInstance) connect(t *testing.T, db string) *sql.DB {
	t.Helper()
	conn, err := sql.Open("sqlserver", ti.dsn(db))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.PingContext(t.Context()))
	return conn
}

// sqlError extracts the driver error.
func sqlError(t *testing.T, err error) mssqldrv.Error {
	t.Helper()
	require.Error(t, err)
	var e mssqldrv.Error
	require.True(t, errors.As(err, &e), "not an mssql.Error: %v", err)
	return e
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) sql.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	r, err := db.ExecContext(ctx, q, args...)
	require.NoError(t, err, q)
	return r
}

func queryInt(t *testing.T, db *sql.DB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, db.QueryRowContext(t.Context(), q, args...).Scan(&n), q)
	return n
}
