package csshell

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PoolState is the state of a Persistent Chat pool: Normal (the pool uses
// its primary databases) or FailedOver (the backup databases).
type PoolState string

// Pool states, spelled as the cmdlets spell them.
const (
	Normal     PoolState = "Normal"
	FailedOver PoolState = "FailedOver"
)

// ParsePoolState returns the canonical PoolState for s, case-insensitively.
func ParsePoolState(s string) (PoolState, bool) {
	switch {
	case strings.EqualFold(s, string(Normal)):
		return Normal, true
	case strings.EqualFold(s, string(FailedOver)):
		return FailedOver, true
	}
	return "", false
}

// SQL roles of the topology (domain.md §1).
const (
	RolePrimary       = "primary"
	RolePrimaryMirror = "primary_mirror"
	RoleBackup        = "backup"
	RoleBackupMirror  = "backup_mirror"
)

// MaxActiveServers is the number of chat servers that may be active at once
// (domain.md §1, §6.16).
const MaxActiveServers = 4

// CMSFormat is the version of the CMS file format this package writes.
const CMSFormat = 1

// Service status values kept in the CMS file.
const (
	ServiceRunning = "Running"
	ServiceStopped = "Stopped"
)

// Sentinel errors of the store.
var (
	// ErrUnknownServer: a name is not a chat server of the topology.
	ErrUnknownServer = errors.New("not a Persistent Chat server of the topology")
	// ErrTooManyActive: the change would leave more than MaxActiveServers active.
	ErrTooManyActive = errors.New("more than 4 active Persistent Chat servers")
	// ErrInvalidCMS: the CMS file or a CMS value is invalid.
	ErrInvalidCMS = errors.New("invalid central management store")
	// ErrExists: Create found a file already there.
	ErrExists = errors.New("central management store file already exists")
	// ErrUnknownService: a service is not configured on a server.
	ErrUnknownService = errors.New("no such service")
)

// Duration is a time.Duration written in JSON as a Go duration string ("2s").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string ("1.5s") or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration must be a string like \"2s\": %s", b)
	}
	*d = Duration(n)
	return nil
}

// CMS is the content of the Central Management Store file. The file is the
// JSON encoding of this struct; every field is documented in README.md.
type CMS struct {
	// Format is CMSFormat.
	Format int `json:"format"`
	// Version is incremented by every change of the file.
	Version int64 `json:"version"`
	// Pool describes the Persistent Chat pool.
	Pool Pool `json:"pool"`
	// History is the central change log of pool state and active servers,
	// oldest first; its last entry is the current central state. Local
	// stores replicate it with each server's delay.
	History []Change `json:"history"`
	// Servers are the chat servers of the pool.
	Servers []ChatServer `json:"servers"`
	// SQL maps a role (primary, primary_mirror, backup, backup_mirror) to
	// its SQL Server instance.
	SQL map[string]SQLInstance `json:"sql"`
	// Databases names the chat and compliance databases.
	Databases Databases `json:"databases"`
	// JSONEnums says how enum properties reach ConvertTo-Json: "numbers"
	// (Windows PowerShell 5.1, the default) or "names".
	JSONEnums string `json:"json_enums,omitempty"`
}

// Pool is the Persistent Chat pool.
type Pool struct {
	// FQDN is the pool's FQDN.
	FQDN string `json:"fqdn"`
	// Identities are the -Identity values the Persistent Chat state cmdlets
	// accept for the pool (case-insensitive); the first one is what they
	// print. Default: "PersistentChatServer:<fqdn>", "service:<fqdn>".
	Identities []string `json:"identities,omitempty"`
	// ActiveServerIdentities are the -Identity values
	// Set-CsPersistentChatActiveServer accepts. Default: "global".
	ActiveServerIdentities []string `json:"active_server_identities,omitempty"`
	// Site is the pool's site (Get-CsService SiteId). Optional.
	Site string `json:"site,omitempty"`
	// Registrars are the front-end pools Test-CsPersistentChatMessage may
	// target besides the pool itself. Empty: any FQDN is accepted.
	Registrars []string `json:"registrars,omitempty"`
}

