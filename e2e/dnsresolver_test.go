package e2e

import (
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/dnsresolver/armdnsresolver"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/controller"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/testkit"
)

// TestDNSResolver: a DNS Private Resolver's inbound endpoint answers as
// the network's 168.63.129.16 does, on an address of its own subnet. A
// client NIC whose dnsSettings name only the inbound endpoint resolves the
// server's public name (CNAME to privatelink) to the private endpoint and
// connects with verify-full by name; deleting the endpoint stops it.
func TestDNSResolver(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip", "dig", "psql")
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	cx := ctx(t)
	owner := newCustomer(t, d, d.cfg, "dnsr")
	pg := newPGClients(t, d, d.creds.SubscriptionID)
	createServer(t, pg, "dnsr", "srvdnsr")
	server := owner.id("Microsoft.DBforPostgreSQL/flexibleServers", "srvdnsr")
	const name = "srvdnsr.postgres.database.azure.com"
	owner.network(t, "10.0.2.0/24")
	if ip := peIP(owner.endpoint(t, "pe", server, false)); ip != "10.0.2.4" {
		t.Fatalf("endpoint IP %q", ip)
	}

	sub := owner.cfg.Creds.SubscriptionID
	nf, err := armnetwork.NewClientFactory(sub, owner.cfg.Credential, owner.cfg.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	rf, err := armdnsresolver.NewClientFactory(sub, owner.cfg.Credential, owner.cfg.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	resolvers, inbound := rf.NewDNSResolversClient(), rf.NewInboundEndpointsClient()
	vnetID := owner.id("Microsoft.Network/virtualNetworks", "vnet")
	sp, err := nf.NewSubnetsClient().BeginCreateOrUpdate(cx, "dnsr", "vnet", "dnsin", armnetwork.Subnet{Properties: &armnetwork.SubnetPropertiesFormat{
		AddressPrefix: ptr("10.0.3.0/28"),
		Delegations: []*armnetwork.Delegation{{Name: ptr("resolver"), Properties: &armnetwork.ServiceDelegationPropertiesFormat{
			ServiceName: ptr("Microsoft.Network/dnsResolvers")}}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}

	rp, err := resolvers.BeginCreateOrUpdate(cx, "dnsr", "resolver", armdnsresolver.DNSResolver{Location: ptr("westeurope"),
		Properties: &armdnsresolver.Properties{VirtualNetwork: &armdnsresolver.SubResource{ID: &vnetID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := rp.PollUntilDone(cx, pollOpts)
	if err != nil {
		t.Fatal(err)
	}
	if s := res.Properties.DNSResolverState; s == nil || *s != armdnsresolver.DNSResolverStateConnected {
		t.Errorf("dnsResolverState %v, want Connected", s)
	}

	putInbound := func(subnet string) (armdnsresolver.InboundEndpoint, error) {
		p, err := inbound.BeginCreateOrUpdate(cx, "dnsr", "resolver", "in", armdnsresolver.InboundEndpoint{Location: ptr("westeurope"),
			Properties: &armdnsresolver.InboundEndpointProperties{IPConfigurations: []*armdnsresolver.IPConfiguration{{
				Subnet: &armdnsresolver.SubResource{ID: ptr(vnetID + "/subnets/" + subnet)}}}}}, nil)
		if err != nil {
			return armdnsresolver.InboundEndpoint{}, err
		}
		r, err := p.PollUntilDone(cx, pollOpts)
		return r.InboundEndpoint, err
	}
	// Azure's rule: a subnet delegated to Microsoft.Network/dnsResolvers.
	_, err = putInbound("clients")
	testkit.WantARMError(t, err, http.StatusBadRequest, "SubnetMissingRequiredDelegation")
	in, err := putInbound("dnsin")
	if err != nil {
		t.Fatal(err)
	}
	ip := *in.Properties.IPConfigurations[0].PrivateIPAddress
	if ip != "10.0.3.4" {
		t.Fatalf("inbound endpoint address %s, want the subnet's first free 10.0.3.4", ip)
	}
	// The address is held: the subnet cannot go under it.
	_, err = nf.NewSubnetsClient().BeginDelete(cx, "dnsr", "vnet", "dnsin", nil)
	testkit.WantARMError(t, err, http.StatusBadRequest, "InUseSubnetCannotBeDeleted")

	// A client in another namespace whose only DNS server is the inbound
	// endpoint.
	np, err := owner.nics.BeginCreateOrUpdate(cx, "dnsr", "client2", armnetwork.Interface{Location: ptr("westeurope"),
		Properties: &armnetwork.InterfacePropertiesFormat{
			DNSSettings: &armnetwork.InterfaceDNSSettings{DNSServers: []*string{&ip}},
			IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{Name: ptr("ip"),
				Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{Subnet: &armnetwork.Subnet{ID: ptr(vnetID + "/subnets/clients")}}}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := np.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	var got string
	if !testkit.Poll(15*time.Second, func() bool {
		got, err = digVia(d, "client2", name, "")
		return err == nil && strings.Contains(got, "CNAME srvdnsr.privatelink.postgres.database.azure.com.") && strings.HasSuffix(got, "A 10.0.2.4")
	}) {
		t.Fatalf("dig %s through the inbound endpoint: %q (%v)", name, got, err)
	}
	// Over TCP too, straight at the address.
	if got, err = digVia(d, "client2", name, "@"+ip, "+tcp"); err != nil || !strings.HasSuffix(got, "A 10.0.2.4") {
		t.Errorf("dig +tcp @%s: %q (%v)", ip, got, err)
	}
	// A TCP query is no refused connection: the router's pe-refused
	// counters (privlink_datapath_router_refused_connections_total) leave
	// the inbound address alone.
	fab, err := fabric.New(d.prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	vid, _ := arm.ParseID(vnetID)
	if refused, err := fab.EndpointRefusals(controller.FabricID(vid)); err != nil || refused[netip.MustParseAddr(ip)] != 0 {
		t.Errorf("refusals after a TCP query to %s: %v (%v), want none there", ip, refused, err)
	}
	var out string
	if !testkit.Poll(15*time.Second, func() bool {
		out, err = psqlIn(d, []string{"-g", "dnsr", "client2"}, name, "select 1")
		return err == nil
	}) {
		t.Fatalf("psql verify-full by name through the inbound endpoint's DNS: %v: %s", err, out)
	}
	if out != "1" {
		t.Errorf("psql: %q", out)
	}

	// A kill -9 and restart of privlinkd: the endpoint answers again (the
	// controller serves every network's addresses on start).
	d.restart(syscall.SIGKILL)
	if !testkit.Poll(15*time.Second, func() bool {
		got, err = digVia(d, "client2", name, "@"+ip)
		return err == nil && strings.HasSuffix(got, "A 10.0.2.4")
	}) {
		t.Errorf("after a restart, dig @%s: %q (%v)", ip, got, err)
	}

	// Deleting the resolver while it has an endpoint is refused.
	_, err = resolvers.BeginDelete(cx, "dnsr", "resolver", nil)
	testkit.WantARMError(t, err, http.StatusConflict, "ResourceHasChildren")

	// Deleting the inbound endpoint stops it answering.
	dp, err := inbound.BeginDelete(cx, "dnsr", "resolver", "in", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	if !testkit.Poll(15*time.Second, func() bool {
		got, err = digVia(d, "client2", name, "")
		return err != nil
	}) {
		t.Errorf("the deleted inbound endpoint still answers: %q", got)
	}
	if out, err := psqlIn(d, []string{"-g", "dnsr", "client2"}, name, "select 1"); err == nil {
		t.Errorf("psql by name without the inbound endpoint: %s", out)
	}
	// The network's own DNS is untouched.
	waitDigAs(t, d, "", "dnsr", "client", name, "10.0.2.4")
	rdp, err := resolvers.BeginDelete(cx, "dnsr", "resolver", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rdp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
}

// digVia runs dig inside NIC nic of group dnsr with extra arguments (a
// server "@a.b.c.d", "+tcp"); it returns the answer section's records as
// "TYPE value" joined by "; ", or an error when no answer came.
func digVia(d *daemon, nic, name string, extra ...string) (string, error) {
	args := []string{"--data-dir", d.dataDir, "exec", "-g", "dnsr", nic, "--", "dig", "+time=2", "+tries=1", "+noall", "+answer"}
	for _, e := range extra {
		if e != "" {
			args = append(args, e)
		}
	}
	out, err := exec.Command(filepath.Join(binDir, "privlink"), append(args, name)...).CombinedOutput()
	if err != nil {
		return "", &digError{string(out), err}
	}
	var recs []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 5 {
			recs = append(recs, f[3]+" "+f[4])
		}
	}
	if len(recs) == 0 {
		return "", &digError{string(out), nil}
	}
	return strings.Join(recs, "; "), nil
}

type digError struct {
	out string
	err error
}

func (e *digError) Error() string { return "dig: " + strings.TrimSpace(e.out) + " " + errString(e.err) }

func errString(err error) string {
	if err == nil {
		return "(no answer)"
	}
	return err.Error()
}
