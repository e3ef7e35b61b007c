//go:build linux

package install

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// errNoSystemctl means systemctl is not in PATH.
var errNoSystemctl = errors.New("systemctl not found in PATH")

func (o *Options) unitDir() string {
	if o.UnitDir == "" {
		return DefaultUnitDir
	}
	return o.UnitDir
}

func (o *Options) unitPath() string {
	return filepath.Join(o.unitDir(), o.name()+".service")
}

// systemdDirs are the unit directories systemd itself reads.
var systemdDirs = []string{DefaultUnitDir, "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system", "/usr/local/lib/systemd/system"}

// managed reports whether systemctl applies to the unit: it is in a
// directory systemd reads (or tests supplied their own systemctl). A unit
// written elsewhere (--unit-dir for staging) must not start, stop or
// disable a real unit of the same name.
func (o *Options) managed() bool {
	if o.Systemctl != nil {
		return true
	}
	d := filepath.Clean(o.unitDir())
	for _, s := range systemdDirs {
		if d == s {
			return true
		}
	}
	return false
}

func (o *Options) systemctl(args ...string) (string, error) {
	if o.Systemctl != nil {
		return o.Systemctl(args...)
	}
	if !o.managed() {
		return "", errNoSystemctl
	}
	path, err := exec.LookPath("systemctl")
	if err != nil {
		return "", errNoSystemctl
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// needRoot refuses when writing the system unit directory or driving
// systemd needs root and the process is not root.
func (o *Options) needRoot(what string) error {
	if os.Geteuid() == 0 {
		return nil
	}
	if o.UnitDir == "" || filepath.Clean(o.UnitDir) == DefaultUnitDir || o.Start {
		return fmt.Errorf("%w: %s needs root (it writes %s and runs systemctl); run it with sudo", ErrNotPrivileged, what, o.unitDir())
	}
	return nil
}

// Install writes the systemd unit of the agent (see UnitFile), creates the
// agent's state directory (owned by User when given) and, with Start, runs
// systemctl daemon-reload, enable and restart. It refuses an invalid agent
// configuration, an existing unit without Force, an unknown User and a
// caller that is not root when the unit goes to DefaultUnitDir.
func Install(o Options) error {
	if err := o.needRoot("service install"); err != nil {
		return err
	}
	if o.Start && !o.managed() {
		return fmt.Errorf("--start: systemd does not read units from %s; install into %s (the default) to start it", o.unitDir(), DefaultUnitDir)
	}
	p, err := prepare(&o)
	if err != nil {
		return err
	}
	path := o.unitPath()
	if _, err := os.Stat(path); err == nil && !o.Force {
		return fmt.Errorf("%w: %s exists; add --force to replace it, or run `chatdr-agent service uninstall --name %s` first", ErrExists, path, p.name)
	}
	uid, gid := -1, -1
	if o.User != "" {
		u, err := user.Lookup(o.User)
		if err != nil {
			return fmt.Errorf("user %q: %v; create the account first (for example: useradd --system --no-create-home %s)", o.User, err, o.User)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	if err := os.MkdirAll(p.cfg.StateDir, 0o750); err != nil {
		return fmt.Errorf("create state_dir: %w", err)
	}
	if uid >= 0 && os.Geteuid() == 0 {
		if err := os.Chown(p.cfg.StateDir, uid, gid); err != nil {
			return fmt.Errorf("give state_dir %s to %s: %w", p.cfg.StateDir, o.User, err)
		}
		fmt.Fprintf(o.out(), "state_dir %s belongs to %s\n", p.cfg.StateDir, o.User)
	}
	unit := UnitFile(Unit{
		Description:    p.displayName,
		Exec:           append([]string{p.exe}, p.args...),
		User:           o.User,
		ReadWritePaths: ReadWritePaths(p.cfg, p.configPath, o.ReadWritePaths),
		StopTimeout:    stopTimeout(p.cfg),
	})
	if err := os.MkdirAll(o.unitDir(), 0o755); err != nil {
		return fmt.Errorf("unit directory: %w", err)
	}
	if err := writeFileAtomic(path, []byte(unit), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	fmt.Fprintf(o.out(), "wrote %s (ExecStart %s %s)\n", path, p.exe, strings.Join(p.args, " "))
	if !o.Start {
		fmt.Fprintf(o.out(), "start it with: systemctl daemon-reload && systemctl enable --now %s\n", p.name)
		return nil
	}
	for _, args := range [][]string{{"daemon-reload"}, {"enable", p.name}, {"restart", p.name}} {
		if out, err := o.systemctl(args...); err != nil {
			return fmt.Errorf("systemctl %s: %v %s; the unit is written, fix the cause and run it again", strings.Join(args, " "), err, out)
		}
		fmt.Fprintf(o.out(), "systemctl %s: ok\n", strings.Join(args, " "))
	}
	return nil
}

// Uninstall stops and disables the unit (when systemctl is available),
// removes the unit file and reloads systemd. It refuses when the unit file
// does not exist.
func Uninstall(o Options) error {
	if err := checkName(o.name()); err != nil {
		return err
	}
	if err := o.needRoot("service uninstall"); err != nil {
		return err
	}
	path := o.unitPath()
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s does not exist", ErrNotInstalled, path)
	}
	haveSystemctl := true
	if out, err := o.systemctl("disable", "--now", o.name()); errors.Is(err, errNoSystemctl) {
		haveSystemctl = false
		fmt.Fprintln(o.out(), "systemctl not used (not found, or the unit is outside systemd's directories): the unit is not stopped, only removed")
	} else if err != nil {
		fmt.Fprintf(o.out(), "systemctl disable --now %s: %v %s (continuing)\n", o.name(), err, out)
	} else {
		fmt.Fprintf(o.out(), "stopped and disabled %s\n", o.name())
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	fmt.Fprintf(o.out(), "removed %s (the agent's state_dir is kept)\n", path)
	if haveSystemctl {
		if out, err := o.systemctl("daemon-reload"); err != nil {
			fmt.Fprintf(o.out(), "systemctl daemon-reload: %v %s\n", err, out)
		}
	}
	return nil
}

// Status reports whether the unit file exists and, when systemctl is
// available, whether the unit is active. It returns ErrNotInstalled when
// the unit file does not exist.
func Status(o Options) error {
	if err := checkName(o.name()); err != nil {
		return err
	}
	path := o.unitPath()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s does not exist", ErrNotInstalled, path)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(o.out(), "unit:   %s\n", path)
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "ExecStart=") || strings.HasPrefix(line, "User=") {
			fmt.Fprintf(o.out(), "        %s\n", line)
		}
	}
	out, err := o.systemctl("is-active", o.name())
	switch {
	case errors.Is(err, errNoSystemctl):
		fmt.Fprintln(o.out(), "state:  unknown (systemctl not found, or the unit is outside systemd's directories)")
	case out != "":
		fmt.Fprintf(o.out(), "state:  %s\n", out)
	default:
		fmt.Fprintf(o.out(), "state:  unknown (%v)\n", err)
	}
	return nil
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it over path, so that systemd never reads half a unit.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
