package datapath

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/names"
)

// TestEndpointStatuses: what a pass reports per endpoint from its routers'
// results: a translation the fabric names failed is Failed (or Pending
// when only a namespace is missing), a withdrawal held closed is in place,
// one that could not be held is Failed, a router not converged this pass
// is as it last converged (in place), a router or network not there yet
// is Pending for the endpoints that want a translation there.
func TestEndpointStatuses(t *testing.T) {
	id := func(typ, name string) arm.ResourceID {
		r, err := arm.ParseID(fmt.Sprintf("/subscriptions/s/resourceGroups/g/providers/%s/%s", typ, name))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	vnet := func(name string) arm.ResourceID { return id("Microsoft.Network/virtualNetworks", name) }
	pe := func(name string) arm.ResourceID { return id("Microsoft.Network/privateEndpoints", name) }
	srv := id("Microsoft.DBforPostgreSQL/flexibleServers", "srv1")
	networks := map[string]*NetworkRouter{}
	for _, n := range []string{"n1", "n2", "n3"} {
		networks[names.Key(vnet(n))] = &NetworkRouter{ID: vnet(n)}
	}
	// pe "wanted/network": which endpoints want a translation, and where.
	cases := []struct {
		name, network string
		wanted        bool
	}{
		{"failed", "n1", true}, {"held", "n1", false}, {"open", "n1", false}, {"fine", "n1", true}, {"nosvc", "n1", true},
		{"quiet", "n2", true}, {"norouter", "n3", true}, {"rejected", "n3", false}, {"nonetwork", "n9", true},
	}
	revs := map[string]int64{strings.ToLower(pe("unknown").String()): 3}
	var infos []peInfo
	var eps []endpoint
	for i, c := range cases {
		p := pe(c.name)
		revs[strings.ToLower(p.String())] = int64(10 + i)
		infos = append(infos, peInfo{id: p, network: vnet(c.network), target: srv, approved: c.wanted})
		if c.wanted {
			eps = append(eps, endpoint{id: p, network: vnet(c.network)})
		}
	}
	kernel := errors.New("netlink: message too long")
	missing := fmt.Errorf("service: %w", fabric.ErrNotFound)
	results := map[string]error{
		names.Key(vnet("n1")): &fabric.TranslationError{
			Failed: map[string]error{names.Key(pe("failed")): kernel, names.Key(pe("open")): kernel, names.Key(pe("nosvc")): missing},
			Held:   []string{names.Key(pe("held"))},
			Err:    errors.Join(kernel, missing),
		},
		names.Key(vnet("n3")): fmt.Errorf("router: %w", fabric.ErrNotFound),
	}
	got := endpointStatuses(revs, infos, eps, networks, results)
	want := map[string]EndpointState{
		"failed": EndpointFailed, "held": EndpointInPlace, "open": EndpointFailed, "fine": EndpointInPlace, "nosvc": EndpointPending,
		"quiet": EndpointInPlace, "norouter": EndpointPending, "rejected": EndpointInPlace, "nonetwork": EndpointPending, "unknown": EndpointInPlace,
	}
	for name, state := range want {
		st, ok := got[strings.ToLower(pe(name).String())]
		if !ok || st.State != state || (state == EndpointFailed) != errors.Is(st.Err, kernel) {
			t.Errorf("%s: %+v (listed %v), want %s", name, st, ok, state)
		}
	}
	if st := got[strings.ToLower(pe("fine").String())]; st.Rev != 13 {
		t.Errorf("fine: revision %d, want the one the pass read (13)", st.Rev)
	}
}

// TestOnlyPending: a router's result waits for a namespace only when every
// error in it is a missing namespace; one that also failed otherwise (a
// revocation, a kernel refusal) is a failure, logged and retried.
func TestOnlyPending(t *testing.T) {
	missing := fmt.Errorf("service pg1: %w", fabric.ErrNotFound)
	other := errors.New("conntrack: operation not permitted")
	for _, c := range []struct {
		name string
		te   fabric.TranslationError
		want bool
	}{
		{"namespace missing", fabric.TranslationError{Failed: map[string]error{"a": missing}, Err: errors.Join(missing)}, true},
		{"wrapped join", fabric.TranslationError{Failed: map[string]error{"a": missing}, Err: fmt.Errorf("links: %w", errors.Join(missing, missing))}, true},
		{"and a failed revocation", fabric.TranslationError{Failed: map[string]error{"a": missing}, Err: errors.Join(missing, other)}, false},
		{"wrapped join with another", fabric.TranslationError{Failed: map[string]error{"a": missing}, Err: fmt.Errorf("x: %w", errors.Join(missing, other))}, false},
		{"kernel", fabric.TranslationError{Failed: map[string]error{"a": other}, Err: other}, false},
		{"held", fabric.TranslationError{Failed: map[string]error{"a": missing}, Held: []string{"b"}, Err: missing}, false},
		{"nothing failed", fabric.TranslationError{Err: other}, false},
	} {
		if got := onlyPending(&c.te); got != c.want {
			t.Errorf("%s: onlyPending %v, want %v", c.name, got, c.want)
		}
	}
}
