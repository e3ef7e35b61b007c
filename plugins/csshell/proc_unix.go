//go:build unix

package csshell

import (
	"os/exec"
	"syscall"
)

// procGroup runs the shell as the leader of a new process group, so that
// killing the group also kills what the shell started.
type procGroup struct{ pid int }

func newProcGroup(cmd *exec.Cmd) *procGroup {
	g := &procGroup{}
	attr := &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(attr)
	cmd.SysProcAttr = attr
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return g
}

func (g *procGroup) started(cmd *exec.Cmd) { g.pid = cmd.Process.Pid }

// kill kills every process left in the group (ESRCH when none is left).
func (g *procGroup) kill() {
	if g.pid > 0 {
		syscall.Kill(-g.pid, syscall.SIGKILL)
	}
}
