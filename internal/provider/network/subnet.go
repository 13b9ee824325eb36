package network

import (
	"context"
	"net/netip"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Subnets are child documents of their virtual network
// (virtualNetworks/{v}/subnets/{s}); a VNet's inline properties.subnets is
// composed from them when read, and a VNet PUT that carries the list writes
// them (vnet.go).

// delegationActions are the actions Azure fills in for a delegation.
var delegationActions = map[string][]string{
	"microsoft.dbforpostgresql/flexibleservers": {"Microsoft.Network/virtualNetworks/subnets/join/action"},
	"microsoft.dbformysql/flexibleservers":      {"Microsoft.Network/virtualNetworks/subnets/join/action"},
}

// subnetEntry is a subnet of a VNet's new set, for the checks across the
// set (overlaps).
type subnetEntry struct {
	name     string
	path     string // JSON path prefix of the subnet in the request, "" for a subnet PUT
	prefixes []netip.Prefix
}

// subnetWrite is what buildSubnet needs to know about the write.
type subnetWrite struct {
	vnetID   arm.ResourceID // canonical
	vnetName string
	location string
	space    []netip.Prefix // the VNet's (new) address space
	path     string         // JSON path prefix of the subnet in the request
	state    armnetwork.ProvisioningState
	etag     string
}

// buildSubnet validates a subnet as written by a request and returns the
// document to store. cur is the stored subnet (nil on create).
func buildSubnet(r arm.Reader, u *usage, w subnetWrite, name string, in, cur *armnetwork.Subnet) (*armnetwork.Subnet, []netip.Prefix, error) {
	if err := arm.ValidateNetworkName("subnet", name); err != nil {
		if ae, ok := arm.AsError(err); ok && w.path != "" {
			return nil, nil, ae.WithTarget(w.path + "name")
		}
		return nil, nil, err
	}
	if cur != nil && cur.Name != nil {
		name = *cur.Name // a subnet keeps the casing it was created with
	}
	id := w.vnetID.Child("subnets", name)
	props := in.Properties
	if props == nil {
		return nil, nil, errMissing(w.path+"properties.addressPrefix", "The subnet's address prefix")
	}
	prefixes, err := subnetPrefixesIn(props, id, w)
	if err != nil {
		return nil, nil, err
	}
	if cur != nil {
		if err := checkInUseResize(u, id, prefixes, w.path+"properties.addressPrefix"); err != nil {
			return nil, nil, err
		}
	}
	out := &armnetwork.SubnetPropertiesFormat{
		DefaultOutboundAccess: props.DefaultOutboundAccess,
		SharingScope:          props.SharingScope,
		ProvisioningState:     ptr(w.state),
	}
	// Prefixes are stored in canonical form, in the property they came in.
	if props.AddressPrefix != nil {
		out.AddressPrefix = ptr(prefixes[0].String())
	} else {
		for _, p := range prefixes {
			out.AddressPrefixes = append(out.AddressPrefixes, ptr(p.String()))
		}
	}
	pe, err := enumValue(w.path+"properties.privateEndpointNetworkPolicies", (*string)(props.PrivateEndpointNetworkPolicies),
		string(armnetwork.VirtualNetworkPrivateEndpointNetworkPoliciesDisabled),
		enumStrings(armnetwork.PossibleVirtualNetworkPrivateEndpointNetworkPoliciesValues()))
	if err != nil {
		return nil, nil, err
	}
	out.PrivateEndpointNetworkPolicies = ptr(armnetwork.VirtualNetworkPrivateEndpointNetworkPolicies(pe))
	pls, err := enumValue(w.path+"properties.privateLinkServiceNetworkPolicies", (*string)(props.PrivateLinkServiceNetworkPolicies),
		string(armnetwork.VirtualNetworkPrivateLinkServiceNetworkPoliciesEnabled),
		enumStrings(armnetwork.PossibleVirtualNetworkPrivateLinkServiceNetworkPoliciesValues()))
	if err != nil {
		return nil, nil, err
	}
	out.PrivateLinkServiceNetworkPolicies = ptr(armnetwork.VirtualNetworkPrivateLinkServiceNetworkPolicies(pls))
	if cur != nil && pls == string(armnetwork.VirtualNetworkPrivateLinkServiceNetworkPoliciesEnabled) {
		if err := checkNoNATIPs(u, id, w.path+"properties.privateLinkServiceNetworkPolicies"); err != nil {
			return nil, nil, err
		}
	}
	if props.NetworkSecurityGroup != nil {
		ref, err := resolveSameRegion(r, id, w.location, w.path+"properties.networkSecurityGroup.id", props.NetworkSecurityGroup.ID, typeNSG)
		if err != nil {
			return nil, nil, err
		}
		out.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: ptr(ref.String())}
	}
	if props.RouteTable != nil {
		ref, err := resolveSameRegion(r, id, w.location, w.path+"properties.routeTable.id", props.RouteTable.ID, typeRouteTable)
		if err != nil {
			return nil, nil, err
		}
		out.RouteTable = &armnetwork.RouteTable{ID: ptr(ref.String())}
	}
	if props.NatGateway != nil {
		if _, err := resolve(r, id, w.path+"properties.natGateway.id", props.NatGateway.ID, "Microsoft.Network/natGateways"); err != nil {
			return nil, nil, err
		}
	}
	if len(props.ServiceEndpointPolicies) > 0 || len(props.IPAllocations) > 0 || len(props.IpamPoolPrefixAllocations) > 0 {
		return nil, nil, errUnsupported(w.path+"properties",
			"privlink does not serve service endpoint policies, IP allocations or IPAM pools; remove serviceEndpointPolicies, ipAllocations and ipamPoolPrefixAllocations.")
	}
	if out.Delegations, err = buildDelegations(w.path, id, props.Delegations, w.etag, w.state); err != nil {
		return nil, nil, err
	}
	if out.ServiceEndpoints, err = buildServiceEndpoints(w.path, props.ServiceEndpoints, w.location, w.state); err != nil {
		return nil, nil, err
	}
	doc := &armnetwork.Subnet{ID: ptr(id.String()), Name: ptr(name), Type: ptr(typeSubnet), Etag: ptr(w.etag), Properties: out}
	return doc, prefixes, nil
}

