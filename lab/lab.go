// Package lab runs a complete two-site chatdr deployment on 127.0.0.1: a
// controller and one agent per host of a generated topology, as background
// processes that outlive the command that started them. It is what `chatdr
// lab up|status|down|kill|start|messages` and `make demo` use, and what the
// end-to-end tests run against.
//
// Everything lives in one directory: lab.json (what was started and how),
// tls/ (certificates), topology.yaml, one folder per process with its config
// and state, logs/ and run/ (pid files). Up on an existing directory starts
// again whatever is not running, on the same ports.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// StateFile is the lab's record of its processes, inside the lab directory.
const StateFile = "lab.json"

// Process kinds.
const (
	KindController = "controller"
	KindAgent      = "agent"
	// KindSQL is a SQL Server simulator (chatdr-sim mssql) on a SQL host.
	KindSQL = "mssql"
	// KindService is a chat server simulator run by an agent's service
	// plugin (the RTCCHAT service); not started by the lab itself.
	KindService = "service"
)

// Proc is one process of the lab.
type Proc struct {
	// Name is unique in the lab: "controller" or the agent's host.
	Name string `json:"name"`
	Kind string `json:"kind"`
	Site string `json:"site,omitempty"`
	// Binary is the executable's base name, looked up in the bin directory.
	Binary string `json:"binary"`
	// Config is the absolute path of the process's config file; it also
	// identifies the process in the process table unless Marker is set.
	Config string `json:"config,omitempty"`
	// Args replace the default arguments (--config Config) when set.
	Args []string `json:"args,omitempty"`
	// Marker, when set, is what identifies the process in the process
	// table (a path only this process has on its command line).
	Marker string `json:"marker,omitempty"`
	// Address is the gRPC listen address.
	Address string `json:"address"`
	// Metrics is the /metrics listen address.
	Metrics string `json:"metrics,omitempty"`
	// Mirror is a SQL simulator's database mirroring endpoint.
	Mirror  string `json:"mirror,omitempty"`
	Log     string `json:"log"`
	PidFile string `json:"pid_file"`
}

// marker returns what identifies p in the process table.
func (p Proc) marker() string {
	if p.Marker != "" {
		return p.Marker
	}
	return p.Config
}

// args returns p's command-line arguments.
func (p Proc) args() []string {
	if len(p.Args) > 0 {
		return p.Args
	}
	return []string{"--config", p.Config}
}

// State is the content of lab.json.
type State struct {
	Pool       string `json:"pool"`
	Controller string `json:"controller"`
	TLSDir     string `json:"tls_dir"`
	Topology   string `json:"topology"`
	// CMS is the Central Management Store file of the Management Shell and
	// chat simulators.
	CMS string `json:"cms"`
	// SQLPasswordFile holds the sa password of the SQL simulators.
	SQLPasswordFile string `json:"sql_password_file"`
	// Bootstrapped is set once the SQL deployment (databases, mirroring,
	// log shipping) has been created.
	Bootstrapped bool   `json:"bootstrapped"`
	Procs        []Proc `json:"procs"`
}

// Count returns how many processes of kind the lab has.
func (st *State) Count(kind string) int { return len(st.procs(kind)) }

// procs returns the processes of one kind.
func (st *State) procs(kind string) []Proc {
	var out []Proc
	for _, p := range st.Procs {
		if p.Kind == kind {
			out = append(out, p)
		}
	}
	return out
}

// Options configure Up.
type Options struct {
	// Dir is the lab directory (created when missing).
	Dir string
	// BinDir holds chatdr-agent and chatdr-controller; empty means the
	// directory of the running executable, then PATH.
	BinDir string
	// Timeout bounds the wait until every process is healthy.
	Timeout time.Duration
	// Out receives progress lines.
	Out io.Writer
}

// Load reads the lab state of dir.
func Load(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s is not a lab directory (no %s); create one with 'chatdr lab up --dir %s'", dir, StateFile, dir)
		}
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s is corrupt: %w", filepath.Join(dir, StateFile), err)
	}
	return &st, nil
}

