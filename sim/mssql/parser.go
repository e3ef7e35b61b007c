package mssql

import (
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/chatdr/chatdr/sim/mssql/tds"
)

// parser is a recursive-descent parser for the supported T-SQL subset. Any
// construct outside it is a syntax error (102 or 156), never ignored.
type parser struct {
	src   string
	toks  []token
	i     int
	depth int // nesting of expressions and blocks
	loops int // enclosing WHILE loops, for BREAK and CONTINUE
}

// maxDepth bounds nesting so that a hostile batch cannot exhaust the stack.
const maxDepth = 256

// enter counts one nesting level; the caller defers p.leave().
func (p *parser) enter() {
	p.depth++
	if p.depth > maxDepth {
		panic(syntaxError{sqlErr(191)})
	}
}

func (p *parser) leave() { p.depth-- }

// parseBatch parses a SQL batch into statements. The error is a *tds.Error.
func parseBatch(sql string) ([]stmt, error) {
	toks, lerr := lex(sql)
	if lerr != nil {
		e := sqlErr(msgSyntax, lerr.near)
		if strings.HasPrefix(lerr.near, "'") || strings.HasPrefix(lerr.near, "N'") {
			e = sqlErr(105, strings.TrimPrefix(strings.TrimPrefix(lerr.near, "N"), "'"))
		}
		e.Line = int32(lerr.line)
		return nil, e
	}
	p := &parser{src: sql, toks: toks}
	var out []stmt
	for {
		for p.isOp(";") {
			p.i++
		}
		if p.peek().Kind == tEOF {
			return out, nil
		}
		s, err := p.statement(len(out) == 0)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
}

// syntaxError is the panic value used to unwind the parser.
type syntaxError struct{ err *tds.Error }

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) peekN(n int) token {
	if p.i+n < len(p.toks) {
		return p.toks[p.i+n]
	}
	return p.toks[len(p.toks)-1]
}
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.Kind != tEOF {
		p.i++
	}
	return t
}

// fail reports a syntax error near token t, as SQL Server does: 156 for a
// reserved keyword, 102 otherwise, and near the last token at the end.
func (p *parser) fail(t token) {
	if t.Kind == tEOF {
		near := ""
		if p.i > 0 {
			near = p.toks[len(p.toks)-2].Raw
		}
		e := sqlErr(msgSyntax, near)
		e.Line = int32(t.Line)
		panic(syntaxError{e})
	}
	if t.Kind == tIdent && !t.Quoted && reserved[strings.ToUpper(t.Text)] {
		e := sqlErr(msgSyntaxKeyword, t.Raw)
		e.Line = int32(t.Line)
		panic(syntaxError{e})
	}
	e := sqlErr(msgSyntax, t.Raw)
	e.Line = int32(t.Line)
	panic(syntaxError{e})
}

func (p *parser) isKw(kw string) bool {
	t := p.peek()
	return t.Kind == tIdent && !t.Quoted && strings.EqualFold(t.Text, kw)
}

func (p *parser) acceptKw(kw string) bool {
	if p.isKw(kw) {
		p.i++
		return true
	}
	return false
}

func (p *parser) expectKw(kw string) {
	if !p.acceptKw(kw) {
		p.fail(p.peek())
	}
}

func (p *parser) isOp(op string) bool {
	t := p.peek()
	return t.Kind == tOp && t.Text == op
}

func (p *parser) acceptOp(op string) bool {
	if p.isOp(op) {
		p.i++
		return true
	}
	return false
}

func (p *parser) expectOp(op string) {
	if !p.acceptOp(op) {
		p.fail(p.peek())
	}
}

// ident reads an identifier; unquoted reserved keywords are refused.
func (p *parser) ident() string {
	t := p.peek()
	if t.Kind != tIdent || (!t.Quoted && reserved[strings.ToUpper(t.Text)]) {
		p.fail(t)
	}
	p.i++
	return t.Text
}

// word reads an unquoted word (keyword or identifier) in upper case.
func (p *parser) word() string {
	t := p.peek()
	if t.Kind != tIdent {
		p.fail(t)
	}
	p.i++
	return strings.ToUpper(t.Text)
}

