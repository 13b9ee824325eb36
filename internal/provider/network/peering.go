package network

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Virtual network peering (Microsoft.Network/virtualNetworks/
// virtualNetworkPeerings): a child document of the local network naming
// the remote one. What Azure reports is derived at read time from both
// sides' documents, so it never goes stale:
//
//   - peeringState: Connected while the remote network holds a peering
//     back to this one; Initiated while it does not and never did;
//     Disconnected once it did and no longer does (the remote peering or
//     network went): as in Azure, a Disconnected peering stays so and must
//     be deleted and created again. The stored document records
//     "Connected" once both sides existed, which is what tells Initiated
//     from Disconnected.
//   - remoteAddressSpace is the remote network's space as of the last
//     creation or sync (PUT ?syncRemoteAddressSpace=true), and is what
//     routes use; remoteVirtualNetworkAddressSpace is the remote's space
//     now. peeringSyncLevel compares them, each way.
const typePeering = "Microsoft.Network/virtualNetworks/virtualNetworkPeerings"

// PeerAction is the action Azure checks on the remote network of a
// peering (Microsoft.Network/virtualNetworks/peer/action, in the Network
// Contributor role; see Azure's "Create, change, or delete a virtual
// network peering" permissions table).
const PeerAction = "Microsoft.Network/virtualNetworks/peer/action"

// Azure's codes for peering. VnetAddressSpaceOverlapsWithAlreadyPeeredVnet
// is quoted in Azure/ResourceModules #731 and microsoft/AzureTRE #1927;
// VnetAddressSpacesOverlap, RemotePeeringIsDisconnected and
// RemoteVnetHasNoGateways are the names Azure's peering errors use in its
// troubleshooting guide (troubleshoot-vnet-peering-issues); the others
// are by analogy.
const (
	codePeerOverlap        = "VnetAddressSpacesOverlap"
	codePeerOverlapPeered  = "VnetAddressSpaceOverlapsWithAlreadyPeeredVnet"
	codeRemoteDisconnected = "RemotePeeringIsDisconnected"
	codeRemoteNoGateways   = "RemoteVnetHasNoGateways"
	codeRemoteVnetNotFound = "ReferencedResourceNotProvisioned"  // by analogy: the remote network does not exist
	codePeerSelf           = "CannotPeerVirtualNetworkToItself"  // by analogy
	codePeerDuplicate      = "PeeringAlreadyExistsForRemoteVnet" // by analogy
	codePeerImmutable      = "PeeringRemoteVirtualNetworkCannotBeChanged"
)

var peeringLinks = []arm.Link{
	{Path: "properties.remoteVirtualNetwork.id", Type: typeVNet, Action: PeerAction},
}

func (p *Provider) peeringTypes() []*arm.ResourceType {
	return []*arm.ResourceType{{Type: typePeering, APIVersions: Versions.All(),
		Get: p.getPeering, List: p.listPeerings, Put: p.putPeering, Delete: p.deleteChild, Links: peeringLinks}}
}

// peerRef is a stored peering with its parsed ends.
type peerRef struct {
	doc    armnetwork.VirtualNetworkPeering
	local  arm.ResourceID // the network holding it
	remote arm.ResourceID
}

func remoteOf(doc *armnetwork.VirtualNetworkPeering) string {
	if doc.Properties == nil || doc.Properties.RemoteVirtualNetwork == nil {
		return ""
	}
	return str(doc.Properties.RemoteVirtualNetwork.ID)
}

// loadPeerings returns the peerings of network vnet.
func loadPeerings(r arm.Reader, vnet arm.ResourceID) ([]peerRef, error) {
	docs, err := arm.LoadAll[armnetwork.VirtualNetworkPeering](r, vnet.ChildCollection("virtualNetworkPeerings"))
	if err != nil {
		return nil, fmt.Errorf("peerings of %s: %w", vnet, err)
	}
	out := make([]peerRef, 0, len(docs))
	for _, d := range docs {
		rid, err := arm.ParseID(remoteOf(&d))
		if err != nil {
			return nil, fmt.Errorf("peering %s: bad remote network: %w", str(d.ID), err)
		}
		out = append(out, peerRef{doc: d, local: vnet, remote: rid})
	}
	return out, nil
}

// peeringTo returns vnet's peering to remote, if any.
func peeringTo(r arm.Reader, vnet, remote arm.ResourceID) (*peerRef, error) {
	all, err := loadPeerings(r, vnet)
	if err != nil {
		return nil, err
	}
	for i := range all {
		if lkey(all[i].remote.String()) == lkey(remote.String()) {
			return &all[i], nil
		}
	}
	return nil, nil
}

// loadVNetSpace loads network id's address space; ok is false when the
// network does not exist.
func loadVNetSpace(r arm.Reader, id arm.ResourceID) (space []netip.Prefix, ok bool, err error) {
	var v armnetwork.VirtualNetwork
	if ok, err = arm.Load(r, id, &v); err != nil || !ok {
		return nil, ok, err
	}
	space, err = storedSpace(&v)
	return space, true, err
}

// peeringState derives what a stored peering reports now (see typePeering).
func peeringState(r arm.Reader, pr *peerRef) (armnetwork.VirtualNetworkPeeringState, error) {
	back, err := peeringTo(r, pr.remote, pr.local)
	if err != nil {
		return "", err
	}
	connectedOnce := pr.doc.Properties != nil && pr.doc.Properties.PeeringState != nil &&
		*pr.doc.Properties.PeeringState == armnetwork.VirtualNetworkPeeringStateConnected
	switch {
	case back != nil && connectedOnce:
		return armnetwork.VirtualNetworkPeeringStateConnected, nil
	case connectedOnce || back != nil:
		// back != nil while this side was never connected cannot be
		// written (the second side's PUT connects both); Disconnected is
		// the safe reading.
		return armnetwork.VirtualNetworkPeeringStateDisconnected, nil
	}
	return armnetwork.VirtualNetworkPeeringStateInitiated, nil
}

// peeringView is what a GET of a stored peering returns.
func peeringView(r arm.Reader, pr peerRef) (armnetwork.VirtualNetworkPeering, error) {
	v := pr.doc
	props := armnetwork.VirtualNetworkPeeringPropertiesFormat{}
	if v.Properties != nil {
		props = *v.Properties
	}
	v.Properties = &props
	state, err := peeringState(r, &pr)
	if err != nil {
		return v, err
	}
	props.PeeringState = ptr(state)
	localSpace, _, err := loadVNetSpace(r, pr.local)
	if err != nil {
		return v, err
	}
	remoteSpace, remoteOK, err := loadVNetSpace(r, pr.remote)
	if err != nil {
		return v, err
	}
	props.LocalAddressSpace = &armnetwork.AddressSpace{AddressPrefixes: prefixStrings(localSpace)}
	props.LocalVirtualNetworkAddressSpace = props.LocalAddressSpace
	if remoteOK {
		props.RemoteVirtualNetworkAddressSpace = &armnetwork.AddressSpace{AddressPrefixes: prefixStrings(remoteSpace)}
	}
	level := armnetwork.VirtualNetworkPeeringLevelFullyInSync
	if state == armnetwork.VirtualNetworkPeeringStateConnected {
		back, err := peeringTo(r, pr.remote, pr.local)
		if err != nil {
			return v, err
		}
		localStale := !samePrefixes(addressSpaceOf(props.RemoteAddressSpace), remoteSpace)
		remoteStale := back != nil && !samePrefixes(addressSpaceOf(back.doc.Properties.RemoteAddressSpace), localSpace)
		switch {
		case localStale && remoteStale:
			level = armnetwork.VirtualNetworkPeeringLevelLocalAndRemoteNotInSync
		case localStale:
			level = armnetwork.VirtualNetworkPeeringLevelLocalNotInSync
		case remoteStale:
			level = armnetwork.VirtualNetworkPeeringLevelRemoteNotInSync
		}
	}
	props.PeeringSyncLevel = ptr(level)
	return v, nil
}

// addressSpaceOf parses a stored address space (bad entries skipped: the
// handler wrote them canonical).
func addressSpaceOf(a *armnetwork.AddressSpace) []netip.Prefix {
	if a == nil {
		return nil
	}
	var out []netip.Prefix
	for _, s := range a.AddressPrefixes {
		if p, err := netip.ParsePrefix(strings.TrimSpace(str(s))); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

func samePrefixes(a, b []netip.Prefix) bool {
	key := func(ps []netip.Prefix) []string {
		out := make([]string, len(ps))
		for i, p := range ps {
			out[i] = p.String()
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}

// overlapOf returns the first prefix of a that overlaps one of b.
func overlapOf(a, b []netip.Prefix) (netip.Prefix, bool) {
	for _, p := range a {
		for _, q := range b {
			if p.Overlaps(q) {
				if p.Bits() > q.Bits() {
					return p, true
				}
				return q, true
			}
		}
	}
	return netip.Prefix{}, false
}

func (p *Provider) getPeering(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	rd := arm.ReadOnly(ctx, p.st)
	var doc armnetwork.VirtualNetworkPeering
	ok, err := arm.Load(rd, r.ID, &doc)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errChildNotFound(r.ID)
	}
	rid, err := arm.ParseID(remoteOf(&doc))
	if err != nil {
		return nil, fmt.Errorf("peering %s: %w", r.ID, err)
	}
	v, err := peeringView(rd, peerRef{doc: doc, local: r.ID.Parent(), remote: rid})
	if err != nil {
		return nil, err
	}
	return arm.OK(v), nil
}

func (p *Provider) listPeerings(ctx context.Context, r *arm.Request) ([]any, error) {
	rd := arm.ReadOnly(ctx, p.st)
	vnet := r.ID.Parent()
	if err := loadParent(rd, vnet, &armnetwork.VirtualNetwork{}); err != nil {
		return nil, err
	}
	views, err := peeringViews(rd, vnet)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(views))
	for i := range views {
		out[i] = views[i]
	}
	return out, nil
}

// peeringViews returns the views of vnet's peerings, for the VNet's
// inline properties.virtualNetworkPeerings and the list.
func peeringViews(r arm.Reader, vnet arm.ResourceID) ([]*armnetwork.VirtualNetworkPeering, error) {
	all, err := loadPeerings(r, vnet)
	if err != nil {
		return nil, err
	}
	out := []*armnetwork.VirtualNetworkPeering{}
	for _, pr := range all {
		v, err := peeringView(r, pr)
		if err != nil {
			return nil, err
		}
		out = append(out, &v)
	}
	return out, nil
}

// peeringSpec is a validated peering PUT body.
type peeringSpec struct {
	in     armnetwork.VirtualNetworkPeering
	remote arm.ResourceID
	sync   bool
}

func decodePeering(r *arm.Request) (*peeringSpec, error) {
	s := &peeringSpec{}
	if err := r.Decode(&s.in); err != nil {
		return nil, err
	}
	if err := arm.ValidateNetworkName("virtual network peering", r.ID.Name()); err != nil {
		return nil, err
	}
	const target = "properties.remoteVirtualNetwork.id"
	props := s.in.Properties
	if props == nil || props.RemoteVirtualNetwork == nil || strings.TrimSpace(str(props.RemoteVirtualNetwork.ID)) == "" {
		return nil, errMissing(target, "The remote virtual network")
	}
	raw := strings.TrimSpace(*props.RemoteVirtualNetwork.ID)
	id, err := arm.ParseID(raw)
	if err != nil || id.Scope != nil || id.IsCollection() || len(id.Names) != 1 || id.ResourceGroup == "" || !strings.EqualFold(id.Type(), typeVNet) {
		return nil, errLinkedID(target, raw, typeVNet)
	}
	s.remote = id
	switch q := strings.ToLower(r.HTTP.URL.Query().Get("syncRemoteAddressSpace")); q {
	case "", "false":
	case "true":
		s.sync = true
	default:
		return nil, errInvalid("syncRemoteAddressSpace", "The query parameter syncRemoteAddressSpace is '%s'; it takes true or false.", q)
	}
	if boolOr(props.EnableOnlyIPv6Peering, false) {
		return nil, errUnsupported("properties.enableOnlyIPv6Peering", "privlink's networks are IPv4; remove enableOnlyIPv6Peering.")
	}
	if !boolOr(props.PeerCompleteVnets, true) || len(props.LocalSubnetNames) > 0 || len(props.RemoteSubnetNames) > 0 {
		return nil, errUnsupported("properties.peerCompleteVnets", "privlink peers complete networks only; remove peerCompleteVnets, localSubnetNames and remoteSubnetNames.")
	}
	return s, nil
}

func (p *Provider) putPeering(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	spec, err := decodePeering(r)
	if err != nil {
		return nil, err
	}
	var (
		body    armnetwork.VirtualNetworkPeering
		op      *arm.Operation
		created bool
	)
	_, err = p.st.Txn(ctx, func(tx store.Tx) error {
		vnetID := r.ID.Parent()
		var vnet armnetwork.VirtualNetwork
		if err := loadParent(tx, vnetID, &vnet); err != nil {
			return err
		}
		local, err := arm.ParseID(str(vnet.ID))
		if err != nil {
			return err
		}
		var cur armnetwork.VirtualNetworkPeering
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, str(cur.Etag)); err != nil {
			return err
		}
		created = !exists
		doc, remote, err := p.buildPeering(tx, r.ID, local, &vnet, spec, exists, &cur)
		if err != nil {
			return err
		}
		if err := arm.Save(tx, r.ID, doc); err != nil {
			return err
		}
		if err := touch(tx, vnetID); err != nil {
			return err
		}
		if remote != nil {
			// The remote side exists: both are Connected now.
			remote.doc.Properties.PeeringState = ptr(armnetwork.VirtualNetworkPeeringStateConnected)
			remote.doc.Etag = ptr(arm.NewETag())
			rid, err := arm.ParseID(str(remote.doc.ID))
			if err != nil {
				return err
			}
			if err := arm.Save(tx, rid, &remote.doc); err != nil {
				return err
			}
			if err := touch(tx, remote.local); err != nil {
				return err
			}
		}
		if body, err = peeringView(tx, peerRef{doc: *doc, local: local, remote: spec.remote}); err != nil {
			return err
		}
		_, done := p.settle(r.ID, false)
		op, err = arm.StartOperation(tx, r.ID, str(vnet.Location), done)
		return err
	})
	if err != nil {
		return nil, err
	}
	return accepted(created, body, op), nil
}

// buildPeering checks a peering PUT against both networks and returns the
// document to store and, when this write connects the pair, the remote
// side's peering (to be marked Connected).
func (p *Provider) buildPeering(tx store.Tx, id, local arm.ResourceID, vnet *armnetwork.VirtualNetwork, spec *peeringSpec, exists bool, cur *armnetwork.VirtualNetworkPeering) (*armnetwork.VirtualNetworkPeering, *peerRef, error) {
	const target = "properties.remoteVirtualNetwork.id"
	in := spec.in.Properties
	if lkey(spec.remote.String()) == lkey(local.String()) {
		return nil, nil, badRequest(codePeerSelf, target, "Virtual network %s cannot be peered with itself. Name another virtual network in %s.", local, target)
	}
	if exists && lkey(remoteOf(cur)) != lkey(spec.remote.String()) {
		return nil, nil, badRequest(codePeerImmutable, target,
			"The remote virtual network of peering %s is %s and cannot be changed to %s. Delete the peering and create a new one.", id, remoteOf(cur), spec.remote)
	}
	var remoteVNet armnetwork.VirtualNetwork
	ok, err := arm.Load(tx, spec.remote, &remoteVNet)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, badRequest(codeRemoteVnetNotFound, target,
			"Cannot create or update peering %s because the remote virtual network %s does not exist. Create it first or correct %s.", id, spec.remote, target)
	}
	remote, err := arm.ParseID(str(remoteVNet.ID))
	if err != nil {
		return nil, nil, err
	}
	localSpace, err := storedSpace(vnet)
	if err != nil {
		return nil, nil, err
	}
	remoteSpace, err := storedSpace(&remoteVNet)
	if err != nil {
		return nil, nil, err
	}
	mine, err := loadPeerings(tx, local)
	if err != nil {
		return nil, nil, err
	}
	for _, o := range mine {
		if lkey(o.remote.String()) == lkey(remote.String()) && !strings.EqualFold(str(o.doc.Name), id.Name()) {
			return nil, nil, badRequest(codePeerDuplicate, target,
				"Cannot create peering %s: virtual network %s already has peering %s with %s. Update that peering instead.", id, local, str(o.doc.ID), remote)
		}
	}
	if err := checkPeerOverlap(tx, id, local, localSpace, remote, remoteSpace, mine); err != nil {
		return nil, nil, err
	}
	if boolOr(in.UseRemoteGateways, false) {
		// No virtual network gateways are served yet: no remote network
		// has one.
		return nil, nil, badRequest(codeRemoteNoGateways, "properties.useRemoteGateways",
			"Cannot create or update peering %s: useRemoteGateways is true but remote virtual network %s has no gateway. Set useRemoteGateways to false.", id, remote)
	}
	back, err := peeringTo(tx, remote, local)
	if err != nil {
		return nil, nil, err
	}
	var connect *peerRef
	state := armnetwork.VirtualNetworkPeeringStateInitiated
	if exists && cur.Properties != nil && cur.Properties.PeeringState != nil {
		state = *cur.Properties.PeeringState
	}
	if back != nil {
		backState, err := peeringState(tx, back)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case backState == armnetwork.VirtualNetworkPeeringStateDisconnected && !exists:
			return nil, nil, badRequest(codeRemoteDisconnected, target,
				"Cannot create or update peering %s because remote peering %s referencing parent virtual network %s is in Disconnected state. Delete and re-create the remote peering; a peering becomes Disconnected when the other side is deleted.",
				id, str(back.doc.ID), local)
		case backState == armnetwork.VirtualNetworkPeeringStateInitiated:
			state = armnetwork.VirtualNetworkPeeringStateConnected
			connect = back
		}
	}
	var synced []netip.Prefix
	if exists && cur.Properties != nil {
		synced = addressSpaceOf(cur.Properties.RemoteAddressSpace)
	}
	if !exists || spec.sync {
		synced = remoteSpace
	}
	doc := &armnetwork.VirtualNetworkPeering{
		ID: ptr(local.Child("virtualNetworkPeerings", id.Name()).String()), Name: ptr(id.Name()), Type: ptr(typePeering),
		Etag: ptr(arm.NewETag()),
		Properties: &armnetwork.VirtualNetworkPeeringPropertiesFormat{
			AllowVirtualNetworkAccess: ptr(boolOr(in.AllowVirtualNetworkAccess, true)),
			AllowForwardedTraffic:     ptr(boolOr(in.AllowForwardedTraffic, false)),
			AllowGatewayTransit:       ptr(boolOr(in.AllowGatewayTransit, false)),
			UseRemoteGateways:         ptr(false),
			DoNotVerifyRemoteGateways: ptr(boolOr(in.DoNotVerifyRemoteGateways, false)),
			PeerCompleteVnets:         ptr(true),
			RemoteVirtualNetwork:      &armnetwork.SubResource{ID: ptr(remote.String())},
			RemoteAddressSpace:        &armnetwork.AddressSpace{AddressPrefixes: prefixStrings(synced)},
			PeeringState:              ptr(state),
			ProvisioningState:         ptr(armnetwork.ProvisioningStateSucceeded),
			ResourceGUID:              newGUID(),
		},
	}
	if exists && cur.Properties != nil && cur.Properties.ResourceGUID != nil {
		doc.Properties.ResourceGUID = cur.Properties.ResourceGUID
	}
	if exists {
		doc.ID, doc.Name = cur.ID, cur.Name
	}
	return doc, connect, nil
}

