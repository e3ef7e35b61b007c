package plan

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Table renders the plan as a runbook table: one row per step with its
// group, ID, host, action, key parameters, timeout, retry budget, approval
// and reason, then, under the reason, a line with the step's checks
// (destructive, best effort, guards, expectations), then the notes. The output is
// deterministic.
func (p *Plan) Table() string {
	var sb strings.Builder
	steps := 0
	for _, g := range p.Groups {
		steps += len(g.Steps)
	}
	fmt.Fprintf(&sb, "Plan %s of pool %s: %d groups, %d steps. Groups run in order; the steps of a group run in parallel.\n\n",
		p.Kind, p.Pool, len(p.Groups), steps)
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSTEP\tHOST\tACTION\tPARAMS\tTIMEOUT\tTRIES\tAPPROVAL\tREASON")
	for gi, g := range p.Groups {
		for si, s := range g.Steps {
			group := ""
			if si == 0 {
				group = fmt.Sprintf("%d %s", gi+1, g.Name)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", group, s.ID, s.Host, s.Action, renderParams(s.Params),
				s.Timeout, s.Retry.MaxAttempts, renderApproval(s.Approval), s.Reason)
			if c := renderChecks(s); c != "" {
				fmt.Fprintf(tw, "\t\t\t\t\t\t\t\t%s\n", c) // under REASON, unmeasured
			}
		}
	}
	tw.Flush()
	if len(p.Notes) > 0 {
		sb.WriteString("\nNotes:\n")
		for _, n := range p.Notes {
			sb.WriteString("- " + n + "\n")
		}
	}
	return sb.String()
}

// renderApproval renders an approval for the table.
func renderApproval(a Approval) string {
	if !a.Required {
		return "-"
	}
	return fmt.Sprintf("%s x%d", a.When, a.Approvers)
}

// renderChecks renders a step's safety marks, guards and expectations.
func renderChecks(s Step) string {
	var parts []string
	if s.Destructive {
		parts = append(parts, "DESTRUCTIVE")
	}
	if s.BestEffort {
		parts = append(parts, "best effort (skipped if host down)")
	}
	for _, g := range s.Guards {
		gs := fmt.Sprintf("guard %s(%s/%s)", g.Kind, g.Host, g.Database)
		if g.Override != "" {
			gs += " OVERRIDDEN"
		}
		parts = append(parts, gs)
	}
	if len(s.Expect) > 0 || len(s.ExpectFrom) > 0 {
		var es []string
		for _, k := range sortedKeys(s.Expect) {
			es = append(es, k+"="+renderValue(s.Expect[k]))
		}
		for _, k := range sortedKeys(s.ExpectFrom) {
			es = append(es, k+"="+s.ExpectFrom[k])
		}
		parts = append(parts, "expect "+strings.Join(es, " "))
	}
	if len(s.DataLossFrom) > 0 {
		parts = append(parts, "data loss from "+strings.Join(s.DataLossFrom, ", "))
	}
	if len(parts) == 0 {
		return ""
	}
	return "↳ " + strings.Join(parts, "; ")
}

// renderParams renders parameters as key=value in key order.
func renderParams(params map[string]any) string {
	if len(params) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range sortedKeys(params) {
		parts = append(parts, k+"="+renderValue(params[k]))
	}
	return strings.Join(parts, " ")
}

// renderValue renders a JSON-like value compactly.
func renderValue(v any) string {
	switch x := v.(type) {
	case string:
		if x == "" || strings.ContainsAny(x, " \t") {
			return strconv.Quote(x)
		}
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case []any:
		var parts []string
		for _, e := range x {
			parts = append(parts, renderValue(e))
		}
		return "[" + strings.Join(parts, ",") + "]"
	case map[string]any:
		var parts []string
		for _, k := range sortedKeys(x) {
			parts = append(parts, k+":"+renderValue(x[k]))
		}
		return "{" + strings.Join(parts, ",") + "}"
	case nil:
		return "null"
	}
	return fmt.Sprint(v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// stepJSON is the JSON form of a Step: snake_case names, durations as Go
// duration strings ("5m0s").
type stepJSON struct {
	ID           string            `json:"id"`
	Host         string            `json:"host"`
	Action       string            `json:"action"`
	Params       map[string]any    `json:"params"`
	Timeout      string            `json:"timeout"`
	Retry        retryJSON         `json:"retry"`
	Approval     Approval          `json:"approval"`
	Destructive  bool              `json:"destructive"`
	BestEffort   bool              `json:"best_effort"`
	Reason       string            `json:"reason"`
	Expect       map[string]any    `json:"expect,omitempty"`
	ExpectFrom   map[string]string `json:"expect_from,omitempty"`
	Guards       []Guard           `json:"guards,omitempty"`
	DataLossFrom []string          `json:"data_loss_from,omitempty"`
}

// retryJSON is the JSON form of a Retry.
type retryJSON struct {
	MaxAttempts int    `json:"max_attempts"`
	Backoff     string `json:"backoff"`
	MaxBackoff  string `json:"max_backoff"`
}

// MarshalJSON encodes the step with snake_case field names and durations
// as strings such as "5m0s".
func (s Step) MarshalJSON() ([]byte, error) {
	params := s.Params
	if params == nil {
		params = map[string]any{}
	}
	return json.Marshal(stepJSON{
		ID: s.ID, Host: s.Host, Action: s.Action, Params: params, Timeout: s.Timeout.String(),
		Retry:    retryJSON{MaxAttempts: s.Retry.MaxAttempts, Backoff: s.Retry.Backoff.String(), MaxBackoff: s.Retry.MaxBackoff.String()},
		Approval: s.Approval, Destructive: s.Destructive, BestEffort: s.BestEffort, Reason: s.Reason,
		Expect: s.Expect, ExpectFrom: s.ExpectFrom, Guards: s.Guards, DataLossFrom: s.DataLossFrom,
	})
}

// UnmarshalJSON decodes what MarshalJSON encodes (numbers in params and
// expectations become float64, as in a protobuf Struct).
func (s *Step) UnmarshalJSON(b []byte) error {
	var j stepJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	dur := func(field, v string) (time.Duration, error) {
		if v == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("step %s: %s %q: %w", j.ID, field, v, err)
		}
		return d, nil
	}
	timeout, err := dur("timeout", j.Timeout)
	if err != nil {
		return err
	}
	backoff, err := dur("retry.backoff", j.Retry.Backoff)
	if err != nil {
		return err
	}
	maxBackoff, err := dur("retry.max_backoff", j.Retry.MaxBackoff)
	if err != nil {
		return err
	}
	*s = Step{ID: j.ID, Host: j.Host, Action: j.Action, Params: j.Params, Timeout: timeout,
		Retry:    Retry{MaxAttempts: j.Retry.MaxAttempts, Backoff: backoff, MaxBackoff: maxBackoff},
		Approval: j.Approval, Destructive: j.Destructive, BestEffort: j.BestEffort, Reason: j.Reason,
		Expect: j.Expect, ExpectFrom: j.ExpectFrom, Guards: j.Guards, DataLossFrom: j.DataLossFrom}
	if s.Params == nil {
		s.Params = map[string]any{}
	}
	return nil
}

// JSON returns the plan as indented JSON (the same encoding as
// json.Marshal, indented by two spaces).
func (p *Plan) JSON() ([]byte, error) { return json.MarshalIndent(p, "", "  ") }
