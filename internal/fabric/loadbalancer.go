package fabric

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Internal load balancers (issue 12 item 1) live in a router namespace's
// table LBTable (inet), beside the data path's and the policies' tables,
// which they leave alone. A frontend address sits on the router's lo
// (label lo:lb), so the router answers for it in its subnet, and a
// connection to it that no rule translates meets the router's own stack,
// which refuses it. Its objects:
//
//	map lb-dnat   frontend . protocol . port . slot : backend . port, the
//	              slots 0 to LBSlots-1 of each rule shared round-robin by
//	              its healthy backends; a change of health or membership
//	              is a change of these elements only (convergeTable)
//	chain lb-pre  nat prerouting (dstnat): a connection's first packet to
//	              a frontend, protocol and port of the map goes to the
//	              backend of slot jhash(saddr . daddr . sport . dport .
//	              protocol) mod LBSlots, Azure's 5-tuple distribution
//	chain lb-out  the same on the output hook, for connections the
//	              router namespace itself opens (the PROXY relay of
//	              private link services)
//
// Only a connection's first packet meets a nat chain: established flows
// keep their backend through any change of the map (conntrack holds
// their translation), as Azure keeps flows to a backend its probe takes
// out. A rule with no healthy backend has no elements: its connections
// reach the router's stack and are refused.
const (
	// LBTable is the table of the load balancers of a router.
	LBTable = "privlink-lb"
	// LBSlots is the number of hash slots of a rule: divisible by 1 to
	// 6, so up to six backends share them evenly.
	LBSlots = 60

	labelLB     = "lo:lb"
	lbObjPrefix = "lb-"
	chainLBPre  = "lb-pre"
	chainLBOut  = "lb-out"
)

// typeLBKey is the key of lb-dnat: frontend . protocol . port . slot.
var typeLBKey = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService, nftables.TypeMark)

// Registers of the chains' rules: the key from reg1 (words 8 to 11), the
// 5-tuple hashed from word 12 to 15.
const (
	regLBProto = 9
	regLBPort  = 10
	regLBSlot  = 11
	regLBTuple = 12
)

// LBRule is one load balancing rule in its network's router: connections
// to Frontend:Port over Protocol go to BackendPort of one of Backends,
// chosen by a hash of their 5-tuple.
type LBRule struct {
	// Name identifies the rule in its network (1-64 of [A-Za-z0-9_.-]).
	Name string
	// Frontend is the frontend's private address in the network.
	Frontend netip.Addr
	// Protocol is unix.IPPROTO_TCP or unix.IPPROTO_UDP.
	Protocol uint8
	// Port is the frontend port, BackendPort the port on the backends.
	Port, BackendPort uint16
	// Backends are the healthy members' addresses, in the order the
	// slots are dealt (keep it stable: a reorder moves new connections).
	Backends []netip.Addr
}

// LoadBalancers is what a network's router balances: every frontend
// address (on lo, rules or not) and every rule.
type LoadBalancers struct {
	Frontends []netip.Addr
	Rules     []LBRule
}

func (lb LoadBalancers) validate(network string) error {
	if err := checkID("network", network); err != nil {
		return err
	}
	fronts := map[netip.Addr]bool{}
	for _, a := range lb.Frontends {
		if !a.Is4() {
			return invalid("network %s: load balancer frontend %s: want an IPv4 address", network, a)
		}
		fronts[a] = true
	}
	names := map[string]bool{}
	keys := map[string]bool{}
	for _, r := range lb.Rules {
		if err := checkID("load balancing rule", r.Name); err != nil {
			return err
		}
		bad := func(format string, args ...any) error {
			return invalid("network %s: load balancing rule %s: %s", network, r.Name, fmt.Sprintf(format, args...))
		}
		switch {
		case names[r.Name]:
			return bad("named twice")
		case !fronts[r.Frontend]:
			return bad("frontend %s is not one of the frontends", r.Frontend)
		case r.Protocol != unix.IPPROTO_TCP && r.Protocol != unix.IPPROTO_UDP:
			return bad("protocol %d: want TCP or UDP", r.Protocol)
		case r.Port == 0 || r.BackendPort == 0:
			return bad("ports %d → %d: want both set", r.Port, r.BackendPort)
		}
		k := fmt.Sprintf("%s/%d/%d", r.Frontend, r.Protocol, r.Port)
		if keys[k] {
			return bad("a second rule for %s", k)
		}
		names[r.Name], keys[k] = true, true
		for _, b := range r.Backends {
			if !b.Is4() {
				return bad("backend %s: want an IPv4 address", b)
			}
		}
	}
	return nil
}

