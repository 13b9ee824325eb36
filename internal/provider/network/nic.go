package network

import (
	"context"
	"net/netip"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Network interfaces. A NIC's ipConfigurations are part of its document
// (they are not separate child documents); each holds the private address
// allocated to it in its subnet, which is what makes the address taken
// (addr.go). NICs whose properties.privateEndpoint is set belong to a
// private endpoint and only it may change them.

// nicSpec is a NIC PUT body after the checks that need no stored state.
type nicSpec struct {
	in   armnetwork.Interface
	ipcs []ipcSpec
}

// ipcSpec is one validated ipConfiguration of a NIC PUT.
type ipcSpec struct {
	path    string
	name    string
	in      *armnetwork.InterfaceIPConfiguration
	static  bool
	addr    netip.Addr // the requested address, for Static
	primary bool
}

func decodeNIC(r *arm.Request) (*nicSpec, error) {
	s := &nicSpec{}
	if err := r.Decode(&s.in); err != nil {
		return nil, err
	}
	if err := validateEnvelope("network interface", r.ID, s.in.Location, s.in.Tags); err != nil {
		return nil, err
	}
	if s.in.ExtendedLocation != nil {
		return nil, errUnsupported("extendedLocation", "privlink has no edge zones; remove extendedLocation.")
	}
	props := s.in.Properties
	if props == nil || len(props.IPConfigurations) == 0 {
		return nil, errMissing("properties.ipConfigurations", "A network interface's ipConfigurations")
	}
	if props.DNSSettings != nil {
		for i, d := range props.DNSSettings.DNSServers {
			if _, err := netip.ParseAddr(strings.TrimSpace(str(d))); err != nil {
				return nil, errInvalid(arm.Field("properties.dnsSettings.dnsServers", i), "The DNS server '%s' is not an IP address.", str(d))
			}
		}
	}
	if _, err := enumValue("properties.nicType", (*string)(props.NicType), "", enumStrings(armnetwork.PossibleNetworkInterfaceNicTypeValues())); err != nil {
		return nil, err
	}
	if props.DscpConfiguration != nil {
		return nil, errUnsupported("properties.dscpConfiguration", "privlink has no DSCP configurations; remove dscpConfiguration.")
	}
	seen := map[string]bool{}
	primaries := 0
	for i, ic := range props.IPConfigurations {
		path := arm.Field("properties.ipConfigurations", i)
		if ic == nil || str(ic.Name) == "" {
			return nil, errMissing(path+".name", "An ipConfiguration's name")
		}
		if err := arm.ValidateNetworkName("ip configuration", *ic.Name); err != nil {
			ae, _ := arm.AsError(err)
			return nil, ae.WithTarget(path + ".name")
		}
		if seen[strings.ToLower(*ic.Name)] {
			return nil, errInvalid(path+".name", "The ipConfiguration name '%s' is used twice; give each its own name.", *ic.Name)
		}
		seen[strings.ToLower(*ic.Name)] = true
		spec, err := decodeIPConfig(path, ic)
		if err != nil {
			return nil, err
		}
		if spec.primary {
			primaries++
		}
		s.ipcs = append(s.ipcs, spec)
	}
	switch {
	case len(s.ipcs) == 1:
		s.ipcs[0].primary = true // a lone ipConfiguration is the primary one
	case primaries != 1:
		return nil, errInvalid("properties.ipConfigurations",
			"A network interface needs exactly one primary ipConfiguration; this one has %d. Set properties.primary to true on one of them.", primaries)
	}
	return s, nil
}

func decodeIPConfig(path string, ic *armnetwork.InterfaceIPConfiguration) (ipcSpec, error) {
	spec := ipcSpec{path: path, name: *ic.Name, in: ic}
	pp := path + ".properties."
	props := ic.Properties
	if props == nil || props.Subnet == nil {
		return spec, errMissing(pp+"subnet.id", "An ipConfiguration's subnet")
	}
	spec.primary = boolOr(props.Primary, false)
	static, addr, err := decodePrivateIP(pp, props.PrivateIPAllocationMethod, props.PrivateIPAddressVersion, props.PrivateIPAddress)
	if err != nil {
		return spec, err
	}
	spec.static, spec.addr = static, addr
	switch {
	case props.PublicIPAddress != nil:
		return spec, errUnsupported(pp+"publicIPAddress", "privlink has no public IP addresses on NICs; remove publicIPAddress.")
	case len(props.LoadBalancerInboundNatRules) > 0:
		return spec, errUnsupported(pp+"loadBalancerInboundNatRules", "privlink's load balancers have no inbound NAT rules; remove loadBalancerInboundNatRules.")
	case len(props.ApplicationGatewayBackendAddressPools) > 0:
		return spec, errUnsupported(pp+"applicationGatewayBackendAddressPools", "privlink has no application gateways; remove applicationGatewayBackendAddressPools.")
	case props.GatewayLoadBalancer != nil:
		return spec, errUnsupported(pp+"gatewayLoadBalancer", "privlink has no gateway load balancers; remove gatewayLoadBalancer.")
	case len(props.VirtualNetworkTaps) > 0:
		return spec, errUnsupported(pp+"virtualNetworkTaps", "privlink has no virtual network taps; remove virtualNetworkTaps.")
	}
	return spec, nil
}

// decodePrivateIP checks the private address properties an ipConfiguration
// (of a NIC, or a load balancer's frontend) carries, pp being their path
// prefix: the allocation method (Dynamic by default), the version (IPv4
// only) and, for Static, the address asked for.
func decodePrivateIP(pp string, method *armnetwork.IPAllocationMethod, version *armnetwork.IPVersion, addr *string) (bool, netip.Addr, error) {
	m, err := enumValue(pp+"privateIPAllocationMethod", (*string)(method),
		string(armnetwork.IPAllocationMethodDynamic), enumStrings(armnetwork.PossibleIPAllocationMethodValues()))
	if err != nil {
		return false, netip.Addr{}, err
	}
	v, err := enumValue(pp+"privateIPAddressVersion", (*string)(version),
		string(armnetwork.IPVersionIPv4), enumStrings(armnetwork.PossibleIPVersionValues()))
	if err != nil {
		return false, netip.Addr{}, err
	}
	if v != string(armnetwork.IPVersionIPv4) {
		return false, netip.Addr{}, errUnsupported(pp+"privateIPAddressVersion", "privlink allocates IPv4 private addresses only; use IPv4.")
	}
	if m != string(armnetwork.IPAllocationMethodStatic) {
		return false, netip.Addr{}, nil
	}
	raw := strings.TrimSpace(str(addr))
	if raw == "" {
		return true, netip.Addr{}, errMissing(pp+"privateIPAddress", "The privateIPAddress of an ipConfiguration with privateIPAllocationMethod Static")
	}
	a, ok := parseIPv4(raw)
	if !ok {
		return true, netip.Addr{}, errInvalid(pp+"privateIPAddress", "The privateIPAddress '%s' is not an IPv4 address.", raw)
	}
	return true, a, nil
}

func (p *Provider) putNIC(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	spec, err := decodeNIC(r)
	if err != nil {
		return nil, err
	}
	var (
		body    armnetwork.Interface
		op      *arm.Operation
		created bool
	)
	_, err = p.st.Txn(ctx, func(tx store.Tx) error {
		var cur armnetwork.Interface
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, str(cur.Etag)); err != nil {
			return err
		}
		created = !exists
		if err := checkUnmanaged(r.ID, &cur, "modified"); err != nil {
			return err
		}
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
		doc, err := buildNIC(tx, p.newUsage(tx, r.ID.Subscription), spec, id, name, &cur)
		if err != nil {
			return err
		}
		state, done := p.settle(r.ID, false)
		setNICState(doc, state)
		doc.Properties.ResourceGUID = guid
		if err := arm.Save(tx, r.ID, doc); err != nil {
			return err
		}
		body = *doc
		op, err = arm.StartOperation(tx, r.ID, str(doc.Location), done)
		return err
	})
	if err != nil {
		return nil, err
	}
	return accepted(created, body, op), nil
}

