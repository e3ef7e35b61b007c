package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/chatdr/chatdr/internal/pki"
)

// Error is an error as a run or step records it: what failed, where, and
// what the operator should do next. It is a plain value.
type Error struct {
	// Code is a short machine-readable code (the agent's error code, or
	// e.g. "guard_failed", "expectation_unmet", "plan_invalid").
	Code string `json:"code"`
	// Message says what failed.
	Message string `json:"message"`
	// Host is the agent host involved, empty when none.
	Host string `json:"host,omitempty"`
	// Hint says what to do next.
	Hint string `json:"hint,omitempty"`
	// Retryable is the agent's retryable flag.
	Retryable bool `json:"retryable,omitempty"`
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Code != "" {
		b.WriteString(e.Code + ": ")
	}
	b.WriteString(e.Message)
	if e.Host != "" {
		b.WriteString(" (host " + e.Host + ")")
	}
	if e.Hint != "" {
		b.WriteString("; " + e.Hint)
	}
	return b.String()
}

// ---------------------------------------------------------------- run

// RunState is the state of a run.
type RunState string

// Run states.
const (
	// RunPending: created (the pool is locked), not started yet.
	RunPending RunState = "pending"
	// RunRunning: groups are being executed.
	RunRunning RunState = "running"
	// RunWaitingApproval: nothing can progress until a step is approved.
	RunWaitingApproval RunState = "waiting_approval"
	// RunPaused: stopped on a terminal error (RunStatus.Error); resumable
	// after the operator fixed the cause, or cancellable.
	RunPaused RunState = "paused"
	// RunCancelling: cancel requested; the steps in flight finish, no new
	// attempt starts.
	RunCancelling RunState = "cancelling"
	// RunCancelled: cancelled; finished.
	RunCancelled RunState = "cancelled"
	// RunSucceeded: every group succeeded; finished. Blocks the next run
	// of the pool until acknowledged (anti-flap).
	RunSucceeded RunState = "succeeded"
	// RunFailed: can never resume (e.g. the plan is invalid); finished.
	RunFailed RunState = "failed"
	// RunAcknowledged: a finished run an operator acknowledged, which
	// lifts the anti-flap block.
	RunAcknowledged RunState = "acknowledged"
)

// RunStates lists every run state in a stable order.
func RunStates() []RunState {
	return []RunState{RunPending, RunRunning, RunWaitingApproval, RunPaused, RunCancelling,
		RunCancelled, RunSucceeded, RunFailed, RunAcknowledged}
}

// Finished reports whether a run in state s is over: it no longer holds
// its pool's lock and takes no event but acknowledge.
func (s RunState) Finished() bool {
	switch s {
	case RunCancelled, RunSucceeded, RunFailed, RunAcknowledged:
		return true
	}
	return false
}

// Blocks reports whether a run in state s blocks the next run of its pool
// until it is acknowledged (orchestrator's anti-flap rule): a finished
// failover or failback, i.e. RunSucceeded.
func (s RunState) Blocks() bool { return s == RunSucceeded }

// RunEvent is an event of the run machine.
type RunEvent string

// Run events.
const (
	// RunStart: pending → running.
	RunStart RunEvent = "start"
	// RunWaitApproval: running → waiting_approval.
	RunWaitApproval RunEvent = "wait_approval"
	// RunApprove: waiting_approval → running.
	RunApprove RunEvent = "approve"
	// RunPause: running|waiting_approval → paused; needs RunInput.Err.
	RunPause RunEvent = "pause"
	// RunResume: paused → running; needs RunInput.Actor; clears Error.
	RunResume RunEvent = "resume"
	// RunCancel: pending|running|waiting_approval|paused → cancelling;
	// needs RunInput.Actor.
	RunCancel RunEvent = "cancel"
	// RunCancelDone: cancelling → cancelled, once no step is in flight.
	RunCancelDone RunEvent = "cancel_done"
	// RunSucceed: running → succeeded.
	RunSucceed RunEvent = "succeed"
	// RunFail: pending|running|waiting_approval|paused → failed; needs
	// RunInput.Err.
	RunFail RunEvent = "fail"
	// RunAcknowledge: succeeded|cancelled|failed → acknowledged; needs
	// RunInput.Actor.
	RunAcknowledge RunEvent = "acknowledge"
)

