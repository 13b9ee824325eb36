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
	"golang.org/x/sys/unix"
)

// The data path's nftables objects live in the table NFTTable (inet) of a
// router namespace (EnsureEndpoints) or of the internet router
// (EnsurePublic), beside the fabric's forward chain, which they leave alone.
// Every translation is a handful of set and map elements; the chains are
// the same whatever the translations, so a change of translations is a
// change of elements only (a few per translation changed), and the cost
// of a packet does not grow with the number of translations (hash
// lookups, not a rule per translation):
//
//	map pe-mark, pub-mark    address . port (where clients connect) :
//	                         the translation's mark; a translation of
//	                         several ports (5432 and PgBouncer's 6432) has
//	                         an element per port here and in dnat, in and
//	                         out, all named after it
//	map pe-dnat, pub-dnat    address . port : service address . port, a
//	                         counter per element (connections translated)
//	map pe-snat              mark . service link : SNAT address
//	set pe-in, pub-in        service link . service address . port . mark,
//	                         a counter per element: what clients send
//	set pe-out, pub-out      the same, for what the service sends back
//	set pub-allow            public address . client range (concatenated
//	                         intervals): the firewall rules of the public
//	                         paths that are enabled
//	set pe-blocked,          marks of translations whose withdrawal failed
//	    pub-blocked          to program: held closed (fail closed) until
//	                         a later Ensure removes them; empty otherwise
//	set pe-refused,          dynamic set of destination addresses, each
//	    pub-refused          with a counter of the connections refused to
//	                         it (there and at the guard, toward services)
//
//	chain pe-dnat, pub-dnat  nat prerouting (dstnat): a connection's first
//	                         packet (a SYN alone: a packet picked up
//	                         mid-stream is never translated) to an
//	                         address and port of the dnat map (on a public
//	                         path, from a source in pub-allow for that
//	                         address) gets the translation's mark
//	                         (translationMark) on its connection and,
//	                         unless the mark is blocked, is translated to
//	                         the service's address (counted on the dnat
//	                         element)
//	chain pe-snat            nat postrouting (srcnat): flows with an
//	                         endpoint's mark leave toward the service from
//	                         the endpoint's SNAT address (pe-snat)
//	chain svc-guard          filter forward, before the fabric's filter:
//	                         packets toward or from a service link pass only
//	                         when link . service address . port . mark is an
//	                         element of the in or out set (so: a current
//	                         translation over its link, to or from its
//	                         service's address and port, and on a public
//	                         path a client address the path allows) and the
//	                         mark is not blocked; counted on that element.
//	                         Other TCP is reset, the rest dropped
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
//	                         privlinkd listens, are not counted, nor is a
//	                         connection a socket takes (privlinkd's DNS
//	                         over TCP on a resolver's inbound endpoint, a
//	                         relay's listener on a relayed endpoint)
//
// Every rule carries a comment naming what it does, every element the name
// of its translation. An Ensure compares the chains' comments, the sets'
// definitions and their elements with what it wants and changes only what
// differs (see convergeTable): elements of the translations that went or
// changed are deleted, those of new ones added, each translation's elements
// in one atomic batch (and the whole change in one, unless it is larger than
// the netlink socket's buffer allows, see nftBatchBudget). An element's
// counter lives as long as the element: a translation's counters start
// from zero when it appears.
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

	// Sets and maps, after the object prefix.
	setMark    = "mark"
	setDNAT    = "dnat"
	setSNAT    = "snat"
	setIn      = "in"
	setOut     = "out"
	setAllow   = "allow"
	setBlocked = "blocked"
	// setRefused names the set of refused connections by destination.
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

// Key and data types of the sets. A concatenation's parts each take a
// whole number of 32-bit registers (a port is padded to four bytes).
var (
	typeTarget  = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService) // address . port
	typeSNATKey = nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeIFName)        // mark . link
	typeGuard   = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr, nftables.TypeInetService, nftables.TypeMark)
	typeAllow   = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr) // public . client range
)

