package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/dnsresolver/armdnsresolver"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/ipsec"
	"github.com/privlink/privlink/internal/names"
	"github.com/privlink/privlink/internal/testkit"
)

// site runs `privlink site ARGS...` against d.
func (d *daemon) site(args ...string) string {
	d.t.Helper()
	return d.cli(append([]string{"--data-dir", d.dataDir, "site"}, args...)...)
}

// siteErr runs a site command that must fail, and returns its output.
func (d *daemon) siteErr(args ...string) string {
	d.t.Helper()
	out, err := d.cliResult(append([]string{"--data-dir", d.dataDir, "site"}, args...)...)
	if err == nil {
		d.t.Fatalf("privlink site %s succeeded: %s", strings.Join(args, " "), out)
	}
	return out
}

// siteStatus is the status `privlink site list` shows for the
// connection of site, "" when it shows none.
func siteStatus(d *daemon, site, conn string) string {
	cur := ""
	for _, line := range strings.Split(d.site("list"), "\n") {
		if !strings.HasPrefix(line, " ") {
			cur, _, _ = strings.Cut(line, ":")
			continue
		}
		if rest, ok := strings.CutPrefix(line, "  connection "+conn+": "); ok && cur == site {
			return rest[strings.LastIndex(rest, ": ")+2:]
		}
	}
	return ""
}

// waitSiteStatus waits until `privlink site list` shows the connection
// of site with status.
func waitSiteStatus(t *testing.T, d *daemon, site, conn, status string) {
	t.Helper()
	testkit.WaitFor(t, 60*time.Second, fmt.Sprintf("site %s connection %s %s", site, conn, status), func() error {
		if got := siteStatus(d, site, conn); got != status {
			return fmt.Errorf("status %q", got)
		}
		return nil
	})
}

// siteDig resolves name on a host of site with its resolv.conf (the
// site's DNS) and returns the addresses, or the status when there are
// none.
func siteDig(t *testing.T, d *daemon, site, host, name string) string {
	t.Helper()
	out, err := d.cliResult("--data-dir", d.dataDir, "exec", "--site", site, host, "--", "dig", "+time=3", "+tries=1", "+noall", "+comments", "+answer", name, "A")
	if err != nil && !strings.Contains(out, "status:") {
		t.Fatalf("dig %s on %s/%s: %v\n%s", name, site, host, err, out)
	}
	var addrs []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 5 && f[3] == "A" {
			addrs = append(addrs, f[4])
		}
	}
	if len(addrs) > 0 {
		return strings.Join(addrs, ",")
	}
	if m := regexp.MustCompile(`status: (\w+)`).FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return out
}

// charonPID is the pid of the IKE daemon of site's device, 0 when none.
func charonPID(d *daemon, site string) int {
	return ipsec.New(filepath.Join(d.dataDir, "sites", site), "", nil).PID()
}

