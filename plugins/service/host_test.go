//go:build linux

package service

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/chatdr/chatdr/agent/pluginhost"
	"github.com/chatdr/chatdr/pluginsdk"
)

// statField returns field n (1-based, as in proc(5)) of /proc/pid/stat.
func statField(t *testing.T, pid, n int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	v, err := strconv.Atoi(fields[n-3])
	require.NoError(t, err)
	return v
}

// writeAgentConfig writes an agent.yaml like the lab's, with relative
// state_dir and log paths (resolved against the file's directory).
func writeAgentConfig(t *testing.T, l *lab) string {
	t.Helper()
	sc := l.cfg.Services["RTCCHAT"]
	doc := map[string]any{
		"host": "pc1.dc1.chatdr.lab", "site": "dc1", "listen": "127.0.0.1:0",
		"state_dir": "state",
		"plugin_config": map[string]any{
			"service": map[string]any{
				"backend": "process",
				"services": map[string]any{
					"RTCCHAT": map[string]any{
						"command": sc.Command, "env": sc.Env, "dir": ".",
						"log": "logs/RTCCHAT.log", "stop_grace": "5s", "restart": "on-failure",
					},
				},
			},
		},
	}
	data, err := yaml.Marshal(doc)
	require.NoError(t, err)
	path := filepath.Join(l.dir, "agent.yaml")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}

// newHost starts the service plugin as a real process through the agent's
// plugin host: the test binary re-executed as `chatdr-agent plugin service`
// would be.
func newHost(t *testing.T, cfgPath string) *pluginhost.Host {
	t.Helper()
	h := pluginhost.New([]pluginhost.Spec{{
		Name: "service", Path: os.Args[0], Builtin: true,
		Env: []string{envServePlugin + "=1", pluginsdk.AgentConfigEnv + "=" + cfgPath},
	}}, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	t.Cleanup(h.Close)
	require.NoError(t, h.Start(t.Context()))
	return h
}

func hostRun(t *testing.T, h *pluginhost.Host, action string, params pluginsdk.Params) (pluginsdk.Output, error) {
	t.Helper()
	return h.Execute(t.Context(), &pluginsdk.Request{Action: action, Params: params, IdempotencyKey: t.Name()}, &recorder{})
}

func TestPluginHost_realPluginProcess_servicesOutliveThePlugin(t *testing.T) {
	l := newLab(t)
	l.add("RTCCHAT", "term")
	cfgPath := writeAgentConfig(t, l)
	name := pluginsdk.Params{"name": "RTCCHAT"}

	h := newHost(t, cfgPath)
	loaded := h.Plugins()[0]
	require.NoError(t, loaded.Err)
	pluginPID := loaded.PID
	require.NotZero(t, pluginPID)

	// The schema crosses the process boundary: the agent validates with it.
	spec, ok := loaded.Info.Action("service.start")
	require.True(t, ok)
	require.True(t, spec.Idempotent)
	require.ErrorIs(t, spec.Validate(pluginsdk.Params{"name": 42}), pluginsdk.ErrInvalidParams)
	status, _ := loaded.Info.Action("service.status")
	require.True(t, status.ReadOnly)

	out, err := hostRun(t, h, "service.start", name)
	require.NoError(t, err)
	require.Equal(t, true, out["changed"])
	require.Equal(t, "running", out["state"])
	pid := pidOf(out)
	require.True(t, procRunning(pid))
	require.Equal(t, pluginPID, statField(t, pid, 4), "the plugin process started the service")
	require.Equal(t, pid, statField(t, pid, 6), "the service leads its own session (setsid)")
	require.FileExists(t, filepath.Join(l.dir, "logs", "RTCCHAT.log"), "a relative log path is relative to agent.yaml")
	require.FileExists(t, filepath.Join(l.dir, "state", "service", "RTCCHAT.json"), "a relative state_dir is relative to agent.yaml")

	// Errors keep their code and hint across the boundary.
	_, err = hostRun(t, h, "service.start", pluginsdk.Params{"name": "sshd"})
	pe := requireCodeOf(t, err, CodeUnknownService)
	require.Contains(t, pe.Hint, "plugin_config.service.services")
	_, err = hostRun(t, h, "service.stop", pluginsdk.Params{"name": "RTCCHAT; kill -9 1"})
	requireCodeOf(t, err, CodeInvalidName)

	probe, err := h.Probe(t.Context(), "service.states", nil)
	require.NoError(t, err)
	require.Equal(t, "process", probe["backend"])
	services := probe["services"].([]any)
	require.Len(t, services, 1)
	require.Equal(t, "RTCCHAT", services[0].(map[string]any)["name"])
	require.Equal(t, "running", services[0].(map[string]any)["state"])
	require.Equal(t, float64(pid), services[0].(map[string]any)["pid"])

	// The agent stops (or is upgraded): its plugin goes, the service stays.
	h.Close()
	requireGone(t, pluginPID)
	require.True(t, procRunning(pid), "the service outlived its plugin")
	beat := func() string { b, _ := os.ReadFile(l.heartbeat("RTCCHAT")); return string(b) }
	before := beat()
	eventually(t, 10*time.Second, func() error {
		if beat() == before {
			return errors.New("the orphaned service's heartbeat does not advance")
		}
		return nil
	})

	// A new agent's plugin adopts it.
	h2 := newHost(t, cfgPath)
	plugin2 := h2.Plugins()[0].PID
	out, err = hostRun(t, h2, "service.status", name)
	require.NoError(t, err)
	require.Equal(t, "running", out["state"])
	require.Equal(t, float64(pid), out["pid"])
	out, err = hostRun(t, h2, "service.start", name)
	require.NoError(t, err)
	require.Equal(t, false, out["changed"])

	// Its supervisor (restart: on-failure) restarts the adopted service.
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	var restarted int
	eventually(t, 15*time.Second, func() error {
		out, err := hostRun(t, h2, "service.status", name)
		if err != nil {
			return err
		}
		if out["state"] != "running" || pidOf(out) == pid || out["restarts"] != float64(1) {
			return fmt.Errorf("status %v", out)
		}
		restarted = pidOf(out)
		return nil
	})
	require.Equal(t, plugin2, statField(t, restarted, 4), "the new plugin process restarted it")

	out, err = hostRun(t, h2, "service.stop", name)
	require.NoError(t, err)
	require.Equal(t, true, out["changed"])
	require.Equal(t, "stopped", out["state"])
	requireGone(t, restarted)
	out, err = hostRun(t, h2, "service.stop", name)
	require.NoError(t, err)
	require.Equal(t, false, out["changed"])
}
