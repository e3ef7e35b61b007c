//go:build !windows

package lab_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/chatdr/chatdr/agent/journal"
	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/internal/testutil/tcpproxy"
	"github.com/chatdr/chatdr/lab"
	"github.com/chatdr/chatdr/sim/chat"
	"github.com/chatdr/chatdr/sim/csshell"
)

// afRun is the part of `chatdr run show -o json` the fault tests read:
// more than runJSON (errors, progress, times).
type afRun struct {
	State string `json:"state"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Host    string `json:"host"`
		Hint    string `json:"hint"`
	} `json:"error"`
	Steps []afStep `json:"steps"`
}

type afStep struct {
	ID          string    `json:"id"`
	Action      string    `json:"action"`
	Host        string    `json:"host"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	Destructive bool      `json:"destructive"`
	Started     time.Time `json:"started"`
	Ended       time.Time `json:"ended"`
	Error       *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Host    string `json:"host"`
		Hint    string `json:"hint"`
	} `json:"error"`
	Progress *struct {
		Stage string `json:"stage"`
	} `json:"progress"`
}

func (r afRun) step(id string) afStep {
	for _, s := range r.Steps {
		if s.ID == id {
			return s
		}
	}
	return afStep{}
}

// afShow reads run id; ok is false while the controller does not answer.
func afShow(t *testing.T, env []string, id string) (afRun, bool) {
	t.Helper()
	r := chatdr(t, env, "run", "show", id, "-o", "json")
	if r.code != 0 {
		return afRun{}, false
	}
	var run afRun
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &run), r.stdout)
	return run, true
}

// afStopped reports whether a run no longer moves by itself.
func afStopped(state string) bool {
	switch state {
	case "succeeded", "failed", "paused", "cancelled", "waiting_approval":
		return true
	}
	return false
}

// afWaitStopped polls run id until it stops moving by itself.
func afWaitStopped(t *testing.T, env []string, id string, d time.Duration) afRun {
	t.Helper()
	var run afRun
	require.NoError(t, testutil.Eventually(d, 500*time.Millisecond, func() error {
		r, ok := afShow(t, env, id)
		if !ok {
			return fmt.Errorf("controller not answering")
		}
		run = r
		if !afStopped(r.State) {
			return fmt.Errorf("run %s", r.State)
		}
		return nil
	}), "last seen: %+v", run)
	return run
}

// afStartLab brings a lab up in a new directory and waits for the first
// acknowledged chat message; it returns the directory and the operator's
// and viewer's environments.
func afStartLab(t *testing.T) (dir string, operator, viewer []string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() { _, _ = lab.Down(dir, 5*time.Second) })
	up := chatdr(t, nil, "lab", "up", "--dir", dir, "--bin", binDir)
	require.Equal(t, 0, up.code, "lab up: %s", up.stderr)
	env := labEnv(up.stdout)
	waitFirstAck(t, dir)
	return dir, slices.Concat(env, []string{"CHATDR_IDENTITY=operator"}), slices.Concat(env, []string{"CHATDR_IDENTITY=viewer"})
}

// afRequireNoLoss checks with `chatdr lab messages` that the pool is failed
// over and that every acknowledged message is in the new primary.
func afRequireNoLoss(t *testing.T, viewer []string, dir string) {
	t.Helper()
	m := chatdr(t, viewer, "lab", "messages", "--dir", dir)
	t.Logf("lab messages: %s", m.stdout)
	require.Equal(t, 0, m.code, m.stderr)
	require.Contains(t, m.stdout, "pool FailedOver, database on sql1.dc2.chatdr.lab")
	require.Contains(t, m.stdout, " 0 missing")
}

