package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/internal/pki"
)

var t0 = time.Date(2026, 11, 29, 2, 0, 0, 0, time.UTC)

// wantRun is the run table written out independently of the code.
var wantRun = map[RunState]map[RunEvent]RunState{
	RunPending:         {RunStart: RunRunning, RunCancel: RunCancelling, RunFail: RunFailed},
	RunRunning:         {RunWaitApproval: RunWaitingApproval, RunPause: RunPaused, RunCancel: RunCancelling, RunSucceed: RunSucceeded, RunFail: RunFailed},
	RunWaitingApproval: {RunApprove: RunRunning, RunPause: RunPaused, RunCancel: RunCancelling, RunFail: RunFailed},
	RunPaused:          {RunResume: RunRunning, RunCancel: RunCancelling, RunFail: RunFailed},
	RunCancelling:      {RunCancelDone: RunCancelled},
	RunCancelled:       {RunAcknowledge: RunAcknowledged},
	RunSucceeded:       {RunAcknowledge: RunAcknowledged},
	RunFailed:          {RunAcknowledge: RunAcknowledged},
	RunAcknowledged:    {},
}

// wantStep is the step table written out independently of the code.
var wantStep = map[StepState]map[StepEvent]StepState{
	StepPending: {StepWaitApproval: StepWaitingApproval, StepAttemptStarted: StepRunning,
		StepSkipUnreachable: StepSkipped, StepSkipAlreadyDone: StepSkipped, StepCancel: StepCancelled},
	StepWaitingApproval: {StepApprove: StepPending, StepCancel: StepCancelled},
	StepRunning: {StepAttemptSucceeded: StepSucceeded, StepAttemptFailedRetryable: StepRetryWait,
		StepAttemptFailedTerminal: StepFailed, StepSkipUnreachable: StepSkipped},
	StepRetryWait: {StepRetryDue: StepPending, StepSkipUnreachable: StepSkipped, StepCancel: StepCancelled},
	StepSucceeded: {},
	StepFailed:    {StepResume: StepPending},
	StepSkipped:   {},
	StepCancelled: {},
}

func fullRunInput() RunInput {
	return RunInput{Now: t0, Actor: "alice", Reason: "why", Err: &Error{Code: "x", Message: "boom", Host: "h", Hint: "fix"}}
}

func TestFireRun_crossProduct(t *testing.T) {
	require.Len(t, wantRun, len(RunStates()))
	for _, s := range RunStates() {
		for _, e := range RunEvents() {
			t.Run(fmt.Sprintf("%s/%s", s, e), func(t *testing.T) {
				d := RunStatus{State: s}
				before := d
				err := FireRun(&d, e, fullRunInput())
				want, legal := wantRun[s][e]
				require.Equal(t, legal, CanRun(s, e))
				if !legal {
					require.ErrorIs(t, err, ErrInvalidTransition)
					var te *TransitionError
					require.ErrorAs(t, err, &te)
					require.Equal(t, "run", te.Machine)
					require.Equal(t, string(s), te.State)
					require.Equal(t, string(e), te.Event)
					require.Contains(t, err.Error(), string(s))
					require.Contains(t, err.Error(), string(e))
					require.Equal(t, before, d, "a refused transition must not change the data")
					return
				}
				require.NoError(t, err)
				require.Equal(t, want, d.State)
			})
		}
	}
}

func stepFixture(s StepState) StepStatus {
	return StepStatus{
		State: s, MaxAttempts: 3, BestEffort: true, RequiredApprovers: 1,
		Approvals: []Approval{{Approver: "bob", Role: pki.RoleApprover, Reason: "ok", Time: t0}},
		Attempt:   1, Key: "r1/S1/1",
		Attempts: []Attempt{{N: 1, Key: "r1/S1/1", Started: t0}},
	}
}

func fullStepInput() StepInput {
	return StepInput{Now: t0.Add(time.Minute), RunID: "r1", StepID: "S1", Key: "r1/S1/1",
		Err:    &Error{Code: "unavailable", Message: "down", Host: "h", Retryable: true},
		Output: json.RawMessage(`{"ok":true}`), RetryAt: t0.Add(2 * time.Minute), Reason: "already ONLINE"}
}

