// Package runner executes the runs registered in controller/store: it
// drives the run and step machines of controller/engine by calling the
// agents (design.md §5, docs/plans.md "Contracts for the engine").
//
// It lives in its own package because controller/store imports
// controller/engine (for the state machines): the runner needs both.
//
// Every attempt is journaled (store.BeginAttempt) before its request is
// sent, with the idempotency key run/step/attempt; after a controller
// crash, Resume asks the agent for the key's outcome before it decides to
// send anything again. The store is the single source of truth: the runner
// keeps no run state of its own between calls, so a new Runner over the same
// store continues where an old one stopped.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/store"
	"github.com/chatdr/chatdr/controller/topology"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

// AgentClients gives the AgentService client of an agent host.
// *fleet.Fleet satisfies it. Implementations must be safe for concurrent
// use.
type AgentClients interface {
	// Client returns the client of the agent on host, or an error when the
	// host has no agent.
	Client(host string) (agentv1.AgentServiceClient, error)
}

// ProgressFunc receives every progress and log event an agent streams for
// a step. It is called from the step's goroutine: it must be quick and
// safe for concurrent use.
type ProgressFunc func(runID, stepID string, ev *agentv1.ExecuteResponse)

// Options tune a Runner. The zero value is usable except for Topology.
type Options struct {
	// Topology is what every plan is validated against (plan.Validate)
	// before the runner executes it; a nil topology fails every run.
	Topology *topology.Topology
	// Now is the clock used for retry times; default time.Now.
	Now func() time.Time
	// Jitter adds up to Jitter×backoff (0 ≤ Jitter ≤ 1) of random delay to
	// each retry wait; 0 (tests) means none.
	Jitter float64
	// RPCTimeout bounds each Probe and GetExecution call; default 10s.
	RPCTimeout time.Duration
	// ExecuteGrace is added to a step's timeout to bound its Execute call
	// (the agent enforces the timeout itself); default 30s.
	ExecuteGrace time.Duration
	// Poll is how often a step waiting for an approval, or for another
	// step's approval, re-reads the store; default 250ms.
	Poll time.Duration
	// OnProgress, when set, receives the agents' progress and log events.
	OnProgress ProgressFunc
	// Log receives what the operator must know that no run records, such
	// as a store that cannot be written (nothing is sent then); default:
	// discarded.
	Log *slog.Logger
	// Observer, when set, is told of every recorded attempt and of every
	// run the runner stops driving (metrics).
	Observer Observer
}

// Observer is told what the runner recorded, after the store committed it.
// Its methods are called from the runs' goroutines: they must be quick,
// safe for concurrent use, must not keep or change their arguments, and
// must not call the runner.
type Observer interface {
	// AttemptEnded is called once per attempt whose outcome the runner
	// recorded, with the run as the store holds it afterwards and the
	// step's record in it (state succeeded, retry_wait, failed or skipped).
	AttemptEnded(run *store.Run, step *store.StepRecord)
	// RunStopped is called when a run the runner drove reached a finished
	// state (succeeded, failed, cancelled) or paused, once per such change.
	RunStopped(run *store.Run)
}

// Errors returned by Start and Resume; test with errors.Is.
var (
	// ErrPaused: the run stopped on a terminal error (the returned error
	// also carries the run's *engine.Error); resume it with the store, then
	// call Start again.
	ErrPaused = errors.New("run paused")
	// ErrFailed: the run failed and can never resume (e.g. invalid plan).
	ErrFailed = errors.New("run failed")
	// ErrBusy: this Runner already drives the run.
	ErrBusy = errors.New("run is already being driven")
)

// Runner drives runs. It is safe for concurrent use; each run is driven by
// at most one goroutine of a Runner (ErrBusy otherwise). Two Runners (two
// controllers) must not drive the same store: the store's file lock
// prevents that in production.
type Runner struct {
	st     *store.Store
	agents AgentClients
	opts   Options

	mu      sync.Mutex
	driving map[string]bool
	// warned rate-limits storeFailed: run/step/op -> last warning.
	warned map[string]time.Time
}

