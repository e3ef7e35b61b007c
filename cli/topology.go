package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/chatdr/chatdr/controller/topology"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

func newTopologyCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Check and reload the deployment topology",
	}
	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a topology file and list every problem with its line",
		Long: `Reads a topology file (docs/topology.md) and checks it without contacting
anything: unknown fields, missing fields, sites, at most 8 chat servers and 4
active at once, active servers in the right site, duplicate hosts, SQL names.
Every problem is printed as FILE:LINE: FIELD: MESSAGE.

Exits 0 when the file is valid, 2 when it is not.`,
		Example: `  chatdr topology validate topology.yaml`,
		Args:    exactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			t, err := topology.Load(args[0])
			if err != nil {
				if errors.Is(err, topology.ErrInvalid) {
					fmt.Fprintln(g.stdout, err.Error())
					return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%s is not a valid topology", args[0])}
				}
				return usageErr("%v", err)
			}
			if g.output == "json" {
				fmt.Fprintf(g.stdout, "{\"file\": %q, \"valid\": true, \"pool\": %q, \"agents\": %d}\n", args[0], t.Pool, len(t.Agents()))
				return nil
			}
			fmt.Fprintf(g.stdout, "%s: valid: pool %s, %d chat servers, %d agents\n", args[0], t.Pool, len(t.ChatServers), len(t.Agents()))
			return nil
		},
	}
	reload := &cobra.Command{
		Use:   "reload",
		Short: "Make the controller re-read its topology file (admin)",
		Long: `Asks the controller to re-read and validate the topology file named in its
configuration. When the file is valid it replaces the topology in use; when it
is not, the controller keeps the old one and the problems are printed.
Needs the admin role.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, closeFn, err := g.dialController()
			if err != nil {
				return err
			}
			defer closeFn()
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			resp, err := client.ReloadTopology(ctx, &controllerv1.ReloadTopologyRequest{})
			if err != nil {
				return g.rpcErr(err)
			}
			if g.output == "json" {
				return g.printJSON(resp)
			}
			fmt.Fprintf(g.stdout, "topology reloaded: pool %s, %d agents\n", resp.GetPool(), resp.GetAgents())
			return nil
		},
	}
	cmd.AddCommand(validate, reload)
	return cmd
}