// checkPeerOverlap refuses a peering whose networks' spaces overlap, or
// whose local space overlaps a network already peered with the remote
// (and the other way round), as Azure does.
func checkPeerOverlap(r arm.Reader, id, local arm.ResourceID, localSpace []netip.Prefix, remote arm.ResourceID, remoteSpace []netip.Prefix, mine []peerRef) error {
	const target = "properties.remoteVirtualNetwork.id"
	if o, bad := overlapOf(localSpace, remoteSpace); bad {
		return badRequest(codePeerOverlap, target,
			"Cannot create or update peering %s because address space of virtual network %s (%s) overlaps with address space of remote virtual network %s (%s). Overlapping address prefixes: %s. Peered networks need disjoint address spaces.",
			id, local, formatPrefixes(localSpace), remote, formatPrefixes(remoteSpace), o)
	}
	theirs, err := loadPeerings(r, remote)
	if err != nil {
		return err
	}
	check := func(first arm.ResourceID, firstSpace []netip.Prefix, second arm.ResourceID, others []peerRef) error {
		for _, o := range others {
			if lkey(o.remote.String()) == lkey(first.String()) {
				continue
			}
			space, _, err := loadVNetSpace(r, o.remote)
			if err != nil {
				return err
			}
			if x, bad := overlapOf(firstSpace, space); bad {
				return badRequest(codePeerOverlapPeered, target,
					"Cannot create or update peering %s. Virtual networks %s and %s cannot be peered because address space of the first virtual network overlaps with address space of virtual network %s already peered with the second virtual network. Overlapping address prefixes: %s.",
					id, first, second, o.remote, x)
			}
		}
		return nil
	}
	if err := check(local, localSpace, remote, theirs); err != nil {
		return err
	}
	return check(remote, remoteSpace, local, mine)
}

