package fabric

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The data path's nftables objects live in the table NFTTable (inet) of a
// router namespace (EnsureEndpoints) or of the internet router
// (EnsurePublic), beside the fabric's forward chain, which they leave alone:
//
//	chain pe-dnat, pub-dnat  nat prerouting (dstnat): a connection's first
//	                         packet (a SYN alone: a packet picked up
//	                         mid-stream is never translated) to
//	                         endpoint:port, or public:port from a source in
//	                         the firewall set, is counted, its connection
//	                         marked with the translation's mark
//	                         (translationMark) and translated to the
//	                         service's address
//	chain pe-snat            nat postrouting (srcnat): flows with an
//	                         endpoint's mark leave toward the service from
//	                         the endpoint's SNAT address
//	chain svc-guard          filter forward, before the fabric's filter:
//	                         packets toward or from a service link pass only
//	                         with the mark of a current translation over
//	                         its link, to or from its service's address and
//	                         port (and, on a public path, client addresses
//	                         in its set), counted per direction; other TCP
//	                         is reset, the rest dropped
//	chain unrouted           filter prerouting, after dstnat: TCP to an
//	                         address with no route is reset rather than
//	                         answered with an ICMP error (which an
//	                         established socket ignores)
//	chain tickle-notrack     filter output (raw): the probes revocation
//	                         sends (marked tickleMark) stay out of conntrack
//	chain refused            filter input: a connection's first packet that
//	                         reaches the router's own stack (an endpoint
//	                         address without translation, a public address
//	                         from a source outside its firewall set, any
//	                         port but a translated one) is counted in the
//	                         refused set by its destination address; the
//	                         stack then resets it. The network's DNS
//	                         address and the internet gateway, where
//	                         privlinkd listens, are not counted.
//	counter pe-<name>-{in,out,new}, pub-<name>-{in,out,new}
//	set pub-<name>-allow     interval set of the firewall's source ranges
//	set pe-refused, pub-refused  dynamic set of destination addresses, each
//	                         with a counter of the connections refused to
//	                         it (there and at the guard, toward services)
//
// Every rule carries a comment naming what it does; an Ensure compares the
// chains' comments, the counters and the sets' elements with what it wants
// and changes what differs in one atomic batch: a chain whose rules differ
// is rewritten whole, a set whose elements differ is refilled in place,
// counters are added and deleted with their translations (so they keep
// counting while it stays).
const (
	chainEndpointDNAT = "pe-dnat"
	chainEndpointSNAT = "pe-snat"
	chainPublicDNAT   = "pub-dnat"
	chainGuard        = "svc-guard"
	chainUnrouted     = "unrouted"
	chainNotrack      = "tickle-notrack"
	chainRefused      = "refused"

	endpointObjPrefix = "pe-"
	publicObjPrefix   = "pub-"

	counterIn  = "-in"
	counterOut = "-out"
	counterNew = "-new"
	setAllow   = "-allow"

	// setRefused, after the object prefix, names the set of refused
	// connections by destination (no translation's name ends a set's name
	// with it alone: their sets end in setAllow).
	setRefused = "refused"
	// refusedSetSize bounds the refused set: its keys are the router's
	// own addresses and the service addresses it routes, so a few.
	refusedSetSize = 1024

	// tickleMark marks the TCP probes revocation sends ("plkt").
	tickleMark = 0x706c6b74

	// tcpFlagsMask covers FIN, SYN, RST and ACK; a connection's first
	// packet has SYN alone among them.
	tcpFlagsMask = 0x17
	tcpFlagSYN   = 0x02
)

// guardPriority runs the service guard before the fabric's forward filter.
var guardPriority = nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 10)

// unroutedPriority runs after dstnat, so translated packets are checked
// with their new destination.
var unroutedPriority = nftables.ChainPriorityRef(*nftables.ChainPriorityNATDest + 10)

// chainSpec is the desired state of one base chain of ours (policy accept).
type chainSpec struct {
	name     string
	typ      nftables.ChainType
	hook     *nftables.ChainHook
	priority *nftables.ChainPriority
	rules    []nftRule
}

