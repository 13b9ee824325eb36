package e2e

import (
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/privlink/privlink/internal/azconfig"
	"github.com/privlink/privlink/internal/identity"
	"github.com/privlink/privlink/internal/testkit"
)

// peerNet is one network of the peering topology: a VNet with a subnet
// "clients" and a NIC in it, in its customer's resource group.
type peerNet struct {
	c    *customer
	name string // the VNet's
	nic  string
}

func (n peerNet) id() string { return n.c.id("Microsoft.Network/virtualNetworks", n.name) }

// where is the privlink exec selection of the network's client NIC.
func (n peerNet) where() []string { return []string{"-g", n.c.rg, n.nic} }

// peerNetwork creates network name (space, clients subnet) in location
// with a client NIC.
func (c *customer) peerNetwork(t *testing.T, name, space, clients, location string) peerNet {
	t.Helper()
	cx := ctx(t)
	v := vnetBody(space, map[string]string{"clients": clients})
	v.Location = ptr(location)
	vp, err := c.vnets.BeginCreateOrUpdate(cx, c.rg, name, v, nil)
	if err == nil {
		_, err = vp.PollUntilDone(cx, pollOpts)
	}
	if err != nil {
		t.Fatalf("network %s: %v", name, err)
	}
	n := peerNet{c: c, name: name, nic: name + "-client"}
	np, err := c.nics.BeginCreateOrUpdate(cx, c.rg, n.nic, armnetwork.Interface{Location: ptr(location),
		Properties: &armnetwork.InterfacePropertiesFormat{IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{Name: ptr("ip"),
			Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{Subnet: &armnetwork.Subnet{ID: ptr(n.id() + "/subnets/clients")}}}}}}, nil)
	if err == nil {
		_, err = np.PollUntilDone(cx, pollOpts)
	}
	if err != nil {
		t.Fatalf("NIC of %s: %v", name, err)
	}
	return n
}

// linkZone links c's privatelink zone to network vnet.
func (c *customer) linkZone(t *testing.T, link, vnet string) {
	t.Helper()
	cx := ctx(t)
	lp, err := c.links.BeginCreateOrUpdate(cx, c.rg, plZone, link, armprivatedns.VirtualNetworkLink{Location: ptr("global"),
		Properties: &armprivatedns.VirtualNetworkLinkProperties{VirtualNetwork: &armprivatedns.SubResource{ID: ptr(vnet)}}}, nil)
	if err == nil {
		_, err = lp.PollUntilDone(cx, pollOpts)
	}
	if err != nil {
		t.Fatalf("link %s: %v", link, err)
	}
}

