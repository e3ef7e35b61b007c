//go:build windows

package service

import (
	"errors"
	"os/exec"
	"syscall"

	"golang.org/x/sys/windows"
)

// startDetached starts the command build returns in a new process group,
// out of the plugin's job object when there is one, so that it outlives the
// plugin and the agent. If the job forbids breaking away, it starts the
// service inside the job (it then dies with the agent) rather than not at
// all; the README tells how to allow breakaway.
func startDetached(build func() *exec.Cmd) (*exec.Cmd, error) {
	cmd := build()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		CreationFlags: windows.CREATE_NEW_PROCESS_GROUP | windows.CREATE_BREAKAWAY_FROM_JOB,
	}
	err := cmd.Start()
	if err == nil || !errors.Is(err, windows.ERROR_ACCESS_DENIED) {
		return cmd, err
	}
	retry := build()
	retry.SysProcAttr = &syscall.SysProcAttr{CreationFlags: windows.CREATE_NEW_PROCESS_GROUP}
	if retry.Start() != nil {
		return cmd, err
	}
	return retry, nil
}

// stillActive is the exit code of a process that has not exited (STILL_ACTIVE).
const stillActive = 259

// inspect opens the process: alive while its exit code is STILL_ACTIVE;
// its identity is its creation time. Windows does not expose another
// process's command line without reading its memory, so cmdline is unknown
// and the creation time alone tells the service from a recycled pid.
func inspect(pid int) procInfo {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return procInfo{}
	}
	defer windows.CloseHandle(h)
	var code uint32
	if err := windows.GetExitCodeProcess(h, &code); err != nil || code != stillActive {
		return procInfo{}
	}
	pi := procInfo{alive: true}
	var created, exited, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(h, &created, &exited, &kernel, &user); err == nil {
		pi.ident = uint64(created.HighDateTime)<<32 | uint64(created.LowDateTime)
	}
	return pi
}

// signalStop is not supported on Windows, so stop terminates at once. The
// only stop request Windows offers a console program is a console control
// event (GenerateConsoleCtrlEvent), which reaches nothing when the agent
// runs as a Windows service (no console) and, when the target group has
// just gone, is delivered to every process of the console, the agent
// included. Real Windows services use the windows backend, whose stop is a
// proper request.
func signalStop(int) error {
	return errors.New("the process backend cannot ask a process to stop on Windows")
}

// killProcess terminates the service's process (not its children: Windows
// has no process-group kill without a job object).
func killProcess(pid int) error {
	h, err := windows.OpenProcess(windows.PROCESS_TERMINATE, false, uint32(pid))
	if err != nil {
		if errors.Is(err, windows.ERROR_INVALID_PARAMETER) {
			return nil // no such process
		}
		return err
	}
	defer windows.CloseHandle(h)
	return windows.TerminateProcess(h, 1)
}

// syncDir: Windows cannot sync a directory; NTFS journals the rename.
func syncDir(string) error { return nil }
