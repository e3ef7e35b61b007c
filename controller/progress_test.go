package controller

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/store"
	"github.com/chatdr/chatdr/internal/pki"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func progressEvent(t time.Time, stage string, done, total int64) *agentv1.ExecuteResponse {
	return &agentv1.ExecuteResponse{Time: timestamppb.New(t),
		Event: &agentv1.ExecuteResponse_Progress{Progress: &agentv1.Progress{Stage: stage, Done: done, Total: total, Unit: "bytes"}}}
}

func TestProgressBook_latestWins(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := newProgressBook(clk.now)
	require.Nil(t, b.snapshot("run-1", time.Time{}))

	b.record("run-1", "F2", progressEvent(at(1), "copy a.trn", 10, 100))
	b.record("run-1", "F2", progressEvent(at(3), "copy a.trn", 50, 100))
	// An event older than the one kept (a late one from an earlier
	// attempt) does not replace it.
	b.record("run-1", "F2", progressEvent(at(2), "copy a.trn", 20, 100))
	// Log lines are not progress.
	b.record("run-1", "F2", &agentv1.ExecuteResponse{Time: timestamppb.New(at(4)),
		Event: &agentv1.ExecuteResponse_Log{Log: &agentv1.LogLine{Level: "info", Message: "hello"}}})
	b.record("run-1", "F3", progressEvent(at(5), "restore a.trn", 1, 3))
	b.record("run-2", "F2", progressEvent(at(5), "other run", 7, 8))
	// An event without a time gets the controller's.
	b.record("run-3", "F2", &agentv1.ExecuteResponse{Event: &agentv1.ExecuteResponse_Progress{Progress: &agentv1.Progress{Stage: "s", Done: 1}}})

	got := b.snapshot("run-1", time.Time{})
	require.Equal(t, map[string]stepProgress{
		"F2": {Stage: "copy a.trn", Done: 50, Total: 100, Unit: "bytes", Time: at(3)},
		"F3": {Stage: "restore a.trn", Done: 1, Total: 3, Unit: "bytes", Time: at(5)},
	}, got)
	got["F2"] = stepProgress{} // a copy: the book is unchanged
	require.Equal(t, int64(50), b.snapshot("run-1", time.Time{})["F2"].Done)
	require.Equal(t, int64(7), b.snapshot("run-2", time.Time{})["F2"].Done)
	require.Equal(t, t0, b.snapshot("run-3", time.Time{})["F2"].Time)
}

func TestProgressBook_pruned(t *testing.T) {
	clk := &fakeClock{t: t0}
	b := newProgressBook(clk.now)
	b.record("run-1", "F2", progressEvent(t0, "copy", 1, 2))
	b.record("run-2", "F2", progressEvent(t0, "copy", 1, 2))

	// run-1 ended: kept for progressKeep after its end, then dropped.
	require.NotNil(t, b.snapshot("run-1", t0))
	clk.add(progressKeep)
	require.NotNil(t, b.snapshot("run-1", t0.Add(time.Hour)), "the first end seen is kept")
	clk.add(time.Second)
	require.Nil(t, b.snapshot("run-1", time.Time{}))
	require.NotNil(t, b.snapshot("run-2", time.Time{}), "a run not known to have ended stays")

	// A run silent for progressIdle is dropped even if its end was never seen.
	clk.add(progressIdle)
	require.Nil(t, b.snapshot("run-2", time.Time{}))

	// At most progressMaxRuns runs: the least recently updated go first.
	for i := range progressMaxRuns + 5 {
		clk.add(time.Millisecond)
		b.record(fmt.Sprintf("run-%d", 10+i), "F2", progressEvent(clk.now(), "copy", 1, 2))
	}
	b.mu.Lock()
	n := len(b.runs)
	b.mu.Unlock()
	require.Equal(t, progressMaxRuns, n)
	require.Nil(t, b.snapshot("run-10", time.Time{}))
	require.NotNil(t, b.snapshot(fmt.Sprintf("run-%d", 10+progressMaxRuns+4), time.Time{}))
}

func TestProgressBook_concurrent(t *testing.T) {
	b := newProgressBook(nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				b.record("run-1", fmt.Sprintf("S%d", i), progressEvent(t0.Add(time.Duration(j)), "x", int64(j), 100))
				_ = b.snapshot("run-1", time.Time{})
			}
		})
	}
	wg.Wait()
	got := b.snapshot("run-1", time.Time{})
	require.Len(t, got, 8)
	for _, p := range got {
		require.Equal(t, int64(99), p.Done)
	}
}

// TestServer_GetRun_progressAndReport checks the wiring: what the runner's
// OnProgress hands the book comes back in GetRun, with the report; the
// run's end starts the countdown that drops it.
func TestServer_GetRun_progressAndReport(t *testing.T) {
	st, err := store.Open(t.TempDir(), time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	p := &plan.Plan{Kind: plan.FailoverDisaster, Pool: "pchat.test", Groups: []plan.Group{{Name: "copy", Steps: []plan.Step{
		{ID: "F2-copy-logs-mgc", Host: "sql1.dc2.test", Action: "mssql.ls.copy_pending", Retry: plan.Retry{MaxAttempts: 1}}}}}}
	run, err := st.CreateRun(store.NewRun{Plan: p, Actor: store.Actor{Name: "olga", Role: pki.RoleOperator}})
	require.NoError(t, err)
	clk := &fakeClock{t: time.Now()}
	s := &Server{store: st, progress: newProgressBook(clk.now)}
	s.progress.record(run.ID, "F2-copy-logs-mgc", progressEvent(at(2), "copy mgc_1.trn", 5, 10))

	get := func() *controllerv1.Run {
		resp, err := s.GetRun(t.Context(), &controllerv1.GetRunRequest{RunId: run.ID})
		require.NoError(t, err)
		return resp.GetRun()
	}
	got := get()
	require.Equal(t, int64(5), got.GetSteps()[0].GetProgress().GetDone())
	require.Equal(t, "copy mgc_1.trn", got.GetSteps()[0].GetProgress().GetStage())
	require.NotNil(t, got.GetReport())
	require.False(t, got.GetReport().GetDataLossKnown())
	require.Contains(t, got.GetReport().GetDataLossNotes(), "step F2-copy-logs-mgc has no output")

	// The run ends (a cancel); its progress stays for progressKeep.
	_, err = st.FireRun(run.ID, store.Actor{Name: "olga", Role: pki.RoleOperator}, engine.RunCancel, engine.RunInput{Actor: "olga"})
	require.NoError(t, err)
	clk.t = time.Now()
	require.NotNil(t, get().GetSteps()[0].GetProgress())
	clk.add(progressKeep + time.Minute)
	require.Nil(t, get().GetSteps()[0].GetProgress())
}
