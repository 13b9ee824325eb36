package identity

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/privlink/privlink/internal/store"
)

func TestMatchAction(t *testing.T) {
	cases := []struct {
		pattern, action string
		want            bool
	}{
		{"*", "Microsoft.Network/virtualNetworks/write", true},
		{"*/read", "Microsoft.Network/virtualNetworks/read", true},
		{"*/read", "microsoft.network/VIRTUALNETWORKS/READ", true},
		{"*/read", "Microsoft.Network/virtualNetworks/write", false},
		{"*/read", "Microsoft.Network/virtualNetworks/read/extra", false},
		{"Microsoft.Network/*", "Microsoft.Network/privateEndpoints/write", true},
		{"Microsoft.Network/*", "Microsoft.Network/virtualNetworks/subnets/join/action", true},
		{"Microsoft.Network/*", "Microsoft.NetworkFunction/x/write", false},
		{"Microsoft.Network/*", "Microsoft.DBforPostgreSQL/flexibleServers/write", false},
		{"Microsoft.Authorization/*/Write", "Microsoft.Authorization/roleAssignments/write", true},
		{"Microsoft.Authorization/*/Delete", "microsoft.authorization/roleassignments/delete", true},
		{"Microsoft.Authorization/*/Write", "Microsoft.Authorization/roleAssignments/read", false},
		{"Microsoft.Authorization/*/read", "Microsoft.Authorization/roleDefinitions/read", true},
		{"Microsoft.Resources/subscriptions/resourceGroups/read", "Microsoft.Resources/subscriptions/resourceGroups/read", true},
		{"Microsoft.Resources/subscriptions/resourceGroups/read", "Microsoft.Resources/subscriptions/resourceGroups/write", false},
		{"Microsoft.*/read", "Microsoft.Network/x/read", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"", "", true},
		{"", "x", false},
	}
	for _, tc := range cases {
		if got := MatchAction(tc.pattern, tc.action); got != tc.want {
			t.Errorf("MatchAction(%q, %q) = %v, want %v", tc.pattern, tc.action, got, tc.want)
		}
	}
}

func TestScopeCovers(t *testing.T) {
	const sub = "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590"
	cases := []struct {
		assigned, target string
		want             bool
	}{
		{"/", sub, true},
		{"/", sub + "/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v", true},
		{sub, sub, true},
		{sub, sub + "/resourceGroups/rg", true},
		{sub + "/resourceGroups/rg", sub + "/resourceGroups/rg", true},
		{sub + "/resourceGroups/rg", sub + "/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v", true},
		{sub + "/resourceGroups/rg", sub + "/resourceGroups/rg2", false}, // the prefix trap
		{sub + "/resourceGroups/rg", sub + "/resourceGroups/rg2/providers/Microsoft.Network/virtualNetworks/v", false},
		{sub + "/resourceGroups/RG", sub + "/resourcegroups/rg/providers/x/y/z", true}, // case-insensitive
		{strings.ToUpper(sub), sub, true},
		{sub + "/resourceGroups/rg", sub, false}, // narrower does not cover wider
		{sub, "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09591", false},
		{sub + "/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v", sub + "/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s", true},
		{sub + "/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v", sub + "/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v2", false},
	}
	for _, tc := range cases {
		a, err := parseScope(tc.assigned)
		if err != nil {
			t.Fatal(err)
		}
		b, err := parseScope(tc.target)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.covers(b); got != tc.want {
			t.Errorf("%s covers %s = %v, want %v", tc.assigned, tc.target, got, tc.want)
		}
	}
	for _, bad := range []string{"", "subscriptions/x", "/subscriptions", "/subscriptions//resourceGroups/rg", "/foo/bar"} {
		if _, err := parseScope(bad); err == nil {
			t.Errorf("parseScope(%q) accepted", bad)
		}
	}
}

