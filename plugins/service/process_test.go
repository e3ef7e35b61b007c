//go:build linux

package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/internal/cfgfile"
	"github.com/chatdr/chatdr/pluginsdk"
)

func TestProcess_StartStatusStop_lifecycle(t *testing.T) {
	l := newLab(t)
	l.add("RTCCHAT", "term")
	p := l.plugin()
	name := pluginsdk.Params{"name": "RTCCHAT"}

	out := mustRun(t, p, "service.status", name)
	require.Equal(t, "stopped", out["state"])
	require.Equal(t, false, out["changed"])

	out = mustRun(t, p, "service.start", pluginsdk.Params{"name": "RTCCHAT", "timeout": "30s"})
	require.Equal(t, true, out["changed"])
	require.Equal(t, "running", out["state"])
	require.Equal(t, "process", out["backend"])
	pid := pidOf(out)
	require.NotZero(t, pid)
	require.NotEqual(t, os.Getpid(), pid)
	require.True(t, procRunning(pid), "the service's pid is a live process")
	since, err := time.Parse(time.RFC3339Nano, out["since"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), since, time.Minute)
	// The fake service itself says it runs, with that pid and its argv
	// passed literally (no shell ran "$(touch pwned)" or `id`).
	eventually(t, 10*time.Second, func() error {
		if got := l.heartbeatPID("RTCCHAT"); got != pid {
			return fmt.Errorf("heartbeat pid %d, want %d", got, pid)
		}
		return nil
	})
	hb, err := os.ReadFile(l.heartbeat("RTCCHAT"))
	require.NoError(t, err)
	require.Contains(t, string(hb), `"--label=it's [x]; $(touch pwned) `+"`id`"+`"`)
	require.NoFileExists(t, filepath.Join(l.dir, "pwned"))

	// The state file records pid, start time, command line.
	rec := l.record("RTCCHAT")
	require.Equal(t, pid, rec.PID)
	require.Equal(t, l.cfg.Services["RTCCHAT"].Command, rec.Command)
	require.NotZero(t, rec.Ident)
	require.False(t, rec.StopRequested)

	// Start again: nothing to do.
	out = mustRun(t, p, "service.start", name)
	require.Equal(t, false, out["changed"])
	require.Equal(t, pid, pidOf(out))

	// A new plugin instance (a restarted plugin) adopts the service.
	require.NoError(t, p.Close())
	p2 := l.plugin()
	out = mustRun(t, p2, "service.status", name)
	require.Equal(t, "running", out["state"])
	require.Equal(t, pid, pidOf(out))
	require.Equal(t, since.Format(time.RFC3339Nano), out["since"])

	out = mustRun(t, p2, "service.stop", pluginsdk.Params{"name": "RTCCHAT", "timeout": "30s"})
	require.Equal(t, true, out["changed"])
	require.Equal(t, "stopped", out["state"])
	require.Equal(t, false, out["killed"])
	require.Equal(t, true, out["graceful"])
	requireGone(t, pid)
	require.FileExists(t, l.heartbeat("RTCCHAT")+".term", "the service got SIGTERM and exited by itself")
	rec = l.record("RTCCHAT")
	require.True(t, rec.StopRequested)
	require.False(t, rec.Stopped.IsZero())

	out = mustRun(t, p2, "service.stop", name)
	require.Equal(t, false, out["changed"])
	require.Equal(t, "stopped", out["state"])

	out = mustRun(t, p2, "service.status", name)
	require.Equal(t, "stopped", out["state"])
	require.Equal(t, float64(0), out["pid"])

	// The log file got the plugin's markers.
	log, err := os.ReadFile(filepath.Join(l.stateDir, "service", "RTCCHAT.log"))
	require.NoError(t, err)
	require.Contains(t, string(log), "chatdr service plugin: starting RTCCHAT")
}

