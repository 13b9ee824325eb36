package network

import (
	"net/http"
	"net/netip"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/testkit"
)

type vpnClients struct {
	ips   *armnetwork.PublicIPAddressesClient
	lngs  *armnetwork.LocalNetworkGatewaysClient
	gws   *armnetwork.VirtualNetworkGatewaysClient
	conns *armnetwork.VirtualNetworkGatewayConnectionsClient
}

func (e *env) allVPNClients() vpnClients {
	e.t.Helper()
	f, err := armnetwork.NewClientFactory(sub, e.srv.Cred, e.srv.Options)
	if err != nil {
		e.t.Fatal(err)
	}
	return vpnClients{f.NewPublicIPAddressesClient(), f.NewLocalNetworkGatewaysClient(), f.NewVirtualNetworkGatewaysClient(), f.NewVirtualNetworkGatewayConnectionsClient()}
}

func gatewayBody(subnet, pip string) armnetwork.VirtualNetworkGateway {
	return armnetwork.VirtualNetworkGateway{Location: to.Ptr("westeurope"), Properties: &armnetwork.VirtualNetworkGatewayPropertiesFormat{
		GatewayType: to.Ptr(armnetwork.VirtualNetworkGatewayTypeVPN), VPNType: to.Ptr(armnetwork.VPNTypeRouteBased),
		SKU: &armnetwork.VirtualNetworkGatewaySKU{Name: to.Ptr(armnetwork.VirtualNetworkGatewaySKUNameVPNGw1), Tier: to.Ptr(armnetwork.VirtualNetworkGatewaySKUTierVPNGw1)},
		IPConfigurations: []*armnetwork.VirtualNetworkGatewayIPConfiguration{{Name: to.Ptr("default"),
			Properties: &armnetwork.VirtualNetworkGatewayIPConfigurationPropertiesFormat{
				Subnet: &armnetwork.SubResource{ID: to.Ptr(subnet)}, PublicIPAddress: &armnetwork.SubResource{ID: to.Ptr(pip)}}}},
	}}
}

func v2vBody(gw1, gw2, key string) armnetwork.VirtualNetworkGatewayConnection {
	return armnetwork.VirtualNetworkGatewayConnection{Location: to.Ptr("westeurope"), Properties: &armnetwork.VirtualNetworkGatewayConnectionPropertiesFormat{
		ConnectionType:         to.Ptr(armnetwork.VirtualNetworkGatewayConnectionTypeVnet2Vnet),
		VirtualNetworkGateway1: &armnetwork.VirtualNetworkGateway{ID: to.Ptr(gw1)},
		VirtualNetworkGateway2: &armnetwork.VirtualNetworkGateway{ID: to.Ptr(gw2)},
		SharedKey:              to.Ptr(key)}}
}

