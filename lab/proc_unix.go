//go:build !windows

package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/chatdr/chatdr/internal/proc"
)

// detachAttr puts the child in its own session so that it outlives the
// command and does not get the terminal's signals.
func detachAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }

// processAlive reports whether pid is a live (not zombie) process whose
// command line contains marker. Where /proc is missing it trusts the pid.
func processAlive(pid int, marker string) bool {
	if !proc.Running(pid) {
		return false
	}
	if _, err := os.Stat("/proc/self"); err != nil {
		return true // no /proc: the pid is all there is to go by
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	return bytes.Contains(cmdline, []byte(marker))
}

// stopProcess sends SIGTERM, waits up to grace, then SIGKILL.
func stopProcess(pid int, marker string, grace time.Duration) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
	if waitGone(pid, marker, grace) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	if waitGone(pid, marker, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("still running after SIGKILL")
}

// killProcess stops pid at once (SIGKILL), as a crash or power loss would.
func killProcess(pid int, marker string) error {
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	if waitGone(pid, marker, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("pid %d still running after SIGKILL", pid)
}

func waitGone(pid int, marker string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !processAlive(pid, marker) {
			return true
		}
		time.Sleep(20 * time.Millisecond) // polling a process that has no other way to tell us it ended
	}
	return !processAlive(pid, marker)
}
