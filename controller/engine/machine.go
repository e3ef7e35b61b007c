// Package engine holds the run and step state machines of chatdr's
// controller (design.md §5, conventions.md "State machines"): explicit
// transition tables whose transitions are small values (event, allowed
// source states, destination, apply function). Firing an event that the
// table does not allow from the current state, or whose apply function
// refuses the input, fails with an error wrapping ErrInvalidTransition and
// leaves the data unchanged.
//
// Everything here is pure: no I/O, no clock (callers pass the time in the
// input), no package-level mutable state. controller/store persists the
// data these machines produce, one bbolt transaction per transition; the
// runner (which calls agents) drives them.
package engine

import (
	"errors"
	"fmt"
	"slices"
)

// ErrInvalidTransition is the sentinel wrapped by every refused transition
// (an event not allowed in the current state, or an input the transition's
// apply function rejects). Test with errors.Is; errors.As with
// *TransitionError gives the machine, state and event.
var ErrInvalidTransition = errors.New("invalid transition")

// TransitionError describes a refused transition. It matches
// ErrInvalidTransition with errors.Is. Cause, when set, is why the apply
// function refused the input; nil means the table has no transition for
// (State, Event).
type TransitionError struct {
	// Machine is "run" or "step" (with the step's ID when known).
	Machine string
	// State is the state the data was in.
	State string
	// Event is the event that was refused.
	Event string
	// Cause is the apply function's reason, nil for a missing transition.
	Cause error
}

// Error implements error.
func (e *TransitionError) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: event %q refused in state %q: %v", e.Machine, e.Event, e.State, e.Cause)
	}
	return fmt.Sprintf("%s: event %q is not allowed in state %q: %v", e.Machine, e.Event, e.State, ErrInvalidTransition)
}

// Is makes errors.Is(err, ErrInvalidTransition) true.
func (e *TransitionError) Is(target error) bool { return target == ErrInvalidTransition }

// Unwrap returns the apply function's cause.
func (e *TransitionError) Unwrap() error { return e.Cause }

// Transition is one row of a transition table: when Event fires in one of
// Sources, Apply validates the input and fills the data (working on a
// copy), then the state becomes Destination. A Transition is an immutable
// value; Apply must be pure.
type Transition[S ~string, E ~string, D any, I any] struct {
	// Event names the transition.
	Event E
	// Sources are the states it may fire from.
	Sources []S
	// Destination is the state after it.
	Destination S
	// Apply validates the input and updates the data (except its state);
	// nil means nothing to do. An error refuses the transition.
	Apply func(d *D, in I) error
}

// machine is a transition table plus accessors for the state held in D.
type machine[S ~string, E ~string, D any, I any] struct {
	name        string
	transitions []Transition[S, E, D, I]
	state       func(*D) S
	setState    func(*D, S)
	clone       func(D) D
}

// find returns the transition for (s, e), if any.
func (m *machine[S, E, D, I]) find(s S, e E) (Transition[S, E, D, I], bool) {
	for _, t := range m.transitions {
		if t.Event == e && slices.Contains(t.Sources, s) {
			return t, true
		}
	}
	return Transition[S, E, D, I]{}, false
}

// fire applies e to d atomically: on error d is left untouched.
func (m *machine[S, E, D, I]) fire(name string, d *D, e E, in I) error {
	s := m.state(d)
	t, ok := m.find(s, e)
	if !ok {
		return &TransitionError{Machine: name, State: string(s), Event: string(e)}
	}
	next := m.clone(*d)
	if t.Apply != nil {
		if err := t.Apply(&next, in); err != nil {
			return &TransitionError{Machine: name, State: string(s), Event: string(e), Cause: err}
		}
	}
	m.setState(&next, t.Destination)
	*d = next
	return nil
}

// table returns a deep-enough copy of the transitions for inspection.
func (m *machine[S, E, D, I]) table() []Transition[S, E, D, I] {
	out := make([]Transition[S, E, D, I], len(m.transitions))
	for i, t := range m.transitions {
		t.Sources = slices.Clone(t.Sources)
		out[i] = t
	}
	return out
}
