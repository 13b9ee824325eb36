package arm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/privlink/privlink/internal/store"
)

// Resource documents (the JSON a GET returns, less what is computed at
// read time) are stored one per key:
//
//	arm/{subscription}/{namespace}:{type}[:{childType}...]/{resourceGroup}/{name}[/{childName}...]
//
// all lower-cased, so lookups are case-insensitive as in ARM. The type comes
// before the group so that one prefix lists a type across a subscription,
// another lists it in one group, and another the children of one parent.

const docRoot = "arm/"

// Reader is what the read helpers need. store.Tx is one; ReadOnly adapts a
// store.Store outside a transaction.
type Reader interface {
	Get(key string) (store.KV, error)
	List(prefix string) ([]store.KV, error)
}

type ctxReader struct {
	ctx context.Context
	st  store.Store
}

func (r ctxReader) Get(key string) (store.KV, error) { return r.st.Get(r.ctx, key) }
func (r ctxReader) List(prefix string) ([]store.KV, error) {
	kvs, _, err := r.st.List(r.ctx, prefix)
	return kvs, err
}

// ReadOnly returns a Reader over st for reads outside a transaction.
func ReadOnly(ctx context.Context, st store.Store) Reader { return ctxReader{ctx, st} }

func typeKey(id ResourceID) string {
	if id.Namespace == "" || isRGCollection(id) {
		return "microsoft.resources:resourcegroups"
	}
	return strings.ToLower(id.Namespace + ":" + strings.Join(id.Types, ":"))
}

func rgKey(id ResourceID) string {
	if id.ResourceGroup == "" {
		return "-"
	}
	return strings.ToLower(id.ResourceGroup)
}

// DocKey returns the store key of a resource's document.
func DocKey(id ResourceID) string {
	if id.Namespace == "" { // a resource group
		return docRoot + strings.ToLower(id.Subscription) + "/microsoft.resources:resourcegroups/" + strings.ToLower(id.ResourceGroup)
	}
	return docRoot + strings.ToLower(id.Subscription) + "/" + typeKey(id) + "/" + rgKey(id) + "/" + strings.ToLower(strings.Join(id.Names, "/"))
}

// CollectionPrefix returns the key prefix of a collection's documents: with
// a resource group in coll, that group's (or that parent's) members; without
// one, the type's members across the subscription.
func CollectionPrefix(coll ResourceID) string {
	p := docRoot + strings.ToLower(coll.Subscription) + "/" + typeKey(coll) + "/"
	if isRGCollection(coll) {
		return p // resource groups
	}
	if coll.ResourceGroup == "" {
		return p
	}
	p += rgKey(coll) + "/"
	names := coll.Names
	if !coll.IsCollection() && len(names) > 0 {
		names = names[:len(names)-1]
	}
	for _, n := range names {
		p += strings.ToLower(n) + "/"
	}
	return p
}

// Load reads the document of id into v. It reports false when there is none.
func Load(r Reader, id ResourceID, v any) (bool, error) {
	kv, err := r.Get(DocKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("load %s: %w", id, err)
	}
	if err := json.Unmarshal(kv.Value, v); err != nil {
		return false, fmt.Errorf("decode stored %s: %w", id, err)
	}
	return true, nil
}

// Exists reports whether id has a document.
func Exists(r Reader, id ResourceID) (bool, error) {
	_, err := r.Get(DocKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("load %s: %w", id, err)
	}
	return true, nil
}

// Save writes v as the document of id.
func Save(tx store.Tx, id ResourceID, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", id, err)
	}
	if err := tx.Put(DocKey(id), b); err != nil {
		return fmt.Errorf("save %s: %w", id, err)
	}
	return nil
}

