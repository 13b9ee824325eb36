package network

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Virtual networks. The stored document has no subnets: they are child
// documents, composed into properties.subnets when read.

// vnetSpec is a validated VNet PUT body.
type vnetSpec struct {
	in    armnetwork.VirtualNetwork
	space []netip.Prefix
	// subnets is nil when the body omits properties.subnets (existing
	// subnets are kept); otherwise the new set ([] for [] and null).
	subnets []*armnetwork.Subnet
	hasSet  bool
}

func decodeVNet(r *arm.Request) (*vnetSpec, error) {
	s := &vnetSpec{}
	if err := r.Decode(&s.in); err != nil {
		return nil, err
	}
	var raw struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(r.Body, &raw); err != nil {
		return nil, arm.InvalidRequestContent(err)
	}
	_, s.hasSet = raw.Properties["subnets"]
	if err := validateEnvelope("virtual network", r.ID, s.in.Location, s.in.Tags); err != nil {
		return nil, err
	}
	if s.in.ExtendedLocation != nil {
		return nil, errUnsupported("extendedLocation", "privlink has no edge zones; remove extendedLocation.")
	}
	props := s.in.Properties
	if props == nil || props.AddressSpace == nil || len(props.AddressSpace.AddressPrefixes) == 0 {
		return nil, errMissing("properties.addressSpace.addressPrefixes", "The virtual network's address space")
	}
	for i, ap := range props.AddressSpace.AddressPrefixes {
		target := arm.Field("properties.addressSpace.addressPrefixes", i)
		if ap == nil {
			return nil, errMissing(target, "An address prefix")
		}
		p, err := parsePrefix(*ap, target, r.ID.String())
		if err != nil {
			return nil, err
		}
		if err := checkAddressSpace(p, target); err != nil {
			return nil, err
		}
		for j, q := range s.space {
			if q.Overlaps(p) {
				return nil, badRequest(codeInvalidPrefix, target,
					"The address prefixes %s (addressPrefixes[%d]) and %s (addressPrefixes[%d]) of virtual network '%s' overlap. Remove one or make them disjoint.",
					q, j, p, i, r.ID.Name())
			}
		}
		s.space = append(s.space, p)
	}
	if len(props.AddressSpace.IpamPoolPrefixAllocations) > 0 || len(props.IPAllocations) > 0 {
		return nil, errUnsupported("properties.addressSpace.ipamPoolPrefixAllocations", "privlink has no IPAM pools or IP allocations; give the address space as addressPrefixes.")
	}
	if props.BgpCommunities != nil {
		return nil, errUnsupported("properties.bgpCommunities", "privlink has no ExpressRoute; remove bgpCommunities.")
	}
	if props.DhcpOptions != nil {
		for i, d := range props.DhcpOptions.DNSServers {
			if _, err := netip.ParseAddr(strings.TrimSpace(str(d))); err != nil {
				return nil, errInvalid(arm.Field("properties.dhcpOptions.dnsServers", i),
					"The DNS server '%s' is not an IP address.", str(d))
			}
		}
	}
	if _, err := enumValue("properties.privateEndpointVNetPolicies", (*string)(props.PrivateEndpointVNetPolicies), "",
		enumStrings(armnetwork.PossiblePrivateEndpointVNetPoliciesValues())); err != nil {
		return nil, err
	}
	if s.hasSet {
		s.subnets = props.Subnets
		if s.subnets == nil {
			s.subnets = []*armnetwork.Subnet{}
		}
	}
	return s, nil
}

