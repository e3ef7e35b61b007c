package cli

import (
	"encoding/json"
	"errors"
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
sits in no site, keeps running. 'chatdr lab start --site SITE' brings the site
back ('chatdr lab up' too, with everything else that is not running).`,
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

	var startSite string
	startCmd := &cobra.Command{
		Use:   "start --dir DIR --site SITE",
		Short: "Bring back a site that 'lab kill' took down, as a recovered data center",
		Long: `Starts again every process of SITE that is not running, on the same ports,
as a data center coming back after a power loss: its SQL Server simulators on
their data directories as the kill left them (an old primary comes back with
its old, possibly diverged, databases: a failback overwrites them with a full
backup of the backup site, RESTORE ... WITH REPLACE), then its agents, then the
Persistent Chat service of its chat servers. A chat server does what the
Central Management Store (which survives: it is a file, served by the
Management Shell host) records: it writes only while its service is recorded
Running and it is on the active list, into the database of the pool state, so
the servers of an old primary site write nothing while the pool is FailedOver.

Waits until the site's SQL Server simulators accept connections, its agents
answer and the controller (when it runs) reaches them. A site whose processes
all run is left alone. Exit 2 for an unknown site.`,
		Example: `  chatdr lab kill --dir .lab --site dc1
  chatdr lab start --dir .lab --site dc1`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" || startSite == "" {
				return usageErr("--dir and --site are required")
			}
			res, err := lab.StartSite(cmd.Context(), lab.Options{Dir: dir, BinDir: binDir, Timeout: timeout, Out: g.stderr}, startSite)
			if err != nil {
				if res == nil {
					if errors.Is(err, lab.ErrUnknownSite) {
						return usageErr("%v", err)
					}
					if _, lerr := lab.Load(dir); lerr != nil {
						return usageErr("%v", lerr)
					}
				}
				return failed(err)
			}
			if g.output == "json" {
				return printJSONValue(g, res)
			}
			if res.AlreadyRunning {
				fmt.Fprintf(g.stdout, "site %s is already running: nothing started\n", res.Site)
			} else {
				fmt.Fprintf(g.stdout, "site %s is back: started %d processes: %s\n", res.Site, len(res.Started), strings.Join(res.Started, ", "))
			}
			fmt.Fprintf(g.stdout, "pool %s\n", res.PoolState)
			for _, c := range res.ChatServers {
				what := "writes nothing"
				if c.Writes {
					what = "writes into the database on " + c.WritesTo
				}
				active := "not on the active list"
				if c.Active {
					active = "on the active list"
				}
				fmt.Fprintf(g.stdout, "  %s: %s %s in the CMS, %s: %s\n", c.Host, lab.ChatService, c.Service, active, what)
			}
			if !res.ControllerRunning {
				fmt.Fprintf(g.stdout, "the controller is not running: 'chatdr lab up --dir %s' starts it\n", dir)
			}
			return nil
		},
	}
	startCmd.Flags().StringVar(&startSite, "site", "", "site to bring back (e.g. dc1)")
	startCmd.Flags().StringVar(&binDir, "bin", "", "directory holding chatdr-agent, chatdr-controller and chatdr-sim")
	startCmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long to wait for the site to become healthy")

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

	cmd.AddCommand(up, status, down, kill, startCmd, messages)
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
