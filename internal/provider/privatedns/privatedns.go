// Package privatedns serves Microsoft.Network/privateDnsZones: private DNS
// zones, their virtual network links and their record sets, wire-compatible
// with the armprivatedns module (api-version 2024-06-01).
//
// # Stored form
//
// Every resource is one document under its ARM id (arm.Save), in the shape a
// GET returns it:
//
//   - a zone as an armprivatedns.PrivateZone, whose read-only counters
//     (numberOfRecordSets, numberOfVirtualNetworkLinks, ...) are kept up to
//     date by this package's writers in the same transaction as the change;
//   - a virtual network link as an armprivatedns.VirtualNetworkLink;
//   - a record set as an armprivatedns.RecordSet, one document per (zone,
//     type, name), normalized: the name lower-cased ("@" for the apex), only
//     the record field of its type set, addresses in canonical form,
//     duplicates refused. A DNS server answers a question (name, type) in a
//     zone with one Get (LookupRecordSet).
//
// Links are also indexed by virtual network under LinkIndexPrefix, so that
// the zones one network sees (LinkedZones) and the rules that span zones (one
// registration-enabled link per network, one zone of a given name per
// network) cost one prefix list, whatever the number of zones and
// subscriptions.
//
// A DNS server reads with Zones, RecordSets, LookupRecordSet and
// LinkedZones, or keeps its own view by watching the store's "arm/" prefix
// and routing each event with ParseKey (deletions carry only the key).
//
// Other packages that write record sets (private endpoint DNS zone groups,
// auto-registration) must go through SaveRecordSet and DeleteRecordSet, which
// keep the zone's counters and the DNS rules; never arm.Save a record set.
package privatedns

import (
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/google/uuid"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// APIVersion is the api-version armprivatedns v1.3.0 sends.
const APIVersion = "2024-06-01"

// Versions are the accepted api-versions: every one Azure published for
// Microsoft.Network/privateDnsZones (APIVersion and the older ones the az
// CLI sends). Their shapes are the same but for resolutionPolicy.
var Versions = arm.NewVersionTable(APIVersion, "2020-06-01", "2020-01-01", "2018-09-01")

// Resource types.
const (
	ZoneType = "Microsoft.Network/privateDnsZones"
	LinkType = ZoneType + "/virtualNetworkLinks"
)

// Location is the only location of private DNS resources.
const Location = "global"

// Azure's limits, reported in a zone's read-only properties and enforced.
const (
	MaxRecordSets          = 25000
	MaxVirtualNetworkLinks = 1000
	MaxRegistrationLinks   = 100
	MaxRecordsPerRecordSet = 20
)

const (
	provisioningSucceeded = armprivatedns.ProvisioningStateSucceeded
	zoneNamespace         = "Microsoft.Network"
	zoneSegment           = "privateDnsZones"
	linksSegment          = "virtualNetworkLinks"
	allSegment            = "ALL"
	vnetType              = "Microsoft.Network/virtualNetworks"
	vnetSegment           = "virtualNetworks"
)

// RecordTypes are the record set types, in the order lists return them.
var RecordTypes = []armprivatedns.RecordType{
	armprivatedns.RecordTypeA, armprivatedns.RecordTypeAAAA, armprivatedns.RecordTypeCNAME,
	armprivatedns.RecordTypeMX, armprivatedns.RecordTypePTR, armprivatedns.RecordTypeSOA,
	armprivatedns.RecordTypeSRV, armprivatedns.RecordTypeTXT,
}

// Provider serves private DNS zones, links and record sets.
type Provider struct {
	st store.Store
}

// New returns the provider over st.
func New(st store.Store) *Provider { return &Provider{st: st} }

// Types returns the resource types this provider serves: zones, links, one
// child type per record type (e.g. "Microsoft.Network/privateDnsZones/A")
// and the ALL collection of every record set of a zone.
func (p *Provider) Types() []*arm.ResourceType {
	types := []*arm.ResourceType{
		{
			Type: ZoneType, APIVersions: Versions.All(),
			Get: p.getZone, List: p.listZones, Put: p.putZone, Patch: p.patchZone, Delete: p.deleteZone,
			BeforeGroupDelete: beforeGroupDelete,
		},
		{
			Type: LinkType, APIVersions: Versions.All(),
			Get: p.getLink, List: p.listLinks, Put: p.putLink, Patch: p.patchLink, Delete: p.deleteLink,
			// Linking a network to a zone needs the right to join the network.
			Links: []arm.Link{{Path: "properties.virtualNetwork.id", Type: "Microsoft.Network/virtualNetworks", Action: arm.JoinVirtualNetworkAction}},
		},
		{Type: ZoneType + "/" + allSegment, APIVersions: Versions.All(), List: p.listAllRecordSets},
	}
	for _, t := range RecordTypes {
		types = append(types, &arm.ResourceType{
			Type: ZoneType + "/" + string(t), APIVersions: Versions.All(),
			Get: p.getRecordSet, List: p.listRecordSetsByType, Put: p.putRecordSet, Patch: p.patchRecordSet, Delete: p.deleteRecordSet,
		})
	}
	return types
}

// newETag returns a fresh ETag in private DNS's style: a bare GUID.
func newETag() string { return uuid.NewString() }

// collection returns the ID of the child collection typ of id.
func collection(id arm.ResourceID, typ string) arm.ResourceID {
	c := id.Child(typ, "")
	c.Names = c.Names[:len(c.Names)-1]
	return c
}

// zoneOf returns the zone ID a child resource (link or record set) or child
// collection is in, in canonical casing.
func zoneOf(id arm.ResourceID) arm.ResourceID {
	z := id
	z.Namespace = zoneNamespace
	z.Types = []string{zoneSegment}
	z.Names = []string{id.Names[0]}
	z.Scope = nil
	return z
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func ptr[T any](v T) *T { return &v }

func toAny[T any](vs []T) []any {
	out := make([]any, len(vs))
	for i := range vs {
		out[i] = vs[i]
	}
	return out
}

// dnsName lower-cases a DNS name and drops a trailing dot.
func dnsName(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") }
