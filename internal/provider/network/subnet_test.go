package network

import (
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/testkit"
)

func TestSubnetLifecycle(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	v := e.mustVNet("rg", "v", vnetBody("10.0.0.0/16"))
	nsg := e.mustNSG("rg", "nsg1")
	rt, err := e.putTable("rg", "rt1", armnetwork.RouteTable{Location: to.Ptr("westeurope")})
	if err != nil {
		t.Fatal(err)
	}

	in := armnetwork.Subnet{Properties: &armnetwork.SubnetPropertiesFormat{
		AddressPrefix:                  to.Ptr("10.0.1.0/24"),
		NetworkSecurityGroup:           &armnetwork.SecurityGroup{ID: to.Ptr(strings.ToLower(str(nsg.ID)))},
		RouteTable:                     &armnetwork.RouteTable{ID: rt.ID},
		PrivateEndpointNetworkPolicies: to.Ptr(armnetwork.VirtualNetworkPrivateEndpointNetworkPolicies("enabled")),
		Delegations: []*armnetwork.Delegation{{Name: to.Ptr("pg"), Properties: &armnetwork.ServiceDelegationPropertiesFormat{
			ServiceName: to.Ptr("Microsoft.DBforPostgreSQL/flexibleServers")}}},
		ServiceEndpoints: []*armnetwork.ServiceEndpointPropertiesFormat{{Service: to.Ptr("Microsoft.Storage")}},
	}}
	s, err := e.putSubnet("rg", "v", "Sub1", in)
	if err != nil {
		t.Fatal(err)
	}
	p := s.Properties
	if str(s.ID) != str(v.ID)+"/subnets/Sub1" || str(s.Type) != typeSubnet || str((*string)(p.ProvisioningState)) != "Succeeded" {
		t.Fatalf("subnet = %s %s", str(s.ID), str(s.Type))
	}
	if str(p.NetworkSecurityGroup.ID) != str(nsg.ID) {
		t.Errorf("nsg ref = %s, want the canonical %s", str(p.NetworkSecurityGroup.ID), str(nsg.ID))
	}
	if str((*string)(p.PrivateEndpointNetworkPolicies)) != "Enabled" {
		t.Errorf("privateEndpointNetworkPolicies = %s, want Enabled", str((*string)(p.PrivateEndpointNetworkPolicies)))
	}
	if len(p.Delegations) != 1 || str(p.Delegations[0].ID) != str(s.ID)+"/delegations/pg" ||
		len(p.Delegations[0].Properties.Actions) != 1 {
		t.Errorf("delegations = %+v", p.Delegations[0])
	}
	if len(p.ServiceEndpoints) != 1 || len(p.ServiceEndpoints[0].Locations) != 1 || str(p.ServiceEndpoints[0].Locations[0]) != "westeurope" {
		t.Errorf("service endpoints = %+v", p.ServiceEndpoints)
	}

	// The association shows on the NSG and the route table.
	gn, err := e.nsgs.Get(e.ctx, "rg", "nsg1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(gn.Properties.Subnets) != 1 || str(gn.Properties.Subnets[0].ID) != str(s.ID) {
		t.Errorf("nsg subnets = %v", gn.Properties.Subnets)
	}
	gt, err := e.tables.Get(e.ctx, "rg", "rt1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(gt.Properties.Subnets) != 1 || str(gt.Properties.Subnets[0].ID) != str(s.ID) {
		t.Errorf("route table subnets = %v", gt.Properties.Subnets)
	}
	// And the subnet shows inline on its VNet, whose etag changed.
	gv, err := e.vnets.Get(e.ctx, "rg", "v", nil)
	if err != nil {
		t.Fatal(err)
	}
	if names := subnetNames(gv.VirtualNetwork); names != "Sub1" {
		t.Errorf("inline subnets = %s", names)
	}
	if str(gv.Etag) == str(v.Etag) {
		t.Error("vnet etag unchanged by a subnet write")
	}

	// Get, list, update (dropping the associations), delete.
	g, err := e.subnet.Get(e.ctx, "rg", "v", "sub1", nil)
	if err != nil || str(g.Name) != "Sub1" {
		t.Fatalf("get = %v %v", str(g.Name), err)
	}
	e.putSubnet("rg", "v", "b", armnetwork.Subnet{Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefixes: []*string{to.Ptr("10.0.2.0/24")}}})
	list := collect(t, e.ctx, e.subnet.NewListPager("rg", "v", nil), func(p armnetwork.SubnetsClientListResponse) []*armnetwork.Subnet { return p.Value })
	if len(list) != 2 {
		t.Errorf("list = %d subnets", len(list))
	}
	u, err := e.putSubnet("rg", "v", "sub1", armnetwork.Subnet{Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr("10.0.1.0/25")}})
	if err != nil {
		t.Fatal(err)
	}
	if str(u.Name) != "Sub1" || u.Properties.NetworkSecurityGroup != nil || str((*string)(u.Properties.PrivateEndpointNetworkPolicies)) != "Disabled" {
		t.Errorf("update = %s %v", str(u.Name), u.Properties.NetworkSecurityGroup)
	}
	if gn, _ := e.nsgs.Get(e.ctx, "rg", "nsg1", nil); len(gn.Properties.Subnets) != 0 {
		t.Errorf("nsg still lists %d subnets", len(gn.Properties.Subnets))
	}
	if err := e.deleteSubnet("rg", "v", "sub1"); err != nil {
		t.Fatal(err)
	}
	_, err = e.subnet.Get(e.ctx, "rg", "v", "sub1", nil)
	testkit.WantARMError(t, err, 404, "NotFound")
	if err := e.deleteSubnet("rg", "v", "sub1"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	_, err = e.subnet.Get(e.ctx, "rg", "nope", "sub1", nil)
	testkit.WantARMError(t, err, 404, "ParentResourceNotFound")
}

