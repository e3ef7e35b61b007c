//go:build !windows

package lab_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/lab"
)

// mgcState reads the state of mgc on a SQL host of the lab ("" when the
// instance does not answer).
func mgcState(t *testing.T, db *sql.DB) string {
	t.Helper()
	var s string
	if err := db.QueryRowContext(t.Context(), "SELECT state_desc FROM sys.databases WHERE name = 'mgc'").Scan(&s); err != nil {
		return ""
	}
	return s
}

// splitBrainLab brings a lab up, waits until log shipping restored
// something, and kills dc1. It returns the environments and the SQL
// connections of the old primary and the backup.
func splitBrainLab(t *testing.T) (dir string, operator, viewer, approver []string, oldPrimary, backup *sql.DB, topo *topology.Topology) {
	dir = filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() { _, _ = lab.Down(dir, 5*time.Second) })
	up := chatdr(t, nil, "lab", "up", "--dir", dir, "--bin", binDir)
	require.Equal(t, 0, up.code, "lab up: %s", up.stderr)
	env := labEnv(up.stdout)
	operator = slices.Concat(env, []string{"CHATDR_IDENTITY=operator"})
	viewer = slices.Concat(env, []string{"CHATDR_IDENTITY=viewer"})
	approver = slices.Concat(env, []string{"CHATDR_IDENTITY=approver"})
	st, err := lab.Load(dir)
	require.NoError(t, err)
	topo, err = topology.Load(st.Topology)
	require.NoError(t, err)
	oldPrimary = sqlOpenDB(t, dir, "sql1.dc1.chatdr.lab", "master")
	backup = sqlOpenDB(t, dir, "sql1.dc2.chatdr.lab", "master")
	waitBackupHoldsMessages(t, dir, backup)
	k := chatdr(t, nil, "lab", "kill", "--dir", dir, "--site", "dc1")
	require.Equal(t, 0, k.code, k.stderr)
	return dir, operator, viewer, approver, oldPrimary, backup, topo
}

// siteBack restarts the killed site (`lab up` starts what is not running)
// and waits until the old primary's mgc is ONLINE again, as SQL Server
// brings it up after a power loss.
func siteBack(t *testing.T, dir string, oldPrimary *sql.DB) {
	t.Helper()
	r := chatdr(t, nil, "lab", "up", "--dir", dir, "--bin", binDir)
	require.Equal(t, 0, r.code, "lab up: %s", r.stderr)
	require.NoError(t, testutil.Eventually(60*time.Second, 200*time.Millisecond, func() error {
		if s := mgcState(t, oldPrimary); s != "ONLINE" {
			return fmt.Errorf("old primary's mgc: %q", s)
		}
		return nil
	}))
}

