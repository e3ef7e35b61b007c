//go:build linux

package service

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/pluginsdk"
)

// fakeSystemctl answers like systemctl for units kept as files in dir (the
// file holds "active" or "inactive"; no file: no such unit) and logs every
// call to dir/calls. Unit "denied" refuses start and stop like polkit does;
// unit "failing" fails to start.
func fakeSystemctl(dir string, args []string) int {
	if f, err := os.OpenFile(filepath.Join(dir, "calls"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		fmt.Fprintln(f, strings.Join(args, " "))
		f.Close()
	}
	i := slices.Index(args, "--")
	if len(args) < 3 || i != len(args)-2 {
		fmt.Fprintln(os.Stderr, "fake systemctl: want VERB [OPTIONS] -- UNIT")
		return 2
	}
	verb, unit := args[0], args[len(args)-1]
	state, err := os.ReadFile(filepath.Join(dir, unit))
	exists := err == nil
	switch verb {
	case "show":
		if !exists {
			fmt.Printf("LoadState=not-found\nActiveState=inactive\nSubState=dead\nMainPID=0\nActiveEnterTimestamp=\nInactiveEnterTimestamp=\nNRestarts=0\n")
			return 0
		}
		if strings.TrimSpace(string(state)) == "active" {
			fmt.Printf("LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=4242\nActiveEnterTimestamp=Thu 2024-01-04 10:00:00 UTC\nInactiveEnterTimestamp=n/a\nNRestarts=2\n")
		} else {
			fmt.Printf("LoadState=loaded\nActiveState=inactive\nSubState=dead\nMainPID=0\nActiveEnterTimestamp=\nInactiveEnterTimestamp=Thu 2024-01-04 09:00:00 UTC\nNRestarts=2\n")
		}
		return 0
	case "start", "stop", "kill":
		if !exists {
			fmt.Fprintf(os.Stderr, "Failed to %s %s.service: Unit %s.service not found.\n", verb, unit, unit)
			return 5
		}
		if unit == "denied" {
			fmt.Fprintf(os.Stderr, "Failed to %s %s.service: Access denied\nSee system logs and 'systemctl status %s.service' for details.\n", verb, unit, unit)
			return 1
		}
		if unit == "failing" && verb == "start" {
			fmt.Fprintf(os.Stderr, "Job for failing.service failed because the control process exited with error code.\n")
			return 1
		}
		next := map[string]string{"start": "active", "stop": "inactive", "kill": string(state)}[verb]
		_ = os.WriteFile(filepath.Join(dir, unit), []byte(next), 0o644)
		return 0
	}
	fmt.Fprintf(os.Stderr, "fake systemctl: unknown verb %q\n", verb)
	return 1
}

func TestSystemd_withFakeSystemctl(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(envFakeSystemctl, dir)
	for _, u := range []string{"RTCCHAT", "denied", "failing", "sshd"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, u), []byte("inactive"), 0o644))
	}
	cfg := &config{Backend: backendSystemd, Services: map[string]*serviceConfig{"RTCCHAT": nil, "denied": nil, "failing": nil, "ghost": nil}}
	require.NoError(t, cfg.check(dir, ""))
	p := &servicePlugin{rt: &runtime{cfg: cfg, be: &systemdBackend{cfg: cfg, systemctl: os.Args[0]}, locks: newKeyedLocks()}}
	calls := func(verb string) []string {
		b, _ := os.ReadFile(filepath.Join(dir, "calls"))
		var out []string
		for l := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
			if strings.HasPrefix(l, verb+" ") {
				out = append(out, l)
			}
		}
		return out
	}
	name := pluginsdk.Params{"name": "RTCCHAT"}

	out := mustRun(t, p, "service.status", name)
	require.Equal(t, "stopped", out["state"])
	require.Equal(t, "systemd", out["backend"])
	require.Equal(t, "inactive/dead", out["detail"])
	require.Equal(t, "2024-01-04T09:00:00Z", out["since"])

	out = mustRun(t, p, "service.start", name)
	require.Equal(t, true, out["changed"])
	require.Equal(t, "running", out["state"])
	require.Equal(t, float64(4242), out["pid"])
	require.Equal(t, float64(2), out["restarts"])
	require.Equal(t, "2024-01-04T10:00:00Z", out["since"])
	out = mustRun(t, p, "service.start", name)
	require.Equal(t, false, out["changed"])
	require.Equal(t, []string{"start -- RTCCHAT"}, calls("start"), "check-then-act: one start; the name after --")

	out = mustRun(t, p, "service.stop", name)
	require.Equal(t, true, out["changed"])
	require.Equal(t, "stopped", out["state"])
	out = mustRun(t, p, "service.stop", name)
	require.Equal(t, false, out["changed"])
	require.Equal(t, []string{"stop -- RTCCHAT"}, calls("stop"))

	mustRun(t, p, "service.start", name)
	out = mustRun(t, p, "service.stop", pluginsdk.Params{"name": "RTCCHAT", "graceful": false})
	require.Equal(t, true, out["killed"])
	require.Equal(t, []string{"kill --signal=SIGKILL -- RTCCHAT"}, calls("kill"))

	_, err := run(t, p, "service.status", pluginsdk.Params{"name": "ghost"})
	requireCodeOf(t, err, CodeServiceNotFound)
	_, err = run(t, p, "service.start", pluginsdk.Params{"name": "denied"})
	pe := requireCodeOf(t, err, CodeAccessDenied)
	require.Contains(t, pe.Hint, "polkit")
	_, err = run(t, p, "service.start", pluginsdk.Params{"name": "failing"})
	requireCodeOf(t, err, CodeStartFailed)

	// Not in the allow-list: refused without running systemctl.
	_, err = run(t, p, "service.stop", pluginsdk.Params{"name": "sshd"})
	requireCodeOf(t, err, CodeUnknownService)
	b, _ := os.ReadFile(filepath.Join(dir, "calls"))
	require.NotContains(t, string(b), "sshd")

	probe, err := p.Probe(t.Context(), "service.states", nil)
	require.NoError(t, err)
	byName := map[string]map[string]any{}
	for _, s := range probe["services"].([]any) {
		byName[s.(map[string]any)["name"].(string)] = s.(map[string]any)
	}
	require.Equal(t, "stopped", byName["RTCCHAT"]["state"])
	require.Equal(t, "unknown", byName["ghost"]["state"])
	require.Contains(t, byName["ghost"]["error"], "no unit ghost")
}

func TestSystemd_parseShow(t *testing.T) {
	for _, tc := range []struct {
		active, sub string
		want        State
	}{
		{"active", "running", StateRunning},
		{"reloading", "reload", StateRunning},
		{"activating", "start-pre", StateStarting},
		{"deactivating", "stop-sigterm", StateStopping},
		{"inactive", "dead", StateStopped},
		{"failed", "failed", StateStopped},
		{"maintenance", "cleaning", StateUnknown},
	} {
		st, err := parseShow("x", fmt.Sprintf("LoadState=loaded\nActiveState=%s\nSubState=%s\nMainPID=7\n", tc.active, tc.sub))
		require.NoError(t, err)
		require.Equal(t, tc.want, st.State, tc.active)
		require.Equal(t, tc.active+"/"+tc.sub, st.Detail)
	}
	_, err := parseShow("x", "")
	requireCodeOf(t, err, CodeBackendError)
	require.Equal(t, time.Unix(1704362400, 0), parseSystemdTime("@1704362400"))
	require.True(t, parseSystemdTime("n/a").IsZero())
	require.True(t, parseSystemdTime("yesterday").IsZero())
}
