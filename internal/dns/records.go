package dns

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"
)

// RecordType is the type of a record set, spelt as in ARM paths.
type RecordType string

// Record types of Azure private DNS.
const (
	TypeA     RecordType = "A"
	TypeAAAA  RecordType = "AAAA"
	TypeCNAME RecordType = "CNAME"
	TypeMX    RecordType = "MX"
	TypePTR   RecordType = "PTR"
	TypeSOA   RecordType = "SOA"
	TypeSRV   RecordType = "SRV"
	TypeTXT   RecordType = "TXT"
)

var rrTypes = map[RecordType]uint16{
	TypeA: mdns.TypeA, TypeAAAA: mdns.TypeAAAA, TypeCNAME: mdns.TypeCNAME, TypeMX: mdns.TypeMX,
	TypePTR: mdns.TypePTR, TypeSOA: mdns.TypeSOA, TypeSRV: mdns.TypeSRV, TypeTXT: mdns.TypeTXT,
}

// rrType maps a record type, in any case, to its DNS type.
func rrType(t RecordType) (uint16, bool) {
	v, ok := rrTypes[RecordType(strings.ToUpper(string(t)))]
	return v, ok
}

// RecordSet is one record set: all records of one type at one name, as an
// ARM record set holds them. Only the field of Type may hold data. A set
// with no records makes its name exist (queries get NODATA) and answers
// nothing.
type RecordSet struct {
	// Name is relative to the zone ("@" or "" for the apex, "srv1",
	// "*.apps") in a private zone, and absolute (trailing dot optional) in
	// PutPublic. Names compare case-insensitively.
	Name string
	// Type is the record type; it compares case-insensitively.
	Type RecordType
	// TTL is the time to live of every record of the set, in seconds.
	TTL uint32

	A     []netip.Addr // IPv4 addresses
	AAAA  []netip.Addr // IPv6 addresses
	CNAME string       // canonical name (absolute; trailing dot optional)
	MX    []MX
	PTR   []string // absolute names
	SRV   []SRV
	TXT   [][]string // records of strings; strings longer than 255 bytes are split
	SOA   *SOA       // only at the apex of a private zone
}

// MX is one mail exchange record.
type MX struct {
	Preference uint16
	Exchange   string // absolute name
}

// SRV is one service record.
type SRV struct {
	Priority, Weight, Port uint16
	Target                 string // absolute name
}

// SOA is the start of authority of a private zone. A zone without one
// answers negative queries with Azure's default SOA.
type SOA struct {
	Host, Email                                string // absolute names
	Serial, Refresh, Retry, Expire, MinimumTTL uint32
}

// defaultSOA is the SOA Azure gives a new private zone.
var defaultSOA = SOA{
	Host: "azureprivatedns.net", Email: "azureprivatedns-host.microsoft.com",
	Serial: 1, Refresh: 3600, Retry: 300, Expire: 2419200, MinimumTTL: 10,
}

const defaultSOATTL = 3600

// maxTXTString is the longest character-string in a TXT record (RFC 1035).
const maxTXTString = 255

// maxRdata is the largest record data a record can carry.
const maxRdata = 65535

// setKey identifies a record set inside a zone or the public names: its
// owner relative to the origin (lower case, "" for the apex, no trailing
// dot) and its DNS type.
type setKey struct {
	rel string
	typ uint16
}

// normSet is a validated record set.
type normSet struct {
	key setKey
	src RecordSet // names canonical
}

// normalizeSet validates rs and puts its names in canonical form. abs says
// rs.Name is absolute (public names).
func normalizeSet(rs RecordSet, abs bool) (normSet, error) {
	typ, ok := rrType(rs.Type)
	if !ok {
		return normSet{}, fmt.Errorf("record set %q: unknown type %q", rs.Name, rs.Type)
	}
	rs.Type = RecordType(strings.ToUpper(string(rs.Type)))
	var rel string
	var err error
	if abs {
		rel, err = absName(rs.Name)
	} else {
		rel, err = relName(rs.Name)
	}
	if err != nil {
		return normSet{}, fmt.Errorf("%s record set: %w", rs.Type, err)
	}
	if err := normalizeData(&rs, rel, abs); err != nil {
		return normSet{}, fmt.Errorf("%s record set %q: %w", rs.Type, rs.Name, err)
	}
	return normSet{key: setKey{rel, typ}, src: rs}, nil
}

