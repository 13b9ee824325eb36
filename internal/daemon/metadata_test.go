package daemon

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestMetadataEndpoints: GET /metadata/endpoints answers each api-version
// az asks for in the shape it reads (2022-09-01: one cloud, as az 2.74's
// cloud._arm_to_cli_mapper; 2015-01-01: the original document, as az
// 2.45's msrestazure), and refuses a missing or unknown api-version with
// an ARM error naming the supported ones.
func TestMetadataEndpoints(t *testing.T) {
	const base, audience = "https://127.0.0.1:8443", "https://management.privlink.local/"
	h := metadataHandler(base, audience)
	get := func(version string) (int, map[string]any) {
		t.Helper()
		target := "/metadata/endpoints"
		if version != "" {
			target += "?api-version=" + version
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
		var doc map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
			t.Fatalf("api-version %q: not JSON: %v: %s", version, err, w.Body)
		}
		return w.Code, doc
	}
	login := func(doc map[string]any) (endpoint string, audiences []any) {
		a, _ := doc["authentication"].(map[string]any)
		endpoint, _ = a["loginEndpoint"].(string)
		audiences, _ = a["audiences"].([]any)
		return endpoint, audiences
	}
	for _, v := range []string{"2022-09-01", "2019-05-01", "2020-06-01"} {
		status, doc := get(v)
		endpoint, audiences := login(doc)
		if status != http.StatusOK || doc["name"] != CloudName || doc["resourceManager"] != base+"/" ||
			endpoint != base || len(audiences) != 1 || audiences[0] != audience {
			t.Errorf("api-version %s: %d %v", v, status, doc)
		}
	}
	status, doc := get("2015-01-01")
	if endpoint, audiences := login(doc); status != http.StatusOK || doc["name"] != nil || endpoint != base ||
		len(audiences) != 1 || audiences[0] != audience || doc["graphEndpoint"] == nil {
		t.Errorf("api-version 2015-01-01: %d %v", status, doc)
	}
	for v, code := range map[string]string{"": "MissingApiVersionParameter", "2021-01-01": "InvalidApiVersionParameter"} {
		status, doc := get(v)
		e, _ := doc["error"].(map[string]any)
		if status != http.StatusBadRequest || e["code"] != code || e["target"] != "api-version" {
			t.Errorf("api-version %q: %d %v, want 400 %s", v, status, doc, code)
		}
	}
}
