// Package csshell is chatdr's built-in "csshell" action plugin: it runs the
// Lync Server 2013 / Skype for Business Server 2015 Management Shell
// cmdlets of the Persistent Chat failover and failback procedures
// (domain.md §2, §3) through a configured PowerShell executable. Every
// call is one script,
//
//	$ErrorActionPreference='Stop'; Import-Module '<module>'; <cmdlet> <params> | ConvertTo-Json -Depth 5 -Compress
//
// passed as the last argument of plugin_config.csshell.powershell; every
// value is validated and/or a single-quoted literal, so no value can inject
// script. Output is read from the JSON; an error record becomes a
// pluginsdk.Error with a stable code and the cmdlet's message. README.md
// lists the actions, the configuration and what is UNVERIFIED against a
// real deployment.
package csshell

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/chatdr/chatdr/pluginsdk"
)

// Name is the plugin's name (and the prefix-free key of its config).
const Name = "csshell"

// Version is the plugin's version.
const Version = "1.0.0"

// EnvServer names the variable through which the shell learns which chat
// server it runs on. Real PowerShell ignores it; the Management Shell
// simulator uses it for -LocalStore and the Cs*WindowsService cmdlets.
const EnvServer = "CHATDR_CS_SERVER"

// plugin implements pluginsdk.Plugin. It is safe for concurrent use: each
// call runs its own shell process.
type plugin struct {
	once sync.Once
	cfg  Config
	host string
	err  error
	// load reads the configuration; New uses pluginsdk.LoadConfig.
	load func() (Config, pluginsdk.AgentContext, error)
}

// New returns the csshell plugin. Its configuration
// (plugin_config.csshell of the agent's config file) is read on first use.
func New() pluginsdk.Plugin {
	return &plugin{load: func() (Config, pluginsdk.AgentContext, error) {
		var c Config
		ac, err := pluginsdk.LoadConfig(Name, &c)
		return c, ac, err
	}}
}

// newWithConfig returns a plugin with a fixed configuration (tests).
func newWithConfig(c Config, host string) *plugin {
	return &plugin{load: func() (Config, pluginsdk.AgentContext, error) {
		return c, pluginsdk.AgentContext{Host: host}, nil
	}}
}

func (p *plugin) config() (Config, string, error) {
	p.once.Do(func() {
		c, ac, err := p.load()
		if err != nil {
			p.err = err
			return
		}
		p.cfg, p.err = c.withDefaults()
		p.host = ac.Host
		if p.host == "" {
			p.host, _ = os.Hostname()
		}
	})
	if p.err != nil {
		return Config{}, "", pluginsdk.Terminal("not_configured", "csshell: %v", p.err).WithHint("fix plugin_config.csshell in the agent's configuration")
	}
	return p.cfg, p.host, nil
}

// ActionPrefix starts every action and probe name. The agent's plugin host
// routes "<plugin>.<rest>" to the plugin named <plugin>, so the cs.* names
// of the issue are offered as csshell.cs.*, the way the mssql plugin offers
// mssql.ls.*.
const ActionPrefix = Name + ".cs."

// Action and probe names.
const (
	actGetState         = ActionPrefix + "get_state"
	actSetState         = ActionPrefix + "set_state"
	actGetActiveServers = ActionPrefix + "get_active_servers"
	actSetActiveServers = ActionPrefix + "set_active_servers"
	actResolveIdentity  = ActionPrefix + "resolve_identity"
	actInstallMirror    = ActionPrefix + "install_mirror"
	actUninstallMirror  = ActionPrefix + "uninstall_mirror"
	actTestMessage      = ActionPrefix + "test_message"
	actWindowsService   = ActionPrefix + "windows_service"
	probePoolState      = ActionPrefix + "pool_state"
	probeActiveServers  = ActionPrefix + "active_servers"
)

