package network

import (
	"context"
	"net/netip"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Virtual network gateways (Microsoft.Network/virtualNetworkGateways):
// route-based VPN gateways, one per virtual network, in the network's
// subnet named GatewaySubnet, reachable on the emulated internet at a
// Standard Static public IP address. A controller (internal/controller,
// vpn.go) makes each one a namespace with a leg in GatewaySubnet (the
// address its ipConfiguration holds, allocated here like a NIC's) and a
// leg on the internet at the public address, where a strongSwan charon
// keeps one IPsec tunnel per connection (vpnconnection.go). Active-active
// gateways, BGP, point-to-site and ExpressRoute are refused as not
// supported.

const (
	typeVNetGateway = "Microsoft.Network/virtualNetworkGateways"
	// GatewaySubnetName is the one subnet name a virtual network gateway
	// may be placed in, as in Azure.
	GatewaySubnetName = "GatewaySubnet"
)

// Error codes of virtual network gateways. Azure's own where known; the
// others by analogy with its messages.
const (
	codeGatewaySubnet     = "InvalidGatewaySubnet"                         // by analogy
	codeOneGatewayPerVNet = "VirtualNetworkCanHaveOnlyOneVpnGateway"       // by analogy
	codePublicIPInUse     = "PublicIPAddressInUse"                         // Azure's
	codeGatewayInUse      = "InUseVirtualNetworkGatewayCannotBeDeleted"    // by analogy
	codeLocalGatewayInUse = "InUseLocalNetworkGatewayCannotBeDeleted"      // by analogy
	codeGatewaySku        = "VirtualNetworkGatewaySkuNotSupported"         // by analogy
	codeGatewayIPConfigs  = "VirtualNetworkGatewayIpConfigurationsInvalid" // by analogy
)

// joinGatewayAction is the linked action privlink checks on a virtual
// network gateway that a connection names (by analogy with the other
// join actions; Azure's own check could not be confirmed).
const joinGatewayAction = "Microsoft.Network/virtualNetworkGateways/join/action"

var gatewayLinks = []arm.Link{
	{Path: "properties.ipConfigurations[].properties.subnet.id", Type: typeSubnet, Action: arm.JoinSubnetAction},
	{Path: "properties.ipConfigurations[].properties.publicIPAddress.id", Type: typePublicIP, Action: arm.JoinPublicIPAction},
}

// vpnGatewaySKUs are the SKUs accepted (route-based VPN gateways); each
// one's generation, as Azure assigns it by default.
var vpnGatewaySKUs = map[string]armnetwork.VPNGatewayGeneration{
	"VpnGw1": armnetwork.VPNGatewayGenerationGeneration1, "VpnGw2": armnetwork.VPNGatewayGenerationGeneration2,
	"VpnGw3": armnetwork.VPNGatewayGenerationGeneration2, "VpnGw4": armnetwork.VPNGatewayGenerationGeneration2,
	"VpnGw5":   armnetwork.VPNGatewayGenerationGeneration2,
	"VpnGw1AZ": armnetwork.VPNGatewayGenerationGeneration1, "VpnGw2AZ": armnetwork.VPNGatewayGenerationGeneration2,
	"VpnGw3AZ": armnetwork.VPNGatewayGenerationGeneration2, "VpnGw4AZ": armnetwork.VPNGatewayGenerationGeneration2,
	"VpnGw5AZ": armnetwork.VPNGatewayGenerationGeneration2,
}

// A gateway's ipConfiguration holds an address in GatewaySubnet the way
// other resources do (holders.go): no NIC takes it, and the subnet cannot
// be deleted under it.
func init() { RegisterAddressHolders(gatewayAddresses) }

func gatewayAddresses(r arm.Reader, sub string) ([]HeldAddress, error) {
	gws, err := arm.LoadAll[armnetwork.VirtualNetworkGateway](r, subColl(sub, "virtualNetworkGateways"))
	if err != nil {
		return nil, err
	}
	var out []HeldAddress
	for _, gw := range gws {
		for _, ic := range gatewayIPConfigs(&gw) {
			if ic.Properties.Subnet == nil {
				continue
			}
			a, _ := netip.ParseAddr(str(ic.Properties.PrivateIPAddress))
			out = append(out, HeldAddress{ID: str(ic.ID), Holder: str(gw.ID), Subnet: str(ic.Properties.Subnet.ID), Address: a})
		}
	}
	return out, nil
}

// gatewayIPConfigs returns gw's ipConfigurations that have properties.
func gatewayIPConfigs(gw *armnetwork.VirtualNetworkGateway) []*armnetwork.VirtualNetworkGatewayIPConfiguration {
	if gw.Properties == nil {
		return nil
	}
	var out []*armnetwork.VirtualNetworkGatewayIPConfiguration
	for _, ic := range gw.Properties.IPConfigurations {
		if ic != nil && ic.Properties != nil {
			out = append(out, ic)
		}
	}
	return out
}

func (p *Provider) vnetGateways() tracked[armnetwork.VirtualNetworkGateway] {
	return tracked[armnetwork.VirtualNetworkGateway]{p: p,
		meta: func(v *armnetwork.VirtualNetworkGateway) docMeta {
			return docMeta{id: &v.ID, name: &v.Name, etag: &v.Etag, location: &v.Location, tags: &v.Tags}
		},
		beforeDelete: func(tx store.Tx, _ *usage, id arm.ResourceID, _ *armnetwork.VirtualNetworkGateway) error {
			return connectedInUse(tx, codeGatewayInUse, "Virtual network gateway", id)
		}}
}

// connectedGroupDelete is the BeforeGroupDelete of a type that
// connections name (gateways, local network gateways): a group whose
// resource a connection of another group uses cannot go.
func connectedGroupDelete(code, kind string) func(tx store.Tx, id arm.ResourceID) error {
	return func(tx store.Tx, id arm.ResourceID) error {
		users, err := connectionsUsing(tx, id, "")
		if err != nil {
			return err
		}
		if foreign := outside(users, id.ResourceGroup); len(foreign) > 0 {
			return errInUse(code, kind, id, foreign, "Delete its connections first.")
		}
		return nil
	}
}

// connectedInUse refuses deleting a resource that connections name.
func connectedInUse(r arm.Reader, code, kind string, id arm.ResourceID) error {
	users, err := connectionsUsing(r, id, "")
	if err != nil || len(users) == 0 {
		return err
	}
	return errInUse(code, kind, id, users, "Delete its connections first.")
}

func (p *Provider) putVNetGateway(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	guid := func(v *armnetwork.VirtualNetworkGateway) *string {
		if v.Properties == nil {
			return nil
		}
		return v.Properties.ResourceGUID
	}
	return p.vnetGateways().put(ctx, r, "virtual network gateway", guid, func(tx store.Tx, w putWrite[armnetwork.VirtualNetworkGateway]) (*armnetwork.VirtualNetworkGateway, error) {
		return buildVNetGateway(tx, w)
	})
}

// checkGatewayProps refuses what privlink does not serve, each with the
// field that asks for it.
func checkGatewayProps(in *armnetwork.VirtualNetworkGateway, props *armnetwork.VirtualNetworkGatewayPropertiesFormat) (sku string, err error) {
	const pp = "properties."
	switch {
	case in.ExtendedLocation != nil:
		return "", errUnsupported("extendedLocation", "privlink has no edge zones; remove extendedLocation.")
	case props.GatewayType == nil:
		return "", errMissing(pp+"gatewayType", "The gateway's type (Vpn)")
	case !strings.EqualFold(string(*props.GatewayType), string(armnetwork.VirtualNetworkGatewayTypeVPN)):
		if slicesContainsFold(enumStrings(armnetwork.PossibleVirtualNetworkGatewayTypeValues()), string(*props.GatewayType)) {
			return "", errUnsupported(pp+"gatewayType", "gatewayType '%s' is not supported: privlink serves VPN gateways (gatewayType Vpn).", *props.GatewayType)
		}
		return "", errEnum(pp+"gatewayType", string(*props.GatewayType), []string{string(armnetwork.VirtualNetworkGatewayTypeVPN)})
	case props.VPNType != nil && !strings.EqualFold(string(*props.VPNType), string(armnetwork.VPNTypeRouteBased)):
		if strings.EqualFold(string(*props.VPNType), string(armnetwork.VPNTypePolicyBased)) {
			return "", errUnsupported(pp+"vpnType", "Policy-based VPN gateways are not supported: set vpnType to RouteBased.")
		}
		return "", errEnum(pp+"vpnType", string(*props.VPNType), []string{string(armnetwork.VPNTypeRouteBased)})
	case props.Active != nil && *props.Active:
		return "", errUnsupported(pp+"activeActive", "Active-active gateways are not supported: set activeActive to false and give the gateway one ipConfiguration.")
	case props.EnableBgp != nil && *props.EnableBgp:
		return "", errUnsupported(pp+"enableBgp", "BGP is not supported: set enableBgp to false; the routes to a connection's remote address space are static.")
	case props.BgpSettings != nil:
		return "", errUnsupported(pp+"bgpSettings", "BGP is not supported: remove bgpSettings.")
	case props.VPNClientConfiguration != nil:
		return "", errUnsupported(pp+"vpnClientConfiguration", "Point-to-site VPN is not supported: remove vpnClientConfiguration.")
	case len(props.NatRules) > 0:
		return "", errUnsupported(pp+"natRules", "NAT rules on VPN gateways are not supported: remove natRules.")
	case props.CustomRoutes != nil && len(props.CustomRoutes.AddressPrefixes) > 0:
		return "", errUnsupported(pp+"customRoutes", "Custom routes are not supported: remove customRoutes.")
	case props.GatewayDefaultSite != nil:
		return "", errUnsupported(pp+"gatewayDefaultSite", "Forced tunnelling (gatewayDefaultSite) is not supported: remove gatewayDefaultSite.")
	case props.EnablePrivateIPAddress != nil && *props.EnablePrivateIPAddress:
		return "", errUnsupported(pp+"enablePrivateIpAddress", "Private IP connections to a gateway are not supported: set enablePrivateIpAddress to false.")
	case props.SKU == nil || props.SKU.Name == nil:
		return "", errMissing(pp+"sku.name", "The gateway's SKU (VpnGw1 to VpnGw5, or their AZ forms)")
	}
	sku = string(*props.SKU.Name)
	canon := ""
	for k := range vpnGatewaySKUs {
		if strings.EqualFold(k, sku) {
			canon = k
		}
	}
	if canon == "" {
		return "", badRequest(codeGatewaySku, pp+"sku.name", "Gateway SKU '%s' is not supported for a route-based VPN gateway: use VpnGw1, VpnGw2, VpnGw3, VpnGw4 or VpnGw5 (or their AZ forms).", sku)
	}
	if t := props.SKU.Tier; t != nil && !strings.EqualFold(string(*t), canon) {
		return "", badRequest(codeGatewaySku, pp+"sku.tier", "The gateway's sku.tier '%s' must equal its sku.name '%s'.", *t, canon)
	}
	if g := props.VPNGatewayGeneration; g != nil && !strings.EqualFold(string(*g), string(vpnGatewaySKUs[canon])) {
		return "", badRequest(codeGatewaySku, pp+"vpnGatewayGeneration", "SKU %s is of vpnGatewayGeneration %s, not '%s'.", canon, vpnGatewaySKUs[canon], *g)
	}
	return canon, nil
}

func slicesContainsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// buildVNetGateway validates a gateway PUT and builds its document, its
// ipConfiguration's address allocated in GatewaySubnet.
func buildVNetGateway(tx store.Tx, w putWrite[armnetwork.VirtualNetworkGateway]) (*armnetwork.VirtualNetworkGateway, error) {
	props := w.in.Properties
	if props == nil {
		return nil, errMissing("properties", "The virtual network gateway's properties")
	}
	sku, err := checkGatewayProps(w.in, props)
	if err != nil {
		return nil, err
	}
	const icPath = "properties.ipConfigurations"
	switch n := len(props.IPConfigurations); {
	case n == 0:
		return nil, errMissing(icPath, "One ipConfiguration (a subnet named GatewaySubnet and a public IP address)")
	case n > 1:
		return nil, badRequest(codeGatewayIPConfigs, icPath, "A gateway that is not active-active has exactly one ipConfiguration, not %d (active-active gateways are not supported).", n)
	}
	ic := props.IPConfigurations[0]
	path := arm.Field(icPath, 0)
	pp := path + ".properties."
	if ic == nil || ic.Properties == nil {
		return nil, errMissing(path+".properties", "The ipConfiguration's properties")
	}
	name := str(ic.Name)
	if name == "" {
		name = "default"
	}
	if err := arm.ValidateNetworkName("ipConfiguration", name); err != nil {
		return nil, err
	}
	if m := ic.Properties.PrivateIPAllocationMethod; m != nil && !strings.EqualFold(string(*m), string(armnetwork.IPAllocationMethodDynamic)) {
		return nil, errInvalid(pp+"privateIPAllocationMethod", "A VPN gateway's address in GatewaySubnet is Dynamic, not '%s'.", *m)
	}
	if ic.Properties.Subnet == nil {
		return nil, errMissing(pp+"subnet.id", "The gateway's subnet (the network's subnet named GatewaySubnet)")
	}
	subnet, err := resolveSameRegion(tx, w.id, w.loc, pp+"subnet.id", ic.Properties.Subnet.ID, typeSubnet)
	if err != nil {
		return nil, err
	}
	if subnet.ID.Name() != GatewaySubnetName {
		return nil, badRequest(codeGatewaySubnet, pp+"subnet.id", "A virtual network gateway must be in the subnet named GatewaySubnet of its network, not in '%s'. Create a subnet named GatewaySubnet (/29 or larger; /27 is usual).", subnet.ID.Name())
	}
	vnet := subnet.ID.Parent()
	if other, err := gatewayOfVNet(tx, vnet, w.id); err != nil {
		return nil, err
	} else if other != "" {
		return nil, badRequest(codeOneGatewayPerVNet, pp+"subnet.id", "Virtual network %s already has the VPN gateway %s; a network has at most one.", vnet, other)
	}
	if ic.Properties.PublicIPAddress == nil {
		return nil, errMissing(pp+"publicIPAddress.id", "The gateway's public IP address (a Standard Static public IP address)")
	}
	pip, err := resolveSameRegion(tx, w.id, w.loc, pp+"publicIPAddress.id", ic.Properties.PublicIPAddress.ID, typePublicIP)
	if err != nil {
		return nil, err
	}
	if holder, err := publicIPHolder(tx, pip.ID, w.id); err != nil {
		return nil, err
	} else if holder != "" {
		return nil, badRequest(codePublicIPInUse, pp+"publicIPAddress.id", "Public IP address %s is in use by %s; a gateway needs a public IP address of its own.", pip, holder)
	}
	icID := w.id.String() + "/ipConfigurations/" + name
	var cur netip.Addr
	curSubnet := ""
	if w.cur != nil {
		for _, c := range gatewayIPConfigs(w.cur) {
			cur, _ = netip.ParseAddr(str(c.Properties.PrivateIPAddress))
			if c.Properties.Subnet != nil {
				curSubnet = str(c.Properties.Subnet.ID)
			}
		}
	}
	addr, err := AllocateAddress(tx, SubnetAllocation{Holder: w.id, ConfigID: icID, Subnet: subnet.ID, Path: path,
		Current: cur, CurrentSubnet: curSubnet})
	if err != nil {
		return nil, err
	}
	return &armnetwork.VirtualNetworkGateway{
		ID: ptr(w.id.String()), Name: ptr(w.name), Type: ptr(typeVNetGateway), Location: ptr(w.loc), Tags: w.in.Tags, Etag: ptr(w.etag),
		Properties: &armnetwork.VirtualNetworkGatewayPropertiesFormat{
			ProvisioningState:    ptr(w.state),
			ResourceGUID:         w.guid,
			GatewayType:          ptr(armnetwork.VirtualNetworkGatewayTypeVPN),
			VPNType:              ptr(armnetwork.VPNTypeRouteBased),
			VPNGatewayGeneration: ptr(vpnGatewaySKUs[sku]),
			SKU: &armnetwork.VirtualNetworkGatewaySKU{Name: ptr(armnetwork.VirtualNetworkGatewaySKUName(sku)),
				Tier: ptr(armnetwork.VirtualNetworkGatewaySKUTier(sku)), Capacity: ptr[int32](2)},
			Active:    ptr(false),
			EnableBgp: ptr(false),
			IPConfigurations: []*armnetwork.VirtualNetworkGatewayIPConfiguration{{
				ID: ptr(icID), Name: ptr(name), Etag: ptr(w.etag),
				Properties: &armnetwork.VirtualNetworkGatewayIPConfigurationPropertiesFormat{
					PrivateIPAllocationMethod: ptr(armnetwork.IPAllocationMethodDynamic),
					PrivateIPAddress:          ptr(addr.String()),
					Subnet:                    &armnetwork.SubResource{ID: ptr(subnet.String())},
					PublicIPAddress:           &armnetwork.SubResource{ID: ptr(pip.String())},
					ProvisioningState:         ptr(w.state),
				},
			}},
		},
	}, nil
}

// gatewayOfVNet returns the ID of a gateway other than self in vnet, or "".
func gatewayOfVNet(r arm.Reader, vnet, self arm.ResourceID) (string, error) {
	gws, err := arm.LoadAll[armnetwork.VirtualNetworkGateway](r, subColl(vnet.Subscription, "virtualNetworkGateways"))
	if err != nil {
		return "", err
	}
	for _, gw := range gws {
		if lkey(str(gw.ID)) == lkey(self.String()) {
			continue
		}
		for _, ic := range gatewayIPConfigs(&gw) {
			if ic.Properties.Subnet != nil && arm.ScopeContains(vnet.String(), str(ic.Properties.Subnet.ID)) {
				return str(gw.ID), nil
			}
		}
	}
	return "", nil
}

// publicIPHolder returns the ipConfiguration of a gateway other than self
// that holds the public IP address pip, or "".
func publicIPHolder(r arm.Reader, pip, self arm.ResourceID) (string, error) {
	gws, err := arm.LoadAll[armnetwork.VirtualNetworkGateway](r, subColl(pip.Subscription, "virtualNetworkGateways"))
	if err != nil {
		return "", err
	}
	for _, gw := range gws {
		if self.Name() != "" && lkey(str(gw.ID)) == lkey(self.String()) {
			continue
		}
		for _, ic := range gatewayIPConfigs(&gw) {
			if ic.Properties.PublicIPAddress != nil && lkey(str(ic.Properties.PublicIPAddress.ID)) == lkey(pip.String()) {
				return str(ic.ID), nil
			}
		}
	}
	return "", nil
}

// publicIPInUse refuses deleting a public IP address a gateway holds, with
// Azure's code.
func publicIPInUse(r arm.Reader, id arm.ResourceID) error {
	holder, err := publicIPHolder(r, id, arm.ResourceID{})
	if err != nil || holder == "" {
		return err
	}
	return badRequest(codePublicIPInUse, "", "Public IP address %s can not be deleted since it is still allocated to resource %s. In order to delete the public IP, disassociate/detach the Public IP address from the resource.", id, holder)
}
