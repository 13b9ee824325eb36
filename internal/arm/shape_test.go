package arm

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/store/bolt"
)

// TestRouterRefusesMisplacedTypes: a path that names a type where the
// type does not live is refused before any handler runs. Served, each of
// these read or wrote documents other than those of the scope the caller
// was authorized on: a role on one resource wrote every resource of its
// group through ".../{resource}/providers/{ns}/{type}/{name}", a role on a
// group listed every group of the subscription through
// ".../resourceGroups/{g}/providers/Microsoft.Resources/resourceGroups",
// and resources were created outside any resource group.
func TestRouterRefusesMisplacedTypes(t *testing.T) {
	st := storeWith(t, "/subscriptions/s/resourceGroups/rg")
	rt := NewRouter(st, oneCaller{grantsExcept("")}, slog.New(slog.DiscardHandler))
	var called []string
	h := func(ctx context.Context, r *Request) (*Response, error) {
		called = append(called, r.HTTP.Method+" "+r.ID.String())
		return OK(map[string]any{}), nil
	}
	list := func(ctx context.Context, r *Request) ([]any, error) {
		called = append(called, "LIST "+r.ID.String())
		return nil, nil
	}
	rt.Register(
		&ResourceType{Type: "Microsoft.Test/things", APIVersions: []string{"1"}, Get: h, Put: h, Delete: h, List: list,
			Actions: map[string]Handler{"act": h}},
		&ResourceType{Type: "Microsoft.Test/exts", APIVersions: []string{"1"}, Get: h, Put: h, Extension: true},
		&ResourceType{Type: "Microsoft.Resources/resourceGroups", APIVersions: []string{"1"}, Get: h, Put: h, List: list, NoParentCheck: true},
	)
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	send := func(method, path string) (int, string, string) {
		t.Helper()
		return sendTo(t, srv, method, path+"?api-version=1")
	}
	const thing = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Test/things/a"
	for _, c := range []struct{ method, path, code string }{
		{http.MethodPut, thing + "/providers/Microsoft.Test/things/b", "InvalidResourceType"},
		{http.MethodDelete, thing + "/providers/Microsoft.Test/things/b", "InvalidResourceType"},
		{http.MethodPost, thing + "/providers/Microsoft.Test/things/b/act", "InvalidResourceType"},
		{http.MethodGet, thing + "/providers/Microsoft.Test/things", "InvalidResourceType"},
		{http.MethodPut, "/subscriptions/s/providers/Microsoft.Test/things/x", "InvalidResourceType"},
		{http.MethodPost, "/subscriptions/s/providers/Microsoft.Test/things/x/act", "InvalidResourceType"},
		{http.MethodGet, "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Resources/resourceGroups", "InvalidResourceType"},
		{http.MethodPut, "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Resources/resourceGroups/other", "InvalidResourceType"},
		{http.MethodPut, "/subscriptions/s/providers/Microsoft.Resources/resourceGroups/other", "InvalidResourceType"},
		{http.MethodPut, "/subscriptions/s/resourceGroups/rg%2Fproviders%2FMicrosoft.Test%2Fthings%2Fa", "InvalidRequestUri"},
		{http.MethodGet, "/subscriptions/s/resourceGroups/r%25g", "InvalidRequestUri"},
	} {
		if status, code, body := send(c.method, c.path); status < 400 || code != c.code {
			t.Errorf("%s %s: %d %s, want %s", c.method, c.path, status, body, c.code)
		}
	}
	if len(called) > 0 {
		t.Fatalf("handlers ran for refused paths: %q", called)
	}
	// What lives there is served.
	for _, c := range []struct{ method, path string }{
		{http.MethodPut, thing},
		{http.MethodPost, thing + "/act"},
		{http.MethodPut, thing + "/providers/Microsoft.Test/exts/e"},
		{http.MethodPut, "/subscriptions/s/providers/Microsoft.Test/exts/e"},
		{http.MethodPut, "/subscriptions/s/resourceGroups/rg"},
		{http.MethodGet, "/subscriptions/s/resourceGroups"},
		{http.MethodGet, "/subscriptions/s/providers/Microsoft.Test/things"},
	} {
		if status, _, body := send(c.method, c.path); status != http.StatusOK {
			t.Errorf("%s %s: %d %s", c.method, c.path, status, body)
		}
	}
	if _, _, body := send(http.MethodGet, "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Test/things"); body != `{"value":[]}` {
		t.Errorf("an empty list is %s, want {\"value\":[]}", body)
	}
}

// storeWith opens a store holding a document for each of the IDs.
func storeWith(tb testing.TB, ids ...string) store.Store {
	tb.Helper()
	st, err := bolt.Open(filepath.Join(tb.TempDir(), "s.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	for _, s := range ids {
		id, err := ParseID(s)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := st.Txn(tb.Context(), func(tx store.Tx) error { return Save(tx, id, map[string]any{"id": s}) }); err != nil {
			tb.Fatal(err)
		}
	}
	return st
}

// sendTo sends method to srv's target (path and query) with an empty JSON
// object as the body of all but GET, and returns the status, the ARM
// error code (if any) and the body.
func sendTo(t testing.TB, srv *httptest.Server, method, target string) (status int, code, body string) {
	t.Helper()
	var rd io.Reader
	if method != http.MethodGet {
		rd = strings.NewReader(`{}`)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, srv.URL+target, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct{ Error struct{ Code string } }
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e.Error.Code, string(b)
}
