package fabric

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
)

// labelPublic marks the public addresses of servers on lo of the internet
// router.
const labelPublic = "lo:pub"

// EndpointNAT is one private endpoint's translation in its network's router:
// TCP to Endpoint:port, for each of Ports, goes to ServiceAddr:port in the
// namespace of Service, from the address SNAT.
type EndpointNAT struct {
	// Name identifies the translation in its network (1-64 of
	// [A-Za-z0-9_.-]); its counters are named after it.
	Name string
	// Endpoint is the endpoint's private address in the network. It should
	// be on the router's lo (NetworkSpec.Endpoints): connections to it
	// that are not translated then reach the router's own stack, which
	// refuses them.
	Endpoint netip.Addr
	// Ports are the translated TCP ports (5432 for PostgreSQL, 6432 for
	// its pooler), each the same on both sides: one or more, no port
	// twice. Each is a few more set elements, never a rule.
	Ports []uint16
	// Service is the ID of the service namespace (EnsureService), and
	// ServiceAddr its address there.
	Service     string
	ServiceAddr netip.Addr
	// ServiceKind is the kind of Service's namespace: KindService (or
	// ""), a server's; KindNIC, a private link service's NAT NIC, which
	// holds ServiceAddr by EnsureLinkService (see LinkService).
	ServiceKind Kind
	// Relay says that a userspace relay listening on Endpoint:port in the
	// router serves the endpoint (a private link service's with PROXY
	// protocol, internal/proxyrelay): no translation, no service link,
	// and Service, ServiceAddr and SNAT are ignored; the router only
	// lets its SYNs reach the listener without counting them as refused.
	Relay bool
	// SNAT is the source address the service sees for this endpoint's
	// connections, from 169.254.0.0/16, unique per endpoint on the whole
	// machine (the caller allocates it): it tells the service which
	// endpoint, and so which network, a connection comes through.
	SNAT netip.Addr
}

// AddrRange is an inclusive range of IPv4 addresses, as a firewall rule's
// start and end addresses.
type AddrRange struct {
	From, To netip.Addr
}

// PrefixRange returns the range of the addresses of p, an IPv4 prefix (the
// zero AddrRange for any other).
func PrefixRange(p netip.Prefix) AddrRange {
	if !p.IsValid() || !p.Addr().Is4() {
		return AddrRange{}
	}
	p = p.Masked()
	last := p.Addr().As4()
	for i := range last {
		hostBits := max(0, min(8, 32-p.Bits()-8*(3-i)))
		last[i] |= byte(1<<hostBits - 1)
	}
	return AddrRange{From: p.Addr(), To: netip.AddrFrom4(last)}
}

func (r AddrRange) contains(a netip.Addr) bool {
	return a.Is4() && r.From.Compare(a) <= 0 && a.Compare(r.To) <= 0
}

// PublicNAT is one server's public path in the internet router: TCP from a
// source inside Allowed to Public:port, for each of Ports, goes to
// ServiceAddr:port in the namespace of Service, keeping its source address.
type PublicNAT struct {
	// Name identifies the path (1-64 of [A-Za-z0-9_.-]); its counters and
	// firewall set are named after it.
	Name string
	// Public is the server's public address, in 198.18.0.0/15, one per
	// path; it lives on the internet router's lo while the path is listed.
	Public netip.Addr
	// Ports are the translated TCP ports, as EndpointNAT's.
	Ports []uint16
	// Service is the ID of the service namespace, and ServiceAddr its
	// address there.
	Service     string
	ServiceAddr netip.Addr
	// Allowed are the source ranges of the server's firewall rules. None
	// means no traffic.
	Allowed []AddrRange
	// Enabled is publicNetworkAccess: while false nothing gets through.
	Enabled bool
}

func (p PublicNAT) allows(a netip.Addr) bool {
	return p.Enabled && slices.ContainsFunc(p.Allowed, func(r AddrRange) bool { return r.contains(a) })
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("fabric: %s: %w", fmt.Sprintf(format, args...), ErrInvalid)
}

