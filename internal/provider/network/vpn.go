package network

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/addrpool"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// The resource types of site-to-site VPN: public IP addresses (an address
// of the emulated internet, drawn from the pool servers' public addresses
// come from) and local network gateways (the on-premises side: its
// device's public address and its address space). Virtual network
// gateways (vpngateway.go) and connections (vpnconnection.go) use them.

const (
	typePublicIP = "Microsoft.Network/publicIPAddresses"
	typeLocalGW  = "Microsoft.Network/localNetworkGateways"
)

// Error codes of the VPN types. Azure's own for a Basic or Dynamic
// Standard address could not be confirmed: by analogy with its messages
// ("Standard sku publicIp /subscriptions/... must have AllocationMethod
// set to Static").
const (
	codePublicIPSku        = "PublicIPSkuNotSupported"                  // by analogy
	codeStandardNotDynamic = "StandardSkuPublicIPAddressesMustBeStatic" // by analogy
	codeAddressPoolFull    = "PublicIPCountLimitReached"                // Azure's quota code
	codeInvalidGatewayIP   = "InvalidLocalNetworkGatewayIpAddress"      // by analogy
)

// vpnTypes are the VPN resource types, appended to Types.
func (p *Provider) vpnTypes() []*arm.ResourceType {
	v := Versions.All()
	return []*arm.ResourceType{
		p.publicIPs().register(&arm.ResourceType{Type: typePublicIP, APIVersions: v, Put: p.putPublicIP, BeforeGroupDelete: releasePublicIP}),
		p.localGateways().register(&arm.ResourceType{Type: typeLocalGW, APIVersions: v, Put: p.putLocalGateway, BeforeGroupDelete: connectedGroupDelete(codeLocalGatewayInUse, "Local network gateway")}),
		p.vnetGateways().register(&arm.ResourceType{Type: typeVNetGateway, APIVersions: v, Put: p.putVNetGateway, Links: gatewayLinks, BeforeGroupDelete: connectedGroupDelete(codeGatewayInUse, "Virtual network gateway")}),
		p.connections().register(&arm.ResourceType{Type: typeGatewayConnection, APIVersions: v, Put: p.putConnection, Links: connectionLinks,
			ReadActions:  map[string]arm.Handler{"sharedkey": p.getSharedKey},
			WriteActions: map[string]arm.Handler{"sharedkey": p.setSharedKey},
			Actions:      map[string]arm.Handler{"sharedkey/reset": p.resetSharedKey}}),
	}
}

func (p *Provider) publicIPs() tracked[armnetwork.PublicIPAddress] {
	return tracked[armnetwork.PublicIPAddress]{p: p,
		meta: func(v *armnetwork.PublicIPAddress) docMeta {
			return docMeta{id: &v.ID, name: &v.Name, etag: &v.Etag, location: &v.Location, tags: &v.Tags}
		},
		beforeDelete: func(tx store.Tx, _ *usage, id arm.ResourceID, _ *armnetwork.PublicIPAddress) error {
			if err := publicIPInUse(tx, id); err != nil {
				return err
			}
			return releasePublicIP(tx, id)
		}}
}

// releasePublicIP frees the address a public IP address resource holds.
func releasePublicIP(tx store.Tx, id arm.ResourceID) error {
	var v armnetwork.PublicIPAddress
	ok, err := arm.Load(tx, id, &v)
	if err != nil || !ok {
		return err
	}
	return addrpool.Release(tx, str(v.ID))
}

