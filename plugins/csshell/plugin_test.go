package csshell

import (
	"context"
	"fmt"
	"github.com/chatdr/chatdr/internal/proc"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/chatdr/chatdr/agent/pluginhost"
	"github.com/chatdr/chatdr/pluginsdk"
	shellsim "github.com/chatdr/chatdr/sim/csshell"
	"github.com/chatdr/chatdr/sim/csshell/csshelltest"
)

func TestPlugin_Info_describesEveryAction(t *testing.T) {
	in, err := New().Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, "csshell", in.Name)
	var names []string
	for _, a := range in.Actions {
		names = append(names, a.Name)
		require.Equal(t, "csshell", pluginhost.PluginFor(a.Name), "the agent routes actions by their first segment")
		require.NotEmpty(t, a.Description)
		require.Positive(t, a.DefaultTimeout)
	}
	require.Equal(t, []string{
		"csshell.cs.get_state", "csshell.cs.set_state", "csshell.cs.get_active_servers", "csshell.cs.set_active_servers",
		"csshell.cs.resolve_identity", "csshell.cs.install_mirror", "csshell.cs.uninstall_mirror", "csshell.cs.test_message",
		"csshell.cs.windows_service",
	}, names)
	get, _ := in.Action(actGetState)
	require.True(t, get.ReadOnly)
	install, _ := in.Action(actInstallMirror)
	require.True(t, install.Destructive)
	require.False(t, install.Idempotent)
	require.Len(t, in.Probes, 2)

	l := newLab(t)
	l.fails(l.p, actSetState, pluginsdk.Params{}, "bad_param")
	l.fails(l.p, actSetState, pluginsdk.Params{"state": "Normal", "force": true}, "bad_param")
	l.fails(l.p, "csshell.cs.nothing", nil, "unknown_action")
	require.Empty(t, l.calls(), "invalid requests never reach the shell")
}

func TestPlugin_SetState_checkThenAct(t *testing.T) {
	l := newLab(t)
	out := l.ok(actGetState, nil)
	require.Equal(t, "Normal", out["pool_state"])
	require.Equal(t, "PersistentChatServer:pchat01.contoso.com", out["reported_identity"])
	before := l.state()

	out = l.ok(actSetState, pluginsdk.Params{"state": "failedover"})
	require.Equal(t, pluginsdk.Output{"identity": "service:pchat01.contoso.com", "previous": "Normal", "pool_state": "FailedOver", "changed": true}, out)
	after := l.state()
	require.Equal(t, shellsim.FailedOver, after.PoolState)
	require.Equal(t, before.Version+1, after.Version)
	require.Equal(t, []string{"Get-CsPersistentChatState", "Get-CsPersistentChatState", "Set-CsPersistentChatState", "Get-CsPersistentChatState"}, cmdlets(l.calls()))
	set := l.calls()[2]
	require.Equal(t, "$ErrorActionPreference='Stop'; Import-Module 'SkypeForBusiness'; Set-CsPersistentChatState -Identity 'service:pchat01.contoso.com' -PoolState 'FailedOver' -Confirm:$false | ConvertTo-Json -Depth 5 -Compress", set.Script)
	require.Equal(t, "pc1.dc1.contoso.com", set.Server, "the shell learns the agent's host")

	n := len(l.calls())
	out = l.ok(actSetState, pluginsdk.Params{"state": "FailedOver"})
	require.Equal(t, false, out["changed"])
	require.Equal(t, "FailedOver", out["previous"])
	require.Equal(t, after.Version, l.state().Version, "nothing written")
	require.Equal(t, []string{"Get-CsPersistentChatState"}, cmdlets(l.calls()[n:]), "the second run only reads")

	l.fails(l.p, actSetState, pluginsdk.Params{"state": "Sideways"}, "bad_param")
}