func (p *plugin) Info(context.Context) (*pluginsdk.Info, error) {
	identity := pluginsdk.ParamSpec{Name: "identity", Type: pluginsdk.TypeString, Description: "pool identity; default plugin_config.csshell.identity"}
	activeIdentity := pluginsdk.ParamSpec{Name: "identity", Type: pluginsdk.TypeString, Description: "Set-CsPersistentChatActiveServer identity; default plugin_config.csshell.active_server_identity"}
	dbType := pluginsdk.ParamSpec{Name: "database_type", Type: pluginsdk.TypeString, Description: "PersistentChat (default, mgc) or PersistentChatCompliance (mgccomp)"}
	sqlFQDN := pluginsdk.ParamSpec{Name: "sql_server_fqdn", Type: pluginsdk.TypeString, Required: true, Description: "the primary SQL store (the principal) whose mirror is meant, as in the topology"}
	instance := pluginsdk.ParamSpec{Name: "sql_instance_name", Type: pluginsdk.TypeString, Description: "SQL instance name (default instance when absent)"}
	drop := pluginsdk.ParamSpec{Name: "drop_existing", Type: pluginsdk.TypeBool, Description: "-DropExistingDatabasesOnMirror"}
	return &pluginsdk.Info{
		Name: Name, Version: Version, APIVersions: []uint32{pluginsdk.ProtocolVersion},
		Actions: []pluginsdk.ActionSpec{
			{Name: actGetState, Description: "Get-CsPersistentChatState: the pool state (Normal or FailedOver), central or from this server's local store",
				ReadOnly: true, Idempotent: true, DefaultTimeout: 3 * time.Minute, Params: []pluginsdk.ParamSpec{
					identity,
					{Name: "local_store", Type: pluginsdk.TypeBool, Description: "read the local replica of the CMS (-LocalStore) instead of the central store"},
					{Name: "server", Type: pluginsdk.TypeString, Description: "simulator only: whose local store to read (the real cmdlet reads the local store of the host it runs on)"},
				}},
			{Name: actSetState, Description: "Set-CsPersistentChatState -PoolState (domain F5, B7); reads first and changes only what differs",
				Idempotent: true, DefaultTimeout: 5 * time.Minute, Params: []pluginsdk.ParamSpec{
					{Name: "state", Type: pluginsdk.TypeString, Required: true, Description: "Normal or FailedOver"},
					identity,
				}},
			{Name: actGetActiveServers, Description: "the active server list (reading it is UNVERIFIED on real Lync/SfB; see README)",
				ReadOnly: true, Idempotent: true, DefaultTimeout: 3 * time.Minute, Params: []pluginsdk.ParamSpec{activeIdentity}},
			{Name: actSetActiveServers, Description: "Set-CsPersistentChatActiveServer -ActiveServers (domain F7, B1, B6): clear, add, remove or set; refuses more than 4 active servers; reads first and changes only what differs",
				Idempotent: true, DefaultTimeout: 5 * time.Minute, Params: []pluginsdk.ParamSpec{
					{Name: "mode", Type: pluginsdk.TypeString, Required: true, Description: "clear, add, remove or set (exactly these servers)"},
					{Name: "servers", Type: pluginsdk.TypeList, Description: "chat server FQDNs"},
					activeIdentity,
				}},
			{Name: actResolveIdentity, Description: "Get-CsService -PersistentChatServer: the pool identities the topology knows",
				ReadOnly: true, Idempotent: true, DefaultTimeout: 3 * time.Minute},
			{Name: actInstallMirror, Description: "Install-CsMirrorDatabase -DatabaseType … -SqlServerFqdn … -FileShare … (domain F6, B5): back up, restore on the mirror, start mirroring",
				Destructive: true, DefaultTimeout: 4 * time.Hour, Params: []pluginsdk.ParamSpec{
					sqlFQDN,
					{Name: "file_share", Type: pluginsdk.TypeString, Required: true, Description: `share for the backups (\\server\share), read-write for both SQL Servers`},
					dbType, instance, drop,
				}},
			{Name: actUninstallMirror, Description: "Uninstall-CsMirrorDatabase (domain B2): remove mirroring, optionally drop the copy on the mirror",
				Idempotent: true, Destructive: true, DefaultTimeout: time.Hour, Params: []pluginsdk.ParamSpec{sqlFQDN, dbType, instance, drop}},
			{Name: actTestMessage, Description: "Test-CsPersistentChatMessage: post a test message through the pool (domain F7, B6 verify)",
				Idempotent: true, DefaultTimeout: 5 * time.Minute, Params: []pluginsdk.ParamSpec{
					{Name: "target_fqdn", Type: pluginsdk.TypeString, Description: "pool or registrar FQDN; default the pool FQDN of the identity"},
					{Name: "sender_sip", Type: pluginsdk.TypeString, Description: "sip:user@domain (with receiver_sip); default the health-monitoring test users"},
					{Name: "receiver_sip", Type: pluginsdk.TypeString, Description: "sip:user@domain"},
					{Name: "require_success", Type: pluginsdk.TypeBool, Description: "fail the action (retryable) when the test reports Failure; default true"},
				}},
			{Name: actWindowsService, Description: "Get-/Start-/Stop-CsWindowsService on this server; start and stop act only when needed",
				Idempotent: true, DefaultTimeout: 10 * time.Minute, Params: []pluginsdk.ParamSpec{
					{Name: "operation", Type: pluginsdk.TypeString, Required: true, Description: "status, start or stop"},
					{Name: "name", Type: pluginsdk.TypeString, Description: "service name (e.g. RTCCHAT, UNVERIFIED); default all Lync/SfB services"},
					{Name: "graceful", Type: pluginsdk.TypeBool, Description: "stop with -Graceful (drain existing requests)"},
				}},
		},
		Probes: []pluginsdk.ProbeSpec{
			{Name: probePoolState, Description: "pool state in the central store and in this server's local store"},
			{Name: probeActiveServers, Description: "the active server list"},
		},
	}, nil
}

