package pgserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkCreate measures create-to-ready (Ensure of a new server until
// it accepts connections) and reports the median and 99th percentile, for
// three ways of making the data directory: "spare" renames a spare copy of
// the template (the usual case: the spare is made in the background after
// each creation), "copy" copies the template (several creations at once),
// "initdb" runs initdb (the baseline). The template itself is made before
// the clock starts; namespaces are made, spares awaited and servers
// deleted outside the measurement. Run with -benchtime=20x or more for a
// meaningful p99.
func BenchmarkCreate(b *testing.B) {
	for _, how := range []string{"spare", "copy", "initdb"} {
		b.Run(how, func(b *testing.B) {
			e := newEnv(b)
			e.m.useInitdb = how == "initdb"
			e.m.noSpare = how != "spare"
			ctx := context.Background()
			if _, err := e.m.template(ctx, e.version, e.m.bins[e.version]); err != nil {
				b.Fatal(err)
			}
			var took []time.Duration
			for b.Loop() {
				b.StopTimer()
				s := e.newServer()
				e.m.refillSpare(e.version, e.m.bins[e.version])
				e.m.bg.Wait() // the spare is ready (a no-op without spares)
				b.StartTimer()
				t0 := time.Now()
				if _, err := e.m.Ensure(ctx, s.Spec); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(t0))
				b.StopTimer()
				if err := e.m.Delete(ctx, s.ID); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			reportPercentiles(b, took)
		})
	}
}

func reportPercentiles(b *testing.B, d []time.Duration) {
	slices.Sort(d)
	pct := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	b.ReportMetric(float64(pct(0.50))/1e6, "p50-ms")
	b.ReportMetric(float64(pct(0.99))/1e6, "p99-ms")
	b.Logf("n=%d min %v p50 %v p99 %v max %v", len(d), d[0], pct(0.5), pct(0.99), d[len(d)-1])
}

// BenchmarkIdleMemory reports the memory of one idle server: the sum of
// the resident set sizes of its processes (which counts shared pages once
// per process) and the sum of their proportional set sizes (which shares
// them out).
func BenchmarkIdleMemory(b *testing.B) {
	e := newEnv(b)
	s := e.newServer()
	e.ensure(e.m, s)
	time.Sleep(3 * time.Second) // let the server settle into idleness
	c := newCluster(e.m.pgDir, s.ID)
	var rss, pss int64
	var procs int
	for b.Loop() {
		pids, err := clusterPIDs(c.dataDir)
		if err != nil {
			b.Fatal(err)
		}
		rss, pss, procs = 0, 0, len(pids)
		for _, pid := range pids {
			r, p, err := memoryOf(pid)
			if err != nil {
				b.Fatal(err)
			}
			rss += r
			pss += p
		}
	}
	b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(pss)/(1<<20), "pss-MiB")
	b.ReportMetric(float64(procs), "processes")
}

// memoryOf returns the Rss and Pss of pid in bytes (smaps_rollup).
func memoryOf(pid int) (rss, pss int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "Rss:":
			rss = kb << 10
		case "Pss:":
			pss = kb << 10
		}
	}
	return rss, pss, sc.Err()
}

// BenchmarkColdStart20 measures how long a new Manager takes to bring back
// twenty servers whose postmasters were stopped (privlinkd restarting
// after the machine rebooted): Ensure for all at once, until all accept
// connections.
func BenchmarkColdStart20(b *testing.B) {
	const n = 20
	e := newEnv(b)
	servers := make([]*server, n)
	for i := range servers {
		servers[i] = e.newServer()
	}
	ctx := context.Background()
	ensureAll := func(m *Manager) error {
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i, s := range servers {
			wg.Go(func() { _, errs[i] = m.Ensure(ctx, s.Spec) })
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	if err := ensureAll(e.m); err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	m := e.m
	for b.Loop() {
		b.StopTimer()
		if err := m.StopAll(ctx); err != nil {
			b.Fatal(err)
		}
		m.Close()
		m = e.newManager()
		b.StartTimer()
		t0 := time.Now()
		if err := ensureAll(m); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(t0))
	}
	reportPercentiles(b, took)
}
