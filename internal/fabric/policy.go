package fabric

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/privlink/privlink/internal/policy"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A router's network policies (policy.Program) live in a table of their
// own, PolicyTable (inet), beside the data path's NFTTable, which they
// leave alone. Its objects:
//
//	set vnet, asg-{key}   interval sets of addresses: the VirtualNetwork
//	                      tag, each application security group's members;
//	                      a change of members is a change of elements
//	chain nsg-{key}-in,   regular chains, one per NSG and direction: its
//	      nsg-{key}-out   rules by priority, the defaults last; a rule that
//	                      allows returns (on to the next NSG), one that
//	                      denies goes to deny
//	chain rt-{key}        regular, one per subnet with routes that are not
//	                      delivery in the network: longest prefix first,
//	                      VnetLocal returns, None (and what has no next
//	                      hop here) goes to deny, VirtualAppliance marks
//	                      the packet for the appliance's routing table
//	chain va-in-{i}       regular, one per virtual appliance whose NIC has
//	                      inbound NSGs: what a route hands the appliance
//	                      meets them (subnet then NIC) before it goes
//	                      to the appliance, as Azure filters it there
//	chain deny            TCP picked up mid-stream (no lone SYN: a flow
//	                      whose entry revocation deleted) is reset, the
//	                      rest dropped, as an NSG drops
//	chain policy          filter prerouting at policyPriority (after
//	                      conntrack, before the data path's DNAT, so an
//	                      endpoint's rules see its own address): packets
//	                      of established or related flows and those to
//	                      168.63.129.16 pass; a connection's first packet
//	                      meets, by the link it came in on, its NIC's
//	                      outbound chains in order (NIC then subnet), its
//	                      subnet's routes, then, by its destination
//	                      address, the destination NIC's (or private
//	                      endpoint's) inbound chains (subnet then NIC);
//	                      before them, a packet from a NIC whose source is
//	                      not one of its addresses is dropped (unless it
//	                      forwards: enableIPForwarding)
//	chain appliances,     filter prerouting at raw priority (before
//	      va-{key}        conntrack): a NIC's packets that its subnet's
//	                      VirtualAppliance routes hand to an appliance are
//	                      marked and untracked (applianceRawChains)
//	set src-{link}        a NIC's own addresses
//	chain tickle-notrack  the revocation probes stay out of conntrack
//
// Rules carry comments naming what they enforce and a hash of it, so
// convergeTable rewrites exactly the chains whose rules changed.
const (
	PolicyTable = "privlink-policy"

	chainPolicy     = "policy"
	chainDeny       = "deny"
	chainAppliances = "appliances"
	setEndpoints    = "endpoints"

	// applianceMark is the first packet mark, and applianceTable the first
	// routing table, of the virtual appliances of a router's routes; the
	// i-th appliance has applianceMark+i and applianceTable+i.
	applianceMark  = 0x706c7000
	applianceTable = 7000
	// applianceRulePriority is the priority of the appliances' ip rules.
	applianceRulePriority = 7000
	// maxAppliances bounds the appliances of one router.
	maxAppliances = 256
)

// policyPriority runs the policies after conntrack (-200) and before the
// data path's DNAT (-100).
var policyPriority = nftables.ChainPriorityRef(*nftables.ChainPriorityNATDest - 50)