// setSpec is the desired state of an interval set of IPv4 addresses, or of
// a dynamic set of IPv4 addresses whose elements the data path adds (each
// with a counter) and an Ensure leaves alone.
type setSpec struct {
	name    string
	elems   []nftables.SetElement
	dynamic bool
}

// tableSpec is the desired state of the data path's objects in one
// namespace's table.
type tableSpec struct {
	// objPrefix starts the name of every counter and set that is ours:
	// those the spec lacks are deleted.
	objPrefix string
	chains    []chainSpec
	counters  []string
	sets      []setSpec
}

var (
	accept = &expr.Verdict{Kind: expr.VerdictAccept}
	drop   = &expr.Verdict{Kind: expr.VerdictDrop}
)

func cmpEq(data []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data} }

func metaIs(key expr.MetaKey, data []byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, cmpEq(data)}
}

// ifnameIs matches the input or output interface's whole name.
func ifnameIs(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return metaIs(key, b)
}

// ifPrefixIs matches interface names starting with prefix.
func ifPrefixIs(key expr.MetaKey, prefix string) []expr.Any {
	return metaIs(key, []byte(prefix))
}

func ipv4() []expr.Any { return metaIs(expr.MetaKeyNFPROTO, []byte{unix.NFPROTO_IPV4}) }

func tcp() []expr.Any { return metaIs(expr.MetaKeyL4PROTO, []byte{unix.IPPROTO_TCP}) }

// IPv4 and TCP header offsets.
const (
	offIPSaddr  = 12
	offIPDaddr  = 16
	offTCPSport = 0
	offTCPDport = 2
	offTCPFlags = 13
)

func payload(base expr.PayloadBase, off, n uint32) *expr.Payload {
	return &expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: n}
}

func ipIs(off uint32, a netip.Addr) []expr.Any {
	a4 := a.As4()
	return []expr.Any{payload(expr.PayloadBaseNetworkHeader, off, 4), cmpEq(a4[:])}
}

func portIs(off uint32, port uint16) []expr.Any {
	return []expr.Any{payload(expr.PayloadBaseTransportHeader, off, 2), cmpEq(binaryutil.BigEndian.PutUint16(port))}
}

func ipInSet(off uint32, set string) []expr.Any {
	return []expr.Any{payload(expr.PayloadBaseNetworkHeader, off, 4), &expr.Lookup{SourceRegister: 1, SetName: set}}
}

// synOnly matches a TCP packet with SYN set and FIN, RST and ACK clear.
func synOnly() []expr.Any {
	return []expr.Any{
		payload(expr.PayloadBaseTransportHeader, offTCPFlags, 1),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpFlagsMask}, Xor: []byte{0}},
		cmpEq([]byte{tcpFlagSYN}),
	}
}

// ctMarkIs matches connections whose conntrack mark is mark.
func ctMarkIs(mark uint32) []expr.Any {
	return []expr.Any{&expr.Ct{Register: 1, Key: expr.CtKeyMARK}, cmpEq(binaryutil.NativeEndian.PutUint32(mark))}
}

// ctMarkSet sets the connection's conntrack mark.
func ctMarkSet(mark uint32) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: binaryutil.NativeEndian.PutUint32(mark)},
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK, SourceRegister: true},
	}
}

// translationMark is the conntrack mark of the connections a translation
// made: its SNAT address (unique per endpoint on the machine) or public
// address (unique per public path), as a number. The SNAT and guard rules
// recognise a translation's flows by it, since after DNAT the packets of
// two endpoints toward one service look alike. (Matching the original
// destination with `ct original ip daddr` would do too, but google/nftables
// cannot read such rules back.)
func translationMark(a netip.Addr) uint32 {
	a4 := a.As4()
	return binary.BigEndian.Uint32(a4[:])
}

func counterRef(name string) *expr.Objref {
	return &expr.Objref{Type: int(nftables.ObjTypeCounter), Name: name}
}

