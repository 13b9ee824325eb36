package fabric

import (
	"net"
	"net/netip"
	"testing"

	"github.com/privlink/privlink/internal/testkit"
)

// BenchmarkPeeringRoundTrip compares, in one run, 128-byte round trips on
// a live connection to a server NIC (10.0.1.4:7000) from a client NIC of
// its own network (10.0.1.5, the baseline: one router) and from a client
// NIC of a peered network (10.1.1.4: two routers and the pair between
// them, and the peering filter), alternating; medians in µs and the ratio
// (baseline over peered time: 1 is no cost).
func BenchmarkPeeringRoundTrip(b *testing.B) {
	f := newTestFabric(b)
	hubPeer := PeerSpec{ID: "prs", Gateway: mustAddr("10.1.1.1"), Space: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	spokePeer := PeerSpec{ID: "prh", Gateway: mustAddr("10.0.1.1"), Space: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}}
	for _, n := range []struct {
		id, subnet string
		p          PeerSpec
	}{{"prh", "10.0.1.0/24", hubPeer}, {"prs", "10.1.1.0/24", spokePeer}, {"prh", "10.0.1.0/24", hubPeer}} {
		if err := f.EnsureNetwork(NetworkSpec{ID: n.id, Subnets: []netip.Prefix{netip.MustParsePrefix(n.subnet)}, Peers: []PeerSpec{n.p}}); err != nil {
			b.Fatal(err)
		}
	}
	server := mustEnsureNIC(b, f, "prh-s", "prh", "10.0.1.4/24")
	local := mustEnsureNIC(b, f, "prh-c", "prh", "10.0.1.5/24")
	peered := mustEnsureNIC(b, f, "prs-c", "prs", "10.1.1.4/24")
	ln, err := f.ListenTCP(server, "10.0.1.4:7000")
	if err != nil {
		b.Fatal(err)
	}
	testkit.Serve(b, ln, benchServe)
	p := &benchPath{f: f}
	names := []string{"own", "peered"}
	conns := make([]net.Conn, 2)
	for i, ns := range []string{local, peered} {
		conns[i] = p.dial(b, ns, "10.0.1.4:7000", 'r')
		b.Cleanup(func() { conns[i].Close() })
	}
	median := roundTrips(b, conns, names, 0)
	b.ReportMetric(float64(median[0])/float64(median[1]), "ratio")
}
