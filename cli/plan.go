package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

func newPlanCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show the plan of a failover or failback without running it (dry run)",
		Long: `Asks the controller to build the plan of a failover or failback from the
topology and what the agents report now (database states, pool state, active
servers, which hosts answer), and prints it: groups of steps that run in
parallel, each with its host, action, key parameters, timeout, approval and the
procedure step it implements. Nothing is changed. Needs the viewer role or
above.

Exits 1 when the safety rules refuse the request (e.g. a failback of a pool
that is Normal, a planned failover with the primary unreachable, a split-brain
risk), 2 for an unknown pool or bad flags.`,
	}
	var pool, mode, reason string
	var skipMirroring, forceSplit, forceState bool
	run := func(cmd *cobra.Command, kind controllerv1.PlanKind) error {
		if pool == "" {
			return usageErr("--pool is required (the Persistent Chat pool FQDN)")
		}
		if (forceSplit || forceState) && reason == "" {
			return usageErr("--reason is required with --force-split-brain or --force-pool-state")
		}
		client, closeFn, err := g.dialController()
		if err != nil {
			return err
		}
		defer closeFn()
		ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
		defer cancel()
		resp, err := client.BuildPlan(ctx, &controllerv1.BuildPlanRequest{Pool: pool, Kind: kind, SkipMirroring: skipMirroring,
			ForceSplitBrain: forceSplit, ForcePoolState: forceState, ForceReason: reason})
		if err != nil {
			return g.rpcErr(err)
		}
		if g.output == "json" {
			return g.printJSON(resp)
		}
		fmt.Fprintln(g.stdout, "Built from:")
		for _, f := range resp.GetFacts() {
			fmt.Fprintln(g.stdout, "  "+f)
		}
		fmt.Fprintln(g.stdout)
		fmt.Fprint(g.stdout, resp.GetTable())
		return nil
	}
	addFlags := func(c *cobra.Command) {
		c.Flags().StringVar(&pool, "pool", "", "Persistent Chat pool FQDN (required)")
		c.Flags().BoolVar(&skipMirroring, "skip-mirroring", false, "do not re-create database mirroring in the new site")
		c.Flags().BoolVar(&forceSplit, "force-split-brain", false, "plan even though the backup database is writable while the primary is too (needs --reason)")
		c.Flags().BoolVar(&forceState, "force-pool-state", false, "plan even though the pool state says the operation does not apply (needs --reason)")
		c.Flags().StringVar(&reason, "reason", "", "why you force; recorded in the plan")
	}
	failover := &cobra.Command{
		Use:   "failover --pool POOL --mode planned|disaster",
		Short: "Show the failover plan",
		Example: `  chatdr plan failover --pool pchat.chatdr.lab --mode planned
  chatdr plan failover --pool pchat.chatdr.lab --mode disaster -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch mode {
			case "planned":
				return run(cmd, controllerv1.PlanKind_PLAN_KIND_FAILOVER_PLANNED)
			case "disaster":
				return run(cmd, controllerv1.PlanKind_PLAN_KIND_FAILOVER_DISASTER)
			}
			return usageErr("--mode %q: want planned (primary site healthy, zero data loss) or disaster (primary site lost)", mode)
		},
	}
	addFlags(failover)
	failover.Flags().StringVar(&mode, "mode", "", "planned or disaster (required)")
	failback := &cobra.Command{
		Use:     "failback --pool POOL",
		Short:   "Show the failback plan",
		Example: `  chatdr plan failback --pool pchat.chatdr.lab`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, controllerv1.PlanKind_PLAN_KIND_FAILBACK)
		},
	}
	addFlags(failback)
	cmd.AddCommand(failover, failback)
	return cmd
}
