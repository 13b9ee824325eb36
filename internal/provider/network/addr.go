package network

import (
	"net/netip"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
)

// Address rules and private address allocation.
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
