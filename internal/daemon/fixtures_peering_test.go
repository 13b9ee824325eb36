package daemon_test

import (
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
)

// Virtual network peering: the group's network vnet peered with a network
// of its own, peer (10.50.0.0/16, disjoint from vnet's 10.0.0.0/16). A
// network has one peering per remote network, so every PUT of the fixture
// goes to the same peering (an update once it exists).

func peerVNetIn(g string) string { return g + netNS + "virtualNetworks/peer" }

func init() {
	morePopulate = append(morePopulate, func(t testing.TB, e *env, g string) {
		e.put(t, e.a.Owner, peerVNetIn(g), map[string]any{"location": e.loc, "properties": map[string]any{
			"addressSpace": map[string]any{"addressPrefixes": []string{"10.50.0.0/16"}},
			"subnets":      []any{map[string]any{"name": "default", "properties": map[string]any{"addressPrefix": "10.50.0.0/24"}}}}})
	})
	moreFixtures = append(moreFixtures, func(e *env) map[string]fixture {
		return map[string]fixture{
			"Microsoft.Network/virtualNetworks/virtualNetworkPeerings": {model: armnetwork.VirtualNetworkPeering{},
				path: func(g string, _ int) string { return vnetIn(g) + "/virtualNetworkPeerings/to-peer" },
				body: func(g string, _ int) map[string]any {
					return map[string]any{"properties": map[string]any{
						"remoteVirtualNetwork":      map[string]any{"id": peerVNetIn(g)},
						"allowVirtualNetworkAccess": true}}
				}},
		}
	})
}
