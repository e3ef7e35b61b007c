package csshell

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// FuzzParseArgs checks the simulator's powershell.exe command line (the
// arguments come from the plugin, or anyone who runs it): no panic; a
// script given with -EncodedCommand comes back exactly; one given with
// -Command is the rest of the line joined by spaces.
func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{
		"-NoProfile\n-NonInteractive\n-Command\nGet-X -A 'b'",
		"--cms=/tmp/cms.json\n--server\npc1\n-EncodedCommand\n" + EncodeCommand("Get-X"),
		"-ep\nBypass\n-c\n-", "-InputFormat\nXML", "-enc\n!!", "-e\nYQ==", "--trace", "-Command", "", "-nop\n-x",
	} {
		f.Add(s, "Get-CsPersistentChatState -Identity 'service:p' | ConvertTo-Json")
	}
	f.Fuzz(func(t *testing.T, line, script string) {
		var opts Options
		_, err := parseArgs(strings.Split(line, "\n"), &opts)
		if err != nil {
			require.NotEmpty(t, err.Error())
		}
		if !utf8.ValidString(script) {
			return
		}
		opts = Options{}
		got, err := parseArgs([]string{"-NoProfile", "--server", "pc1", "-EncodedCommand", EncodeCommand(script)}, &opts)
		require.NoError(t, err)
		require.Equal(t, script, got)
		require.Equal(t, "pc1", opts.Server)
		if script != "-" && script != "" {
			got, err = parseArgs([]string{"-NonInteractive", "-Command", script}, &opts)
			require.NoError(t, err)
			require.Equal(t, script, got)
		}
	})
}

// FuzzLoadCMS checks the reader of the central management store file: no
// panic; anything it refuses is ErrInvalidCMS; anything it accepts is
// normalized once and for all (written back and read again, it is equal).
func FuzzLoadCMS(f *testing.F) {
	for _, s := range []string{
		`{"pool":{"fqdn":"p.contoso.com"},"servers":[{"fqdn":"a.contoso.com"}]}`,
		`{"pool":{"fqdn":"p.contoso.com"},"servers":[{"fqdn":"a"},{"fqdn":"b","replication_delay":"2s"}],"history":[{"version":1,"pool_state":"FailedOver","active_servers":["b"]}]}`,
		`{"pool":{"fqdn":"p.contoso.com"},"servers":[{"fqdn":"a"}],"sql":{"primary":{"fqdn":"s","addr":"127.0.0.1:1"}},"databases":{"chat":"mgc"}}`,
		`{"pool":{"fqdn":"p contoso"},"servers":[{"fqdn":"a.contoso.com"}]}`,
		`{"pool":{"fqdn":"p.contoso.com"},"servers":[{"fqdn":"a"}],"history":[{"version":1,"pool_state":"Broken"}]}`,
		`{`, `null`, `{}`, `[]`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 11, 29, 2, 30, 0, 0, time.UTC)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "cms.json")
		require.NoError(t, os.WriteFile(path, data, 0o600))
		s := &Store{path: path, now: func() time.Time { return now }}
		c, err := s.Read(context.Background())
		if err != nil {
			require.True(t, errors.Is(err, ErrInvalidCMS), "%v", err)
			return
		}
		require.NoError(t, writeAtomic(path, &c))
		again, err := s.Read(context.Background())
		require.NoError(t, err)
		want, err := json.Marshal(c)
		require.NoError(t, err)
		got, err := json.Marshal(again)
		require.NoError(t, err)
		require.JSONEq(t, string(want), string(got))
	})
}
