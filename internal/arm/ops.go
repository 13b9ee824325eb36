package arm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/privlink/privlink/internal/store"
)

// Operation states, as ARM's pollers read them.
const (
	OpInProgress = "InProgress"
	OpSucceeded  = "Succeeded"
	OpFailed     = "Failed"
	OpCanceled   = "Canceled"
)

const (
	opRoot = "ops/"
	// opPending indexes unfinished operations by resource:
	// ops-pending/{lower-cased resource id}/{operation name}.
	opPending = "ops-pending"
)

func pendingKey(resourceID, name string) string {
	return opPending + strings.ToLower(resourceID) + "/" + name
}

// Operation is a long-running operation: what an Azure-AsyncOperation URL
// reports and what a Location URL waits for. Handlers start one in the
// transaction that records the desired state; whoever makes the world match
// (a controller, or the handler itself when there is nothing to wait for)
// finishes it.
type Operation struct {
	Name         string     `json:"name"`
	Status       string     `json:"status"`
	StartTime    time.Time  `json:"startTime"`
	EndTime      *time.Time `json:"endTime,omitempty"`
	Error        *Error     `json:"error,omitempty"`
	ErrorStatus  int        `json:"errorStatus,omitempty"`
	ResourceID   string     `json:"resourceId"`
	Subscription string     `json:"subscription"`
	Namespace    string     `json:"namespace"`
	Location     string     `json:"location"`
	// PercentComplete is how far an operation in progress is (0 to 100),
	// when its resource provider reports it (ReportProgress), as ARM's
	// asynchronous operation status carries it.
	PercentComplete *float64 `json:"percentComplete,omitempty"`
	// Result is what the Location URL answers once the operation
	// succeeded (an action's result, e.g. a NIC's effective routes); none
	// answers 204.
	Result json.RawMessage `json:"result,omitempty"`
}

// Done reports whether the operation reached a terminal state.
func (op *Operation) Done() bool { return op.Status != OpInProgress }

func (op *Operation) basePath() string {
	loc := op.Location
	if loc == "" {
		loc = "global"
	}
	return "/subscriptions/" + op.Subscription + "/providers/" + op.Namespace + "/locations/" + strings.ToLower(strings.ReplaceAll(loc, " ", ""))
}

// StatusPath is the path of the Azure-AsyncOperation URL.
func (op *Operation) StatusPath() string { return op.basePath() + "/operations/" + op.Name }

// ResultPath is the path of the Location URL.
func (op *Operation) ResultPath() string { return op.basePath() + "/operationResults/" + op.Name }

// StartOperationWithResult records, in tx, an operation on id that is
// already done and whose Location URL answers result (200): the shape of
// an action Azure makes long-running even when it is quick.
func StartOperationWithResult(tx store.Tx, id ResourceID, location string, result any) (*Operation, error) {
	b, err := json.Marshal(result)
	if err != nil {
		return nil, fmt.Errorf("encode the result of an operation on %s: %w", id, err)
	}
	op, err := StartOperation(tx, id, location, true)
	if err != nil {
		return nil, err
	}
	op.Result = b
	return op, putOp(tx, op)
}

// StartOperation records a new operation on id in tx. With done it is
// created Succeeded (the work is already complete); otherwise InProgress.
func StartOperation(tx store.Tx, id ResourceID, location string, done bool) (*Operation, error) {
	now := time.Now().UTC()
	op := &Operation{
		Name: uuid.NewString(), Status: OpInProgress, StartTime: now,
		ResourceID: id.String(), Subscription: id.Subscription, Namespace: id.Namespace, Location: location,
	}
	if op.Namespace == "" {
		op.Namespace = "Microsoft.Resources"
	}
	if done {
		op.Status, op.EndTime = OpSucceeded, &now
	} else if err := tx.Put(pendingKey(op.ResourceID, op.Name), nil); err != nil {
		return nil, fmt.Errorf("index operation %s: %w", op.Name, err)
	}
	if err := putOp(tx, op); err != nil {
		return nil, err
	}
	return op, nil
}

func putOp(tx store.Tx, op *Operation) error {
	b, err := json.Marshal(op)
	if err != nil {
		return fmt.Errorf("encode operation: %w", err)
	}
	if err := tx.Put(opRoot+op.Name, b); err != nil {
		return fmt.Errorf("save operation %s: %w", op.Name, err)
	}
	return nil
}

// GetOperation reads an operation by name.
func GetOperation(r Reader, name string) (*Operation, error) {
	kv, err := r.Get(opRoot + strings.ToLower(name))
	if err != nil {
		return nil, err
	}
	var op Operation
	if err := json.Unmarshal(kv.Value, &op); err != nil {
		return nil, fmt.Errorf("decode operation %s: %w", name, err)
	}
	return &op, nil
}

// FinishOperation marks an operation Succeeded (err == nil) or Failed with
// err's ARM error. Finishing a finished operation changes nothing.
func FinishOperation(ctx context.Context, st store.Store, name string, opErr error) error {
	_, err := st.Txn(ctx, func(tx store.Tx) error { return finishOp(tx, name, opErr) })
	if err != nil {
		return fmt.Errorf("finish operation %s: %w", name, err)
	}
	return nil
}