// Registers. Concatenations start at reg1 (the 16-byte NFT_REG_1, whose
// first word is the 32-bit register 8) and go on word by word, as nft
// lays them out; an interface name takes four words.
const (
	reg1 = 1 // NFT_REG_1
	reg9 = 9 // NFT_REG32_01, the second word of NFT_REG_1
	// regAfterName is the first word after an interface name loaded in
	// reg1.
	regAfterName = 12
)

// guardPriority runs the service guard before the fabric's forward filter.
var guardPriority = nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 10)

// unroutedPriority runs after dstnat, so translated packets are checked
// with their new destination.
var unroutedPriority = nftables.ChainPriorityRef(*nftables.ChainPriorityNATDest + 10)

// chainSpec is the desired state of one chain of ours: a base chain
// (policy accept) or, when hook is nil, a regular chain that rules jump to.
type chainSpec struct {
	name     string
	typ      nftables.ChainType
	hook     *nftables.ChainHook
	priority *nftables.ChainPriority
	rules    []nftRule
}

// setSpec is the desired state of one set or map of ours: its definition
// and elements, each element's Comment naming its translation. A dynamic
// set (the refused set) gets its elements from the data path: an Ensure
// leaves them alone.
type setSpec struct {
	name string
	key  nftables.SetDatatype
	// data is a map's data type (isMap).
	data  nftables.SetDatatype
	isMap bool
	// interval: elements are ranges (Key to KeyEnd) of a concatenation.
	interval bool
	// counter: every element has a counter.
	counter bool
	dynamic bool
	elems   []nftables.SetElement
}

// tableSpec is the desired state of the data path's objects in one
// namespace's table.
type tableSpec struct {
	// table is the inet table the objects live in; "" is NFTTable.
	table string
	// ownsChains: every chain of the table is ours, so those the spec
	// lacks are deleted (a table of its own, as the policy table).
	ownsChains bool
	// objPrefix starts the name of every set (and legacy counter) that is
	// ours: those the spec lacks are deleted.
	objPrefix string
	chains    []chainSpec
	sets      []setSpec
}

// tableName is the name of spec's table.
func (spec tableSpec) tableName() string {
	if spec.table == "" {
		return NFTTable
	}
	return spec.table
}

func (spec tableSpec) markSet() string    { return spec.objPrefix + setMark }
func (spec tableSpec) dnatSet() string    { return spec.objPrefix + setDNAT }
func (spec tableSpec) blockedSet() string { return spec.objPrefix + setBlocked }

var (
	accept = &expr.Verdict{Kind: expr.VerdictAccept}
	drop   = &expr.Verdict{Kind: expr.VerdictDrop}
)

func cmpEq(data []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data} }

func metaIs(key expr.MetaKey, data []byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, cmpEq(data)}
}

// ifname returns an interface name as nft compares and stores it: padded
// with zeros to IFNAMSIZ.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
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

// load puts a header field into register reg.
func load(reg uint32, base expr.PayloadBase, off, n uint32) *expr.Payload {
	return &expr.Payload{DestRegister: reg, Base: base, Offset: off, Len: n}
}

// synOnly matches a TCP packet with SYN set and FIN, RST and ACK clear.
func synOnly() []expr.Any {
	return []expr.Any{
		payload(expr.PayloadBaseTransportHeader, offTCPFlags, 1),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpFlagsMask}, Xor: []byte{0}},
		cmpEq([]byte{tcpFlagSYN}),
	}
}

// notBlocked matches while the mark in reg (the connection's conntrack
// mark when load, else a mark already there) is not in the blocked set.
func notBlocked(reg uint32, blocked string, load bool) []expr.Any {
	var out []expr.Any
	if load {
		out = append(out, &expr.Ct{Register: reg, Key: expr.CtKeyMARK})
	}
	return append(out, &expr.Lookup{SourceRegister: reg, SetName: blocked, Invert: true})
}

// translationMark is the conntrack mark of the connections a translation
// made: its SNAT address (unique per endpoint on the machine) or public
// address (unique per public path), as a number. The SNAT and guard sets
// recognise a translation's flows by it, since after DNAT the packets of
// two endpoints toward one service look alike.
func translationMark(a netip.Addr) uint32 {
	a4 := a.As4()
	return binary.BigEndian.Uint32(a4[:])
}

