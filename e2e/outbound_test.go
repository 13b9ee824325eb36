package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/privlink/privlink/internal/controller"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/testkit"
)

// TestOutbound: default outbound. A NIC reaches a server's public endpoint
// through the network's router as the network's default outbound address,
// within the server's firewall rules (a rule naming that address lets
// psql in, none keeps it out); an NSG rule denying Internet outbound on
// the NIC's subnet stops it, and so does public network access Disabled.
// `privlink why` agrees with psql each time, naming the firewall rule that
// admits the flow, the missing one, the NSG rule or the public access.
func TestOutbound(t *testing.T) {
	d, owner := networkLab(t, "out", "psql")
	pg := newPGClients(t, d, d.creds.SubscriptionID)
	srv := createServer(t, pg, "out", "srv-out")
	fqdn := *srv.Properties.FullyQualifiedDomainName
	public := publicAddr(t, d, fqdn)
	conninfo := fmt.Sprintf("host=%s hostaddr=%s user=pgadmin dbname=postgres sslmode=verify-full connect_timeout=5 sslrootcert=%s",
		fqdn, public, filepath.Join(d.dataDir, "ca.pem"))
	client := []string{"-g", "out", "client"}
	psql := func() (string, error) { return psqlConn(d, client, conninfo, "select inet_client_addr()") }
	firewall := func(from, to string) {
		t.Helper()
		p, err := pg.firewalls.BeginCreateOrUpdate(ctx(t), "out", "srv-out", "vnet", armpostgresqlflexibleservers.FirewallRule{
			Properties: &armpostgresqlflexibleservers.FirewallRuleProperties{StartIPAddress: ptr(from), EndIPAddress: ptr(to)}}, nil)
		if err == nil {
			_, err = p.PollUntilDone(ctx(t), pollOpts)
		}
		if err != nil {
			t.Fatalf("firewall rule %s-%s: %v", from, to, err)
		}
	}
	why := func(reachable bool, want string) {
		t.Helper()
		out, err := d.cliResult("--data-dir", d.dataDir, "why", "-g", "out", "client", public.String()+":5432")
		if (err == nil) != reachable || !strings.Contains(out, want) {
			t.Errorf("privlink why client %s:5432 (want reachable=%v, %q): %v\n%s", public, reachable, want, err, out)
		}
	}

	// No firewall rule: the router lets the NIC out, the server's
	// firewall keeps it out.
	if got, err := psql(); err == nil {
		t.Fatalf("psql to the public endpoint without a firewall rule: %q", got)
	}
	why(false, "no firewall rule of flexible server srv-out admits 198.18.0.")
	// The pool of default outbound addresses: the server sees one of them.
	firewall(controller.OutboundPool.Addr().String(), "198.18.0.255")
	var seen string
	testkit.WaitFor(t, 15*time.Second, "psql from the NIC to the public endpoint", func() error {
		var err error
		seen, err = psql()
		return err
	})
	addr, err := netip.ParseAddr(seen)
	if err != nil || !controller.OutboundPool.Contains(addr) {
		t.Fatalf("the server sees the NIC as %q, want the network's default outbound address in %s", seen, controller.OutboundPool)
	}
	why(true, "firewall rule vnet of "+*srv.ID+" admits it (from "+seen+",")
	// A rule naming exactly that address lets it in; one without it not.
	firewall(addr.String(), addr.String())
	if got, err := psql(); err != nil || got != seen {
		t.Errorf("psql with a rule naming %s: %q, %v", addr, got, err)
	}
	other := addr.Next().String()
	firewall(other, other)
	if !testkit.Poll(10*time.Second, func() bool { _, err := psql(); return err != nil }) {
		t.Errorf("psql gets in with a firewall rule naming only %s", other)
	}
	why(false, "no firewall rule of flexible server srv-out admits "+seen+" ")
	firewall(addr.String(), addr.String())
	testkit.WaitFor(t, 15*time.Second, "psql after the rule is back", func() error { _, err := psql(); return err })

	// An NSG rule denying Internet outbound on the client's subnet.
	l := &policyLab{d: d, owner: owner, n: newNetClients(t, d)}
	deny := &armnetwork.SecurityRule{Name: ptr("deny-internet"), Properties: &armnetwork.SecurityRulePropertiesFormat{
		Priority: ptr[int32](100), Direction: ptr(armnetwork.SecurityRuleDirectionOutbound), Access: ptr(armnetwork.SecurityRuleAccessDeny),
		Protocol: ptr(armnetwork.SecurityRuleProtocolAsterisk), SourceAddressPrefix: ptr("*"), SourcePortRange: ptr("*"),
		DestinationAddressPrefix: ptr("Internet"), DestinationPortRange: ptr("*")}}
	l.putNSG(t, "nsg-clients", deny)
	l.writeSubnet(t, "clients", &armnetwork.SubnetPropertiesFormat{AddressPrefix: ptr("10.0.1.0/24"),
		NetworkSecurityGroup: &armnetwork.SecurityGroup{ID: ptr(owner.id("Microsoft.Network/networkSecurityGroups", "nsg-clients"))}})
	if !testkit.Poll(10*time.Second, func() bool { _, err := psql(); return err != nil }) {
		t.Error("psql to the public endpoint still gets through an NSG denying Internet outbound")
	}
	why(false, "security rule securityRules/deny-internet ")
	l.writeSubnet(t, "clients", &armnetwork.SubnetPropertiesFormat{AddressPrefix: ptr("10.0.1.0/24")})
	testkit.WaitFor(t, 15*time.Second, "psql once the NSG is gone", func() error { _, err := psql(); return err })
	why(true, "firewall rule vnet of ")

	// Public network access Disabled: no firewall rule lets anyone in.
	up, err := pg.servers.BeginUpdate(ctx(t), "out", "srv-out", armpostgresqlflexibleservers.ServerForPatch{Properties: &armpostgresqlflexibleservers.ServerPropertiesForPatch{
		Network: &armpostgresqlflexibleservers.Network{PublicNetworkAccess: ptr(armpostgresqlflexibleservers.ServerPublicNetworkAccessStateDisabled)}}}, nil)
	if err == nil {
		_, err = up.PollUntilDone(ctx(t), pollOpts)
	}
	if err != nil {
		t.Fatalf("public network access Disabled: %v", err)
	}
	if !testkit.Poll(10*time.Second, func() bool { _, err := psql(); return err != nil }) {
		t.Error("psql to the public endpoint still gets through with public network access Disabled")
	}
	why(false, "public network access of flexible server srv-out is Disabled")
}

