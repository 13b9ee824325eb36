package fabric

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dumpAttempts bounds the retries of a netlink dump interrupted by a
// concurrent change, as containernetworking's netlinksafe does.
const dumpAttempts = 5

// retryDump calls fn until its dump is not interrupted by a concurrent change
// (netlink.ErrDumpInterrupted), at most dumpAttempts times.
func retryDump[T any](fn func() (T, error)) (T, error) {
	var v T
	var err error
	for range dumpAttempts {
		v, err = fn()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, fmt.Errorf("netlink dump interrupted %d times in a row: %w", dumpAttempts, err)
}

func linkList(h *netlink.Handle) ([]netlink.Link, error) {
	return retryDump(h.LinkList)
}

func addrList(h *netlink.Handle, l netlink.Link) ([]netlink.Addr, error) {
	return retryDump(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_V4) })
}

func routeList(h *netlink.Handle, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	return retryDump(func() ([]netlink.Route, error) { return h.RouteListFiltered(netlink.FAMILY_V4, filter, mask) })
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// linkByName returns the named link of r's namespace, or nil when there is
// none.
func linkByName(r *nsRef, name string) (netlink.Link, error) {
	l, err := r.h.LinkByName(name)
	if isLinkNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("namespace %s: link %s: %w", r.name, name, err)
	}
	return l, nil
}

// hashedLinkName derives a link name (at most 15 bytes, the kernel's limit)
// from an id of any length: tag followed by 12 hex digits of the id's SHA-256.
// The id itself goes into the link's alias, which `ip link` shows.
func hashedLinkName(tag, id string) string {
	sum := sha256.Sum256([]byte(id))
	return tag + hex.EncodeToString(sum[:6])
}

// ensureUp sets l up when it is not.
func ensureUp(r *nsRef, l netlink.Link) error {
	if l.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := r.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("namespace %s: set %s up: %w", r.name, l.Attrs().Name, err)
	}
	return nil
}

// ensureAlias sets l's alias when it differs.
func ensureAlias(r *nsRef, l netlink.Link, alias string) error {
	if l.Attrs().Alias == alias {
		return nil
	}
	if err := r.h.LinkSetAlias(l, alias); err != nil {
		return fmt.Errorf("namespace %s: set alias of %s: %w", r.name, l.Attrs().Name, err)
	}
	return nil
}

// ensureMAC sets l's hardware address to mac when mac is given and differs,
// and tells whether it did.
func ensureMAC(r *nsRef, l netlink.Link, mac net.HardwareAddr) (changed bool, err error) {
	if len(mac) == 0 || bytes.Equal(l.Attrs().HardwareAddr, mac) {
		return false, nil
	}
	err = r.h.LinkSetHardwareAddr(l, mac)
	if errors.Is(err, unix.EBUSY) {
		// Drivers without live address change want the link down.
		err = errors.Join(r.h.LinkSetDown(l), r.h.LinkSetHardwareAddr(l, mac), r.h.LinkSetUp(l))
	}
	if err != nil {
		return false, fmt.Errorf("namespace %s: set address of %s to %s: %w", r.name, l.Attrs().Name, mac, err)
	}
	return true, nil
}

