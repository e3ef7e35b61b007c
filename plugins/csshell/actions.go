package csshell

import (
	"context"
	"fmt"
	"strings"

	"github.com/chatdr/chatdr/pluginsdk"
)

func badParam(format string, a ...any) *pluginsdk.Error {
	return pluginsdk.Terminal("bad_param", format, a...)
}

func (c *callCtx) str(name string) (string, bool) {
	s, ok := c.params[name].(string)
	return s, ok && s != ""
}

func (c *callCtx) boolean(name string, def bool) bool {
	if b, ok := c.params[name].(bool); ok {
		return b
	}
	return def
}

// identity returns the pool identity: the parameter or the configured one.
func (c *callCtx) identity() (string, error) {
	id, ok := c.str("identity")
	if !ok {
		id = c.cfg.Identity
	}
	if id == "" {
		return "", pluginsdk.Terminal("not_configured", "no pool identity: set plugin_config.csshell.identity or pass identity").
			WithHint("run cs.resolve_identity to list the identities the topology knows")
	}
	if !validIdentity(id) {
		return "", badParam("identity %q: want <kind>:<fqdn>, e.g. service:pchat01.contoso.com or PersistentChatServer:pchat01.contoso.com", id)
	}
	return id, nil
}

// activeIdentity returns the Set-CsPersistentChatActiveServer identity.
func (c *callCtx) activeIdentity() (string, error) {
	id, ok := c.str("identity")
	if !ok {
		id = c.cfg.ActiveServerIdentity
	}
	if !validActiveIdentity(id) {
		return "", badParam("identity %q: want e.g. global or PChatServerCollection", id)
	}
	return id, nil
}

// poolState reads Get-CsPersistentChatState for id; server, when set, is
// the simulator's CHATDR_CS_SERVER for -LocalStore.
func (c *callCtx) poolState(ctx context.Context, id string, local bool, server string) (string, string, error) {
	in := invocation{cmdlet: "Get-CsPersistentChatState", args: []arg{param("Identity", id)}}
	if local {
		in.args = append(in.args, flag("LocalStore"))
	}
	if server != "" {
		in.env = map[string]string{EnvServer: server}
	}
	v, err := c.invoke(ctx, in)
	if err != nil {
		return "", "", err
	}
	objs, err := objects(v)
	if err != nil {
		return "", "", pluginsdk.Terminal("cs_bad_output", "Get-CsPersistentChatState on %s: %v", c.host, err)
	}
	if len(objs) != 1 {
		return "", "", pluginsdk.Terminal("cs_identity_not_found", "Get-CsPersistentChatState -Identity %s on %s returned %d objects, want 1", id, c.host, len(objs)).
			WithHint("run cs.resolve_identity and set plugin_config.csshell.identity")
	}
	state, err := enumName(objs[0], "PoolState", c.cfg.Enums["PoolState"])
	if err != nil {
		return "", "", pluginsdk.Terminal("cs_bad_output", "Get-CsPersistentChatState on %s: %v", c.host, err)
	}
	return state, text(objs[0], "Identity"), nil
}

func (c *callCtx) getState(ctx context.Context) (pluginsdk.Output, error) {
	id, err := c.identity()
	if err != nil {
		return nil, err
	}
	local := c.boolean("local_store", false)
	server, hasServer := c.str("server")
	if hasServer {
		if !validFQDN(server) {
			return nil, badParam("server %q is not an FQDN", server)
		}
		if !strings.EqualFold(server, c.host) {
			c.emit.Log("warn", fmt.Sprintf("server %s: only the simulator honours it; a real Management Shell reads the local store of %s", server, c.host))
		}
	}
	state, reported, err := c.poolState(ctx, id, local, server)
	if err != nil {
		return nil, err
	}
	out := pluginsdk.Output{"identity": id, "reported_identity": reported, "pool_state": state, "local_store": local}
	if local {
		if server == "" {
			server = c.host
		}
		out["server"] = server
	}
	return out, nil
}

