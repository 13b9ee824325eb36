package datapath

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/arm/armtest"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/names"
	"github.com/privlink/privlink/internal/provider/network"
	"github.com/privlink/privlink/internal/provider/postgres"
	"github.com/privlink/privlink/internal/provider/privatedns"
	"github.com/privlink/privlink/internal/provider/privatelink"
	"github.com/privlink/privlink/internal/provider/resources"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/store/bolt"
)

// TestPlannerDesired: the Desired data path of what the providers' handlers
// stored (driven by the SDK's clients; no controller runs, so operations
// finish at once): every network has a router, an Approved endpoint to a
// running server is a translation in its network's router with a SNAT
// address of its own, kept under dp/snat/ and stable from pass to pass,
// an endpoint awaiting approval is described but not translated, each
// server has a public path with its firewall rules; a deleted endpoint's
// SNAT address is freed, and a stopped server is translated by nothing.
func TestPlannerDesired(t *testing.T) {
	ctx, st, srv := plannerStore(t, func(st store.Store) []*arm.ResourceType {
		var all []*arm.ResourceType
		all = append(all, network.New(st, network.WithTargets(privatelink.NewKinds(postgres.Kind))).Types()...)
		all = append(all, privatedns.New(st).Types()...)
		return append(all, postgres.New(st, postgres.WithVersions([]string{"15.18"})).Types()...)
	})
	sub := armtest.Subscription
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	id := func(typ, name string) arm.ResourceID {
		t.Helper()
		r, err := arm.ParseID(fmt.Sprintf("/subscriptions/%s/resourceGroups/rg/providers/%s/%s", sub, typ, name))
		must(err)
		return r
	}
	nf, err := armnetwork.NewClientFactory(sub, srv.Cred, srv.Options)
	must(err)
	pf, err := pg.NewClientFactory(sub, srv.Cred, srv.Options)
	must(err)
	for _, v := range []string{"vnet", "empty"} {
		p, err := nf.NewVirtualNetworksClient().BeginCreateOrUpdate(ctx, "rg", v, armnetwork.VirtualNetwork{Location: to.Ptr("westeurope"),
			Properties: &armnetwork.VirtualNetworkPropertiesFormat{
				AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{to.Ptr("10.0.0.0/16")}},
				Subnets:      []*armnetwork.Subnet{{Name: to.Ptr("endpoints"), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr("10.0.2.0/24")}}}}}, nil)
		must(done(ctx, p, err))
	}
	sp, err := pf.NewServersClient().BeginCreateOrUpdate(ctx, "rg", "srv1", pg.Server{
		Location: to.Ptr("westeurope"),
		SKU:      &pg.SKU{Name: to.Ptr("Standard_B1ms"), Tier: to.Ptr(pg.SKUTierBurstable)},
		Properties: &pg.ServerProperties{Version: to.Ptr(pg.PostgresMajorVersionFifteen), AdministratorLogin: to.Ptr("pgadmin"),
			AdministratorLoginPassword: to.Ptr("Sup3r-secret-pw"), Storage: &pg.Storage{StorageSizeGB: to.Ptr[int32](32)}},
	}, nil)
	must(done(ctx, sp, err))
	fp, err := pf.NewFirewallRulesClient().BeginCreateOrUpdate(ctx, "rg", "srv1", "office", pg.FirewallRule{
		Properties: &pg.FirewallRuleProperties{StartIPAddress: to.Ptr("198.18.7.0"), EndIPAddress: to.Ptr("198.18.7.255")}}, nil)
	must(done(ctx, fp, err))
	srvID := id("Microsoft.DBforPostgreSQL/flexibleServers", "srv1")
	des, ok, err := postgres.LoadDesired(arm.ReadOnly(ctx, st), srvID)
	if err != nil || !ok || !des.Running {
		t.Fatalf("desired state of srv1: %+v %v %v", des, ok, err)
	}
	endpoint := func(name string, manual bool) {
		t.Helper()
		conn := []*armnetwork.PrivateLinkServiceConnection{{Name: to.Ptr(name), Properties: &armnetwork.PrivateLinkServiceConnectionProperties{
			PrivateLinkServiceID: to.Ptr(srvID.String()), GroupIDs: []*string{to.Ptr(postgres.GroupID)}}}}
		props := &armnetwork.PrivateEndpointProperties{Subnet: &armnetwork.Subnet{ID: to.Ptr(id("Microsoft.Network/virtualNetworks", "vnet").String() + "/subnets/endpoints")}}
		if manual {
			props.ManualPrivateLinkServiceConnections = conn
		} else {
			props.PrivateLinkServiceConnections = conn
		}
		p, err := nf.NewPrivateEndpointsClient().BeginCreateOrUpdate(ctx, "rg", name, armnetwork.PrivateEndpoint{Location: to.Ptr("westeurope"), Properties: props}, nil)
		must(done(ctx, p, err))
	}
	endpoint("pe1", false)
	endpoint("pe2", false)
	endpoint("pe3", true) // awaits the server owner's approval

	planner := NewPlanner(st)
	want, err := planner.Desired(ctx)
	must(err)
	vnet, empty := names.Key(id("Microsoft.Network/virtualNetworks", "vnet")), names.Key(id("Microsoft.Network/virtualNetworks", "empty"))
	if len(want.Networks) != 2 || want.Networks[vnet] == nil || want.Networks[empty] == nil || len(want.Networks[empty].Endpoints) != 0 {
		t.Fatalf("routers %+v, want vnet's and empty's (no translations)", want.Networks)
	}
	snats := snatRecords(t, ctx, st)
	byName := map[string]fabric.EndpointNAT{}
	for _, e := range want.Networks[vnet].Endpoints {
		byName[e.Name] = e
	}
	seen := map[netip.Addr]bool{}
	for _, name := range []string{"pe1", "pe2"} {
		pe := id("Microsoft.Network/privateEndpoints", name)
		e, ok := byName[names.Key(pe)]
		if !ok {
			t.Fatalf("%s is not translated in vnet's router: %+v", name, want.Networks[vnet].Endpoints)
		}
		if !e.Endpoint.IsValid() || !slices.Equal(e.Ports, []uint16{pgPort}) || e.Service != names.Key(srvID) || e.ServiceAddr != des.ServiceAddr {
			t.Errorf("%s: %+v, want its address, ports [%d], to srv1 at %s", name, e, pgPort, des.ServiceAddr)
		}
		if !snatPrefix.Contains(e.SNAT) || seen[e.SNAT] || snats[strings.ToLower(pe.String())] != e.SNAT {
			t.Errorf("%s: SNAT %s (stored %v), want its own address in %s, kept in %s/", name, e.SNAT, snats, snatPrefix, snatKey)
		}
		seen[e.SNAT] = true
	}
	if len(byName) != 2 || len(snats) != 2 {
		t.Errorf("translations %+v, SNAT records %v: want pe1's and pe2's only", want.Networks[vnet].Endpoints, snats)
	}
	pubs := want.Internet.Public
	if len(pubs) != 1 || pubs[0].Name != names.Key(srvID) || pubs[0].Public != des.PublicAddr || !pubs[0].Enabled ||
		len(pubs[0].Allowed) != 1 || pubs[0].Allowed[0] != (fabric.AddrRange{From: netip.MustParseAddr("198.18.7.0"), To: netip.MustParseAddr("198.18.7.255")}) {
		t.Errorf("public paths %+v, want srv1's, enabled, from 198.18.7.0-198.18.7.255", pubs)
	}
	programmed := map[string]bool{}
	for _, tr := range want.Snapshot.Translations {
		if tr.Kind == KindEndpoint {
			programmed[tr.EndpointID[strings.LastIndex(tr.EndpointID, "/")+1:]] = tr.Programmed
			if tr.ServerName != "srv1" || tr.Connection == "" || tr.NetworkID == "" || tr.Programmed != tr.SNAT.IsValid() {
				t.Errorf("snapshot of %s: %+v", tr.EndpointID, tr)
			}
		}
	}
	if len(programmed) != 3 || !programmed["pe1"] || !programmed["pe2"] || programmed["pe3"] {
		t.Errorf("endpoints in the snapshot, programmed: %v; want pe1 and pe2 programmed, pe3 not", programmed)
	}
	for key, r := range want.Reports(nil) {
		if r.State != EndpointInPlace || r.Rev == 0 {
			t.Errorf("report of %s with nothing converged: %+v, want in place at the revision read", key, r)
		}
	}

	// Another pass over the same store: the same routers, the same SNAT.
	again, err := planner.Desired(ctx)
	must(err)
	if a, b := want.Networks[vnet].Fingerprint(), again.Networks[vnet].Fingerprint(); a != b {
		t.Errorf("a second pass changed vnet's router:\n%s\n%s", a, b)
	}
	if a, b := want.Internet.Fingerprint(), again.Internet.Fingerprint(); a != b {
		t.Errorf("a second pass changed the internet router:\n%s\n%s", a, b)
	}

	// pgbouncer.enabled adds 6432 to the server's translations, and
	// taking it back removes it.
	for _, c := range []struct {
		value string
		want  []uint16
	}{{"true", []uint16{pgPort, bouncerPort}}, {"false", []uint16{pgPort}}} {
		cp, err := pf.NewConfigurationsClient().BeginPut(ctx, "rg", "srv1", "pgbouncer.enabled", pg.ConfigurationForUpdate{
			Properties: &pg.ConfigurationProperties{Value: to.Ptr(c.value), Source: to.Ptr("user-override")}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		// The poller waits for a controller this test does not run: the
		// Desired record is written when the PUT is answered.
		_ = cp
		d, err := planner.Desired(ctx)
		must(err)
		for _, e := range d.Networks[vnet].Endpoints {
			if !slices.Equal(e.Ports, c.want) {
				t.Errorf("pgbouncer.enabled %s: %s has ports %v, want %v", c.value, e.Name, e.Ports, c.want)
			}
		}
		if pubs := d.Internet.Public; len(pubs) != 1 || !slices.Equal(pubs[0].Ports, c.want) {
			t.Errorf("pgbouncer.enabled %s: public paths %+v, want ports %v", c.value, pubs, c.want)
		}
	}

	// pe1 goes: its SNAT address is freed, pe2 keeps its own.
	dp, err := nf.NewPrivateEndpointsClient().BeginDelete(ctx, "rg", "pe1", nil)
	must(done(ctx, dp, err))
	after, err := planner.Desired(ctx)
	must(err)
	snats2 := snatRecords(t, ctx, st)
	pe2 := strings.ToLower(id("Microsoft.Network/privateEndpoints", "pe2").String())
	if len(snats2) != 1 || snats2[pe2] != snats[pe2] || len(after.Networks[vnet].Endpoints) != 1 {
		t.Errorf("after pe1's deletion: SNAT records %v (before %v), translations %+v; want pe2's alone, unchanged", snats2, snats, after.Networks[vnet].Endpoints)
	}

	// srv1 stops: nothing translates toward it, its public path is closed.
	stop, err := pf.NewServersClient().BeginStop(ctx, "rg", "srv1", nil)
	must(done(ctx, stop, err))
	stopped, err := planner.Desired(ctx)
	must(err)
	if n := len(stopped.Networks[vnet].Endpoints); n != 0 || len(stopped.Internet.Public) != 1 || stopped.Internet.Public[0].Enabled {
		t.Errorf("srv1 stopped: %d translations, public paths %+v; want none and srv1's closed", n, stopped.Internet.Public)
	}
	if n := len(snatRecords(t, ctx, st)); n != 0 {
		t.Errorf("srv1 stopped: %d SNAT records left, want none", n)
	}
}

// done polls a long-running operation until it is done.
// plannerStore is a store, served through the ARM handlers of the
// resources provider and those types gives, with resource group "rg"
// made; the context ends with the test (at most 2 minutes).
func plannerStore(t *testing.T, types func(store.Store) []*arm.ResourceType) (context.Context, store.Store, *armtest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	st, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var all []*arm.ResourceType
	all = append(all, resources.New(st, func() []*arm.ResourceType { return all }).Types()...)
	all = append(all, types(st)...)
	srv := armtest.NewServer(t, st, all...)
	groups, err := armresources.NewResourceGroupsClient(armtest.Subscription, srv.Cred, srv.Options)
	if err == nil {
		_, err = groups.CreateOrUpdate(ctx, "rg", armresources.ResourceGroup{Location: to.Ptr("westeurope")}, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return ctx, st, srv
}

func done[T any](ctx context.Context, p *runtime.Poller[T], err error) error {
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: time.Second})
	return err
}

// snatRecords returns the stored SNAT addresses, by lower-cased endpoint ID.
func snatRecords(t *testing.T, ctx context.Context, st store.Store) map[string]netip.Addr {
	t.Helper()
	kvs, _, err := st.List(ctx, snatKey+"/")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]netip.Addr{}
	for _, kv := range kvs {
		out[strings.TrimPrefix(kv.Key, snatKey+"/")] = netip.MustParseAddr(string(kv.Value))
	}
	return out
}
