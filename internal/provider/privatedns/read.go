package privatedns

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/privlink/privlink/internal/arm"
)

// The read API a DNS server answers from. Every function takes an
// arm.Reader: a store.Tx, or arm.ReadOnly over the store.

// Zones returns the private DNS zones of a subscription, or of one of its
// resource groups when resourceGroup is not empty, in key order.
func Zones(r arm.Reader, subscription, resourceGroup string) ([]*armprivatedns.PrivateZone, error) {
	coll := arm.ResourceID{Subscription: subscription, ResourceGroup: resourceGroup, Namespace: zoneNamespace, Types: []string{zoneSegment}}
	zs, err := arm.LoadAll[*armprivatedns.PrivateZone](r, coll)
	if err != nil {
		return nil, fmt.Errorf("private DNS zones of %s: %w", coll, err)
	}
	return zs, nil
}

// RecordSets returns every record set of a zone, sorted by name, then by
// type in the order of RecordTypes.
func RecordSets(r arm.Reader, zone arm.ResourceID) ([]*armprivatedns.RecordSet, error) {
	zone = zoneOf(zone)
	var out []*armprivatedns.RecordSet
	for _, t := range RecordTypes {
		sets, err := arm.LoadAll[*armprivatedns.RecordSet](r, collection(zone, string(t)))
		if err != nil {
			return nil, fmt.Errorf("record sets of %s: %w", zone, err)
		}
		out = append(out, sets...)
	}
	// Appended in type order; a stable sort by name keeps it within a name.
	slices.SortStableFunc(out, func(a, b *armprivatedns.RecordSet) int { return cmp.Compare(deref(a.Name), deref(b.Name)) })
	return out, nil
}

// LookupRecordSet returns the record set (typ, name) of a zone, nil when
// there is none. name is relative to the zone ("@" for the apex), in any
// case: one store read.
func LookupRecordSet(r arm.Reader, zone arm.ResourceID, typ armprivatedns.RecordType, name string) (*armprivatedns.RecordSet, error) {
	rs, err := loadRecordSet(r, RecordSetID(zoneOf(zone), typ, name))
	if err != nil {
		return nil, fmt.Errorf("look up %s %s in %s: %w", typ, name, zone, err)
	}
	return rs, nil
}

// LinkedZone is a zone as one virtual network sees it through a link.
type LinkedZone struct {
	// Zone is the zone's ARM ID.
	Zone arm.ResourceID
	// Name is the zone's DNS name: lower-case, without the trailing dot.
	Name string
	// Link is the link document.
	Link *armprivatedns.VirtualNetworkLink
	// RegistrationEnabled: the network's VMs register in this zone.
	RegistrationEnabled bool
	// ResolutionPolicy is Default or NxDomainRedirect (fall back to
	// recursive resolution when the zone has no answer).
	ResolutionPolicy armprivatedns.ResolutionPolicy
}

// LinkedZones returns the zones linked to a virtual network, across every
// subscription, sorted by DNS name. A network has at most one zone of each
// name, so the resolver picks the longest zone name that is a suffix of
// the question.
func LinkedZones(r arm.Reader, vnet arm.ResourceID) ([]LinkedZone, error) {
	links, err := vnetLinks(r, vnet, nil)
	if err != nil {
		return nil, err
	}
	out := make([]LinkedZone, 0, len(links))
	for _, l := range links {
		id, err := arm.ParseID(deref(l.ID))
		if err != nil || len(id.Names) != 2 {
			continue
		}
		z := zoneOf(id)
		policy := armprivatedns.ResolutionPolicyDefault
		if p := deref(l.Properties).ResolutionPolicy; p != nil {
			policy = *p
		}
		out = append(out, LinkedZone{Zone: z, Name: dnsName(z.Name()), Link: l, RegistrationEnabled: registrationEnabled(l), ResolutionPolicy: policy})
	}
	slices.SortFunc(out, func(a, b LinkedZone) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// LinksOfVirtualNetwork returns the links of a virtual network, across
// every zone and subscription. The network provider uses it to decide what
// deleting a network does to its links.
func LinksOfVirtualNetwork(r arm.Reader, vnet arm.ResourceID) ([]*armprivatedns.VirtualNetworkLink, error) {
	return vnetLinks(r, vnet, nil)
}
