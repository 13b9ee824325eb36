// Command serverbench measures flexible servers end to end through
// privlinkd's ARM API with the official Azure SDK for Go
// (armpostgresqlflexibleservers/v5), against what the PostgreSQL part
// alone costs, measured in the same run by internal/pgserver's go test
// benchmarks (a compiled test binary, --pgserver-test):
//
//  1. create-to-ready: BeginCreateOrUpdate + PollUntilDone of one server at
//     a time, with the daemon's spare copy of the template ready before
//     each (as BenchmarkCreate/spare has it), p50/p99 over every creation,
//     against BenchmarkCreate's spare, copy and initdb. For each creation
//     the tool also reads the operation's startTime and endTime (the
//     daemon's own clock, from the PUT's transaction to the controller's
//     Reconciled), which separates the daemon's work from the client's
//     polling, and checks a TLS login from inside the server's namespace.
//  2. idle memory: after the round's servers have been idle 3 s, the RSS,
//     PSS and USS of each server's processes (its postmaster and every
//     descendant), against BenchmarkIdleMemory (one server alone); and
//     privlinkd's own RSS.
//  3. restart: with R servers (20) created through the API, stop privlinkd
//     (SIGTERM), stop the postmasters by the PIDs in their postmaster.pid
//     (SIGINT, PostgreSQL's fast shutdown, as pgserver's StopAll), start
//     privlinkd on the same data, and time until /healthz answers and
//     until every server accepts a TLS login (verify-full, SCRAM) from
//     inside its namespace; against BenchmarkColdStart20 (a new
//     pgserver.Manager bringing 20 stopped servers back). Logins are tried
//     from this process with sockets opened inside each server's namespace
//     (fabric.DialContext), every 25 ms per server; at the end each server
//     is also checked with psql through `ip netns exec`.
//
// Rounds interleave the baseline and the API measurement; the tables show
// pooled quantiles and medians of per-round ratios.
//
// It needs root and PostgreSQL 15. It starts its own privlinkd (bolt, a
// fresh data directory, a namespace prefix of its own) and at the end
// stops it, stops every postmaster it started and removes every namespace
// of its prefix. The pgserver test binary cleans up after itself.
//
//	go build -o /tmp/pl/ ./cmd/privlinkd && go test -c -o /tmp/pl/pgserver.test ./internal/pgserver/ &&
//	  go run ./bench/serverbench --privlinkd /tmp/pl/privlinkd --pgserver-test /tmp/pl/pgserver.test
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/privlink/privlink/bench/internal/benchd"
	"github.com/privlink/privlink/bench/internal/flex"
	"github.com/privlink/privlink/bench/internal/lat"
	"github.com/privlink/privlink/bench/internal/procmem"
	"github.com/privlink/privlink/bench/internal/sdk"
	"github.com/privlink/privlink/bench/internal/table"
	"github.com/privlink/privlink/internal/fabric"
)

type flags struct {
	bin, testBin   string
	n, rounds      int
	restartN       int
	restartRounds  int
	settle         time.Duration
	skipBaseline   bool
	restartTimeout time.Duration
}

