package engine

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/internal/pki"
)

// The cross-product tests refuse every pair of RunStates()×RunEvents() and
// StepStates()×StepEvents() that the tables do not hold; they are
// exhaustive only if the tables use nothing outside those lists.
func TestTransitions_onlyListedStatesAndEvents(t *testing.T) {
	for _, tr := range RunTransitions() {
		require.Contains(t, RunEvents(), tr.Event)
		require.Contains(t, RunStates(), tr.Destination, "event %s", tr.Event)
		for _, s := range tr.Sources {
			require.Contains(t, RunStates(), s, "event %s", tr.Event)
		}
	}
	for _, tr := range StepTransitions() {
		require.Contains(t, StepEvents(), tr.Event)
		require.Contains(t, StepStates(), tr.Destination, "event %s", tr.Event)
		for _, s := range tr.Sources {
			require.Contains(t, StepStates(), s, "event %s", tr.Event)
		}
	}
	require.Len(t, slices.Compact(slices.Sorted(slices.Values(RunStates()))), len(RunStates()), "no state listed twice")
	require.Len(t, slices.Compact(slices.Sorted(slices.Values(StepStates()))), len(StepStates()), "no state listed twice")
}

// An approval is refused, and changes nothing, in every step state but
// waiting_approval.
func TestAddApproval_refusedOutsideWaiting(t *testing.T) {
	for _, s := range StepStates() {
		if s == StepWaitingApproval {
			continue
		}
		t.Run(string(s), func(t *testing.T) {
			d := stepFixture(s)
			d.RequiredApprovers = 2
			before := stepFixture(s)
			before.RequiredApprovers = 2
			complete, err := AddApproval(&d, Approval{Approver: "carol", Role: pki.RoleApprover, Reason: "ok", Time: t0})
			require.ErrorIs(t, err, ErrNotWaitingApproval)
			require.False(t, complete)
			require.Equal(t, before, d)
		})
	}
}
