package daemon_test

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/daemon/daemontest"
	"github.com/privlink/privlink/internal/identity"
)

// The fixtures: how to write, read and act on every resource type the
// API serves, shared by the tests that walk every type (the
// linked-authorization sweep, the RBAC matrix, the request body fuzz
// target). A type the router serves without a fixture here fails them.

// env is an in-process API with the resources the fixtures reference,
// in as many resource groups as a test populates.
type env struct {
	a   *daemontest.API
	sub string
	loc string
	n   int
}

func newEnv(a *daemontest.API) *env { return &env{a: a, sub: a.Owner.Sub(), loc: "westeurope"} }

// rg is the ID of the resource group name.
func (e *env) rg(name string) string { return "/subscriptions/" + e.sub + "/resourceGroups/" + name }

// next numbers a new resource.
func (e *env) next() int { e.n++; return e.n }

const netNS = "/providers/Microsoft.Network/"

// The resources populate makes in a group g, as their IDs.
func subnetIn(g string) string   { return g + netNS + "virtualNetworks/vnet/subnets/default" }
func peSubnetIn(g string) string { return g + netNS + "virtualNetworks/vnet/subnets/pe" }
func vnetIn(g string) string     { return g + netNS + "virtualNetworks/vnet" }
func nsgIn(g string) string      { return g + netNS + "networkSecurityGroups/nsg" }
func rtIn(g string) string       { return g + netNS + "routeTables/rt" }
func asgIn(g string) string      { return g + netNS + "applicationSecurityGroups/asg" }
func zoneIn(g string) string {
	return g + netNS + "privateDnsZones/privatelink.postgres.database.azure.com"
}
func endpointIn(g string) string { return g + netNS + "privateEndpoints/pe0" }
func nicIn(g string) string      { return g + netNS + "networkInterfaces/nic0" }

// nicAddr is the address of the NIC populate makes.
const nicAddr = "10.0.0.4"

func groupName(g string) string { return g[strings.LastIndex(g, "/")+1:] }
func (e *env) server(g string) string {
	return g + "/providers/Microsoft.DBforPostgreSQL/flexibleServers/srv-" + strings.ToLower(groupName(g)) + "-" + e.sub[:8]
}

// put sends a PUT as p and fails the test unless it succeeds.
func (e *env) put(t testing.TB, p *daemontest.Principal, path string, body any) daemontest.Response {
	t.Helper()
	r := e.a.Do(t, p, http.MethodPut, path+apiVersion(path), body)
	if r.Status >= 300 {
		t.Fatalf("PUT %s: %d %s", path, r.Status, r.Body)
	}
	return r
}

// populate creates, as the Owner, the group g (an ID) and what the
// fixtures' bodies reference in it: an NSG, a route table, an ASG, a
// virtual network with subnets default and pe, the private DNS zone of
// PostgreSQL, a server, and a private endpoint pe0 to it.
func (e *env) populate(t testing.TB, g string) {
	t.Helper()
	o := e.a.Owner
	e.put(t, o, g, map[string]any{"location": e.loc})
	e.put(t, o, nsgIn(g), map[string]any{"location": e.loc})
	e.put(t, o, rtIn(g), map[string]any{"location": e.loc})
	e.put(t, o, asgIn(g), map[string]any{"location": e.loc})
	e.put(t, o, vnetIn(g), map[string]any{"location": e.loc, "properties": map[string]any{
		"addressSpace": map[string]any{"addressPrefixes": []string{"10.0.0.0/16"}},
		"subnets": []any{
			map[string]any{"name": "default", "properties": map[string]any{"addressPrefix": "10.0.0.0/24"}},
			map[string]any{"name": "pe", "properties": map[string]any{"addressPrefix": "10.0.1.0/24"}},
		}}})
	e.put(t, o, nicIn(g), map[string]any{"location": e.loc, "properties": map[string]any{"ipConfigurations": []any{
		map[string]any{"name": "ipconfig1", "properties": map[string]any{"subnet": map[string]any{"id": subnetIn(g)},
			"privateIPAllocationMethod": "Static", "privateIPAddress": nicAddr}}}}})
	e.put(t, o, zoneIn(g), map[string]any{"location": "global"})
	e.put(t, o, e.server(g), serverBody(e.loc))
	e.put(t, o, endpointIn(g), endpointBody(e.loc, peSubnetIn(g), e.server(g)))
	for _, more := range morePopulate {
		more(t, e, g)
	}
}

