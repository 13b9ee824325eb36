package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/privlink/privlink/internal/datapath"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/pgserver"
	"github.com/privlink/privlink/internal/proxyrelay"
	"github.com/privlink/privlink/internal/store"
)

// Datapath programs the kernel's translations toward PostgreSQL servers:
// one per private endpoint whose connection is Approved (in its network's
// router), and one public path per server (in the internet router) that
// lets through only the sources of its firewall rules while public access
// is enabled. When a path is withdrawn, its flows are cut (the fabric
// resets both ends) and the server's backends behind them terminated.
//
// What each router should hold is computed by internal/datapath
// (datapath.Planner); this is the loop that hands it to the fabric and
// publishes what became of it (Observed).
type Datapath struct {
	fab     *fabric.Fabric
	pg      *pgserver.Manager
	log     *slog.Logger
	loop    *Loop
	planner *datapath.Planner
	// converged holds, by router (a network's fabric ID; the internet
	// router's is ""), the fingerprint it last converged to; only the
	// loop's goroutine uses it.
	converged converged
	// failedPasses counts the passes in a row in which the kernel refused
	// a change (for the back-off); only the loop's goroutine uses it.
	failedPasses int

	observed *datapath.Observed
	// relay serves the PROXY protocol routes (datapath.Relay); Run
	// closes it when it returns.
	relay *proxyrelay.Relay
	// relayed maps each relay route's name to its endpoint's network
	// and translation name, as the last pass set them (for
	// Observed.RelayCounters).
	relayedMu sync.Mutex
	relayed   map[string][2]string
}

// NewDatapath returns the controller.
func NewDatapath(st store.Store, fab *fabric.Fabric, pg *pgserver.Manager, log *slog.Logger) *Datapath {
	d := &Datapath{fab: fab, pg: pg, log: log, planner: datapath.NewPlanner(st), converged: converged{},
		observed: datapath.NewObserved(), relay: proxyrelay.New(context.Background(), fab, log, proxyrelay.Options{})}
	d.loop = &Loop{Name: "datapath", Prefixes: datapath.Prefixes, Items: d.items,
		Resync: func(context.Context) ([]string, error) { return []string{itemDatapathResync}, nil }, ResyncEvery: 30 * time.Second,
		Reconcile: d.reconcile, Store: st, Log: log}
	d.observed.SetRelayCounters(d.relayCounters)
	return d
}

// Observed returns what the controller programmed in its last pass, which
// it publishes after each pass.
func (d *Datapath) Observed() *datapath.Observed { return d.observed }

// Run reconciles until ctx ends. Translations stay in the kernel after it
// returns: established sessions outlive privlinkd.
func (d *Datapath) Run(ctx context.Context) error {
	defer d.relay.Close()
	return d.loop.Run(ctx)
}

// Relay returns the PROXY protocol relay: its counters
// are the relayed endpoints', by datapath.Relay name.
func (d *Datapath) Relay() *proxyrelay.Relay { return d.relay }

// One item: the whole data path is computed in one pass and each router
// converges in one nftables batch. A pass converges only the routers
// (networks' and the internet's) whose translations changed since they
// last converged; the resync item, every 30 s, converges every router,
// which heals drift (a router rebuilt by the network controller, a
// ruleset changed by hand).
const (
	itemDatapath       = "datapath"
	itemDatapathResync = "datapath/resync"
)

// internetRouter is the internet router's key in Datapath.converged;
// serviceKeyPrefix and a NIC's fabric ID a private link service's NAT NIC.
const (
	internetRouter   = ""
	serviceKeyPrefix = "pls/"
)

func (d *Datapath) items(key string, _ []byte) []string {
	if datapath.Watches(key) {
		return []string{itemDatapath}
	}
	return nil
}

// router is a router of the Desired data path (*datapath.NetworkRouter,
// *datapath.InternetRouter).
type router interface {
	Fingerprint() string
	Waiting(err error) bool
}

