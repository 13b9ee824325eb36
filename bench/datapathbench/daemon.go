package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/privlink/privlink/bench/internal/benchd"
	"github.com/privlink/privlink/internal/azconfig"
)

// daemon is the privlinkd this tool starts. It is benchd.Start's, with one
// difference: PostgreSQL runs as the postgres user, who must search every
// directory above the data directory, and benchd's temporary directory is
// 0700 (privlinkd makes only the data directory itself searchable). So the
// temporary directory here is 0711, as e2e's startDaemon makes it.
type daemon struct {
	Config  *azconfig.Config
	Prefix  string
	DataDir string
	PID     int

	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
}

func startDaemon(ctx context.Context, bin string, log io.Writer) (d *daemon, err error) {
	prefix, err := benchd.UniquePrefix("pb")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "privlink-bench-")
	if err != nil {
		return nil, err
	}
	d = &daemon{Prefix: prefix, dir: dir, DataDir: filepath.Join(dir, "data")}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.Close())
			d = nil
		}
	}()
	if err := os.Chmod(dir, 0o711); err != nil {
		return d, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return d, err
	}
	listen := ln.Addr().String()
	ln.Close()
	d.cmd = exec.Command(bin, "--data-dir", d.DataDir, "--listen", listen, "--netns-prefix", prefix, "--log-level", "warn")
	d.cmd.Stdout, d.cmd.Stderr = log, log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C reaches only this tool, which stops it in order
	if err := d.cmd.Start(); err != nil {
		return d, fmt.Errorf("start %s: %w", bin, err)
	}
	d.PID = d.cmd.Process.Pid
	d.exited = make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(d.exited) }()

	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	for {
		if d.Config, last = ready(filepath.Join(d.DataDir, "credentials.json")); last == nil {
			return d, nil
		}
		select {
		case <-d.exited:
			return d, fmt.Errorf("privlinkd exited during start: %v", d.cmd.ProcessState)
		case <-ctx.Done():
			return d, fmt.Errorf("privlinkd not ready: %w (last: %v)", ctx.Err(), last)
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

// Close stops privlinkd (SIGTERM, SIGKILL after 30 s), then the postmasters
// it started, which outlive it on purpose (stopped first, privlinkd would
// start them again), by the PIDs in their postmaster.pid files; then it
// removes every namespace of the prefix and the temporary directory.
func (d *daemon) Close() error {
	var errs []error
	pids := postmasterPIDs(d.DataDir)
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
				errs = append(errs, errors.New("privlinkd did not stop within 30s of SIGTERM; killed"))
			}
		}
	}
	pids = append(pids, postmasterPIDs(d.DataDir)...)
	for _, pid := range pids {
		if !isPostgres(pid, d.DataDir) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGINT) // fast shutdown
		deadline := time.Now().Add(20 * time.Second)
		for isPostgres(pid, d.DataDir) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if isPostgres(pid, d.DataDir) {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
			errs = append(errs, fmt.Errorf("postmaster %d did not stop within 20s of SIGINT; sent SIGQUIT", pid))
		}
	}
	if err := benchd.RemoveNamespaces(d.Prefix); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(d.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
