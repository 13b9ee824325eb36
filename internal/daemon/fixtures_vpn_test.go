package daemon_test

import (
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
)

// The fixtures of the VPN types (internal/provider/network/vpn.go).
func init() {
	moreFixtures = append(moreFixtures, func(e *env) map[string]fixture {
		loc := e.loc
		tracked := func(kind string) func(g string, n int) string {
			return func(g string, n int) string { return fmt.Sprintf("%s%s%s/fx%d", g, netNS, kind, n) }
		}
		return map[string]fixture{
			"Microsoft.Network/publicIPAddresses": {model: armnetwork.PublicIPAddress{},
				path: tracked("publicIPAddresses"),
				body: func(string, int) map[string]any {
					return map[string]any{"location": loc, "sku": map[string]any{"name": "Standard"},
						"properties": map[string]any{"publicIPAllocationMethod": "Static"}}
				}},
			"Microsoft.Network/localNetworkGateways": {model: armnetwork.LocalNetworkGateway{},
				path: tracked("localNetworkGateways"),
				body: func(_ string, n int) map[string]any {
					return map[string]any{"location": loc, "properties": map[string]any{
						"gatewayIpAddress":         fmt.Sprintf("198.18.50.%d", 1+n%250),
						"localNetworkAddressSpace": map[string]any{"addressPrefixes": []string{"192.168.0.0/16"}}}}
				}},
		}
	})
}
