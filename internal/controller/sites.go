package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/privlink/privlink/internal/addrpool"
	"github.com/privlink/privlink/internal/dns"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/ipsec"
	"github.com/privlink/privlink/internal/store"
)

// Simulated on-premises sites (`privlink site create`) are privlinkd's own
// resources, not ARM's, and desired state like any other: the API writes
// a record per site under SitesPrefix (UpdateSite) and the Sites loop
// builds it through the fabric (router, VPN device, hosts), runs the
// device's IKE daemon with the site's connections (internal/ipsec) and
// serves the site's DNS on its router, so a restart, a kill -9 or a
// namespace deleted by hand heal as everything else does. A request
// waits, bounded, until the loop has answered its generation; a deletion
// until the loop has removed everything and then the record.

// SitesPrefix is the store prefix of site records.
const SitesPrefix = "sites/"

// Site is the record of one site: what the operator asked for, and what
// the loop last answered.
type Site struct {
	Name         string           `json:"name"`
	AddressSpace string           `json:"addressSpace"`
	GatewayIP    string           `json:"gatewayIp"`
	Hosts        []SiteHost       `json:"hosts"`
	Connections  []SiteConnection `json:"connections,omitempty"`
	DNSForwards  []SiteForward    `json:"dnsForwards,omitempty"`
	// Deleting asks the loop to remove the site and then its record.
	Deleting bool `json:"deleting,omitempty"`

	// Generation counts requests; Observed is the one the loop last
	// answered, with Error (why the site is not as asked, "" when it is)
	// and each connection's status (ipsec.Status) by name.
	Generation int64             `json:"generation"`
	Observed   int64             `json:"observed"`
	Error      string            `json:"error,omitempty"`
	Status     map[string]string `json:"status,omitempty"`
}

// SiteHost is one host of a site.
type SiteHost struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// SiteConnection is one IPsec connection of a site's VPN device (IKEv2,
// pre-shared key) to a peer gateway on the emulated internet.
type SiteConnection struct {
	Name         string   `json:"name"`
	Peer         string   `json:"peer"`
	SharedKey    string   `json:"sharedKey"`
	RemoteSpaces []string `json:"remoteSpaces"`
}

// SiteForward is a conditional forwarder of the site's DNS: names of Zone
// go to Address:53.
type SiteForward struct {
	Zone    string `json:"zone"`
	Address string `json:"address"`
}

// SiteKey is the store key of the site name.
func SiteKey(name string) string { return SitesPrefix + name }

// SiteHolder is what holds a site's public address in addrpool, so that
// no public IP address or server is given it, nor another site.
func SiteHolder(name string) string { return "privlink/sites/" + name }

// ErrSiteNotFound says a site does not exist.
var ErrSiteNotFound = errors.New("site not found")

// UpdateSite changes the record of site name in one transaction with
// update (exists tells whether there was one; update may reserve or
// check in tx) and waits until the Sites loop has answered the change
// (or, for a record update marked Deleting, removed the site), or ctx
// ends. It returns the record as answered (the zero Site after a
// deletion).
func UpdateSite(ctx context.Context, st store.Store, name string, update func(tx store.Tx, s *Site, exists bool) error) (Site, error) {
	key := SiteKey(name)
	var deleting bool
	var out Site
	err := request(ctx, st, key, func(tx store.Tx) (int64, error) {
		s := Site{Name: name}
		exists := false
		if kv, err := tx.Get(key); err == nil {
			if err := json.Unmarshal(kv.Value, &s); err != nil {
				return 0, fmt.Errorf("decode %s: %w", key, err)
			}
			exists = true
		} else if !errors.Is(err, store.ErrNotFound) {
			return 0, err
		}
		if err := update(tx, &s, exists); err != nil {
			return 0, err
		}
		s.Generation++
		deleting = s.Deleting
		b, err := json.Marshal(s)
		if err != nil {
			return 0, err
		}
		return s.Generation, tx.Put(key, b)
	}, func(value []byte, want int64) bool {
		if value == nil {
			return deleting
		}
		var s Site
		if json.Unmarshal(value, &s) != nil || s.Observed < want || s.Deleting {
			return false
		}
		out = s
		return true
	})
	if err != nil {
		return Site{}, fmt.Errorf("site %s: %w", name, err)
	}
	return out, nil
}