// RunEvents lists every run event in a stable order.
func RunEvents() []RunEvent {
	return []RunEvent{RunStart, RunWaitApproval, RunApprove, RunPause, RunResume, RunCancel,
		RunCancelDone, RunSucceed, RunFail, RunAcknowledge}
}

// RunStatus is the state-machine data of a run. It is a plain value;
// FireRun mutates it, so share it between goroutines only with a lock.
type RunStatus struct {
	// State is the current state.
	State RunState `json:"state"`
	// Error is why the run is paused or failed; nil otherwise.
	Error *Error `json:"error,omitempty"`
	// Started is when it left pending; Ended when it finished.
	Started time.Time `json:"started,omitzero"`
	// Ended is when it reached cancelled, succeeded or failed.
	Ended time.Time `json:"ended,omitzero"`
	// CancelledBy is who asked for the cancel, CancelReason why.
	CancelledBy  string `json:"cancelled_by,omitempty"`
	CancelReason string `json:"cancel_reason,omitempty"`
	// ResumedBy is who last resumed the run.
	ResumedBy string `json:"resumed_by,omitempty"`
	// AcknowledgedBy is who acknowledged it, AcknowledgedAt when.
	AcknowledgedBy string    `json:"acknowledged_by,omitempty"`
	AcknowledgedAt time.Time `json:"acknowledged_at,omitzero"`
}

// RunInput is the data an event carries into the run machine.
type RunInput struct {
	// Now is the event's time; required.
	Now time.Time
	// Actor is the person (or "controller") behind the event; required for
	// resume, cancel and acknowledge.
	Actor string
	// Reason is the operator's reason (cancel).
	Reason string
	// Err is the cause of pause and fail; required for them.
	Err *Error
}

func needNow(now time.Time) error {
	if now.IsZero() {
		return errors.New("the event's time is missing")
	}
	return nil
}

var runMachine = &machine[RunState, RunEvent, RunStatus, RunInput]{
	name:     "run",
	state:    func(d *RunStatus) RunState { return d.State },
	setState: func(d *RunStatus, s RunState) { d.State = s },
	clone:    func(d RunStatus) RunStatus { return d },
	transitions: []Transition[RunState, RunEvent, RunStatus, RunInput]{
		{Event: RunStart, Sources: []RunState{RunPending}, Destination: RunRunning,
			Apply: func(d *RunStatus, in RunInput) error {
				if err := needNow(in.Now); err != nil {
					return err
				}
				d.Started = in.Now
				return nil
			}},
		{Event: RunWaitApproval, Sources: []RunState{RunRunning}, Destination: RunWaitingApproval},
		{Event: RunApprove, Sources: []RunState{RunWaitingApproval}, Destination: RunRunning},
		{Event: RunPause, Sources: []RunState{RunRunning, RunWaitingApproval}, Destination: RunPaused,
			Apply: func(d *RunStatus, in RunInput) error {
				if in.Err == nil {
					return errors.New("a pause needs the error that stopped the run")
				}
				e := *in.Err
				d.Error = &e
				return nil
			}},
		{Event: RunResume, Sources: []RunState{RunPaused}, Destination: RunRunning,
			Apply: func(d *RunStatus, in RunInput) error {
				if in.Actor == "" {
					return errors.New("a resume needs the operator who asks for it")
				}
				d.Error, d.ResumedBy = nil, in.Actor
				return nil
			}},
		{Event: RunCancel, Sources: []RunState{RunPending, RunRunning, RunWaitingApproval, RunPaused}, Destination: RunCancelling,
			Apply: func(d *RunStatus, in RunInput) error {
				if in.Actor == "" {
					return errors.New("a cancel needs the operator who asks for it")
				}
				d.CancelledBy, d.CancelReason = in.Actor, in.Reason
				return nil
			}},
		{Event: RunCancelDone, Sources: []RunState{RunCancelling}, Destination: RunCancelled,
			Apply: func(d *RunStatus, in RunInput) error {
				if err := needNow(in.Now); err != nil {
					return err
				}
				d.Ended = in.Now
				return nil
			}},
		{Event: RunSucceed, Sources: []RunState{RunRunning}, Destination: RunSucceeded,
			Apply: func(d *RunStatus, in RunInput) error {
				if err := needNow(in.Now); err != nil {
					return err
				}
				d.Ended = in.Now
				return nil
			}},
		{Event: RunFail, Sources: []RunState{RunPending, RunRunning, RunWaitingApproval, RunPaused}, Destination: RunFailed,
			Apply: func(d *RunStatus, in RunInput) error {
				if in.Err == nil {
					return errors.New("a failure needs the error that makes the run unresumable")
				}
				if err := needNow(in.Now); err != nil {
					return err
				}
				e := *in.Err
				d.Error, d.Ended = &e, in.Now
				return nil
			}},
		{Event: RunAcknowledge, Sources: []RunState{RunSucceeded, RunCancelled, RunFailed}, Destination: RunAcknowledged,
			Apply: func(d *RunStatus, in RunInput) error {
				if in.Actor == "" {
					return errors.New("an acknowledgement needs the operator who gives it")
				}
				if err := needNow(in.Now); err != nil {
					return err
				}
				d.AcknowledgedBy, d.AcknowledgedAt = in.Actor, in.Now
				return nil
			}},
	},
}

