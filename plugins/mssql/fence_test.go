package mssql_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/pluginsdk"
)

// db.fence leaves a writable old primary non-writable with its tail kept in
// a file; a second run changes nothing; when the backup cannot be written
// the database is taken OFFLINE instead.
func TestPlugin_fence(t *testing.T) {
	root := t.TempDir()
	share := filepath.Join(root, "share")
	require.NoError(t, os.MkdirAll(share, 0o755))
	old := startServer(t, "SQL1", root)
	old.exec(t, "CREATE DATABASE mgc")
	old.exec(t, "CREATE TABLE mgc.dbo.messages (id bigint IDENTITY(1,1) PRIMARY KEY, room nvarchar(100), sender nvarchar(100), body nvarchar(max), posted_at datetime2 DEFAULT SYSUTCDATETIME())")
	insert(t, old, 3)
	old.exec(t, "BACKUP DATABASE mgc TO DISK = @p1", filepath.Join(share, "mgc.bak"))
	insert(t, old, 2) // the orphaned tail: written after the last backup

	path := filepath.Join(share, "mgc_fence.trn")
	out := old.must(t, "db.fence", pluginsdk.Params{"database": "mgc", "path": path})
	require.Equal(t, true, out["changed"])
	require.Equal(t, "tail_log_norecovery", out["method"])
	require.Equal(t, "RESTORING", old.must(t, "db.state", pluginsdk.Params{"database": "mgc"})["state"])
	require.FileExists(t, path)
	require.NotEmpty(t, out["last_lsn"])

	again := old.must(t, "db.fence", pluginsdk.Params{"database": "mgc", "path": path})
	require.Equal(t, false, again["changed"], "check-then-act: a RESTORING database is not writable")
	absent := old.must(t, "db.fence", pluginsdk.Params{"database": "nope", "path": path})
	require.Equal(t, "absent", absent["state"])
	require.Equal(t, false, absent["changed"])

	// The share is gone: the database goes OFFLINE instead.
	other := startServer(t, "SQL2", root)
	other.exec(t, "CREATE DATABASE mgc")
	gone := filepath.Join(root, "lost-share", "mgc_fence.trn")
	out = other.must(t, "db.fence", pluginsdk.Params{"database": "mgc", "path": gone})
	require.Equal(t, "offline", out["method"], "%v", out)
	require.NotEmpty(t, out["backup_error"])
	require.Equal(t, "OFFLINE", other.must(t, "db.state", pluginsdk.Params{"database": "mgc"})["state"])
	_, err := other.run(t, "db.fence", pluginsdk.Params{"database": "mgc", "path": "/etc/passwd"})
	require.Error(t, err, "paths stay confined to the configured roots")
}
