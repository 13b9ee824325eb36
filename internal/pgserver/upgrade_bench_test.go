package pgserver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkUpgrade: a major version upgrade of a server holding pgbench's
// tables at scale PRIVLINK_BENCH_UPGRADE_SCALE (70 is about 1 GB)
// from Debian's 15 to the newest installed major, by Manager.Upgrade,
// against the same method run by hand on the same data in the same
// iteration (initdb of the new major, pg_ctl start on a socket,
// pg_dumpall | psql, pg_ctl stop): what privlink adds on top of the
// dump and restore. Run with -benchtime=1x (each iteration loads the
// data anew). It runs only when PRIVLINK_BENCH_UPGRADE_SCALE is set
// (PRIVLINK_BENCH_UPGRADE_SCALE=70 for the 1 GB of docs/benchmarks.md),
// so that `go test -bench .` of the other benchmarks does not load
// gigabytes.
func BenchmarkUpgrade(b *testing.B) {
	if os.Getenv("PRIVLINK_BENCH_UPGRADE_SCALE") == "" {
		b.Skip("set PRIVLINK_BENCH_UPGRADE_SCALE (70: about 1 GB) to run it")
	}
	e := newEnv(b)
	from := "15"
	requireVersion(b, e.m, from)
	vs := e.m.Versions()
	to := vs[len(vs)-1]
	if to == from {
		requireVersion(b, e.m, "17")
	}
	scale := 70
	if v, err := strconv.Atoi(os.Getenv("PRIVLINK_BENCH_UPGRADE_SCALE")); err == nil && v > 0 {
		scale = v
	}
	ctx := context.Background()
	// The new major's template is made once per machine, ahead.
	if _, err := e.m.template(ctx, to, e.m.bins[to]); err != nil {
		b.Fatal(err)
	}
	var hand, ours time.Duration
	var size int64
	for b.Loop() {
		b.StopTimer()
		s := e.newServer()
		s.Version = from
		e.ensure(e.m, s)
		c := newCluster(e.m.pgDir, s.ID)
		if out, err := e.m.runAsPostgres(ctx, filepath.Join(e.m.bins[from], "pgbench"), "-i", "-q", "-s", strconv.Itoa(scale),
			"-h", c.sockDir, "-p", strconv.Itoa(Port), "-U", "postgres", "postgres"); err != nil {
			b.Fatalf("pgbench -i: %v: %s", err, out)
		}
		conn, err := e.m.Conn(ctx, s.ID)
		if err != nil {
			b.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT pg_database_size('postgres')").Scan(&size); err != nil {
			b.Fatal(err)
		}
		conn.Close(ctx)

		// By hand: the same dump and restore into a new cluster.
		dir, err := os.MkdirTemp(e.dataDir, "hand-")
		if err != nil {
			b.Fatal(err)
		}
		os.Chmod(dir, 0o711)
		newData := filepath.Join(dir, "data")
		t0 := time.Now()
		if err := e.m.initdb(ctx, e.m.bins[to], newData); err != nil {
			b.Fatal(err)
		}
		if err := os.Chown(dir, e.m.uid, e.m.gid); err != nil {
			b.Fatal(err)
		}
		if out, err := e.m.runAsPostgres(ctx, filepath.Join(e.m.bins[to], "pg_ctl"), "-D", newData, "-w", "-l", filepath.Join(dir, "log"),
			"-o", "-c listen_addresses= -c unix_socket_directories="+dir, "start"); err != nil {
			b.Fatalf("pg_ctl start: %v: %s", err, out)
		}
		dumpBin := e.m.dumpBin(from)
		pipe := fmt.Sprintf("set -e; %s/pg_dumpall -h %s -U postgres -l postgres | grep -vx 'CREATE ROLE postgres;' | %s/psql -X -q -h %s -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null",
			dumpBin, c.sockDir, dumpBin, dir)
		out, err := e.m.runAsPostgres(ctx, "/bin/sh", "-c", pipe)
		stopOut, stopErr := e.m.runAsPostgres(ctx, filepath.Join(e.m.bins[to], "pg_ctl"), "-D", newData, "-w", "-m", "fast", "stop")
		if err != nil || stopErr != nil {
			b.Fatalf("by hand: %v %s; stop: %v %s", err, out, stopErr, stopOut)
		}
		hand += time.Since(t0)
		os.RemoveAll(dir)

		// privlink's upgrade of the same server.
		up := s.Spec
		up.Version = to
		b.StartTimer()
		t1 := time.Now()
		if _, err := e.m.Upgrade(ctx, up, nil); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(t1)
		b.StopTimer()
		if err := e.m.Delete(ctx, s.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(float64(size)/(1<<20), "MiB")
	b.ReportMetric(hand.Seconds()/n, "hand-s")
	b.ReportMetric(ours.Seconds()/n, "privlink-s")
	b.ReportMetric(ours.Seconds()/hand.Seconds(), "privlink/hand")
}