func TestFireStep_crossProduct(t *testing.T) {
	require.Len(t, wantStep, len(StepStates()))
	for _, s := range StepStates() {
		for _, e := range StepEvents() {
			t.Run(fmt.Sprintf("%s/%s", s, e), func(t *testing.T) {
				d := stepFixture(s)
				before := stepFixture(s)
				err := FireStep(&d, e, fullStepInput())
				want, legal := wantStep[s][e]
				require.Equal(t, legal, CanStep(s, e))
				if !legal {
					require.ErrorIs(t, err, ErrInvalidTransition)
					var te *TransitionError
					require.ErrorAs(t, err, &te)
					require.Equal(t, "step S1", te.Machine)
					require.Equal(t, string(s), te.State)
					require.Equal(t, string(e), te.Event)
					require.Nil(t, te.Cause)
					require.Equal(t, before, d, "a refused transition must not change the data")
					return
				}
				require.NoError(t, err)
				require.Equal(t, want, d.State)
			})
		}
	}
}

func TestTransitions_tablesMatchDocumentedSets(t *testing.T) {
	n := 0
	for _, tr := range RunTransitions() {
		for _, s := range tr.Sources {
			require.Equal(t, tr.Destination, wantRun[s][tr.Event], "%s/%s", s, tr.Event)
			n++
		}
	}
	m := 0
	for _, evs := range wantRun {
		m += len(evs)
	}
	require.Equal(t, m, n)
	n, m = 0, 0
	for _, tr := range StepTransitions() {
		for _, s := range tr.Sources {
			require.Equal(t, tr.Destination, wantStep[s][tr.Event], "%s/%s", s, tr.Event)
			n++
		}
	}
	for _, evs := range wantStep {
		m += len(evs)
	}
	require.Equal(t, m, n)
}

func TestFireRun_applyRefusals(t *testing.T) {
	tests := []struct {
		name  string
		state RunState
		event RunEvent
		in    RunInput
	}{
		{"pause without error", RunRunning, RunPause, RunInput{Now: t0}},
		{"fail without error", RunPaused, RunFail, RunInput{Now: t0}},
		{"fail without time", RunPaused, RunFail, RunInput{Err: &Error{Message: "x"}}},
		{"resume without actor", RunPaused, RunResume, RunInput{Now: t0}},
		{"cancel without actor", RunRunning, RunCancel, RunInput{Now: t0}},
		{"ack without actor", RunSucceeded, RunAcknowledge, RunInput{Now: t0}},
		{"start without time", RunPending, RunStart, RunInput{}},
		{"succeed without time", RunRunning, RunSucceed, RunInput{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := RunStatus{State: tt.state}
			err := FireRun(&d, tt.event, tt.in)
			require.ErrorIs(t, err, ErrInvalidTransition)
			var te *TransitionError
			require.ErrorAs(t, err, &te)
			require.NotNil(t, te.Cause)
			require.Equal(t, RunStatus{State: tt.state}, d)
		})
	}
}

func TestFireRun_dataFilled(t *testing.T) {
	d := RunStatus{State: RunPending}
	require.NoError(t, FireRun(&d, RunStart, RunInput{Now: t0}))
	require.Equal(t, t0, d.Started)
	boom := &Error{Code: "guard_failed", Message: "old primary writable", Host: "sql1", Hint: "fence it"}
	require.NoError(t, FireRun(&d, RunPause, RunInput{Now: t0, Err: boom}))
	require.Equal(t, boom, d.Error)
	boom.Message = "mutated by caller"
	require.Equal(t, "old primary writable", d.Error.Message, "the run keeps its own copy of the error")
	require.NoError(t, FireRun(&d, RunResume, RunInput{Now: t0, Actor: "alice"}))
	require.Nil(t, d.Error)
	require.Equal(t, "alice", d.ResumedBy)
	require.NoError(t, FireRun(&d, RunSucceed, RunInput{Now: t0.Add(time.Hour)}))
	require.True(t, d.State.Finished())
	require.True(t, d.State.Blocks())
	require.NoError(t, FireRun(&d, RunAcknowledge, RunInput{Now: t0.Add(2 * time.Hour), Actor: "carol"}))
	require.Equal(t, "carol", d.AcknowledgedBy)
	require.False(t, d.State.Blocks())
}

