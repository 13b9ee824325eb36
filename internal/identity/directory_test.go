package identity

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/privlink/privlink/internal/store"
)

func TestBootstrapIdempotent(t *testing.T) {
	st := newStore(t)
	svc := newService(t, st, Config{BaseURL: "https://127.0.0.1:8443", Audience: testAudience})
	creds, created, err := svc.Bootstrap(t.Context(), "/data/ca.pem")
	if err != nil || !created {
		t.Fatalf("first Bootstrap: %v %v", created, err)
	}
	want := Credentials{
		TenantID: creds.TenantID, SubscriptionID: creds.SubscriptionID, ClientID: creds.ClientID, ClientSecret: creds.ClientSecret,
		ARMEndpoint: "https://127.0.0.1:8443", AuthorityHost: "https://127.0.0.1:8443/", Audience: testAudience, CAFile: "/data/ca.pem",
	}
	if creds != want || !IsGUID(creds.TenantID) || !IsGUID(creds.SubscriptionID) || !IsGUID(creds.ClientID) || len(creds.ClientSecret) != 43 {
		t.Fatalf("credentials = %+v", creds)
	}
	if creds.TenantID != strings.ToLower(creds.TenantID) {
		t.Error("tenant id not lowercase")
	}

	again, created, err := svc.Bootstrap(t.Context(), "/data/ca.pem")
	if err != nil || created || again != (Credentials{}) {
		t.Fatalf("second Bootstrap: %+v %v %v", again, created, err)
	}
	ps, err := svc.ListPrincipals(t.Context())
	if err != nil || len(ps) != 1 || !ps[0].Admin || ps[0].ClientID != creds.ClientID {
		t.Fatalf("principals = %+v %v", ps, err)
	}
	sub, err := svc.GetSubscription(t.Context(), strings.ToUpper(creds.SubscriptionID))
	if err != nil || sub.TenantID != creds.TenantID || sub.State != "Enabled" || sub.DisplayName == "" {
		t.Fatalf("subscription = %+v %v", sub, err)
	}
	if def, err := svc.DefaultTenantID(t.Context()); err != nil || def != creds.TenantID {
		t.Fatalf("default tenant = %s %v", def, err)
	}

	// The secret is stored only as a hash.
	kvs, _, err := st.List(t.Context(), "identity/")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if strings.Contains(string(kv.Value), creds.ClientSecret) {
			t.Errorf("clear secret stored under %s", kv.Key)
		}
	}
	rec, err := svc.principal(t.Context(), ps[0].ObjectID)
	if err != nil || !rec.secretMatches(creds.ClientSecret) || rec.secretMatches(creds.ClientSecret+"x") {
		t.Fatalf("secret hash check: %v", err)
	}
}

