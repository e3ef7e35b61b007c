//go:build linux

package e2e

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatdr/chatdr/internal/testutil"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

// BenchmarkAgent_pluginActionOverhead measures one Execute of a plugin
// action that does no work (service.list with no services) through a real
// agent process and its real plugin process: gRPC with mTLS, the journal,
// the plugin hop, and back. It reports p50 and p99.
func BenchmarkAgent_pluginActionOverhead(b *testing.B) {
	tlsDir := testutil.NewTLSDir(b)
	a := startAgent(b, tlsDir, "bench", []string{"service"}, map[string]any{"service": map[string]any{"backend": "process"}})
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		r, err := a.execute(fmt.Sprintf("bench/%d/%d", time.Now().UnixNano(), i), "service.list", map[string]any{}, 0)
		if err != nil || r.result.GetState() != agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED {
			b.Fatalf("service.list: %v %v", err, r.result.GetError())
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkAgent_idleRSS starts an agent with its three built-in plugins
// and reports the resident memory of the agent and of its plugin processes
// once idle.
func BenchmarkAgent_idleRSS(b *testing.B) {
	tlsDir := testutil.NewTLSDir(b)
	a := startAgent(b, tlsDir, "bench", []string{"mssql", "service", "csshell"}, map[string]any{"service": map[string]any{"backend": "process"}})
	for i := 0; i < b.N; i++ {
		if _, err := a.execute(fmt.Sprintf("rss/%d/%d", time.Now().UnixNano(), i), "service.list", map[string]any{}, 0); err != nil {
			b.Fatal(err)
		}
	}
	agentRSS := rssKB(a.cmd.Process.Pid)
	var plugins int64
	for _, pid := range a.pluginPIDs() {
		plugins += rssKB(pid)
	}
	b.ReportMetric(float64(agentRSS)/1024, "agent-MB")
	b.ReportMetric(float64(plugins)/1024, "plugins-MB")
	b.ReportMetric(float64(len(a.pluginPIDs())), "plugins")
}

// rssKB reads VmRSS of pid in KiB.
func rssKB(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}
