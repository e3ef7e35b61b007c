package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

// Defaults of a watcher.
const (
	// watchPoll is how often a watcher asks the controller for the run.
	watchPoll = 300 * time.Millisecond
	// watchPatience is how long a watcher keeps asking a controller that
	// does not answer (restarting, or its host rebooting) before it gives
	// up with exit 3.
	watchPatience = 10 * time.Minute
	// watchCallTimeout bounds one GetRun call.
	watchCallTimeout = 10 * time.Second
	// progressStep is how far (in percent) a progress bar moves before a
	// plain-output watcher prints it again.
	progressStep = 10
)

// watchMode is how a watcher renders what it sees.
type watchMode int

const (
	// modePlain prints one line per change (stdout is not a terminal).
	modePlain watchMode = iota
	// modeTTY redraws a table of the steps in place.
	modeTTY
	// modeJSON prints one JSON event per line (-o json).
	modeJSON
)

// watcher follows one run by polling GetRun, renders each change, and
// decides the exit code when the run stops moving (docs/cli.md "run
// watch"). It survives a controller that is unreachable for less than
// patience: the run is durable and carries on when the controller comes
// back. Not safe for concurrent use.
type watcher struct {
	g        *globals
	client   controllerv1.ControllerServiceClient
	id       string
	mode     watchMode
	poll     time.Duration
	patience time.Duration
	now      func() time.Time

	// steps is what was last reported per step; runState the run's state
	// last reported ("" before the first).
	steps    map[string]seenStep
	runState string
	// down is when the controller stopped answering (zero while it
	// answers); downMsg what it said.
	down    time.Time
	downMsg string
	// drawn is how many lines the last TTY frame has.
	drawn int
}

// seenStep is what a watcher last reported of a step.
type seenStep struct {
	state string
	// bucket is the progress reported, in progressStep percent (-1: none);
	// stage the progress stage reported; done the units (JSON reports
	// every change).
	bucket int
	stage  string
	done   int64
}

// newWatcher returns a watcher of run id rendering to g's writers: JSON
// events with -o json, a redrawn table when stdout is a terminal, plain
// lines otherwise.
func (g *globals) newWatcher(client controllerv1.ControllerServiceClient, id string) *watcher {
	mode := modePlain
	if g.output == "json" {
		mode = modeJSON
	} else if f, ok := g.stdout.(*os.File); ok && isTerminal(f) {
		mode = modeTTY
	}
	return &watcher{g: g, client: client, id: id, mode: mode, poll: watchPoll, patience: watchPatience,
		now: time.Now, steps: map[string]seenStep{}}
}

// waitRun follows run id until it ends or waits for approval (--wait).
func (g *globals) waitRun(ctx context.Context, client controllerv1.ControllerServiceClient, id string) error {
	return g.newWatcher(client, id).watch(ctx)
}

// newRunWatchCommand is `chatdr run watch RUN`.
func newRunWatchCommand(g *globals) *cobra.Command {
	patience := watchPatience
	cmd := &cobra.Command{
		Use:   "watch RUN",
		Short: "Follow a run's progress until it ends or waits for approval (viewer and above)",
		Long: `Polls the run and shows, per step, its state, host, elapsed time, attempts and,
for copy and restore steps, a progress bar. On a terminal the table is redrawn
in place; otherwise one line is printed per change; -o json prints one JSON
event per line (docs/cli.md). When the run ends, prints its report.

A controller that stops answering (restarted, host rebooting) is retried
until --unreachable-timeout; the run itself goes on.

Exit codes: 0 succeeded, 1 paused, failed or cancelled, 3 the controller
stayed unreachable, 4 the run waits for an approval.`,
		Example: `  chatdr run watch run-12
  chatdr run watch run-12 -o json | jq -c 'select(.type=="step")'`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, closeFn, err := g.dialController()
			if err != nil {
				return err
			}
			defer closeFn()
			w := g.newWatcher(client, args[0])
			w.patience = patience
			return w.watch(cmd.Context())
		},
	}
	cmd.Flags().DurationVar(&patience, "unreachable-timeout", watchPatience, "how long to keep retrying a controller that does not answer")
	return cmd
}