// ListSites returns every site record.
func ListSites(ctx context.Context, st store.Store) ([]Site, error) {
	kvs, _, err := st.List(ctx, SitesPrefix)
	if err != nil {
		return nil, fmt.Errorf("list sites: %w", err)
	}
	out := make([]Site, 0, len(kvs))
	for _, kv := range kvs {
		var s Site
		if err := json.Unmarshal(kv.Value, &s); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// request runs update in one transaction (it returns the generation it
// wrote) and waits until answered reports, of a later value of key (nil
// when the key was deleted), that the controller answered that generation.
func request(ctx context.Context, st store.Store, key string, update func(tx store.Tx) (int64, error), answered func(value []byte, want int64) bool) error {
	var want int64
	rev, err := st.Txn(ctx, func(tx store.Tx) error {
		var err error
		want, err = update(tx)
		return err
	})
	if err != nil {
		return err
	}
	events, err := st.Watch(ctx, key, rev)
	if err != nil {
		return fmt.Errorf("watch %s: %w", key, err)
	}
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("not answered yet: %w", ctx.Err())
		case ev, ok := <-events:
			if !ok {
				return fmt.Errorf("watch %s ended", key)
			}
			if ev.KV.Key != key {
				continue
			}
			var value []byte
			if ev.Type == store.EventPut {
				value = ev.KV.Value
			}
			if answered(value, want) {
				return nil
			}
		}
	}
}

// Sites builds every site recorded and removes those that are not.
type Sites struct {
	st   store.Store
	fab  *fabric.Fabric
	dns  *dns.Server
	dir  string // DATA/sites: a directory per site with its IKE daemon's files
	log  *slog.Logger
	loop *Loop

	mu      sync.Mutex
	serving map[string]*siteDNS // by site
}

type siteDNS struct {
	*dnsServing
	fingerprint string // of the router address and forwarders served
}

// NewSites returns the controller. dir holds a directory per site (its
// IKE daemon's configuration, socket and log); srv answers the sites'
// DNS (the internet's view, with each site's forwarders).
func NewSites(st store.Store, fab *fabric.Fabric, srv *dns.Server, dir string, log *slog.Logger) *Sites {
	c := &Sites{st: st, fab: fab, dns: srv, dir: dir, log: log, serving: map[string]*siteDNS{}}
	c.loop = &Loop{Name: "sites", Prefixes: []string{SitesPrefix}, Items: c.items,
		Resync: c.resync, ResyncEvery: 30 * time.Second, Reconcile: c.reconcile, Store: st, Log: log}
	return c
}

// Run reconciles until ctx ends, then stops serving the sites' DNS. The
// IKE daemons and namespaces stay: tunnels outlive privlinkd.
func (c *Sites) Run(ctx context.Context) error {
	err := c.loop.Run(ctx)
	c.mu.Lock()
	all := c.serving
	c.serving = map[string]*siteDNS{}
	c.mu.Unlock()
	for _, s := range all {
		s.stop()
	}
	return err
}

func (c *Sites) items(key string, _ []byte) []string {
	if n, ok := strings.CutPrefix(key, SitesPrefix); ok && fabric.CheckSiteName("site", n) == nil {
		return []string{n}
	}
	return nil
}

// resync lists the sites recorded, and those with namespaces or an IKE
// daemon's directory left (a deletion that a crash interrupted).
func (c *Sites) resync(ctx context.Context) ([]string, error) {
	kvs, _, err := c.st.List(ctx, SitesPrefix)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, kv := range kvs {
		out = append(out, c.items(kv.Key, kv.Value)...)
	}
	built, err := c.fab.Sites()
	if err != nil {
		return nil, err
	}
	out = append(out, built...)
	if entries, err := os.ReadDir(c.dir); err == nil {
		for _, e := range entries {
			if e.IsDir() && fabric.CheckSiteName("site", e.Name()) == nil {
				out = append(out, e.Name())
			}
		}
	}
	return out, nil
}

func (c *Sites) ipsec(name string) *ipsec.Daemon {
	return ipsec.New(filepath.Join(c.dir, name), c.fab.SiteDeviceNamespace(name), c.log.With("site", name))
}

