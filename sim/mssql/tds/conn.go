package tds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"time"
)

// conn serves one client connection. Two goroutines work on it: serve
// (login, then requests and all writes to the socket) and readLoop (reads
// every client message, so that an attention is seen while a handler runs).
type conn struct {
	srv    *Server
	nc     net.Conn
	spid   uint16
	ctx    context.Context // cancelled when the connection closes
	cancel context.CancelFunc
	pw     *packetWriter
	// sess is set once by addSession (under srv.mu) before any request is
	// served; the serve goroutine reads it freely afterwards.
	sess       *Session
	allHeaders bool // requests start with ALL_HEADERS (TDS 7.2+)

	closeOnce sync.Once

	mu     sync.Mutex
	active *flight // request being served, or nil
}

// flight is the cancellation state of one request.
type flight struct {
	ctx    context.Context
	cancel context.CancelFunc
	attn   bool // an attention arrived before the response ended
	done   bool // the response's final packet is being or has been written
}

// request is a client message handed from readLoop to serve. A nil flight
// marks an attention that arrived when no response was in progress.
type request struct {
	msg    message
	flight *flight
}

func newConn(s *Server, nc net.Conn, spid uint16) *conn {
	ctx, cancel := context.WithCancel(s.ctx)
	c := &conn{srv: s, nc: nc, spid: spid, ctx: ctx, cancel: cancel}
	c.pw = newPacketWriter(nc, spid, DefaultPacketSize)
	c.pw.before = func() { _ = nc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout)) }
	return c
}

// close ends the connection: cancels every context derived from it and
// closes the socket, which unblocks both goroutines.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.cancel()
		_ = c.nc.Close()
	})
}

// debug logs a connection event with the session id and client address.
func (c *conn) debug(msg string, args ...any) {
	c.srv.cfg.Logger.Debug(msg, append([]any{"spid", c.spid, "remote", c.nc.RemoteAddr()}, args...)...)
}

func (c *conn) serve() {
	defer c.srv.wg.Done()
	defer c.srv.removeConn(c)
	defer c.close()
	if err := c.handshake(); err != nil {
		if c.ctx.Err() == nil {
			c.debug("tds: login failed", "err", err)
		}
		return
	}
	reqs := make(chan request)
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		c.readLoop(reqs, stop)
	}()
	defer func() {
		close(stop)
		c.close()
		<-readerDone
		c.srv.removeConn(c)
		if closer, ok := c.srv.cfg.Handler.(SessionCloser); ok {
			closer.SessionClosed(c.sess)
		}
	}()
	for req := range reqs {
		if !c.handle(req) {
			return
		}
	}
}

// handshake runs PRELOGIN and LOGIN7 under Config.LoginTimeout.
func (c *conn) handshake() error {
	cfg := &c.srv.cfg
	deadline := time.Now().Add(cfg.LoginTimeout)
	_ = c.nc.SetDeadline(deadline)
	mr := &messageReader{r: c.nc, max: maxLoginMessage}
	msg, err := mr.read()
	if err != nil {
		return err
	}
	if msg.typ == packetPrelogin {
		if _, err := parsePrelogin(msg.data); err != nil {
			return err
		}
		if err := c.pw.write(preloginReply(cfg.Version), true); err != nil {
			return err
		}
		if msg, err = mr.read(); err != nil {
			return err
		}
	}
	if msg.typ != packetLogin7 {
		return fmt.Errorf("%w: expected LOGIN7, got %v", ErrProtocol, msg.typ)
	}
	login, err := parseLogin7(msg.data)
	if err != nil {
		return err
	}
	login.RemoteAddr = c.nc.RemoteAddr()
	size := negotiatePacketSize(login.PacketSize)
	c.pw.resize(size)
	if login.IntegratedSecurity {
		e := &Error{Number: NumberUntrustedDomain, State: 1, Class: 14,
			Message: "Login failed. The login is from an untrusted domain and cannot be used with Integrated authentication."}
		_ = c.pw.write(loginFailureReply(cfg, []*Error{e}), true)
		return fmt.Errorf("tds: integrated authentication is not supported (%v)", login)
	}
	ctx, cancel := context.WithDeadline(c.ctx, deadline)
	database, aerr := cfg.Handler.Authenticate(ctx, login)
	cancel()
	if aerr != nil {
		var e *Error
		errs := []*Error{LoginFailed(login.UserName)}
		if errors.As(aerr, &e) {
			errs = flattenErrors(aerr)
		}
		_ = c.pw.write(loginFailureReply(cfg, errs), true)
		return fmt.Errorf("tds: %v refused: %w", login, aerr)
	}
	tdsVersion := negotiateTDSVersion(login.TDSVersion)
	c.allHeaders = tdsVersion >= tdsVersion72
	if !c.srv.addSession(c, newSession(c, login, database, size)) {
		return fmt.Errorf("tds: connection closed during login")
	}
	if err := c.pw.write(loginReply(cfg, database, tdsVersion, size, login.PacketSize), true); err != nil {
		return err
	}
	return c.nc.SetDeadline(time.Time{})
}

