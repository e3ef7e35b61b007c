package csshell

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The simulator reads a small subset of PowerShell: statements separated by
// ';' or newlines; an assignment `$ErrorActionPreference = 'Stop'`;
// pipelines of commands with named parameters (`-Name value`,
// `-Name:value`), positional arguments, single-quoted strings (” doubles a
// quote; the typographic single quotes count as quotes, as in PowerShell),
// barewords, integers, $null/$true/$false, comma lists and @{Key=value; …}
// hashtables. Everything else PowerShell would accept (double-quoted
// strings, subexpressions, variables, script blocks, escapes, comments,
// redirection, type literals, …) is a parse error: the simulator never
// guesses.

// Script is a parsed script.
type Script struct {
	Statements []Statement
}

// Statement is an assignment or a pipeline.
type Statement struct {
	// Assign is set for `$Var = value`.
	Assign *Assignment
	// Pipeline is set for `cmd … | cmd …`.
	Pipeline []Command
	Pos      int
}

// Assignment is `$Var = value`.
type Assignment struct {
	Var   string
	Value Value
}

// Command is one pipeline element.
type Command struct {
	Name     string
	Elements []Element
	Pos      int
}

// Element is a parameter name (with its value when written -Name:value) or
// a value.
type Element struct {
	// Param is the parameter name without the dash, "" for a value.
	Param string
	// Colon is true for -Name:value; Value then holds the value.
	Colon bool
	// Value is the value (for a value element or -Name:value).
	Value *Value
	Pos   int
}

// ValueKind says what a Value holds.
type ValueKind int

// Value kinds.
const (
	VString ValueKind = iota // 'quoted'
	VBare                    // bareword
	VInt                     // 42
	VNull                    // $null
	VBool                    // $true / $false
	VList                    // a, b, c
	VHash                    // @{Key = value; …}
)

// Value is an argument value.
type Value struct {
	Kind ValueKind
	Str  string // VString, VBare
	Int  int64  // VInt
	Bool bool   // VBool
	List []Value
	Hash []HashEntry
	Pos  int
}

// HashEntry is one Key = value of a hashtable.
type HashEntry struct {
	Key   string
	Value Value
}

// text renders a scalar value as PowerShell would convert it to a string.
func (v Value) text() string {
	switch v.Kind {
	case VString, VBare:
		return v.Str
	case VInt:
		return strconv.FormatInt(v.Int, 10)
	case VBool:
		if v.Bool {
			return "True"
		}
		return "False"
	case VList:
		return "System.Object[]"
	case VHash:
		return "System.Collections.Hashtable"
	}
	return ""
}

// ParseError is a PowerShell-like parser error.
type ParseError struct {
	Script string
	Offset int    // byte offset in Script
	ID     string // FullyQualifiedErrorId, e.g. UnexpectedToken
	Msg    string
}

// Error renders the error the way powershell.exe prints a parse error.
func (e *ParseError) Error() string {
	line, col, text := position(e.Script, e.Offset)
	var b strings.Builder
	fmt.Fprintf(&b, "At line:%d char:%d\n", line, col)
	fmt.Fprintf(&b, "+ %s\n", text)
	fmt.Fprintf(&b, "+ %s~\n", strings.Repeat(" ", max(col-1, 0)))
	b.WriteString(e.Msg + "\n")
	b.WriteString("    + CategoryInfo          : ParserError: (:) [], ParentContainsErrorRecordException\n")
	fmt.Fprintf(&b, "    + FullyQualifiedErrorId : %s\n", e.ID)
	return b.String()
}

// position returns the 1-based line and column (in characters) of offset
// and the text of that line.
func position(s string, offset int) (line, col int, text string) {
	offset = min(max(offset, 0), len(s))
	start := strings.LastIndexByte(s[:offset], '\n') + 1
	end := strings.IndexByte(s[offset:], '\n')
	if end < 0 {
		end = len(s)
	} else {
		end += offset
	}
	line = strings.Count(s[:offset], "\n") + 1
	col = utf8.RuneCountInString(s[start:offset]) + 1
	return line, col, strings.TrimRight(s[start:end], "\r")
}

// isSingleQuote reports the characters PowerShell treats as single quotes.
func isSingleQuote(r rune) bool {
	return r == '\'' || r == '\u2018' || r == '\u2019' || r == '\u201a' || r == '\u201b'
}

