package network

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Load balancers: Standard internal load balancers (issue 12 item 1). A
// load balancer is one document with its frontendIPConfigurations,
// backendAddressPools, loadBalancingRules and probes inline, as Azure
// treats them (one entity, one etag); the child types are read-only views
// of it. A frontend's private address comes from its subnet through the
// one allocator NICs use (addr.go: usage counts frontends as holders). A
// pool's members are NIC ipConfigurations whose
// loadBalancerBackendAddressPools name it: the reference is stored on the
// NIC only, and the pool's backendIPConfigurations are derived from the
// NIC documents when read, so they cannot go stale.

// The load balancer types, in ARM's casing.
const (
	typeLB         = "Microsoft.Network/loadBalancers"
	typeLBFrontend = typeLB + "/frontendIPConfigurations"
	typeLBPool     = typeLB + "/backendAddressPools"
	typeLBRule     = typeLB + "/loadBalancingRules"
	typeLBProbe    = typeLB + "/probes"
)

// The load balancer's error codes.
const (
	// "Load balancing rules A and B with floating IP disabled use the
	// same protocol Tcp and backend port 80, and must not be used with the
	// same backend address pool P" (Azure/azure-quickstart-templates
	// #2014, MicrosoftDocs/azure-docs #94673).
	codeRulesSameBackend = "RulesUseSameBackendPortProtocolAndPool"
	// Two rules on one frontend, protocol and port; by analogy.
	codeRulesSameFrontend = "RulesUseSameFrontendIPProtocolAndPort"
	// A probe's requestPath with the wrong protocol; by analogy.
	codeProbeRequestPath = "InvalidProbeRequestPath"
	// Frontends, or frontends and members, in two networks; by analogy.
	codeLBNetworks = "LoadBalancerFrontendAndBackendInDifferentVirtualNetworks"
	// A pool NICs still join cannot go; by analogy with the InUse codes.
	codePoolInUse = "InUseBackendAddressPoolCannotBeDeleted"
)

// A load balancer's frontends hold their private addresses the way other
// providers' resources do (holders.go): no NIC takes them, and their
// subnets cannot be deleted under them.
func init() { RegisterAddressHolders(lbFrontendAddresses) }

// lbFrontendAddresses lists the frontendIPConfigurations of every load
// balancer of the subscription with the addresses they hold.
func lbFrontendAddresses(r arm.Reader, sub string) ([]HeldAddress, error) {
	lbs, err := arm.LoadAll[armnetwork.LoadBalancer](r, subColl(sub, "loadBalancers"))
	if err != nil {
		return nil, err
	}
	var out []HeldAddress
	for _, lb := range lbs {
		if lb.Properties == nil {
			continue
		}
		for _, fe := range lb.Properties.FrontendIPConfigurations {
			if fe == nil || fe.Properties == nil || fe.Properties.Subnet == nil {
				continue
			}
			a, _ := netip.ParseAddr(str(fe.Properties.PrivateIPAddress)) // none yet: the zero Addr
			out = append(out, HeldAddress{ID: str(fe.ID), Holder: str(lb.ID), Subnet: str(fe.Properties.Subnet.ID), Address: a})
		}
	}
	return out, nil
}

// lbTypes are the resource types of load balancers and their children.
func (p *Provider) lbTypes() []*arm.ResourceType {
	v := Versions.All()
	fe := lbChildren(func(lp *armnetwork.LoadBalancerPropertiesFormat) []*armnetwork.FrontendIPConfiguration {
		return lp.FrontendIPConfigurations
	}, func(c *armnetwork.FrontendIPConfiguration) *string { return c.Name })
	pools := lbChildren(func(lp *armnetwork.LoadBalancerPropertiesFormat) []*armnetwork.BackendAddressPool {
		return lp.BackendAddressPools
	}, func(c *armnetwork.BackendAddressPool) *string { return c.Name })
	rules := lbChildren(func(lp *armnetwork.LoadBalancerPropertiesFormat) []*armnetwork.LoadBalancingRule {
		return lp.LoadBalancingRules
	}, func(c *armnetwork.LoadBalancingRule) *string { return c.Name })
	probes := lbChildren(func(lp *armnetwork.LoadBalancerPropertiesFormat) []*armnetwork.Probe {
		return lp.Probes
	}, func(c *armnetwork.Probe) *string { return c.Name })
	return []*arm.ResourceType{
		p.lbs().register(&arm.ResourceType{Type: typeLB, APIVersions: v, Put: p.putLB, Links: lbLinks, BeforeGroupDelete: p.lbGroupDelete}),
		{Type: typeLBFrontend, APIVersions: v, Get: fe.get(p), List: fe.list(p)},
		{Type: typeLBPool, APIVersions: v, Get: pools.get(p), List: pools.list(p)},
		{Type: typeLBRule, APIVersions: v, Get: rules.get(p), List: rules.list(p)},
		{Type: typeLBProbe, APIVersions: v, Get: probes.get(p), List: probes.list(p)},
	}
}