// Up creates the lab in opts.Dir (or reuses the one there), starts every
// process that is not running and waits until the controller sees every
// agent reachable.
func Up(ctx context.Context, opts Options) (*State, error) {
	if opts.Dir == "" {
		return nil, errors.New("lab directory is empty")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	bins, err := findBinaries(opts.BinDir)
	if err != nil {
		return nil, err
	}
	st, err := Load(dir)
	if err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, StateFile)); statErr == nil {
			return nil, err
		}
		fmt.Fprintf(opts.Out, "creating lab in %s\n", dir)
		if st, err = create(dir, bins["chatdr-sim"]); err != nil {
			return nil, err
		}
	}
	// SQL Server first (the deployment is created on it), then agents, so
	// that the controller finds them at once.
	for _, kind := range []string{KindSQL, KindAgent, KindController} {
		if kind == KindAgent && !st.Bootstrapped {
			bctx, cancel := context.WithTimeout(ctx, opts.Timeout)
			err := bootstrap(bctx, dir, st, opts.Out)
			cancel()
			if err != nil {
				return st, fmt.Errorf("create the SQL deployment: %w", err)
			}
			st.Bootstrapped = true
			if err := st.save(dir); err != nil {
				return st, err
			}
		}
		for _, p := range st.Procs {
			if p.Kind != kind {
				continue
			}
			if pid, ok := running(p); ok {
				fmt.Fprintf(opts.Out, "  %-24s already running (pid %d)\n", p.Name, pid)
				continue
			}
			pid, err := start(p, bins[p.Binary])
			if err != nil {
				return st, fmt.Errorf("start %s: %w", p.Name, err)
			}
			fmt.Fprintf(opts.Out, "  %-24s started (pid %d, %s)\n", p.Name, pid, p.Address)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	if err := waitHealthy(wctx, st); err != nil {
		return st, err
	}
	if err := startChatServices(wctx, st, opts.Out, ""); err != nil {
		return st, err
	}
	return st, nil
}

// ProcStatus is the state of one lab process.
type ProcStatus struct {
	Proc
	PID     int  `json:"pid"`
	Running bool `json:"running"`
}

// Status reports which lab processes run.
func Status(dir string) ([]ProcStatus, error) {
	st, err := Load(dir)
	if err != nil {
		return nil, err
	}
	out := make([]ProcStatus, len(st.Procs))
	for i, p := range st.Procs {
		pid, ok := running(p)
		out[i] = ProcStatus{Proc: p, PID: pid, Running: ok}
	}
	return append(out, chatServices(dir, st)...), nil
}

// Down stops every running lab process (SIGTERM, then SIGKILL after grace)
// and returns the names of those it stopped. It only signals a pid whose
// process is still the one the lab started (its command line names the
// process's config file).
func Down(dir string, grace time.Duration) ([]string, error) {
	st, err := Load(dir)
	if err != nil {
		return nil, err
	}
	var stopped []string
	var errs []error
	// Controller first, so that it does not log every agent going away;
	// then the agents (their plugins go with them, so that no supervisor
	// restarts a service), the chat services, and SQL Server last.
	stopKind := func(kind string) {
		for _, p := range st.Procs {
			if p.Kind != kind {
				continue
			}
			pid, ok := running(p)
			if ok {
				if err := stopProcess(pid, p.marker(), grace); err != nil {
					errs = append(errs, fmt.Errorf("stop %s (pid %d): %w", p.Name, pid, err))
					continue
				}
				stopped = append(stopped, p.Name)
			}
			os.Remove(p.PidFile)
		}
	}
	stopKind(KindController)
	stopKind(KindAgent)
	for _, svc := range chatServices(dir, st) {
		if !svc.Running {
			continue
		}
		if err := stopProcess(svc.PID, svc.marker(), grace); err != nil {
			errs = append(errs, fmt.Errorf("stop %s (pid %d): %w", svc.Name, svc.PID, err))
			continue
		}
		stopped = append(stopped, svc.Name)
	}
	stopKind(KindSQL)
	return stopped, errors.Join(errs...)
}

// Kill stops the named lab processes at once (SIGKILL), as a host crash
// would, and returns their pids. A name that is not running is an error.
func Kill(dir string, names ...string) (map[string]int, error) {
	st, err := Load(dir)
	if err != nil {
		return nil, err
	}
	killed := map[string]int{}
	for _, name := range names {
		var p *Proc
		for i := range st.Procs {
			if st.Procs[i].Name == name {
				p = &st.Procs[i]
			}
		}
		if p == nil {
			return killed, fmt.Errorf("%q is not a process of the lab in %s", name, dir)
		}
		pid, ok := running(*p)
		if !ok {
			return killed, fmt.Errorf("%s is not running", name)
		}
		if err := killProcess(pid, p.marker()); err != nil {
			return killed, err
		}
		killed[name] = pid
	}
	return killed, nil
}

// running returns the pid of p and whether that process is alive and is p.
func running(p Proc) (int, bool) {
	b, err := os.ReadFile(p.PidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, processAlive(pid, p.marker())
}

// start launches p detached from the caller, logging to p.Log, and records
// its pid.
func start(p Proc, bin string) (int, error) {
	if err := os.MkdirAll(filepath.Dir(p.Log), 0o755); err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "---- lab: starting %s at %s\n", p.Name, time.Now().Format(time.RFC3339))
	cmd := exec.Command(bin, p.args()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detachAttr()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	if err := os.MkdirAll(filepath.Dir(p.PidFile), 0o755); err != nil {
		return pid, err
	}
	if err := os.WriteFile(p.PidFile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return pid, err
	}
	// Reap the child if this process lives long enough to see it end, so
	// that a test process does not collect zombies; otherwise init does.
	go func() { _ = cmd.Wait() }()
	return pid, nil
}

// findBinaries locates chatdr-agent and chatdr-controller.
func findBinaries(binDir string) (map[string]string, error) {
	ext := ""
	if runtime.GOOS == "windows" {
		ext = ".exe"
	}
	dirs := []string{binDir}
	if binDir == "" {
		if exe, err := os.Executable(); err == nil {
			dirs = []string{filepath.Dir(exe)}
		}
	}
	out := map[string]string{}
	for _, name := range []string{"chatdr-agent", "chatdr-controller", "chatdr-sim"} {
		found := ""
		for _, d := range dirs {
			if d == "" {
				continue
			}
			if p := filepath.Join(d, name+ext); isFile(p) {
				found = p
			}
		}
		if found == "" && binDir == "" {
			if p, err := exec.LookPath(name); err == nil {
				found = p
			}
		}
		if found == "" {
			return nil, fmt.Errorf("%s not found in %s or PATH; build it with 'make build' (binaries go to bin/) or pass --bin", name, strings.Join(dirs, ", "))
		}
		out[name] = found
	}
	return out, nil
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeYAML marshals v into path.
func writeYAML(path string, v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
