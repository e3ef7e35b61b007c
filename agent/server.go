package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chatdr/chatdr/agent/journal"
	"github.com/chatdr/chatdr/agent/pluginhost"
	"github.com/chatdr/chatdr/internal/authz"
	"github.com/chatdr/chatdr/internal/buildinfo"
	"github.com/chatdr/chatdr/internal/pki"
	"github.com/chatdr/chatdr/pluginsdk"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

// journalRetention is how long ended executions stay in the journal: longer
// than any run a controller could still resume.
const journalRetention = 30 * 24 * time.Hour

// Policy is who may call which AgentService RPC.
var policy = authz.Policy{
	agentv1.AgentService_GetInfo_FullMethodName:      pki.AllRoles(),
	agentv1.AgentService_Probe_FullMethodName:        pki.AllRoles(),
	agentv1.AgentService_GetExecution_FullMethodName: pki.AllRoles(),
	agentv1.AgentService_Execute_FullMethodName:      {pki.RoleController},
}

// Server is a running agent: its gRPC service and metrics endpoint.
type Server struct {
	agentv1.UnimplementedAgentServiceServer

	cfg     *Config
	log     *slog.Logger
	started time.Time
	exec    *Executor
	plugins *pluginhost.Host
	metrics *metrics
}

// Run starts the agent described by cfg and blocks until ctx ends, then stops
// gracefully within the configured grace. ready, when not nil, receives the
// gRPC and metrics addresses once both listen.
func Run(ctx context.Context, cfg *Config, log *slog.Logger, ready func(grpcAddr, metricsAddr string)) error {
	if err := policy.Validate(agentv1.AgentService_ServiceDesc); err != nil {
		return err
	}
	mat, err := pki.LoadMaterial(cfg.TLS.CA, cfg.TLS.Cert, cfg.TLS.Key)
	if err != nil {
		return err
	}
	if mat.Identity.Role != pki.RoleAgent {
		return fmt.Errorf("certificate %s has role %s; an agent needs a certificate with role agent", cfg.TLS.Cert, mat.Identity.Role)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}

	specs, err := pluginSpecs(cfg)
	if err != nil {
		return err
	}
	stopCtx, stopActions := context.WithCancel(context.Background())
	defer stopActions()
	s := &Server{cfg: cfg, log: log, started: time.Now()}
	s.metrics = newMetrics(cfg, s.started)
	s.plugins = pluginhost.New(specs, log, os.Stderr)
	defer s.plugins.Close()
	// A plugin that does not start is reported in GetInfo, not fatal: the
	// agent still serves facts and the other plugins.
	_ = s.plugins.Start(ctx)
	jr, interrupted, err := journal.Open(cfg.StateDir)
	if err != nil {
		return err
	}
	defer jr.Close()
	if interrupted > 0 {
		log.Warn("executions were running when the agent last stopped; they are reported as interrupted", "count", interrupted)
	}
	if n, err := jr.Prune(time.Now().Add(-journalRetention)); err != nil {
		log.Warn("prune journal", "err", err)
	} else if n > 0 {
		log.Info("pruned old executions from the journal", "count", n)
	}
	s.exec = NewExecutor(stopCtx, jr, log, append(builtinActions(), pluginActions(s.plugins)...), s.metrics.executionDone)

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	// Metrics first, so that refused calls are counted too.
	opts := append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.metrics.unary),
		grpc.ChainStreamInterceptor(s.metrics.stream),
	}, policy.ServerOptions()...)
	opts = append(opts,
		grpc.Creds(credentials.NewTLS(mat.ServerConfig())),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	gs := grpc.NewServer(opts...)
	agentv1.RegisterAgentServiceServer(gs, s)

	var msrv *http.Server
	metricsAddr := ""
	errc := make(chan error, 2)
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
	log.Info("agent listening", "host", cfg.Host, "site", cfg.Site, "grpc", lis.Addr().String(), "metrics", metricsAddr, "version", buildinfo.Version())
	if ready != nil {
		ready(lis.Addr().String(), metricsAddr)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	log.Info("agent stopping", "grace", time.Duration(cfg.ShutdownGrace))
	graceful := make(chan struct{})
	go func() { gs.GracefulStop(); close(graceful) }()
	select {
	case <-graceful:
	case <-time.After(time.Duration(cfg.ShutdownGrace)):
		log.Warn("calls still in flight after the grace period; closing them")
		gs.Stop()
	}
	stopActions()
	s.exec.Wait()
	if msrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = msrv.Shutdown(sctx)
	}
	log.Info("agent stopped")
	return runErr
}

// hostInfo returns the host facts.
func (s *Server) hostInfo() *agentv1.HostInfo {
	osHost, _ := os.Hostname()
	return &agentv1.HostInfo{
		Host:         s.cfg.Host,
		OsHostname:   osHost,
		Site:         s.cfg.Site,
		Roles:        s.cfg.Roles,
		AgentVersion: buildinfo.Version(),
		StartedAt:    timestamppb.New(s.started),
		Uptime:       durationpb.New(time.Since(s.started).Truncate(time.Millisecond)),
		Os:           runtime.GOOS,
		Arch:         runtime.GOARCH,
	}
}

