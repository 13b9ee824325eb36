package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/ipsec"
	"github.com/privlink/privlink/internal/provider/network"
	"github.com/privlink/privlink/internal/store"
)

// VPN materializes virtual network gateways and their connections: a
// gateway namespace per gateway with a charon holding one tunnel per
// connection (fabric.EnsureVPNGateway), from the store. It finishes the
// gateways' and connections' operations once the fabric has them (or has
// removed them), and reads each connection's status and byte counters
// from charon every statusEvery, which the provider shows at GET time
// (network.WithVPNStatus). A charon found dead makes its gateway
// reconcile at once (a new charon, its tunnels loaded again); a restart of
// privlinkd adopts the running ones. A charon directory whose gateway is
// gone (deleted while privlinkd was down) is stopped and removed at the
// resync.
type VPN struct {
	st  store.Store
	fab *fabric.Fabric
	dir string // the parent of the gateways' charon directories
	log *slog.Logger

	loop *Loop

	mu sync.Mutex
	// gateways are the gateways last ensured, by fabric ID.
	gateways map[string]*gatewayState
	// states are the connections' live states, by lower-cased ID.
	states map[string]network.ConnectionState
}

type gatewayState struct {
	id      arm.ResourceID
	network string            // the network's fabric ID
	tunnels map[string]string // tunnel name → lower-cased connection ID
}

// statusEvery is how often connection states are read from charon.
const statusEvery = 2 * time.Second

const (
	itemGateway     = "gw|"
	itemConnection  = "conn|"
	itemAllGateways = "all|"
)

// NewVPN returns the VPN controller; dataDir holds the charons'
// directories (dataDir/vpn/<gateway>).
func NewVPN(st store.Store, fab *fabric.Fabric, dataDir string, log *slog.Logger) *VPN {
	v := &VPN{st: st, fab: fab, dir: filepath.Join(dataDir, "vpn"), log: log,
		gateways: map[string]*gatewayState{}, states: map[string]network.ConnectionState{}}
	v.loop = &Loop{
		Name: "vpn", Prefixes: []string{"arm/"},
		Items: v.items, Resync: v.resync, ResyncEvery: 30 * time.Second,
		Reconcile: v.reconcile, Store: st, Log: log,
	}
	return v
}

// ConnectionState tells connection id's live state (network.VPNStatus).
func (v *VPN) ConnectionState(id arm.ResourceID) (network.ConnectionState, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	st, ok := v.states[strings.ToLower(id.String())]
	return st, ok
}

// Run reconciles and reads tunnel states until ctx ends.
func (v *VPN) Run(ctx context.Context) error {
	if err := os.MkdirAll(v.dir, 0o700); err != nil {
		return fmt.Errorf("vpn: %w", err)
	}
	go v.watchStates(ctx)
	return v.loop.Run(ctx)
}

func (v *VPN) items(key string, value []byte) []string {
	id, ok := arm.ParseDocKey(key)
	if !ok || !strings.EqualFold(id.Namespace, "Microsoft.Network") {
		return nil
	}
	switch {
	case network.IsVNetGateway(id):
		return []string{itemGateway + id.String()}
	case network.IsConnection(id):
		return []string{itemConnection + id.String()}
	}
	switch strings.ToLower(strings.Join(id.Types, "/")) {
	case "virtualnetworks", "virtualnetworks/subnets", "publicipaddresses", "localnetworkgateways":
		return []string{itemAllGateways}
	}
	return nil
}

// resync lists every gateway and connection, and stops the charons of
// gateways that are gone.
func (v *VPN) resync(ctx context.Context) ([]string, error) {
	kvs, _, err := v.st.List(ctx, "arm/")
	if err != nil {
		return nil, err
	}
	var items []string
	live := map[string]bool{}
	for _, kv := range kvs {
		for _, it := range v.items(kv.Key, kv.Value) {
			if it == itemAllGateways {
				continue
			}
			if rid, ok := strings.CutPrefix(it, itemGateway); ok {
				if id, err := arm.ParseID(rid); err == nil {
					live[FabricID(id)] = true
				}
			}
			items = append(items, it)
		}
	}
	entries, err := os.ReadDir(v.dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return items, err
	}
	for _, e := range entries {
		if !e.IsDir() || live[e.Name()] {
			continue
		}
		v.log.Info("removing the charon of a gateway that is gone", "gateway", e.Name())
		if err := v.fab.DeleteVPNGateway(e.Name(), v.networkOf(e.Name()), filepath.Join(v.dir, e.Name())); err != nil {
			v.log.Warn("remove a gone gateway", "gateway", e.Name(), "err", err)
		}
	}
	return items, nil
}

func (v *VPN) networkOf(fid string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if g := v.gateways[fid]; g != nil {
		return g.network
	}
	return ""
}

func (v *VPN) reconcile(ctx context.Context, item string) (time.Duration, error) {
	if item == itemAllGateways {
		return 0, v.reconcileAll(ctx)
	}
	kind, rid, _ := strings.Cut(item, "|")
	id, err := arm.ParseID(rid)
	if err != nil {
		return 0, fmt.Errorf("bad item %q: %w", item, err)
	}
	if kind+"|" == itemGateway {
		return 0, v.reconcileGateway(ctx, id)
	}
	return 0, v.reconcileConnection(ctx, id)
}