func TestPlugin_GetState_localStoreLags(t *testing.T) {
	const delay = 2 * time.Second
	l := newLab(t, func(c *shellsim.CMS) { c.Servers[4].ReplicationDelay = shellsim.Duration(delay) }) // pc5
	local := pluginsdk.Params{"local_store": true, "server": "pc5.dc2.contoso.com"}
	require.Equal(t, "Normal", l.ok(actGetState, local)["pool_state"])

	l.ok(actSetState, pluginsdk.Params{"state": "FailedOver"})
	changedAt := l.state().At
	out := l.ok(actGetState, local)
	if time.Since(changedAt) < delay {
		require.Equal(t, "Normal", out["pool_state"], "within the delay pc5's local store still shows the old state")
	} else {
		t.Logf("the machine is too slow to see the lag (%s since the change)", time.Since(changedAt))
	}
	require.Equal(t, "pc5.dc2.contoso.com", out["server"])
	require.Equal(t, "FailedOver", l.ok(actGetState, pluginsdk.Params{"local_store": true})["pool_state"], "pc1 has no delay")

	require.NoError(t, eventually(15*time.Second, 100*time.Millisecond, func() error {
		if got := l.ok(actGetState, local)["pool_state"]; got != "FailedOver" {
			return fmt.Errorf("pc5's local store shows %v", got)
		}
		return nil
	}))
	require.GreaterOrEqual(t, time.Since(changedAt), delay, "the new state reached pc5 only after its delay")
}

func TestPlugin_SetActiveServers(t *testing.T) {
	l := newLab(t)
	active := func() []string { return l.state().ActiveServers }
	set := func(mode string, servers ...string) pluginsdk.Output {
		t.Helper()
		return l.ok(actSetActiveServers, pluginsdk.Params{"mode": mode, "servers": toAny(servers)})
	}

	out := set("clear")
	require.Equal(t, true, out["changed"])
	require.Equal(t, []any{"pc1.dc1.contoso.com", "pc2.dc1.contoso.com"}, out["before"])
	require.Empty(t, active())
	require.Contains(t, l.calls()[len(l.calls())-2].Script, "-ActiveServers $null -Confirm:$false")
	require.Equal(t, false, set("clear")["changed"])

	set("add", "pc5.dc2.contoso.com", "PC6.dc2.contoso.com")
	require.Equal(t, []string{"pc5.dc2.contoso.com", "pc6.dc2.contoso.com"}, active())
	require.Contains(t, l.calls()[len(l.calls())-2].Script, "-ActiveServers @{Add='pc5.dc2.contoso.com','PC6.dc2.contoso.com'} -Confirm:$false")
	require.Equal(t, false, set("add", "pc6.dc2.contoso.com")["changed"], "already active")
	set("remove", "pc5.dc2.contoso.com", "pc7.dc2.contoso.com")
	require.Equal(t, []string{"pc6.dc2.contoso.com"}, active())
	out = set("set", "pc5.dc2.contoso.com", "pc6.dc2.contoso.com", "pc7.dc2.contoso.com", "pc8.dc2.contoso.com")
	require.Equal(t, []any{"pc6.dc2.contoso.com", "pc5.dc2.contoso.com", "pc7.dc2.contoso.com", "pc8.dc2.contoso.com"}, out["after"])
	require.Equal(t, csshelltest.SiteServers("dc2"), sortedCopy(active()))

	before, n := l.state(), len(l.calls())
	pe := l.fails(l.p, actSetActiveServers, pluginsdk.Params{"mode": "add", "servers": []any{"pc1.dc1.contoso.com"}}, "too_many_active_servers")
	require.Contains(t, pe.Message, "the pool would have 5 active servers")
	l.fails(l.p, actSetActiveServers, pluginsdk.Params{"mode": "set", "servers": toAny(append(csshelltest.SiteServers("dc1"), "pc5.dc2.contoso.com"))}, "too_many_active_servers")
	require.NotContains(t, cmdlets(l.calls()[n:]), "Set-CsPersistentChatActiveServer", "refused before calling the cmdlet")
	require.Equal(t, before, l.state())

	pe = l.fails(l.p, actSetActiveServers, pluginsdk.Params{"mode": "set", "servers": []any{"pc9.dc2.contoso.com"}}, "cs_unknown_server")
	require.Contains(t, pe.Message, `Set-CsPersistentChatActiveServer failed on pc1.dc1.contoso.com: "pc9.dc2.contoso.com": not a Persistent Chat server of the topology`)
	l.fails(l.p, actSetActiveServers, pluginsdk.Params{"mode": "add"}, "bad_param")
	l.fails(l.p, actSetActiveServers, pluginsdk.Params{"mode": "clear", "servers": []any{"pc1.dc1.contoso.com"}}, "bad_param")
	l.fails(l.p, actSetActiveServers, pluginsdk.Params{"mode": "swap"}, "bad_param")

	got := l.ok(actGetActiveServers, nil)
	require.Equal(t, float64(4), got["count"])
	require.Equal(t, "global", got["identity"])
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestSimulator_refusesFiveActiveServers(t *testing.T) {
	l := newLab(t)
	script := buildScript("SkypeForBusiness", "Set-CsPersistentChatActiveServer", []arg{param("Identity", "global"),
		listModifier(false, append(csshelltest.SiteServers("dc2"), "pc3.dc1.contoso.com"), nil), noConfirm()})
	res, err := runShell(t.Context(), append(append([]string(nil), l.cfg.PowerShell...), script), shellEnv(l.cfg.Env), time.Minute)
	require.NoError(t, err)
	require.Equal(t, 1, res.exitCode)
	e := parseShellError(string(res.stderr))
	require.Equal(t, "Set-CsPersistentChatActiveServer", e.Cmdlet)
	require.Contains(t, e.Message, "The active server list would hold more than 4 servers")
	require.Equal(t, "TooManyActiveServers", e.idHead())
	require.Equal(t, []string{"pc1.dc1.contoso.com", "pc2.dc1.contoso.com"}, l.state().ActiveServers)
}

func TestPlugin_ResolveIdentity(t *testing.T) {
	l := newLab(t)
	out := l.ok(actResolveIdentity, nil)
	require.Equal(t, []any{"PersistentChatServer:pchat01.contoso.com"}, out["identities"])
	require.Equal(t, "service:pchat01.contoso.com", out["configured"])
	// The resolved form works as well as the configured one.
	require.Equal(t, "Normal", l.ok(actGetState, pluginsdk.Params{"identity": "PersistentChatServer:pchat01.contoso.com"})["pool_state"])
}

func TestPlugin_injectionIsRejectedOrLiteral(t *testing.T) {
	l := newLab(t)
	evil := []string{
		"pchat01.contoso.com'; Set-CsPersistentChatState -PoolState FailedOver; '",
		"pchat01.contoso.com; Remove-Item C:\\",
		"$(Set-CsPersistentChatState -PoolState FailedOver)",
		"pchat01`.contoso.com",
		"pchat01.contoso.com\nSet-CsPersistentChatState",
		"[pchat01].contoso.com",
		"pchat01.contoso.com\u2019; whoami",
		"pchat01.contoso.com\"",
	}
	for _, v := range evil {
		for _, tc := range []struct {
			action string
			params pluginsdk.Params
		}{
			{actGetState, pluginsdk.Params{"identity": "service:" + v}},
			{actGetState, pluginsdk.Params{"local_store": true, "server": v}},
			{actSetState, pluginsdk.Params{"state": "FailedOver'; " + v}},
			{actSetActiveServers, pluginsdk.Params{"mode": "add", "servers": []any{v}}},
			{actSetActiveServers, pluginsdk.Params{"mode": "clear", "identity": "global" + v}},
			{actTestMessage, pluginsdk.Params{"target_fqdn": v}},
			{actTestMessage, pluginsdk.Params{"sender_sip": "sip:a@" + v, "receiver_sip": "sip:b@contoso.com"}},
			{actInstallMirror, pluginsdk.Params{"sql_server_fqdn": v, "file_share": "/tmp/x"}},
			{actInstallMirror, pluginsdk.Params{"sql_server_fqdn": "sql1.dc2.contoso.com", "file_share": "/tmp/x", "sql_instance_name": v}},
			{actInstallMirror, pluginsdk.Params{"sql_server_fqdn": "sql1.dc2.contoso.com", "file_share": "/tmp/x", "database_type": v}},
			{actWindowsService, pluginsdk.Params{"operation": "stop", "name": "RTCCHAT" + v}},
		} {
			l.fails(l.p, tc.action, tc.params, "bad_param")
		}
	}
	for _, share := range []string{"/tmp/a\nb", "/tmp/a\x00b", "relative\\path", "C:relative", "\\\\srv\\share\r"} {
		l.fails(l.p, actInstallMirror, pluginsdk.Params{"sql_server_fqdn": "sql1.dc2.contoso.com", "file_share": share}, "bad_param")
	}
	require.Empty(t, l.calls(), "a rejected value never reaches the shell")
	require.Equal(t, shellsim.Normal, l.state().PoolState)

	// A free value goes through as a literal, byte for byte.
	l.fakes["backup"].SetDatabase("mgc", "ONLINE", "FULL")
	share := filepath.Join(t.TempDir(), "it's; $(Set-CsPersistentChatState -PoolState FailedOver) `n [x] \u2018q\u2019 \"d\"")
	l.ok(actInstallMirror, pluginsdk.Params{"sql_server_fqdn": "sql1.dc2.contoso.com", "file_share": share})
	calls := l.calls()
	require.Len(t, calls, 1)
	require.Equal(t, "Install-CsMirrorDatabase", calls[0].Cmdlet)
	require.Equal(t, share, calls[0].Params["FileShare"], "the cmdlet received exactly the string")
	bak := l.fakes["backup"].Statements()[1]
	require.True(t, strings.HasPrefix(bak.Args[0].(string), share+"/mgc_mirror_"), "and passed it on to SQL Server: %q", bak.Args[0])
	require.Equal(t, shellsim.Normal, l.state().PoolState, "nothing else ran")
}

func TestPlugin_InstallUninstallMirror(t *testing.T) {
	l := newLab(t)
	principal, mirror := l.fakes["backup"], l.fakes["backup_mirror"]
	principal.SetDatabase("mgc", "ONLINE", "FULL") // F4b done
	params := pluginsdk.Params{"sql_server_fqdn": "sql1.dc2.contoso.com", "file_share": `\\fs1.dc2.contoso.com\pchat-mirror`}
	out := l.ok(actInstallMirror, params)
	require.Equal(t, pluginsdk.Output{"sql_server_fqdn": "sql1.dc2.contoso.com", "database_type": "PersistentChat",
		"file_share": `\\fs1.dc2.contoso.com\pchat-mirror`, "drop_existing": false}, out)
	require.Equal(t, `$ErrorActionPreference='Stop'; Import-Module 'SkypeForBusiness'; Install-CsMirrorDatabase -DatabaseType 'PersistentChat' -SqlServerFqdn 'sql1.dc2.contoso.com' -FileShare '\\fs1.dc2.contoso.com\pchat-mirror' -Confirm:$false | ConvertTo-Json -Depth 5 -Compress`, l.calls()[0].Script)
	db, ok := mirror.Database("mgc")
	require.True(t, ok)
	require.Equal(t, "RESTORING", db.State)
	require.Equal(t, "TCP://"+principal.Addr(), db.Partner)
	require.Len(t, db.Restored, 2)
	require.True(t, strings.HasPrefix(db.Restored[0], `\\fs1.dc2.contoso.com\pchat-mirror\mgc_mirror_`), db.Restored[0])
	pdb, _ := principal.Database("mgc")
	require.Equal(t, "TCP://"+mirror.Addr(), pdb.Partner)

	pe := l.fails(l.p, actInstallMirror, params, "cs_mirror_database_exists")
	require.Contains(t, pe.Message, `Database "mgc" already exists on the mirror SQL Server "sql2.dc2.contoso.com"`)
	params["drop_existing"] = true
	l.ok(actInstallMirror, params)
	require.Contains(t, l.calls()[2].Script, "-DropExistingDatabasesOnMirror -Confirm:$false")

	out = l.ok(actUninstallMirror, pluginsdk.Params{"sql_server_fqdn": "sql1.dc2.contoso.com", "drop_existing": true})
	require.Equal(t, true, out["drop_existing"])
	_, ok = mirror.Database("mgc")
	require.False(t, ok, "the copy on the mirror is dropped")
	pdb, _ = principal.Database("mgc")
	require.Empty(t, pdb.Partner)
	l.ok(actUninstallMirror, pluginsdk.Params{"sql_server_fqdn": "sql1.dc2.contoso.com", "drop_existing": true}) // nothing left to remove

	pe = l.fails(l.p, actInstallMirror, pluginsdk.Params{"sql_server_fqdn": "sql1.dc1.contoso.com", "file_share": "/tmp/x", "database_type": "persistentchatcompliance"}, "cs_database_unavailable")
	require.Contains(t, pe.Message, `Database "mgccomp" does not exist`)
}

func TestPlugin_InstallMirror_sqlUnreachableIsRetryable(t *testing.T) {
	l := newLab(t, func(c *shellsim.CMS) {
		in := c.SQL["primary_mirror"]
		in.Addr = csshelltest.UnreachableAddr
		c.SQL["primary_mirror"] = in
	})
	pe := l.fails(l.p, actInstallMirror, pluginsdk.Params{"sql_server_fqdn": "sql1.dc1.contoso.com", "file_share": "/tmp/x"}, "cs_sql_unreachable")
	require.True(t, pe.Retryable)
	require.Contains(t, pe.Message, `Cannot connect to SQL Server "sql2.dc1.contoso.com"`)
}

func TestPlugin_TestMessage(t *testing.T) {
	l := newLab(t)
	out := l.ok(actTestMessage, nil)
	require.Equal(t, "Success", out["result"])
	require.Equal(t, "pchat01.contoso.com", out["target_fqdn"], "the target defaults to the pool of the identity")
	require.Contains(t, out["diagnosis"], "mgc on sql1.dc1.contoso.com (primary)")
	require.IsType(t, float64(0), out["latency_ms"])

	l.ok(actSetState, pluginsdk.Params{"state": "FailedOver"})
	pe := l.fails(l.p, actTestMessage, nil, "cs_test_failed")
	require.True(t, pe.Retryable)
	require.Contains(t, pe.Message, "Database mgc on sql1.dc2.contoso.com (backup) is RESTORING, not ONLINE.")
	out = l.ok(actTestMessage, pluginsdk.Params{"require_success": false, "sender_sip": "sip:test1@contoso.com", "receiver_sip": "sip:test2@contoso.com"})
	require.Equal(t, "Failure", out["result"])
	require.Contains(t, l.calls()[len(l.calls())-1].Script, "-SenderSipAddress 'sip:test1@contoso.com' -ReceiverSipAddress 'sip:test2@contoso.com'")

	l.fakes["backup"].SetDatabase("mgc", "ONLINE", "FULL")
	require.Equal(t, "Success", l.ok(actTestMessage, nil)["result"])
}

func TestPlugin_WindowsService(t *testing.T) {
	l := newLab(t)
	out := l.ok(actWindowsService, pluginsdk.Params{"operation": "status"})
	require.Equal(t, []any{map[string]any{"name": "RTCCHAT", "display_name": "Skype for Business Server Persistent Chat", "status": "Running", "activity_level": "Full"}}, out["services"])

	out = l.ok(actWindowsService, pluginsdk.Params{"operation": "stop", "name": "RTCCHAT", "graceful": true})
	require.Equal(t, true, out["changed"])
	require.Equal(t, "Stopped", out["services"].([]any)[0].(map[string]any)["status"])
	require.Contains(t, l.calls()[2].Script, "Stop-CsWindowsService -Name 'RTCCHAT' -Graceful | ConvertTo-Json")
	running, err := l.store.ServiceRunning(t.Context(), "pc1.dc1.contoso.com", "RTCCHAT")
	require.NoError(t, err)
	require.False(t, running)
	n := len(l.calls())
	require.Equal(t, false, l.ok(actWindowsService, pluginsdk.Params{"operation": "stop", "name": "RTCCHAT"})["changed"])
	require.Equal(t, []string{"Get-CsWindowsService"}, cmdlets(l.calls()[n:]))

	require.Equal(t, true, l.ok(actWindowsService, pluginsdk.Params{"operation": "start"})["changed"])
	running, err = l.store.ServiceRunning(t.Context(), "pc1.dc1.contoso.com", "RTCCHAT")
	require.NoError(t, err)
	require.True(t, running)

	l.fails(l.p, actWindowsService, pluginsdk.Params{"operation": "stop", "name": "W3SVC"}, "cs_service_not_found")
	l.fails(l.p, actWindowsService, pluginsdk.Params{"operation": "start", "graceful": true}, "bad_param")
	l.fails(l.p, actWindowsService, pluginsdk.Params{"operation": "restart"}, "bad_param")
}

func TestPlugin_Probe(t *testing.T) {
	l := newLab(t, func(c *shellsim.CMS) { c.Servers[0].ReplicationDelay = shellsim.Duration(time.Hour) })
	out, err := l.p.Probe(t.Context(), probePoolState, nil)
	require.NoError(t, err)
	require.Equal(t, pluginsdk.Output{"identity": "service:pchat01.contoso.com", "central": "Normal", "local": "Normal", "consistent": true, "server": "pc1.dc1.contoso.com"}, out)
	l.ok(actSetState, pluginsdk.Params{"state": "FailedOver"})
	out, err = l.p.Probe(t.Context(), probePoolState, nil)
	require.NoError(t, err)
	require.Equal(t, "FailedOver", out["central"])
	require.Equal(t, "Normal", out["local"], "pc1's local store lags an hour")
	require.Equal(t, false, out["consistent"])

	out, err = l.p.Probe(t.Context(), probeActiveServers, nil)
	require.NoError(t, err)
	require.Equal(t, []any{"pc1.dc1.contoso.com", "pc2.dc1.contoso.com"}, out["active_servers"])

	out, err = newWithConfig(l.cfg, "sql1.dc1.contoso.com").Probe(t.Context(), probePoolState, nil)
	require.NoError(t, err)
	require.Equal(t, "FailedOver", out["central"])
	require.Contains(t, out["local_error"], "is not a Persistent Chat server")

	_, err = l.p.Probe(t.Context(), "csshell.cs.nothing", nil)
	require.Error(t, err)
}

func TestPlugin_errors(t *testing.T) {
	l := newLab(t)
	pe := l.fails(l.with(func(c *Config) { c.Module = "Lynx" }), actGetState, nil, "cs_module_missing")
	require.Contains(t, pe.Message, "Import-Module failed on pc1.dc1.contoso.com: The specified module 'Lynx' was not loaded")
	pe = l.fails(l.with(func(c *Config) { c.Identity = "service:pchat02.contoso.com" }), actGetState, nil, "cs_identity_not_found")
	require.Contains(t, pe.Message, `Get-CsPersistentChatState failed on pc1.dc1.contoso.com: Cannot get "PersistentChatState" "service:pchat02.contoso.com" because it does not exist.`)
	require.Contains(t, pe.Hint, "cs.resolve_identity")
	pe = l.fails(l.with(func(c *Config) { c.ActiveServersCmdlet = "Get-CsPChatActiveServers" }), actGetActiveServers, nil, "cs_command_not_found")
	require.Contains(t, pe.Hint, "active_servers_cmdlet")
	l.fails(l.with(func(c *Config) { c.ActiveServerIdentity = "PChatServerCollection" }), actGetActiveServers, nil, "cs_identity_not_found")
	pe = l.fails(l.with(func(c *Config) { c.Env[shellsim.EnvCMSFile] = filepath.Join(t.TempDir(), "none.json") }), actGetState, nil, "cs_cms_unavailable")
	require.True(t, pe.Retryable)
	pe = l.fails(l.with(func(c *Config) { c.PowerShell = []string{filepath.Join(t.TempDir(), "powershell.exe"), "-Command"} }), actGetState, nil, "shell_unavailable")
	require.Contains(t, pe.Hint, "plugin_config.csshell.powershell")
	pe = l.fails(l.with(func(c *Config) {
		c.Env[envStderr0] = "Get-CsPersistentChatState : The Central Management store is read-only.\r\n    + FullyQualifiedErrorId : CmsWriteFailed,X\r\n"
	}), actGetState, nil, "cs_cms_unavailable")
	require.Contains(t, pe.Message, "The Central Management store is read-only.", "an error record is an error even with exit code 0")
	l.fails(l.with(func(c *Config) { c.Identity = "" }), actGetState, nil, "not_configured")
	l.fails(l.with(func(c *Config) { c.Identity = "service: pchat01.contoso.com" }), actGetState, nil, "not_configured")
	l.fails(l.with(func(c *Config) { c.Module = "Skype; Remove-Item" }), actGetState, nil, "not_configured")
}

func TestPlugin_EncodedCommand(t *testing.T) {
	l := newLab(t)
	p := l.with(func(c *Config) {
		c.PowerShell = []string{os.Args[0], "-NoProfile", "-NonInteractive", "-EncodedCommand"}
	})
	out, err := exec1(t, p, actSetState, pluginsdk.Params{"state": "FailedOver"})
	require.NoError(t, err)
	require.Equal(t, true, out["changed"])
	require.Equal(t, shellsim.FailedOver, l.state().PoolState)
	require.Equal(t, "Set-CsPersistentChatState", l.calls()[1].Cmdlet)
}

func TestPlugin_Execute_timeoutKillsTheShellAndItsChildren(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pids")
	p := newWithConfig(Config{
		PowerShell: []string{os.Args[0], "-Command"},
		Identity:   "service:pchat01.contoso.com",
		// Long enough for a race-built shell to start and record its pids
		// on a loaded machine; the test then waits this long.
		Timeout: 8 * time.Second,
		Env:     map[string]string{envHang: pidFile, "GORACE": goraceNoExitSleep()},
	}, "pc1.dc1.contoso.com")
	start := time.Now()
	_, err := exec1(t, p, actGetState, nil)
	pe := pluginsdk.AsError(err)
	require.Equal(t, "timeout", pe.Code, pe.Error())
	require.True(t, pe.Retryable)
	require.Less(t, time.Since(start), 20*time.Second)

	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	var shell, child int
	_, err = fmt.Sscan(string(b), &shell, &child)
	require.NoError(t, err)
	require.NoError(t, eventually(10*time.Second, 20*time.Millisecond, func() error {
		for _, pid := range []int{shell, child} {
			if !!proc.Running(pid) {
				return fmt.Errorf("pid %d still runs", pid)
			}
		}
		return nil
	}))
}

func TestPlugin_Execute_cancelKillsTheShell(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pids")
	p := newWithConfig(Config{PowerShell: []string{os.Args[0], "-Command"}, Identity: "service:pchat01.contoso.com", Env: map[string]string{envHang: pidFile}}, "pc1")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := p.Execute(ctx, &pluginsdk.Request{Action: actGetState}, &events{})
		done <- err
	}()
	require.NoError(t, eventually(20*time.Second, 20*time.Millisecond, func() error {
		if b, _ := os.ReadFile(pidFile); len(b) == 0 {
			return fmt.Errorf("the shell has not started")
		}
		return nil
	}))
	cancel()
	select {
	case err := <-done:
		require.Equal(t, "cancelled", pluginsdk.AsError(err).Code)
	case <-time.After(20 * time.Second):
		t.Fatal("cancellation did not stop the shell")
	}
	b, _ := os.ReadFile(pidFile)
	var shell, child int
	fmt.Sscan(string(b), &shell, &child)
	require.NoError(t, eventually(10*time.Second, 20*time.Millisecond, func() error {
		if !!proc.Running(shell) || !!proc.Running(child) {
			return fmt.Errorf("pids %d %d still run", shell, child)
		}
		return nil
	}))
}

func TestPlugin_concurrentShellsLoseNoUpdate(t *testing.T) {
	const n = 8
	l := newLab(t, func(c *shellsim.CMS) {
		for i := range n {
			c.Servers[0].Services = append(c.Servers[0].Services, shellsim.Service{Name: "SVC" + strconv.Itoa(i), Status: "Running"})
		}
	})
	before := l.store
	c0, err := before.Read(t.Context())
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := exec1(t, l.p, actWindowsService, pluginsdk.Params{"operation": "stop", "name": "SVC" + strconv.Itoa(i)}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	c1, err := l.store.Read(t.Context())
	require.NoError(t, err)
	require.Equal(t, c0.Version+n, c1.Version, "8 shell processes wrote concurrently, each change counted")
	for _, s := range c1.Servers[0].Services[1:] {
		require.Equal(t, "Stopped", s.Status, s.Name)
	}
}

// TestPlugin_realProcess runs the plugin as the agent does: its own process
// behind go-plugin, configured from an agent.yaml.
func TestPlugin_realProcess(t *testing.T) {
	l := newLab(t)
	doc := map[string]any{
		"host": "pc1.dc1.contoso.com",
		"plugin_config": map[string]any{"csshell": map[string]any{
			"powershell": l.cfg.PowerShell,
			"module":     "Lync",
			"identity":   "PersistentChatServer:pchat01.contoso.com",
			"timeout":    "30s",
			"env":        l.cfg.Env,
		}},
	}
	b, err := yaml.Marshal(doc)
	require.NoError(t, err)
	cfgPath := filepath.Join(t.TempDir(), "agent.yaml")
	require.NoError(t, os.WriteFile(cfgPath, b, 0o600))

	h := pluginhost.New([]pluginhost.Spec{{Name: "csshell", Path: os.Args[0], Builtin: true,
		Env: []string{envPlugin + "=1", pluginsdk.AgentConfigEnv + "=" + cfgPath}}}, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	t.Cleanup(h.Close)
	require.NoError(t, h.Start(t.Context()))
	out, err := h.Execute(t.Context(), &pluginsdk.Request{Action: actSetState, Params: pluginsdk.Params{"state": "FailedOver"}, IdempotencyKey: "run/1"}, &events{})
	require.NoError(t, err)
	require.Equal(t, true, out["changed"])
	require.Equal(t, shellsim.FailedOver, l.state().PoolState)
	require.Contains(t, l.calls()[0].Script, "Import-Module 'Lync'")

	_, err = h.Execute(t.Context(), &pluginsdk.Request{Action: actSetActiveServers, Params: pluginsdk.Params{"mode": "add", "servers": toAny(csshelltest.SiteServers("dc2"))}}, &events{})
	var pe *pluginsdk.Error
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "too_many_active_servers", pe.Code, "the error code crosses the process boundary")
	require.NotEmpty(t, pe.Hint)
}
