package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

func newPreflightCommand(g *globals) *cobra.Command {
	var pool, forKind, mode string
	cmd := &cobra.Command{
		Use:   "preflight --pool POOL [--for failover|failback] [--mode planned|disaster]",
		Short: "Check whether a failover or failback can start now (go / no-go)",
		Long: `Asks the controller to run read-only checks for a failover or a failback of
the pool, from what the agents report now and from the run journal: agents
answering per site, SQL Server Agent running, the state of mgc on the primary
and the backup, exactly one writable mgc, log-shipping latency and data-loss
window, the backup share readable and the copy directory writable, the active
servers (at most 4, in the site of the database in use), the pool state, no
run in progress or waiting for an acknowledgement, and whether the plan can
be built. Each check is PASS, WARN, FAIL or SKIP with a reason; the verdict is
GO when nothing failed. Nothing is changed. Needs the viewer role or above.

Exits 0 on GO, 1 on NO-GO, 2 for bad flags or an unknown pool, 3 when the
controller cannot be reached.`,
		Example: `  chatdr preflight --pool pchat.chatdr.lab
  chatdr preflight --pool pchat.chatdr.lab --mode disaster
  chatdr preflight --pool pchat.chatdr.lab --for failback -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pool == "" {
				return usageErr("--pool is required (the Persistent Chat pool FQDN)")
			}
			kind, err := preflightKind(forKind, mode, cmd.Flags().Changed("mode"))
			if err != nil {
				return err
			}
			client, closeFn, err := g.dialController()
			if err != nil {
				return err
			}
			defer closeFn()
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			resp, err := client.Preflight(ctx, &controllerv1.PreflightRequest{Pool: pool, Kind: kind})
			if err != nil {
				return g.rpcErr(err)
			}
			if g.output == "json" {
				if err := g.printJSON(resp); err != nil {
					return err
				}
			} else if err := renderPreflight(g.stdout, resp); err != nil {
				return failed(err)
			}
			if !resp.GetGo() {
				return failed(fmt.Errorf("no-go for %s of %s: %s failed", kindLabel(resp.GetKind()), resp.GetPool(), strings.Join(failedChecks(resp), ", ")))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&pool, "pool", "", "Persistent Chat pool FQDN (required)")
	cmd.Flags().StringVar(&forKind, "for", "failover", "what to check for: failover or failback")
	cmd.Flags().StringVar(&mode, "mode", "planned", "failover mode: planned (primary site healthy) or disaster (primary site lost)")
	return cmd
}

// preflightKind maps --for and --mode to a plan kind; modeSet says whether
// --mode was given (a failback has no mode).
func preflightKind(forKind, mode string, modeSet bool) (controllerv1.PlanKind, error) {
	switch forKind {
	case "failover":
		switch mode {
		case "planned":
			return controllerv1.PlanKind_PLAN_KIND_FAILOVER_PLANNED, nil
		case "disaster":
			return controllerv1.PlanKind_PLAN_KIND_FAILOVER_DISASTER, nil
		}
		return 0, usageErr("--mode %q: want planned (primary site healthy, zero data loss) or disaster (primary site lost)", mode)
	case "failback":
		if modeSet {
			return 0, usageErr("--mode applies to a failover only; a failback has one mode")
		}
		return controllerv1.PlanKind_PLAN_KIND_FAILBACK, nil
	}
	return 0, usageErr("--for %q: want failover or failback", forKind)
}

// kindLabel names a plan kind for people.
func kindLabel(k controllerv1.PlanKind) string {
	switch k {
	case controllerv1.PlanKind_PLAN_KIND_FAILOVER_PLANNED:
		return "planned failover"
	case controllerv1.PlanKind_PLAN_KIND_FAILOVER_DISASTER:
		return "disaster failover"
	case controllerv1.PlanKind_PLAN_KIND_FAILBACK:
		return "failback"
	}
	return "run"
}

// verdictLabel is the table's word for a verdict.
func verdictLabel(v controllerv1.CheckVerdict) string {
	if s, ok := strings.CutPrefix(v.String(), "CHECK_VERDICT_"); ok && v != controllerv1.CheckVerdict_CHECK_VERDICT_UNSPECIFIED {
		return s
	}
	return "?"
}

// failedChecks names the failed checks of resp (with their subject).
func failedChecks(resp *controllerv1.PreflightResponse) []string {
	var out []string
	for _, c := range resp.GetChecks() {
		if c.GetVerdict() == controllerv1.CheckVerdict_CHECK_VERDICT_FAIL {
			name := c.GetName()
			if c.GetSubject() != "" {
				name += " (" + c.GetSubject() + ")"
			}
			out = append(out, name)
		}
	}
	return out
}

// renderPreflight writes the checks as a table and the verdict line.
func renderPreflight(w io.Writer, resp *controllerv1.PreflightResponse) error {
	at := ""
	if resp.GetCheckedAt() != nil {
		at = " at " + resp.GetCheckedAt().AsTime().UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "Preflight for a %s of %s%s\n\n", kindLabel(resp.GetKind()), resp.GetPool(), at)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tVERDICT\tSUBJECT\tREASON")
	counts := map[controllerv1.CheckVerdict]int{}
	for _, c := range resp.GetChecks() {
		counts[c.GetVerdict()]++
		subject := c.GetSubject()
		if subject == "" {
			subject = "-"
		}
		reason := strings.ReplaceAll(strings.ReplaceAll(c.GetReason(), "\t", " "), "\n", " ")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.GetName(), verdictLabel(c.GetVerdict()), subject, reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	summary := fmt.Sprintf("%d passed, %d warnings, %d failed, %d skipped",
		counts[controllerv1.CheckVerdict_CHECK_VERDICT_PASS], counts[controllerv1.CheckVerdict_CHECK_VERDICT_WARN],
		counts[controllerv1.CheckVerdict_CHECK_VERDICT_FAIL], counts[controllerv1.CheckVerdict_CHECK_VERDICT_SKIP])
	if resp.GetGo() {
		next := "chatdr plan failover --pool " + resp.GetPool()
		switch resp.GetKind() {
		case controllerv1.PlanKind_PLAN_KIND_FAILOVER_DISASTER:
			next += " --mode disaster"
		case controllerv1.PlanKind_PLAN_KIND_FAILBACK:
			next = "chatdr plan failback --pool " + resp.GetPool()
		default:
			next += " --mode planned"
		}
		advice := "see the plan with `" + next + "`"
		if counts[controllerv1.CheckVerdict_CHECK_VERDICT_WARN] > 0 {
			advice = "read the warnings, then " + advice
		}
		_, err := fmt.Fprintf(w, "\nGO: %s; %s\n", summary, advice)
		return err
	}
	_, err := fmt.Fprintf(w, "\nNO-GO: %s: %s\n", summary, strings.Join(failedChecks(resp), ", "))
	return err
}