// EnsurePolicy converges the network policies of a network's router to p
// (nil removes them all): the table PolicyTable, changed only where it
// differs (ASG membership is set elements), in one atomic batch; the
// policy routes of p's virtual appliances; then every live flow of the
// router that p denies or drops (an earlier program let it through) is
// revoked as a withdrawn translation is: its conntrack entry goes and both
// its ends are reset. nics maps each NIC of p's attachments (lower-cased
// ARM ID) to its fabric ID (NICSpec.ID), whose router link carries its
// traffic; a NIC without one (not made yet) has no outbound rules in the
// kernel until it is given. It returns the flows it revoked.
func (f *Fabric) EnsurePolicy(network string, p *policy.Program, nics map[string]string) ([]Flow, error) {
	if err := checkID("network", network); err != nil {
		return nil, err
	}
	if p == nil {
		p = &policy.Program{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	router, err := f.open(f.NamespaceName(KindNetwork, network), nil)
	if err != nil {
		return nil, fmt.Errorf("fabric: policies of network %s: %w", network, err)
	}
	defer router.close()
	spec, appliances, err := policyTable(p, nics)
	if err != nil {
		return nil, fmt.Errorf("fabric: policies of network %s: %w", network, err)
	}
	// The routes first: a mark the table sets must lead somewhere.
	routeErr := errors.Join(ensureApplianceRoutes(router, appliances, nics), f.ensureForwarding(p, nics))
	res := f.convergeTable(router, spec)
	if res.changed && res.err == nil {
		f.log.Info("network policies converged", "ns", router.name, "network", network,
			"chains", len(spec.chains), "sets", len(spec.sets), "batches", res.batches)
	}
	// Flows the program denies go whether or not the kernel took it.
	revoked, revokeErr := f.revokeDenied(router, p)
	if len(revoked) > 0 {
		f.log.Info("revoked flows the network policies deny", "ns", router.name, "network", network, "flows", len(revoked))
	}
	if err := errors.Join(routeErr, res.err, revokeErr); err != nil {
		return revoked, fmt.Errorf("fabric: policies of network %s: %w", network, err)
	}
	return revoked, nil
}

// revokeDenied revokes, in one pass over r's conntrack table, the flows
// that p denies or drops: translated TCP ones (toward endpoints) as
// revokeFlows does, noted in the revocation log; untranslated ones
// (between NICs: TCP, UDP and ICMP) that are live. Their entries go, and
// both ends of each live TCP flow are probed (tickle): each end's
// challenge ACK is then a packet without a flow, which the router resets.
// A UDP or ICMP flow's next packet is a new flow, which the policy
// decides. It returns the live flows it revoked.
func (f *Fabric) revokeDenied(r *nsRef, p *policy.Program) ([]Flow, error) {
	return f.revokeWhere(r, func(fl Flow) bool {
		out, _ := p.Decide(policy.Flow{Src: fl.Client.Addr(), Dst: fl.Target.Addr(), Protocol: fl.Protocol,
			SrcPort: fl.Client.Port(), DstPort: fl.Target.Port()})
		return out == policy.Denied || out == policy.Dropped
	})
}

// revokeWhere revokes, in one pass over r's conntrack table, the flows
// that cut selects among its translated TCP flows and its live
// untranslated ones, as revokeDenied describes; it returns the live flows
// it revoked. The network policies' revocation and a peering's removal
// (peering.go) share it.
func (f *Fabric) revokeWhere(r *nsRef, cut func(Flow) bool) ([]Flow, error) {
	flows, err := f.dropWhere(r, cut)
	if tcp := slices.DeleteFunc(slices.Clone(flows), func(fl Flow) bool { return fl.Protocol != policy.TCP }); len(tcp) > 0 {
		err = errors.Join(err, tickle(r, tcp))
	}
	return flows, err
}

// dropWhere is revokeWhere without the probes: the flows' entries go, and
// it returns the live ones, for the caller to probe.
func (f *Fabric) dropWhere(r *nsRef, cut func(Flow) bool) ([]Flow, error) {
	denied := func(fl Flow, translated bool) bool {
		if translated && fl.Protocol != policy.TCP || !translated && !fl.active() {
			return false
		}
		return cut(fl)
	}
	flows, err := deleteFlows(r, denied, func(fl Flow) { f.revocations.note(r.name, fl) })
	return slices.DeleteFunc(flows, func(fl Flow) bool { return !fl.active() }), err
}

// forwardingState is the IP forwarding set in a NIC's namespace, and
// which namespace that was (its inode: a namespace made again starts
// without forwarding).
type forwardingState struct {
	ino uint64
	on  bool
}

// ForgetForwarding makes the next EnsurePolicy of every network set the IP
// forwarding of each of its NICs again, whether or not it changed: the
// policy controller's periodic resync, which heals a setting changed by
// hand.
func (f *Fabric) ForgetForwarding() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forwarding = nil
}

// ensureForwarding sets net.ipv4.ip_forward in the namespace of each NIC
// of p's attachments as its enableIPForwarding says (1: it routes packets
// not addressed to it, such as those a VirtualAppliance route hands it,
// back out to its router; ICMP redirects off, since it sends them back the
// way they came). It enters only the namespaces whose NIC's setting
// changed since it last set it there, or that are new (f.forwarding). A
// NIC without a namespace yet gets it on a later pass.
func (f *Fabric) ensureForwarding(p *policy.Program, nics map[string]string) error {
	var errs []error
	for _, a := range p.Attachments {
		id := nics[a.NIC]
		if a.Endpoint || id == "" {
			continue
		}
		name := f.NamespaceName(KindNIC, id)
		ino, err := f.NamespaceInode(name)
		if err != nil {
			continue // not made yet
		}
		want := forwardingState{ino: ino, on: a.IPForwarding}
		if cur, ok := f.forwarding[name]; ok && cur == want {
			continue
		}
		on, redirects := "0", "1"
		if a.IPForwarding {
			on, redirects = "1", "0"
		}
		err = f.Do(name, func() error {
			for _, kv := range [][2]string{{"net/ipv4/ip_forward", on}, {"net/ipv4/conf/all/send_redirects", redirects},
				{"net/ipv4/conf/" + nicLinkName + "/send_redirects", redirects}} {
				if _, err := setSysctl(kv[0], kv[1]); err != nil {
					return err
				}
			}
			return nil
		})
		switch {
		case err == nil:
			if f.forwarding == nil {
				f.forwarding = map[string]forwardingState{}
			}
			f.forwarding[name] = want
		case !errors.Is(err, ErrNotFound):
			errs = append(errs, fmt.Errorf("IP forwarding of NIC %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// appliance is a virtual appliance that routes send packets to.
type appliance struct {
	addr netip.Addr
	nic  string // lower-cased ID of the NIC that holds it, "" if none
	mark uint32
	// in are the inbound chains of its NIC, which what a route hands it
	// meets (chain inChain).
	in []string
}

// inChain is the chain that applies the appliance's inbound NSGs to a
// packet a route hands it, then lets it go to the appliance.
func (ap appliance) inChain() string { return fmt.Sprintf("va-in-%x", ap.mark-applianceMark) }

// policyTable is the desired policy table of a router running p, and the
// appliances its routes use.
func policyTable(p *policy.Program, nics map[string]string) (tableSpec, []appliance, error) {
	spec := tableSpec{table: PolicyTable, ownsChains: true}
	for _, name := range sortedKeys(p.Sets) {
		spec.sets = append(spec.sets, addrSet(name, p.Sets[name]))
	}
	for _, name := range sortedKeys(p.Chains) {
		spec.chains = append(spec.chains, chainSpec{name: name, rules: nsgRules(p.Chains[name])})
	}
	spec.chains = append(spec.chains, denyChain())
	links := map[string]string{} // attachment's NIC → its router link
	for _, a := range p.Attachments {
		if id, ok := nics[a.NIC]; ok && !a.Endpoint {
			links[a.NIC] = RouterLinkName(id)
		}
	}
	var appliances []appliance
	applianceOf := func(addr netip.Addr) (appliance, error) {
		for _, ap := range appliances {
			if ap.addr == addr {
				return ap, nil
			}
		}
		if len(appliances) == maxAppliances {
			return appliance{}, fmt.Errorf("more than %d virtual appliances: %w", maxAppliances, ErrInvalid)
		}
		ap := appliance{addr: addr, mark: applianceMark + uint32(len(appliances))}
		for _, a := range p.Attachments {
			if a.Addr == addr && !a.Endpoint {
				ap.nic, ap.in = a.NIC, a.In
			}
		}
		appliances = append(appliances, ap)
		return ap, nil
	}
	var spoofRules, outRules, routeRules, inRules []nftRule
	// A NIC sends from its own addresses only, unless it forwards.
	own := map[string][]netip.Addr{}
	forwards := map[string]bool{}
	for _, a := range p.Attachments {
		if link := links[a.NIC]; link != "" {
			own[link] = append(own[link], a.Addr)
			forwards[link] = forwards[link] || a.IPForwarding
		}
	}
	for _, link := range sortedKeys(own) {
		if forwards[link] {
			continue
		}
		var addrs []netip.Prefix
		for _, a := range own[link] {
			addrs = append(addrs, netip.PrefixFrom(a, 32))
		}
		set := "src-" + link
		spec.sets = append(spec.sets, addrSet(set, addrs))
		spoofRules = append(spoofRules, nftRule{fmt.Sprintf("nic %s: only from its addresses (@%s)", link, set), slices.Concat(
			metaIs(expr.MetaKeyIIFNAME, ifname(link)), ipv4(),
			[]expr.Any{payload(expr.PayloadBaseNetworkHeader, offIPSaddr, 4), &expr.Lookup{SourceRegister: 1, SetName: set, Invert: true}, drop})})
	}
	for _, subnet := range sortedKeys(p.Routes) {
		name := "rt-" + policy.Key(subnet)
		var rules []nftRule
		for _, ra := range p.Routes[subnet] {
			r, err := routeRule(ra, applianceOf)
			if err != nil {
				return spec, nil, fmt.Errorf("subnet %s: %w", subnet, err)
			}
			rules = append(rules, r)
		}
		spec.chains = append(spec.chains, chainSpec{name: name, rules: rules})
	}
	for _, ap := range appliances {
		if len(ap.in) == 0 {
			continue
		}
		var rules []nftRule
		for _, ch := range ap.in {
			rules = append(rules, nftRule{fmt.Sprintf("appliance %s in: %s", ap.addr, ch), jump(ch)})
		}
		rules = append(rules, nftRule{fmt.Sprintf("appliance %s: to it", ap.addr), []expr.Any{accept}})
		spec.chains = append(spec.chains, chainSpec{name: ap.inChain(), rules: rules})
	}
	for _, a := range p.Attachments {
		if link := links[a.NIC]; link != "" {
			iif := metaIs(expr.MetaKeyIIFNAME, ifname(link))
			for _, ch := range a.Out {
				outRules = append(outRules, nftRule{fmt.Sprintf("nic %s out: %s", link, ch), slices.Concat(iif, jump(ch))})
			}
			if _, ok := p.Routes[a.Subnet]; ok {
				ch := "rt-" + policy.Key(a.Subnet)
				routeRules = append(routeRules, nftRule{fmt.Sprintf("nic %s routes: %s", link, ch), slices.Concat(iif, jump(ch))})
			}
		}
		for _, ch := range a.In {
			to := []expr.Any{payload(expr.PayloadBaseNetworkHeader, offIPDaddr, 4), cmpEq(addrBytes(a.Addr))}
			inRules = append(inRules, nftRule{fmt.Sprintf("to %s in: %s", a.Addr, ch), slices.Concat(to, jump(ch))})
		}
	}
	base := []nftRule{
		{"policy: established and related pass", append(ctBitsSet(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept)},
		{"policy: " + DNSAddr.String() + " is always reachable", slices.Concat(ipv4(),
			[]expr.Any{payload(expr.PayloadBaseNetworkHeader, offIPDaddr, 4), cmpEq(addrBytes(DNSAddr)), accept})},
		{"policy: ipv4 only", []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}}, accept}},
	}
	spec.chains = append(spec.chains, chainSpec{
		name: chainPolicy, typ: nftables.ChainTypeFilter, hook: nftables.ChainHookPrerouting, priority: policyPriority,
		rules: slices.Concat(applianceFlowRules(p, links), base, spoofRules, outRules, routeRules, inRules),
	}, notrackChain())
	marks := map[netip.Addr]uint32{}
	for _, ap := range appliances {
		marks[ap.addr] = ap.mark
	}
	raw, rawSets := applianceRawChains(p, links, marks)
	spec.chains, spec.sets = append(spec.chains, raw...), append(spec.sets, rawSets...)
	return spec, appliances, nil
}

// applianceFlowRules route the later packets (established, original
// direction) of every flow a VirtualAppliance route handed to an appliance
// (its conntrack mark is one of the appliances' marks) again, by the route
// chain of the subnet of the link they come in on, as Azure routes every
// packet by the routes of the subnet it leaves: the client's packets go to
// the first appliance, those the first forwards go by its subnet's routes
// (to a second appliance, in a chain), and those the last forwards reach
// the destination (no route of its subnet takes them). A flow's first
// packet meets outbound NSGs and routes in order in the policy chain; its
// replies are not routed to appliances. (Remembering one appliance per
// flow in the conntrack mark, as before, let the second hop's mark
// overwrite the first's: a chain's later packets skipped its first
// appliance.)
func applianceFlowRules(p *policy.Program, links map[string]string) []nftRule {
	mask := binaryutil.NativeEndian.PutUint32(^uint32(maxAppliances - 1))
	marked := []expr.Any{&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		cmpEq(binaryutil.NativeEndian.PutUint32(applianceMark))}
	var out []nftRule
	done := map[string]bool{}
	for _, a := range p.Attachments {
		link := links[a.NIC]
		if _, routed := p.Routes[a.Subnet]; !routed || link == "" || done[link] {
			continue
		}
		done[link] = true
		ch := "rt-" + policy.Key(a.Subnet)
		out = append(out, nftRule{fmt.Sprintf("nic %s: its appliance flows' packets by %s again", link, ch), slices.Concat(
			metaIs(expr.MetaKeyIIFNAME, ifname(link)),
			[]expr.Any{&expr.Ct{Register: 1, Key: expr.CtKeyDIRECTION}, cmpEq([]byte{0})},
			ctBitsSet(expr.CtKeySTATE, expr.CtStateBitESTABLISHED),
			marked, jump(ch))})
	}
	return out
}

// packetMark sets the packet mark.
func packetMark(mark uint32) []expr.Any {
	return []expr.Any{&expr.Immediate{Register: 1, Data: binaryutil.NativeEndian.PutUint32(mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1}}
}

// applianceRawChains are the chains that hand packets toward private
// endpoints to virtual appliances before conntrack sees them: chain
// appliances (filter prerouting, raw priority) sends each packet from a
// NIC whose subnet has VirtualAppliance routes (but DNS's) through its
// subnet's chain va-{subnet}, which returns for what a longer route keeps
// and marks the endpoints (set endpoints) of an appliance's prefixes for
// its routing table, untracked. So conntrack and the endpoint's
// translation take the flow when the appliance sends it back: the first
// pass leaves no conntrack entry and no NAT binding behind (which would
// keep the second pass from being translated). The policy chain still
// applies the NIC's outbound rules to every such packet. Flows to NICs
// take the conntrack mark way instead (applianceFlowRules), so that the
// replies of flows a route does not hand to the appliance are not sent
// there.
func applianceRawChains(p *policy.Program, links map[string]string, marks map[netip.Addr]uint32) ([]chainSpec, []setSpec) {
	var chains []chainSpec
	var jumps []nftRule
	done := map[string]bool{}
	for _, subnet := range sortedKeys(p.Routes) {
		var rules []nftRule
		hasVA := false
		for _, ra := range p.Routes[subnet] {
			to := slices.Concat(ipv4(), prefixMatch(offIPDaddr, ra.Prefix))
			name := fmt.Sprintf("route %s %s %s", ra.Name, ra.Prefix, ra.NextHop)
			if ra.NextHop != policy.HopVirtualAppliance {
				rules = append(rules, nftRule{name, append(to, verdictReturn)})
				continue
			}
			hasVA = true
			mark := marks[ra.NextHopIP]
			toEndpoint := []expr.Any{payload(expr.PayloadBaseNetworkHeader, offIPDaddr, 4), &expr.Lookup{SourceRegister: 1, SetName: setEndpoints}}
			rules = append(rules, nftRule{fmt.Sprintf("%s %s mark %#x untracked to endpoints", name, ra.NextHopIP, mark),
				slices.Concat(to, toEndpoint, packetMark(mark), []expr.Any{&expr.Notrack{}, accept})})
		}
		if !hasVA {
			continue
		}
		name := "va-" + policy.Key(subnet)
		chains = append(chains, chainSpec{name: name, rules: rules})
		done[subnet] = true
	}
	if len(chains) == 0 {
		return nil, nil
	}
	var endpoints []netip.Prefix
	for _, a := range p.Attachments {
		if a.Endpoint {
			endpoints = append(endpoints, netip.PrefixFrom(a.Addr, 32))
		}
	}
	for _, a := range p.Attachments {
		if link := links[a.NIC]; link != "" && done[a.Subnet] {
			ch := "va-" + policy.Key(a.Subnet)
			jumps = append(jumps, nftRule{fmt.Sprintf("nic %s appliances: %s", link, ch), slices.Concat(metaIs(expr.MetaKeyIIFNAME, ifname(link)), jump(ch))})
		}
	}
	base := []nftRule{{"appliances: not " + DNSAddr.String(), slices.Concat(ipv4(),
		[]expr.Any{payload(expr.PayloadBaseNetworkHeader, offIPDaddr, 4), cmpEq(addrBytes(DNSAddr)), accept})}}
	return append(chains, chainSpec{name: chainAppliances, typ: nftables.ChainTypeFilter, hook: nftables.ChainHookPrerouting,
			priority: nftables.ChainPriorityRaw, rules: append(base, jumps...)}),
		[]setSpec{addrSet(setEndpoints, endpoints)}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func jump(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}

var (
	verdictReturn = &expr.Verdict{Kind: expr.VerdictReturn}
	verdictDeny   = &expr.Verdict{Kind: expr.VerdictGoto, Chain: chainDeny}
)

// denyChain resets TCP that is not a connection's first packet (a flow
// whose conntrack entry is gone, revoked) and drops the rest.
func denyChain() chainSpec {
	return chainSpec{name: chainDeny, rules: []nftRule{
		{"deny: reset tcp picked up mid-stream", slices.Concat(ipv4(), tcp(), []expr.Any{
			payload(expr.PayloadBaseTransportHeader, offTCPFlags, 1),
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpFlagsMask}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{tcpFlagSYN}},
			&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
		})},
		{"deny: drop", []expr.Any{drop}},
	}}
}

// addrSet is the interval set name holding prefixes (IPv4 only): a range
// is an element at its first address and an interval end after its last.
func addrSet(name string, prefixes []netip.Prefix) setSpec {
	ss := setSpec{name: name, key: nftables.TypeIPAddr, interval: true}
	var ranges []AddrRange
	for _, p := range prefixes {
		if p.Addr().Is4() {
			ranges = append(ranges, PrefixRange(p))
		}
	}
	for _, r := range mergeRanges(ranges) {
		ss.elems = append(ss.elems, nftables.SetElement{Key: addrBytes(r.From), Comment: name})
		if next := r.To.Next(); next.IsValid() {
			ss.elems = append(ss.elems, nftables.SetElement{Key: addrBytes(next), IntervalEnd: true})
		}
	}
	return ss
}

// nsgRules compiles an NSG chain's rules. A rule whose sides, ports or
// protocol are lists becomes one nft rule per combination, consecutive
// and with the same verdict, so first match still wins; a side that
// stands for no address (a service tag without meaning here) makes none.
func nsgRules(rules []policy.ChainRule) []nftRule {
	var out []nftRule
	for _, cr := range rules {
		sum := sha256.Sum256(fmt.Appendf(nil, "%+v", cr))
		tag := hex.EncodeToString(sum[:4])
		verdict := expr.Any(verdictReturn)
		if !cr.Allow {
			verdict = verdictDeny
		}
		n := 0
		for _, proto := range protoAlternatives(cr) {
			for _, src := range addrAlternatives(offIPSaddr, cr.Src) {
				for _, dst := range addrAlternatives(offIPDaddr, cr.Dst) {
					for _, sp := range proto.ports(offTCPSport, cr.SrcPorts) {
						for _, dp := range proto.ports(offTCPDport, cr.DstPorts) {
							n++
							out = append(out, nftRule{fmt.Sprintf("%s #%d %s", cr.Comment, n, tag),
								slices.Concat(ipv4(), proto.match, src, dst, sp, dp, []expr.Any{verdict})})
						}
					}
				}
			}
		}
	}
	return out
}

// protoAlt is one protocol a rule stands for, and whether ports apply.
type protoAlt struct {
	match     []expr.Any
	withPorts bool
}

func (pa protoAlt) ports(off uint32, ranges []policy.PortRange) [][]expr.Any {
	if !pa.withPorts || len(ranges) == 0 || slices.Contains(ranges, policy.AllPorts) {
		return [][]expr.Any{nil}
	}
	var out [][]expr.Any
	for _, r := range ranges {
		load := payload(expr.PayloadBaseTransportHeader, off, 2)
		if r.From == r.To {
			out = append(out, []expr.Any{load, cmpEq(binaryutil.BigEndian.PutUint16(r.From))})
			continue
		}
		out = append(out, []expr.Any{load, &expr.Range{Op: expr.CmpOpEq, Register: 1,
			FromData: binaryutil.BigEndian.PutUint16(r.From), ToData: binaryutil.BigEndian.PutUint16(r.To)}})
	}
	return out
}

func l4(proto byte) []expr.Any { return metaIs(expr.MetaKeyL4PROTO, []byte{proto}) }

// protoAlternatives are the protocols of a rule: ports apply to TCP and
// UDP only, so a rule for any protocol with ports is TCP and UDP with the
// ports and every other protocol without them.
func protoAlternatives(cr policy.ChainRule) []protoAlt {
	switch cr.Protocol {
	case policy.TCP:
		return []protoAlt{{l4(unix.IPPROTO_TCP), true}}
	case policy.UDP:
		return []protoAlt{{l4(unix.IPPROTO_UDP), true}}
	case policy.ICMP:
		return []protoAlt{{l4(unix.IPPROTO_ICMP), false}}
	case policy.ESP:
		return []protoAlt{{l4(unix.IPPROTO_ESP), false}}
	case policy.AH:
		return []protoAlt{{l4(unix.IPPROTO_AH), false}}
	}
	if len(cr.SrcPorts) == 0 && len(cr.DstPorts) == 0 {
		return []protoAlt{{nil, false}}
	}
	other := []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.IPPROTO_UDP}}}
	return []protoAlt{{l4(unix.IPPROTO_TCP), true}, {l4(unix.IPPROTO_UDP), true}, {other, false}}
}

// addrAlternatives are the matches of one side of a rule, the address at
// off: one per prefix and per set (none for any address).
func addrAlternatives(off uint32, a policy.Addrs) [][]expr.Any {
	if a.Any {
		return [][]expr.Any{nil}
	}
	var out [][]expr.Any
	for _, p := range a.Prefixes {
		if !p.Addr().Is4() {
			continue
		}
		out = append(out, prefixMatch(off, p))
	}
	for _, s := range a.Sets {
		out = append(out, []expr.Any{payload(expr.PayloadBaseNetworkHeader, off, 4), &expr.Lookup{SourceRegister: 1, SetName: s}})
	}
	return out
}

// prefixMatch matches packets whose address at off is in p.
func prefixMatch(off uint32, p netip.Prefix) []expr.Any {
	p = p.Masked()
	if p.Bits() == 0 {
		return nil
	}
	out := []expr.Any{payload(expr.PayloadBaseNetworkHeader, off, 4)}
	if p.Bits() < 32 {
		out = append(out, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: net.CIDRMask(p.Bits(), 32), Xor: make([]byte, 4)})
	}
	return append(out, cmpEq(addrBytes(p.Addr())))
}

