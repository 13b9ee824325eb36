package network

import (
	"fmt"
	"net/netip"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
)

// Address holders: resources of other providers that hold private addresses
// in subnets without a NIC of their own (a DNS resolver's inbound endpoint).
// Their addresses count exactly like NIC ipConfigurations: the allocator
// never hands them out twice, a subnet or network that holds one cannot be
// deleted (InUseSubnetCannotBeDeleted), and the subnet lists it among its
// ipConfigurations.

// HeldAddress is one private address a non-NIC resource holds.
type HeldAddress struct {
	// ID is the holder's ipConfiguration (or the holder itself), named in
	// in-use messages and the subnet's ipConfigurations.
	ID string
	// Holder is the resource that owns the address: AllocateAddress for
	// it leaves its own addresses out.
	Holder string
	// Subnet is the subnet's ID.
	Subnet  string
	Address netip.Addr
}

// AddressHolders lists the addresses that resources of one kind hold in
// one subscription, read from r (inside a transaction, the transaction).
type AddressHolders func(r arm.Reader, subscription string) ([]HeldAddress, error)

var (
	holdersMu sync.RWMutex
	holders   []AddressHolders
)

// RegisterAddressHolders adds a kind of address holder. Providers call it
// from init, before any request.
func RegisterAddressHolders(h AddressHolders) {
	holdersMu.Lock()
	defer holdersMu.Unlock()
	holders = append(holders, h)
}

// heldRefs returns the holders' addresses as ipConfigRefs.
func heldRefs(r arm.Reader, subscription string) ([]ipConfigRef, error) {
	holdersMu.RLock()
	hs := holders
	holdersMu.RUnlock()
	var out []ipConfigRef
	for _, h := range hs {
		held, err := h(r, subscription)
		if err != nil {
			return nil, err
		}
		for _, a := range held {
			rg := ""
			if id, err := arm.ParseID(a.Holder); err == nil {
				rg = id.ResourceGroup
			}
			out = append(out, ipConfigRef{ID: a.ID, NIC: a.Holder, NICRG: rg, Subnet: a.Subnet, Address: a.Address})
		}
	}
	return out, nil
}

// SubnetAllocation is what AllocateAddress needs to place an address.
type SubnetAllocation struct {
	// Holder is the resource the address is for (its own current
	// addresses are free to it).
	Holder arm.ResourceID
	// ConfigID names the holder's ipConfiguration in messages.
	ConfigID string
	// Subnet is the subnet to allocate in; it must exist.
	Subnet arm.ResourceID
	// Path is the request's JSON path of the ipConfiguration, e.g.
	// "properties.ipConfigurations[0]", for error targets.
	Path string
	// Static asks for Want; otherwise the address the holder has (Current,
	// when still valid in Subnet) or the lowest free one.
	Static  bool
	Want    netip.Addr
	Current netip.Addr
	// CurrentSubnet is the subnet Current is in.
	CurrentSubnet string
}

// AllocateAddress gives a non-NIC holder an address in a subnet with the
// same rules and errors as a NIC's ipConfiguration (allocate): a Static
// address must be inside the subnet, not reserved and free; a Dynamic one
// keeps the address it has or takes the lowest free one. Call it inside
// the transaction that stores the holder, so no address goes twice.
func AllocateAddress(r arm.Reader, a SubnetAllocation) (netip.Addr, error) {
	var subnet armnetwork.Subnet
	ok, err := arm.Load(r, a.Subnet, &subnet)
	if err != nil {
		return netip.Addr{}, err
	}
	if !ok {
		return netip.Addr{}, fmt.Errorf("allocate an address for %s: subnet %s: %w", a.Holder, a.Subnet, arm.NotFound(a.Subnet))
	}
	pl := &placed{
		spec:     ipcSpec{path: a.Path, name: a.ConfigID, static: a.Static, addr: a.Want, primary: true},
		subnet:   resolved{ID: a.Subnet},
		prefixes: v4(subnetPrefixes(&subnet)),
	}
	if a.Current.IsValid() {
		pl.cur = &armnetwork.InterfaceIPConfiguration{Name: ptr(a.ConfigID), Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
			Subnet: &armnetwork.Subnet{ID: ptr(a.CurrentSubnet)}, PrivateIPAddress: ptr(a.Current.String())}}
	}
	if err := allocateNamed(newUsage(r, a.Subnet.Subscription), a.Holder, []*placed{pl}, func(*placed) string { return a.ConfigID }); err != nil {
		return netip.Addr{}, err
	}
	return pl.addr, nil
}
