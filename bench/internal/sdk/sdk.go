// Package sdk is the Azure SDK plumbing of the benchmark programs: one set
// of clients for a daemon's principal, and the bodies and calls that create
// and delete what the benchmarks measure against (resource groups, virtual
// networks, NICs, private DNS zones and their links, private endpoints and
// their zone groups, network and application security groups), each polled to its end as a user of the SDK does,
// with errors that name the resource.
package sdk

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	azarm "github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azpolicy "github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	azruntime "github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/azconfig"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/names"
)

// Location is where the benchmarks put their resources (private DNS
// zones and links are "global", as in Azure).
const Location = "westeurope"

// PrivateLinkZone is the private DNS zone of flexible servers' endpoints.
const PrivateLinkZone = "privatelink.postgres.database.azure.com"

// PollOpts make pollers follow the daemon's Retry-After-Ms (the SDK's
// minimum Frequency, 1 s, applies only when a response has none).
var PollOpts = &azruntime.PollUntilDoneOptions{Frequency: time.Second}

// To returns a pointer to v, for the SDK's optional fields.
func To[T any](v T) *T { return &v }

// Clients are the SDK clients of one principal's subscription.
type Clients struct {
	// Sub is the subscription ID.
	Sub string

	Groups     *armresources.ResourceGroupsClient
	VNets      *armnetwork.VirtualNetworksClient
	NICs       *armnetwork.InterfacesClient
	Endpoints  *armnetwork.PrivateEndpointsClient
	ZoneGroups *armnetwork.PrivateDNSZoneGroupsClient
	Zones      *armprivatedns.PrivateZonesClient
	Links      *armprivatedns.VirtualNetworkLinksClient
	Records    *armprivatedns.RecordSetsClient
	Servers    *armpostgresqlflexibleservers.ServersClient
	// Conns are the servers' private endpoint connections.
	Conns *armpostgresqlflexibleservers.PrivateEndpointConnectionsClient
	// Configs are the servers' configurations (server parameters).
	Configs *armpostgresqlflexibleservers.ConfigurationsClient
	// Subnets, NSGs, Rules (security rules) and ASGs are for the network
	// policies.
	Subnets *armnetwork.SubnetsClient
	NSGs    *armnetwork.SecurityGroupsClient
	Rules   *armnetwork.SecurityRulesClient
	ASGs    *armnetwork.ApplicationSecurityGroupsClient
	// Peerings are virtual network peerings.
	Peerings *armnetwork.VirtualNetworkPeeringsClient
}

// New returns the clients of cfg's principal; opts nil means
// cfg.ClientOptions().
func New(cfg *azconfig.Config, opts *azarm.ClientOptions) (*Clients, error) {
	if opts == nil {
		opts = cfg.ClientOptions()
	}
	c := &Clients{Sub: cfg.Creds.SubscriptionID}
	var err error
	if c.Groups, err = armresources.NewResourceGroupsClient(c.Sub, cfg.Credential, opts); err != nil {
		return nil, fmt.Errorf("resource groups client: %w", err)
	}
	nf, err := armnetwork.NewClientFactory(c.Sub, cfg.Credential, opts)
	if err != nil {
		return nil, fmt.Errorf("network clients: %w", err)
	}
	df, err := armprivatedns.NewClientFactory(c.Sub, cfg.Credential, opts)
	if err != nil {
		return nil, fmt.Errorf("private DNS clients: %w", err)
	}
	pf, err := armpostgresqlflexibleservers.NewClientFactory(c.Sub, cfg.Credential, opts)
	if err != nil {
		return nil, fmt.Errorf("postgres clients: %w", err)
	}
	c.VNets, c.NICs, c.Endpoints, c.ZoneGroups = nf.NewVirtualNetworksClient(), nf.NewInterfacesClient(), nf.NewPrivateEndpointsClient(), nf.NewPrivateDNSZoneGroupsClient()
	c.Subnets, c.NSGs, c.Rules, c.ASGs = nf.NewSubnetsClient(), nf.NewSecurityGroupsClient(), nf.NewSecurityRulesClient(), nf.NewApplicationSecurityGroupsClient()
	c.Peerings = nf.NewVirtualNetworkPeeringsClient()
	c.Zones, c.Links, c.Records = df.NewPrivateZonesClient(), df.NewVirtualNetworkLinksClient(), df.NewRecordSetsClient()
	c.Servers, c.Conns, c.Configs = pf.NewServersClient(), pf.NewPrivateEndpointConnectionsClient(), pf.NewConfigurationsClient()
	return c, nil
}

