package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/privlink/privlink/internal/datapath"
	"github.com/privlink/privlink/internal/fabric"
)

// Audit writes one line per connection through a private endpoint or a
// public path when it ends, from the conntrack events of every network's
// router and of the internet's (fabric.WatchFlows):
//
//	level=INFO msg=connection kind=endpoint endpoint=/subscriptions/…/privateEndpoints/pe1
//	  connection=pe1.5c0e… network=/subscriptions/…/virtualNetworks/vnet1
//	  server=/subscriptions/…/flexibleServers/srv1 server_name=srv1
//	  client_addr=10.0.1.4 client_port=51174 target=10.0.2.5:5432 seen_as=169.254.192.1:51174
//	  bytes_in=2310 bytes_out=8127 packets_in=21 packets_out=19
//	  start=… duration=1.503s ended=closed
//
// kind is "endpoint" or "public"; on a public path endpoint and network
// are absent and connection names the firewall rule that let the client
// in. client_addr and client_port are the client's own; seen_as is the
// address the server saw (the endpoint's SNAT address, or the client's on a
// public path). bytes_in counts what the client sent, bytes_out what came
// back. ended is closed, reset, revoked (privlink cut it: the connection
// left Approved, a firewall rule or public access was withdrawn), timeout
// (conntrack forgot it idle or half open) or unknown (events were lost).
//
// A connection that privlinkd saw open is described as it was then, so a
// revoked one still names its endpoint. Connections that end while
// privlinkd is down are not told; those open when it starts are, at their
// end.
//
// Connections of endpoints with PROXY protocol go through privlinkd's relay
// rather than a translation, and conntrack does not tell them: the relay
// does (proxyrelay.Relay.Observe gives them to Relayed), and their lines
// are the same with relayed=true. There seen_as is the NAT IP and port the
// relay dialled the service's frontend from, the bytes are payload (TCP
// headers and the PROXY header not counted) and the packets 0.
type Audit struct {
	fab   Fabric
	paths Paths
	out   *slog.Logger
	log   *slog.Logger
	m     *Metrics

	// relayKnown holds the last description of each relayed endpoint
	// (by translation name) that Relayed resolved.
	relayMu    sync.Mutex
	relayKnown map[string]datapath.TranslationInfo

	// observe, if not nil, sees every flow event first (tests).
	observe func(kind fabric.Kind, network string, ev fabric.FlowEvent)
}

// NewAudit returns the audit of fab's data path, which paths describes. It
// writes its lines to out (privlinkd gives it its logger with component
// "audit") and its own troubles to log; m, if not nil, counts the lines.
func NewAudit(fab Fabric, paths Paths, out, log *slog.Logger, m *Metrics) *Audit {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Audit{fab: fab, paths: paths, out: out, log: log, m: m, relayKnown: map[string]datapath.TranslationInfo{}}
}

// Relayed writes the audit line of a connection through the PROXY protocol
// relay that ended (see proxyrelay.Relay.Observe): route is the relay
// route's name, "{translation}:{port}" (datapath.Relay.Name), which names
// the endpoint. It is safe for concurrent use.
func (a *Audit) Relayed(route string, ev fabric.FlowEvent) {
	name := route
	if i := strings.LastIndexByte(route, ':'); i >= 0 {
		name = route[:i]
	}
	var t datapath.TranslationInfo
	found := false
	snap, _ := a.paths.Snapshot()
	for _, tr := range snap.Translations {
		if tr.Kind == datapath.KindEndpoint && tr.Name == name {
			t, found = tr, true
			break
		}
	}
	a.relayMu.Lock()
	if found {
		a.relayKnown[name] = t
	} else if t, found = a.relayKnown[name]; !found {
		// An endpoint the controller never described to this process.
		t = datapath.TranslationInfo{Kind: datapath.KindEndpoint, Name: name}
	}
	a.relayMu.Unlock()
	a.write(ev, t, slog.Bool("relayed", true))
}

