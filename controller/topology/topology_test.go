package topology

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// readTestdata returns the content of a file under testdata.
func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return data
}

// problems returns the problems of a *ValidationError.
func problems(t *testing.T, err error) []Problem {
	t.Helper()
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	return ve.Problems
}

func TestLoad_lab(t *testing.T) {
	topo, err := Load("testdata/valid/lab.yaml")
	require.NoError(t, err)

	require.Equal(t, "pchat01.lab.chatdr.test", topo.Pool)
	require.Equal(t, "service:pchat01.lab.chatdr.test", topo.PoolIdentity, "pool_identity defaults to service:<pool>")
	require.Equal(t, []Site{{Name: "dc1", Role: SitePrimary}, {Name: "dc2", Role: SiteBackup}}, topo.Sites)
	require.Len(t, topo.ChatServers, 8)
	require.Equal(t, ChatServer{FQDN: "pc5.dc2.lab.chatdr.test", Site: "dc2", Agent: "127.0.0.1:17005", ActiveWhen: ActiveFailedOver}, topo.ChatServers[4])
	require.Equal(t, &SQLHost{FQDN: "sql1.dc1.lab.chatdr.test", Instance: DefaultInstance, Agent: "127.0.0.1:17011", Site: "dc1"}, topo.SQL.Primary)
	require.Equal(t, &SQLHost{FQDN: "sql2.dc2.lab.chatdr.test", Instance: DefaultInstance, Agent: "127.0.0.1:17014", Site: "dc2"}, topo.SQL.BackupMirror)
	require.Equal(t, Databases{Chat: "mgc", Compliance: "mgccomp"}, topo.Databases)
	require.True(t, topo.Databases.ComplianceEnabled())
	require.Equal(t, LogShipping{
		BackupShare: "/tmp/chatdr-lab/share/pchat-ls",
		CopyDir:     "/tmp/chatdr-lab/dc2/lscopy/mgc",
		MirrorShare: "/tmp/chatdr-lab/share/pchat-mirror",
	}, topo.LogShipping)
	require.Equal(t, "pc5.dc2.lab.chatdr.test", topo.ManagementShellHost)
	require.Equal(t, Approvals{DataLossApprovers: 1}, topo.Approvals, "data_loss_approvers defaults to 1")
}

func TestTopology_Agents_lab(t *testing.T) {
	topo, err := Load("testdata/valid/lab.yaml")
	require.NoError(t, err)

	agents := topo.Agents()
	require.Len(t, agents, 12)
	want := []Agent{
		{Host: "pc1.dc1.lab.chatdr.test", Address: "127.0.0.1:17001", Site: "dc1", Roles: []string{RoleChatServer}},
		{Host: "pc2.dc1.lab.chatdr.test", Address: "127.0.0.1:17002", Site: "dc1", Roles: []string{RoleChatServer}},
		{Host: "pc3.dc1.lab.chatdr.test", Address: "127.0.0.1:17003", Site: "dc1", Roles: []string{RoleChatServer}},
		{Host: "pc4.dc1.lab.chatdr.test", Address: "127.0.0.1:17004", Site: "dc1", Roles: []string{RoleChatServer}},
		{Host: "pc5.dc2.lab.chatdr.test", Address: "127.0.0.1:17005", Site: "dc2", Roles: []string{RoleChatServer, RoleManagementShell}},
		{Host: "pc6.dc2.lab.chatdr.test", Address: "127.0.0.1:17006", Site: "dc2", Roles: []string{RoleChatServer}},
		{Host: "pc7.dc2.lab.chatdr.test", Address: "127.0.0.1:17007", Site: "dc2", Roles: []string{RoleChatServer}},
		{Host: "pc8.dc2.lab.chatdr.test", Address: "127.0.0.1:17008", Site: "dc2", Roles: []string{RoleChatServer}},
		{Host: "sql1.dc1.lab.chatdr.test", Address: "127.0.0.1:17011", Site: "dc1", Roles: []string{RoleSQLPrimary}},
		{Host: "sql2.dc1.lab.chatdr.test", Address: "127.0.0.1:17012", Site: "dc1", Roles: []string{RoleSQLPrimaryMirror}},
		{Host: "sql1.dc2.lab.chatdr.test", Address: "127.0.0.1:17013", Site: "dc2", Roles: []string{RoleSQLBackup}},
		{Host: "sql2.dc2.lab.chatdr.test", Address: "127.0.0.1:17014", Site: "dc2", Roles: []string{RoleSQLBackupMirror}},
	}
	require.Equal(t, want, agents)
}

