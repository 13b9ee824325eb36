package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/google/uuid"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/provider/privatelink"
	"github.com/privlink/privlink/internal/store"
)

// Private link services (Microsoft.Network/privateLinkServices): a
// provider's own TCP service, behind the frontend of a Standard internal
// load balancer, published to private endpoints in other networks,
// subscriptions and tenants. A service is a second kind of private-link
// target (ServiceKind) beside flexible servers: its connections are the
// one workflow of internal/provider/privatelink (Pending, Approved,
// Rejected, Disconnected; the owner's decisions on
// privateLinkServices/{s}/privateEndpointConnections), with two things of
// its own that the kind's Policy carries: visibility (the subscriptions
// that may find it and request a connection; "*" for all) and autoApproval
// (those whose requests are approved at once).
//
// One PUT writes, in one transaction:
//   - the service's document: its frontends (loadBalancerFrontendIpConfigurations,
//     frontends of Standard load balancers in its region and subscription),
//     its NAT ipConfigurations (1 to 8, primary first, in one subnet whose
//     privateLinkServiceNetworkPolicies is Disabled), visibility,
//     autoApproval, fqdns, enableProxyProtocol and its alias
//     "{name}.{guid}.{location}.azure.privatelinkservice", fixed at
//     creation;
//   - its managed NIC "{name}.nic.{guid}" (properties.privateLinkService
//     set, so users cannot change or delete it) that holds the NAT
//     addresses, allocated like any NIC's (addr.go): the backends see
//     consumers' connections from them;
//   - the alias index entry (aliasIndexKey) that lets a private endpoint
//     in any subscription name the service by its alias, and lets
//     checkPrivateLinkServiceVisibility and autoApprovedPrivateLinkServices
//     answer across subscriptions.
//
// A DELETE shows every endpoint of the service Disconnected and removes
// the service, its connections, its NIC and its index entry together.

const (
	typePLS         = "Microsoft.Network/privateLinkServices"
	typePLSIPConfig = "Microsoft.Network/privateLinkServices/ipConfigurations"
	typeLocations   = "Microsoft.Network/locations"
	// maxNATIPs is Azure's limit on a service's ipConfigurations.
	maxNATIPs = 8
	// AliasSuffix ends every private link service's alias.
	AliasSuffix = ".azure.privatelinkservice"
	// AliasIndexPrefix holds, by lower-cased alias, what the service
	// publishes to other subscriptions (aliasEntry).
	AliasIndexPrefix = "network/pls-alias/"
)

// ServiceKind is a private link service as a private-link target: no
// groups (its connections have no groupIds), no DNS zone of its own,
// connections with link identifiers, named by ID or alias.
var ServiceKind = &privatelink.Kind{
	Type: typePLS, Title: "private link service", Noun: "private link service",
	LinkIdentifiers: true, AliasSuffix: AliasSuffix,
	Lookup: lookupService, ResolveAlias: resolveServiceAlias,
}

// aliasEntry is a service's entry in the alias index.
type aliasEntry struct {
	ID           string   `json:"id"`
	Location     string   `json:"location"`
	Visibility   []string `json:"visibility"`
	AutoApproval []string `json:"autoApproval"`
}

func aliasIndexKey(alias string) string { return AliasIndexPrefix + strings.ToLower(alias) }

func (e aliasEntry) policy(home string) *privatelink.Policy {
	return &privatelink.Policy{Visibility: e.Visibility, AutoApproval: e.AutoApproval, Home: home}
}

// lookupService reads service id for an endpoint that targets it.
func lookupService(r arm.Reader, id arm.ResourceID) (*privatelink.Target, error) {
	var s armnetwork.PrivateLinkService
	ok, err := arm.Load(r, id, &s)
	if err != nil || !ok {
		return nil, err
	}
	canon, err := arm.ParseID(str(s.ID))
	if err != nil {
		canon = id
	}
	t := &privatelink.Target{ID: canon, Name: str(s.Name), Policy: &privatelink.Policy{Home: canon.Subscription}}
	if p := s.Properties; p != nil {
		if len(p.Fqdns) > 0 {
			t.FQDN = str(p.Fqdns[0])
		}
		if p.Visibility != nil {
			t.Policy.Visibility = derefAll(p.Visibility.Subscriptions)
		}
		if p.AutoApproval != nil {
			t.Policy.AutoApproval = derefAll(p.AutoApproval.Subscriptions)
		}
	}
	return t, nil
}