// charonRunning reports whether the process pid runs (a zombie, which a
// container's init may leave unreaped, does not).
func charonRunning(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

// stopSiteCharons stops the sites' IKE daemons a failed test may leave (they
// outlive privlinkd by design).
func stopSiteCharons(t *testing.T, d *daemon, sites ...string) {
	t.Cleanup(func() {
		for _, s := range sites {
			if err := ipsec.New(filepath.Join(d.dataDir, "sites", s), "", nil).Stop(); err != nil {
				t.Error(err)
			}
		}
	})
}

// ikeOrESP matches tcpdump's line for IKE or ESP-in-UDP between the two
// sites' devices.
var ikeOrESP = regexp.MustCompile(`IP 198\.18\.50\.[12]\.(500|4500) > 198\.18\.50\.[12]\.(500|4500): (isakmp|NONESP-encap|UDP-encap)`)

// TestSiteToSite: two simulated on-premises sites, each with its VPN
// device on the emulated internet, connected to each other with IPsec
// (IKEv2, pre-shared key) through `privlink site connect`, as two office
// admins would: a host of one reaches a host of the other; a wrong key
// passes nothing; the internet sees only IKE and ESP-in-UDP between the
// devices; the tunnel outlives a kill -9 of privlinkd (the IKE daemon
// keeps it) and privlinkd adopts it again; disconnect cuts the path;
// delete removes every namespace and the IKE daemons. Bad input is
// refused with a message naming the field.
func TestSiteToSite(t *testing.T) {
	testkit.RequireRoot(t, "it builds sites and runs charon in namespaces", "tcpdump", "nsenter", "unshare")
	if err := ipsec.Available(); err != nil {
		t.Skip(err)
	}
	d := startDaemon(t, "bolt")
	stopSiteCharons(t, d, "a", "b")

	out := d.site("create", "a", "--address-space", "192.168.0.0/16", "--gateway-ip", "198.18.50.1", "--hosts", "2")
	for _, want := range []string{"Created site a", "router 192.168.0.1", "host h1: 192.168.0.10", "host h2: 192.168.0.11", "privlink exec --site a h1"} {
		if !strings.Contains(out, want) {
			t.Errorf("site create a printed no %q:\n%s", want, out)
		}
	}
	d.site("create", "b", "--address-space", "172.16.0.0/16", "--gateway-ip", "198.18.50.2", "--host", "db")

	if out, err := d.cliResult("--data-dir", d.dataDir, "exec", "--internet", "198.18.7.9", "--", "true"); err != nil {
		t.Fatalf("internet host: %v %s", err, out)
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"create", "x", "--address-space", "198.18.0.0/16", "--gateway-ip", "198.18.50.9"}, []string{"InvalidParameter", "address space '198.18.0.0/16'"}},
		{[]string{"create", "x", "--address-space", "10.9.0.0/16", "--gateway-ip", "8.8.8.8"}, []string{"InvalidParameter", "gateway IP '8.8.8.8'"}},
		{[]string{"create", "Bad_Name", "--address-space", "10.9.0.0/16", "--gateway-ip", "198.18.50.9"}, []string{"InvalidParameter", "site name 'Bad_Name'"}},
		{[]string{"create", "a", "--address-space", "10.9.0.0/16", "--gateway-ip", "198.18.50.9"}, []string{"SiteExists", "privlink site delete a"}},
		{[]string{"create", "c", "--address-space", "10.9.0.0/16", "--gateway-ip", "198.18.50.1"}, []string{"PublicIPAddressInUse", "privlink/sites/a"}},
		{[]string{"create", "c", "--address-space", "10.9.0.0/16", "--gateway-ip", "198.18.7.9"}, []string{"PublicIPAddressInUse", "internet host"}},
		{[]string{"connect", "a", "--peer", "198.18.50.2", "--shared-key", "k", "--remote-space", "192.168.0.0/24"}, []string{"InvalidParameter", "overlaps the site's own space"}},
		{[]string{"connect", "nosuch", "--peer", "198.18.50.2", "--shared-key", "k", "--remote-space", "10.0.0.0/16"}, []string{"SiteNotFound", "privlink site create"}},
		{[]string{"disconnect", "a", "--name", "zz"}, []string{"ConnectionNotFound"}},
	} {
		out := d.siteErr(c.args...)
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("site %s: no %q in:\n%s", strings.Join(c.args, " "), w, out)
			}
		}
	}

	// Only the operator may manage sites: another principal (Owner of a
	// subscription of its own) is refused.
	creds := filepath.Join(t.TempDir(), "other.json")
	if err := os.WriteFile(creds, []byte(d.cli("--data-dir", d.dataDir, "principal", "create")), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"list"}, {"delete", "a"}, {"create", "z", "--address-space", "10.9.0.0/16", "--gateway-ip", "198.18.50.9"}} {
		out, err := d.cliResult(append([]string{"--data-dir", d.dataDir, "--credentials", creds, "site"}, args...)...)
		if err == nil || !strings.Contains(out, "AuthorizationFailed") {
			t.Errorf("site %s as another principal: %v\n%s", args[0], err, out)
		}
	}

	// Nor is a site's gateway IP an internet host's.
	if out, err := d.cliResult("--data-dir", d.dataDir, "exec", "--internet", "198.18.50.1", "--", "true"); err == nil || !strings.Contains(out, "PublicIPAddressInUse") {
		t.Errorf("an internet host at site a's gateway IP: %v %s", err, out)
	}

	const marker = "PLAINTEXT-MARKER-onprem-5c1"
	startHelperIn(t, d, "echo", []string{"--site", "b", "db"}, "172.16.0.10:7000", marker)
	aHost := []string{"--site", "a", "h1"}
	if out, err := dialResultIn(d, aHost, "172.16.0.10:7000"); err == nil {
		t.Fatalf("site a reached site b without a tunnel: %s", out)
	}

	// A wrong key on one side: no traffic, never Connected.
	d.site("connect", "a", "--peer", "198.18.50.2", "--shared-key", "right-key", "--remote-space", "172.16.0.0/16")
	d.site("connect", "b", "--peer", "198.18.50.1", "--shared-key", "wrong-key", "--remote-space", "192.168.0.0/16")
	testkit.WaitFor(t, 30*time.Second, "an authentication failure in a charon's log", func() error {
		for _, s := range []string{"a", "b"} {
			b, _ := os.ReadFile(filepath.Join(d.dataDir, "sites", s, "charon.log"))
			if bytes.Contains(b, []byte("AUTHENTICATION_FAILED")) || bytes.Contains(b, []byte("tried 1 shared key")) {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	if out, err := dialResultIn(d, aHost, "172.16.0.10:7000"); err == nil {
		t.Fatalf("traffic passed with mismatched keys: %s", out)
	}
	if strings.Contains(d.site("list"), ": Connected") {
		t.Fatalf("a connection Connected with mismatched keys:\n%s", d.site("list"))
	}

	// The right key: Connected on both sides, traffic passes, encrypted.
	capture := testkit.Capture(t, d.prefix+"inet")
	out = d.site("connect", "b", "--peer", "198.18.50.1", "--shared-key", "right-key", "--remote-space", "192.168.0.0/16")
	if !strings.Contains(out, "connection c1 to 198.18.50.1") {
		t.Errorf("site connect printed:\n%s", out)
	}
	waitSiteStatus(t, d, "a", "c1", "Connected")
	waitSiteStatus(t, d, "b", "c1", "Connected")
	var got string
	testkit.WaitFor(t, 20*time.Second, "a round trip through the tunnel", func() error {
		var err error
		got, err = dialResultIn(d, aHost, "172.16.0.10:7000")
		return err
	})
	if got != marker {
		t.Fatalf("site a host h1 -> site b host db: %q", got)
	}
	pkts, raw := capture()
	if len(pkts) == 0 {
		t.Fatal("tcpdump in the internet saw nothing")
	}
	for _, p := range pkts {
		if !ikeOrESP.MatchString(p) {
			t.Errorf("the internet saw a packet that is not IKE or ESP-in-UDP between the devices: %s", p)
		}
	}
	if bytes.Contains(raw, []byte(marker)) {
		t.Error("the internet saw the payload in clear")
	}

	// The site's DNS forwards a zone across the tunnel, from the router's
	// address: site b's DNS (which knows no such name) answers NXDOMAIN;
	// with the tunnel gone, nobody answers (SERVFAIL).
	out = d.site("dns", "a", "--forward", "privatelink.postgres.database.azure.com=172.16.0.1")
	if !strings.Contains(out, "forwards privatelink.postgres.database.azure.com to 172.16.0.1") {
		t.Errorf("site dns printed:\n%s", out)
	}
	const name = "nosuch.privatelink.postgres.database.azure.com"
	if got := siteDig(t, d, "a", "h1", name); got != "NXDOMAIN" {
		t.Errorf("site a resolving %s through site b's DNS: %s, want NXDOMAIN", name, got)
	}

	// kill -9 of privlinkd: the IKE daemon keeps the tunnel meanwhile, and
	// privlinkd adopts it again (the same charon, still Connected).
	pid := charonPID(d, "a")
	if pid == 0 {
		t.Fatal("no charon for site a")
	}
	hostNS := d.prefix + string(names.KindSiteHost) + "-a.h1"
	d.stop(syscall.SIGKILL)
	self, _ := os.Executable()
	cmd := exec.Command("ip", "netns", "exec", hostNS, self, "172.16.0.10:7000")
	cmd.Env = append(os.Environ(), helperEnv+"=dial")
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != marker {
		t.Errorf("with privlinkd down, through the tunnel: %v %s", err, out)
	}
	d.start()
	waitSiteStatus(t, d, "a", "c1", "Connected")
	if got := siteDig(t, d, "a", "h1", name); got != "NXDOMAIN" {
		t.Errorf("after restart, site a resolving %s through site b's DNS: %s, want NXDOMAIN", name, got)
	}
	if p := charonPID(d, "a"); p != pid {
		t.Errorf("after restart, site a's charon is %d, was %d", p, pid)
	}
	if got, err := dialResultIn(d, aHost, "172.16.0.10:7000"); err != nil || got != marker {
		t.Errorf("after restart, through the tunnel: %q %v", got, err)
	}

	// Disconnect cuts the path at once.
	d.site("disconnect", "a")
	if out, err := dialResultIn(d, aHost, "172.16.0.10:7000"); err == nil {
		t.Errorf("after disconnect, site a reached site b: %s", out)
	}
	if p := charonPID(d, "a"); p != 0 {
		t.Errorf("site a has no connection, yet its charon %d runs", p)
	}
	if got := siteDig(t, d, "a", "h1", name); got != "SERVFAIL" {
		t.Errorf("site a resolving %s without a tunnel: %s, want SERVFAIL", name, got)
	}

	// Delete removes every namespace and the IKE daemons.
	pidB := charonPID(d, "b")
	for _, s := range []string{"a", "b"} {
		out := d.site("delete", s)
		if !strings.Contains(out, "Deleted site "+s) {
			t.Errorf("site delete %s printed:\n%s", s, out)
		}
	}
	left, _ := filepath.Glob(filepath.Join(names.NetnsDir, d.prefix+"s*"))
	if len(left) != 0 {
		t.Errorf("namespaces left after delete: %v", left)
	}
	if pidB == 0 {
		t.Error("site b had no charon before delete")
	} else if charonRunning(pidB) {
		t.Errorf("site b's charon %d still runs after delete", pidB)
	}
	if out := d.site("list"); !strings.Contains(out, "No sites") {
		t.Errorf("site list after delete:\n%s", out)
	}
	// The gateway IP is free again.
	d.site("create", "a", "--address-space", "192.168.0.0/16", "--gateway-ip", "198.18.50.1", "--hosts", "0")
	d.site("delete", "a")
}

// TestOnPremises: a simulated office (`privlink site`) modelled in ARM
// as Azure users do: a local network gateway (gatewayIpAddress = the
// site's device, addressPrefixes = its space) and an IPsec connection
// from the hub network's VPN gateway, with the same pre-shared key as
// the device's connection. The office's DNS forwards the privatelink
// zone to the hub's DNS private resolver inbound endpoint across the
// tunnel, so an on-premises host resolves the server's usual name to its
// private endpoint and runs psql with verify-full; with the connection
// deleted it resolves and connects to nothing.
func TestOnPremises(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces and runs charon", "ip", "psql", "dig", "nsenter", "unshare")
	if err := ipsec.Available(); err != nil {
		t.Skip(err)
	}
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	t.Cleanup(func() { stopCharons(t, d) })
	stopSiteCharons(t, d, "office")
	cx := ctx(t)
	owner := newCustomer(t, d, d.cfg, "vpn")
	pg := newPGClients(t, d, d.creds.SubscriptionID)
	createServer(t, pg, "vpn", "srvonprem")
	server := owner.id("Microsoft.DBforPostgreSQL/flexibleServers", "srvonprem")
	const name = "srvonprem.postgres.database.azure.com"
	owner.network(t, "10.0.2.0/24")
	if ip := peIP(owner.endpoint(t, "pe", server, false)); ip != "10.0.2.4" {
		t.Fatalf("endpoint IP %q", ip)
	}
	nf, err := armnetwork.NewClientFactory(owner.cfg.Creds.SubscriptionID, owner.cfg.Credential, owner.cfg.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	lab := &vpnLab{t: t, d: d, owner: owner, nf: nf, gws: nf.NewVirtualNetworkGatewaysClient(), conns: nf.NewVirtualNetworkGatewayConnectionsClient()}
	conns := lab.conns
	subnet := func(name, prefix string, delegation string) {
		t.Helper()
		s := armnetwork.Subnet{Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: ptr(prefix)}}
		if delegation != "" {
			s.Properties.Delegations = []*armnetwork.Delegation{{Name: ptr("d"), Properties: &armnetwork.ServiceDelegationPropertiesFormat{ServiceName: ptr(delegation)}}}
		}
		p, err := nf.NewSubnetsClient().BeginCreateOrUpdate(cx, "vpn", "vnet", name, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.PollUntilDone(cx, pollOpts); err != nil {
			t.Fatal(err)
		}
	}
	subnet("GatewaySubnet", "10.0.255.0/27", "")
	subnet("dnsin", "10.0.3.0/28", "Microsoft.Network/dnsResolvers")
	inbound := resolverInbound(t, owner, "vpn", "vnet", "dnsin")
	if inbound != "10.0.3.4" {
		t.Fatalf("inbound endpoint %s", inbound)
	}

	// The office, and the hub's gateway.
	d.site("create", "office", "--address-space", "192.168.0.0/16", "--gateway-ip", "198.18.50.1", "--host", "pc1")
	office := []string{"--site", "office", "pc1"}
	lab.gateway("gw", "westeurope", "vnet", "pip")
	pip, err := nf.NewPublicIPAddressesClient().Get(cx, "vpn", "pip", nil)
	if err != nil {
		t.Fatal(err)
	}
	gwIP := *pip.Properties.IPAddress

	// Azure's model of the office: a local network gateway and an IPsec
	// connection with the office device's key.
	const key = "office-shared-key-42"
	lp, err := nf.NewLocalNetworkGatewaysClient().BeginCreateOrUpdate(cx, "vpn", "office", armnetwork.LocalNetworkGateway{Location: ptr("westeurope"),
		Properties: &armnetwork.LocalNetworkGatewayPropertiesFormat{GatewayIPAddress: ptr("198.18.50.1"),
			LocalNetworkAddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{ptr("192.168.0.0/16")}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	cp, err := conns.BeginCreateOrUpdate(cx, "vpn", "onprem", armnetwork.VirtualNetworkGatewayConnection{Location: ptr("westeurope"),
		Properties: &armnetwork.VirtualNetworkGatewayConnectionPropertiesFormat{
			ConnectionType:         ptr(armnetwork.VirtualNetworkGatewayConnectionTypeIPsec),
			VirtualNetworkGateway1: &armnetwork.VirtualNetworkGateway{ID: ptr(owner.id("Microsoft.Network/virtualNetworkGateways", "gw"))},
			LocalNetworkGateway2:   &armnetwork.LocalNetworkGateway{ID: ptr(owner.id("Microsoft.Network/localNetworkGateways", "office"))},
			SharedKey:              ptr(key)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	// Before the office's device is configured: no tunnel, no name.
	if out, err := psqlIn(d, office, name, "select 1"); err == nil {
		t.Fatalf("psql from the office without a tunnel: %s", out)
	}

	// The office admin configures the device and the office's DNS.
	d.site("connect", "office", "--peer", gwIP, "--shared-key", key, "--remote-space", "10.0.0.0/16")
	d.site("dns", "office", "--forward", plZone+"="+inbound)
	testkit.WaitFor(t, 60*time.Second, "connection onprem Connected", func() error {
		r, err := conns.Get(cx, "vpn", "onprem", nil)
		if err != nil {
			return err
		}
		if s := r.Properties.ConnectionStatus; s == nil || *s != armnetwork.VirtualNetworkGatewayConnectionStatusConnected {
			return fmt.Errorf("connectionStatus %v", s)
		}
		return nil
	})
	waitSiteStatus(t, d, "office", "c1", "Connected")
	var got string
	testkit.WaitFor(t, 30*time.Second, "the office resolving the server's name through the inbound endpoint", func() error {
		if got = siteDig(t, d, "office", "pc1", name); got != "10.0.2.4" {
			return fmt.Errorf("dig: %s", got)
		}
		return nil
	})
	var out string
	testkit.WaitFor(t, 30*time.Second, "psql verify-full from the office by name", func() error {
		out, err = psqlIn(d, office, name, "select inet_client_addr() is not null, current_user")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if out != "t|pgadmin" {
		t.Errorf("psql from the office: %q", out)
	}

	// The connection deleted in Azure: the office resolves and reaches
	// nothing of the hub.
	dp, err := conns.BeginDelete(cx, "vpn", "onprem", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	if got := siteDig(t, d, "office", "pc1", name); got != "SERVFAIL" {
		t.Errorf("dig from the office without the connection: %s, want SERVFAIL", got)
	}
	if out, err := psqlConn(d, office, "host=10.0.2.4 user=pgadmin dbname=postgres sslmode=require connect_timeout=3", "select 1"); err == nil {
		t.Errorf("psql to the endpoint's address from the office without the connection: %s", out)
	}
	d.site("delete", "office")
}

// resolverInbound creates a DNS private resolver on network vnet of group
// rg with an inbound endpoint in subnet (delegated to
// Microsoft.Network/dnsResolvers) and returns the endpoint's address.
func resolverInbound(t *testing.T, c *customer, rg, vnet, subnet string) string {
	t.Helper()
	cx := ctx(t)
	rf, err := armdnsresolver.NewClientFactory(c.cfg.Creds.SubscriptionID, c.cfg.Credential, c.cfg.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	vnetID := c.id("Microsoft.Network/virtualNetworks", vnet)
	rp, err := rf.NewDNSResolversClient().BeginCreateOrUpdate(cx, rg, "resolver", armdnsresolver.DNSResolver{Location: ptr("westeurope"),
		Properties: &armdnsresolver.Properties{VirtualNetwork: &armdnsresolver.SubResource{ID: &vnetID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	ip, err := rf.NewInboundEndpointsClient().BeginCreateOrUpdate(cx, rg, "resolver", "in", armdnsresolver.InboundEndpoint{Location: ptr("westeurope"),
		Properties: &armdnsresolver.InboundEndpointProperties{IPConfigurations: []*armdnsresolver.IPConfiguration{{
			Subnet: &armdnsresolver.SubResource{ID: ptr(vnetID + "/subnets/" + subnet)}}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	in, err := ip.PollUntilDone(cx, pollOpts)
	if err != nil {
		t.Fatal(err)
	}
	return *in.Properties.IPConfigurations[0].PrivateIPAddress
}
