//go:build !windows

package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/internal/pki"
	"github.com/chatdr/chatdr/lab"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

// benchRun is the part of `run show -o json` the overhead needs.
type benchRun struct {
	Started string `json:"started"`
	Ended   string `json:"ended"`
	Steps   []struct {
		ID         string `json:"id"`
		Host       string `json:"host"`
		GroupIndex int    `json:"group_index"`
		Attempts   int    `json:"attempts"`
		State      string `json:"state"`
	} `json:"steps"`
}

// overhead measures the orchestration overhead of a finished run (issue
// 5): wall time minus the critical path of agent-side action time, per
// step. A step's agent-side time runs from its first attempt's start to
// its last attempt's end as the agent recorded them (GetExecution), so the
// waits between the attempts of a polling step (a local store that has
// not caught up yet) count as the step's own time, not as overhead. The
// critical path is the sum over groups of the longest step of the group
// (steps of a group run in parallel). Skipped steps (unreachable hosts)
// cost no agent time.
func overhead(b *testing.B, env []string, agents map[string]agentv1.AgentServiceClient, runID string) (perStep time.Duration, steps int, wall time.Duration) {
	b.Helper()
	r := chatdr(b, env, "run", "show", runID, "-o", "json")
	var run benchRun
	if err := json.Unmarshal([]byte(r.stdout), &run); err != nil {
		b.Fatalf("run show: %v\n%s", err, r.stdout)
	}
	started, err1 := time.Parse(time.RFC3339Nano, run.Started)
	ended, err2 := time.Parse(time.RFC3339Nano, run.Ended)
	if err1 != nil || err2 != nil {
		b.Fatalf("run times %q %q", run.Started, run.Ended)
	}
	wall = ended.Sub(started)
	longest := map[int]time.Duration{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, s := range run.Steps {
		if s.State != "succeeded" || s.Attempts == 0 {
			continue
		}
		var first, last time.Time
		for a := 1; a <= s.Attempts; a++ {
			res, err := agents[s.Host].GetExecution(ctx, &agentv1.GetExecutionRequest{IdempotencyKey: fmt.Sprintf("%s/%s/%d", runID, s.ID, a)})
			if err != nil || res.GetResult() == nil {
				b.Fatalf("GetExecution %s/%s/%d on %s: %v", runID, s.ID, a, s.Host, err)
			}
			st, en := res.GetResult().GetStartedAt().AsTime(), res.GetResult().GetEndedAt().AsTime()
			if first.IsZero() || st.Before(first) {
				first = st
			}
			if en.After(last) {
				last = en
			}
		}
		longest[s.GroupIndex] = max(longest[s.GroupIndex], last.Sub(first))
	}
	var critical time.Duration
	for _, d := range longest {
		critical += d
	}
	return (wall - critical) / time.Duration(len(run.Steps)), len(run.Steps), wall
}

// BenchmarkLab_orchestrationOverhead runs a planned failover and its
// failback on the lab (real processes, chat simulators writing) and
// reports the orchestration overhead per step (target < 20 ms). Run with
// -benchtime 1x: each iteration is a failover and a failback.
func BenchmarkLab_orchestrationOverhead(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "lab")
	b.Cleanup(func() { _, _ = lab.Down(dir, 5*time.Second) })
	up := chatdr(b, nil, "lab", "up", "--dir", dir, "--bin", binDir)
	if up.code != 0 {
		b.Fatalf("lab up: %s", up.stderr)
	}
	env := labEnv(up.stdout)
	operator := slices.Concat(env, []string{"CHATDR_IDENTITY=operator"})
	st, err := lab.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	topo, err := topology.Load(st.Topology)
	if err != nil {
		b.Fatal(err)
	}
	mat, err := pki.LoadMaterial(filepath.Join(st.TLSDir, pki.CACertFile), filepath.Join(st.TLSDir, "controller.crt"), filepath.Join(st.TLSDir, "controller.key"))
	if err != nil {
		b.Fatal(err)
	}
	agents := map[string]agentv1.AgentServiceClient{}
	for _, a := range topo.Agents() {
		cc, err := grpc.NewClient(a.Address, grpc.WithTransportCredentials(credentials.NewTLS(mat.ClientConfig(pki.RoleAgent))))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cc.Close() })
		agents[a.Host] = agentv1.NewAgentServiceClient(cc)
	}
	waitFirstAck(b, dir)
	n := 0
	var total time.Duration
	var steps int
	b.ResetTimer()
	for b.Loop() {
		for _, kind := range []string{"failover", "failback"} {
			n++
			runID := fmt.Sprintf("run-%d", n)
			args := []string{kind, "--pool", lab.Pool, "--yes", "--wait"}
			if kind == "failover" {
				args = append(args, "--mode", "planned")
			}
			if r := chatdr(b, operator, args...); r.code != 0 {
				b.Fatalf("%s: exit %d\n%s\n%s", kind, r.code, r.stdout, r.stderr)
			}
			per, k, wall := overhead(b, operator, agents, runID)
			b.Logf("%s %s: %d steps, wall %v, overhead %v per step", kind, runID, k, wall.Round(time.Millisecond), per.Round(100*time.Microsecond))
			total += per * time.Duration(k)
			steps += k
			if r := chatdr(b, operator, "run", "ack", runID); r.code != 0 {
				b.Fatalf("ack %s: %s", runID, r.stderr)
			}
		}
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(steps), "ms-overhead/step")
}
