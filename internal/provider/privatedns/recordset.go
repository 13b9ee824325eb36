package privatedns

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Record sets are synchronous: PUT 201 (create) or 200 (update), PATCH 200,
// DELETE 200 (or 204 when there was nothing to delete). armprivatedns
// inserts the record set name into the path unescaped, so "@" and dotted
// names arrive literally.

// RecordSetID returns the ID of the record set (typ, name) of a zone; name
// is relative to the zone, "@" for the apex, and is lower-cased.
func RecordSetID(zone arm.ResourceID, typ armprivatedns.RecordType, name string) arm.ResourceID {
	return zone.Child(string(typ), strings.ToLower(name))
}

// recordTypeOf returns the record type of a record set ID or collection.
func recordTypeOf(id arm.ResourceID) armprivatedns.RecordType {
	return armprivatedns.RecordType(strings.ToUpper(id.Types[len(id.Types)-1]))
}

func (p *Provider) getRecordSet(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var rs armprivatedns.RecordSet
	ok, err := arm.Load(arm.ReadOnly(ctx, p.st), r.ID, &rs)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, notFound(r.ID)
	}
	return arm.OK(rs), nil
}

func (p *Provider) listRecordSetsByType(ctx context.Context, r *arm.Request) ([]any, error) {
	sets, err := arm.LoadAll[*armprivatedns.RecordSet](arm.ReadOnly(ctx, p.st), r.ID)
	if err != nil {
		return nil, err
	}
	return toAny(filterSuffix(sets, r)), nil
}

func (p *Provider) listAllRecordSets(ctx context.Context, r *arm.Request) ([]any, error) {
	sets, err := RecordSets(arm.ReadOnly(ctx, p.st), zoneOf(r.ID))
	if err != nil {
		return nil, err
	}
	return toAny(filterSuffix(sets, r)), nil
}

// filterSuffix applies $recordsetnamesuffix: only the record sets whose
// name is the suffix or ends with "."+suffix ("@" selects the apex).
func filterSuffix(sets []*armprivatedns.RecordSet, r *arm.Request) []*armprivatedns.RecordSet {
	suffix := strings.Trim(strings.ToLower(r.HTTP.URL.Query().Get("$recordsetnamesuffix")), ".")
	if suffix == "" {
		return sets
	}
	return slices.DeleteFunc(sets, func(rs *armprivatedns.RecordSet) bool {
		n := deref(rs.Name)
		return n != suffix && !strings.HasSuffix(n, "."+suffix)
	})
}

func (p *Provider) putRecordSet(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	typ := recordTypeOf(r.ID)
	zoneID := zoneOf(r.ID)
	name, err := recordSetName(r.ID.Name(), zoneID.Name())
	if err != nil {
		return nil, err
	}
	if typ == armprivatedns.RecordTypeSOA && name != "@" {
		return nil, badRequest("relativeRecordSetName", "The SOA record set exists only at the zone apex '@'; '%s' cannot hold one.", name)
	}
	var in armprivatedns.RecordSet
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	id := RecordSetID(zoneID, typ, name)
	status := http.StatusCreated
	var out *armprivatedns.RecordSet
	_, err = p.st.Txn(ctx, func(tx store.Tx) error {
		zone, err := loadZone(tx, zoneID)
		if err != nil {
			return err
		}
		cur, err := loadRecordSet(tx, id)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(cur != nil, etagOf(cur)); err != nil {
			return err
		}
		status = http.StatusCreated
		if cur != nil {
			status = http.StatusOK
		}
		out, err = writeRecordSet(tx, zone, zoneID, id, cur, in.Properties, false)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("put record set %s: %w", id, err)
	}
	return &arm.Response{Status: status, Body: out}, nil
}

func (p *Provider) patchRecordSet(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in armprivatedns.RecordSet
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	zoneID := zoneOf(r.ID)
	id := RecordSetID(zoneID, recordTypeOf(r.ID), r.ID.Name())
	var out *armprivatedns.RecordSet
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		zone, err := loadZone(tx, zoneID)
		if err != nil {
			return err
		}
		cur, err := loadRecordSet(tx, id)
		if err != nil {
			return err
		}
		if cur == nil {
			return notFound(id)
		}
		if err := r.CheckPreconditions(true, etagOf(cur)); err != nil {
			return err
		}
		out, err = writeRecordSet(tx, zone, zoneID, id, cur, mergeProperties(cur.Properties, in.Properties), false)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("patch record set %s: %w", id, err)
	}
	return arm.OK(out), nil
}

