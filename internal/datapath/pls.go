package datapath

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/names"
	"github.com/privlink/privlink/internal/provider/network"
	"github.com/privlink/privlink/internal/store"
)

// Private link services. An Approved endpoint to a service translates in
// its network's router as an endpoint to a server does (one EndpointNAT:
// its SNAT address, the guard, counters, revocation), toward the
// namespace of the service's NAT NIC (ServiceKind fabric.KindNIC) at the
// service's link address, an address of the SNAT range kept under
// dp/snat/{service ID} like an endpoint's. The NAT NIC (ServiceNIC)
// forwards what comes from its service links to the load balancer
// frontend of the port, from the NAT IP: the provider's router balances
// it as any client's connection. Overlapping consumer spaces never meet:
// each consumer's connections leave its router from its endpoint's own
// SNAT address and reach the provider's network from the NAT IP.

// linkService is a private link service the data path leads to.
type linkService struct {
	facts network.ServiceFacts
	// nic is the fabric ID of its NAT NIC.
	nic string
}

// ServiceNIC is what the namespace of a private link service's NAT NIC
// should hold.
type ServiceNIC struct {
	fabric.LinkService
	// ID is the service's ARM ID.
	ID arm.ResourceID
}

// Waiting reports whether err, from converging the NIC, says only that
// its namespace is not there yet (the network controller makes it).
func (s *ServiceNIC) Waiting(err error) bool { return allNotFound(err) }

// linkServices reads the private link services among kvs (the store's
// ARM documents), by lower-cased ID.
func (p *Planner) linkServices(rd arm.Reader, kvs []store.KV) (map[string]*linkService, error) {
	out := map[string]*linkService{}
	for _, kv := range kvs {
		id, ok := arm.ParseDocKey(kv.Key)
		if !ok || !strings.EqualFold(id.Type(), network.ServiceKind.Type) {
			continue
		}
		f, ok, err := network.ServiceFactsOf(rd, kv)
		if err != nil {
			return nil, err
		}
		if ok {
			out[strings.ToLower(f.ID.String())] = &linkService{facts: f, nic: names.Key(f.NIC)}
		}
	}
	return out, nil
}

// snatHolders are the keys allocateSNAT allocates for: every endpoint
// that wants a translation, and every private link service.
func (d *Desired) snatHolders(services map[string]*linkService) []string {
	var out []string
	for _, ep := range d.eps {
		out = append(out, strings.ToLower(ep.id.String()))
	}
	for key := range services {
		out = append(out, key)
	}
	return out
}

// addServices puts every service's NAT NIC in d, with its link address
// from snats.
func (d *Desired) addServices(services map[string]*linkService, snats map[string]netip.Addr) {
	for key, svc := range services {
		ls := fabric.LinkService{NIC: svc.nic, Addr: snats[key], NATIP: svc.facts.NATIP}
		for _, p := range svc.facts.Ports {
			ls.Ports = append(ls.Ports, fabric.LinkServicePort{Port: p.Port, Frontend: p.Frontend})
		}
		d.Services[svc.nic] = &ServiceNIC{LinkService: ls, ID: svc.facts.ID}
	}
}

// translation is the endpoint's translation in its network's router.
func (ep endpoint) translation(snats map[string]netip.Addr) fabric.EndpointNAT {
	t := fabric.EndpointNAT{Name: names.Key(ep.id), Endpoint: ep.addr, SNAT: snats[strings.ToLower(ep.id.String())]}
	if ep.server != nil {
		t.Ports, t.Service, t.ServiceAddr = ep.server.ports(), ep.server.Fabric, ep.server.desired.ServiceAddr
		return t
	}
	for _, p := range ep.service.facts.Ports {
		t.Ports = append(t.Ports, p.Port)
	}
	t.Service, t.ServiceKind, t.ServiceAddr = ep.service.nic, fabric.KindNIC, snats[strings.ToLower(ep.service.facts.ID.String())]
	// With PROXY protocol, a relay serves the endpoint's ports instead.
	t.Relay = ep.service.facts.ProxyProtocol
	return t
}

// Relay is one route of the PROXY protocol relay (internal/proxyrelay):
// it listens on an endpoint's address and port in its network's router,
// where the consumer's connection arrives untranslated (so the header
// carries the consumer's own address), and connects from the namespace
// of the service's NAT NIC, whose address is the NAT IP, to the load
// balancer frontend of the port. It runs in privlinkd: its sessions end
// with privlinkd's process, unlike the kernel path's.
type Relay struct {
	// Name is the endpoint's translation name and the port
	// ("{name}:{port}").
	Name string
	// Endpoint is the private endpoint's ARM ID, and Translation its
	// translation's name (metrics' labels).
	Endpoint, Translation string
	// Network is the fabric ID of the endpoint's network, where it
	// listens on Listen.
	Network string
	Listen  netip.AddrPort
	// NIC is the fabric ID of the NAT NIC it dials from, from Source (the
	// NAT IP), to Upstream.
	NIC      string
	Source   netip.Addr
	Upstream netip.AddrPort
	// LinkID is the endpoint connection's linkIdentifier.
	LinkID uint32
}

// relays are the endpoint's relay routes: one per port of a private link
// service with PROXY protocol; none else.
func (ep endpoint) relays(linkIDs map[string]uint32) []Relay {
	if ep.service == nil || !ep.service.facts.ProxyProtocol {
		return nil
	}
	var out []Relay
	for _, p := range ep.service.facts.Ports {
		out = append(out, Relay{Name: fmt.Sprintf("%s:%d", names.Key(ep.id), p.Port), Endpoint: ep.id.String(), Translation: names.Key(ep.id),
			Network: names.Key(ep.network),
			Listen:  netip.AddrPortFrom(ep.addr, p.Port), NIC: ep.service.nic, Source: ep.service.facts.NATIP,
			Upstream: netip.AddrPortFrom(p.Frontend, p.Port), LinkID: linkIDs[strings.ToLower(ep.id.String())]})
	}
	return out
}
