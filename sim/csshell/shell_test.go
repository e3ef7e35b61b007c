package csshell_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/sim/csshell"
	"github.com/chatdr/chatdr/sim/csshell/csshelltest"
	"github.com/chatdr/chatdr/sim/mssql/tds"
)

const prelude = "$ErrorActionPreference='Stop'; Import-Module 'SkypeForBusiness'; "

type result struct {
	stdout, stderr string
	code           int
}

func run(t *testing.T, opts csshell.Options, script string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := csshell.Run(t.Context(), script, opts, &out, &errb)
	return result{out.String(), errb.String(), code}
}

// ok runs script and requires exit 0 and an empty stderr.
func ok(t *testing.T, opts csshell.Options, script string) string {
	t.Helper()
	r := run(t, opts, script)
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stderr)
	return r.stdout
}

// fails runs script and requires exit 1 with errorID in stderr.
func fails(t *testing.T, opts csshell.Options, script, errorID string) string {
	t.Helper()
	r := run(t, opts, script)
	require.Equal(t, 1, r.code, "stdout: %s", r.stdout)
	require.Contains(t, r.stderr, "FullyQualifiedErrorId : "+errorID)
	require.Empty(t, r.stdout)
	return r.stderr
}

func labOpts(t *testing.T, c csshell.CMS) (csshell.Options, *csshell.Store) {
	t.Helper()
	st := newStore(t, c)
	return csshell.Options{CMSFile: st.Path(), Server: "pc1.dc1.contoso.com", TraceFile: filepath.Join(t.TempDir(), "trace.jsonl")}, st
}

func TestRun_GetCsPersistentChatState_json(t *testing.T) {
	opts, _ := labOpts(t, csshelltest.LabCMS(nil))
	out := ok(t, opts, prelude+"Get-CsPersistentChatState -Identity 'service:pchat01.contoso.com' | ConvertTo-Json -Depth 5 -Compress")
	require.Equal(t, `{"Identity":"PersistentChatServer:pchat01.contoso.com","PoolState":0}`+"\r\n", out,
		"Windows PowerShell 5.1 writes enums as numbers")

	c := csshelltest.LabCMS(nil)
	c.JSONEnums = "names"
	opts, _ = labOpts(t, c)
	out = ok(t, opts, prelude+"Get-CsPersistentChatState -Identity 'PERSISTENTCHATSERVER:pchat01.contoso.com' | ConvertTo-Json -Depth 5 -Compress")
	require.Equal(t, `{"Identity":"PersistentChatServer:pchat01.contoso.com","PoolState":"Normal"}`+"\r\n", out)

	out = ok(t, opts, "Get-CsPersistentChatState -Identity 'service:pchat01.contoso.com'")
	require.Equal(t, "\r\nIdentity  : PersistentChatServer:pchat01.contoso.com\r\nPoolState : Normal\r\n\r\n", out)

	out = ok(t, opts, "Get-CsPersistentChatState -Filter '*.contoso.com' | ConvertTo-Json")
	require.Contains(t, out, "\"PoolState\":  \"Normal\"")
	require.Empty(t, ok(t, opts, "Get-CsPersistentChatState -Filter '*.fabrikam.com' | ConvertTo-Json"), "no object, no output")
}

func TestRun_GetCsPersistentChatState_localStoreLags(t *testing.T) {
	c := csshelltest.LabCMS(nil)
	c.Servers[4].ReplicationDelay = csshell.Duration(2 * time.Second) // pc5
	opts, st := labOpts(t, c)
	_, err := st.SetState(t.Context(), csshell.FailedOver)
	require.NoError(t, err)
	central, err := st.State(t.Context())
	require.NoError(t, err)

	opts.Server = "pc5.dc2.contoso.com"
	opts.Now = func() time.Time { return central.At.Add(time.Second) }
	local := prelude + "Get-CsPersistentChatState -Identity 'service:pchat01.contoso.com' -LocalStore | ConvertTo-Json -Compress"
	require.Contains(t, ok(t, opts, local), `"PoolState":0`)
	require.Contains(t, ok(t, opts, prelude+"Get-CsPersistentChatState -Identity 'service:pchat01.contoso.com' | ConvertTo-Json -Compress"), `"PoolState":1`, "central is already FailedOver")
	opts.Now = func() time.Time { return central.At.Add(2 * time.Second) }
	require.Contains(t, ok(t, opts, local), `"PoolState":1`)

	opts.Server = ""
	require.Contains(t, fails(t, opts, local, "LocalStoreUnavailable"), "CHATDR_CS_SERVER is not set")
	opts.Server = "sql1.dc1.contoso.com"
	require.Contains(t, fails(t, opts, local, "LocalStoreUnavailable"), `"sql1.dc1.contoso.com" is not a Persistent Chat server`)
}

