// Command plsbench measures the private link service data path with
// PostgreSQL: pgbench select-only (-S, 8 clients, persistent connections)
// against a PostgreSQL 15 on a backend NIC of a provider network, behind
// an internal load balancer's frontend, from three places, rounds
// interleaved:
//
//   - provider: a client NIC inside the provider's network, to the
//     frontend (the baseline);
//   - endpoint: a client NIC of a consumer network (same space as the
//     provider's) through a private endpoint, the kernel path (consumer
//     router DNAT/SNAT, the service's NAT NIC DNAT to the frontend and
//     SNAT to the NAT IP, the provider router's load balancer);
//   - relay: the same client through a second endpoint served by the
//     PROXY protocol relay (internal/proxyrelay, in this process), which
//     listens in the consumer router and dials from the NAT NIC. Without
//     the header itself: PostgreSQL does not read one (it is one write of
//     36 bytes per connection, which persistent connections do not
//     measure).
//
// It prints a markdown table (docs/benchmarks.md, "Private link
// services") with the CPU time this process (the relay) spent per
// transaction. Run as root:
//
//	go run ./bench/plsbench [--rounds 3] [-T 10]
//
// The fabric (prefix plsb{pid}-) is programmed directly, as privlinkd's
// controllers would: privlinkd is on no path. Everything it made is
// removed at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/privlink/privlink/bench/internal/pgns"
	"github.com/privlink/privlink/bench/internal/table"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/proxyrelay"
	"golang.org/x/sys/unix"
)

func main() {
	rounds := flag.Int("rounds", 3, "interleaved rounds")
	secs := flag.Int("T", 10, "seconds per pgbench run")
	bin := flag.String("pgbin", "/usr/lib/postgresql/15/bin", "PostgreSQL's bin directory")
	flag.Parse()
	if err := run(*rounds, *secs, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "plsbench:", err)
		os.Exit(1)
	}
}

var (
	addr     = netip.MustParseAddr
	frontend = netip.AddrPortFrom(addr("10.50.1.100"), 5432)
)

// world builds the networks; see the package comment.
func world(fab *fabric.Fabric) (provider, consumer string, err error) {
	prefixes := func(ps ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, p := range ps {
			out = append(out, netip.MustParsePrefix(p))
		}
		return out
	}
	if err := fab.EnsureNetwork(fabric.NetworkSpec{ID: "prov", Subnets: prefixes("10.50.1.0/24", "10.50.5.0/24")}); err != nil {
		return "", "", err
	}
	if err := fab.EnsureNetwork(fabric.NetworkSpec{ID: "cons", Subnets: prefixes("10.50.1.0/24", "10.50.2.0/24"),
		Endpoints: []netip.Addr{addr("10.50.2.5"), addr("10.50.2.6")}}); err != nil {
		return "", "", err
	}
	for _, n := range []fabric.NICSpec{
		{ID: "pg", Network: "prov", Address: netip.MustParsePrefix("10.50.1.11/24")},
		{ID: "pclient", Network: "prov", Address: netip.MustParsePrefix("10.50.1.20/24")},
		{ID: "nat", Network: "prov", Address: netip.MustParsePrefix("10.50.5.10/24")},
		{ID: "cclient", Network: "cons", Address: netip.MustParsePrefix("10.50.1.20/24")},
	} {
		if err := fab.EnsureNIC(n); err != nil {
			return "", "", err
		}
	}
	if err := fab.EnsureLoadBalancers("prov", fabric.LoadBalancers{Frontends: []netip.Addr{frontend.Addr()}, Rules: []fabric.LBRule{{
		Name: "pg", Frontend: frontend.Addr(), Protocol: unix.IPPROTO_TCP, Port: 5432, BackendPort: 5432, Backends: []netip.Addr{addr("10.50.1.11")}}}}); err != nil {
		return "", "", err
	}
	link := addr("169.254.250.1")
	if err := fab.EnsureLinkService(fabric.LinkService{NIC: "nat", Addr: link, NATIP: addr("10.50.5.10"),
		Ports: []fabric.LinkServicePort{{Port: 5432, Frontend: frontend.Addr()}}}); err != nil {
		return "", "", err
	}
	if _, err := fab.EnsureEndpoints("cons", []fabric.EndpointNAT{
		{Name: "kernel", Endpoint: addr("10.50.2.5"), Ports: []uint16{5432}, Service: "nat", ServiceKind: fabric.KindNIC, ServiceAddr: link, SNAT: addr("169.254.250.2")},
		{Name: "relay", Endpoint: addr("10.50.2.6"), Ports: []uint16{5432}, Relay: true},
	}); err != nil {
		return "", "", err
	}
	return fab.NamespaceName(fabric.KindNIC, "pclient"), fab.NamespaceName(fabric.KindNIC, "cclient"), nil
}

