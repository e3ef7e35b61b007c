package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chatdr/chatdr/controller/engine/runner"
	"github.com/chatdr/chatdr/controller/fleet"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/store"
	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/internal/authz"
	"github.com/chatdr/chatdr/internal/buildinfo"
	"github.com/chatdr/chatdr/internal/pki"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

// Roles allowed to read state.
var readers = []pki.Role{pki.RoleViewer, pki.RoleOperator, pki.RoleApprover, pki.RoleAdmin}

// Roles allowed to start, cancel, resume and acknowledge runs.
var operators = []pki.Role{pki.RoleOperator, pki.RoleAdmin}

// policy is who may call which ControllerService RPC.
var policy = authz.Policy{
	controllerv1.ControllerService_GetFleetStatus_FullMethodName: readers,
	controllerv1.ControllerService_ReloadTopology_FullMethodName: {pki.RoleAdmin},
	controllerv1.ControllerService_BuildPlan_FullMethodName:      readers,
	controllerv1.ControllerService_StartRun_FullMethodName:       operators,
	controllerv1.ControllerService_GetRun_FullMethodName:         readers,
	controllerv1.ControllerService_ListRuns_FullMethodName:       readers,
	controllerv1.ControllerService_ApproveStep_FullMethodName:    {pki.RoleApprover, pki.RoleAdmin},
	controllerv1.ControllerService_CancelRun_FullMethodName:      operators,
	controllerv1.ControllerService_ResumeRun_FullMethodName:      operators,
	controllerv1.ControllerService_AcknowledgeRun_FullMethodName: operators,
	controllerv1.ControllerService_ListAudit_FullMethodName:      readers,
	controllerv1.ControllerService_VerifyAudit_FullMethodName:    readers,
	controllerv1.ControllerService_Preflight_FullMethodName:      readers,
	controllerv1.ControllerService_RunDrill_FullMethodName:       operators,
	controllerv1.ControllerService_ListDrills_FullMethodName:     readers,
	controllerv1.ControllerService_GetDrill_FullMethodName:       readers,
}

// Server implements ControllerService.
type Server struct {
	controllerv1.UnimplementedControllerServiceServer

	cfg     *Config
	log     *slog.Logger
	fleet   *fleet.Fleet
	metrics *metrics
	store   *store.Store
	runner  *runner.Runner
	// progress is the agents' latest progress per run step (GetRun).
	progress *progressBook
	// runCtx bounds the runner's goroutines (runs), which serve waits
	// for before it closes the store.
	runCtx context.Context
	runs   sync.WaitGroup

	mu   sync.RWMutex
	topo *topology.Topology

	// drills registers the restore drill in progress (one at a time).
	drills drillBook
}

// Run starts the controller described by cfg and blocks until ctx ends, then
// stops gracefully. ready, when not nil, receives the gRPC and metrics
// addresses once both listen.
func Run(ctx context.Context, cfg *Config, log *slog.Logger, ready func(grpcAddr, metricsAddr string)) error {
	topo, err := topology.Load(cfg.Topology)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, topo, topo.Agents(), log, ready)
}

