package lab

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/chatdr/chatdr/controller/topology"
	"github.com/chatdr/chatdr/plugins/mssql"
	"github.com/chatdr/chatdr/pluginsdk"
)

// logShippingInterval is how often the lab's log-shipping jobs run: short,
// so that a demo sees messages reach the backup site within seconds.
const logShippingInterval = 5

// bootstrapHA deploys what a Persistent Chat pool has for high availability
// and disaster recovery (domain.md §1): mgc and mgccomp mirrored from the
// primary to the primary mirror, and mgc log-shipped from the primary to
// the backup instance, with SQL Server Agent running the jobs. It uses the
// same actions and T-SQL an administrator would.
func bootstrapHA(ctx context.Context, dir string, st *State, topo *topology.Topology, out io.Writer) error {
	hosts := map[string]sqlHost{}
	for _, h := range sqlRoles(topo) {
		hosts[h.Role] = h
	}
	primary := hosts[topology.RoleSQLPrimary]
	open := func(h sqlHost) (*sql.DB, error) {
		addr, _ := st.sqlAddr(h.Host.FQDN)
		return sqlDB(st, addr, "master")
	}
	pdb, err := open(primary)
	if err != nil {
		return err
	}
	defer pdb.Close()
	for _, h := range sqlRoles(topo) {
		db, err := open(h)
		if err != nil {
			return err
		}
		_, err = db.ExecContext(ctx, "EXEC master.dbo.xp_servicecontrol N'START', N'SQLServerAgent'")
		db.Close()
		if err != nil && !alreadyRunning(err) {
			return fmt.Errorf("start SQL Server Agent on %s: %w", h.Host.FQDN, err)
		}
	}

	// Mirroring in the primary site, for both databases.
	if m, ok := hosts[topology.RoleSQLPrimaryMirror]; ok {
		mdb, err := open(m)
		if err != nil {
			return err
		}
		defer mdb.Close()
		pEnd, mEnd := mirrorEndpoint(st, primary), mirrorEndpoint(st, m)
		for _, db := range []string{topo.Databases.Chat, topo.Databases.Compliance} {
			if db == "" {
				continue
			}
			full := filepath.Join(topo.LogShipping.MirrorShare, db+"_mirror_init.bak")
			log := filepath.Join(topo.LogShipping.MirrorShare, db+"_mirror_init.trn")
			steps := []struct {
				db   *sql.DB
				stmt string
				arg  any
			}{
				{pdb, "BACKUP DATABASE [" + db + "] TO DISK = @p1 WITH INIT, FORMAT, CHECKSUM", full},
				{pdb, "BACKUP LOG [" + db + "] TO DISK = @p1 WITH INIT, FORMAT, CHECKSUM", log},
				{mdb, "RESTORE DATABASE [" + db + "] FROM DISK = @p1 WITH NORECOVERY, REPLACE", full},
				{mdb, "RESTORE LOG [" + db + "] FROM DISK = @p1 WITH NORECOVERY", log},
				// SET PARTNER takes a literal, as in SQL Server.
				{mdb, "ALTER DATABASE [" + db + "] SET PARTNER = N'" + sqlQuote("TCP://"+pEnd) + "'", nil},
				{pdb, "ALTER DATABASE [" + db + "] SET PARTNER = N'" + sqlQuote("TCP://"+mEnd) + "'", nil},
			}
			for _, s := range steps {
				var args []any
				if s.arg != nil {
					args = append(args, s.arg)
				}
				if _, err := s.db.ExecContext(ctx, s.stmt, args...); err != nil {
					return fmt.Errorf("mirror %s: %s: %w", db, s.stmt, err)
				}
			}
			fmt.Fprintf(out, "  mirrored %s: %s → %s\n", db, primary.Host.FQDN, m.Host.FQDN)
		}
	}

	// The backup site's compliance database: not failed over (domain §1),
	// but installed there as the topology's backup store, so the pool can
	// use it after a failover.
	if comp := topo.Databases.Compliance; comp != "" {
		bdb, err := open(hosts[topology.RoleSQLBackup])
		if err != nil {
			return err
		}
		defer bdb.Close()
		for _, q := range []string{
			"IF DB_ID('" + comp + "') IS NULL CREATE DATABASE [" + comp + "]",
			"IF OBJECT_ID('" + comp + ".dbo.compliance_queue') IS NULL CREATE TABLE [" + comp + "].dbo.compliance_queue (id bigint IDENTITY(1,1) PRIMARY KEY, message_id bigint NOT NULL, queued_at datetime2 NOT NULL DEFAULT SYSUTCDATETIME())",
		} {
			if _, err := bdb.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("%s on %s: %w", q, hosts[topology.RoleSQLBackup].Host.FQDN, err)
			}
		}
		fmt.Fprintf(out, "  created %s on %s\n", comp, hosts[topology.RoleSQLBackup].Host.FQDN)
	}

	// Log shipping of the chat database to the backup site.
	backup := hosts[topology.RoleSQLBackup]
	p, b := labPlugin(dir, st, primary), labPlugin(dir, st, backup)
	chatDB := topo.Databases.Chat
	init := filepath.Join(topo.LogShipping.BackupShare, chatDB+"_ls_init.bak")
	steps := []struct {
		plugin *mssql.Plugin
		action string
		params pluginsdk.Params
	}{
		{p, "db.backup_full", pluginsdk.Params{"database": chatDB, "path": init}},
		{b, "db.restore_full", pluginsdk.Params{"database": chatDB, "path": init, "recovery": "norecovery"}},
		{p, "ls.setup_primary", pluginsdk.Params{"database": chatDB, "backup_dir": topo.LogShipping.BackupShare,
			"backup_share": topo.LogShipping.BackupShare, "secondary_server": backup.Name, "interval_seconds": float64(logShippingInterval)}},
		{b, "ls.setup_secondary", pluginsdk.Params{"database": chatDB, "primary_server": primary.Name,
			"source_dir": topo.LogShipping.BackupShare, "dest_dir": topo.LogShipping.CopyDir, "interval_seconds": float64(logShippingInterval)}},
	}
	for _, s := range steps {
		if _, err := s.plugin.Execute(ctx, &pluginsdk.Request{Action: "mssql." + s.action, Params: s.params,
			IdempotencyKey: "lab-bootstrap"}, pluginsdk.DiscardEmitter{}); err != nil {
			return fmt.Errorf("log shipping: %s: %w", s.action, err)
		}
	}
	fmt.Fprintf(out, "  log shipping %s: %s → %s every %ds\n", chatDB, primary.Host.FQDN, backup.Host.FQDN, logShippingInterval)
	return nil
}

