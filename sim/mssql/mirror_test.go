package mssql

import (
	"database/sql"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type mirrorRow struct {
	guid, state, role, partner, instance, safety, witness sql.NullString
}

func readMirroring(t *testing.T, db *sql.DB, name string) mirrorRow {
	t.Helper()
	var r mirrorRow
	require.NoError(t, db.QueryRowContext(t.Context(), `SELECT CAST(m.mirroring_guid AS nvarchar(36)), m.mirroring_state_desc,
 m.mirroring_role_desc, m.mirroring_partner_name, m.mirroring_partner_instance, m.mirroring_safety_level_desc, m.mirroring_witness_name
FROM sys.database_mirroring m JOIN sys.databases d ON d.database_id = m.database_id WHERE d.name = @p1`, name).
		Scan(&r.guid, &r.state, &r.role, &r.partner, &r.instance, &r.safety, &r.witness))
	return r
}

// mirrorPair is a principal and a mirror of mgc.
type mirrorPair struct {
	p, m       *testInstance
	pdb, mdb   *sql.DB
	pEP, mEP   string
	pDir, mDir string
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a := ln.Addr().String()
	require.NoError(t, ln.Close())
	return a
}

func setupMirroring(t *testing.T) *mirrorPair {
	t.Helper()
	mp := &mirrorPair{pDir: t.TempDir(), mDir: t.TempDir()}
	pa, ma := freeAddr(t), freeAddr(t)
	mp.p = openNamed(t, "SQLP", mp.pDir, func(c *Config) { c.MirrorListen = pa })
	mp.m = openNamed(t, "SQLPM", mp.mDir, func(c *Config) { c.MirrorListen = ma })
	mp.pEP, mp.mEP = mp.p.in.MirrorAddr(), mp.m.in.MirrorAddr()
	require.Equal(t, "TCP://"+pa, mp.pEP)
	mp.pdb, mp.mdb = mp.p.connect(t, "master"), mp.m.connect(t, "master")
	exec(t, mp.pdb, "CREATE DATABASE mgc")
	exec(t, mp.pdb, "USE mgc; "+createMessages)
	exec(t, mp.pdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', 'before')")
	share := t.TempDir()
	full, log := filepath.Join(share, "mgc.bak"), filepath.Join(share, "mgc.trn")
	exec(t, mp.pdb, "BACKUP DATABASE mgc TO DISK = @p1", full)
	exec(t, mp.pdb, "BACKUP LOG mgc TO DISK = @p1", log)
	exec(t, mp.mdb, "RESTORE DATABASE mgc FROM DISK = @p1 WITH NORECOVERY", full)
	exec(t, mp.mdb, "RESTORE LOG mgc FROM DISK = @p1 WITH NORECOVERY", log)
	exec(t, mp.mdb, fmt.Sprintf("ALTER DATABASE mgc SET PARTNER = N'%s'", mp.pEP))
	exec(t, mp.pdb, fmt.Sprintf("ALTER DATABASE mgc SET PARTNER = N'%s'", mp.mEP))
	return mp
}

func waitState(t *testing.T, db *sql.DB, role, state string) {
	t.Helper()
	eventually(t, 10*time.Second, role+" "+state, func() bool {
		r := readMirroring(t, db, "mgc")
		return r.role.String == role && r.state.String == state
	})
}

func TestMirroring_establishShipFailoverOffRestart(t *testing.T) {
	mp := setupMirroring(t)
	waitState(t, mp.pdb, "PRINCIPAL", "SYNCHRONIZED")
	waitState(t, mp.mdb, "MIRROR", "SYNCHRONIZED")
	r := readMirroring(t, mp.pdb, "mgc")
	require.Equal(t, mp.mEP, r.partner.String)
	require.Equal(t, "SQLPM", r.instance.String)
	require.Equal(t, "FULL", r.safety.String)
	require.Equal(t, r.guid.String, readMirroring(t, mp.mdb, "mgc").guid.String)
	// Databases that are not mirrored show NULLs.
	var g sql.NullString
	require.NoError(t, mp.pdb.QueryRowContext(t.Context(), "SELECT CAST(mirroring_guid AS nvarchar(36)) FROM sys.database_mirroring WHERE database_id = 1").Scan(&g))
	require.False(t, g.Valid)

	// Safety FULL: every acknowledged write is already on the mirror.
	for i := range 10 {
		exec(t, mp.pdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', @p1)", fmt.Sprint("m", i))
		pi, _ := mp.p.in.Database("mgc")
		mi, _ := mp.m.in.Database("mgc")
		require.Equal(t, pi.LSN, mi.LSN, "mirror behind after an acknowledged insert")
		require.Equal(t, "RESTORING", mi.State)
	}
	// The mirror refuses access to the database.
	_, err := mp.mdb.ExecContext(t.Context(), "SELECT COUNT(*) FROM mgc.dbo.messages")
	require.EqualValues(t, 954, sqlError(t, err).Number)
	// RESTORE of a mirrored database is refused (remove mirroring first).
	_, err = mp.mdb.ExecContext(t.Context(), "RESTORE DATABASE mgc WITH RECOVERY")
	require.EqualValues(t, 3104, sqlError(t, err).All[0].Number)
	// FAILOVER on the mirror is refused.
	_, err = mp.mdb.ExecContext(t.Context(), "ALTER DATABASE mgc SET PARTNER FAILOVER")
	require.Error(t, err)

	// FAILOVER: roles swap, every row is on the new principal.
	exec(t, mp.pdb, "ALTER DATABASE mgc SET PARTNER FAILOVER")
	require.Equal(t, "MIRROR", readMirroring(t, mp.pdb, "mgc").role.String)
	require.EqualValues(t, 11, queryInt(t, mp.mdb, "SELECT COUNT(*) FROM mgc.dbo.messages"))
	pi, _ := mp.p.in.Database("mgc")
	require.Equal(t, "RESTORING", pi.State)
	exec(t, mp.mdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', 'after failover')")
	pi, _ = mp.p.in.Database("mgc")
	mi, _ := mp.m.in.Database("mgc")
	require.Equal(t, mi.LSN, pi.LSN)

	// Restart both: the mirroring session survives.
	require.NoError(t, mp.p.in.Close())
	require.NoError(t, mp.m.in.Close())
	pa, ma := mp.pEP[len("TCP://"):], mp.mEP[len("TCP://"):]
	mp.p = openNamed(t, "SQLP", mp.pDir, func(c *Config) { c.MirrorListen = pa })
	mp.m = openNamed(t, "SQLPM", mp.mDir, func(c *Config) { c.MirrorListen = ma })
	mp.pdb, mp.mdb = mp.p.connect(t, "master"), mp.m.connect(t, "master")
	waitState(t, mp.mdb, "PRINCIPAL", "SYNCHRONIZED")
	waitState(t, mp.pdb, "MIRROR", "SYNCHRONIZED")
	exec(t, mp.mdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', 'after restart')")
	pi, _ = mp.p.in.Database("mgc")
	mi, _ = mp.m.in.Database("mgc")
	require.Equal(t, mi.LSN, pi.LSN)

	// SUSPEND stops shipping on both sides until RESUME.
	exec(t, mp.pdb, "ALTER DATABASE mgc SET PARTNER SUSPEND")
	require.Equal(t, "SUSPENDED", readMirroring(t, mp.mdb, "mgc").state.String)
	require.Equal(t, "SUSPENDED", readMirroring(t, mp.pdb, "mgc").state.String)
	exec(t, mp.mdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', 'while suspended')")
	pi, _ = mp.p.in.Database("mgc")
	mi, _ = mp.m.in.Database("mgc")
	require.Less(t, pi.LSN, mi.LSN)
	_, err = mp.mdb.ExecContext(t.Context(), "ALTER DATABASE mgc SET PARTNER FAILOVER")
	require.EqualValues(t, 1422, sqlError(t, err).All[0].Number)
	exec(t, mp.mdb, "ALTER DATABASE mgc SET PARTNER RESUME")
	waitState(t, mp.mdb, "PRINCIPAL", "SYNCHRONIZED")
	eventually(t, 10*time.Second, "the mirror to catch up", func() bool {
		pi, _ := mp.p.in.Database("mgc")
		mi, _ := mp.m.in.Database("mgc")
		return pi.LSN == mi.LSN
	})

	// SAFETY and WITNESS are stored and shown on both partners.
	exec(t, mp.mdb, "ALTER DATABASE mgc SET WITNESS = N'TCP://witness.example:7022'")
	require.Equal(t, "TCP://witness.example:7022", readMirroring(t, mp.pdb, "mgc").witness.String)
	exec(t, mp.mdb, "ALTER DATABASE mgc SET PARTNER SAFETY OFF")
	require.Equal(t, "OFF", readMirroring(t, mp.pdb, "mgc").safety.String)
	exec(t, mp.mdb, "ALTER DATABASE mgc SET PARTNER SAFETY FULL")
	exec(t, mp.mdb, "ALTER DATABASE mgc SET WITNESS OFF")

	// OFF: both sides stop mirroring; the old mirror stays RESTORING.
	exec(t, mp.mdb, "ALTER DATABASE mgc SET PARTNER OFF")
	require.False(t, readMirroring(t, mp.mdb, "mgc").guid.Valid)
	require.False(t, readMirroring(t, mp.pdb, "mgc").guid.Valid)
	pi, _ = mp.p.in.Database("mgc")
	require.Equal(t, "RESTORING", pi.State)
	_, err = mp.pdb.ExecContext(t.Context(), "SELECT COUNT(*) FROM mgc.dbo.messages")
	require.EqualValues(t, 927, sqlError(t, err).Number)
	exec(t, mp.pdb, "RESTORE DATABASE mgc WITH RECOVERY")
	require.EqualValues(t, 14, queryInt(t, mp.pdb, "SELECT COUNT(*) FROM mgc.dbo.messages"))
	_, err = mp.pdb.ExecContext(t.Context(), "ALTER DATABASE mgc SET PARTNER OFF")
	require.EqualValues(t, 5069, sqlError(t, err).Number)
	require.EqualValues(t, 1416, sqlError(t, err).All[0].Number)
}

func TestMirroring_forceServiceAfterPrincipalLoss(t *testing.T) {
	mp := setupMirroring(t)
	waitState(t, mp.mdb, "MIRROR", "SYNCHRONIZED")
	exec(t, mp.pdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', 'x')")
	// FORCE_SERVICE is refused while the principal answers.
	_, err := mp.mdb.ExecContext(t.Context(), "ALTER DATABASE mgc SET PARTNER FORCE_SERVICE_ALLOW_DATA_LOSS")
	require.EqualValues(t, 1455, sqlError(t, err).All[0].Number)
	before, _ := mp.m.in.Database("mgc")
	require.NoError(t, mp.p.in.Close()) // the principal is gone
	waitState(t, mp.mdb, "MIRROR", "DISCONNECTED")
	exec(t, mp.mdb, "ALTER DATABASE mgc SET PARTNER FORCE_SERVICE_ALLOW_DATA_LOSS")
	after, _ := mp.m.in.Database("mgc")
	require.Equal(t, "ONLINE", after.State)
	require.NotEqual(t, before.ForkGUID, after.ForkGUID, "a new recovery fork")
	require.EqualValues(t, 2, queryInt(t, mp.mdb, "SELECT COUNT(*) FROM mgc.dbo.messages"))
	r := readMirroring(t, mp.mdb, "mgc")
	require.Equal(t, "PRINCIPAL", r.role.String)
	require.Equal(t, "DISCONNECTED", r.state.String)
	// The new principal serves writes while its partner is away.
	exec(t, mp.mdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', 'y')")
	// A mirrored database cannot be dropped or leave FULL recovery.
	_, err = mp.mdb.ExecContext(t.Context(), "DROP DATABASE mgc")
	require.EqualValues(t, 3743, sqlError(t, err).Number)
	_, err = mp.mdb.ExecContext(t.Context(), "ALTER DATABASE mgc SET RECOVERY SIMPLE")
	require.EqualValues(t, 1468, sqlError(t, err).All[0].Number)
	exec(t, mp.mdb, "ALTER DATABASE mgc SET PARTNER OFF")
	exec(t, mp.mdb, "DROP DATABASE mgc")
}

func TestMirroring_errors(t *testing.T) {
	ti := openNamed(t, "SQLP", "", func(c *Config) { c.MirrorListen = "127.0.0.1:0" })
	db := ti.connect(t, "master")
	exec(t, db, "CREATE DATABASE mgc")
	exec(t, db, "BACKUP DATABASE mgc TO DISK = @p1", filepath.Join(t.TempDir(), "f.bak"))
	// The partner's endpoint does not answer: 1418.
	_, err := db.ExecContext(t.Context(), "ALTER DATABASE mgc SET PARTNER = N'TCP://"+freeAddr(t)+"'")
	e := sqlError(t, err)
	require.EqualValues(t, 1418, e.All[0].Number)
	require.EqualValues(t, 5069, e.Number)
	// Not mirrored.
	for _, q := range []string{"SET PARTNER OFF", "SET PARTNER FAILOVER", "SET PARTNER SAFETY OFF", "SET WITNESS OFF"} {
		_, err = db.ExecContext(t.Context(), "ALTER DATABASE mgc "+q)
		require.EqualValues(t, 1416, sqlError(t, err).All[0].Number, q)
	}
	// SIMPLE recovery cannot be mirrored.
	exec(t, db, "CREATE DATABASE s; ALTER DATABASE s SET RECOVERY SIMPLE")
	_, err = db.ExecContext(t.Context(), "ALTER DATABASE s SET PARTNER = N'TCP://127.0.0.1:1'")
	require.EqualValues(t, 1465, sqlError(t, err).All[0].Number)
	// Syntax.
	_, err = db.ExecContext(t.Context(), "ALTER DATABASE mgc SET PARTNER SAFETY MAYBE")
	require.EqualValues(t, 102, sqlError(t, err).Number)
	// Without an endpoint SET PARTNER fails with 1418.
	ti2 := openNamed(t, "SQLX", "", nil)
	db2 := ti2.connect(t, "master")
	exec(t, db2, "CREATE DATABASE mgc")
	_, err = db2.ExecContext(t.Context(), "ALTER DATABASE mgc SET PARTNER = N'"+ti.in.MirrorAddr()+"'")
	require.EqualValues(t, 1418, sqlError(t, err).All[0].Number)
}

// TestMirroring_logChainContinuesAfterFailover: log backups taken on the
// principal, then on the old mirror after a failover, form one chain that
// a log-shipping secondary restores (domain §1, log shipping from the
// primary's mirror).
func TestMirroring_logChainContinuesAfterFailover(t *testing.T) {
	mp := setupMirroring(t)
	waitState(t, mp.pdb, "PRINCIPAL", "SYNCHRONIZED")
	share := t.TempDir()
	full := filepath.Join(share, "full.bak")
	// setupMirroring took full + log before mirroring: take a new full for
	// the secondary, and log backups on both sides of a failover.
	exec(t, mp.pdb, "BACKUP DATABASE mgc TO DISK = @p1 WITH COPY_ONLY", full)
	exec(t, mp.pdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', 'p1')")
	l1 := filepath.Join(share, "l1.trn")
	exec(t, mp.pdb, "BACKUP LOG mgc TO DISK = @p1", l1)
	exec(t, mp.pdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', 'p2')")
	exec(t, mp.pdb, "ALTER DATABASE mgc SET PARTNER FAILOVER")
	exec(t, mp.mdb, "INSERT INTO mgc.dbo.messages (room, sender, body) VALUES ('r', 'a', 'm1')")
	l2 := filepath.Join(share, "l2.trn")
	exec(t, mp.mdb, "BACKUP LOG mgc TO DISK = @p1", l2)

	s := openNamed(t, "SQLB", "", nil)
	sdb := s.connect(t, "master")
	exec(t, sdb, "RESTORE DATABASE mgc FROM DISK = @p1 WITH NORECOVERY", full)
	exec(t, sdb, "RESTORE LOG mgc FROM DISK = @p1 WITH NORECOVERY", l1)
	exec(t, sdb, "RESTORE LOG mgc FROM DISK = @p1 WITH NORECOVERY", l2)
	exec(t, sdb, "RESTORE DATABASE mgc WITH RECOVERY")
	require.EqualValues(t, 4, queryInt(t, sdb, "SELECT COUNT(*) FROM mgc.dbo.messages"))
	require.EqualValues(t, 4, queryInt(t, mp.mdb, "SELECT COUNT(*) FROM mgc.dbo.messages"))
}

// A manual failover while a writer keeps inserting succeeds (SQL Server
// does not refuse it because a transaction committed a moment ago), and
// every insert that was acknowledged is on the new principal.
func TestMirroring_failoverUnderWriteLoad(t *testing.T) {
	mp := setupMirroring(t)
	waitState(t, mp.pdb, "PRINCIPAL", "SYNCHRONIZED")
	waitState(t, mp.mdb, "MIRROR", "SYNCHRONIZED")
	w := mp.p.connect(t, "mgc")
	stop := make(chan struct{})
	acked := make(chan int, 1)
	go func() {
		n := 0
		defer func() { acked <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := w.Exec("INSERT INTO dbo.messages (room, sender, body) VALUES ('r', 'w', 'load')"); err != nil {
				return // the failover killed the session or the database is now the mirror
			}
			n++
		}
	}()
	eventually(t, 10*time.Second, "the writer has written", func() bool {
		return queryInt(t, mp.pdb, "SELECT COUNT(*) FROM mgc.dbo.messages WHERE sender = 'w'") >= 20
	})
	exec(t, mp.pdb, "ALTER DATABASE mgc SET PARTNER FAILOVER")
	close(stop)
	n := <-acked
	require.Equal(t, "MIRROR", readMirroring(t, mp.pdb, "mgc").role.String)
	require.Equal(t, "PRINCIPAL", readMirroring(t, mp.mdb, "mgc").role.String)
	got := queryInt(t, mp.mdb, "SELECT COUNT(*) FROM mgc.dbo.messages WHERE sender = 'w'")
	require.GreaterOrEqual(t, got, int64(n), "acknowledged inserts on the new principal")
	pi, _ := mp.p.in.Database("mgc")
	mi, _ := mp.m.in.Database("mgc")
	require.Equal(t, mi.LSN, pi.LSN, "both copies switched roles at the same LSN")
}
