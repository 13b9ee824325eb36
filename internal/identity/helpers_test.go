package identity

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/privlink/privlink/internal/pki"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/store/bolt"
)

const testAudience = "https://management.privlink.test"

// openStore opens a bolt store at path, closed at cleanup unless the test
// closes it first.
func openStore(t *testing.T, path string) store.Store {
	t.Helper()
	st, err := bolt.Open(path)
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func newStore(t *testing.T) store.Store {
	t.Helper()
	return openStore(t, filepath.Join(t.TempDir(), "state.db"))
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newService(t *testing.T, st store.Store, cfg Config) *Service {
	t.Helper()
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://127.0.0.1:8443"
	}
	if cfg.Audience == "" {
		cfg.Audience = testAudience
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	s, err := New(t.Context(), st, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// env is a Service served over TLS with a certificate from privlink's CA,
// plus an HTTP client that trusts that CA. Paths outside the identity
// endpoints go to extra (if set).
type env struct {
	st     store.Store
	svc    *Service
	srv    *httptest.Server
	ca     *pki.CA
	caFile string
	client *http.Client
	admin  Credentials
}

func newEnv(t *testing.T, st store.Store, extra http.Handler) *env {
	t.Helper()
	caDir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(caDir)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.TLSCertificate([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	svc := newService(t, st, Config{BaseURL: "https://" + srv.Listener.Addr().String()})
	idh := svc.Handler()
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if IsIdentityPath(r.URL.Path) || extra == nil {
			idh.ServeHTTP(w, r)
			return
		}
		extra.ServeHTTP(w, r)
	})
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}
	t.Cleanup(tr.CloseIdleConnections)
	e := &env{st: st, svc: svc, srv: srv, ca: ca, caFile: filepath.Join(caDir, pki.CertFile), client: &http.Client{Transport: tr}}
	creds, created, err := svc.Bootstrap(t.Context(), e.caFile)
	if err != nil || !created {
		t.Fatalf("Bootstrap: created=%v err=%v", created, err)
	}
	e.admin = creds
	return e
}
