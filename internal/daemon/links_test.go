package daemon_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
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

// The linked-authorization sweep. For every resource type the API serves
// with a PUT, it finds every reference the official SDK's model of the
// body can hold (by reflection: every nested object with an "id", every
// string property named "...Id"), plants in it the ID of a resource of
// another resource group on which the caller has no role, and sends the
// write as a principal who is Contributor on its own group only:
//
//   - a reference the type declares (arm.ResourceType.Links, LinkRequired)
//     must be refused with 403 LinkedAuthorizationFailed naming the linked
//     action and scope; the same write by an Owner of both groups must not
//     be;
//   - an approval link (LinkApproval) must never be refused, and a
//     connection it creates must not be Approved;
//   - any other reference must be refused (4xx) or not kept: the planted ID
//     must not appear in what a GET returns.
//
// So a reference a provider starts to accept without declaring it fails
// here, whatever its type.

// fixture is how the sweep writes one resource type.
type fixture struct {
	model any // the SDK's model of the body (a value of its type)
	// path returns the request path of a new resource of the type, in the
	// caller's group; body, a valid body for it with references into the
	// caller's own group.
	path func(n int) string
	body func(n int) map[string]any
	// inline are the arrays of child objects that the body carries whole
	// (a NIC's ipConfigurations): their own ids are no references.
	inline []string
	// skip says why a type is not swept.
	skip string
}

