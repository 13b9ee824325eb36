package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Principal is the authenticated caller of a request.
type Principal struct {
	TenantID string
	ObjectID string
	ClientID string
	// Admin: may call privlink's own administrative operations. Not an
	// ARM permission.
	Admin bool
}

// tokenClaims are the claims of privlink access tokens, modelled on Entra
// ID v2.0 app-only tokens.
type tokenClaims struct {
	jwt.RegisteredClaims
	TenantID string `json:"tid"`
	ObjectID string `json:"oid"`
	AppID    string `json:"appid"`
	AZP      string `json:"azp"`
	IDType   string `json:"idtyp"`
	Version  string `json:"ver"`
}

// mintToken signs an ARM access token for p, valid from now for the
// configured lifetime. It returns the token and its lifetime in seconds.
func (s *Service) mintToken(p principalRecord, now time.Time) (string, int64, error) {
	return s.mintTokenFor(p, now, s.audience)
}

// mintTokenFor signs an access token for p with audience aud (one of
// Audiences), valid from now for the configured lifetime.
func (s *Service) mintTokenFor(p principalRecord, now time.Time, aud string) (string, int64, error) {
	exp := now.Add(s.lifetime)
	claims := jwt.MapClaims{
		"aud":   aud, // a single string, as Entra ID writes it
		"iss":   s.issuer(p.TenantID),
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   exp.Unix(),
		"tid":   p.TenantID,
		"oid":   p.ObjectID,
		"sub":   p.ObjectID,
		"appid": p.ClientID,
		"azp":   p.ClientID,
		"idtyp": "app",
		"ver":   "2.0",
		"uti":   newGUID(),
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = s.kid
	signed, err := t.SignedString(s.key)
	if err != nil {
		return "", 0, fmt.Errorf("identity: sign token: %w", err)
	}
	return signed, int64(s.lifetime / time.Second), nil
}

// Authenticate verifies the request's "Authorization: Bearer" token: RS256
// only, signed by the service's key (matching kid), exp/nbf/iat within a
// small leeway, audience, issuer of the token's tenant, and a principal
// that still exists with the token's client and tenant. Failures are
// *AuthError values carrying the ARM code for a 401 answer.
func (s *Service) Authenticate(r *http.Request) (Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return Principal{}, &AuthError{Code: CodeAuthenticationFailed, Message: "Authentication failed. The 'Authorization' header is missing."}
	}
	raw, ok := bearerToken(h)
	if !ok {
		return Principal{}, &AuthError{Code: CodeAuthenticationFailed, Message: "Authentication failed. The 'Authorization' header is provided in an invalid format."}
	}
	return s.verify(r.Context(), raw, "The access token is invalid.")
}

// bearerToken returns the token of a "Bearer <token>" credential.
func bearerToken(h string) (string, bool) {
	scheme, raw, ok := strings.Cut(strings.TrimSpace(h), " ")
	raw = strings.TrimSpace(raw)
	return raw, ok && strings.EqualFold(scheme, "Bearer") && raw != ""
}

// AuxiliaryHeader carries the tokens of other tenants, as ARM takes them
// for cross-tenant operations (a virtual network peering with a network
// of another tenant): "Bearer <t1>, Bearer <t2>", at most
// MaxAuxiliaryTokens. azcore's arm.ClientOptions.AuxiliaryTenants makes
// the SDK send it.
const AuxiliaryHeader = "x-ms-authorization-auxiliary"

// MaxAuxiliaryTokens is ARM's limit on the tokens of AuxiliaryHeader.
const MaxAuxiliaryTokens = 3

// AuthenticateAuxiliary verifies each token of the request's
// AuxiliaryHeader exactly as Authenticate verifies the main one, and
// returns their principals (none without the header). A malformed header,
// too many tokens or one that fails verification is an *AuthError that
// names the header.
func (s *Service) AuthenticateAuxiliary(r *http.Request) ([]Principal, error) {
	h := strings.TrimSpace(r.Header.Get(AuxiliaryHeader))
	if h == "" {
		return nil, nil
	}
	parts := strings.Split(h, ",")
	if len(parts) > MaxAuxiliaryTokens {
		return nil, &AuthError{Code: CodeAuthenticationFailed, Message: fmt.Sprintf(
			"Authentication failed. The '%s' header holds %d tokens; at most %d are allowed.", AuxiliaryHeader, len(parts), MaxAuxiliaryTokens)}
	}
	out := make([]Principal, 0, len(parts))
	for i, part := range parts {
		raw, ok := bearerToken(part)
		if !ok {
			return nil, &AuthError{Code: CodeAuthenticationFailed, Message: fmt.Sprintf(
				"Authentication failed. Token %d of the '%s' header is provided in an invalid format; use 'Bearer <token>', separated by commas.", i+1, AuxiliaryHeader)}
		}
		p, err := s.verify(r.Context(), raw, fmt.Sprintf("The access token %d of the '%s' header is invalid.", i+1, AuxiliaryHeader))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// verify checks a bearer token (see Authenticate) and returns its
// principal; invalidMsg is the message of an InvalidAuthenticationToken
// answer.
func (s *Service) verify(ctx context.Context, raw, invalidMsg string) (Principal, error) {
	invalid := &AuthError{Code: CodeInvalidAuthenticationToken, Message: invalidMsg}

	var c tokenClaims
	_, err := jwt.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		if kid, _ := t.Header["kid"].(string); kid != s.kid {
			return nil, fmt.Errorf("unknown kid %q", kid)
		}
		return &s.key.PublicKey, nil
	},
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
		jwt.WithLeeway(clockLeeway),
		jwt.WithTimeFunc(s.now),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) && c.ExpiresAt != nil {
			return Principal{}, &AuthError{Code: CodeExpiredAuthenticationToken, Message: fmt.Sprintf(
				"The access token expiry UTC time '%s' is earlier than current UTC time '%s'.",
				c.ExpiresAt.UTC().Format("1/2/2006 3:04:05 PM"), s.now().UTC().Format("1/2/2006 3:04:05 PM"))}
		}
		s.log.Debug("rejected bearer token", "err", err)
		return Principal{}, invalid
	}
	if len(c.Audience) != 1 || c.Audience[0] != s.audience {
		return Principal{}, &AuthError{Code: CodeInvalidAuthenticationTokenAudience, Message: fmt.Sprintf(
			"The access token has been obtained for wrong audience or resource '%s'. It should exactly match with one of the allowed audiences '%s'.",
			strings.Join(c.Audience, ","), s.audience)}
	}
	if !IsGUID(c.TenantID) || c.Issuer != s.issuer(c.TenantID) || c.Version != "2.0" ||
		!IsGUID(c.ObjectID) || c.Subject != c.ObjectID || !IsGUID(c.AppID) || c.NotBefore == nil {
		s.log.Debug("rejected bearer token: claims", "iss", c.Issuer, "tid", c.TenantID, "oid", c.ObjectID)
		return Principal{}, invalid
	}
	p, err := s.principal(ctx, c.ObjectID)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			return Principal{}, fmt.Errorf("identity: authenticate: %w", err)
		}
		s.log.Info("rejected token of a deleted principal", "oid", c.ObjectID)
		return Principal{}, invalid
	}
	if p.ClientID != c.AppID || p.TenantID != c.TenantID {
		return Principal{}, invalid
	}
	return Principal{TenantID: p.TenantID, ObjectID: p.ObjectID, ClientID: p.ClientID, Admin: p.Admin}, nil
}
