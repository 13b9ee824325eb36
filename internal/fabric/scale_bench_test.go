package fabric

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/privlink/privlink/internal/testkit"
)

// translationCounts are the sizes of the routers that
// BenchmarkDataPathRoundTripTranslations compares.
var translationCounts = []int{1, 60, 1000}

// BenchmarkDataPathRoundTripTranslations tells whether the cost of a packet
// grows with the translations its router holds. It builds one network per
// count in translationCounts, each router holding that many endpoint
// translations to one service, and a NIC in each; per iteration it
// exchanges one benchMsg-byte request and response through the last
// translation of each router in turn (the last one programmed: where a
// rule per translation would be matched last), busy as
// BenchmarkDataPathRoundTrip's "busy". It reports each router's median
// round trip in µs and, as "ratio-N", the smallest router's median over
// that of the router with N translations (1.00: no cost from the others).
func BenchmarkDataPathRoundTripTranslations(b *testing.B) {
	f := newTestFabric(b)
	p := &benchPath{f: f}
	svc := mustEnsureService(b, f, "pg1", "169.254.10.2")
	ln, err := f.ListenTCP(svc, benchDirect)
	if err != nil {
		b.Fatal(err)
	}
	testkit.Serve(b, ln, benchServe)
	conns := make([]net.Conn, len(translationCounts))
	snat := 0 // SNAT addresses are unique on the machine
	for k, n := range translationCounts {
		network := fmt.Sprintf("tn%d", k)
		var eps []EndpointNAT
		var addrs []string
		for i := range n {
			snat++
			ep := EndpointNAT{
				Name: fmt.Sprintf("pe%04d", i), Endpoint: netip.AddrFrom4([4]byte{10, 0, byte(2 + i/250), byte(4 + i%250)}), Ports: []uint16{pgPort},
				Service: "pg1", ServiceAddr: mustAddr("169.254.10.2"), SNAT: netip.AddrFrom4([4]byte{169, 254, byte(192 + snat/256), byte(snat % 256)}),
			}
			eps, addrs = append(eps, ep), append(addrs, ep.Endpoint.String())
		}
		mustEnsureNetworkWithEndpoints(b, f, network, []string{"10.0.1.0/24", "10.0.2.0/23", "10.0.4.0/22"}, addrs...)
		nic := mustEnsureNIC(b, f, network+"-c", network, "10.0.1.4/24")
		mustEnsureEndpoints(b, f, network, eps...)
		conns[k] = p.dial(b, nic, netip.AddrPortFrom(eps[n-1].Endpoint, pgPort).String(), 'r')
		b.Cleanup(func() { conns[k].Close() })
	}
	names := make([]string, len(conns))
	for k, n := range translationCounts {
		names[k] = fmt.Sprint(n)
	}
	median := roundTrips(b, conns, names, 0)
	for k, n := range translationCounts[1:] {
		b.ReportMetric(float64(median[0])/float64(median[k+1]), fmt.Sprintf("ratio-%d", n))
	}
}