// buildNIC resolves a NIC's references and allocates its addresses, inside
// the transaction that stores it.
func buildNIC(tx store.Tx, u *usage, spec *nicSpec, id arm.ResourceID, name string, cur *armnetwork.Interface) (*armnetwork.Interface, error) {
	loc := normLocation(*spec.in.Location)
	props := spec.in.Properties
	etag := arm.NewETag()
	out := &armnetwork.InterfacePropertiesFormat{
		EnableIPForwarding:          ptr(boolOr(props.EnableIPForwarding, false)),
		EnableAcceleratedNetworking: ptr(boolOr(props.EnableAcceleratedNetworking, false)),
		DisableTCPStateTracking:     ptr(boolOr(props.DisableTCPStateTracking, false)),
		NicType:                     ptr(armnetwork.NetworkInterfaceNicType(mustEnum((*string)(props.NicType), string(armnetwork.NetworkInterfaceNicTypeStandard), enumStrings(armnetwork.PossibleNetworkInterfaceNicTypeValues())))),
		VnetEncryptionSupported:     ptr(false),
		HostedWorkloads:             []*string{},
		TapConfigurations:           []*armnetwork.InterfaceTapConfiguration{},
		DNSSettings:                 &armnetwork.InterfaceDNSSettings{DNSServers: []*string{}, AppliedDNSServers: []*string{}},
	}
	if d := props.DNSSettings; d != nil {
		if d.DNSServers != nil {
			out.DNSSettings.DNSServers = d.DNSServers
			out.DNSSettings.AppliedDNSServers = d.DNSServers
		}
		out.DNSSettings.InternalDNSNameLabel = d.InternalDNSNameLabel
	}
	if props.NetworkSecurityGroup != nil {
		ref, err := resolveSameRegion(tx, id, loc, "properties.networkSecurityGroup.id", props.NetworkSecurityGroup.ID, typeNSG)
		if err != nil {
			return nil, err
		}
		out.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: ptr(ref.String())}
	}
	ipcs, err := placeIPConfigs(tx, u, spec, id, loc, cur)
	if err != nil {
		return nil, err
	}
	if err := allocate(u, id, "ipConfigurations", ipcs); err != nil {
		return nil, err
	}
	for _, pl := range ipcs {
		method := armnetwork.IPAllocationMethodDynamic
		if pl.spec.static {
			method = armnetwork.IPAllocationMethodStatic
		}
		out.IPConfigurations = append(out.IPConfigurations, &armnetwork.InterfaceIPConfiguration{
			ID: ptr(id.String() + "/ipConfigurations/" + pl.name()), Name: ptr(pl.name()), Type: ptr(typeIPConfig), Etag: ptr(etag),
			Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
				PrivateIPAddress:                ptr(pl.addr.String()),
				PrivateIPAllocationMethod:       ptr(method),
				PrivateIPAddressVersion:         ptr(armnetwork.IPVersionIPv4),
				Subnet:                          &armnetwork.Subnet{ID: ptr(pl.subnet.String())},
				Primary:                         ptr(pl.spec.primary),
				ApplicationSecurityGroups:       pl.asgs,
				LoadBalancerBackendAddressPools: pl.pools,
			},
		})
	}
	mac, err := macFor(u, id, cur)
	if err != nil {
		return nil, err
	}
	out.MacAddress = ptr(mac)
	return &armnetwork.Interface{
		ID: ptr(id.String()), Name: ptr(name), Type: ptr(typeNIC), Location: ptr(loc), Tags: spec.in.Tags, Etag: ptr(etag),
		Properties: out,
	}, nil
}

