package controller_test

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
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

// fakeEnv is a controller over fake agents (testutil.LabHosts(4): pc1 the
// Management Shell host, pc2, the primary SQL host, the backup SQL host)
// whose facts a test sets, with its /metrics endpoint.
type fakeEnv struct {
	tlsDir string
	hosts  []testutil.FleetHost
	agents []*fakeagent.Agent
	ctl    *testutil.Daemon
}

// newFakeEnv starts the fake agents and, after seed (when not nil) wrote
// into the controller's store, the controller.
func newFakeEnv(t *testing.T, seed func(st *store.Store)) *fakeEnv {
	t.Helper()
	e := &fakeEnv{tlsDir: testutil.NewTLSDir(t)}
	var err error
	e.hosts, err = testutil.LabHosts(4)
	require.NoError(t, err)
	var specs []testutil.AgentSpec
	for _, h := range e.hosts {
		specs = append(specs, h.AgentSpec())
	}
	e.agents = fakeagent.Start(t, e.tlsDir, specs)
	dir := t.TempDir()
	topo := filepath.Join(dir, "topology.yaml")
	require.NoError(t, testutil.WriteTopology(topo, e.hosts, fakeagent.Addrs(e.agents)))
	stateDir := filepath.Join(dir, "state")
	cfg, err := testutil.WriteControllerConfig(dir, e.tlsDir, testutil.ControllerSpec{Topology: topo, StateDir: stateDir,
		MetricsListen: "127.0.0.1:0", AgentTimeout: 2 * time.Second})
	require.NoError(t, err)
	if seed != nil {
		st, err := store.Open(stateDir, time.Second)
		require.NoError(t, err)
		seed(st)
		require.NoError(t, st.Close())
	}
	e.ctl = ctltest.StartController(t, cfg)
	return e
}

func (e *fakeEnv) client(t *testing.T, cert string) controllerv1.ControllerServiceClient {
	t.Helper()
	return controllerv1.NewControllerServiceClient(testutil.DialAs(t, e.tlsDir, cert, pki.RoleController, e.ctl.Addr))
}

// executed returns every Execute the fake agents received, as
// "host action".
func (e *fakeEnv) executed() []string {
	var out []string
	for i, a := range e.agents {
		for _, act := range a.Executed() {
			out = append(out, e.hosts[i].Host+" "+act)
		}
	}
	return out
}

// Facts the plan builders read.
const (
	probePoolState = "csshell.cs.pool_state"
	probeDatabases = "mssql.databases"
)

func mgc(state string) map[string]any {
	return map[string]any{"databases": []any{map[string]any{"database": "mgc", "exists": true, "state": state, "standby": false, "read_only": false}}}
}

// seedWaitingRun registers run-1, a running plan whose first step needs
// two approvers, for the controller to resume when it starts.
func seedWaitingRun(t *testing.T, hosts []testutil.FleetHost) func(st *store.Store) {
	return func(st *store.Store) {
		step := func(id, host string) plan.Step {
			return plan.Step{ID: id, Host: host, Action: "agent.noop", Params: map[string]any{"step": id}, Timeout: 10 * time.Second,
				Retry: plan.Retry{MaxAttempts: 1}, Reason: "test step"}
		}
		gate := step("S1-gate", hosts[0].Host)
		gate.Approval = plan.Approval{Required: true, When: plan.ApproveAlways, Approvers: 2}
		p := &plan.Plan{Kind: plan.FailoverPlanned, Pool: testutil.Pool, Groups: []plan.Group{
			{Name: "gate", Steps: []plan.Step{gate}},
			{Name: "after", Steps: []plan.Step{step("S2-after", hosts[3].Host)}},
		}}
		run, err := st.CreateRun(store.NewRun{Plan: p, Actor: store.Actor{Name: "operator", Role: pki.RoleOperator}, Reason: "test"})
		require.NoError(t, err)
		require.Equal(t, "run-1", run.ID)
		_, err = st.FireRun(run.ID, store.ControllerActor(), engine.RunStart, engine.RunInput{Now: time.Now().UTC()})
		require.NoError(t, err)
	}
}

// state is what a refusal must leave unchanged.
type state struct {
	runs     *controllerv1.ListRunsResponse
	audit    *controllerv1.ListAuditResponse
	executed []string
}

func (e *fakeEnv) state(t *testing.T) state {
	t.Helper()
	c := e.client(t, "viewer")
	runs, err := c.ListRuns(callCtx(t), &controllerv1.ListRunsRequest{})
	require.NoError(t, err)
	audit, err := c.ListAudit(callCtx(t), &controllerv1.ListAuditRequest{})
	require.NoError(t, err)
	return state{runs: runs, audit: audit, executed: e.executed()}
}

