package fabric

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/privlink/privlink/internal/ipsec"
	"github.com/privlink/privlink/internal/policy"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VPN gateways. A virtual network gateway is a namespace of its own,
// NamespaceName(KindVPNGateway, ID), with two legs:
//
//	router ns  g<hash> ==veth== eth0   gateway ns   inet0 ==veth== h<hex>  internet router
//	           (route to the    10.1.255.4/27       198.18.x.y/32
//	            remote spaces)
//
// eth0 holds the gateway's address in GatewaySubnet and routes
// everything (the default route) to the subnet's gateway (the router); inet0
// holds the public address and routes the emulated internet
// (198.18.0.0/15) to its router. A strongSwan charon (internal/ipsec)
// runs in the namespace with one tunnel per connection: while a tunnel is
// up, its child SA's route (table 220, through charon's ipsec0) carries
// the remote space. Anything else that comes from the router (a remote
// space whose tunnel is down) would go back to it by the default route:
// the gateway's forward filter refuses it there (TCP with a reset, the
// rest dropped), and forwards nothing from or to the internet leg, so
// nothing from the network ever leaves in clear on the internet. (The
// kernel here has no dummy devices, hence the way back as the refusal's
// place.) The router routes each tunnel's remote space to the
// gateway (its forward filter lets NICs to and from "g*" links).
//
// The charon outlives privlinkd and is adopted by the next Ensure; one
// that died is replaced and given its tunnels again. A tunnel that goes
// is unloaded, then the router's flows to and from its remote space are
// cut (their conntrack entries deleted and both ends probed, see tickle:
// the probes' answers meet the gateway's refusal), and only then does
// its route go.

const (
	// gatewayLinkTag starts the name of the router-side veth toward a VPN
	// gateway (matched by the router's forward filter).
	gatewayLinkTag = "g"
	gwRouterLeg    = "eth0"
	gwInternetLeg  = "inet0"
	// gatewayTable is the gateway namespace's own table.
	gatewayTable = "privlink_gw"
	// tunnelsFile, in the gateway's directory, records the configuration
	// each loaded tunnel was loaded with.
	tunnelsFile = "tunnels.json"
)

// VPNGatewaySpec is the desired state of a VPN gateway.
type VPNGatewaySpec struct {
	// ID is the gateway's stable short key; Network the ID of its
	// network, whose router must exist.
	ID, Network string
	// Address is the gateway's address in GatewaySubnet, with the
	// subnet's length.
	Address netip.Prefix
	// Space is the network's address space (the tunnels' local side).
	Space []netip.Prefix
	// Public is the gateway's public address (in 198.18.0.0/15).
	Public netip.Addr
	// Dir is the charon's directory (configuration, VICI socket, log).
	Dir string
	// Tunnels are the gateway's connections.
	Tunnels []VPNTunnel
}

// VPNTunnel is one connection of a gateway.
type VPNTunnel struct {
	// Name names the tunnel in charon: 1-64 of [A-Za-z0-9_-].
	Name string
	// Remote is the far gateway's public address, RemoteSpace the
	// address space behind it.
	Remote      netip.Addr
	RemoteSpace []netip.Prefix
	// PSK is the pre-shared key.
	PSK string
}

// GatewayLinkName returns the name of the veth end, in a router namespace,
// that leads to the VPN gateway id ("g" and 12 hex digits).
func GatewayLinkName(id string) string { return hashedLinkName(gatewayLinkTag, id) }

