package mssql

import (
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"

	"github.com/chatdr/chatdr/sim/mssql/tds"
)

// versionString is @@VERSION.
func (in *Instance) versionString() string {
	return "Microsoft SQL Server 2014 (SP3) (KB4022619) - " + ProductVersion + " (X64) \n" +
		"\tJul 12 2019 21:58:28 \n\tCopyright (c) Microsoft Corporation\n\t" + Edition +
		" on Windows NT 6.3 <X64> (Build 9600: ) (Hypervisor)\n (simulated by chatdr)"
}

// serverProperty is SERVERPROPERTY(name); nil for unknown properties, as in
// SQL Server.
func (in *Instance) serverProperty(name string) any {
	machine, inst, named := strings.Cut(in.cfg.Name, `\`)
	switch strings.ToLower(name) {
	case "productversion":
		return ProductVersion
	case "productlevel":
		return "SP3"
	case "productmajorversion":
		return "12"
	case "productminorversion":
		return "0"
	case "productbuild":
		return "6024"
	case "isintegratedsecurityonly", "issingleuser", "isfulltextinstalled":
		return int64(0)
	case "edition":
		return Edition
	case "engineedition":
		return int64(3)
	case "servername":
		return in.cfg.Name
	case "machinename", "computernamephysicalnetbios":
		return machine
	case "instancename":
		if named {
			return inst
		}
		return nil
	case "ishadrenabled", "isclustered":
		return int64(0)
	case "collation":
		return "SQL_Latin1_General_CP1_CI_AS"
	}
	return nil
}

func lsnValue(lsn uint64) any {
	if lsn == 0 {
		return nil
	}
	return tds.Decimal{Unscaled: new(big.Int).SetUint64(lsn), Scale: 0}
}

// viewCol is a column of a system view.
type viewCol struct {
	name string
	t    colType
}

func newView(qual string, cols []viewCol) *scope {
	sc := &scope{}
	for _, c := range cols {
		sc.add(qual, c.name, c.t)
	}
	return sc
}

var (
	dbStateCode    = map[string]int64{stateOnline: 0, stateRestoring: 1, stateOffline: 6}
	userAccessCode = map[string]int64{"MULTI_USER": 0, "SINGLE_USER": 1, "RESTRICTED_USER": 2}
	recoveryCode   = map[string]int64{"FULL": 1, "BULK_LOGGED": 2, "SIMPLE": 3}
)

// systemView returns the rows of a sys.* view, or false if unknown.
func (x *execCtx) systemView(name, qual, dbName string) (*source, bool) {
	in := x.in
	switch name {
	case "tables", "objects":
		sc := newView(qual, []viewCol{
			{"name", typeSysname}, {"object_id", typeInt}, {"schema_id", typeInt},
			{"type", colType{Name: "nchar", Len: 2}}, {"type_desc", nvarchar(60)}, {"create_date", typeDateTime},
		})
		var rows [][]any
		if d := in.db(dbName); d != nil && d.readable() == nil {
			keys := make([]string, 0, len(d.tables))
			for k := range d.tables {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				t := d.tables[k]
				rows = append(rows, []any{t.Name, t.objectID(d), int64(1), "U ", "USER_TABLE", t.Created})
			}
		}
		return &source{sc: sc, rows: rows}, true
	case "databases":
		sc := newView(qual, []viewCol{
			{"name", typeSysname}, {"database_id", typeInt}, {"create_date", typeDateTime},
			{"compatibility_level", typeTinyInt}, {"collation_name", typeSysname},
			{"user_access", typeTinyInt}, {"user_access_desc", nvarchar(60)},
			{"is_read_only", typeBit}, {"state", typeTinyInt}, {"state_desc", nvarchar(60)},
			{"is_in_standby", typeBit}, {"recovery_model", typeTinyInt}, {"recovery_model_desc", nvarchar(60)},
		})
		var rows [][]any
		for _, d := range in.sortedDBs() {
			rows = append(rows, []any{d.Name, int64(d.ID), d.Created, int64(120), "SQL_Latin1_General_CP1_CI_AS",
				userAccessCode[d.UserAccess], d.UserAccess, d.ReadOnly || d.Standby, dbStateCode[d.State], d.State,
				d.Standby, recoveryCode[d.Recovery], d.Recovery})
		}
		return &source{sc: sc, rows: rows}, true
	case "master_files":
		sc := newView(qual, []viewCol{
			{"database_id", typeInt}, {"file_id", typeInt}, {"type", typeTinyInt}, {"type_desc", nvarchar(60)},
			{"name", typeSysname}, {"physical_name", nvarchar(260)}, {"state", typeTinyInt}, {"state_desc", nvarchar(60)},
			{"size", typeInt}, {"redo_start_lsn", typeLSN}, {"redo_start_fork_guid", typeGUID},
		})
		var rows [][]any
		for _, d := range in.sortedDBs() {
			var redo, fork any
			if (d.State == stateRestoring || d.Standby) && d.RedoStartLSN != 0 {
				redo, fork = lsnValue(d.RedoStartLSN), d.RedoStartFork
			}
			st := dbStateCode[d.State]
			rows = append(rows,
				[]any{int64(d.ID), int64(1), int64(0), "ROWS", d.Name, d.DataFile, st, d.State, int64(1024), redo, fork},
				[]any{int64(d.ID), int64(2), int64(1), "LOG", d.Name + "_log", d.LogFile, st, d.State, int64(256), redo, fork})
		}
		return &source{sc: sc, rows: rows}, true
	case "sysprocesses":
		sc := newView(qual, []viewCol{
			{"spid", typeSmallInt}, {"kpid", typeSmallInt}, {"blocked", typeSmallInt}, {"dbid", typeSmallInt},
			{"login_time", typeDateTime}, {"last_batch", typeDateTime}, {"status", colType{Name: "nchar", Len: 30}},
			{"hostname", colType{Name: "nchar", Len: 128}}, {"program_name", colType{Name: "nchar", Len: 128}},
			{"cmd", colType{Name: "nchar", Len: 16}}, {"loginame", colType{Name: "nchar", Len: 128}},
		})
		var rows [][]any
		if srv := x.server(); srv != nil {
			for _, s := range srv.Sessions() {
				var dbID any = int64(0)
				if d := in.db(s.Database()); d != nil {
					dbID = int64(d.ID)
				}
				status, cmd := "sleeping", "AWAITING COMMAND"
				if s.Running() {
					status, cmd = "runnable", "SELECT"
				}
				last := s.LastRequestStart()
				if last.IsZero() {
					last = s.LoginTime()
				}
				rows = append(rows, []any{int64(s.ID()), int64(0), int64(0), dbID, s.LoginTime().UTC(), last.UTC(),
					status, s.HostName(), s.AppName(), cmd, s.LoginName()})
			}
		}
		if a := in.agent; a != nil && a.running {
			rows = append(rows, []any{int64(agentSessionID), int64(0), int64(0), int64(4), a.started.UTC(), a.started.UTC(),
				"sleeping", in.machineName(), AgentProgramName, "AWAITING COMMAND", `NT SERVICE\SQLSERVERAGENT`})
		}
		return &source{sc: sc, rows: rows}, true
	case "sysdatabases":
		sc := newView(qual, []viewCol{{"name", typeSysname}, {"dbid", typeSmallInt}, {"crdate", typeDateTime}, {"filename", nvarchar(260)}})
		var rows [][]any
		for _, d := range in.sortedDBs() {
			rows = append(rows, []any{d.Name, int64(d.ID), d.Created, d.DataFile})
		}
		return &source{sc: sc, rows: rows}, true
	case "database_mirroring":
		return x.mirroringView(qual), true
	case "dm_exec_sessions":
		sc := newView(qual, []viewCol{
			{"session_id", typeSmallInt}, {"login_time", typeDateTime}, {"host_name", typeSysname},
			{"program_name", typeSysname}, {"login_name", typeSysname}, {"status", nvarchar(30)},
			{"database_id", typeSmallInt}, {"is_user_process", typeBit},
			{"last_request_start_time", typeDateTime}, {"last_request_end_time", typeDateTime},
		})
		var rows [][]any
		if srv := x.server(); srv != nil {
			for _, s := range srv.Sessions() {
				var dbID any
				if d := in.db(s.Database()); d != nil {
					dbID = int64(d.ID)
				}
				status := "sleeping"
				if s.Running() {
					status = "running"
				}
				var lastStart any
				if t := s.LastRequestStart(); !t.IsZero() {
					lastStart = t.UTC()
				}
				rows = append(rows, []any{int64(s.ID()), s.LoginTime().UTC(), s.HostName(), s.AppName(), s.LoginName(),
					status, dbID, true, lastStart, s.LastRequestEnd().UTC()})
			}
		}
		if a := in.agent; a != nil && a.running {
			rows = append(rows, []any{int64(agentSessionID), a.started.UTC(), in.machineName(), AgentProgramName,
				`NT SERVICE\SQLSERVERAGENT`, "sleeping", int64(4), true, a.started.UTC(), a.started.UTC()})
		}
		return &source{sc: sc, rows: rows}, true
	}
	return nil, false
}

// machineName is the host part of the server name.
func (in *Instance) machineName() string {
	m, _, _ := strings.Cut(in.cfg.Name, `\`)
	return m
}

// procArg is an argument of a procedure call.
type procArg struct {
	Name    string
	Value   any
	Output  bool
	Ordinal int
	Var     string // EXEC …, @x = @v OUTPUT: the variable receiving the value
}

func (x *execCtx) execStmt(s *stExec) error {
	args := make([]procArg, 0, len(s.Args))
	e := &env{x: x}
	for i, a := range s.Args {
		var v any
		if c, ok := a.E.(*exCol); ok && len(c.Parts) == 1 {
			v = c.Parts[0] // bare words are strings in EXEC arguments
		} else {
			var err error
			v, err = e.eval(a.E)
			if err != nil {
				return err
			}
		}
		pa := procArg{Name: a.Name, Value: v, Output: a.Output, Ordinal: i}
		if vr, ok := a.E.(*exVar); ok && a.Output && !strings.HasPrefix(vr.Name, "@@") {
			pa.Var = vr.Name
		}
		args = append(args, pa)
	}
	if s.RC != "" {
		if _, ok := x.vars[strings.ToLower(s.RC)]; !ok {
			return sqlErr(msgMustDeclare, s.RC)
		}
	}
	x.lastRC = 0
	if err := x.proc(s.Proc.Raw, args, false); err != nil {
		return err
	}
	if s.RC != "" {
		return x.assign(s.RC, int64(x.lastRC))
	}
	return nil
}

// callProc runs a procedure called by name through RPC; the lock is taken
// here.
func (x *execCtx) callProc(name string, args []procArg) error {
	x.in.mu.Lock()
	var err error
	if x.in.closed {
		err = ErrClosed
	} else {
		err = x.proc(name, args, true)
	}
	x.in.mu.Unlock()
	return errors.Join(x.flushOps(), err)
}

// proc runs a system procedure. byRPC is set when the client called it by
// name (the server then ends the reply with DONEPROC itself).
func (x *execCtx) proc(name string, args []procArg, byRPC bool) error {
	short := strings.ToLower(name)
	for _, p := range []string{"master.dbo.", "master..", "master.sys.", "dbo.", "sys."} {
		short = strings.TrimPrefix(short, p)
	}
	var cols []resultCol
	var rows [][]any
	switch short {
	case "sp_who2", "sp_who":
		if len(args) > 1 {
			return sqlErr(8144, short)
		}
		var filter any
		if len(args) == 1 {
			filter = args[0].Value
		}
		cols, rows = x.spWho(short == "sp_who2", filter)
	default:
		if handled, err := x.sysProc(name, args, byRPC); handled {
			return err
		}
		return sqlErr(msgProcNotFound, name)
	}
	if x.w == nil {
		if x.sink != nil {
			x.sink(cols, rows)
		}
		return nil
	}
	w := x.w
	x.emit(func() error {
		tc := make([]tds.Column, len(cols))
		for i, c := range cols {
			tc[i] = tds.Column{Name: c.Name, Type: c.Type.tdsType(), Nullable: true}
		}
		if err := w.Columns(tc...); err != nil {
			return err
		}
		for _, r := range rows {
			if err := w.Row(r...); err != nil {
				return err
			}
		}
		if byRPC {
			if err := w.Done(tds.DoneCount, tds.CmdSelect, uint64(len(rows))); err != nil {
				return err
			}
			return w.ReturnStatus(0)
		}
		if err := w.DoneInProc(tds.DoneCount, tds.CmdSelect, uint64(len(rows))); err != nil {
			return err
		}
		if err := w.ReturnStatus(0); err != nil {
			return err
		}
		return w.DoneProc(0, tds.CmdExecute, 0)
	})
	return nil
}

// spWho returns sp_who2 (or sp_who) rows for the user sessions. filter is
// the optional argument: 'active' (sessions not awaiting a command), a
// session id, or a login name.
func (x *execCtx) spWho(two bool, filter any) ([]resultCol, [][]any) {
	var rows [][]any
	var cols []resultCol
	if two {
		cols = []resultCol{{"SPID", colType{Name: "nchar", Len: 5}}, {"Status", nvarchar(30)}, {"Login", typeSysname},
			{"HostName", typeSysname}, {"BlkBy", colType{Name: "nchar", Len: 5}}, {"DBName", typeSysname},
			{"Command", nvarchar(16)}, {"CPUTime", typeInt}, {"DiskIO", typeInt}, {"LastBatch", nvarchar(14)},
			{"ProgramName", typeSysname}, {"SPID", colType{Name: "nchar", Len: 5}}, {"REQUESTID", typeInt}}
	} else {
		cols = []resultCol{{"spid", typeSmallInt}, {"ecid", typeSmallInt}, {"status", nvarchar(30)},
			{"loginame", typeSysname}, {"hostname", typeSysname}, {"blk", colType{Name: "nchar", Len: 5}},
			{"dbname", typeSysname}, {"cmd", nvarchar(16)}, {"request_id", typeInt}}
	}
	srv := x.server()
	if srv == nil {
		return cols, nil
	}
	for _, s := range srv.Sessions() {
		switch f := filter.(type) {
		case int64:
			if int64(s.ID()) != f {
				continue
			}
		case string:
			if strings.EqualFold(f, "active") {
				if !s.Running() {
					continue
				}
			} else if id, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
				if int(s.ID()) != id {
					continue
				}
			} else if !strings.EqualFold(f, s.LoginName()) {
				continue
			}
		}
		status, cmd := "sleeping", "AWAITING COMMAND"
		if s.Running() {
			status, cmd = "RUNNABLE", "SELECT INTO"
			if !two {
				status, cmd = "runnable", "SELECT"
			}
		}
		spid := fmt.Sprintf("%-5d", s.ID())
		if two {
			last := s.LastRequestStart()
			if last.IsZero() {
				last = s.LoginTime()
			}
			rows = append(rows, []any{spid, status, s.LoginName(), s.HostName(), "  .  ", s.Database(), cmd,
				int64(0), int64(0), last.Format("01/02 15:04:05"), s.AppName(), spid, int64(0)})
		} else {
			rows = append(rows, []any{int64(s.ID()), int64(0), status, s.LoginName(), s.HostName(), "0    ", s.Database(), cmd, int64(0)})
		}
	}
	return cols, rows
}
