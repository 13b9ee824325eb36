package fabric

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/testkit"
	"golang.org/x/sys/unix"
)

// serveEcho listens on addr in ns: each connection gets name and a
// newline, then its own bytes back.
func serveEcho(t testing.TB, f *Fabric, ns, addr, name string) {
	t.Helper()
	ln, err := f.ListenTCP(ns, addr)
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns, err)
	}
	testkit.Serve(t, ln, func(c net.Conn) {
		defer c.Close()
		fmt.Fprintf(c, "%s\n", name)
		_, _ = io.Copy(c, c)
	})
}

// lbConn is a connection through a frontend and the backend it reached.
type lbConn struct {
	net.Conn
	r       *bufio.Reader
	backend string
}

func dialLB(t testing.TB, f *Fabric, ns, addr string) (*lbConn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := f.DialContext(ctx, ns, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, err
	}
	return &lbConn{Conn: c, r: r, backend: strings.TrimSpace(line)}, nil
}

// spread opens n connections from ns to addr and counts them by backend.
func spread(t testing.TB, f *Fabric, ns, addr string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		c, err := dialLB(t, f, ns, addr)
		if err != nil {
			t.Fatalf("from %s to %s: %v", ns, addr, err)
		}
		got[c.backend]++
		c.Close()
	}
	return got
}

func TestLoadBalancerDataPath(t *testing.T) {
	f := newTestFabric(t)
	router := mustEnsureNetwork(t, f, "lbnet", "10.40.0.0/24")
	client := mustEnsureNIC(t, f, "lbclient", "lbnet", "10.40.0.10/24")
	b1 := mustEnsureNIC(t, f, "lbb1", "lbnet", "10.40.0.11/24")
	b2 := mustEnsureNIC(t, f, "lbb2", "lbnet", "10.40.0.12/24")
	serveEcho(t, f, b1, "10.40.0.11:8080", "b1")
	serveEcho(t, f, b2, "10.40.0.12:8080", "b2")
	front := netip.MustParseAddr("10.40.0.100")
	a1, a2 := netip.MustParseAddr("10.40.0.11"), netip.MustParseAddr("10.40.0.12")
	ensure := func(backends ...netip.Addr) {
		t.Helper()
		lb := LoadBalancers{Frontends: []netip.Addr{front}, Rules: []LBRule{{Name: "lb.http", Frontend: front,
			Protocol: unix.IPPROTO_TCP, Port: 80, BackendPort: 8080, Backends: backends}}}
		if err := f.EnsureLoadBalancers("lbnet", lb); err != nil {
			t.Fatal(err)
		}
	}
	ensure(a1, a2)
	// Connections from a NIC spread over both backends by their 5-tuple.
	got := spread(t, f, client, "10.40.0.100:80", 40)
	if got["b1"] == 0 || got["b2"] == 0 || got["b1"]+got["b2"] != 40 {
		t.Fatalf("40 connections went %v, want both backends", got)
	}
	t.Logf("spread: %v", got)
	// The router's own connections (the output hook) are balanced too.
	if c, err := dialLB(t, f, router, "10.40.0.100:80"); err != nil || (c.backend != "b1" && c.backend != "b2") {
		t.Fatalf("from the router: %v %v", err, c)
	} else {
		c.Close()
	}
	// A port without a rule is refused by the router.
	mustNotConnect(t, f, client, "10.40.0.100:81")

	// Hold a connection to b1, then take b1 out: new connections all go
	// to b2, the held one lives on, and the chains were not rewritten.
	var held *lbConn
	for i := 0; held == nil && i < 100; i++ {
		c, err := dialLB(t, f, client, "10.40.0.100:80")
		if err != nil {
			t.Fatal(err)
		}
		if c.backend == "b1" {
			held = c
		} else {
			c.Close()
		}
	}
	if held == nil {
		t.Fatal("no connection reached b1 in 100 tries")
	}
	defer held.Close()
	c := nftIn(t, f, router)
	_, before := tableRulesIn(t, c, LBTable)
	ensure(a2)
	_, after := tableRulesIn(t, c, LBTable)
	if len(before) != 2 || len(after) != 2 || before[0][0].Handle != after[0][0].Handle || before[1][0].Handle != after[1][0].Handle {
		t.Errorf("the set update rewrote the chains: handles %v → %v", before, after)
	}
	if got := spread(t, f, client, "10.40.0.100:80", 20); got["b2"] != 20 {
		t.Errorf("with b1 out, 20 connections went %v, want all to b2", got)
	}
	fmt.Fprintf(held, "still here\n")
	if line, err := held.r.ReadString('\n'); err != nil || line != "still here\n" {
		t.Errorf("the established flow to b1 after the update: %q %v", line, err)
	}
	// b1 back: both again.
	ensure(a1, a2)
	if got := spread(t, f, client, "10.40.0.100:80", 40); got["b1"] == 0 || got["b2"] == 0 {
		t.Errorf("with b1 back, 40 connections went %v", got)
	}
	// No healthy backend: refused. No load balancer: the frontend goes.
	ensure()
	mustNotConnect(t, f, client, "10.40.0.100:80")
	if err := f.EnsureLoadBalancers("lbnet", LoadBalancers{}); err != nil {
		t.Fatal(err)
	}
	if st := nsState(t, f, router); strings.Contains(st, "10.40.0.100") {
		t.Errorf("the frontend stayed on the router: %s", st)
	}
}

