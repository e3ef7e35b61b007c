package csshell

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseShellError(t *testing.T) {
	tests := []struct {
		name   string
		stderr string
		want   shellError
	}{
		{"cmdlet error", "Set-CsPersistentChatState : Cannot get \"PersistentChatState\" \"service:x\" because it does not exist.\r\n" +
			"At line:1 char:64\r\n+ ... Import-Module 'SkypeForBusiness'; Set-CsPersistentChatState -Identity ...\r\n" +
			"+                                    ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\r\n" +
			"    + CategoryInfo          : ObjectNotFound: (service:x:String) [Set-CsPersistentChatState], CmdletInvocationException\r\n" +
			"    + FullyQualifiedErrorId : IdentityNotFound,Microsoft.Rtc.Management.SetPersistentChatStateCmdlet\r\n",
			shellError{Cmdlet: "Set-CsPersistentChatState", Message: `Cannot get "PersistentChatState" "service:x" because it does not exist.`,
				Category: "ObjectNotFound: (service:x:String) [Set-CsPersistentChatState], CmdletInvocationException",
				ID:       "IdentityNotFound,Microsoft.Rtc.Management.SetPersistentChatStateCmdlet"}},
		{"wrapped message", "Install-CsMirrorDatabase : Cannot connect to SQL Server\r\n\"sql2\" at 127.0.0.1:1: refused\r\nAt line:1 char:1\r\n+ Install-CsMirrorDatabase\r\n    + CategoryInfo : ConnectionError: (:) [], X\r\n    + FullyQualifiedErrorId : SqlUnreachable,Y\r\n",
			shellError{Cmdlet: "Install-CsMirrorDatabase", Message: `Cannot connect to SQL Server "sql2" at 127.0.0.1:1: refused`, Category: "ConnectionError: (:) [], X", ID: "SqlUnreachable,Y"}},
		{"parse error", "At line:1 char:10\n+ Get-X -Id $(y)\n+          ~~\nUnexpected token '$(' in expression or statement.\n    + CategoryInfo          : ParserError: (:) [], ParentContainsErrorRecordException\n    + FullyQualifiedErrorId : UnexpectedToken\n",
			shellError{Message: "Unexpected token '$(' in expression or statement.", Category: "ParserError: (:) [], ParentContainsErrorRecordException", ID: "UnexpectedToken"}},
		{"not powershell", "powershell.exe: cannot open the console\n",
			shellError{Message: "powershell.exe: cannot open the console"}},
		{"two records, first wins", "Import-Module : first\nAt line:1 char:1\n    + FullyQualifiedErrorId : A\nGet-X : second\n    + FullyQualifiedErrorId : B\n",
			shellError{Cmdlet: "Import-Module", Message: "first", ID: "A"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, parseShellError(tt.stderr))
		})
	}
}

func TestClassify(t *testing.T) {
	pe := classify("SkypeForBusiness", "Get-X", "pc1", shellError{Message: "m", ID: "SqlUnreachable,Chatdr.Simulator.X"})
	require.Equal(t, "cs_sql_unreachable", pe.Code)
	require.True(t, pe.Retryable)
	require.Equal(t, "Get-X failed on pc1: m [SqlUnreachable,Chatdr.Simulator.X]", pe.Message)

	pe = classify("Lync", "Get-X", "pc1", shellError{Cmdlet: "Get-X", Message: "The term 'Get-X' is not recognized", ID: "CommandNotFoundException"})
	require.Equal(t, "cs_command_not_found", pe.Code)
	require.Contains(t, pe.Hint, "Lync module")

	pe = classify("Lync", "Get-X", "pc1", shellError{Message: "Unexpected token", Category: "ParserError: (:) []", ID: "UnexpectedToken"})
	require.Equal(t, "cs_script_rejected", pe.Code)
	pe = classify("Lync", "Get-X", "pc1", shellError{Message: "A parameter cannot be found", ID: "NamedParameterNotFound,Microsoft.Rtc.X"})
	require.Equal(t, "cs_parameter_rejected", pe.Code)
	pe = classify("Lync", "Set-CsPersistentChatState", "pc1", shellError{Message: "Access denied", ID: "0x80070005,Microsoft.Rtc.Management.Y"})
	require.Equal(t, "cs_cmdlet_failed", pe.Code, "unknown real-cmdlet errors keep their text under a generic code")
	require.False(t, pe.Retryable)
	require.Contains(t, pe.Message, "Access denied")
}
