// Package benchd runs a privlinkd for the benchmark programs under bench/:
// a fresh data directory, a free loopback port, a namespace prefix of its
// own, and bolt or a private etcd. Close stops everything it started and
// removes every namespace of its prefix, so a benchmark leaves nothing
// behind even when it fails half-way.
package benchd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/privlink/privlink/internal/azconfig"
	"github.com/privlink/privlink/internal/fabric"
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
	cmd      *exec.Cmd
	exited   chan struct{}
	stopEtcd func()
}

// UniquePrefix returns a namespace prefix no other run uses: tag, eight
// random hex digits and a dash ("pbf" → "pbf1a2b3c4d-").
func UniquePrefix(tag string) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random prefix: %w", err)
	}
	return tag + hex.EncodeToString(b[:]) + "-", nil
}

// Start starts privlinkd and waits until /healthz answers and its
// credentials are usable. On failure it has cleaned up after itself.
func Start(ctx context.Context, o Options) (d *Daemon, err error) {
	if o.Binary == "" {
		return nil, errors.New("benchd: no privlinkd binary given")
	}
	if o.LogLevel == "" {
		o.LogLevel = "warn"
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
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
	listen, err := freeAddr()
	if err != nil {
		return d, err
	}
	dataDir := filepath.Join(dir, "data")
	args := []string{"--data-dir", dataDir, "--listen", listen, "--netns-prefix", prefix, "--log-level", o.LogLevel}
	switch o.Store {
	case "", "bolt":
	case "etcd":
		ep, stop, err := etcdtest.Launch(dir)
		if err != nil {
			return d, fmt.Errorf("benchd: start etcd: %w", err)
		}
		d.stopEtcd, d.EtcdEndpoint = stop, ep
		args = append(args, "--store", "etcd", "--etcd-endpoints", ep)
	default:
		return d, fmt.Errorf("benchd: unknown store %q: want bolt or etcd", o.Store)
	}
	cmd := exec.Command(o.Binary, args...)
	cmd.Stdout, cmd.Stderr = o.Log, o.Log
	// Its own process group: a Ctrl-C at the terminal reaches only the
	// benchmark, which then stops the daemon in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return d, fmt.Errorf("benchd: start %s: %w", o.Binary, err)
	}
	d.cmd = cmd
	d.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(d.exited) }()
	d.Config, err = d.waitReady(ctx, filepath.Join(dataDir, "credentials.json"))
	return d, err
}

// waitReady polls /healthz with the daemon's own credentials until it
// answers 200.
func (d *Daemon) waitReady(ctx context.Context, credsPath string) (*azconfig.Config, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	for {
		cfg, err := ready(credsPath)
		if err == nil {
			return cfg, nil
		}
		last = err
		select {
		case <-d.exited:
			return nil, fmt.Errorf("benchd: privlinkd exited during start: %v", d.cmd.ProcessState)
		case <-ctx.Done():
			return nil, fmt.Errorf("benchd: privlinkd not ready: %w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func ready(credsPath string) (*azconfig.Config, error) {
	c, err := azconfig.Load(credsPath)
	if err != nil {
		return nil, err
	}
	cfg, err := azconfig.New(c)
	if err != nil {
		return nil, err
	}
	resp, err := cfg.HTTPClient.Get(c.ARMEndpoint + "/healthz")
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("healthz: %s", resp.Status)
	}
	return cfg, nil
}

// Close stops privlinkd (SIGTERM, SIGKILL after 30 s) and etcd, removes
// every namespace of the daemon's prefix (they outlive the daemon on
// purpose) and the data directory, and reports what it could not remove.
func (d *Daemon) Close() error {
	var errs []error
	if d.cmd != nil && d.cmd.Process != nil {
		select {
		case <-d.exited:
		default:
			_ = d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.exited:
			case <-time.After(30 * time.Second):
				_ = d.cmd.Process.Kill()
				<-d.exited
				errs = append(errs, errors.New("benchd: privlinkd did not stop within 30s of SIGTERM; killed"))
			}
		}
	}
	if d.stopEtcd != nil {
		d.stopEtcd()
	}
	if err := RemoveNamespaces(d.Prefix); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(d.dir); err != nil {
		errs = append(errs, fmt.Errorf("benchd: %w", err))
	}
	return errors.Join(errs...)
}

// RemoveNamespaces deletes every network namespace (and /etc/netns entry)
// whose name starts with prefix, and checks that none is left. Without
// root there is nothing to remove: privlinkd then creates no namespaces.
func RemoveNamespaces(prefix string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fab, err := fabric.New(prefix, nil)
	if err != nil {
		return fmt.Errorf("benchd: remove namespaces of %s: %w", prefix, err)
	}
	if err := fab.RemoveStale(func(string) bool { return false }); err != nil {
		return fmt.Errorf("benchd: remove namespaces of %s: %w", prefix, err)
	}
	left, err := fab.ListOwned()
	if err != nil {
		return fmt.Errorf("benchd: list namespaces of %s: %w", prefix, err)
	}
	if len(left) > 0 {
		return fmt.Errorf("benchd: namespaces of %s left behind: %v", prefix, left)
	}
	return nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("benchd: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

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