func TestBuiltInRoles(t *testing.T) {
	role := func(id string) RoleDefinition {
		r, ok := RoleDefinitionByID("/subscriptions/x/providers/Microsoft.Authorization/roleDefinitions/" + id)
		if !ok {
			t.Fatalf("role %s missing", id)
		}
		return r
	}
	owner, contributor, reader, netContrib := role(OwnerRoleID), role(ContributorRoleID), role(ReaderRoleID), role(NetworkContributorRoleID)
	cases := []struct {
		r      RoleDefinition
		action string
		want   bool
	}{
		{owner, "Microsoft.Authorization/roleAssignments/write", true},
		{owner, "Microsoft.DBforPostgreSQL/flexibleServers/delete", true},

		{contributor, "Microsoft.Network/virtualNetworks/write", true},
		{contributor, "Microsoft.DBforPostgreSQL/flexibleServers/privateEndpointConnections/write", true},
		{contributor, "Microsoft.Authorization/roleAssignments/read", true},
		{contributor, "Microsoft.Authorization/roleAssignments/write", false},
		{contributor, "Microsoft.Authorization/roleAssignments/delete", false},
		{contributor, "Microsoft.Authorization/elevateAccess/action", false},

		{reader, "Microsoft.Network/virtualNetworks/read", true},
		{reader, "Microsoft.DBforPostgreSQL/flexibleServers/read", true},
		{reader, "Microsoft.Network/virtualNetworks/write", false},
		{reader, "Microsoft.Network/virtualNetworks/delete", false},
		{reader, "Microsoft.DBforPostgreSQL/flexibleServers/restart/action", false},

		{netContrib, "Microsoft.Network/privateEndpoints/write", true},
		{netContrib, "Microsoft.Network/virtualNetworks/subnets/join/action", true},
		{netContrib, "Microsoft.Resources/subscriptions/resourceGroups/read", true},
		{netContrib, "Microsoft.Authorization/roleAssignments/read", true},
		{netContrib, "Microsoft.Resources/subscriptions/resourceGroups/write", false},
		{netContrib, "Microsoft.DBforPostgreSQL/flexibleServers/write", false},
		{netContrib, "Microsoft.DBforPostgreSQL/flexibleServers/read", false},
		{netContrib, "Microsoft.Authorization/roleAssignments/write", false},
	}
	for _, tc := range cases {
		if got := tc.r.Allows(tc.action); got != tc.want {
			t.Errorf("%s allows %s = %v, want %v", tc.r.RoleName, tc.action, got, tc.want)
		}
	}
	if r, ok := RoleDefinitionByName("network contributor"); !ok || r.ID != NetworkContributorRoleID {
		t.Error("RoleDefinitionByName")
	}
	if _, ok := RoleDefinitionByID("/providers/Microsoft.Authorization/roleDefinitions/" + newGUID()); ok {
		t.Error("unknown role found")
	}
	if _, ok := RoleDefinitionByID("/providers/Microsoft.Network/roleDefinitions/" + ReaderRoleID); ok {
		t.Error("role found under the wrong provider")
	}
}