func TestFireStep_applyRefusals(t *testing.T) {
	spent := stepFixture(StepRunning)
	spent.Attempt, spent.Key = 3, "r1/S1/3"
	notBE := stepFixture(StepPending)
	notBE.BestEffort = false
	approved := stepFixture(StepPending)
	approved.Approved = true
	noApprovals := stepFixture(StepWaitingApproval)
	noApprovals.Approvals = nil
	in := fullStepInput()
	tests := []struct {
		name  string
		d     StepStatus
		event StepEvent
		in    StepInput
	}{
		{"retryable with spent budget", spent, StepAttemptFailedRetryable, StepInput{Now: t0, Key: "r1/S1/3", Err: in.Err, RetryAt: in.RetryAt}},
		{"stale key on success", stepFixture(StepRunning), StepAttemptSucceeded, StepInput{Now: t0, Key: "r1/S1/0"}},
		{"stale key on terminal", stepFixture(StepRunning), StepAttemptFailedTerminal, StepInput{Now: t0, Key: "other", Err: in.Err}},
		{"invalid output JSON", stepFixture(StepRunning), StepAttemptSucceeded, StepInput{Now: t0, Key: "r1/S1/1", Output: json.RawMessage(`{`)}},
		{"retryable without error", stepFixture(StepRunning), StepAttemptFailedRetryable, StepInput{Now: t0, Key: "r1/S1/1", RetryAt: in.RetryAt}},
		{"retryable without retry time", stepFixture(StepRunning), StepAttemptFailedRetryable, StepInput{Now: t0, Key: "r1/S1/1", Err: in.Err}},
		{"terminal without error", stepFixture(StepRunning), StepAttemptFailedTerminal, StepInput{Now: t0, Key: "r1/S1/1"}},
		{"skip unreachable not best effort", notBE, StepSkipUnreachable, in},
		{"skip already done without reason", stepFixture(StepPending), StepSkipAlreadyDone, StepInput{Now: t0}},
		{"wait approval when approved", approved, StepWaitApproval, in},
		{"approve without approvals", noApprovals, StepApprove, in},
		{"attempt without ids", stepFixture(StepPending), StepAttemptStarted, StepInput{Now: t0}},
		{"attempt without time", stepFixture(StepPending), StepAttemptStarted, StepInput{RunID: "r", StepID: "s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.d
			before := cloneStep(tt.d)
			err := FireStep(&d, tt.event, tt.in)
			require.ErrorIs(t, err, ErrInvalidTransition)
			var te *TransitionError
			require.ErrorAs(t, err, &te)
			require.NotNil(t, te.Cause)
			require.Equal(t, before, d)
		})
	}
}

func TestFireStep_retryBudgetAndResume(t *testing.T) {
	d := StepStatus{State: StepPending, MaxAttempts: 2}
	retryable := &Error{Code: "unavailable", Message: "busy", Retryable: true}
	now := t0
	start := func() {
		now = now.Add(time.Second)
		require.NoError(t, FireStep(&d, StepAttemptStarted, StepInput{Now: now, RunID: "run-1", StepID: "F3"}))
	}
	start()
	require.Equal(t, "run-1/F3/1", d.Key)
	require.True(t, d.BudgetLeft())
	require.NoError(t, FireStep(&d, StepAttemptFailedRetryable, StepInput{Now: now, Key: d.Key, Err: retryable, RetryAt: now.Add(time.Second)}))
	require.Equal(t, StepRetryWait, d.State)
	require.NoError(t, FireStep(&d, StepRetryDue, StepInput{Now: now}))
	start()
	require.Equal(t, "run-1/F3/2", d.Key)
	require.False(t, d.BudgetLeft())
	err := FireStep(&d, StepAttemptFailedRetryable, StepInput{Now: now, Key: d.Key, Err: retryable, RetryAt: now})
	require.ErrorIs(t, err, ErrInvalidTransition)
	require.NoError(t, FireStep(&d, StepAttemptFailedTerminal, StepInput{Now: now, Key: d.Key, Err: retryable}))
	require.Equal(t, StepFailed, d.State)
	require.Equal(t, retryable, d.Error)

	require.NoError(t, FireStep(&d, StepResume, StepInput{Now: now}))
	start()
	require.Equal(t, "run-1/F3/3", d.Key, "keys stay unique across a resume")
	require.True(t, d.BudgetLeft(), "a resume grants a fresh budget")
	require.NoError(t, FireStep(&d, StepAttemptSucceeded, StepInput{Now: now, Key: d.Key, Output: json.RawMessage(`{"complete":true}`)}))
	require.Equal(t, StepSucceeded, d.State)
	require.Nil(t, d.Error)
	require.JSONEq(t, `{"complete":true}`, string(d.Output))
	require.Len(t, d.Attempts, 3)
	require.Equal(t, []string{"retryable", "terminal", "succeeded"},
		[]string{d.Attempts[0].Outcome, d.Attempts[1].Outcome, d.Attempts[2].Outcome})
	for i, a := range d.Attempts {
		require.Equal(t, i+1, a.N)
		require.Equal(t, IdempotencyKey("run-1", "F3", i+1), a.Key)
		require.False(t, a.Ended.IsZero())
	}
	require.Equal(t, t0.Add(time.Second), d.Started)
	require.True(t, d.State.Done())
}

