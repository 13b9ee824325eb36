package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/privlink/privlink/internal/azconfig"
	"github.com/privlink/privlink/internal/testkit"
)

// customer is one principal's view: its subscription and SDK clients.
type customer struct {
	cfg      *azconfig.Config
	credFile string
	rg       string
	vnets    *armnetwork.VirtualNetworksClient
	nics     *armnetwork.InterfacesClient
	pes      *armnetwork.PrivateEndpointsClient
	groups   *armnetwork.PrivateDNSZoneGroupsClient
	zones    *armprivatedns.PrivateZonesClient
	links    *armprivatedns.VirtualNetworkLinksClient
	conns    *armpostgresqlflexibleservers.PrivateEndpointConnectionsClient
	servers  *armpostgresqlflexibleservers.ServersClient
}

func newCustomer(t *testing.T, d *daemon, cfg *azconfig.Config, rg string) *customer {
	t.Helper()
	o := cfg.ClientOptions()
	nf, err := armnetwork.NewClientFactory(cfg.Creds.SubscriptionID, cfg.Credential, o)
	if err != nil {
		t.Fatal(err)
	}
	df, _ := armprivatedns.NewClientFactory(cfg.Creds.SubscriptionID, cfg.Credential, o)
	pf, _ := armpostgresqlflexibleservers.NewClientFactory(d.creds.SubscriptionID, cfg.Credential, o) // the servers live with the owner
	f := filepath.Join(t.TempDir(), "creds.json")
	b, _ := json.Marshal(cfg.Creds)
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c := &customer{cfg: cfg, credFile: f, rg: rg, vnets: nf.NewVirtualNetworksClient(), nics: nf.NewInterfacesClient(),
		pes: nf.NewPrivateEndpointsClient(), groups: nf.NewPrivateDNSZoneGroupsClient(), zones: df.NewPrivateZonesClient(),
		links: df.NewVirtualNetworkLinksClient(), conns: pf.NewPrivateEndpointConnectionsClient(), servers: pf.NewServersClient()}
	rgs, _ := armresources.NewResourceGroupsClient(cfg.Creds.SubscriptionID, cfg.Credential, o)
	if _, err := rgs.CreateOrUpdate(ctx(t), rg, armresources.ResourceGroup{Location: ptr("westeurope")}, nil); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *customer) id(kind, name string) string {
	return "/subscriptions/" + c.cfg.Creds.SubscriptionID + "/resourceGroups/" + c.rg + "/providers/" + kind + "/" + name
}