func TestTopology_Agents_noMirrors(t *testing.T) {
	topo, err := Load("testdata/valid/no-compliance-no-mirrors.yaml")
	require.NoError(t, err)

	agents := topo.Agents()
	require.Len(t, agents, 5)
	require.Equal(t, []string{RoleChatServer, RoleManagementShell}, agents[2].Roles,
		"management_shell_host matches its chat server case-insensitively")
	require.Equal(t, Agent{Host: "sql1.west.contoso.com", Address: "10.2.0.21:7443", Site: "west", Roles: []string{RoleSQLBackup}}, agents[4])
}

func TestTopology_ActiveServers(t *testing.T) {
	topo, err := Load("testdata/valid/low-latency.yaml")
	require.NoError(t, err)

	fqdns := func(servers []ChatServer) []string {
		var out []string
		for _, s := range servers {
			out = append(out, s.FQDN)
		}
		return out
	}
	tests := []struct {
		state ActiveWhen
		want  []string
	}{
		{ActiveNormal, []string{"pc1.dc1.contoso.com", "pc2.dc1.contoso.com", "pc5.dc2.contoso.com", "pc6.dc2.contoso.com"}},
		{ActiveFailedOver, []string{"pc3.dc1.contoso.com", "pc7.dc2.contoso.com", "pc8.dc2.contoso.com"}},
		{ActiveNever, nil},
		{"both", nil},
	}
	for _, tt := range tests {
		t.Run(string(tt.state), func(t *testing.T) {
			require.Equal(t, tt.want, fqdns(topo.ActiveServers(tt.state)))
		})
	}
}

func TestTopology_SiteByRole(t *testing.T) {
	topo, err := Load("testdata/valid/low-latency.yaml")
	require.NoError(t, err)

	require.Equal(t, Site{Name: "dc1", Role: SitePrimary, LowLatencyTo: []string{"dc2"}}, topo.SiteByRole(SitePrimary))
	require.Equal(t, Site{Name: "dc2", Role: SiteBackup, LowLatencyTo: []string{"dc1"}}, topo.SiteByRole(SiteBackup))
	require.Equal(t, Site{}, topo.SiteByRole("dr"))
}

func TestTopology_SQLHosts(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"valid/lab.yaml", []string{RoleSQLPrimary, RoleSQLPrimaryMirror, RoleSQLBackup, RoleSQLBackupMirror}},
		{"valid/single-server-per-site.yaml", []string{RoleSQLPrimary, RoleSQLPrimaryMirror, RoleSQLBackup}},
		{"valid/no-compliance-no-mirrors.yaml", []string{RoleSQLPrimary, RoleSQLBackup}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			topo, err := Load(filepath.Join("testdata", tt.file))
			require.NoError(t, err)
			hosts := topo.SQLHosts()
			require.Len(t, hosts, len(tt.want))
			for _, role := range tt.want {
				require.NotNil(t, hosts[role], role)
			}
			require.Same(t, topo.SQL.Primary, hosts[RoleSQLPrimary])
			require.Same(t, topo.SQL.Backup, hosts[RoleSQLBackup])
		})
	}
}

func TestDatabases_ComplianceEnabled(t *testing.T) {
	require.True(t, Databases{Chat: "mgc", Compliance: "mgccomp"}.ComplianceEnabled())
	require.False(t, Databases{Chat: "mgc"}.ComplianceEnabled())
}

func TestParse_valid(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 4)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			topo, err := Load(file)
			require.NoError(t, err)

			out, err := Marshal(topo)
			require.NoError(t, err)
			again, err := Parse("marshalled.yaml", out)
			require.NoError(t, err, "Marshal output:\n%s", out)
			require.Equal(t, topo, again, "Parse(Marshal(t)) must equal t")

			out2, err := Marshal(again)
			require.NoError(t, err)
			require.Equal(t, string(out), string(out2), "Marshal is stable")
		})
	}
}