func TestSubnetValidation(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.group("other")
	e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/24"))
	e.mustNSG("rg", "nsg1")
	east := armnetwork.SecurityGroup{Location: to.Ptr("eastus"), Properties: &armnetwork.SecurityGroupPropertiesFormat{}}
	if _, err := e.putNSG("rg", "east", east); err != nil {
		t.Fatal(err)
	}
	prefix := func(p string) *armnetwork.SubnetPropertiesFormat {
		return &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr(p)}
	}
	with := func(p string, f func(*armnetwork.SubnetPropertiesFormat)) armnetwork.Subnet {
		props := prefix(p)
		f(props)
		return armnetwork.Subnet{Properties: props}
	}
	cases := []struct {
		name   string
		subnet armnetwork.Subnet
		code   string
		target string
		words  []string
	}{
		{"no properties", armnetwork.Subnet{}, codeMissingParameter, "properties.addressPrefix", nil},
		{"no prefix", armnetwork.Subnet{Properties: &armnetwork.SubnetPropertiesFormat{}}, codeMissingParameter, "properties.addressPrefix", nil},
		{"both prefixes", with("10.0.2.0/24", func(p *armnetwork.SubnetPropertiesFormat) {
			p.AddressPrefixes = []*string{to.Ptr("10.0.2.0/24")}
		}), codeInvalidParameter, "properties.addressPrefixes", nil},
		{"garbage", armnetwork.Subnet{Properties: prefix("ten/24")}, codeInvalidPrefixFormat, "properties.addressPrefix", nil},
		{"host bits", armnetwork.Subnet{Properties: prefix("10.0.2.1/24")}, codeInvalidCIDR, "properties.addressPrefix", []string{"10.0.2.0/24"}},
		{"host bits in list", armnetwork.Subnet{Properties: &armnetwork.SubnetPropertiesFormat{
			AddressPrefixes: []*string{to.Ptr("10.0.2.0/24"), to.Ptr("10.0.3.9/24")}}}, codeInvalidCIDR, "properties.addressPrefixes[1]", nil},
		{"too small", armnetwork.Subnet{Properties: prefix("10.0.2.0/30")}, codeInvalidSubnet, "properties.addressPrefix", []string{"/29"}},
		{"outside", armnetwork.Subnet{Properties: prefix("10.9.0.0/24")}, codeSubnetOutsideVNet, "properties.addressPrefix", []string{"10.0.0.0/16"}},
		{"overlap", armnetwork.Subnet{Properties: prefix("10.0.1.128/25")}, codeSubnetsOverlap, "properties.addressPrefix", []string{"'b'", "'a'"}},
		{"bad policy", with("10.0.2.0/24", func(p *armnetwork.SubnetPropertiesFormat) {
			p.PrivateEndpointNetworkPolicies = to.Ptr(armnetwork.VirtualNetworkPrivateEndpointNetworkPolicies("Sometimes"))
		}), codeInvalidRequestFormat, "properties.privateEndpointNetworkPolicies", []string{"NetworkSecurityGroupEnabled"}},
		{"missing nsg", with("10.0.2.0/24", func(p *armnetwork.SubnetPropertiesFormat) {
			p.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: to.Ptr(resID("rg", "networkSecurityGroups", "nope"))}
		}), codeInvalidReference, "properties.networkSecurityGroup.id", []string{"nope", "was not found"}},
		{"nsg in another region", with("10.0.2.0/24", func(p *armnetwork.SubnetPropertiesFormat) {
			p.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: to.Ptr(resID("rg", "networkSecurityGroups", "east"))}
		}), codeInvalidReference, "properties.networkSecurityGroup.id", []string{"same region"}},
		{"nsg id not an id", with("10.0.2.0/24", func(p *armnetwork.SubnetPropertiesFormat) {
			p.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: to.Ptr("nsg1")}
		}), codeLinkedInvalidID, "properties.networkSecurityGroup.id", nil},
		{"nsg id of a vnet", with("10.0.2.0/24", func(p *armnetwork.SubnetPropertiesFormat) {
			p.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: to.Ptr(resID("rg", "virtualNetworks", "v"))}
		}), codeLinkedInvalidID, "properties.networkSecurityGroup.id", nil},
		{"nsg without id", with("10.0.2.0/24", func(p *armnetwork.SubnetPropertiesFormat) {
			p.NetworkSecurityGroup = &armnetwork.SecurityGroup{}
		}), codeLinkedInvalidID, "properties.networkSecurityGroup.id", nil},
		{"missing route table", with("10.0.2.0/24", func(p *armnetwork.SubnetPropertiesFormat) {
			p.RouteTable = &armnetwork.RouteTable{ID: to.Ptr(resID("rg", "routeTables", "nope"))}
		}), codeInvalidReference, "properties.routeTable.id", nil},
		{"nat gateway", with("10.0.2.0/24", func(p *armnetwork.SubnetPropertiesFormat) {
			p.NatGateway = &armnetwork.SubResource{ID: to.Ptr(resID("rg", "natGateways", "ng"))}
		}), codeInvalidReference, "properties.natGateway.id", nil},
		{"delegation without service", with("10.0.2.0/24", func(p *armnetwork.SubnetPropertiesFormat) {
			p.Delegations = []*armnetwork.Delegation{{Name: to.Ptr("d")}}
		}), codeMissingParameter, "properties.delegations[0].properties.serviceName", nil},
		{"nil delegation", with("10.0.2.0/24", func(p *armnetwork.SubnetPropertiesFormat) {
			p.Delegations = []*armnetwork.Delegation{nil}
		}), codeMissingParameter, "properties.delegations[0].name", nil},
		{"service endpoint without service", with("10.0.2.0/24", func(p *armnetwork.SubnetPropertiesFormat) {
			p.ServiceEndpoints = []*armnetwork.ServiceEndpointPropertiesFormat{{}}
		}), codeMissingParameter, "properties.serviceEndpoints[0].service", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.putSubnet("rg", "v", "b", c.subnet)
			wantTarget(t, testkit.WantARMError(t, err, 400, c.code), c.target, c.words...)
		})
	}
	_, err := e.putSubnet("rg", "v", "bad!", armnetwork.Subnet{Properties: prefix("10.0.2.0/24")})
	testkit.WantARMError(t, err, 400, "InvalidResourceName")
	_, err = e.putSubnet("rg", "missing", "b", armnetwork.Subnet{Properties: prefix("10.0.2.0/24")})
	testkit.WantARMError(t, err, 404, "ParentResourceNotFound")
	if list := collect(t, e.ctx, e.subnet.NewListPager("rg", "v", nil), func(p armnetwork.SubnetsClientListResponse) []*armnetwork.Subnet { return p.Value }); len(list) != 1 {
		t.Errorf("%d subnets after failed writes, want 1", len(list))
	}
}

