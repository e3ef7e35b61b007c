//go:build linux

package e2e

import (
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	_ "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/internal/testutil"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
	sim "github.com/chatdr/chatdr/sim/mssql"
)

const sqlPassword = "Lab-Pa55word"

// sqlHost is a SQL Server simulator (in this process, so that the tests can
// inject faults) with a real agent process whose mssql plugin manages it.
type sqlHost struct {
	addr  string
	in    *sim.Instance
	db    *sql.DB
	agent *agentProc
}

func startSQLHost(t *testing.T, tlsDir, name, root string) *sqlHost {
	t.Helper()
	in, err := sim.Open(sim.Config{Name: name, DataDir: t.TempDir(), Logins: map[string]string{"sa": sqlPassword}})
	require.NoError(t, err)
	t.Cleanup(func() { in.Close() })
	addr, err := in.Serve("127.0.0.1:0")
	require.NoError(t, err)
	_, port, _ := net.SplitHostPort(addr.String())
	p, _ := strconv.Atoi(port)
	db, err := sql.Open("sqlserver", fmt.Sprintf("sqlserver://sa:%s@%s?database=master&encrypt=disable", sqlPassword, addr))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	agent := startAgent(t, tlsDir, name, []string{"mssql"}, map[string]any{
		"mssql": map[string]any{
			"instance": map[string]any{"server": "127.0.0.1", "port": p, "user": "sa", "password_env": "CHATDR_E2E_SQL_PASSWORD", "encrypt": "disable"},
			"roots":    []string{root},
		},
	}, "CHATDR_E2E_SQL_PASSWORD="+sqlPassword)
	return &sqlHost{addr: addr.String(), in: in, db: db, agent: agent}
}

func (h *sqlHost) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	_, err := h.db.Exec(q, args...)
	require.NoError(t, err, q)
}

func (h *sqlHost) count(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, h.db.QueryRow("SELECT COUNT(*) FROM mgc.dbo.messages").Scan(&n))
	return n
}

func (h *sqlHost) state(t *testing.T) string {
	t.Helper()
	var s string
	require.NoError(t, h.db.QueryRow("SELECT state_desc FROM sys.databases WHERE name = 'mgc'").Scan(&s))
	return s
}

