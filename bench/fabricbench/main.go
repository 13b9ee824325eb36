// Command fabricbench measures how long a virtual network with 1, 10 and
// 100 NICs takes to come into being end to end, through privlinkd's ARM API
// with the official Azure SDK for Go, against the kernel work alone
// measured in the same run.
//
// The API measurement starts its own privlinkd (root, a fresh data
// directory, a namespace prefix of its own), creates a VNet with one subnet
// (BeginCreateOrUpdate + PollUntilDone) and then N NICs, c at a time, and
// stops the clock when every NIC's poller has finished: a NIC's operation
// finishes only once the network controller has built its namespace
// (internal/controller/network.go), and the tool checks that each one
// exists. It then deletes the NICs and the VNet through the API and times
// that until their namespaces are gone.
//
// The baseline is the fabric alone, in this process, under a prefix of its
// own: EnsureNetwork and N EnsureNIC calls, one after the other, as
// internal/fabric's BenchmarkMaterializeNetwork does, and DeleteNetwork.
// Sizes run interleaved for several rounds; the tables show medians.
//
// The tool also reads the daemon's debug log to count what happened per
// NIC during the creation (EnsureNIC calls of the controller, ARM requests
// served, the VNet's included) and, on etcd, reads etcd's /metrics for the
// Range and Txn requests it served.
//
// It needs root. At the end it removes every namespace of both prefixes.
//
//	go build -o /tmp/pl/ ./cmd/privlinkd && go run ./bench/fabricbench --privlinkd /tmp/pl/privlinkd
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/privlink/privlink/bench/internal/benchd"
	"github.com/privlink/privlink/bench/internal/lat"
	"github.com/privlink/privlink/bench/internal/sdk"
	"github.com/privlink/privlink/bench/internal/table"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/names"
)

type flags struct {
	bin     string
	backend string
	sizes   []int
	clients int
	rounds  int
}

func main() {
	var f flags
	sizes := flag.String("sizes", "1,10,100", "comma-separated NIC counts")
	flag.StringVar(&f.bin, "privlinkd", "", "path to a privlinkd binary (required)")
	flag.StringVar(&f.backend, "store", "bolt", "bolt, or etcd (a private etcd server is started)")
	flag.IntVar(&f.clients, "c", 8, "NICs created (and deleted) concurrently through the API")
	flag.IntVar(&f.rounds, "rounds", 3, "interleaved rounds; the tables show medians")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("fabricbench: ")
	if f.bin == "" {
		log.Fatal("--privlinkd is required")
	}
	if os.Geteuid() != 0 {
		log.Fatal("must run as root: the fabric creates network namespaces")
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 250 {
			log.Fatalf("--sizes: %q: want NIC counts from 1 to 250", s)
		}
		f.sizes = append(f.sizes, n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, f)
	stop()
	if err != nil {
		log.Fatal(err)
	}
}

// result is one round of one size.
type result struct {
	fabric, fabricDelete time.Duration // the baseline
	vnet, total          time.Duration // API: VNet ready; VNet and every NIC ready
	nicP50, nicP99       time.Duration // API: one NIC's BeginCreateOrUpdate+PollUntilDone
	teardown             time.Duration // API: delete NICs and VNet until their namespaces are gone
	ensureNIC            int           // EnsureNIC calls the daemon made
	requests             int           // ARM requests the daemon served for the creation
	ranges, txns         float64       // etcd requests for the creation (0 on bolt)
}

func run(ctx context.Context, f flags) (err error) {
	// The baseline's fabric, in this process.
	prefix, err := benchd.UniquePrefix("pbf")
	if err != nil {
		return err
	}
	fab, err := fabric.New(prefix, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	defer func() { err = errors.Join(err, benchd.RemoveNamespaces(prefix)) }()

	// The daemon, at debug level so that the tap sees each EnsureNIC.
	tap := benchd.NewLogTap(os.Stderr)
	d, err := benchd.Start(ctx, benchd.Options{Binary: f.bin, Store: f.backend, LogLevel: "debug", Log: tap})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.Close()) }()
	b, err := newAPI(ctx, d, tap)
	if err != nil {
		return err
	}

	// Warm up the API's connections and token, and the controller.
	if _, err := b.create(ctx, "warm", 1, f.clients); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if _, err := b.teardown(ctx, "warm", 1, f.clients); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}

	results := map[int][]result{}
	for round := range f.rounds {
		for _, n := range f.sizes {
			var r result
			start := time.Now()
			if err := materialize(fab, n); err != nil {
				return err
			}
			r.fabric = time.Since(start)
			start = time.Now()
			if err := fab.DeleteNetwork("bench"); err != nil {
				return fmt.Errorf("fabric: %w", err)
			}
			r.fabricDelete = time.Since(start)

			name := fmt.Sprintf("v%dr%d", n, round)
			c := tap.Counts()
			e0, err := etcdRequests(ctx, d)
			if err != nil {
				return err
			}
			cr, err := b.create(ctx, name, n, f.clients)
			if err != nil {
				return err
			}
			seen := tap.Counts().Since(c)
			e1, err := etcdRequests(ctx, d)
			if err != nil {
				return err
			}
			r.ranges, r.txns = e1["Range"]-e0["Range"], e1["Txn"]-e0["Txn"]
			r.vnet, r.total, r.nicP50, r.nicP99 = cr.vnet, cr.total, cr.nics.Quantile(0.5), cr.nics.Quantile(0.99)
			r.ensureNIC = seen.Messages["NIC converged"]
			r.requests = seen.Messages["arm request"]
			if r.teardown, err = b.teardown(ctx, name, n, f.clients); err != nil {
				return err
			}
			results[n] = append(results[n], r)
			fmt.Fprintf(os.Stderr, "round %d, %d NICs: fabric %s, API %s, teardown %s\n", round+1, n, lat.Round(r.fabric), lat.Round(r.total), lat.Round(r.teardown))
		}
	}
	report(f, results)
	return nil
}

