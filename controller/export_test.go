package controller

import (
	"context"
	"log/slog"

	"github.com/chatdr/chatdr/controller/topology"
)

// RunWithAgents serves ControllerService like Run, but over the given agents
// instead of those of the topology, so that a benchmark can drive a fleet
// larger than a pool may name. topo supplies the pool and sites.
func RunWithAgents(ctx context.Context, cfg *Config, topo *topology.Topology, agents []topology.Agent, log *slog.Logger, ready func(grpcAddr string)) error {
	return serve(ctx, cfg, topo, agents, log, func(grpcAddr, _ string) {
		if ready != nil {
			ready(grpcAddr)
		}
	})
}
