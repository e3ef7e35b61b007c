package controller_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/chatdr/chatdr/controller"
	"github.com/chatdr/chatdr/controller/store"
	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/internal/pki"
	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/internal/testutil/ctltest"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

// agentTimeout is the per-agent deadline of the controllers of these tests.
const agentTimeout = 500 * time.Millisecond

// env is a fleet of in-process agents named by a topology file, and a
// controller serving it.
type env struct {
	tlsDir   string
	hosts    []testutil.FleetHost
	specs    []testutil.AgentSpec
	agents   []*testutil.Daemon
	addrs    []string
	dir      string // holds topology.yaml, controller.yaml and state/
	topoPath string
	stateDir string
	cfgPath  string
	ctl      *testutil.Daemon
}

// newEnv starts n agents (see testutil.LabHosts), writes their topology and
// starts a controller; specs, when not nil, changes an agent's spec before
// it starts. It returns once a fleet status shows every agent reachable, so
// that tests assert on warm connections.
func newEnv(t *testing.T, n int, specs func(i int, s *testutil.AgentSpec)) *env {
	t.Helper()
	e := &env{tlsDir: testutil.NewTLSDir(t), dir: t.TempDir()}
	var err error
	e.hosts, err = testutil.LabHosts(n)
	require.NoError(t, err)
	for i, h := range e.hosts {
		s := h.AgentSpec()
		if specs != nil {
			specs(i, &s)
		}
		e.specs = append(e.specs, s)
	}
	e.agents = testutil.StartAgents(t, e.tlsDir, e.specs)
	e.addrs = testutil.Addrs(e.agents)
	e.topoPath = filepath.Join(e.dir, "topology.yaml")
	require.NoError(t, testutil.WriteTopology(e.topoPath, e.hosts, e.addrs))
	e.stateDir = filepath.Join(e.dir, "state")
	e.cfgPath, err = testutil.WriteControllerConfig(e.dir, e.tlsDir, testutil.ControllerSpec{
		Topology: e.topoPath, StateDir: e.stateDir, AgentTimeout: agentTimeout,
	})
	require.NoError(t, err)
	e.ctl = ctltest.StartController(t, e.cfgPath)
	waitStatus(t, e.client(t, "viewer"), "every agent reachable", func(r *controllerv1.GetFleetStatusResponse) bool {
		return reachable(r) == n
	})
	return e
}

// client returns a ControllerService client of the current controller
// holding the named certificate.
func (e *env) client(t *testing.T, cert string) controllerv1.ControllerServiceClient {
	t.Helper()
	return controllerv1.NewControllerServiceClient(testutil.DialAs(t, e.tlsDir, cert, pki.RoleController, e.ctl.Addr))
}

// callCtx bounds one call of a test.
func callCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fleetStatus asks for the fleet status and fails the test on an error.
func fleetStatus(t *testing.T, c controllerv1.ControllerServiceClient) *controllerv1.GetFleetStatusResponse {
	t.Helper()
	resp, err := c.GetFleetStatus(callCtx(t), &controllerv1.GetFleetStatusRequest{})
	require.NoError(t, err)
	return resp
}

// reachable counts the reachable agents of a status.
func reachable(r *controllerv1.GetFleetStatusResponse) int {
	n := 0
	for _, a := range r.GetAgents() {
		if a.GetReachable() {
			n++
		}
	}
	return n
}

// waitStatus asks for the fleet status until cond holds, for at most 30 s,
// and returns the status that satisfied it.
func waitStatus(t *testing.T, c controllerv1.ControllerServiceClient, what string, cond func(*controllerv1.GetFleetStatusResponse) bool) *controllerv1.GetFleetStatusResponse {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp := fleetStatus(t, c)
		if cond(resp) {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("no fleet status with %s within 30s; last: %v", what, resp)
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatalf("test ended while waiting for %s", what)
		}
	}
}

