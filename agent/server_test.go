package agent_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/chatdr/chatdr/agent"
	"github.com/chatdr/chatdr/internal/buildinfo"
	"github.com/chatdr/chatdr/internal/pki"
	"github.com/chatdr/chatdr/internal/testutil"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

// testAgent is the agent every test of this file starts.
var testAgent = testutil.AgentSpec{
	Host:          "pc1.dc1.test.chatdr.test",
	Site:          "dc1",
	Roles:         []string{"chat_server", "management_shell"},
	MetricsListen: "127.0.0.1:0",
}

// startAgent starts testAgent with a new CA and returns the TLS directory and
// the running agent.
func startAgent(t *testing.T) (string, *testutil.Daemon) {
	t.Helper()
	dir := testutil.NewTLSDir(t)
	return dir, testutil.StartAgent(t, dir, testAgent)
}

// client returns an AgentService client holding the named certificate of dir.
func client(t *testing.T, dir, cert, addr string) agentv1.AgentServiceClient {
	t.Helper()
	return agentv1.NewAgentServiceClient(testutil.DialAs(t, dir, cert, pki.RoleAgent, addr))
}

// callCtx bounds one call of a test.
func callCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// execute runs Execute to the end of its stream and returns every event.
func execute(ctx context.Context, c agentv1.AgentServiceClient, req *agentv1.ExecuteRequest) ([]*agentv1.ExecuteResponse, error) {
	stream, err := c.Execute(ctx, req)
	if err != nil {
		return nil, err
	}
	var evs []*agentv1.ExecuteResponse
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return evs, nil
		}
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
}

func TestAgent_GetInfo(t *testing.T) {
	dir, a := startAgent(t)
	wantHostname, err := os.Hostname()
	require.NoError(t, err)

	// GetInfo is open to every role of the deployment.
	for _, cert := range []string{"controller", "viewer", "operator", "approver", "admin", "agent"} {
		t.Run(cert, func(t *testing.T) {
			resp, err := client(t, dir, cert, a.Addr).GetInfo(callCtx(t), &agentv1.GetInfoRequest{})
			require.NoError(t, err)
			h := resp.GetHost()
			require.Equal(t, testAgent.Host, h.GetHost())
			require.Equal(t, testAgent.Site, h.GetSite())
			require.Equal(t, testAgent.Roles, h.GetRoles())
			require.Equal(t, buildinfo.Version(), h.GetAgentVersion())
			require.Equal(t, runtime.GOOS, h.GetOs())
			require.Equal(t, runtime.GOARCH, h.GetArch())
			require.Equal(t, wantHostname, h.GetOsHostname())
			require.False(t, h.GetStartedAt().AsTime().After(time.Now()))
			require.GreaterOrEqual(t, h.GetUptime().AsDuration(), time.Duration(0))

			require.Len(t, resp.GetPlugins(), 1)
			p := resp.GetPlugins()[0]
			require.Equal(t, "agent", p.GetName())
			require.Equal(t, []uint32{1}, p.GetApiVersions())
			require.Len(t, p.GetActions(), 1)
			require.Equal(t, "agent.noop", p.GetActions()[0].GetName())
			require.False(t, p.GetActions()[0].GetReadOnly(), "agent.noop is journaled like a state-changing action")
			require.True(t, p.GetActions()[0].GetIdempotent())
		})
	}
}

func TestAgent_Probe(t *testing.T) {
	dir, a := startAgent(t)
	c := client(t, dir, "viewer", a.Addr)

	resp, err := c.Probe(callCtx(t), &agentv1.ProbeRequest{})
	require.NoError(t, err)
	require.Len(t, resp.GetFacts(), 1)
	f := resp.GetFacts()[0]
	require.Equal(t, "agent.host", f.GetName())
	require.Equal(t, testAgent.Host, f.GetValue().GetFields()["host"].GetStringValue())
	require.Equal(t, testAgent.Site, f.GetValue().GetFields()["site"].GetStringValue())

	_, err = c.Probe(callCtx(t), &agentv1.ProbeRequest{Names: []string{"sql.mirroring"}})
	require.Equal(t, codes.NotFound, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), `probe "sql.mirroring" is not offered by agent `+testAgent.Host)
}

