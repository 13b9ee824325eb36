package network

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Route tables and their routes. Routes are child documents
// (routeTables/{t}/routes/{r}) composed into properties.routes when read;
// the subnets a table is associated with are derived from the subnets.

// routeWrite is what buildRoute needs to know about the write.
type routeWrite struct {
	tableID arm.ResourceID // canonical
	path    string
	state   armnetwork.ProvisioningState
	etag    string
}

// buildRoute validates a route and returns the document to store.
func buildRoute(w routeWrite, name string, in, cur *armnetwork.Route) (*armnetwork.Route, error) {
	if err := arm.ValidateNetworkName("route", name); err != nil {
		if ae, ok := arm.AsError(err); ok && w.path != "" {
			return nil, ae.WithTarget(w.path + "name")
		}
		return nil, err
	}
	if cur != nil && cur.Name != nil {
		name = *cur.Name
	}
	id := w.tableID.Child("routes", name)
	pp := w.path + "properties."
	if in.Properties == nil {
		return nil, errMissing(pp+"nextHopType", "A route's nextHopType")
	}
	props := in.Properties
	hop, err := requiredEnum(pp+"nextHopType", "A route's nextHopType", (*string)(props.NextHopType),
		enumStrings(armnetwork.PossibleRouteNextHopTypeValues()))
	if err != nil {
		return nil, err
	}
	prefix := strings.TrimSpace(str(props.AddressPrefix))
	switch {
	case prefix == "":
		return nil, errMissing(pp+"addressPrefix", "A route's addressPrefix")
	case serviceTag(prefix):
	default:
		if _, err := parsePrefix(prefix, pp+"addressPrefix", id.String()); err != nil {
			return nil, err
		}
	}
	out := &armnetwork.RoutePropertiesFormat{
		AddressPrefix: ptr(prefix), NextHopType: ptr(armnetwork.RouteNextHopType(hop)),
		HasBgpOverride: ptr(false), ProvisioningState: ptr(w.state),
	}
	nh := strings.TrimSpace(str(props.NextHopIPAddress))
	if hop == string(armnetwork.RouteNextHopTypeVirtualAppliance) {
		if nh == "" {
			return nil, errMissing(pp+"nextHopIpAddress", "NextHopIpAddress of a route whose nextHopType is VirtualAppliance")
		}
		if _, ok := parseIPv4(nh); !ok {
			return nil, errInvalid(pp+"nextHopIpAddress",
				"The nextHopIpAddress '%s' of route '%s' is not an IPv4 address; give the virtual appliance's address, e.g. 10.0.2.4.", nh, name)
		}
		out.NextHopIPAddress = ptr(nh)
	} else if nh != "" {
		return nil, errInvalid(pp+"nextHopIpAddress",
			"Route '%s' has nextHopType %s and nextHopIpAddress %s; a next hop address is only allowed with nextHopType VirtualAppliance. Remove nextHopIpAddress.",
			name, hop, nh)
	}
	return &armnetwork.Route{ID: ptr(id.String()), Name: ptr(name), Type: ptr(typeRoute), Etag: ptr(w.etag), Properties: out}, nil
}

// routeEntry is a route of a table's new set, for the conflict check.
type routeEntry struct{ name, path, prefix string }

// checkRouteConflicts refuses two routes with one address prefix.
func checkRouteConflicts(entries []routeEntry) error {
	for i := range entries {
		for j := 0; j < i; j++ {
			if strings.EqualFold(entries[i].prefix, entries[j].prefix) {
				return badRequest(codeRouteConflict, entries[i].path+"properties.addressPrefix",
					"Route %s conflicts with route %s: both have addressPrefix %s. Routes of a route table cannot have the same address prefix.",
					entries[i].name, entries[j].name, entries[i].prefix)
			}
		}
	}
	return nil
}

func routeEntryOf(rt *armnetwork.Route, path string) routeEntry {
	e := routeEntry{name: str(rt.Name), path: path}
	if rt.Properties != nil {
		e.prefix = str(rt.Properties.AddressPrefix)
	}
	return e
}

func loadRoutes(r arm.Reader, table arm.ResourceID) ([]armnetwork.Route, error) {
	return arm.LoadAll[armnetwork.Route](r, childColl(table, "routes"))
}

func (p *Provider) putRouteTable(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var raw struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	_ = json.Unmarshal(r.Body, &raw) // a malformed body is put's to answer
	_, hasRoutes := raw.Properties["routes"]
	guid := func(t *armnetwork.RouteTable) *string {
		if t.Properties == nil {
			return nil
		}
		return t.Properties.ResourceGUID
	}
	return p.routeTables().put(ctx, r, "route table", guid,
		func(tx store.Tx, w putWrite[armnetwork.RouteTable]) (*armnetwork.RouteTable, error) {
			in := w.in.Properties
			if in == nil {
				in = &armnetwork.RouteTablePropertiesFormat{}
			}
			doc := &armnetwork.RouteTable{
				ID: ptr(w.id.String()), Name: ptr(w.name), Type: ptr(typeRouteTable), Location: ptr(w.loc), Tags: w.in.Tags, Etag: ptr(w.etag),
				Properties: &armnetwork.RouteTablePropertiesFormat{
					DisableBgpRoutePropagation: ptr(boolOr(in.DisableBgpRoutePropagation, false)),
					ProvisioningState:          ptr(w.state),
					ResourceGUID:               w.guid,
				},
			}
			if hasRoutes {
				if err := writeInlineRoutes(tx, routeWrite{tableID: w.id, state: w.state, etag: w.etag}, in.Routes); err != nil {
					return nil, err
				}
			}
			return doc, nil
		})
}

