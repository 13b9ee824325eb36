package daemon

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/privlink/privlink/internal/datapath"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/identity"
	"github.com/privlink/privlink/internal/store/bolt"
	"github.com/privlink/privlink/internal/telemetry"
)

// countersFabric serves the counters of two endpoint translations, pe-a
// and pe-b.
type countersFabric struct{}

func (countersFabric) EndpointCounters(string) (map[string]fabric.Counters, error) {
	return map[string]fabric.Counters{"pe-a": {BytesIn: 100}, "pe-b": {BytesIn: 200}}, nil
}
func (countersFabric) PublicCounters() (map[string]fabric.Counters, error) { return nil, nil }
func (countersFabric) EndpointRefusals(string) (map[netip.Addr]uint64, error) {
	return nil, nil
}
func (countersFabric) PublicRefusals() (map[netip.Addr]uint64, error) { return nil, nil }
func (countersFabric) WatchFlows(context.Context, fabric.Kind, string, func(fabric.FlowEvent)) error {
	return nil
}

type fixedPaths datapath.Snapshot

func (p fixedPaths) Snapshot() (datapath.Snapshot, <-chan struct{}) {
	return datapath.Snapshot(p), nil
}

// TestMetricsAccess checks who may scrape /metrics and what each sees.
func TestMetricsAccess(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ids, err := identity.New(t.Context(), st, identity.Config{BaseURL: "https://127.0.0.1:1", Audience: Audience, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	admin, _, err := ids.Bootstrap(t.Context(), "ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	other, err := ids.CreatePrincipal(t.Context(), identity.CreatePrincipalOptions{DisplayName: "other", NewTenant: true}, "ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	nobody, err := ids.CreatePrincipal(t.Context(), identity.CreatePrincipalOptions{DisplayName: "nobody"}, "ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	ras, err := ids.ListRoleAssignments(t.Context(), "/subscriptions/"+nobody.SubscriptionID, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, ra := range ras {
		if err := ids.DeleteRoleAssignment(t.Context(), ra.Scope, ra.Name); err != nil {
			t.Fatal(err)
		}
	}

	// One endpoint in the operator's subscription, one in other's.
	endpoint := func(name, sub string) datapath.TranslationInfo {
		rg := "/subscriptions/" + sub + "/resourceGroups/rg/providers/"
		return datapath.TranslationInfo{Kind: datapath.KindEndpoint, Name: name, Programmed: true, Network: "net1",
			NetworkID: rg + "Microsoft.Network/virtualNetworks/v", EndpointID: rg + "Microsoft.Network/privateEndpoints/" + name,
			ServerID: rg + "Microsoft.DBforPostgreSQL/flexibleServers/s", ServerName: "s", Addr: netip.MustParseAddr("10.0.2.5"), Port: 5432}
	}
	paths := fixedPaths{Networks: []datapath.NetworkRef{{Fabric: "net1", ID: "/subscriptions/" + admin.SubscriptionID + "/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v"}},
		Translations: []datapath.TranslationInfo{endpoint("pe-a", admin.SubscriptionID), endpoint("pe-b", other.SubscriptionID)}}
	m := telemetry.NewMetrics(countersFabric{}, paths, nil)
	// A series another part registers is daemon-wide too.
	m.Registry().MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "privlink_test_daemon_wide_total", Help: "A daemon-wide test counter."}))
	h := metricsHandler(ids, m)

	token := func(c identity.Credentials) string {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {c.ClientID}, "client_secret": {c.ClientSecret},
			"scope": {Audience + "/.default"}}
		req := httptest.NewRequest("POST", "/"+c.TenantID+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		ids.Handler().ServeHTTP(rec, req)
		var out struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(rec.Body).Decode(&out); err != nil || out.AccessToken == "" {
			t.Fatalf("token of %s: %d %v", c.ClientID, rec.Code, err)
		}
		return out.AccessToken
	}
	scrape := func(tok string) (int, string) {
		req := httptest.NewRequest("GET", "/metrics", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	sees := func(body, name string) bool { return strings.Contains(body, "privateEndpoints/"+name+`"`) }

	if code, _ := scrape(""); code != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", code)
	}
	if code, _ := scrape(token(nobody)); code != http.StatusForbidden {
		t.Errorf("a principal without a role: %d, want 403", code)
	}
	// Series about the whole daemon, every tenant's activity summed up.
	daemonWide := []string{"go_goroutines", "process_", "go_build_info", telemetry.MetricAuditWatchers,
		telemetry.MetricCollectErrors, telemetry.MetricRouterRefused + "{", "privlink_test_daemon_wide_total"}
	shown := func(body string) (out []string) {
		for _, s := range daemonWide {
			if strings.Contains(body, "\n"+s) {
				out = append(out, s)
			}
		}
		return out
	}
	code, body := scrape(token(admin))
	if code != http.StatusOK || !sees(body, "pe-a") || !sees(body, "pe-b") || len(shown(body)) != len(daemonWide) {
		t.Errorf("the operator: %d, sees pe-a %v, pe-b %v, daemon-wide %q (want all of %q)", code, sees(body, "pe-a"), sees(body, "pe-b"), shown(body), daemonWide)
	}
	code, body = scrape(token(other))
	if code != http.StatusOK || sees(body, "pe-a") || !sees(body, "pe-b") || len(shown(body)) != 0 {
		t.Errorf("another tenant's principal: %d, sees pe-a %v (want false), pe-b %v (want true), daemon-wide %q (want none)",
			code, sees(body, "pe-a"), sees(body, "pe-b"), shown(body))
	}
}
