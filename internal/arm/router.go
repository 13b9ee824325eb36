package arm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/privlink/privlink/internal/store"
)

// maxBody bounds request bodies; ARM's own limit is 4 MiB.
const maxBody = 4 << 20

// defaultPageSize is the number of items in one list page when the client
// does not ask for fewer with $top.
const defaultPageSize = 100

// Caller is an authenticated principal and what it may do.
type Caller struct {
	TenantID string
	ObjectID string
	ClientID string
	Grants   Grants
	// Auxiliary are the principals of the request's auxiliary tokens
	// (header x-ms-authorization-auxiliary: other tenants' tokens, each
	// verified as the main one): their grants count for linked
	// authorization only (links.go), as ARM's do for a write that
	// references a resource of another tenant.
	Auxiliary []*Caller
}

// linkAllowed reports whether the caller, or one of its auxiliary
// principals, holds action at scope.
func (c *Caller) linkAllowed(action, scope string) bool {
	if c == nil {
		return false
	}
	if c.Grants != nil && c.Grants.Allowed(action, scope) {
		return true
	}
	for _, a := range c.Auxiliary {
		if a != nil && a.Grants != nil && a.Grants.Allowed(action, scope) {
			return true
		}
	}
	return false
}

// Grants answers authorization questions for one caller.
type Grants interface {
	// Allowed reports whether action (e.g.
	// "Microsoft.Network/virtualNetworks/write") is permitted at scope.
	Allowed(action, scope string) bool
	// AnyIn reports whether the caller holds any role inside or above the
	// subscription.
	AnyIn(subscription string) bool
}

// Directory is what the router needs from the identity service.
type Directory interface {
	// Authenticate verifies the request's bearer token. A failure is
	// answered with 401; return an *Error to choose its code.
	Authenticate(r *http.Request) (*Caller, error)
	// SubscriptionExists reports whether the subscription exists.
	SubscriptionExists(ctx context.Context, id string) (bool, error)
}

// Handler serves one kind of request on a resource type.
type Handler func(ctx context.Context, r *Request) (*Response, error)

// ListHandler returns every member of the collection r.ID, in a stable
// order; the router pages them.
type ListHandler func(ctx context.Context, r *Request) ([]any, error)

// ResourceType describes a resource type the router serves. A nil handler
// means the verb is not supported (405).
type ResourceType struct {
	// Type is the full type, e.g. "Microsoft.Network/virtualNetworks/subnets".
	Type string
	// APIVersions are the accepted api-version values (a provider's
	// VersionTable.For); Register orders them newest first.
	APIVersions []string

	Get    Handler
	List   ListHandler
	Put    Handler
	Patch  Handler
	Delete Handler
	// Actions are POST actions on one resource, keyed by the action's
	// name (case-insensitive), e.g. "start"; RBAC action
	// {type}/{name}/action.
	Actions map[string]Handler
	// ReadActions are GET actions on one resource (e.g. "capabilities"),
	// keyed likewise; RBAC action {type}/{name}/read. The router answers
	// another method on either kind 405 MethodNotAllowed.
	ReadActions map[string]Handler
	// WriteActions are PUT actions on one resource (a connection's
	// "sharedkey"), keyed likewise; RBAC action {type}/{name}/write. An
	// action may share its name with a ReadAction (GET and PUT of the
	// same sub-path). An Actions key may hold one "/" (e.g.
	// "sharedkey/reset"): POST .../{type}/{name}/sharedkey/reset.
	WriteActions map[string]Handler

	// NoResourceGroup marks types that live outside resource groups
	// (subscription-level actions).
	NoResourceGroup bool
	// NoParentCheck skips the check that a child's parent document exists.
	NoParentCheck bool
	// Extension marks extension resource types (role assignments): they
	// may hang off any scope, .../{resource}/providers/{ns}/{type}/{name}.
	// The router refuses such a path for every other type, whose documents
	// are keyed without that scope: served, it would let a role on one
	// resource write any resource of its group.
	Extension bool
	// Links are the references to other resources that a PUT or PATCH
	// body of this type may hold; the router checks each one's linked
	// action before the handler runs (links.go).
	Links []Link
	// BeforeGroupDelete runs inside the transaction that deletes a
	// resource group, once for each resource of this type in the group,
	// before any document goes. Return an error to refuse the deletion
	// (something outside the group depends on the resource); release here
	// what the resource holds outside its own documents.
	BeforeGroupDelete func(tx store.Tx, id ResourceID) error
}

