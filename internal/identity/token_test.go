package identity

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	armpolicy "github.com/Azure/azure-sdk-for-go/sdk/azcore/arm/policy"
	armruntime "github.com/Azure/azure-sdk-for-go/sdk/azcore/arm/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/golang-jwt/jwt/v5"
)

// cloudConfig points the SDK at the env, exactly as credentials.json says.
func (e *env) cloudConfig(c Credentials) cloud.Configuration {
	return cloud.Configuration{
		ActiveDirectoryAuthorityHost: c.AuthorityHost,
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: c.ARMEndpoint, Audience: c.Audience},
		},
	}
}

func (e *env) credential(t *testing.T, c Credentials) *azidentity.ClientSecretCredential {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(c.TenantID, c.ClientID, c.ClientSecret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            azcore.ClientOptions{Cloud: e.cloudConfig(c), Transport: e.client},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatalf("NewClientSecretCredential: %v", err)
	}
	return cred
}

func (e *env) getToken(t *testing.T, c Credentials, scope string) (azcore.AccessToken, error) {
	t.Helper()
	return e.credential(t, c).GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{scope}, EnableCAE: true})
}

func bearer(token string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/subscriptions", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

func TestAzidentityGetTokenAndAuthenticate(t *testing.T) {
	e := newEnv(t, newStore(t), nil)
	if e.admin.ARMEndpoint != e.srv.URL || e.admin.AuthorityHost != e.srv.URL+"/" || e.admin.Audience != testAudience || e.admin.CAFile != e.caFile {
		t.Fatalf("credentials endpoints: %+v (server %s)", e.admin, e.srv.URL)
	}
	tok, err := e.getToken(t, e.admin, e.admin.Audience+"/.default")
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	if d := time.Until(tok.ExpiresOn); d < 55*time.Minute {
		t.Errorf("token expires in %v, want about 1h", d)
	}
	p, err := e.svc.Authenticate(bearer(tok.Token))
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if p.TenantID != e.admin.TenantID || p.ClientID != e.admin.ClientID || !p.Admin || !IsGUID(p.ObjectID) {
		t.Fatalf("principal = %+v, creds %+v", p, e.admin)
	}

	// The claims are what the brief and Entra ID promise.
	var claims map[string]any
	if _, _, err := jwt.NewParser().ParseUnverified(tok.Token, (*jwt.MapClaims)(&claims)); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"aud": testAudience, "iss": e.srv.URL + "/" + e.admin.TenantID + "/v2.0", "tid": e.admin.TenantID,
		"oid": p.ObjectID, "sub": p.ObjectID, "appid": e.admin.ClientID, "ver": "2.0",
	}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("claim %s = %v, want %v", k, claims[k], v)
		}
	}
	for _, k := range []string{"iat", "nbf", "exp"} {
		if _, ok := claims[k].(float64); !ok {
			t.Errorf("claim %s missing", k)
		}
	}
}

// The real ARM pipeline (bearer policy with CAE claims, TLS-only check)
// reaches a resource handler that authenticates with Authenticate.
func TestARMPipelineBearer(t *testing.T) {
	var e *env
	whoami := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := e.svc.Authenticate(r)
		if err != nil {
			var ae *AuthError
			if errors.As(err, &ae) {
				w.WriteHeader(http.StatusUnauthorized)
				_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": ae.Code, "message": ae.Message}})
				return
			}
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(p)
	})
	e = newEnv(t, newStore(t), whoami)
	cred := e.credential(t, e.admin)
	pl, err := armruntime.NewPipeline("privlinktest", "v0", cred, runtime.PipelineOptions{}, &armpolicy.ClientOptions{
		ClientOptions:         policy.ClientOptions{Cloud: e.cloudConfig(e.admin), Transport: e.client},
		DisableRPRegistration: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // the second call uses the cached token
		req, err := runtime.NewRequest(t.Context(), http.MethodGet, e.srv.URL+"/subscriptions/"+e.admin.SubscriptionID)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := pl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		var p Principal
		if err := json.Unmarshal(body, &p); err != nil || p.ClientID != e.admin.ClientID {
			t.Fatalf("whoami = %s (%v)", body, err)
		}
	}
}