func TestAgent_Metrics(t *testing.T) {
	dir, a := startAgent(t)
	require.NotEmpty(t, a.MetricsAddr)
	_, err := client(t, dir, "controller", a.Addr).GetInfo(callCtx(t), &agentv1.GetInfoRequest{})
	require.NoError(t, err)

	req, err := http.NewRequestWithContext(callCtx(t), http.MethodGet, "http://"+a.MetricsAddr+"/metrics", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	text := string(body)

	require.Contains(t, text, `chatdr_agent_info{host="`+testAgent.Host+`",site="dc1",version="`+buildinfo.Version()+`"} 1`)
	require.Contains(t, text, `chatdr_agent_rpcs_total{code="OK",method="/chatdr.agent.v1.AgentService/GetInfo"} 1`)
	require.Contains(t, text, "chatdr_agent_start_time_seconds ")
}

func TestAgent_Execute_controller(t *testing.T) {
	dir, a := startAgent(t)
	c := client(t, dir, "controller", a.Addr)
	params, err := structpb.NewStruct(map[string]any{"duration": "300ms", "note": "from the test"})
	require.NoError(t, err)
	req := &agentv1.ExecuteRequest{IdempotencyKey: "run1/noop/1", Action: "agent.noop", Params: params}

	evs, err := execute(callCtx(t), c, req)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(evs), 2, "progress, then the result")
	for i, ev := range evs[:len(evs)-1] {
		p := ev.GetProgress()
		require.NotNil(t, p, "event %d before the result must be progress: %v", i, ev)
		require.Equal(t, "waiting", p.GetStage())
		require.EqualValues(t, 10, p.GetTotal())
	}
	res := evs[len(evs)-1].GetResult()
	require.NotNil(t, res)
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, res.GetState())
	require.True(t, proto.Equal(params, res.GetOutput()), "the params are echoed: %v", res.GetOutput())
	require.False(t, res.GetReplayed())

	got, err := c.GetExecution(callCtx(t), &agentv1.GetExecutionRequest{IdempotencyKey: req.GetIdempotencyKey()})
	require.NoError(t, err)
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, got.GetState())
	require.Equal(t, "agent.noop", got.GetAction())

	again, err := execute(callCtx(t), c, req)
	require.NoError(t, err)
	require.Len(t, again, 1, "a replay is the result alone")
	require.True(t, again[0].GetResult().GetReplayed())
}

func TestAgent_Execute_errorCodes(t *testing.T) {
	dir, a := startAgent(t)
	c := client(t, dir, "controller", a.Addr)
	_, err := execute(callCtx(t), c, &agentv1.ExecuteRequest{IdempotencyKey: "used", Action: "agent.noop"})
	require.NoError(t, err)

	other, err := structpb.NewStruct(map[string]any{"fail": "x"})
	require.NoError(t, err)
	tests := []struct {
		name     string
		req      *agentv1.ExecuteRequest
		wantCode codes.Code
		wantMsg  string
	}{
		{"unknown action", &agentv1.ExecuteRequest{IdempotencyKey: "k", Action: "sql.nope"}, codes.NotFound, "on agent " + testAgent.Host},
		{"no key", &agentv1.ExecuteRequest{Action: "agent.noop"}, codes.InvalidArgument, "idempotency_key"},
		{"key reused", &agentv1.ExecuteRequest{IdempotencyKey: "used", Action: "agent.noop", Params: other}, codes.FailedPrecondition, `key "used" was used for agent.noop`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := execute(callCtx(t), c, tt.req)
			require.Equal(t, tt.wantCode, status.Code(err), "error: %v", err)
			require.Contains(t, status.Convert(err).Message(), tt.wantMsg)
		})
	}

	_, err = c.GetExecution(callCtx(t), &agentv1.GetExecutionRequest{})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	got, err := c.GetExecution(callCtx(t), &agentv1.GetExecutionRequest{IdempotencyKey: "never"})
	require.NoError(t, err)
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_NOT_FOUND, got.GetState())
}

