package journal_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chatdr/chatdr/agent/journal"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

func TestJournal_BeginFinishGet(t *testing.T) {
	dir := t.TempDir()
	j, n, err := journal.Open(dir)
	require.NoError(t, err)
	require.Zero(t, n)

	rec, created, err := j.Begin(journal.Record{Key: "r1/s1/1", Action: "mssql.db.recover", Digest: "d1", StartedAt: time.Now()})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_RUNNING, rec.State)

	// The same key again: not created, the running record comes back.
	again, created, err := j.Begin(journal.Record{Key: "r1/s1/1", Action: "other", Digest: "d2"})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, "mssql.db.recover", again.Action)
	require.Equal(t, "d1", again.Digest)

	out, _ := structpb.NewStruct(map[string]any{"state": "ONLINE"})
	res := &agentv1.ExecutionResult{State: agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, Output: out, EndedAt: timestamppb.Now()}
	require.NoError(t, j.Finish("r1/s1/1", res))
	got, ok, err := j.Get("r1/s1/1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, got.State)
	require.True(t, proto.Equal(res, got.Result))

	_, ok, err = j.Get("never")
	require.NoError(t, err)
	require.False(t, ok)
	require.Error(t, j.Finish("never", res))
	require.NoError(t, j.Close())
}

func TestJournal_Open_interruptsRunning(t *testing.T) {
	dir := t.TempDir()
	j, _, err := journal.Open(dir)
	require.NoError(t, err)
	_, _, err = j.Begin(journal.Record{Key: "k-running", Action: "mssql.ls.restore_pending", StartedAt: time.Now()})
	require.NoError(t, err)
	_, _, err = j.Begin(journal.Record{Key: "k-done", Action: "agent.noop", StartedAt: time.Now()})
	require.NoError(t, err)
	require.NoError(t, j.Finish("k-done", &agentv1.ExecutionResult{State: agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, EndedAt: timestamppb.Now()}))

	// A second agent on the same state directory is refused while the first holds it.
	_, _, err = journal.Open(dir)
	require.ErrorIs(t, err, journal.ErrLocked)
	require.NoError(t, j.Close())

	// Reopened as after a crash: the running execution is interrupted, the ended one kept.
	j, n, err := journal.Open(dir)
	require.NoError(t, err)
	defer j.Close()
	require.Equal(t, 1, n)
	r, ok, err := j.Get("k-running")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_INTERRUPTED, r.State)
	require.Equal(t, "interrupted", r.Result.GetError().GetCode())
	require.Contains(t, r.Result.GetError().GetMessage(), "mssql.ls.restore_pending")
	d, _, err := j.Get("k-done")
	require.NoError(t, err)
	require.Equal(t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, d.State)

	// A key interrupted once stays interrupted: Begin does not rerun it.
	_, created, err := j.Begin(journal.Record{Key: "k-running", Action: "mssql.ls.restore_pending"})
	require.NoError(t, err)
	require.False(t, created)
}

func TestJournal_Prune(t *testing.T) {
	j, _, err := journal.Open(t.TempDir())
	require.NoError(t, err)
	defer j.Close()
	old := time.Now().Add(-48 * time.Hour)
	for _, k := range []string{"old", "new", "running"} {
		_, _, err := j.Begin(journal.Record{Key: k, Action: "agent.noop", StartedAt: old})
		require.NoError(t, err)
	}
	require.NoError(t, j.Finish("old", &agentv1.ExecutionResult{State: agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, EndedAt: timestamppb.New(old)}))
	require.NoError(t, j.Finish("new", &agentv1.ExecutionResult{State: agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, EndedAt: timestamppb.Now()}))
	n, err := j.Prune(time.Now().Add(-24 * time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	all, err := j.All()
	require.NoError(t, err)
	var keys []string
	for _, r := range all {
		keys = append(keys, r.Key)
	}
	require.Equal(t, []string{"new", "running"}, keys)
}
