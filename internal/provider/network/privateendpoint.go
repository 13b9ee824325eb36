package network

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/google/uuid"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/provider/privatelink"
	"github.com/privlink/privlink/internal/store"
)

// Private endpoints: a private address in a consumer's subnet that leads to
// exactly one private-link resource: a resource of a kind registered with
// WithTargets (privatelink.Kind; today Azure Database for PostgreSQL
// flexible servers, group ID postgresqlServer). The target may live in any
// subscription or tenant; the endpoint's privateLinkServiceId names it and
// its document is read directly from the store, through its kind's Lookup
// (the router authorized the caller for the endpoint's scope only).
//
// One endpoint PUT writes, in one store transaction:
//   - the endpoint's document, with its one connection (in
//     privateLinkServiceConnections or manualPrivateLinkServiceConnections)
//     and that connection's privateLinkServiceConnectionState;
//   - the target's side of the connection (privatelink.RequestConnection),
//     a child document of the target: Approved at once ("Auto-Approved")
//     when the connection is in privateLinkServiceConnections and the caller
//     holds the target's approval action (endpointTargetLink), Pending
//     otherwise;
//   - the endpoint's managed NIC (properties.privateEndpoint set, so users
//     cannot change or delete it), named customNetworkInterfaceName or
//     "{endpoint}.nic.{guid}", whose one ipConfiguration
//     "privateEndpointIpConfig.{guid}" holds the endpoint's address in the
//     subnet: allocated like any NIC address (addr.go), dynamic, or static
//     through the endpoint's ipConfigurations.
//
// The target's owner approves, rejects or deletes the connection on the
// target (privatelink), which mirrors the state here. PUTting
// a Rejected or Disconnected endpoint again re-requests its connection: it
// goes back to Pending.
//
// Completion: the endpoint's provisioningState is its NIC's, read at GET
// time, and the PUT's long-running operation is recorded on the NIC's ID.
// Without a NIC controller the NIC is Succeeded at once and so is the
// operation. With WithMaterializedNICs the NIC is written Updating and the
// network controller, once the address is on the network's router and the
// data path has processed the endpoint's document (its translation, if
// approved, is in place), settles the NIC (arm.FinishOperations on the
// NIC's ID), which finishes the endpoint's operation too: the poller
// completes as soon as the endpoint is usable. A DELETE removes the
// endpoint, its NIC, its zone group and the server side of its connection
// together and completes at once.

const (
	typeEndpoint    = "Microsoft.Network/privateEndpoints"
	typeConnection  = "Microsoft.Network/privateEndpoints/privateLinkServiceConnections"
	typeManual      = "Microsoft.Network/privateEndpoints/manualPrivateLinkServiceConnections"
	typeEndpointIPC = "Microsoft.Network/privateEndpoints/ipConfigurations"
	// maxRequestMessage is Azure's limit on requestMessage.
	maxRequestMessage = 140
	// ipcPrefix names the ipConfiguration of an endpoint's NIC.
	ipcPrefix = "privateEndpointIpConfig."
)

// endpointSpec is a private endpoint PUT body after the checks that need
// no stored state.
type endpointSpec struct {
	in       armnetwork.PrivateEndpoint
	conn     *armnetwork.PrivateLinkServiceConnection
	manual   bool           // conn is in manualPrivateLinkServiceConnections
	connPath string         // JSON path of conn, e.g. "properties.privateLinkServiceConnections[0]"
	server   arm.ResourceID // the target, as given (or its alias resolved)
	alias    string         // the target's alias, lower-cased, when the connection names one
	kind     *privatelink.Kind
	message  string // requestMessage
	static   bool   // an ipConfiguration asks for an address
	addr     netip.Addr
	ipc      *armnetwork.PrivateEndpointIPConfiguration
	nicName  string // customNetworkInterfaceName
}

