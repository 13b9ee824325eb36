package postgres

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

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
//   - Reconciled also records what the cluster runs with as
//     Desired.LastGood (settings, running or not).
//   - If it cannot apply generation g, it calls Failed(tx, id, g, err):
//     the operations fail with err (an *arm.Error chooses the code), the
//     Desired record goes back to LastGood (as a new generation, which the
//     controller then applies), the configurations the user set with it
//     too, and the state leaves its transitional value (Stopped after a
//     failed start). It does so when the postmaster does not come up with
//     the generation's settings, and for any generation the controller
//     could not apply within its bound (Desired.ChangedAt): no operation
//     stays in progress forever.
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
	if now := d.applied(); d.LastGood == nil || !d.LastGood.equal(now) {
		// The same generation: nothing for the controller to apply.
		d.LastGood = now
		if err := putDesired(tx, id, &d); err != nil {
			return false, err
		}
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
// chooses the code; its message then also says which settings went
// back), the Desired record returns to LastGood as a new generation, with
// the configurations the user set in the failed generation back at their
// last good values, and the server leaves its transitional state for the
// one LastGood says, Ready or Stopped (without LastGood: Stopped after a
// failed start, Ready after a failed stop, else as Desired.Running
// says). The controller makes the cluster match the restored record; the
// user can then try again. It reports false, changing
// nothing, when the record has moved on (a newer write is pending) or is
// gone.
func Failed(tx store.Tx, id arm.ResourceID, gen int64, opErr error) (bool, error) {
	if opErr == nil {
		opErr = errors.New("the postgres controller failed")
	}
	d, ok, err := LoadDesired(tx, id)
	if err != nil || !ok || d.Generation != gen {
		return false, err
	}
	restored, err := rollBack(tx, id, &d)
	if err != nil {
		return false, err
	}
	if ae := (*arm.Error)(nil); errors.As(opErr, &ae) && restored != "" {
		c := *ae
		c.Message = strings.TrimSpace(c.Message) + " The server was put back to its last good state: " + restored + "."
		opErr = &c
	}
	err = updateDoc(tx, id, func(doc *serverDoc) {
		state := steadyState(d.Running)
		if d.LastGood == nil {
			// Nothing known good to go back to: the state the cluster
			// is most likely in.
			switch doc.Properties.State {
			case stateStarting:
				state = stateStopped
			case stateStopping:
				state = stateReady
			}
		}
		doc.Properties.State = state
		if d.Version != "" && doc.Properties.Version != d.Version {
			// A failed major version upgrade: the old version serves.
			doc.Properties.Version, doc.Properties.MinorVersion = d.Version, d.MinorVersion
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

// rollBack returns d, in tx, to its LastGood settings and running state
// when they differ, as a new generation, and the configurations the user
// set with the failed generation to their last good values (removed
// where the last good value was the default). It returns what it changed
// ("shared_buffers from 66060288 back to 16384"), "" when nothing.
func rollBack(tx store.Tx, id arm.ResourceID, d *Desired) (string, error) {
	good := d.LastGood
	if good == nil || good.equal(d.applied()) {
		return "", nil
	}
	var changed []string
	for _, name := range slices.Sorted(maps.Keys(union(d.Settings, good.Settings))) {
		bad, had := d.Settings[name]
		was, ok := good.Settings[name]
		if had == ok && bad == was {
			continue
		}
		s, known := lookupSetting(name)
		if known {
			def := s.def
			if !had {
				bad = def
			}
			if !ok {
				was = def
			}
			if err := restoreOverride(tx, id, s, good.Settings); err != nil {
				return "", err
			}
		}
		changed = append(changed, fmt.Sprintf("%s from %s back to %s", name, bad, was))
	}
	if d.Running != good.Running {
		changed = append(changed, map[bool]string{true: "running", false: "stopped"}[good.Running])
	}
	if good.Version != "" && d.Version != good.Version {
		changed = append(changed, fmt.Sprintf("version from %s back to %s", d.Version, good.Version))
		d.Version, d.MinorVersion = good.Version, good.MinorVersion
	}
	d.Settings, d.Running = maps.Clone(good.Settings), good.Running
	if err := saveDesired(tx, id, d); err != nil {
		return "", err
	}
	return strings.Join(changed, ", "), nil
}

// union returns a map with the keys of a and b.
func union(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, b)
	return out
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
	d.ChangedAt = time.Now().UTC()
	return putDesired(tx, id, d)
}

// putDesired writes a Desired record as it is (the same generation).
func putDesired(tx store.Tx, id arm.ResourceID, d *Desired) error {
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
