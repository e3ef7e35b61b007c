package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

// fakeRuns is a ControllerService client whose GetRun answers from a
// script, one reply per call; the last reply repeats.
type fakeRuns struct {
	controllerv1.ControllerServiceClient

	mu      sync.Mutex
	replies []reply
	calls   int
}

type reply struct {
	run *controllerv1.Run
	err error
}

func (f *fakeRuns) GetRun(_ context.Context, in *controllerv1.GetRunRequest, _ ...grpc.CallOption) (*controllerv1.GetRunResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.replies[min(f.calls, len(f.replies)-1)]
	f.calls++
	if r.err != nil {
		return nil, r.err
	}
	if in.GetRunId() != r.run.GetId() {
		return nil, status.Errorf(codes.NotFound, "run %s not found", in.GetRunId())
	}
	return &controllerv1.GetRunResponse{Run: proto.Clone(r.run).(*controllerv1.Run)}, nil
}

var wt0 = time.Date(2026, 11, 29, 1, 0, 0, 0, time.UTC)

func wat(s float64) *timestamppb.Timestamp {
	return timestamppb.New(wt0.Add(time.Duration(s * float64(time.Second))))
}

// testWatcher returns a watcher of run-7 polling f without delay, with a
// clock that moves one second per reading.
func testWatcher(output string, f *fakeRuns) (*watcher, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	g := &globals{controller: "ctl.test:7443", output: output, stdout: &out, stderr: &errb}
	w := g.newWatcher(f, "run-7")
	w.poll = time.Millisecond
	n := 0
	w.now = func() time.Time { n++; return wt0.Add(time.Duration(n) * time.Second) }
	return w, &out, &errb
}

// runAt builds a run in state with steps copy, restore, recover and start.
func runAt(state string, steps ...*controllerv1.RunStep) *controllerv1.Run {
	return &controllerv1.Run{Id: "run-7", Pool: "pchat.test", Kind: controllerv1.PlanKind_PLAN_KIND_FAILOVER_DISASTER,
		State: state, Started: wat(0), Steps: steps,
		Report: &controllerv1.RunReport{Elapsed: durationpb.New(10 * time.Second)}}
}

