package privatedns

import (
	"net/http"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/testkit"
)

func TestZoneCRUD(t *testing.T) {
	e := newEnv(t)
	const name = "privatelink.postgres.database.azure.com"
	z, err := e.putZone("rg1", name, armprivatedns.PrivateZone{Location: ptr("Global"), Tags: map[string]*string{"env": ptr("test")}}, nil)
	if err != nil {
		t.Fatalf("create zone: %v", err)
	}
	if deref(z.Name) != name || deref(z.Type) != ZoneType || deref(z.Location) != "global" || deref(z.ID) != e.zoneID("rg1", name).String() {
		t.Fatalf("zone envelope: id %q name %q type %q location %q", deref(z.ID), deref(z.Name), deref(z.Type), deref(z.Location))
	}
	if deref(z.Tags["env"]) != "test" || deref(z.Etag) == "" {
		t.Fatalf("tags %v etag %q", z.Tags, deref(z.Etag))
	}
	p := deref(z.Properties)
	if deref(p.MaxNumberOfRecordSets) != 25000 || deref(p.MaxNumberOfVirtualNetworkLinks) != 1000 ||
		deref(p.MaxNumberOfVirtualNetworkLinksWithRegistration) != 100 || deref(p.InternalID) == "" ||
		deref(p.ProvisioningState) != armprivatedns.ProvisioningStateSucceeded {
		t.Fatalf("zone properties: %+v", p)
	}
	if got := counts(z); got != [3]int64{1, 0, 0} {
		t.Fatalf("new zone counts %v, want one record set (the SOA), no links", got)
	}

	// The SOA record set "@" comes with the zone.
	soa, err := e.records.Get(e.ctx, "rg1", name, armprivatedns.RecordTypeSOA, "@", nil)
	if err != nil {
		t.Fatalf("get SOA: %v", err)
	}
	sp := deref(soa.Properties)
	if s := deref(sp.SoaRecord); deref(s.Host) != "azureprivatedns.net" || deref(s.Email) != "azureprivatedns-host.microsoft.com" ||
		deref(s.RefreshTime) != 3600 || deref(s.RetryTime) != 300 || deref(s.ExpireTime) != 2419200 || deref(s.MinimumTTL) != 10 || deref(s.SerialNumber) != 1 {
		t.Fatalf("SOA record: %+v", s)
	}
	if deref(sp.TTL) != 3600 || deref(sp.Fqdn) != name+"." || deref(soa.Name) != "@" || deref(soa.Type) != ZoneType+"/SOA" {
		t.Fatalf("SOA record set: name %q type %q ttl %d fqdn %q", deref(soa.Name), deref(soa.Type), deref(sp.TTL), deref(sp.Fqdn))
	}
	// SOA can be updated (host stays Azure's) but not deleted.
	up, err := e.records.CreateOrUpdate(e.ctx, "rg1", name, armprivatedns.RecordTypeSOA, "@", armprivatedns.RecordSet{
		Properties: &armprivatedns.RecordSetProperties{TTL: ptr[int64](60), SoaRecord: &armprivatedns.SoaRecord{Host: ptr("evil.example"), MinimumTTL: ptr[int64](30)}},
	}, nil)
	if err != nil {
		t.Fatalf("update SOA: %v", err)
	}
	if s := deref(up.Properties.SoaRecord); deref(s.Host) != "azureprivatedns.net" || deref(s.MinimumTTL) != 30 || deref(s.RetryTime) != 300 || deref(up.Properties.TTL) != 60 {
		t.Fatalf("updated SOA: %+v ttl %d", s, deref(up.Properties.TTL))
	}
	_, err = e.records.Delete(e.ctx, "rg1", name, armprivatedns.RecordTypeSOA, "@", nil)
	testkit.WantARMError(t, err, http.StatusBadRequest, "BadRequest")

	// GET, then PATCH and PUT update it with a new ETag each time.
	got := e.getZone("rg1", name)
	if deref(got.Etag) != deref(z.Etag) {
		t.Fatalf("GET etag %q, PUT returned %q", deref(got.Etag), deref(z.Etag))
	}
	pp, err := e.zones.BeginUpdate(e.ctx, "rg1", name, armprivatedns.PrivateZone{Tags: map[string]*string{"env": ptr("prod")}}, nil)
	if err != nil {
		t.Fatalf("patch zone: %v", err)
	}
	patched, err := pp.PollUntilDone(e.ctx, poll)
	if err != nil {
		t.Fatalf("patch zone: %v", err)
	}
	if deref(patched.Tags["env"]) != "prod" || deref(patched.Etag) == deref(z.Etag) || counts(patched.PrivateZone) != [3]int64{1, 0, 0} {
		t.Fatalf("patched zone: tags %v etag %q counts %v", patched.Tags, deref(patched.Etag), counts(patched.PrivateZone))
	}
	again := e.createZone("rg1", name, nil)
	if deref(again.Etag) == deref(patched.Etag) || again.Tags != nil || deref(again.Properties.InternalID) != deref(p.InternalID) {
		t.Fatalf("re-PUT zone: etag %q tags %v internalId %q", deref(again.Etag), again.Tags, deref(again.Properties.InternalID))
	}

	// DELETE removes the zone and its record sets; a second DELETE is a no-op.
	if err := e.deleteZone("rg1", name, nil); err != nil {
		t.Fatalf("delete zone: %v", err)
	}
	_, err = e.zones.Get(e.ctx, "rg1", name, nil)
	testkit.WantARMError(t, err, http.StatusNotFound, "ResourceNotFound")
	ok, err := arm.Exists(arm.ReadOnly(e.ctx, e.st), RecordSetID(e.zoneID("rg1", name), armprivatedns.RecordTypeSOA, "@"))
	if err != nil || ok {
		t.Fatalf("SOA document after zone delete: exists %v, err %v", ok, err)
	}
	if err := e.deleteZone("rg1", name, nil); err != nil {
		t.Fatalf("delete missing zone: %v", err)
	}
	_, err = e.zones.BeginUpdate(e.ctx, "rg1", name, armprivatedns.PrivateZone{}, nil)
	testkit.WantARMError(t, err, http.StatusNotFound, "ResourceNotFound")
}

