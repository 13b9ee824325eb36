package network

import (
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/testkit"
)

// lbClients are the SDK's load balancer clients on e's server.
type lbClients struct {
	lbs    *armnetwork.LoadBalancersClient
	fes    *armnetwork.LoadBalancerFrontendIPConfigurationsClient
	pools  *armnetwork.LoadBalancerBackendAddressPoolsClient
	rules  *armnetwork.LoadBalancerLoadBalancingRulesClient
	probes *armnetwork.LoadBalancerProbesClient
}

func (e *env) lbClients() lbClients {
	e.t.Helper()
	f, err := armnetwork.NewClientFactory(sub, e.srv.Cred, e.srv.Options)
	if err != nil {
		e.t.Fatal(err)
	}
	return lbClients{lbs: f.NewLoadBalancersClient(), fes: f.NewLoadBalancerFrontendIPConfigurationsClient(),
		pools: f.NewLoadBalancerBackendAddressPoolsClient(), rules: f.NewLoadBalancerLoadBalancingRulesClient(),
		probes: f.NewLoadBalancerProbesClient()}
}

func (e *env) putLB(rg, name string, lb armnetwork.LoadBalancer) (armnetwork.LoadBalancer, error) {
	p, err := e.lbClients().lbs.BeginCreateOrUpdate(e.ctx, rg, name, lb, nil)
	if err != nil {
		return armnetwork.LoadBalancer{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.LoadBalancer, err
}

func (e *env) deleteLB(rg, name string) error {
	p, err := e.lbClients().lbs.BeginDelete(e.ctx, rg, name, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(e.ctx, poll)
	return err
}

// lbBody is a Standard internal load balancer "lb" of group rg with a
// Dynamic frontend fe in subnet, pool be, a Tcp probe on 8080 and a rule
// 80 → 8080.
func lbBody(rg, subnet string) armnetwork.LoadBalancer {
	id := resID(rg, "loadBalancers", "lb")
	return armnetwork.LoadBalancer{
		Location: to.Ptr("westeurope"),
		SKU:      &armnetwork.LoadBalancerSKU{Name: to.Ptr(armnetwork.LoadBalancerSKUNameStandard)},
		Properties: &armnetwork.LoadBalancerPropertiesFormat{
			FrontendIPConfigurations: []*armnetwork.FrontendIPConfiguration{{Name: to.Ptr("fe"),
				Properties: &armnetwork.FrontendIPConfigurationPropertiesFormat{Subnet: &armnetwork.Subnet{ID: to.Ptr(subnet)}}}},
			BackendAddressPools: []*armnetwork.BackendAddressPool{{Name: to.Ptr("be")}},
			Probes: []*armnetwork.Probe{{Name: to.Ptr("tcp"), Properties: &armnetwork.ProbePropertiesFormat{
				Protocol: to.Ptr(armnetwork.ProbeProtocolTCP), Port: to.Ptr[int32](8080), IntervalInSeconds: to.Ptr[int32](5)}}},
			LoadBalancingRules: []*armnetwork.LoadBalancingRule{{Name: to.Ptr("http"), Properties: &armnetwork.LoadBalancingRulePropertiesFormat{
				Protocol: to.Ptr(armnetwork.TransportProtocolTCP), FrontendPort: to.Ptr[int32](80), BackendPort: to.Ptr[int32](8080),
				FrontendIPConfiguration: &armnetwork.SubResource{ID: to.Ptr(id + "/frontendIPConfigurations/fe")},
				BackendAddressPool:      &armnetwork.SubResource{ID: to.Ptr(id + "/backendAddressPools/be")},
				Probe:                   &armnetwork.SubResource{ID: to.Ptr(id + "/probes/tcp")}}}},
		},
	}
}

// memberNIC is nicBody joining the pools.
func memberNIC(subnet string, pools ...string) armnetwork.Interface {
	n := nicBody(subnet)
	for _, p := range pools {
		n.Properties.IPConfigurations[0].Properties.LoadBalancerBackendAddressPools = append(
			n.Properties.IPConfigurations[0].Properties.LoadBalancerBackendAddressPools, &armnetwork.BackendAddressPool{ID: to.Ptr(p)})
	}
	return n
}

func TestLoadBalancerLifecycle(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/24", "b=10.0.2.0/24"))
	a := subnetID("rg", "v", "a")
	first := e.mustNIC("rg", "first", nicBody(a)) // 10.0.1.4
	lb, err := e.putLB("rg", "lb", lbBody("rg", a))
	if err != nil {
		t.Fatal(err)
	}
	fe := lb.Properties.FrontendIPConfigurations[0]
	// The frontend takes its address from the allocator NICs use: the next
	// free one after the NIC's.
	if got := str(fe.Properties.PrivateIPAddress); ipOf(first) != "10.0.1.4" || got != "10.0.1.5" {
		t.Errorf("frontend address = %s (NIC %s), want 10.0.1.5", got, ipOf(first))
	}
	if string(*lb.SKU.Name) != "Standard" || *lb.Properties.ProvisioningState != "Succeeded" || lb.Properties.ResourceGUID == nil {
		t.Errorf("sku %v, state %v, guid %v", string(*lb.SKU.Name), *lb.Properties.ProvisioningState, lb.Properties.ResourceGUID)
	}
	rule := lb.Properties.LoadBalancingRules[0]
	if len(fe.Properties.LoadBalancingRules) != 1 || str(fe.Properties.LoadBalancingRules[0].ID) != str(rule.ID) ||
		len(lb.Properties.Probes[0].Properties.LoadBalancingRules) != 1 {
		t.Errorf("back-references to the rule missing: frontend %v, probe %v", fe.Properties.LoadBalancingRules, lb.Properties.Probes[0].Properties.LoadBalancingRules)
	}
	if p := rule.Properties; *p.LoadDistribution != "Default" || *p.IdleTimeoutInMinutes != 4 || *p.EnableFloatingIP {
		t.Errorf("rule defaults: %+v", p)
	}
	if p := lb.Properties.Probes[0].Properties; *p.ProbeThreshold != 1 || *p.IntervalInSeconds != 5 {
		t.Errorf("probe: threshold %d interval %d", *p.ProbeThreshold, *p.IntervalInSeconds)
	}
	// A NIC cannot take the frontend's address; a NIC joins the pool.
	_, err = e.putNIC("rg", "taker", staticNIC(a, "10.0.1.5"))
	wantTarget(t, testkit.WantARMError(t, err, 400, codeIPAllocated), "properties.ipConfigurations[0].properties.privateIPAddress", str(fe.ID))
	pool := str(lb.Properties.BackendAddressPools[0].ID)
	m1 := e.mustNIC("rg", "m1", memberNIC(a, pool))
	m2 := e.mustNIC("rg", "m2", memberNIC(subnetID("rg", "v", "b"), pool, pool))
	if got := m2.Properties.IPConfigurations[0].Properties.LoadBalancerBackendAddressPools; len(got) != 1 || str(got[0].ID) != pool {
		t.Errorf("m2's pools = %v, want the pool once", got)
	}
	c := e.lbClients()
	got, err := c.pools.Get(e.ctx, "rg", "lb", "be", nil)
	if err != nil {
		t.Fatal(err)
	}
	var members []string
	for _, ipc := range got.Properties.BackendIPConfigurations {
		members = append(members, str(ipc.ID))
	}
	if want := []string{str(m1.Properties.IPConfigurations[0].ID), str(m2.Properties.IPConfigurations[0].ID)}; len(members) != 2 ||
		!(members[0] == want[0] && members[1] == want[1] || members[0] == want[1] && members[1] == want[0]) {
		t.Errorf("backendIPConfigurations = %v, want %v", members, want)
	}
	// The children are served read-only, by name, in any casing.
	if f, err := c.fes.Get(e.ctx, "rg", "lb", "FE", nil); err != nil || str(f.Properties.PrivateIPAddress) != "10.0.1.5" {
		t.Errorf("frontend GET: %v %v", err, f)
	}
	if r, err := c.rules.Get(e.ctx, "rg", "lb", "http", nil); err != nil || *r.Properties.BackendPort != 8080 {
		t.Errorf("rule GET: %v", err)
	}
	if _, err := c.probes.Get(e.ctx, "rg", "lb", "nope", nil); err == nil {
		t.Error("GET of a missing probe succeeded")
	} else {
		testkit.WantARMError(t, err, 404, codeChildNotFound)
	}
	probes := collect(t, e.ctx, c.probes.NewListPager("rg", "lb", nil), func(p armnetwork.LoadBalancerProbesClientListResponse) []*armnetwork.Probe { return p.Value })
	if len(probes) != 1 || str(probes[0].Name) != "tcp" {
		t.Errorf("probes = %v", probes)
	}
	// The subnet shows the frontend among its ipConfigurations, and cannot go.
	s, err := e.subnet.Get(e.ctx, "rg", "v", "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ipc := range s.Properties.IPConfigurations {
		found = found || str(ipc.ID) == str(fe.ID)
	}
	if !found {
		t.Errorf("subnet's ipConfigurations %v lack the frontend %s", s.Properties.IPConfigurations, str(fe.ID))
	}
	// Members keep the pool (and the load balancer) from going.
	drop := lbBody("rg", a)
	drop.Properties.BackendAddressPools = nil
	drop.Properties.LoadBalancingRules[0].Properties.BackendAddressPool = nil
	_, err = e.putLB("rg", "lb", drop)
	testkit.WantARMError(t, err, 400, codePoolInUse)
	testkit.WantARMError(t, e.deleteLB("rg", "lb"), 400, codePoolInUse)
	// A rewrite keeps the Dynamic address.
	lb2, err := e.putLB("rg", "lb", lbBody("rg", a))
	if err != nil || str(lb2.Properties.FrontendIPConfigurations[0].Properties.PrivateIPAddress) != "10.0.1.5" {
		t.Errorf("rewrite: %v, address %v", err, lb2.Properties)
	}
	for _, n := range []string{"m1", "m2"} {
		if err := e.deleteNIC("rg", n); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.deleteLB("rg", "lb"); err != nil {
		t.Fatal(err)
	}
	// The address is free again.
	if n := e.mustNIC("rg", "again", staticNIC(a, "10.0.1.5")); ipOf(n) != "10.0.1.5" {
		t.Errorf("address after delete = %s", ipOf(n))
	}
}

func TestLoadBalancerValidation(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/24"))
	e.mustVNet("rg", "w", vnetBody("10.1.0.0/16", "c=10.1.1.0/24"))
	a := subnetID("rg", "v", "a")
	holder := e.mustNIC("rg", "holder", staticNIC(a, "10.0.1.10"))
	id := resID("rg", "loadBalancers", "lb")
	mod := func(f func(p *armnetwork.LoadBalancer)) armnetwork.LoadBalancer {
		lb := lbBody("rg", a)
		f(&lb)
		return lb
	}
	fe0 := func(lb *armnetwork.LoadBalancer) *armnetwork.FrontendIPConfigurationPropertiesFormat {
		return lb.Properties.FrontendIPConfigurations[0].Properties
	}
	rule0 := func(lb *armnetwork.LoadBalancer) *armnetwork.LoadBalancingRulePropertiesFormat {
		return lb.Properties.LoadBalancingRules[0].Properties
	}
	probe0 := func(lb *armnetwork.LoadBalancer) *armnetwork.ProbePropertiesFormat {
		return lb.Properties.Probes[0].Properties
	}
	secondRule := func(lb *armnetwork.LoadBalancer, fport, bport int32) {
		r := *lb.Properties.LoadBalancingRules[0]
		p := *r.Properties
		r.Name, p.FrontendPort, p.BackendPort, r.Properties = to.Ptr("two"), to.Ptr(fport), to.Ptr(bport), &p
		lb.Properties.LoadBalancingRules = append(lb.Properties.LoadBalancingRules, &r)
	}
	const fe, rl, pr = "properties.frontendIPConfigurations[0].properties.", "properties.loadBalancingRules[0].properties.", "properties.probes[0].properties."
	cases := []struct {
		name   string
		lb     armnetwork.LoadBalancer
		code   string
		target string
		words  []string
	}{
		{"basic sku", mod(func(lb *armnetwork.LoadBalancer) { lb.SKU.Name = to.Ptr(armnetwork.LoadBalancerSKUNameBasic) }), codeUnsupportedInPrivlink, "sku.name", []string{"Standard"}},
		{"global tier", mod(func(lb *armnetwork.LoadBalancer) { lb.SKU.Tier = to.Ptr(armnetwork.LoadBalancerSKUTierGlobal) }), codeUnsupportedInPrivlink, "sku.tier", nil},
		{"bad sku", mod(func(lb *armnetwork.LoadBalancer) { lb.SKU.Name = to.Ptr(armnetwork.LoadBalancerSKUName("Premium")) }), codeInvalidRequestFormat, "sku.name", nil},
		{"public frontend", mod(func(lb *armnetwork.LoadBalancer) {
			fe0(lb).PublicIPAddress = &armnetwork.PublicIPAddress{ID: to.Ptr("x")}
		}), codeUnsupportedInPrivlink, fe + "publicIPAddress", []string{"internal"}},
		{"frontend without subnet", mod(func(lb *armnetwork.LoadBalancer) { fe0(lb).Subnet = nil }), codeMissingParameter, fe + "subnet.id", nil},
		{"frontend in a missing subnet", mod(func(lb *armnetwork.LoadBalancer) { fe0(lb).Subnet.ID = to.Ptr(subnetID("rg", "v", "zz")) }), codeInvalidReference, fe + "subnet.id", []string{"was not found"}},
		{"frontend address taken", mod(func(lb *armnetwork.LoadBalancer) {
			fe0(lb).PrivateIPAllocationMethod, fe0(lb).PrivateIPAddress = to.Ptr(armnetwork.IPAllocationMethodStatic), to.Ptr("10.0.1.10")
		}), codeIPAllocated, fe + "privateIPAddress", []string{str(holder.Properties.IPConfigurations[0].ID)}},
		{"frontend address outside", mod(func(lb *armnetwork.LoadBalancer) {
			fe0(lb).PrivateIPAllocationMethod, fe0(lb).PrivateIPAddress = to.Ptr(armnetwork.IPAllocationMethodStatic), to.Ptr("10.0.9.9")
		}), codeIPNotInSubnet, fe + "privateIPAddress", nil},
		{"frontends in two networks", mod(func(lb *armnetwork.LoadBalancer) {
			lb.Properties.FrontendIPConfigurations = append(lb.Properties.FrontendIPConfigurations, &armnetwork.FrontendIPConfiguration{Name: to.Ptr("fe2"),
				Properties: &armnetwork.FrontendIPConfigurationPropertiesFormat{Subnet: &armnetwork.Subnet{ID: to.Ptr(subnetID("rg", "w", "c"))}}})
		}), codeLBNetworks, "properties.frontendIPConfigurations[1].properties.subnet.id", nil},
		{"duplicate frontend", mod(func(lb *armnetwork.LoadBalancer) {
			lb.Properties.FrontendIPConfigurations = append(lb.Properties.FrontendIPConfigurations, &armnetwork.FrontendIPConfiguration{Name: to.Ptr("FE"),
				Properties: &armnetwork.FrontendIPConfigurationPropertiesFormat{Subnet: &armnetwork.Subnet{ID: to.Ptr(a)}}})
		}), codeInvalidParameter, "properties.frontendIPConfigurations[1].name", nil},
		{"ip-based pool", mod(func(lb *armnetwork.LoadBalancer) {
			lb.Properties.BackendAddressPools[0].Properties = &armnetwork.BackendAddressPoolPropertiesFormat{
				LoadBalancerBackendAddresses: []*armnetwork.LoadBalancerBackendAddress{{Name: to.Ptr("x")}}}
		}), codeUnsupportedInPrivlink, "properties.backendAddressPools[0].properties.loadBalancerBackendAddresses", nil},
		{"inbound nat rules", mod(func(lb *armnetwork.LoadBalancer) {
			lb.Properties.InboundNatRules = []*armnetwork.InboundNatRule{{Name: to.Ptr("n")}}
		}), codeUnsupportedInPrivlink, "properties.inboundNatRules", nil},
		{"probe without port", mod(func(lb *armnetwork.LoadBalancer) { probe0(lb).Port = nil }), codeMissingParameter, pr + "port", nil},
		{"probe port 0", mod(func(lb *armnetwork.LoadBalancer) { probe0(lb).Port = to.Ptr[int32](0) }), codeInvalidParameter, pr + "port", nil},
		{"probe interval 4", mod(func(lb *armnetwork.LoadBalancer) { probe0(lb).IntervalInSeconds = to.Ptr[int32](4) }), codeInvalidParameter, pr + "intervalInSeconds", []string{"5"}},
		{"probe threshold 0", mod(func(lb *armnetwork.LoadBalancer) { probe0(lb).ProbeThreshold = to.Ptr[int32](0) }), codeInvalidParameter, pr + "probeThreshold", nil},
		{"http probe without path", mod(func(lb *armnetwork.LoadBalancer) { probe0(lb).Protocol = to.Ptr(armnetwork.ProbeProtocolHTTP) }), codeProbeRequestPath, pr + "requestPath", nil},
		{"tcp probe with path", mod(func(lb *armnetwork.LoadBalancer) { probe0(lb).RequestPath = to.Ptr("/x") }), codeProbeRequestPath, pr + "requestPath", nil},
		{"rule without protocol", mod(func(lb *armnetwork.LoadBalancer) { rule0(lb).Protocol = nil }), codeMissingParameter, rl + "protocol", nil},
		{"rule protocol All", mod(func(lb *armnetwork.LoadBalancer) { rule0(lb).Protocol = to.Ptr(armnetwork.TransportProtocolAll) }), codeUnsupportedInPrivlink, rl + "protocol", nil},
		{"rule frontend port 0", mod(func(lb *armnetwork.LoadBalancer) { rule0(lb).FrontendPort = to.Ptr[int32](0) }), codeInvalidParameter, rl + "frontendPort", nil},
		{"rule backend port 70000", mod(func(lb *armnetwork.LoadBalancer) { rule0(lb).BackendPort = to.Ptr[int32](70000) }), codeInvalidParameter, rl + "backendPort", nil},
		{"source ip affinity", mod(func(lb *armnetwork.LoadBalancer) {
			rule0(lb).LoadDistribution = to.Ptr(armnetwork.LoadDistributionSourceIP)
		}), codeUnsupportedInPrivlink, rl + "loadDistribution", nil},
		{"floating ip", mod(func(lb *armnetwork.LoadBalancer) { rule0(lb).EnableFloatingIP = to.Ptr(true) }), codeUnsupportedInPrivlink, rl + "enableFloatingIP", nil},
		{"idle timeout 31", mod(func(lb *armnetwork.LoadBalancer) { rule0(lb).IdleTimeoutInMinutes = to.Ptr[int32](31) }), codeInvalidParameter, rl + "idleTimeoutInMinutes", nil},
		{"rule without frontend", mod(func(lb *armnetwork.LoadBalancer) { rule0(lb).FrontendIPConfiguration = nil }), codeMissingParameter, rl + "frontendIPConfiguration.id", nil},
		{"rule to a missing pool", mod(func(lb *armnetwork.LoadBalancer) {
			rule0(lb).BackendAddressPool.ID = to.Ptr(id + "/backendAddressPools/nope")
		}), codeInvalidReference, rl + "backendAddressPool.id", []string{"was not found"}},
		{"rule to another load balancer's probe", mod(func(lb *armnetwork.LoadBalancer) {
			rule0(lb).Probe.ID = to.Ptr(resID("rg", "loadBalancers", "other") + "/probes/tcp")
		}), codeInvalidReference, rl + "probe.id", nil},
		{"same frontend port twice", mod(func(lb *armnetwork.LoadBalancer) { secondRule(lb, 80, 9090) }), codeRulesSameFrontend, "properties.loadBalancingRules[1].properties.frontendPort", nil},
		{"same backend port and pool twice", mod(func(lb *armnetwork.LoadBalancer) { secondRule(lb, 81, 8080) }), codeRulesSameBackend, "properties.loadBalancingRules[1].properties.backendPort", []string{"same backend address pool"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.putLB("rg", "lb", c.lb)
			wantTarget(t, testkit.WantARMError(t, err, 400, c.code), c.target, c.words...)
		})
	}
	// Nothing was written; Udp next to Tcp on one port is fine, and so is
	// a body without a sku (Standard).
	ok := mod(func(lb *armnetwork.LoadBalancer) {
		lb.SKU = nil
		secondRule(lb, 80, 8080)
		rule0(lb).Protocol = to.Ptr(armnetwork.TransportProtocolUDP)
	})
	got, err := e.putLB("rg", "lb", ok)
	if err != nil {
		t.Fatal(err)
	}
	if string(*got.SKU.Name) != "Standard" || str(got.Properties.FrontendIPConfigurations[0].Properties.PrivateIPAddress) != "10.0.1.4" {
		t.Errorf("sku %s, frontend %s", *got.SKU.Name, str(got.Properties.FrontendIPConfigurations[0].Properties.PrivateIPAddress))
	}
	// NICs: a pool of a missing load balancer, a malformed reference, a
	// member in another network than the frontends.
	pool := id + "/backendAddressPools/be"
	for _, c := range []struct {
		name, subnet, pool, code string
	}{
		{"missing pool", a, id + "/backendAddressPools/nope", codeInvalidReference},
		{"missing load balancer", a, resID("rg", "loadBalancers", "none") + "/backendAddressPools/be", codeInvalidReference},
		{"not a pool", a, id, codeLinkedInvalidID},
		{"other network", subnetID("rg", "w", "c"), pool, codeLBNetworks},
	} {
		t.Run("nic "+c.name, func(t *testing.T) {
			_, err := e.putNIC("rg", "member", memberNIC(c.subnet, c.pool))
			wantTarget(t, testkit.WantARMError(t, err, 400, c.code), "properties.ipConfigurations[0].properties.loadBalancerBackendAddressPools[0].id")
		})
	}
	// A member, then frontends moved to the other network: refused.
	e.mustNIC("rg", "member", memberNIC(a, pool))
	moved := ok
	fe0(&moved).Subnet = &armnetwork.Subnet{ID: to.Ptr(subnetID("rg", "w", "c"))}
	_, err = e.putLB("rg", "lb", moved)
	testkit.WantARMError(t, err, 400, codeLBNetworks)
}
