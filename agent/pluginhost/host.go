// Package pluginhost starts, supervises and calls the agent's action
// plugins: each plugin is its own process, spoken to over gRPC through
// hashicorp/go-plugin with AutoMTLS. Built-in plugins are served by the
// agent's own binary re-executed as `chatdr-agent plugin NAME`; third-party
// plugins are binaries that run only when their SHA-256 is pinned.
//
// A plugin that crashed is started again on its next use. Close kills every
// plugin process; on Linux the kernel also kills them if the agent dies
// (parent-death signal), and every plugin watches the agent's pid.
package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/chatdr/chatdr/pluginsdk"
)

// Spec says how to start one plugin.
type Spec struct {
	// Env is added to the plugin's environment (KEY=VALUE).
	Env []string
	// Name is the plugin's name; its actions must be named "<Name>.<...>".
	Name string
	// Path is the executable; Args its arguments.
	Path string
	Args []string
	// SHA256 is the pinned hex digest of Path. Required unless Builtin.
	SHA256 string
	// Builtin plugins are the agent's own binary; they are not pinned.
	Builtin bool
}

// Errors of the host.
var (
	ErrNotPinned     = errors.New("plugin binary is not pinned")
	ErrHashMismatch  = errors.New("plugin binary does not match its pinned SHA-256")
	ErrUnknownPlugin = errors.New("no such plugin")
)

// Host supervises plugin processes. It is safe for concurrent use.
type Host struct {
	log    *slog.Logger
	hclog  hclog.Logger
	mu     sync.Mutex
	byName map[string]*managed
	closed bool
}

type managed struct {
	spec Spec

	mu       sync.Mutex
	client   *plugin.Client
	impl     pluginsdk.Plugin
	info     *pluginsdk.Info
	starts   int
	lastErr  error
	stderrTo io.Writer
}

// New returns a host for the given plugins; nothing is started yet.
func New(specs []Spec, log *slog.Logger, stderr io.Writer) *Host {
	h := &Host{
		log:    log,
		byName: map[string]*managed{},
		hclog: hclog.New(&hclog.LoggerOptions{
			Name: "plugin", Output: stderr, Level: hclog.Warn,
		}),
	}
	for _, s := range specs {
		h.byName[s.Name] = &managed{spec: s, stderrTo: stderr}
	}
	return h
}

// Start starts every plugin and reads its Info. It returns one error per
// plugin that could not start (the others run).
func (h *Host) Start(ctx context.Context) error {
	var errs []error
	for _, name := range h.names() {
		m := h.byName[name]
		m.mu.Lock()
		_, err := h.ensure(ctx, m)
		m.mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			h.log.Error("plugin not loaded", "plugin", name, "err", err)
		}
	}
	return errors.Join(errs...)
}

func (h *Host) names() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.byName))
	for n := range h.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Loaded describes a plugin as the agent reports it.
type Loaded struct {
	Name string
	// Info is nil when the plugin could not be started.
	Info *pluginsdk.Info
	// Err is why the plugin is not running.
	Err error
	// Starts counts the plugin's process starts (restarts are Starts-1).
	Starts int
	// PID is the plugin process's pid while it runs, else 0.
	PID int
}

// Plugins returns every plugin with its Info or its error, by name.
func (h *Host) Plugins() []Loaded {
	var out []Loaded
	for _, name := range h.names() {
		m := h.byName[name]
		m.mu.Lock()
		l := Loaded{Name: name, Info: m.info, Err: m.lastErr, Starts: m.starts}
		if m.client != nil && !m.client.Exited() {
			if rc := m.client.ReattachConfig(); rc != nil {
				l.PID = rc.Pid
			}
		}
		out = append(out, l)
		m.mu.Unlock()
	}
	return out
}

// PluginFor returns the name of the plugin offering action or probe name
// ("<plugin>.<rest>").
func PluginFor(name string) string {
	if i := strings.IndexByte(name, '.'); i > 0 {
		return name[:i]
	}
	return ""
}

// Execute runs an action in its plugin, starting the plugin again first if
// its process has exited.
func (h *Host) Execute(ctx context.Context, req *pluginsdk.Request, emit pluginsdk.Emitter) (pluginsdk.Output, error) {
	impl, err := h.get(ctx, PluginFor(req.Action))
	if err != nil {
		return nil, err
	}
	out, err := impl.Execute(ctx, req, emit)
	if err != nil {
		if ctx.Err() != nil {
			return nil, pluginsdk.AsError(ctx.Err())
		}
		return nil, h.classify(PluginFor(req.Action), err)
	}
	return out, nil
}

// Probe evaluates a probe in its plugin.
func (h *Host) Probe(ctx context.Context, name string, params pluginsdk.Params) (pluginsdk.Output, error) {
	impl, err := h.get(ctx, PluginFor(name))
	if err != nil {
		return nil, err
	}
	out, err := impl.Probe(ctx, name, params)
	if err != nil {
		if ctx.Err() != nil {
			return nil, pluginsdk.AsError(ctx.Err())
		}
		return nil, h.classify(PluginFor(name), err)
	}
	return out, nil
}

