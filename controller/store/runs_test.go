package store

import (
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/internal/pki"
)

var (
	alice  = Actor{Name: "alice", Role: pki.RoleOperator}
	bob    = Actor{Name: "bob", Role: pki.RoleApprover}
	carol  = Actor{Name: "carol", Role: pki.RoleAdmin}
	viewer = Actor{Name: "vic", Role: pki.RoleViewer}
	ctl    = ControllerActor()
)

func openStore(t *testing.T) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir, time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, dir
}

// testPlan: group 1 runs A (retry 2) and B (best effort) in parallel;
// group 2 runs R, which needs approvers approvals.
func testPlan(pool string, approvers int) *plan.Plan {
	st := func(id string) plan.Step {
		return plan.Step{ID: id, Host: "sql1.dc2.example", Action: "mssql.db.recover", Params: map[string]any{"database": "mgc"},
			Timeout: time.Minute, Retry: plan.Retry{MaxAttempts: 2, Backoff: time.Second, MaxBackoff: time.Second}, Reason: "test"}
	}
	b := st("B")
	b.BestEffort = true
	r := st("R")
	r.Destructive = true
	r.Approval = plan.Approval{Required: true, When: plan.ApproveAlways, Approvers: approvers}
	return &plan.Plan{Kind: plan.FailoverDisaster, Pool: pool, Groups: []plan.Group{
		{Name: "one", Steps: []plan.Step{st("A"), b}},
		{Name: "two", Steps: []plan.Step{r}},
	}}
}

func create(t *testing.T, s *Store, pool string) *Run {
	t.Helper()
	r, err := s.CreateRun(NewRun{Plan: testPlan(pool, 2), Actor: alice, Reason: "site dc1 lost"})
	require.NoError(t, err)
	return r
}

func auditActions(t *testing.T, s *Store, f AuditFilter) []string {
	t.Helper()
	es, err := s.ListAudit(f)
	require.NoError(t, err)
	var out []string
	for _, e := range es {
		out = append(out, e.Action)
	}
	return out
}

// finish drives run r to succeeded through the store, as a runner would.
func finish(t *testing.T, s *Store, id string) {
	t.Helper()
	_, err := s.FireRun(id, ctl, engine.RunStart, engine.RunInput{})
	require.NoError(t, err)
	for _, st := range []string{"A", "B"} {
		key, err := s.BeginAttempt(id, st)
		require.NoError(t, err)
		_, err = s.FireStep(id, st, ctl, engine.StepAttemptSucceeded, engine.StepInput{Key: key, Output: json.RawMessage(`{}`)})
		require.NoError(t, err)
	}
	_, err = s.Fire(id, ctl, Change{Step: "R", StepEvent: engine.StepWaitApproval}, Change{RunEvent: engine.RunWaitApproval})
	require.NoError(t, err)
	_, _, err = s.Approve(id, "R", bob, "ok")
	require.NoError(t, err)
	_, _, err = s.Approve(id, "R", carol, "ok")
	require.NoError(t, err)
	key, err := s.BeginAttempt(id, "R")
	require.NoError(t, err)
	_, err = s.Fire(id, ctl, Change{Step: "R", StepEvent: engine.StepAttemptSucceeded, StepInput: engine.StepInput{Key: key}},
		Change{RunEvent: engine.RunSucceed})
	require.NoError(t, err)
}