// FireRun applies event e to the run data d. On success d holds the new
// state and data; on failure d is unchanged and the error wraps
// ErrInvalidTransition (a *TransitionError naming machine "run", the state
// and the event). Pure; not safe for concurrent use on the same d.
func FireRun(d *RunStatus, e RunEvent, in RunInput) error {
	return runMachine.fire("run", d, e, in)
}

// CanRun reports whether the run table has a transition for (s, e); the
// apply function may still refuse a particular input.
func CanRun(s RunState, e RunEvent) bool { _, ok := runMachine.find(s, e); return ok }

// RunTransitions returns a copy of the run transition table.
func RunTransitions() []Transition[RunState, RunEvent, RunStatus, RunInput] {
	return runMachine.table()
}

// ---------------------------------------------------------------- step

// StepState is the state of a step.
type StepState string

// Step states.
const (
	// StepPending: not started, or ready for its next attempt.
	StepPending StepState = "pending"
	// StepRunning: an attempt (StepStatus.Attempt, StepStatus.Key) is
	// journaled and its request may have reached the agent.
	StepRunning StepState = "running"
	// StepWaitingApproval: waits for StepStatus.RequiredApprovers distinct
	// approvers before its first attempt.
	StepWaitingApproval StepState = "waiting_approval"
	// StepRetryWait: the last attempt failed retryably; the next is due at
	// StepStatus.RetryAt.
	StepRetryWait StepState = "retry_wait"
	// StepSucceeded: done, with StepStatus.Output.
	StepSucceeded StepState = "succeeded"
	// StepFailed: a terminal error (or a spent budget); the run pauses.
	// Resume sends it back to pending for a new attempt.
	StepFailed StepState = "failed"
	// StepSkipped: a best-effort step whose host was unreachable, or a
	// step whose effect was already there.
	StepSkipped StepState = "skipped"
	// StepCancelled: the run was cancelled before the step ran.
	StepCancelled StepState = "cancelled"
)

// StepStates lists every step state in a stable order.
func StepStates() []StepState {
	return []StepState{StepPending, StepRunning, StepWaitingApproval, StepRetryWait, StepSucceeded,
		StepFailed, StepSkipped, StepCancelled}
}

// Done reports whether a step in state s lets its group go on (succeeded
// or skipped).
func (s StepState) Done() bool { return s == StepSucceeded || s == StepSkipped }

// InFlight reports whether an attempt of a step in state s may be executing
// on an agent (the runner must ask the agent for the key's outcome after a
// controller restart).
func (s StepState) InFlight() bool { return s == StepRunning }

// StepEvent is an event of the step machine.
type StepEvent string

