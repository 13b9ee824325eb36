package fabric

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/privlink/privlink/internal/testkit"
	"github.com/vishvananda/netlink"
)

// benchChunk is what a throughput iteration sends each way; benchMsg is the
// size of a round trip's request and response (about a small query's).
const (
	benchChunk = 4 << 20
	benchMsg   = 128
)

// benchPath is a service behind an endpoint: a server in the service
// namespace, reachable from a NIC through the endpoint 10.0.2.5:5432 and
// from inside the service namespace directly over loopback.
type benchPath struct {
	f        *Fabric
	nic, svc string
}

const (
	benchEndpoint = "10.0.2.5:5432"
	benchDirect   = "169.254.10.2:5432"
)

func newBenchPath(b *testing.B) *benchPath {
	f := newTestFabric(b)
	p := &benchPath{f: f}
	_, p.nic, p.svc = pe1Network(b, f)
	mustEnsureEndpoints(b, f, "net1", pe1())
	ln, err := f.ListenTCP(p.svc, benchDirect)
	if err != nil {
		b.Fatal(err)
	}
	testkit.Serve(b, ln, benchServe)
	return p
}

// benchServe answers a connection by its first byte: 'c' (a connection
// setup): one byte back, then wait for the client to close; 'b' (bulk):
// read benchChunk bytes, answer one byte, again until the client closes;
// 'r' (round trips): answer each benchMsg-byte message with one as long.
func benchServe(c net.Conn) {
	defer c.Close()
	mode := make([]byte, 1)
	if _, err := io.ReadFull(c, mode); err != nil {
		return
	}
	switch mode[0] {
	case 'c':
		if _, err := c.Write([]byte{'k'}); err != nil {
			return
		}
		io.Copy(io.Discard, c)
	case 'r':
		msg := make([]byte, benchMsg)
		for {
			if _, err := io.ReadFull(c, msg); err != nil {
				return
			}
			if _, err := c.Write(msg); err != nil {
				return
			}
		}
	case 'b':
		for {
			if _, err := io.CopyN(io.Discard, c, benchChunk); err != nil {
				return
			}
			if _, err := c.Write([]byte{'k'}); err != nil {
				return
			}
		}
	}
}

