package arm

import (
	"context"
	"fmt"
	"strings"

	"github.com/privlink/privlink/internal/store"
)

// ScopeHook runs inside the transaction that deletes the document of the
// resource or resource group scope (its ARM ID, lower-cased, e.g.
// "/subscriptions/s/resourcegroups/rg"). It removes what hangs off that
// scope and off every scope under it; an error aborts the transaction.
type ScopeHook func(tx store.Tx, scope string) error

// WithScopeHooks returns st whose transactions run hooks whenever they
// delete a resource document, in the same transaction.
//
// In ARM a resource (or resource group) is also a scope: role assignments
// hang off it, and they go when it goes. What hangs off a scope but is
// kept by another part (identity keeps role assignments) is removed by a
// ScopeHook, and the daemon wires the hooks into the store itself, so
// nothing has to remember to call them: arm.Delete and the descendants it
// removes, a parent's PUT that drops children (a route table's routes), a
// resource group's delete, even a raw tx.Delete of a document key all
// delete through the same Tx. A method providers had to call instead of
// arm.Delete would leave every other deletion path to be remembered; the
// store is the one thing every path shares, and it is wired in one place.
// The hooks live in the returned value, not in package state.
//
// A deletion under a scope whose hooks already ran in the same
// transaction (a group's members after the group, a parent's children
// after the parent) does not run them again, since they covered it.
// Store.Delete of a document key runs as a transaction so that it runs
// the hooks too.
func WithScopeHooks(st store.Store, hooks ...ScopeHook) store.Store {
	return &scopedStore{Store: st, hooks: hooks}
}

type scopedStore struct {
	store.Store
	hooks []ScopeHook
}

func (s *scopedStore) Txn(ctx context.Context, fn func(tx store.Tx) error) (int64, error) {
	// A fresh scopedTx per run: an implementation may run fn again.
	return s.Store.Txn(ctx, func(tx store.Tx) error { return fn(&scopedTx{Tx: tx, hooks: s.hooks}) })
}

func (s *scopedStore) Delete(ctx context.Context, key string, expect int64) error {
	if _, ok := ParseDocKey(key); !ok {
		return s.Store.Delete(ctx, key, expect)
	}
	_, err := s.Txn(ctx, func(tx store.Tx) error {
		kv, err := tx.Get(key)
		if err != nil {
			return err
		}
		if expect != store.Any && kv.Revision != expect {
			return fmt.Errorf("delete %q: %w", key, store.ErrConflict)
		}
		return tx.Delete(key)
	})
	return err
}

type scopedTx struct {
	store.Tx
	hooks []ScopeHook
	done  []string // scopes whose hooks ran, each with a trailing "/"
}

func (t *scopedTx) Delete(key string) error {
	if err := t.Tx.Delete(key); err != nil {
		return err
	}
	id, ok := ParseDocKey(key)
	if !ok {
		return nil
	}
	scope := strings.ToLower(id.String())
	for _, d := range t.done {
		if strings.HasPrefix(scope+"/", d) {
			return nil
		}
	}
	for _, h := range t.hooks {
		if err := h(t.Tx, scope); err != nil {
			return fmt.Errorf("delete what hangs off %s: %w", scope, err)
		}
	}
	t.done = append(t.done, scope+"/")
	return nil
}

// ScopeExists reports whether the scope (an ARM ID) names something that
// exists as far as resource documents tell: a resource group or resource
// must have its document, and an extension resource or a collection never
// has one. A subscription, the root and whatever is not a resource ID are
// not documents: they are reported as existing (their owners check them).
func ScopeExists(r Reader, scope string) (bool, error) {
	id, err := ParseID(scope)
	if err != nil || id.ResourceGroup == "" && id.Namespace == "" {
		return true, nil
	}
	if id.Scope != nil || id.IsCollection() {
		return false, nil
	}
	return Exists(r, id)
}
