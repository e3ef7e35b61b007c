package controller

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/fleet"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/store"
	"github.com/chatdr/chatdr/controller/topology"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

// Hosts of controller/topology/testdata/valid/lab.yaml.
const (
	pfSQLP  = "sql1.dc1.lab.chatdr.test"
	pfSQLPM = "sql2.dc1.lab.chatdr.test"
	pfSQLB  = "sql1.dc2.lab.chatdr.test"
	pfSQLBM = "sql2.dc2.lab.chatdr.test"
	pfShell = "pc5.dc2.lab.chatdr.test"
)

func labTopology(t *testing.T) *topology.Topology {
	t.Helper()
	topo, err := topology.Load(filepath.Join("topology", "testdata", "valid", "lab.yaml"))
	require.NoError(t, err)
	return topo
}

// world is what the agents of the lab report, in a form a test case can
// change before it becomes fleet statuses.
type world struct {
	unreachable  map[string]bool
	db           map[string]map[string]any // mssql.databases entry of mgc, by host
	agentRunning map[string]bool           // mssql.server, by SQL host
	ls           map[string]any            // mssql.log_shipping entry of mgc on the backup
	lsError      string                    // mssql.log_shipping fails with this
	poolState    string
	active       []string
}

func mgc(state string) map[string]any {
	if state == "" {
		return map[string]any{"database": "mgc", "exists": false}
	}
	return map[string]any{"database": "mgc", "exists": true, "state": state, "standby": false, "read_only": false}
}

// normalWorld is a healthy pool in the Normal state: mgc writable on the
// primary, RESTORING on the backup, log shipping two minutes behind.
func normalWorld() *world {
	pm := mgc("RESTORING")
	pm["mirroring_role"] = "MIRROR"
	return &world{
		unreachable:  map[string]bool{},
		db:           map[string]map[string]any{pfSQLP: mgc("ONLINE"), pfSQLPM: pm, pfSQLB: mgc("RESTORING"), pfSQLBM: mgc("")},
		agentRunning: map[string]bool{pfSQLP: true, pfSQLPM: true, pfSQLB: true, pfSQLBM: true},
		ls: map[string]any{"database": "mgc", "role": "secondary", "last_copied_file": "mgc_20261129035000.trn",
			"last_restored_file": "mgc_20261129035000.trn", "last_restored_latency_minutes": 1.0, "files_waiting": 0.0,
			"newest_backup_held": "2026-11-29T03:50:00Z", "estimated_data_loss_seconds": 120.0,
			"source_dir": "/tmp/chatdr-lab/share/pchat-ls", "source_readable": true,
			"copy_dir": "/tmp/chatdr-lab/dc2/lscopy/mgc", "copy_dir_writable": true},
		poolState: "Normal",
		active:    []string{"pc1.dc1.lab.chatdr.test", "pc2.dc1.lab.chatdr.test", "pc3.dc1.lab.chatdr.test", "pc4.dc1.lab.chatdr.test"},
	}
}

// failedOverWorld is the pool after a disaster failover, the primary site
// rebuilt: mgc writable on the backup and (reinstalled, empty) on the
// primary, log shipping removed.
func failedOverWorld() *world {
	w := normalWorld()
	w.db[pfSQLP] = mgc("ONLINE")
	w.db[pfSQLPM] = mgc("")
	w.db[pfSQLB] = mgc("ONLINE")
	w.ls = map[string]any{"database": "mgc", "role": "none", "source_dir": "/tmp/chatdr-lab/share/pchat-ls", "source_readable": true,
		"copy_dir": "/tmp/chatdr-lab/dc2/lscopy/mgc", "copy_dir_writable": true}
	w.poolState = "FailedOver"
	w.active = []string{"pc5.dc2.lab.chatdr.test", "pc6.dc2.lab.chatdr.test", "pc7.dc2.lab.chatdr.test", "pc8.dc2.lab.chatdr.test"}
	return w
}

func (w *world) unreach(site string, topo *topology.Topology) {
	for _, a := range topo.Agents() {
		if a.Site == site {
			w.unreachable[a.Host] = true
		}
	}
}

