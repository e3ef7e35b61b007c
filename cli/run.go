package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

// ExitWaitingApproval is the exit code of --wait when the run stops to wait
// for an approval.
const ExitWaitingApproval = 4

// startOptions are the flags of failover and failback.
type startOptions struct {
	pool, mode, reason, forceReason string
	skipMirroring, forceSplit       bool
	forceState, forceUnack          bool
	yes, wait                       bool
}

func (o *startOptions) addFlags(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&o.pool, "pool", "", "Persistent Chat pool FQDN (required)")
	f.StringVar(&o.reason, "reason", "", "why you start the run (audited)")
	f.BoolVar(&o.skipMirroring, "skip-mirroring", false, "do not re-create database mirroring in the new site")
	f.BoolVar(&o.forceSplit, "force-split-brain", false, "run even though the backup database is writable while the primary is too (needs --force-reason)")
	f.BoolVar(&o.forceState, "force-pool-state", false, "run even though the pool state says the operation does not apply (needs --force-reason)")
	f.BoolVar(&o.forceUnack, "force-unacknowledged", false, "run although the pool's previous run is not acknowledged (needs --force-reason)")
	f.StringVar(&o.forceReason, "force-reason", "", "why you force; recorded in the plan and the audit log")
	f.BoolVar(&o.yes, "yes", false, "start without showing the plan and asking for confirmation")
	f.BoolVar(&o.wait, "wait", false, "wait until the run ends or waits for approval, printing each step's progress")
}

func newFailoverCommand(g *globals) *cobra.Command {
	o := &startOptions{}
	cmd := &cobra.Command{
		Use:   "failover --pool POOL --mode planned|disaster [--yes] [--wait]",
		Short: "Fail a pool over to its backup site",
		Long: `Builds the failover plan from what the agents report now, shows it and asks for
confirmation (unless --yes; without a terminal on stdin --yes is required),
then starts it as a run on the controller. Needs the operator or admin role.

With --wait, follows the run like 'chatdr run watch' (live progress, then the
report): exit 0 when it succeeded, 1 when it paused, failed or was cancelled
(with the error), 4 when it waits for an approval ('chatdr run approve').`,
		Example: `  chatdr failover --pool pchat.chatdr.lab --mode planned --yes --wait`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch o.mode {
			case "planned":
				return g.startRun(cmd, o, controllerv1.PlanKind_PLAN_KIND_FAILOVER_PLANNED)
			case "disaster":
				return g.startRun(cmd, o, controllerv1.PlanKind_PLAN_KIND_FAILOVER_DISASTER)
			}
			return usageErr("--mode %q: want planned (primary site healthy, zero data loss) or disaster (primary site lost)", o.mode)
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&o.mode, "mode", "", "planned or disaster (required)")
	return cmd
}

func newFailbackCommand(g *globals) *cobra.Command {
	o := &startOptions{}
	cmd := &cobra.Command{
		Use:   "failback --pool POOL [--yes] [--wait]",
		Short: "Fail a pool back to its rebuilt primary site",
		Long: `Like failover, for the failback plan. Needs the operator or admin role.
Exit codes with --wait: 0 succeeded, 1 paused/failed/cancelled, 4 waiting for approval.`,
		Example: `  chatdr failback --pool pchat.chatdr.lab --yes --wait`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.startRun(cmd, o, controllerv1.PlanKind_PLAN_KIND_FAILBACK)
		},
	}
	o.addFlags(cmd)
	return cmd
}

