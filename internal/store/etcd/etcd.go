// Package etcd implements store.Store on an etcd v3 cluster, so that
// several privlinkd nodes share one state.
//
// Every key lives under Config.Prefix (the client's namespace wrappers add
// and strip it), so several daemons or test runs can share one cluster.
// Revisions are etcd's own: a KV's Revision is its ModRevision, and List
// and Txn report the store revision of the response header.
//
// Txn is optimistic: fn reads through a snapshot and buffers its writes;
// the commit is one etcd transaction that checks nothing fn read has
// changed since the snapshot, and fn runs again if something did.
package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/namespace"
	"go.uber.org/zap"

	"github.com/privlink/privlink/internal/store"
)

// Defaults for Config.
const (
	DefaultDialTimeout  = 5 * time.Second
	DefaultWatchBacklog = 10000
)

const (
	// txnAttempts bounds how often Txn runs fn before giving up with
	// store.ErrConflict.
	txnAttempts = 32
)

// Config says how to reach etcd.
type Config struct {
	// Endpoints are the client URLs of the cluster, e.g.
	// "http://127.0.0.1:2379".
	Endpoints []string
	// Prefix namespaces every key, e.g. "/privlink/". Keys returned by the
	// store have it stripped.
	Prefix string
	// DialTimeout bounds connecting and the first request made by New
	// (default DefaultDialTimeout).
	DialTimeout time.Duration
	// Username and Password authenticate to etcd, if set.
	Username, Password string
	// TLS, if set, is used to connect to https endpoints.
	TLS *tls.Config
	// WatchBacklog is how many events a watch buffers for a slow consumer
	// before closing its channel (default DefaultWatchBacklog).
	WatchBacklog int
}

// Store is a store.Store on etcd. It is safe for concurrent use.
type Store struct {
	cli     *clientv3.Client
	kv      clientv3.KV      // namespaced under Config.Prefix
	watcher clientv3.Watcher // namespaced under Config.Prefix
	backlog int

	closing chan struct{} // closed by Close
	wg      sync.WaitGroup
	mu      sync.Mutex
	closed  bool
}

var _ store.Store = (*Store)(nil)

