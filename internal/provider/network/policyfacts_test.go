package network

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/policy"
)

// TestPolicyNetwork builds a network through the API and checks that the
// policy model read from its documents decides as its rules say.
func TestPolicyNetwork(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	asg := e.mustASG("rg", "web")
	deny := ruleProps(100)
	deny.SourceAddressPrefix = to.Ptr("10.0.1.4")
	deny.Access = to.Ptr(armnetwork.SecurityRuleAccessDeny)
	toWeb := ruleProps(200)
	toWeb.DestinationAddressPrefix = nil
	toWeb.DestinationApplicationSecurityGroups = []*armnetwork.ApplicationSecurityGroup{{ID: asg.ID}}
	toWeb.DestinationPortRange, toWeb.DestinationPortRanges = nil, []*string{to.Ptr("8000-8100"), to.Ptr("9000")}
	toWeb.Access = to.Ptr(armnetwork.SecurityRuleAccessDeny)
	nsg := e.mustNSG("rg", "nsg", &armnetwork.SecurityRule{Name: to.Ptr("deny-c1"), Properties: deny},
		&armnetwork.SecurityRule{Name: to.Ptr("deny-web"), Properties: toWeb})
	if _, err := e.putTable("rg", "rt", armnetwork.RouteTable{Location: to.Ptr("westeurope")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.putRoute("rg", "rt", "blackhole", armnetwork.Route{Properties: &armnetwork.RoutePropertiesFormat{
		AddressPrefix: to.Ptr("10.0.9.0/24"), NextHopType: to.Ptr(armnetwork.RouteNextHopTypeNone)}}); err != nil {
		t.Fatal(err)
	}
	v := vnetBody("10.0.0.0/16", "clients=10.0.1.0/24", "servers=10.0.2.0/24")
	v.Properties.Subnets[1].Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: nsg.ID}
	v.Properties.Subnets[0].Properties.RouteTable = &armnetwork.RouteTable{ID: to.Ptr(resID("rg", "routeTables", "rt"))}
	e.mustVNet("rg", "v", v)
	e.mustNIC("rg", "c1", staticNIC(subnetID("rg", "v", "clients"), "10.0.1.4"))
	e.mustNIC("rg", "c2", staticNIC(subnetID("rg", "v", "clients"), "10.0.1.5"))
	web := staticNIC(subnetID("rg", "v", "servers"), "10.0.2.4")
	web.Properties.IPConfigurations[0].Properties.ApplicationSecurityGroups = []*armnetwork.ApplicationSecurityGroup{{ID: asg.ID}}
	e.mustNIC("rg", "web1", web)
	e.mustNIC("rg", "db1", staticNIC(subnetID("rg", "v", "servers"), "10.0.2.5"))

	vnet, _ := arm.ParseID(resID("rg", "virtualNetworks", "v"))
	n, err := PolicyNetwork(arm.ReadOnly(e.ctx, e.st), vnet)
	if err != nil || n == nil {
		t.Fatalf("PolicyNetwork = %v, %v", n, err)
	}
	if len(n.NICs) != 4 || len(n.Subnets) != 2 || len(n.NSGs) != 1 {
		t.Fatalf("facts: %d NICs, %d subnets, %d NSGs", len(n.NICs), len(n.Subnets), len(n.NSGs))
	}
	tcp := func(src, dst string, port uint16) policy.Flow {
		return policy.Flow{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Protocol: policy.TCP, SrcPort: 40000, DstPort: port}
	}
	for _, tc := range []struct {
		f    policy.Flow
		want policy.Outcome
		rule string
	}{
		{tcp("10.0.1.4", "10.0.2.5", 5432), policy.Denied, "deny-c1"},
		{tcp("10.0.1.5", "10.0.2.5", 5432), policy.Delivered, "AllowVnetInBound"},
		{tcp("10.0.1.5", "10.0.2.4", 8050), policy.Denied, "deny-web"},
		{tcp("10.0.1.5", "10.0.2.4", 9000), policy.Denied, "deny-web"},
		{tcp("10.0.1.5", "10.0.2.5", 9000), policy.Delivered, "AllowVnetInBound"},
		{tcp("10.0.1.5", "10.0.9.1", 80), policy.Dropped, ""}, // the clients subnet has no NSG
	} {
		v, err := n.Decide(tc.f)
		if err != nil {
			t.Fatal(err)
		}
		rule := ""
		if r := v.Rule(); r != nil {
			rule = r.Name
		}
		if v.Outcome != tc.want || rule != tc.rule {
			t.Errorf("%s: %s, want %s by %s", tc.f, v, tc.want, tc.rule)
		}
	}
	if r := n.NextHop(lkey(subnetID("rg", "v", "clients")), netip.MustParseAddr("10.0.9.1")); r.Source != policy.SourceUser || r.Name != "blackhole" {
		t.Errorf("route = %+v", r)
	}
}

// TestEffectiveRulesAndRoutes reads a NIC's effective security rules and
// routes through the SDK's long-running calls.
func TestEffectiveRulesAndRoutes(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	deny := ruleProps(100)
	deny.Access = to.Ptr(armnetwork.SecurityRuleAccessDeny)
	nsg := e.mustNSG("rg", "nsg", &armnetwork.SecurityRule{Name: to.Ptr("deny-pg"), Properties: deny})
	if _, err := e.putTable("rg", "rt", armnetwork.RouteTable{Location: to.Ptr("westeurope"), Properties: &armnetwork.RouteTablePropertiesFormat{
		Routes: []*armnetwork.Route{{Name: to.Ptr("nva"), Properties: &armnetwork.RoutePropertiesFormat{AddressPrefix: to.Ptr("10.0.5.0/24"),
			NextHopType: to.Ptr(armnetwork.RouteNextHopTypeVirtualAppliance), NextHopIPAddress: to.Ptr("10.0.1.10")}}}}}); err != nil {
		t.Fatal(err)
	}
	v := vnetBody("10.0.0.0/16", "clients=10.0.1.0/24")
	v.Properties.Subnets[0].Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: nsg.ID}
	v.Properties.Subnets[0].Properties.RouteTable = &armnetwork.RouteTable{ID: to.Ptr(resID("rg", "routeTables", "rt"))}
	e.mustVNet("rg", "v", v)
	e.mustNIC("rg", "c1", nicBody(subnetID("rg", "v", "clients")))

	p, err := e.nics.BeginListEffectiveNetworkSecurityGroups(e.ctx, "rg", "c1", nil)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := p.PollUntilDone(e.ctx, poll)
	if err != nil {
		t.Fatal(err)
	}
	if len(groups.Value) != 1 || lkey(str(groups.Value[0].NetworkSecurityGroup.ID)) != lkey(str(nsg.ID)) ||
		groups.Value[0].Association.Subnet == nil {
		t.Fatalf("effective NSGs = %+v", groups.Value)
	}
	var names []string
	for _, r := range groups.Value[0].EffectiveSecurityRules {
		names = append(names, str(r.Name))
	}
	want := []string{"securityRules/deny-pg", "defaultSecurityRules/AllowVnetInBound", "defaultSecurityRules/AllowAzureLoadBalancerInBound",
		"defaultSecurityRules/DenyAllInBound", "defaultSecurityRules/AllowVnetOutBound", "defaultSecurityRules/AllowInternetOutBound", "defaultSecurityRules/DenyAllOutBound"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("rules = %v", names)
	}
	first := groups.Value[0].EffectiveSecurityRules[0]
	if len(first.ExpandedSourceAddressPrefix) != 1 || str(first.ExpandedSourceAddressPrefix[0]) != "10.0.0.0/16" || str(first.DestinationPortRanges[0]) != "5432-5432" {
		t.Errorf("deny-pg = %+v (VirtualNetwork must expand to the space)", first)
	}

	rp, err := e.nics.BeginGetEffectiveRouteTable(e.ctx, "rg", "c1", nil)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := rp.PollUntilDone(e.ctx, poll)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range routes.Value {
		got[str(r.AddressPrefix[0])] = string(*r.NextHopType) + "/" + string(*r.Source)
	}
	for prefix, hop := range map[string]string{"10.0.0.0/16": "VnetLocal/Default", "0.0.0.0/0": "Internet/Default",
		"10.0.5.0/24": "VirtualAppliance/User", "192.168.0.0/16": "None/Default"} {
		if got[prefix] != hop {
			t.Errorf("route %s = %q, want %s (all: %v)", prefix, got[prefix], hop, got)
		}
	}
}
