package controller

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/engine/runner"
	"github.com/chatdr/chatdr/controller/fleet"
	"github.com/chatdr/chatdr/controller/store"
)

// runMetrics are the metrics of runs and steps (docs/configuration.md). It
// implements runner.Observer; it is safe for concurrent use.
type runMetrics struct {
	runDuration  *prometheus.HistogramVec
	runs         *prometheus.CounterVec
	pauses       *prometheus.CounterVec
	stepDuration *prometheus.HistogramVec
	attempts     *prometheus.CounterVec
	retried      *prometheus.CounterVec
	now          func() time.Time

	mu sync.Mutex
	// ended are the runs counted as finished: the runner and CancelRun
	// may both see a run end, and it counts once.
	ended map[string]bool
}

var _ runner.Observer = (*runMetrics)(nil)

// newRunMetrics registers the run and step metrics on reg. The gauge of
// runs in progress reads st at every scrape, so that it is right after a
// controller restart too.
func newRunMetrics(reg prometheus.Registerer, st *store.Store) *runMetrics {
	m := &runMetrics{
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "chatdr_controller_run_duration_seconds", Help: "Duration of finished runs, from start (or creation, when never started) to end, by plan kind and outcome.",
			Buckets: prometheus.ExponentialBucketsRange(1, 8*3600, 16),
		}, []string{"kind", "outcome"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatdr_controller_runs_total", Help: "Runs finished, by plan kind and outcome (succeeded, failed, cancelled).",
		}, []string{"kind", "outcome"}),
		pauses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatdr_controller_run_pauses_total", Help: "Times a run paused on a terminal step error or a failed guard, by plan kind.",
		}, []string{"kind"}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "chatdr_controller_step_duration_seconds", Help: "Duration of ended steps, from their first attempt to their end, by action and outcome (succeeded, failed, skipped).",
			Buckets: prometheus.ExponentialBucketsRange(0.01, 4*3600, 18),
		}, []string{"action", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatdr_controller_step_attempts_total", Help: "Step attempts whose outcome was recorded, by action.",
		}, []string{"action"}),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatdr_controller_steps_retried_total", Help: "Step attempts that failed retryably and were scheduled for another attempt, by action.",
		}, []string{"action"}),
		now:   time.Now,
		ended: map[string]bool{},
	}
	inProgress := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "chatdr_controller_runs_in_progress", Help: "Runs not finished (pending, running, waiting for approval, paused or cancelling); -1 when the store cannot be read.",
	}, func() float64 {
		runs, err := st.InFlightRuns()
		if err != nil {
			return -1
		}
		return float64(len(runs))
	})
	reg.MustRegister(m.runDuration, m.runs, m.pauses, m.stepDuration, m.attempts, m.retried, inProgress)
	return m
}

// AttemptEnded implements runner.Observer.
func (m *runMetrics) AttemptEnded(_ *store.Run, step *store.StepRecord) {
	m.attempts.WithLabelValues(step.Action).Inc()
	st := step.Status
	switch st.State {
	case engine.StepRetryWait:
		m.retried.WithLabelValues(step.Action).Inc()
	case engine.StepSucceeded, engine.StepFailed, engine.StepSkipped:
		m.stepDuration.WithLabelValues(step.Action, string(st.State)).Observe(m.since(st.Started, st.Ended))
	}
}

// RunStopped implements runner.Observer. A nil m records nothing.
func (m *runMetrics) RunStopped(run *store.Run) {
	if m == nil {
		return
	}
	st := run.Status
	kind := string(run.Kind)
	switch {
	case st.State == engine.RunPaused:
		m.pauses.WithLabelValues(kind).Inc()
	case st.State.Finished():
		m.mu.Lock()
		seen := m.ended[run.ID]
		m.ended[run.ID] = true
		m.mu.Unlock()
		if seen {
			return
		}
		from := st.Started
		if from.IsZero() {
			from = run.Created
		}
		m.runs.WithLabelValues(kind, string(st.State)).Inc()
		m.runDuration.WithLabelValues(kind, string(st.State)).Observe(m.since(from, st.Ended))
	}
}

// since is the time from start to end (now when end is not set), in
// seconds, never negative.
func (m *runMetrics) since(start, end time.Time) float64 {
	if start.IsZero() {
		return 0
	}
	if end.IsZero() {
		end = m.now()
	}
	return max(end.Sub(start).Seconds(), 0)
}

// observeFleet sets the reachability gauge of every agent of a fleet
// fan-out.
func (m *metrics) observeFleet(res []fleet.Status) {
	for _, r := range res {
		v := 0.0
		if r.Reachable {
			v = 1
		}
		m.reachable.WithLabelValues(r.Agent.Host, r.Agent.Site).Set(v)
	}
}
