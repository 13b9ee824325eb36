package postgres

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/testkit"
)

func (e *env) putRule(rg, server, name, start, end string) (pg.FirewallRule, error) {
	body := pg.FirewallRule{Properties: &pg.FirewallRuleProperties{}}
	if start != "-" {
		body.Properties.StartIPAddress = &start
	}
	if end != "-" {
		body.Properties.EndIPAddress = &end
	}
	p, err := e.rules.BeginCreateOrUpdate(e.ctx, rg, server, name, body, nil)
	if err != nil {
		return pg.FirewallRule{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.FirewallRule, err
}

func TestFirewallRules(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustCreate("rg", "fw1")
	r, err := e.putRule("rg", "fw1", "Office.VPN_1", "203.0.113.1", "203.0.113.20")
	if err != nil {
		t.Fatal(err)
	}
	if *r.ID != serverPath("rg", "fw1")+"/firewallRules/Office.VPN_1" || *r.Type != typeFirewallRule ||
		*r.Properties.StartIPAddress != "203.0.113.1" || *r.Properties.EndIPAddress != "203.0.113.20" || r.SystemData == nil {
		t.Errorf("rule: %+v %+v", r, r.Properties)
	}
	if _, err := e.putRule("rg", "fw1", "single", "198.51.100.7", "198.51.100.7"); err != nil {
		t.Fatalf("a one-address range: %v", err)
	}
	if _, err := e.putRule("rg", "fw1", "azure", "0.0.0.0", "0.0.0.0"); err != nil {
		t.Fatalf("Azure's allow-Azure-services rule: %v", err)
	}
	// Update keeps the first casing of the name.
	r, err = e.putRule("rg", "fw1", "office.vpn_1", "203.0.113.1", "203.0.113.30")
	if err != nil || *r.Name != "Office.VPN_1" || *r.Properties.EndIPAddress != "203.0.113.30" {
		t.Fatalf("update: %v %+v", err, r)
	}
	got, err := e.rules.Get(e.ctx, "rg", "fw1", "OFFICE.VPN_1", nil)
	if err != nil || *got.Properties.EndIPAddress != "203.0.113.30" {
		t.Fatalf("get: %v", err)
	}
	var names []string
	pager := e.rules.NewListByServerPager("rg", "fw1", nil)
	for pager.More() {
		page, err := pager.NextPage(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Value {
			names = append(names, *r.Name)
		}
	}
	if strings.Join(names, ",") != "azure,Office.VPN_1,single" {
		t.Errorf("list: %v", names)
	}
	ranges, err := FirewallRanges(arm.ReadOnly(e.ctx, e.st), serverID(t, "rg", "fw1"))
	if err != nil || len(ranges) != 3 || ranges[1].Start != netip.MustParseAddr("203.0.113.1") || ranges[1].End != netip.MustParseAddr("203.0.113.30") {
		t.Errorf("FirewallRanges: %v %v", ranges, err)
	}

	for _, c := range []struct{ name, start, end, code, target string }{
		{"v6", "2001:db8::1", "2001:db8::2", codeInvalidValue, "properties.startIpAddress"},
		{"mapped", "::ffff:10.0.0.1", "10.0.0.2", codeInvalidValue, "properties.startIpAddress"},
		{"junk", "10.0.0.1", "ten", codeInvalidValue, "properties.endIpAddress"},
		{"zeros", "010.0.0.1", "10.0.0.2", codeInvalidValue, "properties.startIpAddress"},
		{"reversed", "10.0.0.9", "10.0.0.1", codeInvalidValue, "properties.endIpAddress"},
		{"no-start", "-", "10.0.0.1", codeMissingParameter, "properties.startIpAddress"},
		{"no-end", "10.0.0.1", "-", codeMissingParameter, "properties.endIpAddress"},
		{"bad name!", "10.0.0.1", "10.0.0.2", codeInvalidValue, "firewallRuleName"},
		{strings.Repeat("n", 129), "10.0.0.1", "10.0.0.2", codeInvalidValue, "firewallRuleName"},
	} {
		_, err := e.putRule("rg", "fw1", c.name, c.start, c.end)
		re := testkit.WantResponseError(t, err, http.StatusBadRequest, c.code)
		if !strings.Contains(re.Error(), `"target": "`+c.target+`"`) {
			t.Errorf("%s: %v", c.name, re)
		}
	}
	if r := e.raw(http.MethodPut, serverPath("rg", "fw1")+"/firewallRules/empty", map[string]any{}); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), codeMissingParameter) {
		t.Errorf("no properties: %d %s", r.status, r.body)
	}
	_, err = e.putRule("rg", "nosuchserver", "r", "10.0.0.1", "10.0.0.2")
	testkit.WantResponseError(t, err, http.StatusNotFound, "ParentResourceNotFound")
	_, err = e.rules.Get(e.ctx, "rg", "fw1", "nosuchrule", nil)
	testkit.WantResponseError(t, err, http.StatusNotFound, "ResourceNotFound")

	p, err := e.rules.BeginDelete(e.ctx, "rg", "fw1", "single", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PollUntilDone(e.ctx, poll); err != nil {
		t.Fatal(err)
	}
	_, err = e.rules.Get(e.ctx, "rg", "fw1", "single", nil)
	testkit.WantResponseError(t, err, http.StatusNotFound, "ResourceNotFound")
	p, err = e.rules.BeginDelete(e.ctx, "rg", "fw1", "single", nil)
	if err != nil {
		t.Fatalf("delete a missing rule (204): %v", err)
	}
	if _, err := p.PollUntilDone(e.ctx, poll); err != nil {
		t.Fatal(err)
	}
	// Rules go with their server.
	if err := e.deleteServer("rg", "fw1"); err != nil {
		t.Fatal(err)
	}
	if left := e.keys("arm/" + sub + "/microsoft.dbforpostgresql:flexibleservers:firewallrules/"); len(left) != 0 {
		t.Errorf("rules left: %v", left)
	}
}

func TestPrivateLinkResources(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustCreate("rg", "plr")
	var all []*pg.PrivateLinkResource
	pager := e.links.NewListByServerPager("rg", "plr", nil)
	for pager.More() {
		page, err := pager.NextPage(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Value...)
	}
	if len(all) != 1 {
		t.Fatalf("%d private link resources", len(all))
	}
	r := all[0]
	if *r.Name != "postgresqlServer" || *r.ID != serverPath("rg", "plr")+"/privateLinkResources/postgresqlServer" ||
		*r.Type != "Microsoft.DBforPostgreSQL/flexibleServers/privateLinkResources" || *r.Properties.GroupID != "postgresqlServer" ||
		len(r.Properties.RequiredMembers) != 1 || *r.Properties.RequiredMembers[0] != "postgresqlServer" ||
		len(r.Properties.RequiredZoneNames) != 1 || *r.Properties.RequiredZoneNames[0] != "privatelink.postgres.database.azure.com" {
		t.Errorf("resource: %+v %+v", r, r.Properties)
	}
	got, err := e.links.Get(e.ctx, "rg", "plr", "postgresqlServer", nil)
	if err != nil || *got.Properties.GroupID != "postgresqlServer" {
		t.Fatalf("get: %v", err)
	}
	_, err = e.links.Get(e.ctx, "rg", "plr", "sqlServer", nil)
	testkit.WantResponseError(t, err, http.StatusNotFound, "ResourceNotFound")
	_, err = e.links.Get(e.ctx, "rg", "nosuch", "postgresqlServer", nil)
	testkit.WantResponseError(t, err, http.StatusNotFound, "ParentResourceNotFound")
}
