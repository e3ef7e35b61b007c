package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/internal/pki"
)

var (
	// bucketRuns holds runs by 8-byte big-endian sequence number.
	bucketRuns = []byte("runs")
	// bucketRunActive maps a lower-case pool to the ID of its unfinished
	// run: the registration is the pool's lock.
	bucketRunActive = []byte("run_active")
	// bucketRunBlock maps a lower-case pool to the ID of its last
	// succeeded, not yet acknowledged run (anti-flap block).
	bucketRunBlock = []byte("run_block")
)

// runBuckets are created by Open next to the agents bucket.
var runBuckets = [][]byte{bucketRuns, bucketRunActive, bucketRunBlock, bucketAudit, bucketAuditHead}

// Errors of the run methods; test with errors.Is.
var (
	// ErrRunNotFound: no run has that ID.
	ErrRunNotFound = errors.New("run not found")
	// ErrRunActive: the pool already has an unfinished run.
	ErrRunActive = errors.New("a run of this pool is in progress")
	// ErrNotAcknowledged: the pool's last failover/failback was not
	// acknowledged (anti-flap), and the request is not forced.
	ErrNotAcknowledged = errors.New("the previous run of this pool is not acknowledged")
	// ErrForbidden: the actor's role may not do this.
	ErrForbidden = errors.New("not allowed for this role")
	// ErrBadRun: the request is incomplete or contradictory.
	ErrBadRun = errors.New("bad run request")
)

// Force records the refusals an operator overrode when starting a run. Any
// flag needs a Reason, which is audited.
type Force struct {
	// SplitBrain and PoolState are the plan.Force flags the plan was built
	// with.
	SplitBrain bool `json:"split_brain,omitempty"`
	PoolState  bool `json:"pool_state,omitempty"`
	// Unacknowledged starts the run although the pool's previous
	// failover/failback was not acknowledged (anti-flap override).
	Unacknowledged bool `json:"unacknowledged,omitempty"`
	// Reason says why; required when a flag is set.
	Reason string `json:"reason,omitempty"`
	// Overrode is the ID of the unacknowledged run that was overridden
	// (filled by CreateRun).
	Overrode string `json:"overrode,omitempty"`
}

func (f Force) set() bool { return f.SplitBrain || f.PoolState || f.Unacknowledged }

// StepRecord is one step of a run: where it sits in the plan and its
// state-machine data.
type StepRecord struct {
	// ID is the plan step's ID.
	ID string `json:"id"`
	// Group is the name of its group, GroupIndex the group's position.
	Group      string `json:"group"`
	GroupIndex int    `json:"group_index"`
	// Host and Action are copied from the plan for listings.
	Host   string `json:"host"`
	Action string `json:"action"`
	// Destructive is copied from the plan.
	Destructive bool `json:"destructive,omitempty"`
	// Status is the step's state, attempts, error, output and approvals.
	Status engine.StepStatus `json:"status"`
}

// Run is a persisted run: a plan being executed for a pool. Values
// returned by the store are copies; mutating them changes nothing stored.
type Run struct {
	// ID is "run-<n>", n increasing with creation.
	ID string `json:"id"`
	// Pool is the pool FQDN as the plan spells it.
	Pool string `json:"pool"`
	// Kind is the plan kind.
	Kind plan.Kind `json:"kind"`
	// Plan is the plan as JSON (plan.Plan); the runner decodes it and
	// runs plan.Validate before executing it.
	Plan json.RawMessage `json:"plan"`
	// StartedBy is who asked for it, Reason why.
	StartedBy Actor  `json:"started_by"`
	Reason    string `json:"reason,omitempty"`
	// Force records overridden refusals.
	Force Force `json:"force,omitzero"`
	// Created and Updated are when it was created and last changed.
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// Status is the run's state-machine data.
	Status engine.RunStatus `json:"status"`
	// Steps are every plan step, in plan order.
	Steps []StepRecord `json:"steps"`
}

// Step returns the step with the given ID, or nil.
func (r *Run) Step(id string) *StepRecord {
	for i := range r.Steps {
		if r.Steps[i].ID == id {
			return &r.Steps[i]
		}
	}
	return nil
}

// NewRun is what CreateRun needs.
type NewRun struct {
	// Plan is the plan to run; its Kind and Pool become the run's.
	Plan *plan.Plan
	// Actor is who starts the run: role operator, approver or admin.
	Actor Actor
	// Reason is why (optional, audited).
	Reason string
	// Force lists overridden refusals, with a reason.
	Force Force
}