// serve runs the controller for topo with the given agents (the topology's,
// except in benchmarks that need a larger fleet than a pool may have).
func serve(ctx context.Context, cfg *Config, topo *topology.Topology, agents []topology.Agent, log *slog.Logger, ready func(grpcAddr, metricsAddr string)) error {
	if err := policy.Validate(controllerv1.ControllerService_ServiceDesc); err != nil {
		return err
	}
	mat, err := pki.LoadMaterial(cfg.TLS.CA, cfg.TLS.Cert, cfg.TLS.Key)
	if err != nil {
		return err
	}
	if mat.Identity.Role != pki.RoleController {
		return fmt.Errorf("certificate %s has role %s; the controller needs a certificate with role controller", cfg.TLS.Cert, mat.Identity.Role)
	}
	st, err := store.Open(cfg.StateDir, 2*time.Second)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := installCrashHooks(st, log, killSelf); err != nil {
		return err
	}
	fl, err := fleet.New(mat, st, fleet.Options{Timeout: time.Duration(cfg.Fleet.AgentTimeout), Concurrency: cfg.Fleet.Concurrency})
	if err != nil {
		return err
	}
	defer fl.Close()
	if err := fl.SetAgents(agents); err != nil {
		return err
	}
	runCtx, stopRuns := context.WithCancel(context.WithoutCancel(ctx))
	met := newMetrics()
	met.runs = newRunMetrics(met.reg, st)
	progress := newProgressBook(time.Now)
	s := &Server{cfg: cfg, log: log, fleet: fl, topo: topo, metrics: met, store: st, runCtx: runCtx, progress: progress,
		runner: runner.New(st, fl, runner.Options{Topology: topo, Jitter: 0.2, Observer: met.runs, OnProgress: progress.record, Log: log})}
	// Runs stop (their steps in flight stay journaled for the next start)
	// before the fleet and the store close.
	defer s.runs.Wait()
	defer stopRuns()
	s.runs.Go(func() {
		if err := s.runner.Resume(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("resume runs", "err", err)
		}
	})

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	gs := grpc.NewServer(append(policy.ServerOptions(), grpc.Creds(credentials.NewTLS(mat.ServerConfig())))...)
	controllerv1.RegisterControllerServiceServer(gs, s)

	errc := make(chan error, 2)
	var msrv *http.Server
	metricsAddr := ""
	if cfg.MetricsListen != "" {
		mlis, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			lis.Close()
			return fmt.Errorf("listen for metrics on %s: %w", cfg.MetricsListen, err)
		}
		metricsAddr = mlis.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
		msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := msrv.Serve(mlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics server: %w", err)
			}
		}()
	}
	go func() {
		if err := gs.Serve(lis); err != nil {
			errc <- fmt.Errorf("grpc server: %w", err)
		}
	}()
	log.Info("controller listening", "grpc", lis.Addr().String(), "metrics", metricsAddr, "pool", topo.Pool,
		"agents", len(agents), "version", buildinfo.Version())
	if ready != nil {
		ready(lis.Addr().String(), metricsAddr)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	log.Info("controller stopping")
	graceful := make(chan struct{})
	go func() { gs.GracefulStop(); close(graceful) }()
	select {
	case <-graceful:
	case <-time.After(time.Duration(cfg.ShutdownGrace)):
		gs.Stop()
	}
	if msrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = msrv.Shutdown(sctx)
	}
	log.Info("controller stopped")
	return runErr
}

// GetFleetStatus implements ControllerService.
func (s *Server) GetFleetStatus(ctx context.Context, req *controllerv1.GetFleetStatusRequest) (*controllerv1.GetFleetStatusResponse, error) {
	// Hold the topology for the whole call, so that a reload cannot mix one
	// topology's pool and sites with another's agents.
	s.mu.RLock()
	defer s.mu.RUnlock()
	topo := s.topo
	if site := req.GetSite(); site != "" {
		known := false
		for _, st := range topo.Sites {
			known = known || st.Name == site
		}
		if !known {
			return nil, status.Errorf(codes.InvalidArgument, "site %q is not in the topology of pool %s", site, topo.Pool)
		}
	}
	timeout := req.GetAgentTimeout().AsDuration()
	if req.GetAgentTimeout() != nil && timeout <= 0 {
		return nil, status.Error(codes.InvalidArgument, "agent_timeout must be positive")
	}
	if max := time.Duration(s.cfg.Fleet.MaxAgentTimeout); timeout > max {
		timeout = max
	}
	start := time.Now()
	res, err := s.fleet.Status(ctx, req.GetSite(), timeout, req.GetProbes())
	if res == nil && err != nil {
		return nil, status.FromContextError(err).Err()
	}
	if err != nil {
		// The answer is still good; only the last-seen record failed.
		s.log.Warn("fleet status", "err", err)
	}
	elapsed := time.Since(start)
	s.metrics.fleetLatency.Observe(elapsed.Seconds())
	resp := &controllerv1.GetFleetStatusResponse{
		Pool:      topo.Pool,
		Sites:     sitesToProto(topo),
		CheckedAt: timestamppb.New(start),
		Elapsed:   durationpb.New(elapsed),
	}
	for _, r := range res {
		resp.Agents = append(resp.Agents, agentStatusToProto(r))
		v := 0.0
		if r.Reachable {
			v = 1
		}
		s.metrics.reachable.WithLabelValues(r.Agent.Host, r.Agent.Site).Set(v)
	}
	return resp, nil
}