// normalizeData checks that only the data field of rs.Type is set, that it
// is well formed, and canonicalizes the names in it.
func normalizeData(rs *RecordSet, rel string, abs bool) error {
	present := map[RecordType]bool{
		TypeA: len(rs.A) > 0, TypeAAAA: len(rs.AAAA) > 0, TypeCNAME: rs.CNAME != "",
		TypeMX: len(rs.MX) > 0, TypePTR: len(rs.PTR) > 0, TypeSRV: len(rs.SRV) > 0,
		TypeTXT: len(rs.TXT) > 0, TypeSOA: rs.SOA != nil,
	}
	for t, p := range present {
		if p && t != rs.Type {
			return fmt.Errorf("holds %s data", t)
		}
	}
	// The catalog keeps the set to recompile it: it must not share the
	// caller's slices.
	rs.A, rs.AAAA = slices.Clone(rs.A), slices.Clone(rs.AAAA)
	rs.MX, rs.PTR, rs.SRV = slices.Clone(rs.MX), slices.Clone(rs.PTR), slices.Clone(rs.SRV)
	rs.TXT = slices.Clone(rs.TXT)
	for i := range rs.TXT {
		rs.TXT[i] = slices.Clone(rs.TXT[i])
	}
	var err error
	switch rs.Type {
	case TypeA:
		for _, a := range rs.A {
			if !a.Unmap().Is4() {
				return fmt.Errorf("%v is not an IPv4 address", a)
			}
		}
	case TypeAAAA:
		for _, a := range rs.AAAA {
			if !a.Is6() || a.Zone() != "" {
				return fmt.Errorf("%v is not an IPv6 address", a)
			}
		}
	case TypeCNAME:
		if rs.CNAME != "" {
			rs.CNAME, err = targetName(rs.CNAME)
		}
	case TypeMX:
		for i := range rs.MX {
			if rs.MX[i].Exchange, err = targetName(rs.MX[i].Exchange); err != nil {
				break
			}
		}
	case TypePTR:
		for i := range rs.PTR {
			if rs.PTR[i], err = targetName(rs.PTR[i]); err != nil {
				break
			}
		}
	case TypeSRV:
		for i := range rs.SRV {
			if rs.SRV[i].Target, err = targetName(rs.SRV[i].Target); err != nil {
				break
			}
		}
	case TypeTXT:
		for _, txt := range rs.TXT {
			n := 0
			for _, s := range txt {
				n += len(s) + len(s)/maxTXTString + 1 // upper bound of the packed strings
			}
			if n > maxRdata {
				return fmt.Errorf("a TXT record of %d bytes does not fit in a DNS record", n)
			}
		}
	case TypeSOA:
		if abs || rel != "" {
			return errors.New("an SOA record set must be at the apex of a private zone")
		}
		soa := *rs.SOA
		if soa.Host, err = targetName(soa.Host); err == nil {
			soa.Email, err = targetName(soa.Email)
		}
		rs.SOA = &soa
	}
	return err
}