func poolKey(pool string) []byte { return []byte(strings.ToLower(pool)) }

func runKey(id string) ([]byte, error) {
	n, err := strconv.ParseUint(strings.TrimPrefix(id, "run-"), 10, 64)
	if err != nil || !strings.HasPrefix(id, "run-") || n == 0 {
		return nil, fmt.Errorf("%w: %q (run IDs look like run-12)", ErrRunNotFound, id)
	}
	return seqKey(n), nil
}

// mayOperate: starting, cancelling, resuming and acknowledging runs.
func mayOperate(r pki.Role) bool {
	return r == pki.RoleOperator || r == pki.RoleApprover || r == pki.RoleAdmin
}

func getRun(tx *bolt.Tx, id string) (*Run, error) {
	k, err := runKey(id)
	if err != nil {
		return nil, err
	}
	v := tx.Bucket(bucketRuns).Get(k)
	if v == nil {
		return nil, fmt.Errorf("%w: %s", ErrRunNotFound, id)
	}
	var r Run
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("run %s is corrupt: %w", id, err)
	}
	return &r, nil
}

func putRun(tx *bolt.Tx, r *Run) error {
	k, err := runKey(r.ID)
	if err != nil {
		return err
	}
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode run %s: %w", r.ID, err)
	}
	if err := tx.Bucket(bucketRuns).Put(k, v); err != nil {
		return fmt.Errorf("save run %s: %w", r.ID, err)
	}
	return nil
}

// CreateRun registers a run of in.Plan in state pending, which locks the
// plan's pool, and audits run.created (plus force when a refusal was
// overridden) in the same bbolt transaction: nothing is written when any
// check fails or the store cannot be written. It refuses:
//   - an actor whose role is not operator, approver or admin (ErrForbidden);
//   - a nil or empty plan, an invalid kind, or a force flag without a
//     reason (ErrBadRun);
//   - a pool with an unfinished run (ErrRunActive, naming it);
//   - a pool whose last succeeded run is not acknowledged (ErrNotAcknowledged,
//     naming it) unless in.Force.Unacknowledged with a reason.
//
// It does not validate the plan against a topology (plan.Validate is the
// caller's). Safe for concurrent use: two concurrent calls for one pool
// cannot both succeed.
func (s *Store) CreateRun(in NewRun) (*Run, error) {
	if !mayOperate(in.Actor.Role) || in.Actor.Name == "" {
		return nil, fmt.Errorf("%q with role %q may not start a run (operator, approver or admin can): %w", in.Actor.Name, in.Actor.Role, ErrForbidden)
	}
	p := in.Plan
	if p == nil || p.Pool == "" || len(p.Groups) == 0 {
		return nil, fmt.Errorf("%w: the plan is empty or names no pool", ErrBadRun)
	}
	if !p.Kind.Valid() {
		return nil, fmt.Errorf("%w: unknown plan kind %q", ErrBadRun, p.Kind)
	}
	if in.Force.set() && strings.TrimSpace(in.Force.Reason) == "" {
		return nil, fmt.Errorf("%w: forcing needs a reason", ErrBadRun)
	}
	planJSON, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("%w: encode plan: %v", ErrBadRun, err)
	}
	var steps []StepRecord
	seen := map[string]bool{}
	for gi, g := range p.Groups {
		for _, st := range g.Steps {
			if st.ID == "" || seen[st.ID] {
				return nil, fmt.Errorf("%w: step ID %q is empty or repeated", ErrBadRun, st.ID)
			}
			seen[st.ID] = true
			ss := engine.StepStatus{State: engine.StepPending, MaxAttempts: st.Retry.MaxAttempts, BestEffort: st.BestEffort}
			if st.Approval.Required {
				ss.RequiredApprovers = max(st.Approval.Approvers, 1)
			}
			steps = append(steps, StepRecord{ID: st.ID, Group: g.Name, GroupIndex: gi, Host: st.Host,
				Action: st.Action, Destructive: st.Destructive, Status: ss})
		}
	}
	now := time.Now().UTC()
	var run *Run
	err = s.db.Update(func(tx *bolt.Tx) error {
		pk := poolKey(p.Pool)
		if id := tx.Bucket(bucketRunActive).Get(pk); id != nil {
			other, err := getRun(tx, string(id))
			if err != nil {
				return err
			}
			if !other.Status.State.Finished() {
				return fmt.Errorf("pool %s: %w: %s (%s, %s, started by %s at %s); wait for it to finish, or cancel it with `chatdr run cancel %s`",
					p.Pool, ErrRunActive, other.ID, other.Kind, other.Status.State, other.StartedBy.Name,
					other.Created.Format(time.RFC3339), other.ID)
			}
		}
		force := in.Force
		if id := tx.Bucket(bucketRunBlock).Get(pk); id != nil {
			other, err := getRun(tx, string(id))
			if err != nil {
				return err
			}
			if other.Status.State.Blocks() {
				if !force.Unacknowledged {
					return fmt.Errorf("pool %s: %w: %s (%s) finished at %s; acknowledge it with `chatdr run ack %s`, or force with a reason",
						p.Pool, ErrNotAcknowledged, other.ID, other.Kind, other.Status.Ended.Format(time.RFC3339), other.ID)
				}
				force.Overrode = other.ID
			}
		}
		seq, err := tx.Bucket(bucketRuns).NextSequence()
		if err != nil {
			return err
		}
		run = &Run{ID: "run-" + strconv.FormatUint(seq, 10), Pool: p.Pool, Kind: p.Kind, Plan: planJSON,
			StartedBy: in.Actor, Reason: in.Reason, Force: force, Created: now, Updated: now,
			Status: engine.RunStatus{State: engine.RunPending}, Steps: steps}
		if err := putRun(tx, run); err != nil {
			return err
		}
		if err := tx.Bucket(bucketRunActive).Put(pk, []byte(run.ID)); err != nil {
			return err
		}
		if _, err := appendAudit(tx, auditRecord{actor: in.Actor, action: ActionRunCreated, runID: run.ID, now: now,
			details: map[string]any{"pool": p.Pool, "kind": p.Kind, "reason": in.Reason, "steps": len(steps)}}); err != nil {
			return err
		}
		if force.set() {
			if _, err := appendAudit(tx, auditRecord{actor: in.Actor, action: ActionForce, runID: run.ID, now: now, details: force}); err != nil {
				return err
			}
		}
		return s.beforeCommit("create", run.ID)
	})
	if err != nil {
		return nil, fmt.Errorf("create run for pool %s: %w", p.Pool, err)
	}
	return run, nil
}