// resolveServiceAlias reads the alias index.
func resolveServiceAlias(r arm.Reader, alias string) (arm.ResourceID, bool, error) {
	e, ok, err := loadAlias(r, alias)
	if err != nil || !ok {
		return arm.ResourceID{}, false, err
	}
	id, err := arm.ParseID(e.ID)
	if err != nil {
		return arm.ResourceID{}, false, fmt.Errorf("alias index %s: bad id %q: %w", alias, e.ID, err)
	}
	return id, true, nil
}

func loadAlias(r arm.Reader, alias string) (aliasEntry, bool, error) {
	var e aliasEntry
	kv, err := r.Get(aliasIndexKey(alias))
	if errors.Is(err, store.ErrNotFound) {
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("read alias %s: %w", alias, err)
	}
	if err := json.Unmarshal(kv.Value, &e); err != nil {
		return e, false, fmt.Errorf("decode alias %s: %w", alias, err)
	}
	return e, true, nil
}

func derefAll(ss []*string) []string {
	out := []string{}
	for _, s := range ss {
		if s != nil {
			out = append(out, strings.TrimSpace(*s))
		}
	}
	return out
}

// serviceTypes are the types of private link services.
func (p *Provider) serviceTypes() []*arm.ResourceType {
	v := Versions.All()
	return []*arm.ResourceType{
		p.services().register(&arm.ResourceType{Type: typePLS, APIVersions: v, Put: p.putService, Links: serviceLinks,
			BeforeGroupDelete: p.serviceGroupDelete}),
		privatelink.ConnectionsType(p.st, ServiceKind, v),
		{Type: typeLocations, APIVersions: v, NoResourceGroup: true,
			Actions:     map[string]arm.Handler{"checkPrivateLinkServiceVisibility": p.checkVisibility},
			ReadActions: map[string]arm.Handler{"autoApprovedPrivateLinkServices": p.autoApproved}},
	}
}

var serviceLinks = []arm.Link{
	{Path: "properties.ipConfigurations[].properties.subnet.id", Type: typeSubnet, Action: arm.JoinSubnetAction},
	{Path: "properties.loadBalancerFrontendIpConfigurations[].id", Type: typeLBFrontend,
		Action: "Microsoft.Network/loadBalancers/frontendIPConfigurations/join/action"},
}

func (p *Provider) services() tracked[armnetwork.PrivateLinkService] {
	return tracked[armnetwork.PrivateLinkService]{p: p,
		meta: func(v *armnetwork.PrivateLinkService) docMeta {
			return docMeta{id: &v.ID, name: &v.Name, etag: &v.Etag, location: &v.Location, tags: &v.Tags}
		},
		view: func(r arm.Reader, v armnetwork.PrivateLinkService, _ *usage) (armnetwork.PrivateLinkService, error) {
			return serviceView(r, v)
		},
		beforeDelete: func(tx store.Tx, _ *usage, id arm.ResourceID, v *armnetwork.PrivateLinkService) error {
			return releaseService(tx, id, v)
		}}
}

// serviceSpec is a service PUT body after the checks that need no store.
type serviceSpec struct {
	frontends    []string // as given
	ipcs         []ipcSpec
	subnet       *string // the NAT ipConfigurations' one subnet, as given
	visibility   []string
	autoApproval []string
	fqdns        []string
	proxy        bool
}

var subscriptionRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// fqdnRE is a DNS name: labels of letters, digits and hyphens.
var fqdnRE = regexp.MustCompile(`^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$`)