func TestProcess_Stop_killsAfterGrace(t *testing.T) {
	l := newLab(t)
	l.add("STUBBORN", "ignore-term", func(sc *serviceConfig) { sc.StopGrace = cfgfile.Duration(400 * time.Millisecond) })
	p := l.plugin()
	out := mustRun(t, p, "service.start", pluginsdk.Params{"name": "STUBBORN"})
	pid := pidOf(out)
	// Only once it ignores SIGTERM is the test meaningful.
	eventually(t, 10*time.Second, func() error {
		if l.heartbeatPID("STUBBORN") != pid {
			return errors.New("no heartbeat yet")
		}
		return nil
	})
	began := time.Now()
	out = mustRun(t, p, "service.stop", pluginsdk.Params{"name": "STUBBORN", "timeout": "30s"})
	require.GreaterOrEqual(t, time.Since(began), 400*time.Millisecond, "the grace period was given")
	require.Equal(t, true, out["changed"])
	require.Equal(t, true, out["killed"])
	require.Equal(t, "stopped", out["state"])
	requireGone(t, pid)
	require.NoFileExists(t, l.heartbeat("STUBBORN")+".term")
}

func TestProcess_Stop_notGracefulKillsAtOnce(t *testing.T) {
	l := newLab(t)
	l.add("A", "term") // would exit on SIGTERM; graceful=false must not send it
	p := l.plugin()
	pid := pidOf(mustRun(t, p, "service.start", pluginsdk.Params{"name": "A"}))
	out := mustRun(t, p, "service.stop", pluginsdk.Params{"name": "A", "graceful": false})
	require.Equal(t, true, out["killed"])
	require.Equal(t, false, out["graceful"])
	requireGone(t, pid)
	require.NoFileExists(t, l.heartbeat("A")+".term")
}

func TestProcess_Supervisor_restartsOnFailure(t *testing.T) {
	l := newLab(t)
	l.add("RTCCHAT", "term", func(sc *serviceConfig) { sc.Restart = restartOnFailure })
	p := l.plugin()
	name := pluginsdk.Params{"name": "RTCCHAT"}
	first := pidOf(mustRun(t, p, "service.start", name))

	// Killed from outside: the supervisor starts it again and counts it.
	require.NoError(t, syscall.Kill(first, syscall.SIGKILL))
	requireGone(t, first)
	var second int
	eventually(t, 15*time.Second, func() error {
		out := mustRun(t, p, "service.status", name)
		if out["state"] != "running" || pidOf(out) == first || out["restarts"] != float64(1) {
			return fmt.Errorf("status %v", out)
		}
		second = pidOf(out)
		return nil
	})
	require.True(t, procRunning(second))
	eventually(t, 10*time.Second, func() error {
		if l.heartbeatPID("RTCCHAT") != second {
			return errors.New("the restarted service has not written its heartbeat")
		}
		return nil
	})
	rec := l.record("RTCCHAT")
	require.Equal(t, 1, rec.Restarts)
	require.Equal(t, "signal: killed", rec.LastExit)

	// An explicit stop is not undone by the supervisor.
	out := mustRun(t, p, "service.stop", name)
	require.Equal(t, true, out["changed"])
	requireGone(t, second)
	never(t, 1500*time.Millisecond, func() error { // > 7 supervisor rounds
		if rec := l.record("RTCCHAT"); rec.PID != second || !rec.StopRequested {
			return fmt.Errorf("the supervisor restarted a stopped service: %+v", rec)
		}
		return nil
	})
	out = mustRun(t, p, "service.status", name)
	require.Equal(t, "stopped", out["state"])
	require.Equal(t, float64(1), out["restarts"])

	// Started again, then killed while no plugin runs: the next plugin
	// instance's supervisor restarts it.
	third := pidOf(mustRun(t, p, "service.start", name))
	require.NoError(t, p.Close())
	require.NoError(t, syscall.Kill(third, syscall.SIGKILL))
	requireGone(t, third)
	p2 := l.plugin()
	eventually(t, 15*time.Second, func() error {
		out := mustRun(t, p2, "service.status", name)
		if out["state"] != "running" || pidOf(out) == third || out["restarts"] != float64(2) {
			return fmt.Errorf("status %v", out)
		}
		return nil
	})
}

