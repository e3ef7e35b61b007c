package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chatdr/chatdr/controller/store"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

// drillAction is the agent action a drill runs on the backup SQL host.
const drillAction = "mssql.drill.restore_copy"

// drillTimeout bounds one drill's action (a full restore of mgc).
const drillTimeout = 4 * time.Hour

// drillBook registers the drill in progress: its registration is the
// drills' lock (one at a time). The zero value is ready.
type drillBook struct {
	mu      sync.Mutex
	running string // drill ID, "" when none
}

// RunDrill implements ControllerService.
func (s *Server) RunDrill(ctx context.Context, req *controllerv1.RunDrillRequest) (*controllerv1.RunDrillResponse, error) {
	if strings.TrimSpace(req.GetPool()) == "" {
		return nil, status.Error(codes.InvalidArgument, "pool is required (the Persistent Chat pool FQDN)")
	}
	who, err := actor(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	s.mu.RLock()
	topo := s.topo
	s.mu.RUnlock()
	if !strings.EqualFold(req.GetPool(), topo.Pool) {
		return nil, status.Errorf(codes.NotFound, "pool %q is not in the topology; this controller manages %s", req.GetPool(), topo.Pool)
	}
	if topo.SQL.Backup == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "the topology of %s has no backup SQL host: there is no log-shipped copy to drill", topo.Pool)
	}
	host, database := topo.SQL.Backup.FQDN, topo.Databases.Chat

	d, done, err := s.registerDrill(topo.Pool, who, host, database)
	if err != nil {
		return nil, err
	}
	started := *d
	s.runs.Go(func() {
		defer close(done)
		s.runDrill(s.runCtx, d)
		s.drills.mu.Lock()
		s.drills.running = ""
		s.drills.mu.Unlock()
	})
	if !req.GetWait() {
		return &controllerv1.RunDrillResponse{Report: drillToProto(&started, true)}, nil
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	got, err := s.store.GetDrill(started.ID)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read drill %s: %v", started.ID, err)
	}
	return &controllerv1.RunDrillResponse{Report: drillToProto(got, false)}, nil
}

// registerDrill refuses a drill while another one runs or a run of the
// pool is in progress, else registers it (store and drillBook) and audits
// it; done is closed when it ends. Errors are gRPC statuses.
func (s *Server) registerDrill(pool string, who store.Actor, host, database string) (*store.Drill, chan struct{}, error) {
	s.drills.mu.Lock()
	defer s.drills.mu.Unlock()
	if s.drills.running != "" {
		return nil, nil, status.Errorf(codes.FailedPrecondition, "drill %s is running; one drill at a time (see `chatdr drill show %s`)", s.drills.running, s.drills.running)
	}
	// A drill competes with a failover for the backup host's disks and must
	// not restore while a run changes the databases.
	runs, err := s.store.InFlightRuns()
	if err != nil {
		return nil, nil, runErr(err)
	}
	for _, r := range runs {
		if strings.EqualFold(r.Pool, pool) {
			return nil, nil, status.Errorf(codes.FailedPrecondition, "run %s of %s is in progress (%s); drill once it has ended", r.ID, pool, r.Status.State)
		}
	}
	d, interrupted, err := s.store.StartDrill(store.Drill{Pool: pool, StartedBy: who, Host: host, Database: database})
	if err != nil {
		return nil, nil, status.Errorf(codes.Internal, "register the drill: %v", err)
	}
	for _, id := range interrupted {
		s.log.Warn("drill left running by an earlier controller marked interrupted", "drill", id)
	}
	if _, err := s.store.Audit(who, store.ActionDrillStarted, "", "", map[string]any{"drill": d.ID, "pool": pool, "host": host, "database": database}); err != nil {
		s.log.Warn("audit drill start", "drill", d.ID, "err", err)
	}
	s.drills.running = d.ID
	return d, make(chan struct{}), nil
}

// runDrill runs the drill d on its host's agent and stores the outcome.
func (s *Server) runDrill(ctx context.Context, d *store.Drill) {
	if v, ok := s.probeDataLoss(ctx, d.Host, d.Database); ok {
		d.ProbeDataLossSeconds = &v
	}
	out, err := s.executeDrill(ctx, d)
	d.FinishedAt = time.Now().UTC()
	d.State, d.Error = drillOutcome(out, err, ctx.Err() != nil)
	if err == nil {
		d.Output = out
	}
	if err := s.store.SaveDrill(d); err != nil {
		s.log.Error("save drill", "drill", d.ID, "err", err)
	}
	if _, err := s.store.Audit(store.ControllerActor(), store.ActionDrillFinished, "", "", map[string]any{"drill": d.ID, "state": d.State, "error": d.Error}); err != nil {
		s.log.Warn("audit drill end", "drill", d.ID, "err", err)
	}
	s.log.Info("drill ended", "drill", d.ID, "state", d.State, "err", d.Error)
}