func TestParse_valid_defaults(t *testing.T) {
	topo, err := Load("testdata/valid/single-server-per-site.yaml")
	require.NoError(t, err)
	require.Equal(t, "PersistentChatServer:pchat01.contoso.com", topo.PoolIdentity, "an explicit pool_identity is kept")
	require.Equal(t, "PCHAT", topo.SQL.Primary.Instance)
	require.Equal(t, "dc1", topo.SQL.PrimaryMirror.Site, "site is implied by the role")
	require.Nil(t, topo.SQL.BackupMirror)
	require.Equal(t, Databases{Chat: DefaultChatDatabase}, topo.Databases, "databases defaults to chat mgc, compliance disabled")
	require.Equal(t, 2, topo.Approvals.DataLossApprovers)
	require.Equal(t, `\\fs1.dc1.contoso.com\pchat-ls`, topo.LogShipping.BackupShare)

	topo, err = Load("testdata/valid/no-compliance-no-mirrors.yaml")
	require.NoError(t, err)
	require.False(t, topo.Databases.ComplianceEnabled())
	require.Empty(t, topo.LogShipping.MirrorShare)
	require.Equal(t, ActiveNever, topo.ChatServers[1].ActiveWhen)
}

func TestParse_invalid(t *testing.T) {
	tests := []struct {
		name string
		want []string
	}{
		{"active-in-wrong-site", []string{
			`testdata/invalid/active-in-wrong-site.yaml:11: chat_servers[3].site: pc6.dc2.contoso.com is active when the pool is normal but sits in site "dc2"; the database in use is in site "dc1" (add dc1 to low_latency_to of dc2 if the link is low-latency)`,
		}},
		{"active-when-both", []string{
			`testdata/invalid/active-when-both.yaml:7: chat_servers[0].active_when: active_when "both" is invalid (want normal, failed_over or never)`,
		}},
		{"agent-port", []string{
			`testdata/invalid/agent-port.yaml:8: chat_servers[1].agent: agent address "pc2.dc1.contoso.com:74430" is invalid: port 74430 is out of range 1-65535`,
		}},
		{"approvers", []string{
			`testdata/invalid/approvers.yaml:23: approvals.data_loss_approvers: 3 is invalid: want 1 or 2 (how many different people must approve a step that loses data)`,
		}},
		{"bad-dns-name", []string{
			`testdata/invalid/bad-dns-name.yaml:2: pool: "pchat_01.contoso.com" is not a valid DNS name: it contains "_"; use letters, digits, hyphens and dots`,
		}},
		{"database-name", []string{
			`testdata/invalid/database-name.yaml:16: databases.compliance: "mgc-comp" is not a valid SQL Server database name: want a letter or _ followed by up to 127 letters, digits, _, @, $ or # (e.g. mgc)`,
		}},
		{"duplicate-agent", []string{
			`testdata/invalid/duplicate-agent.yaml:10: chat_servers[3].agent: agent address "PC5.dc2.contoso.com:7443" is listed twice (also chat_servers[2].agent at line 9); each host has its own agent`,
		}},
		{"duplicate-host", []string{
			`testdata/invalid/duplicate-host.yaml:15: sql.backup_mirror.fqdn: host "PC6.dc2.contoso.com" is listed twice (also chat_servers[3].fqdn at line 10); each host appears once`,
		}},
		{"duplicate-key", []string{
			`testdata/invalid/duplicate-key.yaml:22: pool: duplicate field "pool" (first given at line 2)`,
		}},
		{"empty", []string{
			`testdata/invalid/empty.yaml:1: the file is empty; it must hold the topology (pool, sites, chat_servers, sql, ...)`,
		}},
		{"fqdn-is-ip", []string{
			`testdata/invalid/fqdn-is-ip.yaml:14: sql.backup.fqdn: "10.0.2.21" is an IP address; give the host's DNS name (IP addresses are allowed only in agent addresses)`,
		}},
		{"instance-name", []string{
			`testdata/invalid/instance-name.yaml:12: sql.primary.instance: "2019SQL" is not a valid SQL Server instance name: want 1-16 characters, a letter or _ first, then letters, digits, _ or $ (use MSSQLSERVER for the default instance)`,
		}},
		{"low-latency-self", []string{
			`testdata/invalid/low-latency-self.yaml:5: sites[1].low_latency_to[0]: site "dc2" cannot list itself; name the other site it has a low-latency link to`,
		}},
		{"management-shell-host", []string{
			`testdata/invalid/management-shell-host.yaml:21: management_shell_host: "sql1.dc2.contoso.com" is not one of the chat servers (pc1.dc1.contoso.com, pc2.dc1.contoso.com, pc5.dc2.contoso.com, pc6.dc2.contoso.com); Management Shell cmdlets run on a chat server`,
		}},
		{"mirror-share-missing", []string{
			`testdata/invalid/mirror-share-missing.yaml:17: log_shipping.mirror_share: is required when a SQL mirror is configured (sql.primary_mirror, sql.backup_mirror): the share Install-CsMirrorDatabase uses`,
		}},
		{"missing-agent", []string{
			`testdata/invalid/missing-agent.yaml:13: sql.primary_mirror.agent: is required: host:port of the chatdr agent on the SQL Server host`,
		}},
		{"missing-sql-backup", []string{
			`testdata/invalid/missing-sql-backup.yaml:11: sql.backup: is required: the log-shipping secondary SQL Server in the backup site`,
		}},
		{"misspelt-field", []string{
			`testdata/invalid/misspelt-field.yaml:8: chat_servers[1].fqdn: is required: the server's DNS name`,
			`testdata/invalid/misspelt-field.yaml:8: chat_servers[1].fqnd: unknown field "fqnd" (allowed: fqdn, site, agent, active_when)`,
		}},
		{"no-backup-site", []string{
			`testdata/invalid/no-backup-site.yaml:3: sites: no site has role backup; exactly one site must be primary and one backup`,
			`testdata/invalid/no-backup-site.yaml:5: sites[1].role: is required: primary or backup`,
		}},
		{"no-failover-server", []string{
			`testdata/invalid/no-failover-server.yaml:6: chat_servers: no chat server is active when the pool is failed over (active_when: failed_over); after a failover the pool would have no active server`,
		}},
		{"not-a-mapping", []string{
			`testdata/invalid/not-a-mapping.yaml:2: the topology must be a mapping of fields (pool, sites, chat_servers, sql, ...), got a list`,
		}},
		{"only-comments", []string{
			`testdata/invalid/only-comments.yaml:1: the file is empty; it must hold the topology (pool, sites, chat_servers, sql, ...)`,
		}},
		{"pool-identity", []string{
			`testdata/invalid/pool-identity.yaml:3: pool_identity: "pchat01.contoso.com" is invalid: want service:<pool fqdn> or PersistentChatServer:<pool fqdn>`,
		}},
		{"relative-path", []string{
			`testdata/invalid/relative-path.yaml:19: log_shipping.copy_dir: "LSCopy\mgc" is not an absolute path: want a UNC path (\\host\share\...), a drive path (D:\...) or a POSIX path (/...)`,
		}},
		{"same-databases", []string{
			`testdata/invalid/same-databases.yaml:16: databases.compliance: "MGC" is also the chat database; the compliance database must be a different one (usually mgccomp)`,
		}},
		{"several-problems", []string{
			`testdata/invalid/several-problems.yaml:3: pool_id: unknown field "pool_id" (allowed: pool, pool_identity, sites, chat_servers, sql, databases, log_shipping, management_shell_host, approvals)`,
			`testdata/invalid/several-problems.yaml:7: sites[2].name: site name "dc1" is defined twice (also sites[0])`,
			`testdata/invalid/several-problems.yaml:7: sites[2].role: site role "dr" is invalid (want primary or backup)`,
			`testdata/invalid/several-problems.yaml:12: chat_servers[3].site: site "dc3" is not defined (sites: dc1, dc2)`,
			`testdata/invalid/several-problems.yaml:16: sql.backup.agent: is required: host:port of the chatdr agent on the SQL Server host`,
			`testdata/invalid/several-problems.yaml:18: databases.chat: "master" is not a valid SQL Server database name: it is a SQL Server system database; name the Persistent Chat database (usually mgc, or mgccomp for compliance)`,
			`testdata/invalid/several-problems.yaml:21: log_shipping.copy_dir: "LSCopy" is not an absolute path: want a UNC path (\\host\share\...), a drive path (D:\...) or a POSIX path (/...)`,
			`testdata/invalid/several-problems.yaml:23: management_shell_host: "pc7.dc2.contoso.com" is not one of the chat servers (pc1.dc1.contoso.com, pc2.dc1.contoso.com, pc5.dc2.contoso.com, pc6.dc2.contoso.com); Management Shell cmdlets run on a chat server`,
		}},
		{"site-role-invalid", []string{
			`testdata/invalid/site-role-invalid.yaml:6: sites[2].role: site role "dr" is invalid (want primary or backup)`,
		}},
		{"sql-site-mismatch", []string{
			`testdata/invalid/sql-site-mismatch.yaml:14: sql.backup.site: sql.backup lives in the backup site "dc2", not in "dc1" (leave site out: the role implies it)`,
		}},
		{"syntax-error", []string{
			`testdata/invalid/syntax-error.yaml:5: invalid YAML: did not find expected ',' or '}'`,
		}},
		{"system-database", []string{
			`testdata/invalid/system-database.yaml:16: databases.chat: "msdb" is not a valid SQL Server database name: it is a SQL Server system database; name the Persistent Chat database (usually mgc, or mgccomp for compliance)`,
		}},
		{"too-many-active", []string{
			`testdata/invalid/too-many-active.yaml:11: chat_servers[4].active_when: 5 chat servers are active when the pool is normal; at most 4 may be active at once`,
		}},
		{"too-many-servers", []string{
			`testdata/invalid/too-many-servers.yaml:15: chat_servers[8]: 9 chat servers are listed; a pool holds at most 8`,
		}},
		{"two-documents", []string{
			`testdata/invalid/two-documents.yaml:22: a second YAML document starts here; the file must hold exactly one document`,
		}},
		{"two-primaries", []string{
			`testdata/invalid/two-primaries.yaml:6: sites[2].role: another site has role primary (site "dc1" is already primary); exactly one site must be primary and one backup`,
		}},
		{"undefined-site", []string{
			`testdata/invalid/undefined-site.yaml:17: chat_servers[4].site: site "dc3" is not defined (sites: dc1, dc2)`,
		}},
		{"unknown-field", []string{
			`testdata/invalid/unknown-field.yaml:12: sql.primary.port: unknown field "port" (allowed: fqdn, instance, agent, site)`,
		}},
		{"wrong-type", []string{
			`testdata/invalid/wrong-type.yaml:14: sql.backup.agent: must be a string, got an integer (quote it if you mean the text: "7443")`,
		}},
	}

	files, err := filepath.Glob("testdata/invalid/*.yaml")
	require.NoError(t, err)
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.name] = true
	}
	for _, f := range files {
		require.True(t, covered[strings.TrimSuffix(filepath.Base(f), ".yaml")], "%s has no case in the table", f)
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := "testdata/invalid/" + tt.name + ".yaml"
			topo, err := Load(file)
			require.Error(t, err)
			require.Nil(t, topo)
			require.ErrorIs(t, err, ErrInvalid)
			require.Equal(t, strings.Join(tt.want, "\n"), err.Error())
			require.Len(t, problems(t, err), len(tt.want))
		})
	}
}

