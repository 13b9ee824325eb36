package privatedns

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/privlink/privlink/internal/arm"
)

// Validation and normalization of record set properties, per record type.

// recordFields names the record field of each type, for messages.
var recordFields = map[armprivatedns.RecordType]string{
	armprivatedns.RecordTypeA: "aRecords", armprivatedns.RecordTypeAAAA: "aaaaRecords",
	armprivatedns.RecordTypeCNAME: "cnameRecord", armprivatedns.RecordTypeMX: "mxRecords",
	armprivatedns.RecordTypePTR: "ptrRecords", armprivatedns.RecordTypeSOA: "soaRecord",
	armprivatedns.RecordTypeSRV: "srvRecords", armprivatedns.RecordTypeTXT: "txtRecords",
}

// presentFields lists the record fields that carry records in p.
func presentFields(p *armprivatedns.RecordSetProperties) []armprivatedns.RecordType {
	var out []armprivatedns.RecordType
	add := func(t armprivatedns.RecordType, present bool) {
		if present {
			out = append(out, t)
		}
	}
	add(armprivatedns.RecordTypeA, len(p.ARecords) > 0)
	add(armprivatedns.RecordTypeAAAA, len(p.AaaaRecords) > 0)
	add(armprivatedns.RecordTypeCNAME, p.CnameRecord != nil)
	add(armprivatedns.RecordTypeMX, len(p.MxRecords) > 0)
	add(armprivatedns.RecordTypePTR, len(p.PtrRecords) > 0)
	add(armprivatedns.RecordTypeSOA, p.SoaRecord != nil)
	add(armprivatedns.RecordTypeSRV, len(p.SrvRecords) > 0)
	add(armprivatedns.RecordTypeTXT, len(p.TxtRecords) > 0)
	return out
}

// normalizeRecordSet validates the properties of a record set of type typ
// and returns their stored form: ttl, metadata and the records of typ only
// (canonical addresses). The read-only fqdn and isAutoRegistered are left
// for the caller. soa is the current SOA record, which fills in the SOA
// fields a request leaves out.
func normalizeRecordSet(typ armprivatedns.RecordType, p *armprivatedns.RecordSetProperties, soa *armprivatedns.SoaRecord) (*armprivatedns.RecordSetProperties, error) {
	if p == nil || p.TTL == nil {
		return nil, badRequest("properties.ttl", "The request was invalid: the record set needs properties.ttl (0 to %d seconds).", maxTTL)
	}
	if *p.TTL < 0 || *p.TTL > maxTTL {
		return nil, badRequest("properties.ttl", "The TTL %d is invalid: it must be between 0 and %d.", *p.TTL, maxTTL)
	}
	for _, t := range presentFields(p) {
		if t != typ {
			return nil, badRequest("properties."+recordFields[t],
				"A record set of type '%s' cannot contain %s; send its records in properties.%s.", typ, recordFields[t], recordFields[typ])
		}
	}
	meta, err := normalizeMetadata(p.Metadata)
	if err != nil {
		return nil, err
	}
	out := &armprivatedns.RecordSetProperties{TTL: ptr(*p.TTL), Metadata: meta}
	switch typ {
	case armprivatedns.RecordTypeA:
		out.ARecords, err = normalizeA(p.ARecords)
	case armprivatedns.RecordTypeAAAA:
		out.AaaaRecords, err = normalizeAAAA(p.AaaaRecords)
	case armprivatedns.RecordTypeCNAME:
		out.CnameRecord, err = normalizeCNAME(p.CnameRecord)
	case armprivatedns.RecordTypeMX:
		out.MxRecords, err = normalizeMX(p.MxRecords)
	case armprivatedns.RecordTypePTR:
		out.PtrRecords, err = normalizePTR(p.PtrRecords)
	case armprivatedns.RecordTypeSOA:
		out.SoaRecord, err = normalizeSOA(p.SoaRecord, soa)
	case armprivatedns.RecordTypeSRV:
		out.SrvRecords, err = normalizeSRV(p.SrvRecords)
	case armprivatedns.RecordTypeTXT:
		out.TxtRecords, err = normalizeTXT(p.TxtRecords)
	default:
		err = badRequest("recordType", "The record type '%s' is not supported.", typ)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func normalizeMetadata(m map[string]*string) (map[string]*string, error) {
	if len(m) > maxMetadata {
		return nil, badRequest("properties.metadata", "A record set can have at most %d metadata entries; this one has %d.", maxMetadata, len(m))
	}
	if m == nil {
		return nil, nil
	}
	out := make(map[string]*string, len(m))
	for k, v := range m {
		if k == "" || len(k) > 512 || strings.ContainsAny(k, `<>%&\?/`) {
			return nil, badRequest("properties.metadata", "The metadata name '%s' is invalid: 1-512 characters, none of <>%%&\\?/.", k)
		}
		if v != nil && len(*v) > 256 {
			return nil, badRequest("properties.metadata."+k, "The value of metadata '%s' is longer than 256 characters.", k)
		}
		out[k] = v
	}
	return out, nil
}

// limitRecords applies Azure private DNS's limit of records per record set
// (a 409 in Azure: hashicorp/terraform-provider-azurerm#12406).
func limitRecords(field string, n int) error {
	if n > MaxRecordsPerRecordSet {
		return arm.Conflict("Conflict", "The record set has %d records in properties.%s; a private DNS record set holds at most %d.", n, field, MaxRecordsPerRecordSet)
	}
	return nil
}

// noDuplicates refuses a record set that holds the same record twice.
func noDuplicates(field string, keys []string) error {
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			return badRequest("properties."+field, "The record set contains the record '%s' more than once.", k)
		}
		seen[k] = true
	}
	return nil
}