// GetInfo implements AgentService.
func (s *Server) GetInfo(context.Context, *agentv1.GetInfoRequest) (*agentv1.GetInfoResponse, error) {
	actions := s.exec.ActionInfos()
	sort.Slice(actions, func(i, j int) bool { return actions[i].GetName() < actions[j].GetName() })
	builtin := &agentv1.PluginInfo{
		Name:        builtinPlugin,
		Version:     buildinfo.Version(),
		ApiVersions: []uint32{1},
		Actions:     actions,
		Probes:      []*agentv1.ProbeInfo{{Name: "agent.host", Description: "host facts: name, site, roles, version, uptime, OS"}},
	}
	var own []*agentv1.ActionInfo
	for _, a := range actions {
		if pluginhost.PluginFor(a.GetName()) == builtinPlugin {
			own = append(own, a)
		}
	}
	builtin.Actions = own
	return &agentv1.GetInfoResponse{Host: s.hostInfo(), Plugins: append([]*agentv1.PluginInfo{builtin}, pluginInfos(s.plugins)...)}, nil
}

// Probe implements AgentService.
func (s *Server) Probe(ctx context.Context, req *agentv1.ProbeRequest) (*agentv1.ProbeResponse, error) {
	names := req.GetNames()
	if len(names) == 0 {
		names = []string{"agent.host"}
		for _, p := range s.plugins.Plugins() {
			if p.Info != nil {
				for _, pr := range p.Info.Probes {
					names = append(names, pr.Name)
				}
			}
		}
	}
	resp := &agentv1.ProbeResponse{}
	for _, n := range names {
		switch n {
		case "agent.host":
			h := s.hostInfo()
			roles := make([]any, len(h.GetRoles()))
			for i, r := range h.GetRoles() {
				roles[i] = r
			}
			v, err := structpb.NewStruct(map[string]any{
				"host": h.GetHost(), "os_hostname": h.GetOsHostname(), "site": h.GetSite(), "roles": roles,
				"agent_version": h.GetAgentVersion(), "uptime_seconds": h.GetUptime().AsDuration().Seconds(),
				"os": h.GetOs(), "arch": h.GetArch(),
			})
			if err != nil {
				return nil, status.Errorf(codes.Internal, "probe %s: %v", n, err)
			}
			resp.Facts = append(resp.Facts, &agentv1.Fact{Name: n, Value: v, ObservedAt: timestamppb.Now()})
		default:
			if !s.offersProbe(n) {
				return nil, status.Errorf(codes.NotFound, "probe %q is not offered by agent %s", n, s.cfg.Host)
			}
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			out, err := s.plugins.Probe(pctx, n, pluginsdk.Params(pluginsdk.FromStruct(req.GetParams())))
			cancel()
			fact := &agentv1.Fact{Name: n, ObservedAt: timestamppb.Now()}
			if err != nil {
				fact.Error = pluginsdk.ErrorToProto(err)
			} else if fact.Value, err = pluginsdk.ToStruct(out); err != nil {
				fact.Error = &agentv1.ActionError{Code: "bad_output", Message: err.Error()}
			}
			resp.Facts = append(resp.Facts, fact)
		}
	}
	return resp, nil
}

// offersProbe reports whether a running plugin offers probe name.
func (s *Server) offersProbe(name string) bool {
	for _, p := range s.plugins.Plugins() {
		if p.Info == nil {
			continue
		}
		for _, pr := range p.Info.Probes {
			if pr.Name == name {
				return true
			}
		}
	}
	return false
}

// Execute implements AgentService.
func (s *Server) Execute(req *agentv1.ExecuteRequest, stream grpc.ServerStreamingServer[agentv1.ExecuteResponse]) error {
	err := s.exec.Execute(stream.Context(), req, stream.Send)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrBadRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrUnknownAction):
		return status.Errorf(codes.NotFound, "%v on agent %s", err, s.cfg.Host)
	case errors.Is(err, ErrKeyReused):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	default:
		return err
	}
}

// GetExecution implements AgentService.
func (s *Server) GetExecution(_ context.Context, req *agentv1.GetExecutionRequest) (*agentv1.GetExecutionResponse, error) {
	if req.GetIdempotencyKey() == "" {
		return nil, status.Error(codes.InvalidArgument, "idempotency_key is required")
	}
	return s.exec.Get(req.GetIdempotencyKey()), nil
}

// metrics are the agent's Prometheus metrics.
type metrics struct {
	reg        *prometheus.Registry
	rpcs       *prometheus.CounterVec
	executions *prometheus.CounterVec
}

func newMetrics(cfg *Config, started time.Time) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{
		reg: reg,
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatdr_agent_rpcs_total", Help: "gRPC calls served, by method and status code.",
		}, []string{"method", "code"}),
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatdr_agent_executions_total", Help: "Action executions ended, by action and final state.",
		}, []string{"action", "state"}),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "chatdr_agent_info", Help: "Always 1; labels describe the agent.",
		ConstLabels: prometheus.Labels{"host": cfg.Host, "site": cfg.Site, "version": buildinfo.Version()},
	})
	info.Set(1)
	start := prometheus.NewGauge(prometheus.GaugeOpts{Name: "chatdr_agent_start_time_seconds", Help: "When the agent started, in Unix seconds."})
	start.Set(float64(started.Unix()))
	reg.MustRegister(m.rpcs, m.executions, info, start)
	return m
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	m.rpcs.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	err := h(srv, ss)
	m.rpcs.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return err
}

func (m *metrics) executionDone(action string, state agentv1.ExecutionState) {
	m.executions.WithLabelValues(action, state.String()).Inc()
}
