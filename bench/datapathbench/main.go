// Command datapathbench measures PostgreSQL sessions through a private
// endpoint against the same server reached directly, with pgbench, and how
// long an endpoint takes from its PUT to the first successful query.
//
// It starts its own privlinkd (root, a fresh data directory, a namespace
// prefix of its own; bench/internal/benchd) and, through the official SDK
// modules (bench/internal/sdk), creates a
// flexible server "srv", a network 10.0.0.0/16 with a client NIC and an
// endpoint subnet, and the privatelink zone linked to the network.
//
// First query: N times, it PUTs an endpoint to srv with its DNS zone group
// (BeginCreateOrUpdate + PollUntilDone of each, as a user of the SDK does)
// while psql runs `select 1` in a loop inside the client NIC's namespace,
// and times the PUT's start to psql's first success. Beside psql, a probe
// in this process polls every 5 ms from inside the NIC (sockets opened in
// its namespace) for the name to resolve and a TCP connection to it to
// complete: when the data path was ready, without psql's own cost. Each
// endpoint but the last is then deleted, and the next sample starts only
// once psql fails again (the zone group's record is shared by the
// endpoints of one server, so a live endpoint would answer for the next
// one).
//
// pgbench: `pgbench -i -s SCALE` on a database "bench", then select-only
// (-S) and TPC-B-like runs at 1, 8 and 32 clients and a select-only run with
// a new connection per transaction (-C) at 8 clients, each for a fixed
// duration, with -j 2, sslmode=require:
//
//   - direct: `ip netns exec <server's namespace> pgbench` against the
//     address PostgreSQL listens on, over the namespace's loopback;
//   - endpoint: `privlink exec -g RG client -- pgbench` with host
//     srv.postgres.database.azure.com, resolved by the network's DNS (for -C,
//     once per connection, as libpq does) and translated by the router's
//     nftables rules;
//   - for -C also the endpoint by address (hostaddr=the endpoint's IP), to
//     tell the DNS lookup from the translation.
//
// Rounds are interleaved (direct and endpoint one after the other, which
// one goes first alternating from round to round); the tables show medians,
// and each ratio is the median of the per-round ratios. For every run the
// tool also records CPU time: PostgreSQL's (the postmaster and all its
// processes), pgbench's, privlinkd's, the ksoftirqd threads', and the
// machine's softirq, busy and idle time from /proc/stat, and for the
// endpoint runs the translation's nftables counters. With --perf it also
// profiles one more run of each path (perf record -a) and sorts the
// samples of postgres, pgbench and ksoftirqd by kernel subsystem.
//
// With --peered (peering.go) it compares, instead, the endpoint from a
// network peered with its own against from its own network, select-only
// at each --clients count, and times the connecting peering PUT to the
// first query from the peered network.
//
// With --policies (policies.go) it compares, instead, the endpoint with
// its subnet's NSG applied and ignored: an NSG of 100 rules and an ASG of
// 50 NICs, privateEndpointNetworkPolicies Enabled against Disabled, rounds
// alternating, select-only at each --clients count; then it times 30
// security rule PUTs to the moment a probe inside the client NIC sees them
// enforced.
//
// No process in the host namespace sends a packet to an emulated address:
// every client runs inside a privlink namespace. At the end the tool stops
// privlinkd and the postmaster it started (by PID) and removes every
// namespace of its prefix.
//
//	go build -o /tmp/pl/ ./cmd/privlinkd ./cmd/privlink ./bench/datapathbench
//	/tmp/pl/datapathbench --privlinkd /tmp/pl/privlinkd --privlink /tmp/pl/privlink
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/privlink/privlink/bench/internal/benchd"
	"github.com/privlink/privlink/bench/internal/flex"
	"github.com/privlink/privlink/bench/internal/lat"
	"github.com/privlink/privlink/bench/internal/nsclient"
	"github.com/privlink/privlink/bench/internal/procmem"
	"github.com/privlink/privlink/bench/internal/sdk"
	"github.com/privlink/privlink/bench/internal/table"
	"github.com/privlink/privlink/internal/fabric"
)

const (
	rg         = "bench"
	serverName = "srv"
	serverFQDN = serverName + ".postgres.database.azure.com"
	database   = "bench"
)

type flags struct {
	privlinkd, privlink string
	rounds              int
	duration            time.Duration
	clients             []int
	threads             int
	scale               int
	firstQuery          int
	perfDir             string
	hold                bool
	policies            bool
	pgbouncer           bool
	poolMode            string
	peered              bool
}

