package dns

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// InternetView is the view of the emulated internet: public names only. No
// link can be made to it.
const InternetView = ""

// ZoneID identifies one private DNS zone, e.g. its lower-cased ARM resource
// ID. Several zones may share a name (in different resource groups or
// subscriptions); the ID tells them apart.
type ZoneID string

// LinkID identifies one virtual network link, e.g. its lower-cased ARM
// resource ID.
type LinkID string

// ResolutionPolicy is the resolutionPolicy of a virtual network link.
type ResolutionPolicy string

// Resolution policies of a virtual network link.
const (
	// PolicyDefault answers NXDOMAIN for names the zone lacks.
	PolicyDefault ResolutionPolicy = "Default"
	// PolicyNxDomainRedirect resolves names the zone lacks from the public
	// names instead of answering NXDOMAIN.
	PolicyNxDomainRedirect ResolutionPolicy = "NxDomainRedirect"
)

// Link makes a private zone visible in a view: a virtual network link.
type Link struct {
	// View is the virtual network, e.g. its lower-cased ARM resource ID.
	// It must not be InternetView.
	View string
	// Zone is the linked zone. The zone need not exist yet: the link takes
	// effect when it does.
	Zone ZoneID
	// ResolutionPolicy is PolicyDefault when empty. It compares
	// case-insensitively.
	ResolutionPolicy ResolutionPolicy
}

// Catalog is the in-memory data of the DNS: private zones, links, public
// names. It is safe for concurrent use. Every write publishes a new
// immutable snapshot before it returns, so the next query sees it; queries
// read the current snapshot without locks. Writes are serialized; a write
// copies the parts it changes (the maps of one zone, the top-level maps), so
// its cost grows with the size of the zone it touches, not of the catalog.
//
// The zero Catalog is empty and ready to use.
type Catalog struct {
	mu  sync.Mutex // serializes writers
	cur atomic.Pointer[snapshot]
}

// NewCatalog returns an empty catalog.
func NewCatalog() *Catalog { return &Catalog{} }

// load returns the current snapshot.
func (c *Catalog) load() *snapshot {
	if s := c.cur.Load(); s != nil {
		return s
	}
	return emptySnapshot()
}

// Update applies fn's changes as one atomic write: queries see all of them
// or none. If fn returns an error, nothing is applied and Update returns
// that error. fn must not retain tx or call methods of c.
func (c *Catalog) Update(fn func(tx *Tx) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	tx := newTx(c.load())
	if err := fn(tx); err != nil {
		return err
	}
	c.cur.Store(tx.commit())
	return nil
}

// PutZone creates the zone id with the given name (e.g.
// "privatelink.postgres.database.azure.com", with or without the trailing
// dot) or renames it, keeping its record sets.
func (c *Catalog) PutZone(id ZoneID, name string) error {
	return c.Update(func(tx *Tx) error { return tx.PutZone(id, name) })
}

// DeleteZone removes the zone id and its record sets. Links to it stay and
// take effect again if the zone comes back. Deleting an absent zone does
// nothing.
func (c *Catalog) DeleteZone(id ZoneID) {
	_ = c.Update(func(tx *Tx) error { tx.DeleteZone(id); return nil })
}

// PutRecordSet creates or replaces the record set (rs.Name, rs.Type) of the
// zone id. rs.Name is relative to the zone: "@" (or "") for the apex, "*"
// or "*.label" for wildcards. Record sets may arrive before their zone:
// they answer once PutZone names it (DeleteZone drops them).
func (c *Catalog) PutRecordSet(id ZoneID, rs RecordSet) error {
	return c.Update(func(tx *Tx) error { return tx.PutRecordSet(id, rs) })
}

// DeleteRecordSet removes the record set (name, typ) of the zone id, if
// present.
func (c *Catalog) DeleteRecordSet(id ZoneID, name string, typ RecordType) {
	_ = c.Update(func(tx *Tx) error { tx.DeleteRecordSet(id, name, typ); return nil })
}

// PutLink creates or replaces the virtual network link id.
func (c *Catalog) PutLink(id LinkID, l Link) error {
	return c.Update(func(tx *Tx) error { return tx.PutLink(id, l) })
}

// DeleteLink removes the virtual network link id, if present.
func (c *Catalog) DeleteLink(id LinkID) {
	_ = c.Update(func(tx *Tx) error { tx.DeleteLink(id); return nil })
}

