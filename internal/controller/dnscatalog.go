package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/dns"
	"github.com/privlink/privlink/internal/provider/postgres"
	"github.com/privlink/privlink/internal/provider/privatedns"
	"github.com/privlink/privlink/internal/store"
)

// DNSCatalog keeps the DNS server's catalog equal to the private DNS
// zones, virtual network links and record sets in the store.
type DNSCatalog struct {
	st   store.Store
	cat  *dns.Catalog
	loop *Loop
}

// NewDNSCatalog returns the controller feeding cat.
func NewDNSCatalog(st store.Store, cat *dns.Catalog, log *slog.Logger) *DNSCatalog {
	c := &DNSCatalog{st: st, cat: cat}
	c.loop = &Loop{Name: "dns-catalog", Prefixes: []string{"arm/", postgres.DesiredPrefix + "/"}, Items: c.items, Reconcile: c.reconcile, Store: st, Log: log}
	return c
}

// Run reconciles until ctx ends.
func (c *DNSCatalog) Run(ctx context.Context) error { return c.loop.Run(ctx) }

func (c *DNSCatalog) items(key string, _ []byte) []string {
	if id, ok := strings.CutPrefix(key, postgres.DesiredPrefix); ok {
		return []string{"server|" + id}
	}
	if id, ok := arm.ParseDocKey(key); ok && strings.EqualFold(id.Type(), "Microsoft.DBforPostgreSQL/flexibleServers") {
		return []string{"server|" + id.String()}
	}
	k, ok := privatedns.ParseKey(key)
	if !ok {
		return nil
	}
	switch k.Kind {
	case privatedns.KeyZone:
		return []string{"zone|" + k.Zone}
	case privatedns.KeyLink:
		return []string{"link|" + k.Link}
	case privatedns.KeyRecordSet:
		return []string{"rs|" + k.Zone + "|" + string(k.Type) + "|" + k.Name}
	}
	return nil
}

func (c *DNSCatalog) reconcile(ctx context.Context, item string) (time.Duration, error) {
	parts := strings.Split(item, "|")
	rd := arm.ReadOnly(ctx, c.st)
	id, err := arm.ParseID(parts[1])
	if err != nil {
		return 0, fmt.Errorf("bad item %q: %w", item, err)
	}
	switch parts[0] {
	case "server":
		return 0, c.reconcileServer(rd, id)
	case "zone":
		var z armprivatedns.PrivateZone
		ok, err := arm.Load(rd, id, &z)
		if err != nil {
			return 0, err
		}
		if !ok || z.Name == nil {
			c.cat.DeleteZone(dns.ZoneID(parts[1]))
			return 0, nil
		}
		return 0, c.cat.PutZone(dns.ZoneID(parts[1]), *z.Name)
	case "link":
		var l armprivatedns.VirtualNetworkLink
		ok, err := arm.Load(rd, id, &l)
		if err != nil {
			return 0, err
		}
		if !ok || l.Properties == nil || l.Properties.VirtualNetwork == nil || l.Properties.VirtualNetwork.ID == nil {
			c.cat.DeleteLink(dns.LinkID(parts[1]))
			return 0, nil
		}
		vnet, err := arm.ParseID(*l.Properties.VirtualNetwork.ID)
		if err != nil {
			return 0, fmt.Errorf("link %s: bad virtual network id: %w", id, err)
		}
		link := dns.Link{View: View(vnet), Zone: dns.ZoneID(strings.ToLower(id.Parent().String()))}
		if l.Properties.ResolutionPolicy != nil {
			link.ResolutionPolicy = dns.ResolutionPolicy(*l.Properties.ResolutionPolicy)
		}
		return 0, c.cat.PutLink(dns.LinkID(parts[1]), link)
	case "rs":
		zone, typ, name := dns.ZoneID(parts[1]), parts[2], parts[3]
		rs, err := privatedns.LookupRecordSet(rd, id, armprivatedns.RecordType(typ), name)
		if err != nil {
			return 0, err
		}
		if rs == nil {
			c.cat.DeleteRecordSet(zone, name, dns.RecordType(typ))
			return 0, nil
		}
		return 0, c.cat.PutRecordSet(zone, toDNS(name, typ, rs))
	}
	return 0, fmt.Errorf("unknown item %q", item)
}

// reconcileServer keeps a flexible server's public names, as Azure's
// public DNS has them: <name>.postgres.database.azure.com is a CNAME to
// <name>.privatelink.postgres.database.azure.com, which is the server's
// public IP wherever no linked private zone answers for it.
func (c *DNSCatalog) reconcileServer(rd arm.Reader, id arm.ResourceID) error {
	source := strings.ToLower(id.String())
	d, ok, err := postgres.LoadDesired(rd, id)
	if err != nil {
		return err
	}
	exists, err := arm.Exists(rd, id)
	if err != nil {
		return err
	}
	if !ok || !exists || !d.PublicAddr.IsValid() {
		c.cat.DeletePublic(source)
		return nil
	}
	name := strings.ToLower(d.Name)
	private := name + ".privatelink." + postgres.DNSSuffix
	return c.cat.PutPublic(source,
		dns.RecordSet{Name: name + "." + postgres.DNSSuffix, Type: dns.TypeCNAME, TTL: 30, CNAME: private},
		dns.RecordSet{Name: private, Type: dns.TypeA, TTL: 30, A: []netip.Addr{d.PublicAddr}},
	)
}

// toDNS converts a stored record set to the catalog's form. The provider
// validated it on write, so unparsable values are skipped, not fatal.
func toDNS(name, typ string, rs *armprivatedns.RecordSet) dns.RecordSet {
	out := dns.RecordSet{Name: name, Type: dns.RecordType(typ)}
	p := rs.Properties
	if p == nil {
		return out
	}
	if p.TTL != nil {
		out.TTL = uint32(min(max(*p.TTL, 0), 1<<31-1))
	}
	for _, a := range p.ARecords {
		if ip, err := netip.ParseAddr(deref(a.IPv4Address)); err == nil {
			out.A = append(out.A, ip)
		}
	}
	for _, a := range p.AaaaRecords {
		if ip, err := netip.ParseAddr(deref(a.IPv6Address)); err == nil {
			out.AAAA = append(out.AAAA, ip)
		}
	}
	if p.CnameRecord != nil {
		out.CNAME = deref(p.CnameRecord.Cname)
	}
	for _, m := range p.MxRecords {
		out.MX = append(out.MX, dns.MX{Preference: uint16(deref(m.Preference)), Exchange: deref(m.Exchange)})
	}
	for _, r := range p.PtrRecords {
		out.PTR = append(out.PTR, deref(r.Ptrdname))
	}
	for _, s := range p.SrvRecords {
		out.SRV = append(out.SRV, dns.SRV{Priority: uint16(deref(s.Priority)), Weight: uint16(deref(s.Weight)), Port: uint16(deref(s.Port)), Target: deref(s.Target)})
	}
	for _, t := range p.TxtRecords {
		var v []string
		for _, s := range t.Value {
			v = append(v, deref(s))
		}
		out.TXT = append(out.TXT, v)
	}
	if s := p.SoaRecord; s != nil {
		out.SOA = &dns.SOA{Host: deref(s.Host), Email: deref(s.Email), Serial: uint32(deref(s.SerialNumber)),
			Refresh: uint32(deref(s.RefreshTime)), Retry: uint32(deref(s.RetryTime)), Expire: uint32(deref(s.ExpireTime)), MinimumTTL: uint32(deref(s.MinimumTTL))}
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
