package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/privlink/privlink/bench/internal/benchd"
	"github.com/privlink/privlink/bench/internal/lat"
	"github.com/privlink/privlink/bench/internal/table"
)

// runPgBouncer is --pgbouncer: the server's PgBouncer is enabled through
// the configurations API (pool_mode as given, Azure's other defaults), and
// pgbench runs through the endpoint at 6432 against 5432, in the same
// rounds: select-only with a new connection per transaction (-S -C, the
// pooler's gain in connection rate) and select-only on kept connections
// (-S, the pooler's cost), each at 8 clients.
func (b *bench) runPgBouncer(ctx context.Context) error {
	if err := b.c.SetConfig(ctx, rg, serverName, "pgbouncer.pool_mode", b.f.poolMode); err != nil {
		return err
	}
	if err := b.c.SetConfig(ctx, rg, serverName, "pgbouncer.enabled", "true"); err != nil {
		return err
	}
	rows := []row{
		{name: "select-only, new connection per transaction (-S -C)", args: []string{"-S", "-C"}, clients: 8},
		{name: "select-only (-S)", args: []string{"-S"}, clients: 8},
	}
	paths := []pathKind{endpoint, endpointBouncer}
	for _, p := range paths {
		if _, err := b.pgbench(ctx, p, row{args: []string{"-S"}, clients: 8}, 2*time.Second); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	res := make([]*result, len(rows))
	for i, r := range rows {
		res[i] = &result{row: r, m: map[pathKind][]measurement{}}
	}
	fmt.Printf("\n%d rounds of %d pgbench runs of %s each, pool_mode %s (load average %s)\n", b.f.rounds, len(rows)*2, b.f.duration, b.f.poolMode, benchd.LoadAvg())
	for round := range b.f.rounds {
		for _, r := range res {
			order := paths
			if round%2 == 1 {
				order = []pathKind{endpointBouncer, endpoint}
			}
			var line []string
			for _, p := range order {
				m, err := b.pgbench(ctx, p, r.row, b.f.duration)
				if err != nil {
					return err
				}
				r.m[p] = append(r.m[p], m)
				line = append(line, fmt.Sprintf("%s %.0f tps", bouncerPathName(p), m.tps))
			}
			fmt.Fprintf(os.Stderr, "round %d, %s: %s; load %s\n", round+1, r.row.name, strings.Join(line, ", "), benchd.LoadAvg())
		}
	}
	fmt.Printf("\nload average at the end: %s\n", benchd.LoadAvg())
	med := lat.MedianOf[measurement, float64]
	tps := func(m measurement) float64 { return m.tps }
	fmt.Printf("\n### pgbench through the endpoint, 6432 (PgBouncer, pool_mode %s) against 5432 (PostgreSQL), scale %d, -j %d, %s per run, %d rounds, sslmode=require\n\n",
		b.f.poolMode, b.f.scale, b.f.threads, b.f.duration, b.f.rounds)
	table.Header("workload", "clients", "5432 TPS", "6432 TPS", "6432 ÷ 5432 (median)", "per round", "CPU per transaction, 5432 → 6432 (µs)")
	for _, r := range res {
		ratio, per := r.tpsRatio(endpointBouncer, endpoint)
		fmt.Printf("| %s | %d | %.0f | %.0f | **%.3f** | %s | %.0f → %.0f |\n", r.row.name, r.row.clients, med(r.m[endpoint], tps), med(r.m[endpointBouncer], tps),
			ratio, per, med(r.m[endpoint], cpuPerTx), med(r.m[endpointBouncer], cpuPerTx))
	}
	return nil
}

func bouncerPathName(p pathKind) string {
	if p == endpointBouncer {
		return "6432"
	}
	return "5432"
}
