package fabric

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/privlink/privlink/internal/testkit"
	"golang.org/x/sys/unix"
)

// pgPort is the port the data path tests translate, PostgreSQL's.
const pgPort = 5432

// hangGuard bounds every wait of these tests; it only keeps a broken data
// path from hanging the test, it is not what they assert.
const hangGuard = 10 * time.Second

var (
	mustAddr     = netip.MustParseAddr
	mustAddrPort = netip.MustParseAddrPort
)

func mustEnsureService(t testing.TB, f *Fabric, id, addr string) string {
	t.Helper()
	if err := f.EnsureService(ServiceSpec{ID: id, Address: netip.PrefixFrom(mustAddr(addr), 32)}); err != nil {
		t.Fatal(err)
	}
	return f.NamespaceName(KindService, id)
}

func mustEnsureNetworkWithEndpoints(t testing.TB, f *Fabric, id string, subnets []string, endpoints ...string) string {
	t.Helper()
	spec := NetworkSpec{ID: id}
	for _, s := range subnets {
		spec.Subnets = append(spec.Subnets, netip.MustParsePrefix(s))
	}
	for _, e := range endpoints {
		spec.Endpoints = append(spec.Endpoints, mustAddr(e))
	}
	if err := f.EnsureNetwork(spec); err != nil {
		t.Fatal(err)
	}
	return f.NamespaceName(KindNetwork, id)
}

func mustEnsureEndpoints(t testing.TB, f *Fabric, network string, eps ...EndpointNAT) []Flow {
	t.Helper()
	revoked, err := f.EnsureEndpoints(network, eps)
	if err != nil {
		t.Fatalf("EnsureEndpoints(%s): %v", network, err)
	}
	return revoked
}

func mustEnsurePublic(t testing.TB, f *Fabric, pubs ...PublicNAT) []Flow {
	t.Helper()
	revoked, err := f.EnsurePublic(pubs)
	if err != nil {
		t.Fatalf("EnsurePublic: %v", err)
	}
	return revoked
}

// echoServer listens in a namespace; it greets every connection with its
// greeting and the peer's address it sees, then echoes what it reads. ends
// receives, for each connection, the error its read ended with.
type echoServer struct {
	ln   net.Listener
	ends chan error
}

func startEcho(t testing.TB, f *Fabric, ns, addr, greeting string) *echoServer {
	t.Helper()
	ln, err := f.ListenTCP(ns, addr)
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns, err)
	}
	s := &echoServer{ln: ln, ends: make(chan error, 64)}
	testkit.Serve(t, ln, func(c net.Conn) {
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		_, err := fmt.Fprintf(c, "%s %s\n", greeting, host)
		if err == nil {
			// Hidden from io.Copy's splice, whose pooled pipes would
			// look like leaks.
			_, err = io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
		}
		if err == nil {
			err = io.EOF
		}
		c.Close()
		select {
		case s.ends <- err:
		default: // a test that does not read them
		}
	})
	return s
}

// nextEnd returns how the next server-side connection ended.
func (s *echoServer) nextEnd(t testing.TB) error {
	t.Helper()
	select {
	case err := <-s.ends:
		return err
	case <-time.After(hangGuard):
		t.Fatalf("no server-side connection ended within %v", hangGuard)
		return nil
	}
}

// session is a client connection to an echoServer, past its greeting.
type session struct {
	c        net.Conn
	r        *bufio.Reader
	greeting string
}

func dialSession(t testing.TB, f *Fabric, ns, addr string) *session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c, err := f.DialContext(ctx, ns, "tcp", addr)
	if err != nil {
		t.Fatalf("from %s to %s: %v", ns, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	s := &session{c: c, r: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(hangGuard))
	line, err := s.r.ReadString('\n')
	if err != nil {
		t.Fatalf("from %s to %s: greeting: %v", ns, addr, err)
	}
	c.SetDeadline(time.Time{})
	s.greeting = strings.TrimSpace(line)
	return s
}

// echo sends msg and reads it back.
func (s *session) echo(msg string) error {
	s.c.SetDeadline(time.Now().Add(hangGuard))
	defer s.c.SetDeadline(time.Time{})
	if _, err := io.WriteString(s.c, msg+"\n"); err != nil {
		return err
	}
	line, err := s.r.ReadString('\n')
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(line); got != msg {
		return fmt.Errorf("echo: got %q, want %q", got, msg)
	}
	return nil
}

// isReset reports whether err says the peer reset the connection.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// logRuleset logs `nft list ruleset` of namespace ns, when nft is there.
func logRuleset(t testing.TB, ns string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Logf("nft list ruleset in %s: %v: %s", ns, err, out)
		return
	}
	t.Logf("nft list ruleset in %s:\n%s", ns, out)
}

// tableDump describes the nftables objects in namespace ns: every chain
// of the privlink table with its rules' handles and comments, the named
// objects, and the sets with their elements.
func tableDump(t testing.TB, f *Fabric, ns string) string {
	t.Helper()
	c := nftIn(t, f, ns)
	var b strings.Builder
	table := &nftables.Table{Name: NFTTable, Family: nftables.TableFamilyINet}
	chains, rules := tableRules(t, c)
	for i, ch := range chains {
		comments, err := ruleComments(c, ch)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "chain %s\n", ch.Name)
		for j, rl := range rules[i] {
			fmt.Fprintf(&b, "  rule %d %q\n", rl.Handle, comments[j])
		}
	}
	objs, err := c.GetNamedObjects(table)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if no, ok := o.(*nftables.NamedObj); ok {
			fmt.Fprintf(&b, "object %s\n", no.Name)
		}
	}
	sets, err := c.GetSets(table)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		elems, err := c.GetSetElements(s)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "set %s %q\n", s.Name, elementKeys(elems))
	}
	return b.String()
}