func main() {
	var f flags
	flag.StringVar(&f.bin, "privlinkd", "", "path to a privlinkd binary (required)")
	flag.StringVar(&f.testBin, "pgserver-test", "", "path to internal/pgserver's compiled test binary (go test -c), the baseline (required unless -skip-baseline)")
	flag.IntVar(&f.n, "n", 5, "servers created, one at a time, in each round")
	flag.IntVar(&f.rounds, "rounds", 3, "interleaved rounds of creation (baseline, then API); 0: restart only")
	flag.IntVar(&f.restartN, "restart-servers", 20, "servers brought back after a privlinkd restart (0: skip)")
	flag.IntVar(&f.restartRounds, "restart-rounds", 3, "interleaved rounds of the restart (baseline, then API)")
	flag.DurationVar(&f.settle, "settle", 3*time.Second, "idle time before memory is read (BenchmarkIdleMemory waits 3s)")
	flag.DurationVar(&f.restartTimeout, "restart-timeout", 2*time.Minute, "bound on one restart")
	flag.BoolVar(&f.skipBaseline, "skip-baseline", false, "do not run the pgserver benchmarks")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("serverbench: ")
	if f.bin == "" || (f.testBin == "" && !f.skipBaseline) {
		log.Fatal("--privlinkd and --pgserver-test are required")
	}
	if os.Geteuid() != 0 {
		log.Fatal("must run as root: servers run in network namespaces as the postgres user")
	}
	if f.n < 1 || f.rounds < 0 {
		log.Fatal("-n must be at least 1, -rounds at least 0")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, f)
	stop()
	if err != nil {
		log.Fatal(err)
	}
}

const group = "bench"

type bench struct {
	f      flags
	d      *benchd.PGDaemon
	fab    *fabric.Fabric
	c      *sdk.Clients
	ops    *flex.Ops
	caFile string
}

// creation is one server's create through the API.
type creation struct {
	put    time.Duration // BeginCreateOrUpdate (the PUT) returned
	total  time.Duration // PollUntilDone returned
	daemon time.Duration // the operation's endTime − startTime
	login  time.Duration // one TLS login afterwards
}

// round is what one creation round measured.
type round struct {
	base    map[string]benchResult // BenchmarkCreate/{spare,copy,initdb}, BenchmarkIdleMemory
	creates []creation
	mem     []procmem.Mem // each server's processes
	daemon  procmem.Mem   // privlinkd
	deletes lat.Run
}

type restartRound struct {
	base      benchResult   // BenchmarkColdStart20
	stop      time.Duration // SIGTERM privlinkd + fast shutdown of every postmaster
	healthz   time.Duration // privlinkd started until /healthz answers
	all       time.Duration // privlinkd started until every server accepted a login
	each      []time.Duration
	notReady  int // servers the API did not report Ready right after /healthz
	apiStates map[string]int
}

