package portal_test

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/privlink/privlink/internal/daemon"
	"github.com/privlink/privlink/internal/daemon/daemontest"
	"github.com/privlink/privlink/internal/identity"
	"github.com/privlink/privlink/internal/portal"
)

// env is the in-process API with the portal beside it, as privlinkd
// mounts them, and a server with a Pending connection from another
// tenant's endpoint.
type env struct {
	a        *daemontest.API
	srv      *httptest.Server
	serverID string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	a := daemontest.New(t)
	mux := http.NewServeMux()
	mux.Handle("/subscriptions/", a.Router)
	mux.Handle("/subscriptions", a.Router)
	mux.Handle("/", a.IDs.Handler())
	web, err := portal.New(portal.Config{API: mux, Audience: daemon.Audience})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle(portal.Prefix+"/", web)
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	e := &env{a: a, srv: srv}

	owner := a.Owner
	g := "/subscriptions/" + owner.Sub() + "/resourceGroups/owner"
	e.put(t, owner, g, map[string]any{"location": "westeurope"})
	e.serverID = g + "/providers/Microsoft.DBforPostgreSQL/flexibleServers/srv1"
	e.put(t, owner, e.serverID, map[string]any{"location": "westeurope", "sku": map[string]any{"name": "Standard_B1ms", "tier": "Burstable"},
		"properties": map[string]any{"version": "15", "administratorLogin": "pgadmin", "administratorLoginPassword": "Portal-pass-1234",
			"storage": map[string]any{"storageSizeGB": 32}}})

	other := a.NewPrincipal(t, "other", true)
	og := "/subscriptions/" + other.Sub() + "/resourceGroups/other"
	e.put(t, other, og, map[string]any{"location": "westeurope"})
	e.put(t, other, og+"/providers/Microsoft.Network/virtualNetworks/vnet", map[string]any{"location": "westeurope", "properties": map[string]any{
		"addressSpace": map[string]any{"addressPrefixes": []string{"10.0.0.0/16"}},
		"subnets":      []any{map[string]any{"name": "pe", "properties": map[string]any{"addressPrefix": "10.0.1.0/24"}}}}})
	e.put(t, other, og+"/providers/Microsoft.Network/privateEndpoints/pe-other", map[string]any{"location": "westeurope", "properties": map[string]any{
		"subnet": map[string]any{"id": og + "/providers/Microsoft.Network/virtualNetworks/vnet/subnets/pe"},
		"manualPrivateLinkServiceConnections": []any{map[string]any{"name": "conn", "properties": map[string]any{
			"privateLinkServiceId": e.serverID, "groupIds": []string{"postgresqlServer"}, "requestMessage": "from other"}}}}})
	return e
}

func (e *env) put(t *testing.T, p *daemontest.Principal, path string, body any) {
	t.Helper()
	v := "2021-04-01"
	switch {
	case strings.Contains(path, "Microsoft.DBforPostgreSQL"):
		v = "2024-08-01"
	case strings.Contains(path, "Microsoft.Network"):
		v = "2024-07-01"
	}
	if r := e.a.Do(t, p, http.MethodPut, path+"?api-version="+v, body); r.Status >= 300 {
		t.Fatalf("PUT %s: %d %s", path, r.Status, r.Body)
	}
}

// browser is a cookie-keeping HTTPS client of the portal.
type browser struct {
	t    *testing.T
	e    *env
	c    *http.Client
	last string // the body of the last page
}

func (e *env) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	c := e.srv.Client()
	c.Jar = jar
	return &browser{t: t, e: e, c: c}
}

func (b *browser) do(req *http.Request) (int, string) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	b.last = string(body)
	return resp.StatusCode, b.last
}