// lbs is the strategy of load balancers: a pool's members are shown from
// the NICs; a load balancer whose pools NICs join cannot be deleted.
func (p *Provider) lbs() tracked[armnetwork.LoadBalancer] {
	return tracked[armnetwork.LoadBalancer]{p: p,
		meta: func(v *armnetwork.LoadBalancer) docMeta {
			return docMeta{id: &v.ID, name: &v.Name, etag: &v.Etag, location: &v.Location, tags: &v.Tags}
		},
		view: lbView,
		beforeDelete: func(tx store.Tx, u *usage, id arm.ResourceID, v *armnetwork.LoadBalancer) error {
			if err := checkFrontendsUnused(tx, id, nil, ""); err != nil {
				return err
			}
			members, err := lbMembers(u, str(v.ID))
			if err != nil {
				return err
			}
			for pool, ipcs := range members {
				return errPoolInUse(pool, ipcs)
			}
			return nil
		}}
}

func errPoolInUse(pool string, ipcs []string) error {
	return badRequest(codePoolInUse, "",
		"Backend address pool %s cannot be deleted because it is in use by the following ipConfigurations: %s. Remove the pool from their loadBalancerBackendAddressPools first.",
		pool, strings.Join(ipcs, ", "))
}

// lbGroupDelete refuses to delete a load balancer with its resource group
// while a NIC of another group joins one of its pools.
func (p *Provider) lbGroupDelete(tx store.Tx, id arm.ResourceID) error {
	if err := checkFrontendsUnused(tx, id, nil, id.ResourceGroup); err != nil {
		return err
	}
	members, err := lbMembers(p.newUsage(tx, id.Subscription), id.String())
	if err != nil {
		return err
	}
	for pool, ipcs := range members {
		if foreign := outside(ipcs, id.ResourceGroup); len(foreign) > 0 {
			return errPoolInUse(pool, foreign)
		}
	}
	return nil
}

// lbMembers returns the ipConfigurations that join each pool of the load
// balancer lb, by the pool's lower-cased ID.
func lbMembers(u *usage, lb string) (map[string][]string, error) {
	nics, err := u.NICs()
	if err != nil {
		return nil, err
	}
	prefix := lkey(lb) + "/backendaddresspools/"
	out := map[string][]string{}
	for _, n := range nics {
		if n.Properties == nil {
			continue
		}
		for _, ic := range n.Properties.IPConfigurations {
			if ic == nil || ic.Properties == nil {
				continue
			}
			for _, pool := range ic.Properties.LoadBalancerBackendAddressPools {
				if pool != nil && strings.HasPrefix(lkey(str(pool.ID)), prefix) {
					out[lkey(str(pool.ID))] = append(out[lkey(str(pool.ID))], str(ic.ID))
				}
			}
		}
	}
	return out, nil
}

// lbView fills each pool's backendIPConfigurations from the NICs.
func lbView(_ arm.Reader, v armnetwork.LoadBalancer, u *usage) (armnetwork.LoadBalancer, error) {
	if v.Properties == nil {
		return v, nil
	}
	members, err := lbMembers(u, str(v.ID))
	if err != nil {
		return v, err
	}
	props := *v.Properties
	v.Properties = &props
	pools := make([]*armnetwork.BackendAddressPool, len(props.BackendAddressPools))
	for i, pool := range props.BackendAddressPools {
		cp := *pool
		pp := *pool.Properties
		cp.Properties = &pp
		pp.BackendIPConfigurations = nil
		for _, ipc := range members[lkey(str(pool.ID))] {
			pp.BackendIPConfigurations = append(pp.BackendIPConfigurations, &armnetwork.InterfaceIPConfiguration{ID: ptr(ipc)})
		}
		pools[i] = &cp
	}
	props.BackendAddressPools = pools
	return v, nil
}

// lbChild serves one child type of a load balancer from its document.
type lbChild[T any] struct {
	items func(*armnetwork.LoadBalancerPropertiesFormat) []*T
	name  func(*T) *string
}

func lbChildren[T any](items func(*armnetwork.LoadBalancerPropertiesFormat) []*T, name func(*T) *string) lbChild[T] {
	return lbChild[T]{items: items, name: name}
}

// load returns the children of the load balancer parent, as its GET
// shows them.
func (c lbChild[T]) load(ctx context.Context, p *Provider, parent arm.ResourceID) ([]*T, error) {
	rd := arm.ReadOnly(ctx, p.st)
	var lb armnetwork.LoadBalancer
	if err := loadParent(rd, parent, &lb); err != nil {
		return nil, err
	}
	lb, err := lbView(rd, lb, p.newUsage(rd, parent.Subscription))
	if err != nil || lb.Properties == nil {
		return nil, err
	}
	return c.items(lb.Properties), nil
}

func (c lbChild[T]) get(p *Provider) arm.Handler {
	return func(ctx context.Context, r *arm.Request) (*arm.Response, error) {
		items, err := c.load(ctx, p, r.ID.Parent())
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			if it != nil && strings.EqualFold(str(c.name(it)), r.ID.Name()) {
				return arm.OK(it), nil
			}
		}
		return nil, errChildNotFound(r.ID)
	}
}

