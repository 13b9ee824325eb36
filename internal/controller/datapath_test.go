package controller

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/arm/armtest"
	"github.com/privlink/privlink/internal/dns"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/provider/network"
	"github.com/privlink/privlink/internal/provider/postgres"
	"github.com/privlink/privlink/internal/provider/privatedns"
	"github.com/privlink/privlink/internal/provider/privatelink"
	"github.com/privlink/privlink/internal/provider/resources"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/store/bolt"
	"github.com/privlink/privlink/internal/testkit"
)

// dpEnv runs the controllers that materialize private endpoints (network,
// data path, zone groups) over a real fabric, behind the providers'
// handlers, which the official SDK clients drive through armtest. There
// is no PostgreSQL: a server's namespace is made by the test, with a TCP
// service in it that greets with the server's name.
type dpEnv struct {
	t   *testing.T
	ctx context.Context
	st  store.Store
	fab *fabric.Fabric
	log *syncBuffer

	groups  *armresources.ResourceGroupsClient
	vnets   *armnetwork.VirtualNetworksClient
	nics    *armnetwork.InterfacesClient
	pes     *armnetwork.PrivateEndpointsClient
	zgs     *armnetwork.PrivateDNSZoneGroupsClient
	zones   *armprivatedns.PrivateZonesClient
	records *armprivatedns.RecordSetsClient
	servers *pg.ServersClient
}

// syncBuffer is a log sink safe for the controllers' goroutines; the test
// shows it when it fails.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const dpPoll = time.Second // the SDK's minimum; pollers follow Retry-After

func newDPEnv(t *testing.T) *dpEnv {
	t.Helper()
	testkit.RequireRoot(t, "it creates network namespaces")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	st, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &dpEnv{t: t, ctx: ctx, st: st, log: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("controllers' log:\n%s", e.log.String())
		}
	})
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	if e.fab, err = fabric.New("plc-"+hex.EncodeToString(b[:])+"-", log.With("component", "fabric")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.fab.RemoveStale(func(string) bool { return false }); err != nil {
			t.Errorf("remove namespaces: %v", err)
		}
	})

	var all []*arm.ResourceType
	all = append(all, resources.New(st, func() []*arm.ResourceType { return all }).Types()...)
	all = append(all, network.New(st, network.WithMaterializedNICs(), network.WithTargets(privatelink.NewKinds(postgres.Kind))).Types()...)
	all = append(all, privatedns.New(st).Types()...)
	all = append(all, postgres.New(st, postgres.WithVersions([]string{"15.18"})).Types()...)
	srv := armtest.NewServer(t, st, all...)

	// The controllers privlinkd runs for endpoints, wired as it wires them.
	dp := NewDatapath(st, e.fab, nil, log.With("component", "datapath")) // no PostgreSQL: no backends to terminate
	nw := NewNetwork(st, e.fab, dns.NewServer(dns.NewCatalog(), log), log.With("component", "network"))
	zg := NewZoneGroups(st, log.With("component", "dns-zone-groups"))
	nw.FollowDatapath(dp)
	zg.FollowDatapath(dp)
	cctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{nw.Run, dp.Run, zg.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(cctx); err != nil {
				t.Errorf("controller: %v", err)
			}
		}()
	}
	t.Cleanup(func() { stop(); wg.Wait() })

	sub, cred, opts := armtest.Subscription, srv.Cred, srv.Options
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	var err1 error
	e.groups, err1 = armresources.NewResourceGroupsClient(sub, cred, opts)
	must(err1)
	nf, err := armnetwork.NewClientFactory(sub, cred, opts)
	must(err)
	e.vnets, e.nics, e.pes, e.zgs = nf.NewVirtualNetworksClient(), nf.NewInterfacesClient(), nf.NewPrivateEndpointsClient(), nf.NewPrivateDNSZoneGroupsClient()
	df, err := armprivatedns.NewClientFactory(sub, cred, opts)
	must(err)
	e.zones, e.records = df.NewPrivateZonesClient(), df.NewRecordSetsClient()
	pf, err := pg.NewClientFactory(sub, cred, opts)
	must(err)
	e.servers = pf.NewServersClient()
	return e
}

