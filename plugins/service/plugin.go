// Package service is the built-in "service" action plugin: it reports,
// starts, stops and waits for the services of a host (the Persistent Chat
// service, SQL Server, the lab's simulators) through one of three backends
// chosen in agent.yaml: the Windows service control manager, systemd, or
// the plugin itself supervising configured command lines ("process", used
// by the lab and the tests).
//
// Every action checks before it acts and says in its output whether it
// changed something ("changed"), so that running it again is harmless.
// Only the services listed in plugin_config.service.services can be
// managed; any other name is refused. See README.md beside this file.
package service

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/chatdr/chatdr/pluginsdk"
)

// pluginName is the plugin's name and the prefix of its actions.
const pluginName = "service"

// Version is the plugin's version as Info reports it.
const Version = "1.0.0"

// Waits without a timeout parameter or context deadline end after this.
const defaultWait = 90 * time.Second

// New returns the service plugin. It is cheap and has no side effect: the
// configuration is read at the first call (Info, which the agent makes as
// soon as it starts the plugin process), and the process backend's
// supervisor starts then. The value also implements io.Closer: Close stops
// the supervisor and leaves the services running. Safe for concurrent use.
func New() pluginsdk.Plugin {
	return &servicePlugin{load: loadRuntime}
}

// servicePlugin implements pluginsdk.Plugin.
type servicePlugin struct {
	load func() (*runtime, error)

	mu     sync.Mutex
	rt     *runtime
	closed bool
}

// runtime is the plugin once configured.
type runtime struct {
	cfg   *config
	be    backend
	locks *keyedLocks
}

// newWithConfig returns a plugin configured with cfg (already checked);
// the tests use it to run several plugin instances in one process.
func newWithConfig(cfg *config, stateDir string) (*servicePlugin, error) {
	rt, err := newRuntime(cfg, stateDir)
	if err != nil {
		return nil, err
	}
	return &servicePlugin{rt: rt}, nil
}

// loadRuntime reads plugin_config.service from the agent's config file.
func loadRuntime() (*runtime, error) {
	var cfg config
	ac, err := pluginsdk.LoadConfig(pluginName, &cfg)
	if err != nil {
		e := pluginsdk.Terminal(CodeNotConfigured, "service plugin: %v", err)
		if errors.Is(err, pluginsdk.ErrNoAgentConfig) {
			return nil, e
		}
		return nil, e.WithHint("fix plugin_config.service in agent.yaml and restart the agent")
	}
	if cfg.Backend == "" && cfg.Services == nil {
		return nil, pluginsdk.Terminal(CodeNotConfigured, "service plugin: %s has no plugin_config.service section", ac.ConfigPath).
			WithHint("add plugin_config.service with a backend (windows, systemd or process) and the services this agent may manage")
	}
	if err := cfg.check(filepath.Dir(ac.ConfigPath), ac.StateDir); err != nil {
		return nil, pluginsdk.Terminal(CodeNotConfigured, "service plugin: %s: %v", ac.ConfigPath, err).
			WithHint("fix plugin_config.service in agent.yaml and restart the agent")
	}
	return newRuntime(&cfg, ac.StateDir)
}

func newRuntime(cfg *config, stateDir string) (*runtime, error) {
	var be backend
	var err error
	locks := newKeyedLocks()
	switch cfg.Backend {
	case backendProcess:
		be, err = newProcessBackend(cfg, stateDir, locks)
	case backendSystemd:
		be, err = newSystemdBackend(cfg)
	case backendWindows:
		be, err = newWindowsBackend(cfg)
	default:
		err = pluginsdk.Terminal(CodeNotConfigured, "unknown backend %q", cfg.Backend)
	}
	if err != nil {
		return nil, err
	}
	return &runtime{cfg: cfg, be: be, locks: locks}, nil
}

// runtime returns the configured plugin, loading the configuration on
// first use. A failed load is retried on the next call.
func (p *servicePlugin) runtime() (*runtime, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, pluginsdk.Retryable("plugin_closed", "the service plugin is shutting down")
	}
	if p.rt != nil {
		return p.rt, nil
	}
	rt, err := p.load()
	if err != nil {
		return nil, err
	}
	p.rt = rt
	return rt, nil
}

