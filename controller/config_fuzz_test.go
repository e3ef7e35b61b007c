package controller_test

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/controller"
)

// FuzzLoadConfig checks the loader of controller.yaml: no panic; a refusal
// names the file; an accepted file has a host:port listen address, absolute
// topology, state and TLS paths, and positive timeouts and concurrency.
func FuzzLoadConfig(f *testing.F) {
	for _, s := range []string{
		"listen: 127.0.0.1:7443\nmetrics_listen: 127.0.0.1:9100\ntopology: topology.yaml\nstate_dir: state\ntls:\n  ca: ca.crt\n  cert: controller.crt\n  key: controller.key\nfleet:\n  agent_timeout: 2s\n  max_agent_timeout: 30s\n  concurrency: 8\nshutdown_grace: 5s\n",
		"listen: :7443\ntopology: /etc/chatdr/t.yaml\nstate_dir: /var/lib/chatdr\ntls: {ca: /a, cert: /b, key: /c}\n",
		"listen: nowhere\n", "listen: :1\ntopology: t\nstate_dir: s\ntls: {ca: a, cert: b, key: c}\nfleet: {concurrency: -1}\n",
		"listen: :1\ntopology: t\nstate_dir: s\n", "listen: :1\ntopology: t\nstate_dir: s\ntls: {ca: a, cert: b, key: c}\nshutdown_grace: -1s\n", "", "x: 1\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "controller.yaml")
		require.NoError(t, os.WriteFile(path, data, 0o600))
		c, err := controller.LoadConfig(path)
		if err != nil {
			require.Nil(t, c)
			require.Contains(t, err.Error(), path)
			return
		}
		_, _, err = net.SplitHostPort(c.Listen)
		require.NoError(t, err)
		for _, p := range []string{c.Topology, c.StateDir, c.TLS.CA, c.TLS.Cert, c.TLS.Key} {
			require.True(t, filepath.IsAbs(p), "%q", p)
		}
		require.Positive(t, c.Fleet.AgentTimeout)
		require.Positive(t, c.Fleet.MaxAgentTimeout)
		require.Positive(t, c.Fleet.Concurrency)
		require.Positive(t, c.ShutdownGrace)
	})
}