func dnatTo(ap netip.AddrPort) []expr.Any {
	a4 := ap.Addr().As4()
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a4[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(ap.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

func snatTo(a netip.Addr) []expr.Any {
	a4 := a.As4()
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a4[:]},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
	}
}

func resetTCP() []expr.Any {
	return append(tcp(), &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
}

// ipIsNot matches packets whose address at off is not a.
func ipIsNot(off uint32, a netip.Addr) []expr.Any {
	a4 := a.As4()
	return []expr.Any{payload(expr.PayloadBaseNetworkHeader, off, 4), &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: a4[:]}}
}

// countRefused adds the packet's destination address to the dynamic set
// (if not there yet) and counts the packet on its element.
func countRefused(set string) []expr.Any {
	return []expr.Any{
		payload(expr.PayloadBaseNetworkHeader, offIPDaddr, 4),
		&expr.Dynset{SrcRegKey: 1, SetName: set, Operation: uint32(unix.NFT_DYNSET_OP_ADD), Exprs: []expr.Any{&expr.Counter{}}},
	}
}

// refusedSet is the dynamic set of refused connections of a table whose
// objects start with prefix.
func refusedSet(prefix string) setSpec {
	return setSpec{name: prefix + setRefused, dynamic: true}
}

// refusedChain counts, in set, the connections whose first packet reaches
// the router's own stack, but those to own (where privlinkd listens).
func refusedChain(set string, own netip.Addr) chainSpec {
	return chainSpec{
		name: chainRefused, typ: nftables.ChainTypeFilter, hook: nftables.ChainHookInput, priority: nftables.ChainPriorityFilter,
		rules: []nftRule{{
			fmt.Sprintf("privlink: count refused connections but to %s in @%s", own, set),
			slices.Concat(ipv4(), tcp(), synOnly(), ipIsNot(offIPDaddr, own), countRefused(set)),
		}},
	}
}

// guardTail are the guard chain's last rules: whatever did not match a
// translation's rule and goes to or comes from a service link. Connection
// attempts toward services are counted in the refused set.
func guardTail(refused string) []nftRule {
	return []nftRule{
		{"privlink: count refused connections toward services in @" + refused, slices.Concat(
			ifPrefixIs(expr.MetaKeyOIFNAME, serviceLinkTag), ipv4(), tcp(), synOnly(), countRefused(refused))},
		{"privlink: reset other tcp toward services", append(ifPrefixIs(expr.MetaKeyOIFNAME, serviceLinkTag), resetTCP()...)},
		{"privlink: drop other traffic toward services", append(ifPrefixIs(expr.MetaKeyOIFNAME, serviceLinkTag), drop)},
		{"privlink: reset other tcp from services", append(ifPrefixIs(expr.MetaKeyIIFNAME, serviceLinkTag), resetTCP()...)},
		{"privlink: drop other traffic from services", append(ifPrefixIs(expr.MetaKeyIIFNAME, serviceLinkTag), drop)},
	}
}

// unroutedChain resets TCP toward addresses with no route: a client whose
// translation was revoked while its endpoint address also went learns it
// at its next packet.
func unroutedChain() chainSpec {
	fib := []expr.Any{
		// Established flows (the bulk of packets) skip the lookups.
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{
			SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0),
		},
		cmpEq(binaryutil.NativeEndian.PutUint32(0)),
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		&expr.Fib{Register: 1, FlagDADDR: true, ResultOIF: true, FlagPRESENT: true},
		cmpEq(binaryutil.NativeEndian.PutUint32(0)),
	}
	return chainSpec{
		name: chainUnrouted, typ: nftables.ChainTypeFilter, hook: nftables.ChainHookPrerouting, priority: unroutedPriority,
		rules: []nftRule{{"privlink: reset tcp to unrouted addresses", slices.Concat(ipv4(), tcp(), fib, []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}})}},
	}
}

func notrackChain() chainSpec {
	return chainSpec{
		name: chainNotrack, typ: nftables.ChainTypeFilter, hook: nftables.ChainHookOutput, priority: nftables.ChainPriorityRaw,
		rules: []nftRule{{"privlink: revocation probes are not tracked", append(
			metaIs(expr.MetaKeyMARK, binaryutil.NativeEndian.PutUint32(tickleMark)), &expr.Notrack{})}},
	}
}