func TestTokenErrorsThroughAzidentity(t *testing.T) {
	e := newEnv(t, newStore(t), nil)
	other, err := e.svc.CreatePrincipal(t.Context(), CreatePrincipalOptions{NewTenant: true, DisplayName: "other"}, e.caFile)
	if err != nil {
		t.Fatal(err)
	}
	scope := testAudience + "/.default"
	with := func(f func(c *Credentials)) Credentials { c := e.admin; f(&c); return c }

	cases := []struct {
		name       string
		creds      Credentials
		scope      string
		status     int
		oauthError string
		aadsts     string
	}{
		{"wrong secret", with(func(c *Credentials) { c.ClientSecret = "nope" }), scope, 401, "invalid_client", "AADSTS7000215"},
		{"unknown client", with(func(c *Credentials) { c.ClientID = newGUID() }), scope, 400, "unauthorized_client", "AADSTS700016"},
		{"principal of tenant A at tenant B", with(func(c *Credentials) { c.TenantID = other.TenantID }), scope, 400, "unauthorized_client", "AADSTS700016"},
		{"wrong scope", e.admin, "https://management.core.windows.net//.default", 400, "invalid_scope", "AADSTS70011"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.getToken(t, tc.creds, tc.scope)
			var afe *azidentity.AuthenticationFailedError
			if !errors.As(err, &afe) {
				t.Fatalf("err = %v (%T), want *azidentity.AuthenticationFailedError", err, err)
			}
			if afe.RawResponse == nil || afe.RawResponse.StatusCode != tc.status {
				t.Fatalf("raw response %+v, want status %d", afe.RawResponse, tc.status)
			}
			msg := afe.Error()
			if !strings.Contains(msg, tc.oauthError) || !strings.Contains(msg, tc.aadsts) {
				t.Errorf("error lacks %s/%s:\n%s", tc.oauthError, tc.aadsts, msg)
			}
		})
	}

	t.Run("unknown tenant", func(t *testing.T) {
		_, err := e.getToken(t, with(func(c *Credentials) { c.TenantID = newGUID() }), scope)
		var afe *azidentity.AuthenticationFailedError
		if !errors.As(err, &afe) || afe.RawResponse == nil || afe.RawResponse.StatusCode != 400 || !strings.Contains(err.Error(), "AADSTS90002") {
			t.Fatalf("err = %v, want AuthenticationFailedError from discovery, 400 AADSTS90002", err)
		}
	})

	t.Run("other tenant's own principal works", func(t *testing.T) {
		tok, err := e.getToken(t, other, scope)
		if err != nil {
			t.Fatal(err)
		}
		p, err := e.svc.Authenticate(bearer(tok.Token))
		if err != nil || p.TenantID != other.TenantID || p.Admin {
			t.Fatalf("Authenticate = %+v, %v", p, err)
		}
	})
}