func (b *browser) get(path string) (int, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.e.srv.URL+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) (int, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token in the last page's forms.
func (b *browser) csrf() string {
	b.t.Helper()
	m := csrfRE.FindStringSubmatch(b.last)
	if m == nil {
		b.t.Fatalf("no CSRF token in the page:\n%s", b.last)
	}
	return html.UnescapeString(m[1])
}

// signIn signs in as p through the form.
func (b *browser) signIn(p *daemontest.Principal) {
	b.t.Helper()
	b.get("/portal/signin")
	status, body := b.post("/portal/signin", url.Values{"csrf": {b.csrf()}, "tenant": {p.Creds.TenantID},
		"client_id": {p.Creds.ClientID}, "client_secret": {p.Creds.ClientSecret}})
	if status != http.StatusOK || !strings.Contains(body, `id="subscriptions"`) {
		b.t.Fatalf("sign-in as %s: %d\n%s", p.Name, status, body)
	}
}

func (b *browser) networking(id string) string {
	b.t.Helper()
	status, body := b.get(viewPath(id) + "?blade=networking")
	if status != http.StatusOK {
		b.t.Fatalf("networking blade of %s: %d\n%s", id, status, body)
	}
	return body
}

func viewPath(id string) string { return "/portal/view" + id }

// connectionID is the ID of the one connection on the server, from the
// API.
func (e *env) connectionID(t *testing.T) string {
	t.Helper()
	id, _, _ := e.connection(t)
	return id
}

// connectionState is the state and description of the one connection on
// the server, from the API.
func (e *env) connectionState(t *testing.T) (status, description string) {
	t.Helper()
	_, status, description = e.connection(t)
	return status, description
}

func (e *env) connection(t *testing.T) (id, status, description string) {
	t.Helper()
	r := e.a.Do(t, e.a.Owner, http.MethodGet, e.serverID+"/privateEndpointConnections?api-version=2024-08-01", nil)
	var page struct {
		Value []struct {
			ID         string `json:"id"`
			Properties struct {
				State struct {
					Status      string `json:"status"`
					Description string `json:"description"`
				} `json:"privateLinkServiceConnectionState"`
			} `json:"properties"`
		} `json:"value"`
	}
	if err := json.Unmarshal(r.Body, &page); err != nil || len(page.Value) != 1 {
		t.Fatalf("connections of the server: %v %s", err, r.Body)
	}
	v := page.Value[0]
	return v.ID, v.Properties.State.Status, v.Properties.State.Description
}

func TestPortalSignInRefusals(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	// Not signed in: pages send to the sign-in form, POSTs are refused.
	if status, body := b.get("/portal/"); status != http.StatusOK || !strings.Contains(body, `id="signin"`) {
		t.Fatalf("home without a session: %d\n%s", status, body)
	}
	if status, _ := b.post("/portal/action", url.Values{"action": {"approve"}}); status != http.StatusUnauthorized {
		t.Errorf("an action without a session: %d", status)
	}
	// The sign-in form itself needs its CSRF token.
	if status, _ := b.post("/portal/signin", url.Values{"tenant": {e.a.Owner.Creds.TenantID}, "client_id": {e.a.Owner.Creds.ClientID},
		"client_secret": {e.a.Owner.Creds.ClientSecret}}); status != http.StatusForbidden {
		t.Errorf("sign-in without a CSRF token: %d, want 403", status)
	}
	// A wrong secret is the identity provider's refusal, shown.
	b.get("/portal/signin")
	status, body := b.post("/portal/signin", url.Values{"csrf": {b.csrf()}, "tenant": {e.a.Owner.Creds.TenantID},
		"client_id": {e.a.Owner.Creds.ClientID}, "client_secret": {"wrong"}})
	if status != http.StatusUnauthorized || !strings.Contains(body, "AADSTS7000215") {
		t.Errorf("sign-in with a wrong secret: %d\n%s", status, body)
	}
	// Signed in: the cookie is HttpOnly, Secure and SameSite=Strict.
	b.signIn(e.a.Owner)
	u, _ := url.Parse(e.srv.URL + "/portal/")
	cookies := b.c.Jar.Cookies(u)
	if len(cookies) != 1 || cookies[0].Name != "privlink_session" {
		t.Fatalf("cookies after sign-in: %v", cookies)
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/portal/signin", nil)
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, h := range resp.Header.Values("Set-Cookie") {
		if !strings.Contains(h, "HttpOnly") || !strings.Contains(h, "Secure") || !strings.Contains(h, "SameSite=Strict") {
			t.Errorf("cookie %q is not HttpOnly, Secure, SameSite=Strict", h)
		}
	}

	// CSRF: an action without a token, or with another's, is refused and
	// changes nothing.
	b.networking(e.serverID)
	conn := e.connectionID(t)
	for name, form := range map[string]url.Values{
		"no token":    {"id": {conn}, "action": {"approve"}, "description": {"forged"}},
		"wrong token": {"csrf": {"AAAA" + b.csrf()[4:]}, "id": {conn}, "action": {"approve"}, "description": {"forged"}},
	} {
		if status, _ := b.post("/portal/action", form); status != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, status)
		}
	}
	if body := b.networking(e.serverID); !strings.Contains(body, ">Pending<") {
		t.Errorf("the connection changed after refused POSTs:\n%s", body)
	}

	// Sign-out drops the session.
	b.get("/portal/")
	b.post("/portal/signout", url.Values{"csrf": {b.csrf()}})
	if status, body := b.get("/portal/"); status != http.StatusOK || !strings.Contains(body, `id="signin"`) {
		t.Errorf("home after sign-out: %d\n%s", status, body)
	}
}