// Execute runs one action.
func (p *plugin) Execute(ctx context.Context, req *pluginsdk.Request, emit pluginsdk.Emitter) (pluginsdk.Output, error) {
	cfg, host, err := p.config()
	if err != nil {
		return nil, err
	}
	in, _ := p.Info(ctx)
	spec, ok := in.Action(req.Action)
	if !ok {
		return nil, pluginsdk.Terminal("unknown_action", "csshell does not offer %q", req.Action)
	}
	if err := spec.Validate(req.Params); err != nil {
		return nil, pluginsdk.Terminal("bad_param", "%v", err)
	}
	c := &callCtx{cfg: cfg, host: host, emit: emit, params: req.Params}
	switch req.Action {
	case actGetState:
		return c.getState(ctx)
	case actSetState:
		return c.setState(ctx)
	case actGetActiveServers:
		return c.getActiveServers(ctx)
	case actSetActiveServers:
		return c.setActiveServers(ctx)
	case actResolveIdentity:
		return c.resolveIdentity(ctx)
	case actInstallMirror:
		return c.installMirror(ctx)
	case actUninstallMirror:
		return c.uninstallMirror(ctx)
	case actTestMessage:
		return c.testMessage(ctx)
	case actWindowsService:
		return c.windowsService(ctx)
	}
	return nil, pluginsdk.Terminal("unknown_action", "csshell does not offer %q", req.Action)
}

// Probe evaluates a read-only probe. Both probes take an optional
// "identity" parameter, like the actions.
func (p *plugin) Probe(ctx context.Context, name string, params pluginsdk.Params) (pluginsdk.Output, error) {
	cfg, host, err := p.config()
	if err != nil {
		return nil, err
	}
	if params == nil {
		params = pluginsdk.Params{}
	}
	c := &callCtx{cfg: cfg, host: host, emit: discard{}, params: params}
	switch name {
	case probePoolState:
		return c.probePoolState(ctx)
	case probeActiveServers:
		return c.getActiveServers(ctx)
	}
	return nil, pluginsdk.Terminal("unknown_probe", "csshell does not offer probe %q", name)
}

