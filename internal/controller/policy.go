package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/policy"
	"github.com/privlink/privlink/internal/provider/network"
	"github.com/privlink/privlink/internal/store"
)

// Policy enforces each virtual network's network policies (NSGs, ASGs,
// route tables, its subnets' private endpoint network policies) in its
// router: it reads the network's facts from the store
// (network.PolicyNetwork), compiles them (policy.Compile, the same model
// that answers effective rules and Network Watcher) and converges the
// router's policy table (fabric.EnsurePolicy), which also closes the live
// flows the new program denies. A change of any document the policies
// depend on applies at once, and a pass whose compiled program (and NICs'
// links) is the one the router last converged to touches nothing in the
// kernel (no table read back, no conntrack dump); every 30 s each network
// is converged again whatever its fingerprint, NICs' IP forwarding
// included, which heals drift.
type Policy struct {
	st   store.Store
	fab  *fabric.Fabric
	log  *slog.Logger
	loop *Loop
	// converged holds, by network (lower-cased ARM ID), the fingerprint
	// of the program and NICs its router last converged to.
	converged converged
}

// NewPolicy returns the policy controller.
func NewPolicy(st store.Store, fab *fabric.Fabric, log *slog.Logger) *Policy {
	p := &Policy{st: st, fab: fab, log: log, converged: converged{}}
	p.loop = &Loop{
		Name: "policy", Prefixes: []string{"arm/"},
		Items: p.items, Resync: p.resync, ResyncEvery: 30 * time.Second,
		Reconcile: p.reconcile, Store: st, Log: log,
	}
	return p
}

// Run reconciles until ctx ends.
func (p *Policy) Run(ctx context.Context) error { return p.loop.Run(ctx) }

// policyTypes are the types whose documents a network's policies read
// beyond its own: a change of one may concern any network.
var policyTypes = map[string]bool{
	"networkinterfaces":                   true,
	"networksecuritygroups":               true,
	"networksecuritygroups/securityrules": true,
	"applicationsecuritygroups":           true,
	"routetables":                         true,
	"routetables/routes":                  true,
	// A gateway's connections route remote spaces (policy.Network.Gateway).
	"virtualnetworkgateways": true,
	"connections":            true,
	"localnetworkgateways":   true,
}

// itemAllPolicies enqueues every network; itemResyncPolicies does too,
// after forgetting what each converged to.
const (
	itemAllPolicies    = "all"
	itemResyncPolicies = "all/resync"
)

func (p *Policy) items(key string, value []byte) []string {
	id, ok := arm.ParseDocKey(key)
	if !ok || !strings.EqualFold(id.Namespace, "Microsoft.Network") {
		return nil
	}
	switch t := strings.ToLower(strings.Join(id.Types, "/")); {
	case t == "virtualnetworks":
		return []string{id.String()}
	case t == "virtualnetworks/subnets":
		return []string{id.Parent().String()}
	case t == "virtualnetworks/virtualnetworkpeerings":
		// A peering's state derives from both sides: both networks'
		// VirtualNetwork tag and routes change, as soon as the network
		// controller links their routers (controller/peering.go). A
		// deletion does not name the remote: every network.
		if local, remote, ok := network.PeeringEnds(store.KV{Key: key, Value: value}); ok {
			return []string{local.String(), remote.String()}
		}
		return []string{itemAllPolicies}
	case policyTypes[t]:
		return []string{itemAllPolicies}
	}
	return nil
}

func (p *Policy) resync(context.Context) ([]string, error) { return []string{itemResyncPolicies}, nil }

func (p *Policy) reconcile(ctx context.Context, item string) (time.Duration, error) {
	if item == itemResyncPolicies {
		p.converged.forgetAll()
		p.fab.ForgetForwarding()
	}
	if item == itemAllPolicies || item == itemResyncPolicies {
		kvs, _, err := p.st.List(ctx, "arm/")
		if err != nil {
			return 0, err
		}
		for _, kv := range kvs {
			if id, ok := arm.ParseDocKey(kv.Key); ok && strings.EqualFold(id.Type(), "Microsoft.Network/virtualNetworks") {
				p.loop.Enqueue(id.String())
			}
		}
		return 0, nil
	}
	id, err := arm.ParseID(item)
	if err != nil {
		return 0, fmt.Errorf("bad item %q: %w", item, err)
	}
	return p.ensure(ctx, id)
}

// routerPending is how soon a network whose router is not there yet is
// tried again (the network controller is making it).
const routerPending = 500 * time.Millisecond

func (p *Policy) ensure(ctx context.Context, vnet arm.ResourceID) (time.Duration, error) {
	n, err := network.PolicyNetwork(arm.ReadOnly(ctx, p.st), vnet)
	if err != nil {
		return 0, fmt.Errorf("policies of %s: %w", vnet, err)
	}
	key := strings.ToLower(vnet.String())
	if n == nil {
		p.converged.forget(key)
		return 0, nil // gone: so is its router, with the table
	}
	nics := map[string]string{}
	for _, c := range n.NICs {
		if c.Endpoint {
			continue
		}
		if nid, err := arm.ParseID(c.ID); err == nil {
			nics[c.ID] = FabricID(nid)
		}
	}
	prog := n.Compile()
	fp := p.fingerprint(vnet, prog, nics)
	if p.converged.current(key, fp) {
		return 0, nil
	}
	p.converged.forget(key)
	revoked, err := p.fab.EnsurePolicy(FabricID(vnet), prog, nics)
	if err == nil {
		p.converged.done(key, fp)
	}
	if errors.Is(err, fabric.ErrNotFound) {
		p.log.Debug("router not there yet; policies wait", "network", vnet.String())
		return routerPending, nil
	}
	if len(revoked) > 0 {
		p.log.Info("closed flows the network policies now deny", "network", vnet.String(), "flows", len(revoked))
	}
	if err != nil {
		return 0, fmt.Errorf("policies of %s: %w", vnet, err)
	}
	return 0, nil
}

// fingerprint is the fingerprint of network vnet's router running prog
// with the NICs' fabric IDs nics, and of the namespaces it touches (their
// inodes: a router or NIC namespace made, or made again, converges at
// once, e.g. a NIC's IP forwarding set as soon as it has a namespace).
func (p *Policy) fingerprint(vnet arm.ResourceID, prog *policy.Program, nics map[string]string) string {
	ino := func(kind fabric.Kind, id string) uint64 {
		n, _ := p.fab.NamespaceInode(p.fab.NamespaceName(kind, id)) // 0: none yet
		return n
	}
	b := fmt.Appendf(nil, "%s router %d", prog.Fingerprint(), ino(fabric.KindNetwork, FabricID(vnet)))
	for _, nic := range slices.Sorted(maps.Keys(nics)) {
		b = fmt.Appendf(b, " %s=%s:%d", nic, nics[nic], ino(fabric.KindNIC, nics[nic]))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
