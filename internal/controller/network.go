package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/datapath"
	"github.com/privlink/privlink/internal/dns"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/names"
	"github.com/privlink/privlink/internal/provider/dnsresolver"
	"github.com/privlink/privlink/internal/provider/network"
	"github.com/privlink/privlink/internal/store"
)

// FabricID is the fabric's short key of a resource: a hash of its
// lower-cased ARM ID, so names stay short and stable across restarts.
func FabricID(id arm.ResourceID) string { return names.Key(id) }

// Network materializes virtual networks and NICs: a router namespace per
// network with the network's DNS at 168.63.129.16, a namespace per NIC.
type Network struct {
	st  store.Store
	fab *fabric.Fabric
	srv *dns.Server
	log *slog.Logger

	loop *Loop
	nics *arm.Memo[network.NICFacts] // decoded NIC documents, by key and revision
	// wait, once FollowDatapath is called, holds a private endpoint's
	// operation back until its translation is in place.
	wait dataPathWait

	mu      sync.Mutex
	serving map[string]map[netip.Addr]*dnsServing // by network fabric ID, then address

	// gateways holds, by network ID, the address its peers route to
	// (peerGateway) as of its last reconcile; only the loop's goroutine
	// uses it.
	gateways map[string]netip.Addr
}

// NewNetwork returns the network controller.
func NewNetwork(st store.Store, fab *fabric.Fabric, srv *dns.Server, log *slog.Logger) *Network {
	n := &Network{st: st, fab: fab, srv: srv, log: log, serving: map[string]map[netip.Addr]*dnsServing{}, gateways: map[string]netip.Addr{}, nics: arm.NewMemo(network.NICFactsOf)}
	n.loop = &Loop{
		Name: "network", Prefixes: []string{
			"arm/", // every resource document; Items keeps networks, subnets and NICs
		},
		Items: n.items, Resync: n.resync, ResyncEvery: 30 * time.Second,
		Reconcile: n.reconcile, Store: st, Log: log,
	}
	return n
}

const (
	itemNetwork     = "vnet|"
	itemNIC         = "nic|"
	itemAllNetworks = "all|"
)

func (n *Network) items(key string, value []byte) []string {
	id, ok := arm.ParseDocKey(key)
	if !ok || !strings.EqualFold(id.Namespace, "Microsoft.Network") {
		return nil
	}
	switch strings.ToLower(strings.Join(id.Types, "/")) {
	case "dnsresolvers/inboundendpoints":
		// A DNS resolver's inbound endpoint is an address on its
		// network's router that answers DNS. When one goes, its network
		// is not in the key: look at them all.
		if value == nil {
			return []string{itemAllNetworks}
		}
		if vnet, ok := dnsresolver.NetworkOf(store.KV{Key: key, Value: value}); ok {
			return []string{itemNetwork + vnet.String()}
		}
		return nil
	case "virtualnetworks":
		return []string{itemNetwork + id.String()}
	case "virtualnetworks/subnets":
		return []string{itemNetwork + id.Parent().String()}
	case "virtualnetworks/virtualnetworkpeerings":
		// A peering changes both networks' routers (its state derives
		// from both sides). When one goes, its remote is not in the key:
		// look at them all.
		if value == nil {
			return []string{itemAllNetworks}
		}
		if local, remote, ok := network.PeeringEnds(store.KV{Key: key, Value: value}); ok {
			return []string{itemNetwork + local.String(), itemNetwork + remote.String()}
		}
		return []string{itemNetwork + id.Parent().String()}
	case "networkinterfaces":
		// A private endpoint's NIC is an address on its network's router.
		// When a NIC goes, its network is not in the key: look at them all.
		if value == nil {
			return []string{itemNIC + id.String(), itemAllNetworks}
		}
		if nic := network.NICFactsOf(store.KV{Key: key, Value: value}); nic.Endpoint && nic.Primary {
			return []string{itemNIC + id.String(), itemNetwork + nic.Subnet.Parent().String()}
		}
		return []string{itemNIC + id.String()}
	}
	return nil
}

