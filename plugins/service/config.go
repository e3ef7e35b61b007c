package service

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/chatdr/chatdr/internal/cfgfile"
)

// Backend names, the values of plugin_config.service.backend.
const (
	backendProcess = "process"
	backendSystemd = "systemd"
	backendWindows = "windows"
)

// Restart policies of the process backend.
const (
	restartNever     = "never"
	restartOnFailure = "on-failure"
)

// defaultStopGrace is how long the process backend waits after SIGTERM
// before SIGKILL when stop_grace is not set.
const defaultStopGrace = 10 * time.Second

// config is the plugin_config.service section of agent.yaml.
type config struct {
	// Backend is windows, systemd or process.
	Backend string `yaml:"backend"`
	// Services are the services the plugin may manage: an allow-list for
	// windows and systemd, definitions for process.
	Services map[string]*serviceConfig `yaml:"services"`
}

// serviceConfig is one entry of services. Only DependsOn applies to every
// backend; the rest defines a process-backend service.
type serviceConfig struct {
	Command   []string          `yaml:"command"`
	Dir       string            `yaml:"dir"`
	Env       map[string]string `yaml:"env"`
	Log       string            `yaml:"log"`
	StopGrace cfgfile.Duration  `yaml:"stop_grace"`
	Restart   string            `yaml:"restart"`
	DependsOn []string          `yaml:"depends_on"`
}

// grace returns the SIGTERM-to-SIGKILL delay.
func (s *serviceConfig) grace() time.Duration {
	if s.StopGrace == 0 {
		return defaultStopGrace
	}
	return time.Duration(s.StopGrace)
}

// validName reports whether s is an acceptable service name: 1-256
// letters, digits, '$', '_', '-' or '.', not starting with '-' or '.' (so
// that a name can never be taken for an option of systemctl or for a
// relative path).
func validName(s string) bool {
	if len(s) == 0 || len(s) > 256 || s[0] == '-' || s[0] == '.' {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '$', r == '_', r == '-', r == '.':
		default:
			return false
		}
	}
	return true
}

// check validates the section and resolves the process backend's relative
// paths against dir (the agent config file's directory) and its default log
// files under stateDir. Errors name the offending key.
func (c *config) check(dir, stateDir string) error {
	switch c.Backend {
	case backendProcess, backendSystemd, backendWindows:
	case "":
		return fmt.Errorf("plugin_config.service.backend is required: windows, systemd or process")
	default:
		return fmt.Errorf("plugin_config.service.backend %q: want windows, systemd or process", c.Backend)
	}
	if c.Services == nil {
		c.Services = map[string]*serviceConfig{}
	}
	for _, name := range c.names() {
		s := c.Services[name]
		if s == nil {
			s = &serviceConfig{}
			c.Services[name] = s
		}
		key := "plugin_config.service.services." + name
		if !validName(name) {
			return fmt.Errorf("%s: not a valid service name (1-256 letters, digits, $ _ - ., not starting with - or .)", key)
		}
		for _, d := range s.DependsOn {
			if _, ok := c.Services[d]; !ok {
				return fmt.Errorf("%s.depends_on: %q is not in plugin_config.service.services", key, d)
			}
			if d == name {
				return fmt.Errorf("%s.depends_on: a service cannot depend on itself", key)
			}
		}
		if c.Backend != backendProcess {
			if len(s.Command) > 0 || s.Dir != "" || len(s.Env) > 0 || s.Log != "" || s.StopGrace != 0 || s.Restart != "" {
				return fmt.Errorf("%s: command, dir, env, log, stop_grace and restart are for the process backend; the %s backend only takes depends_on", key, c.Backend)
			}
			continue
		}
		if len(s.Command) == 0 || s.Command[0] == "" {
			return fmt.Errorf("%s.command is required for the process backend (the program and its arguments, run without a shell)", key)
		}
		switch s.Restart {
		case "":
			s.Restart = restartNever
		case restartNever, restartOnFailure:
		default:
			return fmt.Errorf("%s.restart %q: want never or on-failure", key, s.Restart)
		}
		for k := range s.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				return fmt.Errorf("%s.env: %q is not a valid variable name", key, k)
			}
		}
		// A bare program name is looked up in PATH; a relative path is
		// relative to agent.yaml, like every path in the file.
		if strings.ContainsAny(s.Command[0], `/\`) {
			s.Command[0] = cfgfile.Resolve(filepath.Join(dir, "agent.yaml"), s.Command[0])
		}
		s.Dir = cfgfile.Resolve(filepath.Join(dir, "agent.yaml"), s.Dir)
		if s.Log == "" {
			if stateDir == "" {
				return fmt.Errorf("%s.log: no log file and the agent has no state_dir to put one in", key)
			}
			s.Log = filepath.Join(stateDir, "service", name+".log")
		}
		s.Log = cfgfile.Resolve(filepath.Join(dir, "agent.yaml"), s.Log)
	}
	if c.Backend == backendProcess && stateDir == "" {
		return fmt.Errorf("the process backend keeps its services' pids in <state_dir>/service; set state_dir in agent.yaml")
	}
	for _, name := range c.names() {
		if cyc := c.cycle(name, nil); cyc != nil {
			return fmt.Errorf("plugin_config.service.services: depends_on forms a cycle: %s", strings.Join(cyc, " -> "))
		}
	}
	return nil
}

// names returns the configured service names, sorted.
func (c *config) names() []string {
	out := make([]string, 0, len(c.Services))
	for n := range c.Services {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// lookup returns the configured spelling of name. Windows service names are
// case-insensitive, so the windows backend matches them so too.
func (c *config) lookup(name string) (string, bool) {
	if _, ok := c.Services[name]; ok {
		return name, true
	}
	if c.Backend == backendWindows {
		for _, n := range c.names() {
			if strings.EqualFold(n, name) {
				return n, true
			}
		}
	}
	return "", false
}

// cycle returns a depends_on cycle through name, or nil.
func (c *config) cycle(name string, path []string) []string {
	if i := slices.Index(path, name); i >= 0 {
		return append(slices.Clone(path[i:]), name)
	}
	path = append(path, name)
	for _, d := range c.Services[name].DependsOn {
		if cyc := c.cycle(d, path); cyc != nil {
			return cyc
		}
	}
	return nil
}

// dependencies returns every service name depends on, transitively, in the
// order to start them (a service after the ones it depends on).
func (c *config) dependencies(name string) []string {
	var out []string
	seen := map[string]bool{name: true}
	var visit func(string)
	visit = func(n string) {
		for _, d := range c.Services[n].DependsOn {
			if seen[d] {
				continue
			}
			seen[d] = true
			visit(d)
			out = append(out, d)
		}
	}
	visit(name)
	return out
}

// dependents returns every service that depends on name, transitively, in
// the order to stop them (a service before the ones it depends on).
func (c *config) dependents(name string) []string {
	var out []string
	seen := map[string]bool{name: true}
	var visit func(string)
	visit = func(n string) {
		for _, m := range c.names() {
			if seen[m] || !slices.Contains(c.Services[m].DependsOn, n) {
				continue
			}
			seen[m] = true
			visit(m)
			out = append(out, m)
		}
	}
	visit(name)
	return out
}
