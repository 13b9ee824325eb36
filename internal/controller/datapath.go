package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/pgserver"
	"github.com/privlink/privlink/internal/provider/postgres"
	"github.com/privlink/privlink/internal/store"
)

// Datapath programs the kernel's translations toward PostgreSQL servers:
// one per private endpoint whose connection is Approved (in its network's
// router), and one public path per server (in the internet router) that
// lets through only the sources of its firewall rules while public access
// is enabled. When a path is withdrawn, its flows are cut (the fabric
// resets both ends) and the server's backends behind them terminated.
type Datapath struct {
	st   store.Store
	fab  *fabric.Fabric
	pg   *pgserver.Manager
	log  *slog.Logger
	loop *Loop
	// Decoded documents, by key and revision: a pass looks at every
	// endpoint and its NIC.
	pes  *arm.Memo[peDoc]
	nics *arm.Memo[nicFacts]
	// converged holds, by network fabric ID, the translations each router
	// last converged to (fmt %v); only the loop's goroutine uses it.
	converged map[string]string
	// convergedPublic is what the internet router last converged to
	// (fmt %v of the public paths), "" when unknown; only the loop's
	// goroutine uses it.
	convergedPublic string
	// failedPasses counts the passes in a row in which the kernel refused
	// a change (for the back-off); only the loop's goroutine uses it.
	failedPasses int

	// snap is what the last reconcile programmed (see Snapshot).
	snap atomic.Pointer[published]
}

// Kinds of translations (TranslationInfo.Kind).
const (
	KindEndpoint = "endpoint"
	KindPublic   = "public"
)

// TranslationInfo describes one path of the data path as the controller
// last programmed it: a private endpoint to a flexible server (with or
// without a translation), or a server's public path.
type TranslationInfo struct {
	// Kind is KindEndpoint or KindPublic.
	Kind string
	// Name is the translation's name in the fabric (fabric.EndpointNAT.Name
	// or fabric.PublicNAT.Name): FabricID of the endpoint or the server.
	// The fabric's counters are by this name.
	Name string
	// Programmed tells whether the fabric was asked for the translation:
	// an endpoint whose connection is Approved to a running server; every
	// existing server's public path (which translates only while Enabled).
	Programmed bool
	// Enabled, for a public path: public network access is enabled and
	// the server runs.
	Enabled bool
	// Network and NetworkID are the endpoint's virtual network: its fabric
	// ID and its ARM ID (empty for a public path).
	Network, NetworkID string
	// EndpointID is the private endpoint's ARM ID, and Connection the
	// name of its private endpoint connection on the server (empty for a
	// public path, or when the server has no connection for it).
	EndpointID, Connection string
	// ServerID and ServerName name the flexible server the path leads to.
	ServerID, ServerName string
	// Addr is where clients connect: the endpoint's private address in
	// its network, or the server's public address; Port is the port.
	Addr netip.Addr
	Port uint16
	// SNAT is the address the server sees for an endpoint's connections
	// (while Programmed).
	SNAT netip.Addr
	// FirewallRules are a public path's firewall rules.
	FirewallRules []FirewallRule
}

// FirewallRule is a server's firewall rule: its name and address range.
type FirewallRule struct {
	Name       string
	Start, End netip.Addr
}

// NetworkRef names a virtual network by its fabric ID and its ARM ID.
type NetworkRef struct {
	Fabric, ID string
}

// DatapathSnapshot is what the data path controller programmed in its
// last pass. It is immutable: do not modify its slices.
type DatapathSnapshot struct {
	// Networks are the virtual networks that exist, with or without
	// endpoints.
	Networks []NetworkRef
	// Translations are every endpoint (to a flexible server) and every
	// server's public path.
	Translations []TranslationInfo
}

type published struct {
	snap    DatapathSnapshot
	changed chan struct{}
	// status holds, by lower-cased endpoint ID, what the pass did with the
	// revision of the endpoint's document it read.
	status map[string]endpointStatus
}

// EndpointState is what the data path did with a revision of a private
// endpoint's document.
type EndpointState int