func step(id, state string, opts ...func(*controllerv1.RunStep)) *controllerv1.RunStep {
	s := &controllerv1.RunStep{Id: id, Host: "sql1.dc2.test", Action: "mssql.x", State: state, MaxAttempts: 3}
	if state != "pending" && state != "waiting_approval" {
		s.Started, s.Attempts = wat(1), 1
	}
	switch state {
	case "succeeded", "failed", "skipped":
		s.Ended = wat(5)
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func progress(done, total int64) func(*controllerv1.RunStep) {
	return func(s *controllerv1.RunStep) {
		s.Progress = &controllerv1.StepProgress{Stage: "copy mgc_1.trn", Done: done, Total: total, Unit: "bytes", Time: wat(2)}
	}
}

// finalReport is the report of the succeeded run.
func finalReport() *controllerv1.RunReport {
	return &controllerv1.RunReport{Elapsed: durationpb.New(160 * time.Second), WaitingApproval: durationpb.New(90 * time.Second),
		Outage: durationpb.New(150 * time.Second), DataLossKnown: true, DataLoss: durationpb.New(45 * time.Second),
		RestoredTo: wat(955), NewestBackup: wat(1000), DataLossNotes: []string{"up to 45s of changes are lost"},
		Approvals: []*controllerv1.ReportApproval{{StepId: "F4b-recover-mgc",
			Approval: &controllerv1.Approval{Approver: "alice", Role: "approver", Reason: "RPO accepted", Time: wat(100)}}},
		StepsRetried: 1}
}

// successScript is a run that copies with progress, survives two
// Unavailable answers (a controller restart) and succeeds.
func successScript() *fakeRuns {
	unavailable := status.Error(codes.Unavailable, "connection refused")
	done := runAt("succeeded", step("F2-copy-logs-mgc", "succeeded", progress(27e6, 27e6)), step("F3-restore-logs-mgc", "succeeded"),
		step("F4b-recover-mgc", "succeeded"), step("F7-start-chat-pc5", "succeeded"))
	done.Ended, done.Report = wat(160), finalReport()
	return &fakeRuns{replies: []reply{
		{run: runAt("running", step("F2-copy-logs-mgc", "running", progress(0, 27e6)), step("F3-restore-logs-mgc", "pending"),
			step("F4b-recover-mgc", "pending"), step("F7-start-chat-pc5", "pending"))},
		{run: runAt("running", step("F2-copy-logs-mgc", "running", progress(12.3e6, 27e6)), step("F3-restore-logs-mgc", "pending"),
			step("F4b-recover-mgc", "pending"), step("F7-start-chat-pc5", "pending"))},
		{run: runAt("running", step("F2-copy-logs-mgc", "running", progress(13e6, 27e6)), step("F3-restore-logs-mgc", "pending"),
			step("F4b-recover-mgc", "pending"), step("F7-start-chat-pc5", "pending"))},
		{err: unavailable},
		{err: unavailable},
		{run: done},
	}}
}

func TestWatcher_watch_plainSucceeded(t *testing.T) {
	w, out, errb := testWatcher("table", successScript())
	require.Equal(t, modePlain, w.mode, "a buffer is not a terminal")
	require.NoError(t, w.watch(t.Context()))
	got := out.String()

	require.Contains(t, got, "run run-7: running\n")
	require.Contains(t, got, "running          F2-copy-logs-mgc")
	require.Contains(t, got, "[..........]   0% 0.0/27.0 MB  copy mgc_1.trn")
	require.Contains(t, got, "[####......]  46% 12.3/27.0 MB  copy mgc_1.trn")
	require.NotContains(t, got, "48%", "a move within the same 10% is not printed")
	require.Contains(t, got, "succeeded        F2-copy-logs-mgc")
	require.Contains(t, got, "succeeded        F7-start-chat-pc5")
	require.NotContains(t, got, "  pending  ")
	require.Contains(t, got, "run run-7: succeeded\n")
	// The report.
	require.Contains(t, got, "Report of run run-7 (succeeded)")
	require.Regexp(t, `RTO \(elapsed\):\s+2m40s, of which 1m30s waiting for approvals`, got)
	require.Regexp(t, `Outage:\s+2m30s`, got)
	require.Regexp(t, `Data loss \(RPO\):\s+45s \(restored to 2026-11-29T01:15:55Z, newest backup 2026-11-29T01:16:40Z\)`, got)
	require.Contains(t, got, "- up to 45s of changes are lost")
	require.Regexp(t, `Steps retried:\s+1`, got)
	require.Regexp(t, `2026-11-29T01:01:40Z\s+alice \(approver\)\s+F4b-recover-mgc\s+RPO accepted`, got)
	require.Regexp(t, `F2-copy-logs-mgc\s+\+1s\s+\+5s\s+4s\s+succeeded`, got)
	// Order: the run's end after its steps, the report last.
	require.Less(t, strings.Index(got, "succeeded        F7-start-chat-pc5"), strings.Index(got, "run run-7: succeeded"))
	require.Less(t, strings.Index(got, "run run-7: succeeded"), strings.Index(got, "Report of run"))

	// The restart: one notice when it goes, one when it is back.
	require.Equal(t, 1, strings.Count(errb.String(), "unreachable (connection refused); retrying"), errb.String())
	require.Contains(t, errb.String(), "controller ctl.test:7443 answers again")
}

func TestWatcher_watch_jsonEvents(t *testing.T) {
	w, out, _ := testWatcher("json", successScript())
	require.Equal(t, modeJSON, w.mode)
	require.NoError(t, w.watch(t.Context()))

	var types []string
	var events []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		var ev map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &ev), "each line is one JSON object: %q", line)
		require.Equal(t, "run-7", ev["run"])
		_, err := time.Parse(time.RFC3339Nano, ev["time"].(string))
		require.NoError(t, err)
		types = append(types, ev["type"].(string))
		events = append(events, ev)
	}
	require.Equal(t, []string{"run", "step", "progress", "progress", "progress", "notice", "notice",
		"step", "progress", "step", "step", "step", "run", "report"}, types)

	require.Equal(t, "running", events[0]["state"])
	st := events[1]
	require.Equal(t, "F2-copy-logs-mgc", st["step"])
	require.Equal(t, "running", st["state"])
	require.Equal(t, "sql1.dc2.test", st["host"])
	require.Equal(t, "mssql.x", st["action"])
	require.EqualValues(t, 1, st["attempts"])
	require.EqualValues(t, 3, st["max_attempts"])
	require.Contains(t, st, "elapsed_ms")
	p := events[3]
	require.EqualValues(t, 12.3e6, p["done"])
	require.EqualValues(t, 27e6, p["total"])
	require.Equal(t, "bytes", p["unit"])
	require.Equal(t, "copy mgc_1.trn", p["stage"])
	require.EqualValues(t, 45.6, p["percent"])
	require.Contains(t, events[5]["message"], "unreachable")
	require.EqualValues(t, 100, events[8]["percent"])
	require.Equal(t, "succeeded", events[12]["state"])
	rep := events[13]
	require.Equal(t, "succeeded", rep["state"])
	r := rep["report"].(map[string]any)
	require.Equal(t, "160s", r["elapsed"])
	require.Equal(t, "45s", r["data_loss"])
	require.Equal(t, true, r["data_loss_known"])
	require.EqualValues(t, 1, r["steps_retried"])
	require.Equal(t, "alice", r["approvals"].([]any)[0].(map[string]any)["approval"].(map[string]any)["approver"])
}

