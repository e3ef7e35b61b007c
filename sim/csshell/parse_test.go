package csshell

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

const prelude = "$ErrorActionPreference='Stop'; Import-Module 'SkypeForBusiness'; "

func TestParseScript_accepted(t *testing.T) {
	tests := []struct {
		name string
		src  string
		// check inspects the last statement's first command.
		check func(t *testing.T, cmd Command)
	}{
		{"plugin form", prelude + "Get-CsPersistentChatState -Identity 'service:pchat01.contoso.com' -LocalStore | ConvertTo-Json -Depth 5 -Compress",
			func(t *testing.T, cmd Command) {
				require.Equal(t, "Get-CsPersistentChatState", cmd.Name)
				require.Len(t, cmd.Elements, 3)
				require.Equal(t, "Identity", cmd.Elements[0].Param)
				require.Equal(t, "service:pchat01.contoso.com", cmd.Elements[1].Value.Str)
				require.Equal(t, "LocalStore", cmd.Elements[2].Param)
			}},
		{"colon switch", "Set-CsPersistentChatState -Identity 'x' -PoolState 'FailedOver' -Confirm:$false",
			func(t *testing.T, cmd Command) {
				el := cmd.Elements[4]
				require.Equal(t, "Confirm", el.Param)
				require.True(t, el.Colon)
				require.Equal(t, VBool, el.Value.Kind)
				require.False(t, el.Value.Bool)
			}},
		{"hashtable add and remove", "Set-CsPersistentChatActiveServer -Identity 'global' -ActiveServers @{Add='a.b','c.d'; Remove='e.f'}",
			func(t *testing.T, cmd Command) {
				v := cmd.Elements[3].Value
				require.Equal(t, VHash, v.Kind)
				require.Len(t, v.Hash, 2)
				require.Equal(t, "Add", v.Hash[0].Key)
				require.Equal(t, VList, v.Hash[0].Value.Kind)
				require.Equal(t, "c.d", v.Hash[0].Value.List[1].Str)
				require.Equal(t, "e.f", v.Hash[1].Value.Str)
			}},
		{"hashtable with spaces and newlines", "Set-X -A @{\n  Add = 'a'\n  Remove = 'b'\n}",
			func(t *testing.T, cmd Command) { require.Len(t, cmd.Elements[1].Value.Hash, 2) }},
		{"null", "Set-X -ActiveServers $null", func(t *testing.T, cmd Command) { require.Equal(t, VNull, cmd.Elements[1].Value.Kind) }},
		{"doubled quote", "Get-X 'it''s'", func(t *testing.T, cmd Command) { require.Equal(t, "it's", cmd.Elements[0].Value.Str) }},
		{"typographic quotes", "Get-X \u2018a\u2019\u2019b\u2019", func(t *testing.T, cmd Command) { require.Equal(t, "a\u2019b", cmd.Elements[0].Value.Str) }},
		{"empty string", "Get-X ''", func(t *testing.T, cmd Command) { require.Equal(t, "", cmd.Elements[0].Value.Str) }},
		{"injection stays a literal", "Get-X -Identity 'a''; Remove-Item C:\\ -Recurse; $(whoami) `n [x]'",
			func(t *testing.T, cmd Command) {
				require.Len(t, cmd.Elements, 2)
				require.Equal(t, "a'; Remove-Item C:\\ -Recurse; $(whoami) `n [x]", cmd.Elements[1].Value.Str)
			}},
		{"newline inside a literal", "Get-X 'a\nb'", func(t *testing.T, cmd Command) { require.Equal(t, "a\nb", cmd.Elements[0].Value.Str) }},
		{"bare words and numbers", "Import-Module SkypeForBusiness; ConvertTo-Json -Depth 5",
			func(t *testing.T, cmd Command) { require.Equal(t, int64(5), cmd.Elements[1].Value.Int) }},
		{"newline separators", "$ErrorActionPreference = 'Stop'\r\nImport-Module Lync\nGet-CsService -PersistentChatServer",
			func(t *testing.T, cmd Command) { require.Equal(t, "Get-CsService", cmd.Name) }},
		{"trailing separator", "Get-X;", func(t *testing.T, cmd Command) { require.Equal(t, "Get-X", cmd.Name) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseScript(tt.src)
			require.NoError(t, err)
			last := s.Statements[len(s.Statements)-1]
			require.NotEmpty(t, last.Pipeline)
			tt.check(t, last.Pipeline[0])
		})
	}
}

func TestParseScript_statements(t *testing.T) {
	s, err := ParseScript(prelude + "Get-CsService -PersistentChatServer | ConvertTo-Json -Compress")
	require.NoError(t, err)
	require.Len(t, s.Statements, 3)
	require.Equal(t, "ErrorActionPreference", s.Statements[0].Assign.Var)
	require.Equal(t, "Stop", s.Statements[0].Assign.Value.Str)
	require.Equal(t, "Import-Module", s.Statements[1].Pipeline[0].Name)
	require.Len(t, s.Statements[2].Pipeline, 2)
	require.Equal(t, "ConvertTo-Json", s.Statements[2].Pipeline[1].Name)
}