// writeInlineRoutes replaces a table's routes with those of its PUT body,
// with the same omitted / [] / list semantics as a VNet's subnets.
func writeInlineRoutes(tx store.Tx, w routeWrite, in []*armnetwork.Route) error {
	existing, err := loadRoutes(tx, w.tableID)
	if err != nil {
		return err
	}
	byName := map[string]*armnetwork.Route{}
	for i := range existing {
		byName[strings.ToLower(str(existing[i].Name))] = &existing[i]
	}
	keep := map[string]bool{}
	var docs []*armnetwork.Route
	var entries []routeEntry
	for i, rt := range in {
		w.path = arm.Field("properties.routes", i) + "."
		if rt == nil || str(rt.Name) == "" {
			return errMissing(w.path+"name", "A route's name")
		}
		k := strings.ToLower(*rt.Name)
		if keep[k] {
			return errInvalid(w.path+"name", "The route name '%s' appears twice in properties.routes; give each route its own name.", *rt.Name)
		}
		keep[k] = true
		doc, err := buildRoute(w, *rt.Name, rt, byName[k])
		if err != nil {
			return err
		}
		docs = append(docs, doc)
		entries = append(entries, routeEntryOf(doc, w.path))
	}
	if err := checkRouteConflicts(entries); err != nil {
		return err
	}
	for _, e := range existing {
		if !keep[strings.ToLower(str(e.Name))] {
			if err := arm.Delete(tx, w.tableID.Child("routes", str(e.Name))); err != nil {
				return err
			}
		}
	}
	for _, d := range docs {
		if err := arm.Save(tx, w.tableID.Child("routes", str(d.Name)), d); err != nil {
			return err
		}
	}
	return nil
}

// routeTableView composes a stored table with its routes and subnets.
func routeTableView(r arm.Reader, t armnetwork.RouteTable, u *usage) (armnetwork.RouteTable, error) {
	if t.Properties == nil {
		t.Properties = &armnetwork.RouteTablePropertiesFormat{}
	}
	props := *t.Properties
	t.Properties = &props
	id, err := arm.ParseID(str(t.ID))
	if err != nil {
		return t, err
	}
	routes, err := loadRoutes(r, id)
	if err != nil {
		return t, err
	}
	props.Routes = []*armnetwork.Route{}
	for i := range routes {
		props.Routes = append(props.Routes, &routes[i])
	}
	subnets, err := u.subnetsReferencing(str(t.ID), false)
	if err != nil {
		return t, err
	}
	props.Subnets = subnetRefs(subnets)
	return t, nil
}

func errRouteTableInUse(id string, users []string) error {
	pid, _ := arm.ParseID(id)
	return errInUse(codeRouteTableInUse, "Route table", pid, users,
		"In order to delete the route table, remove its association with the subnet(s).")
}

// routeTableGroupDelete refuses to delete a route table with its resource
// group while a subnet of another group is associated with it.
func (p *Provider) routeTableGroupDelete(tx store.Tx, id arm.ResourceID) error {
	users, err := p.newUsage(tx, id.Subscription).subnetsReferencing(id.String(), false)
	if err != nil {
		return err
	}
	if foreign := outside(users, id.ResourceGroup); len(foreign) > 0 {
		return errRouteTableInUse(id.String(), foreign)
	}
	return nil
}

func (p *Provider) getRoute(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var rt armnetwork.Route
	ok, err := arm.Load(arm.ReadOnly(ctx, p.st), r.ID, &rt)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errChildNotFound(r.ID)
	}
	return arm.OK(rt), nil
}

func (p *Provider) listRoutes(ctx context.Context, r *arm.Request) ([]any, error) {
	routes, err := arm.LoadAll[armnetwork.Route](arm.ReadOnly(ctx, p.st), r.ID)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(routes))
	for i := range routes {
		out[i] = routes[i]
	}
	return out, nil
}

func (p *Provider) putRoute(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in armnetwork.Route
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	var (
		body    *armnetwork.Route
		op      *arm.Operation
		created bool
	)
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		tableID := r.ID.Parent()
		var table armnetwork.RouteTable
		if err := loadParent(tx, tableID, &table); err != nil {
			return err
		}
		var cur armnetwork.Route
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, str(cur.Etag)); err != nil {
			return err
		}
		created = !exists
		canon, err := arm.ParseID(str(table.ID))
		if err != nil {
			return err
		}
		state, done := p.settle(r.ID, false)
		var curp *armnetwork.Route
		if exists {
			curp = &cur
		}
		if body, err = buildRoute(routeWrite{tableID: canon, state: state, etag: arm.NewETag()}, r.ID.Name(), &in, curp); err != nil {
			return err
		}
		siblings, err := loadRoutes(tx, canon)
		if err != nil {
			return err
		}
		var entries []routeEntry
		for i := range siblings {
			if !strings.EqualFold(str(siblings[i].Name), str(body.Name)) {
				entries = append(entries, routeEntryOf(&siblings[i], ""))
			}
		}
		if err := checkRouteConflicts(append(entries, routeEntryOf(body, ""))); err != nil {
			return err
		}
		if err := arm.Save(tx, r.ID, body); err != nil {
			return err
		}
		if err := touch(tx, tableID); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, str(table.Location), done)
		return err
	})
	if err != nil {
		return nil, err
	}
	return accepted(created, body, op), nil
}
