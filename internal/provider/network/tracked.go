package network

import (
	"context"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// The generic handlers of a tracked (top-level) Microsoft.Network resource
// type: GET, list, PATCH of tags and DELETE, written once for every type
// in the spirit of kube-apiserver's generic registry store. What differs
// between types is the strategy (tracked): how a stored document is shown
// (its view), and what a deletion must check or release first. PUTs stay
// with each type: they are where the types really differ.

// tracked is the strategy of a tracked type whose documents are T.
type tracked[T any] struct {
	p *Provider
	// meta gives the document's etag, location and tags.
	meta func(*T) docMeta
	// view composes a stored document with what is computed at read time
	// (back-references, child lists); nil shows it as stored.
	view func(r arm.Reader, v T, u *usage) (T, error)
	// patchable refuses a PATCH of cur (a managed resource); nil allows it.
	patchable func(id arm.ResourceID, cur *T) error
	// beforeDelete runs in the delete's transaction before the document
	// goes: it refuses a deletion (the resource is in use) or releases
	// what the resource holds elsewhere; nil does nothing.
	beforeDelete func(tx store.Tx, u *usage, id arm.ResourceID, cur *T) error
}

// docMeta points into a document's envelope.
type docMeta struct {
	id, name, etag, location **string
	tags                     *map[string]*string
}

func (t tracked[T]) show(r arm.Reader, v T, u func() *usage) (T, error) {
	if t.view == nil {
		return v, nil
	}
	return t.view(r, v, u())
}

func (t tracked[T]) get(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	rd := arm.ReadOnly(ctx, t.p.st)
	var v T
	ok, err := arm.Load(rd, r.ID, &v)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, arm.NotFound(r.ID)
	}
	body, err := t.show(rd, v, func() *usage { return t.p.newUsage(rd, r.ID.Subscription) })
	if err != nil {
		return nil, err
	}
	return arm.OK(body), nil
}

func (t tracked[T]) list(ctx context.Context, r *arm.Request) ([]any, error) {
	rd := arm.ReadOnly(ctx, t.p.st)
	all, err := arm.LoadAll[T](rd, r.ID)
	if err != nil {
		return nil, err
	}
	var u *usage // one for the whole list, made once it is needed
	usageOnce := func() *usage {
		if u == nil {
			u = t.p.newUsage(rd, r.ID.Subscription)
		}
		return u
	}
	out := make([]any, 0, len(all))
	for _, v := range all {
		body, err := t.show(rd, v, usageOnce)
		if err != nil {
			return nil, err
		}
		out = append(out, body)
	}
	return out, nil
}

func (t tracked[T]) patch(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var body T
	err := t.p.patchTags(ctx, r, func(tx store.Tx, tags map[string]*string, set bool) error {
		var v T
		m := t.meta(&v)
		if err := loadForPatch(tx, r, &v, func() string { return str(*m.etag) }); err != nil {
			return err
		}
		if t.patchable != nil {
			if err := t.patchable(r.ID, &v); err != nil {
				return err
			}
		}
		if set {
			*m.tags = tags
		}
		*m.etag = ptr(arm.NewETag())
		if err := arm.Save(tx, r.ID, &v); err != nil {
			return err
		}
		var err error
		body, err = t.show(tx, v, func() *usage { return t.p.newUsage(tx, r.ID.Subscription) })
		return err
	})
	if err != nil {
		return nil, err
	}
	return arm.OK(body), nil
}

