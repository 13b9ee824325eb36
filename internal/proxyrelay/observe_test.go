package proxyrelay

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/fabric"
)

// ended is one connection Observe told.
type ended struct {
	route string
	ev    fabric.FlowEvent
}

func observe(t testing.TB, r *Relay) chan ended {
	t.Helper()
	ch := make(chan ended, 16)
	r.Observe(func(route string, ev fabric.FlowEvent) { ch <- ended{route, ev} })
	return ch
}

func nextEnded(t testing.TB, ch chan ended) ended {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(bound):
		t.Fatal("the relay told no ended connection")
		return ended{}
	}
}

// TestRelayObserveClosed: a session that both sides close is told once,
// with the consumer's and the relay's addresses, the payload bytes each
// way (the header not counted) and its times.
func TestRelayObserveClosed(t *testing.T) {
	up, ch := backend(t, true, echo)
	r := newRelay(t, Options{})
	events := observe(t, r)
	listen := freePort(t)
	if err := r.Set([]Route{{Name: "pe1:80", Listen: listen, Upstream: up, ProxyProtocol: true, LinkID: 7}}); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	c := dial(t, listen)
	msg := bytes.Repeat([]byte("x"), 3000)
	if got := roundTrip(t, c, msg); !bytes.Equal(got, msg) {
		t.Fatalf("echo: %d bytes back, want %d", len(got), len(msg))
	}
	s := recv(t, ch)
	c.Close()
	e := nextEnded(t, events)
	ev := e.ev
	if e.route != "pe1:80" || ev.Type != fabric.FlowEnded || ev.End != fabric.FlowClosed {
		t.Errorf("route %q type %v end %q: want pe1:80, ended, closed", e.route, ev.Type, ev.End)
	}
	if want := c.LocalAddr().(*net.TCPAddr).AddrPort(); ev.Flow.Client != want {
		t.Errorf("client %s, want the consumer's %s", ev.Flow.Client, want)
	}
	if ev.Flow.Target != listen || ev.Flow.Service != up {
		t.Errorf("target %s service %s, want %s and %s", ev.Flow.Target, ev.Flow.Service, listen, up)
	}
	if ev.Flow.Source != s.peer {
		t.Errorf("source %s, want what the backend saw, %s", ev.Flow.Source, s.peer)
	}
	if ev.BytesIn != uint64(len(msg)) || ev.BytesOut != uint64(len(msg)) {
		t.Errorf("bytes in %d out %d, want %d each", ev.BytesIn, ev.BytesOut, len(msg))
	}
	if ev.Start.Before(before) || ev.Stop.Before(ev.Start) {
		t.Errorf("start %v stop %v: want start after the dial began (%v), stop after start", ev.Start, ev.Stop, before)
	}
	select {
	case e := <-events:
		t.Errorf("a second event for one connection: %+v", e)
	default:
	}
}

// TestRelayObserveRevokedAndFailed: a session whose route goes is told as
// revoked; one whose upstream cannot be reached as reset, with no source.
func TestRelayObserveRevokedAndFailed(t *testing.T) {
	up, ch := backend(t, true, echo)
	r := newRelay(t, Options{})
	events := observe(t, r)
	live, down := freePort(t), freePort(t)
	if err := r.Set([]Route{
		{Name: "live", Listen: live, Upstream: up, ProxyProtocol: true},
		{Name: "down", Listen: down, Upstream: freePort(t), ProxyProtocol: true},
	}); err != nil {
		t.Fatal(err)
	}
	wantClosed(t, down, "consumer of an unreachable upstream")
	e := nextEnded(t, events)
	if e.route != "down" || e.ev.End != fabric.FlowReset || e.ev.Flow.Source.IsValid() || e.ev.BytesIn != 0 {
		t.Errorf("unreachable upstream: %+v, want route down, reset, no source, no bytes", e)
	}
	c := dial(t, live)
	ping(t, c)
	recv(t, ch)
	if err := r.Set(nil); err != nil {
		t.Fatal(err)
	}
	e = nextEnded(t, events)
	if e.route != "live" || e.ev.End != fabric.FlowRevoked || e.ev.BytesIn != 5 || e.ev.BytesOut != 5 {
		t.Errorf("revoked session: route %q end %q bytes %d/%d, want live, revoked, 5/5", e.route, e.ev.End, e.ev.BytesIn, e.ev.BytesOut)
	}
	if !e.ev.Flow.Source.IsValid() || e.ev.Flow.Source.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("revoked session's source %s, want the relay's loopback side", e.ev.Flow.Source)
	}
	r.Observe(nil)
}
