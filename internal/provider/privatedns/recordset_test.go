package privatedns

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/testkit"
)

const zone = "privatezone1.com"

func TestRecordSetRoundTrip(t *testing.T) {
	e := newEnv(t)
	e.createZone("rg1", zone, nil)
	for _, tc := range []struct {
		typ        armprivatedns.RecordType
		name, want string // name sent, name returned
		props      armprivatedns.RecordSetProperties
		wantProps  *armprivatedns.RecordSetProperties // when normalized differently from props
	}{
		{typ: armprivatedns.RecordTypeA, name: "WWW", want: "www", props: armprivatedns.RecordSetProperties{
			TTL: ptr[int64](3600), Metadata: map[string]*string{"key1": ptr("value1")},
			ARecords: []*armprivatedns.ARecord{{IPv4Address: ptr("10.0.2.5")}, {IPv4Address: ptr("10.0.2.6")}},
		}},
		{typ: armprivatedns.RecordTypeA, name: "db.west", want: "db.west", props: armprivatedns.RecordSetProperties{
			TTL: ptr[int64](0), ARecords: []*armprivatedns.ARecord{{IPv4Address: ptr("192.168.0.1")}},
		}},
		{typ: armprivatedns.RecordTypeAAAA, name: "v6", want: "v6", props: armprivatedns.RecordSetProperties{
			TTL: ptr[int64](300), AaaaRecords: []*armprivatedns.AaaaRecord{{IPv6Address: ptr("2001:DB8:0:0:0:0:0:1")}},
		}, wantProps: &armprivatedns.RecordSetProperties{
			TTL: ptr[int64](300), AaaaRecords: []*armprivatedns.AaaaRecord{{IPv6Address: ptr("2001:db8::1")}},
		}},
		{typ: armprivatedns.RecordTypeCNAME, name: "srv1", want: "srv1", props: armprivatedns.RecordSetProperties{
			TTL: ptr[int64](10), CnameRecord: &armprivatedns.CnameRecord{Cname: ptr("srv1.privatelink.postgres.database.azure.com")},
		}},
		{typ: armprivatedns.RecordTypeMX, name: "@", want: "@", props: armprivatedns.RecordSetProperties{
			TTL: ptr[int64](3600), MxRecords: []*armprivatedns.MxRecord{{Preference: ptr[int32](10), Exchange: ptr("mail.privatezone1.com")}},
		}},
		{typ: armprivatedns.RecordTypePTR, name: "5.2.0", want: "5.2.0", props: armprivatedns.RecordSetProperties{
			TTL: ptr[int64](3600), PtrRecords: []*armprivatedns.PtrRecord{{Ptrdname: ptr("srv1.privatezone1.com.")}},
		}},
		{typ: armprivatedns.RecordTypeSRV, name: "_postgres._tcp", want: "_postgres._tcp", props: armprivatedns.RecordSetProperties{
			TTL: ptr[int64](3600), SrvRecords: []*armprivatedns.SrvRecord{{Priority: ptr[int32](0), Weight: ptr[int32](5), Port: ptr[int32](5432), Target: ptr("srv1.privatezone1.com")}},
		}},
		{typ: armprivatedns.RecordTypeTXT, name: "@", want: "@", props: armprivatedns.RecordSetProperties{
			TTL: ptr[int64](3600), TxtRecords: []*armprivatedns.TxtRecord{{Value: []*string{ptr("v=spf1 -all"), ptr(strings.Repeat("x", 1024))}}, {Value: []*string{ptr("second")}}},
		}},
		{typ: armprivatedns.RecordTypeA, name: "*.wild", want: "*.wild", props: armprivatedns.RecordSetProperties{
			TTL: ptr[int64](60), ARecords: []*armprivatedns.ARecord{{IPv4Address: ptr("10.1.1.1")}},
		}},
	} {
		t.Run(string(tc.typ)+"/"+tc.name, func(t *testing.T) {
			ctx, resp := captured(e.ctx)
			out, err := e.records.CreateOrUpdate(ctx, "rg1", zone, tc.typ, tc.name, armprivatedns.RecordSet{Properties: &tc.props}, nil)
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if (*resp).StatusCode != http.StatusCreated {
				t.Fatalf("create answered %d, want 201", (*resp).StatusCode)
			}
			wantFqdn := tc.want + "." + zone + "."
			if tc.want == "@" {
				wantFqdn = zone + "."
			}
			id := e.zoneID("rg1", zone).String() + "/" + string(tc.typ) + "/" + tc.want
			if deref(out.Name) != tc.want || deref(out.ID) != id || deref(out.Type) != ZoneType+"/"+string(tc.typ) || deref(out.Etag) == "" {
				t.Fatalf("envelope: id %q name %q type %q etag %q", deref(out.ID), deref(out.Name), deref(out.Type), deref(out.Etag))
			}
			if deref(out.Properties.Fqdn) != wantFqdn || out.Properties.IsAutoRegistered == nil || *out.Properties.IsAutoRegistered {
				t.Fatalf("fqdn %q isAutoRegistered %v, want %q false", deref(out.Properties.Fqdn), out.Properties.IsAutoRegistered, wantFqdn)
			}
			want := tc.props
			if tc.wantProps != nil {
				want = *tc.wantProps
			}
			want.Fqdn, want.IsAutoRegistered = out.Properties.Fqdn, out.Properties.IsAutoRegistered
			got, err := e.records.Get(e.ctx, "rg1", zone, tc.typ, tc.name, nil)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if !sameJSON(t, got.Properties, &want) || !sameJSON(t, got.RecordSet, out.RecordSet) {
				t.Fatalf("round trip:\n got %s\nwant %s", asJSON(t, got.RecordSet), asJSON(t, want))
			}
			// A second PUT updates: 200, new ETag.
			ctx, resp = captured(e.ctx)
			again, err := e.records.CreateOrUpdate(ctx, "rg1", zone, tc.typ, tc.want, armprivatedns.RecordSet{Properties: &tc.props}, nil)
			if err != nil || (*resp).StatusCode != http.StatusOK || deref(again.Etag) == deref(out.Etag) {
				t.Fatalf("update: err %v status %d etag %q (was %q)", err, (*resp).StatusCode, deref(again.Etag), deref(out.Etag))
			}
		})
	}
	z := e.getZone("rg1", zone)
	if got := counts(z); got[0] != 10 {
		t.Fatalf("numberOfRecordSets %d, want 10 (9 sets and the SOA)", got[0])
	}

	// PATCH changes only what it sends.
	ctx, resp := captured(e.ctx)
	p, err := e.records.Update(ctx, "rg1", zone, armprivatedns.RecordTypeA, "www", armprivatedns.RecordSet{
		Properties: &armprivatedns.RecordSetProperties{TTL: ptr[int64](120)},
	}, nil)
	if err != nil || (*resp).StatusCode != http.StatusOK {
		t.Fatalf("patch: %v", err)
	}
	if deref(p.Properties.TTL) != 120 || len(p.Properties.ARecords) != 2 || deref(p.Properties.Metadata["key1"]) != "value1" {
		t.Fatalf("patched set: %s", asJSON(t, p.RecordSet))
	}
	_, err = e.records.Update(e.ctx, "rg1", zone, armprivatedns.RecordTypeA, "www", armprivatedns.RecordSet{
		Properties: &armprivatedns.RecordSetProperties{CnameRecord: &armprivatedns.CnameRecord{Cname: ptr("x.example.com")}},
	}, nil)
	testkit.WantARMError(t, err, http.StatusBadRequest, "BadRequest")
	_, err = e.records.Update(e.ctx, "rg1", zone, armprivatedns.RecordTypeA, "missing", armprivatedns.RecordSet{}, nil)
	testkit.WantARMError(t, err, http.StatusNotFound, "ResourceNotFound")

	// DELETE: 200, then 204 for nothing; the count follows.
	ctx, resp = captured(e.ctx)
	if _, err := e.records.Delete(ctx, "rg1", zone, armprivatedns.RecordTypeA, "WWW", nil); err != nil || (*resp).StatusCode != http.StatusOK {
		t.Fatalf("delete: %v", err)
	}
	ctx, resp = captured(e.ctx)
	if _, err := e.records.Delete(ctx, "rg1", zone, armprivatedns.RecordTypeA, "www", nil); err != nil || (*resp).StatusCode != http.StatusNoContent {
		t.Fatalf("delete again: %v", err)
	}
	_, err = e.records.Get(e.ctx, "rg1", zone, armprivatedns.RecordTypeA, "www", nil)
	testkit.WantARMError(t, err, http.StatusNotFound, "ResourceNotFound")
	if got := counts(e.getZone("rg1", zone)); got[0] != 9 {
		t.Fatalf("numberOfRecordSets %d after delete, want 9", got[0])
	}

	// The read API answers from the same documents.
	rd := arm.ReadOnly(e.ctx, e.st)
	rs, err := LookupRecordSet(rd, e.zoneID("rg1", zone), armprivatedns.RecordTypeCNAME, "SRV1")
	if err != nil || rs == nil || deref(rs.Properties.CnameRecord.Cname) != "srv1.privatelink.postgres.database.azure.com" {
		t.Fatalf("LookupRecordSet: %v %v", rs, err)
	}
	if rs, err := LookupRecordSet(rd, e.zoneID("rg1", zone), armprivatedns.RecordTypeA, "nothing"); err != nil || rs != nil {
		t.Fatalf("LookupRecordSet of nothing: %v %v", rs, err)
	}
}

