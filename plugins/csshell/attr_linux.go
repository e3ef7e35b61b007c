//go:build linux

package csshell

import "syscall"

// setParentDeathSignal kills the shell if the plugin process dies.
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