// The example of design.md and docs/topology.md, word for word.
func TestParse_invalid_designExample(t *testing.T) {
	_, err := Parse("topology.yaml", readTestdata(t, "invalid/undefined-site.yaml"))
	require.EqualError(t, err, `topology.yaml:17: chat_servers[4].site: site "dc3" is not defined (sites: dc1, dc2)`)
	require.Equal(t, []Problem{{
		File:    "topology.yaml",
		Line:    17,
		Field:   "chat_servers[4].site",
		Message: `site "dc3" is not defined (sites: dc1, dc2)`,
	}}, problems(t, err))
}

// edit applies replacements to the lab topology, failing the test when one
// does not apply exactly once.
func edit(t *testing.T, repl ...string) []byte {
	t.Helper()
	s := string(readTestdata(t, "valid/lab.yaml"))
	for i := 0; i+1 < len(repl); i += 2 {
		require.Equal(t, 1, strings.Count(s, repl[i]), "replace %q", repl[i])
		s = strings.Replace(s, repl[i], repl[i+1], 1)
	}
	return []byte(s)
}

func TestParse_inline_accepted(t *testing.T) {
	tests := []struct {
		name  string
		data  []string // replacements in lab.yaml
		check func(t *testing.T, topo *Topology)
	}{
		{
			name: "null compliance disables compliance",
			data: []string{"{chat: mgc, compliance: mgccomp}", "\n  chat: mgc\n  compliance:\n"},
			check: func(t *testing.T, topo *Topology) {
				require.False(t, topo.Databases.ComplianceEnabled())
			},
		},
		{
			name: "empty chat defaults to mgc",
			data: []string{"{chat: mgc, compliance: mgccomp}", `{chat: "", compliance: mgccomp}`},
			check: func(t *testing.T, topo *Topology) {
				require.Equal(t, "mgc", topo.Databases.Chat)
			},
		},
		{
			name: "pool_identity prefix is case-insensitive",
			data: []string{"pool: pchat01.lab.chatdr.test\n", "pool: pchat01.lab.chatdr.test\npool_identity: SERVICE:pchat01.lab.chatdr.test\n"},
			check: func(t *testing.T, topo *Topology) {
				require.Equal(t, "SERVICE:pchat01.lab.chatdr.test", topo.PoolIdentity)
			},
		},
		{
			name: "empty low_latency_to is nil",
			data: []string{"{name: dc1, role: primary}", "{name: dc1, role: primary, low_latency_to: []}"},
			check: func(t *testing.T, topo *Topology) {
				require.Nil(t, topo.Sites[0].LowLatencyTo)
			},
		},
		{
			name: "aliases resolve",
			data: []string{
				"{name: dc1, role: primary}", "{name: &dc1 dc1, role: primary}",
				`{fqdn: pc1.dc1.lab.chatdr.test, site: dc1,`, `{fqdn: pc1.dc1.lab.chatdr.test, site: *dc1,`,
			},
			check: func(t *testing.T, topo *Topology) {
				require.Equal(t, "dc1", topo.ChatServers[0].Site)
			},
		},
		{
			name: "agent host may be a DNS name or IPv6 address",
			data: []string{
				`"127.0.0.1:17001"`, `"localhost:17001"`,
				`"127.0.0.1:17002"`, `"[::1]:17002"`,
			},
			check: func(t *testing.T, topo *Topology) {
				require.Equal(t, "localhost:17001", topo.ChatServers[0].Agent)
				require.Equal(t, "[::1]:17002", topo.ChatServers[1].Agent)
			},
		},
		{
			name: "sql site that agrees with the role",
			data: []string{`agent: "127.0.0.1:17013"}`, `agent: "127.0.0.1:17013", site: dc2}`},
			check: func(t *testing.T, topo *Topology) {
				require.Equal(t, "dc2", topo.SQL.Backup.Site)
			},
		},
		{
			name: "document start marker before the topology",
			data: []string{"pool: pchat01", "---\npool: pchat01"},
			check: func(t *testing.T, topo *Topology) {
				require.Equal(t, "pchat01.lab.chatdr.test", topo.Pool)
			},
		},
		{
			name: "named instance",
			data: []string{`{fqdn: sql1.dc1.lab.chatdr.test,`, `{fqdn: sql1.dc1.lab.chatdr.test, instance: _Pchat$2,`},
			check: func(t *testing.T, topo *Topology) {
				require.Equal(t, "_Pchat$2", topo.SQL.Primary.Instance)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topo, err := Parse("lab.yaml", edit(t, tt.data...))
			require.NoError(t, err)
			tt.check(t, topo)
		})
	}
}