// ID is the ARM ID of resource name of type typ ("Microsoft.Network/
// virtualNetworks") in group rg.
func (c *Clients) ID(rg, typ, name string) string {
	return "/subscriptions/" + c.Sub + "/resourceGroups/" + rg + "/providers/" + typ + "/" + name
}

// SetConfig sets server parameter name of server rg/server to value and
// waits for it to apply.
func (c *Clients) SetConfig(ctx context.Context, rg, server, name, value string) error {
	p, err := c.Configs.BeginPut(ctx, rg, server, name, armpostgresqlflexibleservers.ConfigurationForUpdate{
		Properties: &armpostgresqlflexibleservers.ConfigurationProperties{Value: To(value), Source: To("user-override")}}, nil)
	_, err = poll(ctx, "configuration "+name+" of "+server, p, err)
	return err
}

// poll waits for a long-running operation the SDK started (err is its
// start's error) and names what it was in an error.
func poll[T any](ctx context.Context, what string, p *azruntime.Poller[T], err error) (T, error) {
	var zero T
	if err != nil {
		return zero, fmt.Errorf("%s: %w", what, err)
	}
	r, err := p.PollUntilDone(ctx, PollOpts)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", what, err)
	}
	return r, nil
}

// CreateGroup creates (or updates) resource group name.
func (c *Clients) CreateGroup(ctx context.Context, name string) error {
	if _, err := c.Groups.CreateOrUpdate(ctx, name, armresources.ResourceGroup{Location: To(Location)}, nil); err != nil {
		return fmt.Errorf("create resource group %s: %w", name, err)
	}
	return nil
}

// Subnet is a subnet of VNetBody.
type Subnet struct{ Name, Prefix string }

// VNetBody is a virtual network of address space space and subnets.
func VNetBody(space string, subnets ...Subnet) armnetwork.VirtualNetwork {
	v := armnetwork.VirtualNetwork{Location: To(Location), Properties: &armnetwork.VirtualNetworkPropertiesFormat{
		AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{To(space)}}}}
	for _, s := range subnets {
		v.Properties.Subnets = append(v.Properties.Subnets, &armnetwork.Subnet{Name: To(s.Name),
			Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: To(s.Prefix)}})
	}
	return v
}

// CreateVNet PUTs virtual network name of group rg and polls it until done.
func (c *Clients) CreateVNet(ctx context.Context, rg, name string, body armnetwork.VirtualNetwork) (armnetwork.VirtualNetwork, error) {
	p, err := c.VNets.BeginCreateOrUpdate(ctx, rg, name, body, nil)
	r, err := poll(ctx, rg+": virtual network "+name, p, err)
	return r.VirtualNetwork, err
}

// DeleteVNet deletes virtual network name of group rg and polls until done.
func (c *Clients) DeleteVNet(ctx context.Context, rg, name string) error {
	p, err := c.VNets.BeginDelete(ctx, rg, name, nil)
	_, err = poll(ctx, rg+": delete virtual network "+name, p, err)
	return err
}

// NICBody is a NIC with one dynamic IP configuration in subnet subnetID,
// a member of the application security groups asgs (IDs).
func NICBody(subnetID string, asgs ...string) armnetwork.Interface {
	ipc := &armnetwork.InterfaceIPConfigurationPropertiesFormat{Subnet: &armnetwork.Subnet{ID: To(subnetID)},
		PrivateIPAllocationMethod: To(armnetwork.IPAllocationMethodDynamic)}
	for _, a := range asgs {
		ipc.ApplicationSecurityGroups = append(ipc.ApplicationSecurityGroups, &armnetwork.ApplicationSecurityGroup{ID: To(a)})
	}
	return armnetwork.Interface{Location: To(Location),
		Properties: &armnetwork.InterfacePropertiesFormat{IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{Name: To("ip"), Properties: ipc}}}}
}

// CreateNIC PUTs NIC name of group rg in subnet subnetID and polls it until
// done; it is an error if it is not Succeeded then. The PUT's response goes
// to *resp when resp is not nil (see flex.Ops).
func (c *Clients) CreateNIC(ctx context.Context, rg, name, subnetID string, resp **http.Response) (armnetwork.Interface, error) {
	return c.PutNIC(ctx, rg, name, NICBody(subnetID), resp)
}

