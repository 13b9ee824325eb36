package fabric

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strings"
)

// A simulated on-premises site (`privlink site create`) is three kinds of
// namespace:
//
//	host ns <prefix>shost-SITE.HOST   eth0 192.168.0.10/16, default via 192.168.0.1
//	   | veth (router side "h<hash>", proxy ARP, the /32 route to the host)
//	router ns <prefix>site-SITE        lo 192.168.0.1 (the site's gateway and DNS),
//	   |                               default via 192.168.0.2 on wan0
//	   | veth wan0 <-> lan0
//	device ns <prefix>sdev-SITE        lan0 192.168.0.2/32, the site's space via 192.168.0.1;
//	   |                               eth0 198.18.50.1/32, default via 198.18.0.1
//	   | veth eth0 <-> "sd<address in hex>" in the internet router (the /32 route)
//	internet router
//
// The device is the office's VPN box: the IKE daemon of its tunnels runs
// there (internal/ipsec), and the routes it installs toward the remote
// spaces (over ipsec0) are what carries the site's traffic to them. Without
// a tunnel, the site reaches nothing beyond itself: the internet router has
// no route to the site's space.

const (
	siteDeviceLinkTag = "d"    // internet router's veth toward a site's device (not "s": the data path owns those there)
	siteHostLinkTag   = "h"    // router's veth toward a site host
	siteWANLink       = "wan0" // router's veth toward the device
	siteLANLink       = "lan0" // device's veth toward the router
)

// SiteNATTable is the nftables table of a site's VPN device: flows from
// the site's space that leave for the emulated internet take the device's
// public address, as an office router's do.
const SiteNATTable = "privlink-site"

var siteNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,22}[a-z0-9])?$`)

// CheckSiteName checks the name of a site or of a site's host: 1-24 of
// [a-z0-9-], starting and ending with a letter or digit.
func CheckSiteName(what, name string) error {
	if !siteNameRE.MatchString(name) {
		return fmt.Errorf("fabric: %s name %q: want 1-24 of [a-z0-9-], starting and ending with a letter or digit: %w", what, name, ErrInvalid)
	}
	return nil
}

// SiteHost is one host of a site.
type SiteHost struct {
	Name    string
	Address netip.Addr
}

// SiteSpec is the desired state of a simulated on-premises site.
type SiteSpec struct {
	// Name names the site's namespaces (CheckSiteName).
	Name string
	// Space is the site's address space, e.g. 192.168.0.0/16.
	Space netip.Prefix
	// Public is the VPN device's address on the emulated internet.
	Public netip.Addr
	// Hosts are the site's hosts, each with an address of Space other than
	// the router's and the device's.
	Hosts []SiteHost
	// DNS is what the hosts' resolv.conf names; none means the router's
	// address (SiteRouterAddr), where the site's DNS answers.
	DNS []netip.Addr
}

// SiteRouterAddr is the address of a site's router in space: its first
// host address (192.168.0.1 in 192.168.0.0/16), the hosts' gateway.
func SiteRouterAddr(space netip.Prefix) netip.Addr { return space.Masked().Addr().Next() }

// SiteDeviceAddr is the VPN device's address inside the site's space: its
// second host address (192.168.0.2).
func SiteDeviceAddr(space netip.Prefix) netip.Addr { return SiteRouterAddr(space).Next() }

// SiteLastAddr is the last address of space (its broadcast address).
func SiteLastAddr(space netip.Prefix) netip.Addr {
	a := space.Masked().Addr().As4()
	host := ^uint32(0) >> space.Bits()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// CheckSiteSpace checks a site's address space: IPv4, /8 to /29, outside
// the emulated internet, the service range and the addresses Azure
// reserves.
func CheckSiteSpace(space netip.Prefix) error {
	switch {
	case !space.IsValid() || !space.Addr().Is4():
		return fmt.Errorf("fabric: site address space %s: want an IPv4 prefix: %w", space, ErrInvalid)
	case space.Bits() < 8 || space.Bits() > 29:
		return fmt.Errorf("fabric: site address space %s: want a length from /8 to /29: %w", space, ErrInvalid)
	}
	for _, p := range []netip.Prefix{InternetPrefix, ServicePrefix, netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("224.0.0.0/3"), netip.MustParsePrefix("0.0.0.0/8"), netip.PrefixFrom(DNSAddr, 32)} {
		if p.Overlaps(space) {
			return fmt.Errorf("fabric: site address space %s overlaps %s, which privlink reserves: %w", space, p, ErrInvalid)
		}
	}
	return nil
}

func (s *SiteSpec) validate() error {
	if err := CheckSiteName("site", s.Name); err != nil {
		return err
	}
	if err := CheckSiteSpace(s.Space); err != nil {
		return err
	}
	s.Space = s.Space.Masked()
	if err := checkInternetAddr(s.Public); err != nil {
		return err
	}
	seen := map[string]bool{}
	taken := map[netip.Addr]bool{SiteRouterAddr(s.Space): true, SiteDeviceAddr(s.Space): true}
	for _, h := range s.Hosts {
		if err := CheckSiteName("site host", h.Name); err != nil {
			return err
		}
		if !h.Address.Is4() || !s.Space.Contains(h.Address) || h.Address == s.Space.Addr() || h.Address == SiteLastAddr(s.Space) || taken[h.Address] || seen[h.Name] {
			return fmt.Errorf("fabric: site %s host %s: address %s: want a free host address of %s (not the router's or the device's), and one host per name: %w", s.Name, h.Name, h.Address, s.Space, ErrInvalid)
		}
		seen[h.Name], taken[h.Address] = true, true
	}
	return nil
}

// SiteRouterNamespace is the namespace of site's router.
func (f *Fabric) SiteRouterNamespace(site string) string { return f.NamespaceName(KindSite, site) }

// SiteDeviceNamespace is the namespace of site's VPN device, where its IKE
// daemon runs.
func (f *Fabric) SiteDeviceNamespace(site string) string {
	return f.NamespaceName(KindSiteDevice, site)
}

// SiteHostNamespace is the namespace of the host of site, for `privlink
// exec --site` and `ip netns exec`.
func (f *Fabric) SiteHostNamespace(site, host string) string {
	return f.NamespaceName(KindSiteHost, site+"."+host)
}

