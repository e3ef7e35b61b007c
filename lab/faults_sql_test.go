//go:build !windows

package lab_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/lab"
	"github.com/chatdr/chatdr/sim/chat"
)

// The SQL-side fault scenarios of issue 6: each test starts a fresh lab,
// injects one fault on the log-shipping files, SQL Server Agent or the
// sessions of the backup instance, runs a failover through the CLI and
// checks what domain.md §6 says must happen, what the operator sees, that
// the run completes after the fix, and that no acknowledged message is lost
// beyond the reported window.

const (
	faultBackupHost  = "sql1.dc2.chatdr.lab"
	faultPrimaryHost = "sql1.dc1.chatdr.lab"
)

// faultLab is one fresh lab for a fault scenario.
type faultLab struct {
	t                          *testing.T
	dir                        string
	operator, viewer, approver []string
	topo                       *topology.Topology
	backup                     *sql.DB // master on the backup instance
	copyJob, restoreJob        string
}

// newFaultLab starts a lab and waits until chat messages are acknowledged
// and log shipping restored a first log backup on the backup instance.
func newFaultLab(t *testing.T) *faultLab {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() { _, _ = lab.Down(dir, 5*time.Second) })
	up := chatdr(t, nil, "lab", "up", "--dir", dir, "--bin", binDir)
	require.Equal(t, 0, up.code, "lab up: %s", up.stderr)
	env := labEnv(up.stdout)
	st, err := lab.Load(dir)
	require.NoError(t, err)
	topo, err := topology.Load(st.Topology)
	require.NoError(t, err)
	l := &faultLab{t: t, dir: dir, topo: topo,
		operator: slices.Concat(env, []string{"CHATDR_IDENTITY=operator"}),
		viewer:   slices.Concat(env, []string{"CHATDR_IDENTITY=viewer"}),
		approver: slices.Concat(env, []string{"CHATDR_IDENTITY=approver"}),
		backup:   sqlOpenDB(t, dir, faultBackupHost, "master"),
	}
	require.NoError(t, testutil.Eventually(90*time.Second, 500*time.Millisecond, func() error {
		var f *string
		if err := l.backup.QueryRowContext(t.Context(), "SELECT last_restored_file FROM msdb.dbo.log_shipping_secondary_databases WHERE secondary_database = 'mgc'").Scan(&f); err != nil {
			return err
		}
		if f == nil || *f == "" {
			return fmt.Errorf("nothing restored on the backup yet; log-shipping history: %s", lsHistory(t, l.backup))
		}
		acks, err := chat.ReadAcks(lab.AckFile(dir, "pc1.dc1.chatdr.lab"))
		if err == nil && len(acks) == 0 {
			err = fmt.Errorf("no message acknowledged yet")
		}
		return err
	}))
	require.NoError(t, l.backup.QueryRowContext(t.Context(), `SELECT j1.name, j2.name FROM msdb.dbo.log_shipping_secondary lss
JOIN msdb.dbo.sysjobs j1 ON j1.job_id = lss.copy_job_id JOIN msdb.dbo.sysjobs j2 ON j2.job_id = lss.restore_job_id`).Scan(&l.copyJob, &l.restoreJob))
	return l
}

// backupHoldsMessages waits until log shipping restored, on the backup, a
// log backup taken after the first acknowledged chat message, so that a
// disaster keeps part of the history and loses a tail of it.
func (l *faultLab) backupHoldsMessages() {
	l.t.Helper()
	acks, err := chat.ReadAcks(lab.AckFile(l.dir, "pc1.dc1.chatdr.lab"))
	require.NoError(l.t, err)
	require.NotEmpty(l.t, acks)
	first := acks[0].At
	require.NoError(l.t, testutil.Eventually(90*time.Second, 500*time.Millisecond, func() error {
		var f *string
		if err := l.backup.QueryRowContext(l.t.Context(), "SELECT last_restored_file FROM msdb.dbo.log_shipping_secondary_databases WHERE secondary_database = 'mgc'").Scan(&f); err != nil {
			return err
		}
		if f == nil || !fileTime(l.t, filepath.Base(*f)).After(first.Add(time.Second)) {
			return fmt.Errorf("the backup restored nothing after the first message (%v) yet", first)
		}
		return nil
	}))
}

// lsHistory returns the latest log-shipping monitor messages of db's
// instance, for a failure message.
func lsHistory(t *testing.T, db *sql.DB) string {
	rows, err := db.QueryContext(t.Context(), "SELECT TOP 6 agent_type, session_status, message FROM msdb.dbo.log_shipping_monitor_history_detail ORDER BY log_time DESC")
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var agent, status int
		var msg string
		if err := rows.Scan(&agent, &status, &msg); err != nil {
			return err.Error()
		}
		out = append(out, fmt.Sprintf("[agent %d status %d] %s", agent, status, msg))
	}
	return strings.Join(out, " | ")
}

