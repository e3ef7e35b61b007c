package plan_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/topology"
)

// steps lists the plan's steps in order with their group index.
func steps(p *plan.Plan) (out []plan.Step, group map[string]int) {
	group = map[string]int{}
	for gi, g := range p.Groups {
		for _, s := range g.Steps {
			out = append(out, s)
			group[s.ID] = gi
		}
	}
	return out, group
}

func find(t *testing.T, p *plan.Plan, id string) plan.Step {
	t.Helper()
	all, _ := steps(p)
	for _, s := range all {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no step %s in the %s plan", id, p.Kind)
	return plan.Step{}
}

func online(host, db string) plan.DatabaseFact {
	return plan.DatabaseFact{Host: host, Database: db, State: "ONLINE"}
}

func restoring(host, db string) plan.DatabaseFact {
	return plan.DatabaseFact{Host: host, Database: db, State: "RESTORING"}
}

func TestBuild_refusals(t *testing.T) {
	lab := loadTopology(t, "lab")
	prim, pm, bak := lab.SQL.Primary.FQDN, lab.SQL.PrimaryMirror.FQDN, lab.SQL.Backup.FQDN
	splitFacts := plan.Facts{Databases: []plan.DatabaseFact{online(prim, "mgc"), online(bak, "mgc")}}
	tests := []struct {
		name    string
		facts   plan.Facts
		req     func(r *plan.Request)
		is      []error
		message string
	}{
		{"unknown pool", plan.Facts{}, func(r *plan.Request) { r.Pool = "other.contoso.com" },
			[]error{plan.ErrUnknownPool}, "pchat01.lab.chatdr.test"},
		{"unknown kind", plan.Facts{}, func(r *plan.Request) { r.Kind = "drill" }, []error{plan.ErrBadRequest}, "failover-planned"},
		{"planned without time", plan.Facts{}, func(r *plan.Request) { r.Now = time.Time{} }, []error{plan.ErrBadRequest}, "Now"},
		{"failback without time", plan.Facts{}, func(r *plan.Request) { r.Kind = plan.Failback; r.Now = time.Time{} }, []error{plan.ErrBadRequest}, "Now"},
		{"force without reason", plan.Facts{}, func(r *plan.Request) { r.Force.SplitBrain = true }, []error{plan.ErrBadRequest}, "reason"},
		{"one test user", plan.Facts{}, func(r *plan.Request) { r.Options.TestSenderSIP = "sip:a@contoso.com" }, []error{plan.ErrBadRequest}, "both"},
		{"failback when Normal", plan.Facts{PoolState: plan.PoolNormal}, func(r *plan.Request) { r.Kind = plan.Failback },
			[]error{plan.ErrRefused}, "is Normal"},
		{"failback, backup restoring", plan.Facts{Databases: []plan.DatabaseFact{restoring(bak, "mgc")}}, func(r *plan.Request) { r.Kind = plan.Failback },
			[]error{plan.ErrRefused}, "RESTORING"},
		{"failback, primary unreachable", plan.Facts{Reachable: map[string]bool{prim: false}}, func(r *plan.Request) { r.Kind = plan.Failback },
			[]error{plan.ErrRefused}, "does not answer"},
		{"planned, primary unreachable", plan.Facts{Reachable: map[string]bool{strings.ToUpper(prim): false}}, nil,
			[]error{plan.ErrRefused}, "--mode disaster"},
		{"planned, primary restoring", plan.Facts{Databases: []plan.DatabaseFact{restoring(prim, "mgc")}}, nil,
			[]error{plan.ErrRefused}, "chatdr run resume"},
		{"planned, mirror is principal", plan.Facts{Databases: []plan.DatabaseFact{restoring(prim, "mgc"), online(pm, "mgc")}}, nil,
			[]error{plan.ErrRefused}, "Invoke-CsDatabaseFailover"},
		{"planned, backup online", plan.Facts{Databases: []plan.DatabaseFact{online(bak, "mgc")}}, nil,
			[]error{plan.ErrRefused}, "--mode disaster"},
		{"planned, split brain", splitFacts, nil, []error{plan.ErrRefused, plan.ErrSplitBrain}, "two writable copies"},
		{"disaster, split brain", splitFacts, func(r *plan.Request) { r.Kind = plan.FailoverDisaster },
			[]error{plan.ErrRefused, plan.ErrSplitBrain}, "two writable copies"},
		{"disaster, primary writable", plan.Facts{Databases: []plan.DatabaseFact{online(prim, "mgc")}}, func(r *plan.Request) { r.Kind = plan.FailoverDisaster },
			[]error{plan.ErrRefused, plan.ErrSplitBrain}, "--mode planned"},
		{"disaster, primary mirror writable", plan.Facts{Databases: []plan.DatabaseFact{online(pm, "mgc")}}, func(r *plan.Request) { r.Kind = plan.FailoverDisaster },
			[]error{plan.ErrSplitBrain}, pm},
		{"failover, pool FailedOver", plan.Facts{PoolState: plan.PoolFailedOver}, nil, []error{plan.ErrRefused}, "already FailedOver"},
		{"failover, backup absent", plan.Facts{Databases: []plan.DatabaseFact{{Host: bak, Database: "mgc"}}}, func(r *plan.Request) { r.Kind = plan.FailoverDisaster },
			[]error{plan.ErrRefused}, "does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := request(lab, plan.FailoverPlanned)
			if tc.req != nil {
				tc.req(&r)
			}
			p, err := plan.Build(lab, tc.facts, r)
			require.Error(t, err)
			require.Nil(t, p)
			for _, target := range tc.is {
				require.ErrorIs(t, err, target)
			}
			require.Contains(t, err.Error(), tc.message)
		})
	}
}

