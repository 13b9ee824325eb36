// Package datapath computes what the kernel's data path should hold from
// the store, and keeps what was programmed.
//
// A Planner reads the store into a Desired data path: one NetworkRouter
// per virtual network (its private endpoints' translations toward
// flexible servers) and the InternetRouter (every server's public path,
// with its firewall rules), each endpoint's SNAT address allocated and
// kept under dp/snat/. The data path controller (internal/controller)
// hands each router that changed to the fabric, then publishes the
// Desired's Snapshot and the endpoints' Reports, given the fabric's
// errors, through an Observed, which telemetry and the controllers that
// wait for a translation read.
//
// What the data path reads of the store (Watches) and what it makes of
// it live here; the kernel only in internal/fabric, the loop in
// internal/controller. Further translations and filters of a router
// (network policies, peerings, private link services) are further parts
// of its router's Desired state.
package datapath

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/names"
	"github.com/privlink/privlink/internal/provider/network"
	"github.com/privlink/privlink/internal/provider/postgres"
	"github.com/privlink/privlink/internal/provider/privatelink"
	"github.com/privlink/privlink/internal/store"
)

// pgPort is PostgreSQL's port, on both sides of every translation;
// bouncerPort the built-in PgBouncer's, translated too while the server's
// pgbouncer.enabled is true.
const (
	pgPort      = 5432
	bouncerPort = 6432
)

// ports returns the ports a server's translations carry.
func (s *Server) ports() []uint16 {
	if s.desired.PgBouncerEnabled() {
		return []uint16{pgPort, bouncerPort}
	}
	return []uint16{pgPort}
}

// Prefixes are the store prefixes the data path reads.
var Prefixes = []string{"arm/", postgres.DesiredPrefix + "/"}

// Watches reports whether a change of the store key may change the
// Desired data path.
func Watches(key string) bool {
	if strings.HasPrefix(key, postgres.DesiredPrefix) {
		return true
	}
	id, ok := arm.ParseDocKey(key)
	if !ok {
		return false
	}
	switch strings.ToLower(id.Type()) {
	case "microsoft.network/privateendpoints", "microsoft.network/networkinterfaces", "microsoft.network/virtualnetworks",
		"microsoft.dbforpostgresql/flexibleservers", "microsoft.dbforpostgresql/flexibleservers/firewallrules",
		"microsoft.dbforpostgresql/flexibleservers/privateendpointconnections",
		"microsoft.network/privatelinkservices", "microsoft.network/privatelinkservices/privateendpointconnections",
		"microsoft.network/loadbalancers":
		return true
	}
	return false
}

// Planner computes the Desired data path from the store. It remembers the
// documents it decoded (by key and revision, see arm.Memo): a pass reads
// every endpoint and its NIC, and decodes only what changed. It is not
// safe for concurrent use.
type Planner struct {
	st   store.Store
	pes  *arm.Memo[network.EndpointFacts]
	nics *arm.Memo[network.NICFacts]
}

// NewPlanner returns a Planner over st.
func NewPlanner(st store.Store) *Planner {
	return &Planner{st: st, pes: arm.NewMemo(network.EndpointFactsOf), nics: arm.NewMemo(network.NICFactsOf)}
}

// Desired is the data path the store asks for.
type Desired struct {
	// Networks holds every virtual network's router, by the network's
	// fabric ID.
	Networks map[string]*NetworkRouter
	// Internet is the emulated internet's router.
	Internet InternetRouter
	// Services holds every private link service's NAT NIC, by the NIC's
	// fabric ID.
	Services map[string]*ServiceNIC
	// Relays are the PROXY protocol relay routes of the endpoints to
	// private link services with enableProxyProtocol, sorted by name.
	Relays []Relay
	// Snapshot describes every path, for Observed.
	Snapshot Snapshot

	servers map[netip.Addr]*Server // by service address
	// What Reports needs: every endpoint document read (revs, by
	// lower-cased ID), those that lead to a flexible server (infos), and
	// those of them that want a translation (eps).
	revs  map[string]int64
	infos []peInfo
	eps   []endpoint
}

// NetworkRouter is what a virtual network's router should hold.
type NetworkRouter struct {
	// ID is the virtual network's ARM ID.
	ID arm.ResourceID
	// Endpoints are the translations of its private endpoints whose
	// connections are Approved to running servers.
	Endpoints []fabric.EndpointNAT
}

// Fingerprint is equal for two NetworkRouters that hold the same: a
// router converged to one fingerprint need not converge again until it
// changes (or drift is to be healed).
func (r *NetworkRouter) Fingerprint() string { return fmt.Sprintf("%v", r.Endpoints) }