func TestAgent_Execute_onlyController(t *testing.T) {
	dir, a := startAgent(t)
	for _, cert := range []string{"viewer", "operator", "approver", "admin", "agent"} {
		t.Run(cert, func(t *testing.T) {
			key := "denied/" + cert
			_, err := execute(callCtx(t), client(t, dir, cert, a.Addr), &agentv1.ExecuteRequest{IdempotencyKey: key, Action: "agent.noop"})
			require.Equal(t, codes.PermissionDenied, status.Code(err), "error: %v", err)
			require.Equal(t, cert+" ("+cert+") is not allowed to call Execute (allowed roles: controller)", status.Convert(err).Message())

			got, err := client(t, dir, "controller", a.Addr).GetExecution(callCtx(t), &agentv1.GetExecutionRequest{IdempotencyKey: key})
			require.NoError(t, err)
			require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_NOT_FOUND, got.GetState(), "a refused call runs nothing")
		})
	}
}

func TestAgent_handshake_refusesStrangers(t *testing.T) {
	dir, a := startAgent(t)
	otherDir := testutil.NewTLSDir(t)
	caPool := testutil.ClientTLS(t, dir, "viewer", pki.RoleAgent).RootCAs

	tests := []struct {
		name string
		cfg  func() *tls.Config
	}{
		{"no certificate", func() *tls.Config {
			return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: caPool}
		}},
		{"certificate of another CA", func() *tls.Config {
			cfg := testutil.ClientTLS(t, otherDir, "controller", pki.RoleAgent)
			cfg.RootCAs = caPool // trusts the agent, but the agent does not trust it
			return cfg
		}},
		{"client of another deployment", func() *tls.Config {
			return testutil.ClientTLS(t, otherDir, "controller", pki.RoleAgent)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := agentv1.NewAgentServiceClient(testutil.Dial(t, a.Addr, tt.cfg()))
			_, err := c.GetInfo(callCtx(t), &agentv1.GetInfoRequest{})
			require.Equal(t, codes.Unavailable, status.Code(err), "the handshake must be refused: %v", err)
		})
	}
}

func TestAgent_Run_stopsOnCancel(t *testing.T) {
	dir, a := startAgent(t)
	_, err := client(t, dir, "controller", a.Addr).GetInfo(callCtx(t), &agentv1.GetInfoRequest{})
	require.NoError(t, err)

	require.NoError(t, a.Stop())
	for _, addr := range []string{a.Addr, a.MetricsAddr} {
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			conn.Close()
		}
		require.Error(t, err, "%s must be closed once Run returned", addr)
	}
}

func TestAgent_Run_refusesConfig(t *testing.T) {
	dir := testutil.NewTLSDir(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()

	tests := []struct {
		name    string
		spec    testutil.AgentSpec
		wantErr string
	}{
		{"certificate of a person", testutil.AgentSpec{Host: "h.test", Site: "dc1", Cert: "admin"}, "has role admin; an agent needs a certificate with role agent"},
		{"address in use", testutil.AgentSpec{Host: "h.test", Site: "dc1", Listen: busy.Addr().String()}, "listen on " + busy.Addr().String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, err := testutil.WriteAgentConfig(t.TempDir(), dir, tt.spec)
			require.NoError(t, err)
			cfg, err := agent.LoadConfig(path)
			require.NoError(t, err)
			require.Equal(t, filepath.Join(filepath.Dir(path), "state"), cfg.StateDir)
			err = agent.Run(t.Context(), cfg, slog.New(slog.DiscardHandler), nil)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestAgent_Execute_detachedCallerLeavesActionRunning(t *testing.T) {
	dir, a := startAgent(t)
	c := client(t, dir, "controller", a.Addr)
	params, err := structpb.NewStruct(map[string]any{"duration": "500ms"})
	require.NoError(t, err)
	req := &agentv1.ExecuteRequest{IdempotencyKey: "detach", Action: "agent.noop", Params: params}

	ctx, cancel := context.WithCancel(t.Context())
	stream, err := c.Execute(ctx, req)
	require.NoError(t, err)
	first, err := stream.Recv()
	require.NoError(t, err)
	require.NotNil(t, first.GetProgress(), "the action is running")
	cancel()

	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := c.GetExecution(callCtx(t), &agentv1.GetExecutionRequest{IdempotencyKey: "detach"})
		require.NoError(t, err)
		if got.GetState() != agentv1.ExecutionState_EXECUTION_STATE_RUNNING {
			require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, got.GetState(), "result: %v", got.GetResult())
			break
		}
		require.True(t, time.Now().Before(deadline), "the execution did not end")
		select {
		case <-time.After(20 * time.Millisecond):
		case <-t.Context().Done():
		}
	}
}