// drillOutcome is a drill's final state and error from the action's
// output or error: interrupted when the controller stopped, failed when the
// action failed or its validation found problems, else succeeded.
func drillOutcome(out json.RawMessage, err error, interrupted bool) (state, msg string) {
	switch {
	case interrupted:
		return store.DrillInterrupted, "interrupted: the controller stopped while the drill ran; the next drill drops its scratch database"
	case err != nil:
		return store.DrillFailed, err.Error()
	}
	var o struct {
		Valid    *bool    `json:"valid"`
		Problems []string `json:"problems"`
	}
	if json.Unmarshal(out, &o) == nil && o.Valid != nil && !*o.Valid {
		return store.DrillFailed, "validation: " + strings.Join(o.Problems, "; ")
	}
	return store.DrillSucceeded, ""
}

// probeDataLoss asks the backup host's log-shipping probe for its
// estimated data-loss window (seconds).
func (s *Server) probeDataLoss(ctx context.Context, host, database string) (float64, bool) {
	cl, err := s.fleet.Client(host)
	if err != nil {
		return 0, false
	}
	params, _ := structpb.NewStruct(map[string]any{"database": database})
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := cl.Probe(pctx, &agentv1.ProbeRequest{Names: []string{"mssql.log_shipping"}, Params: params})
	if err != nil {
		return 0, false
	}
	for _, f := range resp.GetFacts() {
		dbs, _ := f.GetValue().AsMap()["databases"].([]any)
		for _, e := range dbs {
			m, _ := e.(map[string]any)
			if strings.EqualFold(fmt.Sprint(m["database"]), database) {
				v, ok := m["estimated_data_loss_seconds"].(float64)
				return v, ok
			}
		}
	}
	return 0, false
}

// executeDrill runs the drill action with the drill's ID as idempotency
// key, asking GetExecution when the stream breaks, and returns its output.
func (s *Server) executeDrill(ctx context.Context, d *store.Drill) (json.RawMessage, error) {
	cl, err := s.fleet.Client(d.Host)
	if err != nil {
		return nil, fmt.Errorf("no_agent: %w", err)
	}
	params, err := structpb.NewStruct(map[string]any{"database": d.Database})
	if err != nil {
		return nil, err
	}
	req := &agentv1.ExecuteRequest{IdempotencyKey: "chatdr-" + d.ID, Action: drillAction, Params: params, Timeout: durationpb.New(drillTimeout)}
	var res *agentv1.ExecutionResult
	for try := 0; res == nil; try++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		res, err = executeOnce(ctx, cl, req)
		if err == nil {
			break
		}
		ge, gerr := cl.GetExecution(ctx, &agentv1.GetExecutionRequest{IdempotencyKey: req.GetIdempotencyKey()})
		switch {
		case gerr != nil && try >= 5:
			return nil, fmt.Errorf("unreachable: agent on %s: %v (then %v)", d.Host, err, gerr)
		case gerr != nil:
		case ge.GetState() == agentv1.ExecutionState_EXECUTION_STATE_NOT_FOUND:
			if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded || try >= 5 {
				return nil, fmt.Errorf("rpc_%s: agent on %s refused %s: %s", strings.ToLower(status.Code(err).String()), d.Host, drillAction, status.Convert(err).Message())
			}
		case ge.GetState() == agentv1.ExecutionState_EXECUTION_STATE_RUNNING:
			try = 0 // attach again
		default:
			res = ge.GetResult()
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	switch res.GetState() {
	case agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED:
		return json.Marshal(res.GetOutput().AsMap())
	case agentv1.ExecutionState_EXECUTION_STATE_FAILED:
		e := res.GetError()
		msg := e.GetCode() + ": " + e.GetMessage()
		if e.GetHint() != "" {
			msg += " (" + e.GetHint() + ")"
		}
		return nil, errors.New(msg)
	}
	return nil, fmt.Errorf("%s on %s ended %s", drillAction, d.Host, res.GetState())
}

func executeOnce(ctx context.Context, cl agentv1.AgentServiceClient, req *agentv1.ExecuteRequest) (*agentv1.ExecutionResult, error) {
	cctx, cancel := context.WithTimeout(ctx, drillTimeout+time.Minute)
	defer cancel()
	stream, err := cl.Execute(cctx, req)
	if err != nil {
		return nil, err
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if res := ev.GetResult(); res != nil {
			return res, nil
		}
	}
}

// ListDrills implements ControllerService.
func (s *Server) ListDrills(_ context.Context, req *controllerv1.ListDrillsRequest) (*controllerv1.ListDrillsResponse, error) {
	if req.GetLimit() < 0 {
		return nil, status.Error(codes.InvalidArgument, "limit must not be negative")
	}
	ds, err := s.store.ListDrills(int(req.GetLimit()))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "list drills: %v", err)
	}
	s.drills.mu.Lock()
	running := s.drills.running
	s.drills.mu.Unlock()
	resp := &controllerv1.ListDrillsResponse{}
	for _, d := range ds {
		resp.Drills = append(resp.Drills, drillToProto(d, d.ID == running))
	}
	return resp, nil
}

