package tds

import (
	"net"
	"sync"
	"time"
)

// Session is one logged-in client connection (a SQL Server SPID). Its
// methods are safe for concurrent use: the session's handler calls and,
// for example, a handler of another session listing sessions.
type Session struct {
	srv        *Server
	c          *conn
	id         uint16
	login      Login // without Password
	loginTime  time.Time
	initialDB  string
	packetSize int

	mu           sync.Mutex
	database     string
	running      bool
	requestStart time.Time
	requestEnd   time.Time
	requests     uint64
	values       map[any]any
}

func newSession(c *conn, login Login, database string, packetSize int) *Session {
	login.Password = ""
	login.NewPassword = ""
	now := time.Now()
	return &Session{
		srv: c.srv, c: c, id: c.spid, login: login, loginTime: now,
		initialDB: database, packetSize: packetSize, database: database,
		requestEnd: now,
	}
}

// ID returns the session id (SPID, 51 or more, unique among live sessions
// of the server).
func (s *Session) ID() uint16 { return s.id }

// Server returns the server the session belongs to (to list or kill
// sessions from a handler).
func (s *Session) Server() *Server { return s.srv }

// Login returns the login the session was opened with, without password.
func (s *Session) Login() Login { return s.login }

// LoginName returns the SQL login name.
func (s *Session) LoginName() string { return s.login.UserName }

// HostName returns the client workstation name.
func (s *Session) HostName() string { return s.login.HostName }

// AppName returns the client application name.
func (s *Session) AppName() string { return s.login.AppName }

// RemoteAddr returns the client's network address.
func (s *Session) RemoteAddr() net.Addr { return s.login.RemoteAddr }

// LoginTime returns when the login completed.
func (s *Session) LoginTime() time.Time { return s.loginTime }

// PacketSize returns the negotiated packet size in bytes.
func (s *Session) PacketSize() int { return s.packetSize }

// InitialDatabase returns the database the session started in (the value
// Authenticate returned), the database a connection reset goes back to.
func (s *Session) InitialDatabase() string { return s.initialDB }

// Database returns the current database.
func (s *Session) Database() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.database
}

// SetDatabase changes the current database without telling the client.
// Handlers running USE should call ResponseWriter.ChangeDatabase, which
// also sends the ENVCHANGE.
func (s *Session) SetDatabase(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.database = name
}

// Running reports whether a request of the session is executing (status
// "running" rather than "sleeping" in sys.dm_exec_sessions).
func (s *Session) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

// LastRequestStart returns when the current or last request started (zero
// before the first one).
func (s *Session) LastRequestStart() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requestStart
}

// LastRequestEnd returns when the last request ended (the login time before
// the first one).
func (s *Session) LastRequestEnd() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requestEnd
}

// Requests returns how many requests the session has received.
func (s *Session) Requests() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Value returns the value stored under key by SetValue, or nil.
func (s *Session) Value(key any) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[key]
}

// SetValue stores per-session state for the handler (SET options, temp
// tables, open transactions...). A nil val deletes the key.
func (s *Session) SetValue(key, val any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if val == nil {
		delete(s.values, key)
		return
	}
	if s.values == nil {
		s.values = map[any]any{}
	}
	s.values[key] = val
}

// Kill closes the session's connection, as KILL does. See Server.Kill.
func (s *Session) Kill() error { return s.srv.Kill(s.id) }

func (s *Session) beginRequest() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running = true
	s.requestStart = time.Now()
	s.requests++
}

func (s *Session) endRequest() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running = false
	s.requestEnd = time.Now()
}