func TestLoadBalancerInvalid(t *testing.T) {
	f := &Fabric{}
	front := netip.MustParseAddr("10.40.0.100")
	rule := LBRule{Name: "r", Frontend: front, Protocol: unix.IPPROTO_TCP, Port: 80, BackendPort: 8080}
	for name, lb := range map[string]LoadBalancers{
		"unknown frontend": {Rules: []LBRule{rule}},
		"bad protocol":     {Frontends: []netip.Addr{front}, Rules: []LBRule{{Name: "r", Frontend: front, Protocol: 1, Port: 80, BackendPort: 80}}},
		"no port":          {Frontends: []netip.Addr{front}, Rules: []LBRule{{Name: "r", Frontend: front, Protocol: unix.IPPROTO_TCP, BackendPort: 80}}},
		"same key twice":   {Frontends: []netip.Addr{front}, Rules: []LBRule{rule, {Name: "s", Frontend: front, Protocol: unix.IPPROTO_TCP, Port: 80, BackendPort: 1}}},
		"bad name":         {Frontends: []netip.Addr{front}, Rules: []LBRule{{Name: "a b", Frontend: front, Protocol: unix.IPPROTO_TCP, Port: 80, BackendPort: 1}}},
	} {
		if err := f.EnsureLoadBalancers("n", lb); err == nil || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// BenchmarkLoadBalancer measures connections (dial, read the greeting,
// close) and round trips on a held connection from a NIC to a backend:
// direct, and through a frontend balancing over two backends. Compare
// the pairs of one run (docs/benchmarks.md).
func BenchmarkLoadBalancer(b *testing.B) {
	f := newTestFabric(b)
	mustEnsureNetwork(b, f, "lbbench", "10.41.0.0/24")
	client := mustEnsureNIC(b, f, "lbbc", "lbbench", "10.41.0.10/24")
	b1 := mustEnsureNIC(b, f, "lbbb1", "lbbench", "10.41.0.11/24")
	b2 := mustEnsureNIC(b, f, "lbbb2", "lbbench", "10.41.0.12/24")
	serveEcho(b, f, b1, "10.41.0.11:8080", "b1")
	serveEcho(b, f, b2, "10.41.0.12:8080", "b2")
	front := netip.MustParseAddr("10.41.0.100")
	if err := f.EnsureLoadBalancers("lbbench", LoadBalancers{Frontends: []netip.Addr{front}, Rules: []LBRule{{Name: "r", Frontend: front,
		Protocol: unix.IPPROTO_TCP, Port: 80, BackendPort: 8080, Backends: []netip.Addr{netip.MustParseAddr("10.41.0.11"), netip.MustParseAddr("10.41.0.12")}}}}); err != nil {
		b.Fatal(err)
	}
	for _, target := range []struct{ name, addr string }{{"direct", "10.41.0.11:8080"}, {"frontend", "10.41.0.100:80"}} {
		b.Run("connect/"+target.name, func(b *testing.B) {
			for b.Loop() {
				c, err := dialLB(b, f, client, target.addr)
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
		b.Run("roundtrip/"+target.name, func(b *testing.B) {
			c, err := dialLB(b, f, client, target.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Time{})
			msg := []byte("ping\n")
			for b.Loop() {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := c.r.ReadString('\n'); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