func (c lbChild[T]) list(p *Provider) func(context.Context, *arm.Request) ([]any, error) {
	return func(ctx context.Context, r *arm.Request) ([]any, error) {
		items, err := c.load(ctx, p, r.ID.Parent())
		if err != nil {
			return nil, err
		}
		out := make([]any, 0, len(items))
		for _, it := range items {
			if it != nil {
				out = append(out, it)
			}
		}
		return out, nil
	}
}

func (p *Provider) putLB(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	guidOf := func(v *armnetwork.LoadBalancer) *string {
		if v.Properties == nil {
			return nil
		}
		return v.Properties.ResourceGUID
	}
	return p.lbs().put(ctx, r, "load balancer", guidOf, func(tx store.Tx, w putWrite[armnetwork.LoadBalancer]) (*armnetwork.LoadBalancer, error) {
		if w.cur != nil {
			keep := []*armnetwork.FrontendIPConfiguration{} // not nil: a PUT
			if w.in.Properties != nil {
				keep = append(keep, w.in.Properties.FrontendIPConfigurations...)
			}
			if err := checkFrontendsUnused(tx, w.id, keep, ""); err != nil {
				return nil, err
			}
		}
		return buildLB(tx, p.newUsage(tx, w.id.Subscription), w)
	})
}

// lbBuild is a load balancer being built: its ID and the names of its
// children, for the references between them.
type lbBuild struct {
	id       arm.ResourceID
	etag     string
	state    armnetwork.ProvisioningState
	children map[string]map[string]string // child type segment → lower-cased name → canonical ID
}

// childID returns the ID of a child of the load balancer.
func (b *lbBuild) childID(seg, name string) string { return b.id.String() + "/" + seg + "/" + name }

// ref resolves a reference, at target, to a child of kind seg of the load
// balancer being built.
func (b *lbBuild) ref(target, seg string, ref *armnetwork.SubResource) (string, error) {
	raw := strings.TrimSpace(str(ref.ID))
	prefix := lkey(b.id.String()) + "/" + strings.ToLower(seg) + "/"
	name, ok := strings.CutPrefix(lkey(raw), prefix)
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", badRequest(codeInvalidReference, target,
			"Reference %s at %s is not one of this load balancer's %s: expect %s.", raw, target, seg, b.childID(seg, "{name}"))
	}
	id, found := b.children[seg][name]
	if !found {
		return "", errRefNotFound(target, raw, b.id)
	}
	return id, nil
}

// buildLB validates a load balancer PUT and builds its document: the
// frontends' addresses allocated, the references between children
// resolved, the back-references among them filled in.
func buildLB(tx store.Tx, u *usage, w putWrite[armnetwork.LoadBalancer]) (*armnetwork.LoadBalancer, error) {
	in := w.in
	if in.ExtendedLocation != nil {
		return nil, errUnsupported("extendedLocation", "privlink has no edge zones; remove extendedLocation.")
	}
	sku, err := lbSKU(in.SKU)
	if err != nil {
		return nil, err
	}
	props := in.Properties
	if props == nil {
		props = &armnetwork.LoadBalancerPropertiesFormat{}
	}
	switch {
	case len(props.InboundNatRules) > 0:
		return nil, errUnsupported("properties.inboundNatRules", "privlink's load balancers have load balancing rules only; remove inboundNatRules.")
	case len(props.InboundNatPools) > 0:
		return nil, errUnsupported("properties.inboundNatPools", "privlink's load balancers have load balancing rules only; remove inboundNatPools.")
	case len(props.OutboundRules) > 0:
		return nil, errUnsupported("properties.outboundRules", "privlink's load balancers are internal and have no outbound rules; remove outboundRules.")
	}
	b := &lbBuild{id: w.id, etag: w.etag, state: w.state, children: map[string]map[string]string{}}
	var cur *armnetwork.LoadBalancerPropertiesFormat
	if w.cur != nil {
		cur = w.cur.Properties
	}
	out := &armnetwork.LoadBalancerPropertiesFormat{ProvisioningState: ptr(w.state), ResourceGUID: w.guid}
	var vnet arm.ResourceID
	if out.FrontendIPConfigurations, vnet, err = buildFrontends(tx, u, b, w.loc, props.FrontendIPConfigurations, cur); err != nil {
		return nil, err
	}
	if out.BackendAddressPools, err = buildPools(b, props.BackendAddressPools); err != nil {
		return nil, err
	}
	if out.Probes, err = buildProbes(b, props.Probes); err != nil {
		return nil, err
	}
	if out.LoadBalancingRules, err = buildRules(b, props.LoadBalancingRules); err != nil {
		return nil, err
	}
	if err := checkMembers(u, b, vnet); err != nil {
		return nil, err
	}
	lbBackRefs(out)
	return &armnetwork.LoadBalancer{
		ID: ptr(w.id.String()), Name: ptr(w.name), Type: ptr(typeLB), Location: ptr(w.loc), Tags: in.Tags, Etag: ptr(w.etag),
		SKU: sku, Properties: out,
	}, nil
}