// objName reads a name of up to three parts (db.schema.name, db..name).
func (p *parser) objName() objName {
	parts := []string{p.ident()}
	for p.isOp(".") {
		p.i++
		if p.isOp(".") && len(parts) == 1 {
			parts = append(parts, "")
			continue
		}
		parts = append(parts, p.ident())
		if len(parts) > 3 {
			p.fail(p.toks[p.i-1])
		}
	}
	var o objName
	switch len(parts) {
	case 1:
		o.Name = parts[0]
	case 2:
		o.Schema, o.Name = parts[0], parts[1]
	case 3:
		o.DB, o.Schema, o.Name = parts[0], parts[1], parts[2]
	}
	o.Raw = strings.Join(parts, ".")
	return o
}

// statement parses one statement. first is set for the first statement of
// the batch, where a bare procedure name means EXEC.
func (p *parser) statement(first bool) (s stmt, err error) {
	defer func() {
		if r := recover(); r != nil {
			se, ok := r.(syntaxError)
			if !ok {
				panic(r)
			}
			s, err = nil, se.err
		}
	}()
	return p.statementBody(first), nil
}

// statementBody parses one statement, panicking with a syntaxError.
func (p *parser) statementBody(first bool) stmt {
	p.enter()
	defer p.leave()
	t := p.peek()
	if t.Kind != tIdent || t.Quoted {
		if first && t.Kind == tIdent {
			return p.execBody()
		}
		p.fail(t)
	}
	switch strings.ToUpper(t.Text) {
	case "SELECT":
		return p.selectStmt()
	case "INSERT":
		return p.insertStmt()
	case "UPDATE":
		return p.updateStmt()
	case "DELETE":
		return p.deleteStmt()
	case "CREATE":
		return p.createStmt()
	case "DROP":
		return p.dropStmt()
	case "ALTER":
		return p.alterStmt()
	case "USE":
		p.i++
		return &stUse{DB: p.ident()}
	case "EXEC", "EXECUTE":
		p.i++
		return p.execBody()
	case "KILL":
		p.i++
		k := &stKill{ID: p.expr()}
		if p.acceptKw("WITH") {
			p.expectKw("STATUSONLY")
		}
		return k
	case "SET":
		return p.setStmt()
	case "PRINT":
		p.i++
		return &stPrint{E: p.expr()}
	case "IF":
		p.i++
		st := &stIf{Cond: p.expr()}
		st.Then = p.statementBody(false)
		for p.isOp(";") {
			p.i++
		}
		if p.acceptKw("ELSE") {
			st.Else = p.statementBody(false)
		}
		return st
	case "BEGIN":
		if p.peekN(1).Kind == tIdent && (strings.EqualFold(p.peekN(1).Text, "TRAN") || strings.EqualFold(p.peekN(1).Text, "TRANSACTION")) {
			p.fail(t) // transactions are not supported
		}
		p.i++
		var block stBlock
		for {
			for p.isOp(";") {
				p.i++
			}
			if p.acceptKw("END") {
				return block
			}
			if p.peek().Kind == tEOF {
				p.fail(p.peek())
			}
			block = append(block, p.statementBody(false))
		}
	case "WHILE":
		p.i++
		p.loops++
		defer func() { p.loops-- }()
		return &stWhile{Cond: p.expr(), Body: p.statementBody(false)}
	case "BREAK", "CONTINUE":
		if p.loops == 0 {
			p.fail(t)
		}
		p.i++
		if strings.EqualFold(t.Text, "BREAK") {
			return stBreak{}
		}
		return stContinue{}
	case "DECLARE":
		p.i++
		d := &stDeclare{}
		for {
			v := p.next()
			if v.Kind != tVar || strings.HasPrefix(v.Text, "@@") {
				p.fail(v)
			}
			p.acceptKw("AS")
			dv := declVar{Name: v.Text, Type: p.dataType()}
			if p.acceptOp("=") {
				dv.Init = p.expr()
			}
			d.Vars = append(d.Vars, dv)
			if !p.acceptOp(",") {
				return d
			}
		}
	case "WAITFOR":
		p.i++
		p.expectKw("DELAY")
		return &stWaitFor{Delay: p.primary()}
	case "RAISERROR":
		p.i++
		p.expectOp("(")
		r := &stRaise{Msg: p.expr()}
		p.expectOp(",")
		r.Severity = p.expr()
		p.expectOp(",")
		r.State = p.expr()
		for p.acceptOp(",") {
			r.Args = append(r.Args, p.expr())
		}
		p.expectOp(")")
		if p.acceptKw("WITH") {
			for {
				switch p.word() {
				case "NOWAIT":
					r.NoWait = true
				case "LOG", "SETERROR":
				default:
					p.fail(p.toks[p.i-1])
				}
				if !p.acceptOp(",") {
					break
				}
			}
		}
		return r
	case "THROW":
		p.i++
		r := &stRaise{Number: p.expr()}
		p.expectOp(",")
		r.Msg = p.expr()
		p.expectOp(",")
		r.State = p.expr()
		r.Severity = &exLit{V: int64(16)}
		return r
	case "BACKUP":
		return p.backupStmt()
	case "RESTORE":
		return p.restoreStmt()
	}
	if first && !reserved[strings.ToUpper(t.Text)] {
		return p.execBody()
	}
	p.fail(t)
	return nil
}

