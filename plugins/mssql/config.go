// Package mssql is the built-in "mssql" action plugin: the SQL Server side
// of Persistent Chat failover and failback (log shipping, backups and
// restores, sessions, mirroring) through go-mssqldb.
//
// Every action is check-then-act: it reads whether its effect is already
// there and does only what is missing, so running it twice has the effect
// of running it once. Identifiers are validated and bracket-quoted, values
// always travel as parameters, and every file path must lie under one of
// the configured roots.
package mssql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	mssqldb "github.com/microsoft/go-mssqldb"

	"github.com/chatdr/chatdr/pluginsdk"
)

// Config is the plugin's section of agent.yaml (plugin_config.mssql).
type Config struct {
	// Instance is how to reach the local SQL Server instance.
	Instance InstanceConfig `yaml:"instance"`
	// Roots are the directories file paths must lie under (backup share,
	// copy directory, data directories). Relative roots are relative to the
	// agent's config file.
	Roots []string `yaml:"roots"`
	// Databases are the databases the probes report on (default mgc).
	Databases []string `yaml:"databases"`
}

// InstanceConfig is one SQL Server instance.
type InstanceConfig struct {
	// Server is the host (default localhost); Port the TCP port (default
	// 1433 for the default instance; a named instance is resolved through
	// SQL Browser when Port is 0).
	Server string `yaml:"server"`
	Port   int    `yaml:"port"`
	// Name is the instance name; MSSQLSERVER (or empty) is the default one.
	Name string `yaml:"name"`
	// Auth is "sql" (user and password) or "windows" (integrated; Windows only).
	Auth string `yaml:"auth"`
	User string `yaml:"user"`
	// PasswordFile or PasswordEnv holds the password; it is never logged.
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// Encrypt is disable, false, true or strict (default false: encrypt the
	// login only, as SQL Server clients do by default).
	Encrypt string `yaml:"encrypt"`
	// TrustServerCertificate skips server certificate checks (lab only).
	TrustServerCertificate bool `yaml:"trust_server_certificate"`
	// ConnectTimeout bounds a connection attempt (default 15s).
	ConnectTimeout string `yaml:"connect_timeout"`
}

// dsn builds the go-mssqldb connection URL; the password never appears in
// errors (url.Redacted is used for messages).
func (c InstanceConfig) dsn(password string) (*url.URL, error) {
	server := c.Server
	if server == "" {
		server = "localhost"
	}
	u := &url.URL{Scheme: "sqlserver", Host: server}
	if c.Port > 0 {
		u.Host = server + ":" + strconv.Itoa(c.Port)
	}
	if c.Name != "" && !strings.EqualFold(c.Name, "MSSQLSERVER") {
		if err := checkInstanceName(c.Name); err != nil {
			return nil, err
		}
		u.Path = "/" + c.Name
	}
	q := url.Values{}
	q.Set("database", "master")
	q.Set("app name", "chatdr-agent")
	enc := c.Encrypt
	if enc == "" {
		enc = "false"
	}
	switch enc {
	case "disable", "false", "true", "strict":
		q.Set("encrypt", enc)
	default:
		return nil, fmt.Errorf("instance.encrypt %q: want disable, false, true or strict", enc)
	}
	if c.TrustServerCertificate {
		q.Set("TrustServerCertificate", "true")
	}
	if c.ConnectTimeout != "" {
		d, err := time.ParseDuration(c.ConnectTimeout)
		if err != nil {
			return nil, fmt.Errorf("instance.connect_timeout: %v", err)
		}
		q.Set("connection timeout", strconv.Itoa(int(d.Seconds())))
	}
	switch c.Auth {
	case "", "sql":
		if c.User == "" {
			return nil, errors.New("instance.user is required for SQL authentication")
		}
		u.User = url.UserPassword(c.User, password)
	case "windows":
		// No user: go-mssqldb uses integrated authentication (SSPI on Windows).
	default:
		return nil, fmt.Errorf("instance.auth %q: want sql or windows", c.Auth)
	}
	u.RawQuery = q.Encode()
	return u, nil
}

// password reads the SQL password from its file or environment variable.
func (c InstanceConfig) password() (string, error) {
	switch {
	case c.Auth == "windows":
		return "", nil
	case c.PasswordFile != "":
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("read instance.password_file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case c.PasswordEnv != "":
		v, ok := os.LookupEnv(c.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("instance.password_env: %s is not set in the agent's environment", c.PasswordEnv)
		}
		return v, nil
	default:
		return "", errors.New("instance.password_file or instance.password_env is required for SQL authentication")
	}
}

// conn lazily opens and caches the connection pool of the instance.
type conn struct {
	cfg InstanceConfig

	mu sync.Mutex
	db *sql.DB
}

func (c *conn) get(ctx context.Context) (*sql.DB, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.db != nil {
		return c.db, nil
	}
	pw, err := c.cfg.password()
	if err != nil {
		return nil, pluginsdk.Terminal("config", "%v", err).WithHint("fix plugin_config.mssql.instance in agent.yaml")
	}
	u, err := c.cfg.dsn(pw)
	if err != nil {
		return nil, pluginsdk.Terminal("config", "%v", err).WithHint("fix plugin_config.mssql.instance in agent.yaml")
	}
	connector, err := mssqldb.NewConnector(u.String())
	if err != nil {
		return nil, pluginsdk.Terminal("config", "connection string for %s: %v", u.Redacted(), err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, sqlError(fmt.Sprintf("connect to SQL Server %s", u.Redacted()), err)
	}
	c.db = db
	return db, nil
}

func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.db != nil {
		c.db.Close()
		c.db = nil
	}
}

// resolveRoots makes the roots absolute and clean.
func resolveRoots(cfgPath string, roots []string) ([]string, error) {
	var out []string
	for _, r := range roots {
		if r == "" {
			continue
		}
		if !filepath.IsAbs(r) {
			r = filepath.Join(filepath.Dir(cfgPath), r)
		}
		out = append(out, filepath.Clean(r))
	}
	return out, nil
}