// publicAddr is the address of a server's name fqdn as the emulated
// internet's DNS has it (asked from inside the internet's namespace).
func publicAddr(t *testing.T, d *daemon, fqdn string) netip.Addr {
	t.Helper()
	dig := exec.Command(filepath.Join(binDir, "privlink"), "--data-dir", d.dataDir, "exec", "--internet", "198.18.9.9", "--", "dig", "+short", fqdn)
	out, err := dig.CombinedOutput()
	lines := strings.Fields(string(out))
	if err != nil || len(lines) == 0 {
		t.Fatalf("dig %s on the internet: %v\n%s", fqdn, err, out)
	}
	public, err := netip.ParseAddr(lines[len(lines)-1])
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", fqdn, err, out)
	}
	return public
}

// TestApplianceEndpoint: a route table on the clients' subnet sends the
// endpoint subnet (10.0.2.0/24) to a virtual appliance, a NIC with
// enableIPForwarding running tcpdump. While the endpoint subnet's
// privateEndpointNetworkPolicies leave route tables out (Disabled), the
// endpoint's /32 wins: tcpdump sees nothing and PostgreSQL answers; with
// RouteTableEnabled, tcpdump sees the client's flow to the endpoint's
// address and PostgreSQL still answers, through the appliance; with next
// hop None nothing gets through. `privlink why` names the route each time.
func TestApplianceEndpoint(t *testing.T) {
	d, owner := networkLab(t, "va", "tcpdump")
	createServer(t, newPGClients(t, d, d.creds.SubscriptionID), "va", "srv-va")
	fab, err := fabric.New(d.prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := &policyLab{d: d, owner: owner, n: newNetClients(t, d), fab: fab, addr: map[string]string{"nva": "10.0.3.4"}}
	l.peIP = peIP(owner.endpoint(t, "pe", owner.id("Microsoft.DBforPostgreSQL/flexibleServers", "srv-va"), false))
	client := l.nicID("client")
	l.writeSubnet(t, "appliances", &armnetwork.SubnetPropertiesFormat{AddressPrefix: ptr("10.0.3.0/24")})
	nva := l.nicBody(t, "nva", "appliances")
	nva.Properties.EnableIPForwarding = ptr(true)
	l.writeNIC(t, "nva", nva)
	route := func(hop armnetwork.RouteNextHopType, ip *string) {
		t.Helper()
		p, err := l.n.rts.BeginCreateOrUpdate(ctx(t), "va", "rt", armnetwork.RouteTable{Location: ptr("westeurope"),
			Properties: &armnetwork.RouteTablePropertiesFormat{Routes: []*armnetwork.Route{{Name: ptr("to-endpoints"),
				Properties: &armnetwork.RoutePropertiesFormat{AddressPrefix: ptr("10.0.2.0/24"), NextHopType: &hop, NextHopIPAddress: ip}}}}}, nil)
		if err == nil {
			_, err = p.PollUntilDone(ctx(t), pollOpts)
		}
		if err != nil {
			t.Fatalf("route table: %v", err)
		}
	}
	route(armnetwork.RouteNextHopTypeVirtualAppliance, ptr("10.0.3.4"))
	l.writeSubnet(t, "clients", &armnetwork.SubnetPropertiesFormat{AddressPrefix: ptr("10.0.1.0/24"),
		RouteTable: &armnetwork.RouteTable{ID: ptr(owner.id("Microsoft.Network/routeTables", "rt"))}})

	// captured runs tcpdump in the appliance's namespace while attempt
	// runs, and returns what it printed of the client's flow to the
	// endpoint.
	captured := func(attempt func() error) (string, error) {
		t.Helper()
		cx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		dump := exec.CommandContext(cx, "ip", "netns", "exec", l.ns("nva"), "tcpdump", "-i", "eth0", "-n", "-l", "-c", "1",
			"tcp and dst port 5432 and dst host "+l.peIP)
		var out strings.Builder
		dump.Stdout = &out
		if err := dump.Start(); err != nil {
			t.Fatalf("tcpdump: %v", err)
		}
		time.Sleep(500 * time.Millisecond) // tcpdump listens
		err := attempt()
		_ = dump.Wait() // -c 1, or killed when cx ends
		return out.String(), err
	}
	pg := func() error { return sslRequestIn(d, client, l.peIP) }
	why := func(reachable bool, want string) {
		t.Helper()
		out, err := d.cliResult("--data-dir", d.dataDir, "why", "-g", "va", "client", l.peIP+":5432")
		if (err == nil) != reachable || !strings.Contains(out, want) {
			t.Errorf("privlink why (want reachable=%v, %q): %v\n%s", reachable, want, err, out)
		}
	}

	// Disabled: the endpoint's /32 wins over the route.
	testkit.WaitFor(t, 15*time.Second, "PostgreSQL through the endpoint, policies Disabled", pg)
	if seen, err := captured(pg); err != nil || seen != "" {
		t.Errorf("policies Disabled: PostgreSQL %v; the appliance saw %q, want nothing", err, seen)
	}
	why(true, "reachable")

	// RouteTableEnabled: through the appliance, and still answered.
	l.putSubnet(t, "", armnetwork.VirtualNetworkPrivateEndpointNetworkPoliciesRouteTableEnabled)
	testkit.WaitFor(t, 15*time.Second, "the appliance seeing the flow, RouteTableEnabled", func() error {
		seen, err := captured(pg)
		if err != nil || !strings.Contains(seen, l.peIP+".5432") {
			return fmt.Errorf("PostgreSQL %v, the appliance saw %q", err, seen)
		}
		return nil
	})
	// The appliance forwards, so why follows it to the endpoint.
	why(true, "through virtual appliance "+strings.ToLower(l.nicID("nva"))+" (10.0.3.4), which forwards it")

	// Without IP forwarding the appliance keeps the flow: it sees it, and
	// PostgreSQL does not answer.
	nva.Properties.EnableIPForwarding = ptr(false)
	l.writeNIC(t, "nva", nva)
	if !testkit.Poll(10*time.Second, func() bool { return pg() != nil }) {
		t.Error("PostgreSQL answers through an appliance that does not forward")
	}
	why(false, "sends it to VirtualAppliance 10.0.3.4")

	// Next hop None: dropped.
	route(armnetwork.RouteNextHopTypeNone, nil)
	if !testkit.Poll(10*time.Second, func() bool { return pg() != nil }) {
		t.Error("PostgreSQL answers through a route with next hop None")
	}
	why(false, "sends it to None")
}
