// Package bolt implements store.Store on an embedded bbolt file, the
// default storage of a single privlinkd node.
//
// Keys live in one bucket, each value prefixed with the revision that last
// modified it; a meta bucket holds the store-wide revision counter, so
// revisions survive restarts and never go backwards. Every write is one
// bbolt transaction (fsynced), and writes are serialized, which makes Txn
// trivially serializable.
//
// Watch history is kept in memory only: a bounded ring of the most recent
// events. A watch from a revision older than the ring, or older than the
// moment the file was opened, returns store.ErrCompacted.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"github.com/privlink/privlink/internal/store"
)

// Defaults for Open.
const (
	// DefaultLockTimeout is how long Open waits for the file lock held by
	// another process before giving up.
	DefaultLockTimeout = 5 * time.Second
	// DefaultHistory is how many recent events Watch can replay.
	DefaultHistory = 10000
)

var (
	dataBucket = []byte("data")
	metaBucket = []byte("meta")
	revKey     = []byte("rev")

	// errNoChange rolls back a write transaction that changed nothing.
	errNoChange = errors.New("bolt: no change")
)

// Option configures Open.
type Option func(*options)

type options struct {
	lockTimeout time.Duration
	history     int
}

// WithLockTimeout sets how long Open waits for the file lock (default
// DefaultLockTimeout). Values <= 0 keep the default: Open never waits
// forever.
func WithLockTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.lockTimeout = d
		}
	}
}

// WithHistory sets how many recent events are kept for Watch to replay
// (default DefaultHistory). It also bounds how far a watcher may fall
// behind before its channel is closed. Values < 1 keep the default.
func WithHistory(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.history = n
		}
	}
}

