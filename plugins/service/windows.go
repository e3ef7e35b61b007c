//go:build windows

package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"

	"github.com/chatdr/chatdr/pluginsdk"
)

// windowsBackend drives the local service control manager (SCM). It asks
// for the least access each call needs (mgr.Connect and OpenService ask
// for all access, which only administrators get), so that status works for
// any account and start/stop for one granted those rights on the service.
//
// This file is compiled for Windows in CI but not run there.
type windowsBackend struct {
	cfg *config
}

func newWindowsBackend(cfg *config) (backend, error) { return &windowsBackend{cfg: cfg}, nil }

func (b *windowsBackend) kind() string                { return backendWindows }
func (b *windowsBackend) pollInterval() time.Duration { return 250 * time.Millisecond }
func (b *windowsBackend) close()                      {}

// open opens service name with access rights; done closes the service and
// SCM handles.
func (b *windowsBackend) open(name string, access uint32) (s *mgr.Service, done func(), err error) {
	h, err := windows.OpenSCManager(nil, nil, windows.SC_MANAGER_CONNECT)
	if err != nil {
		return nil, nil, scmError(name, "connect to the service control manager for", err)
	}
	m := &mgr.Mgr{Handle: h}
	p, err := syscall.UTF16PtrFromString(name)
	if err != nil {
		m.Disconnect()
		return nil, nil, errInvalidName(name)
	}
	sh, err := windows.OpenService(h, p, access)
	if err != nil {
		m.Disconnect()
		return nil, nil, scmError(name, "open", err)
	}
	s = &mgr.Service{Name: name, Handle: sh}
	return s, func() { s.Close(); m.Disconnect() }, nil
}

func (b *windowsBackend) status(_ context.Context, name string) (Status, error) {
	s, done, err := b.open(name, windows.SERVICE_QUERY_STATUS)
	if err != nil {
		return Status{State: StateUnknown}, err
	}
	defer done()
	q, err := s.Query()
	if err != nil {
		return Status{State: StateUnknown}, scmError(name, "query", err)
	}
	return statusOf(q), nil
}

// statusOf maps an SCM status.
func statusOf(q svc.Status) Status {
	st := Status{PID: int(q.ProcessId)}
	switch q.State {
	case svc.Running:
		st.State, st.Detail = StateRunning, "Running"
		st.Since = processStart(st.PID)
	case svc.Stopped:
		st.State, st.Detail, st.PID = StateStopped, "Stopped", 0
		switch q.Win32ExitCode {
		case 0, uint32(windows.ERROR_SERVICE_NEVER_STARTED):
		case uint32(windows.ERROR_SERVICE_SPECIFIC_ERROR):
			st.Detail = fmt.Sprintf("Stopped, service-specific exit code %d", q.ServiceSpecificExitCode)
		default:
			st.Detail = fmt.Sprintf("Stopped, exit code %d: %v", q.Win32ExitCode, syscall.Errno(q.Win32ExitCode))
		}
	case svc.StartPending:
		st.State, st.Detail = StateStarting, "StartPending"
	case svc.ContinuePending:
		st.State, st.Detail = StateStarting, "ContinuePending"
	case svc.StopPending:
		st.State, st.Detail = StateStopping, "StopPending"
	case svc.PausePending:
		st.State, st.Detail = StateUnknown, "PausePending"
	case svc.Paused:
		st.State, st.Detail = StateUnknown, "Paused"
	default:
		st.State, st.Detail = StateUnknown, fmt.Sprintf("state %d", q.State)
	}
	return st
}

// processStart is when pid started (the service's process; for a service
// sharing svchost.exe, that process's start), zero when it cannot be read.
func processStart(pid int) time.Time {
	if pid <= 0 {
		return time.Time{}
	}
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return time.Time{}
	}
	defer windows.CloseHandle(h)
	var created, exited, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(h, &created, &exited, &kernel, &user); err != nil {
		return time.Time{}
	}
	return time.Unix(0, created.Nanoseconds())
}

func (b *windowsBackend) start(_ context.Context, name string, _ pluginsdk.Emitter) error {
	s, done, err := b.open(name, windows.SERVICE_START|windows.SERVICE_QUERY_STATUS)
	if err != nil {
		return err
	}
	defer done()
	// The SCM starts the services this one depends on itself, and fails
	// with ERROR_SERVICE_DEPENDENCY_FAIL if one of them cannot start.
	if err := s.Start(); err != nil && !errors.Is(err, windows.ERROR_SERVICE_ALREADY_RUNNING) {
		return scmError(name, "start", err)
	}
	return nil
}

