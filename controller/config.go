// Package controller is chatdr-controller: it holds the topology, keeps a
// connection to every agent, and serves the ControllerService API that the
// chatdr CLI uses.
package controller

import (
	"fmt"
	"net"
	"time"

	"github.com/chatdr/chatdr/internal/cfgfile"
)

// Config is the controller's configuration file (controller.yaml).
type Config struct {
	// Listen is the gRPC address (host:port) of the API.
	Listen string `yaml:"listen"`
	// MetricsListen is the address of the Prometheus /metrics endpoint; empty disables it.
	MetricsListen string `yaml:"metrics_listen"`
	// Topology is the topology file.
	Topology string `yaml:"topology"`
	// StateDir holds the controller's store.
	StateDir string `yaml:"state_dir"`
	// TLS names the CA and the controller's certificate.
	TLS cfgfile.TLS `yaml:"tls"`
	// Fleet tunes how agents are asked for status.
	Fleet FleetConfig `yaml:"fleet"`
	// ShutdownGrace bounds how long a graceful stop waits for calls in flight.
	ShutdownGrace cfgfile.Duration `yaml:"shutdown_grace"`
}

// FleetConfig tunes the fleet-status fan-out.
type FleetConfig struct {
	// AgentTimeout is the default per-agent deadline (default 2s).
	AgentTimeout cfgfile.Duration `yaml:"agent_timeout"`
	// MaxAgentTimeout caps a deadline asked for by a client (default 30s).
	MaxAgentTimeout cfgfile.Duration `yaml:"max_agent_timeout"`
	// Concurrency bounds the agent calls in flight at once (default 64).
	Concurrency int `yaml:"concurrency"`
}

// LoadConfig reads and checks a controller configuration file, applying defaults.
func LoadConfig(path string) (*Config, error) {
	var c Config
	if err := cfgfile.Load(path, &c); err != nil {
		return nil, err
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return nil, fmt.Errorf("%s: listen %q is not host:port: %v", path, c.Listen, err)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return nil, fmt.Errorf("%s: metrics_listen %q is not host:port: %v", path, c.MetricsListen, err)
		}
	}
	if c.Topology == "" {
		return nil, fmt.Errorf("%s: topology is required (the topology file of the deployment)", path)
	}
	if c.StateDir == "" {
		return nil, fmt.Errorf("%s: state_dir is required", path)
	}
	c.Topology = cfgfile.Resolve(path, c.Topology)
	c.StateDir = cfgfile.Resolve(path, c.StateDir)
	if err := c.TLS.Resolve(path); err != nil {
		return nil, err
	}
	if c.Fleet.AgentTimeout == 0 {
		c.Fleet.AgentTimeout = cfgfile.Duration(2 * time.Second)
	}
	if c.Fleet.MaxAgentTimeout == 0 {
		c.Fleet.MaxAgentTimeout = cfgfile.Duration(30 * time.Second)
	}
	if c.Fleet.Concurrency == 0 {
		c.Fleet.Concurrency = 64
	}
	if c.Fleet.Concurrency < 0 {
		return nil, fmt.Errorf("%s: fleet.concurrency must be positive", path)
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = cfgfile.Duration(10 * time.Second)
	}
	return &c, nil
}
