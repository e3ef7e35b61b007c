package csshell_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/sim/csshell"
	"github.com/chatdr/chatdr/sim/csshell/csshelltest"
	sqlsim "github.com/chatdr/chatdr/sim/mssql"
)

// TestRun_mirroringAgainstTheSQLSimulator runs Install-, Test- and
// Uninstall-CsMirrorDatabase against two SQL Server simulators (sim/mssql,
// with their mirroring endpoints) instead of the fake: the T-SQL the
// simulator sends is what a real SQL Server simulator accepts, and
// sys.database_mirroring shows the result (domain.md F6 verify).
func TestRun_mirroringAgainstTheSQLSimulator(t *testing.T) {
	open := func(name string) (*sqlsim.Instance, csshell.SQLInstance) {
		in, err := sqlsim.Open(sqlsim.Config{Name: name, DataDir: t.TempDir(), Logins: map[string]string{"sa": "Pa55w0rd!"}, MirrorListen: "127.0.0.1:0"})
		require.NoError(t, err)
		t.Cleanup(func() { in.Close() })
		addr, err := in.Serve("127.0.0.1:0")
		require.NoError(t, err)
		return in, csshell.SQLInstance{FQDN: strings.ToLower(name) + ".dc1.contoso.com", Addr: addr.String(), Login: "sa", Password: "Pa55w0rd!",
			MirrorEndpoint: strings.TrimPrefix(in.MirrorAddr(), "TCP://")}
	}
	principal, pi := open("SQL1")
	mirror, mi := open("SQL2")
	_, err := principal.Exec(t.Context(), "master", "CREATE DATABASE mgc")
	require.NoError(t, err)
	_, err = principal.Exec(t.Context(), "mgc", "CREATE TABLE tblChat (id int); INSERT INTO tblChat VALUES (1)")
	require.NoError(t, err)
	opts, _ := labOpts(t, csshelltest.LabCMS(map[string]csshell.SQLInstance{csshell.RolePrimary: pi, csshell.RolePrimaryMirror: mi}))

	install := prelude + "Install-CsMirrorDatabase -DatabaseType 'PersistentChat' -SqlServerFqdn 'sql1.dc1.contoso.com' -FileShare '" + t.TempDir() + "' -Confirm:$false | ConvertTo-Json -Compress"
	require.Empty(t, ok(t, opts, install))

	mirroring := func(in *sqlsim.Instance) []any {
		rows, err := in.Exec(t.Context(), "master", "SELECT d.state_desc, m.mirroring_role_desc, m.mirroring_state_desc, m.mirroring_partner_name "+
			"FROM sys.database_mirroring m JOIN sys.databases d ON d.database_id = m.database_id WHERE d.name = 'mgc'")
		require.NoError(t, err)
		if len(rows) == 0 || len(rows[0]) == 0 {
			return nil
		}
		return rows[0][0]
	}
	require.NoError(t, eventually(10*time.Second, 50*time.Millisecond, func() error {
		p, m := mirroring(principal), mirroring(mirror)
		if len(p) != 4 || len(m) != 4 || p[2] != "SYNCHRONIZED" || m[2] != "SYNCHRONIZED" {
			return fmt.Errorf("principal %v, mirror %v", p, m)
		}
		return nil
	}))
	p, m := mirroring(principal), mirroring(mirror)
	require.Equal(t, []any{"ONLINE", "PRINCIPAL", "SYNCHRONIZED", "TCP://" + mi.MirrorEndpoint}, p)
	require.Equal(t, []any{"RESTORING", "MIRROR", "SYNCHRONIZED", "TCP://" + pi.MirrorEndpoint}, m)

	out := ok(t, opts, prelude+"Test-CsPersistentChatMessage -TargetFqdn 'pchat01.contoso.com' | ConvertTo-Json -Compress")
	require.Contains(t, out, `"Result":0`)

	require.Contains(t, fails(t, opts, install, "MirrorDatabaseExists"), `already exists on the mirror SQL Server "sql2.dc1.contoso.com" (state RESTORING)`)

	uninstall := prelude + "Uninstall-CsMirrorDatabase -DatabaseType 'PersistentChat' -SqlServerFqdn 'sql1.dc1.contoso.com' -DropExistingDatabasesOnMirror -Confirm:$false"
	ok(t, opts, uninstall)
	p = mirroring(principal)
	require.Equal(t, "ONLINE", p[0])
	require.Nil(t, p[1], "mirroring removed on the principal")
	require.Nil(t, mirroring(mirror), "the copy on the mirror is dropped")
	ok(t, opts, uninstall) // nothing left: 1416 + 5069 mean "not mirrored"
}

// eventually polls cond every interval until it returns nil or timeout
// passes.
func eventually(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not true within %s: %w", timeout, err)
		}
		time.Sleep(interval) // poll interval, not a wait for an event
	}
}
