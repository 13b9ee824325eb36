package fabric

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestValidation(t *testing.T) {
	// Validation happens before anything touches the kernel, so a bare
	// Fabric (no root needed) is enough.
	f := &Fabric{prefix: "plv-", log: slog.New(slog.DiscardHandler)}
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	tests := []struct {
		name string
		err  error
	}{
		{"network id empty", f.EnsureNetwork(NetworkSpec{ID: ""})},
		{"network id slash", f.EnsureNetwork(NetworkSpec{ID: "a/b"})},
		{"subnet not masked", f.EnsureNetwork(NetworkSpec{ID: "n", Subnets: []netip.Prefix{p("10.0.1.4/24")}})},
		{"subnet too small", f.EnsureNetwork(NetworkSpec{ID: "n", Subnets: []netip.Prefix{p("10.0.1.0/30")}})},
		{"subnet IPv6", f.EnsureNetwork(NetworkSpec{ID: "n", Subnets: []netip.Prefix{p("fd00::/64")}})},
		{"NIC network address", f.EnsureNIC(NICSpec{ID: "x", Network: "n", Address: p("10.0.1.0/24")})},
		{"NIC gateway outside", f.EnsureNIC(NICSpec{ID: "x", Network: "n", Address: p("10.0.1.4/24"), Gateway: a("10.0.2.1")})},
		{"NIC gateway is itself", f.EnsureNIC(NICSpec{ID: "x", Network: "n", Address: p("10.0.1.1/24")})},
		{"NIC multicast MAC", f.EnsureNIC(NICSpec{ID: "x", Network: "n", Address: p("10.0.1.4/24"), MAC: net.HardwareAddr{1, 2, 3, 4, 5, 6}})},
		{"NIC no network", f.EnsureNIC(NICSpec{ID: "x", Address: p("10.0.1.4/24")})},
		{"service outside 169.254/16", f.EnsureService(ServiceSpec{ID: "s", Address: p("10.0.0.2/30")})},
		{"internet host outside 198.18/15", func() error { _, err := f.EnsureInternetHost(a("8.8.8.8")); return err }()},
		{"internet host is the router", func() error { _, err := f.EnsureInternetHost(a("198.18.0.1")); return err }()},
		{"delete internet host outside", f.DeleteInternetHost(a("10.0.0.1"))},
		{"Do outside prefix", f.Do("other", func() error { return nil })},
		{"dial a name", func() error { _, err := f.DialContext(t.Context(), "plv-nic-x", "tcp", "example.com:80"); return err }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", tt.err)
			}
		})
	}
	if _, err := New("bad/prefix", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("New with a bad prefix: %v, want ErrInvalid", err)
	}
}

