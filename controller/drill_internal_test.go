package controller

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chatdr/chatdr/controller/store"
)

// TestServer_registerDrill_oneAtATime: while a drill runs, another is
// refused and nothing is stored; once it ended, the next one registers.
func TestServer_registerDrill_oneAtATime(t *testing.T) {
	st, err := store.Open(t.TempDir(), time.Second)
	require.NoError(t, err)
	defer st.Close()
	s := &Server{store: st, log: slog.New(slog.DiscardHandler)}
	who := store.Actor{Name: "operator"}
	d, done, err := s.registerDrill("pchat.example", who, "sql1.dc2", "mgc")
	require.NoError(t, err)
	require.NotNil(t, done)
	_, _, err = s.registerDrill("pchat.example", who, "sql1.dc2", "mgc")
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	require.Contains(t, err.Error(), d.ID+" is running")
	list, err := st.ListDrills(0)
	require.NoError(t, err)
	require.Len(t, list, 1)

	s.drills.running = ""
	d2, _, err := s.registerDrill("pchat.example", who, "sql1.dc2", "mgc")
	require.NoError(t, err)
	require.Equal(t, "drill-2", d2.ID)
	old, err := st.GetDrill(d.ID)
	require.NoError(t, err)
	require.Equal(t, store.DrillInterrupted, old.State, "a drill left running by an ended drill book is interrupted")
	require.Equal(t, "RUNNING", drillToProto(d2, true).GetState().String()[len("DRILL_STATE_"):])
	require.Equal(t, "INTERRUPTED", drillToProto(d2, false).GetState().String()[len("DRILL_STATE_"):])
}

// drillActionOutput is what mssql.drill.restore_copy returns (abridged
// from a lab drill).
const drillActionOutput = `{"database":"mgc","scratch_database":"mgc_chatdr_drill_20261129042431","full_backup":"/lab/share/logship/mgc_ls_init.bak",
"logs_restored":["mgc_20261129042420.trn","mgc_20261129042430.trn"],"logs_pending":1,"pending_copy_files":["mgc_20261129042430.trn"],
"complete":true,"stop_reason":"","rows":118,"last_message_time":"2026-11-29T04:24:30.123Z","valid":true,"problems":[],
"reached_lsn":"39000000012300127","reached_backup_time":"2026-11-29T04:24:30Z","newest_backup_time":"2026-11-29T04:24:30Z",
"data_loss_window_seconds":1.69,"unrestorable_seconds":0,"restore_seconds":0.051,"rto_copy_seconds":0.007,"rto_restore_seconds":0.022,
"rto_recovery_seconds":0.005,"rto_estimate_seconds":0.034,"leftovers_cleaned":["mgc_chatdr_drill_20261128000000"],"cleaned_up":true,
"phases":[{"name":"restore_full","seconds":0.009},{"name":"recovery","seconds":0.005}]}`

func TestDrillToProto_mapsTheActionOutput(t *testing.T) {
	at := time.Date(2026, 11, 29, 4, 24, 31, 0, time.UTC)
	loss := 7.0
	d := &store.Drill{ID: "drill-1", Pool: "pchat.example", State: store.DrillSucceeded, StartedBy: store.Actor{Name: "operator"},
		StartedAt: at, FinishedAt: at.Add(time.Second), Host: "sql1.dc2", Database: "mgc", ProbeDataLossSeconds: &loss,
		Output: []byte(drillActionOutput)}
	r := drillToProto(d, false)
	require.Equal(t, "SUCCEEDED", r.GetState().String()[len("DRILL_STATE_"):])
	require.Equal(t, "mgc_chatdr_drill_20261129042431", r.GetScratchDatabase())
	require.Equal(t, int32(2), r.GetLogsRestored())
	require.Equal(t, int32(1), r.GetLogsPending())
	require.Equal(t, int32(1), r.GetPendingCopyFiles())
	require.Equal(t, int64(118), r.GetRows())
	require.Equal(t, time.Date(2026, 11, 29, 4, 24, 30, 123e6, time.UTC), r.GetLastMessageAt().AsTime())
	require.Equal(t, 1690*time.Millisecond, r.GetDataLossWindow().AsDuration())
	require.Equal(t, 7*time.Second, r.GetProbeDataLoss().AsDuration())
	require.Equal(t, 51*time.Millisecond, r.GetRestoreTime().AsDuration())
	require.Equal(t, 34*time.Millisecond, r.GetRtoEstimate().AsDuration())
	require.Len(t, r.GetRtoComponents(), 3)
	require.Equal(t, 22*time.Millisecond, r.GetRtoComponents()[1].GetDuration().AsDuration())
	require.Len(t, r.GetPhases(), 2)
	require.True(t, r.GetComplete())
	require.True(t, r.GetCleanedUp())
	require.Equal(t, []string{"mgc_chatdr_drill_20261128000000"}, r.GetLeftoversCleaned())
}

func TestDrillOutcome(t *testing.T) {
	for _, tc := range []struct {
		name        string
		out         string
		err         error
		interrupted bool
		state, msg  string
	}{
		{"valid", drillActionOutput, nil, false, store.DrillSucceeded, ""},
		{"validation problems", `{"valid":false,"problems":["table dbo.messages.x is missing"]}`, nil, false, store.DrillFailed, "validation: table dbo.messages.x is missing"},
		{"action failed", "", errors.New("no_full_backup: none"), false, store.DrillFailed, "no_full_backup: none"},
		{"controller stopped", "", context.Canceled, true, store.DrillInterrupted, "interrupted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, msg := drillOutcome([]byte(tc.out), tc.err, tc.interrupted)
			require.Equal(t, tc.state, state)
			require.Contains(t, msg, tc.msg)
		})
	}
}