func TestStore_CreateRun_recordsRunStepsAndAudit(t *testing.T) {
	s, _ := openStore(t)
	r := create(t, s, "pchat01.example")
	require.Equal(t, "run-1", r.ID)
	require.Equal(t, plan.FailoverDisaster, r.Kind)
	require.Equal(t, engine.RunPending, r.Status.State)
	require.Equal(t, alice, r.StartedBy)
	require.Len(t, r.Steps, 3)
	require.Equal(t, []string{"A", "B", "R"}, []string{r.Steps[0].ID, r.Steps[1].ID, r.Steps[2].ID})
	require.Equal(t, 1, r.Step("R").GroupIndex)
	require.Equal(t, 2, r.Step("R").Status.RequiredApprovers)
	require.True(t, r.Step("B").Status.BestEffort)
	require.Equal(t, 2, r.Step("A").Status.MaxAttempts)

	got, err := s.GetRun("run-1")
	require.NoError(t, err)
	require.Equal(t, r.Steps, got.Steps)
	p, err := got.DecodePlan()
	require.NoError(t, err)
	require.Equal(t, testPlan("pchat01.example", 2), p)
	require.Equal(t, []string{ActionRunCreated}, auditActions(t, s, AuditFilter{RunID: "run-1"}))

	_, err = s.GetRun("run-9")
	require.ErrorIs(t, err, ErrRunNotFound)
	_, err = s.GetRun("nonsense")
	require.ErrorIs(t, err, ErrRunNotFound)
}

func TestStore_CreateRun_refusals(t *testing.T) {
	tests := []struct {
		name string
		in   NewRun
		want error
	}{
		{"viewer", NewRun{Plan: testPlan("p", 1), Actor: viewer}, ErrForbidden},
		{"controller", NewRun{Plan: testPlan("p", 1), Actor: ctl}, ErrForbidden},
		{"nil plan", NewRun{Actor: alice}, ErrBadRun},
		{"bad kind", NewRun{Plan: &plan.Plan{Kind: "drill", Pool: "p", Groups: testPlan("p", 1).Groups}, Actor: alice}, ErrBadRun},
		{"force without reason", NewRun{Plan: testPlan("p", 1), Actor: alice, Force: Force{SplitBrain: true}}, ErrBadRun},
		{"duplicate step", NewRun{Plan: &plan.Plan{Kind: plan.Failback, Pool: "p", Groups: []plan.Group{
			{Name: "a", Steps: []plan.Step{{ID: "X"}}}, {Name: "b", Steps: []plan.Step{{ID: "X"}}}}}, Actor: alice}, ErrBadRun},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openStore(t)
			_, err := s.CreateRun(tt.in)
			require.ErrorIs(t, err, tt.want)
			runs, err := s.ListRuns(0)
			require.NoError(t, err)
			require.Empty(t, runs)
			require.Empty(t, auditActions(t, s, AuditFilter{}))
		})
	}
}

func TestStore_CreateRun_oneActiveRunPerPool(t *testing.T) {
	s, _ := openStore(t)
	r := create(t, s, "pchat01.example")
	_, err := s.CreateRun(NewRun{Plan: testPlan("PCHAT01.example", 1), Actor: carol})
	require.ErrorIs(t, err, ErrRunActive)
	require.ErrorContains(t, err, r.ID)
	require.ErrorContains(t, err, "chatdr run cancel run-1")

	other, err := s.CreateRun(NewRun{Plan: testPlan("pchat02.example", 1), Actor: carol})
	require.NoError(t, err, "another pool is independent")

	// Paused still holds the lock; cancelling releases it.
	_, err = s.FireRun(r.ID, ctl, engine.RunStart, engine.RunInput{})
	require.NoError(t, err)
	_, err = s.FireRun(r.ID, ctl, engine.RunPause, engine.RunInput{Err: &engine.Error{Code: "guard_failed", Message: "x"}})
	require.NoError(t, err)
	_, err = s.CreateRun(NewRun{Plan: testPlan("pchat01.example", 1), Actor: carol})
	require.ErrorIs(t, err, ErrRunActive)
	got, err := s.FireRun(r.ID, alice, engine.RunCancel, engine.RunInput{Reason: "wrong pool"})
	require.NoError(t, err)
	require.Equal(t, engine.RunCancelled, got.Status.State, "nothing in flight: the cancel completes at once")
	for _, st := range got.Steps {
		require.Equal(t, engine.StepCancelled, st.Status.State)
	}
	next, err := s.CreateRun(NewRun{Plan: testPlan("pchat01.example", 1), Actor: carol})
	require.NoError(t, err, "a cancelled run neither locks nor blocks")

	inflight, err := s.InFlightRuns()
	require.NoError(t, err)
	require.Equal(t, []string{other.ID, next.ID}, []string{inflight[0].ID, inflight[1].ID})
	require.Len(t, inflight, 2)
	all, err := s.ListRuns(0)
	require.NoError(t, err)
	require.Equal(t, []string{"run-3", "run-2", "run-1"}, []string{all[0].ID, all[1].ID, all[2].ID})
	two, err := s.ListRuns(2)
	require.NoError(t, err)
	require.Len(t, two, 2)
	require.Equal(t, "run-3", two[0].ID)
}

