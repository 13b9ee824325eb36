package network

import (
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/testkit"
)

func (e *env) peerings() *armnetwork.VirtualNetworkPeeringsClient {
	f, err := armnetwork.NewClientFactory(sub, e.srv.Cred, e.srv.Options)
	if err != nil {
		e.t.Fatal(err)
	}
	return f.NewVirtualNetworkPeeringsClient()
}

func peeringBody(remote string) armnetwork.VirtualNetworkPeering {
	return armnetwork.VirtualNetworkPeering{Properties: &armnetwork.VirtualNetworkPeeringPropertiesFormat{
		RemoteVirtualNetwork: &armnetwork.SubResource{ID: to.Ptr(remote)},
	}}
}

func (e *env) putPeering(rg, vnet, name string, body armnetwork.VirtualNetworkPeering, sync bool) (armnetwork.VirtualNetworkPeering, error) {
	var opts *armnetwork.VirtualNetworkPeeringsClientBeginCreateOrUpdateOptions
	if sync {
		opts = &armnetwork.VirtualNetworkPeeringsClientBeginCreateOrUpdateOptions{SyncRemoteAddressSpace: to.Ptr(armnetwork.SyncRemoteAddressSpaceTrue)}
	}
	p, err := e.peerings().BeginCreateOrUpdate(e.ctx, rg, vnet, name, body, opts)
	if err != nil {
		return armnetwork.VirtualNetworkPeering{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.VirtualNetworkPeering, err
}

func (e *env) peeringState(rg, vnet, name string) (armnetwork.VirtualNetworkPeeringState, armnetwork.VirtualNetworkPeeringLevel) {
	e.t.Helper()
	g, err := e.peerings().Get(e.ctx, rg, vnet, name, nil)
	if err != nil {
		e.t.Fatalf("get peering %s/%s: %v", vnet, name, err)
	}
	return *g.Properties.PeeringState, *g.Properties.PeeringSyncLevel
}

func (e *env) deletePeering(rg, vnet, name string) {
	e.t.Helper()
	p, err := e.peerings().BeginDelete(e.ctx, rg, vnet, name, nil)
	if err == nil {
		_, err = p.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		e.t.Fatalf("delete peering %s/%s: %v", vnet, name, err)
	}
}

// TestPeeringStateMachine walks a pair of peerings through Initiated,
// Connected and Disconnected as the sides come and go, with the sync level
// following address space changes and the sync action.
func TestPeeringStateMachine(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.group("rg2")
	e.mustVNet("rg", "hub", vnetBody("10.0.0.0/16", "a=10.0.1.0/24"))
	spoke := vnetBody("10.1.0.0/16", "a=10.1.1.0/24")
	spoke.Location = to.Ptr("eastus") // global peering: another location
	e.mustVNet("rg2", "spoke", spoke)
	hubID, spokeID := resID("rg", "virtualNetworks", "hub"), resID("rg2", "virtualNetworks", "spoke")

	hs, err := e.putPeering("rg", "hub", "to-spoke", peeringBody(spokeID), false)
	if err != nil {
		t.Fatal(err)
	}
	if *hs.Properties.PeeringState != armnetwork.VirtualNetworkPeeringStateInitiated || str(hs.Type) != typePeering ||
		str(hs.ID) != hubID+"/virtualNetworkPeerings/to-spoke" || !*hs.Properties.AllowVirtualNetworkAccess || *hs.Properties.AllowForwardedTraffic {
		t.Fatalf("first side: %s %s %s", *hs.Properties.PeeringState, str(hs.Type), str(hs.ID))
	}
	if got := formatPrefixes(addressSpaceOf(hs.Properties.RemoteAddressSpace)); got != "10.1.0.0/16" {
		t.Errorf("remoteAddressSpace = %s", got)
	}
	peers, err := ConnectedPeers(arm.ReadOnly(e.ctx, e.st), mustID(t, hubID))
	if err != nil || len(peers) != 0 {
		t.Fatalf("Initiated peering counts as connected: %v %v", peers, err)
	}

	sh, err := e.putPeering("rg2", "spoke", "to-hub", peeringBody(hubID), false)
	if err != nil {
		t.Fatal(err)
	}
	if *sh.Properties.PeeringState != armnetwork.VirtualNetworkPeeringStateConnected {
		t.Fatalf("second side = %s", *sh.Properties.PeeringState)
	}
	if st, lvl := e.peeringState("rg", "hub", "to-spoke"); st != armnetwork.VirtualNetworkPeeringStateConnected || lvl != armnetwork.VirtualNetworkPeeringLevelFullyInSync {
		t.Fatalf("first side after the second = %s %s", st, lvl)
	}
	peers, err = ConnectedPeers(arm.ReadOnly(e.ctx, e.st), mustID(t, hubID))
	if err != nil || len(peers) != 1 || !peers[0].Access || formatPrefixes(peers[0].Space) != "10.1.0.0/16" {
		t.Fatalf("connected peers = %+v %v", peers, err)
	}
	// The VNet shows its peering inline, and a GET-modify-PUT round trip
	// keeps it.
	v, err := e.vnets.Get(e.ctx, "rg", "hub", nil)
	if err != nil || len(v.Properties.VirtualNetworkPeerings) != 1 || str(v.Properties.VirtualNetworkPeerings[0].Name) != "to-spoke" {
		t.Fatalf("inline peerings: %v", err)
	}
	v.Properties.AddressSpace.AddressPrefixes = append(v.Properties.AddressSpace.AddressPrefixes, to.Ptr("10.2.0.0/16"))
	if _, err := e.putVNet("rg", "hub", v.VirtualNetwork); err != nil {
		t.Fatalf("round trip: %v", err)
	}
	// The hub grew: the spoke's view of it is stale until synced.
	if _, lvl := e.peeringState("rg2", "spoke", "to-hub"); lvl != armnetwork.VirtualNetworkPeeringLevelLocalNotInSync {
		t.Errorf("spoke sync level = %s, want LocalNotInSync", lvl)
	}
	if _, lvl := e.peeringState("rg", "hub", "to-spoke"); lvl != armnetwork.VirtualNetworkPeeringLevelRemoteNotInSync {
		t.Errorf("hub sync level = %s, want RemoteNotInSync", lvl)
	}
	if _, err := e.putPeering("rg2", "spoke", "to-hub", peeringBody(hubID), true); err != nil {
		t.Fatal(err)
	}
	if st, lvl := e.peeringState("rg2", "spoke", "to-hub"); st != armnetwork.VirtualNetworkPeeringStateConnected || lvl != armnetwork.VirtualNetworkPeeringLevelFullyInSync {
		t.Errorf("after sync: %s %s", st, lvl)
	}
	// An inline peering that does not exist is refused.
	v2 := vnetBody("10.0.0.0/16", "a=10.0.1.0/24")
	v2.Properties.AddressSpace.AddressPrefixes = append(v2.Properties.AddressSpace.AddressPrefixes, to.Ptr("10.2.0.0/16"))
	v2.Properties.VirtualNetworkPeerings = []*armnetwork.VirtualNetworkPeering{{Name: to.Ptr("nope")}}
	_, err = e.putVNet("rg", "hub", v2)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codeUnsupportedInPrivlink), "properties.virtualNetworkPeerings[0]", "nope")

	// One side goes: the survivor is Disconnected, and stays so when the
	// other side comes back (which is refused until it is re-created).
	e.deletePeering("rg2", "spoke", "to-hub")
	if st, _ := e.peeringState("rg", "hub", "to-spoke"); st != armnetwork.VirtualNetworkPeeringStateDisconnected {
		t.Fatalf("survivor = %s, want Disconnected", st)
	}
	_, err = e.putPeering("rg2", "spoke", "to-hub", peeringBody(hubID), false)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codeRemoteDisconnected), "properties.remoteVirtualNetwork.id", "Disconnected")
	e.deletePeering("rg", "hub", "to-spoke")
	if _, err := e.putPeering("rg", "hub", "to-spoke", peeringBody(spokeID), false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.putPeering("rg2", "spoke", "to-hub", peeringBody(hubID), false); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.peeringState("rg", "hub", "to-spoke"); st != armnetwork.VirtualNetworkPeeringStateConnected {
		t.Fatalf("re-created pair = %s", st)
	}
	// The remote network goes: Disconnected.
	if err := e.deleteVNet("rg2", "spoke"); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.peeringState("rg", "hub", "to-spoke"); st != armnetwork.VirtualNetworkPeeringStateDisconnected {
		t.Fatalf("after the remote network went = %s", st)
	}
}

