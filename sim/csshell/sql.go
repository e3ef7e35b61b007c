package csshell

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	mssql "github.com/microsoft/go-mssqldb" // the "sqlserver" driver
)

// sqlErrorNumber returns the SQL Server error number of err (the last
// message of the batch, as go-mssqldb reports it), or 0 when err did not
// come from the server (a network or driver error).
func sqlErrorNumber(err error) int32 {
	var me mssql.Error
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// notMirrored reports SQL Server's answer to SET PARTNER OFF on a database
// that is not mirrored: 1416, followed (like every failed ALTER DATABASE)
// by 5069 "ALTER DATABASE statement failed".
func notMirrored(err error) bool {
	var me mssql.Error
	if !errors.As(err, &me) {
		return false
	}
	if me.Number == 1416 {
		return true
	}
	for _, e := range me.All {
		if e.Number == 1416 {
			return true
		}
	}
	return false
}

// sqlConn is one connection to an instance's master database.
type sqlConn struct {
	in SQLInstance
	db *sql.DB
}

// connect opens and pings in; a failure is the cmdlet's SqlUnreachable
// error (a refused login counts: the real cmdlets report both as a failure
// to connect).
func connect(ctx context.Context, in SQLInstance) (*sqlConn, *cmdletError) {
	db, err := sql.Open("sqlserver", in.DSN("master"))
	if err != nil {
		return nil, fail("SqlUnreachable", "ConnectionError", in.Name(), "Cannot connect to SQL Server \"%s\": %v", in.Name(), err)
	}
	db.SetMaxOpenConns(1)
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fail("SqlUnreachable", "ConnectionError", in.Name(), "Cannot connect to SQL Server \"%s\" at %s: %v", in.Name(), in.Addr, err)
	}
	return &sqlConn{in: in, db: db}, nil
}

func (c *sqlConn) close() { c.db.Close() }

// exec runs one statement; a failure is SqlCommandFailed naming the
// statement and the instance (or SqlUnreachable when the connection broke).
func (c *sqlConn) exec(ctx context.Context, stmt string, args ...any) *cmdletError {
	if _, err := c.db.ExecContext(ctx, stmt, args...); err != nil {
		return c.failure(stmt, err)
	}
	return nil
}

func (c *sqlConn) failure(stmt string, err error) *cmdletError {
	if sqlErrorNumber(err) == 0 {
		return fail("SqlUnreachable", "ConnectionError", c.in.Name(), "Lost the connection to SQL Server \"%s\" during \"%s\": %v", c.in.Name(), stmt, err)
	}
	return fail("SqlCommandFailed", "InvalidOperation", c.in.Name(), "\"%s\" failed on SQL Server \"%s\": %v", stmt, c.in.Name(), err)
}

// databaseInfo returns state_desc and recovery_model_desc of db ("" when
// the database does not exist).
func (c *sqlConn) databaseInfo(ctx context.Context, db string) (state, recovery string, cerr *cmdletError) {
	const q = "SELECT state_desc, recovery_model_desc FROM sys.databases WHERE name = @p1"
	err := c.db.QueryRowContext(ctx, q, db).Scan(&state, &recovery)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", nil
	}
	if err != nil {
		return "", "", c.failure(q, err)
	}
	return state, recovery, nil
}

// quoteName bracket-quotes a SQL identifier (names come from the validated
// CMS, this is defence in depth).
func quoteName(s string) string { return "[" + strings.ReplaceAll(s, "]", "]]") + "]" }

