package fabric

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/testkit"
	"golang.org/x/sys/unix"
)

// plsWorld is a provider network (10.50.0.0/16: backends b1 and b2 behind
// frontend 10.50.1.100:80 → 8080, NAT NIC 10.50.5.10) and two consumer
// networks with the same space, 10.0.0.0/16 (a client 10.0.1.4 each, an
// endpoint 10.0.2.5 each).
type plsWorld struct {
	f                  *Fabric
	provider           string
	c1, c2             string // the consumers' client NIC namespaces
	b1, b2             *echoServer
	svc                LinkService
	linkAddr           netip.Addr
	snat1, snat2       netip.Addr
	ep1, ep2           EndpointNAT
	natNIC, otherInner string
}

func newPLSWorld(t *testing.T) *plsWorld {
	w := &plsWorld{f: newTestFabric(t)}
	f := w.f
	w.provider = mustEnsureNetwork(t, f, "plsprov", "10.50.1.0/24", "10.50.5.0/24")
	b1 := mustEnsureNIC(t, f, "plsb1", "plsprov", "10.50.1.11/24")
	b2 := mustEnsureNIC(t, f, "plsb2", "plsprov", "10.50.1.12/24")
	other := mustEnsureNIC(t, f, "plsother", "plsprov", "10.50.1.20/24")
	w.natNIC = mustEnsureNIC(t, f, "plsnat", "plsprov", "10.50.5.10/24")
	w.b1 = startEcho(t, f, b1, "10.50.1.11:8080", "b1")
	w.b2 = startEcho(t, f, b2, "10.50.1.12:8080", "b2")
	serve(t, f, other, "10.50.1.20:22", "other")
	serve(t, f, b1, "10.50.1.11:80", "b1-direct")
	w.otherInner = "10.50.1.20:22"
	front := mustAddr("10.50.1.100")
	lb := LoadBalancers{Frontends: []netip.Addr{front}, Rules: []LBRule{{Name: "lb.echo", Frontend: front,
		Protocol: unix.IPPROTO_TCP, Port: 80, BackendPort: 8080, Backends: []netip.Addr{mustAddr("10.50.1.11"), mustAddr("10.50.1.12")}}}}
	if err := f.EnsureLoadBalancers("plsprov", lb); err != nil {
		t.Fatal(err)
	}
	w.linkAddr = mustAddr("169.254.200.1")
	w.svc = LinkService{NIC: "plsnat", Addr: w.linkAddr, NATIP: mustAddr("10.50.5.10"), Ports: []LinkServicePort{{Port: 80, Frontend: front}}}
	if err := f.EnsureLinkService(w.svc); err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"plsc1", "plsc2"} {
		mustEnsureNetworkWithEndpoints(t, f, id, []string{"10.0.1.0/24", "10.0.2.0/24"}, "10.0.2.5")
		ns := mustEnsureNIC(t, f, id+"nic", id, "10.0.1.4/24")
		snat := mustAddr(fmt.Sprintf("169.254.200.%d", 10+i))
		ep := EndpointNAT{Name: id + ".pe", Endpoint: mustAddr("10.0.2.5"), Ports: []uint16{80}, Service: "plsnat", ServiceKind: KindNIC,
			ServiceAddr: w.linkAddr, SNAT: snat}
		mustEnsureEndpoints(t, f, id, ep)
		if i == 0 {
			w.c1, w.snat1, w.ep1 = ns, snat, ep
		} else {
			w.c2, w.snat2, w.ep2 = ns, snat, ep
		}
	}
	return w
}

