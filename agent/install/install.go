// Package install registers chatdr-agent as an operating-system service:
// a Windows service (Service Control Manager, restart on failure) or a
// systemd unit on Linux. cmd/chatdr-agent's `service install|uninstall|status`
// subcommand is its only caller.
//
// The pure parts (the systemd unit text, the Windows command line and
// recovery actions, the paths the unit must let the agent write) build on
// every platform so that they are tested everywhere; the parts that touch
// the system are in install_linux.go, install_windows.go and
// install_other.go.
package install

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/chatdr/chatdr/agent"
	"github.com/chatdr/chatdr/internal/cfgfile"
)

// DefaultName is the service (and systemd unit) name used when none is given.
const DefaultName = "chatdr-agent"

// DefaultDisplayName is the Windows display name (and the systemd
// Description) used when none is given.
const DefaultDisplayName = "chatdr agent"

// DefaultDescription describes the service in the Services console and in
// systemctl status.
const DefaultDescription = "chatdr agent: executes Persistent Chat disaster-recovery actions (SQL Server, services, Management Shell) for the chatdr controller over mutual TLS."

// DefaultUnitDir is where the systemd unit is written on Linux.
const DefaultUnitDir = "/etc/systemd/system"

// ResetPeriod is the Windows failure-count reset period: after a day
// without failure the next failure is again the "first" one.
const ResetPeriod = 24 * time.Hour

// Sentinel errors; the messages wrapping them say what to do.
var (
	// ErrExists means the service or unit is already installed and Force
	// was not set.
	ErrExists = errors.New("already installed")
	// ErrNotInstalled means there is no such service or unit.
	ErrNotInstalled = errors.New("not installed")
	// ErrNotPrivileged means the operation needs root or an elevated
	// (Administrator) prompt.
	ErrNotPrivileged = errors.New("not privileged")
	// ErrBadConfig means the agent configuration file is missing or invalid.
	ErrBadConfig = errors.New("agent configuration is not usable")
	// ErrUnsupported means the platform has no service installer.
	ErrUnsupported = errors.New("service installation is not supported on this platform")
)

// Options says what to install or remove. The zero value of each optional
// field means its default.
type Options struct {
	// Name is the Windows service name or the systemd unit name (without
	// .service); default DefaultName.
	Name string
	// DisplayName is the Windows display name; default DefaultDisplayName.
	DisplayName string
	// Description is the service description; default DefaultDescription.
	Description string
	// ConfigPath is the agent configuration file (required for Install);
	// it is made absolute and loaded with the agent's own loader.
	ConfigPath string
	// Executable is the agent binary the service runs; default the running
	// binary (os.Executable, symlinks resolved).
	Executable string
	// LogFormat and LogLevel are passed to the service's command line when
	// set.
	LogFormat, LogLevel string
	// User is the account the service runs as: a Linux user name (User= in
	// the unit; default root) or a Windows account such as
	// `NT AUTHORITY\NetworkService`, `DOMAIN\user` or `DOMAIN\gmsa$`
	// (default LocalSystem).
	User string
	// PasswordFile holds the password of a Windows account that needs one
	// (not for virtual, managed or built-in accounts). Windows only.
	PasswordFile string
	// UnitDir is where the systemd unit is written; default DefaultUnitDir.
	// Linux only.
	UnitDir string
	// ReadWritePaths are extra directories the systemd unit lets the agent
	// write, besides its state_dir and the mssql plugin's roots. Linux only.
	ReadWritePaths []string
	// Force replaces an existing service or unit.
	Force bool
	// Start starts the service after installing it (Linux: systemctl
	// daemon-reload, enable, restart).
	Start bool
	// Out receives one line per thing done; nil discards them.
	Out io.Writer
	// Systemctl runs systemctl with args and returns its combined output;
	// nil runs the systemctl found in PATH (tests replace it). Linux only.
	Systemctl func(args ...string) (string, error)
}

func (o *Options) out() io.Writer {
	if o.Out == nil {
		return io.Discard
	}
	return o.Out
}

func (o *Options) name() string {
	if o.Name == "" {
		return DefaultName
	}
	return o.Name
}

// validName is what both systemd unit names and Windows service names
// accept without escaping.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,79}$`)

// checkName refuses a name that would need escaping somewhere.
func checkName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("service name %q: use letters, digits, '_', '.', '@' or '-' (at most 80, starting with a letter or digit)", name)
	}
	return nil
}

// prepared is what Install needs once the options are checked.
type prepared struct {
	name, displayName, description string
	exe                            string
	configPath                     string
	cfg                            *agent.Config
	args                           []string
}

