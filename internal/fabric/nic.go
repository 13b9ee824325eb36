package fabric

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

const (
	// nicLinkTag starts the name of every router-side veth toward a NIC; the
	// router's forward filter matches it (iifname/oifname "n*"), so no other
	// link in a router namespace may have a name starting with it.
	nicLinkTag = "n"
	// nicLinkName is the NIC's own interface.
	nicLinkName = "eth0"
	// markerPrefix starts the alias the fabric puts on lo of a NIC namespace
	// to record which network the NIC belongs to. It lives as long as the
	// namespace, whatever happens to eth0.
	markerPrefix = "privlink nic network="
)

// NICSpec is the desired state of a network interface in a virtual network.
type NICSpec struct {
	// ID is the NIC's stable short key (1-64 of [A-Za-z0-9_.-]), unique in
	// the Fabric; the namespace is NamespaceName(KindNIC, ID).
	ID string
	// Network is the ID of the NIC's virtual network, which EnsureNetwork
	// must have created.
	Network string
	// Address is the NIC's address with its subnet's length (10.0.1.4/24).
	Address netip.Prefix
	// Gateway is the default gateway; the zero value means the subnet's,
	// SubnetGateway(Address).
	Gateway netip.Addr
	// MAC is eth0's hardware address; nil lets the kernel choose one (and a
	// later Ensure keeps it).
	MAC net.HardwareAddr
	// DNS are the DNS servers the NIC's resolv.conf names (its
	// dnsSettings.dnsServers, e.g. a DNS resolver's inbound endpoint);
	// none means the network's own, DNSAddr.
	DNS []netip.Addr
}

func (s *NICSpec) validate() error {
	if err := checkID("NIC", s.ID); err != nil {
		return err
	}
	if err := checkID("network", s.Network); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("fabric: NIC %s: %s: %w", s.ID, fmt.Sprintf(format, args...), ErrInvalid)
	}
	a := s.Address
	if !a.IsValid() || !a.Addr().Is4() || a.Bits() > 30 || a.Bits() < 1 || a.Addr() == a.Masked().Addr() {
		return bad("address %s: want an IPv4 host address with its subnet's length (/30 or larger)", a)
	}
	if !s.Gateway.IsValid() {
		s.Gateway = SubnetGateway(a)
	}
	if !s.Gateway.Is4() || !a.Masked().Contains(s.Gateway) || s.Gateway == a.Addr() {
		return bad("gateway %s: want another address of %s", s.Gateway, a.Masked())
	}
	if len(s.MAC) != 0 && (len(s.MAC) != 6 || s.MAC[0]&1 != 0) {
		return bad("MAC %s: want a unicast Ethernet address", s.MAC)
	}
	return nil
}

