//go:build !windows

package lab_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/internal/proc"
	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/lab"
	"github.com/chatdr/chatdr/sim/chat"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chatdr-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if binDir, err = testutil.BuildBinaries(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is one run of the chatdr binary.
type result struct {
	code           int
	stdout, stderr string
}

// chatdr runs the real chatdr binary with env (KEY=VALUE) added.
func chatdr(t testing.TB, env []string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), testutil.Exe(binDir, "chatdr"), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run chatdr %v: %v", args, err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// labEnv returns the environment `lab up` prints (export lines).
func labEnv(out string) []string {
	var env []string
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "export "); ok {
			env = append(env, v)
		}
	}
	return env
}

// waitFirstAck waits until pc1 has had a chat message acknowledged: the
// lab is in production.
func waitFirstAck(tb testing.TB, dir string) {
	tb.Helper()
	if err := testutil.Eventually(60*time.Second, 200*time.Millisecond, func() error {
		acks, err := chat.ReadAcks(lab.AckFile(dir, "pc1.dc1.chatdr.lab"))
		if err == nil && len(acks) == 0 {
			err = fmt.Errorf("no message acknowledged yet")
		}
		return err
	}); err != nil {
		tb.Fatal(err)
	}
}

// fleetJSON is the part of `fleet status -o json` the tests read.
type fleetJSON struct {
	Pool   string `json:"pool"`
	Agents []struct {
		Host      string `json:"host"`
		Site      string `json:"site"`
		Reachable bool   `json:"reachable"`
		Error     string `json:"error"`
		LastSeen  string `json:"last_seen"`
		Info      struct {
			Host string `json:"host"`
		} `json:"info"`
	} `json:"agents"`
}

func fleetStatus(t *testing.T, env []string) fleetJSON {
	t.Helper()
	r := chatdr(t, env, "fleet", "status", "-o", "json", "--timeout", "1s")
	require.Equal(t, 0, r.code, "fleet status: %s", r.stderr)
	var f fleetJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &f), r.stdout)
	return f
}

func reachable(f fleetJSON) (up []string, down []string) {
	for _, a := range f.Agents {
		if a.Reachable {
			up = append(up, a.Host)
		} else {
			down = append(down, a.Host)
		}
	}
	return up, down
}

