// Package policy is privlink's model of Azure's network policies: network
// security groups with their default rules, application security groups,
// route tables over the system routes, and the private endpoint network
// policies of a subnet, which decide what of those applies to the
// endpoints in it.
//
// It is pure. From the facts of one virtual network (Network) it computes
// a NIC's effective security rules (Effective) and routes (Routes), and
// decides a flow (Decide), naming the rule or the route that decided it.
// The same computation programs the kernel and explains it (the effective
// rules and routes of a NIC, `privlink why`), so the answer and the packet
// agree by construction; the tests hold both against real probes.
//
// Sources for the semantics are in shared/reference/azure-wave2.md §1:
// rules by priority, first match wins, inbound subnet NSG then NIC NSG,
// outbound NIC then subnet, both must allow, stateful; default rules last;
// longest prefix match for routes, a user route beating a system route of
// the same prefix.
package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Direction is a rule's direction.
type Direction string

// Directions.
const (
	Inbound  Direction = "Inbound"
	Outbound Direction = "Outbound"
)

// Access is what a rule does with the traffic it matches.
type Access string

// Accesses.
const (
	Allow Access = "Allow"
	Deny  Access = "Deny"
)

// Protocol is a rule's (or a flow's) protocol.
type Protocol string

// Protocols, as Azure names them.
const (
	TCP  Protocol = "Tcp"
	UDP  Protocol = "Udp"
	ICMP Protocol = "Icmp"
	ESP  Protocol = "Esp"
	AH   Protocol = "Ah"
	Any  Protocol = "*"
)

// Service tags that have a meaning on privlink's networks.
const (
	TagVirtualNetwork    = "VirtualNetwork"
	TagInternet          = "Internet"
	TagAzureLoadBalancer = "AzureLoadBalancer"
)

// Platform addresses: the network's DNS (and Azure's health probes), and
// the emulated internet.
var (
	PlatformAddr   = netip.MustParseAddr("168.63.129.16")
	InternetPrefix = netip.MustParsePrefix("198.18.0.0/15")
)

// PortRange is an inclusive range of ports.
type PortRange struct{ From, To uint16 }

// AllPorts is "*".
var AllPorts = PortRange{0, 65535}

