// Package controller holds privlinkd's reconcilers: level-triggered loops
// that watch desired state in the store and make the world (namespaces,
// DNS, PostgreSQL servers, translations) match it.
//
// Each loop works on string items (typically resource IDs). Store events
// and start-up listing only say which items may have changed; the
// reconcile function reads the current state itself and converges, so a
// missed or repeated event, a restart or a crash all heal the same way.
package controller

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/privlink/privlink/internal/store"
)

// ReconcileFunc converges one item. It returns a delay after which the
// item is reconciled again (0: only when something changes), or an error,
// after which it is retried with back-off.
type ReconcileFunc func(ctx context.Context, item string) (requeueAfter time.Duration, err error)

// Loop is one reconcile loop over store prefixes.
type Loop struct {
	Name string
	// Prefixes are the store key prefixes whose changes concern the loop.
	Prefixes []string
	// Items maps a changed key (and its new value, nil when deleted) to
	// the items to reconcile.
	Items func(key string, value []byte) []string
	// Resync lists every item that should exist, so that items whose
	// state outside the store drifted (a namespace deleted by hand) are
	// reconciled at start and every ResyncEvery.
	Resync      func(ctx context.Context) ([]string, error)
	ResyncEvery time.Duration
	Reconcile   ReconcileFunc
	Store       store.Store
	Log         *slog.Logger

	q *queue
}

// Run reconciles until ctx ends. It lists and watches every prefix,
// re-listing whenever a watch ends early (compaction, slow consumer).
func (l *Loop) Run(ctx context.Context) error {
	l.q = newQueue()
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, p := range l.Prefixes {
		wg.Add(1)
		go func(prefix string) {
			defer wg.Done()
			l.watch(ctx, prefix)
		}(p)
	}
	if l.Resync != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.resync(ctx)
		}()
	}
	go func() { <-ctx.Done(); l.q.close() }()
	l.work(ctx)
	return nil
}

// Enqueue asks for item to be reconciled soon.
func (l *Loop) Enqueue(item string) { l.q.add(item, 0) }

func (l *Loop) watch(ctx context.Context, prefix string) {
	for ctx.Err() == nil {
		kvs, rev, err := l.Store.List(ctx, prefix)
		if err != nil {
			l.Log.Warn("list failed; retrying", "loop", l.Name, "prefix", prefix, "err", err)
			sleep(ctx, time.Second)
			continue
		}
		for _, kv := range kvs {
			for _, it := range l.Items(kv.Key, kv.Value) {
				l.q.add(it, 0)
			}
		}
		ch, err := l.Store.Watch(ctx, prefix, rev)
		if err != nil {
			if !errors.Is(err, store.ErrCompacted) {
				l.Log.Warn("watch failed; re-listing", "loop", l.Name, "prefix", prefix, "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		for ev := range ch {
			var v []byte
			if ev.Type == store.EventPut {
				v = ev.KV.Value
			}
			for _, it := range l.Items(ev.KV.Key, v) {
				l.q.add(it, 0)
			}
		}
	}
}

func (l *Loop) resync(ctx context.Context) {
	every := l.ResyncEvery
	if every == 0 {
		every = time.Minute
	}
	for {
		items, err := l.Resync(ctx)
		if err != nil && ctx.Err() == nil {
			l.Log.Warn("resync failed", "loop", l.Name, "err", err)
		}
		for _, it := range items {
			l.q.add(it, 0)
		}
		if !sleep(ctx, every) {
			return
		}
	}
}

func (l *Loop) work(ctx context.Context) {
	failures := map[string]int{}
	for {
		item, ok := l.q.get()
		if !ok {
			return
		}
		after, err := l.Reconcile(ctx, item)
		l.q.done(item)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			failures[item]++
			delay := backoff(failures[item])
			l.Log.Warn("reconcile failed; will retry", "loop", l.Name, "item", item, "retry_in", delay, "err", err)
			l.q.add(item, delay)
		default:
			delete(failures, item)
			if after > 0 {
				l.q.add(item, after)
			}
		}
	}
}

func backoff(n int) time.Duration {
	d := 100 * time.Millisecond << min(n-1, 8)
	return min(d, 30*time.Second)
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// queue is a de-duplicating work queue with delayed adds. An item being
// worked on is not handed out again until done; if it was added meanwhile
// it is handed out once more after done.
type queue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	pending []string
	set     map[string]bool // in pending
	active  map[string]bool // being reconciled
	dirty   map[string]bool // added while active
	closed  bool
}

func newQueue() *queue {
	q := &queue{set: map[string]bool{}, active: map[string]bool{}, dirty: map[string]bool{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *queue) add(item string, after time.Duration) {
	if after > 0 {
		time.AfterFunc(after, func() { q.add(item, 0) })
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.set[item] {
		return
	}
	if q.active[item] {
		q.dirty[item] = true
		return
	}
	q.set[item] = true
	q.pending = append(q.pending, item)
	q.cond.Signal()
}

func (q *queue) get() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.pending) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", false
	}
	it := q.pending[0]
	q.pending = q.pending[1:]
	delete(q.set, it)
	q.active[it] = true
	return it, true
}

func (q *queue) done(item string) {
	q.mu.Lock()
	delete(q.active, item)
	again := q.dirty[item]
	delete(q.dirty, item)
	q.mu.Unlock()
	if again {
		q.add(item, 0)
	}
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}
