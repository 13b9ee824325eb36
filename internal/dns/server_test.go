package dns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestMain fails the run if a server goroutine outlives the tests: every
// test waits for its Serve calls to return, so none may be left.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		// A connection's goroutine may still be on its way out (miekg/dns
		// does not wait for them on shutdown): give them a moment.
		leaked := serverGoroutines()
		for deadline := time.Now().Add(5 * time.Second); leaked != "" && time.Now().Before(deadline); leaked = serverGoroutines() {
			time.Sleep(10 * time.Millisecond)
		}
		if leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked server goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

func serverGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/miekg/dns.(*Server)") ||
			strings.Contains(g, "internal/dns.(*Server).Serve") {
			leaked = append(leaked, g)
		}
	}
	return strings.Join(leaked, "\n\n")
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// endpoint is one view served on loopback: its UDP and TCP addresses.
type endpoint struct {
	udp, tcp string
}

// serve serves view on fresh loopback sockets until the test ends, and
// checks then that Serve returned nil.
func serve(t testing.TB, s *Server, view string) *endpoint {
	t.Helper()
	return serveWith(t, func(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
		return s.Serve(ctx, view, pc, ln)
	})
}

// serveWith runs serve on fresh loopback sockets until the test ends, and
// checks then that it returned nil.
func serveWith(t testing.TB, serve func(context.Context, net.PacketConn, net.Listener) error) *endpoint {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	must(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, pc, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &endpoint{udp: pc.LocalAddr().String(), tcp: ln.Addr().String()}
}

func query(name string, qtype uint16) *mdns.Msg {
	return new(mdns.Msg).SetQuestion(mdns.Fqdn(name), qtype)
}

func exchange(t testing.TB, network, addr string, m *mdns.Msg) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: network}
	if network == "udp" {
		c.UDPSize = mdns.MaxMsgSize // read whatever the server sends
	}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, m.Question[0].Name, mdns.TypeToString[m.Question[0].Qtype], err)
	}
	if r.Id != m.Id {
		t.Fatalf("response id %d, want %d", r.Id, m.Id)
	}
	return r
}

func answerA(r *mdns.Msg) string {
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return strings.Join(out, ",")
}

func TestServerViews(t *testing.T) {
	cat := fixture(t)
	s := NewServer(cat, testLogger(t))
	want := map[string]string{
		vnetA:        "10.0.2.5",
		vnetB:        "10.1.2.5",
		vnetC:        "198.18.0.10",
		InternetView: "198.18.0.10",
	}
	eps := map[string]*endpoint{}
	for view := range want {
		eps[view] = serve(t, s, view)
	}
	for view, ip := range want {
		for _, network := range []string{"udp", "tcp"} {
			addr := eps[view].udp
			if network == "tcp" {
				addr = eps[view].tcp
			}
			r := exchange(t, network, addr, query("SRV1.postgres.database.azure.com", mdns.TypeA))
			if r.Rcode != mdns.RcodeSuccess || answerA(r) != ip {
				t.Errorf("view %q over %s: %s %v, want %s", view, network, mdns.RcodeToString[r.Rcode], r.Answer, ip)
			}
			if len(r.Answer) != 2 || r.Answer[0].Header().Rrtype != mdns.TypeCNAME {
				t.Errorf("view %q over %s: answer %v, want the CNAME then the A record", view, network, r.Answer)
			}
			if !r.RecursionAvailable || r.Authoritative {
				t.Errorf("view %q over %s: ra=%v aa=%v, want ra and no aa (the question name is public)", view, network, r.RecursionAvailable, r.Authoritative)
			}
			if got := r.Question[0].Name; got != "SRV1.postgres.database.azure.com." {
				t.Errorf("question echoed as %q", got)
			}
		}
	}

	// A private-only name: authoritative in vnetA, NXDOMAIN with the SOA of
	// its own zone in vnetB, NXDOMAIN elsewhere.
	r := exchange(t, "udp", eps[vnetA].udp, query("multi."+plZone, mdns.TypeA))
	if !r.Authoritative || answerA(r) != "10.0.2.6,10.0.2.7,10.0.2.8" {
		t.Errorf("vnetA multi: aa=%v %v", r.Authoritative, r.Answer)
	}
	r = exchange(t, "udp", eps[vnetB].udp, query("multi."+plZone, mdns.TypeA))
	if r.Rcode != mdns.RcodeNameError || !r.Authoritative || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != mdns.TypeSOA {
		t.Errorf("vnetB multi: %s aa=%v ns=%v, want NXDOMAIN aa with the SOA", mdns.RcodeToString[r.Rcode], r.Authoritative, r.Ns)
	}
	for _, view := range []string{vnetC, InternetView} {
		r = exchange(t, "udp", eps[view].udp, query("multi."+plZone, mdns.TypeA))
		if r.Rcode != mdns.RcodeNameError || r.Authoritative || len(r.Ns) != 0 {
			t.Errorf("view %q multi: %s aa=%v ns=%v, want NXDOMAIN", view, mdns.RcodeToString[r.Rcode], r.Authoritative, r.Ns)
		}
	}
	// NODATA.
	r = exchange(t, "tcp", eps[vnetA].tcp, query("srv1."+plZone, mdns.TypeAAAA))
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
		t.Errorf("NODATA: %s %v %v", mdns.RcodeToString[r.Rcode], r.Answer, r.Ns)
	}
}