// Request is one ARM call as a handler sees it.
type Request struct {
	HTTP       *http.Request
	ID         ResourceID // the target: a resource, or for List a collection
	Action     string     // the action's name for Actions
	APIVersion string
	Body       []byte
	Caller     *Caller
	// BaseURL is the scheme and host the client used, e.g.
	// "https://127.0.0.1:8443", for absolute links.
	BaseURL string
}

// Decode unmarshals the request body into v, answering a malformed or
// empty body with a 400 InvalidRequestContent.
func (r *Request) Decode(v any) error {
	if len(strings.TrimSpace(string(r.Body))) == 0 {
		return BadRequest("InvalidRequestContent", "", "The request content was invalid: the body is empty; send the resource as JSON.")
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		return InvalidRequestContent(err)
	}
	return nil
}

// CheckPreconditions applies If-Match and If-None-Match against the current
// ETag of the target ("" and exists=false when there is none).
func (r *Request) CheckPreconditions(exists bool, etag string) error {
	if m := r.HTTP.Header.Get("If-None-Match"); m != "" {
		if m == "*" && exists || exists && sameETag(m, etag) {
			return Errorf(http.StatusPreconditionFailed, "PreconditionFailed",
				"The resource '%s' already exists (If-None-Match: %s).", r.ID.Name(), m)
		}
	}
	if m := r.HTTP.Header.Get("If-Match"); m != "" {
		if !exists || (m != "*" && !sameETag(m, etag)) {
			return Errorf(http.StatusPreconditionFailed, "PreconditionFailed",
				"The ETag of resource '%s' does not match If-Match %s; read it again and retry.", r.ID.Name(), m)
		}
	}
	return nil
}

// sameETag compares ETags weakly (RFC 9110 8.8.3.2), as ARM clients send
// them back with or without the W/ prefix.
func sameETag(a, b string) bool {
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}

// Response is what a handler answers. With Op set the router adds the
// polling headers: Azure-AsyncOperation always, Location too on a 202,
// and Retry-After while the operation runs.
type Response struct {
	Status int
	Body   any
	Op     *Operation
}

// OK is a 200 with body.
func OK(body any) *Response { return &Response{Status: http.StatusOK, Body: body} }

// Router is the ARM HTTP layer: it authenticates, parses resource IDs,
// checks api-versions, authorizes, checks that scopes exist, dispatches to
// the resource type's handler and writes ARM responses and errors.
type Router struct {
	st    store.Store
	dir   Directory
	log   *slog.Logger
	types map[string]*ResourceType // by lower-cased type
}

// NewRouter returns a router over st that authenticates through dir.
func NewRouter(st store.Store, dir Directory, log *slog.Logger) *Router {
	return &Router{st: st, dir: dir, log: log, types: map[string]*ResourceType{}}
}

// Register adds resource types. Registering one type twice panics: it is a
// programming error.
func (rt *Router) Register(types ...*ResourceType) {
	for _, t := range types {
		k := strings.ToLower(t.Type)
		if _, dup := rt.types[k]; dup {
			panic("arm: resource type registered twice: " + t.Type)
		}
		t.APIVersions = slices.Clone(t.APIVersions)
		SortAPIVersions(t.APIVersions)
		rt.types[k] = t
	}
}

// Types returns the registered resource types, sorted by type.
func (rt *Router) Types() []*ResourceType {
	out := slices.Collect(maps.Values(rt.types))
	slices.SortFunc(out, func(a, b *ResourceType) int { return strings.Compare(a.Type, b.Type) })
	return out
}

