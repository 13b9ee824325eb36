// Command armbench measures privlinkd's ARM API through the official Azure
// SDK for Go: GET and PUT (BeginCreateOrUpdate + PollUntilDone) of a
// virtual network with four subnets, and the token endpoint's issue rate,
// each against a baseline measured in the same run on the same server:
// GET /healthz over the same TLS connection pool, the cost of HTTPS alone.
// Each client reads and writes a VNet of its own; one more row has every
// client write the same VNet, which measures optimistic-concurrency
// conflicts (on etcd) as well.
//
// Besides rate and latency it reports the HTTP requests per operation (a
// PUT is the PUT, then polls after the server's Retry-After-Ms, then the
// final GET) and, on etcd, the Range and Txn requests etcd served per
// operation (read from etcd's /metrics, so the daemon's controllers count
// too).
//
// It starts its own privlinkd (fresh data directory, its own namespace
// prefix; bolt, or etcd with a private etcd server), runs every measurement
// in several interleaved rounds, and prints one markdown table of medians
// over the rounds. Each round's ratio is taken against that round's
// baseline, so load from other processes that comes and goes skews the
// ratios less than the absolute numbers. At the end it stops the daemon
// and removes every namespace of its prefix.
//
//	go build -o /tmp/pl/ ./cmd/privlinkd && go run ./bench/armbench --privlinkd /tmp/pl/privlinkd --store bolt
//
// bench/arm.sh builds privlinkd and runs both stores.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/bench/internal/benchd"
	"github.com/privlink/privlink/bench/internal/lat"
	"github.com/privlink/privlink/bench/internal/sdk"
	"github.com/privlink/privlink/bench/internal/table"
)

type flags struct {
	bin      string
	backend  string
	clients  int
	n        int
	tokens   int
	puts     int
	rounds   int
	logLevel string
}

func main() {
	var f flags
	flag.StringVar(&f.bin, "privlinkd", "", "path to a privlinkd binary (required)")
	flag.StringVar(&f.backend, "store", "bolt", "bolt, or etcd (a private etcd server is started)")
	flag.IntVar(&f.clients, "c", 8, "concurrent clients")
	flag.IntVar(&f.n, "n", 2000, "requests per round for GET /healthz and SDK Get")
	flag.IntVar(&f.tokens, "tokens", 1000, "token requests per round")
	flag.IntVar(&f.puts, "puts", 400, "SDK BeginCreateOrUpdate+PollUntilDone per round")
	flag.IntVar(&f.rounds, "rounds", 3, "interleaved rounds; the table shows medians")
	flag.StringVar(&f.logLevel, "log-level", "warn", "privlinkd's --log-level")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("armbench: ")
	if f.bin == "" {
		log.Fatal("--privlinkd is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, f)
	stop()
	if err != nil {
		log.Fatal(err)
	}
}

// countingTransport counts the HTTP requests that pass through it.
type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int64
}

// RoundTrip implements http.RoundTripper.
func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.next.RoundTrip(r)
}

// measurement is one row of the table.
type measurement struct {
	name string
	ops  int
	op   func(ctx context.Context, client, seq int) error
}