// endpointTable is the desired table of a network's router with the
// translations eps (validated), whose service links are named by network.
func endpointTable(network string, eps []EndpointNAT) tableSpec {
	dnat := chainSpec{name: chainEndpointDNAT, typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPrerouting, priority: nftables.ChainPriorityNATDest}
	snat := chainSpec{name: chainEndpointSNAT, typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPostrouting, priority: nftables.ChainPriorityNATSource}
	guard := chainSpec{name: chainGuard, typ: nftables.ChainTypeFilter, hook: nftables.ChainHookForward, priority: guardPriority}
	spec := tableSpec{objPrefix: endpointObjPrefix}
	for _, ep := range eps {
		link, _ := ServiceLinkNames(network, ep.Service)
		target := netip.AddrPortFrom(ep.Endpoint, ep.Port)
		svc := netip.AddrPortFrom(ep.ServiceAddr, ep.Port)
		obj := endpointObjPrefix + ep.Name
		spec.counters = append(spec.counters, obj+counterIn, obj+counterOut, obj+counterNew)
		mark := translationMark(ep.SNAT)
		dnat.rules = append(dnat.rules, nftRule{
			dnatComment(endpointObjPrefix, ep.Name, target, svc, mark),
			slices.Concat(ipv4(), ipIs(offIPDaddr, ep.Endpoint), tcp(), portIs(offTCPDport, ep.Port), synOnly(),
				[]expr.Any{counterRef(obj + counterNew)}, ctMarkSet(mark), dnatTo(svc)),
		})
		snat.rules = append(snat.rules, nftRule{
			fmt.Sprintf("pe %s: snat mark %#x via %s to %s", ep.Name, mark, link, ep.SNAT),
			slices.Concat(ifnameIs(expr.MetaKeyOIFNAME, link), ipv4(), tcp(), ctMarkIs(mark), snatTo(ep.SNAT)),
		})
		guard.rules = append(guard.rules, guardRules(endpointObjPrefix, ep.Name, link, mark, svc, "")...)
	}
	refused := refusedSet(endpointObjPrefix)
	guard.rules = append(guard.rules, guardTail(refused.name)...)
	spec.sets = append(spec.sets, refused)
	spec.chains = []chainSpec{dnat, snat, guard, unroutedChain(), notrackChain(), refusedChain(refused.name, DNSAddr)}
	return spec
}

// publicTable is the desired table of the internet router with the public
// paths pubs (validated).
func publicTable(pubs []PublicNAT) tableSpec {
	dnat := chainSpec{name: chainPublicDNAT, typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPrerouting, priority: nftables.ChainPriorityNATDest}
	guard := chainSpec{name: chainGuard, typ: nftables.ChainTypeFilter, hook: nftables.ChainHookForward, priority: guardPriority}
	spec := tableSpec{objPrefix: publicObjPrefix}
	for _, p := range pubs {
		link, _ := ServiceLinkNames("", p.Service)
		target := netip.AddrPortFrom(p.Public, p.Port)
		svc := netip.AddrPortFrom(p.ServiceAddr, p.Port)
		obj := publicObjPrefix + p.Name
		set := obj + setAllow
		spec.counters = append(spec.counters, obj+counterIn, obj+counterOut, obj+counterNew)
		spec.sets = append(spec.sets, setSpec{name: set, elems: intervalElements(p.Allowed)})
		if !p.Enabled {
			continue
		}
		mark := translationMark(p.Public)
		dnat.rules = append(dnat.rules, nftRule{
			dnatComment(publicObjPrefix, p.Name, target, svc, mark) + " from @" + set,
			slices.Concat(ipv4(), ipIs(offIPDaddr, p.Public), tcp(), portIs(offTCPDport, p.Port), synOnly(),
				ipInSet(offIPSaddr, set), []expr.Any{counterRef(obj + counterNew)}, ctMarkSet(mark), dnatTo(svc)),
		})
		guard.rules = append(guard.rules, guardRules(publicObjPrefix, p.Name, link, mark, svc, set)...)
	}
	refused := refusedSet(publicObjPrefix)
	guard.rules = append(guard.rules, guardTail(refused.name)...)
	spec.sets = append(spec.sets, refused)
	spec.chains = []chainSpec{dnat, guard, unroutedChain(), notrackChain(), refusedChain(refused.name, InternetGateway)}
	return spec
}