func TestAgent_mssqlActions_throughRealProcesses(t *testing.T) {
	tlsDir := testutil.NewTLSDir(t)
	root := t.TempDir()
	logs := filepath.Join(root, "copy")
	require.NoError(t, os.MkdirAll(logs, 0o755))
	primary := startSQLHost(t, tlsDir, "SQL1", root)
	backup := startSQLHost(t, tlsDir, "SQL3", root)

	primary.exec(t, "CREATE DATABASE mgc")
	primary.exec(t, "CREATE TABLE mgc.dbo.messages (id bigint IDENTITY(1,1), room nvarchar(50), body nvarchar(max))")
	add := func(n int) {
		for i := 0; i < n; i++ {
			primary.exec(t, "INSERT INTO mgc.dbo.messages (room, body) VALUES (@p1, @p2)", "ops", fmt.Sprintf("m%d", i))
		}
	}
	add(4)

	full := filepath.Join(root, "mgc_full.bak")
	primary.agent.must("t/full/1", "mssql.db.backup_full", map[string]any{"database": "mgc", "path": full})
	out, _ := backup.agent.must("t/init/1", "mssql.db.restore_full", map[string]any{"database": "mgc", "path": full, "recovery": "norecovery"})
	require.Equal(t, "RESTORING", out["state"])

	base := time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)
	for i := 0; i < 3; i++ {
		add(2)
		primary.exec(t, "BACKUP LOG mgc TO DISK = @p1 WITH INIT", filepath.Join(logs, "mgc_"+base.Add(time.Duration(i)*time.Minute).Format("20060102150405")+".trn"))
	}

	// A destructive action sent twice with the same key runs once: the
	// second call replays the journaled result.
	restore := map[string]any{"database": "mgc", "dir": logs}
	out, first := backup.agent.must("t/restore/1", "mssql.ls.restore_pending", restore)
	require.Len(t, out["applied"], 3)
	require.False(t, first.GetReplayed())
	out, again := backup.agent.must("t/restore/1", "mssql.ls.restore_pending", restore)
	require.True(t, again.GetReplayed())
	require.Len(t, out["applied"], 3, "the replay carries the first result")
	// With a new key it runs again and finds nothing to do (check-then-act).
	out, _ = backup.agent.must("t/restore/2", "mssql.ls.restore_pending", restore)
	require.Empty(t, out["applied"])
	require.Equal(t, false, out["changed"])

	// Tail-log backup fences the primary; once only.
	add(3)
	tail := filepath.Join(logs, "mgc_"+base.Add(time.Hour).Format("20060102150405")+".trn")
	out, _ = primary.agent.must("t/tail/1", "mssql.db.tail_log_backup", map[string]any{"database": "mgc", "path": tail})
	require.Equal(t, true, out["changed"])
	require.Equal(t, "RESTORING", primary.state(t))
	out, _ = primary.agent.must("t/tail/2", "mssql.db.tail_log_backup", map[string]any{"database": "mgc", "path": tail})
	require.Equal(t, false, out["changed"])

	backup.agent.must("t/restore/3", "mssql.ls.restore_pending", restore)
	out, rec := backup.agent.must("t/recover/1", "mssql.db.recover", map[string]any{"database": "mgc"})
	require.Equal(t, true, out["changed"])
	require.Equal(t, "ONLINE", backup.state(t))
	require.Equal(t, 4+6+3, backup.count(t), "every committed row reached the backup")
	_, rec2 := backup.agent.must("t/recover/1", "mssql.db.recover", map[string]any{"database": "mgc"})
	require.True(t, rec2.GetReplayed())
	require.Equal(t, rec.GetEndedAt().AsTime(), rec2.GetEndedAt().AsTime())
	out, _ = backup.agent.must("t/recover/2", "mssql.db.recover", map[string]any{"database": "mgc"})
	require.Equal(t, false, out["changed"])

	// Sessions holding the recovered database are ended.
	holder, err := sql.Open("sqlserver", fmt.Sprintf("sqlserver://sa:%s@%s?database=mgc&encrypt=disable", sqlPassword, backup.addr))
	require.NoError(t, err)
	defer holder.Close()
	c, err := holder.Conn(t.Context())
	require.NoError(t, err)
	require.NoError(t, c.PingContext(t.Context()))
	out, _ = backup.agent.must("t/kill/1", "mssql.db.kill_sessions", map[string]any{"database": "mgc"})
	require.Len(t, out["killed"], 1)
	require.Error(t, c.PingContext(t.Context()))

	// Bad input is refused by the agent's schema check or the plugin, and changes nothing.
	r, err := backup.agent.execute("t/bad/1", "mssql.db.recover", map[string]any{"database": "mgc]; DROP DATABASE mgc; --"}, 0)
	require.NoError(t, err)
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_FAILED, r.result.GetState())
	require.Equal(t, "bad_param", r.result.GetError().GetCode())
	r, err = backup.agent.execute("t/bad/2", "mssql.db.recover", map[string]any{"database": 42.0}, 0)
	require.NoError(t, err)
	require.Equal(t, "bad_params", r.result.GetError().GetCode())
	require.Contains(t, r.result.GetError().GetMessage(), "database must be a string")
	require.Equal(t, "ONLINE", backup.state(t))
}