func decodeEndpoint(r *arm.Request, kinds *privatelink.Kinds) (*endpointSpec, error) {
	s := &endpointSpec{}
	if err := r.Decode(&s.in); err != nil {
		return nil, err
	}
	if err := validateEnvelope("private endpoint", r.ID, s.in.Location, s.in.Tags); err != nil {
		return nil, err
	}
	if s.in.ExtendedLocation != nil {
		return nil, errUnsupported("extendedLocation", "privlink has no edge zones; remove extendedLocation.")
	}
	props := s.in.Properties
	if props == nil || props.Subnet == nil || strings.TrimSpace(str(props.Subnet.ID)) == "" {
		return nil, errMissing("properties.subnet.id", "The subnet of a private endpoint")
	}
	if err := s.decodeConnection(props, kinds); err != nil {
		return nil, err
	}
	if len(props.IPConfigurations) > 1 {
		return nil, errInvalid("properties.ipConfigurations",
			"A private endpoint to a %s has one member, %s, so at most one ipConfiguration; this one has %d.", s.kind.Title, s.kind.GroupID, len(props.IPConfigurations))
	}
	for i, ic := range props.IPConfigurations {
		if err := s.decodeIPConfig(arm.Field("properties.ipConfigurations", i), ic); err != nil {
			return nil, err
		}
	}
	if n := strings.TrimSpace(str(props.CustomNetworkInterfaceName)); n != "" {
		if err := arm.ValidateNetworkName("network interface", n); err != nil {
			ae, _ := arm.AsError(err)
			return nil, ae.WithTarget("properties.customNetworkInterfaceName")
		}
		s.nicName = n
	}
	return s, nil
}

// decodeConnection checks the endpoint's one connection.
func (s *endpointSpec) decodeConnection(props *armnetwork.PrivateEndpointProperties, kinds *privatelink.Kinds) error {
	type entry struct {
		c      *armnetwork.PrivateLinkServiceConnection
		path   string
		manual bool
	}
	var all []entry
	for i, c := range props.PrivateLinkServiceConnections {
		all = append(all, entry{c, arm.Field("properties.privateLinkServiceConnections", i), false})
	}
	for i, c := range props.ManualPrivateLinkServiceConnections {
		all = append(all, entry{c, arm.Field("properties.manualPrivateLinkServiceConnections", i), true})
	}
	switch {
	case len(all) == 0:
		return errMissing("properties.privateLinkServiceConnections",
			"A private endpoint's connection (one entry in privateLinkServiceConnections or in manualPrivateLinkServiceConnections)")
	case len(all) > 1:
		return badRequest(codeOneConnection, all[1].path,
			"A private endpoint has exactly one connection; this one has %d (privateLinkServiceConnections and manualPrivateLinkServiceConnections together). Use one endpoint per connection.", len(all))
	}
	e := all[0]
	s.conn, s.connPath, s.manual = e.c, e.path, e.manual
	if e.c == nil || strings.TrimSpace(str(e.c.Name)) == "" {
		return errMissing(e.path+".name", "A private link service connection's name")
	}
	if err := arm.ValidateNetworkName("private link service connection", *e.c.Name); err != nil {
		ae, _ := arm.AsError(err)
		return ae.WithTarget(e.path + ".name")
	}
	pp := e.path + ".properties."
	p := e.c.Properties
	if p == nil || strings.TrimSpace(str(p.PrivateLinkServiceID)) == "" {
		return badRequest(codeMissingOnConnection, pp+"privateLinkServiceId",
			"Private link service connection %s is missing required parameter 'privateLinkServiceId': set it to the ID of the resource to connect to.", *e.c.Name)
	}
	raw := strings.TrimSpace(*p.PrivateLinkServiceID)
	id, err := arm.ParseID(raw)
	var kind *privatelink.Kind
	switch {
	case err == nil:
		kind = kinds.Of(id)
	case kinds.ByAlias(raw) != nil:
		// An alias: resolved in the transaction (resolveAlias).
		kind, s.alias = kinds.ByAlias(raw), strings.ToLower(raw)
	}
	if kind == nil {
		return errTargetID(pp+"privateLinkServiceId", raw, kinds)
	}
	s.server, s.kind = id, kind
	if kind.GroupID == "" {
		// A kind without groups (a private link service): groupIds, when
		// given, is empty.
		if len(p.GroupIDs) > 0 {
			return badRequest(codeInvalidGroupID, pp+"groupIds",
				"Private link service connection %s names group Ids, but a %s has none: leave groupIds empty.", *e.c.Name, kind.Title)
		}
	} else if err := checkGroupIDs(e.c, pp, raw, kind, p.GroupIDs); err != nil {
		return err
	}
	s.message = strings.TrimSpace(str(p.RequestMessage))
	if n := utf8.RuneCountInString(s.message); n > maxRequestMessage {
		return errInvalid(pp+"requestMessage", "The requestMessage has %d characters; Azure allows %d.", n, maxRequestMessage)
	}
	return nil
}

