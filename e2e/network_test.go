package e2e

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/privlink/privlink/internal/testkit"
)

// netClients are the armnetwork clients of one principal.
type netClients struct {
	vnets   *armnetwork.VirtualNetworksClient
	subnets *armnetwork.SubnetsClient
	nsgs    *armnetwork.SecurityGroupsClient
	rules   *armnetwork.SecurityRulesClient
	asgs    *armnetwork.ApplicationSecurityGroupsClient
	rts     *armnetwork.RouteTablesClient
	routes  *armnetwork.RoutesClient
	nics    *armnetwork.InterfacesClient
}

func newNetClients(t *testing.T, d *daemon) netClients {
	f, err := armnetwork.NewClientFactory(d.creds.SubscriptionID, d.cfg.Credential, d.opts())
	if err != nil {
		t.Fatal(err)
	}
	return netClients{f.NewVirtualNetworksClient(), f.NewSubnetsClient(), f.NewSecurityGroupsClient(), f.NewSecurityRulesClient(),
		f.NewApplicationSecurityGroupsClient(), f.NewRouteTablesClient(), f.NewRoutesClient(), f.NewInterfacesClient()}
}

func createGroup(t *testing.T, d *daemon, name string) {
	t.Helper()
	rgs, _ := armresources.NewResourceGroupsClient(d.creds.SubscriptionID, d.cfg.Credential, d.opts())
	if _, err := rgs.CreateOrUpdate(ctx(t), name, armresources.ResourceGroup{Location: ptr("westeurope")}, nil); err != nil {
		t.Fatal(err)
	}
}

func vnetBody(space string, subnets map[string]string) armnetwork.VirtualNetwork {
	v := armnetwork.VirtualNetwork{Location: ptr("westeurope"), Properties: &armnetwork.VirtualNetworkPropertiesFormat{
		AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{ptr(space)}}, Subnets: []*armnetwork.Subnet{}}}
	for name, prefix := range subnets {
		v.Properties.Subnets = append(v.Properties.Subnets, &armnetwork.Subnet{Name: ptr(name),
			Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: ptr(prefix)}})
	}
	return v
}

func putVNet(t *testing.T, n netClients, rg, name string, v armnetwork.VirtualNetwork) (armnetwork.VirtualNetwork, error) {
	t.Helper()
	p, err := n.vnets.BeginCreateOrUpdate(ctx(t), rg, name, v, nil)
	if err != nil {
		return armnetwork.VirtualNetwork{}, err
	}
	r, err := p.PollUntilDone(ctx(t), pollOpts)
	return r.VirtualNetwork, err
}

func putNIC(t *testing.T, n netClients, rg, name, subnetID, static string) (armnetwork.Interface, error) {
	t.Helper()
	ipc := &armnetwork.InterfaceIPConfigurationPropertiesFormat{Subnet: &armnetwork.Subnet{ID: &subnetID},
		PrivateIPAllocationMethod: ptr(armnetwork.IPAllocationMethodDynamic)}
	if static != "" {
		ipc.PrivateIPAllocationMethod, ipc.PrivateIPAddress = ptr(armnetwork.IPAllocationMethodStatic), &static
	}
	p, err := n.nics.BeginCreateOrUpdate(ctx(t), rg, name, armnetwork.Interface{Location: ptr("westeurope"),
		Properties: &armnetwork.InterfacePropertiesFormat{IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{Name: ptr("ipconfig1"), Properties: ipc}}}}, nil)
	if err != nil {
		return armnetwork.Interface{}, err
	}
	r, err := p.PollUntilDone(ctx(t), pollOpts)
	return r.Interface, err
}