// Step events.
const (
	// StepWaitApproval: pending → waiting_approval (before the first
	// attempt; refused once approved).
	StepWaitApproval StepEvent = "wait_approval"
	// StepApprove: waiting_approval → pending, once RequiredApprovers
	// distinct approvals are recorded (see AddApproval).
	StepApprove StepEvent = "approve"
	// StepAttemptStarted: pending → running; bumps Attempt and sets Key
	// (run/step/attempt). Journal it before sending the request.
	StepAttemptStarted StepEvent = "attempt_started"
	// StepAttemptSucceeded: running → succeeded; needs the attempt's Key.
	StepAttemptSucceeded StepEvent = "attempt_succeeded"
	// StepAttemptFailedRetryable: running → retry_wait; needs Key, Err,
	// RetryAt, and budget left (Attempt < MaxAttempts).
	StepAttemptFailedRetryable StepEvent = "attempt_failed_retryable"
	// StepAttemptFailedTerminal: running → failed; needs Key and Err.
	StepAttemptFailedTerminal StepEvent = "attempt_failed_terminal"
	// StepRetryDue: retry_wait → pending.
	StepRetryDue StepEvent = "retry_due"
	// StepSkipUnreachable: pending|running|retry_wait → skipped, for a
	// best-effort step whose agent cannot be reached.
	StepSkipUnreachable StepEvent = "skip_unreachable"
	// StepSkipAlreadyDone: pending → skipped, when the step's effect is
	// already there; needs Reason.
	StepSkipAlreadyDone StepEvent = "skip_already_done"
	// StepCancel: pending|waiting_approval|retry_wait → cancelled. A
	// running step is never cancelled: it finishes first.
	StepCancel StepEvent = "cancel"
	// StepResume: failed → pending, when the operator resumes the run.
	StepResume StepEvent = "resume"
)

// StepEvents lists every step event in a stable order.
func StepEvents() []StepEvent {
	return []StepEvent{StepWaitApproval, StepApprove, StepAttemptStarted, StepAttemptSucceeded,
		StepAttemptFailedRetryable, StepAttemptFailedTerminal, StepRetryDue, StepSkipUnreachable,
		StepSkipAlreadyDone, StepCancel, StepResume}
}

// Attempt is one journaled attempt of a step.
type Attempt struct {
	// N is the attempt number, from 1.
	N int `json:"n"`
	// Key is the idempotency key run/step/attempt sent to the agent.
	Key string `json:"key"`
	// Started is when it was journaled; Ended when its outcome was.
	Started time.Time `json:"started"`
	// Ended is zero while the attempt is in flight.
	Ended time.Time `json:"ended,omitzero"`
	// Outcome is "", "succeeded", "retryable", "terminal" or "skipped".
	Outcome string `json:"outcome,omitempty"`
	// Error is the attempt's error, if it failed.
	Error *Error `json:"error,omitempty"`
}

// Approval is one approval given to a step.
type Approval struct {
	// Approver is the approver's identity (certificate name).
	Approver string `json:"approver"`
	// Role is the approver's role; only approver and admin may approve.
	Role pki.Role `json:"role"`
	// Reason is why they approved; required.
	Reason string `json:"reason"`
	// Time is when.
	Time time.Time `json:"time"`
}

