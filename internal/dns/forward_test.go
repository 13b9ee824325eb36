package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// serveForwarding serves the internet view with fw on loopback until the
// test ends.
func serveForwarding(t *testing.T, s *Server, fw Forwarding) *endpoint {
	t.Helper()
	return serveWith(t, func(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
		return s.ServeForwarding(ctx, InternetView, fw, pc, ln)
	})
}

// TestForwarding: a site's DNS (the internet's public names, with the
// privatelink zone forwarded to an inbound endpoint, which is vnetA's view
// of the same catalog here) answers a server's usual name with the public
// CNAME and then the private address from the upstream, never the public
// fallback; a name inside the zone goes to the upstream directly; other
// names are the internet's; a silent upstream means SERVFAIL.
func TestForwarding(t *testing.T) {
	cat := fixture(t)
	s := NewServer(cat, testLogger(t))
	inbound := serve(t, s, vnetA)
	up := netip.MustParseAddrPort(inbound.udp)
	var d net.Dialer
	site := serveForwarding(t, s, Forwarding{Zones: []Forward{{Zone: "PrivateLink.Postgres.Database.Azure.Com", Upstream: up}}, Dial: d.DialContext})

	for _, network := range []string{"udp", "tcp"} {
		addr := site.udp
		if network == "tcp" {
			addr = site.tcp
		}
		r := exchange(t, network, addr, query("srv1.postgres.database.azure.com", mdns.TypeA))
		if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 2 {
			t.Fatalf("%s: srv1: %v", network, r)
		}
		if c, ok := r.Answer[0].(*mdns.CNAME); !ok || c.Target != "srv1."+plZone+"." {
			t.Fatalf("%s: first answer %v, want the public CNAME", network, r.Answer[0])
		}
		if a, ok := r.Answer[1].(*mdns.A); !ok || a.A.String() != "10.0.2.5" {
			t.Fatalf("%s: second answer %v, want the private address from the upstream", network, r.Answer[1])
		}
	}
	r := exchange(t, "udp", site.udp, query("multi."+plZone, mdns.TypeA))
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 3 {
		t.Fatalf("a name in the zone: %v", r)
	}
	r = exchange(t, "udp", site.udp, query("nothere."+plZone, mdns.TypeA))
	if r.Rcode != mdns.RcodeNameError || len(r.Ns) != 1 {
		t.Fatalf("a missing name in the zone: %v, want the upstream's NXDOMAIN with its SOA", r)
	}
	// srv2 has no record in vnetA's zone: the upstream's NXDOMAIN, not
	// the public fallback the internet would give.
	r = exchange(t, "udp", site.udp, query("srv2.postgres.database.azure.com", mdns.TypeA))
	if r.Rcode != mdns.RcodeNameError {
		t.Fatalf("srv2 through the forwarder: %v", r)
	}
	// Without a forwarder for the zone, the internet's answer: the public
	// fallback address.
	plain := serveForwarding(t, s, Forwarding{Dial: d.DialContext})
	r = exchange(t, "udp", plain.udp, query("srv1.postgres.database.azure.com", mdns.TypeA))
	if len(r.Answer) != 2 || r.Answer[1].(*mdns.A).A.String() != "198.18.0.10" {
		t.Fatalf("no forwarder: %v, want the public address", r)
	}

	// An upstream that never answers: SERVFAIL, within the timeout.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { silent.Close() })
	dead := serveForwarding(t, s, Forwarding{Zones: []Forward{{Zone: plZone, Upstream: netip.MustParseAddrPort(silent.LocalAddr().String())}},
		Dial: d.DialContext, Timeout: 200 * time.Millisecond})
	c := &mdns.Client{Net: "udp", Timeout: 5 * time.Second}
	r, _, err = c.Exchange(query("srv1.postgres.database.azure.com", mdns.TypeA), dead.udp)
	if err != nil || r.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("silent upstream: %v, %v; want SERVFAIL", r, err)
	}
}

func TestForwardingUpstream(t *testing.T) {
	a, b := netip.MustParseAddrPort("10.0.0.1:53"), netip.MustParseAddrPort("10.0.0.2:53")
	fw := Forwarding{Zones: []Forward{{Zone: "database.azure.com.", Upstream: a}, {Zone: "privatelink.postgres.database.azure.com.", Upstream: b}}}
	for name, want := range map[string]netip.AddrPort{
		"x.privatelink.postgres.database.azure.com": b,
		"PRIVATELINK.postgres.database.azure.com.":  b,
		"srv1.postgres.database.azure.com":          a,
		"database.azure.com":                        a,
		"xdatabase.azure.com":                       {},
		"example.com":                               {},
	} {
		got, ok := fw.upstream(name)
		if got != want || ok != want.IsValid() {
			t.Errorf("upstream(%s) = %v %v, want %v", name, got, ok, want)
		}
	}
}

// TestForwardingTruncated: an upstream whose UDP answer is truncated is
// asked again over TCP, and the full answer is relayed.
func TestForwardingTruncated(t *testing.T) {
	handler := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg).SetReply(req)
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			m.Truncated = true
		} else {
			for i := range 40 {
				rr, _ := mdns.NewRR(fmt.Sprintf("%s 10 IN A 10.0.7.%d", req.Question[0].Name, i+1))
				m.Answer = append(m.Answer, rr)
			}
		}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	must(t, err)
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	must(t, err)
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		go func() { _ = srv.ActivateAndServe() }()
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	var d net.Dialer
	s := NewServer(NewCatalog(), testLogger(t))
	site := serveForwarding(t, s, Forwarding{Zones: []Forward{{Zone: "big.example", Upstream: netip.MustParseAddrPort(pc.LocalAddr().String())}}, Dial: d.DialContext})
	r := exchange(t, "tcp", site.tcp, query("many.big.example", mdns.TypeA))
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 40 {
		t.Fatalf("truncated upstream: rcode %d, %d answers, want the 40 of the TCP answer", r.Rcode, len(r.Answer))
	}
}