// checkGroupIDs checks the groupIds of connection c to a kind with groups:
// exactly its one group.
func checkGroupIDs(c *armnetwork.PrivateLinkServiceConnection, pp, raw string, kind *privatelink.Kind, groups []*string) error {
	switch len(groups) {
	case 0:
		return badRequest(codeMissingOnConnection, pp+"groupIds",
			"Private link service connection %s is missing required parameter 'group Id'. A %s's group ID is '%s'.", *c.Name, kind.Title, kind.GroupID)
	case 1:
	default:
		return badRequest(codeOneGroupID, pp+"groupIds",
			"Private link service connection %s has %d group Ids. Only one group Id is permitted when connecting to a first-party resource (%s): use ['%s'].",
			*c.Name, len(groups), raw, kind.GroupID)
	}
	if g := strings.TrimSpace(str(groups[0])); !strings.EqualFold(g, kind.GroupID) {
		return badRequest(codeInvalidGroupID, pp+"groupIds[0]",
			"The group Id '%s' of private link service connection %s is not valid for %s: a %s has one group Id, '%s'.",
			g, *c.Name, raw, kind.Title, kind.GroupID)
	}
	return nil
}

// decodeIPConfig checks an ipConfiguration, which asks for a static
// address for the target kind's one member (postgresqlServer for a server).
func (s *endpointSpec) decodeIPConfig(path string, ic *armnetwork.PrivateEndpointIPConfiguration) error {
	if ic == nil || strings.TrimSpace(str(ic.Name)) == "" {
		return errMissing(path+".name", "An ipConfiguration's name")
	}
	if err := arm.ValidateNetworkName("ip configuration", *ic.Name); err != nil {
		ae, _ := arm.AsError(err)
		return ae.WithTarget(path + ".name")
	}
	pp := path + ".properties."
	p := ic.Properties
	if p == nil {
		return errMissing(pp+"privateIPAddress", "An ipConfiguration's privateIPAddress")
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"groupId", p.GroupID}, {"memberName", p.MemberName}} {
		v := strings.TrimSpace(str(f.v))
		if v == "" && s.kind.GroupID == "" {
			continue // a kind without groups: nothing to name
		}
		if v == "" {
			return errMissing(pp+f.name, "An ipConfiguration's "+f.name+" ('"+s.kind.GroupID+"')")
		}
		if !strings.EqualFold(v, s.kind.GroupID) {
			return errInvalid(pp+f.name, "The %s '%s' is not valid: a %s's only group and member is '%s'.", f.name, v, s.kind.Title, s.kind.GroupID)
		}
	}
	raw := strings.TrimSpace(str(p.PrivateIPAddress))
	if raw == "" {
		return errMissing(pp+"privateIPAddress", "An ipConfiguration's privateIPAddress")
	}
	a, ok := parseIPv4(raw)
	if !ok {
		return errInvalid(pp+"privateIPAddress", "The privateIPAddress '%s' is not an IPv4 address.", raw)
	}
	s.static, s.addr, s.ipc = true, a, ic
	return nil
}

// endpointWrite is what a PUT resolved inside its transaction.
type endpointWrite struct {
	id     arm.ResourceID // the endpoint, canonical
	name   string
	loc    string
	subnet resolved
	prefix []netip.Prefix
	target *privatelink.Target // nil when the target no longer exists
	state  privatelink.ConnectionState
	asgs   []*armnetwork.ApplicationSecurityGroup
}

func (p *Provider) putEndpoint(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	spec, err := decodeEndpoint(r, p.targets)
	if err != nil {
		return nil, err
	}
	var (
		body    armnetwork.PrivateEndpoint
		op      *arm.Operation
		created bool
	)
	_, err = p.st.Txn(ctx, func(tx store.Tx) error {
		var cur armnetwork.PrivateEndpoint
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, str(cur.Etag)); err != nil {
			return err
		}
		created = !exists
		if err := checkLocation(r.ID, str(cur.Location), *spec.in.Location); err != nil {
			return err
		}
		var curp *armnetwork.PrivateEndpoint
		if exists {
			curp = &cur
		}
		w, err := p.resolveEndpoint(tx, r, spec, curp)
		if err != nil {
			return err
		}
		nic, err := p.endpointNIC(tx, spec, w, curp)
		if err != nil {
			return err
		}
		nicID, err := arm.ParseID(str(nic.ID))
		if err != nil {
			return err
		}
		doc := buildEndpoint(spec, w, nic, curp)
		if err := arm.Save(tx, nicID, nic); err != nil {
			return err
		}
		if err := arm.Save(tx, w.id, doc); err != nil {
			return err
		}
		body = *doc
		_, done := p.settle(nicID, false)
		op, err = arm.StartOperation(tx, nicID, w.loc, done)
		return err
	})
	if err != nil {
		return nil, err
	}
	return accepted(created, body, op), nil
}

