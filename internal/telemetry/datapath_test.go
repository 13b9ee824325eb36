package telemetry

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/fabric/fabrictest"
	"github.com/privlink/privlink/internal/testkit"
)

// hangGuard bounds every wait: it keeps a broken data path from hanging
// the test; it is not what the test asserts.
const hangGuard = 10 * time.Second

// echo serves, in namespace ns, a greeting line then an echo of what it
// reads.
func echo(t testing.TB, f *fabric.Fabric, ns, addr string) {
	t.Helper()
	ln, err := f.ListenTCP(ns, addr)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Serve(t, ln, func(c net.Conn) {
		defer c.Close()
		fmt.Fprintf(c, "hello\n")
		io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
	})
}

// session is an open client connection past the greeting.
type session struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t testing.TB, f *fabric.Fabric, ns, addr string) (*session, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c, err := f.DialContext(ctx, ns, "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	s := &session{c: c, r: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(hangGuard))
	if _, err := s.r.ReadString('\n'); err != nil {
		return nil, err
	}
	return s, nil
}

func mustDial(t testing.TB, f *fabric.Fabric, ns, addr string) *session {
	t.Helper()
	s, err := dial(t, f, ns, addr)
	if err != nil {
		t.Fatalf("from %s to %s: %v", ns, addr, err)
	}
	return s
}

func (s *session) echo(t testing.TB, msg string) {
	t.Helper()
	if _, err := io.WriteString(s.c, msg+"\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := s.r.ReadString('\n'); err != nil || strings.TrimSpace(line) != msg {
		t.Fatalf("echo: %q, %v", line, err)
	}
}

func (s *session) clientPort() int { return s.c.LocalAddr().(*net.TCPAddr).Port }

// value returns the value of the series of name whose labels include
// want, in what c collects (-1 when there is none).
func value(t testing.TB, c prometheus.Collector, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := registryOf(c).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			return metricValue(m)
		}
	}
	return -1
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return -1
}

// auditRecorder collects the audit's lines and the events it sees.
type auditRecorder struct {
	lines  chan map[string]string
	opened chan fabric.FlowEvent
}

func (r *auditRecorder) nextLine(t testing.TB) map[string]string {
	t.Helper()
	select {
	case l := <-r.lines:
		t.Logf("audit line: %v", l)
		return l
	case <-time.After(hangGuard):
		t.Fatalf("no audit line within %v", hangGuard)
		return nil
	}
}

func (r *auditRecorder) nextOpened(t testing.TB) fabric.FlowEvent {
	t.Helper()
	select {
	case ev := <-r.opened:
		return ev
	case <-time.After(hangGuard):
		t.Fatalf("no flow opened within %v", hangGuard)
		return fabric.FlowEvent{}
	}
}

