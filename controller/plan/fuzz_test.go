package plan_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/topology"
)

// FuzzBuild_request checks the values an operator types on the command
// line (chatdr plan/run --pool, --reason with --force-pool-state) on their
// way to the steps that reach SQL Server and the Management Shell: a pool
// other than the topology's is ErrUnknownPool; a force without a reason is
// ErrBadRequest; a built plan is valid, names the topology's pool (never
// the typed text) and carries the reason only in its notes, never in a
// step's parameters.
func FuzzBuild_request(f *testing.F) {
	topo, err := topology.Load(filepath.Join("..", "topology", "testdata", "valid", "lab.yaml"))
	require.NoError(f, err)
	for _, s := range []string{topo.Pool, strings.ToUpper(topo.Pool), " " + topo.Pool + " ", "other.contoso.com", "", topo.Pool + "'; DROP DATABASE mgc; --", "$(Remove-Item C:\\)"} {
		f.Add(s, "maintenance window; ticket CHG-1234", uint8(0))
		f.Add(s, "", uint8(1))
		f.Add(s, "x'); Set-CsPersistentChatState -PoolState FailedOver; ('", uint8(2))
	}
	kinds := []plan.Kind{plan.FailoverPlanned, plan.FailoverDisaster, plan.Failback}
	f.Fuzz(func(t *testing.T, pool, reason string, kind uint8) {
		r := plan.Request{Kind: kinds[int(kind)%len(kinds)], Pool: pool, Now: planTime}
		r.Force.PoolState = true
		r.Force.Reason = reason
		p, err := plan.Build(topo, plan.Facts{}, r)
		if !strings.EqualFold(strings.TrimSpace(pool), topo.Pool) {
			require.ErrorIs(t, err, plan.ErrUnknownPool)
			return
		}
		if strings.TrimSpace(reason) == "" {
			require.ErrorIs(t, err, plan.ErrBadRequest)
			return
		}
		if err != nil {
			require.True(t, errors.Is(err, plan.ErrRefused) || errors.Is(err, plan.ErrBadRequest), "%v", err)
			return
		}
		require.NoError(t, plan.Validate(topo, p))
		require.Equal(t, topo.Pool, p.Pool)
		for _, g := range p.Groups {
			for _, s := range g.Steps {
				b, err := json.Marshal(s.Params)
				require.NoError(t, err)
				var params map[string]any
				require.NoError(t, json.Unmarshal(b, &params))
				walkStrings(params, func(v string) {
					require.NotEqual(t, reason, v, "step %s", s.ID)
					if len(reason) >= 16 {
						require.NotContains(t, v, reason, "step %s", s.ID)
					}
					if pool != topo.Pool && len(pool) >= 16 {
						require.NotContains(t, v, pool, "step %s", s.ID)
					}
				})
			}
		}
	})
}

func walkStrings(v any, fn func(string)) {
	switch x := v.(type) {
	case string:
		fn(x)
	case []any:
		for _, e := range x {
			walkStrings(e, fn)
		}
	case map[string]any:
		for _, e := range x {
			walkStrings(e, fn)
		}
	}
}
