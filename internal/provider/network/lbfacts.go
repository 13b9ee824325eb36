package network

import (
	"net/netip"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
)

// LBFacts is what the data path and the prober need of one load balancer:
// its network, its frontends' addresses and its rules with their pools'
// members resolved to addresses.
type LBFacts struct {
	ID        string
	VNet      arm.ResourceID // the frontends' virtual network (zero: no frontend)
	Frontends []netip.Addr
	Rules     []LBRuleFacts
	// ProxyProtocol: a private link service with enableProxyProtocol
	// uses one of its frontends, so all its health probes start with a
	// PROXY protocol v2 header, as Azure's do ("proxy protocol header
	// will also be included in HTTP/TCP health probes from host to the
	// backend virtual machines, even though there will be no client
	// information in the header"; every probe of the load balancer, not
	// only those of the service's frontend: MicrosoftDocs/azure-docs#64867).
	ProxyProtocol bool
}

// LBRuleFacts is one load balancing rule.
type LBRuleFacts struct {
	ID                string
	Frontend          netip.Addr
	Protocol          string // Tcp or Udp
	Port, BackendPort uint16
	// Members are the ipConfigurations of the rule's pool, by ID, with
	// their private addresses, in ID order.
	Members []LBMember
	// Probe is the rule's health probe, nil for none (every member is
	// healthy).
	Probe *LBProbeFacts
}

// LBMember is one backend ipConfiguration.
type LBMember struct {
	IPConfig string
	Addr     netip.Addr
}

// LBProbeFacts is one health probe.
type LBProbeFacts struct {
	ID        string
	Protocol  string // Tcp, Http or Https
	Port      uint16
	Path      string // Http and Https
	Interval  time.Duration
	Threshold int
	// AllProbedUp: when every member is probed down, new connections go
	// to all of them (noHealthyBackendsBehavior AllProbedUp).
	AllProbedUp bool
}

// LoadBalancerFacts returns the facts of the load balancer id, nil when it
// does not exist.
func LoadBalancerFacts(r arm.Reader, id arm.ResourceID) (*LBFacts, error) {
	var lb armnetwork.LoadBalancer
	ok, err := arm.Load(r, id, &lb)
	if err != nil || !ok || lb.Properties == nil {
		return nil, err
	}
	u := newUsage(r, id.Subscription)
	members, err := lbMembers(u, str(lb.ID))
	if err != nil {
		return nil, err
	}
	addrs := map[string]netip.Addr{}
	sums, err := u.NICSummaries()
	if err != nil {
		return nil, err
	}
	for _, n := range sums {
		for _, c := range n.configs {
			addrs[lkey(c.ID)] = c.Address
		}
	}
	out := &LBFacts{ID: str(lb.ID)}
	proxied, err := frontendUsers(r, id, true)
	if err != nil {
		return nil, err
	}
	out.ProxyProtocol = len(proxied) > 0
	fronts := map[string]netip.Addr{}
	for _, fe := range lb.Properties.FrontendIPConfigurations {
		if fe == nil || fe.Properties == nil || fe.Properties.Subnet == nil {
			continue
		}
		a, ok := parseIPv4(str(fe.Properties.PrivateIPAddress))
		s, err := arm.ParseID(str(fe.Properties.Subnet.ID))
		if !ok || err != nil {
			continue
		}
		out.VNet = s.Parent()
		out.Frontends = append(out.Frontends, a)
		fronts[lkey(str(fe.ID))] = a
	}
	probes := map[string]*LBProbeFacts{}
	for _, pr := range lb.Properties.Probes {
		if pr == nil || pr.Properties == nil || pr.Properties.Port == nil {
			continue
		}
		pp := pr.Properties
		f := &LBProbeFacts{ID: str(pr.ID), Protocol: string(*pp.Protocol), Port: uint16(*pp.Port), Path: str(pp.RequestPath),
			Interval: time.Duration(*pp.IntervalInSeconds) * time.Second, Threshold: int(*pp.ProbeThreshold),
			AllProbedUp: pp.NoHealthyBackendsBehavior != nil && *pp.NoHealthyBackendsBehavior == armnetwork.ProbeNoHealthyBackendsBehaviorAllProbedUp}
		probes[lkey(f.ID)] = f
	}
	for _, ru := range lb.Properties.LoadBalancingRules {
		if ru == nil || ru.Properties == nil || ru.Properties.FrontendIPConfiguration == nil {
			continue
		}
		rp := ru.Properties
		front, ok := fronts[lkey(str(rp.FrontendIPConfiguration.ID))]
		if !ok {
			continue
		}
		rf := LBRuleFacts{ID: str(ru.ID), Frontend: front, Protocol: string(*rp.Protocol), Port: uint16(*rp.FrontendPort), BackendPort: uint16(*rp.BackendPort)}
		if rp.Probe != nil {
			rf.Probe = probes[lkey(str(rp.Probe.ID))]
		}
		if rp.BackendAddressPool != nil {
			for _, ipc := range members[lkey(str(rp.BackendAddressPool.ID))] {
				if a := addrs[lkey(ipc)]; a.IsValid() {
					rf.Members = append(rf.Members, LBMember{IPConfig: ipc, Addr: a})
				}
			}
		}
		out.Rules = append(out.Rules, rf)
	}
	return out, nil
}

// IsLoadBalancer reports whether id is a load balancer's.
func IsLoadBalancer(id arm.ResourceID) bool { return strings.EqualFold(id.Type(), typeLB) }
