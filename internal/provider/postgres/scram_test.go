package postgres

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

// TestSCRAMRFC7677 checks the verifier against the SCRAM-SHA-256 exchange
// of RFC 7677 section 3 (user "user", password "pencil"): a server holding
// only our StoredKey and ServerKey must accept the RFC's client proof and
// answer the RFC's server signature, exactly as PostgreSQL does with
// pg_authid.rolpassword.
func TestSCRAMRFC7677(t *testing.T) {
	const (
		clientFirstBare = "n=user,r=rOprNGfwEbeRWgbNEkqO"
		serverFirst     = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
		clientFinalBare = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
		proof           = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
		serverSignature = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
	)
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	v, err := verifierWithSalt("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$") {
		t.Fatalf("verifier %q", v)
	}
	pv, err := parseVerifier(v)
	if err != nil {
		t.Fatal(err)
	}
	authMessage := []byte(clientFirstBare + "," + serverFirst + "," + clientFinalBare)
	// The server's check of the client proof (RFC 5802 section 3).
	p, _ := base64.StdEncoding.DecodeString(proof)
	sig := hmacSHA256(pv.storedKey, authMessage)
	clientKey := make([]byte, len(p))
	for i := range p {
		clientKey[i] = p[i] ^ sig[i]
	}
	if sum := sha256.Sum256(clientKey); !bytes.Equal(sum[:], pv.storedKey) {
		t.Error("the RFC 7677 client proof does not verify against StoredKey")
	}
	if got := base64.StdEncoding.EncodeToString(hmacSHA256(pv.serverKey, authMessage)); got != serverSignature {
		t.Errorf("server signature %s, want %s", got, serverSignature)
	}
	if !VerifyPassword(v, "pencil") || VerifyPassword(v, "pencil ") || VerifyPassword(v, "Pencil") {
		t.Error("VerifyPassword disagrees with the RFC vector")
	}
}

func TestVerifier(t *testing.T) {
	v1, err := NewVerifier(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := NewVerifier(testPassword)
	if v1 == v2 {
		t.Error("two verifiers share a salt")
	}
	if strings.Contains(v1, testPassword) {
		t.Error("the verifier contains the password")
	}
	pv, err := parseVerifier(v1)
	if err != nil || pv.iterations != 4096 || len(pv.salt) != 16 {
		t.Fatalf("verifier %q: %+v %v", v1, pv, err)
	}
	if !VerifyPassword(v1, testPassword) || !VerifyPassword(v2, testPassword) || VerifyPassword(v1, "wrong") {
		t.Error("VerifyPassword")
	}
	for _, bad := range []string{"", "md5abc", "SCRAM-SHA-256$", "SCRAM-SHA-256$x:c2FsdA==$a:b",
		"SCRAM-SHA-256$4096:c2FsdA==$YQ==:YQ==", "SCRAM-SHA-256$4096:!!$" + strings.Repeat("A", 44) + ":" + strings.Repeat("A", 44),
		"SCRAM-SHA-256$0:c2FsdA==$" + strings.Repeat("A", 43) + "=:" + strings.Repeat("A", 43) + "="} {
		if VerifyPassword(bad, "") || VerifyPassword(bad, testPassword) {
			t.Errorf("malformed verifier %q verified", bad)
		}
	}
}

func TestPasswordPolicy(t *testing.T) {
	for pw, ok := range map[string]bool{
		"Correct-Horse-42":         true,
		"abcDEF12":                 true,  // upper, lower, digits
		"abc-def-12":               true,  // lower, other, digits
		"Short1!":                  false, // 7 characters
		"alllowercase":             false,
		"ALLUPPER123":              false, // two categories
		"Pgadmin-Rules-1":          false, // contains the login
		"xpgaX9!!":                 false, // "pga": three consecutive characters of the login
		"Unicode-Passw0rd-é":       false,
		strings.Repeat("Aa1-", 33): false, // 132 characters
	} {
		err := validatePassword(pw, testLogin)
		if (err == nil) != ok {
			t.Errorf("password %q: err %v, want ok=%v", pw, err, ok)
		}
		if err != nil && strings.Contains(err.Error(), pw) {
			t.Errorf("the error quotes the password: %v", err)
		}
	}
}

// TestSCRAMPostgreSQL compares with a verifier PostgreSQL 15.18 itself
// produced (SET password_encryption = 'scram-sha-256'; CREATE ROLE other
// PASSWORD 'Plain-Pass-2'; SELECT rolpassword FROM pg_authid): the same
// salt gives the same verifier, and VerifyPassword accepts it. (The other
// direction was checked by hand: a role given NewVerifier's output with
// ALTER ROLE ... PASSWORD logs in through scram-sha-256 with the password
// and is refused with another.)
func TestSCRAMPostgreSQL(t *testing.T) {
	const fromPostgres = "SCRAM-SHA-256$4096:gWBLrcrLhEewyqX/PfHBeQ==$kNVTWXYepJEhGn4qHbUY27v7NlzDbhOcq7frfEwg1s0=:z9sNXKOPM5MDnGxYWacX1MTHra5ovHctOh34r2VV5Lo="
	salt, _ := base64.StdEncoding.DecodeString("gWBLrcrLhEewyqX/PfHBeQ==")
	v, err := verifierWithSalt("Plain-Pass-2", salt, 4096)
	if err != nil || v != fromPostgres {
		t.Fatalf("verifier %s, PostgreSQL's %s (%v)", v, fromPostgres, err)
	}
	if !VerifyPassword(fromPostgres, "Plain-Pass-2") || VerifyPassword(fromPostgres, "Plain-Pass-3") {
		t.Error("VerifyPassword disagrees with PostgreSQL")
	}
}