func TestServerUpdates(t *testing.T) {
	cat := fixture(t)
	s := NewServer(cat, testLogger(t))
	ep := serve(t, s, vnetA)
	q := func() *mdns.Msg {
		return exchange(t, "udp", ep.udp, query("srv1.postgres.database.azure.com", mdns.TypeA))
	}
	if got := answerA(q()); got != "10.0.2.5" {
		t.Fatalf("before: %s", got)
	}
	must(t, cat.PutRecordSet(zoneA, aSet("srv1", "10.0.2.77")))
	if got := answerA(q()); got != "10.0.2.77" {
		t.Fatalf("after the record update: %s", got)
	}
	cat.DeleteZone(zoneA)
	if got := answerA(q()); got != "198.18.0.10" {
		t.Fatalf("after the zone delete: %s", got)
	}
}

func TestServerTruncation(t *testing.T) {
	cat := fixture(t)
	var many []string
	for i := range 100 {
		many = append(many, fmt.Sprintf("10.0.7.%d", i))
	}
	must(t, cat.PutRecordSet(zoneA, aSet("big", many...)))
	must(t, cat.PutRecordSet(zoneA, aSet("mid", many[:50]...)))
	s := NewServer(cat, testLogger(t))
	ep := serve(t, s, vnetA)

	tests := []struct {
		name    string
		network string
		qname   string
		edns    uint16 // 0: no OPT
		tc      bool
		maxSize int
		answers int // exact when !tc
	}{
		{"UDP without EDNS", "udp", "big", 0, true, mdns.MinMsgSize, 0},
		{"UDP, EDNS 4096 capped at MaxUDPSize", "udp", "big", 4096, true, MaxUDPSize, 0},
		{"UDP, EDNS 4096, 50 records fit", "udp", "mid", 4096, false, MaxUDPSize, 50},
		{"UDP, EDNS 512", "udp", "mid", 512, true, mdns.MinMsgSize, 0},
		{"UDP, EDNS fits", "udp", "mid", 1232, false, MaxUDPSize, 50},
		{"UDP, EDNS below 512 counts as 512", "udp", "multi", 100, false, mdns.MinMsgSize, 3},
		{"TCP", "tcp", "big", 0, false, mdns.MaxMsgSize, 100},
		{"TCP with EDNS", "tcp", "big", 512, false, mdns.MaxMsgSize, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := query(tt.qname+"."+plZone, mdns.TypeA)
			if tt.edns != 0 {
				m.SetEdns0(tt.edns, false)
			}
			addr := ep.udp
			if tt.network == "tcp" {
				addr = ep.tcp
			}
			r := exchange(t, tt.network, addr, m)
			total := len(r.Answer)
			r.Compress = true // as the server sent it
			wire, err := r.Pack()
			must(t, err)
			if r.Truncated != tt.tc {
				t.Errorf("TC=%v, want %v", r.Truncated, tt.tc)
			}
			if len(wire) > tt.maxSize {
				t.Errorf("response of %d bytes, limit %d", len(wire), tt.maxSize)
			}
			if !tt.tc && len(r.Answer) != tt.answers {
				t.Errorf("%d answers, want %d", len(r.Answer), tt.answers)
			}
			if full := map[string]int{"big": 100, "mid": 50}[tt.qname]; tt.tc && (total == 0 || total >= full) {
				t.Errorf("truncated response with %d of %d answers", total, full)
			}
			if (r.IsEdns0() != nil) != (tt.edns != 0) {
				t.Errorf("OPT in response: %v, in request: %v", r.IsEdns0() != nil, tt.edns != 0)
			}
		})
	}
	if st := s.Stats(vnetA); st.Truncated != 3 {
		t.Errorf("Stats.Truncated = %d, want 3", st.Truncated)
	}
}

