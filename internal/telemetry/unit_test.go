package telemetry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/privlink/privlink/internal/datapath"
	"github.com/privlink/privlink/internal/fabric"
)

const (
	sub      = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg"
	vnetID   = sub + "/providers/Microsoft.Network/virtualNetworks/vnet1"
	pe1ID    = sub + "/providers/Microsoft.Network/privateEndpoints/pe1"
	pe2ID    = sub + "/providers/Microsoft.Network/privateEndpoints/pe2"
	serverID = sub + "/providers/Microsoft.DBforPostgreSQL/flexibleServers/srv1"
)

var (
	mustAddr     = netip.MustParseAddr
	mustAddrPort = netip.MustParseAddrPort
)

// testSnapshot describes network net1 (vnet1) with an Approved endpoint
// pe1 at 10.0.2.5 and a Pending one, pe2, at 10.0.2.6, both to srv1, and
// srv1's public path at 198.18.0.10 open to 198.18.7.0/24 (rule
// "office").
func testSnapshot() datapath.Snapshot {
	return datapath.Snapshot{
		Networks: []datapath.NetworkRef{{Fabric: "net1", ID: vnetID}},
		Translations: []datapath.TranslationInfo{
			{Kind: datapath.KindEndpoint, Name: "pe1", Programmed: true, Network: "net1", NetworkID: vnetID, EndpointID: pe1ID,
				Connection: "pe1.0c9a", ServerID: serverID, ServerName: "srv1", Addr: mustAddr("10.0.2.5"), Port: 5432, SNAT: mustAddr("169.254.1.5")},
			{Kind: datapath.KindEndpoint, Name: "pe2", Network: "net1", NetworkID: vnetID, EndpointID: pe2ID,
				ServerID: serverID, ServerName: "srv1", Addr: mustAddr("10.0.2.6"), Port: 5432},
			{Kind: datapath.KindPublic, Name: "pg1", Programmed: true, Enabled: true, ServerID: serverID, ServerName: "srv1",
				Addr: mustAddr("198.18.0.10"), Port: 5432,
				FirewallRules: []datapath.FirewallRule{{Name: "office", Start: mustAddr("198.18.7.0"), End: mustAddr("198.18.7.255")}}},
		},
	}
}

// staticPaths is a Paths whose snapshot a test sets.
type staticPaths struct{ snap datapath.Snapshot }

func (p *staticPaths) Snapshot() (datapath.Snapshot, <-chan struct{}) {
	return p.snap, make(chan struct{})
}

// fakeFabric serves counters from maps.
type fakeFabric struct {
	endpoint map[string]fabric.Counters
	public   map[string]fabric.Counters
	refused  map[netip.Addr]uint64
	pubRef   map[netip.Addr]uint64
	fail     bool
}

func (f *fakeFabric) EndpointCounters(string) (map[string]fabric.Counters, error) {
	if f.fail {
		return nil, errors.New("boom")
	}
	return f.endpoint, nil
}
func (f *fakeFabric) PublicCounters() (map[string]fabric.Counters, error) { return f.public, nil }
func (f *fakeFabric) EndpointRefusals(string) (map[netip.Addr]uint64, error) {
	return f.refused, nil
}
func (f *fakeFabric) PublicRefusals() (map[netip.Addr]uint64, error) { return f.pubRef, nil }
func (f *fakeFabric) WatchFlows(ctx context.Context, _ fabric.Kind, _ string, _ func(fabric.FlowEvent)) error {
	<-ctx.Done()
	return nil
}

