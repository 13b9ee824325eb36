package arm

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/privlink/privlink/internal/store"
)

// Error is an ARM error: an HTTP status and the body
// {"error":{"code","message","target","details"}} that the Azure SDKs turn
// into *azcore.ResponseError. Handlers return it (possibly wrapped); the
// router is the one place that writes it.
type Error struct {
	Status  int     `json:"-"`
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Target  string  `json:"target,omitempty"`
	Details []Error `json:"details,omitempty"`
}

func (e *Error) Error() string {
	if e.Target != "" {
		return fmt.Sprintf("%d %s (%s): %s", e.Status, e.Code, e.Target, e.Message)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// Errorf builds an Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithTarget returns a copy of e naming the offending field.
func (e *Error) WithTarget(target string) *Error {
	c := *e
	c.Target = target
	return &c
}

// AsError converts any error to an *Error: ARM errors pass through, every
// other error is a 500 InternalServerError (its text is logged, not sent).
func AsError(err error) (*Error, bool) {
	var ae *Error
	if errors.As(err, &ae) {
		return ae, true
	}
	if errors.Is(err, store.ErrConflict) {
		// Concurrent writers kept colliding: the client should retry.
		return &Error{Status: http.StatusConflict, Code: "AnotherOperationInProgress",
			Message: "Another operation on this resource or its neighbours is in progress; retry the request."}, true
	}
	return &Error{Status: http.StatusInternalServerError, Code: "InternalServerError",
		Message: "privlinkd failed to handle the request; its log has the details"}, false
}

// InvalidParameter is a 400 for a property value that breaks a rule. The
// target names the property, e.g. "properties.addressSpace.addressPrefixes[0]".
func InvalidParameter(target, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "InvalidParameter", Target: target,
		Message: fmt.Sprintf(format, args...)}
}

// BadRequest is a 400 with a specific code.
func BadRequest(code, target, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Target: target, Message: fmt.Sprintf(format, args...)}
}

// InvalidRequestContent is a 400 for a body that is not the expected JSON.
func InvalidRequestContent(err error) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "InvalidRequestContent",
		Message: fmt.Sprintf("The request content was invalid and could not be deserialized: %v", err)}
}

// NotFound is the 404 ARM returns for a missing resource.
func NotFound(id ResourceID) *Error {
	path := id.Namespace
	for i, t := range id.Types {
		path += "/" + t
		if i < len(id.Names) {
			path += "/" + id.Names[i]
		}
	}
	return &Error{Status: http.StatusNotFound, Code: "ResourceNotFound",
		Message: fmt.Sprintf("The Resource '%s' under resource group '%s' was not found.", path, id.ResourceGroup)}
}

// Conflict is a 409 with a specific code.
func Conflict(code, format string, args ...any) *Error {
	return &Error{Status: http.StatusConflict, Code: code, Message: fmt.Sprintf(format, args...)}
}

// WriteError is the one place an error becomes an ARM error body: the
// router's, and the few handlers mounted beside it (privlink's own
// /privlink/v1 calls, getPrivateDnsZoneSuffix). An error that is not an
// *Error is logged to log (when not nil) and answered as a 500 without
// internals; a 401 says how to authenticate.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	ae, known := AsError(err)
	if !known && log != nil {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if ae.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer authorization_uri="`+baseURL(r)+`/", error="invalid_token"`)
	}
	w.Header().Set("x-ms-error-code", ae.Code)
	writeJSON(w, ae.Status, map[string]any{"error": ae})
}