func TestStore_CreateRun_concurrentSamePool(t *testing.T) {
	s, _ := openStore(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.CreateRun(NewRun{Plan: testPlan("pchat01.example", 1), Actor: alice})
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			require.ErrorIs(t, err, ErrRunActive)
		}
	}
	require.Equal(t, 1, ok)
	runs, err := s.ListRuns(0)
	require.NoError(t, err)
	require.Len(t, runs, 1)
}

func TestStore_CreateRun_antiFlap(t *testing.T) {
	s, _ := openStore(t)
	r := create(t, s, "pchat01.example")
	finish(t, s, r.ID)
	got, err := s.GetRun(r.ID)
	require.NoError(t, err)
	require.Equal(t, engine.RunSucceeded, got.Status.State)

	_, err = s.CreateRun(NewRun{Plan: testPlan("pchat01.example", 1), Actor: carol})
	require.ErrorIs(t, err, ErrNotAcknowledged)
	require.ErrorContains(t, err, "chatdr run ack run-1")
	_, err = s.CreateRun(NewRun{Plan: testPlan("pchat01.example", 1), Actor: carol, Force: Force{Unacknowledged: true}})
	require.ErrorIs(t, err, ErrBadRun, "forcing needs a reason")

	// Forced with a reason: allowed and audited.
	forced, err := s.CreateRun(NewRun{Plan: testPlan("pchat01.example", 1), Actor: carol,
		Force: Force{Unacknowledged: true, Reason: "dc2 flooding, go back now"}})
	require.NoError(t, err)
	require.Equal(t, "run-1", forced.Force.Overrode)
	es, err := s.ListAudit(AuditFilter{RunID: forced.ID, Action: ActionForce})
	require.NoError(t, err)
	require.Len(t, es, 1)
	require.Equal(t, carol, es[0].Actor)
	require.Contains(t, string(es[0].Details), "dc2 flooding")
	_, err = s.FireRun(forced.ID, carol, engine.RunCancel, engine.RunInput{})
	require.NoError(t, err)

	// Acknowledge lifts the block; a viewer may not acknowledge.
	_, err = s.FireRun(r.ID, viewer, engine.RunAcknowledge, engine.RunInput{})
	require.ErrorIs(t, err, ErrForbidden)
	acked, err := s.FireRun(r.ID, alice, engine.RunAcknowledge, engine.RunInput{})
	require.NoError(t, err)
	require.Equal(t, engine.RunAcknowledged, acked.Status.State)
	require.Equal(t, "alice", acked.Status.AcknowledgedBy)
	_, err = s.CreateRun(NewRun{Plan: testPlan("pchat01.example", 1), Actor: alice})
	require.NoError(t, err)
	require.Contains(t, auditActions(t, s, AuditFilter{RunID: r.ID}), ActionAck)
}

