package plan

import (
	"fmt"
	"strings"
	"time"

	"github.com/chatdr/chatdr/controller/topology"
)

// Build returns the plan r asks for on topology t, given the facts f.
//
// It is a pure function: no I/O, no clock (file names come from r.Now),
// and the same inputs always give an equal plan. It refuses, with an error
// that says what to do instead, a request for an unknown pool
// (ErrUnknownPool), an incomplete request (ErrBadRequest), and a request
// the facts show impossible or unsafe (ErrRefused, and ErrSplitBrain as
// well when two writable chat databases would result). Unknown facts never
// block a build. t must be a validated topology (topology.Load or Parse).
func Build(t *topology.Topology, f Facts, r Request) (*Plan, error) {
	if t == nil {
		return nil, fmt.Errorf("%w: no topology", ErrBadRequest)
	}
	if !r.Kind.Valid() {
		return nil, fmt.Errorf("%w: plan kind %q: want %s, %s or %s", ErrBadRequest, r.Kind, FailoverPlanned, FailoverDisaster, Failback)
	}
	if !strings.EqualFold(strings.TrimSpace(r.Pool), t.Pool) {
		return nil, fmt.Errorf("%w: %q: the topology holds pool %s only", ErrUnknownPool, r.Pool, t.Pool)
	}
	if r.Force.set() && strings.TrimSpace(r.Force.Reason) == "" {
		return nil, fmt.Errorf("%w: forcing needs a reason (it is recorded in the plan and the audit log)", ErrBadRequest)
	}
	if (r.Options.TestSenderSIP == "") != (r.Options.TestReceiverSIP == "") {
		return nil, fmt.Errorf("%w: give both test users (sender and receiver SIP addresses) or neither", ErrBadRequest)
	}
	b := newBuilder(t, f, r)
	var err error
	switch r.Kind {
	case FailoverPlanned:
		err = b.failoverPlanned()
	case FailoverDisaster:
		err = b.failoverDisaster()
	case Failback:
		err = b.failback()
	}
	if err != nil {
		return nil, err
	}
	return b.p, nil
}

// builder accumulates one plan.
type builder struct {
	t      *topology.Topology
	f      Facts
	r      Request
	opt    Options
	p      *Plan
	labels map[string]string // host FQDN (lower case) → short label for step IDs
}

func newBuilder(t *topology.Topology, f Facts, r Request) *builder {
	opt := r.Options
	if opt.ChatService == "" {
		opt.ChatService = DefaultChatService
	}
	if opt.ComplianceService == "" {
		opt.ComplianceService = DefaultComplianceService
	}
	b := &builder{t: t, f: f, r: r, opt: opt, p: &Plan{Kind: r.Kind, Pool: t.Pool, Groups: []Group{}, Notes: []string{}}}
	b.labels = hostLabels(t)
	if r.Force.set() {
		var flags []string
		if r.Force.SplitBrain {
			flags = append(flags, "split-brain checks and fencing guards overridden")
		}
		if r.Force.PoolState {
			flags = append(flags, "pool state check overridden")
		}
		b.note("FORCED (%s): %s", strings.Join(flags, "; "), r.Force.Reason)
	}
	return b
}

// add appends a group unless it has no step.
func (b *builder) add(name string, steps ...Step) {
	if len(steps) == 0 {
		return
	}
	b.p.Groups = append(b.p.Groups, Group{Name: name, Steps: steps})
}

// addAll appends a group of steps unless there is none.
func (b *builder) addAll(name string, steps []Step) { b.add(name, steps...) }

func (b *builder) note(format string, args ...any) {
	b.p.Notes = append(b.p.Notes, fmt.Sprintf(format, args...))
}

// step returns a step with the action's default policy.
func (b *builder) step(id, host, action string, params map[string]any, reason string) Step {
	pol := policyFor(action)
	if params == nil {
		params = map[string]any{}
	}
	return Step{ID: id, Host: host, Action: action, Params: params, Timeout: pol.timeout, Retry: pol.retry,
		Destructive: pol.destructive, Reason: reason}
}

// refuse returns a refusal error.
func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// splitBrain returns a split-brain refusal.
func splitBrain(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrRefused, ErrSplitBrain, fmt.Sprintf(format, args...))
}

// reachable returns what the facts say about host's agent.
func (b *builder) reachable(host string) (reachable, known bool) {
	for h, v := range b.f.Reachable {
		if strings.EqualFold(h, host) {
			return v, true
		}
	}
	return false, false
}

// unreachable reports whether the facts say host's agent did not answer.
func (b *builder) unreachable(host string) bool {
	r, known := b.reachable(host)
	return known && !r
}