// Store returns the router's store.
func (rt *Router) Store() store.Store { return rt.st }

func (rt *Router) lookup(typ string) *ResourceType { return rt.types[strings.ToLower(typ)] }

// canonical rewrites the literal segments of id in the registered casing.
func (rt *Router) canonical(id ResourceID) ResourceID {
	for n := len(id.Types); n >= 1; n-- {
		t := rt.lookup(id.Namespace + "/" + strings.Join(id.Types[:n], "/"))
		if t == nil {
			continue
		}
		parts := strings.Split(t.Type, "/")
		id.Namespace = parts[0]
		copy(id.Types, parts[1:])
		break
	}
	if id.Scope != nil {
		s := rt.canonical(*id.Scope)
		id.Scope = &s
	}
	return id
}

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	rt.serve(sw, r)
	rt.log.Debug("arm request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "duration", time.Since(start))
}

func (rt *Router) serve(w http.ResponseWriter, r *http.Request) {
	caller, err := rt.dir.Authenticate(r)
	if err != nil {
		ae, ok := AsError(err)
		if !ok {
			ae = Errorf(http.StatusUnauthorized, "AuthenticationFailed", "Authentication failed: %v", err)
		}
		rt.writeError(w, r, ae)
		return
	}
	segs, err := splitPath(r.URL.EscapedPath())
	if err != nil {
		rt.writeError(w, r, BadRequest("InvalidRequestUri", "", "The request URI is invalid: %v", err))
		return
	}
	ctx := r.Context()
	if len(segs) >= 1 && strings.EqualFold(segs[0], "subscriptions") && len(segs) <= 2 {
		rt.serveSubscriptions(w, r, caller, segs)
		return
	}
	id, err := parseSegments(segs)
	if err != nil {
		rt.writeError(w, r, BadRequest("InvalidResourceId", "", "The resource ID in the request path is invalid: %v.", err))
		return
	}
	ok, err := rt.dir.SubscriptionExists(ctx, id.Subscription)
	if err != nil {
		rt.writeError(w, r, err)
		return
	}
	if !ok {
		rt.writeError(w, r, Errorf(http.StatusNotFound, "SubscriptionNotFound", "The subscription '%s' could not be found.", id.Subscription))
		return
	}
	if !caller.Grants.AnyIn(id.Subscription) {
		rt.writeError(w, r, forbidden(caller, r.Method, id))
		return
	}
	// Provider registration and operation status URLs.
	if id.ResourceGroup == "" && id.Scope == nil && id.Namespace != "" {
		switch {
		case len(id.Types) == 0 || (len(id.Types) == 1 && strings.EqualFold(id.Types[0], "register") && r.Method == http.MethodPost):
			rt.serveProvider(w, r, id)
			return
		case len(id.Types) == 2 && len(id.Names) == 2 && strings.EqualFold(id.Types[0], "locations") &&
			slices.ContainsFunc([]string{"operations", "operationResults", "azureAsyncOperation", "operationStatuses"},
				func(s string) bool { return strings.EqualFold(s, id.Types[1]) }):
			rt.serveOperation(w, r, id, id.Types[1])
			return
		}
	}
	id = rt.canonical(id)
	req := &Request{HTTP: r, ID: id, Caller: caller, BaseURL: baseURL(r), APIVersion: r.URL.Query().Get("api-version")}
	typ, handler, list, action, err := rt.resolve(r.Method, req)
	if err != nil {
		rt.writeError(w, r, err)
		return
	}
	if err := checkAPIVersion(typ, req.APIVersion); err != nil {
		rt.writeError(w, r, err)
		return
	}
	if err := rt.checkScope(ctx, typ, req); err != nil {
		rt.writeError(w, r, err)
		return
	}
	if list != nil {
		rt.serveList(w, r, req, typ, list)
		return
	}
	scope := req.ID.String()
	if !caller.Grants.Allowed(action, scope) {
		rt.writeError(w, r, forbiddenAction(caller, action, scope))
		return
	}
	if r.Method == http.MethodPut || r.Method == http.MethodPatch || r.Method == http.MethodPost {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			rt.writeError(w, r, BadRequest("InvalidRequestContent", "", "Reading the request body failed: %v", err))
			return
		}
		if len(body) > maxBody {
			rt.writeError(w, r, Errorf(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "The request body is larger than %d bytes.", maxBody))
			return
		}
		req.Body = body
		if err := checkMediaType(r, body); err != nil {
			rt.writeError(w, r, err)
			return
		}
		if r.Method != http.MethodPost {
			if err := checkLinks(typ, req, action); err != nil {
				rt.writeError(w, r, err)
				return
			}
		}
	}
	resp, err := handler(ctx, req)
	if err != nil {
		rt.writeError(w, r, err)
		return
	}
	rt.writeResponse(w, req, resp)
}

