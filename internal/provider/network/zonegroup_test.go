package network

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/testkit"
)

const pgZone = "privatelink.postgres.database.azure.com"

func zoneIDIn(s, rg, name string) string {
	return "/subscriptions/" + s + "/resourceGroups/" + rg + "/providers/Microsoft.Network/privateDnsZones/" + name
}

func (e *peEnv) zone(c *clients, rg, name string) {
	e.t.Helper()
	p, err := c.zones.BeginCreateOrUpdate(e.ctx, rg, name, armprivatedns.PrivateZone{Location: to.Ptr("global")}, nil)
	if err == nil {
		_, err = p.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		e.t.Fatalf("create zone %s: %v", name, err)
	}
}

func groupBody(zones ...string) armnetwork.PrivateDNSZoneGroup {
	g := armnetwork.PrivateDNSZoneGroup{Properties: &armnetwork.PrivateDNSZoneGroupPropertiesFormat{}}
	for i, z := range zones {
		g.Properties.PrivateDNSZoneConfigs = append(g.Properties.PrivateDNSZoneConfigs, &armnetwork.PrivateDNSZoneConfig{
			Name: to.Ptr("config" + string(rune('a'+i))), Properties: &armnetwork.PrivateDNSZonePropertiesFormat{PrivateDNSZoneID: to.Ptr(z)},
		})
	}
	return g
}