func TestAgent_mssqlRestore_cancelledByTimeout(t *testing.T) {
	tlsDir := testutil.NewTLSDir(t)
	root := t.TempDir()
	primary := startSQLHost(t, tlsDir, "SQL1", root)
	backup := startSQLHost(t, tlsDir, "SQL3", root)
	primary.exec(t, "CREATE DATABASE mgc")
	primary.exec(t, "CREATE TABLE mgc.dbo.messages (id bigint IDENTITY(1,1), body nvarchar(max))")
	full := filepath.Join(root, "full.bak")
	primary.exec(t, "BACKUP DATABASE mgc TO DISK = @p1 WITH INIT", full)
	backup.exec(t, "RESTORE DATABASE mgc FROM DISK = @p1 WITH NORECOVERY", full)
	primary.exec(t, "INSERT INTO mgc.dbo.messages (body) VALUES ('x')")
	primary.exec(t, "BACKUP LOG mgc TO DISK = @p1 WITH INIT", filepath.Join(root, "mgc_20261129030000.trn"))

	// The RESTORE LOG hangs on the SQL side; the action's timeout cancels it.
	remove := backup.in.InjectFault(sim.Fault{Match: regexp.MustCompile(`(?i)^RESTORE LOG`), Delay: time.Hour, Count: -1})
	r, err := backup.agent.execute("t/slow/1", "mssql.ls.restore_pending", map[string]any{"database": "mgc", "dir": root}, 2*time.Second)
	require.NoError(t, err)
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_TIMED_OUT, r.result.GetState(), "%v", r.result.GetError())
	remove()
	require.Equal(t, "RESTORING", backup.state(t), "a cancelled restore leaves the database restoring")

	// The plugin's connection is still usable: the next attempt applies the log.
	out, _ := backup.agent.must("t/slow/2", "mssql.ls.restore_pending", map[string]any{"database": "mgc", "dir": root})
	require.Len(t, out["applied"], 1)
}

func TestAgent_pluginProcesses_neverOutliveTheAgent(t *testing.T) {
	tlsDir := testutil.NewTLSDir(t)
	a := startAgent(t, tlsDir, "pc1", []string{"mssql"}, nil)
	require.Len(t, a.pluginPIDs(), 1, "the mssql plugin runs as its own process")
	pid := a.pluginPIDs()[0]

	// A crashed plugin is started again on the next call.
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	r, err := a.execute("t/info/1", "mssql.db.state", map[string]any{"database": "mgc"}, 10*time.Second)
	require.NoError(t, err)
	// The first call may meet the dead process (retryable) or the new one.
	if r.result.GetState() != agentv1.ExecutionState_EXECUTION_STATE_FAILED || !r.result.GetError().GetRetryable() {
		require.Equal(t, "config", r.result.GetError().GetCode(), "no SQL instance is configured: %v", r.result.GetError())
	}
	require.NoError(t, testutil.Eventually(10*time.Second, 50*time.Millisecond, func() error {
		if _, err := a.execute("t/info/"+strconv.Itoa(int(time.Now().UnixNano())), "mssql.db.state", map[string]any{"database": "mgc"}, 10*time.Second); err != nil {
			return err
		}
		if p := a.pluginPIDs(); len(p) != 1 || p[0] == pid {
			return errors.New("plugin not restarted yet")
		}
		return nil
	}))

	// The agent dies abruptly: its plugin goes with it.
	a.kill()
	require.NoError(t, testutil.Eventually(10*time.Second, 50*time.Millisecond, func() error {
		if p := a.pluginPIDs(); len(p) > 0 {
			return fmt.Errorf("plugin processes left: %v", p)
		}
		return nil
	}))
}

func TestAgent_interruptedExecution_isReportedNotRerun(t *testing.T) {
	tlsDir := testutil.NewTLSDir(t)
	a := startAgent(t, tlsDir, "pc1", []string{}, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = a.execute("t/long/1", "agent.noop", map[string]any{"duration": "1m"}, 0)
	}()
	require.NoError(t, testutil.Eventually(10*time.Second, 20*time.Millisecond, func() error {
		g, err := a.client.GetExecution(t.Context(), &agentv1.GetExecutionRequest{IdempotencyKey: "t/long/1"})
		if err != nil {
			return err
		}
		if g.GetState() != agentv1.ExecutionState_EXECUTION_STATE_RUNNING {
			return fmt.Errorf("state %s", g.GetState())
		}
		return nil
	}))
	a.kill()
	<-done
	a.restart()
	g, err := a.client.GetExecution(t.Context(), &agentv1.GetExecutionRequest{IdempotencyKey: "t/long/1"})
	require.NoError(t, err)
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_INTERRUPTED, g.GetState())
	r, err := a.execute("t/long/1", "agent.noop", map[string]any{"duration": "1m"}, 0)
	require.NoError(t, err)
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_INTERRUPTED, r.result.GetState(), "not run again")
	require.True(t, r.result.GetReplayed())
}
