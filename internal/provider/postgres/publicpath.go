package postgres

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/privlink/privlink/internal/addrpool"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/provider/privatelink"
	"github.com/privlink/privlink/internal/store"
)

// publicPort is where a server's public address takes PostgreSQL.
const publicPort = 5432

// publicAt reads the server whose public address is addr (Kind.PublicAt):
// its public network access, whether it runs and its firewall rules, as
// the data path enforces them (from the Desired record and the rules'
// documents). nil when no server holds addr as its public address.
func publicAt(r arm.Reader, addr netip.Addr) (*privatelink.PublicPath, error) {
	kv, err := r.Get(addrpool.Key(addr))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("address %s: %w", addr, err)
	}
	id, err := arm.ParseID(string(kv.Value))
	if err != nil {
		return nil, nil // not a server's reservation
	}
	d, ok, err := LoadDesired(r, id)
	if err != nil || !ok || d.PublicAddr != addr {
		return nil, err // gone, or addr is its service address
	}
	t, err := lookupTarget(r, id)
	if err != nil || t == nil {
		return nil, err
	}
	ranges, err := FirewallRanges(r, id)
	if err != nil {
		return nil, fmt.Errorf("firewall rules of %s: %w", id, err)
	}
	p := &privatelink.PublicPath{Target: *t, Addr: addr, Port: publicPort,
		PublicNetworkAccess: d.PublicNetworkAccess, Running: d.Running}
	for _, fr := range ranges {
		p.Rules = append(p.Rules, privatelink.FirewallRule{Name: fr.Name, Start: fr.Start, End: fr.End})
	}
	return p, nil
}
