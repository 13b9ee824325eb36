package network

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// patchTags serves an updateTags PATCH ({"tags": {...}}): synchronous, it
// replaces the tags when the body has them and leaves them otherwise.
// apply loads, changes and saves the resource inside the transaction.
func (p *Provider) patchTags(ctx context.Context, r *arm.Request, apply func(tx store.Tx, tags map[string]*string, set bool) error) error {
	var in struct {
		Tags map[string]*string `json:"tags"`
	}
	if err := r.Decode(&in); err != nil {
		return err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &raw); err != nil {
		return arm.InvalidRequestContent(err)
	}
	_, set := raw["tags"]
	if err := arm.ValidateTags(in.Tags); err != nil {
		return err
	}
	_, err := p.st.Txn(ctx, func(tx store.Tx) error { return apply(tx, in.Tags, set) })
	return err
}

// loadForPatch loads a top-level resource for a PATCH into v and applies
// If-Match / If-None-Match against the etag it then has.
func loadForPatch(tx store.Tx, r *arm.Request, v any, etag func() string) error {
	ok, err := arm.Load(tx, r.ID, v)
	if err != nil {
		return err
	}
	if !ok {
		return arm.NotFound(r.ID)
	}
	return r.CheckPreconditions(true, etag())
}

// loadParent loads the parent of a child resource into v inside a
// transaction; the router checked it exists, but it may have gone since.
func loadParent(r arm.Reader, id arm.ResourceID, v any) error {
	ok, err := arm.Load(r, id, v)
	if err != nil {
		return err
	}
	if !ok {
		return arm.Errorf(http.StatusNotFound, "ParentResourceNotFound",
			"Can not perform requested operation on nested resource. Parent resource '%s' not found.", id.Name())
	}
	return nil
}

// touch gives a parent resource a new etag because one of its children
// changed: in Azure the parent is one entity with its inline children.
func touch(tx store.Tx, id arm.ResourceID) error {
	var doc map[string]json.RawMessage
	ok, err := arm.Load(tx, id, &doc)
	if err != nil || !ok {
		return err
	}
	etag, err := json.Marshal(arm.NewETag())
	if err != nil {
		return fmt.Errorf("encode etag: %w", err)
	}
	doc["etag"] = etag
	return arm.Save(tx, id, doc)
}

// deleteChild is the DELETE of a child resource whose parent reports it
// inline (a route, a security rule, a peering): the child's document goes
// (202), its parent gets a new etag, and a missing child answers 204.
func (p *Provider) deleteChild(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	return p.deleteChildIf(ctx, r, nil)
}

// deleteChildIf is deleteChild with a check of the existing child (inside
// the transaction, before anything changes) that can refuse the delete;
// nil checks nothing.
func (p *Provider) deleteChildIf(ctx context.Context, r *arm.Request, check func(tx store.Tx, id arm.ResourceID) error) (*arm.Response, error) {
	var op *arm.Operation
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		op = nil
		parentID := r.ID.Parent()
		var parent struct {
			Location *string `json:"location"`
		}
		if err := loadParent(tx, parentID, &parent); err != nil {
			return err
		}
		var cur struct {
			Etag *string `json:"etag"`
		}
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, str(cur.Etag)); err != nil {
			return err
		}
		if !exists {
			return nil
		}
		if check != nil {
			if err := check(tx, r.ID); err != nil {
				return err
			}
		}
		if err := arm.Delete(tx, r.ID); err != nil {
			return err
		}
		if err := touch(tx, parentID); err != nil {
			return err
		}
		_, done := p.settle(r.ID, true)
		op, err = arm.StartOperation(tx, r.ID, str(parent.Location), done)
		return err
	})
	if err != nil {
		return nil, err
	}
	if op == nil {
		return noContent(), nil
	}
	return deleted(op), nil
}
