package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/privlink/privlink/internal/addrpool"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/controller"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/identity"
	"github.com/privlink/privlink/internal/store"
)

// Simulated on-premises sites: privlink's own API (not ARM), for the
// operator only, as internet hosts are. Handlers validate and record
// (controller.UpdateSite); the sites controller builds, and each write
// waits, bounded, for its answer.
//
//	GET    /privlink/v1/sites                          list
//	GET    /privlink/v1/sites/{site}                   one
//	PUT    /privlink/v1/sites/{site}                   create {addressSpace, gatewayIp, hosts | hostCount}
//	DELETE /privlink/v1/sites/{site}                   delete (every namespace, the IKE daemon)
//	PUT    /privlink/v1/sites/{site}/connections/{c}   {peer, sharedKey, remoteSpaces}
//	DELETE /privlink/v1/sites/{site}/connections/{c}
//	PUT    /privlink/v1/sites/{site}/dns               {forwards: [{zone, address}]}

// maxSiteHosts bounds a site's hosts.
const maxSiteHosts = 64

// siteWait bounds how long a write waits for the controller.
const siteWait = 60 * time.Second

func registerSites(mux *http.ServeMux, ids *identity.Service, fab *fabric.Fabric, st store.Store) {
	h := &sitesAPI{fab: fab, st: st}
	for pattern, fn := range map[string]http.HandlerFunc{
		"GET /privlink/v1/sites":                                    h.list,
		"GET /privlink/v1/sites/{site}":                             h.get,
		"PUT /privlink/v1/sites/{site}":                             h.create,
		"DELETE /privlink/v1/sites/{site}":                          h.delete,
		"PUT /privlink/v1/sites/{site}/connections/{connection}":    h.connect,
		"DELETE /privlink/v1/sites/{site}/connections/{connection}": h.disconnect,
		"PUT /privlink/v1/sites/{site}/dns":                         h.setDNS,
	} {
		mux.Handle(pattern, adminOnly(ids, h.needFabric(fn)))
	}
}

type sitesAPI struct {
	fab *fabric.Fabric
	st  store.Store
}

// SiteView is what the sites API answers for a site.
type SiteView struct {
	Name         string `json:"name"`
	AddressSpace string `json:"addressSpace"`
	GatewayIP    string `json:"gatewayIp"`
	// RouterAddress is the hosts' gateway and DNS server.
	RouterAddress   string                   `json:"routerAddress"`
	DeviceNamespace string                   `json:"deviceNamespace"`
	Hosts           []SiteHostView           `json:"hosts"`
	Connections     []SiteConnectionView     `json:"connections"`
	DNSForwards     []controller.SiteForward `json:"dnsForwards"`
	Error           string                   `json:"error,omitempty"`
}

// SiteHostView is one host of a site and its namespace.
type SiteHostView struct {
	Name      string `json:"name"`
	Address   string `json:"address"`
	Namespace string `json:"namespace"`
}

// SiteConnectionView is one connection of a site's VPN device, without
// its key.
type SiteConnectionView struct {
	Name         string   `json:"name"`
	Peer         string   `json:"peer"`
	RemoteSpaces []string `json:"remoteSpaces"`
	Status       string   `json:"connectionStatus"`
}

func (h *sitesAPI) view(s controller.Site) SiteView {
	v := SiteView{Name: s.Name, AddressSpace: s.AddressSpace, GatewayIP: s.GatewayIP,
		DeviceNamespace: h.fab.SiteDeviceNamespace(s.Name), DNSForwards: s.DNSForwards, Error: s.Error,
		Hosts: []SiteHostView{}, Connections: []SiteConnectionView{}}
	if v.DNSForwards == nil {
		v.DNSForwards = []controller.SiteForward{}
	}
	if p, err := netip.ParsePrefix(s.AddressSpace); err == nil {
		v.RouterAddress = fabric.SiteRouterAddr(p).String()
	}
	for _, host := range s.Hosts {
		v.Hosts = append(v.Hosts, SiteHostView{Name: host.Name, Address: host.Address, Namespace: h.fab.SiteHostNamespace(s.Name, host.Name)})
	}
	for _, c := range s.Connections {
		st := s.Status[c.Name]
		if st == "" {
			st = "Unknown"
		}
		v.Connections = append(v.Connections, SiteConnectionView{Name: c.Name, Peer: c.Peer, RemoteSpaces: c.RemoteSpaces, Status: st})
	}
	return v
}

