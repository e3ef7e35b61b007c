//go:build unix

package service

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// startDetached starts the command build returns in its own session (and so its own process
// group): it outlives the plugin and the agent, gets no signal meant for
// them, and can be signalled as a group.
func startDetached(build func() *exec.Cmd) (*exec.Cmd, error) {
	cmd := build()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd, cmd.Start()
}

// signalStop sends SIGTERM to the service's process group (the service
// leads it), or to the process alone if it has no group.
func signalStop(pid int) error { return signalGroup(pid, syscall.SIGTERM) }

// killProcess sends SIGKILL to the service's process group, so that its
// children go too.
func killProcess(pid int) error { return signalGroup(pid, syscall.SIGKILL) }

func signalGroup(pid int, sig syscall.Signal) error {
	if pid <= 0 {
		return errors.New("no pid")
	}
	err := syscall.Kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		err = syscall.Kill(pid, sig)
	}
	if errors.Is(err, syscall.ESRCH) {
		return nil // already gone
	}
	return err
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