// routeRule is a route chain's rule for ra: a packet to ra's prefix
// returns (delivered in the network), is denied (no next hop here), or is
// marked for its appliance's routing table.
func routeRule(ra policy.RouteAction, applianceOf func(netip.Addr) (appliance, error)) (nftRule, error) {
	to := slices.Concat(ipv4(), prefixMatch(offIPDaddr, ra.Prefix))
	name := fmt.Sprintf("route %s %s %s", ra.Name, ra.Prefix, ra.NextHop)
	switch ra.NextHop {
	case policy.HopVnetLocal, policy.HopEndpoint, policy.HopPeering, policy.HopVirtualNetworkGateway:
		// The router's own routes take it (to a gateway: its link, vpngateway.go).
		return nftRule{name, append(to, verdictReturn)}, nil
	case policy.HopVirtualAppliance:
		ap, err := applianceOf(ra.NextHopIP)
		if err != nil {
			return nftRule{}, err
		}
		// Handed to the appliance: its NIC's inbound rules, not the
		// destination's, on this pass.
		verdict := expr.Any(accept)
		if len(ap.in) > 0 {
			verdict = &expr.Verdict{Kind: expr.VerdictGoto, Chain: ap.inChain()}
		}
		// The flow's conntrack mark remembers it (applianceFlowRules), so
		// its later packets go the same way.
		return nftRule{fmt.Sprintf("%s %s mark %#x", name, ra.NextHopIP, ap.mark), slices.Concat(to, packetMark(ap.mark), []expr.Any{
			&expr.Ct{Key: expr.CtKeyMARK, SourceRegister: true, Register: 1}, verdict})}, nil
	case policy.HopInternet:
		// No network address leaves for the internet (the model's
		// Unreachable); the rest goes on, to the router's default
		// outbound link (outbound.go) for 198.18.0.0/15.
		inSpace := []expr.Any{payload(expr.PayloadBaseNetworkHeader, offIPDaddr, 4), &expr.Lookup{SourceRegister: 1, SetName: policy.SetSpace}}
		return nftRule{name, slices.Concat(to, inSpace, []expr.Any{verdictDeny})}, nil
	}
	// None.
	return nftRule{name, append(to, verdictDeny)}, nil
}

