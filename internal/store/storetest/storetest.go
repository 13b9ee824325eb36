// Package storetest is the conformance suite of store.Store: every
// implementation runs Run in its tests, and Bench in its benchmarks.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/store"
)

// timeout bounds every wait of the suite, so a broken store fails instead
// of hanging. No assertion depends on it.
const timeout = 30 * time.Second

// Run runs the conformance suite. open must return a new, empty store for
// the test and close it in t.Cleanup (ignoring store.ErrClosed, since some
// tests close it themselves).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"GetPutDelete", testGetPutDelete},
		{"EmptyKey", testEmptyKey},
		{"PutExpect", testPutExpect},
		{"DeleteExpect", testDeleteExpect},
		{"List", testList},
		{"Revisions", testRevisions},
		{"Watch", testWatch},
		{"WatchTxn", testWatchTxn},
		{"WatchConcurrentWrites", testWatchConcurrentWrites},
		{"WatchCancel", testWatchCancel},
		{"TxnAtomic", testTxnAtomic},
		{"TxnReadYourWrites", testTxnReadYourWrites},
		{"TxnLarge", testTxnLarge},
		{"TxnCounter", testTxnCounter},
		{"TxnAllocate", testTxnAllocate},
		{"CanceledContext", testCanceledContext},
		{"Close", testClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

func mustPut(t *testing.T, s store.Store, key, value string) int64 {
	t.Helper()
	rev, err := s.Put(testContext(t), key, []byte(value), store.Any)
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return rev
}

func mustGet(t *testing.T, s store.Store, key string) store.KV {
	t.Helper()
	kv, err := s.Get(testContext(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return kv
}

func mustList(t *testing.T, s store.Store, prefix string) ([]store.KV, int64) {
	t.Helper()
	kvs, rev, err := s.List(testContext(t), prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return kvs, rev
}

func wantNotFound(t *testing.T, s store.Store, key string) {
	t.Helper()
	if kv, err := s.Get(testContext(t), key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q) = %+v, %v; want ErrNotFound", key, kv, err)
	}
}

func wantValue(t *testing.T, s store.Store, key, value string) store.KV {
	t.Helper()
	kv := mustGet(t, s, key)
	if string(kv.Value) != value {
		t.Fatalf("Get(%q) = %q; want %q", key, kv.Value, value)
	}
	return kv
}

func keys(kvs []store.KV) []string {
	var ks []string
	for _, kv := range kvs {
		ks = append(ks, kv.Key)
	}
	return ks
}

func testGetPutDelete(t *testing.T, s store.Store) {
	ctx := testContext(t)
	wantNotFound(t, s, "k")
	r1 := mustPut(t, s, "k", "v1")
	if r1 <= 0 {
		t.Fatalf("Put revision = %d; want > 0", r1)
	}
	if kv := wantValue(t, s, "k", "v1"); kv.Key != "k" || kv.Revision != r1 {
		t.Fatalf("Get = %+v; want key k at revision %d", kv, r1)
	}
	r2 := mustPut(t, s, "k", "v2")
	if r2 <= r1 {
		t.Fatalf("second Put revision %d <= first %d", r2, r1)
	}
	if kv := wantValue(t, s, "k", "v2"); kv.Revision != r2 {
		t.Fatalf("Get revision = %d; want %d", kv.Revision, r2)
	}
	mustPut(t, s, "empty", "")
	wantValue(t, s, "empty", "")

	if err := s.Delete(ctx, "k", store.Any); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantNotFound(t, s, "k")
	if err := s.Delete(ctx, "k", store.Any); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delete of a missing key = %v; want ErrNotFound", err)
	}
}

func testEmptyKey(t *testing.T, s store.Store) {
	ctx := testContext(t)
	if _, err := s.Put(ctx, "", []byte("v"), store.Any); err == nil {
		t.Error("Put of the empty key succeeded")
	}
	if _, err := s.Get(ctx, ""); err == nil {
		t.Error("Get of the empty key succeeded")
	}
	if err := s.Delete(ctx, "", store.Any); err == nil {
		t.Error("Delete of the empty key succeeded")
	}
}

func testPutExpect(t *testing.T, s store.Store) {
	ctx := testContext(t)
	r1, err := s.Put(ctx, "k", []byte("v1"), 0)
	if err != nil {
		t.Fatalf("Put(expect 0) of a new key: %v", err)
	}
	if _, err := s.Put(ctx, "k", []byte("x"), 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Put(expect 0) of an existing key = %v; want ErrConflict", err)
	}
	r2, err := s.Put(ctx, "k", []byte("v2"), r1)
	if err != nil {
		t.Fatalf("Put(expect current): %v", err)
	}
	if r2 <= r1 {
		t.Fatalf("revision %d <= %d", r2, r1)
	}
	if _, err := s.Put(ctx, "k", []byte("x"), r1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Put(expect stale) = %v; want ErrConflict", err)
	}
	if kv := wantValue(t, s, "k", "v2"); kv.Revision != r2 {
		t.Fatalf("revision after conflicts = %d; want %d", kv.Revision, r2)
	}
	if _, err := s.Put(ctx, "missing", []byte("x"), r2); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Put(expect %d) of a missing key = %v; want ErrConflict", r2, err)
	}
	wantNotFound(t, s, "missing")
	if _, err := s.Put(ctx, "k", []byte("v3"), store.Any); err != nil {
		t.Fatalf("Put(Any): %v", err)
	}
	wantValue(t, s, "k", "v3")
}

func testDeleteExpect(t *testing.T, s store.Store) {
	ctx := testContext(t)
	r1 := mustPut(t, s, "k", "v1")
	r2 := mustPut(t, s, "k", "v2")
	if err := s.Delete(ctx, "k", r1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Delete(expect stale) = %v; want ErrConflict", err)
	}
	if err := s.Delete(ctx, "k", 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Delete(expect 0) of an existing key = %v; want ErrConflict", err)
	}
	wantValue(t, s, "k", "v2")
	if err := s.Delete(ctx, "k", r2); err != nil {
		t.Fatalf("Delete(expect current): %v", err)
	}
	wantNotFound(t, s, "k")
	if err := s.Delete(ctx, "k", r2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delete(expect %d) of a missing key = %v; want ErrNotFound", r2, err)
	}
}

func testList(t *testing.T, s store.Store) {
	var last int64
	for _, k := range []string{"a/2", "ab/1", "a/10", "a", "b/1", "a/1", "a/1/x"} {
		last = mustPut(t, s, k, "value of "+k)
	}
	kvs, rev := mustList(t, s, "a/")
	if want := []string{"a/1", "a/1/x", "a/10", "a/2"}; !slices.Equal(keys(kvs), want) {
		t.Fatalf("List(a/) = %q; want %q", keys(kvs), want)
	}
	for _, kv := range kvs {
		if string(kv.Value) != "value of "+kv.Key || kv.Revision <= 0 || kv.Revision > rev {
			t.Errorf("List(a/) item %+v: wrong value or revision (list revision %d)", kv, rev)
		}
	}
	if rev < last {
		t.Errorf("List revision %d < last write %d", rev, last)
	}
	if kvs, _ := mustList(t, s, "a"); len(kvs) != 6 {
		t.Errorf("List(a) = %q; want 6 keys", keys(kvs))
	}
	if kvs, _ := mustList(t, s, ""); len(kvs) != 7 {
		t.Errorf("List() = %q; want all 7 keys", keys(kvs))
	}
	if kvs, rev := mustList(t, s, "none/"); len(kvs) != 0 || rev < last {
		t.Errorf("List(none/) = %q at %d; want nothing at >= %d", keys(kvs), rev, last)
	}
}

func testRevisions(t *testing.T, s store.Store) {
	ctx := testContext(t)
	prev := int64(0)
	next := func(what string, rev int64) {
		t.Helper()
		if rev <= prev {
			t.Fatalf("%s: revision %d <= previous %d", what, rev, prev)
		}
		prev = rev
	}
	next("put", mustPut(t, s, "x", "1"))
	next("put other", mustPut(t, s, "y", "1"))
	if err := s.Delete(ctx, "y", store.Any); err != nil {
		t.Fatal(err)
	}
	_, rev := mustList(t, s, "")
	next("list after delete", rev)
	rev, err := s.Txn(ctx, func(tx store.Tx) error { return tx.Put("z", []byte("1")) })
	if err != nil {
		t.Fatal(err)
	}
	next("txn", rev)
	if kv := mustGet(t, s, "z"); kv.Revision != rev {
		t.Fatalf("key written by txn at revision %d; txn returned %d", kv.Revision, rev)
	}

	// A transaction that writes nothing returns the current revision.
	rev, err = s.Txn(ctx, func(tx store.Tx) error {
		_, err := tx.Get("x")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if rev != prev {
		t.Fatalf("read-only txn revision = %d; want current %d", rev, prev)
	}
	next("put after read-only txn", mustPut(t, s, "x", "2"))
}

// recv reads n events from ch.
func recv(t *testing.T, ch <-chan store.Event, n int) []store.Event {
	t.Helper()
	var evs []store.Event
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for len(evs) < n {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("watch channel closed after %d of %d events: %v", len(evs), n, evs)
			}
			evs = append(evs, ev)
		case <-timer.C:
			t.Fatalf("timed out after %d of %d events: %v", len(evs), n, evs)
		}
	}
	return evs
}

// wantClosed waits for ch to close, draining any events.
func wantClosed(t *testing.T, ch <-chan store.Event) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timer.C:
			t.Fatal("watch channel not closed")
		}
	}
}

