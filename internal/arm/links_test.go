package arm

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/privlink/privlink/internal/store/bolt"
)

func TestLinkedRefs(t *testing.T) {
	var body any
	if err := json.Unmarshal([]byte(`{"Properties":{"ipConfigurations":[
		{"properties":{"subnet":{"id":"/s/1"}}},
		{"properties":{"subnet":{"ID":" "}}},
		{"properties":{"subnet":{"id":7}}},
		{"properties":{"subnet":{"id":"/s/2"}}}]}}`), &body); err != nil {
		t.Fatal(err)
	}
	got := Link{Path: "properties.ipConfigurations[].properties.subnet.id"}.LinkedRefs(body)
	want := []LinkedRef{
		{Path: "properties.ipConfigurations[0].properties.subnet.id", Raw: "/s/1"},
		{Path: "properties.ipConfigurations[3].properties.subnet.id", Raw: "/s/2"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("LinkedRefs = %+v, want %+v", got, want)
	}
	if got := (Link{Path: "properties.missing.id"}).LinkedRefs(body); got != nil {
		t.Errorf("missing path: %+v", got)
	}
}

// grantsExcept allows everything but one action.
type grantsExcept string

func (g grantsExcept) Allowed(action, scope string) bool {
	return !strings.EqualFold(action, string(g))
}
func (grantsExcept) AnyIn(string) bool { return true }

type oneCaller struct{ g Grants }

func (d oneCaller) Authenticate(*http.Request) (*Caller, error) {
	return &Caller{ClientID: "c", ObjectID: "o", Grants: d.g}, nil
}
func (oneCaller) SubscriptionExists(context.Context, string) (bool, error) { return true, nil }

// TestRouterChecksLinksAndMediaType: the router refuses a body whose
// declared reference the caller may not join, and a body not sent as JSON,
// before the handler runs.
func TestRouterChecksLinksAndMediaType(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rt := NewRouter(st, oneCaller{grantsExcept(JoinSubnetAction)}, slog.New(slog.DiscardHandler))
	var called int
	h := func(ctx context.Context, r *Request) (*Response, error) { called++; return OK(map[string]any{}), nil }
	rt.Register(&ResourceType{Type: "Microsoft.Test/things", APIVersions: []string{"1"}, Put: h, NoResourceGroup: true,
		Links: []Link{{Path: "properties.subnet.id", Type: "Microsoft.Network/virtualNetworks/subnets", Action: JoinSubnetAction}}})
	srv := httptest.NewServer(rt)
	defer srv.Close()
	subnet := "/subscriptions/s/resourceGroups/theirs/providers/Microsoft.Network/virtualNetworks/v/subnets/default"
	send := func(ct, body string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/subscriptions/s/providers/Microsoft.Test/things/x?api-version=1", strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var e map[string]any
		_ = json.Unmarshal(b, &e)
		return resp.StatusCode, e
	}
	code := func(e map[string]any) string {
		m, _ := e["error"].(map[string]any)
		s, _ := m["code"].(string)
		return s
	}

	status, e := send("application/json", `{"properties":{"subnet":{"id":"`+subnet+`"}}}`)
	if status != http.StatusForbidden || code(e) != "LinkedAuthorizationFailed" {
		t.Errorf("reference without join: %d %v", status, e)
	}
	if m := e["error"].(map[string]any); m["target"] != "properties.subnet.id" || !strings.Contains(m["message"].(string), subnet) {
		t.Errorf("the refusal names neither the property nor the linked scope: %v", m)
	}
	for _, ct := range []string{"text/plain", ""} {
		if status, e := send(ct, `{}`); status != http.StatusUnsupportedMediaType || code(e) != "UnsupportedMediaType" {
			t.Errorf("Content-Type %q: %d %v", ct, status, e)
		}
	}
	if called != 0 {
		t.Fatalf("the handler ran %d times for refused requests", called)
	}
	if status, e := send("application/json; charset=utf-8", `{"properties":{}}`); status != http.StatusOK {
		t.Errorf("a body without references: %d %v", status, e)
	}
	if called != 1 {
		t.Errorf("handler calls = %d", called)
	}
}
