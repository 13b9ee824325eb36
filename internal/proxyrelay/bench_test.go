package proxyrelay

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/privlink/privlink/internal/testkit"
)

// The relay against a direct connection to the same backend, in one run, on
// loopback (go test -bench . ./internal/proxyrelay; docs/benchmarks.md):
//
//   - stream: one connection, 1 MiB written per op to a backend that
//     discards it (b.SetBytes: MB/s);
//   - pingpong: one connection, 64-byte request and 64-byte answer per op,
//     the shape of pgbench -S's round trips;
//   - connect: a new connection per op, one byte each way, then close.
func BenchmarkRelay(b *testing.B) {
	sink, _ := benchBackend(b, func(r *bufio.Reader, c net.Conn) { io.Copy(io.Discard, r) })
	echoes, _ := benchBackend(b, func(r *bufio.Reader, c net.Conn) {
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(r, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	r := New(b.Context(), nil, nil, Options{})
	b.Cleanup(func() { r.Close() })
	sinkRelay, echoRelay := freePort(b), freePort(b)
	if err := r.Set([]Route{
		{Name: "sink", Listen: sinkRelay, Upstream: sink, ProxyProtocol: true, LinkID: 1},
		{Name: "echo", Listen: echoRelay, Upstream: echoes, ProxyProtocol: true, LinkID: 2},
	}); err != nil {
		b.Fatal(err)
	}
	paths := []struct {
		name       string
		sink, echo netip.AddrPort
	}{{"direct", sink, echoes}, {"relay", sinkRelay, echoRelay}}
	// Each kind runs direct then relay, next to each other, so that the
	// machine's load changes as little as possible between the two.
	for _, path := range paths {
		b.Run("stream/"+path.name, func(b *testing.B) {
			c := dial(b, path.sink)
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, path := range paths {
		b.Run("pingpong/"+path.name, func(b *testing.B) {
			c := dial(b, path.echo)
			buf := make([]byte, 64)
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, path := range paths {
		b.Run("connect/"+path.name, func(b *testing.B) {
			buf := make([]byte, 64)
			for b.Loop() {
				c, err := net.Dial("tcp", path.echo.String())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

// benchBackend is a loopback backend that skips a PROXY v2 header if one
// comes (by its length field; the tests parse headers properly).
func benchBackend(b *testing.B, serve func(r *bufio.Reader, c net.Conn)) (netip.AddrPort, net.Listener) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	testkit.Serve(b, ln, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		if h, err := r.Peek(16); err == nil && string(h[:12]) == string(signature[:]) {
			if _, err := r.Discard(16 + int(binary.BigEndian.Uint16(h[14:]))); err != nil {
				return
			}
		}
		serve(r, c)
	})
	return ln.Addr().(*net.TCPAddr).AddrPort(), ln
}