func TestBootstrapConcurrentNodes(t *testing.T) {
	st := newStore(t)
	const nodes = 4
	svcs := make([]*Service, nodes)
	for i := range svcs {
		svcs[i] = newService(t, st, Config{})
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
		errs    []error
	)
	for _, s := range svcs {
		wg.Go(func() {
			_, c, err := s.Bootstrap(t.Context(), "")
			mu.Lock()
			defer mu.Unlock()
			if c {
				created++
			}
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if created != 1 || len(errs) != 0 {
		t.Fatalf("created %d times, errors %v", created, errs)
	}
	for _, s := range svcs[1:] {
		if s.kid != svcs[0].kid {
			t.Fatal("nodes on one store have different signing keys")
		}
	}
}

func TestCreatePrincipal(t *testing.T) {
	st := newStore(t)
	svc := newService(t, st, Config{})
	if _, err := svc.CreatePrincipal(t.Context(), CreatePrincipalOptions{}, ""); err == nil {
		t.Fatal("CreatePrincipal before Bootstrap succeeded")
	}
	admin, _, err := svc.Bootstrap(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	same, err := svc.CreatePrincipal(t.Context(), CreatePrincipalOptions{DisplayName: "alice"}, "ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	if same.TenantID != admin.TenantID || same.SubscriptionID == admin.SubscriptionID || same.ClientID == admin.ClientID || same.ClientSecret == admin.ClientSecret || same.CAFile != "ca.pem" {
		t.Fatalf("same-tenant principal = %+v", same)
	}
	fresh, err := svc.CreatePrincipal(t.Context(), CreatePrincipalOptions{NewTenant: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	if fresh.TenantID == admin.TenantID || fresh.SubscriptionID == admin.SubscriptionID || fresh.SubscriptionID == same.SubscriptionID {
		t.Fatalf("new-tenant principal = %+v", fresh)
	}
	tenants, err := svc.ListTenants(t.Context())
	if err != nil || len(tenants) != 2 {
		t.Fatalf("tenants = %+v %v", tenants, err)
	}
	subs, err := svc.ListSubscriptions(t.Context())
	if err != nil || len(subs) != 3 {
		t.Fatalf("subscriptions = %+v %v", subs, err)
	}
	sub, err := svc.GetSubscription(t.Context(), fresh.SubscriptionID)
	if err != nil || sub.TenantID != fresh.TenantID {
		t.Fatalf("fresh subscription = %+v %v", sub, err)
	}
	sp, err := svc.principalByClientID(t.Context(), fresh.ClientID)
	if err != nil || sp.Admin || sp.TenantID != fresh.TenantID || sp.HomeSubscriptionID != fresh.SubscriptionID {
		t.Fatalf("fresh principal = %+v %v", sp, err)
	}
	got, err := svc.GetPrincipalByObjectID(t.Context(), sp.ObjectID)
	if err != nil || got != sp.ServicePrincipal {
		t.Fatalf("GetPrincipalByObjectID = %+v %v", got, err)
	}
	// The new principal is Owner of its own subscription.
	g, err := svc.Grants(t.Context(), Principal{ObjectID: sp.ObjectID})
	if err != nil || !g.Allowed("Microsoft.Authorization/roleAssignments/write", "/subscriptions/"+fresh.SubscriptionID) || g.AnyIn(admin.SubscriptionID) {
		t.Fatalf("grants of new principal wrong: %v", err)
	}
}

func TestNotFound(t *testing.T) {
	svc := newService(t, newStore(t), Config{})
	for name, err := range map[string]error{
		"subscription":     second(svc.GetSubscription(t.Context(), newGUID())),
		"subscription bad": second(svc.GetSubscription(t.Context(), "../x")),
		"tenant":           second(svc.GetTenant(t.Context(), newGUID())),
		"principal":        second(svc.GetPrincipalByObjectID(t.Context(), newGUID())),
		"assignment":       second(svc.GetRoleAssignment(t.Context(), "/subscriptions/x", newGUID())),
		"default tenant":   second(svc.DefaultTenantID(t.Context())),
		"delete principal": svc.DeletePrincipal(t.Context(), newGUID()),
	} {
		if !errors.Is(err, ErrNotFound) || !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func TestCredentialsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	c := Credentials{TenantID: "t", SubscriptionID: "s", ClientID: "c", ClientSecret: "x", ARMEndpoint: "https://h", AuthorityHost: "https://h/", Audience: "a", CAFile: "/ca.pem"}
	if err := WriteCredentialsFile(path, c); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, %v", fi.Mode(), err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"armEndpoint", "audience", "authorityHost", "caFile", "clientId", "clientSecret", "subscriptionId", "tenantId"}; !slices.Equal(keys, want) {
		t.Errorf("keys = %v, want %v", keys, want)
	}
	back, err := ReadCredentialsFile(path)
	if err != nil || back != c {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	// Overwrite keeps 0600 and leaves no temp files.
	if err := WriteCredentialsFile(path, c); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("dir has %d entries", len(entries))
	}
}