// resolve finds the handler for a method on req.ID, rewriting req.ID and
// req.Action for actions, and returns the RBAC action it needs.
func (rt *Router) resolve(method string, req *Request) (typ *ResourceType, h Handler, list ListHandler, action string, err error) {
	id := req.ID
	full := id.Type()
	if id.Namespace == "" && id.ResourceGroup != "" {
		full = "Microsoft.Resources/resourceGroups"
	}
	typ = rt.lookup(full)
	if typ != nil {
		if err := checkShape(typ, id); err != nil {
			return nil, nil, nil, "", err
		}
	}
	if typ != nil && id.IsCollection() {
		if method != http.MethodGet || typ.List == nil {
			return nil, nil, nil, "", methodNotAllowed(method, full)
		}
		return typ, nil, typ.List, "", nil
	}
	if typ != nil {
		verb := "write"
		switch method {
		case http.MethodGet, http.MethodHead:
			h, verb = typ.Get, "read"
		case http.MethodPut:
			h = typ.Put
		case http.MethodPatch:
			h = typ.Patch
		case http.MethodDelete:
			h, verb = typ.Delete, "delete"
		case http.MethodPost:
			return nil, nil, nil, "", methodNotAllowed(method, full)
		}
		if h == nil {
			return nil, nil, nil, "", methodNotAllowed(method, full)
		}
		if strings.EqualFold(full, "Microsoft.Resources/resourceGroups") {
			return typ, h, nil, "Microsoft.Resources/subscriptions/resourceGroups/" + verb, nil
		}
		return typ, h, nil, full + "/" + verb, nil
	}
	// An action: .../{type}/{name}/{action} or .../providers/{ns}/{action},
	// or a nested POST action .../{type}/{name}/{sub}/{action}.
	var name string
	parent := id.clone()
	switch {
	case id.IsCollection():
		name = id.Types[len(id.Types)-1]
		parent.Types = parent.Types[:len(parent.Types)-1]
	case len(id.Types) >= 2 && len(id.Names) == len(id.Types):
		name = id.Types[len(id.Types)-1] + "/" + id.Names[len(id.Names)-1]
		parent.Types = parent.Types[:len(parent.Types)-1]
		parent.Names = parent.Names[:len(parent.Names)-1]
	}
	if name != "" {
		ptype := parent.Namespace
		if len(parent.Types) > 0 {
			ptype = parent.Type()
		}
		if pt := rt.lookup(ptype); pt != nil {
			var allowed []string
			for _, kind := range []struct {
				handlers map[string]Handler
				method   string
				suffix   string
			}{{pt.Actions, http.MethodPost, "/action"}, {pt.ReadActions, http.MethodGet, "/read"}, {pt.WriteActions, http.MethodPut, "/write"}} {
				for k, ah := range kind.handlers {
					if !strings.EqualFold(k, name) {
						continue
					}
					if err := checkShape(pt, parent); err != nil {
						return nil, nil, nil, "", err
					}
					if method != kind.method {
						allowed = append(allowed, kind.method)
						continue
					}
					req.ID, req.Action = parent, k
					return pt, ah, nil, ptype + "/" + k + kind.suffix, nil
				}
			}
			if len(allowed) > 0 {
				return nil, nil, nil, "", Errorf(http.StatusMethodNotAllowed, "MethodNotAllowed",
					"The %s method is not supported for action '%s' of '%s'; use %s.", method, name, ptype, strings.Join(allowed, " or "))
			}
		}
	}
	return nil, nil, nil, "", Errorf(http.StatusNotFound, "InvalidResourceType",
		"The resource type '%s' could not be found in the namespace '%s'.", strings.TrimPrefix(full, id.Namespace+"/"), id.Namespace)
}

