//go:build windows

package main

import (
	"context"
	"io"
	"strings"
	"time"

	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
)

// isWindowsService reports whether the Service Control Manager started
// this process.
func isWindowsService() bool {
	ok, err := svc.IsWindowsService()
	return err == nil && ok
}

// openServiceLog opens the Application event log under the source that
// `service install` registered (the service name). Each log record becomes
// one event: ERROR records are errors, WARN records warnings, the rest
// information.
func openServiceLog(source string) (io.Writer, func(), error) {
	l, err := eventlog.Open(source)
	if err != nil {
		return nil, nil, err
	}
	return eventWriter{l}, func() { l.Close() }, nil
}

// eventWriter writes each log record (slog writes one per Write) as an
// event.
type eventWriter struct{ l *eventlog.Log }

// Event IDs in the range EventCreate.exe's message file accepts (1-1000).
const (
	eventInfo    = 1
	eventWarning = 2
	eventError   = 3
)

func (w eventWriter) Write(p []byte) (int, error) {
	msg := strings.TrimRight(string(p), "\r\n")
	switch {
	case strings.Contains(msg, "level=ERROR") || strings.Contains(msg, `"level":"ERROR"`):
		_ = w.l.Error(eventError, msg)
	case strings.Contains(msg, "level=WARN") || strings.Contains(msg, `"level":"WARN"`):
		_ = w.l.Warning(eventWarning, msg)
	default:
		_ = w.l.Info(eventInfo, msg)
	}
	return len(p), nil
}

// runAsService runs the agent under the Service Control Manager until a
// Stop or Shutdown request (or until run returns on its own) and returns
// run's error.
func runAsService(name string, grace time.Duration, run func(ctx context.Context) error) error {
	h := &agentService{run: run, grace: grace}
	if err := svc.Run(name, h); err != nil {
		return err
	}
	return h.err
}

// agentService is the svc.Handler of the agent.
type agentService struct {
	run   func(ctx context.Context) error
	grace time.Duration
	err   error
}

// Execute reports Running, cancels the agent's context on Stop or
// Shutdown (the agent then stops gracefully within its shutdown grace) and
// reports the outcome: a service-specific exit code 1 when the agent
// failed, which the SCM's recovery actions treat as a failure (restart).
func (s *agentService) Execute(_ []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	running := svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	status <- running
	for {
		select {
		case err := <-done:
			return s.exit(err)
		case c := <-req:
			switch c.Cmd {
			case svc.Interrogate:
				status <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				// The wait hint covers the shutdown grace plus stopping
				// the plugins.
				status <- svc.Status{State: svc.StopPending, WaitHint: uint32((s.grace + 15*time.Second) / time.Millisecond)}
				cancel()
				return s.exit(<-done)
			default:
				status <- running
			}
		}
	}
}

func (s *agentService) exit(err error) (bool, uint32) {
	s.err = err
	if err != nil {
		return true, 1
	}
	return false, 0
}
