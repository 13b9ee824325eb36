package network

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
)

// Address rules and private address allocation: the one place NICs and
// private endpoints get their private addresses (allocate) and MAC
// addresses (macFor).
//
// Allocation has no records of its own: the addresses in use in a subnet
// are exactly the privateIPAddress values of the NIC ipConfigurations that
// reference it, read from the NIC documents inside the store transaction
// that writes the new NIC. A serializable transaction therefore never hands
// out an address twice, and deleting a NIC, a subnet, a virtual network or
// a whole resource group frees the addresses with the documents: nothing
// can leak.

// minSubnetBitsV4 is Azure's smallest IPv4 subnet: a /29 (three usable
// addresses once the five reserved ones are taken off).
const minSubnetBitsV4 = 29

// subnetBitsV6 is the only IPv6 subnet size Azure accepts.
const subnetBitsV6 = 64

// reservedV4 are the ranges no IPv4 address space may overlap: Azure's
// list (loopback, link-local, multicast, broadcast, the platform's DNS and
// health-probe address) and "this network".
var reservedV4 = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("255.255.255.255/32"),
	netip.MustParsePrefix("168.63.129.16/32"),
}

// parsePrefix parses an address prefix the way Azure checks one: text that
// is not CIDR is InvalidAddressPrefixFormat, an address with host bits set
// is InvalidCIDRNotation naming the prefix it should have been. resource is
// the ID Azure names in the message.
func parsePrefix(s, target, resource string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil || p.Addr().Is4In6() {
		return netip.Prefix{}, badRequest(codeInvalidPrefixFormat, target,
			"Address prefix %s of resource %s is not formatted correctly. It should follow CIDR notation, for example 10.0.0.0/24.", s, resource)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, badRequest(codeInvalidCIDR, target,
			"The address prefix %s in resource %s has an invalid CIDR notation. For the given prefix length, the address prefix should be %s.", s, resource, m)
	}
	return p, nil
}

// checkAddressSpace applies the rules of one address-space prefix.
func checkAddressSpace(p netip.Prefix, target string) error {
	if !p.Addr().Is4() {
		return nil
	}
	for _, r := range reservedV4 {
		if r.Overlaps(p) {
			return badRequest(codeInvalidPrefix, target,
				"The address space %s overlaps the reserved range %s. Azure reserves 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/4, 255.255.255.255/32 and 168.63.129.16/32; choose a private range such as 10.0.0.0/16.",
				p, r)
		}
	}
	return nil
}