// afJournal returns the executions of run-1 recorded by the agent of
// host, by step ID. The lab must be down (the journal is locked).
func afJournal(t *testing.T, dir, host string) map[string][]journal.Record {
	t.Helper()
	st, err := lab.Load(dir)
	require.NoError(t, err)
	out := map[string][]journal.Record{}
	for _, p := range st.Procs {
		if p.Kind != lab.KindAgent || p.Name != host {
			continue
		}
		j, _, err := journal.Open(filepath.Join(filepath.Dir(p.Config), "state"))
		require.NoError(t, err, p.Name)
		recs, err := j.All()
		require.NoError(t, j.Close())
		require.NoError(t, err, p.Name)
		for _, r := range recs {
			if parts := strings.Split(r.Key, "/"); len(parts) == 3 && parts[0] == "run-1" {
				out[parts[1]] = append(out[parts[1]], r)
			}
		}
	}
	return out
}

// afRestoredLogs returns how many times each log backup (by first LSN) was
// restored into mgc on db's instance.
func afRestoredLogs(t *testing.T, db *sql.DB) map[string]int {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), `SELECT b.first_lsn, b.last_lsn FROM msdb.dbo.restorehistory r
		JOIN msdb.dbo.backupset b ON b.backup_set_id = r.backup_set_id
		WHERE r.destination_database_name = 'mgc' AND r.restore_type = 'L'`)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var first, last any
		require.NoError(t, rows.Scan(&first, &last))
		out[fmt.Sprintf("%s-%s", first, last)]++
	}
	require.NoError(t, rows.Err())
	return out
}