func (p *parser) execBody() stmt {
	var rc string
	if p.peek().Kind == tVar && p.peekN(1).Kind == tOp && p.peekN(1).Text == "=" {
		rc = p.next().Text // EXEC @rc = proc
		p.i++
	}
	e := &stExec{Proc: p.objName(), RC: rc}
	if p.atStatementEnd() {
		return e
	}
	for {
		var a execArg
		if p.peek().Kind == tVar && p.peekN(1).Kind == tOp && p.peekN(1).Text == "=" {
			a.Name = p.next().Text
			p.i++
		}
		a.E = p.expr()
		if p.acceptKw("OUTPUT") || p.acceptKw("OUT") {
			a.Output = true
		}
		e.Args = append(e.Args, a)
		if !p.acceptOp(",") {
			break
		}
	}
	return e
}

// atStatementEnd reports whether the next token ends a statement.
func (p *parser) atStatementEnd() bool {
	t := p.peek()
	if t.Kind == tEOF || t.Kind == tOp && t.Text == ";" {
		return true
	}
	if t.Kind == tIdent && !t.Quoted {
		switch strings.ToUpper(t.Text) {
		case "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "USE", "EXEC",
			"EXECUTE", "KILL", "SET", "PRINT", "BACKUP", "RESTORE", "IF", "ELSE", "BEGIN", "END",
			"WAITFOR", "RAISERROR", "THROW", "DECLARE", "WHILE", "BREAK", "CONTINUE":
			return true
		}
	}
	return false
}

func (p *parser) selectStmt() *stSelect {
	p.expectKw("SELECT")
	s := &stSelect{}
	if p.acceptKw("DISTINCT") {
		s.Distinct = true
	} else {
		p.acceptKw("ALL")
	}
	if p.acceptKw("TOP") {
		if p.acceptOp("(") {
			s.Top = p.expr()
			p.expectOp(")")
		} else {
			t := p.next()
			if t.Kind != tNumber && t.Kind != tVar {
				p.fail(t)
			}
			s.Top = p.primaryFrom(t)
		}
	}
	s.Items = p.selectList()
	if p.acceptKw("FROM") {
		o, alias := p.tableSource()
		s.From, s.FromAlias = &o, alias
	joins:
		for {
			var j joinClause
			switch {
			case p.acceptKw("JOIN"):
			case p.isKw("INNER"):
				p.i++
				p.expectKw("JOIN")
			case p.isKw("LEFT"):
				p.i++
				p.acceptKw("OUTER")
				p.expectKw("JOIN")
				j.Left = true
			default:
				break joins
			}
			j.Table, j.Alias = p.tableSource()
			p.expectKw("ON")
			j.On = p.expr()
			s.Joins = append(s.Joins, j)
		}
	}
	if p.acceptKw("WHERE") {
		s.Where = p.expr()
	}
	if p.acceptKw("GROUP") {
		p.expectKw("BY")
		for {
			s.GroupBy = append(s.GroupBy, p.expr())
			if !p.acceptOp(",") {
				break
			}
		}
	}
	if p.acceptKw("HAVING") {
		s.Having = p.expr()
	}
	if p.acceptKw("ORDER") {
		p.expectKw("BY")
		for {
			o := orderItem{E: p.expr()}
			if p.acceptKw("DESC") {
				o.Desc = true
			} else {
				p.acceptKw("ASC")
			}
			s.Order = append(s.Order, o)
			if !p.acceptOp(",") {
				break
			}
		}
		if p.acceptKw("OFFSET") {
			s.Offset = p.expr()
			if !p.acceptKw("ROWS") {
				p.expectKw("ROW")
			}
			if p.acceptKw("FETCH") {
				if !p.acceptKw("NEXT") {
					p.expectKw("FIRST")
				}
				s.Fetch = p.expr()
				if !p.acceptKw("ROWS") {
					p.expectKw("ROW")
				}
				p.expectKw("ONLY")
			}
		}
	}
	return s
}

