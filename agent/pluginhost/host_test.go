package pluginhost_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/agent/pluginhost"
	"github.com/chatdr/chatdr/internal/proc"
	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/pluginsdk"
)

const testPluginEnv = "CHATDR_TEST_PLUGIN"

var notifyBin string

// TestMain doubles as the test plugin: re-executed with CHATDR_TEST_PLUGIN=1
// the test binary serves testPlugin, the way the agent re-executes itself to
// serve its built-in plugins.
func TestMain(m *testing.M) {
	if os.Getenv(testPluginEnv) == "1" {
		pluginsdk.Serve(testPlugin{})
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "chatdr-plugins-")
	if err != nil {
		panic(err)
	}
	notifyBin = filepath.Join(dir, "chatdr-plugin-notify")
	if out, err := exec.Command("go", "build", "-o", notifyBin, "github.com/chatdr/chatdr/examples/plugins/notify").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build notify plugin: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type testPlugin struct{}

func (testPlugin) Info(context.Context) (*pluginsdk.Info, error) {
	return &pluginsdk.Info{
		Name: "test", Version: "0.1", APIVersions: []uint32{pluginsdk.ProtocolVersion},
		Actions: []pluginsdk.ActionSpec{
			{Name: "test.echo", Params: []pluginsdk.ParamSpec{{Name: "v", Type: pluginsdk.TypeString}}},
			{Name: "test.crash"},
			{Name: "test.sleep"},
			{Name: "test.fail"},
		},
		Probes: []pluginsdk.ProbeSpec{{Name: "test.pid"}},
	}, nil
}

func (testPlugin) Execute(ctx context.Context, req *pluginsdk.Request, emit pluginsdk.Emitter) (pluginsdk.Output, error) {
	switch req.Action {
	case "test.echo":
		emit.Progress("echo", 1, 2, "steps")
		emit.Log("info", "echoing")
		emit.Progress("echo", 2, 2, "steps")
		return pluginsdk.Output{"v": req.Params["v"], "key": req.IdempotencyKey, "pid": float64(os.Getpid())}, nil
	case "test.crash":
		os.Exit(7)
	case "test.sleep":
		emit.Progress("sleeping", 0, 0, "")
		<-ctx.Done()
		return nil, ctx.Err()
	case "test.fail":
		return nil, pluginsdk.Retryable("flaky", "try again").WithHint("it will work")
	}
	return nil, pluginsdk.Terminal("unknown", "no %s", req.Action)
}

func (testPlugin) Probe(context.Context, string, pluginsdk.Params) (pluginsdk.Output, error) {
	return pluginsdk.Output{"pid": float64(os.Getpid())}, nil
}

type events struct {
	mu       sync.Mutex
	progress []string
	logs     []string
}

func (e *events) Progress(stage string, done, total int64, unit string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.progress = append(e.progress, fmt.Sprintf("%s %d/%d %s", stage, done, total, unit))
}

func (e *events) Log(level, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logs = append(e.logs, level+": "+msg)
}

func (e *events) sawProgress() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.progress) > 0
}