func (s VPNGatewaySpec) validate() error {
	if err := checkID("VPN gateway", s.ID); err != nil {
		return err
	}
	if err := checkID("network", s.Network); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("fabric: VPN gateway %s: %s: %w", s.ID, fmt.Sprintf(format, args...), ErrInvalid)
	}
	a := s.Address
	if !a.IsValid() || !a.Addr().Is4() || a.Bits() > 29 || a.Addr() == a.Masked().Addr() || a.Addr() == SubnetGateway(a) {
		return bad("address %s: want an IPv4 host address of a /29 or larger subnet, not its gateway", a)
	}
	if err := checkInternetAddr(s.Public); err != nil {
		return bad("public address: %v", err)
	}
	if len(s.Space) == 0 || s.Dir == "" {
		return bad("want the network's address space and a directory")
	}
	for _, t := range s.Tunnels {
		c := t.conn(s)
		if err := c.Validate(); err != nil {
			return bad("%v", err)
		}
		for _, r := range t.RemoteSpace {
			if !r.Addr().Is4() || r != r.Masked() || r.Bits() == 0 {
				return bad("tunnel %s: remote prefix %s: want a masked IPv4 prefix other than 0.0.0.0/0", t.Name, r)
			}
		}
	}
	return nil
}

func (t VPNTunnel) conn(s VPNGatewaySpec) ipsec.Conn {
	return ipsec.Conn{Name: t.Name, LocalAddr: s.Public, RemoteAddr: t.Remote, LocalTS: s.Space, RemoteTS: t.RemoteSpace, PSK: t.PSK}
}