func TestPortalApproveAndReader(t *testing.T) {
	e := newEnv(t)
	reader := e.a.NewPrincipal(t, "reader", false)
	e.a.Assign(t, reader, identity.ReaderRoleID, "/subscriptions/"+e.a.Owner.Sub())
	conn := e.connectionID(t)

	// The Reader sees the Pending connection, no action buttons, and a
	// forged approve (with its own valid CSRF token) is the API's 403.
	rb := e.browser(t)
	rb.signIn(reader)
	body := rb.networking(e.serverID)
	if !strings.Contains(body, ">Pending<") || !strings.Contains(body, "pe-other") {
		t.Fatalf("the Reader does not see the Pending connection:\n%s", body)
	}
	for _, button := range []string{"conn-approve", "conn-reject", "conn-remove", `id="fw-add"`, `id="public-disable"`} {
		if strings.Contains(body, button) {
			t.Errorf("the Reader is shown %s", button)
		}
	}
	if !strings.Contains(body, `id="read-only"`) {
		t.Error("the Reader is not told the page is read-only")
	}
	status, body := rb.post("/portal/action", url.Values{"csrf": {rb.csrf()}, "id": {conn}, "action": {"approve"}, "description": {"by the reader"}})
	if status != http.StatusForbidden || !strings.Contains(body, "AuthorizationFailed") ||
		!strings.Contains(body, "Microsoft.DBforPostgreSQL/flexibleServers/privateEndpointConnections/write") {
		t.Errorf("the Reader's approve: %d, want 403 AuthorizationFailed naming the action:\n%s", status, body)
	}
	if body := rb.networking(e.serverID); !strings.Contains(body, ">Pending<") {
		t.Error("the Reader's approve changed the connection")
	}

	// The Owner sees the buttons and approves with a description, which
	// the page shows escaped.
	ob := e.browser(t)
	ob.signIn(e.a.Owner)
	body = ob.networking(e.serverID)
	if !strings.Contains(body, "conn-approve") {
		t.Fatalf("the Owner has no Approve button:\n%s", body)
	}
	status, body = ob.post("/portal/action", url.Values{"csrf": {ob.csrf()}, "id": {conn}, "action": {"approve"}, "description": {"ok <b>for</b> other"}})
	if status != http.StatusOK || !strings.Contains(body, ">Approved<") || !strings.Contains(body, "ok &lt;b&gt;for&lt;/b&gt; other") {
		t.Fatalf("the Owner's approve: %d\n%s", status, body)
	}
	if status, desc := e.connectionState(t); status != "Approved" || desc != "ok <b>for</b> other" {
		t.Errorf("the API's connection after the portal's approve: %s, %q", status, desc)
	}

	// Bad input is a clear error, not a panic: an unknown action, an ID
	// that is not one.
	if status, body := ob.post("/portal/action", url.Values{"csrf": {ob.csrf()}, "id": {e.serverID}, "action": {"explode"}}); status != http.StatusBadRequest || !strings.Contains(body, "UnknownAction") {
		t.Errorf("an unknown action: %d\n%s", status, body)
	}
	if status, _ := ob.post("/portal/action", url.Values{"csrf": {ob.csrf()}, "id": {"/subscriptions/../x"}, "action": {"remove"}}); status != http.StatusBadRequest {
		t.Errorf("a dot-segment ID: %d", status)
	}
	if status, body := ob.get("/portal/view/subscriptions/" + e.a.Owner.Sub() + "/resourceGroups/owner/providers/Microsoft.DBforPostgreSQL/flexibleServers/nope"); status != http.StatusNotFound || !strings.Contains(body, "ResourceNotFound") {
		t.Errorf("a missing server: %d\n%s", status, body)
	}
}