func TestRoleDefinitionARMJSON(t *testing.T) {
	r, _ := RoleDefinitionByID(ContributorRoleID)
	data, err := json.Marshal(r.ARMJSON("/subscriptions/abc"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		ID, Name, Type string
		Properties     struct {
			RoleName, Type   string
			AssignableScopes []string
			Permissions      []map[string][]string
		}
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m.ID != "/subscriptions/abc/providers/Microsoft.Authorization/roleDefinitions/"+ContributorRoleID || m.Name != ContributorRoleID ||
		m.Type != "Microsoft.Authorization/roleDefinitions" || m.Properties.RoleName != "Contributor" || m.Properties.Type != "BuiltInRole" ||
		!slices.Equal(m.Properties.AssignableScopes, []string{"/"}) {
		t.Fatalf("ARM JSON: %s", data)
	}
	p := m.Properties.Permissions[0]
	for _, k := range []string{"actions", "notActions", "dataActions", "notDataActions"} {
		if p[k] == nil {
			t.Errorf("permissions.%s missing (must be [] not null): %s", k, data)
		}
	}
	if !slices.Contains(p["notActions"], "Microsoft.Authorization/*/Write") {
		t.Errorf("notActions = %v", p["notActions"])
	}
	if got := r.ARMJSON("/").ID; got != "/providers/Microsoft.Authorization/roleDefinitions/"+ContributorRoleID {
		t.Errorf("tenant-level id = %s", got)
	}
}

// rbacFixture: bootstrapped admin (Owner of subA) and a second principal
// bob in the same tenant (Owner of his own subB).
type rbacFixture struct {
	svc        *Service
	st         store.Store
	admin, bob Principal
	subA, subB string
}

func newRBACFixture(t *testing.T) *rbacFixture {
	t.Helper()
	st := newStore(t)
	svc := newService(t, st, Config{})
	admin, _, err := svc.Bootstrap(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := svc.CreatePrincipal(t.Context(), CreatePrincipalOptions{DisplayName: "bob"}, "")
	if err != nil {
		t.Fatal(err)
	}
	pr := func(c Credentials) Principal {
		rec, err := svc.principalByClientID(t.Context(), c.ClientID)
		if err != nil {
			t.Fatal(err)
		}
		return Principal{TenantID: rec.TenantID, ObjectID: rec.ObjectID, ClientID: rec.ClientID, Admin: rec.Admin}
	}
	return &rbacFixture{svc: svc, st: st, admin: pr(admin), bob: pr(bob), subA: admin.SubscriptionID, subB: bob.SubscriptionID}
}

func (f *rbacFixture) grants(t *testing.T, p Principal) *Grants {
	t.Helper()
	g, err := f.svc.Grants(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGrantsAcrossSubscriptions(t *testing.T) {
	f := newRBACFixture(t)
	subA := "/subscriptions/" + f.subA
	rg := subA + "/resourceGroups/rg"
	vnet := rg + "/providers/Microsoft.Network/virtualNetworks/v"
	const (
		vnetRead  = "Microsoft.Network/virtualNetworks/read"
		vnetWrite = "Microsoft.Network/virtualNetworks/write"
		raWrite   = "Microsoft.Authorization/roleAssignments/write"
	)

	ga := f.grants(t, f.admin)
	if !ga.AnyIn(f.subA) || !ga.Allowed(raWrite, subA) || !ga.Allowed(vnetWrite, vnet) {
		t.Fatal("admin is not Owner of its subscription")
	}
	if ga.AnyIn(f.subB) || ga.Allowed(vnetRead, "/subscriptions/"+f.subB+"/resourceGroups/rg") {
		t.Fatal("admin has grants on bob's subscription")
	}

	gb := f.grants(t, f.bob)
	if gb.AnyIn(f.subA) || gb.Allowed(vnetRead, vnet) {
		t.Fatal("bob sees admin's subscription without an assignment")
	}
	if !slices.Equal(gb.ReadableScopes(), []string{"/subscriptions/" + f.subB}) {
		t.Fatalf("bob's readable scopes = %v", gb.ReadableScopes())
	}

	// Reader on resource group rg of subA.
	ra, err := f.svc.CreateRoleAssignment(t.Context(), RoleAssignment{
		Name: newGUID(), Scope: rg,
		RoleDefinitionID: "/subscriptions/" + f.subA + "/providers/Microsoft.Authorization/roleDefinitions/" + ReaderRoleID,
		PrincipalID:      f.bob.ObjectID, CreatedBy: f.admin.ObjectID,
	})
	if err != nil {
		t.Fatal(err)
	}
	gb = f.grants(t, f.bob)
	checks := []struct {
		action, scope string
		want          bool
	}{
		{vnetRead, vnet, true},
		{vnetRead, strings.ToUpper(vnet), true},
		{vnetRead, strings.Replace(vnet, "resourceGroups", "resourcegroups", 1), true},
		{vnetWrite, vnet, false},
		{vnetRead, subA + "/resourceGroups/rg2/providers/Microsoft.Network/virtualNetworks/v", false},
		{vnetRead, subA + "/resourceGroups/rg2", false},
		{"Microsoft.Resources/subscriptions/resourceGroups/read", subA, false},
		{vnetRead, "not a scope", false},
	}
	for _, c := range checks {
		if got := gb.Allowed(c.action, c.scope); got != c.want {
			t.Errorf("bob Allowed(%s, %s) = %v, want %v", c.action, c.scope, got, c.want)
		}
	}
	if !gb.AnyIn(f.subA) || !gb.AnyIn(strings.ToUpper(f.subA)) {
		t.Error("bob AnyIn(subA) false after assignment")
	}
	if got := gb.ReadableScopes(); !slices.Equal(got, sortedStrings(rg, "/subscriptions/"+f.subB)) {
		t.Errorf("ReadableScopes = %v", got)
	}

	// Contributor at the subscription: write but no role assignments.
	if _, err := f.svc.CreateRoleAssignment(t.Context(), RoleAssignment{
		Name: newGUID(), Scope: subA, RoleDefinitionID: RoleDefinitionID("/", ContributorRoleID), PrincipalID: f.bob.ObjectID,
	}); err != nil {
		t.Fatal(err)
	}
	gb = f.grants(t, f.bob)
	if !gb.Allowed(vnetWrite, subA+"/resourceGroups/rg2/providers/Microsoft.Network/virtualNetworks/v") ||
		gb.Allowed(raWrite, rg) || gb.Allowed("Microsoft.Authorization/roleAssignments/delete", subA) {
		t.Error("Contributor at subscription: wrong permissions")
	}
	if got := gb.ReadableScopes(); !slices.Equal(got, sortedStrings(subA, "/subscriptions/"+f.subB)) {
		t.Errorf("ReadableScopes with covered rg = %v", got)
	}

	// Deleting the assignments takes the grants away.
	for _, a := range gb.Assignments() {
		if strings.EqualFold(a.Scope, "/subscriptions/"+f.subB) {
			continue
		}
		if err := f.svc.DeleteRoleAssignment(t.Context(), a.Scope, a.Name); err != nil {
			t.Fatal(err)
		}
	}
	if gb = f.grants(t, f.bob); gb.AnyIn(f.subA) {
		t.Error("bob still sees subA after deletions")
	}
	if _, err := f.svc.GetRoleAssignment(t.Context(), rg, ra.Name); !errors.Is(err, ErrNotFound) || !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after delete: %v", err)
	}
	if err := f.svc.DeleteRoleAssignment(t.Context(), rg, ra.Name); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	// No stray index keys.
	for _, prefix := range []string{prefixAssignments, prefixRBAC + f.bob.ObjectID + "/", prefixRBACScope + "/subscriptions/" + f.subA + "/resourcegroups/"} {
		kvs, _, err := f.st.List(t.Context(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range kvs {
			if strings.Contains(kv.Key, ra.Name) {
				t.Errorf("stray key %s", kv.Key)
			}
		}
	}
}

func sortedStrings(s ...string) []string {
	slices.Sort(s)
	return s
}

func TestNetworkContributorGrant(t *testing.T) {
	f := newRBACFixture(t)
	rg := "/subscriptions/" + f.subA + "/resourceGroups/net"
	if _, err := f.svc.CreateRoleAssignment(t.Context(), RoleAssignment{
		Name: newGUID(), Scope: rg, RoleDefinitionID: RoleDefinitionID("/subscriptions/"+f.subA, NetworkContributorRoleID), PrincipalID: f.bob.ObjectID,
	}); err != nil {
		t.Fatal(err)
	}
	g := f.grants(t, f.bob)
	if !g.Allowed("Microsoft.Network/privateEndpoints/write", rg+"/providers/Microsoft.Network/privateEndpoints/pe") {
		t.Error("cannot write Microsoft.Network")
	}
	if g.Allowed("Microsoft.DBforPostgreSQL/flexibleServers/write", rg+"/providers/Microsoft.DBforPostgreSQL/flexibleServers/s") {
		t.Error("can write Microsoft.DBforPostgreSQL")
	}
}

func TestRoleAssignmentValidation(t *testing.T) {
	f := newRBACFixture(t)
	other, err := f.svc.CreatePrincipal(t.Context(), CreatePrincipalOptions{NewTenant: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	otherRec, err := f.svc.principalByClientID(t.Context(), other.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	subA := "/subscriptions/" + f.subA
	reader := RoleDefinitionID(subA, ReaderRoleID)
	base := RoleAssignment{Name: newGUID(), Scope: subA + "/resourceGroups/rg", RoleDefinitionID: reader, PrincipalID: f.bob.ObjectID}
	first, err := f.svc.CreateRoleAssignment(t.Context(), base)
	if err != nil {
		t.Fatal(err)
	}
	if first.PrincipalType != PrincipalTypeServicePrincipal || first.CreatedOn.IsZero() || first.ID() != base.Scope+"/providers/Microsoft.Authorization/roleAssignments/"+base.Name {
		t.Fatalf("created = %+v", first)
	}

	with := func(edit func(*RoleAssignment)) RoleAssignment { ra := base; ra.Name = newGUID(); edit(&ra); return ra }
	cases := []struct {
		name   string
		ra     RoleAssignment
		status int
		code   string
	}{
		{"name not a GUID", with(func(ra *RoleAssignment) { ra.Name = "my-assignment" }), 400, CodeInvalidRoleAssignmentID},
		{"unknown role", with(func(ra *RoleAssignment) { ra.RoleDefinitionID = RoleDefinitionID(subA, newGUID()) }), 400, CodeRoleDefinitionDoesNotExist},
		{"malformed role id", with(func(ra *RoleAssignment) { ra.RoleDefinitionID = "Reader" }), 400, CodeRoleDefinitionDoesNotExist},
		{"unknown principal", with(func(ra *RoleAssignment) { ra.PrincipalID = newGUID() }), 400, CodePrincipalNotFound},
		{"principal not a GUID", with(func(ra *RoleAssignment) { ra.PrincipalID = "bob" }), 400, CodePrincipalNotFound},
		{"same principal role scope", with(func(ra *RoleAssignment) { ra.Scope = strings.ToUpper(ra.Scope) }), 409, CodeRoleAssignmentExists},
		{"same name other role", with(func(ra *RoleAssignment) {
			ra.Name = base.Name
			ra.RoleDefinitionID = RoleDefinitionID(subA, OwnerRoleID)
		}), 400, CodeRoleAssignmentUpdateNotPermitted},
		{"same name other scope", with(func(ra *RoleAssignment) { ra.Name = base.Name; ra.Scope = subA }), 400, CodeRoleAssignmentUpdateNotPermitted},
		{"unknown subscription", with(func(ra *RoleAssignment) { ra.Scope = "/subscriptions/" + newGUID() }), 404, CodeSubscriptionNotFound},
		{"bad scope", with(func(ra *RoleAssignment) { ra.Scope = "/resourceGroups/rg" }), 400, CodeInvalidScope},
		{"user principal type", with(func(ra *RoleAssignment) { ra.PrincipalType = "User" }), 400, CodeUnmatchedPrincipalType},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.svc.CreateRoleAssignment(t.Context(), tc.ra)
			var ie *Error
			if !errors.As(err, &ie) || ie.Code != tc.code || ie.StatusCode != tc.status {
				t.Fatalf("err = %v, want %d %s", err, tc.status, tc.code)
			}
		})
	}

	// A principal of another tenant is unknown in the scope's directory,
	// as in Entra ID: it is refused and holds nothing.
	_, err = f.svc.CreateRoleAssignment(t.Context(), with(func(ra *RoleAssignment) { ra.PrincipalID = otherRec.ObjectID }))
	var ie *Error
	if !errors.As(err, &ie) || ie.Code != CodePrincipalNotFound || ie.StatusCode != 400 ||
		!strings.Contains(ie.Message, otherRec.ObjectID) || !strings.Contains(ie.Message, "directory "+f.admin.TenantID) {
		t.Fatalf("assign a principal of another tenant: %v, want 400 PrincipalNotFound naming it and the directory %s", err, f.admin.TenantID)
	}
	og, err := f.svc.Grants(t.Context(), Principal{TenantID: otherRec.TenantID, ObjectID: otherRec.ObjectID, ClientID: otherRec.ClientID})
	if err != nil || og.Allowed("Microsoft.Network/virtualNetworks/read", base.Scope+"/providers/Microsoft.Network/virtualNetworks/v") {
		t.Fatalf("cross-tenant principal can read at %s: %v", base.Scope, err)
	}
	// A check the caller passes runs in the transaction and refuses.
	refused := errors.New("scope gone")
	if _, err := f.svc.CreateRoleAssignment(t.Context(), with(func(*RoleAssignment) {}), func(store.Tx) error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("create with a failing check: %v", err)
	}

	// Identical re-creation is idempotent.
	again, err := f.svc.CreateRoleAssignment(t.Context(), base)
	if err != nil || again.Name != first.Name || !again.CreatedOn.Equal(first.CreatedOn) {
		t.Fatalf("re-create: %+v, %v", again, err)
	}
	// The role id is canonicalized to the scope's subscription.
	ra, err := f.svc.CreateRoleAssignment(t.Context(), RoleAssignment{Name: strings.ToUpper(newGUID()), Scope: subA + "/", RoleDefinitionID: ContributorRoleID, PrincipalID: strings.ToUpper(f.bob.ObjectID)})
	if err != nil {
		t.Fatal(err)
	}
	if ra.RoleDefinitionID != RoleDefinitionID(subA, ContributorRoleID) || ra.Scope != subA || ra.PrincipalID != f.bob.ObjectID || ra.Name != strings.ToLower(ra.Name) {
		t.Errorf("canonical form: %+v", ra)
	}
	got, err := f.svc.GetRoleAssignment(t.Context(), strings.ToUpper(subA), ra.Name)
	if err != nil || got.Name != ra.Name {
		t.Errorf("Get with other case: %+v %v", got, err)
	}
}

func TestListRoleAssignments(t *testing.T) {
	f := newRBACFixture(t)
	subA := "/subscriptions/" + f.subA
	mk := func(scope, role string) RoleAssignment {
		ra, err := f.svc.CreateRoleAssignment(t.Context(), RoleAssignment{Name: newGUID(), Scope: scope, RoleDefinitionID: RoleDefinitionID(subA, role), PrincipalID: f.bob.ObjectID})
		if err != nil {
			t.Fatal(err)
		}
		return ra
	}
	atRG := mk(subA+"/resourceGroups/rg", ReaderRoleID)
	atRG2 := mk(subA+"/resourceGroups/rg2", ReaderRoleID)
	atVNet := mk(subA+"/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v", NetworkContributorRoleID)
	adminOwner, err := f.svc.ListRoleAssignments(t.Context(), subA, false)
	if err != nil || len(adminOwner) != 1 || adminOwner[0].PrincipalID != f.admin.ObjectID || adminOwner[0].RoleDefinitionGUID() != OwnerRoleID {
		t.Fatalf("at subscription: %+v %v", adminOwner, err)
	}
	names := func(ras []RoleAssignment) []string {
		var n []string
		for _, ra := range ras {
			n = append(n, ra.Name)
		}
		slices.Sort(n)
		return n
	}
	list := func(scope string, below bool) []string {
		ras, err := f.svc.ListRoleAssignments(t.Context(), scope, below)
		if err != nil {
			t.Fatal(err)
		}
		return names(ras)
	}
	if got := list(subA+"/resourceGroups/rg", false); !slices.Equal(got, []string{atRG.Name}) {
		t.Errorf("at rg = %v", got)
	}
	if got, want := list(subA+"/resourceGroups/RG", true), sortedStrings(atRG.Name, atVNet.Name); !slices.Equal(got, want) {
		t.Errorf("at and below rg = %v, want %v", got, want)
	}
	if got, want := list(subA, true), sortedStrings(atRG.Name, atRG2.Name, atVNet.Name, adminOwner[0].Name); !slices.Equal(got, want) {
		t.Errorf("at and below subscription = %v, want %v", got, want)
	}
	if got := list("/", true); len(got) != 5 { // + bob's Owner on subB
		t.Errorf("everything = %v", got)
	}
	inh, err := f.svc.ListInheritedRoleAssignments(t.Context(), atVNet.Scope)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(inh), sortedStrings(adminOwner[0].Name, atRG.Name); !slices.Equal(got, want) {
		t.Errorf("inherited at vnet = %v, want %v", got, want)
	}
}

func TestRoleAssignmentARMJSON(t *testing.T) {
	f := newRBACFixture(t)
	ras, err := f.svc.ListRoleAssignments(t.Context(), "/subscriptions/"+f.subA, false)
	if err != nil || len(ras) != 1 {
		t.Fatal(ras, err)
	}
	data, err := json.Marshal(ras[0].ARMJSON())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	props := m["properties"].(map[string]any)
	if m["id"] != "/subscriptions/"+f.subA+"/providers/Microsoft.Authorization/roleAssignments/"+ras[0].Name ||
		m["name"] != ras[0].Name || m["type"] != "Microsoft.Authorization/roleAssignments" ||
		props["roleDefinitionId"] != "/subscriptions/"+f.subA+"/providers/Microsoft.Authorization/roleDefinitions/"+OwnerRoleID ||
		props["principalId"] != f.admin.ObjectID || props["principalType"] != "ServicePrincipal" ||
		props["scope"] != "/subscriptions/"+f.subA || props["createdOn"] == nil || props["createdBy"] != f.admin.ObjectID {
		t.Fatalf("ARM JSON: %s", data)
	}
}