// Close stops the process backend's supervisor. Services keep running: a
// new plugin instance adopts them from their state files.
func (p *servicePlugin) Close() error {
	p.mu.Lock()
	rt := p.rt
	p.closed = true
	p.mu.Unlock()
	if rt != nil {
		rt.be.close()
	}
	return nil
}

var (
	paramName = pluginsdk.ParamSpec{Name: "name", Type: pluginsdk.TypeString, Required: true,
		Description: "the service's short name as listed in plugin_config.service.services (e.g. RTCCHAT)"}
	paramTimeout = pluginsdk.ParamSpec{Name: "timeout", Type: pluginsdk.TypeString,
		Description: "how long to wait for the final state, as a Go duration (e.g. 90s); default: the action's timeout"}
)

var actionSpecs = []pluginsdk.ActionSpec{
	{Name: "service.status", Description: "Report a service's state (running, stopped, starting, stopping, unknown), pid, since when, restarts.",
		Params: []pluginsdk.ParamSpec{paramName}, ReadOnly: true, Idempotent: true, DefaultTimeout: 30 * time.Second},
	{Name: "service.start", Description: "Start a service (its depends_on first) and wait until it runs; a running service is left alone (changed: false).",
		Params: []pluginsdk.ParamSpec{paramName, paramTimeout}, Idempotent: true, DefaultTimeout: 2 * time.Minute},
	{Name: "service.stop", Description: "Stop a service (the services depending on it first) and wait until it has stopped; a stopped service is left alone (changed: false).",
		Params: []pluginsdk.ParamSpec{paramName, paramTimeout,
			{Name: "graceful", Type: pluginsdk.TypeBool, Description: "ask the service to stop and give it its grace period (default true); false kills it at once (process and systemd backends)"}},
		Idempotent: true, DefaultTimeout: 2 * time.Minute},
	{Name: "service.wait", Description: "Wait until a service is in the given state (running or stopped).",
		Params: []pluginsdk.ParamSpec{paramName, paramTimeout,
			{Name: "state", Type: pluginsdk.TypeString, Required: true, Description: "running or stopped"}},
		ReadOnly: true, Idempotent: true, DefaultTimeout: 10 * time.Minute},
	{Name: "service.list", Description: "List the services this agent may manage, with their dependencies.",
		ReadOnly: true, Idempotent: true, DefaultTimeout: 10 * time.Second},
}

// Info describes the plugin. It also loads the configuration (reading
// agent.yaml only) so that the supervisor of the process backend runs from
// the moment the agent starts the plugin; a bad configuration is reported
// by the actions, not here.
func (p *servicePlugin) Info(context.Context) (*pluginsdk.Info, error) {
	_, _ = p.runtime()
	return &pluginsdk.Info{
		Name: pluginName, Version: Version, APIVersions: []uint32{pluginsdk.ProtocolVersion},
		Actions: slices.Clone(actionSpecs),
		Probes: []pluginsdk.ProbeSpec{{Name: "service.states",
			Description: "every configured service's state, pid, since and restarts"}},
	}, nil
}

// Execute runs one action.
func (p *servicePlugin) Execute(ctx context.Context, req *pluginsdk.Request, emit pluginsdk.Emitter) (pluginsdk.Output, error) {
	idx := slices.IndexFunc(actionSpecs, func(a pluginsdk.ActionSpec) bool { return a.Name == req.Action })
	if idx < 0 {
		return nil, pluginsdk.Terminal(CodeUnknownAction, "the service plugin does not offer %q", req.Action)
	}
	// The agent validated already; a direct caller may not have.
	if err := actionSpecs[idx].Validate(req.Params); err != nil {
		return nil, pluginsdk.Terminal(CodeBadParams, "%v", err)
	}
	rt, err := p.runtime()
	if err != nil {
		return nil, err
	}
	if req.Action == "service.list" {
		return rt.list(), nil
	}
	name, err := rt.name(req.Params)
	if err != nil {
		return nil, err
	}
	switch req.Action {
	case "service.status":
		st, err := rt.be.status(ctx, name)
		if err != nil {
			return nil, err
		}
		return rt.output(name, st, false), nil
	case "service.start":
		wctx, cancel, err := waitContext(ctx, req.Params)
		if err != nil {
			return nil, err
		}
		defer cancel()
		return rt.start(wctx, name, emit)
	case "service.stop":
		wctx, cancel, err := waitContext(ctx, req.Params)
		if err != nil {
			return nil, err
		}
		defer cancel()
		graceful := true
		if g, ok := req.Params["graceful"].(bool); ok {
			graceful = g
		}
		return rt.stop(wctx, name, graceful, emit)
	case "service.wait":
		want := State(fmt.Sprint(req.Params["state"]))
		if want != StateRunning && want != StateStopped {
			return nil, pluginsdk.Terminal(CodeBadParams, "service.wait: state %q: want running or stopped", want)
		}
		wctx, cancel, err := waitContext(ctx, req.Params)
		if err != nil {
			return nil, err
		}
		defer cancel()
		began := time.Now()
		st, err := rt.waitFor(wctx, name, []State{want}, false)
		if err != nil {
			return nil, err
		}
		out := rt.output(name, st, false)
		out["waited"] = time.Since(began).Round(time.Millisecond).String()
		return out, nil
	}
	return nil, pluginsdk.Terminal(CodeUnknownAction, "the service plugin does not offer %q", req.Action)
}

