package mssql_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

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

// The tail-log backup never overwrites another backup (a log backup the
// job wrote in the same second would be lost, and the chain broken), and
// with dir it names the file itself, to the millisecond, so that it sorts
// after every file of the backup job; a second run finds it.
func TestPlugin_tailLogBackup_dirAndNoOverwrite(t *testing.T) {
	root := t.TempDir()
	share := filepath.Join(root, "share")
	require.NoError(t, os.MkdirAll(share, 0o755))
	primary := startServer(t, "SQL1", root)
	primary.exec(t, "CREATE DATABASE mgc")
	primary.exec(t, "CREATE TABLE mgc.dbo.messages (id bigint IDENTITY(1,1) PRIMARY KEY, room nvarchar(100), sender nvarchar(100), body nvarchar(max), posted_at datetime2 DEFAULT SYSUTCDATETIME())")
	primary.exec(t, "BACKUP DATABASE mgc TO DISK = @p1", filepath.Join(share, "mgc.bak"))
	insert(t, primary, 2)
	jobFile := filepath.Join(share, "mgc_"+time.Now().UTC().Format("20060102150405")+".trn") // this second: the tail would collide with it
	primary.exec(t, "BACKUP LOG mgc TO DISK = @p1", jobFile)
	before, err := os.ReadFile(jobFile)
	require.NoError(t, err)
	insert(t, primary, 1)

	_, err = primary.run(t, "db.tail_log_backup", pluginsdk.Params{"database": "mgc", "path": jobFile})
	require.ErrorContains(t, err, "overwriting it would break the log chain")
	after, err := os.ReadFile(jobFile)
	require.NoError(t, err)
	require.Equal(t, before, after, "the job's log backup is untouched")
	require.Equal(t, "ONLINE", primary.must(t, "db.state", pluginsdk.Params{"database": "mgc"})["state"])
	_, err = primary.run(t, "db.tail_log_backup", pluginsdk.Params{"database": "mgc", "path": jobFile, "dir": share})
	require.ErrorContains(t, err, "not both")

	out := primary.must(t, "db.tail_log_backup", pluginsdk.Params{"database": "mgc", "dir": share})
	require.Equal(t, true, out["changed"])
	name := filepath.Base(out["path"].(string))
	require.Regexp(t, `^mgc_\d{17}\.trn$`, name)
	require.Greater(t, name, filepath.Base(jobFile), "sorts after the backup job's files")
	require.Equal(t, "RESTORING", primary.must(t, "db.state", pluginsdk.Params{"database": "mgc"})["state"])
	again := primary.must(t, "db.tail_log_backup", pluginsdk.Params{"database": "mgc", "dir": share})
	require.Equal(t, false, again["changed"])
	require.Equal(t, out["path"], again["path"], "the retry finds the tail it took")
	require.Equal(t, out["last_lsn"], again["last_lsn"])
}
