package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/pgserver"
	"github.com/privlink/privlink/internal/provider/postgres"
	"github.com/privlink/privlink/internal/store"
)

// Datapath programs the kernel's translations toward PostgreSQL servers:
// one per private endpoint whose connection is Approved (in its network's
// router), and one public path per server (in the internet router) that
// lets through only the sources of its firewall rules while public access
// is enabled. When a path is withdrawn, its flows are cut (the fabric
// resets both ends) and the server's backends behind them terminated.
type Datapath struct {
	st   store.Store
	fab  *fabric.Fabric
	pg   *pgserver.Manager
	log  *slog.Logger
	loop *Loop
}

// snatPrefix holds endpoint SNAT addresses: the address a server sees for
// an endpoint's connections. Service addresses come from below it.
var snatPrefix = netip.MustParsePrefix("169.254.192.0/18")

// snatKey records an endpoint's SNAT address: dp/snat/{lower endpoint ID}.
const snatKey = "dp/snat"

// pgPort is PostgreSQL's port, on both sides of every translation.
const pgPort = 5432

// NewDatapath returns the controller.
func NewDatapath(st store.Store, fab *fabric.Fabric, pg *pgserver.Manager, log *slog.Logger) *Datapath {
	d := &Datapath{st: st, fab: fab, pg: pg, log: log}
	d.loop = &Loop{Name: "datapath", Prefixes: []string{"arm/", postgres.DesiredPrefix + "/"}, Items: d.items,
		Resync: func(context.Context) ([]string, error) { return []string{itemDatapath}, nil }, ResyncEvery: 30 * time.Second,
		Reconcile: d.reconcile, Store: st, Log: log}
	return d
}

// Run reconciles until ctx ends. Translations stay in the kernel after it
// returns: established sessions outlive privlinkd.
func (d *Datapath) Run(ctx context.Context) error { return d.loop.Run(ctx) }

// One item: the whole data path is computed in one pass and each router
// converges in one nftables batch.
const itemDatapath = "datapath"

func (d *Datapath) items(key string, _ []byte) []string {
	if strings.HasPrefix(key, postgres.DesiredPrefix) {
		return []string{itemDatapath}
	}
	id, ok := arm.ParseDocKey(key)
	if !ok {
		return nil
	}
	switch strings.ToLower(id.Type()) {
	case "microsoft.network/privateendpoints", "microsoft.network/networkinterfaces", "microsoft.network/virtualnetworks",
		"microsoft.dbforpostgresql/flexibleservers", "microsoft.dbforpostgresql/flexibleservers/firewallrules",
		"microsoft.dbforpostgresql/flexibleservers/privateendpointconnections":
		return []string{itemDatapath}
	}
	return nil
}

// server is what the data path needs of a flexible server.
type server struct {
	id      arm.ResourceID
	fid     string
	desired postgres.Desired
}

// endpoint is an Approved private endpoint to a running server.
type endpoint struct {
	id      arm.ResourceID
	network arm.ResourceID
	addr    netip.Addr
	server  *server
}

