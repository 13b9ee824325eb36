package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	armruntime "github.com/Azure/azure-sdk-for-go/sdk/azcore/arm/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	azruntime "github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/google/uuid"
	"github.com/privlink/privlink/internal/azconfig"
	"github.com/privlink/privlink/internal/testkit"
)

// TestFoundation runs the control-plane suite on each store backend.
func TestFoundation(t *testing.T) {
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) {
			d := startDaemon(t, backend)
			t.Run("Credentials", func(t *testing.T) { testCredentials(t, d) })
			t.Run("ResourceGroups", func(t *testing.T) { testResourceGroups(t, d) })
			t.Run("Errors", func(t *testing.T) { testErrors(t, d) })
			t.Run("RBAC", func(t *testing.T) { testRBAC(t, d) })
			t.Run("Network", func(t *testing.T) { testNetwork(t, d) })
			t.Run("PrivateDNS", func(t *testing.T) { testPrivateDNS(t, d) })
			t.Run("Restart", func(t *testing.T) { testRestart(t, d) })
		})
	}
}

func testCredentials(t *testing.T, d *daemon) {
	path := filepath.Join(d.dataDir, "credentials.json")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials.json mode = %v, want 0600", fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	want := []string{"armEndpoint", "audience", "authorityHost", "caFile", "clientId", "clientSecret", "subscriptionId", "tenantId"}
	if len(m) != len(want) {
		t.Errorf("credentials.json has keys %v, want exactly %v", keys(m), want)
	}
	for _, k := range want {
		if s, _ := m[k].(string); s == "" {
			t.Errorf("credentials.json lacks %q", k)
		}
	}
	// The secret is stored hashed: it appears nowhere in the data directory.
	secret := d.creds.ClientSecret
	_ = filepath.WalkDir(d.dataDir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() || p == path {
			return nil
		}
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), secret) {
			t.Errorf("client secret found in clear in %s", p)
		}
		return nil
	})
	// privlink token prints a JWT with the claims ARM callers carry.
	tok := strings.TrimSpace(d.cli("--data-dir", d.dataDir, "token"))
	claims := jwtClaims(t, tok)
	for _, c := range []string{"tid", "oid", "appid", "aud", "iat", "nbf", "exp"} {
		if _, ok := claims[c]; !ok {
			t.Errorf("token lacks claim %q: %v", c, claims)
		}
	}
	if claims["tid"] != d.creds.TenantID || claims["appid"] != d.creds.ClientID || claims["aud"] != d.creds.Audience {
		t.Errorf("token claims %v do not match credentials %+v", claims, d.creds)
	}
	// A wrong secret gets Entra ID's error.
	bad := d.creds
	bad.ClientSecret = "wrong"
	cfg, err := azconfig.New(bad)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.Credential.GetToken(ctx(t), policy.TokenRequestOptions{Scopes: []string{cfg.Scope()}})
	if err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("token with a wrong secret: err = %v, want invalid_client", err)
	}
}