// morePopulate and moreFixtures let a file of its own add what its
// resource types need: steps that populate runs after its own (in the
// order the files register them, from init), and fixtures merged into
// fixtures' map. A type registered twice fails the tests that use them.
var (
	morePopulate []func(t testing.TB, e *env, g string)
	moreFixtures []func(e *env) map[string]fixture
)

// fixture is how the tests write, read and act on one resource type.
type fixture struct {
	model any // the SDK's model of the body (a value of its type)
	// path returns the request path of a new resource of the type, number
	// n, in the group g (an ID); body, a valid body for it whose
	// references stay in g.
	path func(g string, n int) string
	body func(g string, n int) map[string]any
	// inline are the arrays of child objects that the body carries whole
	// (a NIC's ipConfigurations): their own ids are no references.
	inline []string
	// sweepSkip says why the linked-authorization sweep skips the type.
	sweepSkip string
	// instance is the path of an existing resource of the type in a
	// populated group g, for types the fixture cannot create with path
	// and body (nil: one is created; with a body but no path, PUTs go to
	// the instance); for provider-level actions, the path the actions
	// hang off.
	instance func(t testing.TB, e *env, g string) string
	// list is the path of a collection of the type in g when it is not
	// the instance's (a type served as a list only).
	list func(e *env, g string) string
	// patch is a valid PATCH body (nil: a change of tags).
	patch map[string]any
	// actions are a valid body for each action (nil: none); actionsIn,
	// when set, gives them for the group g (bodies that name resources).
	actions   map[string]any
	actionsIn func(g string) map[string]any
	// stateRefusals are the error codes, by verb ("DELETE", "POST
	// start"), with which the Owner is refused for a reason of state
	// rather than of authorization.
	stateRefusals map[string]string
}

// patchBody is the PATCH body of the fixture.
func (f fixture) patchBody() map[string]any {
	if f.patch != nil {
		return f.patch
	}
	return map[string]any{"tags": map[string]any{"patched": "yes"}}
}

