package runner

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/store"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

func TestOutputWhy(t *testing.T) {
	gap := "gap in the log chain: /c/mgc_3.trn starts at LSN 30 but the database needs LSN 20 next (a log backup is missing)"
	tests := []struct {
		name string
		out  map[string]any
		want string
	}{
		{"nothing to say", map[string]any{"complete": true, "unapplied": []any{}}, ""},
		{"gap: the reason is not repeated per file", map[string]any{"complete": false, "stop_reason": gap,
			"unapplied": []any{map[string]any{"file": "mgc_3.trn", "reason": gap}, map[string]any{"file": "mgc_4.trn", "reason": gap}}},
			gap + "; unapplied: mgc_3.trn, mgc_4.trn"},
		{"unreadable file first", map[string]any{"complete": false, "stop_reason": "gap at mgc_3.trn",
			"unapplied": []any{map[string]any{"file": "mgc_3.trn", "reason": "gap at mgc_3.trn"}, map[string]any{"file": "mgc_2.trn", "reason": "unreadable: Msg 3203"}}},
			"gap at mgc_3.trn; unapplied: mgc_2.trn (unreadable: Msg 3203), mgc_3.trn"},
		{"share unreadable", map[string]any{"source_readable": false, "error": "open /share: no such file or directory"},
			"open /share: no such file or directory"},
		{"many files", map[string]any{"unapplied": []any{
			map[string]any{"file": "1"}, map[string]any{"file": "2"}, map[string]any{"file": "3"}, map[string]any{"file": "4"},
			map[string]any{"file": "5"}, map[string]any{"file": "6"}, map[string]any{"file": "7"}}},
			"unapplied: 1, 2, 3, 4, 5, and 2 more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, outputWhy(tt.out))
		})
	}
}

func TestFromResult_unmetExpectationNamesTheCause(t *testing.T) {
	s := plan.Step{ID: "F3-restore-logs-mgc", Action: "mssql.ls.restore_pending", Host: "sql1", Expect: map[string]any{"complete": true}}
	out, err := structpb.NewStruct(map[string]any{"complete": false, "stop_reason": "gap in the log chain: mgc_3.trn"})
	require.NoError(t, err)
	r := (&Runner{}).fromResult(s, &agentv1.ExecutionResult{State: agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, Output: out}, nil)
	require.NotNil(t, r.err)
	require.True(t, r.retryable)
	require.Equal(t, "expectation_unmet", r.err.Code)
	require.Contains(t, r.err.Message, "complete = false, want true; the action reports: gap in the log chain: mgc_3.trn")
}

func TestDataLossWindow_notesNameTheCause(t *testing.T) {
	f3 := `{"complete":false,"stop_reason":"gap in the log chain: mgc_3.trn","reached_backup_time":"2026-11-29T01:00:00Z","newest_backup_time":"2026-11-29T01:00:10Z",` +
		`"unapplied":[{"file":"mgc_3.trn","reason":"gap in the log chain: mgc_3.trn"}]}`
	f2 := `{"source_readable":false,"error":"open /share: no such file or directory"}`
	run := &store.Run{Steps: []store.StepRecord{
		{ID: "F2", Status: engine.StepStatus{State: engine.StepSucceeded, Output: json.RawMessage(f2)}},
		{ID: "F3", Status: engine.StepStatus{State: engine.StepSucceeded, Output: json.RawMessage(f3)}},
	}}
	w := DataLoss(run, []string{"F2", "F3"})
	require.False(t, w.Known)
	require.Contains(t, w.Why, "step F3 did not complete the restore")
	require.Contains(t, w.Why, "step F3 left 1 log backups unapplied: gap in the log chain: mgc_3.trn; unapplied: mgc_3.trn")
	require.Contains(t, w.Why, "step F2 could not read the backup share: open /share: no such file or directory")
}