// EnsureLoadBalancers converges the load balancers of network's router to
// lb: the frontends on lo, the rules' slots in lb-dnat. Only the elements
// that differ change; an empty lb removes what there was.
func (f *Fabric) EnsureLoadBalancers(network string, lb LoadBalancers) error {
	if err := lb.validate(network); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	router, err := f.open(f.NamespaceName(KindNetwork, network), nil)
	if errors.Is(err, ErrNotFound) && len(lb.Frontends) == 0 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fabric: load balancers of network %s: %w", network, err)
	}
	defer router.close()
	// No translation without the forward filter that confines it.
	if err := ensureRouterFilter(router); err != nil {
		return fmt.Errorf("fabric: load balancers of network %s: %w", network, err)
	}
	var fronts []netip.Prefix
	for _, a := range lb.Frontends {
		fronts = append(fronts, netip.PrefixFrom(a, 32))
	}
	if err := ensureLoAddrs(router, map[string][]netip.Prefix{labelLB: fronts}); err != nil {
		return fmt.Errorf("fabric: load balancers of network %s: %w", network, err)
	}
	res := f.convergeTable(router, lbTable(lb.Rules))
	if res.err != nil {
		return fmt.Errorf("fabric: load balancers of network %s: %w", network, res.err)
	}
	if res.changed {
		f.log.Info("load balancers converged", "ns", router.name, "network", network, "rules", len(lb.Rules), "batches", res.batches)
	}
	return nil
}

// lbKey is an element key of lb-dnat.
func lbKey(front netip.Addr, proto uint8, port uint16, slot uint32) []byte {
	return slices.Concat(addrBytes(front), []byte{proto, 0, 0, 0}, portBytes(port), binaryutil.NativeEndian.PutUint32(slot))
}

// lbTable is the router's LBTable for rules.
func lbTable(rules []LBRule) tableSpec {
	dnat := setSpec{name: lbObjPrefix + setDNAT, key: typeLBKey, data: typeTarget, isMap: true}
	for _, r := range rules {
		if len(r.Backends) == 0 {
			continue
		}
		for slot := uint32(0); slot < LBSlots; slot++ {
			b := r.Backends[int(slot)%len(r.Backends)]
			dnat.elems = append(dnat.elems, nftables.SetElement{
				Key: lbKey(r.Frontend, r.Protocol, r.Port, slot), Val: slices.Concat(addrBytes(b), portBytes(r.BackendPort)), Comment: r.Name})
		}
	}
	chain := func(name string, hook *nftables.ChainHook) chainSpec {
		return chainSpec{name: name, typ: nftables.ChainTypeNAT, hook: hook, priority: nftables.ChainPriorityNATDest,
			rules: []nftRule{{fmt.Sprintf("load balancers: dnat by jhash of the 5-tuple mod %d in @%s", LBSlots, dnat.name), slices.Concat(ipv4(), []expr.Any{
				load(regLBTuple, expr.PayloadBaseNetworkHeader, offIPSaddr, 8), // saddr . daddr
				load(regLBTuple+2, expr.PayloadBaseTransportHeader, offTCPSport, 4),
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: regLBTuple + 3},
				&expr.Hash{SourceRegister: regLBTuple, DestRegister: regLBSlot, Length: 16, Modulus: LBSlots, Type: expr.HashTypeJenkins},
				load(reg1, expr.PayloadBaseNetworkHeader, offIPDaddr, 4),
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: regLBProto},
				load(regLBPort, expr.PayloadBaseTransportHeader, offTCPDport, 2),
				&expr.Lookup{SourceRegister: reg1, SetName: dnat.name, DestRegister: reg1, IsDestRegSet: true},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: reg9, Specified: true},
			})}}}
	}
	return tableSpec{table: LBTable, ownsChains: true, objPrefix: lbObjPrefix,
		chains: []chainSpec{chain(chainLBPre, nftables.ChainHookPrerouting), chain(chainLBOut, nftables.ChainHookOutput)},
		sets:   []setSpec{dnat}}
}