// watch polls the run until it stops moving; see watcher.
func (w *watcher) watch(ctx context.Context) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, watchCallTimeout)
		resp, err := w.client.GetRun(cctx, &controllerv1.GetRunRequest{RunId: w.id})
		cancel()
		switch {
		case err == nil:
			if !w.down.IsZero() {
				w.notice(fmt.Sprintf("controller %s answers again (unreachable for %s)", w.g.controller, w.now().Sub(w.down).Round(time.Second)))
				w.down, w.downMsg = time.Time{}, ""
			}
			if stop, err := w.update(resp.GetRun()); stop {
				return err
			}
		case ctx.Err() != nil:
			return failed(fmt.Errorf("stopped watching run %s (%v); the run goes on: 'chatdr run watch %s'", w.id, ctx.Err(), w.id))
		case transient(err):
			now := w.now()
			if w.down.IsZero() {
				w.down, w.downMsg = now, status.Convert(err).Message()
				w.notice(fmt.Sprintf("controller %s unreachable (%s); retrying for up to %s, ctrl-C to stop (the run goes on)",
					w.g.controller, w.downMsg, w.patience))
			}
			if now.Sub(w.down) >= w.patience {
				return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("controller %s unreachable for %s (%s); the run goes on without you: 'chatdr run watch %s' later",
					w.g.controller, now.Sub(w.down).Round(time.Second), w.downMsg, w.id)}
			}
		default:
			return w.g.rpcErr(err)
		}
		t := time.NewTimer(w.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return failed(fmt.Errorf("stopped watching run %s (%v); the run goes on: 'chatdr run watch %s'", w.id, ctx.Err(), w.id))
		case <-t.C:
		}
	}
}

// transient reports whether a GetRun error may go away by itself: the
// controller is not listening (restart) or did not answer in time.
func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// update renders what changed in run; stop says the run stopped moving,
// and err is the outcome then (nil: succeeded).
func (w *watcher) update(run *controllerv1.Run) (stop bool, err error) {
	now := w.now()
	state := run.GetState()
	switch state {
	case "succeeded", "acknowledged", "cancelled", "waiting_approval":
		stop = true
	case "paused", "failed":
		// The other steps of the group finish before the run stops
		// moving: report them too, and the run's state after them.
		stop = !inFlight(run)
	}
	held := !stop && (state == "paused" || state == "failed")
	if !stop && !held {
		w.runStateChanged(now, run)
	}
	for _, s := range run.GetSteps() {
		w.updateStep(now, run, s)
	}
	if w.mode == modeTTY {
		w.draw(now, run)
	}
	if !stop {
		return false, nil
	}
	w.runStateChanged(now, run)
	return true, w.outcome(now, run)
}

// runStateChanged renders the run's state if it changed.
func (w *watcher) runStateChanged(now time.Time, run *controllerv1.Run) {
	if run.GetState() == w.runState {
		return
	}
	w.runState = run.GetState()
	if w.mode != modeTTY {
		w.emitRun(now, run)
	}
}

// updateStep renders a step's state change and progress.
func (w *watcher) updateStep(now time.Time, run *controllerv1.Run, s *controllerv1.RunStep) {
	prev, known := w.steps[s.GetId()]
	if !known {
		prev = seenStep{bucket: -1}
	}
	cur := prev
	cur.state = s.GetState()
	if cur.state != prev.state && (known || cur.state != "pending") && w.mode != modeTTY {
		// Every step starts pending: print changes only.
		w.emitStep(now, run, s)
	}
	if p := s.GetProgress(); p != nil && (p.GetDone() != prev.done || p.GetStage() != prev.stage || prev.bucket < 0) {
		bucket := 0
		if p.GetTotal() > 0 {
			bucket = int(percent(p) / progressStep)
		}
		show := w.mode == modeJSON || bucket != prev.bucket || p.GetStage() != prev.stage
		cur.bucket, cur.stage, cur.done = bucket, p.GetStage(), p.GetDone()
		if show && w.mode != modeTTY {
			w.emitProgress(now, run, s)
		}
	}
	w.steps[s.GetId()] = cur
}

// outcome renders the end of the watch and returns its error.
func (w *watcher) outcome(now time.Time, run *controllerv1.Run) error {
	id, state := run.GetId(), run.GetState()
	if state == "waiting_approval" {
		return w.waitingApproval(now, run)
	}
	w.emitReport(now, run)
	switch state {
	case "succeeded", "acknowledged":
		return nil
	}
	msg := fmt.Sprintf("run %s %s", id, state)
	if e := run.GetError(); e != nil {
		msg += ": " + errText(e)
	}
	if state == "paused" {
		msg += fmt.Sprintf("; fix the cause, then 'chatdr run resume %s' (or 'chatdr run cancel %s')", id, id)
	}
	return failed(errors.New(msg))
}

