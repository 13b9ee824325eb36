package dnsresolver

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/dnsresolver/armdnsresolver"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/arm/armtest"
	"github.com/privlink/privlink/internal/provider/network"
	"github.com/privlink/privlink/internal/provider/resources"
	"github.com/privlink/privlink/internal/store/bolt"
	"github.com/privlink/privlink/internal/testkit"
)

const sub = armtest.Subscription

var poll = &runtime.PollUntilDoneOptions{Frequency: armtest.PollFrequency}

type env struct {
	t         *testing.T
	ctx       context.Context
	subnets   *armnetwork.SubnetsClient
	nics      *armnetwork.InterfacesClient
	resolvers *armdnsresolver.DNSResolversClient
	inbound   *armdnsresolver.InboundEndpointsClient
	vnet      string
}

// newEnv serves the network, resources and DNS resolver providers over a
// bolt store, with a group rg1, a network vnet (10.0.0.0/16) with a subnet
// clients and a subnet dnsin delegated to Microsoft.Network/dnsResolvers.
func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	var all []*arm.ResourceType
	all = append(all, New(st).Types()...)
	all = append(all, network.New(st).Types()...)
	all = append(all, resources.New(st, func() []*arm.ResourceType { return all }).Types()...)
	srv := armtest.NewServer(t, st, all...)
	rgc, _ := armresources.NewResourceGroupsClient(sub, srv.Cred, srv.Options)
	nf, _ := armnetwork.NewClientFactory(sub, srv.Cred, srv.Options)
	rf, _ := armdnsresolver.NewClientFactory(sub, srv.Cred, srv.Options)
	e := &env{t: t, ctx: context.Background(), subnets: nf.NewSubnetsClient(), nics: nf.NewInterfacesClient(),
		resolvers: rf.NewDNSResolversClient(), inbound: rf.NewInboundEndpointsClient(),
		vnet: "/subscriptions/" + sub + "/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/vnet"}
	if _, err := rgc.CreateOrUpdate(e.ctx, "rg1", armresources.ResourceGroup{Location: ptr("westeurope")}, nil); err != nil {
		t.Fatal(err)
	}
	vp, err := nf.NewVirtualNetworksClient().BeginCreateOrUpdate(e.ctx, "rg1", "vnet", armnetwork.VirtualNetwork{Location: ptr("westeurope"),
		Properties: &armnetwork.VirtualNetworkPropertiesFormat{AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{ptr("10.0.0.0/16")}},
			Subnets: []*armnetwork.Subnet{
				{Name: ptr("clients"), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: ptr("10.0.1.0/24")}},
				{Name: ptr("big"), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: ptr("10.0.4.0/23"), Delegations: delegation()}},
				{Name: ptr("dnsin"), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: ptr("10.0.3.0/28"), Delegations: delegation()}},
			}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vp.PollUntilDone(e.ctx, poll); err != nil {
		t.Fatal(err)
	}
	return e
}

func delegation() []*armnetwork.Delegation {
	return []*armnetwork.Delegation{{Name: ptr("r"), Properties: &armnetwork.ServiceDelegationPropertiesFormat{ServiceName: ptr(DelegationService)}}}
}

func (e *env) putResolver(name, vnet string) (armdnsresolver.DNSResolver, error) {
	p, err := e.resolvers.BeginCreateOrUpdate(e.ctx, "rg1", name, armdnsresolver.DNSResolver{Location: ptr("westeurope"),
		Properties: &armdnsresolver.Properties{VirtualNetwork: &armdnsresolver.SubResource{ID: &vnet}}}, nil)
	if err != nil {
		return armdnsresolver.DNSResolver{}, err
	}
	r, err := p.PollUntilDone(e.ctx, poll)
	return r.DNSResolver, err
}

func (e *env) putInbound(name, subnet string, static string) (armdnsresolver.InboundEndpoint, error) {
	ic := &armdnsresolver.IPConfiguration{Subnet: &armdnsresolver.SubResource{ID: ptr(e.vnet + "/subnets/" + subnet)}}
	if static != "" {
		ic.PrivateIPAllocationMethod, ic.PrivateIPAddress = ptr(armdnsresolver.IPAllocationMethodStatic), &static
	}
	p, err := e.inbound.BeginCreateOrUpdate(e.ctx, "rg1", "res", name, armdnsresolver.InboundEndpoint{Location: ptr("westeurope"),
		Properties: &armdnsresolver.InboundEndpointProperties{IPConfigurations: []*armdnsresolver.IPConfiguration{ic}}}, nil)
	if err != nil {
		return armdnsresolver.InboundEndpoint{}, err
	}
	r, err := p.PollUntilDone(e.ctx, poll)
	return r.InboundEndpoint, err
}

