package csshell

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// FuzzParseShellError checks the reader of PowerShell's error records on
// stderr: no panic, valid UTF-8 in every field, a cmdlet name only when it
// has the Verb-Noun form, a message whenever stderr says anything, and an
// error for the operator that carries a code.
func FuzzParseShellError(f *testing.F) {
	for _, s := range []string{
		"Set-CsPersistentChatState : Cannot get \"x\".\r\nAt line:1 char:64\r\n+ ...\r\n    + CategoryInfo          : ObjectNotFound: (:) [], X\r\n    + FullyQualifiedErrorId : IdentityNotFound,Y\r\n",
		"At line:1 char:10\n+ Get-X -Id $(y)\n+          ~~\nUnexpected token '$(' in expression or statement.\n    + FullyQualifiedErrorId : UnexpectedToken\n",
		"\uFEFFpowershell.exe: cannot open the console\n", "", "+", "\xff\xfe", "   \r\n\t", "A-B : \n+ FullyQualifiedErrorId :",
		strings.Repeat("x", 3000),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stderr string) {
		e := parseShellError(stderr)
		for _, s := range []string{e.Cmdlet, e.Message, e.Category, e.ID} {
			require.True(t, utf8.ValidString(s), "%q", s)
		}
		if e.Cmdlet != "" {
			require.True(t, validCmdletName(e.Cmdlet), "%q", e.Cmdlet)
		}
		clean := strings.TrimPrefix(strings.ToValidUTF8(stderr, "\uFFFD"), "\uFEFF")
		require.Equal(t, strings.TrimSpace(clean) == "", e.Message == "", "message %q of %q", e.Message, stderr)
		pe := classify("SkypeForBusiness", "Get-CsPersistentChatState", "pchat01.contoso.com", e)
		require.NotNil(t, pe)
		require.NotEmpty(t, pe.Code)
		require.NotEmpty(t, pe.Message)
	})
}

// FuzzValidators checks the validators of the values that reach a
// Management Shell script (pool and server FQDNs, identities, SIP
// addresses, service, instance and module names, shares; they come from
// the topology, the CLI's flags through the plan, and the agent's
// configuration): an accepted fixed-form value holds none of PowerShell's
// quoting, separating or expanding characters, and every accepted value,
// quoted, reaches the cmdlet as one string argument equal to itself.
func FuzzValidators(f *testing.F) {
	for _, s := range []string{
		"pc1.dc1.contoso.com", "service:pchat01.contoso.com", "global", "sip:a.b+c@contoso.com", "MSSQL$RTC", "SkypeForBusiness",
		`\\fs1\share\x`, "/tmp/it's; $(x)", "C:/x", "a b", "a'b", "a\u2019b", "service:a;b", "sip:a@b;c", "-Confirm:$true", "",
	} {
		f.Add(s)
	}
	const meta = " \t\r\n'\"`;|&(){}[]<>,=#\u2018\u2019\u201a\u201b\u201c\u201d\u201e"
	fixed := map[string]func(string) bool{
		"fqdn": validFQDN, "identity": validIdentity, "active identity": validActiveIdentity, "module": validModule,
		"cmdlet": validCmdletName, "service": validService, "instance": validInstance, "sip": validSIP,
	}
	f.Fuzz(func(t *testing.T, s string) {
		accepted := false
		for name, valid := range fixed {
			if !valid(s) {
				continue
			}
			accepted = true
			require.False(t, strings.ContainsAny(s, meta), "%s %q accepted", name, s)
			for _, r := range s {
				require.Less(t, r, rune(utf8.RuneSelf), "%s %q accepted", name, s)
			}
		}
		if validShare(s) {
			accepted = true
			require.True(t, utf8.ValidString(s))
			require.False(t, strings.ContainsAny(s, "\x00\r\n"), "share %q accepted", s)
		}
		if accepted {
			roundTrip(t, s)
		}
	})
}
