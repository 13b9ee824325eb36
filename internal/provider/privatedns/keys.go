package privatedns

import (
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
)

// KeyKind is what the store key of a private DNS document holds.
type KeyKind int

// Kinds of private DNS documents.
const (
	KeyZone KeyKind = iota + 1
	KeyLink
	KeyRecordSet
)

// Key is a parsed store key of a private DNS document. Store keys are
// lower-case (arm.DocKey), and so are its fields but Type.
type Key struct {
	Kind KeyKind
	// Zone is the zone's lower-cased ARM ID, e.g.
	// "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/privatednszones/z.com".
	Zone string
	// Link is the link's lower-cased ARM ID (KeyLink).
	Link string
	// Type is the record type, upper-case (KeyRecordSet).
	Type armprivatedns.RecordType
	// Name is the record set's name relative to the zone, "@" at the apex
	// (KeyRecordSet).
	Name string
}

// keyRoot and the layout below are arm.DocKey's:
// arm/{subscription}/{namespace}:{type}[:{childType}]/{group}/{name}[/{childName}].
// TestParseKey pins them to arm.DocKey.
const (
	keyRoot    = "arm"
	zoneKeyTyp = "microsoft.network:privatednszones"
)

// ParseKey reports whether key is the store key of a private DNS zone,
// virtual network link or record set document, and what it names. A
// watcher of the store's "arm/" prefix routes events with it, deletions
// included (they carry only the key).
func ParseKey(key string) (Key, bool) {
	p := strings.Split(key, "/")
	if len(p) < 5 || len(p) > 6 || p[0] != keyRoot || !strings.HasPrefix(p[2], zoneKeyTyp) {
		return Key{}, false
	}
	sub, typ, rg, zone := p[1], p[2], p[3], p[4]
	k := Key{Zone: "/subscriptions/" + sub + "/resourcegroups/" + rg + "/providers/microsoft.network/privatednszones/" + zone}
	child, isChild := strings.CutPrefix(typ, zoneKeyTyp+":")
	switch {
	case typ == zoneKeyTyp && len(p) == 5:
		k.Kind = KeyZone
	case isChild && len(p) == 6 && child == strings.ToLower(linksSegment):
		k.Kind, k.Link = KeyLink, k.Zone+"/virtualnetworklinks/"+p[5]
	case isChild && len(p) == 6 && slices.Contains(RecordTypes, armprivatedns.RecordType(strings.ToUpper(child))):
		k.Kind, k.Type, k.Name = KeyRecordSet, armprivatedns.RecordType(strings.ToUpper(child)), p[5]
	default:
		return Key{}, false
	}
	return k, true
}
