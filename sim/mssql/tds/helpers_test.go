package tds

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"
)

// testReq is what a route sees of a request.
type testReq struct {
	Batch *Batch
	Call  *RPCCall
	Exec  ExecuteSQL // for sp_executesql calls
	Key   string     // batch text, sp_executesql statement, or procedure name
	Reset bool
}

type route func(ctx context.Context, s *Session, r *testReq, w *ResponseWriter) error

// logEntry records one request the handler received.
type logEntry struct {
	Kind    string // "batch", "exec" (sp_executesql) or "proc"
	Key     string
	Reset   bool
	Session uint16
	Params  []Param
	Decls   string
}

// testHandler is a scripted router: requests are matched by exact text (for
// batches and sp_executesql) or procedure name.
type testHandler struct {
	mu       sync.Mutex
	routes   map[string]route
	log      []logEntry
	users    map[string]string
	dbs      map[string]bool
	closed   []uint16
	loginErr func(Login) error
}

func newTestHandler() *testHandler {
	h := &testHandler{
		routes: map[string]route{},
		users:  map[string]string{"u": "p"},
		dbs:    map[string]bool{"master": true, "db1": true, "db2": true},
	}
	h.handle("select 1;", func(_ context.Context, _ *Session, _ *testReq, w *ResponseWriter) error {
		return writeResult(w, []Column{{Name: "", Type: TypeInt()}}, []any{1})
	})
	h.handle("select @@SPID", func(_ context.Context, s *Session, _ *testReq, w *ResponseWriter) error {
		return writeResult(w, []Column{{Name: "spid", Type: TypeSmallInt()}}, []any{int(s.ID())})
	})
	h.handle("select db_name()", func(_ context.Context, s *Session, _ *testReq, w *ResponseWriter) error {
		return writeResult(w, []Column{{Name: "", Type: TypeNVarChar(128), Nullable: true}}, []any{s.Database()})
	})
	return h
}

func (h *testHandler) handle(key string, r route) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.routes[key] = r
}

func (h *testHandler) entries() []logEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]logEntry(nil), h.log...)
}

// entriesFor returns the logged requests with the given key.
func (h *testHandler) entriesFor(key string) []logEntry {
	var out []logEntry
	for _, e := range h.entries() {
		if e.Key == key {
			out = append(out, e)
		}
	}
	return out
}

func (h *testHandler) Authenticate(_ context.Context, l Login) (string, error) {
	if h.loginErr != nil {
		if err := h.loginErr(l); err != nil {
			return "", err
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if pw, ok := h.users[l.UserName]; !ok || pw != l.Password {
		return "", errors.New("bad password")
	}
	db := l.Database
	if db == "" {
		db = "master"
	}
	if !h.dbs[db] {
		return "", errors.Join(CannotOpenDatabase(db), LoginFailed(l.UserName))
	}
	return db, nil
}

func (h *testHandler) Batch(ctx context.Context, s *Session, b *Batch, w *ResponseWriter) error {
	return h.dispatch(ctx, s, &testReq{Batch: b, Key: b.SQL, Reset: b.ResetConnection}, "batch", w)
}

func (h *testHandler) RPC(ctx context.Context, s *Session, c *RPCCall, w *ResponseWriter) error {
	r := &testReq{Call: c, Key: c.Name, Reset: c.ResetConnection}
	kind := "proc"
	if c.IsExecuteSQL() {
		e, err := c.ExecuteSQL()
		if err != nil {
			return err
		}
		r.Exec, r.Key, kind = e, e.Statement, "exec"
	}
	return h.dispatch(ctx, s, r, kind, w)
}

func (h *testHandler) dispatch(ctx context.Context, s *Session, r *testReq, kind string, w *ResponseWriter) error {
	h.mu.Lock()
	e := logEntry{Kind: kind, Key: r.Key, Reset: r.Reset, Session: s.ID(), Decls: r.Exec.Declarations}
	if r.Call != nil {
		e.Params = r.Call.Params
	}
	h.log = append(h.log, e)
	rt := h.routes[r.Key]
	h.mu.Unlock()
	if rt == nil {
		return &Error{Number: 2812, State: 62, Class: 16, Message: fmt.Sprintf("Could not find stored procedure '%s'.", r.Key)}
	}
	return rt(ctx, s, r, w)
}

func (h *testHandler) SessionClosed(s *Session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = append(h.closed, s.ID())
}

func (h *testHandler) closedSessions() []uint16 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]uint16(nil), h.closed...)
}

// writeResult writes one result set of a single row and ends it.
func writeResult(w *ResponseWriter, cols []Column, row []any) error {
	if err := w.Columns(cols...); err != nil {
		return err
	}
	if err := w.Row(row...); err != nil {
		return err
	}
	return w.EndResultSet()
}

