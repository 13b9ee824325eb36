package daemon_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/daemon/daemontest"
	"github.com/privlink/privlink/internal/identity"
	"github.com/privlink/privlink/internal/store"
)

// The RBAC matrix: every resource type the router serves (a new type is
// covered without editing this test, and fails it until it has a fixture)
// × every verb it supports (GET one, LIST, PUT, PATCH, DELETE, each POST
// action) × a caller:
//
//   - the Owner of the subscription: allowed (the control);
//   - a Reader on the group: reads allowed, writes and actions 403
//     AuthorizationFailed;
//   - a Contributor on another group: 403 on everything in this group,
//     and subscription-wide lists show nothing of it;
//   - a Contributor on one NSG of the group: allowed on the NSG and what
//     it holds, 403 on the rest, also when a request names the rest
//     through the NSG (.../nsg/providers/{type}/{name}, the shape of an
//     extension resource);
//   - the Owner of a subscription of another tenant: 403 on everything,
//     nothing of ours listed;
//   - no token, a malformed one, one not Bearer, an expired one, one
//     signed by another key, one unsigned (alg none), one for another
//     audience: 401 with ARM's code and a WWW-Authenticate challenge.
//
// Every refused request must leave the store as it was: not one key
// written.

// caller is a column of the matrix.
type caller struct {
	name string
	auth string // the Authorization header
	// may reports whether the caller may do c: read (reads) or write
	// (everything else).
	may func(c cell) bool
	// status and code of a refusal.
	status int
	code   string
	// filtered: a list it may not read is answered with what it may (the
	// caller holds a role in the subscription).
	filtered bool
}

// listed are the ids of a list's items.
func listed(t testing.TB, r daemontest.Response) []string {
	t.Helper()
	var page struct{ Value []struct{ ID string } }
	r.JSON(t, &page)
	ids := make([]string, len(page.Value))
	for i, it := range page.Value {
		ids[i] = it.ID
	}
	return ids
}