// PutNIC is CreateNIC of a given body.
func (c *Clients) PutNIC(ctx context.Context, rg, name string, body armnetwork.Interface, resp **http.Response) (armnetwork.Interface, error) {
	p, err := c.NICs.BeginCreateOrUpdate(Capture(ctx, resp), rg, name, body, nil)
	r, err := poll(ctx, rg+": NIC "+name, p, err)
	if err != nil {
		return r.Interface, err
	}
	if s := r.Properties.ProvisioningState; s == nil || *s != armnetwork.ProvisioningStateSucceeded {
		return r.Interface, fmt.Errorf("%s: NIC %s: provisioningState %v after its poller finished", rg, name, s)
	}
	return r.Interface, nil
}

// DeleteNIC deletes NIC name of group rg and polls until done.
func (c *Clients) DeleteNIC(ctx context.Context, rg, name string) error {
	p, err := c.NICs.BeginDelete(ctx, rg, name, nil)
	_, err = poll(ctx, rg+": delete NIC "+name, p, err)
	return err
}

// Capture is ctx capturing the response of its request into *resp, or ctx
// when resp is nil.
func Capture(ctx context.Context, resp **http.Response) context.Context {
	if resp == nil {
		return ctx
	}
	return azpolicy.WithCaptureResponse(ctx, resp)
}

// CreateZone creates private DNS zone zone in group rg.
func (c *Clients) CreateZone(ctx context.Context, rg, zone string) error {
	p, err := c.Zones.BeginCreateOrUpdate(ctx, rg, zone, armprivatedns.PrivateZone{Location: To("global")}, nil)
	_, err = poll(ctx, rg+": zone "+zone, p, err)
	return err
}

// LinkZone links zone of group rg to virtual network vnetID, as link.
func (c *Clients) LinkZone(ctx context.Context, rg, zone, link, vnetID string) error {
	p, err := c.Links.BeginCreateOrUpdate(ctx, rg, zone, link, armprivatedns.VirtualNetworkLink{Location: To("global"),
		Properties: &armprivatedns.VirtualNetworkLinkProperties{VirtualNetwork: &armprivatedns.SubResource{ID: To(vnetID)}}}, nil)
	_, err = poll(ctx, rg+": link of zone "+zone, p, err)
	return err
}

// Peer PUTs peering name of virtual network vnet (group rg) with network
// remote (an ID) and polls it until done; it returns the peering's state.
func (c *Clients) Peer(ctx context.Context, rg, vnet, name, remote string) (armnetwork.VirtualNetworkPeeringState, Times, error) {
	var t Times
	start := time.Now()
	p, err := c.Peerings.BeginCreateOrUpdate(ctx, rg, vnet, name, armnetwork.VirtualNetworkPeering{Properties: &armnetwork.VirtualNetworkPeeringPropertiesFormat{
		RemoteVirtualNetwork: &armnetwork.SubResource{ID: To(remote)}, AllowVirtualNetworkAccess: To(true)}}, nil)
	t.Answered = time.Since(start)
	r, err := poll(ctx, rg+": peering "+vnet+"/"+name, p, err)
	t.Done = time.Since(start)
	if err != nil || r.Properties == nil || r.Properties.PeeringState == nil {
		return "", t, err
	}
	return *r.Properties.PeeringState, t, nil
}

// Unpeer deletes peering name of virtual network vnet (group rg) and polls
// until done.
func (c *Clients) Unpeer(ctx context.Context, rg, vnet, name string) error {
	p, err := c.Peerings.BeginDelete(ctx, rg, vnet, name, nil)
	_, err = poll(ctx, rg+": delete peering "+vnet+"/"+name, p, err)
	return err
}

// Times are the moments of a PUT and its poller, from the call's start.
type Times struct {
	// Answered is when the PUT was answered, Done when its poller
	// finished.
	Answered, Done time.Duration
}

