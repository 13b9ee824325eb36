package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/controller"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/policy"
	"github.com/privlink/privlink/internal/testkit"
)

// TestWhy: `privlink why` says what stops a connection and agrees with a
// real attempt from inside the NIC: a Pending endpoint is unreachable for
// want of approval (and the attempt fails); once approved it is reachable
// (and PostgreSQL answers).
func TestWhy(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip", "dig")
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	owner := newCustomer(t, d, d.cfg, "why")
	owner.network(t, "10.0.2.0/24")
	createServer(t, newPGClients(t, d, d.creds.SubscriptionID), "why", "srv-why")
	pe := owner.endpoint(t, "pe", owner.id("Microsoft.DBforPostgreSQL/flexibleServers", "srv-why"), true)
	addr := peIP(pe) + ":5432"
	client := owner.id("Microsoft.Network/networkInterfaces", "client")

	out, err := d.cliResult("--data-dir", d.dataDir, "why", "-g", "why", "client", addr)
	if err == nil || !strings.Contains(out, "unreachable") || !strings.Contains(out, "Pending, not Approved") {
		t.Errorf("why with a Pending endpoint: %v\n%s", err, out)
	}
	if !strings.Contains(out, "created network watcher NetworkWatcher_westeurope") {
		t.Errorf("why did not say it created the region's watcher:\n%s", out)
	}
	if err := sslRequestIn(d, client, peIP(pe)); err == nil {
		t.Error("why says unreachable, yet PostgreSQL answers through the Pending endpoint")
	}

	if err := setConnection(t, owner, "srv-why", "pe", "Approved"); err != nil {
		t.Fatal(err)
	}
	out, err = d.cliResult("--data-dir", d.dataDir, "why", "-g", "why", "client", addr)
	if err != nil || !strings.Contains(out, "reachable") || strings.Contains(out, "unreachable") || strings.Contains(out, "created") {
		t.Errorf("why with an Approved endpoint: %v\n%s", err, out)
	}
	testkit.WaitFor(t, 10*time.Second, "PostgreSQL answering through the approved endpoint", func() error { return sslRequestIn(d, client, peIP(pe)) })
}

// networkLab starts a daemon (root, with ip, dig and tools) and gives a
// customer of resource group rg a client network (customer.network, the
// endpoint subnet 10.0.2.0/24).
func networkLab(t *testing.T, rg string, tools ...string) (*daemon, *customer) {
	t.Helper()
	testkit.RequireRoot(t, "it creates network namespaces", append([]string{"ip", "dig"}, tools...)...)
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	owner := newCustomer(t, d, d.cfg, rg)
	owner.network(t, "10.0.2.0/24")
	return d, owner
}

// policyLab is TestPolicy's network, reached from inside its NICs.
type policyLab struct {
	d     *daemon
	owner *customer
	n     netClients
	fab   *fabric.Fabric
	addr  map[string]string // NIC name → address
	peIP  string
}

func (l *policyLab) nicID(name string) string {
	return l.owner.id("Microsoft.Network/networkInterfaces", name)
}

func (l *policyLab) ns(name string) string {
	id, _ := arm.ParseID(l.nicID(name))
	return l.fab.NamespaceName(fabric.KindNIC, controller.FabricID(id))
}

func (l *policyLab) subnetID(name string) string {
	return l.owner.id("Microsoft.Network/virtualNetworks", "vnet") + "/subnets/" + name
}