// The states of an endpoint's document in the data path.
const (
	// EndpointPending: the data path has not processed that revision yet,
	// or the translation it wants waits for something that is not there
	// yet (its network's router, its server's namespace).
	EndpointPending EndpointState = iota
	// EndpointInPlace: what the document asks for holds in the kernel: its
	// translation is in place (Approved, to a running server), or it wants
	// none and has none (a withdrawn one is gone, or held closed while its
	// removal is retried).
	EndpointInPlace
	// EndpointFailed: programming its translation failed (the error says
	// how); the data path retries with back-off.
	EndpointFailed
)

func (s EndpointState) String() string {
	switch s {
	case EndpointInPlace:
		return "in place"
	case EndpointFailed:
		return "failed"
	}
	return "pending"
}

// endpointStatus is what one pass did with one endpoint's document.
type endpointStatus struct {
	rev   int64
	state EndpointState
	err   error
}

func (a endpointStatus) equal(b endpointStatus) bool {
	return a.rev == b.rev && a.state == b.state && fmt.Sprint(a.err) == fmt.Sprint(b.err)
}

// Snapshot returns what the controller programmed in its last pass, and a
// channel closed once a pass publishes a different snapshot, or the same
// with other endpoint statuses (see EndpointStatus). It is safe for
// concurrent use.
func (d *Datapath) Snapshot() (DatapathSnapshot, <-chan struct{}) {
	p := d.snap.Load()
	return p.snap, p.changed
}

// Translations returns a copy of the translations of the current snapshot
// (see Snapshot).
func (d *Datapath) Translations() []TranslationInfo {
	return slices.Clone(d.snap.Load().snap.Translations)
}

// publish makes s the current snapshot and status the endpoints'
// statuses, waking Snapshot's waiters if either differs from the last one.
func (d *Datapath) publish(s DatapathSnapshot, status map[string]endpointStatus) {
	old := d.snap.Load()
	if reflect.DeepEqual(old.snap, s) && maps.EqualFunc(old.status, status, endpointStatus.equal) {
		return
	}
	d.snap.Store(&published{snap: s, changed: make(chan struct{}), status: status})
	close(old.changed)
}

// EndpointStatus tells what the controller's last pass did with revision
// rev (or a later one) of the document of private endpoint id: whether
// what it asks for is in place, failed (with the error), or pending (the
// pass read an older revision, or waits for something). It is safe for
// concurrent use.
func (d *Datapath) EndpointStatus(id string, rev int64) (EndpointState, error) {
	st, ok := d.snap.Load().status[strings.ToLower(id)]
	if !ok || st.rev < rev {
		return EndpointPending, nil
	}
	return st.state, st.err
}

// snatPrefix holds endpoint SNAT addresses: the address a server sees for
// an endpoint's connections. Service addresses come from below it.
var snatPrefix = netip.MustParsePrefix("169.254.192.0/18")

// snatKey records an endpoint's SNAT address: dp/snat/{lower endpoint ID}.
const snatKey = "dp/snat"

// pgPort is PostgreSQL's port, on both sides of every translation.
const pgPort = 5432

// NewDatapath returns the controller.
func NewDatapath(st store.Store, fab *fabric.Fabric, pg *pgserver.Manager, log *slog.Logger) *Datapath {
	d := &Datapath{st: st, fab: fab, pg: pg, log: log, pes: arm.NewMemo(decodeEndpoint), nics: arm.NewMemo(decodeNIC),
		converged: map[string]string{}}
	d.loop = &Loop{Name: "datapath", Prefixes: []string{"arm/", postgres.DesiredPrefix + "/"}, Items: d.items,
		Resync: func(context.Context) ([]string, error) { return []string{itemDatapathResync}, nil }, ResyncEvery: 30 * time.Second,
		Reconcile: d.reconcile, Store: st, Log: log}
	d.snap.Store(&published{changed: make(chan struct{})})
	return d
}

// Run reconciles until ctx ends. Translations stay in the kernel after it
// returns: established sessions outlive privlinkd.
func (d *Datapath) Run(ctx context.Context) error { return d.loop.Run(ctx) }