func TestParse_inline_rejected(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{
			name: "boolean where a string belongs",
			data: edit(t, "{chat: mgc, compliance: mgccomp}", "{chat: mgc, compliance: false}"),
			want: `lab.yaml:22: databases.compliance: must be a string, got a boolean (quote it if you mean the text: "false")`,
		},
		{
			name: "mapping where a list belongs",
			data: edit(t, "sites:\n  - {name: dc1, role: primary}\n  - {name: dc2, role: backup}\n", "sites: {name: dc1}\n"),
			want: "lab.yaml:5: sites: must be a list, got a mapping",
		},
		{
			name: "control character",
			data: edit(t, "pool: pchat01", "pool: pchat\x0701"),
			want: "lab.yaml:4: the file contains the control character U+0007 at offset 181; remove it",
		},
		{
			name: "invalid UTF-8",
			data: []byte("pool: \xc3\x28\n"),
			want: "lab.yaml:1: the file is not valid UTF-8 text (byte 0xc3 at offset 6); save it as UTF-8",
		},
		{
			name: "YAML parser error on a later line",
			data: []byte("pool: a\nsites: [a, b\nx: y\n"),
			want: "lab.yaml:2: invalid YAML: did not find expected ',' or ']'",
		},
		{
			name: "merge key",
			data: edit(t, "{chat: mgc, compliance: mgccomp}", "{<<: {chat: mgc}, compliance: mgccomp}"),
			want: "lab.yaml:22: databases: merge keys (<<) are not supported; write the fields out in full",
		},
		{
			name: "sites missing entirely",
			data: edit(t, "sites:\n  - {name: dc1, role: primary}\n  - {name: dc2, role: backup}\n", ""),
			want: "lab.yaml:4: sites: is required: one site with role primary and one with role backup",
		},
		{
			name: "agent without port",
			data: edit(t, `"127.0.0.1:17003"`, `"127.0.0.1"`),
			want: `lab.yaml:11: chat_servers[2].agent: agent address "127.0.0.1" is invalid: want host:port, e.g. pc1.dc1.contoso.com:7443`,
		},
		{
			name: "data_loss_approvers zero",
			data: append(edit(t), "approvals: {data_loss_approvers: 0}\n"...),
			want: "lab.yaml:28: approvals.data_loss_approvers: 0 is invalid: want 1 or 2 (how many different people must approve a step that loses data)",
		},
		{
			name: "failed_over server in the primary site",
			data: edit(t, `"127.0.0.1:17004", active_when: normal}`, `"127.0.0.1:17004", active_when: failed_over}`),
			want: `lab.yaml:12: chat_servers[3].site: pc4.dc1.lab.chatdr.test is active when the pool is failed over but sits in site "dc1"; the database in use is in site "dc2" (add dc2 to low_latency_to of dc1 if the link is low-latency)` + "\n" +
				"lab.yaml:16: chat_servers[7].active_when: 5 chat servers are active when the pool is failed over; at most 4 may be active at once",
		},
		{
			name: "low_latency_to names an undefined site",
			data: edit(t, "{name: dc2, role: backup}", "{name: dc2, role: backup, low_latency_to: [dc9]}"),
			want: `lab.yaml:7: sites[1].low_latency_to[0]: site "dc9" is not defined (sites: dc1, dc2)`,
		},
		{
			name: "timestamp where a string belongs",
			data: edit(t, "{chat: mgc, compliance: mgccomp}", "{chat: mgc, compliance: 2019-01-01}"),
			want: `lab.yaml:22: databases.compliance: must be a string, got a timestamp (quote it if you mean the text: "2019-01-01")`,
		},
		{
			name: "site name with a space",
			data: edit(t, "{name: dc1, role: primary}", "{name: dc 1, role: primary}",
				"  - {fqdn: pc1.dc1.lab.chatdr.test, site: dc1,", "  - {fqdn: pc1.dc1.lab.chatdr.test, site: dc 1,",
				"  - {fqdn: pc2.dc1.lab.chatdr.test, site: dc1,", "  - {fqdn: pc2.dc1.lab.chatdr.test, site: dc 1,",
				"  - {fqdn: pc3.dc1.lab.chatdr.test, site: dc1,", "  - {fqdn: pc3.dc1.lab.chatdr.test, site: dc 1,",
				"  - {fqdn: pc4.dc1.lab.chatdr.test, site: dc1,", "  - {fqdn: pc4.dc1.lab.chatdr.test, site: dc 1,"),
			want: `lab.yaml:6: sites[0].name: site name "dc 1" is invalid: want 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`,
		},
		{
			name: "trailing document marker",
			data: append(edit(t), "---\n"...),
			want: "lab.yaml:28: a second YAML document starts here; the file must hold exactly one document",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topo, err := Parse("lab.yaml", tt.data)
			require.Nil(t, topo)
			require.ErrorIs(t, err, ErrInvalid)
			require.EqualError(t, err, tt.want)
		})
	}
}

