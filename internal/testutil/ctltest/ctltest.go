// Package ctltest runs chatdr-controller in-process for tests. It is apart
// from internal/testutil because the controller imports the engine's
// runner, whose own tests use testutil: testutil must not import the
// controller.
package ctltest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/chatdr/chatdr/controller"
	"github.com/chatdr/chatdr/internal/testutil"
)

// RunController loads the controller configuration at cfgPath, starts
// controller.Run and returns once the controller listens. The caller must
// Stop it.
func RunController(cfgPath string) (*testutil.Daemon, error) {
	cfg, err := controller.LoadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	return testutil.RunDaemon(cfgPath, func(ctx context.Context, ready func(string, string)) error {
		return controller.Run(ctx, cfg, testutil.DiscardLogger(), ready)
	})
}

// StartController starts the controller configured at cfgPath and stops it
// when tb ends (reporting an error Run returns). It fails tb when the
// controller does not start.
func StartController(tb testing.TB, cfgPath string) *testutil.Daemon {
	tb.Helper()
	d, err := RunController(cfgPath)
	if err != nil {
		tb.Fatalf("start controller: %v", err)
	}
	tb.Cleanup(func() {
		if err := d.Stop(); err != nil {
			tb.Errorf("stop controller: %v", err)
		}
	})
	return d
}

// Lab is an in-process controller over agents for the four lab hosts of
// testutil.LabHosts.
type Lab struct {
	// TLSDir holds the CA and a certificate per role.
	TLSDir string
	// Dir holds topology.yaml and the controller's configuration.
	Dir string
	// StateDir is the controller's state directory.
	StateDir string
	// Ctl is the running controller.
	Ctl *testutil.Daemon
}

// StartLab starts the agents with start (testutil.StartAgents: real agents
// without plugins; fakeagent.Start: agents that report the facts a test
// sets), writes the topology naming them and the controller's
// configuration, and starts the controller; everything stops when tb ends.
// It returns the lab and the agents start returned.
func StartLab[A any](tb testing.TB, start func(testing.TB, string, []testutil.AgentSpec) []A, addrs func([]A) []string, agentTimeout time.Duration) (Lab, []A) {
	tb.Helper()
	tlsDir := testutil.NewTLSDir(tb)
	hosts, err := testutil.LabHosts(4)
	if err != nil {
		tb.Fatal(err)
	}
	specs := make([]testutil.AgentSpec, 0, len(hosts))
	for _, h := range hosts {
		specs = append(specs, h.AgentSpec())
	}
	agents := start(tb, tlsDir, specs)
	dir := tb.TempDir()
	topo := filepath.Join(dir, "topology.yaml")
	if err := testutil.WriteTopology(topo, hosts, addrs(agents)); err != nil {
		tb.Fatal(err)
	}
	stateDir := filepath.Join(dir, "state")
	cfg, err := testutil.WriteControllerConfig(dir, tlsDir, testutil.ControllerSpec{Topology: topo, StateDir: stateDir, AgentTimeout: agentTimeout})
	if err != nil {
		tb.Fatal(err)
	}
	return Lab{TLSDir: tlsDir, Dir: dir, StateDir: stateDir, Ctl: StartController(tb, cfg)}, agents
}
