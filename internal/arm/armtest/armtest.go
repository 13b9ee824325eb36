// Package armtest runs an arm.Router behind a real TLS server for provider
// tests, so that the official Azure SDK clients can drive it. The caller is
// authenticated by a static token and may do everything: these tests are
// about a provider's behaviour, the end-to-end suite covers identity and
// RBAC.
package armtest

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	privarm "github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Subscription is the subscription every armtest server knows.
const Subscription = "00000000-0000-0000-0000-00000000a001"

// Server is a running router.
type Server struct {
	URL     string
	Router  *privarm.Router
	Options *arm.ClientOptions
	Cred    azcore.TokenCredential
}

// NewServer starts a router over st with the given resource types and
// stops it when the test ends.
func NewServer(t testing.TB, st store.Store, types ...*privarm.ResourceType) *Server {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	rt := privarm.NewRouter(st, allowAll{}, log)
	rt.Register(types...)
	srv := httptest.NewTLSServer(rt)
	t.Cleanup(srv.Close)
	cfg := cloud.Configuration{
		ActiveDirectoryAuthorityHost: srv.URL + "/",
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: srv.URL, Audience: "https://management.privlink.test"},
		},
	}
	opts := &arm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud: cfg, Transport: srv.Client(),
		Retry: policy.RetryOptions{MaxRetries: -1},
	}}
	return &Server{URL: srv.URL, Router: rt, Options: opts, Cred: staticToken{}}
}

// PollFrequency is what tests pass to PollUntilDone (the SDK refuses less than a second); pollers follow the
// server's Retry-After instead of the SDK's 30 s default when it sends none.
var PollFrequency = time.Second

type allowAll struct{}

func (allowAll) Authenticate(r *http.Request) (*privarm.Caller, error) {
	return &privarm.Caller{TenantID: "t", ObjectID: "o", ClientID: "c", Grants: allowGrants{}}, nil
}

func (allowAll) SubscriptionExists(ctx context.Context, id string) (bool, error) {
	return id == Subscription, nil
}

type allowGrants struct{}

func (allowGrants) Allowed(action, scope string) bool { return true }
func (allowGrants) AnyIn(subscription string) bool    { return true }

type staticToken struct{}

func (staticToken) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "armtest", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