func validateEndpoints(network string, eps []EndpointNAT) error {
	if err := checkID("network", network); err != nil {
		return err
	}
	names := map[string]bool{}
	targets := map[netip.AddrPort]bool{}
	snats := map[netip.Addr]bool{}
	svcAddrs := map[string]netip.Addr{}
	for _, ep := range eps {
		if err := checkID("endpoint translation", ep.Name); err != nil {
			return err
		}
		if err := checkID("service", ep.Service); err != nil && !ep.Relay {
			return err
		}
		bad := func(format string, args ...any) error {
			return invalid("network %s: endpoint translation %s: %s", network, ep.Name, fmt.Sprintf(format, args...))
		}
		a := ep.Endpoint
		if !a.Is4() || ServicePrefix.Contains(a) || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a == DNSAddr {
			return bad("endpoint %s: want a unicast IPv4 address of the network", a)
		}
		if err := checkPorts(ep.Ports); err != nil {
			return bad("%v", err)
		}
		if ep.Relay {
			if names[ep.Name] {
				return bad("name used twice")
			}
			for _, port := range ep.Ports {
				target := netip.AddrPortFrom(a, port)
				if targets[target] {
					return bad("%s translated twice", target)
				}
				targets[target] = true
			}
			names[ep.Name] = true
			continue
		}
		if ep.ServiceKind != "" && ep.ServiceKind != KindService && ep.ServiceKind != KindNIC {
			return bad("service kind %q: want %q or %q", ep.ServiceKind, KindService, KindNIC)
		}
		if !ep.ServiceAddr.Is4() || !ServicePrefix.Contains(ep.ServiceAddr) {
			return bad("service address %s: want one inside %s", ep.ServiceAddr, ServicePrefix)
		}
		if !ep.SNAT.Is4() || !ServicePrefix.Contains(ep.SNAT) {
			return bad("SNAT address %s: want one inside %s", ep.SNAT, ServicePrefix)
		}
		if prev, ok := svcAddrs[ep.Service]; ok && prev != ep.ServiceAddr {
			return bad("service %s has two addresses, %s and %s", ep.Service, prev, ep.ServiceAddr)
		}
		svcAddrs[ep.Service] = ep.ServiceAddr
		switch {
		case names[ep.Name]:
			return bad("name used twice")
		case snats[ep.SNAT]:
			return bad("SNAT address %s used twice", ep.SNAT)
		}
		for _, port := range ep.Ports {
			target := netip.AddrPortFrom(a, port)
			if targets[target] {
				return bad("%s translated twice", target)
			}
			targets[target] = true
		}
		names[ep.Name], snats[ep.SNAT] = true, true
	}
	for _, ep := range eps {
		for svc, addr := range svcAddrs {
			if addr == ep.SNAT && !ep.Relay {
				return invalid("network %s: endpoint translation %s: SNAT address %s is service %s's address", network, ep.Name, ep.SNAT, svc)
			}
		}
	}
	return nil
}