// lbSKU answers the sku: Standard (the default: Azure retired Basic load
// balancers on 30 September 2025), Regional.
func lbSKU(in *armnetwork.LoadBalancerSKU) (*armnetwork.LoadBalancerSKU, error) {
	var name, tier *string
	if in != nil {
		name, tier = (*string)(in.Name), (*string)(in.Tier)
	}
	n, err := enumValue("sku.name", name, string(armnetwork.LoadBalancerSKUNameStandard), enumStrings(armnetwork.PossibleLoadBalancerSKUNameValues()))
	if err != nil {
		return nil, err
	}
	if n != string(armnetwork.LoadBalancerSKUNameStandard) {
		return nil, errUnsupported("sku.name",
			"privlink serves Standard load balancers only (Basic was retired by Azure on 30 September 2025; Gateway load balancers are not served); set sku.name to Standard.")
	}
	t, err := enumValue("sku.tier", tier, string(armnetwork.LoadBalancerSKUTierRegional), enumStrings(armnetwork.PossibleLoadBalancerSKUTierValues()))
	if err != nil {
		return nil, err
	}
	if t != string(armnetwork.LoadBalancerSKUTierRegional) {
		return nil, errUnsupported("sku.tier", "privlink serves Regional load balancers only; set sku.tier to Regional.")
	}
	return &armnetwork.LoadBalancerSKU{Name: ptr(armnetwork.LoadBalancerSKUNameStandard), Tier: ptr(armnetwork.LoadBalancerSKUTierRegional)}, nil
}

// childName checks a child's name at path and that it is not used twice
// among the children of kind seg, and records it.
func (b *lbBuild) childName(path, kind, seg string, name *string) (string, error) {
	if str(name) == "" {
		return "", errMissing(path+".name", "A "+kind+"'s name")
	}
	if err := arm.ValidateNetworkName(kind, *name); err != nil {
		ae, _ := arm.AsError(err)
		return "", ae.WithTarget(path + ".name")
	}
	if b.children[seg] == nil {
		b.children[seg] = map[string]string{}
	}
	k := strings.ToLower(*name)
	if _, dup := b.children[seg][k]; dup {
		return "", errInvalid(path+".name", "The %s name '%s' is used twice; give each its own name.", kind, *name)
	}
	b.children[seg][k] = b.childID(seg, *name)
	return *name, nil
}

// buildFrontends checks the frontends, all in subnets of one virtual
// network (the one it returns), and gives each its private address.
func buildFrontends(tx store.Tx, u *usage, b *lbBuild, loc string, in []*armnetwork.FrontendIPConfiguration, cur *armnetwork.LoadBalancerPropertiesFormat) ([]*armnetwork.FrontendIPConfiguration, arm.ResourceID, error) {
	curByName := map[string]*armnetwork.InterfaceIPConfiguration{}
	if cur != nil {
		for _, fe := range cur.FrontendIPConfigurations {
			if fe != nil && fe.Properties != nil {
				curByName[strings.ToLower(str(fe.Name))] = &armnetwork.InterfaceIPConfiguration{Name: fe.Name,
					Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{Subnet: fe.Properties.Subnet, PrivateIPAddress: fe.Properties.PrivateIPAddress}}
			}
		}
	}
	var (
		vnet arm.ResourceID
		pls  []*placed
	)
	for i, fe := range in {
		path := arm.Field("properties.frontendIPConfigurations", i)
		pp := path + ".properties."
		if fe == nil {
			return nil, vnet, errMissing(path, "A frontendIPConfiguration")
		}
		name, err := b.childName(path, "frontend ip configuration", "frontendIPConfigurations", fe.Name)
		if err != nil {
			return nil, vnet, err
		}
		props := fe.Properties
		switch {
		case props != nil && props.PublicIPAddress != nil:
			return nil, vnet, errUnsupported(pp+"publicIPAddress", "privlink serves internal load balancers only: a frontend is a private address in a subnet. Remove publicIPAddress and set subnet.")
		case props != nil && props.PublicIPPrefix != nil:
			return nil, vnet, errUnsupported(pp+"publicIPPrefix", "privlink serves internal load balancers only; remove publicIPPrefix.")
		case props != nil && props.GatewayLoadBalancer != nil:
			return nil, vnet, errUnsupported(pp+"gatewayLoadBalancer", "privlink has no gateway load balancers; remove gatewayLoadBalancer.")
		case props == nil || props.Subnet == nil:
			return nil, vnet, errMissing(pp+"subnet.id", "An internal load balancer frontend's subnet")
		}
		static, addr, err := decodePrivateIP(pp, props.PrivateIPAllocationMethod, props.PrivateIPAddressVersion, props.PrivateIPAddress)
		if err != nil {
			return nil, vnet, err
		}
		ref, err := resolveSameRegion(tx, b.id, loc, pp+"subnet.id", props.Subnet.ID, typeSubnet)
		if err != nil {
			return nil, vnet, err
		}
		if len(pls) > 0 && !vnet.Equal(ref.ID.Parent()) {
			return nil, vnet, badRequest(codeLBNetworks, pp+"subnet.id",
				"All frontendIPConfigurations of an internal load balancer must be in one virtual network; %s is in %s, the first one in %s.",
				name, ref.ID.Parent(), vnet)
		}
		vnet = ref.ID.Parent()
		var subnet armnetwork.Subnet
		if _, err := arm.Load(tx, ref.ID, &subnet); err != nil {
			return nil, vnet, err
		}
		pls = append(pls, &placed{spec: ipcSpec{path: path, name: name, static: static, addr: addr},
			subnet: ref, prefixes: v4(subnetPrefixes(&subnet)), cur: curByName[strings.ToLower(name)]})
	}
	if err := allocate(u, b.id, "frontendIPConfigurations", pls); err != nil {
		return nil, vnet, err
	}
	out := make([]*armnetwork.FrontendIPConfiguration, len(pls))
	for i, pl := range pls {
		method := armnetwork.IPAllocationMethodDynamic
		if pl.spec.static {
			method = armnetwork.IPAllocationMethodStatic
		}
		out[i] = &armnetwork.FrontendIPConfiguration{
			ID: ptr(b.childID("frontendIPConfigurations", pl.name())), Name: ptr(pl.name()), Type: ptr(typeLBFrontend), Etag: ptr(b.etag),
			Zones: in[i].Zones,
			Properties: &armnetwork.FrontendIPConfigurationPropertiesFormat{
				PrivateIPAddress:          ptr(pl.addr.String()),
				PrivateIPAllocationMethod: ptr(method),
				PrivateIPAddressVersion:   ptr(armnetwork.IPVersionIPv4),
				Subnet:                    &armnetwork.Subnet{ID: ptr(pl.subnet.String())},
				ProvisioningState:         ptr(b.state),
			},
		}
	}
	return out, vnet, nil
}