func newTestHost(t *testing.T, specs ...pluginhost.Spec) *pluginhost.Host {
	t.Helper()
	h := pluginhost.New(specs, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	t.Cleanup(h.Close)
	return h
}

func testSpec(t *testing.T) pluginhost.Spec {
	t.Setenv(testPluginEnv, "1")
	return pluginhost.Spec{Name: "test", Path: os.Args[0], Builtin: true}
}

func TestHost_Execute_streamsAndReturns(t *testing.T) {
	h := newTestHost(t, testSpec(t))
	require.NoError(t, h.Start(t.Context()))
	ev := &events{}
	out, err := h.Execute(t.Context(), &pluginsdk.Request{Action: "test.echo", Params: pluginsdk.Params{"v": "it's [x]; $(rm -rf /)"}, IdempotencyKey: "k1"}, ev)
	require.NoError(t, err)
	require.Equal(t, "it's [x]; $(rm -rf /)", out["v"])
	require.Equal(t, "k1", out["key"])
	require.Equal(t, []string{"echo 1/2 steps", "echo 2/2 steps"}, ev.progress)
	require.Equal(t, []string{"info: echoing"}, ev.logs)

	_, err = h.Execute(t.Context(), &pluginsdk.Request{Action: "test.fail"}, ev)
	var pe *pluginsdk.Error
	require.ErrorAs(t, err, &pe)
	require.Equal(t, &pluginsdk.Error{Code: "flaky", Message: "try again", Retryable: true, Hint: "it will work"}, pe)

	probe, err := h.Probe(t.Context(), "test.pid", nil)
	require.NoError(t, err)
	require.Equal(t, float64(h.Plugins()[0].PID), probe["pid"])
	require.NotEqual(t, float64(os.Getpid()), probe["pid"], "the plugin runs in its own process")
}

func TestHost_Execute_crashedPluginRestarts(t *testing.T) {
	h := newTestHost(t, testSpec(t))
	require.NoError(t, h.Start(t.Context()))
	first := h.Plugins()[0].PID
	require.NotZero(t, first)

	_, err := h.Execute(t.Context(), &pluginsdk.Request{Action: "test.crash"}, &events{})
	var pe *pluginsdk.Error
	require.ErrorAs(t, err, &pe)
	require.True(t, pe.Retryable)
	require.Contains(t, []string{"plugin_crashed", "plugin_unavailable"}, pe.Code)

	out, err := h.Execute(t.Context(), &pluginsdk.Request{Action: "test.echo", Params: pluginsdk.Params{"v": "again"}}, &events{})
	require.NoError(t, err)
	require.Equal(t, "again", out["v"])
	p := h.Plugins()[0]
	require.Equal(t, 2, p.Starts)
	require.NotEqual(t, first, p.PID)
	require.False(t, proc.Running(first), "the crashed process is gone")
}

func TestHost_Execute_cancelReachesPlugin(t *testing.T) {
	h := newTestHost(t, testSpec(t))
	require.NoError(t, h.Start(t.Context()))
	ctx, cancel := context.WithCancel(t.Context())
	ev := &events{}
	done := make(chan error, 1)
	go func() {
		_, err := h.Execute(ctx, &pluginsdk.Request{Action: "test.sleep"}, ev)
		done <- err
	}()
	require.NoError(t, testutil.Eventually(10*time.Second, 10*time.Millisecond, func() error {
		if !ev.sawProgress() {
			return errors.New("plugin has not started sleeping")
		}
		return nil
	}))
	cancel()
	select {
	case err := <-done:
		var pe *pluginsdk.Error
		require.ErrorAs(t, err, &pe)
		require.Equal(t, "cancelled", pe.Code)
	case <-time.After(10 * time.Second):
		t.Fatal("cancel did not reach the plugin")
	}
	// The same plugin process serves the next call.
	pid := h.Plugins()[0].PID
	_, err := h.Execute(t.Context(), &pluginsdk.Request{Action: "test.echo"}, &events{})
	require.NoError(t, err)
	require.Equal(t, pid, h.Plugins()[0].PID)
	require.Equal(t, 1, h.Plugins()[0].Starts)
}

func TestHost_ThirdParty_pinning(t *testing.T) {
	sum, err := pluginhost.FileSHA256(notifyBin)
	require.NoError(t, err)
	out := filepath.Join(t.TempDir(), "notifications.jsonl")
	t.Setenv("CHATDR_NOTIFY_FILE", out)

	t.Run("pinned", func(t *testing.T) {
		h := newTestHost(t, pluginhost.Spec{Name: "notify", Path: notifyBin, SHA256: strings.ToUpper(sum)})
		require.NoError(t, h.Start(t.Context()))
		res, err := h.Execute(t.Context(), &pluginsdk.Request{Action: "notify.file", Params: pluginsdk.Params{"message": "pool failed over", "severity": "critical"}, IdempotencyKey: "run1/step3/1"}, &events{})
		require.NoError(t, err)
		require.Equal(t, out, res["file"])
		b, err := os.ReadFile(out)
		require.NoError(t, err)
		var line map[string]any
		require.NoError(t, json.Unmarshal(b, &line))
		require.Equal(t, "pool failed over", line["message"])
		require.Equal(t, "critical", line["severity"])
		require.Equal(t, "run1/step3/1", line["idempotency_key"])
	})
	t.Run("not pinned", func(t *testing.T) {
		h := newTestHost(t, pluginhost.Spec{Name: "notify", Path: notifyBin})
		err := h.Start(t.Context())
		require.ErrorIs(t, err, pluginhost.ErrNotPinned)
		require.Contains(t, err.Error(), "add its SHA-256 to plugins.pinned in agent.yaml")
		require.Nil(t, h.Plugins()[0].Info)
		require.ErrorIs(t, h.Plugins()[0].Err, pluginhost.ErrNotPinned)
		_, err = h.Execute(t.Context(), &pluginsdk.Request{Action: "notify.file"}, &events{})
		require.ErrorIs(t, err, pluginhost.ErrNotPinned)
	})
	t.Run("hash mismatch", func(t *testing.T) {
		h := newTestHost(t, pluginhost.Spec{Name: "notify", Path: notifyBin, SHA256: strings.Repeat("ab", 32)})
		err := h.Start(t.Context())
		require.ErrorIs(t, err, pluginhost.ErrHashMismatch)
		require.Contains(t, err.Error(), "has SHA-256 "+sum+", pinned abab")
	})
	t.Run("wrong name", func(t *testing.T) {
		h := newTestHost(t, pluginhost.Spec{Name: "dns", Path: notifyBin, SHA256: sum})
		err := h.Start(t.Context())
		require.ErrorContains(t, err, `says its name is "notify"`)
	})
}

func TestHost_Close_killsPlugins(t *testing.T) {
	h := newTestHost(t, testSpec(t))
	require.NoError(t, h.Start(t.Context()))
	pid := h.Plugins()[0].PID
	require.True(t, proc.Running(pid))
	h.Close()
	require.NoError(t, testutil.Eventually(5*time.Second, 20*time.Millisecond, func() error {
		if proc.Running(pid) {
			return fmt.Errorf("plugin pid %d still runs", pid)
		}
		return nil
	}))
	_, err := h.Execute(t.Context(), &pluginsdk.Request{Action: "test.echo"}, &events{})
	require.ErrorContains(t, err, "stopping")
}