// putPublicIP: Standard, Static, IPv4 only (Basic SKUs are retired in
// Azure; the emulated internet is IPv4). The address is allocated on
// create and kept for the resource's life, as a Static address is.
func (p *Provider) putPublicIP(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	guid := func(a *armnetwork.PublicIPAddress) *string {
		if a.Properties == nil {
			return nil
		}
		return a.Properties.ResourceGUID
	}
	return p.publicIPs().put(ctx, r, "public IP address", guid,
		func(tx store.Tx, w putWrite[armnetwork.PublicIPAddress]) (*armnetwork.PublicIPAddress, error) {
			in := w.in
			props := in.Properties
			if props == nil {
				props = &armnetwork.PublicIPAddressPropertiesFormat{}
			}
			if err := checkPublicIP(in, props); err != nil {
				return nil, err
			}
			var addr netip.Addr
			if w.cur != nil && w.cur.Properties != nil {
				addr, _ = netip.ParseAddr(str(w.cur.Properties.IPAddress))
			}
			if !addr.IsValid() {
				used, err := addrpool.Used(tx)
				if err != nil {
					return nil, err
				}
				addr, err = addrpool.Public.Allocate(tx, w.id.String(), used)
				if errors.Is(err, addrpool.ErrFull) {
					return nil, arm.Conflict(codeAddressPoolFull, "No address is left in the emulated internet's %s for another public IP address; delete one first.", addrpool.Public.Range)
				}
				if err != nil {
					return nil, err
				}
			}
			idle := props.IdleTimeoutInMinutes
			if idle == nil {
				idle = ptr[int32](4)
			}
			return &armnetwork.PublicIPAddress{
				ID: ptr(w.id.String()), Name: ptr(w.name), Type: ptr(typePublicIP), Location: ptr(w.loc), Tags: in.Tags, Etag: ptr(w.etag),
				SKU: &armnetwork.PublicIPAddressSKU{Name: ptr(armnetwork.PublicIPAddressSKUNameStandard), Tier: ptr(armnetwork.PublicIPAddressSKUTierRegional)},
				Properties: &armnetwork.PublicIPAddressPropertiesFormat{
					ProvisioningState:        ptr(w.state),
					ResourceGUID:             w.guid,
					IPAddress:                ptr(addr.String()),
					PublicIPAllocationMethod: ptr(armnetwork.IPAllocationMethodStatic),
					PublicIPAddressVersion:   ptr(armnetwork.IPVersionIPv4),
					IdleTimeoutInMinutes:     idle,
				},
			}, nil
		})
}

func checkPublicIP(in *armnetwork.PublicIPAddress, props *armnetwork.PublicIPAddressPropertiesFormat) error {
	if in.SKU == nil || in.SKU.Name == nil {
		return errMissing("sku.name", "The public IP address's SKU (Standard)")
	}
	if !strings.EqualFold(string(*in.SKU.Name), string(armnetwork.PublicIPAddressSKUNameStandard)) {
		return badRequest(codePublicIPSku, "sku.name", "Public IP address SKU '%s' is not supported: privlink serves Standard (Basic public IP addresses are retired in Azure).", *in.SKU.Name)
	}
	if t := in.SKU.Tier; t != nil && !strings.EqualFold(string(*t), string(armnetwork.PublicIPAddressSKUTierRegional)) {
		return errEnum("sku.tier", string(*t), []string{string(armnetwork.PublicIPAddressSKUTierRegional)})
	}
	if m := props.PublicIPAllocationMethod; m != nil && !strings.EqualFold(string(*m), string(armnetwork.IPAllocationMethodStatic)) {
		return badRequest(codeStandardNotDynamic, "properties.publicIPAllocationMethod", "Standard sku public IP addresses must have publicIPAllocationMethod set to Static, not '%s'.", *m)
	}
	if v := props.PublicIPAddressVersion; v != nil && !strings.EqualFold(string(*v), string(armnetwork.IPVersionIPv4)) {
		return errInvalid("properties.publicIPAddressVersion", "publicIPAddressVersion '%s' is not supported: the emulated internet is IPv4.", *v)
	}
	if t := props.IdleTimeoutInMinutes; t != nil && (*t < 4 || *t > 30) {
		return errInvalid("properties.idleTimeoutInMinutes", "idleTimeoutInMinutes must be between 4 and 30, not %d.", *t)
	}
	return nil
}

func (p *Provider) localGateways() tracked[armnetwork.LocalNetworkGateway] {
	return tracked[armnetwork.LocalNetworkGateway]{p: p,
		meta: func(v *armnetwork.LocalNetworkGateway) docMeta {
			return docMeta{id: &v.ID, name: &v.Name, etag: &v.Etag, location: &v.Location, tags: &v.Tags}
		},
		beforeDelete: func(tx store.Tx, _ *usage, id arm.ResourceID, _ *armnetwork.LocalNetworkGateway) error {
			return connectedInUse(tx, codeLocalGatewayInUse, "Local network gateway", id)
		}}
}

