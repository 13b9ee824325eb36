package network

import (
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/testkit"
)

func route(name, prefix string, hop armnetwork.RouteNextHopType, nextHop string) *armnetwork.Route {
	r := &armnetwork.Route{Name: to.Ptr(name), Properties: &armnetwork.RoutePropertiesFormat{AddressPrefix: to.Ptr(prefix), NextHopType: to.Ptr(hop)}}
	if nextHop != "" {
		r.Properties.NextHopIPAddress = to.Ptr(nextHop)
	}
	return r
}

func routeNames(rs []*armnetwork.Route) string {
	var names []string
	for _, r := range rs {
		names = append(names, str(r.Name))
	}
	return strings.Join(names, ",")
}

func TestRouteTableLifecycle(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.group("rg2")
	tbl, err := e.putTable("rg", "RT", armnetwork.RouteTable{Location: to.Ptr("westeurope"), Properties: &armnetwork.RouteTablePropertiesFormat{
		Routes: []*armnetwork.Route{
			route("default", "0.0.0.0/0", armnetwork.RouteNextHopTypeVirtualAppliance, "10.0.2.4"),
			route("blackhole", "192.168.0.0/16", armnetwork.RouteNextHopTypeNone, ""),
		}}})
	if err != nil {
		t.Fatal(err)
	}
	id := resID("rg", "routeTables", "RT")
	if str(tbl.ID) != id || str(tbl.Type) != typeRouteTable || routeNames(tbl.Properties.Routes) != "blackhole,default" ||
		*tbl.Properties.DisableBgpRoutePropagation || str((*string)(tbl.Properties.ProvisioningState)) != "Succeeded" {
		t.Fatalf("table = %s %s %s", str(tbl.ID), str(tbl.Type), routeNames(tbl.Properties.Routes))
	}
	r := tbl.Properties.Routes[1]
	if str(r.ID) != id+"/routes/default" || str(r.Type) != typeRoute || str(r.Properties.NextHopIPAddress) != "10.0.2.4" {
		t.Errorf("route = %s %s %s", str(r.ID), str(r.Type), str(r.Properties.NextHopIPAddress))
	}

	// Child routes.
	cr, err := e.putRoute("rg", "rt", "ToStorage", armnetwork.Route{Properties: &armnetwork.RoutePropertiesFormat{
		AddressPrefix: to.Ptr("Storage"), NextHopType: to.Ptr(armnetwork.RouteNextHopType("internet"))}})
	if err != nil {
		t.Fatal(err)
	}
	if *cr.Properties.NextHopType != armnetwork.RouteNextHopTypeInternet {
		t.Errorf("nextHopType = %s", *cr.Properties.NextHopType)
	}
	g, err := e.routes.Get(e.ctx, "rg", "rt", "tostorage", nil)
	if err != nil || str(g.Name) != "ToStorage" {
		t.Fatalf("get route = %s %v", str(g.Name), err)
	}
	if l := collect(t, e.ctx, e.routes.NewListPager("rg", "rt", nil), func(p armnetwork.RoutesClientListResponse) []*armnetwork.Route { return p.Value }); routeNames(l) != "blackhole,default,ToStorage" {
		t.Errorf("list routes = %s", routeNames(l))
	}
	// Without properties.routes the routes stay; [] removes them.
	kept, err := e.putTable("rg", "rt", armnetwork.RouteTable{Location: to.Ptr("westeurope"),
		Properties: &armnetwork.RouteTablePropertiesFormat{DisableBgpRoutePropagation: to.Ptr(true)}})
	if err != nil || len(kept.Properties.Routes) != 3 || !*kept.Properties.DisableBgpRoutePropagation {
		t.Fatalf("kept = %v %v", routeNames(kept.Properties.Routes), err)
	}
	d, err := e.routes.BeginDelete(e.ctx, "rg", "rt", "blackhole", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.PollUntilDone(e.ctx, poll); err != nil {
		t.Fatal(err)
	}
	_, err = e.routes.Get(e.ctx, "rg", "rt", "blackhole", nil)
	testkit.WantARMError(t, err, 404, "NotFound")
	cleared, err := e.putTable("rg", "rt", armnetwork.RouteTable{Location: to.Ptr("westeurope"),
		Properties: &armnetwork.RouteTablePropertiesFormat{Routes: []*armnetwork.Route{}}})
	if err != nil || len(cleared.Properties.Routes) != 0 {
		t.Fatalf("cleared = %v %v", routeNames(cleared.Properties.Routes), err)
	}

	if _, err := e.putTable("rg2", "rt2", armnetwork.RouteTable{Location: to.Ptr("westeurope")}); err != nil {
		t.Fatal(err)
	}
	if l := collect(t, e.ctx, e.tables.NewListPager("rg", nil), func(p armnetwork.RouteTablesClientListResponse) []*armnetwork.RouteTable { return p.Value }); len(l) != 1 {
		t.Errorf("list rg = %d", len(l))
	}
	if l := collect(t, e.ctx, e.tables.NewListAllPager(nil), func(p armnetwork.RouteTablesClientListAllResponse) []*armnetwork.RouteTable { return p.Value }); len(l) != 2 {
		t.Errorf("list all = %d", len(l))
	}
	tg, err := e.tables.UpdateTags(e.ctx, "rg", "rt", armnetwork.TagsObject{Tags: map[string]*string{"a": to.Ptr("b")}}, nil)
	if err != nil || str(tg.Tags["a"]) != "b" {
		t.Fatalf("tags = %v %v", tg.Tags, err)
	}

	// In use by a subnet.
	v := vnetBody("10.0.0.0/16", "a=10.0.1.0/24")
	v.Properties.Subnets[0].Properties.RouteTable = &armnetwork.RouteTable{ID: tbl.ID}
	e.mustVNet("rg", "v", v)
	err = e.deleteTable("rg", "rt")
	wantTarget(t, testkit.WantARMError(t, err, 400, codeRouteTableInUse), "", subnetID("rg", "v", "a"))
	e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/24"))
	if err := e.deleteTable("rg", "rt"); err != nil {
		t.Fatal(err)
	}
	_, err = e.tables.Get(e.ctx, "rg", "rt", nil)
	testkit.WantARMError(t, err, 404, "ResourceNotFound")
}

func TestRouteValidation(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	if _, err := e.putTable("rg", "rt", armnetwork.RouteTable{Location: to.Ptr("westeurope"), Properties: &armnetwork.RouteTablePropertiesFormat{
		Routes: []*armnetwork.Route{route("existing", "10.9.0.0/16", armnetwork.RouteNextHopTypeVnetLocal, "")}}}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		route  *armnetwork.Route
		code   string
		target string
	}{
		{"no properties", &armnetwork.Route{}, codeMissingParameter, "properties.nextHopType"},
		{"no next hop type", route("r", "10.0.0.0/8", "", ""), codeInvalidRequestFormat, "properties.nextHopType"},
		{"bad next hop type", route("r", "10.0.0.0/8", "Gateway", ""), codeInvalidRequestFormat, "properties.nextHopType"},
		{"no prefix", route("r", "", armnetwork.RouteNextHopTypeInternet, ""), codeMissingParameter, "properties.addressPrefix"},
		{"bad prefix", route("r", "10.0.0.1/8", armnetwork.RouteNextHopTypeInternet, ""), codeInvalidCIDR, "properties.addressPrefix"},
		{"garbage prefix", route("r", "nowhere", armnetwork.RouteNextHopTypeInternet, ""), codeInvalidPrefixFormat, "properties.addressPrefix"},
		{"appliance without address", route("r", "10.0.0.0/8", armnetwork.RouteNextHopTypeVirtualAppliance, ""), codeMissingParameter, "properties.nextHopIpAddress"},
		{"appliance with bad address", route("r", "10.0.0.0/8", armnetwork.RouteNextHopTypeVirtualAppliance, "10.0.0"), codeInvalidParameter, "properties.nextHopIpAddress"},
		{"appliance with IPv6 address", route("r", "10.0.0.0/8", armnetwork.RouteNextHopTypeVirtualAppliance, "fd00::4"), codeInvalidParameter, "properties.nextHopIpAddress"},
		{"address without appliance", route("r", "10.0.0.0/8", armnetwork.RouteNextHopTypeInternet, "10.0.0.4"), codeInvalidParameter, "properties.nextHopIpAddress"},
		{"address on a None route", route("r", "10.0.0.0/8", armnetwork.RouteNextHopTypeNone, "10.0.0.4"), codeInvalidParameter, "properties.nextHopIpAddress"},
		{"IPv6 host bits", route("r", "fd00::1/64", armnetwork.RouteNextHopTypeNone, ""), codeInvalidCIDR, "properties.addressPrefix"},
		{"duplicate prefix", route("r", "10.9.0.0/16", armnetwork.RouteNextHopTypeNone, ""), codeRouteConflict, "properties.addressPrefix"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.route.Properties != nil && c.route.Properties.NextHopType != nil && *c.route.Properties.NextHopType == "" {
				c.route.Properties.NextHopType = nil
				c.code = codeMissingParameter
			}
			before := e.snapshot()
			_, err := e.putRoute("rg", "rt", "r", *c.route)
			e.refused(t, before, err, c.code, c.target)
			// The same route inline names its index.
			_, err = e.putTable("rg", "rt2", armnetwork.RouteTable{Location: to.Ptr("westeurope"), Properties: &armnetwork.RouteTablePropertiesFormat{
				Routes: []*armnetwork.Route{route("ok", "10.8.0.0/16", armnetwork.RouteNextHopTypeNone, ""), c.route}}})
			if c.name == "duplicate prefix" {
				return // no conflict inside the inline set
			}
			if c.route.Name == nil {
				wantTarget(t, testkit.WantARMError(t, err, 400, codeMissingParameter), "properties.routes[1].name")
				return
			}
			wantTarget(t, testkit.WantARMError(t, err, 400, c.code), "properties.routes[1]."+c.target)
		})
	}
	_, err := e.putTable("rg", "rt2", armnetwork.RouteTable{Location: to.Ptr("westeurope"), Properties: &armnetwork.RouteTablePropertiesFormat{
		Routes: []*armnetwork.Route{route("a", "10.8.0.0/16", armnetwork.RouteNextHopTypeNone, ""), route("b", "10.8.0.0/16", armnetwork.RouteNextHopTypeInternet, "")}}})
	wantTarget(t, testkit.WantARMError(t, err, 400, codeRouteConflict), "properties.routes[1].properties.addressPrefix", "b", "a")
}