func decodeService(in *armnetwork.PrivateLinkService) (*serviceSpec, error) {
	if in.ExtendedLocation != nil {
		return nil, errUnsupported("extendedLocation", "privlink has no edge zones; remove extendedLocation.")
	}
	props := in.Properties
	if props == nil {
		return nil, errMissing("properties.loadBalancerFrontendIpConfigurations", "A private link service's load balancer frontend")
	}
	if props.DestinationIPAddress != nil && strings.TrimSpace(*props.DestinationIPAddress) != "" {
		return nil, errUnsupported("properties.destinationIPAddress",
			"privlink's private link services sit behind a load balancer frontend; remove destinationIPAddress and name the frontend in loadBalancerFrontendIpConfigurations.")
	}
	if m := props.AccessMode; m != nil && !strings.EqualFold(string(*m), string(armnetwork.AccessModeDefault)) {
		return nil, errUnsupported("properties.accessMode", "privlink serves accessMode Default only (visibility and autoApproval decide who connects); remove accessMode '%s'.", *m)
	}
	s := &serviceSpec{proxy: boolOr(props.EnableProxyProtocol, false)}
	if len(props.LoadBalancerFrontendIPConfigurations) == 0 {
		return nil, errMissing("properties.loadBalancerFrontendIpConfigurations", "A private link service's load balancer frontend (one frontendIPConfiguration of a Standard load balancer)")
	}
	for i, f := range props.LoadBalancerFrontendIPConfigurations {
		path := arm.Field("properties.loadBalancerFrontendIpConfigurations", i) + ".id"
		if f == nil || strings.TrimSpace(str(f.ID)) == "" {
			return nil, errMissing(path, "A load balancer frontend's id")
		}
		s.frontends = append(s.frontends, strings.TrimSpace(*f.ID))
	}
	if err := s.decodeNATIPs(props.IPConfigurations); err != nil {
		return nil, err
	}
	var err error
	if props.Visibility != nil {
		if s.visibility, err = subscriptionList("properties.visibility.subscriptions", props.Visibility.Subscriptions, true); err != nil {
			return nil, err
		}
	}
	if props.AutoApproval != nil {
		if s.autoApproval, err = subscriptionList("properties.autoApproval.subscriptions", props.AutoApproval.Subscriptions, false); err != nil {
			return nil, err
		}
	}
	pol := privatelink.Policy{Visibility: s.visibility}
	for i, sub := range s.autoApproval {
		if !pol.Visible(sub) {
			return nil, errInvalid(arm.Field("properties.autoApproval.subscriptions", i),
				"Subscription %s is in autoApproval but not in visibility: a subscription that cannot see the service cannot be approved automatically. Add it to visibility.subscriptions too.", sub)
		}
	}
	for i, f := range props.Fqdns {
		v := strings.TrimSpace(str(f))
		if v == "" || len(v) > 253 || !fqdnRE.MatchString(v) {
			return nil, errInvalid(arm.Field("properties.fqdns", i), "The fqdn '%s' is not a DNS name (labels of letters, digits and hyphens, at most 253 characters).", v)
		}
		s.fqdns = append(s.fqdns, v)
	}
	return s, nil
}

// subscriptionList checks a list of subscription IDs ("*" allowed when
// star).
func subscriptionList(path string, in []*string, star bool) ([]string, error) {
	out := []string{}
	for i, p := range in {
		v := strings.TrimSpace(str(p))
		switch {
		case v == "*" && star:
		case subscriptionRE.MatchString(v):
			v = strings.ToLower(v)
		default:
			allowed := "a subscription ID (a GUID)"
			if star {
				allowed += ", or * for every subscription"
			}
			return nil, errInvalid(arm.Field(path, i), "The subscription '%s' is not valid: give %s.", v, allowed)
		}
		out = append(out, v)
	}
	return out, nil
}

