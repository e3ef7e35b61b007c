package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/chatdr/chatdr/pluginsdk"
)

// Timings of the process backend.
const (
	// superviseEvery is how often the supervisor looks for services that
	// died by themselves.
	superviseEvery = 200 * time.Millisecond
	// startSettle is how long start watches a new process for an
	// immediate exit (a bad flag, a missing file) before calling it running.
	// A heuristic: a service that fails later is reported by status (and
	// restarted by the supervisor if so configured), not by start.
	startSettle = 250 * time.Millisecond
	// stablePeriod: a service that ran this long before it died is
	// restarted at once; one that died sooner is restarted with a backoff.
	stablePeriod = 10 * time.Second
	// maxBackoff bounds the delay between restarts of a crash-looping service.
	maxBackoff = 30 * time.Second
	// killWait bounds the wait for a process to vanish after SIGKILL.
	killWait = 10 * time.Second
	// procPoll is how often the backend looks at a process it waits for.
	procPoll = 50 * time.Millisecond
)

// procRecord is a process-backend service's state file,
// <state_dir>/service/NAME.json. It is what lets a new plugin process adopt
// the services started by an earlier one.
type procRecord struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// Ident is the process's start time as the OS counts it (Linux: clock
	// ticks after boot from /proc/PID/stat; Windows: creation FILETIME), 0
	// when the OS does not tell. With Command it tells the service from a
	// process that got the same pid later.
	Ident uint64 `json:"ident,omitempty"`
	// Command is the argv the process was started with.
	Command []string  `json:"command"`
	Started time.Time `json:"started"`
	// Restarts counts the supervisor's restarts since the file was created.
	Restarts int `json:"restarts"`
	// StopRequested is set by a stop through the plugin, so that the
	// supervisor does not restart the service.
	StopRequested bool      `json:"stop_requested"`
	Stopped       time.Time `json:"stopped,omitzero"`
	// LastExit is how the previous process ended, when the plugin saw it.
	LastExit string `json:"last_exit,omitempty"`
}

// procInfo is what the OS says about a pid.
type procInfo struct {
	alive bool
	// ident is the OS start time (see procRecord.Ident), 0 when unknown.
	ident uint64
	// cmdline is the process's argv, nil when the OS does not tell.
	cmdline []string
}

// processBackend runs configured command lines as services, detached from
// the plugin so that they outlive it, and supervises those with
// restart: on-failure while the plugin runs.
type processBackend struct {
	cfg   *config
	dir   string
	locks *keyedLocks
	log   *slog.Logger
	// settle is startSettle (tests lengthen it on a loaded machine).
	settle time.Duration

	// recMu serializes read-modify-write of the state files.
	recMu sync.Mutex

	mu    sync.Mutex
	exits map[string]exitNote // the last exit the plugin saw, by service

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup // supervisor and stop escalations
}

type exitNote struct {
	pid int
	msg string
	at  time.Time
}

func newProcessBackend(cfg *config, stateDir string, locks *keyedLocks) (*processBackend, error) {
	dir := filepath.Join(stateDir, "service")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, pluginsdk.Terminal(CodeNotConfigured, "process backend: create its state directory: %v", err).
			WithHint("check that the agent's account can write state_dir")
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &processBackend{
		cfg: cfg, dir: dir, locks: locks, exits: map[string]exitNote{}, settle: startSettle,
		log: slog.New(slog.NewTextHandler(os.Stderr, nil)).With("plugin", pluginName),
		ctx: ctx, cancel: cancel,
	}
	if slices.ContainsFunc(cfg.names(), func(n string) bool { return cfg.Services[n].Restart == restartOnFailure }) {
		b.wg.Add(1)
		go b.supervise()
	}
	return b, nil
}

func (b *processBackend) kind() string                { return backendProcess }
func (b *processBackend) resumesStop() bool           { return true }
func (b *processBackend) pollInterval() time.Duration { return procPoll }

// close stops the supervisor and waits for stop escalations in flight.
func (b *processBackend) close() {
	b.cancel()
	b.wg.Wait()
}

func (b *processBackend) recordPath(name string) string { return filepath.Join(b.dir, name+".json") }

// readRecord returns name's state file, nil when there is none.
func (b *processBackend) readRecord(name string) (*procRecord, error) {
	data, err := os.ReadFile(b.recordPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, pluginsdk.Retryable(CodeBackendError, "read the state of %s: %v", name, err)
	}
	var rec procRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.PID < 0 {
		return nil, pluginsdk.Terminal(CodeStateCorrupt, "state file %s is not valid: %v", b.recordPath(name), err).
			WithHint("make sure the service's process is stopped, then delete the file")
	}
	return &rec, nil
}

