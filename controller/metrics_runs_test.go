package controller

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/engine/runner"
	"github.com/chatdr/chatdr/controller/fleet"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/store"
	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/internal/pki"
	"github.com/chatdr/chatdr/internal/testutil"
)

// scrape gathers reg and returns every sample as "name{k=v,...}" → value;
// a histogram gives its sample count under name_count and its sum under
// name_sum.
func scrape(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(ls)
			key := func(name string) string {
				if len(ls) == 0 {
					return name
				}
				return name + "{" + strings.Join(ls, ",") + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key(mf.GetName())] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key(mf.GetName())] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key(mf.GetName()+"_count")] = float64(m.GetHistogram().GetSampleCount())
				out[key(mf.GetName()+"_sum")] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// onlyPrefix keeps the samples whose key starts with prefix.
func onlyPrefix(m map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

func TestRunMetrics_runsAndSteps(t *testing.T) {
	tlsDir := testutil.NewTLSDir(t)
	hosts, err := testutil.LabHosts(4)
	require.NoError(t, err)
	var specs []testutil.AgentSpec
	for _, h := range hosts {
		specs = append(specs, h.AgentSpec())
	}
	agents := testutil.StartAgents(t, tlsDir, specs)
	topoPath := filepath.Join(t.TempDir(), "topology.yaml")
	require.NoError(t, testutil.WriteTopology(topoPath, hosts, testutil.Addrs(agents)))
	topo, err := topology.Load(topoPath)
	require.NoError(t, err)
	st, err := store.Open(t.TempDir(), time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	f := testutil.TLSFiles(tlsDir, "controller")
	mat, err := pki.LoadMaterial(f.CA, f.Cert, f.Key)
	require.NoError(t, err)
	fl, err := fleet.New(mat, st, fleet.Options{Timeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(fl.Close)
	require.NoError(t, fl.SetAgents(topo.Agents()))

	m := newMetrics()
	rm := newRunMetrics(m.reg, st)
	r := runner.New(st, fl, runner.Options{Topology: topo, Poll: 20 * time.Millisecond, Observer: rm})
	operator := store.Actor{Name: "olivia", Role: pki.RoleOperator}
	noop := func(id, host string, expect map[string]any, attempts int) plan.Step {
		return plan.Step{ID: id, Host: host, Action: "agent.noop", Params: map[string]any{}, Timeout: 10 * time.Second,
			Retry:  plan.Retry{MaxAttempts: attempts, Backoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond},
			Expect: expect, Reason: "test step"}
	}
	create := func(groups ...plan.Group) string {
		run, err := st.CreateRun(store.NewRun{Plan: &plan.Plan{Kind: plan.FailoverPlanned, Pool: testutil.Pool, Groups: groups}, Actor: operator, Reason: "test"})
		require.NoError(t, err)
		return run.ID
	}
	const (
		kind  = "kind=failover-planned"
		noopA = "action=agent.noop"
	)

	// Run 1: a step that succeeds, then one whose output never meets its
	// expectation: retried once, failed, the run pauses; then cancelled.
	id := create(
		plan.Group{Name: "first", Steps: []plan.Step{noop("A1", hosts[0].Host, nil, 1)}},
		plan.Group{Name: "second", Steps: []plan.Step{noop("A2", hosts[2].Host, map[string]any{"never": true}, 2)}})
	require.Equal(t, 1.0, scrape(t, m.reg)["chatdr_controller_runs_in_progress"], "a pending run is in progress")
	err = r.Start(t.Context(), id)
	require.ErrorIs(t, err, runner.ErrPaused)
	got := onlyPrefix(scrape(t, m.reg), "chatdr_controller_")
	require.Equal(t, map[string]float64{
		"chatdr_controller_run_pauses_total{" + kind + "}":                               1,
		"chatdr_controller_runs_in_progress":                                             1,
		"chatdr_controller_step_attempts_total{" + noopA + "}":                           3,
		"chatdr_controller_steps_retried_total{" + noopA + "}":                           1,
		"chatdr_controller_step_duration_seconds_count{" + noopA + ",outcome=succeeded}": 1,
		"chatdr_controller_step_duration_seconds_count{" + noopA + ",outcome=failed}":    1,
		"chatdr_controller_step_duration_seconds_sum{" + noopA + ",outcome=succeeded}":   got["chatdr_controller_step_duration_seconds_sum{"+noopA+",outcome=succeeded}"],
		"chatdr_controller_step_duration_seconds_sum{" + noopA + ",outcome=failed}":      got["chatdr_controller_step_duration_seconds_sum{"+noopA+",outcome=failed}"],
		"chatdr_controller_fleet_status_seconds_count":                                   0,
		"chatdr_controller_fleet_status_seconds_sum":                                     0,
	}, got)
	require.Positive(t, got["chatdr_controller_step_duration_seconds_sum{"+noopA+",outcome=failed}"], "the failed step took two attempts and a backoff")

	// No step in flight: the store cancels the paused run at once, and
	// CancelRun tells the metrics (twice here: it counts once).
	run, err := st.FireRun(id, operator, engine.RunCancel, engine.RunInput{Now: time.Now().UTC(), Actor: operator.Name, Reason: "test"})
	require.NoError(t, err)
	require.Equal(t, engine.RunCancelled, run.Status.State)
	rm.RunStopped(run)
	rm.RunStopped(run)
	// Starting a finished run observes nothing more.
	require.NoError(t, r.Start(t.Context(), id))

	// Run 2: succeeds.
	id2 := create(plan.Group{Name: "only", Steps: []plan.Step{noop("B1", hosts[1].Host, nil, 1)}})
	require.NoError(t, r.Start(t.Context(), id2))

	got = onlyPrefix(scrape(t, m.reg), "chatdr_controller_")
	for k, want := range map[string]float64{
		"chatdr_controller_runs_total{" + kind + ",outcome=cancelled}":                   1,
		"chatdr_controller_runs_total{" + kind + ",outcome=succeeded}":                   1,
		"chatdr_controller_run_duration_seconds_count{" + kind + ",outcome=cancelled}":   1,
		"chatdr_controller_run_duration_seconds_count{" + kind + ",outcome=succeeded}":   1,
		"chatdr_controller_run_pauses_total{" + kind + "}":                               1,
		"chatdr_controller_runs_in_progress":                                             0,
		"chatdr_controller_step_attempts_total{" + noopA + "}":                           4,
		"chatdr_controller_steps_retried_total{" + noopA + "}":                           1,
		"chatdr_controller_step_duration_seconds_count{" + noopA + ",outcome=succeeded}": 2,
		"chatdr_controller_step_duration_seconds_count{" + noopA + ",outcome=failed}":    1,
	} {
		require.Equal(t, want, got[k], k)
	}
	require.Positive(t, got["chatdr_controller_run_duration_seconds_sum{"+kind+",outcome=succeeded}"])
	require.NotContains(t, got, "chatdr_controller_runs_total{"+kind+",outcome=failed}")
	_, err = st.FireRun(id2, operator, engine.RunAcknowledge, engine.RunInput{Now: time.Now().UTC(), Actor: operator.Name})
	require.NoError(t, err)

	// Run 3 waits for an approval while the runner drives it, and is
	// cancelled: the runner sees it end.
	wait := noop("W1", hosts[0].Host, nil, 1)
	wait.Approval = plan.Approval{Required: true, When: plan.ApproveAlways, Approvers: 1}
	id3 := create(plan.Group{Name: "only", Steps: []plan.Step{wait}})
	done := make(chan error, 1)
	go func() { done <- r.Start(t.Context(), id3) }()
	require.NoError(t, testutil.Eventually(10*time.Second, 10*time.Millisecond, func() error {
		run, err := st.GetRun(id3)
		if err == nil && run.Status.State != engine.RunWaitingApproval {
			err = fmt.Errorf("run %s is %s", id3, run.Status.State)
		}
		return err
	}))
	_, err = st.FireRun(id3, operator, engine.RunCancel, engine.RunInput{Now: time.Now().UTC(), Actor: operator.Name, Reason: "test"})
	require.NoError(t, err)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the runner did not stop after the cancel")
	}
	require.Equal(t, 2.0, scrape(t, m.reg)["chatdr_controller_runs_total{"+kind+",outcome=cancelled}"])

	// An invalid plan fails the run when it starts: observed as failed.
	id4 := create(plan.Group{Name: "only", Steps: []plan.Step{noop("C1", "nowhere.test", nil, 1)}})
	require.ErrorIs(t, r.Start(t.Context(), id4), runner.ErrFailed)
	got = scrape(t, m.reg)
	require.Equal(t, 1.0, got["chatdr_controller_runs_total{"+kind+",outcome=failed}"])
	require.Equal(t, 4.0, got["chatdr_controller_step_attempts_total{"+noopA+"}"], "no attempt for an invalid plan")
}

func TestMetrics_observeFleet(t *testing.T) {
	m := newMetrics()
	m.observeFleet([]fleet.Status{
		{Agent: topology.Agent{Host: "a.test", Site: "dc1"}, Reachable: true},
		{Agent: topology.Agent{Host: "b.test", Site: "dc2"}},
	})
	got := scrape(t, m.reg)
	require.Equal(t, 1.0, got["chatdr_agent_reachable{host=a.test,site=dc1}"])
	require.Equal(t, 0.0, got["chatdr_agent_reachable{host=b.test,site=dc2}"])
	require.Contains(t, got, "chatdr_agent_reachable{host=b.test,site=dc2}")
}
