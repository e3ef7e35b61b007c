package pluginhost_test

import (
	"os"
	"strconv"
	"strings"
)

// processRunning reports whether pid is a live, non-zombie process (Linux
// /proc; elsewhere it assumes the process runs while its /proc entry does).
func processRunning(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
