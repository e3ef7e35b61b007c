package controller_test

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/internal/testutil"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

// TestController_RunDrill_runsOnTheBackupHost: an operator's drill runs the
// drill action on the backup SQL host only, with the probe's data-loss
// window; its report is stored, listed and audited.
func TestController_RunDrill_runsOnTheBackupHost(t *testing.T) {
	e := newFakeEnv(t, nil)
	backup := e.hosts[3]
	require.Contains(t, backup.Roles, topology.RoleSQLBackup)
	e.agents[3].SetFact("mssql.log_shipping", map[string]any{"databases": []any{
		map[string]any{"database": "mgc", "role": "secondary", "estimated_data_loss_seconds": 42.0}}})

	resp, err := e.client(t, "operator").RunDrill(callCtx(t), &controllerv1.RunDrillRequest{Pool: testutil.Pool, Wait: true})
	require.NoError(t, err)
	r := resp.GetReport()
	require.Equal(t, "drill-1", r.GetId())
	require.Equal(t, controllerv1.DrillState_DRILL_STATE_SUCCEEDED, r.GetState(), r.GetError())
	require.Equal(t, backup.Host, r.GetHost())
	require.Equal(t, "mgc", r.GetDatabase())
	require.Equal(t, "operator", r.GetStartedBy())
	require.Equal(t, int64(42), int64(r.GetProbeDataLoss().AsDuration().Seconds()))
	require.NotNil(t, r.GetFinishedAt())
	require.Equal(t, []string{backup.Host + " mssql.drill.restore_copy"}, e.executed(), "the drill acts on the backup SQL host only")

	viewer := e.client(t, "viewer")
	list, err := viewer.ListDrills(callCtx(t), &controllerv1.ListDrillsRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetDrills(), 1)
	require.Equal(t, "drill-1", list.GetDrills()[0].GetId())
	got, err := viewer.GetDrill(callCtx(t), &controllerv1.GetDrillRequest{Id: "drill-1"})
	require.NoError(t, err)
	require.Equal(t, controllerv1.DrillState_DRILL_STATE_SUCCEEDED, got.GetReport().GetState())
	_, err = viewer.GetDrill(callCtx(t), &controllerv1.GetDrillRequest{Id: "drill-9"})
	require.Equal(t, codes.NotFound, status.Code(err))

	audit, err := viewer.ListAudit(callCtx(t), &controllerv1.ListAuditRequest{})
	require.NoError(t, err)
	var actions []string
	for _, a := range audit.GetEntries() {
		actions = append(actions, a.GetAction())
	}
	require.True(t, slices.Contains(actions, "drill.started") && slices.Contains(actions, "drill.finished"), "%v", actions)

	runs, err := viewer.ListRuns(callCtx(t), &controllerv1.ListRunsRequest{})
	require.NoError(t, err)
	require.Empty(t, runs.GetRuns(), "a drill is not a run")
}

// TestController_RunDrill_refusals: roles, unknown pool, a run in
// progress; a refusal runs nothing and stores no drill.
func TestController_RunDrill_refusals(t *testing.T) {
	e := newFakeEnv(t, nil)
	hosts, err := testutil.LabHosts(4)
	require.NoError(t, err)
	busy := newFakeEnv(t, seedWaitingRun(t, hosts))
	for _, tc := range []struct {
		name string
		env  *fakeEnv
		cert string
		pool string
		code codes.Code
	}{
		{"viewer", e, "viewer", testutil.Pool, codes.PermissionDenied},
		{"approver", e, "approver", testutil.Pool, codes.PermissionDenied},
		{"unknown pool", e, "operator", "other.example", codes.NotFound},
		{"no pool", e, "admin", "", codes.InvalidArgument},
		{"run in progress", busy, "operator", testutil.Pool, codes.FailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.env.client(t, tc.cert).RunDrill(callCtx(t), &controllerv1.RunDrillRequest{Pool: tc.pool, Wait: true})
			require.Equal(t, tc.code, status.Code(err), "%v", err)
			list, err := tc.env.client(t, "viewer").ListDrills(callCtx(t), &controllerv1.ListDrillsRequest{})
			require.NoError(t, err)
			require.Empty(t, list.GetDrills())
			for _, x := range tc.env.executed() {
				require.NotContains(t, x, "drill")
			}
		})
	}
}
