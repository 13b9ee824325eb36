package fabric

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Service links join a router (a network's, or the internet's) to a service
// namespace. They carry only translated flows (see EnsureEndpoints and
// EnsurePublic), so they need no addresses of their own:
//
//   - the router routes the service's address (ServiceSpec.Address) to its
//     end of the link, and the service answers ARP for it (it lives on the
//     service's lo);
//   - on a network's link, the router's end holds the SNAT addresses of the
//     endpoints toward that service (/32, no prefix route): the router
//     answers ARP for them, and packets to them that no longer belong to a
//     translated flow reach the router's own stack, which resets them;
//   - the service routes each SNAT address back through the link of the
//     network it belongs to, and the emulated internet (198.18.0.0/15)
//     through the internet's link, via the internet router's 198.18.0.1;
//   - both ends know each other's addresses as permanent neighbours, so
//     that a thousand endpoints do not fill the kernel's neighbour table
//     (see ensureStaticNeighbors).
//
// Every address on a service link is the service's own, an SNAT address
// (both from 169.254.0.0/16) or an internet address, so no address of a
// virtual network ever appears on the service side.
const (
	// serviceLinkTag starts the name of the router-side end of every
	// service link. Router namespaces reserve "n" for NICs, the internet
	// router "h" for its hosts.
	serviceLinkTag = "s"
	// serviceSideTag starts the name of the service-side end.
	serviceSideTag = "r"
	// serviceAliasPrefix starts the alias of a router-side end; the
	// service's ID follows.
	serviceAliasPrefix = "service "
)

// ServiceLinkNames returns the names of the two ends of the veth pair between
// the router of network (the internet router when network is "") and the
// namespace of service: the router side is "s" and the service side "r",
// each followed by the same 12 hex digits of a hash of both IDs. The router
// side's alias is "service <id>", the service side's "network <id>" (or
// "internet").
func ServiceLinkNames(network, service string) (routerSide, serviceSide string) {
	key := "vnet\x00" + network + "\x00" + service
	if network == "" {
		key = "inet\x00\x00" + service
	}
	return hashedLinkName(serviceLinkTag, key), hashedLinkName(serviceSideTag, key)
}

// serviceLink is the desired state of one service link.
type serviceLink struct {
	network string // "" for the internet router
	service string
	// kind is the service namespace's kind: KindService ("") or KindNIC
	// (a private link service's NAT NIC).
	kind        Kind
	serviceAddr netip.Addr
	// local are the addresses on the router's end (SNAT addresses).
	local []netip.Addr
}

func (l serviceLink) names() (string, string) { return ServiceLinkNames(l.network, l.service) }

// peerAddrs are the addresses the service reaches through the link: the
// SNAT addresses, or the internet router's address.
func (l serviceLink) peerAddrs() []netip.Addr {
	if l.network == "" {
		return []netip.Addr{InternetGateway}
	}
	return l.local
}

// backRoutes returns the routes the service namespace needs through its end
// sl of the link.
func (l serviceLink) backRoutes(sl netlink.Link) []netlink.Route {
	var out []netlink.Route
	if l.network == "" {
		out = append(out, netlink.Route{
			LinkIndex: sl.Attrs().Index,
			Dst:       ipNet(InternetPrefix),
			Gw:        InternetGateway.AsSlice(),
			Flags:     int(netlink.FLAG_ONLINK),
			Protocol:  unix.RTPROT_STATIC,
			Table:     unix.RT_TABLE_MAIN,
		})
		return out
	}
	for _, a := range l.local {
		out = append(out, netlink.Route{
			LinkIndex: sl.Attrs().Index,
			Dst:       hostNet(a),
			Scope:     netlink.SCOPE_LINK,
			Protocol:  unix.RTPROT_STATIC,
			Table:     unix.RT_TABLE_MAIN,
		})
	}
	return out
}

