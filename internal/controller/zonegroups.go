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

// ZoneGroups keeps the A records that private endpoints' DNS zone groups
// promise: while an endpoint's connection is Approved, each zone of its
// group has an A record named after the server holding the endpoint's
// address (TTL 10, as Azure). Records are owned by the set of endpoints
// that want them, not by one endpoint: two endpoints writing the same zone
// keep both addresses, and removing one leaves the other (Azure overwrites
// and deletes, a known complaint).
type ZoneGroups struct {
	st   store.Store
	log  *slog.Logger
	loop *Loop
	eps  *network.EndpointDNSReader // remembers decoded documents between passes

	// wait, once FollowDatapath is called, holds a new address back until
	// the data path has the endpoint's translation in place.
	wait dataPathWait
}

// managedBy marks, in a record set's metadata, the records this
// controller keeps.
const (
	managedByKey   = "privlinkManagedBy"
	managedByValue = "privateDnsZoneGroup"
)

// NewZoneGroups returns the controller.
func NewZoneGroups(st store.Store, log *slog.Logger) *ZoneGroups {
	z := &ZoneGroups{st: st, log: log, eps: network.NewEndpointDNSReader()}
	z.loop = &Loop{Name: "dns-zone-groups", Prefixes: []string{"arm/", network.EndpointDNSIndexPrefix + "/"},
		Items: z.items, Reconcile: z.reconcile, Store: st, Log: log}
	return z
}

// FollowDatapath makes the controller write an endpoint's address into a
// zone only once the data path reports the endpoint's document, as it is,
// in place (d.EndpointStatus), so that a name never resolves to an
// endpoint whose translation is not there: while programming it fails, or
// stays pending, the address waits (however long). Addresses already in a
// record stay; removals are not held back. Call it before Run.
func (z *ZoneGroups) FollowDatapath(d *Datapath) {
	z.wait = dataPathWait{dp: d, log: z.log, what: "publishing its address"}
}

// Run reconciles until ctx ends.
func (z *ZoneGroups) Run(ctx context.Context) error { return z.loop.Run(ctx) }

const itemZoneGroups = "zone-groups"

func (z *ZoneGroups) items(key string, _ []byte) []string {
	if network.IsEndpointDNSKey(key) {
		return []string{itemZoneGroups}
	}
	if k, ok := privatedns.ParseKey(key); ok && (k.Kind == privatedns.KeyZone || k.Type == armprivatedns.RecordTypeA) {
		return []string{itemZoneGroups}
	}
	return nil
}

// reconcile computes the wanted records from a read of the store, then
// writes only the differences in one transaction; a change that races with
// it triggers another pass.
func (z *ZoneGroups) reconcile(ctx context.Context, _ string) (time.Duration, error) {
	rd := arm.ReadOnly(ctx, z.st)
	eps, err := z.eps.List(rd)
	if err != nil {
		return 0, err
	}
	have, err := managedRecords(rd)
	if err != nil {
		return 0, err
	}
	held := false                 // some address waits for the data path
	want := map[string][]string{} // zone|name → addresses
	zones := map[string]arm.ResourceID{}
	for _, ep := range eps {
		if !ep.Approved || !ep.Addr.IsValid() {
			continue
		}
		key := func(zone arm.ResourceID) string {
			return strings.ToLower(zone.String()) + "|" + strings.ToLower(ep.ServerName)
		}
		// Only an address some record lacks waits for the data path; it
		// is never published before the endpoint's translation is in
		// place (if the data path fails or times out, it waits on).
		ready := !slices.ContainsFunc(ep.Zones, func(zone arm.ResourceID) bool {
			return !slices.Contains(have[key(zone)], ep.Addr.String())
		})
		if !ready {
			ready, _ = z.wait.ready(ctx, ep.Endpoint.String(), ep.Revision, itemZoneGroups, z.loop.Enqueue)
		}
		held = held || !ready
		for _, zone := range ep.Zones {
			zk, k := strings.ToLower(zone.String()), key(zone)
			if !ready && !slices.Contains(have[k], ep.Addr.String()) {
				continue // added on a later pass
			}
			zones[zk] = zone
			if !slices.Contains(want[k], ep.Addr.String()) {
				want[k] = append(want[k], ep.Addr.String())
			}
		}
	}
	var requeue time.Duration
	if held {
		// Again after the data path's next pass (z.wait enqueues it), and
		// in any case after a while.
		requeue = holdBackRecheck
	}
	_, err = z.st.Txn(ctx, func(tx store.Tx) error {
		for key, addrs := range want {
			zk, name, _ := strings.Cut(key, "|")
			if ok, err := arm.Exists(tx, zones[zk]); err != nil || !ok {
				continue // a zone group may name a zone that was deleted since
			}
			slices.Sort(addrs)
			if cur, ok := have[key]; ok && slices.Equal(cur, addrs) {
				continue
			}
			props := &armprivatedns.RecordSetProperties{TTL: ptrTo[int64](network.RecordTTL),
				Metadata: map[string]*string{managedByKey: ptrTo(managedByValue)}}
			for _, a := range addrs {
				props.ARecords = append(props.ARecords, &armprivatedns.ARecord{IPv4Address: ptrTo(a)})
			}
			if _, err := privatedns.SaveRecordSet(tx, privatedns.RecordSetID(zones[zk], armprivatedns.RecordTypeA, name), props); err != nil {
				return err
			}
		}
		return deleteUnwanted(tx, have, want)
	})
	return requeue, err
}

// managedRecords returns the A record sets this controller keeps, by
// zone|name, with their sorted addresses.
func managedRecords(r arm.Reader) (map[string][]string, error) {
	kvs, err := r.List("arm/")
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, kv := range kvs {
		k, ok := privatedns.ParseKey(kv.Key)
		if !ok || k.Kind != privatedns.KeyRecordSet || k.Type != armprivatedns.RecordTypeA {
			continue
		}
		var rs armprivatedns.RecordSet
		if json.Unmarshal(kv.Value, &rs) != nil || rs.Properties == nil {
			continue
		}
		if v := rs.Properties.Metadata[managedByKey]; v == nil || *v != managedByValue {
			continue
		}
		out[k.Zone+"|"+k.Name] = aRecords(&rs)
	}
	return out, nil
}