func (d *Datapath) reconcile(ctx context.Context, _ string) (time.Duration, error) {
	rd := arm.ReadOnly(ctx, d.st)
	servers, err := d.servers(ctx, rd)
	if err != nil {
		return 0, err
	}
	kvs, _, err := d.st.List(ctx, "arm/")
	if err != nil {
		return 0, err
	}
	networks := map[string]arm.ResourceID{} // every virtual network, by fabric ID
	var eps []endpoint
	for _, kv := range kvs {
		id, ok := arm.ParseDocKey(kv.Key)
		if !ok {
			continue
		}
		switch strings.ToLower(id.Type()) {
		case "microsoft.network/virtualnetworks":
			networks[FabricID(id)] = id
		case "microsoft.network/privateendpoints":
			if ep, ok := d.endpoint(rd, kv.Value, servers); ok {
				eps = append(eps, ep)
			}
		}
	}
	snats, err := d.allocateSNAT(ctx, eps)
	if err != nil {
		return 0, err
	}
	byService := map[netip.Addr]*server{}
	for _, s := range servers {
		byService[s.desired.ServiceAddr] = s
	}
	var failures []error
	byNetwork := map[string][]fabric.EndpointNAT{}
	for _, ep := range eps {
		nid := FabricID(ep.network)
		byNetwork[nid] = append(byNetwork[nid], fabric.EndpointNAT{
			Name: FabricID(ep.id), Endpoint: ep.addr, Port: pgPort,
			Service: ep.server.fid, ServiceAddr: ep.server.desired.ServiceAddr, SNAT: snats[strings.ToLower(ep.id.String())],
		})
	}
	for nid := range networks {
		revoked, err := d.fab.EnsureEndpoints(nid, byNetwork[nid])
		if err != nil && !errors.Is(err, fabric.ErrNotFound) {
			failures = append(failures, fmt.Errorf("network %s: %w", networks[nid], err))
		}
		d.terminate(ctx, revoked, byService)
	}
	var pubs []fabric.PublicNAT
	for _, s := range servers {
		ranges, err := postgres.FirewallRanges(rd, s.id)
		if err != nil {
			return 0, err
		}
		p := fabric.PublicNAT{Name: s.fid, Public: s.desired.PublicAddr, Port: pgPort, Service: s.fid,
			ServiceAddr: s.desired.ServiceAddr, Enabled: s.desired.PublicNetworkAccess && s.desired.Running}
		for _, r := range ranges {
			p.Allowed = append(p.Allowed, fabric.AddrRange{From: r.Start, To: r.End})
		}
		pubs = append(pubs, p)
	}
	revoked, err := d.fab.EnsurePublic(pubs)
	if err != nil {
		failures = append(failures, fmt.Errorf("public paths: %w", err))
	}
	d.terminate(ctx, revoked, byService)
	if err := errors.Join(failures...); err != nil {
		// Typically a server's namespace is not there yet: try again soon.
		d.log.Debug("data path not fully converged", "err", err)
		return time.Second, nil
	}
	return 0, nil
}

// servers returns the servers that exist (ARM document and Desired record).
func (d *Datapath) servers(ctx context.Context, rd arm.Reader) (map[string]*server, error) {
	kvs, _, err := d.st.List(ctx, postgres.DesiredPrefix+"/")
	if err != nil {
		return nil, err
	}
	out := map[string]*server{}
	for _, kv := range kvs {
		var des postgres.Desired
		if json.Unmarshal(kv.Value, &des) != nil {
			continue
		}
		id, err := arm.ParseID(des.ID)
		if err != nil {
			continue
		}
		if ok, err := arm.Exists(rd, id); err != nil || !ok {
			continue // being deleted
		}
		out[strings.ToLower(id.String())] = &server{id: id, fid: FabricID(id), desired: des}
	}
	return out, nil
}