func validatePublic(pubs []PublicNAT) error {
	names := map[string]bool{}
	publics := map[netip.Addr]bool{}
	svcAddrs := map[string]netip.Addr{}
	for _, p := range pubs {
		if err := checkID("public path", p.Name); err != nil {
			return err
		}
		if err := checkID("service", p.Service); err != nil {
			return err
		}
		bad := func(format string, args ...any) error {
			return invalid("public path %s: %s", p.Name, fmt.Sprintf(format, args...))
		}
		if err := checkInternetAddr(p.Public); err != nil {
			return bad("public address %s: want a host address in %s other than %s", p.Public, InternetPrefix, InternetGateway)
		}
		if err := checkPorts(p.Ports); err != nil {
			return bad("%v", err)
		}
		if !p.ServiceAddr.Is4() || !ServicePrefix.Contains(p.ServiceAddr) {
			return bad("service address %s: want one inside %s", p.ServiceAddr, ServicePrefix)
		}
		if prev, ok := svcAddrs[p.Service]; ok && prev != p.ServiceAddr {
			return bad("service %s has two addresses, %s and %s", p.Service, prev, p.ServiceAddr)
		}
		svcAddrs[p.Service] = p.ServiceAddr
		for _, r := range p.Allowed {
			if !r.From.Is4() || !r.To.Is4() || r.To.Less(r.From) {
				return bad("allowed range %s-%s: want IPv4 addresses, the first not above the last", r.From, r.To)
			}
		}
		switch {
		case names[p.Name]:
			return bad("name used twice")
		case publics[p.Public]:
			return bad("public address %s used twice", p.Public)
		}
		names[p.Name], publics[p.Public] = true, true
	}
	return nil
}

// checkPorts checks a translation's ports: one or more, none 0, none
// twice.
func checkPorts(ports []uint16) error {
	if len(ports) == 0 {
		return errors.New("no port")
	}
	seen := map[uint16]bool{}
	for _, p := range ports {
		switch {
		case p == 0:
			return errors.New("port 0")
		case seen[p]:
			return fmt.Errorf("port %d twice", p)
		}
		seen[p] = true
	}
	return nil
}

// EnsureEndpoints converges the endpoint translations of a network's router
// to exactly eps (the whole desired set; nil removes them all):
//
//   - a service link (ServiceLinkNames) to the namespace of each service
//     that eps name, holding their SNAT addresses on the router's end, with
//     routes to the service's address one way and back to the SNAT
//     addresses the other; links to other services are deleted;
//   - per translation and port, a DNAT of new TCP connections to
//     Endpoint:port toward ServiceAddr:port, an SNAT to its SNAT address on the service
//     link, and guard rules that count and let through its two directions;
//     every other packet toward or from a service link is dropped (TCP is
//     reset). One nftables batch replaces the previous set of translations
//     with eps, atomically.
//   - then every translated flow that no current translation accounts for
//     (its endpoint is gone, or now leads elsewhere) is revoked: its
//     conntrack entry goes and both its ends are reset (see
//     RevokeEndpointFlows).
//
// It returns the flows it revoked: their Source addresses are the SNAT
// addresses the service saw, so the caller can terminate the server's
// backends behind them. The network must exist (ErrNotFound). A translation
// whose service namespace is missing (ErrNotFound) or lacks ServiceAddr
// (ErrInvalid) is left out, as if not listed, and reported in the error;
// the others are applied all the same.
func (f *Fabric) EnsureEndpoints(network string, eps []EndpointNAT) ([]Flow, error) {
	if err := validateEndpoints(network, eps); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	router, err := f.open(f.NamespaceName(KindNetwork, network), nil)
	if errors.Is(err, ErrNotFound) && len(eps) == 0 {
		return nil, nil // nothing to translate, nothing left to revoke
	}
	if err != nil {
		return nil, fmt.Errorf("fabric: endpoints of network %s: %w", network, err)
	}
	defer router.close()
	revoked, err := f.ensureEndpoints(router, network, eps)
	if err != nil {
		err = fmt.Errorf("fabric: endpoints of network %s: %w", network, err)
	}
	return revoked, err
}

