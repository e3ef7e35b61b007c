//go:build !windows

package lab_test

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/lab"
	"github.com/chatdr/chatdr/sim/chat"
)

// TestLab_PlannedFailover drives `chatdr failover --mode planned --yes
// --wait` as a real process against the lab, with the chat simulators
// writing, and checks that every acknowledged message is in the database
// the pool uses afterwards.
func TestLab_PlannedFailover(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() { _, _ = lab.Down(dir, 5*time.Second) })
	up := chatdr(t, nil, "lab", "up", "--dir", dir, "--bin", binDir)
	require.Equal(t, 0, up.code, "lab up: %s", up.stderr)
	env := labEnv(up.stdout)
	require.NoError(t, testutil.Eventually(30*time.Second, 200*time.Millisecond, func() error {
		_, err := chat.ReadAcks(lab.AckFile(dir, "pc1.dc1.chatdr.lab"))
		return err
	}))
	operator := slices.Concat(env, []string{"CHATDR_IDENTITY=operator"})
	viewer := slices.Concat(env, []string{"CHATDR_IDENTITY=viewer"})

	// Refusals: a viewer may not start a run; without --yes and without a
	// terminal the CLI refuses; an unknown pool is a usage error.
	r := chatdr(t, viewer, "failover", "--pool", lab.Pool, "--mode", "planned", "--yes")
	require.Equal(t, 3, r.code, r.stderr)
	require.Contains(t, r.stderr, "not authorized")
	r = chatdr(t, operator, "failover", "--pool", lab.Pool, "--mode", "planned")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "not a terminal")
	r = chatdr(t, operator, "failover", "--pool", "nope.chatdr.lab", "--mode", "planned", "--yes")
	require.Equal(t, 2, r.code, r.stderr)

	r = chatdr(t, operator, "failover", "--pool", lab.Pool, "--mode", "planned", "--yes", "--wait")
	show := chatdr(t, viewer, "run", "show", "run-1")
	t.Logf("failover exit %d\nstdout:\n%s\nstderr:\n%s\nrun show:\n%s", r.code, r.stdout, r.stderr, show.stdout)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "run run-1: succeeded")

	js := chatdr(t, viewer, "run", "show", "run-1", "-o", "json")
	require.Equal(t, 0, js.code, js.stderr)
	var run struct {
		State string `json:"state"`
		Steps []struct {
			ID, Action, Host, State string
			Attempts                int
			Started, Ended          string
		} `json:"steps"`
	}
	require.NoError(t, json.Unmarshal([]byte(js.stdout), &run))
	require.Equal(t, "succeeded", run.State)
	for _, s := range run.Steps {
		require.Contains(t, []string{"succeeded", "skipped"}, s.State, s.ID)
	}

	// The pool is blocked until the run is acknowledged.
	r = chatdr(t, operator, "failback", "--pool", lab.Pool, "--yes")
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "chatdr run ack run-1")

	m := chatdr(t, viewer, "lab", "messages", "--dir", dir)
	t.Logf("lab messages: %s", m.stdout)
	require.Equal(t, 0, m.code, m.stderr)
	require.Contains(t, m.stdout, " 0 missing")

	a := chatdr(t, viewer, "audit", "verify")
	require.Equal(t, 0, a.code, a.stderr)

	// Failback (domain §3): after the acknowledgement it runs, and every
	// message acknowledged in either site is in the primary again.
	r = chatdr(t, operator, "run", "ack", "run-1")
	require.Equal(t, 0, r.code, r.stderr)
	r = chatdr(t, operator, "failback", "--pool", lab.Pool, "--yes", "--wait")
	require.Equal(t, 0, r.code, "failback: %s\n%s", r.stdout, r.stderr)
	require.Contains(t, r.stdout, "run run-2: succeeded")
	m = chatdr(t, viewer, "lab", "messages", "--dir", dir)
	t.Logf("lab messages after failback: %s", m.stdout)
	require.Equal(t, 0, m.code, m.stderr)
	require.Contains(t, m.stdout, "pool Normal, database on sql1.dc1.chatdr.lab")
	require.Contains(t, m.stdout, " 0 missing")
	a = chatdr(t, viewer, "audit", "verify")
	require.Equal(t, 0, a.code, a.stderr)
}