func TestNames(t *testing.T) {
	f := &Fabric{prefix: "pl-"}
	for _, tt := range []struct{ got, want string }{
		{f.NamespaceName(KindNetwork, "v1"), "pl-vnet-v1"},
		{f.NamespaceName(KindNIC, "n1"), "pl-nic-n1"},
		{f.NamespaceName(KindService, "s1"), "pl-svc-s1"},
		{f.NamespaceName(KindInternet, ""), "pl-inet"},
		{f.InternetHostNamespace(netip.MustParseAddr("198.18.7.9")), "pl-ih-198.18.7.9"},
		{SubnetGateway(netip.MustParsePrefix("10.0.1.0/24")).String(), "10.0.1.1"},
		{SubnetGateway(netip.MustParsePrefix("10.0.1.64/26")).String(), "10.0.1.65"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	long := strings.Repeat("x", 64)
	if n := hashedLinkName(nicLinkTag, long); len(n) > 15 || n != hashedLinkName(nicLinkTag, long) || n == hashedLinkName(nicLinkTag, long[1:]) {
		t.Errorf("hashedLinkName: %q", n)
	}
}

func TestNICsInOneNetwork(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	router := mustEnsureNetwork(t, f, "net1", "10.0.1.0/24", "10.0.2.0/24")
	a := mustEnsureNIC(t, f, "a", "net1", "10.0.1.4/24")
	b := mustEnsureNIC(t, f, "b", "net1", "10.0.2.4/24")
	c := mustEnsureNIC(t, f, "c", "net1", "10.0.1.5/24")

	srvB := serve(t, f, b, "10.0.2.4:0", "b")
	srvC := serve(t, f, c, "10.0.1.5:0", "c")
	srvA := serve(t, f, a, "10.0.1.4:0", "a")
	t.Run("other subnet", func(t *testing.T) { mustCall(t, f, a, srvB, "b 10.0.1.4") })
	t.Run("other subnet back", func(t *testing.T) { mustCall(t, f, b, srvA, "a 10.0.2.4") })
	t.Run("same subnet", func(t *testing.T) { mustCall(t, f, a, srvC, "c 10.0.1.4") })

	t.Run("DNS address and gateways answer", func(t *testing.T) {
		dns := serve(t, f, router, DNSAddr.String()+":0", "dns")
		mustCall(t, f, a, dns, "dns 10.0.1.4")
		mustCall(t, f, b, dns, "dns 10.0.2.4")
		gw := serve(t, f, router, "0.0.0.0:0", "gw")
		mustCall(t, f, a, withPort("10.0.1.1", gw), "gw 10.0.1.4")
		mustCall(t, f, b, withPort("10.0.2.1", gw), "gw 10.0.2.4")
	})

	t.Run("UDP to the DNS address", func(t *testing.T) {
		pc, err := f.ListenUDP(router, DNSAddr.String()+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		go func() {
			buf := make([]byte, 512)
			n, from, err := pc.ReadFrom(buf)
			if err == nil {
				pc.WriteTo(append([]byte("re: "), buf[:n]...), from)
			}
		}()
		conn, err := f.DialContext(t.Context(), a, "udp", pc.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("query")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 512)
		n, err := conn.Read(buf)
		if err != nil || string(buf[:n]) != "re: query" {
			t.Fatalf("got %q, %v", buf[:n], err)
		}
	})

	t.Run("MAC", func(t *testing.T) {
		mac := net.HardwareAddr{0x02, 0x50, 0x4c, 0, 0, 9}
		spec := NICSpec{ID: "a", Network: "net1", Address: netip.MustParsePrefix("10.0.1.4/24"), MAC: mac}
		if err := f.EnsureNIC(spec); err != nil {
			t.Fatal(err)
		}
		r, err := f.open(a, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer r.close()
		l, err := linkByName(r, "eth0")
		if err != nil || l == nil || l.Attrs().HardwareAddr.String() != mac.String() {
			t.Fatalf("eth0 %v, %v; want MAC %s", l, err, mac)
		}
		mustCall(t, f, c, srvA, "a 10.0.1.5")
	})

	t.Run("address change", func(t *testing.T) {
		mustEnsureNIC(t, f, "c", "net1", "10.0.2.9/24")
		srv := serve(t, f, c, "10.0.2.9:0", "c2")
		mustCall(t, f, a, srv, "c2 10.0.1.4")
		mustNotConnect(t, f, a, srvC) // the old address is gone
	})
}

func TestNetworksAreIsolated(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	mustEnsureNetwork(t, f, "one", "10.0.1.0/24")
	mustEnsureNetwork(t, f, "two", "10.1.1.0/24")
	a := mustEnsureNIC(t, f, "a", "one", "10.0.1.4/24")
	b := mustEnsureNIC(t, f, "b", "two", "10.1.1.4/24")
	srvA := serve(t, f, a, "10.0.1.4:0", "a")
	srvB := serve(t, f, b, "10.1.1.4:0", "b")
	mustNotConnect(t, f, b, srvA)
	mustNotConnect(t, f, a, srvB)
	// Nor through the other network's gateway or DNS.
	mustNotConnect(t, f, a, withPort("10.1.1.1", srvB))
}

func TestOverlappingNetworks(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	for _, n := range []string{"left", "right"} {
		mustEnsureNetwork(t, f, n, "10.0.1.0/24")
		srv := mustEnsureNIC(t, f, n+"-srv", n, "10.0.1.4/24")
		cli := mustEnsureNIC(t, f, n+"-cli", n, "10.0.1.5/24")
		addr := serve(t, f, srv, "10.0.1.4:0", n)
		mustCall(t, f, cli, addr, n+" 10.0.1.5")
	}
	// Both again, now that both exist with the same addresses.
	for _, n := range []string{"left", "right"} {
		ln, err := f.ListenTCP(f.NamespaceName(KindNIC, n+"-srv"), "10.0.1.4:7000")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(n + "\n"))
				c.Close()
			}
		}()
	}
	for _, n := range []string{"left", "right"} {
		mustCall(t, f, f.NamespaceName(KindNIC, n+"-cli"), "10.0.1.4:7000", n)
	}
}

func TestEnsureTwiceIsNoop(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	ensureAll := func() []string {
		router := mustEnsureNetwork(t, f, "net1", "10.0.1.0/24", "10.0.2.0/24")
		nic := mustEnsureNIC(t, f, "a", "net1", "10.0.1.4/24")
		if err := f.EnsureService(ServiceSpec{ID: "s1", Address: netip.MustParsePrefix("169.254.10.2/30")}); err != nil {
			t.Fatal(err)
		}
		host, err := f.EnsureInternetHost(netip.MustParseAddr("198.18.7.9"))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, ns := range []string{router, nic, f.NamespaceName(KindService, "s1"), f.NamespaceName(KindInternet, ""), host} {
			out = append(out, nsState(t, f, ns))
		}
		return out
	}
	first := ensureAll()
	second := ensureAll()
	for i := range first {
		if first[i] != second[i] {
			t.Errorf("state changed by a second Ensure:\nfirst:\n%s\nsecond:\n%s", first[i], second[i])
		}
	}
	names, err := f.ListOwned()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		f.prefix + "ih-198.18.7.9", f.prefix + "inet", f.prefix + "nic-a", f.prefix + "svc-s1", f.prefix + "vnet-net1",
	}
	if !slices.Equal(names, want) {
		t.Errorf("ListOwned = %q, want %q", names, want)
	}
}