// fixtures returns the fixture of every resource type privlink serves.
func (e *env) fixtures() map[string]fixture {
	sub, loc := e.sub, e.loc
	tracked := func(kind string) func(g string, n int) string {
		return func(g string, n int) string { return fmt.Sprintf("%s%s%s/fx%d", g, netNS, kind, n) }
	}
	located := func(string, int) map[string]any { return map[string]any{"location": loc} }
	fx := map[string]fixture{
		"Microsoft.Resources/resourceGroups": {model: armresources.ResourceGroup{},
			path: func(g string, n int) string { return fmt.Sprintf("%s-fx%d", g, n) },
			body: located},
		"Microsoft.Resources/resources": {
			list: func(e *env, g string) string { return g + "/resources" }},
		"Microsoft.Authorization/roleAssignments": {
			sweepSkip: "a role assignment's references are its role and principal, which identity checks (TestRBACMatrix)",
			path: func(g string, n int) string {
				return fmt.Sprintf("%s/providers/Microsoft.Authorization/roleAssignments/%08x-0000-4000-8000-%012x", g, n, n)
			},
			body: func(g string, n int) map[string]any {
				// One assignment per role and principal at a scope: n picks the role.
				roles := []string{identity.ReaderRoleID, identity.ContributorRoleID, identity.NetworkContributorRoleID, identity.OwnerRoleID}
				return map[string]any{"properties": map[string]any{
					"roleDefinitionId": "/subscriptions/" + sub + "/providers/Microsoft.Authorization/roleDefinitions/" + roles[n%len(roles)],
					"principalId":      e.a.Owner.ObjectID, "principalType": "ServicePrincipal"}}
			}},
		"Microsoft.Authorization/roleDefinitions": {
			instance: func(_ testing.TB, _ *env, g string) string {
				return g + "/providers/Microsoft.Authorization/roleDefinitions/" + identity.ReaderRoleID
			}},
		"Microsoft.Network/virtualNetworks": {model: armnetwork.VirtualNetwork{}, inline: []string{"properties.subnets[]", "properties.virtualNetworkPeerings[]", "properties.subnets[].properties.delegations[]"},
			path: tracked("virtualNetworks"),
			body: func(string, int) map[string]any {
				return map[string]any{"location": loc, "properties": map[string]any{
					"addressSpace": map[string]any{"addressPrefixes": []string{"10.9.0.0/16"}},
					"subnets":      []any{map[string]any{"name": "s1", "properties": map[string]any{"addressPrefix": "10.9.0.0/24"}}}}}
			}},
		"Microsoft.Network/virtualNetworks/subnets": {model: armnetwork.Subnet{}, inline: []string{"properties.delegations[]"},
			path: func(g string, n int) string { return fmt.Sprintf("%s/subnets/fx%d", vnetIn(g), n) },
			body: func(_ string, n int) map[string]any {
				return map[string]any{"properties": map[string]any{"addressPrefix": fmt.Sprintf("10.0.%d.%d/28", 2+n/16, n%16*16)}}
			}},
		"Microsoft.Network/networkSecurityGroups": {model: armnetwork.SecurityGroup{}, inline: []string{"properties.securityRules[]", "properties.defaultSecurityRules[]"},
			path: tracked("networkSecurityGroups"),
			body: func(string, int) map[string]any {
				return map[string]any{"location": loc, "properties": map[string]any{"securityRules": []any{
					map[string]any{"name": "r1", "properties": ruleProps(100)}}}}
			}},
		"Microsoft.Network/networkSecurityGroups/securityRules": {model: armnetwork.SecurityRule{},
			path: func(g string, n int) string { return fmt.Sprintf("%s/securityRules/fx%d", nsgIn(g), n) },
			body: func(_ string, n int) map[string]any { return map[string]any{"properties": ruleProps(200 + n)} }},
		"Microsoft.Network/networkSecurityGroups/defaultSecurityRules": {
			instance: func(_ testing.TB, _ *env, g string) string {
				return nsgIn(g) + "/defaultSecurityRules/AllowVnetInBound"
			}},
		"Microsoft.Network/applicationSecurityGroups": {model: armnetwork.ApplicationSecurityGroup{},
			path: tracked("applicationSecurityGroups"), body: located},
		"Microsoft.Network/routeTables": {model: armnetwork.RouteTable{}, inline: []string{"properties.routes[]"},
			path: tracked("routeTables"), body: located},
		"Microsoft.Network/routeTables/routes": {model: armnetwork.Route{},
			path: func(g string, n int) string { return fmt.Sprintf("%s/routes/fx%d", rtIn(g), n) },
			body: func(_ string, n int) map[string]any {
				return map[string]any{"properties": map[string]any{"addressPrefix": fmt.Sprintf("10.200.%d.0/24", n%256), "nextHopType": "None"}}
			}},
		"Microsoft.Network/networkWatchers": {model: armnetwork.Watcher{}, path: tracked("networkWatchers"), body: located,
			actionsIn: func(g string) map[string]any {
				return map[string]any{
					"ipFlowVerify": map[string]any{"targetResourceId": nicIn(g), "direction": "Outbound", "protocol": "TCP",
						"localIPAddress": nicAddr, "localPort": "*", "remoteIPAddress": "10.0.1.4", "remotePort": "5432"},
					"nextHop": map[string]any{"targetResourceId": nicIn(g), "sourceIPAddress": nicAddr, "destinationIPAddress": "10.0.1.4"},
					"connectivityCheck": map[string]any{"source": map[string]any{"resourceId": nicIn(g)},
						"destination": map[string]any{"address": "10.0.1.4", "port": 5432}},
				}
			}},
		"Microsoft.Network/networkInterfaces": {model: armnetwork.Interface{}, inline: []string{"properties.ipConfigurations[]", "properties.tapConfigurations[]"},
			path:    tracked("networkInterfaces"),
			actions: map[string]any{"effectiveNetworkSecurityGroups": nil, "effectiveRouteTable": nil},
			body: func(g string, _ int) map[string]any {
				return map[string]any{"location": loc, "properties": map[string]any{"ipConfigurations": []any{
					map[string]any{"name": "ipconfig1", "properties": map[string]any{"subnet": map[string]any{"id": subnetIn(g)}}}}}}
			}},
		"Microsoft.Network/networkInterfaces/ipConfigurations": {
			instance: func(t testing.TB, e *env, g string) string {
				nic := e.fixtures()["Microsoft.Network/networkInterfaces"]
				path := nic.path(g, e.next())
				e.put(t, e.a.Owner, path, nic.body(g, 0))
				return path + "/ipConfigurations/ipconfig1"
			}},
		"Microsoft.Network/privateEndpoints": {model: armnetwork.PrivateEndpoint{},
			inline: []string{"properties.privateLinkServiceConnections[]", "properties.manualPrivateLinkServiceConnections[]", "properties.ipConfigurations[]"},
			path:   tracked("privateEndpoints"),
			body:   func(g string, _ int) map[string]any { return endpointBody(loc, peSubnetIn(g), e.server(g)) }},
		"Microsoft.Network/privateEndpoints/privateDnsZoneGroups": {model: armnetwork.PrivateDNSZoneGroup{},
			path: func(g string, _ int) string { return endpointIn(g) + "/privateDnsZoneGroups/default" },
			body: func(g string, _ int) map[string]any {
				return map[string]any{"properties": map[string]any{"privateDnsZoneConfigs": []any{
					map[string]any{"name": "pg", "properties": map[string]any{"privateDnsZoneId": zoneIn(g)}}}}}
			}},
		"Microsoft.Network/privateDnsZones": {model: armprivatedns.PrivateZone{},
			path: func(g string, n int) string { return fmt.Sprintf("%s%sprivateDnsZones/fx%d.example.com", g, netNS, n) },
			body: func(string, int) map[string]any { return map[string]any{"location": "global"} }},
		"Microsoft.Network/privateDnsZones/virtualNetworkLinks": {model: armprivatedns.VirtualNetworkLink{},
			// One link per zone and network: every PUT writes the same.
			path: func(g string, _ int) string { return zoneIn(g) + "/virtualNetworkLinks/link" },
			body: func(g string, _ int) map[string]any {
				return map[string]any{"location": "global", "properties": map[string]any{"virtualNetwork": map[string]any{"id": vnetIn(g)}}}
			}},
		"Microsoft.Network/privateDnsZones/ALL": {
			list: func(e *env, g string) string { return zoneIn(g) + "/ALL" }},
		"Microsoft.DBforPostgreSQL/flexibleServers": {model: pg.Server{},
			path: func(g string, n int) string {
				return fmt.Sprintf("%s/providers/Microsoft.DBforPostgreSQL/flexibleServers/fx%d-%s", g, n, sub[:8])
			},
			body:    func(string, int) map[string]any { return serverBody(loc) },
			actions: map[string]any{"start": nil, "stop": nil, "restart": map[string]any{}},
			// A new server is Ready: it cannot start.
			stateRefusals: map[string]string{"POST start": "ServerIsNotStopped"}},
		"Microsoft.DBforPostgreSQL/flexibleServers/firewallRules": {model: pg.FirewallRule{},
			path: func(g string, n int) string { return fmt.Sprintf("%s/firewallRules/fx%d", e.server(g), n) },
			body: func(_ string, n int) map[string]any {
				ip := fmt.Sprintf("198.18.%d.%d", n/256%256, n%256)
				return map[string]any{"properties": map[string]any{"startIpAddress": ip, "endIpAddress": ip}}
			}},
		"Microsoft.DBforPostgreSQL/flexibleServers/administrators": {model: pg.AdministratorMicrosoftEntraAdd{},
			// An administrator is named by its principal's object ID.
			path: func(g string, n int) string {
				return fmt.Sprintf("%s/administrators/00000000-0000-4000-8000-%012d", e.server(g), n)
			},
			body: func(_ string, n int) map[string]any {
				return map[string]any{"properties": map[string]any{"principalName": fmt.Sprintf("fxadmin%d", n), "principalType": "User"}}
			}},
		"Microsoft.DBforPostgreSQL/flexibleServers/configurations": {model: pg.Configuration{},
			path: func(g string, _ int) string { return e.server(g) + "/configurations/work_mem" },
			body: func(_ string, n int) map[string]any {
				return map[string]any{"properties": map[string]any{"value": fmt.Sprint(4096 + n), "source": "user-override"}}
			},
			patch: map[string]any{"properties": map[string]any{"value": "8192"}}},
		"Microsoft.DBforPostgreSQL/flexibleServers/privateEndpointConnections": {model: pg.PrivateEndpointConnection{},
			// A connection's privateEndpoint is fixed by the endpoint that
			// requested it: a PUT only decides (the sweep checks a planted
			// one is not kept).
			instance: func(t testing.TB, e *env, g string) string {
				var l struct{ Value []struct{ ID string } }
				path := e.server(g) + "/privateEndpointConnections"
				r := e.a.Do(t, e.a.Owner, http.MethodGet, path+apiVersion(path), nil)
				if r.JSON(t, &l); len(l.Value) == 0 {
					t.Fatalf("no connection to %s: %s", e.server(g), r.Body)
				}
				return l.Value[0].ID
			},
			body: func(string, int) map[string]any {
				return map[string]any{"properties": map[string]any{"privateLinkServiceConnectionState": map[string]any{
					"status": "Approved", "description": "fixture"}}}
			}},
		"Microsoft.DBforPostgreSQL/flexibleServers/privateLinkResources": {
			instance: func(_ testing.TB, e *env, g string) string {
				return e.server(g) + "/privateLinkResources/postgresqlServer"
			}},
		"Microsoft.DBforPostgreSQL": {
			instance: func(_ testing.TB, e *env, _ string) string {
				return "/subscriptions/" + e.sub + "/providers/Microsoft.DBforPostgreSQL"
			},
			actions: map[string]any{"checkNameAvailability": map[string]any{"name": "some-name", "type": "Microsoft.DBforPostgreSQL/flexibleServers"}}},
		"Microsoft.DBforPostgreSQL/locations": {
			instance: func(_ testing.TB, e *env, _ string) string {
				return "/subscriptions/" + e.sub + "/providers/Microsoft.DBforPostgreSQL/locations/" + e.loc
			},
			actions: map[string]any{"checkNameAvailability": map[string]any{"name": "some-name", "type": "Microsoft.DBforPostgreSQL/flexibleServers"}}},
	}
	records := map[armprivatedns.RecordType]map[string]any{
		armprivatedns.RecordTypeA:     {"aRecords": []any{map[string]any{"ipv4Address": "10.0.1.9"}}},
		armprivatedns.RecordTypeAAAA:  {"aaaaRecords": []any{map[string]any{"ipv6Address": "fd00::9"}}},
		armprivatedns.RecordTypeCNAME: {"cnameRecord": map[string]any{"cname": "target.example.com"}},
		armprivatedns.RecordTypeMX:    {"mxRecords": []any{map[string]any{"preference": 10, "exchange": "mx.example.com"}}},
		armprivatedns.RecordTypePTR:   {"ptrRecords": []any{map[string]any{"ptrdname": "host.example.com"}}},
		armprivatedns.RecordTypeSRV:   {"srvRecords": []any{map[string]any{"priority": 1, "weight": 1, "port": 5432, "target": "host.example.com"}}},
		armprivatedns.RecordTypeTXT:   {"txtRecords": []any{map[string]any{"value": []string{"fixture"}}}},
		armprivatedns.RecordTypeSOA: {"soaRecord": map[string]any{"email": "azureprivatedns-host.microsoft.com", "expireTime": 2419200,
			"minimumTtl": 10, "refreshTime": 3600, "retryTime": 300, "serialNumber": 1}},
	}
	for rs, props := range records {
		name := func(n int) string { return fmt.Sprintf("fx%d", n) }
		if rs == armprivatedns.RecordTypeSOA {
			name = func(int) string { return "@" } // a zone has its one SOA
		}
		fx["Microsoft.Network/privateDnsZones/"+string(rs)] = fixture{model: armprivatedns.RecordSet{},
			path: func(g string, n int) string { return zoneIn(g) + "/" + string(rs) + "/" + name(n) },
			body: func(string, int) map[string]any {
				p := map[string]any{"ttl": 3600}
				for k, v := range props {
					p[k] = v
				}
				return map[string]any{"properties": p}
			},
			patch: map[string]any{"properties": map[string]any{"metadata": map[string]any{"patched": "yes"}}}}
	}
	soa := fx["Microsoft.Network/privateDnsZones/SOA"]
	soa.stateRefusals = map[string]string{"DELETE": "BadRequest"} // the SOA goes with its zone
	fx["Microsoft.Network/privateDnsZones/SOA"] = soa
	for _, more := range moreFixtures {
		for typ, f := range more(e) {
			if _, dup := fx[typ]; dup {
				panic("daemon tests: two fixtures for " + typ)
			}
			fx[typ] = f
		}
	}
	return fx
}

