package identity

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/store/bolt"
)

// fuzzService is a Service over a fresh bolt store with its bootstrap
// principal, for fuzz targets (the helpers of the other tests take a
// *testing.T).
func fuzzService(f *testing.F) (*Service, Credentials, principalRecord) {
	f.Helper()
	st, err := bolt.Open(filepath.Join(f.TempDir(), "state.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	svc, err := New(f.Context(), st, Config{BaseURL: "https://127.0.0.1:8443", Audience: testAudience, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	creds, _, err := svc.Bootstrap(f.Context(), "")
	if err != nil {
		f.Fatal(err)
	}
	rec, err := svc.principalByClientID(f.Context(), creds.ClientID)
	if err != nil {
		f.Fatal(err)
	}
	return svc, creds, rec
}

// FuzzTokenRequest sends fuzzed token requests (tenant path segment,
// Content-Type, form body, Basic credentials) to the token endpoint. It
// must never panic nor answer 5xx; every answer is JSON, an error one in
// Entra's shape; and a token is issued only to a request that carries the
// client's real secret, and then authenticates as that client.
func FuzzTokenRequest(f *testing.F) {
	svc, creds, _ := fuzzService(f)
	h := svc.Handler()
	good := url.Values{"grant_type": {"client_credentials"}, "client_id": {creds.ClientID}, "client_secret": {creds.ClientSecret},
		"scope": {testAudience + "/.default openid offline_access profile"}, "claims": {`{"access_token":{"xms_cc":{"values":["CP1"]}}}`}}
	form := "application/x-www-form-urlencoded; charset=utf-8"
	f.Add(creds.TenantID, form, good.Encode(), "")
	for _, drop := range []string{"grant_type", "client_id", "client_secret", "scope"} {
		v := url.Values{}
		for k, vs := range good {
			if k != drop {
				v[k] = vs
			}
		}
		f.Add(creds.TenantID, form, v.Encode(), "")
	}
	basic := url.Values{"grant_type": {"client_credentials"}, "scope": {testAudience + "/.default"}}
	f.Add(creds.TenantID, form, basic.Encode(), url.QueryEscape(creds.ClientID)+":"+url.QueryEscape(creds.ClientSecret))
	f.Add(creds.TenantID, form, basic.Encode(), creds.ClientID+":wrong")
	f.Add(creds.TenantID, form, "grant_type=password&client_id=x", "")
	f.Add(creds.TenantID, "application/json", `{"grant_type":"client_credentials"}`, "")
	f.Add(creds.TenantID, form, "%zz=%zz&;;&", "")
	f.Add("common", form, good.Encode(), "")
	f.Add("", "", "", "")
	f.Fuzz(func(t *testing.T, tenant, contentType, body, basicAuth string) {
		if strings.ContainsAny(tenant, "/?#%") || strings.ContainsFunc(tenant, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			return // not one path segment: the mux answers before the endpoint
		}
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "https://127.0.0.1:8443/"+tenant+"/oauth2/v2.0/token", strings.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if user, pass, ok := strings.Cut(basicAuth, ":"); ok {
			req.SetBasicAuth(user, pass)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code == http.StatusNotFound || w.Code == http.StatusMethodNotAllowed || w.Code/100 == 3 {
			return // a tenant segment the mux does not route: "" and ".." are cleaned away
		}
		if w.Code >= 500 {
			t.Fatalf("token request %q %q %q: %d %s", tenant, contentType, body, w.Code, w.Body)
		}
		if w.Code != http.StatusOK {
			var e oauthError
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" || len(e.ErrorCodes) != 1 {
				t.Fatalf("token request %q %q %q: %d, not an Entra error: %s", tenant, contentType, body, w.Code, w.Body)
			}
			return
		}
		if !strings.Contains(body, url.QueryEscape(creds.ClientSecret)) && !strings.Contains(body, creds.ClientSecret) &&
			!strings.Contains(basicAuth, creds.ClientSecret) && !strings.Contains(basicAuth, url.QueryEscape(creds.ClientSecret)) {
			t.Fatalf("a token for a request without the secret: %q %q %q", tenant, body, basicAuth)
		}
		var tok tokenResponse
		if err := json.Unmarshal(w.Body.Bytes(), &tok); err != nil || tok.AccessToken == "" {
			t.Fatalf("token answer %s: %v", w.Body, err)
		}
		r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "https://127.0.0.1:8443/subscriptions", nil)
		r.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		p, err := svc.Authenticate(r)
		if err != nil || p.ClientID != creds.ClientID {
			t.Fatalf("the token issued for %q authenticates as %+v: %v", body, p, err)
		}
	})
}

// FuzzAuthenticate verifies fuzzed Authorization headers. It must never
// panic; a refusal is always an *AuthError (which the API answers with a
// 401 and its code, where any other error would be a 500); and a header
// it accepts authenticates the one principal a token was minted for.
func FuzzAuthenticate(f *testing.F) {
	svc, creds, rec := fuzzService(f)
	now := time.Now()
	good, _, err := svc.mintToken(rec, now)
	if err != nil {
		f.Fatal(err)
	}
	expired, _, err := svc.mintToken(rec, now.Add(-3*time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	for _, h := range []string{
		"Bearer " + good, "bearer  " + good + " ", "Bearer " + expired, "Basic " + good, "Bearer", "",
		"Bearer " + strings.Replace(good, ".", "..", 1), "Bearer " + good[:len(good)-4],
		"Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.",
		"Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo",
	} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "https://127.0.0.1:8443/subscriptions", nil)
		if header != "" {
			r.Header["Authorization"] = []string{header}
		}
		p, err := svc.Authenticate(r)
		if err != nil {
			var ae *AuthError
			if !errors.As(err, &ae) || ae.Code == "" {
				t.Fatalf("Authenticate(%q): %v (%T), not an *AuthError", header, err, err)
			}
			return
		}
		if p.ObjectID != rec.ObjectID || p.ClientID != creds.ClientID || p.TenantID != creds.TenantID {
			t.Fatalf("Authenticate(%q) = %+v, a principal no token was minted for", header, p)
		}
	})
}
