package identity

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
)

// Handler serves the Entra-ID-shaped endpoints at the root of the URL
// space (MSAL takes the first path segment as the tenant):
//
//	GET  /{tenant}/v2.0/.well-known/openid-configuration
//	GET  /{tenant}/discovery/v2.0/keys
//	POST /{tenant}/oauth2/v2.0/token   (client_credentials)
//
// and the same authority shaped as AD FS, for MSAL clients that cannot be
// told to skip instance discovery (which asks login.microsoftonline.com
// about any other authority; the az CLI before core.instance_discovery):
// MSAL never does it for an AD FS authority, whose one tenant is
// "adfs". privlink's token endpoint there takes the tenant from the
// client:
//
//	GET  /adfs/.well-known/openid-configuration
//	POST /adfs/oauth2/token
//
// Mount it for the paths IsIdentityPath accepts.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", s.serveOpenIDConfiguration)
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", s.serveKeys)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", s.serveToken)
	mux.HandleFunc("GET /adfs/.well-known/openid-configuration", s.serveOpenIDConfiguration)
	mux.HandleFunc("POST /adfs/oauth2/token", s.serveToken)
	return mux
}

// adfsTenant is the tenant segment of the AD FS shaped authority.
const adfsTenant = "adfs"

// IsIdentityPath reports whether an URL path is one of Handler's endpoints
// (whatever the tenant segment), so that a server can route it there and
// everything else to ARM.
func IsIdentityPath(path string) bool {
	switch path {
	case "/" + adfsTenant + "/.well-known/openid-configuration", "/" + adfsTenant + "/oauth2/token":
		return true
	}
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(segs) != 4 || segs[0] == "" {
		return false
	}
	rest := strings.Join(segs[1:], "/")
	return rest == "v2.0/.well-known/openid-configuration" || rest == "discovery/v2.0/keys" || rest == "oauth2/v2.0/token"
}

// AADSTS error codes used by the token endpoint.
const (
	aadstsTenantNotFound       = 90002
	aadstsMissingParameter     = 900144
	aadstsUnsupportedGrant     = 70003
	aadstsInvalidScope         = 70011
	aadstsAppNotFound          = 700016
	aadstsInvalidClientSecret  = 7000215
	aadstsMissingClientSecret  = 7000218
	aadstsMalformedRequestBody = 90014
)

// oauthError is Entra ID's error body.
type oauthError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorCodes       []int  `json:"error_codes"`
	Timestamp        string `json:"timestamp"`
	TraceID          string `json:"trace_id"`
	CorrelationID    string `json:"correlation_id"`
	ErrorURI         string `json:"error_uri"`
}

// correlationID echoes the client's client-request-id (MSAL sends one), as
// Entra ID does, or makes one up.
func correlationID(r *http.Request) string {
	if id := r.Header.Get("client-request-id"); IsGUID(id) {
		return strings.ToLower(id)
	}
	return newGUID()
}

