package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/provider/network"
	"github.com/privlink/privlink/internal/store"
)

// Default outbound: each virtual network gets one address on the emulated
// internet, as Azure gives a network's VMs a default outbound IP, and its
// NICs reach the internet translated to it (fabric.NetworkSpec.Outbound).
// The addresses come from OutboundPool, which servers' public addresses
// never use (the postgres provider skips 198.18.0.0/24), and are reserved
// in the store, OutboundPrefix+address → the network's lower-cased ARM ID,
// in the transaction that picks the lowest free one; the reservation lives
// as long as the network. A firewall rule that lets a network's NICs reach
// a server's public endpoint names that address.

// OutboundPrefix is the store prefix of default outbound reservations.
const OutboundPrefix = network.OutboundPrefix

// OutboundPool is where default outbound addresses come from: the internet
// router's own 198.18.0.0/24 but its network address, its gateway
// (198.18.0.1) and its broadcast address, so 253 networks get one; the
// others get none (logged) until one is freed.
var OutboundPool = netip.MustParsePrefix("198.18.0.0/24")

// errOutboundExhausted: no address of OutboundPool is free.
var errOutboundExhausted = errors.New("no default outbound address is free")

// OutboundAddress returns the default outbound address of vnet, the zero
// Addr if it has none (yet).
func OutboundAddress(ctx context.Context, st store.Store, vnet arm.ResourceID) (netip.Addr, error) {
	kvs, _, err := st.List(ctx, OutboundPrefix)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("list default outbound addresses: %w", err)
	}
	a, _ := outboundOf(kvs, strings.ToLower(vnet.String()))
	return a, nil
}

// outboundOf finds holder's reservation among kvs.
func outboundOf(kvs []store.KV, holder string) (netip.Addr, bool) {
	for _, kv := range kvs {
		if string(kv.Value) == holder {
			a, err := netip.ParseAddr(strings.TrimPrefix(kv.Key, OutboundPrefix))
			return a, err == nil
		}
	}
	return netip.Addr{}, false
}

// ensureOutbound returns vnet's default outbound address, reserving the
// lowest free one of OutboundPool if it has none.
func (n *Network) ensureOutbound(ctx context.Context, vnet arm.ResourceID) (netip.Addr, error) {
	holder := strings.ToLower(vnet.String())
	if a, err := OutboundAddress(ctx, n.st, vnet); err != nil || a.IsValid() {
		return a, err
	}
	var addr netip.Addr
	fresh := false
	_, err := n.st.Txn(ctx, func(tx store.Tx) error {
		kvs, err := tx.List(OutboundPrefix)
		if err != nil {
			return err
		}
		if a, ok := outboundOf(kvs, holder); ok {
			addr, fresh = a, false
			return nil
		}
		used := map[string]bool{}
		for _, kv := range kvs {
			used[kv.Key] = true
		}
		for pass := 0; pass < 2; pass++ {
			for a := OutboundPool.Addr().Next(); OutboundPool.Contains(a); a = a.Next() {
				if a == fabric.InternetGateway || a.As4()[3] == 255 || used[OutboundPrefix+a.String()] {
					continue
				}
				addr, fresh = a, true
				return tx.Put(OutboundPrefix+a.String(), []byte(holder))
			}
			// All taken: reclaim the reservations of networks that are
			// gone (deleted while privlinkd was down), once.
			for _, kv := range kvs {
				id, err := arm.ParseID(string(kv.Value))
				if err != nil {
					delete(used, kv.Key)
					continue
				}
				if ok, err := arm.Exists(tx, id); err != nil {
					return err
				} else if !ok {
					delete(used, kv.Key)
				}
			}
		}
		return errOutboundExhausted
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("default outbound address of %s: %w", vnet, err)
	}
	if fresh {
		n.log.Info("virtual network's default outbound address: its NICs reach the internet as it (name it in firewall rules)",
			"network", vnet.String(), "outbound_address", addr)
	}
	return addr, nil
}

// releaseOutbound frees vnet's default outbound address.
func (n *Network) releaseOutbound(ctx context.Context, vnet arm.ResourceID) error {
	holder := strings.ToLower(vnet.String())
	_, err := n.st.Txn(ctx, func(tx store.Tx) error {
		kvs, err := tx.List(OutboundPrefix)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			if string(kv.Value) == holder {
				if err := tx.Delete(kv.Key); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("release the default outbound address of %s: %w", vnet, err)
	}
	return nil
}
