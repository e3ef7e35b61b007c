package mssql

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/chatdr/chatdr/sim/mssql/tds"
)

// scope names the columns an expression can see.
type scope struct {
	names []string
	quals []string // lower-case qualifiers (table name, alias, "inserted")
	types []colType
}

func (s *scope) add(qual, name string, t colType) {
	s.names = append(s.names, name)
	s.quals = append(s.quals, strings.ToLower(qual))
	s.types = append(s.types, t)
}

// lookup finds a column reference; -1 and an error if unknown.
func (s *scope) lookup(parts []string) (int, error) {
	if s != nil {
		name := parts[len(parts)-1]
		qual := ""
		if len(parts) > 1 {
			qual = strings.ToLower(parts[len(parts)-2])
		}
		found := -1
		for i, n := range s.names {
			if strings.EqualFold(n, name) && (qual == "" || s.quals[i] == qual) {
				if found >= 0 {
					return -1, sqlErr(209, name)
				}
				found = i
			}
		}
		if found >= 0 {
			return found, nil
		}
	}
	if len(parts) > 1 {
		return -1, sqlErr(4104, strings.Join(parts, "."))
	}
	return -1, sqlErr(msgInvalidColumn, parts[0])
}

// env is what an expression is evaluated against.
type env struct {
	x     *execCtx
	outer *env // the enclosing query's row, for correlated subqueries
	sc    *scope
	row   []any
	group [][]any // rows of the group, for aggregates
}

var aggregates = map[string]bool{"COUNT": true, "COUNT_BIG": true, "MAX": true, "MIN": true, "SUM": true, "AVG": true}

// hasAggregate reports whether e contains an aggregate function.
func hasAggregate(e expr) bool {
	switch x := e.(type) {
	case *exFunc:
		if aggregates[x.Name] {
			return true
		}
		for _, a := range x.Args {
			if hasAggregate(a) {
				return true
			}
		}
	case *exBin:
		return hasAggregate(x.L) || hasAggregate(x.R)
	case *exNot:
		return hasAggregate(x.E)
	case *exNeg:
		return hasAggregate(x.E)
	case *exCast:
		return hasAggregate(x.E)
	case *exIsNull:
		return hasAggregate(x.E)
	case *exCase:
		if x.Operand != nil && hasAggregate(x.Operand) || x.Else != nil && hasAggregate(x.Else) {
			return true
		}
		for _, w := range x.Whens {
			if hasAggregate(w.When) || hasAggregate(w.Then) {
				return true
			}
		}
	}
	return false
}

// staticType returns the declared type of an expression when it is known
// without evaluating it.
func staticType(e expr, sc *scope) (colType, bool) {
	switch x := e.(type) {
	case *exCol:
		if i, err := sc.lookup(x.Parts); err == nil {
			return sc.types[i], true
		}
	case *exCast:
		return x.T, true
	case *exLit:
		switch v := x.V.(type) {
		case int64:
			return typeOfValue(v), true
		case string:
			return nvarchar(max(utf8.RuneCountInString(v), 1)), true
		}
	case *exVar:
		switch strings.ToUpper(x.Name) {
		case "@@SERVERNAME", "@@SERVICENAME":
			return typeSysname, true
		case "@@VERSION":
			return nvarchar(300), true
		case "@@SPID":
			return typeSmallInt, true
		case "@@TRANCOUNT", "@@ROWCOUNT", "@@ERROR":
			return typeInt, true
		}
	case *exFunc:
		switch x.Name {
		case "COUNT", "DB_ID", "OBJECT_ID", "IS_SRVROLEMEMBER", "IS_MEMBER":
			return typeInt, true
		case "COUNT_BIG":
			return typeBigInt, true
		case "MAX", "MIN":
			if len(x.Args) == 1 {
				return staticType(x.Args[0], sc)
			}
		case "DB_NAME", "SUSER_SNAME", "SUSER_NAME", "HOST_NAME", "APP_NAME", "SERVERPROPERTY", "DATABASEPROPERTYEX":
			return typeSysname, true
		case "GETDATE", "GETUTCDATE":
			return typeDateTime, true
		case "DATEDIFF", "DATEPART":
			return typeInt, true
		case "SYSDATETIME", "SYSUTCDATETIME":
			return typeDateTime2, true
		case "NEWID":
			return typeGUID, true
		}
	}
	return colType{}, false
}

