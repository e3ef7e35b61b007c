// Package agent is chatdr-agent: the gRPC server that runs on every
// Persistent Chat server and SQL Server host, reports facts about its host,
// answers probes and executes actions for the controller.
package agent

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/chatdr/chatdr/plugins"

	"github.com/chatdr/chatdr/internal/cfgfile"
)

// Config is the agent's configuration file (agent.yaml).
type Config struct {
	// Host is the FQDN the topology uses for this host.
	Host string `yaml:"host"`
	// Site is the data center the host is in.
	Site string `yaml:"site"`
	// Roles are what the host is (chat_server, sql_primary, ...), reported as is.
	Roles []string `yaml:"roles"`
	// Listen is the gRPC address (host:port).
	Listen string `yaml:"listen"`
	// MetricsListen is the address of the Prometheus /metrics endpoint; empty disables it.
	MetricsListen string `yaml:"metrics_listen"`
	// StateDir holds the agent's journal.
	StateDir string `yaml:"state_dir"`
	// TLS names the CA and the agent's certificate.
	TLS cfgfile.TLS `yaml:"tls"`
	// ShutdownGrace bounds how long a graceful stop waits for calls in flight.
	ShutdownGrace cfgfile.Duration `yaml:"shutdown_grace"`
	// Plugins selects the action plugins.
	Plugins PluginsConfig `yaml:"plugins"`
	// PluginConfig holds one section per plugin, read by the plugin itself
	// (pluginsdk.LoadConfig) from this file.
	PluginConfig map[string]yaml.Node `yaml:"plugin_config"`
	// path is the absolute path of the file, given to plugins.
	path string
}

// PluginsConfig selects the agent's action plugins.
type PluginsConfig struct {
	// Builtin names the built-in plugins to run; nil means all of them,
	// an empty list none.
	Builtin *[]string `yaml:"builtin"`
	// Dir holds third-party plugin binaries (chatdr-plugin-NAME[.exe]).
	Dir string `yaml:"dir"`
	// Pinned maps a third-party plugin name to the SHA-256 (hex) its binary
	// must have; a binary that is not pinned, or differs, is not run.
	Pinned map[string]string `yaml:"pinned"`
}

// LoadConfig reads and checks an agent configuration file.
func LoadConfig(path string) (*Config, error) {
	var c Config
	err := cfgfile.Load(path, &c)
	if err != nil {
		return nil, err
	}
	if c.Host == "" {
		return nil, fmt.Errorf("%s: host is required (the FQDN the topology names for this host)", path)
	}
	if c.Site == "" {
		return nil, fmt.Errorf("%s: site is required", path)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return nil, fmt.Errorf("%s: listen %q is not host:port: %v", path, c.Listen, err)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return nil, fmt.Errorf("%s: metrics_listen %q is not host:port: %v", path, c.MetricsListen, err)
		}
	}
	if c.StateDir == "" {
		return nil, fmt.Errorf("%s: state_dir is required", path)
	}
	c.StateDir = cfgfile.Resolve(path, c.StateDir)
	if err := c.TLS.Resolve(path); err != nil {
		return nil, err
	}
	if c.path, err = filepath.Abs(path); err != nil {
		return nil, err
	}
	c.Plugins.Dir = cfgfile.Resolve(path, c.Plugins.Dir)
	if c.Plugins.Builtin != nil {
		for _, n := range *c.Plugins.Builtin {
			if _, ok := plugins.New(n); !ok {
				return nil, fmt.Errorf("%s: plugins.builtin: %q is not a built-in plugin (built-in: %s)", path, n, strings.Join(plugins.Names(), ", "))
			}
		}
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = cfgfile.Duration(10e9)
	}
	return &c, nil
}