func TestRun_SetCsPersistentChatState(t *testing.T) {
	opts, st := labOpts(t, csshelltest.LabCMS(nil))
	set := prelude + "Set-CsPersistentChatState -Identity 'service:pchat01.contoso.com' -PoolState 'FailedOver' -Confirm:$false | ConvertTo-Json -Depth 5 -Compress"
	require.Empty(t, ok(t, opts, set), "Set- cmdlets print nothing")
	snap, err := st.State(t.Context())
	require.NoError(t, err)
	require.Equal(t, csshell.FailedOver, snap.PoolState)
	ok(t, opts, set)
	again, err := st.State(t.Context())
	require.NoError(t, err)
	require.Equal(t, snap.Version, again.Version, "the same state twice is no change")

	ok(t, opts, "Set-CsPersistentChatState -Identity 'service:pchat01.contoso.com' -PoolState normal -WhatIf")
	again, err = st.State(t.Context())
	require.NoError(t, err)
	require.Equal(t, csshell.FailedOver, again.PoolState, "-WhatIf changes nothing")

	msg := fails(t, opts, "Set-CsPersistentChatState -Identity 'service: pchat01.contoso.com' -PoolState Normal", "IdentityNotFound")
	require.Contains(t, msg, `Set-CsPersistentChatState : Cannot get "PersistentChatState" "service: pchat01.contoso.com" because it does not exist.`)
	msg = fails(t, opts, "Set-CsPersistentChatState -Identity 'service:pchat01.contoso.com' -PoolState Sideways", "CannotConvertArgumentNoMessage")
	require.Contains(t, msg, "Normal, FailedOver")
	fails(t, opts, "Set-CsPersistentChatState -Identity 'service:pchat01.contoso.com' -PoolState Normal -Instance 'x'", "NotEmulated")
}

func TestRun_injectionIsALiteral(t *testing.T) {
	opts, st := labOpts(t, csshelltest.LabCMS(nil))
	evil := "service:pchat01.contoso.com'; Set-CsPersistentChatState -Identity 'service:pchat01.contoso.com' -PoolState FailedOver; $(whoami) `n [x]\nline2"
	quoted := "'" + strings.ReplaceAll(evil, "'", "''") + "'"
	msg := fails(t, opts, prelude+"Get-CsPersistentChatState -Identity "+quoted+" | ConvertTo-Json -Compress", "IdentityNotFound")
	require.Contains(t, msg, evil, "the cmdlet received exactly the string")
	snap, err := st.State(t.Context())
	require.NoError(t, err)
	require.Equal(t, csshell.Normal, snap.PoolState, "nothing ran")

	var rec struct {
		Cmdlet string         `json:"cmdlet"`
		Params map[string]any `json:"params"`
	}
	b, err := os.ReadFile(opts.TraceFile)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(bytes.TrimSpace(b), &rec))
	require.Equal(t, "Get-CsPersistentChatState", rec.Cmdlet)
	require.Equal(t, evil, rec.Params["Identity"])

	// Without quoting, the same text is a second statement or a parse error,
	// and nothing runs.
	for _, script := range []string{
		prelude + "Get-CsPersistentChatState -Identity 'x'; Set-CsPersistentChatState -Identity 'service:pchat01.contoso.com' -PoolState FailedOver",
		prelude + "Get-CsPersistentChatState -Identity $(Set-CsPersistentChatState -Identity 'service:pchat01.contoso.com' -PoolState FailedOver)",
		prelude + "Get-CsPersistentChatState -Identity \"$(whoami)\"",
	} {
		r := run(t, opts, script)
		require.Equal(t, 1, r.code)
		snap, err := st.State(t.Context())
		require.NoError(t, err)
		require.Equal(t, csshell.Normal, snap.PoolState, script)
	}
}