// TestLab_UpKillRestartDown is the foundation's end-to-end test: the lab's
// real processes, fleet status through the CLI, an agent killed and
// restarted, authorization refusals, and a clean shutdown.
func TestLab_UpKillRestartDown(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() { _, _ = lab.Down(dir, 5*time.Second) })

	up := chatdr(t, nil, "lab", "up", "--dir", dir, "--bin", binDir)
	require.Equal(t, 0, up.code, "lab up: %s", up.stderr)
	env := labEnv(up.stdout)
	require.Len(t, env, 3, up.stdout)
	require.Contains(t, env, "CHATDR_TLS_DIR="+filepath.Join(dir, "tls"))

	// Twelve agents, all reachable, each reporting the host it is.
	f := fleetStatus(t, env)
	require.Equal(t, lab.Pool, f.Pool)
	upHosts, down := reachable(f)
	require.Len(t, upHosts, 12)
	require.Empty(t, down)
	for _, a := range f.Agents {
		require.Equal(t, a.Host, a.Info.Host)
	}
	// The SQL hosts' agents report their databases: the lab deployed the
	// Persistent Chat databases on the primary, mirrored them in the
	// primary site and log-ships mgc to the backup site.
	var r result
	patterns := []string{
		`sql1\.dc1\.chatdr\.lab\n  sql: SQL1-DC1 [0-9.]+, SQL Server Agent running\n` +
			`  db mgc: ONLINE writable, mirroring principal SYNCHRONIZED with TCP://127\.0\.0\.1:\d+\n` +
			`  db mgccomp: ONLINE writable, mirroring principal SYNCHRONIZED with TCP://127\.0\.0\.1:\d+\n` +
			`  log shipping mgc: primary, last backup mgc_\d{14}\.trn`,
		`sql2\.dc1\.chatdr\.lab\n.*\n  db mgc: RESTORING, mirroring mirror SYNCHRONIZED`,
		`sql1\.dc2\.chatdr\.lab\n.*\n  db mgc: RESTORING\n.*\n  log shipping mgc: secondary, last restored mgc_\d{14}\.trn`,
	}
	// The first log backup, copy and restore come within a job interval.
	require.NoError(t, testutil.Eventually(60*time.Second, 500*time.Millisecond, func() error {
		r = chatdr(t, env, "fleet", "status")
		if r.code != 0 {
			return fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		for _, p := range patterns {
			if !regexp.MustCompile(p).MatchString(r.stdout) {
				return fmt.Errorf("fleet status does not match %s:\n%s", p, r.stdout)
			}
		}
		return nil
	}))

	// The chat servers run their RTCCHAT service under their agent; the
	// ones active while the pool is Normal post messages into the primary.
	require.NoError(t, testutil.Eventually(15*time.Second, 100*time.Millisecond, func() error {
		acks, err := chat.ReadAcks(lab.AckFile(dir, "pc1.dc1.chatdr.lab"))
		if err != nil {
			return err
		}
		if len(acks) < 3 {
			return fmt.Errorf("%d acknowledged messages", len(acks))
		}
		return nil
	}))
	r = chatdr(t, env, "fleet", "status")
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `pc5\.dc2\.chatdr\.lab\n  pool state: Normal \(this server's local store: Normal\)\n  active servers: pc1\.dc1\.chatdr\.lab, pc2\.dc1\.chatdr\.lab, pc3\.dc1\.chatdr\.lab, pc4\.dc1\.chatdr\.lab\n  service RTCCHAT: running`, r.stdout)

	// The dry run: plans are built from what the agents report, refused
	// when the pool state says they do not apply.
	viewerEnv := append(env, "CHATDR_IDENTITY=viewer")
	r = chatdr(t, viewerEnv, "plan", "failover", "--pool", lab.Pool, "--mode", "planned")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "mgc on sql1.dc1.chatdr.lab: ONLINE, writable")
	require.Regexp(t, `F0a-tail-log-backup-mgc\s+sql1\.dc1\.chatdr\.lab\s+mssql\.db\.tail_log_backup`, r.stdout)
	require.Regexp(t, `F4b-recover-mgc\s+sql1\.dc2\.chatdr\.lab\s+mssql\.db\.recover`, r.stdout)
	r = chatdr(t, viewerEnv, "plan", "failback", "--pool", lab.Pool)
	require.Equal(t, 1, r.code, r.stdout)
	require.Contains(t, r.stderr, "refused")
	r = chatdr(t, viewerEnv, "plan", "failover", "--pool", "other.example.com", "--mode", "planned")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `pool "other.example.com" is not in the topology`)
	r = chatdr(t, viewerEnv, "plan", "failover", "--pool", lab.Pool, "--mode", "sideways")
	require.Equal(t, 2, r.code)

	// Kill one agent: it is reported unreachable, the eleven others are not.
	victim := "pc3.dc1.chatdr.lab"
	killed, err := lab.Kill(dir, victim)
	require.NoError(t, err)
	require.NotZero(t, killed[victim])
	f = fleetStatus(t, env)
	upHosts, down = reachable(f)
	require.Equal(t, []string{victim}, down)
	require.Len(t, upHosts, 11)
	for _, a := range f.Agents {
		if a.Host == victim {
			require.NotEmpty(t, a.Error)
			require.NotEmpty(t, a.LastSeen, "an unreachable agent keeps its last-seen time")
			require.Equal(t, victim, a.Info.Host, "an unreachable agent keeps its last-seen facts")
		}
	}
	st := chatdr(t, nil, "lab", "status", "--dir", dir)
	require.Equal(t, 1, st.code)
	require.Regexp(t, victim+`\s+agent\s+dc1\s+-\s+STOPPED`, st.stdout)

	// lab up again restarts exactly the dead agent, on the same port.
	again := chatdr(t, nil, "lab", "up", "--dir", dir, "--bin", binDir)
	require.Equal(t, 0, again.code, again.stderr)
	require.Contains(t, again.stderr, victim+" ")
	require.Equal(t, 1, strings.Count(again.stderr, "started"), again.stderr)
	require.NoError(t, testutil.Eventually(10*time.Second, 100*time.Millisecond, func() error {
		if _, down := reachable(fleetStatus(t, env)); len(down) > 0 {
			return fmt.Errorf("still down: %v", down)
		}
		return nil
	}))

	// Authorization: a viewer may read but not reload the topology.
	viewer := append(env, "CHATDR_IDENTITY=viewer")
	require.Equal(t, 0, chatdr(t, viewer, "fleet", "status").code)
	r = chatdr(t, viewer, "topology", "reload")
	require.Equal(t, 3, r.code)
	require.Contains(t, r.stderr, "viewer (viewer) is not allowed to call ReloadTopology (allowed roles: admin)")
	r = chatdr(t, env, "topology", "reload")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "12 agents")

	// A certificate from another CA is refused at the TLS handshake.
	other := filepath.Join(t.TempDir(), "othertls")
	require.Equal(t, 0, chatdr(t, nil, "certs", "init", "--dir", other).code)
	r = chatdr(t, append(env, "CHATDR_TLS_DIR="+other), "fleet", "status")
	require.Equal(t, 3, r.code, r.stderr)
	require.Contains(t, r.stderr, "unreachable")

	// Every acknowledged message is in the primary while the pool is Normal.
	r = chatdr(t, nil, "lab", "messages", "--dir", dir, "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var msgs lab.Messages
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &msgs))
	require.Equal(t, "Normal", msgs.PoolState)
	require.Equal(t, "sql1.dc1.chatdr.lab", msgs.Database)
	require.Positive(t, msgs.Acknowledged)
	require.Zero(t, msgs.Missing)

	// Losing dc1: every process of the site dies; the controller stays.
	r = chatdr(t, nil, "lab", "kill", "--dir", dir, "--site", "dc1")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "mssql.sql1.dc1.chatdr.lab")
	require.Contains(t, r.stdout, "RTCCHAT.pc1.dc1.chatdr.lab")
	f = fleetStatus(t, env)
	_, down = reachable(f)
	require.Len(t, down, 6, "the six agents of dc1 are down: %v", down)
	r = chatdr(t, nil, "lab", "kill", "--dir", dir, "--site", "dc9")
	require.Equal(t, 2, r.code)

	// Down stops every process the lab started and nothing else.
	require.Equal(t, 0, chatdr(t, nil, "lab", "up", "--dir", dir, "--bin", binDir).code, "lab up brings dc1 back")
	procs, err := lab.Status(dir)
	require.NoError(t, err)
	d := chatdr(t, nil, "lab", "down", "--dir", dir)
	require.Equal(t, 0, d.code, d.stderr)
	require.Contains(t, d.stdout, "stopped 25 processes")
	for _, p := range procs {
		require.True(t, p.Running, p.Name)
		require.NoError(t, testutil.Eventually(5*time.Second, 50*time.Millisecond, func() error {
			if proc.Running(p.PID) {
				return fmt.Errorf("%s (pid %d) still exists", p.Name, p.PID)
			}
			return nil
		}))
	}
	st = chatdr(t, nil, "lab", "status", "--dir", dir)
	require.Equal(t, 1, st.code)
	require.Equal(t, 25, strings.Count(st.stdout, "STOPPED"))

	// With the controller gone, the CLI says so with exit code 3.
	r = chatdr(t, env, "fleet", "status")
	require.Equal(t, 3, r.code)
	require.Contains(t, r.stderr, "is unreachable")
}