// Waiting reports whether err, from converging the router, says only
// that a namespace it needs (the router's own, a server's) is not there
// yet: its endpoints are pending, not failed.
func (r *NetworkRouter) Waiting(err error) bool {
	var te *fabric.TranslationError
	if errors.As(err, &te) {
		return onlyPending(te)
	}
	return allNotFound(err)
}

// InternetRouter is what the emulated internet's router should hold.
type InternetRouter struct {
	// Public are every existing server's public path, sorted by name:
	// each translates, from the sources of the server's firewall rules,
	// while the server's public network access is enabled and it runs.
	Public []fabric.PublicNAT
}

// Fingerprint is as NetworkRouter's.
func (r *InternetRouter) Fingerprint() string { return fmt.Sprintf("%v", r.Public) }

// Waiting reports whether err, from converging the router, says only
// that a server's namespace is not there yet. (The internet router itself
// is there from the network controller's start.)
func (r *InternetRouter) Waiting(err error) bool {
	var te *fabric.TranslationError
	return errors.As(err, &te) && onlyPending(te)
}

// Server is a flexible server the data path leads to.
type Server struct {
	ID arm.ResourceID
	// Fabric is its fabric ID (its service namespace's).
	Fabric string
	// Name is its name as created.
	Name string

	desired postgres.Desired
}

// ServerAt returns the server whose service address is addr, nil when
// there is none: whose backends a revoked flow toward addr reached.
func (d *Desired) ServerAt(addr netip.Addr) *Server { return d.servers[addr] }

// endpoint is an Approved private endpoint to a running server or to a
// private link service that exposes ports.
type endpoint struct {
	id      arm.ResourceID
	network arm.ResourceID
	addr    netip.Addr
	server  *Server      // nil for a private link service's
	service *linkService // nil for a server's
}

// peInfo is what the data path knows of any private endpoint to a
// flexible server, approved or not.
type peInfo struct {
	id, network, target arm.ResourceID
	addr                netip.Addr
	approved            bool
}

// Desired reads the store into the Desired data path. It allocates the
// SNAT addresses of the endpoints that want a translation and frees
// those of the others, in a transaction of its own (see allocateSNAT).
func (p *Planner) Desired(ctx context.Context) (*Desired, error) {
	rd := arm.ReadOnly(ctx, p.st)
	servers, err := p.servers(ctx, rd)
	if err != nil {
		return nil, err
	}
	kvs, _, err := p.st.List(ctx, "arm/")
	if err != nil {
		return nil, err
	}
	d := &Desired{Networks: map[string]*NetworkRouter{}, Services: map[string]*ServiceNIC{}, servers: map[netip.Addr]*Server{}, revs: map[string]int64{}}
	services, err := p.linkServices(rd, kvs)
	if err != nil {
		return nil, err
	}
	connNames := map[string]string{} // target-side connection names, by lower endpoint ID
	linkIDs := map[string]uint32{}   // link identifiers, by lower endpoint ID
	for _, kv := range kvs {
		id, ok := arm.ParseDocKey(kv.Key)
		if !ok {
			continue
		}
		switch strings.ToLower(id.Type()) {
		case "microsoft.network/virtualnetworks":
			d.Networks[names.Key(id)] = &NetworkRouter{ID: id}
		case "microsoft.network/privateendpoints":
			d.revs[strings.ToLower(id.String())] = kv.Revision
			info, ok := p.parseEndpoint(rd, kv)
			if !ok {
				continue
			}
			d.infos = append(d.infos, info)
			target := strings.ToLower(info.target.String())
			if srv := servers[target]; info.approved && srv != nil && srv.desired.Running {
				d.eps = append(d.eps, endpoint{id: info.id, network: info.network, addr: info.addr, server: srv})
			}
			if svc := services[target]; info.approved && svc != nil && len(svc.facts.Ports) > 0 {
				d.eps = append(d.eps, endpoint{id: info.id, network: info.network, addr: info.addr, service: svc})
			}
		case "microsoft.dbforpostgresql/flexibleservers/privateendpointconnections",
			"microsoft.network/privatelinkservices/privateendpointconnections":
			if name, pe, ok := privatelink.ConnectionEndpoint(kv); ok {
				connNames[strings.ToLower(pe)] = name
			}
			if pe, link, ok := privatelink.ConnectionLinkIdentifier(kv); ok {
				linkIDs[strings.ToLower(pe)] = link
			}
		}
	}
	snats, err := allocateSNAT(ctx, p.st, d.snatHolders(services))
	if err != nil {
		return nil, err
	}
	d.addServices(services, snats)
	for _, s := range servers {
		d.servers[s.desired.ServiceAddr] = s
	}
	for _, ep := range d.eps {
		if r := d.Networks[names.Key(ep.network)]; r != nil {
			r.Endpoints = append(r.Endpoints, ep.translation(snats))
			d.Relays = append(d.Relays, ep.relays(linkIDs)...)
		}
	}
	slices.SortFunc(d.Relays, func(a, b Relay) int { return strings.Compare(a.Name, b.Name) })
	var pubInfos []TranslationInfo
	for _, s := range servers {
		ranges, err := postgres.FirewallRanges(rd, s.ID)
		if err != nil {
			return nil, err
		}
		pn := fabric.PublicNAT{Name: s.Fabric, Public: s.desired.PublicAddr, Ports: s.ports(), Service: s.Fabric,
			ServiceAddr: s.desired.ServiceAddr, Enabled: s.desired.PublicNetworkAccess && s.desired.Running}
		info := TranslationInfo{Kind: KindPublic, Name: s.Fabric, Programmed: true, Enabled: pn.Enabled,
			ServerID: s.ID.String(), ServerName: s.Name, Addr: pn.Public, Port: pgPort}
		for _, r := range ranges {
			pn.Allowed = append(pn.Allowed, fabric.AddrRange{From: r.Start, To: r.End})
			info.FirewallRules = append(info.FirewallRules, FirewallRule{Name: r.Name, Start: r.Start, End: r.End})
		}
		d.Internet.Public = append(d.Internet.Public, pn)
		pubInfos = append(pubInfos, info)
	}
	slices.SortFunc(d.Internet.Public, func(a, b fabric.PublicNAT) int { return strings.Compare(a.Name, b.Name) })
	d.Snapshot = snapshotOf(d.Networks, d.infos, d.eps, snats, servers, services, connNames, pubInfos)
	return d, nil
}

