package mssql

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkInstance_Insert measures INSERT statements per second through
// go-mssqldb (each one durably committed).
func BenchmarkInstance_Insert(b *testing.B) {
	in, err := Open(Config{Name: "SQL1", DataDir: b.TempDir(), Logins: map[string]string{"sa": "pass"}})
	require.NoError(b, err)
	defer in.Close()
	addr, err := in.Serve("127.0.0.1:0")
	require.NoError(b, err)
	db, err := sql.Open("sqlserver", fmt.Sprintf("sqlserver://sa:pass@%s?database=master&encrypt=disable", addr))
	require.NoError(b, err)
	defer db.Close()
	ctx := context.Background()
	_, err = db.ExecContext(ctx, "CREATE DATABASE mgc")
	require.NoError(b, err)
	_, err = db.ExecContext(ctx, "USE mgc; "+createMessages)
	require.NoError(b, err)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		_, err := db.ExecContext(ctx, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES (@p1, @p2, @p3)", "room", "alice", "hello")
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "stmts/s")
}

// BenchmarkInstance_BackupRestore measures BACKUP DATABASE and RESTORE
// DATABASE throughput (MB/s of backup file) for a database of about 20 MB.
func BenchmarkInstance_BackupRestore(b *testing.B) {
	in, err := Open(Config{Name: "SQL1", DataDir: b.TempDir(), Logins: map[string]string{"sa": "pass"}})
	require.NoError(b, err)
	defer in.Close()
	ctx := context.Background()
	_, err = in.Exec(ctx, "master", "CREATE DATABASE mgc")
	require.NoError(b, err)
	_, err = in.Exec(ctx, "mgc", createMessages)
	require.NoError(b, err)
	body := strings.Repeat("x", 2000)
	var values []string
	for range 100 {
		values = append(values, "('room', 'alice', N'"+body+"')")
	}
	for range 100 { // 10,000 rows of 2 kB
		_, err = in.Exec(ctx, "mgc", "INSERT INTO dbo.messages (room, sender, body) VALUES "+strings.Join(values, ","))
		require.NoError(b, err)
	}
	path := filepath.Join(b.TempDir(), "mgc.bak")
	b.SetBytes(20 << 20)
	b.ResetTimer()
	for b.Loop() {
		_, err := in.Exec(ctx, "master", "BACKUP DATABASE mgc TO DISK = N'"+path+"' WITH INIT")
		if err != nil {
			b.Fatal(err)
		}
		_, err = in.Exec(ctx, "master", "RESTORE DATABASE mgc_copy FROM DISK = N'"+path+"' WITH REPLACE, MOVE 'mgc' TO 'x.mdf', MOVE 'mgc_log' TO 'x.ldf'")
		if err != nil {
			b.Fatal(err)
		}
	}
}
