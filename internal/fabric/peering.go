package fabric

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/privlink/privlink/internal/policy"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Virtual network peering: a Connected peering (with virtual network
// access on both sides) is a veth pair between the two networks' router
// namespaces. Each router's end is PeerLinkName(the other network) (tag
// "p") and carries routes to the other network's address space via an
// address the other router holds on its lo (a subnet gateway of the other
// network, PeerSpec.Gateway, reached on-link, a static neighbour at the
// other end's hardware address). The routers' forward filter
// (nft.go) lets NICs to and from a peering link, so a NIC of one network
// reaches the other's NICs, and its private endpoints through their own
// translation (the DNAT happens in the router that holds the endpoint,
// whose filter accepts translated flows as ever). Nothing is forwarded
// from one peering link to another: peering is not transitive.
const peerLinkTag = "p"

// peerAliasPrefix starts the alias of a peering link's end; the peered
// network's ID follows.
const peerAliasPrefix = "peering to "

// PeerSpec is one peered network as a router sees it.
type PeerSpec struct {
	// ID is the peered network's fabric ID.
	ID string
	// Space is the peered network's address space (as synced): routed to
	// the peering link.
	Space []netip.Prefix
	// Gateway is an address on the peered router's lo (a gateway of one of
	// its subnets): the next hop of the routes, on-link.
	Gateway netip.Addr
	// Forwarded is this side's allowForwardedTraffic: traffic arriving
	// from the peer whose source is outside Space (forwarded by an
	// appliance or a gateway there) is let in only then (PeerTable).
	Forwarded bool
	// Back and BackGateway are what the peer's router routes toward
	// this network (this network's space as the peer synced it, via an
	// address on this router's lo). An Ensure that makes the pair routes
	// the peer's end with them too, so that replies find their way back
	// before the peer's own Ensure, which keeps its end from then on;
	// empty, the peer's end waits for that Ensure.
	Back        []netip.Prefix
	BackGateway netip.Addr
}

// PeerTable is the inet table, in a router namespace with peerings, whose
// chain peer-in (filter forward, before the fabric's filter) drops the new
// flows arriving on a peering link from a source outside the peer's space,
// unless that peering allows forwarded traffic: set peer-src holds, per
// link, the source ranges it admits (the peer's space, or everything).
// Replies (established, related) pass. A router without peerings has the
// table empty.
const PeerTable = "privlink-peer"

const (
	peerObjPrefix = "peer-"
	chainPeerIn   = "peer-in"
	setPeerSrc    = peerObjPrefix + "src"
)

// typePeerSrc is the key of set peer-src: link . source range.
var typePeerSrc = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr)