// attempt connects from NIC from to the NIC (or "pe") to, port, over
// proto: over TCP a NIC's listener greets with its name, the endpoint is
// PostgreSQL; over UDP a NIC's echo listener answers with its name; ICMP
// is ping -c1 -W1 inside from's namespace (port unused).
func (l *policyLab) attempt(proto, from, to string, port int) error {
	switch {
	case proto == "icmp":
		dst := l.peIP
		if to != "pe" {
			dst = l.addr[to]
		}
		if out, err := exec.Command("ip", "netns", "exec", l.ns(from), "ping", "-n", "-c1", "-W1", dst).CombinedOutput(); err != nil {
			return fmt.Errorf("ping %s: %w: %s", dst, err, out)
		}
		return nil
	case to == "pe":
		return sslRequestIn(l.d, l.nicID(from), l.peIP)
	}
	cx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := l.fab.DialContext(cx, l.ns(from), proto, net.JoinHostPort(l.addr[to], strconv.Itoa(port)))
	if err != nil {
		return err
	}
	defer c.Close()
	if proto == "udp" {
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte(from)); err != nil {
			return err
		}
		b := make([]byte, 64)
		n, err := c.Read(b)
		if err != nil {
			return err
		}
		if string(b[:n]) != to {
			return fmt.Errorf("answered by %q, not %s", b[:n], to)
		}
		return nil
	}
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != to {
		return fmt.Errorf("greeted by %q, not %s", line, to)
	}
	return nil
}

// verdict is one row of the truth table.
type verdict struct {
	from, to string
	port     int
	allowed  bool
	// rule, for a denied flow, is the rule `privlink why` must name.
	rule string
}

// check holds each row, over TCP, against a real attempt (which may take
// a moment to follow a change: the controller applies it) and against
// `privlink why`, which answers from the store at once.
func (l *policyLab) check(t *testing.T, rows ...verdict) {
	t.Helper()
	l.checkOver(t, "tcp", rows...)
}

// checkOver is check over proto (tcp, udp or icmp). Network Watcher's
// connectivity check, which `privlink why` asks, has no UDP: a UDP row is
// held against IP flow verify instead, asked for the source NIC's
// outbound and the destination NIC's inbound (both must allow).
func (l *policyLab) checkOver(t *testing.T, proto string, rows ...verdict) {
	t.Helper()
	for _, r := range rows {
		to := l.peIP + ":5432"
		if r.to != "pe" {
			to = net.JoinHostPort(l.addr[r.to], strconv.Itoa(r.port))
		}
		what := fmt.Sprintf("%s %s → %s (%s) allowed=%v", proto, r.from, r.to, to, r.allowed)
		testkit.WaitFor(t, 10*time.Second, what, func() error {
			err := l.attempt(proto, r.from, r.to, r.port)
			if (err == nil) != r.allowed {
				return fmt.Errorf("attempt: %v", err)
			}
			return nil
		})
		if proto == "udp" {
			if allowed, rule := l.verifyUDP(t, r); allowed != r.allowed || (r.rule != "" && rule != "securityRules/"+r.rule) {
				t.Errorf("%s: IP flow verify disagrees with the attempt: allowed=%v by %s", what, allowed, rule)
			}
			continue
		}
		out, err := l.d.cliResult("--data-dir", l.d.dataDir, "why", "--protocol", proto, "-g", l.owner.rg, r.from, to)
		if (err == nil) != r.allowed || (r.rule != "" && !strings.Contains(out, "security rule securityRules/"+r.rule+" ")) {
			t.Errorf("%s: privlink why disagrees with the attempt (%v):\n%s", what, err, out)
		}
	}
}

// verifyUDP asks IP flow verify about row r over UDP, from an ephemeral
// port: the source NIC outbound, then the destination NIC inbound. It
// returns whether both allow, and the rule that decided last.
func (l *policyLab) verifyUDP(t *testing.T, r verdict) (bool, string) {
	t.Helper()
	w, err := armnetwork.NewWatchersClient(l.d.creds.SubscriptionID, l.d.cfg.Credential, l.d.opts())
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(r.port)
	var rule string
	for _, q := range []struct {
		nic, dir, local, localPort, remote, remotePort string
	}{
		{r.from, "Outbound", l.addr[r.from], "40000", l.addr[r.to], port},
		{r.to, "Inbound", l.addr[r.to], port, l.addr[r.from], "40000"},
	} {
		p, err := w.BeginVerifyIPFlow(ctx(t), "NetworkWatcherRG", "NetworkWatcher_westeurope", armnetwork.VerificationIPFlowParameters{
			TargetResourceID: ptr(l.nicID(q.nic)), Direction: ptr(armnetwork.Direction(q.dir)), Protocol: ptr(armnetwork.IPFlowProtocolUDP),
			LocalIPAddress: ptr(q.local), LocalPort: ptr(q.localPort), RemoteIPAddress: ptr(q.remote), RemotePort: ptr(q.remotePort)}, nil)
		var res armnetwork.WatchersClientVerifyIPFlowResponse
		if err == nil {
			res, err = p.PollUntilDone(ctx(t), pollOpts)
		}
		if err != nil {
			t.Fatalf("IP flow verify %s %s: %v", q.nic, q.dir, err)
		}
		rule = ""
		if res.RuleName != nil {
			rule = *res.RuleName
		}
		if *res.Access != armnetwork.AccessAllow {
			return false, rule
		}
	}
	return true, rule
}