// ensureApplianceRoutes converges the policy routing of the appliances in
// r: for each, an ip rule sending packets with its mark to its table,
// whose default route leads to the appliance over its NIC's router link;
// rules and tables of appliances that went are removed. An appliance that
// no NIC holds (or whose NIC has no namespace yet) gets a table with an
// unreachable default: its traffic goes nowhere.
func ensureApplianceRoutes(r *nsRef, appliances []appliance, nics map[string]string) error {
	rules, err := r.h.RuleList(unix.AF_INET)
	if err != nil {
		return fmt.Errorf("namespace %s: list ip rules: %w", r.name, err)
	}
	want := map[int]appliance{}
	for _, ap := range appliances {
		want[applianceTable+int(ap.mark-applianceMark)] = ap
	}
	var errs []error
	have := map[int]bool{}
	for _, ru := range rules {
		if ru.Priority != applianceRulePriority {
			continue
		}
		ap, ok := want[ru.Table]
		if ok && ru.Mark == ap.mark && !have[ru.Table] {
			have[ru.Table] = true
			continue
		}
		if err := r.h.RuleDel(&ru); err != nil {
			errs = append(errs, fmt.Errorf("delete ip rule of table %d: %w", ru.Table, err))
		}
		if !ok {
			errs = append(errs, flushTable(r, ru.Table))
		}
	}
	for table, ap := range want {
		route := netlink.Route{Table: table, Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}
		link, lerr := linkByName(r, RouterLinkName(nics[ap.nic]))
		if ap.nic == "" || nics[ap.nic] == "" || lerr != nil || link == nil {
			route.Type = unix.RTN_UNREACHABLE
		} else {
			route.Type, route.LinkIndex, route.Gw, route.Flags = unix.RTN_UNICAST, link.Attrs().Index, net.IP(addrBytes(ap.addr)), int(netlink.FLAG_ONLINK)
		}
		cur, err := routeList(r.h, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
		same := err == nil && len(cur) == 1 && cur[0].Type == route.Type && cur[0].LinkIndex == route.LinkIndex && cur[0].Gw.Equal(route.Gw)
		if !same {
			if err := r.h.RouteReplace(&route); err != nil {
				errs = append(errs, fmt.Errorf("route of appliance %s (table %d): %w", ap.addr, table, err))
				continue
			}
		}
		if have[table] {
			continue
		}
		ru := netlink.NewRule()
		mask := uint32(0xffffffff)
		ru.Priority, ru.Table, ru.Mark, ru.Mask, ru.Family = applianceRulePriority, table, ap.mark, &mask, unix.AF_INET
		if err := r.h.RuleAdd(ru); err != nil {
			errs = append(errs, fmt.Errorf("ip rule of appliance %s: %w", ap.addr, err))
		}
	}
	errs = append(errs, ensureLocalRule(r, rules, len(appliances) > 0))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("namespace %s: appliance routes: %w", r.name, err)
	}
	return nil
}