// Change is one central change of the pool state or active server list.
type Change struct {
	Version       int64     `json:"version"`
	At            time.Time `json:"at"`
	PoolState     PoolState `json:"pool_state"`
	ActiveServers []string  `json:"active_servers"`
}

// ChatServer is a Persistent Chat server of the pool.
type ChatServer struct {
	FQDN string `json:"fqdn"`
	Site string `json:"site,omitempty"`
	// ReplicationDelay is how long a central change takes to reach this
	// server's local store.
	ReplicationDelay Duration `json:"replication_delay,omitempty"`
	// Services are the Lync/SfB services on the server
	// (Get-CsWindowsService). Default: RTCCHAT, Running.
	Services []Service `json:"services,omitempty"`
}

// Service is one Windows service as Get-CsWindowsService reports it.
type Service struct {
	Name          string `json:"name"`
	DisplayName   string `json:"display_name,omitempty"`
	Status        string `json:"status"` // Running or Stopped
	ActivityLevel string `json:"activity_level,omitempty"`
}

// SQLInstance is one SQL Server instance of the topology.
type SQLInstance struct {
	// FQDN is the host name the cmdlets use (-SqlServerFqdn).
	FQDN string `json:"fqdn"`
	// Instance is the SQL instance name ("" or MSSQLSERVER: default instance).
	Instance string `json:"instance,omitempty"`
	// Addr is the TDS address (host:port) the simulator connects to.
	Addr string `json:"addr"`
	// Login and Password are the SQL login the simulator uses.
	Login    string `json:"login"`
	Password string `json:"password"`
	// MirrorEndpoint is the host:port used in ALTER DATABASE … SET PARTNER =
	// 'TCP://host:port' when this instance is a mirroring partner. Default:
	// Addr.
	MirrorEndpoint string `json:"mirror_endpoint,omitempty"`
}

// Databases names the pool's databases.
type Databases struct {
	Chat       string `json:"chat"`                 // default mgc
	Compliance string `json:"compliance,omitempty"` // default mgccomp
}

// Snapshot is the pool state and active server list at one CMS version.
type Snapshot struct {
	Version       int64
	At            time.Time
	PoolState     PoolState
	ActiveServers []string
}

// Topology is the read-only part of the CMS a chat simulator needs.
type Topology struct {
	Pool      Pool
	Servers   []ChatServer
	SQL       map[string]SQLInstance
	Databases Databases
}

// DatabaseFor returns the role and SQL instance holding the chat database
// in state: Normal → primary, FailedOver → backup.
func (t Topology) DatabaseFor(state PoolState) (string, SQLInstance, bool) {
	role := RolePrimary
	if state == FailedOver {
		role = RoleBackup
	}
	in, ok := t.SQL[role]
	return role, in, ok
}

// Server returns the chat server named fqdn (case-insensitive).
func (t Topology) Server(fqdn string) (ChatServer, bool) {
	for _, s := range t.Servers {
		if strings.EqualFold(s.FQDN, fqdn) {
			return s, true
		}
	}
	return ChatServer{}, false
}

// DSN returns the go-mssqldb connection string for database db on in.
func (in SQLInstance) DSN(db string) string {
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword(in.Login, in.Password), Host: in.Addr}
	q := url.Values{}
	q.Set("database", db)
	q.Set("encrypt", "disable")
	q.Set("dial timeout", "5")
	q.Set("connection timeout", "30")
	q.Set("app name", "chatdr-sim csshell")
	u.RawQuery = q.Encode()
	return u.String()
}

// Endpoint returns the mirroring endpoint host:port of in.
func (in SQLInstance) Endpoint() string {
	if in.MirrorEndpoint != "" {
		return in.MirrorEndpoint
	}
	return in.Addr
}