// resolveEndpoint checks an endpoint PUT against the store and records the
// server side of its connection.
func (p *Provider) resolveEndpoint(tx store.Tx, r *arm.Request, spec *endpointSpec, cur *armnetwork.PrivateEndpoint) (*endpointWrite, error) {
	exists := cur != nil
	var curID, curName string
	if exists {
		curID, curName = str(cur.ID), str(cur.Name)
	}
	id, name, _, err := identity(tx, r, exists, curID, curName, nil)
	if err != nil {
		return nil, err
	}
	w := &endpointWrite{id: id, name: name, loc: normLocation(*spec.in.Location)}
	props := spec.in.Properties
	if w.subnet, err = resolveSameRegion(tx, id, w.loc, "properties.subnet.id", props.Subnet.ID, typeSubnet); err != nil {
		return nil, err
	}
	var subnet armnetwork.Subnet
	if _, err := arm.Load(tx, w.subnet.ID, &subnet); err != nil {
		return nil, err
	}
	if !exists && subnet.Properties != nil && len(subnet.Properties.Delegations) > 0 {
		svc := ""
		if d := subnet.Properties.Delegations[0]; d != nil && d.Properties != nil {
			svc = str(d.Properties.ServiceName)
		}
		return nil, badRequest(codeDelegatedSubnet, "properties.subnet.id",
			"Private endpoint %s cannot be created in subnet %s because the subnet is delegated (to '%s'). Use a subnet without delegations.",
			id, w.subnet, svc)
	}
	w.prefix = v4(subnetPrefixes(&subnet))
	if err := resolveAlias(tx, spec); err != nil {
		return nil, err
	}
	if exists {
		if err := checkImmutable(spec, cur, w); err != nil {
			return nil, err
		}
	}
	if w.asgs, err = joinASGs(tx, p.newUsage(tx, id.Subscription), id, w.loc, "properties.applicationSecurityGroups", props.ApplicationSecurityGroups, w.subnet.ID); err != nil {
		return nil, err
	}
	if w.target, err = p.targets.Lookup(tx, spec.server); err != nil {
		return nil, err
	}
	if w.state, err = connect(tx, r, spec, w, cur); err != nil {
		return nil, err
	}
	return w, nil
}

// resolveAlias turns the alias a connection names into its target's ID.
func resolveAlias(r arm.Reader, spec *endpointSpec) error {
	if spec.alias == "" {
		return nil
	}
	id, ok, err := spec.kind.ResolveAlias(r, spec.alias)
	if err != nil {
		return err
	}
	if !ok {
		return badRequest(codeInvalidReference, spec.connPath+".properties.privateLinkServiceId",
			"No %s has the alias '%s'. Check the alias with the %s's owner (it is the %s's properties.alias).",
			spec.kind.Title, spec.alias, spec.kind.Noun, spec.kind.Noun)
	}
	spec.server = id
	return nil
}

// connect decides the connection's state and records its server side: on
// create, Approved at once for a privateLinkServiceConnections entry whose
// caller may write the server, else Pending; on update the server's
// decision stands, except that a Rejected or Disconnected connection is
// requested again (Pending).
func connect(tx store.Tx, r *arm.Request, spec *endpointSpec, w *endpointWrite, cur *armnetwork.PrivateEndpoint) (privatelink.ConnectionState, error) {
	target := connectionTarget(spec, cur)
	if w.target == nil {
		if cur == nil {
			return privatelink.ConnectionState{}, badRequest(codeInvalidReference, spec.connPath+".properties.privateLinkServiceId",
				"The %s %s referenced by private endpoint %s was not found. Create the %s first, or check the ID.", spec.kind.Title, target, w.id, spec.kind.Noun)
		}
		// The target is gone: the endpoint stays as it is, disconnected.
		noun := spec.kind.Noun
		st := privatelink.Disconnected(fmt.Sprintf("%s '%s' does not exist", strings.ToUpper(noun[:1])+noun[1:], spec.server.Name()))
		if c := storedConnection(cur); c != nil && c.Properties != nil && c.Properties.PrivateLinkServiceConnectionState != nil &&
			str(c.Properties.PrivateLinkServiceConnectionState.Status) == privatelink.StatusDisconnected {
			s := c.Properties.PrivateLinkServiceConnectionState
			st = privatelink.ConnectionState{Status: str(s.Status), Description: str(s.Description), ActionsRequired: str(s.ActionsRequired)}
		}
		return st, nil
	}
	// A new request (on create, or a re-request of a Rejected or
	// Disconnected connection) must see the target; one the target's
	// policy auto-approves is Approved at once, except a re-request of a
	// rejection, which the owner decides again.
	st := spec.kind.AwaitingApproval(spec.message)
	auto := w.target.Policy.AutoApproves(w.id.Subscription)
	if cur == nil {
		auto = auto || !spec.manual && r.LinkAllowed(endpointTargetLink, w.target.ID)
	} else {
		c, err := privatelink.ConnectionOf(tx, w.target.ID, w.id)
		if err != nil {
			return st, err
		}
		if c != nil && c.State.Status != privatelink.StatusRejected {
			return c.State, nil // the target's decision stands
		}
		auto = auto && c == nil
	}
	if !w.target.Policy.Visible(w.id.Subscription) {
		return privatelink.ConnectionState{}, badRequest(codeNotVisible, spec.connPath+".properties.privateLinkServiceId",
			"The %s %s is not visible to subscription %s: its visibility does not list the subscription. Ask the %s's owner to add it to visibility.subscriptions.",
			spec.kind.Title, w.target.ID, w.id.Subscription, spec.kind.Noun)
	}
	if auto {
		st = privatelink.AutoApproved()
	}
	_, err := privatelink.RequestConnection(tx, w.target, w.id, st, r.Caller)
	return st, err
}

