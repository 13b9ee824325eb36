package network

import (
	"net/netip"
	"strings"
	"testing"
)

func TestReservedIn(t *testing.T) {
	p := netip.MustParsePrefix("192.168.0.128/27")
	for a, want := range map[string]bool{
		"192.168.0.128": true, "192.168.0.129": true, "192.168.0.130": true, "192.168.0.131": true,
		"192.168.0.132": false, "192.168.0.158": false, "192.168.0.159": true,
	} {
		if got := reservedIn(p, netip.MustParseAddr(a)); got != want {
			t.Errorf("reservedIn(%s, %s) = %v, want %v", p, a, got, want)
		}
	}
}

func TestLastAddr(t *testing.T) {
	for p, want := range map[string]string{
		"10.0.0.0/8": "10.255.255.255", "10.0.1.0/24": "10.0.1.255", "10.0.0.8/29": "10.0.0.15",
		"10.0.0.4/32": "10.0.0.4", "0.0.0.0/0": "255.255.255.255", "fd00::/64": "fd00::ffff:ffff:ffff:ffff",
	} {
		if got := lastAddr(netip.MustParsePrefix(p)).String(); got != want {
			t.Errorf("lastAddr(%s) = %s, want %s", p, got, want)
		}
	}
}

func TestLowestFree(t *testing.T) {
	ps := []netip.Prefix{netip.MustParsePrefix("10.0.0.8/29"), netip.MustParsePrefix("10.0.1.0/29")}
	used := map[netip.Addr]string{}
	var got []string
	for {
		a, ok := lowestFree(ps, used)
		if !ok {
			break
		}
		used[a] = "x"
		got = append(got, a.String())
	}
	want := "10.0.0.12 10.0.0.13 10.0.0.14 10.0.1.4 10.0.1.5 10.0.1.6"
	if s := strings.Join(got, " "); s != want {
		t.Errorf("allocation order = %s, want %s", s, want)
	}
	if n := usableV4(ps); n != 6 {
		t.Errorf("usableV4 = %d, want 6", n)
	}
	// IPv6 prefixes hand out nothing.
	if _, ok := lowestFree([]netip.Prefix{netip.MustParsePrefix("fd00::/64")}, nil); ok {
		t.Error("an IPv6 prefix handed out an address")
	}
}

func TestParsePrefix(t *testing.T) {
	for s, code := range map[string]string{
		"10.0.0.0/16": "", " 10.0.0.0/16 ": "", "10.0.0.1/16": codeInvalidCIDR, "10.0.0/16": codeInvalidPrefixFormat,
		"10.0.0.0": codeInvalidPrefixFormat, "10.0.0.0/33": codeInvalidPrefixFormat, "::ffff:10.0.0.0/120": codeInvalidPrefixFormat,
		"fd00::/48": "", "fd00::1/48": codeInvalidCIDR,
	} {
		_, err := parsePrefix(s, "t", "r")
		if (code == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), code)) {
			t.Errorf("parsePrefix(%q) = %v, want %s", s, err, code)
		}
	}
}

func TestValidPortRange(t *testing.T) {
	for s, want := range map[string]bool{
		"*": true, "0": true, "65535": true, "80-443": true, "443-443": true,
		"65536": false, "-1": false, "443-80": false, "80,443": false, "": false, "08": false, "1-": false, "a": false, "1-2-3": false,
	} {
		if got := validPortRange(s); got != want {
			t.Errorf("validPortRange(%q) = %v, want %v", s, got, want)
		}
	}
}