func TestProcess_Supervisor_restartNeverLeavesItDead(t *testing.T) {
	l := newLab(t)
	l.add("A", "term") // restart: never (the default)
	p := l.plugin()
	pid := pidOf(mustRun(t, p, "service.start", pluginsdk.Params{"name": "A"}))
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	eventually(t, 10*time.Second, func() error {
		out := mustRun(t, p, "service.status", pluginsdk.Params{"name": "A"})
		if out["state"] != "stopped" {
			return fmt.Errorf("status %v", out)
		}
		if d, _ := out["detail"].(string); !strings.Contains(d, "exited without a stop request") {
			return fmt.Errorf("detail %q", d)
		}
		return nil
	})
	never(t, time.Second, func() error {
		if l.record("A").PID != pid {
			return errors.New("a restart: never service was restarted")
		}
		return nil
	})
}

func TestProcess_DependsOn_order(t *testing.T) {
	l := newLab(t)
	l.add("A", "term")
	l.add("B", "term", func(sc *serviceConfig) { sc.DependsOn = []string{"A"} })
	l.add("C", "term", func(sc *serviceConfig) { sc.DependsOn = []string{"B"} })
	p := l.plugin()

	out := mustRun(t, p, "service.start", pluginsdk.Params{"name": "C"})
	require.Equal(t, true, out["changed"])
	require.Equal(t, []any{"A", "B"}, out["started_dependencies"])
	for _, n := range []string{"A", "B", "C"} {
		require.True(t, procRunning(l.record(n).PID), n)
	}
	// Each fake service wrote "start NAME" when it began: A, then B, then C.
	require.Equal(t, []string{"start_A", "start_B", "start_C"}, l.waitEvents(t, 3))

	// Starting C again changes nothing, not even its dependencies.
	out = mustRun(t, p, "service.start", pluginsdk.Params{"name": "C"})
	require.Equal(t, false, out["changed"])
	require.Equal(t, []any{}, out["started_dependencies"])

	// Stopping A stops C, then B, then A (each got SIGTERM and said so).
	out = mustRun(t, p, "service.stop", pluginsdk.Params{"name": "A"})
	require.Equal(t, true, out["changed"])
	require.Equal(t, []any{"C", "B"}, out["stopped_dependents"])
	require.Equal(t, []string{"start_A", "start_B", "start_C", "stop_C", "stop_B", "stop_A"}, l.events())
	for _, n := range []string{"A", "B", "C"} {
		require.Equal(t, "stopped", mustRun(t, p, "service.status", pluginsdk.Params{"name": n})["state"], n)
	}
}

func TestProcess_Start_failsWhenItExitsAtOnce(t *testing.T) {
	l := newLab(t)
	l.add("BROKEN", "exit1")
	p := l.plugin()
	// "At once" must hold on a loaded machine too.
	p.rt.be.(*processBackend).settle = 10 * time.Second
	_, err := run(t, p, "service.start", pluginsdk.Params{"name": "BROKEN"})
	pe := requireCodeOf(t, err, CodeStartFailed)
	require.False(t, pe.Retryable)
	require.Contains(t, pe.Message, "exit status 1")
	require.Contains(t, pe.Message, "boom: cannot open the database", "the error quotes the service's log")
	require.Contains(t, pe.Hint, "BROKEN.log")

	l.add("MISSING", "term", func(sc *serviceConfig) { sc.Command = []string{filepath.Join(l.dir, "no-such-program")} })
	p = l.plugin()
	_, err = run(t, p, "service.start", pluginsdk.Params{"name": "MISSING"})
	pe = requireCodeOf(t, err, CodeStartFailed)
	require.Contains(t, pe.Message, "no-such-program")
}