// connectionTarget is the server an endpoint targets: the stored one on
// update, the requested one on create.
func connectionTarget(spec *endpointSpec, cur *armnetwork.PrivateEndpoint) string {
	if c := storedConnection(cur); c != nil && c.Properties != nil && c.Properties.PrivateLinkServiceID != nil {
		return *c.Properties.PrivateLinkServiceID
	}
	return spec.server.String()
}

// storedConnection returns a stored endpoint's one connection, nil when
// none.
func storedConnection(pe *armnetwork.PrivateEndpoint) *armnetwork.PrivateLinkServiceConnection {
	c, _ := endpointConnection(pe)
	return c
}

// endpointConnection returns an endpoint's one connection and whether it
// is a manual one.
func endpointConnection(pe *armnetwork.PrivateEndpoint) (*armnetwork.PrivateLinkServiceConnection, bool) {
	if pe == nil || pe.Properties == nil {
		return nil, false
	}
	for _, c := range pe.Properties.PrivateLinkServiceConnections {
		if c != nil {
			return c, false
		}
	}
	for _, c := range pe.Properties.ManualPrivateLinkServiceConnections {
		if c != nil {
			return c, true
		}
	}
	return nil, false
}

// checkImmutable refuses an update that changes what an endpoint is: its
// subnet, its target, its connection's name or kind, its NIC's name.
func checkImmutable(spec *endpointSpec, cur *armnetwork.PrivateEndpoint, w *endpointWrite) error {
	immutable := func(target, what, was, now string) error {
		return badRequest(codeEndpointImmutable, target,
			"The %s of private endpoint %s cannot be changed (it is %s, the request has %s). Delete the private endpoint and create it again to change it.",
			what, w.id, was, now)
	}
	if cur.Properties == nil {
		return nil
	}
	if s := cur.Properties.Subnet; s != nil && lkey(str(s.ID)) != lkey(w.subnet.String()) {
		return immutable("properties.subnet.id", "subnet", str(s.ID), w.subnet.String())
	}
	c, manual := endpointConnection(cur)
	if c == nil {
		return nil
	}
	if manual != spec.manual {
		kind := map[bool]string{false: "privateLinkServiceConnections", true: "manualPrivateLinkServiceConnections"}
		return immutable(spec.connPath, "kind of connection", kind[manual], kind[spec.manual])
	}
	if !strings.EqualFold(str(c.Name), str(spec.conn.Name)) {
		return immutable(spec.connPath+".name", "connection's name", str(c.Name), str(spec.conn.Name))
	}
	if c.Properties != nil && lkey(str(c.Properties.PrivateLinkServiceID)) != lkey(spec.server.String()) {
		return immutable(spec.connPath+".properties.privateLinkServiceId", "target", str(c.Properties.PrivateLinkServiceID), spec.server.String())
	}
	if spec.nicName != "" {
		if was := nicNameOf(cur); was != "" && !strings.EqualFold(was, spec.nicName) {
			return immutable("properties.customNetworkInterfaceName", "network interface's name", was, spec.nicName)
		}
	}
	return nil
}

// nicIDOf returns the ID of an endpoint's NIC, ok false when it has none.
func nicIDOf(pe *armnetwork.PrivateEndpoint) (arm.ResourceID, bool) {
	if pe == nil || pe.Properties == nil {
		return arm.ResourceID{}, false
	}
	for _, n := range pe.Properties.NetworkInterfaces {
		if n == nil || n.ID == nil {
			continue
		}
		if id, err := arm.ParseID(*n.ID); err == nil && strings.EqualFold(id.Type(), typeNIC) && len(id.Names) == 1 {
			return id, true
		}
	}
	return arm.ResourceID{}, false
}