// compile turns a record set into resource records owned by owner (an
// absolute canonical name).
func compile(owner string, typ uint16, rs RecordSet) []mdns.RR {
	hdr := mdns.RR_Header{Name: owner, Rrtype: typ, Class: mdns.ClassINET, Ttl: rs.TTL}
	var rrs []mdns.RR
	switch typ {
	case mdns.TypeA:
		for _, a := range rs.A {
			rrs = append(rrs, &mdns.A{Hdr: hdr, A: a.Unmap().AsSlice()})
		}
	case mdns.TypeAAAA:
		for _, a := range rs.AAAA {
			b := a.As16()
			rrs = append(rrs, &mdns.AAAA{Hdr: hdr, AAAA: b[:]})
		}
	case mdns.TypeCNAME:
		if rs.CNAME != "" {
			rrs = append(rrs, &mdns.CNAME{Hdr: hdr, Target: rs.CNAME})
		}
	case mdns.TypeMX:
		for _, m := range rs.MX {
			rrs = append(rrs, &mdns.MX{Hdr: hdr, Preference: m.Preference, Mx: m.Exchange})
		}
	case mdns.TypePTR:
		for _, p := range rs.PTR {
			rrs = append(rrs, &mdns.PTR{Hdr: hdr, Ptr: p})
		}
	case mdns.TypeSRV:
		for _, s := range rs.SRV {
			rrs = append(rrs, &mdns.SRV{Hdr: hdr, Priority: s.Priority, Weight: s.Weight, Port: s.Port, Target: s.Target})
		}
	case mdns.TypeTXT:
		for _, t := range rs.TXT {
			rrs = append(rrs, &mdns.TXT{Hdr: hdr, Txt: txtStrings(t)})
		}
	case mdns.TypeSOA:
		if s := rs.SOA; s != nil {
			rrs = append(rrs, soaRR(owner, rs.TTL, *s))
		}
	}
	return rrs
}

func soaRR(owner string, ttl uint32, s SOA) *mdns.SOA {
	return &mdns.SOA{
		Hdr: mdns.RR_Header{Name: owner, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: ttl},
		Ns:  s.Host, Mbox: s.Email, Serial: s.Serial,
		Refresh: s.Refresh, Retry: s.Retry, Expire: s.Expire, Minttl: s.MinimumTTL,
	}
}

// negativeSOA is the SOA that goes in the authority section of a negative
// answer: its TTL is the smaller of the SOA's TTL and its minimum (RFC 2308).
func negativeSOA(owner string, set *RecordSet) *mdns.SOA {
	soa, ttl := defaultSOA, uint32(defaultSOATTL)
	if set != nil && set.SOA != nil {
		soa, ttl = *set.SOA, set.TTL
	} else {
		soa.Host, soa.Email = mdns.Fqdn(soa.Host), mdns.Fqdn(soa.Email)
	}
	return soaRR(owner, min(ttl, soa.MinimumTTL), soa)
}

// txtStrings turns raw TXT values into miekg/dns's presentation form
// (backslashes escaped), splitting values longer than 255 bytes. A record
// without strings gets one empty string.
func txtStrings(vals []string) []string {
	var out []string
	for _, v := range vals {
		for {
			chunk := v[:min(len(v), maxTXTString)]
			out = append(out, strings.ReplaceAll(chunk, `\`, `\\`))
			v = v[len(chunk):]
			if v == "" {
				break
			}
		}
	}
	if len(out) == 0 {
		out = []string{""}
	}
	return out
}

// zoneName validates a zone name and returns it canonical: lower case, with
// the trailing dot.
func zoneName(name string) (string, error) {
	n := mdns.CanonicalName(name)
	if n == "." {
		return "", errors.New("the root cannot be a private zone")
	}
	if _, ok := mdns.IsDomainName(n); !ok {
		return "", fmt.Errorf("invalid zone name %q", name)
	}
	return n, nil
}

// relName validates a record set name relative to its zone and returns its
// key: lower case, without a trailing dot, "" for the apex.
func relName(name string) (string, error) {
	if name == "" || name == "@" {
		return "", nil
	}
	if strings.HasSuffix(name, ".") || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("record set name %q must be relative to the zone", name)
	}
	if _, ok := mdns.IsDomainName(name); !ok {
		return "", fmt.Errorf("invalid record set name %q", name)
	}
	return strings.ToLower(name), nil
}

// absName validates an absolute public name and returns its key relative
// to the root: lower case, without the trailing dot.
func absName(name string) (string, error) {
	n := mdns.CanonicalName(name)
	if n == "." {
		return "", errors.New("the root cannot hold public records")
	}
	if _, ok := mdns.IsDomainName(n); !ok {
		return "", fmt.Errorf("invalid name %q", name)
	}
	return n[:len(n)-1], nil
}

// targetName validates a name inside record data and returns it canonical.
func targetName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty domain name in record data")
	}
	n := mdns.CanonicalName(name)
	if _, ok := mdns.IsDomainName(n); !ok {
		return "", fmt.Errorf("invalid domain name %q in record data", name)
	}
	return n, nil
}
