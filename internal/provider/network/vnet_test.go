package network

import (
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/testkit"
)

func TestVNetLifecycle(t *testing.T) {
	e := newEnv(t)
	e.group("RG1")
	e.group("rg2")

	v := vnetBody("10.0.0.0/16", "default=10.0.0.0/24")
	v.Location = to.Ptr("West Europe")
	v.Tags = map[string]*string{"env": to.Ptr("test")}
	got := e.mustVNet("rg1", "VNet1", v)
	wantID := "/subscriptions/" + sub + "/resourceGroups/RG1/providers/Microsoft.Network/virtualNetworks/VNet1"
	if str(got.ID) != wantID || str(got.Name) != "VNet1" || str(got.Type) != "Microsoft.Network/virtualNetworks" {
		t.Fatalf("envelope = %s %s %s", str(got.ID), str(got.Name), str(got.Type))
	}
	if str(got.Location) != "westeurope" {
		t.Errorf("location = %q, want westeurope", str(got.Location))
	}
	if !strings.HasPrefix(str(got.Etag), `W/"`) {
		t.Errorf("etag = %q", str(got.Etag))
	}
	p := got.Properties
	if p == nil || str((*string)(p.ProvisioningState)) != "Succeeded" || str(p.ResourceGUID) == "" {
		t.Fatalf("properties = %+v", p)
	}
	if len(p.Subnets) != 1 || str(p.Subnets[0].Name) != "default" ||
		str(p.Subnets[0].ID) != wantID+"/subnets/default" || str(p.Subnets[0].Type) != typeSubnet {
		t.Fatalf("subnets = %+v", p.Subnets)
	}
	sp := p.Subnets[0].Properties
	if str((*string)(sp.PrivateEndpointNetworkPolicies)) != "Disabled" || str((*string)(sp.PrivateLinkServiceNetworkPolicies)) != "Enabled" {
		t.Errorf("subnet policies = %v %v, want Disabled Enabled", str((*string)(sp.PrivateEndpointNetworkPolicies)), str((*string)(sp.PrivateLinkServiceNetworkPolicies)))
	}

	// Get, in another casing.
	g, err := e.vnets.Get(e.ctx, "rg1", "vnet1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if str(g.Name) != "VNet1" || str(g.Etag) != str(got.Etag) || len(g.Properties.Subnets) != 1 {
		t.Errorf("get = %s %s %d subnets", str(g.Name), str(g.Etag), len(g.Properties.Subnets))
	}

	e.mustVNet("rg2", "vnet2", vnetBody("10.1.0.0/16"))
	inRG := collect(t, e.ctx, e.vnets.NewListPager("rg1", nil), func(p armnetwork.VirtualNetworksClientListResponse) []*armnetwork.VirtualNetwork { return p.Value })
	if len(inRG) != 1 || str(inRG[0].Name) != "VNet1" || len(inRG[0].Properties.Subnets) != 1 {
		t.Errorf("list rg1 = %d vnets", len(inRG))
	}
	all := collect(t, e.ctx, e.vnets.NewListAllPager(nil), func(p armnetwork.VirtualNetworksClientListAllResponse) []*armnetwork.VirtualNetwork { return p.Value })
	if len(all) != 2 {
		t.Errorf("list all = %d vnets, want 2", len(all))
	}

	// Update: a second address prefix, subnets omitted (kept).
	upd := vnetBody("10.0.0.0/16")
	upd.Properties.AddressSpace.AddressPrefixes = append(upd.Properties.AddressSpace.AddressPrefixes, to.Ptr("10.5.0.0/16"))
	u2 := e.mustVNet("rg1", "vnet1", upd)
	if str(u2.Name) != "VNet1" || len(u2.Properties.AddressSpace.AddressPrefixes) != 2 || len(u2.Properties.Subnets) != 1 {
		t.Errorf("update = %s %d prefixes %d subnets", str(u2.Name), len(u2.Properties.AddressSpace.AddressPrefixes), len(u2.Properties.Subnets))
	}
	if str(u2.Etag) == str(got.Etag) {
		t.Error("etag did not change on update")
	}
	if str(u2.Properties.ResourceGUID) != str(p.ResourceGUID) {
		t.Error("resourceGuid changed on update")
	}

	// Tags.
	tg, err := e.vnets.UpdateTags(e.ctx, "rg1", "vnet1", armnetwork.TagsObject{Tags: map[string]*string{"a": to.Ptr("b")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tg.Tags) != 1 || str(tg.Tags["a"]) != "b" || len(tg.Properties.Subnets) != 1 {
		t.Errorf("tags = %v", tg.Tags)
	}

	// If-Match with a stale etag fails; with the current one passes.
	stale := str(got.Etag)
	path := "/subscriptions/" + sub + "/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/vnet1"
	if code, _ := e.raw(http.MethodDelete, path, "", "If-Match", stale); code != http.StatusPreconditionFailed {
		t.Errorf("delete with stale If-Match = %d, want 412", code)
	}
	if code, _ := e.raw(http.MethodPut, path, `{"location":"westeurope","properties":{"addressSpace":{"addressPrefixes":["10.0.0.0/16"]}}}`,
		"If-None-Match", "*"); code != http.StatusPreconditionFailed {
		t.Errorf("create-only PUT of an existing vnet = %d, want 412", code)
	}
	if code, b := e.raw(http.MethodPatch, path, `{"tags":{"c":"d"}}`, "If-Match", str(tg.Etag)); code != http.StatusOK {
		t.Errorf("PATCH with current If-Match = %d %s", code, b)
	}

	if err := e.deleteVNet("rg1", "vnet1"); err != nil {
		t.Fatal(err)
	}
	_, err = e.vnets.Get(e.ctx, "rg1", "vnet1", nil)
	testkit.WantARMError(t, err, 404, "ResourceNotFound")
	_, err = e.subnet.Get(e.ctx, "rg1", "vnet1", "default", nil)
	testkit.WantARMError(t, err, 404, "ParentResourceNotFound")
	// Deleting again is a 204, which the poller accepts.
	if err := e.deleteVNet("rg1", "vnet1"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func TestVNetValidation(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	withSpace := func(prefixes ...string) armnetwork.VirtualNetwork {
		v := vnetBody(prefixes[0])
		for _, p := range prefixes[1:] {
			v.Properties.AddressSpace.AddressPrefixes = append(v.Properties.AddressSpace.AddressPrefixes, to.Ptr(p))
		}
		return v
	}
	noSpace := vnetBody("10.0.0.0/16")
	noSpace.Properties.AddressSpace = nil
	noLocation := vnetBody("10.0.0.0/16")
	noLocation.Location = nil
	peered := vnetBody("10.0.0.0/16")
	peered.Properties.VirtualNetworkPeerings = []*armnetwork.VirtualNetworkPeering{{Name: to.Ptr("p")}}
	dupSubnet := vnetBody("10.0.0.0/16", "a=10.0.1.0/24", "A=10.0.2.0/24")
	noName := vnetBody("10.0.0.0/16", "a=10.0.1.0/24")
	noName.Properties.Subnets[0].Name = nil
	nilSubnet := vnetBody("10.0.0.0/16")
	nilSubnet.Properties.Subnets = []*armnetwork.Subnet{nil}
	badDNS := vnetBody("10.0.0.0/16")
	badDNS.Properties.DhcpOptions = &armnetwork.DhcpOptions{DNSServers: []*string{to.Ptr("dns.example")}}

	cases := []struct {
		name   string
		vnet   armnetwork.VirtualNetwork
		code   string
		target string
		words  []string
	}{
		{"bad name", vnetBody("10.0.0.0/16"), "InvalidResourceName", "name", nil},
		{"long name", vnetBody("10.0.0.0/16"), "InvalidResourceName", "name", []string{"80 characters"}},
		{"no location", noLocation, "LocationRequired", "location", nil},
		{"no address space", noSpace, codeMissingParameter, "properties.addressSpace.addressPrefixes", nil},
		{"not CIDR", withSpace("10.0.0/16"), codeInvalidPrefixFormat, "properties.addressSpace.addressPrefixes[0]", []string{"10.0.0/16"}},
		{"host bits", withSpace("10.0.0.0/16", "10.1.2.3/16"), codeInvalidCIDR, "properties.addressSpace.addressPrefixes[1]", []string{"should be 10.1.0.0/16"}},
		{"loopback", withSpace("127.0.0.0/8"), codeInvalidPrefix, "properties.addressSpace.addressPrefixes[0]", []string{"127.0.0.0/8"}},
		{"link-local", withSpace("169.254.0.0/20"), codeInvalidPrefix, "properties.addressSpace.addressPrefixes[0]", []string{"169.254.0.0/16"}},
		{"multicast", withSpace("10.0.0.0/16", "224.1.0.0/16"), codeInvalidPrefix, "properties.addressSpace.addressPrefixes[1]", nil},
		{"broadcast", withSpace("255.255.255.255/32"), codeInvalidPrefix, "properties.addressSpace.addressPrefixes[0]", nil},
		{"azure dns", withSpace("168.63.0.0/16"), codeInvalidPrefix, "properties.addressSpace.addressPrefixes[0]", []string{"168.63.129.16/32"}},
		{"this network", withSpace("0.0.0.0/0"), codeInvalidPrefix, "properties.addressSpace.addressPrefixes[0]", nil},
		{"overlapping prefixes", withSpace("10.0.0.0/16", "10.0.128.0/17"), codeInvalidPrefix, "properties.addressSpace.addressPrefixes[1]", []string{"overlap"}},
		{"subnet outside", vnetBody("10.0.0.0/16", "a=10.1.0.0/24"), codeSubnetOutsideVNet, "properties.subnets[0].properties.addressPrefix", []string{"'a'", "outside"}},
		{"subnets overlap", vnetBody("10.0.0.0/16", "a=10.0.0.0/24", "b=10.0.0.128/25"), codeSubnetsOverlap, "properties.subnets[1].properties.addressPrefix", []string{"'b'", "'a'"}},
		{"subnet host bits", vnetBody("10.0.0.0/16", "a=10.0.0.0/24", "b=10.0.1.7/24"), codeInvalidCIDR, "properties.subnets[1].properties.addressPrefix", []string{"should be 10.0.1.0/24"}},
		{"subnet too small", vnetBody("10.0.0.0/16", "a=10.0.0.0/30"), codeInvalidSubnet, "properties.subnets[0].properties.addressPrefix", []string{"/29"}},
		{"duplicate subnet", dupSubnet, codeInvalidParameter, "properties.subnets[1].name", nil},
		{"subnet without name", noName, codeMissingParameter, "properties.subnets[0].name", nil},
		{"null subnet", nilSubnet, codeMissingParameter, "properties.subnets[0].name", nil},
		{"unknown inline peering", peered, codeUnsupportedInPrivlink, "properties.virtualNetworkPeerings[0]", []string{"child resources"}},
		{"bad dns server", badDNS, codeInvalidParameter, "properties.dhcpOptions.dnsServers[0]", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := "v1"
			switch c.name {
			case "bad name":
				name = "bad!name"
			case "long name":
				name = strings.Repeat("n", 81)
			}
			_, err := e.putVNet("rg", name, c.vnet)
			wantTarget(t, testkit.WantARMError(t, err, 400, c.code), c.target, c.words...)
		})
	}
	// Nothing was written by the failures.
	all := collect(t, e.ctx, e.vnets.NewListAllPager(nil), func(p armnetwork.VirtualNetworksClientListAllResponse) []*armnetwork.VirtualNetwork { return p.Value })
	if len(all) != 0 {
		t.Errorf("%d vnets exist after failed creates", len(all))
	}
	// IPv6 address space with a /64 subnet is fine.
	v6 := vnetBody("10.0.0.0/16", "a=10.0.0.0/24")
	v6.Properties.AddressSpace.AddressPrefixes = append(v6.Properties.AddressSpace.AddressPrefixes, to.Ptr("fd00:db8::/48"))
	v6.Properties.Subnets[0].Properties = &armnetwork.SubnetPropertiesFormat{AddressPrefixes: []*string{to.Ptr("10.0.0.0/24"), to.Ptr("fd00:db8::/64")}}
	if _, err := e.putVNet("rg", "dual", v6); err != nil {
		t.Fatalf("dual-stack vnet: %v", err)
	}
}

func TestVNetSubnetsSemantics(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/24", "b=10.0.2.0/24"))

	// Omitted: kept.
	got := e.mustVNet("rg", "v", vnetBody("10.0.0.0/16"))
	if names := subnetNames(got); names != "a,b" {
		t.Fatalf("omitted subnets: got %s, want a,b", names)
	}
	// A list replaces the set: b dropped, c added, a updated.
	got = e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/25", "c=10.0.3.0/24"))
	if names := subnetNames(got); names != "a,c" {
		t.Fatalf("replaced subnets: got %s, want a,c", names)
	}
	if pf := str(got.Properties.Subnets[0].Properties.AddressPrefix); pf != "10.0.1.0/25" {
		t.Errorf("a's prefix = %s", pf)
	}
	if _, err := e.subnet.Get(e.ctx, "rg", "v", "b", nil); err == nil {
		t.Error("dropped subnet b still exists")
	} else {
		testkit.WantARMError(t, err, 404, "NotFound")
	}
	// null deletes them all.
	path := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v"
	code, body := e.raw(http.MethodPut, path, `{"location":"westeurope","properties":{"addressSpace":{"addressPrefixes":["10.0.0.0/16"]},"subnets":null}}`)
	if code != http.StatusOK {
		t.Fatalf("PUT subnets:null = %d %s", code, body)
	}
	g, err := e.vnets.Get(e.ctx, "rg", "v", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Properties.Subnets) != 0 {
		t.Fatalf("subnets after null: %s", subnetNames(g.VirtualNetwork))
	}
	// [] deletes them all too.
	e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/24"))
	empty := vnetBody("10.0.0.0/16")
	empty.Properties.Subnets = []*armnetwork.Subnet{}
	if got := e.mustVNet("rg", "v", empty); len(got.Properties.Subnets) != 0 {
		t.Fatalf("subnets after []: %s", subnetNames(got))
	}

	// A subnet with a NIC cannot be dropped by a PUT, nor its VNet shrunk
	// away from it, nor the VNet deleted.
	e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/24", "b=10.0.2.0/24"))
	nic := e.mustNIC("rg", "nic1", nicBody(subnetID("rg", "v", "b")))
	_, err = e.putVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/24"))
	wantTarget(t, testkit.WantARMError(t, err, 400, codeSubnetInUse), "", "b", str(nic.Properties.IPConfigurations[0].ID))
	_, err = e.putVNet("rg", "v", empty)
	testkit.WantARMError(t, err, 400, codeSubnetInUse)
	_, err = e.putVNet("rg", "v", vnetBody("10.0.0.0/23"))
	wantTarget(t, testkit.WantARMError(t, err, 400, codeSubnetOutsideVNet), "properties.addressSpace.addressPrefixes", "'b'", "10.0.2.0/24")
	err = e.deleteVNet("rg", "v")
	testkit.WantARMError(t, err, 400, codeSubnetInUse)
	// Dropping a, keeping b with its NIC, works.
	got = e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "b=10.0.2.0/24"))
	if names := subnetNames(got); names != "b" {
		t.Fatalf("got %s, want b", names)
	}
	if ics := got.Properties.Subnets[0].Properties.IPConfigurations; len(ics) != 1 ||
		!strings.EqualFold(str(ics[0].ID), str(nic.Properties.IPConfigurations[0].ID)) {
		t.Errorf("b's ipConfigurations = %v", ics)
	}
	// Shrinking b under its NIC's address is refused.
	_, err = e.putVNet("rg", "v", vnetBody("10.0.0.0/16", "b=10.0.2.128/25"))
	wantTarget(t, testkit.WantARMError(t, err, 400, codeInvalidSubnet), "properties.subnets[0].properties.addressPrefix", ipOf(nic))
	if err := e.deleteNIC("rg", "nic1"); err != nil {
		t.Fatal(err)
	}
	if err := e.deleteVNet("rg", "v"); err != nil {
		t.Fatalf("delete after NIC gone: %v", err)
	}
}

func subnetNames(v armnetwork.VirtualNetwork) string {
	var names []string
	if v.Properties != nil {
		for _, s := range v.Properties.Subnets {
			names = append(names, str(s.Name))
		}
	}
	return strings.Join(names, ",")
}
