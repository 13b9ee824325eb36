package dnsresolver

import (
	"context"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/dnsresolver/armdnsresolver"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// DNS resolvers. Rules, with Azure's answers where known:
//   - properties.virtualNetwork.id is required and must name an existing
//     network of the same location; it cannot change after creation;
//   - a resolver that still has inbound endpoints cannot be deleted (409),
//     so no endpoint is left without its resolver;
//   - dnsResolverState is Connected while the network exists, else
//     Disconnected (computed on read).

func (p *Provider) getResolver(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	rd := arm.ReadOnly(ctx, p.st)
	var v armdnsresolver.DNSResolver
	ok, err := arm.Load(rd, r.ID, &v)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, arm.NotFound(r.ID)
	}
	return arm.OK(resolverView(rd, v)), nil
}

func (p *Provider) listResolvers(ctx context.Context, r *arm.Request) ([]any, error) {
	rd := arm.ReadOnly(ctx, p.st)
	vs, err := arm.LoadAll[armdnsresolver.DNSResolver](rd, r.ID)
	if err != nil {
		return nil, err
	}
	for i := range vs {
		vs[i] = resolverView(rd, vs[i])
	}
	return toAny(vs), nil
}

// resolverView fills in what a GET computes: dnsResolverState.
func resolverView(rd arm.Reader, v armdnsresolver.DNSResolver) armdnsresolver.DNSResolver {
	if v.Properties == nil {
		return v
	}
	props := *v.Properties
	v.Properties = &props
	state := armdnsresolver.DNSResolverStateDisconnected
	if props.VirtualNetwork != nil {
		if id, err := arm.ParseID(str(props.VirtualNetwork.ID)); err == nil {
			if ok, err := arm.Exists(rd, id); err == nil && ok {
				state = armdnsresolver.DNSResolverStateConnected
			}
		}
	}
	props.DNSResolverState = &state
	return v
}

func (p *Provider) putResolver(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	if err := arm.ValidateNetworkName("DNS resolver", r.ID.Name()); err != nil {
		return nil, err
	}
	var in armdnsresolver.DNSResolver
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := arm.ValidateLocation(in.Location); err != nil {
		return nil, err
	}
	if err := arm.ValidateTags(in.Tags); err != nil {
		return nil, err
	}
	if in.Properties == nil || in.Properties.VirtualNetwork == nil || str(in.Properties.VirtualNetwork.ID) == "" {
		return nil, arm.BadRequest("MissingRequiredProperty", "properties.virtualNetwork.id",
			"A DNS resolver needs properties.virtualNetwork.id, the ID of the virtual network it serves.")
	}
	vnetRef, err := arm.ParseID(*in.Properties.VirtualNetwork.ID)
	if err != nil || !strings.EqualFold(vnetRef.Type(), vnetType) {
		return nil, arm.InvalidParameter("properties.virtualNetwork.id",
			"'%s' is not a virtual network ID (/subscriptions/{id}/resourceGroups/{group}/providers/Microsoft.Network/virtualNetworks/{name}).", *in.Properties.VirtualNetwork.ID)
	}
	loc := normLocation(str(in.Location))
	var (
		body    armdnsresolver.DNSResolver
		op      *arm.Operation
		created bool
	)
	_, err = p.st.Txn(ctx, func(tx store.Tx) error {
		var cur armdnsresolver.DNSResolver
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, str(cur.Etag)); err != nil {
			return err
		}
		created = !exists
		var vnet armnetwork.VirtualNetwork
		found, err := arm.Load(tx, vnetRef, &vnet)
		if err != nil {
			return err
		}
		if !found {
			return arm.BadRequest("InvalidVirtualNetwork", "properties.virtualNetwork.id",
				"Virtual network '%s' was not found. Create it first, or name an existing network.", vnetRef)
		}
		if normLocation(str(vnet.Location)) != loc {
			return arm.BadRequest("InvalidVirtualNetwork", "properties.virtualNetwork.id",
				"Virtual network '%s' is in location '%s'; a DNS resolver must be in its network's location, not '%s'.", vnetRef, normLocation(str(vnet.Location)), loc)
		}
		canonVNet := str(vnet.ID)
		next := armdnsresolver.DNSResolver{
			ID: ptr(r.ID.String()), Name: ptr(r.ID.Name()), Type: ptr(ResolverType),
			Location: ptr(loc), Tags: in.Tags, Etag: ptr(arm.NewETag()),
			Properties: &armdnsresolver.Properties{
				VirtualNetwork:    &armdnsresolver.SubResource{ID: ptr(canonVNet)},
				ProvisioningState: &provisioningSucceeded,
				ResourceGUID:      newGUID(),
			},
		}
		if exists {
			if normLocation(str(cur.Location)) != loc {
				return arm.BadRequest("InvalidResourceLocation", "location",
					"The resource '%s' already exists in location '%s'. A resource with the same name cannot be created in location '%s'. Delete it first or choose another name.",
					r.ID.Name(), str(cur.Location), loc)
			}
			if cp := cur.Properties; cp != nil && cp.VirtualNetwork != nil && !strings.EqualFold(str(cp.VirtualNetwork.ID), canonVNet) {
				return arm.BadRequest("InvalidVirtualNetwork", "properties.virtualNetwork.id",
					"The virtual network of DNS resolver '%s' cannot be changed after creation (it is '%s'). Create another resolver instead.", r.ID.Name(), str(cp.VirtualNetwork.ID))
			}
			next.ID, next.Name = cur.ID, cur.Name
			if cur.Properties != nil && cur.Properties.ResourceGUID != nil {
				next.Properties.ResourceGUID = cur.Properties.ResourceGUID
			}
		}
		if err := arm.Save(tx, r.ID, next); err != nil {
			return err
		}
		body = resolverView(tx, next)
		op, err = arm.StartOperation(tx, r.ID, loc, true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("put DNS resolver %s: %w", r.ID, err)
	}
	return accepted(created, body, op), nil
}

// patchResolver updates tags, the only property a PATCH may change.
func (p *Provider) patchResolver(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in armdnsresolver.Patch
	return patchTags(ctx, p.st, r, &in, func() map[string]*string { return in.Tags }, resolverMeta, resolverView)
}

func (p *Provider) deleteResolver(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	return deleteDoc(ctx, p.st, r, resolverMeta, func(tx store.Tx, _ *armdnsresolver.DNSResolver) error {
		eps, err := arm.LoadAll[armdnsresolver.InboundEndpoint](tx, r.ID.ChildCollection(inboundSegment))
		if err != nil {
			return err
		}
		if len(eps) > 0 {
			names := make([]string, len(eps))
			for i, e := range eps {
				names[i] = str(e.ID)
			}
			return arm.Conflict("ResourceHasChildren",
				"DNS resolver '%s' still has inbound endpoints (%s). Delete them first.", r.ID.Name(), strings.Join(names, ", "))
		}
		return nil
	})
}

func resolverMeta(v *armdnsresolver.DNSResolver) meta {
	return meta{etag: &v.Etag, tags: &v.Tags, location: &v.Location}
}
