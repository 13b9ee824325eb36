package proxyrelay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/testkit"
)

// These tests run on loopback in the test's own namespace (no root);
// namespaces_test.go runs the relay across namespaces.

// bound guards reads against hangs only; it asserts no timing.
const bound = 30 * time.Second

// freePort returns a loopback address with a port that was free a moment ago.
func freePort(t testing.TB) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// seen is what a backend saw of one connection.
type seen struct {
	src, dst   netip.AddrPort
	linkID     uint32
	hasLinkID  bool
	peer       netip.AddrPort // the relay's side of the upstream connection
	headerless []byte         // with proxy false: the first bytes read
}

// backend listens on loopback; each connection is parsed (header or not),
// reported on seen, and answered by answer with the rest of the stream.
func backend(t testing.TB, proxy bool, answer func(r *bufio.Reader, c net.Conn)) (netip.AddrPort, chan seen) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan seen, 1024)
	testkit.Serve(t, ln, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		s := seen{peer: c.RemoteAddr().(*net.TCPAddr).AddrPort()}
		if proxy {
			var err error
			if s.src, s.dst, s.linkID, s.hasLinkID, err = parseHeader(r); err != nil {
				t.Error(err)
				return
			}
		} else {
			b, _ := r.Peek(len(signature))
			s.headerless = append([]byte(nil), b...)
		}
		ch <- s
		answer(r, c)
	})
	return ln.Addr().(*net.TCPAddr).AddrPort(), ch
}

// echo answers with everything it reads, then closes its write side.
func echo(r *bufio.Reader, c net.Conn) {
	io.Copy(c, r)
	c.(*net.TCPConn).CloseWrite()
}

func newRelay(t testing.TB, opts Options) *Relay {
	t.Helper()
	r := New(context.Background(), nil, nil, opts)
	t.Cleanup(func() { r.Close() })
	return r
}

func dial(t testing.TB, addr netip.AddrPort) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatalf("dial relay %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(bound))
	return c.(*net.TCPConn)
}

func recv(t testing.TB, ch chan seen) seen {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(bound):
		t.Fatal("backend saw no connection")
		return seen{}
	}
}

// roundTrip sends msg, half-closes, and returns all that comes back.
func roundTrip(t testing.TB, c *net.TCPConn, msg []byte) []byte {
	t.Helper()
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("half-close: %v", err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return got
}

func TestRelayHeaderAndEcho(t *testing.T) {
	up, ch := backend(t, true, echo)
	r := newRelay(t, Options{})
	listen := freePort(t)
	if err := r.Set([]Route{{Name: "pe1", Listen: listen, Upstream: up, ProxyProtocol: true, LinkID: 0xA1B2C3D4}}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, listen)
	msg := []byte("SELECT 1;")
	if got := roundTrip(t, c, msg); !bytes.Equal(got, msg) {
		t.Errorf("echo %q: want %q (the header must not reach the consumer)", got, msg)
	}
	s := recv(t, ch)
	if want := c.LocalAddr().(*net.TCPAddr).AddrPort(); s.src != want {
		t.Errorf("header source %s: want the consumer's %s", s.src, want)
	}
	if s.dst != listen {
		t.Errorf("header destination %s: want the address the consumer dialled, %s", s.dst, listen)
	}
	if !s.hasLinkID || s.linkID != 0xA1B2C3D4 {
		t.Errorf("LinkID %#x (present %v): want 0xa1b2c3d4", s.linkID, s.hasLinkID)
	}
	testkit.WaitFor(t, bound, "counters after the session", func() error {
		got := r.Counters()["pe1"]
		want := Counters{Accepted: 1, BytesUp: uint64(len(msg)), BytesDown: uint64(len(msg))}
		if got != want {
			return fmt.Errorf("counters %+v, want %+v", got, want)
		}
		return nil
	})
}

func TestRelayWithoutProxyProtocolSendsNoHeader(t *testing.T) {
	up, ch := backend(t, false, echo)
	r := newRelay(t, Options{})
	listen := freePort(t)
	if err := r.Set([]Route{{Name: "plain", Listen: listen, Upstream: up, LinkID: 9}}); err != nil {
		t.Fatal(err)
	}
	msg := []byte("exactly these bytes first")
	if got := roundTrip(t, dial(t, listen), msg); !bytes.Equal(got, msg) {
		t.Errorf("echo %q: want %q", got, msg)
	}
	if s := recv(t, ch); !bytes.Equal(s.headerless, msg[:len(signature)]) {
		t.Errorf("upstream's first bytes %q: want the consumer's %q", s.headerless, msg[:len(signature)])
	}
}

// TestRelayHalfClose: the consumer ends its side first and still gets the
// whole answer, which the backend writes only after it has seen EOF; then
// the backend ends its side and the consumer sees EOF.
func TestRelayHalfClose(t *testing.T) {
	up, _ := backend(t, true, func(r *bufio.Reader, c net.Conn) {
		b, err := io.ReadAll(r)
		if err != nil {
			return
		}
		fmt.Fprintf(c, "got %d bytes after EOF", len(b))
		c.(*net.TCPConn).CloseWrite()
	})
	r := newRelay(t, Options{})
	listen := freePort(t)
	if err := r.Set([]Route{{Name: "hc", Listen: listen, Upstream: up, ProxyProtocol: true}}); err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("x"), 3*copyChunk+17) // several splice chunks
	if got, want := string(roundTrip(t, dial(t, listen), msg)), fmt.Sprintf("got %d bytes after EOF", len(msg)); got != want {
		t.Errorf("answer %q: want %q", got, want)
	}
}

