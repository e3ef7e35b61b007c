package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chatdr/chatdr/controller/engine"
	"github.com/chatdr/chatdr/controller/fleet"
	"github.com/chatdr/chatdr/controller/plan"
	"github.com/chatdr/chatdr/controller/store"
	"github.com/chatdr/chatdr/controller/topology"
	controllerv1 "github.com/chatdr/chatdr/proto/chatdr/controller/v1"
)

// lagWarnThreshold is the log-shipping lag above which a planned failover
// gets a warning: SQL Server's default restore alert threshold
// (sp_add_log_shipping_secondary_database @restore_threshold = 45 min).
const lagWarnThreshold = 45 * time.Minute

// Preflight implements ControllerService. It reads (fleet status with
// probes, the run store) and changes nothing.
func (s *Server) Preflight(ctx context.Context, req *controllerv1.PreflightRequest) (*controllerv1.PreflightResponse, error) {
	kind := plan.FailoverPlanned
	if req.GetKind() != controllerv1.PlanKind_PLAN_KIND_UNSPECIFIED {
		k, ok := planKinds[req.GetKind()]
		if !ok {
			return nil, status.Error(codes.InvalidArgument, "kind must be failover-planned, failover-disaster or failback")
		}
		kind = k
	}
	if strings.TrimSpace(req.GetPool()) == "" {
		return nil, status.Error(codes.InvalidArgument, "pool is required (the Persistent Chat pool FQDN)")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	topo := s.topo
	if !strings.EqualFold(req.GetPool(), topo.Pool) {
		return nil, status.Errorf(codes.NotFound, "pool %q is not in the topology; this controller manages %s", req.GetPool(), topo.Pool)
	}
	start := time.Now()
	statuses, err := s.fleet.Status(ctx, "", time.Duration(s.cfg.Fleet.AgentTimeout), true)
	if statuses == nil && err != nil {
		return nil, status.FromContextError(err).Err()
	}
	s.metrics.observeFleet(statuses)
	runs, err := s.store.ListRuns(0)
	if err != nil {
		return nil, runErr(err)
	}
	checks := preflight(preflightInput{Topo: topo, Kind: kind, Statuses: statuses, Runs: runs, Now: start.UTC()})
	resp := &controllerv1.PreflightResponse{Pool: topo.Pool, CheckedAt: timestamppb.New(start), Go: preflightGo(checks)}
	for k, v := range planKinds {
		if v == kind {
			resp.Kind = k
		}
	}
	for _, c := range checks {
		resp.Checks = append(resp.Checks, &controllerv1.PreflightCheck{Name: c.Name, Title: c.Title,
			Verdict: verdictToProto[c.Verdict], Reason: c.Reason, Subject: c.Subject})
	}
	return resp, nil
}

// verdict is the outcome of one preflight check.
type verdict int

// Verdicts, from best to worst; SKIP is neither.
const (
	verdictPass verdict = iota
	verdictWarn
	verdictFail
	verdictSkip
)

var verdictToProto = map[verdict]controllerv1.CheckVerdict{
	verdictPass: controllerv1.CheckVerdict_CHECK_VERDICT_PASS,
	verdictWarn: controllerv1.CheckVerdict_CHECK_VERDICT_WARN,
	verdictFail: controllerv1.CheckVerdict_CHECK_VERDICT_FAIL,
	verdictSkip: controllerv1.CheckVerdict_CHECK_VERDICT_SKIP,
}

func (v verdict) String() string {
	return [...]string{"PASS", "WARN", "FAIL", "SKIP"}[v]
}

// check is one preflight check's outcome.
type check struct {
	Name    string
	Title   string
	Verdict verdict
	Reason  string
	Subject string
}

// preflightGo is the go / no-go verdict: no check failed.
func preflightGo(checks []check) bool {
	return !slices.ContainsFunc(checks, func(c check) bool { return c.Verdict == verdictFail })
}

// preflightInput is everything the checks look at.
type preflightInput struct {
	Topo     *topology.Topology
	Kind     plan.Kind
	Statuses []fleet.Status
	// Runs are every run of the store (any pool), newest first.
	Runs []*store.Run
	Now  time.Time
}

// pf holds the input and what was parsed from it for the checks.
type pf struct {
	in    preflightInput
	t     *topology.Topology
	facts plan.Facts
	hosts map[string]fleet.Status // by lower-case host
	db    string
}

// preflight runs every check, in a stable order. It is a pure function of
// its input.
func preflight(in preflightInput) []check {
	p := &pf{in: in, t: in.Topo, hosts: map[string]fleet.Status{}, db: in.Topo.Databases.Chat}
	p.facts, _ = planFacts(in.Topo, in.Statuses)
	for _, s := range in.Statuses {
		p.hosts[strings.ToLower(s.Agent.Host)] = s
	}
	var out []check
	out = append(out, p.runChecks()...)
	out = append(out, p.agentChecks()...)
	out = append(out, p.poolStateCheck(), p.primaryDatabaseCheck(), p.backupDatabaseCheck(), p.writableCopiesCheck())
	out = append(out, p.sqlAgentChecks()...)
	out = append(out, p.logShippingCheck(), p.shareCheck(), p.copyDirCheck(), p.activeServersCheck(), p.planCheck())
	return out
}

func (p *pf) failover() bool {
	return p.in.Kind == plan.FailoverPlanned || p.in.Kind == plan.FailoverDisaster
}

// runChecks: no run of the pool in progress, and none finished but not
// acknowledged (the store would refuse the next run: design §5).
func (p *pf) runChecks() []check {
	inProgress := check{Name: "run_in_progress", Title: "No run of the pool is in progress", Verdict: verdictPass,
		Reason: "no unfinished run of " + p.t.Pool, Subject: p.t.Pool}
	ack := check{Name: "previous_run_acknowledged", Title: "The previous failover/failback is acknowledged", Verdict: verdictPass,
		Reason: "no finished run waits for an acknowledgement", Subject: p.t.Pool}
	lastSucceeded := false
	for _, r := range p.in.Runs { // newest first
		if !strings.EqualFold(r.Pool, p.t.Pool) {
			continue
		}
		if !r.Status.State.Finished() && inProgress.Verdict == verdictPass {
			inProgress.Verdict = verdictFail
			inProgress.Reason = fmt.Sprintf("%s (%s) is %s, started by %s at %s: only one run per pool at a time; finish it (chatdr run show %s, chatdr run resume %s) or cancel it with `chatdr run cancel %s`",
				r.ID, r.Kind, r.Status.State, r.StartedBy.Name, r.Created.Format(time.RFC3339), r.ID, r.ID, r.ID)
		}
		if !lastSucceeded && (r.Status.State == engine.RunSucceeded || r.Status.State == engine.RunAcknowledged) {
			lastSucceeded = true
			if r.Status.State.Blocks() {
				ack.Verdict = verdictFail
				ack.Reason = fmt.Sprintf("%s (%s) finished at %s and is not acknowledged: the next run is refused until an operator checks the outcome and runs `chatdr run ack %s` (or forces with a reason)",
					r.ID, r.Kind, r.Status.Ended.Format(time.RFC3339), r.ID)
			} else {
				ack.Reason = fmt.Sprintf("%s (%s) is acknowledged by %s", r.ID, r.Kind, r.Status.AcknowledgedBy)
			}
		}
	}
	return []check{inProgress, ack}
}

// need says how much a host's agent matters to the run: needFail when the
// run cannot work without it, needWarn when it only limits the run, needNot
// when its absence is expected.
type need int

const (
	needNot need = iota
	needWarn
	needFail
)

// agentNeed is how much the run of p's kind needs agent a.
func (p *pf) agentNeed(a topology.Agent) (need, string) {
	t := p.t
	has := func(role string) bool { return slices.Contains(a.Roles, role) }
	active := func(w topology.ActiveWhen) bool {
		for _, cs := range t.ChatServers {
			if strings.EqualFold(cs.FQDN, a.Host) {
				return cs.ActiveWhen == w
			}
		}
		return false
	}
	switch p.in.Kind {
	case plan.FailoverDisaster:
		switch {
		case a.Site == t.SiteByRole(topology.SitePrimary).Name:
			return needNot, "expected after the loss of the primary site; keep these hosts fenced (powered off, or chat service stopped) until the recovery is done (domain F0a, §6.1)"
		case has(topology.RoleSQLBackup):
			return needFail, "the disaster failover restores and recovers mgc there"
		case has(topology.RoleManagementShell):
			return needFail, "the pool state and active servers are set there"
		case active(topology.ActiveFailedOver):
			return needFail, "it becomes an active server"
		}
		return needWarn, "the run does not act on it, or only for mirroring (--skip-mirroring)"
	case plan.FailoverPlanned:
		switch {
		case has(topology.RoleSQLPrimary):
			return needFail, "the planned failover takes the tail-log backup there; if the primary site is lost use --mode disaster"
		case has(topology.RoleSQLBackup):
			return needFail, "the failover restores and recovers mgc there"
		case has(topology.RoleManagementShell):
			return needFail, "the pool state and active servers are set there"
		case has(topology.RoleChatServer):
			return needFail, "the planned failover stops or starts the chat service there"
		}
		return needWarn, "the run uses it only for mirroring (--skip-mirroring)"
	default: // failback
		switch {
		case has(topology.RoleSQLPrimary):
			return needFail, "the failback restores mgc there (domain B4)"
		case has(topology.RoleSQLBackup):
			return needFail, "the failback backs up mgc there (domain B3)"
		case has(topology.RoleManagementShell):
			return needFail, "the pool state and active servers are set there"
		case has(topology.RoleChatServer):
			return needFail, "the failback stops or starts the chat service there"
		}
		return needWarn, "the run uses it only for mirroring (--skip-mirroring)"
	}
}

// agentChecks: one check per site, every agent of the site answering.
// Unreachable hosts are grouped by why they matter, so that a lost site
// reads as one sentence.
func (p *pf) agentChecks() []check {
	var out []check
	for _, site := range p.t.Sites {
		c := check{Name: "agents_reachable", Title: fmt.Sprintf("Agents of the %s site %s answer", site.Role, site.Name), Subject: site.Name, Verdict: verdictPass}
		type group struct {
			need  need
			hosts []string
		}
		var order []string
		groups := map[string]*group{}
		n := 0
		for _, a := range p.t.Agents() {
			if a.Site != site.Name {
				continue
			}
			n++
			st, ok := p.hosts[strings.ToLower(a.Host)]
			if ok && st.Reachable {
				continue
			}
			why := "no answer"
			if ok && st.Err != nil {
				why = shortErr(st.Err)
			}
			need, because := p.agentNeed(a)
			g := groups[because]
			if g == nil {
				g = &group{need: need}
				groups[because] = g
				order = append(order, because)
			}
			g.hosts = append(g.hosts, fmt.Sprintf("%s (%s: %s)", a.Host, strings.Join(a.Roles, ","), why))
			c.Verdict = max(c.Verdict, verdictFromNeed(need))
		}
		// Failures first: they are what to fix.
		slices.SortStableFunc(order, func(a, b string) int { return int(groups[b].need) - int(groups[a].need) })
		var parts []string
		for _, because := range order {
			parts = append(parts, fmt.Sprintf("%s did not answer: %s", strings.Join(groups[because].hosts, ", "), because))
		}
		switch c.Verdict {
		case verdictFail:
			c.Reason = strings.Join(parts, ". ") + ". Start chatdr-agent on those hosts and check the network and certificates (chatdr fleet status)"
		case verdictWarn:
			c.Reason = strings.Join(parts, ". ")
		default:
			c.Reason = fmt.Sprintf("all %d agents answer", n)
		}
		out = append(out, c)
	}
	return out
}

// shortErr keeps what an operator needs of an agent call's error: the
// status message, and of a dial failure only the dial.
func shortErr(err error) string {
	msg := status.Convert(err).Message()
	if i := strings.LastIndex(msg, "dial tcp "); i >= 0 {
		msg = strings.TrimRight(msg[i:], `"`)
	}
	return msg
}

func verdictFromNeed(n need) verdict {
	switch n {
	case needFail:
		return verdictFail
	default:
		return verdictWarn
	}
}

// database returns the chat database's fact on host (nil host: none).
func (p *pf) database(h *topology.SQLHost) (plan.DatabaseFact, bool) {
	if h == nil {
		return plan.DatabaseFact{}, false
	}
	for _, d := range p.facts.Databases {
		if strings.EqualFold(d.Host, h.FQDN) && strings.EqualFold(d.Database, p.db) {
			return d, true
		}
	}
	return plan.DatabaseFact{}, false
}

// reachable reports whether host answered (false when unknown).
func (p *pf) reachable(host string) bool {
	st, ok := p.hosts[strings.ToLower(host)]
	return ok && st.Reachable
}

// fact returns the value of probe name on host, or why there is none.
func (p *pf) fact(host, name string) (map[string]any, string) {
	st, ok := p.hosts[strings.ToLower(host)]
	if !ok || !st.Reachable {
		return nil, "its agent did not answer"
	}
	for _, f := range st.Facts {
		if f.GetName() != name {
			continue
		}
		if e := f.GetError(); e != nil {
			return nil, fmt.Sprintf("probe %s failed: %s", name, e.GetMessage())
		}
		return f.GetValue().AsMap(), ""
	}
	return nil, fmt.Sprintf("no %s probe answered (is the %s plugin configured in the agent?)", name, strings.SplitN(name, ".", 2)[0])
}

// dbEntry returns the chat database's entry of a per-database probe
// (mssql.databases, mssql.log_shipping) on host.
func (p *pf) dbEntry(host, probe string) (map[string]any, string) {
	v, why := p.fact(host, probe)
	if v == nil {
		return nil, why
	}
	list, _ := v["databases"].([]any)
	for _, it := range list {
		if m, ok := it.(map[string]any); ok && strings.EqualFold(str(m["database"]), p.db) {
			return m, ""
		}
	}
	return nil, fmt.Sprintf("probe %s does not report %s (add it to plugin_config.mssql.databases)", probe, p.db)
}

func describe(d plan.DatabaseFact) string {
	switch {
	case !d.Exists():
		return "absent"
	case d.Standby:
		return d.State + " (standby)"
	case d.ReadOnly:
		return d.State + " (read-only)"
	case d.Writable():
		return "ONLINE and writable"
	}
	return d.State
}

// poolStateCheck: the pool state read in the central store fits the kind.
func (p *pf) poolStateCheck() check {
	c := check{Name: "pool_state", Title: "The pool state allows this run", Subject: p.t.ManagementShellHost}
	want, other := plan.PoolNormal, plan.PoolFailedOver
	if !p.failover() {
		want, other = plan.PoolFailedOver, plan.PoolNormal
	}
	switch p.facts.PoolState {
	case want:
		c.Verdict, c.Reason = verdictPass, fmt.Sprintf("pool %s is %s", p.t.Pool, want)
	case other:
		c.Verdict = verdictFail
		if p.failover() {
			c.Reason = fmt.Sprintf("pool %s is already FailedOver: it uses the backup databases. To finish a stopped failover run resume it (chatdr run resume); to go back use chatdr failback", p.t.Pool)
		} else {
			c.Reason = fmt.Sprintf("pool %s is Normal: it uses the primary databases, there is nothing to fail back, and a failback would overwrite the primary's %s", p.t.Pool, p.db)
		}
	default:
		_, why := p.fact(p.t.ManagementShellHost, "csshell.cs.pool_state")
		c.Verdict = verdictFail
		c.Reason = fmt.Sprintf("the pool state could not be read on the management shell host %s: %s. Fix the agent or its csshell plugin there (Get-CsPersistentChatState must answer)", p.t.ManagementShellHost, why)
	}
	return c
}

// primaryDatabaseCheck: the primary's chat database is in a state the run
// can work with.
func (p *pf) primaryDatabaseCheck() check {
	h := p.t.SQL.Primary
	c := check{Name: "primary_database", Title: fmt.Sprintf("%s on the primary SQL Server", p.db), Subject: h.FQDN}
	d, ok := p.database(h)
	if !ok {
		_, why := p.dbEntry(h.FQDN, "mssql.databases")
		switch p.in.Kind {
		case plan.FailoverDisaster:
			c.Verdict, c.Reason = verdictWarn, fmt.Sprintf("state unknown: %s. Expected after the loss of the primary site; make sure %s cannot come back online with clients (fence it) before the recovery", why, h.FQDN)
		default:
			c.Verdict, c.Reason = verdictFail, fmt.Sprintf("state unknown: %s. The run needs %s on %s; fix the agent or the mssql plugin there", why, p.db, h.FQDN)
		}
		return c
	}
	state := describe(d)
	mirrorRole := ""
	if m, _ := p.dbEntry(h.FQDN, "mssql.databases"); m != nil {
		mirrorRole = str(m["mirroring_role"])
	}
	switch p.in.Kind {
	case plan.FailoverPlanned:
		if d.Writable() {
			c.Verdict, c.Reason = verdictPass, state+": the tail-log backup can be taken"
		} else {
			c.Verdict, c.Reason = verdictFail, fmt.Sprintf("%s is %s on %s, not ONLINE and writable: a planned failover takes its tail-log backup. If an earlier run took it, resume that run; if the primary lost its data, use --mode disaster", p.db, state, h.FQDN)
		}
	case plan.FailoverDisaster:
		if d.Writable() {
			c.Verdict, c.Reason = verdictFail, fmt.Sprintf("%s answers and %s is writable there: the primary is not lost. Use --mode planned (zero data loss); only if %s is cut off from every client may the disaster run be forced with a reason", h.FQDN, p.db, h.FQDN)
		} else {
			c.Verdict, c.Reason = verdictPass, state+": not writable, no second copy to fence"
		}
	default:
		switch {
		case (strings.EqualFold(mirrorRole, "PRINCIPAL") || strings.EqualFold(mirrorRole, "MIRROR")) && p.t.SQL.PrimaryMirror != nil:
			c.Verdict, c.Reason = verdictWarn, fmt.Sprintf("%s on %s is mirrored (%s): the failback removes mirroring first (SET PARTNER OFF, domain B4, §6.18), then restores over it and re-creates the mirror", p.db, h.FQDN, mirrorRole)
		case strings.EqualFold(mirrorRole, "PRINCIPAL") || strings.EqualFold(mirrorRole, "MIRROR"):
			c.Verdict, c.Reason = verdictFail, fmt.Sprintf("%s on %s is mirrored (%s) but the topology names no primary mirror, so the failback will not remove it and RESTORE WITH REPLACE cannot overwrite it; remove mirroring first (ALTER DATABASE %s SET PARTNER OFF on %s) (domain B4, §6.18)", p.db, h.FQDN, mirrorRole, p.db, h.FQDN)
		case d.Writable():
			c.Verdict, c.Reason = verdictWarn, fmt.Sprintf("%s: the failback overwrites it WITH REPLACE. Expected after a Topology Builder reinstall; make sure nothing on it must be kept and no chat server writes to it", state)
		default:
			c.Verdict, c.Reason = verdictPass, state+": the failback restores over it"
		}
	}
	return c
}

// backupDatabaseCheck: failover needs the backup copy RESTORING/STANDBY,
// failback needs it ONLINE and writable.
func (p *pf) backupDatabaseCheck() check {
	h := p.t.SQL.Backup
	c := check{Name: "backup_database", Title: fmt.Sprintf("%s on the backup SQL Server", p.db), Subject: h.FQDN}
	d, ok := p.database(h)
	if !ok {
		_, why := p.dbEntry(h.FQDN, "mssql.databases")
		c.Verdict, c.Reason = verdictFail, fmt.Sprintf("state unknown: %s. The run works on %s there; fix the agent or the mssql plugin on %s", why, p.db, h.FQDN)
		return c
	}
	state := describe(d)
	if p.failover() {
		switch {
		case d.Restoring():
			c.Verdict, c.Reason = verdictPass, state+": log backups can still be restored"
		case !d.Exists():
			c.Verdict, c.Reason = verdictFail, fmt.Sprintf("%s does not exist on %s: there is nothing to fail over to; re-initialize log shipping (full backup restored WITH NORECOVERY) first", p.db, h.FQDN)
		case d.Writable():
			c.Verdict, c.Reason = verdictFail, fmt.Sprintf("%s is already ONLINE and writable on %s: it was recovered (a failover begun by hand, or a run stopped after the recovery). No log can be restored any more; resume the run that recovered it, or check which copy is current before anything else", p.db, h.FQDN)
		default:
			c.Verdict, c.Reason = verdictFail, fmt.Sprintf("%s is %s on %s, not RESTORING or STANDBY: check the SQL Server error log there", p.db, state, h.FQDN)
		}
		return c
	}
	if d.Writable() {
		c.Verdict, c.Reason = verdictPass, state+": it is the copy the failback takes back"
	} else {
		c.Verdict, c.Reason = verdictFail, fmt.Sprintf("%s is %s on %s, not ONLINE and writable: the pool did not fail over, or the failover did not finish (resume it: chatdr run resume)", p.db, state, h.FQDN)
	}
	return c
}

// writableCopiesCheck: exactly one writable chat database, the one the
// pool state says the pool uses (domain §6.1 split brain).
func (p *pf) writableCopiesCheck() check {
	c := check{Name: "writable_copies", Title: "Exactly one writable " + p.db + ", the one the pool uses"}
	var primSide, backSide []string
	for _, h := range []*topology.SQLHost{p.t.SQL.Primary, p.t.SQL.PrimaryMirror} {
		if d, ok := p.database(h); ok && d.Writable() {
			primSide = append(primSide, h.FQDN)
		}
	}
	for _, h := range []*topology.SQLHost{p.t.SQL.Backup, p.t.SQL.BackupMirror} {
		if d, ok := p.database(h); ok && d.Writable() {
			backSide = append(backSide, h.FQDN)
		}
	}
	all := append(slices.Clone(primSide), backSide...)
	c.Subject = strings.Join(all, ", ")
	_, primKnown := p.database(p.t.SQL.Primary)
	switch {
	case len(primSide) > 0 && len(backSide) > 0 && p.failover():
		c.Verdict = verdictFail
		c.Reason = fmt.Sprintf("split brain: %s is ONLINE and writable on %s: two writable copies that cannot be merged (domain §6.1). Stop every chat server, decide which copy to keep, and only then plan; nothing here can merge them", p.db, strings.Join(all, " and "))
	case len(primSide) > 0 && len(backSide) > 0:
		// Failback: the rebuilt primary is writable by design; the pool
		// must not use it.
		c.Verdict = verdictWarn
		c.Reason = fmt.Sprintf("%s is writable on %s (the pool's copy) and on %s (to be overwritten by the failback). Make sure no chat server writes to %s", p.db, strings.Join(backSide, ", "), strings.Join(primSide, ", "), strings.Join(primSide, ", "))
	case len(all) > 1:
		c.Verdict = verdictFail
		c.Reason = fmt.Sprintf("%s is writable on %s: a principal and its mirror cannot both be writable; check sys.database_mirroring on both and remove the stale copy", p.db, strings.Join(all, " and "))
	case p.failover() && len(backSide) == 1:
		c.Verdict = verdictFail
		c.Reason = fmt.Sprintf("the writable %s is on the backup side (%s) while a failover expects it on the primary side: pool state and databases disagree; resume the run that recovered it or check by hand", p.db, backSide[0])
	case p.failover() && len(primSide) == 1:
		c.Verdict, c.Reason = verdictPass, fmt.Sprintf("%s is writable on %s only", p.db, primSide[0])
	case p.failover() && p.in.Kind == plan.FailoverDisaster:
		if primKnown {
			c.Verdict, c.Reason = verdictPass, "no writable copy: the primary is down or fenced, as a disaster failover expects"
		} else {
			c.Verdict, c.Reason = verdictWarn, fmt.Sprintf("no writable copy known; the primary %s is not reporting, so it could still hold a writable %s: fence it before the recovery (domain F0a)", p.t.SQL.Primary.FQDN, p.db)
		}
	case p.failover():
		c.Verdict, c.Reason = verdictFail, fmt.Sprintf("no writable %s found on the primary side: the pool has no working database, or the primary is not reporting; a planned failover needs it writable", p.db)
	case len(backSide) == 1:
		c.Verdict, c.Reason = verdictPass, fmt.Sprintf("%s is writable on %s only", p.db, backSide[0])
	default:
		c.Verdict, c.Reason = verdictFail, fmt.Sprintf("no writable %s on the backup side: a failback needs the copy the pool uses after the failover", p.db)
	}
	return c
}

// sqlAgentChecks: SQL Server Agent running where log-shipping jobs run
// for this kind: the backup for a failover (domain F0c, §6.8), both
// primary and backup for a failback (log shipping is re-created, B5).
func (p *pf) sqlAgentChecks() []check {
	hosts := []*topology.SQLHost{p.t.SQL.Backup}
	if !p.failover() {
		hosts = []*topology.SQLHost{p.t.SQL.Primary, p.t.SQL.Backup}
	}
	var out []check
	for _, h := range hosts {
		c := check{Name: "sql_agent_running", Title: "SQL Server Agent runs on " + h.FQDN, Subject: h.FQDN}
		v, why := p.fact(h.FQDN, "mssql.server")
		switch {
		case v == nil && !p.reachable(h.FQDN):
			c.Verdict, c.Reason = verdictSkip, "its agent did not answer (see agents_reachable)"
		case v == nil:
			c.Verdict, c.Reason = verdictFail, why+"; fix the mssql plugin configuration on "+h.FQDN
		case v["agent_running"] == true:
			c.Verdict, c.Reason = verdictPass, "SQL Server Agent has sessions on "+h.FQDN
		default:
			c.Verdict = verdictFail
			c.Reason = fmt.Sprintf("SQL Server Agent is not running on %s (%s): the log-shipping jobs do not run there. Start the SQL Server Agent service (SQLSERVERAGENT or SQLAgent$%s) and set it to start automatically", h.FQDN, h.Instance, h.Instance)
		}
		out = append(out, c)
	}
	return out
}

// logShipping returns the backup's log-shipping probe entry for the chat
// database, or why there is none.
func (p *pf) logShipping() (map[string]any, string) {
	return p.dbEntry(p.t.SQL.Backup.FQDN, "mssql.log_shipping")
}

// logShippingCheck: the backup is a log-shipping secondary, with its lag
// and the data-loss window if the primary were lost now.
func (p *pf) logShippingCheck() check {
	h := p.t.SQL.Backup
	c := check{Name: "log_shipping", Title: "Log shipping to the backup: latency and data-loss window", Subject: h.FQDN}
	if !p.failover() {
		c.Verdict, c.Reason = verdictSkip, "a failback copies the database with a full backup and re-creates log shipping itself"
		return c
	}
	m, why := p.logShipping()
	if m == nil {
		c.Verdict, c.Reason = verdictFail, fmt.Sprintf("log-shipping status of %s on %s unknown: %s", p.db, h.FQDN, why)
		return c
	}
	if str(m["role"]) != "secondary" {
		c.Verdict = verdictFail
		c.Reason = fmt.Sprintf("%s on %s is not a log-shipping secondary (msdb.dbo.log_shipping_monitor_secondary has no row for it): nothing ships to the backup. Set up log shipping (domain §1) or resume the run that removed it", p.db, h.FQDN)
		return c
	}
	latency, _ := m["last_restored_latency_minutes"].(float64)
	waiting, _ := m["files_waiting"].(float64)
	detail := fmt.Sprintf("last copied %s, last restored %s, restore latency %.0f min, %.0f file(s) waiting",
		orNone(str(m["last_copied_file"])), orNone(str(m["last_restored_file"])), latency, waiting)
	lossSec, known := m["estimated_data_loss_seconds"].(float64)
	if !known {
		c.Verdict, c.Reason = verdictWarn, "no log backup is held on the backup yet, the data-loss window is unknown: check the LSBackup/LSCopy jobs; "+detail
		return c
	}
	window := time.Duration(lossSec * float64(time.Second)).Round(time.Second)
	detail = fmt.Sprintf("data-loss window %s (newest backup held %s); %s", window, str(m["newest_backup_held"]), detail)
	switch p.in.Kind {
	case plan.FailoverPlanned:
		if window > lagWarnThreshold || time.Duration(latency*float64(time.Minute)) > lagWarnThreshold {
			c.Verdict = verdictWarn
			c.Reason = fmt.Sprintf("log shipping lags more than %s: the planned failover still loses nothing (it ships the tail-log backup) but restores more logs, so the outage is longer. Check the LSCopy/LSRestore jobs on %s; %s", lagWarnThreshold, h.FQDN, detail)
		} else {
			c.Verdict, c.Reason = verdictPass, detail
		}
	default:
		if lossSec > 0 {
			c.Verdict = verdictWarn
			c.Reason = fmt.Sprintf("a disaster failover now would lose up to %s of chat (what was written after the newest backup held); the run shows the exact window before the recovery and asks for its approval. %s", window, detail)
		} else {
			c.Verdict, c.Reason = verdictPass, detail
		}
	}
	return c
}

// shareCheck: the backup reads the log-shipping share (F2 copies from it;
// B3 writes the failback's full backup there).
func (p *pf) shareCheck() check {
	h := p.t.SQL.Backup
	c := check{Name: "backup_share_readable", Title: "The backup SQL Server reads the log-shipping backup share", Subject: h.FQDN}
	m, why := p.logShipping()
	if m == nil {
		c.Verdict, c.Reason = p.unknownVerdict(), fmt.Sprintf("not reported: %s", why)
		return c
	}
	readable, reported := m["source_readable"].(bool)
	dir := orNone(str(m["source_dir"]))
	switch {
	case !reported:
		c.Verdict, c.Reason = p.unknownVerdict(), fmt.Sprintf("%s did not report the share (no log-shipping configuration or saved snapshot on %s)", h.FQDN, h.FQDN)
	case readable:
		c.Verdict, c.Reason = verdictPass, dir+" is readable from "+h.FQDN
	case p.in.Kind == plan.FailoverDisaster:
		c.Verdict = verdictWarn
		c.Reason = fmt.Sprintf("%s is not readable from %s (%s): expected if it went with the primary site; the logs not yet copied are lost and the data-loss window counts from the last copied file (domain §6.3)", dir, h.FQDN, str(m["source_error"]))
	default:
		what := "the planned failover ships the tail-log backup through it"
		if !p.failover() {
			what = "the failback writes the full backup there (domain B3)"
		}
		c.Verdict = verdictFail
		c.Reason = fmt.Sprintf("%s is not readable from %s (%s): %s. Give the SQL Server and SQL Server Agent service accounts of %s read/write on the share, and add it to plugin_config.mssql.roots if the error says so", dir, h.FQDN, str(m["source_error"]), what, h.FQDN)
	}
	return c
}

// unknownVerdict is the verdict of a share/copy-directory check with no
// data: the agents and log-shipping checks already fail for a failover;
// a failback may have no log-shipping configuration left to read it from.
func (p *pf) unknownVerdict() verdict {
	if p.failover() {
		return verdictFail
	}
	return verdictWarn
}

// copyDirCheck: the copy directory on the backup is writable (F2).
func (p *pf) copyDirCheck() check {
	h := p.t.SQL.Backup
	c := check{Name: "copy_dir_writable", Title: "The copy directory on the backup SQL Server is writable", Subject: h.FQDN}
	if !p.failover() {
		c.Verdict, c.Reason = verdictSkip, "a failback does not copy log backups"
		return c
	}
	m, why := p.logShipping()
	if m == nil {
		c.Verdict, c.Reason = verdictFail, "not reported: "+why
		return c
	}
	writable, reported := m["copy_dir_writable"].(bool)
	dir := orNone(str(m["copy_dir"]))
	switch {
	case !reported:
		c.Verdict, c.Reason = verdictFail, fmt.Sprintf("%s did not report its copy directory (no log-shipping configuration in msdb)", h.FQDN)
	case writable:
		c.Verdict, c.Reason = verdictPass, dir+" is writable on "+h.FQDN
	default:
		c.Verdict = verdictFail
		c.Reason = fmt.Sprintf("%s is not writable on %s (%s): the failover copies the pending log backups there. Free disk space or grant the agent's and SQL Server Agent's accounts write access, and add it to plugin_config.mssql.roots if the error says so", dir, h.FQDN, str(m["copy_dir_error"]))
	}
	return c
}

// activeServersCheck: at most four active servers, all in the site of the
// database the pool uses now (or linked to it with low latency).
func (p *pf) activeServersCheck() check {
	c := check{Name: "active_servers", Title: fmt.Sprintf("At most %d active servers, in the site of the database in use", topology.MaxActiveServers), Subject: p.t.ManagementShellHost}
	list := p.facts.ActiveServers
	if list == nil {
		_, why := p.fact(p.t.ManagementShellHost, "csshell.cs.active_servers")
		c.Verdict, c.Reason = verdictFail, fmt.Sprintf("the active server list could not be read on %s: %s", p.t.ManagementShellHost, why)
		return c
	}
	state := p.facts.PoolState
	if state == plan.PoolUnknown {
		state = plan.PoolNormal
		if !p.failover() {
			state = plan.PoolFailedOver
		}
	}
	dbSite := p.t.SiteByRole(topology.SitePrimary)
	if state == plan.PoolFailedOver {
		dbSite = p.t.SiteByRole(topology.SiteBackup)
	}
	siteOK := map[string]bool{dbSite.Name: true}
	for _, s := range p.t.Sites {
		if slices.Contains(s.LowLatencyTo, dbSite.Name) {
			siteOK[s.Name] = true
		}
	}
	var problems []string
	if len(list) > topology.MaxActiveServers {
		problems = append(problems, fmt.Sprintf("%d servers are active (%s), more than the %d a pool supports (domain §6.16)", len(list), strings.Join(list, ", "), topology.MaxActiveServers))
	}
	var wrong []string
	for _, a := range list {
		site := ""
		for _, cs := range p.t.ChatServers {
			if strings.EqualFold(cs.FQDN, a) {
				site = cs.Site
			}
		}
		switch {
		case site == "":
			wrong = append(wrong, a+" (not in the topology)")
		case !siteOK[site]:
			wrong = append(wrong, a+" (site "+site+")")
		}
	}
	if len(wrong) > 0 {
		problems = append(problems, fmt.Sprintf("the pool is %s and uses the database in site %s, but %s active", state, dbSite.Name, strings.Join(wrong, ", ")+pluralIs(len(wrong))))
	}
	switch {
	case len(problems) > 0:
		c.Verdict = verdictFail
		c.Reason = strings.Join(problems, "; ") + ". Fix the list with Set-CsPersistentChatActiveServer (at most 4, in the database's site), or correct the topology's active_when"
	case len(list) == 0:
		c.Verdict, c.Reason = verdictWarn, "no server is active: no chat server accepts new connections now"
	default:
		c.Verdict, c.Reason = verdictPass, fmt.Sprintf("%d active in site %s: %s", len(list), dbSite.Name, strings.Join(list, ", "))
	}
	return c
}

func pluralIs(n int) string {
	if n == 1 {
		return " is"
	}
	return " are"
}

// planCheck: the plan builder, given the same facts, builds the plan; its
// refusal is what the run would answer.
func (p *pf) planCheck() check {
	c := check{Name: "plan", Title: "The " + string(p.in.Kind) + " plan can be built from these facts", Subject: p.t.Pool}
	pl, err := plan.Build(p.t, p.facts, plan.Request{Kind: p.in.Kind, Pool: p.t.Pool, Now: p.in.Now})
	if err != nil {
		c.Verdict, c.Reason = verdictFail, err.Error()
		return c
	}
	steps, approvals := 0, 0
	for _, g := range pl.Groups {
		for _, st := range g.Steps {
			steps++
			if st.Approval.Required {
				approvals++
			}
		}
	}
	c.Verdict, c.Reason = verdictPass, fmt.Sprintf("%d groups, %d steps, %d may need an approval (chatdr plan shows it)", len(pl.Groups), steps, approvals)
	return c
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