// TestFault_AgentKilledDuringRestore is issue 6 scenario (a): the agent of
// the backup SQL host is killed (SIGKILL) while F3 restores log backups
// (each RESTORE LOG made 3 s long by a fault on the SQL simulator), and
// started again. The controller cannot learn the attempt's outcome (the
// agent is gone when the stream breaks): the run pauses with the step's
// error naming the host and telling the operator to resume; the restarted
// agent reports the attempt interrupted, never re-runs it by itself; `run
// resume` sends a new attempt, which (ls.restore_pending is check-then-act)
// restores only what is left. Every log backup is restored once, the run
// completes and no acknowledged message is lost.
func TestFault_AgentKilledDuringRestore(t *testing.T) {
	const sqlHost = "sql1.dc2.chatdr.lab"
	dir, operator, viewer := afStartLab(t)
	backup := sqlOpenDB(t, dir, sqlHost, "master")
	_, err := backup.ExecContext(t.Context(), "EXEC master.dbo.sp_chatdr_fault @action = 'add', @match = '^RESTORE LOG', @delay_ms = 3000, @count = -1")
	require.NoError(t, err)

	r := chatdr(t, operator, "failover", "--pool", lab.Pool, "--mode", "planned", "--yes")
	require.Equal(t, 0, r.code, r.stderr)

	// Kill the agent once it is inside a RESTORE LOG (its progress names
	// the file it restores).
	var run afRun
	require.NoError(t, testutil.Eventually(5*time.Minute, 100*time.Millisecond, func() error {
		rr, ok := afShow(t, viewer, "run-1")
		if !ok {
			return fmt.Errorf("controller not answering")
		}
		run = rr
		require.False(t, afStopped(rr.State), "the run stopped before F3 ran: %+v", rr)
		s := rr.step("F3-restore-logs-mgc")
		if s.State != "running" || s.Progress == nil || !strings.HasPrefix(s.Progress.Stage, "restore ") {
			return fmt.Errorf("F3 %s", s.State)
		}
		return nil
	}), "last seen: %+v", run)
	_, err = lab.Kill(dir, sqlHost)
	require.NoError(t, err)
	t.Logf("killed the agent of %s during %q", sqlHost, run.step("F3-restore-logs-mgc").Progress.Stage)

	// What the operator sees while the agent is down.
	run = afWaitStopped(t, viewer, "run-1", 3*time.Minute)
	require.Equal(t, "paused", run.State, "%+v", run)
	f3 := run.step("F3-restore-logs-mgc")
	require.Equal(t, "failed", f3.State)
	require.NotNil(t, f3.Error)
	require.Equal(t, "outcome_unknown", f3.Error.Code, "%+v", f3.Error)
	require.Equal(t, sqlHost, f3.Error.Host)
	require.Contains(t, f3.Error.Hint, "resume the run")
	show := chatdr(t, viewer, "run", "show", "run-1")
	t.Logf("run show while the agent is down:\n%s", show.stdout)
	require.Contains(t, show.stdout, "outcome_unknown")
	require.Contains(t, show.stdout, sqlHost)

	// The agent comes back; the controller's answer: the attempt it lost
	// was interrupted. Nothing is re-run until the operator resumes.
	up := chatdr(t, nil, "lab", "up", "--dir", dir, "--bin", binDir)
	require.Equal(t, 0, up.code, "lab up: %s", up.stderr)
	run, _ = afShow(t, viewer, "run-1")
	require.Equal(t, "paused", run.State)
	require.Equal(t, 1, run.step("F3-restore-logs-mgc").Attempts)

	res := chatdr(t, operator, "run", "resume", "run-1", "--wait")
	t.Logf("run resume: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "run run-1: succeeded")
	run, _ = afShow(t, viewer, "run-1")
	require.Equal(t, "succeeded", run.State)
	f3 = run.step("F3-restore-logs-mgc")
	require.Equal(t, "succeeded", f3.State)
	require.Equal(t, 2, f3.Attempts)

	// Every log backup was restored once into mgc.
	for lsns, n := range afRestoredLogs(t, backup) {
		require.Equal(t, 1, n, "log backup %s restored %d times", lsns, n)
	}
	afRequireNoLoss(t, viewer, dir)

	// The agent's journal: the first attempt interrupted (never re-run),
	// the second succeeded.
	_, err = lab.Down(dir, 10*time.Second)
	require.NoError(t, err)
	recs := afJournal(t, dir, sqlHost)["F3-restore-logs-mgc"]
	require.Len(t, recs, 2, "%+v", recs)
	states := []string{recs[0].State.String(), recs[1].State.String()}
	slices.Sort(states)
	require.Equal(t, []string{"EXECUTION_STATE_INTERRUPTED", "EXECUTION_STATE_SUCCEEDED"}, states)
}

// afProxyAgent puts a TCP proxy between the controller and the agent of
// host: the agent is stopped, moved to a new port in its config, the proxy
// listens on its old address (the one the topology names) and forwards to
// the new one, and `lab up` starts the agent again.
func afProxyAgent(t *testing.T, dir, host string) *tcpproxy.Proxy {
	t.Helper()
	st, err := lab.Load(dir)
	require.NoError(t, err)
	var p lab.Proc
	for _, q := range st.Procs {
		if q.Kind == lab.KindAgent && q.Name == host {
			p = q
		}
	}
	require.NotEmpty(t, p.Config, "no agent for %s", host)
	_, err = lab.Kill(dir, host)
	require.NoError(t, err)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	newAddr := ln.Addr().String()
	require.NoError(t, ln.Close())
	b, err := os.ReadFile(p.Config)
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, yaml.Unmarshal(b, &cfg))
	require.Equal(t, p.Address, cfg["listen"])
	cfg["listen"] = newAddr
	b, err = yaml.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p.Config, b, 0o644))

	var px *tcpproxy.Proxy
	require.NoError(t, testutil.Eventually(10*time.Second, 100*time.Millisecond, func() error {
		px, err = tcpproxy.Start(p.Address, newAddr) // the killed agent's port is free again
		return err
	}))
	t.Cleanup(func() { px.Close() })
	up := chatdr(t, nil, "lab", "up", "--dir", dir, "--bin", binDir)
	require.Equal(t, 0, up.code, "lab up: %s", up.stderr)
	return px
}