func TestLoad_missingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	topo, err := Load(path)
	require.Nil(t, topo)
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.NotErrorIs(t, err, ErrInvalid, "an I/O error is not an invalid topology")
	require.Contains(t, err.Error(), path)
}

func TestProblem_String(t *testing.T) {
	tests := []struct {
		name string
		p    Problem
		want string
	}{
		{"full", Problem{File: "t.yaml", Line: 3, Field: "sql.backup.agent", Message: "is required"}, "t.yaml:3: sql.backup.agent: is required"},
		{"no field", Problem{File: "t.yaml", Line: 1, Message: "the file is empty"}, "t.yaml:1: the file is empty"},
		{"no line", Problem{File: "t.yaml", Field: "pool", Message: "is required"}, "t.yaml: pool: is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.p.String())
		})
	}
}

func TestValidationError_Is(t *testing.T) {
	var err error = &ValidationError{Problems: []Problem{{File: "a", Line: 1, Message: "x"}, {File: "a", Line: 2, Message: "y"}}}
	require.ErrorIs(t, err, ErrInvalid)
	require.NotErrorIs(t, err, fs.ErrNotExist)
	require.Equal(t, "a:1: x\na:2: y", err.Error())
	wrapped := errors.Join(errors.New("load"), err)
	require.ErrorIs(t, wrapped, ErrInvalid)
}