// requireReachable checks the entry of a reachable agent against the host
// and address the topology gives it.
func requireReachable(t *testing.T, got *controllerv1.AgentStatus, h testutil.FleetHost, addr string, notBefore time.Time) {
	t.Helper()
	require.Equal(t, h.Host, got.GetHost())
	require.Equal(t, addr, got.GetAddress())
	require.Equal(t, h.Site, got.GetSite())
	require.Equal(t, h.Roles, got.GetRoles())
	require.True(t, got.GetReachable(), "%s: %s", h.Host, got.GetError())
	require.Empty(t, got.GetError())
	require.Positive(t, got.GetLatency().AsDuration(), "%s: latency", h.Host)
	require.Equal(t, h.Host, got.GetInfo().GetHost(), "facts come from the agent")
	require.Equal(t, h.Site, got.GetInfo().GetSite())
	require.Equal(t, h.Roles, got.GetInfo().GetRoles())
	require.NotEmpty(t, got.GetInfo().GetAgentVersion())
	require.NotEmpty(t, got.GetInfo().GetOs())
	require.Len(t, got.GetPlugins(), 1)
	require.Equal(t, "agent", got.GetPlugins()[0].GetName())
	require.False(t, got.GetLastSeen().AsTime().Before(notBefore), "%s: last seen %s, asked at %s", h.Host, got.GetLastSeen().AsTime(), notBefore)
	require.Empty(t, got.GetWarnings())
}

func TestController_GetFleetStatus_allReachable(t *testing.T) {
	e := newEnv(t, 10, nil)
	c := e.client(t, "viewer")

	before := time.Now()
	resp := fleetStatus(t, c)
	require.Equal(t, testutil.Pool, resp.GetPool())
	require.Len(t, resp.GetSites(), 2)
	require.Equal(t, "dc1", resp.GetSites()[0].GetName())
	require.Equal(t, "primary", resp.GetSites()[0].GetRole())
	require.Equal(t, "dc2", resp.GetSites()[1].GetName())
	require.Equal(t, "backup", resp.GetSites()[1].GetRole())
	require.False(t, resp.GetCheckedAt().AsTime().Before(before.Truncate(time.Microsecond)))
	require.Positive(t, resp.GetElapsed().AsDuration())

	require.Len(t, resp.GetAgents(), 10)
	for i, a := range resp.GetAgents() {
		requireReachable(t, a, e.hosts[i], e.addrs[i], before)
	}
}

func TestController_GetFleetStatus_request(t *testing.T) {
	e := newEnv(t, 10, nil)
	c := e.client(t, "operator")

	var dc2 []string
	for _, h := range e.hosts {
		if h.Site == "dc2" {
			dc2 = append(dc2, h.Host)
		}
	}
	resp, err := c.GetFleetStatus(callCtx(t), &controllerv1.GetFleetStatusRequest{Site: "dc2", AgentTimeout: durationpb.New(time.Minute)})
	require.NoError(t, err)
	var got []string
	for _, a := range resp.GetAgents() {
		require.True(t, a.GetReachable())
		got = append(got, a.GetHost())
	}
	require.Equal(t, dc2, got, "only the agents of site dc2, in topology order")

	tests := []struct {
		name    string
		req     *controllerv1.GetFleetStatusRequest
		wantMsg string
	}{
		{"unknown site", &controllerv1.GetFleetStatusRequest{Site: "dc9"}, `site "dc9" is not in the topology of pool ` + testutil.Pool},
		{"negative timeout", &controllerv1.GetFleetStatusRequest{AgentTimeout: durationpb.New(-time.Second)}, "agent_timeout must be positive"},
		{"zero timeout set", &controllerv1.GetFleetStatusRequest{AgentTimeout: durationpb.New(0)}, "agent_timeout must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.GetFleetStatus(callCtx(t), tt.req)
			require.Equal(t, codes.InvalidArgument, status.Code(err), "error: %v", err)
			require.Contains(t, status.Convert(err).Message(), tt.wantMsg)
		})
	}
}

func TestController_GetFleetStatus_roles(t *testing.T) {
	e := newEnv(t, 4, nil)
	tests := []struct {
		cert     string
		wantCode codes.Code
	}{
		{"viewer", codes.OK},
		{"operator", codes.OK},
		{"approver", codes.OK},
		{"admin", codes.OK},
		{"controller", codes.PermissionDenied},
		{"agent", codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.cert, func(t *testing.T) {
			resp, err := e.client(t, tt.cert).GetFleetStatus(callCtx(t), &controllerv1.GetFleetStatusRequest{})
			require.Equal(t, tt.wantCode, status.Code(err), "error: %v", err)
			if tt.wantCode == codes.OK {
				require.Len(t, resp.GetAgents(), 4)
				return
			}
			require.Contains(t, status.Convert(err).Message(), "is not allowed to call GetFleetStatus (allowed roles: viewer, operator, approver, admin)")
		})
	}
}

