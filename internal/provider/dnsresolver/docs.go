package dnsresolver

import (
	"context"
	"fmt"
	"net/http"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// meta points at the envelope fields of a stored document.
type meta struct {
	etag     **string
	tags     *map[string]*string
	location **string
}

// patchTags serves a PATCH whose only property is tags: the body decoded
// into in, the document updated and shown through view.
func patchTags[T any](ctx context.Context, st store.Store, r *arm.Request, in any, tags func() map[string]*string,
	metaOf func(*T) meta, view func(arm.Reader, T) T) (*arm.Response, error) {
	if err := r.Decode(in); err != nil {
		return nil, err
	}
	if err := arm.ValidateTags(tags()); err != nil {
		return nil, err
	}
	var (
		body T
		op   *arm.Operation
	)
	_, err := st.Txn(ctx, func(tx store.Tx) error {
		var cur T
		m := metaOf(&cur)
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if !exists {
			return arm.NotFound(r.ID)
		}
		if err := r.CheckPreconditions(true, str(*m.etag)); err != nil {
			return err
		}
		if t := tags(); t != nil {
			*m.tags = t
		}
		*m.etag = ptr(arm.NewETag())
		if err := arm.Save(tx, r.ID, cur); err != nil {
			return err
		}
		body = view(tx, cur)
		op, err = arm.StartOperation(tx, r.ID, str(*m.location), true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("patch %s: %w", r.ID, err)
	}
	return &arm.Response{Status: http.StatusOK, Body: body, Op: op}, nil
}

// deleteDoc serves a DELETE of one document; refuse, when not nil, may
// refuse it inside the transaction.
func deleteDoc[T any](ctx context.Context, st store.Store, r *arm.Request, metaOf func(*T) meta, refuse func(store.Tx, *T) error) (*arm.Response, error) {
	var op *arm.Operation
	_, err := st.Txn(ctx, func(tx store.Tx) error {
		op = nil
		var cur T
		m := metaOf(&cur)
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, str(*m.etag)); err != nil || !exists {
			return err
		}
		if refuse != nil {
			if err := refuse(tx, &cur); err != nil {
				return err
			}
		}
		if err := arm.Delete(tx, r.ID); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, str(*m.location), true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete %s: %w", r.ID, err)
	}
	if op == nil {
		return &arm.Response{Status: http.StatusNoContent}, nil
	}
	return &arm.Response{Status: http.StatusAccepted, Op: op}, nil
}
