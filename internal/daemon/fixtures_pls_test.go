package daemon_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
)

// The fixtures of private link services: populate adds, in each group, a
// subnet "nat" whose private link service network policies are Disabled,
// a service "pls0" behind the frontend fe of the load balancer "lb"
// (fixtures_lb_test.go) and an endpoint "plspe0" to it (so its
// connections type has an instance).

func natSubnetIn(g string) string   { return vnetIn(g) + "/subnets/nat" }
func plsFrontendIn(g string) string { return lbIn(g) + "/frontendIPConfigurations/fe" }
func plsIn(g string) string         { return g + netNS + "privateLinkServices/pls0" }

func serviceBodyIn(loc, g string) map[string]any {
	return map[string]any{"location": loc, "properties": map[string]any{
		"loadBalancerFrontendIpConfigurations": []any{map[string]any{"id": plsFrontendIn(g)}},
		"ipConfigurations": []any{map[string]any{"name": "nat1", "properties": map[string]any{
			"primary": true, "subnet": map[string]any{"id": natSubnetIn(g)}}}},
		"visibility": map[string]any{"subscriptions": []string{"*"}},
	}}
}

func init() {
	morePopulate = append(morePopulate, func(t testing.TB, e *env, g string) {
		o := e.a.Owner
		e.put(t, o, natSubnetIn(g), map[string]any{"properties": map[string]any{
			"addressPrefix": "10.0.9.0/24", "privateLinkServiceNetworkPolicies": "Disabled"}})
		e.put(t, o, plsIn(g), serviceBodyIn(e.loc, g))
		e.put(t, o, g+netNS+"privateEndpoints/plspe0", map[string]any{"location": e.loc, "properties": map[string]any{
			"subnet": map[string]any{"id": peSubnetIn(g)},
			"manualPrivateLinkServiceConnections": []any{map[string]any{"name": "conn", "properties": map[string]any{
				"privateLinkServiceId": plsIn(g)}}}}})
	})
	moreFixtures = append(moreFixtures, func(e *env) map[string]fixture {
		return map[string]fixture{
			"Microsoft.Network/privateLinkServices": {model: armnetwork.PrivateLinkService{},
				inline: []string{"properties.ipConfigurations[]", "properties.privateEndpointConnections[]"},
				path:   func(g string, n int) string { return fmt.Sprintf("%s%sprivateLinkServices/fx%d", g, netNS, n) },
				body:   func(g string, _ int) map[string]any { return serviceBodyIn(e.loc, g) }},
			"Microsoft.Network/privateLinkServices/privateEndpointConnections": {model: armnetwork.PrivateEndpointConnection{},
				instance: func(t testing.TB, e *env, g string) string {
					var l struct{ Value []struct{ ID string } }
					path := plsIn(g) + "/privateEndpointConnections"
					r := e.a.Do(t, e.a.Owner, http.MethodGet, path+apiVersion(path), nil)
					if r.JSON(t, &l); len(l.Value) == 0 {
						t.Fatalf("no connection to %s: %s", plsIn(g), r.Body)
					}
					return l.Value[0].ID
				},
				body: func(string, int) map[string]any {
					return map[string]any{"properties": map[string]any{"privateLinkServiceConnectionState": map[string]any{
						"status": "Approved", "description": "fixture"}}}
				}},
			"Microsoft.Network/locations": {
				instance: func(_ testing.TB, e *env, _ string) string {
					return "/subscriptions/" + e.sub + "/providers/Microsoft.Network/locations/" + e.loc
				},
				actions: map[string]any{"checkPrivateLinkServiceVisibility": map[string]any{
					"privateLinkServiceAlias": "pls0.00000000-0000-0000-0000-000000000000.westeurope.azure.privatelinkservice"}}},
		}
	})
}