// exec runs a statement on the backup instance.
func (l *faultLab) exec(query string, args ...any) {
	l.t.Helper()
	_, err := l.backup.ExecContext(l.t.Context(), query, args...)
	require.NoError(l.t, err, query)
}

// setJob enables or disables a SQL Server Agent job on the backup.
func (l *faultLab) setJob(job string, enabled bool) {
	l.t.Helper()
	v := 0
	if enabled {
		v = 1
	}
	l.exec("msdb.dbo.sp_update_job", sql.Named("job_name", job), sql.Named("enabled", v))
}

// trnFiles lists the log-shipping files (mgc_<timestamp>.trn, regular
// files only) of dir, sorted.
func trnFiles(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	re := regexp.MustCompile(`^mgc_\d{14}\.trn$`)
	var out []string
	for _, e := range es {
		if re.MatchString(e.Name()) && e.Type().IsRegular() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// backlog waits until the backup share holds at least n log backups that
// are not in the copy directory (the copy job must not run) and returns
// them, oldest first.
func (l *faultLab) backlog(n int) []string {
	l.t.Helper()
	var out []string
	require.NoError(l.t, testutil.Eventually(2*time.Minute, 500*time.Millisecond, func() error {
		copied := trnFiles(l.t, l.topo.LogShipping.CopyDir)
		out = nil
		for _, f := range trnFiles(l.t, l.topo.LogShipping.BackupShare) {
			if !slices.Contains(copied, f) {
				out = append(out, f)
			}
		}
		if len(out) < n {
			return fmt.Errorf("%d log backups not copied yet, want %d", len(out), n)
		}
		return nil
	}))
	return out
}

// stepJSON is one step of `chatdr run show -o json`.
type stepJSON struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
	Error    *struct {
		Code, Message, Host, Hint string
	} `json:"error"`
	OutputJSON string    `json:"output_json"`
	Ended      time.Time `json:"ended"`
}

// output decodes the step's recorded output.
func (s stepJSON) output(t *testing.T) map[string]any {
	t.Helper()
	var o map[string]any
	require.NoError(t, json.Unmarshal([]byte(s.OutputJSON), &o), "output of %s: %q", s.ID, s.OutputJSON)
	return o
}

// runShowJSON is what the fault tests read of `chatdr run show -o json`.
type runShowJSON struct {
	State string `json:"state"`
	Error *struct {
		Code, Message, Host, Hint string
	} `json:"error"`
	Steps  []stepJSON `json:"steps"`
	Report struct {
		DataLossKnown bool     `json:"data_loss_known"`
		DataLoss      string   `json:"data_loss"`
		RestoredTo    string   `json:"restored_to"`
		NewestBackup  string   `json:"newest_backup"`
		DataLossNotes []string `json:"data_loss_notes"`
	} `json:"report"`
}

func (r runShowJSON) step(t *testing.T, id string) stepJSON {
	t.Helper()
	for _, s := range r.Steps {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("run has no step %s", id)
	return stepJSON{}
}

// show reads run-1 through the CLI.
func (l *faultLab) show() runShowJSON {
	l.t.Helper()
	r := chatdr(l.t, l.viewer, "run", "show", "run-1", "-o", "json")
	require.Equal(l.t, 0, r.code, r.stderr)
	var run runShowJSON
	require.NoError(l.t, json.Unmarshal([]byte(r.stdout), &run), r.stdout)
	return run
}

// showText is `chatdr run show run-1` as the operator reads it.
func (l *faultLab) showText() string {
	l.t.Helper()
	r := chatdr(l.t, l.viewer, "run", "show", "run-1")
	require.Equal(l.t, 0, r.code, r.stderr)
	return r.stdout
}

// failover runs `chatdr failover --mode mode --yes --wait` and logs what the
// operator sees.
func (l *faultLab) failover(mode string) result {
	l.t.Helper()
	r := chatdr(l.t, l.operator, "failover", "--pool", lab.Pool, "--mode", mode, "--yes", "--wait")
	l.t.Logf("failover --mode %s: exit %d\nstdout:\n%s\nstderr:\n%s", mode, r.code, r.stdout, r.stderr)
	return r
}

// resume runs `chatdr run resume run-1 --wait`.
func (l *faultLab) resume() result {
	l.t.Helper()
	r := chatdr(l.t, l.operator, "run", "resume", "run-1", "--wait")
	l.t.Logf("run resume: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	return r
}

// dbState is sys.databases.state_desc (and standby) of mgc on host.
func (l *faultLab) dbState(host string) string {
	l.t.Helper()
	db := sqlOpenDB(l.t, l.dir, host, "master")
	var state string
	var standby bool
	require.NoError(l.t, db.QueryRowContext(l.t.Context(), "SELECT state_desc, is_in_standby FROM sys.databases WHERE name = 'mgc'").Scan(&state, &standby))
	if standby {
		state += " (standby)"
	}
	return state
}

// messages is `chatdr lab messages -o json`.
func (l *faultLab) messages() lab.Messages {
	l.t.Helper()
	r := chatdr(l.t, l.viewer, "lab", "messages", "--dir", l.dir)
	l.t.Logf("lab messages: %s", r.stdout)
	r = chatdr(l.t, l.viewer, "lab", "messages", "--dir", l.dir, "-o", "json")
	require.Equal(l.t, 0, r.code, r.stderr)
	var m lab.Messages
	require.NoError(l.t, json.Unmarshal([]byte(r.stdout), &m), r.stdout)
	return m
}

// requireNoLoss checks that the pool failed over to the backup and holds
// every acknowledged message.
func (l *faultLab) requireNoLoss() {
	l.t.Helper()
	m := l.messages()
	require.Equal(l.t, "FailedOver", m.PoolState)
	require.Equal(l.t, faultBackupHost, m.Database)
	require.Positive(l.t, m.Acknowledged)
	require.Zero(l.t, m.Missing, "acknowledged messages lost: %+v", m)
}

// requireLossAfter checks that every message the old primary acknowledged
// and the new primary lacks was acknowledged after the reported restore
// point, and that the kept ones were not (backup times have one-second
// precision). It returns how many were kept and lost.
func (l *faultLab) requireLossAfter(reached time.Time) (kept, lost int) {
	l.t.Helper()
	t := l.t
	newPrimary := sqlOpenDB(t, l.dir, faultBackupHost, "mgc")
	present := map[string]bool{}
	rows, err := newPrimary.QueryContext(t.Context(), "SELECT body FROM dbo.messages")
	require.NoError(t, err)
	for rows.Next() {
		var b string
		require.NoError(t, rows.Scan(&b))
		present[b] = true
	}
	require.NoError(t, rows.Err())
	var onPrimary []chat.Ack
	for _, s := range l.topo.ChatServers {
		acks, err := chat.ReadAcks(lab.AckFile(l.dir, s.FQDN))
		require.NoError(t, err)
		for _, a := range acks {
			if a.Role == "primary" {
				onPrimary = append(onPrimary, a)
			}
		}
	}
	sort.Slice(onPrimary, func(i, j int) bool { return onPrimary[i].ID < onPrimary[j].ID })
	for _, a := range onPrimary {
		if present[a.Body] {
			require.Zero(t, lost, "message %d is in the backup after a lost one: the loss is not a tail", a.ID)
			require.False(t, a.At.After(reached.Add(time.Second)), "kept message %d acknowledged at %v, after the restore point %v", a.ID, a.At, reached)
			kept++
			continue
		}
		require.False(t, a.At.Before(reached.Add(-time.Second)), "lost message %d acknowledged at %v, before the restore point %v", a.ID, a.At, reached)
		lost++
	}
	t.Logf("restore point %v: %d messages kept, %d acknowledged after it lost", reached, kept, lost)
	m := l.messages()
	require.Equal(t, "FailedOver", m.PoolState)
	require.Equal(t, faultBackupHost, m.Database)
	require.Equal(t, lost, m.Missing, "lab messages counts the same loss")
	return kept, lost
}

// fileTime is the UTC time in a log-shipping file name.
func fileTime(t *testing.T, name string) time.Time {
	t.Helper()
	ts, err := time.Parse("20060102150405", strings.TrimSuffix(strings.TrimPrefix(name, "mgc_"), ".trn"))
	require.NoError(t, err, name)
	return ts
}

func copyFileTo(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst, b, 0o644))
}

func names(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		switch x := x.(type) {
		case string:
			out = append(out, x)
		case map[string]any:
			out = append(out, fmt.Sprint(x["file"]))
		}
	}
	return out
}

