package daemon_test

import (
	"fmt"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
)

// The fixtures of the VPN types (internal/provider/network/vpn*.go): in
// every populated group a GatewaySubnet in vnet, a public IP address
// gwpip, a gateway gw on them, a local network gateway site and an IPsec
// connection conn from gw to site.

func gatewaySubnetIn(g string) string { return vnetIn(g) + "/subnets/GatewaySubnet" }
func gatewayIn(g string) string       { return g + netNS + "virtualNetworkGateways/gw" }
func gwPIPIn(g string) string         { return g + netNS + "publicIPAddresses/gwpip" }
func siteIn(g string) string          { return g + netNS + "localNetworkGateways/site" }
func connIn(g string) string          { return g + netNS + "connections/conn" }

func gatewayFixtureBody(loc, subnet, pip string) map[string]any {
	return map[string]any{"location": loc, "properties": map[string]any{
		"gatewayType": "Vpn", "vpnType": "RouteBased", "sku": map[string]any{"name": "VpnGw1", "tier": "VpnGw1"},
		"ipConfigurations": []any{map[string]any{"name": "default", "properties": map[string]any{
			"subnet": map[string]any{"id": subnet}, "publicIPAddress": map[string]any{"id": pip}}}}}}
}

func ipsecConnBody(loc, gw, lng string) map[string]any {
	return map[string]any{"location": loc, "properties": map[string]any{
		"connectionType": "IPsec", "sharedKey": "fixture-key",
		"virtualNetworkGateway1": map[string]any{"id": gw}, "localNetworkGateway2": map[string]any{"id": lng}}}
}

func pipBody(loc string) map[string]any {
	return map[string]any{"location": loc, "sku": map[string]any{"name": "Standard"},
		"properties": map[string]any{"publicIPAllocationMethod": "Static"}}
}

func siteBody(loc string, n int) map[string]any {
	return map[string]any{"location": loc, "properties": map[string]any{
		"gatewayIpAddress":         fmt.Sprintf("198.18.50.%d", 1+n%250),
		"localNetworkAddressSpace": map[string]any{"addressPrefixes": []string{"192.168.0.0/16"}}}}
}

func init() {
	morePopulate = append(morePopulate, func(t testing.TB, e *env, g string) {
		e.put(t, e.a.Owner, gatewaySubnetIn(g), map[string]any{"properties": map[string]any{"addressPrefix": "10.0.255.0/27"}})
		e.put(t, e.a.Owner, gwPIPIn(g), pipBody(e.loc))
		e.put(t, e.a.Owner, gatewayIn(g), gatewayFixtureBody(e.loc, gatewaySubnetIn(g), gwPIPIn(g)))
		e.put(t, e.a.Owner, siteIn(g), siteBody(e.loc, 0))
		e.put(t, e.a.Owner, connIn(g), ipsecConnBody(e.loc, gatewayIn(g), siteIn(g)))
	})
	moreFixtures = append(moreFixtures, func(e *env) map[string]fixture {
		loc := e.loc
		tracked := func(kind string) func(g string, n int) string {
			return func(g string, n int) string { return fmt.Sprintf("%s%s%s/fx%d", g, netNS, kind, n) }
		}
		return map[string]fixture{
			"Microsoft.Network/publicIPAddresses": {model: armnetwork.PublicIPAddress{},
				path: tracked("publicIPAddresses"),
				body: func(string, int) map[string]any { return pipBody(loc) }},
			"Microsoft.Network/localNetworkGateways": {model: armnetwork.LocalNetworkGateway{},
				path: tracked("localNetworkGateways"),
				body: func(_ string, n int) map[string]any { return siteBody(loc, n) }},
			// One gateway per network: the fixture writes the populated
			// one, which its connection keeps from being deleted.
			"Microsoft.Network/virtualNetworkGateways": {model: armnetwork.VirtualNetworkGateway{},
				inline:        []string{"properties.ipConfigurations[]"},
				instance:      func(_ testing.TB, _ *env, g string) string { return gatewayIn(g) },
				body:          func(g string, _ int) map[string]any { return gatewayFixtureBody(loc, gatewaySubnetIn(g), gwPIPIn(g)) },
				stateRefusals: map[string]string{"DELETE": "InUseVirtualNetworkGatewayCannotBeDeleted"}},
			"Microsoft.Network/connections": {model: armnetwork.VirtualNetworkGatewayConnection{},
				path:    tracked("connections"),
				body:    func(g string, _ int) map[string]any { return ipsecConnBody(loc, gatewayIn(g), siteIn(g)) },
				actions: map[string]any{"sharedkey/reset": map[string]any{"keyLength": 16}, "sharedkey": map[string]any{"value": "another-key"}},
			},
		}
	})
}
