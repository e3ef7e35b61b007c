package runner

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/fleet"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/store"
	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/internal/pki"
	"github.com/chatdr/chatdr/internal/testutil"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

// Hosts of testutil.LabHosts(4), in order.
const (
	pc1  = "pc1.dc1.test.chatdr.test"
	pc2  = "pc2.dc2.test.chatdr.test"
	sqlP = "sql1.dc1.test.chatdr.test"
	sqlB = "sql1.dc2.test.chatdr.test"
)

var (
	operator = store.Actor{Name: "olivia", Role: pki.RoleOperator}
	alice    = store.Actor{Name: "alice", Role: pki.RoleApprover}
	bob      = store.Actor{Name: "bob", Role: pki.RoleAdmin}
)

// env is a store, four real agents with mTLS and the fleet reaching them.
type env struct {
	t      *testing.T
	tls    string
	specs  []testutil.AgentSpec
	agents []*testutil.Daemon
	topo   *topology.Topology
	st     *store.Store
	fl     *fleet.Fleet
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, tls: testutil.NewTLSDir(t)}
	hosts, err := testutil.LabHosts(4)
	require.NoError(t, err)
	for _, h := range hosts {
		e.specs = append(e.specs, h.AgentSpec())
	}
	e.agents = testutil.StartAgents(t, e.tls, e.specs)
	path := filepath.Join(t.TempDir(), "topology.yaml")
	require.NoError(t, testutil.WriteTopology(path, hosts, testutil.Addrs(e.agents)))
	e.topo, err = topology.Load(path)
	require.NoError(t, err)
	e.st, err = store.Open(t.TempDir(), time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { e.st.Close() })
	f := testutil.TLSFiles(e.tls, "controller")
	mat, err := pki.LoadMaterial(f.CA, f.Cert, f.Key)
	require.NoError(t, err)
	e.fl, err = fleet.New(mat, e.st, fleet.Options{Timeout: 2 * time.Second})
	require.NoError(t, err)
	require.NoError(t, e.fl.SetAgents(e.topo.Agents()))
	t.Cleanup(e.fl.Close)
	return e
}

func (e *env) runner(agents AgentClients) *Runner {
	if agents == nil {
		agents = e.fl
	}
	return New(e.st, agents, Options{Topology: e.topo, Poll: 20 * time.Millisecond, RPCTimeout: 3 * time.Second})
}

func (e *env) create(p *plan.Plan) string {
	e.t.Helper()
	run, err := e.st.CreateRun(store.NewRun{Plan: p, Actor: operator, Reason: "test"})
	require.NoError(e.t, err)
	return run.ID
}

func (e *env) run(id string) *store.Run {
	e.t.Helper()
	r, err := e.st.GetRun(id)
	require.NoError(e.t, err)
	return r
}

func (e *env) step(id, step string) engine.StepStatus {
	e.t.Helper()
	s := e.run(id).Step(step)
	require.NotNil(e.t, s, step)
	return s.Status
}

// execution asks the agent of host what it knows of key.
func (e *env) execution(host, key string) agentv1.ExecutionState {
	e.t.Helper()
	cl, err := e.fl.Client(host)
	require.NoError(e.t, err)
	ge, err := cl.GetExecution(e.t.Context(), &agentv1.GetExecutionRequest{IdempotencyKey: key})
	require.NoError(e.t, err)
	return ge.GetState()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not a wait for an event
	}
}

// startAsync runs Start in a goroutine; the channel gets its result.
func startAsync(ctx context.Context, r *Runner, id string) <-chan error {
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx, id) }()
	return done
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("the runner did not return within 60s")
		return nil
	}
}

