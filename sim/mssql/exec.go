package mssql

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/chatdr/chatdr/sim/mssql/tds"
	bolt "go.etcd.io/bbolt"
)

// handler adapts an Instance to tds.Handler.
type handler struct{ in *Instance }

var _ tds.SessionCloser = handler{}

// sessionKey holds per-session SET options.
type sessionKey struct{}

type sessionOpts struct {
	nocount bool
}

// Authenticate implements tds.Handler: SQL logins from Config.Logins; the
// requested database must exist, be readable and not be held in SINGLE_USER
// by another session (4060 or 924, each followed by 18456).
func (h handler) Authenticate(_ context.Context, l tds.Login) (string, error) {
	in := h.in
	pw, ok := in.cfg.Logins[l.UserName]
	if !ok || pw != l.Password {
		return "", tds.LoginFailed(l.UserName)
	}
	name := l.Database
	if name == "" {
		name = "master"
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return "", ErrClosed
	}
	d := in.db(name)
	if d == nil || d.readable() != nil {
		return "", errors.Join(tds.CannotOpenDatabase(name), tds.LoginFailed(l.UserName))
	}
	if d.UserAccess == "SINGLE_USER" && in.sessionsIn(nil, d.Name) > 0 {
		return "", errors.Join(sqlErr(msgSingleUser, d.Name), tds.LoginFailed(l.UserName))
	}
	return d.Name, nil
}

// Batch implements tds.Handler: it runs a SQL batch.
func (h handler) Batch(ctx context.Context, s *tds.Session, b *tds.Batch, w *tds.ResponseWriter) error {
	if err := h.in.applyFault(ctx, b.SQL); err != nil {
		return err
	}
	x := h.newCtx(ctx, s, w, b.ResetConnection)
	return x.runBatch(b.SQL, nil)
}

// RPC implements tds.Handler: sp_executesql runs its statement with the
// parameters as values; other procedures are called by name.
func (h handler) RPC(ctx context.Context, s *tds.Session, c *tds.RPCCall, w *tds.ResponseWriter) error {
	x := h.newCtx(ctx, s, w, c.ResetConnection)
	x.rpc = true
	if c.IsExecuteSQL() {
		e, err := c.ExecuteSQL()
		if err != nil {
			return err
		}
		if err := h.in.applyFault(ctx, e.Statement); err != nil {
			return err
		}
		params := map[string]any{}
		for _, p := range e.Params {
			params[strings.ToLower(p.Name)] = paramValue(p.Value)
		}
		return x.runBatch(e.Statement, params)
	}
	if err := h.in.applyFault(ctx, c.Name); err != nil {
		return err
	}
	args := make([]procArg, 0, len(c.Params))
	for _, p := range c.Params {
		args = append(args, procArg{Name: p.Name, Value: paramValue(p.Value), Output: p.Output, Ordinal: p.Ordinal})
	}
	return x.callProc(c.Name, args)
}

// SessionClosed implements tds.SessionCloser.
func (h handler) SessionClosed(*tds.Session) {}

// paramValue converts a decoded RPC parameter to an engine value.
func paramValue(v any) any {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case float32:
		return float64(x)
	}
	return v
}

func (h handler) newCtx(ctx context.Context, s *tds.Session, w *tds.ResponseWriter, reset bool) *execCtx {
	if reset {
		// sp_reset_connection: SET options and the database context go
		// back to what the login had.
		s.SetValue(sessionKey{}, nil)
		if init := s.InitialDatabase(); init != "" && !strings.EqualFold(init, s.Database()) {
			h.in.mu.Lock()
			d := h.in.db(init)
			h.in.mu.Unlock()
			if d != nil {
				s.SetDatabase(d.Name)
			}
		}
	}
	opts, _ := s.Value(sessionKey{}).(*sessionOpts)
	if opts == nil {
		opts = &sessionOpts{}
		s.SetValue(sessionKey{}, opts)
	}
	return &execCtx{in: h.in, ctx: ctx, sess: s, w: w, db: s.Database(), login: s.LoginName(), opts: opts}
}

// waitFor is WAITFOR DELAY 'hh:mm:ss[.fff]': it holds no lock and ends
// early, with the context's error, on attention.
func (x *execCtx) waitFor(s *stWaitFor) error {
	v, err := (&env{x: x}).eval(s.Delay)
	if err != nil {
		return err
	}
	str, _ := v.(string)
	t, err := time.Parse("15:04:05.999", str)
	if err != nil {
		t, err = time.Parse("15:04:05", str)
	}
	if err != nil {
		t, err = time.Parse("15:04", str)
	}
	if err != nil {
		return sqlErr(148, str)
	}
	d := time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute +
		time.Duration(t.Second())*time.Second + time.Duration(t.Nanosecond())
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-x.ctx.Done():
		return x.ctx.Err()
	}
	x.done(0, 0, false)
	return x.flushOps()
}

// raise is RAISERROR and THROW: an error (severity 11 or more) or an INFO.
func (x *execCtx) raise(s *stRaise) error {
	e := &env{x: x}
	eval := func(ex expr, t colType) (any, error) {
		v, err := e.eval(ex)
		if err != nil {
			return nil, err
		}
		return coerce(v, t)
	}
	msgV, err := eval(s.Msg, typeNVarMax)
	if err != nil {
		return err
	}
	sevV, err := eval(s.Severity, typeInt)
	if err != nil {
		return err
	}
	stV, err := eval(s.State, typeInt)
	if err != nil {
		return err
	}
	number := int64(50000)
	if s.Number != nil {
		nv, err := eval(s.Number, typeInt)
		if err != nil {
			return err
		}
		number, _ = nv.(int64)
	}
	msg, _ := msgV.(string)
	if len(s.Args) > 0 {
		args := make([]any, len(s.Args))
		for i, a := range s.Args {
			v, err := e.eval(a)
			if err != nil {
				return err
			}
			args[i] = v
		}
		msg = fmt.Sprintf(strings.NewReplacer("%s", "%v", "%d", "%v", "%i", "%v", "%u", "%v").Replace(msg), args...)
	}
	sev, _ := sevV.(int64)
	state, _ := stV.(int64)
	te := &tds.Error{Number: int32(number), State: uint8(max(min(state, 255), 0)), Class: uint8(max(min(sev, 25), 0)), Message: msg}
	if sev <= 10 {
		x.info(te)
		if s.NoWait && x.w != nil {
			w := x.w
			x.emit(w.Flush)
		}
		x.done(0, 0, false)
		return nil
	}
	return te
}

