package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

func newFleetCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Show the agents of the deployment",
	}
	var site string
	var timeout time.Duration
	var probes bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Ask every agent for its facts and show who is reachable",
		Long: `Asks the controller to query every agent of the topology at once, with a
per-agent deadline, and shows per agent: site, roles, reachability, round-trip
latency, version, uptime and the last error, then per host what its plugins
report: services, databases with state and mirroring role, log-shipping
latency and the estimated data-loss window, the pool state and the active
servers (--probes=false skips them). An unreachable agent shows the facts last
seen and when. Needs the viewer role or above.

Exits 0 when the controller answered, even if some agents are unreachable
(the table says which); 3 when the controller is unreachable or refuses you.`,
		Example: `  chatdr fleet status
  chatdr fleet status --site dc2 -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout < 0 {
				return usageErr("--timeout must be positive")
			}
			client, closeFn, err := g.dialController()
			if err != nil {
				return err
			}
			defer closeFn()
			req := &controllerv1.GetFleetStatusRequest{Site: site, Probes: probes}
			if timeout > 0 {
				req.AgentTimeout = durationpb.New(timeout)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 60*time.Second)
			defer cancel()
			resp, err := client.GetFleetStatus(ctx, req)
			if err != nil {
				return g.rpcErr(err)
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			printFleet(g, resp)
			return nil
		},
	}
	status.Flags().StringVar(&site, "site", "", "only the agents of this site")
	status.Flags().DurationVar(&timeout, "timeout", 0, "per-agent deadline (default: the controller's, 2s)")
	status.Flags().BoolVar(&probes, "probes", true, "also show what the agents' plugins report: services, databases, log shipping, pool state")
	cmd.AddCommand(status)
	return cmd
}

func printFleet(g *globals, resp *controllerv1.GetFleetStatusResponse) {
	up := 0
	for _, a := range resp.GetAgents() {
		if a.GetReachable() {
			up++
		}
	}
	fmt.Fprintf(g.stdout, "pool %s: %d of %d agents reachable (asked in %s)\n\n", resp.GetPool(), up, len(resp.GetAgents()),
		resp.GetElapsed().AsDuration().Round(time.Millisecond))
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSITE\tROLES\tADDRESS\tSTATE\tLATENCY\tVERSION\tUPTIME\tNOTE")
	for _, a := range resp.GetAgents() {
		state, latency, note := "up", a.GetLatency().AsDuration().Round(100*time.Microsecond).String(), strings.Join(a.GetWarnings(), "; ")
		uptime := a.GetInfo().GetUptime().AsDuration().Round(time.Second).String()
		if !a.GetReachable() {
			state, latency, uptime = "DOWN", "-", "-"
			note = a.GetError()
			if ls := a.GetLastSeen(); ls != nil {
				note = fmt.Sprintf("last seen %s; %s", ls.AsTime().Local().Format(time.DateTime), note)
			}
		}
		version := a.GetInfo().GetAgentVersion()
		if version == "" {
			version = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.GetHost(), a.GetSite(), strings.Join(a.GetRoles(), ","),
			a.GetAddress(), state, latency, version, uptime, note)
	}
	tw.Flush()
	first := true
	for _, a := range resp.GetAgents() {
		var lines []string
		for _, p := range a.GetPlugins() {
			if p.GetLoadError() != "" {
				lines = append(lines, fmt.Sprintf("plugin %s not loaded: %s", p.GetName(), p.GetLoadError()))
			}
		}
		for _, f := range a.GetFacts() {
			lines = append(lines, describeFact(f)...)
		}
		if len(lines) == 0 {
			continue
		}
		if first {
			fmt.Fprintln(g.stdout)
			first = false
		}
		fmt.Fprintf(g.stdout, "%s\n", a.GetHost())
		for _, l := range lines {
			fmt.Fprintf(g.stdout, "  %s\n", l)
		}
	}
}

// noArgs refuses positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErr("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// exactArgs wants exactly n positional arguments, named in the usage line.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErr("%s needs %d argument(s), got %d (usage: %s)", cmd.CommandPath(), n, len(args), cmd.UseLine())
		}
		return nil
	}
}
