package portal

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// signInPage is what the sign-in form shows.
type signInPage struct {
	CSRF     string
	TenantID string
	ClientID string
	Error    string
}

// preSession returns the pre-session cookie's value, setting a new one if
// the browser has none.
func preSession(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(preCookie); err == nil && len(c.Value) >= 32 {
		return c.Value
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	v := base64.RawURLEncoding.EncodeToString(b)
	setCookie(w, preCookie, v, 3600)
	return v
}

func (p *Portal) serveSignInForm(w http.ResponseWriter, r *http.Request) {
	pre := preSession(w, r)
	p.render(w, http.StatusOK, "signin", layout{Title: "Sign in", Page: signInPage{CSRF: p.csrfToken("pre:" + pre)}})
}

// serveSignIn asks privlink's token endpoint for a token with the form's
// client credentials (the client-credentials grant the identity provider
// serves) and keeps it in the session cookie.
func (p *Portal) serveSignIn(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(preCookie)
	if err != nil || !p.checkCSRF(r, "pre:"+c.Value) {
		p.refuseCSRF(w, r)
		return
	}
	f := r.PostForm
	page := signInPage{CSRF: p.csrfToken("pre:" + c.Value), TenantID: strings.TrimSpace(f.Get("tenant")), ClientID: strings.TrimSpace(f.Get("client_id"))}
	fail := func(status int, msg string) {
		page.Error = msg
		p.render(w, status, "signin", layout{Title: "Sign in", Page: page})
	}
	secret := f.Get("client_secret")
	switch {
	case page.TenantID == "" || strings.ContainsAny(page.TenantID, "/?#") || len(page.TenantID) > 100:
		fail(http.StatusBadRequest, "Tenant ID: give the directory (tenant) ID of your principal, as in its credentials file (tenantId).")
		return
	case page.ClientID == "":
		fail(http.StatusBadRequest, "Client ID: give your principal's application (client) ID (clientId).")
		return
	case secret == "":
		fail(http.StatusBadRequest, "Client secret: give your principal's client secret (clientSecret).")
		return
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {page.ClientID}, "client_secret": {secret},
		"scope": {p.audience + "/.default"}}
	resp := p.send(r.Context(), r, http.MethodPost, "/"+page.TenantID+"/oauth2/v2.0/token", nil,
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(form.Encode()))
	var tok struct {
		AccessToken      string `json:"access_token"`
		ExpiresIn        int    `json:"expires_in"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	_ = json.Unmarshal(resp.Body, &tok)
	if resp.Status != http.StatusOK || tok.AccessToken == "" {
		msg := tok.ErrorDescription
		if msg == "" {
			msg = strings.TrimSpace(string(resp.Body))
		}
		p.log.Info("portal: sign-in refused", "tenant", page.TenantID, "clientId", page.ClientID, "status", resp.Status, "error", tok.Error)
		fail(http.StatusUnauthorized, "Sign-in refused: "+msg)
		return
	}
	setCookie(w, sessionCookie, tok.AccessToken, tok.ExpiresIn)
	setCookie(w, preCookie, "", -1)
	p.log.Info("portal: signed in", "tenant", page.TenantID, "clientId", page.ClientID)
	http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
}

// serveSignOut drops the session cookie. The token itself stays valid
// until it expires (privlink's tokens are not revocable, as Entra's
// access tokens).
func (p *Portal) serveSignOut(w http.ResponseWriter, r *http.Request, s *session) {
	setCookie(w, sessionCookie, "", -1)
	http.Redirect(w, r, Prefix+"/signin", http.StatusSeeOther)
}