// CreateEndpoint PUTs private endpoint name of group rg in subnet subnetID
// toward target (a server's ID, group postgresqlServer) and polls it until
// done; it is an error if it is not Succeeded and Approved then. The PUT's
// response goes to *resp when resp is not nil.
func (c *Clients) CreateEndpoint(ctx context.Context, rg, name, subnetID, target string, resp **http.Response) (armnetwork.PrivateEndpoint, Times, error) {
	var t Times
	start := time.Now()
	what := rg + ": endpoint " + name
	p, err := c.Endpoints.BeginCreateOrUpdate(Capture(ctx, resp), rg, name, armnetwork.PrivateEndpoint{Location: To(Location),
		Properties: &armnetwork.PrivateEndpointProperties{
			Subnet: &armnetwork.Subnet{ID: To(subnetID)},
			PrivateLinkServiceConnections: []*armnetwork.PrivateLinkServiceConnection{{Name: To(name), Properties: &armnetwork.PrivateLinkServiceConnectionProperties{
				PrivateLinkServiceID: To(target), GroupIDs: []*string{To("postgresqlServer")}}}},
		}}, nil)
	t.Answered = time.Since(start)
	r, err := poll(ctx, what, p, err)
	t.Done = time.Since(start)
	if err != nil {
		return r.PrivateEndpoint, t, err
	}
	if st := r.Properties.ProvisioningState; st == nil || *st != armnetwork.ProvisioningStateSucceeded {
		return r.PrivateEndpoint, t, fmt.Errorf("%s: provisioningState %v after its poller finished", what, st)
	}
	conns := r.Properties.PrivateLinkServiceConnections
	if len(conns) != 1 || conns[0].Properties == nil || conns[0].Properties.PrivateLinkServiceConnectionState == nil ||
		conns[0].Properties.PrivateLinkServiceConnectionState.Status == nil || *conns[0].Properties.PrivateLinkServiceConnectionState.Status != "Approved" {
		return r.PrivateEndpoint, t, fmt.Errorf("%s is not Approved", what)
	}
	if !EndpointIP(r.PrivateEndpoint).IsValid() {
		return r.PrivateEndpoint, t, fmt.Errorf("%s: no address in customDnsConfigs", what)
	}
	return r.PrivateEndpoint, t, nil
}