// TestFault_LogGap_PlannedPausesAtF3: a log backup is missing from the
// middle of the chain (deleted from the share before it was copied). A
// planned failover must not recover the backup: the LSN proof fails, so the
// run pauses at F3 naming the gap, with the backup still RESTORING. Once
// the file is put back in the copy directory, resume completes the run with
// every acknowledged message (domain §6.5, plans.md rule 4).
func TestFault_LogGap_PlannedPausesAtF3(t *testing.T) {
	l := newFaultLab(t)
	l.setJob(l.copyJob, false)
	bl := l.backlog(3)
	missing := bl[1]
	aside := filepath.Join(t.TempDir(), missing)
	require.NoError(t, os.Rename(filepath.Join(l.topo.LogShipping.BackupShare, missing), aside))

	r := l.failover("planned")
	require.Equal(t, 1, r.code, "the run pauses")
	require.Contains(t, r.stderr, "F3-restore-logs-mgc")
	require.Contains(t, r.stderr, "gap in the log chain")
	require.Contains(t, r.stderr, bl[2], "the first file after the gap is named")
	require.Contains(t, r.stderr, "chatdr run resume run-1")

	run := l.show()
	require.Equal(t, "paused", run.State)
	f3 := run.step(t, "F3-restore-logs-mgc")
	require.Equal(t, "failed", f3.State)
	require.Equal(t, 3, f3.Attempts, "retried within its budget")
	require.Equal(t, "expectation_unmet", f3.Error.Code)
	require.Contains(t, f3.Error.Message, "complete = false, want true")
	require.Contains(t, f3.Error.Message, "gap in the log chain")
	require.Contains(t, f3.Error.Message, "unapplied: "+bl[2])
	require.Equal(t, "pending", run.step(t, "F4b-recover-mgc").State)
	require.Equal(t, "RESTORING", l.dbState(faultBackupHost), "nothing irreversible happened on the backup")
	require.Equal(t, "RESTORING", l.dbState(faultPrimaryHost), "the primary is fenced by its tail-log backup")
	t.Logf("run show:\n%s", l.showText())

	// The fix: the missing log backup, found elsewhere, is put where F3 reads.
	copyFileTo(t, aside, filepath.Join(l.topo.LogShipping.CopyDir, missing))
	r = l.resume()
	require.Equal(t, 0, r.code, r.stderr)
	run = l.show()
	require.Equal(t, "succeeded", run.State)
	out := run.step(t, "F3-restore-logs-mgc").output(t)
	require.Equal(t, true, out["complete"])
	require.Contains(t, names(out["applied"]), missing)
	require.True(t, run.Report.DataLossKnown)
	l.requireNoLoss()
}