func TestCollector(t *testing.T) {
	fab := &fakeFabric{
		endpoint: map[string]fabric.Counters{"pe1": {PacketsIn: 3, BytesIn: 164, PacketsOut: 2, BytesOut: 128, Connections: 1, Active: 1}},
		public:   map[string]fabric.Counters{"pg1": {PacketsIn: 5, BytesIn: 300, PacketsOut: 4, BytesOut: 250, Connections: 2}},
		refused:  map[netip.Addr]uint64{mustAddr("10.0.2.6"): 2, mustAddr("169.254.10.2"): 1},
		pubRef:   map[netip.Addr]uint64{mustAddr("198.18.0.10"): 4},
	}
	m := NewMetrics(fab, &staticPaths{testSnapshot()}, nil)
	labels := `endpoint="` + pe1ID + `",kind="endpoint",network="` + vnetID + `",server="` + serverID + `",server_name="srv1"`
	labels2 := `endpoint="` + pe2ID + `",kind="endpoint",network="` + vnetID + `",server="` + serverID + `",server_name="srv1"`
	pub := `endpoint="",kind="public",network="",server="` + serverID + `",server_name="srv1"`
	want := `
# HELP privlink_datapath_active_connections Connections of a private endpoint or public path that conntrack tracks now, but those closing.
# TYPE privlink_datapath_active_connections gauge
privlink_datapath_active_connections{` + labels + `} 1
privlink_datapath_active_connections{` + pub + `} 0
# HELP privlink_datapath_bytes_total Bytes through a private endpoint or public path, by direction (in: toward the server), as Azure's PEBytesIn and PEBytesOut.
# TYPE privlink_datapath_bytes_total counter
privlink_datapath_bytes_total{direction="in",` + labels + `} 164
privlink_datapath_bytes_total{direction="in",` + pub + `} 300
privlink_datapath_bytes_total{direction="out",` + labels + `} 128
privlink_datapath_bytes_total{direction="out",` + pub + `} 250
# HELP privlink_datapath_connections_total Connections translated through a private endpoint or public path.
# TYPE privlink_datapath_connections_total counter
privlink_datapath_connections_total{` + labels + `} 1
privlink_datapath_connections_total{` + pub + `} 2
# HELP privlink_datapath_refused_connections_total Connections refused at a private endpoint's or public path's address (no Approved connection, a source outside the firewall rules, public access disabled, another port).
# TYPE privlink_datapath_refused_connections_total counter
privlink_datapath_refused_connections_total{` + labels + `} 0
privlink_datapath_refused_connections_total{` + labels2 + `} 2
privlink_datapath_refused_connections_total{` + pub + `} 4
# HELP privlink_datapath_router_refused_connections_total Connections a router refused: at endpoint or public addresses, at its other addresses, toward servers' internal addresses.
# TYPE privlink_datapath_router_refused_connections_total counter
privlink_datapath_router_refused_connections_total{kind="endpoint",network="` + vnetID + `"} 3
privlink_datapath_router_refused_connections_total{kind="public",network=""} 4
`
	if err := testutil.CollectAndCompare(m.Collector(All), strings.NewReader(want),
		MetricActive, MetricBytes, MetricConnections, MetricRefused, MetricRouterRefused); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(prometheus.Gatherers{registryOf(m.Collector(All))}, MetricPackets); err != nil || n != 4 {
		t.Errorf("%s: %d series (%v), want 4", MetricPackets, n, err)
	}

	t.Run("scoped", func(t *testing.T) {
		// A principal who may read pe2 alone sees pe2's refusals and
		// nothing of pe1, the network, the server or the internet.
		only := func(id string) bool { return id == pe2ID }
		want := `
# HELP privlink_datapath_refused_connections_total Connections refused at a private endpoint's or public path's address (no Approved connection, a source outside the firewall rules, public access disabled, another port).
# TYPE privlink_datapath_refused_connections_total counter
privlink_datapath_refused_connections_total{` + labels2 + `} 2
`
		if err := testutil.CollectAndCompare(m.Collector(only), strings.NewReader(want),
			MetricActive, MetricBytes, MetricConnections, MetricRefused, MetricRouterRefused); err != nil {
			t.Error(err)
		}
	})
	t.Run("handler", func(t *testing.T) {
		rec := httptest.NewRecorder()
		m.Handler(All).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body := rec.Body.String()
		for _, line := range []string{
			`privlink_datapath_bytes_total{direction="in",` + labels + `} 164`,
			`privlink_audit_watchers 0`,
			`go_goroutines `,
		} {
			if !strings.Contains(body, line) {
				t.Errorf("scrape lacks %q:\n%s", line, body)
			}
		}
	})
	t.Run("errors", func(t *testing.T) {
		fab.fail = true
		defer func() { fab.fail = false }()
		before := testutil.ToFloat64(onlyErrors{m.Collector(All)})
		n, err := testutil.GatherAndCount(registryOf(m.Collector(All)), MetricBytes)
		if err != nil || n != 2 {
			t.Errorf("with endpoint counters failing: %d byte series (%v), want the public path's 2", n, err)
		}
		if after := testutil.ToFloat64(onlyErrors{m.Collector(All)}); after <= before {
			t.Errorf("%s did not grow: %v then %v", MetricCollectErrors, before, after)
		}
	})
	t.Run("no fabric", func(t *testing.T) {
		rec := httptest.NewRecorder()
		NewMetrics(nil, nil, nil).Handler(All).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if rec.Code != 200 || strings.Contains(rec.Body.String(), "privlink_datapath_") || !strings.Contains(rec.Body.String(), "go_goroutines") {
			t.Errorf("without a fabric: %d\n%s", rec.Code, rec.Body)
		}
	})
}

