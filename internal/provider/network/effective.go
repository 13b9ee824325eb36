package network

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/policy"
	"github.com/privlink/privlink/internal/store"
)

// A NIC's effective security rules and effective routes
// (POST networkInterfaces/{nic}/effectiveNetworkSecurityGroups and
// /effectiveRouteTable), computed from the policy model that also
// programs the kernel (internal/policy): what they list is what is
// enforced. Long-running as in Azure; the result is ready at once and
// the Location URL answers it.

// nicPolicy reads the policy model of the network the NIC nic is in, and
// the NIC's entries in it (one per ipConfiguration).
func nicPolicy(r arm.Reader, nic arm.ResourceID) (*policy.Network, []*policy.NIC, *armnetwork.Interface, error) {
	var doc armnetwork.Interface
	ok, err := arm.Load(r, nic, &doc)
	if err != nil {
		return nil, nil, nil, err
	}
	if !ok {
		return nil, nil, nil, arm.NotFound(nic)
	}
	var vnet arm.ResourceID
	if p := doc.Properties; p != nil {
		for _, ic := range p.IPConfigurations {
			if ic != nil && ic.Properties != nil && ic.Properties.Subnet != nil {
				if sid, err := arm.ParseID(str(ic.Properties.Subnet.ID)); err == nil {
					vnet = sid.Parent()
					break
				}
			}
		}
	}
	if vnet.Subscription == "" {
		return nil, nil, &doc, badRequest("NetworkInterfaceNotInSubnet", "", "Network interface %s has no ipConfiguration in a subnet: it has no effective rules or routes.", nic)
	}
	n, err := PolicyNetwork(r, vnet)
	if err != nil || n == nil {
		return nil, nil, &doc, err
	}
	var mine []*policy.NIC
	for _, c := range n.NICs {
		if c.ID == lkey(nic.String()) {
			mine = append(mine, c)
		}
	}
	return n, mine, &doc, nil
}

func (p *Provider) effectiveNSGs(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	return p.effective(ctx, r, func(n *policy.Network, nics []*policy.NIC) any {
		type key struct{ nsg, to string }
		groups := map[key]*armnetwork.EffectiveNetworkSecurityGroup{}
		var order []key
		tagMap := map[string][]*string{}
		for _, c := range nics {
			for _, d := range []policy.Direction{policy.Inbound, policy.Outbound} {
				for _, a := range n.Applied(c, d) {
					k := key{a.NSG, a.To}
					g := groups[k]
					if g == nil {
						g = &armnetwork.EffectiveNetworkSecurityGroup{NetworkSecurityGroup: &armnetwork.SubResource{ID: ptr(a.NSG)},
							Association: &armnetwork.EffectiveNetworkSecurityGroupAssociation{}, EffectiveSecurityRules: []*armnetwork.EffectiveNetworkSecurityRule{}}
						if a.Association == policy.AssocSubnet {
							g.Association.Subnet = &armnetwork.SubResource{ID: ptr(a.To)}
						} else {
							g.Association.NetworkInterface = &armnetwork.SubResource{ID: ptr(a.To)}
						}
						groups[k], order = g, append(order, k)
					}
					for _, rule := range a.Rules {
						g.EffectiveSecurityRules = append(g.EffectiveSecurityRules, effectiveRule(n, rule, tagMap))
					}
				}
			}
		}
		out := []*armnetwork.EffectiveNetworkSecurityGroup{}
		for _, k := range order {
			g := groups[k]
			// The SDK models tagMap as a string: the JSON of the map.
			if b, err := json.Marshal(tagMap); err == nil {
				g.TagMap = ptr(string(b))
			}
			out = append(out, g)
		}
		return armnetwork.EffectiveNetworkSecurityGroupListResult{Value: out}
	})
}