// classify turns a transport error (the plugin process died or its
// connection broke mid-call) into a retryable plugin error and discards the
// plugin's process so that the next call starts a fresh one; errors from the
// plugin itself pass unchanged.
func (h *Host) classify(name string, err error) error {
	var pe *pluginsdk.Error
	if errors.As(err, &pe) {
		return err
	}
	h.mu.Lock()
	m := h.byName[name]
	h.mu.Unlock()
	if m != nil {
		m.mu.Lock()
		if m.client != nil {
			m.client.Kill()
		}
		m.mu.Unlock()
	}
	h.log.Warn("plugin call failed in transport; the plugin process will be started again", "plugin", name, "err", err)
	return pluginsdk.Retryable("plugin_crashed", "plugin %s failed during the call: %v", name, err).
		WithHint("the plugin is started again on the next call; check the effect on the host before retrying")
}

func (h *Host) get(ctx context.Context, name string) (pluginsdk.Plugin, error) {
	h.mu.Lock()
	m, ok := h.byName[name]
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, pluginsdk.Retryable("agent_stopping", "the agent is stopping")
	}
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownPlugin, name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return h.ensure(ctx, m)
}

// ensure returns m's running plugin, starting it when needed. m.mu is held.
func (h *Host) ensure(ctx context.Context, m *managed) (pluginsdk.Plugin, error) {
	if m.client != nil && !m.client.Exited() {
		return m.impl, nil
	}
	if m.client != nil {
		m.client.Kill()
		m.client = nil
		h.log.Warn("plugin process has exited; starting it again", "plugin", m.spec.Name, "starts", m.starts)
	}
	impl, client, info, err := h.start(ctx, m.spec)
	m.starts++
	m.lastErr = err
	if err != nil {
		return nil, err
	}
	m.client, m.impl, m.info = client, impl, info
	return impl, nil
}

func (h *Host) start(ctx context.Context, s Spec) (pluginsdk.Plugin, *plugin.Client, *pluginsdk.Info, error) {
	var secure *plugin.SecureConfig
	if !s.Builtin {
		sum, err := checkPinned(s)
		if err != nil {
			return nil, nil, nil, err
		}
		secure = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Env = append(append(os.Environ(), s.Env...), pluginsdk.AgentPIDEnv+"="+strconv.Itoa(os.Getpid()))
	cmd.SysProcAttr = childAttr()
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  pluginsdk.Handshake,
		Plugins:          plugin.PluginSet{pluginsdk.PluginKey: &pluginsdk.GRPCPlugin{}},
		Cmd:              cmd,
		SecureConfig:     secure,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           h.hclog.Named(s.Name),
	})
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, nil, nil, fmt.Errorf("start plugin %s (%s): %w", s.Name, s.Path, err)
	}
	raw, err := rpc.Dispense(pluginsdk.PluginKey)
	if err != nil {
		client.Kill()
		return nil, nil, nil, fmt.Errorf("plugin %s: %w", s.Name, err)
	}
	impl := raw.(pluginsdk.Plugin)
	info, err := impl.Info(ctx)
	if err != nil {
		client.Kill()
		return nil, nil, nil, fmt.Errorf("plugin %s: Info: %w", s.Name, err)
	}
	if info.Name != s.Name {
		client.Kill()
		return nil, nil, nil, fmt.Errorf("plugin %s (%s) says its name is %q; rename the file or fix the plugin", s.Name, s.Path, info.Name)
	}
	if !slices.Contains(info.APIVersions, pluginsdk.ProtocolVersion) {
		client.Kill()
		return nil, nil, nil, fmt.Errorf("plugin %s speaks plugin protocol %v; this agent speaks %d", s.Name, info.APIVersions, pluginsdk.ProtocolVersion)
	}
	for _, a := range info.Actions {
		if PluginFor(a.Name) != s.Name {
			client.Kill()
			return nil, nil, nil, fmt.Errorf("plugin %s offers action %q outside its namespace %s.*", s.Name, a.Name, s.Name)
		}
	}
	return impl, client, info, nil
}

// checkPinned verifies the pinned digest of a third-party plugin and
// returns it as bytes.
func checkPinned(s Spec) ([]byte, error) {
	if s.SHA256 == "" {
		return nil, fmt.Errorf("%w: %s (%s); add its SHA-256 to plugins.pinned in agent.yaml to allow it", ErrNotPinned, s.Name, s.Path)
	}
	want, err := hex.DecodeString(strings.ToLower(s.SHA256))
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("plugin %s: pinned SHA-256 %q is not 64 hex digits", s.Name, s.SHA256)
	}
	got, err := FileSHA256(s.Path)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", s.Name, err)
	}
	if got != hex.EncodeToString(want) {
		return nil, fmt.Errorf("%w: %s (%s) has SHA-256 %s, pinned %s; the binary changed: check it, then pin the new digest",
			ErrHashMismatch, s.Name, s.Path, got, hex.EncodeToString(want))
	}
	return want, nil
}

// FileSHA256 returns the hex SHA-256 of a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Close kills every plugin process and refuses further calls.
func (h *Host) Close() {
	h.mu.Lock()
	h.closed = true
	ms := make([]*managed, 0, len(h.byName))
	for _, m := range h.byName {
		ms = append(ms, m)
	}
	h.mu.Unlock()
	for _, m := range ms {
		m.mu.Lock()
		if m.client != nil {
			m.client.Kill()
			m.client = nil
		}
		m.mu.Unlock()
	}
}