func registryOf(c prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	return reg
}

// onlyErrors passes on the collect error counter alone.
type onlyErrors struct{ c prometheus.Collector }

func (o onlyErrors) Describe(ch chan<- *prometheus.Desc) { ch <- descErrors }
func (o onlyErrors) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric)
	go func() { o.c.Collect(all); close(all) }()
	for m := range all {
		if m.Desc() == descErrors {
			ch <- m
		}
	}
}

func TestAuditLine(t *testing.T) {
	start := time.Date(2026, 11, 24, 6, 46, 34, 575284925, time.UTC)
	ev := fabric.FlowEvent{
		Type: fabric.FlowEnded, ID: 7,
		Flow: fabric.Flow{Client: mustAddrPort("10.0.1.4:36428"), Target: mustAddrPort("10.0.2.5:5432"),
			Service: mustAddrPort("169.254.10.2:5432"), Source: mustAddrPort("169.254.1.5:36428"), State: "TIME_WAIT"},
		Start: start, Stop: start.Add(1503 * time.Millisecond), End: fabric.FlowClosed,
		PacketsIn: 6, BytesIn: 326, PacketsOut: 5, BytesOut: 290,
	}
	snap := testSnapshot()
	line := func(ev fabric.FlowEvent, t datapath.TranslationInfo) string {
		var b bytes.Buffer
		log := slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}})).With("component", "audit")
		log.LogAttrs(context.Background(), slog.LevelInfo, "connection", auditAttrs(ev, t)...)
		return strings.TrimSpace(b.String())
	}
	got := line(ev, snap.Translations[0])
	want := `level=INFO msg=connection component=audit kind=endpoint endpoint=` + pe1ID + ` connection=pe1.0c9a network=` + vnetID +
		` server=` + serverID + ` server_name=srv1 client_addr=10.0.1.4 client_port=36428 target=10.0.2.5:5432 seen_as=169.254.1.5:36428` +
		` bytes_in=326 bytes_out=290 packets_in=6 packets_out=5 start=2026-11-24T06:46:34.575Z duration=1.503s ended=closed`
	if got != want {
		t.Errorf("endpoint line:\ngot  %s\nwant %s", got, want)
	}

	pub := ev
	pub.Flow = fabric.Flow{Client: mustAddrPort("198.18.7.9:40000"), Target: mustAddrPort("198.18.0.10:5432"),
		Service: mustAddrPort("169.254.10.2:5432"), Source: mustAddrPort("198.18.7.9:40000")}
	pub.End = fabric.FlowRevoked
	pub.Start, pub.Stop = time.Time{}, time.Time{}
	got = line(pub, snap.Translations[2])
	want = `level=INFO msg=connection component=audit kind=public connection=office server=` + serverID +
		` server_name=srv1 client_addr=198.18.7.9 client_port=40000 target=198.18.0.10:5432 seen_as=198.18.7.9:40000` +
		` bytes_in=326 bytes_out=290 packets_in=6 packets_out=5 ended=revoked`
	if got != want {
		t.Errorf("public line:\ngot  %s\nwant %s", got, want)
	}

	rules := []datapath.FirewallRule{
		{Name: "b", Start: mustAddr("10.0.0.0"), End: mustAddr("10.0.0.255")},
		{Name: "a", Start: mustAddr("10.0.0.128"), End: mustAddr("10.0.1.0")},
	}
	for addr, want := range map[string]string{"10.0.0.1": "b", "10.0.0.200": "a", "10.0.1.0": "a", "10.0.1.1": ""} {
		if got := firewallRule(rules, mustAddr(addr)); got != want {
			t.Errorf("firewallRule(%s) = %q, want %q", addr, got, want)
		}
	}
}