// flushNeighbors forgets the IPv4 neighbours learnt on l (after the peer's
// hardware address changed, so traffic does not go to the old one until the
// entries time out).
func flushNeighbors(r *nsRef, l netlink.Link) error {
	neighs, err := retryDump(func() ([]netlink.Neigh, error) { return r.h.NeighList(l.Attrs().Index, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("namespace %s: neighbours on %s: %w", r.name, l.Attrs().Name, err)
	}
	for _, n := range neighs {
		if err := r.h.NeighDel(&n); err != nil && !isNotExist(err) {
			return fmt.Errorf("namespace %s: delete neighbour %s on %s: %w", r.name, n.IP, l.Attrs().Name, err)
		}
	}
	return nil
}

// ensureStaticNeighbors converges the permanent IPv4 neighbours of l in r's
// namespace to exactly addrs, each at hardware address mac (l's peer's).
// The kernel's neighbour table is one for all namespaces, and past
// net.ipv4.neigh.default.gc_thresh3 (1,024 by default) entries it refuses
// new ones ("neighbor table overflow": the connection fails with "no
// route to host"); permanent entries do not count. A service link holds
// one address per endpoint toward its service (its SNAT address), so a
// learnt entry each would exhaust the table at some hundreds of
// endpoints on the machine; static ones need no ARP either.
func ensureStaticNeighbors(r *nsRef, l netlink.Link, addrs []netip.Addr, mac net.HardwareAddr) error {
	have, err := retryDump(func() ([]netlink.Neigh, error) { return r.h.NeighList(l.Attrs().Index, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("namespace %s: neighbours on %s: %w", r.name, l.Attrs().Name, err)
	}
	wanted, ok := map[netip.Addr]bool{}, map[netip.Addr]bool{}
	for _, a := range addrs {
		wanted[a] = true
	}
	for _, n := range have {
		a, _ := netip.AddrFromSlice(n.IP)
		a = a.Unmap()
		if wanted[a] && n.State&netlink.NUD_PERMANENT != 0 && bytes.Equal(n.HardwareAddr, mac) {
			ok[a] = true
			continue
		}
		if n.State&netlink.NUD_PERMANENT != 0 || wanted[a] {
			if err := r.h.NeighDel(&n); err != nil && !isNotExist(err) {
				return fmt.Errorf("namespace %s: delete neighbour %s on %s: %w", r.name, a, l.Attrs().Name, err)
			}
		}
	}
	for _, a := range addrs {
		if ok[a] {
			continue
		}
		n := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: a.AsSlice(), HardwareAddr: mac}
		if err := r.h.NeighSet(n); err != nil {
			return fmt.Errorf("namespace %s: neighbour %s on %s: %w", r.name, a, l.Attrs().Name, err)
		}
	}
	return nil
}

// ipNet converts a prefix keeping its address (10.0.1.4/24, not 10.0.1.0/24).
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func hostNet(a netip.Addr) *net.IPNet {
	return ipNet(netip.PrefixFrom(a, a.BitLen()))
}

func addrPrefix(a netlink.Addr) netip.Prefix {
	ip, _ := netip.AddrFromSlice(a.IP)
	bits, _ := a.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), bits)
}

// ensureAddrs converges the IPv4 addresses of l: it adds each of want that is
// missing (with label, if not empty, and flags, IFA_F_*) and deletes those
// present that owned reports as ours but want lacks. Addresses compare by
// address and length.
func ensureAddrs(r *nsRef, l netlink.Link, want []netip.Prefix, label string, flags int, owned func(netlink.Addr) bool) error {
	have, err := addrList(r.h, l)
	if err != nil {
		return fmt.Errorf("namespace %s: addresses of %s: %w", r.name, l.Attrs().Name, err)
	}
	// As sets: a router's lo holds an address per endpoint.
	wanted, had := map[netip.Prefix]bool{}, map[netip.Prefix]bool{}
	for _, p := range want {
		wanted[p] = true
	}
	for _, a := range have {
		p := addrPrefix(a)
		had[p] = true
		if !owned(a) || wanted[p] {
			continue
		}
		if err := r.h.AddrDel(l, &a); err != nil && !isNotExist(err) {
			return fmt.Errorf("namespace %s: delete address %s from %s: %w", r.name, p, l.Attrs().Name, err)
		}
	}
	for _, p := range want {
		if had[p] {
			continue
		}
		a := &netlink.Addr{IPNet: ipNet(p), Label: label, Flags: flags}
		if err := r.h.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("namespace %s: add address %s to %s: %w", r.name, p, l.Attrs().Name, err)
		}
	}
	return nil
}