func TestRecordSetLists(t *testing.T) {
	e := newEnv(t)
	e.createZone("rg1", zone, nil)
	put := func(typ armprivatedns.RecordType, name string, props armprivatedns.RecordSetProperties) {
		t.Helper()
		if _, err := e.records.CreateOrUpdate(e.ctx, "rg1", zone, typ, name, armprivatedns.RecordSet{Properties: &props}, nil); err != nil {
			t.Fatalf("create %s %s: %v", typ, name, err)
		}
	}
	a := armprivatedns.RecordSetProperties{TTL: ptr[int64](60), ARecords: []*armprivatedns.ARecord{{IPv4Address: ptr("10.0.0.4")}}}
	for _, n := range []string{"a1", "a2.west", "a3", "a4.west", "west"} {
		put(armprivatedns.RecordTypeA, n, a)
	}
	put(armprivatedns.RecordTypeTXT, "a2.west", armprivatedns.RecordSetProperties{TTL: ptr[int64](60), TxtRecords: []*armprivatedns.TxtRecord{{Value: []*string{ptr("x")}}}})
	put(armprivatedns.RecordTypeCNAME, "c.east", armprivatedns.RecordSetProperties{TTL: ptr[int64](60), CnameRecord: &armprivatedns.CnameRecord{Cname: ptr("a1.privatezone1.com")}})

	byType := e.records.NewListByTypePager("rg1", zone, armprivatedns.RecordTypeA, &armprivatedns.RecordSetsClientListByTypeOptions{Top: ptr[int32](2)})
	var names []string
	pages := 0
	for byType.More() {
		page, err := byType.NextPage(e.ctx)
		if err != nil {
			t.Fatalf("list A: %v", err)
		}
		pages++
		for _, rs := range page.Value {
			names = append(names, deref(rs.Name))
		}
	}
	if pages != 3 || strings.Join(names, ",") != "a1,a2.west,a3,a4.west,west" {
		t.Fatalf("A list: %d pages, %v", pages, names)
	}

	all := func(opts *armprivatedns.RecordSetsClientListOptions) (out []string, pages int) {
		t.Helper()
		pager := e.records.NewListPager("rg1", zone, opts)
		for pager.More() {
			page, err := pager.NextPage(e.ctx)
			if err != nil {
				t.Fatalf("list ALL: %v", err)
			}
			pages++
			for _, rs := range page.Value {
				out = append(out, deref(rs.Name)+"/"+strings.TrimPrefix(deref(rs.Type), ZoneType+"/"))
			}
		}
		return out, pages
	}
	got, pages := all(&armprivatedns.RecordSetsClientListOptions{Top: ptr[int32](3)})
	want := "@/SOA,a1/A,a2.west/A,a2.west/TXT,a3/A,a4.west/A,c.east/CNAME,west/A"
	if strings.Join(got, ",") != want || pages != 3 {
		t.Fatalf("ALL: %d pages, %v; want 3 pages, %s", pages, got, want)
	}
	got, _ = all(&armprivatedns.RecordSetsClientListOptions{Recordsetnamesuffix: ptr("west"), Top: ptr[int32](2)})
	if want := "a2.west/A,a2.west/TXT,a4.west/A,west/A"; strings.Join(got, ",") != want {
		t.Fatalf("ALL with suffix west: %v, want %s", got, want)
	}
	sfx := e.records.NewListByTypePager("rg1", zone, armprivatedns.RecordTypeA, &armprivatedns.RecordSetsClientListByTypeOptions{Recordsetnamesuffix: ptr("WEST")})
	page, err := sfx.NextPage(e.ctx)
	if err != nil || len(page.Value) != 3 {
		t.Fatalf("A with suffix WEST: %d sets, %v", len(page.Value), err)
	}

	_, err = e.records.NewListPager("rg1", "nozone.com", nil).NextPage(e.ctx)
	testkit.WantARMError(t, err, http.StatusNotFound, "ParentResourceNotFound")
}