// etcdRequests returns the requests etcd has served so far by method, or
// nothing on bolt.
func etcdRequests(ctx context.Context, d *benchd.Daemon) (map[string]float64, error) {
	if d.EtcdEndpoint == "" {
		return map[string]float64{}, nil
	}
	return benchd.EtcdRequests(ctx, d.EtcdEndpoint)
}

// materialize is the baseline: what BenchmarkMaterializeNetwork does.
func materialize(fab *fabric.Fabric, n int) error {
	if err := fab.EnsureNetwork(fabric.NetworkSpec{ID: "bench", Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}); err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	for i := range n {
		addr := netip.AddrFrom4([4]byte{10, 0, 0, byte(4 + i)})
		spec := fabric.NICSpec{ID: fmt.Sprintf("nic%d", i), Network: "bench", Address: netip.PrefixFrom(addr, 24)}
		if err := fab.EnsureNIC(spec); err != nil {
			return fmt.Errorf("fabric: %w", err)
		}
	}
	return nil
}

// api drives the daemon through the SDK.
type api struct {
	d   *benchd.Daemon
	tap *benchd.LogTap
	c   *sdk.Clients
	fab *fabric.Fabric // the daemon's prefix, for its namespaces' names
}

const group = "bench"

func newAPI(ctx context.Context, d *benchd.Daemon, tap *benchd.LogTap) (*api, error) {
	c, err := sdk.New(d.Config, nil)
	if err != nil {
		return nil, err
	}
	if err := c.CreateGroup(ctx, group); err != nil {
		return nil, err
	}
	fab, err := fabric.New(d.Prefix, nil)
	if err != nil {
		return nil, fmt.Errorf("fabric: %w", err)
	}
	return &api{d: d, tap: tap, c: c, fab: fab}, nil
}

type created struct {
	vnet, total time.Duration
	nics        lat.Run
}

func nicName(vnet string, i int) string { return fmt.Sprintf("%s-nic%d", vnet, i) }

// create makes VNet name (10.0.0.0/16, subnet s 10.0.0.0/24) and n NICs in
// it, clients at a time, and checks that every NIC's namespace exists once
// its poller has finished.
func (a *api) create(ctx context.Context, name string, n, clients int) (created, error) {
	var c created
	start := time.Now()
	v, err := a.c.CreateVNet(ctx, group, name, sdk.VNetBody("10.0.0.0/16", sdk.Subnet{Name: "s", Prefix: "10.0.0.0/24"}))
	if err != nil {
		return c, err
	}
	c.vnet = time.Since(start)
	subnetID := *v.ID + "/subnets/s"
	nsNames := make([]string, n)
	c.nics, err = lat.Drive(ctx, lat.Load{Clients: clients, Ops: n}, func(ctx context.Context, _, i int) error {
		nic, err := a.c.CreateNIC(ctx, group, nicName(name, i), subnetID, nil)
		if err != nil {
			return err
		}
		nsNames[i], err = sdk.Namespace(a.fab, fabric.KindNIC, *nic.ID)
		return err
	})
	c.total = time.Since(start)
	if err != nil {
		return c, err
	}
	for _, ns := range nsNames {
		if _, err := os.Stat(names.Path(ns)); err != nil {
			return c, fmt.Errorf("NIC poller finished but its namespace is missing: %w", err)
		}
	}
	return c, nil
}