// PutPublic replaces all public record sets of source (an opaque key, e.g.
// the ARM ID of a PostgreSQL flexible server) with sets. Names in sets are
// absolute ("srv1.postgres.database.azure.com", trailing dot optional). If
// several sources hold a set of the same name and type, the source that
// sorts first wins.
func (c *Catalog) PutPublic(source string, sets ...RecordSet) error {
	return c.Update(func(tx *Tx) error { return tx.PutPublic(source, sets...) })
}

// DeletePublic removes all public record sets of source, if any.
func (c *Catalog) DeletePublic(source string) {
	_ = c.Update(func(tx *Tx) error { tx.DeletePublic(source); return nil })
}

// Tx is a batch of catalog changes inside Catalog.Update. Its methods have
// the meaning of the Catalog methods of the same names.
type Tx struct {
	s          *snapshot // the draft
	ownZones   bool      // s.zones is the draft's own copy
	ownedZone  map[ZoneID]bool
	ownLinks   bool
	ownPublic  bool
	viewsDirty bool
}

func newTx(cur *snapshot) *Tx {
	draft := *cur
	return &Tx{s: &draft, ownedZone: map[ZoneID]bool{}}
}

// commit finishes the draft and returns it, ready to publish.
func (tx *Tx) commit() *snapshot {
	if tx.viewsDirty {
		tx.s.views = buildViews(tx.s.zones, tx.s.links)
	}
	return tx.s
}

// Reset empties the catalog, for a full resynchronization: Reset, then put
// everything, in one Update.
func (tx *Tx) Reset() {
	*tx.s = *emptySnapshot()
	tx.ownZones, tx.ownLinks, tx.ownPublic = true, true, true
	clear(tx.ownedZone)
	tx.viewsDirty = false
}

// PutZone is Catalog.PutZone inside a batch.
func (tx *Tx) PutZone(id ZoneID, name string) error {
	if id == "" {
		return errors.New("dns: put zone: empty zone ID")
	}
	origin, err := zoneName(name)
	if err != nil {
		return fmt.Errorf("dns: put zone %s: %w", id, err)
	}
	if z := tx.s.zones[id]; z != nil && z.origin == origin {
		return nil
	}
	z := tx.zoneForWrite(id)
	z.rename(origin)
	tx.viewsDirty = true
	return nil
}

// DeleteZone is Catalog.DeleteZone inside a batch.
func (tx *Tx) DeleteZone(id ZoneID) {
	if _, ok := tx.s.zones[id]; !ok {
		return
	}
	tx.ownZonesMap()
	delete(tx.s.zones, id)
	delete(tx.ownedZone, id)
	tx.viewsDirty = true
}

// PutRecordSet is Catalog.PutRecordSet inside a batch.
func (tx *Tx) PutRecordSet(id ZoneID, rs RecordSet) error {
	if id == "" {
		return errors.New("dns: put record set: empty zone ID")
	}
	n, err := normalizeSet(rs, false)
	if err != nil {
		return fmt.Errorf("dns: put record set in zone %s: %w", id, err)
	}
	tx.zoneForWrite(id).put(n)
	return nil
}

// DeleteRecordSet is Catalog.DeleteRecordSet inside a batch.
func (tx *Tx) DeleteRecordSet(id ZoneID, name string, typ RecordType) {
	rel, err := relName(name)
	if err != nil {
		return
	}
	t, ok := rrType(typ)
	if !ok {
		return
	}
	z := tx.s.zones[id]
	if z == nil {
		return
	}
	if _, ok := z.sets[setKey{rel, t}]; !ok {
		return
	}
	tx.zoneForWrite(id).remove(setKey{rel, t})
}

// PutLink is Catalog.PutLink inside a batch.
func (tx *Tx) PutLink(id LinkID, l Link) error {
	switch {
	case id == "":
		return errors.New("dns: put link: empty link ID")
	case l.View == InternetView:
		return fmt.Errorf("dns: put link %s: empty view", id)
	case l.Zone == "":
		return fmt.Errorf("dns: put link %s: empty zone ID", id)
	}
	switch {
	case l.ResolutionPolicy == "" || strings.EqualFold(string(l.ResolutionPolicy), string(PolicyDefault)):
		l.ResolutionPolicy = PolicyDefault
	case strings.EqualFold(string(l.ResolutionPolicy), string(PolicyNxDomainRedirect)):
		l.ResolutionPolicy = PolicyNxDomainRedirect
	default:
		return fmt.Errorf("dns: put link %s: unknown resolution policy %q", id, l.ResolutionPolicy)
	}
	if old, ok := tx.s.links[id]; ok && old == l {
		return nil
	}
	tx.ownLinksMap()
	tx.s.links[id] = l
	tx.viewsDirty = true
	return nil
}