// TestAuditResolve checks which path a flow's line names: the endpoint
// seen when the flow opened, even after it left the snapshot; a public
// path by its address; a path never described still gets its kind.
func TestAuditResolve(t *testing.T) {
	paths := &staticPaths{testSnapshot()}
	var lines []slog.Record
	out := slog.New(recordHandler(func(r slog.Record) { lines = append(lines, r) }))
	a := NewAudit(&fakeFabric{}, paths, out, nil, NewMetrics(nil, nil, nil))
	flow := fabric.Flow{Client: mustAddrPort("10.0.1.4:1000"), Target: mustAddrPort("10.0.2.5:5432"),
		Service: mustAddrPort("169.254.10.2:5432"), Source: mustAddrPort("169.254.1.5:1000")}
	r := newRouterAudit(a, fabric.KindNetwork, "net1")
	r.event(fabric.FlowEvent{Type: fabric.FlowOpened, ID: 1, Flow: flow})
	paths.snap = datapath.Snapshot{} // pe1 revoked and deleted
	r.event(fabric.FlowEvent{Type: fabric.FlowEnded, ID: 1, Flow: flow, End: fabric.FlowRevoked})
	other := flow
	other.Source = mustAddrPort("169.254.1.9:1000") // an SNAT address no endpoint has
	r.event(fabric.FlowEvent{Type: fabric.FlowEnded, ID: 2, Flow: other, End: fabric.FlowClosed})
	r2 := newRouterAudit(a, fabric.KindNetwork, "net2")
	r2.event(fabric.FlowEvent{Type: fabric.FlowEnded, ID: 3, Flow: flow, End: fabric.FlowTimeout})
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3", len(lines))
	}
	attr := func(r slog.Record, key string) string {
		var v string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == key {
				v = a.Value.String()
			}
			return true
		})
		return v
	}
	if got := attr(lines[0], "endpoint"); got != pe1ID {
		t.Errorf("revoked flow of a deleted endpoint: endpoint %q, want %q", got, pe1ID)
	}
	if got := attr(lines[1], "endpoint"); got != pe1ID {
		t.Errorf("flow of a path seen before: endpoint %q, want %q (last known at its target)", got, pe1ID)
	}
	if got, kind := attr(lines[2], "endpoint"), attr(lines[2], "kind"); got != "" || kind != "endpoint" {
		t.Errorf("unknown path: endpoint %q kind %q, want none and endpoint", got, kind)
	}
	if got := testutil.ToFloat64(a.m.auditConnections.WithLabelValues("endpoint", "revoked")); got != 1 {
		t.Errorf("audit counter of revoked endpoint connections: %v, want 1", got)
	}
}

// recordHandler hands every record to fn.
type recordHandler func(slog.Record)

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h(r.Clone())
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }
