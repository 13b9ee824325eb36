// Package ipsec runs the IKE daemons of VPN gateways: one strongSwan charon
// per gateway namespace, driven over its VICI socket.
//
// The engine is charon with the kernel-libipsec plugin: IKEv2 on UDP 500
// and 4500, ESP carried in UDP 4500 (ESP-in-UDP, RFC 3948) and encrypted in
// charon's own process over a TUN device (ipsec0). The kernel this project
// runs on has no ESP transform (ip xfrm state add ... proto esp fails with
// "Requested type not found"), so kernel xfrm states are not an option;
// on a kernel with ESP, the same charon would use kernel-netlink instead
// and the bytes would stay in the kernel.
//
// Each charon lives in its gateway's network namespace and in a private
// mount namespace whose /run is the gateway's own directory, so its pid
// file never collides with another charon's. It runs in a session of its
// own: privlinkd's death (even kill -9) leaves it and its tunnels alone,
// and the next privlinkd adopts it through its VICI socket.
package ipsec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/strongswan/govici/vici"
)

// Binary is charon's path in Debian's strongswan-charon package.
var Binary = "/usr/lib/ipsec/charon"

// plugins are the only plugins charon loads: crypto (openssl with AES-NI
// and GCM from libstrongswan-standard-plugins, the built-in aes, sha2 and
// gmp as the fallback), the userspace ESP engine, routes and addresses
// through netlink, UDP sockets and VICI. A plugin that is not installed is
// skipped.
const plugins = "random nonce openssl aesni aes gcm sha1 sha2 hmac kdf gmp kernel-libipsec kernel-netlink socket-default vici"

// Proposals: IKE AES256/SHA256/DH group 14; ESP AES256-GCM (Azure's
// default for route-based gateways), or AES256/SHA256 where the gcm plugin
// is missing.
var (
	ikeProposals = []string{"aes256-sha256-modp2048"}
	espProposals = []string{"aes256gcm16", "aes256-sha256"}
)

// ErrNotInstalled says charon or its kernel-libipsec plugin is missing
// (scripts/deps.sh installs them).
var ErrNotInstalled = errors.New("strongSwan charon with kernel-libipsec not installed (strongswan-charon, libcharon-extra-plugins)")

// Available reports whether charon and the kernel-libipsec plugin are
// installed.
func Available() error {
	for _, p := range []string{Binary, filepath.Join(filepath.Dir(Binary), "plugins", "libstrongswan-kernel-libipsec.so")} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrNotInstalled, p, err)
		}
	}
	return nil
}

// Daemon is one gateway's charon: its directory (configuration, /run, VICI
// socket, log) and the namespace it runs in.
type Daemon struct {
	dir   string
	netns string
	log   *slog.Logger
}

// New returns the Daemon for the gateway namespace netns (a name under
// /run/netns) whose files live in dir. It starts nothing; see Ensure.
func New(dir, netns string, log *slog.Logger) *Daemon {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Daemon{dir: dir, netns: netns, log: log.With("component", "ipsec", "netns", netns)}
}

// Dir returns the daemon's directory.
func (d *Daemon) Dir() string { return d.dir }

func (d *Daemon) socket() string  { return filepath.Join(d.dir, "charon.vici") }
func (d *Daemon) runDir() string  { return filepath.Join(d.dir, "run") }
func (d *Daemon) pidFile() string { return filepath.Join(d.runDir(), "charon.pid") }

func (d *Daemon) conf() string {
	return fmt.Sprintf(`# written by privlinkd for the gateway namespace %s
charon {
  load = %s
  # IKE SAs are keyed by the peers' addresses, never by a cached one.
  make_before_break = yes
  retransmit_tries = 3
  retransmit_timeout = 1.0
  retransmit_base = 1.4
  plugins {
    vici {
      socket = unix://%s
    }
  }
  filelog {
    stderr {
      default = 1
      ike = 1
    }
  }
}
`, d.netns, plugins, d.socket())
}

// session dials the VICI socket.
func (d *Daemon) session() (*vici.Session, error) {
	s, err := vici.NewSession(vici.WithSocketPath(d.socket()))
	if err != nil {
		return nil, fmt.Errorf("ipsec: vici %s: %w", d.socket(), err)
	}
	return s, nil
}

// call runs one VICI command with a timeout of its own.
func (d *Daemon) call(ctx context.Context, cmd string, in *vici.Message) (*vici.Message, error) {
	s, err := d.session()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := s.Call(ctx, cmd, in)
	if err != nil {
		return m, fmt.Errorf("ipsec: %s in %s: %w", cmd, d.netns, err)
	}
	return m, nil
}

// Running reports whether a charon answers on the daemon's VICI socket.
func (d *Daemon) Running(ctx context.Context) bool {
	_, err := d.call(ctx, "version", nil)
	return err == nil
}

// PID returns the running charon's pid from its pid file, or 0. A pid
// file left by a charon that is gone (a reboot, a kill -9) may name a
// process that reused the pid: only a process running Binary counts, so
// Stop never signals anything else.
func (d *Daemon) PID() int {
	b, err := os.ReadFile(d.pidFile())
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || strings.TrimSuffix(exe, " (deleted)") != Binary {
		return 0
	}
	return pid
}

// Ensure starts the charon unless one already answers on the socket (a
// previous privlinkd's, which it adopts). The process runs in its own
// session, detached from the caller: it outlives privlinkd.
func (d *Daemon) Ensure(ctx context.Context) error {
	if d.Running(ctx) {
		return nil
	}
	if err := Available(); err != nil {
		return err
	}
	// A charon that does not answer is stopped before another starts.
	if err := d.Stop(); err != nil {
		return err
	}
	if err := os.MkdirAll(d.runDir(), 0o700); err != nil {
		return fmt.Errorf("ipsec: %w", err)
	}
	confPath := filepath.Join(d.dir, "strongswan.conf")
	if err := os.WriteFile(confPath, []byte(d.conf()), 0o600); err != nil {
		return fmt.Errorf("ipsec: %w", err)
	}
	_ = os.Remove(d.socket())
	logf, err := os.OpenFile(filepath.Join(d.dir, "charon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("ipsec: %w", err)
	}
	defer logf.Close()
	// nsenter joins the gateway's network namespace; unshare gives charon
	// a private mount namespace whose /run is this gateway's run directory.
	script := `mount --bind "$1" /run && exec "$2"`
	cmd := exec.Command("nsenter", "--net=/run/netns/"+d.netns, "--",
		"unshare", "--mount", "--propagation", "private", "--",
		"/bin/sh", "-c", script, "sh", d.runDir(), Binary)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("ipsec: start charon in %s: %w", d.netns, err)
	}
	// Reap it if it dies while this process lives; it is not waited on
	// otherwise (it may outlive privlinkd).
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	logPath := filepath.Join(d.dir, "charon.log")
	deadline := time.Now().Add(10 * time.Second)
	for !d.Running(ctx) {
		if time.Now().After(deadline) {
			return fmt.Errorf("ipsec: charon in %s did not answer on %s within 10s (see %s)", d.netns, d.socket(), logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-exited:
			return fmt.Errorf("ipsec: charon in %s exited before it answered (%v); its last words: %s", d.netns, err, lastLine(logPath))
		case <-time.After(50 * time.Millisecond):
		}
	}
	d.log.Info("charon started", "pid", d.PID(), "dir", d.dir)
	return nil
}

// Stop ends the charon (SIGTERM, then SIGKILL after 5s) and waits for it.
// Stopping one that does not run is not an error.
func (d *Daemon) Stop() error {
	pid := d.PID()
	if pid == 0 {
		// A pid file naming no charon of ours (one killed and not yet
		// reaped, or a pid reused since) would make the next charon
		// refuse to start: "charon already running".
		if err := os.Remove(d.pidFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("ipsec: stale pid file: %w", err)
		}
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil && !zombie(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(5 * time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = os.Remove(d.pidFile())
	d.log.Info("charon stopped", "pid", pid)
	return nil
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// lastLine returns the last non-empty line of the file at path, or a note
// that it could not be read.
func lastLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