func (r PortRange) String() string {
	switch {
	case r == AllPorts:
		return "*"
	case r.From == r.To:
		return fmt.Sprint(r.From)
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

func (r PortRange) contains(p uint16) bool { return r.From <= p && p <= r.To }

// Match is one side of a rule: address prefixes, service tags and
// application security groups (by lower-cased ID); empty Prefixes, Tags
// and ASGs with Any set match every address.
type Match struct {
	Any      bool
	Prefixes []netip.Prefix
	Tags     []string
	ASGs     []string
}

// Rule is one security rule of an NSG, user or default.
type Rule struct {
	// Name is the rule's name (a default rule's, e.g. DenyAllInBound).
	Name string
	// NSG is the lower-cased ID of its network security group.
	NSG       string
	Priority  int32
	Direction Direction
	Access    Access
	Protocol  Protocol
	Source    Match
	Dest      Match
	// SourcePorts and DestPorts: empty means every port.
	SourcePorts []PortRange
	DestPorts   []PortRange
	// Default marks one of Azure's default rules.
	Default bool
}

// DefaultRule is one of the rules Azure puts last in every NSG.
type DefaultRule struct {
	Name, Description string
	Priority          int32
	Direction         Direction
	Access            Access
	Source, Dest      string // "*" or a service tag
}

// DefaultRules are Azure's default rules, in Azure's order.
var DefaultRules = []DefaultRule{
	{"AllowVnetInBound", "Allow inbound traffic from all VMs in VNET", 65000, Inbound, Allow, TagVirtualNetwork, TagVirtualNetwork},
	{"AllowAzureLoadBalancerInBound", "Allow inbound traffic from azure load balancer", 65001, Inbound, Allow, TagAzureLoadBalancer, "*"},
	{"DenyAllInBound", "Deny all inbound traffic", 65500, Inbound, Deny, "*", "*"},
	{"AllowVnetOutBound", "Allow outbound traffic from all VMs to all VMs in VNET", 65000, Outbound, Allow, TagVirtualNetwork, TagVirtualNetwork},
	{"AllowInternetOutBound", "Allow outbound traffic from all VMs to Internet", 65001, Outbound, Allow, "*", TagInternet},
	{"DenyAllOutBound", "Deny all outbound traffic", 65500, Outbound, Deny, "*", "*"},
}

func matchOf(s string) Match {
	if s == "*" {
		return Match{Any: true}
	}
	return Match{Tags: []string{s}}
}

// NSG is a network security group: its user rules (defaults are added by
// the model).
type NSG struct {
	ID    string // lower-cased
	Rules []Rule
}

// rules returns the NSG's rules of one direction, user rules by priority
// then the defaults.
func (g *NSG) rules(d Direction) []Rule {
	var out []Rule
	for _, r := range g.Rules {
		if r.Direction == d {
			r.NSG = g.ID
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b Rule) int { return int(a.Priority - b.Priority) })
	for _, dr := range DefaultRules {
		if dr.Direction == d {
			out = append(out, Rule{Name: dr.Name, NSG: g.ID, Priority: dr.Priority, Direction: d, Access: dr.Access,
				Protocol: Any, Source: matchOf(dr.Source), Dest: matchOf(dr.Dest), Default: true})
		}
	}
	return out
}

// EndpointPolicies is a subnet's privateEndpointNetworkPolicies: what of
// the NSGs and route tables applies to the private endpoints in it.
type EndpointPolicies string

// The values of privateEndpointNetworkPolicies.
const (
	PoliciesDisabled   EndpointPolicies = "Disabled"
	PoliciesEnabled    EndpointPolicies = "Enabled"
	PoliciesNSG        EndpointPolicies = "NetworkSecurityGroupEnabled"
	PoliciesRouteTable EndpointPolicies = "RouteTableEnabled"
)

// NSG reports whether network security groups apply to the endpoints.
func (p EndpointPolicies) NSG() bool { return p == PoliciesEnabled || p == PoliciesNSG }

// RouteTable reports whether route tables apply to the endpoints.
func (p EndpointPolicies) RouteTable() bool { return p == PoliciesEnabled || p == PoliciesRouteTable }

// Subnet is a subnet's part in the policies.
type Subnet struct {
	ID       string // lower-cased
	Name     string
	Prefixes []netip.Prefix
	// NSG and RouteTable are lower-cased IDs, "" when none.
	NSG, RouteTable string
	// EndpointPolicies is its privateEndpointNetworkPolicies ("" is
	// Disabled).
	EndpointPolicies EndpointPolicies
}

// NIC is a network interface's part: its address, where it is, what it is
// a member of. A private endpoint's NIC has Endpoint set.
type NIC struct {
	ID     string // lower-cased
	Addr   netip.Addr
	Subnet string // lower-cased subnet ID
	// NSG is the NIC's own network security group, "" when none.
	NSG          string
	ASGs         []string
	Endpoint     bool
	IPForwarding bool
}

// Network is the facts of one virtual network that the policies need.
type Network struct {
	ID string
	// Space is the address space; VirtualNetwork (the tag) is Space,
	// Peered and Gateway.
	Space, Peered []netip.Prefix
	Subnets       []*Subnet
	NICs          []*NIC
	NSGs          map[string]*NSG     // by lower-cased ID
	RouteTables   map[string][]*Route // by lower-cased ID: the user routes

	// Gateway are the remote address spaces the network's VPN gateway
	// connects (its connections'): routed to the gateway (next hop
	// VirtualNetworkGateway).
	Gateway []netip.Prefix
}

// Flow is one connection attempt: its first packet.
type Flow struct {
	Src, Dst         netip.Addr
	Protocol         Protocol // Tcp, Udp or Icmp
	SrcPort, DstPort uint16
}

func (f Flow) String() string {
	return fmt.Sprintf("%s %s:%d -> %s:%d", strings.ToLower(string(f.Protocol)), f.Src, f.SrcPort, f.Dst, f.DstPort)
}

func (n *Network) subnet(id string) *Subnet {
	for _, s := range n.Subnets {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// NICAt returns the NIC holding addr, nil when none does.
func (n *Network) NICAt(addr netip.Addr) *NIC {
	for _, c := range n.NICs {
		if c.Addr == addr {
			return c
		}
	}
	return nil
}

// NICByID returns the NIC id (lower-cased), nil when none.
func (n *Network) NICByID(id string) *NIC {
	for _, c := range n.NICs {
		if c.ID == id {
			return c
		}
	}
	return nil
}

// InNetwork reports whether addr is in the network's address space.
func (n *Network) InNetwork(addr netip.Addr) bool {
	return slices.ContainsFunc(n.Space, func(p netip.Prefix) bool { return p.Contains(addr) })
}

// matches reports whether addr is in m, tags and ASGs resolved in n.
func (n *Network) matches(m Match, addr netip.Addr) bool {
	if m.Any {
		return true
	}
	if slices.ContainsFunc(m.Prefixes, func(p netip.Prefix) bool { return p.Contains(addr) }) {
		return true
	}
	for _, t := range m.Tags {
		if slices.ContainsFunc(n.TagPrefixes(t), func(p netip.Prefix) bool { return p.Contains(addr) }) {
			return true
		}
	}
	if len(m.ASGs) > 0 {
		if c := n.NICAt(addr); c != nil {
			for _, a := range m.ASGs {
				if slices.Contains(c.ASGs, a) {
					return true
				}
			}
		}
	}
	return false
}

func portIn(ranges []PortRange, p uint16) bool {
	return len(ranges) == 0 || slices.ContainsFunc(ranges, func(r PortRange) bool { return r.contains(p) })
}

// ruleMatches reports whether r matches f.
func (n *Network) ruleMatches(r Rule, f Flow) bool {
	if r.Protocol != Any && r.Protocol != f.Protocol {
		return false
	}
	if !n.matches(r.Source, f.Src) || !n.matches(r.Dest, f.Dst) {
		return false
	}
	if f.Protocol == TCP || f.Protocol == UDP {
		return portIn(r.SourcePorts, f.SrcPort) && portIn(r.DestPorts, f.DstPort)
	}
	return true
}

// first returns the first of rules that matches f.
func (n *Network) first(rules []Rule, f Flow) (Rule, bool) {
	for _, r := range rules {
		if n.ruleMatches(r, f) {
			return r, true
		}
	}
	return Rule{}, false
}

// Expand returns the prefixes m stands for in n: its own, its service
// tags' (VirtualNetwork: the space and the peered spaces; Internet: the
// emulated internet; AzureLoadBalancer: 168.63.129.16) and its ASGs'
// members' addresses; every address for Any.
func (n *Network) Expand(m Match) []netip.Prefix {
	if m.Any {
		return []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	}
	out := slices.Clone(m.Prefixes)
	for _, t := range m.Tags {
		out = append(out, n.TagPrefixes(t)...)
	}
	for _, c := range n.NICs {
		if slices.ContainsFunc(m.ASGs, func(a string) bool { return slices.Contains(c.ASGs, a) }) {
			out = append(out, netip.PrefixFrom(c.Addr, c.Addr.BitLen()))
		}
	}
	return out
}

// TagPrefixes returns the prefixes of a service tag in n (none for a tag
// that has no meaning here).
func (n *Network) TagPrefixes(tag string) []netip.Prefix {
	switch {
	case strings.EqualFold(tag, TagVirtualNetwork):
		return slices.Concat(n.Space, n.Peered, n.Gateway)
	case strings.EqualFold(tag, TagInternet):
		return []netip.Prefix{InternetPrefix}
	case strings.EqualFold(tag, TagAzureLoadBalancer):
		return []netip.Prefix{netip.PrefixFrom(PlatformAddr, 32)}
	}
	return nil
}
