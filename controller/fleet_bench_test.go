package controller_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/chatdr/chatdr/controller"
	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/internal/pki"
	"github.com/chatdr/chatdr/internal/testutil"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

// BenchmarkFleetStatus measures one GetFleetStatus call, asked with the viewer
// certificate, over N in-process agents (each a real agent.Run serving gRPC
// with mutual TLS on 127.0.0.1) and an in-process controller with the default
// fleet settings (2 s per-agent deadline, 64 calls in flight).
//
// A topology names at most 12 agents, so the controller is started with
// RunWithAgents (export_test.go), which serves the same Server as Run over an
// agent list built here.
//
// Reported, besides ns/op: p50-ms and p99-ms of one call (nearest rank; with
// -benchtime 50x the p99 is the slowest call), cold-ms (the first call, which
// dials and handshakes every agent, not part of ns/op), heap-MB (HeapInuse of
// the whole process after the run: agents included), ctl-heap-MB (HeapInuse
// after the run minus before the controller started: the controller, its
// store, and both ends of its N agent connections), fanout-p50-ms (the
// controller's own measure of the fan-out and store write, from the
// response's elapsed field), resp-KB (size of one response) and missed
// (agent answers that missed the per-agent deadline over the whole run; 0
// unless the machine is starved).
func BenchmarkFleetStatus(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) { benchFleetStatus(b, n) })
	}
}

func benchFleetStatus(b *testing.B, n int) {
	goroutinesBefore := runtime.NumGoroutine()
	tlsDir := testutil.NewTLSDir(b)
	specs := make([]testutil.AgentSpec, n)
	agents := make([]topology.Agent, n)
	for i := range specs {
		site := []string{"dc1", "dc2"}[i%2]
		host := fmt.Sprintf("pc%d.%s.bench.chatdr.test", i+1, site)
		specs[i] = testutil.AgentSpec{Host: host, Site: site, Roles: []string{topology.RoleChatServer}}
		agents[i] = topology.Agent{Host: host, Site: site, Roles: []string{topology.RoleChatServer}}
	}
	heapBeforeAgents := heapInuse()
	start := time.Now()
	running := testutil.StartAgents(b, tlsDir, specs)
	b.Logf("%d agents started in %s", n, time.Since(start).Round(time.Millisecond))
	for i, d := range running {
		agents[i].Address = d.Addr
	}
	heapBefore := heapInuse()
	b.Logf("agents' heap: %.1f MB (%.0f KB per agent)", mb(heapBefore-heapBeforeAgents), float64(heapBefore-heapBeforeAgents)/1024/float64(n))

	dir := b.TempDir()
	cfgPath, err := testutil.WriteControllerConfig(dir, tlsDir, testutil.ControllerSpec{
		Topology: filepath.Join(dir, "unused.yaml"), StateDir: filepath.Join(dir, "state"),
	})
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := controller.LoadConfig(cfgPath)
	if err != nil {
		b.Fatal(err)
	}
	topo := &topology.Topology{Pool: "pchat01.bench.chatdr.test", Sites: []topology.Site{
		{Name: "dc1", Role: topology.SitePrimary}, {Name: "dc2", Role: topology.SiteBackup},
	}}
	ctx, stopController := context.WithCancel(context.Background())
	defer stopController()
	addrc, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- controller.RunWithAgents(ctx, cfg, topo, agents, slog.New(slog.DiscardHandler), func(a string) { addrc <- a })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		b.Fatalf("controller: %v", err)
	}
	cc := testutil.DialAs(b, tlsDir, "viewer", pki.RoleController, addr)
	client := controllerv1.NewControllerServiceClient(cc)

	call := func() (*controllerv1.GetFleetStatusResponse, time.Duration) {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		t0 := time.Now()
		resp, err := client.GetFleetStatus(cctx, &controllerv1.GetFleetStatusRequest{})
		d := time.Since(t0)
		if err != nil {
			b.Fatalf("GetFleetStatus: %v", err)
		}
		return resp, d
	}

	// The first call dials and handshakes every agent; on a loaded machine a
	// few handshakes may miss the deadline, so ask until all answer.
	resp, cold := call()
	deadline := time.Now().Add(time.Minute)
	for reachable(resp) != n {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d agents reachable after a minute", reachable(resp), n)
		}
		resp, _ = call()
	}

	lat := make([]time.Duration, 0, b.N)
	fanout := make([]time.Duration, 0, b.N)
	missed := 0 // answers that missed the per-agent deadline
	for b.Loop() {
		resp, d := call()
		missed += n - reachable(resp)
		lat = append(lat, d)
		fanout = append(fanout, resp.GetElapsed().AsDuration())
	}

	heapAfter := heapInuse()
	slices.Sort(lat)
	slices.Sort(fanout)
	b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
	b.ReportMetric(ms(percentile(fanout, 50)), "fanout-p50-ms")
	b.ReportMetric(ms(cold), "cold-ms")
	b.ReportMetric(mb(heapAfter), "heap-MB")
	b.ReportMetric(mb(heapAfter-heapBefore), "ctl-heap-MB")
	b.ReportMetric(float64(proto.Size(resp))/1024, "resp-KB")
	b.ReportMetric(float64(missed), "missed")
	if missed > 0 {
		// Only a starved machine makes a local agent miss its deadline;
		// the latencies are still those of whole calls, but say so.
		b.Logf("%d agent answers missed the %s deadline (machine overloaded?)", missed, time.Duration(cfg.Fleet.AgentTimeout))
	}

	// Shut everything down here rather than in cleanups, to check that
	// nothing is left running.
	cc.Close()
	stopController()
	if err := <-done; err != nil {
		b.Errorf("controller: %v", err)
	}
	if err := testutil.StopAll(running); err != nil {
		b.Errorf("stop agents: %v", err)
	}
	deadline = time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > goroutinesBefore+5 {
		if time.Now().After(deadline) {
			b.Errorf("%d goroutines still running 30s after shutdown (%d before the benchmark)", runtime.NumGoroutine(), goroutinesBefore)
			break
		}
		<-tick.C
	}
}

// percentile returns the nearest-rank p-th percentile of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 × n)
	return sorted[max(rank, 1)-1]
}

// heapInuse returns the heap in use after a garbage collection.
func heapInuse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mb(bytes int64) float64 { return float64(bytes) / (1 << 20) }
