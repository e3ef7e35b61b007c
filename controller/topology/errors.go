package topology

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every error Parse and Load return for a
// file that cannot be decoded or does not validate. I/O errors from Load do
// not match it.
var ErrInvalid = errors.New("invalid topology")

// Problem is one thing wrong with a topology file.
type Problem struct {
	// File is the file name as the caller passed it to Load or Parse.
	File string
	// Line is the 1-based line of the offending value; for a missing field,
	// the line of the mapping that should hold it. 0 when unknown.
	Line int
	// Field is the path of the field in yaml names with zero-based indices,
	// e.g. "chat_servers[4].site"; empty for problems with the file as a
	// whole (syntax errors, empty file).
	Field string
	// Message says what is wrong and, where it helps, what to write instead.
	Message string
}

// String formats the problem as "<file>:<line>: <field>: <message>". The
// field part is left out when Field is empty, and the line part when Line is 0.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// ValidationError lists every problem found in a topology file, sorted by
// line, then field path. It matches ErrInvalid with errors.Is.
type ValidationError struct {
	// Problems are sorted by line, then field; never empty when returned by
	// this package.
	Problems []Problem
}

// Error returns one Problem per line, in order.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Is reports whether target is ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// sortProblems orders problems by line, then field; problems on the same line
// and field keep the order they were found in.
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Field, b.Field))
	})
}
