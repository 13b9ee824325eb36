package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/privlink/privlink/internal/azconfig"
	"github.com/privlink/privlink/internal/testkit"
)

const contributorRole = "b24988ac-6180-42a0-ab88-20f7382dd24c"

// TestRoleAssignmentsGoWithScope: a role assignment is deleted with the
// resource group or resource it hangs off (issue 14, defect 4). Before,
// it stayed listed, and when the Owner re-created a group or resource of
// the same name the old grantee wrote into it again. A principal of
// another tenant cannot be granted a role at all (PrincipalNotFound).
func TestRoleAssignmentsGoWithScope(t *testing.T) {
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			d := startDaemon(t, backend)
			grantee := d.principal(false)
			t.Run("ResourceGroup", func(t *testing.T) { testGroupScope(t, d, grantee) })
			t.Run("Resource", func(t *testing.T) { testResourceScope(t, d, grantee) })
			t.Run("OtherTenant", func(t *testing.T) { testOtherTenantPrincipal(t, d) })
		})
	}
}

func testGroupScope(t *testing.T, d *daemon, grantee *azconfig.Config) {
	c := ctx(t)
	sub := "/subscriptions/" + d.creds.SubscriptionID
	oid := objectID(t, grantee)
	for _, rg := range []string{"adv", "adv2"} {
		createGroup(t, d, rg)
	}
	name := assignRole(t, d.cfg, sub+"/resourceGroups/adv", oid, contributorRole)
	name2 := assignRole(t, d.cfg, sub+"/resourceGroups/adv2", oid, contributorRole)
	theirs, _ := armresources.NewResourceGroupsClient(d.creds.SubscriptionID, grantee.Credential, grantee.ClientOptions())
	tag := armresources.ResourceGroupPatchable{Tags: map[string]*string{"by": ptr("grantee")}}
	if _, err := theirs.Update(c, "adv", tag, nil); err != nil {
		t.Fatalf("Contributor on adv writes into it: %v", err)
	}

	owner, _ := armresources.NewResourceGroupsClient(d.creds.SubscriptionID, d.cfg.Credential, d.opts())
	p, err := owner.BeginDelete(c, "adv", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	// Gone from the subscription's list; the sibling adv2's stays.
	if got := assignmentsOf(t, d.cfg, sub, oid); slices.Contains(got, name) || !slices.Contains(got, name2) {
		t.Errorf("after deleting adv, the grantee's assignments in the subscription are %q: want %s (adv2) and not %s (adv)", got, name2, name)
	}
	// Re-created, the group has no assignment and the old grantee no right.
	createGroup(t, d, "adv")
	if resp := send(t, d.cfg, http.MethodGet, sub+"/resourceGroups/adv/providers/Microsoft.Authorization/roleAssignments/"+name+"?api-version=2022-04-01", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET the assignment at the re-created adv: %d, want 404", resp.StatusCode)
	}
	if got := assignmentsOf(t, d.cfg, sub+"/resourceGroups/adv", oid); len(got) != 0 {
		t.Errorf("assignments of the grantee at the re-created adv: %q, want none", got)
	}
	_, err = theirs.Update(c, "adv", tag, nil)
	testkit.WantARMError(t, err, http.StatusForbidden, "AuthorizationFailed")
	vnets, _ := armnetwork.NewVirtualNetworksClient(d.creds.SubscriptionID, grantee.Credential, grantee.ClientOptions())
	_, err = vnets.BeginCreateOrUpdate(c, "adv", "planted", vnetBody("10.9.0.0/16", nil), nil)
	testkit.WantARMError(t, err, http.StatusForbidden, "AuthorizationFailed")
	// adv2's assignment still works.
	if _, err := theirs.Update(c, "adv2", tag, nil); err != nil {
		t.Errorf("Contributor on adv2 after adv's deletion: %v", err)
	}
}

func testResourceScope(t *testing.T, d *daemon, grantee *azconfig.Config) {
	c := ctx(t)
	n := newNetClients(t, d)
	createGroup(t, d, "res")
	if _, err := putVNet(t, n, "res", "v", vnetBody("10.0.0.0/16", map[string]string{"s1": "10.0.1.0/24"})); err != nil {
		t.Fatal(err)
	}
	if _, err := putVNet(t, n, "res", "vx", vnetBody("10.1.0.0/16", nil)); err != nil {
		t.Fatal(err)
	}
	rg := "/subscriptions/" + d.creds.SubscriptionID + "/resourceGroups/res"
	vnetScope := rg + "/providers/Microsoft.Network/virtualNetworks/v"
	oid := objectID(t, grantee)
	onVNet := assignRole(t, d.cfg, vnetScope, oid, contributorRole)
	onVX := assignRole(t, d.cfg, rg+"/providers/Microsoft.Network/virtualNetworks/vx", oid, contributorRole)
	f, err := armnetwork.NewClientFactory(d.creds.SubscriptionID, grantee.Credential, grantee.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	theirs := f.NewVirtualNetworksClient()
	tags := armnetwork.TagsObject{Tags: map[string]*string{"by": ptr("grantee")}}
	if _, err := theirs.UpdateTags(c, "res", "v", tags, nil); err != nil {
		t.Fatalf("Contributor on v writes it: %v", err)
	}

	// A child resource dropped by its parent's PUT takes its assignments.
	onSubnet := assignRole(t, d.cfg, vnetScope+"/subnets/s1", oid, contributorRole)
	if _, err := putVNet(t, n, "res", "v", vnetBody("10.0.0.0/16", nil)); err != nil {
		t.Fatal(err)
	}
	if got := assignmentsOf(t, d.cfg, vnetScope, oid); slices.Contains(got, onSubnet) || !slices.Contains(got, onVNet) {
		t.Errorf("after the network's PUT dropped s1, the grantee's assignments at v are %q: want %s (v) and not %s (s1)", got, onVNet, onSubnet)
	}

	// The resource itself.
	p, err := n.vnets.BeginDelete(c, "res", "v", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	if got := assignmentsOf(t, d.cfg, rg, oid); slices.Contains(got, onVNet) || !slices.Contains(got, onVX) {
		t.Errorf("after deleting v, the grantee's assignments in res are %q: want %s (vx) and not %s (v)", got, onVX, onVNet)
	}
	// Nor can one be made at the scope while it is gone.
	if resp := putRole(t, d.cfg, vnetScope, oid, contributorRole); resp.StatusCode != http.StatusNotFound || armCode(resp) != "ResourceNotFound" {
		t.Errorf("assign at the deleted v: %d, want 404 ResourceNotFound", resp.StatusCode)
	}
	if _, err := putVNet(t, n, "res", "v", vnetBody("10.0.0.0/16", nil)); err != nil {
		t.Fatal(err)
	}
	if resp := send(t, d.cfg, http.MethodGet, vnetScope+"/providers/Microsoft.Authorization/roleAssignments/"+onVNet+"?api-version=2022-04-01", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET the assignment at the re-created v: %d, want 404", resp.StatusCode)
	}
	_, err = theirs.UpdateTags(c, "res", "v", tags, nil)
	testkit.WantARMError(t, err, http.StatusForbidden, "AuthorizationFailed")
	if _, err := theirs.UpdateTags(c, "res", "vx", tags, nil); err != nil {
		t.Errorf("Contributor on vx after v's deletion: %v", err)
	}
}

func testOtherTenantPrincipal(t *testing.T, d *daemon) {
	other := d.principal(true)
	if other.Creds.TenantID == d.creds.TenantID {
		t.Fatalf("--new-tenant principal shares the default one's tenant: %+v", other.Creds)
	}
	oid := objectID(t, other)
	resp := putRole(t, d.cfg, "/subscriptions/"+d.creds.SubscriptionID, oid, contributorRole)
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct{ Code, Message string }
	}
	_ = json.Unmarshal(b, &e)
	if resp.StatusCode != http.StatusBadRequest || e.Error.Code != "PrincipalNotFound" {
		t.Errorf("assign a principal of another tenant: %d %s, want 400 PrincipalNotFound", resp.StatusCode, b)
	}
	if got := assignmentsOf(t, d.cfg, "/subscriptions/"+d.creds.SubscriptionID, oid); len(got) != 0 {
		t.Errorf("the other tenant's principal holds %q in the subscription, want nothing", got)
	}
}

// objectID is the principal's object id, from its token.
func objectID(t *testing.T, cfg *azconfig.Config) string {
	t.Helper()
	return jwtClaims(t, token(t, cfg))["oid"].(string)
}

// assignmentsOf returns the names of the principal's assignments that
// apply at scope or below it, as the Owner lists them.
func assignmentsOf(t *testing.T, cfg *azconfig.Config, scope, principal string) []string {
	t.Helper()
	resp := send(t, cfg, http.MethodGet, scope+"/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter="+
		"principalId%20eq%20'"+principal+"'", nil)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("list role assignments at %s: %d %s", scope, resp.StatusCode, b)
	}
	var list struct{ Value []struct{ Name string } }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range list.Value {
		out = append(out, v.Name)
	}
	return out
}