func (c *Sites) reconcile(ctx context.Context, name string) (time.Duration, error) {
	kv, err := c.st.Get(ctx, SiteKey(name))
	if errors.Is(err, store.ErrNotFound) {
		return 0, c.teardown(name)
	}
	if err != nil {
		return 0, err
	}
	var s Site
	if err := json.Unmarshal(kv.Value, &s); err != nil {
		return 0, fmt.Errorf("decode site %s: %w", name, err)
	}
	if s.Deleting {
		if err := c.teardown(name); err != nil {
			return 0, err
		}
		_, err := c.st.Txn(ctx, func(tx store.Tx) error {
			cur, err := tx.Get(kv.Key)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if cur.Revision != kv.Revision {
				return store.ErrConflict // changed meanwhile: the next pass decides
			}
			if err := tx.Delete(kv.Key); err != nil {
				return err
			}
			return addrpool.Release(tx, SiteHolder(name))
		})
		if errors.Is(err, store.ErrConflict) {
			return 0, nil
		}
		if err == nil {
			c.log.Info("site deleted", "site", name)
		}
		return 0, err
	}

	var errs []error
	status := map[string]string{}
	spec, err := siteSpec(s)
	if err == nil {
		err = c.fab.EnsureSite(spec)
	}
	if err != nil {
		errs = append(errs, err)
	} else {
		if err := c.ensureDNS(s, spec); err != nil {
			errs = append(errs, fmt.Errorf("DNS: %w", err))
		}
		if status, err = c.ensureTunnels(ctx, s, spec); err != nil {
			errs = append(errs, fmt.Errorf("VPN device: %w", err))
		}
	}
	next := s
	next.Observed, next.Error, next.Status = s.Generation, "", status
	if len(status) == 0 {
		next.Status = nil
	}
	if err := errors.Join(errs...); err != nil {
		next.Error = err.Error()
	}
	if !reflect.DeepEqual(next, s) {
		b, err := json.Marshal(next)
		if err != nil {
			return 0, err
		}
		// Only the revision read: a newer request is answered by the next pass.
		if _, err := c.st.Put(ctx, kv.Key, b, kv.Revision); err != nil && !errors.Is(err, store.ErrConflict) {
			return 0, err
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("site %s: %w", name, err)
	}
	for _, st := range status {
		if st != string(ipsec.Connected) {
			return 5 * time.Second, nil // follow the tunnel until it is up
		}
	}
	return 0, nil
}

// siteSpec is the fabric's spec of a site record.
func siteSpec(s Site) (fabric.SiteSpec, error) {
	space, err := netip.ParsePrefix(s.AddressSpace)
	if err != nil {
		return fabric.SiteSpec{}, fmt.Errorf("address space: %w", err)
	}
	public, err := netip.ParseAddr(s.GatewayIP)
	if err != nil {
		return fabric.SiteSpec{}, fmt.Errorf("gateway IP: %w", err)
	}
	spec := fabric.SiteSpec{Name: s.Name, Space: space, Public: public}
	for _, h := range s.Hosts {
		a, err := netip.ParseAddr(h.Address)
		if err != nil {
			return fabric.SiteSpec{}, fmt.Errorf("host %s: %w", h.Name, err)
		}
		spec.Hosts = append(spec.Hosts, fabric.SiteHost{Name: h.Name, Address: a})
	}
	return spec, nil
}

// ensureDNS serves the site's DNS on its router's address: the internet's
// public names, with the site's conditional forwarders, whose queries
// leave from the router's address (so they take the tunnel toward an
// inbound endpoint).
func (c *Sites) ensureDNS(s Site, spec fabric.SiteSpec) error {
	ns := c.fab.SiteRouterNamespace(s.Name)
	ino, err := c.fab.NamespaceInode(ns)
	if err != nil {
		return err
	}
	router := fabric.SiteRouterAddr(spec.Space)
	fw := dns.Forwarding{Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		return c.fab.DialFrom(ctx, ns, network, router, address)
	}}
	fp := router.String()
	for _, f := range s.DNSForwards {
		up, err := netip.ParseAddr(f.Address)
		if err != nil {
			return fmt.Errorf("forward %s: %w", f.Zone, err)
		}
		fw.Zones = append(fw.Zones, dns.Forward{Zone: f.Zone, Upstream: netip.AddrPortFrom(up, 53)})
		fp += "|" + f.Zone + "=" + f.Address
	}
	c.mu.Lock()
	cur := c.serving[s.Name]
	c.mu.Unlock()
	if cur != nil && cur.fingerprint == fp && cur.live(ino) {
		return nil
	}
	c.stopDNS(s.Name)
	srv, err := startDNS(c.fab, ns, ino, router, func(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
		return c.dns.ServeForwarding(ctx, dns.InternetView, fw, pc, ln)
	}, c.log.With("site", s.Name))
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.serving[s.Name] = &siteDNS{dnsServing: srv, fingerprint: fp}
	c.mu.Unlock()
	return nil
}

