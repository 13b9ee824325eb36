package postgres

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestStatusCodes checks the exact status codes and polling headers of
// every write on the wire, since the SDK accepts several: PUT and PATCH
// are 200 or 202 (never 201), DELETE 202 or 204 (never 200), actions only
// 202 with polling headers, and synchronous replies carry no polling
// header (PG resources have no provisioningState for a poller to read).
func TestStatusCodes(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	srv := serverPath("rg", "codes")
	create := map[string]any{
		"location": "westeurope",
		"sku":      map[string]any{"name": "Standard_B1ms", "tier": "Burstable"},
		"properties": map[string]any{
			"version": "15", "administratorLogin": testLogin, "administratorLoginPassword": testPassword,
			"storage": map[string]any{"storageSizeGB": 32},
		},
	}
	async := func(what string, r rawResponse, status int) {
		t.Helper()
		if r.status != status {
			t.Fatalf("%s: status %d, want %d: %s", what, r.status, status, r.body)
		}
		aa, loc := r.header.Get("Azure-AsyncOperation"), r.header.Get("Location")
		if !strings.HasPrefix(aa, "https://") || !strings.HasPrefix(loc, "https://") {
			t.Fatalf("%s: polling headers Azure-AsyncOperation=%q Location=%q", what, aa, loc)
		}
		// The status URL answers with a terminal status at once here.
		st := e.raw(http.MethodGet, strings.TrimPrefix(aa, e.srv.URL), nil)
		var body struct{ Status string }
		if st.status != http.StatusOK || json.Unmarshal(st.body, &body) != nil || body.Status != "Succeeded" {
			t.Fatalf("%s: operation status %d %s", what, st.status, st.body)
		}
		if res := e.raw(http.MethodGet, strings.TrimPrefix(loc, e.srv.URL), nil); res.status != http.StatusNoContent {
			t.Fatalf("%s: operation result %d %s", what, res.status, res.body)
		}
	}
	sync := func(what string, r rawResponse, status int) {
		t.Helper()
		if r.status != status {
			t.Fatalf("%s: status %d, want %d: %s", what, r.status, status, r.body)
		}
		if h := r.header.Get("Azure-AsyncOperation") + r.header.Get("Location") + r.header.Get("Operation-Location"); h != "" {
			t.Fatalf("%s: a synchronous reply carries polling headers %q", what, h)
		}
	}

	async("create", e.raw(http.MethodPut, srv, create), http.StatusAccepted)
	sync("get", e.raw(http.MethodGet, srv, nil), http.StatusOK)
	sync("PUT tags only", e.raw(http.MethodPut, srv, merge(create, "tags", map[string]string{"a": "b"})), http.StatusOK)
	sync("PATCH tags", e.raw(http.MethodPatch, srv, map[string]any{"tags": map[string]string{"c": "d"}}), http.StatusOK)
	sync("PATCH sku", e.raw(http.MethodPatch, srv, map[string]any{"sku": map[string]any{"name": "Standard_B2s"}}), http.StatusOK)
	async("PATCH password", e.raw(http.MethodPatch, srv, map[string]any{"properties": map[string]any{"administratorLoginPassword": "New-Passw0rd-1"}}), http.StatusAccepted)
	async("PATCH public access", e.raw(http.MethodPatch, srv, map[string]any{"properties": map[string]any{"network": map[string]any{"publicNetworkAccess": "Disabled"}}}), http.StatusAccepted)
	async("stop", e.raw(http.MethodPost, srv+"/stop", nil), http.StatusAccepted)
	async("start", e.raw(http.MethodPost, srv+"/start", nil), http.StatusAccepted)
	async("restart", e.raw(http.MethodPost, srv+"/restart", nil), http.StatusAccepted)
	async("restart with a body", e.raw(http.MethodPost, srv+"/restart", map[string]any{"restartWithFailover": false}), http.StatusAccepted)
	sync("GET of an action", e.raw(http.MethodGet, srv+"/start", nil), http.StatusMethodNotAllowed)

	fw := srv + "/firewallRules/office"
	rule := map[string]any{"properties": map[string]any{"startIpAddress": "203.0.113.1", "endIpAddress": "203.0.113.9"}}
	sync("firewall create", e.raw(http.MethodPut, fw, rule), http.StatusOK)
	sync("firewall update", e.raw(http.MethodPut, fw, rule), http.StatusOK)
	sync("firewall list", e.raw(http.MethodGet, srv+"/firewallRules", nil), http.StatusOK)
	async("firewall delete", e.raw(http.MethodDelete, fw, nil), http.StatusAccepted)
	sync("firewall delete again", e.raw(http.MethodDelete, fw, nil), http.StatusNoContent)

	cfg := srv + "/configurations/"
	async("dynamic configuration", e.raw(http.MethodPut, cfg+"work_mem", map[string]any{"properties": map[string]any{"value": "8192", "source": "user-override"}}), http.StatusAccepted)
	sync("same value again", e.raw(http.MethodPut, cfg+"work_mem", map[string]any{"properties": map[string]any{"value": "8192", "source": "user-override"}}), http.StatusOK)
	sync("static configuration", e.raw(http.MethodPatch, cfg+"max_connections", map[string]any{"properties": map[string]any{"value": "200", "source": "user-override"}}), http.StatusOK)
	sync("configuration list", e.raw(http.MethodGet, srv+"/configurations", nil), http.StatusOK)

	names := "/subscriptions/" + sub + "/providers/Microsoft.DBforPostgreSQL/checkNameAvailability"
	sync("checkNameAvailability", e.raw(http.MethodPost, names, map[string]any{"name": "codes", "type": "Microsoft.DBforPostgreSQL/flexibleServers"}), http.StatusOK)

	async("delete", e.raw(http.MethodDelete, srv, nil), http.StatusAccepted)
	sync("delete again", e.raw(http.MethodDelete, srv, nil), http.StatusNoContent)
	sync("action on a missing server", e.raw(http.MethodPost, srv+"/restart", nil), http.StatusNotFound)
}

func merge(m map[string]any, k string, v any) map[string]any {
	out := map[string]any{}
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}