// Reports tells, for every endpoint document the Desired was computed
// from, what converging its routers did with it; results holds the error
// of each network's router converged (nil: all in place), by fabric ID.
// A router not in results is as it last converged, which succeeded.
func (d *Desired) Reports(results map[string]error) Reports {
	return endpointStatuses(d.revs, d.infos, d.eps, d.Networks, results)
}

// onlyPending reports whether every translation te names failed for want
// of a namespace (a server's, not there yet) and nothing else failed.
func onlyPending(te *fabric.TranslationError) bool {
	if len(te.Failed) == 0 || len(te.Held) > 0 {
		return false
	}
	for _, err := range te.Failed {
		if !allNotFound(err) {
			return false
		}
	}
	return allNotFound(te.Err)
}

// allNotFound reports whether err is fabric.ErrNotFound, or joins errors
// that all are: errors.Is alone would take a join of a missing namespace
// and a failed revocation for the former.
func allNotFound(err error) bool {
	for err != nil {
		if err == fabric.ErrNotFound {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			errs := u.Unwrap()
			return len(errs) > 0 && !slices.ContainsFunc(errs, func(e error) bool { return !allNotFound(e) })
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		default:
			return false
		}
	}
	return false
}

// endpointStatuses tells, for every endpoint document a pass read (revs),
// what the pass did with it: eps want a translation; results are the
// errors of the networks' routers converged in the pass.
func endpointStatuses(revs map[string]int64, infos []peInfo, eps []endpoint, networks map[string]*NetworkRouter, results map[string]error) Reports {
	wants := map[string]bool{}
	for _, ep := range eps {
		wants[strings.ToLower(ep.id.String())] = true
	}
	netOf := map[string]string{}  // endpoint key → its network's fabric ID
	nameOf := map[string]string{} // endpoint key → its translation's name
	for _, pe := range infos {
		key := strings.ToLower(pe.id.String())
		netOf[key] = names.Key(pe.network)
		nameOf[key] = names.Key(pe.id)
	}
	out := make(Reports, len(revs))
	for key, rev := range revs {
		st := EndpointReport{Rev: rev, State: EndpointInPlace}
		nid, known := netOf[key]
		_, exists := networks[nid]
		err, converged := results[nid]
		switch {
		case !known || (!wants[key] && !converged):
			// Nothing to program, or nothing changed where it was.
		case !exists:
			st.State = EndpointPending // its network is not there (yet)
		case converged && err != nil:
			st.State, st.Err = endpointResult(nameOf[key], wants[key], err)
		}
		out[key] = st
	}
	return out
}

