package mssql

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-sql/sqlexp"
	"github.com/stretchr/testify/require"
)

// messages runs q and returns its INFO messages in order.
func messages(t *testing.T, db *sql.DB, q string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	retmsg := &sqlexp.ReturnMessage{}
	rows, err := db.QueryContext(ctx, q, retmsg)
	require.NoError(t, err)
	var got []string
	for active := true; active; {
		switch m := retmsg.Message(ctx).(type) {
		case sqlexp.MsgNotice:
			got = append(got, m.Message.String())
		case sqlexp.MsgNext:
			for rows.Next() {
			}
		case sqlexp.MsgNextResultSet:
			active = rows.NextResultSet()
		case sqlexp.MsgError:
			t.Fatalf("%s: %v", q, m.Error)
		}
	}
	require.NoError(t, rows.Close())
	return got
}

type header struct {
	backupType            int64
	dbName                string
	first, last, dbBackup string
	fork                  []byte
	copyOnly, beginsChain bool
	finish                time.Time
}

func headerOnly(t *testing.T, db *sql.DB, path string) header {
	t.Helper()
	var h header
	require.NoError(t, db.QueryRowContext(t.Context(), "RESTORE HEADERONLY FROM DISK = @p1", path).Scan(
		new(any), new(any), &h.backupType, new(any), new(any), new(any), new(any), new(any), new(any), &h.dbName, new(any),
		new(any), new(any), &h.first, &h.last, new(any), &h.dbBackup, new(any), &h.finish, new(any), new(any),
		new(any), new(any), new(any), new(any), new(any), new(any), new(any), &h.fork, new(any), new(any), new(any),
		new(any), new(any), new(any), new(any), new(any), &h.beginsChain, new(any), new(any), &h.copyOnly,
		new(any), new(any), new(any), new(any), new(any), new(any), new(any), new(any), new(any)))
	return h
}

func redoStart(t *testing.T, db *sql.DB) any {
	t.Helper()
	var lsn any
	require.NoError(t, db.QueryRowContext(t.Context(), "SELECT DISTINCT redo_start_lsn FROM sys.master_files WHERE database_id = DB_ID('mgc')").Scan(&lsn))
	return lsn
}

func stateOf(t *testing.T, db *sql.DB, name string) (string, bool) {
	t.Helper()
	var state string
	var standby bool
	require.NoError(t, db.QueryRowContext(t.Context(), "SELECT state_desc, is_in_standby FROM sys.databases WHERE name = @p1", name).Scan(&state, &standby))
	return state, standby
}

func requireSQLError(t *testing.T, err error, last int32, first int32, contains string) {
	t.Helper()
	e := sqlError(t, err)
	require.Equal(t, last, e.Number, e.Message)
	require.Equal(t, first, e.All[0].Number, e.All[0].Message)
	require.Contains(t, e.All[0].Message, contains)
}