func (h *sitesAPI) needFabric(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.fab == nil {
			writeErr(w, r, arm.Errorf(http.StatusNotImplemented, "FabricUnavailable", "privlinkd runs without root, so it has no namespaces; restart it as root."))
			return
		}
		next(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func siteName(r *http.Request) (string, error) {
	name := r.PathValue("site")
	if fabric.CheckSiteName("site", name) != nil {
		return "", arm.InvalidParameter("name", "The site name '%s' is invalid: use 1-24 lower-case letters, digits and hyphens, starting and ending with a letter or digit.", name)
	}
	return name, nil
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return arm.InvalidRequestContent(err)
	}
	return nil
}

func siteNotFound(name string) error {
	return arm.Errorf(http.StatusNotFound, "SiteNotFound", "The site '%s' does not exist: `privlink site list` shows the sites, `privlink site create` makes one.", name)
}

func (h *sitesAPI) list(w http.ResponseWriter, r *http.Request) {
	sites, err := controller.ListSites(r.Context(), h.st)
	if err != nil {
		writeErr(w, r, err)
		return
	}
	out := struct {
		Value []SiteView `json:"value"`
	}{Value: []SiteView{}}
	for _, s := range sites {
		if !s.Deleting {
			out.Value = append(out.Value, h.view(s))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *sitesAPI) get(w http.ResponseWriter, r *http.Request) {
	name, err := siteName(r)
	if err != nil {
		writeErr(w, r, err)
		return
	}
	kv, err := h.st.Get(r.Context(), controller.SiteKey(name))
	var s controller.Site
	if err == nil {
		err = json.Unmarshal(kv.Value, &s)
	}
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && s.Deleting):
		writeErr(w, r, siteNotFound(name))
	case err != nil:
		writeErr(w, r, err)
	default:
		writeJSON(w, http.StatusOK, h.view(s))
	}
}

// update runs controller.UpdateSite bounded by siteWait and answers the
// site as the controller left it (status), or the error.
func (h *sitesAPI) update(w http.ResponseWriter, r *http.Request, name string, status int, fn func(tx store.Tx, s *controller.Site, exists bool) error) {
	ctx, cancel := context.WithTimeout(r.Context(), siteWait)
	defer cancel()
	s, err := controller.UpdateSite(ctx, h.st, name, fn)
	var ae *arm.Error
	switch {
	case errors.As(err, &ae):
		writeErr(w, r, ae)
	case err != nil && ctx.Err() != nil:
		writeErr(w, r, arm.Errorf(http.StatusGatewayTimeout, "SiteNotReady",
			"The site %s was recorded but not built within %v; privlinkd's log says why. `privlink site list` shows its state.", name, siteWait))
	case err != nil:
		writeErr(w, r, err)
	case s.Name == "":
		w.WriteHeader(http.StatusNoContent)
	case s.Error != "":
		writeErr(w, r, arm.Errorf(http.StatusInternalServerError, "SiteFailed", "The site %s is recorded, but privlinkd could not build all of it: %s", name, s.Error))
	default:
		writeJSON(w, status, h.view(s))
	}
}

func (h *sitesAPI) create(w http.ResponseWriter, r *http.Request) {
	name, err := siteName(r)
	if err != nil {
		writeErr(w, r, err)
		return
	}
	var in struct {
		AddressSpace string   `json:"addressSpace"`
		GatewayIP    string   `json:"gatewayIp"`
		Hosts        []string `json:"hosts"`
		HostCount    int      `json:"hostCount"`
	}
	if err := decodeBody(w, r, &in); err != nil {
		writeErr(w, r, err)
		return
	}
	space, err := netip.ParsePrefix(in.AddressSpace)
	if err != nil || fabric.CheckSiteSpace(space) != nil || space.Masked() != space {
		writeErr(w, r, arm.InvalidParameter("addressSpace", "The address space '%s' is invalid: give an IPv4 prefix in CIDR form (192.168.0.0/16) with its host bits 0, from /8 to /29, outside 198.18.0.0/15, 169.254.0.0/16, 127.0.0.0/8 and 224.0.0.0/3.", in.AddressSpace))
		return
	}
	gw, err := netip.ParseAddr(in.GatewayIP)
	if err != nil || !addrpool.Public.Usable(gw) {
		writeErr(w, r, arm.InvalidParameter("gatewayIp", "The gateway IP '%s' is invalid: give an address of the emulated internet, 198.18.0.0/15, outside 198.18.0.0/24 and not ending in .0 or .255 (198.18.50.1).", in.GatewayIP))
		return
	}
	hosts := in.Hosts
	switch {
	case len(hosts) > 0 && in.HostCount > 0:
		writeErr(w, r, arm.InvalidParameter("hosts", "Give either hosts (names) or hostCount, not both."))
		return
	case in.HostCount < 0 || in.HostCount > maxSiteHosts || len(hosts) > maxSiteHosts:
		writeErr(w, r, arm.InvalidParameter("hostCount", "A site has from 0 to %d hosts.", maxSiteHosts))
		return
	case len(hosts) == 0 && in.HostCount == 0:
		hosts = []string{"h1"}
	case len(hosts) == 0:
		for i := range in.HostCount {
			hosts = append(hosts, fmt.Sprintf("h%d", i+1))
		}
	}
	for i, hn := range hosts {
		if fabric.CheckSiteName("host", hn) != nil || slices.Contains(hosts[:i], hn) {
			writeErr(w, r, arm.InvalidParameter("hosts", "The host name '%s' is invalid or given twice: use 1-24 lower-case letters, digits and hyphens, starting and ending with a letter or digit.", hn))
			return
		}
	}
	addrs := siteHostAddrs(space, len(hosts))
	if addrs == nil {
		writeErr(w, r, arm.InvalidParameter("addressSpace", "The address space %s has no room for %d hosts besides the router and the VPN device: give a larger one.", space, len(hosts)))
		return
	}
	h.update(w, r, name, http.StatusCreated, func(tx store.Tx, s *controller.Site, exists bool) error {
		if exists {
			return arm.Conflict("SiteExists", "The site '%s' exists already (%s, gateway %s): `privlink site delete %s` first, or choose another name.", name, s.AddressSpace, s.GatewayIP, name)
		}
		holder, err := addrpool.Holder(tx, gw)
		if err != nil {
			return err
		}
		if holder != "" {
			return arm.Conflict("PublicIPAddressInUse", "The gateway IP %s is in use by %s: choose another address of 198.18.0.0/15.", gw, holder)
		}
		if _, err := tx.Get(controller.InternetHostsPrefix + gw.String()); err == nil {
			return arm.Conflict("PublicIPAddressInUse", "The gateway IP %s is an internet host's (privlink exec --internet): choose another address of 198.18.0.0/15.", gw)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := tx.Put(addrpool.Key(gw), []byte(controller.SiteHolder(name))); err != nil {
			return err
		}
		s.AddressSpace, s.GatewayIP = space.String(), gw.String()
		for i, hn := range hosts {
			s.Hosts = append(s.Hosts, controller.SiteHost{Name: hn, Address: addrs[i].String()})
		}
		return nil
	})
}

// siteHostAddrs gives n hosts addresses of space after the router's and
// the device's: from the tenth address on (192.168.0.10) where the space
// has room, else right after the device's. nil means no room.
func siteHostAddrs(space netip.Prefix, n int) []netip.Addr {
	first := fabric.SiteDeviceAddr(space).Next()
	if space.Bits() <= 27 {
		first = space.Addr()
		for range 10 {
			first = first.Next()
		}
	}
	out := make([]netip.Addr, 0, n)
	for a := first; len(out) < n; a = a.Next() {
		if !space.Contains(a) || a == fabric.SiteLastAddr(space) {
			return nil
		}
		out = append(out, a)
	}
	return out
}

func (h *sitesAPI) delete(w http.ResponseWriter, r *http.Request) {
	name, err := siteName(r)
	if err != nil {
		writeErr(w, r, err)
		return
	}
	h.update(w, r, name, http.StatusOK, func(tx store.Tx, s *controller.Site, exists bool) error {
		if !exists {
			return siteNotFound(name)
		}
		s.Deleting = true
		return nil
	})
}

var connNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_]{0,31}$`)

func (h *sitesAPI) connect(w http.ResponseWriter, r *http.Request) {
	name, err := siteName(r)
	if err != nil {
		writeErr(w, r, err)
		return
	}
	conn := r.PathValue("connection")
	if !connNameRE.MatchString(conn) {
		writeErr(w, r, arm.InvalidParameter("name", "The connection name '%s' is invalid: use 1-32 letters, digits and underscores, starting with a letter or digit.", conn))
		return
	}
	var in struct {
		Peer         string   `json:"peer"`
		SharedKey    string   `json:"sharedKey"`
		RemoteSpaces []string `json:"remoteSpaces"`
	}
	if err := decodeBody(w, r, &in); err != nil {
		writeErr(w, r, err)
		return
	}
	peer, err := netip.ParseAddr(in.Peer)
	if err != nil || !fabric.InternetPrefix.Contains(peer) || peer == fabric.InternetGateway {
		writeErr(w, r, arm.InvalidParameter("peer", "The peer '%s' is invalid: give the public address of the other VPN gateway, in 198.18.0.0/15 (an Azure VPN gateway's public IP address, or another site's gateway IP).", in.Peer))
		return
	}
	if in.SharedKey == "" || len(in.SharedKey) > 128 || strings.ContainsFunc(in.SharedKey, func(c rune) bool { return c < 0x20 || c > 0x7e }) {
		writeErr(w, r, arm.InvalidParameter("sharedKey", "The shared key is invalid: give 1-128 printable ASCII characters, the same as the other side's connection sharedKey."))
		return
	}
	if len(in.RemoteSpaces) == 0 {
		writeErr(w, r, arm.InvalidParameter("remoteSpaces", "Give the address space behind the peer (the Azure virtual network's, e.g. 10.0.0.0/16)."))
		return
	}
	var remote []string
	for _, rs := range in.RemoteSpaces {
		p, err := netip.ParsePrefix(rs)
		if err != nil || !p.Addr().Is4() || p.Masked() != p || p.Overlaps(fabric.InternetPrefix) {
			writeErr(w, r, arm.InvalidParameter("remoteSpaces", "The remote space '%s' is invalid: give an IPv4 prefix in CIDR form with its host bits 0, outside 198.18.0.0/15.", rs))
			return
		}
		remote = append(remote, p.String())
	}
	h.update(w, r, name, http.StatusOK, func(_ store.Tx, s *controller.Site, exists bool) error {
		if !exists || s.Deleting {
			return siteNotFound(name)
		}
		space, _ := netip.ParsePrefix(s.AddressSpace)
		for _, rs := range remote {
			if p := netip.MustParsePrefix(rs); p.Overlaps(space) {
				return arm.InvalidParameter("remoteSpaces", "The remote space %s overlaps the site's own space %s: the two sides of a tunnel need distinct spaces.", rs, space)
			}
		}
		if peer.String() == s.GatewayIP {
			return arm.InvalidParameter("peer", "The peer %s is the site's own gateway IP: give the other gateway's public address.", peer)
		}
		sc := controller.SiteConnection{Name: conn, Peer: peer.String(), SharedKey: in.SharedKey, RemoteSpaces: remote}
		i := slices.IndexFunc(s.Connections, func(c controller.SiteConnection) bool { return c.Name == conn })
		if i < 0 {
			s.Connections = append(s.Connections, sc)
		} else {
			s.Connections[i] = sc
		}
		return nil
	})
}

func (h *sitesAPI) disconnect(w http.ResponseWriter, r *http.Request) {
	name, err := siteName(r)
	if err != nil {
		writeErr(w, r, err)
		return
	}
	conn := r.PathValue("connection")
	h.update(w, r, name, http.StatusOK, func(_ store.Tx, s *controller.Site, exists bool) error {
		if !exists || s.Deleting {
			return siteNotFound(name)
		}
		i := slices.IndexFunc(s.Connections, func(c controller.SiteConnection) bool { return c.Name == conn })
		if i < 0 {
			return arm.Errorf(http.StatusNotFound, "ConnectionNotFound", "The site %s has no connection '%s': `privlink site list` shows its connections.", name, conn)
		}
		s.Connections = slices.Delete(s.Connections, i, i+1)
		return nil
	})
}

var zoneRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.?$`)