// write writes the audit line of ev through t, with extra attributes
// after the others, and counts it.
func (a *Audit) write(ev fabric.FlowEvent, t datapath.TranslationInfo, extra ...slog.Attr) {
	a.out.LogAttrs(context.Background(), slog.LevelInfo, "connection", append(auditAttrs(ev, t), extra...)...)
	if a.m != nil {
		a.m.auditConnections.WithLabelValues(t.Kind, string(ev.End)).Inc()
	}
}

// Retry bounds of a router watch that failed (its namespace not there
// yet, typically).
const (
	retryMin = time.Second
	retryMax = 30 * time.Second
)

// Run follows the routers' conntrack events until ctx ends: the internet's,
// and each network's that the data path controller knows, starting and
// stopping watches as networks come and go. It returns nil when ctx ends.
func (a *Audit) Run(ctx context.Context) error {
	type watch struct {
		cancel context.CancelFunc
		done   chan struct{}
		wake   chan struct{}
	}
	watches := map[string]*watch{} // by network fabric ID; "" is the internet
	var wg sync.WaitGroup
	defer func() {
		for _, w := range watches {
			w.cancel()
		}
		wg.Wait()
		a.setWatchers(0)
	}()
	start := func(kind fabric.Kind, id string) *watch {
		wctx, cancel := context.WithCancel(ctx)
		w := &watch{cancel: cancel, done: make(chan struct{}), wake: make(chan struct{}, 1)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(w.done)
			a.follow(wctx, kind, id, w.wake)
		}()
		return w
	}
	watches[""] = start(fabric.KindInternet, "")
	for {
		snap, changed := a.paths.Snapshot()
		want := map[string]bool{"": true}
		for _, n := range snap.Networks {
			want[n.Fabric] = true
			if watches[n.Fabric] == nil {
				watches[n.Fabric] = start(fabric.KindNetwork, n.Fabric)
			}
		}
		for id, w := range watches {
			if !want[id] {
				// The network is gone: its router with it. The watch's
				// socket would keep the namespace alive.
				w.cancel()
				<-w.done
				delete(watches, id)
				continue
			}
			select { // a watch waiting to retry tries again now
			case w.wake <- struct{}{}:
			default:
			}
		}
		a.setWatchers(len(watches))
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

func (a *Audit) setWatchers(n int) {
	if a.m != nil {
		a.m.auditWatchers.Set(float64(n))
	}
}

// follow watches one router until ctx ends, again after a failure (after a
// back-off, or at once when woken).
func (a *Audit) follow(ctx context.Context, kind fabric.Kind, id string, wake <-chan struct{}) {
	delay := retryMin
	for {
		r := newRouterAudit(a, kind, id)
		err := a.fab.WatchFlows(ctx, kind, id, r.event)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, fabric.ErrNotFound) {
			a.log.Debug("router not there yet: audit waits", "kind", kind, "network", id)
		} else {
			a.log.Warn("following a router's connections failed: retrying", "kind", kind, "network", id, "err", err, "retry_in", delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
			delay = retryMin
		case <-t.C:
			delay = min(2*delay, retryMax)
		}
		t.Stop()
	}
}

// routerAudit is the audit of one router watch: the paths of the flows it
// saw open, and the last description of each path it resolved (so that a
// flow of a path that went still finds it).
type routerAudit struct {
	a       *Audit
	kind    fabric.Kind
	network string
	open    map[uint32]datapath.TranslationInfo
	known   map[netip.AddrPort]datapath.TranslationInfo
}

func newRouterAudit(a *Audit, kind fabric.Kind, network string) *routerAudit {
	return &routerAudit{a: a, kind: kind, network: network,
		open: map[uint32]datapath.TranslationInfo{}, known: map[netip.AddrPort]datapath.TranslationInfo{}}
}

func (r *routerAudit) event(ev fabric.FlowEvent) {
	if r.a.observe != nil {
		r.a.observe(r.kind, r.network, ev)
	}
	switch ev.Type {
	case fabric.FlowOpened:
		if t, ok := r.resolve(ev.Flow); ok {
			r.open[ev.ID] = t
		}
	case fabric.FlowEnded:
		t, ok := r.open[ev.ID]
		delete(r.open, ev.ID)
		if !ok {
			if t, ok = r.resolve(ev.Flow); !ok {
				t, ok = r.known[ev.Flow.Target]
			}
		}
		if !ok {
			// A path the controller never described to this process:
			// still a connection that went through a translation.
			t = datapath.TranslationInfo{Kind: datapath.KindPublic, Network: r.network}
			if r.kind == fabric.KindNetwork {
				t.Kind = datapath.KindEndpoint
			}
		}
		r.a.write(ev, t)
	}
}

// resolve finds the path of a flow in the controller's current snapshot:
// the endpoint of this network at the flow's target whose SNAT address the
// server saw, or the public path at its target.
func (r *routerAudit) resolve(fl fabric.Flow) (datapath.TranslationInfo, bool) {
	snap, _ := r.a.paths.Snapshot()
	for _, t := range snap.Translations {
		if t.Addr != fl.Target.Addr() || t.Port != fl.Target.Port() {
			continue
		}
		var match bool
		switch r.kind {
		case fabric.KindNetwork:
			match = t.Kind == datapath.KindEndpoint && t.Network == r.network && t.Programmed && t.SNAT == fl.Source.Addr()
		case fabric.KindInternet:
			match = t.Kind == datapath.KindPublic
		}
		if match {
			r.known[fl.Target] = t
			return t, true
		}
	}
	return datapath.TranslationInfo{}, false
}

// auditAttrs are the attributes of the audit line of a flow that ended
// (ev) through the path t.
func auditAttrs(ev fabric.FlowEvent, t datapath.TranslationInfo) []slog.Attr {
	attrs := []slog.Attr{slog.String("kind", t.Kind)}
	conn := t.Connection
	if t.Kind == datapath.KindEndpoint {
		attrs = append(attrs, slog.String("endpoint", t.EndpointID))
	} else {
		conn = firewallRule(t.FirewallRules, ev.Flow.Client.Addr())
	}
	attrs = append(attrs, slog.String("connection", conn))
	if t.Kind == datapath.KindEndpoint {
		attrs = append(attrs, slog.String("network", t.NetworkID))
	}
	attrs = append(attrs,
		slog.String("server", t.ServerID),
		slog.String("server_name", t.ServerName),
		slog.String("client_addr", ev.Flow.Client.Addr().String()),
		slog.Int("client_port", int(ev.Flow.Client.Port())),
		slog.String("target", ev.Flow.Target.String()),
		slog.String("seen_as", addrPortOrEmpty(ev.Flow.Source)),
		slog.Uint64("bytes_in", ev.BytesIn),
		slog.Uint64("bytes_out", ev.BytesOut),
		slog.Uint64("packets_in", ev.PacketsIn),
		slog.Uint64("packets_out", ev.PacketsOut),
	)
	if !ev.Start.IsZero() {
		attrs = append(attrs, slog.Time("start", ev.Start.Round(0).UTC()))
		if !ev.Stop.IsZero() {
			attrs = append(attrs, slog.Duration("duration", ev.Stop.Sub(ev.Start).Round(time.Microsecond)))
		}
	}
	return append(attrs, slog.String("ended", string(ev.End)))
}

// addrPortOrEmpty is a's text, "" when it is not valid (a relayed
// connection that never reached the service).
func addrPortOrEmpty(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// firewallRule returns the name of the first rule (by name) whose range
// holds a, or "" when none does (any more).
func firewallRule(rules []datapath.FirewallRule, a netip.Addr) string {
	name := ""
	for _, r := range rules {
		if r.Start.Compare(a) <= 0 && a.Compare(r.End) <= 0 && (name == "" || r.Name < name) {
			name = r.Name
		}
	}
	return name
}
