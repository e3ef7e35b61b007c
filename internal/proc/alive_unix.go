//go:build !windows

package proc

import (
	"errors"
	"syscall"
)

// Alive reports whether a process with this pid exists (it may belong to
// another user, or be a zombie: callers that care check more).
func Alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