func (c *callCtx) setState(ctx context.Context) (pluginsdk.Output, error) {
	id, err := c.identity()
	if err != nil {
		return nil, err
	}
	want, _ := c.str("state")
	switch {
	case strings.EqualFold(want, "Normal"):
		want = "Normal"
	case strings.EqualFold(want, "FailedOver"):
		want = "FailedOver"
	default:
		return nil, badParam("state %q: want Normal or FailedOver", want)
	}
	before, _, err := c.poolState(ctx, id, false, "")
	if err != nil {
		return nil, err
	}
	out := pluginsdk.Output{"identity": id, "previous": before, "pool_state": before, "changed": false}
	if before == want {
		c.emit.Log("info", fmt.Sprintf("pool %s is already %s: nothing to do", id, want))
		return out, nil
	}
	c.emit.Log("info", fmt.Sprintf("setting pool %s from %s to %s", id, before, want))
	if _, err := c.invoke(ctx, invocation{cmdlet: "Set-CsPersistentChatState",
		args: []arg{param("Identity", id), param("PoolState", want), noConfirm()}}); err != nil {
		return nil, err
	}
	after, _, err := c.poolState(ctx, id, false, "")
	if err != nil {
		return nil, err
	}
	if after != want {
		return nil, pluginsdk.Retryable("cs_state_not_applied", "Set-CsPersistentChatState -PoolState %s on %s succeeded but the central store still shows %s", want, c.host, after)
	}
	out["pool_state"], out["changed"] = after, true
	return out, nil
}

// activeServers reads the active server list.
func (c *callCtx) activeServers(ctx context.Context, id string) ([]string, error) {
	v, err := c.invoke(ctx, invocation{cmdlet: c.cfg.ActiveServersCmdlet, args: []arg{param("Identity", id)}})
	if err != nil {
		return nil, err
	}
	objs, err := objects(v)
	if err != nil {
		return nil, pluginsdk.Terminal("cs_bad_output", "%s on %s: %v", c.cfg.ActiveServersCmdlet, c.host, err)
	}
	if len(objs) != 1 {
		return nil, pluginsdk.Terminal("cs_identity_not_found", "%s -Identity %s on %s returned %d objects, want 1", c.cfg.ActiveServersCmdlet, id, c.host, len(objs)).
			WithHint("set plugin_config.csshell.active_server_identity")
	}
	if _, ok := property(objs[0], "ActiveServers"); !ok {
		return nil, pluginsdk.Terminal("cs_bad_output", "%s on %s returned no ActiveServers property: %v", c.cfg.ActiveServersCmdlet, c.host, objs[0])
	}
	return textList(objs[0], "ActiveServers"), nil
}

func (c *callCtx) getActiveServers(ctx context.Context) (pluginsdk.Output, error) {
	id, err := c.activeIdentity()
	if err != nil {
		return nil, err
	}
	list, err := c.activeServers(ctx, id)
	if err != nil {
		return nil, err
	}
	return pluginsdk.Output{"identity": id, "active_servers": toAny(list), "count": float64(len(list))}, nil
}

// maxActive is the number of chat servers a pool may have active (domain.md
// §1, §6.16).
const maxActive = 4