// placeIPConfigs resolves each ipConfiguration's subnet and application
// security groups. All of a NIC's ipConfigurations are in one VNet.
func placeIPConfigs(tx store.Tx, u *usage, spec *nicSpec, nic arm.ResourceID, loc string, cur *armnetwork.Interface) ([]*placed, error) {
	curByName := map[string]*armnetwork.InterfaceIPConfiguration{}
	if cur != nil && cur.Properties != nil {
		for _, ic := range cur.Properties.IPConfigurations {
			if ic != nil {
				curByName[strings.ToLower(str(ic.Name))] = ic
			}
		}
	}
	var out []*placed
	var vnet arm.ResourceID
	for _, s := range spec.ipcs {
		pp := s.path + ".properties."
		ref, err := resolveSameRegion(tx, nic, loc, pp+"subnet.id", s.in.Properties.Subnet.ID, typeSubnet)
		if err != nil {
			return nil, err
		}
		if len(out) > 0 && !vnet.Equal(ref.ID.Parent()) {
			return nil, errInvalid(pp+"subnet.id",
				"All ipConfigurations of a network interface must be in one virtual network; %s is in %s, the first one in %s.",
				s.name, ref.ID.Parent(), vnet)
		}
		vnet = ref.ID.Parent()
		var subnet armnetwork.Subnet
		if _, err := arm.Load(tx, ref.ID, &subnet); err != nil {
			return nil, err
		}
		pl := &placed{spec: s, subnet: ref, prefixes: v4(subnetPrefixes(&subnet)), cur: curByName[strings.ToLower(s.name)]}
		if pl.asgs, err = joinASGs(tx, u, nic, loc, pp+"applicationSecurityGroups", s.in.Properties.ApplicationSecurityGroups, ref.ID); err != nil {
			return nil, err
		}
		if pl.pools, err = joinPools(tx, nic, loc, pp+"loadBalancerBackendAddressPools", s.in.Properties.LoadBalancerBackendAddressPools, ref.ID); err != nil {
			return nil, err
		}
		out = append(out, pl)
	}
	return out, nil
}

