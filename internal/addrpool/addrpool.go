// Package addrpool allocates IPv4 addresses from a range inside store
// transactions. A reservation is the key Keys+address holding the ARM ID
// of its holder, so every allocator over one key space (a server's public
// address, a public IP address resource) sees the others' addresses and no
// address is ever handed out twice.
package addrpool

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/privlink/privlink/internal/store"
)

// Keys is the key space of the addresses privlink allocates outside
// virtual networks: servers' service addresses (169.254.0.0/16) and every
// public address of the emulated internet (198.18.0.0/15), whoever holds
// it. The name is historical (servers allocated first) and stays, so
// stored reservations keep their meaning.
const Keys = "pg/addrs/"

// Pool is one range to allocate from.
type Pool struct {
	// Range is where addresses come from; Skip and Exclude are never
	// handed out, nor is an address whose last octet is 0 or 255.
	Range   netip.Prefix
	Skip    []netip.Prefix
	Exclude []netip.Addr
}

// Public is the emulated internet's pool of public addresses:
// 198.18.0.0/15 less 198.18.0.0/24, which belongs to the internet router.
var Public = Pool{
	Range: netip.MustParsePrefix("198.18.0.0/15"),
	Skip:  []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")},
}

// ErrFull says a pool has no free address left.
var ErrFull = errors.New("address pool exhausted")

// Key is the reservation key of a.
func Key(a netip.Addr) string { return Keys + a.String() }

// Used returns every reserved address of the key space (of all pools).
func Used(tx store.Tx) (map[netip.Addr]bool, error) {
	kvs, err := tx.List(Keys)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	used := make(map[netip.Addr]bool, len(kvs))
	for _, kv := range kvs {
		if a, err := netip.ParseAddr(strings.TrimPrefix(kv.Key, Keys)); err == nil {
			used[a] = true
		}
	}
	return used, nil
}

// Usable reports whether a is an address of the pool that may be handed
// out (free or not).
func (p Pool) Usable(a netip.Addr) bool {
	if !a.Is4() || !p.Range.Contains(a) {
		return false
	}
	if last := a.As4()[3]; last == 0 || last == 255 {
		return false
	}
	for _, s := range p.Skip {
		if s.Contains(a) {
			return false
		}
	}
	for _, x := range p.Exclude {
		if a == x {
			return false
		}
	}
	return true
}

// Allocate reserves the lowest usable address that used does not hold
// for holder (an ARM ID) in tx and marks it used. It fails with ErrFull
// when none is left.
func (p Pool) Allocate(tx store.Tx, holder string, used map[netip.Addr]bool) (netip.Addr, error) {
	for a := p.Range.Addr(); p.Range.Contains(a); a = a.Next() {
		if !p.Usable(a) || used[a] {
			continue
		}
		if err := tx.Put(Key(a), []byte(holder)); err != nil {
			return netip.Addr{}, fmt.Errorf("reserve address %s: %w", a, err)
		}
		used[a] = true
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("%s: %w", p.Range, ErrFull)
}

// Holder returns the ARM ID that holds a, "" when a is free.
func Holder(tx store.Tx, a netip.Addr) (string, error) {
	kv, err := tx.Get(Key(a))
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read address reservation %s: %w", a, err)
	}
	return string(kv.Value), nil
}

// Release frees every address holder (an ARM ID, compared without case)
// holds.
func Release(tx store.Tx, holder string) error {
	kvs, err := tx.List(Keys)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, kv := range kvs {
		if strings.EqualFold(string(kv.Value), holder) {
			if err := tx.Delete(kv.Key); err != nil && !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("release %s: %w", kv.Key, err)
			}
		}
	}
	return nil
}