// reconcileAll converges every gateway.
func (v *VPN) reconcileAll(ctx context.Context) error {
	kvs, _, err := v.st.List(ctx, "arm/")
	if err != nil {
		return err
	}
	var errs []error
	for _, kv := range kvs {
		if id, ok := arm.ParseDocKey(kv.Key); ok && network.IsVNetGateway(id) {
			errs = append(errs, v.reconcileGateway(ctx, id))
		}
	}
	return errors.Join(errs...)
}

// reconcileConnection converges the connection's gateway (every gateway
// when the connection is gone: its document no longer says which), then
// finishes the connection's operations.
func (v *VPN) reconcileConnection(ctx context.Context, id arm.ResourceID) error {
	var gw arm.ResourceID
	kv, err := v.st.Get(ctx, arm.DocKey(id))
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	default:
		gw, _ = network.ConnectionGateway(kv)
	}
	if gw.Name() != "" {
		err = v.reconcileGateway(ctx, gw)
	} else {
		err = v.reconcileAll(ctx)
	}
	if err != nil {
		return err
	}
	_, err = v.st.Txn(ctx, func(tx store.Tx) error { return network.SettleVPN(tx, id, nil) })
	return err
}

// reconcileGateway converges gateway id and finishes its operations and
// its loaded connections'.
func (v *VPN) reconcileGateway(ctx context.Context, id arm.ResourceID) error {
	fid := FabricID(id)
	dir := filepath.Join(v.dir, fid)
	facts, err := network.VNetGatewayFacts(arm.ReadOnly(ctx, v.st), id)
	if err != nil {
		return err
	}
	if facts == nil {
		if err := v.fab.DeleteVPNGateway(fid, v.networkOf(fid), dir); err != nil {
			return err
		}
		v.forget(fid)
		_, err := v.st.Txn(ctx, func(tx store.Tx) error { return network.SettleVPN(tx, id, nil) })
		return err
	}
	spec := fabric.VPNGatewaySpec{ID: fid, Network: FabricID(facts.VNet), Address: netip.PrefixFrom(facts.Address, facts.Subnet.Bits()),
		Space: facts.Space, Public: facts.Public, Dir: dir}
	g := &gatewayState{id: id, network: spec.Network, tunnels: map[string]string{}}
	for _, c := range facts.Connections {
		name := FabricID(c.ID)
		spec.Tunnels = append(spec.Tunnels, fabric.VPNTunnel{Name: name, Remote: c.Remote, RemoteSpace: c.RemoteSpace, PSK: c.SharedKey})
		g.tunnels[name] = strings.ToLower(c.ID.String())
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("vpn: %w", err)
	}
	err = v.fab.EnsureVPNGateway(ctx, spec)
	var failure error
	switch {
	case errors.Is(err, fabric.ErrInvalid):
		failure = arm.BadRequest("InvalidVirtualNetworkGateway", "properties.ipConfigurations", "The gateway cannot be made: %v", err)
	case err != nil:
		return err
	}
	v.mu.Lock()
	if old := v.gateways[fid]; old != nil {
		for name, cid := range old.tunnels {
			if g.tunnels[name] == "" {
				delete(v.states, cid)
			}
		}
	}
	v.gateways[fid] = g
	for _, cid := range g.tunnels {
		if _, ok := v.states[cid]; !ok {
			v.states[cid] = network.ConnectionState{Status: string(ipsec.NotConnected)}
		}
	}
	v.mu.Unlock()
	_, err = v.st.Txn(ctx, func(tx store.Tx) error {
		errs := []error{network.SettleVPN(tx, id, failure)}
		for _, c := range facts.Connections {
			errs = append(errs, network.SettleVPN(tx, c.ID, failure))
		}
		return errors.Join(errs...)
	})
	return err
}

// forget drops a gone gateway and its connections' states.
func (v *VPN) forget(fid string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if g := v.gateways[fid]; g != nil {
		for _, cid := range g.tunnels {
			delete(v.states, cid)
		}
	}
	delete(v.gateways, fid)
}

// watchStates reads every gateway's tunnel states every statusEvery; a
// gateway whose charon does not answer is reconciled.
func (v *VPN) watchStates(ctx context.Context) {
	t := time.NewTicker(statusEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v.mu.Lock()
		gws := make(map[string]*gatewayState, len(v.gateways))
		for fid, g := range v.gateways {
			gws[fid] = g
		}
		v.mu.Unlock()
		for fid, g := range gws {
			sts, err := v.fab.VPNTunnelStates(ctx, fid, filepath.Join(v.dir, fid))
			if err != nil {
				v.log.Debug("read tunnel states", "gateway", fid, "err", err)
				continue
			}
			if sts == nil {
				v.log.Warn("a gateway's charon does not answer: replacing it", "gateway", g.id.String())
				v.loop.Enqueue(itemGateway + g.id.String())
			}
			v.mu.Lock()
			for name, cid := range g.tunnels {
				st, ok := sts[name]
				cs := network.ConnectionState{Status: string(ipsec.NotConnected)}
				if ok {
					cs = network.ConnectionState{Status: string(st.Status), Ingress: int64(st.BytesIn), Egress: int64(st.BytesOut)}
				}
				v.states[cid] = cs
			}
			v.mu.Unlock()
		}
	}
}