func TestAddApproval(t *testing.T) {
	waiting := func(n int) StepStatus {
		return StepStatus{State: StepWaitingApproval, RequiredApprovers: n}
	}
	ap := func(who string, role pki.Role) Approval {
		return Approval{Approver: who, Role: role, Reason: "window accepted", Time: t0}
	}
	tests := []struct {
		name     string
		d        StepStatus
		adds     []Approval
		wantErr  error
		complete bool
		count    int
	}{
		{"one of one", waiting(1), []Approval{ap("bob", pki.RoleApprover)}, nil, true, 1},
		{"admin approves", waiting(1), []Approval{ap("root", pki.RoleAdmin)}, nil, true, 1},
		{"one of two", waiting(2), []Approval{ap("bob", pki.RoleApprover)}, nil, false, 1},
		{"two of two", waiting(2), []Approval{ap("bob", pki.RoleApprover), ap("carol", pki.RoleAdmin)}, nil, true, 2},
		{"same person twice", waiting(2), []Approval{ap("bob", pki.RoleApprover), ap("BOB", pki.RoleApprover)}, ErrDuplicateApprover, false, 1},
		{"operator refused", waiting(1), []Approval{ap("op", pki.RoleOperator)}, ErrNotApprover, false, 0},
		{"viewer refused", waiting(1), []Approval{ap("v", pki.RoleViewer)}, ErrNotApprover, false, 0},
		{"controller refused", waiting(1), []Approval{ap("c", pki.RoleController)}, ErrNotApprover, false, 0},
		{"not waiting", StepStatus{State: StepPending, RequiredApprovers: 1}, []Approval{ap("bob", pki.RoleApprover)}, ErrNotWaitingApproval, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.d
			var complete bool
			var err error
			for _, a := range tt.adds {
				complete, err = AddApproval(&d, a)
				if err != nil {
					break
				}
			}
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tt.complete, complete)
			require.Len(t, d.Approvals, tt.count)
			if complete {
				require.NoError(t, FireStep(&d, StepApprove, StepInput{Now: t0}))
				require.True(t, d.Approved)
				require.Equal(t, StepPending, d.State)
			}
		})
	}
	t.Run("missing reason", func(t *testing.T) {
		d := waiting(1)
		_, err := AddApproval(&d, Approval{Approver: "bob", Role: pki.RoleApprover, Time: t0})
		require.Error(t, err)
		require.Empty(t, d.Approvals)
	})
	t.Run("approve event refused below quorum", func(t *testing.T) {
		d := waiting(2)
		_, err := AddApproval(&d, ap("bob", pki.RoleApprover))
		require.NoError(t, err)
		require.ErrorIs(t, FireStep(&d, StepApprove, StepInput{Now: t0}), ErrInvalidTransition)
	})
	require.True(t, errors.Is(&TransitionError{}, ErrInvalidTransition))
}
