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

// Private link services (issue 12): a consumer's endpoint leads, through
// its network's router, to the namespace of the service's NAT NIC, an
// ordinary NIC of the provider's network (EnsureNIC) whose address is the
// service's primary NAT IP. That NIC is to a private link service what a
// server's namespace is to a flexible server: the consumer's router
// translates to it exactly as to a server (EndpointNAT with ServiceKind
// KindNIC: DNAT to the service's link address, SNAT to the endpoint's own
// SNAT address, the guard, the counters, revocation), over a service link
// whose far end sits in the NIC's namespace. There, EnsureLinkService
// keeps the service's link address (LinkService.Addr, from
// 169.254.0.0/16, the address consumers' routers route to) on lo (label
// lo:pls), IP forwarding on, and the table LinkServiceTable (inet):
//
//	map pls-dnat     link address . port : frontend . port, an element
//	                 per frontend port the service exposes (a counter each)
//	chain pls-dnat   nat prerouting (dstnat): a connection's first packet
//	                 from a service link to a port of the map goes to the
//	                 load balancer's frontend
//	chain pls-snat   nat postrouting (srcnat): what came from a service
//	                 link leaves eth0 from the NAT IP, so the backends see
//	                 the NAT IP whatever the consumers' (overlapping) spaces
//	chain pls-guard  filter forward: only translated flows (ct status
//	                 dnat) pass between service links and eth0; all else
//	                 is reset or dropped (the NIC forwards nothing else)
//	chain pls-input  filter input: nothing from a service link reaches the
//	                 NIC's own stack but to be reset
//
// From eth0 on, a consumer's connection is one of a client of the
// provider's network: its router's load balancer (LBTable) deals it to a
// healthy backend by the 5-tuple hash, and the provider's policies see it
// from the NAT IP. Both namespaces' conntrack keep the flow: sessions
// survive privlinkd's absence.
const (
	// LinkServiceTable is the table of a private link service in its NAT
	// NIC's namespace.
	LinkServiceTable = "privlink-pls"

	labelPLS     = "lo:pls"
	plsObjPrefix = "pls-"
	chainPLSDNAT = "pls-dnat"
	chainPLSSNAT = "pls-snat"
	chainPLSFwd  = "pls-guard"
	chainPLSIn   = "pls-input"
)

// LinkService is what the namespace of a private link service's NAT NIC
// holds: connections from service links to Addr:port go to the load
// balancer frontend that port maps to, from NATIP.
type LinkService struct {
	// NIC is the fabric ID of the service's NAT NIC (EnsureNIC).
	NIC string
	// Addr is the service's link address: the ServiceAddr of the
	// endpoint translations toward it, from 169.254.0.0/16, unique on the
	// machine.
	Addr netip.Addr
	// NATIP is the NIC's address, the source the backends see.
	NATIP netip.Addr
	// Ports are the exposed frontend ports, each to its frontend.
	Ports []LinkServicePort
}

// LinkServicePort maps one exposed port to the frontend that serves it.
type LinkServicePort struct {
	Port     uint16
	Frontend netip.Addr
}

// Fingerprint is equal for equal LinkServices.
func (s *LinkService) Fingerprint() string { return fmt.Sprintf("%v", *s) }

func (s *LinkService) validate() error {
	if err := checkID("NIC", s.NIC); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return invalid("private link service of NIC %s: %s", s.NIC, fmt.Sprintf(format, args...))
	}
	if !s.Addr.Is4() || !ServicePrefix.Contains(s.Addr) {
		return bad("link address %s: want one inside %s", s.Addr, ServicePrefix)
	}
	if !s.NATIP.Is4() || ServicePrefix.Contains(s.NATIP) || s.NATIP.IsUnspecified() || s.NATIP.IsLoopback() {
		return bad("NAT IP %s: want an IPv4 address of the provider's network", s.NATIP)
	}
	seen := map[uint16]bool{}
	for _, p := range s.Ports {
		switch {
		case p.Port == 0:
			return bad("port 0")
		case seen[p.Port]:
			return bad("port %d twice", p.Port)
		case !p.Frontend.Is4() || ServicePrefix.Contains(p.Frontend):
			return bad("port %d: frontend %s: want an IPv4 address of the provider's network", p.Port, p.Frontend)
		}
		seen[p.Port] = true
	}
	return nil
}