func TestParseScript_rejected(t *testing.T) {
	tests := []struct {
		name, src, id string
	}{
		{"double quotes", `Get-X -Identity "service:$env:x"`, "NotEmulated"},
		{"subexpression", "Get-X -Identity $(whoami)", "NotEmulated"},
		{"variable", "Get-X -Identity $x", "NotEmulated"},
		{"variable statement", "$x", "NotEmulated"},
		{"backtick", "Get-X -Identity a`b", "NotEmulated"},
		{"backtick alone", "Get-X `\n-Identity 'a'", "NotEmulated"},
		{"unterminated", "Get-X -Identity 'abc", "TerminatorExpectedAtEndOfString"},
		{"typographic unterminated", "Get-X -Identity \u2018abc", "TerminatorExpectedAtEndOfString"},
		{"empty pipe", "Get-X |", "EmptyPipeElement"},
		{"double pipe", "Get-X || Get-Y", "EmptyPipeElement"},
		{"parentheses", "Get-X -Identity ('a')", "UnexpectedToken"},
		{"script block", "Get-X | Where-Object { $_ }", "UnexpectedToken"},
		{"comment", "Get-X # hi", "NotEmulated"},
		{"redirection", "Get-X > out.txt", "UnexpectedToken"},
		{"call operator", "& 'Get-X'", "UnexpectedToken"},
		{"array subexpression", "Get-X @('a')", "UnexpectedToken"},
		{"type literal", "[Console]::WriteLine('x')", "UnexpectedToken"},
		{"en dash", "Get-X \u2013Identity 'a'", "NotEmulated"},
		{"missing colon argument", "Get-X -Confirm:", "MissingArgument"},
		{"unclosed hashtable", "Set-X -A @{Add='a'", "MissingEndCurlyBrace"},
		{"hashtable without key", "Set-X -A @{='a'}", "MissingHashKey"},
		{"hashtable without equals", "Set-X -A @{Add 'a'}", "MissingEqualsInHashLiteral"},
		{"dangling comma", "Get-X 'a',", "MissingExpressionAfterToken"},
		{"string glued to a word", "Get-X abc'def'", "UnexpectedToken"},
		{"quote glued to a parameter", "Get-X -Identity'a'", "UnexpectedToken"},
		{"two statements without separator", "$ErrorActionPreference='Stop' Get-X", "UnexpectedToken"},
		{"invalid utf-8", "Get-X '\xff'", "InvalidEncoding"},
		{"semicolon then pipe", "Get-X; | Get-Y", "UnexpectedToken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseScript(tt.src)
			var pe *ParseError
			require.True(t, errors.As(err, &pe), "want a *ParseError, got %v", err)
			require.Equal(t, tt.id, pe.ID, pe.Error())
			msg := pe.Error()
			require.Contains(t, msg, "At line:")
			require.Contains(t, msg, "FullyQualifiedErrorId : "+tt.id)
			require.Contains(t, msg, "ParserError")
		})
	}
}

func TestParseError_Error_position(t *testing.T) {
	_, err := ParseScript("Get-X 'a'\nGet-Y ( 'b'")
	var pe *ParseError
	require.ErrorAs(t, err, &pe)
	require.True(t, strings.HasPrefix(pe.Error(), "At line:2 char:7\n+ Get-Y ( 'b'\n+       ~\nUnexpected token '(' in expression or statement.\n"), pe.Error())
}

// FuzzParseScript checks that the parser never panics, that accepted
// scripts have well-formed statements, and that its errors render.
func FuzzParseScript(f *testing.F) {
	seeds := []string{
		prelude + "Get-CsPersistentChatState -Identity 'service:pchat01.contoso.com' -LocalStore | ConvertTo-Json -Depth 5 -Compress",
		prelude + "Set-CsPersistentChatActiveServer -Identity 'global' -ActiveServers @{Add='a','b';Remove='c'} -Confirm:$false",
		"Set-X -A $null -B:$true 'x''y' 42 bare.word",
		"Get-X -Identity \u2018a\u2019\u2019b\u2019",
		"Get-X | ConvertTo-Json",
		"@{", "'", "$(", "-", "a,", "Get-X -A:", "$ErrorActionPreference", "\xff\xfe",
		"Get-X @{Add=@{Add='a'}}", "Get-X 'a',@{B='c'}",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		s, err := ParseScript(src)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if pe.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		for _, st := range s.Statements {
			if (st.Assign == nil) == (len(st.Pipeline) == 0) {
				t.Fatalf("statement is neither an assignment nor a pipeline: %+v", st)
			}
			for _, c := range st.Pipeline {
				if c.Name == "" {
					t.Fatal("command without a name")
				}
				for _, el := range c.Elements {
					if el.Param == "" && el.Value == nil {
						t.Fatal("element without a parameter or value")
					}
					if el.Value != nil && el.Value.Kind == VString && !utf8.ValidString(el.Value.Str) {
						t.Fatal("invalid UTF-8 in a string value")
					}
				}
			}
		}
	})
}
