package mssql

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	plugin "github.com/chatdr/chatdr/plugins/mssql"
	"github.com/chatdr/chatdr/pluginsdk"
)

type nopEmitter struct{}

func (nopEmitter) Progress(string, int64, int64, string) {}
func (nopEmitter) Log(string, string)                    {}

// pluginFor points the mssql action plugin at an instance.
func pluginFor(t *testing.T, ti *testInstance, root string) func(action string, params pluginsdk.Params) pluginsdk.Output {
	host, port, _ := net.SplitHostPort(ti.addr)
	p, _ := strconv.Atoi(port)
	t.Setenv("CHATDR_TEST_SQL_PASSWORD", "pass")
	pl := plugin.NewWithConfig(plugin.Config{
		Instance: plugin.InstanceConfig{Server: host, Port: p, User: "sa", PasswordEnv: "CHATDR_TEST_SQL_PASSWORD", Encrypt: "disable"},
		Roots:    []string{root},
	}, t.TempDir())
	return func(action string, params pluginsdk.Params) pluginsdk.Output {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		out, err := pl.Execute(ctx, &pluginsdk.Request{Action: "mssql." + action, Params: params, IdempotencyKey: action}, nopEmitter{})
		require.NoError(t, err, "%s %v", action, params)
		return out
	}
}

// TestPluginActions_logShippingFailover drives log shipping and the
// failover steps with the plugin's own actions (domain §5.5, F0c–F4b).
func TestPluginActions_logShippingFailover(t *testing.T) {
	root := t.TempDir()
	share, dest := filepath.Join(root, "share"), filepath.Join(root, "copy")
	for _, d := range []string{share, dest} {
		require.NoError(t, mkdir(d))
	}
	p := openNamed(t, "SQLP", "", func(c *Config) { c.Share = share })
	s := openNamed(t, "SQLB", "", func(c *Config) { c.Share = share })
	pdb, sdb := p.connect(t, "master"), s.connect(t, "master")
	exec(t, pdb, "CREATE DATABASE mgc")
	exec(t, pdb, "USE mgc; "+createMessages)
	exec(t, pdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', 'first')")
	full := filepath.Join(share, "mgc_full.bak")
	exec(t, pdb, "BACKUP DATABASE mgc TO DISK = @p1", full)
	exec(t, sdb, "RESTORE DATABASE mgc FROM DISK = @p1 WITH NORECOVERY", full)

	onP, onS := pluginFor(t, p, root), pluginFor(t, s, root)
	out := onP("ls.setup_primary", pluginsdk.Params{"database": "mgc", "backup_dir": share, "backup_share": share,
		"secondary_server": "SQLB", "interval_seconds": float64(1)})
	require.Equal(t, true, out["changed"])
	out = onS("ls.setup_secondary", pluginsdk.Params{"database": "mgc", "primary_server": "SQLP", "source_dir": share,
		"dest_dir": dest, "interval_seconds": float64(1)})
	require.Equal(t, true, out["changed"])
	// Idempotent.
	require.Equal(t, false, onP("ls.setup_primary", pluginsdk.Params{"database": "mgc", "backup_dir": share, "backup_share": share,
		"secondary_server": "SQLB", "interval_seconds": float64(1)})["changed"])

	for i := range 5 {
		exec(t, pdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', @p1)", fmt.Sprint("m", i))
	}
	before := func() uint64 { i, _ := s.in.Database("mgc"); return i.LSN }()
	eventually(t, 15*time.Second, "the secondary to restore log backups", func() bool {
		i, _ := s.in.Database("mgc")
		return i.LSN > before
	})

	// F0c, F0d: snapshot, then stop and disable the jobs.
	snap := onS("ls.snapshot", pluginsdk.Params{"database": "mgc"})
	require.Equal(t, "LSCopy_SQLP_mgc", snap["copy_job"])
	require.Equal(t, "LSRestore_SQLP_mgc", snap["restore_job"])
	onS("ls.disable_jobs", pluginsdk.Params{"database": "mgc"})
	require.EqualValues(t, 0, queryInt(t, sdb, "SELECT COUNT(*) FROM msdb.dbo.sysjobs WHERE enabled = 1"))
	// The primary fences itself with a tail-log backup.
	onP("db.tail_log_backup", pluginsdk.Params{"database": "mgc", "path": filepath.Join(share, "mgc_99991231235959.trn")})
	// F1–F4b.
	onS("ls.remove_secondary", pluginsdk.Params{"database": "mgc"})
	require.EqualValues(t, 0, queryInt(t, sdb, "SELECT COUNT(*) FROM msdb.dbo.sysjobs"))
	onS("ls.copy_pending", pluginsdk.Params{"database": "mgc"})
	onS("ls.restore_pending", pluginsdk.Params{"database": "mgc", "dir": dest})
	onS("db.kill_sessions", pluginsdk.Params{"database": "mgc"})
	onS("db.recover", pluginsdk.Params{"database": "mgc"})
	require.EqualValues(t, 6, queryInt(t, sdb, "SELECT COUNT(*) FROM mgc.dbo.messages"))
}

// TestPluginActions_mirroring reads, fails over and removes mirroring with
// the plugin's actions.
func TestPluginActions_mirroring(t *testing.T) {
	mp := setupMirroring(t)
	waitState(t, mp.pdb, "PRINCIPAL", "SYNCHRONIZED")
	root := t.TempDir()
	onP, onM := pluginFor(t, mp.p, root), pluginFor(t, mp.m, root)
	st := onP("mirror.status", pluginsdk.Params{"database": "mgc"})
	require.Equal(t, true, st["mirrored"])
	require.Equal(t, "PRINCIPAL", st["role"])
	out := onP("mirror.failover", pluginsdk.Params{"database": "mgc"})
	require.Equal(t, "MIRROR", out["role"])
	require.Equal(t, "PRINCIPAL", onM("mirror.status", pluginsdk.Params{"database": "mgc"})["role"])
	out = onM("mirror.remove", pluginsdk.Params{"database": "mgc"})
	require.Equal(t, true, out["changed"])
	require.Equal(t, false, onP("mirror.status", pluginsdk.Params{"database": "mgc"})["mirrored"])
}

func mkdir(d string) error { return os.MkdirAll(d, 0o755) }
