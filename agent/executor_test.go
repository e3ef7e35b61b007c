package agent

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/chatdr/chatdr/agent/journal"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

// gatedAction is an action that counts its runs, waits for release (or its
// context), then emits one progress event and echoes its parameters.
type gatedAction struct {
	runs    atomic.Int32
	started chan struct{} // receives one value per run, when it starts
	release chan struct{} // closed to let runs finish
	ctxErr  atomic.Value  // the run's ctx.Err() when it finished, as a string
}

func newGatedAction() *gatedAction {
	return &gatedAction{started: make(chan struct{}, 10), release: make(chan struct{})}
}

func (g *gatedAction) action() Action {
	return Action{
		Info: &agentv1.ActionInfo{Name: "test.gated", DefaultTimeout: durationpb.New(time.Minute)},
		Run: func(ctx context.Context, req *agentv1.ExecuteRequest, emit Emitter) (*structpb.Struct, *agentv1.ActionError) {
			g.runs.Add(1)
			g.started <- struct{}{}
			select {
			case <-g.release:
			case <-ctx.Done():
				g.ctxErr.Store(ctx.Err().Error())
				return nil, &agentv1.ActionError{Code: "cancelled", Message: ctx.Err().Error()}
			}
			g.ctxErr.Store("<nil>")
			emit.Progress("released", 1, 1, "steps")
			return req.GetParams(), nil
		},
	}
}

// newTestExecutor returns an executor offering the builtin actions and the
// given ones, and the function that stops it (cancelling running actions and
// waiting for them).
func newTestExecutor(t *testing.T, extra ...Action) (*Executor, func()) {
	t.Helper()
	return newJournaledExecutor(t, t.TempDir(), extra...)
}

// newJournaledExecutor is newTestExecutor with its journal in dir; the stop
// function also closes the journal, so dir can be reopened.
func newJournaledExecutor(t *testing.T, dir string, extra ...Action) (*Executor, func()) {
	t.Helper()
	j, _, err := journal.Open(dir)
	require.NoError(t, err)
	stop, cancel := context.WithCancel(context.Background())
	e := NewExecutor(stop, j, slog.New(slog.NewTextHandler(io.Discard, nil)), append(builtinActions(), extra...), nil)
	var once sync.Once
	stopped := func() { once.Do(func() { cancel(); e.Wait(); j.Close() }) }
	t.Cleanup(stopped)
	return e, stopped
}

// events collects the events one Execute call sends.
type events struct {
	mu  sync.Mutex
	evs []*agentv1.ExecuteResponse
}

func (e *events) send(ev *agentv1.ExecuteResponse) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
	return nil
}

func (e *events) all() []*agentv1.ExecuteResponse {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*agentv1.ExecuteResponse(nil), e.evs...)
}

// result returns the result event, which must be the last and only one.
func (e *events) result(t *testing.T) *agentv1.ExecutionResult {
	t.Helper()
	evs := e.all()
	require.NotEmpty(t, evs)
	for _, ev := range evs[:len(evs)-1] {
		require.Nil(t, ev.GetResult(), "the result must be the last event")
	}
	res := evs[len(evs)-1].GetResult()
	require.NotNil(t, res, "the last event must be the result")
	return res
}

func (e *events) progress() []*agentv1.Progress {
	var out []*agentv1.Progress
	for _, ev := range e.all() {
		if p := ev.GetProgress(); p != nil {
			out = append(out, p)
		}
	}
	return out
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	require.NoError(t, err)
	return s
}

// subscribers returns how many callers watch the execution of key.
func subscribers(e *Executor, key string) int {
	e.mu.Lock()
	ex, ok := e.execs[key]
	e.mu.Unlock()
	if !ok {
		return 0
	}
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return len(ex.subs)
}

// waitFor polls cond every few milliseconds until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatalf("test ended while waiting for %s", what)
		}
	}
}