// GetRun returns the run with that ID (ErrRunNotFound if none). Safe for
// concurrent use.
func (s *Store) GetRun(id string) (*Run, error) {
	var r *Run
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = getRun(tx, id)
		return err
	})
	return r, err
}

// ListRuns returns up to limit runs (0: all), newest first. Safe for
// concurrent use.
func (s *Store) ListRuns(limit int) ([]*Run, error) {
	return s.listRuns(limit, func(*Run) bool { return true }, true)
}

// InFlightRuns returns every unfinished run (pending, running,
// waiting_approval, paused, cancelling), oldest first: at controller start
// the runner resumes the running and cancelling ones (asking agents for
// the outcome of each step in state running before resending its key) and
// leaves paused and waiting ones waiting for an operator. Safe for
// concurrent use.
func (s *Store) InFlightRuns() ([]*Run, error) {
	return s.listRuns(0, func(r *Run) bool { return !r.Status.State.Finished() }, false)
}

func (s *Store) listRuns(limit int, keep func(*Run) bool, newestFirst bool) ([]*Run, error) {
	var out []*Run
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRuns).Cursor()
		k, v := c.First()
		next := c.Next
		if newestFirst {
			k, v = c.Last()
			next = c.Prev
		}
		for ; k != nil; k, v = next() {
			var r Run
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("run %x is corrupt: %w", k, err)
			}
			if keep(&r) {
				out = append(out, &r)
				if limit > 0 && len(out) >= limit {
					break
				}
			}
		}
		return nil
	})
	return out, err
}

// Change is one event to fire in Store.Fire: a step event when Step is
// set, else a run event.
type Change struct {
	// Step is the step's ID for a step event; empty for a run event.
	Step string
	// StepEvent and StepInput are the step event and its input. The
	// store fills StepInput.Now, RunID and StepID when empty.
	StepEvent engine.StepEvent
	StepInput engine.StepInput
	// RunEvent and RunInput are the run event and its input. The store
	// fills RunInput.Now and RunInput.Actor (the actor's name) when empty.
	RunEvent engine.RunEvent
	RunInput engine.RunInput
	// Details are added to the audit entry (optional).
	Details map[string]any
}

