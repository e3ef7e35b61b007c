package mssql_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	_ "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/plugins/mssql"
	"github.com/chatdr/chatdr/pluginsdk"
	sim "github.com/chatdr/chatdr/sim/mssql"
)

const password = "Pa55w0rd!"

// server is one SQL Server simulator instance with a plugin pointed at it.
type server struct {
	name   string
	addr   string
	db     *sql.DB
	plugin *mssql.Plugin
}

func startServer(t testing.TB, name, root string) *server {
	t.Helper()
	in, err := sim.Open(sim.Config{Name: name, DataDir: t.TempDir(), Logins: map[string]string{"sa": password}})
	require.NoError(t, err)
	t.Cleanup(func() { in.Close() })
	addr, err := in.Serve("127.0.0.1:0")
	require.NoError(t, err)
	host, port, _ := net.SplitHostPort(addr.String())
	p, _ := strconv.Atoi(port)
	t.Setenv("CHATDR_TEST_SQL_PASSWORD", password)
	plugin := mssql.NewWithConfig(mssql.Config{
		Instance: mssql.InstanceConfig{Server: host, Port: p, User: "sa", PasswordEnv: "CHATDR_TEST_SQL_PASSWORD", Encrypt: "disable"},
		Roots:    []string{root},
	}, t.TempDir())
	db, err := sql.Open("sqlserver", fmt.Sprintf("sqlserver://sa:%s@%s?database=master&encrypt=disable", password, addr))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return &server{name: name, addr: addr.String(), db: db, plugin: plugin}
}

type recorder struct {
	mu       sync.Mutex
	progress []string
}

func (r *recorder) Progress(stage string, done, total int64, unit string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.progress = append(r.progress, fmt.Sprintf("%s %d/%d %s", stage, done, total, unit))
}
func (r *recorder) Log(string, string) {}

func (s *server) run(t *testing.T, action string, params pluginsdk.Params) (pluginsdk.Output, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	return s.plugin.Execute(ctx, &pluginsdk.Request{Action: "mssql." + action, Params: params, IdempotencyKey: "test"}, &recorder{})
}

func (s *server) must(t *testing.T, action string, params pluginsdk.Params) pluginsdk.Output {
	t.Helper()
	out, err := s.run(t, action, params)
	require.NoError(t, err, "%s %v", action, params)
	return out
}

func (s *server) exec(t testing.TB, query string, args ...any) {
	t.Helper()
	_, err := s.db.ExecContext(t.Context(), query, args...)
	require.NoError(t, err, query)
}

func (s *server) count(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, s.db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM mgc.dbo.messages").Scan(&n))
	return n
}

func insert(t *testing.T, s *server, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		s.exec(t, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES (@p1, @p2, @p3)", "ops", "alice", fmt.Sprintf("message %d", i))
	}
}

