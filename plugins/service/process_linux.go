//go:build linux

package service

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// inspect reads /proc: a process is alive unless it is gone, a zombie or
// dead; its identity is its start time (field 22 of /proc/PID/stat, clock
// ticks after boot) and its argv (/proc/PID/cmdline).
func inspect(pid int) procInfo {
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return procInfo{}
	}
	// The command name (field 2) is in parentheses and may hold spaces
	// and parentheses itself: the fields that follow start after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return procInfo{}
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 || fields[0] == "Z" || fields[0] == "X" || fields[0] == "x" {
		return procInfo{}
	}
	pi := procInfo{alive: true}
	pi.ident, _ = strconv.ParseUint(fields[19], 10, 64) // field 22: starttime
	raw, err := os.ReadFile(dir + "/cmdline")
	if err != nil {
		return procInfo{} // exited between the two reads
	}
	raw = bytes.TrimSuffix(raw, []byte{0})
	pi.cmdline = []string{}
	if len(raw) > 0 {
		pi.cmdline = strings.Split(string(raw), "\x00")
	}
	return pi
}
