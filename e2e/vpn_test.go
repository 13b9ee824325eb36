package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/controller"
	"github.com/privlink/privlink/internal/ipsec"
	"github.com/privlink/privlink/internal/testkit"
)

// vpnLab is TestVPN's world: network A (westeurope, 10.0.0.0/16) with the
// server's private endpoint, network B (northeurope, 10.20.0.0/16) with a
// client NIC, a gateway in each, and the SDK clients.
type vpnLab struct {
	t     *testing.T
	d     *daemon
	owner *customer
	nf    *armnetwork.ClientFactory
	gws   *armnetwork.VirtualNetworkGatewaysClient
	conns *armnetwork.VirtualNetworkGatewayConnectionsClient
}

func (l *vpnLab) gateway(name, loc, vnet, pip string) armnetwork.VirtualNetworkGateway {
	l.t.Helper()
	cx := ctx(l.t)
	pp, err := l.nf.NewPublicIPAddressesClient().BeginCreateOrUpdate(cx, "vpn", pip, armnetwork.PublicIPAddress{Location: ptr(loc),
		SKU:        &armnetwork.PublicIPAddressSKU{Name: ptr(armnetwork.PublicIPAddressSKUNameStandard)},
		Properties: &armnetwork.PublicIPAddressPropertiesFormat{PublicIPAllocationMethod: ptr(armnetwork.IPAllocationMethodStatic)}}, nil)
	if err != nil {
		l.t.Fatal(err)
	}
	if _, err := pp.PollUntilDone(cx, pollOpts); err != nil {
		l.t.Fatal(err)
	}
	gp, err := l.gws.BeginCreateOrUpdate(cx, "vpn", name, armnetwork.VirtualNetworkGateway{Location: ptr(loc), Properties: &armnetwork.VirtualNetworkGatewayPropertiesFormat{
		GatewayType: ptr(armnetwork.VirtualNetworkGatewayTypeVPN), VPNType: ptr(armnetwork.VPNTypeRouteBased),
		SKU: &armnetwork.VirtualNetworkGatewaySKU{Name: ptr(armnetwork.VirtualNetworkGatewaySKUNameVPNGw1), Tier: ptr(armnetwork.VirtualNetworkGatewaySKUTierVPNGw1)},
		IPConfigurations: []*armnetwork.VirtualNetworkGatewayIPConfiguration{{Name: ptr("default"),
			Properties: &armnetwork.VirtualNetworkGatewayIPConfigurationPropertiesFormat{
				Subnet:          &armnetwork.SubResource{ID: ptr(l.owner.id("Microsoft.Network/virtualNetworks", vnet) + "/subnets/GatewaySubnet")},
				PublicIPAddress: &armnetwork.SubResource{ID: ptr(l.owner.id("Microsoft.Network/publicIPAddresses", pip))}}}},
	}}, nil)
	if err != nil {
		l.t.Fatal(err)
	}
	r, err := gp.PollUntilDone(cx, pollOpts)
	if err != nil {
		l.t.Fatal(err)
	}
	if s := r.Properties.ProvisioningState; s == nil || *s != armnetwork.ProvisioningStateSucceeded {
		l.t.Fatalf("gateway %s: provisioningState %v", name, s)
	}
	return r.VirtualNetworkGateway
}

func (l *vpnLab) connection(name, loc, gw1, gw2, key string) {
	l.t.Helper()
	cx := ctx(l.t)
	p, err := l.conns.BeginCreateOrUpdate(cx, "vpn", name, armnetwork.VirtualNetworkGatewayConnection{Location: ptr(loc),
		Properties: &armnetwork.VirtualNetworkGatewayConnectionPropertiesFormat{
			ConnectionType:         ptr(armnetwork.VirtualNetworkGatewayConnectionTypeVnet2Vnet),
			VirtualNetworkGateway1: &armnetwork.VirtualNetworkGateway{ID: ptr(l.owner.id("Microsoft.Network/virtualNetworkGateways", gw1))},
			VirtualNetworkGateway2: &armnetwork.VirtualNetworkGateway{ID: ptr(l.owner.id("Microsoft.Network/virtualNetworkGateways", gw2))},
			SharedKey:              ptr(key)}}, nil)
	if err != nil {
		l.t.Fatal(err)
	}
	if _, err := p.PollUntilDone(cx, pollOpts); err != nil {
		l.t.Fatal(err)
	}
}