func normalizeA(in []*armprivatedns.ARecord) ([]*armprivatedns.ARecord, error) {
	if err := limitRecords("aRecords", len(in)); err != nil {
		return nil, err
	}
	out := make([]*armprivatedns.ARecord, 0, len(in))
	keys := make([]string, 0, len(in))
	for i, r := range in {
		target := arm.Field("properties", "aRecords", i, "ipv4Address")
		if r == nil || r.IPv4Address == nil {
			return nil, badRequest(target, "The A record %d has no ipv4Address.", i)
		}
		a, err := netip.ParseAddr(*r.IPv4Address)
		if err != nil || !a.Is4() {
			return nil, badRequest(target, "The provided ip address '%s' is not valid.", *r.IPv4Address)
		}
		out = append(out, &armprivatedns.ARecord{IPv4Address: ptr(a.String())})
		keys = append(keys, a.String())
	}
	return out, noDuplicates("aRecords", keys)
}

func normalizeAAAA(in []*armprivatedns.AaaaRecord) ([]*armprivatedns.AaaaRecord, error) {
	if err := limitRecords("aaaaRecords", len(in)); err != nil {
		return nil, err
	}
	out := make([]*armprivatedns.AaaaRecord, 0, len(in))
	keys := make([]string, 0, len(in))
	for i, r := range in {
		target := arm.Field("properties", "aaaaRecords", i, "ipv6Address")
		if r == nil || r.IPv6Address == nil {
			return nil, badRequest(target, "The AAAA record %d has no ipv6Address.", i)
		}
		a, err := netip.ParseAddr(*r.IPv6Address)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return nil, badRequest(target, "The provided ip address '%s' is not valid.", *r.IPv6Address)
		}
		out = append(out, &armprivatedns.AaaaRecord{IPv6Address: ptr(a.String())})
		keys = append(keys, a.String())
	}
	return out, noDuplicates("aaaaRecords", keys)
}

func normalizeCNAME(in *armprivatedns.CnameRecord) (*armprivatedns.CnameRecord, error) {
	if in == nil {
		return nil, nil // an empty CNAME record set, as Azure allows
	}
	if in.Cname == nil {
		return nil, badRequest("properties.cnameRecord.cname", "The CNAME record has no cname.")
	}
	if err := checkDomainName("properties.cnameRecord.cname", *in.Cname); err != nil {
		return nil, err
	}
	return &armprivatedns.CnameRecord{Cname: ptr(*in.Cname)}, nil
}

func normalizeMX(in []*armprivatedns.MxRecord) ([]*armprivatedns.MxRecord, error) {
	if err := limitRecords("mxRecords", len(in)); err != nil {
		return nil, err
	}
	out := make([]*armprivatedns.MxRecord, 0, len(in))
	keys := make([]string, 0, len(in))
	for i, r := range in {
		if r == nil || r.Preference == nil || r.Exchange == nil {
			return nil, badRequest(arm.Field("properties", "mxRecords", i), "The MX record %d needs preference and exchange.", i)
		}
		if *r.Preference < 0 || *r.Preference > maxUint16 {
			return nil, badRequest(arm.Field("properties", "mxRecords", i, "preference"), "The MX preference %d is invalid: it must be between 0 and %d.", *r.Preference, maxUint16)
		}
		if err := checkDomainName(arm.Field("properties", "mxRecords", i, "exchange"), *r.Exchange); err != nil {
			return nil, err
		}
		out = append(out, &armprivatedns.MxRecord{Preference: ptr(*r.Preference), Exchange: ptr(*r.Exchange)})
		keys = append(keys, fmt.Sprintf("%d %s", *r.Preference, dnsName(*r.Exchange)))
	}
	return out, noDuplicates("mxRecords", keys)
}

func normalizePTR(in []*armprivatedns.PtrRecord) ([]*armprivatedns.PtrRecord, error) {
	if err := limitRecords("ptrRecords", len(in)); err != nil {
		return nil, err
	}
	out := make([]*armprivatedns.PtrRecord, 0, len(in))
	keys := make([]string, 0, len(in))
	for i, r := range in {
		target := arm.Field("properties", "ptrRecords", i, "ptrdname")
		if r == nil || r.Ptrdname == nil {
			return nil, badRequest(target, "The PTR record %d has no ptrdname.", i)
		}
		if err := checkDomainName(target, *r.Ptrdname); err != nil {
			return nil, err
		}
		out = append(out, &armprivatedns.PtrRecord{Ptrdname: ptr(*r.Ptrdname)})
		keys = append(keys, dnsName(*r.Ptrdname))
	}
	return out, noDuplicates("ptrRecords", keys)
}

