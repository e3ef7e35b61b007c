// Package fleet keeps a gRPC connection to every agent of the topology and
// asks them all for their facts at once, with a per-agent deadline and a
// concurrency limit, so that one dead or slow agent never holds up the rest.
package fleet

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/chatdr/chatdr/controller/store"
	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/internal/pki"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

// Options tune the fan-out.
type Options struct {
	// Timeout is the default per-agent deadline.
	Timeout time.Duration
	// Concurrency bounds the calls in flight at once.
	Concurrency int
}

// Status is what one agent answered (or not) in one fan-out.
type Status struct {
	Agent     topology.Agent
	Reachable bool
	Latency   time.Duration
	// Info is the fresh answer when reachable, else the last one seen (may be nil).
	Info     *agentv1.GetInfoResponse
	Err      error
	LastSeen time.Time
	Warnings []string
	// Facts are the plugins' probe values, when asked for.
	Facts []*agentv1.Fact
}

// Fleet holds the agents' connections. It is safe for concurrent use.
type Fleet struct {
	opts  Options
	creds credentials.TransportCredentials
	st    *store.Store

	mu     sync.Mutex
	agents []topology.Agent
	conns  map[string]*grpc.ClientConn // by address
	seen   map[string]store.AgentRecord
	// dirty holds last-seen records not yet written to the store; the
	// writer goroutine persists them off the request path.
	dirty   map[string]store.AgentRecord
	kick    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
	saveErr error
}

// flushInterval bounds how stale the stored last-seen facts can be.
const flushInterval = time.Second

// New returns a fleet that dials agents with the controller's TLS material
// and records last-seen facts in st.
func New(mat *pki.Material, st *store.Store, opts Options) (*Fleet, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 64
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	seen, err := st.Agents()
	if err != nil {
		return nil, err
	}
	f := &Fleet{
		opts:    opts,
		creds:   credentials.NewTLS(mat.ClientConfig(pki.RoleAgent)),
		st:      st,
		conns:   map[string]*grpc.ClientConn{},
		seen:    seen,
		dirty:   map[string]store.AgentRecord{},
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go f.writer()
	return f, nil
}

// writer persists dirty last-seen records at most once per flushInterval,
// and once more when the fleet closes.
func (f *Fleet) writer() {
	defer close(f.stopped)
	for {
		select {
		case <-f.kick:
		case <-f.stop:
			f.flush()
			return
		}
		f.flush()
		select {
		case <-time.After(flushInterval):
		case <-f.stop:
			f.flush()
			return
		}
	}
}

// flush writes the dirty records; a failure keeps them dirty for the next try.
func (f *Fleet) flush() {
	f.mu.Lock()
	batch := f.dirty
	f.dirty = map[string]store.AgentRecord{}
	f.mu.Unlock()
	err := f.st.SaveAgents(batch)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.saveErr = err
	if err != nil {
		for h, r := range batch {
			if _, newer := f.dirty[h]; !newer {
				f.dirty[h] = r
			}
		}
	}
}

// SetAgents replaces the agents of the fleet: new addresses get a
// connection, addresses no longer named are closed.
func (f *Fleet) SetAgents(agents []topology.Agent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	want := map[string]bool{}
	for _, a := range agents {
		want[a.Address] = true
		if _, ok := f.conns[a.Address]; ok {
			continue
		}
		cc, err := grpc.NewClient(a.Address,
			grpc.WithTransportCredentials(f.creds),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
				MinConnectTimeout: 2 * time.Second,
			}),
			// A silent network (packets dropped, no RST) is noticed within
			// Time+Timeout while a call is open, instead of at the end of
			// the step's timeout (hours for a restore). The agent permits
			// pings every 5 s or more.
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 15 * time.Second, Timeout: 10 * time.Second}))
		if err != nil {
			return fmt.Errorf("agent %s at %s: %w", a.Host, a.Address, err)
		}
		f.conns[a.Address] = cc
	}
	for addr, cc := range f.conns {
		if !want[addr] {
			cc.Close()
			delete(f.conns, addr)
		}
	}
	f.agents = slices.Clone(agents)
	return nil
}

// Agents returns the agents of the fleet in topology order.
func (f *Fleet) Agents() []topology.Agent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.agents)
}