func TestBuild_forceSplitBrain(t *testing.T) {
	lab := loadTopology(t, "lab")
	prim, bak := lab.SQL.Primary.FQDN, lab.SQL.Backup.FQDN
	facts := plan.Facts{Databases: []plan.DatabaseFact{online(prim, "mgc"), online(bak, "mgc")}}
	r := request(lab, plan.FailoverDisaster)
	r.Force = plan.Force{SplitBrain: true, Reason: "sql1.dc1 is cut off from every client (INC-42)"}
	p := build(t, lab, facts, r)
	rec := find(t, p, "F4b-recover-mgc")
	require.NotEmpty(t, rec.Guards)
	for _, g := range rec.Guards {
		require.Equal(t, r.Force.Reason, g.Override)
	}
	// The backup is already ONLINE: no log can be restored onto it.
	all, _ := steps(p)
	for _, s := range all {
		require.NotEqual(t, "mssql.ls.restore_pending", s.Action)
		require.NotEqual(t, "mssql.ls.remove_secondary", s.Action)
	}
	sw := find(t, p, "F5-set-pool-failed-over")
	require.Equal(t, plan.Approval{Required: true, When: plan.ApproveAlways, Approvers: 1}, sw.Approval)
	require.Contains(t, strings.Join(p.Notes, "\n"), "FORCED")
	require.Contains(t, strings.Join(p.Notes, "\n"), "INC-42")
}

func TestBuild_forcePoolState(t *testing.T) {
	lab := loadTopology(t, "lab")
	r := request(lab, plan.FailoverPlanned)
	r.Force = plan.Force{PoolState: true, Reason: "Set-CsPersistentChatState was run by hand"}
	build(t, lab, plan.Facts{PoolState: plan.PoolFailedOver}, r)
}

func TestBuild_unknownFactsNeverBlock(t *testing.T) {
	for _, name := range []string{"lab", "single-server-per-site", "no-compliance-no-mirrors", "low-latency"} {
		topo := loadTopology(t, name)
		for _, kind := range plan.Kinds() {
			build(t, topo, plan.Facts{}, request(topo, kind))
		}
	}
}