// endpointResult is the state of the translation named name (wanted or
// not) after its router's Ensure failed with err.
func endpointResult(name string, wanted bool, err error) (EndpointState, error) {
	var te *fabric.TranslationError
	if errors.As(err, &te) {
		if e, ok := te.Failed[name]; ok {
			err = e
		} else {
			return EndpointInPlace, nil // as asked, or withdrawn and held closed
		}
	} else if !wanted {
		return EndpointInPlace, nil // no router: nothing to withdraw
	}
	if allNotFound(err) {
		return EndpointPending, nil
	}
	return EndpointFailed, err
}

// snapshotOf assembles the snapshot of one pass, sorted so that equal
// passes give equal snapshots.
func snapshotOf(networks map[string]*NetworkRouter, infos []peInfo, eps []endpoint, snats map[string]netip.Addr,
	servers map[string]*Server, services map[string]*linkService, connNames map[string]string, pubs []TranslationInfo) Snapshot {
	var s Snapshot
	for fid, r := range networks {
		s.Networks = append(s.Networks, NetworkRef{Fabric: fid, ID: r.ID.String()})
	}
	slices.SortFunc(s.Networks, func(a, b NetworkRef) int { return strings.Compare(a.Fabric, b.Fabric) })
	programmed := map[string]bool{}
	for _, ep := range eps {
		programmed[strings.ToLower(ep.id.String())] = true
	}
	for _, pe := range infos {
		key := strings.ToLower(pe.id.String())
		t := TranslationInfo{Kind: KindEndpoint, Name: names.Key(pe.id), Programmed: programmed[key],
			Network: names.Key(pe.network), NetworkID: pe.network.String(), EndpointID: pe.id.String(),
			Connection: connNames[key], ServerID: pe.target.String(), ServerName: pe.target.Name(), Addr: pe.addr, Port: pgPort}
		if srv := servers[strings.ToLower(pe.target.String())]; srv != nil {
			t.ServerID, t.ServerName = srv.ID.String(), srv.Name
		}
		if svc := services[strings.ToLower(pe.target.String())]; svc != nil {
			t.ServerID, t.ServerName = svc.facts.ID.String(), svc.facts.ID.Name()
			if len(svc.facts.Ports) > 0 {
				t.Port = svc.facts.Ports[0].Port
			}
		}
		if t.Programmed {
			t.SNAT = snats[key]
		}
		s.Translations = append(s.Translations, t)
	}
	s.Translations = append(s.Translations, pubs...)
	slices.SortFunc(s.Translations, func(a, b TranslationInfo) int {
		return strings.Compare(a.Kind+"/"+a.Name, b.Kind+"/"+b.Name)
	})
	return s
}

// servers returns the servers that exist (ARM document and Desired
// record), by lower-cased ID.
func (p *Planner) servers(ctx context.Context, rd arm.Reader) (map[string]*Server, error) {
	kvs, _, err := p.st.List(ctx, postgres.DesiredPrefix+"/")
	if err != nil {
		return nil, err
	}
	out := map[string]*Server{}
	for _, kv := range kvs {
		var des postgres.Desired
		if json.Unmarshal(kv.Value, &des) != nil {
			continue
		}
		id, err := arm.ParseID(des.ID)
		if err != nil {
			continue
		}
		if ok, err := arm.Exists(rd, id); err != nil || !ok {
			continue // being deleted
		}
		out[strings.ToLower(id.String())] = &Server{ID: id, Fabric: names.Key(id), Name: des.Name, desired: des}
	}
	return out, nil
}

// parseEndpoint reads a private endpoint document: its network, address
// (from its NIC) and target, and whether its connection is Approved. Only
// an Approved endpoint to a flexible server that runs gets a translation.
func (p *Planner) parseEndpoint(rd arm.Reader, kv store.KV) (peInfo, bool) {
	pe := p.pes.Of(kv)
	if pe.Err != nil || !pe.HasSubnet || !pe.HasTarget || !pe.HasNIC ||
		(!strings.EqualFold(pe.Target.Type(), postgres.Kind.Type) && !strings.EqualFold(pe.Target.Type(), network.ServiceKind.Type)) {
		return peInfo{}, false
	}
	nkv, err := rd.Get(arm.DocKey(pe.NIC))
	if err != nil {
		return peInfo{}, false
	}
	nic := p.nics.Of(nkv)
	if !nic.Primary {
		return peInfo{}, false
	}
	return peInfo{id: pe.ID, network: pe.Subnet.Parent(), target: pe.Target, addr: nic.Addr, approved: pe.Approved()}, true
}