// peerTable is the desired PeerTable of a router with peers (validated).
func peerTable(peers []PeerSpec) tableSpec {
	if len(peers) == 0 {
		return tableSpec{table: PeerTable, ownsChains: true, objPrefix: peerObjPrefix}
	}
	src := setSpec{name: setPeerSrc, key: typePeerSrc, interval: true}
	for _, p := range peers {
		link := ifname(PeerLinkName(p.ID))
		ranges := []AddrRange{{From: netip.IPv4Unspecified(), To: netip.AddrFrom4([4]byte{255, 255, 255, 255})}}
		if !p.Forwarded {
			ranges = ranges[:0]
			for _, q := range p.Space {
				ranges = append(ranges, PrefixRange(q))
			}
		}
		for _, r := range mergeRanges(ranges) {
			src.elems = append(src.elems, nftables.SetElement{
				Key: slices.Concat(link, addrBytes(r.From)), KeyEnd: slices.Concat(link, addrBytes(r.To)), Comment: p.ID,
			})
		}
	}
	return tableSpec{table: PeerTable, ownsChains: true, objPrefix: peerObjPrefix,
		chains: []chainSpec{{
			name: chainPeerIn, typ: nftables.ChainTypeFilter, hook: nftables.ChainHookForward, priority: guardPriority,
			rules: []nftRule{
				{"peer: replies pass", append(ctBitsSet(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept)},
				{"peer: sources in @" + setPeerSrc + " pass", slices.Concat(ifPrefixIs(expr.MetaKeyIIFNAME, peerLinkTag), ipv4(), []expr.Any{
					&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
					load(regAfterName, expr.PayloadBaseNetworkHeader, offIPSaddr, 4),
					&expr.Lookup{SourceRegister: reg1, SetName: setPeerSrc},
					accept,
				})},
				{"peer: forwarded traffic not allowed", slices.Concat(ifPrefixIs(expr.MetaKeyIIFNAME, peerLinkTag), []expr.Any{drop})},
			},
		}},
		sets: []setSpec{src},
	}
}

// PeerLinkName returns the name of the veth end, in a router namespace,
// that leads to the router of network peer ("p" and 12 hex digits).
func PeerLinkName(peer string) string { return hashedLinkName(peerLinkTag, peer) }

func (s PeerSpec) validate(network string) error {
	if err := checkID("peered network", s.ID); err != nil {
		return err
	}
	if s.ID == network {
		return fmt.Errorf("fabric: network %s: peered with itself: %w", network, ErrInvalid)
	}
	if !s.Gateway.Is4() {
		return fmt.Errorf("fabric: network %s: peer %s: want an IPv4 gateway: %w", network, s.ID, ErrInvalid)
	}
	if len(s.Back) > 0 && !s.BackGateway.Is4() {
		return fmt.Errorf("fabric: network %s: peer %s: want an IPv4 back gateway with a back space: %w", network, s.ID, ErrInvalid)
	}
	for _, p := range slices.Concat(s.Space, s.Back) {
		if !p.IsValid() || !p.Addr().Is4() || p != p.Masked() {
			return fmt.Errorf("fabric: network %s: peer %s: prefix %s: want a masked IPv4 prefix: %w", network, s.ID, p, ErrInvalid)
		}
	}
	return nil
}

// ensurePeers converges router's peering links to spec.Peers: a pair per
// peer whose router exists (a peer whose router is not there yet is left
// to the peer's own Ensure, which makes the same pair), its routes, and
// no other peering link.
func (f *Fabric) ensurePeers(router *nsRef, spec NetworkSpec) (linked []string, err error) {
	for _, p := range spec.Peers {
		if err := p.validate(spec.ID); err != nil {
			return nil, err
		}
	}
	// The filter first: no new link lets in what it should not.
	if err := f.convergeTable(router, peerTable(spec.Peers)).err; err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, p := range spec.Peers {
		name := PeerLinkName(p.ID)
		want[name] = true
		made, err := f.ensurePeer(router, spec.ID, p)
		if err != nil {
			return nil, fmt.Errorf("peer %s: %w", p.ID, err)
		}
		if made {
			linked = append(linked, p.ID)
		}
	}
	links, err := linkList(router.h)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: list links: %w", router.name, err)
	}
	for _, l := range links {
		name := l.Attrs().Name
		if strings.HasPrefix(name, peerLinkTag) && !want[name] {
			if err := f.removePeer(router, spec.ID, l); err != nil {
				return nil, err
			}
		}
	}
	return linked, nil
}

// peerEnd is one end of a peering pair: its router, its link and the
// space its routes lead to (the other network's).
type peerEnd struct {
	r     *nsRef
	l     netlink.Link
	space []netip.Prefix
}

// across tells whether a flow of this end's router crosses the link: one
// of its addresses is in the space beyond it.
func (e peerEnd) across(fl Flow) bool {
	return inPrefixes(e.space, fl.Client.Addr()) || inPrefixes(e.space, fl.Target.Addr())
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// removePeer takes down the peering link l of router (network's) and cuts
// the sessions across it, in both routers, as a revoked translation's are:
// the conntrack entries of the flows that cross (translated ones toward an
// endpoint and those between NICs) go first, then the pair (both ends),
// and then each router probes the ends of those flows on its own side
// (tickleEnds): each end's challenge ACK finds no flow and no route
// beyond (the unrouted chain resets it) or the service guard (which
// resets it), so a session blocked in a read learns at once.
func (f *Fabric) removePeer(router *nsRef, network string, l netlink.Link) error {
	name := l.Attrs().Name
	ends := []peerEnd{{r: router, l: l}}
	if peer, ok := strings.CutPrefix(l.Attrs().Alias, peerAliasPrefix); ok && checkID("peered network", peer) == nil {
		other, err := f.open(f.NamespaceName(KindNetwork, peer), nil)
		switch {
		case err == nil:
			defer other.close()
			ol, err := linkByName(other, PeerLinkName(network))
			if err != nil {
				return err
			}
			if ol != nil {
				ends = append(ends, peerEnd{r: other, l: ol})
			}
		case !errors.Is(err, ErrNotFound) && !errors.Is(err, errStaleFile):
			return err
		}
	}
	var errs []error
	cut := make([][]Flow, len(ends))
	for i := range ends {
		e := &ends[i]
		routes, err := routeList(e.r.h, &netlink.Route{LinkIndex: e.l.Attrs().Index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("namespace %s: routes of %s: %w", e.r.name, e.l.Attrs().Name, err)
		}
		for _, rt := range routes {
			if rt.Dst != nil {
				if p, ok := netip.AddrFromSlice(rt.Dst.IP.To4()); ok {
					ones, _ := rt.Dst.Mask.Size()
					e.space = append(e.space, netip.PrefixFrom(p, ones))
				}
			}
		}
		flows, err := f.dropWhere(e.r, e.across)
		cut[i] = flows
		errs = append(errs, err)
	}
	if err := router.h.LinkDel(l); err != nil && !isNotExist(err) {
		return fmt.Errorf("namespace %s: delete peering link %s: %w", router.name, name, err)
	}
	n := 0
	for i, e := range ends {
		tcp := slices.DeleteFunc(cut[i], func(fl Flow) bool { return fl.Protocol != policy.TCP })
		n += len(tcp)
		if len(tcp) > 0 {
			reach := func(a netip.Addr) bool { return !inPrefixes(e.space, a) }
			errs = append(errs, tickleEnds(e.r, tcp, reach))
			f.probeAgain(e.r.name, tcp, reach)
		}
	}
	f.log.Info("removed peering link", "network", network, "link", name, "flows_cut", n)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("peering link %s: cut its flows: %w", name, err)
	}
	return nil
}

// probeAgainAfter is when removePeer probes the ends of the flows it cut a
// second time. A socket answers at most one challenge ACK per
// net.ipv4.tcp_invalid_ratelimit (500 ms by default): an end that had
// just answered another probe (another revocation's, in the same instant)
// stays silent at the first one, and answers this one, which the router
// resets as the first would have been.
const probeAgainAfter = 600 * time.Millisecond

// probeAgain probes, after probeAgainAfter, the ends of flows that reach
// reports true for, from namespace ns (if it is still there). A probe to
// an end already reset meets no socket and is answered with a reset of
// its own, which goes nowhere.
func (f *Fabric) probeAgain(ns string, flows []Flow, reach func(netip.Addr) bool) {
	time.AfterFunc(probeAgainAfter, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		r, err := f.open(ns, nil)
		if err != nil {
			return // gone with its flows
		}
		defer r.close()
		if err := tickleEnds(r, flows, reach); err != nil {
			f.log.Debug("probing the ends of a removed peering's flows again", "ns", ns, "err", err)
		}
	})
}

