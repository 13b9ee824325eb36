// Command endpointbench measures private endpoints to a flexible server end
// to end through privlinkd's ARM API with the official Azure SDK for Go
// (armnetwork/v7, armprivatedns, armpostgresqlflexibleservers/v5): how
// long from an endpoint's PUT until its name resolves inside the network,
// and what 500 endpoints to one server cost in time and memory.
//
// Setup (not timed): one server, and N networks (50), each in a resource
// group of its own with a VNet (10.0.0.0/16: subnets clients 10.0.1.0/24
// and endpoints 10.0.2.0/24, the same in every network, as overlapping
// customers have), a client NIC, and the zone
// privatelink.postgres.database.azure.com linked to the VNet.
//
// Latency (rounds × N endpoints, one at a time, each in its own network):
// the endpoint PUT (auto-approved) and PollUntilDone, then its zone group
// (one config naming the network's zone) PUT and PollUntilDone, then
// until DNS inside the client NIC answers SRV.postgres.database.azure.com
// (CNAME to the privatelink name) with exactly the endpoint's address.
// DNS is polled by this process every 2 ms (-dns-interval) over a UDP
// socket opened inside the client NIC's namespace (fabric.DialContext) to
// 168.63.129.16:53, the resolver in the NIC's resolv.conf: the same
// packets dig sends, without a fork and exec per try. Once it resolves,
// `ip netns exec NIC dig` confirms the answer (its cost is printed apart).
// Before each timed operation the tool waits until privlinkd is idle
// (at most 10 ms of CPU in 300 ms): a NIC delete, for one, makes the
// network controller reconcile every network, which would otherwise land
// in the next measurement.
// Two baselines run interleaved, endpoint by endpoint, in the same
// network: a plain NIC PUT and PollUntilDone (the same long-running
// operation and network controller path, without the endpoint), and an A
// record set PUT in the same zone until DNS answers it (the same DNS path,
// without the endpoint and the zone group controller). Between rounds the
// endpoints are deleted and the tool waits until no network resolves the
// name any more.
//
// Scale (-scale, 500): endpoints to the one server from the N networks
// (-scale/N per network, round-robin), each with its zone group, -c at a
// time; the total time until every poller finished and until every
// network's DNS answers all of its endpoints' addresses; privlinkd's RSS
// and CPU time before, at every tenth and after; GET of the server (whose
// privateEndpointConnections are inline) and a list of its connections
// before and after; then ten more endpoints one at a time (PUT → poller,
// → resolvable, → login through it). Then every endpoint is deleted, timed
// until no network resolves the name. No new endpoint is started after
// -scale-budget (5 minutes): the report then says how many were created,
// fits a line to privlinkd's CPU per endpoint against the number already
// there, and extrapolates along it, saying so.
//
// One network (-one-network, 0: skip; 1,000 is Azure's limit per
// network): that many endpoints to the server in one network of their own
// (subnet endpoints 10.0.4.0/22), -c at a time, without zone groups; the
// time until every poller finished, privlinkd's CPU and RSS; then, from
// the client NIC, a connection through every endpoint that PostgreSQL
// answers (SSLRequest) and three TLS logins; the router's nftables table
// (chains, rules, sets and their elements, named counters) empty, full
// and after the rejections; then -rejections endpoints (20), one at a
// time, each under a live session: from the connection PUT (Rejected)
// sent, until its poller finished, until the session was reset, and until
// new connections no longer reach PostgreSQL; and that the others still
// take connections.
//
// It needs root. It starts its own privlinkd (bolt, a fresh data
// directory, a namespace prefix of its own; --privlinkd may be the
// profiling build bench/privlinkd-prof, see -cpuprofile) and at the end
// stops it and the server's postmaster and removes every namespace of its
// prefix.
//
//	go build -o /tmp/pl/ ./cmd/privlinkd && go run ./bench/endpointbench --privlinkd /tmp/pl/privlinkd
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	azpolicy "github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	mdns "github.com/miekg/dns"
	"github.com/privlink/privlink/bench/internal/benchd"
	"github.com/privlink/privlink/bench/internal/flex"
	"github.com/privlink/privlink/bench/internal/lat"
	"github.com/privlink/privlink/bench/internal/procmem"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/controller"
	"github.com/privlink/privlink/internal/fabric"
)

const (
	plZone      = "privatelink.postgres.database.azure.com"
	serverGroup = "owner"
	serverName  = "pebench-srv"
	qname       = serverName + ".postgres.database.azure.com."
)

type flags struct {
	bin         string
	networks    int
	rounds      int
	scale       int
	clients     int
	dnsInterval time.Duration
	cpuprofile  string
	noBaseline  bool
	scaleBudget time.Duration
	oneNetwork  int
	rejections  int
}

