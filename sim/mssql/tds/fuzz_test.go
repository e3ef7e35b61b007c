package tds

import (
	"bytes"
	"context"
	"database/sql"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"
)

var updateSeeds = flag.Bool("update-seeds", false, "re-capture testdata/client_stream.bin from the real driver")

const clientStreamFile = "testdata/client_stream.bin"

// captureClientStream runs a driver session covering login, batches, typed
// sp_executesql parameters and a procedure call with output parameters, and
// returns everything the client sent on its connection.
func captureClientStream(t *testing.T) []byte {
	ts := startServer(t, Config{})
	ts.h.handle("select echo", echoParams)
	ts.h.handle("dbo.sp_x", func(_ context.Context, _ *Session, r *testReq, w *ResponseWriter) error {
		for _, p := range r.Call.Params {
			if p.Output {
				if err := w.ReturnValue(ReturnValue{Ordinal: p.Ordinal, Name: p.Name, Type: TypeBigInt(), Value: 5}); err != nil {
					return err
				}
			}
		}
		return w.ReturnStatus(0)
	})
	db := ts.open(t, "app name=seed&workstation id=seedhost")
	db.SetMaxOpenConns(1)
	ctx := t.Context()
	require.NoError(t, db.PingContext(ctx))
	var out int64
	var vals [10]any
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	guid := mssql.UniqueIdentifier{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	require.NoError(t, db.QueryRowContext(ctx, "select echo", int64(42), true, 3.25, "héllo", "",
		bytes.Repeat([]byte("z"), 9000), time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), nil, guid,
		sql.Named("named", mssql.VarChar("v"))).Scan(ptrs...))
	_, err := db.ExecContext(ctx, "dbo.sp_x", sql.Named("a", 1), sql.Named("out", sql.Out{Dest: &out}))
	require.NoError(t, err)
	require.EqualValues(t, 5, out)
	require.NoError(t, db.Close())
	streams := ts.rec.clientStreams()
	require.Len(t, streams, 1)
	return streams[0]
}

// clientMessages splits a captured client stream into messages.
func clientMessages(t testing.TB, stream []byte) []message {
	mr := &messageReader{r: bytes.NewReader(stream), max: DefaultMaxMessageSize}
	var msgs []message
	for {
		m, err := mr.read()
		if err != nil {
			break
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func loadClientStream(t testing.TB) []byte {
	b, err := os.ReadFile(clientStreamFile)
	require.NoError(t, err, "run go test -run TestCapturedStream -update-seeds to create it")
	return b
}

// TestCapturedStream_decodes checks the decoders against bytes the real
// driver sent (the fuzz seeds). Regenerate with -update-seeds.
func TestCapturedStream_decodes(t *testing.T) {
	if *updateSeeds {
		require.NoError(t, os.MkdirAll(filepath.Dir(clientStreamFile), 0o755))
		require.NoError(t, os.WriteFile(clientStreamFile, captureClientStream(t), 0o644))
	}
	msgs := clientMessages(t, loadClientStream(t))
	require.Len(t, msgs, 5)
	require.Equal(t, []packetType{packetPrelogin, packetLogin7, packetSQLBatch, packetRPC, packetRPC},
		[]packetType{msgs[0].typ, msgs[1].typ, msgs[2].typ, msgs[3].typ, msgs[4].typ})

	p, err := parsePrelogin(msgs[0].data)
	require.NoError(t, err)
	require.Contains(t, p.options, byte(preloginEncryption))

	l, err := parseLogin7(msgs[1].data)
	require.NoError(t, err)
	require.Equal(t, "u", l.UserName)
	require.Equal(t, "p", l.Password)
	require.Equal(t, "db1", l.Database)
	require.Equal(t, "seed", l.AppName)
	require.Equal(t, "seedhost", l.HostName)
	require.Equal(t, "go-mssqldb", l.LibraryName)
	require.EqualValues(t, tdsVersion74, l.TDSVersion)
	require.EqualValues(t, 4096, l.PacketSize)
	require.False(t, l.IntegratedSecurity)

	b, err := parseBatch(msgs[2], true)
	require.NoError(t, err)
	require.Equal(t, "select 1;", b.SQL)
	require.True(t, b.ResetConnection)

	c, err := parseRPC(msgs[3], true)
	require.NoError(t, err)
	require.EqualValues(t, 10, c.ProcID)
	e, err := c.ExecuteSQL()
	require.NoError(t, err)
	require.Equal(t, "select echo", e.Statement)
	require.Len(t, e.Params, 10)
	require.Equal(t, int64(42), e.Params[0].Value)
	require.Equal(t, true, e.Params[1].Value)
	require.Equal(t, 3.25, e.Params[2].Value)
	require.Equal(t, "héllo", e.Params[3].Value)
	require.Equal(t, "", e.Params[4].Value)
	require.Equal(t, bytes.Repeat([]byte("z"), 9000), e.Params[5].Value)
	require.True(t, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC).Equal(e.Params[6].Value.(time.Time)))
	require.Nil(t, e.Params[7].Value)
	require.Equal(t, GUID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, e.Params[8].Value,
		"mssql.UniqueIdentifier is canonical; the driver sends it in mixed order and the server decodes it back")
	require.Equal(t, "01020304-0506-0708-090A-0B0C0D0E0F10", e.Params[8].Value.(GUID).String())
	require.Equal(t, "@named", e.Params[9].Name)
	require.Equal(t, "v", e.Params[9].Value)

	c, err = parseRPC(msgs[4], true)
	require.NoError(t, err)
	require.Equal(t, "dbo.sp_x", c.Name)
	require.Len(t, c.Params, 2)
	require.True(t, c.Params[1].Output)
}

func FuzzReadMessage(f *testing.F) {
	stream := loadClientStream(f)
	f.Add(stream)
	for _, m := range clientMessages(f, stream) {
		f.Add(encodePackets(m.typ, m.status, m.data, 512))
	}
	f.Add([]byte{byte(packetSQLBatch), 0, 0xFF, 0xFF, 0, 0, 1, 0})
	f.Add([]byte{byte(packetAttention), 1, 0, 8, 0, 0, 1, 0})
	const max = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		mr := &messageReader{r: bytes.NewReader(data), max: max}
		for range 1000 {
			m, err := mr.read()
			if err != nil {
				return
			}
			if len(m.data) > max {
				t.Fatalf("message of %d bytes exceeds the %d cap", len(m.data), max)
			}
			// Every decoder must cope with whatever framed payload arrives.
			switch m.typ {
			case packetPrelogin:
				_, _ = parsePrelogin(m.data)
			case packetLogin7:
				_, _ = parseLogin7(m.data)
			case packetSQLBatch:
				_, _ = parseBatch(m, true)
			case packetRPC:
				if c, err := parseRPC(m, true); err == nil {
					_, _ = c.ExecuteSQL()
				}
			}
		}
	})
}