// markBytes is a mark as a register holds it (host byte order), and so as
// set elements keyed or valued by `ct mark` store it.
func markBytes(mark uint32) []byte { return binaryutil.NativeEndian.PutUint32(mark) }

// portBytes is a port as a concatenation holds it: big endian, padded to
// a register's four bytes.
func portBytes(port uint16) []byte { return append(binaryutil.BigEndian.PutUint16(port), 0, 0) }

func addrBytes(a netip.Addr) []byte {
	a4 := a.As4()
	return a4[:]
}

// dnatChain is the chain that translates connections' first packets: those
// that pass checks get the mark the mark map gives their destination
// address and port, then, unless that mark is blocked, the destination
// the dnat map gives them (the service's address and port); a packet not
// translated reaches the router's own stack, which refuses it. Two rules
// rather than one lookup of both, so that `nft list ruleset` shows them as
// they are.
func dnatChain(name, dnat, mark, blocked, short string, checks ...[]expr.Any) chainSpec {
	first := slices.Concat(append([][]expr.Any{ipv4(), tcp(), synOnly()}, checks...)...)
	target := []expr.Any{
		load(reg1, expr.PayloadBaseNetworkHeader, offIPDaddr, 4),
		load(reg9, expr.PayloadBaseTransportHeader, offTCPDport, 2),
	}
	return chainSpec{
		name: name, typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPrerouting, priority: nftables.ChainPriorityNATDest,
		rules: []nftRule{
			{fmt.Sprintf("%s: mark by @%s", short, mark), slices.Concat(first, target, []expr.Any{
				&expr.Lookup{SourceRegister: reg1, SetName: mark, DestRegister: reg1, IsDestRegSet: true},
				&expr.Ct{Register: reg1, Key: expr.CtKeyMARK, SourceRegister: true},
			})},
			{fmt.Sprintf("%s: dnat by @%s but marks in @%s", short, dnat, blocked), slices.Concat(first, notBlocked(reg1, blocked, true), target, []expr.Any{
				&expr.Lookup{SourceRegister: reg1, SetName: dnat, DestRegister: reg1, IsDestRegSet: true},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: reg9, Specified: true},
			})},
		},
	}
}

// guardKey loads, from reg1 on, the key of the guard sets: the link
// (output interface toward the service, input from it), the service's
// address and port (destination toward it, source from it) and the mark.
func guardKey(toward bool) []expr.Any {
	link, addr, port := expr.MetaKeyOIFNAME, uint32(offIPDaddr), uint32(offTCPDport)
	if !toward {
		link, addr, port = expr.MetaKeyIIFNAME, offIPSaddr, offTCPSport
	}
	return []expr.Any{
		&expr.Meta{Key: link, Register: reg1},
		load(regAfterName, expr.PayloadBaseNetworkHeader, addr, 4),
		load(regAfterName+1, expr.PayloadBaseTransportHeader, port, 2),
		&expr.Ct{Register: regAfterName + 2, Key: expr.CtKeyMARK},
	}
}