// Peer is one Connected peering of a network, as the data path and the
// policy model use it.
type Peer struct {
	// Remote is the peered network.
	Remote arm.ResourceID
	// Space is the remote's address space as synced
	// (properties.remoteAddressSpace): what routes lead to.
	Space []netip.Prefix
	// Access is true when both sides allow virtual network access:
	// only then does traffic cross.
	Access bool
	// Forwarded is this side's allowForwardedTraffic.
	Forwarded bool
	// Back is this network's space as the remote side synced it (the
	// remote peering's remoteAddressSpace): what the remote routes here.
	Back []netip.Prefix
}

// PeeringEnds returns the network holding a stored peering document and
// the remote network it names (ok false when the key is not a peering's
// or the document names no remote that parses); a controller reads a
// peering's ends through it rather than decoding the document.
func PeeringEnds(kv store.KV) (local, remote arm.ResourceID, ok bool) {
	id, isDoc := arm.ParseDocKey(kv.Key)
	if !isDoc || !strings.EqualFold(id.Type(), typePeering) {
		return arm.ResourceID{}, arm.ResourceID{}, false
	}
	var doc armnetwork.VirtualNetworkPeering
	if json.Unmarshal(kv.Value, &doc) != nil {
		return arm.ResourceID{}, arm.ResourceID{}, false
	}
	remote, err := arm.ParseID(remoteOf(&doc))
	if err != nil {
		return arm.ResourceID{}, arm.ResourceID{}, false
	}
	return id.Parent(), remote, true
}