// labPlugin is the mssql plugin pointed at the simulator of h, as its agent
// has it.
func labPlugin(dir string, st *State, h sqlHost) *mssql.Plugin {
	addr, _ := st.sqlAddr(h.Host.FQDN)
	_, cfg := agentPlugins(dir, "", st, topology.Agent{Host: h.Host.FQDN})
	m := cfg["mssql"].(map[string]any)
	inst := m["instance"].(map[string]any)
	_, port := splitPort(addr)
	return mssql.NewWithConfig(mssql.Config{
		Instance: mssql.InstanceConfig{Server: "127.0.0.1", Port: port, User: "sa",
			PasswordFile: inst["password_file"].(string), Encrypt: "disable", ConnectTimeout: (10 * time.Second).String()},
		Roots:     m["roots"].([]string),
		Databases: []string{"mgc", "mgccomp"},
	}, filepath.Join(dir, "sql", h.Host.FQDN, "plugin-state"))
}

func mirrorEndpoint(st *State, h sqlHost) string {
	for _, p := range st.procs(KindSQL) {
		if p.Name == sqlProcName(h.Host.FQDN) {
			return p.Mirror
		}
	}
	return ""
}

// sqlQuote doubles single quotes for a T-SQL string literal.
func sqlQuote(s string) string { return strings.ReplaceAll(s, "'", "''") }