func (b *windowsBackend) stop(ctx context.Context, name string, graceful bool, emit pluginsdk.Emitter) (stopResult, error) {
	res := stopResult{Graceful: true} // the SCM has one way to stop a service: ask it
	if !graceful {
		emit.Log("warn", "the windows backend cannot kill a service; sending it the SCM stop control")
	}
	s, done, err := b.open(name, windows.SERVICE_STOP|windows.SERVICE_QUERY_STATUS|windows.SERVICE_ENUMERATE_DEPENDENTS)
	if err != nil {
		return res, err
	}
	defer done()
	// The SCM refuses to stop a service while services depending on it run
	// (ERROR_DEPENDENT_SERVICES_RUNNING). EnumDependentServices lists every
	// running dependent, direct or not, in the reverse of their start
	// order: the order to stop them in.
	deps, err := s.ListDependentServices(svc.Active)
	if err != nil {
		return res, scmError(name, "list the running dependents of", err)
	}
	var unmanaged []string
	for _, d := range deps {
		if _, ok := b.cfg.lookup(d); !ok {
			unmanaged = append(unmanaged, d)
		}
	}
	if len(unmanaged) > 0 {
		return res, pluginsdk.Terminal(CodeDependentNotManaged, "cannot stop %s: running services depend on it that this agent may not manage: %s", name, strings.Join(unmanaged, ", ")).
			WithHint("add them to plugin_config.service.services in agent.yaml if the agent may stop them, or stop them by hand first")
	}
	for _, d := range deps {
		emit.Log("info", fmt.Sprintf("stopping %s first: it depends on %s", d, name))
		if err := b.stopAndWait(ctx, d); err != nil {
			return res, dependencyError(err, "stop %s, which depends on %s, first", d, name)
		}
		res.Dependents = append(res.Dependents, d)
	}
	if err := control(s, name); err != nil {
		return res, err
	}
	return res, nil
}

// control sends the stop control. A service already stopped, or already
// stopping, is fine: the caller waits for Stopped.
func control(s *mgr.Service, name string) error {
	_, err := s.Control(svc.Stop)
	switch {
	case err == nil, errors.Is(err, windows.ERROR_SERVICE_NOT_ACTIVE):
		return nil
	case errors.Is(err, windows.ERROR_SERVICE_CANNOT_ACCEPT_CTRL):
		if q, qerr := s.Query(); qerr == nil && (q.State == svc.StopPending || q.State == svc.Stopped) {
			return nil
		}
	}
	return scmError(name, "stop", err)
}

// stopAndWait stops a dependent service and waits until the SCM reports it
// stopped.
func (b *windowsBackend) stopAndWait(ctx context.Context, name string) error {
	s, done, err := b.open(name, windows.SERVICE_STOP|windows.SERVICE_QUERY_STATUS)
	if err != nil {
		return err
	}
	defer done()
	if err := control(s, name); err != nil {
		return err
	}
	t := time.NewTicker(b.pollInterval())
	defer t.Stop()
	for {
		q, err := s.Query()
		if err != nil {
			return scmError(name, "query", err)
		}
		if q.State == svc.Stopped {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return ctx.Err()
			}
			return pluginsdk.Retryable(CodeTimeout, "%s did not stop in time; it is %s", name, statusOf(q).Detail).
				WithHint("the service may still stop: check service.status, then retry with a longer timeout")
		case <-t.C:
		}
	}
}

// scmError maps an SCM error to a plugin error. op is a verb phrase that
// takes the service name after it.
func scmError(name, op string, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return pluginsdk.Terminal(CodeBackendError, "%s %s: %v", op, name, err)
	}
	msg := fmt.Sprintf("%s %s: %v", op, name, err)
	switch errno {
	case windows.ERROR_ACCESS_DENIED:
		return pluginsdk.Terminal(CodeAccessDenied, "%s", msg).
			WithHint("run the agent as LocalSystem or an administrator, or grant its account start, stop and query rights on %s (sc.exe sdset)", name)
	case windows.ERROR_SERVICE_DOES_NOT_EXIST:
		return errNotFound(name, msg)
	case windows.ERROR_INVALID_NAME:
		return errInvalidName(name)
	case windows.ERROR_SERVICE_DEPENDENCY_FAIL, windows.ERROR_SERVICE_DEPENDENCY_DELETED:
		return pluginsdk.Terminal(CodeDependencyFailed, "%s", msg).
			WithHint("a service %s depends on could not start: see its dependencies (sc.exe qc %s) and the System event log", name, name)
	case windows.ERROR_SERVICE_DISABLED:
		return pluginsdk.Terminal(CodeServiceDisabled, "%s", msg).
			WithHint("set its start type to Manual or Automatic if it should run")
	case windows.ERROR_SERVICE_LOGON_FAILED:
		return pluginsdk.Terminal(CodeStartFailed, "%s", msg).
			WithHint("the service's account could not log on: check its password and the 'Log on as a service' right")
	case windows.ERROR_SERVICE_REQUEST_TIMEOUT:
		return pluginsdk.Retryable(CodeTimeout, "%s", msg).
			WithHint("the service did not answer the SCM in time; check service.status and the System event log")
	case windows.ERROR_SERVICE_DATABASE_LOCKED, windows.ERROR_SERVICE_CANNOT_ACCEPT_CTRL, windows.ERROR_DEPENDENT_SERVICES_RUNNING:
		return pluginsdk.Retryable(CodeBusy, "%s", msg).
			WithHint("the service (or the SCM) is in a transition; retry in a moment")
	case windows.ERROR_SERVICE_MARKED_FOR_DELETE:
		return pluginsdk.Terminal(CodeBackendError, "%s", msg).
			WithHint("the service is being uninstalled; close every tool holding it open (services.msc) or reboot")
	}
	return pluginsdk.Terminal(CodeBackendError, "%s", msg)
}
