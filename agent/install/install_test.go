package install

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/agent"
)

// writeConfig writes a valid agent.yaml into dir with extra appended and
// returns its path.
func writeConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	p := filepath.Join(dir, "agent.yaml")
	cfg := "host: sql1.dc2.contoso.com\nsite: dc2\nlisten: 0.0.0.0:7443\nstate_dir: state\n" +
		"tls: {ca: tls/ca.crt, cert: tls/agent.crt, key: tls/agent.key}\nshutdown_grace: 20s\n" + extra
	require.NoError(t, os.WriteFile(p, []byte(cfg), 0o600))
	return p
}

func TestServiceArgs(t *testing.T) {
	require.Equal(t, []string{"--config", "/etc/chatdr/agent.yaml"}, ServiceArgs("/etc/chatdr/agent.yaml", "", ""))
	require.Equal(t, []string{"--config", `C:\chatdr\agent.yaml`, "--log-format", "json", "--log-level", "debug"},
		ServiceArgs(`C:\chatdr\agent.yaml`, "json", "debug"))
}

func TestRecoveryActions(t *testing.T) {
	var delays []time.Duration
	for _, a := range RecoveryActions() {
		delays = append(delays, a.Delay)
	}
	require.Equal(t, []time.Duration{5 * time.Second, 10 * time.Second, 30 * time.Second}, delays)
	require.Equal(t, 24*time.Hour, ResetPeriod)
}

func TestWindowsCommandLine_quoting(t *testing.T) {
	tests := []struct {
		name string
		exe  string
		args []string
		want string
	}{
		{"plain", `C:\chatdr\chatdr-agent.exe`, []string{"--config", `C:\chatdr\agent.yaml`},
			`C:\chatdr\chatdr-agent.exe --config C:\chatdr\agent.yaml`},
		{"spaces", `C:\Program Files\chatdr\chatdr-agent.exe`, []string{"--config", `C:\Program Files\chatdr\agent.yaml`},
			`"C:\Program Files\chatdr\chatdr-agent.exe" --config "C:\Program Files\chatdr\agent.yaml"`},
		{"trailing backslash doubled inside quotes", `C:\a b\x.exe`, []string{`C:\dir with space\`},
			`"C:\a b\x.exe" "C:\dir with space\\"`},
		{"quote escaped", `x.exe`, []string{`say "hi"`}, `x.exe "say \"hi\""`},
		{"backslashes before a quote doubled", `x.exe`, []string{`a\\"b`}, `x.exe "a\\\\\"b"`},
		{"empty", `x.exe`, []string{""}, `x.exe ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, WindowsCommandLine(tt.exe, tt.args))
		})
	}
}

func TestUnitFile_content(t *testing.T) {
	u := UnitFile(Unit{
		Description:    "chatdr agent",
		Exec:           []string{"/opt/chatdr/bin/chatdr-agent", "--config", "/etc/chatdr dir/agent.yaml"},
		User:           "chatdr",
		ReadWritePaths: []string{"/var/lib/chatdr", "-/srv/ls copy"},
		StopTimeout:    25 * time.Second,
	})
	for _, line := range []string{
		"[Unit]",
		"Description=chatdr agent",
		"After=network-online.target",
		"[Service]",
		`ExecStart=/opt/chatdr/bin/chatdr-agent --config "/etc/chatdr dir/agent.yaml"`,
		"Restart=on-failure",
		"RestartSec=5",
		"KillSignal=SIGTERM",
		"TimeoutStopSec=25",
		"User=chatdr",
		"NoNewPrivileges=yes",
		"ProtectSystem=full",
		`ReadWritePaths=/var/lib/chatdr "-/srv/ls copy"`,
		"[Install]",
		"WantedBy=multi-user.target",
	} {
		require.Contains(t, strings.Split(u, "\n"), line)
	}
}

func TestUnitFile_noUserNoPaths(t *testing.T) {
	u := UnitFile(Unit{Description: "x", Exec: []string{"/bin/a"}, StopTimeout: time.Second})
	require.NotContains(t, u, "User=")
	require.NotContains(t, u, "ReadWritePaths=")
	require.Contains(t, u, "PrivateTmp=yes")
}

func TestUnitFile_noPrivateTmpWhenPathsUnderTmp(t *testing.T) {
	u := UnitFile(Unit{Description: "x", Exec: []string{"/usr/bin/a", "--config", "/etc/a.yaml"}, ReadWritePaths: []string{"/tmp/chatdr/state"}})
	require.NotContains(t, u, "PrivateTmp=")
	u = UnitFile(Unit{Description: "x", Exec: []string{"/usr/bin/a"}, ReadWritePaths: []string{"-/var/tmp/x"}})
	require.NotContains(t, u, "PrivateTmp=")
	u = UnitFile(Unit{Description: "x", Exec: []string{"/usr/bin/a"}, ReadWritePaths: []string{"/tmpfoo"}})
	require.Contains(t, u, "PrivateTmp=yes")
}

func TestSystemdQuote(t *testing.T) {
	require.Equal(t, "/a/b", systemdQuote("/a/b"))
	require.Equal(t, `"/a b"`, systemdQuote("/a b"))
	require.Equal(t, "/a/100%%", systemdQuote("/a/100%"))
	require.Equal(t, "/a/$$HOME", systemdQuote("/a/$HOME"))
	require.Equal(t, `"/a\\b\"c"`, systemdQuote(`/a\b"c`))
}

func TestReadWritePaths_stateDirRootsExtra(t *testing.T) {
	dir := t.TempDir()
	p := writeConfig(t, dir, "plugin_config:\n  mssql:\n    roots: [/srv/lscopy, data, '\\\\fs1\\share']\n")
	cfg, err := agent.LoadConfig(p)
	require.NoError(t, err)
	got := ReadWritePaths(cfg, p, []string{"/var/log/chatdr", "/srv/lscopy"})
	// state_dir first; then sorted; an extra path wins over the same root.
	require.Equal(t, []string{filepath.Join(dir, "state"), "/srv/lscopy", "-" + filepath.Join(dir, "data"), "/var/log/chatdr"}, got)
}

func TestPrepare_refusals(t *testing.T) {
	dir := t.TempDir()
	good := writeConfig(t, dir, "")
	exe := filepath.Join(dir, "chatdr-agent")
	require.NoError(t, os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755))
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("host: a\nsite: b\nlisten: nope\n"), 0o600))

	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no config", Options{Executable: exe}, "--config is required"},
		{"missing config", Options{ConfigPath: filepath.Join(dir, "nope.yaml"), Executable: exe}, "no such file"},
		{"invalid config shows the loader's error", Options{ConfigPath: bad, Executable: exe}, `listen "nope" is not host:port`},
		{"bad name", Options{Name: "chatdr agent", ConfigPath: good, Executable: exe}, "service name"},
		{"missing binary", Options{ConfigPath: good, Executable: filepath.Join(dir, "nobin")}, "not a file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := prepare(&tt.o)
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
	p, err := prepare(&Options{ConfigPath: good, Executable: exe})
	require.NoError(t, err)
	require.Equal(t, DefaultName, p.name)
	require.Equal(t, []string{"--config", good}, p.args)
}