// RunAction is the audit action of a run event.
func RunAction(e engine.RunEvent) string {
	switch e {
	case engine.RunCancel:
		return ActionCancel
	case engine.RunResume:
		return ActionResume
	case engine.RunAcknowledge:
		return ActionAck
	case engine.RunStart:
		return "run.started"
	case engine.RunCancelDone:
		return "run.cancelled"
	case engine.RunSucceed:
		return "run.succeeded"
	case engine.RunFail:
		return "run.failed"
	case engine.RunPause:
		return "run.paused"
	case engine.RunApprove:
		return "run.approved"
	case engine.RunWaitApproval:
		return "run.waiting_approval"
	}
	return "run." + string(e)
}

// StepAction is the audit action of a step event.
func StepAction(e engine.StepEvent) string {
	switch e {
	case engine.StepAttemptStarted:
		return ActionStepAttempt
	case engine.StepAttemptSucceeded:
		return ActionStepSucceed
	case engine.StepAttemptFailedRetryable:
		return "step.retry"
	case engine.StepAttemptFailedTerminal:
		return "step.failed"
	case engine.StepSkipUnreachable, engine.StepSkipAlreadyDone:
		return "step.skipped"
	case engine.StepCancel:
		return "step.cancelled"
	case engine.StepResume:
		return "step.resumed"
	case engine.StepApprove:
		return "step.approved"
	case engine.StepWaitApproval:
		return "step.waiting_approval"
	}
	return "step." + string(e)
}

// personEvent: run events an operator asks for; the others are the
// controller's own.
func personEvent(e engine.RunEvent) bool {
	return e == engine.RunCancel || e == engine.RunResume || e == engine.RunAcknowledge
}

// Fire applies the changes to run runID in order, all in one bbolt
// transaction with one audit entry per event: either every change is
// committed with its audit entries, or nothing is (the first refused
// change's error is returned, wrapping engine.ErrInvalidTransition when the
// machine refused it). Cancel, resume and acknowledge need an actor with
// role operator, approver or admin; every other event is the controller's
// (ControllerActor), else ErrForbidden.
//
// Side effects committed with the event that causes them:
//   - cancel cancels every step in pending, waiting_approval or retry_wait,
//     and completes the cancel (cancel_done) when no step is running;
//   - resume sends every failed step back to pending;
//   - reaching a finished state releases the pool's lock; reaching
//     succeeded sets the anti-flap block, acknowledge lifts it.
//
// Safe for concurrent use; concurrent callers are serialized by bbolt.
func (s *Store) Fire(runID string, actor Actor, changes ...Change) (*Run, error) {
	var run *Run
	err := s.db.Update(func(tx *bolt.Tx) error {
		r, err := getRun(tx, runID)
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		for _, c := range changes {
			if err := fire(tx, r, actor, c, now); err != nil {
				return err
			}
		}
		r.Updated = now
		run = r
		if err := s.beforeCommit("fire", runID); err != nil {
			return err
		}
		return putRun(tx, r)
	})
	if err != nil {
		return nil, err
	}
	if s.hooks.AfterFire != nil {
		s.hooks.AfterFire(run, changes)
	}
	return run, nil
}

// FireRun fires one run event; see Fire.
func (s *Store) FireRun(runID string, actor Actor, e engine.RunEvent, in engine.RunInput) (*Run, error) {
	return s.Fire(runID, actor, Change{RunEvent: e, RunInput: in})
}

// FireStep fires one step event; see Fire.
func (s *Store) FireStep(runID, stepID string, actor Actor, e engine.StepEvent, in engine.StepInput) (*Run, error) {
	return s.Fire(runID, actor, Change{Step: stepID, StepEvent: e, StepInput: in})
}

func fire(tx *bolt.Tx, r *Run, actor Actor, c Change, now time.Time) error {
	if c.Step != "" {
		if actor.Role != pki.RoleController {
			return fmt.Errorf("step events are the controller's, not %s's (role %s): %w", actor.Name, actor.Role, ErrForbidden)
		}
		return fireStep(tx, r, actor, c.Step, c.StepEvent, c.StepInput, c.Details, now)
	}
	if c.RunEvent == "" {
		return fmt.Errorf("%w: a change names neither a step event nor a run event", ErrBadRun)
	}
	if personEvent(c.RunEvent) {
		if !mayOperate(actor.Role) {
			return fmt.Errorf("%q with role %q may not %s a run (operator, approver or admin can): %w", actor.Name, actor.Role, c.RunEvent, ErrForbidden)
		}
	} else if actor.Role != pki.RoleController {
		return fmt.Errorf("run event %s is the controller's, not %s's (role %s): %w", c.RunEvent, actor.Name, actor.Role, ErrForbidden)
	}
	return fireRun(tx, r, actor, c.RunEvent, c.RunInput, c.Details, now)
}