func (l *policyLab) putNSG(t *testing.T, name string, rules ...*armnetwork.SecurityRule) {
	t.Helper()
	p, err := l.n.nsgs.BeginCreateOrUpdate(ctx(t), l.owner.rg, name, armnetwork.SecurityGroup{Location: ptr("westeurope"),
		Properties: &armnetwork.SecurityGroupPropertiesFormat{SecurityRules: rules}}, nil)
	if err == nil {
		_, err = p.PollUntilDone(ctx(t), pollOpts)
	}
	if err != nil {
		t.Fatalf("NSG %s: %v", name, err)
	}
}

// putSubnet sets the endpoints subnet's NSG and private endpoint network
// policies.
func (l *policyLab) putSubnet(t *testing.T, nsg string, policies armnetwork.VirtualNetworkPrivateEndpointNetworkPolicies) {
	t.Helper()
	props := &armnetwork.SubnetPropertiesFormat{AddressPrefix: ptr("10.0.2.0/24"), PrivateEndpointNetworkPolicies: &policies}
	if nsg != "" {
		props.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: ptr(l.owner.id("Microsoft.Network/networkSecurityGroups", nsg))}
	}
	l.writeSubnet(t, "endpoints", props)
}

func (l *policyLab) writeSubnet(t *testing.T, name string, props *armnetwork.SubnetPropertiesFormat) {
	t.Helper()
	p, err := l.n.subnets.BeginCreateOrUpdate(ctx(t), l.owner.rg, "vnet", name, armnetwork.Subnet{Properties: props}, nil)
	if err == nil {
		_, err = p.PollUntilDone(ctx(t), pollOpts)
	}
	if err != nil {
		t.Fatalf("subnet %s: %v", name, err)
	}
}

// putNIC (re)writes NIC name in subnet at its static address, a member of
// asgs.
func (l *policyLab) putNIC(t *testing.T, name, subnet string, asgs ...string) {
	t.Helper()
	l.writeNIC(t, name, l.nicBody(t, name, subnet, asgs...))
}

func (l *policyLab) nicBody(t *testing.T, name, subnet string, asgs ...string) armnetwork.Interface {
	ipc := &armnetwork.InterfaceIPConfigurationPropertiesFormat{Subnet: &armnetwork.Subnet{ID: ptr(l.subnetID(subnet))},
		PrivateIPAllocationMethod: ptr(armnetwork.IPAllocationMethodStatic), PrivateIPAddress: ptr(l.addr[name])}
	for _, a := range asgs {
		ipc.ApplicationSecurityGroups = append(ipc.ApplicationSecurityGroups,
			&armnetwork.ApplicationSecurityGroup{ID: ptr(l.owner.id("Microsoft.Network/applicationSecurityGroups", a))})
	}
	return armnetwork.Interface{Location: ptr("westeurope"),
		Properties: &armnetwork.InterfacePropertiesFormat{IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{Name: ptr("ipconfig1"), Properties: ipc}}}}
}

func (l *policyLab) writeNIC(t *testing.T, name string, body armnetwork.Interface) {
	t.Helper()
	p, err := l.n.nics.BeginCreateOrUpdate(ctx(t), l.owner.rg, name, body, nil)
	if err == nil {
		_, err = p.PollUntilDone(ctx(t), pollOpts)
	}
	if err != nil {
		t.Fatalf("NIC %s: %v", name, err)
	}
}