func (f *Fabric) ensureEndpoints(router *nsRef, network string, eps []EndpointNAT) ([]Flow, error) {
	names := func(fn func(EndpointNAT) bool) []string {
		var out []string
		for _, ep := range eps {
			if fn(ep) {
				out = append(out, ep.Name)
			}
		}
		return out
	}
	// No translation without the forward filter that confines it.
	if err := ensureRouterFilter(router); err != nil {
		return nil, failedAll(router.name, names(func(EndpointNAT) bool { return true }), err)
	}
	start := time.Now()
	links := endpointLinks(network, eps)
	applied, keep, linkErrs := f.ensureLinks(router, links, false)
	linked := time.Now()
	var ok []EndpointNAT
	for _, ep := range eps {
		if ep.Relay || applied[ep.Service] {
			ok = append(ok, ep)
		}
	}
	byTarget := map[netip.AddrPort]EndpointNAT{}
	for _, ep := range ok {
		for _, port := range ep.Ports {
			byTarget[netip.AddrPortFrom(ep.Endpoint, port)] = ep
		}
	}
	revoke := func(fl Flow) bool {
		ep, ok := byTarget[fl.Target]
		return !ok || fl.Service != netip.AddrPortFrom(ep.ServiceAddr, fl.Target.Port()) || fl.Source.Addr() != ep.SNAT
	}
	foreseen, _ := f.foreseeRevocations(router, revoke)
	res := f.convergeTable(router, endpointTable(network, ok))
	translated := time.Now()
	if res.changed && res.err == nil {
		f.log.Info("endpoint translations converged", "ns", router.name, "network", network, "translations", len(ok), "batches", res.batches)
	}
	// The flows of what went are cut whether or not the kernel took the
	// change: a withdrawal that failed is held closed (or said to be
	// open), and its sessions go all the same.
	acctErr := ensureFlowAccounting(router)
	revoked, revokeErr := f.revokeFlows(router, revoke, foreseen)
	revokedAt := time.Now()
	if len(revoked) > 0 {
		f.log.Info("revoked endpoint flows", "ns", router.name, "network", network, "flows", len(revoked))
	}
	// Only now that the flows are cut may SNAT addresses and routes of
	// translations that went disappear.
	var pruned []serviceLink
	for _, l := range links {
		if applied[l.service] {
			pruned = append(pruned, l)
		}
	}
	_, _, pruneErrs := f.ensureLinks(router, pruned, true)
	_, delErr := deleteServiceLinks(router, keep)
	f.log.Debug("endpoints converged", "ns", router.name, "links", linked.Sub(start), "nftables", translated.Sub(linked),
		"revocation", revokedAt.Sub(translated), "cleanup", time.Since(revokedAt))
	for _, ep := range eps {
		if !ep.Relay && !applied[ep.Service] {
			res.failed = setFailure(res.failed, ep.Name, linkErrs[ep.Service])
		}
	}
	return revoked, translationError(router.name, res, joinValues(linkErrs), acctErr, revokeErr, joinValues(pruneErrs), delErr)
}

// failedAll is the error of an Ensure in whose router nothing could be
// done: every translation named failed with err.
func failedAll(router string, names []string, err error) error {
	res := convergeResult{failed: map[string]error{}, err: err}
	for _, n := range names {
		res.failed[n] = err
	}
	return translationError(router, res)
}

func setFailure(m map[string]error, name string, err error) map[string]error {
	if m == nil {
		m = map[string]error{}
	}
	m[name] = err
	return m
}

// translationError returns what an Ensure reports for the convergence res
// of router and other errors: nil when all went well, else a
// *TranslationError.
func translationError(router string, res convergeResult, others ...error) error {
	err := errors.Join(append([]error{res.err}, others...)...)
	if err == nil && len(res.failed) == 0 {
		return nil
	}
	if err == nil {
		err = errors.Join(slices.Collect(maps.Values(res.failed))...)
	}
	return &TranslationError{Router: router, Failed: res.failed, Held: res.held, Err: err}
}

// joinValues joins a map's errors, in the order of their keys.
func joinValues(m map[string]error) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m)) {
		errs = append(errs, m[k])
	}
	return errors.Join(errs...)
}

