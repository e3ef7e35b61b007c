package service

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzValidName checks the service names the plugin accepts (they reach
// systemctl's and sc.exe's command lines and the process backend's file
// names): an accepted name is 1-256 ASCII letters, digits, '$', '_', '-'
// or '.', and can never be taken for an option or a path.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"RTCCHAT", "MSSQL$RTC", "chatdr-sim.chat", "-rf", ".", "..", "../x", "a/b", `a\b`, "a b", "", strings.Repeat("a", 257), "\u00e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !validName(s) {
			return
		}
		require.NotEmpty(t, s)
		require.LessOrEqual(t, len(s), 256)
		require.False(t, strings.HasPrefix(s, "-") || strings.HasPrefix(s, "."), "%q", s)
		require.False(t, strings.ContainsAny(s, "/\\ \t\r\n\x00'\";&|`"), "%q", s)
		for _, r := range s {
			require.Less(t, r, rune(0x80), "%q", s)
		}
	})
}