func TestLinkedAuthorizationSweep(t *testing.T) {
	a := daemontest.New(t)
	owner := a.Owner
	sub := owner.Sub()
	rg := func(name string) string { return "/subscriptions/" + sub + "/resourceGroups/" + name }
	mine, theirs := rg("mine"), rg("theirs")
	limited := a.NewPrincipal(t, "limited", false)
	a.Assign(t, limited, identity.ContributorRoleID, mine)

	put := func(p *daemontest.Principal, path string, body any) daemontest.Response {
		t.Helper()
		r := a.Do(t, p, http.MethodPut, path+apiVersion(path), body)
		if r.Status >= 300 {
			t.Fatalf("PUT %s: %d %s", path, r.Status, r.Body)
		}
		return r
	}
	loc := "westeurope"
	net := "/providers/Microsoft.Network/"
	// The same set of resources in both groups.
	for _, g := range []string{mine, theirs} {
		put(owner, g, map[string]any{"location": loc})
		put(owner, g+net+"networkSecurityGroups/nsg", map[string]any{"location": loc})
		put(owner, g+net+"routeTables/rt", map[string]any{"location": loc})
		put(owner, g+net+"applicationSecurityGroups/asg", map[string]any{"location": loc})
		put(owner, g+net+"virtualNetworks/vnet", map[string]any{"location": loc, "properties": map[string]any{
			"addressSpace": map[string]any{"addressPrefixes": []string{"10.0.0.0/16"}},
			"subnets": []any{
				map[string]any{"name": "default", "properties": map[string]any{"addressPrefix": "10.0.0.0/24"}},
				map[string]any{"name": "pe", "properties": map[string]any{"addressPrefix": "10.0.1.0/24"}},
			}}})
		put(owner, g+net+"privateDnsZones/privatelink.postgres.database.azure.com", map[string]any{"location": "global"})
		srvName := "srv-" + strings.ToLower(g[strings.LastIndex(g, "/")+1:]) + "-" + sub[:8]
		put(owner, g+"/providers/Microsoft.DBforPostgreSQL/flexibleServers/"+srvName, serverBody(loc))
	}
	server := func(g string) string {
		return g + "/providers/Microsoft.DBforPostgreSQL/flexibleServers/srv-" + g[strings.LastIndex(g, "/")+1:] + "-" + sub[:8]
	}
	// An endpoint in the caller's group, for its zone groups.
	put(limited, mine+net+"privateEndpoints/pe0", endpointBody(loc, mine+net+"virtualNetworks/vnet/subnets/pe", server(mine)))

	// pe0's connection on the caller's server, for the connection fixture.
	var conns struct{ Value []struct{ ID string } }
	a.Do(t, owner, http.MethodGet, server(mine)+"/privateEndpointConnections"+apiVersion(server(mine)), nil).JSON(t, &conns)
	if len(conns.Value) != 1 {
		t.Fatalf("server connections = %+v", conns)
	}
	connPath := conns.Value[0].ID

	// existing names, by the SDK model's struct type, the resource of that
	// type in a group.
	existing := map[string]func(g string) string{
		"Subnet":                   func(g string) string { return g + net + "virtualNetworks/vnet/subnets/default" },
		"SecurityGroup":            func(g string) string { return g + net + "networkSecurityGroups/nsg" },
		"RouteTable":               func(g string) string { return g + net + "routeTables/rt" },
		"ApplicationSecurityGroup": func(g string) string { return g + net + "applicationSecurityGroups/asg" },
		"VirtualNetwork":           func(g string) string { return g + net + "virtualNetworks/vnet" },
	}
	byType := map[string]func(g string) string{
		"microsoft.network/virtualnetworks/subnets":   existing["Subnet"],
		"microsoft.network/networksecuritygroups":     existing["SecurityGroup"],
		"microsoft.network/routetables":               existing["RouteTable"],
		"microsoft.network/applicationsecuritygroups": existing["ApplicationSecurityGroup"],
		"microsoft.network/virtualnetworks":           existing["VirtualNetwork"],
		"microsoft.network/privatednszones":           func(g string) string { return g + net + "privateDnsZones/privatelink.postgres.database.azure.com" },
		"microsoft.dbforpostgresql/flexibleservers":   server,
		"": server, // a private endpoint's target
	}
	// plant is the ID planted in a reference: a resource of their group.
	plant := func(ref reference, link *arm.Link) string {
		if link != nil {
			if f := byType[strings.ToLower(link.Type)]; f != nil {
				return f(theirs)
			}
			return theirs + "/providers/" + link.Type + "/planted"
		}
		if f := existing[ref.model]; f != nil {
			return existing[ref.model](theirs)
		}
		return theirs + net + "plantedTargets/planted-" + strings.ToLower(ref.model)
	}

	var n int
	fixtures := map[string]fixture{
		"Microsoft.Resources/resourceGroups":      {model: armresources.ResourceGroup{}},
		"Microsoft.Authorization/roleAssignments": {skip: "a role assignment's references are its role and principal, which identity checks (TestRBACMatrix)"},
		"Microsoft.Network/virtualNetworks": {model: armnetwork.VirtualNetwork{}, inline: []string{"properties.subnets[]", "properties.virtualNetworkPeerings[]", "properties.subnets[].properties.delegations[]"},
			path: func(n int) string { return fmt.Sprintf("%s%svirtualNetworks/sweep%d", mine, net, n) },
			body: func(int) map[string]any {
				return map[string]any{"location": loc, "properties": map[string]any{
					"addressSpace": map[string]any{"addressPrefixes": []string{"10.9.0.0/16"}},
					"subnets":      []any{map[string]any{"name": "s1", "properties": map[string]any{"addressPrefix": "10.9.0.0/24"}}}}}
			}},
		"Microsoft.Network/virtualNetworks/subnets": {model: armnetwork.Subnet{}, inline: []string{"properties.delegations[]"},
			path: func(n int) string { return fmt.Sprintf("%s%svirtualNetworks/vnet/subnets/sweep%d", mine, net, n) },
			body: func(n int) map[string]any {
				return map[string]any{"properties": map[string]any{"addressPrefix": fmt.Sprintf("10.0.%d.0/24", 10+n)}}
			}},
		"Microsoft.Network/networkSecurityGroups": {model: armnetwork.SecurityGroup{}, inline: []string{"properties.securityRules[]", "properties.defaultSecurityRules[]"},
			path: func(n int) string { return fmt.Sprintf("%s%snetworkSecurityGroups/sweep%d", mine, net, n) },
			body: func(int) map[string]any {
				return map[string]any{"location": loc, "properties": map[string]any{"securityRules": []any{
					map[string]any{"name": "r1", "properties": ruleProps(100)}}}}
			}},
		"Microsoft.Network/networkSecurityGroups/securityRules": {model: armnetwork.SecurityRule{},
			path: func(n int) string {
				return fmt.Sprintf("%s%snetworkSecurityGroups/nsg/securityRules/sweep%d", mine, net, n)
			},
			body: func(n int) map[string]any { return map[string]any{"properties": ruleProps(200 + n)} }},
		"Microsoft.Network/applicationSecurityGroups": {model: armnetwork.ApplicationSecurityGroup{},
			path: func(n int) string { return fmt.Sprintf("%s%sapplicationSecurityGroups/sweep%d", mine, net, n) },
			body: func(int) map[string]any { return map[string]any{"location": loc} }},
		"Microsoft.Network/routeTables": {model: armnetwork.RouteTable{}, inline: []string{"properties.routes[]"},
			path: func(n int) string { return fmt.Sprintf("%s%srouteTables/sweep%d", mine, net, n) },
			body: func(int) map[string]any { return map[string]any{"location": loc} }},
		"Microsoft.Network/routeTables/routes": {model: armnetwork.Route{}},
		"Microsoft.Network/networkInterfaces": {model: armnetwork.Interface{}, inline: []string{"properties.ipConfigurations[]", "properties.tapConfigurations[]"},
			path: func(n int) string { return fmt.Sprintf("%s%snetworkInterfaces/sweep%d", mine, net, n) },
			body: func(int) map[string]any {
				return map[string]any{"location": loc, "properties": map[string]any{"ipConfigurations": []any{
					map[string]any{"name": "ipconfig1", "properties": map[string]any{"subnet": map[string]any{"id": existing["Subnet"](mine)}}}}}}
			}},
		"Microsoft.Network/privateEndpoints": {model: armnetwork.PrivateEndpoint{},
			inline: []string{"properties.privateLinkServiceConnections[]", "properties.manualPrivateLinkServiceConnections[]", "properties.ipConfigurations[]"},
			path:   func(n int) string { return fmt.Sprintf("%s%sprivateEndpoints/sweep%d", mine, net, n) },
			body: func(int) map[string]any {
				return endpointBody(loc, mine+net+"virtualNetworks/vnet/subnets/pe", server(mine))
			}},
		"Microsoft.Network/privateEndpoints/privateDnsZoneGroups": {model: armnetwork.PrivateDNSZoneGroup{},
			path: func(int) string { return mine + net + "privateEndpoints/pe0/privateDnsZoneGroups/default" },
			body: func(int) map[string]any {
				return map[string]any{"properties": map[string]any{"privateDnsZoneConfigs": []any{
					map[string]any{"name": "pg", "properties": map[string]any{"privateDnsZoneId": byType["microsoft.network/privatednszones"](mine)}}}}}
			}},
		"Microsoft.Network/privateDnsZones": {model: armprivatedns.PrivateZone{}},
		"Microsoft.Network/networkWatchers": {model: armnetwork.Watcher{}},
		"Microsoft.Network/privateDnsZones/virtualNetworkLinks": {model: armprivatedns.VirtualNetworkLink{},
			path: func(n int) string {
				return fmt.Sprintf("%s%sprivateDnsZones/privatelink.postgres.database.azure.com/virtualNetworkLinks/sweep%d", mine, net, n)
			},
			body: func(int) map[string]any {
				return map[string]any{"location": "global", "properties": map[string]any{"virtualNetwork": map[string]any{"id": existing["VirtualNetwork"](mine)}}}
			}},
		"Microsoft.DBforPostgreSQL/flexibleServers": {model: pg.Server{},
			path: func(n int) string {
				return fmt.Sprintf("%s/providers/Microsoft.DBforPostgreSQL/flexibleServers/sweep%d-%s", mine, n, sub[:8])
			},
			body: func(int) map[string]any { return serverBody(loc) }},
		"Microsoft.DBforPostgreSQL/flexibleServers/firewallRules":  {model: pg.FirewallRule{}},
		"Microsoft.DBforPostgreSQL/flexibleServers/configurations": {model: pg.Configuration{}},
		// A connection's privateEndpoint is fixed by the endpoint that
		// requested it: a PUT only decides.
		"Microsoft.DBforPostgreSQL/flexibleServers/privateEndpointConnections": {model: pg.PrivateEndpointConnection{},
			path: func(int) string { return connPath },
			body: func(int) map[string]any {
				return map[string]any{"properties": map[string]any{"privateLinkServiceConnectionState": map[string]any{"status": "Approved"}}}
			}},
	}
	for _, rs := range armprivatedns.PossibleRecordTypeValues() {
		fixtures["Microsoft.Network/privateDnsZones/"+string(rs)] = fixture{model: armprivatedns.RecordSet{}}
	}

	for _, typ := range a.Router.Types() {
		if typ.Put == nil {
			continue
		}
		f, ok := fixtures[typ.Type]
		if !ok {
			t.Errorf("%s has a PUT but no fixture in the linked-authorization sweep: add one (its SDK model, a valid body)", typ.Type)
			continue
		}
		t.Run(strings.ReplaceAll(typ.Type, "/", "_"), func(t *testing.T) {
			if f.skip != "" {
				t.Skip(f.skip)
			}
			refs := references(reflect.TypeOf(f.model), f.inline)
			declared := map[string]arm.Link{}
			for _, l := range typ.Links {
				declared[l.Path] = l
				if !slices.ContainsFunc(refs, func(r reference) bool { return r.path == l.Path }) {
					t.Errorf("declared link %s is no property of the SDK's model %T", l.Path, f.model)
				}
			}
			t.Logf("%d references, %d declared: %v", len(refs), len(typ.Links), refs)
			if len(refs) == 0 {
				return
			}
			if f.body == nil {
				t.Fatalf("the model has references %v but the fixture no body to plant them in", refs)
			}
			// The body as it is works for the caller: refusals below are
			// the references'.
			n++
			if r := a.Do(t, limited, http.MethodPut, f.path(n)+apiVersion(f.path(n)), f.body(n)); r.Status >= 300 {
				t.Fatalf("the fixture's own body is refused: %d %s", r.Status, r.Body)
			}
			for _, ref := range refs {
				link, isLink := declared[ref.path]
				var lp *arm.Link
				if isLink {
					lp = &link
				}
				planted := plant(ref, lp)
				n++
				path, body := f.path(n), f.body(n)
				setPath(body, ref.path, planted)
				r := a.Do(t, limited, http.MethodPut, path+apiVersion(path), body)
				switch {
				case isLink && link.Kind == arm.LinkRequired:
					id, _ := arm.ParseID(planted)
					if r.Status != http.StatusForbidden || r.ErrorCode() != "LinkedAuthorizationFailed" ||
						!strings.Contains(string(r.Body), link.ActionOn(id)) || !strings.Contains(strings.ToLower(string(r.Body)), strings.ToLower(planted)) {
						t.Errorf("%s = %s: %d %s, want 403 LinkedAuthorizationFailed naming %s", ref.path, planted, r.Status, r.Body, link.ActionOn(id))
					}
					n++
					path, body = f.path(n), f.body(n)
					setPath(body, ref.path, planted)
					if r := a.Do(t, owner, http.MethodPut, path+apiVersion(path), body); r.ErrorCode() == "LinkedAuthorizationFailed" {
						t.Errorf("%s: an Owner of both groups is refused too: %s", ref.path, r.Body)
					}
				case isLink && link.Kind == arm.LinkApproval:
					if r.ErrorCode() == "LinkedAuthorizationFailed" {
						t.Errorf("%s: an approval link is refused: %s", ref.path, r.Body)
					}
					if r.Status < 300 {
						got := a.Do(t, limited, http.MethodGet, path+apiVersion(path), nil)
						if strings.Contains(string(got.Body), `"status":"Approved"`) {
							t.Errorf("%s: a connection to a resource the caller may not approve is Approved: %s", ref.path, got.Body)
						}
					}
				default:
					if r.Status < 300 {
						got := a.Do(t, owner, http.MethodGet, path+apiVersion(path), nil)
						if strings.Contains(strings.ToLower(string(got.Body)), strings.ToLower(planted)) {
							t.Errorf("%s: a reference the type does not declare (no linked check) was kept: %s", ref.path, got.Body)
						}
					}
				}
			}
		})
	}
}

