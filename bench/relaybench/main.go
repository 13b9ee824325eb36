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
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/privlink/privlink/bench/internal/nsclient"
	"github.com/privlink/privlink/bench/internal/table"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/proxyrelay"
)

var tpsRE = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)

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

	dir, err := os.MkdirTemp("", "relaybench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	data := filepath.Join(dir, "data")
	pg, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("the postgres system user (Debian's postgresql-15): %w", err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return err
	}
	asPG := func(name string, args ...string) *exec.Cmd {
		return nsclient.Command(ctx, serverNS, "runuser", append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
	}
	if out, err := asPG("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-N").CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = fmt.Fprintf(hba, "host all postgres %s/24 trust\n", serverIP)
		err = errors.Join(err, hba.Close())
	}
	if err != nil {
		return fmt.Errorf("pg_hba.conf: %w", err)
	}
	opts := fmt.Sprintf("-c listen_addresses=%s -c port=5432 -k %s -c max_connections=50 -c fsync=off", serverIP, dir)
	if out, err := asPG("pg_ctl", "-D", data, "-o", opts, "-w", "-l", filepath.Join(dir, "log"), "start").CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl start: %v\n%s", err, out)
	}
	defer asPG("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop").Run()

	relay := proxyrelay.New(ctx, fab, log, proxyrelay.Options{})
	defer relay.Close()
	if err := relay.Set([]proxyrelay.Route{{
		Name: "bench", ListenNamespace: serverNS, Listen: netip.AddrPortFrom(serverIP, 6432),
		DialNamespace: serverNS, Upstream: netip.AddrPortFrom(serverIP, 5432),
	}}); err != nil {
		return err
	}
	pgbench := func(port int, args ...string) (string, error) {
		a := append([]string{"-h", serverIP.String(), "-p", strconv.Itoa(port), "-U", "postgres"}, args...)
		out, err := nsclient.Command(ctx, consumerNS, "pgbench", append(a, "postgres")...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("pgbench %s: %v\n%s", strings.Join(a, " "), err, out)
		}
		return string(out), nil
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
			out, err := pgbench(port, "-n", "-S", "-c", "8", "-j", "2", "-T", strconv.Itoa(secs))
			if err != nil {
				return err
			}
			m := tpsRE.FindStringSubmatch(out)
			if m == nil {
				return fmt.Errorf("no tps in pgbench's output:\n%s", out)
			}
			tps[j], _ = strconv.ParseFloat(m[1], 64)
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