func (c *callCtx) setActiveServers(ctx context.Context) (pluginsdk.Output, error) {
	id, err := c.activeIdentity()
	if err != nil {
		return nil, err
	}
	mode, _ := c.str("mode")
	mode = strings.ToLower(mode)
	var names []string
	raw, _ := c.params["servers"].([]any)
	for _, r := range raw {
		s, ok := r.(string)
		if !ok {
			return nil, badParam("servers: %v is not a string", r)
		}
		names = append(names, s)
	}
	servers, bad := fqdnSet(names)
	if len(bad) > 0 {
		return nil, badParam("servers: %q are not FQDNs", bad)
	}
	switch mode {
	case "clear":
		if len(servers) > 0 {
			return nil, badParam("mode clear takes no servers")
		}
	case "add", "remove":
		if len(servers) == 0 {
			return nil, badParam("mode %s needs servers", mode)
		}
	case "set":
	default:
		return nil, badParam("mode %q: want clear, add, remove or set", mode)
	}

	before, err := c.activeServers(ctx, id)
	if err != nil {
		return nil, err
	}
	var want []string
	switch mode {
	case "clear":
		want = []string{}
	case "add":
		want = append(append([]string{}, before...), minus(servers, before)...)
	case "remove":
		want = minus(before, servers)
	case "set":
		want = servers
	}
	if len(want) > maxActive {
		return nil, pluginsdk.Terminal("too_many_active_servers", "refusing to %s active servers on %s: the pool would have %d active servers (%s); a Persistent Chat pool supports at most %d",
			mode, c.host, len(want), strings.Join(want, ", "), maxActive).
			WithHint("remove servers first, or use mode set with at most 4 servers")
	}
	out := pluginsdk.Output{"identity": id, "before": toAny(before), "after": toAny(before), "changed": false}
	if sameSet(before, want) {
		c.emit.Log("info", "the active server list is already as wanted: nothing to do")
		return out, nil
	}
	add, remove := minus(want, before), minus(before, want)
	mod := listModifier(len(want) == 0, add, remove)
	c.emit.Log("info", fmt.Sprintf("active servers: adding %v, removing %v", add, remove))
	if _, err := c.invoke(ctx, invocation{cmdlet: "Set-CsPersistentChatActiveServer",
		args: []arg{param("Identity", id), mod, noConfirm()}}); err != nil {
		return nil, err
	}
	after, err := c.activeServers(ctx, id)
	if err != nil {
		return nil, err
	}
	if !sameSet(after, want) {
		return nil, pluginsdk.Terminal("cs_active_servers_not_applied", "Set-CsPersistentChatActiveServer on %s succeeded but the list is %v, want %v", c.host, after, want)
	}
	out["after"], out["changed"] = toAny(after), true
	return out, nil
}

func (c *callCtx) resolveIdentity(ctx context.Context) (pluginsdk.Output, error) {
	v, err := c.invoke(ctx, invocation{cmdlet: "Get-CsService", args: []arg{flag("PersistentChatServer")}})
	if err != nil {
		return nil, err
	}
	objs, err := objects(v)
	if err != nil {
		return nil, pluginsdk.Terminal("cs_bad_output", "Get-CsService on %s: %v", c.host, err)
	}
	ids := []any{}
	services := []any{}
	for _, o := range objs {
		id := text(o, "Identity")
		if id == "" {
			continue
		}
		ids = append(ids, id)
		services = append(services, map[string]any{"identity": id, "pool_fqdn": text(o, "PoolFqdn"), "site": text(o, "SiteId")})
	}
	return pluginsdk.Output{"identities": ids, "services": services, "configured": c.cfg.Identity}, nil
}

// mirrorArgs validates the parameters shared by install and uninstall.
func (c *callCtx) mirrorArgs() ([]arg, pluginsdk.Output, error) {
	fqdn, _ := c.str("sql_server_fqdn")
	if !validFQDN(fqdn) {
		return nil, nil, badParam("sql_server_fqdn %q is not an FQDN", fqdn)
	}
	dbType, ok := c.str("database_type")
	switch {
	case !ok || strings.EqualFold(dbType, "PersistentChat"):
		dbType = "PersistentChat"
	case strings.EqualFold(dbType, "PersistentChatCompliance"):
		dbType = "PersistentChatCompliance"
	default:
		return nil, nil, badParam("database_type %q: want PersistentChat or PersistentChatCompliance", dbType)
	}
	args := []arg{param("DatabaseType", dbType), param("SqlServerFqdn", fqdn)}
	out := pluginsdk.Output{"sql_server_fqdn": fqdn, "database_type": dbType}
	if inst, ok := c.str("sql_instance_name"); ok {
		if !validInstance(inst) {
			return nil, nil, badParam("sql_instance_name %q is not a SQL instance name", inst)
		}
		args = append(args, param("SqlInstanceName", inst))
		out["sql_instance_name"] = inst
	}
	return args, out, nil
}