func TestRBACMatrix(t *testing.T) {
	a := daemontest.New(t)
	e := newEnv(a)
	g, other := e.rg("target"), e.rg("other")
	e.populate(t, g)
	e.populate(t, other)
	reader := a.NewPrincipal(t, "reader", false)
	a.Assign(t, reader, identity.ReaderRoleID, g)
	elsewhere := a.NewPrincipal(t, "contributor-elsewhere", false)
	a.Assign(t, elsewhere, identity.ContributorRoleID, other)
	oneResource := a.NewPrincipal(t, "contributor-on-one-nsg", false)
	a.Assign(t, oneResource, identity.ContributorRoleID, nsgIn(g))
	foreign := a.NewPrincipal(t, "other-tenant", true)
	if foreign.Creds.TenantID == a.Owner.Creds.TenantID {
		t.Fatal("the other tenant's principal is in our tenant")
	}

	inGroup := func(grp string) func(string) bool {
		return func(path string) bool { return arm.ScopeContains(grp, path) }
	}
	never := func(cell) bool { return false }
	refused := func(name, auth, code string) caller {
		return caller{name: name, auth: auth, may: never, status: http.StatusUnauthorized, code: code}
	}
	forged := forgeTokens(t, a)
	callers := []caller{
		{name: "Reader on the group", auth: "Bearer " + reader.Token(t),
			may:    func(c cell) bool { return !c.write && inGroup(g)(c.path) },
			status: http.StatusForbidden, code: "AuthorizationFailed", filtered: true},
		{name: "Contributor on another group", auth: "Bearer " + elsewhere.Token(t),
			may: func(c cell) bool { return inGroup(other)(c.path) }, status: http.StatusForbidden, code: "AuthorizationFailed", filtered: true},
		{name: "Contributor on one NSG of the group", auth: "Bearer " + oneResource.Token(t),
			may: func(c cell) bool { return inGroup(nsgIn(g))(c.path) }, status: http.StatusForbidden, code: "AuthorizationFailed", filtered: true},
		{name: "principal of another tenant", auth: "Bearer " + foreign.Token(t),
			may: never, status: http.StatusForbidden, code: "AuthorizationFailed"},
		refused("no token", "", identity.CodeAuthenticationFailed),
		refused("not a Bearer token", "Basic "+a.Owner.Token(t), identity.CodeAuthenticationFailed),
		refused("malformed token", "Bearer not-a-jwt", identity.CodeInvalidAuthenticationToken),
		refused("expired token", "Bearer "+forged.expired, identity.CodeExpiredAuthenticationToken),
		refused("token signed by another key", "Bearer "+forged.otherKey, identity.CodeInvalidAuthenticationToken),
		refused("unsigned token", "Bearer "+forged.unsigned, identity.CodeInvalidAuthenticationToken),
		refused("token for another audience", "Bearer "+forged.otherAudience, identity.CodeInvalidAuthenticationTokenAudience),
	}
	owner := "Bearer " + a.Owner.Token(t)

	// The cells of every type, and the DELETEs, run last.
	var all []typeCells
	for _, typ := range a.Router.Types() {
		if tc, ok := e.cells(t, typ, g); ok {
			all = append(all, tc)
		}
	}

	var requests int
	send := func(auth string, c cell) daemontest.Response {
		t.Helper()
		requests++
		var body any
		if c.body != nil {
			body = c.body
		} else if c.method == http.MethodPost {
			body = []byte{}
		}
		return a.DoAuth(t, auth, c.method, c.path+apiVersion(c.path), body)
	}
	run := func(f fixture, cells []cell) {
		for _, c := range cells {
			for _, cl := range callers {
				before := dump(t, a.Store)
				r := send(cl.auth, c)
				if cl.may(c) {
					if r.Status >= 300 {
						t.Errorf("%s %s as %s: %d %s, want it allowed", c.verb, c.path, cl.name, r.Status, r.Body)
					}
					continue
				}
				if c.verb == "LIST" && cl.filtered && r.Status == http.StatusOK {
					// A caller with a role in the subscription gets the
					// list of what it may read, here nothing.
					for _, id := range listed(t, r) {
						if !cl.may(cell{path: id}) {
							t.Errorf("%s %s as %s lists %s, which it may not read", c.verb, c.path, cl.name, id)
						}
					}
					continue
				}
				if r.Status != cl.status || r.ErrorCode() != cl.code {
					t.Errorf("%s %s as %s: %d %s, want %d %s", c.verb, c.path, cl.name, r.Status, r.Body, cl.status, cl.code)
				}
				if r.Status == http.StatusUnauthorized && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer ") {
					t.Errorf("%s %s as %s: a 401 without a Bearer challenge: %q", c.verb, c.path, cl.name, r.Header.Get("WWW-Authenticate"))
				}
				if diff := dumpDiff(before, dump(t, a.Store)); diff != "" {
					t.Errorf("%s %s as %s was refused (%d) but changed the store: %s", c.verb, c.path, cl.name, r.Status, diff)
				}
			}
			r := send(owner, c)
			if code, ok := f.stateRefusals[c.verb]; ok {
				if r.ErrorCode() != code {
					t.Errorf("%s %s as the Owner: %d %s, want %s (a refusal for the resource's state)", c.verb, c.path, r.Status, r.Body, code)
				}
			} else if r.Status >= 300 {
				t.Errorf("%s %s as the Owner: %d %s, want it allowed", c.verb, c.path, r.Status, r.Body)
			}
		}
	}
	for _, tc := range all {
		run(tc.f, tc.cells)
		if tc.subscription == "" {
			continue
		}
		// A subscription-wide list shows each caller only what it may read.
		for _, cl := range callers[:2] {
			r := a.DoAuth(t, cl.auth, http.MethodGet, tc.subscription+apiVersion(tc.subscription), nil)
			requests++
			if r.Status != http.StatusOK {
				t.Errorf("GET %s as %s: %d %s", tc.subscription, cl.name, r.Status, r.Body)
			}
			for _, id := range listed(t, r) {
				if !cl.may(cell{path: id}) {
					t.Errorf("GET %s as %s lists %s, which it may not read", tc.subscription, cl.name, id)
				}
			}
		}
	}
	// Every request again as the NSG's Contributor, through the NSG as if
	// the resource were an extension of it (.../nsg/providers/...): no
	// path makes a role on one resource reach its neighbours.
	smuggler := callers[2]
	for _, tc := range all {
		if tc.extension {
			continue
		}
		for _, c := range append(tc.cells, tc.dels...) {
			rest, ok := strings.CutPrefix(c.path, g+"/providers/")
			if !ok {
				continue
			}
			c.path = nsgIn(g) + "/providers/" + rest
			before := dump(t, a.Store)
			r := send(smuggler.auth, c)
			if r.Status < 400 || r.Status >= 500 {
				t.Errorf("%s %s as %s: %d %s, want it refused", c.verb, c.path, smuggler.name, r.Status, r.Body)
			}
			if diff := dumpDiff(before, dump(t, a.Store)); diff != "" {
				t.Errorf("%s %s as %s was refused (%d) but changed the store: %s", c.verb, c.path, smuggler.name, r.Status, diff)
			}
		}
	}
	for _, tc := range all {
		run(tc.f, tc.dels)
	}

	// The other tenant sees nothing of ours: not our subscription, nor
	// anything of it in its own.
	r := a.Do(t, foreign, http.MethodGet, "/subscriptions?api-version=2022-12-01", nil)
	if strings.Contains(strings.ToLower(string(r.Body)), strings.ToLower(e.sub)) || r.Status != http.StatusOK {
		t.Errorf("GET /subscriptions as the other tenant: %d %s", r.Status, r.Body)
	}
	if r := a.Do(t, foreign, http.MethodGet, "/subscriptions/"+e.sub+"?api-version=2022-12-01", nil); r.Status != http.StatusNotFound {
		t.Errorf("GET our subscription as the other tenant: %d %s", r.Status, r.Body)
	}
	t.Logf("%d requests over %d types", requests, len(all))
}

