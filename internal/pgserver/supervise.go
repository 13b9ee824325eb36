package pgserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Supervision timing.
const (
	// superviseInterval is how often Run looks at every postmaster that
	// should run. A postmaster this Manager started is looked at as soon
	// as it exits; an adopted one within this interval.
	superviseInterval = time.Second
	// restartBackoffMax bounds the wait between failed restarts, which
	// doubles from one second.
	restartBackoffMax = 30 * time.Second
	// stableAfter is how long a restarted postmaster must run before its
	// failures are forgotten.
	stableAfter = time.Minute
)

// Run supervises every server that should run (the last Ensure said
// Running), and its pgbouncer while pgbouncer.enabled (and gives databases
// created since the auth function the pooler needs): a postmaster that exits, or that runs in a namespace that
// was replaced, is restarted at once, then after backoffs of 1s, 2s, 4s
// ... up to 30s while restarts fail. Run blocks until ctx ends or the
// Manager is closed, waits for restarts in flight, and returns nil;
// postmasters keep running. It fails when Run is already running or the
// Manager is closed.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return fmt.Errorf("pgserver: %w", net.ErrClosed)
	case m.running:
		m.mu.Unlock()
		return errors.New("pgserver: Run is already running")
	}
	m.running = true
	m.runWG.Add(1)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.running = false
		m.mu.Unlock()
		m.runWG.Done()
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-m.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var restarts sync.WaitGroup
	defer restarts.Wait()
	t := time.NewTicker(superviseInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-m.wake:
		}
		m.mu.Lock()
		clusters := make([]*cluster, 0, len(m.clusters))
		for _, c := range m.clusters {
			clusters = append(clusters, c)
		}
		m.mu.Unlock()
		for _, c := range clusters {
			if !c.mu.TryLock() {
				continue // an operation is under way; it leaves things right
			}
			pm, pooler, newDBs := c.needsRestart(m), c.bouncerDown(m), c.bouncerAuthStale(m)
			if !pm && !pooler && !newDBs {
				c.mu.Unlock()
				continue
			}
			restarts.Go(func() {
				defer c.mu.Unlock()
				if pm {
					c.restart(ctx, m)
				}
				if c.bouncerDown(m) {
					c.restartBouncer(ctx, m)
				} else if newDBs {
					c.refreshBouncerAuth(ctx, m)
				}
			})
		}
	}
}

// needsRestart reports whether the cluster should run and does not (or
// runs in a replaced namespace), and its backoff has passed; c.mu is held.
func (c *cluster) needsRestart(m *Manager) bool {
	if c.deleted || !c.hasSpec || !c.spec.Running {
		return false
	}
	if c.proc != nil && c.proc.alive() {
		in, err := c.inNamespace(m, c.proc)
		if err != nil {
			// The namespace is gone: nothing can run until it is back.
			return false
		}
		if in {
			if c.failures > 0 && time.Since(c.proc.started) > stableAfter {
				c.failures = 0
			}
			return false
		}
	}
	return !time.Now().Before(c.retryAt)
}

// restart replaces a dead (or misplaced) postmaster; c.mu is held.
func (c *cluster) restart(ctx context.Context, m *Manager) {
	if p := c.proc; p != nil {
		if p.alive() {
			m.log.Warn("postmaster runs outside the server's current namespace; restarting it", "server", c.id, "pid", p.pid)
		} else {
			m.log.Warn("postmaster exited; restarting it", "server", c.id, "pid", p.pid, "status", p.exitStatus())
		}
	}
	err := c.stop(ctx, m)
	if err == nil {
		var state appliedState
		if state, err = c.loadState(); err == nil {
			err = c.startApplied(ctx, m, &state)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return // shutting down; the next Run or Ensure picks up
		}
		backoff := c.backOff()
		c.fail(fmt.Errorf("restart: %w", err))
		m.log.Error("restarting postmaster failed", "server", c.id, "err", err, "retry_in", backoff)
		return
	}
	c.setStatus(Status{State: StateReady, PID: c.proc.pid, Addr: c.spec.Addr, Version: c.spec.Version})
}

// backOff counts a failed start and holds Run's next restart back: 1s,
// 2s, 4s ... up to restartBackoffMax; c.mu is held. It returns the wait.
func (c *cluster) backOff() time.Duration {
	backoff := min(time.Second<<min(c.failures, 5), restartBackoffMax)
	c.failures++
	c.retryAt = time.Now().Add(backoff)
	return backoff
}