func noop(id, host string, params map[string]any) plan.Step {
	if params == nil {
		params = map[string]any{}
	}
	return plan.Step{ID: id, Host: host, Action: "agent.noop", Params: params, Timeout: 10 * time.Second,
		Retry:  plan.Retry{MaxAttempts: 3, Backoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
		Reason: "test step"}
}

func group(name string, steps ...plan.Step) plan.Group { return plan.Group{Name: name, Steps: steps} }

func mkPlan(groups ...plan.Group) *plan.Plan {
	return &plan.Plan{Kind: plan.FailoverPlanned, Pool: testutil.Pool, Groups: groups}
}

var short = map[string]any{"duration": "200ms"}

// hooks wraps the fleet's clients to inject failures, fake probes and
// record calls.
type hooks struct {
	AgentClients
	failHost string
	fail     atomic.Bool // add fail=boom to Execute requests for failHost
	writable map[string]bool

	mu    sync.Mutex
	calls []string
}

func (h *hooks) Client(host string) (agentv1.AgentServiceClient, error) {
	c, err := h.AgentClients.Client(host)
	if err != nil {
		return nil, err
	}
	return hookClient{AgentServiceClient: c, host: host, h: h}, nil
}

func (h *hooks) log(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, s)
}

func (h *hooks) Calls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

type hookClient struct {
	agentv1.AgentServiceClient
	host string
	h    *hooks
}

func (c hookClient) Execute(ctx context.Context, req *agentv1.ExecuteRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[agentv1.ExecuteResponse], error) {
	c.h.log("Execute " + req.GetIdempotencyKey())
	if c.h.fail.Load() && c.host == c.h.failHost {
		req = proto.Clone(req).(*agentv1.ExecuteRequest)
		if req.Params == nil {
			req.Params = &structpb.Struct{}
		}
		if req.Params.Fields == nil {
			req.Params.Fields = map[string]*structpb.Value{}
		}
		req.Params.Fields["fail"] = structpb.NewStringValue("boom")
	}
	return c.AgentServiceClient.Execute(ctx, req, opts...)
}

func (c hookClient) GetExecution(ctx context.Context, req *agentv1.GetExecutionRequest, opts ...grpc.CallOption) (*agentv1.GetExecutionResponse, error) {
	c.h.log("GetExecution " + req.GetIdempotencyKey())
	return c.AgentServiceClient.GetExecution(ctx, req, opts...)
}

func (c hookClient) Probe(ctx context.Context, req *agentv1.ProbeRequest, opts ...grpc.CallOption) (*agentv1.ProbeResponse, error) {
	c.h.log("Probe " + c.host)
	w, ok := c.h.writable[c.host]
	if !ok {
		return c.AgentServiceClient.Probe(ctx, req, opts...)
	}
	state := "ONLINE"
	if !w {
		state = "RESTORING"
	}
	v, err := structpb.NewStruct(map[string]any{"databases": []any{map[string]any{
		"database": "mgc", "exists": true, "state": state, "standby": false, "read_only": false, "writable": w}}})
	if err != nil {
		return nil, err
	}
	return &agentv1.ProbeResponse{Facts: []*agentv1.Fact{{Name: probeDatabases, Value: v}}}, nil
}

func auditActions(t *testing.T, st *store.Store, runID string) []store.AuditEntry {
	t.Helper()
	es, err := st.ListAudit(store.AuditFilter{RunID: runID})
	require.NoError(t, err)
	return es
}