// A state file whose pid now belongs to another process (the pid was
// recycled) must not make the plugin take that process for the service, nor
// signal it.
func TestProcess_RecycledPid_isNotTheService(t *testing.T) {
	l := newLab(t)
	l.add("RTCCHAT", "term")
	p := l.plugin()

	// Another program, started by the test, that happens to have the pid.
	other := exec.Command(os.Args[0], "--someone-else")
	other.Env = append(os.Environ(), envFakeService+"=term", envHeartbeat+"="+filepath.Join(l.dir, "other.heartbeat"))
	require.NoError(t, other.Start())
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	realIdent := inspect(other.Process.Pid).ident
	require.NotZero(t, realIdent)

	for _, tc := range []struct {
		name string
		rec  procRecord
	}{
		{"other command line", procRecord{Command: l.cfg.Services["RTCCHAT"].Command, Ident: realIdent}},
		{"same command line, other start time", procRecord{Command: other.Args, Ident: realIdent + 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := tc.rec
			rec.Name, rec.PID, rec.Started = "RTCCHAT", other.Process.Pid, time.Now()
			data, err := json.Marshal(rec)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(l.stateDir, "service", "RTCCHAT.json"), data, 0o600))

			out := mustRun(t, p, "service.status", pluginsdk.Params{"name": "RTCCHAT"})
			require.Equal(t, "stopped", out["state"])
			out = mustRun(t, p, "service.stop", pluginsdk.Params{"name": "RTCCHAT"})
			require.Equal(t, false, out["changed"])
			require.True(t, procRunning(other.Process.Pid), "the other process was not signalled")
		})
	}
	// Sanity: the real record (same command, same start time) is adopted.
	rec := procRecord{Name: "RTCCHAT", PID: other.Process.Pid, Ident: realIdent, Command: other.Args, Started: time.Now()}
	data, err := json.Marshal(rec)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(l.stateDir, "service", "RTCCHAT.json"), data, 0o600))
	require.Equal(t, "running", mustRun(t, p, "service.status", pluginsdk.Params{"name": "RTCCHAT"})["state"])
}

func TestProcess_Status_zombieIsDead(t *testing.T) {
	l := newLab(t)
	l.add("RTCCHAT", "term")
	p := l.plugin()
	// A child of the test that exits and is not reaped stays a zombie.
	z := exec.Command(os.Args[0], "--zombie")
	z.Env = append(os.Environ(), envFakeService+"=exit1")
	require.NoError(t, z.Start())
	t.Cleanup(func() { _ = z.Wait() })
	zpid := z.Process.Pid
	eventually(t, 10*time.Second, func() error {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", zpid))
		if err != nil || !strings.Contains(string(b[strings.LastIndexByte(string(b), ')'):]), ") Z") {
			return errors.New("not a zombie yet")
		}
		return nil
	})
	rec := procRecord{Name: "RTCCHAT", PID: zpid, Command: z.Args, Started: time.Now()}
	data, err := json.Marshal(rec)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(l.stateDir, "service", "RTCCHAT.json"), data, 0o600))
	require.Equal(t, "stopped", mustRun(t, p, "service.status", pluginsdk.Params{"name": "RTCCHAT"})["state"])
}