// errBreak and errContinue unwind BREAK and CONTINUE to their WHILE.
var (
	errBreak    = errors.New("mssql: BREAK")
	errContinue = errors.New("mssql: CONTINUE")
)

// variable is a DECLAREd T-SQL variable.
type variable struct {
	t colType
	v any
}

func (x *execCtx) declare(s *stDeclare) error {
	if x.vars == nil {
		x.vars = map[string]*variable{}
	}
	for _, dv := range s.Vars {
		key := strings.ToLower(dv.Name)
		if _, dup := x.vars[key]; dup {
			return sqlErr(134, dv.Name)
		}
		if _, dup := x.params[key]; dup {
			return sqlErr(134, dv.Name)
		}
		v := &variable{t: dv.Type}
		if dv.Init != nil {
			val, err := (&env{x: x}).eval(dv.Init)
			if err != nil {
				return err
			}
			if v.v, err = coerce(val, dv.Type); err != nil {
				return err
			}
		}
		x.vars[key] = v
	}
	x.done(0, 0, false)
	return nil
}

// assign stores a value into a declared variable.
func (x *execCtx) assign(name string, val any) error {
	v := x.vars[strings.ToLower(name)]
	if v == nil {
		return sqlErr(msgMustDeclare, name)
	}
	cv, err := coerce(val, v.t)
	if err != nil {
		return err
	}
	v.v = cv
	return nil
}

// resultCol is a column of a result set.
type resultCol struct {
	Name string
	Type colType
}

// execCtx runs the statements of one request.
type execCtx struct {
	in    *Instance
	ctx   context.Context
	sess  *tds.Session        // nil for Instance.Exec
	w     *tds.ResponseWriter // nil for Instance.Exec
	sink  func([]resultCol, [][]any)
	rpc   bool
	db    string
	login string
	opts  *sessionOpts

	params   map[string]any
	vars     map[string]*variable // DECLAREd in the batch, by lower-case name
	rowCount int64
	lastRC   int32          // return status of the last EXEC
	ops      []func() error // output produced under the lock, written after it
}

// runBatch parses and runs a batch. Statements run one by one; the first
// error ends the batch.
func (x *execCtx) runBatch(sql string, params map[string]any) error {
	if x.opts == nil {
		x.opts = &sessionOpts{}
	}
	x.params = params
	stmts, err := parseBatch(sql)
	if err != nil {
		return err
	}
	for _, s := range stmts {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		if err := x.run(s); err != nil {
			return err
		}
	}
	return nil
}

// run executes one statement under the engine lock, then writes its output.
func (x *execCtx) run(s stmt) error {
	switch st := s.(type) {
	case stBlock:
		for _, inner := range st {
			if err := x.run(inner); err != nil {
				return err
			}
		}
		return nil
	case *stWaitFor:
		return x.waitFor(st)
	case stBreak:
		return errBreak
	case stContinue:
		return errContinue
	case *stWhile:
		for {
			if err := x.ctx.Err(); err != nil {
				return err
			}
			x.in.mu.Lock()
			v, err := (&env{x: x}).eval(st.Cond)
			x.in.mu.Unlock()
			if err != nil {
				return err
			}
			if !truth(v) {
				return nil
			}
			switch err := x.run(st.Body); err {
			case nil, errContinue:
			case errBreak:
				return nil
			default:
				return err
			}
		}
	case *stIf:
		x.in.mu.Lock()
		v, err := (&env{x: x}).eval(st.Cond)
		x.in.mu.Unlock()
		if err != nil {
			return err
		}
		if !isBoolOrNil(v) {
			return sqlErr(msgNonBooleanWhere, "ELSE")
		}
		if truth(v) {
			return x.run(st.Then)
		}
		if st.Else != nil {
			return x.run(st.Else)
		}
		return nil
	}
	x.ops = x.ops[:0]
	if st, ok := s.(*stAlterDB); ok && (st.Option == "PARTNER" || st.Option == "WITNESS") {
		err := x.mirrorStmt(st)
		return errors.Join(x.flushOps(), err)
	}
	var input *restoreInput
	if st, ok := s.(*stRestore); ok && st.Disk != nil {
		var err error
		if input, err = x.readRestoreInput(st); err != nil {
			return err
		}
	}
	x.in.mu.Lock()
	var err error
	switch {
	case x.in.closed:
		err = ErrClosed
	case input != nil:
		err = x.restore(s.(*stRestore), input)
	default:
		err = x.exec(s)
	}
	targets := x.in.mirrorTargets()
	x.in.mu.Unlock()
	// Safety FULL: the answer waits until the mirror hardened the log.
	x.in.waitMirrors(x.ctx, targets)
	return errors.Join(x.flushOps(), err)
}

func (x *execCtx) flushOps() error {
	for _, op := range x.ops {
		if err := op(); err != nil {
			return err
		}
	}
	x.ops = x.ops[:0]
	return nil
}

func (x *execCtx) emit(op func() error) { x.ops = append(x.ops, op) }

// resultSet queues a result set and its DONE.
func (x *execCtx) resultSet(cols []resultCol, rows [][]any, cmd tds.CurCmd) {
	x.rowCount = int64(len(rows))
	if x.w == nil {
		if x.sink != nil {
			x.sink(cols, rows)
		}
		return
	}
	w := x.w
	nocount := x.opts.nocount
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
		status := tds.DoneCount
		if nocount {
			status = 0
		}
		return w.Done(status, cmd, uint64(len(rows)))
	})
}

