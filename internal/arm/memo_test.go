package arm

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/store"
)

func TestMemo(t *testing.T) {
	calls := map[string]int{}
	var mu sync.Mutex
	m := NewMemo(func(kv store.KV) string {
		mu.Lock()
		calls[fmt.Sprintf("%s@%d", kv.Key, kv.Revision)]++
		mu.Unlock()
		return string(kv.Value)
	})
	kv := store.KV{Key: "a", Value: []byte("one"), Revision: 3}
	for range 3 {
		if got := m.Of(kv); got != "one" {
			t.Fatalf("Of = %q, want one", got)
		}
	}
	if calls["a@3"] != 1 {
		t.Errorf("computed %d times for one revision, want once", calls["a@3"])
	}
	if got := m.Of(store.KV{Key: "a", Value: []byte("two"), Revision: 5}); got != "two" {
		t.Errorf("after a change: %q, want two", got)
	}
	// An older read (a slower reader) does not replace the newer value.
	if got := m.Of(store.KV{Key: "a", Value: []byte("one"), Revision: 3}); got != "one" {
		t.Errorf("older revision: %q, want one", got)
	}
	if got := m.Of(store.KV{Key: "a", Value: []byte("two"), Revision: 5}); got != "two" || calls["a@5"] != 1 {
		t.Errorf("newest revision: %q after %d computations, want two once", got, calls["a@5"])
	}
	// A key written in the reading transaction (revision 0) is never kept.
	m.Of(store.KV{Key: "b", Value: []byte("x")})
	m.Of(store.KV{Key: "b", Value: []byte("y")})
	if calls["b@0"] != 2 || m.Len() != 1 {
		t.Errorf("revision 0: computed %d times, memo holds %d; want 2 and 1", calls["b@0"], m.Len())
	}
}

func TestMemoForgetsKeysNoLongerAsked(t *testing.T) {
	m := NewMemo(func(kv store.KV) int { return len(kv.Value) })
	clock := time.Unix(1e9, 0)
	m.now = func() time.Time { return clock }
	key := func(i int) store.KV { return store.KV{Key: fmt.Sprint(i), Value: []byte("v"), Revision: 1} }
	// A controller's passes, one every 10 s: each asks for every live
	// document. 100 stay all along; 100 others are replaced one per pass
	// (created, then deleted).
	const passes = 1000
	for pass := range passes {
		for j := range 100 {
			m.Of(key(j))
		}
		for j := range 100 {
			m.Of(key(1000 + pass + j))
		}
		clock = clock.Add(10 * time.Second)
	}
	// What was asked for in the last memoTTL, and at most half a TTL more.
	recent := 200 + int(memoTTL*3/2/(10*time.Second))
	if n := m.Len(); n > recent {
		t.Errorf("memo holds %d entries after %d passes, want at most %d", n, passes, recent)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for j := range 100 {
		if _, ok := m.m[fmt.Sprint(j)]; !ok {
			t.Fatalf("key %d, asked for all along, was forgotten", j)
		}
	}
	if _, ok := m.m["1000"]; ok {
		t.Errorf("the first deleted key is still remembered")
	}
}