// LoadAll decodes every document of a collection into values of type T,
// in key order.
func LoadAll[T any](r Reader, coll ResourceID) ([]T, error) {
	kvs, err := r.List(CollectionPrefix(coll))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", coll, err)
	}
	out := make([]T, 0, len(kvs))
	for _, kv := range kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, fmt.Errorf("decode stored %s: %w", kv.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// Delete removes the document of id and the documents of all its
// descendants (child resources of any type). Missing documents are fine.
// On the daemon's store, deleting a document also removes, in tx, what
// hangs off the resource as a scope, role assignments at and under it
// (WithScopeHooks).
func Delete(tx store.Tx, id ResourceID) error {
	if err := tx.Delete(DocKey(id)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	desc, err := descendants(tx, id)
	if err != nil {
		return err
	}
	for _, k := range desc {
		if err := tx.Delete(k); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete %s: %w", k, err)
		}
	}
	return nil
}

// descendants lists the keys of every child document of id.
func descendants(r Reader, id ResourceID) ([]string, error) {
	var prefix string
	if id.Namespace == "" { // a resource group: everything in it
		prefix = docRoot + strings.ToLower(id.Subscription) + "/"
	} else {
		prefix = docRoot + strings.ToLower(id.Subscription) + "/" + typeKey(id) + ":"
	}
	kvs, err := r.List(prefix)
	if err != nil {
		return nil, fmt.Errorf("list children of %s: %w", id, err)
	}
	rg := rgKey(id)
	names := strings.ToLower(strings.Join(id.Names, "/")) + "/"
	var keys []string
	for _, kv := range kvs {
		rest := strings.TrimPrefix(kv.Key, prefix)
		// rest: [childTypes/]{rg}/{names...}
		parts := strings.SplitN(rest, "/", 3)
		if id.Namespace == "" {
			if len(parts) >= 2 && parts[1] == rg && !strings.HasPrefix(parts[0], "microsoft.resources:resourcegroups") {
				keys = append(keys, kv.Key)
			}
			continue
		}
		if len(parts) == 3 && parts[1] == rg && strings.HasPrefix(parts[2], names) {
			keys = append(keys, kv.Key)
		}
	}
	return keys, nil
}

// NewETag returns a fresh weak ETag in the network RP's style.
func NewETag() string { return `W/"` + uuid.NewString() + `"` }

func isRGCollection(id ResourceID) bool {
	return strings.EqualFold(id.Namespace, "Microsoft.Resources") && len(id.Types) == 1 && strings.EqualFold(id.Types[0], "resourceGroups")
}

// AllDocs returns the documents of every top-level resource in a
// subscription, or in one of its resource groups when rg is not empty
// (resource groups themselves excluded).
func AllDocs(r Reader, subscription, rg string) ([][]byte, error) {
	prefix := docRoot + strings.ToLower(subscription) + "/"
	kvs, err := r.List(prefix)
	if err != nil {
		return nil, fmt.Errorf("list resources of %s: %w", subscription, err)
	}
	var out [][]byte
	for _, kv := range kvs {
		parts := strings.SplitN(strings.TrimPrefix(kv.Key, prefix), "/", 3)
		if len(parts) < 3 || strings.Count(parts[0], ":") != 1 || strings.HasPrefix(parts[0], "microsoft.resources:") {
			continue
		}
		if rg != "" && parts[1] != strings.ToLower(rg) {
			continue
		}
		out = append(out, kv.Value)
	}
	return out, nil
}

// GroupMembers returns the IDs of the top-level resources in a resource
// group.
func GroupMembers(r Reader, rg ResourceID) ([]ResourceID, error) {
	docs, err := AllDocs(r, rg.Subscription, rg.ResourceGroup)
	if err != nil {
		return nil, err
	}
	ids := make([]ResourceID, 0, len(docs))
	for _, d := range docs {
		var v struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(d, &v); err != nil {
			return nil, fmt.Errorf("decode stored document: %w", err)
		}
		id, err := ParseID(v.ID)
		if err != nil {
			return nil, fmt.Errorf("stored document has a bad id %q: %w", v.ID, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// ParseDocKey recovers the (lower-cased) resource ID of a document key. It
// reports false for keys that are not resource documents.
func ParseDocKey(key string) (ResourceID, bool) {
	rest, ok := strings.CutPrefix(key, docRoot)
	if !ok {
		return ResourceID{}, false
	}
	p := strings.Split(rest, "/")
	if len(p) < 3 {
		return ResourceID{}, false
	}
	id := ResourceID{Subscription: p[0]}
	if p[1] == "microsoft.resources:resourcegroups" {
		id.ResourceGroup = p[2]
		return id, len(p) == 3
	}
	types := strings.Split(p[1], ":")
	if len(types) < 2 || len(p) != 3+len(types)-1 {
		return ResourceID{}, false
	}
	if p[2] != "-" {
		id.ResourceGroup = p[2]
	}
	id.Namespace, id.Types, id.Names = types[0], types[1:], p[3:]
	return id, true
}

// ChildCollection returns the ID of the collection of id's children of
// type typ, e.g. a virtual network's subnets.
func (id ResourceID) ChildCollection(typ string) ResourceID {
	c := id.clone()
	c.Types = append(c.Types, typ)
	return c
}
