package fabric

import (
	"net/netip"
	"testing"
)

// TestRefusalsSkipListeners: a connection that a socket in the router
// takes is no refusal. A DNS resolver inbound endpoint's address lives on
// the router's lo, where privlinkd's DNS listens on TCP port 53: queries
// over TCP there are answered and leave pe-refused alone, while a port
// nobody listens on at the same address is refused and counted.
func TestRefusalsSkipListeners(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	inbound := mustAddr("10.0.3.68")
	spec := NetworkSpec{ID: "net1", Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")},
		Endpoints: []netip.Addr{mustAddr("10.0.2.5")}, DNS: []netip.Addr{inbound}}
	if err := f.EnsureNetwork(spec); err != nil {
		t.Fatal(err)
	}
	nic := mustEnsureNIC(t, f, "c", "net1", "10.0.1.4/16")
	mustEnsureService(t, f, "pg1", "169.254.10.2")
	mustEnsureEndpoints(t, f, "net1", pe1())
	router := f.NamespaceName(KindNetwork, "net1")
	dns := serve(t, f, router, "10.0.3.68:53", "dns")

	for range 3 {
		mustCall(t, f, nic, dns, "dns 10.0.1.4")
	}
	mustNotConnect(t, f, nic, "10.0.3.68:54")
	mustNotConnect(t, f, nic, "10.0.2.5:5433") // an endpoint's untranslated port
	got, err := f.EndpointRefusals("net1")
	if err != nil {
		t.Fatal(err)
	}
	if got[inbound] != 1 || got[mustAddr("10.0.2.5")] != 1 || len(got) != 2 {
		t.Errorf("refusals %v, want 1 at %s (port 54, not the 3 TCP queries to 53) and 1 at 10.0.2.5", got, inbound)
	}
}