func testNetwork(t *testing.T, d *daemon) {
	c := ctx(t)
	n := newNetClients(t, d)
	createGroup(t, d, "net")

	// A network with two inline subnets, and a third as a child resource.
	v, err := putVNet(t, n, "net", "vnet1", vnetBody("10.0.0.0/16", map[string]string{"s1": "10.0.1.0/24", "s2": "10.0.2.0/24"}))
	if err != nil {
		t.Fatal(err)
	}
	if *v.Properties.ProvisioningState != armnetwork.ProvisioningStateSucceeded || len(v.Properties.Subnets) != 2 {
		t.Fatalf("vnet = %+v", v.Properties)
	}
	sp, err := n.subnets.BeginCreateOrUpdate(c, "net", "vnet1", "s3", armnetwork.Subnet{Properties: &armnetwork.SubnetPropertiesFormat{
		AddressPrefix: ptr("10.0.3.0/24"), PrivateEndpointNetworkPolicies: ptr(armnetwork.VirtualNetworkPrivateEndpointNetworkPoliciesEnabled)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s3, err := sp.PollUntilDone(c, pollOpts)
	if err != nil {
		t.Fatal(err)
	}
	if *s3.Properties.PrivateEndpointNetworkPolicies != armnetwork.VirtualNetworkPrivateEndpointNetworkPoliciesEnabled {
		t.Errorf("s3 policies = %v", *s3.Properties.PrivateEndpointNetworkPolicies)
	}
	s1, err := n.subnets.Get(c, "net", "vnet1", "s1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *s1.Properties.PrivateEndpointNetworkPolicies != armnetwork.VirtualNetworkPrivateEndpointNetworkPoliciesDisabled {
		t.Errorf("default privateEndpointNetworkPolicies = %v, want Disabled", *s1.Properties.PrivateEndpointNetworkPolicies)
	}
	got, err := n.vnets.Get(c, "net", "vnet1", nil)
	if err != nil || len(got.Properties.Subnets) != 3 {
		t.Fatalf("vnet has %d subnets (%v), want 3", len(got.Properties.Subnets), err)
	}
	upd, err := n.vnets.UpdateTags(c, "net", "vnet1", armnetwork.TagsObject{Tags: map[string]*string{"team": ptr("db")}}, nil)
	if err != nil || *upd.Tags["team"] != "db" {
		t.Errorf("update tags: %v", err)
	}

	// NSG with a rule inline and one as a child; Azure's six default rules.
	np, err := n.nsgs.BeginCreateOrUpdate(c, "net", "nsg1", armnetwork.SecurityGroup{Location: ptr("westeurope"),
		Properties: &armnetwork.SecurityGroupPropertiesFormat{SecurityRules: []*armnetwork.SecurityRule{rule("allow-pg", 100, "5432")}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nsg, err := np.PollUntilDone(c, pollOpts)
	if err != nil {
		t.Fatal(err)
	}
	if len(nsg.Properties.DefaultSecurityRules) != 6 {
		t.Errorf("default rules = %d, want 6", len(nsg.Properties.DefaultSecurityRules))
	}
	rp, err := n.rules.BeginCreateOrUpdate(c, "net", "nsg1", "allow-https", *rule("allow-https", 200, "443"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rp.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	_, err = n.rules.BeginCreateOrUpdate(c, "net", "nsg1", "dup", *rule("dup", 100, "22"), nil)
	testkit.WantARMError(t, err, http.StatusBadRequest, "SecurityRuleConflict")

	// ASG and route table.
	ap, err := n.asgs.BeginCreateOrUpdate(c, "net", "asg1", armnetwork.ApplicationSecurityGroup{Location: ptr("westeurope")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ap.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	tp, err := n.rts.BeginCreateOrUpdate(c, "net", "rt1", armnetwork.RouteTable{Location: ptr("westeurope"),
		Properties: &armnetwork.RouteTablePropertiesFormat{Routes: []*armnetwork.Route{{Name: ptr("onprem"),
			Properties: &armnetwork.RoutePropertiesFormat{AddressPrefix: ptr("192.168.0.0/16"), NextHopType: ptr(armnetwork.RouteNextHopTypeVirtualAppliance), NextHopIPAddress: ptr("10.0.2.4")}}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	_, err = n.routes.BeginCreateOrUpdate(c, "net", "rt1", "bad", armnetwork.Route{Properties: &armnetwork.RoutePropertiesFormat{
		AddressPrefix: ptr("10.1.0.0/16"), NextHopType: ptr(armnetwork.RouteNextHopTypeVirtualAppliance)}}, nil)
	if err == nil {
		t.Error("a VirtualAppliance route without nextHopIpAddress was accepted")
	}

	// NICs: dynamic gets the first free address (Azure reserves .0-.3);
	// static is honoured; a taken, reserved or outside address is refused.
	nic1, err := putNIC(t, n, "net", "nic1", *s1.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if ip := *nic1.Properties.IPConfigurations[0].Properties.PrivateIPAddress; ip != "10.0.1.4" {
		t.Errorf("first dynamic address = %s, want 10.0.1.4", ip)
	}
	if _, err := putNIC(t, n, "net", "nic2", *s1.ID, "10.0.1.10"); err != nil {
		t.Fatal(err)
	}
	for ip, code := range map[string]string{"10.0.1.10": "PrivateIPAddressIsAllocated", "10.0.1.2": "PrivateIPAddressInReservedRange", "10.0.9.9": "PrivateIPAddressNotInSubnet"} {
		_, err := putNIC(t, n, "net", "nic-bad", *s1.ID, ip)
		testkit.WantARMError(t, err, http.StatusBadRequest, code)
	}
	pager := n.nics.NewListAllPager(nil)
	count := 0
	for pager.More() {
		p, err := pager.NextPage(c)
		if err != nil {
			t.Fatal(err)
		}
		count += len(p.Value)
	}
	if count != 2 {
		t.Errorf("NICs in subscription = %d, want 2", count)
	}

	// Bad networks: overlapping subnets, a subnet outside the space, a
	// forbidden address space, malformed JSON, an unknown api-version.
	_, err = putVNet(t, n, "net", "bad", vnetBody("10.1.0.0/16", map[string]string{"a": "10.1.0.0/24", "b": "10.1.0.128/25"}))
	testkit.WantARMError(t, err, http.StatusBadRequest, "NetcfgSubnetRangesOverlap")
	_, err = putVNet(t, n, "net", "bad", vnetBody("10.1.0.0/16", map[string]string{"a": "10.2.0.0/24"}))
	testkit.WantARMError(t, err, http.StatusBadRequest, "NetcfgSubnetRangeOutsideVnet")
	_, err = putVNet(t, n, "net", "bad", vnetBody("169.254.0.0/16", nil))
	testkit.WantARMError(t, err, http.StatusBadRequest, "NetcfgInvalidIPAddressPrefix")
	resp := send(t, d.cfg, http.MethodPut, "/subscriptions/"+d.creds.SubscriptionID+"/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/bad?api-version=2025-01-01", []byte(`{"location":"westeurope","properties":{`))
	if resp.StatusCode != http.StatusBadRequest || armCode(resp) != "InvalidRequestContent" {
		t.Errorf("malformed JSON: %d %s", resp.StatusCode, armCode(resp))
	}
	o := d.opts()
	o.APIVersion = "2017-01-01"
	old, _ := armnetwork.NewVirtualNetworksClient(d.creds.SubscriptionID, d.cfg.Credential, o)
	_, err = old.Get(c, "net", "vnet1", nil)
	testkit.WantARMError(t, err, http.StatusBadRequest, "NoRegisteredProviderFound")

	// A subnet with NICs cannot go; without them it can.
	_, err = n.subnets.BeginDelete(c, "net", "vnet1", "s1", nil)
	testkit.WantARMError(t, err, http.StatusBadRequest, "InUseSubnetCannotBeDeleted")
	dp, err := n.nics.BeginDelete(c, "net", "nic2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	sd, err := n.subnets.BeginDelete(c, "net", "vnet1", "s2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sd.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	// The freed address is handed out again.
	nic3, err := putNIC(t, n, "net", "nic3", *s1.ID, "10.0.1.10")
	if err != nil {
		t.Fatalf("re-using a freed static address: %v", err)
	}
	_ = nic3

	// Deleting a group removes everything in it.
	createGroup(t, d, "net-tmp")
	if _, err := putVNet(t, n, "net-tmp", "v", vnetBody("10.5.0.0/16", map[string]string{"s": "10.5.0.0/24"})); err != nil {
		t.Fatal(err)
	}
	rgs, _ := armresources.NewResourceGroupsClient(d.creds.SubscriptionID, d.cfg.Credential, d.opts())
	gp, err := rgs.BeginDelete(c, "net-tmp", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gp.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	createGroup(t, d, "net-tmp")
	_, err = n.vnets.Get(c, "net-tmp", "v", nil)
	testkit.WantARMError(t, err, http.StatusNotFound, "ResourceNotFound")
}

var afterRestart atomic.Int64

func rule(name string, prio int32, port string) *armnetwork.SecurityRule {
	return &armnetwork.SecurityRule{Name: &name, Properties: &armnetwork.SecurityRulePropertiesFormat{
		Priority: &prio, Direction: ptr(armnetwork.SecurityRuleDirectionInbound), Access: ptr(armnetwork.SecurityRuleAccessAllow),
		Protocol: ptr(armnetwork.SecurityRuleProtocolTCP), SourceAddressPrefix: ptr("*"), SourcePortRange: ptr("*"),
		DestinationAddressPrefix: ptr("*"), DestinationPortRange: &port}}
}

// checkNetworkSurvives asserts the state testNetwork left behind.
func checkNetworkSurvives(t *testing.T, d *daemon) {
	t.Helper()
	n := newNetClients(t, d)
	v, err := n.vnets.Get(ctx(t), "net", "vnet1", nil)
	if err != nil {
		t.Fatalf("vnet1 after restart: %v", err)
	}
	if len(v.Properties.Subnets) != 2 || *v.Tags["team"] != "db" {
		t.Errorf("vnet1 after restart: %d subnets, tags %v", len(v.Properties.Subnets), v.Tags)
	}
	nic, err := n.nics.Get(ctx(t), "net", "nic1", nil)
	if err != nil || *nic.Properties.IPConfigurations[0].Properties.PrivateIPAddress != "10.0.1.4" {
		t.Errorf("nic1 after restart: %v", err)
	}
	nsg, err := n.nsgs.Get(ctx(t), "net", "nsg1", nil)
	if err != nil || len(nsg.Properties.SecurityRules) != 2 {
		t.Errorf("nsg1 after restart: %v", err)
	}
	// Allocation state survived too: the next dynamic address is not 10.0.1.4.
	nic2, err := putNIC(t, n, "net", fmt.Sprintf("nic-after-%d", afterRestart.Add(1)), *v.Properties.Subnets[0].ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if ip := *nic2.Properties.IPConfigurations[0].Properties.PrivateIPAddress; ip == "10.0.1.4" || ip == "10.0.1.10" {
		t.Errorf("after restart a dynamic NIC got taken address %s", ip)
	}
}
