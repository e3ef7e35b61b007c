package tds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Handler implements the SQL side of the server. Its methods are called
// from the connection's goroutine, one request at a time per session, and
// concurrently across sessions.
type Handler interface {
	// Authenticate checks a LOGIN7 (SQL authentication) and returns the
	// database the session starts in ("" for none: no ENVCHANGE is sent).
	// A non-nil error refuses the login: *Error values (and errors.Join
	// of them) are sent as they are, any other error as LoginFailed; the
	// connection is then closed. Logins asking for integrated security
	// are refused before Authenticate is called.
	Authenticate(ctx context.Context, login Login) (database string, err error)
	// Batch runs a SQL batch, writing its results to w. ctx is cancelled
	// when the client sends an attention (query cancel, or Rows.Close
	// before the end) or the connection closes; the handler must then
	// return promptly. A returned error is sent as ERROR token(s) ending
	// the response (see Error); after an attention it is ignored.
	Batch(ctx context.Context, s *Session, b *Batch, w *ResponseWriter) error
	// RPC runs a remote procedure call: sp_executesql (see
	// RPCCall.ExecuteSQL), or a procedure called by name. Same contract
	// as Batch.
	RPC(ctx context.Context, s *Session, call *RPCCall, w *ResponseWriter) error
}

// SessionCloser is optionally implemented by a Handler to release
// per-session state. SessionClosed is called once after a session's
// connection has closed (client disconnect, Kill, DropConnections, Close),
// before Close returns.
type SessionCloser interface {
	SessionClosed(s *Session)
}

// Config configures a Server. Zero fields take the documented defaults.
type Config struct {
	// Handler runs logins and requests. Required.
	Handler Handler
	// ServerName fills the server field of ERROR and INFO tokens
	// (@@SERVERNAME). Default "SIMSQL".
	ServerName string
	// ProgramName is the LOGINACK program name. Default
	// "Microsoft SQL Server".
	ProgramName string
	// Version is the product version in PRELOGIN and LOGINACK. Default
	// 16.0.4135 (SQL Server 2022).
	Version Version
	// Collation is the server collation sent at login and used for
	// character columns without one. Default DefaultCollation().
	Collation Collation
	// LoginTimeout bounds PRELOGIN, LOGIN7 and Authenticate. Default 30s.
	LoginTimeout time.Duration
	// ReadTimeout bounds the time between the first packet of a client
	// message and its last one; an idle connection between requests has
	// no deadline. Default 30s.
	ReadTimeout time.Duration
	// WriteTimeout bounds each packet write; a client that stops reading
	// for longer is disconnected. Default 60s.
	WriteTimeout time.Duration
	// MaxMessageSize caps a client request (all its packets). Default
	// DefaultMaxMessageSize (64 MiB).
	MaxMessageSize int
	// Logger receives connection-level diagnostics. Default: discarded.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.ServerName == "" {
		c.ServerName = "SIMSQL"
	}
	if c.ProgramName == "" {
		c.ProgramName = "Microsoft SQL Server"
	}
	if c.Version == (Version{}) {
		c.Version = Version{Major: 16, Minor: 0, Build: 4135}
	}
	if c.Collation == (Collation{}) {
		c.Collation = DefaultCollation()
	}
	if c.LoginTimeout <= 0 {
		c.LoginTimeout = 30 * time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 60 * time.Second
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Server is a TDS 7.4 server. Create it with NewServer, start it with
// Listen or Serve, stop it with Close. All methods are safe for concurrent
// use.
type Server struct {
	cfg    Config
	ctx    context.Context // cancelled by Close; parent of every connection
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept loops and connections

	mu        sync.Mutex
	closed    bool
	listeners []net.Listener
	conns     map[*conn]struct{}
	sessions  map[uint16]*conn
	nextID    uint16

	// counters read by tests
	attentions        atomic.Int64 // attention messages received
	attnInFlight      atomic.Int64 // answered by ending the running response
	attnAfterResponse atomic.Int64 // answered with a separate response
}

// NewServer returns a server that is not listening yet.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Handler == nil {
		return nil, errors.New("tds: Config.Handler is required")
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg: cfg.withDefaults(), ctx: ctx, cancel: cancel,
		conns: map[*conn]struct{}{}, sessions: map[uint16]*conn{}, nextID: firstSessionID,
	}, nil
}

// firstSessionID is the first user SPID, as in SQL Server (1-50 are
// system sessions).
const firstSessionID = 51