// New connects to etcd and checks that it answers within the dial
// timeout.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.WatchBacklog <= 0 {
		cfg.WatchBacklog = DefaultWatchBacklog
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		Username:    cfg.Username,
		Password:    cfg.Password,
		TLS:         cfg.TLS,
		Logger:      zap.NewNop(), // failures surface as errors of the calls
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: connect %v: %w", cfg.Endpoints, err)
	}
	s := &Store{
		cli:     cli,
		kv:      namespace.NewKV(cli.KV, cfg.Prefix),
		watcher: namespace.NewWatcher(cli.Watcher, cfg.Prefix),
		backlog: cfg.WatchBacklog,
		closing: make(chan struct{}),
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := s.kv.Get(pctx, "", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		_ = s.watcher.Close()
		_ = cli.Close()
		return nil, fmt.Errorf("etcd: connect %v: %w", cfg.Endpoints, err)
	}
	return s, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := s.checkKey(ctx, key); err != nil {
		return store.KV{}, fmt.Errorf("etcd: get %q: %w", key, err)
	}
	resp, err := s.kv.Get(ctx, key)
	if err != nil {
		return store.KV{}, fmt.Errorf("etcd: get %q: %w", key, s.mapErr(err))
	}
	if len(resp.Kvs) == 0 {
		return store.KV{}, fmt.Errorf("etcd: get %q: %w", key, store.ErrNotFound)
	}
	return toKV(resp.Kvs[0]), nil
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, value []byte, expect int64) (int64, error) {
	if err := s.checkKey(ctx, key); err != nil {
		return 0, fmt.Errorf("etcd: put %q: %w", key, err)
	}
	var cmp clientv3.Cmp
	switch {
	case expect == store.Any:
		resp, err := s.kv.Put(ctx, key, string(value))
		if err != nil {
			return 0, fmt.Errorf("etcd: put %q: %w", key, s.mapErr(err))
		}
		return resp.Header.Revision, nil
	case expect == 0:
		cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	case expect > 0:
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", expect)
	default:
		return 0, fmt.Errorf("etcd: put %q: invalid expected revision %d", key, expect)
	}
	resp, err := s.kv.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(value))).Commit()
	if err != nil {
		return 0, fmt.Errorf("etcd: put %q: %w", key, s.mapErr(err))
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("etcd: put %q at revision %d: %w", key, expect, store.ErrConflict)
	}
	return resp.Header.Revision, nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string, expect int64) error {
	if err := s.checkKey(ctx, key); err != nil {
		return fmt.Errorf("etcd: delete %q: %w", key, err)
	}
	if expect == store.Any {
		resp, err := s.kv.Delete(ctx, key)
		if err != nil {
			return fmt.Errorf("etcd: delete %q: %w", key, s.mapErr(err))
		}
		if resp.Deleted == 0 {
			return fmt.Errorf("etcd: delete %q: %w", key, store.ErrNotFound)
		}
		return nil
	}
	if expect < 0 {
		return fmt.Errorf("etcd: delete %q: invalid expected revision %d", key, expect)
	}
	resp, err := s.kv.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", expect)).
		Then(clientv3.OpDelete(key)).
		Else(clientv3.OpGet(key, clientv3.WithCountOnly())).
		Commit()
	if err != nil {
		return fmt.Errorf("etcd: delete %q: %w", key, s.mapErr(err))
	}
	switch {
	case resp.Succeeded && resp.Responses[0].GetResponseDeleteRange().GetDeleted() == 1:
		return nil
	case !resp.Succeeded && resp.Responses[0].GetResponseRange().GetCount() > 0:
		return fmt.Errorf("etcd: delete %q at revision %d: %w", key, expect, store.ErrConflict)
	}
	return fmt.Errorf("etcd: delete %q: %w", key, store.ErrNotFound)
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	if err := s.check(ctx); err != nil {
		return nil, 0, fmt.Errorf("etcd: list %q: %w", prefix, err)
	}
	resp, err := s.kv.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("etcd: list %q: %w", prefix, s.mapErr(err))
	}
	kvs := make([]store.KV, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		kvs[i] = toKV(kv)
	}
	return kvs, resp.Header.Revision, nil
}

// Watch implements store.Store. A watch buffers up to
// Config.WatchBacklog events for a slow consumer, then closes its channel;
// it also closes if etcd compacts history the watch still needs or the
// cluster loses its leader.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) (<-chan store.Event, error) {
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("etcd: watch %q: %w", prefix, err)
	}
	if fromRev < 0 {
		return nil, fmt.Errorf("etcd: watch %q: invalid revision %d", prefix, fromRev)
	}
	// Find out now whether the history is still there: etcd reports a
	// compacted watch only later, on the channel. A revision in the future
	// is fine for a watch.
	_, err := s.kv.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(fromRev+1), clientv3.WithCountOnly())
	if errors.Is(err, rpctypes.ErrCompacted) {
		return nil, fmt.Errorf("etcd: watch %q from revision %d: %w", prefix, fromRev, store.ErrCompacted)
	}
	if err != nil && !errors.Is(err, rpctypes.ErrFutureRev) {
		return nil, fmt.Errorf("etcd: watch %q: %w", prefix, s.mapErr(err))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("etcd: watch %q: %w", prefix, store.ErrClosed)
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.watcher.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(fromRev+1))
	out := make(chan store.Event, 16)
	s.wg.Go(func() {
		defer cancel()
		s.serveWatch(wctx, wch, out)
	})
	return out, nil
}

// serveWatch forwards events from wch to out, keeping at most s.backlog
// of them while the consumer is slow, until ctx ends, the store closes or
// the etcd watch ends.
func (s *Store) serveWatch(ctx context.Context, wch clientv3.WatchChan, out chan<- store.Event) {
	defer close(out)
	var backlog []store.Event
	for {
		var (
			send chan<- store.Event
			next store.Event
		)
		if len(backlog) > 0 {
			send, next = out, backlog[0]
		}
		select {
		case resp, ok := <-wch:
			if !ok || resp.Err() != nil {
				return // compacted, canceled or leader lost: the consumer lists again
			}
			for _, ev := range resp.Events {
				backlog = append(backlog, toEvent(ev))
			}
			if len(backlog) > s.backlog {
				return // the consumer is too slow: it lists again
			}
		case send <- next:
			backlog[0] = store.Event{}
			backlog = backlog[1:]
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		}
	}
}

