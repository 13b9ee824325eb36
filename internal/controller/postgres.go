package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"strings"
	"time"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/pgserver"
	"github.com/privlink/privlink/internal/provider/postgres"
	"github.com/privlink/privlink/internal/store"
)

// Postgres runs a PostgreSQL cluster for each flexible server, in a
// service namespace of its own, as the server's Desired record says.
type Postgres struct {
	st   store.Store
	fab  *fabric.Fabric
	pg   *pgserver.Manager
	log  *slog.Logger
	loop *Loop
	// started is when the controller was made; limit bounds the time it
	// spends on one generation of a server (see overdue).
	started time.Time
	limit   time.Duration
}

// NewPostgres returns the controller.
func NewPostgres(st store.Store, fab *fabric.Fabric, pg *pgserver.Manager, log *slog.Logger) *Postgres {
	c := &Postgres{st: st, fab: fab, pg: pg, log: log, started: time.Now(), limit: reconcileLimit}
	c.loop = &Loop{Name: "postgres", Prefixes: []string{postgres.DesiredPrefix + "/"}, Items: c.items,
		Resync: c.resync, ResyncEvery: 30 * time.Second, Reconcile: c.reconcile, Store: st, Log: log}
	return c
}

// Run supervises the clusters and reconciles until ctx ends. Postmasters
// keep running after it returns: established sessions outlive privlinkd.
func (c *Postgres) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.pg.Run(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("PostgreSQL supervisor stopped", "err", err)
		}
	}()
	c.markRecovering(ctx)
	err := c.loop.Run(ctx)
	<-done
	return err
}

// markRecovering makes every server that should run, and whose postmaster
// does not (privlinkd starts after a reboot, or after the postmasters were
// stopped), report Starting until the loop has brought it back, rather
// than the Ready it had when privlinkd stopped. Failures only cost the
// honesty of the state: they are logged.
func (c *Postgres) markRecovering(ctx context.Context) {
	kvs, _, err := c.st.List(ctx, postgres.DesiredPrefix+"/")
	if err != nil {
		c.log.Warn("cannot list servers to mark those coming back", "err", err)
		return
	}
	for _, kv := range kvs {
		var d postgres.Desired
		if json.Unmarshal(kv.Value, &d) != nil || !d.Running {
			continue
		}
		id, err := arm.ParseID(d.ID)
		if err != nil || c.pg.Running(FabricID(id)) {
			continue
		}
		var changed bool
		if _, err := c.st.Txn(ctx, func(tx store.Tx) error {
			var err error
			changed, err = postgres.Recovering(tx, id)
			return err
		}); err != nil {
			c.log.Warn("cannot mark a server as coming back", "server", d.Name, "err", err)
			continue
		}
		if changed {
			c.log.Info("server is not running: starting it", "server", d.Name)
		}
	}
}

func (c *Postgres) items(key string, _ []byte) []string {
	id, ok := strings.CutPrefix(key, postgres.DesiredPrefix)
	if !ok || id == "" {
		return nil
	}
	return []string{id}
}

// resync lists every server and removes service namespaces no server
// wants (their clusters are gone with their Desired records).
func (c *Postgres) resync(ctx context.Context) ([]string, error) {
	kvs, _, err := c.st.List(ctx, postgres.DesiredPrefix+"/")
	if err != nil {
		return nil, err
	}
	items := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		items = append(items, c.items(kv.Key, kv.Value)...)
	}
	return items, nil
}

