// Package csshelltest helps tests drive the Management Shell simulator: a
// tiny fake SQL Server (a TDS server from sim/mssql/tds that understands
// exactly the statements the simulator sends and records them) and a lab
// CMS with eight chat servers in two sites.
//
// The fake is not the SQL Server simulator: it keeps a name → state and
// partner map per instance and records every statement, nothing more. It
// lets tests check exactly what Install-/Uninstall-CsMirrorDatabase and
// Test-CsPersistentChatMessage send through go-mssqldb, in which order, and
// how they react to injected SQL errors, without starting SQL simulators.
package csshelltest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/chatdr/chatdr/sim/csshell"
	"github.com/chatdr/chatdr/sim/mssql/tds"
)

// Login and Password are the SQL login every FakeSQL accepts.
const (
	Login    = "sa"
	Password = "Pa55w0rd!"
)

// UnreachableAddr is a loopback address where nothing listens.
const UnreachableAddr = "127.0.0.1:1"

// Statement is one statement a FakeSQL received, with its bound
// parameters (sp_executesql) in order.
type Statement struct {
	SQL  string
	Args []any
	// Seq orders statements across the fakes started by one Fakes call.
	Seq int64
}

// FakeDB is a database of a FakeSQL.
type FakeDB struct {
	State    string // ONLINE, RESTORING, ...
	Recovery string // FULL, SIMPLE
	// Partner is the SET PARTNER address ("" when not mirrored).
	Partner string
	// Restored lists the files restored into it, in order.
	Restored []string
}

// FakeSQL is a fake SQL Server instance on 127.0.0.1. Safe for concurrent
// use.
type FakeSQL struct {
	name string
	srv  *tds.Server

	seq *atomic.Int64

	mu     sync.Mutex
	dbs    map[string]*FakeDB
	stmts  []Statement
	failOn map[string]*tds.Error
}

// NewFakeSQL starts a fake instance called name; it stops at the end of
// the test.
func NewFakeSQL(t testing.TB, name string) *FakeSQL {
	t.Helper()
	f := &FakeSQL{name: name, seq: new(atomic.Int64), dbs: map[string]*FakeDB{}, failOn: map[string]*tds.Error{}}
	srv, err := tds.NewServer(tds.Config{Handler: f, ServerName: name})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	t.Cleanup(func() { srv.Close() })
	return f
}

// Addr returns the instance's TDS address.
func (f *FakeSQL) Addr() string { return f.srv.Addr().String() }

// Instance returns the CMS entry of this instance under fqdn.
func (f *FakeSQL) Instance(fqdn string) csshell.SQLInstance {
	return csshell.SQLInstance{FQDN: fqdn, Addr: f.Addr(), Login: Login, Password: Password}
}

// SetDatabase creates or replaces database name.
func (f *FakeSQL) SetDatabase(name, state, recovery string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dbs[strings.ToLower(name)] = &FakeDB{State: state, Recovery: recovery}
}

// Database returns a copy of database name.
func (f *FakeSQL) Database(name string) (FakeDB, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	db, ok := f.dbs[strings.ToLower(name)]
	if !ok {
		return FakeDB{}, false
	}
	c := *db
	c.Restored = append([]string(nil), db.Restored...)
	return c, true
}

// FailOn makes every statement starting with prefix (case-insensitive)
// fail with err.
func (f *FakeSQL) FailOn(prefix string, err *tds.Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failOn[strings.ToLower(prefix)] = err
}

// Statements returns the statements received so far (without the
// driver's "select 1;" pings).
func (f *FakeSQL) Statements() []Statement {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Statement(nil), f.stmts...)
}

// SQL returns the text of Statements.
func (f *FakeSQL) SQL() []string {
	var out []string
	for _, s := range f.Statements() {
		out = append(out, s.SQL)
	}
	return out
}

// Authenticate implements tds.Handler.
func (f *FakeSQL) Authenticate(_ context.Context, l tds.Login) (string, error) {
	if l.UserName != Login || l.Password != Password {
		return "", tds.LoginFailed(l.UserName)
	}
	return "master", nil
}

// Batch implements tds.Handler.
func (f *FakeSQL) Batch(ctx context.Context, _ *tds.Session, b *tds.Batch, w *tds.ResponseWriter) error {
	return f.run(b.SQL, nil, w)
}

// RPC implements tds.Handler (sp_executesql only).
func (f *FakeSQL) RPC(ctx context.Context, _ *tds.Session, call *tds.RPCCall, w *tds.ResponseWriter) error {
	e, err := call.ExecuteSQL()
	if err != nil {
		return &tds.Error{Number: 2812, Class: 16, State: 62, Message: fmt.Sprintf("Could not find stored procedure '%s'.", call.Name)}
	}
	var args []any
	for _, p := range e.Params {
		args = append(args, p.Value)
	}
	return f.run(e.Statement, args, w)
}