func TestController_GetFleetStatus_agentDownAndBack(t *testing.T) {
	e := newEnv(t, 10, nil)
	c := e.client(t, "viewer")
	const victim = 3
	seen := fleetStatus(t, c).GetAgents()[victim]
	require.True(t, seen.GetReachable())

	require.NoError(t, e.agents[victim].Stop())
	resp := waitStatus(t, c, "only the stopped agent unreachable", func(r *controllerv1.GetFleetStatusResponse) bool {
		return !r.GetAgents()[victim].GetReachable() && reachable(r) == 9
	})
	require.Len(t, resp.GetAgents(), 10)
	for i, a := range resp.GetAgents() {
		if i == victim {
			continue
		}
		requireReachable(t, a, e.hosts[i], e.addrs[i], time.Time{})
	}
	down := resp.GetAgents()[victim]
	require.Equal(t, e.hosts[victim].Host, down.GetHost())
	require.Equal(t, e.addrs[victim], down.GetAddress())
	require.False(t, down.GetReachable())
	require.Contains(t, down.GetError(), "Unavailable")
	require.Nil(t, down.GetLatency(), "no latency for an agent that did not answer")
	require.True(t, seen.GetLastSeen().AsTime().Equal(down.GetLastSeen().AsTime()),
		"last seen is when it last answered: %s, want %s", down.GetLastSeen().AsTime(), seen.GetLastSeen().AsTime())
	require.Equal(t, e.hosts[victim].Host, down.GetInfo().GetHost(), "the facts last seen are reported")
	require.Equal(t, seen.GetInfo().GetStartedAt().AsTime(), down.GetInfo().GetStartedAt().AsTime())
	require.Len(t, down.GetPlugins(), 1)

	spec := e.specs[victim]
	spec.Listen = e.addrs[victim]
	back := testutil.StartAgent(t, e.tlsDir, spec)
	require.Equal(t, e.addrs[victim], back.Addr)
	resp = waitStatus(t, c, "the restarted agent reachable", func(r *controllerv1.GetFleetStatusResponse) bool {
		return r.GetAgents()[victim].GetReachable()
	})
	requireReachable(t, resp.GetAgents()[victim], e.hosts[victim], e.addrs[victim], seen.GetLastSeen().AsTime())
	require.True(t, resp.GetAgents()[victim].GetInfo().GetStartedAt().AsTime().After(seen.GetInfo().GetStartedAt().AsTime()),
		"the facts are the new agent's")
	require.Equal(t, 10, reachable(resp))
}

func TestController_GetFleetStatus_hungAgent(t *testing.T) {
	// An address that accepts connections and never answers: the TLS
	// handshake, then the call, can only end by the per-agent deadline.
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			conn, err := hung.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		hung.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})

	tlsDir := testutil.NewTLSDir(t)
	hosts, err := testutil.LabHosts(4)
	require.NoError(t, err)
	const stuck = 1
	var specs []testutil.AgentSpec
	for i, h := range hosts {
		if i != stuck {
			specs = append(specs, h.AgentSpec())
		}
	}
	addrs := testutil.Addrs(testutil.StartAgents(t, tlsDir, specs))
	addrs = append(addrs[:stuck], append([]string{hung.Addr().String()}, addrs[stuck:]...)...)
	dir := t.TempDir()
	topoPath := filepath.Join(dir, "topology.yaml")
	require.NoError(t, testutil.WriteTopology(topoPath, hosts, addrs))
	cfgPath, err := testutil.WriteControllerConfig(dir, tlsDir, testutil.ControllerSpec{
		Topology: topoPath, StateDir: filepath.Join(dir, "state"), AgentTimeout: agentTimeout,
	})
	require.NoError(t, err)
	ctl := ctltest.StartController(t, cfgPath)
	c := controllerv1.NewControllerServiceClient(testutil.DialAs(t, tlsDir, "viewer", pki.RoleController, ctl.Addr))

	resp := waitStatus(t, c, "the live agents reachable", func(r *controllerv1.GetFleetStatusResponse) bool {
		return reachable(r) == 3
	})
	require.Len(t, resp.GetAgents(), 4)
	a := resp.GetAgents()[stuck]
	require.Equal(t, hosts[stuck].Host, a.GetHost())
	require.False(t, a.GetReachable())
	require.Contains(t, a.GetError(), "DeadlineExceeded")
	require.Nil(t, a.GetInfo(), "never seen, so no facts")
	require.Nil(t, a.GetLastSeen())
}