// tableSource reads a table name with its optional alias and table hints.
func (p *parser) tableSource() (objName, string) {
	o := p.objName()
	alias := ""
	if p.acceptKw("AS") {
		alias = p.ident()
	} else if t := p.peek(); t.Kind == tIdent && (t.Quoted || !reserved[strings.ToUpper(t.Text)]) && !p.atStatementEnd() {
		alias = p.ident()
	}
	if p.isKw("WITH") && p.peekN(1).Kind == tOp && p.peekN(1).Text == "(" {
		p.i += 2
		for {
			h := p.word()
			if h != "NOLOCK" && h != "READUNCOMMITTED" && h != "READCOMMITTED" && h != "HOLDLOCK" && h != "ROWLOCK" {
				p.fail(p.toks[p.i-1])
			}
			if !p.acceptOp(",") {
				break
			}
		}
		p.expectOp(")")
	}
	return o, alias
}

func (p *parser) selectList() []selItem {
	var items []selItem
	for {
		items = append(items, p.selectItem())
		if !p.acceptOp(",") {
			return items
		}
	}
}

func (p *parser) selectItem() selItem {
	if p.acceptOp("*") {
		return selItem{Star: true}
	}
	t := p.peek()
	if t.Kind == tIdent && p.peekN(1).Kind == tOp && p.peekN(1).Text == "." && p.peekN(2).Kind == tOp && p.peekN(2).Text == "*" {
		p.i += 3
		return selItem{Star: true, StarQual: t.Text}
	}
	if t.Kind == tVar && !strings.HasPrefix(t.Text, "@@") && p.peekN(1).Kind == tOp && p.peekN(1).Text == "=" {
		p.i += 2
		return selItem{Assign: t.Text, E: p.expr()}
	}
	// alias = expr
	if t.Kind == tIdent && (t.Quoted || !reserved[strings.ToUpper(t.Text)]) && p.peekN(1).Kind == tOp && p.peekN(1).Text == "=" {
		p.i += 2
		return selItem{Alias: t.Text, E: p.expr()}
	}
	it := selItem{E: p.expr()}
	if p.acceptKw("AS") {
		t := p.next()
		if t.Kind != tIdent && t.Kind != tString {
			p.fail(t)
		}
		it.Alias = t.Text
	} else if t := p.peek(); t.Kind == tString || t.Kind == tIdent && (t.Quoted || !reserved[strings.ToUpper(t.Text)]) && !p.atStatementEnd() {
		p.i++
		it.Alias = t.Text
	}
	return it
}

func (p *parser) insertStmt() *stInsert {
	p.expectKw("INSERT")
	p.acceptKw("INTO")
	s := &stInsert{Table: p.objName()}
	if p.acceptOp("(") {
		for {
			s.Cols = append(s.Cols, p.ident())
			if !p.acceptOp(",") {
				break
			}
		}
		p.expectOp(")")
	}
	if p.acceptKw("OUTPUT") {
		s.Output = p.selectList()
	}
	if p.acceptKw("DEFAULT") {
		p.expectKw("VALUES")
		s.DefValues = true
		return s
	}
	p.expectKw("VALUES")
	for {
		p.expectOp("(")
		var row []expr
		for {
			if p.isKw("DEFAULT") {
				p.i++
				row = append(row, exDefault{})
			} else {
				row = append(row, p.expr())
			}
			if !p.acceptOp(",") {
				break
			}
		}
		p.expectOp(")")
		s.Rows = append(s.Rows, row)
		if !p.acceptOp(",") {
			break
		}
	}
	return s
}

// exDefault is DEFAULT in a VALUES list.
type exDefault struct{}

