package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/google/nftables"
	"github.com/privlink/privlink/bench/internal/benchd"
	"github.com/privlink/privlink/bench/internal/flex"
	"github.com/privlink/privlink/bench/internal/lat"
	"github.com/privlink/privlink/bench/internal/procmem"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/controller"
	"github.com/privlink/privlink/internal/fabric"
)

// oneNetworkPrefix is the endpoints subnet of the one-network measurement:
// room for 1,019 endpoints (Azure allows 1,000 per network).
const oneNetworkPrefix = "10.0.4.0/22"

// closeBound is how long the one-network measurement waits for a rejected
// endpoint's session to end and for its address to refuse.
const closeBound = 10 * time.Second

// routerCounts is what a router's nftables table of privlink holds:
// elements of the sets and maps privlink fills, those of dynamic sets the
// kernel fills (refused connections by address) apart.
type routerCounts struct {
	chains, rules, sets, elements, dynamic, counters int
}

// countRouter counts the objects of table privlink in namespace ns.
func (b *bench) countRouter(ns string) (routerCounts, error) {
	var rc routerCounts
	err := b.fab.Do(ns, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		table := &nftables.Table{Name: fabric.NFTTable, Family: nftables.TableFamilyINet}
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
		if err != nil {
			return err
		}
		for _, ch := range chains {
			if ch.Table.Name != fabric.NFTTable {
				continue
			}
			rules, err := c.GetRules(table, ch)
			if err != nil {
				return err
			}
			rc.chains++
			rc.rules += len(rules)
		}
		sets, err := c.GetSets(table)
		if err != nil {
			return err
		}
		for _, s := range sets {
			elems, err := c.GetSetElements(s)
			if err != nil {
				return err
			}
			rc.sets++
			if s.Dynamic {
				rc.dynamic += len(elems)
			} else {
				rc.elements += len(elems)
			}
		}
		objs, err := c.GetNamedObjects(table)
		if err != nil {
			return err
		}
		rc.counters = len(objs)
		return nil
	})
	return rc, err
}

