//go:build unix && !linux

package service

import (
	"errors"
	"syscall"
)

// inspect asks kill(pid, 0) only: without /proc the plugin cannot read
// another process's start time or argv here, so a recycled pid would be
// taken for the service. The supported hosts are Linux and Windows; this
// keeps the package building elsewhere (developer machines).
func inspect(pid int) procInfo {
	err := syscall.Kill(pid, 0)
	return procInfo{alive: err == nil || errors.Is(err, syscall.EPERM)}
}