// Store is a store.Store on a bbolt file. It is safe for concurrent use.
type Store struct {
	db *bbolt.DB

	// writer is a one-slot semaphore held from the start of a write
	// transaction until its events are published, so that events are
	// published in revision order.
	writer  chan struct{}
	closing chan struct{} // closed by Close
	wg      sync.WaitGroup

	mu     sync.Mutex
	closed bool
	hist   ring
	floor  int64         // hist holds every event with a revision > floor
	notify chan struct{} // closed and replaced on every publish
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the store file at path. If another
// process holds the file, Open fails after the lock timeout.
func Open(path string, opts ...Option) (*Store, error) {
	o := options{lockTimeout: DefaultLockTimeout, history: DefaultHistory}
	for _, opt := range opts {
		opt(&o)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: o.lockTimeout})
	if errors.Is(err, bberrors.ErrTimeout) {
		return nil, fmt.Errorf("bolt: open %s: file is locked by another process (waited %s): %w", path, o.lockTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	var rev int64
	err = db.Update(func(tx *bbolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(dataBucket); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		rev, err = storeRev(meta)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	return &Store{
		db:      db,
		writer:  make(chan struct{}, 1),
		closing: make(chan struct{}),
		hist:    ring{buf: make([]store.Event, o.history)},
		floor:   rev,
		notify:  make(chan struct{}),
	}, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := s.checkKey(ctx, key); err != nil {
		return store.KV{}, fmt.Errorf("bolt: get %q: %w", key, err)
	}
	var kv store.KV
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		kv, err = get(tx.Bucket(dataBucket), key)
		return err
	})
	if err != nil {
		return store.KV{}, fmt.Errorf("bolt: get %q: %w", key, s.mapErr(err))
	}
	return kv, nil
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, key string, value []byte, expect int64) (int64, error) {
	if err := s.checkKey(ctx, key); err != nil {
		return 0, fmt.Errorf("bolt: put %q: %w", key, err)
	}
	if expect < store.Any {
		return 0, fmt.Errorf("bolt: put %q: invalid expected revision %d", key, expect)
	}
	rev, err := s.write(ctx, func(b *bbolt.Bucket, next int64) ([]store.Event, error) {
		cur, err := modRev(b, key)
		if err != nil {
			return nil, err
		}
		if expect != store.Any && expect != cur {
			return nil, store.ErrConflict
		}
		if err := b.Put([]byte(key), encode(next, value)); err != nil {
			return nil, err
		}
		kv := store.KV{Key: key, Value: bytes.Clone(value), Revision: next}
		return []store.Event{{Type: store.EventPut, KV: kv}}, nil
	})
	if err != nil {
		return 0, fmt.Errorf("bolt: put %q: %w", key, err)
	}
	return rev, nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string, expect int64) error {
	if err := s.checkKey(ctx, key); err != nil {
		return fmt.Errorf("bolt: delete %q: %w", key, err)
	}
	if expect < store.Any {
		return fmt.Errorf("bolt: delete %q: invalid expected revision %d", key, expect)
	}
	_, err := s.write(ctx, func(b *bbolt.Bucket, next int64) ([]store.Event, error) {
		cur, err := modRev(b, key)
		if err != nil {
			return nil, err
		}
		if cur == 0 {
			return nil, store.ErrNotFound
		}
		if expect != store.Any && expect != cur {
			return nil, store.ErrConflict
		}
		if err := b.Delete([]byte(key)); err != nil {
			return nil, err
		}
		kv := store.KV{Key: key, Revision: next}
		return []store.Event{{Type: store.EventDelete, KV: kv}}, nil
	})
	if err != nil {
		return fmt.Errorf("bolt: delete %q: %w", key, err)
	}
	return nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	if err := s.check(ctx); err != nil {
		return nil, 0, fmt.Errorf("bolt: list %q: %w", prefix, err)
	}
	var (
		kvs []store.KV
		rev int64
	)
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		if rev, err = storeRev(tx.Bucket(metaBucket)); err != nil {
			return err
		}
		kvs, err = list(tx.Bucket(dataBucket), prefix)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("bolt: list %q: %w", prefix, s.mapErr(err))
	}
	return kvs, rev, nil
}

// Watch implements store.Store. Events come from the in-memory history, so
// a watcher never makes a writer wait: one that falls more than the
// history size behind has its channel closed and must list again.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) (<-chan store.Event, error) {
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("bolt: watch %q: %w", prefix, err)
	}
	if fromRev < 0 {
		return nil, fmt.Errorf("bolt: watch %q: invalid revision %d", prefix, fromRev)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("bolt: watch %q: %w", prefix, store.ErrClosed)
	}
	if fromRev < s.floor {
		return nil, fmt.Errorf("bolt: watch %q from revision %d (oldest kept %d): %w", prefix, fromRev, s.floor, store.ErrCompacted)
	}
	ch := make(chan store.Event, 16)
	s.wg.Go(func() { s.serveWatch(ctx, ch, prefix, fromRev) })
	return ch, nil
}

// serveWatch sends the events with the prefix after revision cursor to out
// until ctx ends, the store closes or the history moves past cursor.
func (s *Store) serveWatch(ctx context.Context, out chan<- store.Event, prefix string, cursor int64) {
	defer close(out)
	for {
		s.mu.Lock()
		if cursor < s.floor {
			s.mu.Unlock()
			return // fell behind the history: the consumer lists again
		}
		evs, last := s.hist.since(cursor, prefix)
		wake := s.notify
		s.mu.Unlock()

		for _, ev := range evs {
			ev.KV.Value = bytes.Clone(ev.KV.Value) // the history's copy is shared
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			case <-s.closing:
				return
			}
		}
		cursor = max(cursor, last)
		select {
		case <-wake:
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		}
	}
}