func TestWatcher_watch_pausedExit1(t *testing.T) {
	errStep := func(s *controllerv1.RunStep) {
		s.Error = &controllerv1.RunError{Code: "guard_failed", Message: "mgc is writable", Host: "sql1.dc1.test", Hint: "fence it"}
	}
	runErr := &controllerv1.RunError{Code: "guard_failed", Message: "mgc is writable", Host: "sql1.dc1.test", Hint: "fence it"}
	paused := func(other string) *controllerv1.Run {
		r := runAt("paused", step("F2-copy-logs-mgc", "failed", errStep), step("F3-restore-logs-mgc", other))
		r.Error = runErr
		return r
	}
	f := &fakeRuns{replies: []reply{
		{run: runAt("running", step("F2-copy-logs-mgc", "running"), step("F3-restore-logs-mgc", "running"))},
		// Paused with a step still in flight: the watcher waits for it.
		{run: paused("running")},
		{run: paused("succeeded")},
	}}
	w, out, _ := testWatcher("table", f)
	err := w.watch(t.Context())
	var ee *ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, ExitFailed, ee.Code)
	require.Contains(t, err.Error(), "run run-7 paused: guard_failed: mgc is writable (host sql1.dc1.test); fence it")
	require.Contains(t, err.Error(), "'chatdr run resume run-7'")
	require.Equal(t, 3, f.calls)
	got := out.String()
	require.Contains(t, got, "failed           F2-copy-logs-mgc")
	require.Contains(t, got, "guard_failed: mgc is writable")
	require.Equal(t, 1, strings.Count(got, "run run-7: paused"))
	require.Less(t, strings.Index(got, "succeeded        F3-restore-logs-mgc"), strings.Index(got, "run run-7: paused"),
		"the run's pause is reported after the step that was in flight")
	require.Contains(t, got, "Report of run run-7 (paused)")
}