// ensureHostRoute converges the routes through l in r's namespace to exactly
// one: dst/32 directly on the link (scope link).
func ensureHostRoute(r *nsRef, l netlink.Link, dst netip.Addr) error {
	want := netlink.Route{
		LinkIndex: l.Attrs().Index,
		Dst:       hostNet(dst),
		Scope:     netlink.SCOPE_LINK,
		Protocol:  unix.RTPROT_STATIC,
		Table:     unix.RT_TABLE_MAIN,
	}
	routes, err := routeList(r.h, &netlink.Route{LinkIndex: l.Attrs().Index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("namespace %s: routes via %s: %w", r.name, l.Attrs().Name, err)
	}
	found := false
	for _, rt := range routes {
		if rt.Dst != nil && rt.Dst.String() == want.Dst.String() && rt.Gw == nil && rt.Scope == want.Scope {
			found = true
			continue
		}
		if err := r.h.RouteDel(&rt); err != nil && !isNotExist(err) {
			return fmt.Errorf("namespace %s: delete route %s via %s: %w", r.name, rt.Dst, l.Attrs().Name, err)
		}
	}
	if found {
		return nil
	}
	if err := r.h.RouteReplace(&want); err != nil {
		return fmt.Errorf("namespace %s: route %s dev %s: %w", r.name, dst, l.Attrs().Name, err)
	}
	return nil
}

// ensureOnLink makes dst/32 reachable directly on l (scope link), leaving
// the other routes through l alone: unlike ensureHostRoute, it never takes
// away, even for a moment, the route it makes a gateway for.
func ensureOnLink(r *nsRef, l netlink.Link, dst netip.Addr) error {
	routes, err := routeList(r.h, &netlink.Route{LinkIndex: l.Attrs().Index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("namespace %s: routes via %s: %w", r.name, l.Attrs().Name, err)
	}
	for _, rt := range routes {
		if rt.Dst != nil && rt.Dst.String() == hostNet(dst).String() && rt.Gw == nil && rt.Scope == netlink.SCOPE_LINK {
			return nil
		}
	}
	want := netlink.Route{LinkIndex: l.Attrs().Index, Dst: hostNet(dst), Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_STATIC, Table: unix.RT_TABLE_MAIN}
	if err := r.h.RouteReplace(&want); err != nil {
		return fmt.Errorf("namespace %s: route %s dev %s: %w", r.name, dst, l.Attrs().Name, err)
	}
	return nil
}

// ensureDefaultRoute converges the default route of r's namespace to "via gw
// dev l". When onlink, gw is made reachable by a /32 route on l first (for
// an interface whose own address is a /32).
func ensureDefaultRoute(r *nsRef, l netlink.Link, gw netip.Addr, onlink bool) error {
	return ensureGatewayRoute(r, l, netip.PrefixFrom(netip.IPv4Unspecified(), 0), gw, onlink)
}

// ensureGatewayRoute converges the route to dst (masked) of r's namespace
// to "via gw dev l", as ensureDefaultRoute does for 0.0.0.0/0.
func ensureGatewayRoute(r *nsRef, l netlink.Link, dst netip.Prefix, gw netip.Addr, onlink bool) error {
	if onlink {
		if err := ensureOnLink(r, l, gw); err != nil {
			return err
		}
	}
	dst = dst.Masked()
	def := &netlink.Route{Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)}, Table: unix.RT_TABLE_MAIN}
	routes, err := routeList(r.h, def, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("namespace %s: routes to %s: %w", r.name, dst, err)
	}
	if len(routes) == 1 && routes[0].LinkIndex == l.Attrs().Index && routes[0].Gw.Equal(gw.AsSlice()) {
		return nil
	}
	want := &netlink.Route{
		LinkIndex: l.Attrs().Index,
		Dst:       def.Dst,
		Gw:        gw.AsSlice(),
		Protocol:  unix.RTPROT_STATIC,
		Table:     unix.RT_TABLE_MAIN,
	}
	if err := r.h.RouteReplace(want); err != nil {
		return fmt.Errorf("namespace %s: route %s via %s dev %s: %w", r.name, dst, gw, l.Attrs().Name, err)
	}
	return nil
}

