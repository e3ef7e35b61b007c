package csshell

import (
	"encoding/base64"
	"encoding/binary"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Every value reaches the script either as a PowerShell single-quoted
// literal (psQuote) or, for the module name and switches, as a validated
// token. Values with a fixed form (FQDNs, identities, SIP addresses, enum
// values, service and instance names) are validated strictly first; free
// values (the file share) are only required to be free of control
// characters and are then passed verbatim as a literal.

var (
	fqdnRE           = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
	identityRE       = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*:[A-Za-z0-9][A-Za-z0-9.-]*$`)
	activeIdentityRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*(:[A-Za-z0-9][A-Za-z0-9.-]*)?$`)
	moduleRE         = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9.]{0,63}$`)
	cmdletRE         = regexp.MustCompile(`^[A-Za-z]+-[A-Za-z0-9]+$`)
	serviceRE        = regexp.MustCompile(`^[A-Za-z0-9_$.-]{1,80}$`)
	instanceRE       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]{0,15}$`)
	sipRE            = regexp.MustCompile(`^(?i)sip:[a-z0-9._%+-]{1,64}@([a-z0-9-]+\.)*[a-z0-9-]+$`)
)

func validFQDN(s string) bool           { return len(s) <= 253 && fqdnRE.MatchString(s) }
func validIdentity(s string) bool       { return len(s) <= 300 && identityRE.MatchString(s) }
func validActiveIdentity(s string) bool { return len(s) <= 300 && activeIdentityRE.MatchString(s) }
func validModule(s string) bool         { return moduleRE.MatchString(s) }
func validCmdletName(s string) bool     { return cmdletRE.MatchString(s) }
func validService(s string) bool        { return serviceRE.MatchString(s) }
func validInstance(s string) bool       { return instanceRE.MatchString(s) }
func validSIP(s string) bool            { return len(s) <= 300 && sipRE.MatchString(s) }

// validShare accepts a UNC path (\\host\share…), a drive path (D:\…) or an
// absolute POSIX path (the lab), without control characters.
func validShare(s string) bool {
	if s == "" || len(s) > 1024 || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	switch {
	case strings.HasPrefix(s, `\\`) && len(s) > 2:
		return true
	case len(s) >= 3 && s[1] == ':' && (s[2] == '\\' || s[2] == '/') && unicode.IsLetter(rune(s[0])):
		return true
	case strings.HasPrefix(s, "/"):
		return true
	}
	return false
}

// isSingleQuote reports the characters PowerShell's tokenizer treats as a
// single quote: ' and the typographic ‘ ’ ‚ ‛.
func isSingleQuote(r rune) bool {
	return r == '\'' || r == '\u2018' || r == '\u2019' || r == '\u201a' || r == '\u201b'
}

// psQuote returns s as a PowerShell verbatim string: inside '…' nothing is
// special except a single-quote character, which is doubled. The
// typographic single quotes are doubled too, because PowerShell also ends
// a literal on them. s must not contain NUL (callers validate).
func psQuote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for _, r := range s {
		if isSingleQuote(r) {
			b.WriteRune(r)
		}
		b.WriteRune(r)
	}
	b.WriteByte('\'')
	return b.String()
}

// psList returns 'a','b' for a PowerShell array argument.
func psList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = psQuote(s)
	}
	return strings.Join(q, ",")
}

// arg is one rendered parameter of a cmdlet call.
type arg string

func param(name, value string) arg { return arg("-" + name + " " + psQuote(value)) }
func flag(name string) arg         { return arg("-" + name) }
func noConfirm() arg               { return arg("-Confirm:$false") }

// listModifier renders -ActiveServers' PSListModifier: $null clears,
// @{Add=…;Remove=…} changes.
func listModifier(clear bool, add, remove []string) arg {
	if clear {
		return "-ActiveServers $null"
	}
	var parts []string
	if len(add) > 0 {
		parts = append(parts, "Add="+psList(add))
	}
	if len(remove) > 0 {
		parts = append(parts, "Remove="+psList(remove))
	}
	return arg("-ActiveServers @{" + strings.Join(parts, ";") + "}")
}

// buildScript returns the one script of a call: stop at the first error,
// import the module, run the cmdlet, print its objects as compact JSON.
func buildScript(module, cmdlet string, args []arg) string {
	var b strings.Builder
	b.WriteString("$ErrorActionPreference='Stop'; Import-Module ")
	b.WriteString(psQuote(module))
	b.WriteString("; ")
	b.WriteString(cmdlet)
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(string(a))
	}
	b.WriteString(" | ConvertTo-Json -Depth 5 -Compress")
	return b.String()
}

// encodeCommand encodes a script for -EncodedCommand: base64 of UTF-16LE.
func encodeCommand(script string) string {
	u := utf16.Encode([]rune(script))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// fqdnSet validates names as FQDNs and removes duplicates
// (case-insensitive), keeping the first spelling.
func fqdnSet(names []string) ([]string, []string) {
	var out, bad []string
	for _, n := range names {
		if !validFQDN(n) {
			bad = append(bad, n)
			continue
		}
		if !containsFold(out, n) {
			out = append(out, n)
		}
	}
	return out, bad
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, s) })
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !containsFold(b, x) {
			return false
		}
	}
	return true
}

// minus returns the items of a not in b (case-insensitive).
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !containsFold(b, x) {
			out = append(out, x)
		}
	}
	return out
}
