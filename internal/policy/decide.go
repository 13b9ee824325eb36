package policy

import (
	"fmt"
	"net/netip"
	"slices"
)

// Association says where an NSG is associated.
type Association string

// Associations, as effectiveNetworkSecurityGroups names them.
const (
	AssocSubnet Association = "Subnet"
	AssocNIC    Association = "NetworkInterface"
)

// Applied is one NSG that filters a NIC's traffic, with its rules of one
// direction in the order they are tried.
type Applied struct {
	NSG         string
	Association Association
	// To is the subnet or NIC the NSG is associated with (lower-cased ID).
	To    string
	Rules []Rule
}

// Applied returns the NSGs that filter traffic of nic in direction d, in
// the order traffic meets them: inbound the subnet's then the NIC's,
// outbound the NIC's then the subnet's. A private endpoint's NIC has the
// subnet's inbound rules only when the subnet's private endpoint network
// policies enable NSGs, and no outbound rules (an endpoint originates no
// traffic).
func (n *Network) Applied(nic *NIC, d Direction) []Applied {
	var out []Applied
	sub := n.subnet(nic.Subnet)
	add := func(id string, a Association, to string) {
		if g := n.NSGs[id]; id != "" && g != nil {
			out = append(out, Applied{NSG: id, Association: a, To: to, Rules: g.rules(d)})
		}
	}
	if nic.Endpoint {
		if d == Inbound && sub != nil && sub.EndpointPolicies.NSG() {
			add(sub.NSG, AssocSubnet, sub.ID)
		}
		return out
	}
	subnetNSG := func() {
		if sub != nil {
			add(sub.NSG, AssocSubnet, sub.ID)
		}
	}
	if d == Inbound {
		subnetNSG()
		add(nic.NSG, AssocNIC, nic.ID)
	} else {
		add(nic.NSG, AssocNIC, nic.ID)
		subnetNSG()
	}
	return out
}

// Outcome is where a flow ends.
type Outcome string

// Outcomes.
const (
	// Delivered: the destination receives the flow.
	Delivered Outcome = "Delivered"
	// Denied: a security rule denies it (Verdict.Rule).
	Denied Outcome = "Denied"
	// Dropped: the route's next hop is None.
	Dropped Outcome = "Dropped"
	// ToAppliance: a route sends it to a virtual appliance
	// (Verdict.Appliance) that does not forward it (its NIC does not
	// enable IP forwarding, or no NIC holds the next hop's address). An
	// appliance that forwards is a hop (Verdict.Via), and the outcome is
	// where the flow ends after it.
	ToAppliance Outcome = "ToAppliance"
	// ToInternet: it leaves the network for the (emulated) internet.
	ToInternet Outcome = "ToInternet"
	// ToGateway: it leaves the network through its VPN gateway.
	ToGateway Outcome = "ToGateway"
	// Unreachable: nothing in the network holds the destination address.
	Unreachable Outcome = "Unreachable"
	// Platform: the destination is 168.63.129.16, which NSGs never block.
	Platform Outcome = "Platform"
)

// Check is one NSG a flow crossed and the rule that matched there.
type Check struct {
	Applied   Applied
	Direction Direction
	Rule      Rule
	// NIC is the NIC whose traffic the NSG filtered (lower-cased ID): the
	// sender's or a virtual appliance's (outbound, inbound at the
	// appliance), or the destination's.
	NIC string
}

// Verdict is the decision on a flow and why.
type Verdict struct {
	Outcome Outcome
	// Checks are the NSGs crossed, in order, each with its matching rule;
	// the last one decided a Denied flow.
	Checks []Check
	// Route is the route the flow took out of the subnet of its last
	// sender: the source, or the last appliance of Via.
	Route *Route
	// Appliance is the NIC a ToAppliance flow goes to ("" if no NIC of the
	// network holds the next hop's address).
	Appliance string
	// Via are the virtual appliances that forwarded the flow (their NICs
	// enable IP forwarding), in order, each with the route that handed
	// the flow to it. The router takes a forwarded packet as one the
	// appliance sent: its NIC's outbound NSGs and its subnet's routes
	// apply, then the destination's inbound NSGs.
	Via []Hop
}

// Hop is a virtual appliance that forwarded a flow.
type Hop struct {
	// Appliance is the appliance's NIC (lower-cased ID).
	Appliance string
	// Route is the route that handed the flow to it.
	Route *Route
}

// Allowed reports whether the flow passes the policies: delivered, or
// handed on (to an appliance, to the internet, to the platform).
func (v Verdict) Allowed() bool {
	return v.Outcome != Denied && v.Outcome != Dropped && v.Outcome != Unreachable
}

// Rule is the rule that decided: the denying one, or the last allowing
// one; nil when no NSG applied.
func (v Verdict) Rule() *Rule {
	if len(v.Checks) == 0 {
		return nil
	}
	return &v.Checks[len(v.Checks)-1].Rule
}

