package controller

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/provider/network"
	"github.com/privlink/privlink/internal/proxyrelay"
	"github.com/privlink/privlink/internal/store"
	"golang.org/x/sys/unix"
)

// LoadBalancers programs the internal load balancers into their networks'
// routers (fabric.EnsureLoadBalancers) and runs their health probes. Each
// probe of a rule's backend runs from the network's router namespace with
// source 168.63.129.16, as Azure's probes come from there (the
// AzureLoadBalancer service tag), every intervalInSeconds; probeThreshold
// consecutive failures take the backend out of the rule's slots, as many
// successes put it back (a new backend starts out, and its first probe
// runs at once). A change of health reprograms the slots' elements only.
// What a pass wants is computed from the store whole, so restarts heal;
// the probes' state lives in memory, and established flows live in the
// kernel's conntrack through a restart of privlinkd.
type LoadBalancers struct {
	st   store.Store
	fab  *fabric.Fabric
	log  *slog.Logger
	loop *Loop

	mu      sync.Mutex
	targets map[probeTarget]*probeState
	// programmed are the networks (fabric IDs) last given load balancers.
	programmed map[string]bool
}

// probeTarget is one probe of one backend in one network's router.
type probeTarget struct {
	router    string // the router namespace
	proto     string // Tcp, Http, Https
	addr      netip.AddrPort
	path      string
	interval  time.Duration
	threshold int
	// proxy: every probe starts with a PROXY protocol v2 header (LOCAL),
	// as a private link service with enableProxyProtocol uses the load
	// balancer (network.LBFacts.ProxyProtocol).
	proxy bool
}

type probeState struct {
	cancel    context.CancelFunc
	probed    bool // a first result is in
	up        bool
	okRun     int // consecutive successes
	failRun   int // consecutive failures
	lastError string
}

// ProbeHealth is one backend's state as its probe sees it.
type ProbeHealth struct {
	Router    string
	Protocol  string
	Target    netip.AddrPort
	Up        bool
	LastError string
}

// itemAllLBs is the one item of the loop: every load balancer.
const itemAllLBs = "all"

// NewLoadBalancers returns the load balancer controller.
func NewLoadBalancers(st store.Store, fab *fabric.Fabric, log *slog.Logger) *LoadBalancers {
	l := &LoadBalancers{st: st, fab: fab, log: log, targets: map[probeTarget]*probeState{}, programmed: map[string]bool{}}
	l.loop = &Loop{
		Name: "loadbalancers", Prefixes: []string{"arm/"},
		Items: l.items, Resync: func(context.Context) ([]string, error) { return []string{itemAllLBs}, nil }, ResyncEvery: 30 * time.Second,
		Reconcile: l.reconcile, Store: st, Log: log,
	}
	return l
}

// Run reconciles and probes until ctx ends.
func (l *LoadBalancers) Run(ctx context.Context) error {
	defer l.stopAll()
	return l.loop.Run(ctx)
}

func (l *LoadBalancers) items(key string, _ []byte) []string {
	id, ok := arm.ParseDocKey(key)
	if !ok || !strings.EqualFold(id.Namespace, "Microsoft.Network") {
		return nil
	}
	switch strings.ToLower(id.Types[0]) {
	case "loadbalancers", "networkinterfaces", "virtualnetworks", "privatelinkservices": // services: PROXY headers in probes
		return []string{itemAllLBs}
	}
	return nil
}

// Health returns the state of every probe target, for metrics and the CLI.
func (l *LoadBalancers) Health() []ProbeHealth {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]ProbeHealth, 0, len(l.targets))
	for t, s := range l.targets {
		out = append(out, ProbeHealth{Router: t.router, Protocol: t.proto, Target: t.addr, Up: s.up, LastError: s.lastError})
	}
	slices.SortFunc(out, func(a, b ProbeHealth) int {
		return strings.Compare(a.Router+a.Target.String(), b.Router+b.Target.String())
	})
	return out
}