// postToken sends a raw token request.
func (e *env) postToken(t *testing.T, tenant string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := e.client.PostForm(e.srv.URL+"/"+tenant+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return resp.StatusCode, body
}

func TestTokenEndpointWire(t *testing.T) {
	e := newEnv(t, newStore(t), nil)
	good := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {e.admin.ClientID},
		"client_secret": {e.admin.ClientSecret},
		"scope":         {testAudience + "/.default openid offline_access profile"},
		"claims":        {`{"access_token":{"xms_cc":{"values":["CP1"]}}}`},
	}
	status, body := e.postToken(t, e.admin.TenantID, good)
	if status != 200 || body["token_type"] != "Bearer" || body["expires_in"] != float64(3600) || body["ext_expires_in"] != float64(3600) || body["access_token"] == "" {
		t.Fatalf("token response %d %v", status, body)
	}

	mod := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range good {
			f[kk] = vv
		}
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	cases := []struct {
		name   string
		tenant string
		form   url.Values
		status int
		err    string
		code   int
	}{
		{"wrong secret", e.admin.TenantID, mod("client_secret", "x"), 401, "invalid_client", 7000215},
		{"missing secret", e.admin.TenantID, mod("client_secret", ""), 401, "invalid_client", 7000218},
		{"unknown client", e.admin.TenantID, mod("client_id", newGUID()), 400, "unauthorized_client", 700016},
		{"non-GUID client", e.admin.TenantID, mod("client_id", "bob"), 400, "unauthorized_client", 700016},
		{"unknown tenant", newGUID(), good, 400, "invalid_request", 90002},
		{"non-GUID tenant", "common", good, 400, "invalid_request", 90002},
		{"unsupported grant", e.admin.TenantID, mod("grant_type", "password"), 400, "unsupported_grant_type", 70003},
		{"missing grant", e.admin.TenantID, mod("grant_type", ""), 400, "invalid_request", 900144},
		{"wrong audience", e.admin.TenantID, mod("scope", "https://other.example/.default"), 400, "invalid_scope", 70011},
		{"two resources", e.admin.TenantID, mod("scope", testAudience+"/.default https://other.example/.default"), 400, "invalid_scope", 70011},
		{"no .default", e.admin.TenantID, mod("scope", testAudience+"/user_impersonation"), 400, "invalid_scope", 70011},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.postToken(t, tc.tenant, tc.form)
			if status != tc.status || body["error"] != tc.err {
				t.Fatalf("got %d %v, want %d %s", status, body, tc.status, tc.err)
			}
			codes, _ := body["error_codes"].([]any)
			if len(codes) != 1 || codes[0] != float64(tc.code) {
				t.Errorf("error_codes = %v, want [%d]", body["error_codes"], tc.code)
			}
			desc, _ := body["error_description"].(string)
			if !strings.HasPrefix(desc, "AADSTS") || !strings.Contains(desc, "Trace ID:") {
				t.Errorf("error_description = %q", desc)
			}
			for _, k := range []string{"timestamp", "trace_id", "correlation_id"} {
				if s, _ := body[k].(string); s == "" {
					t.Errorf("%s missing", k)
				}
			}
		})
	}

	t.Run("audience with trailing slash double-slash scope", func(t *testing.T) {
		svc := newService(t, newStore(t), Config{Audience: "https://management.core.windows.net/"})
		for _, sc := range []string{"https://management.core.windows.net//.default", "https://management.core.windows.net/.default"} {
			if !svc.validScope(sc + " openid offline_access profile") {
				t.Errorf("scope %q refused", sc)
			}
		}
	})

	t.Run("client_secret_basic", func(t *testing.T) {
		f := mod("client_secret", "")
		f.Del("client_id")
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/"+e.admin.TenantID+"/oauth2/v2.0/token", strings.NewReader(f.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(e.admin.ClientID), url.QueryEscape(e.admin.ClientSecret))
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

func TestDiscoveryDocuments(t *testing.T) {
	e := newEnv(t, newStore(t), nil)
	get := func(path string) (int, map[string]any) {
		resp, err := e.client.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, m
	}
	tid := e.admin.TenantID
	status, doc := get("/" + tid + "/v2.0/.well-known/openid-configuration?")
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	base := e.srv.URL + "/" + tid
	for k, v := range map[string]string{
		"issuer": base + "/v2.0", "token_endpoint": base + "/oauth2/v2.0/token",
		"authorization_endpoint": base + "/oauth2/v2.0/authorize", "jwks_uri": base + "/discovery/v2.0/keys",
	} {
		if doc[k] != v {
			t.Errorf("%s = %v, want %s", k, doc[k], v)
		}
	}
	status, doc = get("/" + newGUID() + "/v2.0/.well-known/openid-configuration")
	if status != 400 || doc["error"] != "invalid_request" || !strings.HasPrefix(doc["error_description"].(string), "AADSTS90002:") {
		t.Errorf("unknown tenant: %d %v", status, doc)
	}

	// The JWKS key verifies an issued token.
	_, jwks := get("/" + tid + "/discovery/v2.0/keys")
	keys := jwks["keys"].([]any)
	if len(keys) != 1 {
		t.Fatalf("keys = %v", keys)
	}
	k := keys[0].(map[string]any)
	n, _ := base64.RawURLEncoding.DecodeString(k["n"].(string))
	eb, _ := base64.RawURLEncoding.DecodeString(k["e"].(string))
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(eb).Int64())}
	tok, err := e.getToken(t, e.admin, testAudience+"/.default")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.Parse(tok.Token, func(tk *jwt.Token) (any, error) {
		if tk.Header["kid"] != k["kid"] {
			t.Errorf("token kid %v, JWKS kid %v", tk.Header["kid"], k["kid"])
		}
		return pub, nil
	}, jwt.WithValidMethods([]string{"RS256"}))
	if err != nil || !parsed.Valid {
		t.Fatalf("JWKS key does not verify token: %v", err)
	}
}

func TestIsIdentityPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/t/v2.0/.well-known/openid-configuration": true,
		"/t/discovery/v2.0/keys":                   true,
		"/t/oauth2/v2.0/token":                     true,
		"/subscriptions":                           false,
		"/subscriptions/s/resourceGroups/rg":       false,
		"//oauth2/v2.0/token":                      false,
		"/t/oauth2/v2.0/token/x":                   false,
		"/t/oauth2/v2.0/authorize":                 false,
	} {
		if got := IsIdentityPath(p); got != want {
			t.Errorf("IsIdentityPath(%q) = %v", p, got)
		}
	}
}

func TestSigningKeySurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	st1 := openStore(t, path)
	e := newEnv(t, st1, nil)
	tok, err := e.getToken(t, e.admin, testAudience+"/.default")
	if err != nil {
		t.Fatal(err)
	}
	kid := e.svc.kid
	e.srv.Close()
	if err := st1.Close(); err != nil {
		t.Fatal(err)
	}

	st2 := openStore(t, path)
	svc2 := newService(t, st2, Config{BaseURL: e.svc.BaseURL()})
	if svc2.kid != kid {
		t.Fatalf("kid changed across restart: %s -> %s", kid, svc2.kid)
	}
	p, err := svc2.Authenticate(bearer(tok.Token))
	if err != nil || p.ClientID != e.admin.ClientID {
		t.Fatalf("token from before restart: %+v, %v", p, err)
	}
	// A second node on the same store shares the key too.
	svc3 := newService(t, st2, Config{BaseURL: e.svc.BaseURL()})
	if _, err := svc3.Authenticate(bearer(tok.Token)); err != nil {
		t.Fatalf("second node: %v", err)
	}
	if _, created, err := svc2.Bootstrap(t.Context(), ""); err != nil || created {
		t.Fatalf("Bootstrap after restart: created=%v err=%v", created, err)
	}
}

func TestAuthenticateRejects(t *testing.T) {
	st := newStore(t)
	svc := newService(t, st, Config{})
	creds, _, err := svc.Bootstrap(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := svc.principalByClientID(t.Context(), creds.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	good, _, err := svc.mintToken(rec, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(bearer(good)); err != nil {
		t.Fatalf("good token: %v", err)
	}

	// Tokens signed in other ways.
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	var claims jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(good, &claims); err != nil {
		t.Fatal(err)
	}
	sign := func(m jwt.SigningMethod, key any, kid string, edit func(jwt.MapClaims)) string {
		c := jwt.MapClaims{}
		for k, v := range claims {
			c[k] = v
		}
		if edit != nil {
			edit(c)
		}
		tk := jwt.NewWithClaims(m, c)
		if kid != "" {
			tk.Header["kid"] = kid
		}
		s, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&svc.key.PublicKey)
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"ver":"2.0"`, `"ver":"2.1"`, 1))) + "." + parts[2]
	badSig := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	expired, _, err := svc.mintToken(rec, now.Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	future, _, err := svc.mintToken(rec, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	otherAud := newService(t, st, Config{Audience: "https://other.example"})
	otherBase := newService(t, st, Config{BaseURL: "https://10.0.0.1:9443"})

	cases := []struct {
		name string
		svc  *Service
		hdr  string
		code string
	}{
		{name: "no header", hdr: "", code: CodeAuthenticationFailed},
		{name: "basic scheme", hdr: "Basic Zm9vOmJhcg==", code: CodeAuthenticationFailed},
		{name: "bearer without token", hdr: "Bearer ", code: CodeAuthenticationFailed},
		{name: "garbage", hdr: "Bearer not.a.jwt", code: CodeInvalidAuthenticationToken},
		{name: "tampered payload", hdr: "Bearer " + tampered, code: CodeInvalidAuthenticationToken},
		{name: "bad signature", hdr: "Bearer " + badSig, code: CodeInvalidAuthenticationToken},
		{name: "other key same kid", hdr: "Bearer " + sign(jwt.SigningMethodRS256, otherKey, svc.kid, nil), code: CodeInvalidAuthenticationToken},
		{name: "unknown kid", hdr: "Bearer " + sign(jwt.SigningMethodRS256, svc.key, "other", nil), code: CodeInvalidAuthenticationToken},
		{name: "alg none", hdr: "Bearer " + sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, svc.kid, nil), code: CodeInvalidAuthenticationToken},
		{name: "HS256 with public key", hdr: "Bearer " + sign(jwt.SigningMethodHS256, pubDER, svc.kid, nil), code: CodeInvalidAuthenticationToken},
		{name: "PS256", hdr: "Bearer " + sign(jwt.SigningMethodPS256, svc.key, svc.kid, nil), code: CodeInvalidAuthenticationToken},
		{name: "expired", hdr: "Bearer " + expired, code: CodeExpiredAuthenticationToken},
		{name: "not yet valid", hdr: "Bearer " + future, code: CodeInvalidAuthenticationToken},
		{name: "other audience", svc: otherAud, hdr: "Bearer " + good, code: CodeInvalidAuthenticationTokenAudience},
		{name: "other issuer", svc: otherBase, hdr: "Bearer " + good, code: CodeInvalidAuthenticationToken},
		{name: "forged tenant", hdr: "Bearer " + sign(jwt.SigningMethodRS256, svc.key, svc.kid, func(c jwt.MapClaims) {
			tid := newGUID()
			c["tid"], c["iss"] = tid, svc.issuer(tid)
		}), code: CodeInvalidAuthenticationToken},
		{name: "forged appid", hdr: "Bearer " + sign(jwt.SigningMethodRS256, svc.key, svc.kid, func(c jwt.MapClaims) { c["appid"] = newGUID() }), code: CodeInvalidAuthenticationToken},
		{name: "no exp", hdr: "Bearer " + sign(jwt.SigningMethodRS256, svc.key, svc.kid, func(c jwt.MapClaims) { delete(c, "exp") }), code: CodeInvalidAuthenticationToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := svc
			if tc.svc != nil {
				s = tc.svc
			}
			r := httptest.NewRequest(http.MethodGet, "/subscriptions", nil)
			if tc.hdr != "" {
				r.Header.Set("Authorization", tc.hdr)
			}
			_, err := s.Authenticate(r)
			var ae *AuthError
			if !errors.As(err, &ae) || ae.Code != tc.code {
				t.Fatalf("err = %v, want AuthError %s", err, tc.code)
			}
			if status, code, _, ok := AsError(err); !ok || status != 401 || code != tc.code {
				t.Errorf("AsError = %d %s %v", status, code, ok)
			}
		})
	}

	// A deleted principal's token stops working.
	if err := svc.DeletePrincipal(t.Context(), rec.ObjectID); err != nil {
		t.Fatal(err)
	}
	_, err = svc.Authenticate(bearer(good))
	var ae *AuthError
	if !errors.As(err, &ae) || ae.Code != CodeInvalidAuthenticationToken {
		t.Fatalf("deleted principal: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	st := newStore(t)
	for _, cfg := range []Config{
		{BaseURL: "http://127.0.0.1:8443"},
		{BaseURL: "https://127.0.0.1:8443/arm"},
		{BaseURL: ""},
		{BaseURL: "https://127.0.0.1:8443", TokenLifetime: time.Minute},
	} {
		if _, err := New(t.Context(), st, cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	s, err := New(t.Context(), st, Config{BaseURL: "https://h:1/"})
	if err != nil {
		t.Fatal(err)
	}
	if s.BaseURL() != "https://h:1" || s.Audience() != "https://h:1" || s.lifetime != time.Hour {
		t.Errorf("defaults: %s %s %v", s.BaseURL(), s.Audience(), s.lifetime)
	}
}

// TestOSSRDBMSToken: a token asked for the OSS RDBMS scope (what az
// account get-access-token --resource-type oss-rdbms asks) carries that
// audience and the principal's oid and tid; ARM refuses it.
func TestOSSRDBMSToken(t *testing.T) {
	e := newEnv(t, newStore(t), nil)
	tok, err := e.getToken(t, e.admin, OSSRDBMSAudience+"/.default")
	if err != nil {
		t.Fatal(err)
	}
	var c tokenClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok.Token, &c); err != nil {
		t.Fatal(err)
	}
	arm, err := e.getToken(t, e.admin, e.admin.Audience+"/.default")
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.svc.Authenticate(bearer(arm.Token))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Audience) != 1 || c.Audience[0] != OSSRDBMSAudience || c.ObjectID != p.ObjectID || c.TenantID != e.admin.TenantID || c.Issuer != e.svc.Issuer(e.admin.TenantID) {
		t.Errorf("claims: aud %v oid %s tid %s iss %s; want %s %s %s", c.Audience, c.ObjectID, c.TenantID, c.Issuer, OSSRDBMSAudience, p.ObjectID, e.admin.TenantID)
	}
	_, err = e.svc.Authenticate(bearer(tok.Token))
	var ae *AuthError
	if !errors.As(err, &ae) || ae.Code != CodeInvalidAuthenticationTokenAudience {
		t.Errorf("ARM with an oss-rdbms token: %v, want %s", err, CodeInvalidAuthenticationTokenAudience)
	}
	if !strings.Contains(string(e.svc.JWKS()), `"kid":"`+e.svc.kid+`"`) {
		t.Errorf("JWKS lacks the signing key: %s", e.svc.JWKS())
	}
	if _, err := e.getToken(t, e.admin, "https://database.windows.net/.default"); err == nil {
		t.Error("a token for an audience privlink does not serve was issued")
	}
}
