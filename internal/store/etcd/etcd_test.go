package etcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/store/etcd/etcdtest"
	"github.com/privlink/privlink/internal/store/storetest"
)

// open returns a store on endpoint under a prefix of its own.
func open(t testing.TB, endpoint string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := New(ctx, Config{Endpoints: []string{endpoint}, Prefix: etcdtest.Prefix(t)})
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

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEtcd(t *testing.T) {
	endpoint := etcdtest.Start(t)
	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return open(t, endpoint) })
	})
	t.Run("Prefix", func(t *testing.T) { testPrefix(t, endpoint) })
	t.Run("Compacted", func(t *testing.T) { testCompacted(t, endpoint) })
	t.Run("TxnRetry", func(t *testing.T) { testTxnRetry(t, endpoint) })
}

func rawClient(t *testing.T, endpoint string) *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// testPrefix checks that stores with different prefixes do not see each
// other's keys, and that keys are stored under the prefix.
func testPrefix(t *testing.T, endpoint string) {
	ctx := testContext(t)
	s1, s2 := open(t, endpoint), open(t, endpoint)
	if _, err := s1.Put(ctx, "k", []byte("one"), store.Any); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other prefix Get = %v; want ErrNotFound", err)
	}
	if kvs, _, err := s2.List(ctx, ""); err != nil || len(kvs) != 0 {
		t.Fatalf("other prefix List = %v, %v; want nothing", kvs, err)
	}
	kvs, _, err := s1.List(ctx, "")
	if err != nil || len(kvs) != 1 || kvs[0].Key != "k" {
		t.Fatalf("List = %v, %v; want k", kvs, err)
	}
	resp, err := rawClient(t, endpoint).Get(ctx, "", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var raw []string
	for _, kv := range resp.Kvs {
		raw = append(raw, string(kv.Key))
	}
	if !slices.ContainsFunc(raw, func(k string) bool { return strings.HasPrefix(k, "/test/") && strings.HasSuffix(k, "/k") }) ||
		slices.Contains(raw, "k") {
		t.Fatalf("raw keys %q; want k under the store's prefix", raw)
	}
}

// TestNoLeak checks that Close ends every watch goroutine.
func TestNoLeak(t *testing.T) {
	s := open(t, etcdtest.Start(t))
	ctx := testContext(t)
	for range 3 {
		if _, err := s.Watch(ctx, "", 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, fn := range []string{"etcd.(*Store).Watch.func", "etcd.(*Store).serveWatch(", "namespace.(*watcherPrefix).Watch.func"} {
		if n := goroutines(fn); n > 0 {
			t.Errorf("%d goroutines in %s after Close", n, fn)
		}
	}
}

// goroutines counts the goroutines with fn on their stack.
func goroutines(fn string) int {
	buf := make([]byte, 1<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

func testCompacted(t *testing.T, endpoint string) {
	ctx := testContext(t)
	s := open(t, endpoint)
	var revs []int64
	for i := range 3 {
		rev, err := s.Put(ctx, "k", []byte{byte('0' + i)}, store.Any)
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, rev)
	}
	if _, err := rawClient(t, endpoint).Compact(ctx, revs[1], clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Watch(ctx, "", revs[0]-1); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("Watch from before compaction = %v; want ErrCompacted", err)
	}
	ch, err := s.Watch(ctx, "", revs[1])
	if err != nil {
		t.Fatalf("Watch from compaction revision: %v", err)
	}
	if ev := <-ch; ev.KV.Revision != revs[2] {
		t.Fatalf("event at %d; want %d", ev.KV.Revision, revs[2])
	}
}

// testTxnRetry makes each kind of change a Txn must notice happen between
// fn's reads and its commit, and checks that fn runs again.
func testTxnRetry(t *testing.T, endpoint string) {
	ctx := testContext(t)
	s := open(t, endpoint)
	// More listed keys than one level of an etcd txn holds, so the
	// compares span nested levels.
	const n = 300
	_, err := s.Txn(ctx, func(tx store.Tx) error {
		for i := range n {
			if err := tx.Put(fmt.Sprintf("l/%03d", i), []byte("x")); err != nil {
				return err
			}
		}
		return tx.Put("g", []byte("x"))
	})
	if err != nil {
		t.Fatal(err)
	}
	changes := map[string]func() error{
		"delete listed key": func() error { return s.Delete(ctx, "l/299", store.Any) },
		"create in prefix":  func() error { _, err := s.Put(ctx, "l/999", nil, store.Any); return err },
		"update listed key": func() error { _, err := s.Put(ctx, "l/150", []byte("y"), store.Any); return err },
		"update read key":   func() error { _, err := s.Put(ctx, "g", []byte("y"), store.Any); return err },
		"create read key":   func() error { _, err := s.Put(ctx, "absent", nil, store.Any); return err },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			var runs atomic.Int32
			_, err := s.Txn(ctx, func(tx store.Tx) error {
				if _, err := tx.List("l/"); err != nil {
					return err
				}
				if _, err := tx.Get("g"); err != nil {
					return err
				}
				if _, err := tx.Get("absent"); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				if runs.Add(1) == 1 {
					if err := change(); err != nil {
						return err
					}
				}
				return tx.Put("out", []byte(name))
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := runs.Load(); got != 2 {
				t.Fatalf("fn ran %d times; want 2", got)
			}
		})
	}
}

func TestNewUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := New(ctx, Config{Endpoints: []string{"http://" + addr}, DialTimeout: 500 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatal("New with no server succeeded")
	}
	t.Logf("New: %v", err)
}

func BenchmarkStore(b *testing.B) {
	endpoint := etcdtest.Start(b)
	storetest.Bench(b, func(b *testing.B) store.Store { return open(b, endpoint) })
}
