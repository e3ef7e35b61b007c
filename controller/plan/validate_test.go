package plan_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/controller/plan"
)

// stepPtr returns a pointer to the step id of p, for editing.
func stepPtr(t *testing.T, p *plan.Plan, id string) *plan.Step {
	t.Helper()
	for gi := range p.Groups {
		for si := range p.Groups[gi].Steps {
			if p.Groups[gi].Steps[si].ID == id {
				return &p.Groups[gi].Steps[si]
			}
		}
	}
	t.Fatalf("no step %s", id)
	return nil
}

func groupIndex(p *plan.Plan, name string) int {
	for i, g := range p.Groups {
		if g.Name == name {
			return i
		}
	}
	return -1
}

func TestValidate_handMadePlans(t *testing.T) {
	lab := loadTopology(t, "lab")
	tests := []struct {
		name    string
		kind    plan.Kind
		edit    func(t *testing.T, p *plan.Plan)
		message string
	}{
		{"duplicate ID", plan.FailoverPlanned, func(t *testing.T, p *plan.Plan) {
			stepPtr(t, p, "F4a-kill-sessions-mgc").ID = "F2-copy-logs-mgc"
		}, "used by a step of group"},
		{"bad ID", plan.FailoverPlanned, func(t *testing.T, p *plan.Plan) { stepPtr(t, p, "F4a-kill-sessions-mgc").ID = "F4a.kill" }, "letters, digits"},
		{"unknown host", plan.FailoverPlanned, func(t *testing.T, p *plan.Plan) {
			stepPtr(t, p, "F2-copy-logs-mgc").Host = "sql9.dc2.lab.chatdr.test"
		}, "not an agent host"},
		{"empty action", plan.FailoverPlanned, func(t *testing.T, p *plan.Plan) { stepPtr(t, p, "F2-copy-logs-mgc").Action = "" }, "not <plugin>.<action>"},
		{"not JSON-like params", plan.FailoverPlanned, func(t *testing.T, p *plan.Plan) {
			stepPtr(t, p, "F2-copy-logs-mgc").Params["retries"] = 3
		}, "int is not a JSON-like value"},
		{"no timeout", plan.FailoverPlanned, func(t *testing.T, p *plan.Plan) { stepPtr(t, p, "F2-copy-logs-mgc").Timeout = 0 }, "timeout"},
		{"no attempt", plan.FailoverPlanned, func(t *testing.T, p *plan.Plan) { stepPtr(t, p, "F2-copy-logs-mgc").Retry.MaxAttempts = 0 }, "max_attempts"},
		{"no reason", plan.FailoverPlanned, func(t *testing.T, p *plan.Plan) { stepPtr(t, p, "F2-copy-logs-mgc").Reason = " " }, "no reason"},
		{"data loss from a later step", plan.FailoverDisaster, func(t *testing.T, p *plan.Plan) {
			s := stepPtr(t, p, "F4b-recover-mgc")
			s.DataLossFrom = append(s.DataLossFrom, "F7-test-message")
		}, `"F7-test-message" is not a step of an earlier group`},
		{"data loss from a missing step", plan.FailoverDisaster, func(t *testing.T, p *plan.Plan) {
			stepPtr(t, p, "F4b-recover-mgc").DataLossFrom = []string{"F3-restore"}
		}, "not a step of an earlier group"},
		{"data-loss approval without sources", plan.FailoverDisaster, func(t *testing.T, p *plan.Plan) {
			stepPtr(t, p, "F4b-recover-mgc").DataLossFrom = nil
		}, "needs data_loss_from"},
		{"sources without approval", plan.FailoverDisaster, func(t *testing.T, p *plan.Plan) {
			stepPtr(t, p, "F4b-recover-mgc").Approval = plan.Approval{}
		}, "data_loss_from without a data_loss approval"},
		{"approval without approvers", plan.FailoverDisaster, func(t *testing.T, p *plan.Plan) {
			stepPtr(t, p, "F4b-recover-mgc").Approval.Approvers = 0
		}, "at least 1 approver"},
		{"approval when", plan.FailoverDisaster, func(t *testing.T, p *plan.Plan) {
			stepPtr(t, p, "F4b-recover-mgc").Approval.When = "sometimes"
		}, "approval when"},
		{"expect_from a later step", plan.FailoverPlanned, func(t *testing.T, p *plan.Plan) {
			stepPtr(t, p, "F3-restore-logs-mgc").ExpectFrom = map[string]string{"reached_lsn": "F4b-recover-mgc.redo_start_lsn"}
		}, "expect_from source"},
		{"recovery without fencing", plan.FailoverDisaster, func(t *testing.T, p *plan.Plan) {
			stepPtr(t, p, "F4b-recover-mgc").Guards = nil
		}, "without an old_primary_not_writable guard"},
		{"full restore WITH RECOVERY on the backup without fencing", plan.Failback, func(t *testing.T, p *plan.Plan) {
			stepPtr(t, p, "B5-init-secondary-mgc").Params["recovery"] = "recovery"
		}, "without an old_primary_not_writable guard"},
		{"destructive not marked", plan.FailoverDisaster, func(t *testing.T, p *plan.Plan) {
			stepPtr(t, p, "F1-remove-log-shipping-secondary").Destructive = false
		}, "must be marked so"},
		{"unknown guard", plan.FailoverDisaster, func(t *testing.T, p *plan.Plan) {
			s := stepPtr(t, p, "F4b-recover-mgc")
			s.Guards = append(s.Guards, plan.Guard{Kind: "moon_phase", Host: "pc1.dc1.lab.chatdr.test"})
		}, `guard kind "moon_phase"`},
		{"more than 4 servers", plan.FailoverPlanned, func(t *testing.T, p *plan.Plan) {
			s := stepPtr(t, p, "F7-set-active-servers")
			s.Params["servers"] = append(s.Params["servers"].([]any), "pc1.dc1.lab.chatdr.test")
		}, "5 servers to activate"},
		{"unknown server", plan.FailoverPlanned, func(t *testing.T, p *plan.Plan) {
			stepPtr(t, p, "F7-set-active-servers").Params["servers"] = []any{"pc9.dc2.lab.chatdr.test"}
		}, "not a chat server"},
		{"B6 before B7", plan.Failback, func(t *testing.T, p *plan.Plan) {
			sw, act := groupIndex(p, "switch-pool"), groupIndex(p, "activate")
			p.Groups[sw], p.Groups[act] = p.Groups[act], p.Groups[sw]
		}, "ordering hazard"},
		{"empty group", plan.Failback, func(t *testing.T, p *plan.Plan) {
			p.Groups = append(p.Groups, plan.Group{Name: "later"})
		}, "has no step"},
		{"duplicate group", plan.Failback, func(t *testing.T, p *plan.Plan) { p.Groups[1].Name = p.Groups[0].Name }, "used by an earlier group"},
		{"other pool", plan.Failback, func(t *testing.T, p *plan.Plan) { p.Pool = "pchat02.contoso.com" }, "not the topology's pool"},
		{"bad kind", plan.Failback, func(t *testing.T, p *plan.Plan) { p.Kind = "drill" }, "not a plan kind"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := build(t, lab, plan.Facts{}, request(lab, tc.kind))
			tc.edit(t, p)
			err := plan.Validate(lab, p)
			require.ErrorIs(t, err, plan.ErrInvalidPlan)
			require.ErrorContains(t, err, tc.message)
		})
	}
}

func TestValidate_nil(t *testing.T) {
	require.ErrorIs(t, plan.Validate(nil, &plan.Plan{}), plan.ErrInvalidPlan)
	require.ErrorIs(t, plan.Validate(loadTopology(t, "lab"), nil), plan.ErrInvalidPlan)
}