func FuzzParseRPC(f *testing.F) {
	for _, m := range clientMessages(f, loadClientStream(f)) {
		if m.typ == packetRPC {
			f.Add(m.data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseRPC(message{typ: packetRPC, status: statusEOM, data: data}, true)
		if err != nil {
			return
		}
		for i, p := range c.Params {
			if p.Ordinal != i {
				t.Fatalf("param %d has ordinal %d", i, p.Ordinal)
			}
			// Encoding a decoded value never panics, and for these types
			// (whose every wire value is in range) it succeeds.
			wt, err := writeType(p.Type)
			if err != nil || p.Value == nil {
				continue
			}
			_, err = appendValue(nil, wt, p.Value)
			switch wt.ID {
			case TypeIDIntN, TypeIDBitN, TypeIDFltN, TypeIDGUID, TypeIDNVarChar, TypeIDBigVarBinary, TypeIDMoneyN:
				if err != nil {
					t.Fatalf("param %d (%s): decoded %#v does not encode: %v", i, p.Type.SQLType(), p.Value, err)
				}
			}
		}
		_, _ = c.ExecuteSQL()
	})
}

func FuzzParseLogin7(f *testing.F) {
	for _, m := range clientMessages(f, loadClientStream(f)) {
		if m.typ == packetLogin7 {
			f.Add(m.data)
		}
	}
	f.Add(buildLogin7(Login{TDSVersion: tdsVersion74, UserName: "sa", Password: "Pässw0rd", Database: "master", OptionFlags3: optionFlags3Ext}))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := parseLogin7(data)
		if err != nil {
			return
		}
		if negotiatePacketSize(l.PacketSize) < minPacketSize || negotiatePacketSize(l.PacketSize) > maxPacketSize {
			t.Fatalf("packet size %d negotiated out of range", l.PacketSize)
		}
	})
}

func FuzzParsePrelogin(f *testing.F) {
	for _, m := range clientMessages(f, loadClientStream(f)) {
		if m.typ == packetPrelogin {
			f.Add(m.data)
		}
	}
	f.Add(testPrelogin())
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parsePrelogin(data)
	})
}

// pipeListener hands in-memory connections to a Server.
type pipeListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.UnixAddr{Name: "pipe", Net: "pipe"} }

// dial returns the client end of a new in-memory connection.
func (l *pipeListener) dial() net.Conn {
	client, server := net.Pipe()
	l.ch <- server
	return client
}

// FuzzServeConn feeds arbitrary client bytes to a whole server connection
// (PRELOGIN, LOGIN7, requests, attentions): the server must neither panic
// nor keep the connection once the client is gone.
func FuzzServeConn(f *testing.F) {
	stream := loadClientStream(f)
	f.Add(stream)
	f.Add(append(bytes.Clone(stream), encodePackets(packetAttention, 0, nil, 4096)...))
	msgs := clientMessages(f, stream)
	var login []byte
	for _, m := range msgs[:2] {
		login = append(login, encodePackets(m.typ, m.status, m.data, 4096)...)
	}
	f.Add(append(bytes.Clone(login), encodePackets(packetTransMgr, 0, append(allHeadersForTest(), 5, 0, 0, 0), 4096)...))

	h := newTestHandler()
	h.handle("select echo", echoParams)
	srv, err := NewServer(Config{Handler: h, LoginTimeout: time.Second, ReadTimeout: 100 * time.Millisecond, WriteTimeout: time.Second})
	require.NoError(f, err)
	l := newPipeListener()
	go func() { _ = srv.Serve(l) }()
	f.Cleanup(func() { srv.Close() })

	f.Fuzz(func(t *testing.T, data []byte) {
		c := l.dial()
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			_, _ = io.Copy(io.Discard, c)
		}()
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = c.Write(data)
		c.Close()
		<-drained
		deadline := time.Now().Add(5 * time.Second)
		for {
			srv.mu.Lock()
			n := len(srv.conns)
			srv.mu.Unlock()
			if n == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d connections still open after the client left", n)
			}
			runtime.Gosched()
		}
	})
}