func TestWatcher_watch_waitingApprovalExit4(t *testing.T) {
	waiting := func() *controllerv1.Run {
		r := runAt("waiting_approval", step("F3-restore-logs-mgc", "succeeded"), step("F4b-recover-mgc", "waiting_approval", func(s *controllerv1.RunStep) {
			s.RequiredApprovers = 2
			s.Approvals = []*controllerv1.Approval{{Approver: "alice", Role: "approver", Reason: "ok", Time: wat(50)}}
		}))
		r.Report.DataLossKnown, r.Report.DataLoss = true, durationpb.New(45*time.Second)
		r.Report.RestoredTo, r.Report.NewestBackup = wat(955), wat(1000)
		return r
	}
	for _, output := range []string{"table", "json"} {
		t.Run(output, func(t *testing.T) {
			w, out, _ := testWatcher(output, &fakeRuns{replies: []reply{{run: waiting()}}})
			err := w.watch(t.Context())
			var ee *ExitError
			require.ErrorAs(t, err, &ee)
			require.Equal(t, ExitWaitingApproval, ee.Code)
			require.Contains(t, err.Error(), "run run-7 waits for approval of step F4b-recover-mgc")
			got := out.String()
			if output == "table" {
				require.Contains(t, got, "Run run-7 waits for approval of step F4b-recover-mgc (mssql.x on sql1.dc2.test): 1 of 2 approvals")
				require.Contains(t, got, "data-loss window (RPO): 45s (restored to 2026-11-29T01:15:55Z, newest backup 2026-11-29T01:16:40Z)")
				require.Contains(t, got, "approved by alice (approver)")
				require.Contains(t, got, "chatdr run approve run-7 --step F4b-recover-mgc --reason '...'")
				return
			}
			lines := strings.Split(strings.TrimSpace(got), "\n")
			var last map[string]any
			require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &last))
			require.Equal(t, "approval", last["type"])
			require.Equal(t, "F4b-recover-mgc", last["step"])
			require.EqualValues(t, 2, last["required_approvers"])
			require.EqualValues(t, 1, last["approvals"])
			require.Equal(t, true, last["data_loss_known"])
			require.EqualValues(t, 45000, last["data_loss_ms"])
			require.Equal(t, "2026-11-29T01:15:55Z", last["restored_to"])
			require.Equal(t, "chatdr run approve run-7 --step F4b-recover-mgc --reason '...'", last["command"])
		})
	}
}

func TestWatcher_watch_errors(t *testing.T) {
	t.Run("unreachable beyond the patience: exit 3", func(t *testing.T) {
		f := &fakeRuns{replies: []reply{{err: status.Error(codes.Unavailable, "connection refused")}}}
		w, _, errb := testWatcher("table", f)
		w.patience = 5 * time.Second
		err := w.watch(t.Context())
		var ee *ExitError
		require.ErrorAs(t, err, &ee)
		require.Equal(t, ExitUnreachable, ee.Code)
		require.Contains(t, err.Error(), "unreachable for")
		require.Contains(t, err.Error(), "'chatdr run watch run-7'")
		require.Equal(t, 1, strings.Count(errb.String(), "retrying for up to 5s"))
		require.Greater(t, f.calls, 2)
	})
	t.Run("unknown run: exit 2", func(t *testing.T) {
		w, _, _ := testWatcher("table", &fakeRuns{replies: []reply{{run: runAt("running")}}})
		w.id = "run-42"
		var ee *ExitError
		require.ErrorAs(t, w.watch(t.Context()), &ee)
		require.Equal(t, ExitUsage, ee.Code)
	})
	t.Run("refused: exit 3 at once", func(t *testing.T) {
		f := &fakeRuns{replies: []reply{{err: status.Error(codes.PermissionDenied, "role nobody")}}}
		w, _, _ := testWatcher("table", f)
		var ee *ExitError
		require.ErrorAs(t, w.watch(t.Context()), &ee)
		require.Equal(t, ExitUnreachable, ee.Code)
		require.Equal(t, 1, f.calls)
	})
	t.Run("cancelled context stops the watch", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		w, _, _ := testWatcher("table", &fakeRuns{replies: []reply{{err: context.Canceled}}})
		err := w.watch(ctx)
		require.Error(t, err)
		require.True(t, errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "stopped watching"), err.Error())
	})
}