// done queues the DONE of a statement without a result set.
func (x *execCtx) done(cmd tds.CurCmd, n int64, counted bool) {
	x.rowCount = n
	if x.w == nil {
		return
	}
	w := x.w
	status := tds.DoneStatus(0)
	if counted && !x.opts.nocount {
		status = tds.DoneCount
	}
	x.emit(func() error { return w.Done(status, cmd, uint64(max(n, 0))) })
}

func (x *execCtx) info(m *tds.Error) {
	if x.w == nil {
		return
	}
	w := x.w
	x.emit(func() error { return w.Info(m) })
}

// exec runs a statement; the engine lock is held.
func (x *execCtx) exec(s stmt) error {
	switch st := s.(type) {
	case *stSelect:
		return x.selectStmt(st)
	case *stInsert:
		return x.insertStmt(st)
	case *stUpdate:
		return x.updateStmt(st)
	case *stDelete:
		return x.deleteStmt(st)
	case *stCreateTable:
		return x.createTable(st)
	case *stDropTable:
		return x.dropTable(st)
	case *stCreateDB:
		return x.createDB(st)
	case *stDropDB:
		return x.dropDB(st)
	case *stAlterDB:
		return x.alterDB(st)
	case *stUse:
		return x.use(st)
	case *stExec:
		return x.execStmt(st)
	case *stKill:
		return x.kill(st)
	case *stBackup:
		return x.backup(st)
	case *stRestore:
		return x.restore(st, nil)
	case *stSet:
		if st.Option == "NOCOUNT" {
			x.opts.nocount = st.Value == "ON"
		}
		x.done(0, 0, false)
		return nil
	case *stRaise:
		return x.raise(st)
	case *stDeclare:
		return x.declare(st)
	case *stSetVar:
		val, err := (&env{x: x}).eval(st.E)
		if err != nil {
			return err
		}
		if err := x.assign(st.Name, val); err != nil {
			return err
		}
		x.done(0, 0, false)
		return nil
	case *stPrint:
		v, err := (&env{x: x}).eval(st.E)
		if err != nil {
			return err
		}
		s, err := coerce(v, typeNVarMax)
		if err != nil {
			return err
		}
		text, _ := s.(string)
		x.info(&tds.Error{Number: 0, State: 1, Class: 0, Message: text})
		x.done(0, 0, false)
		return nil
	}
	return fmt.Errorf("mssql: unsupported statement %T", s)
}

// source is a row source: a user table or a system view.
type source struct {
	sc    *scope
	rows  [][]any
	db    *database
	table *table
}

// resolve finds the object a FROM clause or DML statement names.
func (x *execCtx) resolve(o objName, alias string) (*source, error) {
	qual := o.Name
	if alias != "" {
		qual = alias
	}
	if strings.EqualFold(o.Schema, "sys") {
		if o.DB != "" && x.in.db(o.DB) == nil {
			return nil, sqlErr(msgInvalidObject, o.Raw)
		}
		dbName := o.DB
		if dbName == "" {
			dbName = x.db
		}
		if src, ok := x.systemView(strings.ToLower(o.Name), qual, dbName); ok {
			return src, nil
		}
		return nil, sqlErr(msgInvalidObject, o.Raw)
	}
	d, t, err := x.userTable(o)
	if err != nil {
		// Compatibility views: sysprocesses, sysdatabases (dbo or no schema).
		if n := strings.ToLower(o.Name); (n == "sysprocesses" || n == "sysdatabases") && (o.Schema == "" || strings.EqualFold(o.Schema, "dbo")) {
			if src, ok := x.systemView(n, qual, x.db); ok {
				return src, nil
			}
		}
		return nil, err
	}
	if err := d.readable(); err != nil {
		return nil, err
	}
	sc := &scope{}
	for _, c := range t.Cols {
		sc.add(qual, c.Name, c.Type)
	}
	rows := make([][]any, len(t.rows))
	for i, r := range t.rows {
		rows[i] = r.vals
	}
	return &source{sc: sc, rows: rows, db: d, table: t}, nil
}

// userTable finds a user table.
func (x *execCtx) userTable(o objName) (*database, *table, error) {
	dbName := o.DB
	if dbName == "" {
		dbName = x.db
	}
	d := x.in.db(dbName)
	if d == nil {
		return nil, nil, sqlErr(msgInvalidObject, o.Raw)
	}
	if err := d.readable(); err != nil {
		return nil, nil, err
	}
	schema := o.Schema
	if schema == "" {
		schema = "dbo"
	}
	t := d.tables[strings.ToLower(schema+"."+o.Name)]
	if t == nil {
		return nil, nil, sqlErr(msgInvalidObject, o.Raw)
	}
	return d, t, nil
}

// expandItems expands * in a select list.
func expandItems(items []selItem, sc *scope) ([]selItem, error) {
	var out []selItem
	for _, it := range items {
		if !it.Star {
			out = append(out, it)
			continue
		}
		n := 0
		for i, name := range sc.names {
			if it.StarQual != "" && !strings.EqualFold(sc.quals[i], it.StarQual) {
				continue
			}
			q := sc.quals[i]
			out = append(out, selItem{E: &exCol{Parts: []string{q, name}}, Alias: name})
			n++
		}
		if n == 0 {
			if it.StarQual != "" {
				return nil, sqlErr(4104, it.StarQual)
			}
			return nil, sqlErr(263)
		}
	}
	return out, nil
}

func itemName(it selItem) string {
	if it.Alias != "" {
		return it.Alias
	}
	if c, ok := it.E.(*exCol); ok {
		return c.Parts[len(c.Parts)-1]
	}
	return ""
}

// project evaluates a select list over rows and infers the column types.
func (x *execCtx) project(items []selItem, sc *scope, rows [][]any) ([]resultCol, [][]any, error) {
	out := make([][]any, 0, len(rows))
	for _, r := range rows {
		e := &env{x: x, sc: sc, row: r}
		vals := make([]any, len(items))
		for i, it := range items {
			v, err := e.eval(it.E)
			if err != nil {
				return nil, nil, err
			}
			vals[i] = v
		}
		out = append(out, vals)
	}
	return typeColumns(items, sc, out), out, nil
}