// database returns the fact about database on host, if any.
func (b *builder) database(host *topology.SQLHost, database string) (DatabaseFact, bool) {
	if host == nil {
		return DatabaseFact{}, false
	}
	for _, d := range b.f.Databases {
		if strings.EqualFold(d.Host, host.FQDN) && strings.EqualFold(d.Database, database) {
			return d, true
		}
	}
	return DatabaseFact{}, false
}

// writable reports whether the facts show database writable on host.
func (b *builder) writable(host *topology.SQLHost, database string) bool {
	d, ok := b.database(host, database)
	return ok && d.Writable()
}

// hostLabels gives every agent host a short label for step IDs: its first
// DNS label, or its first two labels when the first is not unique.
func hostLabels(t *topology.Topology) map[string]string {
	agents := t.Agents()
	count := map[string]int{}
	for _, a := range agents {
		count[firstLabel(a.Host)]++
	}
	out := make(map[string]string, len(agents))
	for _, a := range agents {
		l := firstLabel(a.Host)
		if count[l] > 1 {
			parts := strings.SplitN(strings.ToLower(a.Host), ".", 3)
			if len(parts) >= 2 {
				l = parts[0] + "-" + parts[1]
			}
		}
		out[strings.ToLower(a.Host)] = l
	}
	return out
}

func firstLabel(host string) string {
	l, _, _ := strings.Cut(strings.ToLower(host), ".")
	return l
}

// label returns host's short label.
func (b *builder) label(host string) string {
	if l, ok := b.labels[strings.ToLower(host)]; ok {
		return l
	}
	return firstLabel(host)
}

// chatServer returns the topology's chat server named fqdn (any case).
func (b *builder) chatServer(fqdn string) (topology.ChatServer, bool) {
	for _, cs := range b.t.ChatServers {
		if strings.EqualFold(cs.FQDN, fqdn) {
			return cs, true
		}
	}
	return topology.ChatServer{}, false
}

// shellHost picks the chat server where Management Shell cmdlets run: the
// configured management_shell_host unless it sits in avoidSite or the
// facts say its agent does not answer; then the first other chat server,
// preferring preferSite, that qualifies.
func (b *builder) shellHost(avoidSite, preferSite, why string) (string, error) {
	configured, _ := b.chatServer(b.t.ManagementShellHost)
	ok := func(cs topology.ChatServer) bool {
		return cs.FQDN != "" && cs.Site != avoidSite && !b.unreachable(cs.FQDN)
	}
	if ok(configured) {
		return configured.FQDN, nil
	}
	var pick string
	for _, pass := range []bool{true, false} {
		for _, cs := range b.t.ChatServers {
			if ok(cs) && (cs.Site == preferSite) == pass {
				pick = cs.FQDN
				break
			}
		}
		if pick != "" {
			break
		}
	}
	if pick == "" {
		return "", refuse("no chat server can run the Management Shell cmdlets (%s); management_shell_host %s is unusable", why, b.t.ManagementShellHost)
	}
	reason := "its agent does not answer"
	if configured.Site == avoidSite {
		reason = "it sits in site " + avoidSite + " (" + why + ")"
	}
	b.note("Management Shell cmdlets run on %s instead of the configured management_shell_host %s: %s.", pick, b.t.ManagementShellHost, reason)
	return pick, nil
}

// serviceSteps stops or starts the chat (and compliance) service on each
// server. bestEffort marks the steps the engine may skip when the server
// is down.
func (b *builder) serviceSteps(prefix, op string, servers []topology.ChatServer, bestEffort func(topology.ChatServer) bool, reason func(cs topology.ChatServer, service string) string) []Step {
	var steps []Step
	for _, cs := range servers {
		svcs := []struct{ kind, name string }{{"chat", b.opt.ChatService}}
		if b.t.Databases.ComplianceEnabled() {
			svcs = append(svcs, struct{ kind, name string }{"compliance", b.opt.ComplianceService})
		}
		for _, s := range svcs {
			params := map[string]any{"operation": op, "name": s.name}
			if op == "stop" {
				params["graceful"] = true
			}
			st := b.step(fmt.Sprintf("%s-%s-%s-%s", prefix, op, s.kind, b.label(cs.FQDN)), cs.FQDN, actCSService, params, reason(cs, s.name))
			st.BestEffort = bestEffort != nil && bestEffort(cs)
			steps = append(steps, st)
		}
	}
	return steps
}