func TestRecordSetETags(t *testing.T) {
	e := newEnv(t)
	e.createZone("rg1", zone, nil)
	props := &armprivatedns.RecordSetProperties{TTL: ptr[int64](60), ARecords: []*armprivatedns.ARecord{{IPv4Address: ptr("10.0.0.4")}}}
	created, err := e.records.CreateOrUpdate(e.ctx, "rg1", zone, armprivatedns.RecordTypeA, "x", armprivatedns.RecordSet{Properties: props},
		&armprivatedns.RecordSetsClientCreateOrUpdateOptions{IfNoneMatch: ptr("*")})
	if err != nil {
		t.Fatalf("create with If-None-Match: %v", err)
	}
	wrong := "00000000-0000-0000-0000-000000000000"
	_, err = e.records.CreateOrUpdate(e.ctx, "rg1", zone, armprivatedns.RecordTypeA, "x", armprivatedns.RecordSet{Properties: props},
		&armprivatedns.RecordSetsClientCreateOrUpdateOptions{IfNoneMatch: ptr("*")})
	testkit.WantARMError(t, err, http.StatusPreconditionFailed, "PreconditionFailed")
	_, err = e.records.CreateOrUpdate(e.ctx, "rg1", zone, armprivatedns.RecordTypeA, "x", armprivatedns.RecordSet{Properties: props},
		&armprivatedns.RecordSetsClientCreateOrUpdateOptions{IfMatch: &wrong})
	testkit.WantARMError(t, err, http.StatusPreconditionFailed, "PreconditionFailed")
	_, err = e.records.Update(e.ctx, "rg1", zone, armprivatedns.RecordTypeA, "x", armprivatedns.RecordSet{Properties: props},
		&armprivatedns.RecordSetsClientUpdateOptions{IfMatch: &wrong})
	testkit.WantARMError(t, err, http.StatusPreconditionFailed, "PreconditionFailed")
	_, err = e.records.Delete(e.ctx, "rg1", zone, armprivatedns.RecordTypeA, "x", &armprivatedns.RecordSetsClientDeleteOptions{IfMatch: &wrong})
	testkit.WantARMError(t, err, http.StatusPreconditionFailed, "PreconditionFailed")
	_, err = e.records.CreateOrUpdate(e.ctx, "rg1", zone, armprivatedns.RecordTypeSOA, "@", armprivatedns.RecordSet{Properties: &armprivatedns.RecordSetProperties{TTL: ptr[int64](1)}},
		&armprivatedns.RecordSetsClientCreateOrUpdateOptions{IfNoneMatch: ptr("*")})
	testkit.WantARMError(t, err, http.StatusPreconditionFailed, "PreconditionFailed")

	updated, err := e.records.Update(e.ctx, "rg1", zone, armprivatedns.RecordTypeA, "x", armprivatedns.RecordSet{Properties: &armprivatedns.RecordSetProperties{TTL: ptr[int64](5)}},
		&armprivatedns.RecordSetsClientUpdateOptions{IfMatch: created.Etag})
	if err != nil || deref(updated.Etag) == deref(created.Etag) {
		t.Fatalf("patch with the current ETag: %v, etag %q", err, deref(updated.Etag))
	}
	_, err = e.records.Delete(e.ctx, "rg1", zone, armprivatedns.RecordTypeA, "x", &armprivatedns.RecordSetsClientDeleteOptions{IfMatch: created.Etag})
	testkit.WantARMError(t, err, http.StatusPreconditionFailed, "PreconditionFailed")
	if _, err := e.records.Delete(e.ctx, "rg1", zone, armprivatedns.RecordTypeA, "x", &armprivatedns.RecordSetsClientDeleteOptions{IfMatch: updated.Etag}); err != nil {
		t.Fatalf("delete with the current ETag: %v", err)
	}
}

