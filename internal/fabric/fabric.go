// Package fabric is the only code in privlink that touches network
// namespaces, links, addresses, routes and nftables.
//
// It materialises the emulated Azure network on one Linux host:
//
//   - a virtual network is a router namespace ("<prefix>vnet-<id>") with
//     IPv4 forwarding on, the network's DNS address 168.63.129.16 and every
//     subnet's gateway on lo, and an nftables forward filter;
//   - a NIC is a namespace ("<prefix>nic-<id>") whose eth0 is a veth pair
//     into its network's router namespace;
//   - the emulated internet is one router namespace ("<prefix>inet") holding
//     198.18.0.0/15, with one namespace per internet host
//     ("<prefix>ih-<address>");
//   - a service instance (one PostgreSQL server) is a namespace
//     ("<prefix>svc-<id>") addressed from 169.254.0.0/16;
//   - the data path links routers to service namespaces (service links)
//     and translates in the kernel: a private endpoint's address in a
//     network's router (EnsureEndpoints: DNAT to the service, SNAT to an
//     address that names the endpoint) and a server's public address in
//     the internet router (EnsurePublic: DNAT for sources in an nftables
//     firewall set); when a translation goes, its live flows are cut and
//     both their ends reset (see RevokeEndpointFlows).
//
// Every Ensure method converges what exists to its spec (creating, fixing or
// replacing what differs) and is safe to call repeatedly and after a crash;
// every Delete method is idempotent. The Fabric keeps no state of its own
// besides its prefix: the kernel is the state, so a restarted daemon picks up
// where the previous one stopped.
//
// The network rule holds throughout: nothing here adds an address, a route or
// a link to the host namespace. Veth pairs are created inside a target
// namespace, with the peer placed directly into the other target namespace.
// Code that must run inside a namespace (sysctls, opening sockets) runs on a
// fresh, locked OS thread that switches back before it is released; see Do.
package fabric

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/privlink/privlink/internal/names"
	"golang.org/x/sys/unix"
)

// Well-known addresses of the emulated network.
var (
	// DNSAddr is the DNS address of every virtual network (Azure's
	// 168.63.129.16); it lives on lo of each network's router namespace.
	DNSAddr = netip.MustParseAddr("168.63.129.16")
	// InternetPrefix is the emulated internet's address space (RFC 2544's
	// benchmarking range).
	InternetPrefix = netip.MustParsePrefix("198.18.0.0/15")
	// InternetGateway is the internet router's own address, on lo of the
	// "<prefix>inet" namespace.
	InternetGateway = netip.MustParseAddr("198.18.0.1")
	// ServicePrefix is the range service namespaces are addressed from
	// (link-local, which Azure forbids in virtual networks).
	ServicePrefix = netip.MustParsePrefix("169.254.0.0/16")
)

// Errors callers can test for with errors.Is.
var (
	// ErrInvalid marks a spec or argument the fabric refuses.
	ErrInvalid = errors.New("invalid fabric spec")
	// ErrNotFound marks a namespace that must exist and does not, such as
	// the router namespace of a NIC's network.
	ErrNotFound = errors.New("not found")
)

// Kind is the kind of a namespace the fabric owns; it is part of the
// namespace's name.
type Kind = names.Kind

// The kinds of namespaces (names.Kind*).
const (
	KindNetwork      = names.KindNetwork
	KindNIC          = names.KindNIC
	KindInternet     = names.KindInternet
	KindInternetHost = names.KindInternetHost
	KindService      = names.KindService
	KindVPNGateway   = names.KindVPNGateway
	KindSite         = names.KindSite
	KindSiteDevice   = names.KindSiteDevice
	KindSiteHost     = names.KindSiteHost
)

var (
	prefixRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)
	idRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
)

// Fabric owns the namespaces whose names start with its prefix. Its methods
// are safe for concurrent use; Ensure and Delete calls are serialised.
type Fabric struct {
	prefix string
	log    *slog.Logger

	// mu serialises changes, so two calls never race on one namespace (its
	// creation is not atomic: a file, then a bind mount).
	mu sync.Mutex

	// revocations remembers the flows this Fabric revoked until a flow
	// watcher sees them end (see WatchFlows): the kernel does not say who
	// deleted a conntrack entry.
	revocations revocationLog
	// watches are the running flow watches, which a namespace's deletion
	// ends (see WatchFlows).
	watches watchSet
	// fault is the fault hook of tests (SetFaultHook), or nil.
	fault atomic.Pointer[func(FaultPoint, string) error]
	// batchBudget, when not 0, replaces nftBatchBudget (tests of changes
	// split into several batches).
	batchBudget int
	// forwarding remembers, by NIC namespace name, the IP forwarding
	// ensureForwarding last set there and in which namespace (its inode),
	// so a pass enters only the NICs whose setting or namespace changed;
	// ForgetForwarding clears it (a resync). Guarded by mu.
	forwarding map[string]forwardingState
}

// New returns a Fabric owning the namespaces whose names start with prefix
// (for example "pl-"). prefix must not be a prefix of another daemon's or
// test's prefix. New fails when the process is not root or the kernel lacks
// network namespaces. It prepares /run/netns as iproute2 does (a shared bind
// mount), so `ip netns exec` sees the namespaces.
func New(prefix string, log *slog.Logger) (*Fabric, error) {
	if !prefixRE.MatchString(prefix) {
		return nil, fmt.Errorf("fabric: prefix %q: want 1-32 of [A-Za-z0-9_.-], starting with a letter or digit: %w", prefix, ErrInvalid)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("fabric: must run as root to manage network namespaces (euid %d)", os.Geteuid())
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return nil, fmt.Errorf("fabric: kernel without network namespaces: %w", err)
	}
	if err := prepareNetnsDir(); err != nil {
		return nil, fmt.Errorf("fabric: %w", err)
	}
	return &Fabric{prefix: prefix, log: log.With("component", "fabric")}, nil
}

// Prefix returns the prefix of every namespace name this Fabric owns.
func (f *Fabric) Prefix() string { return f.prefix }

// NamespaceName returns the name of the namespace of the given kind and id,
// as `ip netns exec` knows it. For KindInternet id is ignored; for
// KindInternetHost id is the host's address (see InternetHostNamespace).
func (f *Fabric) NamespaceName(kind Kind, id string) string {
	return names.Namespace(f.prefix, kind, id)
}

// NamespaceInode returns the inode of the named namespace: it changes when
// the namespace is deleted and made again.
func (f *Fabric) NamespaceInode(name string) (uint64, error) {
	fi, err := os.Stat(names.Path(name))
	if err != nil {
		return 0, fmt.Errorf("namespace %s: %w", name, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("namespace %s: no inode", name)
	}
	return st.Ino, nil
}

// InternetHostNamespace returns the namespace name of the internet host with
// address addr.
func (f *Fabric) InternetHostNamespace(addr netip.Addr) string {
	return f.NamespaceName(KindInternetHost, addr.String())
}

func (f *Fabric) owns(name string) bool {
	return len(name) > len(f.prefix) && name[:len(f.prefix)] == f.prefix
}

func checkID(what, id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("fabric: %s id %q: want 1-64 of [A-Za-z0-9_.-], starting with a letter or digit: %w", what, id, ErrInvalid)
	}
	return nil
}

// isNotExist reports whether err says a link, address, route or file is
// already gone.
func isNotExist(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) ||
		errors.Is(err, unix.ESRCH) || errors.Is(err, unix.EADDRNOTAVAIL) ||
		errors.Is(err, os.ErrNotExist) || isLinkNotFound(err)
}
