package network

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/policy"
)

// PolicyNetwork reads the facts of virtual network vnet that its network
// policies need (internal/policy): its space and subnets, every NIC in its
// subnets (private endpoints' NICs marked), the NSGs and route tables its
// subnets and NICs reference, with their rules and routes, and the ASG
// memberships of its NICs. nil, nil when there is no such network.
func PolicyNetwork(r arm.Reader, vnet arm.ResourceID) (*policy.Network, error) {
	var v armnetwork.VirtualNetwork
	ok, err := arm.Load(r, vnet, &v)
	if err != nil || !ok {
		return nil, err
	}
	space, err := storedSpace(&v)
	if err != nil {
		return nil, err
	}
	n := &policy.Network{ID: lkey(vnet.String()), Space: v4(space),
		NSGs: map[string]*policy.NSG{}, RouteTables: map[string][]*policy.Route{}}
	// Peered spaces: those of Connected peerings that allow virtual
	// network access on both sides, which is when the data path links
	// the routers (controller/peering.go).
	peers, err := ConnectedPeers(r, vnet)
	if err != nil {
		return nil, err
	}
	for _, p := range peers {
		if p.Access {
			n.Peered = append(n.Peered, p.Space...)
		}
	}
	if n.Gateway, err = gatewaySpaces(r, vnet); err != nil {
		return nil, err
	}
	subnets, err := arm.LoadAll[armnetwork.Subnet](r, vnet.ChildCollection("subnets"))
	if err != nil {
		return nil, err
	}
	for i := range subnets {
		s := &subnets[i]
		ps := &policy.Subnet{ID: lkey(str(s.ID)), Name: str(s.Name), Prefixes: v4(subnetPrefixes(s))}
		if p := s.Properties; p != nil {
			if p.NetworkSecurityGroup != nil {
				ps.NSG = lkey(str(p.NetworkSecurityGroup.ID))
			}
			if p.RouteTable != nil {
				ps.RouteTable = lkey(str(p.RouteTable.ID))
			}
			if p.PrivateEndpointNetworkPolicies != nil {
				ps.EndpointPolicies = policy.EndpointPolicies(*p.PrivateEndpointNetworkPolicies)
			}
		}
		n.Subnets = append(n.Subnets, ps)
	}
	inNetwork := func(subnet string) bool {
		for _, s := range n.Subnets {
			if s.ID == subnet {
				return true
			}
		}
		return false
	}
	nics, err := newUsage(r, vnet.Subscription).NICs()
	if err != nil {
		return nil, err
	}
	for i := range nics {
		c := &nics[i]
		if c.Properties == nil {
			continue
		}
		// A private link service's NAT NIC forwards its consumers' flows
		// (fabric.EnsureLinkService).
		base := policy.NIC{ID: lkey(str(c.ID)), Endpoint: managedBy(c) != "",
			IPForwarding: (c.Properties.EnableIPForwarding != nil && *c.Properties.EnableIPForwarding) || serviceOf(c) != ""}
		if g := c.Properties.NetworkSecurityGroup; g != nil {
			base.NSG = lkey(str(g.ID))
		}
		for _, ic := range c.Properties.IPConfigurations {
			if ic == nil || ic.Properties == nil || ic.Properties.Subnet == nil || !inNetwork(lkey(str(ic.Properties.Subnet.ID))) {
				continue
			}
			addr, err := netip.ParseAddr(str(ic.Properties.PrivateIPAddress))
			if err != nil {
				continue
			}
			pn := base
			pn.Addr, pn.Subnet, pn.ASGs = addr, lkey(str(ic.Properties.Subnet.ID)), nil
			for _, a := range ic.Properties.ApplicationSecurityGroups {
				if a != nil {
					pn.ASGs = append(pn.ASGs, lkey(str(a.ID)))
				}
			}
			n.NICs = append(n.NICs, &pn)
		}
	}
	load := func(id string) error {
		if id == "" || n.NSGs[id] != nil {
			return nil
		}
		g, err := policyNSG(r, id)
		if err != nil {
			return err
		}
		n.NSGs[id] = g
		return nil
	}
	for _, s := range n.Subnets {
		if err := load(s.NSG); err != nil {
			return nil, err
		}
		if s.RouteTable != "" && n.RouteTables[s.RouteTable] == nil {
			routes, err := policyRoutes(r, s.RouteTable)
			if err != nil {
				return nil, err
			}
			n.RouteTables[s.RouteTable] = routes
		}
	}
	for _, c := range n.NICs {
		if err := load(c.NSG); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// policyNSG reads an NSG's rules (an NSG that is gone has none: its
// default rules still apply, as they would for one without rules).
func policyNSG(r arm.Reader, id string) (*policy.NSG, error) {
	g := &policy.NSG{ID: id}
	nid, err := arm.ParseID(id)
	if err != nil {
		return g, nil
	}
	rules, err := arm.LoadAll[armnetwork.SecurityRule](r, nid.ChildCollection("securityRules"))
	if err != nil {
		return nil, err
	}
	for i := range rules {
		pr, err := PolicyRule(&rules[i])
		if err != nil {
			return nil, fmt.Errorf("NSG %s: %w", id, err)
		}
		g.Rules = append(g.Rules, pr)
	}
	return g, nil
}

// PolicyRule is a stored security rule in the policy model.
func PolicyRule(sr *armnetwork.SecurityRule) (policy.Rule, error) {
	p := sr.Properties
	if p == nil {
		return policy.Rule{}, fmt.Errorf("rule %s has no properties", str(sr.Name))
	}
	out := policy.Rule{Name: str(sr.Name), Access: policy.Access(strOf(p.Access)), Direction: policy.Direction(strOf(p.Direction)),
		Protocol: policy.Protocol(strOf(p.Protocol))}
	if p.Priority != nil {
		out.Priority = *p.Priority
	}
	if out.Protocol == "" {
		out.Protocol = policy.Any
	}
	var err error
	if out.Source, err = policyMatch(p.SourceAddressPrefix, p.SourceAddressPrefixes, p.SourceApplicationSecurityGroups); err != nil {
		return out, fmt.Errorf("rule %s source: %w", out.Name, err)
	}
	if out.Dest, err = policyMatch(p.DestinationAddressPrefix, p.DestinationAddressPrefixes, p.DestinationApplicationSecurityGroups); err != nil {
		return out, fmt.Errorf("rule %s destination: %w", out.Name, err)
	}
	if out.SourcePorts, err = policyPorts(p.SourcePortRange, p.SourcePortRanges); err != nil {
		return out, fmt.Errorf("rule %s source ports: %w", out.Name, err)
	}
	if out.DestPorts, err = policyPorts(p.DestinationPortRange, p.DestinationPortRanges); err != nil {
		return out, fmt.Errorf("rule %s destination ports: %w", out.Name, err)
	}
	return out, nil
}

func strOf[T ~string](p *T) string {
	if p == nil {
		return ""
	}
	return string(*p)
}

func policyMatch(one *string, list []*string, asgs []*armnetwork.ApplicationSecurityGroup) (policy.Match, error) {
	var m policy.Match
	for _, a := range asgs {
		if a != nil {
			m.ASGs = append(m.ASGs, lkey(str(a.ID)))
		}
	}
	raw := list
	if one != nil && strings.TrimSpace(*one) != "" {
		raw = append([]*string{one}, list...)
	}
	for _, s := range raw {
		v := strings.TrimSpace(str(s))
		switch {
		case v == "":
		case v == "*":
			m.Any = true
		case serviceTags[strings.ToLower(v)]:
			m.Tags = append(m.Tags, v)
		default:
			pr, err := netip.ParsePrefix(v)
			if err != nil {
				a, aerr := netip.ParseAddr(v)
				if aerr != nil {
					return m, fmt.Errorf("%q is no address, prefix or service tag", v)
				}
				pr = netip.PrefixFrom(a, a.BitLen())
			}
			m.Prefixes = append(m.Prefixes, pr.Masked())
		}
	}
	return m, nil
}

func policyPorts(one *string, list []*string) ([]policy.PortRange, error) {
	raw := list
	if one != nil && strings.TrimSpace(*one) != "" {
		raw = append([]*string{one}, list...)
	}
	var out []policy.PortRange
	for _, s := range raw {
		v := strings.TrimSpace(str(s))
		if v == "" {
			continue
		}
		if v == "*" {
			return nil, nil // every port
		}
		from, to, isRange := strings.Cut(v, "-")
		if !isRange {
			to = from
		}
		f, err1 := strconv.ParseUint(strings.TrimSpace(from), 10, 16)
		t, err2 := strconv.ParseUint(strings.TrimSpace(to), 10, 16)
		if err1 != nil || err2 != nil || f > t {
			return nil, fmt.Errorf("%q is no port or port range", v)
		}
		out = append(out, policy.PortRange{From: uint16(f), To: uint16(t)})
	}
	return out, nil
}

// policyRoutes reads a route table's routes.
func policyRoutes(r arm.Reader, id string) ([]*policy.Route, error) {
	tid, err := arm.ParseID(id)
	if err != nil {
		return nil, nil
	}
	routes, err := loadRoutes(r, tid)
	if err != nil {
		return nil, err
	}
	var out []*policy.Route
	for _, rt := range routes {
		if rt.Properties == nil {
			continue
		}
		pr, err := netip.ParsePrefix(str(rt.Properties.AddressPrefix))
		if err != nil {
			continue // a service tag prefix: not routable here
		}
		route := &policy.Route{Name: str(rt.Name), Prefix: pr.Masked(), NextHop: policy.NextHopType(strOf(rt.Properties.NextHopType))}
		if a, err := netip.ParseAddr(str(rt.Properties.NextHopIPAddress)); err == nil {
			route.NextHopIP = a
		}
		out = append(out, route)
	}
	return out, nil
}

// OutboundPrefix is the store prefix of the virtual networks' default
// outbound addresses: OutboundPrefix+address → the network's lower-cased
// ARM ID (controller.OutboundPrefix, which reserves them, is this).
const OutboundPrefix = "network/outbound/"

// outboundAddress returns the default outbound address of the network
// whose lower-cased ID is vnet, the zero Addr if it has none (yet).
func outboundAddress(r arm.Reader, vnet string) (netip.Addr, error) {
	kvs, err := r.List(OutboundPrefix)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("list default outbound addresses: %w", err)
	}
	for _, kv := range kvs {
		if string(kv.Value) == vnet {
			if a, err := netip.ParseAddr(strings.TrimPrefix(kv.Key, OutboundPrefix)); err == nil {
				return a, nil
			}
		}
	}
	return netip.Addr{}, nil
}
