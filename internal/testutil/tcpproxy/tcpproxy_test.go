package tcpproxy_test

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chatdr/chatdr/internal/testutil/tcpproxy"
)

// echo starts a line echo server and returns its address.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(l)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip writes a line on c and reads it back within d.
func roundTrip(c net.Conn, r *bufio.Reader, line string, d time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	l, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return l[:len(l)-1], nil
}

func TestProxy_Cut_refuse(t *testing.T) {
	p, err := tcpproxy.Start("127.0.0.1:0", echo(t))
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })

	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	got, err := roundTrip(c, r, "one", 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "one", got)

	require.NoError(t, p.Cut(tcpproxy.ModeRefuse))
	_, err = roundTrip(c, r, "two", 5*time.Second)
	require.Error(t, err, "an existing connection is closed")
	_, err = net.DialTimeout("tcp", p.Addr(), time.Second)
	require.Error(t, err, "a new connection is refused")

	require.NoError(t, p.Restore())
	c2, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c2.Close()
	got, err = roundTrip(c2, bufio.NewReader(c2), "three", 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "three", got)
}

func TestProxy_Cut_blackhole(t *testing.T) {
	p, err := tcpproxy.Start("127.0.0.1:0", echo(t))
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })

	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	r := bufio.NewReader(c)
	_, err = roundTrip(c, r, "one", 5*time.Second)
	require.NoError(t, err)

	require.NoError(t, p.Cut(tcpproxy.ModeBlackhole))
	// The existing connection hangs instead of failing.
	_, err = roundTrip(c, r, "two", 300*time.Millisecond)
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout(), "want a timeout, got %v", err)
	// A new connection is accepted but never answered.
	c2, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	require.NoError(t, err)
	defer c2.Close()
	r2 := bufio.NewReader(c2)
	_, err = roundTrip(c2, r2, "three", 300*time.Millisecond)
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout(), "want a timeout, got %v", err)

	// After Restore what was held is delivered, in order, on both.
	require.NoError(t, p.Restore())
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	l, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "two\n", l)
	_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
	l, err = r2.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "three\n", l)
	got, err := roundTrip(c, r, "four", 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "four", got)
}