// guardRules let through, and count on their elements, the packets of
// translated flows toward (in) and from (out) service links; allow, if not
// empty, names the set the client's address must be in together with the
// translation's address, which is its mark (a public path's).
func guardRules(short, in, out, blocked, allow string) []nftRule {
	var inAllow, outAllow []expr.Any
	clients := ""
	if allow != "" {
		// The mark, in network byte order, is the public address.
		mark := []expr.Any{
			&expr.Ct{Register: reg1, Key: expr.CtKeyMARK},
			&expr.Byteorder{SourceRegister: reg1, DestRegister: reg1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		}
		inAllow = slices.Concat(mark, []expr.Any{load(reg9, expr.PayloadBaseNetworkHeader, offIPSaddr, 4), &expr.Lookup{SourceRegister: reg1, SetName: allow}})
		outAllow = slices.Concat(mark, []expr.Any{load(reg9, expr.PayloadBaseNetworkHeader, offIPDaddr, 4), &expr.Lookup{SourceRegister: reg1, SetName: allow}})
		clients = "clients in @" + allow + ", "
	}
	// The client's check comes before the lookup that counts, so that
	// the counters hold only what passed.
	return []nftRule{
		{
			fmt.Sprintf("%s: toward services, %stranslations in @%s", short, clients, in),
			slices.Concat(ifPrefixIs(expr.MetaKeyOIFNAME, serviceLinkTag), ipv4(), tcp(), notBlocked(reg1, blocked, true),
				inAllow, guardKey(true), []expr.Any{&expr.Lookup{SourceRegister: reg1, SetName: in}, accept}),
		},
		{
			fmt.Sprintf("%s: from services, %stranslations in @%s", short, clients, out),
			slices.Concat(ifPrefixIs(expr.MetaKeyIIFNAME, serviceLinkTag), ipv4(), tcp(), notBlocked(reg1, blocked, true),
				outAllow, guardKey(false), []expr.Any{&expr.Lookup{SourceRegister: reg1, SetName: out}, accept}),
		},
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
	return setSpec{name: prefix + setRefused, key: nftables.TypeIPAddr, dynamic: true}
}

// refusedChain counts, in set, the connections whose first packet reaches
// the router's own stack and finds no socket there, but those to own
// (where privlinkd listens). A socket in the router's namespace that
// takes the connection (privlinkd's DNS on a DNS resolver inbound
// endpoint's address, TCP port 53) is no refusal: the socket expression
// looks the packet's socket up and the rule stops there when it finds one.
func refusedChain(set string, own netip.Addr) chainSpec {
	return chainSpec{
		name: chainRefused, typ: nftables.ChainTypeFilter, hook: nftables.ChainHookInput, priority: nftables.ChainPriorityFilter,
		rules: []nftRule{
			{"privlink: a connection a socket takes is not refused",
				slices.Concat(ipv4(), tcp(), synOnly(), hasSocket(), []expr.Any{accept})},
			{fmt.Sprintf("privlink: count refused connections but to %s in @%s", own, set),
				slices.Concat(ipv4(), tcp(), synOnly(), ipIsNot(offIPDaddr, own), countRefused(set))},
		},
	}
}

// hasSocket matches packets for which the namespace has a socket (a
// listener or a connection); without one the socket expression ends the
// rule (NFT_BREAK).
func hasSocket() []expr.Any {
	return []expr.Any{
		&expr.Socket{Key: expr.SocketKeyTransparent, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
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

// guardChain is the service guard: guardRules, then guardTail.
func guardChain(short, prefix, allow string) chainSpec {
	rules := guardRules(short, prefix+setIn, prefix+setOut, prefix+setBlocked, allow)
	return chainSpec{
		name: chainGuard, typ: nftables.ChainTypeFilter, hook: nftables.ChainHookForward, priority: guardPriority,
		rules: append(rules, guardTail(prefix+setRefused)...),
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

// translationSets are the sets every table of translations has, with the
// elements the caller fills in: mark, dnat, in, out, blocked (empty: an
// Ensure that succeeds leaves nothing blocked) and refused.
type translationSets struct {
	mark, dnat, in, out setSpec
}

func newTranslationSets(prefix string) translationSets {
	return translationSets{
		mark: setSpec{name: prefix + setMark, key: typeTarget, data: nftables.TypeMark, isMap: true},
		dnat: setSpec{name: prefix + setDNAT, key: typeTarget, data: typeTarget, isMap: true, counter: true},
		in:   setSpec{name: prefix + setIn, key: typeGuard, counter: true},
		out:  setSpec{name: prefix + setOut, key: typeGuard, counter: true},
	}
}

// add adds the elements of one translation named name: target:port
// translated to svc:port over link, with mark, for each of ports (one
// element per port in each set, all with the translation's name).
func (ts *translationSets) add(name string, target, svc netip.Addr, ports []uint16, link string, mark uint32) {
	for _, port := range ports {
		tkey := slices.Concat(addrBytes(target), portBytes(port))
		ts.mark.elems = append(ts.mark.elems, nftables.SetElement{Key: tkey, Val: markBytes(mark), Comment: name})
		ts.dnat.elems = append(ts.dnat.elems, nftables.SetElement{
			Key: slices.Clone(tkey), Val: slices.Concat(addrBytes(svc), portBytes(port)), Comment: name,
		})
		key := slices.Concat(ifname(link), addrBytes(svc), portBytes(port), markBytes(mark))
		ts.in.elems = append(ts.in.elems, nftables.SetElement{Key: key, Comment: name})
		ts.out.elems = append(ts.out.elems, nftables.SetElement{Key: slices.Clone(key), Comment: name})
	}
}

func (ts translationSets) specs(prefix string) []setSpec {
	return []setSpec{ts.mark, ts.dnat, ts.in, ts.out, {name: prefix + setBlocked, key: nftables.TypeMark}, refusedSet(prefix)}
}

// endpointTable is the desired table of a network's router with the
// translations eps (validated), whose service links are named by network.
func endpointTable(network string, eps []EndpointNAT) tableSpec {
	p := endpointObjPrefix
	ts := newTranslationSets(p)
	snat := setSpec{name: p + setSNAT, key: typeSNATKey, data: nftables.TypeIPAddr, isMap: true}
	for _, ep := range eps {
		if ep.Relay {
			// A relay of privlinkd listens on the endpoint's address:
			// its listener is a socket, so the refused chain does not
			// count its connections (hasSocket).
			continue
		}
		link, _ := ServiceLinkNames(network, ep.Service)
		mark := translationMark(ep.SNAT)
		ts.add(ep.Name, ep.Endpoint, ep.ServiceAddr, ep.Ports, link, mark)
		snat.elems = append(snat.elems, nftables.SetElement{Key: slices.Concat(markBytes(mark), ifname(link)), Val: addrBytes(ep.SNAT), Comment: ep.Name})
	}
	snatChain := chainSpec{
		name: chainEndpointSNAT, typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPostrouting, priority: nftables.ChainPriorityNATSource,
		rules: []nftRule{{"pe: snat marked flows to @" + snat.name, slices.Concat(ipv4(), tcp(), []expr.Any{
			&expr.Ct{Register: reg1, Key: expr.CtKeyMARK},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg9},
			&expr.Lookup{SourceRegister: reg1, SetName: snat.name, DestRegister: reg1, IsDestRegSet: true},
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1},
		})}},
	}
	return tableSpec{
		objPrefix: p,
		chains: []chainSpec{
			dnatChain(chainEndpointDNAT, ts.dnat.name, ts.mark.name, p+setBlocked, "pe"),
			snatChain,
			guardChain("pe", p, ""),
			unroutedChain(), notrackChain(), refusedChain(p+setRefused, DNSAddr),
		},
		sets: append(ts.specs(p), snat),
	}
}

// publicTable is the desired table of the internet router with the public
// paths pubs (validated).
func publicTable(pubs []PublicNAT) tableSpec {
	p := publicObjPrefix
	ts := newTranslationSets(p)
	allow := setSpec{name: p + setAllow, key: typeAllow, interval: true}
	for _, pub := range pubs {
		link, _ := ServiceLinkNames("", pub.Service)
		ts.add(pub.Name, pub.Public, pub.ServiceAddr, pub.Ports, link, translationMark(pub.Public))
		if pub.Enabled {
			allow.elems = append(allow.elems, allowElements(pub.Name, pub.Public, pub.Allowed)...)
		}
	}
	// A connection's source must be in the path's firewall set.
	allowed := []expr.Any{
		load(reg1, expr.PayloadBaseNetworkHeader, offIPDaddr, 4),
		load(reg9, expr.PayloadBaseNetworkHeader, offIPSaddr, 4),
		&expr.Lookup{SourceRegister: reg1, SetName: allow.name},
	}
	return tableSpec{
		objPrefix: p,
		chains: []chainSpec{
			dnatChain(chainPublicDNAT, ts.dnat.name, ts.mark.name, p+setBlocked, "pub: from sources in @"+allow.name, allowed),
			guardChain("pub", p, allow.name),
			unroutedChain(), notrackChain(), refusedChain(p+setRefused, InternetGateway),
		},
		sets: append(ts.specs(p), allow),
	}
}

// allowElements returns the elements of the allow set for the public path
// name at public whose firewall allows ranges: one per merged range,
// public . from to public . to.
func allowElements(name string, public netip.Addr, ranges []AddrRange) []nftables.SetElement {
	var out []nftables.SetElement
	for _, r := range mergeRanges(ranges) {
		out = append(out, nftables.SetElement{
			Key:     slices.Concat(addrBytes(public), addrBytes(r.From)),
			KeyEnd:  slices.Concat(addrBytes(public), addrBytes(r.To)),
			Comment: name,
		})
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

// elementKeys renders set elements comparably, in a canonical order: what
// identifies an element in its set (key, and key end for a range).
func elementKeys(elems []nftables.SetElement) []string {
	out := make([]string, 0, len(elems))
	for _, e := range elems {
		out = append(out, elementID(e))
	}
	slices.Sort(out)
	return out
}

func elementID(e nftables.SetElement) string {
	if e.IntervalEnd {
		return fmt.Sprintf("%x-end", e.Key)
	}
	return fmt.Sprintf("%x-%x", e.Key, e.KeyEnd)
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

// readCounters returns the counters of the translations of r's table whose
// objects start with prefix, by name (the elements' comments), and the
// names by target (address and port clients connect to).
func readCounters(r *nsRef, prefix string) (map[string]Counters, map[netip.AddrPort]string, error) {
	out, names := map[string]Counters{}, map[netip.AddrPort]string{}
	c, err := nftConn(r)
	if err != nil {
		return nil, nil, fmt.Errorf("namespace %s: %w", r.name, err)
	}
	defer c.CloseLasting()
	sets, err := ourSets(c, prefix)
	if err != nil {
		return nil, nil, fmt.Errorf("namespace %s: list nftables sets: %w", r.name, err)
	}
	for _, which := range []string{setDNAT, setIn, setOut} {
		s := sets[prefix+which]
		if s == nil {
			continue
		}
		elems, err := c.GetSetElements(s)
		if err != nil {
			return nil, nil, fmt.Errorf("namespace %s: read set %s: %w", r.name, s.Name, err)
		}
		for _, e := range elems {
			if e.Comment == "" {
				continue
			}
			v := out[e.Comment]
			var packets, bytes uint64
			if e.Counter != nil {
				packets, bytes = e.Counter.Packets, e.Counter.Bytes
			}
			// A translation of several ports has an element per port
			// in each set: its counters are their sums.
			switch which {
			case setDNAT:
				v.Connections += packets
				if len(e.Key) >= 6 {
					a, _ := netip.AddrFromSlice(e.Key[:4])
					names[netip.AddrPortFrom(a, binary.BigEndian.Uint16(e.Key[4:6]))] = e.Comment
				}
			case setIn:
				v.PacketsIn, v.BytesIn = v.PacketsIn+packets, v.BytesIn+bytes
			case setOut:
				v.PacketsOut, v.BytesOut = v.PacketsOut+packets, v.BytesOut+bytes
			}
			out[e.Comment] = v
		}
	}
	return out, names, nil
}

// ourSets returns the sets of the data path's table whose names start
// with prefix, by name (none when there is no table yet).
func ourSets(c *nftables.Conn, prefix string) (map[string]*nftables.Set, error) {
	return setsOf(c, NFTTable, prefix)
}

// setsOf returns the sets of the inet table whose names start with
// prefix, by name (none when there is no such table).
func setsOf(c *nftables.Conn, table, prefix string) (map[string]*nftables.Set, error) {
	out := map[string]*nftables.Set{}
	sets, err := c.GetSets(&nftables.Table{Name: table, Family: nftables.TableFamilyINet})
	if errors.Is(err, unix.ENOENT) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, s := range sets {
		if strings.HasPrefix(s.Name, prefix) {
			out[s.Name] = s
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
	sets, err := ourSets(c, prefix)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: list nftables sets: %w", r.name, err)
	}
	s := sets[prefix+setRefused]
	if s == nil || !s.Dynamic {
		return out, nil
	}
	elems, err := c.GetSetElements(s)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: read set %s: %w", r.name, s.Name, err)
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
