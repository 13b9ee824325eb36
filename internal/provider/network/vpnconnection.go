package network

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/netip"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Connections (Microsoft.Network/connections) between a virtual network
// gateway (virtualNetworkGateway1) and the far side: another network's
// gateway (Vnet2Vnet, virtualNetworkGateway2; a pair of connections, one
// from each side, with one sharedKey) or an on-premises device (IPsec,
// localNetworkGateway2). Each is one IKEv2 tunnel with the pre-shared key
// sharedKey in gateway1's charon. connectionStatus and the byte counters
// are read live, at GET time, from what the controller reads from charon
// (WithVPNStatus). The sharedKey is not shown in a GET; it is read and
// changed through .../sharedkey (GET, PUT) and .../sharedkey/reset (POST),
// as in armnetwork's VirtualNetworkGatewayConnectionsClient.

const typeGatewayConnection = "Microsoft.Network/connections"

// Error codes of connections, by analogy with Azure's messages.
const (
	codeConnectionType  = "InvalidVirtualNetworkGatewayConnectionType"         // by analogy
	codeConnectionPeer  = "InvalidVirtualNetworkGatewayConnectionPeer"         // by analogy
	codeSharedKey       = "InvalidSharedKey"                                   // by analogy
	codeRemoteOverlap   = "ConnectionRemoteAddressSpaceOverlapsVirtualNetwork" // by analogy
	codeSharedKeyLength = "InvalidSharedKeyLength"                             // by analogy
)

var connectionLinks = []arm.Link{
	{Path: "properties.virtualNetworkGateway1.id", Type: typeVNetGateway, Action: joinGatewayAction},
	{Path: "properties.virtualNetworkGateway2.id", Type: typeVNetGateway, Action: joinGatewayAction},
	{Path: "properties.localNetworkGateway2.id", Type: typeLocalGW, Action: joinLocalGatewayAction},
}

// joinLocalGatewayAction: by analogy, as joinGatewayAction.
const joinLocalGatewayAction = "Microsoft.Network/localNetworkGateways/join/action"

// ConnectionState is a connection's live state as the VPN controller
// reads it from its gateway's charon.
type ConnectionState struct {
	// Status is Connected, Connecting or NotConnected.
	Status string
	// Ingress and Egress are the bytes the tunnel carried in and out.
	Ingress, Egress int64
}

// VPNStatus tells connections' live states; ok is false for a connection
// the controller has not seen (yet).
type VPNStatus interface {
	ConnectionState(id arm.ResourceID) (st ConnectionState, ok bool)
}

// WithVPNStatus says that a controller materializes gateways and
// connections (their writes answer Updating or Deleting until it has) and
// reports connections' states through s.
func WithVPNStatus(s VPNStatus) Option { return func(p *Provider) { p.vpnStatus = s } }

// IsVPNType reports whether id is a virtual network gateway or a
// connection: the types whose operations the VPN controller finishes.
func IsVPNType(id arm.ResourceID) bool {
	t := id.Type()
	return strings.EqualFold(t, typeVNetGateway) || strings.EqualFold(t, typeGatewayConnection)
}

func (p *Provider) connections() tracked[armnetwork.VirtualNetworkGatewayConnection] {
	return tracked[armnetwork.VirtualNetworkGatewayConnection]{p: p,
		meta: func(v *armnetwork.VirtualNetworkGatewayConnection) docMeta {
			return docMeta{id: &v.ID, name: &v.Name, etag: &v.Etag, location: &v.Location, tags: &v.Tags}
		},
		view: func(_ arm.Reader, v armnetwork.VirtualNetworkGatewayConnection, _ *usage) (armnetwork.VirtualNetworkGatewayConnection, error) {
			return p.connectionView(v), nil
		}}
}

