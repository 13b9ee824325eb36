// Package telemetry observes the data path: Prometheus metrics of every
// private endpoint and public path (packets and bytes each way, new, active
// and refused connections), read from the fabric's counters when scraped,
// and an audit line per connection, from the routers' conntrack events.
//
// It reads the kernel only through the fabric, and learns which endpoint,
// server and network a translation belongs to from the data path
// controller's snapshot (datapath.Observed.Snapshot).
package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/privlink/privlink/internal/datapath"
	"github.com/privlink/privlink/internal/fabric"
)

// Fabric is what telemetry needs of the fabric (*fabric.Fabric).
type Fabric interface {
	EndpointCounters(network string) (map[string]fabric.Counters, error)
	PublicCounters() (map[string]fabric.Counters, error)
	EndpointRefusals(network string) (map[netip.Addr]uint64, error)
	PublicRefusals() (map[netip.Addr]uint64, error)
	WatchFlows(ctx context.Context, kind fabric.Kind, id string, fn func(fabric.FlowEvent)) error
}

// Paths tells which endpoint, server and network each translation belongs
// to (*datapath.Observed).
type Paths interface {
	Snapshot() (datapath.Snapshot, <-chan struct{})
}

// Visible decides which series a scrape shows: it reports whether the
// caller may see the metrics of the resource with the given ARM ID (a
// private endpoint, a flexible server, a virtual network), or, for "",
// the daemon-wide series: the emulated internet's router as a whole, the
// collector's errors and everything in the Registry (Go, process, build,
// audit), which are about every tenant at once.
type Visible func(resourceID string) bool

// All shows everything (the operator).
func All(string) bool { return true }

// Metric names and labels of the data path. Every path series has the
// labels kind ("endpoint" or "public"), endpoint (the private endpoint's
// ARM ID, empty on a public path), server (the flexible server's ARM ID),
// server_name and network (the endpoint's virtual network's ARM ID, empty
// on a public path).
const (
	// MetricPackets and MetricBytes count IP packets and bytes by
	// direction: "in" is what clients sent toward the server, "out" what
	// the server sent back (Azure's PEBytesIn and PEBytesOut). They count
	// from when the path's translation appeared.
	MetricPackets = "privlink_datapath_packets_total"
	MetricBytes   = "privlink_datapath_bytes_total"
	// MetricConnections counts the connections the path translated.
	MetricConnections = "privlink_datapath_connections_total"
	// MetricActive is the number of the path's connections conntrack
	// tracks now, but those closing (TIME_WAIT, CLOSE).
	MetricActive = "privlink_datapath_active_connections"
	// MetricRefused counts the connections refused at the path's address:
	// to an endpoint without an Approved connection or on a port it does
	// not translate; to a public address from a source outside the
	// firewall rules, or while public access is disabled.
	MetricRefused = "privlink_datapath_refused_connections_total"
	// MetricRouterRefused counts every connection a router refused (label
	// kind: "endpoint" for a network's router, with network; "public" for
	// the internet's): those of MetricRefused, and those to its other
	// addresses or toward a server's internal address.
	MetricRouterRefused = "privlink_datapath_router_refused_connections_total"
	// MetricCollectErrors counts the reads of the fabric's counters that
	// failed during scrapes (their series are missing from that scrape).
	MetricCollectErrors = "privlink_datapath_collect_errors_total"
	// MetricAuditConnections counts the audit lines written, by kind and
	// how the connection ended.
	MetricAuditConnections = "privlink_audit_connections_total"
	// MetricAuditWatchers is the number of routers whose conntrack events
	// the audit follows now.
	MetricAuditWatchers = "privlink_audit_watchers"
)

var pathLabels = []string{"kind", "endpoint", "server", "server_name", "network"}