// StepStatus is the state-machine data of one step of a run. It is a
// plain value; FireStep mutates it, so share it only with a lock.
type StepStatus struct {
	// State is the current state.
	State StepState `json:"state"`
	// MaxAttempts is the step's retry budget (plan Retry.MaxAttempts).
	MaxAttempts int `json:"max_attempts"`
	// BestEffort mirrors the plan step: skip_unreachable is allowed.
	BestEffort bool `json:"best_effort,omitempty"`
	// RequiredApprovers is how many distinct approvers the step needs when
	// it waits for approval (≥ 1 when it may wait).
	RequiredApprovers int `json:"required_approvers,omitempty"`
	// Approved is set once RequiredApprovers approvals are recorded.
	Approved bool `json:"approved,omitempty"`
	// Approvals are the approvals given, in order.
	Approvals []Approval `json:"approvals,omitempty"`
	// Attempt is the number of the current (or last) attempt, 0 before
	// the first.
	Attempt int `json:"attempt"`
	// ResumeBase is Attempt at the last resume: the retry budget counts
	// the attempts after it.
	ResumeBase int `json:"resume_base,omitempty"`
	// Key is the current (or last) attempt's idempotency key.
	Key string `json:"key,omitempty"`
	// Attempts are every attempt, oldest first.
	Attempts []Attempt `json:"attempts,omitempty"`
	// Started is when the first attempt started; Ended when the step
	// reached succeeded, failed, skipped or cancelled.
	Started time.Time `json:"started,omitzero"`
	// Ended is zero until the step ends.
	Ended time.Time `json:"ended,omitzero"`
	// RetryAt is when the next attempt is due (retry_wait).
	RetryAt time.Time `json:"retry_at,omitzero"`
	// Error is the last error (kept after a retry, cleared on success).
	Error *Error `json:"error,omitempty"`
	// Output is the successful attempt's output (JSON).
	Output json.RawMessage `json:"output,omitempty"`
	// SkipReason says why the step was skipped.
	SkipReason string `json:"skip_reason,omitempty"`
}

// StepInput is the data an event carries into the step machine.
type StepInput struct {
	// Now is the event's time; required.
	Now time.Time
	// RunID and StepID build the idempotency key (attempt_started).
	RunID, StepID string
	// Key is the attempt's key; attempt outcomes must name the current one
	// so that a stale answer is refused.
	Key string
	// Err is the attempt's error (failures, skip_unreachable).
	Err *Error
	// Output is the attempt's output (attempt_succeeded).
	Output json.RawMessage
	// RetryAt is when the next attempt is due (attempt_failed_retryable).
	RetryAt time.Time
	// Reason says why (skip_already_done, skip_unreachable).
	Reason string
}

// IdempotencyKey returns the key of attempt n of step stepID in run runID:
// "run/step/attempt" (design §5).
func IdempotencyKey(runID, stepID string, n int) string {
	return fmt.Sprintf("%s/%s/%d", runID, stepID, n)
}

func cloneStep(d StepStatus) StepStatus {
	d.Approvals = slices.Clone(d.Approvals)
	d.Attempts = slices.Clone(d.Attempts)
	return d
}

// endAttempt closes the current attempt with an outcome.
func endAttempt(d *StepStatus, in StepInput, outcome string, needKey bool) error {
	if err := needNow(in.Now); err != nil {
		return err
	}
	if needKey && in.Key != d.Key {
		return fmt.Errorf("outcome for attempt %q, but the current attempt is %q", in.Key, d.Key)
	}
	if n := len(d.Attempts); n > 0 && d.Attempts[n-1].Ended.IsZero() {
		a := &d.Attempts[n-1]
		a.Ended, a.Outcome = in.Now, outcome
		if in.Err != nil {
			e := *in.Err
			a.Error = &e
		}
	}
	if in.Err != nil {
		e := *in.Err
		d.Error = &e
	}
	return nil
}

