// This file runs chatdr's daemons in-process for tests and benchmarks:
// a deployment CA in a temporary directory, agents (controllers: package
// ctltest) serving real gRPC with mutual TLS on 127.0.0.1 ports, their
// configuration files, and a valid topology naming the agents.
//
// Every Start function registers a cleanup with its testing.TB that stops
// what it started and waits for it; the Run functions leave that to the
// caller. Nothing here keeps package-level state, so tests using it may run in
// parallel.

package testutil

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"gopkg.in/yaml.v3"

	"github.com/chatdr/chatdr/agent"
	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/internal/cfgfile"
	"github.com/chatdr/chatdr/internal/pki"
)

// StartTimeout bounds how long a daemon may take to listen, and StopTimeout
// how long it may take to return once cancelled.
const (
	StartTimeout = 30 * time.Second
	StopTimeout  = 30 * time.Second
)

// NewTLSDir creates, in a new temporary directory of tb, a deployment CA and
// the certificates pki.InitDir issues: controller.crt and agent.crt (valid for
// 127.0.0.1, ::1 and localhost) and one certificate per client role, named
// after the role (viewer.crt, operator.crt, approver.crt, admin.crt). It
// returns the directory.
func NewTLSDir(tb testing.TB) string {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "tls")
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	if err := pki.InitDir(dir, pki.InitOptions{ControllerHosts: hosts, AgentHosts: hosts, Validity: 24 * time.Hour}); err != nil {
		tb.Fatalf("create TLS directory: %v", err)
	}
	return dir
}

// TLSFiles names the CA of tlsDir and the certificate and key called name
// (e.g. "agent", "viewer") in it.
func TLSFiles(tlsDir, name string) cfgfile.TLS {
	return cfgfile.TLS{
		CA:   filepath.Join(tlsDir, pki.CACertFile),
		Cert: filepath.Join(tlsDir, name+".crt"),
		Key:  filepath.Join(tlsDir, name+".key"),
	}
}

// ClientTLS returns the TLS configuration of a client that holds the
// certificate called name in tlsDir and dials a server whose certificate must
// carry role server.
func ClientTLS(tb testing.TB, tlsDir, name string, server pki.Role) *tls.Config {
	tb.Helper()
	f := TLSFiles(tlsDir, name)
	mat, err := pki.LoadMaterial(f.CA, f.Cert, f.Key)
	if err != nil {
		tb.Fatalf("load client certificate %s: %v", name, err)
	}
	return mat.ClientConfig(server)
}

// Dial returns a gRPC connection to addr with the given TLS configuration,
// closed when tb ends. The connection is lazy: errors show on the first call.
func Dial(tb testing.TB, addr string, cfg *tls.Config) *grpc.ClientConn {
	tb.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { cc.Close() })
	return cc
}

// DialAs returns a connection to addr for a client holding the certificate
// called name in tlsDir, expecting a server with role server; see Dial.
func DialAs(tb testing.TB, tlsDir, name string, server pki.Role, addr string) *grpc.ClientConn {
	tb.Helper()
	return Dial(tb, addr, ClientTLS(tb, tlsDir, name, server))
}

// Daemon is an agent or a controller running in-process.
type Daemon struct {
	// Addr is the gRPC address the daemon listens on.
	Addr string
	// MetricsAddr is the address of its /metrics endpoint, empty when disabled.
	MetricsAddr string
	// ConfigPath is the configuration file it was started from.
	ConfigPath string

	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's result, set before done closes
}

// RunDaemon calls run in a goroutine and returns once run has reported its
// addresses through ready, or with run's error if it returned first. The
// caller must Stop the daemon.
func RunDaemon(cfgPath string, run func(ctx context.Context, ready func(grpcAddr, metricsAddr string)) error) (*Daemon, error) {
	ctx, cancel := context.WithCancel(context.Background())
	d := &Daemon{ConfigPath: cfgPath, cancel: cancel, done: make(chan struct{})}
	type addrs struct{ grpc, metrics string }
	readyc := make(chan addrs, 1)
	go func() {
		defer close(d.done)
		d.err = run(ctx, func(g, m string) { readyc <- addrs{g, m} })
	}()
	timer := time.NewTimer(StartTimeout)
	defer timer.Stop()
	select {
	case a := <-readyc:
		d.Addr, d.MetricsAddr = a.grpc, a.metrics
		return d, nil
	case <-d.done:
		cancel()
		if d.err == nil {
			d.err = errors.New("returned before listening")
		}
		return nil, fmt.Errorf("start %s: %w", cfgPath, d.err)
	case <-timer.C:
		cancel()
		return nil, fmt.Errorf("start %s: not listening after %s", cfgPath, StartTimeout)
	}
}

