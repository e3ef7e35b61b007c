package mssql

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// tokKind classifies lexer tokens.
type tokKind int

const (
	tEOF    tokKind = iota
	tIdent          // identifier or keyword; quoted identifiers have Quoted set
	tNumber         // integer or decimal literal
	tString         // '...' or N'...'
	tVar            // @name or @@name
	tOp             // punctuation and operators
	tBinary         // 0x... literal
)

// token is one lexical token. Text is the identifier or string value after
// unquoting; Raw is the source text, used in error messages.
type token struct {
	Kind    tokKind
	Text    string
	Raw     string
	Quoted  bool // [ident] or "ident"
	Unicode bool // N'...'
	Line    int
	Pos     int
}

// reserved holds the T-SQL reserved keywords this engine knows. A reserved
// keyword met where it does not belong gives error 156 rather than 102.
var reserved = map[string]bool{
	"ADD": true, "ALL": true, "ALTER": true, "AND": true, "ANY": true, "AS": true, "ASC": true,
	"BACKUP": true, "BEGIN": true, "BETWEEN": true, "BY": true, "CASE": true, "CHECK": true,
	"CLUSTERED": true, "COLUMN": true, "COMMIT": true, "CONSTRAINT": true, "CREATE": true,
	"CROSS": true, "CURRENT": true, "DATABASE": true, "DECLARE": true, "DEFAULT": true,
	"DELETE": true, "DESC": true, "DISK": true, "DISTINCT": true, "DROP": true, "ELSE": true,
	"END": true, "EXEC": true, "EXECUTE": true, "EXISTS": true, "FROM": true, "FULL": true,
	"GOTO": true, "GRANT": true, "GROUP": true, "HAVING": true, "IDENTITY": true, "IF": true,
	"IN": true, "INDEX": true, "INNER": true, "INSERT": true, "INTO": true, "IS": true,
	"JOIN": true, "KEY": true, "KILL": true, "LEFT": true, "LIKE": true, "NOCHECK": true,
	"NONCLUSTERED": true, "NOT": true, "NULL": true, "OF": true, "OFF": true, "ON": true,
	"OR": true, "ORDER": true, "OUTER": true, "PRIMARY": true, "PRINT": true, "PROC": true,
	"PROCEDURE": true, "RESTORE": true, "RETURN": true, "RIGHT": true, "ROLLBACK": true,
	"SELECT": true, "SET": true, "TABLE": true, "THEN": true, "TO": true, "TOP": true,
	"TRAN": true, "TRANSACTION": true, "UNION": true, "UNIQUE": true, "UPDATE": true,
	"USE": true, "VALUES": true, "WHEN": true, "WHERE": true, "WHILE": true, "WITH": true,
	"OUTPUT": false, // OUTPUT is not reserved in T-SQL
}

// lexError is returned for an unterminated string, identifier or comment.
type lexError struct {
	near string
	line int
}