type wantEvent struct {
	typ   store.EventType
	key   string
	value string
}

func checkEvents(t *testing.T, got []store.Event, want []wantEvent, after int64) {
	t.Helper()
	prev := after
	for i, ev := range got {
		w := want[i]
		if ev.Type != w.typ || ev.KV.Key != w.key || string(ev.KV.Value) != w.value {
			t.Errorf("event %d = %v %q=%q; want %v %q=%q", i, ev.Type, ev.KV.Key, ev.KV.Value, w.typ, w.key, w.value)
		}
		if ev.Type == store.EventDelete && ev.KV.Value != nil {
			t.Errorf("event %d: delete with value %q", i, ev.KV.Value)
		}
		if ev.KV.Revision <= prev {
			t.Errorf("event %d: revision %d not after %d", i, ev.KV.Revision, prev)
		}
		prev = ev.KV.Revision
	}
}

func testWatch(t *testing.T, s store.Store) {
	ctx := testContext(t)
	_, start := mustList(t, s, "a/")
	r1 := mustPut(t, s, "a/1", "v1")
	mustPut(t, s, "b/1", "other")
	mustPut(t, s, "ab/1", "other")
	r2 := mustPut(t, s, "a/2", "v2")
	if err := s.Delete(ctx, "a/1", store.Any); err != nil {
		t.Fatal(err)
	}

	ch, err := s.Watch(ctx, "a/", start)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	// History, then live events.
	evs := recv(t, ch, 3)
	checkEvents(t, evs, []wantEvent{
		{store.EventPut, "a/1", "v1"},
		{store.EventPut, "a/2", "v2"},
		{store.EventDelete, "a/1", ""},
	}, start)
	if evs[0].KV.Revision != r1 || evs[1].KV.Revision != r2 {
		t.Errorf("history revisions %d, %d; want %d, %d", evs[0].KV.Revision, evs[1].KV.Revision, r1, r2)
	}
	mustPut(t, s, "b/2", "other")
	r3 := mustPut(t, s, "a/3", "v3")
	if err := s.Delete(ctx, "a/2", store.Any); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "a/3", "v3b")
	live := recv(t, ch, 3)
	checkEvents(t, live, []wantEvent{
		{store.EventPut, "a/3", "v3"},
		{store.EventDelete, "a/2", ""},
		{store.EventPut, "a/3", "v3b"},
	}, evs[2].KV.Revision)
	if live[0].KV.Revision != r3 {
		t.Errorf("live revision %d; want %d", live[0].KV.Revision, r3)
	}

	// A watch from a later revision sees only what came after it.
	ch2, err := s.Watch(ctx, "a/", r2)
	if err != nil {
		t.Fatalf("Watch from %d: %v", r2, err)
	}
	checkEvents(t, recv(t, ch2, 4), []wantEvent{
		{store.EventDelete, "a/1", ""},
		{store.EventPut, "a/3", "v3"},
		{store.EventDelete, "a/2", ""},
		{store.EventPut, "a/3", "v3b"},
	}, r2)
}

