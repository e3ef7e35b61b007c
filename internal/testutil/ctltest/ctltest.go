// Package ctltest runs chatdr-controller in-process for tests. It is apart
// from internal/testutil because the controller imports the engine's
// runner, whose own tests use testutil: testutil must not import the
// controller.
package ctltest

import (
	"context"
	"testing"

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
