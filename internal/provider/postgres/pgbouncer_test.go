package postgres

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
)

// TestPgBouncerConfigurations holds the pgbouncer.* server parameters to
// Azure's list (MicrosoftDocs server-parameters-table-pgbouncer.md): the
// same ten names, defaults, data types, bounds and their errors, none
// read-only, all dynamic, documentationLink PgBouncer's page as Azure's;
// canonical values in Desired.Settings (what pgserver reads);
// max_prepared_statements takes only 0 (PgBouncer 1.18).
//
// (The allowed patterns are compared up to their first backslash: the
// error's JSON doubles it.)
func TestPgBouncerConfigurations(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustCreate("rg", "pgb")
	azure := map[string]struct{ def, dataType, allowed string }{
		"pgbouncer.default_pool_size":         {"50", "Integer", "1-4950"},
		"pgbouncer.enabled":                   {"false", "Boolean", "true,false"},
		"pgbouncer.ignore_startup_parameters": {"", "String", `[A-Za-z0-9_\.,]*`},
		"pgbouncer.max_client_conn":           {"5000", "Integer", "1-50000"},
		"pgbouncer.max_prepared_statements":   {"0", "Integer", "0-5000"},
		"pgbouncer.min_pool_size":             {"0", "Integer", "0-4950"},
		"pgbouncer.pool_mode":                 {"transaction", "Enumeration", "session,transaction,statement"},
		"pgbouncer.query_wait_timeout":        {"120", "Integer", "0-86400"},
		"pgbouncer.server_idle_timeout":       {"600", "Integer", "0-86400"},
		"pgbouncer.stats_users":               {"", "String", `[A-Za-z0-9,@_\-\.]*`},
	}
	var listed []string
	for pager := e.configs.NewListByServerPager("rg", "pgb", nil); pager.More(); {
		page, err := pager.NextPage(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page.Value {
			if strings.HasPrefix(*c.Name, "pgbouncer.") {
				listed = append(listed, *c.Name)
			}
		}
	}
	if want := slices.Sorted(maps.Keys(azure)); !slices.Equal(listed, want) {
		t.Errorf("pgbouncer.* listed %q, want Azure's %q", listed, want)
	}
	for name, a := range azure {
		c := e.getConfig("rg", "pgb", name)
		p := c.Properties
		if *p.DefaultValue != a.def || *p.Value != a.def || string(*p.DataType) != a.dataType || *p.AllowedValues != a.allowed ||
			!*p.IsDynamicConfig || *p.IsReadOnly || !strings.HasPrefix(*p.DocumentationLink, "https://www.pgbouncer.org/config.html") {
			t.Errorf("%s: %+v, want Azure's %+v, dynamic, not read-only, PgBouncer's config page", name, p, a)
		}
	}
	for _, c := range []struct{ name, value, want string }{
		{"pgbouncer.default_pool_size", "0", "1-4950"},
		{"pgbouncer.default_pool_size", "4951", "1-4950"},
		{"pgbouncer.max_client_conn", "50001", "1-50000"},
		{"pgbouncer.min_pool_size", "-1", "0-4950"},
		{"pgbouncer.pool_mode", "sometimes", "session,transaction,statement"},
		{"pgbouncer.query_wait_timeout", "86401", "0-86400"},
		{"pgbouncer.server_idle_timeout", "soon", "0-86400"},
		{"pgbouncer.stats_users", "a;b", "Allowed values: [A-Za-z0-9,@_"},
		{"pgbouncer.stats_users", "a, b", "Allowed values: [A-Za-z0-9,@_"},
		{"pgbouncer.stats_users", "a\nadmin_users=a", "Allowed values: [A-Za-z0-9,@_"},
		{"pgbouncer.ignore_startup_parameters", "x\nadmin_users=x", "Allowed values: [A-Za-z0-9_"},
		{"pgbouncer.ignore_startup_parameters", "search-path", "Allowed values: [A-Za-z0-9_"},
		{"pgbouncer.max_prepared_statements", "5001", "Allowed values: 0-5000"},
		{"pgbouncer.max_prepared_statements", "100", "privlink takes only 0: privlink's PgBouncer is Debian 12's 1.18"},
	} {
		e.wantInvalidValue(t, "pgb", c.name, c.value, c.want)
	}
	for name, v := range map[string]string{"pgbouncer.enabled": "TRUE", "pgbouncer.pool_mode": "session", "pgbouncer.default_pool_size": "10", "pgbouncer.stats_users": "azureuser,owner-app@privlink",
		"pgbouncer.max_prepared_statements": "0"} {
		if _, err := e.setConfig("rg", "pgb", name, to.Ptr(v), "user-override", true); err != nil {
			t.Fatalf("%s=%s: %v", name, v, err)
		}
	}
	d, _ := e.desired("rg", "pgb")
	for k, v := range map[string]string{"pgbouncer.enabled": "true", "pgbouncer.pool_mode": "session", "pgbouncer.default_pool_size": "10", "pgbouncer.stats_users": "azureuser,owner-app@privlink"} {
		if d.Settings[k] != v {
			t.Errorf("Desired %s = %q, want %q", k, d.Settings[k], v)
		}
	}
	if !d.PgBouncerEnabled() {
		t.Error("PgBouncerEnabled false with pgbouncer.enabled true")
	}
}
