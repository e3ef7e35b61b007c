package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

func newDrillCommand(g *globals) *cobra.Command {
	var pool string
	var wait bool
	var pollEvery time.Duration
	cmd := &cobra.Command{
		Use:   "drill --pool POOL [--wait]",
		Short: "Restore drill: restore the log-shipped copy under a scratch name, time it, validate it, drop it",
		Long: `Asks the controller to run a restore drill on the backup SQL host: the copy of
mgc that log shipping keeps there is restored under a scratch name
(mgc_chatdr_drill_<time>) from the full backup and the log backups, in LSN
order WITH NORECOVERY (the log backups of the share not yet copied are copied
to a scratch directory, as a failover's F2 would), then recovered and
validated (state ONLINE, rows and last message time of dbo.messages), and
dropped with its files, also when it fails. It reports the time of each phase,
the restore time, an RTO estimate of a failover's database part (copy +
restore of the logs the secondary has not restored yet + recovery) and the
data-loss window (RPO) the restored copy shows. Log shipping, the secondary
database, its jobs, the copy directory, the pool state and the services are
left alone. Refused while a run of the pool is in progress or another drill
runs. Needs the operator or admin role.

Without --wait it prints the drill's ID and exits 0; with --wait it waits for
the end, prints the report, and exits 0 when the drill succeeded, 1 when it
failed or was interrupted. Exit 2 for bad flags or an unknown pool, 3 when the
controller cannot be reached or refuses your certificate.`,
		Example: `  chatdr drill --pool pchat.chatdr.lab --wait
  chatdr drill list
  chatdr drill show drill-3 -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pool == "" {
				return usageErr("--pool is required (the Persistent Chat pool FQDN)")
			}
			client, closeFn, err := g.dialController()
			if err != nil {
				return err
			}
			defer closeFn()
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			resp, err := client.RunDrill(ctx, &controllerv1.RunDrillRequest{Pool: pool})
			cancel()
			if err != nil {
				return g.rpcErr(err)
			}
			r := resp.GetReport()
			if !wait {
				if g.output == "json" {
					return g.printJSON(r)
				}
				_, err := fmt.Fprintf(g.stdout, "drill %s started on %s; follow it with `chatdr drill show %s`\n", r.GetId(), r.GetHost(), r.GetId())
				return err
			}
			for r.GetState() == controllerv1.DrillState_DRILL_STATE_RUNNING {
				select {
				case <-cmd.Context().Done():
					return failed(fmt.Errorf("stopped waiting; drill %s goes on (chatdr drill show %s)", r.GetId(), r.GetId()))
				case <-time.After(pollEvery):
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
				got, err := client.GetDrill(ctx, &controllerv1.GetDrillRequest{Id: r.GetId()})
				cancel()
				if err != nil {
					return g.rpcErr(err)
				}
				r = got.GetReport()
			}
			return g.showDrill(r)
		},
	}
	cmd.Flags().StringVar(&pool, "pool", "", "Persistent Chat pool FQDN (required)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the drill to end and print its report")
	cmd.Flags().DurationVar(&pollEvery, "poll", time.Second, "with --wait: how often to ask the controller")
	_ = cmd.Flags().MarkHidden("poll")
	cmd.AddCommand(newDrillListCommand(g), newDrillShowCommand(g))
	return cmd
}

func newDrillListCommand(g *globals) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the drill reports, newest first",
		Long: `Lists the restore drills the controller keeps, newest first: state, when and
by whom, the restore time, the RTO estimate, the data-loss window and the rows
validated. Needs the viewer role or above. Exit 3 when the controller cannot be
reached.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usageErr("--limit must not be negative")
			}
			client, closeFn, err := g.dialController()
			if err != nil {
				return err
			}
			defer closeFn()
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			resp, err := client.ListDrills(ctx, &controllerv1.ListDrillsRequest{Limit: int32(limit)})
			if err != nil {
				return g.rpcErr(err)
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			return renderDrillList(g.stdout, resp.GetDrills())
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "at most this many drills (0: all)")
	return cmd
}

func newDrillShowCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show DRILL-ID",
		Short: "Show one drill's report",
		Long: `Prints one drill's report (phases, restore time, RTO estimate, data-loss
window, validation). Exit 0 when the drill succeeded or still runs, 1 when it
failed or was interrupted, 2 for an unknown drill.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, closeFn, err := g.dialController()
			if err != nil {
				return err
			}
			defer closeFn()
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			resp, err := client.GetDrill(ctx, &controllerv1.GetDrillRequest{Id: args[0]})
			if err != nil {
				return g.rpcErr(err)
			}
			return g.showDrill(resp.GetReport())
		},
	}
}

// showDrill prints a report and maps its state to the exit code.
func (g *globals) showDrill(r *controllerv1.DrillReport) error {
	if g.output == "json" {
		if err := g.printJSON(r); err != nil {
			return err
		}
	} else if err := renderDrill(g.stdout, r); err != nil {
		return failed(err)
	}
	switch r.GetState() {
	case controllerv1.DrillState_DRILL_STATE_FAILED, controllerv1.DrillState_DRILL_STATE_INTERRUPTED:
		return failed(fmt.Errorf("drill %s %s: %s", r.GetId(), drillStateLabel(r.GetState()), r.GetError()))
	}
	return nil
}

func drillStateLabel(s controllerv1.DrillState) string {
	if v, ok := strings.CutPrefix(s.String(), "DRILL_STATE_"); ok && s != controllerv1.DrillState_DRILL_STATE_UNSPECIFIED {
		return strings.ToLower(v)
	}
	return "?"
}

func dur(d *durationpb.Duration) string {
	if d == nil {
		return "-"
	}
	v := d.AsDuration()
	switch {
	case v >= time.Minute:
		return v.Round(time.Second).String()
	case v >= time.Second:
		return v.Round(10 * time.Millisecond).String()
	default:
		return v.Round(time.Millisecond).String()
	}
}

func ts(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}

// renderDrill writes one drill report for people.
func renderDrill(w io.Writer, r *controllerv1.DrillReport) error {
	fmt.Fprintf(w, "Drill %s of %s on %s: %s\n", r.GetId(), r.GetPool(), r.GetHost(), strings.ToUpper(drillStateLabel(r.GetState())))
	fmt.Fprintf(w, "Started %s by %s, ended %s\n", ts(r.GetStartedAt()), r.GetStartedBy(), ts(r.GetFinishedAt()))
	if r.GetError() != "" {
		fmt.Fprintf(w, "Error: %s\n", r.GetError())
	}
	if len(r.GetPhases()) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PHASE\tDURATION")
		for _, p := range r.GetPhases() {
			fmt.Fprintf(tw, "%s\t%s\n", p.GetName(), dur(p.GetDuration()))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if r.GetScratchDatabase() == "" {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }
	row("Database", "%s restored as %s", r.GetDatabase(), r.GetScratchDatabase())
	row("Full backup", "%s", r.GetFullBackup())
	row("Logs restored", "%d (%d not yet restored by log shipping, %d not yet copied)", r.GetLogsRestored(), r.GetLogsPending(), r.GetPendingCopyFiles())
	chain := "complete"
	if !r.GetComplete() {
		chain = "incomplete: " + r.GetStopReason()
		if r.GetStopReason() == "" {
			chain = "incomplete: a log backup could not be read"
		}
	}
	row("Log chain", "%s", chain)
	row("Restore point", "LSN %s, log backup of %s (newest seen %s)", r.GetReachedLsn(), ts(r.GetReachedBackupTime()), ts(r.GetNewestBackupTime()))
	valid := "valid"
	if len(r.GetProblems()) > 0 {
		valid = "PROBLEMS: " + strings.Join(r.GetProblems(), "; ")
	}
	row("Validation", "%s; %d rows, last message %s", valid, r.GetRows(), ts(r.GetLastMessageAt()))
	row("Restore time", "%s (full + logs + recovery)", dur(r.GetRestoreTime()))
	var comps []string
	for _, c := range r.GetRtoComponents() {
		comps = append(comps, c.GetName()+" "+dur(c.GetDuration()))
	}
	row("RTO estimate", "%s = %s (database part of a failover, F2-F4b)", dur(r.GetRtoEstimate()), strings.Join(comps, " + "))
	probe := "not reported"
	if r.GetProbeDataLoss() != nil {
		probe = dur(r.GetProbeDataLoss())
	}
	row("RPO (data loss)", "%s since the restore point (log-shipping probe: %s; unrestorable backups: %s)", dur(r.GetDataLossWindow()), probe, dur(r.GetUnrestorable()))
	clean := "scratch database and files removed"
	if !r.GetCleanedUp() {
		clean = "NOT removed: the next drill drops it"
	}
	if len(r.GetLeftoversCleaned()) > 0 {
		clean += "; leftovers of earlier drills dropped: " + strings.Join(r.GetLeftoversCleaned(), ", ")
	}
	row("Cleanup", "%s", clean)
	return tw.Flush()
}

// renderDrillList writes the drills as a table.
func renderDrillList(w io.Writer, ds []*controllerv1.DrillReport) error {
	if len(ds) == 0 {
		_, err := fmt.Fprintln(w, "no drills yet; run one with `chatdr drill --pool POOL --wait`")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tSTARTED\tBY\tHOST\tRESTORE\tRTO\tDATA LOSS\tROWS")
	for _, r := range ds {
		rows := "-"
		if r.GetScratchDatabase() != "" {
			rows = fmt.Sprint(r.GetRows())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.GetId(), drillStateLabel(r.GetState()), ts(r.GetStartedAt()), r.GetStartedBy(),
			r.GetHost(), dur(r.GetRestoreTime()), dur(r.GetRtoEstimate()), dur(r.GetDataLossWindow()), rows)
	}
	return tw.Flush()
}
