// Command dnsbench measures the DNS of a virtual network where clients use
// it: from inside a NIC's namespace, over the veth and the router, to
// 168.63.129.16:53 in the network's router namespace. The ceiling, measured
// in the same run on the same path, is a bare miekg/dns server whose static
// handler answers the same A record, listening in the same router namespace
// on 168.63.129.16:5353.
//
// It builds a network and one NIC with internal/fabric under a namespace
// prefix of its own, serves a dns.Catalog view with dns.Server on sockets
// opened inside the router namespace (as the network controller does), and
// sends queries over UDP from c client goroutines, each with its own socket
// opened inside the NIC's namespace and one query in flight. Measurements
// of a fixed duration run in several rounds, each round in a rotated order;
// the table shows medians, with each round's ratio taken against that
// round's ceiling.
// Client and servers share the machine's cores, as in
// internal/dns's BenchmarkQueryA (which does the same over the host's
// loopback, without namespaces).
//
// It needs root. At the end it removes every namespace of its prefix.
//
//	go run ./bench/dnsbench
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/privlink/privlink/bench/internal/benchd"
	"github.com/privlink/privlink/bench/internal/lat"
	"github.com/privlink/privlink/bench/internal/table"
	"github.com/privlink/privlink/internal/dns"
	"github.com/privlink/privlink/internal/fabric"
)

const (
	view   = "bench"
	plZone = "privatelink.postgres.database.azure.com"
	// privateA is the private zone's record; the bare server answers it too.
	privateA = "srv1." + plZone + "."
	// chain is the name clients of a private endpoint ask for: a public
	// CNAME to privateA, followed in the view.
	chain = "srv1.postgres.database.azure.com."
)

var endpointAddr = netip.MustParseAddr("10.0.2.5")

type flags struct {
	clients  int
	duration time.Duration
	rounds   int
	timeout  time.Duration
}

func main() {
	var f flags
	flag.IntVar(&f.clients, "c", 8, "client goroutines, one UDP socket and one query in flight each")
	flag.DurationVar(&f.duration, "d", 2*time.Second, "duration of each measurement")
	flag.IntVar(&f.rounds, "rounds", 5, "interleaved rounds; the table shows medians")
	flag.DurationVar(&f.timeout, "timeout", time.Second, "a query without an answer after this long counts as lost")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("dnsbench: ")
	if os.Geteuid() != 0 {
		log.Fatal("must run as root: it creates network namespaces")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, f)
	stop()
	if err != nil {
		log.Fatal(err)
	}
}

// target is one server to measure.
type target struct {
	name    string
	port    int
	qname   string
	answers int // records in a correct answer
}

func run(ctx context.Context, f flags) (err error) {
	prefix, err := benchd.UniquePrefix("pbd")
	if err != nil {
		return err
	}
	fab, err := fabric.New(prefix, nil)
	if err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	defer func() { err = errors.Join(err, benchd.RemoveNamespaces(prefix)) }()
	subnet := netip.MustParsePrefix("10.0.1.0/24")
	if err := fab.EnsureNetwork(fabric.NetworkSpec{ID: "dns", Subnets: []netip.Prefix{subnet}}); err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	if err := fab.EnsureNIC(fabric.NICSpec{ID: "client", Network: "dns", Address: netip.MustParsePrefix("10.0.1.4/24")}); err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	router := fab.NamespaceName(fabric.KindNetwork, "dns")
	nic := fab.NamespaceName(fabric.KindNIC, "client")

	// privlink's DNS on 168.63.129.16:53, as the network controller
	// serves it.
	cat, err := catalog()
	if err != nil {
		return err
	}
	srv := dns.NewServer(cat, nil)
	pc, err := fab.ListenUDP(router, netip.AddrPortFrom(fabric.DNSAddr, 53).String())
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ln, err := fab.ListenTCP(router, netip.AddrPortFrom(fabric.DNSAddr, 53).String())
	if err != nil {
		pc.Close()
		return fmt.Errorf("listen: %w", err)
	}
	sctx, stopServing := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, view, pc, ln) }()
	defer func() {
		stopServing()
		if serr := <-served; serr != nil {
			err = errors.Join(err, fmt.Errorf("privlink dns: %w", serr))
		}
	}()

	// The ceiling: a bare miekg/dns server on 168.63.129.16:5353.
	stopBare, err := serveBare(fab, router, netip.AddrPortFrom(fabric.DNSAddr, 5353))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopBare()) }()

	targets := []target{
		{"bare miekg/dns, static A (ceiling)", 5353, privateA, 1},
		{"privlink dns.Server, private zone A", 53, privateA, 1},
		{"privlink dns.Server, privatelink chain (CNAME + A)", 53, chain, 2},
	}

	// One socket per client and target, opened inside the NIC.
	conns := make([][]*mdns.Conn, len(targets))
	defer func() {
		for _, cs := range conns {
			for _, c := range cs {
				c.Close()
			}
		}
	}()
	for i, t := range targets {
		for range f.clients {
			c, err := fab.DialContext(ctx, nic, "udp", netip.AddrPortFrom(fabric.DNSAddr, uint16(t.port)).String())
			if err != nil {
				return fmt.Errorf("dial from %s: %w", nic, err)
			}
			conns[i] = append(conns[i], &mdns.Conn{Conn: c, UDPSize: mdns.MaxMsgSize})
		}
	}

	var lost atomic.Int64
	measure := func(i int, load lat.Load) (lat.Run, error) {
		t := targets[i]
		return lat.Drive(ctx, load, func(_ context.Context, client, _ int) error {
			return query(conns[i][client], t, f.timeout, &lost)
		})
	}
	// Warm up every path (ARP, caches, the servers' goroutine pools).
	for i := range targets {
		if _, err := measure(i, lat.Load{Clients: f.clients, Duration: f.duration / 5}); err != nil {
			return fmt.Errorf("warm-up %s: %w", targets[i].name, err)
		}
	}
	lost.Store(0)
	before := srv.Stats(view)

	type sample struct {
		rate, ratio float64
		p50, p99    time.Duration
	}
	results := make([][]sample, len(targets))
	sent := 0
	for round := range f.rounds {
		// Each round starts with another target, so that no target
		// always runs first (or right after a given other one).
		runs := make([]lat.Run, len(targets))
		for k := range targets {
			i := (round + k) % len(targets)
			r, err := measure(i, lat.Load{Clients: f.clients, Duration: f.duration})
			if err != nil {
				return fmt.Errorf("%s: %w", targets[i].name, err)
			}
			if i != 0 {
				sent += len(r.Lat)
			}
			runs[i] = r
		}
		for i, r := range runs {
			results[i] = append(results[i], sample{rate: r.Rate(), ratio: r.Rate() / runs[0].Rate(), p50: r.Quantile(0.5), p99: r.Quantile(0.99)})
		}
	}
	after := srv.Stats(view)

	fmt.Printf("UDP from NIC namespace to 168.63.129.16 in the router namespace; clients=%d, %s per measurement, rounds=%d (medians; ratio per round to the same round's ceiling)\n\n",
		f.clients, f.duration, f.rounds)
	table.Header("server", "queries/s", "p50", "p99", "ratio to bare miekg/dns")
	for i, t := range targets {
		rs := results[i]
		fmt.Printf("| %s | %.0f | %s | %s | %.2f |\n", t.name, lat.MedianOf(rs, func(s sample) float64 { return s.rate }),
			lat.Round(lat.MedianOf(rs, func(s sample) time.Duration { return s.p50 })),
			lat.Round(lat.MedianOf(rs, func(s sample) time.Duration { return s.p99 })), lat.MedianOf(rs, func(s sample) float64 { return s.ratio }))
	}
	fmt.Printf("\nlost queries (no answer within %s): %d; privlink counted %d queries and %d NOERROR responses for %d answered\n",
		f.timeout, lost.Load(), after.Queries-before.Queries, after.Responses["NOERROR"]-before.Responses["NOERROR"], sent)
	return nil
}

