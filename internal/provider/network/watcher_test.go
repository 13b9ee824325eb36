package network

import (
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/privlink/privlink/internal/testkit"
)

// TestNetworkWatcherChecks: IP flow verify, next hop and connectivity
// check answer from the policy model, the connectivity check naming the
// rule that denies a client and an endpoint's missing approval.
func TestNetworkWatcherChecks(t *testing.T) {
	e := newPEEnv(t)
	o := e.as("owner", sub)
	e.group(o, "rg")
	e.server(o, "rg", "srv1")
	cred := token("owner")
	nsgs, _ := armnetwork.NewSecurityGroupsClient(sub, cred, e.opts)
	watchers, _ := armnetwork.NewWatchersClient(sub, cred, e.opts)

	deny := ruleProps(100)
	deny.SourceAddressPrefix = to.Ptr("10.0.2.4")
	deny.Access = to.Ptr(armnetwork.SecurityRuleAccessDeny)
	np, err := nsgs.BeginCreateOrUpdate(e.ctx, "rg", "pe-nsg", armnetwork.SecurityGroup{Location: to.Ptr("westeurope"),
		Properties: &armnetwork.SecurityGroupPropertiesFormat{SecurityRules: []*armnetwork.SecurityRule{{Name: to.Ptr("deny-c1"), Properties: deny}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nsg, err := np.PollUntilDone(e.ctx, poll)
	if err != nil {
		t.Fatal(err)
	}
	v := vnetBody("10.0.0.0/16", "pe=10.0.1.0/24", "clients=10.0.2.0/24")
	for _, s := range v.Properties.Subnets {
		if *s.Name == "pe" {
			s.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: nsg.ID}
			s.Properties.PrivateEndpointNetworkPolicies = to.Ptr(armnetwork.VirtualNetworkPrivateEndpointNetworkPoliciesNetworkSecurityGroupEnabled)
		}
	}
	vp, err := o.vnets.BeginCreateOrUpdate(e.ctx, "rg", "vnet", v, nil)
	if err == nil {
		_, err = vp.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, addr string }{{"c1", "10.0.2.4"}, {"c2", "10.0.2.5"}} {
		p, err := o.nics.BeginCreateOrUpdate(e.ctx, "rg", c.name, staticNIC(subnetIDIn(sub, "rg", "vnet", "clients"), c.addr), nil)
		if err == nil {
			_, err = p.PollUntilDone(e.ctx, poll)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	pe := e.mustEndpoint(o, "rg", "pe1", endpointBody(subnetIDIn(sub, "rg", "vnet", "pe"), serverIDIn(sub, "rg", "srv1"), true, ""))
	if ip := str(pe.Properties.CustomDNSConfigs[0].IPAddresses[0]); ip != "10.0.1.4" {
		t.Fatalf("endpoint address %s", ip)
	}
	if _, err := watchers.CreateOrUpdate(e.ctx, "rg", "watcher", armnetwork.Watcher{Location: to.Ptr("westeurope")}, nil); err != nil {
		t.Fatal(err)
	}
	nic := func(name string) *string { return to.Ptr(resID("rg", "networkInterfaces", name)) }
	check := func(from string) armnetwork.ConnectivityInformation {
		t.Helper()
		p, err := watchers.BeginCheckConnectivity(e.ctx, "rg", "watcher", armnetwork.ConnectivityParameters{
			Source:      &armnetwork.ConnectivitySource{ResourceID: nic(from)},
			Destination: &armnetwork.ConnectivityDestination{Address: to.Ptr("10.0.1.4"), Port: to.Ptr[int32](5432)}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.PollUntilDone(e.ctx, poll)
		if err != nil {
			t.Fatal(err)
		}
		return res.ConnectivityInformation
	}
	issue := func(ci armnetwork.ConnectivityInformation) (string, map[string]string) {
		// The first issue of any hop.
		for _, h := range ci.Hops {
			if len(h.Issues) == 0 {
				continue
			}
			is := h.Issues[0]
			ctx := map[string]string{}
			for _, kv := range is.Context {
				for k, v := range kv {
					ctx[k] = str(v)
				}
			}
			return string(*is.Type), ctx
		}
		return "", nil
	}

	// A Pending connection: the platform refuses.
	ci := check("c2")
	if typ, ctx := issue(ci); *ci.ConnectionStatus != armnetwork.ConnectionStatusDisconnected || typ != "Platform" || ctx["PrivateEndpointConnection"] != "Pending" {
		t.Errorf("pending endpoint: %s %s %v", *ci.ConnectionStatus, typ, ctx)
	}
	conns := e.connections(o, "rg", "srv1")
	if _, err := e.decide(o, "rg", "srv1", *conns[0].Name, pg.PrivateEndpointServiceConnectionStatusApproved, ""); err != nil {
		t.Fatal(err)
	}
	if ci := check("c2"); *ci.ConnectionStatus != armnetwork.ConnectionStatusConnected {
		t.Errorf("approved endpoint from c2: %s %v", *ci.ConnectionStatus, ci.Hops)
	}
	// c1 is denied by the endpoint subnet's NSG (its policies enable NSGs).
	ci = check("c1")
	if typ, ctx := issue(ci); *ci.ConnectionStatus != armnetwork.ConnectionStatusDisconnected || typ != "NetworkSecurityRule" || ctx["RuleName"] != "securityRules/deny-c1" {
		t.Errorf("c1: %s %s %v", *ci.ConnectionStatus, typ, ctx)
	}

	vp2, err := watchers.BeginVerifyIPFlow(e.ctx, "rg", "watcher", armnetwork.VerificationIPFlowParameters{
		TargetResourceID: nic("c1"), Direction: to.Ptr(armnetwork.DirectionOutbound), Protocol: to.Ptr(armnetwork.IPFlowProtocolTCP),
		LocalIPAddress: to.Ptr("10.0.2.4"), LocalPort: to.Ptr("*"), RemoteIPAddress: to.Ptr("10.0.1.4"), RemotePort: to.Ptr("5432")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	flow, err := vp2.PollUntilDone(e.ctx, poll)
	if err != nil || *flow.Access != armnetwork.AccessAllow || flow.RuleName != nil {
		t.Errorf("ipFlowVerify outbound (no NSG on c1's subnet) = %+v %v", flow.VerificationIPFlowResult, err)
	}
	_, err = watchers.BeginVerifyIPFlow(e.ctx, "rg", "watcher", armnetwork.VerificationIPFlowParameters{
		TargetResourceID: nic("c1"), Direction: to.Ptr(armnetwork.DirectionOutbound), Protocol: to.Ptr(armnetwork.IPFlowProtocolTCP),
		LocalIPAddress: to.Ptr("10.0.2.9"), LocalPort: to.Ptr("*"), RemoteIPAddress: to.Ptr("10.0.1.4"), RemotePort: to.Ptr("5432")}, nil)
	if e := testkit.WantARMError(t, err, 400, codeInvalidParameter); e.Target != "localIPAddress" {
		t.Errorf("an address not the NIC's: %+v", e)
	}

	hp, err := watchers.BeginGetNextHop(e.ctx, "rg", "watcher", armnetwork.NextHopParameters{
		TargetResourceID: nic("c1"), SourceIPAddress: to.Ptr("10.0.2.4"), DestinationIPAddress: to.Ptr("10.0.1.4")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hop, err := hp.PollUntilDone(e.ctx, poll)
	if err != nil || *hop.NextHopType != armnetwork.NextHopTypeVnetLocal || str(hop.RouteTableID) != "System Route" {
		t.Errorf("nextHop = %+v %v", hop.NextHopResult, err)
	}
}