func (e *dpEnv) id(typ, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/rg/providers/%s/%s", armtest.Subscription, typ, name)
}

// wait polls a long-running operation's poller until it is done.
func wait[T any](e *dpEnv, p *runtime.Poller[T], err error) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	return p.PollUntilDone(e.ctx, &runtime.PollUntilDoneOptions{Frequency: dpPoll})
}

// setup makes group rg with network vnet (subnets clients and endpoints),
// the privatelink zone, a NIC client, and server srv1 whose namespace the
// test makes and serves. It returns the client NIC's namespace and the
// router's.
func (e *dpEnv) setup() (client, router string) {
	t := e.t
	if _, err := e.groups.CreateOrUpdate(e.ctx, "rg", armresources.ResourceGroup{Location: to.Ptr("westeurope")}, nil); err != nil {
		t.Fatal(err)
	}
	vnet := armnetwork.VirtualNetwork{Location: to.Ptr("westeurope"), Properties: &armnetwork.VirtualNetworkPropertiesFormat{
		AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{to.Ptr("10.0.0.0/16")}},
		Subnets: []*armnetwork.Subnet{
			{Name: to.Ptr("clients"), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr("10.0.1.0/24")}},
			{Name: to.Ptr("endpoints"), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr("10.0.2.0/24")}},
		}}}
	p, err := e.vnets.BeginCreateOrUpdate(e.ctx, "rg", "vnet", vnet, nil)
	if _, err := wait(e, p, err); err != nil {
		t.Fatal(err)
	}
	zp, err := e.zones.BeginCreateOrUpdate(e.ctx, "rg", "privatelink.postgres.database.azure.com", armprivatedns.PrivateZone{Location: to.Ptr("global")}, nil)
	if _, err := wait(e, zp, err); err != nil {
		t.Fatal(err)
	}
	nic := armnetwork.Interface{Location: to.Ptr("westeurope"), Properties: &armnetwork.InterfacePropertiesFormat{
		IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{Name: to.Ptr("ipconfig1"), Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
			Subnet: &armnetwork.Subnet{ID: to.Ptr(e.id("Microsoft.Network/virtualNetworks", "vnet") + "/subnets/clients")}}}}}}
	np, err := e.nics.BeginCreateOrUpdate(e.ctx, "rg", "client", nic, nil)
	if _, err := wait(e, np, err); err != nil {
		t.Fatal(err)
	}
	sp, err := e.servers.BeginCreateOrUpdate(e.ctx, "rg", "srv1", pg.Server{
		Location: to.Ptr("westeurope"),
		SKU:      &pg.SKU{Name: to.Ptr("Standard_B1ms"), Tier: to.Ptr(pg.SKUTierBurstable)},
		Properties: &pg.ServerProperties{Version: to.Ptr(pg.PostgresMajorVersionFifteen), AdministratorLogin: to.Ptr("pgadmin"),
			AdministratorLoginPassword: to.Ptr("Sup3r-secret-pw"), Storage: &pg.Storage{StorageSizeGB: to.Ptr[int32](32)}},
	}, nil)
	if _, err := wait(e, sp, err); err != nil {
		t.Fatal(err)
	}
	srvID, err := arm.ParseID(e.id("Microsoft.DBforPostgreSQL/flexibleServers", "srv1"))
	if err != nil {
		t.Fatal(err)
	}
	des, ok, err := postgres.LoadDesired(arm.ReadOnly(e.ctx, e.st), srvID)
	if err != nil || !ok {
		t.Fatalf("desired state of srv1: %v %v", ok, err)
	}
	if err := e.fab.EnsureService(fabric.ServiceSpec{ID: FabricID(srvID), Address: netip.PrefixFrom(des.ServiceAddr, 32)}); err != nil {
		t.Fatal(err)
	}
	ln, err := e.fab.ListenTCP(e.fab.NamespaceName(fabric.KindService, FabricID(srvID)), netip.AddrPortFrom(des.ServiceAddr, pgPort).String())
	if err != nil {
		t.Fatal(err)
	}
	testkit.Serve(t, ln, func(c net.Conn) {
		fmt.Fprintln(c, "srv1")
		c.Close()
	})
	vnetID, _ := arm.ParseID(e.id("Microsoft.Network/virtualNetworks", "vnet"))
	nicID, _ := arm.ParseID(e.id("Microsoft.Network/networkInterfaces", "client"))
	return e.fab.NamespaceName(fabric.KindNIC, FabricID(nicID)), e.fab.NamespaceName(fabric.KindNetwork, FabricID(vnetID))
}

