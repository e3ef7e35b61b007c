//go:build linux

package controller_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/internal/testutil/ctltest"
	"github.com/chatdr/chatdr/internal/testutil/fakeagent"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

// smallDisk mounts a tmpfs of size bytes on a new directory and unmounts it
// when t ends; it skips t where mounting is not allowed (not root, no
// CAP_SYS_ADMIN in a container).
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	require.NoError(t, os.Mkdir(dir, 0o700))
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (%v): run as root to test a full disk", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file into dir until the file system is full and returns
// its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err = f.Write(buf); err != nil {
			break
		}
	}
	require.True(t, errors.Is(err, syscall.ENOSPC), "filling %s: %v", dir, err)
	return path
}

// TestController_StartRun_diskFull is issue 6 scenario (d): the
// controller's state directory is on a file system that is full (a real
// one, a small tmpfs filled up). StartRun fails with an error that says the
// run could not be recorded and why; no run exists, no agent was asked
// anything, the pool is not locked; once space is freed the same request
// starts a run.
func TestController_StartRun_diskFull(t *testing.T) {
	disk := smallDisk(t, "16m")
	tlsDir := testutil.NewTLSDir(t)
	hosts, err := testutil.LabHosts(4)
	require.NoError(t, err)
	var specs []testutil.AgentSpec
	for _, h := range hosts {
		specs = append(specs, h.AgentSpec())
	}
	e := &fakeEnv{tlsDir: tlsDir, hosts: hosts, agents: fakeagent.Start(t, tlsDir, specs)}
	dir := t.TempDir()
	topo := filepath.Join(dir, "topology.yaml")
	require.NoError(t, testutil.WriteTopology(topo, hosts, fakeagent.Addrs(e.agents)))
	cfg, err := testutil.WriteControllerConfig(dir, tlsDir, testutil.ControllerSpec{Topology: topo,
		StateDir: filepath.Join(disk, "state"), AgentTimeout: 2 * time.Second})
	require.NoError(t, err)
	e.ctl = ctltest.StartController(t, cfg)
	operator, viewer := e.client(t, "operator"), e.client(t, "viewer")
	// The controller is up and has recorded its agents.
	require.NoError(t, testutil.Eventually(10*time.Second, 50*time.Millisecond, func() error {
		st, err := viewer.GetFleetStatus(callCtx(t), &controllerv1.GetFleetStatusRequest{})
		if err != nil {
			return err
		}
		for _, a := range st.GetAgents() {
			if !a.GetReachable() {
				return errors.New(a.GetHost() + " not reachable yet")
			}
		}
		return nil
	}))

	filler := fill(t, disk)
	msg := requireCode(t, err2(operator.StartRun(callCtx(t), plannedFailover())), codes.Internal)
	t.Logf("StartRun on a full disk: %s", msg)
	require.Contains(t, msg, "create run for pool "+testutil.Pool)
	require.Contains(t, msg, "no space left on device")
	runs, err := viewer.ListRuns(callCtx(t), &controllerv1.ListRunsRequest{})
	require.NoError(t, err)
	require.Empty(t, runs.GetRuns(), "no run was recorded")
	require.Empty(t, e.executed(), "no agent was asked to act")

	// Space is freed: the same request starts run-1 (the refused one left
	// no lock on the pool).
	require.NoError(t, os.Remove(filler))
	resp, err := operator.StartRun(callCtx(t), plannedFailover())
	require.NoError(t, err)
	require.Equal(t, "run-1", resp.GetRunId())
	_, err = operator.CancelRun(callCtx(t), &controllerv1.CancelRunRequest{RunId: "run-1", Reason: "test over"})
	require.NoError(t, err)
	waitRun(t, viewer, "run-1", "cancelled state", func(r *controllerv1.Run) bool { return r.GetState() == "cancelled" })
}