// TestFault_LogGap_DisasterNeedsApproval: the same gap in a disaster (dc1
// lost, the share survives). The restore stops at the gap, the window is
// reported with the files left unapplied and why, and recovery waits for an
// approval (exit 4). After the approval the run completes; the messages
// lost are exactly those acknowledged after the reported restore point
// (domain §6.5, plans.md rule 6).
func TestFault_LogGap_DisasterNeedsApproval(t *testing.T) {
	l := newFaultLab(t)
	l.backupHoldsMessages()
	l.setJob(l.copyJob, false)
	bl := l.backlog(3)
	missing := bl[1]
	require.NoError(t, os.Rename(filepath.Join(l.topo.LogShipping.BackupShare, missing), filepath.Join(t.TempDir(), missing)))
	k := chatdr(t, nil, "lab", "kill", "--dir", l.dir, "--site", "dc1")
	require.Equal(t, 0, k.code, k.stderr)

	r := l.failover("disaster")
	require.Equal(t, 4, r.code, "the run waits for approval")
	out := r.stdout + r.stderr
	require.Contains(t, out, "F4b-recover-mgc")
	require.Contains(t, out, "chatdr run approve run-1")
	require.Contains(t, out, "F3-restore-logs-mgc did not complete the restore")
	require.Contains(t, out, "F3-restore-logs-mgc left 1 log backups unapplied: gap in the log chain")
	require.Contains(t, out, "unapplied: "+bl[2])

	run := l.show()
	require.Equal(t, "waiting_approval", run.State)
	f3 := run.step(t, "F3-restore-logs-mgc")
	require.Equal(t, "succeeded", f3.State, "in a disaster a stopped restore is what there is")
	o := f3.output(t)
	require.Equal(t, false, o["complete"])
	require.Contains(t, o["stop_reason"], "gap in the log chain")
	require.Contains(t, o["stop_reason"], bl[2])
	require.Contains(t, names(o["unapplied"]), bl[2])
	require.NotContains(t, names(o["applied"]), bl[2])
	reached, err := time.Parse(time.RFC3339, fmt.Sprint(o["reached_backup_time"]))
	require.NoError(t, err)
	require.True(t, reached.Before(fileTime(t, missing)), "restored to %v, before the missing %s", reached, missing)
	require.False(t, run.Report.DataLossKnown)
	require.Equal(t, "RESTORING", l.dbState(faultBackupHost))
	t.Logf("run show:\n%s", l.showText())

	a := chatdr(t, l.approver, "run", "approve", "run-1", "--reason", "the missing log backup cannot be found; accept the window")
	require.Equal(t, 0, a.code, a.stderr)
	w := chatdr(t, l.viewer, "run", "watch", "run-1")
	require.Equal(t, 0, w.code, "watch: %s\n%s", w.stdout, w.stderr)
	require.Equal(t, "succeeded", l.show().State)
	kept, lost := l.requireLossAfter(reached)
	require.Positive(t, kept, "what was before the gap is kept")
	require.Positive(t, lost, "what was after the gap is lost")
}

