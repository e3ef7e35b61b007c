package csshell

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	shellsim "github.com/chatdr/chatdr/sim/csshell"
)

func TestPsQuote(t *testing.T) {
	tests := map[string]string{
		"":                   "''",
		"plain":              "'plain'",
		"it's":               "'it''s'",
		"''":                 "''''''",
		"a\u2019b":           "'a\u2019\u2019b'",
		"\u2018\u201a\u201b": "'\u2018\u2018\u201a\u201a\u201b\u201b'",
		"$(x); `n \"y\" [z]": "'$(x); `n \"y\" [z]'",
		"line1\nline2":       "'line1\nline2'",
	}
	for in, want := range tests {
		require.Equal(t, want, psQuote(in), "%q", in)
	}
}

// TestPsQuote_simulatorReadsTheSameString proves with the simulator's
// parser, which follows PowerShell's tokenizer for single-quoted strings,
// that a quoted value comes back unchanged and stays one argument.
func TestPsQuote_simulatorReadsTheSameString(t *testing.T) {
	for _, s := range []string{"it's", "a'; Remove-Item C:\\ -Recurse; '", "$(whoami)", "`", "\u2019; x; \u2018", "a\nb\r\nc", "@{Add='x'}", "-Confirm:$true", "'"} {
		roundTrip(t, s)
	}
}

func roundTrip(t *testing.T, s string) {
	t.Helper()
	script, err := shellsim.ParseScript(buildScript("SkypeForBusiness", "Get-X", []arg{param("P", s), flag("LocalStore")}))
	require.NoError(t, err, "%q", s)
	require.Len(t, script.Statements, 3)
	cmd := script.Statements[2].Pipeline[0]
	require.Equal(t, "Get-X", cmd.Name)
	require.Len(t, cmd.Elements, 3, "the value stays one argument: %q", s)
	require.Equal(t, shellsim.VString, cmd.Elements[1].Value.Kind)
	require.Equal(t, s, cmd.Elements[1].Value.Str)
	require.Equal(t, "LocalStore", cmd.Elements[2].Param)
}

// FuzzPsQuote checks the round trip for any string.
func FuzzPsQuote(f *testing.F) {
	for _, s := range []string{"", "'", "''", "a'b", "\u2019", "$(x)", "`\n", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
			t.Skip("the plugin never quotes invalid UTF-8 or NUL (argv cannot carry NUL; values are validated)")
		}
		roundTrip(t, s)
	})
}

func TestBuildScript(t *testing.T) {
	got := buildScript("Lync", "Set-CsPersistentChatActiveServer", []arg{
		param("Identity", "global"), listModifier(false, []string{"a.contoso.com", "b.contoso.com"}, []string{"c.contoso.com"}), noConfirm(),
	})
	require.Equal(t, "$ErrorActionPreference='Stop'; Import-Module 'Lync'; Set-CsPersistentChatActiveServer -Identity 'global' -ActiveServers @{Add='a.contoso.com','b.contoso.com';Remove='c.contoso.com'} -Confirm:$false | ConvertTo-Json -Depth 5 -Compress", got)
	require.Equal(t, arg("-ActiveServers $null"), listModifier(true, nil, nil))
	_, err := shellsim.ParseScript(got)
	require.NoError(t, err)
}

func TestEncodeCommand_matchesTheSimulator(t *testing.T) {
	s := "Get-X -P 'pchät € \U0001F600'"
	require.Equal(t, shellsim.EncodeCommand(s), encodeCommand(s))
	require.Equal(t, "RwBlAHQALQBYAA==", encodeCommand("Get-X"), "UTF-16LE, base64")
}

func TestValidators(t *testing.T) {
	type tc struct {
		fn   func(string) bool
		good []string
		bad  []string
	}
	tests := map[string]tc{
		"fqdn": {validFQDN,
			[]string{"pc1.dc1.contoso.com", "PC1.DC1.CONTOSO.COM", "localhost", "a-b.c"},
			[]string{"", "pc1 .contoso.com", "pc1.contoso.com.", "-a.com", "a-.com", "a..b", "a;b", "a'b", "a\nb", "a$(b)", "a`b", strings.Repeat("a", 64) + ".com"}},
		"identity": {validIdentity,
			[]string{"service:pchat01.contoso.com", "PersistentChatServer:pchat01.contoso.com", "service:1-PersistentChatServer-1"},
			[]string{"service: pchat01.contoso.com", "global", "service:", ":x", "service:a'b", "service:a;b", "service:a b", "service:$(x)"}},
		"active identity": {validActiveIdentity,
			[]string{"global", "PChatServerCollection", "site:dc1", "service:pchat01.contoso.com"},
			[]string{"", "glo bal", "global'", "global;x", "$null"}},
		"sip": {validSIP,
			[]string{"sip:test1@contoso.com", "SIP:first.last+x@sub.contoso.com"},
			[]string{"test1@contoso.com", "sip:a'b@contoso.com", "sip:a@b;c", "sip:@contoso.com", "sip:a b@contoso.com"}},
		"share": {validShare,
			[]string{`\\fs1\share`, `\\fs1.dc2.contoso.com\pchat-mirror\sub dir`, `D:\Backups`, "/srv/share", "/tmp/it's; $(x) `[y]"},
			[]string{"", "relative", `C:relative`, `\single`, "/tmp/a\nb", "/tmp/a\tb", "/tmp/\x00", "\xff"}},
		"instance": {validInstance,
			[]string{"RTC", "SQLEXPRESS", "_a1", "MSSQL$X"},
			[]string{"", "1abc", "a b", "a'b", "abcdefghijklmnopq"}},
		"service": {validService,
			[]string{"RTCCHAT", "MSSQL$RTC", "w3svc"},
			[]string{"", "RTC CHAT", "RTC'", "a;b"}},
		"module": {validModule,
			[]string{"SkypeForBusiness", "Lync", "My.Module"},
			[]string{"", "Skype For", "Lync;x", "'Lync'"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			for _, s := range tt.good {
				require.True(t, tt.fn(s), "%q should be valid", s)
			}
			for _, s := range tt.bad {
				require.False(t, tt.fn(s), "%q should be invalid", s)
			}
		})
	}
}

func TestConfig_withDefaults(t *testing.T) {
	c, err := Config{}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, []string{"powershell.exe", "-NoProfile", "-NonInteractive", "-Command"}, c.PowerShell)
	require.Equal(t, "SkypeForBusiness", c.Module)
	require.Equal(t, "global", c.ActiveServerIdentity)
	require.Equal(t, []string{"Normal", "FailedOver"}, c.Enums["PoolState"])
	require.False(t, c.encoded())

	c, err = Config{PowerShell: []string{"pwsh", "-EncodedCommand"}, Enums: map[string][]string{"PoolState": {"FailedOver", "Normal"}}}.withDefaults()
	require.NoError(t, err)
	require.True(t, c.encoded())
	require.Equal(t, []string{"FailedOver", "Normal"}, c.Enums["PoolState"], "the enum table is configurable")
	require.Equal(t, []string{"Success", "Failure"}, c.Enums["Result"])

	for _, bad := range []Config{
		{Identity: "service: pchat01.contoso.com"},
		{Module: "Lync; rm"},
		{ActiveServerIdentity: "global'"},
		{ActiveServersCmdlet: "Get-X | Remove-Item"},
		{PowerShell: []string{""}},
		{Env: map[string]string{"A=B": "c"}},
	} {
		_, err := bad.withDefaults()
		require.ErrorIs(t, err, ErrConfig, "%+v", bad)
	}
}