func TestInstance_BackupRestore_logChain(t *testing.T) {
	share := t.TempDir()
	primary := openTestInstance(t, "")
	pdb := setupMessages(t, primary, 10)
	pmaster := primary.connect(t, "master")
	full := filepath.Join(share, "mgc_full.bak")
	got := messages(t, pmaster, "BACKUP DATABASE mgc TO DISK = N'"+full+"' WITH INIT, FORMAT, CHECKSUM, COMPRESSION, STATS = 25")
	require.Equal(t, []string{"25 percent processed.", "50 percent processed.", "75 percent processed.", "100 percent processed."}, got[:4])
	require.True(t, strings.HasPrefix(got[len(got)-1], "BACKUP DATABASE successfully processed "), got)

	logs := []string{filepath.Join(share, "mgc_1.trn"), filepath.Join(share, "mgc_2.trn")}
	for i, l := range logs {
		for range 5 {
			exec(t, pdb, "INSERT INTO dbo.messages (room, sender) VALUES ('r', 's')")
		}
		exec(t, pmaster, "BACKUP LOG mgc TO DISK = @p1 WITH INIT", l)
		_ = i
	}
	for range 5 {
		exec(t, pdb, "INSERT INTO dbo.messages (room, sender) VALUES ('tail', 's')")
	}
	// A tail-log backup needs exclusive access.
	tail := filepath.Join(share, "mgc_tail.trn")
	_, err := pmaster.ExecContext(t.Context(), "BACKUP LOG mgc TO DISK = @p1 WITH NORECOVERY", tail)
	requireSQLError(t, err, 3013, 3101, "Exclusive access could not be obtained because the database is in use.")
	require.NoError(t, pdb.Close())
	require.Eventually(t, func() bool { return primary.in.sessionsIn(nil, "mgc") == 0 }, 5*time.Second, 5*time.Millisecond)
	exec(t, pmaster, "BACKUP LOG mgc TO DISK = @p1 WITH INIT, NORECOVERY", tail)
	state, _ := stateOf(t, pmaster, "mgc")
	require.Equal(t, "RESTORING", state)
	_, err = pmaster.ExecContext(t.Context(), "SELECT COUNT(*) FROM mgc.dbo.messages")
	e := sqlError(t, err)
	require.Equal(t, int32(927), e.Number)
	require.Equal(t, "Database 'mgc' cannot be opened. It is in the middle of a restore.", e.Message)

	// Headers chain: each log starts where the previous one ended.
	hf := headerOnly(t, pmaster, full)
	require.Equal(t, int64(1), hf.backupType)
	require.Equal(t, "mgc", hf.dbName)
	require.True(t, hf.beginsChain)
	h1, h2, ht := headerOnly(t, pmaster, logs[0]), headerOnly(t, pmaster, logs[1]), headerOnly(t, pmaster, tail)
	require.Equal(t, int64(2), h1.backupType)
	require.Equal(t, hf.first, h1.first)
	require.Equal(t, h1.last, h2.first)
	require.Equal(t, h2.last, ht.first)
	require.Equal(t, hf.fork, ht.fork)

	// Secondary.
	secondary := openTestInstance(t, "")
	sm := secondary.connect(t, "master")
	exec(t, sm, "RESTORE DATABASE mgc FROM DISK = @p1 WITH NORECOVERY, MOVE 'mgc' TO 'D:\\data\\mgc.mdf', MOVE 'mgc_log' TO 'D:\\data\\mgc_log.ldf'", full)
	state, _ = stateOf(t, sm, "mgc")
	require.Equal(t, "RESTORING", state)
	require.Equal(t, hf.last, string(redoStart(t, sm).([]byte)))
	var redoFork []byte
	require.NoError(t, sm.QueryRowContext(t.Context(), "SELECT DISTINCT redo_start_fork_guid FROM sys.master_files WHERE database_id = DB_ID(@p1)", "mgc").Scan(&redoFork))
	require.Equal(t, hf.fork, redoFork)

	_, err = sm.ExecContext(t.Context(), "RESTORE LOG mgc FROM DISK = @p1 WITH NORECOVERY", logs[1])
	requireSQLError(t, err, 3013, 4305, "which is too recent to apply to the database. An earlier log backup that includes LSN "+hf.last+" can be restored.")
	exec(t, sm, "RESTORE LOG mgc FROM DISK = @p1 WITH NORECOVERY", logs[0])
	_, err = sm.ExecContext(t.Context(), "RESTORE LOG mgc FROM DISK = @p1 WITH NORECOVERY", logs[0])
	requireSQLError(t, err, 3013, 4326, "which is too early to apply to the database.")
	require.Equal(t, h1.last, string(redoStart(t, sm).([]byte)))

	undo := filepath.Join(t.TempDir(), "mgc_undo.tuf")
	exec(t, sm, "RESTORE LOG mgc FROM DISK = @p1 WITH STANDBY = @p2", logs[1], undo)
	state, standby := stateOf(t, sm, "mgc")
	require.Equal(t, "ONLINE", state)
	require.True(t, standby)
	require.Equal(t, int64(20), queryInt(t, sm, "SELECT COUNT(*) FROM mgc.dbo.messages"))
	require.Equal(t, h2.last, string(redoStart(t, sm).([]byte)), "a STANDBY database is still in its restore sequence")
	_, err = sm.ExecContext(t.Context(), "INSERT INTO mgc.dbo.messages (room, sender) VALUES ('x', 'y')")
	e = sqlError(t, err)
	require.Equal(t, int32(3906), e.Number)
	require.Equal(t, "Failed to update database \"mgc\" because the database is read-only.", e.Message)

	got = messages(t, sm, "RESTORE LOG mgc FROM DISK = N'"+tail+"' WITH NORECOVERY, STATS = 50")
	require.Equal(t, []string{"50 percent processed.", "100 percent processed."}, got[:2])
	require.True(t, strings.HasPrefix(got[len(got)-1], "RESTORE LOG successfully processed "), got)

	exec(t, sm, "RESTORE DATABASE mgc WITH RECOVERY")
	state, standby = stateOf(t, sm, "mgc")
	require.Equal(t, "ONLINE", state)
	require.False(t, standby)
	require.Nil(t, redoStart(t, sm))
	require.Equal(t, int64(25), queryInt(t, sm, "SELECT COUNT(*) FROM mgc.dbo.messages"))
	require.Equal(t, int64(5), queryInt(t, sm, "SELECT COUNT(*) FROM mgc.dbo.messages WHERE room = 'tail'"))
	info, _ := secondary.in.Database("mgc")
	pinfo, _ := primary.in.Database("mgc")
	require.NotEqual(t, pinfo.ForkGUID, info.ForkGUID, "recovery starts a new fork")

	// msdb history, joined as in domain.md §5.3 step 4.
	rows, err := sm.QueryContext(t.Context(), `SELECT rh.restore_type, rh.recovery, bs.first_lsn, bs.last_lsn, bs.last_recovery_fork_guid, mf.physical_device_name
		FROM msdb.dbo.restorehistory rh
		JOIN msdb.dbo.backupset bs ON bs.backup_set_id = rh.backup_set_id
		INNER JOIN msdb.dbo.backupmediafamily AS mf ON mf.media_set_id = bs.media_set_id
		WHERE rh.destination_database_name = N'mgc' ORDER BY rh.restore_history_id`)
	require.NoError(t, err)
	var hist []string
	for rows.Next() {
		var typ, first, last, device string
		var recovery bool
		var fork []byte
		require.NoError(t, rows.Scan(&typ, &recovery, &first, &last, &fork, &device))
		require.Equal(t, hf.fork, fork)
		hist = append(hist, fmt.Sprintf("%s %v %s-%s %s", typ, recovery, first, last, filepath.Base(device)))
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{
		"D false " + hf.first + "-" + hf.last + " mgc_full.bak",
		"L false " + h1.first + "-" + h1.last + " mgc_1.trn",
		"L false " + h2.first + "-" + h2.last + " mgc_2.trn",
		"L false " + ht.first + "-" + ht.last + " mgc_tail.trn",
	}, hist)
	require.Equal(t, int64(4), queryInt(t, pmaster, "SELECT COUNT(*) FROM msdb.dbo.backupset WHERE database_name = 'mgc'"))
	require.Equal(t, int64(1), queryInt(t, pmaster, "SELECT COUNT(*) FROM msdb.dbo.backupset b LEFT JOIN msdb.dbo.backupmediafamily m ON m.media_set_id = b.media_set_id WHERE b.type = 'D' AND m.physical_device_name IS NOT NULL"))

	// The recovered database is writable and its log cannot take more logs.
	exec(t, sm, "INSERT INTO mgc.dbo.messages (room, sender) VALUES ('after', 'failover')")
	_, err = sm.ExecContext(t.Context(), "RESTORE LOG mgc FROM DISK = @p1", tail)
	requireSQLError(t, err, 3013, 3117, "The log or differential backup cannot be restored because no files are ready to rollforward.")

	// Roles swap without a full restore: the old primary, left RESTORING by
	// its tail-log backup, takes the new primary's log, which spans the
	// recovery fork point.
	back := filepath.Join(share, "mgc_back.trn")
	exec(t, sm, "BACKUP LOG mgc TO DISK = @p1 WITH INIT", back)
	hb := headerOnly(t, sm, back)
	require.Equal(t, ht.last, hb.first)
	require.NotEqual(t, hb.fork, ht.fork)
	exec(t, pmaster, "RESTORE LOG mgc FROM DISK = @p1 WITH NORECOVERY", back)
	exec(t, pmaster, "RESTORE DATABASE mgc WITH RECOVERY")
	require.Equal(t, int64(26), queryInt(t, pmaster, "SELECT COUNT(*) FROM mgc.dbo.messages"))
	require.Equal(t, int64(1), queryInt(t, pmaster, "SELECT COUNT(*) FROM mgc.dbo.messages WHERE room = 'after'"))
	// A copy that went its own way (recovered on the old fork) cannot.
	third := openTestInstance(t, "")
	tm := third.connect(t, "master")
	exec(t, tm, "RESTORE DATABASE mgc FROM DISK = @p1 WITH NORECOVERY", full)
	exec(t, tm, "RESTORE LOG mgc FROM DISK = @p1 WITH NORECOVERY", logs[0])
	_, err = tm.ExecContext(t.Context(), "RESTORE LOG mgc FROM DISK = @p1 WITH NORECOVERY", back)
	requireSQLError(t, err, 3013, 4305, "too recent")
	// A log of another database of the same name is on another fork.
	other := openTestInstance(t, "")
	om := other.connect(t, "master")
	xlog := filepath.Join(share, "other_mgc.trn")
	exec(t, om, "CREATE DATABASE mgc; BACKUP DATABASE mgc TO DISK = @p1 WITH INIT; BACKUP LOG mgc TO DISK = @p2 WITH INIT", filepath.Join(share, "other_full.bak"), xlog)
	_, err = tm.ExecContext(t.Context(), "RESTORE LOG mgc FROM DISK = @p1 WITH NORECOVERY", xlog)
	requireSQLError(t, err, 3013, 4330, "This backup set cannot be applied because it is on a recovery path that is inconsistent with the database.")
	_, err = sm.ExecContext(t.Context(), "RESTORE DATABASE mgc WITH RECOVERY")
	requireSQLError(t, err, 3013, 3153, "The database is already fully recovered.")
}