// typeCells are the requests of every verb a type serves, on resources
// of a populated group.
type typeCells struct {
	f            fixture
	extension    bool
	cells, dels  []cell
	subscription string // a subscription-wide list of the type, if it has one
}

// cell is one request of the matrix.
type cell struct {
	verb   string // GET, LIST, PUT, PATCH, DELETE, POST {action}
	method string
	path   string
	body   any
	write  bool
}

// cells returns the requests of every verb typ serves in the populated
// group g: GET one, LIST, PUT (a new resource), PATCH, each action, and
// DELETE apart (of a resource made for it, when the fixture can). It
// reports a fixture that lacks what a verb needs as a test error.
func (e *env) cells(t testing.TB, typ *arm.ResourceType, g string) (typeCells, bool) {
	t.Helper()
	f, ok := e.fixtures()[typ.Type]
	if !ok {
		t.Errorf("%s has no fixture (fixtures_test.go)", typ.Type)
		return typeCells{}, false
	}
	tc := typeCells{f: f, extension: typ.Extension}
	canCreate := f.path != nil && f.body != nil
	if typ.Put != nil && f.body == nil {
		t.Errorf("%s has a PUT but its fixture no body", typ.Type)
		return typeCells{}, false
	}
	// An instance to read, patch and act on.
	var instance string
	switch {
	case f.instance != nil:
		instance = f.instance(t, e, g)
	case strings.EqualFold(typ.Type, "Microsoft.Resources/resourceGroups"):
		instance = g
	case canCreate:
		n := e.next()
		instance = f.path(g, n)
		e.put(t, e.a.Owner, instance, f.body(g, n))
	case typ.Get != nil || typ.Patch != nil || typ.Delete != nil || len(typ.Actions) > 0 || len(typ.ReadActions) > 0 || len(typ.WriteActions) > 0:
		t.Errorf("%s serves a resource but its fixture has no instance", typ.Type)
		return typeCells{}, false
	}
	if typ.Get != nil {
		tc.cells = append(tc.cells, cell{verb: "GET", method: http.MethodGet, path: instance})
	}
	if typ.List != nil {
		list := ""
		switch {
		case f.list != nil:
			list = f.list(e, g)
		case instance != "":
			list = instance[:strings.LastIndex(instance, "/")]
		default:
			t.Errorf("%s has a LIST but its fixture neither a list nor an instance", typ.Type)
		}
		tc.cells = append(tc.cells, cell{verb: "LIST", method: http.MethodGet, path: list})
		if id, err := arm.ParseID(instance); err == nil && !typ.Extension && id.ResourceGroup != "" && len(id.Types) <= 1 {
			tc.subscription = "/subscriptions/" + e.sub + "/providers/" + typ.Type
			if id.Namespace == "" {
				tc.subscription = "/subscriptions/" + e.sub + "/resourceGroups"
			}
		}
	}
	if typ.Put != nil {
		n := e.next()
		path := instance
		if canCreate {
			path = f.path(g, n)
		}
		tc.cells = append(tc.cells, cell{verb: "PUT", method: http.MethodPut, path: path, body: f.body(g, n), write: true})
	}
	if typ.Patch != nil {
		tc.cells = append(tc.cells, cell{verb: "PATCH", method: http.MethodPatch, path: instance, body: f.patchBody(), write: true})
	}
	bodies := f.actions
	if f.actionsIn != nil {
		bodies = f.actionsIn(g)
	}
	for _, name := range slices.Sorted(maps.Keys(typ.Actions)) {
		body, ok := bodies[name]
		if !ok {
			t.Errorf("%s has the action %s but its fixture no body for it", typ.Type, name)
			return typeCells{}, false
		}
		tc.cells = append(tc.cells, cell{verb: "POST " + name, method: http.MethodPost, path: instance + "/" + name, body: body, write: true})
	}
	for _, name := range slices.Sorted(maps.Keys(typ.ReadActions)) {
		tc.cells = append(tc.cells, cell{verb: "GET " + name, method: http.MethodGet, path: instance + "/" + name})
	}
	for _, name := range slices.Sorted(maps.Keys(typ.WriteActions)) {
		body, ok := bodies[name]
		if !ok {
			t.Errorf("%s has the PUT action %s but its fixture no body for it", typ.Type, name)
			return typeCells{}, false
		}
		tc.cells = append(tc.cells, cell{verb: "PUT " + name, method: http.MethodPut, path: instance + "/" + name, body: body, write: true})
	}
	if typ.Delete != nil {
		victim := instance
		if canCreate {
			n := e.next()
			victim = f.path(g, n)
			e.put(t, e.a.Owner, victim, f.body(g, n))
		}
		tc.dels = append(tc.dels, cell{verb: "DELETE", method: http.MethodDelete, path: victim, write: true})
	}
	return tc, true
}

