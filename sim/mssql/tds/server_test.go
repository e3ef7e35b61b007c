package tds

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"
)

func assertEventually(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// serverGoroutines counts live goroutines running server code.
func serverGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "tds.(*conn).") || strings.Contains(g, "tds.(*Server).serve") {
			n++
		}
	}
	return n
}

func TestServer_Close_endsEveryGoroutine(t *testing.T) {
	// go.uber.org/goleak is not in go.mod: poll the goroutine count instead.
	baseline := runtime.NumGoroutine()
	pollUntil(t, "earlier tests' server goroutines to end", func() bool { return serverGoroutines() == 0 })

	h := newTestHandler()
	started := make(chan struct{}, 1)
	h.handle("block", func(ctx context.Context, _ *Session, _ *testReq, _ *ResponseWriter) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	srv, err := NewServer(Config{Handler: h})
	require.NoError(t, err)
	require.NoError(t, srv.Listen("127.0.0.1:0"))
	ts := &testServer{srv: srv, h: h}
	db := ts.open(t, "")
	db.SetMaxOpenConns(4)
	for range 20 {
		require.NoError(t, db.PingContext(t.Context()))
	}
	pinned, err := db.Conn(t.Context())
	require.NoError(t, err)
	defer pinned.Close()
	require.NoError(t, pinned.PingContext(t.Context()))
	blocked := make(chan error, 1)
	go func() {
		_, err := db.ExecContext(context.Background(), "block")
		blocked <- err
	}()
	<-started
	// An idle raw connection that never logs in must be closed too.
	raw, err := net.Dial("tcp", srv.Addr().String())
	require.NoError(t, err)
	defer raw.Close()
	pollUntil(t, "sessions to register", func() bool { return len(srv.Sessions()) >= 2 })
	sessions := srv.Sessions()

	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	require.Error(t, <-blocked, "the blocked query fails when the server closes")
	require.Empty(t, srv.Sessions())
	for _, s := range sessions {
		require.Contains(t, h.closedSessions(), s.ID(), "SessionClosed runs before Close returns")
	}
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = raw.Read(make([]byte, 1))
	// A close reads as EOF, or as a reset when the server closed with bytes
	// of ours still unread; both mean the connection is gone, a timeout would not.
	require.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "the idle connection was closed: %v", err)
	require.ErrorIs(t, srv.Listen("127.0.0.1:0"), ErrServerClosed)
	require.NoError(t, srv.Close(), "Close is idempotent")
	require.Zero(t, serverGoroutines(), "no server goroutine outlives Close")
	require.Error(t, pinned.PingContext(t.Context()), "the pinned connection is broken")
	require.NoError(t, pinned.Close())
	require.NoError(t, db.Close())
	require.NoError(t, raw.Close())
	if !assertEventually(func() bool { return runtime.NumGoroutine() <= baseline }) {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d > baseline %d\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
	}
}

func TestServer_Kill_clientSeesBrokenConnectionAndPoolRecovers(t *testing.T) {
	ts := startServer(t, Config{})
	db := ts.open(t, "")
	ctx := t.Context()
	c, err := db.Conn(ctx)
	require.NoError(t, err)
	var spid int
	require.NoError(t, c.QueryRowContext(ctx, "select @@SPID").Scan(&spid))
	_, ok := ts.srv.Session(uint16(spid))
	require.True(t, ok)

	require.NoError(t, ts.srv.Kill(uint16(spid)))
	_, ok = ts.srv.Session(uint16(spid))
	require.False(t, ok, "a killed session disappears at once")
	require.ErrorIs(t, ts.srv.Kill(uint16(spid)), ErrSessionNotFound)
	require.ErrorIs(t, ts.srv.Kill(9999), ErrSessionNotFound)

	err = c.QueryRowContext(ctx, "select @@SPID").Scan(new(int))
	require.Error(t, err, "the killed connection is broken")
	require.NoError(t, c.Close())
	pollUntil(t, "SessionClosed for the killed session", func() bool {
		return slices.Contains(ts.h.closedSessions(), uint16(spid))
	})

	var again int
	require.NoError(t, db.QueryRowContext(ctx, "select @@SPID").Scan(&again), "the pool opens a new connection")
	require.NotEqual(t, spid, again)
}