func TestStore_CreateRun_unwritableStoreChangesNothing(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(t *testing.T, s *Store, dir string) *Store
	}{
		{"closed db", func(t *testing.T, s *Store, dir string) *Store {
			require.NoError(t, s.Close())
			return s
		}},
		{"read-only db", func(t *testing.T, s *Store, dir string) *Store {
			require.NoError(t, s.Close())
			db, err := bolt.Open(filepath.Join(dir, FileName), 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
			require.NoError(t, err)
			return &Store{db: db}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, time.Second)
			require.NoError(t, err)
			broken := tt.breakIt(t, s, dir)
			_, err = broken.CreateRun(NewRun{Plan: testPlan("pchat01.example", 1), Actor: alice})
			require.Error(t, err)
			_ = broken.Close()

			s, err = Open(dir, time.Second)
			require.NoError(t, err)
			defer s.Close()
			runs, err := s.ListRuns(0)
			require.NoError(t, err)
			require.Empty(t, runs)
			require.Empty(t, auditActions(t, s, AuditFilter{}))
			_, err = s.CreateRun(NewRun{Plan: testPlan("pchat01.example", 1), Actor: alice})
			require.NoError(t, err, "no lock was left behind")
		})
	}
}

func TestStore_BeginAttempt_journaledBeforeSendAndDurable(t *testing.T) {
	s, dir := openStore(t)
	r := create(t, s, "pchat01.example")
	_, err := s.BeginAttempt(r.ID, "A")
	require.ErrorIs(t, err, engine.ErrInvalidTransition, "a pending run starts no attempt")
	_, err = s.FireRun(r.ID, ctl, engine.RunStart, engine.RunInput{})
	require.NoError(t, err)
	key, err := s.BeginAttempt(r.ID, "A")
	require.NoError(t, err)
	require.Equal(t, "run-1/A/1", key)
	_, err = s.BeginAttempt(r.ID, "A")
	require.ErrorIs(t, err, engine.ErrInvalidTransition, "a running step is not started twice")
	_, err = s.BeginAttempt(r.ID, "nope")
	require.ErrorIs(t, err, ErrBadRun)

	// Crash: reopen the file; the attempt and its key are there.
	require.NoError(t, s.Close())
	s2, err := Open(dir, time.Second)
	require.NoError(t, err)
	defer s2.Close()
	inflight, err := s2.InFlightRuns()
	require.NoError(t, err)
	require.Len(t, inflight, 1)
	a := inflight[0].Step("A").Status
	require.Equal(t, engine.StepRunning, a.State)
	require.Equal(t, key, a.Key)
	require.Len(t, a.Attempts, 1)
	require.True(t, a.Attempts[0].Ended.IsZero(), "in flight")
	es, err := s2.ListAudit(AuditFilter{RunID: r.ID, StepID: "A", Action: ActionStepAttempt})
	require.NoError(t, err)
	require.Len(t, es, 1)
	require.Contains(t, string(es[0].Details), `"key":"run-1/A/1"`)

	// A stale outcome is refused; a retryable failure then a new key.
	_, err = s2.FireStep(r.ID, "A", ctl, engine.StepAttemptSucceeded, engine.StepInput{Key: "run-1/A/0"})
	require.ErrorIs(t, err, engine.ErrInvalidTransition)
	_, err = s2.FireStep(r.ID, "A", ctl, engine.StepAttemptFailedRetryable, engine.StepInput{Key: key,
		Err: &engine.Error{Code: "unavailable", Message: "busy", Host: "sql1.dc2.example", Retryable: true}, RetryAt: time.Now().Add(time.Second)})
	require.NoError(t, err)
	_, err = s2.FireStep(r.ID, "A", ctl, engine.StepRetryDue, engine.StepInput{})
	require.NoError(t, err)
	key2, err := s2.BeginAttempt(r.ID, "A")
	require.NoError(t, err)
	require.Equal(t, "run-1/A/2", key2)
	// Only the controller fires step events.
	_, err = s2.FireStep(r.ID, "A", alice, engine.StepAttemptSucceeded, engine.StepInput{Key: key2})
	require.ErrorIs(t, err, ErrForbidden)
	got, err := s2.FireStep(r.ID, "A", ctl, engine.StepAttemptSucceeded, engine.StepInput{Key: key2, Output: json.RawMessage(`{"state":"ONLINE"}`)})
	require.NoError(t, err)
	st := got.Step("A").Status
	require.Equal(t, engine.StepSucceeded, st.State)
	require.JSONEq(t, `{"state":"ONLINE"}`, string(st.Output))
	require.Len(t, st.Attempts, 2)
	require.Equal(t, "busy", st.Attempts[0].Error.Message)
	require.Equal(t, []string{ActionStepAttempt, "step.retry", "step.retry_due", ActionStepAttempt, ActionStepSucceed},
		auditActions(t, s2, AuditFilter{RunID: r.ID, StepID: "A"}))
}