func isDoubleQuote(r rune) bool {
	return r == '"' || r == '\u201c' || r == '\u201d' || r == '\u201e'
}

// isDash reports the characters PowerShell treats as a parameter dash.
func isDash(r rune) bool { return r == '-' || r == '\u2013' || r == '\u2014' || r == '\u2015' }

func isBareRune(r rune) bool {
	return r < utf8.RuneSelf && (r == '_' || r == '.' || r == '-' || r == '\\' || r == '/' ||
		('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9'))
}

type parser struct {
	src string
	pos int
}

// ParseScript parses a script of the subset described above. The error,
// if any, is a *ParseError.
func ParseScript(src string) (*Script, error) {
	p := &parser{src: src}
	s, err := p.script()
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (p *parser) errAt(off int, id, format string, a ...any) *ParseError {
	return &ParseError{Script: p.src, Offset: off, ID: id, Msg: fmt.Sprintf(format, a...)}
}

func (p *parser) peek() (rune, int) {
	if p.pos >= len(p.src) {
		return 0, 0
	}
	r, n := utf8.DecodeRuneInString(p.src[p.pos:])
	return r, n
}

// skipSpace skips blanks (not newlines, which separate statements).
func (p *parser) skipSpace() {
	for {
		r, n := p.peek()
		if n == 0 || r == '\n' || !(r == ' ' || r == '\t' || r == '\r' || r == '\u00a0' || r == '\f' || r == '\v') {
			return
		}
		p.pos += n
	}
}

// skipSeparators skips blanks, newlines and ';' and reports whether any
// separator (newline or ';') was seen.
func (p *parser) skipSeparators() bool {
	seen := false
	for {
		p.skipSpace()
		r, n := p.peek()
		if n == 0 || (r != '\n' && r != ';') {
			return seen
		}
		seen = true
		p.pos += n
	}
}

func (p *parser) script() (*Script, error) {
	s := &Script{}
	p.skipSeparators()
	for p.pos < len(p.src) {
		st, err := p.statement()
		if err != nil {
			return nil, err
		}
		s.Statements = append(s.Statements, st)
		if !p.skipSeparators() && p.pos < len(p.src) {
			return nil, p.unexpected()
		}
	}
	return s, nil
}

func (p *parser) statement() (Statement, error) {
	p.skipSpace()
	start := p.pos
	r, _ := p.peek()
	if r == '$' {
		name, ok := p.variableName()
		if ok && !isConstantVariable(name) {
			p.skipSpace()
			if r, _ := p.peek(); r != '=' {
				return Statement{}, p.errAt(start, "NotEmulated", "The variable '$%s' is not emulated by the chatdr Management Shell simulator: only an assignment to $ErrorActionPreference is.", name)
			}
			p.pos++
			p.skipSpace()
			v, err := p.value()
			if err != nil {
				return Statement{}, err
			}
			return Statement{Assign: &Assignment{Var: name, Value: v}, Pos: start}, nil
		}
		p.pos = start
	}
	var pipe []Command
	for {
		cmd, err := p.command()
		if err != nil {
			return Statement{}, err
		}
		pipe = append(pipe, cmd)
		p.skipSpace()
		if r, _ := p.peek(); r != '|' {
			break
		}
		bar := p.pos
		p.pos++
		p.skipSpace()
		if r, n := p.peek(); n == 0 || r == '\n' || r == ';' || r == '|' {
			return Statement{}, p.errAt(bar, "EmptyPipeElement", "An empty pipe element is not allowed.")
		}
	}
	return Statement{Pipeline: pipe, Pos: start}, nil
}

// variableName reads $name (letters, digits, '_') after the '$'.
func (p *parser) variableName() (string, bool) {
	start := p.pos
	p.pos++ // '$'
	for {
		r, n := p.peek()
		if n == 0 || !(r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			break
		}
		p.pos += n
	}
	if p.pos == start+1 {
		p.pos = start
		return "", false
	}
	return p.src[start+1 : p.pos], true
}

func isConstantVariable(name string) bool {
	switch strings.ToLower(name) {
	case "null", "true", "false":
		return true
	}
	return false
}

func (p *parser) command() (Command, error) {
	p.skipSpace()
	start := p.pos
	r, _ := p.peek()
	if !(r < utf8.RuneSelf && (unicode.IsLetter(r) || r == '_')) {
		return Command{}, p.unexpected()
	}
	name := p.bareword()
	cmd := Command{Name: name, Pos: start}
	for {
		p.skipSpace()
		r, n := p.peek()
		if n == 0 || r == '\n' || r == ';' || r == '|' {
			return cmd, nil
		}
		el, err := p.element()
		if err != nil {
			return Command{}, err
		}
		cmd.Elements = append(cmd.Elements, el)
	}
}

func (p *parser) bareword() string {
	start := p.pos
	for {
		r, n := p.peek()
		if n == 0 || !isBareRune(r) {
			break
		}
		p.pos += n
	}
	return p.src[start:p.pos]
}

func (p *parser) element() (Element, error) {
	start := p.pos
	r, n := p.peek()
	if isDash(r) {
		if r != '-' {
			return Element{}, p.errAt(start, "NotEmulated", "The typographic dash %q is not emulated by the chatdr Management Shell simulator; use '-'.", r)
		}
		next, _ := utf8.DecodeRuneInString(p.src[p.pos+n:])
		if next < utf8.RuneSelf && unicode.IsLetter(next) {
			p.pos += n
			nameStart := p.pos
			for {
				r, n := p.peek()
				if n == 0 || !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_')) {
					break
				}
				p.pos += n
			}
			el := Element{Param: p.src[nameStart:p.pos], Pos: start}
			if r, _ := p.peek(); r == ':' {
				p.pos++
				el.Colon = true
				if r, n := p.peek(); n == 0 || r == ' ' || r == '\t' || r == '\n' || r == ';' || r == '|' {
					return Element{}, p.errAt(p.pos, "MissingArgument", "Missing an argument for parameter '%s'.", el.Param)
				}
				v, err := p.value()
				if err != nil {
					return Element{}, err
				}
				el.Value = &v
			} else if r, n := p.peek(); n > 0 && !(r == ' ' || r == '\t' || r == '\r' || r == '\n' || r == ';' || r == '|') {
				return Element{}, p.unexpected()
			}
			return el, nil
		}
	}
	v, err := p.value()
	if err != nil {
		return Element{}, err
	}
	return Element{Value: &v, Pos: start}, nil
}

