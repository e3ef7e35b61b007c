//go:build linux

package service

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/internal/cfgfile"
	"github.com/chatdr/chatdr/pluginsdk"
)

// The test binary is also every program the tests run: re-executed with one
// of these variables set, it is a fake service, a fake systemctl or the
// service plugin served over go-plugin.
const (
	// envFakeService selects a fake service: "term" (exits 0 on SIGTERM),
	// "ignore-term" (only SIGKILL ends it) or "exit1" (fails at once).
	envFakeService = "CHATDR_TEST_FAKE_SERVICE"
	// envHeartbeat is the file a fake service rewrites every 50ms with its
	// pid and argv.
	envHeartbeat = "CHATDR_TEST_HEARTBEAT"
	// envEvents is a file fake services append "start NAME" / "stop NAME" to.
	envEvents = "CHATDR_TEST_EVENTS"
	// envName is the fake service's name, for envEvents.
	envName = "CHATDR_TEST_NAME"
	// envFakeSystemctl is the directory a fake systemctl keeps units in.
	envFakeSystemctl = "CHATDR_TEST_FAKE_SYSTEMCTL"
	// envServePlugin makes the binary serve the service plugin.
	envServePlugin = "CHATDR_TEST_SERVE_SERVICE_PLUGIN"
)

func TestMain(m *testing.M) {
	// The fake service comes first: it inherits the plugin's environment.
	if mode := os.Getenv(envFakeService); mode != "" {
		os.Exit(fakeService(mode))
	}
	if dir := os.Getenv(envFakeSystemctl); dir != "" {
		os.Exit(fakeSystemctl(dir, os.Args[1:]))
	}
	if os.Getenv(envServePlugin) == "1" {
		pluginsdk.Serve(New())
		os.Exit(0)
	}
	// The children are this binary; built with -race, each would sleep 1s
	// at exit (the race runtime's default atexit_sleep_ms).
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

// fakeService is a tiny long-running program: it writes a heartbeat until
// SIGTERM (mode term), or until killed (mode ignore-term).
func fakeService(mode string) int {
	name := os.Getenv(envName)
	if mode == "exit1" {
		event(name, "start")
		fmt.Fprintln(os.Stderr, "boom: cannot open the database")
		return 1
	}
	sigs := make(chan os.Signal, 1)
	if mode == "ignore-term" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(sigs, syscall.SIGTERM)
	}
	// "start" is recorded once the signal handling is in place, so a test
	// that waits for it knows how the service will take a SIGTERM.
	event(name, "start")
	hb := os.Getenv(envHeartbeat)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for beat := 0; ; beat++ {
		if hb != "" {
			args, _ := json.Marshal(os.Args[1:])
			data := fmt.Sprintf("pid=%d\nbeat=%d\nargs=%s\n", os.Getpid(), beat, args)
			_ = os.WriteFile(hb+".tmp", []byte(data), 0o644)
			_ = os.Rename(hb+".tmp", hb)
		}
		select {
		case <-sigs:
			event(name, "stop")
			if hb != "" {
				_ = os.WriteFile(hb+".term", []byte(strconv.Itoa(os.Getpid())), 0o644)
			}
			return 0
		case <-t.C:
		}
	}
}

func event(name, what string) {
	path := os.Getenv(envEvents)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", what, name)
}

// eventually polls cond every 20ms until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true within %s: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not a wait for an event
	}
}

// never fails if cond becomes true at any poll during d.
func never(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := cond(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// procRunning reports whether pid is a live, non-zombie process (read from
// /proc independently of the code under test).
func procRunning(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}

// requireGone waits until pid has exited.
func requireGone(t *testing.T, pid int) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		if procRunning(pid) {
			return fmt.Errorf("pid %d still runs", pid)
		}
		return nil
	})
}

// lab is one agent's worth of state: a state dir, a config, fake services.
type lab struct {
	t        *testing.T
	dir      string
	stateDir string
	cfg      *config
}

// newLab returns an empty process-backend setup. Its cleanup kills every
// service whose state file names a live process, and waits for it to go,
// before the temporary directory is removed.
func newLab(t *testing.T) *lab {
	dir := t.TempDir()
	l := &lab{t: t, dir: dir, stateDir: filepath.Join(dir, "state"),
		cfg: &config{Backend: backendProcess, Services: map[string]*serviceConfig{}}}
	t.Cleanup(l.killAll)
	return l
}