func TestWatcher_draw_redrawsInPlace(t *testing.T) {
	w, out, _ := testWatcher("table", &fakeRuns{})
	w.mode = modeTTY
	later := func(id string, g int32) *controllerv1.RunStep {
		s := step(id, "pending")
		s.GroupIndex = g
		return s
	}
	run := runAt("running", step("F2-copy-logs-mgc", "running", progress(12.3e6, 27e6)), later("F3-restore-logs-mgc", 1),
		later("F4a-kill-sessions-mgc", 2), later("F4b-recover-mgc", 3))
	w.draw(wt0.Add(3*time.Second), run)
	first := out.String()
	require.NotContains(t, first, "\x1b[", "nothing to erase the first time")
	require.Contains(t, first, "Run run-7: failover-disaster of pchat.test, running, 10s")
	require.Regexp(t, `F2-copy-logs-mgc\s+running\s+sql1.dc2.test\s+2s\s+1/3\s+\[####\.\.\.\.\.\.\]  46% 12.3/27.0 MB`, first)
	require.Regexp(t, `F3-restore-logs-mgc\s+pending`, first, "the next group's pending steps are shown")
	require.NotContains(t, first, "F4b-recover-mgc")
	require.Contains(t, first, "... and 2 more pending steps")
	require.Equal(t, 5, w.drawn) // header, column titles, two steps, the rest
	out.Reset()
	w.down, w.downMsg = wt0, "connection refused"
	w.draw(wt0.Add(4*time.Second), run)
	require.True(t, strings.HasPrefix(out.String(), "\x1b[5A\r\x1b[J"), "%q", out.String())
	require.Contains(t, out.String(), "controller unreachable since 01:00:00 (connection refused); retrying")
	require.Equal(t, 6, w.drawn)
}

func TestProgressText(t *testing.T) {
	for _, tc := range []struct {
		p    *controllerv1.StepProgress
		want string
	}{
		{&controllerv1.StepProgress{Done: 12.3e6, Total: 27e6, Unit: "bytes"}, "[####......]  46% 12.3/27.0 MB"},
		{&controllerv1.StepProgress{Done: 3, Total: 3, Unit: "files"}, "[##########] 100% 3/3 files"},
		{&controllerv1.StepProgress{Done: 40, Total: 100, Unit: "percent"}, "[####......]  40%"},
		{&controllerv1.StepProgress{Done: 5, Unit: "files"}, "5 files"},
		{&controllerv1.StepProgress{Done: 9, Total: 3, Unit: "files"}, "[##########] 100% 9/3 files"},
	} {
		t.Run(fmt.Sprint(tc.want), func(t *testing.T) {
			require.Equal(t, tc.want, progressText(tc.p))
		})
	}
}

func TestWatcher_watch_ttySucceeded(t *testing.T) {
	w, out, errb := testWatcher("table", successScript())
	w.mode = modeTTY
	require.NoError(t, w.watch(t.Context()))
	got := out.String()
	// Four polls answered: four frames, each after the first erasing the one before.
	require.Equal(t, 4, strings.Count(got, "Run run-7: failover-disaster of pchat.test"))
	require.Equal(t, 3, strings.Count(got, "\x1b[J"))
	require.Contains(t, got, "[####......]  46% 12.3/27.0 MB")
	require.Contains(t, got, "Report of run run-7 (succeeded)")
	require.NotContains(t, got, "run run-7: running", "no plain lines on a terminal")
	require.Empty(t, errb.String(), "notices are in the frame, not on the terminal's stderr")
}
