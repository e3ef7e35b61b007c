package runner

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/controller/plan"
)

// An unmet expectation's hint says what to look at by what the step waits
// for, and always how to go on.
func TestExpectHint(t *testing.T) {
	for action, want := range map[string]string{
		"csshell.cs.get_state":     "Replica Replicator Agent (RTCREPLICA) on pc7.dc2.example",
		"mssql.mirror.status":      "mirroring endpoints",
		"mssql.ls.restore_pending": "copy directory",
		"mssql.db.state":           "check the host",
	} {
		h := expectHint(plan.Step{Action: action, Host: "pc7.dc2.example"})
		require.Contains(t, h, want, action)
		require.Contains(t, h, "resume the run", action)
	}
}
