package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestCompileAgrees: on random networks (rules, ASGs, routes, endpoint
// policies) and random flows, the compiled program decides as the model:
// same outcome, same deciding rule. The fabric enforces the program, so
// this is half of "the explanation and the packet agree"; the kernel
// tests are the other half.
func TestCompileAgrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	addrs := []string{"10.0.1.4", "10.0.1.5", "10.0.2.4", "10.0.3.4", "10.0.1.9", "198.18.0.10", "10.9.0.1", "192.168.1.1"}
	prefixes := []string{"10.0.1.0/24", "10.0.1.4/32", "10.0.0.0/16", "10.0.2.0/25", "198.18.0.0/16", "0.0.0.0/0"}
	tags := []string{TagVirtualNetwork, TagInternet, TagAzureLoadBalancer}
	protos := []Protocol{TCP, UDP, ICMP, Any}
	policies := []EndpointPolicies{PoliciesDisabled, PoliciesEnabled, PoliciesNSG, PoliciesRouteTable}
	side := func() Match {
		switch rng.IntN(4) {
		case 0:
			return Match{Any: true}
		case 1:
			return Match{Prefixes: []netip.Prefix{pfx(prefixes[rng.IntN(len(prefixes))])}}
		case 2:
			return Match{Tags: []string{tags[rng.IntN(len(tags))]}}
		}
		return Match{ASGs: []string{"web"}}
	}
	checked := 0
	for round := range 300 {
		n := network(policies[rng.IntN(len(policies))])
		for _, g := range n.NSGs {
			g.Rules = nil
			for i := range rng.IntN(6) {
				r := Rule{Name: fmt.Sprintf("r%d", i), Priority: int32(100 + rng.IntN(50)*10 + i), Protocol: protos[rng.IntN(len(protos))],
					Source: side(), Dest: side(), Access: Allow}
				if rng.IntN(2) == 0 {
					r.Access = Deny
				}
				r.Direction = Inbound
				if rng.IntN(2) == 0 {
					r.Direction = Outbound
				}
				if rng.IntN(2) == 0 {
					lo := uint16(rng.IntN(6000))
					r.DestPorts = []PortRange{{lo, lo + uint16(rng.IntN(100))}}
				}
				g.Rules = append(g.Rules, r)
			}
		}
		if rng.IntN(2) == 0 {
			n.NICs[0].ASGs = []string{"web"}
		}
		hops := []Route{{Prefix: pfx("10.0.2.0/24"), NextHop: HopVirtualAppliance, NextHopIP: ip("10.0.3.4")},
			{Prefix: pfx("10.0.2.4/32"), NextHop: HopNone}, {Prefix: pfx("198.18.0.0/15"), NextHop: HopNone},
			{Prefix: pfx("0.0.0.0/0"), NextHop: HopVirtualAppliance, NextHopIP: ip("10.0.3.4")}, {Prefix: pfx("10.0.0.0/16"), NextHop: HopInternet}}
		for range rng.IntN(3) {
			h := hops[rng.IntN(len(hops))]
			h.Name = fmt.Sprintf("u%d", rng.IntN(100))
			n.RouteTables["rt"] = append(n.RouteTables["rt"], &h)
		}
		prog := n.Compile()
		for range 40 {
			src := n.NICs[rng.IntN(len(n.NICs))].Addr
			f := Flow{Src: src, Dst: ip(addrs[rng.IntN(len(addrs))]), Protocol: protos[rng.IntN(3)],
				SrcPort: uint16(40000 + rng.IntN(100)), DstPort: uint16(rng.IntN(6100))}
			if f.Src == f.Dst {
				continue
			}
			v, err := n.Decide(f)
			if err != nil {
				t.Fatal(err)
			}
			wantRule := ""
			if r := v.Rule(); r != nil {
				wantRule = fmt.Sprintf("%s/%s %d", Key(r.NSG), r.Name, r.Priority)
			}
			got, gotRule := prog.Decide(f)
			if got != v.Outcome || gotRule != wantRule {
				t.Fatalf("round %d, %s: model %s (%s), program %s (%s)\nrules %+v\nroutes %+v", round, f, v, wantRule, got, gotRule, n.NSGs, prog.Routes)
			}
			checked++
		}
	}
	t.Logf("%d flows agree", checked)
}