// Txn implements store.Store. fn may run up to 32 times; if every attempt
// conflicts with other writers, Txn returns store.ErrConflict.
//
// The commit is one etcd transaction with a compare for every key fn read
// (listed keys included) and every prefix it listed, and an operation for
// every key it wrote. etcd's --max-txn-ops (default 128) bounds both
// counts, and --max-request-bytes (default 1.5 MiB) the commit's size: run
// etcd with a --max-txn-ops above the largest prefix privlink lists in a
// transaction (etcdtest uses 10000).
func (s *Store) Txn(ctx context.Context, fn func(tx store.Tx) error) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, fmt.Errorf("etcd: txn: %w", err)
	}
	for attempt := 0; ; attempt++ {
		t := &tx{ctx: ctx, kv: s.kv, seen: map[string]store.KV{}, writes: map[string]write{}}
		fnErr := fn(t)
		t.done = true
		retry := errors.Is(t.err, rpctypes.ErrCompacted) // the snapshot is gone
		switch {
		case retry:
		case fnErr != nil:
			return 0, fnErr
		case t.err != nil:
			return 0, fmt.Errorf("etcd: txn: %w", s.mapErr(t.err))
		default:
			rev, ok, err := t.commit()
			if err != nil {
				return 0, fmt.Errorf("etcd: txn: %w", s.mapErr(err))
			}
			if ok {
				return rev, nil
			}
		}
		if attempt+1 == txnAttempts {
			return 0, fmt.Errorf("etcd: txn: %d attempts: %w", txnAttempts, store.ErrConflict)
		}
		// Full jitter, exponential up to 100ms, so contenders spread out.
		timer := time.NewTimer(rand.N(min(time.Millisecond<<attempt, 100*time.Millisecond)) + time.Millisecond)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return 0, fmt.Errorf("etcd: txn: %w", ctx.Err())
		case <-s.closing:
			timer.Stop()
			return 0, fmt.Errorf("etcd: txn: %w", store.ErrClosed)
		}
	}
}

// Close stops every watch and closes the client. Calls after Close return
// store.ErrClosed, and so does a second Close.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return store.ErrClosed
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()

	s.wg.Wait()
	_ = s.watcher.Close() // only stops the namespace wrapper; cli.Close closes the rest
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("etcd: close: %w", err)
	}
	return nil
}

// check returns the error that stops an operation before it starts.
func (s *Store) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-s.closing:
		return store.ErrClosed
	default:
		return nil
	}
}

// checkKey is check for an operation on one key.
func (s *Store) checkKey(ctx context.Context, key string) error {
	if key == "" {
		return errors.New("empty key")
	}
	return s.check(ctx)
}

// mapErr reports errors of calls cut short by Close as store.ErrClosed.
func (s *Store) mapErr(err error) error {
	select {
	case <-s.closing:
		return store.ErrClosed
	default:
		return err
	}
}

func toKV(kv *mvccpb.KeyValue) store.KV {
	return store.KV{Key: string(kv.Key), Value: kv.Value, Revision: kv.ModRevision}
}

func toEvent(ev *clientv3.Event) store.Event {
	if ev.Type == clientv3.EventTypeDelete {
		return store.Event{Type: store.EventDelete, KV: store.KV{Key: string(ev.Kv.Key), Revision: ev.Kv.ModRevision}}
	}
	return store.Event{Type: store.EventPut, KV: toKV(ev.Kv)}
}

// write is a buffered write of a transaction.
type write struct {
	value   []byte
	deleted bool
}

// tx implements store.Tx: reads at one snapshot revision, writes buffered
// until commit.
type tx struct {
	ctx  context.Context
	kv   clientv3.KV
	snap int64 // the snapshot revision, fixed by the first read; 0 before

	seen     map[string]store.KV // keys read from etcd; Revision 0: absent
	prefixes []string            // prefixes listed from etcd
	writes   map[string]write
	err      error // the first failed read from etcd
	done     bool
}

var errTxDone = errors.New("etcd: transaction used after it ended")