// GetDrill implements ControllerService.
func (s *Server) GetDrill(_ context.Context, req *controllerv1.GetDrillRequest) (*controllerv1.GetDrillResponse, error) {
	d, err := s.store.GetDrill(req.GetId())
	if errors.Is(err, store.ErrDrillNotFound) {
		return nil, status.Errorf(codes.NotFound, "no drill %q (see `chatdr drill list`)", req.GetId())
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read drill: %v", err)
	}
	s.drills.mu.Lock()
	running := s.drills.running
	s.drills.mu.Unlock()
	return &controllerv1.GetDrillResponse{Report: drillToProto(d, d.ID == running)}, nil
}

var drillStates = map[string]controllerv1.DrillState{
	store.DrillRunning:     controllerv1.DrillState_DRILL_STATE_RUNNING,
	store.DrillSucceeded:   controllerv1.DrillState_DRILL_STATE_SUCCEEDED,
	store.DrillFailed:      controllerv1.DrillState_DRILL_STATE_FAILED,
	store.DrillInterrupted: controllerv1.DrillState_DRILL_STATE_INTERRUPTED,
}

// drillOutput is the part of mssql.drill.restore_copy's output the report
// carries.
type drillOutput struct {
	Scratch          string   `json:"scratch_database"`
	FullBackup       string   `json:"full_backup"`
	LogsRestored     []string `json:"logs_restored"`
	LogsPending      float64  `json:"logs_pending"`
	PendingCopy      []string `json:"pending_copy_files"`
	Complete         bool     `json:"complete"`
	StopReason       string   `json:"stop_reason"`
	Rows             float64  `json:"rows"`
	LastMessage      string   `json:"last_message_time"`
	Problems         []string `json:"problems"`
	ReachedLSN       string   `json:"reached_lsn"`
	ReachedTime      string   `json:"reached_backup_time"`
	NewestTime       string   `json:"newest_backup_time"`
	DataLossSeconds  float64  `json:"data_loss_window_seconds"`
	Unrestorable     float64  `json:"unrestorable_seconds"`
	RestoreSeconds   float64  `json:"restore_seconds"`
	RTOCopy          float64  `json:"rto_copy_seconds"`
	RTORestore       float64  `json:"rto_restore_seconds"`
	RTORecovery      float64  `json:"rto_recovery_seconds"`
	RTOEstimate      float64  `json:"rto_estimate_seconds"`
	LeftoversCleaned []string `json:"leftovers_cleaned"`
	CleanedUp        bool     `json:"cleaned_up"`
	Phases           []struct {
		Name    string  `json:"name"`
		Seconds float64 `json:"seconds"`
	} `json:"phases"`
}

func seconds(v float64) *durationpb.Duration {
	return durationpb.New(time.Duration(v * float64(time.Second)))
}

func rfc3339(s string) *timestamppb.Timestamp {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil
	}
	return timestamppb.New(t)
}

// drillToProto converts a stored drill to its report; running says whether
// this controller runs it now (a record left running by an earlier
// controller is reported interrupted).
func drillToProto(d *store.Drill, running bool) *controllerv1.DrillReport {
	r := &controllerv1.DrillReport{Id: d.ID, Pool: d.Pool, State: drillStates[d.State], StartedBy: d.StartedBy.Name,
		StartedAt: timestamppb.New(d.StartedAt), Host: d.Host, Database: d.Database, Error: d.Error}
	if d.State == store.DrillRunning && !running {
		r.State = controllerv1.DrillState_DRILL_STATE_INTERRUPTED
	}
	if !d.FinishedAt.IsZero() {
		r.FinishedAt = timestamppb.New(d.FinishedAt)
	}
	if d.ProbeDataLossSeconds != nil {
		r.ProbeDataLoss = seconds(*d.ProbeDataLossSeconds)
	}
	var o drillOutput
	if len(d.Output) == 0 || json.Unmarshal(d.Output, &o) != nil {
		return r
	}
	r.ScratchDatabase, r.FullBackup = o.Scratch, o.FullBackup
	r.LogsRestored, r.LogsPending, r.PendingCopyFiles = int32(len(o.LogsRestored)), int32(o.LogsPending), int32(len(o.PendingCopy))
	r.Complete, r.StopReason, r.Rows, r.Problems = o.Complete, o.StopReason, int64(o.Rows), o.Problems
	r.LastMessageAt, r.ReachedLsn = rfc3339(o.LastMessage), o.ReachedLSN
	r.ReachedBackupTime, r.NewestBackupTime = rfc3339(o.ReachedTime), rfc3339(o.NewestTime)
	r.DataLossWindow, r.Unrestorable = seconds(o.DataLossSeconds), seconds(o.Unrestorable)
	r.RestoreTime, r.RtoEstimate = seconds(o.RestoreSeconds), seconds(o.RTOEstimate)
	r.RtoComponents = []*controllerv1.DrillPhase{
		{Name: "copy", Duration: seconds(o.RTOCopy)},
		{Name: "restore", Duration: seconds(o.RTORestore)},
		{Name: "recovery", Duration: seconds(o.RTORecovery)},
	}
	for _, p := range o.Phases {
		r.Phases = append(r.Phases, &controllerv1.DrillPhase{Name: p.Name, Duration: seconds(p.Seconds)})
	}
	r.LeftoversCleaned, r.CleanedUp = o.LeftoversCleaned, o.CleanedUp
	return r
}