func TestZoneListsPage(t *testing.T) {
	e := newEnv(t, "rg2")
	names := []string{"a.example.com", "b.example.com", "c.example.com", "d.example.com", "e.example.com"}
	for _, n := range names {
		e.createZone("rg1", n, nil)
	}
	e.createZone("rg2", "other.example.org", nil)

	pager := e.zones.NewListByResourceGroupPager("rg1", &armprivatedns.PrivateZonesClientListByResourceGroupOptions{Top: ptr[int32](2)})
	var got []string
	pages := 0
	for pager.More() {
		page, err := pager.NextPage(e.ctx)
		if err != nil {
			t.Fatalf("list zones of rg1: %v", err)
		}
		pages++
		if len(page.Value) > 2 {
			t.Fatalf("page of %d zones with $top=2", len(page.Value))
		}
		for _, z := range page.Value {
			got = append(got, deref(z.Name))
		}
	}
	if pages != 3 || len(got) != len(names) {
		t.Fatalf("rg1: %d pages, zones %v; want 3 pages of %v", pages, got, names)
	}
	for i := range names {
		if got[i] != names[i] {
			t.Fatalf("rg1 zones %v, want %v", got, names)
		}
	}

	sp := e.zones.NewListPager(&armprivatedns.PrivateZonesClientListOptions{Top: ptr[int32](4)})
	total, pages := 0, 0
	for sp.More() {
		page, err := sp.NextPage(e.ctx)
		if err != nil {
			t.Fatalf("list zones of the subscription: %v", err)
		}
		pages++
		total += len(page.Value)
	}
	if pages != 2 || total != 6 {
		t.Fatalf("subscription list: %d pages, %d zones; want 2 pages, 6 zones", pages, total)
	}
}

