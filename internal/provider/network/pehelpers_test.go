package network

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azarm "github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/provider/postgres"
	"github.com/privlink/privlink/internal/provider/privatedns"
	"github.com/privlink/privlink/internal/provider/privatelink"
	"github.com/privlink/privlink/internal/provider/resources"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/store/bolt"
)

// The private endpoint tests run the network, postgres, private DNS and
// resources providers behind one router whose directory knows two
// subscriptions and three principals, told apart by their bearer token:
//
//   - owner: everything in sub (it owns the servers);
//   - consumer: everything in sub2, nothing in sub (a second tenant);
//   - netadmin: Network Contributor in sub: Microsoft.Network/* and reads,
//     so it may not write the servers of its own subscription;
//   - connwriter: may write private endpoint connections in sub, but not
//     the servers (only a custom role could grant that).
const sub2 = "00000000-0000-0000-0000-00000000b002"

type principal struct {
	caller arm.Caller
	subs   []string
	allow  func(action string) bool
}

var principals = map[string]*principal{
	"owner": {caller: arm.Caller{TenantID: "t1", ObjectID: "o-owner", ClientID: "c-owner"}, subs: []string{sub},
		allow: func(string) bool { return true }},
	"consumer": {caller: arm.Caller{TenantID: "t2", ObjectID: "o-consumer", ClientID: "c-consumer"}, subs: []string{sub2},
		allow: func(string) bool { return true }},
	"netadmin": {caller: arm.Caller{TenantID: "t1", ObjectID: "o-netadmin", ClientID: "c-netadmin"}, subs: []string{sub},
		allow: func(a string) bool {
			return strings.HasPrefix(strings.ToLower(a), "microsoft.network/") || strings.HasSuffix(strings.ToLower(a), "/read")
		}},
	"connwriter": {caller: arm.Caller{TenantID: "t1", ObjectID: "o-connwriter", ClientID: "c-connwriter"}, subs: []string{sub},
		allow: func(a string) bool {
			return strings.Contains(strings.ToLower(a), "/privateendpointconnections/") || strings.HasSuffix(strings.ToLower(a), "/read")
		}},
}

func (p *principal) Allowed(action, scope string) bool {
	id, err := arm.ParseID(scope)
	return err == nil && p.AnyIn(id.Subscription) && p.allow(action)
}

func (p *principal) AnyIn(subscription string) bool {
	return slices.ContainsFunc(p.subs, func(s string) bool { return strings.EqualFold(s, subscription) })
}

type peDirectory struct{}

func (peDirectory) Authenticate(r *http.Request) (*arm.Caller, error) {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	p, ok := principals[tok]
	if !ok {
		return nil, arm.Errorf(http.StatusUnauthorized, "InvalidAuthenticationToken", "unknown token %q", tok)
	}
	c := p.caller
	c.Grants = p
	return &c, nil
}

func (peDirectory) SubscriptionExists(_ context.Context, id string) (bool, error) {
	return id == sub || id == sub2, nil
}

type token string

func (t token) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(t), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// clients are the SDK clients of one principal in one subscription.
type clients struct {
	groups    *armresources.ResourceGroupsClient
	vnets     *armnetwork.VirtualNetworksClient
	subnets   *armnetwork.SubnetsClient
	nics      *armnetwork.InterfacesClient
	endpoints *armnetwork.PrivateEndpointsClient
	zgroups   *armnetwork.PrivateDNSZoneGroupsClient
	servers   *pg.ServersClient
	conns     *pg.PrivateEndpointConnectionsClient
	configs   *pg.ConfigurationsClient
	zones     *armprivatedns.PrivateZonesClient
	records   *armprivatedns.RecordSetsClient
}

// peEnv is the router and store of the private endpoint tests.
type peEnv struct {
	t    *testing.T
	ctx  context.Context
	st   store.Store
	url  string
	http *http.Client
	opts *azarm.ClientOptions
}

func newPEEnv(t *testing.T, opts ...Option) *peEnv {
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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	var all []*arm.ResourceType
	rp := resources.New(st, func() []*arm.ResourceType { return all })
	all = append(all, New(st, append([]Option{WithTargets(privatelink.NewKinds(postgres.Kind, ServiceKind))}, opts...)...).Types()...)
	all = append(all, privatedns.New(st).Types()...)
	all = append(all, postgres.New(st, postgres.WithVersions([]string{"15.18"})).Types()...)
	all = append(all, rp.Types()...)
	rt := arm.NewRouter(st, peDirectory{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	rt.Register(all...)
	srv := httptest.NewTLSServer(rt)
	t.Cleanup(srv.Close)
	cfg := cloud.Configuration{
		ActiveDirectoryAuthorityHost: srv.URL + "/",
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: srv.URL, Audience: "https://management.privlink.test"},
		},
	}
	o := &azarm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud: cfg, Transport: srv.Client(), Retry: policy.RetryOptions{MaxRetries: -1},
	}}
	return &peEnv{t: t, ctx: ctx, st: st, url: srv.URL, http: srv.Client(), opts: o}
}