func dnatComment(prefix, name string, target, svc netip.AddrPort, mark uint32) string {
	return fmt.Sprintf("%s %s: dnat %s to %s mark %#x", strings.TrimSuffix(prefix, "-"), name, target, svc, mark)
}

// parseDNATComment returns the name and target of a DNAT rule's comment.
func parseDNATComment(prefix, comment string) (name string, target netip.AddrPort, ok bool) {
	rest, ok := strings.CutPrefix(comment, strings.TrimSuffix(prefix, "-")+" ")
	if !ok {
		return "", target, false
	}
	name, rest, ok = strings.Cut(rest, ": dnat ")
	if !ok {
		return "", target, false
	}
	t, _, _ := strings.Cut(rest, " ")
	target, err := netip.ParseAddrPort(t)
	return name, target, err == nil
}

// guardRules let through, and count, the two directions of the flows of a
// translation (by its mark) toward svc over link; set, if not empty, names
// the set the client's address must be in.
func guardRules(prefix, name, link string, mark uint32, svc netip.AddrPort, set string) []nftRule {
	obj := prefix + name
	var inSet, outSet []expr.Any
	suffix := ""
	if set != "" {
		inSet, outSet = ipInSet(offIPSaddr, set), ipInSet(offIPDaddr, set)
		suffix = " from @" + set
	}
	short := strings.TrimSuffix(prefix, "-")
	return []nftRule{
		{
			fmt.Sprintf("%s %s: in mark %#x to %s via %s%s", short, name, mark, svc, link, suffix),
			slices.Concat(ifnameIs(expr.MetaKeyOIFNAME, link), ipv4(), ipIs(offIPDaddr, svc.Addr()), tcp(), portIs(offTCPDport, svc.Port()),
				ctMarkIs(mark), inSet, []expr.Any{counterRef(obj + counterIn), accept}),
		},
		{
			fmt.Sprintf("%s %s: out mark %#x from %s via %s%s", short, name, mark, svc, link, suffix),
			slices.Concat(ifnameIs(expr.MetaKeyIIFNAME, link), ipv4(), ipIs(offIPSaddr, svc.Addr()), tcp(), portIs(offTCPSport, svc.Port()),
				ctMarkIs(mark), outSet, []expr.Any{counterRef(obj + counterOut), accept}),
		},
	}
}

// intervalElements returns the elements of an interval set holding exactly
// ranges, as nft writes them: a leading interval end at 0.0.0.0 when the
// first range starts above it, then each merged range's start and the
// address after its end (omitted for a range ending at 255.255.255.255).
func intervalElements(ranges []AddrRange) []nftables.SetElement {
	merged := mergeRanges(ranges)
	var out []nftables.SetElement
	if len(merged) > 0 && merged[0].From != netip.IPv4Unspecified() {
		out = append(out, nftables.SetElement{Key: make([]byte, 4), IntervalEnd: true})
	}
	for _, r := range merged {
		from := r.From.As4()
		out = append(out, nftables.SetElement{Key: from[:]})
		if next := r.To.Next(); next.IsValid() && next.Is4() {
			end := next.As4()
			out = append(out, nftables.SetElement{Key: end[:], IntervalEnd: true})
		}
	}
	return out
}

