package identity

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"

	"github.com/privlink/privlink/internal/store"
)

// ErrNotFound reports a missing tenant, subscription, principal or role
// assignment. It wraps store.ErrNotFound, so errors.Is(err, ErrNotFound)
// and errors.Is(err, store.ErrNotFound) both hold for such errors.
var ErrNotFound = fmt.Errorf("identity: not found: %w", store.ErrNotFound)

// Error is a request the identity service refuses, carrying the ARM error
// code and HTTP status an ARM front end should answer with, e.g.
// 400 RoleDefinitionDoesNotExist or 409 RoleAssignmentExists.
type Error struct {
	StatusCode int    // HTTP status
	Code       string // ARM error code
	Message    string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func armError(status int, code, format string, args ...any) *Error {
	return &Error{StatusCode: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// ARM error codes used by role assignments.
const (
	CodeRoleDefinitionDoesNotExist       = "RoleDefinitionDoesNotExist"
	CodePrincipalNotFound                = "PrincipalNotFound"
	CodeRoleAssignmentExists             = "RoleAssignmentExists"
	CodeInvalidRoleAssignmentID          = "InvalidRoleAssignmentId"
	CodeRoleAssignmentUpdateNotPermitted = "RoleAssignmentUpdateNotPermitted"
	CodeUnmatchedPrincipalType           = "UnmatchedPrincipalType"
	CodeSubscriptionNotFound             = "SubscriptionNotFound"
	// CodeInvalidScope is privlink's code for a malformed scope string;
	// ARM routing normally rejects such paths before they get here.
	CodeInvalidScope = "InvalidScope"
)

// AuthError is an authentication failure of an ARM request. The HTTP layer
// answers 401 with {"error":{"code":Code,"message":Message}}.
type AuthError struct {
	Code    string
	Message string
}

func (e *AuthError) Error() string { return e.Code + ": " + e.Message }

// ARM authentication error codes.
const (
	// CodeAuthenticationFailed: no Authorization header, or not a Bearer one.
	CodeAuthenticationFailed = "AuthenticationFailed"
	// CodeInvalidAuthenticationToken: bad signature, algorithm, issuer,
	// claims, or a principal that no longer exists.
	CodeInvalidAuthenticationToken = "InvalidAuthenticationToken"
	// CodeInvalidAuthenticationTokenAudience: a valid token minted for
	// another audience.
	CodeInvalidAuthenticationTokenAudience = "InvalidAuthenticationTokenAudience"
	// CodeExpiredAuthenticationToken: the token's exp has passed.
	CodeExpiredAuthenticationToken = "ExpiredAuthenticationToken"
)

// AsError returns the *Error or *AuthError in err's chain, if any, with the
// HTTP status and ARM code to report.
func AsError(err error) (status int, code, message string, ok bool) {
	var ie *Error
	if errors.As(err, &ie) {
		return ie.StatusCode, ie.Code, ie.Message, true
	}
	var ae *AuthError
	if errors.As(err, &ae) {
		return http.StatusUnauthorized, ae.Code, ae.Message, true
	}
	return 0, "", "", false
}

// newGUID returns a random (version 4) GUID in lowercase canonical form.
func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// IsGUID reports whether s is a GUID in canonical 8-4-4-4-12 hex form
// (either case).
func IsGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