// TestBuild_properties checks, for every topology and kind, the safety
// properties the engine relies on.
func TestBuild_properties(t *testing.T) {
	for _, name := range []string{"lab", "single-server-per-site", "no-compliance-no-mirrors", "low-latency"} {
		topo := loadTopology(t, name)
		hosts := map[string]bool{}
		for _, a := range topo.Agents() {
			hosts[a.Host] = true
		}
		for _, kind := range plan.Kinds() {
			t.Run(name+"/"+string(kind), func(t *testing.T) {
				p := build(t, topo, plan.Facts{}, request(topo, kind))
				all, group := steps(p)
				for _, s := range all {
					require.True(t, hosts[s.Host], "step %s: host %s is not in the topology (exact spelling)", s.ID, s.Host)
					require.NotEmpty(t, s.Reason, s.ID)
					require.Regexp(t, `^(domain|design|inference)`, s.Reason, "step %s must cite its procedure step", s.ID)
					require.Positive(t, s.Timeout, s.ID)
					if s.Action == "mssql.db.recover" {
						require.Equal(t, topo.SQL.Backup.FQDN, s.Host)
						require.True(t, s.Destructive)
						var fenced []string
						for _, g := range s.Guards {
							if g.Kind == plan.GuardOldPrimaryNotWritable {
								fenced = append(fenced, g.Host)
								require.Equal(t, topo.Databases.Chat, g.Database)
							}
						}
						require.Contains(t, fenced, topo.SQL.Primary.FQDN, "F4b must be fenced against the primary")
						if topo.SQL.PrimaryMirror != nil {
							require.Contains(t, fenced, topo.SQL.PrimaryMirror.FQDN, "and against the primary mirror")
						}
					}
				}
				if kind == plan.Failback {
					sw, act := group["B7-set-pool-normal"], group["B6-set-active-servers"]
					require.Less(t, sw, act, "B7 (pool Normal) must precede B6 (activation)")
					for _, cs := range topo.ActiveServers(topology.ActiveNormal) {
						wait := group["B7-wait-local-store-"+strings.SplitN(cs.FQDN, ".", 2)[0]]
						require.Greater(t, wait, sw)
						require.Less(t, wait, act, "each server's local store is waited for before activation")
					}
					require.Less(t, group["B4-restore-primary-mgc"], group["B5-init-secondary-mgc"], "the backup is overwritten only after the primary holds the data")
				} else {
					require.Less(t, group["F4b-recover-mgc"], group["F5-set-pool-failed-over"])
					require.Less(t, group["F5-set-pool-failed-over"], group["F7-set-active-servers"])
					require.Less(t, group["F0a-clear-active-servers"], group["F4b-recover-mgc"])
				}
			})
		}
	}
}

func TestBuild_deterministic(t *testing.T) {
	for _, name := range []string{"lab", "low-latency"} {
		topo := loadTopology(t, name)
		facts := plan.Facts{
			Reachable:     map[string]bool{"pc1.dc1.contoso.com": false, "pc2.dc1.contoso.com": false, "pc1.dc1.lab.chatdr.test": false},
			ActiveServers: []string{"pc2.dc1.lab.chatdr.test", "pc5.dc2.contoso.com", "ghost.contoso.com"},
		}
		for _, kind := range plan.Kinds() {
			a, err := json.Marshal(build(t, topo, facts, request(topo, kind)))
			require.NoError(t, err)
			for range 5 {
				b, err := json.Marshal(build(t, topo, facts, request(topo, kind)))
				require.NoError(t, err)
				require.Equal(t, string(a), string(b))
			}
		}
	}
}