func (d *Datapath) reconcile(ctx context.Context, item string) (time.Duration, error) {
	want, err := d.planner.Desired(ctx)
	if err != nil {
		return 0, err
	}
	var failures []error
	var pendings []error // what waits for a namespace
	// converge hands router key to the fabric through ensure unless it
	// holds what it last converged to (but on the resync), and terminates
	// the server backends of the flows it revoked. It returns whether it
	// converged the router, and the fabric's error.
	converge := func(key string, r router, what string, ensure func() ([]fabric.Flow, error)) (bool, error) {
		fp := r.Fingerprint()
		if d.converged.current(key, fp) && item != itemDatapathResync {
			return false, nil
		}
		d.converged.forget(key)
		revoked, err := ensure()
		switch {
		case err == nil:
			d.converged.done(key, fp)
		case r.Waiting(err):
			// A router or a server's namespace is not there yet.
			pendings = append(pendings, fmt.Errorf("%s: %w", what, err))
		default:
			failures = append(failures, fmt.Errorf("%s: %w", what, err))
		}
		d.terminate(ctx, revoked, want)
		return true, err
	}
	d.converged.keep(func(key string) bool {
		_, ok := want.Networks[key]
		_, svc := want.Services[strings.TrimPrefix(key, serviceKeyPrefix)]
		return ok || key == internetRouter || (svc && strings.HasPrefix(key, serviceKeyPrefix))
	})
	// Private link services' NAT NICs first: the consumers' service links
	// lead into them and check their link addresses.
	for nic, s := range want.Services {
		converge(serviceKeyPrefix+nic, s, "private link service "+s.ID.String(), func() ([]fabric.Flow, error) {
			return nil, d.fab.EnsureLinkService(s.LinkService)
		})
	}
	// results holds the error of each network's router converged this
	// pass (nil: all in place); networks not converged this pass are as
	// they last converged, which succeeded.
	results := map[string]error{}
	for nid, r := range want.Networks {
		if ok, err := converge(nid, r, "network "+r.ID.String(), func() ([]fabric.Flow, error) {
			return d.fab.EnsureEndpoints(nid, r.Endpoints)
		}); ok {
			results[nid] = err
		}
	}
	// The relays of endpoints with PROXY protocol: those that went are
	// reset here, as the kernel's revoked flows above.
	d.setRelayed(want.Relays)
	if err := d.relay.Set(d.relayRoutes(want.Relays)); err != nil {
		pendings = append(pendings, fmt.Errorf("PROXY protocol relays: %w", err))
	}
	// As networks' routers: only a change converges the internet router
	// (each pass would otherwise check every server's link and dump its
	// conntrack table, under the fabric's lock), and the resync all.
	converge(internetRouter, &want.Internet, "public paths", func() ([]fabric.Flow, error) {
		return d.fab.EnsurePublic(want.Internet.Public)
	})
	d.observed.Publish(want.Snapshot, want.Reports(results))
	if len(failures) > 0 {
		// The kernel refused a change: said loudly, retried with back-off.
		d.failedPasses++
		delay := backoff(d.failedPasses)
		for _, err := range failures {
			d.log.Error("data path convergence failed; retrying", "attempt", d.failedPasses, "retry_in", delay, "err", err)
		}
		return delay, nil
	}
	d.failedPasses = 0
	if len(pendings) > 0 {
		// A router or a server's namespace is not there yet: soon again.
		d.log.Debug("data path waits for namespaces", "err", errors.Join(pendings...))
		return time.Second, nil
	}
	return 0, nil
}

// terminate ends the server backends of revoked flows, so that no session
// of a withdrawn path survives on the server side either.
func (d *Datapath) terminate(ctx context.Context, revoked []fabric.Flow, want *datapath.Desired) {
	bySrv := map[*datapath.Server][]netip.Prefix{}
	for _, fl := range revoked {
		if s := want.ServerAt(fl.Service.Addr()); s != nil {
			bySrv[s] = append(bySrv[s], netip.PrefixFrom(fl.Source.Addr(), 32))
		}
	}
	for s, clients := range bySrv {
		n, err := d.pg.TerminateBackends(ctx, s.Fabric, clients)
		if err != nil && !errors.Is(err, pgserver.ErrNotRunning) {
			d.log.Warn("terminating backends of revoked flows failed", "server", s.Name, "err", err)
			continue
		}
		d.log.Info("revoked sessions", "server", s.Name, "flows", len(clients), "backends_terminated", n)
	}
}

// relayRoutes are the relay's routes for rs, in the fabric's namespaces.
func (d *Datapath) relayRoutes(rs []datapath.Relay) []proxyrelay.Route {
	out := make([]proxyrelay.Route, 0, len(rs))
	for _, r := range rs {
		listen := d.fab.NamespaceName(fabric.KindNetwork, r.Network)
		// A router made again (the network controller heals it) is a
		// new namespace: the route listens in it anew. (0 when it is not
		// there: its listener fails until it is.)
		epoch, _ := d.fab.NamespaceInode(listen)
		out = append(out, proxyrelay.Route{Name: r.Name,
			ListenNamespace: listen, Listen: r.Listen, Epoch: epoch,
			DialNamespace: d.fab.NamespaceName(fabric.KindNIC, r.NIC), Source: r.Source, Upstream: r.Upstream,
			ProxyProtocol: true, LinkID: r.LinkID})
	}
	return out
}

func (d *Datapath) setRelayed(rs []datapath.Relay) {
	m := make(map[string][2]string, len(rs))
	for _, r := range rs {
		m[r.Name] = [2]string{r.Network, r.Translation}
	}
	d.relayedMu.Lock()
	d.relayed = m
	d.relayedMu.Unlock()
}

// relayCounters are the relay's counters of the network's endpoints, by
// translation name (their ports' routes summed).
func (d *Datapath) relayCounters(network string) map[string]fabric.Counters {
	d.relayedMu.Lock()
	relayed := d.relayed
	d.relayedMu.Unlock()
	out := map[string]fabric.Counters{}
	for name, c := range d.relay.Counters() {
		at, ok := relayed[name]
		if !ok || at[0] != network {
			continue
		}
		v := out[at[1]]
		v.Connections += c.Accepted
		v.Active += int(c.Active)
		v.BytesIn += c.BytesUp
		v.BytesOut += c.BytesDown
		out[at[1]] = v
	}
	return out
}
