//go:build linux

package install

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeSystemctl records the systemctl calls.
type fakeSystemctl struct {
	calls []string
	fail  string // a call that fails
	none  bool   // systemctl is not installed
}

func (f *fakeSystemctl) run(args ...string) (string, error) {
	if f.none {
		return "", errNoSystemctl
	}
	c := strings.Join(args, " ")
	f.calls = append(f.calls, c)
	if c == f.fail {
		return "Failed.", errors.New("exit status 1")
	}
	if args[0] == "is-active" {
		return "active", nil
	}
	return "", nil
}

func testOptions(t *testing.T) (Options, *fakeSystemctl, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "plugin_config:\n  mssql:\n    roots: [/srv/lscopy]\n")
	exe := filepath.Join(dir, "bin", "chatdr-agent")
	require.NoError(t, os.MkdirAll(filepath.Dir(exe), 0o755))
	require.NoError(t, os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755))
	f := &fakeSystemctl{}
	var out strings.Builder
	return Options{ConfigPath: cfg, Executable: exe, UnitDir: filepath.Join(dir, "units"), Systemctl: f.run, Out: &out}, f, dir
}

func TestInstall_writesUnit(t *testing.T) {
	o, f, dir := testOptions(t)
	require.NoError(t, Install(o))
	data, err := os.ReadFile(filepath.Join(o.UnitDir, "chatdr-agent.service"))
	require.NoError(t, err)
	lines := strings.Split(string(data), "\n")
	require.Contains(t, lines, "ExecStart="+o.Executable+" --config "+o.ConfigPath)
	require.Contains(t, lines, "Restart=on-failure")
	require.Contains(t, lines, "RestartSec=5")
	require.Contains(t, lines, "TimeoutStopSec=35") // shutdown_grace 20s + 15s
	require.Contains(t, lines, "ReadWritePaths="+filepath.Join(dir, "state")+" -/srv/lscopy")
	require.NotContains(t, string(data), "User=")
	st, err := os.Stat(filepath.Join(dir, "state"))
	require.NoError(t, err, "install creates the state_dir the unit makes writable")
	require.True(t, st.IsDir())
	require.Empty(t, f.calls, "systemctl runs only with Start")
}

func TestInstall_start(t *testing.T) {
	o, f, _ := testOptions(t)
	o.Name = "chatdr-agent-test"
	o.Start = true
	if os.Geteuid() != 0 {
		require.ErrorIs(t, Install(o), ErrNotPrivileged)
		return
	}
	require.NoError(t, Install(o))
	require.Equal(t, []string{"daemon-reload", "enable chatdr-agent-test", "restart chatdr-agent-test"}, f.calls)
	require.FileExists(t, filepath.Join(o.UnitDir, "chatdr-agent-test.service"))
}

func TestInstall_startFailureReported(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("--start needs root")
	}
	o, f, _ := testOptions(t)
	o.Start = true
	f.fail = "restart chatdr-agent"
	err := Install(o)
	require.ErrorContains(t, err, "systemctl restart chatdr-agent")
	require.ErrorContains(t, err, "Failed.")
}

func TestInstall_user(t *testing.T) {
	o, _, _ := testOptions(t)
	o.User = "no-such-user-chatdr-test"
	require.ErrorContains(t, Install(o), `user "no-such-user-chatdr-test"`)
	_, err := os.Stat(filepath.Join(o.UnitDir, "chatdr-agent.service"))
	require.ErrorIs(t, err, os.ErrNotExist, "nothing is written when the user is unknown")

	o.User = "root"
	require.NoError(t, Install(o))
	data, err := os.ReadFile(filepath.Join(o.UnitDir, "chatdr-agent.service"))
	require.NoError(t, err)
	require.Contains(t, strings.Split(string(data), "\n"), "User=root")
}

func TestInstall_refusesExistingWithoutForce(t *testing.T) {
	o, _, _ := testOptions(t)
	require.NoError(t, Install(o))
	path := filepath.Join(o.UnitDir, "chatdr-agent.service")
	require.NoError(t, os.WriteFile(path, []byte("edited"), 0o644))
	err := Install(o)
	require.ErrorIs(t, err, ErrExists)
	require.ErrorContains(t, err, "--force")
	data, _ := os.ReadFile(path)
	require.Equal(t, "edited", string(data), "a refused install leaves the unit alone")
	o.Force = true
	require.NoError(t, Install(o))
	data, _ = os.ReadFile(path)
	require.Contains(t, string(data), "ExecStart=")
}

func TestInstall_refusesInvalidConfig(t *testing.T) {
	o, _, _ := testOptions(t)
	require.NoError(t, os.WriteFile(o.ConfigPath, []byte("host: a\nsite: b\nlisten: 0.0.0.0:1\nbogus: 1\n"), 0o600))
	err := Install(o)
	require.ErrorIs(t, err, ErrBadConfig)
	require.ErrorContains(t, err, "bogus")
	_, err = os.Stat(filepath.Join(o.UnitDir, "chatdr-agent.service"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestInstall_refusesNonRootForSystemDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root")
	}
	o, _, _ := testOptions(t)
	o.UnitDir = ""
	require.ErrorIs(t, Install(o), ErrNotPrivileged)
}

func TestUninstall_removesUnit(t *testing.T) {
	o, f, dir := testOptions(t)
	require.NoError(t, Install(o))
	require.NoError(t, Uninstall(o))
	_, err := os.Stat(filepath.Join(o.UnitDir, "chatdr-agent.service"))
	require.ErrorIs(t, err, os.ErrNotExist)
	require.Equal(t, []string{"disable --now chatdr-agent", "daemon-reload"}, f.calls)
	require.DirExists(t, filepath.Join(dir, "state"), "uninstall keeps the journal")

	require.ErrorIs(t, Uninstall(o), ErrNotInstalled)
}

func TestUninstall_withoutSystemctl(t *testing.T) {
	o, f, _ := testOptions(t)
	require.NoError(t, Install(o))
	f.none = true
	require.NoError(t, Uninstall(o))
	require.NoFileExists(t, filepath.Join(o.UnitDir, "chatdr-agent.service"))
	require.Contains(t, o.Out.(*strings.Builder).String(), "systemctl not used")
}

func TestInstall_startRefusedOutsideSystemdDirs(t *testing.T) {
	o, _, _ := testOptions(t)
	o.Systemctl = nil
	o.Start = true
	if os.Geteuid() != 0 {
		require.ErrorIs(t, Install(o), ErrNotPrivileged)
		return
	}
	require.ErrorContains(t, Install(o), "systemd does not read units from")
}

func TestUninstall_stagingDirLeavesSystemdAlone(t *testing.T) {
	o, _, _ := testOptions(t)
	o.Systemctl = nil // the real systemctl must not be called for a unit outside systemd's dirs
	require.NoError(t, Install(o))
	require.NoError(t, Uninstall(o))
	require.Contains(t, o.Out.(*strings.Builder).String(), "systemctl not used")
}

func TestStatus(t *testing.T) {
	o, _, _ := testOptions(t)
	require.ErrorIs(t, Status(o), ErrNotInstalled)
	require.NoError(t, Install(o))
	var out strings.Builder
	o.Out = &out
	require.NoError(t, Status(o))
	require.Contains(t, out.String(), "state:  active")
	require.Contains(t, out.String(), "ExecStart="+o.Executable)
}