func TestPlugin_planned_failover_sequence(t *testing.T) {
	root := t.TempDir()
	share, copyDir := filepath.Join(root, "share"), filepath.Join(root, "copy")
	require.NoError(t, os.MkdirAll(share, 0o755))
	require.NoError(t, os.MkdirAll(copyDir, 0o755))
	primary := startServer(t, "SQL1", root)
	backup := startServer(t, "SQL3", root)

	primary.exec(t, "CREATE DATABASE mgc")
	primary.exec(t, "CREATE TABLE mgc.dbo.messages (id bigint IDENTITY(1,1) PRIMARY KEY, room nvarchar(100), sender nvarchar(100), body nvarchar(max), posted_at datetime2 DEFAULT SYSUTCDATETIME())")
	insert(t, primary, 5)

	st := primary.must(t, "db.state", pluginsdk.Params{"database": "mgc"})
	require.Equal(t, "ONLINE", st["state"])
	require.Equal(t, true, st["writable"])

	// Initialize the secondary from a full backup, WITH NORECOVERY.
	full := filepath.Join(share, "mgc_full.bak")
	out := primary.must(t, "db.backup_full", pluginsdk.Params{"database": "mgc", "path": full})
	require.Equal(t, true, out["changed"])
	out = backup.must(t, "db.restore_full", pluginsdk.Params{"database": "mgc", "path": full, "recovery": "norecovery"})
	require.Equal(t, "RESTORING", out["state"])
	again := backup.must(t, "db.restore_full", pluginsdk.Params{"database": "mgc", "path": full, "recovery": "norecovery"})
	require.Equal(t, false, again["changed"], "the same full backup is not restored twice")

	// Three log backups, as the LSBackup job would write them.
	base := time.Date(2026, 11, 29, 1, 0, 0, 0, time.UTC)
	var logs []string
	for i := 0; i < 3; i++ {
		insert(t, primary, 3)
		f := filepath.Join(copyDir, "mgc_"+base.Add(time.Duration(i)*time.Minute).Format("20060102150405")+".trn")
		primary.exec(t, "BACKUP LOG mgc TO DISK = @p1 WITH INIT", f)
		logs = append(logs, f)
	}
	out = backup.must(t, "ls.restore_pending", pluginsdk.Params{"database": "mgc", "dir": copyDir, "mode": "norecovery"})
	require.Len(t, out["applied"], 3, "%v", out)
	require.Equal(t, true, out["complete"])
	require.Empty(t, out["stop_reason"])
	out = backup.must(t, "ls.restore_pending", pluginsdk.Params{"database": "mgc", "dir": copyDir, "mode": "norecovery"})
	require.Empty(t, out["applied"], "a second run applies nothing")
	require.Equal(t, float64(3), out["skipped"])
	require.Equal(t, false, out["changed"])

	// Planned failover: the tail-log backup fences the primary.
	insert(t, primary, 2)
	tail := filepath.Join(copyDir, "mgc_"+base.Add(10*time.Minute).Format("20060102150405")+".trn")
	out = primary.must(t, "db.tail_log_backup", pluginsdk.Params{"database": "mgc", "path": tail})
	require.Equal(t, true, out["changed"])
	st = primary.must(t, "db.state", pluginsdk.Params{"database": "mgc"})
	require.Equal(t, "RESTORING", st["state"], "the old primary is fenced")
	out = primary.must(t, "db.tail_log_backup", pluginsdk.Params{"database": "mgc", "path": tail})
	require.Equal(t, false, out["changed"], "the tail is recognized, not taken twice")
	_, err := primary.db.ExecContext(t.Context(), "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('x','y','z')")
	require.Error(t, err, "the fenced primary refuses writes")

	out = backup.must(t, "ls.restore_pending", pluginsdk.Params{"database": "mgc", "dir": copyDir, "mode": "norecovery"})
	require.Equal(t, []any{filepath.Base(tail)}, out["applied"])
	require.Equal(t, true, out["complete"])

	out = backup.must(t, "db.recover", pluginsdk.Params{"database": "mgc"})
	require.Equal(t, true, out["changed"])
	require.Equal(t, "ONLINE", out["state"])
	require.Equal(t, 5+9+2, backup.count(t), "every committed row reached the backup")
	out = backup.must(t, "db.recover", pluginsdk.Params{"database": "mgc"})
	require.Equal(t, false, out["changed"], "recover is check-then-act")

	// Once recovered, no log applies any more.
	_, err = backup.run(t, "ls.restore_pending", pluginsdk.Params{"database": "mgc", "dir": copyDir})
	var pe *pluginsdk.Error
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "not_restoring", pe.Code)
}

func TestPlugin_restore_pending_stopsAtGap(t *testing.T) {
	root := t.TempDir()
	primary := startServer(t, "SQL1", root)
	backup := startServer(t, "SQL3", root)
	primary.exec(t, "CREATE DATABASE mgc")
	primary.exec(t, "CREATE TABLE mgc.dbo.messages (id bigint IDENTITY(1,1), room nvarchar(100), sender nvarchar(100), body nvarchar(max))")
	full := filepath.Join(root, "full.bak")
	primary.must(t, "db.backup_full", pluginsdk.Params{"database": "mgc", "path": full})
	backup.must(t, "db.restore_full", pluginsdk.Params{"database": "mgc", "path": full, "recovery": "norecovery"})
	base := time.Date(2026, 11, 29, 2, 0, 0, 0, time.UTC)
	var files []string
	for i := 0; i < 4; i++ {
		insert(t, primary, 2)
		f := filepath.Join(root, "mgc_"+base.Add(time.Duration(i)*time.Minute).Format("20060102150405")+".trn")
		primary.exec(t, "BACKUP LOG mgc TO DISK = @p1 WITH INIT", f)
		files = append(files, f)
	}
	require.NoError(t, os.Remove(files[2]))                                                                 // a log backup lost from the middle
	require.NoError(t, os.WriteFile(filepath.Join(root, "mgc_20261129020500.trn.wrk"), []byte("x"), 0o644)) // a dead copy job's .wrk

	out := backup.must(t, "ls.restore_pending", pluginsdk.Params{"database": "mgc", "dir": root})
	require.Equal(t, []any{filepath.Base(files[0]), filepath.Base(files[1])}, out["applied"])
	require.Equal(t, false, out["complete"])
	require.Contains(t, out["stop_reason"], "gap in the log chain: "+files[3])
	un := out["unapplied"].([]any)
	require.Len(t, un, 1)
	require.Equal(t, filepath.Base(files[3]), un[0].(map[string]any)["file"])
	rows, err := s2rows(backup.db, "RESTORE HEADERONLY FROM DISK = @p1", files[1])
	require.NoError(t, err)
	require.Equal(t, rows["BackupFinishDate"].(time.Time).UTC().Format(time.RFC3339), out["reached_backup_time"], "the RPO point is the last applied backup")
	st := backup.must(t, "db.state", pluginsdk.Params{"database": "mgc"})
	require.Equal(t, "RESTORING", st["state"], "a gap never leads to recovery")
}