func main() {
	var f flags
	flag.StringVar(&f.bin, "privlinkd", "", "path to a privlinkd binary (required)")
	flag.IntVar(&f.networks, "networks", 50, "networks, each with a client NIC and a linked privatelink zone")
	flag.IntVar(&f.rounds, "rounds", 3, "latency rounds: one endpoint per network in each (0: skip)")
	flag.IntVar(&f.scale, "scale", 500, "endpoints to the one server in the scale measurement (0: skip)")
	flag.DurationVar(&f.scaleBudget, "scale-budget", 5*time.Minute, "start no new endpoint of the scale measurement after this long; report what was reached and extrapolate")
	flag.IntVar(&f.clients, "c", 8, "concurrent clients for setup and the scale measurement")
	flag.DurationVar(&f.dnsInterval, "dns-interval", 2*time.Millisecond, "pause between DNS tries while waiting for a name")
	flag.StringVar(&f.cpuprofile, "cpuprofile", "", "with --privlinkd of bench/privlinkd-prof: write privlinkd's CPU profile of the scale measurement here")
	flag.BoolVar(&f.noBaseline, "skip-baseline", false, "skip the NIC and record set baselines")
	flag.IntVar(&f.oneNetwork, "one-network", 0, "endpoints to the one server in one network of their own (subnet "+oneNetworkPrefix+"; 0: skip)")
	flag.IntVar(&f.rejections, "rejections", 20, "with -one-network: endpoints rejected under a live session, one at a time")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("endpointbench: ")
	if f.bin == "" {
		log.Fatal("--privlinkd is required")
	}
	if os.Geteuid() != 0 {
		log.Fatal("must run as root: the fabric creates network namespaces")
	}
	if f.networks < 1 || f.networks > 250 || f.scale < 0 || f.scale/max(f.networks, 1) > 240 {
		log.Fatal("-networks must be 1..250, and -scale/-networks at most 240 (one /24 of endpoints per network)")
	}
	if f.oneNetwork < 0 || f.oneNetwork > 1000 {
		log.Fatal("-one-network must be 0..1000 (Azure's limit of endpoints per network)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, f)
	stop()
	if err != nil {
		log.Fatal(err)
	}
}

// network is one customer network and its clients.
type network struct {
	rg     string
	vnetID string
	zoneID string
	nicNS  string
	dns    *mdns.Conn
	mu     sync.Mutex // dns
}

type bench struct {
	f        flags
	d        *benchd.PGDaemon
	fab      *fabric.Fabric
	serverID string
	nets     []*network

	vnets   *armnetwork.VirtualNetworksClient
	nics    *armnetwork.InterfacesClient
	pes     *armnetwork.PrivateEndpointsClient
	groups  *armnetwork.PrivateDNSZoneGroupsClient
	zones   *armprivatedns.PrivateZonesClient
	links   *armprivatedns.VirtualNetworkLinksClient
	records *armprivatedns.RecordSetsClient
	servers *armpostgresqlflexibleservers.ServersClient
	conns   *armpostgresqlflexibleservers.PrivateEndpointConnectionsClient
	ops     *flex.Ops
}

// sample is one endpoint of the latency measurement, with its baselines.
type sample struct {
	pePut, pePoll   time.Duration // endpoint PUT returned; its poller finished
	peOp            time.Duration // the endpoint operation's endTime − startTime
	zgDone          time.Duration // zone group poller finished (from the endpoint PUT)
	resolved        time.Duration // DNS inside the client NIC answers the endpoint's IP (from the endpoint PUT)
	afterZG         time.Duration // resolved − zgDone
	tries           int           // DNS queries until it resolved
	dig             time.Duration // one `ip netns exec … dig` afterwards
	login           time.Duration // a TLS login through the endpoint worked (from the endpoint PUT)
	nicPoll         time.Duration // baseline: NIC PUT → poller done
	rsPut, rsDNS    time.Duration // baseline: record set PUT returned; resolvable
	rsTries         int
	nicOp           time.Duration // baseline: NIC operation endTime − startTime
	nicOK, rsOK, ok bool
}

func run(ctx context.Context, f flags) (err error) {
	fmt.Fprintf(os.Stderr, "machine: %d cores, load average %s\n", runtime.NumCPU(), benchd.LoadAvg())
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
	b := &bench{f: f, d: d, fab: fab}
	if err := b.clients(); err != nil {
		return err
	}
	defer b.closeDNS()
	start := time.Now()
	if err := b.setup(ctx); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "setup: server and %d networks in %s (load %s)\n", f.networks, lat.Round(time.Since(start)), benchd.LoadAvg())

	// Warm-up: one endpoint and one baseline of each kind, deleted.
	if _, err := b.measure(ctx, b.nets[0], "warm", true); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if err := b.deleteEndpoints(ctx, []endpointRef{{b.nets[0], "warm"}}); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}

	var rounds [][]sample
	var digs []time.Duration
	for r := range f.rounds {
		fmt.Fprintf(os.Stderr, "latency round %d (load %s)\n", r+1, benchd.LoadAvg())
		var rs []sample
		var refs []endpointRef
		for i, n := range b.nets {
			name := fmt.Sprintf("pe-r%d", r+1)
			s, err := b.measure(ctx, n, name, !f.noBaseline)
			if err != nil {
				return fmt.Errorf("network %d: %w", i, err)
			}
			rs = append(rs, s)
			digs = append(digs, s.dig)
			refs = append(refs, endpointRef{n, name})
		}
		rounds = append(rounds, rs)
		fmt.Fprintf(os.Stderr, "latency round %d: PUT→poller p50 %s, PUT→resolvable p50 %s; NIC poller p50 %s, record PUT→resolvable p50 %s\n", r+1,
			lat.Round(q(rs, func(s sample) time.Duration { return s.pePoll }, 0.5)),
			lat.Round(q(rs, func(s sample) time.Duration { return s.resolved }, 0.5)),
			lat.Round(q(rs, func(s sample) time.Duration { return s.nicPoll }, 0.5)),
			lat.Round(q(rs, func(s sample) time.Duration { return s.rsDNS }, 0.5)))
		if err := b.deleteEndpoints(ctx, refs); err != nil {
			return err
		}
	}
	if f.rounds > 0 {
		b.reportLatency(rounds, digs)
	}

	if f.scale > 0 {
		if err := b.scaleRun(ctx); err != nil {
			return err
		}
	}
	if f.oneNetwork > 0 {
		if err := b.oneNetworkRun(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "load average at the end: %s\n", benchd.LoadAvg())
	return nil
}

func (b *bench) clients() error {
	cfg := b.d.Config
	sub := cfg.Creds.SubscriptionID
	nf, err := armnetwork.NewClientFactory(sub, cfg.Credential, cfg.ClientOptions())
	if err != nil {
		return fmt.Errorf("network clients: %w", err)
	}
	df, err := armprivatedns.NewClientFactory(sub, cfg.Credential, cfg.ClientOptions())
	if err != nil {
		return fmt.Errorf("private DNS clients: %w", err)
	}
	pf, err := armpostgresqlflexibleservers.NewClientFactory(sub, cfg.Credential, cfg.ClientOptions())
	if err != nil {
		return fmt.Errorf("postgres clients: %w", err)
	}
	b.vnets, b.nics, b.pes, b.groups = nf.NewVirtualNetworksClient(), nf.NewInterfacesClient(), nf.NewPrivateEndpointsClient(), nf.NewPrivateDNSZoneGroupsClient()
	b.zones, b.links, b.records = df.NewPrivateZonesClient(), df.NewVirtualNetworkLinksClient(), df.NewRecordSetsClient()
	b.servers, b.conns = pf.NewServersClient(), pf.NewPrivateEndpointConnectionsClient()
	b.ops, err = flex.NewOps(cfg)
	return err
}

func (b *bench) id(rg, typ, name string) string {
	return "/subscriptions/" + b.d.Config.Creds.SubscriptionID + "/resourceGroups/" + rg + "/providers/" + typ + "/" + name
}

// setup creates the server and the networks, and opens a DNS socket in
// each network's client NIC.
func (b *bench) setup(ctx context.Context) error {
	cfg := b.d.Config
	if err := flex.CreateGroup(ctx, cfg, serverGroup); err != nil {
		return err
	}
	sp, err := b.servers.BeginCreateOrUpdate(ctx, serverGroup, serverName, flex.ServerBody(), nil)
	if err != nil {
		return fmt.Errorf("create server: %w", err)
	}
	if _, err := sp.PollUntilDone(ctx, flex.PollOpts); err != nil {
		return fmt.Errorf("create server: %w", err)
	}
	b.serverID = b.id(serverGroup, "Microsoft.DBforPostgreSQL/flexibleServers", serverName)
	b.nets = make([]*network, b.f.networks)
	_, err = lat.Drive(ctx, lat.Load{Clients: b.f.clients, Ops: b.f.networks}, func(ctx context.Context, _, i int) error {
		n, err := b.network(ctx, fmt.Sprintf("net%03d", i), "10.0.2.0/24")
		b.nets[i] = n
		return err
	})
	return err
}

// network creates network rg (VNet 10.0.0.0/16, subnets clients
// 10.0.1.0/24 and endpoints as given) with its client NIC and linked zone.
func (b *bench) network(ctx context.Context, rg, endpoints string) (*network, error) {
	if err := flex.CreateGroup(ctx, b.d.Config, rg); err != nil {
		return nil, err
	}
	n := &network{rg: rg, vnetID: b.id(rg, "Microsoft.Network/virtualNetworks", "vnet"), zoneID: b.id(rg, "Microsoft.Network/privateDnsZones", plZone)}
	vp, err := b.vnets.BeginCreateOrUpdate(ctx, rg, "vnet", armnetwork.VirtualNetwork{Location: to("westeurope"),
		Properties: &armnetwork.VirtualNetworkPropertiesFormat{
			AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{to("10.0.0.0/16")}},
			Subnets: []*armnetwork.Subnet{
				{Name: to("clients"), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to("10.0.1.0/24")}},
				{Name: to("endpoints"), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to(endpoints)}},
			},
		}}, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: vnet: %w", rg, err)
	}
	if _, err := vp.PollUntilDone(ctx, flex.PollOpts); err != nil {
		return nil, fmt.Errorf("%s: vnet: %w", rg, err)
	}
	nic, err := b.nic(ctx, n, "client")
	if err != nil {
		return nil, err
	}
	nicID, err := arm.ParseID(*nic.ID)
	if err != nil {
		return nil, err
	}
	n.nicNS = b.fab.NamespaceName(fabric.KindNIC, controller.FabricID(nicID))
	zp, err := b.zones.BeginCreateOrUpdate(ctx, rg, plZone, armprivatedns.PrivateZone{Location: to("global")}, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: zone: %w", rg, err)
	}
	if _, err := zp.PollUntilDone(ctx, flex.PollOpts); err != nil {
		return nil, fmt.Errorf("%s: zone: %w", rg, err)
	}
	lp, err := b.links.BeginCreateOrUpdate(ctx, rg, plZone, "vnet", armprivatedns.VirtualNetworkLink{Location: to("global"),
		Properties: &armprivatedns.VirtualNetworkLinkProperties{VirtualNetwork: &armprivatedns.SubResource{ID: &n.vnetID}}}, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: link: %w", rg, err)
	}
	if _, err := lp.PollUntilDone(ctx, flex.PollOpts); err != nil {
		return nil, fmt.Errorf("%s: link: %w", rg, err)
	}
	c, err := b.fab.DialContext(ctx, n.nicNS, "udp", netip.AddrPortFrom(fabric.DNSAddr, 53).String())
	if err != nil {
		return nil, fmt.Errorf("%s: DNS socket in %s: %w", rg, n.nicNS, err)
	}
	n.dns = &mdns.Conn{Conn: c, UDPSize: mdns.MaxMsgSize}
	return n, nil
}

