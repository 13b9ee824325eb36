package fabric

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/policy"
)

// TestPolicyChainedAppliances: appliance → appliance. c's subnet (s2)
// routes a's subnet via appliance d (s3), and d's subnet routes it via
// appliance b (s1, a's own subnet, no routes); both forward. Every packet
// c sends to a, data included, goes c → d → b → a: a packet socket in d
// and one in b (what tcpdump opens) each see the flow's data, a sees c's
// own address, and the model's path names d then b. With d not
// forwarding, the flow ends at d.
func TestPolicyChainedAppliances(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	pn := &policyNet{f: f, ns: map[string]string{},
		addr: map[string]string{"a": "10.0.1.4", "b": "10.0.1.5", "c": "10.0.2.4", "d": "10.0.3.4"},
		nics: map[string]string{"a": "a", "b": "b", "c": "c", "d": "d"}}
	pn.router = mustEnsureNetworkWithEndpoints(t, f, "net1", []string{"10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"})
	for _, n := range []string{"a", "b", "c", "d"} {
		pn.ns[n] = mustEnsureNIC(t, f, n, "net1", pn.addr[n]+"/24")
		startEcho(t, f, pn.ns[n], pn.addr[n]+":8080", n)
	}
	pn.model = &policy.Network{
		ID:    "net1",
		Space: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")},
		Subnets: []*policy.Subnet{
			{ID: "s1", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")}},
			{ID: "s2", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.2.0/24")}, RouteTable: "rt-c"},
			{ID: "s3", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.3.0/24")}, RouteTable: "rt-d"},
		},
		NICs: []*policy.NIC{
			{ID: "a", Addr: mustAddr("10.0.1.4"), Subnet: "s1"},
			{ID: "b", Addr: mustAddr("10.0.1.5"), Subnet: "s1", IPForwarding: true},
			{ID: "c", Addr: mustAddr("10.0.2.4"), Subnet: "s2"},
			{ID: "d", Addr: mustAddr("10.0.3.4"), Subnet: "s3", IPForwarding: true},
		},
		NSGs: map[string]*policy.NSG{},
		RouteTables: map[string][]*policy.Route{
			"rt-c": {{Name: "via-d", Prefix: netip.MustParsePrefix("10.0.1.0/24"), NextHop: policy.HopVirtualAppliance, NextHopIP: mustAddr("10.0.3.4")}},
			"rt-d": {{Name: "via-b", Prefix: netip.MustParsePrefix("10.0.1.0/24"), NextHop: policy.HopVirtualAppliance, NextHopIP: mustAddr("10.0.1.5")}},
		},
	}
	pn.apply(t)
	v, err := pn.model.Decide(policy.Flow{Src: mustAddr("10.0.2.4"), Dst: mustAddr("10.0.1.4"), Protocol: policy.TCP, SrcPort: 1, DstPort: 8080})
	if err != nil {
		t.Fatal(err)
	}
	if v.Outcome != policy.Delivered || len(v.Via) != 2 || v.Via[0].Appliance != "d" || v.Via[1].Appliance != "b" {
		t.Fatalf("model: %s, want Delivered through appliances d then b", v)
	}

	// Both appliances see the flow's data (PSH), not only its SYN.
	seen := map[string]chan error{"d": make(chan error, 1), "b": make(chan error, 1)}
	for n, ch := range seen {
		go func() {
			ch <- captureTCP(f, pn.ns[n], "10.0.2.4", "10.0.1.4", 8080, 5*time.Second, "PSH",
				func(flags byte) bool { return flags&0x08 != 0 })
		}()
	}
	time.Sleep(200 * time.Millisecond) // the capture sockets are open
	echoFromC(t, pn, "d and b")
	for _, n := range []string{"d", "b"} {
		if err := <-seen[n]; err != nil {
			t.Errorf("appliance %s did not see the flow's data: %v", n, err)
		}
	}
	// The appliances' own traffic to a goes by their subnets' routes:
	// b's straight (s1 has none), d's through b.
	pn.check(t, probe{"b", "a", 8080, true}, probe{"d", "a", 8080, true})

	// d not forwarding: c's flow ends at d.
	pn.model.NICByID("d").IPForwarding = false
	pn.apply(t)
	if _, err := call(f, pn.ns["c"], "10.0.1.4:8080", 1500*time.Millisecond); err == nil {
		t.Error("c reached a through an appliance d that no longer forwards")
	}
	if v, _ := pn.model.Decide(policy.Flow{Src: mustAddr("10.0.2.4"), Dst: mustAddr("10.0.1.4"), Protocol: policy.TCP, SrcPort: 1, DstPort: 8080}); v.Outcome == policy.Delivered {
		t.Errorf("model with d not forwarding: %s, want the flow to end at d", v)
	}
}

// echoFromC connects from c to a's 8080 (through the appliances via
// names), wants a's greeting naming c's own address, and an echo.
func echoFromC(t *testing.T, pn *policyNet, via string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pn.f.DialContext(ctx, pn.ns["c"], "tcp", "10.0.1.4:8080")
	if err != nil {
		t.Fatalf("c → a through %s: %v", via, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "a 10.0.2.4\n" {
		t.Fatalf("c → a through %s: greeting %q, %v; want a to see c's own address", via, buf[:n], err)
	}
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Read(buf); err != nil || string(buf[:n]) != "ping\n" {
		t.Fatalf("echo through %s: %q, %v", via, buf[:n], err)
	}
}
