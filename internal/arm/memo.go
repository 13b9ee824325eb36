package arm

import (
	"sync"
	"time"

	"github.com/privlink/privlink/internal/store"
)

// Memo remembers, for each stored document, a value computed from it (a
// decoded projection, typically), until the document changes: a key at a
// given revision always holds the same bytes, so the value is computed
// once per revision. Controllers that look at every endpoint or NIC on
// each pass use one so that a pass costs map lookups, not a JSON decode of
// every document (the SDK's UnmarshalJSON re-parses each nesting level).
//
// T should be a value without shared mutable parts: Of hands the same
// value to every caller. Keys read inside a transaction carry revision 0
// for their own writes; those are computed and never remembered.
//
// A value not asked for in memoTTL is forgotten (its document was deleted,
// typically), so a Memo holds what its callers asked for recently.
type Memo[T any] struct {
	fn  func(kv store.KV) T
	now func() time.Time

	mu    sync.Mutex
	m     map[string]memoEntry[T]
	swept time.Time
}

type memoEntry[T any] struct {
	rev  int64
	last time.Time // last asked for
	v    T
}

// memoTTL is how long a Memo keeps a value nobody asks for. Controllers
// resync every 30 s, asking for every live document.
const memoTTL = 5 * time.Minute

// NewMemo returns a Memo of fn.
func NewMemo[T any](fn func(kv store.KV) T) *Memo[T] {
	return &Memo[T]{fn: fn, now: time.Now, m: map[string]memoEntry[T]{}}
}

// Of returns fn(kv), computed at most once per key and revision.
func (m *Memo[T]) Of(kv store.KV) T {
	if kv.Revision == 0 {
		return m.fn(kv)
	}
	m.mu.Lock()
	now := m.now()
	e, ok := m.m[kv.Key]
	if ok && e.rev == kv.Revision {
		e.last = now
		m.m[kv.Key] = e
		m.mu.Unlock()
		return e.v
	}
	m.mu.Unlock()

	v := m.fn(kv) // outside the lock: decoding is the slow part
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.m[kv.Key]; !ok || cur.rev < kv.Revision {
		m.m[kv.Key] = memoEntry[T]{rev: kv.Revision, last: now, v: v}
	}
	if now.Sub(m.swept) > memoTTL/2 {
		for k, e := range m.m {
			if now.Sub(e.last) > memoTTL {
				delete(m.m, k)
			}
		}
		m.swept = now
	}
	return v
}

// Len returns how many values the memo holds.
func (m *Memo[T]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.m)
}