func TestRunner_Start_groupsInOrder(t *testing.T) {
	e := newEnv(t)
	id := e.create(mkPlan(
		group("one", noop("a", pc1, short), noop("b", pc2, short)),
		group("two", noop("c", sqlP, short), noop("d", sqlB, short)),
	))
	var progress atomic.Int64
	r := New(e.st, e.fl, Options{Topology: e.topo, Poll: 20 * time.Millisecond,
		OnProgress: func(runID, stepID string, ev *agentv1.ExecuteResponse) {
			if runID == id && ev.GetProgress() != nil {
				progress.Add(1)
			}
		}})
	require.NoError(t, r.Start(t.Context(), id))

	run := e.run(id)
	require.Equal(t, engine.RunSucceeded, run.Status.State)
	for _, s := range run.Steps {
		require.Equal(t, engine.StepSucceeded, s.Status.State, s.ID)
		require.Len(t, s.Status.Attempts, 1, s.ID)
		require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, e.execution(s.Host, s.Status.Key), s.ID)
		require.JSONEq(t, `{"duration":"200ms"}`, string(s.Status.Output), s.ID)
	}
	// Group two started only after both steps of group one ended.
	for _, late := range []string{"c", "d"} {
		for _, early := range []string{"a", "b"} {
			require.False(t, run.Step(late).Status.Started.Before(run.Step(early).Status.Ended), "%s started before %s ended", late, early)
		}
	}
	require.Positive(t, progress.Load(), "progress events reach the callback")

	es := auditActions(t, e.st, id)
	var acts []string
	pos := map[string]int{}
	for i, en := range es {
		acts = append(acts, en.Action)
		pos[en.Action+" "+en.StepID] = i
	}
	require.Equal(t, store.ActionRunCreated, acts[0])
	require.Equal(t, "run.started", acts[1])
	require.Equal(t, "run.succeeded", acts[len(acts)-1])
	for _, s := range []string{"a", "b", "c", "d"} {
		require.Less(t, pos[store.ActionStepAttempt+" "+s], pos[store.ActionStepSucceed+" "+s], s)
	}
	for _, s := range []string{"c", "d"} {
		require.Greater(t, pos[store.ActionStepAttempt+" "+s], pos[store.ActionStepSucceed+" a"])
		require.Greater(t, pos[store.ActionStepAttempt+" "+s], pos[store.ActionStepSucceed+" b"])
	}
	require.Equal(t, 4, strings.Count(strings.Join(acts, ","), store.ActionStepAttempt))
	ok, bad, err := e.st.VerifyAudit()
	require.NoError(t, err)
	require.True(t, ok, "audit chain broken at %d", bad)
}

func TestRunner_Start_retryAndBestEffort(t *testing.T) {
	e := newEnv(t)
	addr := e.agents[1].Addr // pc2
	require.NoError(t, e.agents[1].Stop())

	flaky := noop("r", pc2, short)
	flaky.Retry = plan.Retry{MaxAttempts: 30, Backoff: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond}
	skip := noop("skip", pc2, nil)
	skip.BestEffort = true
	id := e.create(mkPlan(
		group("one", noop("a", pc1, nil), skip),
		group("two", flaky),
	))
	done := startAsync(t.Context(), e.runner(nil), id)

	waitFor(t, 20*time.Second, "a retryable failure of r", func() bool {
		s := e.step(id, "r")
		return s.State == engine.StepRetryWait && s.Attempt >= 1
	})
	spec := e.specs[1]
	spec.Listen = addr
	testutil.StartAgent(t, e.tls, spec)

	require.NoError(t, wait(t, done))
	run := e.run(id)
	require.Equal(t, engine.RunSucceeded, run.Status.State)
	require.Equal(t, engine.StepSkipped, run.Step("skip").Status.State)
	require.Contains(t, run.Step("skip").Status.SkipReason, "unreachable")
	r := run.Step("r").Status
	require.Equal(t, engine.StepSucceeded, r.State)
	require.GreaterOrEqual(t, len(r.Attempts), 2)
	require.Equal(t, "retryable", r.Attempts[0].Outcome)
	require.Equal(t, "unreachable", r.Attempts[0].Error.Code)
	require.Equal(t, pc2, r.Attempts[0].Error.Host)
	// Backoff: each retry waited at least the policy's delay.
	for i := 1; i < len(r.Attempts); i++ {
		require.GreaterOrEqual(t, r.Attempts[i].Started.Sub(r.Attempts[i-1].Ended), 90*time.Millisecond, "attempt %d", i+1)
	}
}