// mergeProperties applies a PATCH: every field present replaces the stored
// one, absent fields stay.
func mergeProperties(cur, in *armprivatedns.RecordSetProperties) *armprivatedns.RecordSetProperties {
	m := armprivatedns.RecordSetProperties{}
	if cur != nil {
		m = *cur
	}
	if in == nil {
		return &m
	}
	if in.TTL != nil {
		m.TTL = in.TTL
	}
	if in.Metadata != nil {
		m.Metadata = in.Metadata
	}
	if in.ARecords != nil {
		m.ARecords = in.ARecords
	}
	if in.AaaaRecords != nil {
		m.AaaaRecords = in.AaaaRecords
	}
	if in.CnameRecord != nil {
		m.CnameRecord = in.CnameRecord
	}
	if in.MxRecords != nil {
		m.MxRecords = in.MxRecords
	}
	if in.PtrRecords != nil {
		m.PtrRecords = in.PtrRecords
	}
	if in.SoaRecord != nil {
		m.SoaRecord = in.SoaRecord
	}
	if in.SrvRecords != nil {
		m.SrvRecords = in.SrvRecords
	}
	if in.TxtRecords != nil {
		m.TxtRecords = in.TxtRecords
	}
	return &m
}

func (p *Provider) deleteRecordSet(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	zoneID := zoneOf(r.ID)
	id := RecordSetID(zoneID, recordTypeOf(r.ID), r.ID.Name())
	deleted := false
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		cur, err := loadRecordSet(tx, id)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(cur != nil, etagOf(cur)); err != nil {
			return err
		}
		deleted, err = DeleteRecordSet(tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete record set %s: %w", id, err)
	}
	if !deleted {
		return &arm.Response{Status: http.StatusNoContent}, nil
	}
	return &arm.Response{Status: http.StatusOK}, nil
}

// SaveRecordSet creates or replaces the record set id (see RecordSetID)
// with props in tx, applying every rule of the API: the zone must exist,
// the properties must suit the type, a CNAME stands alone at its name, the
// zone's limits hold. It keeps the zone's count and gives the set a new
// ETag. Other packages write record sets only through it.
func SaveRecordSet(tx store.Tx, id arm.ResourceID, props *armprivatedns.RecordSetProperties) (*armprivatedns.RecordSet, error) {
	return saveRecordSet(tx, id, props, false)
}

// SaveAutoRegisteredRecordSet is SaveRecordSet for the records a
// registration-enabled link keeps for the network's NICs: they report
// isAutoRegistered true, as Azure's do.
func SaveAutoRegisteredRecordSet(tx store.Tx, id arm.ResourceID, props *armprivatedns.RecordSetProperties) (*armprivatedns.RecordSet, error) {
	return saveRecordSet(tx, id, props, true)
}

func saveRecordSet(tx store.Tx, id arm.ResourceID, props *armprivatedns.RecordSetProperties, auto bool) (*armprivatedns.RecordSet, error) {
	if len(id.Types) != 2 || len(id.Names) != 2 || !equalFold(id.Namespace+"/"+id.Types[0], ZoneType) {
		return nil, fmt.Errorf("save record set: %s is not a private DNS record set ID", id)
	}
	zoneID := zoneOf(id)
	name, err := recordSetName(id.Name(), zoneID.Name())
	if err != nil {
		return nil, err
	}
	typ := recordTypeOf(id)
	if _, ok := recordFields[typ]; !ok {
		return nil, fmt.Errorf("save record set %s: unknown record type %q", id, typ)
	}
	id = RecordSetID(zoneID, typ, name)
	zone, err := loadZone(tx, zoneID)
	if err != nil {
		return nil, err
	}
	cur, err := loadRecordSet(tx, id)
	if err != nil {
		return nil, err
	}
	return writeRecordSet(tx, zone, zoneID, id, cur, props, auto)
}

