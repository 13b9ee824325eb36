package e2e

import (
	"net/http"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/privlink/privlink/internal/testkit"
)

type dnsClients struct {
	zones   *armprivatedns.PrivateZonesClient
	links   *armprivatedns.VirtualNetworkLinksClient
	records *armprivatedns.RecordSetsClient
}

func newDNSClients(t *testing.T, d *daemon) dnsClients {
	f, err := armprivatedns.NewClientFactory(d.creds.SubscriptionID, d.cfg.Credential, d.opts())
	if err != nil {
		t.Fatal(err)
	}
	return dnsClients{f.NewPrivateZonesClient(), f.NewVirtualNetworkLinksClient(), f.NewRecordSetsClient()}
}

const plZone = "privatelink.postgres.database.azure.com"

func testPrivateDNS(t *testing.T, d *daemon) {
	c := ctx(t)
	z := newDNSClients(t, d)
	createGroup(t, d, "dns")
	for _, name := range []string{plZone, "contoso.internal", "a.example", "b.example"} {
		p, err := z.zones.BeginCreateOrUpdate(c, "dns", name, armprivatedns.PrivateZone{Location: ptr("Global")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		zone, err := p.PollUntilDone(c, pollOpts)
		if err != nil {
			t.Fatal(err)
		}
		if *zone.Location != "global" || *zone.Properties.NumberOfRecordSets != 1 {
			t.Errorf("zone %s: location %s, %d record sets (want the SOA)", name, *zone.Location, *zone.Properties.NumberOfRecordSets)
		}
	}
	// Paging through zones two at a time.
	pages, total := 0, 0
	for pg := z.zones.NewListByResourceGroupPager("dns", &armprivatedns.PrivateZonesClientListByResourceGroupOptions{Top: ptr[int32](2)}); pg.More(); {
		p, err := pg.NextPage(c)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		total += len(p.Value)
	}
	if pages != 2 || total != 4 {
		t.Errorf("zones with $top=2: %d pages, %d zones", pages, total)
	}

	// Link the privatelink zone to vnet1 (from the network test).
	vnetID := "/subscriptions/" + d.creds.SubscriptionID + "/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/vnet1"
	lp, err := z.links.BeginCreateOrUpdate(c, "dns", plZone, "vnet1-link", armprivatedns.VirtualNetworkLink{Location: ptr("global"),
		Properties: &armprivatedns.VirtualNetworkLinkProperties{VirtualNetwork: &armprivatedns.SubResource{ID: &vnetID}, RegistrationEnabled: ptr(false)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	link, err := lp.PollUntilDone(c, pollOpts)
	if err != nil {
		t.Fatal(err)
	}
	if *link.Properties.VirtualNetworkLinkState != armprivatedns.VirtualNetworkLinkStateCompleted {
		t.Errorf("link state %v", *link.Properties.VirtualNetworkLinkState)
	}
	missing := "/subscriptions/" + d.creds.SubscriptionID + "/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/nope"
	_, err = z.links.BeginCreateOrUpdate(c, "dns", "contoso.internal", "bad", armprivatedns.VirtualNetworkLink{Location: ptr("global"),
		Properties: &armprivatedns.VirtualNetworkLinkProperties{VirtualNetwork: &armprivatedns.SubResource{ID: &missing}}}, nil)
	if err == nil {
		t.Error("a link to a missing virtual network was accepted")
	}

	// Record sets: an A record as a zone group writes it, and a CNAME.
	a, err := z.records.CreateOrUpdate(c, "dns", plZone, armprivatedns.RecordTypeA, "srv1", armprivatedns.RecordSet{Properties: &armprivatedns.RecordSetProperties{
		TTL: ptr[int64](10), ARecords: []*armprivatedns.ARecord{{IPv4Address: ptr("10.0.1.5")}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *a.Properties.Fqdn != "srv1."+plZone+"." {
		t.Errorf("fqdn = %s", *a.Properties.Fqdn)
	}
	if _, err := z.records.CreateOrUpdate(c, "dns", plZone, armprivatedns.RecordTypeCNAME, "alias", armprivatedns.RecordSet{Properties: &armprivatedns.RecordSetProperties{
		TTL: ptr[int64](60), CnameRecord: &armprivatedns.CnameRecord{Cname: ptr("srv1." + plZone)}}}, nil); err != nil {
		t.Fatal(err)
	}
	// ETags: a stale If-Match and If-None-Match on an existing set fail.
	_, err = z.records.CreateOrUpdate(c, "dns", plZone, armprivatedns.RecordTypeA, "srv1", armprivatedns.RecordSet{Properties: &armprivatedns.RecordSetProperties{
		TTL: ptr[int64](10), ARecords: []*armprivatedns.ARecord{{IPv4Address: ptr("10.0.1.6")}}}}, &armprivatedns.RecordSetsClientCreateOrUpdateOptions{IfMatch: ptr(`"stale"`)})
	testkit.WantARMError(t, err, http.StatusPreconditionFailed, "PreconditionFailed")
	_, err = z.records.CreateOrUpdate(c, "dns", plZone, armprivatedns.RecordTypeA, "srv1", armprivatedns.RecordSet{Properties: &armprivatedns.RecordSetProperties{
		TTL: ptr[int64](10), ARecords: []*armprivatedns.ARecord{{IPv4Address: ptr("10.0.1.6")}}}}, &armprivatedns.RecordSetsClientCreateOrUpdateOptions{IfNoneMatch: ptr("*")})
	testkit.WantARMError(t, err, http.StatusPreconditionFailed, "PreconditionFailed")
	if _, err := z.records.CreateOrUpdate(c, "dns", plZone, armprivatedns.RecordTypeA, "srv1", armprivatedns.RecordSet{Properties: &armprivatedns.RecordSetProperties{
		TTL: ptr[int64](10), ARecords: []*armprivatedns.ARecord{{IPv4Address: ptr("10.0.1.5")}, {IPv4Address: ptr("10.0.1.6")}}}},
		&armprivatedns.RecordSetsClientCreateOrUpdateOptions{IfMatch: a.Etag}); err != nil {
		t.Errorf("update with the current ETag: %v", err)
	}
	// A CNAME cannot sit beside other records of the same name.
	_, err = z.records.CreateOrUpdate(c, "dns", plZone, armprivatedns.RecordTypeCNAME, "srv1", armprivatedns.RecordSet{Properties: &armprivatedns.RecordSetProperties{
		TTL: ptr[int64](10), CnameRecord: &armprivatedns.CnameRecord{Cname: ptr("x.example")}}}, nil)
	if err == nil {
		t.Error("a CNAME beside an A record of the same name was accepted")
	}
	all := 0
	for pg := z.records.NewListPager("dns", plZone, nil); pg.More(); {
		p, err := pg.NextPage(c)
		if err != nil {
			t.Fatal(err)
		}
		all += len(p.Value)
	}
	if all != 3 { // SOA, A srv1, CNAME alias
		t.Errorf("record sets in zone = %d, want 3", all)
	}
	// A zone with links cannot be deleted.
	_, err = z.zones.BeginDelete(c, "dns", plZone, nil)
	if err == nil {
		t.Error("deleting a zone with virtual network links was accepted")
	}
	dp, err := z.zones.BeginDelete(c, "dns", "b.example", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
}

// checkPrivateDNSSurvives asserts the state testPrivateDNS left behind.
func checkPrivateDNSSurvives(t *testing.T, d *daemon) {
	t.Helper()
	z := newDNSClients(t, d)
	rs, err := z.records.Get(ctx(t), "dns", plZone, armprivatedns.RecordTypeA, "srv1", nil)
	if err != nil || len(rs.Properties.ARecords) != 2 {
		t.Fatalf("A srv1 after restart: %v", err)
	}
	if _, err := z.links.Get(ctx(t), "dns", plZone, "vnet1-link", nil); err != nil {
		t.Errorf("link after restart: %v", err)
	}
	_, err = z.zones.Get(ctx(t), "dns", "b.example", nil)
	testkit.WantARMError(t, err, http.StatusNotFound, "ResourceNotFound")
}