func TestRunner_Start_terminalPausesThenResume(t *testing.T) {
	e := newEnv(t)
	h := &hooks{AgentClients: e.fl, failHost: pc2}
	h.fail.Store(true)
	id := e.create(mkPlan(
		group("one", noop("a", pc1, nil)),
		group("two", noop("b", pc2, nil)),
		group("three", noop("c", pc1, nil)),
	))
	r := e.runner(h)
	err := r.Start(t.Context(), id)
	require.ErrorIs(t, err, ErrPaused)

	run := e.run(id)
	require.Equal(t, engine.RunPaused, run.Status.State)
	require.NotNil(t, run.Status.Error)
	require.Equal(t, "requested_failure", run.Status.Error.Code)
	require.Equal(t, pc2, run.Status.Error.Host)
	require.Contains(t, run.Status.Error.Message, "boom")
	b := run.Step("b").Status
	require.Equal(t, engine.StepFailed, b.State)
	require.Len(t, b.Attempts, 1, "a terminal error is not retried")
	require.Equal(t, engine.StepPending, run.Step("c").Status.State)
	require.Zero(t, run.Step("c").Status.Attempt)

	// The operator fixes the cause and resumes; the runner continues from b.
	h.fail.Store(false)
	_, err = e.st.FireRun(id, operator, engine.RunResume, engine.RunInput{})
	require.NoError(t, err)
	require.NoError(t, r.Start(t.Context(), id))
	run = e.run(id)
	require.Equal(t, engine.RunSucceeded, run.Status.State)
	require.Len(t, run.Step("a").Status.Attempts, 1, "a is not run again")
	require.Len(t, run.Step("b").Status.Attempts, 2)
	require.Equal(t, engine.StepSucceeded, run.Step("b").Status.State)
	require.Len(t, run.Step("c").Status.Attempts, 1)
}

func TestRunner_Resume_afterCrash(t *testing.T) {
	e := newEnv(t)
	id := e.create(mkPlan(
		group("one", noop("long", pc1, map[string]any{"duration": "2s"})),
		group("two", noop("after", pc2, nil)),
	))
	ctx1, kill := context.WithCancel(t.Context())
	done := startAsync(ctx1, e.runner(nil), id)
	key := engine.IdempotencyKey(id, "long", 1)
	waitFor(t, 10*time.Second, "the long step to run on its agent", func() bool {
		s := e.step(id, "long")
		return s.State == engine.StepRunning && s.Key == key &&
			e.execution(pc1, key) == agentv1.ExecutionState_EXECUTION_STATE_RUNNING
	})
	kill() // the controller is killed
	require.ErrorIs(t, wait(t, done), context.Canceled)
	require.Equal(t, engine.StepRunning, e.step(id, "long").State, "nothing is fired by a dying runner")

	h := &hooks{AgentClients: e.fl}
	require.NoError(t, e.runner(h).Resume(t.Context()))

	run := e.run(id)
	require.Equal(t, engine.RunSucceeded, run.Status.State)
	long := run.Step("long").Status
	require.Len(t, long.Attempts, 1)
	require.Equal(t, key, long.Key)
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, e.execution(pc1, key))
	calls := h.Calls()
	require.NotEmpty(t, calls)
	require.Equal(t, "GetExecution "+key, calls[0], "the resumed runner asks before anything else: %v", calls)
	for _, c := range calls {
		require.NotContains(t, c, id+"/long/2", "no new attempt")
	}
	attempts, err := e.st.ListAudit(store.AuditFilter{RunID: id, StepID: "long", Action: store.ActionStepAttempt})
	require.NoError(t, err)
	require.Len(t, attempts, 1)
}

