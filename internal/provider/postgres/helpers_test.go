package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azarm "github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/arm/armtest"
	"github.com/privlink/privlink/internal/provider/resources"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/store/bolt"
)

const (
	sub  = armtest.Subscription
	sub2 = "00000000-0000-0000-0000-00000000b002"
	// testPassword is the administrator password of the test servers; no
	// response and no stored byte may ever contain it.
	testPassword = "Correct-Horse-42"
	testLogin    = "pgadmin"
)

var poll = &runtime.PollUntilDoneOptions{Frequency: armtest.PollFrequency}

// env is a router with the postgres and resources providers over a bolt
// store, and the real SDK clients pointed at it.
type env struct {
	t       *testing.T
	ctx     context.Context
	st      store.Store
	srv     *armtest.Server
	prov    *Provider
	groups  *armresources.ResourceGroupsClient
	servers *pg.ServersClient
	rules   *pg.FirewallRulesClient
	configs *pg.ConfigurationsClient
	links   *pg.PrivateLinkResourcesClient
	names   *pg.NameAvailabilityClient
}

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("close store: %v", err)
		}
	})
	return st
}

func newEnv(t *testing.T, opts ...Option) *env {
	t.Helper()
	st := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	prov := New(st, append([]Option{WithVersions([]string{"15.18"})}, opts...)...)
	srv := armtest.NewServer(t, st, allTypes(st, prov)...)
	e := &env{t: t, ctx: ctx, st: st, srv: srv, prov: prov}
	e.clients(sub, srv.Cred, srv.Options)
	return e
}

// allTypes is what privlinkd registers for this test: resource groups
// (whose deletion runs the providers' hooks) and PostgreSQL.
func allTypes(st store.Store, prov *Provider) []*arm.ResourceType {
	var all []*arm.ResourceType
	rp := resources.New(st, func() []*arm.ResourceType { return all })
	all = append(prov.Types(), rp.Types()...)
	return all
}

func (e *env) clients(subscription string, cred azcore.TokenCredential, opts *azarm.ClientOptions) {
	t := e.t
	groups, err := armresources.NewResourceGroupsClient(subscription, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	f, err := pg.NewClientFactory(subscription, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.groups, e.servers, e.rules = groups, f.NewServersClient(), f.NewFirewallRulesClient()
	e.configs, e.links, e.names = f.NewConfigurationsClient(), f.NewPrivateLinkResourcesClient(), f.NewNameAvailabilityClient()
}

// group creates a resource group in westeurope.
func (e *env) group(name string) {
	e.t.Helper()
	if _, err := e.groups.CreateOrUpdate(e.ctx, name, armresources.ResourceGroup{Location: to.Ptr("westeurope")}, nil); err != nil {
		e.t.Fatalf("create group %s: %v", name, err)
	}
}

func (e *env) deleteGroup(name string) error {
	p, err := e.groups.BeginDelete(e.ctx, name, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(e.ctx, poll)
	return err
}

// serverBody is a minimal valid server.
func serverBody() pg.Server {
	return pg.Server{
		Location: to.Ptr("West Europe"),
		SKU:      &pg.SKU{Name: to.Ptr("Standard_B1ms"), Tier: to.Ptr(pg.SKUTierBurstable)},
		Properties: &pg.ServerProperties{
			Version:                    to.Ptr(pg.PostgresMajorVersionFifteen),
			AdministratorLogin:         to.Ptr(testLogin),
			AdministratorLoginPassword: to.Ptr(testPassword),
			Storage:                    &pg.Storage{StorageSizeGB: to.Ptr[int32](32)},
		},
	}
}

// create creates a server and waits for its poller.
func (e *env) create(rg, name string, body pg.Server) (pg.Server, error) {
	p, err := e.servers.BeginCreateOrUpdate(e.ctx, rg, name, body, nil)
	if err != nil {
		return pg.Server{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.Server, err
}

func (e *env) mustCreate(rg, name string) pg.Server {
	e.t.Helper()
	s, err := e.create(rg, name, serverBody())
	if err != nil {
		e.t.Fatalf("create server %s: %v", name, err)
	}
	return s
}

func (e *env) update(rg, name string, body pg.ServerForPatch) (pg.Server, error) {
	p, err := e.servers.BeginUpdate(e.ctx, rg, name, body, nil)
	if err != nil {
		return pg.Server{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.Server, err
}

func (e *env) deleteServer(rg, name string) error {
	p, err := e.servers.BeginDelete(e.ctx, rg, name, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(e.ctx, poll)
	return err
}

// rawResponse is a plain HTTP exchange with the router.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// raw sends one request to the router with a plain HTTP client, so that
// tests see the exact status code and headers.
func (e *env) raw(method, path string, body any) rawResponse {
	e.t.Helper()
	return rawTo(e.t, e.ctx, e.srv.URL, e.srv.Options.Transport.(*http.Client), method, path, body)
}

func rawTo(t *testing.T, ctx context.Context, base string, c *http.Client, method, path string, body any) rawResponse {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(body); err != nil {
				t.Fatal(err)
			}
		}
		rd = bytes.NewReader(b)
	}
	u := base + path
	if !strings.Contains(path, "api-version=") {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		u += sep + "api-version=2025-08-01"
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer test")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: b}
}

// serverPath is the ARM path of a server in the default subscription.
func serverPath(rg, name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.DBforPostgreSQL/flexibleServers/" + name
}

func serverID(t *testing.T, rg, name string) arm.ResourceID {
	t.Helper()
	id, err := arm.ParseID(serverPath(rg, name))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// desired reads a server's Desired record.
func (e *env) desired(rg, name string) (Desired, bool) {
	e.t.Helper()
	d, ok, err := LoadDesired(arm.ReadOnly(e.ctx, e.st), serverID(e.t, rg, name))
	if err != nil {
		e.t.Fatal(err)
	}
	return d, ok
}

// keys lists the store keys with a prefix.
func (e *env) keys(prefix string) []string {
	e.t.Helper()
	kvs, _, err := e.st.List(e.ctx, prefix)
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Key
	}
	return out
}

// twoSubscriptions is a Directory that knows the default subscription and
// a second one, with every caller allowed everything: armtest's knows one.
type twoSubscriptions struct{}

func (twoSubscriptions) Authenticate(r *http.Request) (*arm.Caller, error) {
	return &arm.Caller{TenantID: "t2", ObjectID: "o2", ClientID: "c2", Grants: allowAll{}}, nil
}

func (twoSubscriptions) SubscriptionExists(ctx context.Context, id string) (bool, error) {
	return id == sub || id == sub2, nil
}

type allowAll struct{}

func (allowAll) Allowed(action, scope string) bool { return true }
func (allowAll) AnyIn(subscription string) bool    { return true }

// secondRouter serves the same store and provider types through a
// Directory that knows two subscriptions, and returns client options for
// it.
func secondRouter(t *testing.T, st store.Store, prov *Provider) (url string, opts *azarm.ClientOptions) {
	t.Helper()
	rt := arm.NewRouter(st, twoSubscriptions{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	rt.Register(allTypes(st, prov)...)
	srv := httptest.NewTLSServer(rt)
	t.Cleanup(srv.Close)
	cfg := cloud.Configuration{
		ActiveDirectoryAuthorityHost: srv.URL + "/",
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: srv.URL, Audience: "https://management.privlink.test"},
		},
	}
	return srv.URL, &azarm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud: cfg, Transport: srv.Client(), Retry: policy.RetryOptions{MaxRetries: -1},
	}}
}