func TestInstance_Restore_errors(t *testing.T) {
	share := t.TempDir()
	ti := openTestInstance(t, "")
	setupMessages(t, ti, 3)
	m := ti.connect(t, "master")
	full := filepath.Join(share, "full.bak")
	exec(t, m, "BACKUP DATABASE mgc TO DISK = @p1 WITH INIT", full)
	data, err := os.ReadFile(full)
	require.NoError(t, err)
	truncated := filepath.Join(share, "truncated.bak")
	require.NoError(t, os.WriteFile(truncated, data[:len(data)/2], 0o644))
	corrupt := filepath.Join(share, "corrupt.bak")
	bad := append([]byte(nil), data...)
	bad[len(bad)-40] ^= 0xFF
	require.NoError(t, os.WriteFile(corrupt, bad, 0o644))
	exec(t, m, "CREATE DATABASE other")
	exec(t, m, "BACKUP LOG mgc TO DISK = @p1 WITH INIT", filepath.Join(share, "log.trn"))

	tests := []struct {
		name  string
		q     string
		args  []any
		first int32
		text  string
		last  string
	}{
		{"missing file", "RESTORE DATABASE mgc2 FROM DISK = @p1", []any{filepath.Join(share, "nope.bak")}, 3201,
			"Cannot open backup device '" + filepath.Join(share, "nope.bak") + "'. Operating system error 2(The system cannot find the file specified.).", "RESTORE DATABASE is terminating abnormally."},
		{"missing directory", "BACKUP DATABASE mgc TO DISK = @p1", []any{filepath.Join(share, "nodir", "x.bak")}, 3201,
			"Operating system error 3(The system cannot find the path specified.).", "BACKUP DATABASE is terminating abnormally."},
		{"truncated", "RESTORE HEADERONLY FROM DISK = @p1", []any{truncated}, 3203, "Reached the end of the file.", "RESTORE HEADERONLY is terminating abnormally."},
		{"corrupt", "RESTORE VERIFYONLY FROM DISK = @p1", []any{corrupt}, 3183, "RESTORE detected an error on page", "VERIFY DATABASE is terminating abnormally."},
		{"exclusive access", "RESTORE DATABASE mgc FROM DISK = @p1 WITH REPLACE", []any{full}, 3101, "Exclusive access could not be obtained because the database is in use.", "RESTORE DATABASE is terminating abnormally."},
		{"other database", "RESTORE DATABASE other FROM DISK = @p1", []any{full}, 3154, "The backup set holds a backup of a database other than the existing 'other' database.", "RESTORE DATABASE is terminating abnormally."},
		{"log on online db", "RESTORE LOG other FROM DISK = @p1", []any{filepath.Join(share, "log.trn")}, 3117, "no files are ready to rollforward", "RESTORE LOG is terminating abnormally."},
		{"no full backup", "BACKUP LOG other TO DISK = @p1", []any{filepath.Join(share, "o.trn")}, 4214, "BACKUP LOG cannot be performed because there is no current database backup.", "BACKUP LOG is terminating abnormally."},
		{"bad file number", "RESTORE FILELISTONLY FROM DISK = @p1 WITH FILE = 3", []any{full}, 4038, "Cannot find file ID 3 on device '" + full + "'.", "RESTORE FILELIST is terminating abnormally."},
		{"files in use", "RESTORE DATABASE mgc_copy2 FROM DISK = @p1", []any{full}, 1834, "cannot be overwritten.  It is being used by database 'mgc'.", "RESTORE DATABASE is terminating abnormally."},
		{"bad move", "RESTORE DATABASE mgc3 FROM DISK = @p1 WITH MOVE 'nope' TO 'x'", []any{full}, 3234, "Logical file 'nope' is not part of database 'mgc3'.", "RESTORE DATABASE is terminating abnormally."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.ExecContext(t.Context(), tt.q, tt.args...)
			e := sqlError(t, err)
			require.Equal(t, int32(3013), e.Number)
			require.Equal(t, tt.last, e.Message)
			require.Equal(t, tt.first, e.All[0].Number, e.All[0].Message)
			require.Contains(t, e.All[0].Message, tt.text)
		})
	}
	// VERIFYONLY and FILELISTONLY on a good file.
	require.Equal(t, []string{"The backup set on file 1 is valid."}, messages(t, m, "RESTORE VERIFYONLY FROM DISK = N'"+full+"'"))
	rows, err := m.QueryContext(t.Context(), "RESTORE FILELISTONLY FROM DISK = @p1", full)
	require.NoError(t, err)
	var names []string
	for rows.Next() {
		vals := make([]any, 21)
		ptrs := make([]any, 21)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		names = append(names, vals[0].(string)+":"+vals[2].(string))
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"mgc:D", "mgc_log:L"}, names)
	// A restore under a new name with MOVE works and the copy is ONLINE.
	exec(t, m, "RESTORE DATABASE mgc_copy FROM DISK = @p1 WITH MOVE 'mgc' TO 'C:\\x.mdf', MOVE 'mgc_log' TO 'C:\\x.ldf', RECOVERY", full)
	require.Equal(t, int64(3), queryInt(t, m, "SELECT COUNT(*) FROM mgc_copy.dbo.messages"))
	var phys string
	require.NoError(t, m.QueryRowContext(t.Context(), "SELECT physical_name FROM sys.master_files WHERE database_id = DB_ID('mgc_copy') AND type_desc = 'ROWS'").Scan(&phys))
	require.Equal(t, `C:\x.mdf`, phys)

	// Without INIT, backup sets are appended; FILE = n picks one.
	multi := filepath.Join(share, "multi.bak")
	exec(t, m, "BACKUP DATABASE mgc TO DISK = @p1", multi)
	exec(t, m, "INSERT INTO mgc.dbo.messages (room, sender) VALUES ('r', 's')")
	exec(t, m, "BACKUP DATABASE mgc TO DISK = @p1 WITH NOINIT", multi)
	rows, err = m.QueryContext(t.Context(), "RESTORE HEADERONLY FROM DISK = @p1", multi)
	require.NoError(t, err)
	cols, err := rows.Columns()
	require.NoError(t, err)
	require.Len(t, cols, 50)
	var positions []int64
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		positions = append(positions, vals[5].(int64))
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []int64{1, 2}, positions)
	exec(t, m, "RESTORE DATABASE mgc_v1 FROM DISK = @p1 WITH FILE = 1, MOVE 'mgc' TO 'a', MOVE 'mgc_log' TO 'b'", multi)
	exec(t, m, "RESTORE DATABASE mgc_v2 FROM DISK = @p1 WITH FILE = 2, MOVE 'mgc' TO 'c', MOVE 'mgc_log' TO 'd'", multi)
	require.Equal(t, int64(3), queryInt(t, m, "SELECT COUNT(*) FROM mgc_v1.dbo.messages"))
	require.Equal(t, int64(4), queryInt(t, m, "SELECT COUNT(*) FROM mgc_v2.dbo.messages"))
}