func TestStore_Fire_atomic(t *testing.T) {
	s, _ := openStore(t)
	r := create(t, s, "pchat01.example")
	before := auditActions(t, s, AuditFilter{})
	_, err := s.Fire(r.ID, ctl, Change{RunEvent: engine.RunStart}, Change{Step: "A", StepEvent: engine.StepAttemptSucceeded})
	require.ErrorIs(t, err, engine.ErrInvalidTransition)
	got, err := s.GetRun(r.ID)
	require.NoError(t, err)
	require.Equal(t, engine.RunPending, got.Status.State, "the first change was rolled back with the second")
	require.Equal(t, before, auditActions(t, s, AuditFilter{}))
	_, err = s.FireRun(r.ID, viewer, engine.RunCancel, engine.RunInput{})
	require.ErrorIs(t, err, ErrForbidden)
	_, err = s.FireRun(r.ID, alice, engine.RunStart, engine.RunInput{})
	require.ErrorIs(t, err, ErrForbidden, "start is the controller's")
}

func TestStore_PauseResumeCancel(t *testing.T) {
	s, _ := openStore(t)
	r := create(t, s, "pchat01.example")
	_, err := s.FireRun(r.ID, ctl, engine.RunStart, engine.RunInput{})
	require.NoError(t, err)
	ka, err := s.BeginAttempt(r.ID, "A")
	require.NoError(t, err)
	_, err = s.BeginAttempt(r.ID, "B")
	require.NoError(t, err)
	terminal := &engine.Error{Code: "permission_denied", Message: "RESTORE refused", Host: "sql1.dc2.example", Hint: "grant sysadmin to the agent's login"}
	got, err := s.Fire(r.ID, ctl,
		Change{Step: "A", StepEvent: engine.StepAttemptFailedTerminal, StepInput: engine.StepInput{Key: ka, Err: terminal}},
		Change{RunEvent: engine.RunPause, RunInput: engine.RunInput{Err: terminal}})
	require.NoError(t, err)
	require.Equal(t, engine.RunPaused, got.Status.State)
	require.Equal(t, terminal, got.Status.Error)
	require.Equal(t, engine.StepFailed, got.Step("A").Status.State)

	_, err = s.FireRun(r.ID, viewer, engine.RunResume, engine.RunInput{})
	require.ErrorIs(t, err, ErrForbidden)
	got, err = s.FireRun(r.ID, alice, engine.RunResume, engine.RunInput{})
	require.NoError(t, err)
	require.Equal(t, engine.RunRunning, got.Status.State)
	require.Nil(t, got.Status.Error)
	require.Equal(t, engine.StepPending, got.Step("A").Status.State, "resume re-arms the failed step")
	require.Equal(t, engine.StepRunning, got.Step("B").Status.State)

	// Cancel with B in flight: A and R are cancelled, the run waits for B.
	got, err = s.FireRun(r.ID, alice, engine.RunCancel, engine.RunInput{Reason: "operator abort"})
	require.NoError(t, err)
	require.Equal(t, engine.RunCancelling, got.Status.State)
	require.Equal(t, engine.StepCancelled, got.Step("A").Status.State)
	require.Equal(t, engine.StepCancelled, got.Step("R").Status.State)
	require.Equal(t, engine.StepRunning, got.Step("B").Status.State)
	_, err = s.BeginAttempt(r.ID, "A")
	require.ErrorIs(t, err, engine.ErrInvalidTransition)
	_, err = s.CreateRun(NewRun{Plan: testPlan("pchat01.example", 1), Actor: alice})
	require.ErrorIs(t, err, ErrRunActive, "cancelling still holds the pool")
	got, err = s.Fire(r.ID, ctl,
		Change{Step: "B", StepEvent: engine.StepSkipUnreachable, StepInput: engine.StepInput{Reason: "connection refused"}},
		Change{RunEvent: engine.RunCancelDone})
	require.NoError(t, err)
	require.Equal(t, engine.RunCancelled, got.Status.State)
	require.Equal(t, "alice", got.Status.CancelledBy)
	_, err = s.CreateRun(NewRun{Plan: testPlan("pchat01.example", 1), Actor: alice})
	require.NoError(t, err)
	require.Equal(t, []string{ActionRunCreated, "run.started", ActionStepAttempt, ActionStepAttempt, "step.failed", "run.paused",
		ActionResume, "step.resumed", ActionCancel, "step.cancelled", "step.cancelled", "step.skipped", "run.cancelled"},
		auditActions(t, s, AuditFilter{RunID: r.ID}))
}

