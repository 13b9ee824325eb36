package fabric

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/privlink/privlink/internal/policy"
)

// policyScaleNet is a network whose second subnet's NSG has rules inbound
// rules, every other one from the application security group "asg",
// which has members NICs (model only: no namespaces of their own, every
// other address from 10.0.100.1, so each is a range of its own), besides the client 10.0.1.4 and the server 10.0.2.4 that
// policyBenchNet's networks have. join adds the client to the group too.
func policyScaleNet(id string, rules, members int, join bool) *policy.Network {
	n := &policy.Network{ID: id, Space: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")},
		Subnets: []*policy.Subnet{{ID: "s1"}, {ID: "s2", NSG: "nsg"}},
		NICs:    []*policy.NIC{{ID: "c", Addr: mustAddr("10.0.1.4"), Subnet: "s1"}, {ID: "s", Addr: mustAddr("10.0.2.4"), Subnet: "s2"}},
		NSGs:    map[string]*policy.NSG{"nsg": {ID: "nsg"}}}
	if join {
		n.NICs[0].ASGs = []string{"asg"}
	}
	for i := range members {
		a := uint32(10<<24|100<<8) + uint32(2*i+1) // 10.0.100.1, .3, ...: one range each
		addr := netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
		n.NICs = append(n.NICs, &policy.NIC{ID: fmt.Sprintf("m%d", i), Addr: addr, Subnet: "s1", ASGs: []string{"asg"}})
	}
	for i := range rules {
		src := policy.Match{Prefixes: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(i / 256), byte(i % 256)}), 32)}}
		if i%2 == 0 {
			src = policy.Match{ASGs: []string{"asg"}}
		}
		n.NSGs["nsg"].Rules = append(n.NSGs["nsg"].Rules, policy.Rule{Name: fmt.Sprintf("r%d", i), Priority: int32(100 + i),
			Direction: policy.Inbound, Access: policy.Deny, Protocol: policy.TCP, Source: src,
			Dest: policy.Match{Any: true}, DestPorts: []policy.PortRange{{From: uint16(10000 + i), To: uint16(10000 + i)}}})
	}
	return n
}

// BenchmarkPolicyProgram measures programming a router's policy table at
// two sizes in one run: "small" (10 rules, an ASG of 10 members, the
// baseline) and "large" (1,000 rules, 1,000 members). Per size:
// "compile" is policy.Network.Compile (time and Go allocations per
// compile); "ensure" converges an empty table to the program (the table
// is removed, untimed, between iterations); "nochange" is EnsurePolicy of
// the program the router already runs; "member" is one ASG member
// joining or leaving (alternately), which changes one set element. The
// large size also reports each as a ratio to the small size's time
// (x-small: large over small). All report Go allocations per operation.
func BenchmarkPolicyProgram(b *testing.B) {
	f := newTestFabric(b)
	sizes := []struct {
		name           string
		rules, members int
	}{{"small", 10, 10}, {"large", 1000, 1000}}
	perOp := map[string]float64{} // "kind/size" → ns/op
	for si, size := range sizes {
		id := fmt.Sprintf("ps%d", si)
		mustEnsureNetwork(b, f, id, "10.0.1.0/24", "10.0.2.0/24")
		mustEnsureNIC(b, f, id+"-c", id, "10.0.1.4/24")
		mustEnsureNIC(b, f, id+"-s", id, "10.0.2.4/24")
		nics := map[string]string{"c": id + "-c", "s": id + "-s"}
		net := policyScaleNet(id, size.rules, size.members, false)
		prog := net.Compile()
		joined := policyScaleNet(id, size.rules, size.members, true).Compile()
		ensure := func(b *testing.B, p *policy.Program) {
			if _, err := f.EnsurePolicy(id, p, nics); err != nil {
				b.Fatal(err)
			}
		}
		report := func(b *testing.B, kind string) {
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			perOp[kind+"/"+size.name] = ns
			if base, ok := perOp[kind+"/small"]; ok && size.name != "small" {
				b.ReportMetric(ns/base, "x-small")
			}
		}
		b.Run(size.name+"/compile", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				net.Compile()
			}
			report(b, "compile")
		})
		b.Run(size.name+"/ensure", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				ensure(b, nil)
				b.StartTimer()
				ensure(b, prog)
			}
			report(b, "ensure")
		})
		b.Run(size.name+"/nochange", func(b *testing.B) {
			b.ReportAllocs()
			ensure(b, prog)
			for b.Loop() {
				ensure(b, prog)
			}
			report(b, "nochange")
		})
		b.Run(size.name+"/member", func(b *testing.B) {
			b.ReportAllocs()
			ensure(b, prog)
			i := 0
			for b.Loop() {
				if i%2 == 0 {
					ensure(b, joined)
				} else {
					ensure(b, prog)
				}
				i++
			}
			report(b, "member")
		})
		ensure(b, nil)
	}
}