// mergeRanges sorts ranges and merges those that overlap or touch.
func mergeRanges(ranges []AddrRange) []AddrRange {
	rs := slices.Clone(ranges)
	slices.SortFunc(rs, func(a, b AddrRange) int { return a.From.Compare(b.From) })
	var out []AddrRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if next := last.To.Next(); !next.IsValid() || !next.Is4() || r.From.Compare(next) <= 0 {
				if r.To.Compare(last.To) > 0 {
					last.To = r.To
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// elementKeys renders set elements comparably, in a canonical order.
func elementKeys(elems []nftables.SetElement) []string {
	out := make([]string, 0, len(elems))
	for _, e := range elems {
		out = append(out, fmt.Sprintf("%x/%v", e.Key, e.IntervalEnd))
	}
	slices.Sort(out)
	return out
}

// convergeTable makes the data path's objects in r's table match spec. It
// changes nothing when they already do; otherwise it rewrites them in one
// atomic batch. changed tells whether it wrote.
func convergeTable(r *nsRef, spec tableSpec) (changed bool, err error) {
	c, err := nftConn(r)
	if err != nil {
		return false, fmt.Errorf("namespace %s: %w", r.name, err)
	}
	defer c.CloseLasting()
	cur, err := readTable(c, spec)
	if err != nil {
		return false, fmt.Errorf("namespace %s: read nftables table %s: %w", r.name, NFTTable, err)
	}
	if cur.matches(spec) {
		return false, nil
	}
	table := c.AddTable(&nftables.Table{Name: NFTTable, Family: nftables.TableFamilyINet})
	policy := nftables.ChainPolicyAccept
	// Only chains that differ are rewritten, so a change of firewall
	// ranges is a change of a set's elements alone.
	rewrite := map[string]*nftables.Chain{}
	for _, cs := range spec.chains {
		if cur.chainMatches(cs) {
			continue
		}
		if old := cur.chains[cs.name]; old != nil && !chainDefMatches(old, cs) {
			c.FlushChain(old)
			c.DelChain(old)
		}
		ch := c.AddChain(&nftables.Chain{Name: cs.name, Table: table, Type: cs.typ, Hooknum: cs.hook, Priority: cs.priority, Policy: &policy})
		c.FlushChain(ch)
		rewrite[cs.name] = ch
	}
	for _, name := range spec.counters {
		if !cur.counters[name] {
			c.AddObj(&nftables.NamedObj{Table: table, Name: name, Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
		}
	}
	for _, ss := range spec.sets {
		if old, ok := cur.sets[ss.name]; ok && ss.dynamic {
			if !old.set.Dynamic {
				return false, fmt.Errorf("namespace %s: set %s is not dynamic: delete it", r.name, ss.name)
			}
			continue // its elements are the data path's
		}
		if ss.dynamic {
			set := &nftables.Set{ID: nextSetID(), Table: table, Name: ss.name, KeyType: nftables.TypeIPAddr, Dynamic: true, Size: refusedSetSize}
			if err := c.AddSet(set, nil); err != nil {
				return false, fmt.Errorf("namespace %s: set %s: %w", r.name, ss.name, err)
			}
			continue
		}
		if old, ok := cur.sets[ss.name]; ok {
			if !slices.Equal(old.elems, elementKeys(ss.elems)) {
				// Refilled in place: rules keep referring to the same set.
				c.FlushSet(old.set)
				if len(ss.elems) > 0 {
					if err := c.SetAddElements(old.set, ss.elems); err != nil {
						return false, fmt.Errorf("namespace %s: set %s: %w", r.name, ss.name, err)
					}
				}
			}
			continue
		}
		set := &nftables.Set{ID: nextSetID(), Table: table, Name: ss.name, KeyType: nftables.TypeIPAddr, Interval: true}
		if err := c.AddSet(set, ss.elems); err != nil {
			return false, fmt.Errorf("namespace %s: set %s: %w", r.name, ss.name, err)
		}
	}
	for _, cs := range spec.chains {
		ch := rewrite[cs.name]
		if ch == nil {
			continue
		}
		for _, rule := range cs.rules {
			c.AddRule(&nftables.Rule{
				Table:    table,
				Chain:    ch,
				Exprs:    rule.exprs,
				UserData: userdata.AppendString(nil, userdata.TypeComment, rule.comment),
			})
		}
	}
	// What the spec no longer has goes last, once no rule refers to it.
	for name := range cur.counters {
		if !slices.Contains(spec.counters, name) {
			c.DeleteObject(&nftables.NamedObj{Table: table, Name: name, Type: nftables.ObjTypeCounter})
		}
	}
	for name, old := range cur.sets {
		if !slices.ContainsFunc(spec.sets, func(s setSpec) bool { return s.name == name }) {
			c.DelSet(old.set)
		}
	}
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("namespace %s: update nftables table %s: %w", r.name, NFTTable, err)
	}
	return true, nil
}

// tableState is what readTable found of a spec's objects.
type tableState struct {
	chains   map[string]*nftables.Chain
	comments map[string][]string // rule comments by chain
	counters map[string]bool     // ours, by name
	sets     map[string]setState // ours, by name
}

type setState struct {
	set   *nftables.Set
	elems []string // elementKeys
}

func readTable(c *nftables.Conn, spec tableSpec) (*tableState, error) {
	st := &tableState{chains: map[string]*nftables.Chain{}, comments: map[string][]string{}, counters: map[string]bool{}, sets: map[string]setState{}}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == NFTTable }) {
		return st, nil
	}
	table := &nftables.Table{Name: NFTTable, Family: nftables.TableFamilyINet}
	for _, cs := range spec.chains {
		ch, err := findChain(c, NFTTable, cs.name)
		if err != nil {
			return nil, err
		}
		if ch == nil {
			continue
		}
		st.chains[cs.name] = ch
		if st.comments[cs.name], err = ruleComments(c, ch); err != nil {
			return nil, err
		}
	}
	objs, err := c.GetNamedObjects(table)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if no, ok := o.(*nftables.NamedObj); ok && no.Type == nftables.ObjTypeCounter && no.Table.Name == NFTTable && strings.HasPrefix(no.Name, spec.objPrefix) {
			st.counters[no.Name] = true
		}
	}
	sets, err := c.GetSets(table)
	if err != nil {
		return nil, err
	}
	for _, s := range sets {
		if !strings.HasPrefix(s.Name, spec.objPrefix) {
			continue
		}
		if s.Dynamic {
			st.sets[s.Name] = setState{set: s} // its elements are the data path's
			continue
		}
		elems, err := c.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", s.Name, err)
		}
		st.sets[s.Name] = setState{set: s, elems: elementKeys(elems)}
	}
	return st, nil
}