func TestBuild_planned_zeroDataLossProof(t *testing.T) {
	lab := loadTopology(t, "lab")
	p := build(t, lab, plan.Facts{}, request(lab, plan.FailoverPlanned))
	tail := find(t, p, "F0a-tail-log-backup-mgc")
	require.Equal(t, lab.SQL.Primary.FQDN, tail.Host)
	require.Equal(t, "/tmp/chatdr-lab/share/pchat-ls", tail.Params["dir"], "named by the agent when it is taken")
	require.NotContains(t, tail.Params, "path")
	rs := find(t, p, "F3-restore-logs-mgc")
	require.Equal(t, map[string]any{"complete": true}, rs.Expect)
	require.Equal(t, map[string]string{"reached_lsn": "F0a-tail-log-backup-mgc.last_lsn"}, rs.ExpectFrom)
	rec := find(t, p, "F4b-recover-mgc")
	require.Equal(t, plan.ApproveOnDataLoss, rec.Approval.When)
	require.Equal(t, []string{"F0a-tail-log-backup-mgc", "F2-copy-logs-mgc", "F3-restore-logs-mgc"}, rec.DataLossFrom)
}

func TestBuild_disaster(t *testing.T) {
	topo := loadTopology(t, "single-server-per-site")
	p := build(t, topo, plan.Facts{}, request(topo, plan.FailoverDisaster))
	rec := find(t, p, "F4b-recover-mgc")
	require.Equal(t, plan.Approval{Required: true, When: plan.ApproveOnDataLoss, Approvers: 2}, rec.Approval, "approvals.data_loss_approvers: 2")
	require.Equal(t, []string{"F2-copy-logs-mgc", "F3-restore-logs-mgc"}, rec.DataLossFrom)
	stop := find(t, p, "F0a-stop-chat-pc1")
	require.True(t, stop.BestEffort, "primary-site steps are best effort in a disaster")
	// The configured Management Shell host is in the lost site: cmdlets move.
	require.Equal(t, "pc2.dc2.contoso.com", find(t, p, "F5-set-pool-failed-over").Host)
	require.Contains(t, strings.Join(p.Notes, "\n"), "instead of the configured management_shell_host pc1.dc1.contoso.com")
	all, _ := steps(p)
	for _, s := range all {
		if s.Host == "pc1.dc1.contoso.com" || s.Host == "sql1.dc1.contoso.com" || s.Host == "sql2.dc1.contoso.com" {
			require.True(t, s.BestEffort, "%s runs in the lost site and must be best effort", s.ID)
		}
	}
}

func TestBuild_lowLatency_disasterSkipsLostSiteServers(t *testing.T) {
	topo := loadTopology(t, "low-latency")
	p := build(t, topo, plan.Facts{}, request(topo, plan.FailoverDisaster))
	act := find(t, p, "F7-set-active-servers")
	require.Equal(t, []any{"pc7.dc2.contoso.com", "pc8.dc2.contoso.com"}, act.Params["servers"])
	require.Contains(t, strings.Join(p.Notes, "\n"), "pc3.dc1.contoso.com")
	planned := build(t, topo, plan.Facts{}, request(topo, plan.FailoverPlanned))
	require.Equal(t, []any{"pc3.dc1.contoso.com", "pc7.dc2.contoso.com", "pc8.dc2.contoso.com"}, find(t, planned, "F7-set-active-servers").Params["servers"])
	// Writers: the primary site and every normal-active server (pc5, pc6 in dc2).
	for _, id := range []string{"F0a-stop-chat-pc1", "F0a-stop-chat-pc4", "F0a-stop-chat-pc5", "F0a-stop-chat-pc6"} {
		find(t, planned, id)
	}
}

