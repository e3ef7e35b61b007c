package controller

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/store"
	"github.com/chatdr/chatdr/internal/pki"
)

var t0 = time.Date(2026, 11, 29, 1, 0, 0, 0, time.UTC)

// at is t0 plus s seconds.
func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// rstep is a step of a test run: its plan step and its recorded status.
type rstep struct {
	group int
	plan  plan.Step
	st    engine.StepStatus
}

func ok(id string, from, to float64) rstep {
	return rstep{plan: plan.Step{ID: id, Action: "x.y"}, st: engine.StepStatus{State: engine.StepSucceeded, Started: at(from), Ended: at(to),
		Attempts: []engine.Attempt{{N: 1, Started: at(from), Ended: at(to), Outcome: "succeeded"}}}}
}

func (s rstep) in(g int) rstep { s.group = g; return s }

func (s rstep) output(m map[string]any) rstep {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	s.st.Output = b
	return s
}

// testRun builds a stored run of kind from steps (their groups in order).
func testRun(t *testing.T, kind plan.Kind, state engine.RunState, started, ended time.Time, steps ...rstep) *store.Run {
	t.Helper()
	p := plan.Plan{Kind: kind, Pool: "pchat.test"}
	r := &store.Run{ID: "run-1", Pool: p.Pool, Kind: kind, Created: started,
		Status: engine.RunStatus{State: state, Started: started, Ended: ended}}
	for _, s := range steps {
		for len(p.Groups) <= s.group {
			p.Groups = append(p.Groups, plan.Group{Name: "g"})
		}
		p.Groups[s.group].Steps = append(p.Groups[s.group].Steps, s.plan)
		r.Steps = append(r.Steps, store.StepRecord{ID: s.plan.ID, Group: "g", GroupIndex: s.group, Host: "h", Action: s.plan.Action, Status: s.st})
	}
	b, err := json.Marshal(p)
	require.NoError(t, err)
	r.Plan = b
	return r
}

func approval(who string, s float64) engine.Approval {
	return engine.Approval{Approver: who, Role: pki.RoleApprover, Reason: "ok " + who, Time: at(s)}
}

// disasterSteps is a disaster failover that went through: fence, copy
// (retried once), restore to 45s before the newest backup, an approval by
// two people, then the start of the new site's services.
func disasterSteps(recover rstep) []rstep {
	skipped := rstep{plan: plan.Step{ID: "F0a-stop-compliance-pc1"}, st: engine.StepStatus{State: engine.StepSkipped, Ended: at(3)}}
	cp := ok("F2-copy-logs-mgc", 5, 20).output(map[string]any{"newest_backup_time": at(1000).Format(time.RFC3339Nano), "source_readable": true})
	cp.st.Attempts = append([]engine.Attempt{{N: 1, Outcome: "retryable"}}, cp.st.Attempts...)
	return []rstep{
		ok("F0a-clear-active-servers", 0, 2).in(0),
		ok("F0a-stop-chat-pc1", 2.5, 5).in(1), skipped.in(1),
		cp.in(2),
		ok("F3-restore-logs-mgc", 20, 40).output(map[string]any{"reached_backup_time": at(955).Format(time.RFC3339Nano), "complete": true}).in(3),
		recover.in(4),
		ok("F7-start-chat-pc5", 140, 150).in(5), ok("F7-start-compliance-pc5", 140, 155).in(5),
	}
}

func recoverStep(st engine.StepStatus) rstep {
	return rstep{plan: plan.Step{ID: "F4b-recover-mgc", Action: "mssql.db.recover",
		Approval:     plan.Approval{Required: true, When: plan.ApproveOnDataLoss, Approvers: 2},
		DataLossFrom: []string{"F2-copy-logs-mgc", "F3-restore-logs-mgc"}}, st: st}
}