func (b *bench) closeDNS() {
	for _, n := range b.nets {
		if n != nil && n.dns != nil {
			n.dns.Close()
		}
	}
}

// nic creates NIC name in the network's clients subnet.
func (b *bench) nic(ctx context.Context, n *network, name string) (armnetwork.Interface, error) {
	p, err := b.nics.BeginCreateOrUpdate(ctx, n.rg, name, armnetwork.Interface{Location: to("westeurope"),
		Properties: &armnetwork.InterfacePropertiesFormat{IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{Name: to("ip"),
			Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{Subnet: &armnetwork.Subnet{ID: to(n.vnetID + "/subnets/clients")}}}}}}, nil)
	if err != nil {
		return armnetwork.Interface{}, fmt.Errorf("%s: NIC %s: %w", n.rg, name, err)
	}
	r, err := p.PollUntilDone(ctx, flex.PollOpts)
	if err != nil {
		return armnetwork.Interface{}, fmt.Errorf("%s: NIC %s: %w", n.rg, name, err)
	}
	return r.Interface, nil
}

// resolve asks the network's DNS, from inside its client NIC, for name's
// A records (following the CNAME in the answer).
func (n *network) resolve(name string) ([]netip.Addr, int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := new(mdns.Msg).SetQuestion(name, mdns.TypeA)
	if err := n.dns.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return nil, 0, err
	}
	if err := n.dns.WriteMsg(m); err != nil {
		return nil, 0, err
	}
	for {
		r, err := n.dns.ReadMsg()
		if err != nil {
			return nil, 0, err
		}
		if r.Id != m.Id {
			continue // a late answer to a query that timed out
		}
		var out []netip.Addr
		for _, rr := range r.Answer {
			if a, ok := rr.(*mdns.A); ok {
				if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
					out = append(out, ip)
				}
			}
		}
		slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
		return out, r.Rcode, nil
	}
}