func (e *peEnv) putGroup(c *clients, rg, pe, name string, g armnetwork.PrivateDNSZoneGroup) (armnetwork.PrivateDNSZoneGroup, error) {
	p, err := c.zgroups.BeginCreateOrUpdate(e.ctx, rg, pe, name, g, nil)
	if err != nil {
		return armnetwork.PrivateDNSZoneGroup{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.PrivateDNSZoneGroup, err
}

func (e *peEnv) dns() []EndpointDNS {
	e.t.Helper()
	all, err := EndpointsDNS(arm.ReadOnly(e.ctx, e.st))
	if err != nil {
		e.t.Fatal(err)
	}
	return all
}

// TestZoneGroup: validation (the zone exists, at most five configs, one
// group per endpoint, join rights on the zone), recordSets from the real
// record sets, and the read API for the DNS controller.
func TestZoneGroup(t *testing.T) {
	e := newPEEnv(t)
	o := e.as("owner", sub)
	e.group(o, "rg")
	e.network(o, "rg", "vnet")
	e.server(o, "rg", "srv1")
	pe := e.mustEndpoint(o, "rg", "pe1", endpointBody(subnetIDIn(sub, "rg", "vnet", "pe"), serverIDIn(sub, "rg", "srv1"), false, ""))
	zone := zoneIDIn(sub, "rg", pgZone)

	list := "properties.privateDnsZoneConfigs"
	six := make([]string, 6)
	for i := range six {
		six[i] = zoneIDIn(sub, "rg", "z"+string(rune('0'+i))+".example")
	}
	for _, c := range []struct {
		name, code, target, word string
		body                     armnetwork.PrivateDNSZoneGroup
	}{
		{"missing zone", "InvalidResourceReference", list + "[0].properties.privateDnsZoneId", "not found", groupBody(zone)},
		{"six", "PrivateDnsZoneGroupHasTooManyZoneConfigs", list, "5", groupBody(six...)},
		{"none", "MissingRequiredParameter", list, "zone configs", groupBody()},
		{"not a zone", "LinkedInvalidPropertyId", list + "[0].properties.privateDnsZoneId", "privateDnsZones", groupBody(subnetIDIn(sub, "rg", "vnet", "pe"))},
		{"no zone id", "MissingRequiredParameter", list + "[0].properties.privateDnsZoneId", "privateDnsZoneId", groupBody("")},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.putGroup(o, "rg", "pe1", "default", c.body)
			wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, c.code), c.target, c.word)
		})
	}
	e.zone(o, "rg", pgZone)
	_, err := e.putGroup(o, "rg", "pe1", "default", groupBody(zone, strings.ToUpper(zone)))
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, "InvalidParameter"), list+"[1].properties.privateDnsZoneId", "twice")
	_, err = e.putGroup(o, "rg", "nosuch", "default", groupBody(zone))
	testkit.WantARMError(t, err, http.StatusNotFound, "ParentResourceNotFound")

	// Status codes: 201, then 200.
	b, _ := json.Marshal(groupBody(zone))
	path := str(pe.ID) + "/privateDnsZoneGroups/default?api-version=2025-01-01"
	for i, want := range []int{http.StatusCreated, http.StatusOK} {
		code, body, h := e.rawAs("owner", http.MethodPut, path, string(b))
		if code != want || h.Get("Azure-AsyncOperation") == "" || !strings.Contains(string(body), `"provisioningState":"Succeeded"`) {
			t.Fatalf("PUT #%d = %d %s", i, code, body)
		}
	}
	g, err := o.zgroups.Get(e.ctx, "rg", "pe1", "default", nil)
	if err != nil || str(g.ID) != str(pe.ID)+"/privateDnsZoneGroups/default" || len(g.Properties.PrivateDNSZoneConfigs) != 1 ||
		str(g.Properties.PrivateDNSZoneConfigs[0].Properties.PrivateDNSZoneID) != zone || len(g.Properties.PrivateDNSZoneConfigs[0].Properties.RecordSets) != 0 {
		t.Fatalf("group = %+v %v", g, err)
	}
	_, err = e.putGroup(o, "rg", "pe1", "second", groupBody(zone))
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, "OnlyOnePrivateDnsZoneGroupPermitted"), "name", "default")

	// The read API.
	all := e.dns()
	if len(all) != 1 {
		t.Fatalf("EndpointsDNS = %+v", all)
	}
	d := all[0]
	if d.Endpoint.String() != str(pe.ID) || d.Server.String() != serverIDIn(sub, "rg", "srv1") || d.ServerName != "srv1" ||
		d.Addr != netip.MustParseAddr("10.0.1.4") || !d.Approved || len(d.Zones) != 1 || d.Zones[0].String() != zone ||
		d.ZoneGroup.String() != str(g.ID) {
		t.Errorf("EndpointDNS = %+v", d)
	}
	var keys []string
	kvs, _, err := e.st.List(e.ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if IsEndpointDNSKey(kv.Key) {
			keys = append(keys, kv.Key)
			if id, ok := EndpointOfKey(kv.Key); ok && !id.Equal(d.Endpoint) {
				t.Errorf("EndpointOfKey(%s) = %s", kv.Key, id)
			}
		}
	}
	// The endpoint, its group, the server's connection, the index entry.
	if len(keys) != 4 {
		t.Errorf("endpoint DNS keys = %v", keys)
	}

	// recordSets come from the real record set, when it holds the address.
	if _, err := o.records.CreateOrUpdate(e.ctx, "rg", pgZone, armprivatedns.RecordTypeA, "srv1", armprivatedns.RecordSet{
		Properties: &armprivatedns.RecordSetProperties{TTL: to.Ptr[int64](10), ARecords: []*armprivatedns.ARecord{{IPv4Address: to.Ptr("10.9.9.9")}}},
	}, nil); err != nil {
		t.Fatal(err)
	}
	if g, _ := o.zgroups.Get(e.ctx, "rg", "pe1", "default", nil); len(g.Properties.PrivateDNSZoneConfigs[0].Properties.RecordSets) != 0 {
		t.Errorf("a record set without the endpoint's address is reported")
	}
	if _, err := o.records.CreateOrUpdate(e.ctx, "rg", pgZone, armprivatedns.RecordTypeA, "srv1", armprivatedns.RecordSet{
		Properties: &armprivatedns.RecordSetProperties{TTL: to.Ptr[int64](10), ARecords: []*armprivatedns.ARecord{{IPv4Address: to.Ptr("10.9.9.9")}, {IPv4Address: to.Ptr("10.0.1.4")}}},
	}, nil); err != nil {
		t.Fatal(err)
	}
	groups := collect(t, e.ctx, o.zgroups.NewListPager("pe1", "rg", nil), func(p armnetwork.PrivateDNSZoneGroupsClientListResponse) []*armnetwork.PrivateDNSZoneGroup {
		return p.Value
	})
	if len(groups) != 1 {
		t.Fatalf("groups = %d", len(groups))
	}
	rs := groups[0].Properties.PrivateDNSZoneConfigs[0].Properties.RecordSets
	if len(rs) != 1 || str(rs[0].RecordType) != "A" || str(rs[0].RecordSetName) != "srv1" || str(rs[0].Fqdn) != "srv1."+pgZone ||
		*rs[0].TTL != 10 || len(rs[0].IPAddresses) != 1 || str(rs[0].IPAddresses[0]) != "10.0.1.4" {
		t.Errorf("recordSets = %+v", rs)
	}

	// A pending endpoint is listed, not approved.
	pe2 := e.mustEndpoint(o, "rg", "pe2", endpointBody(subnetIDIn(sub, "rg", "vnet", "pe"), serverIDIn(sub, "rg", "srv1"), true, ""))
	if _, err := e.putGroup(o, "rg", "pe2", "default", groupBody(zone)); err != nil {
		t.Fatal(err)
	}
	all = e.dns()
	if len(all) != 2 || all[1].Endpoint.String() != str(pe2.ID) || all[1].Approved || all[1].Addr != netip.MustParseAddr("10.0.1.5") {
		t.Errorf("EndpointsDNS = %+v", all)
	}
	one, err := EndpointDNSOf(arm.ReadOnly(e.ctx, e.st), d.Endpoint)
	if err != nil || one == nil || !one.Approved {
		t.Errorf("EndpointDNSOf = %+v %v", one, err)
	}

	// Another tenant cannot use a zone it may not join; its own zone is
	// fine, and listed across subscriptions.
	c := e.as("consumer", sub2)
	e.group(c, "crg")
	e.network(c, "crg", "cvnet")
	e.mustEndpoint(c, "crg", "cpe", endpointBody(subnetIDIn(sub2, "crg", "cvnet", "pe"), serverIDIn(sub, "rg", "srv1"), false, ""))
	_, err = e.putGroup(c, "crg", "cpe", "default", groupBody(zone))
	wantTarget(t, testkit.WantARMError(t, err, http.StatusForbidden, "LinkedAuthorizationFailed"), list+"[0].properties.privateDnsZoneId", "privateDnsZones/join/action")
	e.zone(c, "crg", pgZone)
	if _, err := e.putGroup(c, "crg", "cpe", "default", groupBody(zoneIDIn(sub2, "crg", pgZone))); err != nil {
		t.Fatal(err)
	}
	if all = e.dns(); len(all) != 3 {
		t.Errorf("EndpointsDNS across subscriptions = %d", len(all))
	}

	// Deleting the group (202, then 204) and the endpoint drop them.
	gpath := str(pe2.ID) + "/privateDnsZoneGroups/default?api-version=2025-01-01"
	if code, _, h := e.rawAs("owner", http.MethodDelete, gpath, ""); code != http.StatusAccepted || h.Get("Location") == "" {
		t.Errorf("DELETE group = %d %v", code, h)
	}
	if code, _, _ := e.rawAs("owner", http.MethodDelete, gpath, ""); code != http.StatusNoContent {
		t.Errorf("second DELETE group = %d", code)
	}
	if err := e.deleteEndpoint(o, "rg", "pe1"); err != nil {
		t.Fatal(err)
	}
	if all = e.dns(); len(all) != 1 || !strings.Contains(all[0].Endpoint.String(), sub2) {
		t.Errorf("EndpointsDNS after deletes = %+v", all)
	}
	if _, err := o.zgroups.Get(e.ctx, "rg", "pe1", "default", nil); err == nil {
		t.Error("the group outlived its endpoint")
	}
	if d, err := EndpointDNSOf(arm.ReadOnly(e.ctx, e.st), d.Endpoint); err != nil || d != nil {
		t.Errorf("EndpointDNSOf a deleted endpoint = %+v %v", d, err)
	}
}