// reference is a place in a body that can hold a resource ID.
type reference struct {
	path  string // as arm.Link.Path
	model string // the SDK struct it is the id of ("" for a string property)
}

func (r reference) String() string { return r.path }

// notReferences are string properties named ...Id that hold no resource ID.
var notReferences = []string{"tenantId", "principalId", "objectId", "subscriptionId", "clientId", "applicationId", "resourceGuid", "requestId", "internalId"}

// references lists the references of the SDK model t: the ".id" of each
// nested object that has one (but for the arrays of inline children
// named in inline, which are walked into) and each string property whose
// name ends in "Id". The SDK's models carry no JSON tags (their
// MarshalJSON names the properties), so t is filled in by reflection,
// marshalled by the SDK, and the JSON walked.
func references(t reflect.Type, inline []string) []reference {
	v := reflect.New(t)
	fill(v.Elem(), nil)
	b, err := json.Marshal(v.Interface())
	if err != nil {
		panic(fmt.Sprintf("marshal %v: %v", t, err))
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		panic(err)
	}
	var out []reference
	var walk func(obj map[string]any, at string)
	walk = func(obj map[string]any, at string) {
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			path := k
			if at != "" {
				path = at + "." + k
			}
			val := obj[k]
			if arr, ok := val.([]any); ok && len(arr) > 0 {
				val, path = arr[0], path+"[]"
			}
			switch val := val.(type) {
			case string:
				if strings.HasSuffix(k, "Id") && val == stringMarker && !slices.Contains(notReferences, k) {
					out = append(out, reference{path: path})
				}
			case map[string]any:
				if id, ok := val["id"].(string); ok && !slices.Contains(inline, path) {
					out = append(out, reference{path: path + ".id", model: strings.TrimPrefix(id, idMarker)})
					continue
				}
				walk(val, path)
			}
		}
	}
	walk(doc, "")
	return out
}

