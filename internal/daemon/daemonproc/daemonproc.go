// Package daemonproc runs privlinkd as a child process, for the end-to-end
// tests (e2e) and the benchmark programs (bench/): its arguments (a data
// directory the postgres user can reach, a free loopback port, a namespace
// prefix of its own, bolt or a given etcd), start and wait until /healthz
// answers with its own credentials, stop with a signal, restart on the
// same data, the postmasters it leaves running, and the namespaces of its
// prefix, which outlive it on purpose.
package daemonproc

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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/privlink/privlink/internal/azconfig"
	"github.com/privlink/privlink/internal/fabric"
)

// Options say how to run privlinkd.
type Options struct {
	// Binary is the privlinkd executable.
	Binary string
	// Dir holds the data directory (Dir/data). PostgreSQL runs as the
	// postgres user, who must search every directory above its clusters:
	// New makes Dir 0711; those above it are the caller's to open.
	Dir string
	// Prefix of the daemon's namespaces; "" picks UniquePrefix("pd").
	Prefix string
	// EtcdEndpoints and EtcdPrefix select an etcd store; empty: bolt.
	EtcdEndpoints string
	EtcdPrefix    string
	// LogLevel is --log-level ("warn" when empty).
	LogLevel string
	// Log receives privlinkd's output (os.Stderr when nil).
	Log io.Writer
}

// Proc is one privlinkd, started and stopped as often as needed on the
// same data directory, address and prefix.
type Proc struct {
	Prefix  string
	DataDir string
	Listen  string
	// Config is the SDK configuration of the default Owner principal,
	// from the last Start.
	Config *azconfig.Config

	opts   Options
	args   []string
	cmd    *exec.Cmd
	exited chan struct{}
}

// UniquePrefix returns a namespace prefix no other run uses: tag, eight
// random hex digits and a dash ("pb" → "pb1a2b3c4d-").
func UniquePrefix(tag string) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random prefix: %w", err)
	}
	return tag + hex.EncodeToString(b[:]) + "-", nil
}

