package mssql

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// benchMB is the size of the database of the BACKUP/RESTORE benchmarks
// below: go test -run '^$' -bench 'Backup|Restore' -mssql.bench.mb 200.
var benchMB = flag.Int("mssql.bench.mb", 200, "database size in MB for BenchmarkInstance_Backup and _Restore")

var bigDB struct {
	once sync.Once
	in   *Instance
	dir  string
	bak  string
	size int64
	err  error
}

// bigDatabase builds (once per test binary) an instance whose mgc holds
// about -mssql.bench.mb MB of 2 kB messages, and a full backup of it.
func bigDatabase(b *testing.B) (*Instance, string, int64) {
	b.Helper()
	if testing.Short() {
		b.Skip("the large-database benchmarks do not run with -short")
	}
	bigDB.once.Do(func() {
		dir, err := os.MkdirTemp("", "mssql-bench-")
		if err != nil {
			bigDB.err = err
			return
		}
		bigDB.dir = dir
		in, err := Open(Config{Name: "SQL1", DataDir: filepath.Join(dir, "data"), Logins: map[string]string{"sa": "pass"}})
		if err != nil {
			bigDB.err = err
			return
		}
		bigDB.in = in
		ctx := context.Background()
		if _, err = in.Exec(ctx, "master", "CREATE DATABASE mgc"); err == nil {
			_, err = in.Exec(ctx, "mgc", createMessages)
		}
		body := strings.Repeat("x", 2000)
		values := make([]string, 0, 500)
		for range 500 {
			values = append(values, "('room', 'alice', N'"+body+"')")
		}
		batch := "INSERT INTO dbo.messages (room, sender, body) VALUES " + strings.Join(values, ",")
		for i := 0; err == nil && i < *benchMB; i++ { // 500 rows of 2 kB = 1 MB
			_, err = in.Exec(ctx, "mgc", batch)
		}
		if err != nil {
			bigDB.err = err
			return
		}
		bigDB.bak = filepath.Join(dir, "mgc.bak")
		if _, err = in.Exec(ctx, "master", "BACKUP DATABASE mgc TO DISK = N'"+bigDB.bak+"' WITH INIT"); err != nil {
			bigDB.err = err
			return
		}
		st, err := os.Stat(bigDB.bak)
		if err != nil {
			bigDB.err = err
			return
		}
		bigDB.size = st.Size()
	})
	if bigDB.err != nil {
		b.Fatal(bigDB.err)
	}
	return bigDB.in, bigDB.bak, bigDB.size
}

// cleanupBench releases the large database (called by TestMain).
func cleanupBench() {
	if bigDB.in != nil {
		_ = bigDB.in.Close()
	}
	if bigDB.dir != "" {
		_ = os.RemoveAll(bigDB.dir)
	}
}

// BenchmarkInstance_Backup measures BACKUP DATABASE of a database of
// -mssql.bench.mb MB (default 200): MB/s of backup file written.
func BenchmarkInstance_Backup(b *testing.B) {
	in, _, size := bigDatabase(b)
	path := filepath.Join(b.TempDir(), "bench.bak")
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if _, err := in.Exec(context.Background(), "master", "BACKUP DATABASE mgc TO DISK = N'"+path+"' WITH INIT, COPY_ONLY"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInstance_Restore measures RESTORE DATABASE of that backup into
// another database: MB/s of backup file read.
func BenchmarkInstance_Restore(b *testing.B) {
	in, bak, size := bigDatabase(b)
	dir := b.TempDir()
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if _, err := in.Exec(context.Background(), "master", "RESTORE DATABASE mgc_copy FROM DISK = N'"+bak+"' WITH REPLACE, MOVE 'mgc' TO N'"+
			filepath.Join(dir, "c.mdf")+"', MOVE 'mgc_log' TO N'"+filepath.Join(dir, "c.ldf")+"'"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInstance_InsertMirrored measures INSERT statements per second
// through go-mssqldb on a principal whose mirror (another instance, over
// the mirroring endpoint on loopback) must harden each change before the
// answer (safety FULL).
func BenchmarkInstance_InsertMirrored(b *testing.B) {
	open := func(name string) (*Instance, string) {
		in, err := Open(Config{Name: name, DataDir: b.TempDir(), Logins: map[string]string{"sa": "pass"}, MirrorListen: "127.0.0.1:0"})
		require.NoError(b, err)
		b.Cleanup(func() { _ = in.Close() })
		return in, in.MirrorAddr()
	}
	p, pEP := open("SQLP")
	m, mEP := open("SQLPM")
	ctx := context.Background()
	dir := b.TempDir()
	for _, q := range []string{"CREATE DATABASE mgc", "USE mgc; " + createMessages,
		"BACKUP DATABASE mgc TO DISK = N'" + filepath.Join(dir, "f.bak") + "'", "BACKUP LOG mgc TO DISK = N'" + filepath.Join(dir, "l.trn") + "'"} {
		_, err := p.Exec(ctx, "master", q)
		require.NoError(b, err, q)
	}
	for _, q := range []string{"RESTORE DATABASE mgc FROM DISK = N'" + filepath.Join(dir, "f.bak") + "' WITH NORECOVERY",
		"RESTORE LOG mgc FROM DISK = N'" + filepath.Join(dir, "l.trn") + "' WITH NORECOVERY", "ALTER DATABASE mgc SET PARTNER = N'" + pEP + "'"} {
		_, err := m.Exec(ctx, "master", q)
		require.NoError(b, err, q)
	}
	_, err := p.Exec(ctx, "master", "ALTER DATABASE mgc SET PARTNER = N'"+mEP+"'")
	require.NoError(b, err)
	addr, err := p.Serve("127.0.0.1:0")
	require.NoError(b, err)
	db, err := sql.Open("sqlserver", fmt.Sprintf("sqlserver://sa:pass@%s?database=master&encrypt=disable", addr))
	require.NoError(b, err)
	defer db.Close()
	b.ResetTimer()
	for b.Loop() {
		if _, err := db.ExecContext(ctx, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES (@p1, @p2, @p3)", "room", "alice", "hello"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "stmts/s")
	b.StopTimer()
	pi, _ := p.Database("mgc")
	mi, _ := m.Database("mgc")
	require.Equal(b, pi.LSN, mi.LSN)
}
