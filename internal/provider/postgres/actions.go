package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// The start, stop and restart actions. Each answers only 202 with the
// polling headers (the SDK refuses anything else), changes the Desired
// record and leaves the server in Starting, Stopping or Restarting until
// the controller has acted. Static configurations set since the last
// start take effect with a start or a restart (configurations.go).

func (p *Provider) startServer(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	return p.action(ctx, r, func(tx store.Tx, id arm.ResourceID, doc *serverDoc, d *Desired) (string, error) {
		if st := doc.Properties.State; st != stateStopped {
			return "", arm.Conflict(codeNotStopped,
				"Start Server can only be performed on Stopped servers. Server Name = %s, Current Server State = %s", doc.Name, st)
		}
		d.Running = true
		return stateStarting, applyStaticSettings(tx, id, d)
	})
}

func (p *Provider) stopServer(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	return p.action(ctx, r, func(tx store.Tx, id arm.ResourceID, doc *serverDoc, d *Desired) (string, error) {
		if err := requireReady(doc); err != nil {
			return "", err
		}
		d.Running = false
		return stateStopping, nil
	})
}

func (p *Provider) restartServer(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in restartIn
	if len(strings.TrimSpace(string(r.Body))) > 0 {
		if err := json.Unmarshal(r.Body, &in); err != nil {
			return nil, arm.InvalidRequestContent(err)
		}
	}
	return p.action(ctx, r, func(tx store.Tx, id arm.ResourceID, doc *serverDoc, d *Desired) (string, error) {
		f := features{failover: in.RestartWithFailover != nil && *in.RestartWithFailover || str(in.FailoverMode) != ""}
		if err := refusedFeature(tx, id, f); err != nil {
			return "", err
		}
		if err := requireReady(doc); err != nil {
			return "", err
		}
		d.RestartGeneration++
		return stateRestarting, applyStaticSettings(tx, id, d)
	})
}

// requireReady is Azure's rule for stop and restart.
func requireReady(doc *serverDoc) error {
	if st := doc.Properties.State; st != stateReady {
		return arm.Conflict(codeNotReady,
			"Restart or Stop Server can only be performed on Started servers. Server Name = %s, Current Server State = %s", doc.Name, st)
	}
	return nil
}

// action runs one server action in a transaction: apply checks the
// server's state, changes the Desired record and names the transitional
// state; the answer is 202 with the action's operation.
func (p *Provider) action(ctx context.Context, r *arm.Request,
	apply func(tx store.Tx, id arm.ResourceID, doc *serverDoc, d *Desired) (string, error)) (*arm.Response, error) {
	var op *arm.Operation
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		op = nil
		var doc serverDoc
		ok, err := arm.Load(tx, r.ID, &doc)
		if err != nil {
			return err
		}
		if !ok {
			return errServerNotFound(r.ID)
		}
		id, err := arm.ParseID(doc.ID)
		if err != nil {
			return fmt.Errorf("stored server %s has a bad id %q: %w", r.ID, doc.ID, err)
		}
		d, err := loadDesiredOf(tx, id)
		if err != nil {
			return err
		}
		transitional, err := apply(tx, id, &doc, d)
		if err != nil {
			return err
		}
		if err := saveDesired(tx, id, d); err != nil {
			return err
		}
		state, done := p.settle(transitional, steadyState(d.Running))
		doc.Properties.State = state
		if err := arm.Save(tx, id, &doc); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, id, doc.Location, done)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &arm.Response{Status: http.StatusAccepted, Op: op}, nil
}