// TestEndpointDNSKeys pins the key helpers to arm.DocKey.
func TestEndpointDNSKeys(t *testing.T) {
	pe, _ := arm.ParseID(resID("rg", "privateEndpoints", "PE1"))
	group := pe.Child("privateDnsZoneGroups", "default")
	conn, _ := arm.ParseID(serverIDIn(sub, "rg", "srv1") + "/privateEndpointConnections/pe1.x")
	nic, _ := arm.ParseID(resID("rg", "networkInterfaces", "n"))
	server, _ := arm.ParseID(serverIDIn(sub, "rg", "srv1"))
	for _, c := range []struct {
		key      string
		dns      bool
		endpoint bool
	}{
		{arm.DocKey(pe), true, true},
		{arm.DocKey(group), true, true},
		{EndpointDNSIndexPrefixKey(pe), true, true},
		{arm.DocKey(conn), true, false},
		{arm.DocKey(nic), false, false},
		{arm.DocKey(server), false, false},
		{"ops/x", false, false},
		{"", false, false},
	} {
		if got := IsEndpointDNSKey(c.key); got != c.dns {
			t.Errorf("IsEndpointDNSKey(%q) = %v", c.key, got)
		}
		id, ok := EndpointOfKey(c.key)
		if ok != c.endpoint || ok && !id.Equal(pe) {
			t.Errorf("EndpointOfKey(%q) = %s %v", c.key, id, ok)
		}
	}
}

