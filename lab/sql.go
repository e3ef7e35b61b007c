package lab

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "github.com/microsoft/go-mssqldb" // the sqlserver driver

	"github.com/chatdr/chatdr/controller/topology"
)

// sqlHost is one SQL host of the lab topology with its simulator's name.
type sqlHost struct {
	Role string // topology.RoleSQL*
	Host *topology.SQLHost
	// Name is the instance's @@SERVERNAME.
	Name string
}

// sqlRoles returns the lab's SQL hosts: primary, primary mirror, backup,
// backup mirror.
func sqlRoles(t *topology.Topology) []sqlHost {
	var out []sqlHost
	for _, r := range []struct {
		role string
		h    *topology.SQLHost
	}{
		{topology.RoleSQLPrimary, t.SQL.Primary}, {topology.RoleSQLPrimaryMirror, t.SQL.PrimaryMirror},
		{topology.RoleSQLBackup, t.SQL.Backup}, {topology.RoleSQLBackupMirror, t.SQL.BackupMirror},
	} {
		if r.h != nil {
			out = append(out, sqlHost{Role: r.role, Host: r.h, Name: serverName(r.h.FQDN)})
		}
	}
	return out
}

// serverName turns sql1.dc1.chatdr.lab into SQL1-DC1, a NetBIOS-style
// server name as @@SERVERNAME reports it.
func serverName(fqdn string) string {
	labels := strings.Split(fqdn, ".")
	if len(labels) >= 2 {
		return strings.ToUpper(labels[0] + "-" + labels[1])
	}
	return strings.ToUpper(fqdn)
}

func newPassword() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "Lab-" + hex.EncodeToString(b)
}

// sqlProcName is the lab process name of the SQL simulator on host.
func sqlProcName(host string) string { return "mssql." + host }

// sqlProc describes the SQL Server simulator process of a SQL host.
func sqlProc(dir string, h sqlHost, addr, mirrorAddr, passwordFile string) Proc {
	data := filepath.Join(dir, "sql", h.Host.FQDN, "data")
	name := sqlProcName(h.Host.FQDN)
	return Proc{
		Name: name, Kind: KindSQL, Site: h.Host.Site, Binary: "chatdr-sim",
		Args: []string{"mssql", "--name", h.Name, "--listen", addr, "--data", data,
			"--login", "sa:@" + passwordFile, "--mirror-listen", mirrorAddr, "--share", filepath.Join(dir, "share")},
		Marker:  data,
		Address: addr, Mirror: mirrorAddr,
		Log:     filepath.Join(dir, "logs", name+".log"),
		PidFile: filepath.Join(dir, "run", name+".pid"),
	}
}

// sqlPort returns the TDS port of the simulator on host.
func (st *State) sqlAddr(host string) (string, bool) {
	for _, p := range st.procs(KindSQL) {
		if p.Name == sqlProcName(host) {
			return p.Address, true
		}
	}
	return "", false
}

// agentPlugins returns the built-in plugins and their configuration for
// the agent of host a: mssql on SQL hosts; service (running the chat
// simulator as the RTCCHAT service) and csshell (the Management Shell
// simulator) on chat servers.
func agentPlugins(dir, simBin string, st *State, a topology.Agent) ([]string, map[string]any) {
	if addr, ok := st.sqlAddr(a.Host); ok {
		_, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		return []string{"mssql"}, map[string]any{
			"mssql": map[string]any{
				"instance": map[string]any{"server": "127.0.0.1", "port": p, "user": "sa",
					"password_file": st.SQLPasswordFile, "encrypt": "disable"},
				"roots":     []string{filepath.Join(dir, "share"), filepath.Join(dir, "copy"), filepath.Join(dir, "sql")},
				"databases": []string{"mgc", "mgccomp"},
			},
		}
	}
	return []string{"service", "csshell"}, map[string]any{
		"service": map[string]any{
			"backend": "process",
			"services": map[string]any{
				ChatService: map[string]any{
					"command": []string{simBin, "chat", "--fqdn", a.Host, "--cms", st.CMS,
						"--ack-file", AckFile(dir, a.Host), "--status-file", filepath.Join(dir, "chat", a.Host+".status")},
					"log":        filepath.Join(dir, "logs", ChatService+"."+a.Host+".log"),
					"stop_grace": "5s",
					"restart":    "on-failure",
				},
			},
		},
		"csshell": map[string]any{
			"powershell": []string{simBin, "csshell", "-NoProfile", "-NonInteractive", "-Command"},
			"identity":   "service:" + st.Pool,
			"env":        map[string]string{"CHATDR_CMS_FILE": st.CMS},
		},
	}
}

