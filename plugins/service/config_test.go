package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/pluginsdk"
)

func TestValidName(t *testing.T) {
	for _, n := range []string{"RTCCHAT", "MSSQL$CHATDB", "SQLAgent$INST", "chat-sim.service", "a_b", "x"} {
		require.True(t, validName(n), n)
	}
	long := make([]byte, 257)
	for i := range long {
		long[i] = 'a'
	}
	for _, n := range []string{"", "RTC;rm -rf /", "$(touch x)", "`id`", "a b", "../etc/passwd", "a/b", `a\b`,
		"-h", "--force", ".hidden", "x|y", "x&y", "x\ny", "x'y", `x"y`, "RTC\x00", "é", string(long)} {
		require.False(t, validName(n), "%q", n)
	}
	require.True(t, validName(string(long[:256])))
}

func TestConfig_check(t *testing.T) {
	proc := func(s map[string]*serviceConfig) *config { return &config{Backend: backendProcess, Services: s} }
	cmd := []string{"/bin/true"}
	for _, tc := range []struct {
		name string
		cfg  *config
		err  string
	}{
		{"no backend", &config{}, "backend is required"},
		{"bad backend", &config{Backend: "launchd"}, `backend "launchd"`},
		{"process without command", proc(map[string]*serviceConfig{"A": {}}), "services.A.command is required"},
		{"process null entry", proc(map[string]*serviceConfig{"A": nil}), "services.A.command is required"},
		{"invalid name", proc(map[string]*serviceConfig{"A;B": {Command: cmd}}), "not a valid service name"},
		{"bad restart", proc(map[string]*serviceConfig{"A": {Command: cmd, Restart: "always"}}), `restart "always"`},
		{"unknown dependency", proc(map[string]*serviceConfig{"A": {Command: cmd, DependsOn: []string{"B"}}}), `"B" is not in`},
		{"self dependency", proc(map[string]*serviceConfig{"A": {Command: cmd, DependsOn: []string{"A"}}}), "cannot depend on itself"},
		{"cycle", proc(map[string]*serviceConfig{
			"A": {Command: cmd, DependsOn: []string{"B"}}, "B": {Command: cmd, DependsOn: []string{"C"}}, "C": {Command: cmd, DependsOn: []string{"A"}},
		}), "cycle: A -> B -> C -> A"},
		{"bad env", proc(map[string]*serviceConfig{"A": {Command: cmd, Env: map[string]string{"X=Y": "1"}}}), "not a valid variable name"},
		{"windows with command", &config{Backend: backendWindows, Services: map[string]*serviceConfig{"RTCCHAT": {Command: cmd}}}, "only takes depends_on"},
		{"systemd with restart", &config{Backend: backendSystemd, Services: map[string]*serviceConfig{"x": {Restart: "on-failure"}}}, "only takes depends_on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.check("/etc/chatdr", "/var/lib/chatdr")
			require.ErrorContains(t, err, tc.err)
		})
	}

	t.Run("defaults and paths", func(t *testing.T) {
		c := proc(map[string]*serviceConfig{
			"A": {Command: []string{"bin/sim", "chat"}, Dir: "work", Log: "logs/a.log"},
			"B": {Command: []string{"chatdr-sim"}},
		})
		require.NoError(t, c.check("/etc/chatdr", "/var/lib/chatdr"))
		a, b := c.Services["A"], c.Services["B"]
		require.Equal(t, filepath.FromSlash("/etc/chatdr/bin/sim"), a.Command[0], "a relative program path is relative to agent.yaml")
		require.Equal(t, "chatdr-sim", b.Command[0], "a bare program name is looked up in PATH")
		require.Equal(t, filepath.FromSlash("/etc/chatdr/work"), a.Dir)
		require.Equal(t, filepath.FromSlash("/etc/chatdr/logs/a.log"), a.Log)
		require.Equal(t, filepath.Join("/var/lib/chatdr", "service", "B.log"), b.Log)
		require.Equal(t, restartNever, b.Restart)
		require.Equal(t, 10*time.Second, b.grace())
	})
	t.Run("allow-list entries may be empty", func(t *testing.T) {
		c := &config{Backend: backendWindows, Services: map[string]*serviceConfig{"RTCCHAT": nil, "RTCCHATCOMP": {DependsOn: []string{"RTCCHAT"}}}}
		require.NoError(t, c.check("/etc/chatdr", ""))
		n, ok := c.lookup("rtcchat")
		require.True(t, ok, "windows service names are case-insensitive")
		require.Equal(t, "RTCCHAT", n)
	})
	t.Run("process needs a state dir", func(t *testing.T) {
		c := proc(map[string]*serviceConfig{"A": {Command: cmd, Log: "/tmp/a.log"}})
		require.ErrorContains(t, c.check("/etc/chatdr", ""), "state_dir")
	})
}