// peerings returns a peerings client of c's subscription that also sends
// a token of each of aux's tenants (a peering with their networks).
func (c *customer) peerings(t *testing.T, aux ...*azconfig.Config) *armnetwork.VirtualNetworkPeeringsClient {
	t.Helper()
	cred, o := azcore.TokenCredential(c.cfg.Credential), c.cfg.ClientOptions()
	if len(aux) > 0 {
		cred, o = c.cfg.WithAuxiliary(aux...)
	}
	pc, err := armnetwork.NewVirtualNetworkPeeringsClient(c.cfg.Creds.SubscriptionID, cred, o)
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// peeringName is the name of a network's peering with network to.
func peeringName(to peerNet) string { return "to-" + to.name }

// peer writes from's peering with network to (access: its
// allowVirtualNetworkAccess) and returns it, or the error.
func peer(t *testing.T, pc *armnetwork.VirtualNetworkPeeringsClient, from, to peerNet, access bool) (armnetwork.VirtualNetworkPeering, error) {
	t.Helper()
	cx := ctx(t)
	p, err := pc.BeginCreateOrUpdate(cx, from.c.rg, from.name, peeringName(to), armnetwork.VirtualNetworkPeering{Properties: &armnetwork.VirtualNetworkPeeringPropertiesFormat{
		RemoteVirtualNetwork: &armnetwork.SubResource{ID: ptr(to.id())}, AllowVirtualNetworkAccess: ptr(access)}}, nil)
	if err != nil {
		return armnetwork.VirtualNetworkPeering{}, err
	}
	res, err := p.PollUntilDone(cx, pollOpts)
	return res.VirtualNetworkPeering, err
}

func mustPeer(t *testing.T, pc *armnetwork.VirtualNetworkPeeringsClient, from, to peerNet, access bool) armnetwork.VirtualNetworkPeeringState {
	t.Helper()
	p, err := peer(t, pc, from, to, access)
	if err != nil {
		t.Fatalf("peering %s -> %s: %v", from.name, to.name, err)
	}
	return *p.Properties.PeeringState
}

func peeringState(t *testing.T, pc *armnetwork.VirtualNetworkPeeringsClient, n, to peerNet) armnetwork.VirtualNetworkPeeringState {
	t.Helper()
	p, err := pc.Get(ctx(t), n.c.rg, n.name, peeringName(to), nil)
	if err != nil {
		t.Fatalf("peering of %s: %v", n.name, err)
	}
	return *p.Properties.PeeringState
}

func unpeer(t *testing.T, pc *armnetwork.VirtualNetworkPeeringsClient, n, to peerNet) {
	t.Helper()
	cx := ctx(t)
	p, err := pc.BeginDelete(cx, n.c.rg, n.name, peeringName(to), nil)
	if err == nil {
		_, err = p.PollUntilDone(cx, pollOpts)
	}
	if err != nil {
		t.Fatalf("delete the peering of %s: %v", n.name, err)
	}
}

// reaches runs a query through psql verify-full by the server's name from
// n's client NIC and reports whether it worked.
func (n peerNet) reaches(d *daemon, name string) (string, error) {
	return psqlAs(d, n.c.credFile, n.where(), name, "select 'through '||inet_server_addr()")
}

// waitReaches waits until n's client reaches the server by name (store
// changes reach the kernel through watches, not synchronously) and
// returns how long that took.
func waitReaches(t *testing.T, d *daemon, n peerNet, name string) time.Duration {
	t.Helper()
	start := time.Now()
	var out string
	var err error
	if !testkit.Poll(20*time.Second, func() bool { out, err = n.reaches(d, name); return err == nil }) {
		t.Fatalf("psql from %s to %s: %v: %s", n.name, name, err, out)
	}
	return time.Since(start)
}

// waitCut waits until n's client no longer reaches the server.
func waitCut(t *testing.T, d *daemon, n peerNet, name string) {
	t.Helper()
	var out string
	if !testkit.Poll(20*time.Second, func() bool { var err error; out, err = n.reaches(d, name); return err != nil }) {
		t.Fatalf("psql from %s to %s still works: %s", n.name, name, out)
	}
}

// mustNotReach checks that n's client does not reach the server.
func mustNotReach(t *testing.T, d *daemon, n peerNet, name, why string) {
	t.Helper()
	if out, err := n.reaches(d, name); err == nil {
		t.Fatalf("psql from %s reached %s (%s): %s", n.name, name, why, out)
	}
}

// longSession starts psql from n running pg_sleep(secs) and waits until
// the server runs it; the channel tells when psql exits.
func longSession(t *testing.T, d *daemon, n peerNet, name, secs string) <-chan error {
	t.Helper()
	return sleepSession(t, d, []string{"--credentials", n.c.credFile}, n.where(), "host="+name, secs, "owner", "srv1")
}

// TestPeering is issue 11's peering acceptance: a server's endpoint in a
// hub network; a spoke in another location and a spoke in another tenant
// peered with the hub connect with psql verify-full by name; a network
// peered only with a spoke does not (not transitive); overlapping spaces
// are refused with Azure's code; the state machine Initiated → Connected
// → Disconnected with traffic exactly when Connected and
// allowVirtualNetworkAccess; a deleted peering cuts a live session; a
// restart and a kill -9 of privlinkd keep peerings and sessions, and
// changes after them converge. DNS follows each network's own zone links.
func TestPeering(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip", "dig", "psql")
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) { testPeering(t, startDaemon(t, backend)) })
	}
}