// storeFailed logs, at most once a minute per step and operation, that the
// store refused a write: the run does not move (nothing is sent to an agent
// that is not journaled first), and without this line nobody would know.
func (r *Runner) storeFailed(runID, stepID, op string, err error) {
	k := runID + "/" + stepID + "/" + op
	r.mu.Lock()
	last, seen := r.warned[k]
	now := time.Now()
	if seen && now.Sub(last) < time.Minute {
		r.mu.Unlock()
		return
	}
	r.warned[k] = now
	r.mu.Unlock()
	r.opts.Log.Error("the controller's store cannot be written: the step waits, nothing is sent to the agent",
		"run", runID, "step", stepID, "write", op, "err", err,
		"hint", "free space in the controller's state directory or fix its disk; the run continues by itself once writes succeed")
}

// New returns a runner over st that reaches agents through agents.
func New(st *store.Store, agents AgentClients, opts Options) *Runner {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RPCTimeout <= 0 {
		opts.RPCTimeout = 10 * time.Second
	}
	if opts.ExecuteGrace <= 0 {
		opts.ExecuteGrace = 30 * time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = 250 * time.Millisecond
	}
	opts.Jitter = min(max(opts.Jitter, 0), 1)
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Runner{st: st, agents: agents, opts: opts, driving: map[string]bool{}, warned: map[string]time.Time{}}
}

var controller = store.ControllerActor()

// Start drives run runID from whatever state the store holds: a pending run
// is started (after plan.Validate; an invalid plan fails the run), a running
// or waiting run is continued group by group, a cancelling run finishes its
// steps in flight and is cancelled. It blocks until the run succeeds (nil),
// is cancelled (nil), pauses (ErrPaused with the run's error), fails
// (ErrFailed) or ctx is done (ctx.Err(); nothing is fired then: the steps in
// flight stay running in the store for Resume). A step waiting for approval
// keeps Start waiting, polling the store, until it is approved or the run is
// cancelled.
func (r *Runner) Start(ctx context.Context, runID string) error {
	if !r.claim(runID) {
		return fmt.Errorf("%s: %w", runID, ErrBusy)
	}
	defer r.release(runID)
	run, err := r.st.GetRun(runID)
	if err != nil {
		return err
	}
	if run.Status.State.Finished() {
		return outcome(run)
	}
	p, err := run.DecodePlan()
	if err == nil {
		err = plan.Validate(r.opts.Topology, p)
	}
	if err != nil {
		e := &engine.Error{Code: "plan_invalid", Message: err.Error(),
			Hint: "build the plan again (`chatdr plan`) against the current topology and start a new run"}
		if engine.CanRun(run.Status.State, engine.RunFail) {
			failed, ferr := r.st.FireRun(runID, controller, engine.RunFail, engine.RunInput{Err: e})
			if ferr != nil {
				return errors.Join(fmt.Errorf("%w: %v", ErrFailed, e), ferr)
			}
			r.runStopped(failed)
		}
		return fmt.Errorf("run %s: %w: %w", runID, ErrFailed, e)
	}
	return r.drive(ctx, runID, p)
}