// hash identifies what a tunnel was loaded with.
func (t VPNTunnel) hash(s VPNGatewaySpec) string {
	b, _ := json.Marshal(t.conn(s))
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// EnsureVPNGateway converges the gateway of spec: its namespace and legs,
// its routes and filter, the router's routes to the tunnels' remote
// spaces, the charon (started, or adopted) and its tunnels (loaded,
// reloaded when changed, unloaded when gone, their flows cut). The
// network's router must exist (ErrNotFound otherwise).
func (f *Fabric) EnsureVPNGateway(ctx context.Context, spec VPNGatewaySpec) error {
	if err := spec.validate(); err != nil {
		return err
	}
	want := map[netip.Prefix]bool{}
	for _, t := range spec.Tunnels {
		for _, p := range t.RemoteSpace {
			want[p] = true
		}
	}
	routed, err := f.ensureGatewayLegs(spec)
	if err != nil {
		return fmt.Errorf("fabric: VPN gateway %s: %w", spec.ID, err)
	}
	d := ipsec.New(spec.Dir, f.NamespaceName(KindVPNGateway, spec.ID), f.log)
	if err := d.Ensure(ctx); err != nil {
		return fmt.Errorf("fabric: VPN gateway %s: %w", spec.ID, err)
	}
	if err := f.ensureTunnels(ctx, d, spec); err != nil {
		return fmt.Errorf("fabric: VPN gateway %s: %w", spec.ID, err)
	}
	var gone []netip.Prefix
	for _, p := range routed {
		if !want[p] {
			gone = append(gone, p)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	router, err := f.open(f.NamespaceName(KindNetwork, spec.Network), nil)
	if err != nil {
		return fmt.Errorf("fabric: VPN gateway %s: network %s: %w", spec.ID, spec.Network, err)
	}
	defer router.close()
	if err := f.cutGatewayFlows(router, gone); err != nil {
		return fmt.Errorf("fabric: VPN gateway %s: %w", spec.ID, err)
	}
	gl, err := linkByName(router, GatewayLinkName(spec.ID))
	if err != nil || gl == nil {
		return fmt.Errorf("fabric: VPN gateway %s: router link gone: %w", spec.ID, errors.Join(err, ErrNotFound))
	}
	if err := ensureLinkRoutes(router, gl, gatewayRoutes(gl, spec)); err != nil {
		return fmt.Errorf("fabric: VPN gateway %s: %w", spec.ID, err)
	}
	return nil
}

// gatewayRoutes are the router's routes toward the gateway: its address
// on the link, and each remote space via it.
func gatewayRoutes(l netlink.Link, spec VPNGatewaySpec) []netlink.Route {
	out := []netlink.Route{{LinkIndex: l.Attrs().Index, Dst: hostNet(spec.Address.Addr()), Scope: netlink.SCOPE_LINK,
		Protocol: unix.RTPROT_STATIC, Table: unix.RT_TABLE_MAIN}}
	seen := map[netip.Prefix]bool{}
	for _, t := range spec.Tunnels {
		for _, p := range t.RemoteSpace {
			if seen[p] {
				continue
			}
			seen[p] = true
			out = append(out, netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipNet(p), Gw: spec.Address.Addr().AsSlice(),
				Protocol: unix.RTPROT_STATIC, Table: unix.RT_TABLE_MAIN})
		}
	}
	return out
}

// ensureGatewayLegs converges the gateway's namespace, legs, routes and
// filter, and the router's link toward it (with the route to the
// gateway's address only: the remote spaces' routes are EnsureVPNGateway's
// to converge once the tunnels are). It returns the remote spaces the
// router routes to the gateway now.
func (f *Fabric) ensureGatewayLegs(spec VPNGatewaySpec) (routed []netip.Prefix, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	router, err := f.open(f.NamespaceName(KindNetwork, spec.Network), nil)
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", spec.Network, err)
	}
	defer router.close()
	inet, err := f.ensureInternet()
	if err != nil {
		return nil, err
	}
	defer inet.close()
	name := f.NamespaceName(KindVPNGateway, spec.ID)
	gw, _, err := f.ensureNS(name, func() error {
		// No redirects: the router would take one for the remote spaces
		// the gateway sends back.
		for k, v := range map[string]string{"net/ipv4/ip_forward": "1", "net/ipv4/conf/all/send_redirects": "0", "net/ipv4/conf/default/send_redirects": "0"} {
			if _, err := setSysctl(k, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	defer gw.close()

	// The router's leg.
	rlName := GatewayLinkName(spec.ID)
	rl, eth0, replaced, err := ensureVethPair(router, rlName, gw, gwRouterLeg, nil)
	if err != nil {
		return nil, err
	}
	if replaced {
		f.log.Info("connected VPN gateway to router", "gateway", spec.ID, "network", spec.Network, "ns", name, "router_link", rlName)
	}
	if err := ensureAlias(router, rl, "vpn gateway "+spec.ID); err != nil {
		return nil, err
	}
	if err := router.do(func() error { return linkSysctls(rlName) }); err != nil {
		return nil, err
	}
	if err := ensureUp(router, rl); err != nil {
		return nil, err
	}
	have, err := routeList(router.h, &netlink.Route{LinkIndex: rl.Attrs().Index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: routes via %s: %w", router.name, rlName, err)
	}
	keep := []netlink.Route{gatewayRoutes(rl, VPNGatewaySpec{Address: spec.Address})[0]}
	for _, rt := range have {
		if rt.Dst == nil || rt.Gw == nil {
			continue
		}
		if p, ok := netip.AddrFromSlice(rt.Dst.IP); ok {
			bits, _ := rt.Dst.Mask.Size()
			routed = append(routed, netip.PrefixFrom(p.Unmap(), bits))
			keep = append(keep, rt)
		}
	}
	if err := ensureLinkRoutes(router, rl, keep); err != nil {
		return nil, err
	}
	if err := ensureAddrs(gw, eth0, []netip.Prefix{spec.Address}, "", 0, allAddrs); err != nil {
		return nil, err
	}
	if err := ensureUp(gw, eth0); err != nil {
		return nil, err
	}
	// Everything goes back to the router but what a tunnel's route
	// (charon's table 220) or the internet route takes: what comes back
	// this way is refused (gatewayFilter).
	if err := ensureDefaultRoute(gw, eth0, SubnetGateway(spec.Address), false); err != nil {
		return nil, err
	}

	// The internet leg.
	a4 := spec.Public.As4()
	ilName := fmt.Sprintf("%s%02x%02x%02x%02x", hostLinkTag, a4[0], a4[1], a4[2], a4[3])
	il, inet0, replaced, err := ensureVethPair(inet, ilName, gw, gwInternetLeg, nil)
	if err != nil {
		return nil, err
	}
	if replaced {
		f.log.Info("connected VPN gateway to the internet", "gateway", spec.ID, "public", spec.Public, "router_link", ilName)
	}
	if err := ensureAlias(inet, il, "vpn gateway "+spec.Public.String()); err != nil {
		return nil, err
	}
	if err := ensureUp(inet, il); err != nil {
		return nil, err
	}
	if err := ensureHostRoute(inet, il, spec.Public); err != nil {
		return nil, err
	}
	if err := ensureAddrs(gw, inet0, []netip.Prefix{netip.PrefixFrom(spec.Public, 32)}, "", 0, allAddrs); err != nil {
		return nil, err
	}
	if err := ensureUp(gw, inet0); err != nil {
		return nil, err
	}
	if err := ensureGatewayRoute(gw, inet0, InternetPrefix, InternetGateway, true); err != nil {
		return nil, err
	}

	if res := f.convergeTable(gw, gatewayFilter()); res.err != nil {
		return nil, res.err
	}
	if err := waitLinks(f, router, rlName, gw, gwRouterLeg); err != nil {
		return nil, err
	}
	return routed, waitLinks(f, inet, ilName, gw, gwInternetLeg)
}

// gatewayFilter is the gateway's forward filter: what comes from the
// router and would go back to it (a remote space no tunnel carries) is
// refused, TCP with a reset (so a client learns at once), anything else
// dropped; nothing is forwarded from or to the internet leg (the tunnels'
// packets are charon's own, encrypted), so nothing from the network ever
// crosses the internet in clear.
func gatewayFilter() tableSpec {
	back := slices.Concat(metaIs(expr.MetaKeyIIFNAME, ifname(gwRouterLeg)), metaIs(expr.MetaKeyOIFNAME, ifname(gwRouterLeg)))
	return tableSpec{table: gatewayTable, ownsChains: true, chains: []chainSpec{{
		name: "forward", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookForward, priority: nftables.ChainPriorityFilter,
		rules: []nftRule{
			{"vpn gateway: reset tcp no tunnel carries", slices.Concat(back, resetTCP())},
			{"vpn gateway: drop what no tunnel carries", slices.Concat(back, []expr.Any{drop})},
			{"vpn gateway: nothing from the internet in clear", slices.Concat(metaIs(expr.MetaKeyIIFNAME, ifname(gwInternetLeg)), []expr.Any{drop})},
			{"vpn gateway: nothing to the internet in clear", slices.Concat(metaIs(expr.MetaKeyOIFNAME, ifname(gwInternetLeg)), []expr.Any{drop})},
		},
	}}}
}

// ensureTunnels loads the tunnels charon lacks or has with another
// configuration, and unloads those it should not have.
func (f *Fabric) ensureTunnels(ctx context.Context, d *ipsec.Daemon, spec VPNGatewaySpec) error {
	loaded, err := d.Names(ctx)
	if err != nil {
		return err
	}
	record := readTunnels(spec.Dir)
	next := map[string]string{}
	wanted := map[string]bool{}
	var errs []error
	for _, t := range spec.Tunnels {
		wanted[t.Name] = true
		h := t.hash(spec)
		if slices.Contains(loaded, t.Name) && record[t.Name] == h {
			next[t.Name] = h
			if err := d.Initiate(ctx, t.Name); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if slices.Contains(loaded, t.Name) {
			// A changed key or far side: the old SAs go with the old
			// configuration.
			if err := d.Unload(ctx, t.Name); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := d.Load(ctx, t.conn(spec)); err != nil {
			errs = append(errs, err)
			continue
		}
		next[t.Name] = h
		f.log.Info("loaded VPN tunnel", "gateway", spec.ID, "tunnel", t.Name, "remote", t.Remote)
	}
	for _, name := range loaded {
		if wanted[name] {
			continue
		}
		if err := d.Unload(ctx, name); err != nil {
			errs = append(errs, err)
			next[name] = record[name]
			continue
		}
		f.log.Info("unloaded VPN tunnel", "gateway", spec.ID, "tunnel", name)
	}
	errs = append(errs, writeTunnels(spec.Dir, next))
	return errors.Join(errs...)
}

func readTunnels(dir string) map[string]string {
	m := map[string]string{}
	b, err := os.ReadFile(filepath.Join(dir, tunnelsFile))
	if err == nil {
		_ = json.Unmarshal(b, &m)
	}
	return m
}

func writeTunnels(dir string, m map[string]string) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, tunnelsFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, tunnelsFile)); err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	return nil
}

// cutGatewayFlows cuts the router's flows to and from spaces (whose
// tunnels are gone): their conntrack entries go, and both ends of each
// live TCP flow are probed (tickle) while the route to the gateway still
// stands, so the answers meet the gateway's refusal (or the router's own
// stack) and both sockets are reset.
func (f *Fabric) cutGatewayFlows(router *nsRef, spaces []netip.Prefix) error {
	if len(spaces) == 0 {
		return nil
	}
	in := func(a netip.Addr) bool {
		return slices.ContainsFunc(spaces, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	flows, err := deleteFlows(router, func(fl Flow, _ bool) bool { return in(fl.Client.Addr()) || in(fl.Target.Addr()) },
		func(fl Flow) { f.revocations.note(router.name, fl) })
	live := slices.DeleteFunc(flows, func(fl Flow) bool { return fl.Protocol != policy.TCP || !fl.active() })
	if len(live) > 0 {
		err = errors.Join(err, tickle(router, live))
		// The probes' answers cross the gateway before its route goes.
		time.Sleep(100 * time.Millisecond)
		f.log.Info("cut flows of removed VPN tunnels", "ns", router.name, "flows", len(live))
	}
	return err
}

// DeleteVPNGateway removes the gateway id of network: its flows cut, its
// charon stopped, its namespace (and so both legs and the router's routes
// toward it) removed, and dir. Deleting one that does not exist is not an
// error.
func (f *Fabric) DeleteVPNGateway(id, network, dir string) error {
	if err := checkID("VPN gateway", id); err != nil {
		return err
	}
	name := f.NamespaceName(KindVPNGateway, id)
	if err := ipsec.New(dir, name, f.log).Stop(); err != nil {
		return fmt.Errorf("fabric: delete VPN gateway %s: %w", id, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if network != "" {
		if router, err := f.open(f.NamespaceName(KindNetwork, network), nil); err == nil {
			var spaces []netip.Prefix
			if rl, _ := linkByName(router, GatewayLinkName(id)); rl != nil {
				routes, _ := routeList(router.h, &netlink.Route{LinkIndex: rl.Attrs().Index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
				for _, rt := range routes {
					if rt.Dst != nil && rt.Gw != nil {
						p, _ := netip.AddrFromSlice(rt.Dst.IP)
						bits, _ := rt.Dst.Mask.Size()
						spaces = append(spaces, netip.PrefixFrom(p.Unmap(), bits))
					}
				}
			}
			err := f.cutGatewayFlows(router, spaces)
			router.close()
			if err != nil {
				f.log.Warn("cutting a deleted VPN gateway's flows", "gateway", id, "err", err)
			}
		}
	}
	if err := f.deleteNS(name); err != nil {
		return fmt.Errorf("fabric: delete VPN gateway %s: %w", id, err)
	}
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("fabric: delete VPN gateway %s: %w", id, err)
		}
	}
	return nil
}

// VPNTunnelStates reads the state of each tunnel the gateway's charon
// has, by name; a gateway whose charon does not answer has none.
func (f *Fabric) VPNTunnelStates(ctx context.Context, id, dir string) (map[string]ipsec.State, error) {
	d := ipsec.New(dir, f.NamespaceName(KindVPNGateway, id), f.log)
	if !d.Running(ctx) {
		return nil, nil
	}
	names, err := d.Names(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]ipsec.State{}
	for _, n := range names {
		st, err := d.State(ctx, n)
		if err != nil {
			return nil, err
		}
		out[n] = st
	}
	return out, nil
}

// VPNGatewayNamespaces lists the gateway namespaces that exist, by ID.
func (f *Fabric) VPNGatewayNamespaces() ([]string, error) {
	names, err := f.ListOwned()
	if err != nil {
		return nil, err
	}
	prefix := f.NamespaceName(KindVPNGateway, "")
	var out []string
	for _, n := range names {
		if id, ok := strings.CutPrefix(n, prefix); ok {
			out = append(out, id)
		}
	}
	return out, nil
}
