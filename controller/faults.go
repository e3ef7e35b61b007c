package controller

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/chatdr/chatdr/controller/store"
)

// CrashEnv names the fault-injection setting that makes the controller kill
// itself right after a durable commit, as a power loss or an OOM kill
// would, to prove that runs resume without repeating or losing a step
// (docs/configuration.md "Fault injection"). Values:
//
//	step-done:N   after the Nth step of a run reached succeeded or skipped
//	attempt:N     after the Nth attempt was journaled, before its request
//	              was sent to the agent
//
// counted from the start of this controller process. Unset in production.
const CrashEnv = "CHATDR_CONTROLLER_CRASH"

// crashPoint is a parsed CrashEnv.
type crashPoint struct {
	kind string // "step-done" or "attempt"
	n    int64
}

func parseCrashPoint(v string) (crashPoint, error) {
	kind, num, ok := strings.Cut(strings.TrimSpace(v), ":")
	n, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil || n < 1 || (kind != "step-done" && kind != "attempt") {
		return crashPoint{}, fmt.Errorf("%s=%q: want step-done:N or attempt:N with N ≥ 1", CrashEnv, v)
	}
	return crashPoint{kind: kind, n: n}, nil
}

// installCrashHooks arms CrashEnv on st when it is set. kill ends the
// process (os.Exit is not enough: deferred work must not run).
func installCrashHooks(st *store.Store, log *slog.Logger, kill func()) error {
	v, ok := os.LookupEnv(CrashEnv)
	if !ok || v == "" {
		return nil
	}
	cp, err := parseCrashPoint(v)
	if err != nil {
		return err
	}
	log.Warn("fault injection armed: the controller will kill itself", "env", CrashEnv, "after", cp.kind, "n", cp.n)
	var count atomic.Int64
	hit := func(what string) {
		if count.Add(1) == cp.n {
			log.Warn("fault injection: killing the controller", "after", what)
			kill()
		}
	}
	switch cp.kind {
	case "step-done":
		st.SetHooks(store.Hooks{AfterFire: func(run *store.Run, changes []store.Change) {
			for _, c := range changes {
				if c.Step == "" {
					continue
				}
				if s := run.Step(c.Step); s != nil && s.Status.State.Done() {
					hit(run.ID + "/" + c.Step + " " + string(s.Status.State))
				}
			}
		}})
	case "attempt":
		st.SetHooks(store.Hooks{AfterBeginAttempt: func(runID, stepID, key string) { hit("attempt " + key) }})
	}
	return nil
}

// killSelf ends this process at once (SIGKILL on Unix, TerminateProcess on
// Windows).
func killSelf() {
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		_ = p.Kill()
	}
	select {} // the kill is asynchronous: nothing more may run
}
