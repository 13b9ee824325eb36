package network

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/provider/privatelink"
	"github.com/privlink/privlink/internal/store"
)

// The facts controllers read of this provider's stored documents, and the
// step that settles a NIC's operation. A controller reads a NIC, an
// endpoint or a subnet through these, not through the SDK's models, so
// that what the provider's JSON means is said in one place, the provider
// that writes it. The decoders have arm.Memo's shape: a controller that
// looks at every document on each pass keeps a memo of them, and decodes
// a document once per revision.

// NICFacts is what controllers need of a stored NIC document.
type NICFacts struct {
	// ID and Name are the NIC's, as stored (empty when undecodable: every
	// controller skips such a NIC).
	ID, Name string
	// Endpoint tells a private endpoint's NIC, whose address lives on its
	// network's router rather than in a namespace of its own; EndpointID
	// is that endpoint's ID as stored.
	Endpoint   bool
	EndpointID string
	// Primary tells that Subnet and Addr are those of the NIC's primary
	// IPv4 configuration (false: it has none).
	Primary bool
	Subnet  arm.ResourceID
	Addr    netip.Addr
	// MAC is the NIC's MAC address (nil when it has none that parses).
	MAC net.HardwareAddr
	// DNSServers are the NIC's dnsSettings.dnsServers that parse as IPv4
	// addresses (none: the network's DNS).
	DNSServers []netip.Addr
}

// NICFactsOf decodes a stored NIC document (see arm.Memo); an undecodable
// one gives the zero NICFacts.
func NICFactsOf(kv store.KV) NICFacts {
	var nic armnetwork.Interface
	if json.Unmarshal(kv.Value, &nic) != nil {
		return NICFacts{}
	}
	f := NICFacts{ID: str(nic.ID), Name: str(nic.Name)}
	if nic.Properties != nil {
		if pe := nic.Properties.PrivateEndpoint; pe != nil {
			f.Endpoint, f.EndpointID = true, str(pe.ID)
		}
		if m := nic.Properties.MacAddress; m != nil {
			if mac, err := net.ParseMAC(strings.ReplaceAll(*m, "-", ":")); err == nil {
				f.MAC = mac
			}
		}
		if d := nic.Properties.DNSSettings; d != nil {
			for _, s := range d.DNSServers {
				if a, err := netip.ParseAddr(strings.TrimSpace(str(s))); err == nil && a.Is4() {
					f.DNSServers = append(f.DNSServers, a)
				}
			}
		}
	}
	f.Subnet, f.Addr, f.Primary = primaryIP(&nic)
	return f
}

// primaryIP returns the subnet and address of a NIC's primary IPv4
// configuration: the first one, or one marked primary after it.
func primaryIP(nic *armnetwork.Interface) (arm.ResourceID, netip.Addr, bool) {
	if nic.Properties == nil {
		return arm.ResourceID{}, netip.Addr{}, false
	}
	for i, ic := range nic.Properties.IPConfigurations {
		if ic == nil || ic.Properties == nil || ic.Properties.Subnet == nil || ic.Properties.Subnet.ID == nil || ic.Properties.PrivateIPAddress == nil {
			continue
		}
		if i > 0 && (ic.Properties.Primary == nil || !*ic.Properties.Primary) {
			continue
		}
		sub, err := arm.ParseID(*ic.Properties.Subnet.ID)
		addr, err2 := netip.ParseAddr(*ic.Properties.PrivateIPAddress)
		if err == nil && err2 == nil && addr.Is4() {
			return sub, addr, true
		}
	}
	return arm.ResourceID{}, netip.Addr{}, false
}

// EndpointFacts is what controllers need of a stored private endpoint
// document.
type EndpointFacts struct {
	// Err is set when the document cannot be decoded or holds a bad ID;
	// the other fields are then zero.
	Err error
	ID  arm.ResourceID
	// Subnet is the endpoint's subnet (HasSubnet false when it names
	// none that parses).
	Subnet    arm.ResourceID
	HasSubnet bool
	// Target is the private-link resource its connection leads to, and
	// Status that connection's state (privatelink.StatusApproved, ...);
	// HasTarget is false when it has no connection that names one.
	Target    arm.ResourceID
	Status    string
	HasTarget bool
	// NIC is the endpoint's network interface (HasNIC false before it
	// has one).
	NIC    arm.ResourceID
	HasNIC bool
}

// Approved tells whether the endpoint's connection is Approved.
func (e EndpointFacts) Approved() bool {
	return strings.EqualFold(e.Status, privatelink.StatusApproved)
}

// EndpointFactsOf decodes a stored private endpoint document (see
// arm.Memo).
func EndpointFactsOf(kv store.KV) EndpointFacts {
	var pe armnetwork.PrivateEndpoint
	if err := json.Unmarshal(kv.Value, &pe); err != nil {
		return EndpointFacts{Err: err}
	}
	id, err := arm.ParseID(str(pe.ID))
	if err != nil {
		return EndpointFacts{Err: fmt.Errorf("bad id %q: %w", str(pe.ID), err)}
	}
	f := EndpointFacts{ID: id}
	if pe.Properties != nil && pe.Properties.Subnet != nil {
		f.Subnet, err = arm.ParseID(str(pe.Properties.Subnet.ID))
		f.HasSubnet = err == nil
	}
	f.Target, f.Status, f.HasTarget = endpointTarget(&pe)
	f.NIC, f.HasNIC = nicIDOf(&pe)
	return f
}

// NetworkPrefixes returns the IPv4 prefixes of every subnet of virtual
// network vnet.
func NetworkPrefixes(r arm.Reader, vnet arm.ResourceID) ([]netip.Prefix, error) {
	subnets, err := arm.LoadAll[armnetwork.Subnet](r, vnet.ChildCollection("subnets"))
	if err != nil {
		return nil, fmt.Errorf("subnets of %s: %w", vnet, err)
	}
	var out []netip.Prefix
	for _, s := range subnets {
		out = append(out, v4(subnetPrefixes(&s))...)
	}
	return out, nil
}

// SubnetPrefixes returns the IPv4 prefixes of subnet id; ok is false when
// the subnet does not exist.
func SubnetPrefixes(r arm.Reader, id arm.ResourceID) (prefixes []netip.Prefix, ok bool, err error) {
	var s armnetwork.Subnet
	if ok, err = arm.Load(r, id, &s); err != nil || !ok {
		return nil, false, err
	}
	return v4(subnetPrefixes(&s)), true, nil
}

// SettleNIC records, in tx, that NIC id's namespace (or, for a private
// endpoint's NIC, its address and translation) matches its document: its
// provisioningState and its IP configurations' become Succeeded, or
// Failed when failure is not nil, and the operations waiting on it finish
// (failed with failure, an *arm.Error, if not nil). A NIC that is gone
// only has its operations finished.
func SettleNIC(tx store.Tx, id arm.ResourceID, failure error) error {
	var nic armnetwork.Interface
	ok, err := arm.Load(tx, id, &nic)
	if err != nil {
		return err
	}
	if ok && nic.Properties != nil {
		state := armnetwork.ProvisioningStateSucceeded
		if failure != nil {
			state = armnetwork.ProvisioningStateFailed
		}
		if nic.Properties.ProvisioningState == nil || *nic.Properties.ProvisioningState != state {
			nic.Properties.ProvisioningState = &state
			for _, ic := range nic.Properties.IPConfigurations {
				if ic != nil && ic.Properties != nil {
					ic.Properties.ProvisioningState = &state
				}
			}
			if err := arm.Save(tx, id, &nic); err != nil {
				return err
			}
		}
	}
	return arm.FinishOperations(tx, id, failure)
}
