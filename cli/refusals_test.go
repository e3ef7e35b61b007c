package cli_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/store"
	"github.com/chatdr/chatdr/internal/pki"
	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/internal/testutil/ctltest"
	"github.com/chatdr/chatdr/internal/testutil/fakeagent"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

// TestRefusals_exitCodes runs the refusals of issue 5 through the chatdr
// command against an in-process controller over fake agents: each exits
// with its documented code and message and changes nothing (runs, audit
// log, agents).
func TestRefusals_exitCodes(t *testing.T) {
	tlsDir := testutil.NewTLSDir(t)
	hosts, err := testutil.LabHosts(4)
	require.NoError(t, err)
	var specs []testutil.AgentSpec
	for _, h := range hosts {
		specs = append(specs, h.AgentSpec())
	}
	agents := fakeagent.Start(t, tlsDir, specs)
	dir := t.TempDir()
	topo := filepath.Join(dir, "topology.yaml")
	require.NoError(t, testutil.WriteTopology(topo, hosts, fakeagent.Addrs(agents)))
	stateDir := filepath.Join(dir, "state")
	cfg, err := testutil.WriteControllerConfig(dir, tlsDir, testutil.ControllerSpec{Topology: topo, StateDir: stateDir, AgentTimeout: 2 * time.Second})
	require.NoError(t, err)

	// run-1 holds the pool's lock: running, its first step waiting for two
	// approvers.
	st, err := store.Open(stateDir, time.Second)
	require.NoError(t, err)
	gate := plan.Step{ID: "S1-gate", Host: hosts[0].Host, Action: "agent.noop", Params: map[string]any{}, Timeout: 10 * time.Second,
		Retry: plan.Retry{MaxAttempts: 1}, Reason: "test step", Approval: plan.Approval{Required: true, When: plan.ApproveAlways, Approvers: 2}}
	seeded, err := st.CreateRun(store.NewRun{Plan: &plan.Plan{Kind: plan.FailoverPlanned, Pool: testutil.Pool, Groups: []plan.Group{{Name: "gate", Steps: []plan.Step{gate}}}},
		Actor: store.Actor{Name: "operator", Role: pki.RoleOperator}, Reason: "test"})
	require.NoError(t, err)
	require.Equal(t, "run-1", seeded.ID)
	_, err = st.FireRun(seeded.ID, store.ControllerActor(), engine.RunStart, engine.RunInput{Now: time.Now().UTC()})
	require.NoError(t, err)
	require.NoError(t, st.Close())

	ctl := ctltest.StartController(t, cfg)
	as := func(id string, args ...string) (int, string, string) {
		return run(append([]string{"--controller", ctl.Addr, "--tls-dir", tlsDir, "--identity", id}, args...)...)
	}
	viewer := controllerv1.NewControllerServiceClient(testutil.DialAs(t, tlsDir, "viewer", pki.RoleController, ctl.Addr))
	type snapshot struct {
		runs     *controllerv1.ListRunsResponse
		audit    *controllerv1.ListAuditResponse
		executed int
	}
	snap := func() snapshot {
		runs, err := viewer.ListRuns(t.Context(), &controllerv1.ListRunsRequest{})
		require.NoError(t, err)
		audit, err := viewer.ListAudit(t.Context(), &controllerv1.ListAuditRequest{})
		require.NoError(t, err)
		n := 0
		for _, a := range agents {
			n += len(a.Executed())
		}
		return snapshot{runs, audit, n}
	}
	require.NoError(t, testutil.Eventually(20*time.Second, 50*time.Millisecond, func() error {
		if _, out, _ := as("viewer", "run", "show", "run-1"); !contains(out, "waiting_approval") {
			return errNotYet(out)
		}
		return nil
	}))

	const (
		shellDB   = "csshell.cs.pool_state"
		databases = "mssql.databases"
	)
	online := map[string]any{"databases": []any{map[string]any{"database": "mgc", "exists": true, "state": "ONLINE"}}}
	tests := []struct {
		name     string
		id       string
		args     []string
		facts    func()
		wantCode int
		wantErr  []string
	}{
		{"viewer starts a failover", "viewer", []string{"failover", "--pool", testutil.Pool, "--mode", "planned", "--yes"}, nil,
			3, []string{"not authorized", "StartRun"}},
		{"second failover while one runs", "operator", []string{"failover", "--pool", testutil.Pool, "--mode", "planned", "--yes"}, nil,
			1, []string{"run-1", "chatdr run cancel run-1"}},
		{"unknown pool", "operator", []string{"failover", "--pool", "nope.test", "--mode", "planned", "--yes"}, nil,
			2, []string{`"nope.test"`}},
		{"failback when the pool is Normal", "operator", []string{"failback", "--pool", testutil.Pool, "--yes"},
			func() { agents[0].SetFact(shellDB, map[string]any{"central": "Normal"}) },
			1, []string{"is Normal", "nothing to fail back"}},
		{"split brain", "operator", []string{"failover", "--pool", testutil.Pool, "--mode", "disaster", "--yes"},
			func() { agents[2].SetFact(databases, online); agents[3].SetFact(databases, online) },
			1, []string{"split-brain risk", "two writable copies already exist"}},
		{"operator approves", "operator", []string{"run", "approve", "run-1", "--reason", "ok"}, nil,
			3, []string{"not authorized", "ApproveStep"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, a := range agents {
				a.SetFact(shellDB, nil)
				a.SetFact(databases, nil)
			}
			if tt.facts != nil {
				tt.facts()
			}
			before := snap()
			code, stdout, stderr := as(tt.id, tt.args...)
			require.Equal(t, tt.wantCode, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
			for _, w := range tt.wantErr {
				require.Contains(t, stderr, w)
			}
			after := snap()
			require.True(t, proto.Equal(before.runs, after.runs), "the runs changed")
			require.True(t, proto.Equal(before.audit, after.audit), "the audit log changed")
			require.Equal(t, before.executed, after.executed, "an agent was asked to act")
		})
	}

	// The same approver twice: exit 1, one approval recorded.
	code, stdout, stderr := as("approver", "run", "approve", "run-1", "--reason", "checked")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "run-1")
	before := snap()
	code, _, stderr = as("approver", "run", "approve", "run-1", "--reason", "again")
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "already approved")
	require.Contains(t, stderr, "another approver must approve")
	after := snap()
	require.True(t, proto.Equal(before.runs, after.runs), "a refused approval changes no run")
	require.Zero(t, after.executed)
	code, stdout, stderr = as("viewer", "audit", "--run", "run-1")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "approval.refused")

	// A second approver lets the run finish.
	code, _, stderr = as("admin", "run", "approve", "run-1", "--reason", "agreed")
	require.Equal(t, 0, code, stderr)
	require.NoError(t, testutil.Eventually(20*time.Second, 50*time.Millisecond, func() error {
		if _, out, _ := as("viewer", "run", "show", "run-1"); !contains(out, ", succeeded") {
			return errNotYet(out)
		}
		return nil
	}))
	require.Equal(t, []string{"agent.noop"}, agents[0].Executed())
	code, stdout, stderr = as("viewer", "audit", "verify")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "audit log intact")
}