// TestRecreatedServer: after a server is deleted and re-created under its
// name, the old endpoint is Disconnected and not approved for DNS, a new
// endpoint with a zone group is, and each has its own connection state.
func TestRecreatedServer(t *testing.T) {
	e := newPEEnv(t)
	o := e.as("owner", sub)
	e.group(o, "rg")
	e.network(o, "rg", "vnet")
	e.zone(o, "rg", pgZone)
	e.server(o, "rg", "srv1")
	body := endpointBody(subnetIDIn(sub, "rg", "vnet", "pe"), serverIDIn(sub, "rg", "srv1"), false, "")
	e.mustEndpoint(o, "rg", "old", body)
	if _, err := e.putGroup(o, "rg", "old", "default", groupBody(zoneIDIn(sub, "rg", pgZone))); err != nil {
		t.Fatal(err)
	}
	if all := e.dns(); len(all) != 1 || !all[0].Approved {
		t.Fatalf("before = %+v", all)
	}
	if err := e.deleteServer(o, "rg", "srv1"); err != nil {
		t.Fatal(err)
	}
	if all := e.dns(); len(all) != 1 || all[0].Approved {
		t.Fatalf("after the server went = %+v", all)
	}
	e.server(o, "rg", "srv1")
	e.mustEndpoint(o, "rg", "new", body)
	if _, err := e.putGroup(o, "rg", "new", "default", groupBody(zoneIDIn(sub, "rg", pgZone))); err != nil {
		t.Fatal(err)
	}
	all := e.dns()
	if len(all) != 2 || all[0].Endpoint.Name() != "new" || !all[0].Approved || all[1].Endpoint.Name() != "old" || all[1].Approved ||
		all[0].ServerName != "srv1" || all[0].Addr == all[1].Addr {
		t.Fatalf("after re-creation = %+v", all)
	}
	wantState(t, e.getEndpoint(o, "rg", "old"), "Disconnected", "was deleted")
	if n := len(e.connections(o, "rg", "srv1")); n != 1 {
		t.Errorf("connections on the new server = %d", n)
	}
}