// connectionView hides the shared key and fills in the live state.
func (p *Provider) connectionView(v armnetwork.VirtualNetworkGatewayConnection) armnetwork.VirtualNetworkGatewayConnection {
	if v.Properties == nil {
		return v
	}
	props := *v.Properties
	props.SharedKey = nil
	status, in, out := armnetwork.VirtualNetworkGatewayConnectionStatusUnknown, int64(0), int64(0)
	if p.vpnStatus != nil {
		if id, err := arm.ParseID(str(v.ID)); err == nil {
			if st, ok := p.vpnStatus.ConnectionState(id); ok {
				status, in, out = armnetwork.VirtualNetworkGatewayConnectionStatus(st.Status), st.Ingress, st.Egress
			}
		}
	}
	props.ConnectionStatus, props.IngressBytesTransferred, props.EgressBytesTransferred = &status, &in, &out
	v.Properties = &props
	return v
}

// connectionsUsing lists the connections (other than skip) that name the
// gateway or local network gateway id.
func connectionsUsing(r arm.Reader, id arm.ResourceID, skip string) ([]string, error) {
	conns, err := arm.LoadAll[armnetwork.VirtualNetworkGatewayConnection](r, subColl(id.Subscription, "connections"))
	if err != nil {
		return nil, err
	}
	want := lkey(id.String())
	var out []string
	for _, c := range conns {
		if c.Properties == nil || lkey(str(c.ID)) == lkey(skip) {
			continue
		}
		pr := c.Properties
		for _, ref := range []*string{gwRef(pr.VirtualNetworkGateway1), gwRef(pr.VirtualNetworkGateway2), lngRef(pr.LocalNetworkGateway2)} {
			if ref != nil && lkey(*ref) == want {
				out = append(out, str(c.ID))
				break
			}
		}
	}
	return out, nil
}

func gwRef(g *armnetwork.VirtualNetworkGateway) *string {
	if g == nil {
		return nil
	}
	return g.ID
}

func lngRef(g *armnetwork.LocalNetworkGateway) *string {
	if g == nil {
		return nil
	}
	return g.ID
}

func (p *Provider) putConnection(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	guid := func(v *armnetwork.VirtualNetworkGatewayConnection) *string {
		if v.Properties == nil {
			return nil
		}
		return v.Properties.ResourceGUID
	}
	return p.connections().put(ctx, r, "connection", guid, func(tx store.Tx, w putWrite[armnetwork.VirtualNetworkGatewayConnection]) (*armnetwork.VirtualNetworkGatewayConnection, error) {
		return buildConnection(tx, w)
	})
}

