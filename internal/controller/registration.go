package controller

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/provider/network"
	"github.com/privlink/privlink/internal/provider/privatedns"
	"github.com/privlink/privlink/internal/store"
)

// Registration keeps the A records that registration-enabled virtual
// network links promise: each NIC of a linked network is registered by
// name in the zone, and its record goes when the NIC (or the link) does.
// The records are ordinary record sets with isAutoRegistered true, as in
// Azure, so the API and the DNS both show them.
type Registration struct {
	st   store.Store
	log  *slog.Logger
	loop *Loop
	nics *arm.Memo[network.NICFacts]
}

// registrationTTL is the TTL Azure gives auto-registered records.
const registrationTTL = 10

// NewRegistration returns the controller.
func NewRegistration(st store.Store, log *slog.Logger) *Registration {
	r := &Registration{st: st, log: log, nics: arm.NewMemo(network.NICFactsOf)}
	r.loop = &Loop{Name: "dns-registration", Prefixes: []string{"arm/"}, Items: r.items, Reconcile: r.reconcile, Store: st, Log: log}
	return r
}

// Run reconciles until ctx ends.
func (r *Registration) Run(ctx context.Context) error { return r.loop.Run(ctx) }

// One item covers everything: registration links are few, and one pass
// over the store computes every zone's wanted records at once.
const itemRegistration = "registration"

func (r *Registration) items(key string, _ []byte) []string {
	if k, ok := privatedns.ParseKey(key); ok {
		if k.Kind == privatedns.KeyLink || (k.Kind == privatedns.KeyRecordSet && k.Type == armprivatedns.RecordTypeA) {
			return []string{itemRegistration}
		}
		return nil
	}
	if id, ok := arm.ParseDocKey(key); ok && strings.EqualFold(id.Type(), "Microsoft.Network/networkInterfaces") {
		return []string{itemRegistration}
	}
	return nil
}

func (r *Registration) reconcile(ctx context.Context, _ string) (time.Duration, error) {
	kvs, _, err := r.st.List(ctx, "arm/")
	if err != nil {
		return 0, err
	}
	zonesOf := map[string][]arm.ResourceID{} // lower vnet ID → zones registering it
	nics := map[string][]nicName{}           // lower vnet ID → its NICs
	have := map[string]bool{}                // lower record set IDs that are auto-registered
	for _, kv := range kvs {
		if k, ok := privatedns.ParseKey(kv.Key); ok {
			switch k.Kind {
			case privatedns.KeyLink:
				var l armprivatedns.VirtualNetworkLink
				if json.Unmarshal(kv.Value, &l) != nil || l.Properties == nil || l.Properties.VirtualNetwork == nil ||
					l.Properties.VirtualNetwork.ID == nil || l.Properties.RegistrationEnabled == nil || !*l.Properties.RegistrationEnabled {
					continue
				}
				zone, err := arm.ParseID(k.Zone)
				if err != nil {
					continue
				}
				v := strings.ToLower(*l.Properties.VirtualNetwork.ID)
				zonesOf[v] = append(zonesOf[v], zone)
			case privatedns.KeyRecordSet:
				var rs armprivatedns.RecordSet
				if k.Type == armprivatedns.RecordTypeA && json.Unmarshal(kv.Value, &rs) == nil && rs.Properties != nil &&
					rs.Properties.IsAutoRegistered != nil && *rs.Properties.IsAutoRegistered {
					have[k.Zone+"|"+k.Name] = true
				}
			}
			continue
		}
		id, ok := arm.ParseDocKey(kv.Key)
		if !ok || !strings.EqualFold(id.Type(), "Microsoft.Network/networkInterfaces") {
			continue
		}
		nic := r.nics.Of(kv)
		if nic.Name == "" || nic.Endpoint || !nic.Primary {
			continue
		}
		v := strings.ToLower(nic.Subnet.Parent().String())
		nics[v] = append(nics[v], nicName{strings.ToLower(nic.Name), nic.Addr.String()})
	}
	want := map[string][]string{} // zone|name → addresses
	zones := map[string]arm.ResourceID{}
	for vnet, zs := range zonesOf {
		for _, z := range zs {
			zk := strings.ToLower(z.String())
			zones[zk] = z
			for _, n := range nics[vnet] {
				want[zk+"|"+n.name] = append(want[zk+"|"+n.name], n.addr)
			}
		}
	}
	_, err = r.st.Txn(ctx, func(tx store.Tx) error {
		for key, addrs := range want {
			zk, name, _ := strings.Cut(key, "|")
			id := privatedns.RecordSetID(zones[zk], armprivatedns.RecordTypeA, name)
			cur, err := privatedns.LookupRecordSet(tx, zones[zk], armprivatedns.RecordTypeA, name)
			if err != nil {
				return err
			}
			if cur != nil && (cur.Properties == nil || cur.Properties.IsAutoRegistered == nil || !*cur.Properties.IsAutoRegistered) {
				r.log.Warn("not registering a NIC: the zone has a record of that name of its own", "zone", zk, "name", name)
				continue
			}
			slices.Sort(addrs)
			if cur != nil && slices.Equal(aRecords(cur), addrs) {
				continue
			}
			props := &armprivatedns.RecordSetProperties{TTL: ptrTo[int64](registrationTTL)}
			for _, a := range addrs {
				props.ARecords = append(props.ARecords, &armprivatedns.ARecord{IPv4Address: ptrTo(a)})
			}
			if _, err := privatedns.SaveAutoRegisteredRecordSet(tx, id, props); err != nil {
				return err
			}
		}
		return deleteUnwanted(tx, have, want)
	})
	return 0, err
}

type nicName struct{ name, addr string }

func aRecords(rs *armprivatedns.RecordSet) []string {
	var out []string
	if rs.Properties != nil {
		for _, a := range rs.Properties.ARecords {
			if a != nil && a.IPv4Address != nil {
				out = append(out, *a.IPv4Address)
			}
		}
	}
	slices.Sort(out)
	return out
}

func ptrTo[T any](v T) *T { return &v }

// deleteUnwanted deletes, in tx, the A record sets a controller keeps
// (have, by "lower zone ID|name") that it no longer wants.
func deleteUnwanted[V any](tx store.Tx, have map[string]V, want map[string][]string) error {
	for key := range have {
		if _, ok := want[key]; ok {
			continue
		}
		zk, name, _ := strings.Cut(key, "|")
		zone, err := arm.ParseID(zk)
		if err != nil {
			continue
		}
		if _, err := privatedns.DeleteRecordSet(tx, privatedns.RecordSetID(zone, armprivatedns.RecordTypeA, name)); err != nil {
			return err
		}
	}
	return nil
}