// endpointLinks returns the service links eps need, by service, sorted.
func endpointLinks(network string, eps []EndpointNAT) []serviceLink {
	bySvc := map[string]*serviceLink{}
	for _, ep := range eps {
		if ep.Relay {
			continue
		}
		l := bySvc[ep.Service]
		if l == nil {
			l = &serviceLink{network: network, service: ep.Service, kind: ep.ServiceKind, serviceAddr: ep.ServiceAddr}
			bySvc[ep.Service] = l
		}
		l.local = append(l.local, ep.SNAT)
	}
	var out []serviceLink
	for _, svc := range slices.Sorted(maps.Keys(bySvc)) {
		out = append(out, *bySvc[svc])
	}
	return out
}

// ensureLinks converges the service links of router. Unless prune, it only
// adds: addresses and routes of the links that are there and not wanted
// stay (until flows through them are cut). It returns the services whose
// links are in place, the router-side names of the links to keep, and why
// the others are not, by service.
func (f *Fabric) ensureLinks(router *nsRef, links []serviceLink, prune bool) (applied map[string]bool, keep map[string]bool, errs map[string]error) {
	applied, keep, errs = map[string]bool{}, map[string]bool{}, map[string]error{}
	for _, l := range links {
		rName, _ := l.names()
		if !prune {
			if cur, err := linkAddrs(router, rName); err == nil {
				for _, a := range cur {
					if !slices.Contains(l.local, a) {
						l.local = append(l.local, a)
					}
				}
			}
		}
		if err := f.ensureServiceLink(router, l); err != nil {
			errs[l.service] = err
			continue
		}
		applied[l.service], keep[rName] = true, true
	}
	return applied, keep, errs
}

// linkAddrs returns the IPv4 addresses on the named link of r's namespace
// (none when there is no such link).
func linkAddrs(r *nsRef, name string) ([]netip.Addr, error) {
	l, err := linkByName(r, name)
	if err != nil || l == nil {
		return nil, err
	}
	addrs, err := addrList(r.h, l)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, addrPrefix(a).Addr())
	}
	return out, nil
}

// EnsurePublic converges the public paths of the emulated internet to
// exactly pubs (the whole desired set), creating the internet router if
// needed:
//
//   - each Public address on the router's lo, so it answers (refusing
//     what it does not translate);
//   - a service link to each service that pubs name, the router routing the
//     service's address to it, the service routing 198.18.0.0/15 back;
//     links to other services are deleted;
//   - per path, an interval set of its Allowed ranges (refilled in place
//     when they change), counters, and while Enabled a DNAT of new TCP
//     connections to Public:port (each of Ports) from a source in the set
//     toward ServiceAddr:port, without SNAT, so the service sees the client's
//     own address, and guard rules that count and let through the two
//     directions of such flows only; all in one atomic nftables batch.
//   - then every translated flow no current path allows (the path is gone
//     or disabled, or its source is no longer inside Allowed) is revoked,
//     both its ends reset.
//
// It returns the revoked flows (Source is the client's address, as the
// server saw it).
func (f *Fabric) EnsurePublic(pubs []PublicNAT) ([]Flow, error) {
	if err := validatePublic(pubs); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(pubs) == 0 {
		// Nothing to translate: an internet router that is not there has
		// nothing to revoke either.
		if _, err := os.Stat(nsPath(f.NamespaceName(KindInternet, ""))); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
	}
	inet, err := f.ensureInternet()
	if err != nil {
		return nil, err
	}
	defer inet.close()
	revoked, err := f.ensurePublic(inet, pubs)
	if err != nil {
		err = fmt.Errorf("fabric: public paths: %w", err)
	}
	return revoked, err
}