func (s *Service) writeOAuthError(w http.ResponseWriter, r *http.Request, status int, code string, aadsts int, msg string) {
	now := s.now().UTC()
	trace, corr := newGUID(), correlationID(r)
	ts := now.Format("2006-01-02 15:04:05Z")
	body := oauthError{
		Error: code,
		ErrorDescription: fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s",
			aadsts, msg, trace, corr, ts),
		ErrorCodes:    []int{aadsts},
		Timestamp:     ts,
		TraceID:       trace,
		CorrelationID: corr,
		ErrorURI:      fmt.Sprintf("%s/error?code=%d", s.baseURL, aadsts),
	}
	s.log.Info("token request refused", "path", r.URL.Path, "error", code, "aadsts", aadsts,
		"clientId", r.PostForm.Get("client_id"), "correlationId", corr)
	w.Header().Set("client-request-id", corr)
	w.Header().Set("x-ms-request-id", trace)
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// tenantFromPath resolves the {tenant} segment to a stored tenant id, or
// writes Entra's AADSTS90002 answer and returns false.
func (s *Service) tenantFromPath(w http.ResponseWriter, r *http.Request) (string, bool) {
	raw := r.PathValue("tenant")
	t, err := s.GetTenant(r.Context(), raw)
	if err == nil {
		return t.ID, true
	}
	if !errors.Is(err, ErrNotFound) {
		s.log.Error("tenant lookup failed", "tenant", raw, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return "", false
	}
	s.writeOAuthError(w, r, http.StatusBadRequest, "invalid_request", aadstsTenantNotFound, fmt.Sprintf(
		"Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.", raw))
	return "", false
}

func (s *Service) serveOpenIDConfiguration(w http.ResponseWriter, r *http.Request) {
	issuer, tokenPath := s.baseURL+"/"+adfsTenant, "/"+adfsTenant+"/oauth2/token"
	tid := adfsTenant
	if r.PathValue("tenant") != "" {
		var ok bool
		if tid, ok = s.tenantFromPath(w, r); !ok {
			return
		}
		issuer, tokenPath = s.issuer(tid), "/"+tid+"/oauth2/v2.0/token"
	}
	base := s.baseURL + "/" + tid
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                issuer,
		"token_endpoint":                        s.baseURL + tokenPath,
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic"},
		"grant_types_supported":                 []string{"client_credentials"},
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"claims_supported":                      []string{"sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid", "appid", "azp", "idtyp", "ver"},
		"request_uri_parameter_supported":       false,
		"tenant_region_scope":                   nil,
		"cloud_instance_name":                   "privlink",
	})
}

// jwk is one RSA key of the JWKS document.
type jwk struct {
	Kty    string `json:"kty"`
	Use    string `json:"use"`
	Alg    string `json:"alg"`
	Kid    string `json:"kid"`
	N      string `json:"n"`
	E      string `json:"e"`
	Issuer string `json:"issuer,omitempty"`
}