// setNICState records the provisioningState on a NIC and its ipConfigurations.
func setNICState(n *armnetwork.Interface, state armnetwork.ProvisioningState) {
	n.Properties.ProvisioningState = ptr(state)
	for _, ic := range n.Properties.IPConfigurations {
		ic.Properties.ProvisioningState = ptr(state)
	}
}

// managedBy returns the private endpoint that owns a NIC, "" for none.
// checkUnmanaged refuses to let a user change (verb) the NIC of a private
// endpoint or of a private link service: its owner manages it.
func checkUnmanaged(id arm.ResourceID, n *armnetwork.Interface, verb string) error {
	if pe := managedBy(n); pe != "" {
		return errManagedNIC(id, pe, verb)
	}
	if pls := serviceOf(n); pls != "" {
		return badRequest(codeManagedServiceNIC, "",
			"Network interface %s is attached to private link service %s and can not be %s by user. It is managed by the private link service: change or delete the private link service instead.",
			id, pls, verb)
	}
	return nil
}

func managedBy(n *armnetwork.Interface) string {
	if n == nil || n.Properties == nil || n.Properties.PrivateEndpoint == nil {
		return ""
	}
	return str(n.Properties.PrivateEndpoint.ID)
}

func (p *Provider) getIPConfig(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var n armnetwork.Interface
	if err := loadParent(arm.ReadOnly(ctx, p.st), r.ID.Parent(), &n); err != nil {
		return nil, err
	}
	if n.Properties != nil {
		for _, ic := range n.Properties.IPConfigurations {
			if ic != nil && strings.EqualFold(str(ic.Name), r.ID.Name()) {
				return arm.OK(ic), nil
			}
		}
	}
	return nil, errChildNotFound(r.ID)
}

func (p *Provider) listIPConfigs(ctx context.Context, r *arm.Request) ([]any, error) {
	var n armnetwork.Interface
	if err := loadParent(arm.ReadOnly(ctx, p.st), r.ID.Parent(), &n); err != nil {
		return nil, err
	}
	var out []any
	if n.Properties != nil {
		for _, ic := range n.Properties.IPConfigurations {
			if ic != nil {
				out = append(out, ic)
			}
		}
	}
	return out, nil
}