// Probe evaluates service.states.
func (p *servicePlugin) Probe(ctx context.Context, name string, _ pluginsdk.Params) (pluginsdk.Output, error) {
	if name != "service.states" {
		return nil, pluginsdk.Terminal(CodeUnknownProbe, "the service plugin does not offer probe %q", name)
	}
	rt, err := p.runtime()
	if err != nil {
		return nil, err
	}
	services := []any{}
	for _, n := range rt.cfg.names() {
		st, err := rt.be.status(ctx, n)
		if err != nil {
			o := rt.output(n, Status{State: StateUnknown}, false)
			delete(o, "changed")
			o["error"] = pluginsdk.AsError(err).Error()
			services = append(services, map[string]any(o))
			continue
		}
		o := rt.output(n, st, false)
		delete(o, "changed")
		services = append(services, map[string]any(o))
	}
	return pluginsdk.Output{"backend": rt.be.kind(), "services": services}, nil
}

// name returns the validated, allowed, canonical service name of params.
func (rt *runtime) name(params pluginsdk.Params) (string, error) {
	raw, _ := params["name"].(string)
	if !validName(raw) {
		return "", errInvalidName(raw)
	}
	name, ok := rt.cfg.lookup(raw)
	if !ok {
		return "", errUnknownService(raw, rt.be.kind())
	}
	return name, nil
}

// waitContext bounds ctx by the timeout parameter, or by defaultWait when
// neither the parameter nor ctx sets a limit.
func waitContext(ctx context.Context, params pluginsdk.Params) (context.Context, context.CancelFunc, error) {
	if s, ok := params["timeout"].(string); ok && s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, nil, pluginsdk.Terminal(CodeBadParams, "timeout %q is not a positive Go duration (e.g. 90s)", s)
		}
		c, cancel := context.WithTimeout(ctx, d)
		return c, cancel, nil
	}
	if _, ok := ctx.Deadline(); ok {
		c, cancel := context.WithCancel(ctx)
		return c, cancel, nil
	}
	c, cancel := context.WithTimeout(ctx, defaultWait)
	return c, cancel, nil
}

// output renders a status as an action's output.
func (rt *runtime) output(name string, st Status, changed bool) pluginsdk.Output {
	out := pluginsdk.Output{
		"name": name, "state": string(st.State), "pid": float64(st.PID), "since": "",
		"restarts": float64(st.Restarts), "backend": rt.be.kind(), "changed": changed,
	}
	if !st.Since.IsZero() {
		out["since"] = st.Since.UTC().Format(time.RFC3339Nano)
	}
	if st.Detail != "" {
		out["detail"] = st.Detail
	}
	return out
}

// list renders service.list.
func (rt *runtime) list() pluginsdk.Output {
	services := []any{}
	for _, n := range rt.cfg.names() {
		s := rt.cfg.Services[n]
		deps := []any{}
		for _, d := range s.DependsOn {
			deps = append(deps, d)
		}
		e := map[string]any{"name": n, "depends_on": deps}
		if rt.cfg.Backend == backendProcess {
			e["restart"] = s.Restart
		}
		services = append(services, e)
	}
	return pluginsdk.Output{"backend": rt.be.kind(), "services": services, "changed": false}
}