// effectiveRule renders a rule as effectiveSecurityRules shows it, its
// tags and ASGs expanded, and records the tags' prefixes in tagMap.
func effectiveRule(n *policy.Network, r policy.Rule, tagMap map[string][]*string) *armnetwork.EffectiveNetworkSecurityRule {
	kind := "securityRules/"
	if r.Default {
		kind = "defaultSecurityRules/"
	}
	side := func(m policy.Match) (prefixes, expanded []*string) {
		if m.Any {
			prefixes = append(prefixes, ptr("0.0.0.0/0"))
		}
		for _, p := range m.Prefixes {
			prefixes = append(prefixes, ptr(p.String()))
		}
		for _, t := range m.Tags {
			prefixes = append(prefixes, ptr(t))
			var ps []*string
			for _, p := range n.TagPrefixes(t) {
				ps = append(ps, ptr(p.String()))
			}
			tagMap[t] = ps
		}
		for _, p := range n.Expand(m) {
			expanded = append(expanded, ptr(p.String()))
		}
		return prefixes, expanded
	}
	src, srcX := side(r.Source)
	dst, dstX := side(r.Dest)
	ports := func(rs []policy.PortRange) []*string {
		if len(rs) == 0 {
			return []*string{ptr("0-65535")}
		}
		var out []*string
		for _, p := range rs {
			out = append(out, ptr(fmt.Sprintf("%d-%d", p.From, p.To)))
		}
		return out
	}
	proto := armnetwork.EffectiveSecurityRuleProtocol(r.Protocol)
	if r.Protocol == policy.Any {
		proto = armnetwork.EffectiveSecurityRuleProtocolAll
	}
	return &armnetwork.EffectiveNetworkSecurityRule{
		Name: ptr(kind + r.Name), Protocol: &proto, Priority: ptr(r.Priority),
		Access:                           ptr(armnetwork.SecurityRuleAccess(r.Access)),
		Direction:                        ptr(armnetwork.SecurityRuleDirection(r.Direction)),
		SourcePortRanges:                 ports(r.SourcePorts),
		DestinationPortRanges:            ports(r.DestPorts),
		SourceAddressPrefixes:            src,
		DestinationAddressPrefixes:       dst,
		ExpandedSourceAddressPrefix:      srcX,
		ExpandedDestinationAddressPrefix: dstX,
	}
}

func (p *Provider) effectiveRoutes(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	return p.effective(ctx, r, func(n *policy.Network, nics []*policy.NIC) any {
		out := []*armnetwork.EffectiveRoute{}
		seen := map[string]bool{}
		for _, c := range nics {
			if seen[c.Subnet] {
				continue
			}
			seen[c.Subnet] = true
			for _, route := range n.Routes(c.Subnet) {
				e := &armnetwork.EffectiveRoute{
					Source:        ptr(armnetwork.EffectiveRouteSource(route.Source)),
					State:         ptr(armnetwork.EffectiveRouteStateActive),
					AddressPrefix: []*string{ptr(route.Prefix.String())},
					NextHopType:   ptr(armnetwork.RouteNextHopType(route.NextHop)),
				}
				if route.Invalid {
					e.State = ptr(armnetwork.EffectiveRouteStateInvalid)
				}
				if route.Source == policy.SourceUser {
					e.Name = ptr(route.Name)
				}
				e.NextHopIPAddress = []*string{}
				if route.NextHopIP.IsValid() {
					e.NextHopIPAddress = append(e.NextHopIPAddress, ptr(route.NextHopIP.String()))
				}
				e.DisableBgpRoutePropagation = ptr(false)
				out = append(out, e)
			}
		}
		return armnetwork.EffectiveRouteListResult{Value: out}
	})
}

// effective answers an effective-* action on a NIC with compute's result,
// as a finished long-running operation.
func (p *Provider) effective(ctx context.Context, r *arm.Request, compute func(*policy.Network, []*policy.NIC) any) (*arm.Response, error) {
	var op *arm.Operation
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		n, nics, doc, err := nicPolicy(tx, r.ID)
		if err != nil {
			return err
		}
		var result any
		if n == nil {
			result = compute(&policy.Network{}, nil)
		} else {
			result = compute(n, nics)
		}
		op, err = arm.StartOperationWithResult(tx, r.ID, str(doc.Location), result)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &arm.Response{Status: http.StatusAccepted, Op: op}, nil
}
