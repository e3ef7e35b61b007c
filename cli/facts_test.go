package cli

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
)

func fact(t *testing.T, name string, v map[string]any) *agentv1.Fact {
	t.Helper()
	s, err := structpb.NewStruct(v)
	require.NoError(t, err)
	return &agentv1.Fact{Name: name, Value: s}
}

func TestDescribeFact(t *testing.T) {
	tests := []struct {
		name string
		f    *agentv1.Fact
		want []string
	}{
		{"databases", fact(t, "mssql.databases", map[string]any{"databases": []any{
			map[string]any{"database": "mgc", "exists": true, "state": "ONLINE", "writable": true, "mirroring_role": "PRINCIPAL", "mirroring_state": "SYNCHRONIZED", "mirroring_partner": "TCP://sql2:5022"},
			map[string]any{"database": "mgccomp", "exists": false, "state": ""},
			map[string]any{"database": "x", "exists": true, "state": "ONLINE", "standby": true},
		}}), []string{"db mgc: ONLINE writable, mirroring principal SYNCHRONIZED with TCP://sql2:5022", "db mgccomp: absent", "db x: ONLINE (standby, read-only)"}},
		{"log shipping before the first job", fact(t, "mssql.log_shipping", map[string]any{"databases": []any{
			map[string]any{"database": "mgc", "role": "primary", "last_backup_file": ""},
			map[string]any{"database": "mgc", "role": "secondary", "last_restored_file": ""},
		}}), []string{"log shipping mgc: primary, no log backup yet", "log shipping mgc: secondary, nothing restored yet"}},
		{"log shipping running", fact(t, "mssql.log_shipping", map[string]any{"databases": []any{
			map[string]any{"database": "mgc", "role": "secondary", "last_restored_file": `D:\LSCopy\mgc_20261129010000.trn`,
				"last_restored_latency_minutes": 1.0, "files_waiting": 2.0, "estimated_data_loss_seconds": 95.0},
		}}), []string{"log shipping mgc: secondary, last restored mgc_20261129010000.trn (latency 1 min), 2 files waiting, estimated data-loss window 1m35s"}},
		{"services", fact(t, "service.states", map[string]any{"services": []any{
			map[string]any{"name": "RTCCHAT", "state": "running", "pid": 42.0, "restarts": 1.0},
		}}), []string{"service RTCCHAT: running (pid 42, restarts 1)"}},
		{"pool state lagging", fact(t, "csshell.cs.pool_state", map[string]any{"central": "FailedOver", "local": "Normal", "consistent": false}),
			[]string{"pool state: FailedOver (this server's local store: Normal), replication pending"}},
		{"error", &agentv1.Fact{Name: "mssql.server", Error: &agentv1.ActionError{Message: "connection refused"}}, []string{"mssql.server: error: connection refused"}},
		{"unknown probe", fact(t, "notify.targets", map[string]any{"file": "/x"}), []string{`notify.targets: {"file":"/x"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, describeFact(tt.f))
		})
	}
}