// EnsureSite converges a site: its router, its VPN device with its public
// address on the emulated internet (which it converges too), and exactly
// the hosts of spec (the namespaces of hosts no longer in it go).
func (f *Fabric) EnsureSite(spec SiteSpec) error {
	if err := spec.validate(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.ensureSite(spec); err != nil {
		return fmt.Errorf("fabric: site %s: %w", spec.Name, err)
	}
	return nil
}

func (f *Fabric) ensureSite(spec SiteSpec) error {
	inet, err := f.ensureInternet()
	if err != nil {
		return err
	}
	defer inet.close()
	forward := func() error { _, err := setSysctl("net/ipv4/ip_forward", "1"); return err }
	routerName := f.SiteRouterNamespace(spec.Name)
	router, _, err := f.ensureNS(routerName, forward)
	if err != nil {
		return err
	}
	defer router.close()
	deviceName := f.SiteDeviceNamespace(spec.Name)
	device, _, err := f.ensureNS(deviceName, forward)
	if err != nil {
		return err
	}
	defer device.close()
	routerAddr, deviceAddr := SiteRouterAddr(spec.Space), SiteDeviceAddr(spec.Space)

	// The device on the internet, as an internet host is.
	a4 := spec.Public.As4()
	inetLink := fmt.Sprintf("%s%02x%02x%02x%02x", siteDeviceLinkTag, a4[0], a4[1], a4[2], a4[3])
	il, eth0, replaced, err := ensureVethPair(inet, inetLink, device, nicLinkName, nil)
	if err != nil {
		return err
	}
	if replaced {
		f.log.Info("connected site device to the internet", "site", spec.Name, "address", spec.Public, "ns", deviceName)
	}
	if err := ensureAlias(inet, il, "site "+spec.Name+" device "+spec.Public.String()); err != nil {
		return err
	}
	if err := ensureUp(inet, il); err != nil {
		return err
	}
	if err := ensureHostRoute(inet, il, spec.Public); err != nil {
		return err
	}
	if err := ensureAddrs(device, eth0, []netip.Prefix{netip.PrefixFrom(spec.Public, 32)}, "", 0, allAddrs); err != nil {
		return err
	}
	if err := ensureUp(device, eth0); err != nil {
		return err
	}
	if err := ensureDefaultRoute(device, eth0, InternetGateway, true); err != nil {
		return err
	}

	// The office's internet access: what leaves the site for the internet
	// (not into a tunnel, which is ipsec0's) takes the device's address.
	if err := f.convergeTable(device, snatTable(SiteNATTable, nicLinkName, spec.Public, spec.Space,
		fmt.Sprintf("site %s: snat %s to %s", spec.Name, spec.Space, spec.Public))).err; err != nil {
		return err
	}

	// Router <-> device.
	wan, lan, _, err := ensureVethPair(router, siteWANLink, device, siteLANLink, nil)
	if err != nil {
		return err
	}
	if err := ensureAddrs(device, lan, []netip.Prefix{netip.PrefixFrom(deviceAddr, 32)}, "", 0, allAddrs); err != nil {
		return err
	}
	for _, step := range []func() error{
		func() error { return ensureUp(device, lan) },
		func() error { return ensureUp(router, wan) },
		func() error { return ensureGatewayRoute(device, lan, spec.Space, routerAddr, true) },
		func() error { return ensureDefaultRoute(router, wan, deviceAddr, true) },
		func() error {
			return ensureLoAddrs(router, map[string][]netip.Prefix{labelGateway: {netip.PrefixFrom(routerAddr, 32)}})
		},
	} {
		if err := step(); err != nil {
			return err
		}
	}

	// Hosts.
	dns := spec.DNS
	if len(dns) == 0 {
		dns = []netip.Addr{routerAddr}
	}
	want := map[string]bool{}
	for _, h := range spec.Hosts {
		name := f.SiteHostNamespace(spec.Name, h.Name)
		want[name] = true
		if err := f.ensureSiteHost(router, spec, h, name, dns); err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
	}
	hosts, err := f.siteHosts(spec.Name)
	if err != nil {
		return err
	}
	for _, name := range hosts {
		if !want[name] {
			if err := f.deleteNS(name); err != nil {
				return err
			}
		}
	}
	if err := waitLinks(f, inet, inetLink, device, nicLinkName); err != nil {
		return err
	}
	return waitLinks(f, router, siteWANLink, device, siteLANLink)
}

func (f *Fabric) ensureSiteHost(router *nsRef, spec SiteSpec, h SiteHost, name string, dns []netip.Addr) error {
	host, _, err := f.ensureNS(name, nil)
	if err != nil {
		return err
	}
	defer host.close()
	rlName := hashedLinkName(siteHostLinkTag, spec.Name+"."+h.Name)
	rl, eth0, _, err := ensureVethPair(router, rlName, host, nicLinkName, nil)
	if err != nil {
		return err
	}
	for _, step := range []func() error{
		func() error { return ensureAlias(router, rl, "site host "+h.Name) },
		func() error { return router.do(func() error { return linkSysctls(rlName) }) },
		func() error { return ensureUp(router, rl) },
		func() error { return ensureHostRoute(router, rl, h.Address) },
		func() error {
			return ensureAddrs(host, eth0, []netip.Prefix{netip.PrefixFrom(h.Address, spec.Space.Bits())}, "", 0, allAddrs)
		},
		func() error { return ensureUp(host, eth0) },
		func() error { return ensureDefaultRoute(host, eth0, SiteRouterAddr(spec.Space), false) },
		func() error { return writeResolvConf(name, "site "+spec.Name, dns...) },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return waitLinks(f, router, rlName, host, nicLinkName)
}

// siteHosts lists the host namespaces of site.
func (f *Fabric) siteHosts(site string) ([]string, error) {
	names, err := f.ListOwned()
	if err != nil {
		return nil, err
	}
	prefix := f.SiteHostNamespace(site, "")
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out, nil
}

// DeleteSite removes every namespace of site: its hosts, its router and
// its device (and with the device its link on the internet router).
// Deleting a site that does not exist is not an error. The IKE daemon of
// the device is the caller's to stop first.
func (f *Fabric) DeleteSite(site string) error {
	if err := CheckSiteName("site", site); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	hosts, err := f.siteHosts(site)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range append(hosts, f.SiteRouterNamespace(site), f.SiteDeviceNamespace(site)) {
		errs = append(errs, f.deleteNS(name))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("fabric: delete site %s: %w", site, err)
	}
	return nil
}

// IsSiteNamespace reports whether name is a namespace of a site (its
// router, device or a host), whose owner is the sites' controller.
func (f *Fabric) IsSiteNamespace(name string) bool {
	_, ok := f.siteOf(name)
	return ok
}

func (f *Fabric) siteOf(name string) (string, bool) {
	for _, k := range []Kind{KindSite, KindSiteDevice, KindSiteHost} {
		if rest, ok := strings.CutPrefix(name, f.NamespaceName(k, "")); ok && rest != "" {
			if k == KindSiteHost {
				rest, _, _ = strings.Cut(rest, ".")
			}
			return rest, CheckSiteName("site", rest) == nil
		}
	}
	return "", false
}

// Sites lists the sites that have at least one namespace, sorted.
func (f *Fabric) Sites() ([]string, error) {
	names, err := f.ListOwned()
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, n := range names {
		if s, ok := f.siteOf(n); ok {
			set[s] = true
		}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out, nil
}

// DialFrom connects from inside the namespace nsName, from the local
// address local (which must be an address of that namespace), to address
// (an IP literal and port); network is "udp4" or "tcp4". A site's DNS
// forwards with it from the router's address, so the answer comes back
// across the tunnel whose traffic selectors hold that address.
func (f *Fabric) DialFrom(ctx context.Context, nsName, network string, local netip.Addr, address string) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(address); err != nil {
		return nil, fmt.Errorf("fabric: dial %s from %s: want an IP literal and port: %w", address, nsName, ErrInvalid)
	}
	d := net.Dialer{}
	switch network {
	case "udp4":
		d.LocalAddr = &net.UDPAddr{IP: local.AsSlice()}
	case "tcp4":
		d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
	default:
		return nil, fmt.Errorf("fabric: dial from %s: network %q: want udp4 or tcp4: %w", nsName, network, ErrInvalid)
	}
	var c net.Conn
	err := f.Do(nsName, func() error {
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}