// DeleteLink is Catalog.DeleteLink inside a batch.
func (tx *Tx) DeleteLink(id LinkID) {
	if _, ok := tx.s.links[id]; !ok {
		return
	}
	tx.ownLinksMap()
	delete(tx.s.links, id)
	tx.viewsDirty = true
}

// PutPublic is Catalog.PutPublic inside a batch.
func (tx *Tx) PutPublic(source string, sets ...RecordSet) error {
	if source == "" {
		return errors.New("dns: put public: empty source")
	}
	norm := make([]normSet, 0, len(sets))
	seen := map[setKey]bool{}
	for _, rs := range sets {
		n, err := normalizeSet(rs, true)
		if err != nil {
			return fmt.Errorf("dns: put public %s: %w", source, err)
		}
		if seen[n.key] {
			return fmt.Errorf("dns: put public %s: two %s record sets named %s", source, n.src.Type, n.src.Name)
		}
		seen[n.key] = true
		norm = append(norm, n)
	}
	tx.publicForWrite().put(source, norm)
	return nil
}

// DeletePublic is Catalog.DeletePublic inside a batch.
func (tx *Tx) DeletePublic(source string) {
	if _, ok := tx.s.public.sources[source]; !ok {
		return
	}
	tx.publicForWrite().put(source, nil)
}

func (tx *Tx) ownZonesMap() {
	if !tx.ownZones {
		tx.s.zones = maps.Clone(tx.s.zones)
		tx.ownZones = true
	}
}

func (tx *Tx) ownLinksMap() {
	if !tx.ownLinks {
		tx.s.links = maps.Clone(tx.s.links)
		tx.ownLinks = true
	}
}

// zoneForWrite returns the draft's own copy of zone id, creating an unnamed
// zone if there is none.
func (tx *Tx) zoneForWrite(id ZoneID) *zone {
	tx.ownZonesMap()
	z := tx.s.zones[id]
	switch {
	case z == nil:
		z = newZone()
	case !tx.ownedZone[id]:
		z = z.clone()
	default:
		return z
	}
	tx.s.zones[id] = z
	tx.ownedZone[id] = true
	return z
}

func (tx *Tx) publicForWrite() *public {
	if !tx.ownPublic {
		tx.s.public = tx.s.public.clone()
		tx.ownPublic = true
	}
	return tx.s.public
}

// snapshot is one immutable state of the catalog.
type snapshot struct {
	zones  map[ZoneID]*zone
	links  map[LinkID]Link
	views  map[string]*view
	public *public
}

func emptySnapshot() *snapshot {
	return &snapshot{
		zones:  map[ZoneID]*zone{},
		links:  map[LinkID]Link{},
		views:  map[string]*view{},
		public: newPublic(),
	}
}

// view is what one virtual network sees: its linked zones by name.
type view struct {
	zones map[string][]viewLink // zone origin -> links, sorted by zone ID
}

type viewLink struct {
	zone     ZoneID
	redirect bool // NxDomainRedirect
}

// buildViews indexes the links by view and zone name. Links to absent or
// unnamed zones are left out. A view linked to two zones of one name (Azure
// refuses that) consults the one with the smallest ID.
func buildViews(zones map[ZoneID]*zone, links map[LinkID]Link) map[string]*view {
	views := map[string]*view{}
	for _, l := range links {
		z := zones[l.Zone]
		if z == nil || z.origin == "" {
			continue
		}
		v := views[l.View]
		if v == nil {
			v = &view{zones: map[string][]viewLink{}}
			views[l.View] = v
		}
		vl := viewLink{zone: l.Zone, redirect: l.ResolutionPolicy == PolicyNxDomainRedirect}
		if slices.Contains(v.zones[z.origin], vl) {
			continue
		}
		v.zones[z.origin] = append(v.zones[z.origin], vl)
	}
	for _, v := range views {
		for _, ls := range v.zones {
			slices.SortFunc(ls, func(a, b viewLink) int {
				if c := strings.Compare(string(a.zone), string(b.zone)); c != 0 {
					return c
				}
				// The same zone linked twice with different policies:
				// Default first, deterministically.
				switch {
				case a.redirect == b.redirect:
					return 0
				case !a.redirect:
					return -1
				default:
					return 1
				}
			})
		}
	}
	return views
}