func run(ctx context.Context, f flags) (err error) {
	fmt.Fprintf(os.Stderr, "machine: %s, load average %s\n", benchd.Machine(), benchd.LoadAvg())
	tap := benchd.NewLogTap(os.Stderr)
	d, err := benchd.StartPG(ctx, benchd.Options{Binary: f.bin, LogLevel: "info", Log: tap})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.Close()) }()
	fmt.Fprintf(os.Stderr, "privlinkd pid %d, namespace prefix %s, data %s\n", d.PID(), d.Prefix, d.DataDir())
	fab, err := fabric.New(d.Prefix, nil)
	if err != nil {
		return fmt.Errorf("fabric: %w", err)
	}
	b := &bench{f: f, d: d, fab: fab, caFile: d.Config.Creds.CAFile}
	if err := b.clients(); err != nil {
		return err
	}
	if err := b.c.CreateGroup(ctx, group); err != nil {
		return err
	}
	idle0, err := procmem.Of(d.PID())
	if err != nil {
		return err
	}

	// Warm-up: the first server makes the template (initdb) and warms
	// the connections, the token and the controllers.
	start := time.Now()
	if _, err := b.create(ctx, "warm"); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	warm := time.Since(start)
	if err := b.delete(ctx, "warm"); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	fmt.Fprintf(os.Stderr, "warm-up: first server (template initdb included) ready in %s\n", lat.Round(warm))

	var rounds []round
	for r := range f.rounds {
		var rd round
		if !f.skipBaseline {
			fmt.Fprintf(os.Stderr, "round %d: baseline (load %s)\n", r+1, benchd.LoadAvg())
			rd.base, err = b.runTest(ctx, "^Benchmark(Create|IdleMemory)$", f.n)
			if err != nil {
				return err
			}
		}
		fmt.Fprintf(os.Stderr, "round %d: API (load %s)\n", r+1, benchd.LoadAvg())
		names := make([]string, f.n)
		for i := range f.n {
			names[i] = fmt.Sprintf("sb-r%d-%02d", r+1, i)
			if err := flex.WaitSpare(ctx, d.DataDir(), time.Minute); err != nil {
				return err
			}
			c, err := b.create(ctx, names[i])
			if err != nil {
				return err
			}
			rd.creates = append(rd.creates, c)
		}
		if err := benchd.Sleep(ctx, f.settle); err != nil {
			return err
		}
		for _, name := range names {
			s, err := flex.Find(fab, d.Config, d.DataDir(), group, name)
			if err != nil {
				return err
			}
			pid, err := s.PostmasterPID()
			if err != nil {
				return err
			}
			m, err := procmem.OfTree(pid)
			if err != nil {
				return err
			}
			rd.mem = append(rd.mem, m)
		}
		if rd.daemon, err = procmem.Of(d.PID()); err != nil {
			return err
		}
		rd.deletes, err = lat.Drive(ctx, lat.Load{Clients: 1, Ops: f.n}, func(ctx context.Context, _, i int) error {
			return b.delete(ctx, names[i])
		})
		if err != nil {
			return err
		}
		rounds = append(rounds, rd)
		fmt.Fprintf(os.Stderr, "round %d: API create p50 %s (daemon %s); baseline spare p50 %s\n", r+1,
			lat.Round(lat.QuantileOf(rd.creates, func(c creation) time.Duration { return c.total }, 0.5)),
			lat.Round(lat.QuantileOf(rd.creates, func(c creation) time.Duration { return c.daemon }, 0.5)),
			lat.Round(rd.base["BenchmarkCreate/spare"].ms("p50-ms")))
	}
	if len(rounds) > 0 {
		reportCreate(f, warm, idle0, rounds)
	}

	if f.restartN > 0 {
		rr, created, err := b.restarts(ctx)
		if err != nil {
			return err
		}
		reportRestart(f, created, rr)
	}
	fmt.Fprintf(os.Stderr, "load average at the end: %s\n", benchd.LoadAvg())
	return nil
}

func (b *bench) clients() (err error) {
	if b.c, err = sdk.New(b.d.Config, nil); err != nil {
		return err
	}
	b.ops, err = flex.NewOps(b.d.Config)
	return err
}

// create makes server name through the API and checks a login.
func (b *bench) create(ctx context.Context, name string) (creation, error) {
	var c creation
	var resp *http.Response
	t, err := flex.Create(ctx, b.c, group, name, &resp)
	c.put, c.total = t.Answered, t.Done
	if err != nil {
		return c, err
	}
	ot, err := b.ops.Times(ctx, resp)
	if err != nil {
		return c, fmt.Errorf("server %s: %w", name, err)
	}
	c.daemon = ot.Took()
	s, err := flex.Find(b.fab, b.d.Config, b.d.DataDir(), group, name)
	if err != nil {
		return c, err
	}
	t1 := time.Now()
	if err := flex.Login(ctx, b.fab, b.caFile, s); err != nil {
		return c, fmt.Errorf("server %s is Ready but refuses a login: %w", name, err)
	}
	c.login = time.Since(t1)
	return c, nil
}

func (b *bench) delete(ctx context.Context, name string) error {
	return flex.Delete(ctx, b.c, group, name)
}

