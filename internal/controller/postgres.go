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
}

// NewPostgres returns the controller.
func NewPostgres(st store.Store, fab *fabric.Fabric, pg *pgserver.Manager, log *slog.Logger) *Postgres {
	c := &Postgres{st: st, fab: fab, pg: pg, log: log}
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
		return 0, err
	}
	settings := postgres.DefaultSettings()
	maps.Copy(settings, d.Settings)
	status, err := c.pg.Ensure(ctx, pgserver.Spec{
		ID: fid, Name: d.Name, Version: d.Version, Addr: d.ServiceAddr,
		AdminLogin: d.AdminLogin, AdminVerifier: d.AdminVerifier,
		Settings: settings, Running: d.Running, RestartGeneration: d.RestartGeneration,
	})
	if err != nil {
		var verr *pgserver.VersionError
		if errors.As(err, &verr) {
			// Nothing will make it work: fail the operation, clearly.
			_, terr := c.st.Txn(ctx, func(tx store.Tx) error {
				_, err := postgres.Failed(tx, id, d.Generation, arm.BadRequest("UnsupportedVersion", "properties.version", "%v", err))
				return err
			})
			return 0, terr
		}
		return 0, fmt.Errorf("server %s: %w", d.Name, err)
	}
	want := pgserver.StateStopped
	if d.Running {
		want = pgserver.StateReady
	}
	if status.State != want {
		// Starting or recovering: look again shortly.
		return 500 * time.Millisecond, nil
	}
	_, err = c.st.Txn(ctx, func(tx store.Tx) error {
		_, err := postgres.Reconciled(tx, id, d.Generation)
		return err
	})
	return 0, err
}
