package lat

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i))
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0, 1}, {0.5, 50}, {0.99, 99}, {1, 100}} {
		if got := Quantile(ds, c.q); got != c.want {
			t.Errorf("Quantile(1..100, %v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := Quantile(nil, 0.5); got != 0 {
		t.Errorf("Quantile(nil) = %v", got)
	}
}

func TestMedian(t *testing.T) {
	if got := Median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("Median(3,1,2) = %v", got)
	}
	if got := Median([]time.Duration{4, 1, 3, 2}); got != 2 {
		t.Errorf("Median(4,1,3,2) = %v (integer mean of 2 and 3)", got)
	}
	xs := []float64{3, 1, 2}
	Median(xs)
	if xs[0] != 3 {
		t.Errorf("Median sorted its argument: %v", xs)
	}
}

func TestDriveOps(t *testing.T) {
	var n atomic.Int64
	seen := make([]atomic.Bool, 50)
	r, err := Drive(context.Background(), Load{Clients: 4, Ops: 50}, func(_ context.Context, client, seq int) error {
		if client < 0 || client >= 4 {
			t.Errorf("client %d", client)
		}
		if seen[seq].Swap(true) {
			t.Errorf("seq %d twice", seq)
		}
		n.Add(1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n.Load() != 50 || len(r.Lat) != 50 {
		t.Errorf("ran %d operations, recorded %d; want 50", n.Load(), len(r.Lat))
	}
}

func TestDriveError(t *testing.T) {
	boom := errors.New("boom")
	_, err := Drive(context.Background(), Load{Clients: 2, Duration: time.Minute}, func(_ context.Context, _, seq int) error {
		if seq == 10 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("Drive = %v, want %v", err, boom)
	}
}

func TestOfFields(t *testing.T) {
	type s struct {
		d time.Duration
		f float64
	}
	xs := []s{{3, 30}, {1, 10}, {2, 20}}
	if got := QuantileOf(xs, func(x s) time.Duration { return x.d }, 1); got != 3 {
		t.Errorf("QuantileOf max = %v, want 3", got)
	}
	if got := MedianOf(xs, func(x s) float64 { return x.f }); got != 20 {
		t.Errorf("MedianOf = %v, want 20", got)
	}
	if xs[0].d != 3 {
		t.Errorf("QuantileOf reordered its argument: %v", xs)
	}
}