func (p *parser) updateStmt() *stUpdate {
	p.expectKw("UPDATE")
	s := &stUpdate{Table: p.objName()}
	p.expectKw("SET")
	for {
		col := p.ident()
		p.expectOp("=")
		s.Sets = append(s.Sets, setItem{Col: col, E: p.expr()})
		if !p.acceptOp(",") {
			break
		}
	}
	if p.acceptKw("WHERE") {
		s.Where = p.expr()
	}
	return s
}

func (p *parser) deleteStmt() *stDelete {
	p.expectKw("DELETE")
	p.acceptKw("FROM")
	s := &stDelete{Table: p.objName()}
	if p.acceptKw("WHERE") {
		s.Where = p.expr()
	}
	return s
}

func (p *parser) createStmt() stmt {
	p.expectKw("CREATE")
	switch {
	case p.acceptKw("DATABASE"):
		return &stCreateDB{Name: p.ident()}
	case p.acceptKw("TABLE"):
		return p.createTable()
	}
	p.fail(p.peek())
	return nil
}

func (p *parser) createTable() *stCreateTable {
	s := &stCreateTable{Table: p.objName()}
	p.expectOp("(")
	for {
		if p.acceptKw("CONSTRAINT") {
			p.ident()
			p.tableConstraint(s)
		} else if p.isKw("PRIMARY") {
			p.tableConstraint(s)
		} else {
			s.Cols = append(s.Cols, p.columnDef())
		}
		if !p.acceptOp(",") {
			break
		}
	}
	p.expectOp(")")
	return s
}

func (p *parser) tableConstraint(s *stCreateTable) {
	p.expectKw("PRIMARY")
	p.expectKw("KEY")
	if !p.acceptKw("CLUSTERED") {
		p.acceptKw("NONCLUSTERED")
	}
	p.expectOp("(")
	for {
		name := p.ident()
		if !p.acceptKw("ASC") {
			p.acceptKw("DESC")
		}
		found := false
		for i := range s.Cols {
			if strings.EqualFold(s.Cols[i].Name, name) {
				s.Cols[i].PrimaryKey, s.Cols[i].Nullable, found = true, false, true
			}
		}
		if !found {
			panic(syntaxError{sqlErr(1911, name)})
		}
		if !p.acceptOp(",") {
			break
		}
	}
	p.expectOp(")")
}

func (p *parser) dataType() colType {
	t := p.peek()
	name := strings.ToLower(p.ident())
	if p.isOp(".") { // sys.sysname, dbo.x
		p.i++
		name = strings.ToLower(p.ident())
	}
	argKind, ok := knownTypes[name]
	if !ok {
		e := sqlErr(2715, 1, t.Text)
		e.Line = int32(t.Line)
		panic(syntaxError{e})
	}
	ct := colType{Name: name}
	if argKind != 0 && p.acceptOp("(") {
		switch argKind {
		case 1:
			if p.acceptKw("MAX") {
				ct.Len = -1
			} else {
				ct.Len = p.intLit()
			}
		case 2:
			ct.Prec = p.intLit()
			if p.acceptOp(",") {
				ct.Scale = p.intLit()
			}
		case 3:
			ct.Scale = p.intLit()
			ct.Len = 1 // explicit scale, even 0
		}
		p.expectOp(")")
	}
	return ct.normalize()
}

func (p *parser) intLit() int {
	t := p.next()
	if t.Kind != tNumber {
		p.fail(t)
	}
	n, err := strconv.Atoi(t.Text)
	if err != nil {
		p.fail(t)
	}
	return n
}

func (p *parser) signedInt() int64 {
	neg := p.acceptOp("-")
	n := int64(p.intLit())
	if neg {
		n = -n
	}
	return n
}

