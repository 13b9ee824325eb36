package privatedns

import (
	"cmp"
	"context"
	"fmt"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Virtual network links: PUT, PATCH and DELETE answer 202 with
// Azure-AsyncOperation, the operation already Succeeded. Rules, with
// Azure's answers:
//   - the network must exist when this store knows its subscription: 400
//     BadRequest "Virtual network resource not found for '<id>'"
//     (Azure/azure-cli#23351); a network of an unknown subscription is
//     linked as Azure links one of another tenant;
//   - one link per (zone, network): 409 Conflict "Private zone '<zone>' is
//     already linked to the virtual network '<id>'."
//     (ansible-collections/azure#813);
//   - one zone of a given name per network: 400 BadRequest "A virtual
//     network cannot be linked to multiple zones with overlapping
//     namespaces..." (MicrosoftDocs/azure-aks-docs#212);
//   - one registration-enabled link per network: 409 Conflict "A virtual
//     network can only be linked to 1 Private DNS zone(s) with
//     auto-registration enabled; conflicting Private DNS zone is '<zone>'."
//     (Azure/terraform-azurerm-caf-enterprise-scale#157).

func (p *Provider) getLink(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var l armprivatedns.VirtualNetworkLink
	ok, err := arm.Load(arm.ReadOnly(ctx, p.st), r.ID, &l)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, notFound(r.ID)
	}
	return arm.OK(l), nil
}

func (p *Provider) listLinks(ctx context.Context, r *arm.Request) ([]any, error) {
	ls, err := arm.LoadAll[armprivatedns.VirtualNetworkLink](arm.ReadOnly(ctx, p.st), r.ID)
	if err != nil {
		return nil, err
	}
	return toAny(ls), nil
}

func (p *Provider) putLink(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	if err := arm.ValidateNetworkName("virtual network link", r.ID.Name()); err != nil {
		return nil, err
	}
	var in armprivatedns.VirtualNetworkLink
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := locationError(in.Location, LinkType); err != nil {
		return nil, err
	}
	if err := arm.ValidateTags(in.Tags); err != nil {
		return nil, err
	}
	props := deref(in.Properties)
	if props.VirtualNetwork == nil || deref(props.VirtualNetwork.ID) == "" {
		return nil, badRequest("properties.virtualNetwork.id", "The link needs properties.virtualNetwork.id, the ID of the virtual network to link.")
	}
	vnet, err := parseVNetID(*props.VirtualNetwork.ID)
	if err != nil {
		return nil, err
	}
	policy, err := resolutionPolicy(props.ResolutionPolicy)
	if err != nil {
		return nil, err
	}
	var op *arm.Operation
	_, err = p.st.Txn(ctx, func(tx store.Tx) error {
		cur, err := loadLink(tx, r.ID)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(cur != nil, linkETag(cur)); err != nil {
			return err
		}
		next := &armprivatedns.VirtualNetworkLink{
			ID: ptr(r.ID.String()), Name: ptr(r.ID.Name()), Type: ptr(LinkType),
			Location: ptr(Location), Tags: in.Tags,
			Properties: &armprivatedns.VirtualNetworkLinkProperties{
				VirtualNetwork:      &armprivatedns.SubResource{ID: ptr(vnet.String())},
				RegistrationEnabled: ptr(deref(props.RegistrationEnabled)),
				ResolutionPolicy:    ptr(policy),
			},
		}
		if cur != nil {
			next.ID, next.Name = cur.ID, cur.Name // the name keeps its first casing
		}
		if err := writeLink(tx, r.ID, cur, next); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, Location, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("put virtual network link %s: %w", r.ID, err)
	}
	return &arm.Response{Status: http.StatusAccepted, Op: op}, nil
}

func (p *Provider) patchLink(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in armprivatedns.VirtualNetworkLink
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.Location != nil {
		if err := locationError(in.Location, LinkType); err != nil {
			return nil, err
		}
	}
	if err := arm.ValidateTags(in.Tags); err != nil {
		return nil, err
	}
	props := deref(in.Properties)
	var vnet *arm.ResourceID
	if props.VirtualNetwork != nil && props.VirtualNetwork.ID != nil {
		v, err := parseVNetID(*props.VirtualNetwork.ID)
		if err != nil {
			return nil, err
		}
		vnet = &v
	}
	var policy armprivatedns.ResolutionPolicy
	if props.ResolutionPolicy != nil {
		var err error
		if policy, err = resolutionPolicy(props.ResolutionPolicy); err != nil {
			return nil, err
		}
	}
	var op *arm.Operation
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		cur, err := loadLink(tx, r.ID)
		if err != nil {
			return err
		}
		if cur == nil {
			return notFound(r.ID)
		}
		if err := r.CheckPreconditions(true, linkETag(cur)); err != nil {
			return err
		}
		next := *cur
		np := deref(cur.Properties)
		next.Properties = &np
		if in.Tags != nil {
			next.Tags = in.Tags
		}
		if vnet != nil {
			np.VirtualNetwork = &armprivatedns.SubResource{ID: ptr(vnet.String())}
		}
		if props.RegistrationEnabled != nil {
			np.RegistrationEnabled = ptr(*props.RegistrationEnabled)
		}
		if props.ResolutionPolicy != nil {
			np.ResolutionPolicy = ptr(policy)
		}
		if err := writeLink(tx, r.ID, cur, &next); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, Location, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("patch virtual network link %s: %w", r.ID, err)
	}
	return &arm.Response{Status: http.StatusAccepted, Op: op}, nil
}

