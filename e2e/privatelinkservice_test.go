package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/controller"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/testkit"
)

// plsEnv is TestPrivateLinkService's world: the provider (the daemon's
// default principal, group fab: VNet "prov" 10.0.0.0/16, an internal load
// balancer 10.0.1.100:80 → 8080 of backends be1 and be2 running the
// whoami helper, the service "svc" with NAT IP 10.0.5.10) and a consumer
// in another tenant whose VNet has the same space.
type plsEnv struct {
	t        *testing.T
	d        *daemon
	fab      *fabric.Fabric
	services *armnetwork.PrivateLinkServicesClient
	cons     *customer
	alias    string
	svcID    string
	stopBE   map[string]func()
}

const plsNATIP = "10.0.5.10"

// plsConn is a connection through an endpoint, past the backend's answer.
type plsConn struct {
	c       net.Conn
	r       *bufio.Reader
	w       func(string) error
	backend string // the backend's name
	peer    string // the source the backend saw
	header  string // the PROXY header the backend parsed, "-" for none
}

// dialIn connects from the namespace ns to addr, sends a line and reads
// the backend's answer.
func (e *plsEnv) dialIn(ns, addr string) (*plsConn, error) {
	cx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := e.fab.DialContext(cx, ns, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	if _, err := fmt.Fprintln(c, "hello"); err != nil {
		c.Close()
		return nil, err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	f := strings.SplitN(strings.TrimSpace(line), " ", 3)
	if len(f) != 3 {
		c.Close()
		return nil, fmt.Errorf("answer %q", line)
	}
	pc := &plsConn{c: c, r: r, backend: f[0], peer: f[1], header: f[2]}
	pc.w = func(msg string) error {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		defer c.SetDeadline(time.Time{})
		if _, err := fmt.Fprintln(c, msg); err != nil {
			return err
		}
		got, err := r.ReadString('\n')
		if err == nil && strings.TrimSpace(got) != msg {
			err = fmt.Errorf("echo %q, want %q", got, msg)
		}
		return err
	}
	return pc, nil
}

// spread opens n connections from ns to addr and counts them by backend
// ("error" for those that failed), checking what each backend saw.
func (e *plsEnv) spread(ns, addr string, n int, check func(*plsConn) error) (map[string]int, error) {
	got := map[string]int{}
	var errs []error
	for range n {
		c, err := e.dialIn(ns, addr)
		if err != nil {
			got["error"]++
			continue
		}
		if check != nil {
			if err := check(c); err != nil {
				errs = append(errs, err)
			}
		}
		got[c.backend]++
		c.c.Close()
	}
	return got, errors.Join(errs...)
}

func newPLSEnv(t *testing.T) *plsEnv {
	d := startDaemon(t, "bolt")
	e := &plsEnv{t: t, d: d, stopBE: map[string]func(){}}
	var err error
	if e.fab, err = fabric.New(d.prefix, nil); err != nil {
		t.Fatal(err)
	}
	n := newNetClients(t, d)
	createGroup(t, d, "fab")
	sub := d.creds.SubscriptionID
	vnetID := "/subscriptions/" + sub + "/resourceGroups/fab/providers/Microsoft.Network/virtualNetworks/prov"
	v := vnetBody("10.0.0.0/16", map[string]string{"be": "10.0.1.0/24"})
	v.Properties.Subnets = append(v.Properties.Subnets, &armnetwork.Subnet{Name: ptr("nat"), Properties: &armnetwork.SubnetPropertiesFormat{
		AddressPrefix: ptr("10.0.5.0/24"), PrivateLinkServiceNetworkPolicies: ptr(armnetwork.VirtualNetworkPrivateLinkServiceNetworkPoliciesDisabled)}})
	if _, err := putVNet(t, n, "fab", "prov", v); err != nil {
		t.Fatal(err)
	}
	putEchoLB(t, d, n, vnetID+"/subnets/be")
	for _, name := range []string{"be1", "be2"} {
		e.startBackend(name)
	}
	// Another NIC of the provider, with a listener the consumers must
	// never reach.
	if _, err := putNIC(t, n, "fab", "other", vnetID+"/subnets/be", "10.0.1.50"); err != nil {
		t.Fatal(err)
	}
	startHelper(t, d, "whoami", "other", "0.0.0.0:80", "other")

	e.cons = newCustomer(t, d, d.principal(true), "cons")
	e.cons.network(t, "10.0.2.0/24")
	if e.services, err = armnetwork.NewPrivateLinkServicesClient(sub, d.cfg.Credential, d.opts()); err != nil {
		t.Fatal(err)
	}
	svc := e.putService(false, []string{e.cons.cfg.Creds.SubscriptionID}, nil)
	e.alias, e.svcID = *svc.Properties.Alias, *svc.ID
	return e
}

// startBackend runs the whoami helper in backend NIC name on port 8080.
func (e *plsEnv) startBackend(name string) {
	cmd := startHelper(e.t, e.d, "whoami", name, "0.0.0.0:8080", name)
	e.stopBE[name] = func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
}

// putService creates or updates the service svc on the frontend.
func (e *plsEnv) putService(proxy bool, visibility, auto []string) armnetwork.PrivateLinkService {
	e.t.Helper()
	sub := e.d.creds.SubscriptionID
	base := "/subscriptions/" + sub + "/resourceGroups/fab/providers/Microsoft.Network/"
	p, err := e.services.BeginCreateOrUpdate(ctx(e.t), "fab", "svc", armnetwork.PrivateLinkService{Location: ptr("westeurope"),
		Properties: &armnetwork.PrivateLinkServiceProperties{
			LoadBalancerFrontendIPConfigurations: []*armnetwork.FrontendIPConfiguration{{ID: ptr(base + "loadBalancers/ilb/frontendIPConfigurations/fe")}},
			IPConfigurations: []*armnetwork.PrivateLinkServiceIPConfiguration{{Name: ptr("primary"), Properties: &armnetwork.PrivateLinkServiceIPConfigurationProperties{
				Primary: ptr(true), Subnet: &armnetwork.Subnet{ID: ptr(base + "virtualNetworks/prov/subnets/nat")},
				PrivateIPAllocationMethod: ptr(armnetwork.IPAllocationMethodStatic), PrivateIPAddress: ptr(plsNATIP)}}},
			Visibility:          &armnetwork.PrivateLinkServicePropertiesVisibility{Subscriptions: ptrs(visibility)},
			AutoApproval:        &armnetwork.PrivateLinkServicePropertiesAutoApproval{Subscriptions: ptrs(auto)},
			EnableProxyProtocol: ptr(proxy),
		}}, nil)
	var res armnetwork.PrivateLinkServicesClientCreateOrUpdateResponse
	if err == nil {
		res, err = p.PollUntilDone(ctx(e.t), pollOpts)
	}
	if err != nil {
		e.t.Fatalf("private link service: %v", err)
	}
	return res.PrivateLinkService
}

func ptrs(ss []string) []*string {
	out := []*string{}
	for _, s := range ss {
		out = append(out, ptr(s))
	}
	return out
}

// endpoint creates the consumer's endpoint name to target (the service's
// alias or ID), manual or not, and returns it with its address.
func (e *plsEnv) endpoint(c *customer, name, target string, manual bool) (armnetwork.PrivateEndpoint, string, error) {
	conn := []*armnetwork.PrivateLinkServiceConnection{{Name: ptr(name), Properties: &armnetwork.PrivateLinkServiceConnectionProperties{
		PrivateLinkServiceID: ptr(target), RequestMessage: ptr("from " + c.rg)}}}
	props := &armnetwork.PrivateEndpointProperties{Subnet: &armnetwork.Subnet{ID: ptr(c.id("Microsoft.Network/virtualNetworks", "vnet") + "/subnets/endpoints")}}
	if manual {
		props.ManualPrivateLinkServiceConnections = conn
	} else {
		props.PrivateLinkServiceConnections = conn
	}
	p, err := c.pes.BeginCreateOrUpdate(ctx(e.t), c.rg, name, armnetwork.PrivateEndpoint{Location: ptr("westeurope"), Properties: props}, nil)
	if err != nil {
		return armnetwork.PrivateEndpoint{}, "", err
	}
	res, err := p.PollUntilDone(ctx(e.t), pollOpts)
	if err != nil {
		return armnetwork.PrivateEndpoint{}, "", err
	}
	pe := res.PrivateEndpoint
	nicID, err := arm.ParseID(*pe.Properties.NetworkInterfaces[0].ID)
	if err != nil {
		e.t.Fatal(err)
	}
	nic, err := c.nics.Get(ctx(e.t), c.rg, nicID.Name(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return pe, *nic.Properties.IPConfigurations[0].Properties.PrivateIPAddress, nil
}

// status is the state of the consumer endpoint's connection.
func status(pe armnetwork.PrivateEndpoint) string {
	cs := append(pe.Properties.PrivateLinkServiceConnections, pe.Properties.ManualPrivateLinkServiceConnections...)
	if len(cs) != 1 || cs[0].Properties.PrivateLinkServiceConnectionState == nil {
		return "?"
	}
	return *cs[0].Properties.PrivateLinkServiceConnectionState.Status
}

// decide sets, as the provider, the state of the connection of endpoint
// pe, and returns the connection's linkIdentifier.
func (e *plsEnv) decide(pe, state string) string {
	e.t.Helper()
	var conn *armnetwork.PrivateEndpointConnection
	for pg := e.services.NewListPrivateEndpointConnectionsPager("fab", "svc", nil); pg.More(); {
		page, err := pg.NextPage(ctx(e.t))
		if err != nil {
			e.t.Fatal(err)
		}
		for _, c := range page.Value {
			if strings.HasSuffix(strings.ToLower(*c.Properties.PrivateEndpoint.ID), "/"+pe) {
				conn = c
			}
		}
	}
	if conn == nil {
		e.t.Fatalf("no connection of %s", pe)
	}
	_, err := e.services.UpdatePrivateEndpointConnection(ctx(e.t), "fab", "svc", *conn.Name, armnetwork.PrivateEndpointConnection{
		Properties: &armnetwork.PrivateEndpointConnectionProperties{PrivateLinkServiceConnectionState: &armnetwork.PrivateLinkServiceConnectionState{
			Status: ptr(state), Description: ptr(state + " by the e2e test")}}}, nil)
	if err != nil {
		e.t.Fatalf("%s %s: %v", state, pe, err)
	}
	return *conn.Properties.LinkIdentifier
}

// endpointMetric sums, in /metrics as the consumer sees it, the series of
// metric whose endpoint label is the consumer's endpoint pe (and that
// contain every one of with).
func (e *plsEnv) endpointMetric(pe, metric string, with ...string) float64 {
	e.t.Helper()
	resp := send(e.t, e.cons.cfg, "GET", "/metrics", nil)
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	label := `endpoint="` + e.cons.id("Microsoft.Network/privateEndpoints", pe) + `"`
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, metric+"{") || !strings.Contains(line, label) {
			continue
		}
		if slices.ContainsFunc(with, func(w string) bool { return !strings.Contains(line, w) }) {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}

// relayAudit checks privlinkd's log (while it is stopped) for the audit
// lines of connections through the PROXY protocol relay to pe (ID) at
// addr: each from the consumer NIC; at least as many seen as the NAT IP as
// reached the backends (9), and one revoked (the reject) with bytes.
// (Connections the relay accepted as the reject closed its route never
// reached the service: seen_as is empty.)
func (e *plsEnv) relayAudit(pe, addr string) {
	e.t.Helper()
	var reached, revoked int
	for _, line := range strings.Split(e.d.log.String(), "\n") {
		if !strings.Contains(line, " msg=connection ") || !strings.Contains(line, " relayed=true") ||
			!strings.Contains(line, " endpoint="+pe+" ") {
			continue
		}
		for _, want := range []string{" component=audit ", " kind=endpoint ", " client_addr=10.0.1.4 ", " target=" + addr + " ",
			" server=" + e.svcID + " "} {
			if !strings.Contains(line, want) {
				e.t.Errorf("relayed audit line without %q: %s", want, line)
			}
		}
		if strings.Contains(line, " seen_as="+plsNATIP+":") {
			reached++
		} else if !strings.Contains(line, ` seen_as="" `) {
			e.t.Errorf("relayed audit line seen as neither the NAT IP nor nothing: %s", line)
		}
		if strings.Contains(line, " ended=revoked ") && !strings.Contains(line, " bytes_in=0 ") {
			revoked++
		}
	}
	if reached < 9 || revoked < 1 {
		e.t.Errorf("%d relayed audit lines of pe1 seen as the NAT IP, %d revoked with bytes: want at least 9 and 1", reached, revoked)
	}
}

// TestPrivateLinkService is issue 12's acceptance: a provider's TCP
// service behind an internal load balancer, consumed from another
// tenant's overlapping network through endpoints, in the kernel and with
// PROXY protocol v2.
func TestPrivateLinkService(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip")
	e := newPLSEnv(t)
	c := e.cons
	clientID, _ := arm.ParseID(c.id("Microsoft.Network/networkInterfaces", "client"))
	client := e.fab.NamespaceName(fabric.KindNIC, controller.FabricID(clientID))
	var re *azcore.ResponseError
	seesNATIP := func(pc *plsConn) error {
		if pc.peer != plsNATIP || pc.header != "-" {
			return fmt.Errorf("%s saw %s with header %q, want %s and none", pc.backend, pc.peer, pc.header, plsNATIP)
		}
		return nil
	}

	// By alias: Pending, nothing gets through; approved: balanced, from
	// the NAT IP.
	pe1, ip1, err := e.endpoint(c, "pe1", e.alias, true)
	if err != nil {
		t.Fatal(err)
	}
	if st := status(pe1); st != "Pending" {
		t.Fatalf("endpoint by alias: %s, want Pending", st)
	}
	addr1 := ip1 + ":80"
	if pc, err := e.dialIn(client, addr1); err == nil {
		pc.c.Close()
		t.Fatalf("a Pending endpoint connected to %s", pc.backend)
	}
	link1 := e.decide("pe1", "Approved")
	testkit.WaitFor(t, 60*time.Second, "connections through pe1 spread over be1 and be2", func() error {
		got, err := e.spread(client, addr1, 16, seesNATIP)
		if err != nil {
			return err
		}
		if got["be1"] == 0 || got["be2"] == 0 {
			return fmt.Errorf("16 connections went %v", got)
		}
		return nil
	})

	// Its counters, as the consumer's metrics show them, labelled with
	// the service.
	if n := e.endpointMetric("pe1", "privlink_datapath_connections_total", `server_name="svc"`); n < 16 {
		t.Errorf("pe1's connections_total = %v, want at least 16", n)
	}
	if n := e.endpointMetric("pe1", "privlink_datapath_bytes_total", `direction="in"`); n == 0 {
		t.Error("pe1's bytes_total in = 0")
	}

	// The load balancer the service stands on stays.
	lbs, err := armnetwork.NewLoadBalancersClient(e.d.creds.SubscriptionID, e.d.cfg.Credential, e.d.opts())
	if err != nil {
		t.Fatal(err)
	}
	_, err = lbs.BeginDelete(ctx(t), "fab", "ilb", nil)
	if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest || re.ErrorCode != "InUseFrontendIPConfigurationCannotBeDeleted" {
		t.Errorf("deleting the service's load balancer: %v, want 400 InUseFrontendIPConfigurationCannotBeDeleted", err)
	}

	// The endpoint reaches the frontend's port only.
	for _, a := range []string{ip1 + ":8080", ip1 + ":22", "10.0.1.100:80", "10.0.1.50:80", "10.0.5.10:80"} {
		if pc, err := e.dialIn(client, a); err == nil {
			pc.c.Close()
			t.Errorf("the consumer reached %s (%s, %s)", a, pc.backend, pc.peer)
		}
	}

	// A backend whose probe fails gets no new connections.
	e.stopBE["be1"]()
	testkit.WaitFor(t, 60*time.Second, "every connection to be2", func() error {
		if got, _ := e.spread(client, addr1, 12, nil); got["be2"] != 12 {
			return fmt.Errorf("12 connections went %v", got)
		}
		return nil
	})
	e.startBackend("be1")
	testkit.WaitFor(t, 60*time.Second, "be1 back", func() error {
		if got, _ := e.spread(client, addr1, 16, nil); got["be1"] == 0 || got["be2"] == 0 {
			return fmt.Errorf("16 connections went %v", got)
		}
		return nil
	})

	// Outside visibility: refused with Azure's error.
	stranger := newCustomer(t, e.d, e.d.principal(true), "stranger")
	stranger.network(t, "10.0.2.0/24")
	_, _, err = e.endpoint(stranger, "pe-x", e.alias, true)
	if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest || re.ErrorCode != "PrivateLinkServiceNotVisibleToSubscription" {
		t.Errorf("an endpoint from outside visibility: %v, want 400 PrivateLinkServiceNotVisibleToSubscription", err)
	}
	// In autoApproval: Approved at once, by ID.
	e.putService(false, []string{c.cfg.Creds.SubscriptionID}, []string{c.cfg.Creds.SubscriptionID})
	pe2, ip2, err := e.endpoint(c, "pe2", e.svcID, false)
	if err != nil {
		t.Fatal(err)
	}
	if st := status(pe2); st != "Approved" {
		t.Errorf("endpoint in autoApproval: %s, want Approved", st)
	}
	addr2 := ip2 + ":80"
	testkit.WaitFor(t, 30*time.Second, "pe2 connects", func() error {
		pc, err := e.dialIn(client, addr2)
		if err != nil {
			return err
		}
		defer pc.c.Close()
		return seesNATIP(pc)
	})

	// Revocation closes a live session at once; reject and re-request.
	held, err := e.dialIn(client, addr1)
	if err != nil {
		t.Fatal(err)
	}
	defer held.c.Close()
	e.decide("pe1", "Rejected")
	rejected := time.Now()
	// The session's next read ends with a reset; the deadline only keeps
	// a broken path from hanging the test.
	_ = held.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := held.r.ReadString('\n'); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the session through pe1 after the reject: %v, want a reset", err)
	} else {
		t.Logf("the session through pe1 was reset %v after the reject call returned", time.Since(rejected))
	}
	if pc, err := e.dialIn(client, addr1); err == nil {
		pc.c.Close()
		t.Error("a rejected endpoint connected")
	}
	pe1, _, err = e.endpoint(c, "pe1", e.alias, true)
	if err != nil || status(pe1) != "Pending" {
		t.Errorf("re-request of pe1: %v %s, want Pending", err, status(pe1))
	}
	if l := e.decide("pe1", "Approved"); l != link1 {
		t.Errorf("pe1's linkIdentifier after a re-request: %s, was %s", l, link1)
	}

	// PROXY protocol v2: each connection starts with the consumer's source
	// and the endpoint's LinkID; the backends still see the NAT IP.
	e.putService(true, []string{c.cfg.Creds.SubscriptionID}, []string{c.cfg.Creds.SubscriptionID})
	testkit.WaitFor(t, 30*time.Second, "PROXY headers through pe1", func() error {
		got, err := e.spread(client, addr1, 8, func(pc *plsConn) error {
			f := strings.Fields(pc.header)
			if pc.peer != plsNATIP || len(f) != 3 || !strings.HasPrefix(f[0], "10.0.1.4:") || f[1] != addr1 || f[2] != link1 {
				return fmt.Errorf("%s saw %s with header %q, want %s and 10.0.1.4:* %s %s", pc.backend, pc.peer, pc.header, plsNATIP, addr1, link1)
			}
			return nil
		})
		if err == nil && got["error"] > 0 {
			err = fmt.Errorf("connections went %v", got)
		}
		return err
	})
	relayed, err := e.dialIn(client, addr1)
	if err != nil {
		t.Fatal(err)
	}
	defer relayed.c.Close()
	if err := relayed.w("through the relay"); err != nil {
		t.Errorf("echo through the relay: %v", err)
	}
	// The relay's counters are the endpoint's.
	if n := e.endpointMetric("pe1", "privlink_datapath_active_connections"); n != 1 {
		t.Errorf("pe1's active_connections through the relay = %v, want 1", n)
	}
	if n := e.endpointMetric("pe1", "privlink_datapath_connections_total"); n < 9 {
		t.Errorf("pe1's connections_total through the relay = %v, want at least 9", n)
	}
	// Revocation resets the relay's sessions too.
	e.decide("pe1", "Rejected")
	_ = relayed.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := relayed.r.ReadString('\n'); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the relayed session after the reject: %v, want a reset", err)
	}
	if pc, err := e.dialIn(client, addr1); err == nil {
		pc.c.Close()
		t.Error("a rejected endpoint connected through the relay")
	}
	e.endpoint(c, "pe1", e.alias, true)
	e.decide("pe1", "Approved")
	// Without it again: no header.
	e.putService(false, []string{c.cfg.Creds.SubscriptionID}, []string{c.cfg.Creds.SubscriptionID})
	testkit.WaitFor(t, 30*time.Second, "no PROXY header through pe1 and pe2", func() error {
		for _, a := range []string{addr1, addr2} {
			if got, err := e.spread(client, a, 4, seesNATIP); err != nil || got["error"] > 0 {
				return fmt.Errorf("%s: %v %v", a, got, err)
			}
		}
		return nil
	})

	// A session of the kernel path lives through kill -9 and a restart
	// of privlinkd, and new ones connect while it is down.
	kept, err := e.dialIn(client, addr2)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.c.Close()
	e.d.stop(syscall.SIGKILL)
	// Stopped, privlinkd writes no more log: the relayed sessions' audit
	// lines are there, one per connection, as the kernel path's.
	e.relayAudit(e.cons.id("Microsoft.Network/privateEndpoints", "pe1"), addr1)
	if err := kept.w("while down"); err != nil {
		t.Errorf("the session while privlinkd is down: %v", err)
	}
	if got, _ := e.spread(client, addr2, 4, nil); got["error"] != 0 {
		t.Errorf("new connections while privlinkd is down: %v", got)
	}
	e.d.start()
	if err := kept.w("after restart"); err != nil {
		t.Errorf("the session after the restart: %v", err)
	}
	testkit.WaitFor(t, 60*time.Second, "both endpoints after the restart", func() error {
		for _, a := range []string{addr1, addr2} {
			if got, err := e.spread(client, a, 8, seesNATIP); err != nil || got["error"] > 0 {
				return fmt.Errorf("%s: %v %v", a, got, err)
			}
		}
		return nil
	})
	// Deleting the endpoint ends its session too.
	p, err := c.pes.BeginDelete(ctx(t), c.rg, "pe2", nil)
	if err == nil {
		_, err = p.PollUntilDone(ctx(t), pollOpts)
	}
	if err != nil {
		t.Fatal(err)
	}
	_ = kept.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := kept.r.ReadString('\n'); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the session through pe2 after its deletion: %v, want a reset", err)
	}

	// Deleting the service: its endpoints show Disconnected, their
	// sessions end, and only the pool's members keep its load balancer.
	last, err := e.dialIn(client, addr1)
	if err != nil {
		t.Fatal(err)
	}
	defer last.c.Close()
	dp, err := e.services.BeginDelete(ctx(t), "fab", "svc", nil)
	if err == nil {
		_, err = dp.PollUntilDone(ctx(t), pollOpts)
	}
	if err != nil {
		t.Fatal(err)
	}
	_ = last.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := last.r.ReadString('\n'); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the session through pe1 after the service's deletion: %v, want a reset", err)
	}
	if got, err := c.pes.Get(ctx(t), c.rg, "pe1", nil); err != nil || status(got.PrivateEndpoint) != "Disconnected" {
		t.Errorf("pe1 after the service's deletion: %v %s, want Disconnected", err, status(got.PrivateEndpoint))
	}
	_, err = lbs.BeginDelete(ctx(t), "fab", "ilb", nil)
	if !errors.As(err, &re) || re.ErrorCode != "InUseBackendAddressPoolCannotBeDeleted" {
		t.Errorf("deleting the load balancer once its service is gone: %v, want only its pool's members to keep it", err)
	}
}
