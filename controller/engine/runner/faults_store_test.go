package runner

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/store"
)

// errDiskFull is what the store's write fails with in these tests, as a
// full disk would make bbolt's commit fail.
var errDiskFull = syscall.ENOSPC

// count returns how many recorded calls start with prefix.
func count(calls []string, prefix string) int {
	n := 0
	for _, c := range calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// TestRunner_Start_attemptNotJournaled is issue 6 scenario (d) at the
// runner: when the store cannot record an attempt (BeginAttempt's commit
// fails, as with a full disk), the request is never sent; the run stays
// where it was, and continues once the store can be written again, with
// each step executed once.
func TestRunner_Start_attemptNotJournaled(t *testing.T) {
	e := newEnv(t)
	var full atomic.Bool
	var refused atomic.Int64
	e.st.SetHooks(store.Hooks{
		BeforeCommit: func(op, _ string) error {
			if full.Load() {
				refused.Add(1)
				return errDiskFull
			}
			return nil
		},
		// The disk fills up as soon as step a succeeded.
		AfterFire: func(run *store.Run, cs []store.Change) {
			if s := run.Step("a"); s != nil && s.Status.State == engine.StepSucceeded {
				full.Store(true)
			}
		},
	})
	h := &hooks{AgentClients: e.fl}
	id := e.create(mkPlan(group("one", noop("a", pc1, nil)), group("two", noop("b", pc2, nil))))

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	var logged syncBuffer
	r := e.runner(h)
	r.opts.Log = slog.New(slog.NewTextHandler(&logged, nil))
	err := r.Start(ctx, id)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the runner waits for the store rather than acting")
	require.Greater(t, refused.Load(), int64(1), "the runner kept trying to journal b's attempt")
	// The operator is told, once (rate-limited), not at every retry.
	require.Equal(t, 1, strings.Count(logged.String(), "store cannot be written"), logged.String())
	require.Contains(t, logged.String(), "step=b")
	require.Contains(t, logged.String(), "free space")

	run := e.run(id)
	require.Equal(t, engine.RunRunning, run.Status.State)
	require.Equal(t, engine.StepSucceeded, run.Step("a").Status.State)
	b := run.Step("b").Status
	require.Equal(t, engine.StepPending, b.State)
	require.Zero(t, b.Attempt, "no attempt of b was recorded")
	calls := h.Calls()
	require.Equal(t, 1, count(calls, "Execute "+id+"/a/"), "%v", calls)
	require.Zero(t, count(calls, "Execute "+id+"/b/"), "b was sent without being journaled: %v", calls)

	// Space is freed: the run goes on from b.
	full.Store(false)
	e.st.SetHooks(store.Hooks{})
	require.NoError(t, e.runner(h).Start(t.Context(), id))
	run = e.run(id)
	require.Equal(t, engine.RunSucceeded, run.Status.State)
	require.Len(t, run.Step("a").Status.Attempts, 1)
	require.Len(t, run.Step("b").Status.Attempts, 1)
	calls = h.Calls()
	require.Equal(t, 1, count(calls, "Execute "+id+"/a/"), "%v", calls)
	require.Equal(t, []string{"Execute " + id + "/b/1"}, slices.DeleteFunc(slices.Clone(calls), func(c string) bool {
		return !strings.HasPrefix(c, "Execute "+id+"/b/")
	}))
}

// TestRunner_Start_outcomeNotJournaled: when an attempt was sent but its
// outcome cannot be recorded (the commit after Execute fails), the step
// stays running in the store and the runner settles it by asking the agent
// (GetExecution), never by sending the request again; once the store can
// be written the outcome is recorded and the run goes on.
func TestRunner_Start_outcomeNotJournaled(t *testing.T) {
	e := newEnv(t)
	var full atomic.Bool
	e.st.SetHooks(store.Hooks{
		BeforeCommit: func(op, _ string) error {
			if full.Load() {
				return errDiskFull
			}
			return nil
		},
		// The disk fills up once a's attempt is journaled, before its
		// request is sent.
		AfterBeginAttempt: func(_, stepID, _ string) {
			if stepID == "a" {
				full.Store(true)
			}
		},
	})
	h := &hooks{AgentClients: e.fl}
	id := e.create(mkPlan(group("one", noop("a", pc1, nil)), group("two", noop("b", pc2, nil))))

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	err := e.runner(h).Start(ctx, id)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	a := e.step(id, "a")
	require.Equal(t, engine.StepRunning, a.State, "the outcome could not be recorded")
	calls := h.Calls()
	require.Equal(t, []string{"Execute " + id + "/a/1"}, slices.DeleteFunc(slices.Clone(calls), func(c string) bool {
		return !strings.HasPrefix(c, "Execute ")
	}), "sent once, never again")
	require.Positive(t, count(calls, "GetExecution "+id+"/a/1"), "the runner asks the agent: %v", calls)

	full.Store(false)
	e.st.SetHooks(store.Hooks{})
	require.NoError(t, e.runner(h).Start(t.Context(), id))
	run := e.run(id)
	require.Equal(t, engine.RunSucceeded, run.Status.State)
	require.Len(t, run.Step("a").Status.Attempts, 1)
	require.Equal(t, 1, count(h.Calls(), "Execute "+id+"/a/"))
}

// TestStore_BeforeCommit_abortsWrite: a failing BeforeCommit leaves the
// store as it was (the hook is a faithful stand-in for a failed commit).
func TestStore_BeforeCommit_abortsWrite(t *testing.T) {
	e := newEnv(t)
	e.st.SetHooks(store.Hooks{BeforeCommit: func(string, string) error { return errDiskFull }})
	_, err := e.st.CreateRun(store.NewRun{Plan: mkPlan(group("one", noop("x", pc1, nil))), Actor: operator, Reason: "test"})
	require.ErrorIs(t, err, errDiskFull)
	runs, err := e.st.ListRuns(10)
	require.NoError(t, err)
	require.Empty(t, runs, "no run, and the pool is not locked")

	e.st.SetHooks(store.Hooks{})
	id := e.create(mkPlan(group("one", noop("a", pc1, nil))))
	e.st.SetHooks(store.Hooks{BeforeCommit: func(string, string) error { return errDiskFull }})
	_, err = e.st.FireRun(id, controller, engine.RunStart, engine.RunInput{})
	require.True(t, errors.Is(err, errDiskFull), "%v", err)
	e.st.SetHooks(store.Hooks{})
	require.Equal(t, engine.RunPending, e.run(id).Status.State)
}

// syncBuffer is a bytes.Buffer safe for the runner's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