// writeRecord replaces name's state file atomically and durably.
func (b *processBackend) writeRecord(rec *procRecord) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(b.recordPath(rec.Name), append(data, '\n')); err != nil {
		return pluginsdk.Retryable(CodeBackendError, "save the state of %s: %v", rec.Name, err).
			WithHint("check free space and permissions of the agent's state_dir")
	}
	return nil
}

// writeFileAtomic writes data to a temporary file beside path, syncs it,
// renames it over path and syncs the directory, so that a crash leaves
// either the old or the new content.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// alive reports whether rec's process still runs and is the service: same
// pid, same OS start time and same command line (a recycled pid is never
// taken for the service; a zombie is dead).
func alive(rec *procRecord) bool {
	if rec == nil || rec.PID <= 0 {
		return false
	}
	pi := inspect(rec.PID)
	if !pi.alive {
		return false
	}
	if rec.Ident != 0 && pi.ident != 0 && rec.Ident != pi.ident {
		return false
	}
	if pi.cmdline != nil && !slices.Equal(pi.cmdline, rec.Command) {
		return false
	}
	return true
}

func (b *processBackend) status(_ context.Context, name string) (Status, error) {
	rec, err := b.readRecord(name)
	if err != nil || rec == nil {
		return Status{State: StateStopped}, err
	}
	st := Status{Restarts: rec.Restarts}
	if alive(rec) {
		st.State, st.PID, st.Since = StateRunning, rec.PID, rec.Started
		if rec.StopRequested {
			st.State, st.Detail = StateStopping, "stop requested"
		}
		return st, nil
	}
	st.State, st.Since = StateStopped, rec.Stopped
	switch {
	case rec.StopRequested:
		st.Detail = "stopped through the plugin"
	default:
		st.Detail = "exited without a stop request"
		if n, ok := b.lastExit(name, rec.PID); ok {
			st.Detail += ": " + n.msg
			st.Since = n.at
		}
	}
	return st, nil
}

func (b *processBackend) lastExit(name string, pid int) (exitNote, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, ok := b.exits[name]
	return n, ok && n.pid == pid
}

func (b *processBackend) start(ctx context.Context, name string, emit pluginsdk.Emitter) error {
	b.recMu.Lock()
	prev, err := b.readRecord(name)
	if err != nil {
		b.recMu.Unlock()
		return err
	}
	if alive(prev) {
		// The caller saw it stopped; someone else was quicker.
		b.recMu.Unlock()
		return nil
	}
	rec, exited, err := b.spawn(name)
	if err != nil {
		b.recMu.Unlock()
		return err
	}
	if prev != nil {
		rec.Restarts = prev.Restarts
	}
	if err := b.writeRecord(rec); err != nil {
		b.recMu.Unlock()
		// A service the plugin cannot record is one it could not find again.
		_ = killProcess(rec.PID)
		return err
	}
	b.recMu.Unlock()
	emit.Log("info", fmt.Sprintf("%s started as pid %d; output goes to %s", name, rec.PID, b.cfg.Services[name].Log))

	t := time.NewTimer(b.settle)
	defer t.Stop()
	select {
	case werr := <-exited:
		return pluginsdk.Terminal(CodeStartFailed, "%s exited at once (%s)%s", name, exitString(werr), logTail(b.cfg.Services[name].Log)).
			WithHint("read its log %s and check command, dir and env in plugin_config.service.services.%s", b.cfg.Services[name].Log, name)
	case <-t.C:
	case <-ctx.Done():
	}
	return nil
}

// failureContext is the end of name's log, for a start that failed.
func (b *processBackend) failureContext(name string) string {
	return logTail(b.cfg.Services[name].Log)
}

// spawn starts name's command line detached from the plugin (its own
// session or process group, stdin from the null device, stdout and stderr
// appended to its log file) and reaps it in the background. The returned
// channel receives the process's exit.
func (b *processBackend) spawn(name string) (*procRecord, <-chan error, error) {
	sc := b.cfg.Services[name]
	if err := os.MkdirAll(filepath.Dir(sc.Log), 0o750); err != nil {
		return nil, nil, pluginsdk.Terminal(CodeStartFailed, "create the log directory of %s: %v", name, err)
	}
	logf, err := os.OpenFile(sc.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, pluginsdk.Terminal(CodeStartFailed, "open the log of %s: %v", name, err).
			WithHint("check plugin_config.service.services.%s.log and its directory's permissions", name)
	}
	defer logf.Close() // the child has its own descriptor
	fmt.Fprintf(logf, "--- %s chatdr service plugin: starting %s ---\n", time.Now().UTC().Format(time.RFC3339), name)
	cmd, err := startDetached(func() *exec.Cmd {
		// exec, never a shell: the argv is passed as configured.
		cmd := exec.Command(sc.Command[0], sc.Command[1:]...)
		cmd.Dir = sc.Dir
		cmd.Env = serviceEnv(sc.Env)
		cmd.Stdout, cmd.Stderr = logf, logf
		return cmd
	})
	if err != nil {
		fmt.Fprintf(logf, "--- chatdr service plugin: cannot start %s: %v ---\n", name, err)
		return nil, nil, pluginsdk.Terminal(CodeStartFailed, "cannot run %s: %v", name, err).
			WithHint("check plugin_config.service.services.%s.command and dir", name)
	}
	pid := cmd.Process.Pid
	rec := &procRecord{
		Name: name, PID: pid, Ident: inspect(pid).ident, Command: slices.Clone(cmd.Args),
		Started: time.Now().UTC(),
	}
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait() // reaps the child while the plugin is its parent
		b.noteExit(name, pid, err)
		exited <- err
	}()
	return rec, exited, nil
}