// localRuleAfter is the priority of the local table's ip rule in a router
// with appliances: after theirs, so that a packet to a local address (a
// private endpoint's, before its translation) that a route hands to an
// appliance goes there rather than to the router's own stack.
const localRuleAfter = applianceRulePriority + 1

// ensureLocalRule puts the ip rule of the local table at localRuleAfter
// when after (adding it before removing the usual one at 0, so local
// addresses stay local throughout), else back at 0. rules are r's rules.
func ensureLocalRule(r *nsRef, rules []netlink.Rule, after bool) error {
	want, other := localRuleAfter, 0
	if !after {
		want, other = 0, localRuleAfter
	}
	have := false
	for _, ru := range rules {
		have = have || (ru.Table == unix.RT_TABLE_LOCAL && ru.Priority == want)
	}
	if !have {
		ru := netlink.NewRule()
		ru.Priority, ru.Table, ru.Family = want, unix.RT_TABLE_LOCAL, unix.AF_INET
		if err := r.h.RuleAdd(ru); err != nil {
			return fmt.Errorf("ip rule of the local table at %d: %w", want, err)
		}
	}
	for _, ru := range rules {
		if ru.Table == unix.RT_TABLE_LOCAL && ru.Priority == other {
			if err := r.h.RuleDel(&ru); err != nil && !isNotExist(err) {
				return fmt.Errorf("delete ip rule of the local table at %d: %w", other, err)
			}
		}
	}
	return nil
}

// flushTable deletes the routes of a routing table of r.
func flushTable(r *nsRef, table int) error {
	routes, err := routeList(r.h, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes of table %d: %w", table, err)
	}
	var errs []error
	for i := range routes {
		if err := r.h.RouteDel(&routes[i]); err != nil {
			errs = append(errs, fmt.Errorf("delete route of table %d: %w", table, err))
		}
	}
	return errors.Join(errs...)
}