// decodeNATIPs checks the NAT ipConfigurations: 1 to 8, named, one
// subnet, exactly one primary and it first, IPv4, Dynamic or Static.
func (s *serviceSpec) decodeNATIPs(ics []*armnetwork.PrivateLinkServiceIPConfiguration) error {
	const list = "properties.ipConfigurations"
	switch {
	case len(ics) == 0:
		return errMissing(list, "A private link service's NAT ipConfigurations (1 to 8, in one subnet)")
	case len(ics) > maxNATIPs:
		return badRequest(codeTooManyNATIPs, list,
			"A private link service has at most %d ipConfigurations (NAT IPs); this one has %d.", maxNATIPs, len(ics))
	}
	names := map[string]bool{}
	for i, ic := range ics {
		path := arm.Field(list, i)
		if ic == nil || strings.TrimSpace(str(ic.Name)) == "" {
			return errMissing(path+".name", "An ipConfiguration's name")
		}
		if err := arm.ValidateNetworkName("ip configuration", *ic.Name); err != nil {
			ae, _ := arm.AsError(err)
			return ae.WithTarget(path + ".name")
		}
		if names[strings.ToLower(*ic.Name)] {
			return errInvalid(path+".name", "Two ipConfigurations are named '%s'; names are unique within a private link service.", *ic.Name)
		}
		names[strings.ToLower(*ic.Name)] = true
		p := ic.Properties
		if p == nil || p.Subnet == nil || strings.TrimSpace(str(p.Subnet.ID)) == "" {
			return errMissing(path+".properties.subnet.id", "The subnet of a NAT ipConfiguration")
		}
		if s.subnet == nil {
			s.subnet = p.Subnet.ID
		} else if lkey(str(s.subnet)) != lkey(str(p.Subnet.ID)) {
			return errInvalid(path+".properties.subnet.id",
				"The NAT ipConfigurations of a private link service are in one subnet: %s is not %s.", str(p.Subnet.ID), str(s.subnet))
		}
		if v := p.PrivateIPAddressVersion; v != nil && !strings.EqualFold(string(*v), string(armnetwork.IPVersionIPv4)) {
			return errUnsupported(path+".properties.privateIPAddressVersion", "privlink allocates IPv4 NAT IPs only; remove privateIPAddressVersion '%s'.", *v)
		}
		primary := boolOr(p.Primary, i == 0 && len(ics) == 1)
		if primary != (i == 0) {
			return badRequest(codePrimaryNATIP, path+".properties.primary",
				"A private link service has exactly one primary ipConfiguration, and it is the first; ipConfiguration %d (%s) %s.",
				i, *ic.Name, map[bool]string{true: "is primary but not the first", false: "is the first but not primary"}[primary])
		}
		spec := ipcSpec{path: path, name: *ic.Name, primary: primary}
		method, err := enumValue(path+".properties.privateIPAllocationMethod", (*string)(p.PrivateIPAllocationMethod),
			string(armnetwork.IPAllocationMethodDynamic), enumStrings(armnetwork.PossibleIPAllocationMethodValues()))
		if err != nil {
			return err
		}
		raw := strings.TrimSpace(str(p.PrivateIPAddress))
		if method == string(armnetwork.IPAllocationMethodStatic) {
			if raw == "" {
				return errMissing(path+".properties.privateIPAddress", "A Static NAT ipConfiguration's privateIPAddress")
			}
			a, ok := parseIPv4(raw)
			if !ok {
				return errInvalid(path+".properties.privateIPAddress", "The privateIPAddress '%s' is not an IPv4 address.", raw)
			}
			spec.static, spec.addr = true, a
		}
		s.ipcs = append(s.ipcs, spec)
	}
	return nil
}

func (p *Provider) putService(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	return p.services().put(ctx, r, "private link service", func(v *armnetwork.PrivateLinkService) *string { return nil },
		func(tx store.Tx, w putWrite[armnetwork.PrivateLinkService]) (*armnetwork.PrivateLinkService, error) {
			spec, err := decodeService(w.in)
			if err != nil {
				return nil, err
			}
			return p.buildService(tx, spec, w)
		})
}