func run(ctx context.Context, f flags) (err error) {
	d, err := benchd.Start(ctx, benchd.Options{Binary: f.bin, Store: f.backend, LogLevel: f.logLevel})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.Close()) }()
	cfg := d.Config

	// One counted connection pool for everything measured; the SDK
	// credential keeps the daemon config's own pool (it fetches a token
	// once and caches it).
	counter := &countingTransport{next: cfg.HTTPClient.Transport}
	hc := &http.Client{Timeout: cfg.HTTPClient.Timeout, Transport: counter}
	opts := cfg.ClientOptions()
	opts.Transport = hc

	c, err := sdk.New(cfg, opts)
	if err != nil {
		return err
	}
	if err := c.CreateGroup(ctx, "bench"); err != nil {
		return err
	}
	put := func(ctx context.Context, name, tag string) error {
		_, err := c.CreateVNet(ctx, "bench", name, vnetBody(tag))
		return err
	}
	// One network per client, so that the PUTs measure the API and not
	// optimistic-concurrency conflicts of eight writers on one document.
	for c := range f.clients {
		if err := put(ctx, vnetName(c), "0"); err != nil {
			return err
		}
	}

	health := func(ctx context.Context, _, _ int) error {
		return do(ctx, hc, http.MethodGet, cfg.Creds.ARMEndpoint+"/healthz", "", "")
	}
	tokenURL := strings.TrimSuffix(cfg.Creds.AuthorityHost, "/") + "/" + cfg.Creds.TenantID + "/oauth2/v2.0/token"
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {cfg.Creds.ClientID},
		"client_secret": {cfg.Creds.ClientSecret}, "scope": {cfg.Scope()}}.Encode()
	token := func(ctx context.Context, _, _ int) error {
		return do(ctx, hc, http.MethodPost, tokenURL, "application/x-www-form-urlencoded", form)
	}
	get := func(ctx context.Context, client, _ int) error {
		if _, err := c.VNets.Get(ctx, "bench", vnetName(client), nil); err != nil {
			return fmt.Errorf("get virtual network: %w", err)
		}
		return nil
	}
	var putSeq atomic.Int64
	putN := func(ctx context.Context, client, _ int) error {
		return put(ctx, vnetName(client), fmt.Sprint(putSeq.Add(1)))
	}
	putShared := func(ctx context.Context, _, _ int) error {
		return put(ctx, vnetName(0), fmt.Sprint(putSeq.Add(1)))
	}
	ms := []measurement{
		{"GET /healthz (baseline)", f.n, health},
		{"token issue (POST token endpoint)", f.tokens, token},
		{"SDK VirtualNetworks.Get (4 subnets)", f.n, get},
		{"SDK VirtualNetworks.BeginCreateOrUpdate+PollUntilDone", f.puts, putN},
		{"the same, every client on one VNet (write conflicts)", f.puts / 2, putShared},
	}

	// Warm up: open the pool's connections, let the daemon's start-up
	// work (controllers' first listing, the internet namespace) finish.
	for _, m := range ms {
		if _, err := lat.Drive(ctx, lat.Load{Clients: f.clients, Ops: max(m.ops/10, f.clients)}, m.op); err != nil {
			return fmt.Errorf("warm-up %s: %w", m.name, err)
		}
	}

	// etcdOps returns the etcd Range and Txn requests handled so far
	// (zero on bolt).
	etcdOps := func() (ranges, txns float64, err error) {
		if d.EtcdEndpoint == "" {
			return 0, 0, nil
		}
		m, err := benchd.EtcdRequests(ctx, d.EtcdEndpoint)
		return m["Range"], m["Txn"], err
	}

	type sample struct {
		rate, ratio, perOp, ranges, txns float64
		p50, p99                         time.Duration
	}
	results := make([][]sample, len(ms))
	for range f.rounds {
		var base float64
		for i, m := range ms {
			before := counter.n.Load()
			r0, t0, err := etcdOps()
			if err != nil {
				return err
			}
			r, err := lat.Drive(ctx, lat.Load{Clients: f.clients, Ops: m.ops}, m.op)
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			r1, t1, err := etcdOps()
			if err != nil {
				return err
			}
			if i == 0 {
				base = r.Rate()
			}
			n := float64(m.ops)
			results[i] = append(results[i], sample{rate: r.Rate(), ratio: r.Rate() / base,
				perOp: float64(counter.n.Load()-before) / n, ranges: (r1 - r0) / n, txns: (t1 - t0) / n,
				p50: r.Quantile(0.5), p99: r.Quantile(0.99)})
		}
	}

	fmt.Printf("store=%s clients=%d rounds=%d (medians over rounds; ratio per round to the same round's baseline)\n\n", f.backend, f.clients, f.rounds)
	table.Header("measurement", "requests/round", "HTTP requests/op", "etcd Range+Txn/op", "req/s", "p50", "p99", "ratio to /healthz")
	for i, m := range ms {
		rs := results[i]
		med := func(get func(sample) float64) float64 { return lat.MedianOf(rs, get) }
		medD := func(get func(sample) time.Duration) time.Duration { return lat.MedianOf(rs, get) }
		store := "–"
		if d.EtcdEndpoint != "" {
			store = fmt.Sprintf("%.1f+%.1f", med(func(s sample) float64 { return s.ranges }), med(func(s sample) float64 { return s.txns }))
		}
		fmt.Printf("| %s | %d | %.2f | %s | %.0f | %s | %s | %.3f |\n", m.name, m.ops, med(func(s sample) float64 { return s.perOp }), store,
			med(func(s sample) float64 { return s.rate }), lat.Round(medD(func(s sample) time.Duration { return s.p50 })),
			lat.Round(medD(func(s sample) time.Duration { return s.p99 })), med(func(s sample) float64 { return s.ratio }))
	}
	return nil
}

// do sends one request and reads the whole response, so that its
// connection goes back to the pool (an unread body closes it, and the
// next request would pay a TLS handshake).
func do(ctx context.Context, hc *http.Client, method, url, contentType, body string) error {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	return nil
}

// vnetName is the name of client's virtual network.
func vnetName(client int) string { return fmt.Sprintf("vnet%d", client) }

// vnetBody is the benchmark's virtual network: 10.0.0.0/16 with four /24
// subnets, tagged so that every PUT changes the document.
func vnetBody(tag string) armnetwork.VirtualNetwork {
	var subnets []sdk.Subnet
	for i := range 4 {
		subnets = append(subnets, sdk.Subnet{Name: fmt.Sprintf("s%d", i), Prefix: fmt.Sprintf("10.0.%d.0/24", i)})
	}
	v := sdk.VNetBody("10.0.0.0/16", subnets...)
	v.Tags = map[string]*string{"run": &tag}
	return v
}
