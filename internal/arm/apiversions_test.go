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

func TestVersionTable(t *testing.T) {
	tab := NewVersionTable("2022-12-01", "2025-01-01-preview", "2023-06-01-preview", "2025-01-01", "2022-12-01").
		Since("Microsoft.Test/things/children", "2023-06-01-preview")
	want := []string{"2025-01-01", "2025-01-01-preview", "2023-06-01-preview", "2022-12-01"}
	if got := tab.All(); !slices.Equal(got, want) {
		t.Errorf("All() = %v, want newest first, a stable before its preview, no duplicates: %v", got, want)
	}
	if got := tab.For("microsoft.test/THINGS/children"); !slices.Equal(got, want[:3]) {
		t.Errorf("For(a type added later) = %v, want %v", got, want[:3])
	}
	if got := tab.For("Microsoft.Test/things"); !slices.Equal(got, want) {
		t.Errorf("For(a type in every version) = %v", got)
	}
	for _, bad := range []string{"2025-1-01", "latest", "2025-01-01preview", "2025-01-01-", "2025-01-01-Preview!"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewVersionTable(%q) did not panic", bad)
				}
			}()
			NewVersionTable(bad)
		}()
	}
}

// TestRouterAPIVersions: a provider's resourceTypes list each type's
// versions newest first whatever order the provider gave, as ARM does
// (az takes the first stable one); a version is matched without regard to
// case; an unknown one is refused naming the supported ones.
func TestRouterAPIVersions(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rt := NewRouter(st, oneCaller{grantsExcept("")}, slog.New(slog.DiscardHandler))
	h := func(ctx context.Context, r *Request) (*Response, error) {
		return OK(map[string]any{"v": r.APIVersion}), nil
	}
	versions := []string{"2022-12-01", "2025-01-01-preview", "2024-08-01"}
	rt.Register(&ResourceType{Type: "Microsoft.Test/things", APIVersions: versions, Get: h, NoResourceGroup: true})
	if !slices.Equal(versions, []string{"2022-12-01", "2025-01-01-preview", "2024-08-01"}) {
		t.Errorf("Register reordered the provider's own slice: %v", versions)
	}
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	get := func(path string) (int, map[string]any) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}

	status, m := get("/subscriptions/s/providers/Microsoft.Test?api-version=2021-04-01")
	if status != http.StatusOK {
		t.Fatalf("provider: %d %v", status, m)
	}
	rts := m["resourceTypes"].([]any)
	var got []string
	for _, v := range rts[0].(map[string]any)["apiVersions"].([]any) {
		got = append(got, v.(string))
	}
	if want := []string{"2025-01-01-preview", "2024-08-01", "2022-12-01"}; !slices.Equal(got, want) {
		t.Errorf("resourceTypes apiVersions = %v, want %v", got, want)
	}

	if status, m := get("/subscriptions/s/providers/Microsoft.Test/things/x?api-version=2025-01-01-PREVIEW"); status != http.StatusOK {
		t.Errorf("a known version in other case: %d %v", status, m)
	}
	status, m = get("/subscriptions/s/providers/Microsoft.Test/things/x?api-version=2019-01-01")
	e, _ := m["error"].(map[string]any)
	if status != http.StatusBadRequest || e["code"] != "NoRegisteredProviderFound" ||
		!strings.Contains(e["message"].(string), "'2025-01-01-preview', '2024-08-01', '2022-12-01'") {
		t.Errorf("an unknown version: %d %v", status, m)
	}
}