// testServer is a running server with its handler.
type testServer struct {
	srv *Server
	h   *testHandler
	rec *recorder
}

// startServer starts a server on a loopback port; it is closed at cleanup.
func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	h := newTestHandler()
	if cfg.Handler == nil {
		cfg.Handler = h
	}
	srv, err := NewServer(cfg)
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rec := &recorder{}
	go func() { _ = srv.Serve(&recordingListener{Listener: l, rec: rec}) }()
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	require.Eventually(t, func() bool { return srv.Addr() != nil }, 5*time.Second, time.Millisecond)
	return &testServer{srv: srv, h: h, rec: rec}
}

// dsn returns a connection string for the server; extra is appended to the
// query string.
func (ts *testServer) dsn(user, password, extra string) string {
	d := fmt.Sprintf("sqlserver://%s:%s@%s?dial+timeout=5", user, password, ts.srv.Addr())
	if !strings.Contains(extra, "database=") {
		d += "&database=db1"
	}
	if !strings.Contains(extra, "encrypt=") {
		d += "&encrypt=disable"
	}
	if extra != "" {
		d += "&" + extra
	}
	return d
}

// open returns a *sql.DB for the server, closed at cleanup.
func (ts *testServer) open(t *testing.T, extra string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlserver", ts.dsn("u", "p", extra))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// mssqlError extracts the driver's error value.
func mssqlError(t *testing.T, err error) mssql.Error {
	t.Helper()
	require.Error(t, err)
	var e mssql.Error
	require.True(t, errors.As(err, &e), "error %v (%T) is not an mssql.Error", err, err)
	return e
}

// recorder checks the packets the server writes: type, size, EOM.
type recorder struct {
	mu        sync.Mutex
	packets   int
	maxSize   int
	problems  []string
	pktCounts map[int]int // packet length -> count
	inbound   []*bytes.Buffer
}

func (r *recorder) stats() (packets, maxSize int, problems []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.packets, r.maxSize, append([]string(nil), r.problems...)
}

func (r *recorder) countOfSize(n int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pktCounts[n]
}

type recordingListener struct {
	net.Listener
	rec *recorder
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	rc := &recordingConn{Conn: c, rec: l.rec, in: &bytes.Buffer{}}
	l.rec.mu.Lock()
	l.rec.inbound = append(l.rec.inbound, rc.in)
	l.rec.mu.Unlock()
	return rc, nil
}

// Read records what the client sends.
func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.rec.mu.Lock()
	c.in.Write(p[:n])
	c.rec.mu.Unlock()
	return n, err
}

// clientStreams returns a copy of the bytes each client sent, by
// connection in accept order.
func (r *recorder) clientStreams() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][]byte, len(r.inbound))
	for i, b := range r.inbound {
		out[i] = bytes.Clone(b.Bytes())
	}
	return out
}

// recordingConn parses the server-to-client byte stream into packets.
type recordingConn struct {
	net.Conn
	rec     *recorder
	in      *bytes.Buffer
	pending []byte
	limit   int // packet size limit; 4096 until the login reply announced one
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.pending = append(c.pending, p...)
	c.rec.mu.Lock()
	if c.rec.pktCounts == nil {
		c.rec.pktCounts = map[int]int{}
	}
	for len(c.pending) >= headerSize {
		n := int(binary.BigEndian.Uint16(c.pending[2:4]))
		if n < headerSize || len(c.pending) < n {
			break
		}
		pkt := c.pending[:n]
		if pkt[0] != byte(packetReply) {
			c.rec.problems = append(c.rec.problems, fmt.Sprintf("packet type %d", pkt[0]))
		}
		limit := c.limit
		if limit == 0 {
			limit = 4096
		}
		if n > limit {
			c.rec.problems = append(c.rec.problems, fmt.Sprintf("packet of %d bytes exceeds %d", n, limit))
		}
		if c.limit == 0 {
			c.limit = packetSizeEnvChange(pkt[headerSize:])
		}
		c.rec.packets++
		c.rec.pktCounts[n]++
		c.rec.maxSize = max(c.rec.maxSize, n)
		c.pending = c.pending[n:]
	}
	c.rec.mu.Unlock()
	return c.Conn.Write(p)
}

// packetSizeEnvChange finds ENVCHANGE(packet size) in a login reply payload
// and returns the new size, or 0.
func packetSizeEnvChange(b []byte) int {
	for i := 0; i+5 < len(b); i++ {
		if b[i] != tokenEnvChange || b[i+3] != envPacketSize {
			continue
		}
		r := newWireReader(b[i+4:])
		v := r.bVarChar()
		var n int
		if _, err := fmt.Sscan(v, &n); err == nil && r.err() == nil {
			return n
		}
	}
	return 0
}

// pollUntil waits for cond with a deadline instead of sleeping.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 10*time.Second, 2*time.Millisecond, "timed out waiting for %s", what)
}