func nicNameOf(pe *armnetwork.PrivateEndpoint) string {
	if id, ok := nicIDOf(pe); ok {
		return id.Name()
	}
	return ""
}

// endpointNIC builds the endpoint's managed NIC and allocates its address,
// in the transaction that stores both.
func (p *Provider) endpointNIC(tx store.Tx, spec *endpointSpec, w *endpointWrite, cur *armnetwork.PrivateEndpoint) (*armnetwork.Interface, error) {
	var curNIC armnetwork.Interface
	nicID, found := nicIDOf(cur)
	if found {
		ok, err := arm.Load(tx, nicID, &curNIC)
		if err != nil {
			return nil, err
		}
		if !ok || !strings.EqualFold(managedBy(&curNIC), w.id.String()) {
			curNIC, found = armnetwork.Interface{}, false
		}
	}
	if !found {
		name, target := spec.nicName, "properties.customNetworkInterfaceName"
		if name == "" {
			name, target = w.name+".nic."+uuid.NewString(), "name"
		}
		nicID = arm.ResourceID{Subscription: w.id.Subscription, ResourceGroup: w.id.ResourceGroup, Namespace: namespace,
			Types: []string{"networkInterfaces"}, Names: []string{name}}
		taken, err := arm.Exists(tx, nicID)
		if err != nil {
			return nil, err
		}
		if taken {
			return nil, errInvalid(target, "A network interface named '%s' already exists in resource group '%s'; choose another customNetworkInterfaceName.", name, w.id.ResourceGroup)
		}
	}
	var curIPC *armnetwork.InterfaceIPConfiguration
	var guid *string
	if curNIC.Properties != nil {
		guid = curNIC.Properties.ResourceGUID
		for _, ic := range curNIC.Properties.IPConfigurations {
			if ic != nil {
				curIPC = ic
				break
			}
		}
	}
	if guid == nil {
		guid = newGUID()
	}
	ipcName := ipcPrefix + uuid.NewString()
	if curIPC != nil && str(curIPC.Name) != "" {
		ipcName = *curIPC.Name
	}
	path := "properties.ipConfigurations[0]"
	pl := &placed{
		spec:     ipcSpec{path: path, name: ipcName, static: spec.static, addr: spec.addr, primary: true},
		subnet:   w.subnet,
		prefixes: w.prefix,
		cur:      curIPC,
	}
	u := p.newUsage(tx, w.id.Subscription)
	if err := allocate(u, nicID, "ipConfigurations", []*placed{pl}); err != nil {
		if ae, ok := arm.AsError(err); ok && ae.Code == codeSubnetFull {
			return nil, ae.WithTarget("properties.subnet.id")
		}
		return nil, err
	}
	mac, err := macFor(u, nicID, &curNIC)
	if err != nil {
		return nil, err
	}
	state, _ := p.settle(nicID, false)
	method := armnetwork.IPAllocationMethodDynamic
	if spec.static {
		method = armnetwork.IPAllocationMethodStatic
	}
	etag := arm.NewETag()
	fqdn := serverFQDN(w, spec)
	nic := managedNIC(nicID, w.loc, etag, mac, guid, state)
	nic.Properties.PrivateEndpoint = &armnetwork.PrivateEndpoint{ID: ptr(w.id.String())}
	nic.Properties.IPConfigurations = []*armnetwork.InterfaceIPConfiguration{{
		ID: ptr(nicID.String() + "/ipConfigurations/" + ipcName), Name: ptr(ipcName), Type: ptr(typeIPConfig), Etag: ptr(etag),
		Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
			PrivateIPAddress:                ptr(pl.addr.String()),
			PrivateIPAllocationMethod:       ptr(method),
			PrivateIPAddressVersion:         ptr(armnetwork.IPVersionIPv4),
			Subnet:                          &armnetwork.Subnet{ID: ptr(w.subnet.String())},
			Primary:                         ptr(true),
			ApplicationSecurityGroups:       w.asgs,
			ProvisioningState:               ptr(state),
			PrivateLinkConnectionProperties: linkConnectionProps(spec.kind, fqdn),
		},
	}}
	return nic, nil
}

