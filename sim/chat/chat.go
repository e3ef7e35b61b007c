// Package chat simulates a Persistent Chat server for the lab and the
// end-to-end tests: while its service runs and the local store of its
// Central Management Store shows it on the active server list, it posts chat
// messages into the database the pool state points at (Normal → the primary
// SQL instance, FailedOver → the backup), through go-mssqldb. Every message
// the database acknowledged (the INSERT returned its id) is appended to an
// acknowledgement file and synced, so that a test can prove which
// acknowledged messages survived a failover.
package chat

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	_ "github.com/microsoft/go-mssqldb" // the sqlserver driver

	"github.com/chatdr/chatdr/sim/csshell"
)

// Config configures one chat server.
type Config struct {
	// FQDN is this server's name in the CMS.
	FQDN string
	// CMS is the path of the Central Management Store file.
	CMS string
	// AckFile receives one line per acknowledged message.
	AckFile string
	// Rate is messages per second while active (default 5).
	Rate float64
	// Room is the chat room the messages go to (default "lab").
	Room string
	// Poll is how often the local store is read (default 200ms).
	Poll time.Duration
	// StatusFile, when set, receives the server's Status as JSON whenever
	// it changes (written atomically).
	StatusFile string
	Log        *slog.Logger
}

// Status is what the server last observed and did.
type Status struct {
	FQDN string `json:"fqdn"`
	// LocalVersion is the CMS version its local store showed.
	LocalVersion int64  `json:"local_version"`
	PoolState    string `json:"pool_state"`
	// Active is whether it was on the active list (and so writing).
	Active bool `json:"active"`
	// Role is the SQL role of the database it writes to ("" when inactive).
	Role   string `json:"role"`
	Posted int64  `json:"posted"`
}

// ReadStatus reads a status file.
func ReadStatus(path string) (Status, error) {
	var st Status
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	err = json.Unmarshal(b, &st)
	return st, err
}

// serviceName is the Persistent Chat service as the Management Shell lists
// it; when the CMS says it is stopped, the simulator writes nothing.
const serviceName = "RTCCHAT"

// Ack is one acknowledged message, as written to the acknowledgement file:
// id, body, database role and time, tab-separated.
type Ack struct {
	ID   int64
	Body string
	Role string
	At   time.Time
}

func (a Ack) line() string {
	return fmt.Sprintf("%d\t%s\t%s\t%s\n", a.ID, a.Body, a.Role, a.At.UTC().Format(time.RFC3339Nano))
}

// ParseAck parses one line of an acknowledgement file.
func ParseAck(line string) (Ack, error) {
	f := strings.Split(strings.TrimRight(line, "\n"), "\t")
	if len(f) != 4 {
		return Ack{}, fmt.Errorf("ack line %q: want 4 tab-separated fields", line)
	}
	var a Ack
	if _, err := fmt.Sscan(f[0], &a.ID); err != nil {
		return Ack{}, fmt.Errorf("ack line %q: id: %v", line, err)
	}
	at, err := time.Parse(time.RFC3339Nano, f[3])
	if err != nil {
		return Ack{}, fmt.Errorf("ack line %q: time: %v", line, err)
	}
	a.Body, a.Role, a.At = f[1], f[2], at
	return a, nil
}

// ReadAcks reads an acknowledgement file (a missing file has no acks).
func ReadAcks(path string) ([]Ack, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Ack
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" {
			continue
		}
		a, err := ParseAck(l)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// Server is a running chat server simulator.
type Server struct {
	cfg   Config
	store *csshell.Store
	ack   *os.File

	mu     sync.Mutex
	db     *sql.DB
	target string // DSN of the open connection
	role   string
	seq    int64

	last     Status
	reported bool
}

