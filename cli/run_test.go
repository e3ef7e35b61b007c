package cli_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/internal/testutil/ctltest"
)

// TestRun_CommandsAgainstController drives the run commands in-process
// against a controller whose agents have no plugins: the run starts and
// stops on its first step, which is what the commands then report.
func TestRun_CommandsAgainstController(t *testing.T) {
	lab, _ := ctltest.StartLab(t, testutil.StartAgents, testutil.Addrs, 500*time.Millisecond)
	tlsDir, ctl := lab.TLSDir, lab.Ctl
	as := func(id string, args ...string) (int, string, string) {
		return run(append([]string{"--controller", ctl.Addr, "--tls-dir", tlsDir, "--identity", id}, args...)...)
	}

	code, _, stderr := as("viewer", "failover", "--pool", testutil.Pool, "--mode", "planned", "--yes")
	require.Equal(t, 3, code, stderr)
	require.Contains(t, stderr, "not authorized")
	code, _, stderr = as("operator", "failover", "--pool", testutil.Pool, "--mode", "sideways", "--yes")
	require.Equal(t, 2, code, stderr)
	code, _, stderr = as("operator", "failover", "--pool", "nope.test", "--mode", "planned", "--yes")
	require.Equal(t, 2, code, stderr)
	require.Contains(t, stderr, "nope.test")

	// Without plugins on the agents the first step cannot succeed: --wait
	// reports the run stopped with its error, exit 1.
	code, stdout, stderr := as("operator", "failover", "--pool", testutil.Pool, "--mode", "planned", "--yes", "--wait")
	require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	require.Contains(t, stderr, "run run-1 paused: rpc_notfound")
	require.Contains(t, stderr, "chatdr run resume run-1")
	require.Contains(t, stdout, "run run-1: paused")
	require.NotContains(t, stdout, "  pending  ")

	code, _, stderr = as("operator", "failover", "--pool", testutil.Pool, "--mode", "planned", "--yes")
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "run-1")

	code, stdout, stderr = as("viewer", "run", "list")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "run-1")
	require.Contains(t, stdout, "failover-planned")

	code, stdout, stderr = as("viewer", "run", "show", "run-1", "-o", "json")
	require.Equal(t, 0, code, stderr)
	var got struct {
		ID    string `json:"id"`
		State string `json:"state"`
		Steps []struct {
			ID       string `json:"id"`
			Action   string `json:"action"`
			Host     string `json:"host"`
			State    string `json:"state"`
			Attempts int    `json:"attempts"`
			Started  string `json:"started"`
			Error    *struct {
				Code, Message string
			} `json:"error"`
		} `json:"steps"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &got))
	require.Equal(t, "run-1", got.ID)
	require.NotEmpty(t, got.Steps)
	require.NotEmpty(t, got.Steps[0].Action)
	require.NotEmpty(t, got.Steps[0].Host)
	require.Positive(t, got.Steps[0].Attempts)
	require.NotNil(t, got.Steps[0].Error)

	code, _, stderr = as("operator", "run", "approve", "run-1", "--reason", "ok")
	require.Equal(t, 3, code, stderr)
	code, _, stderr = as("approver", "run", "approve", "run-1", "--reason", "ok")
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "no step waiting for approval")
	code, _, stderr = as("approver", "run", "approve", "run-1")
	require.Equal(t, 2, code, stderr)
	code, _, stderr = as("viewer", "run", "show", "run-42")
	require.Equal(t, 2, code, stderr)

	code, _, stderr = as("operator", "run", "ack", "run-1")
	require.Equal(t, 1, code, stderr)
	code, stdout, stderr = as("operator", "run", "cancel", "run-1", "--reason", "test")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "run-1: cancel")
	require.NoError(t, testutil.Eventually(10*time.Second, 50*time.Millisecond, func() error {
		if _, out, _ := as("viewer", "run", "show", "run-1"); !contains(out, ", cancelled") {
			return errNotYet(out)
		}
		return nil
	}))
	code, stdout, stderr = as("operator", "run", "ack", "run-1")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "run-1: acknowledged")

	code, stdout, stderr = as("viewer", "audit", "--run", "run-1")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "run.created")
	require.Contains(t, stdout, "operator (operator)")
	require.Contains(t, stdout, "ack")
	code, stdout, stderr = as("viewer", "audit", "verify")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "audit log intact")
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

type notYet string

func (e notYet) Error() string { return "not yet: " + string(e) }

func errNotYet(s string) error { return notYet(s) }
