package fabric

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Default outbound: a network whose NetworkSpec has an Outbound address has
// a veth pair between its router and the internet router. The router's end,
// OutboundLinkName (tag "x"), holds the address (/32) and carries the
// router's only route to the emulated internet (198.18.0.0/15 via
// InternetGateway); the internet router's end (tag "o") carries the only
// route back to the address. Table OutboundTable in the router translates
// every flow leaving by that link to the address (SNAT), so a NIC reaches
// internet hosts and servers' public addresses as that one address, as
// Azure's default outbound access does; the router's forward filter lets
// NICs out that way and only replies back. The network policies (policy.go)
// run before: an NSG rule or a route (None, VirtualAppliance) stops or
// diverts a flow before it gets there.
const (
	outboundLinkTag      = "x"
	internetNetLinkTag   = "o"
	OutboundTable        = "privlink-outbound"
	chainOutboundSNAT    = "snat"
	outboundLinkAliasFmt = "internet (default outbound %s)"
)

// OutboundLinkName returns the name of the veth end, in the router namespace
// of network, that leads to the internet router ("x" and 12 hex digits).
func OutboundLinkName(network string) string { return hashedLinkName(outboundLinkTag, network) }

// internetNetLinkName is the internet router's end of network's outbound
// link.
func internetNetLinkName(network string) string { return hashedLinkName(internetNetLinkTag, network) }

// ensureOutbound converges router's default outbound link to spec.Outbound
// (none: the link and the table go).
func (f *Fabric) ensureOutbound(router *nsRef, spec NetworkSpec) error {
	xName := OutboundLinkName(spec.ID)
	if !spec.Outbound.IsValid() {
		xl, err := linkByName(router, xName)
		if err != nil {
			return err
		}
		if xl != nil {
			if err := router.h.LinkDel(xl); err != nil && !isNotExist(err) {
				return fmt.Errorf("namespace %s: delete link %s: %w", router.name, xName, err)
			}
		}
		return f.convergeTable(router, tableSpec{table: OutboundTable, ownsChains: true}).err
	}
	inet, err := f.ensureInternet()
	if err != nil {
		return err
	}
	defer inet.close()
	oName := internetNetLinkName(spec.ID)
	xl, ol, replaced, err := ensureVethPair(router, xName, inet, oName, nil)
	if err != nil {
		return err
	}
	if replaced {
		f.log.Info("connected network to the internet", "network", spec.ID, "outbound_address", spec.Outbound, "router_link", xName)
	}
	if err := ensureAlias(router, xl, fmt.Sprintf(outboundLinkAliasFmt, spec.Outbound)); err != nil {
		return err
	}
	if err := ensureAlias(inet, ol, fmt.Sprintf("network %s (default outbound %s)", spec.ID, spec.Outbound)); err != nil {
		return err
	}
	if err := ensureUp(router, xl); err != nil {
		return err
	}
	if err := ensureUp(inet, ol); err != nil {
		return err
	}
	if err := ensureAddrs(router, xl, []netip.Prefix{netip.PrefixFrom(spec.Outbound, 32)}, "", 0, allAddrs); err != nil {
		return err
	}
	if err := ensureGatewayRoute(router, xl, InternetPrefix, InternetGateway, true); err != nil {
		return err
	}
	if err := ensureHostRoute(inet, ol, spec.Outbound); err != nil {
		return err
	}
	if err := waitLinks(f, router, xName, inet, oName); err != nil {
		return err
	}
	return f.convergeTable(router, outboundTable(xName, spec.Outbound)).err
}

// outboundTable is the router's OutboundTable: flows leaving by link xName
// are translated to the network's outbound address.
func outboundTable(xName string, addr netip.Addr) tableSpec {
	return snatTable(OutboundTable, xName, addr, netip.Prefix{}, fmt.Sprintf("default outbound: snat to %s", addr))
}

// snatTable is a table of its own whose one rule translates the flows
// leaving by link oif (those from inside from, when it is valid) to addr.
func snatTable(table, oif string, addr netip.Addr, from netip.Prefix, comment string) tableSpec {
	var match []expr.Any
	if from.IsValid() {
		match = prefixMatch(offIPSaddr, from)
	}
	return tableSpec{table: table, ownsChains: true, chains: []chainSpec{{
		name: chainOutboundSNAT, typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPostrouting, priority: nftables.ChainPriorityNATSource,
		rules: []nftRule{{comment, slices.Concat(
			metaIs(expr.MetaKeyOIFNAME, ifname(oif)), ipv4(), match,
			[]expr.Any{
				&expr.Immediate{Register: 1, Data: addrBytes(addr)},
				&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
			})}},
	}}}
}
