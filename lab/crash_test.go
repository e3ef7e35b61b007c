//go:build !windows

package lab_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/agent/journal"
	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/lab"
)

// runJSON is the part of `chatdr run show -o json` these tests read.
type runJSON struct {
	State string `json:"state"`
	Steps []struct {
		ID          string `json:"id"`
		Action      string `json:"action"`
		Host        string `json:"host"`
		State       string `json:"state"`
		Attempts    int    `json:"attempts"`
		Destructive bool   `json:"destructive"`
	} `json:"steps"`
}

// showRun reads a run through the CLI; ok is false while the controller
// does not answer.
func showRun(t *testing.T, env []string, id string) (runJSON, bool) {
	t.Helper()
	r := chatdr(t, env, "run", "show", id, "-o", "json")
	if r.code != 0 {
		return runJSON{}, false
	}
	var run runJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &run), r.stdout)
	return run, true
}

// controllerRunning reports whether the lab's controller process is alive.
func controllerRunning(t *testing.T, dir string) bool {
	t.Helper()
	ps, err := lab.Status(dir)
	require.NoError(t, err)
	for _, p := range ps {
		if p.Kind == lab.KindController {
			return p.Running
		}
	}
	t.Fatalf("the lab in %s has no controller", dir)
	return false
}

// sqlOpenDB opens database db on the lab's SQL simulator of host.
func sqlOpenDB(t *testing.T, dir, host, db string) *sql.DB {
	t.Helper()
	st, err := lab.Load(dir)
	require.NoError(t, err)
	addr := ""
	for _, p := range st.Procs {
		if p.Name == lab.KindSQL+"."+host {
			addr = p.Address
		}
	}
	require.NotEmpty(t, addr, "no SQL simulator for %s", host)
	pw, err := os.ReadFile(st.SQLPasswordFile)
	require.NoError(t, err)
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", strings.TrimSpace(string(pw))), Host: addr}
	u.RawQuery = url.Values{"database": {db}, "encrypt": {"disable"}}.Encode()
	d, err := sql.Open("sqlserver", u.String())
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

// TestLab_ControllerKilledAtEveryStepBoundary is the crash test of issue 5:
// a planned failover runs with a controller that kills itself (SIGKILL)
// right after each step's end is durable — every step boundary — and once
// more by the test in the middle of a long restore (F3). The lab restarts
// it each time. The run completes, every acknowledged message is in the
// new primary, and the agents' journals show each destructive action
// executed exactly once.
func TestLab_ControllerKilledAtEveryStepBoundary(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() { _, _ = lab.Down(dir, 5*time.Second) })
	up := chatdr(t, nil, "lab", "up", "--dir", dir, "--bin", binDir)
	require.Equal(t, 0, up.code, "lab up: %s", up.stderr)
	env := labEnv(up.stdout)
	operator := slices.Concat(env, []string{"CHATDR_IDENTITY=operator"})
	viewer := slices.Concat(env, []string{"CHATDR_IDENTITY=viewer"})
	waitFirstAck(t, dir)

	// Every RESTORE LOG on the backup instance takes 3 s more: F3 is long
	// enough to be killed in.
	backup := sqlOpenDB(t, dir, "sql1.dc2.chatdr.lab", "master")
	_, err := backup.ExecContext(t.Context(), "EXEC master.dbo.sp_chatdr_fault @action = 'add', @match = '^RESTORE LOG', @delay_ms = 3000, @count = -1")
	require.NoError(t, err)

	// The controller from now on dies after the first step that ends.
	crash := []string{"CHATDR_CONTROLLER_CRASH=step-done:1"}
	_, err = lab.Kill(dir, "controller")
	require.NoError(t, err)
	require.NoError(t, testutil.Eventually(30*time.Second, 100*time.Millisecond, func() error {
		if controllerRunning(t, dir) {
			return fmt.Errorf("controller still running")
		}
		return nil
	}))
	restart := func() {
		// lab up starts what is not running; it may report an error when
		// the controller dies again before the fleet looked healthy.
		chatdr(t, crash, "lab", "up", "--dir", dir, "--bin", binDir)
	}
	restart()
	// The answer may be lost if the controller dies right after the run
	// was created; the run is found below either way.
	chatdr(t, operator, "failover", "--pool", lab.Pool, "--mode", "planned", "--yes")

	deadline := time.Now().Add(15 * time.Minute)
	crashes, killedInRestore := 0, false
	var run runJSON
	for {
		require.True(t, time.Now().Before(deadline), "the run did not complete after %d controller crashes: %+v", crashes, run)
		// Wait until the controller died, or the run ended.
		done := false
		require.NoError(t, testutil.Eventually(2*time.Minute, 200*time.Millisecond, func() error {
			if !controllerRunning(t, dir) {
				return nil
			}
			r, ok := showRun(t, viewer, "run-1")
			if !ok {
				return fmt.Errorf("controller not answering")
			}
			run = r
			if r.State == "succeeded" || r.State == "failed" || r.State == "paused" || r.State == "cancelled" {
				done = true
				return nil
			}
			if !killedInRestore {
				for _, s := range r.Steps {
					if s.ID == "F3-restore-logs-mgc" && s.State == "running" {
						_, err := lab.Kill(dir, "controller")
						killedInRestore = err == nil
						return err
					}
				}
			}
			return fmt.Errorf("run %s, controller alive", r.State)
		}))
		if done {
			break
		}
		crashes++
		restart()
	}
	t.Logf("run-1 %s after %d controller kills", run.State, crashes)
	require.Equal(t, "succeeded", run.State, "%+v", run)
	require.True(t, killedInRestore, "the controller was killed while F3 ran")
	ended := 0
	for _, s := range run.Steps {
		if s.State == "succeeded" || s.State == "skipped" {
			ended++
		}
	}
	require.Equal(t, len(run.Steps), ended)
	// One kill per step boundary (the last step's end kills it too, the
	// kill in F3 is one more), give or take steps of a group that ended
	// together before a restart.
	require.GreaterOrEqual(t, crashes, len(run.Steps)/2, "the controller was killed at the step boundaries")

	m := chatdr(t, viewer, "lab", "messages", "--dir", dir)
	t.Logf("lab messages: %s", m.stdout)
	require.Equal(t, 0, m.code, m.stderr)
	require.Contains(t, m.stdout, "pool FailedOver, database on sql1.dc2.chatdr.lab")
	require.Contains(t, m.stdout, " 0 missing")

	// The agents' journals: each destructive step ran once, with one key.
	_, err = lab.Down(dir, 10*time.Second)
	require.NoError(t, err)
	st, err := lab.Load(dir)
	require.NoError(t, err)
	keys := map[string][]journal.Record{} // step ID -> executions
	for _, p := range st.Procs {
		if p.Kind != lab.KindAgent {
			continue
		}
		j, _, err := journal.Open(filepath.Join(filepath.Dir(p.Config), "state"))
		require.NoError(t, err, p.Name)
		recs, err := j.All()
		require.NoError(t, j.Close())
		require.NoError(t, err, p.Name)
		for _, r := range recs {
			parts := strings.Split(r.Key, "/")
			if len(parts) == 3 && parts[0] == "run-1" {
				keys[parts[1]] = append(keys[parts[1]], r)
			}
		}
	}
	// Every journaled execution is an attempt the controller counted: no
	// request was sent behind its back, before or after a crash.
	for _, s := range run.Steps {
		if recs := keys[s.ID]; len(recs) > 0 {
			require.Len(t, recs, s.Attempts, "step %s: journal executions vs the run's attempts", s.ID)
		}
	}
	// The restore the controller was killed in ran once, to its end.
	require.Len(t, keys["F3-restore-logs-mgc"], 1)
	require.Equal(t, "EXECUTION_STATE_SUCCEEDED", keys["F3-restore-logs-mgc"][0].State.String())
	var checked []string
	for _, s := range run.Steps {
		if !s.Destructive {
			continue
		}
		checked = append(checked, s.ID)
		recs := keys[s.ID]
		require.Len(t, recs, 1, "step %s (%s on %s) executed %d times: %+v", s.ID, s.Action, s.Host, len(recs), recs)
		require.Equal(t, s.Action, recs[0].Action)
		require.Equal(t, "EXECUTION_STATE_SUCCEEDED", recs[0].State.String(), "step %s", s.ID)
	}
	t.Logf("destructive steps executed once each: %s", strings.Join(checked, ", "))
	require.Contains(t, checked, "F0a-tail-log-backup-mgc")
	require.Contains(t, checked, "F4b-recover-mgc")
}