func (p *Provider) deleteLink(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var op *arm.Operation
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		op = nil
		cur, err := loadLink(tx, r.ID)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(cur != nil, linkETag(cur)); err != nil || cur == nil {
			return err
		}
		zoneID := zoneOf(r.ID)
		zone, err := loadZone(tx, zoneID)
		if err != nil {
			return err
		}
		if err := arm.Delete(tx, r.ID); err != nil {
			return err
		}
		if err := unindexLink(tx, cur); err != nil {
			return err
		}
		addCount(&zone.Properties.NumberOfVirtualNetworkLinks, -1)
		if registrationEnabled(cur) {
			addCount(&zone.Properties.NumberOfVirtualNetworkLinksWithRegistration, -1)
		}
		if err := arm.Save(tx, zoneID, zone); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, Location, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete virtual network link %s: %w", r.ID, err)
	}
	if op == nil {
		return &arm.Response{Status: http.StatusNoContent}, nil
	}
	return &arm.Response{Status: http.StatusAccepted, Op: op}, nil
}

// writeLink checks the link rules for next (replacing cur, nil when
// creating) and saves the link, its index entry and the zone's counters.
func writeLink(tx store.Tx, id arm.ResourceID, cur, next *armprivatedns.VirtualNetworkLink) error {
	zoneID := zoneOf(id)
	zone, err := loadZone(tx, zoneID)
	if err != nil {
		return err
	}
	vnet, err := linkVNet(next)
	if err != nil {
		return err
	}
	if cur != nil {
		old, err := linkVNet(cur)
		if err != nil {
			return err
		}
		if !old.Equal(vnet) {
			return badRequest("properties.virtualNetwork.id",
				"The virtual network of link '%s' cannot be changed from '%s' to '%s'; delete the link and create a new one.", id.Name(), old, vnet)
		}
	} else if err := checkVNetExists(tx, id, vnet); err != nil {
		return err
	}
	reg := registrationEnabled(next)
	if err := checkVNetRules(tx, id, zoneID, vnet, reg); err != nil {
		return err
	}
	props := zone.Properties
	if cur == nil {
		if n := deref(props.NumberOfVirtualNetworkLinks); n >= MaxVirtualNetworkLinks {
			return conflict("The zone '%s' has %d virtual network links, its limit.", zoneID.Name(), n)
		}
		addCount(&props.NumberOfVirtualNetworkLinks, 1)
	}
	wasReg := cur != nil && registrationEnabled(cur)
	switch {
	case reg && !wasReg:
		if n := deref(props.NumberOfVirtualNetworkLinksWithRegistration); n >= MaxRegistrationLinks {
			return conflict("The zone '%s' has %d virtual network links with auto-registration enabled, its limit.", zoneID.Name(), n)
		}
		addCount(&props.NumberOfVirtualNetworkLinksWithRegistration, 1)
	case wasReg && !reg:
		addCount(&props.NumberOfVirtualNetworkLinksWithRegistration, -1)
	}
	if cur == nil {
		// The ID spells the zone as the zone's own ID does.
		next.ID = ptr(cmp.Or(deref(zone.ID), zoneID.String()) + "/" + linksSegment + "/" + id.Name())
	}
	next.Etag = ptr(newETag())
	next.Properties.VirtualNetworkLinkState = ptr(armprivatedns.VirtualNetworkLinkStateCompleted)
	next.Properties.ProvisioningState = ptr(provisioningSucceeded)
	if err := arm.Save(tx, id, next); err != nil {
		return err
	}
	if err := arm.Save(tx, zoneID, zone); err != nil {
		return err
	}
	return indexLink(tx, vnet, id, deref(next.ID))
}

func loadLink(r arm.Reader, id arm.ResourceID) (*armprivatedns.VirtualNetworkLink, error) {
	var l armprivatedns.VirtualNetworkLink
	ok, err := arm.Load(r, id, &l)
	if err != nil || !ok {
		return nil, err
	}
	if l.Properties == nil {
		l.Properties = &armprivatedns.VirtualNetworkLinkProperties{}
	}
	return &l, nil
}

func linkETag(l *armprivatedns.VirtualNetworkLink) string {
	if l == nil {
		return ""
	}
	return deref(l.Etag)
}

func registrationEnabled(l *armprivatedns.VirtualNetworkLink) bool {
	return l != nil && l.Properties != nil && deref(l.Properties.RegistrationEnabled)
}