// cpu is this process's user and system CPU time.
func cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func run(rounds, secs int, bin string) error {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fab, err := fabric.New(fmt.Sprintf("plsb%d-", os.Getpid()), log)
	if err != nil {
		return err
	}
	defer fab.RemoveStale(func(string) bool { return false })
	providerNS, consumerNS, err := world(fab)
	if err != nil {
		return err
	}
	pg, err := pgns.Start(ctx, fab.NamespaceName(fabric.KindNIC, "pg"), bin, addr("10.50.1.11"), "10.50.0.0/16")
	if err != nil {
		return err
	}
	defer pg.Close()
	relay := proxyrelay.New(ctx, fab, log, proxyrelay.Options{})
	defer relay.Close()
	if err := relay.Set([]proxyrelay.Route{{Name: "relay",
		ListenNamespace: fab.NamespaceName(fabric.KindNetwork, "cons"), Listen: netip.AddrPortFrom(addr("10.50.2.6"), 5432),
		DialNamespace: fab.NamespaceName(fabric.KindNIC, "nat"), Source: addr("10.50.5.10"), Upstream: frontend}}); err != nil {
		return err
	}
	if _, _, err := pgns.PGBench(ctx, providerNS, frontend, "-i", "-s", "5", "-q"); err != nil {
		return err
	}
	paths := []struct {
		name, ns string
		target   netip.AddrPort
	}{
		{"provider", providerNS, frontend},
		{"endpoint", consumerNS, netip.AddrPortFrom(addr("10.50.2.5"), 5432)},
		{"relay", consumerNS, netip.AddrPortFrom(addr("10.50.2.6"), 5432)},
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("pgbench -S -c 8 -j 2 -T %d, %d rounds; load average before: %s\n", secs, rounds, strings.Join(strings.Fields(string(load))[:3], " "))
	table.Header("round", "provider tps", "endpoint tps", "relay tps", "endpoint / provider", "relay / provider", "relay CPU µs / transaction")
	var eps, rels []float64
	for i := range rounds {
		tps := map[string]float64{}
		var relayCPU time.Duration
		for _, p := range paths {
			before := cpu()
			_, t, err := pgns.PGBench(ctx, p.ns, p.target, "-n", "-S", "-c", "8", "-j", "2", "-T", strconv.Itoa(secs))
			if err != nil {
				return err
			}
			if t == 0 {
				return fmt.Errorf("%s: no tps in pgbench's output", p.name)
			}
			tps[p.name] = t
			if p.name == "relay" {
				relayCPU = cpu() - before
			}
		}
		e, r := tps["endpoint"]/tps["provider"], tps["relay"]/tps["provider"]
		eps, rels = append(eps, e), append(rels, r)
		perTx := float64(relayCPU.Microseconds()) / (tps["relay"] * float64(secs))
		table.Row(i+1, fmt.Sprintf("%.0f", tps["provider"]), fmt.Sprintf("%.0f", tps["endpoint"]), fmt.Sprintf("%.0f", tps["relay"]),
			fmt.Sprintf("%.2f", e), fmt.Sprintf("%.2f", r), fmt.Sprintf("%.1f", perTx))
	}
	slices.Sort(eps)
	slices.Sort(rels)
	c := relay.Counters()["relay"]
	load, _ = os.ReadFile("/proc/loadavg")
	fmt.Printf("\nmedian endpoint / provider %.2f, relay / provider %.2f; relay counters: %d accepted, %d bytes up, %d down; load average after: %s\n",
		eps[len(eps)/2], rels[len(rels)/2], c.Accepted, c.BytesUp, c.BytesDown, strings.Join(strings.Fields(string(load))[:3], " "))
	return nil
}