// value parses primary (',' primary)*.
func (p *parser) value() (Value, error) {
	first, err := p.primary()
	if err != nil {
		return Value{}, err
	}
	p.skipSpace()
	if r, _ := p.peek(); r != ',' {
		return first, nil
	}
	list := Value{Kind: VList, List: []Value{first}, Pos: first.Pos}
	for {
		p.skipSpace()
		if r, _ := p.peek(); r != ',' {
			return list, nil
		}
		comma := p.pos
		p.pos++
		p.skipSpace()
		if r, n := p.peek(); n == 0 || r == '\n' || r == ';' || r == '|' {
			return Value{}, p.errAt(comma, "MissingExpressionAfterToken", "Missing expression after ','.")
		}
		v, err := p.primary()
		if err != nil {
			return Value{}, err
		}
		if v.Kind == VList {
			return Value{}, p.errAt(v.Pos, "NotEmulated", "Nested lists are not emulated by the chatdr Management Shell simulator.")
		}
		list.List = append(list.List, v)
	}
}

func (p *parser) primary() (Value, error) {
	start := p.pos
	r, n := p.peek()
	switch {
	case n == 0:
		return Value{}, p.errAt(start, "MissingExpression", "Missing expression.")
	case isSingleQuote(r):
		return p.singleQuoted()
	case isDoubleQuote(r):
		return Value{}, p.errAt(start, "NotEmulated", "Double-quoted (expandable) strings are not emulated by the chatdr Management Shell simulator; use single quotes.")
	case r == '$':
		if strings.HasPrefix(p.src[p.pos:], "$(") {
			return Value{}, p.errAt(start, "NotEmulated", "Subexpressions $( ) are not emulated by the chatdr Management Shell simulator.")
		}
		name, ok := p.variableName()
		if !ok {
			return Value{}, p.unexpected()
		}
		switch strings.ToLower(name) {
		case "null":
			return Value{Kind: VNull, Pos: start}, nil
		case "true":
			return Value{Kind: VBool, Bool: true, Pos: start}, nil
		case "false":
			return Value{Kind: VBool, Bool: false, Pos: start}, nil
		}
		return Value{}, p.errAt(start, "NotEmulated", "The variable '$%s' is not emulated by the chatdr Management Shell simulator.", name)
	case r == '@':
		if !strings.HasPrefix(p.src[p.pos:], "@{") {
			return Value{}, p.unexpected()
		}
		return p.hashtable()
	case isBareRune(r) && r != '-' && r != '\\' && r != '/' && r != '.':
		word := p.bareword()
		if r, n := p.peek(); n > 0 && !(r == ' ' || r == '\t' || r == '\r' || r == '\n' || r == ';' || r == '|' || r == ',' || r == '}') {
			return Value{}, p.unexpected()
		}
		if isDigits(word) {
			i, err := strconv.ParseInt(word, 10, 64)
			if err != nil {
				return Value{}, p.errAt(start, "NotEmulated", "The number %s is out of range.", word)
			}
			return Value{Kind: VInt, Int: i, Pos: start}, nil
		}
		return Value{Kind: VBare, Str: word, Pos: start}, nil
	}
	return Value{}, p.unexpected()
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// singleQuoted reads a verbatim string: any single-quote character ends it
// unless another single-quote character follows, which stands for the
// first one.
func (p *parser) singleQuoted() (Value, error) {
	start := p.pos
	_, n := p.peek()
	p.pos += n
	var b strings.Builder
	for {
		r, n := p.peek()
		if n == 0 {
			return Value{}, p.errAt(start, "TerminatorExpectedAtEndOfString", "The string is missing the terminator: '.")
		}
		p.pos += n
		if r == utf8.RuneError && n == 1 {
			return Value{}, p.errAt(p.pos-1, "InvalidEncoding", "The script is not valid UTF-8.")
		}
		if isSingleQuote(r) {
			if next, m := p.peek(); m > 0 && isSingleQuote(next) {
				b.WriteRune(r)
				p.pos += m
				continue
			}
			return Value{Kind: VString, Str: b.String(), Pos: start}, nil
		}
		b.WriteRune(r)
	}
}

func (p *parser) hashtable() (Value, error) {
	start := p.pos
	p.pos += 2 // "@{"
	h := Value{Kind: VHash, Hash: []HashEntry{}, Pos: start}
	for {
		p.skipSeparators()
		r, n := p.peek()
		if n == 0 {
			return Value{}, p.errAt(start, "MissingEndCurlyBrace", "Missing closing '}' in statement block or type definition.")
		}
		if r == '}' {
			p.pos++
			return h, nil
		}
		keyPos := p.pos
		var key string
		switch {
		case isSingleQuote(r):
			v, err := p.singleQuoted()
			if err != nil {
				return Value{}, err
			}
			key = v.Str
		case r < utf8.RuneSelf && (unicode.IsLetter(r) || r == '_'):
			key = p.bareword()
		default:
			return Value{}, p.errAt(keyPos, "MissingHashKey", "Missing key before '=' in hash literal.")
		}
		p.skipSpace()
		if r, _ := p.peek(); r != '=' {
			return Value{}, p.errAt(p.pos, "MissingEqualsInHashLiteral", "Missing '=' operator after key in hash literal.")
		}
		p.pos++
		p.skipSpace()
		v, err := p.value()
		if err != nil {
			return Value{}, err
		}
		h.Hash = append(h.Hash, HashEntry{Key: key, Value: v})
		p.skipSpace()
		if r, n := p.peek(); n == 0 {
			return Value{}, p.errAt(start, "MissingEndCurlyBrace", "Missing closing '}' in statement block or type definition.")
		} else if r != ';' && r != '\n' && r != '}' {
			return Value{}, p.unexpected()
		}
	}
}

// unexpected reports the token at the current position.
func (p *parser) unexpected() *ParseError {
	r, n := p.peek()
	if n == 0 {
		return p.errAt(p.pos, "IncompleteParseException", "Incomplete statement.")
	}
	tok := string(r)
	if r == '$' && strings.HasPrefix(p.src[p.pos:], "$(") {
		tok = "$("
	}
	switch r {
	case '`':
		return p.errAt(p.pos, "NotEmulated", "The escape character '`' is not emulated by the chatdr Management Shell simulator.")
	case '#':
		return p.errAt(p.pos, "NotEmulated", "Comments are not emulated by the chatdr Management Shell simulator.")
	}
	return p.errAt(p.pos, "UnexpectedToken", "Unexpected token '%s' in expression or statement.", tok)
}
