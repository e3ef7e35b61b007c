package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"gopkg.in/yaml.v3"

	"github.com/chatdr/chatdr/internal/pki"
	"github.com/chatdr/chatdr/internal/proc"
	"github.com/chatdr/chatdr/internal/testutil"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chatdr-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := testutil.BuildBinaries(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// agentProc is a chatdr-agent process.
type agentProc struct {
	t       testing.TB
	cfgPath string
	addr    string
	env     []string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	log     *syncBuffer
	client  agentv1.AgentServiceClient
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startAgent writes an agent config with the given plugin configuration and
// starts chatdr-agent with env added to its environment.
func startAgent(t testing.TB, tlsDir, host string, builtin []string, pluginConfig map[string]any, env ...string) *agentProc {
	t.Helper()
	dir := t.TempDir()
	cfg := map[string]any{
		"host": host, "site": "dc1", "roles": []string{"test"},
		"listen":    "127.0.0.1:" + strconv.Itoa(freePort(t)),
		"state_dir": filepath.Join(dir, "state"),
		"tls": map[string]string{
			"ca": filepath.Join(tlsDir, "ca.crt"), "cert": filepath.Join(tlsDir, "agent.crt"), "key": filepath.Join(tlsDir, "agent.key"),
		},
		"plugins":       map[string]any{"builtin": builtin},
		"plugin_config": pluginConfig,
	}
	b, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	path := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(path, b, 0o644))
	a := &agentProc{t: t, cfgPath: path, addr: cfg["listen"].(string), env: env}
	a.start()
	cc := testutil.DialAs(t, tlsDir, "controller", pki.RoleAgent, a.addr)
	a.client = agentv1.NewAgentServiceClient(cc)
	a.waitReady()
	t.Cleanup(a.stop)
	return a
}

func (a *agentProc) start() {
	a.t.Helper()
	a.log = &syncBuffer{}
	a.cmd = exec.Command(testutil.Exe(binDir, "chatdr-agent"), "--config", a.cfgPath)
	a.cmd.Env = append(os.Environ(), a.env...)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	require.NoError(a.t, a.cmd.Start())
	exited := make(chan struct{})
	a.exited = exited
	go func(c *exec.Cmd) { _ = c.Wait(); close(exited) }(a.cmd)
}

func (a *agentProc) waitReady() {
	a.t.Helper()
	err := testutil.Eventually(30*time.Second, 50*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := a.client.GetInfo(ctx, &agentv1.GetInfoRequest{})
		return err
	})
	require.NoError(a.t, err, "agent did not start:\n%s", a.log)
}

// stop ends the agent gracefully (SIGKILL after 15 s).
func (a *agentProc) stop() {
	select {
	case <-a.exited:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(15 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.exited
	}
}

// kill ends the agent at once, as a crash would.
func (a *agentProc) kill() {
	a.t.Helper()
	require.NoError(a.t, a.cmd.Process.Kill())
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		a.t.Fatal("agent still running after SIGKILL")
	}
}

// restart starts the agent again after kill or stop.
func (a *agentProc) restart() {
	a.t.Helper()
	a.start()
	a.waitReady()
}

// pluginPIDs returns the pids of this agent's plugin processes.
func (a *agentProc) pluginPIDs() []int {
	return processesWithArgs(testutil.Exe(binDir, "chatdr-agent"), "plugin", strconv.Itoa(a.cmd.Process.Pid))
}

// execResult is what one Execute call streamed.
type execResult struct {
	progress int
	logs     []string
	result   *agentv1.ExecutionResult
}

func (a *agentProc) execute(key, action string, params map[string]any, timeout time.Duration) (execResult, error) {
	a.t.Helper()
	ps, err := structpb.NewStruct(params)
	require.NoError(a.t, err)
	req := &agentv1.ExecuteRequest{IdempotencyKey: key, Action: action, Params: ps}
	if timeout > 0 {
		req.Timeout = durationpb.New(timeout)
	}
	ctx, cancel := context.WithTimeout(a.t.Context(), 2*time.Minute)
	defer cancel()
	stream, err := a.client.Execute(ctx, req)
	if err != nil {
		return execResult{}, err
	}
	var r execResult
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return r, nil
		}
		if err != nil {
			return r, err
		}
		switch e := ev.GetEvent().(type) {
		case *agentv1.ExecuteResponse_Progress:
			r.progress++
		case *agentv1.ExecuteResponse_Log:
			r.logs = append(r.logs, e.Log.GetMessage())
		case *agentv1.ExecuteResponse_Result:
			r.result = e.Result
		}
	}
}

// must runs an action that must succeed and returns its output.
func (a *agentProc) must(key, action string, params map[string]any) (map[string]any, *agentv1.ExecutionResult) {
	a.t.Helper()
	r, err := a.execute(key, action, params, 0)
	require.NoError(a.t, err)
	require.NotNil(a.t, r.result, "no result for %s", action)
	require.Equal(a.t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, r.result.GetState(), "%s: %v\nagent log:\n%s", action, r.result.GetError(), a.log)
	return r.result.GetOutput().AsMap(), r.result
}

// processesWithArgs returns live processes whose command line starts with
// exe and contains arg, and whose environment names the agent pid.
func processesWithArgs(exe, arg, agentPID string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !proc.Running(pid) {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		parts := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		if len(parts) < 2 || parts[0] != exe || parts[1] != arg {
			continue
		}
		env, _ := os.ReadFile("/proc/" + e.Name() + "/environ")
		if bytes.Contains(env, []byte("CHATDR_AGENT_PID="+agentPID+"\x00")) {
			out = append(out, pid)
		}
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
