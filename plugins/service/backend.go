package service

import (
	"context"
	"time"

	"github.com/chatdr/chatdr/pluginsdk"
)

// State is a service's state as the plugin reports it, whatever the backend.
type State string

// The states of a service.
const (
	StateRunning  State = "running"
	StateStopped  State = "stopped"
	StateStarting State = "starting"
	StateStopping State = "stopping"
	StateUnknown  State = "unknown"
)

// Status is what a backend knows of one service.
type Status struct {
	State State
	// PID is the service's main process, 0 when none or unknown.
	PID int
	// Since is when the service entered its state, zero when unknown.
	Since time.Time
	// Restarts counts the restarts the backend made by itself (process:
	// supervisor restarts; systemd: NRestarts; windows: not counted, 0).
	Restarts int
	// Detail is the backend's own word for the state (systemd
	// "failed/failed", SCM "Paused", ...), for a person.
	Detail string
}

// stopResult says what a backend's stop did besides stopping the service.
type stopResult struct {
	// Dependents are the services the backend stopped first.
	Dependents []string
	// Killed is true when the service had to be killed (grace exceeded).
	Killed bool
	// Graceful is whether a graceful stop was requested of the service.
	Graceful bool
}

// backend controls services of one kind. Names are already validated and
// allowed. Methods may be called concurrently, but never two start/stop
// calls for the same service at once (the plugin serializes them).
type backend interface {
	// kind is the backend's name as configured.
	kind() string
	// status returns the service's current state. It does not change anything.
	status(ctx context.Context, name string) (Status, error)
	// start asks the service to start. It may return before the service
	// runs; the caller waits for the running state.
	start(ctx context.Context, name string, emit pluginsdk.Emitter) error
	// stop asks the service, which runs or is starting, to stop. It may
	// return before the service has stopped; the caller waits.
	stop(ctx context.Context, name string, graceful bool, emit pluginsdk.Emitter) (stopResult, error)
	// pollInterval is how often a wait asks status.
	pollInterval() time.Duration
	// close releases the backend (stops the supervisor); services keep running.
	close()
}

// stopMarker is implemented by backends that must remember that a service
// which is not running is meant to stay stopped (the process backend's
// supervisor must not restart it).
type stopMarker interface {
	markStopped(name string) error
}

// stopResumer is implemented by backends whose "stopping" state may be
// left over from a stop nobody finishes (the process backend's escalation
// lives in the plugin process), so that stop must be requested again
// rather than waited for.
type stopResumer interface {
	resumesStop() bool
}
