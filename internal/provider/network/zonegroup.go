package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/provider/privatedns"
	"github.com/privlink/privlink/internal/provider/privatelink"
	"github.com/privlink/privlink/internal/store"
)

// Private DNS zone groups (privateEndpoints/{pe}/privateDnsZoneGroups/{g}):
// the private DNS zones in which an endpoint's server name should resolve
// to the endpoint's address. As in Azure, an endpoint has at most one
// group and a group at most five zone configs; each names an existing
// Microsoft.Network/privateDnsZones zone, in any subscription, which the
// caller may join (Microsoft.Network/privateDnsZones/join/action).
//
// This is the API half: the handlers validate and store the group, and
// report each config's recordSets from the record sets that really exist.
// A controller keeps the records: while an endpoint's connection is
// Approved, an A record named after the server (TTL 10) in each zone of the
// group holds the endpoint's address. It reads what to write with
// EndpointsDNS or EndpointDNSOf, and watches the store keys for which
// IsEndpointDNSKey is true. Writes are synchronous (201/200 PUT with
// provisioningState Succeeded, 202 DELETE done at once).

const (
	typeZoneGroup = "Microsoft.Network/privateEndpoints/privateDnsZoneGroups"
	// maxZoneConfigs is Azure's limit of zone configs in a group.
	maxZoneConfigs = 5
	// EndpointDNSIndexPrefix indexes the private endpoints that have a
	// zone group, across subscriptions: EndpointDNSIndexPrefix +
	// {lower-cased endpoint ID} → the group's ID. It is written and
	// removed in the transactions that write and remove groups and
	// endpoints, which also write documents under "arm/": a watcher of
	// "arm/" sees every change without watching it.
	EndpointDNSIndexPrefix = "network/endpoint-dns"
	// RecordTTL is the TTL of the A records a zone group keeps, as Azure's.
	RecordTTL = 10
)

func EndpointDNSIndexPrefixKey(endpoint arm.ResourceID) string {
	return EndpointDNSIndexPrefix + strings.ToLower(endpoint.String())
}

func indexZoneGroup(tx store.Tx, endpoint, group arm.ResourceID) error {
	if err := tx.Put(EndpointDNSIndexPrefixKey(endpoint), []byte(group.String())); err != nil {
		return fmt.Errorf("index zone group %s: %w", group, err)
	}
	return nil
}

func unindexZoneGroup(tx store.Tx, endpoint arm.ResourceID) error {
	if err := tx.Delete(EndpointDNSIndexPrefixKey(endpoint)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("unindex zone group of %s: %w", endpoint, err)
	}
	return nil
}

// zoneConfigSpec is one validated zone config of a PUT.
type zoneConfigSpec struct {
	name string
	path string
	zone arm.ResourceID // as given
}

func decodeZoneGroup(r *arm.Request) ([]zoneConfigSpec, error) {
	var in armnetwork.PrivateDNSZoneGroup
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := arm.ValidateNetworkName("private DNS zone group", r.ID.Name()); err != nil {
		return nil, err
	}
	const list = "properties.privateDnsZoneConfigs"
	if in.Properties == nil || len(in.Properties.PrivateDNSZoneConfigs) == 0 {
		return nil, errMissing(list, "A private DNS zone group's zone configs (1 to 5)")
	}
	if n := len(in.Properties.PrivateDNSZoneConfigs); n > maxZoneConfigs {
		return nil, badRequest(codeTooManyZoneConfigs, list,
			"A private DNS zone group has at most %d privateDnsZoneConfigs; this one has %d.", maxZoneConfigs, n)
	}
	var out []zoneConfigSpec
	for i, c := range in.Properties.PrivateDNSZoneConfigs {
		path := arm.Field(list, i)
		if c == nil || c.Properties == nil || strings.TrimSpace(str(c.Properties.PrivateDNSZoneID)) == "" {
			return nil, errMissing(path+".properties.privateDnsZoneId", "A zone config's privateDnsZoneId")
		}
		raw := strings.TrimSpace(*c.Properties.PrivateDNSZoneID)
		zone, err := arm.ParseID(raw)
		if err != nil || zone.Scope != nil || zone.IsCollection() || len(zone.Names) != 1 || zone.ResourceGroup == "" ||
			!strings.EqualFold(zone.Type(), privatedns.ZoneType) {
			return nil, errLinkedID(path+".properties.privateDnsZoneId", raw, privatedns.ZoneType)
		}
		name := strings.TrimSpace(str(c.Name))
		if name == "" {
			// Azure's portal names a config after its zone.
			name = strings.ReplaceAll(zone.Name(), ".", "-")
		}
		if err := arm.ValidateNetworkName("private DNS zone config", name); err != nil {
			ae, _ := arm.AsError(err)
			return nil, ae.WithTarget(path + ".name")
		}
		for _, o := range out {
			if strings.EqualFold(o.name, name) {
				return nil, errInvalid(path+".name", "The zone config name '%s' is used twice; give each zone config its own name.", name)
			}
			if o.zone.Equal(zone) {
				return nil, errInvalid(path+".properties.privateDnsZoneId", "The private DNS zone %s appears twice in the group; list each zone once.", raw)
			}
		}
		out = append(out, zoneConfigSpec{name: name, path: path, zone: zone})
	}
	return out, nil
}