// Stop cancels the daemon and waits, at most StopTimeout, for its Run to
// return; it returns Run's error. It is safe to call more than once and from
// several goroutines.
func (d *Daemon) Stop() error {
	d.cancel()
	timer := time.NewTimer(StopTimeout)
	defer timer.Stop()
	select {
	case <-d.done:
		return d.err
	case <-timer.C:
		return fmt.Errorf("%s: still running %s after being cancelled", d.ConfigPath, StopTimeout)
	}
}

// Done is closed when the daemon's Run has returned.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// DiscardLogger returns a logger that drops the daemons' logs.
func DiscardLogger() *slog.Logger { return discardLogger() }

// discardLogger drops the daemons' logs: a test asserts on outcomes, and
// a thousand agents would drown its output.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// writeYAML marshals v into dir/name and returns the file's path.
func writeYAML(dir, name string, v any) (string, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, b, 0o600)
}

// tlsYAML is the tls section of a daemon's configuration file.
type tlsYAML struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

func tlsSection(tlsDir, name string) tlsYAML {
	f := TLSFiles(tlsDir, name)
	return tlsYAML{CA: f.CA, Cert: f.Cert, Key: f.Key}
}

// AgentSpec describes an in-process agent.
type AgentSpec struct {
	// Host is the FQDN the agent reports.
	Host string
	// Site is the site the agent reports.
	Site string
	// Roles are the roles the agent reports.
	Roles []string
	// Listen is the gRPC address; empty means a free port on 127.0.0.1.
	Listen string
	// MetricsListen is the /metrics address; empty disables metrics.
	MetricsListen string
	// Cert names the certificate of the TLS directory the agent serves
	// with; empty means "agent".
	Cert string
	// BuiltinPlugins names the built-in plugins to run; nil means none. The
	// agent serves them by re-executing its own binary as "plugin NAME",
	// which a test binary does only if its TestMain handles that.
	BuiltinPlugins []string
}

// pluginsYAML is the plugins section of an agent's configuration file.
type pluginsYAML struct {
	Builtin []string `yaml:"builtin"`
}

// WriteAgentConfig writes the agent.yaml of spec into dir, with the agent's
// state in dir/state and its certificate from tlsDir, and returns its path.
func WriteAgentConfig(dir, tlsDir string, spec AgentSpec) (string, error) {
	if spec.Listen == "" {
		spec.Listen = "127.0.0.1:0"
	}
	if spec.Cert == "" {
		spec.Cert = "agent"
	}
	return writeYAML(dir, "agent.yaml", struct {
		Host          string      `yaml:"host"`
		Site          string      `yaml:"site"`
		Roles         []string    `yaml:"roles"`
		Listen        string      `yaml:"listen"`
		MetricsListen string      `yaml:"metrics_listen,omitempty"`
		StateDir      string      `yaml:"state_dir"`
		TLS           tlsYAML     `yaml:"tls"`
		ShutdownGrace string      `yaml:"shutdown_grace"`
		Plugins       pluginsYAML `yaml:"plugins"`
	}{spec.Host, spec.Site, spec.Roles, spec.Listen, spec.MetricsListen, "state", tlsSection(tlsDir, spec.Cert), "5s",
		pluginsYAML{Builtin: append([]string{}, spec.BuiltinPlugins...)}})
}

// RunAgent loads the agent configuration at cfgPath, starts agent.Run and
// returns once the agent listens. The caller must Stop it.
func RunAgent(cfgPath string) (*Daemon, error) {
	cfg, err := agent.LoadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	return RunDaemon(cfgPath, func(ctx context.Context, ready func(string, string)) error {
		return agent.Run(ctx, cfg, discardLogger(), ready)
	})
}

