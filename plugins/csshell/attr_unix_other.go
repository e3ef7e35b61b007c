//go:build unix && !linux

package csshell

import "syscall"

// setParentDeathSignal: no parent-death signal outside Linux; the shell's
// timeout still bounds its life.
func setParentDeathSignal(*syscall.SysProcAttr) {}
