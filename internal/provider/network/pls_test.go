package network

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/provider/privatelink"
	"github.com/privlink/privlink/internal/testkit"
)

// The provider's side of the private link service tests: group "prov" in
// sub (owner) with VNet "pvnet" (subnets "nat" and "fe") and a Standard
// internal load balancer "lb" whose frontend "fe" is in subnet "fe".
func (e *peEnv) provider(c *clients, natPolicies armnetwork.VirtualNetworkPrivateLinkServiceNetworkPolicies) {
	e.t.Helper()
	e.providerIn(c, natPolicies, "prov")
}

// providerIn is provider with the load balancer in group lbRG (made if
// it is not "prov").
func (e *peEnv) providerIn(c *clients, natPolicies armnetwork.VirtualNetworkPrivateLinkServiceNetworkPolicies, lbRG string) {
	e.t.Helper()
	e.group(c, "prov")
	if lbRG != "prov" {
		e.group(c, lbRG)
	}
	v := vnetBody("10.0.0.0/16", "nat=10.0.5.0/24", "fe=10.0.6.0/24")
	v.Properties.Subnets[0].Properties.PrivateLinkServiceNetworkPolicies = to.Ptr(natPolicies)
	p, err := c.vnets.BeginCreateOrUpdate(e.ctx, "prov", "pvnet", v, nil)
	if err == nil {
		_, err = p.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		e.t.Fatalf("create provider vnet: %v", err)
	}
	lbID := "/subscriptions/" + sub + "/resourceGroups/" + lbRG + "/providers/Microsoft.Network/loadBalancers/lb"
	lbc, err := armnetwork.NewLoadBalancersClient(sub, token("owner"), e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	lp, err := lbc.BeginCreateOrUpdate(e.ctx, lbRG, "lb", armnetwork.LoadBalancer{
		Location: to.Ptr("westeurope"),
		SKU:      &armnetwork.LoadBalancerSKU{Name: to.Ptr(armnetwork.LoadBalancerSKUNameStandard)},
		Properties: &armnetwork.LoadBalancerPropertiesFormat{
			FrontendIPConfigurations: []*armnetwork.FrontendIPConfiguration{{Name: to.Ptr("fe"),
				Properties: &armnetwork.FrontendIPConfigurationPropertiesFormat{Subnet: &armnetwork.Subnet{ID: to.Ptr(subnetIDIn(sub, "prov", "pvnet", "fe"))}}}},
			BackendAddressPools: []*armnetwork.BackendAddressPool{{Name: to.Ptr("be")}},
			LoadBalancingRules: []*armnetwork.LoadBalancingRule{{Name: to.Ptr("echo"), Properties: &armnetwork.LoadBalancingRulePropertiesFormat{
				Protocol: to.Ptr(armnetwork.TransportProtocolTCP), FrontendPort: to.Ptr[int32](7000), BackendPort: to.Ptr[int32](7000),
				FrontendIPConfiguration: &armnetwork.SubResource{ID: to.Ptr(lbID + "/frontendIPConfigurations/fe")},
				BackendAddressPool:      &armnetwork.SubResource{ID: to.Ptr(lbID + "/backendAddressPools/be")},
			}}},
		},
	}, nil)
	if err == nil {
		_, err = lp.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		e.t.Fatalf("create load balancer: %v", err)
	}
}

func frontendID() string {
	return "/subscriptions/" + sub + "/resourceGroups/prov/providers/Microsoft.Network/loadBalancers/lb/frontendIPConfigurations/fe"
}

// serviceBody is a service behind the frontend with NAT IPs in subnet nat:
// one Dynamic per name in dynamic after a Static primary 10.0.5.10.
func serviceBody(visibility, auto []string, dynamic ...string) armnetwork.PrivateLinkService {
	nat := &armnetwork.Subnet{ID: to.Ptr(subnetIDIn(sub, "prov", "pvnet", "nat"))}
	ipcs := []*armnetwork.PrivateLinkServiceIPConfiguration{{Name: to.Ptr("primary"), Properties: &armnetwork.PrivateLinkServiceIPConfigurationProperties{
		Primary: to.Ptr(true), Subnet: nat, PrivateIPAllocationMethod: to.Ptr(armnetwork.IPAllocationMethodStatic), PrivateIPAddress: to.Ptr("10.0.5.10"),
	}}}
	for _, n := range dynamic {
		ipcs = append(ipcs, &armnetwork.PrivateLinkServiceIPConfiguration{Name: to.Ptr(n), Properties: &armnetwork.PrivateLinkServiceIPConfigurationProperties{
			Primary: to.Ptr(false), Subnet: nat,
		}})
	}
	return armnetwork.PrivateLinkService{
		Location: to.Ptr("westeurope"),
		Properties: &armnetwork.PrivateLinkServiceProperties{
			LoadBalancerFrontendIPConfigurations: []*armnetwork.FrontendIPConfiguration{{ID: to.Ptr(frontendID())}},
			IPConfigurations:                     ipcs,
			Visibility:                           &armnetwork.PrivateLinkServicePropertiesVisibility{Subscriptions: to.SliceOfPtrs(visibility...)},
			AutoApproval:                         &armnetwork.PrivateLinkServicePropertiesAutoApproval{Subscriptions: to.SliceOfPtrs(auto...)},
			Fqdns:                                []*string{to.Ptr("api.provider.example")},
			EnableProxyProtocol:                  to.Ptr(true),
		},
	}
}

func (e *peEnv) putService(who, name string, body armnetwork.PrivateLinkService) (armnetwork.PrivateLinkService, error) {
	c := e.services(who, sub)
	p, err := c.BeginCreateOrUpdate(e.ctx, "prov", name, body, nil)
	if err != nil {
		return armnetwork.PrivateLinkService{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.PrivateLinkService, err
}

func (e *peEnv) services(who, s string) *armnetwork.PrivateLinkServicesClient {
	e.t.Helper()
	c, err := armnetwork.NewPrivateLinkServicesClient(s, token(who), e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// serviceEndpoint is an endpoint in the consumer's subnet to target (an
// ID or an alias), with no groupIds.
func serviceEndpoint(subnet, target string, manual bool) armnetwork.PrivateEndpoint {
	pe := endpointBody(subnet, target, manual, "from the consumer")
	for _, l := range [][]*armnetwork.PrivateLinkServiceConnection{pe.Properties.PrivateLinkServiceConnections, pe.Properties.ManualPrivateLinkServiceConnections} {
		for _, c := range l {
			c.Properties.GroupIDs = nil
		}
	}
	return pe
}

func TestPrivateLinkServiceControlPlane(t *testing.T) {
	e := newPEEnv(t)
	owner, consumer := e.as("owner", sub), e.as("consumer", sub2)
	e.provider(owner, armnetwork.VirtualNetworkPrivateLinkServiceNetworkPoliciesEnabled)

	// The subnet rule.
	_, err := e.putService("owner", "svc", serviceBody(nil, nil))
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codePLSSubnetPolicies),
		"properties.ipConfigurations[0].properties.subnet.id", "network policies enabled")
	sp, err := owner.subnets.BeginCreateOrUpdate(e.ctx, "prov", "pvnet", "nat", armnetwork.Subnet{Properties: &armnetwork.SubnetPropertiesFormat{
		AddressPrefix: to.Ptr("10.0.5.0/24"), PrivateLinkServiceNetworkPolicies: to.Ptr(armnetwork.VirtualNetworkPrivateLinkServiceNetworkPoliciesDisabled),
	}}, nil)
	if err == nil {
		_, err = sp.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		t.Fatal(err)
	}

	// Bad bodies.
	nine := serviceBody(nil, nil, "a", "b", "c", "d", "e", "f", "g", "h")
	_, err = e.putService("owner", "svc", nine)
	testkit.WantARMError(t, err, http.StatusBadRequest, codeTooManyNATIPs)
	second := serviceBody(nil, nil, "a")
	second.Properties.IPConfigurations[0].Properties.Primary, second.Properties.IPConfigurations[1].Properties.Primary = to.Ptr(false), to.Ptr(true)
	_, err = e.putService("owner", "svc", second)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codePrimaryNATIP), "properties.ipConfigurations[0].properties.primary")
	noFE := serviceBody(nil, nil)
	noFE.Properties.LoadBalancerFrontendIPConfigurations[0].ID = to.Ptr(strings.Replace(frontendID(), "/fe", "/nope", 1))
	_, err = e.putService("owner", "svc", noFE)
	testkit.WantARMError(t, err, http.StatusBadRequest, codeFrontendNotFound)
	badSub := serviceBody([]string{"not-a-guid"}, nil)
	_, err = e.putService("owner", "svc", badSub)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codeInvalidParameter), "properties.visibility.subscriptions[0]")
	invisibleAuto := serviceBody(nil, []string{sub2})
	_, err = e.putService("owner", "svc", invisibleAuto)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codeInvalidParameter), "properties.autoApproval.subscriptions[0]")

	// A service with two NAT IPs, visible to its own subscription only.
	svc, err := e.putService("owner", "svc", serviceBody(nil, nil, "second"))
	if err != nil {
		t.Fatal(err)
	}
	alias := str(svc.Properties.Alias)
	if !regexp.MustCompile(`^svc\.[0-9a-f-]{36}\.westeurope\.azure\.privatelinkservice$`).MatchString(alias) {
		t.Fatalf("alias = %q", alias)
	}
	ips := svc.Properties.IPConfigurations
	if len(ips) != 2 || str(ips[0].Properties.PrivateIPAddress) != "10.0.5.10" || !*ips[0].Properties.Primary ||
		str(ips[1].Properties.PrivateIPAddress) != "10.0.5.4" || *ips[1].Properties.Primary {
		t.Fatalf("NAT IPs = %s", jsonOf(t, ips))
	}
	if len(svc.Properties.NetworkInterfaces) != 1 {
		t.Fatalf("networkInterfaces = %s", jsonOf(t, svc.Properties.NetworkInterfaces))
	}
	nicID, err := arm.ParseID(str(svc.Properties.NetworkInterfaces[0].ID))
	if err != nil {
		t.Fatal(err)
	}
	nicName := nicID.Name()
	if _, err := owner.nics.BeginDelete(e.ctx, "prov", nicName, nil); err == nil {
		t.Fatal("the service's NIC was deleted by a user")
	} else {
		testkit.WantARMError(t, err, http.StatusBadRequest, codeManagedServiceNIC)
	}
	// A NIC of its own may not take a NAT address.
	_, err = owner.nics.BeginCreateOrUpdate(e.ctx, "prov", "other", staticNIC(subnetIDIn(sub, "prov", "pvnet", "nat"), "10.0.5.10"), nil)
	testkit.WantARMError(t, err, http.StatusBadRequest, codeIPAllocated)
	// Update keeps the alias and the addresses.
	again, err := e.putService("owner", "svc", serviceBody(nil, nil, "second"))
	if err != nil || str(again.Properties.Alias) != alias || str(again.Properties.IPConfigurations[1].Properties.PrivateIPAddress) != "10.0.5.4" {
		t.Fatalf("update: %v %s", err, jsonOf(t, again))
	}

	// The NAT IPs' subnet keeps its policies Disabled.
	_, err = owner.subnets.BeginCreateOrUpdate(e.ctx, "prov", "pvnet", "nat", armnetwork.Subnet{Properties: &armnetwork.SubnetPropertiesFormat{
		AddressPrefix: to.Ptr("10.0.5.0/24"), PrivateLinkServiceNetworkPolicies: to.Ptr(armnetwork.VirtualNetworkPrivateLinkServiceNetworkPoliciesEnabled),
	}}, nil)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codePLSPoliciesInUse), "properties.privateLinkServiceNetworkPolicies", "10.0.5.10")

	// The consumer, in an overlapping space: not visible, by alias or ID.
	e.group(consumer, "cons")
	e.network(consumer, "cons", "cvnet")
	csub := subnetIDIn(sub2, "cons", "cvnet", "pe")
	_, err = e.putEndpoint(consumer, "cons", "pe1", serviceEndpoint(csub, alias, true))
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codeNotVisible),
		"properties.manualPrivateLinkServiceConnections[0].properties.privateLinkServiceId", sub2)
	vis := e.visible(sub2, alias)
	if vis {
		t.Fatal("checkPrivateLinkServiceVisibility: visible before visibility lists the subscription")
	}
	_, err = e.putEndpoint(consumer, "cons", "pe1", serviceEndpoint(csub, "nope.00000000-0000-0000-0000-000000000000.westeurope"+AliasSuffix, true))
	testkit.WantARMError(t, err, http.StatusBadRequest, codeInvalidReference)
	withGroup := serviceEndpoint(csub, alias, true)
	withGroup.Properties.ManualPrivateLinkServiceConnections[0].Properties.GroupIDs = []*string{to.Ptr("postgresqlServer")}
	_, err = e.putEndpoint(consumer, "cons", "pe1", withGroup)
	testkit.WantARMError(t, err, http.StatusBadRequest, codeInvalidGroupID)

	// Visible: Pending, approved by the owner, mirrored.
	if _, err := e.putService("owner", "svc", serviceBody([]string{sub2}, nil, "second")); err != nil {
		t.Fatal(err)
	}
	if !e.visible(sub2, alias) {
		t.Fatal("checkPrivateLinkServiceVisibility: not visible to a listed subscription")
	}
	pe := e.mustEndpoint(consumer, "cons", "pe1", serviceEndpoint(csub, alias, true))
	wantState(t, pe, "Pending", "from the consumer")
	c := pe.Properties.ManualPrivateLinkServiceConnections[0]
	if !strings.EqualFold(str(c.Properties.PrivateLinkServiceID), str(svc.ID)) || len(c.Properties.GroupIDs) != 0 {
		t.Fatalf("endpoint's connection = %s", jsonOf(t, c))
	}
	conns := e.serviceConnections()
	if len(conns) != 1 {
		t.Fatalf("connections = %s", jsonOf(t, conns))
	}
	link := str(conns[0].Properties.LinkIdentifier)
	if _, ok := privatelink.ParseLinkIdentifier(link); !ok {
		t.Fatalf("linkIdentifier = %q", link)
	}
	e.decideService(str(conns[0].Name), "Approved")
	wantState(t, e.getEndpoint(consumer, "cons", "pe1"), "Approved")
	// Reject, re-request: Pending again, the same link ID.
	e.decideService(str(conns[0].Name), "Rejected")
	wantState(t, e.getEndpoint(consumer, "cons", "pe1"), "Rejected")
	wantState(t, e.mustEndpoint(consumer, "cons", "pe1", serviceEndpoint(csub, alias, true)), "Pending")
	if l := str(e.serviceConnections()[0].Properties.LinkIdentifier); l != link {
		t.Errorf("linkIdentifier after a re-request = %s, was %s", l, link)
	}

	// Auto-approval: a new endpoint is Approved at once, and listed.
	if _, err := e.putService("owner", "svc", serviceBody([]string{sub2}, []string{sub2}, "second")); err != nil {
		t.Fatal(err)
	}
	wantState(t, e.mustEndpoint(consumer, "cons", "pe2", serviceEndpoint(csub, str(svc.ID), true)), "Approved", "Auto-Approved")
	auto := collect(t, e.ctx, e.services("consumer", sub2).NewListAutoApprovedPrivateLinkServicesPager("westeurope", nil),
		func(p armnetwork.PrivateLinkServicesClientListAutoApprovedPrivateLinkServicesResponse) []*armnetwork.AutoApprovedPrivateLinkService {
			return p.Value
		})
	if len(auto) != 1 || !strings.EqualFold(str(auto[0].PrivateLinkService), str(svc.ID)) {
		t.Fatalf("autoApprovedPrivateLinkServices = %s", jsonOf(t, auto))
	}
	got, err := e.services("owner", sub).Get(e.ctx, "prov", "svc", nil)
	if err != nil || len(got.Properties.PrivateEndpointConnections) != 2 {
		t.Fatalf("GET service: %v %s", err, jsonOf(t, got))
	}

	// The load balancer the service stands on stays, and so does its
	// frontend; a change that keeps the frontend is fine.
	lbc, err := armnetwork.NewLoadBalancersClient(sub, token("owner"), e.opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lbc.BeginDelete(e.ctx, "prov", "lb", nil)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codeFrontendInUse), "", "in use by private link service", "svc")
	lb, err := lbc.Get(e.ctx, "prov", "lb", nil)
	if err != nil {
		t.Fatal(err)
	}
	moved := lb.LoadBalancer
	moved.Properties.FrontendIPConfigurations[0].Name = to.Ptr("fe2")
	moved.Properties.LoadBalancingRules = nil
	_, err = lbc.BeginCreateOrUpdate(e.ctx, "prov", "lb", moved, nil)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codeFrontendInUse), "", "cannot be removed", "svc")
	lb, _ = lbc.Get(e.ctx, "prov", "lb", nil)
	kept := lb.LoadBalancer
	kept.Properties.LoadBalancingRules[0].Properties.IdleTimeoutInMinutes = to.Ptr[int32](10)
	if p, err := lbc.BeginCreateOrUpdate(e.ctx, "prov", "lb", kept, nil); err != nil {
		t.Fatalf("a change that keeps the service's frontend: %v", err)
	} else if _, err := p.PollUntilDone(e.ctx, poll); err != nil {
		t.Fatal(err)
	}

	// Deleting the service disconnects its endpoints and frees its alias
	// and addresses.
	dp, err := e.services("owner", sub).BeginDelete(e.ctx, "prov", "svc", nil)
	if err == nil {
		_, err = dp.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, e.getEndpoint(consumer, "cons", "pe1"), "Disconnected", "deleted")
	if e.visible(sub2, alias) {
		t.Error("a deleted service's alias is still visible")
	}
	if _, err := owner.nics.Get(e.ctx, "prov", nicName, nil); err == nil {
		t.Error("the deleted service's NIC remains")
	}
	// Without the service, the load balancer goes.
	if p, err := lbc.BeginDelete(e.ctx, "prov", "lb", nil); err != nil {
		t.Fatalf("delete the load balancer after its service: %v", err)
	} else if _, err := p.PollUntilDone(e.ctx, poll); err != nil {
		t.Fatal(err)
	}
}