func pfFact(t *testing.T, name string, v map[string]any) *agentv1.Fact {
	t.Helper()
	s, err := structpb.NewStruct(v)
	require.NoError(t, err)
	return &agentv1.Fact{Name: name, Value: s}
}

func (w *world) statuses(t *testing.T, topo *topology.Topology) []fleet.Status {
	t.Helper()
	var out []fleet.Status
	for _, a := range topo.Agents() {
		st := fleet.Status{Agent: a, Reachable: !w.unreachable[a.Host]}
		if !st.Reachable {
			st.Err = errors.New("connection refused")
			out = append(out, st)
			continue
		}
		if d, ok := w.db[a.Host]; ok {
			st.Facts = append(st.Facts,
				pfFact(t, "mssql.server", map[string]any{"server_name": a.Host, "version": "12.0", "agent_running": w.agentRunning[a.Host]}),
				pfFact(t, "mssql.databases", map[string]any{"databases": []any{d}}))
			switch {
			case a.Host == pfSQLB && w.lsError != "":
				st.Facts = append(st.Facts, &agentv1.Fact{Name: "mssql.log_shipping", Error: &agentv1.ActionError{Message: w.lsError}})
			case a.Host == pfSQLB:
				st.Facts = append(st.Facts, pfFact(t, "mssql.log_shipping", map[string]any{"databases": []any{w.ls}}))
			}
		}
		if a.Host == pfShell {
			var list []any
			for _, s := range w.active {
				list = append(list, s)
			}
			st.Facts = append(st.Facts,
				pfFact(t, "csshell.cs.pool_state", map[string]any{"central": w.poolState}),
				pfFact(t, "csshell.cs.active_servers", map[string]any{"active_servers": list}))
		}
		out = append(out, st)
	}
	return out
}

// want is an expected check outcome: the check named (and about subject,
// when set) has the verdict and a reason containing every substring.
type want struct {
	name, subject string
	verdict       verdict
	reason        []string
}

func findCheck(checks []check, name, subject string) (check, bool) {
	for _, c := range checks {
		if c.Name == name && (subject == "" || c.Subject == subject) {
			return c, true
		}
	}
	return check{}, false
}

