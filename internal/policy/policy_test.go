package policy

import (
	"net/netip"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

// network is the test's network: 10.0.0.0/16 with a client subnet (NSG
// "subnet-nsg"), an endpoint subnet (policies as given) and an appliance
// subnet; NICs c1, c2 (c2 has NSG "nic-nsg" and is in ASG "web"), the
// endpoint pe at 10.0.2.4, the appliance nva at 10.0.3.4.
func network(policies EndpointPolicies) *Network {
	return &Network{
		ID:    "vnet",
		Space: []netip.Prefix{pfx("10.0.0.0/16")},
		Subnets: []*Subnet{
			{ID: "clients", Prefixes: []netip.Prefix{pfx("10.0.1.0/24")}, NSG: "subnet-nsg", RouteTable: "rt"},
			{ID: "endpoints", Prefixes: []netip.Prefix{pfx("10.0.2.0/24")}, NSG: "pe-nsg", EndpointPolicies: policies},
			{ID: "appliances", Prefixes: []netip.Prefix{pfx("10.0.3.0/24")}},
		},
		NICs: []*NIC{
			{ID: "c1", Addr: ip("10.0.1.4"), Subnet: "clients"},
			{ID: "c2", Addr: ip("10.0.1.5"), Subnet: "clients", NSG: "nic-nsg", ASGs: []string{"web"}},
			{ID: "pe", Addr: ip("10.0.2.4"), Subnet: "endpoints", Endpoint: true},
			{ID: "nva", Addr: ip("10.0.3.4"), Subnet: "appliances", IPForwarding: true},
		},
		NSGs: map[string]*NSG{
			"subnet-nsg": {ID: "subnet-nsg", Rules: []Rule{
				{Name: "deny-ssh-in", Priority: 200, Direction: Inbound, Access: Deny, Protocol: TCP, Source: Match{Any: true}, Dest: Match{Any: true}, DestPorts: []PortRange{{22, 22}}},
				{Name: "allow-ssh-c1", Priority: 100, Direction: Inbound, Access: Allow, Protocol: TCP,
					Source: Match{Prefixes: []netip.Prefix{pfx("10.0.1.4/32")}}, Dest: Match{Any: true}, DestPorts: []PortRange{{22, 22}}},
				{Name: "deny-internet-out", Priority: 300, Direction: Outbound, Access: Deny, Protocol: Any, Source: Match{Any: true}, Dest: Match{Tags: []string{TagInternet}}},
			}},
			"nic-nsg": {ID: "nic-nsg", Rules: []Rule{
				{Name: "web-only", Priority: 100, Direction: Inbound, Access: Deny, Protocol: TCP, Source: Match{Any: true},
					Dest: Match{ASGs: []string{"web"}}, DestPorts: []PortRange{{8000, 8999}}},
			}},
			"pe-nsg": {ID: "pe-nsg", Rules: []Rule{
				{Name: "deny-c1-pg", Priority: 100, Direction: Inbound, Access: Deny, Protocol: TCP,
					Source: Match{Prefixes: []netip.Prefix{pfx("10.0.1.4/32")}}, Dest: Match{Any: true}, DestPorts: []PortRange{{5432, 5432}}},
			}},
		},
		RouteTables: map[string][]*Route{},
	}
}

func TestDecide(t *testing.T) {
	tcp := func(src, dst string, port uint16) Flow {
		return Flow{Src: ip(src), Dst: ip(dst), Protocol: TCP, SrcPort: 40000, DstPort: port}
	}
	for _, tc := range []struct {
		name     string
		policies EndpointPolicies
		flow     Flow
		want     Outcome
		rule     string // the deciding rule, "" for none
	}{
		{"same subnet, default allow", "", tcp("10.0.1.4", "10.0.1.5", 80), Delivered, "AllowVnetInBound"},
		{"ssh allowed from c1 by priority", "", tcp("10.0.1.4", "10.0.1.5", 22), Delivered, "AllowVnetInBound"},
		{"ssh denied from c2 to c1", "", tcp("10.0.1.5", "10.0.1.4", 22), Denied, "deny-ssh-in"},
		{"NIC NSG on ASG member", "", tcp("10.0.1.4", "10.0.1.5", 8080), Denied, "web-only"},
		{"outbound internet denied", "", tcp("10.0.1.4", "198.18.0.10", 5432), Denied, "deny-internet-out"},
		{"no NSG: appliance out to internet", "", tcp("10.0.3.4", "198.18.0.10", 5432), ToInternet, ""},
		{"platform DNS always", "", Flow{Src: ip("10.0.1.4"), Dst: PlatformAddr, Protocol: UDP, DstPort: 53}, Platform, ""},
		{"endpoint, policies disabled: NSG ignored", PoliciesDisabled, tcp("10.0.1.4", "10.0.2.4", 5432), Delivered, "AllowVnetOutBound"},
		{"endpoint, NSG enabled: denied", PoliciesNSG, tcp("10.0.1.4", "10.0.2.4", 5432), Denied, "deny-c1-pg"},
		{"endpoint, Enabled: denied", PoliciesEnabled, tcp("10.0.1.4", "10.0.2.4", 5432), Denied, "deny-c1-pg"},
		{"endpoint, route tables only: NSG ignored", PoliciesRouteTable, tcp("10.0.1.4", "10.0.2.4", 5432), Delivered, "AllowVnetOutBound"},
		{"endpoint, NSG enabled, other client passes", PoliciesNSG, tcp("10.0.1.5", "10.0.2.4", 5432), Delivered, "AllowVnetInBound"},
		{"nobody there", "", tcp("10.0.1.4", "10.0.9.9", 80), Unreachable, "AllowVnetOutBound"},
		{"private range outside the space: not the VirtualNetwork tag", "", tcp("10.0.1.4", "10.9.0.1", 80), Denied, "DenyAllOutBound"},
		{"private range outside the space, no NSG: dropped by its route", "", tcp("10.0.3.4", "10.9.0.1", 80), Dropped, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := network(tc.policies).Decide(tc.flow)
			if err != nil {
				t.Fatal(err)
			}
			rule := ""
			if r := v.Rule(); r != nil {
				rule = r.Name
			}
			if v.Outcome != tc.want || rule != tc.rule {
				t.Errorf("%s: %s, want %s by %q", tc.flow, v, tc.want, tc.rule)
			}
		})
	}
}