// eval evaluates e.
func (v *env) eval(e expr) (any, error) {
	switch x := e.(type) {
	case *exLit:
		return x.V, nil
	case exDefault:
		return nil, sqlErr(msgSyntaxKeyword, "DEFAULT")
	case *exVar:
		return v.variable(x.Name)
	case *exCol:
		i, err := v.sc.lookup(x.Parts)
		if err != nil {
			var te *tds.Error
			if v.outer != nil && errors.As(err, &te) && (te.Number == msgInvalidColumn || te.Number == 4104) {
				return v.outer.eval(x)
			}
			return nil, err
		}
		if v.row == nil {
			return nil, sqlErr(msgAggregateNeedGroup, strings.Join(x.Parts, "."))
		}
		return v.row[i], nil
	case *exCast:
		val, err := v.eval(x.E)
		if err != nil {
			return nil, err
		}
		return coerce(val, x.T)
	case *exNeg:
		val, err := v.eval(x.E)
		if err != nil || val == nil {
			return val, err
		}
		return arith("-", int64(0), val)
	case *exNot:
		val, err := v.eval(x.E)
		if err != nil || val == nil {
			return val, err
		}
		b, ok := val.(bool)
		if !ok {
			return nil, sqlErr(msgSyntaxKeyword, "NOT")
		}
		return !b, nil
	case *exIsNull:
		val, err := v.eval(x.E)
		if err != nil {
			return nil, err
		}
		return (val == nil) != x.Not, nil
	case *exBetween:
		val, err := v.eval(x.E)
		if err != nil {
			return nil, err
		}
		lo, err := v.eval(x.Lo)
		if err != nil {
			return nil, err
		}
		hi, err := v.eval(x.Hi)
		if err != nil {
			return nil, err
		}
		a, err := cmpOp(">=", val, lo)
		if err != nil {
			return nil, err
		}
		b, err := cmpOp("<=", val, hi)
		if err != nil {
			return nil, err
		}
		r := and3(a, b)
		if x.Not {
			return not3(r), nil
		}
		return r, nil
	case *exSubquery:
		cols, rows, err := v.x.query(x.Sel, v)
		if err != nil {
			return nil, err
		}
		if len(cols) != 1 {
			return nil, sqlErr(116)
		}
		switch len(rows) {
		case 0:
			return nil, nil
		case 1:
			return rows[0][0], nil
		}
		return nil, sqlErr(512)
	case *exExists:
		_, rows, err := v.x.query(x.Sel, v)
		if err != nil {
			return nil, err
		}
		return len(rows) > 0, nil
	case *exIn:
		val, err := v.eval(x.E)
		if err != nil {
			return nil, err
		}
		list := x.List
		if x.Sub != nil {
			cols, rows, err := v.x.query(x.Sub, v)
			if err != nil {
				return nil, err
			}
			if len(cols) != 1 {
				return nil, sqlErr(116)
			}
			list = make([]expr, len(rows))
			for i, r := range rows {
				list[i] = &exLit{V: r[0]}
			}
		}
		var res any = false
		for _, it := range list {
			iv, err := v.eval(it)
			if err != nil {
				return nil, err
			}
			eq, err := cmpOp("=", val, iv)
			if err != nil {
				return nil, err
			}
			res = or3(res, eq)
		}
		if x.Not {
			return not3(res), nil
		}
		return res, nil
	case *exLike:
		val, err := v.eval(x.E)
		if err != nil {
			return nil, err
		}
		pat, err := v.eval(x.Pat)
		if err != nil {
			return nil, err
		}
		if val == nil || pat == nil {
			return nil, nil
		}
		s, err := coerce(val, typeNVarMax)
		if err != nil {
			return nil, err
		}
		ps, err := coerce(pat, typeNVarMax)
		if err != nil {
			return nil, err
		}
		m := likeMatch(strings.ToLower(s.(string)), strings.ToLower(ps.(string)))
		return m != x.Not, nil
	case *exBin:
		switch x.Op {
		case "AND", "OR":
			l, err := v.eval(x.L)
			if err != nil {
				return nil, err
			}
			if x.Op == "AND" && l == false || x.Op == "OR" && l == true {
				return l, nil
			}
			r, err := v.eval(x.R)
			if err != nil {
				return nil, err
			}
			if !isBoolOrNil(l) || !isBoolOrNil(r) {
				return nil, sqlErr(msgSyntaxKeyword, x.Op)
			}
			if x.Op == "AND" {
				return and3(l, r), nil
			}
			return or3(l, r), nil
		}
		l, err := v.eval(x.L)
		if err != nil {
			return nil, err
		}
		r, err := v.eval(x.R)
		if err != nil {
			return nil, err
		}
		switch x.Op {
		case "=", "<>", "<", ">", "<=", ">=":
			return cmpOp(x.Op, l, r)
		}
		return arith(x.Op, l, r)
	case *exFunc:
		return v.call(x)
	case *exCase:
		var operand any
		if x.Operand != nil {
			o, err := v.eval(x.Operand)
			if err != nil {
				return nil, err
			}
			operand = o
		}
		for _, w := range x.Whens {
			c, err := v.eval(w.When)
			if err != nil {
				return nil, err
			}
			if x.Operand != nil {
				if c, err = cmpOp("=", operand, c); err != nil {
					return nil, err
				}
			}
			if truth(c) {
				return v.eval(w.Then)
			}
		}
		if x.Else != nil {
			return v.eval(x.Else)
		}
		return nil, nil
	}
	return nil, fmt.Errorf("mssql: cannot evaluate %T", e)
}