func TestInstance_BackupLog_holdsOnlyChanges(t *testing.T) {
	share := t.TempDir()
	ti := openTestInstance(t, "")
	db := setupMessages(t, ti, 0)
	m := ti.connect(t, "master")
	for range 200 {
		exec(t, db, "INSERT INTO dbo.messages (room, sender, body) VALUES ('r', 's', @p1)", strings.Repeat("x", 1000))
	}
	full := filepath.Join(share, "full.bak")
	exec(t, m, "BACKUP DATABASE mgc TO DISK = @p1 WITH INIT", full)
	exec(t, db, "UPDATE dbo.messages SET body = N'changed' WHERE id = 7; DELETE FROM dbo.messages WHERE id = 8; INSERT INTO dbo.messages (room, sender) VALUES ('new', 's')")
	exec(t, db, "CREATE TABLE dbo.extra (a int); INSERT INTO dbo.extra VALUES (1), (2)")
	log := filepath.Join(share, "log.trn")
	exec(t, m, "BACKUP LOG mgc TO DISK = @p1 WITH INIT", log)
	fi, err := os.Stat(full)
	require.NoError(t, err)
	li, err := os.Stat(log)
	require.NoError(t, err)
	require.Less(t, li.Size()*10, fi.Size(), "a log backup holds the changes, not the database")
	// The next log backup is empty of changes.
	log2 := filepath.Join(share, "log2.trn")
	exec(t, m, "BACKUP LOG mgc TO DISK = @p1 WITH INIT", log2)

	other := openTestInstance(t, "")
	om := other.connect(t, "master")
	exec(t, om, "RESTORE DATABASE mgc FROM DISK = @p1 WITH NORECOVERY; RESTORE LOG mgc FROM DISK = @p2 WITH NORECOVERY; RESTORE LOG mgc FROM DISK = @p3 WITH RECOVERY", full, log, log2)
	require.Equal(t, int64(200), queryInt(t, om, "SELECT COUNT(*) FROM mgc.dbo.messages"))
	var body string
	require.NoError(t, om.QueryRowContext(t.Context(), "SELECT body FROM mgc.dbo.messages WHERE id = 7").Scan(&body))
	require.Equal(t, "changed", body)
	require.Equal(t, int64(0), queryInt(t, om, "SELECT COUNT(*) FROM mgc.dbo.messages WHERE id = 8"))
	require.Equal(t, int64(201), queryInt(t, om, "SELECT MAX(id) FROM mgc.dbo.messages"))
	require.Equal(t, int64(2), queryInt(t, om, "SELECT COUNT(*) FROM mgc.dbo.extra"))
	// Identity continues after the replayed inserts.
	require.Equal(t, int64(202), queryInt(t, om, "INSERT INTO mgc.dbo.messages (room, sender) OUTPUT INSERTED.id VALUES ('a', 'b')"))
}