func TestNetworkConverges(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	router := mustEnsureNetwork(t, f, "net1", "10.0.1.0/24", "10.0.2.0/24", "10.0.3.64/26")
	loAddrs := func() []string {
		t.Helper()
		r, err := f.open(router, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer r.close()
		lo, err := linkByName(r, "lo")
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := addrList(r.h, lo)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range addrs {
			out = append(out, a.IPNet.String()+" "+a.Label)
		}
		slices.Sort(out)
		return out
	}
	want := []string{"10.0.1.1/32 lo:gw", "10.0.2.1/32 lo:gw", "10.0.3.65/32 lo:gw", "127.0.0.1/8 lo", "168.63.129.16/32 lo:dns"}
	if got := loAddrs(); !slices.Equal(got, want) {
		t.Fatalf("lo: %q, want %q", got, want)
	}
	// An address of someone else's (another label) survives; a removed
	// subnet's gateway does not.
	if out, err := exec.Command("ip", "-n", router, "addr", "add", "10.0.2.5/32", "dev", "lo", "label", "lo:other").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add: %v: %s", err, out)
	}
	mustEnsureNetwork(t, f, "net1", "10.0.1.0/24", "10.0.3.64/26")
	want = []string{"10.0.1.1/32 lo:gw", "10.0.2.5/32 lo:other", "10.0.3.65/32 lo:gw", "127.0.0.1/8 lo", "168.63.129.16/32 lo:dns"}
	if got := loAddrs(); !slices.Equal(got, want) {
		t.Fatalf("lo: %q, want %q", got, want)
	}
	// Private endpoint addresses come and go with the spec.
	spec := NetworkSpec{ID: "net1", Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24"), netip.MustParsePrefix("10.0.3.64/26")},
		Endpoints: []netip.Addr{netip.MustParseAddr("10.0.1.5")}}
	if err := f.EnsureNetwork(spec); err != nil {
		t.Fatal(err)
	}
	want = []string{"10.0.1.1/32 lo:gw", "10.0.1.5/32 lo:pe", "10.0.2.5/32 lo:other", "10.0.3.65/32 lo:gw", "127.0.0.1/8 lo", "168.63.129.16/32 lo:dns"}
	if got := loAddrs(); !slices.Equal(got, want) {
		t.Fatalf("lo with an endpoint: %q, want %q", got, want)
	}
	// DNS resolver inbound addresses carry a label of their own.
	spec.DNS = []netip.Addr{netip.MustParseAddr("10.0.3.68")}
	if err := f.EnsureNetwork(spec); err != nil {
		t.Fatal(err)
	}
	want = []string{"10.0.1.1/32 lo:gw", "10.0.1.5/32 lo:pe", "10.0.2.5/32 lo:other", "10.0.3.65/32 lo:gw", "10.0.3.68/32 lo:dnsin", "127.0.0.1/8 lo", "168.63.129.16/32 lo:dns"}
	if got := loAddrs(); !slices.Equal(got, want) {
		t.Fatalf("lo with an inbound DNS address: %q, want %q", got, want)
	}
	spec.DNS = []netip.Addr{netip.MustParseAddr("10.0.9.8")}
	if err := f.EnsureNetwork(spec); !errors.Is(err, ErrInvalid) {
		t.Fatalf("inbound DNS address outside every subnet: %v, want ErrInvalid", err)
	}
	spec.DNS = nil
	spec.Endpoints = []netip.Addr{netip.MustParseAddr("10.0.9.9")}
	if err := f.EnsureNetwork(spec); !errors.Is(err, ErrInvalid) {
		t.Fatalf("endpoint outside every subnet: %v, want ErrInvalid", err)
	}
	mustEnsureNetwork(t, f, "net1", "10.0.1.0/24", "10.0.3.64/26")
	// IP forwarding is switched back on.
	if err := f.Do(router, func() error { _, err := setSysctl("net/ipv4/ip_forward", "0"); return err }); err != nil {
		t.Fatal(err)
	}
	mustEnsureNetwork(t, f, "net1", "10.0.1.0/24", "10.0.3.64/26")
	if err := f.Do(router, func() error {
		changed, err := setSysctl("net/ipv4/ip_forward", "1")
		if changed {
			return errors.New("ip_forward was off after EnsureNetwork")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureNICHeals(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	router := mustEnsureNetwork(t, f, "net1", "10.0.1.0/24")
	a := mustEnsureNIC(t, f, "a", "net1", "10.0.1.4/24")
	b := mustEnsureNIC(t, f, "b", "net1", "10.0.1.5/24")
	srvB := serve(t, f, b, "10.0.1.5:0", "b")
	mustCall(t, f, a, srvB, "b 10.0.1.4")

	ipCmd := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Run("namespace deleted", func(t *testing.T) {
		ipCmd("netns", "delete", a)
		mustEnsureNIC(t, f, "a", "net1", "10.0.1.4/24")
		mustCall(t, f, a, srvB, "b 10.0.1.4")
	})
	t.Run("router-side link deleted", func(t *testing.T) {
		ipCmd("-n", router, "link", "delete", RouterLinkName("a"))
		mustNotConnect(t, f, a, srvB)
		mustEnsureNIC(t, f, "a", "net1", "10.0.1.4/24")
		mustCall(t, f, a, srvB, "b 10.0.1.4")
	})
	t.Run("address and route removed", func(t *testing.T) {
		ipCmd("-n", a, "route", "flush", "default")
		ipCmd("-n", a, "addr", "flush", "dev", "eth0")
		ipCmd("-n", router, "link", "set", RouterLinkName("a"), "down")
		mustEnsureNIC(t, f, "a", "net1", "10.0.1.4/24")
		mustCall(t, f, a, srvB, "b 10.0.1.4")
	})
	t.Run("stale namespace entry", func(t *testing.T) {
		ipCmd("netns", "delete", a)
		if err := os.WriteFile(nsPath(a), nil, 0o444); err != nil {
			t.Fatal(err)
		}
		mustEnsureNIC(t, f, "a", "net1", "10.0.1.4/24")
		mustCall(t, f, a, srvB, "b 10.0.1.4")
	})
	t.Run("router deleted", func(t *testing.T) {
		ipCmd("netns", "delete", router)
		mustEnsureNetwork(t, f, "net1", "10.0.1.0/24")
		mustEnsureNIC(t, f, "a", "net1", "10.0.1.4/24")
		mustEnsureNIC(t, f, "b", "net1", "10.0.1.5/24")
		mustCall(t, f, a, srvB, "b 10.0.1.4")
	})
	t.Run("moved to another network", func(t *testing.T) {
		mustEnsureNetwork(t, f, "net2", "10.0.1.0/24")
		mustEnsureNIC(t, f, "a", "net2", "10.0.1.4/24")
		mustNotConnect(t, f, a, srvB)
		if l, err := linkByNameIn(f, router, RouterLinkName("a")); err != nil || l != nil {
			t.Fatalf("old router still has the NIC's link: %v %v", l, err)
		}
	})
	t.Run("missing network", func(t *testing.T) {
		err := f.EnsureNIC(NICSpec{ID: "z", Network: "nope", Address: netip.MustParsePrefix("10.0.1.9/24")})
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
	})
}

func linkByNameIn(f *Fabric, ns, name string) (netlink.Link, error) {
	r, err := f.open(ns, nil)
	if err != nil {
		return nil, err
	}
	defer r.close()
	return linkByName(r, name)
}

func TestDelete(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	mustEnsureNetwork(t, f, "gone", "10.0.1.0/24")
	mustEnsureNetwork(t, f, "stays", "10.0.1.0/24")
	for _, id := range []string{"g1", "g2", "g3"} {
		mustEnsureNIC(t, f, id, "gone", "10.0.1.4/24")
	}
	s1 := mustEnsureNIC(t, f, "s1", "stays", "10.0.1.4/24")
	s2 := mustEnsureNIC(t, f, "s2", "stays", "10.0.1.5/24")

	if err := f.DeleteNetwork("gone"); err != nil {
		t.Fatal(err)
	}
	if err := f.DeleteNetwork("gone"); err != nil {
		t.Fatalf("second DeleteNetwork: %v", err)
	}
	names, err := f.ListOwned()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{s1, s2, f.NamespaceName(KindNetwork, "stays")}
	if !slices.Equal(names, want) {
		t.Fatalf("after DeleteNetwork: %q, want %q", names, want)
	}
	for _, id := range []string{"g1", "g2", "g3"} {
		if _, err := os.Stat(filepath.Join(etcNetnsDir, f.NamespaceName(KindNIC, id))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("/etc/netns of %s: %v", id, err)
		}
	}
	srv := serve(t, f, s1, "10.0.1.4:0", "s1")
	mustCall(t, f, s2, srv, "s1 10.0.1.5")

	t.Run("NIC deleted while a socket holds its namespace", func(t *testing.T) {
		// The listener keeps s1's namespace alive after the unmount; the
		// router must forget s1 all the same.
		if err := f.DeleteNIC("s1"); err != nil {
			t.Fatal(err)
		}
		if err := f.DeleteNIC("s1"); err != nil {
			t.Fatalf("second DeleteNIC: %v", err)
		}
		mustNotConnect(t, f, s2, srv)
	})
	if err := f.EnsureService(ServiceSpec{ID: "x", Address: netip.MustParsePrefix("169.254.1.2/30")}); err != nil {
		t.Fatal(err)
	}
	for _, del := range []func() error{
		func() error { return f.DeleteService("x") },
		func() error { return f.DeleteService("x") },
		func() error { return f.DeleteInternetHost(netip.MustParseAddr("198.18.1.1")) },
		f.DeleteInternet,
	} {
		if err := del(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRemoveStale(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	keepRouter := mustEnsureNetwork(t, f, "keep", "10.0.1.0/24")
	keepNIC := mustEnsureNIC(t, f, "k", "keep", "10.0.1.4/24")
	mustEnsureNetwork(t, f, "drop", "10.0.1.0/24")
	mustEnsureNIC(t, f, "d", "drop", "10.0.1.4/24")
	if err := f.EnsureService(ServiceSpec{ID: "old", Address: netip.MustParsePrefix("169.254.1.2/30")}); err != nil {
		t.Fatal(err)
	}
	orphan := filepath.Join(etcNetnsDir, f.prefix+"nic-orphan")
	if err := os.MkdirAll(orphan, 0o755); err != nil {
		t.Fatal(err)
	}
	keep := []string{keepRouter, keepNIC}
	if err := f.RemoveStale(func(name string) bool { return slices.Contains(keep, name) }); err != nil {
		t.Fatal(err)
	}
	names, err := f.ListOwned()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{keepNIC, keepRouter}; !slices.Equal(names, want) {
		t.Fatalf("after RemoveStale: %q, want %q", names, want)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan %s: %v", orphan, err)
	}
	if _, err := os.Stat(filepath.Join(etcNetnsDir, keepNIC, "resolv.conf")); err != nil {
		t.Errorf("kept NIC's resolv.conf: %v", err)
	}
}

func TestResolvConf(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	mustEnsureNetwork(t, f, "net1", "10.0.1.0/24")
	nic := mustEnsureNIC(t, f, "a", "net1", "10.0.1.4/24")
	out, err := exec.Command("ip", "netns", "exec", nic, "cat", "/etc/resolv.conf").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns exec: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if !slices.Contains(lines, "nameserver 168.63.129.16") || slices.ContainsFunc(lines, func(l string) bool {
		return strings.HasPrefix(l, "search") || (strings.HasPrefix(l, "nameserver") && l != "nameserver 168.63.129.16")
	}) {
		t.Fatalf("resolv.conf in %s:\n%s", nic, out)
	}
	// A NIC's own DNS servers (dnsSettings.dnsServers) replace it, in order.
	spec := NICSpec{ID: "b", Network: "net1", Address: netip.MustParsePrefix("10.0.1.5/24"),
		DNS: []netip.Addr{netip.MustParseAddr("10.0.1.200"), netip.MustParseAddr("10.0.1.201")}}
	if err := f.EnsureNIC(spec); err != nil {
		t.Fatal(err)
	}
	b := f.NamespaceName(KindNIC, "b")
	out, err = exec.Command("ip", "netns", "exec", b, "cat", "/etc/resolv.conf").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns exec: %v: %s", err, out)
	}
	var servers []string
	for _, l := range strings.Split(string(out), "\n") {
		if s, ok := strings.CutPrefix(l, "nameserver "); ok {
			servers = append(servers, s)
		}
	}
	if !slices.Equal(servers, []string{"10.0.1.200", "10.0.1.201"}) {
		t.Fatalf("resolv.conf in %s:\n%s", b, out)
	}
}

func TestInternet(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	if err := f.EnsureInternet(); err != nil {
		t.Fatal(err)
	}
	inet := f.NamespaceName(KindInternet, "")
	h1, err := f.EnsureInternetHost(netip.MustParseAddr("198.18.7.9"))
	if err != nil {
		t.Fatal(err)
	}
	h2, err := f.EnsureInternetHost(netip.MustParseAddr("198.19.200.1"))
	if err != nil {
		t.Fatal(err)
	}
	if h1 != f.prefix+"ih-198.18.7.9" {
		t.Errorf("host namespace %q", h1)
	}
	router := serve(t, f, inet, "198.18.0.1:0", "inet")
	mustCall(t, f, h1, router, "inet 198.18.7.9")
	mustCall(t, f, h2, router, "inet 198.19.200.1")
	srv2 := serve(t, f, h2, "198.19.200.1:0", "h2")
	mustCall(t, f, h1, srv2, "h2 198.18.7.9")

	// The internet and the virtual networks never meet.
	mustEnsureNetwork(t, f, "net1", "10.0.1.0/24")
	nic := mustEnsureNIC(t, f, "a", "net1", "10.0.1.4/24")
	mustNotConnect(t, f, nic, router)
	srvNIC := serve(t, f, nic, "10.0.1.4:0", "nic")
	mustNotConnect(t, f, h1, srvNIC)

	if err := f.DeleteInternetHost(netip.MustParseAddr("198.19.200.1")); err != nil {
		t.Fatal(err)
	}
	mustNotConnect(t, f, h1, srv2)
}

func TestService(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	spec := ServiceSpec{ID: "pg1", Address: netip.MustParsePrefix("169.254.10.2/30")}
	if err := f.EnsureService(spec); err != nil {
		t.Fatal(err)
	}
	ns := f.NamespaceName(KindService, "pg1")
	srv := serve(t, f, ns, "169.254.10.2:0", "pg")
	mustCall(t, f, ns, srv, "pg 169.254.10.2")

	spec.Address = netip.MustParsePrefix("169.254.20.2/30")
	if err := f.EnsureService(spec); err != nil {
		t.Fatal(err)
	}
	r, err := f.open(ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	l, err := linkByName(r, "lo")
	if err != nil || l == nil {
		t.Fatalf("lo: %v %v", l, err)
	}
	addrs, err := addrList(r.h, l)
	var got []netip.Prefix
	for _, a := range addrs {
		got = append(got, addrPrefix(a))
	}
	if want := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), spec.Address}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("lo addresses %v (%v), want %v", got, err, want)
	}
	// Only the address is local, not its /30.
	mustNotConnect(t, f, ns, "169.254.20.1:5432")
}

// TestRouterFilter checks that a router forwards between its NICs and
// nothing else: a link of another kind into the router gets no forwarded
// traffic while the filter is there, and does once the filter is removed.
func TestRouterFilter(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	router := mustEnsureNetwork(t, f, "net1", "10.0.1.0/24")
	nic := mustEnsureNIC(t, f, "a", "net1", "10.0.1.4/24")

	// An outside namespace on a link the filter does not know ("z0").
	outside := f.NamespaceName("test", "outside")
	func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		rr, err := f.open(router, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer rr.close()
		or, _, err := f.ensureNS(outside, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer or.close()
		rl, ol, _, err := ensureVethPair(rr, "z0", or, "eth0", nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, step := range []error{
			ensureAddrs(rr, rl, []netip.Prefix{netip.MustParsePrefix("10.99.0.1/24")}, "", 0, allAddrs),
			ensureUp(rr, rl),
			ensureAddrs(or, ol, []netip.Prefix{netip.MustParsePrefix("10.99.0.2/24")}, "", 0, allAddrs),
			ensureUp(or, ol),
			ensureDefaultRoute(or, ol, netip.MustParseAddr("10.99.0.1"), false),
		} {
			if step != nil {
				t.Fatal(step)
			}
		}
	}()
	out := serve(t, f, outside, "10.99.0.2:0", "outside")
	in := serve(t, f, nic, "10.0.1.4:0", "nic")
	// The router itself reaches both (input, not forward).
	mustCall(t, f, router, out, "outside 10.99.0.1")
	if got, err := call(f, router, in, 5*time.Second); err != nil || !strings.HasPrefix(got, "nic ") {
		t.Fatalf("router to NIC: %q, %v", got, err)
	}
	mustNotConnect(t, f, nic, out)
	mustNotConnect(t, f, outside, in)

	c := nftIn(t, f, router)
	ch, err := findChain(c, NFTTable, NFTForwardChain)
	if err != nil || ch == nil {
		t.Fatalf("chain: %v %v", ch, err)
	}
	comments, err := ruleComments(c, ch)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"privlink: established", "privlink: nic to nic", "privlink: nic to internet", "privlink: nic to peering", "privlink: peering to nic", "privlink: nic to vpn gateway", "privlink: vpn gateway to nic", "privlink: translated"}; !slices.Equal(comments, want) {
		t.Fatalf("rules %q, want %q", comments, want)
	}

	// Control: without the filter the outside is one hop away.
	c.DelTable(&nftables.Table{Name: NFTTable, Family: nftables.TableFamilyINet})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	mustCall(t, f, nic, out, "outside 10.0.1.4")
	// And EnsureNetwork puts it back.
	mustEnsureNetwork(t, f, "net1", "10.0.1.0/24")
	mustNotConnect(t, f, nic, out)
}

// TestDoRestoresThreads checks that Do leaves no OS thread in another
// namespace: after many Do calls, every locked thread the runtime hands out
// is in the host namespace.
func TestDoRestoresThreads(t *testing.T) {
	f := newTestFabric(t)
	if err := f.EnsureService(ServiceSpec{ID: "s", Address: netip.MustParsePrefix("169.254.1.2/30")}); err != nil {
		t.Fatal(err)
	}
	ns := f.NamespaceName(KindService, "s")
	host, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			err := f.Do(ns, func() error {
				cur, err := netns.Get()
				if err != nil {
					return err
				}
				defer cur.Close()
				if cur.Equal(host) {
					return errors.New("still in the host namespace")
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := f.Do(ns, func() error { return os.ErrClosed }); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Do's error: %v, want fn's", err)
	}
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cur, err := netns.Get()
			if err != nil {
				t.Error(err)
				return
			}
			defer cur.Close()
			if !cur.Equal(host) {
				t.Error("a thread was left in another namespace")
			}
		})
	}
	wg.Wait()
}

// TestNoFDLeak runs a whole cycle twice and checks that the process holds
// no more file descriptors or goroutines afterwards.
func TestNoFDLeak(t *testing.T) {
	f := newTestFabric(t)
	var goroutinesBefore int
	cycle := func() {
		mustEnsureNetwork(t, f, "net1", "10.0.1.0/24")
		mustEnsureNIC(t, f, "a", "net1", "10.0.1.4/24")
		mustEnsureNIC(t, f, "a", "net1", "10.0.1.4/24")
		if _, err := f.EnsureInternetHost(netip.MustParseAddr("198.18.1.1")); err != nil {
			t.Fatal(err)
		}
		if err := f.Do(f.NamespaceName(KindNIC, "a"), func() error { return nil }); err != nil {
			t.Fatal(err)
		}
		if err := f.DeleteNetwork("net1"); err != nil {
			t.Fatal(err)
		}
		if err := f.DeleteInternet(); err != nil {
			t.Fatal(err)
		}
	}
	settle := func() int {
		// Goroutines of closed listeners and of Do calls end promptly.
		n := runtime.NumGoroutine()
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && n > goroutinesBefore; n = runtime.NumGoroutine() {
			time.Sleep(10 * time.Millisecond)
		}
		return n
	}
	countFDs := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	cycle()
	before := countFDs()
	goroutinesBefore = runtime.NumGoroutine()
	cycle()
	cycle()
	if after := countFDs(); after > before {
		t.Errorf("file descriptors: %d before, %d after", before, after)
	}
	if after := settle(); after > goroutinesBefore {
		t.Errorf("goroutines: %d before, %d after", goroutinesBefore, after)
	}
}
