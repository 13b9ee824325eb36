package network

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// usage answers who references what within one subscription. References
// are only stored on the referring side (a NIC names its subnet, a subnet
// its NSG), so every back-reference Azure reports, and every in-use check,
// is a scan of the referring documents. A usage loads each collection once,
// on first need, from the reader it was made with (inside a transaction,
// the transaction itself, so the answers are serializable).
//
// The slices it returns are shared: callers must not modify them.
type usage struct {
	r         arm.Reader
	sub       string
	nics      []armnetwork.Interface
	summaries []nicSummary
	subnets   []armnetwork.Subnet
	rules     []armnetwork.SecurityRule
	held      []ipConfigRef // addresses of non-NIC holders (holders.go)
	loaded    map[string]bool
	memo      *arm.Memo[nicSummary] // nil: decode every NIC
}

func newUsage(r arm.Reader, subscription string) *usage {
	return &usage{r: r, sub: subscription, loaded: map[string]bool{}}
}

// newUsage returns a usage that reads NICs through the provider's memo:
// creating a NIC (or an endpoint, whose NIC it is) checks every address
// and MAC address of the subscription, inside the write transaction.
func (p *Provider) newUsage(r arm.Reader, subscription string) *usage {
	u := newUsage(r, subscription)
	u.memo = p.nicSummaries
	return u
}

// nicSummary is what the address and MAC address checks need of a NIC.
type nicSummary struct {
	id, mac string
	configs []ipConfigRef // every ipConfiguration with a subnet
}

func summarizeNIC(n *armnetwork.Interface) nicSummary {
	s := nicSummary{id: str(n.ID)}
	if n.Properties == nil {
		return s
	}
	s.mac = str(n.Properties.MacAddress)
	rg := ""
	if id, err := arm.ParseID(str(n.ID)); err == nil {
		rg = id.ResourceGroup
	}
	for _, ic := range n.Properties.IPConfigurations {
		if ic == nil || ic.Properties == nil || ic.Properties.Subnet == nil {
			continue
		}
		ref := ipConfigRef{ID: str(ic.ID), NIC: str(n.ID), NICRG: rg, Subnet: str(ic.Properties.Subnet.ID), PrivateEndpoint: managedBy(n),
			PrivateLinkService: serviceOf(n), ASGs: asgIDs(ic.Properties.ApplicationSecurityGroups)}
		if a, err := netip.ParseAddr(str(ic.Properties.PrivateIPAddress)); err == nil {
			ref.Address = a
		}
		s.configs = append(s.configs, ref)
	}
	return s
}

// decodeNICSummary is summarizeNIC of a stored NIC (see arm.Memo); an
// undecodable document gives the zero summary, as the error is reported
// by whoever loads it whole.
func decodeNICSummary(kv store.KV) nicSummary {
	var n armnetwork.Interface
	if json.Unmarshal(kv.Value, &n) != nil {
		return nicSummary{}
	}
	return summarizeNIC(&n)
}

// NICSummaries returns the summary of every network interface of the
// subscription.
func (u *usage) NICSummaries() ([]nicSummary, error) {
	if u.loaded["summaries"] {
		return u.summaries, nil
	}
	var out []nicSummary
	if u.memo == nil {
		nics, err := u.NICs()
		if err != nil {
			return nil, err
		}
		for i := range nics {
			out = append(out, summarizeNIC(&nics[i]))
		}
	} else {
		coll := subColl(u.sub, "networkInterfaces")
		kvs, err := u.r.List(arm.CollectionPrefix(coll))
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", coll, err)
		}
		for _, kv := range kvs {
			out = append(out, u.memo.Of(kv))
		}
	}
	u.summaries, u.loaded["summaries"] = out, true
	return out, nil
}

// NICs returns every network interface of the subscription.
func (u *usage) NICs() ([]armnetwork.Interface, error) {
	if !u.loaded["nics"] {
		v, err := arm.LoadAll[armnetwork.Interface](u.r, subColl(u.sub, "networkInterfaces"))
		if err != nil {
			return nil, err
		}
		u.nics, u.loaded["nics"] = v, true
	}
	return u.nics, nil
}

// Subnets returns every subnet of every virtual network of the subscription.
func (u *usage) Subnets() ([]armnetwork.Subnet, error) {
	if !u.loaded["subnets"] {
		v, err := arm.LoadAll[armnetwork.Subnet](u.r, subColl(u.sub, "virtualNetworks", "subnets"))
		if err != nil {
			return nil, err
		}
		u.subnets, u.loaded["subnets"] = v, true
	}
	return u.subnets, nil
}

// Rules returns every security rule of every NSG of the subscription.
func (u *usage) Rules() ([]armnetwork.SecurityRule, error) {
	if !u.loaded["rules"] {
		v, err := arm.LoadAll[armnetwork.SecurityRule](u.r, subColl(u.sub, "networkSecurityGroups", "securityRules"))
		if err != nil {
			return nil, err
		}
		u.rules, u.loaded["rules"] = v, true
	}
	return u.rules, nil
}

// ipConfigRef is one NIC ipConfiguration as the in-use checks see it.
type ipConfigRef struct {
	ID string // the ipConfiguration's ID
	// NIC is the ID of the document that holds the ipConfiguration: a
	// NIC, or a load balancer for one of its frontendIPConfigurations.
	NIC     string
	NICRG   string // NIC's resource group
	Subnet  string // the subnet's ID
	Address netip.Addr
	// PrivateEndpoint is the ID of the private endpoint that owns the
	// NIC, "" for an ordinary NIC.
	PrivateEndpoint string
	// PrivateLinkService is the ID of the private link service whose NAT
	// IP the ipConfiguration is, "" for any other.
	PrivateLinkService string
	// ASGs are the IDs of the application security groups the
	// ipConfiguration is a member of.
	ASGs []string
}

