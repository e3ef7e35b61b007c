//go:build linux

package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/internal/pki"
	"github.com/chatdr/chatdr/internal/testutil"
	"github.com/chatdr/chatdr/lab"
	agentv1 "github.com/chatdr/chatdr/proto/chatdr/agent/v1"
	"github.com/chatdr/chatdr/sim/chat"
)

// labAgent calls one lab agent with the controller's certificate.
type labAgent struct {
	t      *testing.T
	host   string
	client agentv1.AgentServiceClient
}

func (a *labAgent) run(key, action string, params map[string]any) *agentv1.ExecutionResult {
	a.t.Helper()
	ps, err := structpb.NewStruct(params)
	require.NoError(a.t, err)
	ctx, cancel := context.WithTimeout(a.t.Context(), 3*time.Minute)
	defer cancel()
	stream, err := a.client.Execute(ctx, &agentv1.ExecuteRequest{IdempotencyKey: key, Action: action, Params: ps})
	require.NoError(a.t, err)
	for {
		ev, err := stream.Recv()
		require.NoError(a.t, err, "%s on %s", action, a.host)
		if r := ev.GetResult(); r != nil {
			return r
		}
	}
}

// ok runs an action that must succeed and returns its output.
func (a *labAgent) ok(key, action string, params map[string]any) map[string]any {
	a.t.Helper()
	r := a.run(key, action, params)
	require.Equal(a.t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, r.GetState(), "%s on %s: %v", action, a.host, r.GetError())
	return r.GetOutput().AsMap()
}

// twice runs a state-changing action three times: the first changes
// something, the same key again replays that result without running, and a
// new key runs and finds nothing to change (check-then-act).
func (a *labAgent) twice(key, action string, params map[string]any) map[string]any {
	a.t.Helper()
	first := a.run(key, action, params)
	require.Equal(a.t, agentv1.ExecutionState_EXECUTION_STATE_SUCCEEDED, first.GetState(), "%s on %s: %v", action, a.host, first.GetError())
	require.Equal(a.t, true, first.GetOutput().AsMap()["changed"], "%s changed something the first time: %v", action, first.GetOutput().AsMap())
	replay := a.run(key, action, params)
	require.True(a.t, replay.GetReplayed(), "%s with the same key is replayed", action)
	require.Equal(a.t, first.GetEndedAt().AsTime(), replay.GetEndedAt().AsTime(), "the replay is the recorded execution")
	again := a.ok(key+"/again", action, params)
	require.Equal(a.t, false, again["changed"], "%s with a new key finds nothing to do: %v", action, again)
	return first.GetOutput().AsMap()
}