// checkConnectionProps refuses what privlink does not serve.
func checkConnectionProps(props *armnetwork.VirtualNetworkGatewayConnectionPropertiesFormat) (armnetwork.VirtualNetworkGatewayConnectionType, error) {
	const pp = "properties."
	switch {
	case props.ConnectionType == nil:
		return "", errMissing(pp+"connectionType", "The connection's type (Vnet2Vnet or IPsec)")
	case props.EnableBgp != nil && *props.EnableBgp:
		return "", errUnsupported(pp+"enableBgp", "BGP is not supported: set enableBgp to false.")
	case props.UsePolicyBasedTrafficSelectors != nil && *props.UsePolicyBasedTrafficSelectors:
		return "", errUnsupported(pp+"usePolicyBasedTrafficSelectors", "Policy-based traffic selectors are not supported: set usePolicyBasedTrafficSelectors to false.")
	case len(props.IPSecPolicies) > 0:
		return "", errUnsupported(pp+"ipsecPolicies", "Custom IPsec policies are not supported: remove ipsecPolicies (the tunnel uses IKEv2 AES256/SHA256/DH14 and ESP AES256-GCM).")
	case len(props.TrafficSelectorPolicies) > 0:
		return "", errUnsupported(pp+"trafficSelectorPolicies", "Traffic selector policies are not supported: remove trafficSelectorPolicies.")
	case len(props.IngressNatRules) > 0 || len(props.EgressNatRules) > 0:
		return "", errUnsupported(pp+"ingressNatRules", "NAT rules are not supported: remove ingressNatRules and egressNatRules.")
	case props.Peer != nil:
		return "", errUnsupported(pp+"peer", "ExpressRoute connections are not supported: remove peer.")
	case props.AuthorizationKey != nil && *props.AuthorizationKey != "":
		return "", errUnsupported(pp+"authorizationKey", "ExpressRoute authorization keys are not supported: remove authorizationKey.")
	case props.AuthenticationType != nil && !strings.EqualFold(string(*props.AuthenticationType), string(armnetwork.ConnectionAuthenticationTypePSK)):
		return "", errUnsupported(pp+"authenticationType", "Only pre-shared key authentication (PSK) is supported, not '%s'.", *props.AuthenticationType)
	case props.ConnectionProtocol != nil && !strings.EqualFold(string(*props.ConnectionProtocol), string(armnetwork.VirtualNetworkGatewayConnectionProtocolIKEv2)):
		return "", errUnsupported(pp+"connectionProtocol", "Only IKEv2 is supported, not '%s'.", *props.ConnectionProtocol)
	case props.ConnectionMode != nil && !strings.EqualFold(string(*props.ConnectionMode), string(armnetwork.VirtualNetworkGatewayConnectionModeDefault)):
		return "", errUnsupported(pp+"connectionMode", "Only connectionMode Default is supported, not '%s'.", *props.ConnectionMode)
	case props.UseLocalAzureIPAddress != nil && *props.UseLocalAzureIPAddress:
		return "", errUnsupported(pp+"useLocalAzureIpAddress", "Private IP connections are not supported: set useLocalAzureIpAddress to false.")
	}
	t := *props.ConnectionType
	switch {
	case strings.EqualFold(string(t), string(armnetwork.VirtualNetworkGatewayConnectionTypeVnet2Vnet)):
		return armnetwork.VirtualNetworkGatewayConnectionTypeVnet2Vnet, nil
	case strings.EqualFold(string(t), string(armnetwork.VirtualNetworkGatewayConnectionTypeIPsec)):
		return armnetwork.VirtualNetworkGatewayConnectionTypeIPsec, nil
	case slicesContainsFold(enumStrings(armnetwork.PossibleVirtualNetworkGatewayConnectionTypeValues()), string(t)):
		return "", badRequest(codeConnectionType, pp+"connectionType", "connectionType '%s' is not supported: use Vnet2Vnet or IPsec.", t)
	}
	return "", errEnum(pp+"connectionType", string(t), []string{"Vnet2Vnet", "IPsec"})
}

// checkSharedKey applies Azure's rule for pre-shared keys: 1 to 128
// printable ASCII characters.
func checkSharedKey(target, k string) error {
	if k == "" || len(k) > 128 {
		return badRequest(codeSharedKey, target, "The shared key must be 1 to 128 characters long, not %d.", len(k))
	}
	for _, c := range k {
		if c < 0x21 || c > 0x7e {
			return badRequest(codeSharedKey, target, "The shared key may hold only printable ASCII characters without spaces.")
		}
	}
	return nil
}

