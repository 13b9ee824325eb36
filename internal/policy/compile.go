package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Program is a network's policies as a router enforces them, with the
// semantics compiled away: address sets, chains of rules that either let
// a flow go on to the next chain or drop it, each NIC's chains in the order
// its traffic meets them, and each subnet's routes that are not plain
// local delivery. internal/fabric turns it into nftables sets and chains
// and policy routes; Decide on the Network it came from and Program.Decide
// agree (a test holds them together on many flows).
type Program struct {
	// Sets are named address sets (an ASG's members, the network's
	// VirtualNetwork tag), updated in place when only their members change.
	Sets map[string][]netip.Prefix
	// Chains are an NSG's rules of one direction, by chain name.
	Chains map[string][]ChainRule
	// Attachments say which chains filter each NIC's traffic.
	Attachments []Attachment
	// Routes are, by subnet, the routes a flow from the subnet takes that
	// differ from delivery inside the network, longest prefix first.
	Routes map[string][]RouteAction
}

// ChainRule is one compiled security rule.
type ChainRule struct {
	// Comment names the rule ("nsg <name>: <rule>").
	Comment  string
	Protocol Protocol
	Src, Dst Addrs
	// SrcPorts and DstPorts: none means every port. They apply to TCP
	// and UDP flows only: a rule for any protocol with ports matches an
	// ICMP flow whatever its ports (Azure's reading).
	SrcPorts, DstPorts []PortRange
	// Allow lets the flow go on to the next chain; otherwise it is dropped.
	Allow bool
}

// Addrs are the addresses a rule side matches: any, or prefixes and the
// members of named sets.
type Addrs struct {
	Any      bool
	Prefixes []netip.Prefix
	Sets     []string
}

// Attachment is where a NIC's traffic meets chains: outbound in Out's
// order when it leaves the NIC, inbound in In's order when it reaches it
// (for a private endpoint: before the translation).
type Attachment struct {
	NIC      string // lower-cased ID
	Addr     netip.Addr
	Subnet   string // lower-cased ID
	Endpoint bool
	// IPForwarding: the NIC may send packets from addresses not its own
	// (an appliance forwarding others' traffic).
	IPForwarding bool
	In, Out      []string
}

// Fingerprint is equal for two Programs that hold the same (sets, chains,
// attachments, routes): a router that runs one need not converge to the
// other.
func (p *Program) Fingerprint() string {
	if p == nil {
		return ""
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%v", *p)) // maps print in key order
	return hex.EncodeToString(sum[:])
}

// RouteAction is a route that is not delivery inside the network.
type RouteAction struct {
	Prefix    netip.Prefix
	NextHop   NextHopType // None, VirtualAppliance, Internet, VirtualNetworkGateway
	NextHopIP netip.Addr
	// Name says where the route comes from, for comments.
	Name string
}

// Key is a short stable name for an ID in kernel object names.
func Key(id string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(id)))
	return hex.EncodeToString(sum[:6])
}

// SetSpace is the set of the VirtualNetwork tag.
const SetSpace = "vnet"

// ChainName is the chain of an NSG's rules of direction d.
func ChainName(nsg string, d Direction) string {
	if d == Inbound {
		return "nsg-" + Key(nsg) + "-in"
	}
	return "nsg-" + Key(nsg) + "-out"
}

// ASGSet is the set of an ASG's members.
func ASGSet(asg string) string { return "asg-" + Key(asg) }

// Compile compiles the network's policies.
func (n *Network) Compile() *Program {
	p := &Program{Sets: map[string][]netip.Prefix{SetSpace: n.TagPrefixes(TagVirtualNetwork)},
		Chains: map[string][]ChainRule{}, Routes: map[string][]RouteAction{}}
	for _, c := range n.NICs {
		a := Attachment{NIC: c.ID, Addr: c.Addr, Subnet: c.Subnet, Endpoint: c.Endpoint, IPForwarding: c.IPForwarding}
		for _, d := range []Direction{Inbound, Outbound} {
			for _, ap := range n.Applied(c, d) {
				name := ChainName(ap.NSG, d)
				if _, done := p.Chains[name]; !done {
					p.Chains[name] = n.compileRules(p, ap.Rules)
				}
				if d == Inbound {
					a.In = append(a.In, name)
				} else {
					a.Out = append(a.Out, name)
				}
			}
		}
		p.Attachments = append(p.Attachments, a)
	}
	for _, s := range n.Subnets {
		if r := compileRoutes(n.Routes(s.ID)); len(r) > 0 {
			p.Routes[s.ID] = r
		}
	}
	return p
}

