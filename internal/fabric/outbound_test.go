package fabric

import (
	"net/netip"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/policy"
)

// TestOutbound: a NIC of a network with a default outbound address
// reaches internet hosts and a server's public address as that address
// (the server's firewall rules decide on it); without one it reaches
// nothing outside; an NSG rule denying Internet outbound and a route with
// next hop None stop it; internet hosts cannot open flows into the network.
func TestOutbound(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	out := mustAddr("198.18.0.20")
	spec := NetworkSpec{ID: "net1", Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")}, Outbound: out}
	if err := f.EnsureNetwork(spec); err != nil {
		t.Fatal(err)
	}
	nic := mustEnsureNIC(t, f, "a", "net1", "10.0.1.4/24")
	startEcho(t, f, nic, "10.0.1.4:8080", "a")
	host, err := f.EnsureInternetHost(mustAddr("198.18.7.9"))
	if err != nil {
		t.Fatal(err)
	}
	startEcho(t, f, host, "198.18.7.9:8080", "host")
	pg1 := mustEnsureService(t, f, "pg1", "169.254.10.2")
	startEcho(t, f, pg1, "169.254.10.2:5432", "pg1")
	pub := PublicNAT{Name: "pg1", Public: mustAddr("198.18.0.10"), Ports: []uint16{pgPort}, Service: "pg1", ServiceAddr: mustAddr("169.254.10.2"),
		Allowed: []AddrRange{PrefixRange(netip.PrefixFrom(out, 32))}, Enabled: true}
	mustEnsurePublic(t, f, pub)

	wantGreeting := func(to, want string) {
		t.Helper()
		got, err := call(f, nic, to, 5*time.Second)
		if err != nil || got != want {
			t.Errorf("a → %s: %q, %v; want %q", to, got, err, want)
		}
	}
	wantNone := func(ns, to string) {
		t.Helper()
		if got, err := call(f, ns, to, 1500*time.Millisecond); err == nil {
			t.Errorf("%s → %s: connected (%q), want nothing", ns, to, got)
		}
	}
	wantGreeting("198.18.7.9:8080", "host "+out.String())
	wantGreeting("198.18.0.10:5432", "pg1 "+out.String())
	wantNone(host, "10.0.1.4:8080")
	wantNone(host, out.String()+":8080")

	// Firewall rules name the outbound address: without it, no way in.
	pub.Allowed = []AddrRange{PrefixRange(netip.MustParsePrefix("198.18.7.0/24"))}
	mustEnsurePublic(t, f, pub)
	wantNone(nic, "198.18.0.10:5432")
	wantGreeting("198.18.7.9:8080", "host "+out.String())

	// The policies stop it: an NSG denying Internet outbound, a route None.
	model := &policy.Network{ID: "net1", Space: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")},
		Subnets: []*policy.Subnet{{ID: "s1", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")}}},
		NICs:    []*policy.NIC{{ID: "a", Addr: mustAddr("10.0.1.4"), Subnet: "s1", NSG: "nsg"}},
		NSGs: map[string]*policy.NSG{"nsg": {ID: "nsg", Rules: []policy.Rule{{Name: "DenyInternetOutbound", Priority: 100,
			Direction: policy.Outbound, Access: policy.Deny, Protocol: policy.Any, Source: policy.Match{Any: true},
			Dest: policy.Match{Tags: []string{policy.TagInternet}}}}}},
		RouteTables: map[string][]*policy.Route{}}
	apply := func() {
		t.Helper()
		if _, err := f.EnsurePolicy("net1", model.Compile(), map[string]string{"a": "a"}); err != nil {
			t.Fatal(err)
		}
	}
	decide := func() policy.Outcome {
		v, err := model.Decide(policy.Flow{Src: mustAddr("10.0.1.4"), Dst: mustAddr("198.18.7.9"), Protocol: policy.TCP, SrcPort: 40000, DstPort: 8080})
		if err != nil {
			t.Fatal(err)
		}
		return v.Outcome
	}
	apply()
	if o := decide(); o != policy.Denied {
		t.Errorf("model with DenyInternetOutbound: %s, want Denied", o)
	}
	wantNone(nic, "198.18.7.9:8080")
	model.NSGs["nsg"].Rules = nil
	apply()
	if o := decide(); o != policy.ToInternet {
		t.Errorf("model without rules: %s, want ToInternet", o)
	}
	wantGreeting("198.18.7.9:8080", "host "+out.String())
	model.Subnets[0].RouteTable = "rt"
	model.RouteTables["rt"] = []*policy.Route{{Name: "none", Prefix: netip.MustParsePrefix("0.0.0.0/0"), NextHop: policy.HopNone}}
	apply()
	if o := decide(); o != policy.Dropped {
		t.Errorf("model with 0.0.0.0/0 None: %s, want Dropped", o)
	}
	wantNone(nic, "198.18.7.9:8080")
	if _, err := f.EnsurePolicy("net1", nil, nil); err != nil {
		t.Fatal(err)
	}

	// Without an outbound address, no way out.
	spec.Outbound = netip.Addr{}
	if err := f.EnsureNetwork(spec); err != nil {
		t.Fatal(err)
	}
	wantNone(nic, "198.18.7.9:8080")
	spec.Outbound = out
	if err := f.EnsureNetwork(spec); err != nil {
		t.Fatal(err)
	}
	wantGreeting("198.18.7.9:8080", "host "+out.String())
}