func (c *callCtx) installMirror(ctx context.Context) (pluginsdk.Output, error) {
	args, out, err := c.mirrorArgs()
	if err != nil {
		return nil, err
	}
	share, _ := c.str("file_share")
	if !validShare(share) {
		return nil, badParam(`file_share %q: want \\server\share (or an absolute path), without control characters`, share)
	}
	args = append(args, param("FileShare", share))
	drop := c.boolean("drop_existing", false)
	if drop {
		args = append(args, flag("DropExistingDatabasesOnMirror"))
	}
	args = append(args, noConfirm())
	c.emit.Progress("install mirror", 0, 1, "steps")
	if _, err := c.invoke(ctx, invocation{cmdlet: "Install-CsMirrorDatabase", args: args, timeout: c.cfg.MirrorTimeout}); err != nil {
		if pe, ok := err.(*pluginsdk.Error); ok && pe.Code == "timeout" {
			// A half-done install leaves the database on the mirror: a blind
			// retry would fail; the operator decides.
			pe.Retryable = false
			pe.Hint = "check mirroring (mssql mirror.status) before running again with drop_existing"
		}
		return nil, err
	}
	c.emit.Progress("install mirror", 1, 1, "steps")
	out["file_share"], out["drop_existing"] = share, drop
	return out, nil
}

func (c *callCtx) uninstallMirror(ctx context.Context) (pluginsdk.Output, error) {
	args, out, err := c.mirrorArgs()
	if err != nil {
		return nil, err
	}
	drop := c.boolean("drop_existing", false)
	if drop {
		args = append(args, flag("DropExistingDatabasesOnMirror"))
	}
	args = append(args, noConfirm())
	if _, err := c.invoke(ctx, invocation{cmdlet: "Uninstall-CsMirrorDatabase", args: args, timeout: c.cfg.MirrorTimeout}); err != nil {
		return nil, err
	}
	out["drop_existing"] = drop
	return out, nil
}

