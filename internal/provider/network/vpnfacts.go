package network

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// What the VPN controller reads from the store: each gateway's ends (its
// network, its address in GatewaySubnet, its public address) and its
// connections with the far side's public address, address space and key.

// GatewayFacts is a virtual network gateway as the fabric needs it.
type GatewayFacts struct {
	ID   arm.ResourceID
	VNet arm.ResourceID
	// Space is the network's address space: the tunnels' local side.
	Space []netip.Prefix
	// Subnet is GatewaySubnet's prefix, Address the gateway's address in it.
	Subnet  netip.Prefix
	Address netip.Addr
	// Public is the address of the gateway's public IP address.
	Public netip.Addr
	// Connections are the connections whose virtualNetworkGateway1 is this
	// gateway and whose far side exists.
	Connections []ConnectionFacts
}

// ConnectionFacts is one tunnel of a gateway.
type ConnectionFacts struct {
	ID arm.ResourceID
	// Remote is the far gateway's public address; RemoteSpace the address
	// space behind it.
	Remote      netip.Addr
	RemoteSpace []netip.Prefix
	SharedKey   string
}

// IsVNetGateway reports whether id is a virtual network gateway.
func IsVNetGateway(id arm.ResourceID) bool { return strings.EqualFold(id.Type(), typeVNetGateway) }

// IsConnection reports whether id is a connection.
func IsConnection(id arm.ResourceID) bool { return strings.EqualFold(id.Type(), typeGatewayConnection) }

// ConnectionGateway returns the virtualNetworkGateway1 of the connection
// document kv, for a controller that maps a changed connection to its
// gateway.
func ConnectionGateway(kv store.KV) (arm.ResourceID, bool) {
	var c armnetwork.VirtualNetworkGatewayConnection
	if err := json.Unmarshal(kv.Value, &c); err != nil || c.Properties == nil || c.Properties.VirtualNetworkGateway1 == nil {
		return arm.ResourceID{}, false
	}
	id, err := arm.ParseID(str(c.Properties.VirtualNetworkGateway1.ID))
	return id, err == nil
}

// gatewayEnds reads gateway id's network, addresses and public address
// (without its connections).
func gatewayEnds(r arm.Reader, id arm.ResourceID) (*GatewayFacts, error) {
	var gw armnetwork.VirtualNetworkGateway
	ok, err := arm.Load(r, id, &gw)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("gateway %s: %w", id, arm.NotFound(id))
	}
	ics := gatewayIPConfigs(&gw)
	if len(ics) == 0 || ics[0].Properties.Subnet == nil || ics[0].Properties.PublicIPAddress == nil {
		return nil, fmt.Errorf("gateway %s has no ipConfiguration", id)
	}
	ic := ics[0].Properties
	subnetID, err := arm.ParseID(str(ic.Subnet.ID))
	if err != nil {
		return nil, fmt.Errorf("gateway %s: subnet: %w", id, err)
	}
	f := &GatewayFacts{ID: id, VNet: subnetID.Parent()}
	f.Address, _ = netip.ParseAddr(str(ic.PrivateIPAddress))
	if ps, ok, err := SubnetPrefixes(r, subnetID); err != nil {
		return nil, err
	} else if ok && len(ps) > 0 {
		f.Subnet = ps[0]
	}
	var vnet armnetwork.VirtualNetwork
	if _, err := arm.Load(r, f.VNet, &vnet); err != nil {
		return nil, err
	}
	if vnet.Properties != nil && vnet.Properties.AddressSpace != nil {
		for _, s := range vnet.Properties.AddressSpace.AddressPrefixes {
			if p, err := netip.ParsePrefix(str(s)); err == nil && p.Addr().Is4() {
				f.Space = append(f.Space, p.Masked())
			}
		}
	}
	pipID, err := arm.ParseID(str(ic.PublicIPAddress.ID))
	if err != nil {
		return nil, fmt.Errorf("gateway %s: public IP: %w", id, err)
	}
	var pip armnetwork.PublicIPAddress
	if _, err := arm.Load(r, pipID, &pip); err != nil {
		return nil, err
	}
	if pip.Properties != nil {
		f.Public, _ = netip.ParseAddr(str(pip.Properties.IPAddress))
	}
	return f, nil
}

// localGatewayEnds reads a local network gateway's address and prefixes.
func localGatewayEnds(r arm.Reader, id arm.ResourceID) (netip.Addr, []netip.Prefix, error) {
	var lng armnetwork.LocalNetworkGateway
	ok, err := arm.Load(r, id, &lng)
	if err != nil {
		return netip.Addr{}, nil, err
	}
	if !ok || lng.Properties == nil {
		return netip.Addr{}, nil, fmt.Errorf("local network gateway %s: %w", id, arm.NotFound(id))
	}
	addr, _ := netip.ParseAddr(str(lng.Properties.GatewayIPAddress))
	var space []netip.Prefix
	if lng.Properties.LocalNetworkAddressSpace != nil {
		for _, s := range lng.Properties.LocalNetworkAddressSpace.AddressPrefixes {
			if p, err := netip.ParsePrefix(str(s)); err == nil {
				space = append(space, p.Masked())
			}
		}
	}
	return addr, space, nil
}