// startRun shows the plan and asks (unless --yes), starts the run, and
// waits for it with --wait.
func (g *globals) startRun(cmd *cobra.Command, o *startOptions, kind controllerv1.PlanKind) error {
	if o.pool == "" {
		return usageErr("--pool is required (the Persistent Chat pool FQDN)")
	}
	if (o.forceSplit || o.forceState || o.forceUnack) && strings.TrimSpace(o.forceReason) == "" {
		return usageErr("--force-reason is required with --force-split-brain, --force-pool-state or --force-unacknowledged")
	}
	if !o.yes && !isTerminal(os.Stdin) {
		return usageErr("stdin is not a terminal, so the plan cannot be confirmed: review it with 'chatdr plan', then add --yes")
	}
	client, closeFn, err := g.dialController()
	if err != nil {
		return err
	}
	defer closeFn()
	if !o.yes {
		ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
		resp, err := client.BuildPlan(ctx, &controllerv1.BuildPlanRequest{Pool: o.pool, Kind: kind, SkipMirroring: o.skipMirroring,
			ForceSplitBrain: o.forceSplit, ForcePoolState: o.forceState, ForceReason: o.forceReason})
		cancel()
		if err != nil {
			return g.rpcErr(err)
		}
		fmt.Fprintln(g.stderr, "Built from:")
		for _, f := range resp.GetFacts() {
			fmt.Fprintln(g.stderr, "  "+f)
		}
		fmt.Fprintln(g.stderr)
		fmt.Fprint(g.stderr, resp.GetTable())
		fmt.Fprint(g.stderr, "\nStart this run? Type yes to confirm: ")
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if strings.TrimSpace(strings.ToLower(line)) != "yes" {
			return failed(errors.New("not confirmed; nothing was started"))
		}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
	resp, err := client.StartRun(ctx, &controllerv1.StartRunRequest{Pool: o.pool, Kind: kind, SkipMirroring: o.skipMirroring,
		ForceSplitBrain: o.forceSplit, ForcePoolState: o.forceState, ForceReason: o.forceReason,
		ForceUnacknowledged: o.forceUnack, Reason: o.reason})
	cancel()
	if err != nil {
		return g.rpcErr(err)
	}
	id := resp.GetRunId()
	if !o.wait {
		if g.output == "json" {
			return g.printJSON(resp)
		}
		fmt.Fprintf(g.stdout, "started %s (%d steps); follow it with 'chatdr run show %s'\n", id, len(resp.GetRun().GetSteps()), id)
		return nil
	}
	fmt.Fprintf(g.stderr, "started %s\n", id)
	return g.waitRun(cmd.Context(), client, id)
}

func elapsed(s *controllerv1.RunStep) string {
	if s.GetStarted() == nil {
		return ""
	}
	end := time.Now()
	if s.GetEnded() != nil {
		end = s.GetEnded().AsTime()
	}
	return end.Sub(s.GetStarted().AsTime()).Round(time.Millisecond).String()
}

func errText(e *controllerv1.RunError) string {
	var b strings.Builder
	if e.GetCode() != "" {
		b.WriteString(e.GetCode() + ": ")
	}
	b.WriteString(e.GetMessage())
	if e.GetHost() != "" {
		b.WriteString(" (host " + e.GetHost() + ")")
	}
	if e.GetHint() != "" {
		b.WriteString("; " + e.GetHint())
	}
	return b.String()
}

func newRunCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "List, show, watch, approve, cancel, resume and acknowledge runs",
	}
	// call dials the controller and runs one call with a deadline.
	call := func(cmd *cobra.Command, f func(context.Context, controllerv1.ControllerServiceClient) error) error {
		client, closeFn, err := g.dialController()
		if err != nil {
			return err
		}
		defer closeFn()
		ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
		defer cancel()
		return f(ctx, client)
	}
	var limit int32
	list := &cobra.Command{
		Use:   "list",
		Short: "List runs, newest first (viewer and above)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call(cmd, func(ctx context.Context, c controllerv1.ControllerServiceClient) error {
				resp, err := c.ListRuns(ctx, &controllerv1.ListRunsRequest{Limit: limit})
				if err != nil {
					return g.rpcErr(err)
				}
				if g.output == "json" {
					return g.printJSON(resp)
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "RUN\tKIND\tPOOL\tSTATE\tSTARTED BY\tCREATED")
				for _, r := range resp.GetRuns() {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.GetId(), kindName(r.GetKind()), r.GetPool(), r.GetState(),
						r.GetStartedBy(), r.GetCreated().AsTime().UTC().Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().Int32Var(&limit, "limit", 0, "at most this many runs (0: all)")
	show := &cobra.Command{
		Use:   "show RUN",
		Short: "Show a run and its steps (viewer and above; -o json includes step outputs)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, func(ctx context.Context, c controllerv1.ControllerServiceClient) error {
				resp, err := c.GetRun(ctx, &controllerv1.GetRunRequest{RunId: args[0]})
				if err != nil {
					return g.rpcErr(err)
				}
				if g.output == "json" {
					return g.printJSON(resp.GetRun())
				}
				g.printRun(resp.GetRun())
				if resp.GetRun().GetReport() != nil {
					fmt.Fprintln(g.stdout)
					printReport(g.stdout, resp.GetRun(), time.Now())
				}
				return nil
			})
		},
	}
	var step, reason string
	approve := &cobra.Command{
		Use:   "approve RUN [--step S] --reason R",
		Short: "Approve a step waiting for approval (approver or admin)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return usageErr("--reason is required (it is audited)")
			}
			return call(cmd, func(ctx context.Context, c controllerv1.ControllerServiceClient) error {
				resp, err := c.ApproveStep(ctx, &controllerv1.ApproveStepRequest{RunId: args[0], StepId: step, Reason: reason})
				if err != nil {
					return g.rpcErr(err)
				}
				if g.output == "json" {
					return g.printJSON(resp)
				}
				if resp.GetComplete() {
					fmt.Fprintf(g.stdout, "%s step %s approved; the run continues\n", args[0], resp.GetStepId())
				} else {
					fmt.Fprintf(g.stdout, "%s step %s: approval recorded; another approver is needed\n", args[0], resp.GetStepId())
				}
				return nil
			})
		},
	}
	approve.Flags().StringVar(&step, "step", "", "step ID (default: the one step waiting for approval)")
	approve.Flags().StringVar(&reason, "reason", "", "why you approve (required)")
	var cancelReason string
	cancelCmd := &cobra.Command{
		Use:   "cancel RUN",
		Short: "Cancel a run after its steps in flight (operator or admin)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, func(ctx context.Context, c controllerv1.ControllerServiceClient) error {
				resp, err := c.CancelRun(ctx, &controllerv1.CancelRunRequest{RunId: args[0], Reason: cancelReason})
				if err != nil {
					return g.rpcErr(err)
				}
				return g.printState(resp.GetRun())
			})
		},
	}
	cancelCmd.Flags().StringVar(&cancelReason, "reason", "", "why you cancel (audited)")
	var wait bool
	resume := &cobra.Command{
		Use:   "resume RUN [--wait]",
		Short: "Resume a paused run (operator or admin)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, closeFn, err := g.dialController()
			if err != nil {
				return err
			}
			defer closeFn()
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			resp, err := client.ResumeRun(ctx, &controllerv1.ResumeRunRequest{RunId: args[0]})
			cancel()
			if err != nil {
				return g.rpcErr(err)
			}
			if wait {
				return g.waitRun(cmd.Context(), client, args[0])
			}
			return g.printState(resp.GetRun())
		},
	}
	resume.Flags().BoolVar(&wait, "wait", false, "wait until the run ends or waits for approval")
	ack := &cobra.Command{
		Use:   "ack RUN",
		Short: "Acknowledge a finished run, allowing the next run of its pool (operator or admin)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return call(cmd, func(ctx context.Context, c controllerv1.ControllerServiceClient) error {
				resp, err := c.AcknowledgeRun(ctx, &controllerv1.AcknowledgeRunRequest{RunId: args[0]})
				if err != nil {
					return g.rpcErr(err)
				}
				return g.printState(resp.GetRun())
			})
		},
	}
	cmd.AddCommand(list, show, newRunWatchCommand(g), approve, cancelCmd, resume, ack)
	return cmd
}

