package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/bench/internal/benchd"
	"github.com/privlink/privlink/bench/internal/lat"
	"github.com/privlink/privlink/bench/internal/sdk"
	"github.com/privlink/privlink/bench/internal/table"
)

// The peered network of --peered: its own group, a VNet of a disjoint
// space with a client NIC, the privatelink zone of the endpoint's group
// linked to it.
const (
	peerRG    = "peer"
	peerVNet  = "vnet"
	peerNIC   = "client"
	peerSpace = "10.1.0.0/16"
)

// runPeered is --peered: a second network peered with the endpoint's, and
// the endpoint used from there. First, --first-query times (10): the pair
// of peerings is deleted (and psql from the peered NIC seen failing), the
// endpoint network's side is PUT, then the peered network's side, which
// connects the pair: from that second PUT's start until psql by name from
// the peered NIC first succeeds (its poller's end is shown too). Then
// pgbench select-only (-S) at each --clients count through the endpoint
// from the peered network's NIC against from the endpoint's own network's
// client NIC, rounds alternating which goes first.
func (b *bench) runPeered(ctx context.Context) error {
	if err := b.c.CreateGroup(ctx, peerRG); err != nil {
		return err
	}
	if _, err := b.c.CreateVNet(ctx, peerRG, peerVNet, sdk.VNetBody(peerSpace, sdk.Subnet{Name: "clients", Prefix: "10.1.1.0/24"})); err != nil {
		return err
	}
	peerVNetID := b.c.ID(peerRG, "Microsoft.Network/virtualNetworks", peerVNet)
	if _, err := b.c.CreateNIC(ctx, peerRG, peerNIC, peerVNetID+"/subnets/clients", nil); err != nil {
		return err
	}
	if err := b.c.LinkZone(ctx, rg, sdk.PrivateLinkZone, "peer", peerVNetID); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, b.f.privlink, "--data-dir", b.dataDir, "netns", "-g", peerRG, peerNIC).Output()
	if err != nil {
		return fmt.Errorf("privlink netns: %w", err)
	}
	peerNS := strings.TrimSpace(string(out))

	// PUT → first query across the peering.
	n := max(b.f.firstQuery, 1)
	fmt.Printf("\npeering PUT → first successful query from the peered network, %d pairs (SDK: the endpoint network's side PUT+poll, then the peered side's, timed from its start; psql loops in the peered NIC)\n", n)
	var firsts, polled []time.Duration
	for i := 1; i <= n; i++ {
		if i > 1 {
			for _, side := range [][2]string{{rg, "vnet"}, {peerRG, peerVNet}} {
				if err := b.c.Unpeer(ctx, side[0], side[1], "peering"); err != nil {
					return err
				}
			}
		}
		gone := false
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
			if _, err := b.psqlFrom(ctx, peerNS); err != nil {
				gone = true
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !gone {
			return fmt.Errorf("pair %d: the server still answers from the peered NIC 15s after the peerings went", i)
		}
		if _, _, err := b.c.Peer(ctx, rg, "vnet", "peering", peerVNetID); err != nil {
			return err
		}
		loopCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
		done := make(chan error, 1)
		var first time.Duration
		start := time.Now()
		go func() {
			last := ""
			for {
				msg, err := b.psqlFrom(loopCtx, peerNS)
				if err == nil {
					first = time.Since(start)
					done <- nil
					return
				}
				if loopCtx.Err() != nil {
					done <- fmt.Errorf("no successful query within 60s of the peering PUT; last: %s", last)
					return
				}
				last = failure(msg)
			}
		}()
		state, t, err := b.c.Peer(ctx, peerRG, peerVNet, "peering", b.vnetID)
		if err == nil && state != armnetwork.VirtualNetworkPeeringStateConnected {
			err = fmt.Errorf("the second side is %s, not Connected", state)
		}
		err = errors.Join(err, <-done)
		cancel()
		if err != nil {
			return fmt.Errorf("pair %d: %w", i, err)
		}
		firsts, polled = append(firsts, first), append(polled, t.Done)
		fmt.Printf("  pair %d: first query %s after the connecting PUT (its poller done %s)\n", i, lat.Round(first), lat.Round(t.Done))
	}

	// pgbench: the peered NIC against the endpoint network's own NIC.
	paths := []pathKind{endpoint, endpointPeered}
	for _, p := range paths {
		if _, err := b.pgbench(ctx, p, row{args: []string{"-S"}, clients: 8}, 2*time.Second); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	var res []*result
	for _, c := range b.f.clients {
		res = append(res, &result{row: row{name: "select-only (-S)", args: []string{"-S"}, clients: c}, m: map[pathKind][]measurement{}})
	}
	fmt.Printf("\n%d rounds of %d pgbench runs of %s each (load average %s)\n", b.f.rounds, len(res)*2, b.f.duration, benchd.LoadAvg())
	for round := range b.f.rounds {
		for _, r := range res {
			order := paths
			if round%2 == 1 {
				order = []pathKind{endpointPeered, endpoint}
			}
			var line []string
			for _, p := range order {
				m, err := b.pgbench(ctx, p, r.row, b.f.duration)
				if err != nil {
					return err
				}
				r.m[p] = append(r.m[p], m)
				line = append(line, fmt.Sprintf("%s %.0f tps", p, m.tps))
			}
			fmt.Fprintf(os.Stderr, "round %d, %d clients: %s; load %s\n", round+1, r.row.clients, strings.Join(line, ", "), benchd.LoadAvg())
		}
	}
	fmt.Printf("\nload average at the end: %s\n", benchd.LoadAvg())
	slices.Sort(polled)
	slices.Sort(firsts)
	fmt.Printf("\n### Virtual network peering: PUT → first query (%d pairs)\n\n", n)
	table.Header("measurement", "p50", "max")
	fmt.Printf("| connecting peering PUT → its poller done | %s | %s |\n", lat.Round(lat.Quantile(polled, 0.5)), lat.Round(lat.Quantile(polled, 1)))
	fmt.Printf("| connecting peering PUT → first psql success from the peered NIC | %s | %s |\n", lat.Round(lat.Quantile(firsts, 0.5)), lat.Round(lat.Quantile(firsts, 1)))
	med := lat.MedianOf[measurement, float64]
	tps := func(m measurement) float64 { return m.tps }
	fmt.Printf("\n### pgbench through the endpoint from the peered network against from the endpoint's own network, scale %d, -j %d, %s per run, %d rounds, sslmode=require\n\n",
		b.f.scale, b.f.threads, b.f.duration, b.f.rounds)
	table.Header("workload", "clients", "own network TPS", "peered TPS", "peered ÷ own (median)", "per round", "CPU per transaction, own → peered (µs)")
	for _, r := range res {
		ratio, per := r.tpsRatio(endpointPeered, endpoint)
		fmt.Printf("| %s | %d | %.0f | %.0f | **%.3f** | %s | %.0f → %.0f |\n", r.row.name, r.row.clients, med(r.m[endpoint], tps), med(r.m[endpointPeered], tps),
			ratio, per, med(r.m[endpoint], cpuPerTx), med(r.m[endpointPeered], cpuPerTx))
	}
	return nil
}
