package datapath

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"strings"
	"sync/atomic"

	"github.com/privlink/privlink/internal/fabric"
)

// Kinds of translations (TranslationInfo.Kind).
const (
	KindEndpoint = "endpoint"
	KindPublic   = "public"
)

// TranslationInfo describes one path of the data path as it was last
// programmed: a private endpoint to a flexible server (with or without a
// translation), or a server's public path.
type TranslationInfo struct {
	// Kind is KindEndpoint or KindPublic.
	Kind string
	// Name is the translation's name in the fabric (fabric.EndpointNAT.Name
	// or fabric.PublicNAT.Name): the fabric ID of the endpoint or the
	// server. The fabric's counters are by this name.
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

// Snapshot describes the paths of a Desired data path: what the data path
// controller programmed in its last pass, once published (see Observed).
// It is immutable: do not modify its slices.
type Snapshot struct {
	// Networks are the virtual networks that exist, with or without
	// endpoints.
	Networks []NetworkRef
	// Translations are every endpoint (to a flexible server) and every
	// server's public path.
	Translations []TranslationInfo
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

// EndpointReport is what one pass did with one endpoint's document.
type EndpointReport struct {
	// Rev is the revision of the document the pass read.
	Rev   int64
	State EndpointState
	// Err says why, when State is EndpointFailed.
	Err error
}

func (a EndpointReport) equal(b EndpointReport) bool {
	return a.Rev == b.Rev && a.State == b.State && fmt.Sprint(a.Err) == fmt.Sprint(b.Err)
}

// Reports are a pass's EndpointReports, by lower-cased endpoint ID (see
// Desired.Reports).
type Reports map[string]EndpointReport

// Observed is what the data path last programmed, as the data path
// controller publishes it after each pass: the paths (Snapshot) and what
// became of each endpoint's document (EndpointStatus). Telemetry labels
// the kernel's counters from it, and the controllers that wait for an
// endpoint's translation follow it. It is safe for concurrent use.
type Observed struct {
	p      atomic.Pointer[published]
	relays atomic.Pointer[func(network string) map[string]fabric.Counters]
}

// SetRelayCounters makes fn the source of RelayCounters (the data path
// controller's relay).
func (o *Observed) SetRelayCounters(fn func(network string) map[string]fabric.Counters) {
	o.relays.Store(&fn)
}

// RelayCounters returns the counters of the network's endpoints that a
// PROXY protocol relay serves (their connections, bytes and live
// sessions; no packets), by translation name; none before
// SetRelayCounters.
func (o *Observed) RelayCounters(network string) map[string]fabric.Counters {
	if fn := o.relays.Load(); fn != nil {
		return (*fn)(network)
	}
	return nil
}

type published struct {
	snap    Snapshot
	changed chan struct{}
	reports Reports
}

// NewObserved returns an Observed with nothing published yet: an empty
// snapshot, and every endpoint pending.
func NewObserved() *Observed {
	o := &Observed{}
	o.p.Store(&published{changed: make(chan struct{})})
	return o
}

// Snapshot returns the current snapshot, and a channel closed once a pass
// publishes a different snapshot, or the same with other endpoint reports
// (see EndpointStatus).
func (o *Observed) Snapshot() (Snapshot, <-chan struct{}) {
	p := o.p.Load()
	return p.snap, p.changed
}

// Publish makes s the current snapshot and r the endpoints' reports,
// waking Snapshot's waiters if either differs from the last ones. The
// data path controller calls it after each pass.
func (o *Observed) Publish(s Snapshot, r Reports) {
	old := o.p.Load()
	if reflect.DeepEqual(old.snap, s) && maps.EqualFunc(old.reports, r, EndpointReport.equal) {
		return
	}
	o.p.Store(&published{snap: s, changed: make(chan struct{}), reports: r})
	close(old.changed)
}

// EndpointStatus tells what the last pass did with revision rev (or a
// later one) of the document of private endpoint id: whether what it
// asks for is in place, failed (with the error), or pending (the pass
// read an older revision, or waits for something).
func (o *Observed) EndpointStatus(id string, rev int64) (EndpointState, error) {
	r, ok := o.p.Load().reports[strings.ToLower(id)]
	if !ok || r.Rev < rev {
		return EndpointPending, nil
	}
	return r.State, r.Err
}