// start starts name's dependencies, then name.
func (rt *runtime) start(ctx context.Context, name string, emit pluginsdk.Emitter) (pluginsdk.Output, error) {
	started := []any{}
	for _, d := range rt.cfg.dependencies(name) {
		changed, _, err := rt.ensureRunning(ctx, d, emit)
		if err != nil {
			return nil, dependencyError(err, "start %s, which %s depends on", d, name)
		}
		if changed {
			started = append(started, d)
		}
	}
	changed, st, err := rt.ensureRunning(ctx, name, emit)
	if err != nil {
		return nil, err
	}
	out := rt.output(name, st, changed || len(started) > 0)
	out["started_dependencies"] = started
	return out, nil
}

// stop stops the services depending on name, then name.
func (rt *runtime) stop(ctx context.Context, name string, graceful bool, emit pluginsdk.Emitter) (pluginsdk.Output, error) {
	stopped := []any{}
	for _, d := range rt.cfg.dependents(name) {
		changed, _, _, err := rt.ensureStopped(ctx, d, graceful, emit)
		if err != nil {
			return nil, dependencyError(err, "stop %s, which depends on %s, first", d, name)
		}
		if changed {
			stopped = append(stopped, d)
		}
	}
	changed, st, res, err := rt.ensureStopped(ctx, name, graceful, emit)
	if err != nil {
		return nil, err
	}
	for _, d := range res.Dependents {
		stopped = append(stopped, d)
	}
	out := rt.output(name, st, changed || len(stopped) > 0)
	out["stopped_dependents"] = stopped
	out["killed"] = res.Killed
	out["graceful"] = res.Graceful
	return out, nil
}

// dependencyError prefixes err's message with the dependency step that
// failed, keeping its code and retryability.
func dependencyError(err error, format string, a ...any) error {
	e := *pluginsdk.AsError(err)
	e.Message = "could not " + fmt.Sprintf(format, a...) + ": " + e.Message
	return &e
}

// ensureRunning starts name unless it runs, and waits until it runs. It
// reports whether it started it.
func (rt *runtime) ensureRunning(ctx context.Context, name string, emit pluginsdk.Emitter) (bool, Status, error) {
	unlock, err := rt.locks.lock(ctx, name)
	if err != nil {
		return false, Status{}, err
	}
	defer unlock()
	st, err := rt.be.status(ctx, name)
	if err != nil {
		return false, st, err
	}
	switch st.State {
	case StateRunning:
		emit.Log("info", name+" already runs")
		return false, st, nil
	case StateStarting:
		emit.Log("info", name+" is starting; waiting until it runs")
		st, err = rt.waitFor(ctx, name, []State{StateRunning}, true)
		return false, st, err
	case StateStopping:
		emit.Log("info", name+" is stopping; waiting until it has stopped to start it again")
		if st, err = rt.waitFor(ctx, name, []State{StateStopped}, false); err != nil {
			return false, st, err
		}
	case StateUnknown:
		return false, st, unexpectedState(name, st, "start")
	}
	emit.Log("info", "starting "+name)
	if err := rt.be.start(ctx, name, emit); err != nil {
		return false, st, err
	}
	st, err = rt.waitFor(ctx, name, []State{StateRunning}, true)
	if err != nil {
		return true, st, err
	}
	emit.Log("info", fmt.Sprintf("%s runs (pid %d)", name, st.PID))
	return true, st, nil
}