func testResourceGroups(t *testing.T, d *daemon) {
	c := ctx(t)
	rgs, err := armresources.NewResourceGroupsClient(d.creds.SubscriptionID, d.cfg.Credential, d.opts())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		name := fmt.Sprintf("rg-page-%d", i)
		resp, err := rgs.CreateOrUpdate(c, name, armresources.ResourceGroup{Location: ptr("West Europe"), Tags: map[string]*string{"n": ptr(fmt.Sprint(i))}}, nil)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		if *resp.Location != "westeurope" || *resp.Name != name || *resp.Properties.ProvisioningState != "Succeeded" {
			t.Errorf("created group = %+v", resp.ResourceGroup)
		}
	}
	got, err := rgs.Get(c, "RG-PAGE-3", nil) // names are case-insensitive
	if err != nil {
		t.Fatal(err)
	}
	if *got.Name != "rg-page-3" || *got.Tags["n"] != "3" {
		t.Errorf("get = %s %v", *got.Name, got.Tags)
	}
	if ex, err := rgs.CheckExistence(c, "rg-page-1", nil); err != nil || !ex.Success {
		t.Errorf("check existence of rg-page-1 = %v, %v", ex.Success, err)
	}
	if ex, err := rgs.CheckExistence(c, "nope", nil); err != nil || ex.Success {
		t.Errorf("check existence of nope = %v, %v", ex.Success, err)
	}
	upd, err := rgs.Update(c, "rg-page-1", armresources.ResourceGroupPatchable{Tags: map[string]*string{"env": ptr("test")}}, nil)
	if err != nil || *upd.Tags["env"] != "test" {
		t.Fatalf("update tags: %v %v", err, upd.Tags)
	}
	// Paging: $top=2 gives pages of two, joined by nextLink.
	pager := rgs.NewListPager(&armresources.ResourceGroupsClientListOptions{Top: ptr[int32](2)})
	pages, names := 0, map[string]bool{}
	for pager.More() {
		page, err := pager.NextPage(c)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, rg := range page.Value {
			names[*rg.Name] = true
		}
	}
	if pages < 3 || !names["rg-page-0"] || !names["rg-page-4"] {
		t.Errorf("list with $top=2: %d pages, names %v", pages, names)
	}
	// Deleting a group is a long-running operation.
	poller, err := rgs.BeginDelete(c, "rg-page-4", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := poller.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	_, err = rgs.Get(c, "rg-page-4", nil)
	testkit.WantARMError(t, err, http.StatusNotFound, "ResourceGroupNotFound")
}

func testErrors(t *testing.T, d *daemon) {
	c := ctx(t)
	// An api-version the providers do not serve.
	o := d.opts()
	o.APIVersion = "2019-01-01"
	rgs, _ := armresources.NewResourceGroupsClient(d.creds.SubscriptionID, d.cfg.Credential, o)
	_, err := rgs.Get(c, "rg-page-0", nil)
	testkit.WantARMError(t, err, http.StatusBadRequest, "InvalidApiVersionParameter")

	// A subscription that does not exist.
	rgs, _ = armresources.NewResourceGroupsClient("11111111-2222-3333-4444-555555555555", d.cfg.Credential, d.opts())
	_, err = rgs.Get(c, "x", nil)
	testkit.WantARMError(t, err, http.StatusNotFound, "SubscriptionNotFound")

	// Malformed JSON.
	resp := send(t, d.cfg, http.MethodPut, "/subscriptions/"+d.creds.SubscriptionID+"/resourcegroups/bad?api-version=2021-04-01", []byte(`{"location": `))
	if resp.StatusCode != http.StatusBadRequest || armCode(resp) != "InvalidRequestContent" {
		t.Errorf("malformed JSON: %d %s", resp.StatusCode, armCode(resp))
	}
	// A missing location names the field.
	resp = send(t, d.cfg, http.MethodPut, "/subscriptions/"+d.creds.SubscriptionID+"/resourcegroups/bad?api-version=2021-04-01", []byte(`{}`))
	if resp.StatusCode != http.StatusBadRequest || armCode(resp) != "LocationRequired" {
		t.Errorf("missing location: %d %s", resp.StatusCode, armCode(resp))
	}

	// No token, and a forged one: 401.
	for name, auth := range map[string]string{"none": "", "forged": "Bearer " + forge(t, d)} {
		req, _ := http.NewRequest(http.MethodGet, d.creds.ARMEndpoint+"/subscriptions/"+d.creds.SubscriptionID+"/resourcegroups?api-version=2021-04-01", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		r, err := d.cfg.HTTPClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s token: status %d, want 401", name, r.StatusCode)
		}
	}
}