// Client returns the AgentService client of the agent on host.
func (f *Fleet) Client(host string) (agentv1.AgentServiceClient, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.agents {
		if a.Host == host {
			return agentv1.NewAgentServiceClient(f.conns[a.Address]), nil
		}
	}
	return nil, fmt.Errorf("host %q has no agent in the topology", host)
}

// Close writes the last-seen facts not yet stored and closes every
// connection. The fleet must not be used afterwards.
func (f *Fleet) Close() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.stopped
	f.mu.Lock()
	defer f.mu.Unlock()
	for addr, cc := range f.conns {
		cc.Close()
		delete(f.conns, addr)
	}
}

// Status asks every agent (of site, when not empty) for its facts and
// returns one Status per agent in topology order. timeout overrides the
// default per-agent deadline when positive. It returns within about
// ceil(n/concurrency) × timeout even when every agent is dead.
func (f *Fleet) Status(ctx context.Context, site string, timeout time.Duration, probes bool) ([]Status, error) {
	if timeout <= 0 {
		timeout = f.opts.Timeout
	}
	f.mu.Lock()
	var agents []topology.Agent
	conns := make([]*grpc.ClientConn, 0, len(f.agents))
	for _, a := range f.agents {
		if site == "" || a.Site == site {
			agents = append(agents, a)
			conns = append(conns, f.conns[a.Address])
		}
	}
	f.mu.Unlock()

	out := make([]Status, len(agents))
	sem := make(chan struct{}, f.opts.Concurrency)
	var wg sync.WaitGroup
	for i := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				out[i] = Status{Agent: agents[i], Err: ctx.Err()}
				return
			}
			defer func() { <-sem }()
			out[i] = probe(ctx, agents[i], conns[i], timeout, probes)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	f.mu.Lock()
	for i := range out {
		s := &out[i]
		if s.Reachable {
			b, err := proto.Marshal(s.Info)
			if err == nil {
				rec := store.AgentRecord{LastSeen: s.LastSeen, Info: b}
				f.dirty[s.Agent.Host] = rec
				f.seen[s.Agent.Host] = rec
			}
			continue
		}
		if rec, ok := f.seen[s.Agent.Host]; ok {
			s.LastSeen = rec.LastSeen
			var info agentv1.GetInfoResponse
			if proto.Unmarshal(rec.Info, &info) == nil {
				s.Info = &info
			}
		}
	}
	saveErr := f.saveErr
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
	if saveErr != nil {
		return out, fmt.Errorf("record last-seen facts: %w", saveErr)
	}
	return out, nil
}

func probe(ctx context.Context, a topology.Agent, cc *grpc.ClientConn, timeout time.Duration, probes bool) Status {
	st := Status{Agent: a}
	if cc.GetState() == connectivity.TransientFailure {
		// Do not wait out the reconnect backoff: an agent that came back
		// should be seen as soon as someone asks.
		cc.ResetConnectBackoff()
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	client := agentv1.NewAgentServiceClient(cc)
	info, err := client.GetInfo(cctx, &agentv1.GetInfoRequest{})
	if err != nil {
		st.Err = err
		return st
	}
	st.Reachable = true
	st.Latency = time.Since(start)
	st.Info = info
	st.LastSeen = time.Now()
	h := info.GetHost()
	if h.GetHost() != a.Host {
		st.Warnings = append(st.Warnings, fmt.Sprintf("agent at %s says it is host %q; the topology names %q", a.Address, h.GetHost(), a.Host))
	}
	if h.GetSite() != a.Site {
		st.Warnings = append(st.Warnings, fmt.Sprintf("agent %s says it is in site %q; the topology puts it in %q", a.Host, h.GetSite(), a.Site))
	}
	if probes {
		var names []string
		for _, p := range info.GetPlugins() {
			if p.GetName() == "agent" {
				continue
			}
			for _, pr := range p.GetProbes() {
				names = append(names, pr.GetName())
			}
		}
		if len(names) > 0 {
			resp, err := client.Probe(cctx, &agentv1.ProbeRequest{Names: names})
			if err != nil {
				st.Warnings = append(st.Warnings, fmt.Sprintf("probes of %s did not answer: %v", a.Host, err))
			} else {
				st.Facts = resp.GetFacts()
			}
		}
	}
	return st
}
