package mssql

// Expressions.
type (
	expr interface{}

	exLit struct {
		V       any
		Unicode bool
	}
	exVar  struct{ Name string } // @p or @@name
	exCol  struct{ Parts []string }
	exFunc struct {
		Name string // upper case
		Args []expr
		Star bool // COUNT(*)
	}
	exBin struct {
		Op   string // + - * / % = <> < > <= >= AND OR
		L, R expr
	}
	exNot    struct{ E expr }
	exNeg    struct{ E expr }
	exIsNull struct {
		E   expr
		Not bool
	}
	exBetween struct {
		E, Lo, Hi expr
		Not       bool
	}
	exIn struct {
		E    expr
		List []expr
		Sub  *stSelect // IN (SELECT ...)
		Not  bool
	}
	exSubquery struct{ Sel *stSelect } // (SELECT ...) as a value
	exExists   struct{ Sel *stSelect }
	exLike     struct {
		E, Pat expr
		Not    bool
	}
	exCast struct {
		E expr
		T colType
	}
	exCase struct {
		Operand expr // CASE x WHEN v ...; nil for CASE WHEN cond ...
		Whens   []whenClause
		Else    expr
	}
	whenClause struct{ When, Then expr }
)

// objName is a one- to three-part object name.
type objName struct {
	DB, Schema, Name string
	Raw              string // as written, for error messages
}

// Statements.
type (
	stmt interface{}

	selItem struct {
		E        expr
		Alias    string
		Star     bool
		StarQual string
		Assign   string // SELECT @v = expr: the variable
	}
	orderItem struct {
		E    expr
		Desc bool
	}
	joinClause struct {
		Left  bool // LEFT [OUTER] JOIN; else INNER JOIN
		Table objName
		Alias string
		On    expr
	}
	stSelect struct {
		Distinct  bool
		Top       expr
		Items     []selItem
		From      *objName
		FromAlias string
		Joins     []joinClause
		Where     expr
		GroupBy   []expr
		Having    expr
		Order     []orderItem
		Offset    expr // OFFSET n ROWS
		Fetch     expr // FETCH NEXT n ROWS ONLY
	}
	stInsert struct {
		Table     objName
		Cols      []string
		Output    []selItem
		Rows      [][]expr
		DefValues bool
	}
	setItem struct {
		Col string
		E   expr
	}
	stUpdate struct {
		Table objName
		Sets  []setItem
		Where expr
	}
	stDelete struct {
		Table objName
		Where expr
	}
	colDef struct {
		Name       string
		Type       colType
		Nullable   bool
		Identity   bool
		IdentSeed  int64
		IdentIncr  int64
		Default    expr
		DefaultSQL string
		PrimaryKey bool
	}
	stCreateTable struct {
		Table objName
		Cols  []colDef
	}
	stDropTable struct {
		Tables   []objName
		IfExists bool
	}
	stCreateDB struct{ Name string }
	stDropDB   struct {
		Names    []string
		IfExists bool
	}
	stAlterDB struct {
		Name     string // "" = CURRENT
		Option   string // RECOVERY, SINGLE_USER, MULTI_USER, RESTRICTED_USER, OFFLINE, ONLINE, READ_ONLY, READ_WRITE
		Value    string // FULL/SIMPLE/BULK_LOGGED for RECOVERY
		Rollback bool   // WITH ROLLBACK IMMEDIATE
		Addr     string // PARTNER/WITNESS = 'address'; SAFETY's FULL/OFF
	}
	stUse   struct{ DB string }
	execArg struct {
		Name   string
		E      expr
		Output bool
	}
	stExec struct {
		RC   string // EXEC @rc = proc: the variable receiving the return status
		Proc objName
		Args []execArg
	}
	stIf struct {
		Cond       expr
		Then, Else stmt // Else may be nil
	}
	stBlock []stmt // BEGIN ... END
	stWhile struct {
		Cond expr
		Body stmt
	}
	stBreak    struct{}
	stContinue struct{}
	stWaitFor  struct{ Delay expr }
	stRaise    struct {
		Msg, Severity, State expr
		Args                 []expr
		Number               expr // THROW number; nil for RAISERROR (50000)
		NoWait               bool
	}
	declVar struct {
		Name string
		Type colType
		Init expr
	}
	stDeclare struct{ Vars []declVar }
	stSetVar  struct {
		Name string
		E    expr
	}
	stKill  struct{ ID expr }
	stSet   struct{ Option, Value string }
	stPrint struct{ E expr }
)