// Resume is called at controller start: it drives, concurrently, every
// unfinished run of the store that is running or cancelling (each step left
// running is settled by asking its agent for the key's outcome first; see
// Start), and leaves pending, paused and waiting runs alone. It blocks until
// all of them stop and returns their errors joined (ErrPaused for a run that
// paused, nil for those that finished).
func (r *Runner) Resume(ctx context.Context) error {
	runs, err := r.st.InFlightRuns()
	if err != nil {
		return fmt.Errorf("list runs in flight: %w", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(runs))
	for i, run := range runs {
		if s := run.Status.State; s != engine.RunRunning && s != engine.RunCancelling {
			continue
		}
		wg.Go(func() { errs[i] = r.Start(ctx, run.ID) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *Runner) claim(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.driving[id] {
		return false
	}
	r.driving[id] = true
	return true
}

func (r *Runner) release(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.driving, id)
}

// outcome maps a stopped run to Start's result.
func outcome(run *store.Run) error {
	switch run.Status.State {
	case engine.RunSucceeded, engine.RunCancelled, engine.RunAcknowledged:
		return nil
	case engine.RunPaused:
		if run.Status.Error != nil {
			return fmt.Errorf("run %s: %w: %w", run.ID, ErrPaused, run.Status.Error)
		}
		return fmt.Errorf("run %s: %w", run.ID, ErrPaused)
	case engine.RunFailed:
		if run.Status.Error != nil {
			return fmt.Errorf("run %s: %w: %w", run.ID, ErrFailed, run.Status.Error)
		}
		return fmt.Errorf("run %s: %w", run.ID, ErrFailed)
	}
	return nil
}

// runStopped tells the observer, if any, that run stopped.
func (r *Runner) runStopped(run *store.Run) {
	if r.opts.Observer != nil && run != nil {
		r.opts.Observer.RunStopped(run)
	}
}

// drive runs the groups in order until the run stops.
func (r *Runner) drive(ctx context.Context, runID string, p *plan.Plan) error {
	// driving: this call saw the run in a state it drives, so a stop seen
	// afterwards happened while it drove (and is observed once).
	driving := false
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		run, err := r.st.GetRun(runID)
		if err != nil {
			return err
		}
		st := run.Status.State
		switch {
		case st.Finished(), st == engine.RunPaused:
			if driving {
				r.runStopped(run)
			}
			return outcome(run)
		case st == engine.RunPending:
			if _, err := r.st.FireRun(runID, controller, engine.RunStart, engine.RunInput{}); err != nil {
				return err
			}
			continue
		}
		driving = true
		gi := currentGroup(run)
		if st == engine.RunCancelling {
			if err := r.finishCancel(ctx, run, p, gi); err != nil {
				return err
			}
			continue
		}
		if gi < 0 {
			if _, err := r.st.FireRun(runID, controller, engine.RunSucceed, engine.RunInput{}); err != nil {
				return err
			}
			continue
		}
		if failed := failedStep(run, gi); failed != nil {
			// A failed step with the run still running: the pause that
			// should have come with it was lost (e.g. a crash between the
			// two). Pause now.
			e := failed.Status.Error
			if e == nil {
				e = &engine.Error{Code: "step_failed", Message: "step " + failed.ID + " failed", Host: failed.Host}
			}
			if _, err := r.st.FireRun(runID, controller, engine.RunPause, engine.RunInput{Err: e}); err != nil && !errors.Is(err, engine.ErrInvalidTransition) {
				return err
			}
			continue
		}
		var wg sync.WaitGroup
		for _, s := range p.Groups[gi].Steps {
			if rec := run.Step(s.ID); rec != nil && !rec.Status.State.Done() {
				wg.Go(func() { r.driveStep(ctx, runID, s) })
			}
		}
		wg.Wait()
		if after, err := r.st.GetRun(runID); err == nil && after.Updated.Equal(run.Updated) {
			// Nothing moved (e.g. the store refused a change): do not spin.
			sleep(ctx, r.opts.Poll)
		}
	}
}

// currentGroup returns the first group with a step not done, -1 if none.
func currentGroup(run *store.Run) int {
	gi := -1
	for _, s := range run.Steps {
		if !s.Status.State.Done() && (gi < 0 || s.GroupIndex < gi) {
			gi = s.GroupIndex
		}
	}
	return gi
}

func failedStep(run *store.Run, gi int) *store.StepRecord {
	for i := range run.Steps {
		if s := &run.Steps[i]; s.GroupIndex == gi && s.Status.State == engine.StepFailed {
			return s
		}
	}
	return nil
}

// finishCancel settles the steps in flight (a step is never abandoned
// half-way on an agent), then cancels what is left and completes the
// cancel, in one store transaction.
func (r *Runner) finishCancel(ctx context.Context, run *store.Run, p *plan.Plan, gi int) error {
	if gi >= 0 {
		var wg sync.WaitGroup
		for _, s := range p.Groups[gi].Steps {
			if rec := run.Step(s.ID); rec != nil && rec.Status.State.InFlight() {
				wg.Go(func() { r.driveStep(ctx, run.ID, s) })
			}
		}
		wg.Wait()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	_, err := r.fire(run.ID, func(run *store.Run) ([]store.Change, error) {
		if run.Status.State != engine.RunCancelling {
			return nil, nil
		}
		var cs []store.Change
		for _, s := range run.Steps {
			if s.Status.State.InFlight() {
				return nil, nil // someone else is settling it; the loop comes back
			}
			if engine.CanStep(s.Status.State, engine.StepCancel) {
				cs = append(cs, store.Change{Step: s.ID, StepEvent: engine.StepCancel})
			}
		}
		return append(cs, store.Change{RunEvent: engine.RunCancelDone}), nil
	})
	return err
}

// fire builds changes from a fresh copy of the run and fires them, trying
// again when a concurrent change (an operator's cancel, another step's
// event) made them invalid. A nil change list fires nothing.
func (r *Runner) fire(runID string, build func(*store.Run) ([]store.Change, error)) (*store.Run, error) {
	var last error
	for range 5 {
		run, err := r.st.GetRun(runID)
		if err != nil {
			return nil, err
		}
		cs, err := build(run)
		if err != nil || len(cs) == 0 {
			return run, err
		}
		run, err = r.st.Fire(runID, controller, cs...)
		if err == nil {
			return run, nil
		}
		if !errors.Is(err, engine.ErrInvalidTransition) {
			return nil, err
		}
		last = err
	}
	return nil, last
}

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// driveStep moves one step forward until it is done, failed or cancelled,
// the run stops letting it start attempts, or ctx is done. A step in flight
// (running) is always settled first, whatever the run's state.
func (r *Runner) driveStep(ctx context.Context, runID string, s plan.Step) {
	for ctx.Err() == nil {
		run, err := r.st.GetRun(runID)
		if err != nil {
			return
		}
		rec := run.Step(s.ID)
		if rec == nil {
			return
		}
		ss, rs := rec.Status, run.Status.State
		if ss.State == engine.StepRunning {
			r.settle(ctx, run, s)
			continue
		}
		if rs != engine.RunRunning && rs != engine.RunWaitingApproval {
			return // paused, cancelling, finished: no new attempt
		}
		switch ss.State {
		case engine.StepSucceeded, engine.StepSkipped, engine.StepFailed, engine.StepCancelled:
			return
		case engine.StepWaitingApproval:
			if !sleep(ctx, r.opts.Poll) {
				return
			}
		case engine.StepRetryWait:
			if !sleep(ctx, ss.RetryAt.Sub(r.opts.Now())) {
				return
			}
			if _, err := r.st.FireStep(runID, s.ID, controller, engine.StepRetryDue, engine.StepInput{}); err != nil && !errors.Is(err, engine.ErrInvalidTransition) {
				return
			}
		case engine.StepPending:
			if rs == engine.RunWaitingApproval {
				// Nothing starts while a step waits for its approval.
				if !sleep(ctx, r.opts.Poll) {
					return
				}
				continue
			}
			if !r.checkGuards(ctx, run, s) {
				continue // paused (or ctx done): the loop sees it
			}
			if s.Approval.Required && !ss.Approved {
				need, details := r.needsApproval(run, s)
				if need {
					// On failure the step stays pending and the next pass retries.
					_, _ = r.fire(runID, func(run *store.Run) ([]store.Change, error) {
						if run.Step(s.ID).Status.State != engine.StepPending {
							return nil, nil
						}
						cs := []store.Change{{Step: s.ID, StepEvent: engine.StepWaitApproval, Details: details}}
						if run.Status.State == engine.RunRunning {
							cs = append(cs, store.Change{RunEvent: engine.RunWaitApproval, Details: map[string]any{"step": s.ID}})
						}
						return cs, nil
					})
					continue
				}
				if !r.approvalNoted(runID, s.ID) {
					_, _ = r.st.Audit(controller, "approval.not_needed", runID, s.ID, details)
				}
			}
			key, err := r.st.BeginAttempt(runID, s.ID)
			if err != nil {
				if errors.Is(err, engine.ErrInvalidTransition) {
					continue // the run changed under us (cancel, pause, wait)
				}
				r.storeFailed(runID, s.ID, "journal the attempt", err)
				return
			}
			res := r.execute(ctx, s, runID, key, false)
			if ctx.Err() != nil {
				return // controller stopping: the attempt stays running for Resume
			}
			r.record(runID, s, key, res)
		default:
			return
		}
	}
}

// approvalNoted reports whether the audit already says this step's
// data-loss approval was not needed (so a re-check does not repeat it).
func (r *Runner) approvalNoted(runID, stepID string) bool {
	es, err := r.st.ListAudit(store.AuditFilter{RunID: runID, StepID: stepID, Action: "approval.not_needed", Limit: 1})
	return err == nil && len(es) > 0
}

// settle decides the outcome of an attempt journaled as running by an
// earlier controller (or lost by this one): it asks the agent for the key's
// outcome; it never sends the request again unless the agent has never
// seen the key, and then only after the guards pass again.
func (r *Runner) settle(ctx context.Context, run *store.Run, s plan.Step) {
	rec := run.Step(s.ID)
	key := rec.Status.Key
	cl, err := r.agents.Client(s.Host)
	if err != nil {
		r.record(run.ID, s, key, result{err: &engine.Error{Code: "no_agent", Message: err.Error(), Host: s.Host,
			Hint: "fix the topology, then resume the run"}, notSent: true})
		return
	}
	tries := max(s.Retry.MaxAttempts, 3)
	for i := 0; ; i++ {
		cctx, cancel := context.WithTimeout(ctx, r.opts.RPCTimeout)
		ge, err := cl.GetExecution(cctx, &agentv1.GetExecutionRequest{IdempotencyKey: key})
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if s.BestEffort && status.Code(err) == codes.Unavailable {
				r.record(run.ID, s, key, result{err: unreachable(s, err), notSent: true})
				return
			}
			if i+1 >= tries {
				r.record(run.ID, s, key, result{err: &engine.Error{Code: "outcome_unknown", Host: s.Host,
					Message: fmt.Sprintf("step %s: the agent does not say what became of attempt %s: %v", s.ID, key, err),
					Hint:    "check the action on the host; once the agent answers, resume the run (it asks again before resending)"}})
				return
			}
			if !sleep(ctx, backoff(s.Retry, i+1, 0)+r.opts.Poll) {
				return
			}
			continue
		}
		switch ge.GetState() {
		case agentv1.ExecutionState_EXECUTION_STATE_NOT_FOUND:
			// Never received: send it now, with the same key, after the
			// guards pass (they are checked right before every attempt).
			if e := r.guardError(ctx, run, s); e != nil {
				if ctx.Err() == nil {
					r.record(run.ID, s, key, result{err: e, notSent: true})
				}
				return
			}
			res := r.execute(ctx, s, run.ID, key, false)
			if ctx.Err() == nil {
				r.record(run.ID, s, key, res)
			}
		case agentv1.ExecutionState_EXECUTION_STATE_RUNNING:
			res := r.execute(ctx, s, run.ID, key, true)
			if ctx.Err() == nil {
				r.record(run.ID, s, key, res)
			}
		default:
			r.record(run.ID, s, key, r.fromResult(s, ge.GetResult(), run))
		}
		return
	}
}

// result is the outcome of one attempt as the runner sees it.
type result struct {
	output    json.RawMessage
	err       *engine.Error
	retryable bool
	// notSent: the request never reached the agent (unreachable).
	notSent bool
}

func unreachable(s plan.Step, err error) *engine.Error {
	return &engine.Error{Code: "unreachable", Host: s.Host, Retryable: true,
		Message: fmt.Sprintf("step %s: agent on %s cannot be reached: %v", s.ID, s.Host, err),
		Hint:    "check that the agent runs on the host and that the network lets the controller reach it"}
}

// execute sends (or re-attaches to) key and returns its outcome. It asks
// GetExecution when the stream breaks, so that a lost answer is not taken
// for a failure.
func (r *Runner) execute(ctx context.Context, s plan.Step, runID, key string, attach bool) result {
	cl, err := r.agents.Client(s.Host)
	if err != nil {
		return result{err: &engine.Error{Code: "no_agent", Message: err.Error(), Host: s.Host,
			Hint: "fix the topology, then resume the run"}, notSent: true}
	}
	params, err := structpb.NewStruct(s.Params)
	if err != nil {
		return result{err: &engine.Error{Code: "bad_params", Message: fmt.Sprintf("step %s: %v", s.ID, err), Host: s.Host}}
	}
	req := &agentv1.ExecuteRequest{IdempotencyKey: key, Action: s.Action, Params: params, Timeout: durationpb.New(s.Timeout)}
	var run *store.Run
	for try := 0; try < 4; try++ {
		res, sent, err := r.executeOnce(ctx, cl, req, runID, s)
		if err == nil {
			if run == nil {
				run, _ = r.st.GetRun(runID)
			}
			return r.fromResult(s, res, run)
		}
		if ctx.Err() != nil {
			return result{err: &engine.Error{Code: "cancelled", Message: ctx.Err().Error()}}
		}
		gctx, cancel := context.WithTimeout(ctx, r.opts.RPCTimeout)
		ge, gerr := cl.GetExecution(gctx, &agentv1.GetExecutionRequest{IdempotencyKey: key})
		cancel()
		switch {
		case gerr != nil && !sent && !attach && status.Code(err) == codes.Unavailable:
			// The call failed before a stream existed (no connection): the
			// request was not sent, a new attempt is safe.
			return result{err: unreachable(s, err), retryable: true, notSent: true}
		case gerr != nil:
			return result{err: &engine.Error{Code: "outcome_unknown", Host: s.Host,
				Message: fmt.Sprintf("step %s: the call for attempt %s broke (%v) and the agent does not answer (%v)", s.ID, key, err, gerr),
				Hint:    "check the action on the host; once the agent answers, resume the run"}}
		case ge.GetState() == agentv1.ExecutionState_EXECUTION_STATE_NOT_FOUND:
			c := status.Code(err)
			if c == codes.Unavailable || c == codes.DeadlineExceeded {
				// Not received, but the agent answers now: retry rather
				// than skip a best-effort step (plans.md rule 5).
				return result{err: unreachable(s, err), retryable: true}
			}
			return result{err: &engine.Error{Code: "rpc_" + strings.ToLower(c.String()), Host: s.Host,
				Message: fmt.Sprintf("step %s: agent refused %s: %s", s.ID, s.Action, status.Convert(err).Message()),
				Hint:    "fix the cause (agent version, plugin, certificate role), then resume the run"}}
		case ge.GetState() == agentv1.ExecutionState_EXECUTION_STATE_RUNNING:
			continue // attach again with the same key
		default:
			if run == nil {
				run, _ = r.st.GetRun(runID)
			}
			return r.fromResult(s, ge.GetResult(), run)
		}
	}
	return result{err: &engine.Error{Code: "outcome_unknown", Host: s.Host,
		Message: fmt.Sprintf("step %s: attempt %s is still running but the stream keeps breaking", s.ID, key),
		Hint:    "check the host's network; resume the run to ask the agent again"}}
}

// executeOnce runs one Execute call to its result; got says whether any
// event arrived (the agent accepted the request).
func (r *Runner) executeOnce(ctx context.Context, cl agentv1.AgentServiceClient, req *agentv1.ExecuteRequest, runID string, s plan.Step) (*agentv1.ExecutionResult, bool, error) {
	cctx, cancel := context.WithTimeout(ctx, s.Timeout+r.opts.ExecuteGrace)
	defer cancel()
	// sent: once the stream exists the request may have reached the agent
	// (it went out on a ready connection), even if no event came back:
	// a connection lost afterwards (keepalive, reset) must not be taken
	// for "not sent", or a new attempt could run the action twice.
	stream, err := cl.Execute(cctx, req)
	if err != nil {
		return nil, false, err
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return nil, true, err
		}
		if res := ev.GetResult(); res != nil {
			return res, true, nil
		}
		if r.opts.OnProgress != nil {
			r.opts.OnProgress(runID, s.ID, ev)
		}
	}
}

// fromResult classifies an agent's execution result, checking the step's
// expectations on success.
func (r *Runner) fromResult(s plan.Step, res *agentv1.ExecutionResult, run *store.Run) result {
	ae := res.GetError()
	mk := func(code, msg, hint string, retryable bool) result {
		return result{err: &engine.Error{Code: code, Message: fmt.Sprintf("step %s (%s): %s", s.ID, s.Action, msg), Host: s.Host,
			Hint: hint, Retryable: retryable}, retryable: retryable}
	}
	switch res.GetState() {
	case agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED:
		out := res.GetOutput().AsMap()
		b, err := json.Marshal(out)
		if err != nil {
			return mk("bad_output", err.Error(), "", false)
		}
		if msg := checkExpect(s, out, run); msg != "" {
			if why := outputWhy(out); why != "" {
				msg += "; the action reports: " + why
			}
			return mk("expectation_unmet", msg, expectHint(s), true)
		}
		return result{output: b}
	case agentv1.ExecutionState_EXECUTION_STATE_FAILED:
		code := ae.GetCode()
		if code == "" {
			code = "action_failed"
		}
		return mk(code, ae.GetMessage(), ae.GetHint(), ae.GetRetryable())
	case agentv1.ExecutionState_EXECUTION_STATE_TIMED_OUT:
		return mk("timed_out", fmt.Sprintf("no result within %s", s.Timeout), "the step is retried within its budget", true)
	case agentv1.ExecutionState_EXECUTION_STATE_INTERRUPTED:
		return mk("interrupted", "the agent restarted while the action ran; its effect is unknown",
			"check the host (the action is check-then-act), then resume the run to send a new attempt", false)
	}
	return mk("bad_result", fmt.Sprintf("unexpected execution state %s", res.GetState()), "", false)
}

// checkExpect returns "" when the output meets Expect and ExpectFrom, else
// what differs.
func checkExpect(s plan.Step, out map[string]any, run *store.Run) string {
	var bad []string
	for _, f := range sortedKeys(s.Expect) {
		got, ok := out[f]
		if !ok || !jsonEqual(got, s.Expect[f]) {
			bad = append(bad, fmt.Sprintf("%s = %s, want %s", f, jsonText(got, ok), jsonText(s.Expect[f], true)))
		}
	}
	for _, f := range sortedKeys(s.ExpectFrom) {
		ref := s.ExpectFrom[f]
		id, field, _ := strings.Cut(ref, ".")
		want, wok := outputField(run, id, field)
		got, ok := out[f]
		if !wok || !ok || !jsonEqual(got, want) {
			bad = append(bad, fmt.Sprintf("%s = %s, want %s (%s)", f, jsonText(got, ok), jsonText(want, wok), ref))
		}
	}
	return strings.Join(bad, "; ")
}

// expectHint is what the operator should look at when a step's
// expectation stays unmet, by what the step waits for.
func expectHint(s plan.Step) string {
	const tail = "the step is retried within its budget; when spent, fix the cause and resume the run"
	switch s.Action {
	case "csshell.cs.get_state":
		return fmt.Sprintf("the local store of %s has not caught up with the Central Management Store (CMS replication, domain §6.14): "+
			"check the Replica Replicator Agent (RTCREPLICA) on %s and Get-CsManagementStoreReplicationStatus; %s", s.Host, s.Host, tail)
	case "mssql.mirror.status":
		return "database mirroring has not reached the expected state: check sys.database_mirroring on both partners, " +
			"their mirroring endpoints (ports 5022/7022 open, the mirror's SQL Server running); " + tail
	case "mssql.ls.restore_pending":
		return "the restore did not reach the point the plan proves (see what the action reports): " +
			"put the missing or damaged log backup in the copy directory; " + tail
	}
	return "check the host; " + tail
}

// outputWhy returns what an action's output says about why it fell short:
// its stop_reason and error fields and the files it left unapplied (with
// their reasons when they add something). An unmet expectation is recorded
// as an error without the output, so without this a paused run would show
// only the values that differ (complete = false), not the cause (a gap in
// the log chain, an unreadable log backup, an unreadable share).
func outputWhy(out map[string]any) string {
	var why []string
	for _, f := range []string{"stop_reason", "error"} {
		if s, _ := out[f].(string); s != "" {
			why = append(why, s)
		}
	}
	u, _ := out["unapplied"].([]any)
	// In file (time) order: an unreadable file is the cause of the gap
	// reported at the file after it.
	u = slices.Clone(u)
	file := func(x any) string {
		m, _ := x.(map[string]any)
		f, _ := m["file"].(string)
		return f
	}
	slices.SortStableFunc(u, func(a, b any) int { return strings.Compare(file(a), file(b)) })
	var files []string
	for _, x := range u {
		f := file(x)
		if f == "" {
			continue
		}
		if len(files) == 5 {
			files = append(files, fmt.Sprintf("and %d more", len(u)-5))
			break
		}
		m, _ := x.(map[string]any)
		if reason, _ := m["reason"].(string); reason != "" && !slices.Contains(why, reason) {
			f += " (" + reason + ")"
		}
		files = append(files, f)
	}
	if len(files) > 0 {
		why = append(why, "unapplied: "+strings.Join(files, ", "))
	}
	return strings.Join(why, "; ")
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && ks[j] < ks[j-1]; j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
	return ks
}

func jsonEqual(a, b any) bool {
	norm := func(v any) any {
		bs, _ := json.Marshal(v)
		var x any
		_ = json.Unmarshal(bs, &x)
		return x
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func jsonText(v any, ok bool) string {
	if !ok {
		return "(missing)"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// stepOutput decodes a recorded step output; ok is false when the step has
// none.
func stepOutput(run *store.Run, id string) (map[string]any, bool) {
	if run == nil {
		return nil, false
	}
	rec := run.Step(id)
	if rec == nil || len(rec.Status.Output) == 0 {
		return nil, false
	}
	var m map[string]any
	if json.Unmarshal(rec.Status.Output, &m) != nil {
		return nil, false
	}
	return m, true
}

func outputField(run *store.Run, id, field string) (any, bool) {
	m, ok := stepOutput(run, id)
	if !ok {
		return nil, false
	}
	v, ok := m[field]
	return v, ok
}

// backoff is the wait before attempt n+1: base·2^(n-1) capped at the
// policy's maximum, plus up to jitter×that at random.
func backoff(p plan.Retry, n int, jitter float64) time.Duration {
	d := p.Backoff
	for i := 1; i < n && d < p.MaxBackoff; i++ {
		d *= 2
	}
	if p.MaxBackoff > 0 && d > p.MaxBackoff {
		d = p.MaxBackoff
	}
	if jitter > 0 && d > 0 {
		d += time.Duration(rand.Float64() * jitter * float64(d))
	}
	return d
}

// record fires the outcome of attempt key, in one store transaction with
// the run's pause when the step fails terminally.
// When the store cannot be written the step stays running and the next
// pass settles it again through GetExecution, without resending.
func (r *Runner) record(runID string, s plan.Step, key string, res result) {
	build := func(run *store.Run) ([]store.Change, error) {
		rec := run.Step(s.ID)
		if rec == nil || rec.Status.State != engine.StepRunning || rec.Status.Key != key {
			return nil, nil // already settled
		}
		in := engine.StepInput{Key: key, Err: res.err}
		switch {
		case res.err == nil:
			in.Output = res.output
			return []store.Change{{Step: s.ID, StepEvent: engine.StepAttemptSucceeded, StepInput: in}}, nil
		case res.notSent && s.BestEffort:
			in.Reason = res.err.Message
			return []store.Change{{Step: s.ID, StepEvent: engine.StepSkipUnreachable, StepInput: in}}, nil
		case res.retryable && rec.Status.BudgetLeft():
			n := rec.Status.Attempt - rec.Status.ResumeBase
			in.RetryAt = r.opts.Now().Add(backoff(s.Retry, n, r.opts.Jitter))
			return []store.Change{{Step: s.ID, StepEvent: engine.StepAttemptFailedRetryable, StepInput: in}}, nil
		}
		e := *res.err
		if res.retryable {
			e.Message += fmt.Sprintf(" (retry budget of %d attempts spent)", s.Retry.MaxAttempts)
		}
		in.Err = &e
		cs := []store.Change{{Step: s.ID, StepEvent: engine.StepAttemptFailedTerminal, StepInput: in}}
		if engine.CanRun(run.Status.State, engine.RunPause) {
			cs = append(cs, store.Change{RunEvent: engine.RunPause, RunInput: engine.RunInput{Err: &e}, Details: map[string]any{"step": s.ID}})
		}
		return cs, nil
	}
	fired := false
	run, err := r.fire(runID, func(run *store.Run) ([]store.Change, error) {
		cs, err := build(run)
		fired = err == nil && len(cs) > 0
		return cs, err
	})
	if err != nil {
		r.storeFailed(runID, s.ID, "record the outcome of "+key, err)
	}
	if err == nil && fired && r.opts.Observer != nil {
		if rec := run.Step(s.ID); rec != nil {
			r.opts.Observer.AttemptEnded(run, rec)
		}
	}
}
