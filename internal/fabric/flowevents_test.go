package fabric

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/netip"
	"testing"
	"time"
)

// flowWatcher runs WatchFlows on a router and hands its events over.
type flowWatcher struct {
	events chan FlowEvent
	stop   func() error
}

func watchFlows(t testing.TB, f *Fabric, kind Kind, id string) *flowWatcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &flowWatcher{events: make(chan FlowEvent, 64)}
	done := make(chan error, 1)
	go func() { done <- f.WatchFlows(ctx, kind, id, func(ev FlowEvent) { w.events <- ev }) }()
	var stopped bool
	var err error
	w.stop = func() error {
		if !stopped {
			cancel()
			err, stopped = <-done, true
		}
		return err
	}
	t.Cleanup(func() { w.stop() })
	return w
}

func (w *flowWatcher) next(t testing.TB) FlowEvent {
	t.Helper()
	select {
	case ev := <-w.events:
		t.Logf("flow event %+v", ev)
		return ev
	case <-time.After(hangGuard):
		t.Fatalf("no flow event within %v", hangGuard)
		return FlowEvent{}
	}
}

// TestWatchFlows follows an endpoint's flows from open to closed, reset
// and revoked, and counts refused connections.
func TestWatchFlows(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	mustEnsureNetworkWithEndpoints(t, f, "net1", []string{"10.0.0.0/16"}, "10.0.2.5", "10.0.2.6")
	nic := mustEnsureNIC(t, f, "c", "net1", "10.0.1.4/16")
	pg1 := mustEnsureService(t, f, "pg1", "169.254.10.2")
	conns := acceptor(t, f, pg1, "169.254.10.2:5432")
	mustEnsureEndpoints(t, f, "net1", pe1())

	// A flow opened before the watch is reported from the table, which
	// also tells that the watch listens.
	first, firstServer := pair(t, f, conns, nic, "10.0.2.5:5432")
	w := watchFlows(t, f, KindNetwork, "net1")
	port := func(c net.Conn) uint16 { return uint16(c.LocalAddr().(*net.TCPAddr).Port) }
	ev := w.next(t)
	if ev.Type != FlowOpened || ev.Flow.Client != netip.AddrPortFrom(mustAddr("10.0.1.4"), port(first)) ||
		ev.Flow.Target != mustAddrPort("10.0.2.5:5432") || ev.Flow.Source.Addr() != mustAddr("169.254.1.5") || ev.Start.IsZero() {
		t.Fatalf("first event %+v, want the open flow from port %d", ev, port(first))
	}

	t.Run("closed", func(t *testing.T) {
		if _, err := first.Write([]byte("0123456789")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 10)
		firstServer.SetReadDeadline(time.Now().Add(hangGuard))
		if _, err := firstServer.Read(buf); err != nil {
			t.Fatal(err)
		}
		first.Close()
		firstServer.Close()
		ev := w.next(t)
		if ev.Type != FlowEnded || ev.End != FlowClosed || ev.Flow.Client.Port() != port(first) || ev.BytesIn < 10 || ev.PacketsIn == 0 ||
			ev.PacketsOut == 0 || ev.Stop.Before(ev.Start) || ev.Flow.State != "TIME_WAIT" {
			t.Errorf("end of a closed flow: %+v", ev)
		}
	})
	t.Run("reset", func(t *testing.T) {
		client, server := pair(t, f, conns, nic, "10.0.2.5:5432")
		if ev := w.next(t); ev.Type != FlowOpened || ev.Flow.Client.Port() != port(client) {
			t.Fatalf("open event %+v", ev)
		}
		server.(*net.TCPConn).SetLinger(0) // closing resets
		server.Close()
		if ev := w.next(t); ev.Type != FlowEnded || ev.End != FlowReset || ev.Flow.Client.Port() != port(client) {
			t.Errorf("end of a reset flow: %+v", ev)
		}
	})
	t.Run("revoked", func(t *testing.T) {
		client, _ := pair(t, f, conns, nic, "10.0.2.5:5432")
		if ev := w.next(t); ev.Type != FlowOpened {
			t.Fatalf("open event %+v", ev)
		}
		if revoked := mustEnsureEndpoints(t, f, "net1"); len(revoked) != 1 {
			t.Fatalf("revoked %+v, want one flow", revoked)
		}
		if ev := w.next(t); ev.Type != FlowEnded || ev.End != FlowRevoked || ev.Flow.Client.Port() != port(client) || ev.BytesIn == 0 {
			t.Errorf("end of a revoked flow: %+v", ev)
		}
		f.revocations.mu.Lock()
		left := maps.Clone(f.revocations.m)
		f.revocations.mu.Unlock()
		if len(left) != 0 {
			t.Errorf("revocations left after their flows ended: %v", left)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		mustNotConnect(t, f, nic, "10.0.2.5:5432") // pe1 revoked
		mustNotConnect(t, f, nic, "10.0.2.6:5432") // never translated
		mustNotConnect(t, f, nic, "10.0.2.6:5433") // another port
		got, err := f.EndpointRefusals("net1")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]uint64{"10.0.2.5": 1, "10.0.2.6": 2}
		if len(got) != len(want) {
			t.Errorf("refusals %v, want %v", got, want)
		}
		for a, n := range want {
			if got[mustAddr(a)] != n {
				t.Errorf("refusals at %s: %d, want %d (all: %v)", a, got[mustAddr(a)], n, got)
			}
		}
		// The DNS address, where privlinkd listens, is not counted.
		dns := serve(t, f, f.NamespaceName(KindNetwork, "net1"), DNSAddr.String()+":0", "dns")
		mustCall(t, f, nic, dns, "dns 10.0.1.4")
		if got, _ := f.EndpointRefusals("net1"); got[DNSAddr] != 0 {
			t.Errorf("refusals at the DNS address: %d", got[DNSAddr])
		}
		// An Ensure keeps the counts. With a translation, the service
		// is routed, and the guard refuses a direct connection to it.
		mustEnsureEndpoints(t, f, "net1", pe1())
		mustNotConnect(t, f, nic, "169.254.10.2:5432")
		if again, _ := f.EndpointRefusals("net1"); again[mustAddr("10.0.2.6")] != 2 || again[mustAddr("169.254.10.2")] != 1 {
			t.Errorf("refusals after an Ensure and a connection to the service: %v", again)
		}
	})
	if err := w.stop(); err != nil {
		t.Errorf("watch: %v", err)
	}
	if err := f.WatchFlows(context.Background(), KindNetwork, "nope", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("watch of a missing network: %v, want ErrNotFound", err)
	}
	if err := f.WatchFlows(context.Background(), KindNIC, "c", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("watch of a NIC: %v, want ErrInvalid", err)
	}
}