// noteExit remembers how a child ended and writes it to its log.
func (b *processBackend) noteExit(name string, pid int, err error) {
	msg := exitString(err)
	b.mu.Lock()
	b.exits[name] = exitNote{pid: pid, msg: msg, at: time.Now().UTC()}
	b.mu.Unlock()
	if f, ferr := os.OpenFile(b.cfg.Services[name].Log, os.O_WRONLY|os.O_APPEND, 0); ferr == nil {
		fmt.Fprintf(f, "--- %s chatdr service plugin: %s (pid %d) ended: %s ---\n", time.Now().UTC().Format(time.RFC3339), name, pid, msg)
		f.Close()
	}
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// logTail returns the last lines of a log file, for an error message.
func logTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 2048
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(-max, io.SeekEnd)
	}
	data, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(bytes.ToValidUTF8(data, nil)), "\n"), "\n")
	var keep []string
	for _, l := range lines {
		if !strings.HasPrefix(l, "--- ") {
			keep = append(keep, l)
		}
	}
	if len(keep) > 10 {
		keep = keep[len(keep)-10:]
	}
	if len(keep) == 0 {
		return ""
	}
	return "; its log ends with: " + strings.Join(keep, " | ")
}

// serviceEnv is the plugin's environment without what belongs to the
// plugin protocol (go-plugin's PLUGIN_* variables, which hold the mTLS
// client certificate, the magic cookie and the agent's pid and config), plus
// the configured variables.
func serviceEnv(extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "PLUGIN_"), k == pluginsdk.Handshake.MagicCookieKey,
			k == pluginsdk.AgentPIDEnv, k == pluginsdk.AgentConfigEnv:
			continue
		}
		env = append(env, kv)
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+extra[k]) // later entries win in os/exec
	}
	return env
}

// stopOutcome is the end of a stop escalation.
type stopOutcome struct {
	killed bool
	err    error
}

func (b *processBackend) stop(ctx context.Context, name string, graceful bool, emit pluginsdk.Emitter) (stopResult, error) {
	res := stopResult{Graceful: graceful}
	b.recMu.Lock()
	rec, err := b.readRecord(name)
	if err != nil {
		b.recMu.Unlock()
		return res, err
	}
	if !alive(rec) {
		b.recMu.Unlock()
		return res, b.markStopped(name)
	}
	// Record the intent before signalling: the supervisor must not take
	// the exit for a crash.
	rec.StopRequested = true
	rec.Stopped = time.Time{}
	if err := b.writeRecord(rec); err != nil {
		b.recMu.Unlock()
		return res, err
	}
	b.recMu.Unlock()

	grace := b.cfg.Services[name].grace()
	if graceful {
		emit.Log("info", fmt.Sprintf("asking %s (pid %d) to stop; it is killed if it still runs after %s", name, rec.PID, grace))
	} else {
		emit.Log("info", fmt.Sprintf("killing %s (pid %d)", name, rec.PID))
	}
	// The escalation runs to its end even if the caller stops waiting: a
	// stop once begun must not leave a half-stopped service behind.
	done := make(chan stopOutcome, 1)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		o := terminate(rec, graceful, grace)
		if o.err == nil {
			b.setStopped(name, rec.PID)
		}
		done <- o
	}()
	select {
	case o := <-done:
		if o.err != nil {
			return res, pluginsdk.Retryable(CodeStopFailed, "stop %s (pid %d): %v", name, rec.PID, o.err).
				WithHint("check the process on the host; the agent's account may lack the right to signal it")
		}
		res.Killed = o.killed
		if o.killed && graceful {
			emit.Log("warn", fmt.Sprintf("%s did not stop within %s and was killed", name, grace))
		}
		return res, nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.Canceled) {
			return res, ctx.Err()
		}
		return res, pluginsdk.Retryable(CodeTimeout, "%s (pid %d) has not stopped yet", name, rec.PID).
			WithHint("it is killed once its stop_grace of %s has passed; check service.status", grace)
	}
}

