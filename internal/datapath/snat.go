package datapath

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/privlink/privlink/internal/store"
)

// snatPrefix holds endpoint SNAT addresses: the address a server sees for
// an endpoint's connections. Service addresses come from below it.
var snatPrefix = netip.MustParsePrefix("169.254.192.0/18")

// snatKey records an endpoint's SNAT address: dp/snat/{lower endpoint ID}.
const snatKey = "dp/snat"

// allocateSNAT gives every holder (the lower-cased ARM ID of an endpoint
// with a translation, or of a private link service: its link address)
// its address, kept in the store so that it survives restarts (the
// kernel's flows refer to it), and frees those of the others. Drawn from
// one range, the two never collide.
func allocateSNAT(ctx context.Context, st store.Store, holders []string) (map[string]netip.Addr, error) {
	out := map[string]netip.Addr{}
	_, err := st.Txn(ctx, func(tx store.Tx) error {
		clear(out)
		kvs, err := tx.List(snatKey + "/")
		if err != nil {
			return err
		}
		want := map[string]bool{}
		for _, h := range holders {
			want[h] = true
		}
		used := map[netip.Addr]bool{}
		for _, kv := range kvs {
			id := strings.TrimPrefix(kv.Key, snatKey+"/")
			a, err := netip.ParseAddr(string(kv.Value))
			if err != nil || !want[id] {
				if err := tx.Delete(kv.Key); err != nil {
					return err
				}
				continue
			}
			out[id], used[a] = a, true
		}
		next := snatPrefix.Addr().Next()
		for id := range want {
			if _, ok := out[id]; ok {
				continue
			}
			for used[next] || next.As4()[3] == 0 || next.As4()[3] == 255 {
				next = next.Next()
			}
			if !snatPrefix.Contains(next) {
				return fmt.Errorf("no endpoint SNAT address left in %s", snatPrefix)
			}
			if err := tx.Put(snatKey+"/"+id, []byte(next.String())); err != nil {
				return err
			}
			out[id], used[next] = next, true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("allocate endpoints' SNAT addresses: %w", err)
	}
	return out, nil
}
