package controller

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/engine/runner"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/store"
	"github.com/chatdr/chatdr/internal/authz"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

// drive starts the runner on run id in a goroutine of the server's
// lifetime. A run the runner already drives (ErrBusy) is left to it.
func (s *Server) drive(id string) {
	s.runs.Go(func() {
		err := s.runner.Start(s.runCtx, id)
		switch {
		case err == nil:
			s.log.Info("run stopped", "run", id)
		case errors.Is(err, runner.ErrBusy), errors.Is(err, context.Canceled):
		default:
			s.log.Warn("run stopped", "run", id, "err", err)
		}
	})
}

// actor maps the caller's certificate identity to the store's actor.
func actor(ctx context.Context) (store.Actor, error) {
	id, err := authz.PeerIdentity(ctx)
	if err != nil {
		return store.Actor{}, err
	}
	return store.Actor{Name: id.Name, Role: id.Role}, nil
}

// runErr maps store, engine and plan errors to gRPC status codes, in one
// place; the store's messages already say what to do next.
func runErr(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	msg := err.Error()
	switch {
	case errors.Is(err, store.ErrRunNotFound):
		return status.Error(codes.NotFound, msg+"; list runs with `chatdr run list`")
	case errors.Is(err, plan.ErrUnknownPool):
		return status.Error(codes.NotFound, msg)
	case errors.Is(err, engine.ErrDuplicateApprover):
		return status.Error(codes.AlreadyExists, msg+"; another approver must approve")
	case errors.Is(err, engine.ErrNotApprover), errors.Is(err, store.ErrForbidden):
		return status.Error(codes.PermissionDenied, msg)
	case errors.Is(err, store.ErrRunActive), errors.Is(err, store.ErrNotAcknowledged):
		return status.Error(codes.FailedPrecondition, msg)
	case errors.Is(err, engine.ErrNotWaitingApproval):
		return status.Error(codes.FailedPrecondition, msg+"; see the run's state with `chatdr run show`")
	case errors.Is(err, engine.ErrInvalidTransition):
		return status.Error(codes.FailedPrecondition, msg+"; see the run's state with `chatdr run show`")
	case errors.Is(err, store.ErrBadRun), errors.Is(err, plan.ErrBadRequest):
		return status.Error(codes.InvalidArgument, msg)
	case errors.Is(err, plan.ErrRefused):
		return status.Error(codes.FailedPrecondition, msg)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, msg)
}

// StartRun implements ControllerService.
func (s *Server) StartRun(ctx context.Context, req *controllerv1.StartRunRequest) (*controllerv1.StartRunResponse, error) {
	who, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetForceUnacknowledged() && strings.TrimSpace(req.GetForceReason()) == "" {
		return nil, status.Error(codes.InvalidArgument, "force_unacknowledged needs force_reason: say why the previous run need not be acknowledged")
	}
	p, _, err := s.buildPlan(ctx, &controllerv1.BuildPlanRequest{Pool: req.GetPool(), Kind: req.GetKind(),
		SkipMirroring: req.GetSkipMirroring(), ForceSplitBrain: req.GetForceSplitBrain(),
		ForcePoolState: req.GetForcePoolState(), ForceReason: req.GetForceReason()})
	if err != nil {
		return nil, err
	}
	run, err := s.store.CreateRun(store.NewRun{Plan: p, Actor: who, Reason: req.GetReason(),
		Force: store.Force{SplitBrain: req.GetForceSplitBrain(), PoolState: req.GetForcePoolState(),
			Unacknowledged: req.GetForceUnacknowledged(), Reason: req.GetForceReason()}})
	if err != nil {
		return nil, runErr(err)
	}
	s.log.Info("run created", "run", run.ID, "pool", run.Pool, "kind", run.Kind, "by", who.Name)
	s.drive(run.ID)
	return &controllerv1.StartRunResponse{RunId: run.ID, Run: runToProto(run, false)}, nil
}

// GetRun implements ControllerService.
func (s *Server) GetRun(_ context.Context, req *controllerv1.GetRunRequest) (*controllerv1.GetRunResponse, error) {
	if req.GetRunId() == "" {
		return nil, status.Error(codes.InvalidArgument, "run_id is required (run IDs look like run-12)")
	}
	run, err := s.store.GetRun(req.GetRunId())
	if err != nil {
		return nil, runErr(err)
	}
	return &controllerv1.GetRunResponse{Run: s.runDetail(run)}, nil
}

// ListRuns implements ControllerService.
func (s *Server) ListRuns(_ context.Context, req *controllerv1.ListRunsRequest) (*controllerv1.ListRunsResponse, error) {
	if req.GetLimit() < 0 {
		return nil, status.Error(codes.InvalidArgument, "limit must not be negative")
	}
	runs, err := s.store.ListRuns(int(req.GetLimit()))
	if err != nil {
		return nil, runErr(err)
	}
	out := &controllerv1.ListRunsResponse{}
	for _, r := range runs {
		out.Runs = append(out.Runs, runToProto(r, false))
	}
	return out, nil
}