func TestMarshal_nil(t *testing.T) {
	_, err := Marshal(nil)
	require.Error(t, err)
}

func TestCheckDNSName_table(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"fqdn", "pc1.dc1.contoso.com", ""},
		{"single label", "localhost", ""},
		{"hyphen inside", "sql-01.x-y.com", ""},
		{"63-char label", strings.Repeat("a", 63) + ".com", ""},
		{"64-char label", strings.Repeat("a", 64) + ".com", `label "` + strings.Repeat("a", 64) + `" is 64 characters long; at most 63 are allowed`},
		{"too long", strings.Repeat("abcdefghi.", 26) + "com", "it is 263 characters long; at most 253 are allowed"},
		{"empty", "", "it is empty"},
		{"double dot", "a..b", "it has an empty label (a leading, trailing or doubled dot)"},
		{"trailing dot", "a.b.", "it has an empty label (a leading, trailing or doubled dot)"},
		{"underscore", "a_b.com", `it contains "_"; use letters, digits, hyphens and dots`},
		{"space", "a b", `it contains " "; use letters, digits, hyphens and dots`},
		{"leading hyphen", "-a.com", `label "-a" starts or ends with a hyphen`},
		{"trailing hyphen", "a-.com", `label "a-" starts or ends with a hyphen`},
		{"numeric last label", "10.0.0", `its last label "0" is all digits`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, checkDNSName(tt.in))
		})
	}
}

