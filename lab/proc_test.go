//go:build !windows

package lab_test

import (
	"os"
	"runtime"
	"strconv"
	"syscall"
)

// processExists reports whether pid names a process that has not exited
// (zombies count as exited).
func processExists(pid int) bool {
	if runtime.GOOS != "linux" {
		return syscall.Kill(pid, 0) == nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ')' {
			return i+2 < len(s) && s[i+2] != 'Z'
		}
	}
	return true
}
