package plan

import (
	"errors"
	"fmt"
	"strings"

	"github.com/chatdr/chatdr/controller/topology"
)

// Validate checks that p is well formed and runnable on topology t, for
// plans built here and for plans made or edited by hand. It reports every
// problem found, joined, each wrapped with ErrInvalidPlan:
//   - the kind is known and the pool is t's;
//   - groups have unique, non-empty names and at least one step;
//   - step IDs are unique, non-empty, of letters, digits and '-';
//   - every host is an agent host of t, every action names a plugin action;
//   - params and expectations hold JSON-like values only;
//   - timeouts are positive, retries have at least one attempt and a
//     backoff no larger than its cap;
//   - approvals say when ("always" or "data_loss") with 1 or more approvers;
//     a data_loss approval names data-loss sources, and those (and every
//     ExpectFrom reference) are steps of earlier groups;
//   - guards are of a known kind, on a SQL host of t, for a database;
//   - destructive actions are marked Destructive, and every recovery of a
//     backup-site database carries an old_primary_not_writable guard for
//     the primary;
//   - no active-server step names more than 4 servers or a server that is
//     not a chat server of t, and in failover and failback plans servers
//     are activated only after an earlier group switched the pool state.
func Validate(t *topology.Topology, p *Plan) error {
	if t == nil || p == nil {
		return fmt.Errorf("%w: no topology or no plan", ErrInvalidPlan)
	}
	v := &validator{t: t, p: p}
	v.run()
	return errors.Join(v.errs...)
}

type validator struct {
	t    *topology.Topology
	p    *Plan
	errs []error
}

func (v *validator) addf(format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%w: %s", ErrInvalidPlan, fmt.Sprintf(format, args...)))
}

func (v *validator) run() {
	t, p := v.t, v.p
	if !p.Kind.Valid() {
		v.addf("kind %q is not a plan kind", p.Kind)
	}
	if !strings.EqualFold(p.Pool, t.Pool) {
		v.addf("pool %q is not the topology's pool %s", p.Pool, t.Pool)
	}
	if len(p.Groups) == 0 {
		v.addf("the plan has no group")
	}
	hosts := map[string]bool{}
	for _, a := range t.Agents() {
		hosts[strings.ToLower(a.Host)] = true
	}
	sqlHosts := map[string]bool{}
	for _, h := range t.SQLHosts() {
		sqlHosts[strings.ToLower(h.FQDN)] = true
	}
	groupOf := map[string]int{} // step ID → group index
	groupNames := map[string]bool{}
	switched := false // an earlier group switched the pool state
	for gi, g := range p.Groups {
		where := fmt.Sprintf("group %d (%s)", gi+1, g.Name)
		switch {
		case g.Name == "":
			v.addf("group %d has no name", gi+1)
		case groupNames[g.Name]:
			v.addf("%s: the name is used by an earlier group", where)
		}
		groupNames[g.Name] = true
		if len(g.Steps) == 0 {
			v.addf("%s has no step", where)
		}
		switchesHere := false
		for _, s := range g.Steps {
			at := fmt.Sprintf("%s, step %q", where, s.ID)
			if !validID(s.ID) {
				v.addf("%s: the ID must be non-empty letters, digits and '-'", at)
			} else if prev, dup := groupOf[s.ID]; dup {
				v.addf("%s: the ID is used by a step of group %d", at, prev+1)
			}
			v.step(at, s, hosts, sqlHosts, groupOf)
			if s.Action == actCSSetActive && (p.Kind == FailoverPlanned || p.Kind == FailoverDisaster || p.Kind == Failback) {
				if n, _ := s.Params["servers"].([]any); len(n) > 0 && !switched {
					v.addf("%s: servers are activated before any earlier group switched the pool state (domain §3 ordering hazard)", at)
				}
			}
			if s.Action == actCSSetState {
				switchesHere = true
			}
		}
		for _, s := range g.Steps {
			if s.ID != "" {
				if _, dup := groupOf[s.ID]; !dup {
					groupOf[s.ID] = gi
				}
			}
		}
		switched = switched || switchesHere
	}
}