func isBoolOrNil(v any) bool {
	_, ok := v.(bool)
	return ok || v == nil
}

func and3(a, b any) any {
	if a == false || b == false {
		return false
	}
	if a == nil || b == nil {
		return nil
	}
	return true
}

func or3(a, b any) any {
	if a == true || b == true {
		return true
	}
	if a == nil || b == nil {
		return nil
	}
	return false
}

func not3(a any) any {
	if a == nil {
		return nil
	}
	return !a.(bool)
}

// truth reports whether a predicate result selects a row.
func truth(v any) bool { return v == true }

// likeMatch matches a LIKE pattern with % and _ (no character classes), in
// O(len(s)*len(p)) time.
func likeMatch(s, p string) bool {
	sr, pr := []rune(s), []rune(p)
	// prev[i] reports whether sr[:i] matches the pattern prefix seen so far.
	prev := make([]bool, len(sr)+1)
	prev[0] = true
	for _, c := range pr {
		cur := make([]bool, len(sr)+1)
		switch c {
		case '%':
			seen := false
			for i := 0; i <= len(sr); i++ {
				seen = seen || prev[i]
				cur[i] = seen
			}
		default:
			for i := 1; i <= len(sr); i++ {
				cur[i] = prev[i-1] && (c == '_' || sr[i-1] == c)
			}
		}
		prev = cur
	}
	return prev[len(sr)]
}

func isNumeric(v any) bool {
	switch v.(type) {
	case int64, float64, tds.Decimal, bool:
		return true
	}
	return false
}

func toRat(v any) *big.Rat {
	switch x := v.(type) {
	case int64:
		return new(big.Rat).SetInt64(x)
	case bool:
		if x {
			return big.NewRat(1, 1)
		}
		return new(big.Rat)
	case float64:
		r, _ := new(big.Rat).SetString(fmt.Sprint(x))
		if r == nil {
			r = new(big.Rat)
		}
		return r
	case tds.Decimal:
		r := new(big.Rat).SetInt(orZero(x.Unscaled))
		return r.Quo(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(x.Scale)), nil)))
	}
	return new(big.Rat)
}

// compare orders two non-NULL values the way SQL Server compares them
// (strings case-insensitively, ignoring trailing spaces).
func compare(a, b any) (int, error) {
	if isNumeric(a) && isNumeric(b) {
		if x, ok := a.(int64); ok {
			if y, ok := b.(int64); ok {
				switch {
				case x < y:
					return -1, nil
				case x > y:
					return 1, nil
				}
				return 0, nil
			}
		}
		return toRat(a).Cmp(toRat(b)), nil
	}
	switch x := a.(type) {
	case string:
		switch y := b.(type) {
		case string:
			return strings.Compare(strings.ToLower(strings.TrimRight(x, " ")), strings.ToLower(strings.TrimRight(y, " "))), nil
		case time.Time, tds.GUID:
			return compareConverted(b, a, -1)
		default:
			if isNumeric(b) {
				return compareConverted(b, a, -1)
			}
		}
	case time.Time:
		switch y := b.(type) {
		case time.Time:
			return x.Compare(y), nil
		case string:
			return compareConverted(a, b, 1)
		}
	case tds.GUID:
		switch y := b.(type) {
		case tds.GUID:
			return bytes.Compare(x[:], y[:]), nil
		case string:
			return compareConverted(a, b, 1)
		}
	case []byte:
		if y, ok := b.([]byte); ok {
			return bytes.Compare(x, y), nil
		}
	default:
		if isNumeric(a) {
			if _, ok := b.(string); ok {
				return compareConverted(a, b, 1)
			}
		}
	}
	return 0, sqlErr(402, sqlTypeName(a), sqlTypeName(b))
}

