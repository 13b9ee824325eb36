package privatedns

import (
	"fmt"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
)

const (
	maxNameLength  = 253 // a DNS name without its trailing dot
	maxLabelLength = 63
	minZoneLabels  = 2
	maxZoneLabels  = 34
	maxTTL         = 2147483647
	maxUint16      = 65535
	maxTXTString   = 1024
	maxSerial      = 4294967295
	maxMetadata    = 50
)

func equalFold(a, b string) bool { return strings.EqualFold(a, b) }

// ValidateZoneName checks a private DNS zone name: a DNS name without a
// trailing dot, 2-34 labels of 1-63 letters, digits, '-' or '_' (not
// starting or ending with '-'), at most 253 characters.
func ValidateZoneName(name string) error {
	if strings.HasSuffix(name, ".") {
		return badRequest("privateZoneName", "The zone name '%s' is invalid: give it without a terminating dot.", name)
	}
	if len(name) > maxNameLength {
		return badRequest("privateZoneName", "The zone name '%s' is invalid: it is longer than %d characters.", name, maxNameLength)
	}
	labels := strings.Split(name, ".")
	if len(labels) < minZoneLabels {
		return badRequest("privateZoneName", "The zone name '%s' does not have enough labels. Zone names must have two or more labels.", name)
	}
	if len(labels) > maxZoneLabels {
		return badRequest("privateZoneName", "The zone name '%s' has too many labels. Zone names can have at most %d labels.", name, maxZoneLabels)
	}
	for _, l := range labels {
		if err := checkLabel(l, false); err != nil {
			return badRequest("privateZoneName", "The zone name '%s' is invalid: %v.", name, err)
		}
	}
	return nil
}

// checkLabel checks one DNS label; wildcard admits "*" as the whole label.
func checkLabel(l string, wildcard bool) error {
	if l == "" {
		return fmt.Errorf("it has an empty label")
	}
	if len(l) > maxLabelLength {
		return fmt.Errorf("the label '%s' is longer than %d characters", l, maxLabelLength)
	}
	if wildcard && l == "*" {
		return nil
	}
	for _, c := range l {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("the label '%s' has the character %q; use letters, digits, '-' and '_'", l, c)
		}
	}
	if strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") {
		return fmt.Errorf("the label '%s' starts or ends with '-'", l)
	}
	return nil
}

// recordSetName validates a relative record set name in a zone and returns
// it normalized: lower-case, "@" for the apex. A wildcard "*" may be the
// first label.
func recordSetName(name, zone string) (string, error) {
	n := strings.ToLower(name)
	if n == "@" {
		return n, nil
	}
	bad := func(format string, args ...any) error {
		return badRequest("relativeRecordSetName", "The record set name '%s' is invalid: %s.", name, fmt.Sprintf(format, args...))
	}
	if strings.HasSuffix(n, ".") || strings.HasPrefix(n, ".") {
		return "", bad("it must be relative to the zone, without a leading or terminating dot")
	}
	if len(n)+1+len(zone) > maxNameLength {
		return "", bad("with the zone name it is longer than %d characters", maxNameLength)
	}
	for i, l := range strings.Split(n, ".") {
		if err := checkLabel(l, i == 0); err != nil {
			return "", bad("%v", err)
		}
	}
	return n, nil
}

// fqdn is a record set's fully qualified name, with the trailing dot.
func fqdn(name, zone string) string {
	if name == "@" {
		return dnsName(zone) + "."
	}
	return name + "." + dnsName(zone) + "."
}

// checkDomainName checks a domain name inside a record (CNAME, MX exchange,
// PTR, SRV target, SOA email): labels of 1-63 characters without spaces or
// quotes, at most 253 characters, a terminating dot allowed.
func checkDomainName(target, s string) error {
	n := strings.TrimSuffix(s, ".")
	bad := badRequest(target, "The domain name '%s' is invalid.", s)
	if n == "" || len(n) > maxNameLength {
		return bad
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > maxLabelLength {
			return bad
		}
		for _, c := range l {
			if c <= ' ' || c >= 0x7f || strings.ContainsRune(`"'\/@()<>;`, c) {
				return bad
			}
		}
	}
	return nil
}

// resolutionPolicy validates a link's resolution policy and returns it in
// canonical case; nil means Default.
func resolutionPolicy(p *armprivatedns.ResolutionPolicy) (armprivatedns.ResolutionPolicy, error) {
	if p == nil {
		return armprivatedns.ResolutionPolicyDefault, nil
	}
	i := slices.IndexFunc(armprivatedns.PossibleResolutionPolicyValues(), func(v armprivatedns.ResolutionPolicy) bool {
		return equalFold(string(v), string(*p))
	})
	if i < 0 {
		return "", badRequest("properties.resolutionPolicy", "The resolution policy '%s' is invalid; use 'Default' or 'NxDomainRedirect'.", *p)
	}
	return armprivatedns.PossibleResolutionPolicyValues()[i], nil
}
