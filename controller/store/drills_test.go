package store

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/internal/pki"
)

func TestStore_Drills_lifecycle(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, time.Second)
	require.NoError(t, err)

	list, err := s.ListDrills(0)
	require.NoError(t, err)
	require.Empty(t, list, "a store without drills lists none")
	_, err = s.GetDrill("drill-1")
	require.ErrorIs(t, err, ErrDrillNotFound)
	_, err = s.GetDrill("run-1")
	require.ErrorIs(t, err, ErrDrillNotFound)

	who := Actor{Name: "olga", Role: pki.RoleOperator}
	d1, interrupted, err := s.StartDrill(Drill{Pool: "pchat.example", StartedBy: who, Host: "sql1.dc2", Database: "mgc"})
	require.NoError(t, err)
	require.Empty(t, interrupted)
	require.Equal(t, "drill-1", d1.ID)
	require.Equal(t, DrillRunning, d1.State)

	d1.State, d1.FinishedAt, d1.Output = DrillSucceeded, time.Now().UTC(), json.RawMessage(`{"rows":3}`)
	require.NoError(t, s.SaveDrill(d1))
	got, err := s.GetDrill("drill-1")
	require.NoError(t, err)
	require.Equal(t, DrillSucceeded, got.State)
	require.JSONEq(t, `{"rows":3}`, string(got.Output))

	// A drill left running by a stopped controller is marked interrupted
	// when the next one starts.
	d2, _, err := s.StartDrill(Drill{Pool: "pchat.example", StartedBy: who})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	s, err = Open(dir, time.Second)
	require.NoError(t, err)
	defer s.Close()
	d3, interrupted, err := s.StartDrill(Drill{Pool: "pchat.example", StartedBy: who})
	require.NoError(t, err)
	require.Equal(t, []string{d2.ID}, interrupted)
	require.Equal(t, "drill-3", d3.ID)
	got, err = s.GetDrill(d2.ID)
	require.NoError(t, err)
	require.Equal(t, DrillInterrupted, got.State)
	require.False(t, got.FinishedAt.IsZero())

	list, err = s.ListDrills(0)
	require.NoError(t, err)
	require.Equal(t, []string{"drill-3", "drill-2", "drill-1"}, []string{list[0].ID, list[1].ID, list[2].ID}, "newest first")
	list, err = s.ListDrills(1)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.ErrorIs(t, s.SaveDrill(&Drill{ID: "drill-9"}), ErrDrillNotFound)
}