// FinishOperations finishes, in tx, every unfinished operation on the
// resource id: what a controller does once the world matches the resource.
func FinishOperations(tx store.Tx, id ResourceID, opErr error) error {
	return eachPending(tx, id, func(name string) error { return finishOp(tx, name, opErr) })
}

// ReportProgress records, in tx, that every unfinished operation on the
// resource id is percent (0 to 100) complete; the operation's status
// answers it as percentComplete.
func ReportProgress(tx store.Tx, id ResourceID, percent float64) error {
	percent = max(0, min(100, percent))
	return eachPending(tx, id, func(name string) error {
		op, err := GetOperation(tx, name)
		if err != nil || op.Done() || (op.PercentComplete != nil && *op.PercentComplete == percent) {
			return err
		}
		op.PercentComplete = &percent
		return putOp(tx, op)
	})
}

// eachPending calls fn with the name of every unfinished operation on
// the resource id (not its children's).
func eachPending(tx store.Tx, id ResourceID, fn func(name string) error) error {
	prefix := opPending + strings.ToLower(id.String()) + "/"
	kvs, err := tx.List(prefix)
	if err != nil {
		return fmt.Errorf("list operations of %s: %w", id, err)
	}
	for _, kv := range kvs {
		name := strings.TrimPrefix(kv.Key, prefix)
		if strings.Contains(name, "/") {
			continue // an operation of a child resource
		}
		if err := fn(name); err != nil {
			return err
		}
	}
	return nil
}

func finishOp(tx store.Tx, name string, opErr error) error {
	op, err := GetOperation(tx, name)
	if err != nil {
		return err
	}
	if op.Done() {
		return nil
	}
	now := time.Now().UTC()
	op.EndTime = &now
	op.Status = OpSucceeded
	if op.PercentComplete != nil && opErr == nil {
		done := 100.0
		op.PercentComplete = &done
	}
	if opErr != nil {
		ae, _ := AsError(opErr)
		op.Status, op.Error, op.ErrorStatus = OpFailed, ae, ae.Status
	}
	if err := tx.Delete(pendingKey(op.ResourceID, op.Name)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("unindex operation %s: %w", name, err)
	}
	return putOp(tx, op)
}

// serveOperation answers the status (Azure-AsyncOperation) and result
// (Location) URLs of an operation.
func (rt *Router) serveOperation(w http.ResponseWriter, r *http.Request, id ResourceID, kind string) {
	op, err := GetOperation(ReadOnly(r.Context(), rt.st), id.Names[len(id.Names)-1])
	if errors.Is(err, store.ErrNotFound) || (err == nil && !strings.EqualFold(op.Subscription, id.Subscription)) {
		rt.writeError(w, r, Errorf(http.StatusNotFound, "OperationNotFound", "The operation '%s' was not found.", id.Name()))
		return
	}
	if err != nil {
		rt.writeError(w, r, err)
		return
	}
	base := baseURL(r)
	if !op.Done() {
		setRetryAfter(w)
	}
	if strings.EqualFold(kind, "operationResults") {
		switch op.Status {
		case OpInProgress:
			w.Header().Set("Location", base+op.ResultPath())
			w.WriteHeader(http.StatusAccepted)
		case OpSucceeded:
			if len(op.Result) > 0 {
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(op.Result)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			e := op.Error
			if e == nil {
				e = Errorf(http.StatusBadRequest, "OperationFailed", "The operation failed.")
			}
			e.Status = op.ErrorStatus
			if e.Status == 0 {
				e.Status = http.StatusBadRequest
			}
			rt.writeError(w, r, e)
		}
		return
	}
	body := map[string]any{
		"id":        op.StatusPath(),
		"name":      op.Name,
		"status":    op.Status,
		"startTime": op.StartTime.Format(time.RFC3339Nano),
	}
	if op.EndTime != nil {
		body["endTime"] = op.EndTime.Format(time.RFC3339Nano)
	}
	if op.PercentComplete != nil {
		body["percentComplete"] = *op.PercentComplete
	}
	if op.Error != nil {
		body["error"] = op.Error
	}
	writeJSON(w, http.StatusOK, body)
}

// setRetryAfter asks pollers to come back soon. The Azure SDK reads
// Retry-After-Ms first; other clients read Retry-After.
func setRetryAfter(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Retry-After-Ms", "100")
}

// PruneOperations removes finished operations that ended before cutoff.
// Pollers give up long before (an hour is far beyond any SDK default), so
// the daemon prunes periodically to keep the store from growing.
func PruneOperations(ctx context.Context, st store.Store, cutoff time.Time) (int, error) {
	kvs, _, err := st.List(ctx, opRoot)
	if err != nil {
		return 0, fmt.Errorf("list operations: %w", err)
	}
	n := 0
	for _, kv := range kvs {
		var op Operation
		if json.Unmarshal(kv.Value, &op) != nil || !op.Done() || op.EndTime == nil || op.EndTime.After(cutoff) {
			continue
		}
		if err := st.Delete(ctx, kv.Key, kv.Revision); err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
			return n, fmt.Errorf("prune operation %s: %w", op.Name, err)
		}
		n++
	}
	return n, nil
}
