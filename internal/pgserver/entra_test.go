package pgserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestRenderHBAEntra(t *testing.T) {
	for _, pw := range []bool{true, false} {
		hba := string(renderHBA(true, &hbaEntra{service: "privlink-0123", passwordAuth: pw}))
		pam := strings.Index(hba, "+azure_ad_user  0.0.0.0/0  pam pamservice=privlink-0123")
		all := strings.Index(hba, "hostssl    all       all ")
		if pam < 0 || all < 0 || pam > all {
			t.Fatalf("password %v: want the pam line for azure_ad_user before the line for all:\n%s", pw, hba)
		}
		scram := strings.Contains(hba, "all       0.0.0.0/0  scram-sha-256")
		if scram != pw {
			t.Errorf("password %v: scram line %v:\n%s", pw, scram, hba)
		}
		if !pw && !strings.Contains(hba, "hostssl    all       all       0.0.0.0/0  reject") {
			t.Errorf("password auth disabled: no reject line:\n%s", hba)
		}
		if !strings.Contains(hba, "peer map=privlink") {
			t.Errorf("privlinkd's peer line is gone:\n%s", hba)
		}
	}
}

// entraFixture writes an entra/ directory with key k and one principal.
func entraFixture(t *testing.T, k *rsa.PrivateKey) string {
	t.Helper()
	dir := t.TempDir()
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
	}}})
	keys, _ := json.Marshal(entraKeys{Issuer: "https://idp/" + testTenant + "/v2.0", Audience: EntraAudience, TenantID: testTenant, Keys: jwks})
	if err := os.WriteFile(filepath.Join(dir, entraKeysFile), keys, 0o600); err != nil {
		t.Fatal(err)
	}
	csv := "alice@example.com," + testOID + "," + testTenant + ",f\n\"mfa,role\"," + testOID + "," + testTenant + ",t\n"
	if err := os.WriteFile(filepath.Join(dir, entraPrincipals), []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

const (
	testTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	testOID    = "11111111-2222-3333-4444-555555555555"
)

func TestVerifyEntraToken(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := entraFixture(t, key)
	now := time.Now()
	good := jwt.MapClaims{
		"aud": EntraAudience, "iss": "https://idp/" + testTenant + "/v2.0",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"tid": testTenant, "oid": testOID,
	}
	sign := func(k *rsa.PrivateKey, kid string, edit func(jwt.MapClaims)) string {
		c := jwt.MapClaims{}
		for n, v := range good {
			c[n] = v
		}
		if edit != nil {
			edit(c)
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if err := verifyEntraToken(dir, "alice@example.com", sign(key, "k1", nil), now); err != nil {
		t.Fatalf("good token refused: %v", err)
	}
	for name, c := range map[string]struct{ user, token string }{
		"expired":         {"alice@example.com", sign(key, "k1", func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })},
		"no exp":          {"alice@example.com", sign(key, "k1", func(c jwt.MapClaims) { delete(c, "exp") })},
		"not yet":         {"alice@example.com", sign(key, "k1", func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })},
		"other audience":  {"alice@example.com", sign(key, "k1", func(c jwt.MapClaims) { c["aud"] = "https://management.azure.com/" })},
		"other issuer":    {"alice@example.com", sign(key, "k1", func(c jwt.MapClaims) { c["iss"] = "https://evil/" + testTenant + "/v2.0" })},
		"other tenant":    {"alice@example.com", sign(key, "k1", func(c jwt.MapClaims) { c["tid"] = "00000000-0000-0000-0000-000000000001" })},
		"other key":       {"alice@example.com", sign(other, "k1", nil)},
		"unknown kid":     {"alice@example.com", sign(key, "k2", nil)},
		"other object":    {"alice@example.com", sign(key, "k1", func(c jwt.MapClaims) { c["oid"] = "99999999-2222-3333-4444-555555555555" })},
		"not a principal": {"bob", sign(key, "k1", nil)},
		"mfa needed":      {"mfa,role", sign(key, "k1", nil)},
		"garbage":         {"alice@example.com", "not.a.token"},
		"empty":           {"alice@example.com", ""},
	} {
		if err := verifyEntraToken(dir, c.user, c.token, now); err == nil {
			t.Errorf("%s: token accepted", name)
		}
	}
	if err := verifyEntraToken(dir, "mfa,role", sign(key, "k1", func(c jwt.MapClaims) { c["amr"] = []string{"pwd", "mfa"} }), now); err != nil {
		t.Errorf("mfa token refused: %v", err)
	}
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, good)
	hs.Header["kid"] = "k1"
	s, _ := hs.SignedString([]byte("secret"))
	if err := verifyEntraToken(dir, "alice@example.com", s, now); err == nil {
		t.Error("HS256 token accepted")
	}
}

// TestEntraNeedsPAM: Debian's PostgreSQL is linked with libpam and the
// npm builds are not (EntraVersions says which); Ensure refuses Entra on
// a major without PAM with ErrInvalid, before it touches anything: the
// server keeps running with its pg_hba.conf, which has no pam line (a
// postmaster of such a build refuses to load one: "invalid authentication
// method "pam": not supported by this build").
func TestEntraNeedsPAM(t *testing.T) {
	if linksPAM("/dev/null") {
		t.Error("/dev/null links PAM")
	}
	e := newEnv(t)
	for _, v := range e.m.Versions() {
		want := slices.Contains(debianMajors, v)
		if got := slices.Contains(e.m.EntraVersions(), v); got != want {
			t.Errorf("PostgreSQL %s (%s): PAM %v, want %v", v, e.m.bins[v], got, want)
		}
	}
	var without string
	for _, v := range e.m.Versions() {
		if !slices.Contains(e.m.EntraVersions(), v) {
			without = v
		}
	}
	if without == "" {
		t.Skip("every installed major has PAM; scripts/install-pg-majors installs 16 and 17 without it")
	}
	e.version = without
	s := e.newServer()
	e.ensure(e.m, s)
	hba := filepath.Join(e.m.pgDir, s.ID, dataSubdir, hbaFile)
	before, err := os.ReadFile(hba)
	if err != nil {
		t.Fatal(err)
	}
	s.Entra = &EntraSpec{TenantID: testTenant, PasswordAuth: true,
		Admins: []EntraPrincipal{{Name: "alice@example.com", ObjectID: testOID, TenantID: testTenant, Type: "User"}}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = e.m.Ensure(ctx, s.Spec)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "built without PAM") || !strings.Contains(err.Error(), "PostgreSQL "+without) {
		t.Fatalf("Entra on %s: %v, want ErrInvalid naming the missing PAM", without, err)
	}
	if after, _ := os.ReadFile(hba); !bytes.Equal(before, after) {
		t.Errorf("a refused Entra spec changed pg_hba.conf:\n%s", after)
	}
	if !e.m.Running(s.ID) {
		t.Error("the server stopped after a refused spec")
	}
	if out, err := e.psql(s, s.password, "", "select 1"); err != nil {
		t.Errorf("password login after the refused spec: %v %s", err, out)
	}
}