func TestServer_Kill_fromAnotherSessionCancelsRunningRequest(t *testing.T) {
	ts := startServer(t, Config{})
	running := make(chan uint16, 1)
	ts.h.handle("long", func(ctx context.Context, s *Session, _ *testReq, _ *ResponseWriter) error {
		running <- s.ID()
		<-ctx.Done()
		return ctx.Err()
	})
	ts.h.handle("KILL @p1", func(_ context.Context, s *Session, r *testReq, w *ResponseWriter) error {
		id := uint16(r.Exec.Params[0].Value.(int64))
		if id == s.ID() {
			return &Error{Number: 6104, State: 1, Class: 16, Message: "Cannot use KILL to kill your own process."}
		}
		if err := s.Server().Kill(id); err != nil {
			return &Error{Number: 6106, State: 1, Class: 16, Message: "Process ID is not an active process ID."}
		}
		return w.Done(0, CmdNone, 0)
	})
	db := ts.open(t, "")
	done := make(chan error, 1)
	go func() {
		_, err := db.ExecContext(context.Background(), "long")
		done <- err
	}()
	victim := <-running
	v, ok := ts.srv.Session(victim)
	require.True(t, ok)
	require.True(t, v.Running())
	require.False(t, v.LastRequestStart().IsZero())

	_, err := db.ExecContext(t.Context(), "KILL @p1", int64(victim))
	var se mssql.ServerError
	if errors.As(err, &se) {
		t.Fatalf("%v", se.Unwrap())
	}
	require.NoError(t, err)
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the killed request did not end")
	}
	_, err = db.ExecContext(t.Context(), "KILL @p1", int64(victim))
	require.EqualValues(t, 6106, mssqlError(t, err).Number)
}

func TestServer_DropConnections_faultInjection(t *testing.T) {
	ts := startServer(t, Config{})
	db := ts.open(t, "")
	ctx := t.Context()
	c1, err := db.Conn(ctx)
	require.NoError(t, err)
	c2, err := db.Conn(ctx)
	require.NoError(t, err)
	require.NoError(t, c1.PingContext(ctx))
	require.NoError(t, c2.PingContext(ctx))
	require.Len(t, ts.srv.Sessions(), 2)

	require.Equal(t, 2, ts.srv.DropConnections())
	require.Empty(t, ts.srv.Sessions())
	require.Error(t, c1.PingContext(ctx))
	require.Error(t, c2.PingContext(ctx))
	require.NoError(t, c1.Close())
	require.NoError(t, c2.Close())

	require.NoError(t, db.PingContext(ctx), "the server still listens")
	require.Len(t, ts.srv.Sessions(), 1)
}

// rawClient speaks TDS by hand, for what the driver never sends.
type rawClient struct {
	t  *testing.T
	nc net.Conn
}

func dialRaw(t *testing.T, addr net.Addr) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr.String())
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc}
}

// send writes payload as one message of 4096-byte packets.
func (c *rawClient) send(typ packetType, status byte, payload []byte) {
	c.t.Helper()
	_, err := c.nc.Write(encodePackets(typ, status, payload, 4096))
	require.NoError(c.t, err)
}

// encodePackets frames payload as client packets of at most size bytes.
func encodePackets(typ packetType, status byte, payload []byte, size int) []byte {
	var out []byte
	seq := byte(1)
	for {
		n := min(len(payload), size-headerSize)
		st := status &^ statusEOM
		if n == len(payload) {
			st |= statusEOM
		}
		h := []byte{byte(typ), st, 0, 0, 0, 0, seq, 0}
		binary.BigEndian.PutUint16(h[2:], uint16(headerSize+n))
		out = append(append(out, h...), payload[:n]...)
		payload = payload[n:]
		seq++
		if st&statusEOM != 0 {
			return out
		}
	}
}

// recv reads one server message.
func (c *rawClient) recv() []byte {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var data []byte
	for {
		var h [headerSize]byte
		_, err := io.ReadFull(c.nc, h[:])
		require.NoError(c.t, err)
		require.Equal(c.t, byte(packetReply), h[0])
		body := make([]byte, int(binary.BigEndian.Uint16(h[2:]))-headerSize)
		_, err = io.ReadFull(c.nc, body)
		require.NoError(c.t, err)
		data = append(data, body...)
		if h[1]&statusEOM != 0 {
			return data
		}
	}
}

// expectClosed waits for the server to close the connection.
func (c *rawClient) expectClosed() {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c.nc)
	if errors.Is(err, syscall.ECONNRESET) {
		return // closed with unread client data: the kernel resets the connection
	}
	require.NoError(c.t, err, "the server must close the connection (io.Copy returns nil at EOF)")
}

