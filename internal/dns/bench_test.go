package dns

import (
	"context"
	"net"
	"testing"

	mdns "github.com/miekg/dns"
)

// BenchmarkQueryA measures queries per second for one A lookup over
// loopback UDP: through privlink's server (catalog, view, resolution,
// EDNS and truncation handling, counters), against a bare miekg/dns server
// whose static handler answers the same record, and, for reference, the
// whole privatelink chain (public CNAME, then the linked zone's A record).
// Each parallel client keeps one UDP socket and waits for every answer.
func BenchmarkQueryA(b *testing.B) {
	const pl1 = "srv1." + plZone + "."
	b.Run("privlink", func(b *testing.B) {
		ep := serve(b, NewServer(fixture(b), testLogger(b)), vnetA)
		benchUDP(b, ep.udp, pl1, 1)
	})
	b.Run("bare-miekg", func(b *testing.B) {
		rr := &mdns.A{Hdr: mdns.RR_Header{Name: pl1, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 10}, A: net.IPv4(10, 0, 2, 5)}
		h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
			m := new(mdns.Msg).SetReply(r)
			m.Authoritative = true
			m.Answer = []mdns.RR{rr}
			_ = w.WriteMsg(m)
		})
		benchUDP(b, serveBare(b, h), pl1, 1)
	})
	b.Run("privlink-chain", func(b *testing.B) {
		ep := serve(b, NewServer(fixture(b), testLogger(b)), vnetA)
		benchUDP(b, ep.udp, "srv1.postgres.database.azure.com.", 2)
	})
}

// serveBare runs a plain miekg/dns server with h on loopback UDP until the
// benchmark ends.
func serveBare(b *testing.B, h mdns.Handler) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	must(b, err)
	started := make(chan struct{})
	done := make(chan error, 1)
	srv := &mdns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { close(started) }}
	go func() { done <- srv.ActivateAndServe() }()
	b.Cleanup(func() {
		select {
		case <-started:
			must(b, srv.ShutdownContext(context.Background()))
		case err := <-done:
			b.Errorf("bare server: %v", err)
			return
		}
		must(b, <-done)
	})
	return pc.LocalAddr().String()
}

func benchUDP(b *testing.B, addr, name string, answers int) {
	b.RunParallel(func(pb *testing.PB) {
		c := &mdns.Client{Net: "udp"}
		conn, err := c.Dial(addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		m := query(name, mdns.TypeA)
		for pb.Next() {
			r, _, err := c.ExchangeWithConn(m, conn)
			if err != nil {
				b.Error(err)
				return
			}
			if len(r.Answer) != answers {
				b.Errorf("answer %v", r.Answer)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}

// BenchmarkAnswer measures the work of privlink's handler for one query
// without sockets: resolution in a view and the packed response.
func BenchmarkAnswer(b *testing.B) {
	cat := fixture(b)
	for _, q := range []struct{ name, view, qname string }{
		{"private-A", vnetA, "srv1." + plZone + "."},
		{"chain-private", vnetA, "srv1.postgres.database.azure.com."},
		{"chain-public", InternetView, "srv1.postgres.database.azure.com."},
		{"nxdomain", vnetA, "nope." + plZone + "."},
	} {
		b.Run(q.name, func(b *testing.B) {
			h := &handler{cat: cat, log: testLogger(b), view: q.view, stats: &counters{}}
			req := query(q.qname, mdns.TypeA)
			req.SetEdns0(1232, false)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.answer(req).Pack(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
