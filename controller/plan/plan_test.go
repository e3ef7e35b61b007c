package plan_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/topology"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// planTime is the fixed plan time of the golden files.
var planTime = time.Date(2026, 11, 29, 2, 30, 0, 0, time.UTC)

// loadTopology loads one of the topology package's valid examples.
func loadTopology(t *testing.T, name string) *topology.Topology {
	t.Helper()
	topo, err := topology.Load(filepath.Join("..", "topology", "testdata", "valid", name+".yaml"))
	require.NoError(t, err)
	return topo
}

func request(topo *topology.Topology, kind plan.Kind) plan.Request {
	return plan.Request{Kind: kind, Pool: topo.Pool, Now: planTime}
}

func build(t *testing.T, topo *topology.Topology, f plan.Facts, r plan.Request) *plan.Plan {
	t.Helper()
	p, err := plan.Build(topo, f, r)
	require.NoError(t, err)
	require.NoError(t, plan.Validate(topo, p))
	return p
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./controller/plan/ -update to create it")
	if string(want) == string(got) {
		return
	}
	wl, gl := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			t.Fatalf("%s differs from line %d (review the change, then run with -update):\nwant: %s\ngot:  %s", path, i+1, w, g)
		}
	}
}

func TestBuild_golden(t *testing.T) {
	for _, topoName := range []string{"lab", "single-server-per-site", "no-compliance-no-mirrors"} {
		for _, kind := range plan.Kinds() {
			t.Run(topoName+"/"+string(kind), func(t *testing.T) {
				topo := loadTopology(t, topoName)
				p := build(t, topo, plan.Facts{}, request(topo, kind))
				golden(t, topoName+"."+string(kind)+".table.golden", []byte(p.Table()))
				js, err := p.JSON()
				require.NoError(t, err)
				golden(t, topoName+"."+string(kind)+".json.golden", append(js, '\n'))
			})
		}
	}
}

func TestPlan_JSON_roundTrip(t *testing.T) {
	topo := loadTopology(t, "lab")
	for _, kind := range plan.Kinds() {
		p := build(t, topo, plan.Facts{}, request(topo, kind))
		js, err := json.Marshal(p)
		require.NoError(t, err)
		var back plan.Plan
		require.NoError(t, json.Unmarshal(js, &back))
		require.Equal(t, *p, back, kind)
	}
}