// ensureVethPair makes aName in namespace a and bName in namespace b the two
// ends of one veth pair, replacing whatever stands in the way: a lone end, an
// end paired with something else (such as the peer of a namespace deleted
// behind our back, which the kernel destroys asynchronously), or a link of
// another kind. The pair is created inside a with its peer placed directly
// into b: no end ever exists in the host namespace. bMAC, if given, is b's
// hardware address. It returns both ends.
func ensureVethPair(a *nsRef, aName string, b *nsRef, bName string, bMAC net.HardwareAddr) (la, lb netlink.Link, replaced bool, err error) {
	if la, err = linkByName(a, aName); err != nil {
		return nil, nil, false, err
	}
	if lb, err = linkByName(b, bName); err != nil {
		return nil, nil, false, err
	}
	if la != nil && lb != nil && paired(a, la, b, lb) {
		return la, lb, false, nil
	}
	for _, end := range []struct {
		r *nsRef
		l netlink.Link
	}{{a, la}, {b, lb}} {
		if end.l == nil {
			continue
		}
		if err := end.r.h.LinkDel(end.l); err != nil && !isNotExist(err) {
			return nil, nil, false, fmt.Errorf("namespace %s: delete link %s: %w", end.r.name, end.l.Attrs().Name, err)
		}
	}
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: aName},
		PeerName:         bName,
		PeerNamespace:    netlink.NsFd(b.fd),
		PeerHardwareAddr: bMAC,
	}
	if err := a.h.LinkAdd(veth); err != nil {
		return nil, nil, false, fmt.Errorf("namespace %s: add veth %s with peer %s in namespace %s: %w", a.name, aName, bName, b.name, err)
	}
	if la, err = linkByName(a, aName); err == nil && la == nil {
		err = fmt.Errorf("namespace %s: veth %s vanished after creation", a.name, aName)
	}
	if err != nil {
		return nil, nil, false, err
	}
	if lb, err = linkByName(b, bName); err == nil && lb == nil {
		err = fmt.Errorf("namespace %s: veth peer %s vanished after creation", b.name, bName)
	}
	if err != nil {
		return nil, nil, false, err
	}
	return la, lb, true, nil
}

// paired reports whether la (in a) and lb (in b) are the two ends of one
// veth pair: each names the other as its peer by index and namespace id.
func paired(a *nsRef, la netlink.Link, b *nsRef, lb netlink.Link) bool {
	if la.Type() != "veth" || lb.Type() != "veth" {
		return false
	}
	if la.Attrs().ParentIndex != lb.Attrs().Index || lb.Attrs().ParentIndex != la.Attrs().Index {
		return false
	}
	idOfB, err := a.h.GetNetNsIdByFd(int(b.fd))
	if err != nil || idOfB < 0 || la.Attrs().NetNsID != idOfB {
		return false
	}
	idOfA, err := b.h.GetNetNsIdByFd(int(a.fd))
	if err != nil || idOfA < 0 || lb.Attrs().NetNsID != idOfA {
		return false
	}
	return true
}

// allAddrs marks every address of a link as the fabric's to converge.
func allAddrs(netlink.Addr) bool { return true }

// operUpTimeout bounds how long an Ensure waits for a new link to carry
// packets.
const operUpTimeout = 3 * time.Second

// waitOperUp waits until every named link of r's namespace is operationally
// up. The kernel attaches a link's queueing discipline only then (in its
// linkwatch work, which it may defer by up to a second); until then the link
// drops what it is given, and a first TCP SYN lost that way costs a client a
// second. So an Ensure returns only once packets flow.
func waitOperUp(r *nsRef, names ...string) (time.Duration, error) {
	start := time.Now()
	for _, name := range names {
		for delay := 100 * time.Microsecond; ; delay = min(2*delay, 20*time.Millisecond) {
			l, err := linkByName(r, name)
			if err == nil && l == nil {
				err = fmt.Errorf("namespace %s: link %s vanished", r.name, name)
			}
			if err != nil {
				return time.Since(start), err
			}
			if l.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Since(start) > operUpTimeout {
				return time.Since(start), fmt.Errorf("namespace %s: link %s not operationally up after %v (state %s)", r.name, name, operUpTimeout, l.Attrs().OperState)
			}
			time.Sleep(delay)
		}
	}
	return time.Since(start), nil
}

// waitLinks waits for both ends of a veth pair to be operationally up (see
// waitOperUp).
func waitLinks(f *Fabric, a *nsRef, aName string, b *nsRef, bName string) error {
	waitedA, err := waitOperUp(a, aName)
	if err != nil {
		return err
	}
	waitedB, err := waitOperUp(b, bName)
	if err != nil {
		return err
	}
	if waited := waitedA + waitedB; waited > 10*time.Millisecond {
		f.log.Debug("waited for links to come up", "ns", a.name, "link", aName, "peer_ns", b.name, "peer", bName, "waited", waited)
	}
	return nil
}