// TestFault_TruncatedLog_PlannedPausesAtF3: a log backup on the share is
// truncated (a half-written file). F2 copies it and RESTORE HEADERONLY
// rejects it (checksum); F3 does not apply it and stops at the gap it
// leaves, so the planned failover pauses before recovery. With the good
// file put in the copy directory, resume completes the run without loss
// (domain §6.4).
func TestFault_TruncatedLog_PlannedPausesAtF3(t *testing.T) {
	l := newFaultLab(t)
	l.setJob(l.copyJob, false)
	bl := l.backlog(3)
	bad := bl[1]
	onShare := filepath.Join(l.topo.LogShipping.BackupShare, bad)
	good := filepath.Join(t.TempDir(), bad)
	copyFileTo(t, onShare, good)
	fi, err := os.Stat(onShare)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(onShare, fi.Size()/2))

	r := l.failover("planned")
	require.Equal(t, 1, r.code, "the run pauses")
	require.Contains(t, r.stderr, "F3-restore-logs-mgc")
	require.Contains(t, r.stderr, bad, "the unreadable file is named")

	run := l.show()
	require.Equal(t, "paused", run.State)
	f2 := run.step(t, "F2-copy-logs-mgc").output(t)
	require.Contains(t, names(f2["unreadable"]), bad, "F2 verified the copy and found it unreadable")
	f3 := run.step(t, "F3-restore-logs-mgc")
	require.Equal(t, "failed", f3.State)
	require.Contains(t, f3.Error.Message, "unapplied: "+bad+" (unreadable: ")
	require.Contains(t, f3.Error.Message, "Msg 3203", "the checksum/EOF error is shown")
	require.Equal(t, "RESTORING", l.dbState(faultBackupHost))
	t.Logf("run show:\n%s", l.showText())

	copyFileTo(t, good, filepath.Join(l.topo.LogShipping.CopyDir, bad))
	r = l.resume()
	require.Equal(t, 0, r.code, r.stderr)
	o := l.show().step(t, "F3-restore-logs-mgc").output(t)
	require.Equal(t, true, o["complete"])
	require.Contains(t, names(o["applied"]), bad)
	l.requireNoLoss()
}

// TestFault_WrkLeftByDeadCopyJob: a copy job died while copying, leaving a
// half-written .wrk in the copy directory, and a .wrk lies on the share.
// Neither is ever restored (domain §6.4, §5.2): F2 copies the real .trn
// from the share, F3 applies it, and the planned failover completes
// without loss and without operator action.
func TestFault_WrkLeftByDeadCopyJob(t *testing.T) {
	l := newFaultLab(t)
	l.setJob(l.copyJob, false)
	bl := l.backlog(2)
	src := filepath.Join(l.topo.LogShipping.BackupShare, bl[0])
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	deadCopy := filepath.Join(l.topo.LogShipping.CopyDir, bl[0]+".wrk")
	require.NoError(t, os.WriteFile(deadCopy, b[:len(b)/2], 0o644))
	shareWrk := filepath.Join(l.topo.LogShipping.BackupShare, bl[1]+".wrk")
	require.NoError(t, os.WriteFile(shareWrk, b[:len(b)/3], 0o644))

	r := l.failover("planned")
	require.Equal(t, 0, r.code, r.stderr)
	run := l.show()
	require.Equal(t, "succeeded", run.State)
	f2 := run.step(t, "F2-copy-logs-mgc").output(t)
	require.Contains(t, names(f2["skipped_wrk"]), filepath.Base(shareWrk))
	require.Contains(t, names(f2["copied"]), bl[0])
	require.Empty(t, f2["unreadable"])
	f3 := run.step(t, "F3-restore-logs-mgc").output(t)
	require.Equal(t, true, f3["complete"])
	require.Contains(t, names(f3["applied"]), bl[0])
	for _, f := range names(f3["applied"]) {
		require.False(t, strings.HasSuffix(f, ".wrk"), "a .wrk was restored: %s", f)
	}
	l.requireNoLoss()
}

