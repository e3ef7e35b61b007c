package plan_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/plugins/csshell"
	"github.com/chatdr/chatdr/plugins/mssql"
	"github.com/chatdr/chatdr/pluginsdk"
)

// TestPlans_matchPluginActions checks every step of every plan against the
// action specs the built-in plugins declare: the action exists, the
// parameters validate (required present, none unknown, types right), and
// a destructive action is marked destructive in the plan.
func TestPlans_matchPluginActions(t *testing.T) {
	specs := map[string]pluginsdk.ActionSpec{}
	for _, p := range []pluginsdk.Plugin{mssql.New(), csshell.New()} {
		info, err := p.Info(t.Context())
		require.NoError(t, err)
		for _, a := range info.Actions {
			specs[a.Name] = a
		}
	}
	for _, name := range []string{"lab", "single-server-per-site", "no-compliance-no-mirrors", "low-latency"} {
		topo := loadTopology(t, name)
		for _, kind := range plan.Kinds() {
			p := build(t, topo, plan.Facts{}, request(topo, kind))
			all, _ := steps(p)
			for _, s := range all {
				spec, ok := specs[s.Action]
				require.True(t, ok, "%s/%s: step %s calls %s, which no built-in plugin offers", name, kind, s.ID, s.Action)
				require.NoError(t, spec.Validate(s.Params), "%s/%s: step %s", name, kind, s.ID)
				if spec.Destructive {
					require.True(t, s.Destructive, "%s/%s: step %s calls destructive %s", name, kind, s.ID, s.Action)
				}
				if spec.DefaultTimeout > 0 {
					require.LessOrEqual(t, spec.DefaultTimeout, s.Timeout, "step %s: a timeout below the plugin's default %s", s.ID, spec.DefaultTimeout)
				}
			}
		}
	}
}