func TestRun_SetCsPersistentChatActiveServer(t *testing.T) {
	opts, st := labOpts(t, csshelltest.LabCMS(nil))
	active := func() []string {
		snap, err := st.State(t.Context())
		require.NoError(t, err)
		return snap.ActiveServers
	}
	set := func(mod string) string {
		return prelude + "Set-CsPersistentChatActiveServer -Identity 'global' -ActiveServers " + mod + " -Confirm:$false | ConvertTo-Json -Depth 5 -Compress"
	}
	ok(t, opts, set("$null"))
	require.Empty(t, active())
	ok(t, opts, set("@{Add='pc5.dc2.contoso.com','PC6.dc2.contoso.com'}"))
	require.Equal(t, []string{"pc5.dc2.contoso.com", "pc6.dc2.contoso.com"}, active())
	ok(t, opts, set("@{Add='pc7.dc2.contoso.com';Remove='pc5.dc2.contoso.com'}"))
	require.Equal(t, []string{"pc6.dc2.contoso.com", "pc7.dc2.contoso.com"}, active())
	ok(t, opts, set("'pc1.dc1.contoso.com','pc2.dc1.contoso.com'"))
	require.Equal(t, []string{"pc1.dc1.contoso.com", "pc2.dc1.contoso.com"}, active(), "a plain list replaces")

	before, err := st.State(t.Context())
	require.NoError(t, err)
	msg := fails(t, opts, set("@{Add='pc3.dc1.contoso.com','pc4.dc1.contoso.com','pc5.dc2.contoso.com'}"), "TooManyActiveServers")
	require.Contains(t, msg, "at most 4 active servers")
	msg = fails(t, opts, set("@{Add='pc9.dc2.contoso.com'}"), "UnknownServer")
	require.Contains(t, msg, `"pc9.dc2.contoso.com": not a Persistent Chat server of the topology in pool "pchat01.contoso.com"`)
	fails(t, opts, set("@{Add='pc9 dc2'}"), "ParameterArgumentTransformationError")
	fails(t, opts, set("@{Insert='pc3.dc1.contoso.com'}"), "ParameterArgumentTransformationError")
	fails(t, opts, "Set-CsPersistentChatActiveServer -Identity 'PChatServerCollection' -ActiveServers $null", "IdentityNotFound")
	fails(t, opts, "Set-CsPersistentChatActiveServer -Identity 'global'", "MissingMandatoryParameter")
	fails(t, opts, "Set-CsPersistentChatActiveServer -ActiveServers $null -Swap", "AmbiguousParameterSet")
	after, err := st.State(t.Context())
	require.NoError(t, err)
	require.Equal(t, before, after, "refused changes change nothing")

	ok(t, opts, set("@{Add='pc3.dc1.contoso.com','pc4.dc1.contoso.com'}"))
	ok(t, opts, "Set-CsPersistentChatActiveServer -Swap")
	require.Equal(t, csshelltest.SiteServers("dc2"), active(), "-Swap flips active and inactive")
	ok(t, opts, set("@{Remove='pc5.dc2.contoso.com'}"))
	fails(t, opts, "Set-CsPersistentChatActiveServer -Swap", "TooManyActiveServers")
}

func TestRun_GetCsPersistentChatActiveServer(t *testing.T) {
	opts, _ := labOpts(t, csshelltest.LabCMS(nil))
	out := ok(t, opts, prelude+"Get-CsPersistentChatActiveServer -Identity 'global' | ConvertTo-Json -Depth 5 -Compress")
	require.Equal(t, `{"Identity":"global","ActiveServers":["pc1.dc1.contoso.com","pc2.dc1.contoso.com"]}`+"\r\n", out)
	fails(t, opts, "Get-CsPersistentChatActiveServer -Identity 'site:dc1'", "IdentityNotFound")
}

func TestRun_GetCsService(t *testing.T) {
	opts, _ := labOpts(t, csshelltest.LabCMS(nil))
	out := ok(t, opts, prelude+"Get-CsService -PersistentChatServer | ConvertTo-Json -Depth 5 -Compress")
	require.Equal(t, `{"Identity":"PersistentChatServer:pchat01.contoso.com","PoolFqdn":"pchat01.contoso.com","Role":"PersistentChatServer","SiteId":"Site:dc1"}`+"\r\n", out)
	fails(t, opts, "Get-CsService", "NotEmulated")
	fails(t, opts, "Get-CsService -Registrar", "NotEmulated")
}