// teardown deletes the n NICs of VNet name, clients at a time, then the
// VNet, and waits until no namespace of the daemon is left but the
// emulated internet's. It returns the time all that took.
func (a *api) teardown(ctx context.Context, name string, n, clients int) (time.Duration, error) {
	start := time.Now()
	_, err := lat.Drive(ctx, lat.Load{Clients: clients, Ops: n}, func(ctx context.Context, _, i int) error {
		return a.c.DeleteNIC(ctx, group, nicName(name, i))
	})
	if err != nil {
		return 0, err
	}
	if err := a.c.DeleteVNet(ctx, group, name); err != nil {
		return 0, err
	}
	inet := a.fab.NamespaceName(fabric.KindInternet, "")
	for {
		entries, err := os.ReadDir(names.NetnsDir)
		if err != nil {
			return 0, fmt.Errorf("list namespaces: %w", err)
		}
		left := 0
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), a.d.Prefix) && e.Name() != inet {
				left++
			}
		}
		if left == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > 60*time.Second {
			return 0, fmt.Errorf("%d namespaces of %s still there 60s after deleting it", left, name)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// report prints the tables of medians.
func report(f flags, results map[int][]result) {
	med, medf := lat.MedianOf[result, time.Duration], lat.MedianOf[result, float64]
	fmt.Printf("store=%s, NICs created %d at a time, rounds=%d (medians over rounds)\n\n", f.backend, f.clients, f.rounds)
	fmt.Println("Creation: a VNet and N NICs, until every NIC's poller has finished (its namespace exists).")
	fmt.Println()
	table.Header("NICs", "fabric only", "API end to end", "API per NIC", "fabric ÷ API", "VNet ready", "NIC poller p50", "NIC poller p99", "EnsureNIC calls/NIC", "ARM requests/NIC", "etcd Range+Txn/NIC")
	for _, n := range f.sizes {
		rs := results[n]
		total := med(rs, func(r result) time.Duration { return r.total })
		etcd := "–"
		if f.backend == "etcd" {
			etcd = fmt.Sprintf("%.1f+%.1f", medf(rs, func(r result) float64 { return r.ranges / float64(n) }),
				medf(rs, func(r result) float64 { return r.txns / float64(n) }))
		}
		fmt.Printf("| %d | %s | %s | %s | %.2f | %s | %s | %s | %.1f | %.1f | %s |\n", n,
			lat.Round(med(rs, func(r result) time.Duration { return r.fabric })),
			lat.Round(total), lat.Round(total/time.Duration(n)),
			medf(rs, func(r result) float64 { return r.fabric.Seconds() / r.total.Seconds() }),
			lat.Round(med(rs, func(r result) time.Duration { return r.vnet })),
			lat.Round(med(rs, func(r result) time.Duration { return r.nicP50 })),
			lat.Round(med(rs, func(r result) time.Duration { return r.nicP99 })),
			medf(rs, func(r result) float64 { return float64(r.ensureNIC) / float64(n) }),
			medf(rs, func(r result) float64 { return float64(r.requests) / float64(n) }),
			etcd)
	}
	fmt.Println()
	fmt.Println("Teardown: delete the NICs (same concurrency), then the VNet, until their namespaces are gone.")
	fmt.Println()
	table.Header("NICs", "fabric only (DeleteNetwork)", "API end to end", "fabric ÷ API")
	for _, n := range f.sizes {
		rs := results[n]
		fmt.Printf("| %d | %s | %s | %.2f |\n", n,
			lat.Round(med(rs, func(r result) time.Duration { return r.fabricDelete })),
			lat.Round(med(rs, func(r result) time.Duration { return r.teardown })),
			medf(rs, func(r result) float64 { return r.fabricDelete.Seconds() / r.teardown.Seconds() }))
	}
}