// ApproveStep implements ControllerService.
func (s *Server) ApproveStep(ctx context.Context, req *controllerv1.ApproveStepRequest) (*controllerv1.ApproveStepResponse, error) {
	who, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(req.GetReason()) == "" {
		return nil, status.Error(codes.InvalidArgument, "a reason is required to approve (it is audited)")
	}
	stepID := req.GetStepId()
	if stepID == "" {
		run, err := s.store.GetRun(req.GetRunId())
		if err != nil {
			return nil, runErr(err)
		}
		var waiting []string
		for _, st := range run.Steps {
			if st.Status.State == engine.StepWaitingApproval {
				waiting = append(waiting, st.ID)
			}
		}
		switch len(waiting) {
		case 0:
			return nil, status.Errorf(codes.FailedPrecondition, "run %s (%s) has no step waiting for approval", run.ID, run.Status.State)
		case 1:
			stepID = waiting[0]
		default:
			return nil, status.Errorf(codes.InvalidArgument, "run %s has several steps waiting for approval (%s): name one with --step", run.ID, strings.Join(waiting, ", "))
		}
	}
	run, complete, err := s.store.Approve(req.GetRunId(), stepID, who, req.GetReason())
	if err != nil {
		if errors.Is(err, engine.ErrDuplicateApprover) || errors.Is(err, engine.ErrNotApprover) || errors.Is(err, engine.ErrNotWaitingApproval) {
			// A refused approval is audited too (issue 5); it records no approval.
			if _, aerr := s.store.Audit(who, "approval.refused", req.GetRunId(), stepID, map[string]any{"reason": req.GetReason(), "error": err.Error()}); aerr != nil {
				s.log.Warn("audit refused approval", "run", req.GetRunId(), "step", stepID, "err", aerr)
			}
		}
		return nil, runErr(err)
	}
	s.log.Info("step approved", "run", run.ID, "step", stepID, "by", who.Name, "complete", complete)
	if complete && !run.Status.State.Finished() {
		s.drive(run.ID)
	}
	return &controllerv1.ApproveStepResponse{Run: runToProto(run, false), StepId: stepID, Complete: complete}, nil
}

// fireByPerson fires a run event asked for by the caller.
func (s *Server) fireByPerson(ctx context.Context, runID string, e engine.RunEvent, reason string) (*store.Run, error) {
	who, err := actor(ctx)
	if err != nil {
		return nil, err
	}
	if runID == "" {
		return nil, status.Error(codes.InvalidArgument, "run_id is required (run IDs look like run-12)")
	}
	run, err := s.store.FireRun(runID, who, e, engine.RunInput{Now: time.Now().UTC(), Actor: who.Name, Reason: reason})
	if err != nil {
		return nil, runErr(err)
	}
	s.log.Info("run "+string(e), "run", run.ID, "by", who.Name, "state", run.Status.State)
	return run, nil
}

// CancelRun implements ControllerService.
func (s *Server) CancelRun(ctx context.Context, req *controllerv1.CancelRunRequest) (*controllerv1.CancelRunResponse, error) {
	run, err := s.fireByPerson(ctx, req.GetRunId(), engine.RunCancel, req.GetReason())
	if err != nil {
		return nil, err
	}
	if run.Status.State == engine.RunCancelling {
		// Settle the steps in flight; a runner already driving it does so.
		s.drive(run.ID)
	}
	if run.Status.State == engine.RunCancelled {
		// Cancelled at once (no step in flight): no runner saw it end.
		s.metrics.runs.RunStopped(run)
	}
	return &controllerv1.CancelRunResponse{Run: runToProto(run, false)}, nil
}

// ResumeRun implements ControllerService.
func (s *Server) ResumeRun(ctx context.Context, req *controllerv1.ResumeRunRequest) (*controllerv1.ResumeRunResponse, error) {
	run, err := s.fireByPerson(ctx, req.GetRunId(), engine.RunResume, "")
	if err != nil {
		return nil, err
	}
	s.drive(run.ID)
	return &controllerv1.ResumeRunResponse{Run: runToProto(run, false)}, nil
}

// AcknowledgeRun implements ControllerService.
func (s *Server) AcknowledgeRun(ctx context.Context, req *controllerv1.AcknowledgeRunRequest) (*controllerv1.AcknowledgeRunResponse, error) {
	run, err := s.fireByPerson(ctx, req.GetRunId(), engine.RunAcknowledge, "")
	if err != nil {
		return nil, err
	}
	return &controllerv1.AcknowledgeRunResponse{Run: runToProto(run, false)}, nil
}

// ListAudit implements ControllerService.
func (s *Server) ListAudit(_ context.Context, req *controllerv1.ListAuditRequest) (*controllerv1.ListAuditResponse, error) {
	if req.GetLimit() < 0 {
		return nil, status.Error(codes.InvalidArgument, "limit must not be negative")
	}
	entries, err := s.store.ListAudit(store.AuditFilter{RunID: req.GetRunId(), StepID: req.GetStepId(), Action: req.GetAction(),
		Actor: req.GetActor(), AfterSeq: req.GetAfterSeq(), Limit: int(req.GetLimit())})
	if err != nil {
		return nil, runErr(err)
	}
	out := &controllerv1.ListAuditResponse{}
	for _, e := range entries {
		out.Entries = append(out.Entries, auditToProto(e))
	}
	return out, nil
}

// VerifyAudit implements ControllerService.
func (s *Server) VerifyAudit(_ context.Context, _ *controllerv1.VerifyAuditRequest) (*controllerv1.VerifyAuditResponse, error) {
	ok, bad, err := s.store.VerifyAudit()
	if err != nil {
		return nil, runErr(err)
	}
	seq, hash, err := s.store.AuditHead()
	if err != nil {
		return nil, runErr(err)
	}
	return &controllerv1.VerifyAuditResponse{Ok: ok, FirstBad: bad, HeadSeq: seq, HeadHash: hash}, nil
}