func (s *Service) serveKeys(w http.ResponseWriter, r *http.Request) {
	tid, ok := s.tenantFromPath(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": []jwk{s.publicJWK(s.issuer(tid))}})
}

// publicJWK is the signing key's public half as a JWK, with issuer when
// not empty.
func (s *Service) publicJWK(issuer string) jwk {
	pub := s.key.PublicKey
	return jwk{
		Kty:    "RSA",
		Use:    "sig",
		Alg:    "RS256",
		Kid:    s.kid,
		N:      base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		E:      base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		Issuer: issuer,
	}
}

// tokenResponse is the successful token answer.
type tokenResponse struct {
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	ExtExpiresIn int64  `json:"ext_expires_in"`
	AccessToken  string `json:"access_token"`
}

// maxTokenRequest bounds the token request body.
const maxTokenRequest = 64 << 10

// serveToken implements the client-credentials grant with a client secret
// (client_secret_post, or client_secret_basic). The optional "claims"
// parameter (the CAE capability xms_cc the ARM pipeline always sends) is
// accepted and ignored: privlink does not do continuous access
// evaluation.
func (s *Service) serveToken(w http.ResponseWriter, r *http.Request) {
	// On the AD FS shaped authority (no tenant segment) the tenant is the
	// client's own.
	adfs := r.PathValue("tenant") == ""
	tid := adfsTenant
	if !adfs {
		var ok bool
		if tid, ok = s.tenantFromPath(w, r); !ok {
			return
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenRequest)
	if err := r.ParseForm(); err != nil {
		s.writeOAuthError(w, r, http.StatusBadRequest, "invalid_request", aadstsMalformedRequestBody,
			"The request body must be a valid application/x-www-form-urlencoded form.")
		return
	}
	form := r.PostForm
	grant := form.Get("grant_type")
	switch {
	case grant == "":
		s.missingParameter(w, r, "grant_type")
		return
	case grant != "client_credentials":
		s.writeOAuthError(w, r, http.StatusBadRequest, "unsupported_grant_type", aadstsUnsupportedGrant,
			fmt.Sprintf("The app requested an unsupported grant type '%s'.", grant))
		return
	}
	clientID, secret := form.Get("client_id"), form.Get("client_secret")
	if user, pass, ok := r.BasicAuth(); ok && clientID == "" && secret == "" {
		// RFC 6749 §2.3.1: both parts are form-urlencoded.
		clientID, _ = url.QueryUnescape(user)
		secret, _ = url.QueryUnescape(pass)
	}
	if clientID == "" {
		s.missingParameter(w, r, "client_id")
		return
	}
	scope := form.Get("scope")
	if scope == "" {
		s.missingParameter(w, r, "scope")
		return
	}
	p, err := s.principalByClientID(r.Context(), clientID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		s.log.Error("client lookup failed", "clientId", clientID, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if err == nil && adfs {
		tid = p.TenantID
	}
	if err != nil || p.TenantID != tid {
		s.writeOAuthError(w, r, http.StatusBadRequest, "unauthorized_client", aadstsAppNotFound, fmt.Sprintf(
			"Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
			clientID, tid))
		return
	}
	if secret == "" {
		s.writeOAuthError(w, r, http.StatusUnauthorized, "invalid_client", aadstsMissingClientSecret,
			"The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return
	}
	if !p.secretMatches(secret) {
		s.writeOAuthError(w, r, http.StatusUnauthorized, "invalid_client", aadstsInvalidClientSecret, fmt.Sprintf(
			"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.",
			p.ClientID))
		return
	}
	aud, ok := s.scopeAudience(scope)
	if !ok {
		s.writeOAuthError(w, r, http.StatusBadRequest, "invalid_scope", aadstsInvalidScope, fmt.Sprintf(
			"The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope %s is not valid.",
			scope))
		return
	}
	token, expiresIn, err := s.mintTokenFor(p, s.now(), aud)
	if err != nil {
		s.log.Error("minting token failed", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	s.log.Debug("issued token", "tenant", tid, "clientId", p.ClientID, "objectId", p.ObjectID, "audience", aud)
	w.Header().Set("client-request-id", correlationID(r))
	writeJSON(w, http.StatusOK, tokenResponse{
		TokenType:    "Bearer",
		ExpiresIn:    expiresIn,
		ExtExpiresIn: expiresIn,
		AccessToken:  token,
	})
}

func (s *Service) missingParameter(w http.ResponseWriter, r *http.Request, name string) {
	s.writeOAuthError(w, r, http.StatusBadRequest, "invalid_request", aadstsMissingParameter,
		fmt.Sprintf("The request body must contain the following parameter: '%s'.", name))
}

// validScope reports whether scope names one resource privlink issues
// tokens for (scopeAudience).
func (s *Service) validScope(scope string) bool {
	_, ok := s.scopeAudience(scope)
	return ok
}

// scopeAudience returns the audience a token request's scope asks for:
// exactly one "<audience>/.default" of an audience in Audiences (with or
// without a trailing slash on the audience, so both https://x/.default
// and https://x//.default name https://x/), plus any of the OpenID scopes
// MSAL appends. The audience is returned as Audiences spells it.
func (s *Service) scopeAudience(scope string) (aud string, ok bool) {
	resources := 0
	for _, sc := range strings.Fields(scope) {
		switch sc {
		case "openid", "offline_access", "profile", "email":
			continue
		}
		res, ok := strings.CutSuffix(sc, "/.default")
		if !ok {
			return "", false
		}
		found := false
		for _, a := range s.Audiences() {
			if strings.EqualFold(strings.TrimSuffix(res, "/"), strings.TrimSuffix(a, "/")) {
				aud, found = a, true
				break
			}
		}
		if !found {
			return "", false
		}
		resources++
	}
	return aud, resources == 1
}
