package fabric

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
)

// Labels of the addresses the fabric puts on lo of a router namespace. The
// fabric converges only addresses carrying its labels, so other code may put
// addresses of its own on lo (with other labels) without the next Ensure
// removing them.
const (
	labelDNS      = "lo:dns"
	labelGateway  = "lo:gw"
	labelEndpoint = "lo:pe"
	labelDNSIn    = "lo:dnsin"
)

// NetworkSpec is the desired state of a virtual network's router.
type NetworkSpec struct {
	// ID is the network's stable short key (1-64 of [A-Za-z0-9_.-]); the
	// router namespace is NamespaceName(KindNetwork, ID).
	ID string
	// Subnets are the network's subnets (IPv4, masked, /29 or larger). The
	// router answers on each one's gateway, SubnetGateway(subnet).
	Subnets []netip.Prefix
	// Endpoints are the private endpoint addresses in the network: they
	// live on the router's lo (so the router answers ARP for them in their
	// subnet) and the data path translates traffic to them.
	Endpoints []netip.Addr
	// DNS are further addresses in the network's subnets where the
	// network's DNS answers (DNS resolver inbound endpoints): like
	// endpoints they live on the router's lo, so anything that reaches
	// the subnet reaches them.
	DNS []netip.Addr
	// Outbound is the network's default outbound address (in
	// 198.18.0.0/15, unique on the emulated internet): its NICs reach the
	// internet translated to it (see OutboundLinkName). The zero value
	// means no way out to the internet.
	Outbound netip.Addr
	// Peers are the networks peered with this one (peering.go).
	Peers []PeerSpec
}

// SubnetGateway returns the gateway address of subnet p: by Azure's rule, the
// subnet's network address plus one (10.0.1.1 for 10.0.1.0/24).
func SubnetGateway(p netip.Prefix) netip.Addr {
	return p.Masked().Addr().Next()
}

func (s NetworkSpec) validate() error {
	if err := checkID("network", s.ID); err != nil {
		return err
	}
	for _, p := range s.Subnets {
		if !p.IsValid() || !p.Addr().Is4() || p != p.Masked() || p.Bits() > 29 {
			return fmt.Errorf("fabric: network %s: subnet %s: want a masked IPv4 prefix of /29 or larger: %w", s.ID, p, ErrInvalid)
		}
	}
	for _, a := range slices.Concat(s.Endpoints, s.DNS) {
		inside := false
		for _, p := range s.Subnets {
			inside = inside || p.Contains(a)
		}
		if !a.Is4() || !inside {
			return fmt.Errorf("fabric: network %s: endpoint %s: want an IPv4 address inside one of the subnets: %w", s.ID, a, ErrInvalid)
		}
	}
	if s.Outbound.IsValid() {
		if err := checkInternetAddr(s.Outbound); err != nil {
			return fmt.Errorf("fabric: network %s: outbound address: %w", s.ID, err)
		}
	}
	return nil
}

// EnsureNetwork converges the router namespace of a virtual network: IPv4
// forwarding on, the network's DNS address (168.63.129.16/32), each
// subnet's gateway and each private endpoint address (as /32) on lo, gateways of subnets no longer in the spec
// removed, the forward filter of RouterFilter installed, and the default
// outbound link to the internet router as spec.Outbound says (see
// OutboundLinkName), and the peering links of spec.Peers (peering.go). It
// leaves the network's NICs alone.
func (f *Fabric) EnsureNetwork(spec NetworkSpec) error {
	_, err := f.EnsureNetworkLinked(spec)
	return err
}

// EnsureNetworkLinked is EnsureNetwork that also returns the peers
// (PeerSpec.ID) whose peering link it created or re-created: their
// routers lost their routes over the old link (or never had them) and
// need an Ensure of their own.
func (f *Fabric) EnsureNetworkLinked(spec NetworkSpec) (linked []string, err error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	name := f.NamespaceName(KindNetwork, spec.ID)
	r, _, err := f.ensureNS(name, func() error {
		_, err := setSysctl("net/ipv4/ip_forward", "1")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fabric: network %s: %w", spec.ID, err)
	}
	defer r.close()
	var gateways []netip.Prefix
	for _, p := range spec.Subnets {
		gateways = append(gateways, netip.PrefixFrom(SubnetGateway(p), 32))
	}
	var endpoints []netip.Prefix
	for _, a := range spec.Endpoints {
		endpoints = append(endpoints, netip.PrefixFrom(a, 32))
	}
	var dnsIn []netip.Prefix
	for _, a := range spec.DNS {
		dnsIn = append(dnsIn, netip.PrefixFrom(a, 32))
	}
	if err := ensureLoAddrs(r, map[string][]netip.Prefix{
		labelDNS:      {netip.PrefixFrom(DNSAddr, 32)},
		labelGateway:  gateways,
		labelEndpoint: endpoints,
		labelDNSIn:    dnsIn,
	}); err != nil {
		return nil, fmt.Errorf("fabric: network %s: %w", spec.ID, err)
	}
	if err := ensureRouterFilter(r); err != nil {
		return nil, fmt.Errorf("fabric: network %s: %w", spec.ID, err)
	}
	if err := f.ensureOutbound(r, spec); err != nil {
		return nil, fmt.Errorf("fabric: network %s: default outbound: %w", spec.ID, err)
	}
	if linked, err = f.ensurePeers(r, spec); err != nil {
		return nil, fmt.Errorf("fabric: network %s: peering: %w", spec.ID, err)
	}
	f.log.Debug("network converged", "network", spec.ID, "ns", name, "subnets", len(spec.Subnets))
	return linked, nil
}

// ensureLoAddrs converges the addresses of lo in r's namespace: for each
// label, exactly the given prefixes carry it.
func ensureLoAddrs(r *nsRef, byLabel map[string][]netip.Prefix) error {
	lo, err := linkByName(r, "lo")
	if err == nil && lo == nil {
		err = fmt.Errorf("namespace %s: no lo", r.name)
	}
	if err != nil {
		return err
	}
	for label, want := range byLabel {
		owned := func(a netlink.Addr) bool { return a.Label == label }
		if err := ensureAddrs(r, lo, want, label, 0, owned); err != nil {
			return err
		}
	}
	return nil
}

// DeleteNetwork removes a virtual network: every NIC namespace of the network
// and the router namespace. Deleting a network that does not exist is not an
// error.
func (f *Fabric) DeleteNetwork(id string) error {
	if err := checkID("network", id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	nics, err := f.nicsOf(id)
	if err != nil {
		return fmt.Errorf("fabric: delete network %s: %w", id, err)
	}
	var errs []error
	for _, name := range nics {
		errs = append(errs, f.deleteNS(name))
	}
	errs = append(errs, f.deleteNS(f.NamespaceName(KindNetwork, id)))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("fabric: delete network %s: %w", id, err)
	}
	return nil
}

// nicsOf returns the names of the NIC namespaces whose marker names network
// id.
func (f *Fabric) nicsOf(id string) ([]string, error) {
	names, err := f.ListOwned()
	if err != nil {
		return nil, err
	}
	nicPrefix := f.NamespaceName(KindNIC, "")
	var out []string
	for _, name := range names {
		if !strings.HasPrefix(name, nicPrefix) {
			continue
		}
		network, err := f.nicNetwork(name)
		if errors.Is(err, ErrNotFound) || errors.Is(err, errStaleFile) {
			continue // gone meanwhile, or a stale entry RemoveStale will take
		}
		if err != nil {
			return nil, err
		}
		if network == id {
			out = append(out, name)
		}
	}
	return out, nil
}
