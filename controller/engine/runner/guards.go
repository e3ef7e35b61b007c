package runner

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/store"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

// probeDatabases is the probe a guard reads.
const probeDatabases = "mssql.databases"

// dbView is what a guard saw of a database.
type dbView struct {
	// checked: the agent answered and reported the database.
	checked  bool
	writable bool
	// why says what was seen, or why nothing could be.
	why string
}

// look probes database db on host.
func (r *Runner) look(ctx context.Context, host, db string) dbView {
	cl, err := r.agents.Client(host)
	if err != nil {
		return dbView{why: err.Error()}
	}
	params, _ := structpb.NewStruct(map[string]any{"database": db})
	cctx, cancel := context.WithTimeout(ctx, r.opts.RPCTimeout)
	defer cancel()
	resp, err := cl.Probe(cctx, &agentv1.ProbeRequest{Names: []string{probeDatabases}, Params: params})
	if err != nil {
		return dbView{why: fmt.Sprintf("probe %s failed: %v", probeDatabases, err)}
	}
	for _, f := range resp.GetFacts() {
		if f.GetName() != probeDatabases {
			continue
		}
		if e := f.GetError(); e != nil {
			return dbView{why: fmt.Sprintf("probe %s failed: %s: %s", probeDatabases, e.GetCode(), e.GetMessage())}
		}
		list, _ := f.GetValue().AsMap()["databases"].([]any)
		for _, x := range list {
			m, _ := x.(map[string]any)
			if name, _ := m["database"].(string); !strings.EqualFold(name, db) {
				continue
			}
			if m["exists"] == false {
				return dbView{checked: true, why: "the database does not exist"}
			}
			state, _ := m["state"].(string)
			standby, _ := m["standby"].(bool)
			ro, _ := m["read_only"].(bool)
			w, ok := m["writable"].(bool)
			if !ok {
				w = plan.DatabaseFact{State: state, Standby: standby, ReadOnly: ro}.Writable()
			}
			v := dbView{checked: true, writable: w, why: "state " + state}
			if standby {
				v.why += ", standby"
			}
			if ro {
				v.why += ", read-only"
			}
			if w {
				v.why += ", writable"
			}
			return v
		}
	}
	return dbView{why: fmt.Sprintf("probe %s did not report the database", probeDatabases)}
}

// guardError evaluates the step's guards with fresh probes and returns the
// error of the first failed guard that is not overridden, nil when all
// hold. A guard that holds without being checked (host unreachable) and an
// overridden failure are audited.
func (r *Runner) guardError(ctx context.Context, run *store.Run, s plan.Step) *engine.Error {
	for _, g := range s.Guards {
		v := r.look(ctx, g.Host, g.Database)
		if ctx.Err() != nil {
			return &engine.Error{Code: "cancelled", Message: ctx.Err().Error()}
		}
		var holds bool
		switch g.Kind {
		case plan.GuardOldPrimaryNotWritable:
			holds = !v.checked || !v.writable
		case plan.GuardDatabaseWritable:
			holds = v.checked && v.writable
		}
		details := map[string]any{"guard": g.Kind, "host": g.Host, "database": g.Database, "seen": v.why, "checked": v.checked}
		if holds {
			if !v.checked {
				// Best effort: the guard holds either way.
				_, _ = r.st.Audit(controller, "guard.unchecked", run.ID, s.ID, details)
			}
			continue
		}
		var e *engine.Error
		switch g.Kind {
		case plan.GuardOldPrimaryNotWritable:
			e = &engine.Error{Code: "guard_failed", Host: g.Host,
				Message: fmt.Sprintf("step %s refused (guard %s): database %s on %s is writable (%s): making the backup writable now would leave two writable copies",
					s.ID, g.Kind, g.Database, g.Host, v.why),
				Hint: fmt.Sprintf("the old primary answers again (domain §6.2): if it is healthy, cancel this run (chatdr run cancel) and fail over with --mode planned, which loses nothing; otherwise fence it (take %s on %s offline or make it unreachable to clients) and resume the run; force only with a split-brain override", g.Database, g.Host)}
		case plan.GuardDatabaseWritable:
			e = &engine.Error{Code: "guard_failed", Host: g.Host,
				Message: fmt.Sprintf("step %s refused (guard %s): database %s on %s is not seen writable (%s): the copy about to be overwritten could be the only writable one",
					s.ID, g.Kind, g.Database, g.Host, v.why),
				Hint: fmt.Sprintf("make sure %s on %s is online and writable (and its agent answers), then resume the run", g.Database, g.Host)}
		default:
			e = &engine.Error{Code: "guard_failed", Host: g.Host, Message: fmt.Sprintf("step %s: unknown guard kind %q", s.ID, g.Kind)}
		}
		if g.Override != "" {
			details["override"] = g.Override
			details["error"] = e
			if _, err := r.st.Audit(controller, store.ActionForce, run.ID, s.ID, details); err != nil {
				// An override that cannot be recorded is not used.
				return &engine.Error{Code: "audit_failed", Host: g.Host,
					Message: fmt.Sprintf("step %s: guard %s failed and its override could not be audited: %v", s.ID, g.Kind, err),
					Hint:    "fix the controller's state directory, then resume the run"}
			}
			continue
		}
		return e
	}
	return nil
}

