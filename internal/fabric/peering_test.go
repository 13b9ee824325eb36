package fabric

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/testkit"
)

func peer(id, gw string, space ...string) PeerSpec {
	p := PeerSpec{ID: id, Gateway: netip.MustParseAddr(gw)}
	for _, s := range space {
		p.Space = append(p.Space, netip.MustParsePrefix(s))
	}
	return p
}

// ensurePeered ensures network id and returns the peers it linked.
func ensurePeered(t *testing.T, f *Fabric, id, subnet string, peers ...PeerSpec) []string {
	t.Helper()
	linked, err := f.EnsureNetworkLinked(NetworkSpec{ID: id, Subnets: []netip.Prefix{netip.MustParsePrefix(subnet)}, Peers: peers})
	if err != nil {
		t.Fatal(err)
	}
	return linked
}

// TestPeering builds hub–spoke–far (hub peered with spoke, spoke with far)
// and checks that NICs reach across one peering both ways, and that the
// spoke does not forward between its two peerings even when both ends
// route the other's space to it (not transitive: the router's forward
// filter, not a missing route, stops it). Removing a peer removes the
// pair and the path.
func TestPeering(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	// The far side and the hub each (wrongly) route the other's space to
	// the spoke, as a user route would.
	hubPeers := []PeerSpec{peer("spoke", "10.1.1.1", "10.1.0.0/16", "10.2.0.0/16")}
	if linked := ensurePeered(t, f, "hub", "10.0.1.0/24", hubPeers...); len(linked) != 0 {
		t.Fatalf("hub linked %v before the spoke's router exists", linked)
	}
	spokePeers := []PeerSpec{peer("hub", "10.0.1.1", "10.0.0.0/16"), peer("far", "10.2.1.1", "10.2.0.0/16")}
	linked := ensurePeered(t, f, "spoke", "10.1.1.0/24", spokePeers...)
	if len(linked) != 1 || linked[0] != "hub" {
		t.Fatalf("spoke linked %v, want [hub]", linked)
	}
	linked = ensurePeered(t, f, "far", "10.2.1.0/24", peer("spoke", "10.1.1.1", "10.1.0.0/16", "10.0.0.0/16"))
	if len(linked) != 1 || linked[0] != "spoke" {
		t.Fatalf("far linked %v, want [spoke]", linked)
	}
	ensurePeered(t, f, "spoke", "10.1.1.0/24", spokePeers...)
	// The hub's end was made by the spoke: the hub's own Ensure routes it.
	if linked := ensurePeered(t, f, "hub", "10.0.1.0/24", hubPeers...); len(linked) != 0 {
		t.Fatalf("hub re-linked %v", linked)
	}
	hub := mustEnsureNIC(t, f, "h", "hub", "10.0.1.4/24")
	spoke := mustEnsureNIC(t, f, "s", "spoke", "10.1.1.4/24")
	far := mustEnsureNIC(t, f, "f", "far", "10.2.1.4/24")
	atHub := serve(t, f, hub, "10.0.1.4:0", "hub")
	atSpoke := serve(t, f, spoke, "10.1.1.4:0", "spoke")
	atFar := serve(t, f, far, "10.2.1.4:0", "far")

	mustCall(t, f, spoke, atHub, "hub 10.1.1.4")
	mustCall(t, f, hub, atSpoke, "spoke 10.0.1.4")
	mustCall(t, f, far, atSpoke, "spoke 10.2.1.4")
	mustNotConnect(t, f, far, atHub)
	mustNotConnect(t, f, hub, atFar)

	// An Ensure that changes nothing leaves the routers as they are.
	before := nsState(t, f, f.NamespaceName(KindNetwork, "spoke"))
	ensurePeered(t, f, "spoke", "10.1.1.0/24", spokePeers...)
	if after := nsState(t, f, f.NamespaceName(KindNetwork, "spoke")); after != before {
		t.Errorf("a second Ensure changed the spoke's router:\n%s\n---\n%s", before, after)
	}

	// A session across the peering, each end blocked in a read. The data
	// path's table (here without translations) is in every router, as
	// the daemon's data path keeps it: its unrouted chain resets what the
	// removal's probes make each end answer.
	for _, id := range []string{"hub", "spoke"} {
		if _, err := f.EnsureEndpoints(id, nil); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := f.ListenTCP(hub, "10.0.1.4:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 1)
	testkit.Serve(t, ln, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute))
		_, err := c.Read(make([]byte, 1))
		held <- err
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := f.DialContext(ctx, spoke, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// The hub drops the peering: the pair goes, for both sides, and the
	// session is cut at both ends (reset, not left to time out).
	ensurePeered(t, f, "hub", "10.0.1.0/24")
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client's read after the peering went: %v, want a reset", err)
	}
	if err := <-held; !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("server's read after the peering went: %v, want a reset", err)
	}
	mustNotConnect(t, f, spoke, atHub)
	mustNotConnect(t, f, hub, atSpoke)
	mustCall(t, f, far, atSpoke, "spoke 10.2.1.4")
}

