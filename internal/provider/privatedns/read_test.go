package privatedns

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// TestWriteAPI covers what other packages (private endpoint DNS zone
// groups) use: SaveRecordSet and DeleteRecordSet inside their own
// transactions, with the same rules and counters as the API.
func TestWriteAPI(t *testing.T) {
	e := newEnv(t, "rg2")
	e.createZone("rg1", zone, nil)
	e.createZone("rg2", "other.example.com", nil)
	zid := e.zoneID("rg1", zone)
	var saved *armprivatedns.RecordSet
	_, err := e.st.Txn(e.ctx, func(tx store.Tx) error {
		var err error
		saved, err = SaveRecordSet(tx, RecordSetID(zid, armprivatedns.RecordTypeA, "SRV1"), &armprivatedns.RecordSetProperties{
			TTL: ptr[int64](10), ARecords: []*armprivatedns.ARecord{{IPv4Address: ptr("10.0.2.5")}},
		})
		return err
	})
	if err != nil || deref(saved.Name) != "srv1" || deref(saved.Properties.Fqdn) != "srv1."+zone+"." {
		t.Fatalf("SaveRecordSet: %v %s", err, asJSON(t, saved))
	}
	got, err := e.records.Get(e.ctx, "rg1", zone, armprivatedns.RecordTypeA, "srv1", nil)
	if err != nil || !sameJSON(t, got.RecordSet, saved) {
		t.Fatalf("GET after SaveRecordSet: %v", err)
	}
	_, err = e.st.Txn(e.ctx, func(tx store.Tx) error {
		_, err := SaveRecordSet(tx, RecordSetID(zid, armprivatedns.RecordTypeCNAME, "srv1"), &armprivatedns.RecordSetProperties{
			TTL: ptr[int64](10), CnameRecord: &armprivatedns.CnameRecord{Cname: ptr("x.example.com")},
		})
		return err
	})
	if ae, ok := arm.AsError(err); !ok || ae.Status != http.StatusConflict {
		t.Fatalf("CNAME beside A through SaveRecordSet: %v", err)
	}
	_, err = e.st.Txn(e.ctx, func(tx store.Tx) error {
		_, err := SaveRecordSet(tx, zid, &armprivatedns.RecordSetProperties{TTL: ptr[int64](1)})
		return err
	})
	if err == nil {
		t.Fatal("SaveRecordSet took a zone ID")
	}
	if got := counts(e.getZone("rg1", zone)); got[0] != 2 {
		t.Fatalf("numberOfRecordSets %d, want 2", got[0])
	}
	var deleted bool
	_, err = e.st.Txn(e.ctx, func(tx store.Tx) (err error) {
		deleted, err = DeleteRecordSet(tx, RecordSetID(zid, armprivatedns.RecordTypeA, "srv1"))
		return err
	})
	if err != nil || !deleted {
		t.Fatalf("DeleteRecordSet: %v %v", deleted, err)
	}
	if got := counts(e.getZone("rg1", zone)); got[0] != 1 {
		t.Fatalf("numberOfRecordSets %d after DeleteRecordSet, want 1", got[0])
	}

	rd := arm.ReadOnly(e.ctx, e.st)
	all, err := Zones(rd, sub, "")
	if err != nil || len(all) != 2 {
		t.Fatalf("Zones of the subscription: %d, %v", len(all), err)
	}
	one, err := Zones(rd, sub, "rg2")
	if err != nil || len(one) != 1 || deref(one[0].Name) != "other.example.com" {
		t.Fatalf("Zones of rg2: %v", err)
	}
	sets, err := RecordSets(rd, zid)
	if err != nil || len(sets) != 1 || deref(sets[0].Name) != "@" {
		t.Fatalf("RecordSets: %d %v", len(sets), err)
	}
}

// TestConcurrentWrites checks the zone's counters under parallel writes.
func TestConcurrentWrites(t *testing.T) {
	e := newEnv(t)
	e.createZone("rg1", zone, nil)
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			props := &armprivatedns.RecordSetProperties{TTL: ptr[int64](60), ARecords: []*armprivatedns.ARecord{{IPv4Address: ptr(fmt.Sprintf("10.0.0.%d", i+1))}}}
			if _, err := e.records.CreateOrUpdate(e.ctx, "rg1", zone, armprivatedns.RecordTypeA, fmt.Sprintf("h%d", i), armprivatedns.RecordSet{Properties: props}, nil); err != nil {
				errs <- err
			}
			// The same name from every writer: created once, updated after.
			if _, err := e.records.CreateOrUpdate(e.ctx, "rg1", zone, armprivatedns.RecordTypeA, "shared", armprivatedns.RecordSet{Properties: props}, nil); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := counts(e.getZone("rg1", zone)); got[0] != n+2 {
		t.Fatalf("numberOfRecordSets %d, want %d", got[0], n+2)
	}
}

func TestParseKey(t *testing.T) {
	zid, err := arm.ParseID("/subscriptions/S1/resourceGroups/RG/providers/Microsoft.Network/privateDnsZones/Z.example.com")
	if err != nil {
		t.Fatal(err)
	}
	lz := "/subscriptions/s1/resourcegroups/rg/providers/microsoft.network/privatednszones/z.example.com"
	for _, tc := range []struct {
		id   arm.ResourceID
		want Key
	}{
		{zid, Key{Kind: KeyZone, Zone: lz}},
		{zid.Child("virtualNetworkLinks", "L1"), Key{Kind: KeyLink, Zone: lz, Link: lz + "/virtualnetworklinks/l1"}},
		{RecordSetID(zid, armprivatedns.RecordTypeAAAA, "db.West"), Key{Kind: KeyRecordSet, Zone: lz, Type: armprivatedns.RecordTypeAAAA, Name: "db.west"}},
		{RecordSetID(zid, armprivatedns.RecordTypeSOA, "@"), Key{Kind: KeyRecordSet, Zone: lz, Type: armprivatedns.RecordTypeSOA, Name: "@"}},
	} {
		got, ok := ParseKey(arm.DocKey(tc.id))
		if !ok || got != tc.want {
			t.Errorf("ParseKey(%q) = %+v %v, want %+v", arm.DocKey(tc.id), got, ok, tc.want)
		}
		if got.Zone != strings.ToLower(zid.String()) {
			t.Errorf("zone %q is not the lower-cased zone ID %q", got.Zone, strings.ToLower(zid.String()))
		}
		if got.Kind == KeyLink && got.Link != strings.ToLower(tc.id.String()) {
			t.Errorf("link %q is not the lower-cased link ID", got.Link)
		}
	}
	vnet, _ := arm.ParseID("/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v")
	for _, k := range []string{arm.DocKey(vnet), arm.DocKey(zid.Child("NS", "x")), "arm/s1", "ops/x", LinkIndexPrefix + "/x|y", arm.DocKey(zid) + "/extra/more"} {
		if got, ok := ParseKey(k); ok {
			t.Errorf("ParseKey(%q) = %+v, want not a private DNS key", k, got)
		}
	}
}