func (f *Fabric) ensurePublic(inet *nsRef, pubs []PublicNAT) ([]Flow, error) {
	bySvc := map[string]serviceLink{}
	for _, p := range pubs {
		bySvc[p.Service] = serviceLink{service: p.Service, serviceAddr: p.ServiceAddr}
	}
	var links []serviceLink
	for _, svc := range slices.Sorted(maps.Keys(bySvc)) {
		links = append(links, bySvc[svc])
	}
	applied, keep, linkErrs := f.ensureLinks(inet, links, true)
	var ok []PublicNAT
	var all []string
	var prefixes []netip.Prefix
	for _, p := range pubs {
		all = append(all, p.Name)
		if applied[p.Service] {
			ok = append(ok, p)
			prefixes = append(prefixes, netip.PrefixFrom(p.Public, 32))
		}
	}
	lo, err := linkByName(inet, "lo")
	if err == nil && lo == nil {
		err = fmt.Errorf("namespace %s: no lo", inet.name)
	}
	if err == nil {
		// New public addresses first; those that go, once their flows
		// are cut.
		err = ensureAddrs(inet, lo, prefixes, labelPublic, 0, func(netlink.Addr) bool { return false })
	}
	if err != nil {
		return nil, failedAll(inet.name, all, errors.Join(joinValues(linkErrs), err))
	}
	byTarget := map[netip.AddrPort]PublicNAT{}
	for _, p := range ok {
		for _, port := range p.Ports {
			byTarget[netip.AddrPortFrom(p.Public, port)] = p
		}
	}
	revoke := func(fl Flow) bool {
		p, ok := byTarget[fl.Target]
		return !ok || fl.Service != netip.AddrPortFrom(p.ServiceAddr, fl.Target.Port()) || fl.Source != fl.Client || !p.allows(fl.Client.Addr())
	}
	foreseen, _ := f.foreseeRevocations(inet, revoke)
	res := f.convergeTable(inet, publicTable(ok))
	if res.changed && res.err == nil {
		f.log.Info("public paths converged", "ns", inet.name, "paths", len(ok), "batches", res.batches)
	}
	// As for endpoints: the flows of what went are cut in any case.
	acctErr := ensureFlowAccounting(inet)
	revoked, revokeErr := f.revokeFlows(inet, revoke, foreseen)
	if len(revoked) > 0 {
		f.log.Info("revoked public flows", "ns", inet.name, "flows", len(revoked))
	}
	pruneErr := ensureAddrs(inet, lo, prefixes, labelPublic, 0, func(a netlink.Addr) bool { return a.Label == labelPublic })
	_, delErr := deleteServiceLinks(inet, keep)
	for _, p := range pubs {
		if !applied[p.Service] {
			res.failed = setFailure(res.failed, p.Name, linkErrs[p.Service])
		}
	}
	return revoked, translationError(inet.name, res, joinValues(linkErrs), acctErr, revokeErr, pruneErr, delErr)
}

// RevokeEndpointFlows cuts every flow of the network's router whose client
// connected to target (an endpoint's address and port), whatever the
// translations: their conntrack entries go, and both ends of each are reset
// (the client's at once if it waits in a read, or at its next packet; the
// service's the same way). While the endpoint's translation stays, new
// connections are translated as before. It returns the flows it cut.
func (f *Fabric) RevokeEndpointFlows(network string, target netip.AddrPort) ([]Flow, error) {
	if err := checkID("network", network); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	router, err := f.open(f.NamespaceName(KindNetwork, network), nil)
	if err != nil {
		return nil, fmt.Errorf("fabric: revoke flows of %s in network %s: %w", target, network, err)
	}
	defer router.close()
	revoked, err := f.revokeFlows(router, func(fl Flow) bool { return fl.Target == target }, nil)
	if err != nil {
		err = fmt.Errorf("fabric: revoke flows of %s in network %s: %w", target, network, err)
	}
	return revoked, err
}

// RevokePublicFlows cuts every flow of the internet router toward target (a
// public address and port) whose client address revoke reports true for
// (nil: all of them); see RevokeEndpointFlows.
func (f *Fabric) RevokePublicFlows(target netip.AddrPort, revoke func(client netip.Addr) bool) ([]Flow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	inet, err := f.open(f.NamespaceName(KindInternet, ""), nil)
	if err != nil {
		return nil, fmt.Errorf("fabric: revoke public flows of %s: %w", target, err)
	}
	defer inet.close()
	revoked, err := f.revokeFlows(inet, func(fl Flow) bool {
		return fl.Target == target && (revoke == nil || revoke(fl.Client.Addr()))
	}, nil)
	if err != nil {
		err = fmt.Errorf("fabric: revoke public flows of %s: %w", target, err)
	}
	return revoked, err
}