// readLoop reads client messages until the connection fails or stop is
// closed. Attentions for the running request are handled here: they cancel
// its context, and serve ends the response with DONE(ATTN). Attentions that
// arrive after the response ended are passed on with a nil flight, so that
// serve answers them with a separate DONE(ATTN).
func (c *conn) readLoop(out chan<- request, stop <-chan struct{}) {
	defer close(out)
	cfg := &c.srv.cfg
	mr := &messageReader{r: c.nc, max: cfg.MaxMessageSize, started: func() {
		_ = c.nc.SetReadDeadline(time.Now().Add(cfg.ReadTimeout))
	}}
	for {
		_ = c.nc.SetReadDeadline(time.Time{})
		msg, err := mr.read()
		if err != nil {
			if c.ctx.Err() == nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.debug("tds: closing connection after read error", "err", err)
			}
			c.close()
			return
		}
		if msg.typ == packetAttention {
			c.srv.attentions.Add(1)
			c.mu.Lock()
			f := c.active
			inFlight := f != nil && !f.done
			if inFlight {
				f.attn = true
				f.cancel()
			}
			c.mu.Unlock()
			if inFlight {
				continue
			}
			select {
			case out <- request{msg: msg}:
			case <-stop:
				return
			}
			continue
		}
		if msg.status&statusIgnore != 0 {
			continue // the client abandoned this message
		}
		ctx, cancel := context.WithCancel(c.ctx)
		f := &flight{ctx: ctx, cancel: cancel}
		c.mu.Lock()
		c.active = f
		c.mu.Unlock()
		select {
		case out <- request{msg: msg, flight: f}:
		case <-stop:
			cancel()
			return
		}
	}
}

// handle serves one request. It reports false when the connection must
// close.
func (c *conn) handle(req request) bool {
	f := req.flight
	if f == nil {
		c.srv.attnAfterResponse.Add(1)
		return c.pw.write(appendDone(nil, tokenDone, uint16(DoneAttn), 0, 0), true) == nil
	}
	defer f.cancel()
	w := newResponseWriter(f.ctx, c, req.msg.typ == packetRPC)
	herr, fatal := c.dispatch(f.ctx, req.msg, w)
	if c.ctx.Err() != nil {
		return false // killed, dropped or server closing: nothing more to send
	}
	c.mu.Lock()
	attn := f.attn
	f.done = true
	if c.active == f {
		c.active = nil
	}
	c.mu.Unlock()
	if attn {
		c.srv.attnInFlight.Add(1)
	}
	if err := w.finish(herr, attn, fatal); err != nil {
		c.debug("tds: closing connection after write error", "err", err)
		return false
	}
	return !fatal
}

// dispatch decodes a request and runs the handler. A handler panic is
// turned into an error with fatal set: the response then carries
// DoneSrvError and the connection is closed.
func (c *conn) dispatch(ctx context.Context, msg message, w *ResponseWriter) (err error, fatal bool) {
	s := c.sess
	s.beginRequest()
	defer s.endRequest()
	defer func() {
		if r := recover(); r != nil {
			c.srv.cfg.Logger.Error("tds: handler panicked", "spid", c.spid, "panic", r, "stack", string(debug.Stack()))
			err = &Error{Number: NumberUserError, State: 1, Class: 20,
				Message: fmt.Sprintf("internal error: the request handler panicked: %v", r)}
			fatal = true
		}
	}()
	h := c.srv.cfg.Handler
	switch msg.typ {
	case packetSQLBatch:
		b, perr := parseBatch(msg, c.allHeaders)
		if perr != nil {
			c.debug("tds: malformed SQL batch", "err", perr)
			return protocolError(perr), false
		}
		return h.Batch(ctx, s, b, w), false
	case packetRPC:
		call, perr := parseRPC(msg, c.allHeaders)
		if perr != nil {
			c.debug("tds: malformed RPC", "err", perr)
			return protocolError(perr), false
		}
		return h.RPC(ctx, s, call, w), false
	case packetTransMgr:
		return notSupported("The transaction manager request (database/sql BeginTx, Commit, Rollback)"), false
	}
	return notSupported(fmt.Sprintf("A %v message after login", msg.typ)), false
}
