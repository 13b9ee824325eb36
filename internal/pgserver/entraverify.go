package pgserver

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// entraLeeway is the clock tolerance of exp and nbf, as identity's.
const entraLeeway = 2 * time.Minute

// entraClaims are the claims the helper reads of a token.
type entraClaims struct {
	jwt.RegisteredClaims
	TenantID string   `json:"tid"`
	ObjectID string   `json:"oid"`
	AMR      []string `json:"amr"`
}

// entraRow is one line of principals.csv.
type entraRow struct {
	objectID, tenantID string
	mfa                bool
}

// VerifyEntraToken checks, offline, that token lets role user log in to
// the cluster whose entra/ directory is dir: an RS256 JWT signed by a key
// of keys.json (by kid), with keys.json's issuer and audience, not
// expired and valid already (exp required, 2 minutes of leeway), of the
// server's tenant; and user is a role of principals.csv whose object id
// and tenant are the token's oid and tid (and, for a role created with
// isMfa, whose token says mfa in amr).
func VerifyEntraToken(dir, user, token string) error {
	return verifyEntraToken(dir, user, token, time.Now())
}

func verifyEntraToken(dir, user, token string, now time.Time) error {
	if user == "" || token == "" {
		return errors.New("no user or no token")
	}
	raw, err := os.ReadFile(filepath.Join(dir, entraKeysFile))
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	var cfg entraKeys
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	keys, err := parseJWKS(cfg.Keys)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	var c entraClaims
	_, err = jwt.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, ok := keys[kid]
		if !ok {
			return nil, fmt.Errorf("unknown signing key %q", kid)
		}
		return k, nil
	},
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
		jwt.WithLeeway(entraLeeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
	)
	if err != nil {
		return fmt.Errorf("token refused: %w", err)
	}
	if !strings.EqualFold(c.TenantID, cfg.TenantID) {
		return fmt.Errorf("token of tenant %q, the server's is %q", c.TenantID, cfg.TenantID)
	}
	rows, err := readPrincipals(filepath.Join(dir, entraPrincipals))
	if err != nil {
		return err
	}
	row, ok := rows[user]
	if !ok {
		return fmt.Errorf("role %q is not a Microsoft Entra principal of this server", user)
	}
	if !strings.EqualFold(row.objectID, c.ObjectID) || !strings.EqualFold(row.tenantID, c.TenantID) {
		return fmt.Errorf("token of object %q (tenant %q); role %q is object %q", c.ObjectID, c.TenantID, user, row.objectID)
	}
	if row.mfa && !slices.Contains(c.AMR, "mfa") {
		return fmt.Errorf("role %q needs a token of a multi-factor sign-in", user)
	}
	return nil
}

// parseJWKS returns the RSA keys of a JWKS document by kid.
func parseJWKS(raw []byte) (map[string]*rsa.PublicKey, error) {
	var set struct {
		Keys []struct {
			Kty, Kid, N, E string
		} `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, err
	}
	out := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "RSA" {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil || len(e) > 4 {
			return nil, fmt.Errorf("key %q does not decode", k.Kid)
		}
		out[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	}
	if len(out) == 0 {
		return nil, errors.New("no RSA key")
	}
	return out, nil
}

// readPrincipals reads principals.csv (pgaadauth.sync's COPY: role name,
// object id, tenant id, MFA as t/f).
func readPrincipals(path string) (map[string]entraRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("principals: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = 4
	recs, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("principals: %w", err)
	}
	out := make(map[string]entraRow, len(recs))
	for _, rec := range recs {
		out[rec[0]] = entraRow{objectID: rec[1], tenantID: rec[2], mfa: rec[3] == "t"}
	}
	return out, nil
}
