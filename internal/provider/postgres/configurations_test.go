package postgres

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/privlink/privlink/internal/testkit"
)

func (e *env) setConfig(rg, server, name string, value *string, source string, patch bool) (pg.Configuration, error) {
	body := pg.ConfigurationForUpdate{Properties: &pg.ConfigurationProperties{Value: value, Source: &source}}
	if patch {
		p, err := e.configs.BeginUpdate(e.ctx, rg, server, name, body, nil)
		if err != nil {
			return pg.Configuration{}, err
		}
		res, err := p.PollUntilDone(e.ctx, poll)
		return res.Configuration, err
	}
	p, err := e.configs.BeginPut(e.ctx, rg, server, name, body, nil)
	if err != nil {
		return pg.Configuration{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.Configuration, err
}

func (e *env) getConfig(rg, server, name string) pg.Configuration {
	e.t.Helper()
	c, err := e.configs.Get(e.ctx, rg, server, name, nil)
	if err != nil {
		e.t.Fatalf("get configuration %s: %v", name, err)
	}
	return c.Configuration
}

// wantInvalidValue sets configuration name of server rg/server to value
// and wants Azure's InvalidParameterValue naming the setting and what it
// takes (want).
func (e *env) wantInvalidValue(t *testing.T, server, name, value, want string) {
	t.Helper()
	_, err := e.setConfig("rg", server, name, &value, "user-override", false)
	re := testkit.WantResponseError(t, err, http.StatusBadRequest, codeInvalidValue)
	if !strings.Contains(re.Error(), name) || !strings.Contains(re.Error(), want) {
		t.Errorf("%s=%q: %v", name, value, re)
	}
}

func TestConfigurations(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustCreate("rg", "cfg")

	var names []string
	pager := e.configs.NewListByServerPager("rg", "cfg", nil)
	for pager.More() {
		page, err := pager.NextPage(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page.Value {
			names = append(names, *c.Name)
			p := c.Properties
			if *p.Source != "system-default" || *p.Value != *p.DefaultValue || *p.Description == "" || *p.AllowedValues == "" ||
				*p.DataType == "" || *p.IsReadOnly || *p.IsConfigPendingRestart || !strings.HasPrefix(*p.DocumentationLink, "https://") {
				t.Errorf("%s: %+v", *c.Name, p)
			}
		}
	}
	for _, want := range []string{"max_connections", "shared_buffers", "work_mem", "log_min_duration_statement", "statement_timeout",
		"require_secure_transport", "pgbouncer.enabled", "maintenance_work_mem", "idle_in_transaction_session_timeout",
		"log_connections", "log_disconnections", "random_page_cost", "effective_cache_size", "timezone"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s missing from %v", want, names)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("not sorted: %v", names)
	}

	mc := e.getConfig("rg", "cfg", "MAX_CONNECTIONS")
	if *mc.Name != "max_connections" || *mc.ID != serverPath("rg", "cfg")+"/configurations/max_connections" || *mc.Properties.Value != "100" ||
		*mc.Properties.DataType != pg.ConfigurationDataTypeInteger || *mc.Properties.AllowedValues != "25-5000" || *mc.Properties.IsDynamicConfig ||
		*mc.Properties.DocumentationLink != "https://www.postgresql.org/docs/15/runtime-config-connection.html#GUC-MAX-CONNECTIONS" {
		t.Errorf("max_connections: %+v", mc.Properties)
	}
	if sb := e.getConfig("rg", "cfg", "shared_buffers"); *sb.Properties.Unit != "8KB" {
		t.Errorf("shared_buffers unit %q", *sb.Properties.Unit)
	}
	if rst := e.getConfig("rg", "cfg", "require_secure_transport"); *rst.Properties.AllowedValues != "on,off" || *rst.Properties.DataType != pg.ConfigurationDataTypeBoolean {
		t.Errorf("require_secure_transport: %+v", rst.Properties)
	}

	// Dynamic: into Desired at once.
	c, err := e.setConfig("rg", "cfg", "work_mem", to.Ptr("8192"), "user-override", false)
	if err != nil || *c.Properties.Value != "8192" || *c.Properties.Source != "user-override" || *c.Properties.IsConfigPendingRestart {
		t.Fatalf("work_mem: %v %+v", err, c.Properties)
	}
	if d, _ := e.desired("rg", "cfg"); d.Settings["work_mem"] != "8192" {
		t.Errorf("Desired settings %v", d.Settings)
	}
	c, err = e.setConfig("rg", "cfg", "log_connections", to.Ptr("ON"), "user-override", true)
	if err != nil || *c.Properties.Value != "on" {
		t.Fatalf("log_connections: %v", err)
	}
	if _, err := e.setConfig("rg", "cfg", "pgbouncer.enabled", to.Ptr("true"), "user-override", true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.setConfig("rg", "cfg", "timezone", to.Ptr("Europe/Paris"), "user-override", false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.setConfig("rg", "cfg", "random_page_cost", to.Ptr("1.1"), "user-override", false); err != nil {
		t.Fatal(err)
	}
	d, _ := e.desired("rg", "cfg")
	for k, v := range map[string]string{"work_mem": "8192", "log_connections": "on", "pgbouncer.enabled": "true", "timezone": "Europe/Paris", "random_page_cost": "1.1"} {
		if d.Settings[k] != v {
			t.Errorf("Desired %s = %q, want %q", k, d.Settings[k], v)
		}
	}

	// Static: recorded, pending until a restart.
	gen := d.Generation
	c, err = e.setConfig("rg", "cfg", "max_connections", to.Ptr("200"), "user-override", false)
	if err != nil || *c.Properties.Value != "200" || !*c.Properties.IsConfigPendingRestart {
		t.Fatalf("max_connections: %v %+v", err, c.Properties)
	}
	if d, _ := e.desired("rg", "cfg"); d.Settings["max_connections"] != "" || d.Generation != gen {
		t.Errorf("a static setting reached Desired before a restart: %v", d.Settings)
	}
	if !*e.getConfig("rg", "cfg", "max_connections").Properties.IsConfigPendingRestart {
		t.Error("GET does not report the pending restart")
	}
	e.action(t, "restart", "rg", "cfg")
	if d, _ := e.desired("rg", "cfg"); d.Settings["max_connections"] != "200" {
		t.Errorf("after restart: %v", d.Settings)
	}
	if mc := e.getConfig("rg", "cfg", "max_connections"); *mc.Properties.IsConfigPendingRestart || *mc.Properties.Value != "200" {
		t.Errorf("after restart: %+v", mc.Properties)
	}
	// Back to the default: pending again until the next start.
	c, err = e.setConfig("rg", "cfg", "max_connections", nil, "system-default", false)
	if err != nil || *c.Properties.Value != "100" || *c.Properties.Source != "system-default" || !*c.Properties.IsConfigPendingRestart {
		t.Fatalf("reset: %v %+v", err, c.Properties)
	}
	e.action(t, "stop", "rg", "cfg")
	_, err = e.setConfig("rg", "cfg", "work_mem", to.Ptr("4096"), "user-override", false)
	testkit.WantResponseError(t, err, http.StatusConflict, codeUnavailable)
	e.action(t, "start", "rg", "cfg")
	if d, _ := e.desired("rg", "cfg"); d.Settings["max_connections"] != "" {
		t.Errorf("after start: %v", d.Settings)
	}
	if mc := e.getConfig("rg", "cfg", "max_connections"); *mc.Properties.IsConfigPendingRestart {
		t.Error("still pending after start")
	}
	// Resetting a dynamic setting takes it out of Desired.
	if _, err := e.setConfig("rg", "cfg", "work_mem", nil, "system-default", true); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.desired("rg", "cfg"); d.Settings["work_mem"] != "" {
		t.Errorf("work_mem still set: %v", d.Settings)
	}

	// Invalid values name the setting and what it takes.
	for _, c := range []struct{ name, value, want string }{
		{"max_connections", "10", "25-5000"},
		{"max_connections", "lots", "25-5000"},
		{"work_mem", "64MB", "64-2097151"},
		{"log_connections", "yes", "on,off"},
		{"pgbouncer.enabled", "on", "true,false"},
		{"log_statement", "everything", "none,ddl,mod,all"},
		{"random_page_cost", "-1", "0-"},
		{"random_page_cost", "NaN", "0-"},
		{"timezone", "Mars/Olympus", "[A-Za-z0-9/_+-]+"},
		{"timezone", "../../etc/passwd", "[A-Za-z0-9/_+-]+"},
	} {
		e.wantInvalidValue(t, "cfg", c.name, c.value, c.want)
	}
	_, err = e.setConfig("rg", "cfg", "work_mem", nil, "user-override", false)
	testkit.WantResponseError(t, err, http.StatusBadRequest, codeMissingParameter)
	_, err = e.setConfig("rg", "cfg", "work_mem", to.Ptr("1"), "admin-override", false)
	testkit.WantResponseError(t, err, http.StatusBadRequest, codeInvalidValue)
	_, err = e.setConfig("rg", "cfg", "fsync", to.Ptr("off"), "user-override", false)
	testkit.WantResponseError(t, err, http.StatusNotFound, "ResourceNotFound")
	_, err = e.configs.Get(e.ctx, "rg", "cfg", "fsync", nil)
	testkit.WantResponseError(t, err, http.StatusNotFound, "ResourceNotFound")
	_, err = e.configs.Get(e.ctx, "rg", "nosuch", "work_mem", nil)
	testkit.WantResponseError(t, err, http.StatusNotFound, "ParentResourceNotFound")

	// DefaultSettings agrees with the catalog's defaults.
	defs := DefaultSettings()
	if defs["max_connections"] != "100" || defs["require_secure_transport"] != "on" || defs["timezone"] != "UTC" || len(defs) != len(catalog) {
		t.Errorf("DefaultSettings: %v", defs)
	}
}