// checkShape refuses a path that names a type in a place the type does
// not live: an ordinary type under another resource's scope (an extension
// path), a resource of a type that lives in resource groups without one,
// or resource groups anywhere but /subscriptions/{s}/resourceGroups
// [/{name}]. Served, such paths read and write documents other than the
// ones their scope names, so the scope's authorization would not hold.
func checkShape(t *ResourceType, id ResourceID) error {
	if id.Scope != nil && !t.Extension {
		return Errorf(http.StatusNotFound, "InvalidResourceType",
			"The resource type '%s' is not an extension resource type: it cannot be placed under the scope '%s'.", t.Type, id.Scope)
	}
	if id.ResourceGroup == "" && id.Namespace != "" && len(id.Names) > 0 && !t.NoResourceGroup && !t.Extension {
		return Errorf(http.StatusNotFound, "InvalidResourceType",
			"The resource type '%s' lives in a resource group: address it as /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/%s/..., not '%s'.", t.Type, t.Type, id)
	}
	if strings.EqualFold(t.Type, "Microsoft.Resources/resourceGroups") && id.Namespace != "" &&
		!(id.ResourceGroup == "" && id.Scope == nil && id.IsCollection()) {
		return Errorf(http.StatusNotFound, "InvalidResourceType",
			"Resource groups are addressed as /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}, not '%s'.", id)
	}
	return nil
}

// checkMediaType refuses a body that is not sent as JSON, as ARM does: a
// client that labels it otherwise (or not at all) is told what to send.
func checkMediaType(r *http.Request, body []byte) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return nil
	}
	if ct == "" {
		ct = "(none)"
	}
	return Errorf(http.StatusUnsupportedMediaType, "UnsupportedMediaType",
		"The content media type '%s' is not supported. Only 'application/json' is supported: send the body with Content-Type: application/json.", ct)
}

func methodNotAllowed(method, typ string) error {
	return Errorf(http.StatusMethodNotAllowed, "MethodNotAllowed", "The %s method is not supported for resource type '%s'.", method, typ)
}

func checkAPIVersion(t *ResourceType, v string) error {
	return CheckAPIVersion(t.Type, t.APIVersions, v)
}

// CheckAPIVersion refuses an api-version v that is missing or not one of
// versions (without regard to case), naming what (a resource type, or a
// path privlinkd serves beside the router) and the supported versions, as
// ARM does. It is the one api-version check: the router's for every type,
// and the daemon's for its own paths.
func CheckAPIVersion(what string, versions []string, v string) error {
	if v == "" {
		return BadRequest("MissingApiVersionParameter", "api-version",
			"The api-version query parameter (?api-version=) is required for all requests. Supported versions for '%s': '%s'.", what, strings.Join(versions, "', '"))
	}
	if slices.ContainsFunc(versions, func(s string) bool { return strings.EqualFold(s, v) }) {
		return nil
	}
	code := "InvalidApiVersionParameter"
	if lower := strings.ToLower(what); strings.HasPrefix(lower, "microsoft.") && !strings.HasPrefix(lower, "microsoft.resources/") {
		code = "NoRegisteredProviderFound"
	}
	return BadRequest(code, "api-version", "The api-version '%s' is not supported for resource type '%s'. The supported api-versions are '%s'.",
		v, what, strings.Join(versions, "', '"))
}