// TestLinkServiceDataPath: endpoints of two overlapping consumer networks
// reach the provider's load balanced backends, which see the NAT IP; only
// the frontend ports get through; revocation closes live sessions.
func TestLinkServiceDataPath(t *testing.T) {
	w := newPLSWorld(t)
	f := w.f
	got := map[string]int{}
	for _, c := range []string{w.c1, w.c2} {
		for range 20 {
			s := dialSession(t, f, c, "10.0.2.5:80")
			name, peer, _ := strings.Cut(s.greeting, " ")
			if peer != "10.50.5.10" {
				t.Fatalf("backend %s saw %q, want the NAT IP 10.50.5.10", name, peer)
			}
			if err := s.echo("hello"); err != nil {
				t.Fatal(err)
			}
			got[name]++
			s.c.Close()
		}
	}
	if got["b1"] == 0 || got["b2"] == 0 || got["b1"]+got["b2"] != 40 {
		t.Fatalf("40 connections from two consumers went %v, want both backends", got)
	}
	// Other ports of the endpoint and other provider addresses stay out
	// of reach, as does the link address itself but on its ports.
	mustNotConnect(t, f, w.c1, "10.0.2.5:22")
	mustNotConnect(t, f, w.c1, "10.0.2.5:8080")
	mustNotConnect(t, f, w.c1, w.otherInner)
	mustNotConnect(t, f, w.c1, "10.50.1.11:80")
	mustNotConnect(t, f, w.c1, "169.254.200.1:80")
	mustNotConnect(t, f, w.c1, "10.50.1.100:80")
	// The consumer router's counters count the endpoint's connections.
	cs, err := f.EndpointCounters("plsc1")
	if err != nil {
		t.Fatal(err)
	}
	if c := cs["plsc1.pe"]; c.Connections < 20 || c.BytesIn == 0 || c.BytesOut == 0 {
		t.Errorf("counters of plsc1.pe: %+v, want ≥ 20 connections and bytes both ways", c)
	}
	conns, err := f.LinkServiceConnections("plsnat")
	if err != nil || conns[80] < 40 {
		t.Errorf("the NAT NIC's connections: %v %v, want ≥ 40 on port 80", conns, err)
	}
	// Revocation: consumer 1's endpoint goes; its live session is reset
	// on both ends within a second, consumer 2's lives on.
	s1 := dialSession(t, f, w.c1, "10.0.2.5:80")
	s2 := dialSession(t, f, w.c2, "10.0.2.5:80")
	backend1 := w.b1
	if strings.HasPrefix(s1.greeting, "b2") {
		backend1 = w.b2
	}
	for len(backend1.ends) > 0 {
		<-backend1.ends
	}
	start := time.Now()
	revoked := mustEnsureEndpoints(t, f, "plsc1")
	if len(revoked) != 1 || revoked[0].Source.Addr() != w.snat1 {
		t.Errorf("revoked %v, want consumer 1's one flow from %s", revoked, w.snat1)
	}
	s1.c.SetDeadline(time.Now().Add(hangGuard))
	if _, err := s1.r.ReadString('\n'); !isReset(err) {
		t.Errorf("consumer 1's session after revocation: %v, want a reset", err)
	}
	if err := backend1.nextEnd(t); !isReset(err) {
		t.Errorf("the backend's side of consumer 1's session: %v, want a reset", err)
	}
	t.Logf("both ends of the revoked session closed %v after the change", time.Since(start))
	if err := s2.echo("still here"); err != nil {
		t.Errorf("consumer 2's session: %v", err)
	}
	mustNotConnect(t, f, w.c1, "10.0.2.5:80")
}