// TestRelayRevocation: removing a route resets its live sessions on both
// sides and closes its listener; a route left in place keeps its sessions.
func TestRelayRevocation(t *testing.T) {
	upDone := make(chan error, 16)
	up, ch := backend(t, true, func(r *bufio.Reader, c net.Conn) {
		_, err := io.Copy(c, r)
		upDone <- err
	})
	r := newRelay(t, Options{})
	keep, gone := freePort(t), freePort(t)
	routes := []Route{
		{Name: "keep", Listen: keep, Upstream: up, ProxyProtocol: true, LinkID: 1},
		{Name: "gone", Listen: gone, Upstream: up, ProxyProtocol: true, LinkID: 2},
	}
	if err := r.Set(routes); err != nil {
		t.Fatal(err)
	}
	kc, gc := dial(t, keep), dial(t, gone)
	for _, c := range []*net.TCPConn{kc, gc} {
		ping(t, c)
		recv(t, ch)
	}
	if err := r.Set(routes[:1]); err != nil {
		t.Fatal(err)
	}
	// The consumer's side: the read ends with a reset or EOF, not data.
	if n, err := gc.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("revoked session read %d bytes, err %v: want it closed", n, err)
	}
	// The backend's side: its copy ends.
	select {
	case <-upDone:
	case <-time.After(bound):
		t.Error("backend's side of the revoked session is still open")
	}
	if c, err := net.Dial("tcp", gone.String()); err == nil {
		c.Close()
		t.Error("revoked route still accepts connections")
	}
	ping(t, kc)
	if _, ok := r.Counters()["gone"]; ok {
		t.Error("revoked route still has counters")
	}
	if got := r.Counters()["keep"].Active; got != 1 {
		t.Errorf("kept route has %d active sessions, want 1", got)
	}
}

// wantClosed connects to addr and wants the relay to close the connection
// without data: the reset may come before the dial returns, or on the first
// read.
func wantClosed(t testing.TB, addr netip.AddrPort, what string) {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(bound))
	if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("%s: read %d bytes, err %v: want it closed", what, n, err)
	}
}

// ping sends a line through c and waits for its echo.
func ping(t testing.TB, c *net.TCPConn) {
	t.Helper()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatalf("ping: %v", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("ping echo %q, err %v", line, err)
	}
}

// TestRelaySetIsIdempotent: the same routes again keep sessions and
// counters; a changed LinkID restarts the route, and new sessions carry it.
func TestRelaySetIsIdempotent(t *testing.T) {
	up, ch := backend(t, true, echo)
	r := newRelay(t, Options{})
	listen := freePort(t)
	rt := Route{Name: "pe", Listen: listen, Upstream: up, ProxyProtocol: true, LinkID: 10}
	if err := r.Set([]Route{rt}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, listen)
	ping(t, c)
	recv(t, ch)
	if err := r.Set([]Route{rt}); err != nil {
		t.Fatal(err)
	}
	ping(t, c)
	if got := r.Counters()["pe"]; got.Accepted != 1 || got.Active != 1 {
		t.Errorf("counters after the same Set %+v: want the one session, accepted and active", got)
	}
	rt.LinkID = 11
	if err := r.Set([]Route{rt}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("session of the changed route still open")
	}
	roundTrip(t, dial(t, listen), []byte("x"))
	if s := recv(t, ch); s.linkID != 11 {
		t.Errorf("LinkID after the change %d, want 11", s.linkID)
	}
}