func sqlOpen(t *testing.T, st *lab.State, addr, db string) *sql.DB {
	t.Helper()
	pw, err := os.ReadFile(st.SQLPasswordFile)
	require.NoError(t, err)
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", strings.TrimSpace(string(pw))), Host: addr}
	u.RawQuery = url.Values{"database": {db}, "encrypt": {"disable"}}.Encode()
	d, err := sql.Open("sqlserver", u.String())
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

// TestLab_disasterFailover_throughAgents runs the disaster failover of
// domain.md §2 by hand, one action at a time, against the lab: every
// action goes controller-role client → agent process → plugin process →
// simulator. Each state-changing action is sent twice with the same key
// (it runs once) and once more with a new key (it changes nothing). The
// messages the backup lacks are exactly those after the restore point.
func TestLab_disasterFailover_throughAgents(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	t.Cleanup(func() { _, _ = lab.Down(dir, 5*time.Second) })
	st, err := lab.Up(t.Context(), lab.Options{Dir: dir, BinDir: binDir, Timeout: 2 * time.Minute, Out: io.Discard})
	require.NoError(t, err)
	topo, err := topology.Load(st.Topology)
	require.NoError(t, err)
	mat, err := pki.LoadMaterial(filepath.Join(st.TLSDir, "ca.crt"), filepath.Join(st.TLSDir, "controller.crt"), filepath.Join(st.TLSDir, "controller.key"))
	require.NoError(t, err)
	agents := map[string]*labAgent{}
	for _, a := range topo.Agents() {
		cc, err := grpc.NewClient(a.Address, grpc.WithTransportCredentials(credentials.NewTLS(mat.ClientConfig(pki.RoleAgent))))
		require.NoError(t, err)
		t.Cleanup(func() { cc.Close() })
		agents[a.Host] = &labAgent{t: t, host: a.Host, client: agentv1.NewAgentServiceClient(cc)}
	}
	backupAddr := ""
	for _, p := range st.Procs {
		if p.Name == "mssql."+topo.SQL.Backup.FQDN {
			backupAddr = p.Address
		}
	}
	backupDB := sqlOpen(t, st, backupAddr, "master")
	sqlB, shell, pc1, pc5 := agents[topo.SQL.Backup.FQDN], agents[topo.ManagementShellHost], agents["pc1.dc1.chatdr.lab"], agents["pc5.dc2.chatdr.lab"]

	// The pool is in production: messages flow and log shipping restores.
	require.NoError(t, testutil.Eventually(90*time.Second, 500*time.Millisecond, func() error {
		acks, _ := chat.ReadAcks(lab.AckFile(dir, "pc1.dc1.chatdr.lab"))
		out := sqlB.ok(fmt.Sprintf("probe/%d", time.Now().UnixNano()), "mssql.db.state", map[string]any{"database": "mgc"})
		if len(acks) < 20 || out["state"] != "RESTORING" {
			return fmt.Errorf("%d acks, backup %v", len(acks), out["state"])
		}
		// Wait until a restored log backup was taken after some messages
		// were acknowledged, so that the backup holds real data (its file
		// name carries the UTC time the primary took it).
		var last sql.NullString
		if err := backupDB.QueryRow("SELECT last_restored_file FROM msdb.dbo.log_shipping_secondary_databases WHERE secondary_database = 'mgc'").Scan(&last); err != nil {
			return err
		}
		name := filepath.Base(last.String)
		if len(name) < len("mgc_20060102150405.trn") {
			return fmt.Errorf("nothing restored yet")
		}
		taken, err := time.Parse("20060102150405", strings.TrimSuffix(strings.TrimPrefix(name, "mgc_"), ".trn"))
		if err != nil {
			return err
		}
		if !taken.After(acks[4].At.UTC().Add(time.Second)) {
			return fmt.Errorf("last restored %s predates the first messages", name)
		}
		return nil
	}))

	// The service plugin: RTCCHAT on pc1 stops, waits, starts (F0a fences the writers).
	pc1.twice("t/pc1/stop", "service.stop", map[string]any{"name": lab.ChatService})
	require.Equal(t, "stopped", pc1.ok("t/pc1/status", "service.status", map[string]any{"name": lab.ChatService})["state"])
	pc1.ok("t/pc1/wait", "service.wait", map[string]any{"name": lab.ChatService, "state": "stopped"})
	pc1.twice("t/pc1/start", "service.start", map[string]any{"name": lab.ChatService})
	pc1.twice("t/pc1/stop2", "service.stop", map[string]any{"name": lab.ChatService})

	// Data-center loss: every process of dc1 dies at once.
	var dc1 []string
	for _, p := range st.Procs {
		if p.Site == "dc1" {
			dc1 = append(dc1, p.Name)
		}
	}
	_, err = lab.Kill(dir, dc1...)
	require.NoError(t, err)

	// F0c–F3 on the backup SQL host.
	snap := sqlB.ok("t/snapshot", "mssql.ls.snapshot", map[string]any{"database": "mgc"})
	require.Equal(t, topo.LogShipping.BackupShare, snap["backup_source_directory"])
	require.Equal(t, topo.LogShipping.CopyDir, snap["backup_destination_directory"])
	sqlB.twice("t/disable", "mssql.ls.disable_jobs", map[string]any{"database": "mgc"})
	sqlB.twice("t/remove", "mssql.ls.remove_secondary", map[string]any{"database": "mgc"})
	require.Equal(t, true, sqlB.ok("t/snapshot2", "mssql.ls.snapshot", map[string]any{"database": "mgc"})["from_file"],
		"the snapshot outlives the msdb rows")
	copied := sqlB.ok("t/copy", "mssql.ls.copy_pending", map[string]any{"database": "mgc"})
	require.Equal(t, true, copied["source_readable"])
	restore := sqlB.ok("t/restore", "mssql.ls.restore_pending", map[string]any{"database": "mgc"})
	require.Equal(t, true, restore["complete"], "%v", restore)
	again := sqlB.ok("t/restore/again", "mssql.ls.restore_pending", map[string]any{"database": "mgc"})
	require.Empty(t, again["applied"])

	// What the backup holds before recovery is the RPO point: every message
	// acknowledged by the primary up to it must be there, none after.
	sqlB.ok("t/kill", "mssql.db.kill_sessions", map[string]any{"database": "mgc"})
	sqlB.twice("t/recover", "mssql.db.recover", map[string]any{"database": "mgc"})
	mgc := sqlOpen(t, st, backupAddr, "mgc")
	var maxIDv sql.NullInt64 // NULL when nothing reached the backup
	require.NoError(t, mgc.QueryRow("SELECT MAX(id) FROM dbo.messages").Scan(&maxIDv))
	maxID := maxIDv.Int64
	require.Positive(t, maxID, "the backup holds the messages shipped before the loss")
	present := map[string]bool{}
	rows, err := mgc.Query("SELECT body FROM dbo.messages")
	require.NoError(t, err)
	for rows.Next() {
		var b string
		require.NoError(t, rows.Scan(&b))
		present[b] = true
	}
	require.NoError(t, rows.Err())
	lost := 0
	for _, s := range topo.ChatServers {
		acks, err := chat.ReadAcks(lab.AckFile(dir, s.FQDN))
		require.NoError(t, err)
		for _, a := range acks {
			if a.ID <= maxID {
				require.True(t, present[a.Body], "acknowledged message %d (%s) before the RPO point is in the backup", a.ID, a.Body)
			} else {
				require.False(t, present[a.Body], "message %d after the RPO point cannot be in the backup", a.ID)
				lost++
			}
		}
	}
	t.Logf("RPO point: id %d at %v; %d acknowledged messages after it lost with dc1", maxID, restore["reached_backup_time"], lost)

	// F5, F7 through the Management Shell on pc5.
	require.Equal(t, topo.ManagementShellHost, "pc5.dc2.chatdr.lab")
	shell.twice("t/state", "csshell.cs.set_state", map[string]any{"state": "FailedOver"})
	var backupSite []any
	for _, s := range topo.ActiveServers(topology.ActiveFailedOver) {
		backupSite = append(backupSite, s.FQDN)
	}
	shell.twice("t/active", "csshell.cs.set_active_servers", map[string]any{"mode": "set", "servers": backupSite})
	require.ElementsMatch(t, backupSite, shell.ok("t/active/get", "csshell.cs.get_active_servers", map[string]any{})["active_servers"])
	require.NotEmpty(t, shell.ok("t/identity", "csshell.cs.resolve_identity", map[string]any{})["identities"])
	require.NoError(t, testutil.Eventually(30*time.Second, 200*time.Millisecond, func() error {
		out := pc5.ok(fmt.Sprintf("t/local/%d", time.Now().UnixNano()), "csshell.cs.get_state", map[string]any{"local_store": true})
		if out["pool_state"] != "FailedOver" {
			return fmt.Errorf("local store of pc5: %v", out["pool_state"])
		}
		return nil
	}))
	// The chat servers of dc2 now write into the backup database.
	require.NoError(t, testutil.Eventually(60*time.Second, 200*time.Millisecond, func() error {
		acks, _ := chat.ReadAcks(lab.AckFile(dir, "pc5.dc2.chatdr.lab"))
		for _, a := range acks {
			if a.Role == "backup" {
				return nil
			}
		}
		return fmt.Errorf("pc5 has not written to the backup yet (%d acks)", len(acks))
	}))
	test := shell.ok("t/test", "csshell.cs.test_message", map[string]any{})
	require.Equal(t, "Success", test["result"], "%v", test)

	// F6: mirroring in the backup site, then a mirroring failover and back, and removal.
	shell.ok("t/mirror", "csshell.cs.install_mirror", map[string]any{"sql_server_fqdn": topo.SQL.Backup.FQDN,
		"file_share": topo.LogShipping.MirrorShare, "drop_existing": true})
	ms := sqlB.ok("t/mstatus", "mssql.mirror.status", map[string]any{"database": "mgc"})
	require.Equal(t, "PRINCIPAL", ms["role"])
	require.NoError(t, testutil.Eventually(30*time.Second, 200*time.Millisecond, func() error {
		ms := sqlB.ok(fmt.Sprintf("t/mstatus/%d", time.Now().UnixNano()), "mssql.mirror.status", map[string]any{"database": "mgc"})
		if ms["state"] != "SYNCHRONIZED" {
			return fmt.Errorf("mirroring %v", ms["state"])
		}
		return nil
	}))
	bm := agents[topo.SQL.BackupMirror.FQDN]
	sqlB.twice("t/mfailover", "mssql.mirror.failover", map[string]any{"database": "mgc"})
	require.Equal(t, "PRINCIPAL", bm.ok("t/bm/status", "mssql.mirror.status", map[string]any{"database": "mgc"})["role"])
	require.NoError(t, testutil.Eventually(30*time.Second, 200*time.Millisecond, func() error {
		ms := bm.ok(fmt.Sprintf("t/bm/status/%d", time.Now().UnixNano()), "mssql.mirror.status", map[string]any{"database": "mgc"})
		if ms["state"] != "SYNCHRONIZED" {
			return fmt.Errorf("mirroring %v", ms["state"])
		}
		return nil
	}))
	bm.twice("t/bm/failback", "mssql.mirror.failover", map[string]any{"database": "mgc"})
	sqlB.twice("t/mremove", "mssql.mirror.remove", map[string]any{"database": "mgc"})
	// Uninstall-CsMirrorDatabase on a database no longer mirrored succeeds and changes nothing.
	shell.ok("t/uninstall", "csshell.cs.uninstall_mirror", map[string]any{"sql_server_fqdn": topo.SQL.Backup.FQDN})
	require.Equal(t, false, sqlB.ok("t/mstatus/after", "mssql.mirror.status", map[string]any{"database": "mgc"})["mirrored"])
	svc := pc5.ok("t/winsvc", "csshell.cs.windows_service", map[string]any{"operation": "status"})
	require.NotEmpty(t, svc["services"], "%v", svc)
	require.Equal(t, "ONLINE", sqlB.ok("t/final", "mssql.db.state", map[string]any{"database": "mgc"})["state"])
	require.Equal(t, "RESTORING", bm.ok("t/bm/final", "mssql.db.state", map[string]any{"database": "mgc"})["state"], "the old mirror stays RESTORING")

	// Log shipping from the new primary to the old mirror's copy (§5.5).
	share2, copy2 := filepath.Join(dir, "share", "logship2"), filepath.Join(dir, "copy", "mgc2")
	require.NoError(t, os.MkdirAll(share2, 0o755))
	require.NoError(t, os.MkdirAll(copy2, 0o755))
	sqlB.twice("t/ls/primary", "mssql.ls.setup_primary", map[string]any{"database": "mgc", "backup_dir": share2,
		"backup_share": share2, "secondary_server": "SQL2-DC2", "interval_seconds": 2.0})
	bm.twice("t/ls/secondary", "mssql.ls.setup_secondary", map[string]any{"database": "mgc", "primary_server": "SQL1-DC2",
		"source_dir": share2, "dest_dir": copy2, "interval_seconds": 2.0})
	bm.twice("t/ls/disable", "mssql.ls.disable_jobs", map[string]any{"database": "mgc"})
	bm.twice("t/ls/enable", "mssql.ls.enable_jobs", map[string]any{"database": "mgc"})
	bmAddr := ""
	for _, p := range st.Procs {
		if p.Name == "mssql."+topo.SQL.BackupMirror.FQDN {
			bmAddr = p.Address
		}
	}
	bmDB := sqlOpen(t, st, bmAddr, "master")
	require.NoError(t, testutil.Eventually(60*time.Second, 500*time.Millisecond, func() error {
		var f sql.NullString
		if err := bmDB.QueryRow("SELECT last_restored_file FROM msdb.dbo.log_shipping_secondary_databases WHERE secondary_database = 'mgc'").Scan(&f); err != nil {
			return err
		}
		if !f.Valid || f.String == "" {
			return fmt.Errorf("nothing restored on the new secondary yet")
		}
		return nil
	}))
}