// chainMatches reports whether the chain exists as cs describes it, with
// cs's rules (by their comments, in order).
func (st *tableState) chainMatches(cs chainSpec) bool {
	ch := st.chains[cs.name]
	if ch == nil || !chainDefMatches(ch, cs) {
		return false
	}
	want := make([]string, len(cs.rules))
	for i, r := range cs.rules {
		want[i] = r.comment
	}
	return slices.Equal(st.comments[cs.name], want)
}

// matches reports whether the state is spec's.
func (st *tableState) matches(spec tableSpec) bool {
	for _, cs := range spec.chains {
		if !st.chainMatches(cs) {
			return false
		}
	}
	if len(st.counters) != len(spec.counters) || len(st.sets) != len(spec.sets) {
		return false
	}
	for _, name := range spec.counters {
		if !st.counters[name] {
			return false
		}
	}
	for _, ss := range spec.sets {
		cur, ok := st.sets[ss.name]
		if !ok || cur.set.Dynamic != ss.dynamic {
			return false
		}
		if !ss.dynamic && (!cur.set.Interval || !slices.Equal(cur.elems, elementKeys(ss.elems))) {
			return false
		}
	}
	return true
}

func chainDefMatches(ch *nftables.Chain, cs chainSpec) bool {
	return ch.Type == cs.typ && ch.Hooknum != nil && *ch.Hooknum == *cs.hook &&
		ch.Priority != nil && *ch.Priority == *cs.priority &&
		ch.Policy != nil && *ch.Policy == nftables.ChainPolicyAccept
}

// Counters are the packets and bytes of one translation, by direction as
// Azure's PEBytesIn and PEBytesOut count them, and its connections.
type Counters struct {
	// PacketsIn and BytesIn count what clients sent toward the service
	// (IP packets, as they left the router).
	PacketsIn, BytesIn uint64
	// PacketsOut and BytesOut count what the service sent back.
	PacketsOut, BytesOut uint64
	// Connections counts the connections translated since the translation
	// appeared (first packets).
	Connections uint64
	// Active is the number of the translation's connections conntrack
	// tracks now, but those closing (TIME_WAIT, CLOSE).
	Active int
}