func apiVersion(path string) string {
	lower := strings.ToLower(path)
	switch {
	case strings.Contains(lower, "/providers/microsoft.dbforpostgresql"):
		return "?api-version=2025-08-01"
	case strings.Contains(lower, "/providers/microsoft.network/privatednszones"):
		return "?api-version=2024-06-01"
	case strings.Contains(lower, "/providers/microsoft.network/dnsresolvers"):
		return "?api-version=2022-07-01"
	case strings.Contains(lower, "/providers/microsoft.network/"):
		return "?api-version=2024-05-01"
	case strings.Contains(lower, "/providers/microsoft.authorization/"):
		return "?api-version=2022-04-01"
	}
	return "?api-version=2021-04-01"
}

func serverBody(loc string) map[string]any {
	return map[string]any{"location": loc, "sku": map[string]any{"name": "Standard_B1ms", "tier": "Burstable"},
		"properties": map[string]any{"version": "15", "administratorLogin": "pgadmin", "administratorLoginPassword": "Sweep-pass-1234",
			"storage":    map[string]any{"storageSizeGB": 32},
			"authConfig": map[string]any{"activeDirectoryAuth": "Enabled", "passwordAuth": "Enabled"}}}
}

func endpointBody(loc, subnet, server string) map[string]any {
	return map[string]any{"location": loc, "properties": map[string]any{
		"subnet": map[string]any{"id": subnet},
		"privateLinkServiceConnections": []any{map[string]any{"name": "conn", "properties": map[string]any{
			"privateLinkServiceId": server, "groupIds": []string{"postgresqlServer"}}}}}}
}

func ruleProps(priority int) map[string]any {
	return map[string]any{"priority": priority, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
		"sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "5432"}
}
