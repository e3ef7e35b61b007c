package mssql

import (
	"errors"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/pluginsdk"
)

// unbracket reads a T-SQL bracket-quoted identifier the way SQL Server's
// lexer does ("]]" is a literal "]", the first lone "]" ends it) and
// returns the name and what follows the closing bracket.
func unbracket(s string) (name, rest string, ok bool) {
	if !strings.HasPrefix(s, "[") {
		return "", "", false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != ']' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == ']' {
			b.WriteByte(']')
			i++
			continue
		}
		return b.String(), s[i+1:], true
	}
	return "", "", false
}

// FuzzQuoteIdent checks that any string bracket-quoted by quoteIdent reads
// back as exactly that string and that nothing follows the closing bracket:
// a name can never end the identifier early and append SQL.
func FuzzQuoteIdent(f *testing.F) {
	for _, s := range []string{"mgc", "", "]", "]]", "a]; DROP DATABASE mgc; --", "[x]", "a\x00b", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := quoteIdent(s)
		name, rest, ok := unbracket(q)
		require.True(t, ok, "%q", q)
		require.Equal(t, s, name)
		require.Empty(t, rest, "text after the identifier in %q", q)
	})
}

// FuzzCheckDatabase checks the database names the plugin accepts from the
// controller (they come from the topology and reach SQL text): an accepted
// name is a regular identifier, not a system database, and comes back
// bracket-quoted unchanged; anything else is a terminal bad_param error.
func FuzzCheckDatabase(f *testing.F) {
	for _, s := range []string{"mgc", "mgccomp", "MASTER", "tempdb", "_a$#@1", "1abc", "a b", "a]b", "a'b", "", strings.Repeat("a", 129), "m\u00e9"} {
		f.Add(s)
	}
	plain := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_@$#]*$`)
	f.Fuzz(func(t *testing.T, name string) {
		q, err := checkDatabase(name)
		if err != nil {
			var pe *pluginsdk.Error
			require.True(t, errors.As(err, &pe), "%T", err)
			require.Equal(t, "bad_param", pe.Code)
			require.Empty(t, q)
			system := map[string]bool{"master": true, "model": true, "msdb": true, "tempdb": true}
			require.False(t, plain.MatchString(name) && len(name) <= 128 && !system[strings.ToLower(name)], "%q refused: %v", name, err)
			return
		}
		require.True(t, plain.MatchString(name), "%q accepted", name)
		require.LessOrEqual(t, len(name), 128)
		require.Equal(t, "["+name+"]", q)
		got, rest, ok := unbracket(q)
		require.True(t, ok)
		require.Equal(t, name, got)
		require.Empty(t, rest)
	})
}

// FuzzConfine checks the path confinement applied to every path parameter
// (backup files, shares, copy directories): an accepted path is absolute,
// clean, and the root or below it; a refusal is a terminal error.
func FuzzConfine(f *testing.F) {
	roots := []string{filepath.FromSlash("/srv/share"), filepath.FromSlash("/var/opt/mssql/backup")}
	if runtime.GOOS == "windows" {
		roots = []string{`C:\Backups`, `\\fs1\share`}
	}
	for _, s := range []string{"/srv/share/mgc.bak", "/srv/share", "/srv/share/../etc/passwd", "/srv/shared/x", "/srv/share//a/./b", "relative/x", "", "/srv/share/a\nb", `C:\Backups\..\Windows`, `\\fs1\share\x.trn`, "/var/opt/mssql/backup/.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := confine(roots, p)
		if err != nil {
			var pe *pluginsdk.Error
			require.True(t, errors.As(err, &pe), "%T", err)
			require.Contains(t, []string{"bad_param", "path_not_allowed"}, pe.Code)
			return
		}
		require.True(t, filepath.IsAbs(got), "%q", got)
		require.Equal(t, filepath.Clean(got), got)
		require.False(t, strings.ContainsAny(got, "\x00\r\n"))
		inside := false
		for _, r := range roots {
			g, rr := got, r
			if runtime.GOOS == "windows" {
				g, rr = strings.ToLower(g), strings.ToLower(rr)
			}
			if g == rr || strings.HasPrefix(g, strings.TrimSuffix(rr, string(filepath.Separator))+string(filepath.Separator)) {
				inside = true
			}
		}
		require.True(t, inside, "%q (from %q) is outside %v", got, p, roots)
	})
}

// FuzzParseLSN checks the parser of the LSNs SQL Server prints (RESTORE
// HEADERONLY, sys.database_recovery_status): an accepted LSN is a
// non-negative integer whose decimal form parses back to the same value;
// empty means NULL.
func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"39000000012300001", "0", "", " 12 ", "-1", "+5", "0x10", "1e5", "007", "99999999999999999999999999"} {
		f.Add(s)
	}
	digits := regexp.MustCompile(`^(0|[1-9][0-9]*)$`)
	f.Fuzz(func(t *testing.T, s string) {
		l, ok, err := parseLSN(s)
		if err != nil {
			require.False(t, ok)
			return
		}
		if !ok {
			require.Empty(t, strings.TrimSpace(s))
			return
		}
		str := l.String()
		require.Regexp(t, digits, str)
		again, ok, err := parseLSN(str)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, 0, l.Cmp(again))
	})
}