func (g *globals) printState(r *controllerv1.Run) error {
	if g.output == "json" {
		return g.printJSON(r)
	}
	fmt.Fprintf(g.stdout, "%s: %s\n", r.GetId(), r.GetState())
	return nil
}

func kindName(k controllerv1.PlanKind) string {
	switch k {
	case controllerv1.PlanKind_PLAN_KIND_FAILOVER_PLANNED:
		return "failover-planned"
	case controllerv1.PlanKind_PLAN_KIND_FAILOVER_DISASTER:
		return "failover-disaster"
	case controllerv1.PlanKind_PLAN_KIND_FAILBACK:
		return "failback"
	}
	return "unknown"
}

// printRun prints a run and a table of its steps.
func (g *globals) printRun(r *controllerv1.Run) {
	fmt.Fprintf(g.stdout, "Run %s: %s of %s, %s\n", r.GetId(), kindName(r.GetKind()), r.GetPool(), r.GetState())
	fmt.Fprintf(g.stdout, "Started by %s at %s", r.GetStartedBy(), r.GetCreated().AsTime().UTC().Format(time.RFC3339))
	if r.GetReason() != "" {
		fmt.Fprintf(g.stdout, " (%s)", r.GetReason())
	}
	fmt.Fprintln(g.stdout)
	if r.GetEnded() != nil && r.GetStarted() != nil {
		fmt.Fprintf(g.stdout, "Ended at %s after %s\n", r.GetEnded().AsTime().UTC().Format(time.RFC3339),
			r.GetEnded().AsTime().Sub(r.GetStarted().AsTime()).Round(time.Millisecond))
	}
	if e := r.GetError(); e != nil {
		fmt.Fprintf(g.stdout, "Error: %s\n", errText(e))
	}
	fmt.Fprintln(g.stdout)
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tHOST\tACTION\tSTATE\tATTEMPTS\tELAPSED\tNOTE")
	for _, s := range r.GetSteps() {
		note := ""
		switch {
		case s.GetError() != nil && s.GetState() != "succeeded":
			note = errText(s.GetError())
		case s.GetState() == "waiting_approval":
			note = fmt.Sprintf("needs %d approver(s), has %d", s.GetRequiredApprovers(), len(s.GetApprovals()))
		case s.GetSkipReason() != "":
			note = s.GetSkipReason()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", s.GetId(), s.GetHost(), s.GetAction(), s.GetState(),
			s.GetAttempts(), s.GetMaxAttempts(), elapsed(s), note)
	}
	tw.Flush()
}

