package datapath

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/arm/armtest"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/names"
	"github.com/privlink/privlink/internal/provider/network"
	"github.com/privlink/privlink/internal/provider/privatelink"
	"github.com/privlink/privlink/internal/store"
)

// TestPlannerServices: a private link service's NAT NIC gets a link
// address of the SNAT range, its frontend's Tcp rule ports (not the Udp
// one), and an Approved endpoint to it translates toward the NIC there;
// with enableProxyProtocol the endpoint is relayed instead (a relay route
// listening on its address, dialling the frontend from the NAT IP, with
// the connection's link ID).
func TestPlannerServices(t *testing.T) {
	ctx, st, srv := plannerStore(t, func(st store.Store) []*arm.ResourceType {
		return network.New(st, network.WithTargets(privatelink.NewKinds(network.ServiceKind))).Types()
	})
	sub := armtest.Subscription
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	base := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Network/"
	nf, err := armnetwork.NewClientFactory(sub, srv.Cred, srv.Options)
	must(err)
	p, err := nf.NewVirtualNetworksClient().BeginCreateOrUpdate(ctx, "rg", "vnet", armnetwork.VirtualNetwork{Location: to.Ptr("westeurope"),
		Properties: &armnetwork.VirtualNetworkPropertiesFormat{
			AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{to.Ptr("10.0.0.0/16")}},
			Subnets: []*armnetwork.Subnet{
				{Name: to.Ptr("be"), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr("10.0.1.0/24")}},
				{Name: to.Ptr("endpoints"), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr("10.0.2.0/24")}},
				{Name: to.Ptr("nat"), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr("10.0.5.0/24"),
					PrivateLinkServiceNetworkPolicies: to.Ptr(armnetwork.VirtualNetworkPrivateLinkServiceNetworkPoliciesDisabled)}}}}}, nil)
	must(done(ctx, p, err))
	lbID := base + "loadBalancers/lb"
	rule := func(name string, proto armnetwork.TransportProtocol, port int32) *armnetwork.LoadBalancingRule {
		return &armnetwork.LoadBalancingRule{Name: to.Ptr(name), Properties: &armnetwork.LoadBalancingRulePropertiesFormat{
			Protocol: to.Ptr(proto), FrontendPort: to.Ptr(port), BackendPort: to.Ptr(port),
			FrontendIPConfiguration: &armnetwork.SubResource{ID: to.Ptr(lbID + "/frontendIPConfigurations/fe")},
			BackendAddressPool:      &armnetwork.SubResource{ID: to.Ptr(lbID + "/backendAddressPools/be")}}}
	}
	lp, err := nf.NewLoadBalancersClient().BeginCreateOrUpdate(ctx, "rg", "lb", armnetwork.LoadBalancer{Location: to.Ptr("westeurope"),
		SKU: &armnetwork.LoadBalancerSKU{Name: to.Ptr(armnetwork.LoadBalancerSKUNameStandard)},
		Properties: &armnetwork.LoadBalancerPropertiesFormat{
			FrontendIPConfigurations: []*armnetwork.FrontendIPConfiguration{{Name: to.Ptr("fe"), Properties: &armnetwork.FrontendIPConfigurationPropertiesFormat{
				Subnet: &armnetwork.Subnet{ID: to.Ptr(base + "virtualNetworks/vnet/subnets/be")}, PrivateIPAllocationMethod: to.Ptr(armnetwork.IPAllocationMethodStatic),
				PrivateIPAddress: to.Ptr("10.0.1.100")}}},
			BackendAddressPools: []*armnetwork.BackendAddressPool{{Name: to.Ptr("be")}},
			LoadBalancingRules:  []*armnetwork.LoadBalancingRule{rule("web", armnetwork.TransportProtocolTCP, 443), rule("pg", armnetwork.TransportProtocolTCP, 5432), rule("dns", armnetwork.TransportProtocolUDP, 53)},
		}}, nil)
	must(done(ctx, lp, err))
	service := func(proxy bool) {
		t.Helper()
		sp, err := nf.NewPrivateLinkServicesClient().BeginCreateOrUpdate(ctx, "rg", "svc", armnetwork.PrivateLinkService{Location: to.Ptr("westeurope"),
			Properties: &armnetwork.PrivateLinkServiceProperties{
				LoadBalancerFrontendIPConfigurations: []*armnetwork.FrontendIPConfiguration{{ID: to.Ptr(lbID + "/frontendIPConfigurations/fe")}},
				IPConfigurations: []*armnetwork.PrivateLinkServiceIPConfiguration{{Name: to.Ptr("nat"), Properties: &armnetwork.PrivateLinkServiceIPConfigurationProperties{
					Primary: to.Ptr(true), Subnet: &armnetwork.Subnet{ID: to.Ptr(base + "virtualNetworks/vnet/subnets/nat")},
					PrivateIPAllocationMethod: to.Ptr(armnetwork.IPAllocationMethodStatic), PrivateIPAddress: to.Ptr("10.0.5.10")}}},
				EnableProxyProtocol: to.Ptr(proxy)}}, nil)
		must(done(ctx, sp, err))
	}
	service(false)
	svcID := base + "privateLinkServices/svc"
	ep, err := nf.NewPrivateEndpointsClient().BeginCreateOrUpdate(ctx, "rg", "pe1", armnetwork.PrivateEndpoint{Location: to.Ptr("westeurope"),
		Properties: &armnetwork.PrivateEndpointProperties{Subnet: &armnetwork.Subnet{ID: to.Ptr(base + "virtualNetworks/vnet/subnets/endpoints")},
			PrivateLinkServiceConnections: []*armnetwork.PrivateLinkServiceConnection{{Name: to.Ptr("pe1"),
				Properties: &armnetwork.PrivateLinkServiceConnectionProperties{PrivateLinkServiceID: to.Ptr(svcID)}}}}}, nil)
	must(done(ctx, ep, err))
	conns, err := nf.NewPrivateLinkServicesClient().NewListPrivateEndpointConnectionsPager("rg", "svc", nil).NextPage(ctx)
	must(err)
	if len(conns.Value) != 1 {
		t.Fatalf("connections: %+v", conns.Value)
	}
	link, ok := privatelink.ParseLinkIdentifier(*conns.Value[0].Properties.LinkIdentifier)
	if !ok {
		t.Fatalf("link identifier %q", *conns.Value[0].Properties.LinkIdentifier)
	}

	planner := NewPlanner(st)
	want, err := planner.Desired(ctx)
	must(err)
	if len(want.Services) != 1 {
		t.Fatalf("services %+v, want svc's NAT NIC", want.Services)
	}
	var nat *ServiceNIC
	for _, s := range want.Services {
		nat = s
	}
	front := netip.MustParseAddr("10.0.1.100")
	wantPorts := []fabric.LinkServicePort{{Port: 443, Frontend: front}, {Port: 5432, Frontend: front}}
	if !strings.EqualFold(nat.ID.String(), svcID) || nat.NATIP != netip.MustParseAddr("10.0.5.10") || !snatPrefix.Contains(nat.Addr) || !slices.Equal(nat.Ports, wantPorts) {
		t.Errorf("svc's NAT NIC %+v, want NAT IP 10.0.5.10, a link address in %s, ports %v", nat, snatPrefix, wantPorts)
	}
	snats := snatRecords(t, ctx, st)
	if snats[strings.ToLower(svcID)] != nat.Addr {
		t.Errorf("svc's link address %s, stored %v", nat.Addr, snats)
	}
	vnetID, err := arm.ParseID(base + "virtualNetworks/vnet")
	must(err)
	vnet := names.Key(vnetID)
	eps := want.Networks[vnet].Endpoints
	if len(eps) != 1 || eps[0].ServiceKind != fabric.KindNIC || eps[0].Service != nat.NIC || eps[0].ServiceAddr != nat.Addr ||
		!slices.Equal(eps[0].Ports, []uint16{443, 5432}) || eps[0].SNAT == nat.Addr || eps[0].Relay || len(want.Relays) != 0 {
		t.Fatalf("vnet's translations %+v, relays %+v: want pe1 toward svc's NAT NIC on 443 and 5432, not relayed", eps, want.Relays)
	}

	// With PROXY protocol: relayed.
	service(true)
	want, err = planner.Desired(ctx)
	must(err)
	eps = want.Networks[vnet].Endpoints
	if len(eps) != 1 || !eps[0].Relay || len(want.Relays) != 2 {
		t.Fatalf("vnet's translations %+v, relays %+v: want pe1 relayed on two ports", eps, want.Relays)
	}
	for i, r := range want.Relays {
		port := wantPorts[i].Port
		if r.Network != vnet || r.Listen != netip.AddrPortFrom(eps[0].Endpoint, port) || r.NIC != nat.NIC || r.Source != nat.NATIP ||
			r.Upstream != netip.AddrPortFrom(front, port) || r.LinkID != link || r.Translation != eps[0].Name {
			t.Errorf("relay %+v: want pe1's address:%d from %s to the frontend, link ID %d", r, port, nat.NATIP, link)
		}
	}
}