// EndpointIP is the endpoint's address, from its customDnsConfigs (invalid
// when it has none).
func EndpointIP(pe armnetwork.PrivateEndpoint) netip.Addr {
	if pe.Properties == nil || len(pe.Properties.CustomDNSConfigs) == 0 || len(pe.Properties.CustomDNSConfigs[0].IPAddresses) == 0 {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(*pe.Properties.CustomDNSConfigs[0].IPAddresses[0])
	return a
}

// DeleteEndpoint deletes endpoint name of group rg and polls until done.
func (c *Clients) DeleteEndpoint(ctx context.Context, rg, name string) error {
	p, err := c.Endpoints.BeginDelete(ctx, rg, name, nil)
	_, err = poll(ctx, rg+": delete endpoint "+name, p, err)
	return err
}

// CreateZoneGroup PUTs the zone group "default" of endpoint (group rg), one
// config naming zone zoneID, and polls it until done.
func (c *Clients) CreateZoneGroup(ctx context.Context, rg, endpoint, zoneID string) (Times, error) {
	var t Times
	start := time.Now()
	p, err := c.ZoneGroups.BeginCreateOrUpdate(ctx, rg, endpoint, "default", armnetwork.PrivateDNSZoneGroup{Properties: &armnetwork.PrivateDNSZoneGroupPropertiesFormat{
		PrivateDNSZoneConfigs: []*armnetwork.PrivateDNSZoneConfig{{Name: To("pl"), Properties: &armnetwork.PrivateDNSZonePropertiesFormat{PrivateDNSZoneID: To(zoneID)}}}}}, nil)
	t.Answered = time.Since(start)
	_, err = poll(ctx, rg+": zone group of "+endpoint, p, err)
	t.Done = time.Since(start)
	return t, err
}

// FabricID is the fabric's ID of the resource of ARM ID id.
func FabricID(id string) (string, error) {
	rid, err := arm.ParseID(id)
	if err != nil {
		return "", fmt.Errorf("resource %s: %w", id, err)
	}
	return names.Key(rid), nil
}

// Namespace is the name of the namespace of kind that fab (the daemon's
// prefix) gives the resource of ARM ID id: a NIC's, a network's router,
// a server's service namespace.
func Namespace(fab *fabric.Fabric, kind fabric.Kind, id string) (string, error) {
	fid, err := FabricID(id)
	if err != nil {
		return "", err
	}
	return fab.NamespaceName(kind, fid), nil
}

// ClientNetwork is a customer's network as the endpoint benchmarks make
// it (CreateClientNetwork).
type ClientNetwork struct {
	// RG is its resource group; VNetID and ZoneID are the IDs of its
	// virtual network and of its privatelink zone.
	RG, VNetID, ZoneID string
	// NIC is its client NIC.
	NIC armnetwork.Interface
}

// CreateClientNetwork creates, in group rg (which must exist), virtual
// network "vnet" (10.0.0.0/16: subnets clients 10.0.1.0/24 and endpoints
// as given), a client NIC "client" in clients, and the zone
// PrivateLinkZone linked to the network (link "vnet").
func (c *Clients) CreateClientNetwork(ctx context.Context, rg, endpoints string) (ClientNetwork, error) {
	n := ClientNetwork{RG: rg, VNetID: c.ID(rg, "Microsoft.Network/virtualNetworks", "vnet"),
		ZoneID: c.ID(rg, "Microsoft.Network/privateDnsZones", PrivateLinkZone)}
	if _, err := c.CreateVNet(ctx, rg, "vnet", VNetBody("10.0.0.0/16", Subnet{"clients", "10.0.1.0/24"}, Subnet{"endpoints", endpoints})); err != nil {
		return n, err
	}
	var err error
	if n.NIC, err = c.CreateNIC(ctx, rg, "client", n.VNetID+"/subnets/clients", nil); err != nil {
		return n, err
	}
	if err := c.CreateZone(ctx, rg, PrivateLinkZone); err != nil {
		return n, err
	}
	return n, c.LinkZone(ctx, rg, PrivateLinkZone, "vnet", n.VNetID)
}

// CreateASG creates application security group name of group rg and
// returns its ID.
func (c *Clients) CreateASG(ctx context.Context, rg, name string) (string, error) {
	p, err := c.ASGs.BeginCreateOrUpdate(ctx, rg, name, armnetwork.ApplicationSecurityGroup{Location: To(Location)}, nil)
	r, err := poll(ctx, rg+": application security group "+name, p, err)
	return deref(r.ID), err
}

// CreateNSG creates network security group name of group rg with rules and
// returns its ID.
func (c *Clients) CreateNSG(ctx context.Context, rg, name string, rules []*armnetwork.SecurityRule) (string, error) {
	p, err := c.NSGs.BeginCreateOrUpdate(ctx, rg, name, armnetwork.SecurityGroup{Location: To(Location),
		Properties: &armnetwork.SecurityGroupPropertiesFormat{SecurityRules: rules}}, nil)
	r, err := poll(ctx, rg+": network security group "+name, p, err)
	return deref(r.ID), err
}

// PutRule PUTs security rule name of NSG nsg (group rg) and polls it until
// done.
func (c *Clients) PutRule(ctx context.Context, rg, nsg, name string, props *armnetwork.SecurityRulePropertiesFormat) (Times, error) {
	var t Times
	start := time.Now()
	p, err := c.Rules.BeginCreateOrUpdate(ctx, rg, nsg, name, armnetwork.SecurityRule{Properties: props}, nil)
	t.Answered = time.Since(start)
	_, err = poll(ctx, rg+": security rule "+nsg+"/"+name, p, err)
	t.Done = time.Since(start)
	return t, err
}

// UpdateSubnet reads subnet name of network vnet (group rg), applies
// change to it and PUTs it back, polling until done.
func (c *Clients) UpdateSubnet(ctx context.Context, rg, vnet, name string, change func(*armnetwork.SubnetPropertiesFormat)) error {
	got, err := c.Subnets.Get(ctx, rg, vnet, name, nil)
	if err != nil {
		return fmt.Errorf("%s: subnet %s/%s: %w", rg, vnet, name, err)
	}
	s := got.Subnet
	if s.Properties == nil {
		s.Properties = &armnetwork.SubnetPropertiesFormat{}
	}
	change(s.Properties)
	p, err := c.Subnets.BeginCreateOrUpdate(ctx, rg, vnet, name, armnetwork.Subnet{Properties: s.Properties}, nil)
	_, err = poll(ctx, rg+": subnet "+vnet+"/"+name, p, err)
	return err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