func testWatchTxn(t *testing.T, s store.Store) {
	ctx := testContext(t)
	mustPut(t, s, "w/gone", "x")
	_, start := mustList(t, s, "w/")
	ch, err := s.Watch(ctx, "w/", start)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := s.Txn(ctx, func(tx store.Tx) error {
		if err := tx.Put("w/b", []byte("b")); err != nil {
			return err
		}
		if err := tx.Put("w/a", []byte("a")); err != nil {
			return err
		}
		if err := tx.Put("w/tmp", []byte("t")); err != nil {
			return err
		}
		if err := tx.Delete("w/tmp"); err != nil {
			return err
		}
		return tx.Delete("w/gone")
	})
	if err != nil {
		t.Fatal(err)
	}
	evs := recv(t, ch, 3)
	got := map[string]store.Event{}
	for _, ev := range evs {
		if ev.KV.Revision != rev {
			t.Errorf("event %v %q at revision %d; want the txn's %d", ev.Type, ev.KV.Key, ev.KV.Revision, rev)
		}
		got[ev.KV.Key] = ev
	}
	if got["w/a"].Type != store.EventPut || string(got["w/a"].KV.Value) != "a" ||
		got["w/b"].Type != store.EventPut || string(got["w/b"].KV.Value) != "b" ||
		got["w/gone"].Type != store.EventDelete {
		t.Errorf("txn events = %v; want put w/a, put w/b, delete w/gone", evs)
	}
	// w/tmp was created and deleted inside the txn: no event for it.
	mustPut(t, s, "w/next", "n")
	if ev := recv(t, ch, 1)[0]; ev.KV.Key != "w/next" {
		t.Errorf("event after txn = %v %q; want put w/next", ev.Type, ev.KV.Key)
	}
}