func TestConfig_dependencyOrder(t *testing.T) {
	// D depends on B and C, which both depend on A; E depends on nothing.
	c := &config{Backend: backendSystemd, Services: map[string]*serviceConfig{
		"A": {}, "B": {DependsOn: []string{"A"}}, "C": {DependsOn: []string{"A"}},
		"D": {DependsOn: []string{"C", "B"}}, "E": {},
	}}
	require.NoError(t, c.check("/", ""))
	require.Equal(t, []string{"A", "C", "B"}, c.dependencies("D"))
	require.Empty(t, c.dependencies("A"))
	require.Equal(t, []string{"D", "B", "C"}, c.dependents("A"))
	require.Equal(t, []string{"D"}, c.dependents("C"))
	require.Empty(t, c.dependents("E"))
}

// The configuration is read from the agent's file at the first call.
func TestNew_loadsTheAgentConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	t.Setenv(pluginsdk.AgentConfigEnv, path)
	emit := nopEmitter{}
	ctx := t.Context()

	require.NoError(t, os.WriteFile(path, []byte("host: h\nstate_dir: st\n"), 0o600))
	p := New()
	t.Cleanup(func() { _ = p.(interface{ Close() error }).Close() })
	_, err := p.Execute(ctx, &pluginsdk.Request{Action: "service.list"}, emit)
	requireCodeOf(t, err, CodeNotConfigured)
	require.ErrorContains(t, err, "no plugin_config.service section")

	require.NoError(t, os.WriteFile(path, []byte("state_dir: st\nplugin_config:\n  service:\n    backend: process\n    services:\n      A: {comand: [x]}\n"), 0o600))
	_, err = p.Execute(ctx, &pluginsdk.Request{Action: "service.list"}, emit)
	requireCodeOf(t, err, CodeNotConfigured)
	require.ErrorContains(t, err, "comand", "an unknown key is an error")

	// A fixed file is read at the next call.
	require.NoError(t, os.WriteFile(path, []byte(`state_dir: st
plugin_config:
  service:
    backend: process
    services:
      B: {command: [prog], depends_on: [A]}
      A: {command: [prog], restart: on-failure}
`), 0o600))
	out, err := p.Execute(ctx, &pluginsdk.Request{Action: "service.list"}, emit)
	require.NoError(t, err)
	require.Equal(t, "process", out["backend"])
	require.Equal(t, []any{
		map[string]any{"name": "A", "depends_on": []any{}, "restart": "on-failure"},
		map[string]any{"name": "B", "depends_on": []any{"A"}, "restart": "never"},
	}, out["services"])
	require.DirExists(t, filepath.Join(dir, "st", "service"))

	// Without an agent config (run by hand), every call says so.
	t.Setenv(pluginsdk.AgentConfigEnv, "")
	_, err = New().Probe(ctx, "service.states", nil)
	requireCodeOf(t, err, CodeNotConfigured)
}