// restarts creates the restart servers, then runs the restart rounds.
func (b *bench) restarts(ctx context.Context) ([]restartRound, time.Duration, error) {
	f := b.f
	names := make([]string, f.restartN)
	for i := range names {
		names[i] = fmt.Sprintf("sb-many-%02d", i)
	}
	fmt.Fprintf(os.Stderr, "restart: creating %d servers, 4 at a time (load %s)\n", f.restartN, benchd.LoadAvg())
	start := time.Now()
	if _, err := lat.Drive(ctx, lat.Load{Clients: 4, Ops: f.restartN}, func(ctx context.Context, _, i int) error {
		_, err := b.create(ctx, names[i])
		return err
	}); err != nil {
		return nil, 0, err
	}
	created := time.Since(start)
	servers := make([]flex.Server, len(names))
	for i, name := range names {
		s, err := flex.Find(b.fab, b.d.Config, b.d.DataDir(), group, name)
		if err != nil {
			return nil, 0, err
		}
		servers[i] = s
	}
	var out []restartRound
	for r := range f.restartRounds {
		var rr restartRound
		if !f.skipBaseline {
			fmt.Fprintf(os.Stderr, "restart round %d: baseline (load %s)\n", r+1, benchd.LoadAvg())
			res, err := b.runTest(ctx, "^BenchmarkColdStart20$", 1)
			if err != nil {
				return nil, 0, err
			}
			rr.base = res["BenchmarkColdStart20"]
		}
		fmt.Fprintf(os.Stderr, "restart round %d: API (load %s)\n", r+1, benchd.LoadAvg())
		if err := b.restartOnce(ctx, servers, &rr); err != nil {
			return nil, 0, err
		}
		fmt.Fprintf(os.Stderr, "restart round %d: all %d logins after %s (healthz %s); baseline %s\n", r+1, len(servers),
			lat.Round(rr.all), lat.Round(rr.healthz), lat.Round(rr.base.ms("p50-ms")))
		each := slices.Sorted(slices.Values(rr.each))
		var ss []string
		for _, e := range each {
			ss = append(ss, lat.Round(e))
		}
		fmt.Fprintf(os.Stderr, "restart round %d: logins from start, sorted: %s\n", r+1, strings.Join(ss, " "))
		out = append(out, rr)
	}
	// The real client, once per server: psql inside each namespace.
	for _, s := range servers {
		if out, err := flex.PSQL(ctx, b.caFile, s, "select 1"); err != nil || out != "1" {
			return nil, 0, fmt.Errorf("after the restarts, psql on %s: %q %v", s.Name, out, err)
		}
	}
	return out, created, nil
}

// restartOnce stops privlinkd and the postmasters, starts privlinkd and
// waits until every server accepts a login.
func (b *bench) restartOnce(ctx context.Context, servers []flex.Server, rr *restartRound) error {
	t0 := time.Now()
	if err := b.d.Stop(); err != nil {
		return err
	}
	if n := len(b.d.Postmasters()); n != len(servers) {
		return fmt.Errorf("%d postmasters running before the restart, want %d", n, len(servers))
	}
	if err := b.d.StopPostmasters(syscall.SIGINT, time.Minute); err != nil {
		return err
	}
	rr.stop = time.Since(t0)
	if n := len(b.d.Postmasters()); n != 0 {
		return fmt.Errorf("%d postmasters still running after stopping them", n)
	}
	ctx, cancel := context.WithTimeout(ctx, b.f.restartTimeout)
	defer cancel()
	// Every server is probed from its own goroutine, from the moment
	// privlinkd is started.
	start := time.Now()
	rr.each = make([]time.Duration, len(servers))
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() {
			for {
				lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
				err := flex.Login(lctx, b.fab, b.caFile, s)
				lcancel()
				if err == nil {
					rr.each[i] = time.Since(start)
					return
				}
				if ctx.Err() != nil {
					errs[i] = fmt.Errorf("server %s: no login within %v: %w", s.Name, b.f.restartTimeout, err)
					return
				}
				time.Sleep(25 * time.Millisecond)
			}
		})
	}
	if err := b.d.Start(ctx); err != nil {
		cancel()
		wg.Wait()
		return err
	}
	rr.healthz = time.Since(start)
	// What the API says right away.
	rr.apiStates = map[string]int{}
	for _, s := range servers {
		g, err := b.c.Servers.Get(ctx, group, s.Name, nil)
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("get server %s: %w", s.Name, err)
		}
		st := "?"
		if g.Properties != nil && g.Properties.State != nil {
			st = string(*g.Properties.State)
		}
		rr.apiStates[st]++
		if st != string(armpostgresqlflexibleservers.ServerStateReady) {
			rr.notReady++
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	rr.all = slices.Max(rr.each)
	return nil
}