const (
	stringMarker = "planted-string"
	idMarker     = "planted-id-of-"
)

// fill sets every field of v: an ID field to idMarker and its struct's
// name, other strings to stringMarker, numbers to 1, each slice to one
// element; pointers are followed once per type on the way down.
func fill(v reflect.Value, seen []reflect.Type) {
	switch v.Kind() {
	case reflect.Pointer:
		if slices.Contains(seen, v.Type().Elem()) || len(seen) > 14 {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), append(seen, v.Type().Elem()))
	case reflect.Struct:
		if v.Type().PkgPath() == "time" {
			return
		}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			fv := v.Field(i)
			if f.Name == "ID" && f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.String {
				fv.Set(reflect.New(f.Type.Elem()))
				fv.Elem().SetString(idMarker + v.Type().Name())
				continue
			}
			fill(fv, seen)
		}
	case reflect.String:
		v.SetString(stringMarker)
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1)
	case reflect.Slice:
		el := reflect.New(v.Type().Elem()).Elem()
		fill(el, seen)
		v.Set(reflect.Append(reflect.MakeSlice(v.Type(), 0, 1), el))
	}
}

// setPath sets the reference at path in body to id, creating what is
// missing (an array gets one element, or keeps its first).
func setPath(body map[string]any, path, id string) {
	segs := strings.Split(path, ".")
	cur := body
	for i, s := range segs {
		last := i == len(segs)-1
		name, each := strings.CutSuffix(s, "[]")
		if last {
			cur[name] = id
			return
		}
		if !each {
			next, _ := cur[name].(map[string]any)
			if next == nil {
				next = map[string]any{}
				cur[name] = next
			}
			cur = next
			continue
		}
		arr, _ := cur[name].([]any)
		if len(arr) == 0 {
			arr = []any{map[string]any{}}
			cur[name] = arr
		}
		el, _ := arr[0].(map[string]any)
		if el == nil {
			el = map[string]any{}
			arr[0] = el
		}
		cur = el
	}
}

func apiVersion(path string) string {
	lower := strings.ToLower(path)
	switch {
	case strings.Contains(lower, "/providers/microsoft.dbforpostgresql/"):
		return "?api-version=2025-08-01"
	case strings.Contains(lower, "/providers/microsoft.network/privatednszones"):
		return "?api-version=2024-06-01"
	case strings.Contains(lower, "/providers/microsoft.network/"):
		return "?api-version=2024-05-01"
	}
	return "?api-version=2021-04-01"
}

func serverBody(loc string) map[string]any {
	return map[string]any{"location": loc, "sku": map[string]any{"name": "Standard_B1ms", "tier": "Burstable"},
		"properties": map[string]any{"version": "15", "administratorLogin": "pgadmin", "administratorLoginPassword": "Sweep-pass-1234",
			"storage": map[string]any{"storageSizeGB": 32}}}
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
