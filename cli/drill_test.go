package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/internal/testutil/ctltest"
	"github.com/chatdr/chatdr/internal/testutil/fakeagent"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

func TestDrill_flags(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no pool", []string{"drill"}, "--pool is required"},
		{"argument", []string{"drill", "--pool", "p.test", "extra"}, "takes no arguments"},
		{"show without id", []string{"drill", "show"}, "accepts 1 arg"},
		{"negative limit", []string{"drill", "list", "--limit", "-1"}, "--limit must not be negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runMain(tt.args...)
			require.Equal(t, ExitUsage, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
			require.Contains(t, stderr, tt.want)
		})
	}
}

func drillReport() *controllerv1.DrillReport {
	at := time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)
	sec := func(s float64) *durationpb.Duration { return durationpb.New(time.Duration(s * float64(time.Second))) }
	return &controllerv1.DrillReport{Id: "drill-2", Pool: "pchat.test", State: controllerv1.DrillState_DRILL_STATE_SUCCEEDED,
		StartedBy: "operator", StartedAt: timestamppb.New(at), FinishedAt: timestamppb.New(at.Add(3 * time.Second)),
		Host: "sql1.dc2.test", Database: "mgc", ScratchDatabase: "mgc_chatdr_drill_20261129040000",
		Phases:     []*controllerv1.DrillPhase{{Name: "restore_full", Duration: sec(1.5)}, {Name: "recovery", Duration: sec(0.2)}},
		FullBackup: "/ls/mgc_ls_init.bak", LogsRestored: 12, LogsPending: 2, PendingCopyFiles: 1, Complete: true,
		Rows: 340, LastMessageAt: timestamppb.New(at.Add(-time.Minute)), ReachedLsn: "42000000001200001",
		ReachedBackupTime: timestamppb.New(at.Add(-50 * time.Second)), NewestBackupTime: timestamppb.New(at.Add(-50 * time.Second)),
		DataLossWindow: sec(50), Unrestorable: sec(0), ProbeDataLoss: sec(48), RestoreTime: sec(2.1), RtoEstimate: sec(0.6),
		RtoComponents: []*controllerv1.DrillPhase{{Name: "copy", Duration: sec(0.1)}, {Name: "restore", Duration: sec(0.3)}, {Name: "recovery", Duration: sec(0.2)}},
		CleanedUp:     true, LeftoversCleaned: []string{"mgc_chatdr_drill_20261128000000"}}
}

func TestRenderDrill(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, renderDrill(&b, drillReport()))
	out := b.String()
	require.Contains(t, out, "Drill drill-2 of pchat.test on sql1.dc2.test: SUCCEEDED\n")
	require.Regexp(t, `(?m)^restore_full\s+1.5s$`, out)
	require.Regexp(t, `(?m)^Logs restored\s+12 \(2 not yet restored by log shipping, 1 not yet copied\)$`, out)
	require.Regexp(t, `(?m)^Validation\s+valid; 340 rows, last message 2026-11-29T03:59:00Z$`, out)
	require.Regexp(t, `(?m)^Restore time\s+2.1s`, out)
	require.Regexp(t, `(?m)^RTO estimate\s+600ms = copy 100ms \+ restore 300ms \+ recovery 200ms`, out)
	require.Regexp(t, `(?m)^RPO \(data loss\)\s+50s since the restore point \(log-shipping probe: 48s; unrestorable backups: 0s\)$`, out)
	require.Contains(t, out, "leftovers of earlier drills dropped: mgc_chatdr_drill_20261128000000")

	b.Reset()
	require.NoError(t, renderDrillList(&b, []*controllerv1.DrillReport{drillReport()}))
	lines := strings.Split(b.String(), "\n")
	require.Regexp(t, `^ID\s+STATE\s+STARTED\s+BY\s+HOST\s+RESTORE\s+RTO\s+DATA LOSS\s+ROWS$`, lines[0])
	require.Regexp(t, `^drill-2\s+succeeded\s+2026-11-29T04:00:00Z\s+operator\s+sql1.dc2.test\s+2.1s\s+600ms\s+50s\s+340$`, lines[1])
}

// TestDrill_againstController runs drill, drill list and drill show
// through an in-process controller over fake agents.
func TestDrill_againstController(t *testing.T) {
	lab, _ := ctltest.StartLab(t, fakeagent.Start, fakeagent.Addrs, 2*time.Second)
	tlsDir, ctl := lab.TLSDir, lab.Ctl
	hosts, err := testutil.LabHosts(4) // the names StartLab used
	require.NoError(t, err)
	as := func(id string, args ...string) (int, string, string) {
		return runMain(append([]string{"--controller", ctl.Addr, "--tls-dir", tlsDir, "--identity", id, "drill"}, args...)...)
	}

	code, stdout, stderr := as("viewer", "--pool", testutil.Pool)
	require.Equal(t, ExitUnreachable, code, "a viewer may not run a drill: %s", stderr)
	code, _, stderr = as("operator", "--pool", "other.test")
	require.Equal(t, ExitUsage, code, stderr)

	code, stdout, stderr = as("operator", "--pool", testutil.Pool, "--wait", "--poll", "50ms")
	require.Equal(t, ExitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	require.Contains(t, stdout, "Drill drill-1 of "+testutil.Pool+" on "+hosts[3].Host+": SUCCEEDED")

	code, stdout, stderr = as("operator", "--pool", testutil.Pool)
	require.Equal(t, ExitOK, code, stderr)
	require.Contains(t, stdout, "drill drill-2 started on "+hosts[3].Host)

	code, stdout, stderr = as("viewer", "list")
	require.Equal(t, ExitOK, code, stderr)
	require.Regexp(t, `(?m)^drill-1\s+succeeded\s`, stdout)
	code, stdout, stderr = as("viewer", "show", "drill-1", "-o", "json")
	require.Equal(t, ExitOK, code, stderr)
	var got struct {
		ID    string `json:"id"`
		State string `json:"state"`
		Host  string `json:"host"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &got))
	require.Equal(t, "drill-1", got.ID)
	require.Equal(t, "DRILL_STATE_SUCCEEDED", got.State)
	code, _, stderr = as("viewer", "show", "drill-9")
	require.Equal(t, ExitUsage, code, stderr)
	require.Contains(t, stderr, "no drill")
}
