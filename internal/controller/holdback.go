package controller

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
)

// endpointObserver is what a controller that waits for the data path needs
// of it (*Datapath).
type endpointObserver interface {
	ObservedEndpoint(id string, rev int64) bool
	Snapshot() (DatapathSnapshot, <-chan struct{})
}

// holdBackMax bounds how long work waits for the data path: past it, the
// work is done anyway (and a warning logged), so that a data path that
// cannot keep up never keeps a name from resolving or an operation from
// finishing.
const holdBackMax = 5 * time.Second

// dataPathWait holds a controller's work on a private endpoint back until
// the data path has processed the endpoint's document as it is: then the
// translation the document asks for, if any, is in place. The zone group
// controller uses it before it publishes an endpoint's address, the
// network controller before it finishes an endpoint's operation.
//
// A held-back item is enqueued again when the data path publishes its next
// pass; the caller also requeues it after holdBackMax, in case no pass
// comes. The zero value, without a data path, holds nothing back.
type dataPathWait struct {
	dp   endpointObserver
	log  *slog.Logger
	what string // what waits, for the warning: "publishing its address"
	// limit is how long work waits at most; 0 means holdBackMax.
	limit time.Duration

	mu sync.Mutex
	// waiting holds, by endpoint ID and document revision, since when
	// the wait lasts and the item to enqueue at the data path's next pass.
	waiting  map[string]heldItem
	watching bool // a goroutine waits for the next pass
}

type heldItem struct {
	since time.Time
	item  string
}

// ready reports whether work on revision rev of endpoint id's document may
// go ahead: no data path is followed, it has processed that revision (or a
// later one), or the work has waited its limit (holdBackMax by default). When it may not, item is
// enqueued again through enqueue at the data path's next pass.
func (w *dataPathWait) ready(ctx context.Context, id string, rev int64, item string, enqueue func(string)) bool {
	if w.dp == nil || rev == 0 {
		return true
	}
	// The channel before the check: a pass between the two still wakes us.
	_, passed := w.dp.Snapshot()
	key := strings.ToLower(id) + "@" + strconv.FormatInt(rev, 10)
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	limit := w.maxWait()
	for k, h := range w.waiting {
		// Well past any wait (and its requeue): an endpoint that changed
		// or went away.
		if now.Sub(h.since) > 2*max(limit, holdBackMax) {
			delete(w.waiting, k)
		}
	}
	if w.dp.ObservedEndpoint(id, rev) {
		delete(w.waiting, key)
		return true
	}
	h, ok := w.waiting[key]
	if !ok {
		h = heldItem{since: now, item: item}
	}
	if now.Sub(h.since) > limit {
		w.log.Warn("the data path has not caught up with an endpoint; "+w.what+" anyway",
			"endpoint", id, "waited", now.Sub(h.since).Round(time.Millisecond))
		delete(w.waiting, key)
		return true
	}
	if w.waiting == nil {
		w.waiting = map[string]heldItem{}
	}
	w.waiting[key] = h
	if !w.watching {
		w.watching = true
		go w.wake(ctx, passed, enqueue)
	}
	return false
}

// maxWait is how long work waits at most.
func (w *dataPathWait) maxWait() time.Duration {
	if w.limit == 0 {
		return holdBackMax
	}
	return w.limit
}

// wake enqueues every held-back item once passed is closed.
func (w *dataPathWait) wake(ctx context.Context, passed <-chan struct{}, enqueue func(string)) {
	select {
	case <-passed:
	case <-ctx.Done():
	}
	w.mu.Lock()
	w.watching = false // before enqueueing: the next pass may need a watch of its own
	items := map[string]bool{}
	for _, h := range w.waiting {
		items[h.item] = true
	}
	w.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	for item := range items {
		enqueue(item)
	}
}