// ConnectedPeers returns network vnet's Connected peerings.
func ConnectedPeers(r arm.Reader, vnet arm.ResourceID) ([]Peer, error) {
	all, err := loadPeerings(r, vnet)
	if err != nil {
		return nil, err
	}
	var out []Peer
	for i := range all {
		pr := &all[i]
		state, err := peeringState(r, pr)
		if err != nil {
			return nil, err
		}
		if state != armnetwork.VirtualNetworkPeeringStateConnected {
			continue
		}
		back, err := peeringTo(r, pr.remote, pr.local)
		if err != nil || back == nil {
			return nil, err
		}
		out = append(out, Peer{
			Remote:    pr.remote,
			Space:     v4(addressSpaceOf(pr.doc.Properties.RemoteAddressSpace)),
			Access:    boolOr(pr.doc.Properties.AllowVirtualNetworkAccess, true) && boolOr(back.doc.Properties.AllowVirtualNetworkAccess, true),
			Forwarded: boolOr(pr.doc.Properties.AllowForwardedTraffic, false),
			Back:      v4(addressSpaceOf(back.doc.Properties.RemoteAddressSpace)),
		})
	}
	return out, nil
}

// errPeeringsInline answers a VNet PUT whose inline
// properties.virtualNetworkPeerings names a peering that does not exist:
// peerings are written as child resources.
func errPeeringsInline(i int, name string) error {
	return arm.Errorf(http.StatusBadRequest, codeUnsupportedInPrivlink,
		"properties.virtualNetworkPeerings[%d] names peering '%s', which does not exist; privlink creates peerings as child resources (virtualNetworkPeerings), not inline in the virtual network. Create it with PUT .../virtualNetworkPeerings/%s.", i, name, name).
		WithTarget(arm.Field("properties.virtualNetworkPeerings", i))
}