func TestZoneValidation(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, zone, location, code string
		status                     int
	}{
		{"one label", "contoso", "global", "BadRequest", http.StatusBadRequest},
		{"empty label", "a..example.com", "global", "BadRequest", http.StatusBadRequest},
		{"trailing dot", "example.com.", "global", "BadRequest", http.StatusBadRequest},
		{"bad character", "ex!ample.com", "global", "BadRequest", http.StatusBadRequest},
		{"long label", string(make63('x')) + "x.com", "global", "BadRequest", http.StatusBadRequest},
		{"35 labels", manyLabels(35), "global", "BadRequest", http.StatusBadRequest},
		{"regional location", "example.com", "westeurope", "LocationNotAvailableForResourceType", http.StatusBadRequest},
		{"no location", "example.com", "", "LocationRequired", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z := armprivatedns.PrivateZone{}
			if tc.location != "" {
				z.Location = ptr(tc.location)
			}
			_, err := e.putZone("rg1", tc.zone, z, nil)
			testkit.WantARMError(t, err, tc.status, tc.code)
		})
	}
	// 34 labels of one character is fine.
	e.createZone("rg1", manyLabels(34), nil)
	_, err := e.putZone("nogroup", "example.com", armprivatedns.PrivateZone{Location: ptr("global")}, nil)
	testkit.WantARMError(t, err, http.StatusNotFound, "ResourceGroupNotFound")
}

func make63(c byte) []byte {
	b := make([]byte, 63)
	for i := range b {
		b[i] = c
	}
	return b
}

func manyLabels(n int) string {
	s := "a"
	for i := 1; i < n; i++ {
		s += ".a"
	}
	return s
}

func TestZoneETags(t *testing.T) {
	e := newEnv(t)
	z := e.createZone("rg1", "etag.example.com", nil)
	wrong := "00000000-0000-0000-0000-000000000000"

	_, err := e.putZone("rg1", "etag.example.com", armprivatedns.PrivateZone{Location: ptr("global")},
		&armprivatedns.PrivateZonesClientBeginCreateOrUpdateOptions{IfMatch: &wrong})
	testkit.WantARMError(t, err, http.StatusPreconditionFailed, "PreconditionFailed")
	_, err = e.putZone("rg1", "etag.example.com", armprivatedns.PrivateZone{Location: ptr("global")},
		&armprivatedns.PrivateZonesClientBeginCreateOrUpdateOptions{IfNoneMatch: ptr("*")})
	testkit.WantARMError(t, err, http.StatusPreconditionFailed, "PreconditionFailed")
	_, err = e.zones.BeginUpdate(e.ctx, "rg1", "etag.example.com", armprivatedns.PrivateZone{}, &armprivatedns.PrivateZonesClientBeginUpdateOptions{IfMatch: &wrong})
	testkit.WantARMError(t, err, http.StatusPreconditionFailed, "PreconditionFailed")
	err = e.deleteZone("rg1", "etag.example.com", &armprivatedns.PrivateZonesClientBeginDeleteOptions{IfMatch: &wrong})
	testkit.WantARMError(t, err, http.StatusPreconditionFailed, "PreconditionFailed")
	// If-Match on a zone that does not exist fails too.
	_, err = e.putZone("rg1", "new.example.com", armprivatedns.PrivateZone{Location: ptr("global")},
		&armprivatedns.PrivateZonesClientBeginCreateOrUpdateOptions{IfMatch: z.Etag})
	testkit.WantARMError(t, err, http.StatusPreconditionFailed, "PreconditionFailed")

	// The right ETag passes, and If-None-Match: * creates.
	up, err := e.putZone("rg1", "etag.example.com", armprivatedns.PrivateZone{Location: ptr("global")},
		&armprivatedns.PrivateZonesClientBeginCreateOrUpdateOptions{IfMatch: z.Etag})
	if err != nil {
		t.Fatalf("PUT with the current ETag: %v", err)
	}
	if deref(up.Etag) == deref(z.Etag) {
		t.Fatal("the ETag did not change on PUT")
	}
	if _, err := e.putZone("rg1", "new.example.com", armprivatedns.PrivateZone{Location: ptr("global")},
		&armprivatedns.PrivateZonesClientBeginCreateOrUpdateOptions{IfNoneMatch: ptr("*")}); err != nil {
		t.Fatalf("create with If-None-Match: %v", err)
	}
	if err := e.deleteZone("rg1", "etag.example.com", &armprivatedns.PrivateZonesClientBeginDeleteOptions{IfMatch: up.Etag}); err != nil {
		t.Fatalf("delete with the current ETag: %v", err)
	}
}
