//go:build windows

package proc

import "golang.org/x/sys/windows"

// Alive reports whether the process with this pid is still running.
func Alive(pid int) bool {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return false
	}
	defer windows.CloseHandle(h)
	var code uint32
	if err := windows.GetExitCodeProcess(h, &code); err != nil {
		return false
	}
	return code == 259 // STILL_ACTIVE
}

// Running is Alive: Windows has no zombies.
func Running(pid int) bool { return Alive(pid) }