// joinShare appends a file name to a share path with the share's own
// separator (backslash for UNC and drive paths).
func joinShare(share, name string) string {
	sep := "/"
	if strings.Contains(share, `\`) && !strings.Contains(share, "/") {
		sep = `\`
	}
	return strings.TrimRight(share, `\/`) + sep + name
}

// sqlInstallMirror does what Install-CsMirrorDatabase effectively does for
// one database (domain.md §2 F6): check the principal (ONLINE, FULL
// recovery), check or drop the database on the mirror, full and log backup
// to the share, restore both WITH NORECOVERY on the mirror, then SET
// PARTNER on the mirror and on the principal. Mirroring endpoints and a
// witness are not created (see README.md).
func sqlInstallMirror(ctx context.Context, db string, principal, mirror SQLInstance, share string, drop bool, now time.Time) *cmdletError {
	pc, cerr := connect(ctx, principal)
	if cerr != nil {
		return cerr
	}
	defer pc.close()
	state, recovery, cerr := pc.databaseInfo(ctx, db)
	if cerr != nil {
		return cerr
	}
	switch {
	case state == "":
		return fail("DatabaseNotFound", "ObjectNotFound", db, "Database \"%s\" does not exist on SQL Server \"%s\".", db, principal.Name())
	case state != "ONLINE":
		return fail("DatabaseNotOnline", "InvalidOperation", db, "Database \"%s\" on SQL Server \"%s\" is %s; mirroring can be installed only from an ONLINE principal.", db, principal.Name(), state)
	}
	mc, cerr := connect(ctx, mirror)
	if cerr != nil {
		return cerr
	}
	defer mc.close()
	mstate, _, cerr := mc.databaseInfo(ctx, db)
	if cerr != nil {
		return cerr
	}
	if mstate != "" {
		if !drop {
			return fail("MirrorDatabaseExists", "ResourceExists", db, "Database \"%s\" already exists on the mirror SQL Server \"%s\" (state %s). Use -DropExistingDatabasesOnMirror to replace it.", db, mirror.Name(), mstate)
		}
		// A copy that is still a mirroring partner cannot be dropped; 1416
		// means it was not mirrored.
		off := "ALTER DATABASE " + quoteName(db) + " SET PARTNER OFF"
		if _, err := mc.db.ExecContext(ctx, off); err != nil && !notMirrored(err) {
			return mc.failure(off, err)
		}
		if cerr := mc.exec(ctx, "DROP DATABASE "+quoteName(db)); cerr != nil {
			return cerr
		}
	}
	if recovery != "FULL" {
		if cerr := pc.exec(ctx, "ALTER DATABASE "+quoteName(db)+" SET RECOVERY FULL"); cerr != nil {
			return cerr
		}
	}
	stamp := now.UTC().Format("20060102150405")
	bak := joinShare(share, fmt.Sprintf("%s_mirror_%s.bak", db, stamp))
	trn := joinShare(share, fmt.Sprintf("%s_mirror_%s.trn", db, stamp))
	steps := []struct {
		c    *sqlConn
		stmt string
		args []any
	}{
		{pc, "BACKUP DATABASE " + quoteName(db) + " TO DISK = @p1 WITH INIT", []any{bak}},
		{pc, "BACKUP LOG " + quoteName(db) + " TO DISK = @p1 WITH INIT", []any{trn}},
		{mc, "RESTORE DATABASE " + quoteName(db) + " FROM DISK = @p1 WITH NORECOVERY", []any{bak}},
		{mc, "RESTORE LOG " + quoteName(db) + " FROM DISK = @p1 WITH NORECOVERY", []any{trn}},
		// The mirror is told its partner first, as SQL Server requires.
		{mc, "ALTER DATABASE " + quoteName(db) + " SET PARTNER = N'TCP://" + principal.Endpoint() + "'", nil},
		{pc, "ALTER DATABASE " + quoteName(db) + " SET PARTNER = N'TCP://" + mirror.Endpoint() + "'", nil},
	}
	for _, s := range steps {
		if cerr := s.c.exec(ctx, s.stmt, s.args...); cerr != nil {
			return cerr
		}
	}
	return nil
}

// sqlUninstallMirror removes mirroring of db: SET PARTNER OFF on the
// principal (SQL error 1416, "not configured for database mirroring", means
// there is nothing to remove) and, with drop, SET PARTNER OFF on the mirror
// too (a mirror whose principal is gone still thinks it is mirrored) and
// DROP DATABASE there.
func sqlUninstallMirror(ctx context.Context, db string, principal, mirror SQLInstance, drop bool) *cmdletError {
	pc, cerr := connect(ctx, principal)
	if cerr != nil {
		return cerr
	}
	defer pc.close()
	off := "ALTER DATABASE " + quoteName(db) + " SET PARTNER OFF"
	if _, err := pc.db.ExecContext(ctx, off); err != nil && !notMirrored(err) {
		return pc.failure(off, err)
	}
	if !drop {
		return nil
	}
	mc, cerr := connect(ctx, mirror)
	if cerr != nil {
		return cerr
	}
	defer mc.close()
	mstate, _, cerr := mc.databaseInfo(ctx, db)
	if cerr != nil || mstate == "" {
		return cerr
	}
	if _, err := mc.db.ExecContext(ctx, off); err != nil && !notMirrored(err) {
		return mc.failure(off, err)
	}
	return mc.exec(ctx, "DROP DATABASE "+quoteName(db))
}

// databaseState returns sys.databases.state_desc of db on in ("" → an
// error: the database does not exist).
func databaseState(ctx context.Context, in SQLInstance, db string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := sql.Open("sqlserver", in.DSN("master"))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	var state string
	// db is a validated identifier (CMS load); a literal keeps this a plain
	// SQL batch.
	err = conn.QueryRowContext(ctx, "SELECT state_desc FROM sys.databases WHERE name = '"+strings.ReplaceAll(db, "'", "''")+"'").Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("database %s does not exist", db)
	}
	return state, err
}