// ensureStopped stops name unless it is stopped, and waits until it has
// stopped. It reports whether it stopped it.
func (rt *runtime) ensureStopped(ctx context.Context, name string, graceful bool, emit pluginsdk.Emitter) (bool, Status, stopResult, error) {
	res := stopResult{Graceful: graceful}
	unlock, err := rt.locks.lock(ctx, name)
	if err != nil {
		return false, Status{}, res, err
	}
	defer unlock()
	st, err := rt.be.status(ctx, name)
	if err != nil {
		return false, st, res, err
	}
	switch st.State {
	case StateStarting:
		// Most service managers refuse to stop a service half-started.
		emit.Log("info", name+" is starting; waiting for it to settle before stopping it")
		if st, err = rt.waitFor(ctx, name, []State{StateRunning, StateStopped}, false); err != nil {
			return false, st, res, err
		}
	case StateStopping:
		if r, ok := rt.be.(stopResumer); !ok || !r.resumesStop() {
			emit.Log("info", name+" is already stopping; waiting until it has stopped")
			st, err = rt.waitFor(ctx, name, []State{StateStopped}, false)
			return false, st, res, err
		}
		// The stop may have been begun by a plugin process that died
		// before it could kill the service: begin it again.
	case StateUnknown:
		return false, st, res, unexpectedState(name, st, "stop")
	}
	if st.State == StateStopped {
		if m, ok := rt.be.(stopMarker); ok {
			if err := m.markStopped(name); err != nil {
				return false, st, res, err
			}
		}
		emit.Log("info", name+" is already stopped")
		return false, st, res, nil
	}
	emit.Log("info", fmt.Sprintf("stopping %s (pid %d)", name, st.PID))
	res, err = rt.be.stop(ctx, name, graceful, emit)
	if err != nil {
		return false, st, res, err
	}
	st, err = rt.waitFor(ctx, name, []State{StateStopped}, false)
	if err != nil {
		return true, st, res, err
	}
	emit.Log("info", name+" has stopped")
	return true, st, res, nil
}

func unexpectedState(name string, st Status, verb string) error {
	return pluginsdk.Terminal(CodeUnexpectedState, "cannot %s %s: it is in a state the plugin does not handle (%s)", verb, name, st.Detail).
		WithHint("look at the service on the host and bring it to running or stopped by hand")
}

// waitFor polls name until it is in one of want. With failOnStopped (the
// service has just been started) a stopped service fails the wait at once.
func (rt *runtime) waitFor(ctx context.Context, name string, want []State, failOnStopped bool) (Status, error) {
	t := time.NewTicker(rt.be.pollInterval())
	defer t.Stop()
	var last Status
	for {
		st, err := rt.be.status(ctx, name)
		if err != nil {
			if ctx.Err() != nil {
				return last, waitError(ctx, name, want, last)
			}
			return st, err
		}
		last = st
		if slices.Contains(want, st.State) {
			return st, nil
		}
		if failOnStopped && st.State == StateStopped {
			msg := name + " stopped right after it was started"
			if st.Detail != "" {
				msg += " (" + st.Detail + ")"
			}
			if fc, ok := rt.be.(interface{ failureContext(string) string }); ok {
				msg += fc.failureContext(name)
			}
			return st, pluginsdk.Terminal(CodeStartFailed, "%s", msg).WithHint("%s", rt.logHint(name))
		}
		select {
		case <-ctx.Done():
			return last, waitError(ctx, name, want, last)
		case <-t.C:
		}
	}
}

// logHint says where to look when name fails.
func (rt *runtime) logHint(name string) string {
	switch rt.cfg.Backend {
	case backendProcess:
		return "read its log " + rt.cfg.Services[name].Log
	case backendSystemd:
		return "read journalctl -u " + name
	default:
		return "read the System event log (Service Control Manager) and the service's own log"
	}
}

// waitError is the error of a wait that ended with ctx.
func waitError(ctx context.Context, name string, want []State, last Status) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err()
	}
	state := string(last.State)
	if state == "" {
		state = "not known"
	}
	return pluginsdk.Retryable(CodeTimeout, "%s did not become %s in time; it is %s", name, joinStates(want), state).
		WithHint("the service may still get there: check service.status, then retry with a longer timeout")
}

func joinStates(s []State) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " or "
		}
		out += string(x)
	}
	return out
}

// keyedLocks serializes operations per service name. The locks are
// channels so that waiting for one honours a context.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

func newKeyedLocks() *keyedLocks { return &keyedLocks{m: map[string]chan struct{}{}} }

func (k *keyedLocks) get(name string) chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	ch, ok := k.m[name]
	if !ok {
		ch = make(chan struct{}, 1)
		k.m[name] = ch
	}
	return ch
}

// lock takes name's lock, or fails when ctx ends first.
func (k *keyedLocks) lock(ctx context.Context, name string) (func(), error) {
	ch := k.get(name)
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, ctx.Err()
		}
		return nil, pluginsdk.Retryable(CodeBusy, "another operation on %s did not finish in time", name).
			WithHint("retry once the other start or stop has finished")
	}
}

// tryLock takes name's lock if it is free.
func (k *keyedLocks) tryLock(name string) (func(), bool) {
	ch := k.get(name)
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, true
	default:
		return nil, false
	}
}
