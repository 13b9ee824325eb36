package postgres

import (
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
)

// TestPgBouncerConfigurations holds the pgbouncer.* server parameters to
// Azure's list: defaults, bounds and their errors, canonical values in
// Desired.Settings (what pgserver reads), all dynamic.
//
// (The allowed patterns are compared up to their first backslash: the
// error's JSON doubles it.)
func TestPgBouncerConfigurations(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustCreate("rg", "pgb")
	for name, def := range map[string]string{
		"pgbouncer.enabled": "false", "pgbouncer.default_pool_size": "50", "pgbouncer.max_client_conn": "5000",
		"pgbouncer.min_pool_size": "0", "pgbouncer.pool_mode": "transaction", "pgbouncer.query_wait_timeout": "120",
		"pgbouncer.server_idle_timeout": "600", "pgbouncer.stats_users": "", "pgbouncer.ignore_startup_parameters": "",
	} {
		c := e.getConfig("rg", "pgb", name)
		if *c.Properties.DefaultValue != def || !*c.Properties.IsDynamicConfig || !strings.Contains(*c.Properties.DocumentationLink, "concepts-pgbouncer") {
			t.Errorf("%s: %+v, want default %q, dynamic, Azure's PgBouncer page", name, c.Properties, def)
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
	} {
		e.wantInvalidValue(t, "pgb", c.name, c.value, c.want)
	}
	for name, v := range map[string]string{"pgbouncer.enabled": "TRUE", "pgbouncer.pool_mode": "session", "pgbouncer.default_pool_size": "10", "pgbouncer.stats_users": "azureuser,owner-app@privlink"} {
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