// TestWatchFlowsNamespaceDeleted checks that deleting a network ends its
// watch, which would otherwise keep the old namespace alive.
func TestWatchFlowsNamespaceDeleted(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	_, nic, pg1 := pe1Network(t, f)
	conns := acceptor(t, f, pg1, "169.254.10.2:5432")
	mustEnsureEndpoints(t, f, "net1", pe1())
	pair(t, f, conns, nic, "10.0.2.5:5432")
	done := make(chan error, 1)
	opened := make(chan struct{}, 1)
	go func() {
		done <- f.WatchFlows(context.Background(), KindNetwork, "net1", func(ev FlowEvent) {
			if ev.Type == FlowOpened {
				opened <- struct{}{}
			}
		})
	}()
	select { // listening
	case <-opened:
	case <-time.After(hangGuard):
		t.Fatal("no flow reported open")
	}
	if err := f.DeleteNetwork("net1"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("watch of a deleted network ended with %v, want ErrNotFound", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("watch did not end with its namespace")
	}
}

// TestRevocationRacingTheGuard plays EnsureEndpoints step by step with a
// client's packet between the removal of its translation and the deletion
// of its conntrack entry: the guard resets the client (only). The flow is
// still told as revoked, revokeFlows still returns it, and its server side
// is reset as well.
func TestRevocationRacingTheGuard(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	_, nic, pg1 := pe1Network(t, f)
	srv := startEcho(t, f, pg1, "169.254.10.2:5432", "pg1")
	mustEnsureEndpoints(t, f, "net1", pe1())
	w := watchFlows(t, f, KindNetwork, "net1")
	s := dialSession(t, f, nic, "10.0.2.5:5432")
	if ev := w.next(t); ev.Type != FlowOpened {
		t.Fatalf("open event %+v", ev)
	}
	if err := s.echo("before"); err != nil {
		t.Fatal(err)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	router, err := f.open(f.NamespaceName(KindNetwork, "net1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer router.close()
	all := func(Flow) bool { return true }
	foreseen, _ := f.foreseeRevocations(router, all)
	if len(foreseen) != 1 {
		t.Fatalf("foreseen %v, want the one flow", foreseen)
	}
	if res := f.convergeTable(router, endpointTable("net1", nil)); res.err != nil {
		t.Fatal(res.err)
	}
	if err := s.echo("in between"); !isReset(err) {
		t.Fatalf("client between the translation's removal and its revocation: %v, want a reset by the guard", err)
	}
	if ev := w.next(t); ev.Type != FlowEnded || ev.End != FlowRevoked {
		t.Errorf("end of the flow the guard reset: %+v, want revoked", ev)
	}
	revoked, err := f.revokeFlows(router, all, foreseen)
	if err != nil || len(revoked) != 1 {
		t.Fatalf("revokeFlows: %v, %v; want the flow the guard reset", revoked, err)
	}
	if err := srv.nextEnd(t); !isReset(err) {
		t.Errorf("server side: %v, want a reset", err)
	}
}

// TestWatchFlowsFilter checks that the kernel hands a watch only the
// events it acts on (eventFilter): none for traffic between NICs, none for
// a translated flow's intermediate TCP states, one when it opens and one
// when it closes.
func TestWatchFlowsFilter(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	_, nic, pg1 := pe1Network(t, f)
	other := mustEnsureNIC(t, f, "d", "net1", "10.0.1.5/16")
	conns := acceptor(t, f, pg1, "169.254.10.2:5432")
	mustEnsureEndpoints(t, f, "net1", pe1())

	// The first flow is told from the table: then the watch listens.
	client, server := pair(t, f, conns, nic, "10.0.2.5:5432")
	w := watchFlows(t, f, KindNetwork, "net1")
	if ev := w.next(t); ev.Type != FlowOpened {
		t.Fatalf("first event %+v, want the open flow", ev)
	}
	received := func() uint64 {
		f.watches.mu.Lock()
		defer f.watches.mu.Unlock()
		var n uint64
		for fw := range f.watches.m[f.NamespaceName(KindNetwork, "net1")] {
			n += fw.received.Load()
		}
		return n
	}
	// Connections between NICs cross the router's conntrack too.
	peer := serve(t, f, other, "10.0.1.5:7000", "d")
	for range 5 {
		mustCall(t, f, nic, peer, "d 10.0.1.4")
	}
	client.Close()
	server.Close()
	if ev := w.next(t); ev.Type != FlowEnded || ev.End != FlowClosed {
		t.Fatalf("end of the first flow: %+v", ev)
	}
	if n := received(); n != 1 {
		t.Errorf("%d event messages after 5 connections between NICs and one translated close, want 1 (TIME_WAIT)", n)
	}
	second, _ := pair(t, f, conns, nic, "10.0.2.5:5432")
	defer second.Close()
	if ev := w.next(t); ev.Type != FlowOpened {
		t.Fatalf("open event %+v", ev)
	}
	if n := received(); n != 2 {
		t.Errorf("%d event messages after a translated flow opened, want 2", n)
	}
}