func (e *peEnv) visible(s, alias string) bool {
	e.t.Helper()
	p, err := e.services("consumer", s).BeginCheckPrivateLinkServiceVisibility(e.ctx, "westeurope",
		armnetwork.CheckPrivateLinkServiceVisibilityRequest{PrivateLinkServiceAlias: to.Ptr(alias)}, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	if err != nil {
		e.t.Fatal(err)
	}
	return res.Visible != nil && *res.Visible
}

func (e *peEnv) serviceConnections() []*armnetwork.PrivateEndpointConnection {
	e.t.Helper()
	return collect(e.t, e.ctx, e.services("owner", sub).NewListPrivateEndpointConnectionsPager("prov", "svc", nil),
		func(p armnetwork.PrivateLinkServicesClientListPrivateEndpointConnectionsResponse) []*armnetwork.PrivateEndpointConnection {
			return p.Value
		})
}

func (e *peEnv) decideService(conn, status string) {
	e.t.Helper()
	_, err := e.services("owner", sub).UpdatePrivateEndpointConnection(e.ctx, "prov", "svc", conn, armnetwork.PrivateEndpointConnection{
		Properties: &armnetwork.PrivateEndpointConnectionProperties{PrivateLinkServiceConnectionState: &armnetwork.PrivateLinkServiceConnectionState{
			Status: to.Ptr(status)}}}, nil)
	if err != nil {
		e.t.Fatalf("%s connection %s: %v", status, conn, err)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%+v", v)
	}
	return string(b)
}