func testWatchConcurrentWrites(t *testing.T, s store.Store) {
	ctx := testContext(t)
	const writers, each = 4, 25
	_, start := mustList(t, s, "c/")
	ch, err := s.Watch(ctx, "c/", start)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := s.Put(ctx, fmt.Sprintf("c/%d/%d", w, i), []byte("x"), store.Any); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	evs := recv(t, ch, writers*each)
	wg.Wait()
	prev := start
	next := map[int]int{}
	for _, ev := range evs {
		if ev.KV.Revision <= prev {
			t.Fatalf("event %q at revision %d after %d: out of order", ev.KV.Key, ev.KV.Revision, prev)
		}
		prev = ev.KV.Revision
		var w, i int
		if _, err := fmt.Sscanf(ev.KV.Key, "c/%d/%d", &w, &i); err != nil || next[w] != i {
			t.Fatalf("event %q: want c/%d/%d next", ev.KV.Key, w, next[w])
		}
		next[w]++
	}
}

func testWatchCancel(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(testContext(t))
	_, rev := mustList(t, s, "")
	ch, err := s.Watch(ctx, "", rev)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", "v")
	recv(t, ch, 1)
	cancel()
	wantClosed(t, ch)
	if _, err := s.Watch(ctx, "", rev); err == nil {
		t.Error("Watch with a canceled context succeeded")
	}
}

var errAbort = errors.New("abort")

