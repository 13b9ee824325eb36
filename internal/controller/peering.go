package controller

import (
	"net/netip"
	"strings"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/provider/network"
)

// Virtual network peering on the data path. The network controller puts a
// network's peerings into its router's NetworkSpec (Peers): a peering
// that is Connected and allows virtual network access on both sides
// becomes a PeerSpec toward the remote network (its synced address space,
// routed via the remote router's gateway), and the fabric keeps a veth
// pair between the two routers exactly while both sides want it. A
// peering deleted, Disconnected or with access turned off on either side
// drops out of both specs; the first router to converge without it takes
// the pair down and cuts the sessions across it (fabric.removePeer).
// Both networks are reconciled on every change of a peering document
// (items), and a router whose pair was (re)made, or whose gateway moved,
// has its peers reconciled too (enqueuePeers), since their ends' routes
// are theirs to write.

// peersOf returns the PeerSpecs of network vnet: its Connected peerings
// that allow virtual network access on both sides, toward a network with
// at least one subnet (whose gateway the routes lead to), and the ARM IDs
// of those networks by fabric ID. own are vnet's subnet prefixes: the
// peer routes vnet's space to the gateway of the first (Back).
func peersOf(rd arm.Reader, vnet arm.ResourceID, own []netip.Prefix) ([]fabric.PeerSpec, map[string]arm.ResourceID, error) {
	peers, err := network.ConnectedPeers(rd, vnet)
	if err != nil {
		return nil, nil, err
	}
	back, _ := peerGateway(own)
	var out []fabric.PeerSpec
	ids := map[string]arm.ResourceID{}
	for _, p := range peers {
		if !p.Access {
			continue
		}
		prefixes, err := network.NetworkPrefixes(rd, p.Remote)
		if err != nil {
			return nil, nil, err
		}
		gw, ok := peerGateway(prefixes)
		if !ok {
			continue // no subnet yet: nothing to reach there
		}
		spec := fabric.PeerSpec{ID: FabricID(p.Remote), Space: p.Space, Gateway: gw, Forwarded: p.Forwarded}
		if back.IsValid() {
			spec.Back, spec.BackGateway = p.Back, back
		}
		ids[spec.ID] = p.Remote
		out = append(out, spec)
	}
	return out, ids, nil
}

// peerGateway is the address peers route a network's space to: the
// gateway of its first subnet, which its router holds on lo.
func peerGateway(prefixes []netip.Prefix) (netip.Addr, bool) {
	if len(prefixes) == 0 {
		return netip.Addr{}, false
	}
	return fabric.SubnetGateway(prefixes[0]), true
}

// enqueuePeers asks for the peers of network vnet to be reconciled when
// their side needs it: the fabric (re)made the pair toward them (linked:
// their end has no routes yet), or vnet's gateway changed since its last
// reconcile (their routes lead to the old one).
func (n *Network) enqueuePeers(vnet arm.ResourceID, prefixes []netip.Prefix, peers []fabric.PeerSpec, ids map[string]arm.ResourceID, linked []string) {
	gw, _ := peerGateway(prefixes)
	key := lkey(vnet)
	moved := n.gateways[key] != gw
	n.gateways[key] = gw
	again := map[string]bool{}
	for _, id := range linked {
		again[id] = true
	}
	for _, p := range peers {
		if moved || again[p.ID] {
			n.loop.Enqueue(itemNetwork + ids[p.ID].String())
		}
	}
}

func lkey(id arm.ResourceID) string { return strings.ToLower(id.String()) }