func TestRun_CsWindowsService(t *testing.T) {
	c := csshelltest.LabCMS(nil)
	c.Servers[0].Services = []csshell.Service{
		{Name: "RTCCHAT", DisplayName: "Skype for Business Server Persistent Chat", Status: "Running"},
		{Name: "RTCCHATCOMPLIANCE", DisplayName: "Skype for Business Server Persistent Chat Compliance", Status: "Running"},
	}
	opts, st := labOpts(t, c)
	get := prelude + "Get-CsWindowsService | ConvertTo-Json -Depth 5 -Compress"
	require.Equal(t, `[{"Status":4,"Name":"RTCCHAT","ActivityLevel":"Full","DisplayName":"Skype for Business Server Persistent Chat"},`+
		`{"Status":4,"Name":"RTCCHATCOMPLIANCE","ActivityLevel":"Full","DisplayName":"Skype for Business Server Persistent Chat Compliance"}]`+"\r\n",
		ok(t, opts, get), "several objects make an array")

	require.Empty(t, ok(t, opts, prelude+"Stop-CsWindowsService -Name 'RTCCHAT' -Graceful | ConvertTo-Json -Compress"))
	running, err := st.ServiceRunning(t.Context(), "pc1.dc1.contoso.com", "RTCCHAT")
	require.NoError(t, err)
	require.False(t, running)
	require.Contains(t, ok(t, opts, "Get-CsWindowsService -Name 'rtcchat' | ConvertTo-Json -Compress"), `"Status":1`)

	ok(t, opts, "Stop-CsWindowsService")
	running, err = st.ServiceRunning(t.Context(), "pc1.dc1.contoso.com", "RTCCHATCOMPLIANCE")
	require.NoError(t, err)
	require.False(t, running, "without -Name every Lync service stops")
	ok(t, opts, "Start-CsWindowsService RTCCHAT")
	running, err = st.ServiceRunning(t.Context(), "pc1.dc1.contoso.com", "RTCCHAT")
	require.NoError(t, err)
	require.True(t, running)

	ok(t, opts, "Stop-CsWindowsService -Name 'RTCCHAT' -ComputerName 'pc5.dc2.contoso.com'")
	running, err = st.ServiceRunning(t.Context(), "pc5.dc2.contoso.com", "RTCCHAT")
	require.NoError(t, err)
	require.False(t, running, "-ComputerName acts on another server")

	msg := fails(t, opts, "Stop-CsWindowsService -Name 'W3SVC'", "NoServiceFoundForGivenName")
	require.Contains(t, msg, "Cannot find any service with service name 'W3SVC'.")
	opts.Server = ""
	fails(t, opts, "Get-CsWindowsService", "LocalStoreUnavailable")
}