// checkVNetPeerings checks a VNet PUT against the network's peerings:
// inline properties.virtualNetworkPeerings may only name existing ones
// (they are kept as they are: a GET-modify-PUT round trip carries them),
// and a new address space must not overlap a peered network's.
func checkVNetPeerings(r arm.Reader, id arm.ResourceID, spec *vnetSpec) error {
	peers, err := loadPeerings(r, id)
	if err != nil {
		return err
	}
	names := map[string]bool{}
	for _, pr := range peers {
		names[strings.ToLower(str(pr.doc.Name))] = true
	}
	for i, in := range spec.in.Properties.VirtualNetworkPeerings {
		if in == nil || !names[strings.ToLower(str(in.Name))] {
			name := ""
			if in != nil {
				name = str(in.Name)
			}
			return errPeeringsInline(i, name)
		}
	}
	for _, pr := range peers {
		space, _, err := loadVNetSpace(r, pr.remote)
		if err != nil {
			return err
		}
		if o, bad := overlapOf(spec.space, space); bad {
			return badRequest(codePeerOverlap, "properties.addressSpace.addressPrefixes",
				"The address space %s of virtual network %s overlaps with address space %s of virtual network %s, peered with it by %s. Overlapping address prefixes: %s. Keep peered networks' spaces disjoint.",
				formatPrefixes(spec.space), id.Name(), formatPrefixes(space), pr.remote, str(pr.doc.ID), o)
		}
	}
	return nil
}
