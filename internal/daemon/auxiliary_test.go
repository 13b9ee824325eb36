package daemon_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/daemon/daemontest"
	"github.com/privlink/privlink/internal/identity"
)

// peeringsAs returns a peerings client of p's subscription whose requests
// carry, in x-ms-authorization-auxiliary, a token of aux's tenant from aux
// (nil: none).
func peeringsAs(t *testing.T, p, aux *daemontest.Principal) *armnetwork.VirtualNetworkPeeringsClient {
	t.Helper()
	cred, o := azcore.TokenCredential(p.Credential), p.Options()
	if aux != nil {
		cred, o = p.WithAuxiliary(aux.Config)
		o.Retry = p.Options().Retry
	}
	c, err := armnetwork.NewVirtualNetworkPeeringsClient(p.Sub(), cred, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func putPeeringAs(t *testing.T, c *armnetwork.VirtualNetworkPeeringsClient, rg, vnet, name, remote string) (armnetwork.VirtualNetworkPeering, error) {
	t.Helper()
	p, err := c.BeginCreateOrUpdate(t.Context(), rg, vnet, name, armnetwork.VirtualNetworkPeering{Properties: &armnetwork.VirtualNetworkPeeringPropertiesFormat{
		RemoteVirtualNetwork: &armnetwork.SubResource{ID: to.Ptr(remote)}}}, nil)
	if err != nil {
		return armnetwork.VirtualNetworkPeering{}, err
	}
	res, err := p.PollUntilDone(t.Context(), nil)
	return res.VirtualNetworkPeering, err
}

func wantCode(t *testing.T, err error, status int, code string) *azcore.ResponseError {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != status || re.ErrorCode != code {
		t.Fatalf("got %v, want %d %s", err, status, code)
	}
	return re
}

// TestCrossTenantPeering: each side of a peering between networks of two
// tenants needs peer/action on the remote network, which only a principal
// of the remote tenant can hold; the official SDK, with
// arm.ClientOptions.AuxiliaryTenants, sends that principal's token in
// x-ms-authorization-auxiliary, and linked authorization accepts it when
// (and only when) that principal holds the action at the remote network.
func TestCrossTenantPeering(t *testing.T) {
	a := daemontest.New(t)
	owner := a.Owner
	other := a.NewPrincipal(t, "other", true) // Owner of a subscription of its own tenant
	e := newEnv(a)
	hubRG := e.rg("hub")
	e.put(t, owner, hubRG, map[string]any{"location": e.loc})
	hub := hubRG + netNS + "virtualNetworks/hub"
	e.put(t, owner, hub, map[string]any{"location": e.loc, "properties": map[string]any{
		"addressSpace": map[string]any{"addressPrefixes": []string{"10.0.0.0/16"}},
		"subnets":      []any{map[string]any{"name": "a", "properties": map[string]any{"addressPrefix": "10.0.1.0/24"}}}}})
	spokeRG := "/subscriptions/" + other.Sub() + "/resourceGroups/spoke"
	e.put(t, other, spokeRG, map[string]any{"location": e.loc})
	spoke := spokeRG + netNS + "virtualNetworks/spoke"
	e.put(t, other, spoke, map[string]any{"location": e.loc, "properties": map[string]any{
		"addressSpace": map[string]any{"addressPrefixes": []string{"10.1.0.0/16"}},
		"subnets":      []any{map[string]any{"name": "a", "properties": map[string]any{"addressPrefix": "10.1.1.0/24"}}}}})

	// A principal of the hub's tenant that may peer with the hub (Network
	// Contributor there), and one that may not (a role elsewhere).
	peerer := a.NewPrincipal(t, "hub-peerer", false)
	a.Assign(t, peerer, identity.NetworkContributorRoleID, hub)
	bystander := a.NewPrincipal(t, "bystander", false)
	a.Assign(t, bystander, identity.NetworkContributorRoleID, hubRG+netNS+"virtualNetworks/elsewhere")

	// Without an auxiliary token, or with one whose principal lacks the
	// action at the hub: refused, naming peer/action and the hub.
	_, err := putPeeringAs(t, peeringsAs(t, other, nil), "spoke", "spoke", "to-hub", hub)
	re := wantCode(t, err, http.StatusForbidden, "LinkedAuthorizationFailed")
	if msg := err.Error(); !strings.Contains(msg, "virtualNetworks/peer/action") || !strings.Contains(msg, "/virtualNetworks/hub") {
		t.Errorf("refusal does not name the action and the linked scope: %v", re)
	}
	_, err = putPeeringAs(t, peeringsAs(t, other, bystander), "spoke", "spoke", "to-hub", hub)
	wantCode(t, err, http.StatusForbidden, "LinkedAuthorizationFailed")

	// With the hub tenant's token of a principal that may: accepted.
	sp, err := putPeeringAs(t, peeringsAs(t, other, peerer), "spoke", "spoke", "to-hub", hub)
	if err != nil {
		t.Fatalf("spoke side with the hub tenant's token: %v", err)
	}
	if *sp.Properties.PeeringState != armnetwork.VirtualNetworkPeeringStateInitiated {
		t.Errorf("spoke side = %s, want Initiated", *sp.Properties.PeeringState)
	}
	// The hub's side, with the spoke tenant's token (its Owner): the pair
	// is Connected.
	_, err = putPeeringAs(t, peeringsAs(t, owner, nil), "hub", "hub", "to-spoke", spoke)
	wantCode(t, err, http.StatusForbidden, "LinkedAuthorizationFailed")
	hp, err := putPeeringAs(t, peeringsAs(t, owner, other), "hub", "hub", "to-spoke", spoke)
	if err != nil {
		t.Fatalf("hub side with the spoke tenant's token: %v", err)
	}
	if *hp.Properties.PeeringState != armnetwork.VirtualNetworkPeeringStateConnected {
		t.Errorf("hub side = %s, want Connected", *hp.Properties.PeeringState)
	}

	// An auxiliary token counts for linked authorization only: it does
	// not let the spoke's principal write in the hub's subscription.
	r := auxDo(t, a, other.Token(t), "Bearer "+peerer.Token(t), http.MethodDelete, hub+"/virtualNetworkPeerings/to-spoke"+apiVersion(hub+"/virtualNetworkPeerings/x"))
	if r.Status != http.StatusForbidden {
		t.Errorf("DELETE in the hub's subscription by the spoke's principal with an auxiliary token: %d %s", r.Status, r.Body)
	}
	// A malformed or forged auxiliary header is refused (401), naming it.
	for _, h := range []string{"Token " + peerer.Token(t), "Bearer forged.token.here", strings.Repeat("Bearer "+peerer.Token(t)+", ", 3) + "Bearer " + peerer.Token(t)} {
		r := auxDo(t, a, other.Token(t), h, http.MethodGet, spoke+apiVersion(spoke))
		if r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), identity.AuxiliaryHeader) {
			t.Errorf("auxiliary header %.20q...: %d %s", h, r.Status, r.Body)
		}
	}
}

// auxDo sends one request with a bearer token and an auxiliary header.
func auxDo(t *testing.T, a *daemontest.API, token, aux, method, path string) daemontest.Response {
	t.Helper()
	return a.DoHeaders(t, "Bearer "+token, http.Header{identity.AuxiliaryHeader: {aux}}, method, path, nil)
}