func TestStore_Approve(t *testing.T) {
	s, _ := openStore(t)
	r := create(t, s, "pchat01.example")
	_, err := s.FireRun(r.ID, ctl, engine.RunStart, engine.RunInput{})
	require.NoError(t, err)
	_, _, err = s.Approve(r.ID, "R", bob, "ok")
	require.ErrorIs(t, err, engine.ErrNotWaitingApproval)
	_, err = s.Fire(r.ID, ctl, Change{Step: "R", StepEvent: engine.StepWaitApproval}, Change{RunEvent: engine.RunWaitApproval})
	require.NoError(t, err)

	tests := []struct {
		name     string
		who      Actor
		reason   string
		want     error
		complete bool
	}{
		{"operator refused", alice, "ok", ErrForbidden, false},
		{"viewer refused", viewer, "ok", engine.ErrNotApprover, false},
		{"no reason", bob, " ", nil, false},
		{"first approver", bob, "RPO 4 min accepted", nil, false},
		{"same person twice", Actor{Name: "Bob", Role: pki.RoleApprover}, "again", engine.ErrDuplicateApprover, false},
		{"second approver", carol, "agreed", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run, complete, err := s.Approve(r.ID, "R", tt.who, tt.reason)
			switch {
			case tt.want != nil:
				require.ErrorIs(t, err, tt.want)
			case tt.reason == " ":
				require.Error(t, err)
			default:
				require.NoError(t, err)
				require.Equal(t, tt.complete, complete)
				if complete {
					require.Equal(t, engine.StepPending, run.Step("R").Status.State)
					require.True(t, run.Step("R").Status.Approved)
					require.Equal(t, engine.RunRunning, run.Status.State)
				} else {
					require.Equal(t, engine.StepWaitingApproval, run.Step("R").Status.State)
					require.Equal(t, engine.RunWaitingApproval, run.Status.State)
				}
			}
		})
	}
	got, err := s.GetRun(r.ID)
	require.NoError(t, err)
	as := got.Step("R").Status.Approvals
	require.Len(t, as, 2)
	require.Equal(t, []string{"bob", "carol"}, []string{as[0].Approver, as[1].Approver})
	require.Equal(t, "RPO 4 min accepted", as[0].Reason)
	require.Equal(t, []string{ActionApproval, ActionApproval, "step.approved", "run.approved"},
		auditActions(t, s, AuditFilter{RunID: r.ID, Action: "*"})[4:])
}