// EnsureLinkService converges the namespace of the service's NAT NIC to
// s (see LinkService): its link address on lo, IP forwarding on, and
// LinkServiceTable. The NIC's namespace must exist (ErrNotFound).
func (f *Fabric) EnsureLinkService(s LinkService) error {
	if err := s.validate(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	nic, err := f.open(f.NamespaceName(KindNIC, s.NIC), nil)
	if err != nil {
		return fmt.Errorf("fabric: private link service of NIC %s: %w", s.NIC, err)
	}
	defer nic.close()
	if err := f.ensureLinkService(nic, s); err != nil {
		return fmt.Errorf("fabric: private link service of NIC %s: %w", s.NIC, err)
	}
	return nil
}

func (f *Fabric) ensureLinkService(nic *nsRef, s LinkService) error {
	// The table first: nothing is forwarded before the guard is there.
	res := f.convergeTable(nic, linkServiceTable(s))
	if res.err != nil {
		return res.err
	}
	if res.changed {
		f.log.Info("private link service converged", "ns", nic.name, "addr", s.Addr, "nat_ip", s.NATIP, "ports", len(s.Ports))
	}
	if err := ensureLoAddrs(nic, map[string][]netip.Prefix{labelPLS: {netip.PrefixFrom(s.Addr, 32)}}); err != nil {
		return err
	}
	// The policy controller sets the same (a service's NAT NIC forwards,
	// network.PolicyFacts), so neither undoes the other.
	return errors.Join(ensureFlowAccounting(nic), nic.do(func() error {
		_, err := setSysctl("net/ipv4/ip_forward", "1")
		return err
	}))
}

// IPS_DST_NAT: conntrack's status bit of a flow whose destination was
// translated.
const ctStatusDNAT = 1 << 5

// linkServiceTable is the NAT NIC's LinkServiceTable for s (validated).
func linkServiceTable(s LinkService) tableSpec {
	dnat := setSpec{name: plsObjPrefix + setDNAT, key: typeTarget, data: typeTarget, isMap: true, counter: true}
	for _, p := range s.Ports {
		dnat.elems = append(dnat.elems, nftables.SetElement{
			Key: slices.Concat(addrBytes(s.Addr), portBytes(p.Port)), Val: slices.Concat(addrBytes(p.Frontend), portBytes(p.Port)),
			Comment: fmt.Sprintf("port %d", p.Port),
		})
	}
	fromLink := ifPrefixIs(expr.MetaKeyIIFNAME, serviceSideTag)
	toLink := ifPrefixIs(expr.MetaKeyOIFNAME, serviceSideTag)
	translated := []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ctStatusDNAT), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
	return tableSpec{table: LinkServiceTable, ownsChains: true, objPrefix: plsObjPrefix,
		chains: []chainSpec{
			{name: chainPLSDNAT, typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPrerouting, priority: nftables.ChainPriorityNATDest,
				rules: []nftRule{{"pls: from service links, dnat by @" + dnat.name, slices.Concat(fromLink, ipv4(), tcp(), synOnly(), []expr.Any{
					load(reg1, expr.PayloadBaseNetworkHeader, offIPDaddr, 4),
					load(reg9, expr.PayloadBaseTransportHeader, offTCPDport, 2),
					&expr.Lookup{SourceRegister: reg1, SetName: dnat.name, DestRegister: reg1, IsDestRegSet: true},
					&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: reg9, Specified: true},
				})}}},
			{name: chainPLSSNAT, typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPostrouting, priority: nftables.ChainPriorityNATSource,
				rules: []nftRule{{"pls: from service links, snat to the NAT IP " + s.NATIP.String(), slices.Concat(fromLink,
					metaIs(expr.MetaKeyOIFNAME, ifname(nicLinkName)), ipv4(), []expr.Any{
						&expr.Immediate{Register: reg1, Data: addrBytes(s.NATIP)},
						&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1},
					})}}},
			{name: chainPLSFwd, typ: nftables.ChainTypeFilter, hook: nftables.ChainHookForward, priority: nftables.ChainPriorityFilter,
				rules: []nftRule{
					{"pls: translated flows from service links", slices.Concat(fromLink, translated, []expr.Any{accept})},
					{"pls: translated flows toward service links", slices.Concat(toLink, translated, []expr.Any{accept})},
					{"pls: reset other tcp", resetTCP()},
					{"pls: drop other traffic", []expr.Any{drop}},
				}},
			{name: chainPLSIn, typ: nftables.ChainTypeFilter, hook: nftables.ChainHookInput, priority: nftables.ChainPriorityFilter,
				rules: []nftRule{
					{"pls: reset tcp from service links", slices.Concat(fromLink, resetTCP())},
					{"pls: drop other traffic from service links", slices.Concat(fromLink, []expr.Any{drop})},
				}},
		},
		sets: []setSpec{dnat}}
}

// LinkServiceConnections returns how many connections the service of
// NIC nic translated toward its frontends since its table appeared, by
// port.
func (f *Fabric) LinkServiceConnections(nic string) (map[uint16]uint64, error) {
	if err := checkID("NIC", nic); err != nil {
		return nil, err
	}
	r, err := f.open(f.NamespaceName(KindNIC, nic), nil)
	if err != nil {
		return nil, fmt.Errorf("fabric: private link service of NIC %s: %w", nic, err)
	}
	defer r.close()
	c, err := nftConn(r)
	if err != nil {
		return nil, fmt.Errorf("fabric: private link service of NIC %s: %w", nic, err)
	}
	defer c.CloseLasting()
	sets, err := setsOf(c, LinkServiceTable, plsObjPrefix)
	if err != nil {
		return nil, fmt.Errorf("fabric: private link service of NIC %s: %w", nic, err)
	}
	out := map[uint16]uint64{}
	s := sets[plsObjPrefix+setDNAT]
	if s == nil {
		return out, nil
	}
	elems, err := c.GetSetElements(s)
	if err != nil {
		return nil, fmt.Errorf("fabric: private link service of NIC %s: %w", nic, err)
	}
	for _, e := range elems {
		if len(e.Key) >= 6 && e.Counter != nil {
			out[uint16(e.Key[4])<<8|uint16(e.Key[5])] += e.Counter.Packets
		}
	}
	return out, nil
}