// forgedTokens are bearer tokens for the Owner that privlink must refuse.
type forgedTokens struct {
	expired, otherKey, unsigned, otherAudience string
}

// forgeTokens makes them from the claims of a real token of the Owner
// and, for the ones that need a valid signature, privlink's own signing
// key, read from the store (whoever reads the store can mint tokens:
// identity keeps the key there in clear, for every node of one store).
func forgeTokens(t *testing.T, a *daemontest.API) forgedTokens {
	t.Helper()
	claims := jwt.MapClaims{}
	real, _, err := jwt.NewParser().ParseUnverified(a.Owner.Token(t), claims)
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := real.Header["kid"].(string)
	kv, err := a.Store.Get(t.Context(), "identity/signing-key")
	if err != nil {
		t.Fatalf("privlink's signing key: %v", err)
	}
	var rec struct {
		KeyID  string `json:"kid"`
		KeyPEM string `json:"keyPem"`
	}
	if err := json.Unmarshal(kv.Value, &rec); err != nil || rec.KeyID != kid {
		t.Fatalf("signing key record (kid %q, token kid %q): %v", rec.KeyID, kid, err)
	}
	block, _ := pem.Decode([]byte(rec.KeyPEM))
	if block == nil {
		t.Fatal("the signing key is not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	own := k.(*rsa.PrivateKey)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(key any, method jwt.SigningMethod, change func(jwt.MapClaims)) string {
		c := maps.Clone(claims)
		c["uti"] = fmt.Sprint(time.Now().UnixNano())
		change(c)
		tok := jwt.NewWithClaims(method, c)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := time.Now()
	same := func(jwt.MapClaims) {}
	return forgedTokens{
		expired: sign(own, jwt.SigningMethodRS256, func(c jwt.MapClaims) {
			c["iat"], c["nbf"], c["exp"] = now.Add(-3*time.Hour).Unix(), now.Add(-3*time.Hour).Unix(), now.Add(-2*time.Hour).Unix()
		}),
		otherKey:      sign(otherKey, jwt.SigningMethodRS256, same),
		unsigned:      sign(jwt.UnsafeAllowNoneSignatureType, jwt.SigningMethodNone, same),
		otherAudience: sign(own, jwt.SigningMethodRS256, func(c jwt.MapClaims) { c["aud"] = "https://management.core.windows.net/" }),
	}
}

// dump is every key of the store with its revision and value.
func dump(t testing.TB, st store.Store) map[string]store.KV {
	t.Helper()
	kvs, _, err := st.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]store.KV, len(kvs))
	for _, kv := range kvs {
		out[kv.Key] = kv
	}
	return out
}

// dumpDiff says which keys differ between two dumps ("" if none).
func dumpDiff(before, after map[string]store.KV) string {
	var d []string
	for k, b := range before {
		if a, ok := after[k]; !ok {
			d = append(d, "deleted "+k)
		} else if a.Revision != b.Revision || !bytes.Equal(a.Value, b.Value) {
			d = append(d, "changed "+k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			d = append(d, "added "+k)
		}
	}
	slices.Sort(d)
	return strings.Join(d, ", ")
}
