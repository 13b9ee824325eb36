// Package identity makes privlinkd its own identity provider, shaped like
// Microsoft Entra ID so that azidentity/MSAL clients work unchanged, and
// holds the authorization model of the ARM API.
//
// It keeps, in the store under "identity/": tenants, subscriptions,
// service principals (client secrets only as hashes), the RS256 token
// signing key (shared by every node of one store) and role assignments.
// Handler serves the OpenID discovery document, the JWKS and the OAuth2
// client-credentials token endpoint per tenant; Authenticate verifies the
// bearer tokens of ARM requests; Grants answers whether a principal may
// perform an action at a scope.
package identity

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"strings"
	"time"

	"github.com/privlink/privlink/internal/store"
)

// Store keys. Everything lives under "identity/".
const (
	keySigningKey     = "identity/signing-key"
	keyDefaultTenant  = "identity/default-tenant" // value: tenant id
	prefixTenants     = "identity/tenants/"       // + tenant id
	prefixSubs        = "identity/subscriptions/" // + subscription id
	prefixPrincipals  = "identity/principals/"    // + object id
	prefixClients     = "identity/clients/"       // + client id -> object id
	prefixAssignments = "identity/roleassignments/"
	prefixRBAC        = "identity/rbac/"     // + principal oid + "/" + name
	prefixRBACScope   = "identity/rbacscope" // + lowercased assignment id
)

// DefaultTokenLifetime is the access token lifetime when Config leaves it
// zero. azcore refreshes tokens five minutes before expiry.
const DefaultTokenLifetime = time.Hour

// MinTokenLifetime is the shortest lifetime New accepts.
const MinTokenLifetime = 10 * time.Minute

// clockLeeway is the tolerance for exp/nbf/iat checks (clock skew between
// privlinkd nodes sharing one store).
const clockLeeway = 2 * time.Minute