func testTxnAtomic(t *testing.T, s store.Store) {
	ctx := testContext(t)
	mustPut(t, s, "keep", "v")
	_, before := mustList(t, s, "")
	_, err := s.Txn(ctx, func(tx store.Tx) error {
		if err := tx.Put("new1", []byte("x")); err != nil {
			return err
		}
		if err := tx.Put("keep", []byte("changed")); err != nil {
			return err
		}
		if err := tx.Delete("keep"); err != nil {
			return err
		}
		if err := tx.Put("new2", []byte("x")); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", errAbort)
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("Txn = %v; want fn's error", err)
	}
	wantNotFound(t, s, "new1")
	wantNotFound(t, s, "new2")
	wantValue(t, s, "keep", "v")
	if _, rev := mustList(t, s, ""); rev != before {
		t.Errorf("revision moved from %d to %d after a failed txn", before, rev)
	}
	// An error from a Tx read fails the txn as fn returns it.
	_, err = s.Txn(ctx, func(tx store.Tx) error {
		if err := tx.Put("new1", []byte("x")); err != nil {
			return err
		}
		_, err := tx.Get("missing")
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Txn = %v; want ErrNotFound", err)
	}
	wantNotFound(t, s, "new1")
}

func testTxnReadYourWrites(t *testing.T, s store.Store) {
	ctx := testContext(t)
	r1 := mustPut(t, s, "p/1", "one")
	mustPut(t, s, "p/2", "two")
	r3 := mustPut(t, s, "p/3", "three")
	mustPut(t, s, "q/1", "other")

	rev, err := s.Txn(ctx, func(tx store.Tx) error {
		if kv, err := tx.Get("p/1"); err != nil || string(kv.Value) != "one" || kv.Revision != r1 {
			return fmt.Errorf("Get(p/1) before writing = %+v, %v; want one at %d", kv, err, r1)
		}
		if err := tx.Put("p/4", []byte("four")); err != nil {
			return err
		}
		if err := tx.Put("p/1", []byte("uno")); err != nil {
			return err
		}
		if err := tx.Delete("p/2"); err != nil {
			return err
		}
		if err := tx.Put("q/2", []byte("other")); err != nil {
			return err
		}
		if err := tx.Put("p/5", []byte("tmp")); err != nil {
			return err
		}
		if err := tx.Delete("p/5"); err != nil {
			return err
		}
		if err := tx.Delete("p/5"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("second Delete(p/5) = %v; want ErrNotFound", err)
		}
		if err := tx.Delete("p/missing"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("Delete(p/missing) = %v; want ErrNotFound", err)
		}
		if kv, err := tx.Get("p/4"); err != nil || string(kv.Value) != "four" || kv.Revision != 0 {
			return fmt.Errorf("Get(p/4) = %+v, %v; want four at revision 0", kv, err)
		}
		if _, err := tx.Get("p/2"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("Get(p/2) after Delete = %v; want ErrNotFound", err)
		}
		kvs, err := tx.List("p/")
		if err != nil {
			return err
		}
		want := []store.KV{
			{Key: "p/1", Value: []byte("uno")},
			{Key: "p/3", Value: []byte("three"), Revision: r3},
			{Key: "p/4", Value: []byte("four")},
		}
		if !slices.EqualFunc(kvs, want, func(a, b store.KV) bool {
			return a.Key == b.Key && bytes.Equal(a.Value, b.Value) && a.Revision == b.Revision
		}) {
			return fmt.Errorf("List(p/) = %+v; want %+v", kvs, want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	kvs, _ := mustList(t, s, "p/")
	if got, want := keys(kvs), []string{"p/1", "p/3", "p/4"}; !slices.Equal(got, want) {
		t.Fatalf("after commit List(p/) = %q; want %q", got, want)
	}
	for _, kv := range kvs {
		if kv.Key != "p/3" && kv.Revision != rev {
			t.Errorf("%s at revision %d; want the txn's %d", kv.Key, kv.Revision, rev)
		}
	}
	wantValue(t, s, "p/1", "uno")
	wantValue(t, s, "q/2", "other")
}

// testTxnLarge reads and writes more keys in one txn than etcd allows by
// default (--max-txn-ops 128): privlink's etcd must run with a higher limit.
func testTxnLarge(t *testing.T, s store.Store) {
	ctx := testContext(t)
	const n = 300
	_, err := s.Txn(ctx, func(tx store.Tx) error {
		for i := range n {
			if err := tx.Put(fmt.Sprintf("big/%03d", i), []byte("x")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Txn writing %d keys: %v", n, err)
	}
	_, err = s.Txn(ctx, func(tx store.Tx) error {
		kvs, err := tx.List("big/")
		if err != nil {
			return err
		}
		if len(kvs) != n {
			return fmt.Errorf("tx.List = %d keys; want %d", len(kvs), n)
		}
		for _, kv := range kvs[:n/2] {
			if err := tx.Delete(kv.Key); err != nil {
				return err
			}
		}
		return tx.Put("big/sum", []byte(strconv.Itoa(len(kvs))))
	})
	if err != nil {
		t.Fatalf("Txn listing %d keys: %v", n, err)
	}
	if kvs, _ := mustList(t, s, "big/"); len(kvs) != n/2+1 {
		t.Fatalf("List = %d keys; want %d", len(kvs), n/2+1)
	}
}

// incr adds 1 to the integer under key, in a transaction.
func incr(ctx context.Context, s store.Store, key string) error {
	_, err := s.Txn(ctx, func(tx store.Tx) error {
		n := 0
		kv, err := tx.Get(key)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		default:
			if n, err = strconv.Atoi(string(kv.Value)); err != nil {
				return err
			}
		}
		return tx.Put(key, []byte(strconv.Itoa(n+1)))
	})
	return err
}

func testTxnCounter(t *testing.T, s store.Store) {
	ctx := testContext(t)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				if err := incr(ctx, s, "counter"); err != nil {
					t.Errorf("increment: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	wantValue(t, s, "counter", strconv.Itoa(workers*each))
}

// allocate takes the lowest free number under prefix, in a transaction.
func allocate(ctx context.Context, s store.Store, prefix, owner string) (int, error) {
	var got int
	_, err := s.Txn(ctx, func(tx store.Tx) error {
		kvs, err := tx.List(prefix)
		if err != nil {
			return err
		}
		used := map[int]bool{}
		for _, kv := range kvs {
			n, err := strconv.Atoi(strings.TrimPrefix(kv.Key, prefix))
			if err != nil {
				return err
			}
			used[n] = true
		}
		got = 0
		for used[got] {
			got++
		}
		return tx.Put(fmt.Sprintf("%s%04d", prefix, got), []byte(owner))
	})
	return got, err
}

func testTxnAllocate(t *testing.T, s store.Store) {
	ctx := testContext(t)
	const workers, each = 8, 10
	// Pre-fill with a hole, and a neighbour prefix that must not count.
	mustPut(t, s, "ip/0001", "pre")
	mustPut(t, s, "ipv6/0000", "other")

	var wg sync.WaitGroup
	got := make([][]int, workers)
	for w := range workers {
		wg.Go(func() {
			for range each {
				n, err := allocate(ctx, s, "ip/", strconv.Itoa(w))
				if err != nil {
					t.Errorf("allocate: %v", err)
					return
				}
				got[w] = append(got[w], n)
			}
		})
	}
	wg.Wait()
	owner := map[int]int{}
	for w, ns := range got {
		for _, n := range ns {
			if prev, dup := owner[n]; dup {
				t.Errorf("%d allocated to both %d and %d", n, prev, w)
			}
			owner[n] = w
			if kv := mustGet(t, s, fmt.Sprintf("ip/%04d", n)); string(kv.Value) != strconv.Itoa(w) {
				t.Errorf("ip/%04d owned by %q; allocated to %d", n, kv.Value, w)
			}
		}
	}
	kvs, _ := mustList(t, s, "ip/")
	if len(kvs) != workers*each+1 {
		t.Fatalf("List(ip/) = %d keys; want %d", len(kvs), workers*each+1)
	}
	for i, kv := range kvs {
		if want := fmt.Sprintf("ip/%04d", i); kv.Key != want {
			t.Fatalf("allocations not dense: key %d is %q; want %q", i, kv.Key, want)
		}
	}
}

func testCanceledContext(t *testing.T, s store.Store) {
	mustPut(t, s, "k", "v")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get = %v; want context.Canceled", err)
	}
	if _, err := s.Put(ctx, "k", []byte("x"), store.Any); !errors.Is(err, context.Canceled) {
		t.Errorf("Put = %v; want context.Canceled", err)
	}
	if _, err := s.Txn(ctx, func(tx store.Tx) error { return tx.Put("k", []byte("x")) }); !errors.Is(err, context.Canceled) {
		t.Errorf("Txn = %v; want context.Canceled", err)
	}
	wantValue(t, s, "k", "v")
}

func testClose(t *testing.T, s store.Store) {
	ctx := testContext(t)
	rev := mustPut(t, s, "k", "v")
	ch, err := s.Watch(ctx, "", rev)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantClosed(t, ch)
	if err := s.Close(); !errors.Is(err, store.ErrClosed) {
		t.Errorf("second Close = %v; want ErrClosed", err)
	}
	checks := map[string]error{}
	_, checks["Get"] = s.Get(ctx, "k")
	_, checks["Put"] = s.Put(ctx, "k", []byte("x"), store.Any)
	checks["Delete"] = s.Delete(ctx, "k", store.Any)
	_, _, checks["List"] = s.List(ctx, "")
	_, checks["Watch"] = s.Watch(ctx, "", rev)
	_, checks["Txn"] = s.Txn(ctx, func(tx store.Tx) error { return nil })
	for op, err := range checks {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close = %v; want ErrClosed", op, err)
		}
	}
}

// Bench runs benchmarks of Get, Put and Txn. open must return a new,
// empty store and close it in b.Cleanup.
func Bench(b *testing.B, open func(b *testing.B) store.Store) {
	ctx := context.Background()
	value := bytes.Repeat([]byte("v"), 256)
	b.Run("Get", func(b *testing.B) {
		s := open(b)
		if _, err := s.Put(ctx, "bench/key", value, store.Any); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := s.Get(ctx, "bench/key"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Put", func(b *testing.B) {
		s := open(b)
		i := 0
		for b.Loop() {
			if _, err := s.Put(ctx, "bench/"+strconv.Itoa(i%100), value, store.Any); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("Txn", func(b *testing.B) {
		s := open(b)
		for b.Loop() {
			if err := incr(ctx, s, "bench/counter"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