func TestExecutor_Execute_sameKeyRunsOnce(t *testing.T) {
	g := newGatedAction()
	close(g.release)
	e, _ := newTestExecutor(t, g.action())
	params := mustStruct(t, map[string]any{"db": "mgc", "n": 3})
	req := &agentv1.ExecuteRequest{IdempotencyKey: "run1/step1/1", Action: "test.gated", Params: params}

	var first, second events
	require.NoError(t, e.Execute(t.Context(), req, first.send))
	require.NoError(t, e.Execute(t.Context(), req, second.send))

	require.Equal(t, int32(1), g.runs.Load(), "the action must run once per key")
	r1, r2 := first.result(t), second.result(t)
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, r1.GetState())
	require.False(t, r1.GetReplayed())
	require.True(t, proto.Equal(params, r1.GetOutput()), "output echoes the params: %v", r1.GetOutput())

	require.True(t, r2.GetReplayed(), "the second call replays")
	require.Len(t, second.all(), 1, "a replay sends the result and nothing else")
	r2.Replayed = false
	require.True(t, proto.Equal(r1, r2), "the replay carries the recorded result:\n%v\n%v", r1, r2)

	got := e.Get(req.GetIdempotencyKey())
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, got.GetState())
	require.Equal(t, "test.gated", got.GetAction())
	require.True(t, proto.Equal(params, got.GetResult().GetOutput()))
}

func TestExecutor_Execute_keyReused(t *testing.T) {
	g := newGatedAction()
	close(g.release)
	e, _ := newTestExecutor(t, g.action())
	key := "run1/step2/1"
	var first events
	require.NoError(t, e.Execute(t.Context(), &agentv1.ExecuteRequest{IdempotencyKey: key, Action: "test.gated",
		Params: mustStruct(t, map[string]any{"db": "mgc"})}, first.send))

	tests := []struct {
		name string
		req  *agentv1.ExecuteRequest
	}{
		{"other params", &agentv1.ExecuteRequest{IdempotencyKey: key, Action: "test.gated", Params: mustStruct(t, map[string]any{"db": "mgccomp"})}},
		{"no params", &agentv1.ExecuteRequest{IdempotencyKey: key, Action: "test.gated"}},
		{"other action", &agentv1.ExecuteRequest{IdempotencyKey: key, Action: "agent.noop", Params: mustStruct(t, map[string]any{"db": "mgc"})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var evs events
			err := e.Execute(t.Context(), tt.req, evs.send)
			require.ErrorIs(t, err, ErrKeyReused)
			require.ErrorContains(t, err, key)
			require.Empty(t, evs.all())
		})
	}
	require.Equal(t, int32(1), g.runs.Load())
}

func TestExecutor_Execute_attachToRunning(t *testing.T) {
	g := newGatedAction()
	e, _ := newTestExecutor(t, g.action())
	req := &agentv1.ExecuteRequest{IdempotencyKey: "attach", Action: "test.gated", Params: mustStruct(t, map[string]any{"x": "y"})}

	var first, second events
	errs := make(chan error, 2)
	go func() { errs <- e.Execute(t.Context(), req, first.send) }()
	<-g.started
	go func() { errs <- e.Execute(t.Context(), req, second.send) }()
	waitFor(t, "the second caller to attach", func() bool { return subscribers(e, "attach") == 2 })
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_RUNNING, e.Get("attach").GetState())

	close(g.release)
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)

	require.Equal(t, int32(1), g.runs.Load())
	for _, evs := range []*events{&first, &second} {
		require.Len(t, evs.progress(), 1, "both callers see the progress sent while attached")
		res := evs.result(t)
		require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, res.GetState())
		require.True(t, proto.Equal(req.GetParams(), res.GetOutput()))
	}
	require.False(t, first.result(t).GetReplayed())
	require.True(t, second.result(t).GetReplayed(), "an attached caller did not start the action")
}

func TestExecutor_Execute_attachToRunningNoop(t *testing.T) {
	e, _ := newTestExecutor(t)
	params := mustStruct(t, map[string]any{"duration": "1s", "note": "attach"})
	req := &agentv1.ExecuteRequest{IdempotencyKey: "noop-attach", Action: "agent.noop", Params: params}

	var first, second events
	errs := make(chan error, 2)
	go func() { errs <- e.Execute(t.Context(), req, first.send) }()
	waitFor(t, "the noop to run", func() bool {
		return e.Get("noop-attach").GetState() == agentv1.ExecutionState_EXECUTION_STATE_RUNNING
	})
	go func() { errs <- e.Execute(t.Context(), req, second.send) }()
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)

	r1, r2 := first.result(t), second.result(t)
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, r1.GetState())
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, r2.GetState())
	require.True(t, proto.Equal(params, r2.GetOutput()), "the attached caller gets the result: %v", r2)
	require.True(t, r2.GetReplayed())
	require.NotEmpty(t, first.progress())
	require.Equal(t, r1.GetStartedAt().AsTime(), r2.GetStartedAt().AsTime(), "one execution, one start")
}