func TestParseAgent_table(t *testing.T) {
	tests := []struct {
		name, in   string
		host       string
		port       int
		wantReason string
	}{
		{"dns", "pc1.dc1.contoso.com:7443", "pc1.dc1.contoso.com", 7443, ""},
		{"ipv4", "127.0.0.1:1", "127.0.0.1", 1, ""},
		{"ipv6", "[2001:db8::1]:65535", "2001:db8::1", 65535, ""},
		{"no port", "pc1", "", 0, "want host:port, e.g. pc1.dc1.contoso.com:7443"},
		{"empty host", ":7443", "", 0, "the host is missing; want host:port, e.g. pc1.dc1.contoso.com:7443"},
		{"port zero", "pc1:0", "", 0, "port 0 is out of range 1-65535"},
		{"port too big", "pc1:65536", "", 0, "port 65536 is out of range 1-65535"},
		{"port not a number", "pc1:https", "", 0, `port "https" is not a number; want host:port, e.g. pc1.dc1.contoso.com:7443`},
		{"signed port", "pc1:+80", "", 0, `port "+80" is not a number; want host:port, e.g. pc1.dc1.contoso.com:7443`},
		{"bad host", "pc_1:7443", "", 0, `host "pc_1" is neither an IP address nor a valid DNS name (it contains "_"; use letters, digits, hyphens and dots)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, port, reason := parseAgent(tt.in)
			require.Equal(t, tt.wantReason, reason)
			require.Equal(t, tt.host, host)
			require.Equal(t, tt.port, port)
		})
	}
}

func TestCheckPath_table(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{`\\fs1.dc1.contoso.com\pchat-ls`, true},
		{`\\fs1\share\sub\dir`, true},
		{`D:\LSCopy\mgc`, true},
		{`d:\`, true},
		{`/srv/chatdr/ls`, true},
		{`/`, true},
		{`\\fs1`, false},
		{`\\fs1\`, false},
		{`\\\share`, false},
		{`D:LSCopy`, false},
		{`D:/LSCopy`, false},
		{`LSCopy\mgc`, false},
		{`./ls`, false},
		{"/srv/ls\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			require.Equal(t, tt.ok, checkPath(tt.in) == "", checkPath(tt.in))
		})
	}
}

func TestCheckDatabase_table(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"mgc", true},
		{"mgccomp", true},
		{"_x", true},
		{"a@$#9", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"1mgc", false},
		{"@mgc", false},
		{"mgc comp", false},
		{"mgc-comp", false},
		{"mgç", false},
		{"MASTER", false},
		{"tempdb", false},
		{"model", false},
		{"msdb", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			require.Equal(t, tt.ok, checkDatabase(tt.in) == "", checkDatabase(tt.in))
		})
	}
}

func TestCheckInstance_table(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"PCHAT", true},
		{"_sql$1", true},
		{strings.Repeat("a", 16), true},
		{strings.Repeat("a", 17), false},
		{"1SQL", false},
		{"$SQL", false},
		{"SQL#1", false},
		{"SQL-1", false},
		{"Default", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			require.Equal(t, tt.ok, checkInstance(tt.in) == "", checkInstance(tt.in))
		})
	}
}

// The full example of docs/topology.md must stay valid.
func TestDocs_fullExample(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "topology.md"))
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(doc), "## Full example\n\n```yaml\n")
	require.True(t, ok, "docs/topology.md has a Full example yaml block")
	example, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)

	topo, err := Parse("docs/topology.md", []byte(example))
	require.NoError(t, err)
	require.Len(t, topo.Agents(), 12)
	require.Len(t, topo.ActiveServers(ActiveNormal), 4)
	require.Len(t, topo.ActiveServers(ActiveFailedOver), 4)
}