// within reports whether inner lies entirely inside outer.
func within(inner, outer netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

// insideAny reports whether p lies inside one of space.
func insideAny(p netip.Prefix, space []netip.Prefix) bool {
	for _, s := range space {
		if within(p, s) {
			return true
		}
	}
	return false
}

// lastAddr is the highest address of p (the broadcast address of an IPv4
// subnet).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	host := len(b)*8 - p.Bits()
	for i := len(b) - 1; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// reservedIn reports whether a is one of the five addresses Azure keeps in
// every subnet: the network address, .1 (gateway), .2 and .3 (DNS), and the
// last (broadcast) address.
func reservedIn(p netip.Prefix, a netip.Addr) bool {
	first := p.Masked().Addr()
	if a == lastAddr(p) {
		return true
	}
	for i := 0; i < 4; i++ {
		if a == first {
			return true
		}
		first = first.Next()
	}
	return false
}

// subnetPrefixes returns a subnet's prefixes (addressPrefix or
// addressPrefixes). They were validated when the subnet was written.
func subnetPrefixes(s *armnetwork.Subnet) []netip.Prefix {
	if s == nil || s.Properties == nil {
		return nil
	}
	var raw []string
	if s.Properties.AddressPrefix != nil {
		raw = append(raw, *s.Properties.AddressPrefix)
	}
	for _, p := range s.Properties.AddressPrefixes {
		if p != nil {
			raw = append(raw, *p)
		}
	}
	var out []netip.Prefix
	for _, r := range raw {
		if p, err := netip.ParsePrefix(strings.TrimSpace(r)); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// v4 keeps the IPv4 prefixes.
func v4(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is4() {
			out = append(out, p)
		}
	}
	return out
}

// usableV4 counts the addresses a subnet can hand out.
func usableV4(ps []netip.Prefix) int {
	n := 0
	for _, p := range v4(ps) {
		if size := 1 << (32 - p.Bits()); size > 5 {
			n += size - 5
		}
	}
	return n
}

// lowestFree returns the lowest address of the subnet's IPv4 prefixes that
// is neither reserved nor in used.
func lowestFree(ps []netip.Prefix, used map[netip.Addr]string) (netip.Addr, bool) {
	for _, p := range v4(ps) {
		last := lastAddr(p)
		for a := p.Masked().Addr(); a.IsValid() && a.Compare(last) <= 0; a = a.Next() {
			if reservedIn(p, a) {
				continue
			}
			if _, taken := used[a]; !taken {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}

// containing returns the prefix of ps that holds a.
func containing(ps []netip.Prefix, a netip.Addr) (netip.Prefix, bool) {
	for _, p := range ps {
		if p.Contains(a) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// parseIPv4 parses a plain IPv4 address.
func parseIPv4(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}

// formatPrefixes renders prefixes for messages.
func formatPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// placed is an ipConfiguration whose subnet has been resolved.
type placed struct {
	spec     ipcSpec
	subnet   resolved
	prefixes []netip.Prefix
	cur      *armnetwork.InterfaceIPConfiguration // the stored one of that name, if any
	addr     netip.Addr
	asgs     []*armnetwork.ApplicationSecurityGroup
	pools    []*armnetwork.BackendAddressPool // the load balancer pools it joins
}

// name is the ipConfiguration's name, in the casing it was created with.
func (pl *placed) name() string {
	if pl.cur != nil && pl.cur.Name != nil {
		return *pl.cur.Name
	}
	return pl.spec.name
}

// allocate gives every ipConfiguration its address (owner is the document
// that holds them, child the type segment of their IDs under it: a NIC's
// "ipConfigurations", a load balancer's "frontendIPConfigurations"):
// Static ones the
// requested address (which must be inside the subnet, not reserved and not
// held by anyone else), Dynamic ones the address they already hold in the
// same subnet, or else the lowest free one. Statics are placed first so a
// Dynamic one never takes an address another ipConfiguration of the same
// request asks for.
func allocate(u *usage, owner arm.ResourceID, child string, ipcs []*placed) error {
	used := map[string]map[netip.Addr]string{} // by subnet
	usedIn := func(pl *placed) (map[netip.Addr]string, error) {
		k := lkey(pl.subnet.String())
		if used[k] == nil {
			m, err := u.usedAddresses(pl.subnet.String(), owner.String())
			if err != nil {
				return nil, err
			}
			used[k] = m
		}
		return used[k], nil
	}
	self := func(pl *placed) string { return owner.String() + "/" + child + "/" + pl.name() }
	for _, pl := range ipcs {
		if !pl.spec.static {
			continue
		}
		m, err := usedIn(pl)
		if err != nil {
			return err
		}
		target := pl.spec.path + ".properties.privateIPAddress"
		p, ok := containing(pl.prefixes, pl.spec.addr)
		switch {
		case !ok:
			return badRequest(codeIPNotInSubnet, target,
				"Private static IP address %s does not belong to the range of subnet %s (%s). Choose an address inside the subnet.",
				pl.spec.addr, pl.subnet, formatPrefixes(pl.prefixes))
		case reservedIn(p, pl.spec.addr):
			return badRequest(codeIPReserved, target,
				"Private static IP address %s falls within reserved IP range of subnet prefix %s: Azure keeps the network address, the next three and the broadcast address. Choose another address.",
				pl.spec.addr, p)
		}
		if holder, taken := m[pl.spec.addr]; taken {
			return badRequest(codeIPAllocated, target,
				"IP configuration %s is using the private IP address %s which is already allocated to resource %s. Choose a free address, or use Dynamic allocation.",
				self(pl), pl.spec.addr, holder)
		}
		pl.addr = pl.spec.addr
		m[pl.addr] = self(pl)
	}
	for _, pl := range ipcs {
		if pl.spec.static {
			continue
		}
		m, err := usedIn(pl)
		if err != nil {
			return err
		}
		if len(pl.prefixes) == 0 {
			return badRequest(codeNoIPv4Prefix, pl.spec.path+".properties.subnet.id",
				"Subnet %s has no IPv4 address prefix; privlink allocates IPv4 private addresses only. Add an IPv4 prefix to the subnet (addressPrefixes), or use a subnet that has one.",
				pl.subnet.ID.Name())
		}
		if a, ok := keptAddress(pl, m); ok {
			pl.addr = a
		} else if a, ok := lowestFree(pl.prefixes, m); ok {
			pl.addr = a
		} else {
			return badRequest(codeSubnetFull, pl.spec.path+".properties.subnet.id",
				"Subnet %s with address prefix %s does not have enough capacity for 1 IP addresses (%d usable addresses, all taken). Use a larger subnet or free an address.",
				pl.subnet.ID.Name(), formatPrefixes(pl.prefixes), usableV4(pl.prefixes))
		}
		m[pl.addr] = self(pl)
	}
	return nil
}

// keptAddress returns the address a Dynamic ipConfiguration already holds,
// when it stays valid: same subnet, inside it, not reserved, not taken.
func keptAddress(pl *placed, used map[netip.Addr]string) (netip.Addr, bool) {
	if pl.cur == nil || pl.cur.Properties == nil || pl.cur.Properties.Subnet == nil ||
		lkey(str(pl.cur.Properties.Subnet.ID)) != lkey(pl.subnet.String()) {
		return netip.Addr{}, false
	}
	a, ok := parseIPv4(str(pl.cur.Properties.PrivateIPAddress))
	if !ok {
		return netip.Addr{}, false
	}
	p, in := containing(pl.prefixes, a)
	if _, taken := used[a]; !in || taken || reservedIn(p, a) {
		return netip.Addr{}, false
	}
	return a, true
}

// macFor returns the NIC's MAC address: the one it has, or one derived
// from its ID (in the Microsoft OUI 00-0D-3A, as Azure's) that no other NIC
// of the subscription has.
func macFor(u *usage, id arm.ResourceID, cur *armnetwork.Interface) (string, error) {
	if cur != nil && cur.Properties != nil && str(cur.Properties.MacAddress) != "" {
		return *cur.Properties.MacAddress, nil
	}
	nics, err := u.NICSummaries()
	if err != nil {
		return "", err
	}
	taken := map[string]bool{}
	for _, n := range nics {
		if n.mac != "" && !strings.EqualFold(n.id, id.String()) {
			taken[strings.ToUpper(n.mac)] = true
		}
	}
	for i := 0; ; i++ {
		h := sha256.Sum256([]byte(lkey(id.String()) + "#" + strconv.Itoa(i)))
		mac := fmt.Sprintf("00-0D-3A-%02X-%02X-%02X", h[0], h[1], h[2])
		if !taken[mac] {
			return mac, nil
		}
	}
}

// usedAddresses returns the addresses held in a subnet, and by whom,
// leaving out those the document except holds (a NIC or a load balancer
// being rewritten).
func (u *usage) usedAddresses(subnet, except string) (map[netip.Addr]string, error) {
	refs, err := u.inSubnet(subnet)
	if err != nil {
		return nil, err
	}
	used := map[netip.Addr]string{}
	for _, r := range refs {
		if r.Address.IsValid() && !strings.EqualFold(r.NIC, except) {
			used[r.Address] = r.ID
		}
	}
	return used, nil
}