func (c *Postgres) reconcile(ctx context.Context, item string) (time.Duration, error) {
	id, err := arm.ParseID(item)
	if err != nil {
		return 0, fmt.Errorf("bad item %q: %w", item, err)
	}
	rd := arm.ReadOnly(ctx, c.st)
	d, ok, err := postgres.LoadDesired(rd, id)
	if err != nil || !ok {
		return 0, err
	}
	fid := FabricID(id)
	exists, err := arm.Exists(rd, id)
	if err != nil {
		return 0, err
	}
	if !exists {
		// Being deleted: stop and remove the cluster, then its namespace,
		// then free the name and addresses.
		if err := c.pg.Delete(ctx, fid); err != nil {
			return 0, err
		}
		if err := c.fab.DeleteService(fid); err != nil {
			return 0, err
		}
		_, err := c.st.Txn(ctx, func(tx store.Tx) error { return postgres.Deleted(tx, id) })
		if err == nil {
			c.log.Info("deleted server", "server", d.Name)
		}
		return 0, err
	}
	if err := c.fab.EnsureService(fabric.ServiceSpec{ID: fid, Address: netip.PrefixFrom(d.ServiceAddr, 32)}); err != nil {
		return c.retry(ctx, id, &d, fmt.Errorf("server %s: %w", d.Name, err))
	}
	var status pgserver.Status
	if from, ok := c.pg.DataVersion(fid); ok && from != d.Version && d.Running {
		status, err = c.upgrade(ctx, id, fid, &d, from)
	} else {
		status, err = c.pg.Ensure(ctx, spec(fid, &d, d.Settings, d.Running))
	}
	if err != nil {
		var uerr *pgserver.UpgradeError
		if errors.As(err, &uerr) {
			// The old cluster serves: fail the operation, the server
			// back on its version (postgres.Failed), as it runs.
			return 0, c.fail(ctx, id, &d, postgres.UpgradeFailure(d.Name, uerr.From, uerr.To, uerr.Reason), false)
		}
		var verr *pgserver.VersionError
		switch {
		case errors.As(err, &verr):
			// Nothing will make it work: fail the operation, clearly.
			return 0, c.fail(ctx, id, &d, arm.BadRequest("UnsupportedVersion", "properties.version", "%v", err), false)
		case errors.Is(err, pgserver.ErrStartFailed), errors.Is(err, pgserver.ErrInvalid):
			// The same spec fails the same way: back to the last good one.
			return c.rollBack(ctx, id, fid, &d, err)
		}
		return c.retry(ctx, id, &d, fmt.Errorf("server %s: %w", d.Name, err))
	}
	want := pgserver.StateStopped
	if d.Running {
		want = pgserver.StateReady
	}
	if status.State != want {
		// Starting or recovering: look again shortly.
		return 500 * time.Millisecond, c.failOverdue(ctx, id, &d, fmt.Errorf("it is %s, not %s", status.State, want))
	}
	_, err = c.st.Txn(ctx, func(tx store.Tx) error {
		_, err := postgres.Reconciled(tx, id, d.Generation)
		return err
	})
	return 0, err
}

// upgrade runs the major version upgrade of server id from the version
// its data holds to d.Version, reporting its progress on the server's
// operations (at most once a second and on each step).
func (c *Postgres) upgrade(ctx context.Context, id arm.ResourceID, fid string, d *postgres.Desired, from string) (pgserver.Status, error) {
	c.log.Info("major version upgrade", "server", d.Name, "from", from, "to", d.Version)
	var last pgserver.UpgradeStep
	var lastAt time.Time
	return c.pg.Upgrade(ctx, spec(fid, d, d.Settings, true), func(s pgserver.UpgradeStep) {
		if s == last || (s.Step == last.Step && time.Since(lastAt) < time.Second) {
			return
		}
		last, lastAt = s, time.Now()
		c.log.Info("major version upgrade progress", "server", d.Name, "step", s.Step, "percent", s.Percent)
		if _, err := c.st.Txn(ctx, func(tx store.Tx) error { return postgres.ReportUpgrade(tx, id, s.Percent) }); err != nil {
			c.log.Warn("cannot record the upgrade's progress", "server", d.Name, "err", err)
		}
	})
}

// spec is the pgserver spec of a server with the given settings and
// running state (those of d, or its last good ones).
func spec(fid string, d *postgres.Desired, settings map[string]string, running bool) pgserver.Spec {
	all := postgres.DefaultSettings()
	maps.Copy(all, settings)
	return pgserver.Spec{
		ID: fid, Name: d.Name, Version: d.Version, Addr: d.ServiceAddr,
		AdminLogin: d.AdminLogin, AdminVerifier: d.AdminVerifier,
		Settings: all, Running: running, RestartGeneration: d.RestartGeneration,
		Entra: entraSpec(d.Entra),
	}
}

