package network

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// ServiceFacts is what the data path needs of a private link service.
type ServiceFacts struct {
	ID arm.ResourceID
	// NIC is its managed NIC, which holds the NAT IPs; NATIP is the
	// primary one, the source its backends see.
	NIC   arm.ResourceID
	NATIP netip.Addr
	// ProxyProtocol is enableProxyProtocol.
	ProxyProtocol bool
	// Ports are the frontend ports its load balancers' TCP rules expose
	// on its frontends, sorted by port; a port two of its frontends
	// expose goes to the first frontend listed.
	Ports []ServicePort
}

// ServicePort is one port a private link service exposes, and the
// frontend address that serves it.
type ServicePort struct {
	Port     uint16
	Frontend netip.Addr
}

// ServiceFactsOf decodes a stored private link service document and
// reads the load balancers of its frontends. ok is false when the
// document is not a service with a NAT NIC and a NAT IP.
func ServiceFactsOf(r arm.Reader, kv store.KV) (ServiceFacts, bool, error) {
	var s armnetwork.PrivateLinkService
	if json.Unmarshal(kv.Value, &s) != nil || s.Properties == nil {
		return ServiceFacts{}, false, nil
	}
	id, err := arm.ParseID(str(s.ID))
	if err != nil {
		return ServiceFacts{}, false, nil
	}
	p := s.Properties
	f := ServiceFacts{ID: id, ProxyProtocol: p.EnableProxyProtocol != nil && *p.EnableProxyProtocol}
	if len(p.NetworkInterfaces) == 0 || p.NetworkInterfaces[0] == nil {
		return ServiceFacts{}, false, nil
	}
	if f.NIC, err = arm.ParseID(str(p.NetworkInterfaces[0].ID)); err != nil {
		return ServiceFacts{}, false, nil
	}
	for i, ic := range p.IPConfigurations {
		if ic == nil || ic.Properties == nil {
			continue
		}
		if i == 0 || (ic.Properties.Primary != nil && *ic.Properties.Primary) {
			f.NATIP, _ = parseIPv4(str(ic.Properties.PrivateIPAddress))
		}
	}
	if !f.NATIP.IsValid() {
		return ServiceFacts{}, false, nil
	}
	seen := map[uint16]bool{}
	for _, fe := range p.LoadBalancerFrontendIPConfigurations {
		if fe == nil {
			continue
		}
		feID, err := arm.ParseID(str(fe.ID))
		if err != nil || len(feID.Names) != 2 {
			continue
		}
		ports, err := frontendPorts(r, feID)
		if err != nil {
			return ServiceFacts{}, false, err
		}
		for _, sp := range ports {
			if !seen[sp.Port] {
				seen[sp.Port] = true
				f.Ports = append(f.Ports, sp)
			}
		}
	}
	slices.SortFunc(f.Ports, func(a, b ServicePort) int { return int(a.Port) - int(b.Port) })
	return f, true, nil
}

// frontendPorts returns the frontend's address with each port of its load
// balancer's TCP rules (protocol Tcp or All, a port set) on it.
func frontendPorts(r arm.Reader, feID arm.ResourceID) ([]ServicePort, error) {
	var lb armnetwork.LoadBalancer
	ok, err := arm.Load(r, feID.Parent(), &lb)
	if err != nil || !ok || lb.Properties == nil {
		return nil, err
	}
	fe, found := frontendOf(r, &lb, feID)
	if !found || fe.Properties == nil {
		return nil, nil
	}
	addr, ok := parseIPv4(str(fe.Properties.PrivateIPAddress))
	if !ok {
		return nil, nil
	}
	var out []ServicePort
	for _, ru := range lb.Properties.LoadBalancingRules {
		if ru == nil || ru.Properties == nil || ru.Properties.FrontendIPConfiguration == nil || ru.Properties.FrontendPort == nil || ru.Properties.Protocol == nil {
			continue
		}
		rp := ru.Properties
		if lkey(str(rp.FrontendIPConfiguration.ID)) != lkey(feID.String()) || *rp.FrontendPort <= 0 || *rp.FrontendPort > 65535 {
			continue
		}
		if !strings.EqualFold(string(*rp.Protocol), string(armnetwork.TransportProtocolTCP)) && !strings.EqualFold(string(*rp.Protocol), string(armnetwork.TransportProtocolAll)) {
			continue
		}
		out = append(out, ServicePort{Port: uint16(*rp.FrontendPort), Frontend: addr})
	}
	return out, nil
}
