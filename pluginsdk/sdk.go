// Package pluginsdk is the only package an action-plugin author imports.
//
// An action plugin is a separate process that the chatdr agent starts and
// talks to over gRPC through hashicorp/go-plugin (mutual TLS negotiated
// automatically, AutoMTLS). The plugin implements the Plugin interface with
// plain Go types and calls Serve from its main; it never sees protobuf or
// gRPC types.
//
//	func main() { pluginsdk.Serve(myPlugin{}) }
//
// A plugin declares the actions and probes it offers in Info, each action
// with its parameter schema and its safety class (read-only, idempotent,
// destructive). The agent validates parameters against the schema before
// calling Execute, runs an action at most once per idempotency key (its
// journal, not the plugin, deduplicates), and cancels the context passed to
// Execute on timeout; the plugin must then stop promptly.
//
// Errors: return an *Error to say whether retrying can help (Retryable) and
// what the operator should do (Hint). Any other error is reported as a
// terminal error with code "internal".
package pluginsdk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ProtocolVersion is the plugin protocol version this SDK speaks. It is the
// go-plugin handshake's ProtocolVersion: a plugin and an agent that disagree
// refuse each other at start-up with a clear message.
//
// History:
//
//	1 — Info, Execute (stream of progress / log / result), Probe. First version.
//
// New optional features are added as capabilities in Info, not as version
// bumps; the version changes only when an old agent could misunderstand a
// new plugin.
const ProtocolVersion = 1

// Plugin is what an action plugin implements. Methods may be called
// concurrently.
type Plugin interface {
	// Info describes the plugin. It must be cheap and must not touch the
	// managed system.
	Info(ctx context.Context) (*Info, error)
	// Execute runs one action. It reports progress and log lines through
	// emit and returns the action's output or an error. ctx is cancelled on
	// timeout or when the agent stops; the action must stop promptly then.
	Execute(ctx context.Context, req *Request, emit Emitter) (Output, error)
	// Probe evaluates one read-only probe.
	Probe(ctx context.Context, name string, params Params) (Output, error)
}

// Params are an action's or probe's parameters: JSON-like values (string,
// float64, bool, nil, []any, map[string]any).
type Params map[string]any

// Output is an action's or probe's result, JSON-like like Params.
type Output map[string]any

// Request is one action to execute.
type Request struct {
	// Action is the fully qualified action name.
	Action string
	// Params are validated against the action's ParamSpecs before the call.
	Params Params
	// Timeout is the time the action has; ctx carries the same deadline.
	Timeout time.Duration
	// IdempotencyKey is the agent's key for this execution: stable across
	// retries of the same step, handy to name temporary files.
	IdempotencyKey string
}

// Emitter receives an action's progress and log lines. Safe for concurrent use.
type Emitter interface {
	// Progress reports done of total units (total 0 = unknown) of stage.
	Progress(stage string, done, total int64, unit string)
	// Log reports a line at level debug, info, warn or error.
	Log(level, msg string)
}

// Info describes a plugin.
type Info struct {
	Name    string
	Version string
	// APIVersions are the plugin protocol versions the plugin speaks.
	APIVersions []uint32
	Actions     []ActionSpec
	Probes      []ProbeSpec
}

// ActionSpec describes one action.
type ActionSpec struct {
	// Name is fully qualified: "<plugin>.<action>", e.g. "mssql.db.recover".
	Name        string
	Description string
	Params      []ParamSpec
	// ReadOnly actions only read state.
	ReadOnly bool
	// Idempotent actions have the effect of one run when run twice.
	Idempotent bool
	// Destructive actions can lose data or cannot be undone.
	Destructive bool
	// DefaultTimeout applies when the request names none.
	DefaultTimeout time.Duration
}

// Parameter types of a ParamSpec.
const (
	TypeString = "string"
	TypeNumber = "number"
	TypeBool   = "bool"
	TypeList   = "list"
	TypeObject = "object"
)

// ParamSpec describes one parameter.
type ParamSpec struct {
	Name        string
	Type        string
	Required    bool
	Description string
}

// ProbeSpec describes one probe.
type ProbeSpec struct {
	Name        string
	Description string
}

// Action returns the spec of the named action, if offered.
func (in *Info) Action(name string) (ActionSpec, bool) {
	for _, a := range in.Actions {
		if a.Name == name {
			return a, true
		}
	}
	return ActionSpec{}, false
}

// ErrInvalidParams is wrapped by Validate's errors.
var ErrInvalidParams = errors.New("invalid parameters")

// Validate checks p against the spec: every required parameter present, no
// unknown parameter, each value of its declared type.
func (a ActionSpec) Validate(p Params) error {
	var problems []string
	known := map[string]ParamSpec{}
	for _, ps := range a.Params {
		known[ps.Name] = ps
		if _, ok := p[ps.Name]; ps.Required && !ok {
			problems = append(problems, fmt.Sprintf("%s is required", ps.Name))
		}
	}
	names := make([]string, 0, len(p))
	for k := range p {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		ps, ok := known[k]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s is not a parameter of %s", k, a.Name))
			continue
		}
		if v := p[k]; v != nil && !hasType(v, ps.Type) {
			problems = append(problems, fmt.Sprintf("%s must be a %s, got %T", k, ps.Type, v))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w for %s: %s", ErrInvalidParams, a.Name, joinSentences(problems))
	}
	return nil
}

func hasType(v any, typ string) bool {
	switch typ {
	case TypeString:
		_, ok := v.(string)
		return ok
	case TypeNumber:
		switch v.(type) {
		case float64, float32, int, int32, int64, uint32, uint64:
			return true
		}
		return false
	case TypeBool:
		_, ok := v.(bool)
		return ok
	case TypeList:
		_, ok := v.([]any)
		return ok
	case TypeObject:
		_, ok := v.(map[string]any)
		return ok
	default:
		return true
	}
}

func joinSentences(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += "; "
		}
		out += s
	}
	return out
}

// Error is an action or probe error that says whether a retry can help.
type Error struct {
	// Code is stable and machine-readable (e.g. "sql_4305", "share_unreadable").
	Code string
	// Message says what went wrong, for a person.
	Message string
	// Retryable is true when the same request may succeed later.
	Retryable bool
	// Hint says what the operator can do.
	Hint string
}

// Error returns the message (and the hint, when there is one).
func (e *Error) Error() string {
	if e.Hint != "" {
		return e.Message + " (" + e.Hint + ")"
	}
	return e.Message
}

// Retryable returns a retryable *Error.
func Retryable(code, format string, a ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, a...), Retryable: true}
}

// Terminal returns a terminal *Error.
func Terminal(code, format string, a ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, a...)}
}

// WithHint returns e with its hint set.
func (e *Error) WithHint(format string, a ...any) *Error {
	e.Hint = fmt.Sprintf(format, a...)
	return e
}

// AsError returns err as an *Error: itself when it is one (or wraps one),
// else a terminal error with code "internal" (or "cancelled"/"timeout" for
// context errors, which are retryable).
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: "timeout", Message: err.Error(), Retryable: true}
	case errors.Is(err, context.Canceled):
		return &Error{Code: "cancelled", Message: err.Error(), Retryable: true}
	}
	return &Error{Code: "internal", Message: err.Error()}
}

// DiscardEmitter drops every event.
type DiscardEmitter struct{}

// Progress drops the event.
func (DiscardEmitter) Progress(string, int64, int64, string) {}

// Log drops the event.
func (DiscardEmitter) Log(string, string) {}
