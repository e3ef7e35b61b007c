package controller

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/engine/runner"
	"github.com/chatdr/chatdr/controller/store"
)

// Step ID prefixes that bound the outage (plan builders, controller/plan:
// serviceSteps names its steps PREFIX-OP-KIND-HOST): the group that stops
// the chat services of the old site, and the group that starts the new
// site's.
var (
	outageStopPrefixes  = []string{"F0a-stop-", "B1-stop-"}
	outageStartPrefixes = []string{"F7-start-", "B6-start-"}
)

// Actions whose outputs give the data-loss window when no step of the plan
// names its DataLossFrom (plans built before the field existed).
var dataLossActions = []string{"mssql.db.tail_log_backup", "mssql.ls.copy_pending", "mssql.ls.restore_pending"}

// report is the end-of-run report of a run as far as it has gone; see
// controllerv1.RunReport for the meaning of each field.
type report struct {
	// Elapsed is from the run's start to its end, or to now.
	Elapsed time.Duration
	// WaitingApproval is the time steps waited for approvals (part of
	// Elapsed); see waitingApproval for how it is measured.
	WaitingApproval time.Duration
	// Outage is from the first step that stops writers to the end of the
	// last step that starts chat services; zero until both are reached.
	Outage time.Duration
	// DataLoss is the data-loss window (runner.DataLoss).
	DataLoss runner.DataLossWindow
	// DataLossNotes say why the window is unknown or not zero.
	DataLossNotes []string
	// Approvals are every approval, in time order.
	Approvals []reportApproval
	// StepsRetried counts the steps with more than one attempt.
	StepsRetried int
}

// reportApproval is an approval and its step.
type reportApproval struct {
	StepID string
	engine.Approval
}

// runReport computes the report of r at time now (the end for a run that
// has not ended). Pure.
func runReport(r *store.Run, now time.Time) report {
	var rep report
	end := r.Status.Ended
	if end.IsZero() {
		end = now
	}
	if !r.Status.Started.IsZero() && end.After(r.Status.Started) {
		rep.Elapsed = end.Sub(r.Status.Started)
	}
	rep.WaitingApproval = waitingApproval(r, end)
	rep.Outage = outage(r)
	for _, st := range r.Steps {
		if len(st.Status.Attempts) > 1 {
			rep.StepsRetried++
		}
		for _, a := range st.Status.Approvals {
			rep.Approvals = append(rep.Approvals, reportApproval{StepID: st.ID, Approval: a})
		}
	}
	slices.SortStableFunc(rep.Approvals, func(a, b reportApproval) int { return a.Time.Compare(b.Time) })
	rep.DataLoss, rep.DataLossNotes = dataLoss(r)
	return rep
}

// dataLoss computes the window from the DataLossFrom of the plan's first
// step gated by a data-loss approval or, when no step has one, from the
// tail-log backup, copy and restore steps. A plan with neither (failback,
// which copies the whole database after the writers stopped) has no window:
// not known, with a note saying why.
func dataLoss(r *store.Run) (runner.DataLossWindow, []string) {
	p, err := r.DecodePlan()
	if err != nil {
		return runner.DataLossWindow{}, []string{err.Error()}
	}
	var from []string
	for _, g := range p.Groups {
		for _, s := range g.Steps {
			if from == nil && len(s.DataLossFrom) > 0 {
				from = s.DataLossFrom
			}
		}
	}
	if from == nil {
		for _, g := range p.Groups {
			for _, s := range g.Steps {
				if slices.Contains(dataLossActions, s.Action) {
					from = append(from, s.ID)
				}
			}
		}
	}
	if from == nil {
		return runner.DataLossWindow{}, []string{fmt.Sprintf("the %s plan has no step that reports a data-loss window", p.Kind)}
	}
	w := runner.DataLoss(r, from)
	notes := slices.Clone(w.Why)
	if w.Known && w.Window != 0 {
		notes = append(notes, fmt.Sprintf("the restore reached %s but the newest backup is of %s: up to %s of changes are not in the restored database",
			w.RestoredTo.UTC().Format(time.RFC3339), w.NewestBackup.UTC().Format(time.RFC3339), w.Window))
	}
	return w, notes
}

// waitingApproval measures the time steps spent in waiting_approval, up to
// end. The store keeps no timestamp for a step's entry into (or exit from)
// waiting_approval, so it is derived from the run record: a step waits from
// the moment its group could start — the latest end of a step of an earlier
// group, or the run's start for the first group (the guards checked before
// the wait take milliseconds) — until the approval that completed it (the
// last one recorded), its cancellation, or end while it still waits. A step
// counts as having waited when it is waiting now or has approvals; a step
// cancelled while waiting before anyone approved leaves no trace in the run
// and is not counted (the audit log's step.waiting_approval entries have
// it). Steps waiting at the same time count once (the union of the
// intervals), so the result is part of the run's elapsed time.
func waitingApproval(r *store.Run, end time.Time) time.Duration {
	type span struct{ from, to time.Time }
	var spans []span
	for _, st := range r.Steps {
		ss := st.Status
		if ss.State != engine.StepWaitingApproval && len(ss.Approvals) == 0 {
			continue
		}
		from := r.Status.Started
		for _, o := range r.Steps {
			if o.GroupIndex < st.GroupIndex && o.Status.Ended.After(from) {
				from = o.Status.Ended
			}
		}
		var to time.Time
		switch {
		case ss.State == engine.StepWaitingApproval:
			to = end
		case ss.Approved:
			for _, a := range ss.Approvals {
				if a.Time.After(to) {
					to = a.Time
				}
			}
		case !ss.Ended.IsZero():
			to = ss.Ended // cancelled while waiting
		default:
			to = end
		}
		if from.IsZero() || !to.After(from) {
			continue
		}
		spans = append(spans, span{from, to})
	}
	slices.SortFunc(spans, func(a, b span) int { return a.from.Compare(b.from) })
	var total time.Duration
	var cur span
	for _, s := range spans {
		switch {
		case cur.to.IsZero():
			cur = s
		case !s.from.After(cur.to):
			if s.to.After(cur.to) {
				cur.to = s.to
			}
		default:
			total += cur.to.Sub(cur.from)
			cur = s
		}
	}
	if !cur.to.IsZero() {
		total += cur.to.Sub(cur.from)
	}
	return total
}

// outage is the time chat was down: from the start of the first step that
// stops the old site's chat services (or its end, for a step skipped
// because its host was unreachable) to the end of the last step that starts
// the new site's, once every one of those succeeded or was skipped; zero
// before that, or when the plan has no such steps.
func outage(r *store.Run) time.Duration {
	var from, to time.Time
	starts, started := 0, 0
	for _, st := range r.Steps {
		ss := st.Status
		if hasPrefix(st.ID, outageStopPrefixes) {
			t := ss.Started
			if t.IsZero() {
				t = ss.Ended
			}
			if !t.IsZero() && (from.IsZero() || t.Before(from)) {
				from = t
			}
		}
		if hasPrefix(st.ID, outageStartPrefixes) {
			starts++
			if ss.State.Done() && !ss.Ended.IsZero() {
				started++
				to = maxTime(to, ss.Ended)
			}
		}
	}
	if starts == 0 || started < starts || from.IsZero() || !to.After(from) {
		return 0
	}
	return to.Sub(from)
}

func hasPrefix(id string, prefixes []string) bool {
	return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(id, p) })
}

func maxTime(a, b time.Time) time.Time {
	if !b.After(a) {
		return a
	}
	return b
}