func TestExecutor_Execute_detachDoesNotCancel(t *testing.T) {
	g := newGatedAction()
	e, _ := newTestExecutor(t, g.action())
	req := &agentv1.ExecuteRequest{IdempotencyKey: "detach", Action: "test.gated", Params: mustStruct(t, map[string]any{"a": 1})}

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	var evs events
	go func() { errc <- e.Execute(ctx, req, evs.send) }()
	<-g.started
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	require.Equal(t, 0, subscribers(e, "detach"), "the caller that left is no longer watching")
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_RUNNING, e.Get("detach").GetState())

	close(g.release)
	waitFor(t, "the detached execution to end", func() bool {
		return e.Get("detach").GetState() != agentv1.ExecutionState_EXECUTION_STATE_RUNNING
	})
	got := e.Get("detach")
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, got.GetState(), "result: %v", got.GetResult())
	require.True(t, proto.Equal(req.GetParams(), got.GetResult().GetOutput()))
	require.Equal(t, "<nil>", g.ctxErr.Load(), "the action's context must not be cancelled by the caller leaving")
	for _, ev := range evs.all() {
		require.Nil(t, ev.GetResult(), "a detached caller gets no result")
	}
}

func TestExecutor_Execute_endStates(t *testing.T) {
	e, _ := newTestExecutor(t)
	tests := []struct {
		name      string
		params    map[string]any
		timeout   time.Duration
		wantState agentv1.ExecutionState
		wantCode  string
		wantMsg   string
		retryable bool
	}{
		{
			name: "timeout", params: map[string]any{"duration": "10s"}, timeout: 50 * time.Millisecond,
			wantState: agentv1.ExecutionState_EXECUTION_STATE_TIMED_OUT, wantCode: "timeout",
			wantMsg: "agent.noop did not finish within 50ms", retryable: true,
		},
		{
			name: "requested failure", params: map[string]any{"fail": "disk full"},
			wantState: agentv1.ExecutionState_EXECUTION_STATE_FAILED, wantCode: "requested_failure", wantMsg: "disk full",
		},
		{
			name: "bad duration", params: map[string]any{"duration": "soon"},
			wantState: agentv1.ExecutionState_EXECUTION_STATE_FAILED, wantCode: "bad_param", wantMsg: `duration "soon"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &agentv1.ExecuteRequest{IdempotencyKey: "end/" + tt.name, Action: "agent.noop", Params: mustStruct(t, tt.params)}
			if tt.timeout > 0 {
				req.Timeout = durationpb.New(tt.timeout)
			}
			var evs events
			require.NoError(t, e.Execute(t.Context(), req, evs.send))
			res := evs.result(t)
			require.Equal(t, tt.wantState, res.GetState())
			require.Equal(t, tt.wantCode, res.GetError().GetCode())
			require.Contains(t, res.GetError().GetMessage(), tt.wantMsg)
			require.Equal(t, tt.retryable, res.GetError().GetRetryable())
			require.Nil(t, res.GetOutput())
			require.Equal(t, tt.wantState, e.Get(req.GetIdempotencyKey()).GetState())
		})
	}
}

func TestExecutor_Execute_interruptedByStop(t *testing.T) {
	g := newGatedAction()
	e, stop := newTestExecutor(t, g.action())
	errc := make(chan error, 1)
	var evs events
	go func() {
		errc <- e.Execute(t.Context(), &agentv1.ExecuteRequest{IdempotencyKey: "stop", Action: "test.gated"}, evs.send)
	}()
	<-g.started
	stop()
	require.NoError(t, <-errc)
	res := evs.result(t)
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_INTERRUPTED, res.GetState())
	require.Equal(t, "interrupted", res.GetError().GetCode())
	require.Equal(t, context.Canceled.Error(), g.ctxErr.Load())
}

func TestExecutor_Execute_refusedRequests(t *testing.T) {
	g := newGatedAction()
	e, _ := newTestExecutor(t, g.action())
	tests := []struct {
		name    string
		req     *agentv1.ExecuteRequest
		wantErr error
		wantMsg string
	}{
		{"unknown action", &agentv1.ExecuteRequest{IdempotencyKey: "k1", Action: "sql.drop_everything"}, ErrUnknownAction, `"sql.drop_everything" is not offered`},
		{"no key", &agentv1.ExecuteRequest{Action: "agent.noop"}, ErrBadRequest, "idempotency_key must be 1 to 200 bytes"},
		{"key too long", &agentv1.ExecuteRequest{IdempotencyKey: strings.Repeat("k", 201), Action: "agent.noop"}, ErrBadRequest, "idempotency_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var evs events
			err := e.Execute(t.Context(), tt.req, evs.send)
			require.ErrorIs(t, err, tt.wantErr)
			require.ErrorContains(t, err, tt.wantMsg)
			require.Empty(t, evs.all())
			require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_NOT_FOUND, e.Get(tt.req.GetIdempotencyKey()).GetState(),
				"a refused request leaves no trace")
		})
	}
	require.Equal(t, int32(0), g.runs.Load())
}

func TestExecutor_Get_unknownKey(t *testing.T) {
	e, _ := newTestExecutor(t)
	got := e.Get("never-seen")
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_NOT_FOUND, got.GetState())
	require.Empty(t, got.GetAction())
	require.Nil(t, got.GetResult())
}

func TestExecutor_onDone(t *testing.T) {
	var mu sync.Mutex
	var ended []string
	j, _, err := journal.Open(t.TempDir())
	require.NoError(t, err)
	t.Cleanup(func() { j.Close() })
	e := NewExecutor(t.Context(), j, slog.Default(), builtinActions(), func(action string, st agentv1.ExecutionState) {
		mu.Lock()
		defer mu.Unlock()
		ended = append(ended, action+" "+st.String())
	})
	var evs events
	req := &agentv1.ExecuteRequest{IdempotencyKey: "done", Action: "agent.noop"}
	require.NoError(t, e.Execute(t.Context(), req, evs.send))
	require.NoError(t, e.Execute(t.Context(), req, evs.send))
	e.Wait()
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"agent.noop EXECUTION_STATE_SUCCEEDED"}, ended, "a replay is not a new end")
}

func TestExecutor_Execute_survivesRestart(t *testing.T) {
	dir := t.TempDir()
	g := newGatedAction()
	close(g.release)
	params := mustStruct(t, map[string]any{"db": "mgc"})
	req := &agentv1.ExecuteRequest{IdempotencyKey: "run7/step2/1", Action: "test.gated", Params: params}

	e, stop := newJournaledExecutor(t, dir, g.action())
	var first events
	require.NoError(t, e.Execute(t.Context(), req, first.send))
	stop()

	// A new agent process on the same state directory replays the result
	// and does not run the action again.
	e2, _ := newJournaledExecutor(t, dir, g.action())
	var again events
	require.NoError(t, e2.Execute(t.Context(), req, again.send))
	require.Equal(t, int32(1), g.runs.Load(), "the action ran once across the restart")
	res := again.result(t)
	require.True(t, res.GetReplayed())
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, res.GetState())
	require.True(t, proto.Equal(params, res.GetOutput()))
	got := e2.Get(req.GetIdempotencyKey())
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, got.GetState())
	require.Equal(t, "test.gated", got.GetAction())

	// The key with other parameters is still refused after the restart.
	other := &agentv1.ExecuteRequest{IdempotencyKey: "run7/step2/1", Action: "test.gated", Params: mustStruct(t, map[string]any{"db": "x"})}
	require.ErrorIs(t, e2.Execute(t.Context(), other, (&events{}).send), ErrKeyReused)
}

func TestExecutor_Execute_interruptedIsNeverRerun(t *testing.T) {
	dir := t.TempDir()
	g := newGatedAction()
	req := &agentv1.ExecuteRequest{IdempotencyKey: "run8/step5/1", Action: "test.gated"}
	e, stop := newJournaledExecutor(t, dir, g.action())
	go func() { _ = e.Execute(context.Background(), req, (&events{}).send) }()
	<-g.started
	stop() // the agent stops mid-action

	e2, _ := newJournaledExecutor(t, dir, g.action())
	got := e2.Get(req.GetIdempotencyKey())
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_INTERRUPTED, got.GetState())
	var evs events
	require.NoError(t, e2.Execute(t.Context(), req, evs.send))
	require.Equal(t, int32(1), g.runs.Load(), "an interrupted key is reported, not run again")
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_INTERRUPTED, evs.result(t).GetState())
}
