package daemon_test

import (
	"fmt"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/dnsresolver/armdnsresolver"
)

// Fixtures of Microsoft.Network/dnsResolvers: populate adds, in each
// group, a subnet dnsin delegated to Microsoft.Network/dnsResolvers and a
// resolver dnsr in the group's network, so an inbound endpoint can be
// written.

func dnsSubnetIn(g string) string { return vnetIn(g) + "/subnets/dnsin" }
func resolverIn(g string) string  { return g + netNS + "dnsResolvers/dnsr" }

func init() {
	morePopulate = append(morePopulate, func(t testing.TB, e *env, g string) {
		o := e.a.Owner
		e.put(t, o, dnsSubnetIn(g), map[string]any{"properties": map[string]any{"addressPrefix": "10.0.250.0/28",
			"delegations": []any{map[string]any{"name": "resolver", "properties": map[string]any{"serviceName": "Microsoft.Network/dnsResolvers"}}}}})
		e.put(t, o, resolverIn(g), map[string]any{"location": e.loc, "properties": map[string]any{"virtualNetwork": map[string]any{"id": vnetIn(g)}}})
	})
	moreFixtures = append(moreFixtures, func(e *env) map[string]fixture {
		loc := e.loc
		return map[string]fixture{
			"Microsoft.Network/dnsResolvers": {model: armdnsresolver.DNSResolver{},
				path: func(g string, n int) string { return fmt.Sprintf("%s%sdnsResolvers/fx%d", g, netNS, n) },
				body: func(g string, _ int) map[string]any {
					return map[string]any{"location": loc, "properties": map[string]any{"virtualNetwork": map[string]any{"id": vnetIn(g)}}}
				}},
			"Microsoft.Network/dnsResolvers/inboundEndpoints": {model: armdnsresolver.InboundEndpoint{},
				inline: []string{"properties.ipConfigurations[]"},
				// One resolver endpoint per subnet: every PUT writes the same.
				path: func(g string, _ int) string { return resolverIn(g) + "/inboundEndpoints/in" },
				body: func(g string, _ int) map[string]any {
					return map[string]any{"location": loc, "properties": map[string]any{"ipConfigurations": []any{
						map[string]any{"subnet": map[string]any{"id": dnsSubnetIn(g)}, "privateIpAllocationMethod": "Dynamic"}}}}
				}},
		}
	})
}