// login runs PRELOGIN and LOGIN7 and returns the login reply.
func (c *rawClient) login(user, password, database string) []byte {
	c.t.Helper()
	c.send(packetPrelogin, 0, testPrelogin())
	p, err := parsePrelogin(c.recv())
	require.NoError(c.t, err)
	require.Equal(c.t, []byte{encryptNotSupported}, p.options[preloginEncryption])
	c.send(packetLogin7, 0, buildLogin7(Login{TDSVersion: tdsVersion74, PacketSize: 4096, UserName: user, Password: password,
		Database: database, AppName: "raw", HostName: "rawhost", LibraryName: "raw"}))
	return c.recv()
}

func TestServer_Raw_malformedFramingClosesTheConnection(t *testing.T) {
	ts := startServer(t, Config{})
	for name, data := range map[string][]byte{
		"length shorter than header": {byte(packetPrelogin), 1, 0, 4, 0, 0, 1, 0},
		"unknown packet type":        {0x42, 1, 0, 8, 0, 0, 1, 0},
		"reply type from client":     {byte(packetReply), 1, 0, 8, 0, 0, 1, 0},
		"TLS client hello":           {0x16, 0x03, 0x01, 0x00, 0xA5, 0x01, 0x00, 0x00},
		"garbage prelogin payload":   encodePackets(packetPrelogin, 0, []byte{0, 0, 99, 0, 5}, 4096),
		"login7 too short":           encodePackets(packetLogin7, 0, make([]byte, 20), 4096),
	} {
		t.Run(name, func(t *testing.T) {
			c := dialRaw(t, ts.srv.Addr())
			_, err := c.nc.Write(data)
			require.NoError(t, err)
			c.expectClosed()
		})
	}
	db := ts.open(t, "")
	require.NoError(t, db.PingContext(t.Context()), "other clients are unaffected")
}

func TestServer_Raw_afterLogin(t *testing.T) {
	ts := startServer(t, Config{ReadTimeout: 200 * time.Millisecond, MaxMessageSize: 64 << 10})
	t.Run("login reply", func(t *testing.T) {
		c := dialRaw(t, ts.srv.Addr())
		reply := c.login("u", "p", "db2")
		r := newWireReader(reply)
		require.EqualValues(t, tokenEnvChange, r.u8())
		r.u16()
		require.EqualValues(t, envDatabase, r.u8())
		require.Equal(t, "db2", r.bVarChar())
		require.True(t, len(reply) > 13 && reply[len(reply)-13] == tokenDone, "the reply ends with DONE")
		ack := newWireReader(reply[indexToken(reply, tokenLoginAck)+3:])
		require.EqualValues(t, 1, ack.u8(), "interface SQL_TSQL")
		require.Equal(t, []byte{0x74, 0, 0, 4}, ack.bytes(4), "TDS 7.4, big-endian")
		require.Equal(t, "Microsoft SQL Server", ack.bVarChar())
		require.Equal(t, []byte{16, 0, 0x10, 0x27}, ack.bytes(4), "version 16.0.4135")
	})
	t.Run("attention while idle gets its own DONE(ATTN)", func(t *testing.T) {
		c := dialRaw(t, ts.srv.Addr())
		c.login("u", "p", "")
		c.send(packetAttention, 0, nil)
		require.Equal(t, appendDone(nil, tokenDone, uint16(DoneAttn), 0, 0), c.recv())
		c.send(packetSQLBatch, 0, append(allHeadersForTest(), appendUTF16(nil, "select 1;")...))
		reply := c.recv()
		require.Equal(t, byte(tokenColMetadata), reply[0])
	})
	t.Run("transaction manager request is refused", func(t *testing.T) {
		c := dialRaw(t, ts.srv.Addr())
		c.login("u", "p", "")
		c.send(packetTransMgr, 0, append(allHeadersForTest(), 5, 0, 0, 0))
		reply := c.recv()
		require.Equal(t, byte(tokenError), reply[0])
		require.Equal(t, uint32(NumberNotSupported), binary.LittleEndian.Uint32(reply[3:]))
	})
	t.Run("batch without ALL_HEADERS is an error response", func(t *testing.T) {
		c := dialRaw(t, ts.srv.Addr())
		c.login("u", "p", "")
		c.send(packetSQLBatch, 0, appendUTF16(nil, "select 1;"))
		reply := c.recv()
		require.Equal(t, byte(tokenError), reply[0])
		require.Equal(t, uint32(NumberProtocolError), binary.LittleEndian.Uint32(reply[3:]))
	})
	t.Run("partial message times out", func(t *testing.T) {
		c := dialRaw(t, ts.srv.Addr())
		c.login("u", "p", "")
		full := encodePackets(packetSQLBatch, 0, append(allHeadersForTest(), appendUTF16(nil, "select 1;")...), 4096)
		_, err := c.nc.Write(full[:12])
		require.NoError(t, err)
		start := time.Now()
		c.expectClosed()
		require.Less(t, time.Since(start), 4*time.Second)
	})
	t.Run("message larger than MaxMessageSize", func(t *testing.T) {
		c := dialRaw(t, ts.srv.Addr())
		c.login("u", "p", "")
		_, err := c.nc.Write(encodePackets(packetSQLBatch, 0, make([]byte, 100<<10), 4096))
		if err != nil && !errors.Is(err, net.ErrClosed) {
			t.Logf("write: %v", err) // the server may close before the whole message is sent
		}
		c.expectClosed()
	})
	t.Run("refused login closes", func(t *testing.T) {
		c := dialRaw(t, ts.srv.Addr())
		reply := c.login("u", "nope", "")
		require.Equal(t, byte(tokenError), reply[0])
		require.Equal(t, uint32(NumberLoginFailed), binary.LittleEndian.Uint32(reply[3:]))
		c.expectClosed()
	})
	t.Run("integrated security is refused", func(t *testing.T) {
		c := dialRaw(t, ts.srv.Addr())
		c.send(packetLogin7, 0, buildLogin7(Login{TDSVersion: tdsVersion74, OptionFlags2: optionFlags2Int}))
		reply := c.recv()
		require.Equal(t, uint32(NumberUntrustedDomain), binary.LittleEndian.Uint32(reply[3:]))
		c.expectClosed()
	})
}