// Txn implements store.Store. fn runs once, inside one bbolt write
// transaction, while every other writer waits: keep it short, and do not
// call the Store from it (that waits for the transaction itself).
func (s *Store) Txn(ctx context.Context, fn func(tx store.Tx) error) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, fmt.Errorf("bolt: txn: %w", err)
	}
	var fnErr error
	rev, err := s.write(ctx, func(b *bbolt.Bucket, next int64) ([]store.Event, error) {
		t := &tx{b: b, rev: next, existed: map[string]bool{}}
		defer func() { t.done = true }()
		if fnErr = fn(t); fnErr != nil {
			return nil, fnErr
		}
		return t.events()
	})
	if fnErr != nil {
		return 0, fnErr
	}
	if err != nil {
		return 0, fmt.Errorf("bolt: txn: %w", err)
	}
	return rev, nil
}

// Close closes the file and every watch channel. Calls after Close return
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
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt: close: %w", err)
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

func (s *Store) mapErr(err error) error {
	if errors.Is(err, bberrors.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	return err
}

// write runs fn in one write transaction. fn gets the revision its writes
// commit at and returns their events; if it returns none, nothing is
// committed and write returns the current revision. After the commit the
// events are published to watchers.
func (s *Store) write(ctx context.Context, fn func(b *bbolt.Bucket, next int64) ([]store.Event, error)) (int64, error) {
	select {
	case s.writer <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-s.closing:
		return 0, store.ErrClosed
	}
	defer func() { <-s.writer }()

	var (
		rev int64
		evs []store.Event
	)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		cur, err := storeRev(meta)
		if err != nil {
			return err
		}
		rev = cur
		if evs, err = fn(tx.Bucket(dataBucket), cur+1); err != nil {
			return err
		}
		if len(evs) == 0 {
			return errNoChange
		}
		rev = cur + 1
		return meta.Put(revKey, binary.BigEndian.AppendUint64(nil, uint64(rev)))
	})
	if errors.Is(err, errNoChange) {
		return rev, nil
	}
	if err != nil {
		return 0, s.mapErr(err)
	}
	s.publish(evs)
	return rev, nil
}

// publish adds committed events to the history and wakes the watchers.
func (s *Store) publish(evs []store.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range evs {
		if old, ok := s.hist.push(ev); ok {
			s.floor = old.KV.Revision
		}
	}
	close(s.notify)
	s.notify = make(chan struct{})
}

// tx implements store.Tx directly on the bucket of the write transaction,
// so its reads see its own writes.
type tx struct {
	b       *bbolt.Bucket
	rev     int64           // the commit revision
	existed map[string]bool // keys written: did each exist before the txn?
	done    bool
}

var errTxDone = errors.New("bolt: transaction used after it ended")

func (t *tx) Get(key string) (store.KV, error) {
	if t.done {
		return store.KV{}, errTxDone
	}
	kv, err := get(t.b, key)
	if err != nil {
		return store.KV{}, fmt.Errorf("get %q: %w", key, err)
	}
	t.hide(&kv)
	return kv, nil
}

func (t *tx) List(prefix string) ([]store.KV, error) {
	if t.done {
		return nil, errTxDone
	}
	kvs, err := list(t.b, prefix)
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	for i := range kvs {
		t.hide(&kvs[i])
	}
	return kvs, nil
}

func (t *tx) Put(key string, value []byte) error {
	if t.done {
		return errTxDone
	}
	if key == "" {
		return errors.New("put: empty key")
	}
	t.touch(key)
	if err := t.b.Put([]byte(key), encode(t.rev, value)); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	return nil
}

func (t *tx) Delete(key string) error {
	if t.done {
		return errTxDone
	}
	if t.b.Get([]byte(key)) == nil {
		return fmt.Errorf("delete %q: %w", key, store.ErrNotFound)
	}
	t.touch(key)
	if err := t.b.Delete([]byte(key)); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	return nil
}

// touch records whether key existed before its first write in the txn.
func (t *tx) touch(key string) {
	if _, ok := t.existed[key]; !ok {
		t.existed[key] = t.b.Get([]byte(key)) != nil
	}
}