// Name returns fqdn\instance, or fqdn for a default instance.
func (in SQLInstance) Name() string {
	if in.Instance == "" || strings.EqualFold(in.Instance, "MSSQLSERVER") {
		return in.FQDN
	}
	return in.FQDN + `\` + in.Instance
}

// current returns the last history entry (validate guarantees one).
func (c *CMS) current() Change { return c.History[len(c.History)-1] }

// server returns a pointer to the chat server fqdn, or nil.
func (c *CMS) server(fqdn string) *ChatServer {
	for i := range c.Servers {
		if strings.EqualFold(c.Servers[i].FQDN, fqdn) {
			return &c.Servers[i]
		}
	}
	return nil
}

// canonicalServer returns the topology spelling of fqdn, or an error
// wrapping ErrUnknownServer.
func (c *CMS) canonicalServer(fqdn string) (string, error) {
	if s := c.server(fqdn); s != nil {
		return s.FQDN, nil
	}
	return "", fmt.Errorf("%q: %w", fqdn, ErrUnknownServer)
}

func (c *CMS) topology() Topology {
	t := Topology{Pool: c.Pool, Databases: c.Databases, SQL: map[string]SQLInstance{}}
	t.Pool.Identities = slices.Clone(c.Pool.Identities)
	t.Pool.ActiveServerIdentities = slices.Clone(c.Pool.ActiveServerIdentities)
	t.Pool.Registrars = slices.Clone(c.Pool.Registrars)
	for _, s := range c.Servers {
		s.Services = slices.Clone(s.Services)
		t.Servers = append(t.Servers, s)
	}
	for k, v := range c.SQL {
		t.SQL[k] = v
	}
	return t
}

// record appends a change of the pool state and active list, bumping the
// version, and prunes history no local store can still be behind on.
func (c *CMS) record(now time.Time, state PoolState, active []string) {
	c.Version++
	c.History = append(c.History, Change{Version: c.Version, At: now.UTC(), PoolState: state, ActiveServers: slices.Clone(active)})
	c.prune(now)
}

// prune keeps every change younger than the largest replication delay plus
// a margin, and the newest older one (which a lagging local store shows).
func (c *CMS) prune(now time.Time) {
	var maxDelay time.Duration
	for _, s := range c.Servers {
		maxDelay = max(maxDelay, time.Duration(s.ReplicationDelay))
	}
	horizon := now.Add(-maxDelay - time.Minute)
	keepFrom := 0
	for i, h := range c.History {
		if !h.At.After(horizon) {
			keepFrom = i
		}
	}
	if len(c.History)-keepFrom > 1000 {
		keepFrom = len(c.History) - 1000
	}
	c.History = slices.Clone(c.History[keepFrom:])
}

var (
	fqdnRE     = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
	identityRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*(:[A-Za-z0-9][A-Za-z0-9.-]*)?$`)
	sqlNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	instanceRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]{0,15}$`)
	svcNameRE  = regexp.MustCompile(`^[A-Za-z0-9_$.-]{1,80}$`)
)

// ValidFQDN reports whether s is a host name the simulator accepts.
func ValidFQDN(s string) bool { return len(s) <= 253 && fqdnRE.MatchString(s) }

// normalize fills defaults and validates c.
func (c *CMS) normalize(now time.Time) error {
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	if c.Format == 0 {
		c.Format = CMSFormat
	}
	if c.Format != CMSFormat {
		bad("format %d: this simulator reads format %d", c.Format, CMSFormat)
	}
	if !ValidFQDN(c.Pool.FQDN) {
		bad("pool.fqdn %q is not a valid FQDN", c.Pool.FQDN)
	}
	if len(c.Pool.Identities) == 0 && c.Pool.FQDN != "" {
		c.Pool.Identities = []string{"PersistentChatServer:" + c.Pool.FQDN, "service:" + c.Pool.FQDN}
	}
	for _, id := range c.Pool.Identities {
		if !identityRE.MatchString(id) {
			bad("pool.identities: %q is not an identity", id)
		}
	}
	if len(c.Pool.ActiveServerIdentities) == 0 {
		c.Pool.ActiveServerIdentities = []string{"global"}
	}
	for _, id := range c.Pool.ActiveServerIdentities {
		if !identityRE.MatchString(id) {
			bad("pool.active_server_identities: %q is not an identity", id)
		}
	}
	for _, r := range c.Pool.Registrars {
		if !ValidFQDN(r) {
			bad("pool.registrars: %q is not a valid FQDN", r)
		}
	}
	if len(c.Servers) == 0 {
		bad("servers: at least one chat server is needed")
	}
	seen := map[string]bool{}
	for i := range c.Servers {
		s := &c.Servers[i]
		if !ValidFQDN(s.FQDN) {
			bad("servers[%d].fqdn %q is not a valid FQDN", i, s.FQDN)
		}
		if seen[strings.ToLower(s.FQDN)] {
			bad("servers[%d].fqdn %q is listed twice", i, s.FQDN)
		}
		seen[strings.ToLower(s.FQDN)] = true
		if s.ReplicationDelay < 0 {
			bad("servers[%d].replication_delay is negative", i)
		}
		if s.Services == nil {
			s.Services = []Service{{Name: "RTCCHAT", DisplayName: "Skype for Business Server Persistent Chat", Status: ServiceRunning}}
		}
		for j := range s.Services {
			v := &s.Services[j]
			if !svcNameRE.MatchString(v.Name) {
				bad("servers[%d].services[%d].name %q is not a service name", i, j, v.Name)
			}
			if v.Status == "" {
				v.Status = ServiceRunning
			}
			if v.Status != ServiceRunning && v.Status != ServiceStopped {
				bad("servers[%d].services[%d].status %q: want Running or Stopped", i, j, v.Status)
			}
			if v.ActivityLevel == "" {
				v.ActivityLevel = "Full"
			}
		}
	}
	if c.SQL == nil {
		c.SQL = map[string]SQLInstance{}
	}
	for role, in := range c.SQL {
		switch role {
		case RolePrimary, RolePrimaryMirror, RoleBackup, RoleBackupMirror:
		default:
			bad("sql.%s: unknown role (want primary, primary_mirror, backup or backup_mirror)", role)
			continue
		}
		if !ValidFQDN(in.FQDN) {
			bad("sql.%s.fqdn %q is not a valid FQDN", role, in.FQDN)
		}
		if in.Instance != "" && !instanceRE.MatchString(in.Instance) {
			bad("sql.%s.instance %q is not an instance name", role, in.Instance)
		}
		for what, a := range map[string]string{"addr": in.Addr, "mirror_endpoint": in.MirrorEndpoint} {
			if a == "" && what == "mirror_endpoint" {
				continue
			}
			if !validHostPort(a) {
				bad("sql.%s.%s %q is not host:port", role, what, a)
			}
		}
	}
	if c.Databases.Chat == "" {
		c.Databases.Chat = "mgc"
	}
	if c.Databases.Compliance == "" {
		c.Databases.Compliance = "mgccomp"
	}
	if !sqlNameRE.MatchString(c.Databases.Chat) || !sqlNameRE.MatchString(c.Databases.Compliance) {
		bad("databases: names must be plain SQL identifiers")
	}
	switch c.JSONEnums {
	case "":
		c.JSONEnums = "numbers"
	case "numbers", "names":
	default:
		bad("json_enums %q: want numbers or names", c.JSONEnums)
	}
	if len(c.History) == 0 {
		c.Version++
		c.History = []Change{{Version: c.Version, At: now.UTC(), PoolState: Normal, ActiveServers: []string{}}}
	}
	for i, h := range c.History {
		if _, ok := ParsePoolState(string(h.PoolState)); !ok {
			bad("history[%d].pool_state %q: want Normal or FailedOver", i, h.PoolState)
		}
		if len(h.ActiveServers) > MaxActiveServers {
			bad("history[%d]: %d active servers, at most %d", i, len(h.ActiveServers), MaxActiveServers)
		}
		for _, a := range h.ActiveServers {
			if !seen[strings.ToLower(a)] {
				bad("history[%d].active_servers: %q is not in servers", i, a)
			}
		}
		if h.ActiveServers == nil {
			c.History[i].ActiveServers = []string{}
		}
		if i > 0 && h.Version <= c.History[i-1].Version {
			bad("history[%d].version %d does not increase", i, h.Version)
		}
	}
	if last := c.History[len(c.History)-1].Version; c.Version < last {
		c.Version = last
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidCMS, strings.Join(problems, "; "))
	}
	return nil
}

func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return false
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return false
	}
	return net.ParseIP(host) != nil || ValidFQDN(host)
}

// Store is a handle on a CMS file. It keeps no state of its own: every
// call reads the file, and every change is a locked read-modify-write, so
// that any number of Stores in any number of processes can share one file
// without losing updates. Methods are safe for concurrent use.
type Store struct {
	path string
	// now is the clock (tests may replace it).
	now func() time.Time
}

// Create writes a new CMS file at path from c (defaults filled in, history
// started with one Normal entry when empty) and returns a Store on it. It
// fails with ErrExists if the file exists.
func Create(ctx context.Context, path string, c CMS) (*Store, error) {
	s := &Store{path: path, now: time.Now}
	if err := c.normalize(s.now()); err != nil {
		return nil, err
	}
	unlock, err := lockFile(ctx, path+".lock", true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("%s: %w", path, ErrExists)
	}
	if err := writeAtomic(path, &c); err != nil {
		return nil, err
	}
	return s, nil
}

// Open returns a Store on the existing CMS file at path, after reading and
// validating it once.
func Open(ctx context.Context, path string) (*Store, error) {
	s := &Store{path: path, now: time.Now}
	if _, err := s.Read(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Path returns the CMS file's path.
func (s *Store) Path() string { return s.path }

// Read returns the whole CMS as it is now.
func (s *Store) Read(ctx context.Context) (CMS, error) {
	unlock, err := lockFile(ctx, s.path+".lock", false)
	if err != nil {
		return CMS{}, err
	}
	defer unlock()
	c, err := s.load()
	if err != nil {
		return CMS{}, err
	}
	return *c, nil
}

func (s *Store) load() (*CMS, error) {
	b, err := os.ReadFile(s.path)
	if err != nil {
		return nil, fmt.Errorf("read central management store: %w", err)
	}
	var c CMS
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidCMS, s.path, err)
	}
	if err := c.normalize(s.now()); err != nil {
		return nil, fmt.Errorf("%s: %w", s.path, err)
	}
	return &c, nil
}

// Update runs fn on the current CMS under the exclusive lock and writes the
// result (temp file, fsync, rename, fsync of the directory) if fn returns
// nil. fn must not keep c. A change of Version is fn's to make (the
// helpers below bump it for every change).
func (s *Store) Update(ctx context.Context, fn func(c *CMS) error) error {
	unlock, err := lockFile(ctx, s.path+".lock", true)
	if err != nil {
		return err
	}
	defer unlock()
	c, err := s.load()
	if err != nil {
		return err
	}
	before, _ := json.Marshal(c)
	if err := fn(c); err != nil {
		return err
	}
	if err := c.normalize(s.now()); err != nil {
		return err
	}
	after, _ := json.Marshal(c)
	if bytes.Equal(before, after) {
		return nil
	}
	return writeAtomic(s.path, c)
}

// writeAtomic replaces path with c's JSON: a temp file in the same
// directory, fsynced, renamed over path, and the directory fsynced.
func writeAtomic(path string, c *CMS) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write central management store: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename this finds nothing
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write central management store: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write central management store: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write central management store: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write central management store: %w", err)
	}
	return syncDir(dir)
}

// State returns the central pool state and active server list.
func (s *Store) State(ctx context.Context) (Snapshot, error) {
	c, err := s.Read(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	return snapshot(c.current()), nil
}

func snapshot(h Change) Snapshot {
	return Snapshot{Version: h.Version, At: h.At, PoolState: h.PoolState, ActiveServers: slices.Clone(h.ActiveServers)}
}

// LocalState returns what the local store of chat server sees now: the
// newest central change at least the server's replication delay old (the
// oldest known change if none is that old).
func (s *Store) LocalState(ctx context.Context, server string) (Snapshot, error) {
	return s.LocalStateAt(ctx, server, s.now())
}

// LocalStateAt is LocalState as of time now.
func (s *Store) LocalStateAt(ctx context.Context, server string, now time.Time) (Snapshot, error) {
	c, err := s.Read(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	return localState(&c, server, now)
}

func localState(c *CMS, server string, now time.Time) (Snapshot, error) {
	srv := c.server(server)
	if srv == nil {
		return Snapshot{}, fmt.Errorf("%q: %w", server, ErrUnknownServer)
	}
	cutoff := now.Add(-time.Duration(srv.ReplicationDelay))
	pick := c.History[0]
	for _, h := range c.History {
		if !h.At.After(cutoff) {
			pick = h
		}
	}
	return snapshot(pick), nil
}

// SetState sets the central pool state; changed is false when it already was.
func (s *Store) SetState(ctx context.Context, state PoolState) (changed bool, err error) {
	st, ok := ParsePoolState(string(state))
	if !ok {
		return false, fmt.Errorf("%w: pool state %q: want Normal or FailedOver", ErrInvalidCMS, state)
	}
	err = s.Update(ctx, func(c *CMS) error {
		cur := c.current()
		if cur.PoolState == st {
			return nil
		}
		changed = true
		c.record(s.now(), st, cur.ActiveServers)
		return nil
	})
	return changed, err
}

// SetActive replaces the active server list. Every name must be a chat
// server of the topology (ErrUnknownServer) and there may be at most
// MaxActiveServers (ErrTooManyActive). changed is false when the list
// already was that set.
func (s *Store) SetActive(ctx context.Context, servers []string) (changed bool, err error) {
	err = s.Update(ctx, func(c *CMS) error {
		next, err := c.activeList(servers)
		if err != nil {
			return err
		}
		cur := c.current()
		if sameSet(cur.ActiveServers, next) {
			return nil
		}
		changed = true
		c.record(s.now(), cur.PoolState, next)
		return nil
	})
	return changed, err
}

// ModifyActive adds and removes servers from the active list in one change,
// as Set-CsPersistentChatActiveServer -ActiveServers @{Add=…;Remove=…} does.
func (s *Store) ModifyActive(ctx context.Context, add, remove []string) (after Snapshot, changed bool, err error) {
	err = s.Update(ctx, func(c *CMS) error {
		cur := c.current()
		next, err := modifyList(c, cur.ActiveServers, add, remove)
		if err != nil {
			return err
		}
		if !sameSet(cur.ActiveServers, next) {
			changed = true
			c.record(s.now(), cur.PoolState, next)
		}
		after = snapshot(c.current())
		return nil
	})
	return after, changed, err
}

// activeList canonicalizes names (topology spelling, no duplicates) and
// checks the count.
func (c *CMS) activeList(names []string) ([]string, error) {
	out := []string{}
	for _, n := range names {
		canon, err := c.canonicalServer(n)
		if err != nil {
			return nil, err
		}
		if !containsFold(out, canon) {
			out = append(out, canon)
		}
	}
	if len(out) > MaxActiveServers {
		return nil, fmt.Errorf("%w: %d requested (%s)", ErrTooManyActive, len(out), strings.Join(out, ", "))
	}
	return out, nil
}

func modifyList(c *CMS, cur, add, remove []string) ([]string, error) {
	next := slices.Clone(cur)
	for _, r := range remove {
		canon, err := c.canonicalServer(r)
		if err != nil {
			return nil, err
		}
		next = slices.DeleteFunc(next, func(x string) bool { return strings.EqualFold(x, canon) })
	}
	next = append(next, add...)
	return c.activeList(next)
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, s) })
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !containsFold(b, x) {
			return false
		}
	}
	return true
}

// Topology returns the pool, servers, SQL instances and database names.
func (s *Store) Topology(ctx context.Context) (Topology, error) {
	c, err := s.Read(ctx)
	if err != nil {
		return Topology{}, err
	}
	return c.topology(), nil
}

// SetReplicationDelay sets how far server's local store lags behind.
func (s *Store) SetReplicationDelay(ctx context.Context, server string, d time.Duration) error {
	return s.Update(ctx, func(c *CMS) error {
		srv := c.server(server)
		if srv == nil {
			return fmt.Errorf("%q: %w", server, ErrUnknownServer)
		}
		if srv.ReplicationDelay != Duration(d) {
			srv.ReplicationDelay = Duration(d)
			c.Version++
		}
		return nil
	})
}

// Services returns the services configured on server.
func (s *Store) Services(ctx context.Context, server string) ([]Service, error) {
	c, err := s.Read(ctx)
	if err != nil {
		return nil, err
	}
	srv := c.server(server)
	if srv == nil {
		return nil, fmt.Errorf("%q: %w", server, ErrUnknownServer)
	}
	return slices.Clone(srv.Services), nil
}

// ServiceRunning reports whether service name on server is recorded as
// Running (what Start-/Stop-CsWindowsService last set).
func (s *Store) ServiceRunning(ctx context.Context, server, name string) (bool, error) {
	svcs, err := s.Services(ctx, server)
	if err != nil {
		return false, err
	}
	for _, v := range svcs {
		if strings.EqualFold(v.Name, name) {
			return v.Status == ServiceRunning, nil
		}
	}
	return false, fmt.Errorf("%s on %s: %w", name, server, ErrUnknownService)
}

// serviceLock is the file a simulated service holds (shared) while it does
// a unit of work, and that stopping the service takes (exclusive) to wait
// for that work to end.
func (s *Store) serviceLock(server, name string) string {
	return fmt.Sprintf("%s.svc.%s.%s.lock", s.path, strings.ToLower(server), strings.ToLower(name))
}

// ServiceWork is how a simulated service does one unit of work (a chat
// server posting a message): it holds the service's work lock and reports
// whether the service is Running. The caller works only when it is, and
// calls release afterwards. Stop-CsWindowsService waits for the work lock,
// so once a stop has returned no work of the service is in flight, and
// none starts — as a Windows service is stopped when the Service Control
// Manager reports SERVICE_STOPPED.
func (s *Store) ServiceWork(ctx context.Context, server, name string) (running bool, release func(), err error) {
	release, err = lockFile(ctx, s.serviceLock(server, name), false)
	if err != nil {
		return false, nil, err
	}
	running, err = s.ServiceRunning(ctx, server, name)
	if err != nil {
		release()
		return false, nil, err
	}
	return running, release, nil
}

// SetServiceStatus records status (Running or Stopped) for the named
// services on server (all of them when names is empty) and returns how many
// changed. A stop returns only once the work the services had in flight
// (ServiceWork) has ended.
func (s *Store) SetServiceStatus(ctx context.Context, server string, names []string, status string) (int, error) {
	if status != ServiceRunning && status != ServiceStopped {
		return 0, fmt.Errorf("%w: service status %q", ErrInvalidCMS, status)
	}
	n := 0
	var stopped []string
	defer func() {
		for _, name := range stopped {
			if release, err := lockFile(ctx, s.serviceLock(server, name), true); err == nil {
				release()
			}
		}
	}()
	err := s.Update(ctx, func(c *CMS) error {
		n, stopped = 0, nil
		srv := c.server(server)
		if srv == nil {
			return fmt.Errorf("%q: %w", server, ErrUnknownServer)
		}
		for _, name := range names {
			if !slices.ContainsFunc(srv.Services, func(v Service) bool { return strings.EqualFold(v.Name, name) }) {
				return fmt.Errorf("%s on %s: %w", name, server, ErrUnknownService)
			}
		}
		for i := range srv.Services {
			v := &srv.Services[i]
			if !(len(names) == 0 || containsFold(names, v.Name)) {
				continue
			}
			if status == ServiceStopped {
				stopped = append(stopped, v.Name)
			}
			if v.Status != status {
				v.Status = status
				n++
			}
		}
		if n > 0 {
			c.Version++
		}
		return nil
	})
	return n, err
}