func TestServer_Raw_loginTimeout(t *testing.T) {
	ts := startServer(t, Config{LoginTimeout: 200 * time.Millisecond})
	c := dialRaw(t, ts.srv.Addr())
	start := time.Now()
	c.expectClosed()
	require.Less(t, time.Since(start), 4*time.Second)
}

func indexToken(b []byte, tok byte) int {
	for i, c := range b {
		if c == tok {
			return i
		}
	}
	return -1
}

// allHeadersForTest is the ALL_HEADERS go-mssqldb sends: one transaction
// descriptor header.
func allHeadersForTest() []byte {
	b := binary.LittleEndian.AppendUint32(nil, 22)
	b = binary.LittleEndian.AppendUint32(b, 18)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint64(b, 0)
	return binary.LittleEndian.AppendUint32(b, 1)
}

// testPrelogin is a client PRELOGIN with VERSION, ENCRYPTION (off) and MARS.
func testPrelogin() []byte {
	return []byte{
		0, 0, 16, 0, 6, 1, 0, 22, 0, 1, 4, 0, 23, 0, 1, 0xFF,
		1, 2, 3, 4, 0, 0, 0, 0,
	}
}

// buildLogin7 encodes a LOGIN7 payload as a client does.
func buildLogin7(l Login) []byte {
	fixed := make([]byte, login7FixedSize)
	le := binary.LittleEndian
	le.PutUint32(fixed[4:], l.TDSVersion)
	le.PutUint32(fixed[8:], l.PacketSize)
	fixed[24], fixed[25], fixed[26], fixed[27] = l.OptionFlags1, l.OptionFlags2, l.TypeFlags, l.OptionFlags3
	var data []byte
	put := func(pos int, s string, mangle bool) {
		b := appendUTF16(nil, s)
		if mangle {
			b = manglePassword(b)
		}
		le.PutUint16(fixed[pos:], uint16(login7FixedSize+len(data)))
		le.PutUint16(fixed[pos+2:], uint16(len(b)/2))
		data = append(data, b...)
	}
	put(36, l.HostName, false)
	put(40, l.UserName, false)
	put(44, l.Password, true)
	put(48, l.AppName, false)
	put(52, l.ServerName, false)
	put(60, l.LibraryName, false)
	put(64, l.Language, false)
	put(68, l.Database, false)
	put(86, l.NewPassword, true)
	le.PutUint16(fixed[78:], uint16(login7FixedSize+len(data)))
	out := append(fixed, data...)
	le.PutUint32(out[0:], uint32(len(out)))
	return out
}
