// Package e2e holds end-to-end tests that run chatdr's real binaries:
// agents as processes with their plugins as processes, talking to the
// simulators through the real drivers. The tests build the binaries once in
// TestMain.
package e2e