func TestDecideOrder(t *testing.T) {
	// Inbound: the subnet's NSG first; outbound: the NIC's first.
	n := network("")
	c2 := n.NICByID("c2")
	in, out := n.Applied(c2, Inbound), n.Applied(c2, Outbound)
	if len(in) != 2 || in[0].NSG != "subnet-nsg" || in[1].NSG != "nic-nsg" {
		t.Errorf("inbound order = %+v", in)
	}
	if len(out) != 2 || out[0].NSG != "nic-nsg" || out[1].NSG != "subnet-nsg" {
		t.Errorf("outbound order = %+v", out)
	}
	// The defaults come last, after user rules sorted by priority.
	rules := in[0].Rules
	if rules[0].Name != "allow-ssh-c1" || rules[1].Name != "deny-ssh-in" || rules[len(rules)-1].Name != "DenyAllInBound" {
		t.Errorf("rule order = %v", names(rules))
	}
	if got := n.Applied(n.NICByID("pe"), Outbound); len(got) != 0 {
		t.Errorf("an endpoint has outbound rules: %+v", got)
	}
}

func names(rs []Rule) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func TestRoutes(t *testing.T) {
	n := network(PoliciesDisabled)
	hop := func(dst string) *Route { return n.NextHop("clients", ip(dst)) }
	if r := hop("10.0.2.4"); r.NextHop != HopEndpoint {
		t.Errorf("to the endpoint: %+v", r)
	}
	if r := hop("198.18.0.10"); r.NextHop != HopInternet {
		t.Errorf("to the internet: %+v", r)
	}
	// A user route sending the endpoint subnet to the appliance: the
	// endpoint's /32 still wins while its subnet's policies leave route
	// tables out.
	n.RouteTables["rt"] = []*Route{{Name: "to-nva", Prefix: pfx("10.0.2.0/24"), NextHop: HopVirtualAppliance, NextHopIP: ip("10.0.3.4")}}
	if r := hop("10.0.2.4"); r.NextHop != HopEndpoint {
		t.Errorf("policies disabled, /32 must win: %+v", r)
	}
	if r := hop("10.0.2.9"); r.NextHop != HopVirtualAppliance {
		t.Errorf("rest of the subnet to the appliance: %+v", r)
	}
	for _, p := range []EndpointPolicies{PoliciesRouteTable, PoliciesEnabled} {
		n.Subnets[1].EndpointPolicies = p
		r := hop("10.0.2.4")
		if r.NextHop != HopVirtualAppliance || r.Name != "to-nva" {
			t.Errorf("%s: the user route must invalidate the /32: %+v", p, r)
		}
		// nva forwards: the flow goes on from it to the endpoint, whose
		// subnet NSG applies when the policies enable NSGs too.
		v, _ := n.Decide(Flow{Src: ip("10.0.1.4"), Dst: ip("10.0.2.4"), Protocol: TCP, DstPort: 5432})
		want, rule := Delivered, ""
		if p == PoliciesEnabled {
			want, rule = Denied, "deny-c1-pg"
		}
		if v.Outcome != want || len(v.Via) != 1 || v.Via[0].Appliance != "nva" || v.Via[0].Route.Name != "to-nva" ||
			(rule != "" && v.Rule().Name != rule) || v.Route.NextHop != HopEndpoint {
			t.Errorf("%s: flow through the forwarding appliance = %s, want %s %s via nva", p, v, want, rule)
		}
	}
	// An appliance that does not forward keeps the flow; one whose
	// subnet routes back to it loops.
	n.NICs[3].IPForwarding = false
	if v, _ := n.Decide(Flow{Src: ip("10.0.1.4"), Dst: ip("10.0.2.4"), Protocol: TCP, DstPort: 5432}); v.Outcome != ToAppliance || v.Appliance != "nva" || len(v.Via) != 0 {
		t.Errorf("appliance without IP forwarding: flow = %s", v)
	}
	n.NICs[3].IPForwarding = true
	n.Subnets[2].RouteTable = "rt"
	if v, _ := n.Decide(Flow{Src: ip("10.0.1.4"), Dst: ip("10.0.2.4"), Protocol: TCP, DstPort: 5432}); v.Outcome != Unreachable || len(v.Via) != 1 {
		t.Errorf("appliance routing back to itself: flow = %s", v)
	}
	n.Subnets[2].RouteTable = ""
	// A default route (0/0) never invalidates it; a route shorter than
	// the space's /16 neither.
	for _, p := range []string{"0.0.0.0/0", "10.0.0.0/8"} {
		n.RouteTables["rt"] = []*Route{{Name: "wide", Prefix: pfx(p), NextHop: HopNone}}
		if r := hop("10.0.2.4"); r.NextHop != HopEndpoint {
			t.Errorf("user route %s invalidated the /32: %+v", p, r)
		}
	}
	// Same prefix: the user route beats the system route.
	n.RouteTables["rt"] = []*Route{{Name: "blackhole", Prefix: pfx("10.0.0.0/16"), NextHop: HopNone}}
	if r := hop("10.0.1.5"); r.NextHop != HopNone || r.Source != SourceUser {
		t.Errorf("same prefix: %+v", r)
	}
	v, _ := n.Decide(Flow{Src: ip("10.0.1.4"), Dst: ip("10.0.1.5"), Protocol: TCP, DstPort: 80})
	if v.Outcome != Dropped {
		t.Errorf("next hop None: %s", v)
	}
}

