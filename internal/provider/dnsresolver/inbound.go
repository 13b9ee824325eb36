package dnsresolver

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/dnsresolver/armdnsresolver"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/provider/network"
	"github.com/privlink/privlink/internal/store"
)

// Inbound endpoints. Rules, with Azure's answers:
//   - location is the resolver's;
//   - exactly one ipConfiguration, whose subnet.id names a subnet of the
//     resolver's virtual network;
//   - the subnet is delegated to Microsoft.Network/dnsResolvers: 400
//     SubnetMissingRequiredDelegation "Subnet <id> requires any of the
//     following delegation(s) [Microsoft.Network/dnsResolvers] to reference
//     service association link <id>/serviceAssociationLinks/dnsResolverLink."
//     (Azure/terraform-azurerm-caf-enterprise-scale#505);
//   - the subnet is /28 to /24 and used by no other resolver endpoint: 400
//     BadRequest "The specified subnet <id> could not be used to provision
//     the inbound endpoint. Please make sure you use a subnet of at least
//     /28 and at most /24 size, which is not currently in use by any other
//     DNS resolver endpoint..." (Azure/azure-rest-api-specs#21744);
//   - privateIpAllocationMethod Dynamic (the default) or Static, with the
//     network provider's allocator and its errors (AllocateAddress); the
//     subnet cannot change after creation.

func init() { network.RegisterAddressHolders(heldAddresses) }

// heldAddresses lists the addresses the inbound endpoints of a
// subscription hold (see network.RegisterAddressHolders).
func heldAddresses(r arm.Reader, subscription string) ([]network.HeldAddress, error) {
	eps, err := arm.LoadAll[armdnsresolver.InboundEndpoint](r, subColl(subscription, resolverSegment, inboundSegment))
	if err != nil {
		return nil, err
	}
	var out []network.HeldAddress
	for _, e := range eps {
		for i, ic := range inboundConfigs(&e) {
			a, err := netip.ParseAddr(str(ic.PrivateIPAddress))
			if err != nil || ic.Subnet == nil {
				continue
			}
			out = append(out, network.HeldAddress{ID: configID(str(e.ID), i), Holder: str(e.ID), Subnet: str(ic.Subnet.ID), Address: a})
		}
	}
	return out, nil
}

// configID names an inbound endpoint's ipConfiguration in messages.
func configID(endpoint string, i int) string {
	return fmt.Sprintf("%s/ipConfigurations/%d", endpoint, i)
}

func inboundConfigs(e *armdnsresolver.InboundEndpoint) []*armdnsresolver.IPConfiguration {
	if e.Properties == nil {
		return nil
	}
	var out []*armdnsresolver.IPConfiguration
	for _, ic := range e.Properties.IPConfigurations {
		if ic != nil {
			out = append(out, ic)
		}
	}
	return out
}

// Inbound is an inbound endpoint as the data path needs it.
type Inbound struct {
	ID      string
	Subnet  string
	Address netip.Addr
}

// InboundAddresses returns the inbound endpoints whose addresses are in
// subnets of the virtual network vnet.
func InboundAddresses(r arm.Reader, vnet arm.ResourceID) ([]Inbound, error) {
	held, err := heldAddresses(r, vnet.Subscription)
	if err != nil {
		return nil, err
	}
	var out []Inbound
	prefix := strings.ToLower(vnet.String()) + "/subnets/"
	for _, h := range held {
		if strings.HasPrefix(strings.ToLower(h.Subnet), prefix) {
			out = append(out, Inbound{ID: h.Holder, Subnet: h.Subnet, Address: h.Address})
		}
	}
	return out, nil
}

// IsInboundKey reports whether a store key is an inbound endpoint's
// document, whose change moves an address of some network.
func IsInboundKey(key string) bool {
	id, ok := arm.ParseDocKey(key)
	return ok && strings.EqualFold(id.Type(), InboundType)
}

// NetworkOf returns the virtual network of a stored inbound endpoint
// document.
func NetworkOf(kv store.KV) (arm.ResourceID, bool) {
	var e armdnsresolver.InboundEndpoint
	if err := decode(kv.Value, &e); err != nil {
		return arm.ResourceID{}, false
	}
	for _, ic := range inboundConfigs(&e) {
		if ic.Subnet == nil {
			continue
		}
		if s, err := arm.ParseID(str(ic.Subnet.ID)); err == nil {
			return s.Parent(), true
		}
	}
	return arm.ResourceID{}, false
}

func (p *Provider) getInbound(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var v armdnsresolver.InboundEndpoint
	ok, err := arm.Load(arm.ReadOnly(ctx, p.st), r.ID, &v)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, arm.NotFound(r.ID)
	}
	return arm.OK(v), nil
}

func (p *Provider) listInbound(ctx context.Context, r *arm.Request) ([]any, error) {
	vs, err := arm.LoadAll[armdnsresolver.InboundEndpoint](arm.ReadOnly(ctx, p.st), r.ID)
	if err != nil {
		return nil, err
	}
	return toAny(vs), nil
}

