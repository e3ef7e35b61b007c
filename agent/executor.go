package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chatdr/chatdr/agent/journal"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

// maxKeyLen bounds an idempotency key.
const maxKeyLen = 200

// Errors of the executor, mapped to gRPC codes by the server.
var (
	ErrBadRequest    = errors.New("bad request")
	ErrUnknownAction = errors.New("unknown action")
	ErrKeyReused     = errors.New("idempotency key reused with another request")
	ErrJournal       = errors.New("agent journal unavailable")
)

// Emitter receives the progress and log events of a running action.
type Emitter interface {
	Progress(stage string, done, total int64, unit string)
	Log(level, msg string)
}

// Action is one executable action.
type Action struct {
	Info *agentv1.ActionInfo
	// Run does the work of req (its timeout already applied to ctx). It must
	// honour ctx and return an output or an *agentv1.ActionError.
	Run func(ctx context.Context, req *agentv1.ExecuteRequest, emit Emitter) (*structpb.Struct, *agentv1.ActionError)
}

// execution is one idempotency key's run.
type execution struct {
	key, action, digest string
	// durable executions are journaled; read-only ones live in memory only.
	durable bool

	mu     sync.Mutex
	subs   map[chan *agentv1.ExecuteResponse]struct{}
	result *agentv1.ExecutionResult // set once, when done closes
	done   chan struct{}
}

// Executor runs actions at most once per idempotency key and lets callers
// attach to executions in flight. It is safe for concurrent use.
//
// Every execution is journaled (synced to disk) before its action starts and
// when it ends, so a key survives an agent restart: an ended key replays its
// result, and a key whose action was running when the agent stopped is
// reported INTERRUPTED and never run again.
type Executor struct {
	actions map[string]Action
	onDone  func(action string, state agentv1.ExecutionState)
	journal *journal.Journal
	log     *slog.Logger

	mu        sync.Mutex
	execs     map[string]*execution // in flight, or ended in this process
	lastPrune time.Time
	wg        sync.WaitGroup
	stop      context.Context
}

// memoryRetention is how long an ended execution stays in memory (the
// journal keeps durable ones far longer).
const memoryRetention = 10 * time.Minute

// pruneLocked drops ended executions older than memoryRetention from memory,
// at most once a minute. e.mu is held.
func (e *Executor) pruneLocked() {
	now := time.Now()
	if now.Sub(e.lastPrune) < time.Minute {
		return
	}
	e.lastPrune = now
	for k, ex := range e.execs {
		ex.mu.Lock()
		old := ex.result != nil && now.Sub(ex.result.GetEndedAt().AsTime()) > memoryRetention
		ex.mu.Unlock()
		if old {
			delete(e.execs, k)
		}
	}
}

// NewExecutor returns an executor for the given actions that journals into
// j. stop cancels every running action when the agent shuts down; onDone
// (optional) observes ends.
func NewExecutor(stop context.Context, j *journal.Journal, log *slog.Logger, actions []Action, onDone func(string, agentv1.ExecutionState)) *Executor {
	m := make(map[string]Action, len(actions))
	for _, a := range actions {
		m[a.Info.GetName()] = a
	}
	if onDone == nil {
		onDone = func(string, agentv1.ExecutionState) {}
	}
	return &Executor{actions: m, onDone: onDone, journal: j, log: log, execs: map[string]*execution{}, stop: stop}
}

// ActionInfos returns the descriptions of the actions offered.
func (e *Executor) ActionInfos() []*agentv1.ActionInfo {
	out := make([]*agentv1.ActionInfo, 0, len(e.actions))
	for _, a := range e.actions {
		out = append(out, a.Info)
	}
	return out
}

