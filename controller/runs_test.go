package controller_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chatdr/chatdr/internal/testutil"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

func requireCode(t *testing.T, err error, want codes.Code) string {
	t.Helper()
	require.Error(t, err)
	st, ok := status.FromError(err)
	require.True(t, ok, "not a status: %v", err)
	require.Equal(t, want, st.Code(), st.Message())
	return st.Message()
}

func plannedFailover() *controllerv1.StartRunRequest {
	return &controllerv1.StartRunRequest{Pool: testutil.Pool, Kind: controllerv1.PlanKind_PLAN_KIND_FAILOVER_PLANNED, Reason: "test"}
}

// waitRun polls GetRun until cond holds, for at most 30 s.
func waitRun(t *testing.T, c controllerv1.ControllerServiceClient, id, what string, cond func(*controllerv1.Run) bool) *controllerv1.Run {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.GetRun(callCtx(t), &controllerv1.GetRunRequest{RunId: id})
		require.NoError(t, err)
		if cond(resp.GetRun()) {
			return resp.GetRun()
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s: no %s within 30s; last: %v", id, what, resp.GetRun())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestController_StartRun_refusals(t *testing.T) {
	e := newEnv(t, 4, nil)
	viewer, operator, approver := e.client(t, "viewer"), e.client(t, "operator"), e.client(t, "approver")

	_, err := viewer.StartRun(callCtx(t), plannedFailover())
	requireCode(t, err, codes.PermissionDenied)
	_, err = approver.StartRun(callCtx(t), plannedFailover())
	requireCode(t, err, codes.PermissionDenied)

	req := plannedFailover()
	req.Pool = "nope.example.test"
	msg := requireCode(t, err2(operator.StartRun(callCtx(t), req)), codes.NotFound)
	require.Contains(t, msg, "nope.example.test")

	req = plannedFailover()
	req.Kind = controllerv1.PlanKind_PLAN_KIND_UNSPECIFIED
	requireCode(t, err2(operator.StartRun(callCtx(t), req)), codes.InvalidArgument)

	list, err := viewer.ListRuns(callCtx(t), &controllerv1.ListRunsRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetRuns(), "a refused start must create no run")

	first, err := operator.StartRun(callCtx(t), plannedFailover())
	require.NoError(t, err)
	id := first.GetRunId()
	require.NotEmpty(t, id)
	require.Equal(t, "operator", first.GetRun().GetStartedBy())

	msg = requireCode(t, err2(operator.StartRun(callCtx(t), plannedFailover())), codes.FailedPrecondition)
	require.Contains(t, msg, id)
	require.Contains(t, msg, "chatdr run cancel "+id)

	got, err := viewer.GetRun(callCtx(t), &controllerv1.GetRunRequest{RunId: id})
	require.NoError(t, err)
	require.NotEmpty(t, got.GetRun().GetSteps())
	requireCode(t, err2(viewer.GetRun(callCtx(t), &controllerv1.GetRunRequest{RunId: "run-999"})), codes.NotFound)

	// Only operators cancel; only approvers approve.
	requireCode(t, err2(viewer.CancelRun(callCtx(t), &controllerv1.CancelRunRequest{RunId: id})), codes.PermissionDenied)
	requireCode(t, err2(operator.ApproveStep(callCtx(t), &controllerv1.ApproveStepRequest{RunId: id, Reason: "x"})), codes.PermissionDenied)

	_, err = operator.CancelRun(callCtx(t), &controllerv1.CancelRunRequest{RunId: id, Reason: "test over"})
	require.NoError(t, err)
	run := waitRun(t, viewer, id, "cancelled state", func(r *controllerv1.Run) bool { return r.GetState() == "cancelled" })
	require.Equal(t, "operator", run.GetCancelledBy())

	// A finished run takes no cancel or resume; an unnamed run is bad input.
	requireCode(t, err2(operator.CancelRun(callCtx(t), &controllerv1.CancelRunRequest{RunId: id})), codes.FailedPrecondition)
	requireCode(t, err2(operator.ResumeRun(callCtx(t), &controllerv1.ResumeRunRequest{RunId: id})), codes.FailedPrecondition)
	requireCode(t, err2(operator.ResumeRun(callCtx(t), &controllerv1.ResumeRunRequest{})), codes.InvalidArgument)
	requireCode(t, err2(approver.ApproveStep(callCtx(t), &controllerv1.ApproveStepRequest{RunId: id, Reason: "x"})), codes.FailedPrecondition)
	requireCode(t, err2(approver.ApproveStep(callCtx(t), &controllerv1.ApproveStepRequest{RunId: id})), codes.InvalidArgument)

	// A cancelled run unlocks the pool: a new run may start.
	second, err := operator.StartRun(callCtx(t), plannedFailover())
	require.NoError(t, err)
	require.NotEqual(t, id, second.GetRunId())
	_, err = operator.CancelRun(callCtx(t), &controllerv1.CancelRunRequest{RunId: second.GetRunId()})
	require.NoError(t, err)

	audit, err := viewer.ListAudit(callCtx(t), &controllerv1.ListAuditRequest{RunId: id, Action: "run.created"})
	require.NoError(t, err)
	require.Len(t, audit.GetEntries(), 1)
	require.Equal(t, "operator", audit.GetEntries()[0].GetActor())
	v, err := viewer.VerifyAudit(callCtx(t), &controllerv1.VerifyAuditRequest{})
	require.NoError(t, err)
	require.True(t, v.GetOk())
	require.Positive(t, v.GetHeadSeq())
}

// err2 keeps the error of a call's two results.
func err2[T any](_ T, err error) error { return err }