// subnetPrefixesIn validates addressPrefix / addressPrefixes.
func subnetPrefixesIn(props *armnetwork.SubnetPropertiesFormat, id arm.ResourceID, w subnetWrite) ([]netip.Prefix, error) {
	type raw struct{ text, target string }
	var list []raw
	switch {
	case props.AddressPrefix != nil && len(props.AddressPrefixes) > 0:
		return nil, errInvalid(w.path+"properties.addressPrefixes",
			"Subnet '%s' sets both addressPrefix and addressPrefixes; set only one of them.", id.Name())
	case props.AddressPrefix != nil:
		list = append(list, raw{*props.AddressPrefix, w.path + "properties.addressPrefix"})
	default:
		for i, p := range props.AddressPrefixes {
			if p == nil {
				return nil, errMissing(arm.Field(w.path+"properties.addressPrefixes", i), "An address prefix")
			}
			list = append(list, raw{*p, arm.Field(w.path+"properties.addressPrefixes", i)})
		}
	}
	if len(list) == 0 {
		return nil, errMissing(w.path+"properties.addressPrefix", "The subnet's address prefix")
	}
	var out []netip.Prefix
	for _, r := range list {
		p, err := parsePrefix(r.text, r.target, id.String())
		if err != nil {
			return nil, err
		}
		if p.Addr().Is4() && p.Bits() > minSubnetBitsV4 {
			return nil, badRequest(codeInvalidSubnet, r.target,
				"Subnet '%s' is not valid in virtual network '%s': %s is smaller than Azure's smallest IPv4 subnet, a /29 (8 addresses, 3 usable once Azure's 5 reserved ones are taken). Use a prefix length of /29 or less.",
				id.Name(), w.vnetName, p)
		}
		if p.Addr().Is6() && p.Bits() != subnetBitsV6 {
			return nil, badRequest(codeInvalidSubnet, r.target,
				"Subnet '%s' is not valid in virtual network '%s': an IPv6 subnet must be a /64, not %s.", id.Name(), w.vnetName, p)
		}
		if !insideAny(p, w.space) {
			return nil, badRequest(codeSubnetOutsideVNet, r.target,
				"Subnet '%s' is not valid because its IP address range %s is outside the IP address range of virtual network '%s' (%s). Choose a prefix inside the address space, or add a prefix to the address space.",
				id.Name(), p, w.vnetName, formatPrefixes(w.space))
		}
		for _, q := range out {
			if q.Overlaps(p) {
				return nil, badRequest(codeSubnetsOverlap, r.target,
					"Subnet '%s' is not valid because its address prefixes %s and %s overlap. Give the subnet disjoint prefixes.", id.Name(), q, p)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// checkSubnetOverlaps applies the rule that no two subnets of a VNet
// overlap; entries are the VNet's new set, the subnet being written last.
func checkSubnetOverlaps(entries []subnetEntry, vnetName string) error {
	for i := range entries {
		for j := 0; j < i; j++ {
			for _, a := range entries[i].prefixes {
				for _, b := range entries[j].prefixes {
					if a.Overlaps(b) {
						return badRequest(codeSubnetsOverlap, entries[i].path+"properties.addressPrefix",
							"Subnet '%s' is not valid because its IP address range %s overlaps with that of an existing subnet '%s' (%s) in virtual network '%s'. Choose a range that no other subnet uses.",
							entries[i].name, a, entries[j].name, b, vnetName)
					}
				}
			}
		}
	}
	return nil
}

// checkInUseResize refuses a prefix change that would strand an address a
// NIC holds in the subnet (outside the new prefixes, or now reserved).
func checkInUseResize(u *usage, id arm.ResourceID, prefixes []netip.Prefix, target string) error {
	refs, err := u.inSubnet(id.String())
	if err != nil {
		return err
	}
	for _, r := range refs {
		if !r.Address.IsValid() {
			continue
		}
		p, ok := containing(prefixes, r.Address)
		if !ok || reservedIn(p, r.Address) {
			return badRequest(codeInvalidSubnet, target,
				"Subnet '%s' is in use by %s, which holds address %s, and cannot be modified so that the address falls outside the subnet or into its reserved addresses. Keep %s usable, or delete that network interface first.",
				id.Name(), r.ID, r.Address, r.Address)
		}
	}
	return nil
}

func buildDelegations(path string, subnet arm.ResourceID, in []*armnetwork.Delegation, etag string, state armnetwork.ProvisioningState) ([]*armnetwork.Delegation, error) {
	var out []*armnetwork.Delegation
	seen := map[string]bool{}
	for i, d := range in {
		target := arm.Field(path+"properties.delegations", i)
		if d == nil || d.Name == nil || *d.Name == "" {
			return nil, errMissing(target+".name", "A delegation's name")
		}
		if err := arm.ValidateNetworkName("delegation", *d.Name); err != nil {
			ae, _ := arm.AsError(err)
			return nil, ae.WithTarget(target + ".name")
		}
		if seen[strings.ToLower(*d.Name)] {
			return nil, errInvalid(target+".name", "The delegation name '%s' is used twice; give each delegation its own name.", *d.Name)
		}
		seen[strings.ToLower(*d.Name)] = true
		if d.Properties == nil || d.Properties.ServiceName == nil {
			return nil, errMissing(target+".properties.serviceName", "A delegation's serviceName")
		}
		svc := *d.Properties.ServiceName
		if parts := strings.Split(svc, "/"); len(parts) < 2 || parts[0] == "" || parts[1] == "" {
			return nil, errInvalid(target+".properties.serviceName",
				"The delegation serviceName '%s' is not a resource type; use e.g. Microsoft.DBforPostgreSQL/flexibleServers.", svc)
		}
		actions := []*string{}
		for _, a := range delegationActions[strings.ToLower(svc)] {
			actions = append(actions, ptr(a))
		}
		out = append(out, &armnetwork.Delegation{
			ID: ptr(subnet.String() + "/delegations/" + *d.Name), Name: d.Name, Type: ptr(typeDelegation), Etag: ptr(etag),
			Properties: &armnetwork.ServiceDelegationPropertiesFormat{ServiceName: ptr(svc), Actions: actions, ProvisioningState: ptr(state)},
		})
	}
	return out, nil
}

func buildServiceEndpoints(path string, in []*armnetwork.ServiceEndpointPropertiesFormat, location string, state armnetwork.ProvisioningState) ([]*armnetwork.ServiceEndpointPropertiesFormat, error) {
	var out []*armnetwork.ServiceEndpointPropertiesFormat
	for i, se := range in {
		target := arm.Field(path+"properties.serviceEndpoints", i)
		if se == nil || str(se.Service) == "" {
			return nil, errMissing(target+".service", "A service endpoint's service")
		}
		locs := se.Locations
		if len(locs) == 0 {
			locs = []*string{ptr(location)}
		}
		out = append(out, &armnetwork.ServiceEndpointPropertiesFormat{Service: se.Service, Locations: locs, ProvisioningState: ptr(state)})
	}
	return out, nil
}

// subnetView composes a stored subnet with what is computed at read time:
// the ipConfigurations in it and the private endpoints whose NICs they
// are.
func subnetView(s armnetwork.Subnet, u *usage) (armnetwork.Subnet, error) {
	if s.Properties == nil {
		s.Properties = &armnetwork.SubnetPropertiesFormat{}
	}
	props := *s.Properties
	s.Properties = &props
	refs, err := u.inSubnet(str(s.ID))
	if err != nil {
		return s, err
	}
	props.IPConfigurations, props.PrivateEndpoints = nil, nil
	for _, r := range refs {
		props.IPConfigurations = append(props.IPConfigurations, &armnetwork.IPConfiguration{ID: ptr(r.ID)})
		if r.PrivateEndpoint != "" {
			props.PrivateEndpoints = append(props.PrivateEndpoints, &armnetwork.PrivateEndpoint{ID: ptr(r.PrivateEndpoint)})
		}
	}
	return s, nil
}

// loadSubnets returns a VNet's stored subnets, in key order.
func loadSubnets(r arm.Reader, vnet arm.ResourceID) ([]armnetwork.Subnet, error) {
	return arm.LoadAll[armnetwork.Subnet](r, childColl(vnet, "subnets"))
}

// loadVNet loads the parent VNet of a subnet request inside a transaction.
func loadVNet(r arm.Reader, id arm.ResourceID) (*armnetwork.VirtualNetwork, error) {
	var v armnetwork.VirtualNetwork
	if err := loadParent(r, id, &v); err != nil {
		return nil, err
	}
	if v.Properties == nil {
		v.Properties = &armnetwork.VirtualNetworkPropertiesFormat{}
	}
	return &v, nil
}

func (p *Provider) getSubnet(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	rd := arm.ReadOnly(ctx, p.st)
	var s armnetwork.Subnet
	ok, err := arm.Load(rd, r.ID, &s)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errChildNotFound(r.ID)
	}
	v, err := subnetView(s, p.newUsage(rd, r.ID.Subscription))
	if err != nil {
		return nil, err
	}
	return arm.OK(v), nil
}

func (p *Provider) listSubnets(ctx context.Context, r *arm.Request) ([]any, error) {
	rd := arm.ReadOnly(ctx, p.st)
	subnets, err := arm.LoadAll[armnetwork.Subnet](rd, r.ID)
	if err != nil {
		return nil, err
	}
	u := p.newUsage(rd, r.ID.Subscription)
	out := make([]any, 0, len(subnets))
	for _, s := range subnets {
		v, err := subnetView(s, u)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (p *Provider) putSubnet(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in armnetwork.Subnet
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	var (
		body    armnetwork.Subnet
		op      *arm.Operation
		created bool
	)
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		vnetID := r.ID.Parent()
		vnet, err := loadVNet(tx, vnetID)
		if err != nil {
			return err
		}
		var cur armnetwork.Subnet
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, str(cur.Etag)); err != nil {
			return err
		}
		created = !exists
		space, err := storedSpace(vnet)
		if err != nil {
			return err
		}
		canonVNet, err := arm.ParseID(str(vnet.ID))
		if err != nil {
			return err
		}
		state, done := p.settle(r.ID, false)
		w := subnetWrite{vnetID: canonVNet, vnetName: str(vnet.Name), location: str(vnet.Location), space: space,
			state: state, etag: arm.NewETag()}
		u := p.newUsage(tx, r.ID.Subscription)
		var curp *armnetwork.Subnet
		if exists {
			curp = &cur
		}
		doc, prefixes, err := buildSubnet(tx, u, w, r.ID.Name(), &in, curp)
		if err != nil {
			return err
		}
		siblings, err := loadSubnets(tx, canonVNet)
		if err != nil {
			return err
		}
		var entries []subnetEntry
		for i := range siblings {
			if !strings.EqualFold(str(siblings[i].Name), str(doc.Name)) {
				entries = append(entries, subnetEntry{name: str(siblings[i].Name), prefixes: subnetPrefixes(&siblings[i])})
			}
		}
		entries = append(entries, subnetEntry{name: str(doc.Name), prefixes: prefixes})
		if err := checkSubnetOverlaps(entries, str(vnet.Name)); err != nil {
			return err
		}
		if err := arm.Save(tx, r.ID, doc); err != nil {
			return err
		}
		if err := touch(tx, vnetID); err != nil {
			return err
		}
		if body, err = subnetView(*doc, u); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, str(vnet.Location), done)
		return err
	})
	if err != nil {
		return nil, err
	}
	return accepted(created, body, op), nil
}

func (p *Provider) deleteSubnet(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	return p.deleteChildIf(ctx, r, func(tx store.Tx, id arm.ResourceID) error {
		return checkSubnetFree(p.newUsage(tx, id.Subscription), id)
	})
}

// checkSubnetFree refuses to delete a subnet that holds NICs.
func checkSubnetFree(u *usage, id arm.ResourceID) error {
	refs, err := u.inSubnet(id.String())
	if err != nil {
		return err
	}
	if len(refs) > 0 {
		users := make([]string, len(refs))
		for i, r := range refs {
			users[i] = r.user()
		}
		return errSubnetInUse(id, users)
	}
	return nil
}

// enumValue validates an optional enum property: nil gives def, a value
// matching one of allowed case-insensitively gives that value in Azure's
// casing, anything else is an error.
func enumValue(target string, v *string, def string, allowed []string) (string, error) {
	if v == nil {
		return def, nil
	}
	for _, a := range allowed {
		if strings.EqualFold(a, *v) {
			return a, nil
		}
	}
	return "", errEnum(target, *v, allowed)
}

func enumStrings[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}