// readCounters returns the counters named prefix<name>-{in,out,new} of r's
// table, by name.
func readCounters(r *nsRef, prefix string) (map[string]Counters, error) {
	out := map[string]Counters{}
	c, err := nftConn(r)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", r.name, err)
	}
	defer c.CloseLasting()
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: list nftables tables: %w", r.name, err)
	}
	if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == NFTTable }) {
		return out, nil
	}
	objs, err := c.GetNamedObjects(&nftables.Table{Name: NFTTable, Family: nftables.TableFamilyINet})
	if err != nil {
		return nil, fmt.Errorf("namespace %s: read nftables counters: %w", r.name, err)
	}
	for _, o := range objs {
		no, ok := o.(*nftables.NamedObj)
		if !ok || no.Type != nftables.ObjTypeCounter || no.Table.Name != NFTTable {
			continue
		}
		cnt, ok := no.Obj.(*expr.Counter)
		rest, mine := strings.CutPrefix(no.Name, prefix)
		if !ok || !mine {
			continue
		}
		for _, suffix := range []string{counterIn, counterOut, counterNew} {
			name, found := strings.CutSuffix(rest, suffix)
			if !found {
				continue
			}
			v := out[name]
			switch suffix {
			case counterIn:
				v.PacketsIn, v.BytesIn = cnt.Packets, cnt.Bytes
			case counterOut:
				v.PacketsOut, v.BytesOut = cnt.Packets, cnt.Bytes
			case counterNew:
				v.Connections = cnt.Packets
			}
			out[name] = v
			break
		}
	}
	return out, nil
}

// dnatTargets returns the names of the translations of r's DNAT chain by
// their target (endpoint or public address and port).
func dnatTargets(r *nsRef, chain, prefix string) (map[netip.AddrPort]string, error) {
	c, err := nftConn(r)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", r.name, err)
	}
	defer c.CloseLasting()
	out := map[netip.AddrPort]string{}
	ch, err := findChain(c, NFTTable, chain)
	if err != nil || ch == nil {
		if errors.Is(err, unix.ENOENT) {
			err = nil
		}
		return out, err
	}
	comments, err := ruleComments(c, ch)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: rules of %s: %w", r.name, chain, err)
	}
	for _, cm := range comments {
		if name, target, ok := parseDNATComment(prefix, cm); ok {
			out[target] = name
		}
	}
	return out, nil
}

// readRefused returns the counts of the refused set of r's table whose
// objects start with prefix, by destination address (empty when there is
// no such set yet).
func readRefused(r *nsRef, prefix string) (map[netip.Addr]uint64, error) {
	out := map[netip.Addr]uint64{}
	c, err := nftConn(r)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", r.name, err)
	}
	defer c.CloseLasting()
	table := &nftables.Table{Name: NFTTable, Family: nftables.TableFamilyINet}
	sets, err := c.GetSets(table)
	if errors.Is(err, unix.ENOENT) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("namespace %s: list nftables sets: %w", r.name, err)
	}
	i := slices.IndexFunc(sets, func(s *nftables.Set) bool { return s.Name == prefix+setRefused && s.Dynamic })
	if i < 0 {
		return out, nil
	}
	elems, err := c.GetSetElements(sets[i])
	if err != nil {
		return nil, fmt.Errorf("namespace %s: read set %s: %w", r.name, sets[i].Name, err)
	}
	for _, e := range elems {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok || e.Counter == nil {
			continue
		}
		out[a.Unmap()] += e.Counter.Packets
	}
	return out, nil
}

// setIDs numbers the sets this package adds. A set's ID names it within one
// netlink batch only; google/nftables v0.3.0 allocates one from an unguarded
// package-level counter when it is left zero, a data race as soon as two
// goroutines converge namespaces at once, so every set gets its ID here.
var setIDs atomic.Uint32

func nextSetID() uint32 { return setIDs.Add(1) }