func TestServerEDNS(t *testing.T) {
	s := NewServer(fixture(t), testLogger(t))
	ep := serve(t, s, vnetA)

	m := query("srv1."+plZone, mdns.TypeA)
	m.SetEdns0(4096, true)
	r := exchange(t, "udp", ep.udp, m)
	opt := r.IsEdns0()
	if opt == nil {
		t.Fatal("no OPT in the response to an EDNS query")
	}
	if opt.UDPSize() != MaxUDPSize || !opt.Do() || opt.Version() != 0 {
		t.Errorf("OPT size=%d do=%v version=%d, want %d, true, 0", opt.UDPSize(), opt.Do(), opt.Version(), MaxUDPSize)
	}
	if answerA(r) != "10.0.2.5" {
		t.Errorf("answer %v", r.Answer)
	}

	m = query("srv1."+plZone, mdns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	r = exchange(t, "udp", ep.udp, m)
	if r.Rcode != mdns.RcodeBadVers || len(r.Answer) != 0 || r.IsEdns0() == nil || r.IsEdns0().Version() != 0 {
		t.Errorf("EDNS version 1: %s answer=%v opt=%v, want BADVERS with a version 0 OPT", mdns.RcodeToString[r.Rcode], r.Answer, r.IsEdns0())
	}

	r = exchange(t, "udp", ep.udp, query("srv1."+plZone, mdns.TypeA))
	if r.IsEdns0() != nil {
		t.Errorf("OPT in the response to a query without one")
	}
}

func TestServerRefusals(t *testing.T) {
	s := NewServer(fixture(t), testLogger(t))
	ep := serve(t, s, vnetA)

	chaos := query("version.bind", mdns.TypeTXT)
	chaos.Question[0].Qclass = mdns.ClassCHAOS
	update := new(mdns.Msg)
	update.SetUpdate(plZone + ".")
	update.Insert([]mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: "evil." + plZone + ".", Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 1}, A: net.IPv4(10, 6, 6, 6)}})
	status := query(plZone, mdns.TypeSOA)
	status.Opcode = mdns.OpcodeStatus
	notify := new(mdns.Msg).SetNotify(plZone + ".")
	twoQuestions := query("srv1."+plZone, mdns.TypeA)
	twoQuestions.Question = append(twoQuestions.Question, twoQuestions.Question[0])

	tests := []struct {
		name    string
		network string
		m       *mdns.Msg
		rcode   int
	}{
		{"CHAOS class", "udp", chaos, mdns.RcodeRefused},
		{"UPDATE", "udp", update, mdns.RcodeRefused},
		{"NOTIFY", "udp", notify, mdns.RcodeRefused},
		{"STATUS", "udp", status, mdns.RcodeNotImplemented},
		{"AXFR", "tcp", query(plZone, mdns.TypeAXFR), mdns.RcodeRefused},
		{"two questions", "udp", twoQuestions, mdns.RcodeFormatError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := ep.udp
			if tt.network == "tcp" {
				addr = ep.tcp
			}
			r := exchange(t, tt.network, addr, tt.m)
			if r.Rcode != tt.rcode || len(r.Answer) != 0 {
				t.Errorf("rcode %s answer %v, want %s and no answer", mdns.RcodeToString[r.Rcode], r.Answer, mdns.RcodeToString[tt.rcode])
			}
		})
	}
	// The update did not happen.
	r := exchange(t, "udp", ep.udp, query("evil."+plZone, mdns.TypeA))
	if r.Rcode != mdns.RcodeNameError {
		t.Errorf("after a refused UPDATE: %s %v", mdns.RcodeToString[r.Rcode], r.Answer)
	}
}

