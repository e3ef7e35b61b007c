package mssql

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestInstance_Errors(t *testing.T) {
	ti := openTestInstance(t, "")
	db := setupMessages(t, ti, 3)
	tests := []struct {
		name    string
		q       string
		args    []any
		number  int32
		message string
	}{
		{"invalid object", "SELECT * FROM dbo.nothere", nil, 208, "Invalid object name 'dbo.nothere'."},
		{"invalid object other db", "SELECT * FROM nodb.dbo.messages", nil, 208, "Invalid object name 'nodb.dbo.messages'."},
		{"unknown procedure", "EXEC sp_nothere", nil, 2812, "Could not find stored procedure 'sp_nothere'."},
		{"bare procedure", "sp_nothere 1", nil, 2812, "Could not find stored procedure 'sp_nothere'."},
		{"GO is not T-SQL", "CREATE TABLE dbo.t1 (a int)\nGO\nSELECT 1", nil, 102, "Incorrect syntax near 'GO'."},
		{"syntax", "SELECT FROM dbo.messages", nil, 156, "Incorrect syntax near the keyword 'FROM'."},
		{"syntax at end", "SELECT * FROM", nil, 102, "Incorrect syntax near 'FROM'."},
		{"garbage", "FOO BAR BAZ; SELECT 1", nil, 102, "Incorrect syntax near 'BAZ'."},
		{"unsupported statement", "CREATE VIEW v AS SELECT 1", nil, 102, "Incorrect syntax near 'VIEW'."},
		{"unclosed string", "SELECT 'abc", nil, 105, "Unclosed quotation mark after the character string 'abc'."},
		{"use missing db", "USE nodb", nil, 911, "Database 'nodb' does not exist. Make sure that the name is entered correctly."},
		{"invalid column", "SELECT nope FROM dbo.messages", nil, 207, "Invalid column name 'nope'."},
		{"create existing db", "CREATE DATABASE mgc", nil, 1801, "Database 'mgc' already exists. Choose a different database name."},
		{"create existing table", "CREATE TABLE dbo.messages (a int)", nil, 2714, "There is already an object named 'messages' in the database."},
		{"drop missing db", "DROP DATABASE nodb", nil, 3701, "Cannot drop the database 'nodb', because it does not exist or you do not have permission."},
		{"drop db in use", "DROP DATABASE mgc", nil, 3702, "Cannot drop database \"mgc\" because it is currently in use."},
		{"identity insert", "INSERT INTO dbo.messages (id, room, sender) VALUES (1, 'a', 'b')", nil, 544, "Cannot insert explicit value for identity column in table 'messages' when IDENTITY_INSERT is set to OFF."},
		{"null into not null", "INSERT INTO dbo.messages (room) VALUES ('a')", nil, 3621, "The statement has been terminated."},
		{"too many values", "INSERT INTO dbo.messages (room, sender) VALUES ('a', 'b', 'c')", nil, 110, ""},
		{"unknown function", "SELECT NOPE(1)", nil, 195, "'nope' is not a recognized built-in function name."},
		{"undeclared variable", "SELECT @nope", nil, 137, "Must declare the scalar variable \"@nope\"."},
		{"conversion", "SELECT COUNT(*) FROM dbo.messages WHERE id = 'abc'", nil, 245, "Conversion failed when converting the nvarchar value 'abc' to data type bigint."},
		{"divide by zero", "SELECT 1/0", nil, 8134, "Divide by zero error encountered."},
		{"ambiguous column", "SELECT name FROM sys.databases d JOIN sys.master_files f ON f.database_id = d.database_id", nil, 209, "Ambiguous column name 'name'."},
		{"unbound qualifier", "SELECT x.name FROM sys.databases d", nil, 4104, "The multi-part identifier \"x.name\" could not be bound."},
		{"kill self", "KILL @@SPID", nil, 6104, "Cannot use KILL to kill your own process."},
		{"kill unknown", "KILL 999", nil, 6106, "Process ID 999 is not an active process ID."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := db.ExecContext(t.Context(), tt.q, tt.args...)
			e := sqlError(t, err)
			require.Equal(t, tt.number, e.Number, e.Message)
			if tt.message != "" {
				require.Equal(t, tt.message, e.Message)
			}
		})
	}
	// A failed statement leaves nothing behind.
	require.Equal(t, int64(3), queryInt(t, db, "SELECT COUNT(*) FROM dbo.messages"))
	// The 515 cause is in All.
	_, err := db.ExecContext(t.Context(), "INSERT INTO dbo.messages (room) VALUES ('a')")
	e := sqlError(t, err)
	require.Len(t, e.All, 2)
	require.Equal(t, int32(515), e.All[0].Number)
	require.Equal(t, "Cannot insert the value NULL into column 'sender', table 'mgc.dbo.messages'; column does not allow nulls. INSERT fails.", e.All[0].Message)
}