func (p *Provider) buildService(tx store.Tx, spec *serviceSpec, w putWrite[armnetwork.PrivateLinkService]) (*armnetwork.PrivateLinkService, error) {
	frontends, err := resolveFrontends(tx, w.id, w.loc, spec.frontends)
	if err != nil {
		return nil, err
	}
	subnetPath := spec.ipcs[0].path + ".properties.subnet.id"
	sn, err := resolveSameRegion(tx, w.id, w.loc, subnetPath, spec.subnet, typeSubnet)
	if err != nil {
		return nil, err
	}
	var subnet armnetwork.Subnet
	if _, err := arm.Load(tx, sn.ID, &subnet); err != nil {
		return nil, err
	}
	if subnet.Properties == nil || subnet.Properties.PrivateLinkServiceNetworkPolicies == nil ||
		*subnet.Properties.PrivateLinkServiceNetworkPolicies != armnetwork.VirtualNetworkPrivateLinkServiceNetworkPoliciesDisabled {
		return nil, badRequest(codePLSSubnetPolicies, subnetPath,
			"Private link service %s cannot be created in a subnet %s since it has private link service network policies enabled. Set the subnet's privateLinkServiceNetworkPolicies to Disabled.",
			w.id, sn)
	}
	var alias, guid string
	var cur *armnetwork.PrivateLinkService
	if w.cur != nil && w.cur.Properties != nil {
		cur = w.cur
		alias = str(cur.Properties.Alias)
	}
	if alias == "" {
		guid = uuid.NewString()
		alias = strings.ToLower(w.name) + "." + guid + "." + w.loc + AliasSuffix
	}
	nic, err := p.serviceNIC(tx, spec, w, sn, v4(subnetPrefixes(&subnet)), cur)
	if err != nil {
		return nil, err
	}
	nicID, _ := arm.ParseID(str(nic.ID))
	if err := arm.Save(tx, nicID, nic); err != nil {
		return nil, err
	}
	entry, err := json.Marshal(aliasEntry{ID: w.id.String(), Location: w.loc, Visibility: spec.visibility, AutoApproval: spec.autoApproval})
	if err != nil {
		return nil, fmt.Errorf("encode alias entry of %s: %w", w.id, err)
	}
	if err := tx.Put(aliasIndexKey(alias), entry); err != nil {
		return nil, fmt.Errorf("index alias of %s: %w", w.id, err)
	}
	props := &armnetwork.PrivateLinkServiceProperties{
		LoadBalancerFrontendIPConfigurations: frontends,
		Visibility:                           &armnetwork.PrivateLinkServicePropertiesVisibility{Subscriptions: ptrs(spec.visibility)},
		AutoApproval:                         &armnetwork.PrivateLinkServicePropertiesAutoApproval{Subscriptions: ptrs(spec.autoApproval)},
		Fqdns:                                ptrs(spec.fqdns),
		EnableProxyProtocol:                  ptr(spec.proxy),
		Alias:                                ptr(alias),
		NetworkInterfaces:                    []*armnetwork.Interface{{ID: nic.ID}},
		ProvisioningState:                    ptr(w.state),
	}
	for _, ic := range nic.Properties.IPConfigurations {
		ip := ic.Properties
		props.IPConfigurations = append(props.IPConfigurations, &armnetwork.PrivateLinkServiceIPConfiguration{
			ID: ptr(w.id.String() + "/ipConfigurations/" + str(ic.Name)), Name: ic.Name, Type: ptr(typePLSIPConfig), Etag: ptr(w.etag),
			Properties: &armnetwork.PrivateLinkServiceIPConfigurationProperties{
				Primary: ip.Primary, PrivateIPAddress: ip.PrivateIPAddress, PrivateIPAllocationMethod: ip.PrivateIPAllocationMethod,
				PrivateIPAddressVersion: ip.PrivateIPAddressVersion, Subnet: ip.Subnet, ProvisioningState: ptr(w.state),
			},
		})
	}
	return &armnetwork.PrivateLinkService{ID: ptr(w.id.String()), Name: ptr(w.name), Type: ptr(typePLS), Location: ptr(w.loc),
		Tags: w.in.Tags, Etag: ptr(w.etag), Properties: props}, nil
}

func ptrs(ss []string) []*string {
	out := make([]*string, len(ss))
	for i := range ss {
		out[i] = &ss[i]
	}
	return out
}

// resolveFrontends checks that each frontend is one of a Standard load
// balancer in the service's subscription and region.
func resolveFrontends(r arm.Reader, referrer arm.ResourceID, loc string, ids []string) ([]*armnetwork.FrontendIPConfiguration, error) {
	var out []*armnetwork.FrontendIPConfiguration
	for i, raw := range ids {
		path := arm.Field("properties.loadBalancerFrontendIpConfigurations", i) + ".id"
		id, err := arm.ParseID(raw)
		if err != nil || id.Scope != nil || len(id.Names) != 2 || !strings.EqualFold(id.Type(), typeLBFrontend) {
			return nil, errLinkedID(path, raw, typeLBFrontend)
		}
		if !strings.EqualFold(id.Subscription, referrer.Subscription) {
			return nil, badRequest(codeInvalidReference, path,
				"Load balancer frontend %s referenced by private link service %s is in another subscription; a private link service's load balancer is in its own subscription.", raw, referrer)
		}
		lbID := id.Parent()
		var lb armnetwork.LoadBalancer
		ok, err := arm.Load(r, lbID, &lb)
		if err != nil {
			return nil, err
		}
		fe, found := frontendOf(r, &lb, id)
		if !ok || !found {
			return nil, badRequest(codeFrontendNotFound, path,
				"Load balancer frontend %s referenced by private link service %s was not found. Create the load balancer and its frontend first, or check the ID.", raw, referrer)
		}
		if lb.SKU != nil && lb.SKU.Name != nil && *lb.SKU.Name != armnetwork.LoadBalancerSKUNameStandard {
			return nil, badRequest(codeNotStandardLB, path,
				"Load balancer %s has SKU %s; a private link service needs a Standard load balancer.", lbID, *lb.SKU.Name)
		}
		if normLocation(str(lb.Location)) != loc {
			return nil, badRequest(codeInvalidReference, path,
				"Load balancer %s is in location '%s'; private link service %s is in '%s'. Use a load balancer in the same region.", lbID, normLocation(str(lb.Location)), referrer, loc)
		}
		if fe.Properties == nil || fe.Properties.Subnet == nil {
			return nil, errInvalid(path, "Frontend %s has no subnet: a private link service sits behind an internal load balancer's private frontend.", raw)
		}
		out = append(out, &armnetwork.FrontendIPConfiguration{ID: ptr(str(fe.ID))})
	}
	return out, nil
}