func TestBuild_options(t *testing.T) {
	lab := loadTopology(t, "lab")
	r := request(lab, plan.FailoverPlanned)
	r.Options = plan.Options{MirrorBeforeActivate: true, ChatService: "PCHAT", ComplianceService: "PCHATCOMP",
		TestSenderSIP: "sip:a@contoso.com", TestReceiverSIP: "sip:b@contoso.com"}
	p := build(t, lab, plan.Facts{}, r)
	_, group := steps(p)
	require.Less(t, group["F6-install-mirror-mgc"], group["F7-set-active-servers"], "MirrorBeforeActivate: 5→6→7")
	require.Equal(t, "PCHAT", find(t, p, "F7-start-chat-pc5").Params["name"])
	require.Equal(t, "sip:b@contoso.com", find(t, p, "F7-test-message").Params["receiver_sip"])
	require.NotContains(t, strings.Join(p.Notes, "\n"), "UNVERIFIED")

	r.Options = plan.Options{SkipMirroring: true}
	p = build(t, lab, plan.Facts{}, r)
	all, _ := steps(p)
	for _, s := range all {
		require.NotEqual(t, "csshell.cs.install_mirror", s.Action)
	}
	r.Kind = plan.Failback
	p = build(t, lab, plan.Facts{}, r)
	all, _ = steps(p)
	for _, s := range all {
		require.NotEqual(t, "csshell.cs.install_mirror", s.Action)
	}
}

func TestBuild_factsPickParameters(t *testing.T) {
	lab := loadTopology(t, "lab")
	bak := lab.SQL.Backup.FQDN
	facts := plan.Facts{
		LogShipping: &plan.LogShippingFact{BackupSourceDirectory: "/srv/ls", BackupDestinationDirectory: "/srv/copy", RestoreMode: 1},
		Databases:   []plan.DatabaseFact{{Host: bak, Database: "mgc", State: "ONLINE", Standby: true}},
		Reachable:   map[string]bool{"pc5.dc2.lab.chatdr.test": false, "pc2.dc1.lab.chatdr.test": false},
	}
	p := build(t, lab, facts, request(lab, plan.FailoverPlanned))
	cp := find(t, p, "F2-copy-logs-mgc")
	require.Equal(t, "/srv/ls", cp.Params["source_dir"])
	require.Equal(t, "/srv/copy", cp.Params["dest_dir"])
	require.Equal(t, "/srv/ls", find(t, p, "F0a-tail-log-backup-mgc").Params["dir"])
	find(t, p, "F3-kill-sessions-before-restore-mgc") // standby: readers may be connected
	require.True(t, find(t, p, "F0a-stop-chat-pc2").BestEffort, "an unreachable writer is best effort")
	require.False(t, find(t, p, "F0a-stop-chat-pc1").BestEffort)
	// The configured shell host pc5 does not answer: the next backup-site server runs the cmdlets.
	require.Equal(t, "pc6.dc2.lab.chatdr.test", find(t, p, "F5-set-pool-failed-over").Host)

	fb := build(t, lab, plan.Facts{LogShipping: facts.LogShipping}, request(lab, plan.Failback))
	require.Equal(t, "standby", find(t, fb, "B5-setup-log-shipping-secondary").Params["mode"])
}

func TestBuild_windowsPaths(t *testing.T) {
	topo := loadTopology(t, "single-server-per-site")
	p := build(t, topo, plan.Facts{}, request(topo, plan.FailoverPlanned))
	require.Equal(t, `\\fs1.dc1.contoso.com\pchat-ls`, find(t, p, "F0a-tail-log-backup-mgc").Params["dir"])
	dis := build(t, topo, plan.Facts{Reachable: map[string]bool{topo.SQL.Primary.FQDN: false}}, request(topo, plan.FailoverDisaster))
	fence := find(t, dis, "F4c-fence-"+strings.SplitN(topo.SQL.Primary.FQDN, ".", 2)[0]+"-mgc").Params["path"]
	require.Equal(t, `\\fs1.dc1.contoso.com\pchat-ls\mgc_orphaned_tail_`+topo.SQL.Primary.FQDN+`_20261129023000.bak`, fence, "UNC paths joined with backslashes")
	fb := build(t, topo, plan.Facts{}, request(topo, plan.Failback))
	require.Equal(t, `sql1.dc2.contoso.com\PCHAT`, find(t, fb, "B5-setup-log-shipping-primary").Params["secondary_server"])
	require.Equal(t, "PCHAT", find(t, fb, "B5-install-primary-mirror-mgc").Params["sql_instance_name"])
}
