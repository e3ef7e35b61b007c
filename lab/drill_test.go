//go:build !windows

package lab_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/lab"
)

// volatileKey names the fact fields that change on their own while the
// lab runs (log shipping moves on, time passes); the rest must not change
// because of a drill.
var volatileKey = regexp.MustCompile(`(?i)(_time$|_date|lsn|_file$|latency|waiting|data_loss|newest|observed|last_seen|elapsed|checked_at)`)

func stripVolatile(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if !volatileKey.MatchString(k) {
				out[k] = stripVolatile(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = stripVolatile(e)
		}
		return out
	}
	return v
}

// stableFleet is `chatdr fleet status -o json` reduced to what a drill must
// leave alone: per agent, whether it answers and its facts (databases,
// pool state, active servers, services with their pids, log-shipping role
// and directories), without the fields that move by themselves.
func stableFleet(t *testing.T, env []string) map[string]any {
	t.Helper()
	r := chatdr(t, env, "fleet", "status", "-o", "json", "--timeout", "5s")
	require.Equal(t, 0, r.code, "fleet status: %s", r.stderr)
	var f struct {
		Pool   string `json:"pool"`
		Agents []struct {
			Host      string `json:"host"`
			Reachable bool   `json:"reachable"`
			Facts     []struct {
				Name  string         `json:"name"`
				Value map[string]any `json:"value"`
				Error map[string]any `json:"error"`
			} `json:"facts"`
		} `json:"agents"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &f), r.stdout)
	out := map[string]any{"pool": f.Pool}
	for _, a := range f.Agents {
		facts := map[string]any{"reachable": a.Reachable}
		for _, fa := range a.Facts {
			facts[fa.Name] = stripVolatile(map[string]any{"value": fa.Value, "error": fa.Error})
		}
		out[a.Host] = facts
	}
	return out
}

func jsonDuration(t *testing.T, v any) time.Duration {
	t.Helper()
	s, ok := v.(string)
	require.True(t, ok, "duration %v", v)
	d, err := time.ParseDuration(s)
	require.NoError(t, err)
	return d
}

// TestLab_Drill is issue 6 item 2 on the lab: a restore drill reports a
// restore time, rows and a data-loss window; fleet status (databases, pool
// state, services, log shipping) is the same before and after; no scratch
// database remains; log shipping goes on restoring.
func TestLab_Drill(t *testing.T) {
	dir, operator, viewer := afStartLab(t)
	backup := sqlOpenDB(t, dir, "sql1.dc2.chatdr.lab", "master")
	lastRestored := func() string {
		var f *string
		require.NoError(t, backup.QueryRowContext(t.Context(), "SELECT last_restored_file FROM msdb.dbo.log_shipping_secondary_databases WHERE secondary_database = 'mgc'").Scan(&f))
		if f == nil {
			return ""
		}
		return *f
	}
	require.NoError(t, testutil.Eventually(90*time.Second, 500*time.Millisecond, func() error {
		if lastRestored() == "" {
			return fmt.Errorf("nothing restored on the backup yet")
		}
		return nil
	}))

	before := stableFleet(t, viewer)
	require.Contains(t, before["sql1.dc2.chatdr.lab"], "mssql.databases", "fleet status reports the databases: %v", before)
	require.Contains(t, before["sql1.dc2.chatdr.lab"], "mssql.log_shipping")
	r := chatdr(t, viewer, "drill", "--pool", lab.Pool)
	require.Equal(t, 3, r.code, "a viewer may not run a drill: %s", r.stderr)

	r = chatdr(t, operator, "drill", "--pool", lab.Pool, "--wait")
	t.Logf("chatdr drill --wait: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "Drill drill-1 of "+lab.Pool+" on sql1.dc2.chatdr.lab: SUCCEEDED")
	restoredAfterDrill := lastRestored()

	r = chatdr(t, viewer, "drill", "show", "drill-1", "-o", "json")
	require.Equal(t, 0, r.code, r.stderr)
	var rep map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep), r.stdout)
	require.Equal(t, "DRILL_STATE_SUCCEEDED", rep["state"])
	require.Positive(t, jsonDuration(t, rep["restore_time"]), "a restore time")
	require.Positive(t, jsonDuration(t, rep["data_loss_window"]), "a data-loss window")
	require.Positive(t, jsonDuration(t, rep["rto_estimate"]), "an RTO estimate")
	rows, _ := rep["rows"].(string) // int64 is a JSON string in protojson
	require.NotEmpty(t, rows)
	require.NotEqual(t, "0", rows, "the restored copy holds messages")
	require.NotEmpty(t, rep["last_message_at"])
	require.NotEmpty(t, rep["reached_lsn"])
	require.Equal(t, true, rep["cleaned_up"])
	require.True(t, strings.HasPrefix(rep["scratch_database"].(string), "mgc_chatdr_drill_"))

	// No scratch database remains, and the secondary is still a secondary.
	names, err := backup.QueryContext(t.Context(), "SELECT name, state_desc FROM sys.databases")
	require.NoError(t, err)
	for names.Next() {
		var n, st string
		require.NoError(t, names.Scan(&n, &st))
		require.False(t, strings.HasPrefix(strings.ToLower(n), "mgc_chatdr_drill_"), "scratch database %s remains", n)
		if n == "mgc" {
			require.Equal(t, "RESTORING", st)
		}
	}
	require.NoError(t, names.Err())
	names.Close()

	after := stableFleet(t, viewer)
	require.Equal(t, before, after, "the drill changed what fleet status reports")

	l := chatdr(t, viewer, "drill", "list")
	require.Equal(t, 0, l.code, l.stderr)
	t.Logf("chatdr drill list:\n%s", l.stdout)
	require.Regexp(t, `(?m)^drill-1\s+succeeded\s`, l.stdout)

	// Log shipping goes on restoring after the drill.
	require.NoError(t, testutil.Eventually(90*time.Second, 500*time.Millisecond, func() error {
		if f := lastRestored(); f == restoredAfterDrill {
			return fmt.Errorf("log shipping restored nothing since the drill (still %s)", f)
		}
		return nil
	}))
}
