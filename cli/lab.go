package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/chatdr/chatdr/lab"
)

func newLabCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run a two-site lab deployment on 127.0.0.1",
		Long: `The lab is a complete chatdr deployment on this machine: a controller and one
agent per host of a two-site Persistent Chat topology (8 chat servers, 4 per
site; SQL primary, primary mirror, backup and backup mirror), all on free
127.0.0.1 ports, with their own CA. Its processes run in the background and
outlive the command; everything lives in --dir.`,
	}
	var dir string
	cmd.PersistentFlags().StringVar(&dir, "dir", "", "lab directory (required)")

	var binDir string
	var timeout time.Duration
	up := &cobra.Command{
		Use:   "up --dir DIR",
		Short: "Create the lab (or restart what is not running) and wait until healthy",
		Long: `Creates the lab in DIR when DIR is new or empty: topology.yaml, tls/ with
a CA and certificates, one config per process. Then starts every process that
is not running (so 'lab up' on an existing lab restarts what died, on the
same ports), waits until the controller reaches every agent, and prints the
shell lines that point the CLI at the lab.

Needs chatdr-agent and chatdr-controller beside this binary (make build puts
all three in bin/), in --bin, or in PATH.`,
		Example: `  chatdr lab up --dir .lab
  eval "$(chatdr lab up --dir .lab | grep ^export)"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usageErr("--dir is required")
			}
			st, err := lab.Up(cmd.Context(), lab.Options{Dir: dir, BinDir: binDir, Timeout: timeout, Out: g.stderr})
			if err != nil {
				return failed(err)
			}
			if g.output == "json" {
				return printJSONValue(g, st)
			}
			fmt.Fprintf(g.stdout, "lab is up: pool %s, controller %s, %d agents, %d SQL Server instances\n",
				st.Pool, st.Controller, st.Count(lab.KindAgent), st.Count(lab.KindSQL))
			fmt.Fprintf(g.stdout, "# point the chatdr CLI at it:\n")
			for _, l := range envLines(st) {
				fmt.Fprintln(g.stdout, l)
			}
			fmt.Fprintf(g.stdout, "# then: chatdr fleet status; stop it with: chatdr lab down --dir %s\n", dir)
			return nil
		},
	}
	up.Flags().StringVar(&binDir, "bin", "", "directory holding chatdr-agent and chatdr-controller")
	up.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long to wait for the lab to become healthy")

	status := &cobra.Command{
		Use:   "status --dir DIR",
		Short: "Show which lab processes run",
		Long:  "Shows every process of the lab with its pid, whether it runs, its address and log. Exits 1 when any is not running.",
		Args:  noArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if dir == "" {
				return usageErr("--dir is required")
			}
			procs, err := lab.Status(dir)
			if err != nil {
				return usageErr("%v", err)
			}
			down := 0
			for _, p := range procs {
				if !p.Running {
					down++
				}
			}
			if g.output == "json" {
				if err := printJSONValue(g, procs); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tKIND\tSITE\tPID\tSTATE\tADDRESS\tLOG")
				for _, p := range procs {
					state, pid := "running", fmt.Sprint(p.PID)
					if !p.Running {
						state, pid = "STOPPED", "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Kind, p.Site, pid, state, p.Address, p.Log)
				}
				tw.Flush()
			}
			if down > 0 {
				return failed(fmt.Errorf("%d of %d lab processes are not running; 'chatdr lab up --dir %s' starts them", down, len(procs), dir))
			}
			return nil
		},
	}

	var grace time.Duration
	var purge bool
	down := &cobra.Command{
		Use:   "down --dir DIR",
		Short: "Stop the processes the lab started",
		Long: `Stops exactly the processes the lab started (SIGTERM, then SIGKILL after
--grace); a pid is only signalled while its command line still names the lab's
config file. Keeps DIR (logs, state) unless --purge is given.`,
		Args: noArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if dir == "" {
				return usageErr("--dir is required")
			}
			stopped, err := lab.Down(dir, grace)
			if err != nil {
				if len(stopped) == 0 {
					if _, lerr := lab.Load(dir); lerr != nil {
						return usageErr("%v", lerr)
					}
				}
				return failed(err)
			}
			fmt.Fprintf(g.stdout, "stopped %d processes", len(stopped))
			if len(stopped) > 0 {
				fmt.Fprintf(g.stdout, ": %s", strings.Join(stopped, ", "))
			}
			fmt.Fprintln(g.stdout)
			if purge {
				if err := os.RemoveAll(dir); err != nil {
					return failed(err)
				}
				fmt.Fprintf(g.stdout, "removed %s\n", dir)
			}
			return nil
		},
	}
	down.Flags().DurationVar(&grace, "grace", 10*time.Second, "how long to wait after SIGTERM before SIGKILL")
	down.Flags().BoolVar(&purge, "purge", false, "also remove the lab directory")

	var site string
	kill := &cobra.Command{
		Use:   "kill --dir DIR --site SITE",
		Short: "Stop every process of a site at once (SIGKILL), as a data-center loss would",
		Long: `Kills, without warning, every process of SITE: its agents (their plugins go with
them), its SQL Server simulators and its chat services. The controller, which
sits in no site, keeps running. 'chatdr lab up' starts them again.`,
		Example: `  chatdr lab kill --dir .lab --site dc1`,
		Args:    noArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if dir == "" || site == "" {
				return usageErr("--dir and --site are required")
			}
			names, err := lab.KillSite(dir, site)
			if err != nil {
				if len(names) == 0 {
					return usageErr("%v", err)
				}
				return failed(err)
			}
			fmt.Fprintf(g.stdout, "killed %d processes of site %s: %s\n", len(names), site, strings.Join(names, ", "))
			return nil
		},
	}
	kill.Flags().StringVar(&site, "site", "", "site whose processes to kill (e.g. dc1)")

	messages := &cobra.Command{
		Use:   "messages --dir DIR",
		Short: "Count acknowledged chat messages against the database the pool uses now",
		Long: `Reads every chat simulator's acknowledgement file and the chat database the pool
uses in its current state (Normal: the primary, FailedOver: the backup), and
reports how many acknowledged messages are present and how many are missing,
with the id and time range of the missing ones: the proof of what a failover
cost. Exits 0 whatever the counts; read the numbers.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usageErr("--dir is required")
			}
			m, err := lab.CountMessages(cmd.Context(), dir)
			if err != nil {
				return failed(err)
			}
			if g.output == "json" {
				return printJSONValue(g, m)
			}
			fmt.Fprintf(g.stdout, "pool %s, database on %s: %d acknowledged, %d present, %d missing\n",
				m.PoolState, m.Database, m.Acknowledged, m.Present, m.Missing)
			if m.Missing > 0 {
				fmt.Fprintf(g.stdout, "missing: ids %d to %d, acknowledged %s to %s\n", m.MissingFirstID, m.MissingLastID,
					m.MissingFirstTime.Format(time.RFC3339Nano), m.MissingLastTime.Format(time.RFC3339Nano))
			}
			return nil
		},
	}

	cmd.AddCommand(up, status, down, kill, messages)
	return cmd
}

// envLines are the shell lines that point the CLI at the lab.
func envLines(st *lab.State) []string {
	return []string{
		"export CHATDR_CONTROLLER=" + st.Controller,
		"export CHATDR_TLS_DIR=" + st.TLSDir,
		"export CHATDR_IDENTITY=admin",
	}
}

func printJSONValue(g *globals, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return failed(err)
	}
	fmt.Fprintln(g.stdout, string(b))
	return nil
}