// New prepares a privlinkd: its directory, port and arguments. Start runs
// it.
func New(o Options) (*Proc, error) {
	if o.Binary == "" {
		return nil, errors.New("daemonproc: no privlinkd binary given")
	}
	if o.LogLevel == "" {
		o.LogLevel = "warn"
	}
	if o.Log == nil {
		o.Log = os.Stderr
	}
	if o.Prefix == "" {
		p, err := UniquePrefix("pd")
		if err != nil {
			return nil, err
		}
		o.Prefix = p
	}
	if err := os.Chmod(o.Dir, 0o711); err != nil {
		return nil, fmt.Errorf("daemonproc: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("daemonproc: find a free port: %w", err)
	}
	listen := ln.Addr().String()
	ln.Close()
	p := &Proc{Prefix: o.Prefix, DataDir: filepath.Join(o.Dir, "data"), Listen: listen, opts: o}
	p.args = []string{"--data-dir", p.DataDir, "--listen", listen, "--netns-prefix", o.Prefix, "--log-level", o.LogLevel}
	if o.EtcdEndpoints != "" {
		p.args = append(p.args, "--store", "etcd", "--etcd-endpoints", o.EtcdEndpoints)
		if o.EtcdPrefix != "" {
			p.args = append(p.args, "--etcd-prefix", o.EtcdPrefix)
		}
	}
	return p, nil
}

// Start starts privlinkd and waits (up to a minute, or until ctx ends)
// until /healthz answers 200 with the default principal's credentials. It
// is an error if privlinkd runs.
func (p *Proc) Start(ctx context.Context) error {
	if p.PID() != 0 {
		return errors.New("daemonproc: privlinkd is already running")
	}
	cmd := exec.Command(p.opts.Binary, p.args...)
	cmd.Stdout, cmd.Stderr = p.opts.Log, p.opts.Log
	// Its own process group: a Ctrl-C at the terminal reaches only the
	// test or benchmark, which then stops the daemon in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("daemonproc: start %s: %w", p.opts.Binary, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited = cmd, exited
	go func() { _ = cmd.Wait(); close(exited) }()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last error
	for {
		cfg, err := ready(filepath.Join(p.DataDir, "credentials.json"))
		if err == nil {
			p.Config = cfg
			return nil
		}
		last = err
		select {
		case <-exited:
			return fmt.Errorf("daemonproc: privlinkd exited during start: %v", cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("daemonproc: privlinkd not ready: %w (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
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
	hc := *cfg.HTTPClient
	hc.Timeout = 2 * time.Second
	resp, err := hc.Get(c.ARMEndpoint + "/healthz")
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

// PID is the process ID of the running privlinkd (0 when none runs).
func (p *Proc) PID() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	select {
	case <-p.exited:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// Stop ends privlinkd with sig (SIGTERM: a clean stop; SIGKILL: a crash)
// and waits until it has exited, killing it after timeout. Postmasters
// keep running.
func (p *Proc) Stop(sig syscall.Signal, timeout time.Duration) error {
	if p.PID() == 0 {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return nil
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("daemonproc: privlinkd did not stop within %v of %v; killed", timeout, sig)
	}
}

// Postmasters returns the PIDs in DATA/pg/*/data/postmaster.pid whose
// processes are alive.
func (p *Proc) Postmasters() []int {
	return p.pidsIn(filepath.Join(p.DataDir, "pg", "*", "data", "postmaster.pid"))
}

// PgBouncers returns the PIDs in DATA/pg/*/bouncer/pgbouncer.pid (the
// servers' built-in poolers) whose processes are alive.
func (p *Proc) PgBouncers() []int {
	return p.pidsIn(filepath.Join(p.DataDir, "pg", "*", "bouncer", "pgbouncer.pid"))
}

// pidsIn returns the PIDs on the first line of the files pattern matches
// whose processes are alive.
func (p *Proc) pidsIn(pattern string) []int {
	files, _ := filepath.Glob(pattern)
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

// StopPostmasters stops every postmaster of the data directory, by the
// PID in its postmaster.pid (and every pgbouncer, by its pid file), with sig (SIGINT: PostgreSQL's fast shutdown;
// SIGQUIT: immediate) and waits until they have all exited, killing what
// is left after timeout. Stop privlinkd first, or its supervisor starts
// them again.
func (p *Proc) StopPostmasters(sig syscall.Signal, timeout time.Duration) error {
	pids := p.Postmasters()
	for _, pid := range pids {
		_ = syscall.Kill(pid, sig)
	}
	// The poolers go too (SIGTERM: pgbouncer's immediate shutdown).
	bouncers := p.PgBouncers()
	for _, pid := range bouncers {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	pids = append(pids, bouncers...)
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				return fmt.Errorf("daemonproc: postmaster %d still running %v after %v; killed", pid, timeout, sig)
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

// RemoveNamespaces deletes every network namespace (and /etc/netns entry)
// whose name starts with prefix, and checks that none is left. Without
// root there is nothing to remove: privlinkd then creates no namespaces.
func RemoveNamespaces(prefix string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fab, err := fabric.New(prefix, nil)
	if err != nil {
		return fmt.Errorf("daemonproc: remove namespaces of %s: %w", prefix, err)
	}
	if err := fab.RemoveStale(func(string) bool { return false }); err != nil {
		return fmt.Errorf("daemonproc: remove namespaces of %s: %w", prefix, err)
	}
	left, err := fab.ListOwned()
	if err != nil {
		return fmt.Errorf("daemonproc: list namespaces of %s: %w", prefix, err)
	}
	if len(left) > 0 {
		return fmt.Errorf("daemonproc: namespaces of %s left behind: %v", prefix, left)
	}
	return nil
}