var stepMachine = &machine[StepState, StepEvent, StepStatus, StepInput]{
	name:     "step",
	state:    func(d *StepStatus) StepState { return d.State },
	setState: func(d *StepStatus, s StepState) { d.State = s },
	clone:    cloneStep,
	transitions: []Transition[StepState, StepEvent, StepStatus, StepInput]{
		{Event: StepWaitApproval, Sources: []StepState{StepPending}, Destination: StepWaitingApproval,
			Apply: func(d *StepStatus, in StepInput) error {
				if d.Approved {
					return errors.New("the step is already approved")
				}
				if d.RequiredApprovers < 1 {
					return errors.New("the step needs no approver (required approvers < 1)")
				}
				return nil
			}},
		{Event: StepApprove, Sources: []StepState{StepWaitingApproval}, Destination: StepPending,
			Apply: func(d *StepStatus, in StepInput) error {
				if n := distinctApprovers(d.Approvals); n < d.RequiredApprovers {
					return fmt.Errorf("%d of %d approvals recorded", n, d.RequiredApprovers)
				}
				d.Approved = true
				return nil
			}},
		{Event: StepAttemptStarted, Sources: []StepState{StepPending}, Destination: StepRunning,
			Apply: func(d *StepStatus, in StepInput) error {
				if err := needNow(in.Now); err != nil {
					return err
				}
				if in.RunID == "" || in.StepID == "" {
					return errors.New("run and step IDs are needed for the idempotency key")
				}
				d.Attempt++
				d.Key = IdempotencyKey(in.RunID, in.StepID, d.Attempt)
				d.Attempts = append(d.Attempts, Attempt{N: d.Attempt, Key: d.Key, Started: in.Now})
				if d.Started.IsZero() {
					d.Started = in.Now
				}
				d.RetryAt, d.Ended = time.Time{}, time.Time{}
				return nil
			}},
		{Event: StepAttemptSucceeded, Sources: []StepState{StepRunning}, Destination: StepSucceeded,
			Apply: func(d *StepStatus, in StepInput) error {
				if err := endAttempt(d, in, "succeeded", true); err != nil {
					return err
				}
				if len(in.Output) > 0 && !json.Valid(in.Output) {
					return errors.New("the output is not valid JSON")
				}
				d.Output = slices.Clone(in.Output)
				d.Error, d.Ended = nil, in.Now
				return nil
			}},
		{Event: StepAttemptFailedRetryable, Sources: []StepState{StepRunning}, Destination: StepRetryWait,
			Apply: func(d *StepStatus, in StepInput) error {
				if in.Err == nil {
					return errors.New("a failed attempt needs its error")
				}
				if d.MaxAttempts > 0 && d.Attempt-d.ResumeBase >= d.MaxAttempts {
					return fmt.Errorf("retry budget of %d attempts spent: fire %s", d.MaxAttempts, StepAttemptFailedTerminal)
				}
				if in.RetryAt.IsZero() {
					return errors.New("a retryable failure needs the time of the next attempt")
				}
				if err := endAttempt(d, in, "retryable", true); err != nil {
					return err
				}
				d.RetryAt = in.RetryAt
				return nil
			}},
		{Event: StepAttemptFailedTerminal, Sources: []StepState{StepRunning}, Destination: StepFailed,
			Apply: func(d *StepStatus, in StepInput) error {
				if in.Err == nil {
					return errors.New("a failed attempt needs its error")
				}
				if err := endAttempt(d, in, "terminal", true); err != nil {
					return err
				}
				d.Ended = in.Now
				return nil
			}},
		{Event: StepRetryDue, Sources: []StepState{StepRetryWait}, Destination: StepPending,
			Apply: func(d *StepStatus, in StepInput) error {
				d.RetryAt = time.Time{}
				return nil
			}},
		{Event: StepSkipUnreachable, Sources: []StepState{StepPending, StepRunning, StepRetryWait}, Destination: StepSkipped,
			Apply: func(d *StepStatus, in StepInput) error {
				if !d.BestEffort {
					return errors.New("only a best-effort step may be skipped when its host is unreachable")
				}
				if err := endAttempt(d, in, "skipped", false); err != nil {
					return err
				}
				d.SkipReason = "host unreachable"
				if in.Reason != "" {
					d.SkipReason += ": " + in.Reason
				}
				d.Ended, d.RetryAt = in.Now, time.Time{}
				return nil
			}},
		{Event: StepSkipAlreadyDone, Sources: []StepState{StepPending}, Destination: StepSkipped,
			Apply: func(d *StepStatus, in StepInput) error {
				if in.Reason == "" {
					return errors.New("a skip needs the reason the effect is already there")
				}
				if err := needNow(in.Now); err != nil {
					return err
				}
				d.SkipReason, d.Ended = in.Reason, in.Now
				return nil
			}},
		{Event: StepCancel, Sources: []StepState{StepPending, StepWaitingApproval, StepRetryWait}, Destination: StepCancelled,
			Apply: func(d *StepStatus, in StepInput) error {
				if err := needNow(in.Now); err != nil {
					return err
				}
				d.Ended, d.RetryAt = in.Now, time.Time{}
				return nil
			}},
		{Event: StepResume, Sources: []StepState{StepFailed}, Destination: StepPending,
			Apply: func(d *StepStatus, in StepInput) error {
				// A resume grants a fresh retry budget: the operator fixed
				// the cause. The attempt numbers keep growing so that every
				// idempotency key stays unique.
				d.Ended, d.ResumeBase = time.Time{}, d.Attempt
				return nil
			}},
	},
}

