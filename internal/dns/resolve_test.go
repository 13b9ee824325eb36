package dns

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

const (
	plZone = "privatelink.postgres.database.azure.com"
	zoneA  = ZoneID("/subscriptions/a/resourcegroups/rg1/providers/microsoft.network/privatednszones/" + plZone)
	zoneB  = ZoneID("/subscriptions/b/resourcegroups/rg2/providers/microsoft.network/privatednszones/" + plZone)
	zoneC  = ZoneID("/subscriptions/a/resourcegroups/rg1/providers/microsoft.network/privatednszones/corp.example")

	vnetA     = "/subscriptions/a/resourcegroups/rg1/providers/microsoft.network/virtualnetworks/vnet-a"
	vnetB     = "/subscriptions/b/resourcegroups/rg2/providers/microsoft.network/virtualnetworks/vnet-b"
	vnetC     = "/subscriptions/c/resourcegroups/rg3/providers/microsoft.network/virtualnetworks/vnet-unlinked"
	vnetRedir = "/subscriptions/a/resourcegroups/rg1/providers/microsoft.network/virtualnetworks/vnet-redirect"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ips(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func aSet(name string, addrs ...string) RecordSet {
	return RecordSet{Name: name, Type: TypeA, TTL: 10, A: ips(addrs...)}
}

func cnameSet(name, target string) RecordSet {
	return RecordSet{Name: name, Type: TypeCNAME, TTL: 3600, CNAME: target}
}

func azureSOA() RecordSet {
	return RecordSet{Name: "@", Type: TypeSOA, TTL: 3600, SOA: &SOA{
		Host: "azureprivatedns.net", Email: "azureprivatedns-host.microsoft.com",
		Serial: 1, Refresh: 3600, Retry: 300, Expire: 2419200, MinimumTTL: 10,
	}}
}

// serverPublic is what the lead puts for one PostgreSQL flexible server.
func serverPublic(name, publicIP string) []RecordSet {
	return []RecordSet{
		cnameSet(name+".postgres.database.azure.com", name+"."+plZone),
		aSet(name+"."+plZone, publicIP),
	}
}

// fixture is the catalog most tests use:
//   - zoneA and zoneB, two zones named privatelink.postgres.database.azure.com,
//     linked to vnetA and vnetB; zoneA also to vnetRedir with NxDomainRedirect;
//   - zoneC (corp.example) linked to vnetA;
//   - public names of servers srv1 and srv2.
func fixture(t testing.TB) *Catalog {
	t.Helper()
	c := NewCatalog()
	must(t, c.Update(func(tx *Tx) error {
		must(t, tx.PutZone(zoneA, plZone))
		must(t, tx.PutZone(zoneB, plZone+"."))
		must(t, tx.PutZone(zoneC, "Corp.Example"))
		for _, z := range []ZoneID{zoneA, zoneB, zoneC} {
			must(t, tx.PutRecordSet(z, azureSOA()))
		}
		must(t, tx.PutRecordSet(zoneA, aSet("srv1", "10.0.2.5")))
		must(t, tx.PutRecordSet(zoneA, aSet("multi", "10.0.2.6", "10.0.2.7", "10.0.2.8")))
		must(t, tx.PutRecordSet(zoneA, aSet("*.apps", "10.0.9.9")))
		must(t, tx.PutRecordSet(zoneA, aSet("x.deep", "10.0.3.3")))
		must(t, tx.PutRecordSet(zoneA, cnameSet("alias", "srv1."+plZone)))
		must(t, tx.PutRecordSet(zoneA, cnameSet("toext", "srv2.postgres.database.azure.com")))
		must(t, tx.PutRecordSet(zoneA, cnameSet("loop1", "loop2."+plZone)))
		must(t, tx.PutRecordSet(zoneA, cnameSet("loop2", "LOOP1."+plZone)))
		must(t, tx.PutRecordSet(zoneA, RecordSet{Name: "empty", Type: TypeA, TTL: 10}))
		must(t, tx.PutRecordSet(zoneA, RecordSet{Name: "srv1", Type: TypeTXT, TTL: 10, TXT: [][]string{{"hello", "world"}}}))
		must(t, tx.PutRecordSet(zoneB, aSet("srv1", "10.1.2.5")))
		must(t, tx.PutRecordSet(zoneC, aSet("db", "10.0.5.5")))
		must(t, tx.PutLink("link-a", Link{View: vnetA, Zone: zoneA}))
		must(t, tx.PutLink("link-a-corp", Link{View: vnetA, Zone: zoneC}))
		must(t, tx.PutLink("link-b", Link{View: vnetB, Zone: zoneB, ResolutionPolicy: "default"}))
		must(t, tx.PutLink("link-r", Link{View: vnetRedir, Zone: zoneA, ResolutionPolicy: "nxdomainredirect"}))
		must(t, tx.PutPublic("srv1", serverPublic("srv1", "198.18.0.10")...))
		must(t, tx.PutPublic("srv2", serverPublic("srv2", "198.18.0.11")...))
		return nil
	}))
	return c
}

// render is a compact form of a result for comparisons: rcode, "aa" when
// authoritative, the answer records as "owner TYPE data", and the authority.
func render(r Result) string {
	var b strings.Builder
	b.WriteString(mdns.RcodeToString[r.Rcode])
	if r.Authoritative {
		b.WriteString(" aa")
	}
	for _, rr := range r.Answer {
		fmt.Fprintf(&b, " | %s %s %s", rr.Header().Name, mdns.TypeToString[rr.Header().Rrtype], rdata(rr))
	}
	for _, rr := range r.Ns {
		fmt.Fprintf(&b, " || %s %s ttl=%d", rr.Header().Name, mdns.TypeToString[rr.Header().Rrtype], rr.Header().Ttl)
	}
	return b.String()
}

func rdata(rr mdns.RR) string {
	s := rr.String()
	h := rr.Header().String()
	return strings.TrimSpace(strings.TrimPrefix(s, h))
}

func TestResolve(t *testing.T) {
	c := fixture(t)
	const (
		pub1 = "srv1.postgres.database.azure.com."
		pl1  = "srv1." + plZone + "."
		pl2  = "srv2." + plZone + "."
		soa  = " || " + plZone + ". SOA ttl=10"
	)
	tests := []struct {
		name  string
		view  string
		qname string
		qtype uint16
		want  string
	}{
		// The privatelink chain: public CNAME, then the linked zone.
		{"chain in linked view", vnetA, pub1, mdns.TypeA, "NOERROR | " + pub1 + " CNAME " + pl1 + " | " + pl1 + " A 10.0.2.5"},
		{"same-name zone of another view", vnetB, pub1, mdns.TypeA, "NOERROR | " + pub1 + " CNAME " + pl1 + " | " + pl1 + " A 10.1.2.5"},
		{"chain in unlinked view", vnetC, pub1, mdns.TypeA, "NOERROR | " + pub1 + " CNAME " + pl1 + " | " + pl1 + " A 198.18.0.10"},
		{"chain on the internet", InternetView, pub1, mdns.TypeA, "NOERROR | " + pub1 + " CNAME " + pl1 + " | " + pl1 + " A 198.18.0.10"},
		{"privatelink name directly", vnetA, pl1, mdns.TypeA, "NOERROR aa | " + pl1 + " A 10.0.2.5"},
		{"case-insensitive", vnetA, "SRV1.PrivateLink.Postgres.Database.Azure.Com", mdns.TypeA, "NOERROR aa | " + pl1 + " A 10.0.2.5"},
		// A linked zone hides the public fallback of names it lacks (Azure's
		// behaviour), unless the link redirects NXDOMAIN.
		{"linked zone lacks the server", vnetA, "srv2.postgres.database.azure.com", mdns.TypeA,
			"NXDOMAIN | srv2.postgres.database.azure.com. CNAME " + pl2 + soa},
		{"NxDomainRedirect falls back", vnetRedir, "srv2.postgres.database.azure.com", mdns.TypeA,
			"NOERROR | srv2.postgres.database.azure.com. CNAME " + pl2 + " | " + pl2 + " A 198.18.0.11"},
		{"NxDomainRedirect keeps private data", vnetRedir, pl1, mdns.TypeA, "NOERROR aa | " + pl1 + " A 10.0.2.5"},
		{"NxDomainRedirect NXDOMAIN everywhere", vnetRedir, "nope." + plZone, mdns.TypeA, "NXDOMAIN"},
		{"NxDomainRedirect does not redirect NODATA", vnetRedir, pl1, mdns.TypeAAAA, "NOERROR aa" + soa},
		// Negative answers.
		{"NXDOMAIN with SOA", vnetA, "nope." + plZone, mdns.TypeA, "NXDOMAIN aa" + soa},
		{"NODATA with SOA", vnetA, pl1, mdns.TypeAAAA, "NOERROR aa" + soa},
		{"empty record set is NODATA", vnetA, "empty." + plZone, mdns.TypeA, "NOERROR aa" + soa},
		{"empty non-terminal is NODATA", vnetA, "deep." + plZone, mdns.TypeA, "NOERROR aa" + soa},
		{"below a leaf is NXDOMAIN", vnetA, "a.srv1." + plZone, mdns.TypeA, "NXDOMAIN aa" + soa},
		{"public NXDOMAIN has no SOA", InternetView, "nope.example.com", mdns.TypeA, "NXDOMAIN"},
		{"public NODATA", InternetView, pl1, mdns.TypeAAAA, "NOERROR"},
		// View isolation.
		{"private-only name in unlinked view", vnetC, "multi." + plZone, mdns.TypeA, "NXDOMAIN"},
		{"private-only name in other view", vnetB, "multi." + plZone, mdns.TypeA, "NXDOMAIN aa" + soa},
		{"other zone of the view", vnetA, "db.corp.example", mdns.TypeA, "NOERROR aa | db.corp.example. A 10.0.5.5"},
		{"other zone, unlinked view", vnetB, "db.corp.example", mdns.TypeA, "NXDOMAIN"},
		// Data.
		{"every A record of a set", vnetA, "multi." + plZone, mdns.TypeA,
			"NOERROR aa | multi." + plZone + ". A 10.0.2.6 | multi." + plZone + ". A 10.0.2.7 | multi." + plZone + ". A 10.0.2.8"},
		{"TXT", vnetA, pl1, mdns.TypeTXT, `NOERROR aa | ` + pl1 + ` TXT "hello" "world"`},
		{"ANY", vnetA, pl1, mdns.TypeANY, `NOERROR aa | ` + pl1 + ` A 10.0.2.5 | ` + pl1 + ` TXT "hello" "world"`},
		{"SOA at the apex", vnetA, plZone, mdns.TypeSOA,
			"NOERROR aa | " + plZone + ". SOA azureprivatedns.net. azureprivatedns-host.microsoft.com. 1 3600 300 2419200 10"},
		{"apex without the type", vnetA, plZone, mdns.TypeA, "NOERROR aa" + soa},
		// Wildcards (RFC 4592).
		{"wildcard", vnetA, "web.apps." + plZone, mdns.TypeA, "NOERROR aa | web.apps." + plZone + ". A 10.0.9.9"},
		{"wildcard, several labels", vnetA, "a.b.apps." + plZone, mdns.TypeA, "NOERROR aa | a.b.apps." + plZone + ". A 10.0.9.9"},
		{"wildcard NODATA", vnetA, "web.apps." + plZone, mdns.TypeTXT, "NOERROR aa" + soa},
		{"wildcard owner itself", vnetA, "*.apps." + plZone, mdns.TypeA, "NOERROR aa | *.apps." + plZone + ". A 10.0.9.9"},
		{"wildcard does not cover its parent", vnetA, "apps." + plZone, mdns.TypeA, "NOERROR aa" + soa},
		// CNAMEs.
		{"private CNAME chased", vnetA, "alias." + plZone, mdns.TypeA,
			"NOERROR aa | alias." + plZone + ". CNAME " + pl1 + " | " + pl1 + " A 10.0.2.5"},
		{"CNAME query not chased", vnetA, "alias." + plZone, mdns.TypeCNAME, "NOERROR aa | alias." + plZone + ". CNAME " + pl1},
		{"private to public to private", vnetA, "toext." + plZone, mdns.TypeA,
			"NXDOMAIN aa | toext." + plZone + ". CNAME srv2.postgres.database.azure.com. | srv2.postgres.database.azure.com. CNAME " + pl2 + soa},
		{"CNAME loop", vnetA, "loop1." + plZone, mdns.TypeA, "SERVFAIL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := render(c.Resolve(tt.view, tt.qname, tt.qtype))
			if got != tt.want {
				t.Errorf("Resolve(%s, %s %s)\n got: %s\nwant: %s", tt.view, tt.qname, mdns.TypeToString[tt.qtype], got, tt.want)
			}
		})
	}
}

func TestResolveChainLength(t *testing.T) {
	c := NewCatalog()
	must(t, c.PutZone(zoneC, "corp.example"))
	must(t, c.PutLink("l", Link{View: vnetA, Zone: zoneC}))
	// c0 -> c1 -> ... -> cN (A).
	chain := func(n int) {
		must(t, c.Update(func(tx *Tx) error {
			tx.Reset()
			must(t, tx.PutZone(zoneC, "corp.example"))
			must(t, tx.PutLink("l", Link{View: vnetA, Zone: zoneC}))
			for i := range n {
				must(t, tx.PutRecordSet(zoneC, cnameSet(fmt.Sprintf("c%d", i), fmt.Sprintf("c%d.corp.example", i+1))))
			}
			return tx.PutRecordSet(zoneC, aSet(fmt.Sprintf("c%d", n), "10.9.9.9"))
		}))
	}
	chain(MaxChain)
	r := c.Resolve(vnetA, "c0.corp.example", mdns.TypeA)
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != MaxChain+1 {
		t.Fatalf("chain of %d CNAMEs: %s", MaxChain, render(r))
	}
	chain(MaxChain + 1)
	if r := c.Resolve(vnetA, "c0.corp.example", mdns.TypeA); r.Rcode != mdns.RcodeServerFailure || len(r.Answer) != 0 {
		t.Fatalf("chain of %d CNAMEs: %s", MaxChain+1, render(r))
	}
}

func TestCatalogUpdates(t *testing.T) {
	c := fixture(t)
	q := func(view, name string) string {
		t.Helper()
		return render(c.Resolve(view, name, mdns.TypeA))
	}
	pl1 := "srv1." + plZone + "."

	// A record update is visible to the next query.
	must(t, c.PutRecordSet(zoneA, aSet("SRV1", "10.0.2.99", "10.0.2.98")))
	if got, want := q(vnetA, pl1), "NOERROR aa | "+pl1+" A 10.0.2.99 | "+pl1+" A 10.0.2.98"; got != want {
		t.Fatalf("after update: %s, want %s", got, want)
	}
	// The same-name zone of the other view is untouched.
	if got, want := q(vnetB, pl1), "NOERROR aa | "+pl1+" A 10.1.2.5"; got != want {
		t.Fatalf("other zone after update: %s, want %s", got, want)
	}
	// Record set delete: NXDOMAIN, except that the TXT set keeps the name.
	c.DeleteRecordSet(zoneA, "srv1", "a")
	if got := q(vnetA, pl1); !strings.HasPrefix(got, "NOERROR aa ||") {
		t.Fatalf("after deleting the A set: %s, want NODATA", got)
	}
	c.DeleteRecordSet(zoneA, "srv1", TypeTXT)
	if got := q(vnetA, pl1); !strings.HasPrefix(got, "NXDOMAIN aa ||") {
		t.Fatalf("after deleting every set: %s, want NXDOMAIN", got)
	}
	// Zone delete: the view falls back to the public names.
	c.DeleteZone(zoneA)
	if got, want := q(vnetA, pl1), "NOERROR | "+pl1+" A 198.18.0.10"; got != want {
		t.Fatalf("after zone delete: %s, want %s", got, want)
	}
	// The zone comes back empty; the link still holds.
	must(t, c.PutZone(zoneA, plZone))
	if got, want := q(vnetA, pl1), "NXDOMAIN aa || "+plZone+". SOA ttl=10"; got != want {
		t.Fatalf("after zone re-create: %s, want %s (default SOA)", got, want)
	}
	// Link delete.
	must(t, c.PutRecordSet(zoneA, aSet("srv1", "10.0.2.5")))
	c.DeleteLink("link-a")
	if got, want := q(vnetA, pl1), "NOERROR | "+pl1+" A 198.18.0.10"; got != want {
		t.Fatalf("after link delete: %s, want %s", got, want)
	}
	// Public delete.
	c.DeletePublic("srv1")
	if got := q(vnetA, "srv1.postgres.database.azure.com"); got != "NXDOMAIN" {
		t.Fatalf("after public delete: %s, want NXDOMAIN", got)
	}
	// Deleting absent things does nothing.
	c.DeleteZone("nope")
	c.DeleteLink("nope")
	c.DeletePublic("nope")
	c.DeleteRecordSet(zoneA, "nope", TypeA)
	c.DeleteRecordSet("nope", "srv1", TypeA)
}

func TestCatalogOrderIndependent(t *testing.T) {
	// Links and record sets may arrive before their zone.
	c := NewCatalog()
	must(t, c.PutLink("l", Link{View: vnetA, Zone: zoneA}))
	must(t, c.PutRecordSet(zoneA, aSet("srv1", "10.0.2.5")))
	if got := render(c.Resolve(vnetA, "srv1."+plZone, mdns.TypeA)); got != "NXDOMAIN" {
		t.Fatalf("before the zone: %s", got)
	}
	must(t, c.PutZone(zoneA, plZone))
	if got, want := render(c.Resolve(vnetA, "srv1."+plZone, mdns.TypeA)), "NOERROR aa | srv1."+plZone+". A 10.0.2.5"; got != want {
		t.Fatalf("after the zone: %s, want %s", got, want)
	}
}

func TestCatalogUpdateAtomic(t *testing.T) {
	c := fixture(t)
	before := render(c.Resolve(vnetA, "srv1."+plZone, mdns.TypeA))
	err := c.Update(func(tx *Tx) error {
		must(t, tx.PutRecordSet(zoneA, aSet("srv1", "10.0.0.1")))
		tx.DeleteZone(zoneB)
		return tx.PutRecordSet(zoneA, RecordSet{Name: "bad", Type: TypeA, A: ips("fd00::1")})
	})
	if err == nil {
		t.Fatal("Update with an IPv6 address in an A set succeeded")
	}
	if got := render(c.Resolve(vnetA, "srv1."+plZone, mdns.TypeA)); got != before {
		t.Fatalf("a failed Update changed the catalog: %s, want %s", got, before)
	}
	if got := c.Resolve(vnetB, "srv1."+plZone, mdns.TypeA); !got.Authoritative {
		t.Fatalf("a failed Update deleted a zone: %s", render(got))
	}
	// Reset inside an Update replaces everything.
	must(t, c.Update(func(tx *Tx) error {
		tx.Reset()
		return tx.PutPublic("x", aSet("x.example", "198.18.1.1"))
	}))
	if got := render(c.Resolve(vnetA, "srv1."+plZone, mdns.TypeA)); got != "NXDOMAIN" {
		t.Fatalf("after Reset: %s", got)
	}
	if got := render(c.Resolve(vnetA, "x.example", mdns.TypeA)); got != "NOERROR | x.example. A 198.18.1.1" {
		t.Fatalf("after Reset: %s", got)
	}
}

func TestPublicSources(t *testing.T) {
	c := NewCatalog()
	must(t, c.PutPublic("b", aSet("shared.example", "198.18.0.2"), aSet("b.example", "198.18.0.3")))
	must(t, c.PutPublic("a", aSet("shared.example", "198.18.0.1")))
	get := func(name string) string { return render(c.Resolve(InternetView, name, mdns.TypeA)) }
	if got := get("shared.example"); got != "NOERROR | shared.example. A 198.18.0.1" {
		t.Fatalf("conflict: %s, want the first source's", got)
	}
	c.DeletePublic("a")
	if got := get("shared.example"); got != "NOERROR | shared.example. A 198.18.0.2" {
		t.Fatalf("after deleting the first source: %s", got)
	}
	// Replacing a source drops the names it no longer has.
	must(t, c.PutPublic("b", aSet("b.example", "198.18.0.4")))
	if got := get("shared.example"); got != "NXDOMAIN" {
		t.Fatalf("after replacing the source: %s", got)
	}
	if got := get("b.example"); got != "NOERROR | b.example. A 198.18.0.4" {
		t.Fatalf("after replacing the source: %s", got)
	}
	if err := c.PutPublic("c", aSet("d.example", "198.18.0.5"), aSet("D.example.", "198.18.0.6")); err == nil {
		t.Fatal("two A sets of one name in one source accepted")
	}
}

func TestValidation(t *testing.T) {
	c := NewCatalog()
	bad := []struct {
		name string
		err  error
	}{
		{"empty zone ID", c.PutZone("", "a.example")},
		{"root zone", c.PutZone("z", ".")},
		{"bad zone name", c.PutZone("z", "a..example")},
		{"empty link view", c.PutLink("l", Link{Zone: "z"})},
		{"empty link zone", c.PutLink("l", Link{View: "v"})},
		{"bad policy", c.PutLink("l", Link{View: "v", Zone: "z", ResolutionPolicy: "Sometimes"})},
		{"unknown type", c.PutRecordSet("z", RecordSet{Name: "a", Type: "NS"})},
		{"absolute name in zone", c.PutRecordSet("z", aSet("a.example.", "10.0.0.1"))},
		{"IPv6 in A", c.PutRecordSet("z", RecordSet{Name: "a", Type: TypeA, A: ips("fd00::1")})},
		{"IPv4 in AAAA", c.PutRecordSet("z", RecordSet{Name: "a", Type: TypeAAAA, AAAA: ips("10.0.0.1")})},
		{"other type's data", c.PutRecordSet("z", RecordSet{Name: "a", Type: TypeA, CNAME: "b.example"})},
		{"SOA off the apex", c.PutRecordSet("z", RecordSet{Name: "a", Type: TypeSOA, SOA: &SOA{Host: "h", Email: "e"}})},
		{"bad CNAME", c.PutRecordSet("z", cnameSet("a", "b..example"))},
		{"empty public source", c.PutPublic("", aSet("a.example", "198.18.0.1"))},
		{"SOA in public", c.PutPublic("s", RecordSet{Name: "a.example", Type: TypeSOA, SOA: &SOA{Host: "h", Email: "e"}})},
	}
	for _, b := range bad {
		if b.err == nil {
			t.Errorf("%s: accepted", b.name)
		}
	}
	must(t, c.PutRecordSet("z", RecordSet{Name: "a", Type: "aaaa", AAAA: ips("fd00::1")}))
}

func TestTXT(t *testing.T) {
	c := NewCatalog()
	long := strings.Repeat("x", 300)
	must(t, c.PutZone(zoneC, "corp.example"))
	must(t, c.PutLink("l", Link{View: vnetA, Zone: zoneC}))
	must(t, c.PutRecordSet(zoneC, RecordSet{Name: "t", Type: TypeTXT, TTL: 5,
		TXT: [][]string{{long}, {`back\slash "quoted"`}, {}}}))
	r := c.Resolve(vnetA, "t.corp.example", mdns.TypeTXT)
	m := new(mdns.Msg)
	m.Answer = r.Answer
	wire, err := m.Pack()
	must(t, err)
	must(t, m.Unpack(wire))
	var got [][]string
	for _, rr := range m.Answer {
		var strs []string
		for _, s := range rr.(*mdns.TXT).Txt {
			// Back from presentation form.
			strs = append(strs, strings.NewReplacer(`\\`, `\`, `\"`, `"`).Replace(s))
		}
		got = append(got, strs)
	}
	want := [][]string{{long[:255], long[255:]}, {`back\slash "quoted"`}, {""}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("TXT round trip: got %q, want %q", got, want)
	}
}

func TestCatalogEdges(t *testing.T) {
	c := NewCatalog()
	q := func(view, name string, qtype uint16) string { return render(c.Resolve(view, name, qtype)) }

	// The catalog does not share the caller's slices.
	addrs := ips("10.0.0.1")
	must(t, c.PutZone(zoneC, "corp.example"))
	must(t, c.PutLink("l", Link{View: vnetA, Zone: zoneC}))
	must(t, c.PutRecordSet(zoneC, RecordSet{Name: "Db", Type: "a", TTL: 5, A: addrs}))
	addrs[0] = netip.MustParseAddr("10.6.6.6")

	// Renaming a zone recompiles its records under the new name.
	must(t, c.PutZone(zoneC, "corp2.example"))
	if got, want := q(vnetA, "db.corp2.example", mdns.TypeA), "NOERROR aa | db.corp2.example. A 10.0.0.1"; got != want {
		t.Fatalf("after rename: %s, want %s", got, want)
	}
	if got := q(vnetA, "db.corp.example", mdns.TypeA); got != "NXDOMAIN" {
		t.Fatalf("old name after rename: %s", got)
	}

	// Delete by name in another case.
	c.DeleteRecordSet(zoneC, "DB", TypeA)
	if got := q(vnetA, "db.corp2.example", mdns.TypeA); !strings.HasPrefix(got, "NXDOMAIN aa") {
		t.Fatalf("after delete: %s", got)
	}

	// A wildcard CNAME is synthesized at the question name and chased.
	must(t, c.PutRecordSet(zoneC, cnameSet("*", "target.corp2.example")))
	must(t, c.PutRecordSet(zoneC, aSet("target", "10.0.0.2")))
	if got, want := q(vnetA, "Any.Corp2.Example", mdns.TypeA),
		"NOERROR aa | any.corp2.example. CNAME target.corp2.example. | target.corp2.example. A 10.0.0.2"; got != want {
		t.Fatalf("wildcard CNAME: %s, want %s", got, want)
	}

	// A more specific zone wins over its parent zone in one view.
	must(t, c.PutZone("sub", "db.corp2.example"))
	must(t, c.PutLink("l-sub", Link{View: vnetA, Zone: "sub"}))
	must(t, c.PutRecordSet("sub", aSet("x", "10.0.0.3")))
	if got, want := q(vnetA, "x.db.corp2.example", mdns.TypeA), "NOERROR aa | x.db.corp2.example. A 10.0.0.3"; got != want {
		t.Fatalf("nested zone: %s, want %s", got, want)
	}
	if got := q(vnetA, "y.db.corp2.example", mdns.TypeA); !strings.HasPrefix(got, "NXDOMAIN aa || db.corp2.example. SOA") {
		t.Fatalf("nested zone NXDOMAIN: %s, want the nested zone's SOA", got)
	}

	// One view linked to two zones of one name (Azure refuses it): the
	// zone with the smallest ID answers, whatever the order of the links.
	must(t, c.PutZone("z2", "twin.example"))
	must(t, c.PutZone("z1", "twin.example"))
	must(t, c.PutRecordSet("z1", aSet("a", "10.0.1.1")))
	must(t, c.PutRecordSet("z2", aSet("a", "10.0.2.2")))
	must(t, c.PutLink("t2", Link{View: vnetA, Zone: "z2"}))
	must(t, c.PutLink("t1", Link{View: vnetA, Zone: "z1"}))
	if got, want := q(vnetA, "a.twin.example", mdns.TypeA), "NOERROR aa | a.twin.example. A 10.0.1.1"; got != want {
		t.Fatalf("twin zones: %s, want %s", got, want)
	}
}

func TestRecordTypes(t *testing.T) {
	c := NewCatalog()
	must(t, c.PutZone(zoneC, "corp.example"))
	must(t, c.PutLink("l", Link{View: vnetA, Zone: zoneC}))
	must(t, c.Update(func(tx *Tx) error {
		must(t, tx.PutRecordSet(zoneC, RecordSet{Name: "v6", Type: TypeAAAA, TTL: 1, AAAA: ips("fd00::5", "::ffff:10.0.0.1")}))
		must(t, tx.PutRecordSet(zoneC, RecordSet{Name: "@", Type: TypeMX, TTL: 2, MX: []MX{{10, "Mail.Corp.Example"}, {20, "backup.corp.example."}}}))
		must(t, tx.PutRecordSet(zoneC, RecordSet{Name: "5.0.0.10", Type: TypePTR, TTL: 3, PTR: []string{"db.corp.example"}}))
		must(t, tx.PutRecordSet(zoneC, RecordSet{Name: "_pg._tcp", Type: TypeSRV, TTL: 4, SRV: []SRV{{Priority: 1, Weight: 5, Port: 5432, Target: "db.corp.example"}}}))
		return nil
	}))
	tests := []struct {
		name  string
		qtype uint16
		want  string
	}{
		{"v6.corp.example", mdns.TypeAAAA, "NOERROR aa | v6.corp.example. AAAA fd00::5 | v6.corp.example. AAAA ::ffff:10.0.0.1"},
		{"corp.example", mdns.TypeMX, "NOERROR aa | corp.example. MX 10 mail.corp.example. | corp.example. MX 20 backup.corp.example."},
		{"5.0.0.10.corp.example", mdns.TypePTR, "NOERROR aa | 5.0.0.10.corp.example. PTR db.corp.example."},
		{"_pg._tcp.corp.example", mdns.TypeSRV, "NOERROR aa | _pg._tcp.corp.example. SRV 1 5 5432 db.corp.example."},
	}
	for _, tt := range tests {
		r := c.Resolve(vnetA, tt.name, tt.qtype)
		if got := render(r); got != tt.want {
			t.Errorf("%s %s: %s, want %s", tt.name, mdns.TypeToString[tt.qtype], got, tt.want)
		}
		m := &mdns.Msg{Answer: r.Answer}
		if _, err := m.Pack(); err != nil {
			t.Errorf("%s: pack: %v", tt.name, err)
		}
	}
}