func TestPreflight_checks(t *testing.T) {
	topo := labTopology(t)
	now := time.Date(2026, 11, 29, 3, 52, 0, 0, time.UTC)
	running := &store.Run{ID: "run-7", Pool: topo.Pool, Kind: plan.FailoverDisaster, StartedBy: store.Actor{Name: "alice"},
		Created: now.Add(-time.Hour), Status: engine.RunStatus{State: engine.RunWaitingApproval}}
	succeeded := &store.Run{ID: "run-6", Pool: topo.Pool, Kind: plan.Failback, StartedBy: store.Actor{Name: "bob"},
		Created: now.Add(-48 * time.Hour), Status: engine.RunStatus{State: engine.RunSucceeded, Ended: now.Add(-47 * time.Hour)}}
	acked := &store.Run{ID: "run-5", Pool: topo.Pool, Kind: plan.FailoverPlanned, StartedBy: store.Actor{Name: "bob"},
		Status: engine.RunStatus{State: engine.RunAcknowledged, AcknowledgedBy: "carol"}}
	otherPool := &store.Run{ID: "run-9", Pool: "other.pool.test", Kind: plan.FailoverPlanned, Status: engine.RunStatus{State: engine.RunRunning}}

	tests := []struct {
		name  string
		kind  plan.Kind
		world func(w *world)
		// topo changes a copy of the lab topology.
		topo   func(t *topology.Topology)
		base   func() *world
		runs   []*store.Run
		goWant bool
		// allPass: every check not named in want passes (or is skipped).
		allPass bool
		want    []want
	}{
		{name: "planned failover, all good", kind: plan.FailoverPlanned, goWant: true, allPass: true,
			runs: []*store.Run{otherPool, acked},
			want: []want{
				{name: "previous_run_acknowledged", verdict: verdictPass, reason: []string{"run-5", "carol"}},
				{name: "log_shipping", verdict: verdictPass, reason: []string{"data-loss window 2m0s"}},
				{name: "agents_reachable", subject: "dc1", verdict: verdictPass, reason: []string{"all 6 agents answer"}},
			}},
		{name: "disaster failover with the primary alive", kind: plan.FailoverDisaster,
			want: []want{
				{name: "log_shipping", verdict: verdictWarn, reason: []string{"lose up to 2m0s", "approval"}},
				// The primary is alive: the disaster plan refuses that.
				{name: "primary_database", verdict: verdictFail, reason: []string{"--mode planned"}},
				{name: "plan", verdict: verdictFail, reason: []string{"not lost"}},
			}},
		{name: "split brain: backup ONLINE while the primary is writable", kind: plan.FailoverPlanned,
			world: func(w *world) { w.db[pfSQLB] = mgc("ONLINE") },
			want: []want{
				{name: "writable_copies", verdict: verdictFail, reason: []string{"split brain", pfSQLP, pfSQLB}},
				{name: "backup_database", subject: pfSQLB, verdict: verdictFail, reason: []string{"already ONLINE and writable"}},
				{name: "plan", verdict: verdictFail},
			}},
		{name: "split brain also for a disaster failover", kind: plan.FailoverDisaster,
			world: func(w *world) { w.db[pfSQLB] = mgc("ONLINE") },
			want:  []want{{name: "writable_copies", verdict: verdictFail, reason: []string{"split brain"}}}},
		{name: "SQL Server Agent stopped on the backup", kind: plan.FailoverPlanned,
			world: func(w *world) { w.agentRunning[pfSQLB] = false },
			want: []want{{name: "sql_agent_running", subject: pfSQLB, verdict: verdictFail,
				reason: []string{"not running on " + pfSQLB, "Start the SQL Server Agent service"}}}},
		{name: "more than four active servers", kind: plan.FailoverPlanned,
			world: func(w *world) { w.active = append(w.active, "pc5.dc2.lab.chatdr.test") },
			want: []want{{name: "active_servers", verdict: verdictFail,
				reason: []string{"5 servers are active", "pc5.dc2.lab.chatdr.test (site dc2)", "Set-CsPersistentChatActiveServer"}}}},
		{name: "active servers in the wrong site", kind: plan.FailoverPlanned,
			world: func(w *world) {
				w.active = []string{"pc5.dc2.lab.chatdr.test", "pc1.dc1.lab.chatdr.test", "pcX.dc9.test"}
			},
			want: []want{{name: "active_servers", verdict: verdictFail,
				reason: []string{"pool is Normal", "site dc1", "pc5.dc2.lab.chatdr.test (site dc2)", "pcX.dc9.test (not in the topology)"}}}},
		{name: "run in progress and an unacknowledged run", kind: plan.FailoverPlanned,
			runs: []*store.Run{otherPool, running, succeeded, acked},
			want: []want{
				{name: "run_in_progress", verdict: verdictFail, reason: []string{"run-7", "waiting_approval", "chatdr run cancel run-7"}},
				{name: "previous_run_acknowledged", verdict: verdictFail, reason: []string{"run-6", "chatdr run ack run-6"}},
			}},
		{name: "primary site unreachable: disaster failover warns", kind: plan.FailoverDisaster, goWant: true,
			world: func(w *world) { w.unreach("dc1", topo) },
			want: []want{
				{name: "agents_reachable", subject: "dc1", verdict: verdictWarn, reason: []string{pfSQLP, "connection refused", "fenced"}},
				{name: "agents_reachable", subject: "dc2", verdict: verdictPass},
				{name: "primary_database", verdict: verdictWarn, reason: []string{"Expected after the loss"}},
				{name: "writable_copies", verdict: verdictWarn, reason: []string{"fence it"}},
				{name: "plan", verdict: verdictPass},
			}},
		{name: "primary site unreachable: planned failover fails", kind: plan.FailoverPlanned,
			world: func(w *world) { w.unreach("dc1", topo) },
			want: []want{
				{name: "agents_reachable", subject: "dc1", verdict: verdictFail, reason: []string{pfSQLP, "tail-log backup", "--mode disaster"}},
				{name: "primary_database", verdict: verdictFail},
			}},
		{name: "backup site unreachable: disaster failover fails", kind: plan.FailoverDisaster,
			world: func(w *world) { w.unreachable[pfSQLB] = true },
			want: []want{
				{name: "agents_reachable", subject: "dc2", verdict: verdictFail, reason: []string{pfSQLB, "restores and recovers"}},
				{name: "sql_agent_running", subject: pfSQLB, verdict: verdictSkip},
				{name: "backup_database", verdict: verdictFail},
			}},
		{name: "lagging log shipping is a warning for a planned failover", kind: plan.FailoverPlanned, goWant: true,
			world: func(w *world) {
				w.ls["estimated_data_loss_seconds"] = 3 * 3600.0
				w.ls["files_waiting"] = 12.0
			},
			want: []want{{name: "log_shipping", verdict: verdictWarn, reason: []string{"loses nothing", "3h0m0s", "12 file(s) waiting"}}}},
		{name: "no log shipping on the backup", kind: plan.FailoverPlanned,
			world: func(w *world) { w.ls = map[string]any{"database": "mgc", "role": "none"} },
			want: []want{
				{name: "log_shipping", verdict: verdictFail, reason: []string{"not a log-shipping secondary"}},
				{name: "copy_dir_writable", verdict: verdictFail},
			}},
		{name: "log-shipping probe fails", kind: plan.FailoverDisaster,
			world: func(w *world) { w.lsError = "login failed" },
			want:  []want{{name: "log_shipping", verdict: verdictFail, reason: []string{"login failed"}}}},
		{name: "share lost with the primary site: disaster warns", kind: plan.FailoverDisaster, goWant: true,
			world: func(w *world) {
				w.unreach("dc1", topo)
				w.ls["source_readable"], w.ls["source_error"] = false, "no such host"
			},
			want: []want{{name: "backup_share_readable", verdict: verdictWarn, reason: []string{"no such host", "last copied file"}}}},
		{name: "share unreadable: planned failover fails", kind: plan.FailoverPlanned,
			world: func(w *world) { w.ls["source_readable"], w.ls["source_error"] = false, "access denied" },
			want:  []want{{name: "backup_share_readable", subject: pfSQLB, verdict: verdictFail, reason: []string{"access denied", "read/write"}}}},
		{name: "copy directory not writable", kind: plan.FailoverDisaster,
			world: func(w *world) { w.ls["copy_dir_writable"], w.ls["copy_dir_error"] = false, "disk full" },
			want:  []want{{name: "copy_dir_writable", subject: pfSQLB, verdict: verdictFail, reason: []string{"disk full", "/tmp/chatdr-lab/dc2/lscopy/mgc"}}}},
		{name: "pool already failed over", kind: plan.FailoverPlanned,
			world: func(w *world) { w.poolState = "FailedOver" },
			want: []want{
				{name: "pool_state", verdict: verdictFail, reason: []string{"already FailedOver"}},
				{name: "active_servers", verdict: verdictFail, reason: []string{"pool is FailedOver"}},
			}},
		{name: "failback, all good", kind: plan.Failback, base: failedOverWorld, goWant: true,
			want: []want{
				{name: "backup_database", verdict: verdictPass},
				{name: "primary_database", verdict: verdictWarn, reason: []string{"overwrites it WITH REPLACE"}},
				{name: "writable_copies", verdict: verdictWarn},
				{name: "sql_agent_running", subject: pfSQLP, verdict: verdictPass},
				{name: "log_shipping", verdict: verdictSkip},
				{name: "copy_dir_writable", verdict: verdictSkip},
				{name: "backup_share_readable", verdict: verdictPass},
				{name: "active_servers", verdict: verdictPass, reason: []string{"site dc2"}},
				{name: "plan", verdict: verdictPass},
			}},
		{name: "failback of a Normal pool", kind: plan.Failback,
			want: []want{
				{name: "pool_state", verdict: verdictFail, reason: []string{"is Normal"}},
				{name: "backup_database", verdict: verdictFail, reason: []string{"RESTORING", "did not fail over"}},
			}},
		{name: "failback onto a mirrored primary: the plan removes mirroring", kind: plan.Failback, base: failedOverWorld, goWant: true,
			world: func(w *world) { w.db[pfSQLP]["mirroring_role"] = "PRINCIPAL" },
			want:  []want{{name: "primary_database", subject: pfSQLP, verdict: verdictWarn, reason: []string{"removes mirroring first"}}}},
		{name: "failback onto a mirrored primary the topology does not know", kind: plan.Failback, base: failedOverWorld,
			topo:  func(t *topology.Topology) { t.SQL.PrimaryMirror = nil },
			world: func(w *world) { w.db[pfSQLP]["mirroring_role"] = "PRINCIPAL" },
			want:  []want{{name: "primary_database", subject: pfSQLP, verdict: verdictFail, reason: []string{"SET PARTNER OFF on " + pfSQLP}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := normalWorld
			if tt.base != nil {
				base = tt.base
			}
			w := base()
			if tt.world != nil {
				tt.world(w)
			}
			topo := topo
			if tt.topo != nil {
				copied := *topo
				tt.topo(&copied)
				topo = &copied
			}
			checks := preflight(preflightInput{Topo: topo, Kind: tt.kind, Statuses: w.statuses(t, topo), Runs: tt.runs, Now: now})
			var all strings.Builder
			for _, c := range checks {
				all.WriteString(c.Name + " " + c.Subject + " " + c.Verdict.String() + ": " + c.Reason + "\n")
				require.NotEmpty(t, c.Title, c.Name)
				require.NotEmpty(t, c.Reason, c.Name)
			}
			t.Log("\n" + all.String())
			for _, wt := range tt.want {
				c, ok := findCheck(checks, wt.name, wt.subject)
				require.True(t, ok, "no check %s %s in\n%s", wt.name, wt.subject, all.String())
				require.Equal(t, wt.verdict.String(), c.Verdict.String(), "%s %s: %s\nall:\n%s", wt.name, wt.subject, c.Reason, all.String())
				for _, r := range wt.reason {
					require.Contains(t, c.Reason, r, "%s %s", wt.name, wt.subject)
				}
			}
			if tt.allPass {
				for _, c := range checks {
					require.Contains(t, []verdict{verdictPass, verdictSkip}, c.Verdict, "%s %s: %s", c.Name, c.Subject, c.Reason)
				}
			}
			require.Equal(t, tt.goWant, preflightGo(checks), all.String())
		})
	}
}

// TestPreflight_checks_stableOrder: the same facts give the same checks in
// the same order, whatever order the agents answered in.
func TestPreflight_checks_stableOrder(t *testing.T) {
	topo := labTopology(t)
	st := normalWorld().statuses(t, topo)
	a := preflight(preflightInput{Topo: topo, Kind: plan.FailoverPlanned, Statuses: st, Now: time.Now()})
	rev := make([]fleet.Status, len(st))
	for i := range st {
		rev[len(st)-1-i] = st[i]
	}
	b := preflight(preflightInput{Topo: topo, Kind: plan.FailoverPlanned, Statuses: rev, Now: time.Now()})
	require.Equal(t, a, b)
}

func TestServer_Preflight_badRequests(t *testing.T) {
	s := &Server{topo: labTopology(t)}
	tests := []struct {
		name string
		req  *controllerv1.PreflightRequest
		code codes.Code
		msg  string
	}{
		{"unknown pool", &controllerv1.PreflightRequest{Pool: "nope.contoso.com"}, codes.NotFound, "pchat01.lab.chatdr.test"},
		{"no pool", &controllerv1.PreflightRequest{}, codes.InvalidArgument, "pool is required"},
		{"bad kind", &controllerv1.PreflightRequest{Pool: "pchat01.lab.chatdr.test", Kind: controllerv1.PlanKind(99)}, codes.InvalidArgument, "kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Preflight(t.Context(), tt.req)
			st, ok := status.FromError(err)
			require.True(t, ok, "%v", err)
			require.Equal(t, tt.code, st.Code(), st.Message())
			require.Contains(t, st.Message(), tt.msg)
		})
	}
}

func TestShortErr(t *testing.T) {
	err := status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:46285: connect: connection refused"`)
	require.Equal(t, "dial tcp 127.0.0.1:46285: connect: connection refused", shortErr(err))
	require.Equal(t, "connection refused", shortErr(errors.New("connection refused")))
}