// forge returns the default principal's token with its payload altered.
func forge(t *testing.T, d *daemon) string {
	tok := strings.TrimSpace(d.cli("--data-dir", d.dataDir, "token"))
	parts := strings.Split(tok, ".")
	claims := jwtClaims(t, tok)
	claims["oid"] = "00000000-0000-0000-0000-000000000000"
	b, _ := json.Marshal(claims)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func testRBAC(t *testing.T, d *daemon) {
	c := ctx(t)
	owner, _ := armresources.NewResourceGroupsClient(d.creds.SubscriptionID, d.cfg.Credential, d.opts())
	for _, rg := range []string{"rbac-a", "rbac-b"} {
		if _, err := owner.CreateOrUpdate(c, rg, armresources.ResourceGroup{Location: ptr("westeurope")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Of the same tenant: a principal of another one cannot be granted a
	// role here (rbac_scope_test.go).
	other := d.principal(false)
	if other.Creds.SubscriptionID == d.creds.SubscriptionID {
		t.Fatalf("a new principal shares the default one's subscription: %+v", other.Creds)
	}
	// The other principal works in its own subscription...
	mine, _ := armresources.NewResourceGroupsClient(other.Creds.SubscriptionID, other.Credential, other.ClientOptions())
	if _, err := mine.CreateOrUpdate(c, "own", armresources.ResourceGroup{Location: ptr("westeurope")}, nil); err != nil {
		t.Fatalf("other principal in its own subscription: %v", err)
	}
	// ...and sees nothing of the first one's.
	theirs, _ := armresources.NewResourceGroupsClient(d.creds.SubscriptionID, other.Credential, other.ClientOptions())
	_, err := theirs.Get(c, "rbac-a", nil)
	testkit.WantARMError(t, err, http.StatusForbidden, "AuthorizationFailed")
	_, err = theirs.NewListPager(nil).NextPage(c)
	testkit.WantARMError(t, err, http.StatusForbidden, "AuthorizationFailed")

	// Reader on rbac-a: it reads rbac-a only, and writes nothing.
	oid := jwtClaims(t, token(t, other))["oid"].(string)
	scopeA := "/subscriptions/" + d.creds.SubscriptionID + "/resourceGroups/rbac-a"
	reader := assignRole(t, d.cfg, scopeA, oid, "acdd72a7-3385-48ef-bd42-f606fba81ae7")
	if _, err := theirs.Get(c, "rbac-a", nil); err != nil {
		t.Errorf("reader get rbac-a: %v", err)
	}
	_, err = theirs.Get(c, "rbac-b", nil)
	testkit.WantARMError(t, err, http.StatusForbidden, "AuthorizationFailed")
	page, err := theirs.NewListPager(nil).NextPage(c)
	if err != nil || len(page.Value) != 1 || *page.Value[0].Name != "rbac-a" {
		t.Errorf("reader list: %v, %d groups", err, len(page.Value))
	}
	_, err = theirs.Update(c, "rbac-a", armresources.ResourceGroupPatchable{Tags: map[string]*string{"x": ptr("y")}}, nil)
	testkit.WantARMError(t, err, http.StatusForbidden, "AuthorizationFailed")
	// A reader cannot grant itself more.
	resp := putRole(t, other, scopeA, oid, "8e3af657-a8ff-443c-a75c-2fe8c4bcb635")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("reader assigning Owner: status %d, want 403", resp.StatusCode)
	}
	// Contributor on rbac-a: it writes there.
	assignRole(t, d.cfg, scopeA, oid, "b24988ac-6180-42a0-ab88-20f7382dd24c")
	if _, err := theirs.Update(c, "rbac-a", armresources.ResourceGroupPatchable{Tags: map[string]*string{"x": ptr("y")}}, nil); err != nil {
		t.Errorf("contributor update: %v", err)
	}
	// Removing the reader assignment leaves contributor; removing both
	// takes everything away again.
	deleteRole := func(name string) {
		r := send(t, d.cfg, http.MethodDelete, scopeA+"/providers/Microsoft.Authorization/roleAssignments/"+name+"?api-version=2022-04-01", nil)
		if r.StatusCode != http.StatusOK {
			t.Errorf("delete role assignment: %d", r.StatusCode)
		}
	}
	deleteRole(reader)
	if _, err := theirs.Get(c, "rbac-a", nil); err != nil {
		t.Errorf("contributor get rbac-a: %v", err)
	}
	deleteRole(listRoleAssignments(t, d.cfg, scopeA, oid))
	_, err = theirs.Get(c, "rbac-a", nil)
	testkit.WantARMError(t, err, http.StatusForbidden, "AuthorizationFailed")
}

// assignRole grants role (a built-in role GUID) at scope and returns the
// assignment's name.
func assignRole(t *testing.T, cfg *azconfig.Config, scope, principal, role string) string {
	t.Helper()
	resp := putRole(t, cfg, scope, principal, role)
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("assign role: %d %s", resp.StatusCode, b)
	}
	var ra struct{ Name string }
	_ = json.NewDecoder(resp.Body).Decode(&ra)
	return ra.Name
}

func putRole(t *testing.T, cfg *azconfig.Config, scope, principal, role string) *http.Response {
	name := newGUID(t)
	body, _ := json.Marshal(map[string]any{"properties": map[string]any{
		"roleDefinitionId": "/subscriptions/" + cfg.Creds.SubscriptionID + "/providers/Microsoft.Authorization/roleDefinitions/" + role,
		"principalId":      principal, "principalType": "ServicePrincipal",
	}})
	return send(t, cfg, http.MethodPut, scope+"/providers/Microsoft.Authorization/roleAssignments/"+name+"?api-version=2022-04-01", body)
}

// listRoleAssignments returns the name of the one assignment of principal
// at scope.
func listRoleAssignments(t *testing.T, cfg *azconfig.Config, scope, principal string) string {
	resp := send(t, cfg, http.MethodGet, scope+"/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter="+
		"principalId%20eq%20'"+principal+"'", nil)
	var list struct{ Value []struct{ Name string } }
	_ = json.NewDecoder(resp.Body).Decode(&list)
	if len(list.Value) != 1 {
		t.Fatalf("role assignments of %s at %s: %d, want 1", principal, scope, len(list.Value))
	}
	return list.Value[0].Name
}

func testRestart(t *testing.T, d *daemon) {
	c := ctx(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		d.restart(sig)
		rgs, _ := armresources.NewResourceGroupsClient(d.creds.SubscriptionID, d.cfg.Credential, d.opts())
		got, err := rgs.Get(c, "rg-page-1", nil)
		if err != nil {
			t.Fatalf("after %v: %v", sig, err)
		}
		if *got.Tags["env"] != "test" {
			t.Errorf("after %v: tags %v", sig, got.Tags)
		}
		checkNetworkSurvives(t, d)
		checkPrivateDNSSurvives(t, d)
	}
}

// send makes one request through the SDK's ARM pipeline (bearer token
// policy included) and returns the raw response.
func send(t *testing.T, cfg *azconfig.Config, method, path string, body []byte) *http.Response {
	t.Helper()
	o := cfg.ClientOptions()
	pl, err := armruntime.NewPipeline("e2e", "v0", cfg.Credential, azruntime.PipelineOptions{}, o)
	if err != nil {
		t.Fatal(err)
	}
	req, err := azruntime.NewRequest(ctx(t), method, cfg.Creds.ARMEndpoint+path)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		if err := req.SetBody(streaming.NopCloser(bytes.NewReader(body)), "application/json"); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := pl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// armCode reads the error code of an ARM error response.
func armCode(resp *http.Response) string {
	var e struct{ Error struct{ Code string } }
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &e)
	return e.Error.Code
}

func token(t *testing.T, cfg *azconfig.Config) string {
	tok, err := cfg.Credential.GetToken(ctx(t), policy.TokenRequestOptions{Scopes: []string{cfg.Scope()}})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func keys(m map[string]any) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	return k
}

func newGUID(t *testing.T) string { return uuid.NewString() }