// sslRequest connects from namespace ns to addr:5432 and sends PostgreSQL's
// SSLRequest; it returns the connection once PostgreSQL answered (the
// server then waits for a TLS handshake).
func (b *bench) sslRequest(ctx context.Context, ns string, addr netip.Addr) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := b.fab.DialContext(ctx, ns, "tcp", netip.AddrPortFrom(addr, 5432).String())
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	answer := make([]byte, 1)
	if _, err = c.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err == nil {
		_, err = io.ReadFull(c, answer)
	}
	if err == nil && answer[0] != 'S' && answer[0] != 'N' {
		err = fmt.Errorf("answer %q to SSLRequest, not PostgreSQL's", answer)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// sweep checks, f.clients at a time, that every address takes a
// connection that PostgreSQL answers; it returns the failures (and an
// error when it could not try them all).
func (b *bench) sweep(ctx context.Context, ns string, addrs []netip.Addr) ([]error, error) {
	var mu sync.Mutex
	var errs []error
	_, err := lat.Drive(ctx, lat.Load{Clients: b.f.clients, Ops: len(addrs)}, func(ctx context.Context, _, i int) error {
		c, err := b.sslRequest(ctx, ns, addrs[i])
		if err != nil {
			mu.Lock()
			errs = append(errs, fmt.Errorf("%s: %w", addrs[i], err))
			mu.Unlock()
			return nil
		}
		c.Close()
		return nil
	})
	if err == nil {
		err = ctx.Err()
	}
	return errs, err
}

// rejectTimes is one rejection under a live session.
type rejectTimes struct {
	returned time.Duration // the connection PUT's poller finished
	closed   time.Duration // the live session was reset (closeBound: not)
	// refused is when the first of three new connections in a row that
	// did not reach PostgreSQL was started (closeBound: none): a
	// connection started just before the change may hang until its
	// timeout, so its start, not its failure, tells when the path closed.
	refused time.Duration
}

// rejectOne opens a session through endpoint name (address addr), then
// rejects its connection as the server's owner; all times are from the
// moment the PUT is sent.
func (b *bench) rejectOne(ctx context.Context, ns, name string, addr netip.Addr) (rejectTimes, error) {
	var rt rejectTimes
	sess, err := b.sslRequest(ctx, ns, addr)
	if err != nil {
		return rt, fmt.Errorf("session through %s before its rejection: %w", name, err)
	}
	defer sess.Close()
	var conn string
	for pg := b.conns.NewListByServerPager(serverGroup, serverName, nil); pg.More() && conn == ""; {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return rt, err
		}
		for _, c := range page.Value {
			if c.Name != nil && strings.HasPrefix(*c.Name, name+".") {
				conn = *c.Name
			}
		}
	}
	if conn == "" {
		return rt, fmt.Errorf("no connection of %s on the server", name)
	}
	ended := make(chan time.Time, 1)
	go func() {
		_ = sess.SetReadDeadline(time.Now().Add(closeBound + 5*time.Second))
		_, _ = sess.Read(make([]byte, 1))
		ended <- time.Now()
	}()
	t0 := time.Now()
	p, err := b.conns.BeginUpdate(ctx, serverGroup, serverName, conn, armpostgresqlflexibleservers.PrivateEndpointConnection{
		Properties: &armpostgresqlflexibleservers.PrivateEndpointConnectionProperties{PrivateLinkServiceConnectionState: &armpostgresqlflexibleservers.PrivateLinkServiceConnectionState{
			Status: to(armpostgresqlflexibleservers.PrivateEndpointServiceConnectionStatus("Rejected")), Description: to("rejected by endpointbench")}}}, nil)
	if err == nil {
		_, err = p.PollUntilDone(ctx, flex.PollOpts)
	}
	if err != nil {
		return rt, fmt.Errorf("reject %s: %w", name, err)
	}
	rt.returned = time.Since(t0)
	rt.refused = closeBound
	for fails := 0; fails < 3 && time.Since(t0) < closeBound; {
		started := time.Since(t0)
		c, err := b.sslRequest(ctx, ns, addr)
		if err == nil {
			c.Close()
			fails, rt.refused = 0, closeBound
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if fails == 0 {
			rt.refused = started
		}
		fails++
	}
	select {
	case at := <-ended:
		rt.closed = min(at.Sub(t0), closeBound)
	case <-time.After(max(closeBound-time.Since(t0), 0)):
		rt.closed = closeBound
	}
	return rt, nil
}

// oneNetworkRun measures -one-network endpoints in one network: creation,
// every one taking connections, the router's table, privlinkd's memory,
// and rejections under live sessions.
func (b *bench) oneNetworkRun(ctx context.Context) error {
	f := b.f
	n, err := b.network(ctx, "bulk", oneNetworkPrefix)
	if err != nil {
		return err
	}
	vnetID, err := arm.ParseID(n.vnetID)
	if err != nil {
		return err
	}
	router := b.fab.NamespaceName(fabric.KindNetwork, controller.FabricID(vnetID))
	mem0, err := b.settledMem(ctx)
	if err != nil {
		return err
	}
	empty, err := b.countRouter(router)
	if err != nil {
		return fmt.Errorf("count the empty router's table: %w", err)
	}
	work, err := b.startStretch()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "one network: %d endpoints, %d at a time (load %s)\n", f.oneNetwork, f.clients, benchd.LoadAvg())
	var mu sync.Mutex
	addrs := make([]netip.Addr, f.oneNetwork)
	var failed []error
	created := 0
	start := time.Now()
	_, err = lat.Drive(ctx, lat.Load{Clients: f.clients, Ops: f.oneNetwork}, func(ctx context.Context, _, i int) error {
		var s sample
		pe, err := b.createEndpoint(ctx, n, fmt.Sprintf("pe-b%04d", i), &s, nil)
		mu.Lock()
		defer mu.Unlock()
		addrs[i] = peIP(pe)
		if err != nil {
			failed = append(failed, err)
		} else {
			created++
		}
		if done := created + len(failed); done%100 == 0 {
			fmt.Fprintf(os.Stderr, "one network: %d endpoints after %s (%d failed; load %s)\n", done, lat.Round(time.Since(start)), len(failed), benchd.LoadAvg())
		}
		return nil
	})
	if err != nil {
		return err
	}
	took := time.Since(start)
	cpu, mem1, memIdle, err := work.end(ctx)
	if err != nil {
		return err
	}
	full, err := b.countRouter(router)
	if err != nil {
		return fmt.Errorf("count the router's table: %w", err)
	}
	var valid []netip.Addr
	for _, a := range addrs {
		if a.IsValid() {
			valid = append(valid, a)
		}
	}
	t0 := time.Now()
	sweepErrs, err := b.sweep(ctx, n.nicNS, valid)
	if err != nil {
		return err
	}
	sweepTook := time.Since(t0)
	logins := 0
	for _, i := range []int{0, len(valid) / 2, len(valid) - 1} {
		if i >= 0 && i < len(valid) && b.waitLogin(ctx, n, valid[i], 5*time.Second) == nil {
			logins++
		}
	}

	// Rejections, one at a time, spread over the endpoints.
	var rts []rejectTimes
	var rejected []int
	k := min(f.rejections, len(valid))
	for j := range k {
		i := j * len(addrs) / max(k, 1)
		if !addrs[i].IsValid() {
			continue
		}
		rt, err := b.rejectOne(ctx, n.nicNS, fmt.Sprintf("pe-b%04d", i), addrs[i])
		if err != nil {
			fmt.Fprintf(os.Stderr, "one network: rejection %d: %v\n", j, err)
			continue
		}
		rts = append(rts, rt)
		rejected = append(rejected, i)
	}
	var kept []netip.Addr
	for i, a := range addrs {
		if a.IsValid() && !slices.Contains(rejected, i) {
			kept = append(kept, a)
		}
	}
	keptErrs, err := b.sweep(ctx, n.nicNS, kept)
	if err != nil {
		return err
	}
	afterReject, err := b.countRouter(router)
	if err != nil {
		return fmt.Errorf("count the router's table: %w", err)
	}

	// Report.
	fmt.Printf("\n## %d approved endpoints to one server in one network, %d at a time\n\n", f.oneNetwork, f.clients)
	fmt.Println("| measurement | value |")
	fmt.Println("|---|---|")
	fmt.Printf("| endpoints whose poller reported Succeeded / failed | %d / %d |\n", created, len(failed))
	if len(failed) > 0 {
		fmt.Printf("| first failure | %s |\n", strings.ReplaceAll(failed[0].Error(), "|", "/"))
	}
	fmt.Printf("| every endpoint's poller done | %s (%.1f endpoints/s) |\n", lat.Round(took), float64(f.oneNetwork)/took.Seconds())
	fmt.Printf("| endpoints that take a connection PostgreSQL answers (SSLRequest from the client NIC) | %d of %d (sweep %s, %d at a time) |\n",
		len(valid)-len(sweepErrs), len(valid), lat.Round(sweepTook), f.clients)
	if len(sweepErrs) > 0 {
		fmt.Printf("| first refused | %s |\n", sweepErrs[0])
	}
	fmt.Printf("| TLS logins (first, middle, last endpoint) | %d of 3 |\n", logins)
	fmt.Printf("| privlinkd CPU (user+sys) during the creation | %s (%.0f ms per endpoint) |\n", lat.Round(cpu), float64(cpu)/float64(time.Millisecond)/float64(f.oneNetwork))
	fmt.Printf("| privlinkd RSS: before → right after → 2 s later (peak) | %s → %s → %s (%s) |\n",
		procmem.MiB(mem0.RSS), procmem.MiB(mem1.RSS), procmem.MiB(memIdle.RSS), procmem.MiB(memIdle.HWM))
	fmt.Printf("| privlinkd RSS growth per endpoint | %.0f KiB |\n", float64(memIdle.RSS-mem0.RSS)/1024/float64(max(created, 1)))
	row := func(what string, rc routerCounts) {
		fmt.Printf("| router table %s: chains / rules / sets and maps / their elements (+ refused addresses) / named counters | %d / %d / %d / %d (+%d) / %d |\n",
			what, rc.chains, rc.rules, rc.sets, rc.elements, rc.dynamic, rc.counters)
	}
	row("with no endpoint", empty)
	row(fmt.Sprintf("with the %d", f.oneNetwork), full)
	row(fmt.Sprintf("after %d rejections", len(rts)), afterReject)
	if len(rts) > 0 {
		pick := func(get func(rejectTimes) time.Duration) string {
			var ds []time.Duration
			notYet := 0
			for _, rt := range rts {
				d := get(rt)
				if d >= closeBound {
					notYet++
				}
				ds = append(ds, d)
			}
			slices.Sort(ds)
			s := lat.Round(lat.Quantile(ds, 0.5)) + " / " + lat.Round(ds[len(ds)-1])
			if notYet > 0 {
				s += fmt.Sprintf(" (%d of %d not within %v)", notYet, len(ds), closeBound)
			}
			return s
		}
		fmt.Printf("| %d rejections under a live session, one at a time, from the PUT sent, median / max: poller done | %s |\n", len(rts), pick(func(r rejectTimes) time.Duration { return r.returned }))
		fmt.Printf("| … the live session reset | %s |\n", pick(func(r rejectTimes) time.Duration { return r.closed }))
		fmt.Printf("| … a new connection refused | %s |\n", pick(func(r rejectTimes) time.Duration { return r.refused }))
	}
	fmt.Printf("| the other endpoints after the rejections: take a connection | %d of %d |\n", len(kept)-len(keptErrs), len(kept))
	if err := errors.Join(failed...); err != nil && created == 0 {
		return err
	}
	return nil
}
