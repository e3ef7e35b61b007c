package mssql_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/pluginsdk"
)

// drillWorld is a primary shipping mgc to a secondary: a full backup and
// three log backups on the share, the first two copied and restored by
// "log shipping", the third not copied yet.
type drillWorld struct {
	root, share, copyDir, scratch string
	primary, backup               *server
	logs                          []string
}

func newDrillWorld(t *testing.T) *drillWorld {
	t.Helper()
	w := &drillWorld{root: t.TempDir()}
	w.share, w.copyDir, w.scratch = filepath.Join(w.root, "share"), filepath.Join(w.root, "copy"), filepath.Join(w.root, "scratch")
	require.NoError(t, os.MkdirAll(w.share, 0o755))
	require.NoError(t, os.MkdirAll(w.copyDir, 0o755))
	w.primary = startServer(t, "SQL1", w.root)
	w.backup = startServer(t, "SQL3", w.root)
	w.primary.exec(t, "CREATE DATABASE mgc")
	w.primary.exec(t, "CREATE TABLE mgc.dbo.messages (id bigint IDENTITY(1,1) PRIMARY KEY, room nvarchar(100), sender nvarchar(100), body nvarchar(max), posted_at datetime2 DEFAULT SYSUTCDATETIME())")
	insert(t, w.primary, 5)
	full := filepath.Join(w.share, "mgc_ls_init.bak")
	w.primary.must(t, "db.backup_full", pluginsdk.Params{"database": "mgc", "path": full})
	w.backup.must(t, "db.restore_full", pluginsdk.Params{"database": "mgc", "path": full, "recovery": "norecovery"})
	base := time.Now().UTC().Add(-10 * time.Minute)
	for i := 0; i < 3; i++ {
		insert(t, w.primary, 3)
		f := filepath.Join(w.share, "mgc_"+base.Add(time.Duration(i)*time.Minute).Format("20060102150405")+".trn")
		w.primary.exec(t, "BACKUP LOG mgc TO DISK = @p1 WITH INIT", f)
		w.logs = append(w.logs, f)
	}
	for _, f := range w.logs[:2] {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(w.copyDir, filepath.Base(f)), b, 0o644))
	}
	out := w.backup.must(t, "ls.restore_pending", pluginsdk.Params{"database": "mgc", "dir": w.copyDir})
	require.Len(t, out["applied"], 2)
	return w
}

func (w *drillWorld) params() pluginsdk.Params {
	return pluginsdk.Params{"database": "mgc", "source_dir": w.share, "copy_dir": w.copyDir, "scratch_dir": w.scratch}
}

func dirListing(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		info, err := e.Info()
		require.NoError(t, err)
		out[e.Name()] = info.Size()
	}
	return out
}

func (s *server) drillDatabases(t *testing.T) []string {
	t.Helper()
	rows, err := s.db.QueryContext(t.Context(), "SELECT name FROM sys.databases")
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		if strings.HasPrefix(strings.ToLower(n), "mgc_chatdr_drill_") {
			out = append(out, n)
		}
	}
	require.NoError(t, rows.Err())
	return out
}