// typeColumns names and types the columns of a select list, converting the
// values in rows to the chosen types.
func typeColumns(items []selItem, sc *scope, rows [][]any) []resultCol {
	cols := make([]resultCol, len(items))
	for i, it := range items {
		cols[i].Name = itemName(it)
		if t, ok := staticType(it.E, sc); ok {
			cols[i].Type = t
		} else {
			cols[i].Type = inferType(rows, i)
		}
		for _, r := range rows {
			v, err := coerce(r[i], cols[i].Type)
			if err != nil {
				cols[i].Type = inferType(rows, i)
				break
			}
			r[i] = v
		}
	}
	return cols
}

// inferType picks a column type from the values of column i.
func inferType(rows [][]any, i int) colType {
	t := colType{}
	maxLen := 1
	for _, r := range rows {
		if r[i] == nil {
			continue
		}
		vt := typeOfValue(r[i])
		if s, ok := r[i].(string); ok {
			maxLen = max(maxLen, utf8.RuneCountInString(s))
		}
		if t.Name == "" || t.Name == "int" && vt.Name == "bigint" {
			t = vt
		}
	}
	switch t.Name {
	case "":
		return typeInt
	case "nvarchar":
		if maxLen <= 4000 {
			return nvarchar(4000)
		}
	}
	return t
}

func (x *execCtx) selectStmt(s *stSelect) error {
	assigns := 0
	for _, it := range s.Items {
		if it.Assign != "" {
			assigns++
		}
	}
	if assigns > 0 && assigns != len(s.Items) {
		return sqlErr(141)
	}
	cols, vals, err := x.query(s, nil)
	if err != nil {
		return err
	}
	if assigns > 0 {
		// SELECT @v = ...: the last row wins; no result set.
		for _, r := range vals {
			for i, it := range s.Items {
				if err := x.assign(it.Assign, r[i]); err != nil {
					return err
				}
			}
		}
		x.done(tds.CmdSelect, int64(len(vals)), true)
		return nil
	}
	x.resultSet(cols, vals, tds.CmdSelect)
	return nil
}

// query runs a SELECT and returns its columns and rows. outer is the
// enclosing query's environment for a subquery, nil otherwise.
func (x *execCtx) query(s *stSelect, outer *env) ([]resultCol, [][]any, error) {
	sc := &scope{}
	rows := [][]any{{}}
	if s.From != nil {
		src, err := x.resolve(*s.From, s.FromAlias)
		if err != nil {
			return nil, nil, err
		}
		sc, rows = src.sc, src.rows
		for _, j := range s.Joins {
			right, err := x.resolve(j.Table, j.Alias)
			if err != nil {
				return nil, nil, err
			}
			sc, rows, err = x.join(sc, rows, right, j, outer)
			if err != nil {
				return nil, nil, err
			}
		}
	}
	items, err := expandItems(s.Items, sc)
	if err != nil {
		return nil, nil, err
	}
	if s.Where != nil {
		var kept [][]any
		for _, r := range rows {
			v, err := (&env{x: x, outer: outer, sc: sc, row: r}).eval(s.Where)
			if err != nil {
				return nil, nil, err
			}
			if !isBoolOrNil(v) {
				return nil, nil, sqlErr(msgNonBooleanWhere, "WHERE")
			}
			if truth(v) {
				kept = append(kept, r)
			}
		}
		rows = kept
	}
	agg := s.Having != nil
	for _, it := range items {
		if hasAggregate(it.E) {
			agg = true
		}
	}
	// One environment per output row: a source row, or a group.
	var envs []*env
	switch {
	case len(s.GroupBy) > 0:
		for _, it := range items {
			if err := checkGrouped(it.E, s.GroupBy); err != nil {
				return nil, nil, err
			}
		}
		groups, err := x.group(sc, rows, s.GroupBy, outer)
		if err != nil {
			return nil, nil, err
		}
		for _, g := range groups {
			envs = append(envs, &env{x: x, outer: outer, sc: sc, row: g[0], group: g})
		}
	case agg:
		envs = []*env{{x: x, outer: outer, sc: sc, group: append([][]any{}, rows...)}}
	default:
		for _, r := range rows {
			envs = append(envs, &env{x: x, outer: outer, sc: sc, row: r})
		}
	}
	if s.Having != nil {
		var kept []*env
		for _, e := range envs {
			v, err := e.eval(s.Having)
			if err != nil {
				return nil, nil, err
			}
			if truth(v) {
				kept = append(kept, e)
			}
		}
		envs = kept
	}
	// ORDER BY items may name a select-list alias or position.
	orderExprs := make([]expr, len(s.Order))
	for k, o := range s.Order {
		e := o.E
		if lit, ok := e.(*exLit); ok {
			if n, ok := lit.V.(int64); ok {
				if n < 1 || int(n) > len(items) {
					return nil, nil, sqlErr(108, n)
				}
				e = items[n-1].E
			}
		}
		if c, ok := e.(*exCol); ok && len(c.Parts) == 1 {
			if _, err := sc.lookup(c.Parts); err != nil {
				for _, it := range items {
					if strings.EqualFold(it.Alias, c.Parts[0]) {
						e = it.E
					}
				}
			}
		}
		orderExprs[k] = e
	}
	type outRow struct {
		vals, keys []any
	}
	out := make([]outRow, len(envs))
	for i, e := range envs {
		out[i].vals = make([]any, len(items))
		for k, it := range items {
			v, err := e.eval(it.E)
			if err != nil {
				return nil, nil, err
			}
			out[i].vals[k] = v
		}
		for _, oe := range orderExprs {
			v, err := e.eval(oe)
			if err != nil {
				return nil, nil, err
			}
			out[i].keys = append(out[i].keys, v)
		}
	}
	if len(s.Order) > 0 {
		var cmpErr error
		sort.SliceStable(out, func(a, b int) bool {
			for j, o := range s.Order {
				c, err := compareNullsFirst(out[a].keys[j], out[b].keys[j])
				if err != nil && cmpErr == nil {
					cmpErr = err
				}
				if o.Desc {
					c = -c
				}
				if c != 0 {
					return c < 0
				}
			}
			return false
		})
		if cmpErr != nil {
			return nil, nil, cmpErr
		}
	}
	vals := make([][]any, len(out))
	for i := range out {
		vals[i] = out[i].vals
	}
	if s.Distinct {
		var uniq [][]any
		for _, r := range vals {
			dup := false
			for _, u := range uniq {
				if sameRow(r, u) {
					dup = true
					break
				}
			}
			if !dup {
				uniq = append(uniq, r)
			}
		}
		vals = uniq
	}
	if s.Offset != nil {
		if s.Top != nil {
			return nil, nil, sqlErr(10741)
		}
		n, err := x.rowLimit(s.Offset, "OFFSET", outer)
		if err != nil {
			return nil, nil, err
		}
		vals = vals[min(int(n), len(vals)):]
		if s.Fetch != nil {
			m, err := x.rowLimit(s.Fetch, "FETCH", outer)
			if err != nil {
				return nil, nil, err
			}
			if m == 0 {
				return nil, nil, sqlErr(10744)
			}
			vals = vals[:min(int(m), len(vals))]
		}
	}
	if s.Top != nil {
		v, err := (&env{x: x, outer: outer}).eval(s.Top)
		if err != nil {
			return nil, nil, err
		}
		n, err := coerce(v, typeBigInt)
		if err != nil || n == nil || n.(int64) < 0 {
			return nil, nil, sqlErr(msgTopNegative)
		}
		if int(n.(int64)) < len(vals) {
			vals = vals[:n.(int64)]
		}
	}
	return typeColumns(items, sc, vals), vals, nil
}

