package arm

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzRouterPath sends fuzzed request targets (path and query) with each
// method through a router serving types of every shape the providers use
// (top-level, nested child, actions, an extension type, provider-level
// actions outside resource groups, resource groups, the generic list),
// with a caller allowed everything. The router must answer every request
// (no panic: ServeHTTP is called directly, so a panic fails the target),
// never with a 5xx, in bounded time; and a handler must only ever see an
// ID of its type's shape: no scope unless the type is an extension type,
// a resource group unless the type lives outside them, and an ID whose
// String parses back to it (documents are keyed by these fields).
func FuzzRouterPath(f *testing.F) {
	st := storeWith(f, "/subscriptions/s/resourceGroups/rg", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Test/things/a")
	rt := NewRouter(st, oneCaller{grantsExcept("")}, slog.New(slog.DiscardHandler))
	var bad error // set by a handler that saw an ID of the wrong shape
	check := func(r *Request, t *ResourceType) {
		id := r.ID
		switch {
		case id.Scope != nil && !t.Extension:
			bad = fmt.Errorf("%s handler got scope %s", t.Type, id.Scope)
		case id.ResourceGroup == "" && len(id.Names) > 0 && !t.NoResourceGroup && !t.Extension:
			bad = fmt.Errorf("%s handler got no resource group: %s", t.Type, id)
		default:
			back, err := ParseID(id.String())
			if err != nil || !back.Equal(id) || DocKey(back) != DocKey(id) {
				bad = fmt.Errorf("%s handler got %#v, which renders %q and parses back to %#v (%v)", t.Type, id, id, back, err)
			}
		}
	}
	typ := func(t *ResourceType) *ResourceType {
		h := func(ctx context.Context, r *Request) (*Response, error) {
			check(r, t)
			return OK(map[string]any{"id": r.ID.String()}), nil
		}
		t.APIVersions = []string{"1"}
		t.Get, t.Put, t.Patch, t.Delete = h, h, h, h
		t.List = func(ctx context.Context, r *Request) ([]any, error) {
			check(r, t)
			return []any{map[string]any{"id": r.ID.String() + "/x"}, map[string]any{"id": 7}}, nil
		}
		if t.Actions != nil {
			for k := range t.Actions {
				t.Actions[k] = h
			}
		}
		return t
	}
	rt.Register(
		typ(&ResourceType{Type: "Microsoft.Test/things", Actions: map[string]Handler{"act": nil}}),
		typ(&ResourceType{Type: "Microsoft.Test/things/children"}),
		typ(&ResourceType{Type: "Microsoft.Test/exts", Extension: true}),
		typ(&ResourceType{Type: "Microsoft.Test", NoResourceGroup: true, Actions: map[string]Handler{"checkNameAvailability": nil}}),
		typ(&ResourceType{Type: "Microsoft.Resources/resourceGroups", NoParentCheck: true}),
		typ(&ResourceType{Type: "Microsoft.Resources/resources", NoParentCheck: true}),
	)
	methods := []string{http.MethodGet, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodPost, http.MethodHead, "OPTIONS"}
	for _, s := range idSeeds {
		f.Add(uint8(0), s+"?api-version=1")
	}
	const thing = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Test/things/a"
	for i, s := range []string{
		thing + "?api-version=1", thing + "/children/c?api-version=1", thing + "/children?api-version=1&$top=1&$skiptoken=1",
		thing + "/act?api-version=1", thing + "/providers/Microsoft.Test/exts/e?api-version=1",
		thing + "/providers/Microsoft.Test/things/b?api-version=1", "/subscriptions/s/providers/Microsoft.Test/checkNameAvailability?api-version=1",
		"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Resources/resourceGroups?api-version=1",
		"/subscriptions/s/resourceGroups?api-version=1&$skiptoken=-5", "/subscriptions/s/resourceGroups/rg/resources?api-version=1&$top=0",
		"/subscriptions/s/providers/Microsoft.Test/locations/westeurope/operations/x?api-version=1",
		"/subscriptions/S/RESOURCEGROUPS/RG/PROVIDERS/microsoft.test/THINGS/A/ACT?api-version=1",
		"/subscriptions?api-version=1", "/subscriptions/s?api-version=1",
	} {
		f.Add(uint8(i), s)
	}
	f.Fuzz(func(t *testing.T, m uint8, target string) {
		u, err := url.Parse("https://privlink.test" + target)
		if err != nil || !strings.HasPrefix(target, "/") || u.Host != "privlink.test" {
			return // net/http answers 400 before any handler
		}
		method := methods[int(m)%len(methods)]
		var body *strings.Reader
		if method == http.MethodPut || method == http.MethodPatch || method == http.MethodPost {
			body = strings.NewReader(`{"properties":{}}`)
		} else {
			body = strings.NewReader("")
		}
		req := httptest.NewRequestWithContext(t.Context(), method, "https://privlink.test/", body)
		req.URL, req.RequestURI = u, target
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		bad = nil
		done := make(chan struct{})
		go func() {
			defer close(done)
			rt.ServeHTTP(w, req)
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s %s: no answer within 30 s", method, target)
		}
		if w.Code >= 500 {
			t.Fatalf("%s %s: %d %s", method, target, w.Code, w.Body)
		}
		if bad != nil {
			t.Fatalf("%s %s: %v", method, target, bad)
		}
	})
}