func testPeering(t *testing.T, d *daemon) {
	t.Cleanup(func() { stopPostmasters(t, d) })
	const name = "srv1.postgres.database.azure.com"

	// The hub: the server's endpoint 10.0.2.4, the privatelink zone.
	owner := newCustomer(t, d, d.cfg, "owner")
	pg := newPGClients(t, d, d.creds.SubscriptionID)
	createServer(t, pg, "owner", "srv1")
	owner.network(t, "10.0.2.0/24")
	if ip := peIP(owner.endpoint(t, "pe-hub", owner.id("Microsoft.DBforPostgreSQL/flexibleServers", "srv1"), false)); ip != "10.0.2.4" {
		t.Fatalf("hub endpoint at %q", ip)
	}
	hub := peerNet{c: owner, name: "vnet", nic: "client"}
	waitReaches(t, d, hub, name)

	// A spoke in another location, and a leaf peered only with it; the
	// hub's zone is linked to both, so names resolve there.
	far := owner.peerNetwork(t, "far", "10.1.0.0/16", "10.1.1.0/24", "eastus")
	leaf := owner.peerNetwork(t, "leaf", "10.3.0.0/16", "10.3.1.0/24", "eastus")
	owner.linkZone(t, "far", far.id())
	owner.linkZone(t, "leaf", leaf.id())
	waitDigAs(t, d, owner.credFile, "owner", far.nic, name, "10.0.2.4")
	ops := owner.peerings(t)
	mustNotReach(t, d, far, name, "no peering")

	// Initiated: one side only, no traffic. Connected: both, traffic.
	if st := mustPeer(t, ops, hub, far, true); st != armnetwork.VirtualNetworkPeeringStateInitiated {
		t.Fatalf("first side = %s", st)
	}
	mustNotReach(t, d, far, name, "peering Initiated")
	if st := mustPeer(t, ops, far, hub, true); st != armnetwork.VirtualNetworkPeeringStateConnected {
		t.Fatalf("second side = %s", st)
	}
	if st := peeringState(t, ops, hub, far); st != armnetwork.VirtualNetworkPeeringStateConnected {
		t.Fatalf("first side after the second = %s", st)
	}
	t.Logf("peering PUT -> first query from the peered network: %v", waitReaches(t, d, far, name))

	// Overlap: refused with Azure's code.
	dup := owner.peerNetwork(t, "dup", "10.0.128.0/17", "10.0.129.0/24", "westeurope")
	_, err := peer(t, ops, dup, hub, true)
	testkit.WantARMError(t, err, http.StatusBadRequest, "VnetAddressSpacesOverlap")

	// Not transitive: leaf <-> far Connected, leaf does not reach the hub.
	mustPeer(t, ops, leaf, far, true)
	if st := mustPeer(t, ops, far, leaf, true); st != armnetwork.VirtualNetworkPeeringStateConnected {
		t.Fatalf("far <-> leaf = %s", st)
	}
	waitDigAs(t, d, owner.credFile, "owner", leaf.nic, name, "10.0.2.4")
	mustNotReach(t, d, leaf, name, "peered only with a spoke")
	waitReaches(t, d, far, name)

	// Another tenant's spoke: each side writes with the other tenant's
	// token (x-ms-authorization-auxiliary) of a principal with rights on
	// the remote network.
	other := newCustomer(t, d, d.principal(true), "t2")
	spoke := other.peerNetwork(t, "spoke", "10.2.0.0/16", "10.2.1.0/24", "westeurope")
	peerer := d.principal(false)
	assignRole(t, d.cfg, hub.id(), objectID(t, peerer), identity.NetworkContributorRoleID)
	_, err = peer(t, other.peerings(t), spoke, hub, true)
	testkit.WantARMError(t, err, http.StatusForbidden, "LinkedAuthorizationFailed")
	mustPeer(t, other.peerings(t, peerer), spoke, hub, true)
	if st := mustPeer(t, owner.peerings(t, other.cfg), hub, spoke, true); st != armnetwork.VirtualNetworkPeeringStateConnected {
		t.Fatalf("cross-tenant pair = %s", st)
	}
	// DNS answers from the spoke's own links only: the hub's zone is not
	// linked to it, so the name gets the public answer there (the
	// server's public address), peered or not, never the endpoint's.
	if got := digAs(t, d, other.credFile, "t2", spoke.nic, name); got == "10.0.2.4" || got == "" {
		t.Errorf("the spoke, without a zone link of its own, resolves %q", got)
	} else {
		t.Logf("the spoke without a zone link resolves the public answer %s", got)
	}
	// A zone of its own, linked to the spoke, with the endpoint's record.
	cx := ctx(t)
	zp, err := other.zones.BeginCreateOrUpdate(cx, "t2", plZone, armprivatedns.PrivateZone{Location: ptr("global")}, nil)
	if err == nil {
		_, err = zp.PollUntilDone(cx, pollOpts)
	}
	if err != nil {
		t.Fatal(err)
	}
	other.linkZone(t, "spoke", spoke.id())
	rf, _ := armprivatedns.NewRecordSetsClient(other.cfg.Creds.SubscriptionID, other.cfg.Credential, other.cfg.ClientOptions())
	if _, err := rf.CreateOrUpdate(cx, "t2", plZone, armprivatedns.RecordTypeA, "srv1", armprivatedns.RecordSet{Properties: &armprivatedns.RecordSetProperties{
		TTL: ptr[int64](10), ARecords: []*armprivatedns.ARecord{{IPv4Address: ptr("10.0.2.4")}}}}, nil); err != nil {
		t.Fatal(err)
	}
	waitDigAs(t, d, other.credFile, "t2", spoke.nic, name, "10.0.2.4")
	waitReaches(t, d, spoke, name)

	// Access off on one side: a live session across the peering ends, no
	// traffic either way; on again: back.
	live := longSession(t, d, far, name, "61")
	mustPeer(t, ops, far, hub, false)
	off := time.Now()
	select {
	case <-live:
		t.Logf("the live session across the peering ended %v after access was turned off", time.Since(off))
	case <-time.After(10 * time.Second):
		t.Errorf("a live session survived allowVirtualNetworkAccess turned off")
	}
	waitCut(t, d, far, name)
	mustPeer(t, ops, far, hub, true)
	waitReaches(t, d, far, name)

	// Deleting a side: the survivor is Disconnected, and a live session
	// across the peering ends.
	exited := longSession(t, d, far, name, "60")
	unpeer(t, ops, hub, far)
	deleted := time.Now()
	select {
	case <-exited:
		t.Logf("the live session across the deleted peering ended %v after the DELETE returned", time.Since(deleted))
	case <-time.After(10 * time.Second):
		t.Errorf("the live session across the deleted peering survived")
	}
	if st := peeringState(t, ops, far, hub); st != armnetwork.VirtualNetworkPeeringStateDisconnected {
		t.Errorf("survivor = %s, want Disconnected", st)
	}
	mustNotReach(t, d, far, name, "peering Disconnected")
	waitReaches(t, d, spoke, name) // the hub's other peering is untouched
	// Re-created on both sides: Connected again.
	unpeer(t, ops, far, hub)
	mustPeer(t, ops, hub, far, true)
	mustPeer(t, ops, far, hub, true)
	waitReaches(t, d, far, name)

	// kill -9 and a clean restart of privlinkd: a live session across a
	// peering survives both (the kernel holds it), the peerings keep
	// working, and a change after the restart converges.
	session := longSession(t, d, spoke, name, "45")
	d.restart(syscall.SIGKILL)
	waitReaches(t, d, far, name)
	d.restart(syscall.SIGTERM)
	waitReaches(t, d, far, name)
	waitReaches(t, d, spoke, name)
	select {
	case err := <-session:
		t.Errorf("the session across the cross-tenant peering ended with privlinkd's restarts: %v", err)
	default:
	}
	if out := serverIn(t, d, "owner", "srv1").mustPSQL(t, "select count(*) from pg_stat_activity where query = 'select pg_sleep(45)'"); out != "1" {
		t.Errorf("server-side session after the restarts: %s", out)
	}
	unpeer(t, other.peerings(t), spoke, hub)
	waitCut(t, d, spoke, name)
	select {
	case <-session:
	case <-time.After(10 * time.Second):
		t.Errorf("the session across the cross-tenant peering survived its deletion")
	}
	waitReaches(t, d, far, name)
}
