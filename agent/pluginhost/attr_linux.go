//go:build linux

package pluginhost

import "syscall"

// childAttr asks the kernel to kill the plugin when the agent dies.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