func fireRun(tx *bolt.Tx, r *Run, actor Actor, e engine.RunEvent, in engine.RunInput, details map[string]any, now time.Time) error {
	if in.Now.IsZero() {
		in.Now = now
	}
	if in.Actor == "" {
		in.Actor = actor.Name
	}
	from := r.Status.State
	if err := engine.FireRun(&r.Status, e, in); err != nil {
		return fmt.Errorf("run %s: %w", r.ID, err)
	}
	det := map[string]any{"from": from, "to": r.Status.State}
	for k, v := range details {
		det[k] = v
	}
	if in.Err != nil {
		det["error"] = in.Err
	}
	if in.Reason != "" {
		det["reason"] = in.Reason
	}
	if _, err := appendAudit(tx, auditRecord{actor: actor, action: RunAction(e), runID: r.ID, details: det, now: now}); err != nil {
		return err
	}
	pk := poolKey(r.Pool)
	switch e {
	case engine.RunCancel:
		running := false
		for i := range r.Steps {
			st := &r.Steps[i]
			if engine.CanStep(st.Status.State, engine.StepCancel) {
				if err := fireStep(tx, r, actor, st.ID, engine.StepCancel, engine.StepInput{}, nil, now); err != nil {
					return err
				}
			}
			running = running || st.Status.State.InFlight()
		}
		if !running {
			if err := fireRun(tx, r, ControllerActor(), engine.RunCancelDone, engine.RunInput{}, map[string]any{"note": "no step in flight"}, now); err != nil {
				return err
			}
		}
	case engine.RunResume:
		for i := range r.Steps {
			if st := &r.Steps[i]; st.Status.State == engine.StepFailed {
				if err := fireStep(tx, r, actor, st.ID, engine.StepResume, engine.StepInput{}, nil, now); err != nil {
					return err
				}
			}
		}
	}
	st := r.Status.State
	if st.Finished() {
		if id := tx.Bucket(bucketRunActive).Get(pk); string(id) == r.ID {
			if err := tx.Bucket(bucketRunActive).Delete(pk); err != nil {
				return err
			}
		}
	}
	if st.Blocks() {
		if err := tx.Bucket(bucketRunBlock).Put(pk, []byte(r.ID)); err != nil {
			return err
		}
	}
	if st == engine.RunAcknowledged {
		if id := tx.Bucket(bucketRunBlock).Get(pk); string(id) == r.ID {
			if err := tx.Bucket(bucketRunBlock).Delete(pk); err != nil {
				return err
			}
		}
	}
	return nil
}

func fireStep(tx *bolt.Tx, r *Run, actor Actor, stepID string, e engine.StepEvent, in engine.StepInput, details map[string]any, now time.Time) error {
	st := r.Step(stepID)
	if st == nil {
		return fmt.Errorf("run %s has no step %q: %w", r.ID, stepID, ErrBadRun)
	}
	if in.Now.IsZero() {
		in.Now = now
	}
	if in.RunID == "" {
		in.RunID = r.ID
	}
	if in.StepID == "" {
		in.StepID = stepID
	}
	from := st.Status.State
	if err := engine.FireStep(&st.Status, e, in); err != nil {
		return fmt.Errorf("run %s: %w", r.ID, err)
	}
	det := map[string]any{"from": from, "to": st.Status.State, "host": st.Host, "action": st.Action}
	for k, v := range details {
		det[k] = v
	}
	if st.Status.Key != "" && strings.HasPrefix(string(e), "attempt_") {
		det["key"] = st.Status.Key
		det["attempt"] = st.Status.Attempt
	}
	if in.Err != nil {
		det["error"] = in.Err
	}
	if in.Reason != "" {
		det["reason"] = in.Reason
	}
	_, err := appendAudit(tx, auditRecord{actor: actor, action: StepAction(e), runID: r.ID, stepID: stepID, details: det, now: now})
	return err
}