// prepare checks the options and loads the agent configuration, so that a
// service is never registered with a configuration the agent would refuse.
func prepare(o *Options) (*prepared, error) {
	p := &prepared{name: o.name(), displayName: o.DisplayName, description: o.Description}
	if err := checkName(p.name); err != nil {
		return nil, err
	}
	if p.displayName == "" {
		p.displayName = DefaultDisplayName
	}
	if p.description == "" {
		p.description = DefaultDescription
	}
	if o.ConfigPath == "" {
		return nil, fmt.Errorf("%w: --config is required (the agent.yaml the service will run with)", ErrBadConfig)
	}
	abs, err := filepath.Abs(o.ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadConfig, err)
	}
	p.configPath = abs
	if p.cfg, err = agent.LoadConfig(abs); err != nil {
		return nil, fmt.Errorf("%w: %v; fix it and run the install again (chatdr-agent --config %s checks it too)", ErrBadConfig, err, abs)
	}
	exe := o.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find the agent binary: %w", err)
		}
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
	}
	if exe, err = filepath.Abs(exe); err != nil {
		return nil, err
	}
	if st, err := os.Stat(exe); err != nil || st.IsDir() {
		return nil, fmt.Errorf("agent binary %s: not a file the service can run", exe)
	}
	p.exe = exe
	p.args = ServiceArgs(abs, o.LogFormat, o.LogLevel)
	return p, nil
}

// ServiceArgs returns the arguments the service starts the agent with:
// --config with the absolute config path, then --log-format and
// --log-level when set.
func ServiceArgs(configPath, logFormat, logLevel string) []string {
	args := []string{"--config", configPath}
	if logFormat != "" {
		args = append(args, "--log-format", logFormat)
	}
	if logLevel != "" {
		args = append(args, "--log-level", logLevel)
	}
	return args
}

// RecoveryAction is one Windows service recovery action: restart the
// service after Delay.
type RecoveryAction struct {
	// Delay is how long the SCM waits before restarting the service.
	Delay time.Duration
}

// RecoveryActions are the Windows recovery actions for the first, second
// and subsequent failures: restart after 5s, 10s, then 30s. The failure
// count resets after ResetPeriod.
func RecoveryActions() []RecoveryAction {
	return []RecoveryAction{{Delay: 5 * time.Second}, {Delay: 10 * time.Second}, {Delay: 30 * time.Second}}
}

// WindowsCommandLine joins exe and args into one Windows command line,
// quoting each element the way CommandLineToArgvW (and Go's os.Args on
// Windows) splits it back: an element with a space, a tab or a quote, or an
// empty one, is enclosed in double quotes; a quote is escaped with a
// backslash, and backslashes that precede a quote (or the closing quote)
// are doubled.
func WindowsCommandLine(exe string, args []string) string {
	var b strings.Builder
	b.WriteString(windowsQuote(exe))
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(windowsQuote(a))
	}
	return b.String()
}