func TestRunner_Start_approvalTwoPeople(t *testing.T) {
	e := newEnv(t)
	gate := noop("gate", pc1, nil)
	gate.Approval = plan.Approval{Required: true, When: plan.ApproveAlways, Approvers: 2}
	id := e.create(mkPlan(group("one", noop("pre", pc2, nil)), group("two", gate)))
	done := startAsync(t.Context(), e.runner(nil), id)

	waitFor(t, 10*time.Second, "the run to wait for approval", func() bool {
		run := e.run(id)
		return run.Status.State == engine.RunWaitingApproval && run.Step("gate").Status.State == engine.StepWaitingApproval
	})
	_, complete, err := e.st.Approve(id, "gate", alice, "window checked")
	require.NoError(t, err)
	require.False(t, complete)
	_, _, err = e.st.Approve(id, "gate", store.Actor{Name: "ALICE", Role: pki.RoleApprover}, "again")
	require.ErrorIs(t, err, engine.ErrDuplicateApprover)
	run := e.run(id)
	require.Equal(t, engine.RunWaitingApproval, run.Status.State)
	require.Equal(t, engine.StepWaitingApproval, run.Step("gate").Status.State)
	require.Zero(t, run.Step("gate").Status.Attempt, "one approval does not release the step")

	_, complete, err = e.st.Approve(id, "gate", bob, "agreed")
	require.NoError(t, err)
	require.True(t, complete)
	require.NoError(t, wait(t, done))
	run = e.run(id)
	require.Equal(t, engine.RunSucceeded, run.Status.State)
	g := run.Step("gate").Status
	require.Len(t, g.Attempts, 1)
	require.Len(t, g.Approvals, 2)
}

func TestRunner_Start_cancelDuringStep(t *testing.T) {
	e := newEnv(t)
	id := e.create(mkPlan(
		group("one", noop("long", pc1, map[string]any{"duration": "1s"})),
		group("two", noop("next", pc2, nil)),
	))
	done := startAsync(t.Context(), e.runner(nil), id)
	waitFor(t, 10*time.Second, "the long step to run", func() bool {
		return e.step(id, "long").State == engine.StepRunning
	})
	run, err := e.st.FireRun(id, operator, engine.RunCancel, engine.RunInput{Reason: "test"})
	require.NoError(t, err)
	require.Equal(t, engine.RunCancelling, run.Status.State, "a step is in flight")

	require.NoError(t, wait(t, done))
	run = e.run(id)
	require.Equal(t, engine.RunCancelled, run.Status.State)
	require.Equal(t, engine.StepSucceeded, run.Step("long").Status.State, "the step in flight finished")
	require.Equal(t, engine.StepCancelled, run.Step("next").Status.State)
	require.Zero(t, run.Step("next").Status.Attempt, "no further step started")
}