func TestPortalNetworkPage(t *testing.T) {
	e := newEnv(t)
	o := e.a.Owner
	g := "/subscriptions/" + o.Sub() + "/resourceGroups/owner/providers/Microsoft.Network/"
	e.put(t, o, g+"networkSecurityGroups/nsg", map[string]any{"location": "westeurope", "properties": map[string]any{"securityRules": []any{
		map[string]any{"name": "allow-pg", "properties": map[string]any{"priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
			"sourceAddressPrefix": "10.0.0.0/24", "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "5432"}}}}})
	e.put(t, o, g+"routeTables/rt", map[string]any{"location": "westeurope", "properties": map[string]any{"routes": []any{
		map[string]any{"name": "to-appliance", "properties": map[string]any{"addressPrefix": "10.9.0.0/16", "nextHopType": "VirtualAppliance", "nextHopIpAddress": "10.0.0.10"}}}}})
	e.put(t, o, g+"virtualNetworks/vnet", map[string]any{"location": "westeurope", "properties": map[string]any{
		"addressSpace": map[string]any{"addressPrefixes": []string{"10.0.0.0/16"}},
		"subnets": []any{map[string]any{"name": "default", "properties": map[string]any{"addressPrefix": "10.0.0.0/24",
			"privateEndpointNetworkPolicies": "Enabled",
			"networkSecurityGroup":           map[string]any{"id": g + "networkSecurityGroups/nsg"},
			"routeTable":                     map[string]any{"id": g + "routeTables/rt"}}}}}})
	e.put(t, o, g+"networkInterfaces/nic1", map[string]any{"location": "westeurope", "properties": map[string]any{"ipConfigurations": []any{
		map[string]any{"name": "ip", "properties": map[string]any{"subnet": map[string]any{"id": g + "virtualNetworks/vnet/subnets/default"}}}}}})
	b := e.browser(t)
	b.signIn(o)
	status, body := b.get(viewPath(strings.TrimSuffix(g, "/") + "/virtualNetworks/vnet"))
	if status != http.StatusOK {
		t.Fatalf("network page: %d\n%s", status, body)
	}
	for _, want := range []string{"10.0.0.0/24", "Enabled", "nic1", "10.0.0.4", "allow-pg", "5432", "to-appliance", "VirtualAppliance", "10.0.0.10"} {
		if !strings.Contains(body, want) {
			t.Errorf("the network page does not show %q:\n%s", want, body)
		}
	}
}