func (p *parser) columnDef() colDef {
	c := colDef{Name: p.ident(), Nullable: true}
	c.Type = p.dataType()
	for {
		switch {
		case p.acceptKw("IDENTITY"):
			c.Identity, c.IdentSeed, c.IdentIncr, c.Nullable = true, 1, 1, false
			if p.acceptOp("(") {
				c.IdentSeed = p.signedInt()
				p.expectOp(",")
				c.IdentIncr = p.signedInt()
				p.expectOp(")")
			}
		case p.acceptKw("NOT"):
			p.expectKw("NULL")
			c.Nullable = false
		case p.acceptKw("NULL"):
			c.Nullable = true
		case p.acceptKw("PRIMARY"):
			p.expectKw("KEY")
			if !p.acceptKw("CLUSTERED") {
				p.acceptKw("NONCLUSTERED")
			}
			c.PrimaryKey, c.Nullable = true, false
		case p.isKw("CONSTRAINT") || p.isKw("DEFAULT"):
			if p.acceptKw("CONSTRAINT") {
				p.ident()
				if p.isKw("PRIMARY") {
					continue
				}
			}
			p.expectKw("DEFAULT")
			start := p.peek().Pos
			c.Default = p.primary()
			last := p.toks[p.i-1]
			c.DefaultSQL = p.src[start : last.Pos+len(last.Raw)]
		default:
			return c
		}
	}
}

func (p *parser) dropStmt() stmt {
	p.expectKw("DROP")
	switch {
	case p.acceptKw("DATABASE"):
		s := &stDropDB{}
		if p.acceptKw("IF") {
			p.expectKw("EXISTS")
			s.IfExists = true
		}
		for {
			s.Names = append(s.Names, p.ident())
			if !p.acceptOp(",") {
				return s
			}
		}
	case p.acceptKw("TABLE"):
		s := &stDropTable{}
		if p.acceptKw("IF") {
			p.expectKw("EXISTS")
			s.IfExists = true
		}
		for {
			s.Tables = append(s.Tables, p.objName())
			if !p.acceptOp(",") {
				return s
			}
		}
	}
	p.fail(p.peek())
	return nil
}

func (p *parser) alterStmt() stmt {
	p.expectKw("ALTER")
	p.expectKw("DATABASE")
	s := &stAlterDB{}
	if p.isKw("CURRENT") {
		p.i++
	} else {
		s.Name = p.ident()
	}
	p.expectKw("SET")
	opt := p.word()
	s.Option = opt
	switch opt {
	case "RECOVERY":
		v := p.word()
		if v != "FULL" && v != "SIMPLE" && v != "BULK_LOGGED" {
			p.fail(p.toks[p.i-1])
		}
		s.Value = v
	case "SINGLE_USER", "MULTI_USER", "RESTRICTED_USER", "OFFLINE", "ONLINE", "READ_ONLY", "READ_WRITE":
		if p.acceptKw("WITH") {
			switch {
			case p.acceptKw("ROLLBACK"):
				if p.acceptKw("IMMEDIATE") {
					s.Rollback = true
				} else {
					p.expectKw("AFTER")
					p.intLit()
					p.acceptKw("SECONDS")
					s.Rollback = true
				}
			case p.acceptKw("NO_WAIT"):
			default:
				p.fail(p.peek())
			}
		}
	case "PARTNER", "WITNESS":
		// SET PARTNER = 'TCP://host:port' | FAILOVER | OFF | FORCE_SERVICE_ALLOW_DATA_LOSS
		// | SAFETY FULL|OFF | RESUME | SUSPEND | TIMEOUT n; SET WITNESS = '…' | OFF.
		if p.acceptOp("=") {
			t := p.next()
			if t.Kind != tString {
				p.fail(t)
			}
			s.Value, s.Addr = "=", t.Text
			break
		}
		v := p.word()
		s.Value = v
		switch {
		case v == "OFF":
		case opt == "PARTNER" && (v == "FAILOVER" || v == "FORCE_SERVICE_ALLOW_DATA_LOSS" || v == "RESUME" || v == "SUSPEND"):
		case opt == "PARTNER" && v == "SAFETY":
			w := p.word()
			if w != "FULL" && w != "OFF" {
				p.fail(p.toks[p.i-1])
			}
			s.Addr = w
		case opt == "PARTNER" && v == "TIMEOUT":
			p.intLit()
		default:
			p.fail(p.toks[p.i-1])
		}
	default:
		p.fail(p.toks[p.i-1])
	}
	return s
}