func normalizeSRV(in []*armprivatedns.SrvRecord) ([]*armprivatedns.SrvRecord, error) {
	if err := limitRecords("srvRecords", len(in)); err != nil {
		return nil, err
	}
	out := make([]*armprivatedns.SrvRecord, 0, len(in))
	keys := make([]string, 0, len(in))
	for i, r := range in {
		if r == nil || r.Priority == nil || r.Weight == nil || r.Port == nil || r.Target == nil {
			return nil, badRequest(arm.Field("properties", "srvRecords", i), "The SRV record %d needs priority, weight, port and target.", i)
		}
		for _, f := range []struct {
			name string
			v    int32
		}{{"priority", *r.Priority}, {"weight", *r.Weight}, {"port", *r.Port}} {
			if f.v < 0 || f.v > maxUint16 {
				return nil, badRequest(arm.Field("properties", "srvRecords", i, f.name), "The SRV %s %d is invalid: it must be between 0 and %d.", f.name, f.v, maxUint16)
			}
		}
		if err := checkDomainName(arm.Field("properties", "srvRecords", i, "target"), *r.Target); err != nil {
			return nil, err
		}
		out = append(out, &armprivatedns.SrvRecord{Priority: ptr(*r.Priority), Weight: ptr(*r.Weight), Port: ptr(*r.Port), Target: ptr(*r.Target)})
		keys = append(keys, fmt.Sprintf("%d %d %d %s", *r.Priority, *r.Weight, *r.Port, dnsName(*r.Target)))
	}
	return out, noDuplicates("srvRecords", keys)
}

func normalizeTXT(in []*armprivatedns.TxtRecord) ([]*armprivatedns.TxtRecord, error) {
	if err := limitRecords("txtRecords", len(in)); err != nil {
		return nil, err
	}
	out := make([]*armprivatedns.TxtRecord, 0, len(in))
	keys := make([]string, 0, len(in))
	for i, r := range in {
		if r == nil || len(r.Value) == 0 {
			return nil, badRequest(arm.Field("properties", "txtRecords", i, "value"), "The TXT record %d has no value; give it one or more strings.", i)
		}
		vals := make([]*string, 0, len(r.Value))
		var key strings.Builder
		for j, v := range r.Value {
			target := arm.Field("properties", "txtRecords", i, "value", j)
			if v == nil {
				return nil, badRequest(target, "The TXT record %d has a null string.", i)
			}
			if len(*v) > maxTXTString {
				return nil, badRequest(target, "A TXT record string is %d characters long; each string holds at most %d.", len(*v), maxTXTString)
			}
			vals = append(vals, ptr(*v))
			fmt.Fprintf(&key, "%q ", *v)
		}
		out = append(out, &armprivatedns.TxtRecord{Value: vals})
		keys = append(keys, key.String())
	}
	return out, noDuplicates("txtRecords", keys)
}

// normalizeSOA merges a requested SOA record over the current one: the host
// is Azure's and never changes, absent fields keep their values.
func normalizeSOA(in, cur *armprivatedns.SoaRecord) (*armprivatedns.SoaRecord, error) {
	out := defaultSOA()
	if cur != nil {
		c := *cur
		out = &c
	}
	out.Host = ptr(soaHost)
	if in == nil {
		return out, nil
	}
	if in.Email != nil {
		if err := checkDomainName("properties.soaRecord.email", *in.Email); err != nil {
			return nil, err
		}
		out.Email = ptr(*in.Email)
	}
	for _, f := range []struct {
		name string
		in   *int64
		out  **int64
		max  int64
	}{
		{"serialNumber", in.SerialNumber, &out.SerialNumber, maxSerial},
		{"refreshTime", in.RefreshTime, &out.RefreshTime, maxTTL},
		{"retryTime", in.RetryTime, &out.RetryTime, maxTTL},
		{"expireTime", in.ExpireTime, &out.ExpireTime, maxTTL},
		{"minimumTtl", in.MinimumTTL, &out.MinimumTTL, maxTTL},
	} {
		if f.in == nil {
			continue
		}
		if *f.in < 0 || *f.in > f.max {
			return nil, badRequest("properties.soaRecord."+f.name, "The SOA %s %d is invalid: it must be between 0 and %d.", f.name, *f.in, f.max)
		}
		*f.out = ptr(*f.in)
	}
	return out, nil
}

// Azure's SOA of a new private zone.
const (
	soaHost  = "azureprivatedns.net"
	soaEmail = "azureprivatedns-host.microsoft.com"
	soaTTL   = 3600
)

func defaultSOA() *armprivatedns.SoaRecord {
	return &armprivatedns.SoaRecord{
		Host: ptr(soaHost), Email: ptr(soaEmail), SerialNumber: ptr[int64](1),
		RefreshTime: ptr[int64](3600), RetryTime: ptr[int64](300), ExpireTime: ptr[int64](2419200), MinimumTTL: ptr[int64](10),
	}
}