// VNetGatewayFacts reads gateway id and its connections; nil when the
// gateway does not exist.
func VNetGatewayFacts(r arm.Reader, id arm.ResourceID) (*GatewayFacts, error) {
	ok, err := arm.Exists(r, id)
	if err != nil || !ok {
		return nil, err
	}
	f, err := gatewayEnds(r, id)
	if err != nil {
		return nil, err
	}
	conns, err := arm.LoadAll[armnetwork.VirtualNetworkGatewayConnection](r, subColl(id.Subscription, "connections"))
	if err != nil {
		return nil, err
	}
	for _, c := range conns {
		pr := c.Properties
		if pr == nil || pr.VirtualNetworkGateway1 == nil || lkey(str(pr.VirtualNetworkGateway1.ID)) != lkey(id.String()) {
			continue
		}
		cid, err := arm.ParseID(str(c.ID))
		if err != nil {
			continue
		}
		cf := ConnectionFacts{ID: cid, SharedKey: str(pr.SharedKey)}
		switch {
		case pr.VirtualNetworkGateway2 != nil:
			gid, err := arm.ParseID(str(pr.VirtualNetworkGateway2.ID))
			if err != nil {
				continue
			}
			far, err := gatewayEnds(r, gid)
			if err != nil {
				continue // the far gateway is gone or half made: no tunnel
			}
			cf.Remote, cf.RemoteSpace = far.Public, far.Space
		case pr.LocalNetworkGateway2 != nil:
			lid, err := arm.ParseID(str(pr.LocalNetworkGateway2.ID))
			if err != nil {
				continue
			}
			if cf.Remote, cf.RemoteSpace, err = localGatewayEnds(r, lid); err != nil {
				continue
			}
		}
		if !cf.Remote.IsValid() || len(cf.RemoteSpace) == 0 || cf.SharedKey == "" {
			continue
		}
		f.Connections = append(f.Connections, cf)
	}
	slices.SortFunc(f.Connections, func(a, b ConnectionFacts) int { return strings.Compare(lkey(a.ID.String()), lkey(b.ID.String())) })
	return f, nil
}

// SettleVPN records, in tx, that the gateway or connection id is in place
// (or gone): its provisioningState becomes Succeeded (Failed when failure
// is not nil) and the operations waiting on it finish.
func SettleVPN(tx store.Tx, id arm.ResourceID, failure error) error {
	state := armnetwork.ProvisioningStateSucceeded
	if failure != nil {
		state = armnetwork.ProvisioningStateFailed
	}
	switch {
	case IsVNetGateway(id):
		var gw armnetwork.VirtualNetworkGateway
		ok, err := arm.Load(tx, id, &gw)
		if err != nil {
			return err
		}
		if ok && gw.Properties != nil && (gw.Properties.ProvisioningState == nil || *gw.Properties.ProvisioningState != state) {
			gw.Properties.ProvisioningState = &state
			for _, ic := range gatewayIPConfigs(&gw) {
				ic.Properties.ProvisioningState = &state
			}
			if err := arm.Save(tx, id, &gw); err != nil {
				return err
			}
		}
	case IsConnection(id):
		var c armnetwork.VirtualNetworkGatewayConnection
		ok, err := arm.Load(tx, id, &c)
		if err != nil {
			return err
		}
		if ok && c.Properties != nil && (c.Properties.ProvisioningState == nil || *c.Properties.ProvisioningState != state) {
			c.Properties.ProvisioningState = &state
			if err := arm.Save(tx, id, &c); err != nil {
				return err
			}
		}
	}
	return arm.FinishOperations(tx, id, failure)
}

// gatewaySpaces returns the remote address spaces of the connections of
// vnet's gateway (none without one): the routes with next hop
// VirtualNetworkGateway.
func gatewaySpaces(r arm.Reader, vnet arm.ResourceID) ([]netip.Prefix, error) {
	gw, err := gatewayOfVNet(r, vnet, arm.ResourceID{})
	if err != nil || gw == "" {
		return nil, err
	}
	id, err := arm.ParseID(gw)
	if err != nil {
		return nil, err
	}
	f, err := VNetGatewayFacts(r, id)
	if err != nil || f == nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, c := range f.Connections {
		for _, p := range c.RemoteSpace {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out, nil
}
