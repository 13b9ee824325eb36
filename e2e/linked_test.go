package e2e

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/controller"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/testkit"
)

// TestJoinNeedsTheSubnet reproduces issue 14's first defect: a principal
// who is Contributor on its own resource group only must not place a NIC
// or a private endpoint in a subnet of another group (Azure: 403
// LinkedAuthorizationFailed for
// Microsoft.Network/virtualNetworks/subnets/join/action). Before the
// router checked linked actions, both writes were accepted, and from the
// NIC's namespace the other group's endpoint reached its server. Once the
// owner grants a role on the network, the same NIC is accepted and is in
// that network: the check is what kept it out.
func TestJoinNeedsTheSubnet(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip", "dig")
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	cx := ctx(t)
	sub := d.creds.SubscriptionID

	// The owner's group "theirs": a network, a server, an approved
	// endpoint to it.
	theirs := newCustomer(t, d, d.cfg, "theirs")
	theirs.network(t, "10.0.2.0/24")
	pg := newPGClients(t, d, sub)
	createServer(t, pg, "theirs", "srv-linked")
	theirs.endpoint(t, "pe", theirs.id("Microsoft.DBforPostgreSQL/flexibleServers", "srv-linked"), false)

	// Another principal is Contributor on group "mine" only.
	createGroup(t, d, "mine")
	limited := d.principal(false)
	oid, _ := jwtClaims(t, token(t, limited))["oid"].(string)
	assignRole(t, d.cfg, "/subscriptions/"+sub+"/resourceGroups/mine", oid, "b24988ac-6180-42a0-ab88-20f7382dd24c") // Contributor
	nf, err := armnetwork.NewClientFactory(sub, limited.Credential, limited.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	n := netClients{nics: nf.NewInterfacesClient()}
	vnet := theirs.id("Microsoft.Network/virtualNetworks", "vnet")

	_, err = putNIC(t, n, "mine", "intruder", vnet+"/subnets/clients", "")
	testkit.WantARMError(t, err, http.StatusForbidden, "LinkedAuthorizationFailed")
	if err != nil && !strings.Contains(err.Error(), "Microsoft.Network/virtualNetworks/subnets/join/action") {
		t.Errorf("the refusal does not name the linked action: %v", err)
	}
	pes := nf.NewPrivateEndpointsClient()
	_, err = pes.BeginCreateOrUpdate(cx, "mine", "intruder-pe", armnetwork.PrivateEndpoint{Location: ptr("westeurope"),
		Properties: &armnetwork.PrivateEndpointProperties{
			Subnet: &armnetwork.Subnet{ID: ptr(vnet + "/subnets/endpoints")},
			PrivateLinkServiceConnections: []*armnetwork.PrivateLinkServiceConnection{{Name: ptr("c"), Properties: &armnetwork.PrivateLinkServiceConnectionProperties{
				PrivateLinkServiceID: ptr(theirs.id("Microsoft.DBforPostgreSQL/flexibleServers", "srv-linked")), GroupIDs: []*string{ptr("postgresqlServer")}}}},
		}}, nil)
	testkit.WantARMError(t, err, http.StatusForbidden, "LinkedAuthorizationFailed")
	nics, _ := armnetwork.NewInterfacesClient(sub, d.cfg.Credential, d.opts())
	if _, err := nics.Get(cx, "mine", "intruder", nil); err == nil {
		t.Error("the refused NIC exists")
	}
	intruder, _ := arm.ParseID("/subscriptions/" + sub + "/resourceGroups/mine/providers/Microsoft.Network/networkInterfaces/intruder")
	fab, err := fabric.New(d.prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/run/netns/" + fab.NamespaceName(fabric.KindNIC, controller.FabricID(intruder))); err == nil {
		t.Error("the refused NIC has a namespace")
	}

	// With Network Contributor on the network, joining is allowed: the
	// NIC lands in their network and reaches their endpoint.
	assignRole(t, d.cfg, vnet, oid, "4d97b98b-1d4f-4787-a291-c67834d212e7") // Network Contributor
	if _, err := putNIC(t, n, "mine", "guest", vnet+"/subnets/clients", ""); err != nil {
		t.Fatalf("NIC with a role on the network: %v", err)
	}
	if err := sslRequestIn(d, "/subscriptions/"+sub+"/resourceGroups/mine/providers/Microsoft.Network/networkInterfaces/guest", "10.0.2.4"); err != nil {
		t.Errorf("a NIC admitted to the network does not reach its endpoint: %v", err)
	}
}