// benchResult is one line of go test -bench output: its metrics by unit.
type benchResult map[string]float64

func (r benchResult) ms(unit string) time.Duration {
	return time.Duration(r[unit] * float64(time.Millisecond))
}

// runTest runs the pgserver test binary's benchmarks matching pattern
// with -benchtime Nx and returns their results by name (without the -P
// suffix).
func (b *bench) runTest(ctx context.Context, pattern string, n int) (map[string]benchResult, error) {
	cmd := exec.CommandContext(ctx, b.f.testBin, "-test.run", "^$", "-test.bench", pattern, "-test.benchtime", fmt.Sprintf("%dx", n))
	cmd.Dir = os.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	res := parseBench(out.Bytes())
	if len(res) == 0 || ctx.Err() != nil {
		return nil, fmt.Errorf("%s: %v; no benchmark results:\n%s", b.f.testBin, runErr, out.String())
	}
	if runErr != nil {
		// The measurement printed its result, but the test failed, e.g.
		// on pgserver's own leak checks at cleanup: keep the result, say so.
		fmt.Fprintf(os.Stderr, "warning: %s %s: %v, after printing its results:\n%s", b.f.testBin, pattern, runErr, out.String())
	}
	return res, nil
}

// parseBench reads go test -bench output: each result line's metrics by
// unit, by benchmark name without the -GOMAXPROCS suffix.
func parseBench(out []byte) map[string]benchResult {
	res := map[string]benchResult{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	current := "" // the benchmark whose log lines follow
	for sc.Scan() {
		line := sc.Text()
		// A benchmark that fails (pgserver's cleanup checks for leaked
		// file descriptors, say) prints no result line, but its log has
		// the quantiles: "n=5 min 1s p50 2s p99 3s max 3s".
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "--- FAIL: "); ok {
			current = trimProcs(name)
			continue
		}
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "--- BENCH: "); ok {
			current = trimProcs(name)
			continue
		}
		if current != "" && strings.Contains(line, "bench_test.go") && strings.Contains(line, " p50 ") {
			if r := quantileLog(line); r != nil {
				if _, ok := res[current]; !ok {
					res[current] = r
				}
			}
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		name := trimProcs(fields[0])
		r := benchResult{}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err == nil {
				r[fields[i+1]] = v
			}
		}
		res[name] = r
	}
	return res
}

// trimProcs removes go test's -GOMAXPROCS suffix from a benchmark name.
func trimProcs(name string) string {
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			return name[:i]
		}
	}
	return name
}

// quantileLog reads pgserver's reportPercentiles log line.
func quantileLog(line string) benchResult {
	f := strings.Fields(line)
	r := benchResult{}
	for i := 0; i+1 < len(f); i++ {
		unit := map[string]string{"p50": "p50-ms", "p99": "p99-ms"}[f[i]]
		if unit == "" {
			continue
		}
		if d, err := time.ParseDuration(f[i+1]); err == nil {
			r[unit] = float64(d) / float64(time.Millisecond)
		}
	}
	if len(r) != 2 {
		return nil
	}
	return r
}