// waitLocalStoreSteps waits until each server's local store shows state.
func (b *builder) waitLocalStoreSteps(prefix string, servers []topology.ChatServer, state PoolState, reason func(cs topology.ChatServer) string) []Step {
	var steps []Step
	for _, cs := range servers {
		st := b.step(fmt.Sprintf("%s-wait-local-store-%s", prefix, b.label(cs.FQDN)), cs.FQDN, actCSGetState,
			map[string]any{"identity": b.t.PoolIdentity, "local_store": true}, reason(cs))
		st.Expect = map[string]any{"pool_state": string(state)}
		st.Retry = waitLocalStore()
		steps = append(steps, st)
	}
	return steps
}

// testMessageStep posts a test message through the pool.
func (b *builder) testMessageStep(id, shell, reason string) Step {
	params := map[string]any{"target_fqdn": b.t.Pool, "require_success": true}
	if b.opt.TestSenderSIP != "" {
		params["sender_sip"], params["receiver_sip"] = b.opt.TestSenderSIP, b.opt.TestReceiverSIP
	}
	return b.step(id, shell, actCSTestMessage, params, reason)
}

// installMirrorStep runs Install-CsMirrorDatabase for one database type
// with principal as the principal.
func (b *builder) installMirrorStep(id, shell string, principal *topology.SQLHost, dbType, reason string) Step {
	params := map[string]any{"sql_server_fqdn": principal.FQDN, "file_share": b.t.LogShipping.MirrorShare,
		"database_type": dbType, "drop_existing": true}
	if !strings.EqualFold(principal.Instance, topology.DefaultInstance) {
		params["sql_instance_name"] = principal.Instance
	}
	return b.step(id, shell, actCSInstallMirror, params, reason)
}

// verifyMirrorStep waits until database on principal is a synchronized
// principal.
func (b *builder) verifyMirrorStep(id string, principal *topology.SQLHost, database, reason string) Step {
	st := b.step(id, principal.FQDN, actMirrorStatus, map[string]any{"database": database}, reason)
	st.Expect = map[string]any{"mirrored": true, "role": "PRINCIPAL", "state": "SYNCHRONIZED"}
	st.Retry = waitMirror()
	return st
}

// serverList returns the FQDNs of servers as a JSON-like list.
func serverList(servers []topology.ChatServer) []any {
	out := make([]any, len(servers))
	for i, cs := range servers {
		out[i] = cs.FQDN
	}
	return out
}

// fqdns joins the servers' FQDNs for messages.
func fqdns(servers []topology.ChatServer) string {
	var s []string
	for _, cs := range servers {
		s = append(s, cs.FQDN)
	}
	return strings.Join(s, ", ")
}

// union returns the chat servers that are in any of the sets, in topology
// file order.
func (b *builder) union(sets ...func(topology.ChatServer) bool) []topology.ChatServer {
	var out []topology.ChatServer
	for _, cs := range b.t.ChatServers {
		for _, in := range sets {
			if in(cs) {
				out = append(out, cs)
				break
			}
		}
	}
	return out
}

// activeNow reports whether the facts list cs as active; it also notes
// listed servers the topology does not know (once per plan).
func (b *builder) activeNow() func(topology.ChatServer) bool {
	var unknown []string
	for _, s := range b.f.ActiveServers {
		if _, ok := b.chatServer(s); !ok {
			unknown = append(unknown, s)
		}
	}
	if len(unknown) > 0 {
		b.note("The active server list holds servers the topology does not know (%s): they are cleared with the list but their services are not stopped by this plan; stop them by hand.", strings.Join(unknown, ", "))
	}
	return func(cs topology.ChatServer) bool {
		for _, s := range b.f.ActiveServers {
			if strings.EqualFold(s, cs.FQDN) {
				return true
			}
		}
		return false
	}
}

// sqlServerName is the name log shipping records for a SQL host: its FQDN,
// with \instance for a named instance.
func sqlServerName(h *topology.SQLHost) string {
	if strings.EqualFold(h.Instance, topology.DefaultInstance) || h.Instance == "" {
		return h.FQDN
	}
	return h.FQDN + `\` + h.Instance
}

// joinPath joins a directory (a UNC or Windows path, or a POSIX path) and a
// file name with the directory's own separator.
func joinPath(dir, file string) string {
	sep := "/"
	if strings.Contains(dir, `\`) && !strings.Contains(dir, "/") {
		sep = `\`
	}
	return strings.TrimRight(dir, `/\`) + sep + file
}

// count renders n and a noun, plural when n is not 1.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// stamp formats t as log shipping names its files: yyyymmddhhmmss, UTC.
func stamp(t time.Time) string { return t.UTC().Format("20060102150405") }

// describeDB renders a database fact for messages.
func describeDB(d DatabaseFact) string {
	switch {
	case !d.Exists():
		return "absent"
	case d.Standby:
		return d.State + " (standby)"
	case d.ReadOnly:
		return d.State + " (read-only)"
	}
	return d.State
}
