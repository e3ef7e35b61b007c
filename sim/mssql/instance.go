// Package mssql is the engine of the SQL Server simulator: one Instance is one
// SQL Server (name, version, logins, databases) whose state lives in a data
// directory and survives a restart. It runs the T-SQL subset listed in
// README.md and is served over TDS by package tds, so that the unmodified
// go-mssqldb driver talks to it.
package mssql

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatdr/chatdr/sim/mssql/tds"
	bolt "go.etcd.io/bbolt"
)

// ProductVersion is the simulated SQL Server build (SQL Server 2014 SP3).
const ProductVersion = "12.0.6024.0"

// Edition is SERVERPROPERTY('Edition').
const Edition = "Enterprise Edition (64-bit)"

// Config configures an Instance.
type Config struct {
	// Name is the server name (@@SERVERNAME), "HOST" or "HOST\INSTANCE".
	// Required.
	Name string
	// DataDir holds the durable state; created if missing. Required.
	DataDir string
	// Logins maps SQL login names to passwords. At least one is required.
	Logins map[string]string
	// Logger receives diagnostics. Default: discarded.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Share is the backup share the instance's service account reaches
	// (optional): fault injection can make it unreadable (share.go).
	Share string
	// MirrorListen is the address of the database mirroring endpoint
	// ("127.0.0.1:0" picks a port; empty: no endpoint, so SET PARTNER
	// fails with 1418 as without a CREATE ENDPOINT).
	MirrorListen string
	// AgentTick is how often SQL Server Agent looks for due jobs. Default
	// 100 ms.
	AgentTick time.Duration
}

// Instance is one simulated SQL Server. Its methods are safe for concurrent
// use; statements run one at a time (a single engine lock), each committed
// durably before it is acknowledged.
type Instance struct {
	cfg   Config
	log   *slog.Logger
	store *store

	mu     sync.Mutex
	dbs    map[string]*database // by lower-case name
	closed bool
	srv    *tds.Server   // the first server started by Serve (sessions for Exec)
	srvs   []*tds.Server // every server started by Serve

	faults faults

	agent       *agent
	sqlCache    sync.Map // internal statement text -> parsed []stmt (procs.go)
	mir         *mirroring
	shareDenied atomic.Bool
}