// FuzzFileTime checks the parser of log-shipping file names
// (<db>_<yyyyMMddHHmmss[fff]>.trn, found on a share): an accepted name is
// the database's, and its time formats back to the digits of the name.
func FuzzFileTime(f *testing.F) {
	for _, s := range []string{"mgc_20261129023000.trn", "MGC_20261129023000123.TRN", "/share/mgc_20261129023000.trn", "mgc_20261399023000.trn", "mgc_2026112902300.trn", "mgccomp_20261129023000.trn", "mgc_20261129023000.trn.tmp", "mgc_99991231235959.trn"} {
		f.Add("mgc", s)
	}
	f.Add("a.b", "aXb_20260101000000.trn")
	f.Add("a.b", "a.b_20260101000000.trn")
	f.Fuzz(func(t *testing.T, db, file string) {
		if _, err := checkDatabase(db); err != nil {
			t.Skip("the plugin checks the database name first")
		}
		at, ok := fileTime(db, file)
		if !ok {
			require.True(t, at.IsZero())
			return
		}
		base := filepath.Base(file)
		require.True(t, strings.EqualFold(base[:len(db)+1], db+"_"), "%q is not a file of %q", base, db)
		require.True(t, strings.EqualFold(base[len(base)-4:], ".trn"))
		stamp := base[len(db)+1 : len(base)-4]
		require.Equal(t, stamp[:14], at.UTC().Format("20060102150405"))
	})
}

// FuzzPlanLogRestore checks the plan built from RESTORE HEADERONLY of the
// log backups on a share (any LSNs, forks and order): the applied backups
// form an unbroken chain from the redo point on the database's fork, every
// file lands in at most one list, and without a stop every file is applied
// or skipped.
func FuzzPlanLogRestore(f *testing.F) {
	const fork = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
	f.Add(uint16(100), []byte{100, 100, 0, 200, 100, 0, 44, 50, 1})
	f.Add(uint16(0), []byte{})
	f.Add(uint16(250), []byte{200, 100, 0, 100, 100, 0, 255, 0, 0})
	f.Fuzz(func(t *testing.T, redo uint16, spec []byte) {
		var logs []backupHeader
		for i := 0; i+2 < len(spec) && len(logs) < 64; i += 3 {
			first := uint64(spec[i]) * 3
			h := backupHeader{File: string(rune('a'+len(logs)%26)) + strings.Repeat("x", len(logs)/26) + ".trn", BackupType: 2, RecoveryForkID: fork}
			h.FirstLSN, _, _ = parseLSN(strconv.FormatUint(first, 10))
			h.LastLSN, _, _ = parseLSN(strconv.FormatUint(first+uint64(spec[i+1]), 10))
			if spec[i+2]%5 == 1 {
				h.RecoveryForkID = "11111111-2222-3333-4444-555555555555"
			}
			logs = append(logs, h)
		}
		start, _, _ := parseLSN(strconv.FormatUint(uint64(redo), 10))
		p := planLogRestore(start, fork, logs)

		reached := start
		for _, h := range p.Apply {
			require.LessOrEqual(t, h.FirstLSN.Cmp(reached), 0, "gap before %s", h.File)
			require.Positive(t, h.LastLSN.Cmp(reached), "%s adds nothing", h.File)
			require.True(t, strings.EqualFold(h.RecoveryForkID, fork))
			reached = h.LastLSN
		}
		require.Equal(t, 0, reached.Cmp(p.Reached))
		for _, h := range p.Skipped {
			require.LessOrEqual(t, h.LastLSN.Cmp(p.Reached), 0, "%s skipped but not applied", h.File)
		}
		seen := map[string]bool{}
		for _, name := range append(append(names(p.Apply), names(p.Skipped)...), unappliedNames(p.Unapplied)...) {
			require.False(t, seen[name], "%s in two lists", name)
			seen[name] = true
		}
		if p.Stop == "" {
			require.Empty(t, p.Unapplied)
			require.Len(t, seen, len(logs))
		} else {
			require.NotEmpty(t, p.Unapplied, "a stop leaves the rest unapplied")
		}
	})
}

func names(hs []backupHeader) []string {
	out := make([]string, 0, len(hs))
	for _, h := range hs {
		out = append(out, h.File)
	}
	return out
}

func unappliedNames(us []unapplied) []string {
	out := make([]string, 0, len(us))
	for _, u := range us {
		out = append(out, u.File)
	}
	return out
}