// hide reports Revision 0 for keys written in the txn, as store.Tx says.
func (t *tx) hide(kv *store.KV) {
	if _, ok := t.existed[kv.Key]; ok {
		kv.Revision = 0
	}
}

// events returns one event per key the txn changed, by key: its final
// value, or its deletion if it existed before.
func (t *tx) events() ([]store.Event, error) {
	keys := make([]string, 0, len(t.existed))
	for k := range t.existed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var evs []store.Event
	for _, k := range keys {
		kv, err := get(t.b, k)
		switch {
		case err == nil:
			evs = append(evs, store.Event{Type: store.EventPut, KV: kv})
		case errors.Is(err, store.ErrNotFound) && t.existed[k]:
			evs = append(evs, store.Event{Type: store.EventDelete, KV: store.KV{Key: k, Revision: t.rev}})
		case errors.Is(err, store.ErrNotFound):
			// created and deleted within the txn: no change
		default:
			return nil, err
		}
	}
	return evs, nil
}

// encode lays out a stored value: the 8-byte big-endian mod revision, then
// the value.
func encode(rev int64, value []byte) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(value)), uint64(rev)), value...)
}

func decode(key, raw []byte) (store.KV, error) {
	if len(raw) < 8 {
		return store.KV{}, fmt.Errorf("corrupt value of %q: %d bytes", key, len(raw))
	}
	return store.KV{
		Key:      string(key),
		Value:    bytes.Clone(raw[8:]), // bbolt's memory is valid only inside the transaction
		Revision: int64(binary.BigEndian.Uint64(raw)),
	}, nil
}

func get(b *bbolt.Bucket, key string) (store.KV, error) {
	raw := b.Get([]byte(key))
	if raw == nil {
		return store.KV{}, store.ErrNotFound
	}
	return decode([]byte(key), raw)
}

// modRev returns the key's mod revision, 0 if the key is missing.
func modRev(b *bbolt.Bucket, key string) (int64, error) {
	kv, err := get(b, key)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	return kv.Revision, err
}

func list(b *bbolt.Bucket, prefix string) ([]store.KV, error) {
	var kvs []store.KV
	c := b.Cursor()
	for k, v := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, v = c.Next() {
		kv, err := decode(k, v)
		if err != nil {
			return nil, err
		}
		kvs = append(kvs, kv)
	}
	return kvs, nil
}

func storeRev(meta *bbolt.Bucket) (int64, error) {
	raw := meta.Get(revKey)
	if raw == nil {
		return 0, nil
	}
	if len(raw) != 8 {
		return 0, fmt.Errorf("corrupt store revision: %d bytes", len(raw))
	}
	return int64(binary.BigEndian.Uint64(raw)), nil
}

// ring is a bounded history of events in revision order; the oldest is
// dropped when it is full.
type ring struct {
	buf   []store.Event
	start int // index of the oldest event
	n     int
}

func (r *ring) at(i int) store.Event { return r.buf[(r.start+i)%len(r.buf)] }

// push appends ev and returns the event it dropped, if any.
func (r *ring) push(ev store.Event) (dropped store.Event, ok bool) {
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = ev
		r.n++
		return store.Event{}, false
	}
	dropped = r.buf[r.start]
	r.buf[r.start] = ev
	r.start = (r.start + 1) % len(r.buf)
	return dropped, true
}

// since returns the events with the prefix and a revision > rev, and the
// newest revision in the history.
func (r *ring) since(rev int64, prefix string) (evs []store.Event, last int64) {
	if r.n == 0 {
		return nil, 0
	}
	first := sort.Search(r.n, func(i int) bool { return r.at(i).KV.Revision > rev })
	for i := first; i < r.n; i++ {
		if ev := r.at(i); strings.HasPrefix(ev.KV.Key, prefix) {
			evs = append(evs, ev)
		}
	}
	return evs, r.at(r.n - 1).KV.Revision
}