// Open opens (or creates) the instance whose state is in cfg.DataDir.
func Open(cfg Config) (*Instance, error) {
	if cfg.Name == "" || cfg.DataDir == "" || len(cfg.Logins) == 0 {
		return nil, fmt.Errorf("%w: Name, DataDir and Logins are required", ErrConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	st, err := openStore(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	dbs, err := st.load()
	if err != nil {
		_ = st.close()
		return nil, err
	}
	in := &Instance{cfg: cfg, log: cfg.Logger, store: st, dbs: dbs}
	for _, sys := range []struct {
		name string
		id   int
	}{{"master", 1}, {"tempdb", 2}, {"model", 3}, {"msdb", 4}} {
		if _, ok := dbs[sys.name]; ok {
			continue
		}
		d := in.newDatabase(sys.name, sys.id)
		if sys.name != "msdb" {
			d.Recovery = "SIMPLE"
		}
		if err := st.update(func(tx *bolt.Tx) error { return putDB(tx, d) }); err != nil {
			_ = st.close()
			return nil, err
		}
		dbs[sys.name] = d
	}
	if err := in.ensureMsdb(); err != nil {
		_ = st.close()
		return nil, fmt.Errorf("%w: msdb history tables: %w", ErrStorage, err)
	}
	if err := in.openMirroring(); err != nil {
		_ = st.close()
		return nil, err
	}
	if err := in.openAgent(); err != nil {
		in.closeMirroring()
		_ = st.close()
		return nil, fmt.Errorf("%w: SQL Server Agent: %w", ErrStorage, err)
	}
	return in, nil
}

// Name returns the server name.
func (in *Instance) Name() string { return in.cfg.Name }

// newDatabase returns a new ONLINE database with a new recovery fork.
func (in *Instance) newDatabase(name string, id int) *database {
	d := &database{tables: map[string]*table{}}
	d.Name, d.ID = name, id
	d.Created = in.cfg.Now().UTC()
	d.State, d.Recovery, d.UserAccess = stateOnline, "FULL", "MULTI_USER"
	d.ForkGUID = newGUID()
	d.LSN = uint64(34+id)*1_000_000_000_000_000 + 12300001
	d.DataFile = filepath.Join(in.cfg.DataDir, name+".mdf")
	d.LogFile = filepath.Join(in.cfg.DataDir, name+"_log.ldf")
	return d
}

func newGUID() tds.GUID {
	var g tds.GUID
	_, _ = rand.Read(g[:])
	g[6] = g[6]&0x0f | 0x40
	g[8] = g[8]&0x3f | 0x80
	return g
}

// Serve starts a TDS server for the instance on addr ("127.0.0.1:0" picks a
// port) and returns its address. It may be called more than once (several
// listeners; the sessions views, KILL and exclusive-access checks see the
// sessions of the server a request came in on); Close stops them all.
func (in *Instance) Serve(addr string) (net.Addr, error) {
	srv, err := tds.NewServer(tds.Config{
		Handler:    in.Handler(),
		ServerName: in.cfg.Name,
		Version:    tds.Version{Major: 12, Minor: 0, Build: 6024},
		Logger:     in.log,
	})
	if err != nil {
		return nil, err
	}
	if err := srv.Listen(addr); err != nil {
		return nil, err
	}
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		_ = srv.Close()
		return nil, ErrClosed
	}
	if in.srv == nil {
		in.srv = srv
	}
	in.srvs = append(in.srvs, srv)
	in.mu.Unlock()
	return srv.Addr(), nil
}

// Close stops the server started by Serve and closes the store. The state on
// disk is complete: every acknowledged statement was already committed.
func (in *Instance) Close() error {
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return nil
	}
	in.closed = true
	srvs := in.srvs
	in.mu.Unlock()
	var errs []error
	for _, srv := range srvs {
		errs = append(errs, srv.Close())
	}
	in.closeAgent()
	in.closeMirroring()
	in.mu.Lock()
	errs = append(errs, in.store.close())
	in.mu.Unlock()
	return errors.Join(errs...)
}

// Handler returns the tds.Handler running this instance's SQL.
func (in *Instance) Handler() tds.Handler { return handler{in} }

// commit runs fn in one durable transaction.
func (in *Instance) commit(fn func(tx *bolt.Tx) error) error {
	return in.store.update(fn)
}

// db returns a database by name (case-insensitive), or nil.
func (in *Instance) db(name string) *database {
	return in.dbs[strings.ToLower(name)]
}

func (in *Instance) dbByID(id int) *database {
	for _, d := range in.dbs {
		if d.ID == id {
			return d
		}
	}
	return nil
}

// sortedDBs returns the databases ordered by id.
func (in *Instance) sortedDBs() []*database {
	out := make([]*database, 0, len(in.dbs))
	for _, d := range in.dbs {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// freeID returns the lowest free database id from 5 on, as SQL Server does.
func (in *Instance) freeID() int {
	used := map[int]bool{}
	for _, d := range in.dbs {
		used[d.ID] = true
	}
	id := 5
	for used[id] {
		id++
	}
	return id
}

// DatabaseInfo is a snapshot of a database's state, for tests and tools.
type DatabaseInfo struct {
	Name          string
	ID            int
	State         string // ONLINE, RESTORING, OFFLINE
	Standby       bool
	ReadOnly      bool
	RecoveryModel string
	UserAccess    string
	ForkGUID      string
	LSN           uint64
}

// Database returns the state of a database, false if it does not exist.
func (in *Instance) Database(name string) (DatabaseInfo, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	d := in.db(name)
	if d == nil {
		return DatabaseInfo{}, false
	}
	return DatabaseInfo{Name: d.Name, ID: d.ID, State: d.State, Standby: d.Standby, ReadOnly: d.ReadOnly || d.Standby,
		RecoveryModel: d.Recovery, UserAccess: d.UserAccess, ForkGUID: d.ForkGUID.String(), LSN: d.LSN}, true
}

// Exec runs a batch in database as sa without a client session (tools and
// tests) and returns the rows of every result set. Statements that need a
// session (KILL, sessions views) see the sessions of the server started by
// Serve, if any.
func (in *Instance) Exec(ctx context.Context, database, sql string) ([][][]any, error) {
	x := &execCtx{in: in, ctx: ctx, db: database, login: "sa"}
	if x.db == "" {
		x.db = "master"
	}
	var out [][][]any
	x.sink = func(_ []resultCol, rows [][]any) { out = append(out, rows) }
	err := x.runBatch(sql, nil)
	return out, err
}