// user names who holds the address in messages: the private endpoint
// for an endpoint's NIC, else the ipConfiguration.
func (r ipConfigRef) user() string {
	if r.PrivateEndpoint != "" {
		return r.PrivateEndpoint
	}
	return r.ID
}

// ipConfigs lists the ipConfigurations of every NIC whose subnet satisfies
// match (given the lower-cased subnet ID).
func (u *usage) ipConfigs(match func(subnet string) bool) ([]ipConfigRef, error) {
	nics, err := u.NICSummaries()
	if err != nil {
		return nil, err
	}
	if !u.loaded["held"] {
		if u.held, err = heldRefs(u.r, u.sub); err != nil {
			return nil, err
		}
		u.loaded["held"] = true
	}
	var out []ipConfigRef
	for _, n := range nics {
		for _, ref := range n.configs {
			if match(lkey(ref.Subnet)) {
				out = append(out, ref)
			}
		}
	}
	for _, ref := range u.held {
		if match(lkey(ref.Subnet)) {
			out = append(out, ref)
		}
	}
	return out, nil
}

// inSubnet lists the ipConfigurations in one subnet.
func (u *usage) inSubnet(subnet string) ([]ipConfigRef, error) {
	k := lkey(subnet)
	return u.ipConfigs(func(s string) bool { return s == k })
}

// inVNet lists the ipConfigurations in any subnet of a virtual network.
func (u *usage) inVNet(vnet string) ([]ipConfigRef, error) {
	k := lkey(vnet) + "/subnets/"
	return u.ipConfigs(func(s string) bool { return strings.HasPrefix(s, k) })
}

// subnetsReferencing lists the IDs of subnets whose NSG (nsg true) or route
// table reference is id.
func (u *usage) subnetsReferencing(id string, nsg bool) ([]string, error) {
	subnets, err := u.Subnets()
	if err != nil {
		return nil, err
	}
	k := lkey(id)
	var out []string
	for _, s := range subnets {
		if s.Properties == nil {
			continue
		}
		var ref *string
		if nsg && s.Properties.NetworkSecurityGroup != nil {
			ref = s.Properties.NetworkSecurityGroup.ID
		}
		if !nsg && s.Properties.RouteTable != nil {
			ref = s.Properties.RouteTable.ID
		}
		if ref != nil && lkey(*ref) == k {
			out = append(out, str(s.ID))
		}
	}
	return out, nil
}

// nicsWithNSG lists the IDs of NICs whose networkSecurityGroup is id.
func (u *usage) nicsWithNSG(id string) ([]string, error) {
	nics, err := u.NICs()
	if err != nil {
		return nil, err
	}
	k := lkey(id)
	var out []string
	for _, n := range nics {
		if n.Properties != nil && n.Properties.NetworkSecurityGroup != nil && lkey(str(n.Properties.NetworkSecurityGroup.ID)) == k {
			out = append(out, str(n.ID))
		}
	}
	return out, nil
}

// asgUsers lists the ipConfigurations and security rules that reference the
// application security group id.
func (u *usage) asgUsers(id string) ([]string, error) {
	nics, err := u.NICs()
	if err != nil {
		return nil, err
	}
	rules, err := u.Rules()
	if err != nil {
		return nil, err
	}
	k := lkey(id)
	var out []string
	for _, n := range nics {
		if n.Properties == nil {
			continue
		}
		for _, ic := range n.Properties.IPConfigurations {
			if ic != nil && ic.Properties != nil && refsContain(asgIDs(ic.Properties.ApplicationSecurityGroups), k) {
				out = append(out, str(ic.ID))
			}
		}
	}
	for _, r := range rules {
		if r.Properties != nil && (refsContain(asgIDs(r.Properties.SourceApplicationSecurityGroups), k) ||
			refsContain(asgIDs(r.Properties.DestinationApplicationSecurityGroups), k)) {
			out = append(out, str(r.ID))
		}
	}
	return out, nil
}

func asgIDs(asgs []*armnetwork.ApplicationSecurityGroup) []string {
	var out []string
	for _, a := range asgs {
		if a != nil && a.ID != nil {
			out = append(out, *a.ID)
		}
	}
	return out
}

func refsContain(ids []string, k string) bool {
	for _, id := range ids {
		if lkey(id) == k {
			return true
		}
	}
	return false
}

// subnetRefs turns IDs into the [{id}] lists Azure reports, nil when
// empty (Azure omits empty back-reference lists).
func subnetRefs(ids []string) []*armnetwork.Subnet {
	var out []*armnetwork.Subnet
	for _, id := range ids {
		out = append(out, &armnetwork.Subnet{ID: ptr(id)})
	}
	return out
}

// inGroup reports whether the ID lies in resource group rg.
func inGroup(id, rg string) bool {
	p, err := arm.ParseID(id)
	return err == nil && strings.EqualFold(p.ResourceGroup, rg)
}

// outside keeps the IDs that are not in resource group rg.
func outside(ids []string, rg string) []string {
	var out []string
	for _, id := range ids {
		if !inGroup(id, rg) {
			out = append(out, id)
		}
	}
	return out
}
