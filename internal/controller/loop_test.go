package controller

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/store/bolt"
)

func openStore(t *testing.T) store.Store {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// world is what a test loop converges: the set of items it saw existing.
type world struct {
	mu    sync.Mutex
	have  map[string]string
	fails map[string]int
	seen  chan string
}

func TestLoopConvergesAndRetries(t *testing.T) {
	st := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := st.Put(ctx, "x/before", []byte("1"), store.Any); err != nil {
		t.Fatal(err)
	}
	w := &world{have: map[string]string{}, fails: map[string]int{"x/flaky": 2}, seen: make(chan string, 100)}
	l := &Loop{
		Name: "test", Prefixes: []string{"x/"}, Store: st, Log: slog.New(slog.DiscardHandler),
		Items: func(key string, _ []byte) []string { return []string{key} },
		Reconcile: func(ctx context.Context, item string) (time.Duration, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.fails[item] > 0 {
				w.fails[item]--
				return 0, errors.New("injected failure")
			}
			kv, err := st.Get(ctx, item)
			switch {
			case errors.Is(err, store.ErrNotFound):
				delete(w.have, item)
			case err != nil:
				return 0, err
			default:
				w.have[item] = string(kv.Value)
			}
			w.seen <- item
			return 0, nil
		},
	}
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()

	waitFor(t, w, "x/before", "1")
	if _, err := st.Put(ctx, "x/flaky", []byte("2"), store.Any); err != nil {
		t.Fatal(err)
	}
	waitFor(t, w, "x/flaky", "2") // after two failures
	if _, err := st.Put(ctx, "x/before", []byte("3"), store.Any); err != nil {
		t.Fatal(err)
	}
	waitFor(t, w, "x/before", "3")
	if err := st.Delete(ctx, "x/before", store.Any); err != nil {
		t.Fatal(err)
	}
	waitFor(t, w, "x/before", "")
	if _, err := st.Put(ctx, "y/other", []byte("4"), store.Any); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if _, ok := w.have["y/other"]; ok {
		t.Error("loop reconciled a key outside its prefixes")
	}
}

// waitFor waits until the loop's world has item at value ("" = absent).
func waitFor(t *testing.T, w *world, item, value string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		w.mu.Lock()
		v, ok := w.have[item]
		w.mu.Unlock()
		if (value == "" && !ok) || (ok && v == value) {
			return
		}
		select {
		case <-w.seen:
		case <-deadline:
			t.Fatalf("loop did not converge %s to %q (have %q)", item, value, v)
		}
	}
}

func TestQueueDeduplicatesAndRequeuesActive(t *testing.T) {
	q := newQueue()
	q.add("a", 0)
	q.add("a", 0)
	q.add("b", 0)
	it, _ := q.get()
	if it != "a" {
		t.Fatalf("first = %s", it)
	}
	q.add("a", 0) // while active: handed out again after done
	it, _ = q.get()
	if it != "b" {
		t.Fatalf("second = %s, want b (a is active)", it)
	}
	q.done("a")
	it, _ = q.get()
	if it != "a" {
		t.Fatalf("third = %s, want a again", it)
	}
	q.close()
	if _, ok := q.get(); ok {
		t.Fatal("get after close")
	}
}