// resync lists every network and NIC, and removes namespaces of this
// daemon's prefix that belong to none of them.
func (n *Network) resync(ctx context.Context) ([]string, error) {
	kvs, _, err := n.st.List(ctx, "arm/")
	if err != nil {
		return nil, err
	}
	var items []string
	keep := map[string]bool{n.fab.NamespaceName(fabric.KindInternet, ""): true}
	for _, kv := range kvs {
		// A VPN gateway's namespace is the VPN controller's while the
		// gateway exists.
		if id, ok := arm.ParseDocKey(kv.Key); ok && network.IsVNetGateway(id) {
			keep[n.fab.NamespaceName(fabric.KindVPNGateway, FabricID(id))] = true
		}
		for _, it := range n.items(kv.Key, kv.Value) {
			kind, rid, _ := strings.Cut(it, "|")
			id, err := arm.ParseID(rid)
			if err != nil || it == itemAllNetworks {
				continue
			}
			if kind+"|" == itemNetwork {
				keep[n.fab.NamespaceName(fabric.KindNetwork, FabricID(id))] = true
			} else {
				keep[n.fab.NamespaceName(fabric.KindNIC, FabricID(id))] = true
			}
			items = append(items, it)
		}
	}
	err = n.fab.RemoveStale(func(name string) bool {
		// Internet hosts, service namespaces and sites have owners of their own.
		return keep[name] || strings.HasPrefix(name, n.fab.NamespaceName(fabric.KindInternetHost, "")) || strings.HasPrefix(name, n.fab.NamespaceName(fabric.KindService, "")) ||
			n.fab.IsSiteNamespace(name)
	})
	return items, err
}

// FollowDatapath makes the controller finish a private endpoint's operation
// (settle its NIC) Succeeded only once the data path reports the
// endpoint's document, as it is, in place (o.EndpointStatus): when the
// SDK's poller completes, an approved endpoint takes connections. When the
// data path reports that programming it failed, or not in place within
// holdBackMax, the operation ends Failed and so does the NIC's (the
// endpoint's) provisioningState, until the translation comes. Call it
// before Run.
func (n *Network) FollowDatapath(o *datapath.Observed) {
	n.wait = dataPathWait{dp: o, log: n.log, what: "finishing its operation"}
}

// Run reconciles until ctx ends, then stops serving DNS.
func (n *Network) Run(ctx context.Context) error {
	if err := n.fab.EnsureInternet(); err != nil {
		return fmt.Errorf("create the emulated internet: %w", err)
	}
	go n.serveInternet(ctx)
	err := n.loop.Run(ctx)
	n.mu.Lock()
	all := n.serving
	n.serving = map[string]map[netip.Addr]*dnsServing{}
	n.mu.Unlock()
	for _, byAddr := range all {
		for _, s := range byAddr {
			s.cancel()
			<-s.done
		}
	}
	return err
}

func (n *Network) reconcile(ctx context.Context, item string) (time.Duration, error) {
	if item == itemAllNetworks {
		return 0, n.enqueueAllNetworks(ctx)
	}
	kind, rid, _ := strings.Cut(item, "|")
	id, err := arm.ParseID(rid)
	if err != nil {
		return 0, fmt.Errorf("bad item %q: %w", item, err)
	}
	if kind+"|" == itemNetwork {
		return 0, n.reconcileNetwork(ctx, id)
	}
	return n.reconcileNIC(ctx, id, item)
}

// enqueueAllNetworks asks for every network to be reconciled.
func (n *Network) enqueueAllNetworks(ctx context.Context) error {
	kvs, _, err := n.st.List(ctx, "arm/")
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		if id, ok := arm.ParseDocKey(kv.Key); ok && strings.EqualFold(id.Type(), "Microsoft.Network/virtualNetworks") {
			n.loop.Enqueue(itemNetwork + id.String())
		}
	}
	return nil
}

func (n *Network) reconcileNetwork(ctx context.Context, id arm.ResourceID) error {
	fid := FabricID(id)
	rd := arm.ReadOnly(ctx, n.st)
	ok, err := arm.Exists(rd, id)
	if err != nil {
		return err
	}
	if !ok {
		n.stopDNS(fid)
		delete(n.gateways, lkey(id))
		n.srv.ForgetStats(View(id))
		if err := n.fab.DeleteNetwork(fid); err != nil {
			return err
		}
		return n.releaseOutbound(ctx, id)
	}
	prefixes, err := network.NetworkPrefixes(rd, id)
	if err != nil {
		return err
	}
	nics, endpoints, err := n.nicsOf(ctx, id)
	if err != nil {
		return err
	}
	outbound, err := n.ensureOutbound(ctx, id)
	if errors.Is(err, errOutboundExhausted) {
		n.log.Warn("virtual network without default outbound: its NICs do not reach the internet", "network", id.String(), "error", err)
	} else if err != nil {
		return err
	}
	inbound, err := n.inboundOf(rd, id, prefixes)
	if err != nil {
		return err
	}
	peers, peerIDs, err := peersOf(rd, id, prefixes)
	if err != nil {
		return err
	}
	spec := fabric.NetworkSpec{ID: fid, Subnets: prefixes, Endpoints: endpoints, DNS: inbound, Outbound: outbound, Peers: peers}
	linked, err := n.fab.EnsureNetworkLinked(spec)
	if err != nil {
		return err
	}
	n.enqueuePeers(id, prefixes, peers, peerIDs, linked)
	if err := n.ensureDNS(id, fid, inbound); err != nil {
		return err
	}
	// A re-created router lost its links to the NICs: let them converge.
	for _, nic := range nics {
		n.loop.Enqueue(itemNIC + nic)
	}
	return nil
}