// Run runs the chat server until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.FQDN == "" || cfg.CMS == "" || cfg.AckFile == "" {
		return errors.New("fqdn, CMS file and acknowledgement file are required")
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 5
	}
	if cfg.Room == "" {
		cfg.Room = "lab"
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	st, err := csshell.Open(ctx, cfg.CMS)
	if err != nil {
		return err
	}
	topo, err := st.Topology(ctx)
	if err != nil {
		return err
	}
	if _, ok := topo.Server(cfg.FQDN); !ok {
		return fmt.Errorf("%s is not a chat server of the pool in %s", cfg.FQDN, cfg.CMS)
	}
	ack, err := os.OpenFile(cfg.AckFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer ack.Close()
	prior, err := ReadAcks(cfg.AckFile)
	if err != nil {
		return err
	}
	s := &Server{cfg: cfg, store: st, ack: ack, seq: int64(len(prior))}
	defer s.closeDB()
	return s.loop(ctx, topo)
}

func (s *Server) loop(ctx context.Context, topo csshell.Topology) error {
	interval := time.Duration(float64(time.Second) / s.cfg.Rate)
	post := time.NewTicker(interval)
	defer post.Stop()
	var local csshell.Snapshot
	var lastRead time.Time
	serviceUp := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-post.C:
		}
		if time.Since(lastRead) >= s.cfg.Poll {
			snap, err := s.store.LocalState(ctx, s.cfg.FQDN)
			if err != nil {
				s.cfg.Log.Warn("read local store", "err", err)
				continue
			}
			local, lastRead = snap, time.Now()
			// Stop-CsWindowsService on this server stops the Persistent
			// Chat service: a stopped service writes nothing.
			if running, err := s.store.ServiceRunning(ctx, s.cfg.FQDN, serviceName); err == nil {
				serviceUp = running
			}
		}
		active := serviceUp && contains(local.ActiveServers, s.cfg.FQDN)
		role, in, ok := topo.DatabaseFor(local.PoolState)
		if !active || !ok {
			role = ""
		}
		s.report(Status{FQDN: s.cfg.FQDN, LocalVersion: local.Version, PoolState: string(local.PoolState), Active: active, Role: role})
		if role == "" {
			s.closeDB() // off the active list: no new connection, no writes
			continue
		}
		if err := s.postOne(ctx, role, in.DSN(topo.Databases.Chat)); err != nil && ctx.Err() == nil {
			s.cfg.Log.Debug("post failed", "role", role, "err", err)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// postOne inserts one message into the database at dsn and records the
// acknowledgement.
func (s *Server) postOne(ctx context.Context, role, dsn string) error {
	// The post is a unit of the service's work: a stop of the service waits
	// for it, and no post starts once the service is stopped.
	running, release, err := s.store.ServiceWork(ctx, s.cfg.FQDN, serviceName)
	switch {
	case errors.Is(err, csshell.ErrUnknownService):
		// A CMS that does not model the service: always running.
	case err != nil:
		return err
	default:
		defer release()
		if !running {
			return nil
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil || s.target != dsn {
		if s.db != nil {
			s.db.Close()
		}
		db, err := sql.Open("sqlserver", dsn)
		if err != nil {
			return err
		}
		db.SetMaxOpenConns(1)
		s.db, s.target, s.role = db, dsn, role
		s.cfg.Log.Info("connected", "role", role)
	}
	body := fmt.Sprintf("%s#%d", s.cfg.FQDN, s.seq+1)
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var id int64
	err = s.db.QueryRowContext(ictx,
		"INSERT INTO dbo.messages (room, sender, body) OUTPUT INSERTED.id VALUES (@p1, @p2, @p3)",
		s.cfg.Room, s.cfg.FQDN, body).Scan(&id)
	if err != nil {
		return err
	}
	s.seq++
	a := Ack{ID: id, Body: body, Role: role, At: time.Now()}
	if _, err := s.ack.WriteString(a.line()); err != nil {
		return fmt.Errorf("record ack: %w", err)
	}
	return s.ack.Sync()
}

// report writes the status file when what the server observes changed.
func (s *Server) report(st Status) {
	if s.cfg.StatusFile == "" {
		return
	}
	s.mu.Lock()
	st.Posted = s.seq
	changed := st.LocalVersion != s.last.LocalVersion || st.Active != s.last.Active || st.Role != s.last.Role || !s.reported
	s.last, s.reported = st, true
	s.mu.Unlock()
	if !changed {
		return
	}
	b, _ := json.Marshal(st)
	tmp := s.cfg.StatusFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err == nil {
		_ = os.Rename(tmp, s.cfg.StatusFile)
	}
}

func (s *Server) closeDB() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		s.db.Close()
		s.db, s.target, s.role = nil, "", ""
	}
}
