package agent_test

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/agent"
	"github.com/chatdr/chatdr/plugins"
)

// FuzzLoadConfig checks the loader of agent.yaml: no panic; a refusal
// names the file; an accepted file has a host, a site, a host:port listen
// address, absolute state, TLS and plugin paths, and only built-in plugin
// names that exist.
func FuzzLoadConfig(f *testing.F) {
	for _, s := range []string{
		"host: pc1.dc1.contoso.com\nsite: dc1\nroles: [chat_server]\nlisten: 0.0.0.0:7444\nstate_dir: state\ntls:\n  ca: ca.crt\n  cert: agent.crt\n  key: agent.key\nplugins:\n  builtin: [mssql, csshell, service]\n  dir: plugins\n  pinned: {x: 00ff}\nplugin_config:\n  mssql:\n    roots: [/srv/share]\nshutdown_grace: 3s\n",
		"host: h\nsite: s\nlisten: :1\nstate_dir: /s\ntls: {ca: /a, cert: /b, key: /c}\nplugins: {builtin: []}\n",
		"host: h\nsite: s\nlisten: :1\nstate_dir: /s\ntls: {ca: /a, cert: /b, key: /c}\nplugins: {builtin: [nope]}\n",
		"host: h\nsite: s\nlisten: nowhere\n", "host: h\n", "", "plugin_config: {a: &x [*x]}\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "agent.yaml")
		require.NoError(t, os.WriteFile(path, data, 0o600))
		c, err := agent.LoadConfig(path)
		if err != nil {
			require.Nil(t, c)
			require.Contains(t, err.Error(), path)
			return
		}
		require.NotEmpty(t, c.Host)
		require.NotEmpty(t, c.Site)
		_, _, err = net.SplitHostPort(c.Listen)
		require.NoError(t, err)
		for _, p := range []string{c.StateDir, c.TLS.CA, c.TLS.Cert, c.TLS.Key} {
			require.True(t, filepath.IsAbs(p), "%q", p)
		}
		if c.Plugins.Dir != "" {
			require.True(t, filepath.IsAbs(c.Plugins.Dir), "%q", c.Plugins.Dir)
		}
		if c.Plugins.Builtin != nil {
			for _, n := range *c.Plugins.Builtin {
				_, ok := plugins.New(n)
				require.True(t, ok, "%q", n)
			}
		}
		require.Positive(t, c.ShutdownGrace)
	})
}