func TestServerMalformed(t *testing.T) {
	s := NewServer(fixture(t), testLogger(t))
	ep := serve(t, s, vnetA)
	good, err := query("srv1."+plZone, mdns.TypeA).Pack()
	must(t, err)
	// A header announcing one question, cut in the middle of the name.
	bad := good[:12+5]

	conn, err := net.Dial("udp", ep.udp)
	must(t, err)
	defer conn.Close()
	_, err = conn.Write(bad)
	must(t, err)
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	must(t, err)
	var h mdns.Msg
	must(t, h.Unpack(buf[:n]))
	if h.Rcode != mdns.RcodeFormatError || !h.Response || h.Id != binaryID(bad) {
		t.Errorf("malformed query: rcode %s response=%v id=%d", mdns.RcodeToString[h.Rcode], h.Response, h.Id)
	}
	// The server still answers.
	if got := answerA(exchange(t, "udp", ep.udp, query("srv1."+plZone, mdns.TypeA))); got != "10.0.2.5" {
		t.Errorf("after a malformed query: %s", got)
	}
	st := s.Stats(vnetA)
	if st.Malformed != 1 || st.Queries != 2 || st.Responses["FORMERR"] != 1 || st.Responses["NOERROR"] != 1 {
		t.Errorf("stats %+v, want 1 malformed, 2 queries, 1 FORMERR, 1 NOERROR", st)
	}
}

func binaryID(m []byte) uint16 { return uint16(m[0])<<8 | uint16(m[1]) }

func TestServerStats(t *testing.T) {
	s := NewServer(fixture(t), testLogger(t))
	epA := serve(t, s, vnetA)
	epB := serve(t, s, vnetB)
	for range 3 {
		exchange(t, "udp", epA.udp, query("srv1."+plZone, mdns.TypeA))
	}
	exchange(t, "tcp", epA.tcp, query("nope."+plZone, mdns.TypeA))
	exchange(t, "udp", epB.udp, query("nope."+plZone, mdns.TypeA))

	if st := s.Stats(vnetA); st.Queries != 4 || st.Responses["NOERROR"] != 3 || st.Responses["NXDOMAIN"] != 1 || len(st.Responses) != 2 {
		t.Errorf("vnetA stats %+v", st)
	}
	if st := s.Stats(vnetB); st.Queries != 1 || st.Responses["NXDOMAIN"] != 1 {
		t.Errorf("vnetB stats %+v", st)
	}
	if st := s.Stats("never"); st.Queries != 0 || st.Responses == nil {
		t.Errorf("stats of a view never served: %+v", st)
	}
	if all := s.AllStats(); len(all) != 2 {
		t.Errorf("AllStats has %d views, want 2", len(all))
	}
	s.ForgetStats(vnetB)
	if all := s.AllStats(); len(all) != 1 {
		t.Errorf("AllStats after ForgetStats has %d views, want 1", len(all))
	}
}

func TestServeSockets(t *testing.T) {
	s := NewServer(fixture(t), testLogger(t))
	if err := s.Serve(context.Background(), vnetA, nil, nil); err == nil {
		t.Error("Serve without sockets succeeded")
	}

	t.Run("UDP only", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		must(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx, vnetA, pc, nil) }()
		if got := answerA(exchange(t, "udp", pc.LocalAddr().String(), query("srv1."+plZone, mdns.TypeA))); got != "10.0.2.5" {
			t.Errorf("answer %s", got)
		}
		cancel()
		must(t, <-done)
	})

	t.Run("already cancelled", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		must(t, err)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		must(t, s.Serve(ctx, vnetA, pc, ln))
		if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			t.Error("listener still open after Serve returned")
		}
	})

	t.Run("socket failure stops the view", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		must(t, err)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		done := make(chan error, 1)
		go func() { done <- s.Serve(context.Background(), vnetA, pc, ln) }()
		// Once TCP answers, both servers run.
		exchange(t, "tcp", ln.Addr().String(), query("srv1."+plZone, mdns.TypeA))
		pc.Close()
		err = <-done
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve after its UDP socket closed: %v, want net.ErrClosed", err)
		}
		if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			t.Error("listener still open after Serve returned")
		}
	})
}