// buildPools checks the backend address pools: NIC-based, so without
// addresses of their own.
func buildPools(b *lbBuild, in []*armnetwork.BackendAddressPool) ([]*armnetwork.BackendAddressPool, error) {
	out := make([]*armnetwork.BackendAddressPool, 0, len(in))
	for i, pool := range in {
		path := arm.Field("properties.backendAddressPools", i)
		pp := path + ".properties."
		if pool == nil {
			return nil, errMissing(path, "A backendAddressPool")
		}
		name, err := b.childName(path, "backend address pool", "backendAddressPools", pool.Name)
		if err != nil {
			return nil, err
		}
		if props := pool.Properties; props != nil {
			switch {
			case len(props.LoadBalancerBackendAddresses) > 0:
				return nil, errUnsupported(pp+"loadBalancerBackendAddresses",
					"privlink's backend pools are NIC-based: a NIC joins a pool through its ipConfiguration's loadBalancerBackendAddressPools. Remove loadBalancerBackendAddresses.")
			case len(props.TunnelInterfaces) > 0:
				return nil, errUnsupported(pp+"tunnelInterfaces", "privlink has no gateway load balancers; remove tunnelInterfaces.")
			case props.VirtualNetwork != nil:
				return nil, errUnsupported(pp+"virtualNetwork", "A NIC-based pool's network is its members'; remove virtualNetwork.")
			}
		}
		out = append(out, &armnetwork.BackendAddressPool{
			ID: ptr(b.childID("backendAddressPools", name)), Name: ptr(name), Type: ptr(typeLBPool), Etag: ptr(b.etag),
			Properties: &armnetwork.BackendAddressPoolPropertiesFormat{ProvisioningState: ptr(b.state)},
		})
	}
	return out, nil
}

// The probe defaults and bounds Azure documents (ProbePropertiesFormat).
const (
	probeIntervalDefault = 15
	probeIntervalMin     = 5
)