func main() {
	var f flags
	clients := flag.String("clients", "1,8,32", "client counts of the select-only and TPC-B-like rows")
	flag.StringVar(&f.privlinkd, "privlinkd", "", "path to a privlinkd binary (required)")
	flag.StringVar(&f.privlink, "privlink", "", "path to the privlink CLI (required: the endpoint's pgbench runs under `privlink exec`)")
	flag.IntVar(&f.rounds, "rounds", 5, "interleaved rounds; the tables show medians")
	flag.DurationVar(&f.duration, "d", 5*time.Second, "duration of each pgbench run (-T)")
	flag.IntVar(&f.threads, "j", 2, "pgbench threads (-j)")
	flag.IntVar(&f.scale, "s", 10, "pgbench scale factor (-i -s)")
	flag.IntVar(&f.firstQuery, "first-query", 10, "endpoints created for the PUT → first query measurement (0: skip)")
	flag.StringVar(&f.perfDir, "perf", "", "also profile (perf record -a) one extra direct and one endpoint select-only run at 8 clients, into this directory")
	flag.BoolVar(&f.policies, "policies", false, "instead of direct against endpoint: the endpoint with its subnet's NSG (100 rules, an ASG of 50 NICs) applied (privateEndpointNetworkPolicies Enabled) against ignored (Disabled), select-only at each --clients, and security rule PUT → enforcement (30 changes); skips the first-query samples")
	flag.BoolVar(&f.pgbouncer, "pgbouncer", false, "instead of direct against endpoint: the endpoint at 6432 (the server's PgBouncer, enabled through the configurations API) against 5432, select-only with -C and without, 8 clients; skips the first-query samples")
	flag.StringVar(&f.poolMode, "pool-mode", "TRANSACTION", "with --pgbouncer: pgbouncer.pool_mode")
	flag.BoolVar(&f.peered, "peered", false, "instead of direct against endpoint: the endpoint from a network peered with its own (peering.go) against from its own network, select-only at each --clients; and --first-query times the connecting peering PUT → first query from the peered network")
	flag.BoolVar(&f.hold, "hold", false, "after the setup and pgbench -i, print the namespaces and wait for Ctrl-C instead of measuring (for investigation)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("datapathbench: ")
	if f.privlinkd == "" || f.privlink == "" {
		log.Fatal("--privlinkd and --privlink are required")
	}
	if os.Geteuid() != 0 {
		log.Fatal("must run as root: privlinkd creates network namespaces and PostgreSQL servers")
	}
	for _, tool := range []string{"pgbench", "psql", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			log.Fatalf("%s not found (Debian: postgresql-15, iproute2)", tool)
		}
	}
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 40 {
			log.Fatalf("--clients: %q: want counts from 1 to 40 (below the server's max_connections)", s)
		}
		f.clients = append(f.clients, n)
	}
	if f.rounds < 1 || f.duration < time.Second || f.threads < 1 || f.scale < 1 {
		log.Fatal("--rounds, -d, -j and -s must be positive (-d at least 1s)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, f)
	stop()
	if err != nil {
		log.Fatal(err)
	}
}

// bench is the daemon, the SDK clients and what the setup made.
type bench struct {
	f       flags
	d       *benchd.PGDaemon
	dataDir string
	c       *sdk.Clients

	fab       *fabric.Fabric     // the daemon's prefix: counters, and the probe's sockets in the NIC
	dns       *nsclient.Resolver // the network's DNS, from the client NIC
	srv       flex.Server        // srv's namespace and the address PostgreSQL listens on there
	nicNS     string             // the client NIC's namespace
	vnetID    string
	vnetFID   string
	pe        string     // the endpoint the pgbench runs go through
	peAddr    netip.Addr // its address
	privlinkd int        // PID, for its CPU time
}

func run(ctx context.Context, f flags) (err error) {
	fmt.Printf("machine: %s, load average %s\n", benchd.Machine(), benchd.LoadAvg())
	d, err := benchd.StartPG(ctx, benchd.Options{Binary: f.privlinkd, Log: benchd.NewLogTap(os.Stderr)})
	if err != nil {
		return err
	}
	b := &bench{f: f, d: d, dataDir: d.DataDir(), privlinkd: d.PID()}
	defer func() { err = errors.Join(err, d.Close()) }()
	if err := b.setup(ctx); err != nil {
		return err
	}
	defer b.dns.Close()
	var fq []firstQuery
	if f.firstQuery > 0 && !f.policies && !f.pgbouncer && !f.peered {
		if fq, err = b.firstQueries(ctx, f.firstQuery); err != nil {
			return err
		}
	} else if err := b.createEndpoint(ctx, "pe1", nil); err != nil {
		return err
	}
	if err := b.pgbenchInit(ctx); err != nil {
		return err
	}
	if f.hold {
		fmt.Printf("holding: data dir %s; client: ip netns exec %s ...; server: ip netns exec %s ... (PGHOST=%s); endpoint %s; Ctrl-C ends\n",
			b.dataDir, b.nicNS, b.srv.NS, b.srv.Addr, b.peAddr)
		<-ctx.Done()
		return nil
	}
	if f.policies {
		return b.runPolicies(ctx)
	}
	if f.pgbouncer {
		return b.runPgBouncer(ctx)
	}
	if f.peered {
		return b.runPeered(ctx)
	}
	res, err := b.rounds(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("\nload average at the end: %s\n", benchd.LoadAvg())
	report(f, res, fq)
	if f.perfDir != "" {
		if err := b.perf(ctx); err != nil {
			return err
		}
	}
	return nil
}

// setup creates the server, the network with its client NIC and the linked
// privatelink zone, and finds the namespaces.
func (b *bench) setup(ctx context.Context) (err error) {
	start := time.Now()
	if b.c, err = sdk.New(b.d.Config, nil); err != nil {
		return err
	}
	if b.fab, err = fabric.New(b.d.Prefix, nil); err != nil {
		return err
	}
	if err := b.c.CreateGroup(ctx, rg); err != nil {
		return err
	}

	// The server and the network side by side.
	srvDone := make(chan error, 1)
	go func() {
		p, err := b.c.Servers.BeginCreateOrUpdate(ctx, rg, serverName, flex.ServerBody(), nil)
		if err == nil {
			_, err = p.PollUntilDone(ctx, sdk.PollOpts)
		}
		if err != nil {
			err = fmt.Errorf("server %s: %w", serverName, err)
		}
		srvDone <- err
	}()
	n, err := b.c.CreateClientNetwork(ctx, rg, "10.0.2.0/24")
	if err := errors.Join(err, <-srvDone); err != nil {
		return err
	}
	b.vnetID = n.VNetID

	// Namespaces: the client NIC's as `privlink netns` reports it (what
	// `privlink exec` becomes), the server's as the controller names it.
	out, err := exec.CommandContext(ctx, b.f.privlink, "--data-dir", b.dataDir, "netns", "-g", rg, "client").Output()
	if err != nil {
		return fmt.Errorf("privlink netns: %w", err)
	}
	b.nicNS = strings.TrimSpace(string(out))
	if b.dns, err = nsclient.DialResolver(ctx, b.fab, b.nicNS); err != nil {
		return err
	}
	if b.srv, err = flex.Find(b.fab, b.d.Config, b.dataDir, rg, serverName); err != nil {
		return err
	}
	if b.vnetFID, err = sdk.FabricID(b.vnetID); err != nil {
		return err
	}
	fmt.Printf("setup: server %s (namespace %s, listening on %s:5432), network with client NIC (namespace %s), privatelink zone linked: %s\n",
		serverName, b.srv.NS, b.srv.Addr, b.nicNS, lat.Round(time.Since(start)))
	return nil
}

// endpointTimes are the moments of one endpoint's creation, from the start
// of its PUT.
type endpointTimes struct {
	putAnswered, endpointDone, groupAnswered, groupDone time.Duration
}

// createEndpoint PUTs endpoint name to srv and then its zone group, each
// with PollUntilDone, and makes it the endpoint of the pgbench runs.
func (b *bench) createEndpoint(ctx context.Context, name string, t *endpointTimes) error {
	if t == nil {
		t = &endpointTimes{}
	}
	pe, et, err := b.c.CreateEndpoint(ctx, rg, name, b.vnetID+"/subnets/endpoints", b.c.ID(rg, "Microsoft.DBforPostgreSQL/flexibleServers", serverName), nil)
	t.putAnswered, t.endpointDone = et.Answered, et.Done
	if err != nil {
		return err
	}
	zt, err := b.c.CreateZoneGroup(ctx, rg, name, b.c.ID(rg, "Microsoft.Network/privateDnsZones", sdk.PrivateLinkZone))
	t.groupAnswered, t.groupDone = t.endpointDone+zt.Answered, t.endpointDone+zt.Done
	if err != nil {
		return err
	}
	b.peAddr = sdk.EndpointIP(pe)
	b.pe, err = sdk.FabricID(b.c.ID(rg, "Microsoft.Network/privateEndpoints", name))
	return err
}

// psqlNIC runs `select 1` once from the client NIC, by the server's usual
// name, as `privlink exec -g bench client -- psql ...` does once it has
// found the namespace.
func (b *bench) psqlNIC(ctx context.Context) (string, error) { return b.psqlFrom(ctx, b.nicNS) }

// psqlFrom is psqlNIC from the NIC whose namespace is ns.
func (b *bench) psqlFrom(ctx context.Context, ns string) (string, error) {
	cmd := nsclient.Command(ctx, ns, "psql",
		"host="+serverFQDN+" user="+flex.AdminLogin+" dbname=postgres sslmode=require connect_timeout=3", "-XAtqc", "select 1")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+flex.AdminPassword)
	out, err := cmd.CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err == nil && s != "1" {
		err = fmt.Errorf("unexpected answer %q", s)
	}
	return s, err
}

// firstQuery is one sample of PUT → first successful query.
type firstQuery struct {
	endpointTimes
	first    time.Duration // the first psql success, from the PUT's start
	attempts int           // psql runs, the successful one included
	lastFail string        // why the last failed attempt failed
	attempt  time.Duration // how long the successful psql run took
	// The probe's view, from the PUT's start: the name first resolved to
	// an address, and a TCP connection to it first completed.
	resolved, connected time.Duration
}

func (b *bench) firstQueries(ctx context.Context, n int) ([]firstQuery, error) {
	fmt.Printf("\nendpoint PUT → first successful query, %d endpoints (SDK: endpoint PUT+poll, then zone group PUT+poll; psql loops in the client NIC from the start)\n", n)
	var out []firstQuery
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("pe%d", i)
		// Nothing answers before the PUT.
		gone := false
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
			if _, err := b.psqlNIC(ctx); err != nil {
				gone = true
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !gone {
			return nil, fmt.Errorf("first query %d: srv still answers from the NIC 15s after the previous endpoint's deletion", i)
		}
		var s firstQuery
		loopCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
		done := make(chan error, 1)
		probed := make(chan error, 1)
		start := time.Now()
		go func() {
			var err error
			s.resolved, s.connected, err = b.probe(loopCtx, start)
			probed <- err
		}()
		go func() {
			for {
				t0 := time.Now()
				msg, err := b.psqlNIC(loopCtx)
				s.attempts++
				if err == nil {
					s.first, s.attempt = time.Since(start), time.Since(t0)
					done <- nil
					return
				}
				if loopCtx.Err() != nil {
					done <- fmt.Errorf("no successful query within 60s of the PUT; last: %s", s.lastFail)
					return
				}
				s.lastFail = failure(msg)
			}
		}()
		err := b.createEndpoint(ctx, name, &s.endpointTimes)
		if err != nil {
			cancel()
			<-done
			return nil, err
		}
		err = errors.Join(<-done, <-probed)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, s)
		fmt.Printf("  %s: first query %s after the PUT (PUT answered %s, endpoint done %s, zone group answered %s, done %s; probe: name resolved %s, TCP connected %s; %d psql runs, last failure: %s; the successful run took %s)\n",
			name, lat.Round(s.first), lat.Round(s.putAnswered), lat.Round(s.endpointDone), lat.Round(s.groupAnswered), lat.Round(s.groupDone),
			lat.Round(s.resolved), lat.Round(s.connected), s.attempts, s.lastFail, lat.Round(s.attempt))
		if i < n {
			if err := b.c.DeleteEndpoint(ctx, rg, name); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// probe polls, every 5 ms from inside the client NIC, what a client needs of
// the data path: the server's name resolves through the network's DNS
// (168.63.129.16, as the NIC's resolv.conf says), and a TCP connection to
// the address completes (the router answers connections it does not
// translate with a reset, as the endpoint address is on its lo). It returns
// when both first happened, from start. Its sockets are opened inside the
// NIC's namespace (fabric.DialContext), never in the host's.
func (b *bench) probe(ctx context.Context, start time.Time) (resolved, connected time.Duration, err error) {
	for {
		if addr, ok := b.resolve(); ok {
			if resolved == 0 {
				resolved = time.Since(start)
			}
			dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			c, err := b.fab.DialContext(dctx, b.nicNS, "tcp", netip.AddrPortFrom(addr, 5432).String())
			cancel()
			if err == nil {
				connected = time.Since(start)
				c.Close()
				return resolved, connected, nil
			}
		}
		select {
		case <-ctx.Done():
			return resolved, connected, fmt.Errorf("probe: not connected within 60s (resolved after %s)", resolved)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// resolve asks the network's DNS for the server's A record, from the NIC.
func (b *bench) resolve() (netip.Addr, bool) {
	addrs, rcode, err := b.dns.A(serverFQDN+".", 200*time.Millisecond)
	if err != nil || rcode != mdns.RcodeSuccess || len(addrs) == 0 {
		return netip.Addr{}, false
	}
	return addrs[0], true
}

// failure classifies a failed psql run by its message.
func failure(msg string) string {
	switch {
	case msg == "":
		return "none"
	case strings.Contains(msg, "could not translate host name"):
		return "name not resolved"
	case strings.Contains(msg, "Connection refused"):
		return "connection refused"
	case strings.Contains(msg, "timeout"):
		return "timeout"
	case strings.Contains(msg, "No route"):
		return "no route"
	}
	if i := strings.IndexByte(msg, '\n'); i > 0 {
		msg = msg[:i]
	}
	return msg
}

// pgEnv is libpq's environment for pgbench: the admin, TLS required.
func pgEnv(host, hostaddr string) []string {
	env := append(os.Environ(), "PGUSER="+flex.AdminLogin, "PGPASSWORD="+flex.AdminPassword, "PGDATABASE="+database,
		"PGSSLMODE=require", "PGCONNECT_TIMEOUT=10", "PGHOST="+host)
	if hostaddr != "" {
		env = append(env, "PGHOSTADDR="+hostaddr)
	}
	return env
}

// pgbenchInit creates the database and fills it, directly in the server's
// namespace, and shows the TLS of a session on each path.
func (b *bench) pgbenchInit(ctx context.Context) error {
	start := time.Now()
	cmd := nsclient.Command(ctx, b.srv.NS, "psql", "-XAtqc", "create database "+database)
	cmd.Env = append(pgEnv(b.srv.Addr.String(), ""), "PGDATABASE=postgres")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("create database: %v: %s", err, out)
	}
	cmd = nsclient.Command(ctx, b.srv.NS, "pgbench", "-i", "-q", "-s", strconv.Itoa(b.f.scale))
	cmd.Env = pgEnv(b.srv.Addr.String(), "")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v: %s", err, out)
	}
	fmt.Printf("\npgbench -i -s %d: %s\n", b.f.scale, lat.Round(time.Since(start)))
	const q = "select s.version || ' ' || s.cipher || ', server sees ' || host(a.client_addr) from pg_stat_ssl s join pg_stat_activity a using (pid) where pid = pg_backend_pid()"
	for _, p := range []pathKind{direct, endpoint} {
		c := b.command(ctx, p, "psql", "-XAtqc", q)
		out, err := c.CombinedOutput()
		if err != nil {
			return fmt.Errorf("TLS check, %s: %v: %s", p, err, out)
		}
		fmt.Printf("session %s: %s\n", p, strings.TrimSpace(string(out)))
	}
	return nil
}

type pathKind int

const (
	direct pathKind = iota
	endpoint
	endpointAddr
	// endpointBouncer is the endpoint at 6432, the server's PgBouncer
	// (--pgbouncer).
	endpointBouncer
	// endpointPeered is the endpoint from the client NIC of a network
	// peered with the endpoint's (--peered).
	endpointPeered
)

func (p pathKind) String() string {
	return [...]string{"direct", "endpoint", "endpoint by address", "endpoint at 6432", "endpoint from a peered network"}[p]
}

// command runs name inside the path's client namespace with libpq's
// environment for that path.
func (b *bench) command(ctx context.Context, p pathKind, name string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	switch p {
	case direct:
		cmd = nsclient.Command(ctx, b.srv.NS, name, args...)
		cmd.Env = pgEnv(b.srv.Addr.String(), "")
	case endpointPeered:
		cmd = exec.CommandContext(ctx, b.f.privlink, append([]string{"--data-dir", b.dataDir, "exec", "-g", peerRG, peerNIC, "--", name}, args...)...)
		cmd.Env = pgEnv(serverFQDN, "")
	default:
		cmd = exec.CommandContext(ctx, b.f.privlink, append([]string{"--data-dir", b.dataDir, "exec", "-g", rg, "client", "--", name}, args...)...)
		cmd.Env = pgEnv(serverFQDN, "")
		if p == endpointAddr {
			cmd.Env = pgEnv(serverFQDN, b.peAddr.String())
		}
		if p == endpointBouncer {
			cmd.Env = append(cmd.Env, "PGPORT=6432")
		}
	}
	return cmd
}

// row is one line of the pgbench table.
type row struct {
	name    string
	args    []string
	clients int
	goal    float64 // minimum ratio endpoint/direct; 0: none set
	byAddr  bool    // also the endpoint by address
}

func (f flags) rows() []row {
	var rows []row
	for _, c := range f.clients {
		rows = append(rows, row{name: "select-only (-S)", args: []string{"-S"}, clients: c, goal: map[bool]float64{true: 0.90}[c == 8]})
	}
	for _, c := range f.clients {
		rows = append(rows, row{name: "TPC-B-like", clients: c, goal: 0.95})
	}
	rows = append(rows, row{name: "select-only, new connection per transaction (-S -C)", args: []string{"-S", "-C"}, clients: 8, goal: 0.85, byAddr: true})
	return rows
}

// cpu is CPU time in seconds.
type cpu struct {
	postgres, pgbench, privlinkd, ksoftirqd float64
	busy, softirq, idle, steal              float64 // the whole machine, from /proc/stat
}

// measurement is one pgbench run.
type measurement struct {
	tps     float64
	tx      float64
	wall    time.Duration
	cpu     cpu
	packets float64 // through the endpoint's translation (both directions)
	conns   float64 // new connections it translated
}

var (
	tpsRE = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	txRE  = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	errRE = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
)

// pgbench runs one measurement.
func (b *bench) pgbench(ctx context.Context, p pathKind, r row, d time.Duration) (measurement, error) {
	var m measurement
	args := append([]string{"-j", strconv.Itoa(min(b.f.threads, r.clients)), "-c", strconv.Itoa(r.clients), "-T", strconv.Itoa(int(d.Seconds()))}, r.args...)
	cmd := b.command(ctx, p, "pgbench", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	c0, err := b.counters(p)
	if err != nil {
		return m, err
	}
	s0 := b.sample()
	start := time.Now()
	err = cmd.Run()
	m.wall = time.Since(start)
	if err != nil {
		return m, fmt.Errorf("pgbench %s, %s: %v\n%s", strings.Join(args, " "), p, err, out.String())
	}
	time.Sleep(300 * time.Millisecond) // the backends exit and are reaped
	s1 := b.sample()
	c1, err := b.counters(p)
	if err != nil {
		return m, err
	}
	m.cpu = s1.since(s0)
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.cpu.pgbench = tv(ru.Utime) + tv(ru.Stime)
	}
	m.packets = float64(c1.PacketsIn + c1.PacketsOut - c0.PacketsIn - c0.PacketsOut)
	m.conns = float64(c1.Connections - c0.Connections)
	text := out.String()
	mt, mx := tpsRE.FindStringSubmatch(text), txRE.FindStringSubmatch(text)
	if mt == nil || mx == nil {
		return m, fmt.Errorf("pgbench %s, %s: no tps in its output:\n%s", strings.Join(args, " "), p, text)
	}
	if me := errRE.FindStringSubmatch(text); me != nil && me[1] != "0" {
		return m, fmt.Errorf("pgbench %s, %s: failed transactions:\n%s", strings.Join(args, " "), p, text)
	}
	m.tps, _ = strconv.ParseFloat(mt[1], 64)
	m.tx, _ = strconv.ParseFloat(mx[1], 64)
	return m, nil
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// counters returns the endpoint translation's counters (zero for the direct
// path, which has none).
func (b *bench) counters(p pathKind) (fabric.Counters, error) {
	if p == direct {
		return fabric.Counters{}, nil
	}
	all, err := b.fab.EndpointCounters(b.vnetFID)
	if err != nil {
		return fabric.Counters{}, err
	}
	return all[b.pe], nil
}

// result is every measurement of one row, by path, one per round.
type result struct {
	row row
	m   map[pathKind][]measurement
}

// tpsRatio returns the median over the rounds of num's TPS ÷ den's, and
// each round's, as a list.
func (r *result) tpsRatio(num, den pathKind) (float64, string) {
	var ratios []float64
	var per []string
	for i := range r.m[den] {
		x := r.m[num][i].tps / r.m[den][i].tps
		ratios = append(ratios, x)
		per = append(per, fmt.Sprintf("%.3f", x))
	}
	return lat.Median(ratios), strings.Join(per, ", ")
}

func (b *bench) rounds(ctx context.Context) ([]*result, error) {
	rows := b.f.rows()
	// Warm up both paths (caches, the endpoint's conntrack, pgbench's
	// pages): a short select-only run each, not counted.
	for _, p := range []pathKind{direct, endpoint} {
		if _, err := b.pgbench(ctx, p, row{args: []string{"-S"}, clients: 8}, 2*time.Second); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	res := make([]*result, len(rows))
	for i, r := range rows {
		res[i] = &result{row: r, m: map[pathKind][]measurement{}}
	}
	fmt.Printf("\n%d rounds of %d pgbench runs of %s each (load average %s)\n", b.f.rounds, len(rows)*2+1, b.f.duration, benchd.LoadAvg())
	for round := range b.f.rounds {
		for _, res := range res {
			order := []pathKind{direct, endpoint}
			if round%2 == 1 {
				order = []pathKind{endpoint, direct}
			}
			if res.row.byAddr {
				order = append(order, endpointAddr)
			}
			var line []string
			for _, p := range order {
				m, err := b.pgbench(ctx, p, res.row, b.f.duration)
				if err != nil {
					return nil, err
				}
				res.m[p] = append(res.m[p], m)
				line = append(line, fmt.Sprintf("%s %.0f tps (idle %.0f%%)", p, m.tps, 100*m.cpu.idle/(m.cpu.busy+m.cpu.idle)))
			}
			fmt.Fprintf(os.Stderr, "round %d, %s, %d clients: %s; load %s\n", round+1, res.row.name, res.row.clients, strings.Join(line, ", "), benchd.LoadAvg())
		}
	}
	return res, nil
}

// perf samples the whole machine (perf record -a -F 999, no call graphs)
// over one direct and one endpoint select-only run at 8 clients, and sums
// the samples of postgres, pgbench and ksoftirqd by where they were: user
// space, or the kernel's TCP, IP (routing, forwarding), netfilter
// (conntrack, NAT, nftables), device (veth, loopback, backlog) code, or the
// rest of the kernel.
func (b *bench) perf(ctx context.Context) error {
	if err := os.MkdirAll(b.f.perfDir, 0o755); err != nil {
		return err
	}
	fmt.Printf("\n### perf: CPU per transaction of postgres, pgbench and ksoftirqd by code (µs, select-only, 8 clients, one run each)\n\n")
	table.Header("path", "TPS", "user space", "kernel: TCP", "IP", "netfilter", "device", "the rest of the kernel", "total")
	r := row{args: []string{"-S"}, clients: 8}
	const freq = 999
	for _, p := range []pathKind{direct, endpoint} {
		file := filepath.Join(b.f.perfDir, strings.ReplaceAll(p.String(), " ", "-")+".data")
		rec := exec.CommandContext(ctx, "perf", "record", "-q", "-a", "-F", strconv.Itoa(freq), "-o", file)
		rec.Stderr = os.Stderr
		if err := rec.Start(); err != nil {
			return fmt.Errorf("perf record: %w", err)
		}
		time.Sleep(500 * time.Millisecond)
		m, err := b.pgbench(ctx, p, r, b.f.duration)
		_ = rec.Process.Signal(os.Interrupt)
		werr := rec.Wait()
		if err != nil {
			return err
		}
		// perf record writes its file on SIGINT and then dies of it.
		if ws, ok := rec.ProcessState.Sys().(syscall.WaitStatus); werr != nil && !(ok && ws.Signaled() && ws.Signal() == syscall.SIGINT) {
			return fmt.Errorf("perf record: %w", werr)
		}
		out, err := exec.CommandContext(ctx, "perf", "script", "-i", file, "-G", "-F", "comm,ip,sym").Output()
		if err != nil {
			return fmt.Errorf("perf script: %w", err)
		}
		var cat [6]float64 // user, tcp, ip, netfilter, device, rest
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || !(f[0] == "postgres" || f[0] == "pgbench" || strings.HasPrefix(f[0], "ksoftirqd/")) {
				continue
			}
			ip, _ := strconv.ParseUint(f[1], 16, 64)
			sym := ""
			if len(f) > 2 {
				sym = f[2]
			}
			cat[category(ip, sym)]++
		}
		per := func(n float64) float64 { return n * 1e6 / freq / m.tx }
		total := 0.0
		for _, n := range cat {
			total += n
		}
		fmt.Printf("| %s | %.0f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", p, m.tps,
			per(cat[0]), per(cat[1]), per(cat[2]), per(cat[3]), per(cat[4]), per(cat[5]), per(total))
	}
	fmt.Printf("\n(perf data in %s; `perf report -i FILE --sort comm,sym` shows it by symbol)\n", b.f.perfDir)
	return nil
}

var (
	netfilterSym = regexp.MustCompile(`^(__)?(nf_|nft_|nf_ct|ipv4_conntrack|ipv4_confirm|hash_conntrack|ip_nat|nf_nat|ct_|ipt_|nfnl)`)
	tcpSym       = regexp.MustCompile(`^(__)?(tcp|inet_|sk_|sock_|__sock|security_sock|skb_copy_datagram|lock_sock|release_sock)`)
	ipSym        = regexp.MustCompile(`^(__)?(ip_|ip4_|fib_|fib4|ipv4_|rt_|dst_|inet_lookup|raw_local|icmp_)`)
	deviceSym    = regexp.MustCompile(`^(__)?(veth_|netif_|net_rx_action|process_backlog|dev_|__dev|napi_|__napi|skb_|kfree_skb|consume_skb|eth_|loopback_|validate_xmit|sch_direct|qdisc_|pfifo|gro_|__netif|enqueue_to_backlog|neigh_|br_|do_softirq|__do_softirq|handle_softirqs|__local_bh_enable)`)
)

// category sorts a sample: 0 user space, 1 TCP, 2 IP, 3 netfilter, 4
// device, 5 the rest of the kernel.
func category(ip uint64, sym string) int {
	switch {
	case ip < 0xffff000000000000:
		return 0
	case netfilterSym.MatchString(sym):
		return 3
	case tcpSym.MatchString(sym):
		return 1
	case ipSym.MatchString(sym):
		return 2
	case deviceSym.MatchString(sym):
		return 4
	}
	return 5
}

// snapshot is cumulative CPU time: the machine's in clock ticks, the
// processes' in seconds.
type snapshot struct {
	stat                           []float64 // /proc/stat's cpu line
	postgres, privlinkd, ksoftirqd float64
}

const hz = 100 // USER_HZ on Linux

func (b *bench) sample() snapshot {
	var s snapshot
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		for _, f := range strings.Fields(line)[1:] {
			v, _ := strconv.ParseFloat(f, 64)
			s.stat = append(s.stat, v)
		}
	}
	pm := 0
	if pids := b.d.Postmasters(); len(pids) > 0 {
		pm = pids[0]
	}
	pids, _ := procmem.PIDs()
	for _, pid := range pids {
		st, err := procmem.ReadStat(pid)
		if err != nil {
			continue
		}
		switch {
		case pid == pm:
			s.postgres += (st.CPU + st.Children).Seconds() // the backends reaped so far
		case pm != 0 && st.PPID == pm:
			s.postgres += st.CPU.Seconds()
		case pid == b.privlinkd:
			s.privlinkd += st.CPU.Seconds()
		case strings.HasPrefix(st.Comm, "ksoftirqd/"):
			s.ksoftirqd += st.CPU.Seconds()
		}
	}
	return s
}

func (s snapshot) since(s0 snapshot) cpu {
	d := func(i int) float64 {
		if i >= len(s.stat) || i >= len(s0.stat) {
			return 0
		}
		return (s.stat[i] - s0.stat[i]) / hz
	}
	// user nice system idle iowait irq softirq steal
	return cpu{
		postgres: s.postgres - s0.postgres, privlinkd: s.privlinkd - s0.privlinkd, ksoftirqd: s.ksoftirqd - s0.ksoftirqd,
		busy: d(0) + d(1) + d(2) + d(5) + d(6), softirq: d(5) + d(6), idle: d(3) + d(4), steal: d(7),
	}
}

// cpuPerTx is the CPU time of postgres, pgbench, privlinkd and ksoftirqd
// per transaction, in µs.
func cpuPerTx(m measurement) float64 {
	return 1e6 * (m.cpu.postgres + m.cpu.pgbench + m.cpu.privlinkd + m.cpu.ksoftirqd) / m.tx
}

// report prints the tables.
func report(f flags, res []*result, fq []firstQuery) {
	med := lat.MedianOf[measurement, float64]
	tps := func(m measurement) float64 { return m.tps }
	fmt.Printf("\n### pgbench, scale %d, -j %d, %s per run, %d rounds, sslmode=require on both paths\n\n", f.scale, f.threads, f.duration, f.rounds)
	ours := cpuPerTx
	cost := func(r *result, p pathKind) string {
		var xs []float64
		for i := range r.m[direct] {
			xs = append(xs, ours(r.m[direct][i])/ours(r.m[p][i]))
		}
		return fmt.Sprintf("%.0f → %.0f µs: %.3f", med(r.m[direct], ours), med(r.m[p], ours), lat.Median(xs))
	}
	table.Header("workload", "clients", "direct TPS", "endpoint TPS", "endpoint ÷ direct (median)", "per round", "goal", "CPU per transaction, direct → endpoint: direct ÷ endpoint")
	for _, r := range res {
		ratio, per := r.tpsRatio(endpoint, direct)
		goal := "—"
		if r.row.goal > 0 {
			mark := "met"
			if ratio < r.row.goal {
				mark = "not met"
			}
			goal = fmt.Sprintf("≥ %.2f: %s", r.row.goal, mark)
		}
		fmt.Printf("| %s | %d | %.0f | %.0f | **%.3f** | %s | %s | %s |\n", r.row.name, r.row.clients, med(r.m[direct], tps), med(r.m[endpoint], tps),
			ratio, per, goal, cost(r, endpoint))
		if r.row.byAddr {
			ar, per := r.tpsRatio(endpointAddr, direct)
			fmt.Printf("| %s, endpoint by address (no DNS lookup) | %d | %.0f | %.0f | %.3f | %s | — | %s |\n", r.row.name, r.row.clients,
				med(r.m[direct], tps), med(r.m[endpointAddr], tps), ar, per, cost(r, endpointAddr))
		}
	}

	fmt.Printf("\n### Where the time goes: CPU per transaction (µs, medians over the rounds; %d cores = %d µs of CPU per second)\n\n", runtime.NumCPU(), runtime.NumCPU()*1000000)
	table.Header("workload", "clients", "path", "TPS", "postgres", "pgbench", "privlinkd", "ksoftirqd", "all of these", "other processes", "machine idle", "machine softirq", "packets/tx via the translation")
	for _, r := range res {
		paths := []pathKind{direct, endpoint}
		if r.row.byAddr {
			paths = append(paths, endpointAddr)
		}
		for _, p := range paths {
			ms := r.m[p]
			per := func(v func(measurement) float64) float64 {
				return med(ms, func(m measurement) float64 { return 1e6 * v(m) / m.tx })
			}
			pk := "—"
			if p != direct {
				pk = fmt.Sprintf("%.1f", med(ms, func(m measurement) float64 { return m.packets / m.tx }))
			}
			ourCPU := func(m measurement) float64 { return m.cpu.postgres + m.cpu.pgbench + m.cpu.privlinkd + m.cpu.ksoftirqd }
			fmt.Printf("| %s | %d | %s | %.0f | %.0f | %.0f | %.1f | %.1f | %.0f | %.0f | %.0f%% | %.1f | %s |\n", r.row.name, r.row.clients, p, med(ms, tps),
				per(func(m measurement) float64 { return m.cpu.postgres }), per(func(m measurement) float64 { return m.cpu.pgbench }),
				per(func(m measurement) float64 { return m.cpu.privlinkd }), per(func(m measurement) float64 { return m.cpu.ksoftirqd }),
				per(ourCPU), per(func(m measurement) float64 { return max(0, m.cpu.busy-ourCPU(m)) }),
				med(ms, func(m measurement) float64 { return 100 * m.cpu.idle / (m.cpu.busy + m.cpu.idle) }),
				per(func(m measurement) float64 { return m.cpu.softirq }), pk)
		}
	}

	if len(fq) == 0 {
		return
	}
	fmt.Printf("\n### Endpoint PUT → first successful query (%d endpoints)\n\n", len(fq))
	table.Header("", "p50", "p99 (= max)")
	for _, c := range []struct {
		name string
		v    func(firstQuery) time.Duration
	}{
		{"endpoint PUT answered (201)", func(s firstQuery) time.Duration { return s.putAnswered }},
		{"endpoint poller done (PollUntilDone)", func(s firstQuery) time.Duration { return s.endpointDone }},
		{"zone group PUT answered", func(s firstQuery) time.Duration { return s.groupAnswered }},
		{"zone group poller done", func(s firstQuery) time.Duration { return s.groupDone }},
		{"probe: the name resolves from the NIC", func(s firstQuery) time.Duration { return s.resolved }},
		{"probe: a TCP connection through the endpoint completes", func(s firstQuery) time.Duration { return s.connected }},
		{"**first successful `select 1` from the NIC (psql)**", func(s firstQuery) time.Duration { return s.first }},
		{"first query − zone group PUT answered", func(s firstQuery) time.Duration { return s.first - s.groupAnswered }},
		{"one successful psql run (process start to exit)", func(s firstQuery) time.Duration { return s.attempt }},
	} {
		table.Row(c.name, lat.Round(lat.QuantileOf(fq, c.v, 0.5)), lat.Round(lat.QuantileOf(fq, c.v, 0.99)))
	}
	under := 0
	for _, s := range fq {
		if s.first < time.Second {
			under++
		}
	}
	fmt.Printf("\n%d of %d first queries came within one second of the PUT (goal: under one second).\n", under, len(fq))
}
