package fabric

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// benchChunk is what a throughput iteration sends each way; benchMsg is the
// size of a round trip's request and response (about a small query's).
const (
	benchChunk = 4 << 20
	benchMsg   = 128
)

// benchPath is a service behind an endpoint: a server in the service
// namespace, reachable from a NIC through the endpoint 10.0.2.5:5432 and
// from inside the service namespace directly over loopback.
type benchPath struct {
	f        *Fabric
	nic, svc string
}

const (
	benchEndpoint = "10.0.2.5:5432"
	benchDirect   = "169.254.10.2:5432"
)

func newBenchPath(b *testing.B) *benchPath {
	f := newTestFabric(b)
	mustEnsureNetworkWithEndpoints(b, f, "net1", []string{"10.0.0.0/16"}, "10.0.2.5")
	p := &benchPath{f: f, nic: mustEnsureNIC(b, f, "c", "net1", "10.0.1.4/16"), svc: mustEnsureService(b, f, "pg1", "169.254.10.2")}
	mustEnsureEndpoints(b, f, "net1", pe1())
	ln, err := f.ListenTCP(p.svc, benchDirect)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go benchServe(c)
		}
	}()
	return p
}

// benchServe answers a connection by its first byte: 'c' (a connection
// setup): one byte back, then wait for the client to close; 'b' (bulk):
// read benchChunk bytes, answer one byte, again until the client closes;
// 'r' (round trips): answer each benchMsg-byte message with one as long.
func benchServe(c net.Conn) {
	defer c.Close()
	mode := make([]byte, 1)
	if _, err := io.ReadFull(c, mode); err != nil {
		return
	}
	switch mode[0] {
	case 'c':
		if _, err := c.Write([]byte{'k'}); err != nil {
			return
		}
		io.Copy(io.Discard, c)
	case 'r':
		msg := make([]byte, benchMsg)
		for {
			if _, err := io.ReadFull(c, msg); err != nil {
				return
			}
			if _, err := c.Write(msg); err != nil {
				return
			}
		}
	case 'b':
		for {
			if _, err := io.CopyN(io.Discard, c, benchChunk); err != nil {
				return
			}
			if _, err := c.Write([]byte{'k'}); err != nil {
				return
			}
		}
	}
}

func (p *benchPath) dial(b *testing.B, ns, addr string, mode byte) net.Conn {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c, err := p.f.DialContext(ctx, ns, "tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Write([]byte{mode}); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkDataPathThroughput sends benchChunk bytes per iteration through
// the endpoint (client in a NIC namespace, the kernel translating in the
// router) and the same directly inside the service namespace over loopback,
// alternating, and reports both rates and their ratio.
func BenchmarkDataPathThroughput(b *testing.B) {
	p := newBenchPath(b)
	conns := [2]net.Conn{p.dial(b, p.nic, benchEndpoint, 'b'), p.dial(b, p.svc, benchDirect, 'b')}
	for _, c := range conns {
		defer c.Close()
	}
	buf := make([]byte, 64<<10)
	ack := make([]byte, 1)
	var took [2]time.Duration
	b.SetBytes(2 * benchChunk)
	for b.Loop() {
		for i, c := range conns {
			start := time.Now()
			for sent := 0; sent < benchChunk; sent += len(buf) {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := io.ReadFull(c, ack); err != nil {
				b.Fatal(err)
			}
			took[i] += time.Since(start)
		}
	}
	rate := func(d time.Duration) float64 { return float64(b.N) * benchChunk / d.Seconds() / 1e6 }
	b.ReportMetric(rate(took[0]), "MB/s-endpoint")
	b.ReportMetric(rate(took[1]), "MB/s-direct")
	b.ReportMetric(took[1].Seconds()/took[0].Seconds(), "ratio")
}

// BenchmarkDataPathRoundTrip exchanges, per iteration, one benchMsg-byte
// request and response through the endpoint and one directly, alternating,
// on two lasting connections: the latency-bound pattern of a client running
// small queries one after the other (pgbench select-only). It reports both
// rates and their ratio.
func BenchmarkDataPathRoundTrip(b *testing.B) {
	p := newBenchPath(b)
	conns := [2]net.Conn{p.dial(b, p.nic, benchEndpoint, 'r'), p.dial(b, p.svc, benchDirect, 'r')}
	for _, c := range conns {
		defer c.Close()
	}
	msg := make([]byte, benchMsg)
	var took [2]time.Duration
	for b.Loop() {
		for i, c := range conns {
			start := time.Now()
			if _, err := c.Write(msg); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, msg); err != nil {
				b.Fatal(err)
			}
			took[i] += time.Since(start)
		}
	}
	rate := func(d time.Duration) float64 { return float64(b.N) / d.Seconds() }
	b.ReportMetric(rate(took[0]), "rt/s-endpoint")
	b.ReportMetric(rate(took[1]), "rt/s-direct")
	b.ReportMetric(took[1].Seconds()/took[0].Seconds(), "ratio")
}

// BenchmarkDataPathConnect sets up, per iteration, 50 connections through
// the endpoint and 50 directly inside the service namespace (each: connect,
// one byte each way, close), and reports both rates and their ratio. The
// connections of a batch are dialled from one thread inside the client's
// namespace, so switching namespaces costs nothing per connection.
func BenchmarkDataPathConnect(b *testing.B) {
	const batch = 50
	p := newBenchPath(b)
	var took [2]time.Duration
	run := func(ns, addr string) time.Duration {
		var d time.Duration
		err := p.f.Do(ns, func() error {
			start := time.Now()
			buf := make([]byte, 1)
			for range batch {
				c, err := net.DialTimeout("tcp", addr, hangGuard)
				if err != nil {
					return err
				}
				if _, err := c.Write([]byte{'c'}); err != nil {
					return err
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					return err
				}
				// Reset rather than linger in TIME_WAIT, so the
				// client's ports last the whole run.
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}
			d = time.Since(start)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	for b.Loop() {
		took[0] += run(p.nic, benchEndpoint)
		took[1] += run(p.svc, benchDirect)
	}
	rate := func(d time.Duration) float64 { return float64(b.N*batch) / d.Seconds() }
	b.ReportMetric(rate(took[0]), "conn/s-endpoint")
	b.ReportMetric(rate(took[1]), "conn/s-direct")
	b.ReportMetric(took[1].Seconds()/took[0].Seconds(), "ratio")
}