// waitingApproval renders the steps that wait for an approval, with the
// data-loss window and the command that approves, and returns exit 4.
func (w *watcher) waitingApproval(now time.Time, run *controllerv1.Run) error {
	id, rep := run.GetId(), run.GetReport()
	var waiting []string
	for _, s := range run.GetSteps() {
		if s.GetState() != "waiting_approval" {
			continue
		}
		waiting = append(waiting, s.GetId())
		cmd := fmt.Sprintf("chatdr run approve %s --step %s --reason '...'", id, s.GetId())
		if w.mode == modeJSON {
			ev := approvalEvent{Type: "approval", Time: stamp(now), Run: id, Step: s.GetId(), Host: s.GetHost(), Action: s.GetAction(),
				RequiredApprovers: s.GetRequiredApprovers(), Approvals: len(s.GetApprovals()),
				DataLossKnown: rep.GetDataLossKnown(), RestoredTo: tsText(rep.GetRestoredTo()), NewestBackup: tsText(rep.GetNewestBackup()),
				DataLossNotes: rep.GetDataLossNotes(), Command: cmd}
			if rep.GetDataLossKnown() {
				ms := rep.GetDataLoss().AsDuration().Milliseconds()
				ev.DataLossMS = &ms
			}
			w.emitJSON(ev)
			continue
		}
		out := w.g.stdout
		fmt.Fprintf(out, "\nRun %s waits for approval of step %s (%s on %s): %d of %d approvals\n", id, s.GetId(), s.GetAction(), s.GetHost(),
			len(s.GetApprovals()), s.GetRequiredApprovers())
		fmt.Fprintf(out, "  data-loss window (RPO): %s\n", dataLossText(rep))
		for _, n := range rep.GetDataLossNotes() {
			fmt.Fprintf(out, "    - %s\n", n)
		}
		for _, a := range s.GetApprovals() {
			fmt.Fprintf(out, "  approved by %s (%s) at %s: %s\n", a.GetApprover(), a.GetRole(), tsText(a.GetTime()), a.GetReason())
		}
		fmt.Fprintf(out, "  approve (role approver or admin): %s\n", cmd)
	}
	what := "a step"
	if len(waiting) > 0 {
		what = "step " + strings.Join(waiting, ", ")
	}
	return &ExitError{Code: ExitWaitingApproval,
		Err: fmt.Errorf("run %s waits for approval of %s: 'chatdr run approve %s --step STEP --reason ...' (role approver or admin), then 'chatdr run watch %s'", id, what, id, id)}
}

// notice tells the user something about the watch itself (the controller
// is unreachable, or answers again).
func (w *watcher) notice(msg string) {
	now := w.now()
	switch w.mode {
	case modeJSON:
		w.emitJSON(noticeEvent{Type: "notice", Time: stamp(now), Run: w.id, Message: msg})
	case modeTTY:
		// The frame shows it: a line on the same terminal would break
		// the redraw.
	default:
		fmt.Fprintf(w.g.stderr, "%s  %s\n", clock(now), msg)
	}
}

// inFlight reports whether a step of run is still running on its agent.
func inFlight(run *controllerv1.Run) bool {
	for _, s := range run.GetSteps() {
		if s.GetState() == "running" {
			return true
		}
	}
	return false
}

// ------------------------------------------------------------ rendering