func TestRecordSetValidation(t *testing.T) {
	e := newEnv(t)
	e.createZone("rg1", zone, nil)
	if _, err := e.records.CreateOrUpdate(e.ctx, "rg1", zone, armprivatedns.RecordTypeCNAME, "alias", armprivatedns.RecordSet{Properties: &armprivatedns.RecordSetProperties{
		TTL: ptr[int64](60), CnameRecord: &armprivatedns.CnameRecord{Cname: ptr("target.example.com")},
	}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.records.CreateOrUpdate(e.ctx, "rg1", zone, armprivatedns.RecordTypeA, "host", armprivatedns.RecordSet{Properties: &armprivatedns.RecordSetProperties{
		TTL: ptr[int64](60), ARecords: []*armprivatedns.ARecord{{IPv4Address: ptr("10.0.0.1")}},
	}}, nil); err != nil {
		t.Fatal(err)
	}
	ttl := ptr[int64](60)
	aRecs := func(n int) []*armprivatedns.ARecord {
		var out []*armprivatedns.ARecord
		for i := range n {
			out = append(out, &armprivatedns.ARecord{IPv4Address: ptr(fmt.Sprintf("10.0.1.%d", i+1))})
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		zone   string
		typ    armprivatedns.RecordType
		rs     string
		props  *armprivatedns.RecordSetProperties
		status int
		code   string
	}{
		{"A with cnameRecord", zone, "A", "x", &armprivatedns.RecordSetProperties{TTL: ttl, CnameRecord: &armprivatedns.CnameRecord{Cname: ptr("a.b")}}, 400, "BadRequest"},
		{"A with aaaaRecords", zone, "A", "x", &armprivatedns.RecordSetProperties{TTL: ttl, ARecords: aRecs(1), AaaaRecords: []*armprivatedns.AaaaRecord{{IPv6Address: ptr("::1")}}}, 400, "BadRequest"},
		{"bad IPv4", zone, "A", "x", &armprivatedns.RecordSetProperties{TTL: ttl, ARecords: []*armprivatedns.ARecord{{IPv4Address: ptr("10.0.0.256")}}}, 400, "BadRequest"},
		{"IPv6 in A", zone, "A", "x", &armprivatedns.RecordSetProperties{TTL: ttl, ARecords: []*armprivatedns.ARecord{{IPv4Address: ptr("::1")}}}, 400, "BadRequest"},
		{"null ipv4Address", zone, "A", "x", &armprivatedns.RecordSetProperties{TTL: ttl, ARecords: []*armprivatedns.ARecord{{}}}, 400, "BadRequest"},
		{"IPv4 in AAAA", zone, "AAAA", "x", &armprivatedns.RecordSetProperties{TTL: ttl, AaaaRecords: []*armprivatedns.AaaaRecord{{IPv6Address: ptr("10.0.0.1")}}}, 400, "BadRequest"},
		{"duplicate A", zone, "A", "x", &armprivatedns.RecordSetProperties{TTL: ttl, ARecords: []*armprivatedns.ARecord{{IPv4Address: ptr("10.0.0.1")}, {IPv4Address: ptr("10.0.0.1")}}}, 400, "BadRequest"},
		{"21 A records", zone, "A", "x", &armprivatedns.RecordSetProperties{TTL: ttl, ARecords: aRecs(21)}, 409, "Conflict"},
		{"no ttl", zone, "A", "x", &armprivatedns.RecordSetProperties{ARecords: aRecs(1)}, 400, "BadRequest"},
		{"no properties", zone, "A", "x", nil, 400, "BadRequest"},
		{"negative ttl", zone, "A", "x", &armprivatedns.RecordSetProperties{TTL: ptr[int64](-1), ARecords: aRecs(1)}, 400, "BadRequest"},
		{"huge ttl", zone, "A", "x", &armprivatedns.RecordSetProperties{TTL: ptr[int64](2147483648), ARecords: aRecs(1)}, 400, "BadRequest"},
		{"CNAME without cname", zone, "CNAME", "x", &armprivatedns.RecordSetProperties{TTL: ttl, CnameRecord: &armprivatedns.CnameRecord{}}, 400, "BadRequest"},
		{"CNAME bad name", zone, "CNAME", "x", &armprivatedns.RecordSetProperties{TTL: ttl, CnameRecord: &armprivatedns.CnameRecord{Cname: ptr(`"quoted.example.com"`)}}, 400, "BadRequest"},
		{"CNAME beside A", zone, "CNAME", "host", &armprivatedns.RecordSetProperties{TTL: ttl, CnameRecord: &armprivatedns.CnameRecord{Cname: ptr("a.example.com")}}, 409, "Conflict"},
		{"CNAME at apex", zone, "CNAME", "@", &armprivatedns.RecordSetProperties{TTL: ttl, CnameRecord: &armprivatedns.CnameRecord{Cname: ptr("a.example.com")}}, 409, "Conflict"},
		{"TXT beside CNAME", zone, "TXT", "alias", &armprivatedns.RecordSetProperties{TTL: ttl, TxtRecords: []*armprivatedns.TxtRecord{{Value: []*string{ptr("x")}}}}, 409, "Conflict"},
		{"MX without exchange", zone, "MX", "x", &armprivatedns.RecordSetProperties{TTL: ttl, MxRecords: []*armprivatedns.MxRecord{{Preference: ptr[int32](1)}}}, 400, "BadRequest"},
		{"MX preference", zone, "MX", "x", &armprivatedns.RecordSetProperties{TTL: ttl, MxRecords: []*armprivatedns.MxRecord{{Preference: ptr[int32](70000), Exchange: ptr("m.example.com")}}}, 400, "BadRequest"},
		{"SRV port", zone, "SRV", "x", &armprivatedns.RecordSetProperties{TTL: ttl, SrvRecords: []*armprivatedns.SrvRecord{{Priority: ptr[int32](1), Weight: ptr[int32](1), Port: ptr[int32](70000), Target: ptr("t.example.com")}}}, 400, "BadRequest"},
		{"SRV without target", zone, "SRV", "x", &armprivatedns.RecordSetProperties{TTL: ttl, SrvRecords: []*armprivatedns.SrvRecord{{Priority: ptr[int32](1), Weight: ptr[int32](1), Port: ptr[int32](1)}}}, 400, "BadRequest"},
		{"PTR empty", zone, "PTR", "x", &armprivatedns.RecordSetProperties{TTL: ttl, PtrRecords: []*armprivatedns.PtrRecord{{Ptrdname: ptr("")}}}, 400, "BadRequest"},
		{"TXT too long", zone, "TXT", "x", &armprivatedns.RecordSetProperties{TTL: ttl, TxtRecords: []*armprivatedns.TxtRecord{{Value: []*string{ptr(strings.Repeat("x", 1025))}}}}, 400, "BadRequest"},
		{"TXT without value", zone, "TXT", "x", &armprivatedns.RecordSetProperties{TTL: ttl, TxtRecords: []*armprivatedns.TxtRecord{{}}}, 400, "BadRequest"},
		{"metadata value", zone, "A", "x", &armprivatedns.RecordSetProperties{TTL: ttl, ARecords: aRecs(1), Metadata: map[string]*string{"k": ptr(strings.Repeat("v", 257))}}, 400, "BadRequest"},
		{"SOA off the apex", zone, "SOA", "x", &armprivatedns.RecordSetProperties{TTL: ttl}, 400, "BadRequest"},
		{"SOA negative timer", zone, "SOA", "@", &armprivatedns.RecordSetProperties{TTL: ttl, SoaRecord: &armprivatedns.SoaRecord{RetryTime: ptr[int64](-5)}}, 400, "BadRequest"},
		{"empty label", zone, "A", "a..b", &armprivatedns.RecordSetProperties{TTL: ttl, ARecords: aRecs(1)}, 400, "BadRequest"},
		{"bad character", zone, "A", "a!b", &armprivatedns.RecordSetProperties{TTL: ttl, ARecords: aRecs(1)}, 400, "BadRequest"},
		{"wildcard inside", zone, "A", "a.*", &armprivatedns.RecordSetProperties{TTL: ttl, ARecords: aRecs(1)}, 400, "BadRequest"},
		{"name too long", zone, "A", strings.Repeat("abcdefghi.", 25), &armprivatedns.RecordSetProperties{TTL: ttl, ARecords: aRecs(1)}, 400, "BadRequest"},
		{"missing zone", "nozone.com", "A", "x", &armprivatedns.RecordSetProperties{TTL: ttl, ARecords: aRecs(1)}, 404, "ParentResourceNotFound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.records.CreateOrUpdate(e.ctx, "rg1", tc.zone, tc.typ, tc.rs, armprivatedns.RecordSet{Properties: tc.props}, nil)
			testkit.WantARMError(t, err, tc.status, tc.code)
		})
	}
	// 20 records is the limit, not beyond it; nothing failed changed the count.
	if _, err := e.records.CreateOrUpdate(e.ctx, "rg1", zone, "A", "twenty", armprivatedns.RecordSet{Properties: &armprivatedns.RecordSetProperties{TTL: ttl, ARecords: aRecs(20)}}, nil); err != nil {
		t.Fatalf("20 A records: %v", err)
	}
	if got := counts(e.getZone("rg1", zone)); got[0] != 4 {
		t.Fatalf("numberOfRecordSets %d, want 4", got[0])
	}
}

func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(asJSON(t, a)), &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(asJSON(t, b)), &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