// rowLimit evaluates an OFFSET or FETCH count.
func (x *execCtx) rowLimit(e expr, clause string, outer *env) (int64, error) {
	v, err := (&env{x: x, outer: outer}).eval(e)
	if err != nil {
		return 0, err
	}
	n, err := coerce(v, typeBigInt)
	if err != nil || n == nil || n.(int64) < 0 {
		return 0, sqlErr(10742, clause)
	}
	return n.(int64), nil
}

// compareNullsFirst orders values with NULL first, as ORDER BY does.
func compareNullsFirst(a, b any) (int, error) {
	switch {
	case a == nil && b == nil:
		return 0, nil
	case a == nil:
		return -1, nil
	case b == nil:
		return 1, nil
	}
	return compare(a, b)
}

// group splits rows into groups of equal GROUP BY values, in order of first
// appearance.
func (x *execCtx) group(sc *scope, rows [][]any, by []expr, outer *env) ([][][]any, error) {
	var keys [][]any
	var groups [][][]any
	for _, r := range rows {
		e := &env{x: x, outer: outer, sc: sc, row: r}
		k := make([]any, len(by))
		for i, b := range by {
			v, err := e.eval(b)
			if err != nil {
				return nil, err
			}
			k[i] = v
		}
		found := -1
		for gi, gk := range keys {
			if sameRow(gk, k) {
				found = gi
				break
			}
		}
		if found < 0 {
			keys = append(keys, k)
			groups = append(groups, nil)
			found = len(groups) - 1
		}
		groups[found] = append(groups[found], r)
	}
	return groups, nil
}

// checkGrouped reports 8120 for a column used outside an aggregate that is
// not a GROUP BY expression.
func checkGrouped(e expr, by []expr) error {
	for _, b := range by {
		if sameExpr(e, b) {
			return nil
		}
	}
	switch x := e.(type) {
	case *exCol:
		return sqlErr(msgAggregateNeedGroup, strings.Join(x.Parts, "."))
	case *exFunc:
		if aggregates[x.Name] {
			return nil
		}
		for _, a := range x.Args {
			if err := checkGrouped(a, by); err != nil {
				return err
			}
		}
	case *exBin:
		if err := checkGrouped(x.L, by); err != nil {
			return err
		}
		return checkGrouped(x.R, by)
	case *exNot:
		return checkGrouped(x.E, by)
	case *exNeg:
		return checkGrouped(x.E, by)
	case *exCast:
		return checkGrouped(x.E, by)
	case *exIsNull:
		return checkGrouped(x.E, by)
	case *exCase:
		parts := []expr{x.Operand, x.Else}
		for _, w := range x.Whens {
			parts = append(parts, w.When, w.Then)
		}
		for _, p := range parts {
			if p == nil {
				continue
			}
			if err := checkGrouped(p, by); err != nil {
				return err
			}
		}
	}
	return nil
}

// sameExpr compares column references by name (case-insensitive, last part
// and qualifier when both have one).
func sameExpr(a, b expr) bool {
	ca, ok1 := a.(*exCol)
	cb, ok2 := b.(*exCol)
	if !ok1 || !ok2 {
		return false
	}
	if !strings.EqualFold(ca.Parts[len(ca.Parts)-1], cb.Parts[len(cb.Parts)-1]) {
		return false
	}
	if len(ca.Parts) > 1 && len(cb.Parts) > 1 {
		return strings.EqualFold(ca.Parts[len(ca.Parts)-2], cb.Parts[len(cb.Parts)-2])
	}
	return true
}

// join combines rows with a right-hand source (nested loops).
func (x *execCtx) join(sc *scope, rows [][]any, right *source, j joinClause, outer *env) (*scope, [][]any, error) {
	nsc := &scope{}
	nsc.names = append(append(nsc.names, sc.names...), right.sc.names...)
	nsc.quals = append(append(nsc.quals, sc.quals...), right.sc.quals...)
	nsc.types = append(append(nsc.types, sc.types...), right.sc.types...)
	var out [][]any
	for _, l := range rows {
		matched := false
		for _, r := range right.rows {
			combined := append(append(make([]any, 0, len(l)+len(r)), l...), r...)
			v, err := (&env{x: x, outer: outer, sc: nsc, row: combined}).eval(j.On)
			if err != nil {
				return nil, nil, err
			}
			if truth(v) {
				matched = true
				out = append(out, combined)
			}
		}
		if !matched && j.Left {
			out = append(out, append(append(make([]any, 0, len(l)+len(right.sc.names)), l...), make([]any, len(right.sc.names))...))
		}
	}
	return nsc, out, nil
}