func (v Verdict) String() string {
	s := string(v.Outcome)
	if r := v.Rule(); r != nil {
		s += fmt.Sprintf(" by %s (priority %d, %s of %s)", r.Name, r.Priority, r.Direction, r.NSG)
	}
	for _, h := range v.Via {
		s += fmt.Sprintf(" through appliance %s (%s %s)", h.Appliance, h.Route.Prefix, h.Route.NextHop)
	}
	if v.Route != nil {
		s += fmt.Sprintf(" via %s %s", v.Route.Prefix, v.Route.NextHop)
	}
	return s
}

// Decide decides a flow from the NIC src (by address) of the network:
// outbound NSGs, the route, then, within the network, the destination's
// inbound NSGs. Return traffic of an allowed flow passes (the rules are
// stateful), so only the first packet's direction is decided.
func (n *Network) Decide(f Flow) (Verdict, error) {
	var v Verdict
	if f.Dst == PlatformAddr {
		v.Outcome = Platform
		return v, nil
	}
	src := n.NICAt(f.Src)
	if src == nil {
		return v, fmt.Errorf("no NIC of network %s holds %s", n.ID, f.Src)
	}
	return n.from(v, src, f)
}

// from decides f as the NIC src sends it: its outbound NSGs, its subnet's
// route, then within the network the destination's inbound NSGs; a
// virtual appliance that forwards sends it on in turn.
func (n *Network) from(v Verdict, src *NIC, f Flow) (Verdict, error) {
	if !n.cross(&v, src, Outbound, f) {
		return v, nil
	}
	sub := n.subnet(src.Subnet)
	if sub == nil {
		return v, fmt.Errorf("NIC %s is in subnet %s, which network %s lacks", src.ID, src.Subnet, n.ID)
	}
	v.Route = n.NextHop(sub.ID, f.Dst)
	switch v.Route.NextHop {
	case HopNone:
		v.Outcome = Dropped
		return v, nil
	case HopInternet:
		v.Outcome = ToInternet
		if n.InNetwork(f.Dst) {
			v.Outcome = Unreachable // a user route sent a network address away
		}
		return v, nil
	case HopVirtualAppliance:
		v.Outcome = ToAppliance
		c := n.NICAt(v.Route.NextHopIP)
		if c == nil {
			return v, nil
		}
		v.Appliance = c.ID
		if c.Endpoint {
			return v, nil
		}
		if slices.ContainsFunc(v.Via, func(h Hop) bool { return h.Appliance == c.ID }) {
			v.Outcome = Unreachable // a routing loop: the packet goes round until its TTL runs out
			return v, nil
		}
		if c.IPForwarding {
			v.Via = append(v.Via, Hop{Appliance: c.ID, Route: v.Route})
			v.Appliance = ""
		}
		// The packet arrives at the appliance's NIC: its inbound NSGs
		// (subnet then NIC) apply, as Azure applies them to what a route
		// hands a network virtual appliance.
		if !n.cross(&v, c, Inbound, f) {
			return v, nil
		}
		if !c.IPForwarding {
			return v, nil
		}
		return n.from(v, c, f)
	case HopVirtualNetworkGateway:
		v.Outcome = ToGateway
		return v, nil
	}
	dst := n.NICAt(f.Dst)
	if dst == nil {
		v.Outcome = Unreachable
		return v, nil
	}
	if !n.cross(&v, dst, Inbound, f) {
		return v, nil
	}
	v.Outcome = Delivered
	return v, nil
}

// Verify is IP flow verify: what the NSGs of nic do with f in direction
// d. It returns the check that decided (the first deny, or the last NSG's
// allowing rule), nil when no NSG applies (all traffic passes).
func (n *Network) Verify(nic *NIC, d Direction, f Flow) *Check {
	var v Verdict
	n.cross(&v, nic, d, f)
	if len(v.Checks) == 0 {
		return nil
	}
	return &v.Checks[len(v.Checks)-1]
}

// cross applies the NSGs of nic in direction d to f, recording each
// check; it reports false, with v Denied, at the first deny.
func (n *Network) cross(v *Verdict, nic *NIC, d Direction, f Flow) bool {
	for _, a := range n.Applied(nic, d) {
		r, ok := n.first(a.Rules, f)
		if !ok { // cannot happen: the default rules match everything
			continue
		}
		v.Checks = append(v.Checks, Check{Applied: a, Direction: d, Rule: r, NIC: nic.ID})
		if r.Access == Deny {
			v.Outcome = Denied
			return false
		}
	}
	return true
}

// NextHopType is a route's next hop, as Azure names it.
type NextHopType string

