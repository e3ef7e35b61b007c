package cli

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/internal/pki"
)

func newCertsCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Create the deployment CA and its certificates",
		Long: `chatdr uses mutual TLS everywhere. One deployment CA issues every
certificate; a certificate's role (controller, agent, viewer, operator,
approver, admin) is carried in its subject (OU) and its name in the CN.`,
	}

	var dir, topoFile string
	var ctlHosts, agentHosts []string
	var validity time.Duration
	initCmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a CA with controller, agent and one client certificate per role",
		Long: `Creates in DIR: ca.crt/ca.key (the deployment CA), controller.crt/.key,
agent.crt/.key, and viewer, operator, approver and admin client certificates.

The controller certificate covers localhost, 127.0.0.1 and every
--controller-host; the agent certificate covers localhost, 127.0.0.1, every
--agent-host and, with --topology, every host and agent address named in the
topology. Keys are written readable by the owner only. Refuses a DIR that
already holds a CA.`,
		Example: `  chatdr certs init --dir ./tls --controller-host chatdr.contoso.com --topology topology.yaml`,
		Args:    noArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if dir == "" {
				return usageErr("--dir is required")
			}
			if validity <= 0 {
				return usageErr("--validity must be positive")
			}
			if _, err := os.Stat(filepath.Join(dir, pki.CACertFile)); err == nil {
				return usageErr("%s already holds a CA; use 'chatdr certs issue' to add certificates, or choose an empty directory", dir)
			}
			agents := append([]string{"localhost", "127.0.0.1"}, agentHosts...)
			if topoFile != "" {
				t, err := topology.Load(topoFile)
				if err != nil {
					return usageErr("%v", err)
				}
				agents = append(agents, topologyHosts(t)...)
			}
			opts := pki.InitOptions{
				ControllerHosts: uniq(append([]string{"localhost", "127.0.0.1"}, ctlHosts...)),
				AgentHosts:      uniq(agents),
				Validity:        validity,
			}
			if err := pki.InitDir(dir, opts); err != nil {
				return failed(err)
			}
			fmt.Fprintf(g.stdout, "created CA and certificates in %s: controller, agent, %s\n", dir, strings.Join(roleNames(pki.ClientRoles), ", "))
			fmt.Fprintf(g.stdout, "agent certificate covers: %s\n", strings.Join(opts.AgentHosts, ", "))
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "", "directory to create the CA and certificates in")
	initCmd.Flags().StringSliceVar(&ctlHosts, "controller-host", nil, "DNS name or IP of the controller (repeatable)")
	initCmd.Flags().StringSliceVar(&agentHosts, "agent-host", nil, "DNS name or IP of an agent (repeatable)")
	initCmd.Flags().StringVar(&topoFile, "topology", "", "add every host of this topology to the agent certificate")
	initCmd.Flags().DurationVar(&validity, "validity", 365*24*time.Hour, "how long the certificates are valid")

	var role, name string
	var hosts []string
	var issueDir string
	var issueValidity time.Duration
	issue := &cobra.Command{
		Use:   "issue --role ROLE --name NAME --dir DIR",
		Short: "Issue one more certificate with the CA in DIR",
		Long: `Issues NAME.crt and NAME.key in DIR, signed by DIR/ca.key, with role ROLE
(controller, agent, viewer, operator, approver or admin). Use it for one
certificate per person (the name is recorded as the approver of a step) or one
per agent host (give its names and addresses with --host).`,
		Example: `  chatdr certs issue --role approver --name alice --dir ./tls
  chatdr certs issue --role agent --name pc1 --host pc1.dc1.contoso.com --dir ./tls`,
		Args: noArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if issueDir == "" || name == "" || role == "" {
				return usageErr("--dir, --role and --name are required")
			}
			r, err := pki.ParseRole(role)
			if err != nil {
				return usageErr("--role: %v", err)
			}
			if strings.ContainsAny(name, `/\`) || name == "." || name == ".." || slices.Contains(serverCertNames, name) && string(r) != name {
				return usageErr("--name %q cannot be used as a file name here", name)
			}
			if issueValidity <= 0 {
				return usageErr("--validity must be positive")
			}
			ca, err := pki.LoadCA(issueDir)
			if err != nil {
				return usageErr("%v", err)
			}
			is, err := ca.Issue(pki.IssueRequest{Role: r, Name: name, Hosts: hosts, Validity: issueValidity})
			if err != nil {
				return failed(err)
			}
			if err := pki.SaveIssued(issueDir, name, is); err != nil {
				return failed(err)
			}
			fmt.Fprintf(g.stdout, "issued %s (role %s)\n", filepath.Join(issueDir, name+".crt"), r)
			return nil
		},
	}
	issue.Flags().StringVar(&issueDir, "dir", "", "directory holding ca.crt and ca.key")
	issue.Flags().StringVar(&role, "role", "", "role: controller, agent, viewer, operator, approver or admin")
	issue.Flags().StringVar(&name, "name", "", "certificate name (a person or a host)")
	issue.Flags().StringSliceVar(&hosts, "host", nil, "DNS name or IP the holder serves at (repeatable; for controller and agent)")
	issue.Flags().DurationVar(&issueValidity, "validity", 365*24*time.Hour, "how long the certificate is valid")

	cmd.AddCommand(initCmd, issue)
	return cmd
}

// topologyHosts returns every host name and agent address host in t.
func topologyHosts(t *topology.Topology) []string {
	var out []string
	for _, a := range t.Agents() {
		out = append(out, a.Host)
		if h, _, err := net.SplitHostPort(a.Address); err == nil {
			out = append(out, h)
		}
	}
	return out
}

func roleNames(rs []pki.Role) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}

func uniq(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