// Listen listens on a TCP address ("127.0.0.1:0" picks a free port) and
// serves it in the background until Close. Addr reports the address.
func (s *Server) Listen(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("tds: listen on %s: %w", addr, err)
	}
	if err := s.addListener(l); err != nil {
		return err
	}
	go func() { _ = s.serve(l) }()
	return nil
}

// Serve accepts connections on l until Close; it then returns
// ErrServerClosed. l is closed by Close.
func (s *Server) Serve(l net.Listener) error {
	if err := s.addListener(l); err != nil {
		return err
	}
	return s.serve(l)
}

func (s *Server) addListener(l net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		l.Close()
		return ErrServerClosed
	}
	s.listeners = append(s.listeners, l)
	s.wg.Add(1)
	return nil
}

func (s *Server) serve(l net.Listener) error {
	defer s.wg.Done()
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			s.cfg.Logger.Error("tds: accept failed; no longer serving this listener", "addr", l.Addr(), "err", err)
			return fmt.Errorf("tds: accept on %v: %w", l.Addr(), err)
		}
		s.startConn(nc)
	}
}

// Addr returns the address of the first listener, or nil before Listen or
// Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.listeners) == 0 {
		return nil
	}
	return s.listeners[0].Addr()
}

// Close stops the listeners, closes every connection (cancelling running
// handlers' contexts) and waits until all the server's goroutines have
// ended, SessionClosed callbacks included. Handlers must return once their
// context is cancelled, or Close blocks. Close is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	ls := s.listeners
	s.listeners = nil
	cs := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	s.cancel()
	for _, l := range ls {
		l.Close()
	}
	for _, c := range cs {
		c.close()
	}
	s.wg.Wait()
	return nil
}

// Sessions returns the logged-in sessions ordered by id (for
// sys.dm_exec_sessions).
func (s *Server) Sessions() []*Session {
	s.mu.Lock()
	out := make([]*Session, 0, len(s.sessions))
	for _, c := range s.sessions {
		out = append(out, c.sess)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b *Session) int { return int(a.id) - int(b.id) })
	return out
}

// Session returns the live session with the given id.
func (s *Server) Session(id uint16) (*Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.sessions[id]
	if !ok {
		return nil, false
	}
	return c.sess, true
}

// Kill closes the connection of session id, as KILL does: its running
// request's context is cancelled and the client sees a broken connection.
// The session disappears from Sessions at once; Kill does not wait for its
// handler to return. It returns ErrSessionNotFound for an unknown id.
func (s *Server) Kill(id uint16) error {
	s.mu.Lock()
	c, ok := s.sessions[id]
	delete(s.sessions, id)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %d", ErrSessionNotFound, id)
	}
	c.close()
	return nil
}

// DropConnections closes every client connection, logged in or not, while
// the server keeps listening (fault injection: a network failure or a
// failover). It returns how many connections were closed.
func (s *Server) DropConnections() int {
	s.mu.Lock()
	cs := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	clear(s.sessions)
	s.mu.Unlock()
	for _, c := range cs {
		c.close()
	}
	return len(cs)
}

// startConn registers a new connection and starts serving it.
func (s *Server) startConn(nc net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		nc.Close()
		return
	}
	id, ok := s.allocateID()
	if !ok {
		s.cfg.Logger.Error("tds: no free session id; refusing connection", "remote", nc.RemoteAddr())
		nc.Close()
		return
	}
	c := newConn(s, nc, id)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	go c.serve()
}

// allocateID returns a session id not used by any connection. Called with
// s.mu held.
func (s *Server) allocateID() (uint16, bool) {
	used := make(map[uint16]bool, len(s.conns))
	for c := range s.conns {
		used[c.spid] = true
	}
	for range 0x10000 - firstSessionID {
		id := s.nextID
		s.nextID++
		if s.nextID < firstSessionID {
			s.nextID = firstSessionID
		}
		if !used[id] {
			return id, true
		}
	}
	return 0, false
}

// addSession attaches sess to its connection and makes it visible. It
// reports false when the connection was closed meanwhile.
func (s *Server) addSession(c *conn, sess *Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.sess = sess
	if _, ok := s.conns[c]; !ok || s.closed || c.ctx.Err() != nil {
		return false
	}
	s.sessions[c.spid] = c
	return true
}

// removeConn forgets a connection that has ended.
func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if s.sessions[c.spid] == c {
		delete(s.sessions, c.spid)
	}
	s.mu.Unlock()
}
