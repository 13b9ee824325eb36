// Package daemontest runs privlinkd's ARM API in-process for tests: the
// router with every provider (daemon.NewAPI), privlink's own identity
// service with real tokens and role assignments, over a bolt store, behind
// a TLS server on loopback with a certificate from a fresh CA. Nothing is
// materialized (no fabric, no controllers): writes that wait for a
// controller stay in progress. Tests of authorization (who may do what,
// linked authorization, bad tokens) and of the wire format use it; the
// end-to-end suite (e2e) runs a real privlinkd instead.
package daemontest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/google/uuid"
	privarm "github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/azconfig"
	"github.com/privlink/privlink/internal/daemon"
	"github.com/privlink/privlink/internal/identity"
	"github.com/privlink/privlink/internal/pki"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/store/bolt"
)

// API is a running in-process ARM API.
type API struct {
	URL    string
	Store  store.Store
	IDs    *identity.Service
	Router *privarm.Router
	// Owner is the bootstrap principal: admin, Owner of its subscription.
	Owner  *Principal
	caFile string
}

// Principal is a service principal of the API's identity service, with an
// SDK configuration that authenticates as it.
type Principal struct {
	Name     string
	ObjectID string
	*azconfig.Config
}

// Sub is the principal's own subscription (it is Owner there).
func (p *Principal) Sub() string { return p.Creds.SubscriptionID }

// Option configures New.
type Option func(*options)

type options struct{ log io.Writer }

// WithLog sends the API's log (warnings and errors) to w instead of the
// test's log; a fuzz target, which may not log through its *testing.F,
// needs it.
func WithLog(w io.Writer) Option { return func(o *options) { o.log = w } }

// New starts an API and stops it when the test ends.
func New(t testing.TB, opts ...Option) *API {
	t.Helper()
	o := options{log: testWriter{t}}
	for _, opt := range opts {
		opt(&o)
	}
	dir := t.TempDir()
	raw, err := bolt.Open(filepath.Join(dir, "privlink.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	st := daemon.ScopedStore(raw)
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "https://" + ln.Addr().String()
	log := slog.New(slog.NewTextHandler(o.log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ids, err := identity.New(t.Context(), st, identity.Config{BaseURL: base, Audience: daemon.Audience, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	router := daemon.NewAPI(st, ids, log, daemon.APIOptions{})
	mux := http.NewServeMux()
	mux.Handle("/subscriptions/", router)
	mux.Handle("/subscriptions", router)
	mux.Handle("/", ids.Handler())
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = ln
	cert, err := ca.TLSCertificate([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	a := &API{URL: base, Store: st, IDs: ids, Router: router, caFile: filepath.Join(dir, daemon.CAFile)}
	creds, _, err := ids.Bootstrap(t.Context(), a.caFile)
	if err != nil {
		t.Fatal(err)
	}
	a.Owner = a.principal(t, "owner", creds)
	return a
}

func (a *API) principal(t testing.TB, name string, c identity.Credentials) *Principal {
	t.Helper()
	cfg, err := azconfig.New(azconfig.Credentials(c))
	if err != nil {
		t.Fatal(err)
	}
	sps, err := a.IDs.ListPrincipals(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range sps {
		if sp.ClientID == c.ClientID {
			return &Principal{Name: name, ObjectID: sp.ObjectID, Config: cfg}
		}
	}
	t.Fatalf("principal %s (client %s) is not listed", name, c.ClientID)
	return nil
}

// NewPrincipal creates a principal with a subscription of its own, in the
// default tenant or, with newTenant, in a tenant of its own.
func (a *API) NewPrincipal(t testing.TB, name string, newTenant bool) *Principal {
	t.Helper()
	c, err := a.IDs.CreatePrincipal(t.Context(), identity.CreatePrincipalOptions{DisplayName: name, NewTenant: newTenant}, a.caFile)
	if err != nil {
		t.Fatal(err)
	}
	return a.principal(t, name, c)
}

// Assign gives p the built-in role (a role definition GUID, e.g.
// identity.ContributorRoleID) at scope, as the Owner.
func (a *API) Assign(t testing.TB, p *Principal, role, scope string) {
	t.Helper()
	sub, _, _ := bytes.Cut([]byte(scope[len("/subscriptions/"):]), []byte("/"))
	_, err := a.IDs.CreateRoleAssignment(t.Context(), identity.RoleAssignment{
		Name: uuid.NewString(), Scope: scope, PrincipalID: p.ObjectID, PrincipalType: identity.PrincipalTypeServicePrincipal,
		RoleDefinitionID: "/subscriptions/" + string(sub) + "/providers/Microsoft.Authorization/roleDefinitions/" + role,
		CreatedBy:        a.Owner.ObjectID,
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Token returns a bearer token for p.
func (p *Principal) Token(t testing.TB) string {
	t.Helper()
	tok, err := p.Credential.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{p.Scope()}})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

// Options are the SDK client options for the API.
func (p *Principal) Options() *arm.ClientOptions {
	o := p.ClientOptions()
	o.Retry = policy.RetryOptions{MaxRetries: -1}
	return o
}

// Response is a raw answer.
type Response struct {
	Status int
	Body   []byte
	Header http.Header
}

// JSON decodes the body into v.
func (r Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// ErrorCode is the ARM error code of the body, if any.
func (r Response) ErrorCode() string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

// Do sends one request as p with a token (token "" sends none) and a JSON
// body (nil sends none; []byte is sent as it is).
func (a *API) Do(t testing.TB, p *Principal, method, path string, body any) Response {
	t.Helper()
	tok := ""
	if p != nil {
		tok = p.Token(t)
	}
	return a.DoToken(t, tok, method, path, body)
}

// DoToken is Do with a given bearer token.
func (a *API) DoToken(t testing.TB, token, method, path string, body any) Response {
	t.Helper()
	auth := ""
	if token != "" {
		auth = "Bearer " + token
	}
	return a.DoAuth(t, auth, method, path, body)
}

// DoAuth is Do with a given Authorization header ("" sends none).
func (a *API) DoAuth(t testing.TB, authorization, method, path string, body any) Response {
	t.Helper()
	return a.DoHeaders(t, authorization, nil, method, path, body)
}

// DoHeaders is DoAuth with further request headers.
func (a *API) DoHeaders(t testing.TB, authorization string, headers http.Header, method, path string, body any) Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.Owner.HTTPClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return Response{Status: resp.StatusCode, Body: b, Header: resp.Header}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