// buildProbes checks the health probes: Tcp, Http or Https on a port,
// an interval of at least 5 seconds, a threshold of at least 1.
func buildProbes(b *lbBuild, in []*armnetwork.Probe) ([]*armnetwork.Probe, error) {
	out := make([]*armnetwork.Probe, 0, len(in))
	for i, pr := range in {
		path := arm.Field("properties.probes", i)
		pp := path + ".properties."
		if pr == nil {
			return nil, errMissing(path, "A probe")
		}
		name, err := b.childName(path, "probe", "probes", pr.Name)
		if err != nil {
			return nil, err
		}
		props := pr.Properties
		if props == nil || props.Protocol == nil {
			return nil, errMissing(pp+"protocol", "A probe's protocol")
		}
		proto, err := enumValue(pp+"protocol", (*string)(props.Protocol), "", enumStrings(armnetwork.PossibleProbeProtocolValues()))
		if err != nil {
			return nil, err
		}
		if props.Port == nil {
			return nil, errMissing(pp+"port", "A probe's port")
		}
		if *props.Port < 1 || *props.Port > 65535 {
			return nil, errInvalid(pp+"port", "The probe port %d is out of range: it must be between 1 and 65535.", *props.Port)
		}
		interval := int32(probeIntervalDefault)
		if props.IntervalInSeconds != nil {
			interval = *props.IntervalInSeconds
		}
		if interval < probeIntervalMin {
			return nil, errInvalid(pp+"intervalInSeconds", "The probe interval %d is too short: intervalInSeconds must be at least %d.", interval, probeIntervalMin)
		}
		// probeThreshold is what Azure applies; numberOfProbes is the
		// older name of the same count and stands in when it is alone.
		threshold := int32(1)
		switch {
		case props.ProbeThreshold != nil:
			threshold = *props.ProbeThreshold
		case props.NumberOfProbes != nil:
			threshold = *props.NumberOfProbes
		}
		if threshold < 1 {
			return nil, errInvalid(pp+"probeThreshold", "The probe threshold %d is not valid: probeThreshold (or numberOfProbes) must be at least 1.", threshold)
		}
		numberOfProbes := threshold
		if props.NumberOfProbes != nil {
			numberOfProbes = *props.NumberOfProbes
		}
		path2 := strings.TrimSpace(str(props.RequestPath))
		if proto == string(armnetwork.ProbeProtocolTCP) && path2 != "" {
			return nil, badRequest(codeProbeRequestPath, pp+"requestPath", "A Tcp probe has no requestPath; remove it, or use protocol Http or Https.")
		}
		if proto != string(armnetwork.ProbeProtocolTCP) && !strings.HasPrefix(path2, "/") {
			return nil, badRequest(codeProbeRequestPath, pp+"requestPath", "An %s probe needs a requestPath that starts with '/', for example '/healthz'.", proto)
		}
		nhb, err := enumValue(pp+"noHealthyBackendsBehavior", (*string)(props.NoHealthyBackendsBehavior),
			string(armnetwork.ProbeNoHealthyBackendsBehaviorAllProbedDown), enumStrings(armnetwork.PossibleProbeNoHealthyBackendsBehaviorValues()))
		if err != nil {
			return nil, err
		}
		o := &armnetwork.ProbePropertiesFormat{
			Protocol: ptr(armnetwork.ProbeProtocol(proto)), Port: props.Port, IntervalInSeconds: ptr(interval),
			ProbeThreshold: ptr(threshold), NumberOfProbes: ptr(numberOfProbes),
			NoHealthyBackendsBehavior: ptr(armnetwork.ProbeNoHealthyBackendsBehavior(nhb)), ProvisioningState: ptr(b.state),
		}
		if path2 != "" {
			o.RequestPath = ptr(path2)
		}
		out = append(out, &armnetwork.Probe{ID: ptr(b.childID("probes", name)), Name: ptr(name), Type: ptr(typeLBProbe), Etag: ptr(b.etag), Properties: o})
	}
	return out, nil
}

// The idle timeout's bounds and default, in minutes (LoadBalancingRule).
const (
	idleTimeoutDefault = 4
	idleTimeoutMin     = 4
	idleTimeoutMax     = 30
)

