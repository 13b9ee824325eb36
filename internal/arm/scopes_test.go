package arm_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/identity"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/store/bolt"
	"github.com/privlink/privlink/internal/store/etcd"
	"github.com/privlink/privlink/internal/store/etcd/etcdtest"
)

// scopeStores opens the stores the scope tests run on: bolt, and a real
// etcd (skipped when not installed, as etcdtest says).
var scopeStores = map[string]func(t *testing.T) store.Store{
	"bolt": func(t *testing.T) store.Store {
		st, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	},
	"etcd": func(t *testing.T) store.Store {
		st, err := etcd.New(t.Context(), etcd.Config{Endpoints: []string{etcdtest.Start(t)}, Prefix: etcdtest.Prefix(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	},
}

// scopeEnv is a store wired as the daemon wires it, an identity service
// over it, and a principal (bob) to grant roles to.
type scopeEnv struct {
	raw, st store.Store
	ids     *identity.Service
	sub     string
	bob     string // object id
}

func newScopeEnv(t *testing.T, open func(t *testing.T) store.Store) *scopeEnv {
	t.Helper()
	raw := open(t)
	st := arm.WithScopeHooks(raw, identity.DeleteRoleAssignmentsUnder)
	ids, err := identity.New(t.Context(), st, identity.Config{BaseURL: "https://127.0.0.1:1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	admin, _, err := ids.Bootstrap(t.Context(), "ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := ids.CreatePrincipal(t.Context(), identity.CreatePrincipalOptions{DisplayName: "bob"}, "ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	ps, err := ids.ListPrincipals(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ps, func(p identity.ServicePrincipal) bool { return p.ClientID == bob.ClientID })
	if i < 0 {
		t.Fatal("bob is not listed")
	}
	return &scopeEnv{raw: raw, st: st, ids: ids, sub: admin.SubscriptionID, bob: ps[i].ObjectID}
}

func (e *scopeEnv) id(t *testing.T, path string) arm.ResourceID {
	t.Helper()
	id, err := arm.ParseID("/subscriptions/" + e.sub + path)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// put writes a document for each path (relative to the subscription).
func (e *scopeEnv) put(t *testing.T, paths ...string) {
	t.Helper()
	_, err := e.st.Txn(t.Context(), func(tx store.Tx) error {
		for _, p := range paths {
			id := e.id(t, p)
			if err := arm.Save(tx, id, map[string]string{"id": id.String()}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// assign grants bob Reader at the scope (relative to the subscription)
// and returns the assignment's name.
func (e *scopeEnv) assign(t *testing.T, path string) string {
	t.Helper()
	ra, err := e.ids.CreateRoleAssignment(t.Context(), identity.RoleAssignment{
		Name: uuid.NewString(), Scope: "/subscriptions/" + e.sub + path,
		RoleDefinitionID: identity.RoleDefinitionID("/subscriptions/"+e.sub, identity.ReaderRoleID), PrincipalID: e.bob,
	})
	if err != nil {
		t.Fatalf("assign at %s: %v", path, err)
	}
	return ra.Name
}

func (e *scopeEnv) delete(t *testing.T, path string) {
	t.Helper()
	if _, err := e.st.Txn(t.Context(), func(tx store.Tx) error { return arm.Delete(tx, e.id(t, path)) }); err != nil {
		t.Fatalf("delete %s: %v", path, err)
	}
}

// held returns the scopes (relative to the subscription) of bob's
// assignments as every index of identity sees them, failing the test
// when the indexes disagree.
func (e *scopeEnv) held(t *testing.T) []string {
	t.Helper()
	ctx := t.Context()
	subScope := "/subscriptions/" + e.sub
	listed, err := e.ids.ListRoleAssignments(ctx, subScope, true) // by scope
	if err != nil {
		t.Fatal(err)
	}
	g, err := e.ids.Grants(ctx, identity.Principal{ObjectID: e.bob}) // by principal
	if err != nil {
		t.Fatal(err)
	}
	rel := func(ras []identity.RoleAssignment) []string {
		var out []string
		for _, ra := range ras {
			under := strings.EqualFold(ra.Scope, subScope) || strings.HasPrefix(strings.ToLower(ra.Scope), strings.ToLower(subScope)+"/")
			if ra.PrincipalID != e.bob || !under {
				continue // bob is Owner of his own subscription too
			}
			out = append(out, strings.TrimPrefix(ra.Scope, subScope))
			if _, err := e.ids.GetRoleAssignment(ctx, ra.Scope, ra.Name); err != nil {
				t.Errorf("listed assignment %s at %s: get: %v", ra.Name, ra.Scope, err)
			}
		}
		slices.Sort(out)
		return out
	}
	byScope, byPrincipal := rel(listed), rel(g.Assignments())
	if !slices.Equal(byScope, byPrincipal) {
		t.Errorf("indexes disagree: by scope %q, by principal %q", byScope, byPrincipal)
	}
	return byScope
}

func wantHeld(t *testing.T, e *scopeEnv, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := e.held(t); !slices.Equal(got, want) {
		t.Errorf("bob holds assignments at %q, want %q", got, want)
	}
}

const (
	adv     = "/resourceGroups/adv"
	adv2    = "/resourceGroups/adv2"
	vnet    = adv + "/providers/Microsoft.Network/virtualNetworks/v"
	subnet  = vnet + "/subnets/s1"
	subnet2 = vnet + "/subnets/s2"
	vnet2   = adv2 + "/providers/Microsoft.Network/virtualNetworks/v"
	vnetx   = adv + "/providers/Microsoft.Network/virtualNetworks/vx" // v's name is its prefix
)

// TestScopeDeletion: deleting a resource or group removes the role
// assignments at and under it, in the deleting transaction, from every
// index; neighbours whose names share a prefix keep theirs.
func TestScopeDeletion(t *testing.T) {
	for name, open := range scopeStores {
		t.Run(name, func(t *testing.T) {
			e := newScopeEnv(t, open)
			e.put(t, adv, adv2, vnet, subnet, subnet2, vnet2, vnetx)
			for _, s := range []string{adv, adv2, vnet, subnet, subnet2, vnet2, vnetx} {
				e.assign(t, s)
			}
			wantHeld(t, e, adv, adv2, vnet, subnet, subnet2, vnet2, vnetx)

			// A child resource: its assignments go, its parent's and
			// sibling's stay.
			e.delete(t, subnet)
			wantHeld(t, e, adv, adv2, vnet, subnet2, vnet2, vnetx)

			// A resource: with its children's (removed by arm.Delete as
			// descendants); vx, whose name v prefixes, keeps its own.
			e.delete(t, vnet)
			wantHeld(t, e, adv, adv2, vnet2, vnetx)

			// A group: with those at resources inside it; adv2 and what
			// is in it stay.
			e.put(t, vnet, subnet)
			vname := e.assign(t, vnet)
			e.assign(t, subnet)
			e.delete(t, adv)
			wantHeld(t, e, adv2, vnet2)

			// The name index is free again: the name can be used anew.
			e.put(t, adv, vnet)
			if _, err := e.ids.CreateRoleAssignment(t.Context(), identity.RoleAssignment{
				Name: vname, Scope: "/subscriptions/" + e.sub + vnet,
				RoleDefinitionID: identity.ReaderRoleID, PrincipalID: e.bob,
			}); err != nil {
				t.Errorf("re-use the name of an assignment deleted with its scope: %v", err)
			}
			wantHeld(t, e, adv2, vnet2, vnet)

			// Store.Delete of a document key, outside a transaction,
			// runs the hooks too.
			if err := e.st.Delete(t.Context(), arm.DocKey(e.id(t, vnet)), store.Any); err != nil {
				t.Fatal(err)
			}
			wantHeld(t, e, adv2, vnet2)
			if err := e.st.Delete(t.Context(), arm.DocKey(e.id(t, vnet)), store.Any); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("delete a missing document: %v, want ErrNotFound", err)
			}
			kv, err := e.st.Get(t.Context(), arm.DocKey(e.id(t, adv)))
			if err != nil {
				t.Fatal(err)
			}
			if err := e.st.Delete(t.Context(), kv.Key, kv.Revision+1000); !errors.Is(err, store.ErrConflict) {
				t.Errorf("delete with a stale revision: %v, want ErrConflict", err)
			}
		})
	}
}

// TestScopeHookFailure: a hook that fails aborts the whole deletion.
func TestScopeHookFailure(t *testing.T) {
	e := newScopeEnv(t, scopeStores["bolt"])
	e.put(t, adv, vnet)
	boom := errors.New("boom")
	st := arm.WithScopeHooks(e.raw, func(store.Tx, string) error { return boom })
	_, err := st.Txn(t.Context(), func(tx store.Tx) error { return arm.Delete(tx, e.id(t, adv)) })
	if !errors.Is(err, boom) {
		t.Fatalf("delete with a failing hook: %v, want boom", err)
	}
	for _, p := range []string{adv, vnet} {
		if ok, err := arm.Exists(arm.ReadOnly(t.Context(), st), e.id(t, p)); err != nil || !ok {
			t.Errorf("%s after a failed deletion: exists %v, %v", p, ok, err)
		}
	}
}

// TestScopeHookOnce: deleting a group runs the hooks once, for the
// group, and not again for every member it covers.
func TestScopeHookOnce(t *testing.T) {
	e := newScopeEnv(t, scopeStores["bolt"])
	e.put(t, adv, adv2, vnet, subnet, vnet2)
	var seen []string
	st := arm.WithScopeHooks(e.raw, func(_ store.Tx, scope string) error { seen = append(seen, scope); return nil })
	_, err := st.Txn(t.Context(), func(tx store.Tx) error {
		seen = nil
		return arm.Delete(tx, e.id(t, adv))
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{strings.ToLower("/subscriptions/" + e.sub + adv)}; !slices.Equal(seen, want) {
		t.Errorf("hooks ran for %q, want %q", seen, want)
	}
}

// TestPruneRoleAssignments: assignments whose scope lost its document
// without the hooks (state written before they existed) go at the
// daemon's start; those at existing scopes and at the subscription stay.
func TestPruneRoleAssignments(t *testing.T) {
	for name, open := range scopeStores {
		t.Run(name, func(t *testing.T) {
			e := newScopeEnv(t, open)
			e.put(t, adv, adv2, vnet, vnet2)
			for _, s := range []string{"", adv, adv2, vnet, vnet2} {
				e.assign(t, s)
			}
			// Delete adv (and so vnet) behind the hooks' back.
			if _, err := e.raw.Txn(t.Context(), func(tx store.Tx) error { return arm.Delete(tx, e.id(t, adv)) }); err != nil {
				t.Fatal(err)
			}
			wantHeld(t, e, "", adv, adv2, vnet, vnet2)
			n, err := e.ids.PruneRoleAssignments(t.Context(), func(tx store.Tx, scope string) (bool, error) { return arm.ScopeExists(tx, scope) })
			if err != nil || n != 2 {
				t.Errorf("prune: %d, %v; want 2", n, err)
			}
			wantHeld(t, e, "", adv2, vnet2)
		})
	}
}

// TestScopeExists covers what ScopeExists reports for each kind of scope.
func TestScopeExists(t *testing.T) {
	e := newScopeEnv(t, scopeStores["bolt"])
	e.put(t, adv, vnet)
	r := arm.ReadOnly(context.Background(), e.st)
	sub := "/subscriptions/" + e.sub
	for scope, want := range map[string]bool{
		"/": true,
		sub: true,
		"/providers/Microsoft.Management/managementGroups/m": true,
		sub + adv:                   true,
		sub + "/resourceGroups/ADV": true,
		sub + adv2:                  false,
		sub + vnet:                  true,
		sub + subnet:                false,
		sub + vnet + "/providers/Microsoft.Authorization/roleAssignments/x": false,
	} {
		got, err := arm.ScopeExists(r, scope)
		if err != nil || got != want {
			t.Errorf("ScopeExists(%s) = %v, %v; want %v", scope, got, err, want)
		}
	}
}