// checkGuards evaluates the guards; when one fails it pauses the run with
// its error (the step is not sent) and returns false.
func (r *Runner) checkGuards(ctx context.Context, run *store.Run, s plan.Step) bool {
	e := r.guardError(ctx, run, s)
	if e == nil {
		return true
	}
	if ctx.Err() != nil {
		return false
	}
	// A lost pause is redone: the step stays pending and the guard is
	// checked again on the next pass.
	_, _ = r.fire(run.ID, func(run *store.Run) ([]store.Change, error) {
		if !engine.CanRun(run.Status.State, engine.RunPause) {
			return nil, nil
		}
		return []store.Change{{RunEvent: engine.RunPause, RunInput: engine.RunInput{Err: e},
			Details: map[string]any{"step": s.ID}}}, nil
	})
	return false
}

// needsApproval applies docs/plans.md rule 6: "always" waits; "data_loss"
// waits unless the window computed from the DataLossFrom steps' outputs is
// known to be zero. details describe the decision (audited).
func (r *Runner) needsApproval(run *store.Run, s plan.Step) (bool, map[string]any) {
	if s.Approval.When != plan.ApproveOnDataLoss {
		return true, map[string]any{"when": s.Approval.When, "approvers": s.Approval.Approvers}
	}
	w := dataLossWindow(run, s.DataLossFrom)
	d := map[string]any{"when": s.Approval.When, "approvers": s.Approval.Approvers, "window_known": w.known}
	if !w.reached.IsZero() {
		d["reached"] = w.reached.UTC().Format(time.RFC3339Nano)
	}
	if !w.newest.IsZero() {
		d["newest"] = w.newest.UTC().Format(time.RFC3339Nano)
	}
	if w.known {
		d["window"] = w.window.String()
	}
	if len(w.why) > 0 {
		d["why"] = w.why
	}
	return !w.known || w.window != 0, d
}

// window is a data-loss window.
type window struct {
	reached, newest time.Time
	window          time.Duration
	known           bool
	why             []string
}

// dataLossWindow computes the window from the outputs of the given steps:
// reached = reached_backup_time (the earliest, when several report it);
// newest = the latest newest_backup_time or backup_finish_date. It is known
// only when both are, no source reports complete=false or a non-empty
// unapplied list, no copy reports source_readable=false, and every source
// step has an output.
func dataLossWindow(run *store.Run, from []string) window {
	var w window
	bad := false
	for _, id := range from {
		out, ok := stepOutput(run, id)
		if !ok {
			w.why = append(w.why, fmt.Sprintf("step %s has no output", id))
			bad = true
			continue
		}
		if t, ok := timeField(out, "reached_backup_time"); ok && (w.reached.IsZero() || t.Before(w.reached)) {
			w.reached = t
		}
		for _, f := range []string{"newest_backup_time", "backup_finish_date"} {
			if t, ok := timeField(out, f); ok && t.After(w.newest) {
				w.newest = t
			}
		}
		if out["complete"] == false {
			w.why = append(w.why, fmt.Sprintf("step %s did not complete the restore", id))
			bad = true
		}
		if u, ok := out["unapplied"].([]any); ok && len(u) > 0 {
			w.why = append(w.why, fmt.Sprintf("step %s left %d log backups unapplied: %s", id, len(u), outputWhy(out)))
			bad = true
		}
		if out["source_readable"] == false {
			note := fmt.Sprintf("step %s could not read the backup share", id)
			if e, _ := out["error"].(string); e != "" {
				note += ": " + e
			}
			w.why = append(w.why, note)
			bad = true
		}
	}
	if w.reached.IsZero() || w.newest.IsZero() {
		w.why = append(w.why, "the restore point or the newest backup is unknown")
		bad = true
	}
	if !bad {
		w.known = true
		// Compared as instants; a restore point after the newest backup
		// is not "equal" either, so it needs the approval too.
		w.window = w.newest.Sub(w.reached)
	}
	return w
}

// DataLossWindow is a run's data-loss window as DataLoss computes it.
type DataLossWindow struct {
	// RestoredTo is the point the restore reached (reached_backup_time);
	// zero when no source step reports it.
	RestoredTo time.Time
	// NewestBackup is the newest backup seen (newest_backup_time or
	// backup_finish_date); zero when none is reported.
	NewestBackup time.Time
	// Window is NewestBackup minus RestoredTo; meaningful only when Known.
	Window time.Duration
	// Known: every source step reported, the restore completed and left
	// nothing unapplied, and the share was readable.
	Known bool
	// Why says why the window is unknown, one line each.
	Why []string
}

// DataLoss computes the data-loss window of run from the outputs of the
// steps stepIDs (a plan step's DataLossFrom), exactly as the runner does
// when it decides whether a data_loss approval is needed. Pure.
func DataLoss(run *store.Run, stepIDs []string) DataLossWindow {
	w := dataLossWindow(run, stepIDs)
	return DataLossWindow{RestoredTo: w.reached, NewestBackup: w.newest, Window: w.window, Known: w.known, Why: w.why}
}

func timeField(m map[string]any, f string) (time.Time, bool) {
	s, _ := m[f].(string)
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}
