package main

import "testing"

func TestParseBench(t *testing.T) {
	out := `goos: linux
BenchmarkCreate/spare-2 	      10	 520245561 ns/op	       522.4 p50-ms	       783.6 p99-ms
--- BENCH: BenchmarkCreate/spare-2
    bench_test.go:64: n=10 min 362.176926ms p50 522.36038ms p99 783.598826ms max 783.598826ms
BenchmarkIdleMemory-2            	      10	   6020948 ns/op	         7.000 processes	        17.97 pss-MiB	        65.37 rss-MiB
--- FAIL: BenchmarkColdStart20
    bench_test.go:64: n=1 min 5.538623746s p50 5.538623746s p99 5.538623746s max 5.538623746s
    helpers_test.go:148: file descriptors: 8 before, 10 after
FAIL
`
	res := parseBench([]byte(out))
	for _, c := range []struct {
		name, unit string
		want       float64
	}{
		{"BenchmarkCreate/spare", "p50-ms", 522.4},
		{"BenchmarkCreate/spare", "p99-ms", 783.6},
		{"BenchmarkIdleMemory", "pss-MiB", 17.97},
		{"BenchmarkIdleMemory", "processes", 7},
		{"BenchmarkColdStart20", "p50-ms", 5538.623746},
	} {
		if got := res[c.name][c.unit]; got != c.want {
			t.Errorf("%s %s = %v, want %v (all: %v)", c.name, c.unit, got, c.want, res)
		}
	}
}
