package controller

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/privlink/privlink/internal/arm"
)

// endpointObserver is what a controller that waits for the data path needs
// of it (*Datapath).
type endpointObserver interface {
	EndpointStatus(id string, rev int64) (EndpointState, error)
	Snapshot() (DatapathSnapshot, <-chan struct{})
}

const (
	// holdBackMax bounds how long work waits for an endpoint's
	// translation while the data path reports it pending: past it, the
	// wait ends with a timeout (the network controller then fails the
	// endpoint's operation). Generous: a pass takes milliseconds, and
	// pending means something the translation needs (a server's namespace)
	// is not there yet.
	holdBackMax = 60 * time.Second
	// holdBackRecheck is how often a held-back item is looked at again
	// besides the data path's passes, in case none comes.
	holdBackRecheck = 5 * time.Second
)

// dataPathWait holds a controller's work on a private endpoint back until
// the data path reports the endpoint's document, as it is, in place (see
// Datapath.EndpointStatus): then the translation the document asks for, if
// any, is there. The zone group controller uses it before it publishes an
// endpoint's address, the network controller before it finishes an
// endpoint's operation.
//
// A held-back item is enqueued again when the data path publishes its next
// pass; the caller also requeues it after holdBackRecheck, in case no pass
// comes. The zero value, without a data path, holds nothing back.
type dataPathWait struct {
	dp   endpointObserver
	log  *slog.Logger
	what string // what waits, for the log: "publishing its address"
	// limit is how long a pending endpoint is waited for; 0 means
	// holdBackMax.
	limit time.Duration

	mu sync.Mutex
	// waiting holds, by endpoint ID and document revision, since when
	// the wait lasts and the item to enqueue at the data path's next pass.
	waiting  map[string]*heldItem
	watching bool // a goroutine waits for the next pass
}

type heldItem struct {
	since time.Time // the wait began
	seen  time.Time // the item was last asked about
	item  string
	told  bool // the failure was logged
}

// ready reports whether work on revision rev of endpoint id's document may
// go ahead: no data path is followed, or it reports that revision (or a
// later one) in place. When it may not, item is enqueued again through
// enqueue at the data path's next pass, and failure tells whether the
// wait is over without the translation: the data path failed to program
// it, or reported it pending for longer than the limit. The failure is an
// *arm.Error for the endpoint's operation.
func (w *dataPathWait) ready(ctx context.Context, id string, rev int64, item string, enqueue func(string)) (ok bool, failure error) {
	if w.dp == nil || rev == 0 {
		return true, nil
	}
	// The channel before the check: a pass between the two still wakes us.
	_, passed := w.dp.Snapshot()
	key := strings.ToLower(id) + "@" + strconv.FormatInt(rev, 10)
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	limit := w.maxWait()
	for k, h := range w.waiting {
		// No longer asked about (each is, every holdBackRecheck at
		// least): an endpoint that changed or went away.
		if now.Sub(h.seen) > 3*holdBackRecheck {
			delete(w.waiting, k)
		}
	}
	state, err := w.dp.EndpointStatus(id, rev)
	if state == EndpointInPlace {
		delete(w.waiting, key)
		return true, nil
	}
	h := w.waiting[key]
	if h == nil {
		h = &heldItem{since: now, seen: now, item: item}
		if w.waiting == nil {
			w.waiting = map[string]*heldItem{}
		}
		w.waiting[key] = h
	}
	h.seen = now
	if !w.watching {
		w.watching = true
		go w.wake(ctx, passed, enqueue)
	}
	waited := now.Sub(h.since)
	switch {
	case state == EndpointFailed:
		failure = arm.Errorf(http.StatusInternalServerError, "PrivateEndpointDataPathFailed",
			"The translation of private endpoint '%s' could not be programmed in its network's router: %v. privlink keeps retrying; "+
				"the endpoint's provisioningState becomes Succeeded once the translation is in place.", id, err)
	case waited > limit:
		failure = arm.Errorf(http.StatusInternalServerError, "PrivateEndpointDataPathTimeout",
			"The translation of private endpoint '%s' was not in place %v after the change (its network's router or its server is not ready). "+
				"privlink keeps trying; the endpoint's provisioningState becomes Succeeded once the translation is in place.", id, limit)
	}
	if failure != nil && !h.told {
		h.told = true
		w.log.Warn("the data path has not put an endpoint's translation in place; not "+w.what,
			"endpoint", id, "revision", rev, "state", state, "waited", waited.Round(time.Millisecond), "err", err)
	}
	return false, failure
}

// maxWait is how long a pending endpoint is waited for.
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
