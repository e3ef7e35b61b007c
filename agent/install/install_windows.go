//go:build windows

package install

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
)

// connect opens the Service Control Manager, explaining the usual cause
// of failure.
func connect() (*mgr.Mgr, error) {
	m, err := mgr.Connect()
	if errors.Is(err, windows.ERROR_ACCESS_DENIED) {
		return nil, fmt.Errorf("%w: the Service Control Manager refused access; run the command from an elevated (Run as administrator) prompt", ErrNotPrivileged)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to the Service Control Manager: %w", err)
	}
	return m, nil
}

// windowsRecoveryActions converts RecoveryActions to the SCM's type.
func windowsRecoveryActions() []mgr.RecoveryAction {
	var out []mgr.RecoveryAction
	for _, a := range RecoveryActions() {
		out = append(out, mgr.RecoveryAction{Type: mgr.ServiceRestart, Delay: a.Delay})
	}
	return out
}

// Install registers the agent as a Windows service: automatic (delayed)
// start, the running binary with --config and --service-name, the given
// account, restart on failure (RecoveryActions, also when the agent exits
// with an error rather than crashing) and an Application event-log source
// named like the service. With Force an existing service is reconfigured;
// with Start it is started.
func Install(o Options) error {
	p, err := prepare(&o)
	if err != nil {
		return err
	}
	password := ""
	if o.PasswordFile != "" {
		b, err := os.ReadFile(o.PasswordFile)
		if err != nil {
			return fmt.Errorf("password file: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	args := append(p.args, "--service-name", p.name)
	m, err := connect()
	if err != nil {
		return err
	}
	defer m.Disconnect()
	c := mgr.Config{
		DisplayName:      p.displayName,
		Description:      p.description,
		StartType:        mgr.StartAutomatic,
		DelayedAutoStart: true,
		ErrorControl:     mgr.ErrorNormal,
		ServiceStartName: o.User,
		Password:         password,
	}
	s, err := m.OpenService(p.name)
	switch {
	case err == nil && !o.Force:
		s.Close()
		return fmt.Errorf("%w: service %s exists; add --force to reconfigure it, or run `chatdr-agent service uninstall --name %s` first", ErrExists, p.name, p.name)
	case err == nil:
		old, err := s.Config()
		if err != nil {
			s.Close()
			return fmt.Errorf("read service %s: %w", p.name, err)
		}
		c.ServiceType = old.ServiceType
		c.BinaryPathName = WindowsCommandLine(p.exe, args)
		if c.ServiceStartName == "" {
			c.ServiceStartName = "LocalSystem"
		}
		if err := s.UpdateConfig(c); err != nil {
			s.Close()
			return fmt.Errorf("reconfigure service %s: %w", p.name, err)
		}
		fmt.Fprintf(o.out(), "reconfigured service %s: %s\n", p.name, c.BinaryPathName)
	default:
		s, err = m.CreateService(p.name, p.exe, c, args...)
		if err != nil {
			return fmt.Errorf("create service %s: %w", p.name, err)
		}
		fmt.Fprintf(o.out(), "created service %s: %s\n", p.name, WindowsCommandLine(p.exe, args))
	}
	defer s.Close()
	if err := s.SetRecoveryActions(windowsRecoveryActions(), uint32(ResetPeriod/time.Second)); err != nil {
		return fmt.Errorf("set recovery actions of %s: %w", p.name, err)
	}
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return fmt.Errorf("set recovery on non-crash failures of %s: %w", p.name, err)
	}
	fmt.Fprintln(o.out(), "recovery: restart after 5s, 10s, 30s; failure count reset after 1 day")
	if err := eventlog.InstallAsEventCreate(p.name, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil {
		// Already registered (a reinstall) is fine.
		if !strings.Contains(err.Error(), "registry key already exists") {
			fmt.Fprintf(o.out(), "event log source %s: %v (the agent logs nowhere when it runs as a service without it)\n", p.name, err)
		}
	} else {
		fmt.Fprintf(o.out(), "event log source %s registered (Windows Logs > Application)\n", p.name)
	}
	if !o.Start {
		fmt.Fprintf(o.out(), "start it with: sc.exe start %s   (or Start-Service %s)\n", p.name, p.name)
		return nil
	}
	if st, err := s.Query(); err == nil && st.State != svc.Stopped {
		fmt.Fprintf(o.out(), "service %s is already running; restart it to use the new configuration\n", p.name)
		return nil
	}
	if err := s.Start(); err != nil {
		return fmt.Errorf("start service %s: %w; see the Application event log (source %s)", p.name, err, p.name)
	}
	fmt.Fprintf(o.out(), "started service %s\n", p.name)
	return nil
}

// Uninstall stops the service (waiting for it to stop), deletes it and
// removes its event-log source. It refuses when the service does not exist.
func Uninstall(o Options) error {
	name := o.name()
	if err := checkName(name); err != nil {
		return err
	}
	m, err := connect()
	if err != nil {
		return err
	}
	defer m.Disconnect()
	s, err := m.OpenService(name)
	if err != nil {
		return fmt.Errorf("%w: service %s: %v", ErrNotInstalled, name, err)
	}
	defer s.Close()
	if st, err := s.Query(); err == nil && st.State != svc.Stopped {
		if _, err := s.Control(svc.Stop); err != nil {
			return fmt.Errorf("stop service %s: %w", name, err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			st, err := s.Query()
			if err != nil {
				return fmt.Errorf("query service %s: %w", name, err)
			}
			if st.State == svc.Stopped {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("service %s did not stop within 2 minutes (state %d); stop it, then run uninstall again", name, st.State)
			}
			time.Sleep(300 * time.Millisecond)
		}
		fmt.Fprintf(o.out(), "stopped service %s\n", name)
	}
	if err := s.Delete(); err != nil {
		return fmt.Errorf("delete service %s: %w", name, err)
	}
	fmt.Fprintf(o.out(), "deleted service %s (the agent's state_dir is kept)\n", name)
	if err := eventlog.Remove(name); err == nil {
		fmt.Fprintf(o.out(), "removed event log source %s\n", name)
	}
	return nil
}

// Status prints the service's state, command line, account and recovery
// actions. It returns ErrNotInstalled when the service does not exist.
func Status(o Options) error {
	name := o.name()
	if err := checkName(name); err != nil {
		return err
	}
	m, err := connect()
	if err != nil {
		return err
	}
	defer m.Disconnect()
	s, err := m.OpenService(name)
	if err != nil {
		return fmt.Errorf("%w: service %s: %v", ErrNotInstalled, name, err)
	}
	defer s.Close()
	st, err := s.Query()
	if err != nil {
		return fmt.Errorf("query service %s: %w", name, err)
	}
	fmt.Fprintf(o.out(), "service: %s\nstate:   %s\n", name, stateName(st.State))
	if c, err := s.Config(); err == nil {
		fmt.Fprintf(o.out(), "command: %s\naccount: %s\n", c.BinaryPathName, c.ServiceStartName)
	}
	if ra, err := s.RecoveryActions(); err == nil {
		var d []string
		for _, a := range ra {
			if a.Type == mgr.ServiceRestart {
				d = append(d, a.Delay.String())
			}
		}
		fmt.Fprintf(o.out(), "restart: after %s\n", strings.Join(d, ", "))
	}
	return nil
}

func stateName(s svc.State) string {
	switch s {
	case svc.Stopped:
		return "stopped"
	case svc.StartPending:
		return "start pending"
	case svc.StopPending:
		return "stop pending"
	case svc.Running:
		return "running"
	case svc.ContinuePending:
		return "continue pending"
	case svc.PausePending:
		return "pause pending"
	case svc.Paused:
		return "paused"
	}
	return fmt.Sprintf("state %d", s)
}