// BudgetLeft reports whether a retryable failure of the current attempt may
// be retried (attempts since the last resume < MaxAttempts; MaxAttempts 0
// means unlimited). The runner fires attempt_failed_terminal when it is
// false.
func (d StepStatus) BudgetLeft() bool {
	return d.MaxAttempts <= 0 || d.Attempt-d.ResumeBase < d.MaxAttempts
}

// FireStep applies event e to the step data d. On success d holds the new
// state and data; on failure d is unchanged and the error wraps
// ErrInvalidTransition (a *TransitionError naming machine "step <id>" when
// in.StepID is set, the state and the event). Pure; not safe for
// concurrent use on the same d.
func FireStep(d *StepStatus, e StepEvent, in StepInput) error {
	name := "step"
	if in.StepID != "" {
		name = "step " + in.StepID
	}
	return stepMachine.fire(name, d, e, in)
}

// CanStep reports whether the step table has a transition for (s, e); the
// apply function may still refuse a particular input.
func CanStep(s StepState, e StepEvent) bool { _, ok := stepMachine.find(s, e); return ok }

// StepTransitions returns a copy of the step transition table.
func StepTransitions() []Transition[StepState, StepEvent, StepStatus, StepInput] {
	return stepMachine.table()
}

// ---------------------------------------------------------------- approvals

// Errors of AddApproval; test with errors.Is.
var (
	// ErrNotApprover: the role may not approve (only approver and admin).
	ErrNotApprover = errors.New("role may not approve")
	// ErrDuplicateApprover: this person already approved the step.
	ErrDuplicateApprover = errors.New("already approved by this person")
	// ErrNotWaitingApproval: the step does not wait for approval.
	ErrNotWaitingApproval = errors.New("step is not waiting for approval")
)

// MayApprove reports whether role r may approve steps.
func MayApprove(r pki.Role) bool { return r == pki.RoleApprover || r == pki.RoleAdmin }

func distinctApprovers(as []Approval) int {
	seen := map[string]bool{}
	for _, a := range as {
		seen[strings.ToLower(a.Approver)] = true
	}
	return len(seen)
}

// AddApproval records approval a on step d (which must be waiting for
// approval) and reports whether the step now has its RequiredApprovers
// distinct approvers, in which case the caller fires StepApprove. It
// refuses, leaving d unchanged, a role other than approver/admin
// (ErrNotApprover), an empty approver or reason, and a second approval by
// the same person, compared case-insensitively (ErrDuplicateApprover).
// Pure; not safe for concurrent use on the same d.
func AddApproval(d *StepStatus, a Approval) (complete bool, err error) {
	if d.State != StepWaitingApproval {
		return false, fmt.Errorf("%w (state %s)", ErrNotWaitingApproval, d.State)
	}
	if a.Approver == "" {
		return false, errors.New("the approver's identity is missing")
	}
	if !MayApprove(a.Role) {
		return false, fmt.Errorf("%s has role %q: %w; ask someone with role approver or admin", a.Approver, a.Role, ErrNotApprover)
	}
	if strings.TrimSpace(a.Reason) == "" {
		return false, errors.New("an approval needs a reason")
	}
	if a.Time.IsZero() {
		return false, errors.New("the approval's time is missing")
	}
	for _, prev := range d.Approvals {
		if strings.EqualFold(prev.Approver, a.Approver) {
			return false, fmt.Errorf("%s approved this step at %s: %w; %d different approvers are required",
				a.Approver, prev.Time.UTC().Format(time.RFC3339), ErrDuplicateApprover, d.RequiredApprovers)
		}
	}
	d.Approvals = append(slices.Clone(d.Approvals), a)
	return distinctApprovers(d.Approvals) >= d.RequiredApprovers, nil
}