func TestMatchTags(t *testing.T) {
	n := network("")
	n.Peered = []netip.Prefix{pfx("10.1.0.0/16")}
	vnet := Match{Tags: []string{TagVirtualNetwork}}
	for addr, want := range map[string]bool{"10.0.7.7": true, "10.1.0.1": true, "10.2.0.1": false, "198.18.0.1": false} {
		if got := n.matches(vnet, ip(addr)); got != want {
			t.Errorf("VirtualNetwork %s = %v", addr, got)
		}
	}
	if !n.matches(Match{Tags: []string{"azureloadbalancer"}}, PlatformAddr) || n.matches(Match{Tags: []string{TagAzureLoadBalancer}}, ip("10.0.1.4")) {
		t.Error("AzureLoadBalancer is 168.63.129.16 only")
	}
	if !n.matches(Match{Tags: []string{TagInternet}}, ip("198.19.255.1")) || n.matches(Match{Tags: []string{TagInternet}}, ip("10.0.1.4")) {
		t.Error("Internet is the emulated internet")
	}
	if !n.matches(Match{ASGs: []string{"web"}}, ip("10.0.1.5")) || n.matches(Match{ASGs: []string{"web"}}, ip("10.0.1.4")) {
		t.Error("ASG membership")
	}
}

func TestPortsAndProtocols(t *testing.T) {
	n := network("")
	r := Rule{Protocol: UDP, Source: Match{Any: true}, Dest: Match{Any: true}, DestPorts: []PortRange{{53, 53}, {1000, 2000}}}
	for _, tc := range []struct {
		f    Flow
		want bool
	}{
		{Flow{Protocol: UDP, DstPort: 53}, true},
		{Flow{Protocol: UDP, DstPort: 1500}, true},
		{Flow{Protocol: UDP, DstPort: 2001}, false},
		{Flow{Protocol: TCP, DstPort: 53}, false},
	} {
		if got := n.ruleMatches(r, tc.f); got != tc.want {
			t.Errorf("%v: %v", tc.f, got)
		}
	}
	icmp := Rule{Protocol: ICMP, Source: Match{Any: true}, Dest: Match{Any: true}, DestPorts: []PortRange{{22, 22}}}
	if !n.ruleMatches(icmp, Flow{Protocol: ICMP}) {
		t.Error("ports do not apply to ICMP")
	}
}