// catalog is what a network with a private endpoint's zone linked sees:
// privatelink.postgres.database.azure.com with srv1's A record, linked to
// the view, and srv1's public names.
func catalog() (*dns.Catalog, error) {
	cat := dns.NewCatalog()
	err := cat.Update(func(tx *dns.Tx) error {
		if err := tx.PutZone("zone", plZone); err != nil {
			return err
		}
		if err := tx.PutRecordSet("zone", dns.RecordSet{Name: "@", Type: dns.TypeSOA, TTL: 3600, SOA: &dns.SOA{
			Host: "azureprivatedns.net", Email: "azureprivatedns-host.microsoft.com",
			Serial: 1, Refresh: 3600, Retry: 300, Expire: 2419200, MinimumTTL: 10}}); err != nil {
			return err
		}
		if err := tx.PutRecordSet("zone", dns.RecordSet{Name: "srv1", Type: dns.TypeA, TTL: 10, A: []netip.Addr{endpointAddr}}); err != nil {
			return err
		}
		if err := tx.PutLink("link", dns.Link{View: view, Zone: "zone"}); err != nil {
			return err
		}
		return tx.PutPublic("srv1",
			dns.RecordSet{Name: chain, Type: dns.TypeCNAME, TTL: 3600, CNAME: privateA},
			dns.RecordSet{Name: privateA, Type: dns.TypeA, TTL: 10, A: []netip.Addr{netip.MustParseAddr("198.18.0.10")}})
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	return cat, nil
}

// serveBare starts a plain miekg/dns server answering privateA's record on
// addr inside namespace ns, and returns the function that stops it.
func serveBare(fab *fabric.Fabric, ns string, addr netip.AddrPort) (stop func() error, err error) {
	pc, err := fab.ListenUDP(ns, addr.String())
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	rr := &mdns.A{Hdr: mdns.RR_Header{Name: privateA, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 10}, A: net.IP(endpointAddr.AsSlice())}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg).SetReply(r)
		m.Authoritative = true
		m.Answer = []mdns.RR{rr}
		_ = w.WriteMsg(m)
	})
	started := make(chan struct{})
	done := make(chan error, 1)
	s := &mdns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { close(started) }}
	go func() { done <- s.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		pc.Close()
		return nil, fmt.Errorf("bare dns server: %w", err)
	}
	return func() error {
		if err := s.ShutdownContext(context.Background()); err != nil {
			return fmt.Errorf("bare dns server: shut down: %w", err)
		}
		if err := <-done; err != nil {
			return fmt.Errorf("bare dns server: %w", err)
		}
		return nil
	}, nil
}

// query sends one A query for t.qname on c and waits for its answer,
// checking that it carries t.answers records. A query without an answer
// within timeout is counted in lost (UDP may drop) and not as an error.
func query(c *mdns.Conn, t target, timeout time.Duration, lost *atomic.Int64) error {
	m := new(mdns.Msg).SetQuestion(t.qname, mdns.TypeA)
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	if err := c.WriteMsg(m); err != nil {
		return fmt.Errorf("send query: %w", err)
	}
	for {
		r, err := c.ReadMsg()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			lost.Add(1)
			return nil
		}
		if err != nil {
			return fmt.Errorf("read answer: %w", err)
		}
		if r.Id != m.Id {
			continue // a late answer to a query counted as lost
		}
		if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != t.answers {
			return fmt.Errorf("%s: unexpected answer %s %v", t.qname, mdns.RcodeToString[r.Rcode], r.Answer)
		}
		return nil
	}
}