func (p *Provider) putZoneGroup(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	specs, err := decodeZoneGroup(r)
	if err != nil {
		return nil, err
	}
	var (
		body    armnetwork.PrivateDNSZoneGroup
		op      *arm.Operation
		created bool
	)
	_, err = p.st.Txn(ctx, func(tx store.Tx) error {
		var pe armnetwork.PrivateEndpoint
		if err := loadParent(tx, r.ID.Parent(), &pe); err != nil {
			return err
		}
		peID, err := arm.ParseID(str(pe.ID))
		if err != nil {
			return fmt.Errorf("stored endpoint %s has a bad id %q: %w", r.ID.Parent(), str(pe.ID), err)
		}
		var cur armnetwork.PrivateDNSZoneGroup
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, str(cur.Etag)); err != nil {
			return err
		}
		created = !exists
		others, err := arm.LoadAll[armnetwork.PrivateDNSZoneGroup](tx, childColl(peID, "privateDnsZoneGroups"))
		if err != nil {
			return err
		}
		for _, o := range others {
			if !strings.EqualFold(str(o.Name), r.ID.Name()) {
				return badRequest(codeOneZoneGroup, "name",
					"Private endpoint %s already has the private DNS zone group '%s'; an endpoint has at most one. Add the zone to that group (up to %d zones), or delete it first.",
					peID, str(o.Name), maxZoneConfigs)
			}
		}
		name := r.ID.Name()
		if exists {
			name = str(cur.Name)
		}
		id := peID.Child("privateDnsZoneGroups", name)
		doc := armnetwork.PrivateDNSZoneGroup{
			ID: ptr(id.String()), Name: ptr(name), Etag: ptr(arm.NewETag()),
			Properties: &armnetwork.PrivateDNSZoneGroupPropertiesFormat{ProvisioningState: ptr(armnetwork.ProvisioningStateSucceeded)},
		}
		for _, s := range specs {
			zone, err := resolveZone(tx, r, s, p.targets)
			if err != nil {
				return err
			}
			doc.Properties.PrivateDNSZoneConfigs = append(doc.Properties.PrivateDNSZoneConfigs, &armnetwork.PrivateDNSZoneConfig{
				Name: ptr(s.name), Properties: &armnetwork.PrivateDNSZonePropertiesFormat{PrivateDNSZoneID: ptr(zone.String())},
			})
		}
		if err := arm.Save(tx, id, &doc); err != nil {
			return err
		}
		if err := indexZoneGroup(tx, peID, id); err != nil {
			return err
		}
		if body, err = zoneGroupView(tx, doc, &pe); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, id, str(pe.Location), true)
		return err
	})
	if err != nil {
		return nil, err
	}
	return accepted(created, body, op), nil
}

// resolveZone checks that a zone config's zone exists (in any
// subscription; the router has checked that the caller may join it,
// zoneGroupLinks) and returns the zone's ID in canonical casing.
func resolveZone(tx store.Tx, r *arm.Request, s zoneConfigSpec, kinds *privatelink.Kinds) (arm.ResourceID, error) {
	target := s.path + ".properties.privateDnsZoneId"
	var h header
	ok, err := arm.Load(tx, s.zone, &h)
	if err != nil {
		return s.zone, err
	}
	if !ok {
		return s.zone, badRequest(codeInvalidReference, target,
			"The private DNS zone %s referenced by private DNS zone group %s was not found. Create the zone first (%s).",
			s.zone, r.ID, zoneHint(kinds))
	}
	zone, err := arm.ParseID(h.ID)
	if err != nil {
		zone = s.zone
	}
	return zone, nil
}

// zoneHint names the zone each kind of target uses, e.g. "for a flexible
// server, privatelink.postgres.database.azure.com".
func zoneHint(kinds *privatelink.Kinds) string {
	var out []string
	for _, k := range kinds.All() {
		if k.Zone != "" { // a kind without a zone of its own: any zone the user keeps
			out = append(out, "for a "+k.Title+", "+k.Zone)
		}
	}
	return strings.Join(out, "; ")
}

