package fabric

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/privlink/privlink/internal/testkit"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tWriter sends log lines to t.Log.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newTestFabric returns a Fabric with a prefix of its own ("plt-" and 8 hex
// digits), so parallel tests and runs never collide. Cleanup removes every
// namespace of the prefix, then checks that none is left and that the host
// namespace's links and routes are as they were before.
func newTestFabric(t testing.TB) *Fabric {
	t.Helper()
	testkit.RequireRoot(t, "fabric tests create network namespaces")
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	prefix := "plt-" + hex.EncodeToString(b[:]) + "-"
	before := snapshotHost(t)
	level := slog.LevelInfo
	switch {
	case isBenchmark(t):
		level = slog.LevelWarn
	case testing.Verbose():
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level}))
	f, err := New(prefix, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.RemoveStale(func(string) bool { return false }); err != nil {
			t.Errorf("remove namespaces of %s: %v", prefix, err)
		}
		if names, err := f.ListOwned(); err != nil || len(names) != 0 {
			t.Errorf("namespaces of %s left: %v (err %v)", prefix, names, err)
		}
		if left, _ := filepath.Glob(filepath.Join(etcNetnsDir, prefix+"*")); len(left) != 0 {
			t.Errorf("%s entries of %s left: %v", etcNetnsDir, prefix, left)
		}
		after := snapshotHost(t)
		if !slices.Equal(before.links, after.links) {
			t.Errorf("host links changed:\nbefore %q\nafter  %q", before.links, after.links)
		}
		if !slices.Equal(before.routes, after.routes) {
			t.Errorf("host routes changed:\nbefore %q\nafter  %q", before.routes, after.routes)
		}
		if !slices.Equal(before.nft, after.nft) {
			t.Errorf("host nftables ruleset changed:\nbefore %q\nafter  %q", before.nft, after.nft)
		}
	})
	return f
}

func isBenchmark(t testing.TB) bool {
	_, ok := t.(*testing.B)
	return ok
}

type hostSnapshot struct{ links, routes, nft []string }

// snapshotHost lists the host namespace's links and routes (the test's
// threads are all in the host namespace).
func snapshotHost(t testing.TB) hostSnapshot {
	t.Helper()
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		t.Fatalf("host links: %v", err)
	}
	var s hostSnapshot
	for _, l := range links {
		a := l.Attrs()
		s.links = append(s.links, fmt.Sprintf("%d %s %s %s", a.Index, a.Name, l.Type(), a.HardwareAddr))
	}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{}, 0)
	})
	if err != nil {
		t.Fatalf("host routes: %v", err)
	}
	for _, r := range routes {
		s.routes = append(s.routes, fmt.Sprintf("table %d type %d dst %v gw %v dev %d src %v", r.Table, r.Type, r.Dst, r.Gw, r.LinkIndex, r.Src))
	}
	slices.Sort(s.links)
	slices.Sort(s.routes)
	s.nft = hostRuleset(t)
	return s
}

// hostRuleset lists the host namespace's nftables tables, chains, rule
// handles, sets and objects.
func hostRuleset(t testing.TB) []string {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatalf("host nftables: %v", err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatalf("host nftables tables: %v", err)
	}
	var out []string
	for _, tb := range tables {
		out = append(out, fmt.Sprintf("table %d %s", tb.Family, tb.Name))
		sets, err := c.GetSets(tb)
		if err != nil {
			t.Fatalf("host nftables sets of %s: %v", tb.Name, err)
		}
		for _, st := range sets {
			out = append(out, fmt.Sprintf("set %d %s %s", tb.Family, tb.Name, st.Name))
		}
		objs, err := c.GetNamedObjects(tb)
		if err != nil {
			t.Fatalf("host nftables objects of %s: %v", tb.Name, err)
		}
		for _, o := range objs {
			if no, ok := o.(*nftables.NamedObj); ok {
				out = append(out, fmt.Sprintf("object %d %s %s", tb.Family, tb.Name, no.Name))
			}
		}
	}
	chains, err := c.ListChains()
	if err != nil {
		t.Fatalf("host nftables chains: %v", err)
	}
	for _, ch := range chains {
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			t.Fatalf("host nftables rules of %s: %v", ch.Name, err)
		}
		for _, r := range rules {
			out = append(out, fmt.Sprintf("rule %d %s %s %d", ch.Table.Family, ch.Table.Name, ch.Name, r.Handle))
		}
		out = append(out, fmt.Sprintf("chain %d %s %s", ch.Table.Family, ch.Table.Name, ch.Name))
	}
	slices.Sort(out)
	return out
}