// TestPeeringValidation checks the refusals, with Azure's codes.
func TestPeeringValidation(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustVNet("rg", "hub", vnetBody("10.0.0.0/16"))
	e.mustVNet("rg", "a", vnetBody("10.1.0.0/16"))
	e.mustVNet("rg", "b", vnetBody("10.1.128.0/17"))
	e.mustVNet("rg", "twin", vnetBody("10.0.128.0/17"))
	hub, a, b, twin := resID("rg", "virtualNetworks", "hub"), resID("rg", "virtualNetworks", "a"), resID("rg", "virtualNetworks", "b"), resID("rg", "virtualNetworks", "twin")
	const target = "properties.remoteVirtualNetwork.id"

	_, err := e.putPeering("rg", "hub", "p", peeringBody(twin), false)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codePeerOverlap), target, "10.0.128.0/17")
	_, err = e.putPeering("rg", "hub", "p", peeringBody(hub), false)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codePeerSelf), target)
	_, err = e.putPeering("rg", "hub", "p", peeringBody(resID("rg", "virtualNetworks", "ghost")), false)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codeRemoteVnetNotFound), target, "ghost")
	_, err = e.putPeering("rg", "hub", "p", peeringBody(resID("rg", "networkSecurityGroups", "x")), false)
	testkit.WantARMError(t, err, http.StatusBadRequest, codeLinkedInvalidID)
	_, err = e.putPeering("rg", "hub", "p", armnetwork.VirtualNetworkPeering{Properties: &armnetwork.VirtualNetworkPeeringPropertiesFormat{}}, false)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codeMissingParameter), target)
	gw := peeringBody(a)
	gw.Properties.UseRemoteGateways = to.Ptr(true)
	_, err = e.putPeering("rg", "hub", "p", gw, false)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codeRemoteNoGateways), "properties.useRemoteGateways")

	// hub–a is fine; b overlaps a, which is already peered with hub.
	if _, err := e.putPeering("rg", "hub", "to-a", peeringBody(a), false); err != nil {
		t.Fatal(err)
	}
	_, err = e.putPeering("rg", "hub", "to-a2", peeringBody(a), false)
	testkit.WantARMError(t, err, http.StatusBadRequest, codePeerDuplicate)
	_, err = e.putPeering("rg", "hub", "to-b", peeringBody(b), false)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codePeerOverlapPeered), target, "already peered")
	_, err = e.putPeering("rg", "b", "to-hub", peeringBody(hub), false)
	testkit.WantARMError(t, err, http.StatusBadRequest, codePeerOverlapPeered)
	_, err = e.putPeering("rg", "hub", "to-a", peeringBody(b), false)
	testkit.WantARMError(t, err, http.StatusBadRequest, codePeerImmutable)
	// Growing the hub into its peer's space is refused.
	grown := vnetBody("10.0.0.0/16")
	grown.Properties.AddressSpace.AddressPrefixes = append(grown.Properties.AddressSpace.AddressPrefixes, to.Ptr("10.1.4.0/24"))
	_, err = e.putVNet("rg", "hub", grown)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codePeerOverlap), "properties.addressSpace.addressPrefixes", "10.1.4.0/24")
	code, _, _ := e.rawURL(http.MethodPut, e.srv.URL+hub+"/virtualNetworkPeerings/q?api-version=2025-01-01&syncRemoteAddressSpace=maybe", `{"properties":{"remoteVirtualNetwork":{"id":"`+a+`"}}}`, "Content-Type", "application/json")
	if code != http.StatusBadRequest {
		t.Errorf("bad syncRemoteAddressSpace: status %d", code)
	}
}