// tcpRule is an inbound TCP rule to every destination.
func tcpRule(name string, prio int32, access armnetwork.SecurityRuleAccess, source string, port string) *armnetwork.SecurityRule {
	r := rule(name, prio, port)
	r.Properties.Access = &access
	r.Properties.SourceAddressPrefix = &source
	return r
}

// TestPolicy is the truth table of network policies through the real
// daemon: NICs in two subnets and a private endpoint, an NSG on the
// endpoints subnet, an ASG; each verdict checked by a real TCP attempt
// from inside a NIC and by `privlink why` while rules are added,
// reprioritised and removed, memberships change and the subnet's
// privateEndpointNetworkPolicies flip (closing a live session they now
// deny); bad rules get Azure's codes and change nothing; enforcement
// survives a restart and a kill -9 of privlinkd, unchanged, and the
// restarted daemon commits nothing to the router's nftables but what a
// change after it needs (nft monitor).
func TestPolicy(t *testing.T) {
	d, owner := networkLab(t, "pol", "nft", "ping", "psql")
	fab, err := fabric.New(d.prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := &policyLab{d: d, owner: owner, n: newNetClients(t, d), fab: fab, addr: map[string]string{"web": "10.0.1.10", "app": "10.0.2.10"}}
	client, err := l.n.nics.Get(ctx(t), "pol", "client", nil)
	if err != nil {
		t.Fatal(err)
	}
	l.addr["client"] = *client.Properties.IPConfigurations[0].Properties.PrivateIPAddress
	l.putNIC(t, "web", "clients")
	l.putNIC(t, "app", "endpoints")
	createServer(t, newPGClients(t, d, d.creds.SubscriptionID), "pol", "srv-pol")
	l.peIP = peIP(owner.endpoint(t, "pe", owner.id("Microsoft.DBforPostgreSQL/flexibleServers", "srv-pol"), false))
	for _, name := range []string{"client", "web", "app"} {
		for _, port := range []string{"8080", "8081"} {
			ln, err := fab.ListenTCP(l.ns(name), net.JoinHostPort(l.addr[name], port))
			if err != nil {
				t.Fatal(err)
			}
			testkit.Serve(t, ln, func(c net.Conn) { fmt.Fprintf(c, "%s\n", name); c.Close() })
		}
		pc, err := fab.ListenUDP(l.ns(name), net.JoinHostPort(l.addr[name], "7"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go udpEcho(pc, name)
	}

	// No NSG: everything passes.
	l.check(t, verdict{"client", "app", 8080, true, ""}, verdict{"web", "app", 8081, true, ""}, verdict{"app", "client", 8080, true, ""},
		verdict{"client", "pe", 5432, true, ""})

	// The endpoints subnet's NSG denies the client 8080 and PostgreSQL;
	// with the endpoint's policies Disabled, the endpoint is not filtered.
	client32 := l.addr["client"] + "/32"
	l.putNSG(t, "nsg-ep", tcpRule("deny-client-8080", 100, armnetwork.SecurityRuleAccessDeny, client32, "8080"),
		tcpRule("deny-client-pg", 110, armnetwork.SecurityRuleAccessDeny, client32, "5432"))
	l.putSubnet(t, "nsg-ep", armnetwork.VirtualNetworkPrivateEndpointNetworkPoliciesDisabled)
	l.check(t, verdict{"client", "app", 8080, false, "deny-client-8080"}, verdict{"client", "app", 8081, true, ""},
		verdict{"web", "app", 8080, true, ""}, // AllowVnetInBound, a default rule
		verdict{"app", "client", 8080, true, ""}, verdict{"client", "pe", 5432, true, ""})

	t.Run("privateEndpointNetworkPolicies", func(t *testing.T) {
		// A live psql session from the client through the endpoint
		// (pg_sleep), seen from the web NIC, which the NSG lets in.
		conninfo := fmt.Sprintf("host=%s hostaddr=%s user=pgadmin dbname=postgres sslmode=verify-full connect_timeout=5 sslrootcert=%s",
			"srv-pol.postgres.database.azure.com", l.peIP, filepath.Join(d.dataDir, "ca.pem"))
		args := []string{"--data-dir", d.dataDir, "exec", "-g", l.owner.rg, "client", "--", "psql", conninfo, "-XAtq", "-c", "select pg_sleep(60)"}
		live := exec.Command(filepath.Join(binDir, "privlink"), args...)
		live.Env = append(os.Environ(), "PGPASSWORD="+adminPassword)
		var liveOut bytes.Buffer
		live.Stdout, live.Stderr = &liveOut, &liveOut
		if err := live.Start(); err != nil {
			t.Fatal(err)
		}
		ended := make(chan error, 1)
		go func() { ended <- live.Wait() }()
		t.Cleanup(func() { _ = live.Process.Kill() })
		web := []string{"-g", l.owner.rg, "web"}
		if !testkit.Poll(20*time.Second, func() bool {
			out, _ := psqlConn(d, web, conninfo, "select count(*) from pg_stat_activity where query = 'select pg_sleep(60)'")
			return out == "1"
		}) {
			t.Fatalf("the live session did not start: %s", liveOut.String())
		}
		flipped := time.Now()
		l.putSubnet(t, "nsg-ep", armnetwork.VirtualNetworkPrivateEndpointNetworkPoliciesNetworkSecurityGroupEnabled)
		select {
		case err := <-ended:
			// How soon is for the benchmarks (rule PUT → enforcement);
			// the log says it for this run.
			t.Logf("the live psql session the endpoint's NSG now denies ended %v after the PUT began (%v): %s",
				time.Since(flipped).Round(time.Millisecond), err, strings.TrimSpace(liveOut.String()))
			if err == nil {
				t.Error("the denied psql session ended without an error")
			}
		case <-time.After(15 * time.Second):
			t.Errorf("the live psql session the endpoint's NSG now denies survived the change")
		}
		l.check(t, verdict{"client", "pe", 5432, false, "deny-client-pg"}, verdict{"web", "pe", 5432, true, ""})
		l.putSubnet(t, "nsg-ep", armnetwork.VirtualNetworkPrivateEndpointNetworkPoliciesRouteTableEnabled)
		l.check(t, verdict{"client", "pe", 5432, true, ""})
		l.putSubnet(t, "nsg-ep", armnetwork.VirtualNetworkPrivateEndpointNetworkPoliciesEnabled)
		l.check(t, verdict{"client", "pe", 5432, false, "deny-client-pg"})
	})

	t.Run("ASG", func(t *testing.T) {
		p, err := l.n.asgs.BeginCreateOrUpdate(ctx(t), "pol", "asg-web", armnetwork.ApplicationSecurityGroup{Location: ptr("westeurope")}, nil)
		if err == nil {
			_, err = p.PollUntilDone(ctx(t), pollOpts)
		}
		if err != nil {
			t.Fatal(err)
		}
		fromASG := tcpRule("allow-web-8081", 150, armnetwork.SecurityRuleAccessAllow, "", "8081")
		fromASG.Properties.SourceAddressPrefix = nil
		fromASG.Properties.SourceApplicationSecurityGroups = []*armnetwork.ApplicationSecurityGroup{{ID: ptr(owner.id("Microsoft.Network/applicationSecurityGroups", "asg-web"))}}
		l.putNSG(t, "nsg-ep", tcpRule("deny-client-8080", 100, armnetwork.SecurityRuleAccessDeny, client32, "8080"),
			tcpRule("deny-client-pg", 110, armnetwork.SecurityRuleAccessDeny, client32, "5432"),
			fromASG, tcpRule("deny-8081", 160, armnetwork.SecurityRuleAccessDeny, "*", "8081"))
		l.check(t, verdict{"web", "app", 8081, false, "deny-8081"}, verdict{"client", "app", 8081, false, "deny-8081"})
		l.putNIC(t, "web", "clients", "asg-web")
		l.check(t, verdict{"web", "app", 8081, true, ""}, verdict{"client", "app", 8081, false, "deny-8081"})
		l.putNIC(t, "web", "clients")
		l.putNIC(t, "client", "clients", "asg-web")
		l.check(t, verdict{"web", "app", 8081, false, "deny-8081"}, verdict{"client", "app", 8081, true, ""})
	})

	t.Run("reprioritised and removed", func(t *testing.T) {
		l.putNSG(t, "nsg-ep", tcpRule("deny-client-8080", 300, armnetwork.SecurityRuleAccessDeny, client32, "8080"),
			tcpRule("allow-client-8080", 200, armnetwork.SecurityRuleAccessAllow, client32, "8080"))
		l.check(t, verdict{"client", "app", 8080, true, ""}, verdict{"client", "pe", 5432, true, ""})
		l.putNSG(t, "nsg-ep", tcpRule("deny-client-8080", 100, armnetwork.SecurityRuleAccessDeny, client32, "8080"))
		l.check(t, verdict{"client", "app", 8080, false, "deny-client-8080"})
	})

	t.Run("UDP and ICMP", func(t *testing.T) {
		udp := tcpRule("deny-client-udp", 120, armnetwork.SecurityRuleAccessDeny, client32, "7")
		udp.Properties.Protocol = ptr(armnetwork.SecurityRuleProtocolUDP)
		icmp := tcpRule("deny-client-icmp", 130, armnetwork.SecurityRuleAccessDeny, client32, "*")
		icmp.Properties.Protocol = ptr(armnetwork.SecurityRuleProtocolIcmp)
		l.checkOver(t, "udp", verdict{"client", "app", 7, true, ""}, verdict{"web", "app", 7, true, ""})
		l.checkOver(t, "icmp", verdict{"client", "app", 0, true, ""}, verdict{"web", "app", 0, true, ""})
		l.putNSG(t, "nsg-ep", tcpRule("deny-client-8080", 100, armnetwork.SecurityRuleAccessDeny, client32, "8080"), udp, icmp)
		// Each rule denies its protocol only, and the client only; the
		// return traffic of the app's own flows passes (stateful).
		l.checkOver(t, "udp", verdict{"client", "app", 7, false, "deny-client-udp"}, verdict{"web", "app", 7, true, ""},
			verdict{"app", "client", 7, true, ""})
		l.checkOver(t, "icmp", verdict{"client", "app", 0, false, "deny-client-icmp"}, verdict{"web", "app", 0, true, ""},
			verdict{"app", "client", 0, true, ""})
		l.check(t, verdict{"client", "app", 8081, true, ""})
		l.putNSG(t, "nsg-ep", tcpRule("deny-client-8080", 100, armnetwork.SecurityRuleAccessDeny, client32, "8080"))
		l.checkOver(t, "udp", verdict{"client", "app", 7, true, ""})
		l.checkOver(t, "icmp", verdict{"client", "app", 0, true, ""})
	})

	t.Run("routes", func(t *testing.T) {
		// The clients subnet's route table drops what goes to the
		// endpoints subnet; the endpoint's /32 is invalidated too, since
		// its subnet's policies (Enabled) enable route tables.
		p, err := l.n.rts.BeginCreateOrUpdate(ctx(t), "pol", "rt-clients", armnetwork.RouteTable{Location: ptr("westeurope"),
			Properties: &armnetwork.RouteTablePropertiesFormat{Routes: []*armnetwork.Route{{Name: ptr("drop-endpoints"),
				Properties: &armnetwork.RoutePropertiesFormat{AddressPrefix: ptr("10.0.2.0/24"), NextHopType: ptr(armnetwork.RouteNextHopTypeNone)}}}}}, nil)
		if err == nil {
			_, err = p.PollUntilDone(ctx(t), pollOpts)
		}
		if err != nil {
			t.Fatal(err)
		}
		clients := func(rt string) *armnetwork.SubnetPropertiesFormat {
			props := &armnetwork.SubnetPropertiesFormat{AddressPrefix: ptr("10.0.1.0/24")}
			if rt != "" {
				props.RouteTable = &armnetwork.RouteTable{ID: ptr(owner.id("Microsoft.Network/routeTables", rt))}
			}
			return props
		}
		l.writeSubnet(t, "clients", clients("rt-clients"))
		l.check(t, verdict{"client", "app", 8081, false, ""}, verdict{"web", "app", 8081, false, ""},
			verdict{"app", "client", 8081, true, ""}, verdict{"client", "pe", 5432, false, ""})
		// With NSGs only for the endpoint, its /32 wins over the route.
		l.putSubnet(t, "nsg-ep", armnetwork.VirtualNetworkPrivateEndpointNetworkPoliciesNetworkSecurityGroupEnabled)
		l.check(t, verdict{"client", "pe", 5432, true, ""}, verdict{"client", "app", 8081, false, ""})
		l.writeSubnet(t, "clients", clients(""))
		l.check(t, verdict{"client", "app", 8081, true, ""})
	})

	t.Run("bad input", func(t *testing.T) {
		// Each refused write names its field and rule with Azure's code,
		// and changes nothing: enforcement stays as it was.
		far, err := putVNet(t, l.n, l.owner.rg, "vnet-far", vnetBody("10.9.0.0/16", map[string]string{"a": "10.9.1.0/24"}))
		if err != nil {
			t.Fatal(err)
		}
		for _, asg := range []string{"asg-far"} {
			p, err := l.n.asgs.BeginCreateOrUpdate(ctx(t), l.owner.rg, asg, armnetwork.ApplicationSecurityGroup{Location: ptr("westeurope")}, nil)
			if err == nil {
				_, err = p.PollUntilDone(ctx(t), pollOpts)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		l.addr["far"] = "10.9.1.10"
		farNIC := l.nicBody(t, "far", "a", "asg-far")
		farNIC.Properties.IPConfigurations[0].Properties.Subnet.ID = ptr(*far.ID + "/subnets/a")
		l.writeNIC(t, "far", farNIC)
		asgRef := func(name string) []*armnetwork.ApplicationSecurityGroup {
			return []*armnetwork.ApplicationSecurityGroup{{ID: ptr(l.owner.id("Microsoft.Network/applicationSecurityGroups", name))}}
		}
		across := tcpRule("web-to-far", 170, armnetwork.SecurityRuleAccessAllow, "", "8080")
		across.Properties.SourceAddressPrefix, across.Properties.SourceApplicationSecurityGroups = nil, asgRef("asg-web")
		across.Properties.DestinationAddressPrefix, across.Properties.DestinationApplicationSecurityGroups = nil, asgRef("asg-far")
		badPrefix := tcpRule("bad-prefix", 180, armnetwork.SecurityRuleAccessDeny, "10.0.1.4/33", "8080")
		badPorts := tcpRule("bad-ports", 190, armnetwork.SecurityRuleAccessDeny, "*", "2000-1000")
		for _, c := range []struct {
			rule               *armnetwork.SecurityRule
			code, target, word string // word: what the message names
		}{
			{tcpRule("same-priority", 100, armnetwork.SecurityRuleAccessAllow, "*", "8080"), "SecurityRuleConflict", "properties.priority", "deny-client-8080"},
			{badPrefix, "SecurityRuleInvalidAddressPrefix", "properties.sourceAddressPrefix", "10.0.1.4/33"},
			{badPorts, "SecurityRuleInvalidPortRange", "properties.destinationPortRange", "2000-1000"},
			{across, "ApplicationSecurityGroupsNotInSameVirtualNetwork", "properties.destinationApplicationSecurityGroups[0].id", "vnet-far"},
		} {
			_, err := l.n.rules.BeginCreateOrUpdate(ctx(t), l.owner.rg, "nsg-ep", *c.rule.Name, *c.rule, nil)
			if e := testkit.WantARMError(t, err, http.StatusBadRequest, c.code); e.Target != c.target || !strings.Contains(e.Message, c.word) {
				t.Errorf("rule %s: %+v, want target %s and a message naming %s", *c.rule.Name, e, c.target, c.word)
			}
			if _, err := l.n.rules.Get(ctx(t), l.owner.rg, "nsg-ep", *c.rule.Name, nil); err == nil {
				t.Errorf("refused rule %s was stored", *c.rule.Name)
			}
		}
		// The far NIC may not join the near network's group either.
		join := l.nicBody(t, "far", "a", "asg-far", "asg-web")
		join.Properties.IPConfigurations[0].Properties.Subnet.ID = ptr(*far.ID + "/subnets/a")
		_, err = l.n.nics.BeginCreateOrUpdate(ctx(t), l.owner.rg, "far", join, nil)
		testkit.WantARMError(t, err, http.StatusBadRequest, "ApplicationSecurityGroupsNotInSameVirtualNetwork")
		l.check(t, verdict{"client", "app", 8080, false, "deny-client-8080"}, verdict{"client", "app", 8081, true, ""})
	})

	t.Run("restart keeps enforcement", func(t *testing.T) {
		router := l.routerNS(t)
		epChain := policy.ChainName(strings.ToLower(owner.id("Microsoft.Network/networkSecurityGroups", "nsg-ep")), policy.Inbound)
		before := chainOf(policyRuleset(t, router), epChain)
		if before == "" {
			t.Fatalf("no chain %s in the router's policy table", epChain)
		}
		mon := testkit.StartNFTMonitor(t, router)
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
			d.restart(sig)
			l.check(t, verdict{"client", "app", 8080, false, "deny-client-8080"}, verdict{"web", "app", 8080, true, ""})
		}
		// A change after the restart: once it is in the kernel, the
		// controller's first passes are done, and they rewrote nothing
		// that did not change.
		l.putNSG(t, "nsg-web", tcpRule("deny-in-8081", 100, armnetwork.SecurityRuleAccessDeny, "*", "8081"))
		nic := l.nicBody(t, "web", "clients")
		nic.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: ptr(owner.id("Microsoft.Network/networkSecurityGroups", "nsg-web"))}
		l.writeNIC(t, "web", nic)
		l.check(t, verdict{"client", "web", 8081, false, "deny-in-8081"}, verdict{"client", "web", 8080, true, ""})
		if after := chainOf(policyRuleset(t, router), epChain); after != before {
			t.Errorf("a restart rewrote %s:\nbefore %s\nafter  %s", epChain, before, after)
		}
		// The kernel's own account (nft monitor in the router) since
		// before the kill: the commits of the new NSG, nothing else; no
		// other table (the data path's, the router's filter) and no
		// chain of nsg-ep was written again.
		commits, changes := mon.Changes(t)
		t.Logf("router %s since the restart: %d commits: %q", router, commits, changes)
		if commits == 0 {
			t.Error("nft monitor saw no commit, not even the new NSG's")
		}
		for _, c := range changes {
			if !strings.Contains(c, " inet "+fabric.PolicyTable+" ") || strings.Contains(c, " inet "+fabric.PolicyTable+" "+epChain+" ") {
				t.Errorf("since the restart, a change the new NSG does not need: %s", c)
			}
		}
	})
}

// udpEcho answers each datagram pc receives with name, until pc closes.
func udpEcho(pc net.PacketConn, name string) {
	b := make([]byte, 64)
	for {
		_, from, err := pc.ReadFrom(b)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo([]byte(name), from)
	}
}

// chainOf is the text of one chain in `nft -a list table` output.
func chainOf(ruleset, chain string) string {
	_, rest, ok := strings.Cut(ruleset, "chain "+chain+" {")
	if !ok {
		return ""
	}
	body, _, _ := strings.Cut(rest, "}")
	return body
}

func (l *policyLab) routerNS(t *testing.T) string {
	id, _ := arm.ParseID(l.owner.id("Microsoft.Network/virtualNetworks", "vnet"))
	return l.fab.NamespaceName(fabric.KindNetwork, controller.FabricID(id))
}

// policyRuleset is the router's policy table with its rule handles.
func policyRuleset(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "-a", "list", "table", "inet", fabric.PolicyTable).CombinedOutput()
	if err != nil {
		t.Fatalf("nft in %s: %v: %s", ns, err, out)
	}
	return string(out)
}