func TestRunReport_cases(t *testing.T) {
	approved := recoverStep(engine.StepStatus{State: engine.StepSucceeded, RequiredApprovers: 2, Approved: true,
		Approvals: []engine.Approval{approval("bob", 130), approval("alice", 100)},
		Started:   at(130), Ended: at(140), Attempts: []engine.Attempt{{N: 1}}})
	waiting := recoverStep(engine.StepStatus{State: engine.StepWaitingApproval, RequiredApprovers: 2,
		Approvals: []engine.Approval{approval("alice", 70)}})

	tests := []struct {
		name string
		run  func(t *testing.T) *store.Run
		now  time.Time
		want func(t *testing.T, rep report)
	}{
		{
			name: "succeeded disaster failover",
			run: func(t *testing.T) *store.Run {
				return testRun(t, plan.FailoverDisaster, engine.RunSucceeded, at(0), at(160), disasterSteps(approved)...)
			},
			now: at(9999),
			want: func(t *testing.T, rep report) {
				require.Equal(t, 160*time.Second, rep.Elapsed)
				// From the end of the restore (the group before) to bob's approval.
				require.Equal(t, 90*time.Second, rep.WaitingApproval)
				// From the start of the first stop step to the end of the last start.
				require.Equal(t, 152500*time.Millisecond, rep.Outage)
				require.True(t, rep.DataLoss.Known)
				require.Equal(t, 45*time.Second, rep.DataLoss.Window)
				require.Equal(t, at(955), rep.DataLoss.RestoredTo)
				require.Equal(t, at(1000), rep.DataLoss.NewestBackup)
				require.Len(t, rep.DataLossNotes, 1)
				require.Contains(t, rep.DataLossNotes[0], "up to 45s of changes")
				require.Len(t, rep.Approvals, 2)
				require.Equal(t, "alice", rep.Approvals[0].Approver)
				require.Equal(t, "F4b-recover-mgc", rep.Approvals[0].StepID)
				require.Equal(t, "bob", rep.Approvals[1].Approver)
				require.Equal(t, 1, rep.StepsRetried)
			},
		},
		{
			name: "running, waiting for the second approver",
			run: func(t *testing.T) *store.Run {
				steps := disasterSteps(waiting)
				steps[len(steps)-1].st = engine.StepStatus{State: engine.StepPending}
				steps[len(steps)-2].st = engine.StepStatus{State: engine.StepPending}
				return testRun(t, plan.FailoverDisaster, engine.RunWaitingApproval, at(0), time.Time{}, steps...)
			},
			now: at(100),
			want: func(t *testing.T, rep report) {
				require.Equal(t, 100*time.Second, rep.Elapsed)
				require.Equal(t, 60*time.Second, rep.WaitingApproval)
				require.Zero(t, rep.Outage, "the services are not started yet")
				require.True(t, rep.DataLoss.Known)
				require.Len(t, rep.Approvals, 1)
			},
		},
		{
			name: "restore incomplete: window unknown",
			run: func(t *testing.T) *store.Run {
				steps := disasterSteps(approved)
				steps[4] = steps[4].output(map[string]any{"reached_backup_time": at(900).Format(time.RFC3339Nano), "complete": false})
				return testRun(t, plan.FailoverDisaster, engine.RunSucceeded, at(0), at(160), steps...)
			},
			now: at(9999),
			want: func(t *testing.T, rep report) {
				require.False(t, rep.DataLoss.Known)
				require.Contains(t, rep.DataLossNotes, "step F3-restore-logs-mgc did not complete the restore")
			},
		},
		{
			name: "restore not reached yet",
			run: func(t *testing.T) *store.Run {
				steps := disasterSteps(approved)[:3]
				return testRun(t, plan.FailoverDisaster, engine.RunRunning, at(0), time.Time{}, append(steps, recoverStep(engine.StepStatus{State: engine.StepPending}).in(3))...)
			},
			now: at(10),
			want: func(t *testing.T, rep report) {
				require.Equal(t, 10*time.Second, rep.Elapsed)
				require.Zero(t, rep.WaitingApproval)
				require.False(t, rep.DataLoss.Known)
				require.Contains(t, rep.DataLossNotes, "step F2-copy-logs-mgc has no output")
			},
		},
		{
			name: "failback has no data-loss sources",
			run: func(t *testing.T) *store.Run {
				return testRun(t, plan.Failback, engine.RunSucceeded, at(0), at(60),
					ok("B1-stop-chat-pc5", 1, 2), ok("B3-full-backup-mgc", 2, 30).in(1), ok("B6-start-chat-pc1", 40, 50).in(2))
			},
			now: at(9999),
			want: func(t *testing.T, rep report) {
				require.Equal(t, 49*time.Second, rep.Outage)
				require.False(t, rep.DataLoss.Known)
				require.Equal(t, []string{"the failback plan has no step that reports a data-loss window"}, rep.DataLossNotes)
				require.Zero(t, rep.StepsRetried)
			},
		},
		{
			name: "pending run",
			run: func(t *testing.T) *store.Run {
				return testRun(t, plan.Failback, engine.RunPending, time.Time{}, time.Time{}, rstep{plan: plan.Step{ID: "B1-stop-chat-pc5"}})
			},
			now: at(10),
			want: func(t *testing.T, rep report) {
				require.Zero(t, rep.Elapsed)
				require.Zero(t, rep.Outage)
				require.Zero(t, rep.WaitingApproval)
			},
		},
		{
			name: "steps waiting at the same time count once",
			run: func(t *testing.T) *store.Run {
				a := rstep{plan: plan.Step{ID: "A"}, st: engine.StepStatus{State: engine.StepSucceeded, Approved: true, RequiredApprovers: 1,
					Approvals: []engine.Approval{approval("alice", 70)}, Started: at(70), Ended: at(71)}}
				b := rstep{plan: plan.Step{ID: "B"}, st: engine.StepStatus{State: engine.StepCancelled, RequiredApprovers: 2,
					Approvals: []engine.Approval{approval("bob", 80)}, Ended: at(100)}}
				return testRun(t, plan.FailoverPlanned, engine.RunCancelled, at(0), at(100), ok("X", 0, 40), a.in(1), b.in(1))
			},
			now: at(9999),
			want: func(t *testing.T, rep report) {
				require.Equal(t, 60*time.Second, rep.WaitingApproval)
				require.Equal(t, 100*time.Second, rep.Elapsed)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.want(t, runReport(tc.run(t), tc.now))
		})
	}
}