var (
	descPackets = prometheus.NewDesc(MetricPackets, "IP packets through a private endpoint or public path, by direction (in: toward the server).",
		append([]string{"direction"}, pathLabels...), nil)
	descBytes = prometheus.NewDesc(MetricBytes, "Bytes through a private endpoint or public path, by direction (in: toward the server), as Azure's PEBytesIn and PEBytesOut.",
		append([]string{"direction"}, pathLabels...), nil)
	descConnections = prometheus.NewDesc(MetricConnections, "Connections translated through a private endpoint or public path.", pathLabels, nil)
	descActive      = prometheus.NewDesc(MetricActive, "Connections of a private endpoint or public path that conntrack tracks now, but those closing.", pathLabels, nil)
	descRefused     = prometheus.NewDesc(MetricRefused, "Connections refused at a private endpoint's or public path's address (no Approved connection, a source outside the firewall rules, public access disabled, another port).", pathLabels, nil)
	descRouter      = prometheus.NewDesc(MetricRouterRefused, "Connections a router refused: at endpoint or public addresses, at its other addresses, toward servers' internal addresses.", []string{"kind", "network"}, nil)
	descErrors      = prometheus.NewDesc(MetricCollectErrors, "Reads of the fabric's counters that failed during scrapes.", nil, nil)
)

// Metrics holds privlinkd's metrics: its own (Go runtime, process, audit)
// in a registry, and the data path's, read from the fabric at each scrape.
type Metrics struct {
	fab    Fabric
	paths  Paths
	log    *slog.Logger
	reg    *prometheus.Registry
	errors atomic.Uint64

	auditConnections *prometheus.CounterVec
	auditWatchers    prometheus.Gauge
}

// NewMetrics returns the metrics of a daemon whose data path fab holds and
// paths describes. fab may be nil (no root, so no data path): then only
// the daemon's own metrics are served.
func NewMetrics(fab Fabric, paths Paths, log *slog.Logger) *Metrics {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{fab: fab, paths: paths, log: log, reg: prometheus.NewRegistry(),
		auditConnections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricAuditConnections, Help: "Audit lines written: connections through a private endpoint or public path that ended, by kind and how they ended.",
		}, []string{"kind", "ended"}),
		auditWatchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricAuditWatchers, Help: "Routers whose conntrack events the connection audit follows now.",
		}),
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(), m.auditConnections, m.auditWatchers)
	return m
}

// Registry is the registry of the daemon's own metrics, for other parts to
// register theirs. Its series are daemon-wide: a scrape shows them only
// when visible("") (the operator).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Collector returns a collector of the data path's metrics that shows
// what visible lets through.
func (m *Metrics) Collector(visible Visible) prometheus.Collector {
	return &pathCollector{m: m, visible: visible}
}

// Handler serves, in the Prometheus text format, the daemon's metrics and
// the data path's that visible lets through. It does not authenticate:
// the caller decides visible from the request's principal.
func (m *Metrics) Handler(visible Visible) http.Handler {
	reg := prometheus.NewRegistry()
	var g prometheus.Gatherers
	if visible("") {
		g = append(g, m.reg)
	}
	if m.fab != nil && m.paths != nil {
		reg.MustRegister(m.Collector(visible))
		g = append(g, reg)
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelWarn), ErrorHandling: promhttp.ContinueOnError})
}

// pathCollector reads the fabric's counters when scraped.
type pathCollector struct {
	m       *Metrics
	visible Visible
}

func (c *pathCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPackets, descBytes, descConnections, descActive, descRefused, descRouter, descErrors} {
		ch <- d
	}
}

func (c *pathCollector) Collect(ch chan<- prometheus.Metric) {
	snap, _ := c.m.paths.Snapshot()
	byNetwork := map[string][]datapath.TranslationInfo{}
	var public []datapath.TranslationInfo
	for _, t := range snap.Translations {
		switch t.Kind {
		case datapath.KindEndpoint:
			byNetwork[t.Network] = append(byNetwork[t.Network], t)
		case datapath.KindPublic:
			public = append(public, t)
		}
	}
	for _, n := range snap.Networks {
		c.collectNetwork(ch, n, byNetwork[n.Fabric])
	}
	c.collectPublic(ch, public)
	if c.visible("") {
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(c.m.errors.Load()))
	}
}