func requireSameState(t *testing.T, want, got state) {
	t.Helper()
	require.True(t, proto.Equal(want.runs, got.runs), "the runs changed:\nbefore %v\nafter  %v", want.runs, got.runs)
	require.True(t, proto.Equal(want.audit, got.audit), "the audit log changed:\nbefore %v\nafter  %v", want.audit, got.audit)
	require.Equal(t, want.executed, got.executed, "an agent was asked to act")
}

// TestController_StartRun_refusalsChangeNothing: each refused start is a
// clear error with its code, and leaves the runs, the pool's lock, the
// audit log and the agents as they were.
func TestController_StartRun_refusalsChangeNothing(t *testing.T) {
	e := newFakeEnv(t, seedWaitingRun(t, mustLabHosts(t)))
	viewer, operator := e.client(t, "viewer"), e.client(t, "operator")
	waitRun(t, viewer, "run-1", "waiting_approval", func(r *controllerv1.Run) bool { return r.GetState() == "waiting_approval" })
	shell, primary, backup := e.agents[0], e.agents[2], e.agents[3]

	tests := []struct {
		name     string
		client   controllerv1.ControllerServiceClient
		req      *controllerv1.StartRunRequest
		facts    func()
		wantCode codes.Code
		wantMsg  []string
	}{
		{name: "viewer", client: viewer, req: plannedFailover(), wantCode: codes.PermissionDenied,
			wantMsg: []string{"viewer (viewer) is not allowed to call StartRun"}},
		{name: "second failover while one runs", client: operator, req: plannedFailover(), wantCode: codes.FailedPrecondition,
			wantMsg: []string{"run-1", "chatdr run cancel run-1"}},
		{name: "unknown pool", client: operator, wantCode: codes.NotFound,
			req:     &controllerv1.StartRunRequest{Pool: "nope.example.test", Kind: controllerv1.PlanKind_PLAN_KIND_FAILOVER_PLANNED, Reason: "test"},
			wantMsg: []string{`pool "nope.example.test" is not in the topology`}},
		{name: "failback when the pool is Normal", client: operator, wantCode: codes.FailedPrecondition,
			req:     &controllerv1.StartRunRequest{Pool: testutil.Pool, Kind: controllerv1.PlanKind_PLAN_KIND_FAILBACK, Reason: "test"},
			facts:   func() { shell.SetFact(probePoolState, map[string]any{"central": "Normal"}) },
			wantMsg: []string{"pool " + testutil.Pool + " is Normal", "nothing to fail back"}},
		{name: "planned failover with both databases writable", client: operator, req: plannedFailover(), wantCode: codes.FailedPrecondition,
			facts: func() {
				primary.SetFact(probeDatabases, mgc("ONLINE"))
				backup.SetFact(probeDatabases, mgc("ONLINE"))
			},
			wantMsg: []string{"split-brain risk", "mgc is ONLINE and writable on both the backup " + e.hosts[3].Host + " and " + e.hosts[2].Host}},
		{name: "disaster failover with both databases writable", client: operator, wantCode: codes.FailedPrecondition,
			req: &controllerv1.StartRunRequest{Pool: testutil.Pool, Kind: controllerv1.PlanKind_PLAN_KIND_FAILOVER_DISASTER, Reason: "test"},
			facts: func() {
				primary.SetFact(probeDatabases, mgc("ONLINE"))
				backup.SetFact(probeDatabases, mgc("ONLINE"))
			},
			wantMsg: []string{"split-brain risk", "two writable copies already exist"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, a := range e.agents {
				a.SetFact(probePoolState, nil)
				a.SetFact(probeDatabases, nil)
			}
			if tt.facts != nil {
				tt.facts()
			}
			before := e.state(t)
			msg := requireCode(t, err2(tt.client.StartRun(callCtx(t), tt.req)), tt.wantCode)
			for _, m := range tt.wantMsg {
				require.Contains(t, msg, m)
			}
			requireSameState(t, before, e.state(t))
		})
	}

	// The pool is still locked by run-1, which still waits.
	for _, a := range e.agents {
		a.SetFact(probePoolState, nil)
		a.SetFact(probeDatabases, nil)
	}
	msg := requireCode(t, err2(operator.StartRun(callCtx(t), plannedFailover())), codes.FailedPrecondition)
	require.Contains(t, msg, "run-1")
	run, err := viewer.GetRun(callCtx(t), &controllerv1.GetRunRequest{RunId: "run-1"})
	require.NoError(t, err)
	require.Equal(t, "waiting_approval", run.GetRun().GetState())
	require.Empty(t, e.executed())
	v, err := viewer.VerifyAudit(callCtx(t), &controllerv1.VerifyAuditRequest{})
	require.NoError(t, err)
	require.True(t, v.GetOk())
}

// TestController_ApproveStep_twoApprovers drives the approval of a step
// that needs two approvers through the API.
func TestController_ApproveStep_twoApprovers(t *testing.T) {
	e := newFakeEnv(t, seedWaitingRun(t, mustLabHosts(t)))
	viewer, operator, alice, admin := e.client(t, "viewer"), e.client(t, "operator"), e.client(t, "approver"), e.client(t, "admin")
	waitRun(t, viewer, "run-1", "waiting_approval", func(r *controllerv1.Run) bool { return r.GetState() == "waiting_approval" })
	approvals := func() []*controllerv1.AuditEntry {
		resp, err := viewer.ListAudit(callCtx(t), &controllerv1.ListAuditRequest{RunId: "run-1", Action: "approval"})
		require.NoError(t, err)
		return resp.GetEntries()
	}
	approve := func(c controllerv1.ControllerServiceClient, reason string) (*controllerv1.ApproveStepResponse, error) {
		return c.ApproveStep(callCtx(t), &controllerv1.ApproveStepRequest{RunId: "run-1", StepId: "S1-gate", Reason: reason})
	}

	// The first approver: recorded, the step still waits for a second.
	resp, err := approve(alice, "checked the backup")
	require.NoError(t, err)
	require.False(t, resp.GetComplete())
	require.Equal(t, "S1-gate", resp.GetStepId())
	require.Equal(t, "waiting_approval", resp.GetRun().GetState())
	require.Len(t, approvals(), 1)

	// The same person again: refused, no approval recorded.
	before := e.state(t)
	msg := requireCode(t, err2(approve(alice, "again")), codes.AlreadyExists)
	require.Contains(t, msg, "another approver must approve")
	after := e.state(t)
	require.True(t, proto.Equal(before.runs, after.runs), "a refused approval changes no run")
	require.Len(t, approvals(), 1, "a refused approval is not recorded as an approval")
	refused, err := viewer.ListAudit(callCtx(t), &controllerv1.ListAuditRequest{RunId: "run-1", Action: "approval.refused"})
	require.NoError(t, err)
	require.Len(t, refused.GetEntries(), 1, "the refusal is audited")
	require.Equal(t, "approver", refused.GetEntries()[0].GetActor())
	require.Equal(t, "S1-gate", refused.GetEntries()[0].GetStepId())
	require.Contains(t, refused.GetEntries()[0].GetDetailsJson(), "already approved")

	// Roles that may not approve.
	for _, c := range []controllerv1.ControllerServiceClient{operator, viewer} {
		before := e.state(t)
		msg := requireCode(t, err2(approve(c, "me too")), codes.PermissionDenied)
		require.Contains(t, msg, "is not allowed to call ApproveStep (allowed roles: approver, admin)")
		requireSameState(t, before, e.state(t))
	}
	run, err := viewer.GetRun(callCtx(t), &controllerv1.GetRunRequest{RunId: "run-1"})
	require.NoError(t, err)
	require.Equal(t, "waiting_approval", run.GetRun().GetState())
	require.Empty(t, e.executed(), "nothing runs before the second approval")

	// A second, different approver: the run goes on and succeeds.
	resp, err = approve(admin, "agreed")
	require.NoError(t, err)
	require.True(t, resp.GetComplete())
	done := waitRun(t, viewer, "run-1", "succeeded state", func(r *controllerv1.Run) bool { return r.GetState() == "succeeded" })
	require.Equal(t, "succeeded", done.GetState())
	require.Equal(t, []string{e.hosts[0].Host + " agent.noop", e.hosts[3].Host + " agent.noop"}, e.executed())

	got := approvals()
	require.Len(t, got, 2)
	require.Equal(t, "approver", got[0].GetActor())
	require.Equal(t, "admin", got[1].GetActor())
	v, err := viewer.VerifyAudit(callCtx(t), &controllerv1.VerifyAuditRequest{})
	require.NoError(t, err)
	require.True(t, v.GetOk(), "first bad entry: %d", v.GetFirstBad())

	// The run's metrics.
	require.NoError(t, testutil.Eventually(10*time.Second, 50*time.Millisecond, func() error {
		body := scrapeHTTP(t, e.ctl.MetricsAddr)
		for _, want := range []string{
			`chatdr_controller_runs_total{kind="failover-planned",outcome="succeeded"} 1`,
			`chatdr_controller_step_attempts_total{action="agent.noop"} 2`,
			`chatdr_controller_step_duration_seconds_count{action="agent.noop",outcome="succeeded"} 2`,
			`chatdr_controller_run_duration_seconds_count{kind="failover-planned",outcome="succeeded"} 1`,
			`chatdr_controller_runs_in_progress 0`,
		} {
			if !strings.Contains(body, want) {
				return fmt.Errorf("no %q in\n%s", want, body)
			}
		}
		return nil
	}))
}

func mustLabHosts(t *testing.T) []testutil.FleetHost {
	t.Helper()
	hosts, err := testutil.LabHosts(4)
	require.NoError(t, err)
	return hosts
}

// scrapeHTTP returns the text of a /metrics endpoint.
func scrapeHTTP(t *testing.T, addr string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(callCtx(t), http.MethodGet, "http://"+addr+"/metrics", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