func (l *LoadBalancers) reconcile(ctx context.Context, _ string) (time.Duration, error) {
	kvs, _, err := l.st.List(ctx, "arm/")
	if err != nil {
		return 0, err
	}
	rd := arm.ReadOnly(ctx, l.st)
	byNet := map[string]*fabric.LoadBalancers{}
	wantTargets := map[probeTarget]bool{}
	// unprobed are the networks with a backend whose first probe has not
	// answered yet (after a start, every one): their routers keep what
	// the kernel has until it does, so a restart of privlinkd does not
	// take healthy backends out.
	unprobed := map[string]bool{}
	for _, kv := range kvs {
		id, ok := arm.ParseDocKey(kv.Key)
		if !ok || !network.IsLoadBalancer(id) {
			continue
		}
		facts, err := network.LoadBalancerFacts(rd, id)
		if err != nil {
			return 0, fmt.Errorf("load balancer %s: %w", id, err)
		}
		if facts == nil || len(facts.VNet.Names) == 0 {
			continue
		}
		netID := FabricID(facts.VNet)
		router := l.fab.NamespaceName(fabric.KindNetwork, netID)
		lb := byNet[netID]
		if lb == nil {
			lb = &fabric.LoadBalancers{}
			byNet[netID] = lb
		}
		lb.Frontends = append(lb.Frontends, facts.Frontends...)
		for _, ru := range facts.Rules {
			rid, err := arm.ParseID(ru.ID)
			if err != nil {
				continue
			}
			proto := uint8(unix.IPPROTO_TCP)
			if ru.Protocol == "Udp" {
				proto = unix.IPPROTO_UDP
			}
			rule := fabric.LBRule{Name: FabricID(rid), Frontend: ru.Frontend, Protocol: proto, Port: ru.Port, BackendPort: ru.BackendPort}
			var all []netip.Addr
			for _, m := range ru.Members {
				all = append(all, m.Addr)
				if ru.Probe == nil {
					rule.Backends = append(rule.Backends, m.Addr)
					continue
				}
				t := probeTarget{router: router, proto: ru.Probe.Protocol, addr: netip.AddrPortFrom(m.Addr, ru.Probe.Port),
					path: ru.Probe.Path, interval: max(time.Second, ru.Probe.Interval), threshold: max(1, ru.Probe.Threshold),
					proxy: facts.ProxyProtocol}
				wantTargets[t] = true
				up, probed := l.ensureTarget(ctx, t)
				if up {
					rule.Backends = append(rule.Backends, m.Addr)
				}
				unprobed[netID] = unprobed[netID] || !probed
			}
			if len(rule.Backends) == 0 && ru.Probe != nil && ru.Probe.AllProbedUp {
				rule.Backends = all
			}
			lb.Rules = append(lb.Rules, rule)
		}
	}
	l.stopUnwanted(wantTargets)
	var errs []error
	for netID, lb := range byNet {
		if unprobed[netID] {
			continue // a first probe's result enqueues the next pass
		}
		if err := l.fab.EnsureLoadBalancers(netID, *lb); err != nil {
			errs = append(errs, err)
			continue
		}
		l.programmed[netID] = true
	}
	for netID := range l.programmed {
		if byNet[netID] != nil {
			continue
		}
		if err := l.fab.EnsureLoadBalancers(netID, fabric.LoadBalancers{}); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(l.programmed, netID)
	}
	return 0, errors.Join(errs...)
}

// ensureTarget starts t's probe if it is not running and reports whether
// t is up and whether it has been probed yet.
func (l *LoadBalancers) ensureTarget(ctx context.Context, t probeTarget) (up, probed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, ok := l.targets[t]; ok {
		return s.up, s.probed
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.targets[t] = &probeState{cancel: cancel, lastError: "not probed yet"}
	go l.probeLoop(pctx, t)
	return false, false
}

func (l *LoadBalancers) stopUnwanted(want map[probeTarget]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for t, s := range l.targets {
		if !want[t] {
			s.cancel()
			delete(l.targets, t)
		}
	}
}

func (l *LoadBalancers) stopAll() { l.stopUnwanted(nil) }

// probeLoop probes t at once and then every interval until ctx ends; a
// change of t's state asks for a pass.
func (l *LoadBalancers) probeLoop(ctx context.Context, t probeTarget) {
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		err := l.probe(ctx, t)
		if ctx.Err() != nil {
			return
		}
		if l.record(t, err) {
			l.log.Info("load balancer backend health changed", "router", t.router, "target", t.addr, "protocol", t.proto, "up", err == nil, "err", err)
			l.loop.Enqueue(itemAllLBs)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// record counts a probe's result and reports whether t's state changed
// (a first result is a change: it lets a pass program the network).
func (l *LoadBalancers) record(t probeTarget, err error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.targets[t]
	if !ok {
		return false
	}
	first := !s.probed
	s.probed = true
	if err == nil {
		s.okRun, s.failRun, s.lastError = s.okRun+1, 0, ""
		if !s.up && s.okRun >= t.threshold {
			s.up = true
			return true
		}
		return first
	}
	s.okRun, s.failRun, s.lastError = 0, s.failRun+1, err.Error()
	if s.up && s.failRun >= t.threshold {
		s.up = false
		return true
	}
	return first
}

// probe runs one probe of t from the router namespace, from
// 168.63.129.16 (see probeOver).
func (l *LoadBalancers) probe(ctx context.Context, t probeTarget) error {
	ctx, cancel := context.WithTimeout(ctx, min(t.interval, 5*time.Second))
	defer cancel()
	c, err := l.fab.DialTCPFrom(ctx, t.router, fabric.DNSAddr, t.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return probeOver(ctx, c, t)
}

// probeOver runs probe t over the connection c to its target: Tcp succeeds
// when the connection was accepted, Http and Https when GET path answers
// 200. With t.proxy, a PROXY protocol v2 header (LOCAL) comes first, before
// a TLS handshake too.
func probeOver(ctx context.Context, c net.Conn, t probeTarget) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if t.proxy {
		if _, err := c.Write(proxyrelay.AppendLocalHeader(nil)); err != nil {
			return fmt.Errorf("probe %s: PROXY header: %w", t.addr, err)
		}
	}
	if t.proto == "Tcp" {
		return nil
	}
	var conn net.Conn = c
	if t.proto == "Https" {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) // Azure's probes do not check certificates either
		if err := tc.HandshakeContext(ctx); err != nil {
			return err
		}
		conn = tc
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: Load Balancer Agent\r\nConnection: close\r\n\r\n", t.path, t.addr); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	parts := strings.Fields(line)
	if len(parts) < 2 {
		return fmt.Errorf("probe %s: bad status line %q", t.addr, line)
	}
	if code, err := strconv.Atoi(parts[1]); err != nil || code != 200 {
		return fmt.Errorf("probe %s%s: status %s, want 200", t.addr, t.path, parts[1])
	}
	return nil
}