func sameRow(a, b []any) bool {
	for i := range a {
		if a[i] == nil || b[i] == nil {
			if a[i] != nil || b[i] != nil {
				return false
			}
			continue
		}
		c, err := compare(a[i], b[i])
		if err != nil || c != 0 {
			return false
		}
	}
	return true
}

// writableTable resolves a table for DML.
func (x *execCtx) writableTable(o objName) (*database, *table, error) {
	d, t, err := x.userTable(o)
	if err != nil {
		return nil, nil, err
	}
	if err := d.writable(); err != nil {
		return nil, nil, err
	}
	return d, t, nil
}

func (x *execCtx) insertStmt(s *stInsert) error {
	d, t, err := x.writableTable(s.Table)
	if err != nil {
		return err
	}
	var targets []int
	if len(s.Cols) == 0 {
		for i, c := range t.Cols {
			if !c.Identity {
				targets = append(targets, i)
			}
		}
	} else {
		for _, name := range s.Cols {
			i := t.colIndex(name)
			if i < 0 {
				return sqlErr(msgInvalidColumn, name)
			}
			if t.Cols[i].Identity {
				return sqlErr(msgIdentityInsert, t.Name)
			}
			targets = append(targets, i)
		}
	}
	valueRows := s.Rows
	if s.DefValues {
		valueRows = [][]expr{nil}
		targets = nil
	}
	identLast, identUsed := t.IdentLast, t.IdentUsed
	nextID := t.NextRowID
	var newRows []*row
	e := &env{x: x}
	for _, vr := range valueRows {
		if len(vr) > len(targets) {
			return sqlErr(msgInsertTooManyValues)
		}
		if len(vr) < len(targets) {
			return sqlErr(msgInsertTooFewValues)
		}
		vals := make([]any, len(t.Cols))
		set := make([]bool, len(t.Cols))
		for j, ex := range vr {
			ci := targets[j]
			c := t.Cols[ci]
			set[ci] = true
			if _, isDef := ex.(exDefault); isDef {
				set[ci] = false
				continue
			}
			v, err := e.eval(ex)
			if err != nil {
				return err
			}
			cv, err := coerce(v, c.Type)
			if err != nil {
				return terminated(err)
			}
			vals[ci] = cv
		}
		for ci, c := range t.Cols {
			if set[ci] {
				continue
			}
			switch {
			case c.Identity:
				if identUsed {
					identLast += c.Incr
				} else {
					identLast, identUsed = c.Seed, true
				}
				vals[ci] = identLast
			case c.def != nil:
				v, err := e.eval(c.def)
				if err != nil {
					return err
				}
				cv, err := coerce(v, c.Type)
				if err != nil {
					return terminated(err)
				}
				vals[ci] = cv
			}
		}
		for ci, c := range t.Cols {
			if vals[ci] == nil && !c.Nullable {
				return terminated(sqlErr(msgNullNotAllowed, c.Name, d.Name+"."+t.Schema+"."+t.Name))
			}
		}
		if len(t.pkColumns()) > 0 {
			if err := t.checkUnique(vals, append(append([]*row(nil), t.rows...), newRows...), -1); err != nil {
				return terminated(err)
			}
		}
		newRows = append(newRows, &row{id: nextID, vals: vals})
		nextID++
	}
	// OUTPUT is evaluated before committing so that an error leaves no row.
	var outCols []resultCol
	var outRows [][]any
	if len(s.Output) > 0 {
		sc := &scope{}
		for _, c := range t.Cols {
			sc.add("inserted", c.Name, c.Type)
		}
		items, err := expandItems(s.Output, sc)
		if err != nil {
			return err
		}
		vals := make([][]any, len(newRows))
		for i, r := range newRows {
			vals[i] = r.vals
		}
		outCols, outRows, err = x.project(items, sc, vals)
		if err != nil {
			return err
		}
	}
	nt := *t
	nt.IdentLast, nt.IdentUsed, nt.NextRowID = identLast, identUsed, nextID
	nd := *d
	nd.advance(len(newRows))
	if err := x.in.commit(func(tx *bolt.Tx) error {
		for _, r := range newRows {
			if err := putRow(tx, d, t, r); err != nil {
				return err
			}
		}
		if err := putTable(tx, d, &nt); err != nil {
			return err
		}
		if nd.keepsLog() {
			ops := make([]logOp, 0, len(newRows)+1)
			for _, r := range newRows {
				ops = append(ops, rowOp(t, r))
			}
			if err := appendLog(tx, &nd, append(ops, tableOp(nt.tableMeta))); err != nil {
				return err
			}
		}
		return putDB(tx, &nd)
	}); err != nil {
		return err
	}
	t.IdentLast, t.IdentUsed, t.NextRowID = identLast, identUsed, nextID
	t.rows = append(t.rows, newRows...)
	d.LSN = nd.LSN
	if len(s.Output) > 0 {
		x.resultSet(outCols, outRows, tds.CmdInsert)
	} else {
		x.done(tds.CmdInsert, int64(len(newRows)), true)
	}
	return nil
}

// matching returns the rows of t that satisfy where.
func (x *execCtx) matching(t *table, where expr) ([]int, *scope, error) {
	sc := &scope{}
	for _, c := range t.Cols {
		sc.add(t.Name, c.Name, c.Type)
	}
	var idx []int
	for i, r := range t.rows {
		if where != nil {
			v, err := (&env{x: x, sc: sc, row: r.vals}).eval(where)
			if err != nil {
				return nil, nil, err
			}
			if !truth(v) {
				continue
			}
		}
		idx = append(idx, i)
	}
	return idx, sc, nil
}