// step checks one step; groupOf holds the steps of earlier groups.
func (v *validator) step(at string, s Step, hosts, sqlHosts map[string]bool, groupOf map[string]int) {
	t := v.t
	if !hosts[strings.ToLower(s.Host)] {
		v.addf("%s: host %q is not an agent host of the topology", at, s.Host)
	}
	if plugin, rest, ok := strings.Cut(s.Action, "."); !ok || plugin == "" || rest == "" {
		v.addf("%s: action %q is not <plugin>.<action>", at, s.Action)
	}
	if err := jsonLike(s.Params); err != nil {
		v.addf("%s: params: %v", at, err)
	}
	if err := jsonLike(s.Expect); err != nil {
		v.addf("%s: expect: %v", at, err)
	}
	if s.Timeout <= 0 {
		v.addf("%s: timeout %s must be positive", at, s.Timeout)
	}
	if s.Retry.MaxAttempts < 1 {
		v.addf("%s: retry.max_attempts %d must be at least 1", at, s.Retry.MaxAttempts)
	}
	if s.Retry.Backoff < 0 || s.Retry.MaxBackoff < s.Retry.Backoff {
		v.addf("%s: retry backoff %s must be ≥ 0 and ≤ max_backoff %s", at, s.Retry.Backoff, s.Retry.MaxBackoff)
	}
	if strings.TrimSpace(s.Reason) == "" {
		v.addf("%s: no reason (cite the procedure step)", at)
	}
	earlier := func(what, id string) {
		if _, ok := groupOf[id]; !ok {
			v.addf("%s: %s %q is not a step of an earlier group", at, what, id)
		}
	}
	a := s.Approval
	switch {
	case !a.Required && (a.When != "" || a.Approvers != 0):
		v.addf("%s: approval not required but has when %q / approvers %d", at, a.When, a.Approvers)
	case a.Required && a.When != ApproveAlways && a.When != ApproveOnDataLoss:
		v.addf("%s: approval when %q: want %q or %q", at, a.When, ApproveAlways, ApproveOnDataLoss)
	case a.Required && a.Approvers < 1:
		v.addf("%s: approval needs at least 1 approver", at)
	}
	if a.Required && a.When == ApproveOnDataLoss && len(s.DataLossFrom) == 0 {
		v.addf("%s: a data_loss approval needs data_loss_from steps", at)
	}
	if len(s.DataLossFrom) > 0 && !(a.Required && a.When == ApproveOnDataLoss) {
		v.addf("%s: data_loss_from without a data_loss approval", at)
	}
	for _, id := range s.DataLossFrom {
		earlier("data-loss source", id)
	}
	for _, field := range sortedKeys(s.ExpectFrom) {
		id, out, ok := strings.Cut(s.ExpectFrom[field], ".")
		if !ok || out == "" {
			v.addf("%s: expect_from %s = %q: want <step id>.<output field>", at, field, s.ExpectFrom[field])
			continue
		}
		earlier("expect_from source", id)
	}
	for _, g := range s.Guards {
		if g.Kind != GuardOldPrimaryNotWritable && g.Kind != GuardDatabaseWritable {
			v.addf("%s: guard kind %q is unknown", at, g.Kind)
		}
		if !sqlHosts[strings.ToLower(g.Host)] {
			v.addf("%s: guard host %q is not a SQL host of the topology", at, g.Host)
		}
		if g.Database == "" {
			v.addf("%s: guard %s names no database", at, g.Kind)
		}
	}
	if destructiveAction(s.Action) && !s.Destructive {
		v.addf("%s: %s is destructive and must be marked so", at, s.Action)
	}
	if makesBackupWritable(t, s) && !hasFence(t, s) {
		v.addf("%s: makes the backup's %v writable without an %s guard on the primary %s (design §5 fencing)",
			at, s.Params["database"], GuardOldPrimaryNotWritable, t.SQL.Primary.FQDN)
	}
	if s.Action == actCSSetActive {
		servers, _ := s.Params["servers"].([]any)
		if len(servers) > topology.MaxActiveServers {
			v.addf("%s: %d servers to activate: a pool has at most %d active servers", at, len(servers), topology.MaxActiveServers)
		}
		for _, x := range servers {
			name, _ := x.(string)
			found := false
			for _, cs := range t.ChatServers {
				if strings.EqualFold(cs.FQDN, name) {
					found = true
				}
			}
			if !found {
				v.addf("%s: %v is not a chat server of the topology", at, x)
			}
		}
	}
}

// makesBackupWritable reports whether s brings a database on a backup-site
// SQL host online: RESTORE WITH RECOVERY, or a full restore WITH RECOVERY.
func makesBackupWritable(t *topology.Topology, s Step) bool {
	onBackup := false
	for _, h := range []*topology.SQLHost{t.SQL.Backup, t.SQL.BackupMirror} {
		if h != nil && strings.EqualFold(h.FQDN, s.Host) {
			onBackup = true
		}
	}
	if !onBackup {
		return false
	}
	switch s.Action {
	case actRecover:
		return true
	case actRestoreFull:
		mode, _ := s.Params["recovery"].(string)
		return mode == "" || strings.EqualFold(mode, "recovery")
	}
	return false
}

// hasFence reports whether s carries the fencing guard on the primary for
// its database.
func hasFence(t *topology.Topology, s Step) bool {
	db, _ := s.Params["database"].(string)
	for _, g := range s.Guards {
		if g.Kind == GuardOldPrimaryNotWritable && strings.EqualFold(g.Host, t.SQL.Primary.FQDN) && strings.EqualFold(g.Database, db) {
			return true
		}
	}
	return false
}

// validID reports whether id is non-empty and made of letters, digits and
// '-'.
func validID(id string) bool {
	if id == "" {
		return false
	}
	for _, r := range id {
		if !(r == '-' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9')) {
			return false
		}
	}
	return true
}

// jsonLike checks that m holds only values a protobuf Struct can carry
// without change: string, float64, bool, nil, []any and map[string]any of
// those.
func jsonLike(m map[string]any) error {
	for _, k := range sortedKeys(m) {
		if err := jsonValue(m[k]); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}

func jsonValue(v any) error {
	switch x := v.(type) {
	case nil, string, float64, bool:
		return nil
	case []any:
		for i, e := range x {
			if err := jsonValue(e); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
		return nil
	case map[string]any:
		return jsonLike(x)
	}
	return fmt.Errorf("%T is not a JSON-like value (string, float64, bool, []any, map[string]any)", v)
}