// managedNIC is the shell of a NIC that a private endpoint or a private
// link service manages: Azure's defaults, no ipConfigurations yet.
func managedNIC(id arm.ResourceID, loc, etag, mac string, guid *string, state armnetwork.ProvisioningState) *armnetwork.Interface {
	return &armnetwork.Interface{
		ID: ptr(id.String()), Name: ptr(id.Name()), Type: ptr(typeNIC), Location: ptr(loc), Etag: ptr(etag),
		Properties: &armnetwork.InterfacePropertiesFormat{
			EnableIPForwarding:          ptr(false),
			EnableAcceleratedNetworking: ptr(false),
			DisableTCPStateTracking:     ptr(false),
			NicType:                     ptr(armnetwork.NetworkInterfaceNicTypeStandard),
			VnetEncryptionSupported:     ptr(false),
			HostedWorkloads:             []*string{},
			TapConfigurations:           []*armnetwork.InterfaceTapConfiguration{},
			DNSSettings:                 &armnetwork.InterfaceDNSSettings{DNSServers: []*string{}, AppliedDNSServers: []*string{}},
			MacAddress:                  ptr(mac),
			ResourceGUID:                guid,
			ProvisioningState:           ptr(state),
		},
	}
}

// deleteManagedNIC deletes NIC id in tx when owner (the ID of what
// manages it, per ownerOf) still manages it.
func deleteManagedNIC(tx store.Tx, id arm.ResourceID, owner string, ownerOf func(*armnetwork.Interface) string) error {
	var nic armnetwork.Interface
	found, err := arm.Load(tx, id, &nic)
	if err != nil || !found || !strings.EqualFold(ownerOf(&nic), owner) {
		return err
	}
	return arm.Delete(tx, id)
}

// linkConnectionProps is what an endpoint NIC's ipConfiguration says of
// its target: its group and its DNS name, each when it has one.
func linkConnectionProps(k *privatelink.Kind, fqdn string) *armnetwork.InterfaceIPConfigurationPrivateLinkConnectionProperties {
	p := &armnetwork.InterfaceIPConfigurationPrivateLinkConnectionProperties{Fqdns: []*string{}}
	if k.GroupID != "" {
		p.GroupID, p.RequiredMemberName = ptr(k.GroupID), ptr(k.GroupID)
	}
	if fqdn != "" {
		p.Fqdns = append(p.Fqdns, ptr(fqdn))
	}
	return p
}

// dnsConfigs are an endpoint's customDnsConfigs: its target's name at its
// address, none when the target has no DNS name.
func dnsConfigs(fqdn, addr string) []*armnetwork.CustomDNSConfigPropertiesFormat {
	if fqdn == "" {
		return []*armnetwork.CustomDNSConfigPropertiesFormat{}
	}
	return []*armnetwork.CustomDNSConfigPropertiesFormat{{Fqdn: ptr(fqdn), IPAddresses: []*string{ptr(addr)}}}
}

// serverFQDN is the DNS name of the endpoint's target.
func serverFQDN(w *endpointWrite, spec *endpointSpec) string {
	if w.target != nil {
		return w.target.FQDN
	}
	return spec.kind.FQDN(spec.server.Name())
}

