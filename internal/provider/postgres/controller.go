package postgres

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// The contract with the postgres controller, besides the Desired record:
//
//   - Every write that the controller must act on bumps Desired.Generation
//     and leaves the server's long-running operations in progress (only
//     with WithController). The ARM document then shows a transitional
//     properties.state: Provisioning, Updating, Starting, Stopping or
//     Restarting.
//   - Once the cluster matches generation g, the controller calls
//     Reconciled(tx, id, g) in a store transaction: if no newer write came
//     meanwhile, the server goes to Ready (or Stopped when
//     Desired.Running is false) and its operations succeed.
//   - If it cannot apply generation g, it calls Failed(tx, id, g, err):
//     the operations fail with err (an *arm.Error chooses the code) and the
//     state leaves its transitional value (Stopped after a failed start).
//   - A Desired record without an ARM document is a server being deleted:
//     the controller stops and removes the cluster, then calls
//     Deleted(tx, id), which removes the Desired record, frees the name and
//     the addresses, and lets the delete operation succeed.
//   - The configuration the cluster runs with is DefaultSettings()
//     overlaid with Desired.Settings.

// Reconciled records that the cluster of server id matches generation gen
// of its Desired record. It reports false, changing nothing, when the
// record has moved on (a newer write is pending) or is gone.
func Reconciled(tx store.Tx, id arm.ResourceID, gen int64) (bool, error) {
	d, ok, err := LoadDesired(tx, id)
	if err != nil || !ok || d.Generation != gen {
		return false, err
	}
	if err := setState(tx, id, steadyState(d.Running)); err != nil {
		return false, err
	}
	if err := arm.FinishOperations(tx, id, nil); err != nil {
		return false, err
	}
	return true, nil
}

// Recovering records that the cluster of server id, which should run and
// is Ready with no operation of the user's in flight, does not run and is
// being brought back (privlinkd started after its postmaster stopped, a
// machine reboot): the server reports Starting until Reconciled. It
// reports whether it changed the state.
func Recovering(tx store.Tx, id arm.ResourceID) (bool, error) {
	d, ok, err := LoadDesired(tx, id)
	if err != nil || !ok || !d.Running {
		return false, err
	}
	changed := false
	err = updateDoc(tx, id, func(doc *serverDoc) {
		if doc.Properties.State == stateReady {
			doc.Properties.State, changed = stateStarting, true
		}
	})
	return changed, err
}

// Failed records that the controller could not apply generation gen of
// server id: its pending operations fail with opErr (an *arm.Error
// chooses the code) and the server leaves its transitional state for the
// one its cluster is most likely in: Stopped after a failed start, Ready
// after a failed stop, else Ready or Stopped as Desired.Running says. The
// user can then try again. It reports false, changing nothing, when the
// record has moved on (a newer write is pending) or is gone.
func Failed(tx store.Tx, id arm.ResourceID, gen int64, opErr error) (bool, error) {
	if opErr == nil {
		opErr = errors.New("the postgres controller failed")
	}
	d, ok, err := LoadDesired(tx, id)
	if err != nil || !ok || d.Generation != gen {
		return false, err
	}
	err = updateDoc(tx, id, func(doc *serverDoc) {
		switch doc.Properties.State {
		case stateStarting:
			doc.Properties.State = stateStopped
		case stateStopping:
			doc.Properties.State = stateReady
		default:
			doc.Properties.State = steadyState(d.Running)
		}
	})
	if err != nil {
		return false, err
	}
	if err := arm.FinishOperations(tx, id, opErr); err != nil {
		return false, err
	}
	return true, nil
}

// Deleted completes the deletion of server id once the controller has
// removed its cluster: it removes the Desired record, releases the name
// and addresses (ReleaseName) and lets the delete operation succeed. It
// refuses while the server's ARM document exists (the server was not
// deleted) and does nothing when there is no Desired record.
func Deleted(tx store.Tx, id arm.ResourceID) error {
	d, ok, err := LoadDesired(tx, id)
	if err != nil || !ok {
		return err
	}
	exists, err := arm.Exists(tx, id)
	if err != nil {
		return err
	}
	if exists {
		return fmt.Errorf("server %s still exists; it is not being deleted", id)
	}
	return forget(tx, id, d.Name)
}

// forget removes a deleted server's Desired record and frees what it
// held, finishing its operations.
func forget(tx store.Tx, id arm.ResourceID, name string) error {
	if err := tx.Delete(DesiredKey(id)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("delete desired state of %s: %w", id, err)
	}
	if name == "" {
		name = id.Name()
	}
	if err := releaseName(tx, name, id.String()); err != nil {
		return err
	}
	return arm.FinishOperations(tx, id, nil)
}

// SetMinorVersion records the PostgreSQL minor version a server's cluster
// runs, as properties.minorVersion (e.g. "18" for 15.18).
func SetMinorVersion(tx store.Tx, id arm.ResourceID, minor string) error {
	return updateDoc(tx, id, func(doc *serverDoc) { doc.Properties.MinorVersion = minor })
}

// setState writes properties.state of server id; a missing document is
// left alone.
func setState(tx store.Tx, id arm.ResourceID, state string) error {
	return updateDoc(tx, id, func(doc *serverDoc) { doc.Properties.State = state })
}

func updateDoc(tx store.Tx, id arm.ResourceID, fn func(*serverDoc)) error {
	var doc serverDoc
	ok, err := arm.Load(tx, id, &doc)
	if err != nil || !ok {
		return err
	}
	fn(&doc)
	return arm.Save(tx, id, &doc)
}

// saveDesired writes a Desired record as a new generation.
func saveDesired(tx store.Tx, id arm.ResourceID, d *Desired) error {
	d.Generation++
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode desired state of %s: %w", id, err)
	}
	if err := tx.Put(DesiredKey(id), b); err != nil {
		return fmt.Errorf("save desired state of %s: %w", id, err)
	}
	return nil
}

// loadDesiredOf loads the Desired record of an existing server; its
// absence is an inconsistency in the store.
func loadDesiredOf(tx store.Tx, id arm.ResourceID) (*Desired, error) {
	d, ok, err := LoadDesired(tx, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("server %s has no desired state record", id)
	}
	if d.Settings == nil {
		d.Settings = map[string]string{}
	}
	return &d, nil
}