// ensurePeer converges the pair toward p and this end's routes; made says
// whether it created the pair.
func (f *Fabric) ensurePeer(router *nsRef, network string, p PeerSpec) (made bool, err error) {
	other, err := f.open(f.NamespaceName(KindNetwork, p.ID), nil)
	if errors.Is(err, ErrNotFound) || errors.Is(err, errStaleFile) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer other.close()
	aName, bName := PeerLinkName(p.ID), PeerLinkName(network)
	la, lb, replaced, err := ensureVethPair(router, aName, other, bName, nil)
	if err != nil {
		return false, err
	}
	if replaced {
		f.log.Info("peered networks", "network", network, "peer", p.ID, "link", aName)
	}
	for _, end := range []struct {
		r     *nsRef
		l     netlink.Link
		alias string
	}{{router, la, peerAliasPrefix + p.ID}, {other, lb, peerAliasPrefix + network}} {
		if err := ensureAlias(end.r, end.l, end.alias); err != nil {
			return false, err
		}
		if err := ensureUp(end.r, end.l); err != nil {
			return false, err
		}
	}
	// Nothing is routed over the pair before both ends are up and know
	// each other's hardware address: a packet sent earlier is lost, and
	// a lost SYN costs its client a second.
	if err := waitLinks(f, router, aName, other, bName); err != nil {
		return false, err
	}
	// The gateway as a static neighbour: no ARP across the pair (a
	// request would carry a source address both routers hold, such as
	// 168.63.129.16, which the kernel drops as spoofed).
	if err := ensureStaticNeighbors(router, la, []netip.Addr{p.Gateway}, lb.Attrs().HardwareAddr); err != nil {
		return false, err
	}
	if replaced && len(p.Back) > 0 && p.BackGateway.Is4() {
		// The peer's end, as its own Ensure will route it, before this
		// end: replies have their way back before the first request.
		if err := ensureStaticNeighbors(other, lb, []netip.Addr{p.BackGateway}, la.Attrs().HardwareAddr); err != nil {
			return false, err
		}
		if err := ensureLinkRoutes(other, lb, peerRoutes(lb, p.Back, p.BackGateway)); err != nil {
			return false, err
		}
	}
	if err := ensureLinkRoutes(router, la, peerRoutes(la, p.Space, p.Gateway)); err != nil {
		return false, err
	}
	return replaced, nil
}

// peerRoutes are the routes of a peering link: each prefix of the peer's
// space via its gateway, on-link.
func peerRoutes(l netlink.Link, space []netip.Prefix, gw netip.Addr) []netlink.Route {
	var out []netlink.Route
	for _, d := range space {
		out = append(out, netlink.Route{
			LinkIndex: l.Attrs().Index,
			Dst:       &net.IPNet{IP: d.Addr().AsSlice(), Mask: net.CIDRMask(d.Bits(), 32)},
			Gw:        gw.AsSlice(),
			Flags:     int(netlink.FLAG_ONLINK),
			Protocol:  unix.RTPROT_STATIC,
			Table:     unix.RT_TABLE_MAIN,
		})
	}
	return out
}