// terminate stops rec's process: the graceful signal, up to grace for it
// to exit, then a kill.
func terminate(rec *procRecord, graceful bool, grace time.Duration) stopOutcome {
	if graceful {
		if err := signalStop(rec.PID); err == nil {
			if waitGone(rec, grace) {
				return stopOutcome{}
			}
		} else if !alive(rec) {
			return stopOutcome{}
		}
	}
	if err := killProcess(rec.PID); err != nil && alive(rec) {
		return stopOutcome{err: err}
	}
	if !waitGone(rec, killWait) {
		return stopOutcome{err: fmt.Errorf("still running %s after it was killed", killWait)}
	}
	return stopOutcome{killed: true}
}

// waitGone polls until rec's process is gone or d has passed.
func waitGone(rec *procRecord, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for alive(rec) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(procPoll) // another process's exit cannot be waited for portably
	}
	return true
}

// setStopped records when name's process pid stopped.
func (b *processBackend) setStopped(name string, pid int) {
	b.recMu.Lock()
	defer b.recMu.Unlock()
	rec, err := b.readRecord(name)
	if err != nil || rec == nil || rec.PID != pid || !rec.StopRequested || !rec.Stopped.IsZero() {
		return
	}
	rec.Stopped = time.Now().UTC()
	if err := b.writeRecord(rec); err != nil {
		b.log.Warn("cannot record a stop", "service", name, "err", err)
	}
}

// markStopped records that name, which does not run, is meant to stay
// stopped: the supervisor will not restart it.
func (b *processBackend) markStopped(name string) error {
	b.recMu.Lock()
	defer b.recMu.Unlock()
	rec, err := b.readRecord(name)
	if err != nil || rec == nil || rec.StopRequested {
		return err
	}
	rec.StopRequested = true
	if rec.Stopped.IsZero() {
		rec.Stopped = time.Now().UTC()
	}
	return b.writeRecord(rec)
}

// restartState is the supervisor's memory of one service.
type restartState struct {
	streak int       // deaths in a row within stablePeriod of their start
	due    time.Time // when the pending restart may happen; zero: none pending
}

// supervise restarts restart: on-failure services that died without a stop
// through the plugin, until close.
func (b *processBackend) supervise() {
	defer b.wg.Done()
	t := time.NewTicker(superviseEvery)
	defer t.Stop()
	mem := map[string]*restartState{}
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		for _, name := range b.cfg.names() {
			if b.cfg.Services[name].Restart != restartOnFailure {
				continue
			}
			if mem[name] == nil {
				mem[name] = &restartState{}
			}
			b.superviseOne(name, mem[name], time.Now())
		}
	}
}

// superviseOne restarts name if it died by itself and its backoff is over.
// It skips a service that a start or stop holds.
func (b *processBackend) superviseOne(name string, rs *restartState, now time.Time) {
	unlock, ok := b.locks.tryLock(name)
	if !ok {
		return
	}
	defer unlock()
	b.recMu.Lock()
	defer b.recMu.Unlock()
	rec, err := b.readRecord(name)
	if err != nil || rec == nil || rec.StopRequested {
		rs.due = time.Time{}
		return
	}
	if alive(rec) {
		if now.Sub(rec.Started) > stablePeriod {
			rs.streak = 0
		}
		return
	}
	if rs.due.IsZero() {
		// First sight of this death: restart at once after a long run,
		// with a growing delay in a crash loop.
		delay := time.Duration(0)
		if now.Sub(rec.Started) < stablePeriod {
			rs.streak++
			delay = min(superviseEvery<<rs.streak, maxBackoff)
		} else {
			rs.streak = 0
		}
		rs.due = now.Add(delay)
	}
	if now.Before(rs.due) {
		return
	}
	rs.due = time.Time{}
	last := "not seen by this plugin process"
	if n, ok := b.lastExit(name, rec.PID); ok {
		last = n.msg
	}
	next, _, err := b.spawn(name)
	if err != nil {
		b.log.Error("cannot restart a service that died", "service", name, "err", err)
		rs.due = now.Add(min(superviseEvery<<max(rs.streak, 1), maxBackoff))
		return
	}
	next.Restarts = rec.Restarts + 1
	next.LastExit = last
	if err := b.writeRecord(next); err != nil {
		b.log.Error("restarted a service but cannot record it; killing it", "service", name, "err", err)
		_ = killProcess(next.PID)
		return
	}
	b.log.Warn("restarted a service that died without a stop request", "service", name,
		"old_pid", rec.PID, "pid", next.PID, "restarts", next.Restarts, "last_exit", last)
}