func TestPlugin_refusesBadInput(t *testing.T) {
	root := t.TempDir()
	s := startServer(t, "SQL1", root)
	tests := []struct {
		name   string
		action string
		params pluginsdk.Params
		code   string
	}{
		{"injection in name", "db.state", pluginsdk.Params{"database": "mgc]; DROP DATABASE master --"}, "bad_param"},
		{"quote in name", "db.recover", pluginsdk.Params{"database": "mgc'"}, "bad_param"},
		{"system database", "db.recover", pluginsdk.Params{"database": "msdb"}, "bad_param"},
		{"path outside roots", "db.backup_full", pluginsdk.Params{"database": "mgc", "path": "/etc/passwd"}, "path_not_allowed"},
		{"path escaping by ..", "db.backup_full", pluginsdk.Params{"database": "mgc", "path": root + "/../x.bak"}, "path_not_allowed"},
		{"relative path", "db.backup_full", pluginsdk.Params{"database": "mgc", "path": "x.bak"}, "bad_param"},
		{"missing database", "db.recover", pluginsdk.Params{"database": "nosuchdb"}, "no_database"},
		{"missing backup file", "db.restore_full", pluginsdk.Params{"database": "mgc", "path": filepath.Join(root, "none.bak")}, "sql_3201"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.run(t, tt.action, tt.params)
			var pe *pluginsdk.Error
			require.ErrorAs(t, err, &pe)
			require.Equal(t, tt.code, pe.Code, pe.Message)
		})
	}
	var n int
	require.NoError(t, s.db.QueryRow("SELECT COUNT(*) FROM sys.databases WHERE name = 'master'").Scan(&n))
	require.Equal(t, 1, n)
}

func TestPlugin_killSessions(t *testing.T) {
	root := t.TempDir()
	s := startServer(t, "SQL1", root)
	s.exec(t, "CREATE DATABASE mgc")
	// Two clients holding mgc, as chat servers would.
	var holders []*sql.Conn
	for i := 0; i < 2; i++ {
		db, err := sql.Open("sqlserver", fmt.Sprintf("sqlserver://sa:%s@%s?database=mgc&encrypt=disable&app+name=chat%d", password, s.addr, i))
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		c, err := db.Conn(t.Context())
		require.NoError(t, err)
		require.NoError(t, c.PingContext(t.Context()))
		holders = append(holders, c)
	}
	out := s.must(t, "db.kill_sessions", pluginsdk.Params{"database": "mgc"})
	require.Len(t, out["killed"], 2)
	require.Equal(t, 0.0, out["remaining"])
	for _, c := range holders {
		require.Error(t, c.PingContext(t.Context()), "a killed session is gone")
	}
	out = s.must(t, "db.kill_sessions", pluginsdk.Params{"database": "mgc"})
	require.Equal(t, false, out["changed"])
}

// s2rows returns the first row of a query by column name.
func s2rows(db *sql.DB, query string, args ...any) (map[string]any, error) {
	rows, err := db.Query(query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		return nil, fmt.Errorf("no row")
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	out := map[string]any{}
	for i, c := range cols {
		out[c] = vals[i]
	}
	return out, nil
}

func TestPlugin_restore_pending_stopsAtCorruptFile(t *testing.T) {
	root := t.TempDir()
	primary := startServer(t, "SQL1", root)
	backup := startServer(t, "SQL3", root)
	primary.exec(t, "CREATE DATABASE mgc")
	primary.exec(t, "CREATE TABLE mgc.dbo.messages (id bigint IDENTITY(1,1), room nvarchar(100), sender nvarchar(100), body nvarchar(max))")
	full := filepath.Join(root, "full.bak")
	primary.must(t, "db.backup_full", pluginsdk.Params{"database": "mgc", "path": full})
	backup.must(t, "db.restore_full", pluginsdk.Params{"database": "mgc", "path": full, "recovery": "norecovery"})
	base := time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC)
	var files []string
	for i := 0; i < 3; i++ {
		insert(t, primary, 2)
		f := filepath.Join(root, "mgc_"+base.Add(time.Duration(i)*time.Minute).Format("20060102150405")+".trn")
		primary.exec(t, "BACKUP LOG mgc TO DISK = @p1 WITH INIT", f)
		files = append(files, f)
	}
	// The middle file is damaged on the share: one byte flipped.
	b, err := os.ReadFile(files[1])
	require.NoError(t, err)
	b[len(b)/2] ^= 0xFF
	require.NoError(t, os.WriteFile(files[1], b, 0o644))

	out := backup.must(t, "ls.restore_pending", pluginsdk.Params{"database": "mgc", "dir": root})
	require.Equal(t, []any{filepath.Base(files[0])}, out["applied"], "%v", out)
	require.Equal(t, false, out["complete"])
	reasons := map[string]string{}
	for _, u := range out["unapplied"].([]any) {
		m := u.(map[string]any)
		reasons[m["file"].(string)] = m["reason"].(string)
	}
	require.Contains(t, reasons[filepath.Base(files[1])], "unreadable", "the damaged file is reported as such")
	require.Contains(t, reasons[filepath.Base(files[2])], "gap in the log chain", "nothing is applied past it")
	st := backup.must(t, "db.state", pluginsdk.Params{"database": "mgc"})
	require.Equal(t, "RESTORING", st["state"])
}
