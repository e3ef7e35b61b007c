package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRunService_usage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no verb", nil, 2, "Usage: chatdr-agent service install"},
		{"unknown verb", []string{"restart"}, 2, `unknown command "restart"`},
		{"install without config", []string{"install"}, 2, "--config is required"},
		{"stray argument", []string{"uninstall", "extra"}, 2, `unexpected argument "extra"`},
		{"help", []string{"--help"}, 0, "chatdr-agent service uninstall"},
		{"bad config", []string{"install", "--config", filepath.Join(t.TempDir(), "none.yaml"), "--unit-dir", t.TempDir()}, 1, "agent configuration is not usable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			require.Equal(t, tt.code, runService(tt.args, &out, &errOut))
			require.Contains(t, errOut.String(), tt.want)
		})
	}
}

func TestRunService_installUninstallLinux(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("systemd unit only on Linux")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("host: pc1.dc1.contoso.com\nsite: dc1\nlisten: 127.0.0.1:7443\nstate_dir: state\ntls: {ca: ca.crt, cert: a.crt, key: a.key}\n"), 0o600))
	units := filepath.Join(dir, "units")
	var out, errOut strings.Builder
	require.Equal(t, 0, runService([]string{"install", "--config", cfg, "--unit-dir", units, "--name", "chatdr-agent-t", "--log-format", "json"}, &out, &errOut), errOut.String())
	data, err := os.ReadFile(filepath.Join(units, "chatdr-agent-t.service"))
	require.NoError(t, err)
	require.Contains(t, string(data), " --config "+cfg+" --log-format json\n")
	require.Contains(t, out.String(), "wrote ")

	require.Equal(t, 1, runService([]string{"install", "--config", cfg, "--unit-dir", units, "--name", "chatdr-agent-t"}, &out, &errOut))
	require.Contains(t, errOut.String(), "already installed")

	t.Setenv("PATH", dir) // and the unit is outside systemd's directories: uninstall only removes the file
	require.Equal(t, 0, runService([]string{"uninstall", "--unit-dir", units, "--name", "chatdr-agent-t"}, &out, &errOut), errOut.String())
	require.NoFileExists(t, filepath.Join(units, "chatdr-agent-t.service"))
}