// buildRules checks the load balancing rules: Tcp or Udp from a frontend
// port to a backend port of a pool's members, no floating IP, and
// Azure's two uniqueness rules (one rule per frontend, protocol and port;
// one per pool, protocol and backend port).
func buildRules(b *lbBuild, in []*armnetwork.LoadBalancingRule) ([]*armnetwork.LoadBalancingRule, error) {
	out := make([]*armnetwork.LoadBalancingRule, 0, len(in))
	byFrontend := map[string]string{} // frontend|protocol|port → rule ID
	byBackend := map[string]string{}  // pool|protocol|port → rule ID
	for i, ru := range in {
		path := arm.Field("properties.loadBalancingRules", i)
		pp := path + ".properties."
		if ru == nil {
			return nil, errMissing(path, "A loadBalancingRule")
		}
		name, err := b.childName(path, "load balancing rule", "loadBalancingRules", ru.Name)
		if err != nil {
			return nil, err
		}
		id := b.childID("loadBalancingRules", name)
		props := ru.Properties
		if props == nil || props.Protocol == nil {
			return nil, errMissing(pp+"protocol", "A load balancing rule's protocol")
		}
		proto, err := enumValue(pp+"protocol", (*string)(props.Protocol), "", enumStrings(armnetwork.PossibleTransportProtocolValues()))
		if err != nil {
			return nil, err
		}
		if proto != string(armnetwork.TransportProtocolTCP) && proto != string(armnetwork.TransportProtocolUDP) {
			return nil, errUnsupported(pp+"protocol", "privlink's load balancing rules are Tcp or Udp (no HA ports, no Quic); use Tcp or Udp.")
		}
		if props.FrontendIPConfiguration == nil {
			return nil, errMissing(pp+"frontendIPConfiguration.id", "A load balancing rule's frontendIPConfiguration")
		}
		fe, err := b.ref(pp+"frontendIPConfiguration.id", "frontendIPConfigurations", props.FrontendIPConfiguration)
		if err != nil {
			return nil, err
		}
		if props.FrontendPort == nil {
			return nil, errMissing(pp+"frontendPort", "A load balancing rule's frontendPort")
		}
		if *props.FrontendPort < 1 || *props.FrontendPort > 65534 {
			return nil, errInvalid(pp+"frontendPort", "The frontend port %d is out of range: it must be between 1 and 65534 (0, any port, needs protocol All, which privlink does not serve).", *props.FrontendPort)
		}
		backendPort := *props.FrontendPort
		if props.BackendPort != nil {
			backendPort = *props.BackendPort
		}
		if backendPort < 1 || backendPort > 65535 {
			return nil, errInvalid(pp+"backendPort", "The backend port %d is out of range: it must be between 1 and 65535.", backendPort)
		}
		if boolOr(props.EnableFloatingIP, false) {
			return nil, errUnsupported(pp+"enableFloatingIP", "privlink's load balancing rules translate the destination to the backend's address (floating IP disabled); set enableFloatingIP to false.")
		}
		poolRef := props.BackendAddressPool
		switch {
		case len(props.BackendAddressPools) > 1:
			return nil, errUnsupported(pp+"backendAddressPools", "A load balancing rule of privlink's has one backend address pool; use backendAddressPool.")
		case len(props.BackendAddressPools) == 1 && poolRef == nil:
			poolRef = props.BackendAddressPools[0]
		case len(props.BackendAddressPools) == 1 && poolRef != nil && lkey(str(poolRef.ID)) != lkey(str(props.BackendAddressPools[0].ID)):
			return nil, errInvalid(pp+"backendAddressPools", "backendAddressPool and backendAddressPools name different pools; give one.")
		}
		o := &armnetwork.LoadBalancingRulePropertiesFormat{
			Protocol: ptr(armnetwork.TransportProtocol(proto)), FrontendPort: props.FrontendPort, BackendPort: ptr(backendPort),
			FrontendIPConfiguration: &armnetwork.SubResource{ID: ptr(fe)},
			EnableFloatingIP:        ptr(false), EnableTCPReset: ptr(boolOr(props.EnableTCPReset, false)),
			DisableOutboundSnat: ptr(boolOr(props.DisableOutboundSnat, false)), ProvisioningState: ptr(b.state),
		}
		if poolRef != nil {
			pool, err := b.ref(pp+"backendAddressPool.id", "backendAddressPools", poolRef)
			if err != nil {
				return nil, err
			}
			o.BackendAddressPool = &armnetwork.SubResource{ID: ptr(pool)}
			o.BackendAddressPools = []*armnetwork.SubResource{{ID: ptr(pool)}}
		}
		if props.Probe != nil {
			probe, err := b.ref(pp+"probe.id", "probes", props.Probe)
			if err != nil {
				return nil, err
			}
			o.Probe = &armnetwork.SubResource{ID: ptr(probe)}
		}
		idle := int32(idleTimeoutDefault)
		if props.IdleTimeoutInMinutes != nil {
			idle = *props.IdleTimeoutInMinutes
		}
		if idle < idleTimeoutMin || idle > idleTimeoutMax {
			return nil, errInvalid(pp+"idleTimeoutInMinutes", "The idle timeout %d is out of range: idleTimeoutInMinutes must be between %d and %d.", idle, idleTimeoutMin, idleTimeoutMax)
		}
		o.IdleTimeoutInMinutes = ptr(idle)
		dist, err := enumValue(pp+"loadDistribution", (*string)(props.LoadDistribution), string(armnetwork.LoadDistributionDefault), enumStrings(armnetwork.PossibleLoadDistributionValues()))
		if err != nil {
			return nil, err
		}
		if dist != string(armnetwork.LoadDistributionDefault) {
			return nil, errUnsupported(pp+"loadDistribution", "privlink distributes connections by their 5-tuple hash only (Default); session persistence by source is not served. Use Default.")
		}
		o.LoadDistribution = ptr(armnetwork.LoadDistribution(dist))
		fk := fmt.Sprintf("%s|%s|%d", lkey(fe), proto, *props.FrontendPort)
		if other, dup := byFrontend[fk]; dup {
			return nil, badRequest(codeRulesSameFrontend, pp+"frontendPort",
				"Load balancing rules %s and %s use the same frontend IP configuration %s, protocol %s and frontend port %d. Give each rule its own frontend port.",
				other, id, fe, proto, *props.FrontendPort)
		}
		byFrontend[fk] = id
		if o.BackendAddressPool != nil {
			bk := fmt.Sprintf("%s|%s|%d", lkey(*o.BackendAddressPool.ID), proto, backendPort)
			if other, dup := byBackend[bk]; dup {
				return nil, badRequest(codeRulesSameBackend, pp+"backendPort",
					"Load balancing rules %s and %s with floating IP disabled use the same protocol %s and backend port %d, and must not be used with the same backend address pool %s.",
					other, id, proto, backendPort, *o.BackendAddressPool.ID)
			}
			byBackend[bk] = id
		}
		out = append(out, &armnetwork.LoadBalancingRule{ID: ptr(id), Name: ptr(name), Type: ptr(typeLBRule), Etag: ptr(b.etag), Properties: o})
	}
	return out, nil
}