// waitDNS asks until the answer for name is exactly want (none: no A
// record) and returns how many queries it took. A lost UDP query is
// asked again.
func (b *bench) waitDNS(ctx context.Context, n *network, name string, want []netip.Addr, bound time.Duration) (int, error) {
	slices.SortFunc(want, func(a, b netip.Addr) int { return a.Compare(b) })
	deadline := time.Now().Add(bound)
	tries := 0
	var last []netip.Addr
	var lastErr error
	for {
		tries++
		got, _, err := n.resolve(name)
		var ne net.Error
		switch {
		case err == nil && slices.Equal(got, want):
			return tries, nil
		case err != nil && !(errors.As(err, &ne) && ne.Timeout()):
			return tries, fmt.Errorf("%s: DNS in %s: %w", n.rg, n.nicNS, err)
		}
		last, lastErr = got, err
		if time.Now().After(deadline) {
			return tries, fmt.Errorf("%s: %s answered %v (%v), not %v, within %v", n.rg, name, last, lastErr, want, bound)
		}
		select {
		case <-ctx.Done():
			return tries, ctx.Err()
		case <-time.After(b.f.dnsInterval):
		}
	}
}

// quiesce waits until privlinkd is idle: at most one clock tick (10 ms) of
// CPU in 300 ms, so that the work one measurement leaves behind (a NIC
// delete makes the network controller reconcile every network) is not
// counted in the next. It gives up silently after 30 s.
func (b *bench) quiesce(ctx context.Context) time.Duration {
	start := time.Now()
	pid := b.d.PID()
	prev := cpuTime(pid)
	for time.Since(start) < 30*time.Second {
		if benchd.Sleep(ctx, 300*time.Millisecond) != nil {
			break
		}
		cur := cpuTime(pid)
		if cur-prev <= 10*time.Millisecond {
			break
		}
		prev = cur
	}
	return time.Since(start)
}

// measure times one endpoint in network n and, with baseline, the NIC
// and record set baselines before it, waiting for privlinkd to be idle
// before each.
func (b *bench) measure(ctx context.Context, n *network, name string, baseline bool) (sample, error) {
	var s sample
	if baseline {
		// A plain NIC: the same long-running operation and controller.
		b.quiesce(ctx)
		var resp *http.Response
		t0 := time.Now()
		p, err := b.nics.BeginCreateOrUpdate(azpolicy.WithCaptureResponse(ctx, &resp), n.rg, "bl-"+name, armnetwork.Interface{Location: to("westeurope"),
			Properties: &armnetwork.InterfacePropertiesFormat{IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{Name: to("ip"),
				Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{Subnet: &armnetwork.Subnet{ID: to(n.vnetID + "/subnets/clients")}}}}}}, nil)
		if err != nil {
			return s, fmt.Errorf("%s: baseline NIC: %w", n.rg, err)
		}
		if _, err := p.PollUntilDone(ctx, flex.PollOpts); err != nil {
			return s, fmt.Errorf("%s: baseline NIC: %w", n.rg, err)
		}
		s.nicPoll = time.Since(t0)
		ot, err := b.ops.Times(ctx, resp)
		if err != nil {
			return s, fmt.Errorf("%s: baseline NIC: %w", n.rg, err)
		}
		s.nicOp = ot.Took()
		s.nicOK = true
		dp, err := b.nics.BeginDelete(ctx, n.rg, "bl-"+name, nil)
		if err != nil {
			return s, fmt.Errorf("%s: delete baseline NIC: %w", n.rg, err)
		}
		if _, err := dp.PollUntilDone(ctx, flex.PollOpts); err != nil {
			return s, fmt.Errorf("%s: delete baseline NIC: %w", n.rg, err)
		}

		// An A record set in the same zone: the same DNS path.
		b.quiesce(ctx)
		rec := "bl-" + name
		addr := netip.MustParseAddr("10.0.9.9")
		t0 = time.Now()
		if _, err := b.records.CreateOrUpdate(ctx, n.rg, plZone, armprivatedns.RecordTypeA, rec, armprivatedns.RecordSet{
			Properties: &armprivatedns.RecordSetProperties{TTL: to[int64](10), ARecords: []*armprivatedns.ARecord{{IPv4Address: to(addr.String())}}}}, nil); err != nil {
			return s, fmt.Errorf("%s: baseline record: %w", n.rg, err)
		}
		s.rsPut = time.Since(t0)
		if s.rsTries, err = b.waitDNS(ctx, n, rec+"."+plZone+".", []netip.Addr{addr}, 30*time.Second); err != nil {
			return s, err
		}
		s.rsDNS = time.Since(t0)
		s.rsOK = true
		if _, err := b.records.Delete(ctx, n.rg, plZone, armprivatedns.RecordTypeA, rec, nil); err != nil {
			return s, fmt.Errorf("%s: delete baseline record: %w", n.rg, err)
		}
	}

	b.quiesce(ctx)
	var resp *http.Response
	t0 := time.Now()
	pe, err := b.createEndpoint(ctx, n, name, &s, &resp)
	if err != nil {
		return s, err
	}
	ot, err := b.ops.Times(ctx, resp)
	if err != nil {
		return s, fmt.Errorf("%s: endpoint %s: %w", n.rg, name, err)
	}
	s.peOp = ot.Took()
	ip := peIP(pe)
	if !ip.IsValid() {
		return s, fmt.Errorf("%s: endpoint %s has no address in customDnsConfigs", n.rg, name)
	}
	if err := b.createZoneGroup(ctx, n, name); err != nil {
		return s, err
	}
	s.zgDone = time.Since(t0)
	if s.tries, err = b.waitDNS(ctx, n, qname, []netip.Addr{ip}, 30*time.Second); err != nil {
		return s, err
	}
	s.resolved = time.Since(t0)
	s.afterZG = s.resolved - s.zgDone
	s.ok = true

	// The data path: a TLS login through the endpoint's address from the
	// client NIC, verifying the server's name.
	if err := b.waitLogin(ctx, n, ip, 30*time.Second); err != nil {
		return s, err
	}
	s.login = time.Since(t0)

	// The real client: dig inside the client NIC, with its resolv.conf.
	t1 := time.Now()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", n.nicNS, "dig", "+short", "+time=2", "+tries=1", strings.TrimSuffix(qname, ".")).CombinedOutput()
	s.dig = time.Since(t1)
	if err != nil || !slices.Contains(strings.Fields(string(out)), ip.String()) {
		return s, fmt.Errorf("%s: dig in %s: %v: %q, want the CNAME and %s", n.rg, n.nicNS, err, out, ip)
	}
	return s, nil
}

