package postgres

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/testkit"
)

// TestMajorVersionUpgrade: with 15, 16 and 17 installed and a dump tool
// for 15 only, a create without a version gets 15; capabilities list the
// upgrades; PATCH version 15 → 17 is accepted and recorded (the new major
// and its minor, in the document and the Desired record); a downgrade and
// an upgrade without a path are refused with codes naming why.
func TestMajorVersionUpgrade(t *testing.T) {
	e := newEnv(t, WithVersions([]string{"16.14", "17.10"}),
		WithUpgradeTargets(map[string][]string{"15": {"16", "17"}, "16": {}, "17": {}}))
	e.group("rg")
	body := serverBody()
	body.Properties.Version = nil
	s, err := e.create("rg", "upg", body)
	if err != nil || *s.Properties.Version != "15" {
		t.Fatalf("create without a version: %v, %v; want 15", err, s.Properties)
	}

	f, err := pg.NewClientFactory(sub, e.srv.Cred, e.srv.Options)
	if err != nil {
		t.Fatal(err)
	}
	own := oneCapability(t, e, f.NewCapabilitiesByServerClient().NewListPager("rg", "upg", nil),
		func(r pg.CapabilitiesByServerClientListResponse) []*pg.Capability { return r.Value })
	var ups []string
	if len(own.SupportedServerVersions) == 1 {
		for _, v := range own.SupportedServerVersions[0].SupportedVersionsToUpgrade {
			ups = append(ups, *v)
		}
	}
	if !slices.Equal(ups, []string{"16", "17"}) {
		t.Errorf("a 15 server's capabilities: %+v, want upgrades to 16 and 17", own.SupportedServerVersions[0])
	}

	s, err = e.update("rg", "upg", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{Version: to.Ptr(pg.PostgresMajorVersion("17"))}})
	if err != nil || *s.Properties.Version != "17" || *s.Properties.MinorVersion != "10" {
		t.Fatalf("upgrade to 17: %v, %+v", err, s.Properties)
	}
	d, ok, err := LoadDesired(arm.ReadOnly(e.ctx, e.st), serverID(t, "rg", "upg"))
	if err != nil || !ok || d.Version != "17" || d.MinorVersion != "10" {
		t.Fatalf("desired after the upgrade: %+v, %v", d, err)
	}

	_, err = e.update("rg", "upg", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{Version: to.Ptr(pg.PostgresMajorVersionSixteen)}})
	re := testkit.WantResponseError(t, err, http.StatusBadRequest, codeDowngrade)
	if !strings.Contains(re.Error(), "cannot be downgraded to 16") || !strings.Contains(re.Error(), "properties.version") {
		t.Errorf("downgrade: %v", re)
	}

	body = serverBody()
	body.Properties.Version = to.Ptr(pg.PostgresMajorVersionSixteen)
	if _, err := e.create("rg", "upg16", body); err != nil {
		t.Fatal(err)
	}
	_, err = e.update("rg", "upg16", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{Version: to.Ptr(pg.PostgresMajorVersion("17"))}})
	re = testkit.WantResponseError(t, err, http.StatusBadRequest, codeNoUpgradePath)
	if !strings.Contains(re.Error(), "pg_dumpall of PostgreSQL 16 or newer") {
		t.Errorf("upgrade without a dump tool: %v", re)
	}
	_, err = e.update("rg", "upg16", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{Version: to.Ptr(pg.PostgresMajorVersion("18"))}})
	testkit.WantResponseError(t, err, http.StatusBadRequest, codeInvalidValue)
}

// TestEntraVersions: with 15, 16 and 17 installed and only 15 able to
// check Entra tokens, enabling activeDirectoryAuth on a 16 server (PATCH,
// and at create) is refused naming authConfig.activeDirectoryAuth, an
// upgrade of an Entra-enabled 15 server to 16 is refused naming
// properties.version, and nothing of either is stored; a 15 server takes
// Entra, and a 16 server takes the upgrade once Entra is disabled.
func TestEntraVersions(t *testing.T) {
	e := newEnv(t, WithVersions([]string{"16.14", "17.10"}),
		WithUpgradeTargets(map[string][]string{"15": {"16", "17"}, "16": {}, "17": {}}),
		WithEntraVersions([]string{"15"}))
	e.group("rg")
	entraOn := &pg.AuthConfig{ActiveDirectoryAuth: to.Ptr(pg.MicrosoftEntraAuthEnabled)}
	patchOn := &pg.AuthConfigForPatch{ActiveDirectoryAuth: to.Ptr(pg.MicrosoftEntraAuthEnabled)}
	patchOff := &pg.AuthConfigForPatch{ActiveDirectoryAuth: to.Ptr(pg.MicrosoftEntraAuthDisabled)}

	body := serverBody()
	body.Properties.Version = to.Ptr(pg.PostgresMajorVersionSixteen)
	if _, err := e.create("rg", "s16", body); err != nil {
		t.Fatal(err)
	}
	_, err := e.update("rg", "s16", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{AuthConfig: patchOn}})
	re := testkit.WantResponseError(t, err, http.StatusBadRequest, codeEntraVersion)
	if !strings.Contains(re.Error(), "properties.authConfig.activeDirectoryAuth") || !strings.Contains(re.Error(), "no PAM support") ||
		!strings.Contains(re.Error(), "Only PostgreSQL 15") {
		t.Errorf("Entra on 16: %v", re)
	}
	if d, _ := e.desired("rg", "s16"); d.Entra != nil {
		t.Errorf("a refused PATCH stored Entra: %+v", d.Entra)
	}

	body = serverBody()
	body.Properties.Version = to.Ptr(pg.PostgresMajorVersion("17"))
	body.Properties.AuthConfig = entraOn
	_, err = e.create("rg", "s17", body)
	re = testkit.WantResponseError(t, err, http.StatusBadRequest, codeEntraVersion)
	if !strings.Contains(re.Error(), "properties.authConfig.activeDirectoryAuth") || !strings.Contains(re.Error(), "PostgreSQL 17") {
		t.Errorf("create 17 with Entra: %v", re)
	}
	if _, ok := e.desired("rg", "s17"); ok {
		t.Error("a refused create left a Desired record")
	}

	body = serverBody()
	body.Properties.AuthConfig = entraOn
	if _, err := e.create("rg", "s15", body); err != nil {
		t.Fatalf("Entra on 15: %v", err)
	}
	_, err = e.update("rg", "s15", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{Version: to.Ptr(pg.PostgresMajorVersionSixteen)}})
	re = testkit.WantResponseError(t, err, http.StatusBadRequest, codeEntraVersion)
	if !strings.Contains(re.Error(), "properties.version") || !strings.Contains(re.Error(), "cannot be upgraded to 16") {
		t.Errorf("upgrade of an Entra server to 16: %v", re)
	}
	if d, _ := e.desired("rg", "s15"); d.Version != "15" || d.Entra == nil {
		t.Errorf("a refused upgrade changed the Desired record: version %s, entra %+v", d.Version, d.Entra)
	}
	s, err := e.update("rg", "s15", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{
		Version: to.Ptr(pg.PostgresMajorVersionSixteen), AuthConfig: patchOff}})
	if err != nil || *s.Properties.Version != "16" {
		t.Fatalf("upgrade with Entra disabled in the same PATCH: %v, %+v", err, s.Properties)
	}
}