func TestController_GetFleetStatus_warnings(t *testing.T) {
	e := newEnv(t, 4, func(i int, s *testutil.AgentSpec) {
		if i == 0 {
			s.Site = "dc2"
			s.Host = "imposter.test.chatdr.test"
		}
	})
	a := fleetStatus(t, e.client(t, "viewer")).GetAgents()[0]
	require.True(t, a.GetReachable())
	require.Equal(t, []string{
		`agent at ` + e.addrs[0] + ` says it is host "imposter.test.chatdr.test"; the topology names "` + e.hosts[0].Host + `"`,
		`agent ` + e.hosts[0].Host + ` says it is in site "dc2"; the topology puts it in "dc1"`,
	}, a.GetWarnings())
}

func TestController_ReloadTopology_roles(t *testing.T) {
	e := newEnv(t, 10, nil)
	tests := []struct {
		cert     string
		wantCode codes.Code
	}{
		{"viewer", codes.PermissionDenied},
		{"operator", codes.PermissionDenied},
		{"approver", codes.PermissionDenied},
		{"admin", codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.cert, func(t *testing.T) {
			resp, err := e.client(t, tt.cert).ReloadTopology(callCtx(t), &controllerv1.ReloadTopologyRequest{})
			require.Equal(t, tt.wantCode, status.Code(err), "error: %v", err)
			if tt.wantCode != codes.OK {
				require.Equal(t, tt.cert+" ("+tt.cert+") is not allowed to call ReloadTopology (allowed roles: admin)", status.Convert(err).Message())
				return
			}
			require.Equal(t, testutil.Pool, resp.GetPool())
			require.EqualValues(t, 10, resp.GetAgents())
		})
	}
}

func TestController_ReloadTopology_appliesNewTopology(t *testing.T) {
	e := newEnv(t, 10, nil)
	admin, viewer := e.client(t, "admin"), e.client(t, "viewer")

	// Nine of the ten hosts: pc8 leaves the pool.
	fewer, err := testutil.LabHosts(9)
	require.NoError(t, err)
	addrOf := map[string]string{}
	for i, h := range e.hosts {
		addrOf[h.Host] = e.addrs[i]
	}
	var addrs []string
	for _, h := range fewer {
		require.Contains(t, addrOf, h.Host)
		addrs = append(addrs, addrOf[h.Host])
	}
	require.NoError(t, testutil.WriteTopology(e.topoPath, fewer, addrs))

	resp, err := admin.ReloadTopology(callCtx(t), &controllerv1.ReloadTopologyRequest{})
	require.NoError(t, err)
	require.EqualValues(t, 9, resp.GetAgents())
	st := waitStatus(t, viewer, "the nine agents reachable", func(r *controllerv1.GetFleetStatusResponse) bool {
		return reachable(r) == 9
	})
	require.Len(t, st.GetAgents(), 9)
	for i, a := range st.GetAgents() {
		requireReachable(t, a, fewer[i], addrs[i], time.Time{})
	}
}

func TestController_ReloadTopology_invalidKeepsTopology(t *testing.T) {
	e := newEnv(t, 10, nil)
	admin, viewer := e.client(t, "admin"), e.client(t, "viewer")
	good, err := os.ReadFile(e.topoPath)
	require.NoError(t, err)

	tests := []struct {
		name     string
		content  []byte // nil removes the file
		wantCode codes.Code
		wantMsg  []string
	}{
		{"syntax error", []byte("pool: [unclosed\n"), codes.InvalidArgument,
			[]string{"the topology in use is kept; " + e.topoPath + " is not valid"}},
		{"unknown field", append(append([]byte(nil), good...), []byte("colour: blue\n")...), codes.InvalidArgument,
			[]string{"the topology in use is kept", "colour"}},
		{"missing file", nil, codes.FailedPrecondition, []string{"the topology in use is kept"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.content == nil {
				require.NoError(t, os.Remove(e.topoPath))
			} else {
				require.NoError(t, os.WriteFile(e.topoPath, tt.content, 0o600))
			}
			t.Cleanup(func() { require.NoError(t, os.WriteFile(e.topoPath, good, 0o600)) })

			_, err := admin.ReloadTopology(callCtx(t), &controllerv1.ReloadTopologyRequest{})
			require.Equal(t, tt.wantCode, status.Code(err), "error: %v", err)
			for _, m := range tt.wantMsg {
				require.Contains(t, status.Convert(err).Message(), m)
			}

			resp := fleetStatus(t, viewer)
			require.Equal(t, testutil.Pool, resp.GetPool())
			require.Len(t, resp.GetAgents(), 10, "the topology in use is kept")
			require.Equal(t, 10, reachable(resp))
		})
	}
}

