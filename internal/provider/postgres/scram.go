package postgres

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// SCRAM-SHA-256 verifiers (RFC 5802, RFC 7677) in PostgreSQL's format:
//
//	SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
//
// with base64 salt and keys, as pg_authid.rolpassword holds them and as
// ALTER ROLE ... PASSWORD accepts them. The controller hands the verifier
// to PostgreSQL; the password itself is never stored.
//
// PostgreSQL normalises a password with SASLprep before hashing it. For
// the printable ASCII passwords privlink accepts (validate.go) SASLprep is
// the identity, so the bytes are hashed as given, exactly as libpq and the
// server do.

const (
	scramIterations = 4096 // PostgreSQL's scram_iterations default
	scramSaltLen    = 16   // PostgreSQL's SCRAM_DEFAULT_SALT_LEN
	scramPrefix     = "SCRAM-SHA-256$"
)

// NewVerifier returns the SCRAM-SHA-256 verifier of password with a fresh
// random salt.
func NewVerifier(password string) (string, error) {
	salt := make([]byte, scramSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("scram salt: %w", err)
	}
	return verifierWithSalt(password, salt, scramIterations)
}

// verifierWithSalt computes the verifier for a given salt and iteration
// count (tests use fixed salts).
func verifierWithSalt(password string, salt []byte, iterations int) (string, error) {
	storedKey, serverKey, err := scramKeys(password, salt, iterations)
	if err != nil {
		return "", err
	}
	b64 := base64.StdEncoding.EncodeToString
	return scramPrefix + strconv.Itoa(iterations) + ":" + b64(salt) + "$" + b64(storedKey) + ":" + b64(serverKey), nil
}

// scramKeys derives StoredKey and ServerKey:
//
//	SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations)
//	ClientKey      = HMAC(SaltedPassword, "Client Key")
//	StoredKey      = SHA-256(ClientKey)
//	ServerKey      = HMAC(SaltedPassword, "Server Key")
func scramKeys(password string, salt []byte, iterations int) (storedKey, serverKey []byte, err error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return nil, nil, fmt.Errorf("scram: %w", err)
	}
	clientKey := hmacSHA256(salted, []byte("Client Key"))
	sum := sha256.Sum256(clientKey)
	return sum[:], hmacSHA256(salted, []byte("Server Key")), nil
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// scramVerifier is a parsed verifier.
type scramVerifier struct {
	iterations           int
	salt                 []byte
	storedKey, serverKey []byte
}

// parseVerifier parses PostgreSQL's verifier format.
func parseVerifier(v string) (*scramVerifier, error) {
	rest, ok := strings.CutPrefix(v, scramPrefix)
	if !ok {
		return nil, fmt.Errorf("not a SCRAM-SHA-256 verifier")
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return nil, fmt.Errorf("verifier has no keys")
	}
	iter, saltB64, ok := strings.Cut(params, ":")
	if !ok {
		return nil, fmt.Errorf("verifier has no salt")
	}
	stored, server, ok := strings.Cut(keys, ":")
	if !ok {
		return nil, fmt.Errorf("verifier has no server key")
	}
	n, err := strconv.Atoi(iter)
	if err != nil || n < 1 || n > 1<<24 {
		return nil, fmt.Errorf("verifier has a bad iteration count %q", iter)
	}
	out := &scramVerifier{iterations: n}
	dec := base64.StdEncoding.DecodeString
	if out.salt, err = dec(saltB64); err != nil || len(out.salt) == 0 {
		return nil, fmt.Errorf("verifier has a bad salt")
	}
	if out.storedKey, err = dec(stored); err != nil || len(out.storedKey) != sha256.Size {
		return nil, fmt.Errorf("verifier has a bad stored key")
	}
	if out.serverKey, err = dec(server); err != nil || len(out.serverKey) != sha256.Size {
		return nil, fmt.Errorf("verifier has a bad server key")
	}
	return out, nil
}

// VerifyPassword reports whether password matches the verifier, as
// PostgreSQL's scram_verify_plain_password does. A malformed verifier
// matches nothing.
func VerifyPassword(verifier, password string) bool {
	v, err := parseVerifier(verifier)
	if err != nil {
		return false
	}
	storedKey, serverKey, err := scramKeys(password, v.salt, v.iterations)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(storedKey, v.storedKey) == 1 &&
		subtle.ConstantTimeCompare(serverKey, v.serverKey) == 1
}
