package privatedns

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// The virtual network side of links: the index of links by network, the
// rules that span the zones of one network, and network IDs.

// LinkIndexPrefix is the store prefix of the index of links by virtual
// network: one key per link, LinkIndexPrefix + lower(network ID) + "|" +
// lower(link ID). A DNS server watches it to learn which zones a network
// sees.
const LinkIndexPrefix = "privatedns/vnetlinks"

// linkIndexEntry is the value of an index key.
type linkIndexEntry struct {
	LinkID           string `json:"linkId"`
	VirtualNetworkID string `json:"virtualNetworkId"`
}

func vnetIndexPrefix(vnet arm.ResourceID) string {
	return LinkIndexPrefix + strings.ToLower(vnet.String()) + "|"
}

func linkIndexKey(vnet, link arm.ResourceID) string {
	return vnetIndexPrefix(vnet) + strings.ToLower(link.String())
}

// checkVNetExists requires the linked network's document when this store
// knows the network's subscription: the link's own, or one with resource
// groups here.
func checkVNetExists(r arm.Reader, link, vnet arm.ResourceID) error {
	ok, err := arm.Exists(r, vnet)
	if err != nil || ok {
		return err
	}
	known := strings.EqualFold(vnet.Subscription, link.Subscription)
	if !known {
		groups := arm.ResourceID{Subscription: vnet.Subscription, Namespace: "Microsoft.Resources", Types: []string{"resourceGroups"}}
		kvs, err := r.List(arm.CollectionPrefix(groups))
		if err != nil {
			return fmt.Errorf("list resource groups of %s: %w", vnet.Subscription, err)
		}
		known = len(kvs) > 0
	}
	if known {
		return badRequest("properties.virtualNetwork.id", "Virtual network resource not found for '%s'.", vnet)
	}
	return nil
}

// checkVNetRules applies the rules that span the zones a network is linked
// to, from the network's index entries (stale entries are dropped).
func checkVNetRules(tx store.Tx, id, zoneID, vnet arm.ResourceID, reg bool) error {
	others, err := vnetLinks(tx, vnet, tx)
	if err != nil {
		return err
	}
	for _, o := range others {
		oid, err := arm.ParseID(deref(o.ID))
		if err != nil || len(oid.Names) != 2 {
			continue
		}
		if oid.Equal(id) {
			continue
		}
		ozone := zoneOf(oid)
		switch {
		case ozone.Equal(zoneID):
			return conflict("Private zone '%s' is already linked to the virtual network '%s' (link '%s').", zoneID.Name(), vnet, oid.Name())
		case equalFold(dnsName(ozone.Name()), dnsName(zoneID.Name())):
			return badRequest("properties.virtualNetwork.id",
				"A virtual network cannot be linked to multiple zones with overlapping namespaces. You tried to link virtual network with '%s' and '%s' zones.",
				ozone, zoneID)
		case reg && registrationEnabled(o):
			return conflict("A virtual network can only be linked to 1 Private DNS zone(s) with auto-registration enabled; conflicting Private DNS zone is '%s'.", ozone)
		}
	}
	return nil
}

// vnetLinks returns the links of a virtual network. With tx it also drops
// index entries whose link is gone.
func vnetLinks(r arm.Reader, vnet arm.ResourceID, tx store.Tx) ([]*armprivatedns.VirtualNetworkLink, error) {
	kvs, err := r.List(vnetIndexPrefix(vnet))
	if err != nil {
		return nil, fmt.Errorf("list links of %s: %w", vnet, err)
	}
	var out []*armprivatedns.VirtualNetworkLink
	for _, kv := range kvs {
		var e linkIndexEntry
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			return nil, fmt.Errorf("decode link index entry %s: %w", kv.Key, err)
		}
		lid, err := arm.ParseID(e.LinkID)
		var l *armprivatedns.VirtualNetworkLink
		if err == nil {
			l, err = loadLink(r, lid)
			if err != nil {
				return nil, err
			}
		}
		if l == nil || !linkOn(l, vnet) {
			if tx != nil {
				if err := tx.Delete(kv.Key); err != nil && !errors.Is(err, store.ErrNotFound) {
					return nil, fmt.Errorf("drop stale link index entry %s: %w", kv.Key, err)
				}
			}
			continue
		}
		out = append(out, l)
	}
	return out, nil
}

// linkOn reports whether l links the network vnet.
func linkOn(l *armprivatedns.VirtualNetworkLink, vnet arm.ResourceID) bool {
	v, err := linkVNet(l)
	return err == nil && v.Equal(vnet)
}

// indexLink writes the index entry of the link id (stored ID linkID) on
// the network vnet.
func indexLink(tx store.Tx, vnet, id arm.ResourceID, linkID string) error {
	entry, err := json.Marshal(linkIndexEntry{LinkID: linkID, VirtualNetworkID: vnet.String()})
	if err != nil {
		return fmt.Errorf("encode link index entry: %w", err)
	}
	if err := tx.Put(linkIndexKey(vnet, id), entry); err != nil {
		return fmt.Errorf("index link %s: %w", id, err)
	}
	return nil
}

// unindexLink removes a link's index entry.
func unindexLink(tx store.Tx, l *armprivatedns.VirtualNetworkLink) error {
	vnet, err := linkVNet(l)
	if err != nil {
		return nil // a link without a valid network was never indexed
	}
	id, err := arm.ParseID(deref(l.ID))
	if err != nil {
		return nil
	}
	if err := tx.Delete(linkIndexKey(vnet, id)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("unindex link %s: %w", id, err)
	}
	return nil
}

// linkVNet returns the network a stored link links.
func linkVNet(l *armprivatedns.VirtualNetworkLink) (arm.ResourceID, error) {
	if l.Properties == nil || l.Properties.VirtualNetwork == nil {
		return arm.ResourceID{}, badRequest("properties.virtualNetwork.id", "The link '%s' has no virtual network; give properties.virtualNetwork.id.", deref(l.Name))
	}
	return parseVNetID(deref(l.Properties.VirtualNetwork.ID))
}

var subscriptionID = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// parseVNetID parses a Microsoft.Network/virtualNetworks ID and returns it
// with canonical literal segments.
func parseVNetID(s string) (arm.ResourceID, error) {
	bad := badRequest("properties.virtualNetwork.id",
		"The virtual network ID '%s' is invalid: give the ID of a %s resource, /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/%s/{name}.",
		s, vnetType, vnetType)
	id, err := arm.ParseID(s)
	if err != nil || id.Scope != nil || id.ResourceGroup == "" || !subscriptionID.MatchString(id.Subscription) ||
		!equalFold(id.Namespace, zoneNamespace) || len(id.Types) != 1 || len(id.Names) != 1 || !equalFold(id.Types[0], vnetSegment) {
		return arm.ResourceID{}, bad
	}
	if arm.ValidateNetworkName("virtual network", id.Names[0]) != nil {
		return arm.ResourceID{}, bad
	}
	id.Namespace, id.Types = zoneNamespace, []string{vnetSegment}
	return id, nil
}