// lex splits a batch into tokens.
func lex(src string) ([]token, *lexError) {
	var toks []token
	line := 1
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
			continue
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case c == '-' && i+1 < len(src) && src[i+1] == '-':
			for i < len(src) && src[i] != '\n' {
				i++
			}
			continue
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			// Block comments nest in T-SQL.
			depth := 0
			start := i
			for i < len(src) {
				if strings.HasPrefix(src[i:], "/*") {
					depth++
					i += 2
					continue
				}
				if strings.HasPrefix(src[i:], "*/") {
					depth--
					i += 2
					if depth == 0 {
						break
					}
					continue
				}
				if src[i] == '\n' {
					line++
				}
				i++
			}
			if depth != 0 {
				return nil, &lexError{near: clipText(src[start:]), line: line}
			}
			continue
		}
		start := i
		tok := token{Line: line, Pos: start}
		switch {
		case (c == 'N' || c == 'n') && i+1 < len(src) && src[i+1] == '\'':
			s, n, nl, ok := scanQuoted(src[i+1:], '\'', '\'')
			if !ok {
				return nil, &lexError{near: clipText(src[i:]), line: line}
			}
			line += nl
			i += 1 + n
			tok.Kind, tok.Text, tok.Unicode = tString, s, true
		case c == '\'':
			s, n, nl, ok := scanQuoted(src[i:], '\'', '\'')
			if !ok {
				return nil, &lexError{near: clipText(src[i:]), line: line}
			}
			line += nl
			i += n
			tok.Kind, tok.Text = tString, s
		case c == '[':
			s, n, nl, ok := scanQuoted(src[i:], '[', ']')
			if !ok {
				return nil, &lexError{near: clipText(src[i:]), line: line}
			}
			line += nl
			i += n
			tok.Kind, tok.Text, tok.Quoted = tIdent, s, true
		case c == '"':
			s, n, nl, ok := scanQuoted(src[i:], '"', '"')
			if !ok {
				return nil, &lexError{near: clipText(src[i:]), line: line}
			}
			line += nl
			i += n
			tok.Kind, tok.Text, tok.Quoted = tIdent, s, true
		case c == '0' && i+1 < len(src) && (src[i+1] == 'x' || src[i+1] == 'X'):
			i += 2
			for i < len(src) && isHex(src[i]) {
				i++
			}
			tok.Kind, tok.Text = tBinary, src[start+2:i]
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9':
			for i < len(src) && (src[i] >= '0' && src[i] <= '9' || src[i] == '.') {
				i++
			}
			if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
				j := i + 1
				if j < len(src) && (src[j] == '+' || src[j] == '-') {
					j++
				}
				if j < len(src) && src[j] >= '0' && src[j] <= '9' {
					i = j
					for i < len(src) && src[i] >= '0' && src[i] <= '9' {
						i++
					}
				}
			}
			tok.Kind, tok.Text = tNumber, src[start:i]
		case c == '@':
			i++
			if i < len(src) && src[i] == '@' {
				i++
			}
			for i < len(src) {
				r, n := utf8.DecodeRuneInString(src[i:])
				if !isIdentRune(r) {
					break
				}
				i += n
			}
			tok.Kind, tok.Text = tVar, src[start:i]
		default:
			r, n := utf8.DecodeRuneInString(src[i:])
			if isIdentStart(r) {
				i += n
				for i < len(src) {
					r, n := utf8.DecodeRuneInString(src[i:])
					if !isIdentRune(r) {
						break
					}
					i += n
				}
				tok.Kind, tok.Text = tIdent, src[start:i]
				break
			}
			tok.Kind = tOp
			for _, op := range []string{"<>", "!=", "<=", ">=", "!<", "!>", "+=", "-="} {
				if strings.HasPrefix(src[i:], op) {
					tok.Text = op
					i += len(op)
					break
				}
			}
			if tok.Text == "" {
				tok.Text = string(r)
				i += n
			}
		}
		tok.Raw = src[start:i]
		toks = append(toks, tok)
	}
	toks = append(toks, token{Kind: tEOF, Line: line, Pos: len(src)})
	return toks, nil
}

// scanQuoted reads a quoted run starting at s[0]==open and ending at close,
// where a doubled close stands for itself. It returns the content, the bytes
// consumed, the newlines crossed and whether it was terminated.
func scanQuoted(s string, open, close byte) (string, int, int, bool) {
	var b strings.Builder
	nl := 0
	for i := 1; i < len(s); i++ {
		if s[i] == close {
			if i+1 < len(s) && s[i+1] == close {
				b.WriteByte(close)
				i++
				continue
			}
			return b.String(), i + 1, nl, true
		}
		if s[i] == '\n' {
			nl++
		}
		b.WriteByte(s[i])
	}
	return "", 0, 0, false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isIdentStart(r rune) bool {
	return r == '_' || r == '#' || unicode.IsLetter(r)
}

func isIdentRune(r rune) bool {
	return r == '_' || r == '#' || r == '@' || r == '$' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

func clipText(s string) string {
	if len(s) > 40 {
		s = s[:40]
	}
	return s
}
