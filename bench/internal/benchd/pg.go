package benchd

import (
	"context"
	"errors"
	"syscall"
	"time"
)

// PGDaemon is a privlinkd started by StartPG: one that runs flexible
// servers. Besides what Daemon does, it can be stopped and started again
// on the same data directory, listen address and namespace prefix (a
// privlinkd restart), and its Close also stops the postmasters it started,
// which outlive privlinkd on purpose.
type PGDaemon struct {
	*Daemon
}

// StartPG is Start for benchmarks that run PostgreSQL servers (the data
// directory is one the postgres user can reach: daemonproc.New).
func StartPG(ctx context.Context, o Options) (*PGDaemon, error) {
	d, err := prepare(o)
	if err != nil {
		return nil, err
	}
	pd := &PGDaemon{Daemon: d}
	if err := pd.Start(ctx); err != nil {
		return nil, errors.Join(err, pd.Close())
	}
	return pd, nil
}

// Start starts privlinkd (again) and waits until /healthz answers 200. It
// is an error if privlinkd runs.
func (pd *PGDaemon) Start(ctx context.Context) error { return pd.start(ctx) }

// Stop stops privlinkd with SIGTERM and waits until it has exited (SIGKILL
// after 30 s). Postmasters keep running.
func (pd *PGDaemon) Stop() error { return pd.proc.Stop(syscall.SIGTERM, 30*time.Second) }

// Close stops privlinkd, then every postmaster (fast shutdown, SIGKILL
// after 60 s), then does what Daemon.Close does: stops etcd, removes the
// namespaces of the prefix and the data directory.
func (pd *PGDaemon) Close() error {
	var errs []error
	if pd.proc != nil {
		errs = append(errs, pd.Stop(), pd.StopPostmasters(syscall.SIGINT, 60*time.Second))
	}
	errs = append(errs, pd.Daemon.Close())
	return errors.Join(errs...)
}