// createEndpoint creates private endpoint name to srv1 in the endpoints
// subnet (auto-approved) and returns its poller's error.
func (e *dpEnv) createEndpoint(name string) error {
	pe := armnetwork.PrivateEndpoint{Location: to.Ptr("westeurope"), Properties: &armnetwork.PrivateEndpointProperties{
		Subnet: &armnetwork.Subnet{ID: to.Ptr(e.id("Microsoft.Network/virtualNetworks", "vnet") + "/subnets/endpoints")},
		PrivateLinkServiceConnections: []*armnetwork.PrivateLinkServiceConnection{{Name: to.Ptr(name), Properties: &armnetwork.PrivateLinkServiceConnectionProperties{
			PrivateLinkServiceID: to.Ptr(e.id("Microsoft.DBforPostgreSQL/flexibleServers", "srv1")), GroupIDs: []*string{to.Ptr("postgresqlServer")}}}},
	}}
	p, err := e.pes.BeginCreateOrUpdate(e.ctx, "rg", name, pe, nil)
	_, err = wait(e, p, err)
	return err
}

// endpoint returns the endpoint's provisioningState and private address.
func (e *dpEnv) endpoint(name string) (armnetwork.ProvisioningState, string) {
	e.t.Helper()
	pe, err := e.pes.Get(e.ctx, "rg", name, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	var addr string
	if cs := pe.Properties.CustomDNSConfigs; len(cs) > 0 && len(cs[0].IPAddresses) > 0 {
		addr = *cs[0].IPAddresses[0]
	}
	return *pe.Properties.ProvisioningState, addr
}

// aRecord returns the addresses of the A record srv1 in the privatelink
// zone (none when there is no such record).
func (e *dpEnv) aRecord() []string {
	e.t.Helper()
	rs, err := e.records.Get(e.ctx, "rg", "privatelink.postgres.database.azure.com", armprivatedns.RecordTypeA, "srv1", nil)
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, a := range rs.Properties.ARecords {
		out = append(out, *a.IPv4Address)
	}
	return out
}

// greet connects from namespace ns to addr:5432 and returns the greeting.
func (e *dpEnv) greet(ns, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	c, err := e.fab.DialContext(ctx, ns, "tcp", net.JoinHostPort(addr, "5432"))
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestEndpointWhoseProgrammingFails: while the kernel refuses its router's
// changes (the fabric's fault hook), a new endpoint's operation ends Failed
// with an error that says why, the endpoint reports provisioningState
// Failed, takes no connection, and its zone group publishes no A record.
// Once the kernel takes the change (the data path retries), the endpoint
// turns Succeeded, takes connections, and its address is published.
func TestEndpointWhoseProgrammingFails(t *testing.T) {
	t.Parallel()
	e := newDPEnv(t)
	client, router := e.setup()
	if got, err := e.greet(client, "10.0.2.4"); err == nil {
		t.Fatalf("an endpoint address answered before any endpoint: %q", got)
	}
	refused := errors.New("refused by the test")
	e.fab.SetFaultHook(func(p fabric.FaultPoint, ns string) error {
		if ns == router && p == fabric.FaultProgram {
			return refused
		}
		return nil
	})
	t.Cleanup(func() { e.fab.SetFaultHook(nil) })

	err := e.createEndpoint("pe1")
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.ErrorCode != "PrivateEndpointDataPathFailed" || !strings.Contains(err.Error(), refused.Error()) {
		t.Errorf("endpoint whose programming fails: %v; want its operation Failed with PrivateEndpointDataPathFailed and the kernel's error", err)
	}
	state, addr := e.endpoint("pe1")
	if state != armnetwork.ProvisioningStateFailed || addr == "" {
		t.Errorf("endpoint after its failed operation: provisioningState %s, address %q; want Failed", state, addr)
	}
	if got, err := e.greet(client, addr); err == nil {
		t.Errorf("a connection through the endpoint whose programming failed got %q", got)
	}
	gp, err := e.zgs.BeginCreateOrUpdate(e.ctx, "rg", "pe1", "default", armnetwork.PrivateDNSZoneGroup{Properties: &armnetwork.PrivateDNSZoneGroupPropertiesFormat{
		PrivateDNSZoneConfigs: []*armnetwork.PrivateDNSZoneConfig{{Name: to.Ptr("pl"), Properties: &armnetwork.PrivateDNSZonePropertiesFormat{
			PrivateDNSZoneID: to.Ptr(e.id("Microsoft.Network/privateDnsZones", "privatelink.postgres.database.azure.com"))}}}}}, nil)
	if _, err := wait(e, gp, err); err != nil {
		t.Fatal(err)
	}
	// The zone group controller has looked at the endpoint once it says it
	// holds its address back; the record must not be there then.
	testkit.WaitFor(t, 30*time.Second, "the zone group controller holding pe1's address back", func() error {
		if !strings.Contains(e.log.String(), "not publishing its address") {
			return errors.New("no such log line yet")
		}
		return nil
	})
	if got := e.aRecord(); len(got) != 0 {
		t.Errorf("A record srv1 holds %q while pe1's translation is not in place", got)
	}

	// The kernel takes changes again: the data path's retry puts the
	// translation in place, and what waited for it follows.
	e.fab.SetFaultHook(nil)
	testkit.WaitFor(t, 60*time.Second, "pe1 in place", func() error {
		if state, _ := e.endpoint("pe1"); state != armnetwork.ProvisioningStateSucceeded {
			return fmt.Errorf("provisioningState %s", state)
		}
		if got := e.aRecord(); len(got) != 1 || got[0] != addr {
			return fmt.Errorf("A record srv1 %q, want %s", got, addr)
		}
		return nil
	})
	if got, err := e.greet(client, addr); err != nil || got != "srv1" {
		t.Errorf("a connection through pe1 once Succeeded: %q, %v", got, err)
	}
	if !strings.Contains(e.log.String(), "data path convergence failed; retrying") {
		t.Error("the refused change was not logged as an error")
	}
}

// TestEndpointStatuses: what a pass reports per endpoint from its routers'
// results: a translation the fabric names failed is Failed (or Pending
// when only a namespace is missing), a withdrawal held closed is in place,
// one that could not be held is Failed, a router not converged this pass
// is as it last converged (in place), a router or network not there yet
// is Pending for the endpoints that want a translation there.
func TestEndpointStatuses(t *testing.T) {
	id := func(typ, name string) arm.ResourceID {
		r, err := arm.ParseID(fmt.Sprintf("/subscriptions/s/resourceGroups/g/providers/%s/%s", typ, name))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	vnet := func(name string) arm.ResourceID { return id("Microsoft.Network/virtualNetworks", name) }
	pe := func(name string) arm.ResourceID { return id("Microsoft.Network/privateEndpoints", name) }
	srv := id("Microsoft.DBforPostgreSQL/flexibleServers", "srv1")
	networks := map[string]arm.ResourceID{}
	for _, n := range []string{"n1", "n2", "n3"} {
		networks[FabricID(vnet(n))] = vnet(n)
	}
	// pe "wanted/network": which endpoints want a translation, and where.
	cases := []struct {
		name, network string
		wanted        bool
	}{
		{"failed", "n1", true}, {"held", "n1", false}, {"open", "n1", false}, {"fine", "n1", true}, {"nosvc", "n1", true},
		{"quiet", "n2", true}, {"norouter", "n3", true}, {"rejected", "n3", false}, {"nonetwork", "n9", true},
	}
	revs := map[string]int64{strings.ToLower(pe("unknown").String()): 3}
	var infos []peInfo
	var eps []endpoint
	for i, c := range cases {
		p := pe(c.name)
		revs[strings.ToLower(p.String())] = int64(10 + i)
		infos = append(infos, peInfo{id: p, network: vnet(c.network), target: srv, approved: c.wanted})
		if c.wanted {
			eps = append(eps, endpoint{id: p, network: vnet(c.network)})
		}
	}
	kernel := errors.New("netlink: message too long")
	missing := fmt.Errorf("service: %w", fabric.ErrNotFound)
	results := map[string]error{
		FabricID(vnet("n1")): &fabric.TranslationError{
			Failed: map[string]error{FabricID(pe("failed")): kernel, FabricID(pe("open")): kernel, FabricID(pe("nosvc")): missing},
			Held:   []string{FabricID(pe("held"))},
			Err:    errors.Join(kernel, missing),
		},
		FabricID(vnet("n3")): fmt.Errorf("router: %w", fabric.ErrNotFound),
	}
	got := endpointStatuses(revs, infos, eps, networks, results)
	want := map[string]EndpointState{
		"failed": EndpointFailed, "held": EndpointInPlace, "open": EndpointFailed, "fine": EndpointInPlace, "nosvc": EndpointPending,
		"quiet": EndpointInPlace, "norouter": EndpointPending, "rejected": EndpointInPlace, "nonetwork": EndpointPending, "unknown": EndpointInPlace,
	}
	for name, state := range want {
		st, ok := got[strings.ToLower(pe(name).String())]
		if !ok || st.state != state || (state == EndpointFailed) != errors.Is(st.err, kernel) {
			t.Errorf("%s: %+v (listed %v), want %s", name, st, ok, state)
		}
	}
	if st := got[strings.ToLower(pe("fine").String())]; st.rev != 13 {
		t.Errorf("fine: revision %d, want the one the pass read (13)", st.rev)
	}
}

// TestOnlyPending: a router's result waits for a namespace only when every
// error in it is a missing namespace; one that also failed otherwise (a
// revocation, a kernel refusal) is a failure, logged and retried.
func TestOnlyPending(t *testing.T) {
	missing := fmt.Errorf("service pg1: %w", fabric.ErrNotFound)
	other := errors.New("conntrack: operation not permitted")
	for _, c := range []struct {
		name string
		te   fabric.TranslationError
		want bool
	}{
		{"namespace missing", fabric.TranslationError{Failed: map[string]error{"a": missing}, Err: errors.Join(missing)}, true},
		{"wrapped join", fabric.TranslationError{Failed: map[string]error{"a": missing}, Err: fmt.Errorf("links: %w", errors.Join(missing, missing))}, true},
		{"and a failed revocation", fabric.TranslationError{Failed: map[string]error{"a": missing}, Err: errors.Join(missing, other)}, false},
		{"wrapped join with another", fabric.TranslationError{Failed: map[string]error{"a": missing}, Err: fmt.Errorf("x: %w", errors.Join(missing, other))}, false},
		{"kernel", fabric.TranslationError{Failed: map[string]error{"a": other}, Err: other}, false},
		{"held", fabric.TranslationError{Failed: map[string]error{"a": missing}, Held: []string{"b"}, Err: missing}, false},
		{"nothing failed", fabric.TranslationError{Err: other}, false},
	} {
		if got := onlyPending(&c.te); got != c.want {
			t.Errorf("%s: onlyPending %v, want %v", c.name, got, c.want)
		}
	}
}
