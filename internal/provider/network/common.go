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