// BeginAttempt journals the next attempt of a pending step of a running
// run and returns its idempotency key (run/step/attempt), audited as
// step.attempt in the same transaction. The key is durable when it
// returns: only then may the runner send the request. It refuses a run
// that is not running (e.g. cancelling: no new attempt starts) and a step
// that is not pending (engine.ErrInvalidTransition). After a controller
// crash the runner must not call it for a step already running: it asks
// the agent for the recorded key's outcome instead. Safe for concurrent
// use.
func (s *Store) BeginAttempt(runID, stepID string) (key string, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		r, err := getRun(tx, runID)
		if err != nil {
			return err
		}
		if r.Status.State != engine.RunRunning {
			return fmt.Errorf("run %s is %s, not running: no new attempt of step %s may start: %w",
				r.ID, r.Status.State, stepID, engine.ErrInvalidTransition)
		}
		now := time.Now().UTC()
		if err := fireStep(tx, r, ControllerActor(), stepID, engine.StepAttemptStarted, engine.StepInput{}, nil, now); err != nil {
			return err
		}
		key = r.Step(stepID).Status.Key
		r.Updated = now
		if err := s.beforeCommit("attempt", runID); err != nil {
			return err
		}
		return putRun(tx, r)
	})
	if err != nil {
		return "", err
	}
	if s.hooks.AfterBeginAttempt != nil {
		s.hooks.AfterBeginAttempt(runID, stepID, key)
	}
	return key, nil
}

// Approve records an approval of step stepID of run runID by actor, with
// a reason, and audits it (approval). When the step then has its required
// number of distinct approvers, it fires the step's approve event (the step
// goes back to pending, ready for its first attempt) and, when the run was
// waiting_approval and no other step still waits, the run's approve event;
// all in one transaction. It refuses a role other than approver/admin
// (ErrForbidden and engine.ErrNotApprover), the same approver twice
// (engine.ErrDuplicateApprover), a missing reason and a step not waiting
// for approval (engine.ErrNotWaitingApproval); nothing is written then.
// complete reports whether the step is now approved. Safe for concurrent
// use.
func (s *Store) Approve(runID, stepID string, actor Actor, reason string) (run *Run, complete bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		r, err := getRun(tx, runID)
		if err != nil {
			return err
		}
		st := r.Step(stepID)
		if st == nil {
			return fmt.Errorf("run %s has no step %q: %w", r.ID, stepID, ErrBadRun)
		}
		if !engine.MayApprove(actor.Role) {
			return fmt.Errorf("%s has role %q: %w: %w; ask someone with role approver or admin", actor.Name, actor.Role, ErrForbidden, engine.ErrNotApprover)
		}
		now := time.Now().UTC()
		complete, err = engine.AddApproval(&st.Status, engine.Approval{Approver: actor.Name, Role: actor.Role, Reason: reason, Time: now})
		if err != nil {
			return fmt.Errorf("run %s step %s: %w", r.ID, stepID, err)
		}
		if _, err := appendAudit(tx, auditRecord{actor: actor, action: ActionApproval, runID: r.ID, stepID: stepID, now: now,
			details: map[string]any{"reason": reason, "approvals": len(st.Status.Approvals), "required": st.Status.RequiredApprovers}}); err != nil {
			return err
		}
		if complete {
			if err := fireStep(tx, r, actor, stepID, engine.StepApprove, engine.StepInput{}, nil, now); err != nil {
				return err
			}
			waiting := false
			for i := range r.Steps {
				waiting = waiting || r.Steps[i].Status.State == engine.StepWaitingApproval
			}
			if r.Status.State == engine.RunWaitingApproval && !waiting {
				if err := fireRun(tx, r, actor, engine.RunApprove, engine.RunInput{}, nil, now); err != nil {
					return err
				}
			}
		}
		r.Updated = now
		run = r
		if err := s.beforeCommit("approve", runID); err != nil {
			return err
		}
		return putRun(tx, r)
	})
	if err != nil {
		return nil, false, err
	}
	return run, complete, nil
}

// DecodePlan decodes the run's plan. The runner must still run
// plan.Validate against the current topology before executing it.
func (r *Run) DecodePlan() (*plan.Plan, error) {
	var p plan.Plan
	if err := json.Unmarshal(r.Plan, &p); err != nil {
		return nil, fmt.Errorf("run %s: plan is corrupt: %w", r.ID, err)
	}
	return &p, nil
}