func TestProcess_Wait(t *testing.T) {
	l := newLab(t)
	l.add("A", "term")
	p := l.plugin()

	out := mustRun(t, p, "service.wait", pluginsdk.Params{"name": "A", "state": "stopped"})
	require.Equal(t, "stopped", out["state"])
	require.Equal(t, false, out["changed"])

	_, err := run(t, p, "service.wait", pluginsdk.Params{"name": "A", "state": "running", "timeout": "300ms"})
	pe := requireCodeOf(t, err, CodeTimeout)
	require.True(t, pe.Retryable)
	require.Contains(t, pe.Message, "it is stopped")

	// A wait in flight sees the service another call starts.
	done := make(chan pluginsdk.Output, 1)
	go func() {
		out, err := p.Execute(t.Context(), &pluginsdk.Request{Action: "service.wait",
			Params: pluginsdk.Params{"name": "A", "state": "running", "timeout": "30s"}}, &recorder{})
		if err != nil {
			out = pluginsdk.Output{"error": err.Error()}
		}
		done <- out
	}()
	pid := pidOf(mustRun(t, p, "service.start", pluginsdk.Params{"name": "A"}))
	select {
	case out := <-done:
		require.Equal(t, "running", out["state"], "%v", out)
		require.Equal(t, pid, pidOf(out))
	case <-time.After(30 * time.Second):
		t.Fatal("service.wait did not return")
	}

	_, err = run(t, p, "service.wait", pluginsdk.Params{"name": "A", "state": "starting"})
	requireCodeOf(t, err, CodeBadParams)
}

func TestProcess_Cancel_stopsWaiting(t *testing.T) {
	l := newLab(t)
	l.add("A", "term")
	p := l.plugin()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := p.Execute(ctx, &pluginsdk.Request{Action: "service.wait", Params: pluginsdk.Params{"name": "A", "state": "running"}}, &recorder{})
	require.Equal(t, "cancelled", pluginsdk.AsError(err).Code)
}

// A stop whose action timed out still kills the service after its grace.
func TestProcess_Stop_timeoutLeavesTheKillScheduled(t *testing.T) {
	l := newLab(t)
	l.add("STUBBORN", "ignore-term", func(sc *serviceConfig) { sc.StopGrace = cfgfile.Duration(time.Second) })
	p := l.plugin()
	pid := pidOf(mustRun(t, p, "service.start", pluginsdk.Params{"name": "STUBBORN"}))
	eventually(t, 10*time.Second, func() error {
		if l.heartbeatPID("STUBBORN") != pid {
			return errors.New("no heartbeat yet")
		}
		return nil
	})
	_, err := run(t, p, "service.stop", pluginsdk.Params{"name": "STUBBORN", "timeout": "200ms"})
	pe := requireCodeOf(t, err, CodeTimeout)
	require.True(t, pe.Retryable)
	require.Equal(t, "stopping", mustRun(t, p, "service.status", pluginsdk.Params{"name": "STUBBORN"})["state"])
	requireGone(t, pid)
	eventually(t, 10*time.Second, func() error {
		out := mustRun(t, p, "service.status", pluginsdk.Params{"name": "STUBBORN"})
		if out["state"] != "stopped" || out["since"] == "" {
			return fmt.Errorf("want stopped with the stop time recorded: %v", out)
		}
		return nil
	})
}

// A stop recorded by a plugin process that died before it finished is
// begun again by the next stop, not waited for forever.
func TestProcess_Stop_resumesAnUnfinishedStop(t *testing.T) {
	l := newLab(t)
	l.add("A", "ignore-term", func(sc *serviceConfig) { sc.StopGrace = cfgfile.Duration(200 * time.Millisecond) })
	p := l.plugin()
	pid := pidOf(mustRun(t, p, "service.start", pluginsdk.Params{"name": "A"}))
	l.waitEvents(t, 1) // A ignores SIGTERM from here on
	require.NoError(t, p.Close())
	rec := l.record("A")
	rec.StopRequested = true
	data, err := json.Marshal(rec)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(l.stateDir, "service", "A.json"), data, 0o600))

	p2 := l.plugin()
	require.Equal(t, "stopping", mustRun(t, p2, "service.status", pluginsdk.Params{"name": "A"})["state"])
	out := mustRun(t, p2, "service.stop", pluginsdk.Params{"name": "A", "timeout": "30s"})
	require.Equal(t, true, out["changed"])
	require.Equal(t, true, out["killed"])
	require.Equal(t, "stopped", out["state"])
	requireGone(t, pid)
}