// TestDataPath runs an endpoint translation and a public path through a
// real fabric and checks the metrics and the audit lines they give.
func TestDataPath(t *testing.T) {
	f := fabrictest.New(t, "plm", nil)
	// The network net1 (vnet1): a NIC, the Approved endpoint pe1 at
	// 10.0.2.5, the Pending pe2 at 10.0.2.6. The server srv1 (pg1) at
	// 169.254.10.2, public at 198.18.0.10 for 198.18.7.0/24.
	if err := f.EnsureNetwork(fabric.NetworkSpec{ID: "net1", Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")},
		Endpoints: []netip.Addr{mustAddr("10.0.2.5"), mustAddr("10.0.2.6")}}); err != nil {
		t.Fatal(err)
	}
	if err := f.EnsureNIC(fabric.NICSpec{ID: "c", Network: "net1", Address: netip.MustParsePrefix("10.0.1.4/16")}); err != nil {
		t.Fatal(err)
	}
	nic := f.NamespaceName(fabric.KindNIC, "c")
	if err := f.EnsureService(fabric.ServiceSpec{ID: "pg1", Address: netip.MustParsePrefix("169.254.10.2/32")}); err != nil {
		t.Fatal(err)
	}
	echo(t, f, f.NamespaceName(fabric.KindService, "pg1"), "169.254.10.2:5432")
	pe1 := fabric.EndpointNAT{Name: "pe1", Endpoint: mustAddr("10.0.2.5"), Ports: []uint16{5432}, Service: "pg1",
		ServiceAddr: mustAddr("169.254.10.2"), SNAT: mustAddr("169.254.1.5")}
	if _, err := f.EnsureEndpoints("net1", []fabric.EndpointNAT{pe1}); err != nil {
		t.Fatal(err)
	}
	pub := fabric.PublicNAT{Name: "pg1", Public: mustAddr("198.18.0.10"), Ports: []uint16{5432}, Service: "pg1", ServiceAddr: mustAddr("169.254.10.2"),
		Allowed: []fabric.AddrRange{fabric.PrefixRange(netip.MustParsePrefix("198.18.7.0/24"))}, Enabled: true}
	if _, err := f.EnsurePublic([]fabric.PublicNAT{pub}); err != nil {
		t.Fatal(err)
	}
	inside, err := f.EnsureInternetHost(mustAddr("198.18.7.9"))
	if err != nil {
		t.Fatal(err)
	}
	outside, err := f.EnsureInternetHost(mustAddr("198.19.1.1"))
	if err != nil {
		t.Fatal(err)
	}

	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	paths := &staticPaths{testSnapshot()}
	m := NewMetrics(f, paths, slog.New(slog.DiscardHandler))
	rec := &auditRecorder{lines: make(chan map[string]string, 16), opened: make(chan fabric.FlowEvent, 16)}
	out := slog.New(recordHandler(func(r slog.Record) {
		l := map[string]string{"msg": r.Message}
		r.Attrs(func(a slog.Attr) bool { l[a.Key] = a.Value.String(); return true })
		rec.lines <- l
	}))
	audit := NewAudit(f, paths, out, slog.New(slog.DiscardHandler), m)
	audit.observe = func(_ fabric.Kind, _ string, ev fabric.FlowEvent) {
		if ev.Type == fabric.FlowOpened {
			rec.opened <- ev
		}
	}

	// A session open before the audit starts: the audit finds it in the
	// table, which also tells that its subscription is in place.
	s1 := mustDial(t, f, nic, "10.0.2.5:5432")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- audit.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	if ev := rec.nextOpened(t); ev.Flow.Client.Port() != uint16(s1.clientPort()) {
		t.Fatalf("first flow opened %+v, want the session from port %d", ev, s1.clientPort())
	}
	s1.echo(t, "some traffic through pe1")

	ep := map[string]string{"kind": "endpoint", "endpoint": pe1ID}
	all := m.Collector(All)
	t.Run("metrics while open", func(t *testing.T) {
		for _, c := range []struct {
			name  string
			dir   string
			check func(float64) bool
			want  string
		}{
			{MetricPackets, "in", func(v float64) bool { return v > 0 }, "> 0"},
			{MetricPackets, "out", func(v float64) bool { return v > 0 }, "> 0"},
			{MetricBytes, "in", func(v float64) bool { return v > float64(len("some traffic through pe1")) }, "> the message"},
			{MetricBytes, "out", func(v float64) bool { return v > float64(len("hello some traffic through pe1")) }, "> the answers"},
			{MetricConnections, "", func(v float64) bool { return v == 1 }, "1"},
			{MetricActive, "", func(v float64) bool { return v == 1 }, "1"},
			{MetricRefused, "", func(v float64) bool { return v == 0 }, "0"},
		} {
			labels := ep
			if c.dir != "" {
				labels = map[string]string{"kind": "endpoint", "endpoint": pe1ID, "direction": c.dir}
			}
			if v := value(t, all, c.name, labels); !c.check(v) {
				t.Errorf("%s %v = %v, want %s", c.name, labels, v, c.want)
			}
		}
	})
	t.Run("refused", func(t *testing.T) {
		if s, err := dial(t, f, nic, "10.0.2.6:5432"); err == nil { // pe2: Pending
			t.Fatalf("connected to an endpoint without translation: %v", s.c.RemoteAddr())
		}
		if v := value(t, all, MetricRefused, map[string]string{"endpoint": pe2ID}); v != 1 {
			t.Errorf("refused at pe2: %v, want 1", v)
		}
		if s, err := dial(t, f, outside, "198.18.0.10:5432"); err == nil {
			t.Fatalf("connected from outside the firewall rules: %v", s.c.RemoteAddr())
		}
		if v := value(t, all, MetricRefused, map[string]string{"kind": "public"}); v != 1 {
			t.Errorf("refused at the public path: %v, want 1", v)
		}
		if v := value(t, all, MetricRouterRefused, map[string]string{"kind": "endpoint", "network": vnetID}); v != 1 {
			t.Errorf("refused by net1's router: %v, want 1", v)
		}
	})
	t.Run("closed", func(t *testing.T) {
		before := value(t, all, MetricBytes, map[string]string{"endpoint": pe1ID, "direction": "in"})
		s1.c.Close()
		l := rec.nextLine(t)
		want := map[string]string{"msg": "connection", "kind": "endpoint", "endpoint": pe1ID, "connection": "pe1.0c9a",
			"network": vnetID, "server": serverID, "server_name": "srv1", "client_addr": "10.0.1.4",
			"client_port": fmt.Sprint(s1.clientPort()), "target": "10.0.2.5:5432",
			"seen_as": fmt.Sprintf("169.254.1.5:%d", s1.clientPort()), "ended": "closed"}
		for k, v := range want {
			if l[k] != v {
				t.Errorf("audit line %s=%q, want %q", k, l[k], v)
			}
		}
		// Its bytes in are all the metric counted before the close,
		// and the FIN exchange.
		if got := parseFloat(l["bytes_in"]); got < before || l["bytes_out"] == "0" || l["duration"] == "" || l["start"] == "" {
			t.Errorf("audit line bytes_in=%s (metric %v before the close) bytes_out=%s duration=%q start=%q",
				l["bytes_in"], before, l["bytes_out"], l["duration"], l["start"])
		}
		if v := value(t, all, MetricActive, ep); v != 0 {
			t.Errorf("active after the close: %v, want 0", v)
		}
	})
	t.Run("public closed", func(t *testing.T) {
		s := mustDial(t, f, inside, "198.18.0.10:5432")
		rec.nextOpened(t)
		s.echo(t, "over the internet")
		s.c.Close()
		l := rec.nextLine(t)
		if l["kind"] != "public" || l["connection"] != "office" || l["client_addr"] != "198.18.7.9" ||
			l["client_port"] != fmt.Sprint(s.clientPort()) || l["server"] != serverID || l["ended"] != "closed" || l["bytes_in"] == "0" {
			t.Errorf("public audit line %v", l)
		}
	})
	t.Run("revoked", func(t *testing.T) {
		s := mustDial(t, f, nic, "10.0.2.5:5432")
		rec.nextOpened(t)
		s.echo(t, "before revocation")
		if v := value(t, all, MetricConnections, ep); v != 2 {
			t.Errorf("connections after a second: %v, want 2", v)
		}
		revoked, err := f.EnsureEndpoints("net1", nil)
		if err != nil || len(revoked) != 1 {
			t.Fatalf("revoked %v, %v; want one flow", revoked, err)
		}
		l := rec.nextLine(t)
		if l["ended"] != "revoked" || l["endpoint"] != pe1ID || l["client_port"] != fmt.Sprint(s.clientPort()) || l["bytes_in"] == "0" {
			t.Errorf("revoked audit line %v", l)
		}
	})
	// Stopped, the audit leaves no goroutine or file descriptor behind.
	if v := value(t, m.Registry(), MetricAuditWatchers, nil); v != 2 {
		t.Errorf("%s = %v, want 2 (net1, internet)", MetricAuditWatchers, v)
	}
	scrape := httptest.NewRecorder()
	m.Handler(All).ServeHTTP(scrape, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(scrape.Body.String(), "\n") {
		if strings.HasPrefix(line, "privlink_") {
			t.Log(line)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("audit: %v", err)
	}
	done <- nil // for the deferred stop
	// The server's ends of the sessions close on their own goroutines.
	after := openFDs(t)
	for deadline := time.Now().Add(hangGuard); len(after) > len(fds) && time.Now().Before(deadline); after = openFDs(t) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(after) > len(fds) {
		t.Errorf("file descriptors: %d before the audit, %d after:\nbefore %q\nafter  %q", len(fds), len(after), fds, after)
	}
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(hangGuard); n > goroutines && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(10 * time.Millisecond)
	}
	if n > goroutines {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before the audit, %d after:\n%s", goroutines, n, buf[:runtime.Stack(buf, true)])
	}
}

func parseFloat(s string) float64 {
	var v float64
	fmt.Sscan(s, &v)
	return v
}

func openFDs(t testing.TB) []string {
	t.Helper()
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
