package postgres

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
)

// TestOddBodies sends bodies of every odd shape to every write: each is
// answered with a 4xx or a success, never a 5xx (a panic would be one).
func TestOddBodies(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustCreate("rg", "odd")
	srv := serverPath("rg", "odd")
	bodies := []string{
		``, `null`, `{}`, `[]`, `"x"`, `1`, `{"properties":null}`, `{"properties":[]}`, `{"properties":{}}`,
		`{"location":null,"sku":null,"identity":null,"tags":null}`,
		`{"location":"westeurope","properties":{"storage":null,"backup":null,"network":null,"authConfig":null,"highAvailability":null,"replica":null,"cluster":null,"maintenanceWindow":null,"dataEncryption":null}}`,
		`{"location":"westeurope","sku":{},"properties":{"storage":{},"backup":{},"network":{},"authConfig":{},"highAvailability":{},"replica":{},"cluster":{},"maintenanceWindow":{},"dataEncryption":{}}}`,
		`{"location":"westeurope","properties":{"storage":{"storageSizeGB":99999999999}}}`,
		`{"location":"westeurope","properties":{"storage":{"storageSizeGB":-1},"backup":{"backupRetentionDays":-5}}}`,
		`{"location":"westeurope","properties":{"version":"","administratorLogin":"","administratorLoginPassword":""}}`,
		`{"location":"westeurope","tags":{"a":null},"properties":{"pointInTimeUTC":"not a time"}}`,
		`{"properties":{"value":null,"source":null}}`, `{"properties":{"value":"","source":""}}`,
		`{"properties":{"startIpAddress":null,"endIpAddress":""}}`, `{"name":null,"type":null}`, `{"name":"","type":""}`,
		`{"restartWithFailover":null,"failoverMode":null}`, `{"restartWithFailover":"yes"}`,
	}
	targets := []struct{ method, path string }{
		{http.MethodPut, srv}, {http.MethodPut, serverPath("rg", "odd-new")}, {http.MethodPatch, srv},
		{http.MethodPost, srv + "/restart"}, {http.MethodPost, srv + "/stop"}, {http.MethodPost, srv + "/start"},
		{http.MethodPut, srv + "/firewallRules/r1"}, {http.MethodPut, srv + "/configurations/work_mem"},
		{http.MethodPatch, srv + "/configurations/timezone"}, {http.MethodPut, srv + "/configurations/nosuch"},
		{http.MethodPost, "/subscriptions/" + sub + "/providers/Microsoft.DBforPostgreSQL/checkNameAvailability"},
		{http.MethodPost, "/subscriptions/" + sub + "/providers/Microsoft.DBforPostgreSQL/locations/westeurope/checkNameAvailability"},
	}
	for _, tg := range targets {
		for _, b := range bodies {
			var body any
			if b != "" {
				body = []byte(b)
			}
			r := e.raw(tg.method, tg.path, body)
			if r.status >= 500 {
				t.Errorf("%s %s %s: %d %s", tg.method, tg.path, b, r.status, r.body)
			}
		}
	}
	for _, p := range []string{srv, srv + "/firewallRules", srv + "/configurations", srv + "/privateLinkResources", srv + "/firewallRules/r1"} {
		if r := e.raw(http.MethodGet, p, nil); r.status >= 500 {
			t.Errorf("GET %s: %d %s", p, r.status, r.body)
		}
	}
}

// TestPrivateDNSZoneSuffix drives the tenant-level call with the SDK's
// client against the handler mounted as the daemon would.
func TestPrivateDNSZoneSuffix(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc(PrivateDNSZoneSuffixPath, ServePrivateDNSZoneSuffix)
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	opts := &arm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud: cloud.Configuration{
			ActiveDirectoryAuthorityHost: srv.URL + "/",
			Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Endpoint: srv.URL, Audience: "https://management.privlink.test"},
			},
		},
		Transport: srv.Client(), Retry: policy.RetryOptions{MaxRetries: -1},
	}}
	e := newEnv(t)
	c, err := pg.NewPrivateDNSZoneSuffixClient(e.srv.Cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Get(e.ctx, nil)
	if err != nil || res.Value == nil || *res.Value != "postgres.database.azure.com" {
		t.Fatalf("suffix: %v %v", res.Value, err)
	}
	if r := rawTo(t, e.ctx, srv.URL, srv.Client(), http.MethodGet, PrivateDNSZoneSuffixPath, nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", r.status)
	}
}
