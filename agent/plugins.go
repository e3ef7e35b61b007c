package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/chatdr/chatdr/agent/pluginhost"
	"github.com/chatdr/chatdr/plugins"
	"github.com/chatdr/chatdr/pluginsdk"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

// thirdPartyPrefix starts the file name of a third-party plugin binary.
const thirdPartyPrefix = "chatdr-plugin-"

// pluginSpecs returns how to start the plugins the config selects: built-in
// ones by re-executing this binary, third-party ones from the plugin
// directory (each started only if pinned; the host refuses the others).
func pluginSpecs(cfg *Config) ([]pluginhost.Spec, error) {
	var specs []pluginhost.Spec
	names := plugins.Names()
	if cfg.Plugins.Builtin != nil {
		names = *cfg.Plugins.Builtin
	}
	if len(names) > 0 {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the agent binary to serve built-in plugins: %w", err)
		}
		for _, n := range names {
			specs = append(specs, pluginhost.Spec{Name: n, Path: self, Args: []string{"plugin", n}, Builtin: true})
		}
	}
	if cfg.Plugins.Dir != "" {
		entries, err := os.ReadDir(cfg.Plugins.Dir)
		if err != nil {
			return nil, fmt.Errorf("plugin directory: %w", err)
		}
		for _, e := range entries {
			name, ok := strings.CutPrefix(e.Name(), thirdPartyPrefix)
			if !ok || !e.Type().IsRegular() {
				continue
			}
			if runtime.GOOS == "windows" {
				name = strings.TrimSuffix(name, ".exe")
			}
			if name == builtinPlugin || pluginhost.PluginFor(name+".x") != name {
				continue
			}
			specs = append(specs, pluginhost.Spec{Name: name, Path: filepath.Join(cfg.Plugins.Dir, e.Name()), SHA256: cfg.Plugins.Pinned[name]})
		}
	}
	for i := range specs {
		specs[i].Env = append(specs[i].Env, pluginsdk.AgentConfigEnv+"="+cfg.path)
	}
	for name := range cfg.Plugins.Pinned {
		found := false
		for _, s := range specs {
			found = found || s.Name == name
		}
		if !found {
			return nil, fmt.Errorf("plugins.pinned names %q but %s has no %s%s", name, cfg.Plugins.Dir, thirdPartyPrefix, name)
		}
	}
	return specs, nil
}

// pluginActions returns an executor Action for every action of every
// running plugin.
func pluginActions(host *pluginhost.Host) []Action {
	var out []Action
	for _, p := range host.Plugins() {
		if p.Info == nil {
			continue
		}
		pinfo := pluginsdk.InfoToProto(p.Info)
		for i, spec := range p.Info.Actions {
			out = append(out, Action{Info: pinfo.GetActions()[i], Run: pluginRunner(host, spec)})
		}
	}
	return out
}

func pluginRunner(host *pluginhost.Host, spec pluginsdk.ActionSpec) func(context.Context, *agentv1.ExecuteRequest, Emitter) (*structpb.Struct, *agentv1.ActionError) {
	return func(ctx context.Context, req *agentv1.ExecuteRequest, emit Emitter) (*structpb.Struct, *agentv1.ActionError) {
		params := pluginsdk.Params(pluginsdk.FromStruct(req.GetParams()))
		if err := spec.Validate(params); err != nil {
			return nil, &agentv1.ActionError{Code: "bad_params", Message: err.Error()}
		}
		out, err := host.Execute(ctx, &pluginsdk.Request{
			Action: req.GetAction(), Params: params,
			Timeout: req.GetTimeout().AsDuration(), IdempotencyKey: req.GetIdempotencyKey(),
		}, emit)
		if err != nil {
			return nil, pluginsdk.ErrorToProto(err)
		}
		s, err := pluginsdk.ToStruct(out)
		if err != nil {
			return nil, &agentv1.ActionError{Code: "bad_output", Message: err.Error()}
		}
		return s, nil
	}
}

// pluginInfos returns what GetInfo reports of the plugins.
func pluginInfos(host *pluginhost.Host) []*agentv1.PluginInfo {
	var out []*agentv1.PluginInfo
	for _, p := range host.Plugins() {
		pi := &agentv1.PluginInfo{Name: p.Name}
		if p.Info != nil {
			pi = pluginsdk.InfoToProto(p.Info)
		}
		if p.Err != nil {
			pi.LoadError = p.Err.Error()
		}
		if p.Starts > 1 {
			pi.Restarts = uint32(p.Starts - 1)
		}
		out = append(out, pi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

// probeTimeout bounds one plugin probe.
const probeTimeout = 30 * time.Second
