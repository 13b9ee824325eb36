package fabric

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/policy"
	"github.com/privlink/privlink/internal/testkit"
)

// policyBenchNet makes network id (10.0.0.0/16) with a client NIC
// 10.0.1.4 and a server NIC 10.0.2.4 (serving benchServe on port 7000)
// whose subnet's NSG holds rules inbound rules that match nothing of the
// benchmark's, so that a connection's first packet tries them all before
// AllowVnetInBound lets it through. It returns the client's namespace.
func policyBenchNet(b *testing.B, f *Fabric, id string, rules int) string {
	b.Helper()
	mustEnsureNetwork(b, f, id, "10.0.1.0/24", "10.0.2.0/24")
	client := mustEnsureNIC(b, f, id+"-c", id, "10.0.1.4/24")
	server := mustEnsureNIC(b, f, id+"-s", id, "10.0.2.4/24")
	ln, err := f.ListenTCP(server, "10.0.2.4:7000")
	if err != nil {
		b.Fatal(err)
	}
	testkit.Serve(b, ln, benchServe)
	n := &policy.Network{ID: id, Space: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")},
		Subnets: []*policy.Subnet{{ID: "s1"}, {ID: "s2", NSG: "nsg"}},
		NICs:    []*policy.NIC{{ID: "c", Addr: mustAddr("10.0.1.4"), Subnet: "s1"}, {ID: "s", Addr: mustAddr("10.0.2.4"), Subnet: "s2"}},
		NSGs:    map[string]*policy.NSG{"nsg": {ID: "nsg"}}}
	for i := range rules {
		n.NSGs["nsg"].Rules = append(n.NSGs["nsg"].Rules, policy.Rule{Name: fmt.Sprintf("r%d", i), Priority: int32(100 + i),
			Direction: policy.Inbound, Access: policy.Deny, Protocol: policy.TCP,
			Source: policy.Match{Prefixes: []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("10.200.%d.0/24", i%256))}},
			Dest:   policy.Match{Any: true}, DestPorts: []policy.PortRange{{From: uint16(1000 + i), To: uint16(1000 + i)}}})
	}
	if rules == 0 {
		n.Subnets[1].NSG = ""
	}
	if _, err := f.EnsurePolicy(id, n.Compile(), map[string]string{"c": id + "-c", "s": id + "-s"}); err != nil {
		b.Fatal(err)
	}
	return client
}

// BenchmarkPolicyRoundTrip compares two NIC pairs in two networks of one
// run: one without NSG (the baseline), one whose server's subnet NSG has
// 100 rules that a connection tries before the default rule that lets it
// in. "roundtrip": 128-byte round trips on a live connection, alternating
// between the pairs, medians in µs and the ratio (baseline over policed:
// 1 is no cost). "connect": connection setups (connect, a byte each way,
// close), where the rules are walked, per second and the ratio (policed
// rate over the baseline's).
func BenchmarkPolicyRoundTrip(b *testing.B) {
	f := newTestFabric(b)
	paths := []struct {
		name string
		ns   string
	}{{"0rules", policyBenchNet(b, f, "pb0", 0)}, {"100rules", policyBenchNet(b, f, "pb100", 100)}}
	const server = "10.0.2.4:7000"
	b.Run("roundtrip", func(b *testing.B) {
		p := &benchPath{f: f}
		conns := make([]net.Conn, len(paths))
		for i, path := range paths {
			conns[i] = p.dial(b, path.ns, server, 'r')
			b.Cleanup(func() { conns[i].Close() })
		}
		names := make([]string, len(paths))
		for i, path := range paths {
			names[i] = path.name
		}
		median := roundTrips(b, conns, names, 0)
		b.ReportMetric(float64(median[0])/float64(median[1]), "ratio")
	})
	b.Run("connect", func(b *testing.B) {
		p := &benchPath{f: f}
		took := make([]time.Duration, len(paths))
		one := make([]byte, 1)
		for b.Loop() {
			for i, path := range paths {
				start := time.Now()
				c := p.dial(b, path.ns, server, 'c')
				if _, err := io.ReadFull(c, one); err != nil {
					b.Fatalf("%s: %v", path.name, err)
				}
				c.Close()
				took[i] += time.Since(start)
			}
		}
		for i, path := range paths {
			b.ReportMetric(float64(b.N)/took[i].Seconds(), "conn/s-"+path.name)
		}
		b.ReportMetric(float64(took[0])/float64(took[1]), "ratio")
	})
}