// EndpointCounters returns the counters of the network's endpoint
// translations, by EndpointNAT.Name. Counters live as long as their
// translation: they start from zero when it appears.
func (f *Fabric) EndpointCounters(network string) (map[string]Counters, error) {
	if err := checkID("network", network); err != nil {
		return nil, err
	}
	router, err := f.open(f.NamespaceName(KindNetwork, network), nil)
	if err != nil {
		return nil, fmt.Errorf("fabric: counters of network %s: %w", network, err)
	}
	defer router.close()
	out, err := counters(router, endpointObjPrefix)
	if err != nil {
		return nil, fmt.Errorf("fabric: counters of network %s: %w", network, err)
	}
	return out, nil
}

// PublicCounters returns the counters of the public paths, by
// PublicNAT.Name (see EndpointCounters).
func (f *Fabric) PublicCounters() (map[string]Counters, error) {
	inet, err := f.open(f.NamespaceName(KindInternet, ""), nil)
	if errors.Is(err, ErrNotFound) {
		return map[string]Counters{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fabric: public counters: %w", err)
	}
	defer inet.close()
	out, err := counters(inet, publicObjPrefix)
	if err != nil {
		return nil, fmt.Errorf("fabric: public counters: %w", err)
	}
	return out, nil
}

// counters reads the counters of r's translations whose objects start
// with prefix, and adds the active flows of each.
func counters(r *nsRef, prefix string) (map[string]Counters, error) {
	out, names, err := readCounters(r, prefix)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return out, nil
	}
	flows, err := listFlows(r)
	if err != nil {
		return nil, err
	}
	for _, fl := range flows {
		name, ok := names[fl.Target]
		if !ok || !fl.active() {
			continue
		}
		if c, ok := out[name]; ok {
			c.Active++
			out[name] = c
		}
	}
	return out, nil
}

// EndpointRefusals returns how many connections the network's router
// refused, by destination address, since its data path table appeared:
// connection attempts to its own addresses (an endpoint without a
// translation, a port no translation serves) but the DNS address, and
// toward services outside every translation (a service's internal
// address). Keys that are not endpoint addresses (a subnet's gateway, a
// service address) are refusals all the same.
func (f *Fabric) EndpointRefusals(network string) (map[netip.Addr]uint64, error) {
	if err := checkID("network", network); err != nil {
		return nil, err
	}
	router, err := f.open(f.NamespaceName(KindNetwork, network), nil)
	if err != nil {
		return nil, fmt.Errorf("fabric: refusals of network %s: %w", network, err)
	}
	defer router.close()
	out, err := readRefused(router, endpointObjPrefix)
	if err != nil {
		return nil, fmt.Errorf("fabric: refusals of network %s: %w", network, err)
	}
	return out, nil
}

// PublicRefusals returns how many connections the internet router refused,
// by destination address: to a public address from a source outside its
// path's firewall set or while the path is disabled, to a port the path
// does not translate, and toward services directly (see EndpointRefusals).
func (f *Fabric) PublicRefusals() (map[netip.Addr]uint64, error) {
	inet, err := f.open(f.NamespaceName(KindInternet, ""), nil)
	if errors.Is(err, ErrNotFound) {
		return map[netip.Addr]uint64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fabric: public refusals: %w", err)
	}
	defer inet.close()
	out, err := readRefused(inet, publicObjPrefix)
	if err != nil {
		return nil, fmt.Errorf("fabric: public refusals: %w", err)
	}
	return out, nil
}