// compareConverted converts the string s to the type of typed and compares;
// sign is 1 when typed is the left operand.
func compareConverted(typed, s any, sign int) (int, error) {
	t := typeOfValue(typed)
	if _, ok := typed.(int64); ok {
		if str, ok := s.(string); ok && strings.Contains(str, ".") {
			t = colType{Name: "decimal", Prec: 38, Scale: 10}
		}
	}
	if t.Name == "int" {
		t = typeBigInt
	}
	cv, err := coerce(s, t)
	if err != nil {
		return 0, err
	}
	c, err := compare(typed, cv)
	return c * sign, err
}

// cmpOp applies a comparison with SQL's NULL semantics.
func cmpOp(op string, a, b any) (any, error) {
	if a == nil || b == nil {
		return nil, nil
	}
	c, err := compare(a, b)
	if err != nil {
		return nil, err
	}
	switch op {
	case "=":
		return c == 0, nil
	case "<>":
		return c != 0, nil
	case "<":
		return c < 0, nil
	case ">":
		return c > 0, nil
	case "<=":
		return c <= 0, nil
	}
	return c >= 0, nil
}

// arith applies + - * / %.
func arith(op string, a, b any) (any, error) {
	if a == nil || b == nil {
		return nil, nil
	}
	if sa, ok := a.(string); ok && op == "+" {
		sb, err := coerce(b, typeNVarMax)
		if err != nil {
			return nil, err
		}
		return sa + sb.(string), nil
	}
	if _, ok := b.(string); ok && op == "+" && !isNumeric(a) {
		sa, err := coerce(a, typeNVarMax)
		if err != nil {
			return nil, err
		}
		return sa.(string) + b.(string), nil
	}
	if s, ok := a.(string); ok {
		v, err := coerce(s, typeBigInt)
		if err != nil {
			return nil, err
		}
		a = v
	}
	if s, ok := b.(string); ok {
		v, err := coerce(s, typeBigInt)
		if err != nil {
			return nil, err
		}
		b = v
	}
	if !isNumeric(a) || !isNumeric(b) {
		return nil, sqlErr(8117, sqlTypeName(a), opName(op))
	}
	x, xok := a.(int64)
	y, yok := b.(int64)
	if xok && yok {
		switch op {
		case "+":
			r := x + y
			if (r > x) != (y > 0) {
				return nil, sqlErr(msgOverflow, "expression", "int")
			}
			return r, nil
		case "-":
			r := x - y
			if (r < x) != (y > 0) {
				return nil, sqlErr(msgOverflow, "expression", "int")
			}
			return r, nil
		case "*":
			if x != 0 && (x*y)/x != y {
				return nil, sqlErr(msgOverflow, "expression", "int")
			}
			return x * y, nil
		case "/", "%":
			if y == 0 {
				return nil, sqlErr(msgDivideByZero)
			}
			if op == "/" {
				return x / y, nil
			}
			return x % y, nil
		}
	}
	_, af := a.(float64)
	_, bf := b.(float64)
	if af || bf {
		fa, _ := toRat(a).Float64()
		fb, _ := toRat(b).Float64()
		switch op {
		case "+":
			return fa + fb, nil
		case "-":
			return fa - fb, nil
		case "*":
			return fa * fb, nil
		case "/", "%":
			if fb == 0 {
				return nil, sqlErr(msgDivideByZero)
			}
			if op == "/" {
				return fa / fb, nil
			}
			return math.Mod(fa, fb), nil
		}
	}
	ra, rb := toRat(a), toRat(b)
	var r *big.Rat
	switch op {
	case "+":
		r = new(big.Rat).Add(ra, rb)
	case "-":
		r = new(big.Rat).Sub(ra, rb)
	case "*":
		r = new(big.Rat).Mul(ra, rb)
	default:
		if rb.Sign() == 0 {
			return nil, sqlErr(msgDivideByZero)
		}
		r = new(big.Rat).Quo(ra, rb)
	}
	d, err := tds.ParseDecimal(r.FloatString(6))
	if err != nil {
		return nil, err
	}
	return d, nil
}