// status waits until connection name reports want, and returns it.
func (l *vpnLab) status(name string, want armnetwork.VirtualNetworkGatewayConnectionStatus) armnetwork.VirtualNetworkGatewayConnection {
	l.t.Helper()
	var c armnetwork.VirtualNetworkGatewayConnection
	testkit.WaitFor(l.t, 60*time.Second, fmt.Sprintf("connection %s %s", name, want), func() error {
		r, err := l.conns.Get(ctx(l.t), "vpn", name, nil)
		if err != nil {
			return err
		}
		c = r.VirtualNetworkGatewayConnection
		if s := c.Properties.ConnectionStatus; s == nil || *s != want {
			return fmt.Errorf("connectionStatus %v", s)
		}
		return nil
	})
	return c
}

func (l *vpnLab) deleteConnection(name string) {
	l.t.Helper()
	p, err := l.conns.BeginDelete(ctx(l.t), "vpn", name, nil)
	if err != nil {
		l.t.Fatal(err)
	}
	if _, err := p.PollUntilDone(ctx(l.t), pollOpts); err != nil {
		l.t.Fatal(err)
	}
}

// stopCharons stops the charons of d's gateways (they outlive privlinkd by
// design).
func stopCharons(t *testing.T, d *daemon) {
	dirs, _ := filepath.Glob(filepath.Join(d.dataDir, "vpn", "*"))
	for _, dir := range dirs {
		if err := ipsec.New(dir, "", nil).Stop(); err != nil {
			t.Error(err)
		}
	}
}

func charonPIDs(d *daemon) []int {
	var out []int
	dirs, _ := filepath.Glob(filepath.Join(d.dataDir, "vpn", "*"))
	for _, dir := range dirs {
		out = append(out, ipsec.New(dir, "", nil).PID())
	}
	return out
}

var vpnWire = regexp.MustCompile(`IP (198\.\d+\.\d+\.\d+)\.(500|4500) > (198\.\d+\.\d+\.\d+)\.(500|4500): (isakmp|NONESP-encap|UDP-encap)`)

