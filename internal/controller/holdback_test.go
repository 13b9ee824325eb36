package controller

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/arm"
)

// enqueued hands over what a dataPathWait enqueues.
type enqueued struct{ got chan string }

func (e *enqueued) enqueue(item string) { e.got <- item }

func (e *enqueued) wait(t *testing.T, want string) {
	t.Helper()
	select {
	case item := <-e.got:
		if item != want {
			t.Fatalf("enqueued %q, want %q", item, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the data path's pass did not enqueue the held item")
	}
}

// newWaitOn returns a dataPathWait on a Datapath that never runs: the test
// publishes its passes, as its reconcile would.
func newWaitOn(t *testing.T, limit time.Duration, logs *strings.Builder) (*Datapath, *dataPathWait) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(logs, nil))
	d := NewDatapath(openStore(t), nil, nil, log)
	return d, &dataPathWait{dp: d, log: log, what: "finishing its operation", limit: limit}
}

func status(id string, rev int64, state EndpointState, err error) map[string]endpointStatus {
	return map[string]endpointStatus{strings.ToLower(id): {rev: rev, state: state, err: err}}
}

func TestDataPathWaitHoldsUntilInPlace(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var logs strings.Builder
	d, w := newWaitOn(t, time.Minute, &logs)
	e := &enqueued{got: make(chan string, 10)}
	const pe = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/privateEndpoints/PE1"

	if ok, failure := w.ready(ctx, pe, 7, "nic|a", e.enqueue); ok || failure != nil {
		t.Fatalf("before the data path saw the endpoint: ready %v, failure %v", ok, failure)
	}
	// A pass over an older revision wakes the item, which still waits.
	d.publish(DatapathSnapshot{}, status(pe, 6, EndpointInPlace, nil))
	e.wait(t, "nic|a")
	if ok, failure := w.ready(ctx, pe, 7, "nic|a", e.enqueue); ok || failure != nil {
		t.Fatalf("after a pass over revision 6, want 7: ready %v, failure %v", ok, failure)
	}
	// Revision 7 pending (its server's namespace is not there yet): it
	// waits, without failing within the limit.
	d.publish(DatapathSnapshot{}, status(pe, 7, EndpointPending, nil))
	e.wait(t, "nic|a")
	if ok, failure := w.ready(ctx, pe, 7, "nic|a", e.enqueue); ok || failure != nil {
		t.Fatalf("pending: ready %v, failure %v", ok, failure)
	}
	// In place (the ID's case does not matter): it goes.
	d.publish(DatapathSnapshot{}, status(strings.ToLower(pe), 7, EndpointInPlace, nil))
	e.wait(t, "nic|a")
	if ok, _ := w.ready(ctx, pe, 7, "nic|a", e.enqueue); !ok {
		t.Fatal("not ready once the data path has revision 7 in place")
	}
	// A later revision of the same endpoint waits again; an earlier one
	// does not.
	if ok, _ := w.ready(ctx, pe, 8, "nic|a", e.enqueue); ok {
		t.Error("revision 8 ready after a pass over 7")
	}
	if ok, _ := w.ready(ctx, pe, 5, "nic|a", e.enqueue); !ok {
		t.Error("revision 5 held back after a pass over 7")
	}
	if strings.Contains(logs.String(), "not put") {
		t.Errorf("warned within the limit:\n%s", logs.String())
	}
}

// TestDataPathWaitFails: programming that failed ends the wait at once,
// with an ARM error that says why; a pending endpoint ends it past the
// limit. Neither is ready, and both are told once in the log.
func TestDataPathWaitFails(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var logs strings.Builder
	d, w := newWaitOn(t, 50*time.Millisecond, &logs)
	e := &enqueued{got: make(chan string, 10)}
	const failing = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/privateEndpoints/pe2"
	const slow = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/privateEndpoints/pe3"

	d.publish(DatapathSnapshot{}, status(failing, 3, EndpointFailed, errors.New("sendmsg: message too long")))
	ok, failure := w.ready(ctx, failing, 3, "nic|b", e.enqueue)
	var ae *arm.Error
	if ok || !errors.As(failure, &ae) || ae.Code != "PrivateEndpointDataPathFailed" || !strings.Contains(ae.Message, "message too long") {
		t.Fatalf("failed programming: ready %v, failure %v; want PrivateEndpointDataPathFailed with the kernel's error", ok, failure)
	}

	if ok, failure := w.ready(ctx, slow, 4, "nic|c", e.enqueue); ok || failure != nil {
		t.Fatalf("pending within the limit: ready %v, failure %v", ok, failure)
	}
	time.Sleep(100 * time.Millisecond)
	ok, failure = w.ready(ctx, slow, 4, "nic|c", e.enqueue)
	if ok || !errors.As(failure, &ae) || ae.Code != "PrivateEndpointDataPathTimeout" {
		t.Fatalf("pending past the limit: ready %v, failure %v; want PrivateEndpointDataPathTimeout", ok, failure)
	}
	w.ready(ctx, slow, 4, "nic|c", e.enqueue)
	if n := strings.Count(logs.String(), "pe3"); n != 1 {
		t.Errorf("the timeout of pe3 logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "pe2") {
		t.Errorf("no warning naming pe2:\n%s", logs.String())
	}
	// Without a data path nothing waits.
	var none dataPathWait
	if ok, failure := none.ready(ctx, slow, 4, "nic|c", e.enqueue); !ok || failure != nil {
		t.Errorf("without a data path: ready %v, failure %v", ok, failure)
	}
}
