package controller

import (
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chatdr/chatdr/controller/fleet"
	"github.com/chatdr/chatdr/controller/topology"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

// agentStatusToProto converts one fleet status entry for the API.
func agentStatusToProto(s fleet.Status) *controllerv1.AgentStatus {
	out := &controllerv1.AgentStatus{
		Host:      s.Agent.Host,
		Address:   s.Agent.Address,
		Site:      s.Agent.Site,
		Roles:     s.Agent.Roles,
		Reachable: s.Reachable,
		Warnings:  s.Warnings,
		Facts:     s.Facts,
	}
	if s.Reachable {
		out.Latency = durationpb.New(s.Latency)
	}
	if s.Info != nil {
		out.Info = s.Info.GetHost()
		out.Plugins = s.Info.GetPlugins()
	}
	if s.Err != nil {
		out.Error = s.Err.Error()
	}
	if !s.LastSeen.IsZero() {
		out.LastSeen = timestamppb.New(s.LastSeen)
	}
	return out
}

// sitesToProto converts the topology's sites for the API.
func sitesToProto(t *topology.Topology) []*controllerv1.Site {
	out := make([]*controllerv1.Site, len(t.Sites))
	for i, s := range t.Sites {
		out[i] = &controllerv1.Site{Name: s.Name, Role: string(s.Role)}
	}
	return out
}