// TestLab_OldPrimaryReturnsBeforeRecovery: dc1 comes back while a disaster
// failover waits before RESTORE WITH RECOVERY (domain §6.2). The fencing
// guard refuses to make the backup writable while the old primary is, the
// run pauses saying so, the operator cancels: one writable copy of mgc
// throughout.
func TestLab_OldPrimaryReturnsBeforeRecovery(t *testing.T) {
	dir, operator, viewer, approver, oldPrimary, backup, topo := splitBrainLab(t)
	// The share is lost with dc1: the window is unknown, so F4b waits.
	require.NoError(t, os.Rename(topo.LogShipping.BackupShare, topo.LogShipping.BackupShare+".lost"))
	r := chatdr(t, operator, "failover", "--pool", lab.Pool, "--mode", "disaster", "--yes", "--wait")
	require.Equal(t, 4, r.code, "waits for approval: %s\n%s", r.stdout, r.stderr)

	siteBack(t, dir, oldPrimary)
	a := chatdr(t, approver, "run", "approve", "run-1", "--reason", "dc1 is lost")
	require.Equal(t, 0, a.code, a.stderr)
	w := chatdr(t, viewer, "run", "watch", "run-1")
	t.Logf("run watch exit %d\n%s\n%s", w.code, w.stdout, w.stderr)
	require.Equal(t, 1, w.code, "the run pauses")
	run, ok := showRun(t, viewer, "run-1")
	require.True(t, ok)
	require.Equal(t, "paused", run.State)
	js := chatdr(t, viewer, "run", "show", "run-1", "-o", "json")
	var full struct {
		Error struct {
			Code, Message, Host, Hint string
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal([]byte(js.stdout), &full))
	t.Logf("pause: %+v", full.Error)
	require.Contains(t, full.Error.Message+full.Error.Hint, "sql1.dc1.chatdr.lab")
	require.Contains(t, strings.ToLower(full.Error.Message), "writable")
	require.Equal(t, "RESTORING", mgcState(t, backup), "the backup was not recovered")
	require.Equal(t, "ONLINE", mgcState(t, oldPrimary))

	c := chatdr(t, operator, "run", "cancel", "run-1", "--reason", "dc1 is back: abort the disaster failover (domain §6.2)")
	require.Equal(t, 0, c.code, c.stderr)
	require.NoError(t, testutil.Eventually(60*time.Second, 200*time.Millisecond, func() error {
		if run, _ := showRun(t, viewer, "run-1"); run.State != "cancelled" {
			return fmt.Errorf("run-1 %s", run.State)
		}
		return nil
	}))
	require.Equal(t, "RESTORING", mgcState(t, backup))
}

// TestLab_OldPrimaryReturnsAfterRecovery: dc1 comes back after the backup
// was recovered (domain §6.1). F4c, run while dc1 was down, was skipped;
// F8 fences the returned old primary (tail-log backup WITH NORECOVERY: its
// orphaned transactions kept in a file, the database RESTORING), so the
// run ends with one writable copy of mgc, and no chat server wrote to the
// old primary after the recovery.
func TestLab_OldPrimaryReturnsAfterRecovery(t *testing.T) {
	dir, operator, viewer, _, oldPrimary, backup, topo := splitBrainLab(t)
	r := chatdr(t, operator, "failover", "--pool", lab.Pool, "--mode", "disaster", "--yes")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, testutil.Eventually(2*time.Minute, 100*time.Millisecond, func() error {
		run, _ := showRun(t, viewer, "run-1")
		for _, s := range run.Steps {
			if s.ID == "F4b-recover-mgc" && s.State == "succeeded" {
				return nil
			}
		}
		return fmt.Errorf("F4b not done (run %s)", run.State)
	}))
	siteBack(t, dir, oldPrimary)
	var run runJSON
	require.NoError(t, testutil.Eventually(3*time.Minute, 300*time.Millisecond, func() error {
		run, _ = showRun(t, viewer, "run-1")
		if run.State != "succeeded" {
			return fmt.Errorf("run-1 %s", run.State)
		}
		return nil
	}))
	states := map[string]string{}
	for _, s := range run.Steps {
		states[s.ID] = s.State
	}
	require.Equal(t, "skipped", states["F4c-fence-sql1-mgc"], "dc1 was down right after the recovery")
	require.Equal(t, "succeeded", states["F8-fence-sql1-mgc"])
	require.Equal(t, "RESTORING", mgcState(t, oldPrimary), "the returned old primary is fenced")
	require.Equal(t, "ONLINE", mgcState(t, backup))
	tails, err := filepath.Glob(filepath.Join(topo.LogShipping.BackupShare, "mgc_orphaned_tail_sql1.dc1.chatdr.lab_*.bak"))
	require.NoError(t, err)
	require.Len(t, tails, 1, "the old primary's orphaned transactions are kept in a file")
	// Nothing reached the old primary after the recovery: its rows are a
	// subset of what it had when dc1 was lost (no chat server used it).
	m := chatdr(t, viewer, "lab", "messages", "--dir", dir)
	t.Logf("lab messages: %s", m.stdout)
	require.Contains(t, m.stdout, "pool FailedOver, database on sql1.dc2.chatdr.lab")
}
