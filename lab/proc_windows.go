//go:build windows

package lab

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/windows"

	"github.com/chatdr/chatdr/internal/proc"
)

// detachAttr starts the child in a new process group without a console
// window so that it outlives the command.
func detachAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{CreationFlags: windows.CREATE_NEW_PROCESS_GROUP | windows.DETACHED_PROCESS}
}

// processAlive reports whether pid is a running process. Windows does not
// expose another process's command line cheaply, so marker is not checked.
func processAlive(pid int, _ string) bool { return proc.Alive(pid) }

// stopProcess terminates pid. Windows has no SIGTERM for a detached
// console-less process, so the grace period only bounds the wait.
func stopProcess(pid int, marker string, grace time.Duration) error {
	return killProcess(pid, marker)
}

// killProcess terminates pid at once.
func killProcess(pid int, marker string) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return nil
	}
	if err := p.Kill(); err != nil && processAlive(pid, marker) {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(pid, marker) {
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d still running", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