// frontendOf finds frontend id of lb: inline in the load balancer's
// document, or a document of its own.
func frontendOf(r arm.Reader, lb *armnetwork.LoadBalancer, id arm.ResourceID) (*armnetwork.FrontendIPConfiguration, bool) {
	if lb.Properties != nil {
		for _, fe := range lb.Properties.FrontendIPConfigurations {
			if fe != nil && strings.EqualFold(str(fe.Name), id.Name()) {
				if fe.ID == nil {
					fe.ID = ptr(id.String())
				}
				return fe, true
			}
		}
	}
	var fe armnetwork.FrontendIPConfiguration
	if ok, err := arm.Load(r, id, &fe); err != nil || !ok {
		return nil, false
	}
	if fe.ID == nil {
		fe.ID = ptr(id.String())
	}
	return &fe, true
}

// serviceNIC builds the service's managed NIC with its NAT addresses.
func (p *Provider) serviceNIC(tx store.Tx, spec *serviceSpec, w putWrite[armnetwork.PrivateLinkService], sn resolved,
	prefixes []netip.Prefix, cur *armnetwork.PrivateLinkService) (*armnetwork.Interface, error) {
	var curNIC armnetwork.Interface
	var nicID arm.ResourceID
	found := false
	if cur != nil {
		for _, n := range cur.Properties.NetworkInterfaces {
			if n == nil {
				continue
			}
			if id, err := arm.ParseID(str(n.ID)); err == nil {
				ok, err := arm.Load(tx, id, &curNIC)
				if err != nil {
					return nil, err
				}
				if ok && strings.EqualFold(serviceOf(&curNIC), w.id.String()) {
					nicID, found = id, true
				}
			}
		}
	}
	if !found {
		curNIC = armnetwork.Interface{}
		nicID = arm.ResourceID{Subscription: w.id.Subscription, ResourceGroup: w.id.ResourceGroup, Namespace: namespace,
			Types: []string{"networkInterfaces"}, Names: []string{w.name + ".nic." + uuid.NewString()}}
	}
	curIPC := map[string]*armnetwork.InterfaceIPConfiguration{}
	if curNIC.Properties != nil {
		for _, ic := range curNIC.Properties.IPConfigurations {
			if ic != nil {
				curIPC[strings.ToLower(str(ic.Name))] = ic
			}
		}
	}
	var pls []*placed
	for _, s := range spec.ipcs {
		pls = append(pls, &placed{spec: s, subnet: sn, prefixes: prefixes, cur: curIPC[strings.ToLower(s.name)]})
	}
	u := p.newUsage(tx, w.id.Subscription)
	if err := allocate(u, nicID, "ipConfigurations", pls); err != nil {
		return nil, err
	}
	mac, err := macFor(u, nicID, &curNIC)
	if err != nil {
		return nil, err
	}
	guid := newGUID()
	if curNIC.Properties != nil && curNIC.Properties.ResourceGUID != nil {
		guid = curNIC.Properties.ResourceGUID
	}
	state, _ := p.settle(nicID, false)
	etag := arm.NewETag()
	nic := managedNIC(nicID, w.loc, etag, mac, guid, state)
	nic.Properties.PrivateLinkService = &armnetwork.PrivateLinkService{ID: ptr(w.id.String())}
	for _, pl := range pls {
		method := armnetwork.IPAllocationMethodDynamic
		if pl.spec.static {
			method = armnetwork.IPAllocationMethodStatic
		}
		nic.Properties.IPConfigurations = append(nic.Properties.IPConfigurations, &armnetwork.InterfaceIPConfiguration{
			ID: ptr(nicID.String() + "/ipConfigurations/" + pl.name()), Name: ptr(pl.name()), Type: ptr(typeIPConfig), Etag: ptr(etag),
			Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
				PrivateIPAddress:          ptr(pl.addr.String()),
				PrivateIPAllocationMethod: ptr(method),
				PrivateIPAddressVersion:   ptr(armnetwork.IPVersionIPv4),
				Subnet:                    &armnetwork.Subnet{ID: ptr(sn.String())},
				Primary:                   ptr(pl.spec.primary),
				ProvisioningState:         ptr(state),
			},
		})
	}
	return nic, nil
}

