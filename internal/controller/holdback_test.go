package controller

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// enqueued hands over what a dataPathWait enqueues.
type enqueued struct{ got chan string }

func (e *enqueued) enqueue(item string) { e.got <- item }

// newWaitOn returns a dataPathWait on a Datapath that never runs: the test
// publishes its passes, as its reconcile would.
func newWaitOn(t *testing.T, limit time.Duration, logs *strings.Builder) (*Datapath, *dataPathWait) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(logs, nil))
	d := NewDatapath(openStore(t), nil, nil, log)
	return d, &dataPathWait{dp: d, log: log, what: "finishing its operation", limit: limit}
}

func TestDataPathWaitHoldsUntilObserved(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var logs strings.Builder
	d, w := newWaitOn(t, time.Minute, &logs)
	e := &enqueued{got: make(chan string, 10)}
	const pe = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/privateEndpoints/PE1"

	if w.ready(ctx, pe, 7, "nic|a", e.enqueue) {
		t.Fatal("ready before the data path saw the endpoint")
	}
	// A pass computed from an older revision wakes the item, which is
	// still not ready.
	d.publish(DatapathSnapshot{}, map[string]int64{strings.ToLower(pe): 6})
	select {
	case item := <-e.got:
		if item != "nic|a" {
			t.Fatalf("enqueued %q, want nic|a", item)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the data path's pass did not enqueue the held item")
	}
	if w.ready(ctx, pe, 7, "nic|a", e.enqueue) {
		t.Fatal("ready after a pass over revision 6, want 7")
	}
	// The pass over revision 7 (the ID's case does not matter) releases it.
	d.publish(DatapathSnapshot{}, map[string]int64{strings.ToLower(pe): 7})
	select {
	case <-e.got:
	case <-time.After(10 * time.Second):
		t.Fatal("the second pass did not enqueue the held item")
	}
	if !w.ready(ctx, pe, 7, "nic|a", e.enqueue) {
		t.Fatal("not ready after the data path processed revision 7")
	}
	// A later revision of the same endpoint waits again; an earlier one
	// does not.
	if w.ready(ctx, pe, 8, "nic|a", e.enqueue) {
		t.Error("revision 8 ready after a pass over 7")
	}
	if !w.ready(ctx, pe, 5, "nic|a", e.enqueue) {
		t.Error("revision 5 held back after a pass over 7")
	}
	if strings.Contains(logs.String(), "not caught up") {
		t.Errorf("warned within the limit:\n%s", logs.String())
	}
}

func TestDataPathWaitGivesUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var logs strings.Builder
	_, w := newWaitOn(t, 50*time.Millisecond, &logs)
	e := &enqueued{got: make(chan string, 10)}
	const pe = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/privateEndpoints/pe2"
	if w.ready(ctx, pe, 3, "nic|b", e.enqueue) {
		t.Fatal("ready before the data path saw the endpoint")
	}
	time.Sleep(100 * time.Millisecond)
	if !w.ready(ctx, pe, 3, "nic|b", e.enqueue) {
		t.Fatal("still held back past the limit")
	}
	if !strings.Contains(logs.String(), "not caught up") || !strings.Contains(logs.String(), "pe2") {
		t.Errorf("no warning naming the endpoint:\n%s", logs.String())
	}
	// Without a data path nothing waits.
	var none dataPathWait
	if !none.ready(ctx, pe, 3, "nic|b", e.enqueue) {
		t.Error("held back without a data path")
	}
}