func TestRunner_Start_guards(t *testing.T) {
	fence := func(override string) plan.Step {
		s := noop("recover", sqlB, nil)
		s.Guards = []plan.Guard{{Kind: plan.GuardOldPrimaryNotWritable, Host: sqlP, Database: "mgc", Override: override}}
		return s
	}
	t.Run("unchecked holds", func(t *testing.T) {
		// The agents have no mssql plugin: the probe says nothing, which
		// counts as "cannot be seen writable" and is audited.
		e := newEnv(t)
		id := e.create(mkPlan(group("one", fence(""))))
		require.NoError(t, e.runner(nil).Start(t.Context(), id))
		require.Equal(t, engine.RunSucceeded, e.run(id).Status.State)
		es, err := e.st.ListAudit(store.AuditFilter{RunID: id, Action: "guard.unchecked"})
		require.NoError(t, err)
		require.NotEmpty(t, es)
	})
	t.Run("writable old primary pauses before sending", func(t *testing.T) {
		e := newEnv(t)
		h := &hooks{AgentClients: e.fl, writable: map[string]bool{sqlP: true}}
		id := e.create(mkPlan(group("one", fence(""))))
		err := e.runner(h).Start(t.Context(), id)
		require.ErrorIs(t, err, ErrPaused)
		run := e.run(id)
		require.Equal(t, engine.RunPaused, run.Status.State)
		require.Equal(t, "guard_failed", run.Status.Error.Code)
		require.Equal(t, sqlP, run.Status.Error.Host)
		require.Contains(t, run.Status.Error.Message, plan.GuardOldPrimaryNotWritable)
		require.Contains(t, run.Status.Error.Message, "mgc")
		require.Zero(t, run.Step("recover").Status.Attempt)
		require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_NOT_FOUND, e.execution(sqlB, engine.IdempotencyKey(id, "recover", 1)))
		for _, c := range h.Calls() {
			require.False(t, strings.HasPrefix(c, "Execute"), "nothing is sent: %v", h.Calls())
		}

		// Fenced now: resume, and the step runs.
		h.writable[sqlP] = false
		_, err = e.st.FireRun(id, operator, engine.RunResume, engine.RunInput{})
		require.NoError(t, err)
		require.NoError(t, e.runner(h).Start(t.Context(), id))
		require.Equal(t, engine.RunSucceeded, e.run(id).Status.State)
	})
	t.Run("override runs and audits", func(t *testing.T) {
		e := newEnv(t)
		h := &hooks{AgentClients: e.fl, writable: map[string]bool{sqlP: true}}
		id := e.create(mkPlan(group("one", fence("isolated from clients"))))
		require.NoError(t, e.runner(h).Start(t.Context(), id))
		require.Equal(t, engine.RunSucceeded, e.run(id).Status.State)
		es, err := e.st.ListAudit(store.AuditFilter{RunID: id, StepID: "recover", Action: store.ActionForce})
		require.NoError(t, err)
		require.Len(t, es, 1)
		require.Contains(t, string(es[0].Details), "isolated from clients")
	})
	t.Run("database_writable needs an answer", func(t *testing.T) {
		e := newEnv(t)
		s := noop("overwrite", sqlB, nil)
		s.Guards = []plan.Guard{{Kind: plan.GuardDatabaseWritable, Host: sqlP, Database: "mgc"}}
		id := e.create(mkPlan(group("one", s)))
		require.ErrorIs(t, e.runner(nil).Start(t.Context(), id), ErrPaused)
		require.Equal(t, "guard_failed", e.run(id).Status.Error.Code)
	})
}

func TestRunner_Start_invalidPlanFails(t *testing.T) {
	e := newEnv(t)
	id := e.create(mkPlan(group("one", noop("a", "nowhere.example.test", nil))))
	err := e.runner(nil).Start(t.Context(), id)
	require.ErrorIs(t, err, ErrFailed)
	run := e.run(id)
	require.Equal(t, engine.RunFailed, run.Status.State)
	require.Equal(t, "plan_invalid", run.Status.Error.Code)
	require.Zero(t, run.Steps[0].Status.Attempt)
}

func TestBackoff(t *testing.T) {
	p := plan.Retry{MaxAttempts: 5, Backoff: 100 * time.Millisecond, MaxBackoff: 350 * time.Millisecond}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 350 * time.Millisecond, 4: 350 * time.Millisecond} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { require.Equal(t, want, backoff(p, n, 0)) })
	}
	d := backoff(p, 1, 0.5)
	require.True(t, d >= 100*time.Millisecond && d <= 150*time.Millisecond, d)
}