// TestLab_CLIUsageErrors checks the exit code 2 cases that need no lab.
func TestLab_CLIUsageErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "topology.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("pool: pchat.example.com\nsites: []\nbogus: 1\n"), 0o644))
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no controller", []string{"CHATDR_CONTROLLER="}, []string{"fleet", "status"}, "no controller address"},
		{"unknown command", nil, []string{"failover-now"}, "unknown command"},
		{"bad output", nil, []string{"version", "-o", "yaml"}, `-o "yaml": want table or json`},
		{"unknown flag", nil, []string{"fleet", "status", "--bogus"}, "unknown flag"},
		{"invalid topology", nil, []string{"topology", "validate", bad}, "is not a valid topology"},
		{"missing topology", nil, []string{"topology", "validate", bad + ".missing"}, "no such file"},
		{"lab without dir", nil, []string{"lab", "status"}, "--dir is required"},
		{"not a lab", nil, []string{"lab", "status", "--dir", t.TempDir()}, "is not a lab directory"},
		{"bad role", nil, []string{"certs", "issue", "--role", "root", "--name", "x", "--dir", t.TempDir()}, "unknown role"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := chatdr(t, tt.env, tt.args...)
			require.Equal(t, 2, r.code, "stdout %s stderr %s", r.stdout, r.stderr)
			require.Contains(t, r.stderr, tt.want)
		})
	}
	r := chatdr(t, nil, "topology", "validate", bad)
	require.Contains(t, r.stdout, bad+":3: bogus: ")
}
