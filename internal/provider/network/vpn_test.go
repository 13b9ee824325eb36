package network

import (
	"context"
	"net/netip"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/addrpool"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/testkit"
)

func (e *env) vpnClients() (*armnetwork.PublicIPAddressesClient, *armnetwork.LocalNetworkGatewaysClient) {
	e.t.Helper()
	f, err := armnetwork.NewClientFactory(sub, e.srv.Cred, e.srv.Options)
	if err != nil {
		e.t.Fatal(err)
	}
	return f.NewPublicIPAddressesClient(), f.NewLocalNetworkGatewaysClient()
}

func standardIP() armnetwork.PublicIPAddress {
	return armnetwork.PublicIPAddress{Location: to.Ptr("westeurope"),
		SKU:        &armnetwork.PublicIPAddressSKU{Name: to.Ptr(armnetwork.PublicIPAddressSKUNameStandard)},
		Properties: &armnetwork.PublicIPAddressPropertiesFormat{PublicIPAllocationMethod: to.Ptr(armnetwork.IPAllocationMethodStatic)}}
}

// TestPublicIPAddresses: Standard Static addresses from the emulated
// internet's pool, kept across updates, freed on delete and with their
// group, never one another's nor a reserved one; Basic and Dynamic refused.
func TestPublicIPAddresses(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.group("rg2")
	ips, _ := e.vpnClients()
	put := func(rg, name string, body armnetwork.PublicIPAddress) (armnetwork.PublicIPAddress, error) {
		p, err := ips.BeginCreateOrUpdate(e.ctx, rg, name, body, nil)
		if err != nil {
			return armnetwork.PublicIPAddress{}, err
		}
		r, err := p.PollUntilDone(e.ctx, poll)
		return r.PublicIPAddress, err
	}
	a, err := put("rg", "gw-a", standardIP())
	if err != nil {
		t.Fatal(err)
	}
	addrA := netip.MustParseAddr(str(a.Properties.IPAddress))
	if !addrpool.Public.Usable(addrA) || str((*string)(a.Properties.ProvisioningState)) != "Succeeded" ||
		*a.SKU.Name != armnetwork.PublicIPAddressSKUNameStandard || *a.Properties.PublicIPAllocationMethod != armnetwork.IPAllocationMethodStatic {
		t.Fatalf("public IP = %+v %+v", a.SKU, a.Properties)
	}
	b, err := put("rg2", "gw-b", standardIP())
	if err != nil {
		t.Fatal(err)
	}
	if str(b.Properties.IPAddress) == addrA.String() {
		t.Fatalf("two public IPs share %s", addrA)
	}
	// An update keeps the address.
	body := standardIP()
	body.Tags = map[string]*string{"x": to.Ptr("y")}
	again, err := put("rg", "gw-a", body)
	if err != nil || str(again.Properties.IPAddress) != addrA.String() || str(again.Properties.ResourceGUID) != str(a.Properties.ResourceGUID) {
		t.Fatalf("update: %v %v", str(again.Properties.IPAddress), err)
	}
	// Refusals name the field.
	basic := standardIP()
	basic.SKU.Name = to.Ptr(armnetwork.PublicIPAddressSKUNameBasic)
	_, err = put("rg", "basic", basic)
	wantTarget(t, testkit.WantARMError(t, err, 400, codePublicIPSku), "sku.name")
	dyn := standardIP()
	dyn.Properties.PublicIPAllocationMethod = to.Ptr(armnetwork.IPAllocationMethodDynamic)
	_, err = put("rg", "dyn", dyn)
	wantTarget(t, testkit.WantARMError(t, err, 400, codeStandardNotDynamic), "properties.publicIPAllocationMethod")
	v6 := standardIP()
	v6.Properties.PublicIPAddressVersion = to.Ptr(armnetwork.IPVersionIPv6)
	_, err = put("rg", "v6", v6)
	wantTarget(t, testkit.WantARMError(t, err, 400, codeInvalidParameter), "properties.publicIPAddressVersion")
	noSku := standardIP()
	noSku.SKU = nil
	_, err = put("rg", "nosku", noSku)
	wantTarget(t, testkit.WantARMError(t, err, 400, codeMissingParameter), "sku.name")

	held := func(a string) string {
		var h string
		_, err := e.st.Txn(context.Background(), func(tx store.Tx) error {
			var err error
			h, err = addrpool.Holder(tx, netip.MustParseAddr(a))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if held(addrA.String()) == "" {
		t.Fatal("the address is not reserved")
	}
	// Delete frees it; the next public IP may take it again.
	dp, err := ips.BeginDelete(e.ctx, "rg", "gw-a", nil)
	if err == nil {
		_, err = dp.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		t.Fatal(err)
	}
	if h := held(addrA.String()); h != "" {
		t.Fatalf("after delete, %s is held by %s", addrA, h)
	}
	c, err := put("rg", "gw-c", standardIP())
	if err != nil || str(c.Properties.IPAddress) != addrA.String() {
		t.Fatalf("after delete, the lowest free address %s went unused: %v %v", addrA, str(c.Properties.IPAddress), err)
	}
	// A group delete frees its addresses too.
	if err := e.deleteGroup("rg2"); err != nil {
		t.Fatal(err)
	}
	if h := held(str(b.Properties.IPAddress)); h != "" {
		t.Fatalf("after the group's delete, %s is held by %s", str(b.Properties.IPAddress), h)
	}
}

// TestLocalNetworkGateways: the on-premises device's public IPv4 address
// and its prefixes, with the errors Azure gives for bad ones.
func TestLocalNetworkGateways(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	_, lgws := e.vpnClients()
	put := func(name string, props *armnetwork.LocalNetworkGatewayPropertiesFormat) (armnetwork.LocalNetworkGateway, error) {
		p, err := lgws.BeginCreateOrUpdate(e.ctx, "rg", name, armnetwork.LocalNetworkGateway{Location: to.Ptr("westeurope"), Properties: props}, nil)
		if err != nil {
			return armnetwork.LocalNetworkGateway{}, err
		}
		r, err := p.PollUntilDone(e.ctx, poll)
		return r.LocalNetworkGateway, err
	}
	props := func(ip string, prefixes ...string) *armnetwork.LocalNetworkGatewayPropertiesFormat {
		return &armnetwork.LocalNetworkGatewayPropertiesFormat{GatewayIPAddress: to.Ptr(ip),
			LocalNetworkAddressSpace: &armnetwork.AddressSpace{AddressPrefixes: to.SliceOfPtrs(prefixes...)}}
	}
	g, err := put("office", props("198.18.50.1", "192.168.0.0/16", "172.16.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if str(g.Properties.GatewayIPAddress) != "198.18.50.1" || len(g.Properties.LocalNetworkAddressSpace.AddressPrefixes) != 2 ||
		str((*string)(g.Properties.ProvisioningState)) != "Succeeded" || str(g.Type) != typeLocalGW {
		t.Fatalf("local gateway = %+v", g.Properties)
	}
	got, err := lgws.Get(e.ctx, "rg", "OFFICE", nil)
	if err != nil || str(got.Name) != "office" {
		t.Fatalf("get: %v %v", str(got.Name), err)
	}
	for _, c := range []struct {
		name   string
		props  *armnetwork.LocalNetworkGatewayPropertiesFormat
		code   string
		target string
	}{
		{"no-props", nil, codeMissingParameter, "properties"},
		{"no-ip", props("", "192.168.0.0/16"), codeMissingParameter, "properties.gatewayIpAddress"},
		{"private-ip", props("10.1.2.3", "192.168.0.0/16"), codeInvalidGatewayIP, "properties.gatewayIpAddress"},
		{"bad-ip", props("198.18.50", "192.168.0.0/16"), codeInvalidGatewayIP, "properties.gatewayIpAddress"},
		{"v6-ip", props("2001:db8::1", "192.168.0.0/16"), codeInvalidGatewayIP, "properties.gatewayIpAddress"},
		{"no-space", props("198.18.50.1"), codeMissingParameter, "properties.localNetworkAddressSpace.addressPrefixes"},
		{"bad-prefix", props("198.18.50.1", "192.168.0.0/33"), codeInvalidPrefixFormat, "properties.localNetworkAddressSpace.addressPrefixes[0]"},
		{"not-canonical", props("198.18.50.1", "192.168.1.0/16"), codeInvalidCIDR, "properties.localNetworkAddressSpace.addressPrefixes[0]"},
		{"overlap", props("198.18.50.1", "192.168.0.0/16", "192.168.4.0/24"), codeInvalidPrefix, "properties.localNetworkAddressSpace.addressPrefixes[1]"},
		{"reserved", props("198.18.50.1", "169.254.0.0/24"), codeInvalidPrefix, "properties.localNetworkAddressSpace.addressPrefixes[0]"},
	} {
		_, err := put(c.name, c.props)
		wantTarget(t, testkit.WantARMError(t, err, 400, c.code), c.target)
	}
	fq := props("198.18.50.1", "192.168.0.0/16")
	fq.GatewayIPAddress, fq.Fqdn = nil, to.Ptr("vpn.example.com")
	_, err = put("fqdn", fq)
	wantTarget(t, testkit.WantARMError(t, err, 400, codeInvalidParameter), "properties.fqdn")

	dp, err := lgws.BeginDelete(e.ctx, "rg", "office", nil)
	if err == nil {
		_, err = dp.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		t.Fatal(err)
	}
	_, err = lgws.Get(e.ctx, "rg", "office", nil)
	testkit.WantARMError(t, err, 404, "ResourceNotFound")
}
