package controller

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/store"
	"github.com/chatdr/chatdr/internal/pki"
)

func TestParseCrashPoint(t *testing.T) {
	for _, v := range []string{"step-done:1", "attempt:12", " step-done:3 "} {
		_, err := parseCrashPoint(v)
		require.NoError(t, err, v)
	}
	for _, v := range []string{"step-done", "step-done:0", "attempt:-1", "boom:1", "attempt:x", ""} {
		_, err := parseCrashPoint(v)
		require.ErrorContains(t, err, CrashEnv, v)
	}
}

// The hooks call kill exactly at the Nth durable event, never before and
// only once.
func TestInstallCrashHooks(t *testing.T) {
	newRun := func(t *testing.T, st *store.Store) string {
		step := func(id string) plan.Step {
			return plan.Step{ID: id, Host: "sql1.dc2.example", Action: "mssql.db.state", Params: map[string]any{"database": "mgc"},
				Timeout: time.Minute, Retry: plan.Retry{MaxAttempts: 1}, Reason: "test"}
		}
		p := &plan.Plan{Kind: plan.FailoverPlanned, Pool: "pool.example", Groups: []plan.Group{{Name: "g", Steps: []plan.Step{step("A"), step("B"), step("C")}}}}
		r, err := st.CreateRun(store.NewRun{Plan: p, Actor: store.Actor{Name: "op", Role: pki.RoleOperator}, Reason: "test"})
		require.NoError(t, err)
		_, err = st.FireRun(r.ID, store.ControllerActor(), engine.RunStart, engine.RunInput{})
		require.NoError(t, err)
		return r.ID
	}
	for _, tt := range []struct {
		env   string
		kills []int // after which step (0-based) a kill was seen, per step
	}{
		{"step-done:2", []int{0, 1, 1}},
		{"attempt:1", []int{1, 1, 1}},
		{"attempt:3", []int{0, 0, 1}},
	} {
		t.Run(tt.env, func(t *testing.T) {
			t.Setenv(CrashEnv, tt.env)
			st, err := store.Open(t.TempDir(), time.Second)
			require.NoError(t, err)
			defer st.Close()
			kills := 0
			require.NoError(t, installCrashHooks(st, slog.New(slog.DiscardHandler), func() { kills++ }))
			id := newRun(t, st)
			var seen []int
			for _, s := range []string{"A", "B", "C"} {
				key, err := st.BeginAttempt(id, s)
				require.NoError(t, err)
				_, err = st.FireStep(id, s, store.ControllerActor(), engine.StepAttemptSucceeded, engine.StepInput{Key: key, Output: []byte("{}")})
				require.NoError(t, err)
				seen = append(seen, kills)
			}
			require.Equal(t, tt.kills, seen)
		})
	}
	t.Setenv(CrashEnv, "nonsense")
	st, err := store.Open(t.TempDir(), time.Second)
	require.NoError(t, err)
	defer st.Close()
	require.ErrorContains(t, installCrashHooks(st, slog.New(slog.DiscardHandler), func() {}), "step-done:N")
}