func TestDataLossWindow(t *testing.T) {
	mk := func(outs map[string]string) *store.Run {
		r := &store.Run{}
		for id, o := range outs {
			r.Steps = append(r.Steps, store.StepRecord{ID: id, Status: engine.StepStatus{Output: []byte(o)}})
		}
		return r
	}
	tests := []struct {
		name  string
		outs  map[string]string
		known bool
		win   time.Duration
	}{
		{"zero, offsets compared as instants", map[string]string{
			"restore": `{"reached_backup_time":"2026-11-29T01:00:00Z","newest_backup_time":"2026-11-29T02:00:00+01:00","complete":true}`}, true, 0},
		{"behind", map[string]string{
			"restore": `{"reached_backup_time":"2026-11-29T01:00:00Z","newest_backup_time":"2026-11-29T01:05:00Z"}`}, true, 5 * time.Minute},
		{"tail-log backup newer", map[string]string{
			"restore": `{"reached_backup_time":"2026-11-29T01:00:00Z","newest_backup_time":"2026-11-29T01:00:00Z"}`,
			"tail":    `{"backup_finish_date":"2026-11-29T01:01:00Z"}`}, true, time.Minute},
		{"incomplete", map[string]string{
			"restore": `{"reached_backup_time":"2026-11-29T01:00:00Z","newest_backup_time":"2026-11-29T01:00:00Z","complete":false}`}, false, 0},
		{"unapplied", map[string]string{
			"restore": `{"reached_backup_time":"2026-11-29T01:00:00Z","newest_backup_time":"2026-11-29T01:00:00Z","unapplied":["x.trn"]}`}, false, 0},
		{"share unreadable", map[string]string{
			"restore": `{"reached_backup_time":"2026-11-29T01:00:00Z","newest_backup_time":"2026-11-29T01:00:00Z"}`,
			"copy":    `{"source_readable":false}`}, false, 0},
		{"missing fields", map[string]string{"restore": `{}`}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ids []string
			for id := range tt.outs {
				ids = append(ids, id)
			}
			w := dataLossWindow(mk(tt.outs), ids)
			require.Equal(t, tt.known, w.known, w.why)
			if tt.known {
				require.Equal(t, tt.win, w.window)
			}
		})
	}
	w := dataLossWindow(mk(map[string]string{}), []string{"absent"})
	require.False(t, w.known, "a source without output makes the window unknown")
}

func TestRunner_Resume_settlesWithoutResending(t *testing.T) {
	t.Run("never received: sent with the same key", func(t *testing.T) {
		e := newEnv(t)
		id := e.create(mkPlan(group("one", noop("a", pc1, nil))))
		_, err := e.st.FireRun(id, store.ControllerActor(), engine.RunStart, engine.RunInput{})
		require.NoError(t, err)
		key, err := e.st.BeginAttempt(id, "a") // journaled, then the controller died
		require.NoError(t, err)
		h := &hooks{AgentClients: e.fl}
		require.NoError(t, e.runner(h).Resume(t.Context()))
		require.Equal(t, engine.RunSucceeded, e.run(id).Status.State)
		require.Equal(t, []string{"GetExecution " + key, "Execute " + key}, h.Calls())
		require.Len(t, e.step(id, "a").Attempts, 1)
	})
	t.Run("ended while the controller was down: not sent again", func(t *testing.T) {
		e := newEnv(t)
		id := e.create(mkPlan(group("one", noop("a", pc1, short)), group("two", noop("b", pc2, nil))))
		ctx1, kill := context.WithCancel(t.Context())
		done := startAsync(ctx1, e.runner(nil), id)
		key := engine.IdempotencyKey(id, "a", 1)
		waitFor(t, 10*time.Second, "a to run on its agent", func() bool {
			return e.step(id, "a").Key == key && e.execution(pc1, key) == agentv1.ExecutionState_EXECUTION_STATE_RUNNING
		})
		kill()
		require.ErrorIs(t, wait(t, done), context.Canceled)
		waitFor(t, 10*time.Second, "a to end on its agent", func() bool {
			return e.execution(pc1, key) == agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED
		})
		h := &hooks{AgentClients: e.fl}
		require.NoError(t, e.runner(h).Resume(t.Context()))
		require.Equal(t, engine.RunSucceeded, e.run(id).Status.State)
		require.Equal(t, "GetExecution "+key, h.Calls()[0])
		require.NotContains(t, h.Calls(), "Execute "+key, "an ended execution is not sent again")
		require.JSONEq(t, `{"duration":"200ms"}`, string(e.step(id, "a").Output))
	})
	t.Run("paused and waiting runs stay as they are", func(t *testing.T) {
		e := newEnv(t)
		gate := noop("gate", pc1, nil)
		gate.Approval = plan.Approval{Required: true, When: plan.ApproveAlways, Approvers: 1}
		id := e.create(mkPlan(group("one", gate)))
		ctx1, stop := context.WithCancel(t.Context())
		done := startAsync(ctx1, e.runner(nil), id)
		waitFor(t, 10*time.Second, "the approval wait", func() bool { return e.run(id).Status.State == engine.RunWaitingApproval })
		stop()
		require.ErrorIs(t, wait(t, done), context.Canceled)
		require.NoError(t, e.runner(nil).Resume(t.Context()))
		require.Equal(t, engine.RunWaitingApproval, e.run(id).Status.State)
	})
}