func TestRun_rejectsWhatItDoesNotEmulate(t *testing.T) {
	opts, st := labOpts(t, csshelltest.LabCMS(nil))
	set := "Set-CsPersistentChatState -Identity 'service:pchat01.contoso.com' -PoolState FailedOver"
	tests := []struct{ name, script, id string }{
		{"unknown cmdlet", "Get-CsNothing -Identity 'x'", "CommandNotFoundException"},
		{"unknown module", "$ErrorActionPreference='Stop'; Import-Module 'Lynx'; " + set, "Modules_ModuleNotFound"},
		{"second pipeline", set + "; Get-CsService -PersistentChatServer", "NotEmulated"},
		{"unknown command after", set + "; Remove-Item 'C:\\x'", "CommandNotFoundException"},
		{"select-object", "Get-CsService -PersistentChatServer | Select-Object Identity", "NotEmulated"},
		{"json not last", "Get-CsService -PersistentChatServer | ConvertTo-Json | ConvertTo-Json", "NotEmulated"},
		{"error preference", "$ErrorActionPreference='Continue'; " + set, "NotEmulated"},
		{"other variable", "$VerbosePreference='Continue'; " + set, "NotEmulated"},
		{"unknown parameter", set + " -Verbose", "NamedParameterNotFound"},
		{"abbreviated parameter", "Set-CsPersistentChatState -Ident 'service:pchat01.contoso.com' -PoolState FailedOver", "NamedParameterNotFound"},
		{"missing argument", "Set-CsPersistentChatState -Identity", "MissingArgument"},
		{"extra positional", set + " 'extra'", "PositionalParameterNotFound"},
		{"twice", set + " -PoolState Normal", "ParameterAlreadyBound"},
		{"switch with a string", set + " -Confirm:'no'", "ParameterArgumentTransformationError"},
		{"null identity", "Set-CsPersistentChatState -Identity $null -PoolState FailedOver", "ParameterArgumentValidationErrorNullNotAllowed"},
		{"list identity", "Set-CsPersistentChatState -Identity 'a','b' -PoolState FailedOver", "CannotConvertArgument"},
		{"depth", "Get-CsService -PersistentChatServer | ConvertTo-Json -Depth 101", "ParameterArgumentValidationError"},
		{"json input object", "Get-CsService -PersistentChatServer | ConvertTo-Json -InputObject 'x'", "NotEmulated"},
		{"parse error", set + " -Confirm:$(0)", "NotEmulated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fails(t, opts, tt.script, tt.id)
			snap, err := st.State(t.Context())
			require.NoError(t, err)
			require.Equal(t, csshell.Normal, snap.PoolState, "a rejected script changes nothing")
		})
	}

	msg := fails(t, opts, "Get-CsNothing", "CommandNotFoundException")
	require.True(t, strings.HasPrefix(msg, "Get-CsNothing : The term 'Get-CsNothing' is not recognized as the name of a cmdlet"), msg)
	require.Contains(t, msg, "+ CategoryInfo          : ObjectNotFound: (Get-CsNothing:String) [Get-CsNothing], CommandNotFoundException")

	opts.CMSFile = filepath.Join(t.TempDir(), "missing.json")
	fails(t, opts, set, "CmsUnavailable")
	opts.CMSFile = ""
	require.Contains(t, fails(t, opts, set, "CmsUnavailable"), "CHATDR_CMS_FILE is not set")
	require.Empty(t, ok(t, opts, prelude), "a script without a cmdlet does nothing")
}

func mirrorLab(t *testing.T) (csshell.Options, *csshell.Store, map[string]*csshelltest.FakeSQL) {
	t.Helper()
	fakes, insts := csshelltest.Fakes(t)
	opts, st := labOpts(t, csshelltest.LabCMS(insts))
	return opts, st, fakes
}

func TestRun_InstallCsMirrorDatabase(t *testing.T) {
	opts, _, fakes := mirrorLab(t)
	principal, mirror := fakes[csshell.RoleBackup], fakes[csshell.RoleBackupMirror]
	principal.SetDatabase("mgc", "ONLINE", "SIMPLE") // recovered after F4b
	share := filepath.Join(t.TempDir(), "it's; $(x) `[y]")
	quoted := "'" + strings.ReplaceAll(share, "'", "''") + "'"
	install := prelude + "Install-CsMirrorDatabase -DatabaseType 'PersistentChat' -SqlServerFqdn 'sql1.dc2.contoso.com' -FileShare " + quoted + " -Confirm:$false | ConvertTo-Json -Depth 5 -Compress"
	require.Empty(t, ok(t, opts, install))

	ps, ms := principal.Statements(), mirror.Statements()
	require.Equal(t, []string{
		"SELECT state_desc, recovery_model_desc FROM sys.databases WHERE name = @p1",
		"ALTER DATABASE [mgc] SET RECOVERY FULL",
		"BACKUP DATABASE [mgc] TO DISK = @p1 WITH INIT",
		"BACKUP LOG [mgc] TO DISK = @p1 WITH INIT",
		"ALTER DATABASE [mgc] SET PARTNER = N'TCP://" + mirror.Addr() + "'",
	}, principal.SQL())
	require.Equal(t, []string{
		"SELECT state_desc, recovery_model_desc FROM sys.databases WHERE name = @p1",
		"RESTORE DATABASE [mgc] FROM DISK = @p1 WITH NORECOVERY",
		"RESTORE LOG [mgc] FROM DISK = @p1 WITH NORECOVERY",
		"ALTER DATABASE [mgc] SET PARTNER = N'TCP://" + principal.Addr() + "'",
	}, mirror.SQL())
	bak, trn := ps[2].Args[0].(string), ps[3].Args[0].(string)
	require.True(t, strings.HasPrefix(bak, share+"/mgc_mirror_") && strings.HasSuffix(bak, ".bak"), "the share path arrives verbatim: %q", bak)
	require.True(t, strings.HasPrefix(trn, share+"/mgc_mirror_") && strings.HasSuffix(trn, ".trn"), trn)
	require.Equal(t, bak, ms[1].Args[0])
	require.Equal(t, trn, ms[2].Args[0])
	require.Less(t, ms[3].Seq, ps[4].Seq, "the mirror learns its partner before the principal")
	db, _ := mirror.Database("mgc")
	require.Equal(t, "RESTORING", db.State)
	require.Equal(t, "TCP://"+principal.Addr(), db.Partner)
	require.Empty(t, fakes[csshell.RolePrimary].Statements(), "the other pair is not touched")

	msg := fails(t, opts, install, "MirrorDatabaseExists")
	require.Contains(t, msg, "Use -DropExistingDatabasesOnMirror")

	n := len(mirror.Statements())
	ok(t, opts, strings.Replace(install, "-Confirm:$false", "-DropExistingDatabasesOnMirror -Confirm:$false", 1))
	require.Equal(t, []string{
		"SELECT state_desc, recovery_model_desc FROM sys.databases WHERE name = @p1",
		"ALTER DATABASE [mgc] SET PARTNER OFF",
		"DROP DATABASE [mgc]",
		"RESTORE DATABASE [mgc] FROM DISK = @p1 WITH NORECOVERY",
		"RESTORE LOG [mgc] FROM DISK = @p1 WITH NORECOVERY",
		"ALTER DATABASE [mgc] SET PARTNER = N'TCP://" + principal.Addr() + "'",
	}, mirror.SQL()[n:])
}