func opName(op string) string {
	switch op {
	case "+":
		return "add"
	case "-":
		return "subtract"
	case "*":
		return "multiply"
	case "/":
		return "divide"
	}
	return "modulo"
}

// variable returns a parameter (@name) or a system function (@@name).
func (v *env) variable(name string) (any, error) {
	if strings.HasPrefix(name, "@@") {
		x := v.x
		switch strings.ToUpper(name) {
		case "@@SERVERNAME":
			return x.in.cfg.Name, nil
		case "@@SERVICENAME":
			if _, inst, ok := strings.Cut(x.in.cfg.Name, `\`); ok {
				return inst, nil
			}
			return "MSSQLSERVER", nil
		case "@@VERSION":
			return x.in.versionString(), nil
		case "@@SPID":
			if x.sess != nil {
				return int64(x.sess.ID()), nil
			}
			return int64(0), nil
		case "@@TRANCOUNT", "@@ERROR":
			return int64(0), nil
		case "@@ROWCOUNT":
			return x.rowCount, nil
		}
		return nil, sqlErr(msgMustDeclare, name)
	}
	if vr, ok := v.x.vars[strings.ToLower(name)]; ok {
		return vr.v, nil
	}
	if val, ok := v.x.params[strings.ToLower(name)]; ok {
		return val, nil
	}
	return nil, sqlErr(msgMustDeclare, name)
}

// call evaluates a function.
func (v *env) call(f *exFunc) (any, error) {
	if aggregates[f.Name] {
		return v.aggregate(f)
	}
	switch f.Name {
	case "DATEADD", "DATEDIFF", "DATEPART":
		return v.dateFunc(f)
	}
	args := make([]any, len(f.Args))
	for i, a := range f.Args {
		val, err := v.eval(a)
		if err != nil {
			return nil, err
		}
		args[i] = val
	}
	x := v.x
	nargs := func(lo, hi int) error {
		if len(args) < lo || len(args) > hi {
			return sqlErr(174, strings.ToLower(f.Name), lo)
		}
		return nil
	}
	str := func(i int) (string, bool) {
		s, ok := args[i].(string)
		return s, ok
	}
	switch f.Name {
	case "DB_ID":
		if err := nargs(0, 1); err != nil {
			return nil, err
		}
		name := x.db
		if len(args) == 1 {
			s, ok := str(0)
			if !ok {
				return nil, nil
			}
			name = s
		}
		if d := x.in.db(name); d != nil {
			return int64(d.ID), nil
		}
		return nil, nil
	case "DB_NAME":
		if err := nargs(0, 1); err != nil {
			return nil, err
		}
		if len(args) == 0 {
			if d := x.in.db(x.db); d != nil {
				return d.Name, nil
			}
			return x.db, nil
		}
		id, err := coerce(args[0], typeInt)
		if err != nil || id == nil {
			return nil, err
		}
		if d := x.in.dbByID(int(id.(int64))); d != nil {
			return d.Name, nil
		}
		return nil, nil
	case "OBJECT_ID":
		if err := nargs(1, 2); err != nil {
			return nil, err
		}
		s, ok := str(0)
		if !ok {
			return nil, nil
		}
		if len(args) == 2 {
			if typ, _ := str(1); !strings.EqualFold(strings.TrimSpace(typ), "U") {
				return nil, nil
			}
		}
		return x.objectID(s), nil
	case "SERVERPROPERTY":
		if err := nargs(1, 1); err != nil {
			return nil, err
		}
		s, _ := str(0)
		return x.in.serverProperty(s), nil
	case "DATABASEPROPERTYEX":
		if err := nargs(2, 2); err != nil {
			return nil, err
		}
		name, _ := str(0)
		prop, _ := str(1)
		d := x.in.db(name)
		if d == nil {
			return nil, nil
		}
		switch strings.ToLower(prop) {
		case "status":
			if d.State == stateOnline {
				return "ONLINE", nil
			}
			return d.State, nil
		case "recovery":
			return d.Recovery, nil
		case "updateability":
			if d.ReadOnly || d.Standby {
				return "READ_ONLY", nil
			}
			return "READ_WRITE", nil
		case "useraccess":
			return d.UserAccess, nil
		case "isinstandby":
			if d.Standby {
				return int64(1), nil
			}
			return int64(0), nil
		}
		return nil, nil
	case "GETDATE", "SYSDATETIME", "CURRENT_TIMESTAMP":
		t := x.in.cfg.Now()
		return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC), nil
	case "GETUTCDATE", "SYSUTCDATETIME":
		return x.in.cfg.Now().UTC(), nil
	case "NEWID":
		return newGUID(), nil
	case "SUSER_SNAME", "SUSER_NAME":
		return x.login, nil
	case "HOST_NAME":
		if x.sess != nil {
			return x.sess.HostName(), nil
		}
		return nil, nil
	case "APP_NAME":
		if x.sess != nil {
			return x.sess.AppName(), nil
		}
		return nil, nil
	case "IS_SRVROLEMEMBER", "IS_MEMBER":
		// Every simulated login is sysadmin.
		if err := nargs(1, 2); err != nil {
			return nil, err
		}
		return int64(1), nil
	case "ISNULL":
		if err := nargs(2, 2); err != nil {
			return nil, err
		}
		if args[0] != nil {
			return args[0], nil
		}
		return args[1], nil
	case "COALESCE":
		for _, a := range args {
			if a != nil {
				return a, nil
			}
		}
		return nil, nil
	case "UPPER", "LOWER", "LTRIM", "RTRIM", "LEN":
		if err := nargs(1, 1); err != nil {
			return nil, err
		}
		if args[0] == nil {
			return nil, nil
		}
		sv, err := coerce(args[0], typeNVarMax)
		if err != nil {
			return nil, err
		}
		s := sv.(string)
		switch f.Name {
		case "UPPER":
			return strings.ToUpper(s), nil
		case "LOWER":
			return strings.ToLower(s), nil
		case "LTRIM":
			return strings.TrimLeft(s, " "), nil
		case "RTRIM":
			return strings.TrimRight(s, " "), nil
		}
		return int64(utf8.RuneCountInString(strings.TrimRight(s, " "))), nil
	}
	return nil, sqlErr(msgNotBuiltin, strings.ToLower(f.Name))
}

// objectID resolves OBJECT_ID('[db.][schema.]table') for user tables.
func (x *execCtx) objectID(name string) any {
	toks, lerr := lex(name)
	if lerr != nil {
		return nil
	}
	parts := []string{""}
	for _, t := range toks {
		switch {
		case t.Kind == tEOF:
		case t.Kind == tIdent && parts[len(parts)-1] == "":
			parts[len(parts)-1] = t.Text
		case t.Kind == tOp && t.Text == ".":
			parts = append(parts, "")
		default:
			return nil
		}
	}
	if parts[len(parts)-1] == "" {
		return nil
	}
	if len(parts) == 0 || len(parts) > 3 {
		return nil
	}
	o := objName{Name: parts[len(parts)-1]}
	if len(parts) > 1 {
		o.Schema = parts[len(parts)-2]
	}
	if len(parts) > 2 {
		o.DB = parts[0]
	}
	d, t, err := x.userTable(o)
	if err != nil {
		return nil
	}
	return t.objectID(d)
}

// dateUnits maps DATEADD/DATEDIFF/DATEPART date parts to canonical units.
var dateUnits = map[string]string{
	"year": "year", "yy": "year", "yyyy": "year", "month": "month", "mm": "month", "m": "month",
	"day": "day", "dd": "day", "d": "day", "hour": "hour", "hh": "hour",
	"minute": "minute", "mi": "minute", "n": "minute", "second": "second", "ss": "second", "s": "second",
	"millisecond": "millisecond", "ms": "millisecond",
}

// dateFunc evaluates DATEADD(part, n, d), DATEDIFF(part, a, b) and
// DATEPART(part, d).
func (v *env) dateFunc(f *exFunc) (any, error) {
	want := 3
	if f.Name == "DATEPART" {
		want = 2
	}
	if len(f.Args) != want {
		return nil, sqlErr(174, strings.ToLower(f.Name), want)
	}
	partName := ""
	if c, ok := f.Args[0].(*exCol); ok && len(c.Parts) == 1 {
		partName = c.Parts[0]
	}
	unit, ok := dateUnits[strings.ToLower(partName)]
	if !ok {
		return nil, sqlErr(155, partName, strings.ToLower(f.Name))
	}
	args := make([]any, len(f.Args)-1)
	for i, a := range f.Args[1:] {
		val, err := v.eval(a)
		if err != nil {
			return nil, err
		}
		args[i] = val
	}
	for _, a := range args {
		if a == nil {
			return nil, nil
		}
	}
	toTime := func(a any) (time.Time, error) {
		t, err := coerce(a, typeDateTime2)
		if err != nil {
			return time.Time{}, err
		}
		return t.(time.Time), nil
	}
	switch f.Name {
	case "DATEPART":
		t, err := toTime(args[0])
		if err != nil {
			return nil, err
		}
		switch unit {
		case "year":
			return int64(t.Year()), nil
		case "month":
			return int64(t.Month()), nil
		case "day":
			return int64(t.Day()), nil
		case "hour":
			return int64(t.Hour()), nil
		case "minute":
			return int64(t.Minute()), nil
		case "second":
			return int64(t.Second()), nil
		}
		return int64(t.Nanosecond() / 1e6), nil
	case "DATEADD":
		nv, err := coerce(args[0], typeBigInt)
		if err != nil {
			return nil, err
		}
		n := nv.(int64)
		t, err := toTime(args[1])
		if err != nil {
			return nil, err
		}
		switch unit {
		case "year":
			return addMonths(t, 12*int(n)), nil
		case "month":
			return addMonths(t, int(n)), nil
		case "day":
			return t.AddDate(0, 0, int(n)), nil
		}
		return t.Add(time.Duration(n) * unitDuration[unit]), nil
	}
	a, err := toTime(args[0])
	if err != nil {
		return nil, err
	}
	b, err := toTime(args[1])
	if err != nil {
		return nil, err
	}
	// DATEDIFF counts unit boundaries crossed.
	switch unit {
	case "year":
		return int64(b.Year() - a.Year()), nil
	case "month":
		return int64((b.Year()-a.Year())*12 + int(b.Month()) - int(a.Month())), nil
	case "day":
		da := time.Date(a.Year(), a.Month(), a.Day(), 0, 0, 0, 0, time.UTC)
		db := time.Date(b.Year(), b.Month(), b.Day(), 0, 0, 0, 0, time.UTC)
		return int64(db.Sub(da) / (24 * time.Hour)), nil
	}
	d := unitDuration[unit]
	return int64(b.Truncate(d).Sub(a.Truncate(d)) / d), nil
}

// addMonths adds months as SQL Server does: the day is clamped to the end
// of the target month (DATEADD(month, 1, '2026-01-31') is 2026-02-28).
func addMonths(t time.Time, n int) time.Time {
	first := time.Date(t.Year(), t.Month(), 1, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location()).AddDate(0, n, 0)
	last := first.AddDate(0, 1, -1).Day()
	return first.AddDate(0, 0, min(t.Day(), last)-1)
}

var unitDuration = map[string]time.Duration{
	"hour": time.Hour, "minute": time.Minute, "second": time.Second, "millisecond": time.Millisecond,
}

// aggregate evaluates an aggregate over env.group.
func (v *env) aggregate(f *exFunc) (any, error) {
	if v.group == nil {
		return nil, sqlErr(147)
	}
	if f.Star {
		if f.Name != "COUNT" && f.Name != "COUNT_BIG" {
			return nil, sqlErr(msgSyntax, "*")
		}
		return int64(len(v.group)), nil
	}
	if len(f.Args) != 1 {
		return nil, sqlErr(174, strings.ToLower(f.Name), 1)
	}
	var (
		count int64
		acc   any
	)
	for _, r := range v.group {
		re := &env{x: v.x, outer: v.outer, sc: v.sc, row: r}
		val, err := re.eval(f.Args[0])
		if err != nil {
			return nil, err
		}
		if val == nil {
			continue
		}
		count++
		switch f.Name {
		case "MAX", "MIN":
			if acc == nil {
				acc = val
				continue
			}
			c, err := compare(val, acc)
			if err != nil {
				return nil, err
			}
			if f.Name == "MAX" && c > 0 || f.Name == "MIN" && c < 0 {
				acc = val
			}
		case "SUM", "AVG":
			if acc == nil {
				acc = val
				continue
			}
			s, err := arith("+", acc, val)
			if err != nil {
				return nil, err
			}
			acc = s
		}
	}
	switch f.Name {
	case "COUNT", "COUNT_BIG":
		return count, nil
	case "AVG":
		if acc == nil {
			return nil, nil
		}
		return arith("/", acc, count)
	}
	return acc, nil
}
