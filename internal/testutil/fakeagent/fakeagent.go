// Package fakeagent serves AgentService in-process for controller and CLI
// tests that need facts a real agent only reports through plugins (pool
// state, database states) and need to know whether an agent was asked to
// act. It is apart from internal/testutil so that the runner's tests, which
// use testutil, do not pull it in.
package fakeagent

import (
	"context"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chatdr/chatdr/internal/pki"
	"github.com/chatdr/chatdr/internal/testutil"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

// Agent is a fake agent: it reports the host of its spec, answers probes
// with the facts set by SetFact, and succeeds every Execute at once,
// echoing the parameters (like agent.noop) and counting the calls. It is
// safe for concurrent use.
type Agent struct {
	agentv1.UnimplementedAgentServiceServer

	// Addr is the address it listens on (127.0.0.1).
	Addr string
	spec testutil.AgentSpec

	mu       sync.Mutex
	facts    map[string]map[string]any
	executed []string // action names, in order
	results  map[string]*agentv1.ExecutionResult
}

// Start starts one fake agent per spec, with the agent certificate of
// tlsDir, and stops them when tb ends.
func Start(tb testing.TB, tlsDir string, specs []testutil.AgentSpec) []*Agent {
	tb.Helper()
	f := testutil.TLSFiles(tlsDir, "agent")
	mat, err := pki.LoadMaterial(f.CA, f.Cert, f.Key)
	if err != nil {
		tb.Fatalf("load agent certificate: %v", err)
	}
	var out []*Agent
	for _, s := range specs {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("listen: %v", err)
		}
		a := &Agent{Addr: lis.Addr().String(), spec: s, facts: map[string]map[string]any{}, results: map[string]*agentv1.ExecutionResult{}}
		gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(mat.ServerConfig())))
		agentv1.RegisterAgentServiceServer(gs, a)
		go func() { _ = gs.Serve(lis) }()
		tb.Cleanup(gs.Stop)
		out = append(out, a)
	}
	return out
}

// Addrs returns the agents' addresses.
func Addrs(as []*Agent) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Addr
	}
	return out
}

// SetFact makes probe name report value; a nil value removes the probe.
func (a *Agent) SetFact(name string, value map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if value == nil {
		delete(a.facts, name)
		return
	}
	a.facts[name] = value
}

// Executed returns the actions Execute was asked for, in order.
func (a *Agent) Executed() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.executed...)
}

// GetInfo implements AgentService: the built-in plugin with agent.noop and
// a plugin "fake" offering the probes set.
func (a *Agent) GetInfo(context.Context, *agentv1.GetInfoRequest) (*agentv1.GetInfoResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var probes []*agentv1.ProbeInfo
	for _, n := range sortedKeys(a.facts) {
		probes = append(probes, &agentv1.ProbeInfo{Name: n})
	}
	return &agentv1.GetInfoResponse{
		Host: &agentv1.HostInfo{Host: a.spec.Host, Site: a.spec.Site, Roles: a.spec.Roles, AgentVersion: "fake", Os: "linux", Arch: "amd64"},
		Plugins: []*agentv1.PluginInfo{
			{Name: "agent", Version: "fake", Actions: []*agentv1.ActionInfo{{Name: "agent.noop"}}},
			{Name: "fake", Version: "fake", Probes: probes},
		},
	}, nil
}

// Probe implements AgentService.
func (a *Agent) Probe(_ context.Context, req *agentv1.ProbeRequest) (*agentv1.ProbeResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	resp := &agentv1.ProbeResponse{}
	for _, n := range req.GetNames() {
		v, ok := a.facts[n]
		if !ok {
			resp.Facts = append(resp.Facts, &agentv1.Fact{Name: n, Error: &agentv1.ActionError{Code: "unknown_probe", Message: n}})
			continue
		}
		s, err := structpb.NewStruct(v)
		if err != nil {
			return nil, err
		}
		resp.Facts = append(resp.Facts, &agentv1.Fact{Name: n, Value: s, ObservedAt: timestamppb.Now()})
	}
	return resp, nil
}

// Execute implements AgentService: it records the call and succeeds with
// the parameters as output; a key seen before replays its result.
func (a *Agent) Execute(req *agentv1.ExecuteRequest, stream grpc.ServerStreamingServer[agentv1.ExecuteResponse]) error {
	a.mu.Lock()
	res, ok := a.results[req.GetIdempotencyKey()]
	if !ok {
		now := timestamppb.New(time.Now())
		res = &agentv1.ExecutionResult{State: agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, Output: req.GetParams(), StartedAt: now, EndedAt: now}
		a.results[req.GetIdempotencyKey()] = res
		a.executed = append(a.executed, req.GetAction())
	}
	a.mu.Unlock()
	return stream.Send(&agentv1.ExecuteResponse{Time: timestamppb.Now(), Event: &agentv1.ExecuteResponse_Result{Result: res}})
}

// GetExecution implements AgentService.
func (a *Agent) GetExecution(_ context.Context, req *agentv1.GetExecutionRequest) (*agentv1.GetExecutionResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	res, ok := a.results[req.GetIdempotencyKey()]
	if !ok {
		return &agentv1.GetExecutionResponse{State: agentv1.ExecutionState_EXECUTION_STATE_NOT_FOUND}, nil
	}
	return &agentv1.GetExecutionResponse{State: res.GetState(), Result: res}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
