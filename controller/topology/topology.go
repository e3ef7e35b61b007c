// Package topology holds the typed model of one chatdr deployment: the
// Persistent Chat pool, its two sites, its chat servers, its SQL Server hosts,
// databases and log-shipping shares, and where the Management Shell runs.
//
// A deployment is described by one YAML file. Load and Parse decode it
// strictly (unknown fields, wrong types, duplicate keys and extra documents
// are errors), apply defaults and validate it as a whole; every problem found
// is reported with the file, line and field path it concerns. A *Topology
// returned by Load or Parse is valid; the package never mutates it afterwards,
// so it is safe for concurrent reads as long as callers do not mutate it
// either.
package topology

import "strings"

// Limits of a Persistent Chat pool (domain.md §1).
const (
	// MaxChatServers is the most chat servers a pool may hold.
	MaxChatServers = 8
	// MaxActiveServers is the most chat servers that may be active at once,
	// in any one pool state.
	MaxActiveServers = 4
)

// Defaults applied by Parse to fields left out of the file.
const (
	// DefaultInstance is the SQL Server default instance name, used for a SQL
	// host whose instance is omitted.
	DefaultInstance = "MSSQLSERVER"
	// DefaultChatDatabase is the Persistent Chat database name used when
	// databases.chat is omitted.
	DefaultChatDatabase = "mgc"
	// DefaultDataLossApprovers is the number of approvers a data-loss step
	// needs when approvals.data_loss_approvers is omitted.
	DefaultDataLossApprovers = 1
)

// Agent roles, reported by Agents for fleet status.
const (
	// RoleChatServer marks a Persistent Chat server.
	RoleChatServer = "chat_server"
	// RoleSQLPrimary marks the principal SQL Server in the primary site.
	RoleSQLPrimary = "sql_primary"
	// RoleSQLPrimaryMirror marks the mirror of the principal, in the primary site.
	RoleSQLPrimaryMirror = "sql_primary_mirror"
	// RoleSQLBackup marks the log-shipping secondary in the backup site.
	RoleSQLBackup = "sql_backup"
	// RoleSQLBackupMirror marks the mirror of the backup SQL Server, in the
	// backup site.
	RoleSQLBackupMirror = "sql_backup_mirror"
	// RoleManagementShell marks the chat server where Management Shell
	// cmdlets run.
	RoleManagementShell = "management_shell"
)

// Topology is one validated deployment. Values returned by Load and Parse
// have every default applied; see the field docs for which.
type Topology struct {
	// Pool is the Persistent Chat pool FQDN.
	Pool string
	// PoolIdentity is the identity Set-CsPersistentChatState and friends take,
	// "service:<fqdn>" or "PersistentChatServer:<fqdn>"; defaults to
	// "service:" + Pool.
	PoolIdentity string
	// Sites are the data centers in file order: exactly one primary and one
	// backup.
	Sites []Site
	// ChatServers are the pool's servers in file order (1 to 8).
	ChatServers []ChatServer
	// SQL holds the SQL Server hosts by role.
	SQL SQL
	// Databases names the Persistent Chat databases.
	Databases Databases
	// LogShipping holds the log-shipping shares and folders.
	LogShipping LogShipping
	// ManagementShellHost is the FQDN of the chat server where Management
	// Shell cmdlets run.
	ManagementShellHost string
	// Approvals configures how risky steps are approved.
	Approvals Approvals
}

// SiteRole is the part a site plays in the deployment.
type SiteRole string

// Site roles.
const (
	// SitePrimary is the site whose database the pool uses when it is normal.
	SitePrimary SiteRole = "primary"
	// SiteBackup is the site whose database the pool uses after a failover.
	SiteBackup SiteRole = "backup"
)

// Site is one data center.
type Site struct {
	// Name identifies the site within the file.
	Name string
	// Role is SitePrimary or SiteBackup.
	Role SiteRole
	// LowLatencyTo names the other sites this site has a low-latency,
	// high-bandwidth link to; chat servers here may be active while the
	// database in use is in one of those sites. Nil when empty.
	LowLatencyTo []string
}

// ActiveWhen says in which pool state a chat server is on the active server
// list.
type ActiveWhen string

// Pool states a chat server can be active in.
const (
	// ActiveNormal means active while the pool uses the primary site's database.
	ActiveNormal ActiveWhen = "normal"
	// ActiveFailedOver means active while the pool uses the backup site's database.
	ActiveFailedOver ActiveWhen = "failed_over"
	// ActiveNever means the server is never put on the active list.
	ActiveNever ActiveWhen = "never"
)

// ChatServer is one Persistent Chat server of the pool.
type ChatServer struct {
	// FQDN is the server's DNS name.
	FQDN string
	// Site is the name of the site the server sits in.
	Site string
	// Agent is the host:port of the chatdr agent on the server.
	Agent string
	// ActiveWhen is the pool state in which the server is active.
	ActiveWhen ActiveWhen
}