// inboundSpec is a decoded, checked inbound endpoint PUT body.
type inboundSpec struct {
	in     armdnsresolver.InboundEndpoint
	subnet arm.ResourceID
	static bool
	addr   netip.Addr
}

const ipcPath = "properties.ipConfigurations[0]"

func decodeInbound(r *arm.Request) (*inboundSpec, error) {
	if err := arm.ValidateNetworkName("inbound endpoint", r.ID.Name()); err != nil {
		return nil, err
	}
	s := &inboundSpec{}
	if err := r.Decode(&s.in); err != nil {
		return nil, err
	}
	if err := arm.ValidateLocation(s.in.Location); err != nil {
		return nil, err
	}
	if err := arm.ValidateTags(s.in.Tags); err != nil {
		return nil, err
	}
	ics := inboundConfigs(&s.in)
	if len(ics) != 1 {
		return nil, arm.BadRequest("InvalidIpConfigurations", "properties.ipConfigurations",
			"An inbound endpoint takes exactly one IP configuration (properties.ipConfigurations), not %d.", len(ics))
	}
	ic := ics[0]
	if ic.Subnet == nil || str(ic.Subnet.ID) == "" {
		return nil, arm.BadRequest("MissingRequiredProperty", ipcPath+".subnet.id",
			"The IP configuration needs subnet.id, the subnet of the resolver's virtual network the endpoint's address comes from.")
	}
	sub, err := arm.ParseID(*ic.Subnet.ID)
	if err != nil || !strings.EqualFold(sub.Type(), subnetType) {
		return nil, arm.InvalidParameter(ipcPath+".subnet.id", "'%s' is not a subnet ID (.../providers/Microsoft.Network/virtualNetworks/{network}/subnets/{subnet}).", *ic.Subnet.ID)
	}
	s.subnet = sub
	switch m := strings.ToLower(string(ptrOr(ic.PrivateIPAllocationMethod, armdnsresolver.IPAllocationMethodDynamic))); m {
	case "dynamic":
	case "static":
		s.static = true
		a, err := netip.ParseAddr(str(ic.PrivateIPAddress))
		if err != nil || !a.Is4() {
			return nil, arm.InvalidParameter(ipcPath+".privateIpAddress",
				"Static allocation needs privateIpAddress, an IPv4 address in the subnet; '%s' is not one.", str(ic.PrivateIPAddress))
		}
		s.addr = a
	default:
		return nil, arm.InvalidParameter(ipcPath+".privateIpAllocationMethod",
			"privateIpAllocationMethod '%s' is not one of Dynamic, Static.", *ic.PrivateIPAllocationMethod)
	}
	return s, nil
}

func (p *Provider) putInbound(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	spec, err := decodeInbound(r)
	if err != nil {
		return nil, err
	}
	var (
		body    armdnsresolver.InboundEndpoint
		op      *arm.Operation
		created bool
	)
	_, err = p.st.Txn(ctx, func(tx store.Tx) error {
		var cur armdnsresolver.InboundEndpoint
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, str(cur.Etag)); err != nil {
			return err
		}
		created = !exists
		next, err := buildInbound(tx, r.ID, spec, exists, &cur)
		if err != nil {
			return err
		}
		if err := arm.Save(tx, r.ID, next); err != nil {
			return err
		}
		body = *next
		op, err = arm.StartOperation(tx, r.ID, str(next.Location), true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("put inbound endpoint %s: %w", r.ID, err)
	}
	return accepted(created, body, op), nil
}

// buildInbound checks an inbound endpoint against its resolver and subnet
// and allocates its address, in the transaction that stores it.
func buildInbound(tx store.Tx, id arm.ResourceID, spec *inboundSpec, exists bool, cur *armdnsresolver.InboundEndpoint) (*armdnsresolver.InboundEndpoint, error) {
	var res armdnsresolver.DNSResolver
	ok, err := arm.Load(tx, id.Parent(), &res)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, arm.NotFound(id.Parent())
	}
	loc := normLocation(str(spec.in.Location))
	if loc != normLocation(str(res.Location)) {
		return nil, arm.BadRequest("InvalidResourceLocation", "location",
			"An inbound endpoint must be in its DNS resolver's location '%s', not '%s'.", str(res.Location), loc)
	}
	vnet := ""
	if res.Properties != nil && res.Properties.VirtualNetwork != nil {
		vnet = str(res.Properties.VirtualNetwork.ID)
	}
	if !strings.EqualFold(spec.subnet.Parent().String(), vnet) {
		return nil, arm.BadRequest("InvalidSubnet", ipcPath+".subnet.id",
			"Subnet '%s' is not in the DNS resolver's virtual network '%s'. Use a subnet of that network.", spec.subnet, vnet)
	}
	var subnet armnetwork.Subnet
	found, err := arm.Load(tx, spec.subnet, &subnet)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, arm.BadRequest("InvalidSubnet", ipcPath+".subnet.id", "Subnet '%s' was not found. Create it first.", spec.subnet)
	}
	canonSubnet := str(subnet.ID)
	if err := checkEndpointSubnet(tx, id, canonSubnet, &subnet); err != nil {
		return nil, err
	}
	var current netip.Addr
	currentSubnet := ""
	if exists {
		for _, ic := range inboundConfigs(cur) {
			if ic.Subnet != nil && !strings.EqualFold(str(ic.Subnet.ID), canonSubnet) {
				return nil, arm.BadRequest("InvalidSubnet", ipcPath+".subnet.id",
					"The subnet of inbound endpoint '%s' cannot be changed after creation (it is '%s'). Create another endpoint instead.", id.Name(), str(ic.Subnet.ID))
			}
			if a, err := netip.ParseAddr(str(ic.PrivateIPAddress)); err == nil {
				current, currentSubnet = a, canonSubnet
			}
		}
	}
	addr, err := network.AllocateAddress(tx, network.SubnetAllocation{
		Holder: id, ConfigID: configID(id.String(), 0), Subnet: spec.subnet, Path: ipcPath,
		Static: spec.static, Want: spec.addr, Current: current, CurrentSubnet: currentSubnet,
	})
	if err != nil {
		return nil, err
	}
	method := armdnsresolver.IPAllocationMethodDynamic
	if spec.static {
		method = armdnsresolver.IPAllocationMethodStatic
	}
	next := &armdnsresolver.InboundEndpoint{
		ID: ptr(id.String()), Name: ptr(id.Name()), Type: ptr(InboundType),
		Location: ptr(loc), Tags: spec.in.Tags, Etag: ptr(arm.NewETag()),
		Properties: &armdnsresolver.InboundEndpointProperties{
			IPConfigurations: []*armdnsresolver.IPConfiguration{{
				Subnet:                    &armdnsresolver.SubResource{ID: ptr(canonSubnet)},
				PrivateIPAddress:          ptr(addr.String()),
				PrivateIPAllocationMethod: &method,
			}},
			ProvisioningState: &provisioningSucceeded,
			ResourceGUID:      newGUID(),
		},
	}
	if exists {
		next.ID, next.Name = cur.ID, cur.Name
		if cur.Properties != nil && cur.Properties.ResourceGUID != nil {
			next.Properties.ResourceGUID = cur.Properties.ResourceGUID
		}
	}
	return next, nil
}

