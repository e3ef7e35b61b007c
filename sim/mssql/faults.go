package mssql

import (
	"context"
	"regexp"
	"sync"
	"time"

	"github.com/chatdr/chatdr/sim/mssql/tds"
)

// Fault is an injected failure for tests and the lab (off unless injected):
// requests whose SQL text (or procedure name, for RPCs by name) matches
// Match wait Delay, then fail with Err, or run normally when Err is nil.
type Fault struct {
	// Match selects requests; nil matches every request.
	Match *regexp.Regexp
	// Delay is waited before the request runs or fails; an attention
	// (cancel) ends the wait.
	Delay time.Duration
	// Err is returned instead of running the request, e.g. a *tds.Error
	// or errors.Join of several; nil runs the request after Delay.
	Err error
	// Count is how many matching requests the fault applies to; 0 means 1,
	// a negative value means until removed.
	Count int
}

// faults holds the injected faults.
type faults struct {
	mu   sync.Mutex
	list []*activeFault
}

type activeFault struct {
	f    Fault
	left int
}

// InjectFault adds a fault and returns a function that removes it.
func (in *Instance) InjectFault(f Fault) (remove func()) {
	af := &activeFault{f: f, left: f.Count}
	if af.left == 0 {
		af.left = 1
	}
	in.faults.mu.Lock()
	in.faults.list = append(in.faults.list, af)
	in.faults.mu.Unlock()
	return func() {
		in.faults.mu.Lock()
		defer in.faults.mu.Unlock()
		for i, x := range in.faults.list {
			if x == af {
				in.faults.list = append(in.faults.list[:i], in.faults.list[i+1:]...)
				return
			}
		}
	}
}

// DropConnections closes every client connection of the servers started by
// Serve (a network failure), returning how many were closed.
func (in *Instance) DropConnections() int {
	in.mu.Lock()
	srvs := append([]*tds.Server(nil), in.srvs...)
	in.mu.Unlock()
	n := 0
	for _, s := range srvs {
		n += s.DropConnections()
	}
	return n
}

// applyFault runs the first fault matching text: it waits its delay and
// returns its error (nil to go on).
func (in *Instance) applyFault(ctx context.Context, text string) error {
	in.faults.mu.Lock()
	var hit *activeFault
	for i, af := range in.faults.list {
		if af.f.Match == nil || af.f.Match.MatchString(text) {
			hit = af
			if af.left > 0 {
				af.left--
				if af.left == 0 {
					in.faults.list = append(in.faults.list[:i], in.faults.list[i+1:]...)
				}
			}
			break
		}
	}
	in.faults.mu.Unlock()
	if hit == nil {
		return nil
	}
	if hit.f.Delay > 0 {
		t := time.NewTimer(hit.f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return hit.f.Err
}