// TestFault_BackupShareLost_DisasterNeedsApproval: the backup share is
// lost with the primary site while log backups were waiting there to be
// copied. F2 reports the share unreadable without failing (domain §6.3:
// what was copied is all there is), F3 restores what the copy directory
// holds, and the window is reported as unknown ("at least"), so recovery
// waits for an approval. After it the run completes and the loss is the
// tail after the restore point.
func TestFault_BackupShareLost_DisasterNeedsApproval(t *testing.T) {
	l := newFaultLab(t)
	l.backupHoldsMessages()
	l.setJob(l.copyJob, false)
	bl := l.backlog(2)
	k := chatdr(t, nil, "lab", "kill", "--dir", l.dir, "--site", "dc1")
	require.Equal(t, 0, k.code, k.stderr)
	share := l.topo.LogShipping.BackupShare
	require.NoError(t, os.Rename(share, share+".lost-with-dc1"))

	r := l.failover("disaster")
	require.Equal(t, 4, r.code, "the run waits for approval")
	out := r.stdout + r.stderr
	require.Contains(t, out, "chatdr run approve run-1")
	require.Contains(t, out, "F2-copy-logs-mgc could not read the backup share")

	run := l.show()
	require.Equal(t, "waiting_approval", run.State)
	f2 := run.step(t, "F2-copy-logs-mgc")
	require.Equal(t, "succeeded", f2.State)
	o2 := f2.output(t)
	require.Equal(t, false, o2["source_readable"])
	require.Contains(t, o2["error"], "no such file or directory")
	o3 := run.step(t, "F3-restore-logs-mgc").output(t)
	reached, err := time.Parse(time.RFC3339, fmt.Sprint(o3["reached_backup_time"]))
	require.NoError(t, err)
	require.True(t, reached.Before(fileTime(t, bl[0])), "restored to %v, before the uncopied %s", reached, bl[0])
	require.False(t, run.Report.DataLossKnown)
	require.Contains(t, strings.Join(run.Report.DataLossNotes, "\n"), "could not read the backup share")
	require.Equal(t, "RESTORING", l.dbState(faultBackupHost))
	t.Logf("run show:\n%s", l.showText())

	a := chatdr(t, l.approver, "run", "approve", "run-1", "--reason", "the share is lost with dc1; accept the window")
	require.Equal(t, 0, a.code, a.stderr)
	w := chatdr(t, l.viewer, "run", "watch", "run-1")
	require.Equal(t, 0, w.code, "watch: %s\n%s", w.stdout, w.stderr)
	kept, lost := l.requireLossAfter(reached)
	require.Positive(t, kept, "what was copied before the share was lost is kept")
	require.Positive(t, lost, "the log backups left on the share are lost")
}

// TestFault_SQLAgentStoppedOnBackup: SQL Server Agent is stopped on the
// backup instance, so the copy and restore jobs stopped running and a
// backlog builds up on the share (domain §6.8). Preflight says NO-GO and
// why; the failover itself needs nothing from Agent (F0d finds no job
// running, F2 and F3 copy and restore the backlog themselves), so a planned
// failover started anyway completes without loss.
func TestFault_SQLAgentStoppedOnBackup(t *testing.T) {
	l := newFaultLab(t)
	l.exec("EXEC master.dbo.xp_servicecontrol N'STOP', N'SQLServerAgent'")
	bl := l.backlog(3)

	p := chatdr(t, l.viewer, "preflight", "--pool", lab.Pool, "--mode", "planned")
	t.Logf("preflight: exit %d\n%s%s", p.code, p.stdout, p.stderr)
	require.Equal(t, 1, p.code, "NO-GO")
	require.Regexp(t, `sql_agent_running\s+FAIL\s+sql1\.dc2\.chatdr\.lab\s+SQL Server Agent is not running on sql1\.dc2\.chatdr\.lab`, p.stdout)

	r := l.failover("planned")
	require.Equal(t, 0, r.code, r.stderr)
	run := l.show()
	require.Equal(t, "succeeded", run.State)
	f3 := run.step(t, "F3-restore-logs-mgc").output(t)
	require.Equal(t, true, f3["complete"])
	applied := names(f3["applied"])
	for _, f := range bl {
		require.Contains(t, applied, f, "the backlog is restored by F3")
	}
	l.requireNoLoss()

	// Agent can be started again afterwards (failback needs it).
	l.exec("EXEC master.dbo.xp_servicecontrol N'START', N'SQLServerAgent'")
}

