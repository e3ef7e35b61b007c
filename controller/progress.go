package controller

import (
	"maps"
	"sync"
	"time"

	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

// Bounds of the progress book: a finished run's entries are dropped
// progressKeep after its end (a watcher has seen the last report by then);
// a run that reports nothing for progressIdle is dropped even if its end was
// never seen (the controller restarted, nobody asked for it); at most
// progressMaxRuns runs are kept, the least recently updated dropped first.
const (
	progressKeep    = 10 * time.Minute
	progressIdle    = 24 * time.Hour
	progressMaxRuns = 64
)

// stepProgress is the latest progress an agent reported for a step.
type stepProgress struct {
	// Stage says what is being done.
	Stage string
	// Done and Total are in Unit; Total is zero when unknown.
	Done, Total int64
	Unit        string
	// Time is when the agent reported it (the controller's clock when the
	// event carries no time).
	Time time.Time
}

// runProgress is what the book holds for one run.
type runProgress struct {
	steps map[string]stepProgress
	// seen is when the book last recorded an event of the run; ended when
	// a reader said the run had finished (zero until then).
	seen, ended time.Time
}

// progressBook keeps, in memory only, the latest progress event per (run,
// step) the agents streamed to the runner, for GetRun. It is bounded (see
// progressKeep, progressIdle, progressMaxRuns) and safe for concurrent use:
// record is called from the runner's step goroutines. Nothing is persisted:
// after a controller restart a step shows progress again from its agent's
// next report.
type progressBook struct {
	now func() time.Time

	mu   sync.Mutex
	runs map[string]*runProgress
}

// newProgressBook returns an empty book reading the time from now
// (time.Now when nil).
func newProgressBook(now func() time.Time) *progressBook {
	if now == nil {
		now = time.Now
	}
	return &progressBook{now: now, runs: map[string]*runProgress{}}
}

// record is a runner.ProgressFunc: it keeps ev when it is a progress event
// (log lines are ignored) as the step's latest, unless the step already has
// a later one.
func (b *progressBook) record(runID, stepID string, ev *agentv1.ExecuteResponse) {
	p := ev.GetProgress()
	if p == nil {
		return
	}
	now := b.now()
	t := now
	if ev.GetTime() != nil {
		t = ev.GetTime().AsTime()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.runs[runID]
	if r == nil {
		r = &runProgress{steps: map[string]stepProgress{}}
		b.runs[runID] = r
	}
	r.seen = now
	if old, ok := r.steps[stepID]; ok && old.Time.After(t) {
		return // a late event from an earlier attempt
	}
	r.steps[stepID] = stepProgress{Stage: p.GetStage(), Done: p.GetDone(), Total: p.GetTotal(), Unit: p.GetUnit(), Time: t}
	b.pruneLocked(now)
}

// snapshot returns a copy of the run's latest progress per step (nil when
// none). ended, when not zero, says the run finished then: its entries are
// dropped progressKeep later.
func (b *progressBook) snapshot(runID string, ended time.Time) map[string]stepProgress {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.runs[runID]; r != nil && !ended.IsZero() && r.ended.IsZero() {
		r.ended = ended
	}
	b.pruneLocked(now)
	r := b.runs[runID]
	if r == nil {
		return nil
	}
	return maps.Clone(r.steps)
}

// pruneLocked applies the bounds; b.mu must be held.
func (b *progressBook) pruneLocked(now time.Time) {
	for id, r := range b.runs {
		if (!r.ended.IsZero() && now.Sub(r.ended) > progressKeep) || now.Sub(r.seen) > progressIdle {
			delete(b.runs, id)
		}
	}
	for len(b.runs) > progressMaxRuns {
		oldest := ""
		for id, r := range b.runs {
			if oldest == "" || r.seen.Before(b.runs[oldest].seen) {
				oldest = id
			}
		}
		delete(b.runs, oldest)
	}
}