// nicsOf lists the NICs whose primary subnet is in the network: the IDs of
// ordinary ones, and the addresses of private endpoints' ones.
func (n *Network) nicsOf(ctx context.Context, vnet arm.ResourceID) (ids []string, endpoints []netip.Addr, err error) {
	coll := arm.ResourceID{Subscription: vnet.Subscription, Namespace: "Microsoft.Network", Types: []string{"networkInterfaces"}}
	kvs, _, err := n.st.List(ctx, arm.CollectionPrefix(coll))
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", coll, err)
	}
	for _, kv := range kvs {
		nic := n.nics.Of(kv)
		if !nic.Primary || !arm.ScopeContains(vnet.String(), nic.Subnet.String()) || nic.ID == "" {
			continue
		}
		if nic.Endpoint {
			endpoints = append(endpoints, nic.Addr)
		} else {
			ids = append(ids, nic.ID)
		}
	}
	return ids, endpoints, nil
}

// reconcileNIC converges the NIC id (the loop's item) and settles it. It
// asks for a retry after the duration it returns while a private
// endpoint's NIC waits for the data path.
func (n *Network) reconcileNIC(ctx context.Context, id arm.ResourceID, item string) (time.Duration, error) {
	fid := FabricID(id)
	rd := arm.ReadOnly(ctx, n.st)
	kv, err := rd.Get(arm.DocKey(id))
	if errors.Is(err, store.ErrNotFound) {
		if err := n.fab.DeleteNIC(fid); err != nil {
			return 0, err
		}
		return 0, n.settle(ctx, id, nil)
	}
	if err != nil {
		return 0, err
	}
	nic := n.nics.Of(kv)
	if nic.Endpoint {
		// A private endpoint's NIC is an address on its network's router,
		// which the network's reconcile puts there. Its operation is the
		// endpoint's: it finishes once the data path has the endpoint as
		// it is now.
		if nic.Primary {
			if err := n.reconcileNetwork(ctx, nic.Subnet.Parent()); err != nil {
				return 0, err
			}
		}
		if nic.EndpointID != "" {
			ready, failure, err := n.endpointReady(ctx, nic.EndpointID, item)
			if err != nil {
				return 0, err
			}
			if failure != nil {
				// Failed, not Succeeded: the translation is not there.
				// Should it come later, a data path pass (n.wait still
				// enqueues it) or the resync settles the NIC again.
				return holdBackRecheck, n.settle(ctx, id, failure)
			}
			if !ready {
				// Again at the data path's next pass (n.wait enqueues
				// it), and in any case after a while.
				return holdBackRecheck, nil
			}
		}
		return 0, n.settle(ctx, id, nil)
	}
	if !nic.Primary {
		return 0, n.settle(ctx, id, arm.BadRequest("InvalidNetworkInterface", "properties.ipConfigurations", "The NIC has no primary IPv4 configuration."))
	}
	prefixes, ok, err := network.SubnetPrefixes(rd, nic.Subnet)
	if err != nil || !ok {
		return 0, fmt.Errorf("subnet %s of NIC %s: missing (%v)", nic.Subnet, id, err)
	}
	var prefix netip.Prefix
	for _, p := range prefixes {
		if p.Contains(nic.Addr) {
			prefix = p
		}
	}
	if !prefix.IsValid() {
		return 0, fmt.Errorf("NIC %s address %s is outside subnet %s", id, nic.Addr, nic.Subnet)
	}
	vnet := nic.Subnet.Parent()
	spec := fabric.NICSpec{ID: fid, Network: FabricID(vnet), Address: netip.PrefixFrom(nic.Addr, prefix.Bits()), MAC: nic.MAC, DNS: nic.DNSServers}
	err = n.fab.EnsureNIC(spec)
	if errors.Is(err, fabric.ErrNotFound) {
		// The network's router is not there yet: build it first.
		if err := n.reconcileNetwork(ctx, vnet); err != nil {
			return 0, err
		}
		err = n.fab.EnsureNIC(spec)
	}
	if err != nil {
		return 0, err
	}
	return 0, n.settle(ctx, id, nil)
}

// endpointReady reports whether the operation of private endpoint pe may
// finish Succeeded (see FollowDatapath), or must finish failed (failure,
// an ARM error: the data path failed to program its translation, or did
// not put it in place within holdBackMax). An endpoint that is gone is
// ready.
func (n *Network) endpointReady(ctx context.Context, pe, item string) (ready bool, failure, err error) {
	if n.wait.dp == nil {
		return true, nil, nil
	}
	id, err := arm.ParseID(pe)
	if err != nil {
		return true, nil, nil // not an endpoint the data path could know
	}
	kv, err := n.st.Get(ctx, arm.DocKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return true, nil, nil
	}
	if err != nil {
		return false, nil, fmt.Errorf("private endpoint %s: %w", pe, err)
	}
	ready, failure = n.wait.ready(ctx, pe, kv.Revision, item, n.loop.Enqueue)
	return ready, failure, nil
}