// SQLHost is one SQL Server host.
type SQLHost struct {
	// FQDN is the host's DNS name.
	FQDN string
	// Instance is the SQL Server instance name; defaults to DefaultInstance.
	Instance string
	// Agent is the host:port of the chatdr agent on the host.
	Agent string
	// Site is the name of the site the host sits in, implied by its role:
	// the primary site for primary and primary_mirror, the backup site for
	// backup and backup_mirror.
	Site string
}

// SQL holds the SQL Server hosts by role. Primary and Backup are always set
// in a valid topology; the mirrors are nil when not configured.
type SQL struct {
	// Primary is the principal in the primary site.
	Primary *SQLHost
	// PrimaryMirror is the principal's mirror in the primary site, or nil.
	PrimaryMirror *SQLHost
	// Backup is the log-shipping secondary in the backup site.
	Backup *SQLHost
	// BackupMirror is the backup's mirror in the backup site, or nil.
	BackupMirror *SQLHost
}

// Databases names the Persistent Chat databases.
type Databases struct {
	// Chat is the chat database (rooms, categories, history); defaults to
	// DefaultChatDatabase.
	Chat string
	// Compliance is the compliance database; empty when compliance is disabled.
	Compliance string
}

// ComplianceEnabled reports whether a compliance database is configured.
func (d Databases) ComplianceEnabled() bool { return d.Compliance != "" }

// LogShipping holds the shares and folders log shipping uses.
type LogShipping struct {
	// BackupShare is the share the primary's backup job writes log backups to.
	BackupShare string
	// CopyDir is the folder on the backup SQL Server the copy job copies to.
	CopyDir string
	// MirrorShare is the share Install-CsMirrorDatabase uses; set whenever a
	// mirror is configured.
	MirrorShare string
}

// Approvals configures how risky steps are approved.
type Approvals struct {
	// DataLossApprovers is how many different approvers a data-loss step
	// needs: 1 or 2, default DefaultDataLossApprovers.
	DataLossApprovers int
}

// Agent is one host that runs a chatdr agent.
type Agent struct {
	// Host is the host's FQDN.
	Host string
	// Address is the agent's host:port.
	Address string
	// Site is the name of the site the host sits in.
	Site string
	// Roles are the Role* constants that apply to the host.
	Roles []string
}

// Agents lists every host that runs an agent: the chat servers in file order,
// then the configured SQL hosts in the order primary, primary_mirror, backup,
// backup_mirror. The management shell host carries RoleManagementShell in
// addition to RoleChatServer. The result is freshly allocated.
func (t *Topology) Agents() []Agent {
	agents := make([]Agent, 0, len(t.ChatServers)+4)
	for _, cs := range t.ChatServers {
		roles := []string{RoleChatServer}
		if t.ManagementShellHost != "" && strings.EqualFold(cs.FQDN, t.ManagementShellHost) {
			roles = append(roles, RoleManagementShell)
		}
		agents = append(agents, Agent{Host: cs.FQDN, Address: cs.Agent, Site: cs.Site, Roles: roles})
	}
	for _, rh := range t.sqlRoles() {
		if rh.host != nil {
			agents = append(agents, Agent{Host: rh.host.FQDN, Address: rh.host.Agent, Site: rh.host.Site, Roles: []string{rh.role}})
		}
	}
	return agents
}

// SiteByRole returns the first site with role r, or the zero Site when there
// is none (never the case for a valid topology and a defined role).
func (t *Topology) SiteByRole(r SiteRole) Site {
	for _, s := range t.Sites {
		if s.Role == r {
			return s
		}
	}
	return Site{}
}

// ActiveServers returns, in file order, the chat servers to put on the active
// server list while the pool is in the given state. state is ActiveNormal or
// ActiveFailedOver; any other value yields nil.
func (t *Topology) ActiveServers(state ActiveWhen) []ChatServer {
	if state != ActiveNormal && state != ActiveFailedOver {
		return nil
	}
	var out []ChatServer
	for _, cs := range t.ChatServers {
		if cs.ActiveWhen == state {
			out = append(out, cs)
		}
	}
	return out
}

// SQLHosts maps each configured SQL role (RoleSQLPrimary, RoleSQLPrimaryMirror,
// RoleSQLBackup, RoleSQLBackupMirror) to its host. The map is new, but the
// hosts are the topology's own: do not mutate them.
func (t *Topology) SQLHosts() map[string]*SQLHost {
	m := make(map[string]*SQLHost, 4)
	for _, rh := range t.sqlRoles() {
		if rh.host != nil {
			m[rh.role] = rh.host
		}
	}
	return m
}

// roleHost pairs a SQL role with its host (nil when not configured).
type roleHost struct {
	role string   // Role* constant
	key  string   // yaml key under sql
	site SiteRole // role of the site the host lives in
	host *SQLHost
}

// sqlRoles lists the SQL roles in their canonical order.
func (t *Topology) sqlRoles() []roleHost {
	return []roleHost{
		{RoleSQLPrimary, "primary", SitePrimary, t.SQL.Primary},
		{RoleSQLPrimaryMirror, "primary_mirror", SitePrimary, t.SQL.PrimaryMirror},
		{RoleSQLBackup, "backup", SiteBackup, t.SQL.Backup},
		{RoleSQLBackupMirror, "backup_mirror", SiteBackup, t.SQL.BackupMirror},
	}
}