func (p *parser) setStmt() stmt {
	p.expectKw("SET")
	if t := p.peek(); t.Kind == tVar {
		p.i++
		p.expectOp("=")
		return &stSetVar{Name: t.Text, E: p.expr()}
	}
	opt := p.word()
	switch opt {
	case "NOCOUNT", "ANSI_NULLS", "QUOTED_IDENTIFIER", "ANSI_WARNINGS", "ANSI_PADDING", "ARITHABORT",
		"CONCAT_NULL_YIELDS_NULL", "XACT_ABORT", "IMPLICIT_TRANSACTIONS", "ANSI_NULL_DFLT_ON",
		"CURSOR_CLOSE_ON_COMMIT", "NUMERIC_ROUNDABORT", "FMTONLY", "STATISTICS", "SHOWPLAN_ALL":
		if opt == "STATISTICS" {
			p.word()
		}
		v := p.word()
		if v != "ON" && v != "OFF" {
			p.fail(p.toks[p.i-1])
		}
		return &stSet{Option: opt, Value: v}
	case "LOCK_TIMEOUT", "TEXTSIZE":
		return &stSet{Option: opt, Value: strconv.FormatInt(p.signedInt(), 10)}
	case "DEADLOCK_PRIORITY", "DATEFORMAT", "LANGUAGE":
		t := p.next()
		return &stSet{Option: opt, Value: t.Text}
	case "TRANSACTION":
		p.expectKw("ISOLATION")
		p.expectKw("LEVEL")
		v := p.word()
		if v == "READ" || v == "REPEATABLE" {
			v += " " + p.word()
		}
		return &stSet{Option: opt, Value: v}
	}
	p.fail(p.toks[p.i-1])
	return nil
}

// Expressions, lowest precedence first.

func (p *parser) expr() expr {
	p.enter()
	defer p.leave()
	return p.orExpr()
}

func (p *parser) orExpr() expr {
	l := p.andExpr()
	for p.acceptKw("OR") {
		l = &exBin{Op: "OR", L: l, R: p.andExpr()}
	}
	return l
}

func (p *parser) andExpr() expr {
	l := p.notExpr()
	for p.acceptKw("AND") {
		l = &exBin{Op: "AND", L: l, R: p.notExpr()}
	}
	return l
}

func (p *parser) notExpr() expr {
	if p.acceptKw("NOT") {
		return &exNot{E: p.notExpr()}
	}
	return p.cmpExpr()
}

func (p *parser) cmpExpr() expr {
	l := p.addExpr()
	for {
		t := p.peek()
		if t.Kind == tOp {
			switch t.Text {
			case "=", "<>", "!=", "<", ">", "<=", ">=", "!<", "!>":
				p.i++
				op := t.Text
				switch op {
				case "!=":
					op = "<>"
				case "!<":
					op = ">="
				case "!>":
					op = "<="
				}
				l = &exBin{Op: op, L: l, R: p.addExpr()}
				continue
			}
			return l
		}
		not := false
		if p.isKw("NOT") && (p.peekN(1).Kind == tIdent) {
			switch strings.ToUpper(p.peekN(1).Text) {
			case "BETWEEN", "IN", "LIKE":
				p.i++
				not = true
			}
		}
		switch {
		case p.acceptKw("IS"):
			n := p.acceptKw("NOT")
			p.expectKw("NULL")
			l = &exIsNull{E: l, Not: n}
		case p.acceptKw("BETWEEN"):
			lo := p.addExpr()
			p.expectKw("AND")
			l = &exBetween{E: l, Lo: lo, Hi: p.addExpr(), Not: not}
		case p.acceptKw("IN"):
			p.expectOp("(")
			in := &exIn{E: l, Not: not}
			if p.isKw("SELECT") {
				in.Sub = p.selectStmt()
				p.expectOp(")")
				l = in
				continue
			}
			for {
				in.List = append(in.List, p.expr())
				if !p.acceptOp(",") {
					break
				}
			}
			p.expectOp(")")
			l = in
		case p.acceptKw("LIKE"):
			l = &exLike{E: l, Pat: p.addExpr(), Not: not}
		default:
			if not {
				p.fail(p.peek())
			}
			return l
		}
	}
}

func (p *parser) addExpr() expr {
	l := p.mulExpr()
	for p.isOp("+") || p.isOp("-") {
		op := p.next().Text
		l = &exBin{Op: op, L: l, R: p.mulExpr()}
	}
	return l
}

func (p *parser) mulExpr() expr {
	l := p.unary()
	for p.isOp("*") || p.isOp("/") || p.isOp("%") {
		op := p.next().Text
		l = &exBin{Op: op, L: l, R: p.unary()}
	}
	return l
}