// waitLogin tries a TLS login to the server through addr from the
// network's client NIC every 10 ms until one works.
func (b *bench) waitLogin(ctx context.Context, n *network, addr netip.Addr, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := flex.LoginAt(lctx, b.fab, b.d.Config.Creds.CAFile, n.nicNS, addr, serverName)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: no login through %s within %v: %w", n.rg, addr, bound, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// createEndpoint PUTs endpoint name in network n and polls it until done;
// timings go to s (from the moment it is called), and the PUT's response
// to *resp when resp is not nil.
func (b *bench) createEndpoint(ctx context.Context, n *network, name string, s *sample, resp **http.Response) (armnetwork.PrivateEndpoint, error) {
	t0 := time.Now()
	putCtx := ctx
	if resp != nil {
		putCtx = azpolicy.WithCaptureResponse(ctx, resp)
	}
	p, err := b.pes.BeginCreateOrUpdate(putCtx, n.rg, name, armnetwork.PrivateEndpoint{Location: to("westeurope"),
		Properties: &armnetwork.PrivateEndpointProperties{
			Subnet: &armnetwork.Subnet{ID: to(n.vnetID + "/subnets/endpoints")},
			PrivateLinkServiceConnections: []*armnetwork.PrivateLinkServiceConnection{{Name: to(name), Properties: &armnetwork.PrivateLinkServiceConnectionProperties{
				PrivateLinkServiceID: &b.serverID, GroupIDs: []*string{to("postgresqlServer")}}}},
		}}, nil)
	if err != nil {
		return armnetwork.PrivateEndpoint{}, fmt.Errorf("%s: endpoint %s: %w", n.rg, name, err)
	}
	s.pePut = time.Since(t0)
	r, err := p.PollUntilDone(ctx, flex.PollOpts)
	if err != nil {
		return armnetwork.PrivateEndpoint{}, fmt.Errorf("%s: endpoint %s: %w", n.rg, name, err)
	}
	s.pePoll = time.Since(t0)
	if st := r.Properties.ProvisioningState; st == nil || *st != armnetwork.ProvisioningStateSucceeded {
		return r.PrivateEndpoint, fmt.Errorf("%s: endpoint %s: provisioningState %v after its poller finished", n.rg, name, st)
	}
	conns := r.Properties.PrivateLinkServiceConnections
	if len(conns) != 1 || conns[0].Properties == nil || conns[0].Properties.PrivateLinkServiceConnectionState == nil ||
		conns[0].Properties.PrivateLinkServiceConnectionState.Status == nil || *conns[0].Properties.PrivateLinkServiceConnectionState.Status != "Approved" {
		return r.PrivateEndpoint, fmt.Errorf("%s: endpoint %s is not Approved", n.rg, name)
	}
	return r.PrivateEndpoint, nil
}

func (b *bench) createZoneGroup(ctx context.Context, n *network, endpoint string) error {
	p, err := b.groups.BeginCreateOrUpdate(ctx, n.rg, endpoint, "default", armnetwork.PrivateDNSZoneGroup{Properties: &armnetwork.PrivateDNSZoneGroupPropertiesFormat{
		PrivateDNSZoneConfigs: []*armnetwork.PrivateDNSZoneConfig{{Name: to("pl"), Properties: &armnetwork.PrivateDNSZonePropertiesFormat{PrivateDNSZoneID: &n.zoneID}}}}}, nil)
	if err != nil {
		return fmt.Errorf("%s: zone group of %s: %w", n.rg, endpoint, err)
	}
	if _, err := p.PollUntilDone(ctx, flex.PollOpts); err != nil {
		return fmt.Errorf("%s: zone group of %s: %w", n.rg, endpoint, err)
	}
	return nil
}

func peIP(pe armnetwork.PrivateEndpoint) netip.Addr {
	if pe.Properties == nil || len(pe.Properties.CustomDNSConfigs) == 0 || len(pe.Properties.CustomDNSConfigs[0].IPAddresses) == 0 {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(*pe.Properties.CustomDNSConfigs[0].IPAddresses[0])
	return a
}

type endpointRef struct {
	n    *network
	name string
}

// deleteEndpoints deletes endpoints, c at a time, and waits until no
// network they were in resolves the server's name any more. It returns
// when both are done.
func (b *bench) deleteEndpoints(ctx context.Context, refs []endpointRef) error {
	_, err := lat.Drive(ctx, lat.Load{Clients: b.f.clients, Ops: len(refs)}, func(ctx context.Context, _, i int) error {
		p, err := b.pes.BeginDelete(ctx, refs[i].n.rg, refs[i].name, nil)
		if err != nil {
			return fmt.Errorf("%s: delete endpoint %s: %w", refs[i].n.rg, refs[i].name, err)
		}
		if _, err := p.PollUntilDone(ctx, flex.PollOpts); err != nil {
			return fmt.Errorf("%s: delete endpoint %s: %w", refs[i].n.rg, refs[i].name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	seen := map[*network]bool{}
	for _, r := range refs {
		if seen[r.n] {
			continue
		}
		seen[r.n] = true
		if _, err := b.waitDNS(ctx, r.n, qname, nil, 2*time.Minute); err != nil {
			return fmt.Errorf("after deleting the endpoints: %w", err)
		}
	}
	return nil
}

func q(ss []sample, get func(sample) time.Duration, p float64) time.Duration {
	ds := make([]time.Duration, 0, len(ss))
	for _, s := range ss {
		ds = append(ds, get(s))
	}
	slices.Sort(ds)
	return lat.Quantile(ds, p)
}

func medianF(xs []float64) float64 { return lat.Median(xs) }

func (b *bench) reportLatency(rounds [][]sample, digs []time.Duration) {
	var all []sample
	for _, r := range rounds {
		all = append(all, r...)
	}
	fmt.Printf("\n## Endpoint PUT → poller → resolvable: %d networks × %d rounds = %d endpoints, one at a time\n\n", b.f.networks, len(rounds), len(all))
	fmt.Println("Times are from the endpoint's PUT (baselines: from their own PUT). Pooled p50/p99 over every endpoint; ratio: median over rounds of (round's p50 ÷ the same round's baseline p50).")
	fmt.Println()
	fmt.Println("| measurement | p50 | p99 | max | ratio |")
	fmt.Println("|---|---|---|---|---|")
	row := func(name string, get func(sample) time.Duration, base func(sample) time.Duration) {
		ratio := "–"
		if base != nil && !b.f.noBaseline {
			var rs []float64
			for _, r := range rounds {
				rs = append(rs, q(r, get, 0.5).Seconds()/q(r, base, 0.5).Seconds())
			}
			ratio = fmt.Sprintf("%.2f", medianF(rs))
		}
		fmt.Printf("| %s | %s | %s | %s | %s |\n", name, lat.Round(q(all, get, 0.5)), lat.Round(q(all, get, 0.99)), lat.Round(q(all, get, 1)), ratio)
	}
	nicPoll := func(s sample) time.Duration { return s.nicPoll }
	rsDNS := func(s sample) time.Duration { return s.rsDNS }
	if !b.f.noBaseline {
		row("baseline: NIC PUT → poller done", nicPoll, nil)
		row("baseline: NIC operation (daemon's startTime → endTime)", func(s sample) time.Duration { return s.nicOp }, nil)
		row("baseline: A record set PUT returned", func(s sample) time.Duration { return s.rsPut }, nil)
		row("baseline: A record set PUT → resolvable in the NIC", rsDNS, nil)
	}
	row("endpoint PUT returned", func(s sample) time.Duration { return s.pePut }, nil)
	row("endpoint operation (daemon's startTime → endTime)", func(s sample) time.Duration { return s.peOp }, func(s sample) time.Duration { return s.nicOp })
	row("**endpoint PUT → poller done** (ratio to the NIC's)", func(s sample) time.Duration { return s.pePoll }, nicPoll)
	row("+ zone group PUT → poller done", func(s sample) time.Duration { return s.zgDone }, nil)
	row("**endpoint PUT → name resolvable in the NIC** (ratio to the record set's)", func(s sample) time.Duration { return s.resolved }, rsDNS)
	row("of which: zone group done → resolvable", func(s sample) time.Duration { return s.afterZG }, nil)
	row("endpoint PUT → a TLS login through the endpoint works (data path; login included)", func(s sample) time.Duration { return s.login }, nil)
	slices.Sort(digs)
	var tries []float64
	for _, s := range all {
		tries = append(tries, float64(s.tries))
	}
	fmt.Printf("\nDNS polled every %s from a socket inside the client NIC (median %.0f queries until resolved); one `ip netns exec NIC dig` afterwards took p50 %s, p99 %s.\n",
		b.f.dnsInterval, medianF(tries), lat.Round(lat.Quantile(digs, 0.5)), lat.Round(lat.Quantile(digs, 0.99)))
}

// checkpoint is the state of the scale measurement after some endpoints.
type checkpoint struct {
	done    int
	elapsed time.Duration
	cpu     time.Duration // privlinkd's, since the start of the measurement
	rss     int64
}

// scaleRun creates f.scale endpoints to the server from the networks, or
// as many as it can start within f.scaleBudget.
func (b *bench) scaleRun(ctx context.Context) error {
	f := b.f
	per := f.scale / f.networks
	total := per * f.networks
	pid := b.d.PID()
	mem0, err := b.settledMem(ctx)
	if err != nil {
		return err
	}
	get0 := b.getServer(ctx, 5)
	list0, n0, err := b.listConnections(ctx)
	if err != nil {
		return err
	}
	if n0 != 0 {
		return fmt.Errorf("the server has %d connections before the scale measurement", n0)
	}
	dataDir := b.d.DataDir()
	db0 := fileSize(dataDir + "/privlink.db")
	work, err := b.startStretch()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "scale: %d endpoints (%d per network), %d at a time, budget %v (load %s)\n", total, per, f.clients, f.scaleBudget, benchd.LoadAvg())
	var (
		mu      sync.Mutex
		ips     = make([][]netip.Addr, f.networks)
		done    []sample // in order of completion
		refs    []endpointRef
		checks  []checkpoint
		next    int
		firstEr error
		wg      sync.WaitGroup
	)
	step := max(total/10, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	for range f.clients {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				stop := i >= total || time.Since(start) > f.scaleBudget || firstEr != nil
				if !stop {
					next++
				}
				mu.Unlock()
				if stop {
					return
				}
				n := b.nets[i%f.networks]
				name := fmt.Sprintf("pe-s%03d", i/f.networks)
				var s sample
				t0 := time.Now()
				pe, err := b.createEndpoint(wctx, n, name, &s, nil)
				if err == nil {
					err = b.createZoneGroup(wctx, n, name)
				}
				s.zgDone = time.Since(t0)
				mu.Lock()
				if err != nil {
					if firstEr == nil {
						firstEr = err
						cancel()
					}
					mu.Unlock()
					return
				}
				ips[i%f.networks] = append(ips[i%f.networks], peIP(pe))
				done = append(done, s)
				refs = append(refs, endpointRef{n, name})
				if len(done)%step == 0 {
					c := checkpoint{done: len(done), elapsed: time.Since(start), cpu: work.cpu()}
					if m, err := procmem.Of(pid); err == nil {
						c.rss = m.RSS
					}
					checks = append(checks, c)
					fmt.Fprintf(os.Stderr, "scale: %d endpoints after %s, privlinkd CPU %s, RSS %s (load %s)\n",
						c.done, lat.Round(c.elapsed), lat.Round(c.cpu), procmem.MiB(c.rss), benchd.LoadAvg())
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstEr != nil {
		return firstEr
	}
	created := len(done)
	apiDone := time.Since(start)
	for i, n := range b.nets {
		if _, err := b.waitDNS(ctx, n, qname, ips[i], 5*time.Minute); err != nil {
			return err
		}
	}
	dnsDone := time.Since(start)
	cpu, mem1, memIdle, err := work.end(ctx)
	if err != nil {
		return err
	}
	get1 := b.getServer(ctx, 5)
	list1, n1, err := b.listConnections(ctx)
	if err != nil {
		return err
	}
	db1 := fileSize(dataDir + "/privlink.db")

	// A few more endpoints on top, one at a time: what the next one costs.
	var extra []sample
	for k := range min(f.networks, 10) {
		var s sample
		b.quiesce(ctx)
		t0 := time.Now()
		n := b.nets[k]
		pe, err := b.createEndpoint(ctx, n, "pe-extra", &s, nil)
		if err != nil {
			return err
		}
		if err := b.createZoneGroup(ctx, n, "pe-extra"); err != nil {
			return err
		}
		s.zgDone = time.Since(t0)
		want := append(slices.Clone(ips[k]), peIP(pe))
		if s.tries, err = b.waitDNS(ctx, n, qname, want, time.Minute); err != nil {
			return err
		}
		s.resolved = time.Since(t0)
		if err := b.waitLogin(ctx, n, peIP(pe), time.Minute); err != nil {
			return err
		}
		s.login = time.Since(t0)
		extra = append(extra, s)
		ips[k] = want
		refs = append(refs, endpointRef{n, "pe-extra"})
	}

	// Teardown.
	t0 := time.Now()
	if err := b.deleteEndpoints(ctx, refs); err != nil {
		return err
	}
	teardown := time.Since(t0)
	memAfter, err := procmem.Of(pid)
	if err != nil {
		return err
	}

	// Report.
	fmt.Printf("\n## %d endpoints to one server from %d networks (%d per network, zone group each), %d at a time\n\n", total, f.networks, per, f.clients)
	if created < total {
		fmt.Printf("**Only %d of the %d endpoints were created**: no new endpoint is started after the budget of %v (-scale-budget). The projection below is an extrapolation, not a measurement.\n\n",
			created, total, f.scaleBudget)
	}
	fmt.Println("| measurement | value |")
	fmt.Println("|---|---|")
	fmt.Printf("| endpoints created (each: endpoint PUT + poller, zone group PUT + poller) | %d |\n", created)
	fmt.Printf("| every endpoint and zone group poller done | %s (%.2f endpoints/s) |\n", lat.Round(apiDone), float64(created)/apiDone.Seconds())
	fmt.Printf("| every network's DNS answers all its endpoints' addresses | %s |\n", lat.Round(dnsDone))
	first := done[:min(created, 50)]
	last := done[max(0, created-50):]
	pick := func(ss []sample, get func(sample) time.Duration) string {
		return lat.Round(q(ss, get, 0.5)) + " / " + lat.Round(q(ss, get, 0.99))
	}
	pePoll := func(s sample) time.Duration { return s.pePoll }
	zg := func(s sample) time.Duration { return s.zgDone }
	fmt.Printf("| endpoint PUT → poller, p50 / p99: all | %s |\n", pick(done, pePoll))
	fmt.Printf("| endpoint PUT → poller, p50 / p99: first 50 / last 50 done | %s → %s |\n", pick(first, pePoll), pick(last, pePoll))
	fmt.Printf("| endpoint PUT returned, p50: first 50 / last 50 done | %s → %s |\n", lat.Round(q(first, func(s sample) time.Duration { return s.pePut }, 0.5)), lat.Round(q(last, func(s sample) time.Duration { return s.pePut }, 0.5)))
	fmt.Printf("| endpoint + zone group pollers, p50 / p99: first 50 / last 50 done | %s → %s |\n", pick(first, zg), pick(last, zg))
	fmt.Printf("| %d more endpoints on top, one at a time: PUT → poller / → resolvable / → login through it, p50 | %s / %s / %s |\n", len(extra),
		lat.Round(q(extra, pePoll, 0.5)), lat.Round(q(extra, func(s sample) time.Duration { return s.resolved }, 0.5)),
		lat.Round(q(extra, func(s sample) time.Duration { return s.login }, 0.5)))
	fmt.Printf("| privlinkd CPU (user+sys) during the creation | %s (%.0f ms per endpoint; %.0f%% of one core) |\n",
		lat.Round(cpu), float64(cpu)/float64(time.Millisecond)/float64(created), 100*cpu.Seconds()/dnsDone.Seconds())
	fmt.Printf("| privlinkd RSS: before → right after → 2 s later → after deleting them all | %s → %s → %s → %s (peak %s) |\n",
		procmem.MiB(mem0.RSS), procmem.MiB(mem1.RSS), procmem.MiB(memIdle.RSS), procmem.MiB(memAfter.RSS), procmem.MiB(memAfter.HWM))
	fmt.Printf("| privlinkd RSS growth per endpoint (2 s later − before) | %.0f KiB |\n", float64(memIdle.RSS-mem0.RSS)/1024/float64(created))
	fmt.Printf("| bolt file (privlink.db) before → after | %s → %s |\n", procmem.MiB(db0), procmem.MiB(db1))
	fmt.Printf("| GET server (connections inline), median of 5: 0 → %d connections | %s → %s |\n", n1, lat.Round(get0), lat.Round(get1))
	fmt.Printf("| list the server's connections (all pages): 0 → %d | %s → %s |\n", n1, lat.Round(list0), lat.Round(list1))
	fmt.Printf("| delete every endpoint (%d at a time) until no network resolves the name | %s |\n", f.clients, lat.Round(teardown))

	fmt.Println()
	fmt.Println("Progress, per step of endpoints (privlinkd CPU and wall time spent on that step, divided by its endpoints):")
	fmt.Println()
	fmt.Println("| endpoints | elapsed | privlinkd CPU ms per endpoint | wall ms per endpoint | privlinkd RSS |")
	fmt.Println("|---|---|---|---|---|")
	var xs, ys []float64
	prev := checkpoint{}
	for _, c := range checks {
		k := c.done - prev.done
		cpuPer := float64(c.cpu-prev.cpu) / float64(time.Millisecond) / float64(k)
		fmt.Printf("| %d | %s | %.0f | %.0f | %s |\n", c.done, lat.Round(c.elapsed), cpuPer,
			float64(c.elapsed-prev.elapsed)/float64(time.Millisecond)/float64(k), procmem.MiB(c.rss))
		xs, ys = append(xs, float64(prev.done+c.done)/2), append(ys, cpuPer)
		prev = c
	}
	if a, slope, ok := fit(xs, ys); ok {
		proj := func(n int) float64 { return (float64(n)*a + slope*float64(n)*float64(n-1)/2) / 1000 }
		fmt.Printf("\nLeast-squares line through the steps: privlinkd CPU per endpoint ≈ %.0f ms + %.2f ms × (endpoints already there).\n", a, slope)
		if created < total {
			share := cpu.Seconds() / dnsDone.Seconds()
			fmt.Printf("Extrapolated along it (an assumption, not a measurement): %d endpoints would take %.0f s of privlinkd CPU, about %.0f s of wall time at the share of the machine privlinkd got here (%.0f%% of a core).\n",
				total, proj(total), proj(total)/share, 100*share)
		}
	}
	if f.cpuprofile != "" {
		fmt.Printf("\nprivlinkd CPU profile of the creation: %s\n", f.cpuprofile)
	}
	return nil
}

// fit returns the least-squares line y = a + b·x.
func fit(xs, ys []float64) (a, b float64, ok bool) {
	n := float64(len(xs))
	if len(xs) < 2 {
		return 0, 0, false
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx, sy, sxx, sxy = sx+xs[i], sy+ys[i], sxx+xs[i]*xs[i], sxy+xs[i]*ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0, 0, false
	}
	b = (n*sxy - sx*sy) / d
	return (sy - b*sx) / n, b, true
}

// getServer returns the median time of n GETs of the server.
func (b *bench) getServer(ctx context.Context, n int) time.Duration {
	var ds []time.Duration
	for range n {
		t0 := time.Now()
		if _, err := b.servers.Get(ctx, serverGroup, serverName, nil); err != nil {
			return -1
		}
		ds = append(ds, time.Since(t0))
	}
	return lat.Median(ds)
}

func (b *bench) listConnections(ctx context.Context) (time.Duration, int, error) {
	t0 := time.Now()
	n := 0
	for p := b.conns.NewListByServerPager(serverGroup, serverName, nil); p.More(); {
		page, err := p.NextPage(ctx)
		if err != nil {
			return 0, 0, fmt.Errorf("list connections: %w", err)
		}
		n += len(page.Value)
	}
	return time.Since(t0), n, nil
}

// cpuTime is the user+system CPU time of pid so far.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// After the command: state(0) ppid ... utime(11) stime(12), in clock ticks.
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// profile asks a bench/privlinkd-prof daemon to start or stop its CPU
// profile, over the unix socket it serves in its data directory.
// settledMem waits 2 s for privlinkd to settle and returns its memory.
func (b *bench) settledMem(ctx context.Context) (procmem.Mem, error) {
	if err := benchd.Sleep(ctx, 2*time.Second); err != nil {
		return procmem.Mem{}, err
	}
	return procmem.Of(b.d.PID())
}

// stretch is privlinkd's CPU time over a measured stretch of work, with
// its CPU profile when -cpuprofile asks for one.
type stretch struct {
	b    *bench
	cpu0 time.Duration
}

func (b *bench) startStretch() (stretch, error) {
	if b.f.cpuprofile != "" {
		if err := profile("start", b.d.DataDir(), ""); err != nil {
			return stretch{}, err
		}
	}
	return stretch{b: b, cpu0: cpuTime(b.d.PID())}, nil
}

// cpu is privlinkd's CPU time since the stretch started.
func (s stretch) cpu() time.Duration { return cpuTime(s.b.d.PID()) - s.cpu0 }

// end ends the stretch: its CPU time, and privlinkd's memory right then and
// once settled.
func (s stretch) end(ctx context.Context) (cpu time.Duration, now, settled procmem.Mem, err error) {
	cpu = s.cpu()
	if s.b.f.cpuprofile != "" {
		if err := profile("stop", s.b.d.DataDir(), s.b.f.cpuprofile); err != nil {
			return 0, now, settled, err
		}
	}
	if now, err = procmem.Of(s.b.d.PID()); err != nil {
		return 0, now, settled, err
	}
	settled, err = s.b.settledMem(ctx)
	return cpu, now, settled, err
}

func profile(action, dataDir, out string) error {
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", dataDir+"/pprof.sock")
	}}}
	resp, err := c.Post("http://privlinkd/cpu/"+action, "text/plain", nil)
	if err != nil {
		return fmt.Errorf("cpu profile %s (is --privlinkd bench/privlinkd-prof?): %w", action, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cpu profile %s: %s %v", action, resp.Status, err)
	}
	if out != "" {
		return os.WriteFile(out, b, 0o644)
	}
	return nil
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

func to[T any](v T) *T { return &v }