// settle records that a NIC's namespace matches its document (see
// network.SettleNIC).
func (n *Network) settle(ctx context.Context, id arm.ResourceID, failure error) error {
	_, err := n.st.Txn(ctx, func(tx store.Tx) error { return network.SettleNIC(tx, id, failure) })
	return err
}

// View is the DNS view name of a virtual network.
func View(vnet arm.ResourceID) string { return strings.ToLower(vnet.String()) }

// inboundOf returns the addresses of the DNS resolver inbound endpoints in
// the network's subnets (those outside every subnet prefix, which the
// provider never hands out, are skipped).
func (n *Network) inboundOf(rd arm.Reader, vnet arm.ResourceID, prefixes []netip.Prefix) ([]netip.Addr, error) {
	eps, err := dnsresolver.InboundAddresses(rd, vnet)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, e := range eps {
		for _, p := range prefixes {
			if p.Contains(e.Address) {
				out = append(out, e.Address)
				break
			}
		}
	}
	return out, nil
}

// ensureDNS serves the network's DNS inside its router namespace on
// 168.63.129.16 and on each of inbound (DNS resolver inbound endpoints:
// the same view on another address), stops serving on addresses no longer
// wanted, and serves anew when the namespace was re-created (its sockets
// died with the old one).
func (n *Network) ensureDNS(vnet arm.ResourceID, fid string, inbound []netip.Addr) error {
	ns := n.fab.NamespaceName(fabric.KindNetwork, fid)
	ino, err := n.fab.NamespaceInode(ns)
	if err != nil {
		return err
	}
	want := map[netip.Addr]bool{fabric.DNSAddr: true}
	for _, a := range inbound {
		want[a] = true
	}
	n.mu.Lock()
	cur := n.serving[fid]
	n.mu.Unlock()
	for a := range cur {
		if !want[a] {
			n.stopDNSAt(fid, a)
		}
	}
	for a := range want {
		if err := n.serveDNSAt(vnet, fid, ns, ino, a); err != nil {
			return err
		}
	}
	return nil
}

// serveDNSAt serves the network's view on addr:53 (UDP and TCP) in its
// router namespace ns, unless it already does in that namespace.
func (n *Network) serveDNSAt(vnet arm.ResourceID, fid, ns string, ino uint64, addr netip.Addr) error {
	n.mu.Lock()
	cur := n.serving[fid][addr]
	n.mu.Unlock()
	if cur.live(ino) {
		return nil
	}
	n.stopDNSAt(fid, addr)
	s, err := startDNS(n.fab, ns, ino, addr, func(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
		return n.srv.Serve(ctx, View(vnet), pc, ln)
	}, n.log.With("network", vnet.String()))
	if err != nil {
		return fmt.Errorf("DNS of %s: %w", vnet, err)
	}
	n.mu.Lock()
	if n.serving[fid] == nil {
		n.serving[fid] = map[netip.Addr]*dnsServing{}
	}
	n.serving[fid][addr] = s
	n.mu.Unlock()
	return nil
}

// stopDNSAt stops serving the network's DNS on addr.
func (n *Network) stopDNSAt(fid string, addr netip.Addr) {
	n.mu.Lock()
	s := n.serving[fid][addr]
	delete(n.serving[fid], addr)
	n.mu.Unlock()
	if s != nil {
		s.cancel()
		<-s.done
	}
}

// stopDNS stops serving the network's DNS on every address.
func (n *Network) stopDNS(fid string) {
	n.mu.Lock()
	all := n.serving[fid]
	delete(n.serving, fid)
	n.mu.Unlock()
	for _, s := range all {
		s.cancel()
		<-s.done
	}
}

// serveInternet serves the public view in the internet namespace, on the
// internet router's address.
func (n *Network) serveInternet(ctx context.Context) {
	ns := n.fab.NamespaceName(fabric.KindInternet, "")
	addr := net.JoinHostPort(fabric.InternetGateway.String(), "53")
	for ctx.Err() == nil {
		pc, err := n.fab.ListenUDP(ns, addr)
		if err == nil {
			var ln net.Listener
			if ln, err = n.fab.ListenTCP(ns, addr); err == nil {
				err = n.srv.Serve(ctx, dns.InternetView, pc, ln)
			} else {
				pc.Close()
			}
		}
		if err != nil && ctx.Err() == nil {
			n.log.Warn("internet DNS stopped; restarting", "err", err)
			_ = n.fab.EnsureInternet()
		}
		sleep(ctx, time.Second)
	}
}
