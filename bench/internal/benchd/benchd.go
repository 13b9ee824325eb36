// Package benchd runs a privlinkd for the benchmark programs under bench/:
// a fresh data directory, a free loopback port, a namespace prefix of its
// own, and bolt or a private etcd. Close stops everything it started and
// removes every namespace of its prefix, so a benchmark leaves nothing
// behind even when it fails half-way.
package benchd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/privlink/privlink/internal/azconfig"
	"github.com/privlink/privlink/internal/daemon/daemonproc"
	"github.com/privlink/privlink/internal/store/etcd/etcdtest"
)

// Options say how to start privlinkd.
type Options struct {
	// Binary is the privlinkd executable.
	Binary string
	// Store is "bolt" (default) or "etcd"; for etcd a private etcd server
	// is started in the data directory and stopped by Close.
	Store string
	// LogLevel is privlinkd's --log-level ("warn" when empty).
	LogLevel string
	// Log receives privlinkd's standard error (os.Stderr when nil).
	Log io.Writer
}

// Daemon is a running privlinkd started by Start.
type Daemon struct {
	// Config is the SDK configuration of the default Owner principal.
	Config *azconfig.Config
	// Prefix is the prefix of the daemon's network namespaces.
	Prefix string
	// EtcdEndpoint is the client URL of the private etcd server, when the
	// store is etcd ("" for bolt).
	EtcdEndpoint string

	dir      string
	proc     *daemonproc.Proc
	stopEtcd func()
}

// UniquePrefix returns a namespace prefix no other run uses: tag, eight
// random hex digits and a dash ("pbf" → "pbf1a2b3c4d-").
func UniquePrefix(tag string) (string, error) { return daemonproc.UniquePrefix(tag) }

// Start starts privlinkd and waits until /healthz answers and its
// credentials are usable. On failure it has cleaned up after itself.
func Start(ctx context.Context, o Options) (*Daemon, error) {
	d, err := prepare(o)
	if err != nil {
		return nil, err
	}
	if err := d.start(ctx); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

// prepare makes the daemon's directory, its etcd if it wants one, and its
// arguments.
func prepare(o Options) (d *Daemon, err error) {
	prefix, err := UniquePrefix("pb")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "privlink-bench-")
	if err != nil {
		return nil, fmt.Errorf("benchd: %w", err)
	}
	d = &Daemon{Prefix: prefix, dir: dir}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.Close())
			d = nil
		}
	}()
	po := daemonproc.Options{Binary: o.Binary, Dir: dir, Prefix: prefix, LogLevel: o.LogLevel, Log: o.Log}
	switch o.Store {
	case "", "bolt":
	case "etcd":
		ep, stop, err := etcdtest.Launch(dir)
		if err != nil {
			return d, fmt.Errorf("benchd: start etcd: %w", err)
		}
		d.stopEtcd, d.EtcdEndpoint, po.EtcdEndpoints = stop, ep, ep
	default:
		return d, fmt.Errorf("benchd: unknown store %q: want bolt or etcd", o.Store)
	}
	if d.proc, err = daemonproc.New(po); err != nil {
		return d, err
	}
	return d, nil
}

func (d *Daemon) start(ctx context.Context) error {
	if err := d.proc.Start(ctx); err != nil {
		return err
	}
	d.Config = d.proc.Config
	return nil
}

// DataDir is privlinkd's --data-dir.
func (d *Daemon) DataDir() string { return filepath.Join(d.dir, "data") }

// PID is the process ID of the running privlinkd (0 when none runs).
func (d *Daemon) PID() int {
	if d.proc == nil {
		return 0
	}
	return d.proc.PID()
}

// Postmasters returns the PIDs of the data directory's live postmasters.
func (d *Daemon) Postmasters() []int { return d.proc.Postmasters() }

// StopPostmasters stops every postmaster of the data directory with sig
// and waits (daemonproc.Proc.StopPostmasters).
func (d *Daemon) StopPostmasters(sig syscall.Signal, timeout time.Duration) error {
	return d.proc.StopPostmasters(sig, timeout)
}

// Close stops privlinkd (SIGTERM, SIGKILL after 30 s) and etcd, removes
// every namespace of the daemon's prefix (they outlive the daemon on
// purpose) and the data directory, and reports what it could not remove.
func (d *Daemon) Close() error {
	var errs []error
	if d.proc != nil {
		errs = append(errs, d.proc.Stop(syscall.SIGTERM, 30*time.Second))
	}
	if d.stopEtcd != nil {
		d.stopEtcd()
	}
	errs = append(errs, RemoveNamespaces(d.Prefix))
	if err := os.RemoveAll(d.dir); err != nil {
		errs = append(errs, fmt.Errorf("benchd: %w", err))
	}
	return errors.Join(errs...)
}

// RemoveNamespaces deletes every network namespace (and /etc/netns entry)
// whose name starts with prefix, and checks that none is left.
func RemoveNamespaces(prefix string) error { return daemonproc.RemoveNamespaces(prefix) }

// LoadAvg returns the machine's 1, 5 and 15 minute load averages, as
// /proc/loadavg has them ("?" when it cannot be read): the benchmark
// tools print it around each measurement.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Sleep waits d, or until ctx ends (then it returns ctx's error).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Machine describes the machine for a benchmark's report: "2 cores, Linux
// 6.1.0-18-amd64".
func Machine() string {
	release := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		release = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%d cores, Linux %s", runtime.NumCPU(), release)
}