func newAuditCommand(g *globals) *cobra.Command {
	var f controllerv1.ListAuditRequest
	listRun := func(cmd *cobra.Command, _ []string) error {
		client, closeFn, err := g.dialController()
		if err != nil {
			return err
		}
		defer closeFn()
		ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
		defer cancel()
		resp, err := client.ListAudit(ctx, &f)
		if err != nil {
			return g.rpcErr(err)
		}
		if g.output == "json" {
			return g.printJSON(resp)
		}
		tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tRUN\tSTEP\tDETAILS")
		for _, e := range resp.GetEntries() {
			fmt.Fprintf(tw, "%d\t%s\t%s (%s)\t%s\t%s\t%s\t%s\n", e.GetSeq(), e.GetTime().AsTime().UTC().Format(time.RFC3339),
				e.GetActor(), e.GetActorRole(), e.GetAction(), e.GetRunId(), e.GetStepId(), e.GetDetailsJson())
		}
		return tw.Flush()
	}
	addFilter := func(c *cobra.Command) {
		c.Flags().StringVar(&f.RunId, "run", "", "only entries of this run")
		c.Flags().StringVar(&f.StepId, "step", "", "only entries of this step")
		c.Flags().StringVar(&f.Action, "action", "", "only this action (a trailing * matches a prefix, e.g. 'step.*')")
		c.Flags().StringVar(&f.Actor, "actor", "", "only entries by this person")
		c.Flags().Int32Var(&f.Limit, "limit", 0, "at most this many entries (0: all)")
	}
	cmd := &cobra.Command{
		Use:   "audit [list|verify]",
		Short: "List the audit log, or verify its hash chain (viewer and above)",
		Args:  noArgs,
		RunE:  listRun,
	}
	addFilter(cmd)
	list := &cobra.Command{Use: "list", Short: "List audit entries, oldest first", Args: noArgs, RunE: listRun}
	addFilter(list)
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Verify the audit log's hash chain (exit 1 when it was tampered with)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, closeFn, err := g.dialController()
			if err != nil {
				return err
			}
			defer closeFn()
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			resp, err := client.VerifyAudit(ctx, &controllerv1.VerifyAuditRequest{})
			if err != nil {
				return g.rpcErr(err)
			}
			if g.output == "json" {
				if err := g.printJSON(resp); err != nil {
					return err
				}
			} else if resp.GetOk() {
				fmt.Fprintf(g.stdout, "audit log intact: %d entries, head %s\n", resp.GetHeadSeq(), resp.GetHeadHash())
			}
			if !resp.GetOk() {
				return failed(fmt.Errorf("audit log tampered with: entry %d (or a later one) was edited, inserted, moved or deleted", resp.GetFirstBad()))
			}
			return nil
		},
	}
	cmd.AddCommand(list, verify)
	return cmd
}