// zoneGroupView composes a stored group with the record sets its zones
// hold for the endpoint pe: the A record named after the server, when it
// holds the endpoint's address.
func zoneGroupView(r arm.Reader, g armnetwork.PrivateDNSZoneGroup, pe *armnetwork.PrivateEndpoint) (armnetwork.PrivateDNSZoneGroup, error) {
	server, _, _ := endpointTarget(pe)
	addr, err := endpointAddr(r, pe)
	if err != nil {
		return g, err
	}
	out := g
	if g.Properties == nil {
		return out, nil
	}
	props := *g.Properties
	out.Properties = &props
	props.PrivateDNSZoneConfigs = nil
	for _, c := range g.Properties.PrivateDNSZoneConfigs {
		if c == nil || c.Properties == nil {
			continue
		}
		cc := &armnetwork.PrivateDNSZoneConfig{Name: c.Name, Properties: &armnetwork.PrivateDNSZonePropertiesFormat{
			PrivateDNSZoneID: c.Properties.PrivateDNSZoneID, RecordSets: []*armnetwork.RecordSet{},
		}}
		props.PrivateDNSZoneConfigs = append(props.PrivateDNSZoneConfigs, cc)
		zone, err := arm.ParseID(str(c.Properties.PrivateDNSZoneID))
		if err != nil || server.Name() == "" || !addr.IsValid() {
			continue
		}
		rs, err := privatedns.LookupRecordSet(r, zone, armprivatedns.RecordTypeA, server.Name())
		if err != nil {
			return g, err
		}
		if rs == nil || rs.Properties == nil || !holds(rs.Properties.ARecords, addr) {
			continue
		}
		ttl := int32(RecordTTL)
		if rs.Properties.TTL != nil {
			ttl = int32(*rs.Properties.TTL)
		}
		cc.Properties.RecordSets = append(cc.Properties.RecordSets, &armnetwork.RecordSet{
			RecordType: ptr("A"), RecordSetName: ptr(strings.ToLower(server.Name())),
			Fqdn: ptr(strings.ToLower(server.Name()) + "." + strings.ToLower(zone.Name())), TTL: ptr(ttl),
			IPAddresses: []*string{ptr(addr.String())}, ProvisioningState: ptr(armnetwork.ProvisioningStateSucceeded),
		})
	}
	return out, nil
}

// holds reports whether a record set's A records include addr.
func holds(records []*armprivatedns.ARecord, addr netip.Addr) bool {
	return slices.ContainsFunc(records, func(a *armprivatedns.ARecord) bool {
		if a == nil || a.IPv4Address == nil {
			return false
		}
		b, err := netip.ParseAddr(*a.IPv4Address)
		return err == nil && b == addr
	})
}

func (p *Provider) getZoneGroup(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	rd := arm.ReadOnly(ctx, p.st)
	var pe armnetwork.PrivateEndpoint
	if err := loadParent(rd, r.ID.Parent(), &pe); err != nil {
		return nil, err
	}
	var g armnetwork.PrivateDNSZoneGroup
	ok, err := arm.Load(rd, r.ID, &g)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errChildNotFound(r.ID)
	}
	v, err := zoneGroupView(rd, g, &pe)
	if err != nil {
		return nil, err
	}
	return arm.OK(v), nil
}

func (p *Provider) listZoneGroups(ctx context.Context, r *arm.Request) ([]any, error) {
	rd := arm.ReadOnly(ctx, p.st)
	var pe armnetwork.PrivateEndpoint
	if err := loadParent(rd, r.ID.Parent(), &pe); err != nil {
		return nil, err
	}
	groups, err := arm.LoadAll[armnetwork.PrivateDNSZoneGroup](rd, r.ID)
	if err != nil {
		return nil, err
	}
	out := make([]any, 0, len(groups))
	for _, g := range groups {
		v, err := zoneGroupView(rd, g, &pe)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (p *Provider) deleteZoneGroup(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var op *arm.Operation
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		op = nil
		var cur armnetwork.PrivateDNSZoneGroup
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, str(cur.Etag)); err != nil {
			return err
		}
		if !exists {
			return nil
		}
		var pe armnetwork.PrivateEndpoint
		if err := loadParent(tx, r.ID.Parent(), &pe); err != nil {
			return err
		}
		peID, err := arm.ParseID(str(pe.ID))
		if err != nil {
			peID = r.ID.Parent()
		}
		if err := arm.Delete(tx, r.ID); err != nil {
			return err
		}
		if err := unindexZoneGroup(tx, peID); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, str(pe.Location), true)
		return err
	})
	if err != nil {
		return nil, err
	}
	if op == nil {
		return noContent(), nil
	}
	return deleted(op), nil
}

