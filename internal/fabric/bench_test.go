package fabric

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkMaterializeNetwork measures how long a network with n NICs takes
// to come into being from nothing (EnsureNetwork and n EnsureNIC calls; the
// deletion between iterations is not timed).
func BenchmarkMaterializeNetwork(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("nics=%d", n), func(b *testing.B) {
			f := newTestFabric(b)
			var total time.Duration
			for range b.N {
				start := time.Now()
				materialize(b, f, n)
				total += time.Since(start)
				b.StopTimer()
				if err := f.DeleteNetwork("bench"); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Microseconds())/float64(b.N*n), "µs/nic")
		})
	}
}

// BenchmarkReconvergeNetwork measures an Ensure pass over a network with n
// NICs that already match their specs: what a controller pays for each
// resync or restart.
func BenchmarkReconvergeNetwork(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("nics=%d", n), func(b *testing.B) {
			f := newTestFabric(b)
			materialize(b, f, n)
			b.ResetTimer()
			for range b.N {
				materialize(b, f, n)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/nic")
		})
	}
}

func materialize(b *testing.B, f *Fabric, n int) {
	subnet := netip.MustParsePrefix("10.0.0.0/16")
	if err := f.EnsureNetwork(NetworkSpec{ID: "bench", Subnets: []netip.Prefix{subnet}}); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		addr := netip.AddrFrom4([4]byte{10, 0, byte(1 + i/250), byte(4 + i%250)})
		spec := NICSpec{ID: fmt.Sprintf("nic%d", i), Network: "bench", Address: netip.PrefixFrom(addr, 16)}
		if err := f.EnsureNIC(spec); err != nil {
			b.Fatal(err)
		}
	}
}