func TestRunner_Start_dataLossApproval(t *testing.T) {
	restore := func(reached, newest string) plan.Step {
		return noop("restore", sqlB, map[string]any{"reached_backup_time": reached, "newest_backup_time": newest, "complete": true})
	}
	recoverStep := func() plan.Step {
		s := noop("recover", sqlB, nil)
		s.Approval = plan.Approval{Required: true, When: plan.ApproveOnDataLoss, Approvers: 1}
		s.DataLossFrom = []string{"restore"}
		return s
	}
	t.Run("zero window runs without waiting", func(t *testing.T) {
		e := newEnv(t)
		id := e.create(mkPlan(group("one", restore("2026-11-29T01:00:00Z", "2026-11-29T02:00:00+01:00")), group("two", recoverStep())))
		require.NoError(t, e.runner(nil).Start(t.Context(), id))
		require.Equal(t, engine.RunSucceeded, e.run(id).Status.State)
		require.Empty(t, e.step(id, "recover").Approvals)
		es, err := e.st.ListAudit(store.AuditFilter{RunID: id, Action: "approval.not_needed"})
		require.NoError(t, err)
		require.Len(t, es, 1)
	})
	t.Run("window not zero waits", func(t *testing.T) {
		e := newEnv(t)
		id := e.create(mkPlan(group("one", restore("2026-11-29T01:00:00Z", "2026-11-29T01:05:00Z")), group("two", recoverStep())))
		done := startAsync(t.Context(), e.runner(nil), id)
		waitFor(t, 10*time.Second, "the approval wait", func() bool {
			return e.step(id, "recover").State == engine.StepWaitingApproval
		})
		es, err := e.st.ListAudit(store.AuditFilter{RunID: id, StepID: "recover", Action: "step.waiting_approval"})
		require.NoError(t, err)
		require.Len(t, es, 1)
		require.Contains(t, string(es[0].Details), `"window":"5m0s"`)
		_, _, err = e.st.Approve(id, "recover", alice, "5 minutes accepted")
		require.NoError(t, err)
		require.NoError(t, wait(t, done))
		require.Equal(t, engine.RunSucceeded, e.run(id).Status.State)
	})
}

func TestRunner_Start_expectations(t *testing.T) {
	e := newEnv(t)
	src := noop("src", pc1, map[string]any{"lsn": "42"})
	ok := noop("ok", pc2, map[string]any{"reached": "42", "state": "ONLINE"})
	ok.Expect = map[string]any{"state": "ONLINE"}
	ok.ExpectFrom = map[string]string{"reached": "src.lsn"}
	bad := noop("bad", pc2, map[string]any{"state": "RESTORING"})
	bad.Expect = map[string]any{"state": "ONLINE"}
	bad.Retry = plan.Retry{MaxAttempts: 2, Backoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	id := e.create(mkPlan(group("one", src), group("two", ok), group("three", bad)))
	require.ErrorIs(t, e.runner(nil).Start(t.Context(), id), ErrPaused)
	run := e.run(id)
	require.Equal(t, engine.StepSucceeded, run.Step("ok").Status.State)
	b := run.Step("bad").Status
	require.Equal(t, engine.StepFailed, b.State)
	require.Len(t, b.Attempts, 2, "an unmet expectation is retried within the budget")
	require.Equal(t, "expectation_unmet", run.Status.Error.Code)
	require.Contains(t, run.Status.Error.Message, `state = "RESTORING", want "ONLINE"`)
}