// checkScope answers 404 when the resource group or the parent resource of
// the target does not exist.
func (rt *Router) checkScope(ctx context.Context, t *ResourceType, req *Request) error {
	id := req.ID
	rd := ReadOnly(ctx, rt.st)
	if id.ResourceGroup != "" && id.Namespace != "" && !t.NoResourceGroup {
		ok, err := Exists(rd, id.ResourceGroupID())
		if err != nil {
			return err
		}
		if !ok {
			return Errorf(http.StatusNotFound, "ResourceGroupNotFound", "Resource group '%s' could not be found.", id.ResourceGroup)
		}
	}
	if t.NoParentCheck || id.Scope != nil {
		return nil
	}
	parentNames := len(id.Types) - 1
	if parentNames < 1 || len(id.Names) < parentNames || id.ResourceGroup == "" {
		return nil
	}
	parent := id.clone()
	parent.Types, parent.Names = parent.Types[:parentNames], parent.Names[:parentNames]
	ok, err := Exists(rd, parent)
	if err != nil {
		return err
	}
	if !ok {
		return Errorf(http.StatusNotFound, "ParentResourceNotFound",
			"Can not perform requested operation on nested resource. Parent resource '%s' not found.", parent.Name())
	}
	return nil
}

func (rt *Router) serveList(w http.ResponseWriter, r *http.Request, req *Request, t *ResourceType, list ListHandler) {
	items, err := list(r.Context(), req)
	if err != nil {
		rt.writeError(w, r, err)
		return
	}
	action := t.Type + "/read"
	if strings.EqualFold(t.Type, "Microsoft.Resources/resourceGroups") {
		action = "Microsoft.Resources/subscriptions/resourceGroups/read"
	}
	scope := req.ID.Parent().String()
	if !req.Caller.Grants.Allowed(action, scope) {
		// Only what the caller may read at a narrower scope.
		items = slices.DeleteFunc(items, func(it any) bool { return !req.Caller.Grants.Allowed(action, itemID(it)) })
	}
	q := r.URL.Query()
	size := defaultPageSize
	if top, err := strconv.Atoi(q.Get("$top")); err == nil && top > 0 && top < size {
		size = top
	}
	skip, _ := strconv.Atoi(q.Get("$skiptoken"))
	if skip < 0 || skip > len(items) {
		skip = len(items)
	}
	end := min(skip+size, len(items))
	page := map[string]any{"value": append([]any{}, items[skip:end]...)} // [] when empty, as ARM, never null
	if end < len(items) {
		q.Set("$skiptoken", strconv.Itoa(end))
		page["nextLink"] = req.BaseURL + r.URL.EscapedPath() + "?" + q.Encode()
	}
	writeJSON(w, http.StatusOK, page)
}

// itemID extracts the "id" of a list item for per-item authorization.
func itemID(it any) string {
	b, err := json.Marshal(it)
	if err != nil {
		return ""
	}
	var v struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(b, &v)
	return v.ID
}

func (rt *Router) writeResponse(w http.ResponseWriter, req *Request, resp *Response) {
	if resp == nil {
		resp = &Response{Status: http.StatusOK}
	}
	if op := resp.Op; op != nil {
		w.Header().Set("Azure-AsyncOperation", req.BaseURL+op.StatusPath())
		if resp.Status == http.StatusAccepted {
			w.Header().Set("Location", req.BaseURL+op.ResultPath())
		}
		if op.Done() {
			// Nothing to wait for: poll at once (the SDK ignores 0).
			w.Header().Set("Retry-After", "0")
			w.Header().Set("Retry-After-Ms", "1")
		} else {
			setRetryAfter(w)
		}
	}
	if req.HTTP.Method == http.MethodHead {
		w.WriteHeader(resp.Status)
		return
	}
	if resp.Body == nil {
		w.WriteHeader(resp.Status)
		return
	}
	writeJSON(w, resp.Status, resp.Body)
}