// EndpointDNS is what the DNS records of one private endpoint with a zone
// group depend on: while Approved, each zone in Zones should hold an A
// record named ServerName (TTL RecordTTL) with Addr among its addresses.
type EndpointDNS struct {
	// Endpoint is the private endpoint's ID, canonical casing.
	Endpoint arm.ResourceID
	// ZoneGroup is the ID of its private DNS zone group.
	ZoneGroup arm.ResourceID
	// Server is the flexible server the endpoint targets (it may be gone).
	Server arm.ResourceID
	// ServerName is the server's name: the records' relative name.
	ServerName string
	// Addr is the endpoint's private address.
	Addr netip.Addr
	// Approved reports whether the endpoint's connection is Approved.
	Approved bool
	// Zones are the private DNS zones of the group, canonical casing;
	// they may have been deleted since.
	Zones []arm.ResourceID
	// Revision is the store revision of the endpoint's document (0 when
	// read in the transaction that wrote it).
	Revision int64
}

// EndpointsDNS lists every private endpoint that has a private DNS zone
// group, across every subscription, sorted by endpoint ID.
func EndpointsDNS(r arm.Reader) ([]EndpointDNS, error) { return NewEndpointDNSReader().List(r) }

// EndpointDNSOf returns the DNS view of one private endpoint, nil when the
// endpoint does not exist or has no zone group.
func EndpointDNSOf(r arm.Reader, endpoint arm.ResourceID) (*EndpointDNS, error) {
	return NewEndpointDNSReader().Of(r, endpoint)
}

// EndpointDNSReader answers EndpointsDNS and EndpointDNSOf, remembering
// the documents it decoded (by key and revision, see arm.Memo) from one
// call to the next: a controller that lists every endpoint on each pass
// keeps one, so that a pass decodes only what changed.
type EndpointDNSReader struct {
	endpoints *arm.Memo[EndpointFacts]
	groups    *arm.Memo[zoneGroupDoc]
	nics      *arm.Memo[netip.Addr]
}

// NewEndpointDNSReader returns an EndpointDNSReader that remembers nothing
// yet.
func NewEndpointDNSReader() *EndpointDNSReader {
	return &EndpointDNSReader{endpoints: arm.NewMemo(EndpointFactsOf), groups: arm.NewMemo(decodeZoneGroupDoc),
		nics: arm.NewMemo(decodeNICAddr)}
}

// List is EndpointsDNS.
func (d *EndpointDNSReader) List(r arm.Reader) ([]EndpointDNS, error) {
	kvs, err := r.List(EndpointDNSIndexPrefix + "/")
	if err != nil {
		return nil, fmt.Errorf("list private endpoints with zone groups: %w", err)
	}
	var out []EndpointDNS
	for _, kv := range kvs {
		id, err := arm.ParseID(strings.TrimPrefix(kv.Key, EndpointDNSIndexPrefix))
		if err != nil {
			continue // not an index entry
		}
		e, err := d.Of(r, id)
		if err != nil {
			return nil, err
		}
		if e != nil {
			out = append(out, *e)
		}
	}
	slices.SortFunc(out, func(a, b EndpointDNS) int {
		return strings.Compare(strings.ToLower(a.Endpoint.String()), strings.ToLower(b.Endpoint.String()))
	})
	return out, nil
}

// Of is EndpointDNSOf.
func (d *EndpointDNSReader) Of(r arm.Reader, endpoint arm.ResourceID) (*EndpointDNS, error) {
	kv, err := r.Get(arm.DocKey(endpoint))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", endpoint, err)
	}
	pe := d.endpoints.Of(kv)
	if pe.Err != nil {
		return nil, fmt.Errorf("decode stored %s: %w", endpoint, pe.Err)
	}
	gkvs, err := r.List(arm.CollectionPrefix(childColl(pe.ID, "privateDnsZoneGroups")))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", childColl(pe.ID, "privateDnsZoneGroups"), err)
	}
	if len(gkvs) == 0 {
		return nil, nil
	}
	g := d.groups.Of(gkvs[0])
	if g.err != nil {
		return nil, fmt.Errorf("decode stored %s: %w", gkvs[0].Key, g.err)
	}
	var addr netip.Addr
	if pe.HasNIC {
		nkv, err := r.Get(arm.DocKey(pe.NIC))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("load %s: %w", pe.NIC, err)
		}
		if err == nil {
			addr = d.nics.Of(nkv)
		}
	}
	return &EndpointDNS{Endpoint: pe.ID, ZoneGroup: g.id, Server: pe.Target, ServerName: pe.Target.Name(), Addr: addr,
		Approved: pe.Status == privatelink.StatusApproved && addr.IsValid(), Zones: slices.Clone(g.zones), Revision: kv.Revision}, nil
}

