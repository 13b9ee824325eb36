package privatelink

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// ConnectionsType is the resource type of the connections of k's
// resources ({k.Type}/privateEndpointConnections): GET, list, PUT (the
// owner's decision, synchronous) and DELETE.
func ConnectionsType(st store.Store, k *Kind, apiVersions []string) *arm.ResourceType {
	h := handlers{st: st, kind: k}
	return &arm.ResourceType{Type: k.Type + "/" + Segment, APIVersions: apiVersions,
		Get: h.get, List: h.list, Put: h.put, Delete: h.delete}
}

type handlers struct {
	st   store.Store
	kind *Kind
}

// header is what the connection handlers read of a target's document.
type header struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Location string `json:"location"`
}

func (h handlers) get(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var d connectionDoc
	ok, err := arm.Load(arm.ReadOnly(ctx, h.st), r.ID, &d)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, childNotFound(r.ID)
	}
	return arm.OK(d), nil
}

func (h handlers) list(ctx context.Context, r *arm.Request) ([]any, error) {
	docs, err := arm.LoadAll[connectionDoc](arm.ReadOnly(ctx, h.st), r.ID)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(docs))
	for i := range docs {
		out[i] = docs[i]
	}
	return out, nil
}

// put approves or rejects a connection. The router has checked the
// caller's privateEndpointConnections/write on the connection; only a
// principal who may also write the target decides, so an endpoint's owner
// never approves its own connection through a narrower role.
func (h handlers) put(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	status, description, actions, err := decodeConnectionState(r)
	if err != nil {
		return nil, err
	}
	var out connectionDoc
	_, err = h.st.Txn(ctx, func(tx store.Tx) error {
		_, targetID, err := h.loadTarget(tx, r)
		if err != nil {
			return err
		}
		ok, err := arm.Load(tx, r.ID, &out)
		if err != nil {
			return err
		}
		if !ok {
			return childNotFound(r.ID)
		}
		if err := r.CheckPreconditions(true, ""); err != nil {
			return err
		}
		next, err := h.kind.transition(out.Properties.State, status, description, actions, r.Caller)
		if err != nil {
			return err
		}
		out.Properties.State = next
		out.SystemData.Touch(r.Caller, time.Now().UTC())
		if err := arm.Save(tx, targetID.Child(Segment, out.Name), &out); err != nil {
			return err
		}
		return mirror(tx, targetID, out.Properties.PrivateEndpoint.ID, next)
	})
	if err != nil {
		return nil, err
	}
	// Synchronous: a PG reply with a polling header would make the SDK
	// poll it (reference §A.4).
	return arm.OK(out), nil
}

// delete removes a connection on the target's side: the endpoint shows
// Disconnected and may re-request it.
func (h handlers) delete(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var op *arm.Operation
	_, err := h.st.Txn(ctx, func(tx store.Tx) error {
		op = nil
		var cur connectionDoc
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, ""); err != nil {
			return err
		}
		if !exists {
			return nil
		}
		target, targetID, err := h.loadTarget(tx, r)
		if err != nil {
			return err
		}
		if err := arm.Delete(tx, r.ID); err != nil {
			return err
		}
		by, _ := r.Caller.Name()
		if by == "" {
			by = "the " + h.kind.Noun + "'s owner"
		}
		reason := fmt.Sprintf("The connection was deleted on %s '%s' by %s", h.kind.Noun, target.Name, by)
		if err := mirror(tx, targetID, cur.Properties.PrivateEndpoint.ID, Disconnected(reason)); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, target.Location, true)
		return err
	})
	if err != nil {
		return nil, err
	}
	if op == nil {
		return &arm.Response{Status: http.StatusNoContent}, nil
	}
	return &arm.Response{Status: http.StatusAccepted, Op: op}, nil
}

// loadTarget loads the connection's target inside a transaction (the
// router checked it exists, but it may have gone since) and lets only a
// principal who may write it go on.
func (h handlers) loadTarget(tx store.Tx, r *arm.Request) (*header, arm.ResourceID, error) {
	var t header
	ok, err := arm.Load(tx, r.ID.Parent(), &t)
	if err != nil {
		return nil, arm.ResourceID{}, err
	}
	if !ok {
		return nil, arm.ResourceID{}, arm.Errorf(http.StatusNotFound, "ParentResourceNotFound",
			"Can not perform requested operation on nested resource. Parent resource '%s' not found.", r.ID.Parent().Name())
	}
	id, err := arm.ParseID(t.ID)
	if err != nil {
		return nil, arm.ResourceID{}, fmt.Errorf("stored %s %s has a bad id %q: %w", h.kind.Title, r.ID.Parent(), t.ID, err)
	}
	if !h.kind.MayDecide(r.Caller, id) {
		c := r.Caller
		if c == nil {
			c = &arm.Caller{}
		}
		return nil, id, arm.Errorf(http.StatusForbidden, "AuthorizationFailed",
			"The client '%s' with object id '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid. Only a principal who may write the %s decides on its private endpoint connections.",
			c.ClientID, c.ObjectID, h.kind.writeAction(), id, h.kind.Noun)
	}
	return &t, id, nil
}

func (k *Kind) writeAction() string { return k.Type + "/write" }

// MayDecide reports whether the caller may write target, and so approve,
// reject or delete the connections of others to it.
func (k *Kind) MayDecide(c *arm.Caller, target arm.ResourceID) bool {
	return c != nil && c.Grants != nil && c.Grants.Allowed(k.writeAction(), target.String())
}
