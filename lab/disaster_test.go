//go:build !windows

package lab_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/lab"
	"github.com/chatdr/chatdr/sim/chat"
)

// waitBackupHoldsMessages waits until the log-shipping secondary restored a
// log backup the primary took more than a second after pc1's first
// acknowledged message (the file name carries the UTC time it was taken).
func waitBackupHoldsMessages(t *testing.T, dir string, backup *sql.DB) {
	t.Helper()
	require.NoError(t, testutil.Eventually(2*time.Minute, 500*time.Millisecond, func() error {
		acks, err := chat.ReadAcks(lab.AckFile(dir, "pc1.dc1.chatdr.lab"))
		if err != nil || len(acks) == 0 {
			return fmt.Errorf("no message acknowledged yet (%v)", err)
		}
		var last sql.NullString
		if err := backup.QueryRowContext(t.Context(), "SELECT last_restored_file FROM msdb.dbo.log_shipping_secondary_databases WHERE secondary_database = 'mgc'").Scan(&last); err != nil {
			return err
		}
		name := filepath.Base(last.String)
		stamp := strings.TrimSuffix(strings.TrimPrefix(name, "mgc_"), ".trn")
		taken, err := time.Parse("20060102150405", stamp)
		if err != nil {
			return fmt.Errorf("nothing restored yet (last restored file %q)", last.String)
		}
		if !taken.After(acks[0].At.UTC().Add(time.Second)) {
			return fmt.Errorf("last restored %s predates the first messages", name)
		}
		return nil
	}))
}