func reportCreate(f flags, warm time.Duration, idle0 procmem.Mem, rounds []round) {
	var all []creation
	var mems []procmem.Mem
	for _, r := range rounds {
		all = append(all, r.creates...)
		mems = append(mems, r.mem...)
	}
	q := func(get func(creation) time.Duration, p float64) string {
		return lat.Round(lat.QuantileOf(all, get, p))
	}
	total := func(c creation) time.Duration { return c.total }
	daemon := func(c creation) time.Duration { return c.daemon }
	fmt.Printf("\n## Create-to-ready: %d servers, one at a time, in each of %d rounds (%d in all); spare copy ready before each\n\n", f.n, f.rounds, len(all))
	fmt.Printf("first server of a fresh daemon (makes the template with initdb): %s\n\n", lat.Round(warm))
	table.Header("measurement", "p50", "p99", "median of per-round p50 ÷ baseline spare p50")
	ratio := func(get func(creation) time.Duration) string {
		if f.skipBaseline {
			return "–"
		}
		return fmt.Sprintf("%.2f", lat.MedianOf(rounds, func(r round) float64 {
			return lat.QuantileOf(r.creates, get, 0.5).Seconds() / r.base["BenchmarkCreate/spare"].ms("p50-ms").Seconds()
		}))
	}
	if !f.skipBaseline {
		for _, v := range []string{"spare", "copy", "initdb"} {
			name := "BenchmarkCreate/" + v
			fmt.Printf("| pgserver %s (baseline; medians of per-round p50/p99 over %d each) | %s | %s | %.2f |\n", name, f.n,
				lat.Round(lat.MedianOf(rounds, func(r round) time.Duration { return r.base[name].ms("p50-ms") })),
				lat.Round(lat.MedianOf(rounds, func(r round) time.Duration { return r.base[name].ms("p99-ms") })),
				lat.MedianOf(rounds, func(r round) float64 {
					return r.base[name]["p50-ms"] / r.base["BenchmarkCreate/spare"]["p50-ms"]
				}))
		}
	}
	fmt.Printf("| API: PUT returned | %s | %s | – |\n", q(func(c creation) time.Duration { return c.put }, 0.5), q(func(c creation) time.Duration { return c.put }, 0.99))
	fmt.Printf("| API: daemon's operation (startTime → endTime) | %s | %s | %s |\n", q(daemon, 0.5), q(daemon, 0.99), ratio(daemon))
	fmt.Printf("| **API: PUT → PollUntilDone (Ready)** | **%s** | **%s** | **%s** |\n", q(total, 0.5), q(total, 0.99), ratio(total))
	fmt.Printf("| API: poll overhead (PollUntilDone − operation) | %s | %s | – |\n",
		q(func(c creation) time.Duration { return c.total - c.daemon }, 0.5), q(func(c creation) time.Duration { return c.total - c.daemon }, 0.99))
	fmt.Printf("| one TLS login afterwards (verify-full, SCRAM) | %s | %s | – |\n", q(func(c creation) time.Duration { return c.login }, 0.5), q(func(c creation) time.Duration { return c.login }, 0.99))
	var dels []time.Duration
	for _, r := range rounds {
		dels = append(dels, r.deletes.Lat...)
	}
	slices.Sort(dels)
	fmt.Printf("| API: BeginDelete → PollUntilDone | %s | %s | – |\n", lat.Round(lat.Quantile(dels, 0.5)), lat.Round(lat.Quantile(dels, 0.99)))

	fmt.Printf("\n## Idle memory: each server's processes after %s idle (%d servers running at once, medians over %d servers)\n\n", f.settle, f.n, len(mems))
	table.Header("measurement", "processes", "RSS", "PSS", "USS")
	if !f.skipBaseline {
		fmt.Printf("| pgserver BenchmarkIdleMemory (baseline: one server alone; median of rounds) | %.0f | %.1f MiB | %.1f MiB | – |\n",
			lat.MedianOf(rounds, func(r round) float64 { return r.base["BenchmarkIdleMemory"]["processes"] }),
			lat.MedianOf(rounds, func(r round) float64 { return r.base["BenchmarkIdleMemory"]["rss-MiB"] }),
			lat.MedianOf(rounds, func(r round) float64 { return r.base["BenchmarkIdleMemory"]["pss-MiB"] }))
	}
	fmt.Printf("| server created through the API | %.0f | %s | %s | %s |\n",
		lat.MedianOf(mems, func(m procmem.Mem) float64 { return float64(m.Procs) }),
		procmem.MiB(int64(lat.MedianOf(mems, func(m procmem.Mem) float64 { return float64(m.RSS) }))),
		procmem.MiB(int64(lat.MedianOf(mems, func(m procmem.Mem) float64 { return float64(m.PSS) }))),
		procmem.MiB(int64(lat.MedianOf(mems, func(m procmem.Mem) float64 { return float64(m.USS) }))))
	if !f.skipBaseline {
		fmt.Printf("\nratio API ÷ baseline (median of per-round ratios of the round's median server): RSS %.2f, PSS %.2f\n",
			lat.MedianOf(rounds, func(r round) float64 {
				return lat.MedianOf(r.mem, func(m procmem.Mem) float64 { return float64(m.RSS) }) / (r.base["BenchmarkIdleMemory"]["rss-MiB"] * (1 << 20))
			}),
			lat.MedianOf(rounds, func(r round) float64 {
				return lat.MedianOf(r.mem, func(m procmem.Mem) float64 { return float64(m.PSS) }) / (r.base["BenchmarkIdleMemory"]["pss-MiB"] * (1 << 20))
			}))
	}
	fmt.Printf("\nprivlinkd: RSS %s at start (no server), %s with %d idle servers (median of rounds), peak RSS %s\n",
		procmem.MiB(idle0.RSS), procmem.MiB(int64(lat.MedianOf(rounds, func(r round) float64 { return float64(r.daemon.RSS) }))), f.n,
		procmem.MiB(rounds[len(rounds)-1].daemon.HWM))
}