func TestController_Run_restartKeepsLastSeen(t *testing.T) {
	e := newEnv(t, 10, nil)
	const victim = 7
	seen := fleetStatus(t, e.client(t, "viewer")).GetAgents()[victim]
	require.True(t, seen.GetReachable())

	require.NoError(t, e.agents[victim].Stop())
	require.NoError(t, e.ctl.Stop())
	_, err := os.Stat(filepath.Join(e.stateDir, store.FileName))
	require.NoError(t, err, "the store lives in the state directory")

	e.ctl = ctltest.StartController(t, e.cfgPath)
	resp := waitStatus(t, e.client(t, "viewer"), "the nine live agents reachable", func(r *controllerv1.GetFleetStatusResponse) bool {
		return reachable(r) == 9
	})
	down := resp.GetAgents()[victim]
	require.Equal(t, e.hosts[victim].Host, down.GetHost())
	require.False(t, down.GetReachable())
	require.NotEmpty(t, down.GetError())
	require.NotNil(t, down.GetLastSeen(), "last seen comes from the store")
	require.True(t, seen.GetLastSeen().AsTime().Equal(down.GetLastSeen().AsTime()),
		"last seen %s, want %s", down.GetLastSeen().AsTime(), seen.GetLastSeen().AsTime())
	require.Equal(t, e.hosts[victim].Host, down.GetInfo().GetHost())
	require.Equal(t, e.hosts[victim].Roles, down.GetInfo().GetRoles())
	require.Equal(t, seen.GetInfo().GetAgentVersion(), down.GetInfo().GetAgentVersion())
}

func TestController_Run_stateDirLocked(t *testing.T) {
	e := newEnv(t, 4, nil)
	cfg, err := controller.LoadConfig(e.cfgPath)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err = controller.Run(ctx, cfg, slog.New(slog.DiscardHandler), func(string, string) {
		t.Error("a second controller on the same state directory must not start")
	})
	require.ErrorIs(t, err, store.ErrLocked)
	require.ErrorContains(t, err, filepath.Join(e.stateDir, store.FileName))
	require.ErrorContains(t, err, "is another chatdr-controller running with this state directory?")

	require.Equal(t, 4, reachable(fleetStatus(t, e.client(t, "viewer"))), "the first controller goes on")
}

func TestController_Run_refusesBadStart(t *testing.T) {
	tlsDir := testutil.NewTLSDir(t)
	hosts, err := testutil.LabHosts(4)
	require.NoError(t, err)
	dir := t.TempDir()
	goodTopo := filepath.Join(dir, "good.yaml")
	require.NoError(t, testutil.WriteTopology(goodTopo, hosts, []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"}))
	badTopo := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(badTopo, []byte("pool: pchat.test\n"), 0o600))

	tests := []struct {
		name    string
		topo    string
		cert    string
		wantErr error
		wantMsg string
	}{
		{name: "invalid topology", topo: badTopo, wantErr: topology.ErrInvalid, wantMsg: badTopo},
		{name: "certificate of a person", topo: goodTopo, cert: "admin", wantMsg: "has role admin; the controller needs a certificate with role controller"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfgPath, err := testutil.WriteControllerConfig(t.TempDir(), tlsDir, testutil.ControllerSpec{Topology: tt.topo, StateDir: filepath.Join(t.TempDir(), "state")})
			require.NoError(t, err)
			cfg, err := controller.LoadConfig(cfgPath)
			require.NoError(t, err)
			if tt.cert != "" {
				cfg.TLS = testutil.TLSFiles(tlsDir, tt.cert)
			}
			err = controller.Run(t.Context(), cfg, slog.New(slog.DiscardHandler), nil)
			require.Error(t, err)
			if tt.wantErr != nil {
				require.True(t, errors.Is(err, tt.wantErr), "error %v must match %v", err, tt.wantErr)
			}
			require.ErrorContains(t, err, tt.wantMsg)
		})
	}
}