// TestVirtualNetworkGateways: a gateway takes an address in GatewaySubnet
// (held: no NIC takes it, the subnet cannot go) and its public IP (which
// cannot go either); another subnet, a second gateway in the network,
// active-active, BGP and unknown SKUs are refused naming the field;
// connections between two gateways keep their key out of GETs and change
// it through sharedkey get/set/reset; a gateway or local network gateway
// with connections cannot be deleted.
func TestVirtualNetworkGateways(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	c := e.allVPNClients()
	e.mustVNet("rg", "a", vnetBody("10.1.0.0/16", "default=10.1.0.0/24", "GatewaySubnet=10.1.255.0/27"))
	e.mustVNet("rg", "b", vnetBody("10.2.0.0/16", "GatewaySubnet=10.2.255.0/27"))
	e.mustVNet("rg", "c", vnetBody("10.3.0.0/16", "GatewaySubnet=10.3.255.0/27"))
	for _, n := range []string{"pa", "pb", "pc"} {
		p, err := c.ips.BeginCreateOrUpdate(e.ctx, "rg", n, standardIP(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.PollUntilDone(e.ctx, poll); err != nil {
			t.Fatal(err)
		}
	}
	putGW := func(name string, body armnetwork.VirtualNetworkGateway) (armnetwork.VirtualNetworkGateway, error) {
		p, err := c.gws.BeginCreateOrUpdate(e.ctx, "rg", name, body, nil)
		if err != nil {
			return armnetwork.VirtualNetworkGateway{}, err
		}
		r, err := p.PollUntilDone(e.ctx, poll)
		return r.VirtualNetworkGateway, err
	}
	pip := func(n string) string { return resID("rg", "publicIPAddresses", n) }
	gwA, err := putGW("gwa", gatewayBody(subnetID("rg", "a", "GatewaySubnet"), pip("pa")))
	if err != nil {
		t.Fatal(err)
	}
	ic := gwA.Properties.IPConfigurations[0].Properties
	addr := netip.MustParseAddr(str(ic.PrivateIPAddress))
	if !netip.MustParsePrefix("10.1.255.0/27").Contains(addr) || addr == netip.MustParseAddr("10.1.255.1") ||
		str((*string)(gwA.Properties.ProvisioningState)) != "Succeeded" || *gwA.Properties.VPNGatewayGeneration != armnetwork.VPNGatewayGenerationGeneration1 {
		t.Fatalf("gateway: address %s, %+v", addr, gwA.Properties)
	}
	if _, err := putGW("gwb", gatewayBody(subnetID("rg", "b", "GatewaySubnet"), pip("pb"))); err != nil {
		t.Fatal(err)
	}

	ipc := "properties.ipConfigurations[0].properties."
	for _, tc := range []struct {
		name, code, target string
		mut                func(*armnetwork.VirtualNetworkGateway)
	}{
		{"not GatewaySubnet", codeGatewaySubnet, ipc + "subnet.id", func(g *armnetwork.VirtualNetworkGateway) {
			g.Properties.IPConfigurations[0].Properties.Subnet.ID = to.Ptr(subnetID("rg", "a", "default"))
		}},
		{"second gateway in a network", codeOneGatewayPerVNet, ipc + "subnet.id", func(*armnetwork.VirtualNetworkGateway) {}},
		{"public IP in use", codePublicIPInUse, ipc + "publicIPAddress.id", func(g *armnetwork.VirtualNetworkGateway) {
			g.Properties.IPConfigurations[0].Properties.Subnet.ID = to.Ptr(subnetID("rg", "c", "GatewaySubnet"))
			g.Properties.IPConfigurations[0].Properties.PublicIPAddress.ID = to.Ptr(pip("pb"))
		}},
		{"active-active", codeUnsupportedInPrivlink, "properties.activeActive", func(g *armnetwork.VirtualNetworkGateway) { g.Properties.Active = to.Ptr(true) }},
		{"BGP", codeUnsupportedInPrivlink, "properties.enableBgp", func(g *armnetwork.VirtualNetworkGateway) { g.Properties.EnableBgp = to.Ptr(true) }},
		{"ExpressRoute", codeUnsupportedInPrivlink, "properties.gatewayType", func(g *armnetwork.VirtualNetworkGateway) {
			g.Properties.GatewayType = to.Ptr(armnetwork.VirtualNetworkGatewayTypeExpressRoute)
		}},
		{"Basic SKU", codeGatewaySku, "properties.sku.name", func(g *armnetwork.VirtualNetworkGateway) {
			g.Properties.SKU = &armnetwork.VirtualNetworkGatewaySKU{Name: to.Ptr(armnetwork.VirtualNetworkGatewaySKUNameBasic)}
		}},
		{"no public IP", codeMissingParameter, ipc + "publicIPAddress.id", func(g *armnetwork.VirtualNetworkGateway) {
			g.Properties.IPConfigurations[0].Properties.Subnet.ID = to.Ptr(subnetID("rg", "c", "GatewaySubnet"))
			g.Properties.IPConfigurations[0].Properties.PublicIPAddress = nil
		}},
	} {
		b := gatewayBody(subnetID("rg", "a", "GatewaySubnet"), pip("pc"))
		tc.mut(&b)
		_, err := putGW("gwx", b)
		wantTarget(t, testkit.WantARMError(t, err, 400, tc.code), tc.target)
	}

	// The address is held: the subnet cannot be deleted; the public IP neither.
	testkit.WantARMError(t, e.deleteSubnet("rg", "a", "GatewaySubnet"), 400, codeSubnetInUse)
	dp, err := c.ips.BeginDelete(e.ctx, "rg", "pa", nil)
	if err == nil {
		_, err = dp.PollUntilDone(e.ctx, poll)
	}
	testkit.WantARMError(t, err, 400, codePublicIPInUse)

	// Connections.
	gw := func(n string) string { return resID("rg", "virtualNetworkGateways", n) }
	putConn := func(name string, body armnetwork.VirtualNetworkGatewayConnection) (armnetwork.VirtualNetworkGatewayConnection, error) {
		p, err := c.conns.BeginCreateOrUpdate(e.ctx, "rg", name, body, nil)
		if err != nil {
			return armnetwork.VirtualNetworkGatewayConnection{}, err
		}
		r, err := p.PollUntilDone(e.ctx, poll)
		return r.VirtualNetworkGatewayConnection, err
	}
	ab, err := putConn("ab", v2vBody(gw("gwa"), gw("gwb"), "s3cret-key"))
	if err != nil {
		t.Fatal(err)
	}
	if ab.Properties.SharedKey != nil || ab.Properties.ConnectionStatus == nil || *ab.Properties.ConnectionStatus != armnetwork.VirtualNetworkGatewayConnectionStatusUnknown {
		t.Fatalf("connection shows key %v, status %v", ab.Properties.SharedKey, ab.Properties.ConnectionStatus)
	}
	// The connection's remote space is routed to the gateway: next hop
	// VirtualNetworkGateway in a NIC's effective routes.
	e.mustNIC("rg", "nic", nicBody(subnetID("rg", "a", "default")))
	erp, err := e.nics.BeginGetEffectiveRouteTable(e.ctx, "rg", "nic", nil)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := erp.PollUntilDone(e.ctx, poll)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, rt := range routes.Value {
		if len(rt.AddressPrefix) == 1 && str(rt.AddressPrefix[0]) == "10.2.0.0/16" {
			found = *rt.NextHopType == armnetwork.RouteNextHopTypeVirtualNetworkGateway && *rt.Source == armnetwork.EffectiveRouteSourceVirtualNetworkGateway
		}
	}
	if !found {
		t.Errorf("no route 10.2.0.0/16 via VirtualNetworkGateway among the effective routes")
	}
	k, err := c.conns.GetSharedKey(e.ctx, "rg", "ab", nil)
	if err != nil || str(k.Value) != "s3cret-key" {
		t.Fatalf("GetSharedKey = %v, %v", str(k.Value), err)
	}
	sp, err := c.conns.BeginSetSharedKey(e.ctx, "rg", "ab", armnetwork.ConnectionSharedKey{Value: to.Ptr("another-key")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.PollUntilDone(e.ctx, poll); err != nil {
		t.Fatal(err)
	}
	if k, err = c.conns.GetSharedKey(e.ctx, "rg", "ab", nil); err != nil || str(k.Value) != "another-key" {
		t.Fatalf("after set: %v, %v", str(k.Value), err)
	}
	rp, err := c.conns.BeginResetSharedKey(e.ctx, "rg", "ab", armnetwork.ConnectionResetSharedKey{KeyLength: to.Ptr[int32](40)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rp.PollUntilDone(e.ctx, poll); err != nil {
		t.Fatal(err)
	}
	if k, err = c.conns.GetSharedKey(e.ctx, "rg", "ab", nil); err != nil || len(str(k.Value)) != 40 || str(k.Value) == "another-key" {
		t.Fatalf("after reset: %q, %v", str(k.Value), err)
	}
	_, err = c.conns.BeginSetSharedKey(e.ctx, "rg", "ab", armnetwork.ConnectionSharedKey{Value: to.Ptr("has space")}, nil)
	wantTarget(t, testkit.WantARMError(t, err, 400, codeSharedKey), "value")
	// The sub-path serves GET and PUT only; reset is POST only.
	connPath := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Network/connections/ab"
	for _, m := range []struct{ method, path string }{{http.MethodPost, "/sharedkey"}, {http.MethodDelete, "/sharedkey"}, {http.MethodGet, "/sharedkey/reset"}} {
		if code, body := e.raw(m.method, connPath+m.path+"?api-version=2024-05-01", "{}"); code != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d %s, want 405", m.method, m.path, code, body)
		}
	}

	for _, tc := range []struct {
		name, code, target string
		body               armnetwork.VirtualNetworkGatewayConnection
	}{
		{"to itself", codeConnectionPeer, "properties.virtualNetworkGateway2.id", v2vBody(gw("gwa"), gw("gwa"), "k")},
		{"missing gateway", codeInvalidReference, "properties.virtualNetworkGateway2.id", v2vBody(gw("gwa"), gw("nope"), "k")},
		{"bad key", codeSharedKey, "properties.sharedKey", v2vBody(gw("gwa"), gw("gwb"), "")},
		{"ExpressRoute", codeConnectionType, "properties.connectionType", func() armnetwork.VirtualNetworkGatewayConnection {
			b := v2vBody(gw("gwa"), gw("gwb"), "k")
			b.Properties.ConnectionType = to.Ptr(armnetwork.VirtualNetworkGatewayConnectionTypeExpressRoute)
			return b
		}()},
		{"BGP", codeUnsupportedInPrivlink, "properties.enableBgp", func() armnetwork.VirtualNetworkGatewayConnection {
			b := v2vBody(gw("gwa"), gw("gwb"), "k")
			b.Properties.EnableBgp = to.Ptr(true)
			return b
		}()},
	} {
		_, err := putConn("bad", tc.body)
		wantTarget(t, testkit.WantARMError(t, err, 400, tc.code), tc.target)
	}

	// An IPsec connection to a local network gateway whose space overlaps
	// the network's is refused; one apart is taken.
	lng := func(name, space string) {
		p, err := c.lngs.BeginCreateOrUpdate(e.ctx, "rg", name, armnetwork.LocalNetworkGateway{Location: to.Ptr("westeurope"),
			Properties: &armnetwork.LocalNetworkGatewayPropertiesFormat{GatewayIPAddress: to.Ptr("198.18.50.1"),
				LocalNetworkAddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{to.Ptr(space)}}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.PollUntilDone(e.ctx, poll); err != nil {
			t.Fatal(err)
		}
	}
	lng("site", "192.168.0.0/16")
	lng("overlap", "10.1.128.0/17")
	ipsec := func(l string) armnetwork.VirtualNetworkGatewayConnection {
		return armnetwork.VirtualNetworkGatewayConnection{Location: to.Ptr("westeurope"), Properties: &armnetwork.VirtualNetworkGatewayConnectionPropertiesFormat{
			ConnectionType:         to.Ptr(armnetwork.VirtualNetworkGatewayConnectionTypeIPsec),
			VirtualNetworkGateway1: &armnetwork.VirtualNetworkGateway{ID: to.Ptr(gw("gwa"))},
			LocalNetworkGateway2:   &armnetwork.LocalNetworkGateway{ID: to.Ptr(resID("rg", "localNetworkGateways", l))},
			SharedKey:              to.Ptr("k")}}
	}
	_, err = putConn("bad", ipsec("overlap"))
	testkit.WantARMError(t, err, 400, codeRemoteOverlap)
	if _, err := putConn("site", ipsec("site")); err != nil {
		t.Fatal(err)
	}

	// In use: the gateways and the local network gateway stay while
	// connections name them.
	gp, err := c.gws.BeginDelete(e.ctx, "rg", "gwb", nil)
	if err == nil {
		_, err = gp.PollUntilDone(e.ctx, poll)
	}
	testkit.WantARMError(t, err, 400, codeGatewayInUse)
	lp, err := c.lngs.BeginDelete(e.ctx, "rg", "site", nil)
	if err == nil {
		_, err = lp.PollUntilDone(e.ctx, poll)
	}
	testkit.WantARMError(t, err, 400, codeLocalGatewayInUse)
	for _, n := range []string{"ab", "site"} {
		p, err := c.conns.BeginDelete(e.ctx, "rg", n, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.PollUntilDone(e.ctx, poll); err != nil {
			t.Fatal(err)
		}
	}
	gp, err = c.gws.BeginDelete(e.ctx, "rg", "gwb", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gp.PollUntilDone(e.ctx, poll); err != nil {
		t.Fatal(err)
	}
}