// StartAgent writes a configuration for spec into a temporary directory of
// tb, starts the agent and stops it when tb ends. It fails tb when the agent
// does not start.
func StartAgent(tb testing.TB, tlsDir string, spec AgentSpec) *Daemon {
	tb.Helper()
	return StartAgents(tb, tlsDir, []AgentSpec{spec})[0]
}

// StartAgents starts one agent per spec, several at once, and returns them
// in spec order; every agent is stopped (all at once) when tb ends. It fails
// tb, after stopping those that started, when any agent does not start.
func StartAgents(tb testing.TB, tlsDir string, specs []AgentSpec) []*Daemon {
	tb.Helper()
	root := tb.TempDir()
	out := make([]*Daemon, len(specs))
	errs := make([]error, len(specs))
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(8, len(specs)) {
		wg.Go(func() {
			for i := range work {
				path, err := WriteAgentConfig(filepath.Join(root, fmt.Sprintf("agent-%d", i)), tlsDir, specs[i])
				if err == nil {
					out[i], err = RunAgent(path)
				}
				errs[i] = err
			}
		})
	}
	for i := range specs {
		work <- i
	}
	close(work)
	wg.Wait()
	tb.Cleanup(func() {
		if err := StopAll(out); err != nil {
			tb.Errorf("stop agents: %v", err)
		}
	})
	if err := errors.Join(errs...); err != nil {
		tb.Fatalf("start agents: %v", err)
	}
	return out
}