func TestPlugin_drill_restoreCopy(t *testing.T) {
	w := newDrillWorld(t)
	// A crashed drill's leftovers: a database and a directory.
	w.backup.exec(t, "CREATE DATABASE mgc_chatdr_drill_20200101000000")
	require.NoError(t, os.MkdirAll(filepath.Join(w.scratch, "mgc_chatdr_drill_20200101000000"), 0o755))
	before := w.backup.must(t, "db.state", pluginsdk.Params{"database": "mgc"})
	copyBefore := dirListing(t, w.copyDir)

	out := w.backup.must(t, "drill.restore_copy", w.params())

	require.Equal(t, true, out["valid"], "%v", out["problems"])
	require.Equal(t, true, out["complete"], "%v", out["stop_reason"])
	require.Equal(t, float64(5+9), out["rows"], "every shipped row is in the restored copy")
	require.NotEmpty(t, out["last_message_time"])
	require.Equal(t, "ONLINE", out["recovered_state"])
	require.Len(t, out["logs_restored"], 3)
	require.Equal(t, float64(1), out["logs_pending"], "only the third log is beyond the secondary's redo point")
	require.Equal(t, []any{filepath.Base(w.logs[2])}, out["pending_copy_files"])
	require.Equal(t, filepath.Join(w.share, "mgc_ls_init.bak"), out["full_backup"])
	require.ElementsMatch(t, []any{"mgc_chatdr_drill_20200101000000"}, out["leftovers_cleaned"])
	require.Equal(t, true, out["cleaned_up"])
	require.Greater(t, out["restore_seconds"].(float64), 0.0)
	require.Greater(t, out["data_loss_window_seconds"].(float64), 0.0)
	require.Equal(t, 0.0, out["unrestorable_seconds"])
	require.Equal(t, out["newest_backup_time"], out["reached_backup_time"])
	require.GreaterOrEqual(t, out["rto_estimate_seconds"].(float64), out["rto_recovery_seconds"].(float64))
	var names []string
	for _, p := range out["phases"].([]any) {
		names = append(names, p.(map[string]any)["name"].(string))
	}
	require.Equal(t, []string{"copy_pending", "locate", "restore_full", "restore_logs", "recovery", "validate", "cleanup"}, names)

	// Nothing of the drill remains, and production is as it was.
	require.Empty(t, w.backup.drillDatabases(t), "no scratch database remains")
	left, err := os.ReadDir(w.scratch)
	require.NoError(t, err)
	require.Empty(t, left, "no scratch files remain")
	require.Equal(t, copyBefore, dirListing(t, w.copyDir), "the copy directory is untouched")
	after := w.backup.must(t, "db.state", pluginsdk.Params{"database": "mgc"})
	require.Equal(t, before, after, "the secondary is untouched")

	// Log shipping still restores onto the secondary afterwards.
	b, err := os.ReadFile(w.logs[2])
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(w.copyDir, filepath.Base(w.logs[2])), b, 0o644))
	res := w.backup.must(t, "ls.restore_pending", pluginsdk.Params{"database": "mgc", "dir": w.copyDir})
	require.Equal(t, []any{filepath.Base(w.logs[2])}, res["applied"])
}

func TestPlugin_drill_restoreCopy_stopsAtGap(t *testing.T) {
	w := newDrillWorld(t)
	require.NoError(t, os.Remove(filepath.Join(w.copyDir, filepath.Base(w.logs[1]))))
	require.NoError(t, os.Remove(w.logs[1])) // lost everywhere
	out := w.backup.must(t, "drill.restore_copy", w.params())
	require.Equal(t, false, out["complete"])
	require.Contains(t, out["stop_reason"], "gap in the log chain")
	require.Len(t, out["logs_restored"], 1)
	require.Equal(t, float64(5+3), out["rows"], "the copy stops at the gap")
	require.Greater(t, out["unrestorable_seconds"].(float64), 0.0, "backups exist past the restore point")
	require.Empty(t, w.backup.drillDatabases(t))
}

func TestPlugin_drill_restoreCopy_failureCleansUp(t *testing.T) {
	w := newDrillWorld(t)
	// The full backup is gone: the drill fails, and leaves nothing.
	require.NoError(t, os.Remove(filepath.Join(w.share, "mgc_ls_init.bak")))
	_, err := w.backup.run(t, "drill.restore_copy", w.params())
	var pe *pluginsdk.Error
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "no_full_backup", pe.Code)
	require.Empty(t, w.backup.drillDatabases(t))
	left, err := os.ReadDir(w.scratch)
	require.NoError(t, err)
	require.Empty(t, left)

	// Not a secondary: refused before anything is created.
	w.primary.exec(t, "CREATE TABLE mgc.dbo.x (id int)")
	_, err = w.primary.run(t, "drill.restore_copy", w.params())
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "not_secondary", pe.Code)
}