func TestLinkServiceInvalid(t *testing.T) {
	f := &Fabric{}
	ok := LinkService{NIC: "n1", Addr: mustAddr("169.254.200.1"), NATIP: mustAddr("10.0.5.10"), Ports: []LinkServicePort{{Port: 80, Frontend: mustAddr("10.0.1.100")}}}
	for name, mut := range map[string]func(*LinkService){
		"bad NIC":           func(s *LinkService) { s.NIC = "a b" },
		"link address":      func(s *LinkService) { s.Addr = mustAddr("10.0.0.1") },
		"NAT IP link-local": func(s *LinkService) { s.NATIP = mustAddr("169.254.1.1") },
		"port 0":            func(s *LinkService) { s.Ports[0].Port = 0 },
		"port twice":        func(s *LinkService) { s.Ports = append(s.Ports, s.Ports[0]) },
		"frontend":          func(s *LinkService) { s.Ports[0].Frontend = netip.Addr{} },
	} {
		s := ok
		s.Ports = append([]LinkServicePort(nil), ok.Ports...)
		mut(&s)
		if err := f.EnsureLinkService(s); err == nil || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := f.EnsureEndpoints("n", []EndpointNAT{{Name: "e", Endpoint: mustAddr("10.0.2.5"), Ports: []uint16{80}, Service: "s",
		ServiceKind: KindNetwork, ServiceAddr: mustAddr("169.254.200.1"), SNAT: mustAddr("169.254.200.2")}}); err == nil {
		t.Error("an endpoint toward a router namespace was accepted")
	}
	// A relayed endpoint names no service; the same target twice is
	// refused all the same.
	relayed := EndpointNAT{Name: "r", Endpoint: mustAddr("10.0.2.6"), Ports: []uint16{80}, Relay: true}
	if err := validateEndpoints("n", []EndpointNAT{relayed}); err != nil {
		t.Errorf("a relayed endpoint: %v", err)
	}
	twice := relayed
	twice.Name = "r2"
	if err := validateEndpoints("n", []EndpointNAT{relayed, twice}); err == nil {
		t.Error("two relayed endpoints on one address and port were accepted")
	}
}

// BenchmarkLinkServiceRoundTrip tells what a private link service's
// endpoint costs a round trip: benchMsg-byte requests and responses, one
// on each lasting connection in turn per iteration, to one server on a
// backend NIC (10.60.1.11:8080) behind a load balancer frontend
// (10.60.1.100:80), from
//
//   - provider: a client NIC of the provider's network, to the frontend
//     (NIC → router → backend; the baseline);
//   - natnic: the service's NAT NIC itself, to the frontend (the same
//     hops: what the NAT NIC adds is not its own traversal);
//   - endpoint: a client NIC of a consumer network (the same space),
//     through the endpoint (NIC → consumer router → NAT NIC → provider
//     router → backend).
//
// "busy" sends the next request at once, "idle" pauses 1 ms first (see
// BenchmarkDataPathRoundTrip); "ratio" is provider's median over
// endpoint's.
func BenchmarkLinkServiceRoundTrip(b *testing.B) {
	f := newTestFabric(b)
	mustEnsureNetwork(b, f, "bprov", "10.60.1.0/24", "10.60.5.0/24")
	backend := mustEnsureNIC(b, f, "bbe", "bprov", "10.60.1.11/24")
	pclient := mustEnsureNIC(b, f, "bpcl", "bprov", "10.60.1.20/24")
	nat := mustEnsureNIC(b, f, "bnat", "bprov", "10.60.5.10/24")
	ln, err := f.ListenTCP(backend, "10.60.1.11:8080")
	if err != nil {
		b.Fatal(err)
	}
	testkit.Serve(b, ln, benchServe)
	front := mustAddr("10.60.1.100")
	if err := f.EnsureLoadBalancers("bprov", LoadBalancers{Frontends: []netip.Addr{front}, Rules: []LBRule{{Name: "b", Frontend: front,
		Protocol: unix.IPPROTO_TCP, Port: 80, BackendPort: 8080, Backends: []netip.Addr{mustAddr("10.60.1.11")}}}}); err != nil {
		b.Fatal(err)
	}
	link := mustAddr("169.254.201.1")
	if err := f.EnsureLinkService(LinkService{NIC: "bnat", Addr: link, NATIP: mustAddr("10.60.5.10"), Ports: []LinkServicePort{{Port: 80, Frontend: front}}}); err != nil {
		b.Fatal(err)
	}
	mustEnsureNetworkWithEndpoints(b, f, "bcons", []string{"10.60.1.0/24", "10.60.2.0/24"}, "10.60.2.5")
	cclient := mustEnsureNIC(b, f, "bccl", "bcons", "10.60.1.20/24")
	mustEnsureEndpoints(b, f, "bcons", EndpointNAT{Name: "b.pe", Endpoint: mustAddr("10.60.2.5"), Ports: []uint16{80}, Service: "bnat",
		ServiceKind: KindNIC, ServiceAddr: link, SNAT: mustAddr("169.254.201.2")})
	p := &benchPath{f: f}
	paths := []struct {
		name string
		conn net.Conn
	}{
		{"provider", p.dial(b, pclient, "10.60.1.100:80", 'r')},
		{"natnic", p.dial(b, nat, "10.60.1.100:80", 'r')},
		{"endpoint", p.dial(b, cclient, "10.60.2.5:80", 'r')},
	}
	for _, path := range paths {
		b.Cleanup(func() { path.conn.Close() })
	}
	for _, mode := range []struct {
		name  string
		pause time.Duration
	}{{"busy", 0}, {"idle", time.Millisecond}} {
		b.Run(mode.name, func(b *testing.B) {
			conns, names := make([]net.Conn, len(paths)), make([]string, len(paths))
			for i, path := range paths {
				conns[i], names[i] = path.conn, path.name
			}
			median := roundTrips(b, conns, names, mode.pause)
			b.ReportMetric(float64(median[0])/float64(median[len(median)-1]), "ratio")
		})
	}
}