func (x *execCtx) updateStmt(s *stUpdate) error {
	d, t, err := x.writableTable(s.Table)
	if err != nil {
		return err
	}
	idx, sc, err := x.matching(t, s.Where)
	if err != nil {
		return err
	}
	for _, si := range s.Sets {
		ci := t.colIndex(si.Col)
		if ci < 0 {
			return sqlErr(msgInvalidColumn, si.Col)
		}
		if t.Cols[ci].Identity {
			return sqlErr(8102, t.Cols[ci].Name)
		}
	}
	updated := make([]*row, len(idx))
	for k, i := range idx {
		r := t.rows[i]
		vals := append([]any(nil), r.vals...)
		e := &env{x: x, sc: sc, row: r.vals}
		for _, si := range s.Sets {
			ci := t.colIndex(si.Col)
			v, err := e.eval(si.E)
			if err != nil {
				return err
			}
			cv, err := coerce(v, t.Cols[ci].Type)
			if err != nil {
				return terminated(err)
			}
			if cv == nil && !t.Cols[ci].Nullable {
				return terminated(sqlErr(msgNullNotAllowedUpdate, t.Cols[ci].Name, d.Name+"."+t.Schema+"."+t.Name))
			}
			vals[ci] = cv
		}
		updated[k] = &row{id: r.id, vals: vals}
	}
	if len(t.pkColumns()) > 0 {
		after := append([]*row(nil), t.rows...)
		for k, i := range idx {
			after[i] = updated[k]
		}
		for _, i := range idx {
			if err := t.checkUnique(after[i].vals, after, i); err != nil {
				return terminated(err)
			}
		}
	}
	nd := *d
	nd.advance(len(updated))
	if err := x.in.commit(func(tx *bolt.Tx) error {
		ops := make([]logOp, 0, len(updated))
		for _, r := range updated {
			if err := putRow(tx, d, t, r); err != nil {
				return err
			}
			ops = append(ops, rowOp(t, r))
		}
		if err := appendLog(tx, &nd, ops); err != nil {
			return err
		}
		return putDB(tx, &nd)
	}); err != nil {
		return err
	}
	for k, i := range idx {
		t.rows[i] = updated[k]
	}
	d.LSN = nd.LSN
	x.done(tds.CmdUpdate, int64(len(idx)), true)
	return nil
}

func (x *execCtx) deleteStmt(s *stDelete) error {
	d, t, err := x.writableTable(s.Table)
	if err != nil {
		return err
	}
	idx, _, err := x.matching(t, s.Where)
	if err != nil {
		return err
	}
	nd := *d
	nd.advance(len(idx))
	if err := x.in.commit(func(tx *bolt.Tx) error {
		ops := make([]logOp, 0, len(idx))
		for _, i := range idx {
			if err := deleteRow(tx, d, t, t.rows[i].id); err != nil {
				return err
			}
			ops = append(ops, delOp(t, t.rows[i].id))
		}
		if err := appendLog(tx, &nd, ops); err != nil {
			return err
		}
		return putDB(tx, &nd)
	}); err != nil {
		return err
	}
	del := map[int]bool{}
	for _, i := range idx {
		del[i] = true
	}
	kept := t.rows[:0]
	for i, r := range t.rows {
		if !del[i] {
			kept = append(kept, r)
		}
	}
	t.rows = kept
	d.LSN = nd.LSN
	x.done(tds.CmdDelete, int64(len(idx)), true)
	return nil
}

func (x *execCtx) createTable(s *stCreateTable) error {
	dbName := s.Table.DB
	if dbName == "" {
		dbName = x.db
	}
	d := x.in.db(dbName)
	if d == nil {
		return sqlErr(msgDBNotExists, dbName)
	}
	if err := d.writable(); err != nil {
		return err
	}
	schema := s.Table.Schema
	if schema == "" {
		schema = "dbo"
	}
	if !strings.EqualFold(schema, "dbo") {
		return sqlErr(2760, schema)
	}
	t := &table{}
	t.Schema, t.Name, t.NextRowID, t.Created = "dbo", s.Table.Name, 1, x.in.cfg.Now().UTC()
	if d.tables[t.key()] != nil {
		return sqlErr(msgObjectExists, s.Table.Name)
	}
	idents := 0
	for _, c := range s.Cols {
		if t.colIndex(c.Name) >= 0 {
			return sqlErr(2705, c.Name, s.Table.Name)
		}
		if c.Identity {
			idents++
			switch c.Type.Name {
			case "bigint", "int", "smallint", "tinyint", "decimal", "numeric":
			default:
				return sqlErr(2749, c.Name)
			}
		}
		t.Cols = append(t.Cols, colMeta{Name: c.Name, Type: c.Type, Nullable: c.Nullable, Identity: c.Identity,
			Seed: c.IdentSeed, Incr: c.IdentIncr, DefaultSQL: c.DefaultSQL, PrimaryKey: c.PrimaryKey, def: c.Default})
	}
	if idents > 1 {
		return sqlErr(2744, s.Table.Name)
	}
	nd := *d
	nd.advance(1)
	if err := x.in.commit(func(tx *bolt.Tx) error {
		if err := putTable(tx, d, t); err != nil {
			return err
		}
		if err := appendLog(tx, &nd, []logOp{tableOp(t.tableMeta)}); err != nil {
			return err
		}
		return putDB(tx, &nd)
	}); err != nil {
		return err
	}
	d.tables[t.key()] = t
	d.LSN = nd.LSN
	x.done(0, 0, false)
	return nil
}

func (x *execCtx) dropTable(s *stDropTable) error {
	for _, o := range s.Tables {
		d, t, err := x.userTable(o)
		if err != nil {
			var te *tds.Error
			if errors.As(err, &te) && te.Number == msgInvalidObject {
				if s.IfExists {
					continue
				}
				return sqlErr(msgDropTableNotExists, o.Raw)
			}
			return err
		}
		if err := d.writable(); err != nil {
			return err
		}
		nd := *d
		nd.advance(1)
		if err := x.in.commit(func(tx *bolt.Tx) error {
			if err := dropTableTx(tx, d, t); err != nil {
				return err
			}
			if err := appendLog(tx, &nd, []logOp{dropOp(t)}); err != nil {
				return err
			}
			return putDB(tx, &nd)
		}); err != nil {
			return err
		}
		delete(d.tables, t.key())
		d.LSN = nd.LSN
	}
	x.done(0, 0, false)
	return nil
}

