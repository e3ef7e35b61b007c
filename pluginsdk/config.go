package pluginsdk

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// AgentConfigEnv names the environment variable through which the agent
// gives its plugins the absolute path of its configuration file.
const AgentConfigEnv = "CHATDR_AGENT_CONFIG"

// AgentContext is what a plugin learns about its agent.
type AgentContext struct {
	// ConfigPath is the agent's configuration file.
	ConfigPath string
	// Host and Site are the agent's host FQDN and site.
	Host, Site string
	// StateDir is the agent's state directory; a plugin keeps its own state
	// in a subdirectory named after itself.
	StateDir string
}

// ErrNoAgentConfig means the plugin was not started by an agent.
var ErrNoAgentConfig = errors.New("no agent configuration: " + AgentConfigEnv + " is not set (plugins are started by chatdr-agent)")

// LoadConfig reads the agent's configuration file and decodes the section
// plugin_config.<name> into v, strictly (an unknown field is an error). A
// missing section leaves v as it is. Relative paths inside the section are
// the plugin's to resolve against filepath.Dir(AgentContext.ConfigPath).
func LoadConfig(name string, v any) (AgentContext, error) {
	path := os.Getenv(AgentConfigEnv)
	if path == "" {
		return AgentContext{}, ErrNoAgentConfig
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return AgentContext{}, fmt.Errorf("read agent config: %w", err)
	}
	var doc struct {
		Host         string               `yaml:"host"`
		Site         string               `yaml:"site"`
		StateDir     string               `yaml:"state_dir"`
		PluginConfig map[string]yaml.Node `yaml:"plugin_config"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return AgentContext{}, fmt.Errorf("%s: %w", path, err)
	}
	ac := AgentContext{ConfigPath: path, Host: doc.Host, Site: doc.Site, StateDir: doc.StateDir}
	if ac.StateDir != "" && !filepath.IsAbs(ac.StateDir) {
		ac.StateDir = filepath.Join(filepath.Dir(path), ac.StateDir)
	}
	node, ok := doc.PluginConfig[name]
	if !ok {
		return ac, nil
	}
	// Re-encode the section to decode it strictly with line numbers.
	b, err := yaml.Marshal(&node)
	if err != nil {
		return ac, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return ac, fmt.Errorf("%s: plugin_config.%s: %w", path, name, err)
	}
	return ac, nil
}
