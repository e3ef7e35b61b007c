//go:build !windows

package proc

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"syscall"
)

// Alive reports whether a process with this pid exists (it may belong to
// another user, or be a zombie: Running tells those apart).
func Alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Running reports whether pid is a live process that has not exited: a
// zombie (exited, not yet reaped) does not count. Where /proc is missing it
// trusts Alive.
func Running(pid int) bool {
	if !Alive(pid) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		_, statErr := os.Stat("/proc/self")
		return statErr != nil // no /proc at all
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}
