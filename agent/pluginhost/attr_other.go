//go:build !linux

package pluginhost

import "syscall"

// childAttr: without a parent-death signal, plugins rely on watching the
// agent's pid (pluginsdk.Serve) to exit after an agent crash.
func childAttr() *syscall.SysProcAttr { return nil }