// network builds a client network: a VNet with a client subnet and an
// endpoint subnet, a client NIC, and the privatelink zone linked to it.
func (c *customer) network(t *testing.T, peSubnet string) {
	t.Helper()
	cx := ctx(t)
	vp, err := c.vnets.BeginCreateOrUpdate(cx, c.rg, "vnet", vnetBody("10.0.0.0/16", map[string]string{"clients": "10.0.1.0/24", "endpoints": peSubnet}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	np, err := c.nics.BeginCreateOrUpdate(cx, c.rg, "client", armnetwork.Interface{Location: ptr("westeurope"),
		Properties: &armnetwork.InterfacePropertiesFormat{IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{Name: ptr("ip"),
			Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{Subnet: &armnetwork.Subnet{ID: ptr(c.id("Microsoft.Network/virtualNetworks", "vnet") + "/subnets/clients")}}}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := np.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	zp, err := c.zones.BeginCreateOrUpdate(cx, c.rg, plZone, armprivatedns.PrivateZone{Location: ptr("global")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	lp, err := c.links.BeginCreateOrUpdate(cx, c.rg, plZone, "vnet", armprivatedns.VirtualNetworkLink{Location: ptr("global"),
		Properties: &armprivatedns.VirtualNetworkLinkProperties{VirtualNetwork: &armprivatedns.SubResource{ID: ptr(c.id("Microsoft.Network/virtualNetworks", "vnet"))}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
}

// endpoint creates an endpoint to server with its zone group; manual asks
// for approval instead of auto-approval.
func (c *customer) endpoint(t *testing.T, name, server string, manual bool) armnetwork.PrivateEndpoint {
	t.Helper()
	pe := c.endpointAlone(t, name, server, manual)
	c.zoneGroup(t, name)
	return pe
}

// endpointAlone creates the endpoint name to server and waits for its
// operation, without a zone group.
func (c *customer) endpointAlone(t *testing.T, name, server string, manual bool) armnetwork.PrivateEndpoint {
	t.Helper()
	pe, err := c.tryEndpoint(ctx(t), name, server, manual)
	if err != nil {
		t.Fatalf("endpoint %s: %v", name, err)
	}
	return pe
}

// tryEndpoint creates the endpoint name to server and waits for its
// operation; it returns the operation's error (safe from any goroutine).
func (c *customer) tryEndpoint(cx context.Context, name, server string, manual bool) (armnetwork.PrivateEndpoint, error) {
	conn := []*armnetwork.PrivateLinkServiceConnection{{Name: ptr(name), Properties: &armnetwork.PrivateLinkServiceConnectionProperties{
		PrivateLinkServiceID: &server, GroupIDs: []*string{ptr("postgresqlServer")}, RequestMessage: ptr("from " + c.rg)}}}
	props := &armnetwork.PrivateEndpointProperties{Subnet: &armnetwork.Subnet{ID: ptr(c.id("Microsoft.Network/virtualNetworks", "vnet") + "/subnets/endpoints")}}
	if manual {
		props.ManualPrivateLinkServiceConnections = conn
	} else {
		props.PrivateLinkServiceConnections = conn
	}
	p, err := c.pes.BeginCreateOrUpdate(cx, c.rg, name, armnetwork.PrivateEndpoint{Location: ptr("westeurope"), Properties: props}, nil)
	if err != nil {
		return armnetwork.PrivateEndpoint{}, err
	}
	pe, err := p.PollUntilDone(cx, pollOpts)
	return pe.PrivateEndpoint, err
}

// zoneGroup gives endpoint name a DNS zone group with the privatelink zone.
func (c *customer) zoneGroup(t *testing.T, name string) {
	t.Helper()
	cx := ctx(t)
	gp, err := c.groups.BeginCreateOrUpdate(cx, c.rg, name, "default", armnetwork.PrivateDNSZoneGroup{Properties: &armnetwork.PrivateDNSZoneGroupPropertiesFormat{
		PrivateDNSZoneConfigs: []*armnetwork.PrivateDNSZoneConfig{{Name: ptr("pl"), Properties: &armnetwork.PrivateDNSZonePropertiesFormat{PrivateDNSZoneID: ptr(c.id("Microsoft.Network/privateDnsZones", plZone))}}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
}

func (c *customer) state(t *testing.T, name string) string {
	t.Helper()
	pe, err := c.pes.Get(ctx(t), c.rg, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	conns := append(pe.Properties.PrivateLinkServiceConnections, pe.Properties.ManualPrivateLinkServiceConnections...)
	if len(conns) != 1 {
		t.Fatalf("endpoint %s has %d connections", name, len(conns))
	}
	return *conns[0].Properties.PrivateLinkServiceConnectionState.Status
}

func peIP(pe armnetwork.PrivateEndpoint) string {
	if len(pe.Properties.CustomDNSConfigs) == 0 || len(pe.Properties.CustomDNSConfigs[0].IPAddresses) == 0 {
		return ""
	}
	return *pe.Properties.CustomDNSConfigs[0].IPAddresses[0]
}

// setConnection approves or rejects, as the server's owner, the connection
// of the endpoint named pe.
func setConnection(t *testing.T, owner *customer, server, pe, status string) error {
	t.Helper()
	cx := ctx(t)
	var name string
	for pg := owner.conns.NewListByServerPager(owner.rg, server, nil); pg.More(); {
		page, err := pg.NextPage(cx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page.Value {
			if strings.HasPrefix(*c.Name, pe+".") {
				name = *c.Name
			}
		}
	}
	if name == "" {
		t.Fatalf("no connection of %s on %s", pe, server)
	}
	p, err := owner.conns.BeginUpdate(cx, owner.rg, server, name, armpostgresqlflexibleservers.PrivateEndpointConnection{
		Properties: &armpostgresqlflexibleservers.PrivateEndpointConnectionProperties{PrivateLinkServiceConnectionState: &armpostgresqlflexibleservers.PrivateLinkServiceConnectionState{
			Status: ptr(armpostgresqlflexibleservers.PrivateEndpointServiceConnectionStatus(status)), Description: ptr(status + " by the e2e test")}}}, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(cx, pollOpts)
	return err
}

// TestPrivateEndpoints walks the approval workflow across tenants and
// checks DNS inside each network follows it.
func TestPrivateEndpoints(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip", "dig")
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) { testPrivateEndpoints(t, startDaemon(t, backend)) })
	}
}

func testPrivateEndpoints(t *testing.T, d *daemon) {
	t.Cleanup(func() { stopPostmasters(t, d) })
	cx := ctx(t)
	owner := newCustomer(t, d, d.cfg, "owner")
	pg := newPGClients(t, d, d.creds.SubscriptionID)
	createServer(t, pg, "owner", "srv1")
	server := owner.id("Microsoft.DBforPostgreSQL/flexibleServers", "srv1")
	const name = "srv1.postgres.database.azure.com"

	// The owner's own endpoint is approved at once.
	owner.network(t, "10.0.2.0/24")
	pe := owner.endpoint(t, "pe-owner", server, false)
	if got := owner.state(t, "pe-owner"); got != "Approved" {
		t.Fatalf("owner's endpoint: %s", got)
	}
	if ip := peIP(pe); ip != "10.0.2.4" {
		t.Fatalf("owner's endpoint IP %q", ip)
	}
	waitDigAs(t, d, "", "owner", "client", name, "10.0.2.4")

	// A second tenant, overlapping 10.0.0.0/16: Pending, and it cannot
	// approve itself.
	other := newCustomer(t, d, d.principal(true), "other")
	other.network(t, "10.0.5.0/24")
	pe2 := other.endpoint(t, "pe-other", server, true)
	if got := other.state(t, "pe-other"); got != "Pending" {
		t.Fatalf("other tenant's endpoint: %s", got)
	}
	if ip := peIP(pe2); ip != "10.0.5.4" {
		t.Fatalf("other's endpoint IP %q", ip)
	}
	if got := digAs(t, d, other.credFile, "other", "client", name); got != "NXDOMAIN" {
		t.Errorf("a Pending endpoint resolves: %q", got)
	}
	if err := setConnection(t, owner, "srv1", "pe-other", "Approved"); err != nil {
		t.Fatal(err)
	}
	if got := other.state(t, "pe-other"); got != "Approved" {
		t.Fatalf("after approval: %s", got)
	}
	// Each network resolves the name to its own endpoint.
	waitDigAs(t, d, other.credFile, "other", "client", name, "10.0.5.4")
	waitDigAs(t, d, "", "owner", "client", name, "10.0.2.4")

	// The other tenant cannot approve or reject through the server.
	otherConns, _ := armpostgresqlflexibleservers.NewPrivateEndpointConnectionsClient(d.creds.SubscriptionID, other.cfg.Credential, other.cfg.ClientOptions())
	_, err := otherConns.Get(cx, "owner", "srv1", "x", nil)
	testkit.WantARMError(t, err, http.StatusForbidden, "AuthorizationFailed")

	// Reject → the record goes; re-request → Pending; approve → back.
	if err := setConnection(t, owner, "srv1", "pe-other", "Rejected"); err != nil {
		t.Fatal(err)
	}
	if got := other.state(t, "pe-other"); got != "Rejected" {
		t.Fatalf("after reject: %s", got)
	}
	waitDigAs(t, d, other.credFile, "other", "client", name, "NXDOMAIN")
	other.endpoint(t, "pe-other", server, true)
	if got := other.state(t, "pe-other"); got != "Pending" {
		t.Fatalf("after re-request: %s", got)
	}
	if err := setConnection(t, owner, "srv1", "pe-other", "Approved"); err != nil {
		t.Fatal(err)
	}
	waitDigAs(t, d, other.credFile, "other", "client", name, "10.0.5.4")

	// HA on a server with endpoints fails because of them.
	_, err = pg.servers.BeginUpdate(cx, "owner", "srv1", armpostgresqlflexibleservers.ServerForPatch{Properties: &armpostgresqlflexibleservers.ServerPropertiesForPatch{
		HighAvailability: &armpostgresqlflexibleservers.HighAvailabilityForPatch{Mode: ptr(armpostgresqlflexibleservers.HighAvailabilityModeZoneRedundant)}}}, nil)
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "private endpoint") {
		t.Errorf("HA on a server with endpoints: %v", err)
	}

	// Everything survives a restart.
	d.restart(syscall.SIGTERM)
	if got := other.state(t, "pe-other"); got != "Approved" {
		t.Errorf("after restart: %s", got)
	}
	waitDigAs(t, d, other.credFile, "other", "client", name, "10.0.5.4")

	// Deleting the owner's endpoint removes its connection and its record.
	dp, err := owner.pes.BeginDelete(cx, "owner", "pe-owner", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	waitDigAs(t, d, "", "owner", "client", name, "NXDOMAIN")

	// Deleting the server leaves the other's endpoint Disconnected.
	sp, err := pg.servers.BeginDelete(cx, "owner", "srv1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	if got := other.state(t, "pe-other"); got != "Disconnected" {
		t.Errorf("after server delete: %s", got)
	}
	waitDigAs(t, d, other.credFile, "other", "client", name, "NXDOMAIN")

	// Re-create the server with a new endpoint: right again, DNS and
	// sessions.
	createServer(t, pg, "owner", "srv1")
	owner.endpoint(t, "pe-owner2", server, false)
	waitDigAs(t, d, "", "owner", "client", name, "10.0.2.4")
	var out string
	if !testkit.Poll(15*time.Second, func() bool {
		out, err = psqlIn(d, []string{"-g", "owner", "client"}, name, "select 1")
		return err == nil
	}) {
		t.Errorf("psql to the re-created server through its new endpoint: %v: %s", err, out)
	}
}