// endpoint decides whether a private endpoint document gets a translation:
// its connection is Approved and its server runs.
func (d *Datapath) endpoint(rd arm.Reader, doc []byte, servers map[string]*server) (endpoint, bool) {
	var pe armnetwork.PrivateEndpoint
	if json.Unmarshal(doc, &pe) != nil || pe.ID == nil || pe.Properties == nil || pe.Properties.Subnet == nil || pe.Properties.Subnet.ID == nil {
		return endpoint{}, false
	}
	conns := append(pe.Properties.PrivateLinkServiceConnections, pe.Properties.ManualPrivateLinkServiceConnections...)
	if len(conns) != 1 || conns[0] == nil || conns[0].Properties == nil || conns[0].Properties.PrivateLinkServiceID == nil {
		return endpoint{}, false
	}
	cp := conns[0].Properties
	if cp.PrivateLinkServiceConnectionState == nil || cp.PrivateLinkServiceConnectionState.Status == nil ||
		!strings.EqualFold(*cp.PrivateLinkServiceConnectionState.Status, "Approved") {
		return endpoint{}, false
	}
	target, err := arm.ParseID(*cp.PrivateLinkServiceID)
	if err != nil {
		return endpoint{}, false
	}
	srv := servers[strings.ToLower(target.String())]
	if srv == nil || !srv.desired.Running {
		return endpoint{}, false
	}
	id, err1 := arm.ParseID(*pe.ID)
	subnet, err2 := arm.ParseID(*pe.Properties.Subnet.ID)
	if err1 != nil || err2 != nil {
		return endpoint{}, false
	}
	var addr netip.Addr
	for _, n := range pe.Properties.NetworkInterfaces {
		if n == nil || n.ID == nil {
			continue
		}
		nicID, err := arm.ParseID(*n.ID)
		if err != nil {
			continue
		}
		var nic armnetwork.Interface
		if ok, err := arm.Load(rd, nicID, &nic); err == nil && ok {
			if _, a, ok := primaryIP(&nic); ok {
				addr = a
			}
		}
	}
	if !addr.IsValid() {
		return endpoint{}, false
	}
	return endpoint{id: id, network: subnet.Parent(), addr: addr, server: srv}, true
}

// allocateSNAT gives every endpoint its SNAT address, kept in the store so
// that it survives restarts (the kernel's flows refer to it), and frees
// those of endpoints that no longer have a translation.
func (d *Datapath) allocateSNAT(ctx context.Context, eps []endpoint) (map[string]netip.Addr, error) {
	out := map[string]netip.Addr{}
	_, err := d.st.Txn(ctx, func(tx store.Tx) error {
		clear(out)
		kvs, err := tx.List(snatKey + "/")
		if err != nil {
			return err
		}
		want := map[string]bool{}
		for _, ep := range eps {
			want[strings.ToLower(ep.id.String())] = true
		}
		used := map[netip.Addr]bool{}
		for _, kv := range kvs {
			id := strings.TrimPrefix(kv.Key, snatKey+"/")
			a, err := netip.ParseAddr(string(kv.Value))
			if err != nil || !want[id] {
				if err := tx.Delete(kv.Key); err != nil {
					return err
				}
				continue
			}
			out[id], used[a] = a, true
		}
		next := snatPrefix.Addr().Next()
		for id := range want {
			if _, ok := out[id]; ok {
				continue
			}
			for used[next] || next.As4()[3] == 0 || next.As4()[3] == 255 {
				next = next.Next()
			}
			if !snatPrefix.Contains(next) {
				return fmt.Errorf("no endpoint SNAT address left in %s", snatPrefix)
			}
			if err := tx.Put(snatKey+"/"+id, []byte(next.String())); err != nil {
				return err
			}
			out[id], used[next] = next, true
		}
		return nil
	})
	return out, err
}

// terminate ends the server backends of revoked flows, so that no session
// of a withdrawn path survives on the server side either.
func (d *Datapath) terminate(ctx context.Context, revoked []fabric.Flow, byService map[netip.Addr]*server) {
	bySrv := map[*server][]netip.Prefix{}
	for _, fl := range revoked {
		if s := byService[fl.Service.Addr()]; s != nil {
			bySrv[s] = append(bySrv[s], netip.PrefixFrom(fl.Source.Addr(), 32))
		}
	}
	for s, clients := range bySrv {
		n, err := d.pg.TerminateBackends(ctx, s.fid, clients)
		if err != nil && !errors.Is(err, pgserver.ErrNotRunning) {
			d.log.Warn("terminating backends of revoked flows failed", "server", s.desired.Name, "err", err)
			continue
		}
		d.log.Info("revoked sessions", "server", s.desired.Name, "flows", len(clients), "backends_terminated", n)
	}
}
