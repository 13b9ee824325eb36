package portal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// api-versions the portal speaks, one per namespace (each is among those
// its provider accepts; TestPortal* would say otherwise).
const (
	resourcesAPI     = "2021-04-01"
	authorizationAPI = "2022-04-01"
	networkAPI       = "2024-07-01"
	privateDNSAPI    = "2020-06-01"
	postgresAPI      = "2024-08-01"
)

// apiVersion is the api-version for a request path, by its provider
// namespace.
func apiVersion(path string) string {
	p := strings.ToLower(path)
	i := strings.LastIndex(p, "/providers/")
	if i < 0 {
		return resourcesAPI
	}
	ns, _, _ := strings.Cut(p[i+len("/providers/"):], "/")
	switch ns {
	case "microsoft.network":
		if strings.Contains(p[i:], "/privatednszones") {
			return privateDNSAPI
		}
		return networkAPI
	case "microsoft.dbforpostgresql":
		return postgresAPI
	case "microsoft.authorization":
		return authorizationAPI
	}
	return resourcesAPI
}

// APIError is an ARM error answer, shown on the page.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("%s (%d): %s", e.Code, e.Status, e.Message) }

// apiResponse is the API's answer to one request.
type apiResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// recorder is the ResponseWriter of an in-process request.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

// client sends ARM requests as the signed-in principal to the daemon's
// handler, in process; the API authenticates and authorizes each.
type client struct {
	p     *Portal
	orig  *http.Request // the browser's request: host, TLS, remote address
	token string
}

func (p *Portal) client(r *http.Request, s *session) *client {
	return &client{p: p, orig: r, token: s.Token}
}

// escapePath path-escapes each segment of an ARM path.
func escapePath(path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// send makes one request to the daemon's handler. query may be nil; the
// api-version is added for the path's namespace.
func (p *Portal) send(ctx context.Context, orig *http.Request, method, path string, query url.Values, header http.Header, body io.Reader) *apiResponse {
	u := &url.URL{Path: path, RawPath: escapePath(path)}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return &apiResponse{Status: http.StatusInternalServerError, Body: []byte(err.Error())}
	}
	req.URL.RawQuery = query.Encode()
	req.Host, req.TLS, req.RemoteAddr = orig.Host, orig.TLS, orig.RemoteAddr
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "privlink-portal")
	rec := &recorder{header: http.Header{}}
	p.api.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &apiResponse{Status: rec.status, Header: rec.header, Body: rec.body.Bytes()}
}

// do sends an ARM request with a JSON body (nil: none) and returns the
// answer, or the API's error as *APIError. path may carry a query; the
// api-version for its namespace is added unless it has one.
func (c *client) do(ctx context.Context, method, path string, body any) (*apiResponse, error) {
	h := http.Header{"Authorization": {"Bearer " + c.token}}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode the request to %s: %w", path, err)
		}
		rd = bytes.NewReader(b)
		h.Set("Content-Type", "application/json")
	}
	path, raw, _ := strings.Cut(path, "?")
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, fmt.Errorf("the query of %s: %w", path, err)
	}
	if q.Get("api-version") == "" {
		q.Set("api-version", apiVersion(path))
	}
	resp := c.p.send(ctx, c.orig, method, path, q, h, rd)
	if resp.Status >= 400 {
		return resp, apiError(resp)
	}
	return resp, nil
}

// apiError decodes an ARM error body.
func apiError(resp *apiResponse) *APIError {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(resp.Body, &e) != nil || e.Error.Code == "" {
		return &APIError{Status: resp.Status, Code: http.StatusText(resp.Status), Message: strings.TrimSpace(string(resp.Body))}
	}
	return &APIError{Status: resp.Status, Code: e.Error.Code, Message: e.Error.Message}
}

// get decodes the answer to a GET into v.
func (c *client) get(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(resp.Body, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// list follows a collection's nextLinks and decodes every value into T.
func list[T any](ctx context.Context, c *client, path string) ([]T, error) {
	var out []T
	for range 100 {
		var page struct {
			Value    []T    `json:"value"`
			NextLink string `json:"nextLink"`
		}
		if err := c.get(ctx, path, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Value...)
		if page.NextLink == "" {
			return out, nil
		}
		u, err := url.Parse(page.NextLink)
		if err != nil {
			return nil, fmt.Errorf("the nextLink of %s: %w", path, err)
		}
		path = u.Path + "?" + u.RawQuery
	}
	return nil, fmt.Errorf("%s has more than 100 pages", path)
}
