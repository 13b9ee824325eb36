// Package store defines privlink's storage contract: a small, ordered
// key-value store with revisions, conditional writes, watches and
// serializable transactions. Desired state (ARM resources as JSON),
// identity records and allocations all live behind this interface.
//
// Two implementations pass the same conformance suite (package storetest):
// bolt (an embedded bbolt file, the default) and etcd (an etcd v3 cluster,
// for several privlinkd nodes sharing one state).
package store

import (
	"context"
	"errors"
)

// Errors returned by every implementation. Callers test them with errors.Is.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("store: key not found")
	// ErrConflict: a conditional write found another revision than expected.
	ErrConflict = errors.New("store: revision conflict")
	// ErrCompacted: a watch asked for history the store no longer keeps;
	// the watcher must list again and watch from the list's revision.
	ErrCompacted = errors.New("store: revision compacted")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
)

// Any disables the revision check of Put and Delete.
const Any int64 = -1

// KV is one key with its value and the revision that last modified it.
type KV struct {
	Key      string
	Value    []byte
	Revision int64
}

// EventType says what happened to a key.
type EventType int

// Event types.
const (
	EventPut EventType = iota + 1
	EventDelete
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	}
	return "unknown"
}

// Event is one change seen by a watch. For EventDelete, KV.Value is nil and
// KV.Revision is the revision of the deletion.
type Event struct {
	Type EventType
	KV   KV
}

// Store is the storage contract. Keys are arbitrary strings; privlink uses
// slash-separated paths so that prefixes select subtrees. Revisions are
// store-wide, strictly increasing and never reused.
type Store interface {
	// Get returns the key's value, or ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)

	// Put writes value under key if the key's current revision is expect:
	// 0 means the key must not exist, Any means no check (a missing key
	// never matches a revision > 0). It returns the new revision, or
	// ErrConflict.
	Put(ctx context.Context, key string, value []byte, expect int64) (int64, error)

	// Delete removes key if its current revision is expect (Any: no
	// check), else returns ErrConflict. Deleting a missing key returns
	// ErrNotFound, whatever expect is.
	Delete(ctx context.Context, key string, expect int64) error

	// List returns every key with the prefix, sorted by key, and the store
	// revision at which the list was read.
	List(ctx context.Context, prefix string) ([]KV, int64, error)

	// Watch streams the changes to keys with the prefix made after
	// revision fromRev, in revision order, until ctx ends (then the
	// channel closes). If that history is gone it returns ErrCompacted.
	// The usual pattern: rev := List(...); Watch(prefix, rev).
	//
	// The writes of one Txn share one revision and arrive together. The
	// channel also closes when the store closes, or when the consumer
	// falls so far behind that the events it still needs are no longer
	// kept (writers never wait for watchers). A consumer whose ctx is
	// still live and whose channel closed lists again and watches from
	// the new revision.
	Watch(ctx context.Context, prefix string, fromRev int64) (<-chan Event, error)

	// Txn runs fn as one serializable transaction: either every write of
	// fn is applied atomically, or none is. If fn returns an error nothing
	// is written and that error is returned. Implementations may run fn
	// more than once (optimistic retry), so fn must not have side effects
	// outside tx; nor may it call the Store (an implementation may hold
	// its write lock while fn runs). It returns the revision of the commit
	// (the current revision if fn wrote nothing).
	Txn(ctx context.Context, fn func(tx Tx) error) (int64, error)

	// Close releases the store. A second Close returns ErrClosed.
	Close() error
}

// Tx is the view of the store inside a transaction. Reads see the writes
// made earlier in the same transaction; such keys report Revision 0, since
// the commit revision is not known yet. Get and Delete of a missing key
// return ErrNotFound. A Tx must not be used after fn returns.
type Tx interface {
	Get(key string) (KV, error)
	List(prefix string) ([]KV, error)
	Put(key string, value []byte) error
	Delete(key string) error
}
