// Command relaybench measures internal/proxyrelay with PostgreSQL: pgbench
// select-only (-S, 8 clients) from a consumer namespace against a
// PostgreSQL 15 in a server namespace, directly and through the relay,
// rounds interleaved, and prints a markdown table of tps and ratios
// (docs/benchmarks.md, "The PROXY protocol v2 relay"). Run as root:
//
//	go run ./bench/relaybench [--rounds 3] [-T 10]
//
// Both namespaces are hosts of the emulated internet (198.18.62.1 and
// .3) made by a fabric with a prefix of its own; the relay listens in the
// server's namespace on port 6432 and connects to PostgreSQL's 5432 there,
// without a PROXY header (PostgreSQL does not read one; the header is one
// write per connection, which -S with persistent connections does not
// measure). The throwaway cluster (trust authentication, reachable only in
// its namespace) is stopped and removed, and the namespaces with it.
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

	"github.com/privlink/privlink/bench/internal/pgns"
	"github.com/privlink/privlink/bench/internal/table"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/proxyrelay"
)

func main() {
	rounds := flag.Int("rounds", 3, "interleaved rounds")
	secs := flag.Int("T", 10, "seconds per pgbench run")
	bin := flag.String("pgbin", "/usr/lib/postgresql/15/bin", "PostgreSQL's bin directory")
	flag.Parse()
	if err := run(*rounds, *secs, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "relaybench:", err)
		os.Exit(1)
	}
}

func run(rounds, secs int, bin string) error {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fab, err := fabric.New(fmt.Sprintf("rlb%d-", os.Getpid()), log)
	if err != nil {
		return err
	}
	defer fab.RemoveStale(func(string) bool { return false })
	consumerIP, serverIP := netip.MustParseAddr("198.18.62.1"), netip.MustParseAddr("198.18.62.3")
	consumerNS, err := fab.EnsureInternetHost(consumerIP)
	if err != nil {
		return err
	}
	serverNS, err := fab.EnsureInternetHost(serverIP)
	if err != nil {
		return err
	}

	pg, err := pgns.Start(ctx, serverNS, bin, serverIP, netip.PrefixFrom(serverIP, 24).Masked().String())
	if err != nil {
		return err
	}
	defer pg.Close()

	relay := proxyrelay.New(ctx, fab, log, proxyrelay.Options{})
	defer relay.Close()
	if err := relay.Set([]proxyrelay.Route{{
		Name: "bench", ListenNamespace: serverNS, Listen: netip.AddrPortFrom(serverIP, 6432),
		DialNamespace: serverNS, Upstream: netip.AddrPortFrom(serverIP, 5432),
	}}); err != nil {
		return err
	}
	pgbench := func(port int, args ...string) (float64, error) {
		out, tps, err := pgns.PGBench(ctx, consumerNS, netip.AddrPortFrom(serverIP, uint16(port)), args...)
		if err == nil && tps == 0 && slices.Contains(args, "-T") {
			err = fmt.Errorf("no tps in pgbench's output:\n%s", out)
		}
		return tps, err
	}
	if _, err := pgbench(5432, "-i", "-s", "5", "-q"); err != nil {
		return err
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("pgbench -S -c 8 -j 2 -T %d, %d rounds; load average before: %s\n", secs, rounds, strings.Join(strings.Fields(string(load))[:3], " "))
	table.Header("round", "direct tps", "relay tps", "relay / direct")
	var ratios []float64
	for i := range rounds {
		var tps [2]float64
		for j, port := range []int{5432, 6432} {
			if tps[j], err = pgbench(port, "-n", "-S", "-c", "8", "-j", "2", "-T", strconv.Itoa(secs)); err != nil {
				return err
			}
		}
		ratios = append(ratios, tps[1]/tps[0])
		table.Row(i+1, fmt.Sprintf("%.0f", tps[0]), fmt.Sprintf("%.0f", tps[1]), fmt.Sprintf("%.2f", tps[1]/tps[0]))
	}
	slices.Sort(ratios)
	c := relay.Counters()["bench"]
	load, _ = os.ReadFile("/proc/loadavg")
	fmt.Printf("\nmedian ratio %.2f; relay counters: %d accepted, %d bytes up, %d down; load average after: %s\n",
		ratios[len(ratios)/2], c.Accepted, c.BytesUp, c.BytesDown, strings.Join(strings.Fields(string(load))[:3], " "))
	return nil
}