// checkEndpointSubnet applies Azure's rules for a resolver endpoint's
// subnet: delegated to Microsoft.Network/dnsResolvers, /28 to /24, and used
// by no other resolver endpoint.
func checkEndpointSubnet(r arm.Reader, id arm.ResourceID, subnetID string, s *armnetwork.Subnet) error {
	delegated := false
	if s.Properties != nil {
		for _, d := range s.Properties.Delegations {
			if d != nil && d.Properties != nil && strings.EqualFold(str(d.Properties.ServiceName), DelegationService) {
				delegated = true
			}
		}
	}
	if !delegated {
		return arm.BadRequest("SubnetMissingRequiredDelegation", ipcPath+".subnet.id",
			"Subnet %s requires any of the following delegation(s) [%s] to reference service association link %s/serviceAssociationLinks/dnsResolverLink.",
			subnetID, DelegationService, subnetID)
	}
	unusable := func() error {
		return arm.BadRequest("BadRequest", ipcPath+".subnet.id",
			"The specified subnet %s could not be used to provision the inbound endpoint. Please make sure you use a subnet of at least /%d and at most /%d size, which is not currently in use by any other DNS resolver endpoint or any other Azure service workloads.",
			subnetID, maxEndpointBits, minEndpointBits)
	}
	var prefixes []string
	if s.Properties != nil {
		if s.Properties.AddressPrefix != nil {
			prefixes = append(prefixes, *s.Properties.AddressPrefix)
		}
		for _, p := range s.Properties.AddressPrefixes {
			prefixes = append(prefixes, str(p))
		}
	}
	for _, ps := range prefixes {
		p, err := netip.ParsePrefix(ps)
		if err != nil || !p.Addr().Is4() {
			continue
		}
		if p.Bits() < minEndpointBits || p.Bits() > maxEndpointBits {
			return unusable()
		}
	}
	held, err := heldAddresses(r, id.Subscription)
	if err != nil {
		return err
	}
	for _, h := range held {
		if strings.EqualFold(h.Subnet, subnetID) && !strings.EqualFold(h.Holder, id.String()) {
			return unusable()
		}
	}
	return nil
}

// patchInbound updates tags, the only property a PATCH may change.
func (p *Provider) patchInbound(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in armdnsresolver.InboundEndpointPatch
	return patchTags(ctx, p.st, r, &in, func() map[string]*string { return in.Tags }, inboundMeta,
		func(_ arm.Reader, v armdnsresolver.InboundEndpoint) armdnsresolver.InboundEndpoint { return v })
}

func (p *Provider) deleteInbound(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	return deleteDoc(ctx, p.st, r, inboundMeta, nil)
}

func inboundMeta(v *armdnsresolver.InboundEndpoint) meta {
	return meta{etag: &v.Etag, tags: &v.Tags, location: &v.Location}
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
