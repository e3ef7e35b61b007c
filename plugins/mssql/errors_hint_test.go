package mssql

import (
	"errors"
	"testing"

	mssqldb "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/pluginsdk"
)

// TestSQLError_3101 checks that Msg 3101 is retryable and that its hint
// tells an operator what to do on the host, not which plugin action to call.
func TestSQLError_3101(t *testing.T) {
	e := mssqldb.Error{Number: 3013, Message: "RESTORE DATABASE is terminating abnormally.",
		All: []mssqldb.Error{{Number: 3101, Message: "Exclusive access could not be obtained because the database is in use."},
			{Number: 3013, Message: "RESTORE DATABASE is terminating abnormally."}}}
	err := sqlError("RESTORE DATABASE mgc WITH RECOVERY", e)
	var pe *pluginsdk.Error
	require.True(t, errors.As(err, &pe))
	require.Equal(t, "sql_3101", pe.Code)
	require.True(t, pe.Retryable)
	require.Contains(t, pe.Hint, "sp_who2")
	require.Contains(t, pe.Hint, "chatdr run resume")
	require.NotContains(t, pe.Hint, "mssql.db.kill_sessions")
}
