package privatedns

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/google/uuid"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Zones: PUT, PATCH and DELETE answer 202 with Azure-AsyncOperation (the
// router adds Location), the operation already Succeeded: the change is
// complete when the transaction commits.

func (p *Provider) getZone(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var z armprivatedns.PrivateZone
	ok, err := arm.Load(arm.ReadOnly(ctx, p.st), r.ID, &z)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, notFound(r.ID)
	}
	return arm.OK(z), nil
}

func (p *Provider) listZones(ctx context.Context, r *arm.Request) ([]any, error) {
	zs, err := arm.LoadAll[armprivatedns.PrivateZone](arm.ReadOnly(ctx, p.st), r.ID)
	if err != nil {
		return nil, err
	}
	return toAny(zs), nil
}

func (p *Provider) putZone(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	if err := ValidateZoneName(r.ID.Name()); err != nil {
		return nil, err
	}
	var in armprivatedns.PrivateZone
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := locationError(in.Location, ZoneType); err != nil {
		return nil, err
	}
	if err := arm.ValidateTags(in.Tags); err != nil {
		return nil, err
	}
	var op *arm.Operation
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		var cur armprivatedns.PrivateZone
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, deref(cur.Etag)); err != nil {
			return err
		}
		if exists {
			cur.Tags, cur.Etag = in.Tags, ptr(newETag())
			if err := arm.Save(tx, r.ID, &cur); err != nil {
				return err
			}
		} else if err := createZone(tx, r.ID, in.Tags); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, Location, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("put private DNS zone %s: %w", r.ID, err)
	}
	return &arm.Response{Status: http.StatusAccepted, Op: op}, nil
}

// createZone writes a new zone and its SOA record set "@", as Azure does.
func createZone(tx store.Tx, id arm.ResourceID, tags map[string]*string) error {
	z := armprivatedns.PrivateZone{
		ID: ptr(id.String()), Name: ptr(id.Name()), Type: ptr(ZoneType),
		Etag: ptr(newETag()), Location: ptr(Location), Tags: tags,
		Properties: &armprivatedns.PrivateZoneProperties{
			InternalID:                                     ptr(internalID()),
			MaxNumberOfRecordSets:                          ptr[int64](MaxRecordSets),
			MaxNumberOfVirtualNetworkLinks:                 ptr[int64](MaxVirtualNetworkLinks),
			MaxNumberOfVirtualNetworkLinksWithRegistration: ptr[int64](MaxRegistrationLinks),
			NumberOfRecordSets:                             ptr[int64](0),
			NumberOfVirtualNetworkLinks:                    ptr[int64](0),
			NumberOfVirtualNetworkLinksWithRegistration:    ptr[int64](0),
			ProvisioningState:                              ptr(provisioningSucceeded),
		},
	}
	soa := armprivatedns.RecordSetProperties{TTL: ptr[int64](soaTTL), SoaRecord: defaultSOA()}
	_, err := writeRecordSet(tx, &z, id, RecordSetID(id, armprivatedns.RecordTypeSOA, "@"), nil, &soa, false)
	return err
}

// internalID is an opaque zone identity in Azure's format: base64 of
// "ImmutableZoneIdentity;{guid};0".
func internalID() string {
	return base64.StdEncoding.EncodeToString([]byte("ImmutableZoneIdentity;" + uuid.NewString() + ";0"))
}

func (p *Provider) patchZone(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in armprivatedns.PrivateZone
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.Location != nil {
		if err := locationError(in.Location, ZoneType); err != nil {
			return nil, err
		}
	}
	if err := arm.ValidateTags(in.Tags); err != nil {
		return nil, err
	}
	var op *arm.Operation
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		var cur armprivatedns.PrivateZone
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if !exists {
			return notFound(r.ID)
		}
		if err := r.CheckPreconditions(exists, deref(cur.Etag)); err != nil {
			return err
		}
		if in.Tags != nil {
			cur.Tags = in.Tags
		}
		cur.Etag = ptr(newETag())
		if err := arm.Save(tx, r.ID, &cur); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, Location, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("patch private DNS zone %s: %w", r.ID, err)
	}
	return &arm.Response{Status: http.StatusAccepted, Op: op}, nil
}

// deleteZone refuses while links exist, as Azure does (409
// CannotDeleteResource, seen in learntocloud/networking-lab#8), and
// otherwise removes the zone with all its record sets.
func (p *Provider) deleteZone(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var op *arm.Operation
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		op = nil
		var cur armprivatedns.PrivateZone
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, deref(cur.Etag)); err != nil || !exists {
			return err
		}
		links, err := arm.LoadAll[armprivatedns.VirtualNetworkLink](tx, collection(r.ID, linksSegment))
		if err != nil {
			return err
		}
		if len(links) > 0 {
			var nested []string
			for i, l := range links {
				if i == 3 {
					break
				}
				nested = append(nested, fmt.Sprintf("'%s/%s/%s/%s'", ZoneType, deref(cur.Name), linksSegment, deref(l.Name)))
			}
			return arm.Conflict("CannotDeleteResource",
				"Cannot delete resource while nested resources exist. Some existing nested resource IDs include: %s. Please delete all nested resources before deleting this resource.",
				strings.Join(nested, ", "))
		}
		if err := arm.Delete(tx, r.ID); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, Location, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete private DNS zone %s: %w", r.ID, err)
	}
	if op == nil {
		return &arm.Response{Status: http.StatusNoContent}, nil
	}
	return &arm.Response{Status: http.StatusAccepted, Op: op}, nil
}

// beforeGroupDelete releases what a zone holds outside its own documents
// when its resource group goes: the virtual-network index entries of its
// links. The group's deletion removes the zone, its links and its record
// sets (arm.Delete covers every child type of the zone).
func beforeGroupDelete(tx store.Tx, zone arm.ResourceID) error {
	links, err := arm.LoadAll[armprivatedns.VirtualNetworkLink](tx, collection(zone, linksSegment))
	if err != nil {
		return fmt.Errorf("release links of %s: %w", zone, err)
	}
	for _, l := range links {
		if err := unindexLink(tx, &l); err != nil {
			return fmt.Errorf("release links of %s: %w", zone, err)
		}
	}
	return nil
}

// loadZone reads the zone a child resource belongs to, inside tx.
func loadZone(tx store.Tx, zoneID arm.ResourceID) (*armprivatedns.PrivateZone, error) {
	var z armprivatedns.PrivateZone
	ok, err := arm.Load(tx, zoneID, &z)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, parentNotFound(zoneID)
	}
	if z.Properties == nil {
		z.Properties = &armprivatedns.PrivateZoneProperties{}
	}
	return &z, nil
}

// addCount adds d to one of a zone's counters.
func addCount(c **int64, d int64) { *c = ptr(max(deref(*c)+d, 0)) }