func mustEnsureNetwork(t testing.TB, f *Fabric, id string, subnets ...string) string {
	t.Helper()
	spec := NetworkSpec{ID: id}
	for _, s := range subnets {
		spec.Subnets = append(spec.Subnets, netip.MustParsePrefix(s))
	}
	if err := f.EnsureNetwork(spec); err != nil {
		t.Fatal(err)
	}
	return f.NamespaceName(KindNetwork, id)
}

func mustEnsureNIC(t testing.TB, f *Fabric, id, network, addr string) string {
	t.Helper()
	if err := f.EnsureNIC(NICSpec{ID: id, Network: network, Address: netip.MustParsePrefix(addr)}); err != nil {
		t.Fatal(err)
	}
	return f.NamespaceName(KindNIC, id)
}

// serve listens on addr (port 0 for any) in namespace ns and answers every
// connection with greeting followed by the peer's address it saw. It returns
// the listener's address.
func serve(t testing.TB, f *Fabric, ns, addr, greeting string) string {
	t.Helper()
	ln, err := f.ListenTCP(ns, addr)
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns, err)
	}
	testkit.Serve(t, ln, func(c net.Conn) {
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		fmt.Fprintf(c, "%s %s\n", greeting, host)
		c.Close()
	})
	return ln.Addr().String()
}

// call connects from namespace ns to addr and returns the line it reads.
func call(f *Fabric, ns, addr string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := f.DialContext(ctx, ns, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// mustCall is call that must succeed with want.
func mustCall(t testing.TB, f *Fabric, ns, addr, want string) {
	t.Helper()
	got, err := call(f, ns, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("from %s to %s: %v", ns, addr, err)
	}
	if got != want {
		t.Fatalf("from %s to %s: got %q, want %q", ns, addr, got, want)
	}
}

// mustNotConnect checks that a connection from ns to addr fails (refused
// packets, unreachable, or silence until the bound).
func mustNotConnect(t testing.TB, f *Fabric, ns, addr string) {
	t.Helper()
	got, err := call(f, ns, addr, 1500*time.Millisecond)
	if err == nil {
		t.Fatalf("from %s to %s: connected (%q), want no path", ns, addr, got)
	}
	t.Logf("from %s to %s: %v (as wanted)", ns, addr, err)
}

// withPort returns host:port of addr's port on host.
func withPort(host, addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return net.JoinHostPort(host, port)
}

// nsState describes the observable state of a namespace (links, addresses,
// routes and the router filter's rule handles), for comparing before and
// after an Ensure.
func nsState(t testing.TB, f *Fabric, name string) string {
	t.Helper()
	r, err := f.open(name, nil)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer r.close()
	var b strings.Builder
	var st unix.Stat_t
	if err := unix.Stat(nsPath(name), &st); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "namespace inode %d\n", st.Ino)
	links, err := linkList(r.h)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		a := l.Attrs()
		fmt.Fprintf(&b, "link %d %s %s %s up=%v alias=%q\n", a.Index, a.Name, l.Type(), a.HardwareAddr, a.Flags&net.FlagUp != 0, a.Alias)
		addrs, err := addrList(r.h, l)
		if err != nil {
			t.Fatal(err)
		}
		for _, ad := range addrs {
			fmt.Fprintf(&b, "  addr %s %s\n", ad.IPNet, ad.Label)
		}
	}
	routes, err := routeList(r.h, &netlink.Route{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range routes {
		fmt.Fprintf(&b, "route table %d %v via %v dev %d\n", rt.Table, rt.Dst, rt.Gw, rt.LinkIndex)
	}
	c, err := nftConn(r)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	if ch, err := findChain(c, NFTTable, NFTForwardChain); err != nil {
		t.Fatal(err)
	} else if ch != nil {
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			t.Fatal(err)
		}
		for _, rl := range rules {
			fmt.Fprintf(&b, "nft rule handle %d\n", rl.Handle)
		}
	}
	return b.String()
}

// nftIn returns an nftables connection in namespace ns, closed when the
// test ends.
func nftIn(t testing.TB, f *Fabric, ns string) *nftables.Conn {
	t.Helper()
	r, err := f.open(ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close() // the socket stays in the namespace
	c, err := nftConn(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseLasting() })
	return c
}

// tableRules returns the chains of the privlink table that c sees, each
// with its rules, in the kernel's order.
func tableRules(t testing.TB, c *nftables.Conn) ([]*nftables.Chain, [][]*nftables.Rule) {
	t.Helper()
	all, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	var chains []*nftables.Chain
	var rules [][]*nftables.Rule
	for _, ch := range all {
		if ch.Table.Name != NFTTable {
			continue
		}
		rs, err := c.GetRules(ch.Table, ch)
		if err != nil {
			t.Fatal(err)
		}
		chains, rules = append(chains, ch), append(rules, rs)
	}
	return chains, rules
}
