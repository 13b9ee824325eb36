package postgres

import (
	"net/http"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"

	"github.com/privlink/privlink/internal/testkit"
)

// TestAdministrators: the administrators child type through
// AdministratorsMicrosoftEntraClient: refused while Entra authentication
// is Disabled, validated, recorded in the Desired record, listed, removed.
func TestAdministrators(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustCreate("rg", "srv")
	f, err := pg.NewClientFactory(sub, e.srv.Cred, e.srv.Options)
	if err != nil {
		t.Fatal(err)
	}
	admins := f.NewAdministratorsMicrosoftEntraClient()
	const oid = "4f6c2d1e-8a7b-4c3d-9e0f-1a2b3c4d5e6f"
	put := func(oid, name string, typ pg.PrincipalType, tenant *string) error {
		p, err := admins.BeginCreateOrUpdate(e.ctx, "rg", "srv", oid, pg.AdministratorMicrosoftEntraAdd{
			Properties: &pg.AdministratorMicrosoftEntraPropertiesForAdd{PrincipalName: to.Ptr(name), PrincipalType: to.Ptr(typ), TenantID: tenant}}, nil)
		if err != nil {
			return err
		}
		_, err = p.PollUntilDone(e.ctx, poll)
		return err
	}
	testkit.WantResponseError(t, put(oid, "app", pg.PrincipalTypeServicePrincipal, nil), http.StatusBadRequest, codeEntraDisabled)
	if _, err := e.update("rg", "srv", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{
		AuthConfig: &pg.AuthConfigForPatch{ActiveDirectoryAuth: to.Ptr(pg.MicrosoftEntraAuthEnabled)}}}); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.desired("rg", "srv"); d.Entra == nil || d.Entra.TenantID != "t" || !d.Entra.PasswordAuth || len(d.Entra.Admins) != 0 {
		t.Fatalf("Desired.Entra after enabling: %+v", d.Entra)
	}
	for name, c := range map[string]struct {
		oid, name string
		typ       pg.PrincipalType
		tenant    *string
	}{
		"object id not a GUID":   {"app", "app", pg.PrincipalTypeUser, nil},
		"the password admin":     {oid, *serverBody().Properties.AdministratorLogin, pg.PrincipalTypeUser, nil},
		"reserved name":          {oid, "azure_pg_admin", pg.PrincipalTypeUser, nil},
		"pg_ name":               {oid, "pg_app", pg.PrincipalTypeUser, nil},
		"unknown principal type": {oid, "app", pg.PrincipalTypeUnknown, nil},
		"another tenant":         {oid, "app", pg.PrincipalTypeUser, to.Ptr("72f988bf-86f1-41af-91ab-2d7cd011db47")},
	} {
		if err := put(c.oid, c.name, c.typ, c.tenant); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			testkit.WantResponseError(t, err, http.StatusBadRequest, codeInvalidValue)
		}
	}
	if err := put(oid, "app@contoso", pg.PrincipalTypeServicePrincipal, nil); err != nil {
		t.Fatal(err)
	}
	testkit.WantResponseError(t, put("5f6c2d1e-8a7b-4c3d-9e0f-1a2b3c4d5e6f", "app@contoso", pg.PrincipalTypeUser, nil), http.StatusConflict, "AdministratorNameConflict")
	d, _ := e.desired("rg", "srv")
	if d.Entra == nil || len(d.Entra.Admins) != 1 || d.Entra.Admins[0] != (EntraAdmin{ObjectID: oid, PrincipalName: "app@contoso", PrincipalType: "ServicePrincipal", TenantID: "t"}) {
		t.Fatalf("Desired.Entra: %+v", d.Entra)
	}
	pager := admins.NewListByServerPager("rg", "srv", nil)
	page, err := pager.NextPage(e.ctx)
	if err != nil || len(page.Value) != 1 || *page.Value[0].Name != oid || *page.Value[0].Properties.PrincipalName != "app@contoso" {
		t.Fatalf("list: %v %+v", err, page.Value)
	}
	// Both authentications Disabled is refused; passwordAuth Disabled is recorded.
	_, err = e.update("rg", "srv", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{
		AuthConfig: &pg.AuthConfigForPatch{ActiveDirectoryAuth: to.Ptr(pg.MicrosoftEntraAuthDisabled), PasswordAuth: to.Ptr(pg.PasswordBasedAuthDisabled)}}})
	testkit.WantResponseError(t, err, http.StatusBadRequest, codeInvalidValue)
	if _, err := e.update("rg", "srv", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{
		AuthConfig: &pg.AuthConfigForPatch{PasswordAuth: to.Ptr(pg.PasswordBasedAuthDisabled)}}}); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.desired("rg", "srv"); d.Entra == nil || d.Entra.PasswordAuth {
		t.Fatalf("Desired.Entra after passwordAuth Disabled: %+v", d.Entra)
	}
	dp, err := admins.BeginDelete(e.ctx, "rg", "srv", oid, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(e.ctx, poll); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.desired("rg", "srv"); d.Entra == nil || len(d.Entra.Admins) != 0 {
		t.Fatalf("Desired.Entra after the delete: %+v", d.Entra)
	}
	if _, err := admins.Get(e.ctx, "rg", "srv", oid, nil); err == nil {
		t.Error("a deleted administrator is still there")
	}
}
