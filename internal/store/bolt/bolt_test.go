package bolt

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	bberrors "go.etcd.io/bbolt/errors"

	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/store/storetest"
)

func open(t testing.TB, path string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func tempPath(t testing.TB) string { return filepath.Join(t.TempDir(), "store.db") }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, tempPath(t)) })
}

func TestPersistence(t *testing.T) {
	ctx := testContext(t)
	path := tempPath(t)
	s := open(t, path)
	r1, err := s.Put(ctx, "a", []byte("1"), store.Any)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "b", []byte("2"), store.Any); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "b", store.Any); err != nil {
		t.Fatal(err)
	}
	_, last, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path)
	kv, err := s.Get(ctx, "a")
	if err != nil || string(kv.Value) != "1" || kv.Revision != r1 {
		t.Fatalf("after reopen Get(a) = %+v, %v; want 1 at %d", kv, err, r1)
	}
	if _, err := s.Get(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after reopen Get(b) = %v; want ErrNotFound", err)
	}
	kvs, rev, err := s.List(ctx, "")
	if err != nil || len(kvs) != 1 || rev != last {
		t.Fatalf("after reopen List = %v at %d, %v; want 1 key at %d", kvs, rev, err, last)
	}
	// History from before the reopen is gone; from now on it is kept.
	if _, err := s.Watch(ctx, "", r1); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("Watch from before reopen = %v; want ErrCompacted", err)
	}
	ch, err := s.Watch(ctx, "", last)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.Put(ctx, "c", []byte("3"), store.Any)
	if err != nil {
		t.Fatal(err)
	}
	if r2 <= last {
		t.Fatalf("revision after reopen %d <= %d", r2, last)
	}
	if ev := <-ch; ev.KV.Key != "c" || ev.KV.Revision != r2 {
		t.Fatalf("event = %+v; want put c at %d", ev, r2)
	}
}

func TestLocked(t *testing.T) {
	path := tempPath(t)
	open(t, path)
	start := time.Now()
	s, err := Open(path, WithLockTimeout(100*time.Millisecond))
	if err == nil {
		s.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if !errors.Is(err, bberrors.ErrTimeout) {
		t.Fatalf("second Open = %v; want a lock timeout", err)
	}
	t.Logf("second Open failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
}

func TestHistoryCompacted(t *testing.T) {
	ctx := testContext(t)
	s := open(t, tempPath(t), WithHistory(4))
	var revs []int64
	for range 10 {
		rev, err := s.Put(ctx, "k", []byte("v"), store.Any)
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, rev)
	}
	if _, err := s.Watch(ctx, "", 0); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("Watch(0) = %v; want ErrCompacted", err)
	}
	ch, err := s.Watch(ctx, "", revs[6]) // the last 4 events are kept
	if err != nil {
		t.Fatalf("Watch(%d): %v", revs[6], err)
	}
	for _, want := range revs[7:] {
		if ev := <-ch; ev.KV.Revision != want {
			t.Fatalf("event at %d; want %d", ev.KV.Revision, want)
		}
	}
}

// TestSlowWatcher checks that writers never wait for a watcher that does
// not read, and that such a watcher's channel closes once the history
// moves past it.
func TestSlowWatcher(t *testing.T) {
	ctx := testContext(t)
	s := open(t, tempPath(t), WithHistory(8))
	ch, err := s.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	const writes = 100
	for range writes {
		if _, err := s.Put(ctx, "k", []byte("v"), store.Any); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for range ch {
		n++
	}
	if n >= writes {
		t.Fatalf("slow watcher got all %d events; want its channel closed early", n)
	}
}

// TestNoLeak checks that Close ends every watch goroutine.
func TestNoLeak(t *testing.T) {
	s := open(t, tempPath(t))
	ctx := testContext(t)
	for range 3 {
		if _, err := s.Watch(ctx, "", 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "bolt.(*Store).serveWatch(") || strings.Contains(stacks, "bolt.(*Store).Watch.func") {
		t.Errorf("watch goroutines left after Close:\n%s", stacks)
	}
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store { return open(b, tempPath(b)) })
}