// ensureServiceLink converges the link between router and the service
// namespace of l.service, which must exist (ErrNotFound) and hold
// l.serviceAddr (ErrInvalid otherwise).
func (f *Fabric) ensureServiceLink(router *nsRef, l serviceLink) error {
	kind := l.kind
	if kind == "" {
		kind = KindService
	}
	svc, err := f.open(f.NamespaceName(kind, l.service), nil)
	if err != nil {
		return fmt.Errorf("service %s: %w", l.service, err)
	}
	defer svc.close()
	if err := checkServiceAddr(svc, l.serviceAddr); err != nil {
		return err
	}
	rName, sName := l.names()
	rl, sl, replaced, err := ensureVethPair(router, rName, svc, sName, nil)
	if err != nil {
		return err
	}
	if replaced {
		f.log.Info("linked router to service", "ns", router.name, "service", l.service, "router_link", rName, "service_link", sName)
	}
	peerAlias := "network " + l.network
	if l.network == "" {
		peerAlias = "internet"
	}
	var local []netip.Prefix
	for _, a := range l.local {
		local = append(local, netip.PrefixFrom(a, 32))
	}
	for _, step := range []func() error{
		func() error { return ensureAlias(router, rl, serviceAliasPrefix+l.service) },
		func() error {
			return ensureAddrs(router, rl, local, "", unix.IFA_F_NOPREFIXROUTE, allAddrs)
		},
		func() error { return ensureUp(router, rl) },
		func() error { return ensureHostRoute(router, rl, l.serviceAddr) },
		func() error { return ensureAlias(svc, sl, peerAlias) },
		func() error { return ensureUp(svc, sl) },
		func() error { return ensureLinkRoutes(svc, sl, l.backRoutes(sl)) },
		// Static neighbours on both ends (see ensureStaticNeighbors).
		func() error {
			return ensureStaticNeighbors(router, rl, []netip.Addr{l.serviceAddr}, sl.Attrs().HardwareAddr)
		},
		func() error { return ensureStaticNeighbors(svc, sl, l.peerAddrs(), rl.Attrs().HardwareAddr) },
		func() error { return waitLinks(f, router, rName, svc, sName) },
	} {
		if err := step(); err != nil {
			return fmt.Errorf("service link %s: %w", rName, err)
		}
	}
	return nil
}

// checkServiceAddr verifies that the service namespace holds addr on lo, so
// that a translation toward it leads to the service and nowhere else.
func checkServiceAddr(svc *nsRef, addr netip.Addr) error {
	lo, err := linkByName(svc, "lo")
	if err == nil && lo == nil {
		err = fmt.Errorf("namespace %s: no lo", svc.name)
	}
	if err != nil {
		return err
	}
	addrs, err := addrList(svc.h, lo)
	if err != nil {
		return fmt.Errorf("namespace %s: addresses of lo: %w", svc.name, err)
	}
	if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return addrPrefix(a).Addr() == addr }) {
		return fmt.Errorf("namespace %s: service address %s is not on lo (see EnsureService): %w", svc.name, addr, ErrInvalid)
	}
	return nil
}

// ensureLinkRoutes converges the main-table routes through l in r's
// namespace to exactly want (compared by destination and gateway).
func ensureLinkRoutes(r *nsRef, l netlink.Link, want []netlink.Route) error {
	have, err := routeList(r.h, &netlink.Route{LinkIndex: l.Attrs().Index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("namespace %s: routes via %s: %w", r.name, l.Attrs().Name, err)
	}
	// By destination and gateway: a link holds a route per endpoint
	// toward its service, so no pairwise comparison.
	key := func(rt netlink.Route) string {
		if rt.Dst == nil {
			return ""
		}
		return rt.Dst.String() + " via " + rt.Gw.String()
	}
	wanted, had := map[string]bool{}, map[string]bool{}
	for _, w := range want {
		wanted[key(w)] = true
	}
	for _, rt := range have {
		k := key(rt)
		if k != "" && wanted[k] {
			had[k] = true
			continue
		}
		if err := r.h.RouteDel(&rt); err != nil && !isNotExist(err) {
			return fmt.Errorf("namespace %s: delete route %s via %s: %w", r.name, rt.Dst, l.Attrs().Name, err)
		}
	}
	for _, w := range want {
		if had[key(w)] {
			continue
		}
		if err := r.h.RouteReplace(&w); err != nil {
			return fmt.Errorf("namespace %s: route %s dev %s: %w", r.name, w.Dst, l.Attrs().Name, err)
		}
	}
	return nil
}

// deleteServiceLinks deletes the service links of router whose router-side
// name keep does not hold (which takes their peers and SNAT addresses with
// them).
func deleteServiceLinks(router *nsRef, keep map[string]bool) (deleted []string, err error) {
	links, err := linkList(router.h)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", router.name, err)
	}
	var errs []error
	for _, l := range links {
		name := l.Attrs().Name
		if !strings.HasPrefix(name, serviceLinkTag) || keep[name] || l.Attrs().Flags&net.FlagLoopback != 0 {
			continue
		}
		if err := router.h.LinkDel(l); err != nil && !isNotExist(err) {
			errs = append(errs, fmt.Errorf("namespace %s: delete service link %s (%s): %w", router.name, name, l.Attrs().Alias, err))
			continue
		}
		deleted = append(deleted, name)
	}
	return deleted, errors.Join(errs...)
}
