package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/store"
)

// Internet hosts (`privlink exec --internet 198.18.7.9`) are desired state
// like any other: the API writes a record per address under
// InternetHostsPrefix (RequestInternetHost) and the InternetHosts loop
// builds the host's namespace, so a restart or a namespace deleted by hand
// heals as everything else does. The request waits, bounded, until the
// loop has answered its generation.

// InternetHostsPrefix is the store prefix of internet host records.
const InternetHostsPrefix = "internet/hosts/"

// InternetHost is the record of one internet host.
type InternetHost struct {
	Address string `json:"address"`
	// Generation counts requests; Observed is the one the loop last
	// answered, with Namespace (built) or Error (why not).
	Generation int64  `json:"generation"`
	Observed   int64  `json:"observed"`
	Namespace  string `json:"namespace,omitempty"`
	Error      string `json:"error,omitempty"`
}

func internetHostKey(addr netip.Addr) string { return InternetHostsPrefix + addr.String() }

// RequestInternetHost records that the internet host addr should exist and
// waits until the InternetHosts loop has built it (or said why it could
// not), or ctx ends.
func RequestInternetHost(ctx context.Context, st store.Store, addr netip.Addr) (InternetHost, error) {
	key := internetHostKey(addr)
	var out InternetHost
	err := request(ctx, st, key, func(tx store.Tx) (int64, error) {
		h := InternetHost{Address: addr.String()}
		if kv, err := tx.Get(key); err == nil {
			if err := json.Unmarshal(kv.Value, &h); err != nil {
				return 0, fmt.Errorf("decode %s: %w", key, err)
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return 0, err
		}
		h.Generation++
		b, err := json.Marshal(h)
		if err != nil {
			return 0, err
		}
		return h.Generation, tx.Put(key, b)
	}, func(value []byte, want int64) bool {
		return value != nil && json.Unmarshal(value, &out) == nil && out.Observed >= want
	})
	if err != nil {
		return InternetHost{}, fmt.Errorf("internet host %s: %w", addr, err)
	}
	return out, nil
}

// InternetHosts builds the namespace of every internet host recorded.
type InternetHosts struct {
	st   store.Store
	fab  *fabric.Fabric
	log  *slog.Logger
	loop *Loop
}

// NewInternetHosts returns the controller.
func NewInternetHosts(st store.Store, fab *fabric.Fabric, log *slog.Logger) *InternetHosts {
	c := &InternetHosts{st: st, fab: fab, log: log}
	c.loop = &Loop{Name: "internet-hosts", Prefixes: []string{InternetHostsPrefix}, Items: c.items,
		Resync: c.resync, ResyncEvery: 30 * time.Second, Reconcile: c.reconcile, Store: st, Log: log}
	return c
}

// Run reconciles until ctx ends.
func (c *InternetHosts) Run(ctx context.Context) error { return c.loop.Run(ctx) }

func (c *InternetHosts) items(key string, _ []byte) []string {
	if a, ok := strings.CutPrefix(key, InternetHostsPrefix); ok && a != "" {
		return []string{a}
	}
	return nil
}

func (c *InternetHosts) resync(ctx context.Context) ([]string, error) {
	kvs, _, err := c.st.List(ctx, InternetHostsPrefix)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, kv := range kvs {
		out = append(out, c.items(kv.Key, kv.Value)...)
	}
	return out, nil
}

func (c *InternetHosts) reconcile(ctx context.Context, item string) (time.Duration, error) {
	addr, err := netip.ParseAddr(item)
	if err != nil {
		return 0, fmt.Errorf("bad internet host %q: %w", item, err)
	}
	kv, err := c.st.Get(ctx, internetHostKey(addr))
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var h InternetHost
	if err := json.Unmarshal(kv.Value, &h); err != nil {
		return 0, fmt.Errorf("decode internet host %s: %w", addr, err)
	}
	ns, ensureErr := c.fab.EnsureInternetHost(addr)
	next := h
	next.Observed, next.Namespace, next.Error = h.Generation, ns, ""
	if ensureErr != nil {
		next.Namespace, next.Error = "", ensureErr.Error()
	}
	if next != h {
		b, err := json.Marshal(next)
		if err != nil {
			return 0, err
		}
		// Only the revision read: a newer request is answered by the next pass.
		if _, err := c.st.Put(ctx, kv.Key, b, kv.Revision); err != nil && !errors.Is(err, store.ErrConflict) {
			return 0, err
		}
	}
	if ensureErr != nil {
		return 0, fmt.Errorf("internet host %s: %w", addr, ensureErr)
	}
	return 0, nil
}
