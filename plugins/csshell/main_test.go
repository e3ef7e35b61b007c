package csshell

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/pluginsdk"
	shellsim "github.com/chatdr/chatdr/sim/csshell"
	"github.com/chatdr/chatdr/sim/csshell/csshelltest"
)

// Environment variables that turn the test binary into a helper process.
const (
	envSim       = "CHATDR_CSSHELL_TEST_SIM"        // be the Management Shell simulator
	envHang      = "CHATDR_CSSHELL_TEST_HANG"       // start a child, write both pids to this file, hang
	envHangChild = "CHATDR_CSSHELL_TEST_HANG_CHILD" // hang
	envPlugin    = "CHATDR_CSSHELL_TEST_PLUGIN"     // serve the plugin (go-plugin)
	envStderr0   = "CHATDR_CSSHELL_TEST_STDERR0"    // print this to stderr, exit 0
)

// TestMain doubles as the "powershell" executable (the simulator), as a
// shell that hangs, and as the plugin process.
func TestMain(m *testing.M) {
	switch {
	case os.Getenv(envStderr0) != "":
		fmt.Fprint(os.Stderr, os.Getenv(envStderr0))
		os.Exit(0)
	case os.Getenv(envSim) == "1":
		os.Exit(shellsim.Main(os.Args[1:], os.Stdout, os.Stderr))
	case os.Getenv(envHangChild) == "1":
		select {}
	case os.Getenv(envHang) != "":
		child := exec.Command(os.Args[0])
		child.Env = append(os.Environ(), envHang+"=", envHangChild+"=1")
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		pids := fmt.Sprintf("%d %d\n", os.Getpid(), child.Process.Pid)
		if err := os.WriteFile(os.Getenv(envHang), []byte(pids), 0o600); err != nil {
			os.Exit(2)
		}
		select {}
	case os.Getenv(envPlugin) == "1":
		pluginsdk.Serve(New())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// lab is a CMS file, a trace file and a plugin whose "powershell" is the
// simulator.
type lab struct {
	t     *testing.T
	store *shellsim.Store
	trace string
	cfg   Config
	p     *plugin
	fakes map[string]*csshelltest.FakeSQL
}

// newLab starts fake SQL instances and a plugin running on pc1 of the lab
// pool.
func newLab(t *testing.T, edit ...func(*shellsim.CMS)) *lab {
	t.Helper()
	fakes, insts := csshelltest.Fakes(t)
	c := csshelltest.LabCMS(insts)
	for _, e := range edit {
		e(&c)
	}
	dir := t.TempDir()
	st, err := shellsim.Create(t.Context(), filepath.Join(dir, "cms.json"), c)
	require.NoError(t, err)
	l := &lab{t: t, store: st, trace: filepath.Join(dir, "trace.jsonl"), fakes: fakes}
	l.cfg = Config{
		PowerShell: []string{os.Args[0], "-NoProfile", "-NonInteractive", "-Command"},
		Identity:   "service:pchat01.contoso.com",
		Env: map[string]string{
			envSim:              "1",
			shellsim.EnvCMSFile: st.Path(),
			shellsim.EnvTrace:   l.trace,
			"GORACE":            goraceNoExitSleep(),
		},
	}
	l.p = newWithConfig(l.cfg, "pc1.dc1.contoso.com")
	return l
}

// with returns a plugin of the lab with a changed configuration.
func (l *lab) with(edit func(*Config)) *plugin {
	c := l.cfg
	c.Env = map[string]string{}
	for k, v := range l.cfg.Env {
		c.Env[k] = v
	}
	edit(&c)
	return newWithConfig(c, "pc1.dc1.contoso.com")
}

type events struct {
	mu   sync.Mutex
	logs []string
}

func (e *events) Progress(string, int64, int64, string) {}
func (e *events) Log(level, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.logs = append(e.logs, level+": "+msg)
}

func exec1(t *testing.T, p *plugin, action string, params pluginsdk.Params) (pluginsdk.Output, error) {
	t.Helper()
	return p.Execute(t.Context(), &pluginsdk.Request{Action: action, Params: params}, &events{})
}

func (l *lab) ok(action string, params pluginsdk.Params) pluginsdk.Output {
	l.t.Helper()
	out, err := exec1(l.t, l.p, action, params)
	require.NoError(l.t, err)
	return out
}

// fails runs action and requires a *pluginsdk.Error with code.
func (l *lab) fails(p *plugin, action string, params pluginsdk.Params, code string) *pluginsdk.Error {
	l.t.Helper()
	_, err := exec1(l.t, p, action, params)
	var pe *pluginsdk.Error
	require.True(l.t, errors.As(err, &pe), "want a *pluginsdk.Error, got %v", err)
	require.Equal(l.t, code, pe.Code, pe.Error())
	return pe
}

func (l *lab) state() shellsim.Snapshot {
	l.t.Helper()
	s, err := l.store.State(l.t.Context())
	require.NoError(l.t, err)
	return s
}

// traceEntry is one line the simulator appended to the trace file.
type traceEntry struct {
	Script string         `json:"script"`
	Cmdlet string         `json:"cmdlet"`
	Params map[string]any `json:"params"`
	Server string         `json:"server"`
	Exit   int            `json:"exit"`
	Error  string         `json:"error"`
}

// calls returns the simulator invocations so far.
func (l *lab) calls() []traceEntry {
	l.t.Helper()
	f, err := os.Open(l.trace)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(l.t, err)
	defer f.Close()
	var out []traceEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e traceEntry
		require.NoError(l.t, json.Unmarshal(sc.Bytes(), &e))
		out = append(out, e)
	}
	require.NoError(l.t, sc.Err())
	return out
}

func cmdlets(calls []traceEntry) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.Cmdlet)
	}
	return out
}

// goraceNoExitSleep returns GORACE without the race detector's 1 s sleep
// at a successful exit, which would make every simulated shell take a
// second under -race.
func goraceNoExitSleep() string {
	return strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
}

// eventually polls cond every interval until it returns nil or timeout
// passes.
func eventually(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not true within %s: %w", timeout, err)
		}
		time.Sleep(interval) // poll interval, not a wait for an event
	}
}
