package mssql_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/pluginsdk"
)

// lsProbe returns the mgc entry of the mssql.log_shipping probe on s.
func lsProbe(t *testing.T, s *server) map[string]any {
	t.Helper()
	out, err := s.plugin.Probe(t.Context(), "mssql.log_shipping", pluginsdk.Params{"database": "mgc"})
	require.NoError(t, err)
	dbs, _ := out["databases"].([]any)
	require.Len(t, dbs, 1, "%v", out)
	m, _ := dbs[0].(map[string]any)
	return m
}

// TestProbe_logShipping_dirs: the secondary reports whether the backup
// share is readable and the copy directory writable, which preflight
// turns into go / no-go checks; the write test leaves nothing behind.
func TestProbe_logShipping_dirs(t *testing.T) {
	root := t.TempDir()
	share, copyDir := filepath.Join(root, "share"), filepath.Join(root, "copy")
	require.NoError(t, os.MkdirAll(share, 0o755))
	require.NoError(t, os.MkdirAll(copyDir, 0o755))
	primary := startServer(t, "SQL1", root)
	backup := startServer(t, "SQL3", root)
	primary.exec(t, "CREATE DATABASE mgc")
	full := filepath.Join(share, "mgc_full.bak")
	primary.must(t, "db.backup_full", pluginsdk.Params{"database": "mgc", "path": full})
	backup.must(t, "db.restore_full", pluginsdk.Params{"database": "mgc", "path": full, "recovery": "norecovery"})
	backup.must(t, "ls.setup_secondary", pluginsdk.Params{"database": "mgc", "primary_server": "SQL1",
		"source_dir": share, "dest_dir": copyDir, "mode": "norecovery"})

	m := lsProbe(t, backup)
	require.Equal(t, "secondary", m["role"])
	require.Equal(t, true, m["source_readable"], "%v", m)
	require.Equal(t, true, m["copy_dir_writable"], "%v", m)
	require.Equal(t, share, m["source_dir"])
	require.Equal(t, copyDir, m["copy_dir"])
	left, err := os.ReadDir(copyDir)
	require.NoError(t, err)
	require.Empty(t, left, "the write test removes its file")

	// After a failover removed log shipping (F1), the saved snapshot still
	// names the share a failback writes to.
	backup.must(t, "ls.snapshot", pluginsdk.Params{"database": "mgc"})
	backup.must(t, "ls.remove_secondary", pluginsdk.Params{"database": "mgc"})
	m = lsProbe(t, backup)
	require.Equal(t, "none", m["role"])
	require.Equal(t, true, m["source_readable"], "%v", m)

	// The share goes away with the primary site; the copy directory is
	// replaced by a file, so nothing can be created in it.
	require.NoError(t, os.RemoveAll(share))
	require.NoError(t, os.RemoveAll(copyDir))
	require.NoError(t, os.WriteFile(copyDir, nil, 0o644))
	m = lsProbe(t, backup)
	require.Equal(t, false, m["source_readable"], "%v", m)
	require.NotEmpty(t, m["source_error"])
	require.Equal(t, false, m["copy_dir_writable"], "%v", m)
	require.NotEmpty(t, m["copy_dir_error"])

	// The primary is no secondary: nothing about directories.
	m = lsProbe(t, primary)
	require.NotContains(t, m, "source_readable")
}
