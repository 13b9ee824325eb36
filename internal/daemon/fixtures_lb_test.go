package daemon_test

import (
	"fmt"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
)

// The load balancer fixtures (issue 12 item 1): a Standard internal load
// balancer "lb" in every populated group, with a frontend fe in the
// default subnet, a pool be, a probe tcp and a rule http, and the
// read-only child types served from it.

func lbIn(g string) string     { return g + netNS + "loadBalancers/lb" }
func lbPoolIn(g string) string { return lbIn(g) + "/backendAddressPools/be" }

// lbBody is a load balancer whose ID is id, with its frontend in subnet.
func lbBody(loc, id, subnet string) map[string]any {
	return map[string]any{"location": loc, "sku": map[string]any{"name": "Standard"}, "properties": map[string]any{
		"frontendIPConfigurations": []any{map[string]any{"name": "fe", "properties": map[string]any{"subnet": map[string]any{"id": subnet}}}},
		"backendAddressPools":      []any{map[string]any{"name": "be"}},
		"probes": []any{map[string]any{"name": "tcp", "properties": map[string]any{
			"protocol": "Tcp", "port": 8080, "intervalInSeconds": 5}}},
		"loadBalancingRules": []any{map[string]any{"name": "http", "properties": map[string]any{
			"protocol": "Tcp", "frontendPort": 80, "backendPort": 8080,
			"frontendIPConfiguration": map[string]any{"id": id + "/frontendIPConfigurations/fe"},
			"backendAddressPool":      map[string]any{"id": id + "/backendAddressPools/be"},
			"probe":                   map[string]any{"id": id + "/probes/tcp"}}}},
	}}
}

func init() {
	morePopulate = append(morePopulate, func(t testing.TB, e *env, g string) {
		e.put(t, e.a.Owner, lbIn(g), lbBody(e.loc, lbIn(g), subnetIn(g)))
	})
	moreFixtures = append(moreFixtures, func(e *env) map[string]fixture {
		child := func(seg, name string) fixture {
			return fixture{instance: func(_ testing.TB, _ *env, g string) string { return lbIn(g) + "/" + seg + "/" + name }}
		}
		path := func(g string, n int) string { return fmt.Sprintf("%s%sloadBalancers/fx%d", g, netNS, n) }
		return map[string]fixture{
			"Microsoft.Network/loadBalancers": {model: armnetwork.LoadBalancer{},
				inline: []string{"properties.frontendIPConfigurations[]", "properties.backendAddressPools[]", "properties.loadBalancingRules[]",
					"properties.probes[]", "properties.inboundNatRules[]", "properties.inboundNatPools[]", "properties.outboundRules[]"},
				path: path,
				body: func(g string, n int) map[string]any { return lbBody(e.loc, path(g, n), subnetIn(g)) }},
			"Microsoft.Network/loadBalancers/frontendIPConfigurations": child("frontendIPConfigurations", "fe"),
			"Microsoft.Network/loadBalancers/backendAddressPools":      child("backendAddressPools", "be"),
			"Microsoft.Network/loadBalancers/loadBalancingRules":       child("loadBalancingRules", "http"),
			"Microsoft.Network/loadBalancers/probes":                   child("probes", "tcp"),
		}
	})
}