// putLocalGateway: the on-premises VPN device's public address (an IPv4
// address; an fqdn is not served) and the address prefixes behind it.
func (p *Provider) putLocalGateway(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	guid := func(a *armnetwork.LocalNetworkGateway) *string {
		if a.Properties == nil {
			return nil
		}
		return a.Properties.ResourceGUID
	}
	return p.localGateways().put(ctx, r, "local network gateway", guid,
		func(_ store.Tx, w putWrite[armnetwork.LocalNetworkGateway]) (*armnetwork.LocalNetworkGateway, error) {
			props := w.in.Properties
			if props == nil {
				return nil, errMissing("properties", "The local network gateway's properties")
			}
			gw, space, err := checkLocalGateway(props)
			if err != nil {
				return nil, err
			}
			return &armnetwork.LocalNetworkGateway{
				ID: ptr(w.id.String()), Name: ptr(w.name), Type: ptr(typeLocalGW), Location: ptr(w.loc), Tags: w.in.Tags, Etag: ptr(w.etag),
				Properties: &armnetwork.LocalNetworkGatewayPropertiesFormat{
					ProvisioningState:        ptr(w.state),
					ResourceGUID:             w.guid,
					GatewayIPAddress:         ptr(gw.String()),
					LocalNetworkAddressSpace: &armnetwork.AddressSpace{AddressPrefixes: space},
				},
			}, nil
		})
}

func checkLocalGateway(props *armnetwork.LocalNetworkGatewayPropertiesFormat) (netip.Addr, []*string, error) {
	if props.Fqdn != nil && *props.Fqdn != "" {
		return netip.Addr{}, nil, errInvalid("properties.fqdn", "A local network gateway by fqdn is not supported: set properties.gatewayIpAddress to the device's IPv4 address.")
	}
	if props.BgpSettings != nil {
		return netip.Addr{}, nil, errInvalid("properties.bgpSettings", "BGP is not supported: list the on-premises prefixes in properties.localNetworkAddressSpace.addressPrefixes.")
	}
	raw := str(props.GatewayIPAddress)
	if raw == "" {
		return netip.Addr{}, nil, errMissing("properties.gatewayIpAddress", "The on-premises VPN device's public IP address")
	}
	gw, err := netip.ParseAddr(strings.TrimSpace(raw))
	if err != nil || !gw.Is4() || gw.IsPrivate() || gw.IsLoopback() || gw.IsMulticast() || gw.IsLinkLocalUnicast() || gw.IsUnspecified() {
		return netip.Addr{}, nil, badRequest(codeInvalidGatewayIP, "properties.gatewayIpAddress", "gatewayIpAddress '%s' must be a public IPv4 address (in privlink, one of the emulated internet's %s).", raw, addrpool.Public.Range)
	}
	if props.LocalNetworkAddressSpace == nil || len(props.LocalNetworkAddressSpace.AddressPrefixes) == 0 {
		return netip.Addr{}, nil, errMissing("properties.localNetworkAddressSpace.addressPrefixes", "The on-premises address prefixes")
	}
	var out []*string
	var seen []netip.Prefix
	for i, s := range props.LocalNetworkAddressSpace.AddressPrefixes {
		target := "properties.localNetworkAddressSpace.addressPrefixes[" + strconv.Itoa(i) + "]"
		pr, err := parsePrefix(str(s), target, "local network gateway")
		if err != nil {
			return netip.Addr{}, nil, err
		}
		if !pr.Addr().Is4() {
			return netip.Addr{}, nil, errInvalid(target, "Address prefix %s is not IPv4: the emulated networks are IPv4.", pr)
		}
		if err := checkAddressSpace(pr, target); err != nil {
			return netip.Addr{}, nil, err
		}
		for _, o := range seen {
			if o.Overlaps(pr) {
				return netip.Addr{}, nil, badRequest(codeInvalidPrefix, target, "Address prefix %s overlaps %s in the same local network gateway.", pr, o)
			}
		}
		seen = append(seen, pr)
		out = append(out, ptr(pr.String()))
	}
	return gw, out, nil
}