// JSON events (-o json), one per line; docs/cli.md lists their fields.
type (
	jsonError struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Host      string `json:"host,omitempty"`
		Hint      string `json:"hint,omitempty"`
		Retryable bool   `json:"retryable,omitempty"`
	}
	runEvent struct {
		Type  string     `json:"type"`
		Time  string     `json:"time"`
		Run   string     `json:"run"`
		State string     `json:"state"`
		Error *jsonError `json:"error,omitempty"`
	}
	stepEvent struct {
		Type        string     `json:"type"`
		Time        string     `json:"time"`
		Run         string     `json:"run"`
		Step        string     `json:"step"`
		Group       int32      `json:"group"`
		Host        string     `json:"host"`
		Action      string     `json:"action"`
		State       string     `json:"state"`
		Attempts    int32      `json:"attempts"`
		MaxAttempts int32      `json:"max_attempts"`
		ElapsedMS   int64      `json:"elapsed_ms"`
		Error       *jsonError `json:"error,omitempty"`
		SkipReason  string     `json:"skip_reason,omitempty"`
	}
	progressEvent struct {
		Type    string   `json:"type"`
		Time    string   `json:"time"`
		Run     string   `json:"run"`
		Step    string   `json:"step"`
		Host    string   `json:"host"`
		Stage   string   `json:"stage"`
		Done    int64    `json:"done"`
		Total   int64    `json:"total"`
		Unit    string   `json:"unit"`
		Percent *float64 `json:"percent,omitempty"`
	}
	approvalEvent struct {
		Type              string   `json:"type"`
		Time              string   `json:"time"`
		Run               string   `json:"run"`
		Step              string   `json:"step"`
		Host              string   `json:"host"`
		Action            string   `json:"action"`
		RequiredApprovers int32    `json:"required_approvers"`
		Approvals         int      `json:"approvals"`
		DataLossKnown     bool     `json:"data_loss_known"`
		DataLossMS        *int64   `json:"data_loss_ms,omitempty"`
		RestoredTo        string   `json:"restored_to,omitempty"`
		NewestBackup      string   `json:"newest_backup,omitempty"`
		DataLossNotes     []string `json:"data_loss_notes,omitempty"`
		Command           string   `json:"command"`
	}
	reportEvent struct {
		Type   string          `json:"type"`
		Time   string          `json:"time"`
		Run    string          `json:"run"`
		State  string          `json:"state"`
		Error  *jsonError      `json:"error,omitempty"`
		Report json.RawMessage `json:"report"`
	}
	noticeEvent struct {
		Type    string `json:"type"`
		Time    string `json:"time"`
		Run     string `json:"run"`
		Message string `json:"message"`
	}
)

func toJSONError(e *controllerv1.RunError) *jsonError {
	if e == nil {
		return nil
	}
	return &jsonError{Code: e.GetCode(), Message: e.GetMessage(), Host: e.GetHost(), Hint: e.GetHint(), Retryable: e.GetRetryable()}
}

func (w *watcher) emitJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintf(w.g.stderr, "chatdr: encode event: %v\n", err)
		return
	}
	fmt.Fprintln(w.g.stdout, string(b))
}

func (w *watcher) emitRun(now time.Time, run *controllerv1.Run) {
	if w.mode == modeJSON {
		w.emitJSON(runEvent{Type: "run", Time: stamp(now), Run: run.GetId(), State: run.GetState(), Error: toJSONError(run.GetError())})
		return
	}
	fmt.Fprintf(w.g.stdout, "%s  run %s: %s\n", clock(now), run.GetId(), run.GetState())
}

func (w *watcher) emitStep(now time.Time, run *controllerv1.Run, s *controllerv1.RunStep) {
	if w.mode == modeJSON {
		ev := stepEvent{Type: "step", Time: stamp(now), Run: run.GetId(), Step: s.GetId(), Group: s.GetGroupIndex(), Host: s.GetHost(),
			Action: s.GetAction(), State: s.GetState(), Attempts: s.GetAttempts(), MaxAttempts: s.GetMaxAttempts(),
			ElapsedMS: stepElapsed(s, now).Milliseconds(), SkipReason: s.GetSkipReason()}
		if s.GetState() != "succeeded" {
			ev.Error = toJSONError(s.GetError())
		}
		w.emitJSON(ev)
		return
	}
	line := fmt.Sprintf("%s  %-16s %-34s %-28s", clock(now), s.GetState(), s.GetId(), s.GetHost())
	if s.GetStarted() != nil {
		line += " " + stepElapsed(s, now).Round(time.Millisecond).String()
	}
	if e := s.GetError(); e != nil && s.GetState() != "succeeded" {
		line += "  " + errText(e)
	} else if s.GetSkipReason() != "" {
		line += "  " + s.GetSkipReason()
	}
	fmt.Fprintln(w.g.stdout, strings.TrimRight(line, " "))
}

func (w *watcher) emitProgress(now time.Time, run *controllerv1.Run, s *controllerv1.RunStep) {
	p := s.GetProgress()
	if w.mode == modeJSON {
		ev := progressEvent{Type: "progress", Time: stamp(now), Run: run.GetId(), Step: s.GetId(), Host: s.GetHost(),
			Stage: p.GetStage(), Done: p.GetDone(), Total: p.GetTotal(), Unit: p.GetUnit()}
		if p.GetTotal() > 0 {
			pc := math.Round(percent(p)*10) / 10
			ev.Percent = &pc
		}
		w.emitJSON(ev)
		return
	}
	line := fmt.Sprintf("%s  %-16s %-34s %-28s %s", clock(now), "progress", s.GetId(), s.GetHost(), progressText(p))
	if p.GetStage() != "" {
		line += "  " + p.GetStage()
	}
	fmt.Fprintln(w.g.stdout, line)
}