func TestSubnetInUse(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/24"))
	nic := e.mustNIC("rg", "nic1", nicBody(subnetID("rg", "v", "a")))
	icID := str(nic.Properties.IPConfigurations[0].ID)

	s, err := e.subnet.Get(e.ctx, "rg", "v", "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ics := s.Properties.IPConfigurations; len(ics) != 1 || str(ics[0].ID) != icID {
		t.Fatalf("ipConfigurations = %v, want %s", ics, icID)
	}
	err = e.deleteSubnet("rg", "v", "a")
	wantTarget(t, testkit.WantARMError(t, err, 400, codeSubnetInUse), "", "Subnet a is in use by "+icID, "aka.ms/deletesubnet")
	// Resizing so that the NIC's address (10.0.1.4) falls outside is refused.
	_, err = e.putSubnet("rg", "v", "a", armnetwork.Subnet{Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr("10.0.1.128/25")}})
	wantTarget(t, testkit.WantARMError(t, err, 400, codeInvalidSubnet), "properties.addressPrefix", "10.0.1.4")
	// Growing it is fine.
	if _, err := e.putSubnet("rg", "v", "a", armnetwork.Subnet{Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr("10.0.0.0/23")}}); err != nil {
		t.Fatal(err)
	}
	if err := e.deleteNIC("rg", "nic1"); err != nil {
		t.Fatal(err)
	}
	if err := e.deleteSubnet("rg", "v", "a"); err != nil {
		t.Fatalf("delete after NIC gone: %v", err)
	}
}