func (c *Sites) stopDNS(name string) {
	c.mu.Lock()
	s := c.serving[name]
	delete(c.serving, name)
	c.mu.Unlock()
	if s != nil {
		s.stop()
	}
}

// charonName names a connection in the IKE daemon: its name and a hash of
// everything it is made of, so a changed connection is a new name (the
// old one unloaded, the new one loaded) and an unchanged one is left
// alone, also across privlinkd restarts.
func charonName(conn ipsec.Conn, name string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|%v|%v|%s", conn.LocalAddr, conn.RemoteAddr, conn.LocalTS, conn.RemoteTS, conn.PSK)
	return name + "-" + hex.EncodeToString(h.Sum(nil)[:4])
}

// ensureTunnels converges the device's IKE daemon to the site's
// connections (none: no daemon) and returns each one's status.
func (c *Sites) ensureTunnels(ctx context.Context, s Site, spec fabric.SiteSpec) (map[string]string, error) {
	d := c.ipsec(s.Name)
	if len(s.Connections) == 0 {
		return nil, d.Stop()
	}
	if err := os.MkdirAll(d.Dir(), 0o700); err != nil {
		return nil, err
	}
	if err := d.Ensure(ctx); err != nil {
		return nil, err
	}
	want := map[string]ipsec.Conn{}
	byConn := map[string]string{}
	for _, sc := range s.Connections {
		peer, err := netip.ParseAddr(sc.Peer)
		if err != nil {
			return nil, fmt.Errorf("connection %s: peer: %w", sc.Name, err)
		}
		conn := ipsec.Conn{LocalAddr: spec.Public, RemoteAddr: peer, LocalTS: []netip.Prefix{spec.Space}, PSK: sc.SharedKey}
		for _, r := range sc.RemoteSpaces {
			p, err := netip.ParsePrefix(r)
			if err != nil {
				return nil, fmt.Errorf("connection %s: remote space: %w", sc.Name, err)
			}
			conn.RemoteTS = append(conn.RemoteTS, p)
		}
		conn.Name = charonName(conn, sc.Name)
		want[conn.Name] = conn
		byConn[sc.Name] = conn.Name
	}
	loaded, err := d.Names(ctx)
	if err != nil {
		return nil, err
	}
	var errs []error
	have := map[string]bool{}
	for _, n := range loaded {
		if _, ok := want[n]; !ok {
			errs = append(errs, d.Unload(ctx, n))
			continue
		}
		have[n] = true
	}
	for n, conn := range want {
		if !have[n] {
			c.log.Info("loading site connection", "site", s.Name, "connection", n, "peer", conn.RemoteAddr)
			errs = append(errs, d.Load(ctx, conn))
		} else {
			errs = append(errs, d.Initiate(ctx, n))
		}
	}
	status := map[string]string{}
	for sc, n := range byConn {
		st, err := d.State(ctx, n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		status[sc] = string(st.Status)
	}
	return status, errors.Join(errs...)
}

// teardown removes everything of a site: its DNS, its IKE daemon (the
// tunnels go at once), its namespaces and its directory.
func (c *Sites) teardown(name string) error {
	c.stopDNS(name)
	dir := filepath.Join(c.dir, name)
	if err := c.ipsec(name).Stop(); err != nil {
		return err
	}
	if err := c.fab.DeleteSite(name); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}