// TestConcurrentWritersAndReaders runs writers and readers together (for
// -race) and checks that each reader sees versions in order: a write is
// visible to every later query, never undone.
func TestConcurrentWritersAndReaders(t *testing.T) {
	cat := fixture(t)
	s := NewServer(cat, testLogger(t))
	ep := serve(t, s, vnetA)
	const writes = 2000
	version := func(r *mdns.Msg) int {
		for _, rr := range r.Answer {
			if a, ok := rr.(*mdns.A); ok {
				ip := a.A.To4()
				return int(ip[2])<<8 | int(ip[3])
			}
		}
		return -1
	}
	ipOf := func(i int) string { return fmt.Sprintf("10.9.%d.%d", i>>8, i&0xff) }
	must(t, cat.PutRecordSet(zoneA, aSet("srv1", ipOf(0))))

	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 16)
	// The versioned writer.
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(stop)
		for i := 1; i <= writes; i++ {
			if err := cat.PutRecordSet(zoneA, aSet("srv1", ipOf(i))); err != nil {
				errs <- err
				return
			}
		}
	}()
	// Writers that churn unrelated data in the same snapshots.
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := ZoneID(fmt.Sprintf("churn-%d-%d", w, i%5))
				_ = cat.PutZone(id, fmt.Sprintf("z%d.churn.example", i%5))
				_ = cat.PutRecordSet(id, aSet(fmt.Sprintf("r%d", i), "10.0.0.1"))
				_ = cat.PutLink(LinkID(id), Link{View: vnetA, Zone: id})
				_ = cat.PutPublic(string(id), aSet(fmt.Sprintf("p%d.example", i%7), "198.18.1.1"))
				if i%3 == 0 {
					cat.DeleteZone(id)
					cat.DeleteLink(LinkID(id))
					cat.DeletePublic(string(id))
				}
			}
		}()
	}
	// Readers: over UDP through the server, and through Resolve.
	for rd := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &mdns.Client{Net: "udp"}
			last := -1
			for done := false; !done; {
				select {
				case <-stop:
					done = true // one more read after the last write
				default:
				}
				var v int
				if rd%2 == 0 {
					r, _, err := c.Exchange(query("srv1.postgres.database.azure.com", mdns.TypeA), ep.udp)
					if err != nil {
						errs <- err
						return
					}
					v = version(r)
				} else {
					r := cat.Resolve(vnetA, "srv1.postgres.database.azure.com", mdns.TypeA)
					m := &mdns.Msg{Answer: r.Answer}
					v = version(m)
				}
				if v < last {
					errs <- fmt.Errorf("reader %d saw version %d after %d", rd, v, last)
					return
				}
				last = v
			}
			if last != writes {
				errs <- fmt.Errorf("reader %d ended at version %d, want %d", rd, last, writes)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestServeStopsWithStuckClient: a TCP client that stops reading in the
// middle of a large answer blocks the server's write; Serve must still
// shut down.
func TestServeStopsWithStuckClient(t *testing.T) {
	cat := fixture(t)
	var many []string
	for i := range 3500 { // about 56 KB per answer
		many = append(many, fmt.Sprintf("10.%d.%d.%d", 10+i>>16, i>>8&0xff, i&0xff))
	}
	must(t, cat.PutRecordSet(zoneA, aSet("huge", many...)))
	s := NewServer(cat, testLogger(t))
	s.tcpWriteTimeout = 50 * time.Millisecond

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, vnetA, nil, smallBufListener{ln}) }()

	// A small receive buffer set before connecting keeps the window small.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", ln.Addr().String())
	must(t, err)
	defer conn.Close()
	q, err := query("huge."+plZone, mdns.TypeA).Pack()
	must(t, err)
	_, err = conn.Write(append([]byte{byte(len(q) >> 8), byte(len(q))}, q...))
	must(t, err)
	// The answer has begun and cannot fit in the socket buffers: the
	// server is inside a write that only a reader could finish.
	var length [2]byte
	_, err = io.ReadFull(conn, length[:])
	must(t, err)
	if n := int(length[0])<<8 | int(length[1]); n < 50000 {
		t.Fatalf("answer of %d bytes, want a large one", n)
	}
	cancel()
	must(t, <-done)
}

// smallBufListener shrinks the send buffer of accepted connections.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		err = c.(*net.TCPConn).SetWriteBuffer(4096)
	}
	return c, err
}