func (p *parser) unary() expr {
	p.enter()
	defer p.leave()
	if p.acceptOp("-") {
		e := p.unary()
		if lit, ok := e.(*exLit); ok {
			switch v := lit.V.(type) {
			case int64:
				return &exLit{V: -v}
			case float64:
				return &exLit{V: -v}
			case tds.Decimal:
				d, err := tds.ParseDecimal("-" + v.String())
				if err == nil {
					return &exLit{V: d}
				}
			}
		}
		return &exNeg{E: e}
	}
	if p.acceptOp("+") {
		return p.unary()
	}
	return p.primary()
}

func (p *parser) primary() expr {
	return p.primaryFrom(p.next())
}

// primaryFrom parses a primary expression whose first token t was consumed.
func (p *parser) primaryFrom(t token) expr {
	switch t.Kind {
	case tNumber:
		if strings.ContainsAny(t.Text, "eE") {
			f, err := strconv.ParseFloat(t.Text, 64)
			if err != nil {
				p.fail(t)
			}
			return &exLit{V: f}
		}
		if strings.Contains(t.Text, ".") {
			d, err := tds.ParseDecimal(t.Text)
			if err != nil {
				p.fail(t)
			}
			return &exLit{V: d}
		}
		n, err := strconv.ParseInt(t.Text, 10, 64)
		if err != nil {
			d, err := tds.ParseDecimal(t.Text)
			if err != nil {
				p.fail(t)
			}
			return &exLit{V: d}
		}
		return &exLit{V: n}
	case tString:
		return &exLit{V: t.Text, Unicode: t.Unicode}
	case tBinary:
		s := t.Text
		if len(s)%2 == 1 {
			s = "0" + s
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			p.fail(t)
		}
		return &exLit{V: b}
	case tVar:
		return &exVar{Name: t.Text}
	case tOp:
		if t.Text == "(" {
			if p.isKw("SELECT") {
				sel := p.selectStmt()
				p.expectOp(")")
				return &exSubquery{Sel: sel}
			}
			e := p.expr()
			p.expectOp(")")
			return e
		}
		p.i--
		p.fail(t)
	case tIdent:
		up := strings.ToUpper(t.Text)
		if !t.Quoted {
			switch up {
			case "NULL":
				return &exLit{V: nil}
			case "CURRENT_TIMESTAMP":
				return &exFunc{Name: "GETDATE"}
			case "CAST":
				p.expectOp("(")
				e := p.expr()
				p.expectKw("AS")
				ct := p.dataType()
				p.expectOp(")")
				return &exCast{E: e, T: ct}
			case "EXISTS":
				p.expectOp("(")
				sel := p.selectStmt()
				p.expectOp(")")
				return &exExists{Sel: sel}
			case "CASE":
				c := &exCase{}
				if !p.isKw("WHEN") {
					c.Operand = p.expr()
				}
				for p.acceptKw("WHEN") {
					var w whenClause
					w.When = p.expr()
					p.expectKw("THEN")
					w.Then = p.expr()
					c.Whens = append(c.Whens, w)
				}
				if len(c.Whens) == 0 {
					p.fail(p.peek())
				}
				if p.acceptKw("ELSE") {
					c.Else = p.expr()
				}
				p.expectKw("END")
				return c
			case "CONVERT":
				p.expectOp("(")
				ct := p.dataType()
				p.expectOp(",")
				e := p.expr()
				if p.acceptOp(",") {
					p.expr() // style: accepted, ignored
				}
				p.expectOp(")")
				return &exCast{E: e, T: ct}
			}
			if reserved[up] && !(p.isOp("(") && (up == "LEFT" || up == "RIGHT")) {
				p.i--
				p.fail(t)
			}
		}
		if p.isOp("(") {
			p.i++
			f := &exFunc{Name: up}
			if p.acceptOp("*") {
				f.Star = true
				p.expectOp(")")
				return f
			}
			if p.acceptOp(")") {
				return f
			}
			for {
				f.Args = append(f.Args, p.expr())
				if !p.acceptOp(",") {
					break
				}
			}
			p.expectOp(")")
			return f
		}
		parts := []string{t.Text}
		for p.isOp(".") {
			p.i++
			parts = append(parts, p.ident())
		}
		return &exCol{Parts: parts}
	}
	p.fail(t)
	return nil
}