// One item: the whole data path is computed in one pass and each router
// converges in one nftables batch. A pass converges only the routers
// (networks' and the internet's) whose translations changed since they
// last converged; the resync item, every 30 s, converges every router,
// which heals drift (a router rebuilt by the network controller, a
// ruleset changed by hand).
const (
	itemDatapath       = "datapath"
	itemDatapathResync = "datapath/resync"
)

func (d *Datapath) items(key string, _ []byte) []string {
	if strings.HasPrefix(key, postgres.DesiredPrefix) {
		return []string{itemDatapath}
	}
	id, ok := arm.ParseDocKey(key)
	if !ok {
		return nil
	}
	switch strings.ToLower(id.Type()) {
	case "microsoft.network/privateendpoints", "microsoft.network/networkinterfaces", "microsoft.network/virtualnetworks",
		"microsoft.dbforpostgresql/flexibleservers", "microsoft.dbforpostgresql/flexibleservers/firewallrules",
		"microsoft.dbforpostgresql/flexibleservers/privateendpointconnections":
		return []string{itemDatapath}
	}
	return nil
}

// server is what the data path needs of a flexible server.
type server struct {
	id      arm.ResourceID
	fid     string
	desired postgres.Desired
}

// endpoint is an Approved private endpoint to a running server.
type endpoint struct {
	id      arm.ResourceID
	network arm.ResourceID
	addr    netip.Addr
	server  *server
}

// peInfo is what the data path knows of any private endpoint to a
// flexible server, approved or not.
type peInfo struct {
	id, network, target arm.ResourceID
	addr                netip.Addr
	approved            bool
}