// checkMembers refuses a load balancer that drops a pool NICs still join,
// or whose frontends move to another network than its members'.
func checkMembers(u *usage, b *lbBuild, vnet arm.ResourceID) error {
	members, err := lbMembers(u, b.id.String())
	if err != nil {
		return err
	}
	refs, err := u.NICSummaries()
	if err != nil {
		return err
	}
	subnetOf := map[string]string{}
	for _, n := range refs {
		for _, c := range n.configs {
			subnetOf[lkey(c.ID)] = c.Subnet
		}
	}
	for pool, ipcs := range members {
		name := pool[strings.LastIndex(pool, "/")+1:]
		if _, kept := b.children["backendAddressPools"][name]; !kept {
			return errPoolInUse(pool, ipcs)
		}
		if len(vnet.Names) == 0 {
			continue
		}
		for _, ipc := range ipcs {
			if s, err := arm.ParseID(subnetOf[lkey(ipc)]); err == nil && !s.Parent().Equal(vnet) {
				return badRequest(codeLBNetworks, "properties.frontendIPConfigurations",
					"The frontends of load balancer %s are in virtual network %s, but ipConfiguration %s of its pool %s is in %s. Keep a load balancer's frontends and members in one virtual network.",
					b.id.Name(), vnet, ipc, name, s.Parent())
			}
		}
	}
	return nil
}

// lbBackRefs fills in the read-only references of frontends, pools and
// probes to the rules that use them.
func lbBackRefs(lp *armnetwork.LoadBalancerPropertiesFormat) {
	uses := map[string][]*armnetwork.SubResource{}
	for _, ru := range lp.LoadBalancingRules {
		ref := &armnetwork.SubResource{ID: ru.ID}
		for _, to := range []*armnetwork.SubResource{ru.Properties.FrontendIPConfiguration, ru.Properties.BackendAddressPool, ru.Properties.Probe} {
			if to != nil {
				uses[lkey(str(to.ID))] = append(uses[lkey(str(to.ID))], ref)
			}
		}
	}
	for _, fe := range lp.FrontendIPConfigurations {
		fe.Properties.LoadBalancingRules = uses[lkey(str(fe.ID))]
	}
	for _, pool := range lp.BackendAddressPools {
		pool.Properties.LoadBalancingRules = uses[lkey(str(pool.ID))]
	}
	for _, pr := range lp.Probes {
		pr.Properties.LoadBalancingRules = uses[lkey(str(pr.ID))]
	}
}

// joinPools resolves the backend address pools an ipConfiguration of the
// NIC nic joins, at path: each a pool of an existing load balancer in the
// NIC's region whose frontends (if any) are in the NIC's network.
func joinPools(r arm.Reader, nic arm.ResourceID, loc, path string, in []*armnetwork.BackendAddressPool, subnet arm.ResourceID) ([]*armnetwork.BackendAddressPool, error) {
	var out []*armnetwork.BackendAddressPool
	seen := map[string]bool{}
	for i, ref := range in {
		target := arm.Field(path, i) + ".id"
		if ref == nil {
			return nil, errMissing(target, "A backend address pool reference's id")
		}
		raw := strings.TrimSpace(str(ref.ID))
		id, err := arm.ParseID(raw)
		if raw == "" || err != nil || id.Scope != nil || id.IsCollection() || len(id.Names) != 2 || id.ResourceGroup == "" ||
			!strings.EqualFold(id.Type(), typeLBPool) {
			return nil, errLinkedID(target, raw, typeLBPool)
		}
		if !strings.EqualFold(id.Subscription, nic.Subscription) {
			return nil, errOtherSubscription(target, raw, nic)
		}
		var lb armnetwork.LoadBalancer
		ok, err := arm.Load(r, id.Parent(), &lb)
		if err != nil {
			return nil, err
		}
		var pool *armnetwork.BackendAddressPool
		if ok && lb.Properties != nil {
			for _, p := range lb.Properties.BackendAddressPools {
				if p != nil && strings.EqualFold(str(p.Name), id.Name()) {
					pool = p
				}
			}
		}
		if pool == nil {
			return nil, errRefNotFound(target, raw, nic)
		}
		if normLocation(str(lb.Location)) != normLocation(loc) {
			return nil, errRefLocation(target, str(pool.ID), str(lb.Location), nic, loc)
		}
		for _, fe := range lb.Properties.FrontendIPConfigurations {
			if fe == nil || fe.Properties == nil || fe.Properties.Subnet == nil {
				continue
			}
			if fs, err := arm.ParseID(str(fe.Properties.Subnet.ID)); err == nil && !fs.Parent().Equal(subnet.Parent()) {
				return nil, badRequest(codeLBNetworks, target,
					"Load balancer %s has its frontends in virtual network %s; ipConfigurations of network interface %s in %s cannot join its pools. Keep a load balancer's frontends and members in one virtual network.",
					str(lb.ID), fs.Parent(), nic.Name(), subnet.Parent())
			}
			break
		}
		if seen[lkey(str(pool.ID))] {
			continue
		}
		seen[lkey(str(pool.ID))] = true
		out = append(out, &armnetwork.BackendAddressPool{ID: pool.ID})
	}
	return out, nil
}