func mustID(t *testing.T, s string) arm.ResourceID {
	t.Helper()
	id, err := arm.ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// effectiveRoutes returns NIC nic's effective routes, prefix → next hop
// type/source.
func (e *env) effectiveRoutes(rg, nic string) map[string]string {
	e.t.Helper()
	rp, err := e.nics.BeginGetEffectiveRouteTable(e.ctx, rg, nic, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	routes, err := rp.PollUntilDone(e.ctx, poll)
	if err != nil {
		e.t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range routes.Value {
		got[str(r.AddressPrefix[0])] = string(*r.NextHopType) + "/" + string(*r.Source)
	}
	return got
}

// TestPeeringPolicyModel: a Connected peering with virtual network access
// on both sides puts the remote space into the VirtualNetwork tag and the
// effective routes (next hop VNetPeering); an Initiated one, or one whose
// remote side turns access off, does not.
func TestPeeringPolicyModel(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	nsg := e.mustNSG("rg", "nsg", &armnetwork.SecurityRule{Name: to.Ptr("deny-pg"), Properties: ruleProps(100)})
	hub := vnetBody("10.0.0.0/16", "a=10.0.1.0/24")
	hub.Properties.Subnets[0].Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: nsg.ID}
	e.mustVNet("rg", "hub", hub)
	e.mustVNet("rg", "spoke", vnetBody("10.1.0.0/16", "a=10.1.1.0/24"))
	e.mustNIC("rg", "c1", nicBody(subnetID("rg", "hub", "a")))
	hubID, spokeID := resID("rg", "virtualNetworks", "hub"), resID("rg", "virtualNetworks", "spoke")
	vnetTag := func() string {
		t.Helper()
		p, err := e.nics.BeginListEffectiveNetworkSecurityGroups(e.ctx, "rg", "c1", nil)
		if err != nil {
			t.Fatal(err)
		}
		groups, err := p.PollUntilDone(e.ctx, poll)
		if err != nil || len(groups.Value) != 1 {
			t.Fatalf("effective NSGs: %v", err)
		}
		var out []string
		for _, s := range groups.Value[0].EffectiveSecurityRules[0].ExpandedSourceAddressPrefix {
			out = append(out, str(s))
		}
		return strings.Join(out, ",")
	}

	if _, err := e.putPeering("rg", "hub", "to-spoke", peeringBody(spokeID), false); err != nil {
		t.Fatal(err)
	}
	if got := e.effectiveRoutes("rg", "c1")["10.1.0.0/16"]; got != "" {
		t.Errorf("Initiated peering routes the spoke: %s", got)
	}
	if got := vnetTag(); got != "10.0.0.0/16" {
		t.Errorf("VirtualNetwork while Initiated = %s", got)
	}
	if _, err := e.putPeering("rg", "spoke", "to-hub", peeringBody(hubID), false); err != nil {
		t.Fatal(err)
	}
	if got := e.effectiveRoutes("rg", "c1")["10.1.0.0/16"]; got != "VNetPeering/Default" {
		t.Errorf("Connected peering: route to the spoke = %q, want VNetPeering/Default", got)
	}
	if got := vnetTag(); got != "10.0.0.0/16,10.1.0.0/16" {
		t.Errorf("VirtualNetwork while Connected = %s, want both spaces", got)
	}
	// The remote side turns virtual network access off: no path, for
	// either side.
	off := peeringBody(hubID)
	off.Properties.AllowVirtualNetworkAccess = to.Ptr(false)
	if _, err := e.putPeering("rg", "spoke", "to-hub", off, false); err != nil {
		t.Fatal(err)
	}
	if got := e.effectiveRoutes("rg", "c1")["10.1.0.0/16"]; got != "" {
		t.Errorf("access off: route to the spoke = %q", got)
	}
	if got := vnetTag(); got != "10.0.0.0/16" {
		t.Errorf("VirtualNetwork with access off = %s", got)
	}
}