func (rt *Router) writeError(w http.ResponseWriter, r *http.Request, err error) {
	WriteError(w, r, rt.log, err)
}

func forbidden(c *Caller, method string, id ResourceID) error {
	verb := map[string]string{http.MethodGet: "read", http.MethodDelete: "delete"}[method]
	if verb == "" {
		verb = "write"
	}
	return forbiddenAction(c, id.Type()+"/"+verb, id.String())
}

func forbiddenAction(c *Caller, action, scope string) error {
	return Errorf(http.StatusForbidden, "AuthorizationFailed",
		"The client '%s' with object id '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid. Ask an Owner of the scope for a role assignment.",
		c.ClientID, c.ObjectID, action, scope)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, fmt.Sprintf("encode response: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// baseURL is the scheme and host the client used.
func baseURL(r *http.Request) string {
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + r.Host
}

// statusWriter records the status code for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// SubscriptionLister lists the subscriptions a caller can see; the identity
// service implements it.
type SubscriptionLister interface {
	ListSubscriptions(ctx context.Context) ([]Subscription, error)
}

// Subscription is the ARM shape of a subscription.
type Subscription struct {
	ID             string `json:"id"`
	SubscriptionID string `json:"subscriptionId"`
	TenantID       string `json:"tenantId"`
	DisplayName    string `json:"displayName"`
	State          string `json:"state"`
}

// serveSubscriptions answers GET /subscriptions and /subscriptions/{id}
// (az login lists them) with the subscriptions the caller holds a role in.
func (rt *Router) serveSubscriptions(w http.ResponseWriter, r *http.Request, c *Caller, segs []string) {
	if r.Method != http.MethodGet {
		rt.writeError(w, r, methodNotAllowed(r.Method, "Microsoft.Resources/subscriptions"))
		return
	}
	sl, ok := rt.dir.(SubscriptionLister)
	if !ok {
		rt.writeError(w, r, methodNotAllowed(r.Method, "Microsoft.Resources/subscriptions"))
		return
	}
	subs, err := sl.ListSubscriptions(r.Context())
	if err != nil {
		rt.writeError(w, r, err)
		return
	}
	subs = slices.DeleteFunc(subs, func(s Subscription) bool { return !c.Grants.AnyIn(s.SubscriptionID) })
	if len(segs) == 2 {
		for _, s := range subs {
			if strings.EqualFold(s.SubscriptionID, segs[1]) {
				writeJSON(w, http.StatusOK, s)
				return
			}
		}
		rt.writeError(w, r, Errorf(http.StatusNotFound, "SubscriptionNotFound", "The subscription '%s' could not be found.", segs[1]))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": subs})
}

// serveProvider answers the resource-provider calls the SDK's registration
// policy may make: every provider privlink serves is always registered.
func (rt *Router) serveProvider(w http.ResponseWriter, r *http.Request, id ResourceID) {
	ns := id.Namespace
	var types []map[string]any
	for _, t := range rt.types {
		if p := strings.SplitN(t.Type, "/", 2); len(p) == 2 && strings.EqualFold(p[0], ns) {
			ns = p[0]
			types = append(types, map[string]any{"resourceType": p[1], "apiVersions": t.APIVersions, "locations": []string{}})
		}
	}
	if types == nil {
		rt.writeError(w, r, Errorf(http.StatusNotFound, "InvalidResourceNamespace", "The resource namespace '%s' is invalid.", id.Namespace))
		return
	}
	slices.SortFunc(types, func(a, b map[string]any) int {
		return strings.Compare(a["resourceType"].(string), b["resourceType"].(string))
	})
	writeJSON(w, http.StatusOK, map[string]any{
		"id":                 "/subscriptions/" + id.Subscription + "/providers/" + ns,
		"namespace":          ns,
		"registrationState":  "Registered",
		"registrationPolicy": "RegistrationRequired",
		"resourceTypes":      types,
	})
}
