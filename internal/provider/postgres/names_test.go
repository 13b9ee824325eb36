package postgres

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/testkit"
)

// TestNamesAcrossSubscriptions: a server name is taken everywhere once
// one subscription uses it, and free everywhere once that server is gone.
func TestNamesAcrossSubscriptions(t *testing.T) {
	e := newEnv(t)
	_, opts := secondRouter(t, e.st, e.prov)
	other := &env{t: t, ctx: e.ctx, st: e.st, prov: e.prov}
	other.clients(sub2, e.srv.Cred, opts)
	e.group("rg")
	other.group("rg")
	e.mustCreate("rg", "shared")

	_, err := other.create("rg", "shared", serverBody())
	re := testkit.WantResponseError(t, err, http.StatusConflict, codeNameTaken)
	if !strings.Contains(re.Error(), "Specified server name is already used") {
		t.Errorf("message: %v", re)
	}
	for _, c := range []*env{e, other} {
		res, err := c.names.CheckGlobally(c.ctx, pg.CheckNameAvailabilityRequest{Name: to.Ptr("shared"), Type: to.Ptr("Microsoft.DBforPostgreSQL/flexibleServers")}, nil)
		if err != nil || *res.NameAvailable || *res.Reason != pg.CheckNameAvailabilityReasonAlreadyExists {
			t.Fatalf("checkNameAvailability: %v %+v", err, res)
		}
	}
	// The other subscription does not see the server itself.
	_, err = other.servers.Get(other.ctx, "rg", "shared", nil)
	testkit.WantResponseError(t, err, http.StatusNotFound, "ResourceNotFound")

	if err := e.deleteServer("rg", "shared"); err != nil {
		t.Fatal(err)
	}
	s, err := other.create("rg", "shared", serverBody())
	if err != nil {
		t.Fatalf("create after the name was freed: %v", err)
	}
	if !strings.Contains(*s.ID, sub2) {
		t.Errorf("id %s", *s.ID)
	}
	_, err = e.create("rg", "shared", serverBody())
	testkit.WantResponseError(t, err, http.StatusConflict, codeNameTaken)
}

