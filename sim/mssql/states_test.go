package mssql

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chatdr/chatdr/sim/mssql/tds"
	"github.com/stretchr/testify/require"
)

// TestDatabase_stateTransitions is the table of database state changes:
// from a state, a statement either moves the database to another state or
// fails with SQL Server's error.
func TestDatabase_stateTransitions(t *testing.T) {
	type state struct {
		name    string
		standby bool
	}
	var (
		online    = state{"ONLINE", false}
		restoring = state{"RESTORING", false}
		standby   = state{"ONLINE", true}
		offline   = state{"OFFLINE", false}
	)
	// setups bring a fresh mgc (with a full backup in full.bak) to a state.
	setups := map[state]string{
		online:    "",
		restoring: "BACKUP LOG mgc TO DISK = '{dir}/tail.trn' WITH INIT, NORECOVERY",
		standby:   "BACKUP LOG mgc TO DISK = '{dir}/tail.trn' WITH INIT, NORECOVERY; RESTORE DATABASE mgc WITH STANDBY = '{dir}/undo.tuf'",
		offline:   "ALTER DATABASE mgc SET OFFLINE",
	}
	tests := []struct {
		from   state
		sql    string
		to     state
		number int32 // first error number; 0 = success
	}{
		{online, "BACKUP LOG mgc TO DISK = '{dir}/l.trn' WITH NORECOVERY", restoring, 0},
		{online, "ALTER DATABASE mgc SET OFFLINE", offline, 0},
		{online, "RESTORE DATABASE mgc WITH RECOVERY", online, 3153},
		{online, "RESTORE DATABASE mgc FROM DISK = '{dir}/full.bak' WITH NORECOVERY", online, 3159},
		{online, "RESTORE DATABASE mgc FROM DISK = '{dir}/full.bak' WITH REPLACE, NORECOVERY", restoring, 0},
		{online, "RESTORE LOG mgc FROM DISK = '{dir}/full.bak'", online, 3135},
		{restoring, "RESTORE DATABASE mgc WITH RECOVERY", online, 0},
		{restoring, "RESTORE DATABASE mgc WITH STANDBY = '{dir}/u.tuf'", standby, 0},
		{restoring, "ALTER DATABASE mgc SET ONLINE", restoring, 5052},
		{restoring, "INSERT INTO mgc.dbo.t VALUES (1)", restoring, 927},
		{restoring, "SELECT * FROM mgc.dbo.t", restoring, 927},
		{restoring, "BACKUP DATABASE mgc TO DISK = '{dir}/x.bak'", restoring, 927},
		{restoring, "RESTORE DATABASE mgc FROM DISK = '{dir}/full.bak' WITH NORECOVERY", restoring, 0},
		{restoring, "RESTORE LOG mgc FROM DISK = '{dir}/tail.trn' WITH NORECOVERY", restoring, 4326},
		{standby, "INSERT INTO mgc.dbo.t VALUES (1)", standby, 3906},
		{standby, "SELECT * FROM mgc.dbo.t", standby, 0},
		{standby, "RESTORE DATABASE mgc WITH NORECOVERY", restoring, 0},
		{standby, "RESTORE DATABASE mgc WITH RECOVERY", online, 0},
		{standby, "ALTER DATABASE mgc SET READ_WRITE", standby, 5063},
		{offline, "ALTER DATABASE mgc SET ONLINE", online, 0},
		{offline, "SELECT * FROM mgc.dbo.t", offline, 942},
		{offline, "USE mgc", offline, 942},
		{offline, "DROP DATABASE mgc", state{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.from.name+"/"+tt.sql, func(t *testing.T) {
			dir := t.TempDir()
			in, err := Open(Config{Name: "SQL1", DataDir: filepath.Join(dir, "data"), Logins: map[string]string{"sa": "pass"}})
			require.NoError(t, err)
			defer in.Close()
			run := func(sql string) error {
				_, err := in.Exec(t.Context(), "master", strings.ReplaceAll(sql, "{dir}", dir))
				return err
			}
			require.NoError(t, run("CREATE DATABASE mgc; CREATE TABLE mgc.dbo.t (a int); BACKUP DATABASE mgc TO DISK = '{dir}/full.bak' WITH INIT"))
			if s := setups[tt.from]; s != "" {
				require.NoError(t, run(s))
			}
			err = run(tt.sql)
			if tt.number == 0 {
				require.NoError(t, err)
			} else {
				var te *tds.Error
				require.True(t, errors.As(err, &te), "%v", err)
				require.Equal(t, tt.number, te.Number, te.Message)
			}
			info, ok := in.Database("mgc")
			if tt.to == (state{}) {
				require.False(t, ok)
				return
			}
			require.True(t, ok)
			require.Equal(t, tt.to, state{info.State, info.Standby})
		})
	}
}