func reportRestart(f flags, created time.Duration, rr []restartRound) {
	n := f.restartN
	fmt.Printf("\n## Restart: %d servers; stop privlinkd, fast-stop the postmasters, start privlinkd (%d rounds, medians)\n\n", n, len(rr))
	fmt.Printf("creating the %d servers through the API, 4 at a time: %s\n\n", n, lat.Round(created))
	table.Header("measurement", "median", "min", "max", "ratio to baseline (median of per-round)")
	row := func(name string, get func(restartRound) time.Duration, withRatio bool) {
		ds := make([]time.Duration, len(rr))
		for i, r := range rr {
			ds[i] = get(r)
		}
		ratio := "–"
		if withRatio && !f.skipBaseline {
			ratio = fmt.Sprintf("%.2f", lat.MedianOf(rr, func(r restartRound) float64 { return get(r).Seconds() / r.base.ms("p50-ms").Seconds() }))
		}
		fmt.Printf("| %s | %s | %s | %s | %s |\n", name, lat.Round(lat.Median(ds)), lat.Round(slices.Min(ds)), lat.Round(slices.Max(ds)), ratio)
	}
	if !f.skipBaseline {
		row("pgserver BenchmarkColdStart20 (baseline: a new Manager, Ensure of 20 stopped servers)", func(r restartRound) time.Duration { return r.base.ms("p50-ms") }, true)
	}
	row("stop: SIGTERM privlinkd, then SIGINT every postmaster until all exited", func(r restartRound) time.Duration { return r.stop }, false)
	row("start privlinkd → /healthz 200", func(r restartRound) time.Duration { return r.healthz }, false)
	row("start privlinkd → first server accepts a TLS login", func(r restartRound) time.Duration { return slices.Min(r.each) }, false)
	row("start privlinkd → median server accepts a TLS login", func(r restartRound) time.Duration { return lat.Median(r.each) }, false)
	row(fmt.Sprintf("**start privlinkd → all %d accept a TLS login**", n), func(r restartRound) time.Duration { return r.all }, true)
	for i, r := range rr {
		fmt.Printf("\nround %d: API states right after /healthz: %v", i+1, r.apiStates)
	}
	fmt.Println()
}