func (t *tx) Get(key string) (store.KV, error) {
	if t.done {
		return store.KV{}, errTxDone
	}
	if w, ok := t.writes[key]; ok {
		if w.deleted {
			return store.KV{}, fmt.Errorf("get %q: %w", key, store.ErrNotFound)
		}
		return store.KV{Key: key, Value: slices.Clone(w.value)}, nil
	}
	kv, ok := t.seen[key]
	if !ok {
		resp, err := t.read(key)
		if err != nil {
			return store.KV{}, fmt.Errorf("get %q: %w", key, err)
		}
		kv = store.KV{Key: key}
		if len(resp.Kvs) > 0 {
			kv = toKV(resp.Kvs[0])
		}
		t.seen[key] = kv
	}
	if kv.Revision == 0 {
		return store.KV{}, fmt.Errorf("get %q: %w", key, store.ErrNotFound)
	}
	kv.Value = slices.Clone(kv.Value)
	return kv, nil
}

func (t *tx) List(prefix string) ([]store.KV, error) {
	if t.done {
		return nil, errTxDone
	}
	resp, err := t.read(prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	t.prefixes = append(t.prefixes, prefix)
	var kvs []store.KV
	for _, pb := range resp.Kvs {
		kv := toKV(pb)
		t.seen[kv.Key] = kv
		if _, ok := t.writes[kv.Key]; !ok {
			kv.Value = slices.Clone(kv.Value)
			kvs = append(kvs, kv)
		}
	}
	for key, w := range t.writes {
		if !w.deleted && strings.HasPrefix(key, prefix) {
			kvs = append(kvs, store.KV{Key: key, Value: slices.Clone(w.value)})
		}
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].Key < kvs[j].Key })
	return kvs, nil
}

func (t *tx) Put(key string, value []byte) error {
	if t.done {
		return errTxDone
	}
	if key == "" {
		return errors.New("put: empty key")
	}
	t.writes[key] = write{value: slices.Clone(value)}
	return nil
}

func (t *tx) Delete(key string) error {
	if t.done {
		return errTxDone
	}
	if _, err := t.Get(key); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	t.writes[key] = write{deleted: true}
	return nil
}

// read gets key (with opts) at the snapshot revision, fixing the snapshot
// on the first read.
func (t *tx) read(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if t.err != nil {
		return nil, t.err
	}
	if t.snap != 0 {
		opts = append(opts, clientv3.WithRev(t.snap))
	}
	resp, err := t.kv.Get(t.ctx, key, opts...)
	if err != nil {
		t.err = err
		return nil, err
	}
	if t.snap == 0 {
		t.snap = resp.Header.Revision
	}
	return resp, nil
}

// commit applies the buffered writes if nothing read has changed since
// the snapshot. ok is false on a conflict.
func (t *tx) commit() (rev int64, ok bool, err error) {
	if len(t.writes) == 0 {
		if t.snap != 0 {
			return t.snap, true, nil
		}
		resp, err := t.kv.Get(t.ctx, "", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return 0, false, err
		}
		return resp.Header.Revision, true, nil
	}

	var cmps []clientv3.Cmp
	for _, p := range t.prefixes {
		// No key under p was created or changed after the snapshot; the
		// deletion of a listed key fails the per-key compare below.
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p), "<", t.snap+1).WithPrefix())
	}
	for key, kv := range t.seen {
		if kv.Revision == 0 {
			if slices.ContainsFunc(t.prefixes, func(p string) bool { return strings.HasPrefix(key, p) }) {
				continue // its creation fails the prefix compare
			}
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", kv.Revision))
		}
	}
	keys := make([]string, 0, len(t.writes))
	for k := range t.writes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		if w := t.writes[k]; w.deleted {
			ops[i] = clientv3.OpDelete(k)
		} else {
			ops[i] = clientv3.OpPut(k, string(w.value))
		}
	}

	resp, err := t.kv.Txn(t.ctx).If(cmps...).Then(ops...).Commit()
	if errors.Is(err, rpctypes.ErrTooManyOps) {
		return 0, false, fmt.Errorf("%d compares and %d writes exceed the server's --max-txn-ops: %w", len(cmps), len(ops), err)
	}
	if err != nil {
		return 0, false, err
	}
	return resp.Header.Revision, resp.Succeeded, nil
}
