// Package tcpproxy is a TCP forwarder for tests that cut and restore the
// network between two processes on loopback, as a partition would.
//
// A Proxy listens on one address and forwards every connection to a target.
// Cut simulates a network failure in one of two ways: ModeRefuse closes
// every connection and refuses new ones (a host that is down, a firewall
// that rejects), ModeBlackhole keeps every connection open but stops
// forwarding bytes and accepts new connections without ever answering (a
// cable pulled, a firewall that drops: callers hang until their deadline).
// Restore forwards again; connections cut in blackhole mode stay dead (their
// bytes were lost), new ones work.
package tcpproxy

import (
	"errors"
	"io"
	"net"
	"sync"
)

// Mode is how Cut breaks the network.
type Mode int

const (
	// ModeRefuse closes every connection and refuses new ones.
	ModeRefuse Mode = iota + 1
	// ModeBlackhole stops forwarding without closing anything: existing
	// and new connections stay open and silent until Restore.
	ModeBlackhole
)

// Proxy forwards TCP connections from its listen address to a target. It is
// safe for concurrent use.
type Proxy struct {
	target string

	mu   sync.Mutex
	addr string
	ln   net.Listener
	cut  Mode // 0 when forwarding
	// resumed is closed by Restore; forwarding waits on it during a
	// blackhole cut.
	resumed chan struct{}
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// Start listens on listen (host:port; port 0 picks one) and forwards every
// connection to target.
func Start(listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept(ln)
	return p, nil
}

// Addr returns the address the proxy listens on.
func (p *Proxy) Addr() string { return p.addr }

// Cut breaks the network in mode m until Restore.
func (p *Proxy) Cut(m Mode) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return net.ErrClosed
	}
	switch {
	case p.cut == 0:
		p.resumed = make(chan struct{})
	case p.cut != m:
		// Wake what waits on the old cut so that it sees the new one.
		close(p.resumed)
		p.resumed = make(chan struct{})
	}
	p.cut = m
	if m == ModeRefuse {
		// Close the listener too: a connection attempt is refused by the
		// kernel instead of sitting in the accept queue.
		if p.ln != nil {
			p.ln.Close()
			p.ln = nil
		}
		for c := range p.conns {
			c.Close()
			delete(p.conns, c)
		}
	}
	return nil
}

// Restore forwards new connections again (and listens again after a cut in
// refuse mode, on the same address).
func (p *Proxy) Restore() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return net.ErrClosed
	}
	if p.cut != 0 {
		close(p.resumed)
	}
	p.cut = 0
	if p.ln == nil {
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			return err
		}
		p.ln = ln
		p.wg.Add(1)
		go p.accept(ln)
	}
	return nil
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	if p.cut != 0 {
		close(p.resumed)
		p.cut = 0
	}
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

func (p *Proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.forward(c)
	}
}

// forward copies bytes both ways between c and a new connection to the
// target until either side closes or the proxy cuts the network.
func (p *Proxy) forward(c net.Conn) {
	defer p.wg.Done()
	if !p.wait() {
		p.drop(c)
		return
	}
	t, err := net.Dial("tcp", p.target)
	if err != nil {
		p.drop(c)
		return
	}
	p.mu.Lock()
	if p.closed || p.cut == ModeRefuse {
		p.mu.Unlock()
		t.Close()
		p.drop(c)
		return
	}
	p.conns[t] = struct{}{}
	p.mu.Unlock()
	var cw sync.WaitGroup
	cw.Add(2)
	go func() { defer cw.Done(); p.copy(t, c) }()
	go func() { defer cw.Done(); p.copy(c, t) }()
	cw.Wait()
	p.drop(c)
	p.drop(t)
}

// wait blocks while the network is cut in blackhole mode; it reports
// whether forwarding may go on (false after a refuse cut or Close).
func (p *Proxy) wait() bool {
	for {
		p.mu.Lock()
		cut, resumed, closed := p.cut, p.resumed, p.closed
		p.mu.Unlock()
		switch {
		case closed || cut == ModeRefuse:
			return false
		case cut == ModeBlackhole:
			<-resumed
		default:
			return true
		}
	}
}

// copy forwards src to dst; during a blackhole cut it holds what it read
// (and, its buffer full, stops reading: the sender's window fills as with
// lost packets) until Restore.
func (p *Proxy) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait() {
				src.Close()
				dst.Close()
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				dst.Close()
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			} else {
				dst.Close()
			}
			return
		}
	}
}

func (p *Proxy) drop(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}