// DeleteRecordSet removes the record set id in tx and keeps the zone's
// count. It reports whether there was one. The SOA record set cannot be
// deleted (400, as Azure).
func DeleteRecordSet(tx store.Tx, id arm.ResourceID) (bool, error) {
	if recordTypeOf(id) == armprivatedns.RecordTypeSOA {
		return false, badRequest("recordType", "The SOA record set of a zone cannot be deleted; it goes with the zone.")
	}
	cur, err := loadRecordSet(tx, id)
	if err != nil || cur == nil {
		return false, err
	}
	zoneID := zoneOf(id)
	zone, err := loadZone(tx, zoneID)
	if err != nil {
		return false, err
	}
	if err := arm.Delete(tx, id); err != nil {
		return false, err
	}
	addCount(&zone.Properties.NumberOfRecordSets, -1)
	if err := arm.Save(tx, zoneID, zone); err != nil {
		return false, err
	}
	return true, nil
}

// writeRecordSet validates props for the record set id of zone and saves
// it; cur is the stored set, nil when creating.
func writeRecordSet(tx store.Tx, zone *armprivatedns.PrivateZone, zoneID, id arm.ResourceID, cur *armprivatedns.RecordSet, props *armprivatedns.RecordSetProperties, auto bool) (*armprivatedns.RecordSet, error) {
	typ, name := recordTypeOf(id), id.Name()
	var soa *armprivatedns.SoaRecord
	if cur != nil && cur.Properties != nil {
		soa = cur.Properties.SoaRecord
	}
	norm, err := normalizeRecordSet(typ, props, soa)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		if err := checkCNAME(tx, zoneID, typ, name); err != nil {
			return nil, err
		}
		if n := deref(zone.Properties.NumberOfRecordSets); n >= MaxRecordSets {
			return nil, conflict("The zone '%s' holds %d record sets, its limit; delete some before adding more.", deref(zone.Name), n)
		}
	}
	norm.Fqdn = ptr(fqdn(name, zoneID.Name()))
	norm.IsAutoRegistered = ptr(auto)
	rs := &armprivatedns.RecordSet{
		// The ID spells the zone as the zone's own ID does.
		ID: ptr(cmp.Or(deref(zone.ID), zoneID.String()) + "/" + string(typ) + "/" + name), Name: ptr(name), Type: ptr(ZoneType + "/" + string(typ)),
		Etag: ptr(newETag()), Properties: norm,
	}
	if err := arm.Save(tx, id, rs); err != nil {
		return nil, err
	}
	if cur == nil {
		addCount(&zone.Properties.NumberOfRecordSets, 1)
		if err := arm.Save(tx, zoneID, zone); err != nil {
			return nil, err
		}
	}
	return rs, nil
}

// checkCNAME keeps a CNAME alone at its name (RFC 1034 §3.6.2) with
// Azure's 409s (Azure DNS messages: "The CNAME record could not be created
// because another record with the same name already exists in this zone.",
// "The record could not be created because a CNAME record with the same
// name already exists in this zone.").
func checkCNAME(r arm.Reader, zoneID arm.ResourceID, typ armprivatedns.RecordType, name string) error {
	if typ != armprivatedns.RecordTypeCNAME {
		ok, err := arm.Exists(r, RecordSetID(zoneID, armprivatedns.RecordTypeCNAME, name))
		if err != nil {
			return err
		}
		if ok {
			return conflict("The record could not be created because a CNAME record with the same name ('%s') already exists in this zone.", name)
		}
		return nil
	}
	for _, t := range RecordTypes {
		if t == armprivatedns.RecordTypeCNAME {
			continue
		}
		ok, err := arm.Exists(r, RecordSetID(zoneID, t, name))
		if err != nil {
			return err
		}
		if ok {
			return conflict("The CNAME record could not be created because another record with the same name ('%s', type %s) already exists in this zone.", name, t)
		}
	}
	return nil
}

// loadRecordSet reads a record set, nil when there is none.
func loadRecordSet(r arm.Reader, id arm.ResourceID) (*armprivatedns.RecordSet, error) {
	var rs armprivatedns.RecordSet
	ok, err := arm.Load(r, id, &rs)
	if err != nil || !ok {
		return nil, err
	}
	return &rs, nil
}

func etagOf(rs *armprivatedns.RecordSet) string {
	if rs == nil {
		return ""
	}
	return deref(rs.Etag)
}