func (w *watcher) emitReport(now time.Time, run *controllerv1.Run) {
	if w.mode == modeJSON {
		rep := run.GetReport()
		if rep == nil {
			rep = &controllerv1.RunReport{}
		}
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(rep)
		if err != nil {
			b = []byte("{}")
		}
		w.emitJSON(reportEvent{Type: "report", Time: stamp(now), Run: run.GetId(), State: run.GetState(),
			Error: toJSONError(run.GetError()), Report: b})
		return
	}
	fmt.Fprintln(w.g.stdout)
	printReport(w.g.stdout, run, now)
}

// draw redraws the TTY frame: the run, then one line per step.
func (w *watcher) draw(now time.Time, run *controllerv1.Run) {
	var buf bytes.Buffer
	el := ""
	if run.GetReport().GetElapsed() != nil {
		el = ", " + run.GetReport().GetElapsed().AsDuration().Round(time.Second).String()
	}
	fmt.Fprintf(&buf, "Run %s: %s of %s, %s%s  (%s)\n", run.GetId(), kindName(run.GetKind()), run.GetPool(), run.GetState(), el, clock(now))
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tSTATE\tHOST\tELAPSED\tTRIES\tPROGRESS")
	// Pending steps beyond the next group are summed up, so that the frame
	// of a long plan still fits a terminal (it is redrawn by moving the
	// cursor up, which stops at the top of the screen).
	next := int32(-1)
	for _, s := range run.GetSteps() {
		if s.GetState() == "pending" && (next < 0 || s.GetGroupIndex() < next) {
			next = s.GetGroupIndex()
		}
	}
	hidden := 0
	for _, s := range run.GetSteps() {
		if s.GetState() == "pending" && s.GetGroupIndex() != next {
			hidden++
			continue
		}
		e := ""
		if s.GetStarted() != nil {
			e = stepElapsed(s, now).Round(100 * time.Millisecond).String()
		}
		prog := ""
		if p := s.GetProgress(); p != nil && (p.GetTotal() > 0 || s.GetState() == "running") {
			prog = progressText(p)
		}
		if er := s.GetError(); er != nil && s.GetState() != "succeeded" && s.GetState() != "running" {
			prog = strings.TrimSpace(prog + " " + er.GetCode())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\n", s.GetId(), s.GetState(), s.GetHost(), e, s.GetAttempts(), s.GetMaxAttempts(), prog)
	}
	tw.Flush()
	if hidden > 0 {
		fmt.Fprintf(&buf, "... and %d more pending steps\n", hidden)
	}
	if !w.down.IsZero() {
		fmt.Fprintf(&buf, "controller unreachable since %s (%s); retrying\n", clock(w.down), w.downMsg)
	}
	var out bytes.Buffer
	if w.drawn > 0 {
		// Up to the frame's first line, then clear to the end of screen.
		fmt.Fprintf(&out, "\x1b[%dA\r\x1b[J", w.drawn)
	}
	out.Write(buf.Bytes())
	w.drawn = bytes.Count(buf.Bytes(), []byte("\n"))
	_, _ = w.g.stdout.Write(out.Bytes())
}

// printReport prints the run's report: RTO, outage, data-loss window,
// approvals, retries and the timeline of its steps. now is the end of
// steps still running.
func printReport(out io.Writer, run *controllerv1.Run, now time.Time) {
	rep := run.GetReport()
	if rep == nil {
		return
	}
	fmt.Fprintf(out, "Report of run %s (%s)\n", run.GetId(), run.GetState())
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	rto := rep.GetElapsed().AsDuration().Round(time.Millisecond).String()
	if wa := rep.GetWaitingApproval().AsDuration(); wa > 0 {
		rto += fmt.Sprintf(", of which %s waiting for approvals", wa.Round(time.Millisecond))
	}
	if run.GetEnded() == nil {
		rto += " (so far)"
	}
	fmt.Fprintf(tw, "  RTO (elapsed):\t%s\n", rto)
	outage := "not reached (the new site's chat services have not all started)"
	if o := rep.GetOutage().AsDuration(); o > 0 {
		outage = o.Round(time.Millisecond).String() + " (old site's chat services stopped → new site's started)"
	}
	fmt.Fprintf(tw, "  Outage:\t%s\n", outage)
	fmt.Fprintf(tw, "  Data loss (RPO):\t%s\n", dataLossText(rep))
	for _, n := range rep.GetDataLossNotes() {
		fmt.Fprintf(tw, "  \t- %s\n", n)
	}
	fmt.Fprintf(tw, "  Steps retried:\t%d\n", rep.GetStepsRetried())
	tw.Flush()
	if len(rep.GetApprovals()) > 0 {
		fmt.Fprintln(out, "  Approvals:")
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		for _, a := range rep.GetApprovals() {
			ap := a.GetApproval()
			fmt.Fprintf(tw, "    %s\t%s (%s)\t%s\t%s\n", tsText(ap.GetTime()), ap.GetApprover(), ap.GetRole(), a.GetStepId(), ap.GetReason())
		}
		tw.Flush()
	}
	start := run.GetStarted()
	if start == nil {
		return
	}
	fmt.Fprintf(out, "  Timeline (from the run's start, %s):\n", tsText(start))
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    STEP\tSTART\tEND\tTOOK\tSTATE")
	for _, s := range run.GetSteps() {
		if s.GetStarted() == nil && s.GetEnded() == nil {
			continue
		}
		from, to, took := "-", "-", ""
		if s.GetStarted() != nil {
			from = offset(start.AsTime(), s.GetStarted().AsTime())
			took = stepElapsed(s, now).Round(time.Millisecond).String()
		}
		if s.GetEnded() != nil {
			to = offset(start.AsTime(), s.GetEnded().AsTime())
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\n", s.GetId(), from, to, took, s.GetState())
	}
	tw.Flush()
}

// dataLossText describes the report's data-loss window.
func dataLossText(rep *controllerv1.RunReport) string {
	var at []string
	if rep.GetRestoredTo() != nil {
		at = append(at, "restored to "+tsText(rep.GetRestoredTo()))
	}
	if rep.GetNewestBackup() != nil {
		at = append(at, "newest backup "+tsText(rep.GetNewestBackup()))
	}
	where := ""
	if len(at) > 0 {
		where = " (" + strings.Join(at, ", ") + ")"
	}
	switch {
	case !rep.GetDataLossKnown():
		return "unknown" + where
	case rep.GetDataLoss().AsDuration() == 0:
		return "none" + where
	}
	return rep.GetDataLoss().AsDuration().String() + where
}

// percent is how far p is, 0 to 100; p.total must be > 0.
func percent(p *controllerv1.StepProgress) float64 {
	return min(max(float64(p.GetDone())*100/float64(p.GetTotal()), 0), 100)
}

// progressText renders p: "[#####.....] 45% 12.3/27.0 MB" when the total
// is known, else what is done.
func progressText(p *controllerv1.StepProgress) string {
	if p.GetTotal() <= 0 {
		if p.GetUnit() == "percent" {
			return fmt.Sprintf("%d%%", p.GetDone())
		}
		return strings.TrimSpace(amount(p.GetDone(), p.GetUnit()) + " " + unitName(p.GetUnit()))
	}
	pc := percent(p)
	const width = 10
	n := int(pc / 100 * width)
	bar := "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
	s := fmt.Sprintf("%s %3.0f%%", bar, pc)
	if p.GetUnit() != "percent" {
		s += fmt.Sprintf(" %s/%s %s", amount(p.GetDone(), p.GetUnit()), amount(p.GetTotal(), p.GetUnit()), unitName(p.GetUnit()))
	}
	return strings.TrimRight(s, " ")
}

// amount renders n units: bytes in MB with one decimal, others as is.
func amount(n int64, unit string) string {
	if unit == "bytes" {
		return fmt.Sprintf("%.1f", float64(n)/1e6)
	}
	return fmt.Sprint(n)
}

func unitName(unit string) string {
	if unit == "bytes" {
		return "MB"
	}
	return unit
}

// stepElapsed is how long s ran: to its end, or to now while it runs.
func stepElapsed(s *controllerv1.RunStep, now time.Time) time.Duration {
	if s.GetStarted() == nil {
		return 0
	}
	end := now
	if s.GetEnded() != nil {
		end = s.GetEnded().AsTime()
	}
	return max(end.Sub(s.GetStarted().AsTime()), 0)
}

// offset renders t relative to start: "+1m2.5s".
func offset(start, t time.Time) string {
	return "+" + t.Sub(start).Round(100*time.Millisecond).String()
}

func clock(t time.Time) string { return t.UTC().Format("15:04:05") }

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// tsText renders a timestamp in UTC, "" for none.
func tsText(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}