func (d *Datapath) reconcile(ctx context.Context, item string) (time.Duration, error) {
	rd := arm.ReadOnly(ctx, d.st)
	servers, err := d.servers(ctx, rd)
	if err != nil {
		return 0, err
	}
	kvs, _, err := d.st.List(ctx, "arm/")
	if err != nil {
		return 0, err
	}
	networks := map[string]arm.ResourceID{} // every virtual network, by fabric ID
	var eps []endpoint
	var infos []peInfo
	connNames := map[string]string{} // server-side connection names, by lower endpoint ID
	// revs: the revision of every endpoint document this pass read, by
	// lower-cased ID, whether it asks for a translation or not.
	revs := map[string]int64{}
	for _, kv := range kvs {
		id, ok := arm.ParseDocKey(kv.Key)
		if !ok {
			continue
		}
		switch strings.ToLower(id.Type()) {
		case "microsoft.network/virtualnetworks":
			networks[FabricID(id)] = id
		case "microsoft.network/privateendpoints":
			revs[strings.ToLower(id.String())] = kv.Revision
			info, ok := d.parseEndpoint(rd, kv)
			if !ok {
				continue
			}
			infos = append(infos, info)
			if srv := servers[strings.ToLower(info.target.String())]; info.approved && srv != nil && srv.desired.Running {
				eps = append(eps, endpoint{id: info.id, network: info.network, addr: info.addr, server: srv})
			}
		case "microsoft.dbforpostgresql/flexibleservers/privateendpointconnections":
			var c struct {
				Name       string `json:"name"`
				Properties struct {
					PrivateEndpoint struct {
						ID string `json:"id"`
					} `json:"privateEndpoint"`
				} `json:"properties"`
			}
			if json.Unmarshal(kv.Value, &c) == nil && c.Properties.PrivateEndpoint.ID != "" {
				connNames[strings.ToLower(c.Properties.PrivateEndpoint.ID)] = c.Name
			}
		}
	}
	snats, err := d.allocateSNAT(ctx, eps)
	if err != nil {
		return 0, err
	}
	byService := map[netip.Addr]*server{}
	for _, s := range servers {
		byService[s.desired.ServiceAddr] = s
	}
	var failures []error
	var pendings []error // what waits for a namespace
	byNetwork := map[string][]fabric.EndpointNAT{}
	for _, ep := range eps {
		nid := FabricID(ep.network)
		byNetwork[nid] = append(byNetwork[nid], fabric.EndpointNAT{
			Name: FabricID(ep.id), Endpoint: ep.addr, Port: pgPort,
			Service: ep.server.fid, ServiceAddr: ep.server.desired.ServiceAddr, SNAT: snats[strings.ToLower(ep.id.String())],
		})
	}
	for nid := range d.converged {
		if _, ok := networks[nid]; !ok {
			delete(d.converged, nid)
		}
	}
	// results holds the error of each network's router converged this
	// pass (nil: all in place); networks not converged this pass are as
	// they last converged, which succeeded.
	results := map[string]error{}
	for nid := range networks {
		want := fmt.Sprintf("%v", byNetwork[nid])
		if cur, ok := d.converged[nid]; ok && cur == want && item != itemDatapathResync {
			continue
		}
		delete(d.converged, nid)
		revoked, err := d.fab.EnsureEndpoints(nid, byNetwork[nid])
		results[nid] = err
		var te *fabric.TranslationError
		switch {
		case err == nil:
			d.converged[nid] = want
		case allNotFound(err) && !errors.As(err, &te), errors.As(err, &te) && onlyPending(te):
			// The network's router or a server's namespace is not
			// there yet.
			pendings = append(pendings, fmt.Errorf("network %s: %w", networks[nid], err))
		default:
			failures = append(failures, fmt.Errorf("network %s: %w", networks[nid], err))
		}
		d.terminate(ctx, revoked, byService)
	}
	var pubs []fabric.PublicNAT
	var pubInfos []TranslationInfo
	for _, s := range servers {
		ranges, err := postgres.FirewallRanges(rd, s.id)
		if err != nil {
			return 0, err
		}
		p := fabric.PublicNAT{Name: s.fid, Public: s.desired.PublicAddr, Port: pgPort, Service: s.fid,
			ServiceAddr: s.desired.ServiceAddr, Enabled: s.desired.PublicNetworkAccess && s.desired.Running}
		info := TranslationInfo{Kind: KindPublic, Name: s.fid, Programmed: true, Enabled: p.Enabled,
			ServerID: s.id.String(), ServerName: s.desired.Name, Addr: p.Public, Port: pgPort}
		for _, r := range ranges {
			p.Allowed = append(p.Allowed, fabric.AddrRange{From: r.Start, To: r.End})
			info.FirewallRules = append(info.FirewallRules, FirewallRule{Name: r.Name, Start: r.Start, End: r.End})
		}
		pubs = append(pubs, p)
		pubInfos = append(pubInfos, info)
	}
	// As routers: only a change converges the internet router (each
	// pass would otherwise check every server's link and dump its
	// conntrack table, under the fabric's lock), and the resync all.
	slices.SortFunc(pubs, func(a, b fabric.PublicNAT) int { return strings.Compare(a.Name, b.Name) })
	if want := fmt.Sprintf("%v", pubs); want != d.convergedPublic || item == itemDatapathResync {
		d.convergedPublic = ""
		revoked, err := d.fab.EnsurePublic(pubs)
		var te *fabric.TranslationError
		switch {
		case err == nil:
			d.convergedPublic = want
		case errors.As(err, &te) && onlyPending(te):
			pendings = append(pendings, fmt.Errorf("public paths: %w", err))
		default:
			failures = append(failures, fmt.Errorf("public paths: %w", err))
		}
		d.terminate(ctx, revoked, byService)
	}
	d.publish(snapshotOf(networks, infos, eps, snats, servers, connNames, pubInfos), endpointStatuses(revs, infos, eps, networks, results))
	if len(failures) > 0 {
		// The kernel refused a change: said loudly, retried with back-off.
		d.failedPasses++
		delay := backoff(d.failedPasses)
		for _, err := range failures {
			d.log.Error("data path convergence failed; retrying", "attempt", d.failedPasses, "retry_in", delay, "err", err)
		}
		return delay, nil
	}
	d.failedPasses = 0
	if len(pendings) > 0 {
		// A router or a server's namespace is not there yet: soon again.
		d.log.Debug("data path waits for namespaces", "err", errors.Join(pendings...))
		return time.Second, nil
	}
	return 0, nil
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
func endpointStatuses(revs map[string]int64, infos []peInfo, eps []endpoint, networks map[string]arm.ResourceID, results map[string]error) map[string]endpointStatus {
	wants := map[string]bool{}
	for _, ep := range eps {
		wants[strings.ToLower(ep.id.String())] = true
	}
	netOf := map[string]string{}  // endpoint key → its network's fabric ID
	nameOf := map[string]string{} // endpoint key → its translation's name
	for _, pe := range infos {
		key := strings.ToLower(pe.id.String())
		netOf[key] = FabricID(pe.network)
		nameOf[key] = FabricID(pe.id)
	}
	out := make(map[string]endpointStatus, len(revs))
	for key, rev := range revs {
		st := endpointStatus{rev: rev, state: EndpointInPlace}
		nid, known := netOf[key]
		_, exists := networks[nid]
		err, converged := results[nid]
		switch {
		case !known || (!wants[key] && !converged):
			// Nothing to program, or nothing changed where it was.
		case !exists:
			st.state = EndpointPending // its network is not there (yet)
		case converged && err != nil:
			st.state, st.err = endpointResult(nameOf[key], wants[key], err)
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
func snapshotOf(networks map[string]arm.ResourceID, infos []peInfo, eps []endpoint, snats map[string]netip.Addr,
	servers map[string]*server, connNames map[string]string, pubs []TranslationInfo) DatapathSnapshot {
	var s DatapathSnapshot
	for fid, id := range networks {
		s.Networks = append(s.Networks, NetworkRef{Fabric: fid, ID: id.String()})
	}
	slices.SortFunc(s.Networks, func(a, b NetworkRef) int { return strings.Compare(a.Fabric, b.Fabric) })
	programmed := map[string]bool{}
	for _, ep := range eps {
		programmed[strings.ToLower(ep.id.String())] = true
	}
	for _, pe := range infos {
		key := strings.ToLower(pe.id.String())
		t := TranslationInfo{Kind: KindEndpoint, Name: FabricID(pe.id), Programmed: programmed[key],
			Network: FabricID(pe.network), NetworkID: pe.network.String(), EndpointID: pe.id.String(),
			Connection: connNames[key], ServerID: pe.target.String(), ServerName: pe.target.Name(), Addr: pe.addr, Port: pgPort}
		if srv := servers[strings.ToLower(pe.target.String())]; srv != nil {
			t.ServerID, t.ServerName = srv.id.String(), srv.desired.Name
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

// servers returns the servers that exist (ARM document and Desired record).
func (d *Datapath) servers(ctx context.Context, rd arm.Reader) (map[string]*server, error) {
	kvs, _, err := d.st.List(ctx, postgres.DesiredPrefix+"/")
	if err != nil {
		return nil, err
	}
	out := map[string]*server{}
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
		out[strings.ToLower(id.String())] = &server{id: id, fid: FabricID(id), desired: des}
	}
	return out, nil
}

// parseEndpoint reads a private endpoint document: its network, address
// (from its NIC) and target, and whether its connection is Approved. Only
// an Approved endpoint whose server runs gets a translation.
func (d *Datapath) parseEndpoint(rd arm.Reader, kv store.KV) (peInfo, bool) {
	pe := d.pes.Of(kv)
	if !pe.ok {
		return peInfo{}, false
	}
	var addr netip.Addr
	for _, nicID := range pe.nics {
		nkv, err := rd.Get(arm.DocKey(nicID))
		if err != nil {
			continue
		}
		if nic := d.nics.Of(nkv); nic.primary {
			addr = nic.addr
		}
	}
	if !addr.IsValid() {
		return peInfo{}, false
	}
	return peInfo{id: pe.id, network: pe.subnet.Parent(), target: pe.target, addr: addr, approved: pe.approved}, true
}

// peDoc is what the data path needs of a private endpoint document.
type peDoc struct {
	ok                 bool // a well-formed endpoint to a flexible server
	id, subnet, target arm.ResourceID
	approved           bool
	nics               []arm.ResourceID
}

// decodeEndpoint reads a stored private endpoint document (see arm.Memo).
func decodeEndpoint(kv store.KV) peDoc {
	var pe armnetwork.PrivateEndpoint
	if json.Unmarshal(kv.Value, &pe) != nil || pe.ID == nil || pe.Properties == nil || pe.Properties.Subnet == nil || pe.Properties.Subnet.ID == nil {
		return peDoc{}
	}
	conns := append(pe.Properties.PrivateLinkServiceConnections, pe.Properties.ManualPrivateLinkServiceConnections...)
	if len(conns) != 1 || conns[0] == nil || conns[0].Properties == nil || conns[0].Properties.PrivateLinkServiceID == nil {
		return peDoc{}
	}
	cp := conns[0].Properties
	approved := cp.PrivateLinkServiceConnectionState != nil && cp.PrivateLinkServiceConnectionState.Status != nil &&
		strings.EqualFold(*cp.PrivateLinkServiceConnectionState.Status, "Approved")
	target, err := arm.ParseID(*cp.PrivateLinkServiceID)
	if err != nil || !strings.EqualFold(target.Type(), "Microsoft.DBforPostgreSQL/flexibleServers") {
		return peDoc{}
	}
	id, err1 := arm.ParseID(*pe.ID)
	subnet, err2 := arm.ParseID(*pe.Properties.Subnet.ID)
	if err1 != nil || err2 != nil {
		return peDoc{}
	}
	out := peDoc{ok: true, id: id, subnet: subnet, target: target, approved: approved}
	for _, n := range pe.Properties.NetworkInterfaces {
		if n == nil || n.ID == nil {
			continue
		}
		if nicID, err := arm.ParseID(*n.ID); err == nil {
			out.nics = append(out.nics, nicID)
		}
	}
	return out
}

// allocateSNAT gives every endpoint its SNAT address, kept in the store so
// that it survives restarts (the kernel's flows refer to it), and frees
// those of endpoints that no longer have a translation.
func (d *Datapath) allocateSNAT(ctx context.Context, eps []endpoint) (map[string]netip.Addr, error) {
	out := map[string]netip.Addr{}
	_, err := d.st.Txn(ctx, func(tx store.Tx) error {
		clear(out)
		kvs, err := tx.List(snatKey + "/")
		if err != nil {
			return err
		}
		want := map[string]bool{}
		for _, ep := range eps {
			want[strings.ToLower(ep.id.String())] = true
		}
		used := map[netip.Addr]bool{}
		for _, kv := range kvs {
			id := strings.TrimPrefix(kv.Key, snatKey+"/")
			a, err := netip.ParseAddr(string(kv.Value))
			if err != nil || !want[id] {
				if err := tx.Delete(kv.Key); err != nil {
					return err
				}
				continue
			}
			out[id], used[a] = a, true
		}
		next := snatPrefix.Addr().Next()
		for id := range want {
			if _, ok := out[id]; ok {
				continue
			}
			for used[next] || next.As4()[3] == 0 || next.As4()[3] == 255 {
				next = next.Next()
			}
			if !snatPrefix.Contains(next) {
				return fmt.Errorf("no endpoint SNAT address left in %s", snatPrefix)
			}
			if err := tx.Put(snatKey+"/"+id, []byte(next.String())); err != nil {
				return err
			}
			out[id], used[next] = next, true
		}
		return nil
	})
	return out, err
}

// terminate ends the server backends of revoked flows, so that no session
// of a withdrawn path survives on the server side either.
func (d *Datapath) terminate(ctx context.Context, revoked []fabric.Flow, byService map[netip.Addr]*server) {
	bySrv := map[*server][]netip.Prefix{}
	for _, fl := range revoked {
		if s := byService[fl.Service.Addr()]; s != nil {
			bySrv[s] = append(bySrv[s], netip.PrefixFrom(fl.Source.Addr(), 32))
		}
	}
	for s, clients := range bySrv {
		n, err := d.pg.TerminateBackends(ctx, s.fid, clients)
		if err != nil && !errors.Is(err, pgserver.ErrNotRunning) {
			d.log.Warn("terminating backends of revoked flows failed", "server", s.desired.Name, "err", err)
			continue
		}
		d.log.Info("revoked sessions", "server", s.desired.Name, "flows", len(clients), "backends_terminated", n)
	}
}