var (
	reSelectInfo  = regexp.MustCompile(`(?i)^SELECT state_desc, recovery_model_desc FROM sys\.databases WHERE name = @p1$`)
	reSelectState = regexp.MustCompile(`(?i)^SELECT state_desc FROM sys\.databases WHERE name = (@p1|'((?:[^']|'')*)')$`)
	reRecovery    = regexp.MustCompile(`(?i)^ALTER DATABASE \[([^\]]+)\] SET RECOVERY FULL$`)
	rePartnerOff  = regexp.MustCompile(`(?i)^ALTER DATABASE \[([^\]]+)\] SET PARTNER OFF$`)
	rePartner     = regexp.MustCompile(`(?i)^ALTER DATABASE \[([^\]]+)\] SET PARTNER = N'(TCP://[^']+)'$`)
	reDrop        = regexp.MustCompile(`(?i)^DROP DATABASE \[([^\]]+)\]$`)
	reBackup      = regexp.MustCompile(`(?i)^BACKUP (DATABASE|LOG) \[([^\]]+)\] TO DISK = @p1 WITH INIT$`)
	reRestore     = regexp.MustCompile(`(?i)^RESTORE (DATABASE|LOG) \[([^\]]+)\] FROM DISK = @p1 WITH NORECOVERY$`)
)

func sqlErr(number int32, format string, a ...any) *tds.Error {
	return &tds.Error{Number: number, Class: 16, State: 1, Message: fmt.Sprintf(format, a...)}
}

