package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/internal/testutil/ctltest"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

func runMain(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestPreflight_flags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no pool", nil, "--pool is required"},
		{"bad for", []string{"--pool", "p.test", "--for", "drill"}, `--for "drill"`},
		{"bad mode", []string{"--pool", "p.test", "--mode", "sideways"}, `--mode "sideways"`},
		{"mode with failback", []string{"--pool", "p.test", "--for", "failback", "--mode", "planned"}, "failover only"},
		{"argument", []string{"--pool", "p.test", "extra"}, "takes no arguments"},
		{"unknown flag", []string{"--pool", "p.test", "--force"}, "unknown flag"},
		{"bad output", []string{"--pool", "p.test", "-o", "yaml"}, `-o "yaml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runMain(append([]string{"preflight"}, tt.args...)...)
			require.Equal(t, ExitUsage, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
			require.Contains(t, stderr, tt.want)
			require.Empty(t, stdout)
		})
	}
}

func TestPreflightKind(t *testing.T) {
	tests := []struct {
		forKind, mode string
		modeSet       bool
		want          controllerv1.PlanKind
	}{
		{"failover", "planned", false, controllerv1.PlanKind_PLAN_KIND_FAILOVER_PLANNED},
		{"failover", "disaster", true, controllerv1.PlanKind_PLAN_KIND_FAILOVER_DISASTER},
		{"failback", "planned", false, controllerv1.PlanKind_PLAN_KIND_FAILBACK},
	}
	for _, tt := range tests {
		t.Run(tt.forKind+"/"+tt.mode, func(t *testing.T) {
			got, err := preflightKind(tt.forKind, tt.mode, tt.modeSet)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func preflightResponse(goAhead bool) *controllerv1.PreflightResponse {
	r := &controllerv1.PreflightResponse{Pool: "pchat.test", Kind: controllerv1.PlanKind_PLAN_KIND_FAILOVER_DISASTER, Go: goAhead,
		CheckedAt: timestamppb.New(time.Date(2026, 11, 29, 3, 52, 0, 0, time.UTC)),
		Checks: []*controllerv1.PreflightCheck{
			{Name: "run_in_progress", Title: "No run", Verdict: controllerv1.CheckVerdict_CHECK_VERDICT_PASS, Reason: "no unfinished run", Subject: "pchat.test"},
			{Name: "agents_reachable", Title: "dc1", Verdict: controllerv1.CheckVerdict_CHECK_VERDICT_WARN, Reason: "sql1.dc1 did not answer:\texpected", Subject: "dc1"},
			{Name: "log_shipping", Title: "ls", Verdict: controllerv1.CheckVerdict_CHECK_VERDICT_WARN, Reason: "would lose up to 2m0s", Subject: "sql1.dc2"},
			{Name: "copy_dir_writable", Title: "copy", Verdict: controllerv1.CheckVerdict_CHECK_VERDICT_SKIP, Reason: "n/a"},
		}}
	if !goAhead {
		r.Checks = append(r.Checks, &controllerv1.PreflightCheck{Name: "sql_agent_running", Title: "agent",
			Verdict: controllerv1.CheckVerdict_CHECK_VERDICT_FAIL, Reason: "SQL Server Agent is not running on sql1.dc2", Subject: "sql1.dc2"})
	}
	return r
}

func TestRenderPreflight(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, renderPreflight(&b, preflightResponse(true)))
	out := b.String()
	lines := strings.Split(out, "\n")
	require.Equal(t, "Preflight for a disaster failover of pchat.test at 2026-11-29T03:52:00Z", lines[0])
	require.Regexp(t, `^CHECK\s+VERDICT\s+SUBJECT\s+REASON$`, lines[2])
	require.Regexp(t, `^agents_reachable\s+WARN\s+dc1\s+sql1.dc1 did not answer: expected$`, lines[4], "a tab in a reason does not break the table")
	require.Regexp(t, `^copy_dir_writable\s+SKIP\s+-\s+n/a$`, lines[6])
	require.Contains(t, out, "\nGO: 1 passed, 2 warnings, 0 failed, 1 skipped; read the warnings, then see the plan with `chatdr plan failover --pool pchat.test --mode disaster`\n")

	b.Reset()
	require.NoError(t, renderPreflight(&b, preflightResponse(false)))
	out = b.String()
	require.Regexp(t, `(?m)^sql_agent_running\s+FAIL\s+sql1.dc2\s+SQL Server Agent is not running on sql1.dc2$`, out)
	require.Contains(t, out, "\nNO-GO: 1 passed, 2 warnings, 1 failed, 1 skipped: sql_agent_running (sql1.dc2)\n")
	require.NotContains(t, out, "\nGO:")
}

// TestPreflight_againstController runs the command against an in-process
// controller whose agents have no plugins: every agent answers, but no
// database, pool state or log-shipping fact is known, so the verdict is
// NO-GO with reasons naming what is missing.
func TestPreflight_againstController(t *testing.T) {
	lab, _ := ctltest.StartLab(t, testutil.StartAgents, testutil.Addrs, 2*time.Second)
	tlsDir, ctl := lab.TLSDir, lab.Ctl
	as := func(id string, args ...string) (int, string, string) {
		return runMain(append([]string{"--controller", ctl.Addr, "--tls-dir", tlsDir, "--identity", id, "preflight"}, args...)...)
	}

	code, stdout, stderr := as("viewer", "--pool", testutil.Pool)
	require.Equal(t, ExitFailed, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	t.Log("\n" + stdout + stderr)
	require.Contains(t, stdout, "Preflight for a planned failover of "+testutil.Pool)
	require.Regexp(t, `(?m)^run_in_progress\s+PASS\s`, stdout)
	require.Regexp(t, `(?m)^pool_state\s+FAIL\s.*could not be read`, stdout)
	require.Contains(t, stdout, "NO-GO: ")
	require.Contains(t, stderr, "no-go for planned failover of "+testutil.Pool)

	code, stdout, stderr = as("viewer", "--pool", testutil.Pool, "--for", "failback", "-o", "json")
	require.Equal(t, ExitFailed, code, stderr)
	var got struct {
		Pool   string `json:"pool"`
		Kind   string `json:"kind"`
		Go     bool   `json:"go"`
		Checks []struct {
			Name, Verdict, Reason, Subject string
		} `json:"checks"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &got), stdout)
	require.Equal(t, testutil.Pool, got.Pool)
	require.Equal(t, "PLAN_KIND_FAILBACK", got.Kind)
	require.False(t, got.Go)
	names := map[string]string{}
	for _, c := range got.Checks {
		require.NotEmpty(t, c.Reason, c.Name)
		names[c.Name] = c.Verdict
	}
	require.Equal(t, "CHECK_VERDICT_SKIP", names["log_shipping"])
	require.Equal(t, "CHECK_VERDICT_FAIL", names["backup_database"])

	code, _, stderr = as("viewer", "--pool", "nope.test")
	require.Equal(t, ExitUsage, code, stderr)
	require.Contains(t, stderr, "nope.test")
}
