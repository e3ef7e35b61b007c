package cfgfile_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/chatdr/chatdr/internal/cfgfile"
)

// fuzzConfig has the shapes the daemons' configuration files use.
type fuzzConfig struct {
	Name    string               `yaml:"name"`
	Grace   cfgfile.Duration     `yaml:"grace"`
	TLS     cfgfile.TLS          `yaml:"tls"`
	Roles   []string             `yaml:"roles"`
	Pinned  map[string]string    `yaml:"pinned"`
	Limit   int                  `yaml:"limit"`
	Enabled *bool                `yaml:"enabled"`
	Section map[string]yaml.Node `yaml:"section"`
}

// FuzzLoad checks the strict YAML loader of the daemons' configuration
// files: no panic (YAML anchors, aliases, tags and all); every refusal
// names the file; durations are never negative; whatever it accepts,
// written back as YAML, loads again to the same value (as YAML).
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"name: a\ngrace: 2s\ntls:\n  ca: ca.crt\n  cert: c.crt\n  key: c.key\nroles: [chat_server, sql_primary]\npinned: {x: abc}\nlimit: 3\nenabled: true\n",
		"grace: -1s\n", "grace: 5\n", "grace: [1]\n", "unknown: 1\n", "name: a\n---\nname: b\n", "", "# only a comment\n",
		"a: &x [*x]\n", "name: !!binary aGk=\n", "section: {mssql: {roots: [/srv]}}\n", "limit: 99999999999999999999\n", "\t- x",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.yaml")
		require.NoError(t, os.WriteFile(path, data, 0o600))
		var c fuzzConfig
		if err := cfgfile.Load(path, &c); err != nil {
			require.Contains(t, err.Error(), path)
			return
		}
		require.GreaterOrEqual(t, time.Duration(c.Grace), time.Duration(0))
		c.Section = nil // nodes keep positions; the rest must round-trip
		out, err := yaml.Marshal(c)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, out, 0o600))
		var again fuzzConfig
		require.NoError(t, cfgfile.Load(path, &again), "written back:\n%s", out)
		again.Section = nil
		back, err := yaml.Marshal(again)
		require.NoError(t, err)
		require.Equal(t, string(out), string(back), "nil and empty lists marshal alike")
	})
}