// Execute runs (or attaches to, or replays) the execution of req and sends
// its events to send until the result has been sent or ctx ends. Ending ctx
// detaches the caller; the action goes on.
func (e *Executor) Execute(ctx context.Context, req *agentv1.ExecuteRequest, send func(*agentv1.ExecuteResponse) error) error {
	key := req.GetIdempotencyKey()
	if key == "" || len(key) > maxKeyLen {
		return fmt.Errorf("%w: idempotency_key must be 1 to %d bytes", ErrBadRequest, maxKeyLen)
	}
	act, ok := e.actions[req.GetAction()]
	if !ok {
		return fmt.Errorf("%w: %q is not offered by this agent", ErrUnknownAction, req.GetAction())
	}
	digest, err := paramsDigest(req.GetParams())
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}

	// Read-only actions are recorded in memory only: running one again after
	// an agent restart is harmless, and it spares every probe-like call two
	// synced journal writes.
	durable := !act.Info.GetReadOnly()
	e.mu.Lock()
	e.pruneLocked()
	ex, seen := e.execs[key]
	if !seen && durable {
		// Not in memory: the journal decides whether the key is new.
		rec, created, err := e.journal.Begin(journal.Record{Key: key, Action: req.GetAction(), Digest: digest, StartedAt: time.Now()})
		if err != nil {
			e.mu.Unlock()
			return fmt.Errorf("%w: %v", ErrJournal, err)
		}
		if !created {
			e.mu.Unlock()
			if rec.Action != req.GetAction() || rec.Digest != digest {
				return fmt.Errorf("%w: key %q was used for %s with other parameters", ErrKeyReused, key, rec.Action)
			}
			res := proto.Clone(rec.Result).(*agentv1.ExecutionResult)
			res.Replayed = true
			return send(resultEvent(res))
		}
	}
	if seen && (ex.action != req.GetAction() || ex.digest != digest) {
		e.mu.Unlock()
		return fmt.Errorf("%w: key %q was used for %s with other parameters", ErrKeyReused, key, ex.action)
	}
	if !seen {
		ex = &execution{key: key, action: req.GetAction(), digest: digest, durable: durable,
			subs: map[chan *agentv1.ExecuteResponse]struct{}{}, done: make(chan struct{})}
		e.execs[key] = ex
	}
	ch := make(chan *agentv1.ExecuteResponse, 64)
	ex.mu.Lock()
	finished := ex.result != nil
	if !finished {
		ex.subs[ch] = struct{}{}
	}
	ex.mu.Unlock()
	if !seen {
		e.wg.Add(1)
		go e.run(ex, act, req)
	}
	e.mu.Unlock()

	if finished {
		res := proto.Clone(ex.result).(*agentv1.ExecutionResult)
		res.Replayed = true
		return send(resultEvent(res))
	}
	defer func() {
		ex.mu.Lock()
		delete(ex.subs, ch)
		ex.mu.Unlock()
	}()
	for {
		select {
		case ev := <-ch:
			if err := send(ev); err != nil {
				return err
			}
		case <-ex.done:
			// Drain events sent before the end, then the result.
		drain:
			for {
				select {
				case ev := <-ch:
					if err := send(ev); err != nil {
						return err
					}
				default:
					break drain
				}
			}
			res := ex.result
			if seen {
				res = proto.Clone(res).(*agentv1.ExecutionResult)
				res.Replayed = true
			}
			return send(resultEvent(res))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (e *Executor) run(ex *execution, act Action, req *agentv1.ExecuteRequest) {
	defer e.wg.Done()
	timeout := req.GetTimeout().AsDuration()
	if timeout <= 0 {
		timeout = act.Info.GetDefaultTimeout().AsDuration()
	}
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(e.stop, timeout)
	defer cancel()
	started := time.Now()
	req = proto.Clone(req).(*agentv1.ExecuteRequest)
	req.Timeout = durationpb.New(timeout)
	out, aerr := act.Run(ctx, req, emitter{ex})
	res := &agentv1.ExecutionResult{
		StartedAt: timestamppb.New(started),
		EndedAt:   timestamppb.Now(),
	}
	switch {
	case aerr == nil:
		res.State = agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED
		res.Output = out
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		res.State = agentv1.ExecutionState_EXECUTION_STATE_TIMED_OUT
		res.Error = &agentv1.ActionError{Code: "timeout", Retryable: true,
			Message: fmt.Sprintf("%s did not finish within %s: %s", req.GetAction(), timeout, aerr.GetMessage()),
			Hint:    "check the host, then retry with a longer timeout"}
	case e.stop.Err() != nil:
		res.State = agentv1.ExecutionState_EXECUTION_STATE_INTERRUPTED
		res.Error = &agentv1.ActionError{Code: "interrupted", Message: "the agent stopped while the action ran: " + aerr.GetMessage(),
			Hint: "check the effect on the host before running the step again"}
	default:
		res.State = agentv1.ExecutionState_EXECUTION_STATE_FAILED
		res.Error = aerr
	}
	if ex.durable {
		if err := e.journal.Finish(ex.key, res); err != nil {
			// The result stays in memory and is served from there; after a
			// restart the key reads as interrupted, which is the safe side.
			e.log.Error("could not journal the end of an execution", "key", ex.key, "action", ex.action, "err", err)
		}
	}
	ex.mu.Lock()
	ex.result = res
	close(ex.done)
	ex.mu.Unlock()
	e.onDone(req.GetAction(), res.GetState())
}

// Get returns the state of a key and its result when it has ended.
func (e *Executor) Get(key string) *agentv1.GetExecutionResponse {
	e.mu.Lock()
	ex, ok := e.execs[key]
	e.mu.Unlock()
	if !ok {
		rec, found, err := e.journal.Get(key)
		if err != nil || !found || rec.Result == nil {
			// A journal that cannot be read must not pass for "never seen":
			// the caller would resend the request.
			if err != nil {
				return &agentv1.GetExecutionResponse{State: agentv1.ExecutionState_EXECUTION_STATE_INTERRUPTED, Action: rec.Action,
					Result: &agentv1.ExecutionResult{State: agentv1.ExecutionState_EXECUTION_STATE_INTERRUPTED,
						Error: &agentv1.ActionError{Code: "journal_unreadable", Message: err.Error(), Retryable: true}}}
			}
			return &agentv1.GetExecutionResponse{State: agentv1.ExecutionState_EXECUTION_STATE_NOT_FOUND}
		}
		return &agentv1.GetExecutionResponse{State: rec.State, Action: rec.Action, Result: rec.Result}
	}
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.result == nil {
		return &agentv1.GetExecutionResponse{State: agentv1.ExecutionState_EXECUTION_STATE_RUNNING, Action: ex.action}
	}
	return &agentv1.GetExecutionResponse{State: ex.result.GetState(), Action: ex.action,
		Result: proto.Clone(ex.result).(*agentv1.ExecutionResult)}
}

// Wait blocks until every running action has returned.
func (e *Executor) Wait() { e.wg.Wait() }

type emitter struct{ ex *execution }

func (m emitter) publish(ev *agentv1.ExecuteResponse) {
	m.ex.mu.Lock()
	defer m.ex.mu.Unlock()
	for ch := range m.ex.subs {
		select {
		case ch <- ev:
		default: // a slow watcher misses a progress event, never the result
		}
	}
}

func (m emitter) Progress(stage string, done, total int64, unit string) {
	m.publish(&agentv1.ExecuteResponse{Time: timestamppb.Now(), Event: &agentv1.ExecuteResponse_Progress{
		Progress: &agentv1.Progress{Stage: stage, Done: done, Total: total, Unit: unit}}})
}

func (m emitter) Log(level, msg string) {
	m.publish(&agentv1.ExecuteResponse{Time: timestamppb.Now(), Event: &agentv1.ExecuteResponse_Log{
		Log: &agentv1.LogLine{Level: level, Message: msg}}})
}

func resultEvent(res *agentv1.ExecutionResult) *agentv1.ExecuteResponse {
	return &agentv1.ExecuteResponse{Time: timestamppb.Now(), Event: &agentv1.ExecuteResponse_Result{Result: res}}
}

// paramsDigest is a stable digest of the parameters, used to refuse a key
// reused for a different request.
func paramsDigest(p *structpb.Struct) (string, error) {
	if p == nil {
		p = &structpb.Struct{}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