// TestFault_CopyJobRunningAtFailover: the copy job is in the middle of a
// copy (a slow destination: its .wrk is a FIFO the test drains) when a
// planned failover starts. F0d asks Agent to stop it, disables the jobs and
// waits until the job no longer runs before anything is restored by hand
// (domain F0d, §6.7); the run completes without loss.
func TestFault_CopyJobRunningAtFailover(t *testing.T) {
	l := newFaultLab(t)
	l.setJob(l.copyJob, false)
	bl := l.backlog(1)
	slow := filepath.Join(l.topo.LogShipping.CopyDir, bl[0]+".wrk")
	require.NoError(t, syscall.Mkfifo(slow, 0o644))
	drained := make(chan struct{})
	drain := func(flags int) {
		f, err := os.OpenFile(slow, os.O_RDONLY|flags, 0)
		if err == nil {
			_, _ = io.Copy(io.Discard, f)
			f.Close()
		}
	}
	t.Cleanup(func() {
		select {
		case <-drained:
		default: // unblock the copy job so that the instance can stop
			drain(syscall.O_NONBLOCK)
		}
	})
	l.setJob(l.copyJob, true)
	running := func() bool {
		var n int
		require.NoError(t, l.backup.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM msdb.dbo.sysjobactivity ja JOIN msdb.dbo.sysjobs j ON j.job_id = ja.job_id
WHERE j.name = @p1 AND ja.session_id = (SELECT MAX(session_id) FROM msdb.dbo.syssessions)
AND ja.start_execution_date IS NOT NULL AND ja.stop_execution_date IS NULL`, l.copyJob).Scan(&n))
		return n > 0
	}
	require.NoError(t, testutil.Eventually(30*time.Second, 200*time.Millisecond, func() error {
		if !running() {
			return fmt.Errorf("%s not running", l.copyJob)
		}
		return nil
	}))

	done := make(chan result, 1)
	go func() {
		done <- chatdr(t, l.operator, "failover", "--pool", lab.Pool, "--mode", "planned", "--yes", "--wait")
	}()
	// F0d waits for the job: it stays running while the copy is stuck.
	var f0dStarted time.Time
	require.NoError(t, testutil.Eventually(2*time.Minute, 300*time.Millisecond, func() error {
		r := chatdr(t, l.viewer, "run", "show", "run-1", "-o", "json")
		if r.code != 0 {
			return fmt.Errorf("run show: %s", r.stderr)
		}
		var run runShowJSON
		if err := json.Unmarshal([]byte(r.stdout), &run); err != nil {
			return err
		}
		for _, s := range run.Steps {
			if s.ID == "F0d-disable-log-shipping-jobs" && s.State == "running" {
				if f0dStarted.IsZero() {
					f0dStarted = time.Now()
				}
				if time.Since(f0dStarted) > 3*time.Second {
					return nil
				}
				return fmt.Errorf("F0d running for %v", time.Since(f0dStarted))
			}
		}
		return fmt.Errorf("F0d not running yet")
	}))
	require.True(t, running(), "the copy job still runs while F0d waits")
	require.Equal(t, "RESTORING", l.dbState(faultBackupHost))
	// The slow copy ends.
	released := time.Now()
	go func() {
		defer close(drained)
		drain(0)
	}()

	var r result
	select {
	case r = <-done:
	case <-time.After(5 * time.Minute):
		t.Fatal("the failover did not end")
	}
	t.Logf("failover: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	require.Equal(t, 0, r.code, r.stderr)
	run := l.show()
	require.Equal(t, "succeeded", run.State)
	f0d := run.step(t, "F0d-disable-log-shipping-jobs")
	require.Equal(t, 1, f0d.Attempts, "F0d waited for the job instead of failing")
	require.True(t, f0d.Ended.After(released), "F0d ended at %v, after the stuck copy was released at %v", f0d.Ended, released)
	jobs := f0d.output(t)["jobs"].(map[string]any)
	require.Equal(t, "disabled", jobs[l.copyJob])
	require.Equal(t, "disabled", jobs[l.restoreJob])
	var left int
	require.NoError(t, l.backup.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM msdb.dbo.sysjobs WHERE name = @p1 OR name = @p2", l.copyJob, l.restoreJob).Scan(&left))
	require.Zero(t, left, "F1 dropped the log-shipping jobs")
	f3 := run.step(t, "F3-restore-logs-mgc").output(t)
	require.Equal(t, true, f3["complete"])
	require.Contains(t, names(f3["applied"]), bl[0])
	l.requireNoLoss()
}

// TestFault_SessionsHoldMgc_RecoveryMeets3101: the backup restores in
// STANDBY without disconnecting users, where readers can connect to mgc
// (and make the restore job fail while they do). A reader connected before
// the failover is killed by the plan (F3-kill-sessions-before-restore). A
// reader that connects again while RESTORE WITH RECOVERY is about to run
// makes it fail with Msg 3101; F4b retries within its budget, then the
// run pauses with the error and its hint. Once the reader is gone, resume
// completes the run without loss (domain F4a, §6.9).
func TestFault_SessionsHoldMgc_RecoveryMeets3101(t *testing.T) {
	l := newFaultLab(t)
	l.exec("EXEC master.dbo.sp_change_log_shipping_secondary_database @secondary_database = N'mgc', @restore_mode = 1, @disconnect_users = 0")
	require.NoError(t, testutil.Eventually(90*time.Second, 500*time.Millisecond, func() error {
		if s := l.dbState(faultBackupHost); s != "ONLINE (standby)" {
			return fmt.Errorf("backup mgc is %s", s)
		}
		return nil
	}))
	// A reporting reader holds mgc on the backup.
	reader := sqlOpenDB(t, l.dir, faultBackupHost, "mgc")
	early, err := reader.Conn(t.Context())
	require.NoError(t, err)
	defer early.Close()
	var n int
	require.NoError(t, early.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM dbo.messages").Scan(&n))
	// RESTORE … WITH RECOVERY waits 4 s before it runs, so that a reader
	// can come back after F4a.
	l.exec("EXEC master.dbo.sp_chatdr_fault @action = N'add', @match = N'(?i)^RESTORE DATABASE .* WITH RECOVERY', @delay_ms = 4000, @count = -1")

	done := make(chan result, 1)
	go func() {
		done <- chatdr(t, l.operator, "failover", "--pool", lab.Pool, "--mode", "planned", "--yes", "--wait")
	}()
	var late *sql.Conn
	defer func() {
		if late != nil {
			late.Close()
		}
	}()
	require.NoError(t, testutil.Eventually(3*time.Minute, 100*time.Millisecond, func() error {
		r := chatdr(t, l.viewer, "run", "show", "run-1", "-o", "json")
		if r.code != 0 {
			return fmt.Errorf("run show: %s", r.stderr)
		}
		var run runShowJSON
		if err := json.Unmarshal([]byte(r.stdout), &run); err != nil {
			return err
		}
		for _, s := range run.Steps {
			if s.ID == "F4b-recover-mgc" && s.State == "running" {
				c, err := reader.Conn(t.Context())
				if err != nil {
					return err
				}
				if err := c.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM dbo.messages").Scan(&n); err != nil {
					c.Close()
					return err
				}
				late = c
				return nil
			}
		}
		return fmt.Errorf("F4b not running yet (run %s)", run.State)
	}))
	// The early reader was killed by the plan before the restores.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.Error(t, early.QueryRowContext(ctx, "SELECT COUNT(*) FROM dbo.messages").Scan(&n), "the reader connected before the failover was killed")

	var r result
	select {
	case r = <-done:
	case <-time.After(5 * time.Minute):
		t.Fatal("the failover did not end")
	}
	t.Logf("failover: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	require.Equal(t, 1, r.code, "the run pauses")
	require.Contains(t, r.stderr, "3101")
	require.Contains(t, r.stderr, "sessions hold the database: find them with sp_who2")
	run := l.show()
	require.Equal(t, "paused", run.State)
	f4b := run.step(t, "F4b-recover-mgc")
	require.Equal(t, "failed", f4b.State)
	require.Equal(t, 2, f4b.Attempts)
	require.Equal(t, "sql_3101", f4b.Error.Code)
	require.Equal(t, "ONLINE (standby)", l.dbState(faultBackupHost), "not recovered")
	killed, _ := run.step(t, "F3-kill-sessions-before-restore-mgc").output(t)["killed"].([]any)
	require.NotEmpty(t, killed, "the early reader was killed before the restores")
	t.Logf("run show:\n%s", l.showText())

	// The fix: the reader goes away; resume retries F4b.
	require.NoError(t, late.Close())
	late = nil
	require.NoError(t, reader.Close())
	l.exec("EXEC master.dbo.sp_chatdr_fault @action = N'clear'")
	r = l.resume()
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "succeeded", l.show().State)
	require.Equal(t, "ONLINE", l.dbState(faultBackupHost))
	l.requireNoLoss()
}
