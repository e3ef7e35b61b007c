package mssql

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestInstance_Open_restartKeepsState(t *testing.T) {
	dir := t.TempDir()
	ti := openTestInstance(t, dir)
	db := setupMessages(t, ti, 20)
	master := ti.connect(t, "master")
	exec(t, master, "CREATE DATABASE mgccomp; ALTER DATABASE mgccomp SET RECOVERY SIMPLE; ALTER DATABASE mgccomp SET OFFLINE")
	before, ok := ti.in.Database("mgc")
	require.True(t, ok)
	require.NoError(t, db.Close())
	require.NoError(t, master.Close())
	require.NoError(t, ti.in.Close())

	ti2 := openTestInstance(t, dir)
	after, ok := ti2.in.Database("mgc")
	require.True(t, ok)
	require.Equal(t, before, after)
	comp, ok := ti2.in.Database("mgccomp")
	require.True(t, ok)
	require.Equal(t, "OFFLINE", comp.State)
	require.Equal(t, "SIMPLE", comp.RecoveryModel)

	db2 := ti2.connect(t, "mgc")
	require.Equal(t, int64(20), queryInt(t, db2, "SELECT COUNT(*) FROM dbo.messages"))
	// The identity and the default survive too.
	require.Equal(t, int64(21), queryInt(t, db2, "INSERT INTO dbo.messages (room, sender) OUTPUT INSERTED.id VALUES ('a', 'b')"))
	require.Equal(t, int64(1), queryInt(t, db2, "SELECT COUNT(*) FROM dbo.messages WHERE id = 21 AND posted_at IS NOT NULL"))

	_, err := db2.ExecContext(t.Context(), "USE mgccomp")
	e := sqlError(t, err)
	require.Equal(t, int32(942), e.Number)
	require.Equal(t, "Database 'mgccomp' cannot be opened because it is offline.", e.Message)
}

func TestInstance_LSN_advancesWithChanges(t *testing.T) {
	ti := openTestInstance(t, "")
	db := setupMessages(t, ti, 1)
	a, _ := ti.in.Database("mgc")
	exec(t, db, "INSERT INTO dbo.messages (room, sender) VALUES ('a', 'b')")
	b, _ := ti.in.Database("mgc")
	require.Greater(t, b.LSN, a.LSN)
	require.Equal(t, a.ForkGUID, b.ForkGUID)
}