// as returns the clients of principal who in subscription s.
func (e *peEnv) as(who, s string) *clients {
	e.t.Helper()
	cred := token(who)
	nf, err := armnetwork.NewClientFactory(s, cred, e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	pf, err := pg.NewClientFactory(s, cred, e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	df, err := armprivatedns.NewClientFactory(s, cred, e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	groups, err := armresources.NewResourceGroupsClient(s, cred, e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return &clients{
		groups: groups, vnets: nf.NewVirtualNetworksClient(), subnets: nf.NewSubnetsClient(), nics: nf.NewInterfacesClient(),
		endpoints: nf.NewPrivateEndpointsClient(), zgroups: nf.NewPrivateDNSZoneGroupsClient(),
		servers: pf.NewServersClient(), conns: pf.NewPrivateEndpointConnectionsClient(), configs: pf.NewConfigurationsClient(),
		zones: df.NewPrivateZonesClient(), records: df.NewRecordSetsClient(),
	}
}

func (e *peEnv) group(c *clients, name string) {
	e.t.Helper()
	if _, err := c.groups.CreateOrUpdate(e.ctx, name, armresources.ResourceGroup{Location: to.Ptr("westeurope")}, nil); err != nil {
		e.t.Fatalf("create group %s: %v", name, err)
	}
}

func (e *peEnv) deleteGroup(c *clients, name string) error {
	p, err := c.groups.BeginDelete(e.ctx, name, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(e.ctx, poll)
	return err
}

// network creates a VNet 10.0.0.0/16 with subnet "pe" 10.0.1.0/24.
func (e *peEnv) network(c *clients, rg, name string) {
	e.t.Helper()
	p, err := c.vnets.BeginCreateOrUpdate(e.ctx, rg, name, vnetBody("10.0.0.0/16", "pe=10.0.1.0/24"), nil)
	if err == nil {
		_, err = p.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		e.t.Fatalf("create vnet %s: %v", name, err)
	}
}

// server creates a flexible server.
func (e *peEnv) server(c *clients, rg, name string) pg.Server {
	e.t.Helper()
	s, err := e.createServer(c, rg, name, pg.Server{
		Location: to.Ptr("westeurope"),
		SKU:      &pg.SKU{Name: to.Ptr("Standard_B1ms"), Tier: to.Ptr(pg.SKUTierBurstable)},
		Properties: &pg.ServerProperties{
			Version:                    to.Ptr(pg.PostgresMajorVersionFifteen),
			AdministratorLogin:         to.Ptr("pgadmin"),
			AdministratorLoginPassword: to.Ptr("Correct-Horse-42"),
			Storage:                    &pg.Storage{StorageSizeGB: to.Ptr[int32](32)},
		},
	})
	if err != nil {
		e.t.Fatalf("create server %s: %v", name, err)
	}
	return s
}

func (e *peEnv) createServer(c *clients, rg, name string, body pg.Server) (pg.Server, error) {
	p, err := c.servers.BeginCreateOrUpdate(e.ctx, rg, name, body, nil)
	if err != nil {
		return pg.Server{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.Server, err
}

func (e *peEnv) deleteServer(c *clients, rg, name string) error {
	p, err := c.servers.BeginDelete(e.ctx, rg, name, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(e.ctx, poll)
	return err
}

func serverIDIn(s, rg, name string) string {
	return "/subscriptions/" + s + "/resourceGroups/" + rg + "/providers/Microsoft.DBforPostgreSQL/flexibleServers/" + name
}

func subnetIDIn(s, rg, vnet, name string) string {
	return "/subscriptions/" + s + "/resourceGroups/" + rg + "/providers/Microsoft.Network/virtualNetworks/" + vnet + "/subnets/" + name
}

// endpointBody is an endpoint in subnet to server, through
// privateLinkServiceConnections, or manualPrivateLinkServiceConnections
// when manual.
func endpointBody(subnet, server string, manual bool, message string) armnetwork.PrivateEndpoint {
	c := &armnetwork.PrivateLinkServiceConnection{
		Name: to.Ptr("conn"),
		Properties: &armnetwork.PrivateLinkServiceConnectionProperties{
			PrivateLinkServiceID: to.Ptr(server), GroupIDs: []*string{to.Ptr("postgresqlServer")},
		},
	}
	if message != "" {
		c.Properties.RequestMessage = to.Ptr(message)
	}
	pe := armnetwork.PrivateEndpoint{
		Location:   to.Ptr("westeurope"),
		Properties: &armnetwork.PrivateEndpointProperties{Subnet: &armnetwork.Subnet{ID: to.Ptr(subnet)}},
	}
	if manual {
		pe.Properties.ManualPrivateLinkServiceConnections = []*armnetwork.PrivateLinkServiceConnection{c}
	} else {
		pe.Properties.PrivateLinkServiceConnections = []*armnetwork.PrivateLinkServiceConnection{c}
	}
	return pe
}

func (e *peEnv) putEndpoint(c *clients, rg, name string, body armnetwork.PrivateEndpoint) (armnetwork.PrivateEndpoint, error) {
	p, err := c.endpoints.BeginCreateOrUpdate(e.ctx, rg, name, body, nil)
	if err != nil {
		return armnetwork.PrivateEndpoint{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.PrivateEndpoint, err
}

func (e *peEnv) mustEndpoint(c *clients, rg, name string, body armnetwork.PrivateEndpoint) armnetwork.PrivateEndpoint {
	e.t.Helper()
	pe, err := e.putEndpoint(c, rg, name, body)
	if err != nil {
		e.t.Fatalf("put endpoint %s: %v", name, err)
	}
	return pe
}

func (e *peEnv) getEndpoint(c *clients, rg, name string) armnetwork.PrivateEndpoint {
	e.t.Helper()
	res, err := c.endpoints.Get(e.ctx, rg, name, nil)
	if err != nil {
		e.t.Fatalf("get endpoint %s: %v", name, err)
	}
	return res.PrivateEndpoint
}

func (e *peEnv) deleteEndpoint(c *clients, rg, name string) error {
	p, err := c.endpoints.BeginDelete(e.ctx, rg, name, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(e.ctx, poll)
	return err
}

// connections lists a server's private endpoint connections.
func (e *peEnv) connections(c *clients, rg, server string) []*pg.PrivateEndpointConnection {
	e.t.Helper()
	return collect(e.t, e.ctx, c.conns.NewListByServerPager(rg, server, nil),
		func(p pg.PrivateEndpointConnectionsClientListByServerResponse) []*pg.PrivateEndpointConnection {
			return p.Value
		})
}

// decide approves or rejects a connection on the server's side.
func (e *peEnv) decide(c *clients, rg, server, conn string, status pg.PrivateEndpointServiceConnectionStatus, description string) (pg.PrivateEndpointConnection, error) {
	body := pg.PrivateEndpointConnection{Properties: &pg.PrivateEndpointConnectionProperties{
		PrivateLinkServiceConnectionState: &pg.PrivateLinkServiceConnectionState{Status: to.Ptr(status)},
	}}
	if description != "" {
		body.Properties.PrivateLinkServiceConnectionState.Description = to.Ptr(description)
	}
	p, err := c.conns.BeginUpdate(e.ctx, rg, server, conn, body, nil)
	if err != nil {
		return pg.PrivateEndpointConnection{}, err
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	return res.PrivateEndpointConnection, err
}

func (e *peEnv) deleteConnection(c *clients, rg, server, conn string) error {
	p, err := c.conns.BeginDelete(e.ctx, rg, server, conn, nil)
	if err != nil {
		return err
	}
	_, err = p.PollUntilDone(e.ctx, poll)
	return err
}

// state is an endpoint's one connection state.
func connState(pe armnetwork.PrivateEndpoint) armnetwork.PrivateLinkServiceConnectionState {
	if pe.Properties == nil {
		return armnetwork.PrivateLinkServiceConnectionState{}
	}
	for _, l := range [][]*armnetwork.PrivateLinkServiceConnection{pe.Properties.PrivateLinkServiceConnections, pe.Properties.ManualPrivateLinkServiceConnections} {
		for _, c := range l {
			if c != nil && c.Properties != nil && c.Properties.PrivateLinkServiceConnectionState != nil {
				return *c.Properties.PrivateLinkServiceConnectionState
			}
		}
	}
	return armnetwork.PrivateLinkServiceConnectionState{}
}

// wantState checks an endpoint's connection status and that description
// and actionsRequired are filled in, description containing words.
func wantState(t *testing.T, pe armnetwork.PrivateEndpoint, status string, words ...string) {
	t.Helper()
	s := connState(pe)
	if str(s.Status) != status || str(s.Description) == "" || str(s.ActionsRequired) == "" {
		t.Fatalf("endpoint %s state = %q / %q / %q, want %s", str(pe.Name), str(s.Status), str(s.Description), str(s.ActionsRequired), status)
	}
	for _, w := range words {
		if !strings.Contains(str(s.Description), w) {
			t.Errorf("description %q does not mention %q", str(s.Description), w)
		}
	}
}

// rawAs sends one request as a principal and returns status, body and
// headers.
func (e *peEnv) rawAs(who, method, path, body string) (int, []byte, http.Header) {
	e.t.Helper()
	u := path
	if !strings.HasPrefix(u, "http") {
		u = e.url + path
	}
	req, err := http.NewRequestWithContext(e.ctx, method, u, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+who)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.http.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}