func (t tracked[T]) delete(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var op *arm.Operation
	_, err := t.p.st.Txn(ctx, func(tx store.Tx) error {
		op = nil
		var cur T
		m := t.meta(&cur)
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, str(*m.etag)); err != nil {
			return err
		}
		if !exists {
			return nil
		}
		if t.beforeDelete != nil {
			if err := t.beforeDelete(tx, t.p.newUsage(tx, r.ID.Subscription), r.ID, &cur); err != nil {
				return err
			}
		}
		if err := arm.Delete(tx, r.ID); err != nil {
			return err
		}
		_, done := t.p.settle(r.ID, true)
		op, err = arm.StartOperation(tx, r.ID, str(*m.location), done)
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

// register fills in a resource type's generic handlers.
func (t tracked[T]) register(rt *arm.ResourceType) *arm.ResourceType {
	rt.Get, rt.List, rt.Patch, rt.Delete = t.get, t.list, t.patch, t.delete
	return rt
}

// The strategies of the tracked types (tracked.go).

func (p *Provider) vnets() tracked[armnetwork.VirtualNetwork] {
	return tracked[armnetwork.VirtualNetwork]{p: p,
		meta: func(v *armnetwork.VirtualNetwork) docMeta {
			return docMeta{id: &v.ID, name: &v.Name, etag: &v.Etag, location: &v.Location, tags: &v.Tags}
		},
		view: vnetView,
		beforeDelete: func(_ store.Tx, u *usage, _ arm.ResourceID, v *armnetwork.VirtualNetwork) error {
			refs, err := u.inVNet(str(v.ID))
			if err != nil {
				return err
			}
			return vnetInUse(refs)
		}}
}

func (p *Provider) nsgs() tracked[armnetwork.SecurityGroup] {
	return tracked[armnetwork.SecurityGroup]{p: p,
		meta: func(v *armnetwork.SecurityGroup) docMeta {
			return docMeta{id: &v.ID, name: &v.Name, etag: &v.Etag, location: &v.Location, tags: &v.Tags}
		},
		view: nsgView,
		beforeDelete: func(_ store.Tx, u *usage, _ arm.ResourceID, v *armnetwork.SecurityGroup) error {
			users, err := nsgUsers(u, str(v.ID))
			if err != nil {
				return err
			}
			if len(users) > 0 {
				return errNSGInUse(str(v.ID), users)
			}
			return nil
		}}
}

func (p *Provider) asgs() tracked[armnetwork.ApplicationSecurityGroup] {
	return tracked[armnetwork.ApplicationSecurityGroup]{p: p,
		meta: func(v *armnetwork.ApplicationSecurityGroup) docMeta {
			return docMeta{id: &v.ID, name: &v.Name, etag: &v.Etag, location: &v.Location, tags: &v.Tags}
		},
		beforeDelete: func(_ store.Tx, u *usage, _ arm.ResourceID, v *armnetwork.ApplicationSecurityGroup) error {
			users, err := u.asgUsers(str(v.ID))
			if err != nil {
				return err
			}
			if len(users) > 0 {
				return errASGInUse(str(v.ID), users)
			}
			return nil
		}}
}

func (p *Provider) routeTables() tracked[armnetwork.RouteTable] {
	return tracked[armnetwork.RouteTable]{p: p,
		meta: func(v *armnetwork.RouteTable) docMeta {
			return docMeta{id: &v.ID, name: &v.Name, etag: &v.Etag, location: &v.Location, tags: &v.Tags}
		},
		view: routeTableView,
		beforeDelete: func(_ store.Tx, u *usage, _ arm.ResourceID, v *armnetwork.RouteTable) error {
			users, err := u.subnetsReferencing(str(v.ID), false)
			if err != nil {
				return err
			}
			if len(users) > 0 {
				return errRouteTableInUse(str(v.ID), users)
			}
			return nil
		}}
}

// nics: the NIC of a private endpoint is the endpoint's to change. The
// addresses go with the document: nothing else holds them.
func (p *Provider) nics() tracked[armnetwork.Interface] {
	managed := func(verb string) func(arm.ResourceID, *armnetwork.Interface) error {
		return func(id arm.ResourceID, v *armnetwork.Interface) error {
			return checkUnmanaged(id, v, verb)
		}
	}
	return tracked[armnetwork.Interface]{p: p,
		meta: func(v *armnetwork.Interface) docMeta {
			return docMeta{id: &v.ID, name: &v.Name, etag: &v.Etag, location: &v.Location, tags: &v.Tags}
		},
		patchable: managed("modified"),
		beforeDelete: func(_ store.Tx, _ *usage, id arm.ResourceID, v *armnetwork.Interface) error {
			return managed("deleted")(id, v)
		}}
}

// endpoints: an endpoint shows its NIC's provisioningState; deleting it
// releases its connection, NIC and zone group index entry.
func (p *Provider) endpoints() tracked[armnetwork.PrivateEndpoint] {
	return tracked[armnetwork.PrivateEndpoint]{p: p,
		meta: func(v *armnetwork.PrivateEndpoint) docMeta {
			return docMeta{id: &v.ID, name: &v.Name, etag: &v.Etag, location: &v.Location, tags: &v.Tags}
		},
		view: func(r arm.Reader, v armnetwork.PrivateEndpoint, _ *usage) (armnetwork.PrivateEndpoint, error) {
			return endpointView(r, v)
		},
		beforeDelete: func(tx store.Tx, _ *usage, id arm.ResourceID, v *armnetwork.PrivateEndpoint) error {
			return releaseEndpoint(tx, id, v)
		}}
}

// putWrite is what a tracked type's PUT builds its document from.
type putWrite[T any] struct {
	in, cur *T // cur is nil on create
	id      arm.ResourceID
	name    string
	guid    *string // the resource's GUID: kept on update, new on create
	state   armnetwork.ProvisioningState
	loc     string // normalized
	etag    string // the new ETag
}

// put serves a PUT of a tracked type: the body decoded and its envelope
// (name, location, tags) checked, then in one transaction the
// preconditions, the location rule, the resource's identity, build's
// document (build may write children too), saved and shown. guidOf reads
// a document's resource GUID (nil for types without one).
func (t tracked[T]) put(ctx context.Context, r *arm.Request, kind string, guidOf func(*T) *string,
	build func(tx store.Tx, w putWrite[T]) (*T, error)) (*arm.Response, error) {
	var in T
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	im := t.meta(&in)
	if err := validateEnvelope(kind, r.ID, *im.location, *im.tags); err != nil {
		return nil, err
	}
	var (
		body    T
		op      *arm.Operation
		created bool
	)
	_, err := t.p.st.Txn(ctx, func(tx store.Tx) error {
		var cur T
		cm := t.meta(&cur)
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, str(*cm.etag)); err != nil {
			return err
		}
		created = !exists
		if err := checkLocation(r.ID, str(*cm.location), str(*im.location)); err != nil {
			return err
		}
		var guid *string
		if exists && guidOf != nil {
			guid = guidOf(&cur)
		}
		id, name, guid, err := identity(tx, r, exists, str(*cm.id), str(*cm.name), guid)
		if err != nil {
			return err
		}
		if guidOf == nil {
			guid = nil
		}
		state, done := t.p.settle(r.ID, false)
		w := putWrite[T]{in: &in, id: id, name: name, guid: guid, state: state, loc: normLocation(str(*im.location)), etag: arm.NewETag()}
		if exists {
			w.cur = &cur
		}
		doc, err := build(tx, w)
		if err != nil {
			return err
		}
		if err := arm.Save(tx, r.ID, doc); err != nil {
			return err
		}
		if body, err = t.show(tx, *doc, func() *usage { return t.p.newUsage(tx, r.ID.Subscription) }); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, w.loc, done)
		return err
	})
	if err != nil {
		return nil, err
	}
	return accepted(created, body, op), nil
}