// TestFault_NetworkToAgentRefused is issue 6 scenario (b), connections
// refused: the network between the controller and the agent of the
// primary SQL host is cut (connections closed, new ones refused) once the
// failover has started, for longer than the retry budget of the steps on
// that host. The steps are reported unreachable, retried, and when their
// budget is spent the run pauses with an error naming the host and what
// to check; nothing was sent to the host. After the network is restored,
// `run resume` completes the failover without data loss.
func TestFault_NetworkToAgentRefused(t *testing.T) {
	const host = "sql1.dc1.chatdr.lab"
	dir, operator, viewer := afStartLab(t)
	px := afProxyAgent(t, dir, host)

	r := chatdr(t, operator, "failover", "--pool", lab.Pool, "--mode", "planned", "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	// Cut at once: the first steps (groups 1 and 2, on pc5 and pc1-4) take
	// more than a second; the first on the host is in group 3.
	require.NoError(t, px.Cut(tcpproxy.ModeRefuse))
	cut := time.Now()

	run := afWaitStopped(t, viewer, "run-1", 5*time.Minute)
	t.Logf("run-1 %s %s after the cut", run.State, time.Since(cut).Round(time.Second))
	require.Equal(t, "paused", run.State, "%+v", run)
	require.NotNil(t, run.Error)
	require.Equal(t, "unreachable", run.Error.Code, "%+v", run.Error)
	require.Equal(t, host, run.Error.Host)
	require.Contains(t, run.Error.Message, "cannot be reached")
	require.Contains(t, run.Error.Message, "retry budget")
	require.Contains(t, run.Error.Hint, "network")
	for _, s := range run.Steps {
		if s.Host != host {
			continue
		}
		require.Contains(t, []string{"pending", "failed", "retry_wait"}, s.State, "step %s on the cut host: %+v", s.ID, s)
	}
	show := chatdr(t, viewer, "run", "show", "run-1")
	t.Logf("run show while %s is cut off:\n%s", host, show.stdout)
	require.Contains(t, show.stdout, "unreachable")
	// The primary's database was not touched: still writable there.
	var state string
	require.NoError(t, sqlOpenDB(t, dir, host, "master").QueryRowContext(t.Context(),
		"SELECT state_desc FROM sys.databases WHERE name = 'mgc'").Scan(&state))
	require.Equal(t, "ONLINE", state)

	require.NoError(t, px.Restore())
	res := chatdr(t, operator, "run", "resume", "run-1", "--wait")
	t.Logf("run resume: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "run run-1: succeeded")
	afRequireNoLoss(t, viewer, dir)

	// Nothing was executed on the host while it was cut off: every
	// journaled execution there succeeded.
	_, err := lab.Down(dir, 10*time.Second)
	require.NoError(t, err)
	for id, recs := range afJournal(t, dir, host) {
		for _, rec := range recs {
			require.Equal(t, "EXECUTION_STATE_SUCCEEDED", rec.State.String(), "step %s", id)
		}
		require.Len(t, recs, 1, "step %s executed %d times", id, len(recs))
	}
}

// TestFault_NetworkToAgentBlackholed is issue 6 scenario (b), packets
// dropped: the network to the agent of the backup SQL host is blackholed
// (connections stay open, nothing gets through) before F0c, a step with a
// 1-minute timeout. The attempt's call hangs until the step's timeout plus
// the runner's grace, the agent cannot be asked what became of it, and the
// run pauses with outcome_unknown on that host: the controller never
// guesses. After the network is restored, `run resume` completes the
// failover without data loss.
func TestFault_NetworkToAgentBlackholed(t *testing.T) {
	const host = "sql1.dc2.chatdr.lab"
	dir, operator, viewer := afStartLab(t)
	px := afProxyAgent(t, dir, host)

	r := chatdr(t, operator, "failover", "--pool", lab.Pool, "--mode", "planned", "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, px.Cut(tcpproxy.ModeBlackhole)) // before group 3, as above
	cut := time.Now()

	run := afWaitStopped(t, viewer, "run-1", 6*time.Minute)
	t.Logf("run-1 %s %s after the cut", run.State, time.Since(cut).Round(time.Second))
	require.Equal(t, "paused", run.State, "%+v", run)
	require.NotNil(t, run.Error)
	require.Equal(t, host, run.Error.Host, "%+v", run.Error)
	require.Equal(t, "outcome_unknown", run.Error.Code, "%+v", run.Error)
	require.Contains(t, run.Error.Hint, "resume the run")
	f0c := run.step("F0c-snapshot-log-shipping")
	require.Equal(t, "failed", f0c.State)
	// The silent link is noticed by the controller's keepalive pings (15 s
	// + 10 s) while the call is open, not only at the end of the step's
	// timeout (1 m + 30 s grace; hours for a restore); the time is logged
	// above, not asserted (a shared machine is too noisy for that).
	show := chatdr(t, viewer, "run", "show", "run-1")
	t.Logf("run show while %s is blackholed:\n%s", host, show.stdout)
	require.Contains(t, show.stdout, "outcome_unknown")

	require.NoError(t, px.Restore())
	res := chatdr(t, operator, "run", "resume", "run-1", "--wait")
	t.Logf("run resume: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "run run-1: succeeded")
	afRequireNoLoss(t, viewer, dir)
}

// TestFault_CMSReplicationDelay is issue 6 scenario (c): the local store of
// one server activated by the failover (pc7) lags 25 s behind the Central
// Management Store instead of 1 s. The engine waits for every activated
// server's local store to show FailedOver (F5-wait-local-store-*, retried)
// before it starts their chat services, so the lagging server is started
// only once its store caught up, and no chat server writes to the old
// primary after the switch.
func TestFault_CMSReplicationDelay(t *testing.T) {
	const lagging, delay = "pc7.dc2.chatdr.lab", 25 * time.Second
	dir, operator, viewer := afStartLab(t)
	st, err := lab.Load(dir)
	require.NoError(t, err)
	cms, err := csshell.Open(t.Context(), st.CMS)
	require.NoError(t, err)
	require.NoError(t, cms.SetReplicationDelay(t.Context(), lagging, delay))

	r := chatdr(t, operator, "failover", "--pool", lab.Pool, "--mode", "planned", "--yes", "--wait")
	t.Logf("failover: exit %d\n%s", r.code, r.stderr)
	require.Equal(t, 0, r.code, r.stderr)
	run, ok := afShow(t, viewer, "run-1")
	require.True(t, ok)
	require.Equal(t, "succeeded", run.State)

	switched := run.step("F5-set-pool-failed-over")
	require.Equal(t, "succeeded", switched.State)
	for _, pc := range []string{"pc5", "pc6", "pc7", "pc8"} {
		wait, start := run.step("F5-wait-local-store-"+pc), run.step("F7-start-chat-"+pc)
		require.Equal(t, "succeeded", wait.State, pc)
		require.Equal(t, "succeeded", start.State, pc)
		require.False(t, start.Started.Before(wait.Ended), "%s: chat service started at %s, before its local store showed FailedOver at %s", pc, start.Started, wait.Ended)
	}
	w7 := run.step("F5-wait-local-store-pc7")
	require.Greater(t, w7.Attempts, 1, "the engine waited for pc7's local store")
	require.GreaterOrEqual(t, w7.Ended.Sub(switched.Ended), delay-2*time.Second,
		"pc7's wait ended %s after the switch, before its store could show it", w7.Ended.Sub(switched.Ended))
	t.Logf("pc7's local store wait: %d attempts, %s after the switch", w7.Attempts, w7.Ended.Sub(switched.Ended).Round(time.Second))

	// No chat server wrote to the old primary after the switch; the new
	// servers wrote only to the new one.
	for _, s := range []string{"pc1.dc1", "pc2.dc1", "pc3.dc1", "pc4.dc1", "pc5.dc2", "pc6.dc2", "pc7.dc2", "pc8.dc2"} {
		acks, err := chat.ReadAcks(lab.AckFile(dir, s+".chatdr.lab"))
		require.NoError(t, err)
		for _, a := range acks {
			if a.Role == csshell.RolePrimary {
				require.True(t, a.At.Before(switched.Started), "%s wrote message %d to the old primary at %s, after the switch at %s", s, a.ID, a.At, switched.Started)
			}
			if strings.HasSuffix(s, "dc2") {
				require.Equal(t, csshell.RoleBackup, a.Role, "%s message %d", s, a.ID)
			}
		}
	}
	afRequireNoLoss(t, viewer, dir)
}

// TestFault_CMSReplicationBeyondWaitBudget is issue 6 scenario (c), second
// case: pc7's local store lags an hour, longer than the budget of its wait
// step (40 attempts, about 19 minutes). The run pauses at
// F5-wait-local-store-pc7 with the pool state the server still sees and the
// budget spent; no server was activated (F7 did not start), so nothing is
// written anywhere. Once replication catches up (the delay lowered), `run
// resume` completes the failover without data loss. Slow (about 21
// minutes): runs only with CHATDR_LONG_TESTS=1.
func TestFault_CMSReplicationBeyondWaitBudget(t *testing.T) {
	if os.Getenv("CHATDR_LONG_TESTS") != "1" {
		t.Skip("waits for the plan's CMS retry budget, about 19 minutes: set CHATDR_LONG_TESTS=1 to run it")
	}
	const lagging = "pc7.dc2.chatdr.lab"
	dir, operator, viewer := afStartLab(t)
	st, err := lab.Load(dir)
	require.NoError(t, err)
	cms, err := csshell.Open(t.Context(), st.CMS)
	require.NoError(t, err)
	require.NoError(t, cms.SetReplicationDelay(t.Context(), lagging, time.Hour))

	r := chatdr(t, operator, "failover", "--pool", lab.Pool, "--mode", "planned", "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	run := afWaitStopped(t, viewer, "run-1", 30*time.Minute)
	require.Equal(t, "paused", run.State, "%+v", run)
	require.NotNil(t, run.Error)
	t.Logf("run-1 paused: %+v", *run.Error)
	require.Equal(t, "expectation_unmet", run.Error.Code)
	require.Equal(t, lagging, run.Error.Host)
	require.Contains(t, run.Error.Message, "F5-wait-local-store-pc7")
	require.Contains(t, run.Error.Message, `pool_state = "Normal", want "FailedOver"`)
	require.Contains(t, run.Error.Message, "retry budget of 40 attempts spent")
	require.Contains(t, run.Error.Hint, "resume")
	w7 := run.step("F5-wait-local-store-pc7")
	require.Equal(t, "failed", w7.State)
	require.Equal(t, 40, w7.Attempts)
	for _, s := range run.Steps {
		if strings.HasPrefix(s.ID, "F7-") || strings.HasPrefix(s.ID, "F6-") {
			require.Equal(t, "pending", s.State, "%s started before pc7's local store showed the new state", s.ID)
		}
	}
	show := chatdr(t, viewer, "run", "show", "run-1")
	t.Logf("run show:\n%s", show.stdout)
	require.Contains(t, show.stdout, "F5-wait-local-store-pc7")

	// Replication catches up; the operator resumes.
	require.NoError(t, cms.SetReplicationDelay(t.Context(), lagging, time.Second))
	res := chatdr(t, operator, "run", "resume", "run-1", "--wait")
	t.Logf("run resume: exit %d\n%s", res.code, res.stderr)
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "run run-1: succeeded")
	run, _ = afShow(t, viewer, "run-1")
	w7, start7 := run.step("F5-wait-local-store-pc7"), run.step("F7-start-chat-pc7")
	require.Equal(t, "succeeded", w7.State)
	require.False(t, start7.Started.Before(w7.Ended))
	switched := run.step("F5-set-pool-failed-over")
	for _, s := range []string{"pc1.dc1", "pc2.dc1", "pc3.dc1", "pc4.dc1", "pc5.dc2", "pc6.dc2", "pc7.dc2", "pc8.dc2"} {
		acks, err := chat.ReadAcks(lab.AckFile(dir, s+".chatdr.lab"))
		require.NoError(t, err)
		for _, a := range acks {
			if a.Role == csshell.RolePrimary {
				require.True(t, a.At.Before(switched.Started), "%s wrote message %d to the old primary after the switch", s, a.ID)
			}
		}
	}
	afRequireNoLoss(t, viewer, dir)
}