func (h *sitesAPI) setDNS(w http.ResponseWriter, r *http.Request) {
	name, err := siteName(r)
	if err != nil {
		writeErr(w, r, err)
		return
	}
	var in struct {
		Forwards []controller.SiteForward `json:"forwards"`
	}
	if err := decodeBody(w, r, &in); err != nil {
		writeErr(w, r, err)
		return
	}
	var fwd []controller.SiteForward
	for _, f := range in.Forwards {
		zone := strings.ToLower(strings.TrimSuffix(f.Zone, "."))
		if len(zone) > 253 || !zoneRE.MatchString(zone) {
			writeErr(w, r, arm.InvalidParameter("forwards.zone", "The zone '%s' is invalid: give a DNS name such as privatelink.postgres.database.azure.com.", f.Zone))
			return
		}
		a, err := netip.ParseAddr(f.Address)
		if err != nil || !a.Is4() {
			writeErr(w, r, arm.InvalidParameter("forwards.address", "The forwarder address '%s' of zone %s is invalid: give the IPv4 address of a DNS server (a DNS private resolver's inbound endpoint, e.g. 10.0.9.4).", f.Address, zone))
			return
		}
		if slices.ContainsFunc(fwd, func(o controller.SiteForward) bool { return o.Zone == zone }) {
			writeErr(w, r, arm.InvalidParameter("forwards.zone", "The zone %s is given twice.", zone))
			return
		}
		fwd = append(fwd, controller.SiteForward{Zone: zone, Address: a.String()})
	}
	h.update(w, r, name, http.StatusOK, func(_ store.Tx, s *controller.Site, exists bool) error {
		if !exists || s.Deleting {
			return siteNotFound(name)
		}
		s.DNSForwards = fwd
		return nil
	})
}