func (f *FakeSQL) run(stmt string, args []any, w *tds.ResponseWriter) error {
	stmt = strings.TrimSpace(stmt)
	if strings.EqualFold(strings.TrimSuffix(stmt, ";"), "select 1") {
		w.Columns(tds.Column{Name: "", Type: tds.TypeInt()})
		w.Row(1)
		return w.EndResultSet()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stmts = append(f.stmts, Statement{SQL: stmt, Args: args, Seq: f.seq.Add(1)})
	for prefix, err := range f.failOn {
		if strings.HasPrefix(strings.ToLower(stmt), prefix) {
			return err
		}
	}
	arg := func() string { s, _ := firstArg(args).(string); return s }
	switch {
	case reSelectInfo.MatchString(stmt):
		w.Columns(tds.Column{Name: "state_desc", Type: tds.TypeNVarChar(60)}, tds.Column{Name: "recovery_model_desc", Type: tds.TypeNVarChar(60)})
		if db, ok := f.dbs[strings.ToLower(arg())]; ok {
			w.Row(db.State, db.Recovery)
		}
		return w.EndResultSet()
	case reSelectState.MatchString(stmt):
		m := reSelectState.FindStringSubmatch(stmt)
		name := strings.ReplaceAll(m[2], "''", "'")
		if m[1] == "@p1" {
			name = arg()
		}
		w.Columns(tds.Column{Name: "state_desc", Type: tds.TypeNVarChar(60)})
		if db, ok := f.dbs[strings.ToLower(name)]; ok {
			w.Row(db.State)
		}
		return w.EndResultSet()
	case reRecovery.MatchString(stmt):
		db, err := f.db(reRecovery.FindStringSubmatch(stmt)[1])
		if err != nil {
			return err
		}
		db.Recovery = "FULL"
	case rePartnerOff.MatchString(stmt):
		name := rePartnerOff.FindStringSubmatch(stmt)[1]
		db, err := f.db(name)
		if err != nil {
			return err
		}
		if db.Partner == "" {
			// As SQL Server: 1416, then 5069 (the driver reports the last).
			return errors.Join(sqlErr(1416, "Database \"%s\" is not configured for database mirroring.", name),
				sqlErr(5069, "ALTER DATABASE statement failed."))
		}
		db.Partner = ""
	case rePartner.MatchString(stmt):
		m := rePartner.FindStringSubmatch(stmt)
		db, err := f.db(m[1])
		if err != nil {
			return err
		}
		db.Partner = m[2]
	case reDrop.MatchString(stmt):
		name := reDrop.FindStringSubmatch(stmt)[1]
		db, err := f.db(name)
		if err != nil {
			return err
		}
		if db.Partner != "" {
			return sqlErr(3743, "The database '%s' is enabled for database mirroring. Database mirroring must be removed before you drop the database.", name)
		}
		delete(f.dbs, strings.ToLower(name))
	case reBackup.MatchString(stmt):
		db, err := f.db(reBackup.FindStringSubmatch(stmt)[2])
		if err != nil {
			return err
		}
		if db.State != "ONLINE" {
			return sqlErr(927, "Database '%s' cannot be opened. It is in the middle of a restore.", reBackup.FindStringSubmatch(stmt)[2])
		}
	case reRestore.MatchString(stmt):
		m := reRestore.FindStringSubmatch(stmt)
		key := strings.ToLower(m[2])
		db, exists := f.dbs[key]
		if strings.EqualFold(m[1], "DATABASE") {
			if exists {
				return sqlErr(1801, "Database '%s' already exists. Choose a different database name.", m[2])
			}
			db = &FakeDB{State: "RESTORING", Recovery: "FULL"}
			f.dbs[key] = db
		} else if !exists || db.State != "RESTORING" {
			return sqlErr(3117, "The log or differential backup cannot be restored because no files are ready to rollforward.")
		}
		db.Restored = append(db.Restored, arg())
	default:
		return sqlErr(102, "Incorrect syntax near '%s' (statement not known to csshelltest.FakeSQL).", stmt)
	}
	return w.Done(0, tds.CmdNone, 0)
}

func firstArg(args []any) any {
	if len(args) == 0 {
		return nil
	}
	return args[0]
}

func (f *FakeSQL) db(name string) (*FakeDB, error) {
	db, ok := f.dbs[strings.ToLower(name)]
	if !ok {
		return nil, sqlErr(911, "Database '%s' does not exist. Make sure that the name is entered correctly.", name)
	}
	return db, nil
}

// PoolFQDN is the lab pool.
const PoolFQDN = "pchat01.contoso.com"

// SiteServers returns the lab chat servers of site: pc1..pc4 in dc1 (the
// primary site), pc5..pc8 in dc2.
func SiteServers(site string) []string {
	switch site {
	case "dc1":
		return []string{"pc1.dc1.contoso.com", "pc2.dc1.contoso.com", "pc3.dc1.contoso.com", "pc4.dc1.contoso.com"}
	case "dc2":
		return []string{"pc5.dc2.contoso.com", "pc6.dc2.contoso.com", "pc7.dc2.contoso.com", "pc8.dc2.contoso.com"}
	}
	return nil
}

// Roles are the SQL roles of the lab, in a fixed order.
func Roles() []string {
	return []string{csshell.RolePrimary, csshell.RolePrimaryMirror, csshell.RoleBackup, csshell.RoleBackupMirror}
}

// SQLFQDN returns the FQDN of the lab's SQL instance in role.
func SQLFQDN(role string) string {
	switch role {
	case csshell.RolePrimary:
		return "sql1.dc1.contoso.com"
	case csshell.RolePrimaryMirror:
		return "sql2.dc1.contoso.com"
	case csshell.RoleBackup:
		return "sql1.dc2.contoso.com"
	case csshell.RoleBackupMirror:
		return "sql2.dc2.contoso.com"
	}
	return ""
}

// LabCMS returns a CMS for the lab pool with the eight chat servers (pc1
// and pc2 active, Normal) and the given SQL instances by role (roles
// missing from sql point at UnreachableAddr).
func LabCMS(sql map[string]csshell.SQLInstance) csshell.CMS {
	c := csshell.CMS{
		Pool:      csshell.Pool{FQDN: PoolFQDN, Site: "dc1"},
		SQL:       map[string]csshell.SQLInstance{},
		Databases: csshell.Databases{Chat: "mgc", Compliance: "mgccomp"},
		History:   []csshell.Change{{Version: 1, PoolState: csshell.Normal, ActiveServers: []string{"pc1.dc1.contoso.com", "pc2.dc1.contoso.com"}}},
	}
	for _, site := range []string{"dc1", "dc2"} {
		for _, s := range SiteServers(site) {
			c.Servers = append(c.Servers, csshell.ChatServer{FQDN: s, Site: site})
		}
	}
	for _, role := range Roles() {
		in, ok := sql[role]
		if !ok {
			in = csshell.SQLInstance{FQDN: SQLFQDN(role), Addr: UnreachableAddr, Login: Login, Password: Password}
		}
		c.SQL[role] = in
	}
	return c
}

// Fakes starts a FakeSQL per lab role, with mgc ONLINE on the primary and
// RESTORING on the backup (a log-shipping secondary), and returns them
// with the matching SQL map for LabCMS.
func Fakes(t testing.TB) (map[string]*FakeSQL, map[string]csshell.SQLInstance) {
	t.Helper()
	fakes := map[string]*FakeSQL{}
	insts := map[string]csshell.SQLInstance{}
	seq := new(atomic.Int64)
	for _, role := range Roles() {
		fqdn := SQLFQDN(role)
		f := NewFakeSQL(t, strings.ToUpper(strings.Split(fqdn, ".")[0]))
		f.seq = seq
		fakes[role] = f
		insts[role] = f.Instance(fqdn)
	}
	fakes[csshell.RolePrimary].SetDatabase("mgc", "ONLINE", "FULL")
	fakes[csshell.RoleBackup].SetDatabase("mgc", "RESTORING", "FULL")
	return fakes, insts
}