func TestRun_InstallCsMirrorDatabase_failures(t *testing.T) {
	opts, _, fakes := mirrorLab(t)
	install := func(args string) string {
		return prelude + "Install-CsMirrorDatabase " + args + " -Confirm:$false | ConvertTo-Json -Compress"
	}
	share := "-FileShare '\\\\fs1.dc2.contoso.com\\pchat-mirror'"
	msg := fails(t, opts, install("-DatabaseType PersistentChat -SqlServerFqdn 'sql1.dc2.contoso.com' "+share), "DatabaseNotOnline")
	require.Contains(t, msg, `Database "mgc" on SQL Server "sql1.dc2.contoso.com" is RESTORING`)
	fails(t, opts, install("-DatabaseType PersistentChat -SqlServerFqdn 'sql2.dc2.contoso.com' "+share), "NotPrincipalStore")
	fails(t, opts, install("-DatabaseType PersistentChat -SqlServerFqdn 'sql9.dc2.contoso.com' "+share), "SqlStoreNotFound")
	fails(t, opts, install("-DatabaseType PersistentChat -SqlServerFqdn 'sql1.dc2.contoso.com' -SqlInstanceName 'RTC' "+share), "SqlStoreNotFound")
	fails(t, opts, install("-DatabaseType User -SqlServerFqdn 'sql1.dc2.contoso.com' "+share), "NotEmulated")
	fails(t, opts, install("-DatabaseType PersistentChat -SqlServerFqdn 'sql1.dc2.contoso.com'"), "MissingMandatoryParameter")
	fails(t, opts, install("-DatabaseType PersistentChat -SqlServerFqdn 'sql1.dc2.contoso.com' -Report 'r.html' "+share), "NotEmulated")
	msg = fails(t, opts, install("-DatabaseType PersistentChatCompliance -SqlServerFqdn 'sql1.dc1.contoso.com' "+share), "DatabaseNotFound")
	require.Contains(t, msg, `Database "mgccomp" does not exist`)

	fakes[csshell.RolePrimary].FailOn("BACKUP LOG", &tds.Error{Number: 3201, Class: 16, State: 1, Message: "Cannot open backup device '\\\\fs1\\x'. Operating system error 5(Access is denied.)."})
	msg = fails(t, opts, install("-DatabaseType PersistentChat -SqlServerFqdn 'sql1.dc1.contoso.com' "+share), "SqlCommandFailed")
	require.Contains(t, msg, "Operating system error 5(Access is denied.)")
	require.Contains(t, msg, `"BACKUP LOG [mgc] TO DISK = @p1 WITH INIT" failed on SQL Server "sql1.dc1.contoso.com"`)

	_, insts := csshelltest.Fakes(t)
	delete(insts, csshell.RolePrimaryMirror)
	opts, _ = labOpts(t, csshelltest.LabCMS(insts))
	msg = fails(t, opts, install("-DatabaseType PersistentChat -SqlServerFqdn 'sql1.dc1.contoso.com' "+share), "SqlUnreachable")
	require.Contains(t, msg, `Cannot connect to SQL Server "sql2.dc1.contoso.com" at 127.0.0.1:1`)
}

