package benchd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/privlink/privlink/internal/store/etcd/etcdtest"
)

// PGDaemon is a privlinkd started by StartPG: one that runs flexible
// servers. Besides what Daemon does, it can be stopped and started again
// on the same data directory, listen address and namespace prefix (a
// privlinkd restart), and its Close also stops the postmasters it started,
// which outlive privlinkd on purpose.
type PGDaemon struct {
	*Daemon
	opts Options
	args []string
}

// StartPG is Start for benchmarks that run PostgreSQL servers. The
// postgres system user must be able to search every directory above
// DATA/pg; Start's temporary directory is 0700 (os.MkdirTemp), which
// privlinkd refuses as root ("not searchable by the postgres user"), so
// StartPG makes it 0711 (search only) before privlinkd starts, as the
// e2e harness does with its own temporary directories.
func StartPG(ctx context.Context, o Options) (pd *PGDaemon, err error) {
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
	pd = &PGDaemon{Daemon: &Daemon{Prefix: prefix, dir: dir}, opts: o}
	defer func() {
		if err != nil {
			err = errors.Join(err, pd.Close())
			pd = nil
		}
	}()
	if err := os.Chmod(dir, 0o711); err != nil {
		return pd, fmt.Errorf("benchd: %w", err)
	}
	listen, err := freeAddr()
	if err != nil {
		return pd, err
	}
	pd.args = []string{"--data-dir", pd.DataDir(), "--listen", listen, "--netns-prefix", prefix, "--log-level", o.LogLevel}
	switch o.Store {
	case "", "bolt":
	case "etcd":
		ep, stop, err := etcdtest.Launch(dir)
		if err != nil {
			return pd, fmt.Errorf("benchd: start etcd: %w", err)
		}
		pd.stopEtcd, pd.EtcdEndpoint = stop, ep
		pd.args = append(pd.args, "--store", "etcd", "--etcd-endpoints", ep)
	default:
		return pd, fmt.Errorf("benchd: unknown store %q: want bolt or etcd", o.Store)
	}
	if err := pd.Start(ctx); err != nil {
		return pd, err
	}
	return pd, nil
}

// DataDir is privlinkd's --data-dir.
func (d *Daemon) DataDir() string { return filepath.Join(d.dir, "data") }

// PID is the process ID of the running privlinkd (0 when none runs).
func (d *Daemon) PID() int {
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	select {
	case <-d.exited:
		return 0
	default:
		return d.cmd.Process.Pid
	}
}

// Start starts privlinkd (again) with the arguments of StartPG and waits
// until /healthz answers 200. It is an error if privlinkd runs.
func (pd *PGDaemon) Start(ctx context.Context) error {
	if pd.PID() != 0 {
		return errors.New("benchd: privlinkd is already running")
	}
	cmd := exec.Command(pd.opts.Binary, pd.args...)
	cmd.Stdout, cmd.Stderr = pd.opts.Log, pd.opts.Log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("benchd: start %s: %w", pd.opts.Binary, err)
	}
	exited := make(chan struct{})
	pd.cmd, pd.exited = cmd, exited
	go func() { _ = cmd.Wait(); close(exited) }()
	cfg, err := pd.waitReady(ctx, filepath.Join(pd.DataDir(), "credentials.json"))
	if err != nil {
		return err
	}
	pd.Config = cfg
	return nil
}

// Stop stops privlinkd with SIGTERM and waits until it has exited (SIGKILL
// after 30 s). Postmasters keep running.
func (pd *PGDaemon) Stop() error {
	if pd.PID() == 0 {
		return nil
	}
	_ = pd.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pd.exited:
		return nil
	case <-time.After(30 * time.Second):
		_ = pd.cmd.Process.Kill()
		<-pd.exited
		return errors.New("benchd: privlinkd did not stop within 30s of SIGTERM; killed")
	}
}

// Postmasters returns the PIDs in DATA/pg/*/data/postmaster.pid whose
// processes are alive.
func (d *Daemon) Postmasters() []int {
	files, _ := filepath.Glob(filepath.Join(d.DataDir(), "pg", "*", "data", "postmaster.pid"))
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
		if err == nil && pid > 1 && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// StopPostmasters stops every postmaster of the data directory by the PID
// in its postmaster.pid with sig (SIGINT: PostgreSQL's fast shutdown, as
// pgserver's StopAll; SIGQUIT: immediate) and waits until they have all
// exited. Stop privlinkd first, or its supervisor starts them again.
func (d *Daemon) StopPostmasters(sig syscall.Signal, timeout time.Duration) error {
	pids := d.Postmasters()
	for _, pid := range pids {
		_ = syscall.Kill(pid, sig)
	}
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				return fmt.Errorf("benchd: postmaster %d still running %v after %v; killed", pid, timeout, sig)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// Close stops privlinkd, then every postmaster (fast shutdown, SIGKILL
// after 60 s), then does what Daemon.Close does: stops etcd, removes the
// namespaces of the prefix and the data directory.
func (pd *PGDaemon) Close() error {
	errs := []error{pd.Stop()}
	if err := pd.StopPostmasters(syscall.SIGINT, 60*time.Second); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, pd.Daemon.Close())
	return errors.Join(errs...)
}
