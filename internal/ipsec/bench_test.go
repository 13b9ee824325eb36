package ipsec_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/fabric/fabrictest"
	"github.com/privlink/privlink/internal/ipsec"
	"github.com/privlink/privlink/internal/testkit"
)

// BenchmarkStream: one TCP stream between two gateways' namespaces, plain
// (public address to public address, through the internet router) and
// through the tunnel (inside address to inside address: ESP-in-UDP,
// encrypted by charon's kernel-libipsec in userspace) on the same path.
// Each op moves 1 MiB; compare the two MB/s figures of one run.
func BenchmarkStream(b *testing.B) {
	testkit.RequireRoot(b, "it runs charon in network namespaces", "nsenter", "unshare")
	if err := ipsec.Available(); err != nil {
		b.Skip(err)
	}
	f := fabrictest.New(b, "ipb", nil)
	a := newSide(b, f, "198.18.50.1", "10.1.0.1", "10.1.0.0/16")
	z := newSide(b, f, "198.18.50.2", "10.2.0.1", "10.2.0.0/16")
	ctx := context.Background()
	if err := a.d.Load(ctx, a.conn(z, "bench-key")); err != nil {
		b.Fatal(err)
	}
	if err := z.d.Load(ctx, z.conn(a, "bench-key")); err != nil {
		b.Fatal(err)
	}
	waitStatus(b, a, ipsec.Connected)
	waitStatus(b, z, ipsec.Connected)
	for _, c := range []struct{ name, listen, dial string }{
		{"plain", "198.18.50.2:7100", "198.18.50.2:7100"},
		{"esp", "10.2.0.1:7101", "10.2.0.1:7101"},
	} {
		b.Run(c.name, func(b *testing.B) {
			ln, err := f.ListenTCP(z.ns, c.listen)
			if err != nil {
				b.Fatal(err)
			}
			testkit.Serve(b, ln, func(conn net.Conn) { _, _ = io.Copy(io.Discard, conn) })
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			conn, err := f.DialContext(dctx, a.ns, "tcp4", c.dial)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
			cpu0 := cpuTicks(b, a.d.PID()) + cpuTicks(b, z.d.PID())
			b.ResetTimer()
			for range b.N {
				if _, err := conn.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// Where the time goes: the two charons' CPU (user and system,
			// all threads) per MiB moved.
			cpu := cpuTicks(b, a.d.PID()) + cpuTicks(b, z.d.PID()) - cpu0
			b.ReportMetric(float64(cpu)*1000/float64(clockTicks)/float64(b.N), "charon-cpu-ms/MiB")
		})
	}
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times (100 on
// Linux for every architecture Go supports here).
const clockTicks = 100

// cpuTicks returns pid's user plus system time, all threads, in ticks.
func cpuTicks(b *testing.B, pid int) uint64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// After the command: state is field 3, utime 14 and stime 15.
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return u + st
}