// sqlDB opens a connection pool to the simulator at addr.
func sqlDB(st *State, addr, database string) (*sql.DB, error) {
	pw, err := os.ReadFile(st.SQLPasswordFile)
	if err != nil {
		return nil, err
	}
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword("sa", strings.TrimSpace(string(pw))), Host: addr}
	u.RawQuery = url.Values{"database": {database}, "encrypt": {"disable"}, "app name": {"chatdr lab"}}.Encode()
	return sql.Open("sqlserver", u.String())
}

// checkSQL pings the simulator of p.
func checkSQL(ctx context.Context, st *State, p Proc) error {
	db, err := sqlDB(st, p.Address, "master")
	if err != nil {
		return err
	}
	defer db.Close()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return db.PingContext(cctx)
}

// bootstrap creates the Persistent Chat databases on the primary, as a
// deployed pool has them.
func bootstrap(ctx context.Context, dir string, st *State, out io.Writer) error {
	for _, p := range st.procs(KindSQL) {
		p := p
		if err := waitFor(ctx, func() error { return checkSQL(ctx, st, p) }); err != nil {
			return fmt.Errorf("%s does not accept connections: %w\n%s", p.Name, err, tail(p.Log, 10))
		}
	}
	topo, err := topology.Load(st.Topology)
	if err != nil {
		return err
	}
	primaryAddr, _ := st.sqlAddr(topo.SQL.Primary.FQDN)
	db, err := sqlDB(st, primaryAddr, "master")
	if err != nil {
		return err
	}
	defer db.Close()
	stmts := []string{
		"IF DB_ID('mgc') IS NULL CREATE DATABASE mgc",
		"IF DB_ID('mgccomp') IS NULL CREATE DATABASE mgccomp",
		"IF OBJECT_ID('mgc.dbo.messages') IS NULL CREATE TABLE mgc.dbo.messages (id bigint IDENTITY(1,1) PRIMARY KEY, room nvarchar(100) NOT NULL, sender nvarchar(256) NOT NULL, body nvarchar(max) NOT NULL, posted_at datetime2 NOT NULL DEFAULT SYSUTCDATETIME())",
		"IF OBJECT_ID('mgccomp.dbo.compliance_queue') IS NULL CREATE TABLE mgccomp.dbo.compliance_queue (id bigint IDENTITY(1,1) PRIMARY KEY, message_id bigint NOT NULL, queued_at datetime2 NOT NULL DEFAULT SYSUTCDATETIME())",
	}
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s on %s: %w", q, topo.SQL.Primary.FQDN, err)
		}
	}
	fmt.Fprintf(out, "  created mgc and mgccomp on %s\n", topo.SQL.Primary.FQDN)
	return bootstrapHA(ctx, dir, st, topo, out)
}

// waitFor polls check until it succeeds or ctx ends.
func waitFor(ctx context.Context, check func() error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// splitPort returns the host and numeric port of addr.
func splitPort(addr string) (string, int) {
	h, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return h, n
}

// alreadyRunning reports whether err says SQL Server Agent already runs.
func alreadyRunning(err error) bool {
	return err != nil && strings.Contains(err.Error(), "already")
}