// callFrom connects from namespace ns, bound to source address src, to
// addr and returns the line it reads.
func callFrom(f *Fabric, ns, src, addr string) (string, error) {
	var line string
	err := f.Do(ns, func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 1500 * time.Millisecond}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	return strings.TrimSpace(line), err
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

// TestPeeringForwarded: a spoke NIC acting as an appliance sends from an
// address outside the spoke's space (10.9.9.9, routed both ways by hand as
// user routes would): the hub's router drops it while the hub's peering
// does not allow forwarded traffic, and lets it in once it does; traffic
// from the spoke's own space passes either way.
func TestPeeringForwarded(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	ensurePeered(t, f, "fwh", "10.0.1.0/24", peer("fws", "10.1.1.1", "10.1.0.0/16"))
	ensurePeered(t, f, "fws", "10.1.1.0/24", peer("fwh", "10.0.1.1", "10.0.0.0/16"))
	ensurePeered(t, f, "fwh", "10.0.1.0/24", peer("fws", "10.1.1.1", "10.1.0.0/16")) // its end's routes
	hub := mustEnsureNIC(t, f, "fwhn", "fwh", "10.0.1.4/24")
	spoke := mustEnsureNIC(t, f, "fwsn", "fws", "10.1.1.4/24")
	at := serve(t, f, hub, "10.0.1.4:0", "hub")
	hubRouter, spokeRouter := f.NamespaceName(KindNetwork, "fwh"), f.NamespaceName(KindNetwork, "fws")
	ipCmd(t, "-n", spoke, "addr", "add", "10.9.9.9/32", "dev", nicLinkName)
	ipCmd(t, "-n", spokeRouter, "route", "add", "10.9.9.9/32", "dev", RouterLinkName("fwsn"))
	routeBack := func() {
		ipCmd(t, "-n", hubRouter, "route", "replace", "10.9.9.9/32", "via", "10.1.1.1", "dev", PeerLinkName("fws"), "onlink")
	}
	routeBack()

	if got, err := callFrom(f, spoke, "10.1.1.4", at); err != nil || got != "hub 10.1.1.4" {
		t.Fatalf("from the spoke's space: %q, %v", got, err)
	}
	if got, err := callFrom(f, spoke, "10.9.9.9", at); err == nil {
		t.Fatalf("forwarded traffic got in without allowForwardedTraffic: %q", got)
	}
	ensurePeered(t, f, "fwh", "10.0.1.0/24", PeerSpec{ID: "fws", Gateway: netip.MustParseAddr("10.1.1.1"), Space: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, Forwarded: true})
	routeBack()
	if got, err := callFrom(f, spoke, "10.9.9.9", at); err != nil || got != "hub 10.9.9.9" {
		t.Fatalf("forwarded traffic with allowForwardedTraffic: %q, %v", got, err)
	}
	if got, err := callFrom(f, spoke, "10.1.1.4", at); err != nil || got != "hub 10.1.1.4" {
		t.Fatalf("from the spoke's space: %q, %v", got, err)
	}
}

// TestPeeringBackRoutes: the Ensure that makes a pair routes the peer's end
// too when the spec says how (Back, BackGateway), so traffic flows both
// ways before the peer's own Ensure; that Ensure then changes nothing.
func TestPeeringBackRoutes(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	ensurePeered(t, f, "bh", "10.0.1.0/24", peer("bs", "10.1.1.1", "10.1.0.0/16"))
	hub := mustEnsureNIC(t, f, "bhn", "bh", "10.0.1.4/24")
	at := serve(t, f, hub, "10.0.1.4:0", "hub")
	toHub := PeerSpec{ID: "bh", Gateway: netip.MustParseAddr("10.0.1.1"), Space: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")},
		Back: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, BackGateway: netip.MustParseAddr("10.1.1.1")}
	if linked := ensurePeered(t, f, "bs", "10.1.1.0/24", toHub); len(linked) != 1 {
		t.Fatalf("linked %v, want the hub", linked)
	}
	spoke := mustEnsureNIC(t, f, "bsn", "bs", "10.1.1.4/24")
	mustCall(t, f, spoke, at, "hub 10.1.1.4")
	before := nsState(t, f, f.NamespaceName(KindNetwork, "bh"))
	ensurePeered(t, f, "bh", "10.0.1.0/24", peer("bs", "10.1.1.1", "10.1.0.0/16"))
	if after := nsState(t, f, f.NamespaceName(KindNetwork, "bh")); after != before {
		t.Errorf("the hub's own Ensure changed its router:\n%s\n---\n%s", before, after)
	}
}