func (p *Provider) putVNet(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	spec, err := decodeVNet(r)
	if err != nil {
		return nil, err
	}
	var (
		body    armnetwork.VirtualNetwork
		op      *arm.Operation
		created bool
	)
	_, err = p.st.Txn(ctx, func(tx store.Tx) error {
		var cur armnetwork.VirtualNetwork
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
		var guid *string
		if cur.Properties != nil {
			guid = cur.Properties.ResourceGUID
		}
		id, name, guid, err := identity(tx, r, exists, str(cur.ID), str(cur.Name), guid)
		if err != nil {
			return err
		}
		state, done := p.settle(r.ID, false)
		in := spec.in.Properties
		doc := armnetwork.VirtualNetwork{
			ID: ptr(id.String()), Name: ptr(name), Type: ptr(typeVNet), Location: ptr(normLocation(*spec.in.Location)),
			Tags: spec.in.Tags, Etag: ptr(arm.NewETag()),
			Properties: &armnetwork.VirtualNetworkPropertiesFormat{
				AddressSpace:         &armnetwork.AddressSpace{AddressPrefixes: prefixStrings(spec.space)},
				DhcpOptions:          in.DhcpOptions,
				EnableDdosProtection: ptr(boolOr(in.EnableDdosProtection, false)),
				EnableVMProtection:   ptr(boolOr(in.EnableVMProtection, false)),
				Encryption:           in.Encryption,
				FlowTimeoutInMinutes: in.FlowTimeoutInMinutes,
				PrivateEndpointVNetPolicies: ptr(armnetwork.PrivateEndpointVNetPolicies(
					mustEnum((*string)(in.PrivateEndpointVNetPolicies), string(armnetwork.PrivateEndpointVNetPoliciesDisabled),
						enumStrings(armnetwork.PossiblePrivateEndpointVNetPoliciesValues())))),
				ProvisioningState: ptr(state),
				ResourceGUID:      guid,
			},
		}
		if in.DdosProtectionPlan != nil {
			if _, err := resolve(tx, id, "properties.ddosProtectionPlan.id", in.DdosProtectionPlan.ID, "Microsoft.Network/ddosProtectionPlans"); err != nil {
				return err
			}
		}
		if err := checkVNetPeerings(tx, r.ID, spec); err != nil {
			return err
		}
		u := p.newUsage(tx, r.ID.Subscription)
		if err := p.writeVNetSubnets(tx, u, doc, spec, state); err != nil {
			return err
		}
		if err := arm.Save(tx, r.ID, &doc); err != nil {
			return err
		}
		if body, err = vnetView(tx, doc, u); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, str(doc.Location), done)
		return err
	})
	if err != nil {
		return nil, err
	}
	return accepted(created, body, op), nil
}

// writeVNetSubnets applies a VNet PUT to its subnets (reference §2.1):
// properties.subnets omitted keeps them (they must still fit the address
// space); [] or null deletes them all; a list replaces the set. A subnet
// that holds NICs cannot be dropped.
func (p *Provider) writeVNetSubnets(tx store.Tx, u *usage, vnet armnetwork.VirtualNetwork, spec *vnetSpec, state armnetwork.ProvisioningState) error {
	vnetID, err := arm.ParseID(str(vnet.ID))
	if err != nil {
		return err
	}
	existing, err := loadSubnets(tx, vnetID)
	if err != nil {
		return err
	}
	if !spec.hasSet {
		for _, s := range existing {
			for _, pf := range subnetPrefixes(&s) {
				if !insideAny(pf, spec.space) {
					return badRequest(codeSubnetOutsideVNet, "properties.addressSpace.addressPrefixes",
						"Subnet '%s' is not valid because its IP address range %s is outside the IP address range of virtual network '%s' (%s). Keep an address prefix that contains the subnet, or change or delete the subnet first.",
						str(s.Name), pf, str(vnet.Name), formatPrefixes(spec.space))
				}
			}
		}
		return nil
	}
	byName := map[string]*armnetwork.Subnet{}
	for i := range existing {
		byName[strings.ToLower(str(existing[i].Name))] = &existing[i]
	}
	w := subnetWrite{vnetID: vnetID, vnetName: str(vnet.Name), location: str(vnet.Location), space: spec.space,
		state: state, etag: str(vnet.Etag)}
	keep := map[string]bool{}
	var entries []subnetEntry
	var docs []*armnetwork.Subnet
	for i, in := range spec.subnets {
		w.path = arm.Field("properties.subnets", i) + "."
		if in == nil || str(in.Name) == "" {
			return errMissing(w.path+"name", "A subnet's name")
		}
		k := strings.ToLower(*in.Name)
		if keep[k] {
			return errInvalid(w.path+"name", "The subnet name '%s' appears twice in properties.subnets; give each subnet its own name.", *in.Name)
		}
		keep[k] = true
		doc, prefixes, err := buildSubnet(tx, u, w, *in.Name, in, byName[k])
		if err != nil {
			return err
		}
		entries = append(entries, subnetEntry{name: str(doc.Name), path: w.path, prefixes: prefixes})
		docs = append(docs, doc)
	}
	if err := checkSubnetOverlaps(entries, str(vnet.Name)); err != nil {
		return err
	}
	for _, s := range existing {
		if keep[strings.ToLower(str(s.Name))] {
			continue
		}
		id := vnetID.Child("subnets", str(s.Name))
		if err := checkSubnetFree(u, id); err != nil {
			return err
		}
		if err := arm.Delete(tx, id); err != nil {
			return err
		}
	}
	for _, d := range docs {
		if err := arm.Save(tx, vnetID.Child("subnets", str(d.Name)), d); err != nil {
			return err
		}
	}
	return nil
}