// buildEndpoint composes the endpoint's document.
func buildEndpoint(spec *endpointSpec, w *endpointWrite, nic *armnetwork.Interface, cur *armnetwork.PrivateEndpoint) *armnetwork.PrivateEndpoint {
	etag := arm.NewETag()
	addr := str(nic.Properties.IPConfigurations[0].Properties.PrivateIPAddress)
	serverID := connectionTarget(spec, cur)
	if w.target != nil {
		serverID = w.target.ID.String()
	}
	connName := str(spec.conn.Name)
	if c := storedConnection(cur); c != nil && c.Name != nil {
		connName = *c.Name // the name keeps the casing of creation
	}
	coll, typ := "privateLinkServiceConnections", typeConnection
	if spec.manual {
		coll, typ = "manualPrivateLinkServiceConnections", typeManual
	}
	groups := []*string{}
	if spec.kind.GroupID != "" {
		groups = append(groups, ptr(spec.kind.GroupID))
	}
	conn := &armnetwork.PrivateLinkServiceConnection{
		ID: ptr(w.id.String() + "/" + coll + "/" + connName), Name: ptr(connName), Type: ptr(typ), Etag: ptr(etag),
		Properties: &armnetwork.PrivateLinkServiceConnectionProperties{
			PrivateLinkServiceID: ptr(serverID),
			GroupIDs:             groups,
			PrivateLinkServiceConnectionState: &armnetwork.PrivateLinkServiceConnectionState{
				Status: ptr(w.state.Status), Description: ptr(w.state.Description), ActionsRequired: ptr(w.state.ActionsRequired),
			},
			ProvisioningState: ptr(armnetwork.ProvisioningStateSucceeded),
		},
	}
	if spec.message != "" {
		conn.Properties.RequestMessage = ptr(spec.message)
	}
	props := &armnetwork.PrivateEndpointProperties{
		Subnet:                              &armnetwork.Subnet{ID: ptr(w.subnet.String())},
		PrivateLinkServiceConnections:       []*armnetwork.PrivateLinkServiceConnection{},
		ManualPrivateLinkServiceConnections: []*armnetwork.PrivateLinkServiceConnection{},
		NetworkInterfaces:                   []*armnetwork.Interface{{ID: nic.ID}},
		IPConfigurations:                    []*armnetwork.PrivateEndpointIPConfiguration{},
		ApplicationSecurityGroups:           w.asgs,
		CustomDNSConfigs:                    dnsConfigs(serverFQDN(w, spec), addr),
		ProvisioningState:                   nic.Properties.ProvisioningState,
	}
	if props.ApplicationSecurityGroups == nil {
		props.ApplicationSecurityGroups = []*armnetwork.ApplicationSecurityGroup{}
	}
	if spec.manual {
		props.ManualPrivateLinkServiceConnections = append(props.ManualPrivateLinkServiceConnections, conn)
	} else {
		props.PrivateLinkServiceConnections = append(props.PrivateLinkServiceConnections, conn)
	}
	if spec.nicName != "" {
		props.CustomNetworkInterfaceName = ptr(spec.nicName)
	} else if cur != nil && cur.Properties != nil {
		props.CustomNetworkInterfaceName = cur.Properties.CustomNetworkInterfaceName
	}
	if spec.static {
		props.IPConfigurations = append(props.IPConfigurations, &armnetwork.PrivateEndpointIPConfiguration{
			Name: spec.ipc.Name, Type: ptr(typeEndpointIPC), Etag: ptr(etag),
			Properties: &armnetwork.PrivateEndpointIPConfigurationProperties{
				GroupID: ptr(spec.kind.GroupID), MemberName: ptr(spec.kind.GroupID), PrivateIPAddress: ptr(addr),
			},
		})
	}
	return &armnetwork.PrivateEndpoint{
		ID: ptr(w.id.String()), Name: ptr(w.name), Type: ptr(typeEndpoint), Location: ptr(w.loc),
		Tags: spec.in.Tags, Etag: ptr(etag), Properties: props,
	}
}

// endpointView composes a stored endpoint with what is read at GET time:
// its provisioningState, which is its NIC's.
func endpointView(r arm.Reader, pe armnetwork.PrivateEndpoint) (armnetwork.PrivateEndpoint, error) {
	if pe.Properties == nil {
		return pe, nil
	}
	props := *pe.Properties
	pe.Properties = &props
	id, ok := nicIDOf(&pe)
	if !ok {
		return pe, nil
	}
	var nic armnetwork.Interface
	found, err := arm.Load(r, id, &nic)
	if err != nil {
		return pe, err
	}
	if found && nic.Properties != nil && nic.Properties.ProvisioningState != nil {
		props.ProvisioningState = ptr(*nic.Properties.ProvisioningState)
	}
	return pe, nil
}

// releaseEndpoint removes what an endpoint holds outside its own documents:
// the server side of its connection, its NIC (and so its address) and its
// entry in the zone group index.
func releaseEndpoint(tx store.Tx, id arm.ResourceID, pe *armnetwork.PrivateEndpoint) error {
	canon := id
	if c, err := arm.ParseID(str(pe.ID)); err == nil {
		canon = c
	}
	if c := storedConnection(pe); c != nil && c.Properties != nil {
		if server, err := arm.ParseID(str(c.Properties.PrivateLinkServiceID)); err == nil {
			if err := privatelink.RemoveConnection(tx, server, canon); err != nil {
				return err
			}
		}
	}
	if nicID, ok := nicIDOf(pe); ok {
		if err := deleteManagedNIC(tx, nicID, canon.String(), managedBy); err != nil {
			return err
		}
	}
	return unindexZoneGroup(tx, canon)
}

// endpointGroupDelete runs when the endpoint's resource group is deleted:
// its connection leaves the server (which may be elsewhere); its NIC and
// zone group go with the group.
func (p *Provider) endpointGroupDelete(tx store.Tx, id arm.ResourceID) error {
	var pe armnetwork.PrivateEndpoint
	ok, err := arm.Load(tx, id, &pe)
	if err != nil || !ok {
		return err
	}
	return releaseEndpoint(tx, id, &pe)
}
