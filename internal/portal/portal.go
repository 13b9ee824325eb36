// Package portal is privlink's web portal: server-rendered pages, served
// by privlinkd under /portal on its HTTPS listener, that show
// subscriptions, resource groups and resources, a flexible server's
// overview and Networking blade (public access, firewall rules, private
// endpoint connections with Approve / Reject / Remove), a private
// endpoint's DNS configuration and a virtual network's subnets, NICs,
// endpoints and policies.
//
// The portal holds no state of its own and never reads the store: a
// principal signs in with its client credentials at privlink's token
// endpoint, the token lives in the browser's session cookie, and every page
// is made of ARM requests sent with that token through the daemon's own
// handler, in process. So the portal sees and may do exactly what the
// principal may through the API: a Reader's approve is the API's 403.
package portal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Prefix is where the portal is mounted on privlinkd's listener.
const Prefix = "/portal"

// Cookie names. Both are HttpOnly, Secure and SameSite=Strict, scoped to
// Prefix.
const (
	sessionCookie = "privlink_session" // the principal's access token
	preCookie     = "privlink_pre"     // a random value that binds the sign-in form's CSRF token
)

// Config configures the portal.
type Config struct {
	// API is the daemon's handler: the ARM router under /subscriptions and
	// the identity endpoints (/{tenant}/oauth2/v2.0/token). The portal
	// sends its requests to it in process.
	API http.Handler
	// Audience is the ARM audience tokens are asked for
	// ({Audience}/.default).
	Audience string
	// Logger; nil discards.
	Logger *slog.Logger
}

// Portal serves the pages. Create it with New.
type Portal struct {
	api      http.Handler
	audience string
	log      *slog.Logger
	csrfKey  []byte
	pages    map[string]*template.Template
	mux      *http.ServeMux
}

//go:embed templates/*.html
var templateFS embed.FS

// New returns the portal.
func New(cfg Config) (*Portal, error) {
	if cfg.API == nil {
		return nil, fmt.Errorf("portal: no API handler")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("portal: CSRF key: %w", err)
	}
	p := &Portal{api: cfg.API, audience: strings.TrimSuffix(cfg.Audience, "/"), log: log, csrfKey: key, pages: map[string]*template.Template{}}
	for _, name := range []string{"signin", "home", "subscription", "group", "server", "endpoint", "network", "resource", "operation"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("portal: parse template %s: %w", name, err)
		}
		p.pages[name] = t
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix+"/{$}", p.signedIn(p.serveHome))
	mux.HandleFunc("GET "+Prefix+"/signin", p.serveSignInForm)
	mux.HandleFunc("POST "+Prefix+"/signin", p.serveSignIn)
	mux.HandleFunc("POST "+Prefix+"/signout", p.signedIn(p.serveSignOut))
	mux.HandleFunc("GET "+Prefix+"/view/{id...}", p.signedIn(p.serveView))
	mux.HandleFunc("POST "+Prefix+"/action", p.signedIn(p.serveAction))
	mux.HandleFunc("GET "+Prefix+"/operation", p.signedIn(p.serveOperation))
	mux.HandleFunc("GET "+Prefix+"/operation/status", p.signedIn(p.serveOperationStatus))
	mux.HandleFunc("GET "+Prefix, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"/", http.StatusFound)
	})
	p.mux = mux
	return p, nil
}

// ServeHTTP serves the portal's pages (mount it at Prefix and Prefix+"/").
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	p.mux.ServeHTTP(w, r)
}

// session is the signed-in principal: its token and what the token says.
type session struct {
	Token    string
	TenantID string
	ObjectID string
	ClientID string
	Expires  time.Time
	CSRF     string
}

type ctxHandler func(w http.ResponseWriter, r *http.Request, s *session)

// signedIn runs h with the session, or sends the browser to the sign-in
// page.
func (p *Portal) signedIn(h ctxHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := p.session(r)
		if s == nil {
			if r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, "/status") {
				http.Redirect(w, r, Prefix+"/signin", http.StatusSeeOther)
				return
			}
			http.Error(w, "Sign in first.", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost && !p.checkCSRF(r, s.Token) {
			p.refuseCSRF(w, r)
			return
		}
		h(w, r, s)
	}
}

// session reads the session cookie. The token's claims are read without
// verifying its signature: they only label the pages; the API verifies the
// token on every request.
func (p *Portal) session(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var claims struct {
		TID   string `json:"tid"`
		OID   string `json:"oid"`
		AppID string `json:"appid"`
		Exp   int64  `json:"exp"`
	}
	if json.Unmarshal(raw, &claims) != nil {
		return nil
	}
	exp := time.Unix(claims.Exp, 0)
	if time.Now().After(exp) {
		return nil
	}
	return &session{Token: c.Value, TenantID: claims.TID, ObjectID: claims.OID, ClientID: claims.AppID, Expires: exp, CSRF: p.csrfToken(c.Value)}
}

// csrfToken is the CSRF token of the forms of a session: an HMAC of the
// session's secret value (the token, or before sign-in the pre-session
// cookie) under a key of this process. A page of another origin can
// neither read it nor compute it.
func (p *Portal) csrfToken(bound string) string {
	m := hmac.New(sha256.New, p.csrfKey)
	m.Write([]byte(bound))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF reports whether the POST carries the CSRF token bound to
// bound.
func (p *Portal) checkCSRF(r *http.Request, bound string) bool {
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return false
	}
	got := r.PostForm.Get("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(p.csrfToken(bound))) == 1
}

func (p *Portal) refuseCSRF(w http.ResponseWriter, r *http.Request) {
	p.log.Info("portal: refused a POST without a valid CSRF token", "path", r.URL.Path, "remote", r.RemoteAddr)
	http.Error(w, "The form's CSRF token is missing or not valid: reload the page and try again.", http.StatusForbidden)
}

func setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

// viewURL is the portal page of an ARM resource ID, each segment
// path-escaped.
func viewURL(id string) string {
	segs := strings.Split(strings.Trim(id, "/"), "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return Prefix + "/view/" + strings.Join(segs, "/")
}

// viewURLBlade is viewURL of a blade of the resource's page.
func viewURLBlade(id, blade string) string {
	return viewURL(id) + "?" + url.Values{"blade": {blade}}.Encode()
}