func (p *benchPath) dial(b *testing.B, ns, addr string, mode byte) net.Conn {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c, err := p.f.DialContext(ctx, ns, "tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Write([]byte{mode}); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkDataPathThroughput sends benchChunk bytes per iteration through
// the endpoint (client in a NIC namespace, the kernel translating in the
// router) and the same directly inside the service namespace over loopback,
// alternating, and reports both rates and their ratio.
func BenchmarkDataPathThroughput(b *testing.B) {
	p := newBenchPath(b)
	conns := [2]net.Conn{p.dial(b, p.nic, benchEndpoint, 'b'), p.dial(b, p.svc, benchDirect, 'b')}
	for _, c := range conns {
		defer c.Close()
	}
	buf := make([]byte, 64<<10)
	ack := make([]byte, 1)
	var took [2]time.Duration
	b.SetBytes(2 * benchChunk)
	for b.Loop() {
		for i, c := range conns {
			start := time.Now()
			for sent := 0; sent < benchChunk; sent += len(buf) {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := io.ReadFull(c, ack); err != nil {
				b.Fatal(err)
			}
			took[i] += time.Since(start)
		}
	}
	rate := func(d time.Duration) float64 { return float64(b.N) * benchChunk / d.Seconds() / 1e6 }
	b.ReportMetric(rate(took[0]), "MB/s-endpoint")
	b.ReportMetric(rate(took[1]), "MB/s-direct")
	b.ReportMetric(took[1].Seconds()/took[0].Seconds(), "ratio")
}

// BenchmarkDataPathRoundTrip tells where a round trip's time goes on the
// way through an endpoint. Per iteration it exchanges one benchMsg-byte
// request and response on each of five lasting connections, one after the
// other, each to the same server in the service namespace:
//
//   - loopback: from inside the service namespace (the baseline, as
//     datapathbench's direct path);
//   - link: from the router namespace straight to the service's address,
//     one veth pair, no forwarding, no translation;
//   - forward: from a NIC of a second network whose router has no nftables
//     at all (the benchmark deletes the table, and routes the NIC's address
//     back from the service): two veth pairs and IPv4 forwarding, the floor
//     of any path that crosses a router namespace;
//   - conntrack: the same through a third network whose router's only rule
//     accepts established flows, so the kernel tracks each packet;
//   - endpoint: from a NIC through the endpoint, privlink's translation
//     (conntrack, DNAT/SNAT, the router's chains) on top of forward.
//
// The sub-benchmark "busy" sends the next request at once: the pattern of
// pgbench select-only, the CPUs never idle. "idle" pauses 1 ms before each
// request (Go's timers would round a shorter sleep up to about that), long
// enough for the CPUs to go idle in between: the pattern of TPC-B-like at
// one client, whose commits wait for a WAL flush. Each path's median round
// trip is reported in µs, and "ratio" is the loopback's over the
// endpoint's, the share of the baseline's rate the endpoint keeps.
func BenchmarkDataPathRoundTrip(b *testing.B) {
	p := newBenchPath(b)
	router := p.f.NamespaceName(KindNetwork, "net1")
	paths := []struct {
		name string
		conn net.Conn
	}{
		{"loopback", p.dial(b, p.svc, benchDirect, 'r')},
		{"link", p.dial(b, router, benchDirect, 'r')},
		{"forward", p.dial(b, newPlainForwardPath(b, p, 1, false), benchDirect, 'r')},
		{"conntrack", p.dial(b, newPlainForwardPath(b, p, 2, true), benchDirect, 'r')},
		{"endpoint", p.dial(b, p.nic, benchEndpoint, 'r')},
	}
	for _, path := range paths {
		b.Cleanup(func() { path.conn.Close() })
	}
	for _, mode := range []struct {
		name  string
		pause time.Duration
	}{{"busy", 0}, {"idle", time.Millisecond}} {
		b.Run(mode.name, func(b *testing.B) {
			msg := make([]byte, benchMsg)
			took := make([][]time.Duration, len(paths))
			for b.Loop() {
				for i, path := range paths {
					if mode.pause > 0 {
						time.Sleep(mode.pause)
					}
					start := time.Now()
					if _, err := path.conn.Write(msg); err != nil {
						b.Fatalf("%s: %v", path.name, err)
					}
					if _, err := io.ReadFull(path.conn, msg); err != nil {
						b.Fatalf("%s: %v", path.name, err)
					}
					took[i] = append(took[i], time.Since(start))
				}
			}
			// Medians: a round trip that met another process's time
			// slice, rare but long, would weigh on a mean.
			median := make([]time.Duration, len(paths))
			for i, path := range paths {
				slices.Sort(took[i])
				median[i] = took[i][len(took[i])/2]
				b.ReportMetric(float64(median[i].Nanoseconds())/1e3, "µs-"+path.name)
			}
			b.ReportMetric(float64(median[0])/float64(median[len(median)-1]), "ratio")
		})
	}
}

// newPlainForwardPath adds to p's fabric a network n+1 (10.n.0.0/16) with a
// NIC 10.n.1.4 and an endpoint toward p's service, so the fabric links its
// router to the service. Then it replaces that router's nftables table with
// nothing, or, with conntrack, with a forward chain whose one rule accepts
// established flows (which is enough for the kernel to track every packet),
// and routes 10.n.1.4 back from the service through the link: the NIC
// reaches the service's own address by plain IPv4 forwarding. It returns
// the NIC's namespace.
func newPlainForwardPath(b *testing.B, p *benchPath, n int, conntrack bool) string {
	b.Helper()
	network := fmt.Sprintf("net%d", n+1)
	nicAddr := fmt.Sprintf("10.%d.1.4", n)
	pe := pe1()
	pe.Endpoint, pe.SNAT = mustAddr(fmt.Sprintf("10.%d.2.5", n)), mustAddr(fmt.Sprintf("169.254.1.%d", 5+n))
	router := mustEnsureNetworkWithEndpoints(b, p.f, network, []string{fmt.Sprintf("10.%d.0.0/16", n)}, pe.Endpoint.String())
	nic := mustEnsureNIC(b, p.f, "c"+network, network, nicAddr+"/16")
	mustEnsureEndpoints(b, p.f, network, pe)
	err := p.f.Do(router, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: NFTTable})
		if conntrack {
			t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: NFTTable})
			policy := nftables.ChainPolicyAccept
			ch := c.AddChain(&nftables.Chain{Name: NFTForwardChain, Table: t, Type: nftables.ChainTypeFilter,
				Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &policy})
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
				&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
					Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
					Xor:  binaryutil.NativeEndian.PutUint32(0)},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
				&expr.Verdict{Kind: expr.VerdictAccept},
			}})
		}
		return c.Flush()
	})
	if err != nil {
		b.Fatalf("replace the nftables table of %s's router: %v", network, err)
	}
	_, serviceSide := ServiceLinkNames(network, pe.Service)
	err = p.f.Do(p.svc, func() error {
		l, err := netlink.LinkByName(serviceSide)
		if err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{
			LinkIndex: l.Attrs().Index,
			Dst:       hostNet(mustAddr(nicAddr)),
			Gw:        pe.SNAT.AsSlice(),
			Flags:     int(netlink.FLAG_ONLINK),
		})
	})
	if err != nil {
		b.Fatalf("route %s back from the service: %v", nicAddr, err)
	}
	return nic
}

// BenchmarkDataPathConnect sets up, per iteration, 50 connections through
// the endpoint and 50 directly inside the service namespace (each: connect,
// one byte each way, close), and reports both rates and their ratio. The
// connections of a batch are dialled from one thread inside the client's
// namespace, so switching namespaces costs nothing per connection.
func BenchmarkDataPathConnect(b *testing.B) {
	const batch = 50
	p := newBenchPath(b)
	var took [2]time.Duration
	run := func(ns, addr string) time.Duration {
		var d time.Duration
		err := p.f.Do(ns, func() error {
			start := time.Now()
			buf := make([]byte, 1)
			for range batch {
				c, err := net.DialTimeout("tcp", addr, hangGuard)
				if err != nil {
					return err
				}
				if _, err := c.Write([]byte{'c'}); err != nil {
					return err
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					return err
				}
				// Reset rather than linger in TIME_WAIT, so the
				// client's ports last the whole run.
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}
			d = time.Since(start)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	for b.Loop() {
		took[0] += run(p.nic, benchEndpoint)
		took[1] += run(p.svc, benchDirect)
	}
	rate := func(d time.Duration) float64 { return float64(b.N*batch) / d.Seconds() }
	b.ReportMetric(rate(took[0]), "conn/s-endpoint")
	b.ReportMetric(rate(took[1]), "conn/s-direct")
	b.ReportMetric(took[1].Seconds()/took[0].Seconds(), "ratio")
}