func windowsQuote(s string) string {
	if s == "" {
		return `""`
	}
	if !strings.ContainsAny(s, " \t\"") {
		// Backslashes are literal unless they precede a quote.
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	slashes := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			slashes++
		case '"':
			b.WriteString(strings.Repeat(`\`, slashes+1))
			slashes = 0
		default:
			slashes = 0
		}
		b.WriteByte(c)
	}
	b.WriteString(strings.Repeat(`\`, slashes))
	b.WriteByte('"')
	return b.String()
}

// Unit is what a systemd unit file says.
type Unit struct {
	// Description is the unit's Description=.
	Description string
	// Exec is the binary and its arguments (ExecStart=).
	Exec []string
	// User is User= (empty: root).
	User string
	// ReadWritePaths stay writable under ProtectSystem=full; a path
	// prefixed with '-' may be missing.
	ReadWritePaths []string
	// StopTimeout is TimeoutStopSec=: the agent's shutdown_grace plus
	// margin.
	StopTimeout time.Duration
}

// UnitFile renders u as a systemd service unit: restart on failure after 5s,
// SIGTERM for a graceful stop, and hardening that still lets the agent
// write its state directory and the listed paths.
func UnitFile(u Unit) string {
	var b strings.Builder
	w := func(s string) { b.WriteString(s); b.WriteByte('\n') }
	w("# Written by `chatdr-agent service install`; remove with `chatdr-agent service uninstall`.")
	w("[Unit]")
	w("Description=" + escapeSpecifiers(u.Description))
	w("Wants=network-online.target")
	w("After=network-online.target")
	w("StartLimitIntervalSec=0")
	w("")
	w("[Service]")
	w("Type=simple")
	quoted := make([]string, len(u.Exec))
	for i, a := range u.Exec {
		quoted[i] = systemdQuote(a)
	}
	w("ExecStart=" + strings.Join(quoted, " "))
	w("Restart=on-failure")
	w("RestartSec=5")
	w("KillMode=mixed")
	w("KillSignal=SIGTERM")
	w(fmt.Sprintf("TimeoutStopSec=%d", int(u.StopTimeout.Round(time.Second)/time.Second)))
	if u.User != "" {
		w("User=" + escapeSpecifiers(u.User))
	}
	w("NoNewPrivileges=yes")
	w("ProtectSystem=full")
	w("ProtectHome=read-only")
	if !underTmp(u) {
		// A private /tmp would hide a state_dir, config or binary there.
		w("PrivateTmp=yes")
	}
	w("ProtectKernelTunables=yes")
	w("ProtectKernelModules=yes")
	w("ProtectControlGroups=yes")
	w("RestrictSUIDSGID=yes")
	w("LockPersonality=yes")
	if len(u.ReadWritePaths) > 0 {
		paths := make([]string, len(u.ReadWritePaths))
		for i, p := range u.ReadWritePaths {
			paths[i] = systemdQuote(p)
		}
		w("ReadWritePaths=" + strings.Join(paths, " "))
	}
	w("")
	w("[Install]")
	w("WantedBy=multi-user.target")
	return b.String()
}

// underTmp reports whether the binary, an argument or a writable path
// lies under /tmp or /var/tmp, which PrivateTmp= would hide.
func underTmp(u Unit) bool {
	for _, p := range append(append([]string{}, u.Exec...), u.ReadWritePaths...) {
		p = strings.TrimPrefix(p, "-")
		for _, t := range []string{"/tmp", "/var/tmp"} {
			if p == t || strings.HasPrefix(p, t+"/") {
				return true
			}
		}
	}
	return false
}

// systemdQuote quotes one ExecStart= or ReadWritePaths= word: specifiers
// (%) and variable references ($) are escaped, and a word with a space,
// quote or backslash is double-quoted with C-style escapes.
func systemdQuote(s string) string {
	s = escapeSpecifiers(s)
	s = strings.ReplaceAll(s, "$", "$$")
	if s != "" && !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

func escapeSpecifiers(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// ReadWritePaths returns the directories the agent must be able to write
// under ProtectSystem=full: its state_dir, the mssql plugin's roots (the
// copy directory and backup paths it writes; prefixed '-' since a share may
// be unmounted when the unit starts) and extra, sorted and without
// duplicates. The state_dir must exist when the unit starts (Install creates
// it).
func ReadWritePaths(cfg *agent.Config, configPath string, extra []string) []string {
	state := filepath.Clean(cfg.StateDir)
	seen := map[string]bool{state: true}
	var rest []string
	add := func(p, word string) {
		if !seen[p] {
			seen[p] = true
			rest = append(rest, word)
		}
	}
	// Extra paths are required (no '-'): the operator named them.
	for _, p := range extra {
		if p != "" {
			p = filepath.Clean(cfgfile.Resolve(configPath, p))
			add(p, p)
		}
	}
	for _, r := range mssqlRoots(cfg, configPath) {
		add(r, "-"+r)
	}
	sort.Slice(rest, func(i, j int) bool { return strings.TrimPrefix(rest[i], "-") < strings.TrimPrefix(rest[j], "-") })
	return append([]string{state}, rest...)
}

// mssqlRoots reads plugin_config.mssql.roots, resolved like the plugin
// resolves them (relative to the config file). A section that does not
// decode is ignored here: the plugin reports it when it starts.
func mssqlRoots(cfg *agent.Config, configPath string) []string {
	n, ok := cfg.PluginConfig["mssql"]
	if !ok {
		return nil
	}
	var sec struct {
		Roots []string `yaml:"roots"`
	}
	if err := n.Decode(&sec); err != nil {
		return nil
	}
	var out []string
	for _, r := range sec.Roots {
		if r == "" || strings.HasPrefix(r, `\\`) {
			continue // a UNC path means nothing to a Linux unit
		}
		out = append(out, filepath.Clean(cfgfile.Resolve(configPath, r)))
	}
	return out
}

// stopTimeout is how long the service manager waits for a graceful stop:
// the agent's shutdown grace plus time to stop its plugins.
func stopTimeout(cfg *agent.Config) time.Duration {
	return time.Duration(cfg.ShutdownGrace) + 15*time.Second
}