// Next hop types.
const (
	HopVnetLocal             NextHopType = "VnetLocal"
	HopInternet              NextHopType = "Internet"
	HopVirtualAppliance      NextHopType = "VirtualAppliance"
	HopVirtualNetworkGateway NextHopType = "VirtualNetworkGateway"
	HopNone                  NextHopType = "None"
	// HopEndpoint is the /32 route of a private endpoint
	// (InterfaceEndpoint in Azure's effective routes): local traffic.
	HopEndpoint NextHopType = "InterfaceEndpoint"
	// HopPeering is the route to a peered network's space.
	HopPeering NextHopType = "VNetPeering"
)

// RouteSource says where a route comes from.
type RouteSource string

// Route sources.
const (
	SourceUser    RouteSource = "User"
	SourceDefault RouteSource = "Default"
	// SourceGateway: a route to a remote space of the network's VPN
	// gateway (Azure's VirtualNetworkGateway source).
	SourceGateway RouteSource = "VirtualNetworkGateway"
)

// Route is one route of a subnet's effective route table.
type Route struct {
	Name      string
	Prefix    netip.Prefix
	NextHop   NextHopType
	NextHopIP netip.Addr
	Source    RouteSource
	// Table is the route table of a user route (lower-cased ID).
	Table string
	// Invalid marks a system route a user route invalidates (a private
	// endpoint's /32, see Routes).
	Invalid bool
}

// The system routes every subnet has, besides its network's space:
// 0.0.0.0/0 to the internet and the private ranges outside the space
// dropped (Azure's defaults).
var systemRoutes = []Route{
	{Prefix: netip.MustParsePrefix("0.0.0.0/0"), NextHop: HopInternet, Source: SourceDefault},
	{Prefix: netip.MustParsePrefix("10.0.0.0/8"), NextHop: HopNone, Source: SourceDefault},
	{Prefix: netip.MustParsePrefix("172.16.0.0/12"), NextHop: HopNone, Source: SourceDefault},
	{Prefix: netip.MustParsePrefix("192.168.0.0/16"), NextHop: HopNone, Source: SourceDefault},
	{Prefix: netip.MustParsePrefix("100.64.0.0/10"), NextHop: HopNone, Source: SourceDefault},
}

// Routes is the effective route table of a subnet: the system routes
// (the network's space local, each private endpoint's /32, the defaults)
// and the user routes of its route table. A private endpoint's /32 is
// invalidated, as in Azure, by a user route of this subnet that covers the
// endpoint with a prefix at least as long as the network space's that
// holds it, when the endpoint's own subnet enables route tables in its
// private endpoint network policies; a 0.0.0.0/0 user route never does.
func (n *Network) Routes(subnet string) []*Route {
	var out []*Route
	for _, p := range n.Space {
		out = append(out, &Route{Prefix: p, NextHop: HopVnetLocal, Source: SourceDefault})
	}
	for _, p := range n.Peered {
		out = append(out, &Route{Prefix: p, NextHop: HopPeering, Source: SourceDefault})
	}
	for _, p := range n.Gateway {
		out = append(out, &Route{Prefix: p, NextHop: HopVirtualNetworkGateway, Source: SourceGateway})
	}
	for i := range systemRoutes {
		r := systemRoutes[i]
		out = append(out, &r)
	}
	var user []*Route
	if s := n.subnet(subnet); s != nil && s.RouteTable != "" {
		for _, r := range n.RouteTables[s.RouteTable] {
			c := *r
			c.Source, c.Table = SourceUser, s.RouteTable
			user = append(user, &c)
		}
	}
	for _, c := range n.NICs {
		if !c.Endpoint || !c.Addr.IsValid() {
			continue
		}
		r := &Route{Prefix: netip.PrefixFrom(c.Addr, 32), NextHop: HopEndpoint, Source: SourceDefault, Name: c.ID}
		if es := n.subnet(c.Subnet); es != nil && es.EndpointPolicies.RouteTable() {
			spaceBits := 33
			for _, p := range n.Space {
				if p.Contains(c.Addr) {
					spaceBits = p.Bits()
				}
			}
			r.Invalid = slices.ContainsFunc(user, func(u *Route) bool { return u.Prefix.Contains(c.Addr) && u.Prefix.Bits() >= spaceBits })
		}
		out = append(out, r)
	}
	return append(out, user...)
}

// NextHop is the route a flow to dst leaving subnet takes: the longest
// valid prefix that holds dst, a user route before a system route of the
// same prefix.
func (n *Network) NextHop(subnet string, dst netip.Addr) *Route {
	var best *Route
	for _, r := range n.Routes(subnet) {
		if r.Invalid || !r.Prefix.Contains(dst) {
			continue
		}
		switch {
		case best == nil, r.Prefix.Bits() > best.Prefix.Bits():
			best = r
		case r.Prefix.Bits() == best.Prefix.Bits() && r.Source == SourceUser && best.Source != SourceUser:
			best = r
		}
	}
	return best
}