func (l *lab) killAll() {
	files, _ := filepath.Glob(filepath.Join(l.stateDir, "service", "*.json"))
	var pids []int
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var rec procRecord
		if json.Unmarshal(data, &rec) == nil && alive(&rec) {
			_ = syscall.Kill(-rec.PID, syscall.SIGKILL)
			pids = append(pids, rec.PID)
		}
	}
	for _, pid := range pids {
		requireGone(l.t, pid)
	}
}

// heartbeat is the heartbeat file of service name.
func (l *lab) heartbeat(name string) string { return filepath.Join(l.dir, name+".heartbeat") }

// events returns the lines fake services appended to the events file.
// waitEvents polls until at least n events were recorded and returns them.
func (l *lab) waitEvents(t *testing.T, n int) []string {
	t.Helper()
	var evs []string
	eventually(t, 20*time.Second, func() error {
		if evs = l.events(); len(evs) < n {
			return fmt.Errorf("%d events: %v", len(evs), evs)
		}
		return nil
	})
	return evs
}

func (l *lab) events() []string {
	b, _ := os.ReadFile(filepath.Join(l.dir, "events"))
	return strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(b)), " ", "_"))
}

// add configures a fake service.
func (l *lab) add(name, mode string, edit ...func(*serviceConfig)) {
	sc := &serviceConfig{
		Command: []string{os.Args[0], "--fake-service=" + name, "--label=it's [x]; $(touch pwned) `id`"},
		Env: map[string]string{envFakeService: mode, envHeartbeat: l.heartbeat(name),
			envEvents: filepath.Join(l.dir, "events"), envName: name},
		Dir:       l.dir,
		StopGrace: cfgfile.Duration(5 * time.Second),
	}
	for _, e := range edit {
		e(sc)
	}
	l.cfg.Services[name] = sc
}

// plugin returns a new plugin instance on the lab's state dir, as a new
// plugin process would be; it is closed at the end of the test.
func (l *lab) plugin() *servicePlugin {
	l.t.Helper()
	// Each instance gets its own copy, as a new process would parse it.
	cfg := &config{Backend: l.cfg.Backend, Services: map[string]*serviceConfig{}}
	for n, sc := range l.cfg.Services {
		c := *sc
		c.Command, c.DependsOn = slices.Clone(sc.Command), slices.Clone(sc.DependsOn)
		c.Env = maps.Clone(sc.Env)
		cfg.Services[n] = &c
	}
	require.NoError(l.t, cfg.check(l.dir, l.stateDir))
	p, err := newWithConfig(cfg, l.stateDir)
	require.NoError(l.t, err)
	l.t.Cleanup(func() { p.Close() })
	return p
}

// record reads a state file.
func (l *lab) record(name string) procRecord {
	l.t.Helper()
	data, err := os.ReadFile(filepath.Join(l.stateDir, "service", name+".json"))
	require.NoError(l.t, err)
	var rec procRecord
	require.NoError(l.t, json.Unmarshal(data, &rec))
	return rec
}

// heartbeatPID returns the pid in name's heartbeat file, 0 if none.
func (l *lab) heartbeatPID(name string) int {
	b, err := os.ReadFile(l.heartbeat(name))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimPrefix(line, "pid="))
	return pid
}

// recorder collects an action's log lines.
type recorder struct {
	mu   sync.Mutex
	logs []string
}

func (r *recorder) Progress(string, int64, int64, string) {}
func (r *recorder) Log(level, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, level+": "+msg)
}

// run executes an action in-process.
func run(t *testing.T, p pluginsdk.Plugin, action string, params pluginsdk.Params) (pluginsdk.Output, error) {
	t.Helper()
	return p.Execute(t.Context(), &pluginsdk.Request{Action: action, Params: params}, &recorder{})
}

// mustRun executes an action that must succeed.
func mustRun(t *testing.T, p pluginsdk.Plugin, action string, params pluginsdk.Params) pluginsdk.Output {
	t.Helper()
	out, err := run(t, p, action, params)
	require.NoError(t, err, "%s %v", action, params)
	return out
}

func pidOf(out pluginsdk.Output) int { return int(out["pid"].(float64)) }