func TestCheckNameAvailability(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustCreate("rg", "taken")
	check := func(name string) pg.NameAvailabilityModel {
		t.Helper()
		res, err := e.names.CheckWithLocation(e.ctx, "westeurope", pg.CheckNameAvailabilityRequest{Name: to.Ptr(name), Type: to.Ptr("Microsoft.DBforPostgreSQL/flexibleServers")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res.NameAvailabilityModel
	}
	if r := check("free-name"); !*r.NameAvailable || *r.Name != "free-name" || *r.Type != typeServer {
		t.Errorf("free: %+v", r)
	}
	if r := check("taken"); *r.NameAvailable || *r.Reason != pg.CheckNameAvailabilityReasonAlreadyExists || *r.Message != "Specified server name is already used." {
		t.Errorf("taken: %+v", r)
	}
	for _, bad := range []string{"Upper", "under_score", "ab", "-lead", "trail-", "dot.ted", strings.Repeat("a", 64)} {
		if r := check(bad); *r.NameAvailable || *r.Reason != pg.CheckNameAvailabilityReasonInvalid || !strings.Contains(*r.Message, "unsupported characters") {
			t.Errorf("%q: %+v", bad, r)
		}
	}
	_, err := e.names.CheckGlobally(e.ctx, pg.CheckNameAvailabilityRequest{Name: to.Ptr("x"), Type: to.Ptr("Microsoft.Sql/servers")}, nil)
	testkit.WantResponseError(t, err, http.StatusBadRequest, codeInvalidValue)
	_, err = e.names.CheckGlobally(e.ctx, pg.CheckNameAvailabilityRequest{}, nil)
	testkit.WantResponseError(t, err, http.StatusBadRequest, codeMissingParameter)
	if r := e.raw(http.MethodGet, "/subscriptions/"+sub+"/providers/Microsoft.DBforPostgreSQL/checkNameAvailability", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET checkNameAvailability: %d", r.status)
	}
	// Invalid names are refused on create with the same explanation.
	for _, bad := range []string{"Upper", "under_score", "ab"} {
		_, err := e.create("rg", bad, serverBody())
		testkit.WantResponseError(t, err, http.StatusBadRequest, codeInvalidValue)
	}
}

// TestNameReuse: delete a server and create one of the same name, again
// and again; nothing is left over in between.
func TestNameReuse(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	for i := range 4 {
		s := e.mustCreate("rg", "again")
		if _, err := e.rules.BeginCreateOrUpdate(e.ctx, "rg", "again", "r", pg.FirewallRule{Properties: &pg.FirewallRuleProperties{
			StartIPAddress: to.Ptr("10.0.0.1"), EndIPAddress: to.Ptr("10.0.0.2")}}, nil); err != nil {
			t.Fatal(err)
		}
		d, _ := e.desired("rg", "again")
		if d.ServiceAddr != netip.MustParseAddr("169.254.1.1") || d.Generation != 1 {
			t.Errorf("round %d: %s, generation %d", i, d.ServiceAddr, d.Generation)
		}
		if *s.Properties.State != pg.ServerStateReady {
			t.Errorf("round %d: state %s", i, *s.Properties.State)
		}
		if err := e.deleteServer("rg", "again"); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if left := append(e.keys("pg/"), e.keys("arm/"+sub+"/microsoft.dbforpostgresql")...); len(left) != 0 {
			t.Fatalf("round %d: left over: %v", i, left)
		}
	}
}

// TestAddresses: servers get distinct addresses, and freed ones are
// reused.
func TestAddresses(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	for _, n := range []string{"a01", "a02", "a03"} {
		e.mustCreate("rg", n)
	}
	want := map[string][2]string{"a01": {"169.254.1.1", "198.18.1.1"}, "a02": {"169.254.1.2", "198.18.1.2"}, "a03": {"169.254.1.3", "198.18.1.3"}}
	for n, w := range want {
		d, _ := e.desired("rg", n)
		if d.ServiceAddr.String() != w[0] || d.PublicAddr.String() != w[1] {
			t.Errorf("%s: %s %s, want %v", n, d.ServiceAddr, d.PublicAddr, w)
		}
	}
	if err := e.deleteServer("rg", "a02"); err != nil {
		t.Fatal(err)
	}
	e.mustCreate("rg", "a04")
	if d, _ := e.desired("rg", "a04"); d.ServiceAddr.String() != "169.254.1.2" || d.PublicAddr.String() != "198.18.1.2" {
		t.Errorf("a04: %s %s", d.ServiceAddr, d.PublicAddr)
	}
	// The allocator skips .0, .255, 169.254.0.0/24 and the metadata address.
	used := map[netip.Addr]bool{}
	for a := netip.MustParseAddr("169.254.1.1"); a.Less(netip.MustParseAddr("169.254.169.254")); a = a.Next() {
		used[a] = true
	}
	_, err := e.st.Txn(e.ctx, func(tx store.Tx) error {
		a, err := allocate(tx, serverID(t, "rg", "x"), used, servicePool)
		if a.String() != "169.254.170.1" && err == nil { // not .254 (metadata), not .255
			t.Errorf("after 169.254.169.253 came %s", a)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestReleaseName(t *testing.T) {
	e := newEnv(t, WithController())
	e.group("rg")
	id := serverID(t, "rg", "held")
	p, err := e.servers.BeginCreateOrUpdate(e.ctx, "rg", "held", serverBody(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = p
	txn := func(fn func(tx store.Tx) error) error {
		_, err := e.st.Txn(context.Background(), fn)
		return err
	}
	if err := txn(func(tx store.Tx) error { return ReleaseName(tx, "held") }); err == nil {
		t.Error("released the name of an existing server")
	}
	if err := txn(func(tx store.Tx) error { return Deleted(tx, id) }); err == nil {
		t.Error("Deleted accepted an existing server")
	}
	if err := txn(func(tx store.Tx) error { return ReleaseName(tx, "never-held") }); err != nil {
		t.Errorf("releasing a free name: %v", err)
	}
	// Delete: the document goes, the name and record stay for the controller.
	if _, err := e.servers.BeginDelete(e.ctx, "rg", "held", nil); err != nil {
		t.Fatal(err)
	}
	if ok, _ := arm.Exists(arm.ReadOnly(e.ctx, e.st), id); ok {
		t.Error("document left after delete")
	}
	if len(e.keys("pg/names/held")) != 1 || len(e.keys("pg/addrs/")) != 2 {
		t.Errorf("reservations: %v %v", e.keys("pg/names/"), e.keys("pg/addrs/"))
	}
	if err := txn(func(tx store.Tx) error { return Deleted(tx, id) }); err != nil {
		t.Fatal(err)
	}
	if left := e.keys("pg/"); len(left) != 0 {
		t.Errorf("left over: %v", left)
	}
}