// ruleHandles returns the handles of the rules of chain in namespace ns.
func ruleHandles(t testing.TB, f *Fabric, ns, chain string) []uint64 {
	t.Helper()
	c := nftIn(t, f, ns)
	ch, err := findChain(c, NFTTable, chain)
	if err != nil || ch == nil {
		t.Fatalf("chain %s in %s: %v %v", chain, ns, ch, err)
	}
	rules, err := c.GetRules(ch.Table, ch)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, rl := range rules {
		out = append(out, rl.Handle)
	}
	return out
}

// serviceLinksIn returns the names of the service links (router side) in ns.
func serviceLinksIn(t testing.TB, f *Fabric, ns string) []string {
	t.Helper()
	r, err := f.open(ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	links, err := linkList(r.h)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, serviceLinkTag) {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

func flowsIn(t testing.TB, f *Fabric, ns string) []Flow {
	t.Helper()
	r, err := f.open(ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	flows, err := listFlows(r)
	if err != nil {
		t.Fatal(err)
	}
	return flows
}

func TestDataPathValidation(t *testing.T) {
	f := &Fabric{prefix: "plv-", log: slog.New(slog.DiscardHandler)}
	good := EndpointNAT{Name: "pe1", Endpoint: mustAddr("10.0.2.5"), Ports: []uint16{pgPort}, Service: "pg1", ServiceAddr: mustAddr("169.254.10.2"), SNAT: mustAddr("169.254.1.5")}
	with := func(mod func(*EndpointNAT)) []EndpointNAT {
		ep := good
		mod(&ep)
		return []EndpointNAT{ep}
	}
	pub := PublicNAT{Name: "pg1", Public: mustAddr("198.18.0.10"), Ports: []uint16{pgPort}, Service: "pg1", ServiceAddr: mustAddr("169.254.10.2"), Enabled: true,
		Allowed: []AddrRange{PrefixRange(netip.MustParsePrefix("198.18.7.0/24"))}}
	withPub := func(mod func(*PublicNAT)) []PublicNAT {
		p := pub
		mod(&p)
		return []PublicNAT{p}
	}
	second := good
	second.Name, second.Endpoint, second.SNAT = "pe2", mustAddr("10.0.2.6"), mustAddr("169.254.1.6")
	tests := []struct {
		name string
		eps  []EndpointNAT
		pubs []PublicNAT
	}{
		{name: "bad name", eps: with(func(e *EndpointNAT) { e.Name = "a b" })},
		{name: "endpoint in 169.254/16", eps: with(func(e *EndpointNAT) { e.Endpoint = mustAddr("169.254.3.3") })},
		{name: "endpoint IPv6", eps: with(func(e *EndpointNAT) { e.Endpoint = mustAddr("fd00::5") })},
		{name: "port 0", eps: with(func(e *EndpointNAT) { e.Ports = []uint16{pgPort, 0} })},
		{name: "no port", eps: with(func(e *EndpointNAT) { e.Ports = nil })},
		{name: "port twice", eps: with(func(e *EndpointNAT) { e.Ports = []uint16{pgPort, 6432, pgPort} })},
		{name: "target twice across translations", eps: []EndpointNAT{
			func() EndpointNAT { e := good; e.Ports = []uint16{pgPort, 6432}; return e }(),
			func() EndpointNAT { e := second; e.Endpoint, e.Ports = good.Endpoint, []uint16{6432}; return e }()}},
		{name: "no service", eps: with(func(e *EndpointNAT) { e.Service = "" })},
		{name: "service address outside", eps: with(func(e *EndpointNAT) { e.ServiceAddr = mustAddr("10.0.0.9") })},
		{name: "SNAT outside", eps: with(func(e *EndpointNAT) { e.SNAT = mustAddr("10.0.0.9") })},
		{name: "SNAT is the service", eps: with(func(e *EndpointNAT) { e.SNAT = e.ServiceAddr })},
		{name: "name twice", eps: []EndpointNAT{good, func() EndpointNAT { e := second; e.Name = good.Name; return e }()}},
		{name: "endpoint twice", eps: []EndpointNAT{good, func() EndpointNAT { e := second; e.Endpoint = good.Endpoint; return e }()}},
		{name: "SNAT twice", eps: []EndpointNAT{good, func() EndpointNAT { e := second; e.SNAT = good.SNAT; return e }()}},
		{name: "service with two addresses", eps: []EndpointNAT{good, func() EndpointNAT { e := second; e.ServiceAddr = mustAddr("169.254.10.6"); return e }()}},
		{name: "public outside 198.18/15", pubs: withPub(func(p *PublicNAT) { p.Public = mustAddr("8.8.8.8") })},
		{name: "public is the gateway", pubs: withPub(func(p *PublicNAT) { p.Public = InternetGateway })},
		{name: "public port 0", pubs: withPub(func(p *PublicNAT) { p.Ports = []uint16{0} })},
		{name: "public no port", pubs: withPub(func(p *PublicNAT) { p.Ports = nil })},
		{name: "public port twice", pubs: withPub(func(p *PublicNAT) { p.Ports = []uint16{6432, 6432} })},
		{name: "public service address outside", pubs: withPub(func(p *PublicNAT) { p.ServiceAddr = mustAddr("198.18.0.11") })},
		{name: "range reversed", pubs: withPub(func(p *PublicNAT) { p.Allowed = []AddrRange{{mustAddr("198.18.7.9"), mustAddr("198.18.7.1")}} })},
		{name: "range IPv6", pubs: withPub(func(p *PublicNAT) { p.Allowed = []AddrRange{PrefixRange(netip.MustParsePrefix("fd00::/64"))} })},
		{name: "public twice", pubs: []PublicNAT{pub, func() PublicNAT { p := pub; p.Name = "other"; return p }()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.pubs != nil {
				_, err = f.EnsurePublic(tt.pubs)
			} else {
				_, err = f.EnsureEndpoints("net1", tt.eps)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := f.EnsureEndpoints("a/b", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad network id: %v, want ErrInvalid", err)
	}
	if err := validateEndpoints("net1", []EndpointNAT{good, second}); err != nil {
		t.Errorf("two good translations: %v", err)
	}
	// One address, two translations on different ports: allowed.
	split := second
	split.Endpoint, split.Ports = good.Endpoint, []uint16{6432}
	if err := validateEndpoints("net1", []EndpointNAT{good, split}); err != nil {
		t.Errorf("one address, two translations of different ports: %v", err)
	}
}

func TestRanges(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tt := range []struct {
		prefix   string
		from, to string
	}{
		{"198.18.7.0/24", "198.18.7.0", "198.18.7.255"},
		{"198.18.7.9/32", "198.18.7.9", "198.18.7.9"},
		{"10.1.0.0/12", "10.0.0.0", "10.15.255.255"},
		{"0.0.0.0/0", "0.0.0.0", "255.255.255.255"},
	} {
		if got, want := PrefixRange(p(tt.prefix)), (AddrRange{mustAddr(tt.from), mustAddr(tt.to)}); got != want {
			t.Errorf("PrefixRange(%s) = %v, want %v", tt.prefix, got, want)
		}
	}
	r := func(from, to string) AddrRange { return AddrRange{mustAddr(from), mustAddr(to)} }
	merged := mergeRanges([]AddrRange{r("10.0.0.5", "10.0.0.9"), r("10.0.0.1", "10.0.0.4"), r("10.0.0.20", "10.0.0.30"), r("10.0.0.25", "10.0.0.26")})
	if want := []AddrRange{r("10.0.0.1", "10.0.0.9"), r("10.0.0.20", "10.0.0.30")}; !slices.Equal(merged, want) {
		t.Errorf("mergeRanges = %v, want %v", merged, want)
	}
	// One element per merged range, the public address before it.
	pub := mustAddr("198.18.0.10")
	got := allowElements("p", pub, []AddrRange{r("198.18.7.0", "198.18.7.255"), r("198.18.7.200", "198.18.8.3"), r("255.255.255.0", "255.255.255.255")})
	want := []string{"c612000ac6120700-c612000ac6120803", "c612000affffff00-c612000affffffff"}
	if !slices.Equal(elementKeys(got), want) || got[0].Comment != "p" {
		t.Errorf("allowElements = %q (%+v), want %q", elementKeys(got), got, want)
	}
	if got := allowElements("p", pub, nil); len(got) != 0 {
		t.Errorf("allowElements(nil) = %v", got)
	}
	if n1, n2 := ServiceLinkNames("net1", "pg1"); len(n1) > 15 || len(n2) > 15 || n1[0] != 's' || n2[0] != 'r' || n1[1:] != n2[1:] {
		t.Errorf("ServiceLinkNames = %q %q", n1, n2)
	}
	if a, _ := ServiceLinkNames("net1", "pg1"); a == func() string { b, _ := ServiceLinkNames("net2", "pg1"); return b }() {
		t.Error("two networks' links to one service share a name")
	}
}

func TestSYNPacket(t *testing.T) {
	pkt := synPacket(mustAddrPort("10.0.2.5:5432"), mustAddrPort("10.0.1.4:40000"), 12345)
	if checksum(pkt[:20], 0) != 0 {
		t.Error("IP header checksum does not verify")
	}
	var pseudo uint32 = 10<<8 + 0 + 2<<8 + 5 + 10<<8 + 0 + 1<<8 + 4 + unix.IPPROTO_TCP + 20
	if checksum(pkt[20:], pseudo) != 0 {
		t.Error("TCP checksum does not verify")
	}
}

// pe1 is the translation most tests use: 10.0.2.5:5432 to pg1.
// pe1Network builds what most data path tests share: the network net1
// (10.0.0.0/16) with the endpoint address 10.0.2.5, its NIC c (10.0.1.4)
// and the service pg1 (169.254.10.2), which pe1 translates to; it returns
// the three namespaces. The test starts its server and applies pe1.
func pe1Network(t testing.TB, f *Fabric) (router, nic, svc string) {
	t.Helper()
	router = mustEnsureNetworkWithEndpoints(t, f, "net1", []string{"10.0.0.0/16"}, "10.0.2.5")
	return router, mustEnsureNIC(t, f, "c", "net1", "10.0.1.4/16"), mustEnsureService(t, f, "pg1", "169.254.10.2")
}

func pe1() EndpointNAT {
	return EndpointNAT{Name: "pe1", Endpoint: mustAddr("10.0.2.5"), Ports: []uint16{pgPort}, Service: "pg1", ServiceAddr: mustAddr("169.254.10.2"), SNAT: mustAddr("169.254.1.5")}
}

func TestEndpoint(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	router := mustEnsureNetworkWithEndpoints(t, f, "net1", []string{"10.0.1.0/24", "10.0.2.0/24"}, "10.0.2.5", "10.0.2.6")
	nic := mustEnsureNIC(t, f, "c", "net1", "10.0.1.4/24")
	pg1 := mustEnsureService(t, f, "pg1", "169.254.10.2")
	pg2 := mustEnsureService(t, f, "pg2", "169.254.10.6")
	serve(t, f, pg1, "169.254.10.2:5432", "pg1")
	serve(t, f, pg1, "169.254.10.2:5433", "pg1-other-port")
	serve(t, f, pg2, "169.254.10.6:5432", "pg2")

	mustNotConnect(t, f, nic, "10.0.2.5:5432") // nothing before the translation
	mustEnsureEndpoints(t, f, "net1", pe1())
	mustCall(t, f, nic, "10.0.2.5:5432", "pg1 169.254.1.5")
	logRuleset(t, router)

	t.Run("isolation", func(t *testing.T) {
		for _, to := range []string{
			"169.254.10.2:5432", // the service's internal address
			"169.254.10.2:5433", // another port of it
			"10.0.2.5:5433",     // another port of the endpoint
			"10.0.2.6:5432",     // an endpoint address without translation
			"169.254.10.6:5432", // another service
			"169.254.1.5:5432",  // the SNAT address
		} {
			mustNotConnect(t, f, nic, to)
		}
	})
	t.Run("router's own addresses still answer", func(t *testing.T) {
		dns := serve(t, f, router, DNSAddr.String()+":0", "dns")
		mustCall(t, f, nic, dns, "dns 10.0.1.4")
	})
	t.Run("second endpoint to another service", func(t *testing.T) {
		pe2 := EndpointNAT{Name: "pe2", Endpoint: mustAddr("10.0.2.6"), Ports: []uint16{pgPort}, Service: "pg2", ServiceAddr: mustAddr("169.254.10.6"), SNAT: mustAddr("169.254.1.6")}
		mustEnsureEndpoints(t, f, "net1", pe1(), pe2)
		mustCall(t, f, nic, "10.0.2.5:5432", "pg1 169.254.1.5")
		mustCall(t, f, nic, "10.0.2.6:5432", "pg2 169.254.1.6")
		if got := serviceLinksIn(t, f, router); len(got) != 2 {
			t.Errorf("service links %q, want two", got)
		}
		// Through pe1's translation, pg2 stays out of reach.
		mustNotConnect(t, f, nic, "169.254.10.6:5432")
		mustEnsureEndpoints(t, f, "net1", pe1())
		mustNotConnect(t, f, nic, "10.0.2.6:5432")
		if got, want := serviceLinksIn(t, f, router), []string{func() string { n, _ := ServiceLinkNames("net1", "pg1"); return n }()}; !slices.Equal(got, want) {
			t.Errorf("service links %q, want %q", got, want)
		}
	})
	t.Run("service does not forward", func(t *testing.T) {
		err := f.Do(pg1, func() error {
			if changed, err := setSysctl("net/ipv4/ip_forward", "0"); err != nil || changed {
				return fmt.Errorf("ip_forward was on (%v)", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ensure twice changes nothing", func(t *testing.T) {
		state := func() []string {
			return []string{nsState(t, f, router), tableDump(t, f, router), nsState(t, f, pg1)}
		}
		before := state()
		mustEnsureEndpoints(t, f, "net1", pe1())
		after := state()
		for i := range before {
			if before[i] != after[i] {
				t.Errorf("state changed by a second Ensure:\nbefore:\n%s\nafter:\n%s", before[i], after[i])
			}
		}
	})
	t.Run("counters", func(t *testing.T) {
		before, err := f.EndpointCounters("net1")
		if err != nil {
			t.Fatal(err)
		}
		s := dialSession(t, f, nic, "10.0.2.5:5432")
		_ = s // the greeting came back; the session stays open
		after, err := f.EndpointCounters("net1")
		if err != nil {
			t.Fatal(err)
		}
		b, a := before["pe1"], after["pe1"]
		t.Logf("counters before %+v, after %+v", b, a)
		if a.PacketsIn <= b.PacketsIn || a.BytesIn <= b.BytesIn || a.PacketsOut <= b.PacketsOut || a.BytesOut <= b.BytesOut || a.Connections != b.Connections+1 {
			t.Errorf("counters did not grow with one connection: before %+v, after %+v", b, a)
		}
		if a.Active < 1 {
			t.Errorf("active connections %d with a session open", a.Active)
		}
		if len(after) != 1 {
			t.Errorf("counters of %d translations, want 1: %v", len(after), after)
		}
	})
	t.Run("service link heals", func(t *testing.T) {
		rName, _ := ServiceLinkNames("net1", "pg1")
		if out, err := exec.Command("ip", "-n", router, "link", "delete", rName).CombinedOutput(); err != nil {
			t.Fatalf("ip link delete: %v: %s", err, out)
		}
		mustNotConnect(t, f, nic, "10.0.2.5:5432")
		mustEnsureEndpoints(t, f, "net1", pe1())
		mustCall(t, f, nic, "10.0.2.5:5432", "pg1 169.254.1.5")
	})
	t.Run("missing service", func(t *testing.T) {
		gone := EndpointNAT{Name: "gone", Endpoint: mustAddr("10.0.2.7"), Ports: []uint16{pgPort}, Service: "nope", ServiceAddr: mustAddr("169.254.10.10"), SNAT: mustAddr("169.254.1.7")}
		_, err := f.EnsureEndpoints("net1", []EndpointNAT{pe1(), gone})
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
		mustCall(t, f, nic, "10.0.2.5:5432", "pg1 169.254.1.5") // the other still works
		wrong := pe1()
		wrong.ServiceAddr = mustAddr("169.254.10.9") // not pg1's
		if _, err := f.EnsureEndpoints("net1", []EndpointNAT{wrong}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("wrong service address: %v, want ErrInvalid", err)
		}
		mustNotConnect(t, f, nic, "10.0.2.5:5432")
	})
	t.Run("missing network", func(t *testing.T) {
		if _, err := f.EnsureEndpoints("nope", []EndpointNAT{pe1()}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
		if _, err := f.EnsureEndpoints("nope", nil); err != nil {
			t.Fatalf("no translations for a missing network: %v", err)
		}
	})
}

// TestOverlappingNetworksOneService connects two networks with the same
// address space to one service at once; the service tells them apart by
// their SNAT addresses.
func TestOverlappingNetworksOneService(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	pg1 := mustEnsureService(t, f, "pg1", "169.254.10.2")
	srv := startEcho(t, f, pg1, "169.254.10.2:5432", "pg1")
	var sessions []*session
	for i, n := range []string{"left", "right"} {
		mustEnsureNetworkWithEndpoints(t, f, n, []string{"10.0.0.0/16"}, "10.0.2.5")
		nic := mustEnsureNIC(t, f, n+"-c", n, "10.0.1.4/16")
		ep := pe1()
		ep.SNAT = netip.AddrFrom4([4]byte{169, 254, 1, byte(5 + i)})
		mustEnsureEndpoints(t, f, n, ep)
		sessions = append(sessions, dialSession(t, f, nic, "10.0.2.5:5432"))
	}
	if sessions[0].greeting != "pg1 169.254.1.5" || sessions[1].greeting != "pg1 169.254.1.6" {
		t.Fatalf("greetings %q and %q, want pg1 169.254.1.5 and pg1 169.254.1.6", sessions[0].greeting, sessions[1].greeting)
	}
	for i, s := range sessions {
		if err := s.echo(fmt.Sprintf("hello from %d", i)); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
	// Revoking one network's endpoint leaves the other's session alone.
	revoked := mustEnsureEndpoints(t, f, "left")
	if len(revoked) != 1 || revoked[0].Source.Addr() != mustAddr("169.254.1.5") || revoked[0].Client.Addr() != mustAddr("10.0.1.4") {
		t.Fatalf("revoked %+v, want the left session from 169.254.1.5", revoked)
	}
	if err := srv.nextEnd(t); !isReset(err) {
		t.Errorf("server side of the left session ended with %v, want a reset", err)
	}
	if err := sessions[1].echo("still here"); err != nil {
		t.Fatalf("right session after the left's revocation: %v", err)
	}
	if err := sessions[0].echo("gone?"); !isReset(err) {
		t.Fatalf("left session after revocation: %v, want a reset", err)
	}
}

// TestEndpointRevocation removes a translation under two established
// sessions: one whose client waits in a read, one whose client writes.
func TestEndpointRevocation(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	router, nic, pg1 := pe1Network(t, f)
	srv := startEcho(t, f, pg1, "169.254.10.2:5432", "pg1")
	mustEnsureEndpoints(t, f, "net1", pe1())

	reader := dialSession(t, f, nic, "10.0.2.5:5432")
	writer := dialSession(t, f, nic, "10.0.2.5:5432")
	for _, s := range []*session{reader, writer} {
		if err := s.echo("before"); err != nil {
			t.Fatal(err)
		}
	}
	readErr := make(chan error, 1)
	go func() {
		reader.c.SetReadDeadline(time.Now().Add(hangGuard))
		_, err := reader.r.ReadString('\n')
		readErr <- err
	}()

	start := time.Now()
	revoked := mustEnsureEndpoints(t, f, "net1")
	t.Logf("EnsureEndpoints revoked %d flows in %v: %+v", len(revoked), time.Since(start), revoked)
	if len(revoked) != 2 {
		t.Fatalf("revoked %d flows, want 2", len(revoked))
	}
	for _, fl := range revoked {
		if fl.Source.Addr() != mustAddr("169.254.1.5") || fl.Target != mustAddrPort("10.0.2.5:5432") || fl.Service != mustAddrPort("169.254.10.2:5432") {
			t.Errorf("revoked flow %+v", fl)
		}
	}
	err := <-readErr
	t.Logf("blocked reader: %v after %v", err, time.Since(start))
	if !isReset(err) {
		t.Errorf("blocked reader ended with %v, want a reset", err)
	}
	for range 2 {
		err := srv.nextEnd(t)
		t.Logf("server side: %v after %v", err, time.Since(start))
		if !isReset(err) {
			t.Errorf("server side ended with %v, want a reset", err)
		}
	}
	if err := writer.echo("after"); !isReset(err) {
		t.Errorf("writer: %v, want a reset", err)
	}
	mustNotConnect(t, f, nic, "10.0.2.5:5432")
	if flows := flowsIn(t, f, router); len(flows) != 0 {
		t.Errorf("translated flows left: %+v", flows)
	}
	if links := serviceLinksIn(t, f, router); len(links) != 0 {
		t.Errorf("service links left: %q", links)
	}
	if counters, err := f.EndpointCounters("net1"); err != nil || len(counters) != 0 {
		t.Errorf("counters left: %v, %v", counters, err)
	}
	// And back.
	mustEnsureEndpoints(t, f, "net1", pe1())
	mustCall(t, f, nic, "10.0.2.5:5432", "pg1 169.254.1.5")
}

// acceptor listens in a namespace and hands every accepted connection over.
func acceptor(t testing.TB, f *Fabric, ns, addr string) <-chan net.Conn {
	t.Helper()
	ln, err := f.ListenTCP(ns, addr)
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			conns <- c
		}
	}()
	return conns
}

// pair opens a connection from ns to addr and returns both of its ends.
func pair(t testing.TB, f *Fabric, conns <-chan net.Conn, ns, addr string) (client, server net.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	client, err := f.DialContext(ctx, ns, "tcp", addr)
	if err != nil {
		t.Fatalf("from %s to %s: %v", ns, addr, err)
	}
	t.Cleanup(func() { client.Close() })
	select {
	case server = <-conns:
	case <-time.After(hangGuard):
		t.Fatalf("from %s to %s: not accepted within %v", ns, addr, hangGuard)
	}
	return client, server
}

// writeThenRead writes on c and reads from it; it returns the first error.
func writeThenRead(c net.Conn) error {
	c.SetDeadline(time.Now().Add(hangGuard))
	if _, err := c.Write([]byte("x")); err != nil {
		return err
	}
	_, err := c.Read(make([]byte, 1))
	return err
}

// TestRevocationPaths checks each way a revoked session closes. Without the
// probes: a client or a server that sends after its conntrack entry went is
// reset (by the router's stack, which owns the endpoint and SNAT
// addresses). With them: both ends are reset while waiting in a read, even
// when the endpoint's address left the router before the revocation.
func TestRevocationPaths(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	router, nic, pg1 := pe1Network(t, f)
	conns := acceptor(t, f, pg1, "169.254.10.2:5432")
	mustEnsureEndpoints(t, f, "net1", pe1())

	// deleteEntries deletes the router's conntrack entries of pe1 and
	// sends no probe.
	deleteEntries := func() {
		t.Helper()
		r, err := f.open(router, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer r.close()
		deleted, err := deleteFlows(r, func(fl Flow, translated bool) bool { return translated && fl.Target == mustAddrPort("10.0.2.5:5432") }, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(deleted) != 1 {
			t.Fatalf("deleted %d entries, want 1", len(deleted))
		}
	}
	t.Run("client sends", func(t *testing.T) {
		client, _ := pair(t, f, conns, nic, "10.0.2.5:5432")
		deleteEntries()
		if err := writeThenRead(client); !isReset(err) {
			t.Fatalf("client: %v, want a reset", err)
		}
	})
	t.Run("server sends", func(t *testing.T) {
		_, server := pair(t, f, conns, nic, "10.0.2.5:5432")
		deleteEntries()
		if err := writeThenRead(server); !isReset(err) {
			t.Fatalf("server: %v, want a reset", err)
		}
	})
	t.Run("both wait, endpoint address gone first", func(t *testing.T) {
		client, server := pair(t, f, conns, nic, "10.0.2.5:5432")
		ends := make(chan error, 2)
		for _, c := range []net.Conn{client, server} {
			go func() {
				c.SetReadDeadline(time.Now().Add(hangGuard))
				_, err := c.Read(make([]byte, 1))
				ends <- err
			}()
		}
		// The network controller may drop the address before the
		// translation goes.
		mustEnsureNetwork(t, f, "net1", "10.0.0.0/16")
		if revoked := mustEnsureEndpoints(t, f, "net1"); len(revoked) != 1 {
			t.Fatalf("revoked %+v, want one flow", revoked)
		}
		for range 2 {
			if err := <-ends; !isReset(err) {
				t.Errorf("waiting reader ended with %v, want a reset", err)
			}
		}
	})
}

// TestPublic checks the public path: firewall set, no SNAT, disable,
// revocation, counters.
func TestPublic(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	inside, outside := insideOutside(t, f)
	inet := f.NamespaceName(KindInternet, "")
	pg1 := mustEnsureService(t, f, "pg1", "169.254.10.2")
	srv := startEcho(t, f, pg1, "169.254.10.2:5432", "pg1")
	serve(t, f, pg1, "169.254.10.2:5433", "pg1-other-port")
	pub := PublicNAT{Name: "pg1", Public: mustAddr("198.18.0.10"), Ports: []uint16{pgPort}, Service: "pg1", ServiceAddr: mustAddr("169.254.10.2"),
		Allowed: []AddrRange{PrefixRange(netip.MustParsePrefix("198.18.7.0/24"))}, Enabled: true}
	mustEnsurePublic(t, f, pub)
	logRuleset(t, inet)

	s := dialSession(t, f, inside, "198.18.0.10:5432")
	if s.greeting != "pg1 198.18.7.9" {
		t.Fatalf("greeting %q: the server must see the client's own address", s.greeting)
	}
	for _, to := range []string{"198.18.0.10:5432", "169.254.10.2:5432"} {
		mustNotConnect(t, f, outside, to)
	}
	for _, to := range []string{"169.254.10.2:5432", "169.254.10.2:5433", "198.18.0.10:5433"} {
		mustNotConnect(t, f, inside, to)
	}

	t.Run("counters", func(t *testing.T) {
		c, err := f.PublicCounters()
		if err != nil {
			t.Fatal(err)
		}
		got := c["pg1"]
		t.Logf("counters %+v", got)
		if got.PacketsIn == 0 || got.BytesIn == 0 || got.PacketsOut == 0 || got.BytesOut == 0 || got.Connections != 1 || got.Active != 1 {
			t.Errorf("counters %+v after one session", got)
		}
	})
	t.Run("set refilled in place", func(t *testing.T) {
		rules := ruleHandles(t, f, inet, chainPublicDNAT)
		guard := ruleHandles(t, f, inet, chainGuard)
		wider := pub
		wider.Allowed = append(slices.Clone(pub.Allowed), AddrRange{mustAddr("198.19.1.0"), mustAddr("198.19.1.10")})
		if revoked := mustEnsurePublic(t, f, wider); len(revoked) != 0 {
			t.Errorf("widening the firewall revoked %+v", revoked)
		}
		mustCall(t, f, outside, "198.18.0.10:5432", "pg1 198.19.1.1")
		if err := srv.nextEnd(t); err != io.EOF {
			t.Errorf("server side of a call ended with %v, want EOF", err)
		}
		if err := s.echo("still there"); err != nil {
			t.Fatal(err)
		}
		if got := ruleHandles(t, f, inet, chainPublicDNAT); !slices.Equal(got, rules) {
			t.Errorf("DNAT rules rewritten (%v, were %v): the set should change alone", got, rules)
		}
		if got := ruleHandles(t, f, inet, chainGuard); !slices.Equal(got, guard) {
			t.Errorf("guard rules rewritten (%v, were %v)", got, guard)
		}
	})
	t.Run("rule removal revokes", func(t *testing.T) {
		readErr := make(chan error, 1)
		go func() {
			s.c.SetReadDeadline(time.Now().Add(hangGuard))
			_, err := s.r.ReadString('\n')
			readErr <- err
		}()
		narrower := pub
		narrower.Allowed = []AddrRange{{mustAddr("198.19.1.0"), mustAddr("198.19.1.10")}}
		revoked := mustEnsurePublic(t, f, narrower)
		if len(revoked) != 1 || revoked[0].Client.Addr() != mustAddr("198.18.7.9") || revoked[0].Source != revoked[0].Client {
			t.Fatalf("revoked %+v, want the session of 198.18.7.9", revoked)
		}
		if err := <-readErr; !isReset(err) {
			t.Errorf("blocked reader ended with %v, want a reset", err)
		}
		if err := srv.nextEnd(t); !isReset(err) {
			t.Errorf("server side ended with %v, want a reset", err)
		}
		mustNotConnect(t, f, inside, "198.18.0.10:5432")
		mustCall(t, f, outside, "198.18.0.10:5432", "pg1 198.19.1.1")
		if err := srv.nextEnd(t); err != io.EOF {
			t.Errorf("server side of a call ended with %v, want EOF", err)
		}
	})
	t.Run("no rule no traffic", func(t *testing.T) {
		none := pub
		none.Allowed = nil
		mustEnsurePublic(t, f, none)
		mustNotConnect(t, f, inside, "198.18.0.10:5432")
		mustNotConnect(t, f, outside, "198.18.0.10:5432")
	})
	t.Run("disabled", func(t *testing.T) {
		all := pub
		all.Allowed = []AddrRange{PrefixRange(netip.MustParsePrefix("0.0.0.0/0"))}
		mustEnsurePublic(t, f, all)
		live := dialSession(t, f, outside, "198.18.0.10:5432")
		off := all
		off.Enabled = false
		revoked := mustEnsurePublic(t, f, off)
		if len(revoked) != 1 {
			t.Errorf("disabling revoked %+v, want one flow", revoked)
		}
		if err := live.echo("after"); !isReset(err) {
			t.Errorf("session after disabling: %v, want a reset", err)
		}
		if err := srv.nextEnd(t); !isReset(err) {
			t.Errorf("server side ended with %v, want a reset", err)
		}
		mustNotConnect(t, f, inside, "198.18.0.10:5432")
		mustNotConnect(t, f, outside, "198.18.0.10:5432")
		if c, err := f.PublicCounters(); err != nil || c["pg1"].Connections == 0 {
			t.Errorf("counters of a disabled path: %+v, %v (they stay while it is listed)", c, err)
		}
	})
	t.Run("removed", func(t *testing.T) {
		mustEnsurePublic(t, f)
		if links := serviceLinksIn(t, f, inet); len(links) != 0 {
			t.Errorf("service links left: %q", links)
		}
		r, err := f.open(inet, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer r.close()
		lo, _ := linkByName(r, "lo")
		addrs, _ := addrList(r.h, lo)
		for _, a := range addrs {
			if a.Label == labelPublic {
				t.Errorf("public address %s left on lo", a.IPNet)
			}
		}
		if c, err := f.PublicCounters(); err != nil || len(c) != 0 {
			t.Errorf("counters left: %v, %v", c, err)
		}
	})
}

// TestPublicGuardCountsAllowedOnly: a packet of a public flow whose client
// the path no longer allows is reset by the guard, and not counted as
// passing. The firewall is narrowed in the table alone, without the
// revocation an Ensure does, so that the flow's next packet meets the
// guard.
func TestPublicGuardCountsAllowedOnly(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	inside, err := f.EnsureInternetHost(mustAddr("198.18.7.9"))
	if err != nil {
		t.Fatal(err)
	}
	pg1 := mustEnsureService(t, f, "pg1", "169.254.10.2")
	startEcho(t, f, pg1, "169.254.10.2:5432", "pg1")
	pub := PublicNAT{Name: "pg1", Public: mustAddr("198.18.0.10"), Ports: []uint16{pgPort}, Service: "pg1", ServiceAddr: mustAddr("169.254.10.2"),
		Allowed: []AddrRange{PrefixRange(netip.MustParsePrefix("198.18.7.0/24"))}, Enabled: true}
	mustEnsurePublic(t, f, pub)
	s := dialSession(t, f, inside, "198.18.0.10:5432")
	if err := s.echo("allowed"); err != nil {
		t.Fatal(err)
	}
	narrower := pub
	narrower.Allowed = []AddrRange{PrefixRange(netip.MustParsePrefix("198.19.1.0/24"))}
	f.mu.Lock()
	inet, err := f.open(f.NamespaceName(KindInternet, ""), nil)
	if err == nil {
		if res := f.convergeTable(inet, publicTable([]PublicNAT{narrower})); res.err != nil {
			err = res.err
		}
		inet.close()
	}
	f.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	before, err := f.PublicCounters()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.echo("no longer allowed"); !isReset(err) {
		t.Errorf("a packet from a client the firewall no longer allows: %v, want a reset", err)
	}
	after, err := f.PublicCounters()
	if err != nil {
		t.Fatal(err)
	}
	if b, a := before["pg1"], after["pg1"]; a.PacketsIn != b.PacketsIn || a.BytesIn != b.BytesIn {
		t.Errorf("counters in went from %d packets (%d bytes) to %d (%d) with only refused packets sent", b.PacketsIn, b.BytesIn, a.PacketsIn, a.BytesIn)
	}
}

// TestEndpointAndPublicTogether serves one service through an endpoint and
// its public address at once, each path authorised on its own.
func TestEndpointAndPublicTogether(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	mustEnsureNetworkWithEndpoints(t, f, "net1", []string{"10.0.0.0/16"}, "10.0.2.5")
	nic := mustEnsureNIC(t, f, "c", "net1", "10.0.1.4/16")
	host, err := f.EnsureInternetHost(mustAddr("198.18.7.9"))
	if err != nil {
		t.Fatal(err)
	}
	pg1 := mustEnsureService(t, f, "pg1", "169.254.10.2")
	serve(t, f, pg1, "169.254.10.2:5432", "pg1")
	mustEnsureEndpoints(t, f, "net1", pe1())
	pub := PublicNAT{Name: "pg1", Public: mustAddr("198.18.0.10"), Ports: []uint16{pgPort}, Service: "pg1", ServiceAddr: mustAddr("169.254.10.2"),
		Allowed: []AddrRange{PrefixRange(netip.MustParsePrefix("198.18.7.9/32"))}, Enabled: true}
	mustEnsurePublic(t, f, pub)
	mustCall(t, f, nic, "10.0.2.5:5432", "pg1 169.254.1.5")
	mustCall(t, f, host, "198.18.0.10:5432", "pg1 198.18.7.9")
	// The service routes nothing back into the network, nor the internet
	// into it: the NIC cannot reach the public address, the host not the
	// endpoint.
	mustNotConnect(t, f, nic, "198.18.0.10:5432")
	mustNotConnect(t, f, host, "10.0.2.5:5432")
	pub.Enabled = false
	mustEnsurePublic(t, f, pub)
	mustNotConnect(t, f, host, "198.18.0.10:5432")
	mustCall(t, f, nic, "10.0.2.5:5432", "pg1 169.254.1.5")
}

// TestDataPathNoLeak runs translation cycles and checks that the process
// holds no more file descriptors or goroutines afterwards.
func TestDataPathNoLeak(t *testing.T) {
	f := newTestFabric(t)
	_, nic, pg1 := pe1Network(t, f)
	srv := startEcho(t, f, pg1, "169.254.10.2:5432", "pg1")
	pub := PublicNAT{Name: "pg1", Public: mustAddr("198.18.0.10"), Ports: []uint16{pgPort}, Service: "pg1", ServiceAddr: mustAddr("169.254.10.2"), Enabled: true}
	cycle := func() {
		mustEnsureEndpoints(t, f, "net1", pe1())
		mustEnsurePublic(t, f, pub)
		s := dialSession(t, f, nic, "10.0.2.5:5432")
		if _, err := f.EndpointCounters("net1"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.PublicCounters(); err != nil {
			t.Fatal(err)
		}
		mustEnsureEndpoints(t, f, "net1")
		mustEnsurePublic(t, f)
		srv.nextEnd(t)
		s.c.Close()
	}
	fds := func() []string {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range ents {
			target, _ := os.Readlink("/proc/self/fd/" + e.Name())
			out = append(out, e.Name()+" "+target)
		}
		return out
	}
	cycle()
	before, goroutines := fds(), runtime.NumGoroutine()
	cycle()
	cycle()
	if after := fds(); len(after) > len(before) {
		t.Errorf("file descriptors: %d before, %d after:\nbefore %q\nafter  %q", len(before), len(after), before, after)
	}
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(hangGuard); n > goroutines && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(10 * time.Millisecond)
	}
	if n > goroutines {
		t.Errorf("goroutines: %d before, %d after", goroutines, n)
	}
}
