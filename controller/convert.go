package controller

import (
	"fmt"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chatdr/chatdr/controller/fleet"
	"github.com/chatdr/chatdr/controller/plan"
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

// planToProto converts a plan for the API.
func planToProto(p *plan.Plan) (*controllerv1.Plan, error) {
	var kind controllerv1.PlanKind
	for k, v := range planKinds {
		if v == p.Kind {
			kind = k
		}
	}
	out := &controllerv1.Plan{Kind: kind, Pool: p.Pool, Notes: p.Notes}
	for _, g := range p.Groups {
		pg := &controllerv1.PlanGroup{Name: g.Name}
		for _, st := range g.Steps {
			params, err := structpb.NewStruct(st.Params)
			if err != nil {
				return nil, fmt.Errorf("step %s params: %w", st.ID, err)
			}
			ps := &controllerv1.PlanStep{
				Id: st.ID, Host: st.Host, Action: st.Action, Params: params,
				Timeout: durationpb.New(st.Timeout), MaxAttempts: int32(st.Retry.MaxAttempts),
				Backoff: durationpb.New(st.Retry.Backoff), MaxBackoff: durationpb.New(st.Retry.MaxBackoff),
				ApprovalRequired: st.Approval.Required, ApprovalWhen: st.Approval.When, Approvers: int32(st.Approval.Approvers),
				Destructive: st.Destructive, BestEffort: st.BestEffort, Reason: st.Reason,
				ExpectFrom: st.ExpectFrom, DataLossFrom: st.DataLossFrom,
			}
			if len(st.Expect) > 0 {
				if ps.Expect, err = structpb.NewStruct(st.Expect); err != nil {
					return nil, fmt.Errorf("step %s expect: %w", st.ID, err)
				}
			}
			for _, gd := range st.Guards {
				ps.Guards = append(ps.Guards, &controllerv1.PlanGuard{Kind: gd.Kind, Host: gd.Host, Database: gd.Database, Override: gd.Override})
			}
			pg.Steps = append(pg.Steps, ps)
		}
		out.Groups = append(out.Groups, pg)
	}
	return out, nil
}