// checkNoNATIPs refuses to enable private link service network policies
// on a subnet that holds a service's NAT IPs.
func checkNoNATIPs(u *usage, subnet arm.ResourceID, target string) error {
	refs, err := u.inSubnet(subnet.String())
	if err != nil {
		return err
	}
	for _, r := range refs {
		if r.PrivateLinkService != "" {
			return badRequest(codePLSPoliciesInUse, target,
				"Private link service network policies cannot be enabled on subnet %s: private link service %s has its NAT IP %s there. Delete the service or move its NAT IPs first.",
				subnet, r.PrivateLinkService, r.Address)
		}
	}
	return nil
}

// serviceOf returns the ID of the private link service whose NIC n is, ""
// for any other NIC.
func serviceOf(n *armnetwork.Interface) string {
	if n == nil || n.Properties == nil || n.Properties.PrivateLinkService == nil {
		return ""
	}
	return str(n.Properties.PrivateLinkService.ID)
}

// serviceView composes a stored service with its connections.
func serviceView(r arm.Reader, s armnetwork.PrivateLinkService) (armnetwork.PrivateLinkService, error) {
	if s.Properties == nil {
		return s, nil
	}
	props := *s.Properties
	s.Properties = &props
	id, err := arm.ParseID(str(s.ID))
	if err != nil {
		return s, fmt.Errorf("stored private link service has a bad id %q: %w", str(s.ID), err)
	}
	views, err := privatelink.Views(r, id)
	if err != nil {
		return s, err
	}
	props.PrivateEndpointConnections = []*armnetwork.PrivateEndpointConnection{}
	for _, v := range views {
		var c armnetwork.PrivateEndpointConnection
		if err := json.Unmarshal(v, &c); err != nil {
			return s, fmt.Errorf("decode a connection of %s: %w", id, err)
		}
		props.PrivateEndpointConnections = append(props.PrivateEndpointConnections, &c)
	}
	return s, nil
}

// releaseService removes what a service holds beside its document: its
// endpoints see Disconnected, its connections, NIC and alias go.
func releaseService(tx store.Tx, id arm.ResourceID, s *armnetwork.PrivateLinkService) error {
	canon := id
	if c, err := arm.ParseID(str(s.ID)); err == nil {
		canon = c
	}
	if err := privatelink.DisconnectAll(tx, canon, fmt.Sprintf("Private link service '%s' was deleted", str(s.Name))); err != nil {
		return err
	}
	kvs, err := tx.List(arm.CollectionPrefix(canon.ChildCollection(privatelink.Segment)))
	if err != nil {
		return fmt.Errorf("list connections of %s: %w", canon, err)
	}
	for _, kv := range kvs {
		if err := tx.Delete(kv.Key); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete connection %s: %w", kv.Key, err)
		}
	}
	if s.Properties == nil {
		return nil
	}
	for _, n := range s.Properties.NetworkInterfaces {
		nicID, err := arm.ParseID(str(n.ID))
		if err != nil {
			continue
		}
		if err := deleteManagedNIC(tx, nicID, canon.String(), serviceOf); err != nil {
			return err
		}
	}
	if a := str(s.Properties.Alias); a != "" {
		if err := tx.Delete(aliasIndexKey(a)); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("unindex alias of %s: %w", canon, err)
		}
	}
	return nil
}

// serviceGroupDelete runs when the service's resource group is deleted.
func (p *Provider) serviceGroupDelete(tx store.Tx, id arm.ResourceID) error {
	var s armnetwork.PrivateLinkService
	ok, err := arm.Load(tx, id, &s)
	if err != nil || !ok {
		return err
	}
	return releaseService(tx, id, &s)
}

// checkVisibility serves POST .../locations/{l}/checkPrivateLinkServiceVisibility
// (subscription and resource group level): whether the caller's
// subscription sees the service with the alias. Azure's is long-running;
// the answer is ready at once (200 with the result: the SDK's poller
// completes without polling).
func (p *Provider) checkVisibility(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in armnetwork.CheckPrivateLinkServiceVisibilityRequest
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	alias := strings.TrimSpace(str(in.PrivateLinkServiceAlias))
	if alias == "" {
		return nil, errMissing("privateLinkServiceAlias", "The alias of the private link service to check")
	}
	e, ok, err := loadAlias(arm.ReadOnly(ctx, p.st), alias)
	if err != nil {
		return nil, err
	}
	visible := false
	if ok && strings.EqualFold(e.Location, normLocation(r.ID.Name())) {
		home, _ := arm.ParseID(e.ID)
		visible = e.policy(home.Subscription).Visible(r.ID.Subscription)
	}
	return arm.OK(armnetwork.PrivateLinkServiceVisibility{Visible: ptr(visible)}), nil
}