func TestPlugin_paramsAndNames(t *testing.T) {
	cfg := &config{Backend: backendSystemd, Services: map[string]*serviceConfig{"RTCCHAT": {}}}
	require.NoError(t, cfg.check("/", ""))
	// Every call below must be refused before it reaches a backend.
	p := &servicePlugin{rt: &runtime{cfg: cfg, be: refusingBackend{}, locks: newKeyedLocks()}}
	ctx := t.Context()
	info, err := p.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, "service", info.Name)
	require.Contains(t, info.APIVersions, uint32(pluginsdk.ProtocolVersion))
	for _, a := range info.Actions {
		require.Regexp(t, `^service\.`, a.Name)
	}
	require.Len(t, info.Actions, 5)
	require.Equal(t, "service.states", info.Probes[0].Name)

	exec := func(action string, params pluginsdk.Params) error {
		_, err := p.Execute(ctx, &pluginsdk.Request{Action: action, Params: params}, nopEmitter{})
		return err
	}
	t.Run("schema", func(t *testing.T) {
		for _, tc := range []struct {
			action string
			params pluginsdk.Params
			msg    string
		}{
			{"service.status", pluginsdk.Params{"name": 42.0}, "name must be a string"},
			{"service.status", pluginsdk.Params{}, "name is required"},
			{"service.start", pluginsdk.Params{"name": "RTCCHAT", "timeout": 30.0}, "timeout must be a string"},
			{"service.stop", pluginsdk.Params{"name": "RTCCHAT", "graceful": "yes"}, "graceful must be a bool"},
			{"service.stop", pluginsdk.Params{"name": "RTCCHAT", "force": true}, "force is not a parameter"},
			{"service.wait", pluginsdk.Params{"name": "RTCCHAT"}, "state is required"},
		} {
			spec, ok := info.Action(tc.action)
			require.True(t, ok)
			require.ErrorIs(t, spec.Validate(tc.params), pluginsdk.ErrInvalidParams)
			err := exec(tc.action, tc.params)
			requireCodeOf(t, err, CodeBadParams)
			require.ErrorContains(t, err, tc.msg)
		}
		requireCodeOf(t, exec("service.start", pluginsdk.Params{"name": "RTCCHAT", "timeout": "soon"}), CodeBadParams)
		requireCodeOf(t, exec("service.start", pluginsdk.Params{"name": "RTCCHAT", "timeout": "-1s"}), CodeBadParams)
	})
	t.Run("names", func(t *testing.T) {
		for _, n := range []string{"RTCCHAT; rm -rf /", "$(reboot)", "RTCCHAT`id`", "../RTCCHAT", "--now", "RTC CHAT", ""} {
			for _, a := range []string{"service.status", "service.start", "service.stop"} {
				requireCodeOf(t, exec(a, pluginsdk.Params{"name": n}), CodeInvalidName)
			}
		}
		err := exec("service.stop", pluginsdk.Params{"name": "sshd"})
		pe := requireCodeOf(t, err, CodeUnknownService)
		require.False(t, pe.Retryable)
		require.NotEmpty(t, pe.Hint)
		requireCodeOf(t, exec("service.start", pluginsdk.Params{"name": "rtcchat"}), CodeUnknownService) // systemd names are case-sensitive
	})
	t.Run("unknown action and probe", func(t *testing.T) {
		requireCodeOf(t, exec("service.restart", pluginsdk.Params{"name": "RTCCHAT"}), CodeUnknownAction)
		_, err := p.Probe(ctx, "service.nope", nil)
		requireCodeOf(t, err, CodeUnknownProbe)
	})
}

type nopEmitter struct{}

func (nopEmitter) Progress(string, int64, int64, string) {}
func (nopEmitter) Log(string, string)                    {}

// refusingBackend fails every call: for tests that must not reach one.
type refusingBackend struct{}

var errReached = errors.New("the backend was called")

func (refusingBackend) kind() string                { return "refusing" }
func (refusingBackend) pollInterval() time.Duration { return time.Millisecond }
func (refusingBackend) close()                      {}
func (refusingBackend) status(context.Context, string) (Status, error) {
	return Status{}, errReached
}
func (refusingBackend) start(context.Context, string, pluginsdk.Emitter) error { return errReached }
func (refusingBackend) stop(context.Context, string, bool, pluginsdk.Emitter) (stopResult, error) {
	return stopResult{}, errReached
}

func requireCodeOf(t *testing.T, err error, code string) *pluginsdk.Error {
	t.Helper()
	require.Error(t, err)
	var pe *pluginsdk.Error
	require.True(t, errors.As(err, &pe), "want a *pluginsdk.Error, got %T: %v", err, err)
	require.Equal(t, code, pe.Code, "error: %v", err)
	return pe
}