// zoneGroupDoc is what EndpointDNS needs of a zone group document.
type zoneGroupDoc struct {
	err   error
	id    arm.ResourceID
	zones []arm.ResourceID
}

func decodeZoneGroupDoc(kv store.KV) zoneGroupDoc {
	var g armnetwork.PrivateDNSZoneGroup
	if err := json.Unmarshal(kv.Value, &g); err != nil {
		return zoneGroupDoc{err: err}
	}
	gid, err := arm.ParseID(str(g.ID))
	if err != nil {
		return zoneGroupDoc{err: fmt.Errorf("bad id %q: %w", str(g.ID), err)}
	}
	d := zoneGroupDoc{id: gid}
	if g.Properties != nil {
		for _, c := range g.Properties.PrivateDNSZoneConfigs {
			if c == nil || c.Properties == nil {
				continue
			}
			if z, err := arm.ParseID(str(c.Properties.PrivateDNSZoneID)); err == nil {
				d.zones = append(d.zones, z)
			}
		}
	}
	return d
}

// endpointAddr returns an endpoint's private address, read from its NIC;
// the zero Addr when it has none.
func endpointAddr(r arm.Reader, pe *armnetwork.PrivateEndpoint) (netip.Addr, error) {
	id, ok := nicIDOf(pe)
	if !ok {
		return netip.Addr{}, nil
	}
	kv, err := r.Get(arm.DocKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return netip.Addr{}, nil
	}
	if err != nil {
		return netip.Addr{}, fmt.Errorf("load %s: %w", id, err)
	}
	return decodeNICAddr(kv), nil
}

// decodeNICAddr returns the address of a stored NIC's primary IPv4
// configuration (an endpoint's NIC has one), as NICFactsOf reads it; the
// zero Addr when it has none.
func decodeNICAddr(kv store.KV) netip.Addr { return NICFactsOf(kv).Addr }

// IsEndpointDNSKey reports whether a store key is one whose change may
// change EndpointsDNS: a private endpoint's document, a zone group's, a
// private-link resource's private endpoint connection's, or the zone group
// index. (A connection decided on the server's side rewrites its
// endpoint's document in the same transaction, so endpoint keys alone
// already see every state change.)
func IsEndpointDNSKey(key string) bool {
	if strings.HasPrefix(key, EndpointDNSIndexPrefix+"/") {
		return true
	}
	id, ok := arm.ParseDocKey(key)
	if !ok {
		return false
	}
	t := id.Type()
	return strings.EqualFold(t, typeEndpoint) || strings.EqualFold(t, typeZoneGroup) ||
		strings.HasSuffix(strings.ToLower(t), "/"+strings.ToLower(privatelink.Segment))
}

// EndpointOfKey returns the private endpoint a store key concerns (its ID
// lower-cased, as in keys) for an endpoint's document, its zone group's
// and its zone group index entry; ok is false for every other key.
func EndpointOfKey(key string) (arm.ResourceID, bool) {
	if rest, ok := strings.CutPrefix(key, EndpointDNSIndexPrefix); ok && strings.HasPrefix(rest, "/") {
		id, err := arm.ParseID(rest)
		return id, err == nil && strings.EqualFold(id.Type(), typeEndpoint)
	}
	id, ok := arm.ParseDocKey(key)
	if !ok {
		return arm.ResourceID{}, false
	}
	switch {
	case strings.EqualFold(id.Type(), typeEndpoint):
		return id, true
	case strings.EqualFold(id.Type(), typeZoneGroup):
		return id.Parent(), true
	}
	return arm.ResourceID{}, false
}

// endpointTarget returns the server an endpoint's connection targets and
// the connection's status.
func endpointTarget(pe *armnetwork.PrivateEndpoint) (server arm.ResourceID, status string, ok bool) {
	c := storedConnection(pe)
	if c == nil || c.Properties == nil {
		return arm.ResourceID{}, "", false
	}
	id, err := arm.ParseID(str(c.Properties.PrivateLinkServiceID))
	if err != nil {
		return arm.ResourceID{}, "", false
	}
	if s := c.Properties.PrivateLinkServiceConnectionState; s != nil {
		status = str(s.Status)
	}
	return id, status, true
}