// autoApproved serves GET .../locations/{l}/autoApprovedPrivateLinkServices:
// the services of the location (in any subscription) whose autoApproval
// lists the caller's subscription.
func (p *Provider) autoApproved(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	kvs, err := arm.ReadOnly(ctx, p.st).List(AliasIndexPrefix)
	if err != nil {
		return nil, fmt.Errorf("list private link service aliases: %w", err)
	}
	out := armnetwork.AutoApprovedPrivateLinkServicesResult{Value: []*armnetwork.AutoApprovedPrivateLinkService{}}
	for _, kv := range kvs {
		var e aliasEntry
		if json.Unmarshal(kv.Value, &e) != nil || !strings.EqualFold(e.Location, normLocation(r.ID.Name())) {
			continue
		}
		if e.policy("").AutoApproves(r.ID.Subscription) {
			out.Value = append(out.Value, &armnetwork.AutoApprovedPrivateLinkService{PrivateLinkService: ptr(e.ID)})
		}
	}
	return &arm.Response{Status: http.StatusOK, Body: out}, nil
}

// codeFrontendInUse refuses to delete a load balancer, or remove its
// frontend, while a private link service stands on that frontend. Azure's
// own code for it is in neither the REST specs nor the docs we could read;
// this one is by analogy with InUseBackendAddressPoolCannotBeDeleted.
const codeFrontendInUse = "InUseFrontendIPConfigurationCannotBeDeleted"

// frontendUsers returns the private link services (of lb's subscription,
// as resolveFrontends requires) that stand on each frontend of load
// balancer lb, by the frontend's lower-cased ID; with onlyProxy, only
// those with enableProxyProtocol.
func frontendUsers(r arm.Reader, lb arm.ResourceID, onlyProxy bool) (map[string][]string, error) {
	coll := arm.ResourceID{Subscription: lb.Subscription, Namespace: namespace, Types: []string{"privateLinkServices"}}
	services, err := arm.LoadAll[armnetwork.PrivateLinkService](r, coll)
	if err != nil {
		return nil, err
	}
	prefix := lkey(lb.String()) + "/frontendipconfigurations/"
	out := map[string][]string{}
	for _, s := range services {
		if s.Properties == nil || (onlyProxy && (s.Properties.EnableProxyProtocol == nil || !*s.Properties.EnableProxyProtocol)) {
			continue
		}
		for _, fe := range s.Properties.LoadBalancerFrontendIPConfigurations {
			if fe != nil && strings.HasPrefix(lkey(str(fe.ID)), prefix) {
				out[lkey(str(fe.ID))] = append(out[lkey(str(fe.ID))], str(s.ID))
			}
		}
	}
	return out, nil
}

// checkFrontendsUnused refuses a change of load balancer lb that takes
// away a frontend a private link service uses: all of them (keep nil, a
// delete; outsideOf set, a delete of resource group outsideOf, which only
// services outside it block), or those keep lacks (a PUT).
func checkFrontendsUnused(r arm.Reader, lb arm.ResourceID, keep []*armnetwork.FrontendIPConfiguration, outsideOf string) error {
	users, err := frontendUsers(r, lb, false)
	if err != nil || len(users) == 0 {
		return err
	}
	kept := map[string]bool{}
	for _, fe := range keep {
		if fe != nil {
			kept[lkey(lb.String())+"/frontendipconfigurations/"+strings.ToLower(str(fe.Name))] = true
		}
	}
	for _, fe := range slices.Sorted(maps.Keys(users)) {
		svcs := users[fe]
		if outsideOf != "" {
			svcs = outside(svcs, outsideOf)
		}
		if kept[fe] || len(svcs) == 0 {
			continue
		}
		what := "Load balancer " + lb.String() + " cannot be deleted"
		if keep != nil {
			what = "Frontend IP configuration " + fe + " cannot be removed"
		}
		return badRequest(codeFrontendInUse, "",
			"%s because its frontend IP configuration %s is in use by private link service %s. Delete the private link service, or move it to another frontend, first.",
			what, fe, strings.Join(svcs, ", "))
	}
	return nil
}
