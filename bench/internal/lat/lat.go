// Package lat drives closed-loop load for the benchmark programs and
// summarises what it measured: rate, latency quantiles, and medians over
// repeated rounds.
package lat

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Load says how much load Drive applies: Clients goroutines, each issuing
// one operation after the other, until Ops operations have been issued
// in all or, if Ops is 0, until Duration has passed.
type Load struct {
	Clients  int
	Ops      int
	Duration time.Duration
}

// Run is the result of one measurement.
type Run struct {
	// Elapsed is the wall time from the first operation's start to the
	// last one's end.
	Elapsed time.Duration
	// Lat holds every operation's latency, sorted.
	Lat []time.Duration
}

// Drive runs op under load l and returns what it measured. op gets the
// operation's sequence number and the client's index. The first error
// stops every client and is returned.
func Drive(ctx context.Context, l Load, op func(ctx context.Context, client, seq int) error) (Run, error) {
	if l.Clients < 1 {
		l.Clients = 1
	}
	if l.Ops <= 0 && l.Duration <= 0 {
		return Run{}, fmt.Errorf("lat: load without Ops or Duration")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		seq   atomic.Int64
		wg    sync.WaitGroup
		per   = make([][]time.Duration, l.Clients)
		start = time.Now()
		end   = start.Add(l.Duration)
	)
	for c := range l.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(seq.Add(1) - 1)
				if l.Ops > 0 && i >= l.Ops {
					return
				}
				t0 := time.Now()
				if l.Ops <= 0 && !t0.Before(end) {
					return
				}
				if err := op(ctx, c, i); err != nil {
					cancel(err)
					return
				}
				per[c] = append(per[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return Run{}, err
	}
	var all []time.Duration
	for _, p := range per {
		all = append(all, p...)
	}
	slices.Sort(all)
	return Run{Elapsed: elapsed, Lat: all}, nil
}

// Rate is operations per second.
func (r Run) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(len(r.Lat)) / r.Elapsed.Seconds()
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of the latencies, by the
// nearest-rank method.
func (r Run) Quantile(q float64) time.Duration {
	return Quantile(r.Lat, q)
}

// Quantile returns the q-quantile of sorted, by the nearest-rank method
// (0 when sorted is empty).
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Median returns the median of xs (the mean of the middle two when their
// number is even; 0 when empty).
func Median[T ~int64 | ~float64](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Round renders d with a precision fit for a table: microseconds below a
// millisecond, tens of microseconds below a second, milliseconds above.
func Round(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

// QuantileOf returns the q-quantile (nearest rank) of get over xs: the
// quantile of one field of a benchmark's samples.
func QuantileOf[T any](xs []T, get func(T) time.Duration, q float64) time.Duration {
	ds := make([]time.Duration, len(xs))
	for i, x := range xs {
		ds[i] = get(x)
	}
	slices.Sort(ds)
	return Quantile(ds, q)
}

// MedianOf returns the median of get over xs (see Median).
func MedianOf[T any, V ~int64 | ~float64](xs []T, get func(T) V) V {
	vs := make([]V, len(xs))
	for i, x := range xs {
		vs[i] = get(x)
	}
	return Median(vs)
}