// newSharedKey returns a random key of n letters and digits.
func newSharedKey(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// buildConnection validates a connection PUT and builds its document.
func buildConnection(tx store.Tx, w putWrite[armnetwork.VirtualNetworkGatewayConnection]) (*armnetwork.VirtualNetworkGatewayConnection, error) {
	const pp = "properties."
	props := w.in.Properties
	if props == nil {
		return nil, errMissing("properties", "The connection's properties")
	}
	ctype, err := checkConnectionProps(props)
	if err != nil {
		return nil, err
	}
	if props.VirtualNetworkGateway1 == nil {
		return nil, errMissing(pp+"virtualNetworkGateway1.id", "The connection's virtual network gateway (virtualNetworkGateway1)")
	}
	gw1, err := resolveSameRegion(tx, w.id, w.loc, pp+"virtualNetworkGateway1.id", props.VirtualNetworkGateway1.ID, typeVNetGateway)
	if err != nil {
		return nil, err
	}
	out := &armnetwork.VirtualNetworkGatewayConnectionPropertiesFormat{
		ProvisioningState:              ptr(w.state),
		ResourceGUID:                   w.guid,
		ConnectionType:                 ptr(ctype),
		ConnectionProtocol:             ptr(armnetwork.VirtualNetworkGatewayConnectionProtocolIKEv2),
		ConnectionMode:                 ptr(armnetwork.VirtualNetworkGatewayConnectionModeDefault),
		AuthenticationType:             ptr(armnetwork.ConnectionAuthenticationTypePSK),
		VirtualNetworkGateway1:         &armnetwork.VirtualNetworkGateway{ID: ptr(gw1.String())},
		EnableBgp:                      ptr(false),
		RoutingWeight:                  props.RoutingWeight,
		DpdTimeoutSeconds:              props.DpdTimeoutSeconds,
		UsePolicyBasedTrafficSelectors: ptr(false),
	}
	if out.RoutingWeight == nil {
		out.RoutingWeight = ptr[int32](0)
	}
	if t := props.DpdTimeoutSeconds; t != nil && (*t < 9 || *t > 3600) {
		return nil, errInvalid(pp+"dpdTimeoutSeconds", "dpdTimeoutSeconds must be between 9 and 3600, not %d.", *t)
	}
	var remoteSpace []netip.Prefix
	switch ctype {
	case armnetwork.VirtualNetworkGatewayConnectionTypeVnet2Vnet:
		if props.LocalNetworkGateway2 != nil {
			return nil, badRequest(codeConnectionPeer, pp+"localNetworkGateway2", "A Vnet2Vnet connection names virtualNetworkGateway2, not localNetworkGateway2 (that is an IPsec connection's).")
		}
		if props.VirtualNetworkGateway2 == nil {
			return nil, errMissing(pp+"virtualNetworkGateway2.id", "A Vnet2Vnet connection's far gateway (virtualNetworkGateway2)")
		}
		gw2, err := resolve(tx, w.id, pp+"virtualNetworkGateway2.id", props.VirtualNetworkGateway2.ID, typeVNetGateway)
		if err != nil {
			return nil, err
		}
		if gw2.ID.Equal(gw1.ID) {
			return nil, badRequest(codeConnectionPeer, pp+"virtualNetworkGateway2.id", "virtualNetworkGateway2 must be another gateway than virtualNetworkGateway1.")
		}
		out.VirtualNetworkGateway2 = &armnetwork.VirtualNetworkGateway{ID: ptr(gw2.String())}
		f, err := gatewayEnds(tx, gw2.ID)
		if err != nil {
			return nil, err
		}
		remoteSpace = f.Space
	case armnetwork.VirtualNetworkGatewayConnectionTypeIPsec:
		if props.VirtualNetworkGateway2 != nil {
			return nil, badRequest(codeConnectionPeer, pp+"virtualNetworkGateway2", "An IPsec connection names localNetworkGateway2, not virtualNetworkGateway2 (that is a Vnet2Vnet connection's).")
		}
		if props.LocalNetworkGateway2 == nil {
			return nil, errMissing(pp+"localNetworkGateway2.id", "An IPsec connection's on-premises side (localNetworkGateway2)")
		}
		lng, err := resolveSameRegion(tx, w.id, w.loc, pp+"localNetworkGateway2.id", props.LocalNetworkGateway2.ID, typeLocalGW)
		if err != nil {
			return nil, err
		}
		out.LocalNetworkGateway2 = &armnetwork.LocalNetworkGateway{ID: ptr(lng.String())}
		_, remoteSpace, err = localGatewayEnds(tx, lng.ID)
		if err != nil {
			return nil, err
		}
	}
	local, err := gatewayEnds(tx, gw1.ID)
	if err != nil {
		return nil, err
	}
	for _, r := range remoteSpace {
		for _, l := range local.Space {
			if r.Overlaps(l) {
				return nil, badRequest(codeRemoteOverlap, pp+"connectionType", "The far side's address prefix %s overlaps %s of the gateway's virtual network %s; the two sides of a connection need address spaces apart.", r, l, local.VNet)
			}
		}
	}
	switch {
	case props.SharedKey != nil:
		if err := checkSharedKey(pp+"sharedKey", *props.SharedKey); err != nil {
			return nil, err
		}
		out.SharedKey = props.SharedKey
	case w.cur != nil && w.cur.Properties != nil && w.cur.Properties.SharedKey != nil:
		out.SharedKey = w.cur.Properties.SharedKey
	default:
		out.SharedKey = ptr(newSharedKey(32))
	}
	return &armnetwork.VirtualNetworkGatewayConnection{
		ID: ptr(w.id.String()), Name: ptr(w.name), Type: ptr(typeGatewayConnection), Location: ptr(w.loc), Tags: w.in.Tags, Etag: ptr(w.etag),
		Properties: out,
	}, nil
}

// The sharedkey operations.

func (p *Provider) loadConnection(r arm.Reader, id arm.ResourceID) (armnetwork.VirtualNetworkGatewayConnection, error) {
	var c armnetwork.VirtualNetworkGatewayConnection
	ok, err := arm.Load(r, id, &c)
	if err != nil {
		return c, err
	}
	if !ok || c.Properties == nil {
		return c, arm.NotFound(id)
	}
	return c, nil
}

func (p *Provider) getSharedKey(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	c, err := p.loadConnection(arm.ReadOnly(ctx, p.st), r.ID)
	if err != nil {
		return nil, err
	}
	return arm.OK(armnetwork.ConnectionSharedKey{ID: ptr(str(c.ID) + "/sharedkey"), Value: c.Properties.SharedKey}), nil
}

// setKey stores key as the connection's sharedKey (a new ETag: the
// controller reloads the tunnel).
func (p *Provider) setKey(ctx context.Context, id arm.ResourceID, key string) (armnetwork.VirtualNetworkGatewayConnection, error) {
	var c armnetwork.VirtualNetworkGatewayConnection
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		var err error
		if c, err = p.loadConnection(tx, id); err != nil {
			return err
		}
		c.Properties.SharedKey = ptr(key)
		c.Etag = ptr(arm.NewETag())
		return arm.Save(tx, id, &c)
	})
	return c, err
}

func (p *Provider) setSharedKey(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in armnetwork.ConnectionSharedKey
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.Value == nil {
		return nil, errMissing("value", "The shared key")
	}
	if err := checkSharedKey("value", *in.Value); err != nil {
		return nil, err
	}
	c, err := p.setKey(ctx, r.ID, *in.Value)
	if err != nil {
		return nil, err
	}
	return arm.OK(armnetwork.ConnectionSharedKey{ID: ptr(str(c.ID) + "/sharedkey"), Value: in.Value}), nil
}

func (p *Provider) resetSharedKey(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in armnetwork.ConnectionResetSharedKey
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.KeyLength == nil {
		return nil, errMissing("keyLength", "The new key's length")
	}
	if n := *in.KeyLength; n < 1 || n > 128 {
		return nil, badRequest(codeSharedKeyLength, "keyLength", "keyLength must be between 1 and 128, not %d.", n)
	}
	if _, err := p.setKey(ctx, r.ID, newSharedKey(int(*in.KeyLength))); err != nil {
		return nil, err
	}
	return &arm.Response{Status: http.StatusOK, Body: armnetwork.ConnectionResetSharedKey{KeyLength: in.KeyLength}}, nil
}
