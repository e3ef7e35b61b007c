package controller

import (
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/fleet"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/store"
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

// runToProto converts a run for the API; step outputs only when withOutput.
func runToProto(r *store.Run, withOutput bool) *controllerv1.Run {
	var kind controllerv1.PlanKind
	for k, v := range planKinds {
		if v == r.Kind {
			kind = k
		}
	}
	out := &controllerv1.Run{
		Id: r.ID, Pool: r.Pool, Kind: kind, State: string(r.Status.State),
		StartedBy: r.StartedBy.Name, Reason: r.Reason,
		Created: ts(r.Created), Updated: ts(r.Updated), Started: ts(r.Status.Started), Ended: ts(r.Status.Ended),
		Error:       errorToProto(r.Status.Error),
		CancelledBy: r.Status.CancelledBy, CancelReason: r.Status.CancelReason,
		ResumedBy: r.Status.ResumedBy, AcknowledgedBy: r.Status.AcknowledgedBy,
	}
	if r.Force != (store.Force{}) {
		if b, err := json.Marshal(r.Force); err == nil {
			out.ForceJson = string(b)
		}
	}
	for _, st := range r.Steps {
		ps := &controllerv1.RunStep{
			Id: st.ID, Group: st.Group, GroupIndex: int32(st.GroupIndex), Host: st.Host, Action: st.Action,
			State: string(st.Status.State), Attempts: int32(len(st.Status.Attempts)), MaxAttempts: int32(st.Status.MaxAttempts),
			Started: ts(st.Status.Started), Ended: ts(st.Status.Ended), Error: errorToProto(st.Status.Error),
			RequiredApprovers: int32(st.Status.RequiredApprovers), Destructive: st.Destructive, SkipReason: st.Status.SkipReason,
		}
		if withOutput && len(st.Status.Output) > 0 {
			ps.OutputJson = string(st.Status.Output)
		}
		for _, a := range st.Status.Approvals {
			ps.Approvals = append(ps.Approvals, &controllerv1.Approval{Approver: a.Approver, Role: string(a.Role), Reason: a.Reason, Time: ts(a.Time)})
		}
		out.Steps = append(out.Steps, ps)
	}
	return out
}

// runDetailToProto converts a run for GetRun: step outputs, each step's
// latest progress from progress (keyed by step ID; may be nil) and the
// report as of now.
func runDetailToProto(r *store.Run, progress map[string]stepProgress, now time.Time) *controllerv1.Run {
	out := runToProto(r, true)
	for _, ps := range out.Steps {
		if p, ok := progress[ps.Id]; ok {
			ps.Progress = &controllerv1.StepProgress{Stage: p.Stage, Done: p.Done, Total: p.Total, Unit: p.Unit, Time: ts(p.Time)}
		}
	}
	out.Report = reportToProto(runReport(r, now))
	return out
}

// runDetail converts a run for GetRun with the progress the agents
// reported to this controller.
func (s *Server) runDetail(r *store.Run) *controllerv1.Run {
	var progress map[string]stepProgress
	if s.progress != nil {
		var ended time.Time
		if r.Status.State.Finished() {
			ended = r.Status.Ended
			if ended.IsZero() {
				ended = r.Updated
			}
		}
		progress = s.progress.snapshot(r.ID, ended)
	}
	return runDetailToProto(r, progress, time.Now())
}

// reportToProto converts a run report.
func reportToProto(rep report) *controllerv1.RunReport {
	out := &controllerv1.RunReport{
		Elapsed: durationpb.New(rep.Elapsed), WaitingApproval: durationpb.New(rep.WaitingApproval),
		Outage: durationpb.New(rep.Outage), DataLossKnown: rep.DataLoss.Known,
		RestoredTo: ts(rep.DataLoss.RestoredTo), NewestBackup: ts(rep.DataLoss.NewestBackup),
		DataLossNotes: rep.DataLossNotes, StepsRetried: int32(rep.StepsRetried),
	}
	if rep.DataLoss.Known {
		out.DataLoss = durationpb.New(rep.DataLoss.Window)
	}
	for _, a := range rep.Approvals {
		out.Approvals = append(out.Approvals, &controllerv1.ReportApproval{StepId: a.StepID,
			Approval: &controllerv1.Approval{Approver: a.Approver, Role: string(a.Role), Reason: a.Reason, Time: ts(a.Time)}})
	}
	return out
}

// errorToProto converts a run or step error; nil stays nil.
func errorToProto(e *engine.Error) *controllerv1.RunError {
	if e == nil {
		return nil
	}
	return &controllerv1.RunError{Code: e.Code, Message: e.Message, Host: e.Host, Hint: e.Hint, Retryable: e.Retryable}
}

// auditToProto converts an audit entry.
func auditToProto(e store.AuditEntry) *controllerv1.AuditEntry {
	return &controllerv1.AuditEntry{Seq: e.Seq, Time: ts(e.Time), Actor: e.Actor.Name, ActorRole: string(e.Actor.Role),
		Action: e.Action, RunId: e.RunID, StepId: e.StepID, DetailsJson: string(e.Details), PrevHash: e.PrevHash, Hash: e.Hash}
}

// ts converts a time; the zero time becomes nil.
func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