func (x *execCtx) createDB(s *stCreateDB) error {
	if x.in.db(s.Name) != nil {
		return sqlErr(msgDBExists, s.Name)
	}
	d := x.in.newDatabase(s.Name, x.in.freeID())
	if err := x.in.commit(func(tx *bolt.Tx) error { return putDB(tx, d) }); err != nil {
		return err
	}
	x.in.dbs[strings.ToLower(s.Name)] = d
	x.done(0, 0, false)
	return nil
}

// server returns the TDS server whose sessions the engine sees.
func (x *execCtx) server() *tds.Server {
	if x.sess != nil {
		return x.sess.Server()
	}
	return x.in.srv
}

// sessionsIn counts the sessions other than self whose database is name.
func (in *Instance) sessionsIn(self *tds.Session, name string) int {
	return len(in.otherSessions(self, name))
}

func (in *Instance) otherSessions(self *tds.Session, name string) []*tds.Session {
	srv := in.srv
	if self != nil {
		srv = self.Server()
	}
	if srv == nil {
		return nil
	}
	var out []*tds.Session
	for _, s := range srv.Sessions() {
		if self != nil && s.ID() == self.ID() {
			continue
		}
		if strings.EqualFold(s.Database(), name) {
			out = append(out, s)
		}
	}
	return out
}

func (x *execCtx) dropDB(s *stDropDB) error {
	for _, name := range s.Names {
		d := x.in.db(name)
		if d == nil {
			if s.IfExists {
				continue
			}
			return sqlErr(msgDropNotExists, name)
		}
		if d.system() {
			return sqlErr(3708, d.Name)
		}
		if d.Mirror != nil {
			return sqlErr(3743, d.Name)
		}
		if strings.EqualFold(x.db, d.Name) || x.in.sessionsIn(x.sess, d.Name) > 0 {
			return sqlErr(msgDropInUse, d.Name)
		}
		if err := x.in.commit(func(tx *bolt.Tx) error { return dropDBTx(tx, d.Name) }); err != nil {
			return err
		}
		delete(x.in.dbs, strings.ToLower(d.Name))
	}
	x.done(0, 0, false)
	return nil
}

func (x *execCtx) alterDB(s *stAlterDB) error {
	name := s.Name
	if name == "" {
		name = x.db
	}
	d := x.in.db(name)
	if d == nil {
		return errors.Join(sqlErr(5011, name), sqlErr(msgAlterDBFailed))
	}
	if d.State == stateRestoring {
		return errors.Join(sqlErr(5052), sqlErr(msgAlterDBFailed))
	}
	nd := *d
	needExclusive := false
	switch s.Option {
	case "RECOVERY":
		if d.Mirror != nil && s.Value != "FULL" {
			return errors.Join(sqlErr(1468, d.Name), sqlErr(msgAlterDBFailed))
		}
		nd.Recovery = s.Value
		if s.Value == "SIMPLE" {
			nd.LogBackupLSN = 0
		}
	case "SINGLE_USER":
		nd.UserAccess = s.Option
		needExclusive = true
	case "RESTRICTED_USER", "MULTI_USER":
		if d.UserAccess == "SINGLE_USER" && x.in.sessionsIn(x.sess, d.Name) > 0 {
			return errors.Join(sqlErr(5064, d.Name), sqlErr(msgAlterDBFailed))
		}
		nd.UserAccess = s.Option
	case "OFFLINE":
		nd.State = stateOffline
		needExclusive = true
	case "ONLINE":
		nd.State = stateOnline
	case "READ_ONLY", "READ_WRITE":
		if d.Standby {
			return errors.Join(sqlErr(5063, d.Name), sqlErr(msgAlterDBFailed))
		}
		nd.ReadOnly = s.Option == "READ_ONLY"
		needExclusive = true
	}
	if needExclusive {
		others := x.in.otherSessions(x.sess, d.Name)
		if len(others) > 0 {
			if !s.Rollback {
				return errors.Join(sqlErr(5061, d.Name), sqlErr(msgAlterDBFailed))
			}
			for _, o := range others {
				_ = o.Kill()
			}
			x.info(sqlErr(5060))
		}
	}
	nd.advance(1)
	if err := x.in.commit(func(tx *bolt.Tx) error {
		if !nd.keepsLog() {
			if err := truncateLog(tx, d); err != nil {
				return err
			}
		}
		return putDB(tx, &nd)
	}); err != nil {
		return err
	}
	d.dbMeta = nd.dbMeta
	x.done(0, 0, false)
	return nil
}

func (x *execCtx) use(s *stUse) error {
	d := x.in.db(s.DB)
	if d == nil {
		return sqlErr(msgDBNotExists, s.DB)
	}
	if err := d.readable(); err != nil {
		return err
	}
	if d.UserAccess == "SINGLE_USER" && x.in.sessionsIn(x.sess, d.Name) > 0 {
		return sqlErr(msgSingleUser, d.Name)
	}
	x.db = d.Name
	if x.sess != nil {
		x.sess.SetDatabase(d.Name)
	}
	if x.w != nil {
		w, name := x.w, d.Name
		x.emit(func() error { return w.ChangeDatabase(name) })
		x.info(sqlErr(msgChangedDB, name))
	}
	x.done(0, 0, false)
	return nil
}

func (x *execCtx) kill(s *stKill) error {
	v, err := (&env{x: x}).eval(s.ID)
	if err != nil {
		return err
	}
	idv, err := coerce(v, typeBigInt)
	if err != nil || idv == nil {
		return sqlErr(6112)
	}
	id := idv.(int64)
	if x.sess != nil && id == int64(x.sess.ID()) {
		return sqlErr(msgKillSelf)
	}
	if id >= 1 && id < 51 {
		return sqlErr(msgKillSystem)
	}
	srv := x.server()
	if srv == nil || id > 65535 || id < 1 {
		return sqlErr(msgKillNotActive, id)
	}
	sess, ok := srv.Session(uint16(id))
	if !ok {
		return sqlErr(msgKillNotActive, id)
	}
	if err := sess.Kill(); err != nil {
		return sqlErr(msgKillNotActive, id)
	}
	x.done(0, 0, false)
	return nil
}
