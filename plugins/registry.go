// Package plugins lists the built-in action plugins that chatdr-agent serves
// by re-executing itself as `chatdr-agent plugin NAME`.
package plugins

import (
	"sort"

	"github.com/chatdr/chatdr/plugins/csshell"
	"github.com/chatdr/chatdr/plugins/mssql"
	"github.com/chatdr/chatdr/plugins/service"
	"github.com/chatdr/chatdr/pluginsdk"
)

// builtin maps a plugin name to its constructor.
var builtin = map[string]func() pluginsdk.Plugin{
	"csshell": csshell.New,
	"mssql":   mssql.New,
	"service": service.New,
}

// New returns a new instance of the built-in plugin name.
func New(name string) (pluginsdk.Plugin, bool) {
	f, ok := builtin[name]
	if !ok {
		return nil, false
	}
	return f(), true
}

// Names returns the names of the built-in plugins, sorted.
func Names() []string {
	out := make([]string, 0, len(builtin))
	for n := range builtin {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