func TestRelaySetRefusesBadRoutes(t *testing.T) {
	r := newRelay(t, Options{})
	good := Route{Name: "ok", Listen: freePort(t), Upstream: netip.MustParseAddrPort("127.0.0.1:9")}
	if err := r.Set([]Route{good}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		routes []Route
		want   string
	}{
		{"no name", []Route{{Listen: good.Listen, Upstream: good.Upstream}}, "name is empty"},
		{"twice", []Route{good, good}, `name "ok" is used twice`},
		{"listen port 0", []Route{{Name: "a", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Upstream: good.Upstream}}, "listen address"},
		{"no upstream", []Route{{Name: "a", Listen: good.Listen}}, "upstream"},
		{"source family", []Route{{Name: "a", Listen: good.Listen, Upstream: good.Upstream, Source: netip.MustParseAddr("fd00::1")}}, "one address family"},
		{"namespace without fabric", []Route{{Name: "a", Listen: good.Listen, Upstream: good.Upstream, DialNamespace: "x"}}, "no fabric"},
	} {
		err := r.Set(tc.routes)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
	if got := r.Routes(); len(got) != 1 || got[0] != good {
		t.Errorf("routes after refused Sets %+v: want only %+v", got, good)
	}
	// A listener that cannot be opened fails its route only, and says so.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad := Route{Name: "busy", Listen: busy.Addr().(*net.TCPAddr).AddrPort(), Upstream: good.Upstream}
	if err := r.Set([]Route{good, bad}); err == nil || !strings.Contains(err.Error(), `route "busy": listen on`) {
		t.Errorf("busy address: error %v, want the route's listen error", err)
	}
	if got := r.Routes(); len(got) != 1 || got[0] != good {
		t.Errorf("routes after a failed listen %+v: want only %+v", got, good)
	}
}

// TestRelayUpstreamDown: a consumer whose upstream refuses is closed, and
// counted as failed.
func TestRelayUpstreamDown(t *testing.T) {
	r := newRelay(t, Options{})
	listen := freePort(t)
	if err := r.Set([]Route{{Name: "down", Listen: listen, Upstream: freePort(t), ProxyProtocol: true}}); err != nil {
		t.Fatal(err)
	}
	wantClosed(t, listen, "consumer of an unreachable upstream")
	testkit.WaitFor(t, bound, "failed counter", func() error {
		if got := r.Counters()["down"]; got.Failed != 1 || got.Active != 0 {
			return fmt.Errorf("counters %+v: want 1 failed, 0 active", got)
		}
		return nil
	})
}

// TestRelayManyConcurrent: many sessions at once each get their own bytes
// back, each header names its own consumer, and the counters add up.
func TestRelayManyConcurrent(t *testing.T) {
	const sessions, size = 200, 64 << 10
	up, ch := backend(t, true, echo)
	r := newRelay(t, Options{})
	listen := freePort(t)
	if err := r.Set([]Route{{Name: "many", Listen: listen, Upstream: up, ProxyProtocol: true, LinkID: 5}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	srcs := make(chan netip.AddrPort, sessions)
	errs := make(chan error, sessions)
	for range sessions {
		wg.Go(func() {
			c, err := net.Dial("tcp", listen.String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(bound))
			srcs <- c.LocalAddr().(*net.TCPAddr).AddrPort()
			msg := make([]byte, size)
			rand.Read(msg)
			go func() {
				c.Write(msg)
				c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err == nil && !bytes.Equal(got, msg) {
				err = fmt.Errorf("echo of %d bytes differs (%d back)", len(msg), len(got))
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	close(srcs)
	for err := range errs {
		t.Error(err)
	}
	want := map[netip.AddrPort]bool{}
	for s := range srcs {
		want[s] = true
	}
	for range sessions {
		s := recv(t, ch)
		if !want[s.src] || s.linkID != 5 {
			t.Errorf("header source %s LinkID %d: not one of the consumers, or not 5", s.src, s.linkID)
		}
		delete(want, s.src)
	}
	testkit.WaitFor(t, bound, "counters", func() error {
		got := r.Counters()["many"]
		w := Counters{Accepted: sessions, BytesUp: sessions * size, BytesDown: sessions * size}
		if got != w {
			return fmt.Errorf("counters %+v, want %+v", got, w)
		}
		return nil
	})
}

// TestRelayMaxSessions: beyond the bound a connection is reset at once.
func TestRelayMaxSessions(t *testing.T) {
	up, ch := backend(t, true, echo)
	r := newRelay(t, Options{MaxSessions: 1})
	listen := freePort(t)
	if err := r.Set([]Route{{Name: "one", Listen: listen, Upstream: up, ProxyProtocol: true}}); err != nil {
		t.Fatal(err)
	}
	first := dial(t, listen)
	ping(t, first)
	recv(t, ch)
	wantClosed(t, listen, "second session over MaxSessions 1")
	testkit.WaitFor(t, bound, "refused counter", func() error {
		if got := r.Counters()["one"].Refused; got != 1 {
			return fmt.Errorf("refused %d, want 1", got)
		}
		return nil
	})
	ping(t, first)
}

// TestRelayCloseAndContext: cancelling the relay's context closes it: live
// sessions end and Set fails with ErrClosed.
func TestRelayCloseAndContext(t *testing.T) {
	up, ch := backend(t, true, echo)
	ctx, cancel := context.WithCancel(context.Background())
	r := New(ctx, nil, nil, Options{})
	listen := freePort(t)
	if err := r.Set([]Route{{Name: "c", Listen: listen, Upstream: up, ProxyProtocol: true}}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, listen)
	ping(t, c)
	recv(t, ch)
	cancel()
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("session still open after the context ended")
	}
	testkit.WaitFor(t, bound, "Set after close", func() error {
		if err := r.Set(nil); !errors.Is(err, ErrClosed) {
			return fmt.Errorf("Set: %v, want ErrClosed", err)
		}
		return nil
	})
}