// TestLab_DisasterFailoverWithApproval is the disaster test of issue 5:
// every process of the primary site is killed (SIGKILL) while the chat
// servers write, and the log-shipping share is lost with the site. `chatdr
// failover --mode disaster --wait` stops before RESTORE WITH RECOVERY with
// exit code 4, because the data-loss window cannot be proven zero; an
// approver approves; the run completes; the acknowledged messages missing
// from the new primary are exactly those after the reported restore point.
func TestLab_DisasterFailoverWithApproval(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() { _, _ = lab.Down(dir, 5*time.Second) })
	up := chatdr(t, nil, "lab", "up", "--dir", dir, "--bin", binDir)
	require.Equal(t, 0, up.code, "lab up: %s", up.stderr)
	env := labEnv(up.stdout)
	operator := slices.Concat(env, []string{"CHATDR_IDENTITY=operator"})
	viewer := slices.Concat(env, []string{"CHATDR_IDENTITY=viewer"})
	approver := slices.Concat(env, []string{"CHATDR_IDENTITY=approver"})
	st, err := lab.Load(dir)
	require.NoError(t, err)
	topo, err := topology.Load(st.Topology)
	require.NoError(t, err)

	// Wait until log shipping restored a log backup taken after messages
	// were acknowledged, so that the backup holds part of the chat history
	// when dc1 is lost.
	backup := sqlOpenDB(t, dir, "sql1.dc2.chatdr.lab", "master")
	waitBackupHoldsMessages(t, dir, backup)

	// The data center is lost: its processes, and the share with them.
	k := chatdr(t, nil, "lab", "kill", "--dir", dir, "--site", "dc1")
	require.Equal(t, 0, k.code, k.stderr)
	require.NoError(t, os.Rename(topo.LogShipping.BackupShare, topo.LogShipping.BackupShare+".lost-with-dc1"))

	r := chatdr(t, operator, "failover", "--pool", lab.Pool, "--mode", "disaster", "--yes", "--wait")
	t.Logf("failover exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	require.Equal(t, 4, r.code, "the run waits for approval: %s", r.stderr)
	out := r.stdout + r.stderr
	require.Contains(t, out, "F4b-recover-mgc")
	require.Contains(t, out, "chatdr run approve run-1")

	run, ok := showRun(t, viewer, "run-1")
	require.True(t, ok)
	require.Equal(t, "waiting_approval", run.State)
	for _, s := range run.Steps {
		if s.ID == "F4b-recover-mgc" {
			require.Equal(t, "waiting_approval", s.State)
		}
	}
	// Nothing irreversible happened yet: mgc on the backup is still RESTORING.
	var state string
	require.NoError(t, backup.QueryRowContext(t.Context(), "SELECT state_desc FROM sys.databases WHERE name = 'mgc'").Scan(&state))
	require.Equal(t, "RESTORING", state)

	// A viewer and an operator cannot approve; the approver can.
	a := chatdr(t, viewer, "run", "approve", "run-1", "--reason", "dc1 is lost")
	require.Equal(t, 3, a.code, a.stderr)
	a = chatdr(t, operator, "run", "approve", "run-1", "--reason", "dc1 is lost")
	require.Equal(t, 3, a.code, a.stderr)
	a = chatdr(t, approver, "run", "approve", "run-1", "--reason", "dc1 is lost; accept the reported window")
	require.Equal(t, 0, a.code, a.stderr)
	require.NoError(t, testutil.Eventually(3*time.Minute, 500*time.Millisecond, func() error {
		run, ok = showRun(t, viewer, "run-1")
		if !ok || run.State != "succeeded" {
			return fmt.Errorf("run-1 %s", run.State)
		}
		return nil
	}))

	// The restore point the run reported (F3's output).
	rp := chatdr(t, viewer, "run", "show", "run-1", "-o", "json")
	require.Equal(t, 0, rp.code, rp.stderr)
	var full struct {
		Steps []struct {
			ID         string `json:"id"`
			OutputJSON string `json:"output_json"`
		} `json:"steps"`
	}
	require.NoError(t, json.Unmarshal([]byte(rp.stdout), &full))
	var reached time.Time
	for _, s := range full.Steps {
		if s.ID == "F3-restore-logs-mgc" {
			var o map[string]any
			require.NoError(t, json.Unmarshal([]byte(s.OutputJSON), &o))
			reached, err = time.Parse(time.RFC3339, fmt.Sprint(o["reached_backup_time"]))
			require.NoError(t, err, "F3 output: %v", o)
		}
	}
	require.False(t, reached.IsZero())

	// What the new primary holds, against what the primary acknowledged.
	newPrimary := sqlOpenDB(t, dir, "sql1.dc2.chatdr.lab", "mgc")
	present := map[string]bool{}
	rows, err := newPrimary.QueryContext(t.Context(), "SELECT body FROM dbo.messages")
	require.NoError(t, err)
	for rows.Next() {
		var b string
		require.NoError(t, rows.Scan(&b))
		present[b] = true
	}
	require.NoError(t, rows.Err())
	var onPrimary []chat.Ack // acknowledged by the old primary
	for _, s := range topo.ChatServers {
		acks, err := chat.ReadAcks(lab.AckFile(dir, s.FQDN))
		require.NoError(t, err)
		for _, a := range acks {
			if a.Role == "primary" {
				onPrimary = append(onPrimary, a)
			}
		}
	}
	sort.Slice(onPrimary, func(i, j int) bool { return onPrimary[i].ID < onPrimary[j].ID })
	kept, lost := 0, 0
	for _, a := range onPrimary {
		if present[a.Body] {
			require.Zero(t, lost, "message %d (%s) is in the backup after a lost one: the loss is not a tail", a.ID, a.Body)
			// Kept messages were acknowledged before the restore point
			// (backup times have one-second precision).
			require.False(t, a.At.After(reached.Add(time.Second)), "kept message %d acknowledged at %v, after the restore point %v", a.ID, a.At, reached)
			kept++
			continue
		}
		require.False(t, a.At.Before(reached.Add(-time.Second)), "lost message %d acknowledged at %v, before the restore point %v", a.ID, a.At, reached)
		lost++
	}
	t.Logf("restore point %v: %d messages kept, %d acknowledged after it lost with dc1", reached, kept, lost)
	require.Positive(t, kept)

	m := chatdr(t, viewer, "lab", "messages", "--dir", dir)
	t.Logf("lab messages: %s", m.stdout)
	require.Contains(t, m.stdout, "pool FailedOver, database on sql1.dc2.chatdr.lab")
	require.Contains(t, m.stdout, fmt.Sprintf(" %d missing", lost))
}
