package arm

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// readOnly allows the read actions only, as the Reader role does, and
// records what it was asked.
type readOnly struct{ asked *[]string }

func (g readOnly) Allowed(action, scope string) bool {
	*g.asked = append(*g.asked, action)
	return strings.HasSuffix(action, "/read")
}
func (readOnly) AnyIn(string) bool { return true }

// TestRouterActionMethods: an action is served by its one method (POST for
// Actions, GET for ReadActions) and needs its RBAC action; the other
// method is 405 before any handler runs. Served, a GET of a POST action
// needed only .../read: a Reader's GET .../start started a server unless
// the handler itself checked the method.
func TestRouterActionMethods(t *testing.T) {
	st := storeWith(t, "/subscriptions/s/resourceGroups/rg", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Test/things/a")
	var asked []string
	rt := NewRouter(st, oneCaller{readOnly{&asked}}, slog.New(slog.DiscardHandler))
	var called []string
	h := func(ctx context.Context, r *Request) (*Response, error) {
		called = append(called, r.HTTP.Method+" "+r.Action)
		return OK(map[string]any{}), nil
	}
	rt.Register(&ResourceType{Type: "Microsoft.Test/things", APIVersions: []string{"1"}, Get: h,
		Actions: map[string]Handler{"start": h}, ReadActions: map[string]Handler{"capabilities": h}})
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	send := func(method, path string) (int, string) {
		t.Helper()
		status, code, _ := sendTo(t, srv, method, path+"?api-version=1")
		return status, code
	}
	const thing = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Test/things/a"
	for _, c := range []struct {
		method, path string
		status       int
		code         string
	}{
		{http.MethodGet, thing + "/start", http.StatusMethodNotAllowed, "MethodNotAllowed"},
		{http.MethodPut, thing + "/start", http.StatusMethodNotAllowed, "MethodNotAllowed"},
		{http.MethodPost, thing + "/capabilities", http.StatusMethodNotAllowed, "MethodNotAllowed"},
		{http.MethodDelete, thing + "/capabilities", http.StatusMethodNotAllowed, "MethodNotAllowed"},
		{http.MethodPost, thing + "/start", http.StatusForbidden, "AuthorizationFailed"},
	} {
		if status, code := send(c.method, c.path); status != c.status || code != c.code {
			t.Errorf("%s %s: %d %s, want %d %s", c.method, c.path, status, code, c.status, c.code)
		}
	}
	if len(called) > 0 {
		t.Fatalf("handlers ran for refused requests: %q", called)
	}
	asked = nil
	if status, code := send(http.MethodGet, thing+"/CAPABILITIES"); status != http.StatusOK {
		t.Fatalf("GET of a read action: %d %s", status, code)
	}
	if len(asked) != 1 || asked[0] != "Microsoft.Test/things/capabilities/read" || len(called) != 1 || called[0] != "GET capabilities" {
		t.Fatalf("GET of a read action asked %q and ran %q", asked, called)
	}
}