// newVPNLab builds TestVPN's world up to the two gateways (no
// connections yet): the server srvvpn with its endpoint 10.0.2.4 in
// network A (westeurope, 10.0.0.0/16, client NIC "client"), network B
// (northeurope, 10.20.0.0/16) with the client NIC "clientb", the
// privatelink zone linked to both, a gateway in each.
func newVPNLab(t *testing.T) *vpnLab {
	t.Helper()
	testkit.RequireRoot(t, "it creates network namespaces and runs charon", "ip", "psql", "tcpdump", "nsenter", "unshare")
	if err := ipsec.Available(); err != nil {
		t.Skip(err)
	}
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	t.Cleanup(func() { stopCharons(t, d) })
	cx := ctx(t)
	owner := newCustomer(t, d, d.cfg, "vpn")
	pg := newPGClients(t, d, d.creds.SubscriptionID)
	createServer(t, pg, "vpn", "srvvpn")
	server := owner.id("Microsoft.DBforPostgreSQL/flexibleServers", "srvvpn")
	const name = vpnServerName
	owner.network(t, "10.0.2.0/24")
	if ip := peIP(owner.endpoint(t, "pe", server, false)); ip != "10.0.2.4" {
		t.Fatalf("endpoint IP %q", ip)
	}
	nf, err := armnetwork.NewClientFactory(owner.cfg.Creds.SubscriptionID, owner.cfg.Credential, owner.cfg.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	l := &vpnLab{t: t, d: d, owner: owner, nf: nf, gws: nf.NewVirtualNetworkGatewaysClient(), conns: nf.NewVirtualNetworkGatewayConnectionsClient()}

	// Network A's GatewaySubnet; network B in another location, with its
	// client NIC and a link to the privatelink zone.
	sp, err := nf.NewSubnetsClient().BeginCreateOrUpdate(cx, "vpn", "vnet", "GatewaySubnet", armnetwork.Subnet{
		Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: ptr("10.0.255.0/27")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	vb := vnetBody("10.20.0.0/16", map[string]string{"clients": "10.20.1.0/24", "GatewaySubnet": "10.20.255.0/27"})
	vb.Location = ptr("northeurope")
	vp, err := owner.vnets.BeginCreateOrUpdate(cx, "vpn", "vnetb", vb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	np, err := owner.nics.BeginCreateOrUpdate(cx, "vpn", "clientb", armnetwork.Interface{Location: ptr("northeurope"),
		Properties: &armnetwork.InterfacePropertiesFormat{IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{Name: ptr("ip"),
			Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{Subnet: &armnetwork.Subnet{ID: ptr(owner.id("Microsoft.Network/virtualNetworks", "vnetb") + "/subnets/clients")}}}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := np.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	lp, err := owner.links.BeginCreateOrUpdate(cx, "vpn", plZone, "vnetb", armprivatedns.VirtualNetworkLink{Location: ptr("global"),
		Properties: &armprivatedns.VirtualNetworkLinkProperties{VirtualNetwork: &armprivatedns.SubResource{ID: ptr(owner.id("Microsoft.Network/virtualNetworks", "vnetb"))}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	fromB := []string{"-g", "vpn", "clientb"}
	waitDigAs(t, d, "", "vpn", "clientb", name, "10.0.2.4")
	if out, err := psqlIn(d, fromB, name, "select 1"); err == nil {
		t.Fatalf("psql from B without a VPN: %s", out)
	}

	l.gateway("gwa", "westeurope", "vnet", "pipa")
	l.gateway("gwb", "northeurope", "vnetb", "pipb")

	return l
}

// TestVPN: two networks in different locations, a gateway in each and a
// pair of Vnet2Vnet connections. With mismatched keys the connections stay
// NotConnected and psql from B to A's endpoint fails; with one sharedKey
// (set through the sharedkey operation) they are Connected, psql (inside
// B's NIC namespace) reaches the server by its usual name with
// verify-full, the emulated internet sees only IKE and ESP-in-UDP between
// the two public addresses, and the byte counters move. privlinkd killed
// with SIGKILL and restarted, or stopped and started: the tunnel carries
// sessions while it is down, the charons are adopted (same pids), and the
// state converges. Deleting B's connection ends a live session and the
// path.
func TestVPN(t *testing.T) {
	l := newVPNLab(t)
	d, owner, cx := l.d, l.owner, ctx(t)
	const name = vpnServerName
	fromB := []string{"-g", "vpn", "clientb"}

	// Mismatched keys: NotConnected both ways, no traffic.
	l.connection("ab", "westeurope", "gwa", "gwb", "vpn-shared-key-1")
	l.connection("ba", "northeurope", "gwb", "gwa", "another-key")
	time.Sleep(5 * time.Second) // a few IKE exchanges fail meanwhile
	for _, c := range []string{"ab", "ba"} {
		r, err := l.conns.Get(cx, "vpn", c, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s := r.Properties.ConnectionStatus; s == nil || *s == armnetwork.VirtualNetworkGatewayConnectionStatusConnected {
			t.Fatalf("connection %s with mismatched keys: %v", c, s)
		}
	}
	if out, err := psqlIn(d, fromB, name, "select 1"); err == nil {
		t.Fatalf("psql from B with mismatched keys: %s", out)
	}

	// One key, set through the sharedkey operation: Connected; psql from B
	// works verify-full; the internet sees only IKE and ESP-in-UDP.
	wire := testkit.Capture(t, d.prefix+"inet")
	kp, err := l.conns.BeginSetSharedKey(cx, "vpn", "ba", armnetwork.ConnectionSharedKey{Value: ptr("vpn-shared-key-1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	l.status("ab", armnetwork.VirtualNetworkGatewayConnectionStatusConnected)
	l.status("ba", armnetwork.VirtualNetworkGatewayConnectionStatusConnected)
	var out string
	testkit.WaitFor(t, 30*time.Second, "psql from B to A's endpoint through the tunnel", func() error {
		out, err = psqlIn(d, fromB, name, "select inet_client_addr() is not null, current_user")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if out != "t|pgadmin" {
		t.Errorf("psql through the tunnel: %q", out)
	}
	pkts, raw := wire()
	if len(pkts) == 0 {
		t.Fatal("the emulated internet saw nothing")
	}
	pubs := map[string]bool{}
	for _, p := range pkts {
		m := vpnWire.FindStringSubmatch(p)
		if m == nil {
			t.Errorf("the internet saw a packet that is not IKE or ESP-in-UDP: %s", p)
			continue
		}
		pubs[m[1]], pubs[m[3]] = true, true
	}
	if len(pubs) != 2 {
		t.Errorf("IKE/ESP between %v, want the two gateways' public addresses", pubs)
	}
	for _, leak := range [][]byte{[]byte("pgadmin"), []byte("inet_client_addr"), []byte("postgres")} {
		if strings.Contains(string(raw), string(leak)) {
			t.Errorf("the internet saw %q in clear", leak)
		}
	}
	// The counters are read every 2 s.
	testkit.WaitFor(t, 10*time.Second, "byte counters after traffic", func() error {
		c := l.status("ab", armnetwork.VirtualNetworkGatewayConnectionStatusConnected)
		if c.Properties.SharedKey != nil {
			t.Fatal("a GET shows the shared key")
		}
		if in, eg := c.Properties.IngressBytesTransferred, c.Properties.EgressBytesTransferred; in == nil || eg == nil || *in == 0 || *eg == 0 {
			return fmt.Errorf("in %v, out %v", deref(in), deref(eg))
		}
		return nil
	})

	// privlinkd killed, then stopped: the tunnel carries sessions while it
	// is down; the next privlinkd adopts the charons and converges.
	// With privlinkd down neither the CLI nor the network's DNS answers:
	// psql runs in the NIC's namespace with ip netns exec and the
	// endpoint's address (verify-full still checks the name).
	nicID, err := arm.ParseID(owner.id("Microsoft.Network/networkInterfaces", "clientb"))
	if err != nil {
		t.Fatal(err)
	}
	direct := func(query string) (string, error) {
		cmd := exec.Command("ip", "netns", "exec", d.prefix+"nic-"+controller.FabricID(nicID), "psql",
			"host="+name+" hostaddr=10.0.2.4 user=pgadmin dbname=postgres sslmode=verify-full connect_timeout=5 sslrootcert="+filepath.Join(d.dataDir, "ca.pem"),
			"-XAtq", "-c", query)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+adminPassword)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	pids := charonPIDs(d)
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		d.stop(sig)
		if out, err := direct("select 2"); err != nil || out != "2" {
			t.Errorf("psql with privlinkd down (%v): %q, %v", sig, out, err)
		}
		d.start()
		l.status("ab", armnetwork.VirtualNetworkGatewayConnectionStatusConnected)
		l.status("ba", armnetwork.VirtualNetworkGatewayConnectionStatusConnected)
		if got := charonPIDs(d); fmt.Sprint(got) != fmt.Sprint(pids) {
			t.Errorf("after %v and a start the charons are %v, were %v (not adopted)", sig, got, pids)
		}
	}
	if out, err := psqlIn(d, fromB, name, "select 3"); err != nil || out != "3" {
		t.Errorf("psql after the restarts: %q, %v", out, err)
	}

	// A charon killed with SIGKILL: the controller notices, starts
	// another and loads its tunnel again.
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 60*time.Second, "a new charon with its tunnel", func() error {
		now := charonPIDs(d)
		if now[0] == 0 || now[0] == pids[0] {
			return fmt.Errorf("charons %v", now)
		}
		for _, c := range []string{"ab", "ba"} {
			r, err := l.conns.Get(cx, "vpn", c, nil)
			if err != nil {
				return err
			}
			if s := r.Properties.ConnectionStatus; s == nil || *s != armnetwork.VirtualNetworkGatewayConnectionStatusConnected {
				return fmt.Errorf("%s %v", c, deref(s))
			}
		}
		_, err := psqlIn(d, fromB, name, "select 1")
		return err
	})
	pids = charonPIDs(d)

	// A live session from B, then B's connection deleted: the session
	// ends and the path is gone.
	exited := sleepSession(t, d, nil, fromB, "host="+name, "60", "vpn", "srvvpn")
	l.deleteConnection("ba")
	deleted := time.Now()
	select {
	case <-exited:
		t.Logf("the live session through the tunnel ended %v after the delete returned", time.Since(deleted))
	case <-time.After(10 * time.Second):
		t.Errorf("the live session through the tunnel survived the connection's deletion")
	}
	if out, err := psqlIn(d, fromB, name, "select 4"); err == nil {
		t.Errorf("psql from B after its connection's deletion: %s", out)
	}
	r, err := l.conns.Get(cx, "vpn", "ab", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ab after ba's deletion: %v", *r.Properties.ConnectionStatus)

	// The rest goes; the gateways' namespaces and charons with it.
	l.deleteConnection("ab")
	for _, g := range []string{"gwa", "gwb"} {
		p, err := l.gws.BeginDelete(cx, "vpn", g, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.PollUntilDone(cx, pollOpts); err != nil {
			t.Fatal(err)
		}
	}
	if left, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(left), d.prefix+"vgw-") {
		t.Errorf("gateway namespaces left: %s", left)
	}
	for _, pid := range pids {
		if pid != 0 && running(pid) {
			t.Errorf("charon %d still runs after its gateway's deletion", pid)
		}
	}
}

// vpnServerName is the usual name of TestVPN's server.
const vpnServerName = "srvvpn.postgres.database.azure.com"

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// running reports whether process pid runs (a zombie does not: the first
// privlinkd, killed, left its charons to be reaped by whoever adopted them).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// TestVPNPgbench is a measurement, not a test (bench/vpn.sh runs it with
// PRIVLINK_BENCH=1; otherwise it is skipped): pgbench -S -c 8 through the
// private endpoint from network B across the Vnet2Vnet tunnel against the
// same from the endpoint's own network A (the same server, endpoint and
// translation, no tunnel), rounds interleaved, TLS on both. It logs
// each round's tps and the ratio; it asserts nothing about them.
func TestVPNPgbench(t *testing.T) {
	if os.Getenv("PRIVLINK_BENCH") != "1" {
		t.Skip("a measurement: run bench/vpn.sh (PRIVLINK_BENCH=1)")
	}
	l := newVPNLab(t)
	d := l.d
	l.connection("ab", "westeurope", "gwa", "gwb", "bench-key")
	l.connection("ba", "northeurope", "gwb", "gwa", "bench-key")
	l.status("ab", armnetwork.VirtualNetworkGatewayConnectionStatusConnected)
	l.status("ba", armnetwork.VirtualNetworkGatewayConnectionStatusConnected)
	run := func(where []string, args ...string) (string, error) {
		a := append([]string{"--data-dir", d.dataDir, "exec"}, where...)
		a = append(a, "--")
		a = append(a, args...)
		cmd := exec.Command(filepath.Join(binDir, "privlink"), a...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+adminPassword, "PGHOST="+vpnServerName, "PGUSER=pgadmin",
			"PGSSLMODE=verify-full", "PGSSLROOTCERT="+filepath.Join(d.dataDir, "ca.pem"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	fromA, fromB := []string{"-g", "vpn", "client"}, []string{"-g", "vpn", "clientb"}
	testkit.WaitFor(t, 30*time.Second, "psql from B through the tunnel", func() error {
		_, err := psqlIn(d, fromB, vpnServerName, "select 1")
		return err
	})
	if out, err := run(fromA, "psql", "dbname=postgres", "-XAtqc", "create database bench"); err != nil {
		t.Fatalf("create database: %v: %s", err, out)
	}
	if out, err := run(fromA, "pgbench", "-i", "-q", "-s", "10", "bench"); err != nil {
		t.Fatalf("pgbench -i: %v: %s", err, out)
	}
	secs := os.Getenv("PRIVLINK_BENCH_SECONDS")
	if secs == "" {
		secs = "10"
	}
	tpsRE := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	tps := func(where []string) float64 {
		out, err := run(where, "pgbench", "-S", "-c", "8", "-j", "2", "-T", secs, "-n", "bench")
		if err != nil {
			t.Fatalf("pgbench: %v: %s", err, out)
		}
		m := tpsRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no tps in pgbench's output: %s", out)
		}
		var v float64
		fmt.Sscanf(m[1], "%g", &v)
		return v
	}
	load := func() string {
		b, _ := os.ReadFile("/proc/loadavg")
		return strings.Join(strings.Fields(string(b))[:3], " ")
	}
	t.Logf("load average before: %s", load())
	t.Logf("| round | own network tps | across the tunnel tps | tunnel / own |")
	t.Logf("|---|---|---|---|")
	for r := 1; r <= 3; r++ {
		a := tps(fromA)
		b := tps(fromB)
		t.Logf("| %d | %.0f | %.0f | %.3f |", r, a, b, b/a)
	}
	t.Logf("load average after: %s", load())
}