// EnsureNIC converges a NIC: its namespace with eth0 up, holding exactly
// spec.Address, the default route via the gateway, and eth0 the end of a veth
// pair whose other end sits in the network's router namespace (named from
// the NIC's ID, up, proxy ARP on, and the only route to the NIC's address,
// /32). A pair that is broken, half gone or leads to another network is
// replaced. It also writes /etc/netns/<ns>/resolv.conf naming the network's
// DNS. The network must exist (ErrNotFound otherwise).
//
// NICs of one network reach each other through the router, in the same
// subnet too (the router answers ARP for the others by proxy); NICs of
// different networks have no path between them.
func (f *Fabric) EnsureNIC(spec NICSpec) error {
	if err := spec.validate(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.ensureNIC(spec); err != nil {
		return fmt.Errorf("fabric: NIC %s: %w", spec.ID, err)
	}
	return nil
}

func (f *Fabric) ensureNIC(spec NICSpec) error {
	router, err := f.open(f.NamespaceName(KindNetwork, spec.Network), nil)
	if err != nil {
		return fmt.Errorf("network %s: %w", spec.Network, err)
	}
	defer router.close()
	name := f.NamespaceName(KindNIC, spec.ID)
	nic, _, err := f.ensureNS(name, nil)
	if err != nil {
		return err
	}
	defer nic.close()

	lo, err := linkByName(nic, "lo")
	if err != nil {
		return err
	}
	if err := ensureAlias(nic, lo, markerPrefix+spec.Network+" id="+spec.ID); err != nil {
		return err
	}

	rlName := RouterLinkName(spec.ID)
	rl, eth0, replaced, err := ensureVethPair(router, rlName, nic, nicLinkName, spec.MAC)
	if err != nil {
		return err
	}
	if replaced {
		f.log.Info("connected NIC to router", "nic", spec.ID, "network", spec.Network, "ns", name, "router_link", rlName)
	}

	// Router side.
	if err := ensureAlias(router, rl, "nic "+spec.ID); err != nil {
		return err
	}
	if err := router.do(func() error { return linkSysctls(rlName) }); err != nil {
		return err
	}
	if err := ensureUp(router, rl); err != nil {
		return err
	}
	if err := ensureHostRoute(router, rl, spec.Address.Addr()); err != nil {
		return err
	}

	// NIC side.
	if changed, err := ensureMAC(nic, eth0, spec.MAC); err != nil {
		return err
	} else if changed {
		if err := flushNeighbors(router, rl); err != nil {
			return err
		}
	}
	if err := ensureAddrs(nic, eth0, []netip.Prefix{spec.Address}, "", 0, allAddrs); err != nil {
		return err
	}
	if err := ensureUp(nic, eth0); err != nil {
		return err
	}
	if err := ensureDefaultRoute(nic, eth0, spec.Gateway, false); err != nil {
		return err
	}
	if err := waitLinks(f, router, rlName, nic, nicLinkName); err != nil {
		return err
	}
	dns := spec.DNS
	if len(dns) == 0 {
		dns = []netip.Addr{DNSAddr}
	}
	if err := writeResolvConf(name, "virtual network "+spec.Network, dns...); err != nil {
		return err
	}
	f.log.Debug("NIC converged", "nic", spec.ID, "network", spec.Network, "ns", name, "address", spec.Address)
	return nil
}

// RouterLinkName returns the name of the veth end, in the router namespace of
// the NIC's network, that leads to the NIC with the given ID ("n" and 12 hex
// digits; its alias is "nic <id>").
func RouterLinkName(nicID string) string {
	return hashedLinkName(nicLinkTag, nicID)
}

// linkSysctls turns proxy ARP on for a router-side link, answering at once
// (the default proxy_delay holds broadcast requests up to 0.8 s). It must
// run inside the router's namespace.
func linkSysctls(link string) error {
	if _, err := setSysctl("net/ipv4/conf/"+link+"/proxy_arp", "1"); err != nil {
		return err
	}
	_, err := setSysctl("net/ipv4/neigh/"+link+"/proxy_delay", "0")
	return err
}

// DeleteNIC removes a NIC's namespace, its veth pair (so the router forgets
// it even while a process still holds the namespace) and its /etc/netns
// directory. Deleting a NIC that does not exist is not an error.
func (f *Fabric) DeleteNIC(id string) error {
	if err := checkID("NIC", id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.deleteNS(f.NamespaceName(KindNIC, id)); err != nil {
		return fmt.Errorf("fabric: delete NIC %s: %w", id, err)
	}
	return nil
}

// nicNetwork reads the network ID from the marker of NIC namespace name.
func (f *Fabric) nicNetwork(name string) (string, error) {
	r, err := f.open(name, nil)
	if err != nil {
		return "", err
	}
	defer r.close()
	lo, err := linkByName(r, "lo")
	if err != nil || lo == nil {
		return "", err
	}
	rest, ok := strings.CutPrefix(lo.Attrs().Alias, markerPrefix)
	if !ok {
		return "", nil
	}
	network, _, _ := strings.Cut(rest, " ")
	return network, nil
}