// Config configures a Service.
type Config struct {
	// BaseURL is the https scheme and host (no path) where Handler is
	// served at the root, e.g. https://127.0.0.1:8443. It is the issuer
	// base and the clients' authority host.
	BaseURL string
	// Audience is the ARM audience that tokens are minted for and checked
	// against (cloud.Configuration's ResourceManager Audience). Empty
	// means BaseURL.
	Audience string
	// TokenLifetime of access tokens; zero means DefaultTokenLifetime.
	TokenLifetime time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Service is the identity provider and authorizer. It is safe for
// concurrent use.
type Service struct {
	st       store.Store
	baseURL  string
	audience string
	lifetime time.Duration
	log      *slog.Logger
	key      *rsa.PrivateKey
	kid      string
	now      func() time.Time
}

// New returns a Service over st, loading the token signing key from the
// store or creating it (once, even with several nodes racing).
func New(ctx context.Context, st store.Store, cfg Config) (*Service, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("identity: base URL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		// MSAL only accepts https authorities and takes the first path
		// segment as the tenant, so the endpoints must sit at the root.
		return nil, fmt.Errorf("identity: base URL %q must be https://host[:port] with no path", cfg.BaseURL)
	}
	base := "https://" + u.Host
	lifetime := cfg.TokenLifetime
	if lifetime == 0 {
		lifetime = DefaultTokenLifetime
	}
	if lifetime < MinTokenLifetime {
		return nil, fmt.Errorf("identity: token lifetime %v is below the minimum %v", lifetime, MinTokenLifetime)
	}
	aud := cfg.Audience
	if aud == "" {
		aud = base
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{st: st, baseURL: base, audience: aud, lifetime: lifetime, log: log, now: time.Now}
	if err := s.loadOrCreateSigningKey(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// BaseURL returns the normalized base URL (scheme and host).
func (s *Service) BaseURL() string { return s.baseURL }

// Audience returns the ARM audience: the one Authenticate accepts.
func (s *Service) Audience() string { return s.audience }

// OSSRDBMSAudience is the audience of tokens for Azure Database for
// PostgreSQL (and MySQL) logins with Microsoft Entra ID, what `az account
// get-access-token --resource-type oss-rdbms` asks for (scope
// https://ossrdbms-aad.database.windows.net/.default). PostgreSQL servers
// check such tokens themselves (pgserver's PAM helper); ARM refuses them.
const OSSRDBMSAudience = "https://ossrdbms-aad.database.windows.net"

// Audiences returns every audience the token endpoint issues tokens for:
// the ARM audience first, then OSSRDBMSAudience. Each token has one; only
// ARM tokens authenticate ARM requests.
func (s *Service) Audiences() []string { return []string{s.audience, OSSRDBMSAudience} }

// Issuer returns the issuer of the tokens of a tenant (the "iss" claim).
func (s *Service) Issuer(tenantID string) string { return s.issuer(tenantID) }

// JWKS returns the JSON Web Key Set of the token signing keys, as the
// keys endpoint serves it without the per-tenant issuer: what an offline
// verifier (pgserver's PAM helper) checks signatures against.
func (s *Service) JWKS() []byte {
	data, _ := json.Marshal(map[string]any{"keys": []jwk{s.publicJWK("")}})
	return data
}

// signingKeyRecord is the stored form of the token signing key. The key is
// stored in clear: whoever reads the store can mint tokens, just as whoever
// writes it can grant roles.
type signingKeyRecord struct {
	KeyID     string    `json:"kid"`
	Algorithm string    `json:"alg"`
	KeyPEM    string    `json:"keyPem"` // PKCS#8
	CreatedAt time.Time `json:"createdAt"`
}

func (s *Service) loadOrCreateSigningKey(ctx context.Context) error {
	kv, err := s.st.Get(ctx, keySigningKey)
	if errors.Is(err, store.ErrNotFound) {
		if err := s.createSigningKey(ctx); !errors.Is(err, store.ErrConflict) {
			return err
		}
		// Another node created it first: use theirs.
		kv, err = s.st.Get(ctx, keySigningKey)
	}
	if err != nil {
		return fmt.Errorf("identity: load signing key: %w", err)
	}
	return s.useSigningKey(kv.Value)
}

func (s *Service) createSigningKey(ctx context.Context) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("identity: generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("identity: encode signing key: %w", err)
	}
	rec := signingKeyRecord{
		KeyID:     jwkThumbprint(&key.PublicKey),
		Algorithm: "RS256",
		KeyPEM:    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		CreatedAt: s.now().UTC(),
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("identity: encode signing key record: %w", err)
	}
	if _, err := s.st.Put(ctx, keySigningKey, data, 0); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return err
		}
		return fmt.Errorf("identity: store signing key: %w", err)
	}
	s.log.Info("created token signing key", "kid", rec.KeyID)
	if err := s.useSigningKey(data); err != nil {
		return err
	}
	return nil
}

func (s *Service) useSigningKey(data []byte) error {
	var rec signingKeyRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return fmt.Errorf("identity: decode signing key record: %w", err)
	}
	block, _ := pem.Decode([]byte(rec.KeyPEM))
	if block == nil {
		return errors.New("identity: signing key record holds no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return fmt.Errorf("identity: parse signing key: %w", err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return fmt.Errorf("identity: signing key is %T, want RSA", k)
	}
	if rec.KeyID == "" {
		return errors.New("identity: signing key record has no kid")
	}
	s.key, s.kid = rk, rec.KeyID
	return nil
}

// jwkThumbprint is the RFC 7638 SHA-256 thumbprint of an RSA public key,
// base64url: a stable kid.
func jwkThumbprint(pub *rsa.PublicKey) string {
	e := base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
	n := base64.RawURLEncoding.EncodeToString(pub.N.Bytes())
	sum := sha256.Sum256([]byte(`{"e":"` + e + `","kty":"RSA","n":"` + n + `"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// issuer is the token issuer and OpenID issuer of a tenant.
func (s *Service) issuer(tenantID string) string {
	return s.baseURL + "/" + tenantID + "/v2.0"
}

// getJSON reads key into v, mapping a missing key to ErrNotFound.
func getJSON(ctx context.Context, st store.Store, key string, v any) error {
	kv, err := st.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(kv.Value, v); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return nil
}

func txGetJSON(tx store.Tx, key string, v any) error {
	kv, err := tx.Get(key)
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(kv.Value, v); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return nil
}

func txPutJSON(tx store.Tx, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return tx.Put(key, data)
}

func normalizeID(id string) string { return strings.ToLower(id) }