// StopAll stops the daemons (nil entries are skipped) all at once and
// returns their errors joined.
func StopAll(ds []*Daemon) error {
	errs := make([]error, len(ds))
	var wg sync.WaitGroup
	for i, d := range ds {
		if d == nil {
			continue
		}
		wg.Go(func() { errs[i] = d.Stop() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Addrs returns the gRPC addresses of the daemons.
func Addrs(ds []*Daemon) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Addr
	}
	return out
}

// ControllerSpec describes an in-process controller.
type ControllerSpec struct {
	// Topology is the topology file.
	Topology string
	// StateDir is the controller's state directory.
	StateDir string
	// Listen is the gRPC address; empty means a free port on 127.0.0.1.
	Listen string
	// MetricsListen is the /metrics address; empty disables metrics.
	MetricsListen string
	// AgentTimeout is the per-agent deadline; zero means the default.
	AgentTimeout time.Duration
	// Concurrency bounds the agent calls in flight; zero means the default.
	Concurrency int
}

// WriteControllerConfig writes the controller.yaml of spec into dir, with the
// controller certificate of tlsDir, and returns its path.
func WriteControllerConfig(dir, tlsDir string, spec ControllerSpec) (string, error) {
	if spec.Listen == "" {
		spec.Listen = "127.0.0.1:0"
	}
	type fleetYAML struct {
		AgentTimeout string `yaml:"agent_timeout,omitempty"`
		Concurrency  int    `yaml:"concurrency,omitempty"`
	}
	fl := fleetYAML{Concurrency: spec.Concurrency}
	if spec.AgentTimeout > 0 {
		fl.AgentTimeout = spec.AgentTimeout.String()
	}
	return writeYAML(dir, "controller.yaml", struct {
		Listen        string    `yaml:"listen"`
		MetricsListen string    `yaml:"metrics_listen,omitempty"`
		Topology      string    `yaml:"topology"`
		StateDir      string    `yaml:"state_dir"`
		TLS           tlsYAML   `yaml:"tls"`
		Fleet         fleetYAML `yaml:"fleet"`
		ShutdownGrace string    `yaml:"shutdown_grace"`
	}{spec.Listen, spec.MetricsListen, spec.Topology, spec.StateDir, tlsSection(tlsDir, "controller"), fl, "5s"})
}

// Pool is the pool FQDN of the topologies WriteTopology writes.
const Pool = "pchat01.test.chatdr.test"

// FleetHost is one agent host of a test topology, as topology.Agents
// reports it (without its address).
type FleetHost struct {
	// Host is the host's FQDN.
	Host string
	// Site is the name of the site the host sits in (dc1 or dc2).
	Site string
	// Roles are the topology roles of the host (topology.Role* constants).
	Roles []string
}

// AgentSpec returns the spec of an agent that reports itself as h.
func (h FleetHost) AgentSpec() AgentSpec {
	return AgentSpec{Host: h.Host, Site: h.Site, Roles: h.Roles}
}

// LabHosts returns n hosts (4 ≤ n ≤ 12) that WriteTopology turns into a valid
// topology, in the order topology.Agents lists them: first the chat servers
// (n-2, at most 8; the first half in site dc1, active when the pool is normal,
// the rest in dc2, active when failed over; the first is the Management
// Shell host), then the SQL hosts: primary (dc1), primary mirror (dc1, from
// n = 11), backup (dc2), backup mirror (dc2, n = 12).
func LabHosts(n int) ([]FleetHost, error) {
	if n < 4 || n > topology.MaxChatServers+4 {
		return nil, fmt.Errorf("a test topology holds 4 to %d agents, not %d", topology.MaxChatServers+4, n)
	}
	chat := min(n-2, topology.MaxChatServers)
	var out []FleetHost
	for i := range chat {
		site := "dc1"
		if i >= (chat+1)/2 {
			site = "dc2"
		}
		roles := []string{topology.RoleChatServer}
		if i == 0 {
			roles = append(roles, topology.RoleManagementShell)
		}
		out = append(out, FleetHost{Host: fmt.Sprintf("pc%d.%s.test.chatdr.test", i+1, site), Site: site, Roles: roles})
	}
	sql := []FleetHost{
		{Host: "sql1.dc1.test.chatdr.test", Site: "dc1", Roles: []string{topology.RoleSQLPrimary}},
		{Host: "sql2.dc1.test.chatdr.test", Site: "dc1", Roles: []string{topology.RoleSQLPrimaryMirror}},
		{Host: "sql1.dc2.test.chatdr.test", Site: "dc2", Roles: []string{topology.RoleSQLBackup}},
		{Host: "sql2.dc2.test.chatdr.test", Site: "dc2", Roles: []string{topology.RoleSQLBackupMirror}},
	}
	switch n - chat {
	case 2:
		out = append(out, sql[0], sql[2])
	case 3:
		out = append(out, sql[0], sql[1], sql[2])
	default:
		out = append(out, sql...)
	}
	return out, nil
}

// WriteTopology writes to path the topology of pool Pool in which hosts[i]
// (from LabHosts) has its agent at addrs[i].
func WriteTopology(path string, hosts []FleetHost, addrs []string) error {
	if len(hosts) != len(addrs) {
		return fmt.Errorf("%d hosts but %d addresses", len(hosts), len(addrs))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "pool: %s\nsites:\n  - {name: dc1, role: primary}\n  - {name: dc2, role: backup}\nchat_servers:\n", Pool)
	var sql strings.Builder
	mirror := false
	for i, h := range hosts {
		switch role := h.Roles[0]; role {
		case topology.RoleChatServer:
			active := "normal"
			if h.Site == "dc2" {
				active = "failed_over"
			}
			fmt.Fprintf(&b, "  - {fqdn: %s, site: %s, agent: %q, active_when: %s}\n", h.Host, h.Site, addrs[i], active)
		case topology.RoleSQLPrimary, topology.RoleSQLPrimaryMirror, topology.RoleSQLBackup, topology.RoleSQLBackupMirror:
			key := strings.TrimPrefix(role, "sql_")
			mirror = mirror || strings.HasSuffix(key, "mirror")
			fmt.Fprintf(&sql, "  %s: {fqdn: %s, agent: %q}\n", key, h.Host, addrs[i])
		default:
			return fmt.Errorf("host %s: role %q is not a topology role", h.Host, role)
		}
	}
	b.WriteString("sql:\n")
	b.WriteString(sql.String())
	b.WriteString("log_shipping:\n  backup_share: /srv/chatdr-test/share/pchat-ls\n  copy_dir: /srv/chatdr-test/lscopy/mgc\n")
	if mirror {
		b.WriteString("  mirror_share: /srv/chatdr-test/share/pchat-mirror\n")
	}
	for _, h := range hosts {
		if len(h.Roles) > 1 && h.Roles[1] == topology.RoleManagementShell {
			fmt.Fprintf(&b, "management_shell_host: %s\n", h.Host)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}