func (c *callCtx) testMessage(ctx context.Context) (pluginsdk.Output, error) {
	target, ok := c.str("target_fqdn")
	if !ok {
		id, err := c.identity()
		if err != nil {
			return nil, err
		}
		_, target, _ = strings.Cut(id, ":")
	}
	if !validFQDN(target) {
		return nil, badParam("target_fqdn %q is not an FQDN", target)
	}
	args := []arg{param("TargetFqdn", target)}
	sender, hasSender := c.str("sender_sip")
	receiver, hasReceiver := c.str("receiver_sip")
	if hasSender != hasReceiver {
		return nil, badParam("pass both sender_sip and receiver_sip, or neither (health-monitoring test users)")
	}
	if hasSender {
		for _, s := range []string{sender, receiver} {
			if !validSIP(s) {
				return nil, badParam("%q is not a SIP address (sip:user@domain)", s)
			}
		}
		args = append(args, param("SenderSipAddress", sender), param("ReceiverSipAddress", receiver))
	}
	v, err := c.invoke(ctx, invocation{cmdlet: "Test-CsPersistentChatMessage", args: args})
	if err != nil {
		return nil, err
	}
	objs, err := objects(v)
	if err != nil || len(objs) == 0 {
		return nil, pluginsdk.Terminal("cs_bad_output", "Test-CsPersistentChatMessage on %s returned no result (%v)", c.host, err)
	}
	res, err := enumName(objs[0], "Result", c.cfg.Enums["Result"])
	if err != nil {
		return nil, pluginsdk.Terminal("cs_bad_output", "Test-CsPersistentChatMessage on %s: %v", c.host, err)
	}
	out := pluginsdk.Output{"target_fqdn": target, "result": res, "error": text(objs[0], "Error"), "diagnosis": text(objs[0], "Diagnosis")}
	if ms, ok := durationMS(objs[0], "Latency"); ok {
		out["latency_ms"] = ms
	}
	if res != "Success" && c.boolean("require_success", true) {
		return nil, pluginsdk.Retryable("cs_test_failed", "Test-CsPersistentChatMessage -TargetFqdn %s on %s: %s: %s", target, c.host, res, text(objs[0], "Error")).
			WithHint("%s", firstNonEmpty(text(objs[0], "Diagnosis"), "check the pool state, the active servers and their local stores, and the database"))
	}
	return out, nil
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// services lists Get-CsWindowsService [-Name].
func (c *callCtx) services(ctx context.Context, name string) ([]map[string]any, error) {
	in := invocation{cmdlet: "Get-CsWindowsService"}
	if name != "" {
		in.args = []arg{param("Name", name)}
	}
	v, err := c.invoke(ctx, in)
	if err != nil {
		return nil, err
	}
	objs, err := objects(v)
	if err != nil {
		return nil, pluginsdk.Terminal("cs_bad_output", "Get-CsWindowsService on %s: %v", c.host, err)
	}
	out := make([]map[string]any, 0, len(objs))
	for _, o := range objs {
		status, err := enumName(o, "Status", c.cfg.Enums["Status"])
		if err != nil {
			return nil, pluginsdk.Terminal("cs_bad_output", "Get-CsWindowsService on %s: %v", c.host, err)
		}
		out = append(out, map[string]any{"name": text(o, "Name"), "display_name": text(o, "DisplayName"),
			"status": status, "activity_level": text(o, "ActivityLevel")})
	}
	return out, nil
}

func allStatus(svcs []map[string]any, status string) bool {
	for _, s := range svcs {
		if s["status"] != status {
			return false
		}
	}
	return true
}

func listOf(svcs []map[string]any) []any {
	out := make([]any, len(svcs))
	for i, s := range svcs {
		out[i] = s
	}
	return out
}

func (c *callCtx) windowsService(ctx context.Context) (pluginsdk.Output, error) {
	op, _ := c.str("operation")
	op = strings.ToLower(op)
	name, hasName := c.str("name")
	if hasName && !validService(name) {
		return nil, badParam("name %q is not a service name", name)
	}
	graceful := c.boolean("graceful", false)
	var want, cmdlet string
	switch op {
	case "status":
	case "start":
		want, cmdlet = "Running", "Start-CsWindowsService"
	case "stop":
		want, cmdlet = "Stopped", "Stop-CsWindowsService"
	default:
		return nil, badParam("operation %q: want status, start or stop", op)
	}
	if graceful && op != "stop" {
		return nil, badParam("graceful applies to operation stop only")
	}
	svcs, err := c.services(ctx, name)
	if err != nil {
		return nil, err
	}
	out := pluginsdk.Output{"services": listOf(svcs), "changed": false}
	if op == "status" || allStatus(svcs, want) {
		return out, nil
	}
	in := invocation{cmdlet: cmdlet}
	if hasName {
		in.args = append(in.args, param("Name", name))
	}
	if graceful {
		in.args = append(in.args, flag("Graceful"))
	}
	if _, err := c.invoke(ctx, in); err != nil {
		return nil, err
	}
	if svcs, err = c.services(ctx, name); err != nil {
		return nil, err
	}
	if !allStatus(svcs, want) {
		return nil, pluginsdk.Retryable("cs_service_not_"+strings.ToLower(want), "%s on %s returned, but not every service is %s: %v", cmdlet, c.host, want, svcs)
	}
	out["services"], out["changed"] = listOf(svcs), true
	return out, nil
}

func (c *callCtx) probePoolState(ctx context.Context) (pluginsdk.Output, error) {
	id, err := c.identity()
	if err != nil {
		return nil, err
	}
	central, _, err := c.poolState(ctx, id, false, "")
	if err != nil {
		return nil, err
	}
	out := pluginsdk.Output{"identity": id, "central": central, "server": c.host}
	local, _, err := c.poolState(ctx, id, true, "")
	if err != nil {
		out["local_error"] = pluginsdk.AsError(err).Message
		out["consistent"] = false
		return out, nil
	}
	out["local"], out["consistent"] = local, local == central
	return out, nil
}