// entraSpec is pgserver's form of a server's Entra authentication.
func entraSpec(e *postgres.EntraAuth) *pgserver.EntraSpec {
	if e == nil {
		return nil
	}
	out := &pgserver.EntraSpec{TenantID: e.TenantID, PasswordAuth: e.PasswordAuth}
	for _, a := range e.Admins {
		out.Admins = append(out.Admins, pgserver.EntraPrincipal{
			Name: a.PrincipalName, ObjectID: a.ObjectID, TenantID: a.TenantID, Type: a.PrincipalType,
		})
	}
	return out
}

// rollBack handles a generation whose cluster does not come up (or whose
// settings PostgreSQL refuses): the cluster is brought back to the last
// good settings first, then the generation fails (postgres.Failed, which
// restores the Desired record and the configurations), so that when the
// user's poller reports the failure the server runs as before. The
// restored record is a new generation, which the loop applies next.
func (c *Postgres) rollBack(ctx context.Context, id arm.ResourceID, fid string, d *postgres.Desired, cause error) (time.Duration, error) {
	c.log.Warn("server does not come up with its new settings; going back to the last good ones", "server", d.Name, "err", cause)
	back := false
	if good := d.LastGood; good != nil && (good.Running != d.Running || !maps.Equal(good.Settings, d.Settings)) {
		if _, err := c.pg.Ensure(ctx, spec(fid, d, good.Settings, good.Running)); err != nil {
			c.log.Error("server does not come up with its last good settings either", "server", d.Name, "err", err)
		} else {
			back = true
		}
	}
	var opErr error
	start, settings := (*pgserver.StartError)(nil), (*pgserver.SettingsError)(nil)
	switch {
	case errors.As(cause, &start):
		opErr = postgres.StartFailure(d.Name, start.Reason)
	case errors.As(cause, &settings):
		opErr = postgres.SettingsRefused(d.Name, settings.Reason)
	default:
		opErr = postgres.SettingsRefused(d.Name, "privlinkd refuses the server's spec; its log has the details")
	}
	if err := c.fail(ctx, id, d, opErr, !back); err != nil {
		return 0, err
	}
	if !back {
		return 0, cause // retried with back-off
	}
	return 0, nil
}

// reconcileLimit bounds how long the controller tries to apply one
// generation of a server before it fails the server's operations; it is
// longer than a start (pgserver's bound is 2 minutes) and a stop.
const reconcileLimit = 5 * time.Minute

// retry returns cause, for the loop to retry with back-off, once
// failOverdue has looked at the generation.
func (c *Postgres) retry(ctx context.Context, id arm.ResourceID, d *postgres.Desired, cause error) (time.Duration, error) {
	return 0, errors.Join(cause, c.failOverdue(ctx, id, d, cause))
}

// failOverdue fails generation d (postgres.Failed, with cause as the
// last error) once the controller has tried to apply it for longer than
// its limit, counted from privlinkd's start at the earliest, so that no
// operation stays in progress forever; before that it does nothing.
func (c *Postgres) failOverdue(ctx context.Context, id arm.ResourceID, d *postgres.Desired, cause error) error {
	since := d.ChangedAt
	if since.Before(c.started) {
		since = c.started
	}
	if time.Since(since) < c.limit {
		return nil
	}
	c.log.Error("server did not reach its desired state in time; failing its operations", "server", d.Name, "limit", c.limit, "err", cause)
	return c.fail(ctx, id, d, postgres.Timeout(d.Name, c.limit), true)
}

// fail fails generation d of server id with opErr (postgres.Failed);
// with down, the cluster is known not to run as it should, and a server
// that should run reports Starting until the controller has it back.
func (c *Postgres) fail(ctx context.Context, id arm.ResourceID, d *postgres.Desired, opErr error, down bool) error {
	_, err := c.st.Txn(ctx, func(tx store.Tx) error {
		ok, err := postgres.Failed(tx, id, d.Generation, opErr)
		if err != nil || !ok || !down {
			return err
		}
		_, err = postgres.Recovering(tx, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("server %s: record the failure: %w", d.Name, err)
	}
	return nil
}