func TestRunDetailToProto_progressAndReport(t *testing.T) {
	run := testRun(t, plan.FailoverDisaster, engine.RunSucceeded, at(0), at(160), disasterSteps(recoverStep(engine.StepStatus{
		State: engine.StepSucceeded, RequiredApprovers: 1, Approved: true, Approvals: []engine.Approval{approval("alice", 100)}}))...)
	got := runDetailToProto(run, map[string]stepProgress{
		"F3-restore-logs-mgc": {Stage: "restore mgc_1.trn", Done: 12, Total: 27, Unit: "bytes", Time: at(30)},
		"no-such-step":        {Stage: "ignored"},
	}, at(9999))
	var restore, copyStep int
	for i, s := range got.GetSteps() {
		switch s.GetId() {
		case "F3-restore-logs-mgc":
			restore = i
		case "F2-copy-logs-mgc":
			copyStep = i
		}
	}
	p := got.GetSteps()[restore].GetProgress()
	require.NotNil(t, p)
	require.Equal(t, "restore mgc_1.trn", p.GetStage())
	require.Equal(t, int64(12), p.GetDone())
	require.Equal(t, int64(27), p.GetTotal())
	require.Equal(t, "bytes", p.GetUnit())
	require.Equal(t, at(30), p.GetTime().AsTime())
	require.Nil(t, got.GetSteps()[copyStep].GetProgress())

	rep := got.GetReport()
	require.NotNil(t, rep)
	require.Equal(t, 160*time.Second, rep.GetElapsed().AsDuration())
	require.Equal(t, 60*time.Second, rep.GetWaitingApproval().AsDuration())
	require.True(t, rep.GetDataLossKnown())
	require.Equal(t, 45*time.Second, rep.GetDataLoss().AsDuration())
	require.Equal(t, at(955), rep.GetRestoredTo().AsTime())
	require.Equal(t, at(1000), rep.GetNewestBackup().AsTime())
	require.Len(t, rep.GetApprovals(), 1)
	require.Equal(t, "F4b-recover-mgc", rep.GetApprovals()[0].GetStepId())
	require.Equal(t, "alice", rep.GetApprovals()[0].GetApproval().GetApprover())
	require.Equal(t, "approver", rep.GetApprovals()[0].GetApproval().GetRole())
	require.Equal(t, int32(1), rep.GetStepsRetried())
}