// ReloadTopology implements ControllerService.
func (s *Server) ReloadTopology(ctx context.Context, _ *controllerv1.ReloadTopologyRequest) (*controllerv1.ReloadTopologyResponse, error) {
	topo, err := topology.Load(s.cfg.Topology)
	if err != nil {
		if errors.Is(err, topology.ErrInvalid) {
			return nil, status.Errorf(codes.InvalidArgument, "the topology in use is kept; %s is not valid:\n%v", s.cfg.Topology, err)
		}
		return nil, status.Errorf(codes.FailedPrecondition, "the topology in use is kept: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fleet.SetAgents(topo.Agents()); err != nil {
		return nil, status.Errorf(codes.Internal, "apply topology: %v", err)
	}
	kept := map[string]bool{}
	for _, a := range topo.Agents() {
		kept[a.Host+"\x00"+a.Site] = true
	}
	for _, a := range s.topo.Agents() {
		if !kept[a.Host+"\x00"+a.Site] {
			s.metrics.reachable.DeleteLabelValues(a.Host, a.Site)
		}
	}
	s.topo = topo
	who, _ := authz.PeerIdentity(ctx)
	s.log.Info("topology reloaded", "by", who.String(), "pool", topo.Pool, "agents", len(topo.Agents()))
	return &controllerv1.ReloadTopologyResponse{Pool: topo.Pool, Agents: int32(len(topo.Agents()))}, nil
}

// metrics are the controller's Prometheus metrics.
type metrics struct {
	reg          *prometheus.Registry
	fleetLatency prometheus.Histogram
	reachable    *prometheus.GaugeVec
	runs         *runMetrics // nil in tests that build metrics alone
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{
		reg: reg,
		fleetLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "chatdr_controller_fleet_status_seconds", Help: "Duration of a fleet-status fan-out.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		reachable: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "chatdr_agent_reachable", Help: "1 when the agent answered the last fleet-status call, else 0.",
		}, []string{"host", "site"}),
	}
	reg.MustRegister(m.fleetLatency, m.reachable)
	return m
}

// planKinds maps the API's plan kinds to the builders'.
var planKinds = map[controllerv1.PlanKind]plan.Kind{
	controllerv1.PlanKind_PLAN_KIND_FAILOVER_PLANNED:  plan.FailoverPlanned,
	controllerv1.PlanKind_PLAN_KIND_FAILOVER_DISASTER: plan.FailoverDisaster,
	controllerv1.PlanKind_PLAN_KIND_FAILBACK:          plan.Failback,
}

// BuildPlan implements ControllerService.
func (s *Server) BuildPlan(ctx context.Context, req *controllerv1.BuildPlanRequest) (*controllerv1.BuildPlanResponse, error) {
	p, said, err := s.buildPlan(ctx, req)
	if err != nil {
		return nil, err
	}
	pp, err := planToProto(p)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode plan: %v", err)
	}
	return &controllerv1.BuildPlanResponse{Plan: pp, Table: p.Table(), Facts: said}, nil
}

// buildPlan builds the plan req asks for from what the agents report now,
// and returns it with the facts it was built from; errors are gRPC
// statuses.
func (s *Server) buildPlan(ctx context.Context, req *controllerv1.BuildPlanRequest) (*plan.Plan, []string, error) {
	kind, ok := planKinds[req.GetKind()]
	if !ok {
		return nil, nil, status.Error(codes.InvalidArgument, "kind must be failover-planned, failover-disaster or failback")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	topo := s.topo
	if !strings.EqualFold(req.GetPool(), topo.Pool) {
		return nil, nil, status.Errorf(codes.NotFound, "pool %q is not in the topology; this controller manages %s", req.GetPool(), topo.Pool)
	}
	statuses, err := s.fleet.Status(ctx, "", time.Duration(s.cfg.Fleet.AgentTimeout), true)
	if statuses == nil && err != nil {
		return nil, nil, status.FromContextError(err).Err()
	}
	s.metrics.observeFleet(statuses)
	facts, said := planFacts(topo, statuses)
	p, err := plan.Build(topo, facts, plan.Request{
		Kind: kind, Pool: topo.Pool, Now: time.Now().UTC(),
		Options: plan.Options{SkipMirroring: req.GetSkipMirroring()},
		Force:   plan.Force{SplitBrain: req.GetForceSplitBrain(), PoolState: req.GetForcePoolState(), Reason: req.GetForceReason()},
	})
	if err != nil {
		switch {
		case errors.Is(err, plan.ErrUnknownPool):
			return nil, nil, status.Error(codes.NotFound, err.Error())
		case errors.Is(err, plan.ErrBadRequest):
			return nil, nil, status.Error(codes.InvalidArgument, err.Error())
		default:
			return nil, nil, status.Error(codes.FailedPrecondition, err.Error())
		}
	}
	return p, said, nil
}