func addrOf(in armdnsresolver.InboundEndpoint) string {
	return *in.Properties.IPConfigurations[0].PrivateIPAddress
}

func TestResolver(t *testing.T) {
	e := newEnv(t)
	_, err := e.putResolver("res", "/subscriptions/"+sub+"/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/nope")
	testkit.WantARMError(t, err, http.StatusBadRequest, "InvalidVirtualNetwork")
	r, err := e.putResolver("res", e.vnet)
	if err != nil {
		t.Fatal(err)
	}
	if *r.Properties.DNSResolverState != armdnsresolver.DNSResolverStateConnected || *r.Properties.ProvisioningState != armdnsresolver.ProvisioningStateSucceeded || r.Properties.ResourceGUID == nil {
		t.Errorf("resolver: %+v", *r.Properties)
	}
	guid := *r.Properties.ResourceGUID
	r, err = e.putResolver("res", e.vnet)
	if err != nil || *r.Properties.ResourceGUID != guid {
		t.Errorf("update: guid %v (%v), want %s kept", r.Properties.ResourceGUID, err, guid)
	}
	other := "/subscriptions/" + sub + "/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/other"
	_, err = e.putResolver("res", other)
	testkit.WantARMError(t, err, http.StatusBadRequest, "InvalidVirtualNetwork")
}

func TestInboundEndpoint(t *testing.T) {
	e := newEnv(t)
	if _, err := e.putResolver("res", e.vnet); err != nil {
		t.Fatal(err)
	}
	_, err := e.putInbound("in", "clients", "")
	testkit.WantARMError(t, err, http.StatusBadRequest, "SubnetMissingRequiredDelegation")
	_, err = e.putInbound("in", "big", "")
	testkit.WantARMError(t, err, http.StatusBadRequest, "BadRequest") // a /23 is larger than Azure's /24
	_, err = e.putInbound("in", "dnsin", "10.0.3.2")
	testkit.WantARMError(t, err, http.StatusBadRequest, "PrivateIPAddressInReservedRange")
	_, err = e.putInbound("in", "dnsin", "10.0.9.9")
	testkit.WantARMError(t, err, http.StatusBadRequest, "PrivateIPAddressNotInSubnet")

	in, err := e.putInbound("in", "dnsin", "")
	if err != nil {
		t.Fatal(err)
	}
	if addrOf(in) != "10.0.3.4" {
		t.Fatalf("dynamic address %s, want 10.0.3.4", addrOf(in))
	}
	// An update keeps the address.
	if in, err = e.putInbound("in", "dnsin", ""); err != nil || addrOf(in) != "10.0.3.4" {
		t.Fatalf("update: %v %v", in.Properties, err)
	}
	// One resolver endpoint per subnet.
	_, err = e.putInbound("in2", "dnsin", "")
	testkit.WantARMError(t, err, http.StatusBadRequest, "BadRequest")

	// The address is held for the network allocator: the subnet cannot be
	// deleted, and lists the endpoint among its ipConfigurations.
	_, err = e.subnets.BeginDelete(e.ctx, "rg1", "vnet", "dnsin", nil)
	testkit.WantARMError(t, err, http.StatusBadRequest, "InUseSubnetCannotBeDeleted")
	s, err := e.subnets.Get(e.ctx, "rg1", "vnet", "dnsin", nil)
	if err != nil || len(s.Properties.IPConfigurations) != 1 {
		t.Errorf("subnet ipConfigurations: %v (%v)", s.Properties, err)
	}

	// The resolver cannot go before its endpoint.
	_, err = e.resolvers.BeginDelete(e.ctx, "rg1", "res", nil)
	testkit.WantARMError(t, err, http.StatusConflict, "ResourceHasChildren")

	// Gone: the address is free again, and static allocation takes it.
	dp, err := e.inbound.BeginDelete(e.ctx, "rg1", "res", "in", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(e.ctx, poll); err != nil {
		t.Fatal(err)
	}
	if in, err = e.putInbound("in2", "dnsin", "10.0.3.4"); err != nil || addrOf(in) != "10.0.3.4" {
		t.Fatalf("static after delete: %v", err)
	}
	if m := *in.Properties.IPConfigurations[0].PrivateIPAllocationMethod; m != armdnsresolver.IPAllocationMethodStatic {
		t.Errorf("allocation method %s", m)
	}
}