type discard struct{}

func (discard) Progress(string, int64, int64, string) {}
func (discard) Log(string, string)                    {}

// callCtx is one action or probe being executed.
type callCtx struct {
	cfg    Config
	host   string
	emit   pluginsdk.Emitter
	params pluginsdk.Params
}

// invocation is one cmdlet call.
type invocation struct {
	cmdlet  string
	args    []arg
	env     map[string]string // added to the configured env
	timeout time.Duration     // default cfg.Timeout
}

// invoke runs one cmdlet through the shell and returns the parsed JSON
// output (nil when the cmdlet wrote no object).
func (c *callCtx) invoke(ctx context.Context, in invocation) (any, error) {
	script := buildScript(c.cfg.Module, in.cmdlet, in.args)
	argv := append([]string(nil), c.cfg.PowerShell...)
	if c.cfg.encoded() {
		argv = append(argv, encodeCommand(script))
	} else {
		argv = append(argv, script)
	}
	env := map[string]string{}
	if c.host != "" {
		env[EnvServer] = c.host
	}
	if v, ok := os.LookupEnv(EnvServer); ok {
		env[EnvServer] = v
	}
	for k, v := range c.cfg.Env {
		env[k] = v
	}
	for k, v := range in.env {
		env[k] = v
	}
	timeout := in.timeout
	if timeout <= 0 {
		timeout = c.cfg.Timeout
	}
	c.emit.Log("debug", "running "+in.cmdlet+": "+script)
	start := time.Now()
	res, err := runShell(ctx, argv, shellEnv(env), timeout)
	switch {
	case errors.Is(err, errShellStart):
		return nil, pluginsdk.Terminal("shell_unavailable", "%s on %s: %v", in.cmdlet, c.host, err).
			WithHint("check plugin_config.csshell.powershell (the PowerShell executable and its options)")
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return nil, pluginsdk.Retryable("timeout", "%s on %s did not finish within %s; the shell process and its children were killed", in.cmdlet, c.host, timeout).
			WithHint("raise plugin_config.csshell.timeout if the Management Shell is slow to load")
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		return nil, pluginsdk.Retryable("shell_failed", "%s on %s: %v", in.cmdlet, c.host, err)
	}
	if res.truncated {
		return nil, pluginsdk.Terminal("cs_bad_output", "%s on %s wrote more than %d bytes", in.cmdlet, c.host, maxOutput)
	}
	// powershell.exe exits with 1 after a terminating error; an error
	// record with exit code 0 (a host that does not report it) is an error
	// all the same.
	if res.exitCode != 0 || strings.Contains(string(res.stderr), "FullyQualifiedErrorId") {
		stderr := string(res.stderr)
		if strings.TrimSpace(stderr) == "" {
			stderr = string(res.stdout)
		}
		if strings.TrimSpace(stderr) == "" {
			return nil, pluginsdk.Terminal("cs_cmdlet_failed", "%s on %s exited with code %d and printed nothing", in.cmdlet, c.host, res.exitCode)
		}
		return nil, classify(c.cfg.Module, in.cmdlet, c.host, parseShellError(stderr))
	}
	if s := strings.TrimSpace(string(res.stderr)); s != "" {
		c.emit.Log("warn", in.cmdlet+" wrote to stderr: "+clip(s, 2000))
	}
	v, other, err := parseOutput(res.stdout)
	if err != nil {
		return nil, pluginsdk.Terminal("cs_bad_output", "%s on %s: %v", in.cmdlet, c.host, err)
	}
	for _, line := range other {
		c.emit.Log("info", in.cmdlet+": "+line)
	}
	c.emit.Log("debug", fmt.Sprintf("%s finished in %s", in.cmdlet, time.Since(start).Round(time.Millisecond)))
	return v, nil
}