// compileRoutes keeps, of a subnet's effective routes, the one that wins
// each prefix (a user route over a system one, invalid ones out), and
// returns the actions that are not local delivery with, in front, the
// local routes more specific than one of them (which must win over it),
// longest prefix first: the first that holds an address decides.
func compileRoutes(routes []*Route) []RouteAction {
	win := map[netip.Prefix]*Route{}
	for _, r := range routes {
		if r.Invalid {
			continue
		}
		if cur := win[r.Prefix]; cur == nil || (r.Source == SourceUser && cur.Source != SourceUser) {
			win[r.Prefix] = r
		}
	}
	isLocal := func(r *Route) bool {
		return r.NextHop == HopVnetLocal || r.NextHop == HopEndpoint || r.NextHop == HopPeering
	}
	var out []RouteAction
	for _, r := range win {
		if !isLocal(r) {
			out = append(out, RouteAction{Prefix: r.Prefix, NextHop: r.NextHop, NextHopIP: r.NextHopIP, Name: r.Name})
		}
	}
	for _, r := range win {
		if isLocal(r) && slices.ContainsFunc(out, func(a RouteAction) bool { return a.Prefix.Bits() < r.Prefix.Bits() && a.Prefix.Overlaps(r.Prefix) }) {
			out = append(out, RouteAction{Prefix: r.Prefix, NextHop: HopVnetLocal, Name: r.Name})
		}
	}
	slices.SortFunc(out, func(a, b RouteAction) int {
		if a.Prefix.Bits() != b.Prefix.Bits() {
			return b.Prefix.Bits() - a.Prefix.Bits()
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
	return out
}

func (n *Network) compileRules(p *Program, rules []Rule) []ChainRule {
	out := make([]ChainRule, 0, len(rules))
	for _, r := range rules {
		cr := ChainRule{Comment: fmt.Sprintf("%s/%s %d", Key(r.NSG), r.Name, r.Priority), Protocol: r.Protocol,
			Src: n.compileMatch(p, r.Source), Dst: n.compileMatch(p, r.Dest), Allow: r.Access == Allow,
			SrcPorts: r.SourcePorts, DstPorts: r.DestPorts}
		out = append(out, cr)
	}
	return out
}

func (n *Network) compileMatch(p *Program, m Match) Addrs {
	if m.Any {
		return Addrs{Any: true}
	}
	a := Addrs{Prefixes: slices.Clone(m.Prefixes)}
	for _, t := range m.Tags {
		if strings.EqualFold(t, TagVirtualNetwork) {
			a.Sets = append(a.Sets, SetSpace)
			continue
		}
		a.Prefixes = append(a.Prefixes, n.TagPrefixes(t)...)
	}
	for _, g := range m.ASGs {
		name := ASGSet(g)
		if _, ok := p.Sets[name]; !ok {
			var members []netip.Prefix
			for _, c := range n.NICs {
				if slices.Contains(c.ASGs, g) {
					members = append(members, netip.PrefixFrom(c.Addr, c.Addr.BitLen()))
				}
			}
			p.Sets[name] = members
		}
		a.Sets = append(a.Sets, name)
	}
	return a
}

// Decide is what a router running p does with f's first packet: the
// source's outbound chains, its subnet's route, the destination's inbound
// chains; a packet a route hands to an appliance meets the appliance's
// inbound chains, and if the appliance forwards (IP forwarding) comes
// back from it and is taken as the appliance's own (its outbound chains,
// its subnet's route). It stands for the kernel in
// tests of the compiler, and answers as Network.Decide does (outcome and
// deciding rule's comment).
func (p *Program) Decide(f Flow) (Outcome, string) {
	if f.Dst == PlatformAddr {
		return Platform, ""
	}
	at := func(addr netip.Addr) *Attachment {
		for i := range p.Attachments {
			if p.Attachments[i].Addr == addr {
				return &p.Attachments[i]
			}
		}
		return nil
	}
	src, dst := at(f.Src), at(f.Dst)
	if src == nil {
		return Unreachable, ""
	}
	last := ""
	for via := map[netip.Addr]bool{}; ; {
		if !p.pass(src.Out, f, &last) {
			return Denied, last
		}
		a := p.routeOf(src, f.Dst)
		if a == nil {
			break
		}
		switch a.NextHop {
		case HopNone:
			return Dropped, last
		case HopVirtualAppliance:
			next := at(a.NextHopIP)
			if next == nil || next.Endpoint {
				return ToAppliance, last
			}
			if via[next.Addr] {
				return Unreachable, last // a routing loop
			}
			if !p.pass(next.In, f, &last) { // arriving at the appliance's NIC
				return Denied, last
			}
			if !next.IPForwarding {
				return ToAppliance, last
			}
			via[next.Addr], src = true, next
			continue
		case HopInternet:
			if slices.ContainsFunc(p.Sets[SetSpace], func(q netip.Prefix) bool { return q.Contains(f.Dst) }) {
				return Unreachable, last // a user route sent a network address away
			}
			return ToInternet, last
		case HopVirtualNetworkGateway:
			return ToGateway, last
		}
		break
	}
	if dst == nil {
		return Unreachable, last
	}
	if !p.pass(dst.In, f, &last) {
		return Denied, last
	}
	return Delivered, last
}

// routeOf is the first (longest) route action of src's subnet holding
// addr: nil for delivery inside the network.
func (p *Program) routeOf(src *Attachment, addr netip.Addr) *RouteAction {
	for i, a := range p.Routes[src.Subnet] {
		if a.Prefix.Contains(addr) {
			if a.NextHop == HopVnetLocal {
				return nil
			}
			return &p.Routes[src.Subnet][i]
		}
	}
	return nil
}

func (p *Program) pass(chains []string, f Flow, last *string) bool {
	for _, name := range chains {
		for _, r := range p.Chains[name] {
			if p.matches(r, f) {
				*last = r.Comment
				if !r.Allow {
					return false
				}
				break
			}
		}
	}
	return true
}

func (p *Program) matches(r ChainRule, f Flow) bool {
	if r.Protocol != Any && r.Protocol != f.Protocol {
		return false
	}
	in := func(a Addrs, addr netip.Addr) bool {
		if a.Any || slices.ContainsFunc(a.Prefixes, func(q netip.Prefix) bool { return q.Contains(addr) }) {
			return true
		}
		return slices.ContainsFunc(a.Sets, func(s string) bool {
			return slices.ContainsFunc(p.Sets[s], func(q netip.Prefix) bool { return q.Contains(addr) })
		})
	}
	if !in(r.Src, f.Src) || !in(r.Dst, f.Dst) {
		return false
	}
	if f.Protocol != TCP && f.Protocol != UDP {
		return true
	}
	return portIn(r.SrcPorts, f.SrcPort) && portIn(r.DstPorts, f.DstPort)
}