// vnetView composes a stored VNet with its subnets.
func vnetView(r arm.Reader, v armnetwork.VirtualNetwork, u *usage) (armnetwork.VirtualNetwork, error) {
	if v.Properties == nil {
		v.Properties = &armnetwork.VirtualNetworkPropertiesFormat{}
	}
	props := *v.Properties
	v.Properties = &props
	id, err := arm.ParseID(str(v.ID))
	if err != nil {
		return v, err
	}
	subnets, err := loadSubnets(r, id)
	if err != nil {
		return v, err
	}
	props.Subnets = []*armnetwork.Subnet{}
	for _, s := range subnets {
		sv, err := subnetView(s, u)
		if err != nil {
			return v, err
		}
		props.Subnets = append(props.Subnets, &sv)
	}
	if props.VirtualNetworkPeerings, err = peeringViews(r, id); err != nil {
		return v, err
	}
	return v, nil
}

// storedSpace parses a stored VNet's address space.
func storedSpace(v *armnetwork.VirtualNetwork) ([]netip.Prefix, error) {
	var out []netip.Prefix
	if v.Properties == nil || v.Properties.AddressSpace == nil {
		return nil, nil
	}
	for _, s := range v.Properties.AddressSpace.AddressPrefixes {
		p, err := netip.ParsePrefix(strings.TrimSpace(str(s)))
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// vnetInUse turns the ipConfigurations left in a VNet's subnets into
// Azure's error for the first subnet that holds any.
func vnetInUse(refs []ipConfigRef) error {
	if len(refs) == 0 {
		return nil
	}
	subnet, err := arm.ParseID(refs[0].Subnet)
	if err != nil {
		return err
	}
	var users []string
	for _, r := range refs {
		if strings.EqualFold(r.Subnet, refs[0].Subnet) {
			users = append(users, r.user())
		}
	}
	return errSubnetInUse(subnet, users)
}

// vnetGroupDelete refuses to delete a VNet with its resource group while a
// NIC of another group still sits in one of its subnets; NICs of the same
// group go with it.
func (p *Provider) vnetGroupDelete(tx store.Tx, id arm.ResourceID) error {
	refs, err := p.newUsage(tx, id.Subscription).inVNet(id.String())
	if err != nil {
		return err
	}
	var foreign []ipConfigRef
	for _, r := range refs {
		if !strings.EqualFold(r.NICRG, id.ResourceGroup) {
			foreign = append(foreign, r)
		}
	}
	return vnetInUse(foreign)
}

// prefixStrings renders prefixes in canonical form.
func prefixStrings(ps []netip.Prefix) []*string {
	out := make([]*string, len(ps))
	for i, p := range ps {
		out[i] = ptr(p.String())
	}
	return out
}

// mustEnum is enumValue for a value already validated.
func mustEnum(v *string, def string, allowed []string) string {
	s, err := enumValue("", v, def, allowed)
	if err != nil {
		return def
	}
	return s
}