// failed counts and logs a failed read; a router not there yet is no
// failure (its series are missing all the same).
func (c *pathCollector) failed(what string, err error) {
	if errors.Is(err, fabric.ErrNotFound) {
		return
	}
	c.m.errors.Add(1)
	c.m.log.Warn("reading data path counters failed", "what", what, "err", err)
}

func (c *pathCollector) collectNetwork(ch chan<- prometheus.Metric, n datapath.NetworkRef, eps []datapath.TranslationInfo) {
	var visible []datapath.TranslationInfo
	programmed := false
	for _, t := range eps {
		if c.visible(t.EndpointID) {
			visible = append(visible, t)
			programmed = programmed || t.Programmed
		}
	}
	showRouter := c.visible(n.ID)
	if len(visible) == 0 && !showRouter {
		return
	}
	refusals, err := c.m.fab.EndpointRefusals(n.Fabric)
	if err != nil {
		c.failed("refusals of network "+n.ID, err)
		return
	}
	if showRouter {
		ch <- prometheus.MustNewConstMetric(descRouter, prometheus.CounterValue, float64(sum(refusals)), datapath.KindEndpoint, n.ID)
	}
	var counters map[string]fabric.Counters
	if programmed {
		if counters, err = c.m.fab.EndpointCounters(n.Fabric); err != nil {
			c.failed("counters of network "+n.ID, err)
		}
		// Endpoints a PROXY protocol relay serves count there.
		if r, ok := c.m.paths.(interface {
			RelayCounters(string) map[string]fabric.Counters
		}); ok {
			for name, cnt := range r.RelayCounters(n.Fabric) {
				if counters == nil {
					counters = map[string]fabric.Counters{}
				}
				counters[name] = cnt
			}
		}
	}
	for _, t := range visible {
		labels := []string{datapath.KindEndpoint, t.EndpointID, t.ServerID, t.ServerName, t.NetworkID}
		if cnt, ok := counters[t.Name]; ok && t.Programmed {
			emitCounters(ch, cnt, labels)
		}
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(refusals[t.Addr]), labels...)
	}
}

func (c *pathCollector) collectPublic(ch chan<- prometheus.Metric, pubs []datapath.TranslationInfo) {
	var visible []datapath.TranslationInfo
	for _, t := range pubs {
		if c.visible(t.ServerID) {
			visible = append(visible, t)
		}
	}
	showRouter := c.visible("")
	if len(visible) == 0 && !showRouter {
		return
	}
	refusals, err := c.m.fab.PublicRefusals()
	if err != nil {
		c.failed("public refusals", err)
		return
	}
	if showRouter {
		ch <- prometheus.MustNewConstMetric(descRouter, prometheus.CounterValue, float64(sum(refusals)), datapath.KindPublic, "")
	}
	var counters map[string]fabric.Counters
	if len(visible) > 0 {
		if counters, err = c.m.fab.PublicCounters(); err != nil {
			c.failed("public counters", err)
		}
	}
	for _, t := range visible {
		labels := []string{datapath.KindPublic, "", t.ServerID, t.ServerName, ""}
		if cnt, ok := counters[t.Name]; ok {
			emitCounters(ch, cnt, labels)
		}
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(refusals[t.Addr]), labels...)
	}
}

func emitCounters(ch chan<- prometheus.Metric, cnt fabric.Counters, labels []string) {
	in, out := append([]string{"in"}, labels...), append([]string{"out"}, labels...)
	ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(cnt.PacketsIn), in...)
	ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(cnt.PacketsOut), out...)
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(cnt.BytesIn), in...)
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(cnt.BytesOut), out...)
	ch <- prometheus.MustNewConstMetric(descConnections, prometheus.CounterValue, float64(cnt.Connections), labels...)
	ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(cnt.Active), labels...)
}

func sum(m map[netip.Addr]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