func TestRun_UninstallCsMirrorDatabase(t *testing.T) {
	opts, _, fakes := mirrorLab(t)
	principal, mirror := fakes[csshell.RolePrimary], fakes[csshell.RolePrimaryMirror]
	ok(t, opts, prelude+"Install-CsMirrorDatabase -DatabaseType PersistentChat -SqlServerFqdn 'sql1.dc1.contoso.com' -FileShare '/tmp/share' -Confirm:$false")
	p0, m0 := len(principal.Statements()), len(mirror.Statements())

	uninstall := prelude + "Uninstall-CsMirrorDatabase -DatabaseType 'PersistentChat' -SqlServerFqdn 'sql1.dc1.contoso.com' -DropExistingDatabasesOnMirror -Confirm:$false | ConvertTo-Json -Compress"
	require.Empty(t, ok(t, opts, uninstall))
	require.Equal(t, []string{"ALTER DATABASE [mgc] SET PARTNER OFF"}, principal.SQL()[p0:])
	require.Equal(t, []string{
		"SELECT state_desc, recovery_model_desc FROM sys.databases WHERE name = @p1",
		"ALTER DATABASE [mgc] SET PARTNER OFF",
		"DROP DATABASE [mgc]",
	}, mirror.SQL()[m0:])
	db, _ := principal.Database("mgc")
	require.Empty(t, db.Partner)
	_, exists := mirror.Database("mgc")
	require.False(t, exists)

	ok(t, opts, uninstall) // 1416 "not configured for database mirroring" is success
	ok(t, opts, "Uninstall-CsMirrorDatabase -DatabaseType PersistentChat -SqlServerFqdn 'sql2.dc1.contoso.com'")
}

func TestRun_TestCsPersistentChatMessage(t *testing.T) {
	test := prelude + "Test-CsPersistentChatMessage -TargetFqdn 'pchat01.contoso.com' | ConvertTo-Json -Depth 5 -Compress"
	type testResult struct {
		TargetFqdn string
		Result     int
		Latency    map[string]any
		Error      *string
		Diagnosis  *string
	}
	parse := func(out string) testResult {
		var r testResult
		require.NoError(t, json.Unmarshal([]byte(out), &r), out)
		return r
	}

	opts, st, fakes := mirrorLab(t)
	r := parse(ok(t, opts, test))
	require.Equal(t, 0, r.Result, "Success")
	require.Nil(t, r.Error)
	require.Contains(t, *r.Diagnosis, "through pc1.dc1.contoso.com to mgc on sql1.dc1.contoso.com (primary)")
	require.Contains(t, r.Latency, "TotalMilliseconds")
	require.Equal(t, []string{"SELECT state_desc FROM sys.databases WHERE name = 'mgc'"}, fakes[csshell.RolePrimary].SQL())

	_, err := st.SetState(t.Context(), csshell.FailedOver)
	require.NoError(t, err)
	r = parse(ok(t, opts, test))
	require.Equal(t, 1, r.Result, "Failure")
	require.Contains(t, *r.Error, "Database mgc on sql1.dc2.contoso.com (backup) is RESTORING, not ONLINE.")

	fakes[csshell.RoleBackup].SetDatabase("mgc", "ONLINE", "FULL")
	require.NoError(t, st.SetReplicationDelay(t.Context(), "pc1.dc1.contoso.com", time.Hour))
	require.NoError(t, st.SetReplicationDelay(t.Context(), "pc2.dc1.contoso.com", time.Hour))
	r = parse(ok(t, opts, test))
	require.Equal(t, 1, r.Result)
	require.Contains(t, *r.Error, "pc1.dc1.contoso.com (local store shows Normal, central FailedOver)")

	_, err = st.SetActive(t.Context(), []string{"pc5.dc2.contoso.com"})
	require.NoError(t, err)
	r = parse(ok(t, opts, test))
	require.Equal(t, 0, r.Result, "%+v", r)

	_, err = st.SetActive(t.Context(), nil)
	require.NoError(t, err)
	r = parse(ok(t, opts, test))
	require.Contains(t, *r.Error, "no active Persistent Chat server")

	opts, _ = labOpts(t, csshelltest.LabCMS(nil))
	r = parse(ok(t, opts, test))
	require.Equal(t, 1, r.Result)
	require.Contains(t, *r.Error, "cannot use database mgc on sql1.dc1.contoso.com (primary)")

	c := csshelltest.LabCMS(nil)
	c.Pool.Registrars = []string{"fe01.contoso.com"}
	opts, _ = labOpts(t, c)
	r = parse(ok(t, opts, strings.Replace(test, "pchat01.contoso.com", "fe02.contoso.com", 1)))
	require.Contains(t, *r.Error, `Cannot reach target "fe02.contoso.com"`)
	fails(t, opts, "Test-CsPersistentChatMessage -TargetFqdn 'fe01.contoso.com' -SenderSipAddress 'sip:a@contoso.com'", "AmbiguousParameterSet")
	fails(t, opts, "Test-CsPersistentChatMessage -TargetFqdn 'fe01.contoso.com' -SenderSipAddress 'a@contoso.com' -ReceiverSipAddress 'sip:b@contoso.com'", "InvalidSipAddress")
	fails(t, opts, "Test-CsPersistentChatMessage -TargetFqdn 'fe01.contoso.com' -SenderCredential 'x'", "NotEmulated")
}

// mainCmd runs csshell.Main in a child process (the test binary).
func mainCmd(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), envMain+"=1", csshell.EnvCMSFile+"=", csshell.EnvServer+"=", "GORACE="+goraceNoExitSleep()), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, isExit := err.(*exec.ExitError); isExit {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{out.String(), errb.String(), code}
}

func TestMain_commandLine(t *testing.T) {
	opts, _ := labOpts(t, csshelltest.LabCMS(nil))
	script := prelude + "Get-CsPersistentChatState -Identity 'service:pchat01.contoso.com' -LocalStore | ConvertTo-Json -Depth 5 -Compress"
	want := `{"Identity":"PersistentChatServer:pchat01.contoso.com","PoolState":0}` + "\r\n"

	r := mainCmd(t, []string{csshell.EnvCMSFile + "=" + opts.CMSFile, csshell.EnvServer + "=pc1.dc1.contoso.com"},
		"-NoProfile", "-NonInteractive", "-Command", script)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, want, r.stdout)

	r = mainCmd(t, nil, "--cms", opts.CMSFile, "--server=pc2.dc1.contoso.com", "-NoProfile", "-NonInteractive", "-EncodedCommand", csshell.EncodeCommand(script))
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, want, r.stdout)

	r = mainCmd(t, []string{csshell.EnvCMSFile + "=" + opts.CMSFile}, "-Command", "Get-CsPersistentChatState", "-Identity", "'service:pchat01.contoso.com'", "|", "ConvertTo-Json", "-Compress")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, want, r.stdout, "the arguments after -Command are joined with spaces, as powershell.exe does")

	r = mainCmd(t, []string{csshell.EnvCMSFile + "=" + opts.CMSFile}, "-EncodedCommand", csshell.EncodeCommand("Get-CsPersistentChatState -Identity 'service:pchät01.contoso.com'"))
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, `"service:pchät01.contoso.com" because it does not exist`)

	for _, args := range [][]string{
		{"-NoProfile"},
		{"-Command"},
		{"-Command", "-"},
		{"-File", "x.ps1"},
		{"-EncodedCommand", "!!"},
		{"-EncodedCommand", csshell.EncodeCommand("Get-X"), "more"},
		{"-OutputFormat", "XML", "-Command", "Get-X"},
	} {
		r := mainCmd(t, nil, args...)
		require.Equal(t, 1, r.code, "%q", args)
		require.NotEmpty(t, r.stderr)
		require.Empty(t, r.stdout)
	}
}
