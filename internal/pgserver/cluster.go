package pgserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/privlink/privlink/internal/fabric"
)

// Bounds of the waits of a cluster's life.
const (
	// startTimeout bounds the wait for a started postmaster to accept
	// connections (crash recovery included).
	startTimeout = 2 * time.Minute
	// fastStopTimeout bounds a fast shutdown (SIGINT) before an
	// immediate one (SIGQUIT).
	fastStopTimeout = 30 * time.Second
	// immediateStopTimeout bounds an immediate shutdown before SIGKILL.
	immediateStopTimeout = 10 * time.Second
	// killTimeout bounds the wait for killed processes to disappear.
	killTimeout = 10 * time.Second
	// certRenewBefore is how long before its expiry a server certificate
	// is replaced.
	certRenewBefore = 30 * 24 * time.Hour
	// pollInterval is how often waits look at a process or a file.
	pollInterval = 20 * time.Millisecond
)

// Names inside a cluster directory (DataDir/pg/<id>, owned by root, mode
// 0711: the postgres user may pass through, not list or write).
const (
	dataSubdir = "data"             // the data directory (postgres, 0700)
	sockSubdir = "run"              // the unix socket directory (postgres, 0700)
	logName    = "postmaster.log"   // the postmaster's stderr before the logging collector takes over (root, 0600)
	stateName  = "state.json"       // what privlink applied (root, 0600)
	dataTmp    = "data.tmp"         // a data directory being copied
	sockName   = ".s.PGSQL.5432"    // the socket file in the socket directory
	maxSockLen = 107                // sizeof(sun_path) - 1 on Linux
	certMode   = fs.FileMode(0o644) // server.crt
	keyMode    = fs.FileMode(0o600) // server.key: PostgreSQL refuses looser modes
)

// State is a server's state as Status reports it.
type State string

// The states of a server.
const (
	StateStarting State = "Starting" // the postmaster is starting (or recovering)
	StateReady    State = "Ready"    // the postmaster accepts connections
	StateStopping State = "Stopping" // the postmaster is shutting down
	StateStopped  State = "Stopped"  // no postmaster runs
	StateFailed   State = "Failed"   // the postmaster should run but does not; Message says why
)

// Status is what a Manager knows of one server.
type Status struct {
	State State
	// PID is the postmaster's process id (0 when none runs).
	PID int
	// Addr is the address PostgreSQL listens on inside its namespace.
	Addr netip.Addr
	// Version is the PostgreSQL major version.
	Version string
	// PendingRestart lists settings whose new values wait for a restart
	// (a RestartGeneration increase) to apply.
	PendingRestart []string
	// Message says why the server is Failed.
	Message string
}

// appliedState is what a cluster directory records of what privlink
// applied (state.json), so a restarted privlinkd knows it.
type appliedState struct {
	// RestartGeneration is the Spec.RestartGeneration the postmaster last
	// started with.
	RestartGeneration int64 `json:"restartGeneration"`
	// AdminVerifierSHA256 is the SHA-256 of the admin verifier last set,
	// so that a password the administrator changed in SQL is kept until
	// the spec's verifier changes.
	AdminVerifierSHA256 string `json:"adminVerifierSHA256,omitempty"`
	// AdminLogin is the admin role last ensured.
	AdminLogin string `json:"adminLogin,omitempty"`
}

// cluster is one server's PostgreSQL cluster.
type cluster struct {
	id      string
	dir     string // DataDir/pg/<id>
	dataDir string // dir/data
	sockDir string // dir/run

	// mu serialises operations (Ensure, Delete, restarts by Run) and
	// guards the fields below.
	mu      sync.Mutex
	spec    Spec // last spec ensured; valid when hasSpec
	hasSpec bool
	bin     string // bin directory of spec.Version
	proc    *proc  // the watched postmaster; nil when none
	// bouncer is the watched pgbouncer (pgbouncer.go); nil when none.
	bouncer        *proc
	bouncerRetryAt time.Time // no pgbouncer restart before
	// bouncerDBs are the OIDs of the databases ensureBouncerAuth last saw
	// (pgbouncer.go); a directory under data/base/ that is not one of
	// them is a database made since (from template0, which lacks the auth
	// function), and Run gives it the function. Not before
	// bouncerDBsRetryAt.
	bouncerDBs        map[string]bool
	bouncerDBsRetryAt time.Time
	deleted           bool
	failures          int       // restart failures in a row
	retryAt           time.Time // no restart before

	statusMu sync.Mutex
	status   Status
}

func newCluster(pgDir, id string) *cluster {
	dir := filepath.Join(pgDir, id)
	return &cluster{
		id:      id,
		dir:     dir,
		dataDir: filepath.Join(dir, dataSubdir),
		sockDir: filepath.Join(dir, sockSubdir),
		status:  Status{State: StateStopped},
	}
}

func (c *cluster) getStatus() Status {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	s := c.status
	s.PendingRestart = slices.Clone(s.PendingRestart)
	return s
}

func (c *cluster) setStatus(s Status) {
	c.statusMu.Lock()
	c.status = s
	c.statusMu.Unlock()
}

// setState changes State (and PID and Message) and keeps the rest.
func (c *cluster) setState(state State, pid int, msg string) {
	c.statusMu.Lock()
	c.status.State, c.status.PID, c.status.Message = state, pid, msg
	if c.hasSpec {
		c.status.Addr, c.status.Version = c.spec.Addr, c.spec.Version
	}
	c.statusMu.Unlock()
}

func (c *cluster) fail(err error) {
	pid := 0
	if c.proc != nil && c.proc.alive() {
		pid = c.proc.pid
	}
	c.setState(StateFailed, pid, err.Error())
}

// nsName is the cluster's network namespace.
func (c *cluster) nsName(m *Manager) string {
	return m.fabric.NamespaceName(fabric.KindService, c.id)
}

// ensure converges the cluster to spec; c.mu is held.
func (c *cluster) ensure(ctx context.Context, m *Manager, spec Spec, cfg serverConfig, bin string) error {
	if n := len(filepath.Join(c.sockDir, sockName)); n > maxSockLen {
		return fmt.Errorf("socket path %s is %d bytes, more than the %d a unix socket takes (use a shorter data directory): %w",
			filepath.Join(c.sockDir, sockName), n, maxSockLen, ErrInvalid)
	}
	if err := c.ensureData(ctx, m, spec.Version, bin); err != nil {
		return err
	}
	if _, err := bouncerConfigOf(spec.Settings); err != nil {
		return err
	}
	changed, err := c.writeFiles(ctx, m, spec, cfg, bin)
	if err != nil {
		return err
	}
	c.spec, c.hasSpec, c.bin = spec, true, bin
	if !spec.Running {
		if err := c.stop(ctx, m); err != nil {
			return err
		}
		c.setState(StateStopped, 0, "")
		return nil
	}
	return c.run(ctx, m, changed)
}

// ensureData creates the cluster directory and its data directory (a
// copy of the template) when missing, and checks the data's version.
func (c *cluster) ensureData(ctx context.Context, m *Manager, version, bin string) error {
	if err := ensureDir(c.dir, 0o711, 0, 0); err != nil {
		return err
	}
	root, err := os.OpenRoot(c.dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if back, err := recoverSwitch(root); err != nil {
		return fmt.Errorf("put back the cluster of an interrupted upgrade: %w", err)
	} else if back {
		m.log.Warn("put back the old cluster of an interrupted major version upgrade", "server", c.id)
	}
	have, err := root.ReadFile(filepath.Join(dataSubdir, versionFile))
	switch {
	case err == nil:
		if v := strings.TrimSpace(string(have)); v != version {
			return fmt.Errorf("data directory holds PostgreSQL %s, not %s; changing the major version is not supported: %w", v, version, ErrInvalid)
		}
	case errors.Is(err, fs.ErrNotExist):
		if _, err := root.Lstat(dataSubdir); err == nil {
			return fmt.Errorf("%s exists without %s; remove it or delete the server", c.dataDir, versionFile)
		}
		if err := c.createData(ctx, m, root, version, bin); err != nil {
			return err
		}
	default:
		return err
	}
	// The socket directory: the postgres user's, private.
	if err := ensureDirIn(root, sockSubdir, 0o700, m.uid, m.gid); err != nil {
		return err
	}
	return nil
}

// createData makes the data directory: a spare copy of the template
// renamed into place when one is ready, else a copy made now (or, for the
// benchmark's comparison, initdb), first into data.tmp, then renamed to
// data.
func (c *cluster) createData(ctx context.Context, m *Manager, root *os.Root, version, bin string) error {
	t0 := time.Now()
	if err := root.RemoveAll(dataTmp); err != nil {
		return err
	}
	tmp := filepath.Join(c.dir, dataTmp)
	how := "spare"
	switch {
	case m.useInitdb:
		how = "initdb"
		if err := m.initdb(ctx, bin, tmp); err != nil {
			return err
		}
	case m.takeSpare(version, tmp):
	default:
		how = "template"
		tmpl, err := m.template(ctx, version, bin)
		if err != nil {
			return err
		}
		if err := copyTree(tmpl, root, dataTmp, m.uid, m.gid); err != nil {
			return fmt.Errorf("copy template: %w", err)
		}
	}
	if err := root.Rename(dataTmp, dataSubdir); err != nil {
		return err
	}
	m.log.Info("created cluster", "server", c.id, "from", how, "took", time.Since(t0).Round(time.Millisecond))
	if !m.useInitdb {
		m.refillSpare(version, bin)
	}
	return nil
}

// writeFiles converges the files privlink owns in the data directory and
// reports whether any changed. A new postgresql.conf content is checked
// with `postgres -C` first and refused (the old one kept) when PostgreSQL
// would not start with it.
func (c *cluster) writeFiles(ctx context.Context, m *Manager, spec Spec, cfg serverConfig, bin string) (changed bool, err error) {
	root, err := os.OpenRoot(c.dataDir)
	if err != nil {
		return false, err
	}
	defer root.Close()
	if err := ensureInclude(root, m.uid, m.gid); err != nil {
		return false, err
	}
	if err := ensureDirIn(root, confDir, 0o700, m.uid, m.gid); err != nil {
		return false, err
	}
	entra, err := c.writeEntraFiles(m, spec)
	if err != nil {
		return false, err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{hbaFile, renderHBA(cfg.requireSecure, entra)},
		{identFile, renderIdent()},
	} {
		ch, err := writeIfChanged(root, f.name, f.data, 0o600, m.uid, m.gid)
		if err != nil {
			return false, err
		}
		changed = changed || ch
	}
	ch, err := c.writeConf(ctx, m, root, renderConf(cfg, spec.Addr, c.sockDir), bin)
	if err != nil {
		return false, err
	}
	changed = changed || ch
	ch, err = m.ensureCert(root, cfg.name)
	if err != nil {
		return false, err
	}
	return changed || ch, nil
}

// writeConf writes conf.d/privlink.conf when it differs, checked by
// `postgres -C`; on a refusal it puts the previous content back.
func (c *cluster) writeConf(ctx context.Context, m *Manager, root *os.Root, want []byte, bin string) (bool, error) {
	cur, err := root.ReadFile(confFile)
	if err == nil && bytes.Equal(cur, want) {
		return false, nil
	}
	had := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if err := writeFileIn(root, confFile, want, 0o600, m.uid, m.gid); err != nil {
		return false, err
	}
	out, err := m.runAsPostgres(ctx, filepath.Join(bin, "postgres"), "-D", c.dataDir, "-C", "port")
	if err == nil {
		return true, nil
	}
	var restore error
	if had {
		restore = writeFileIn(root, confFile, cur, 0o600, m.uid, m.gid)
	} else {
		restore = root.Remove(confFile)
	}
	if ctx.Err() != nil {
		return false, errors.Join(fmt.Errorf("check settings: %w", ctx.Err()), restore)
	}
	return false, errors.Join(&SettingsError{Reason: pgMessages(out)}, restore)
}

// pgMessages extracts the messages from PostgreSQL log lines (dropping
// their time and pid prefix).
func pgMessages(out []byte) string {
	var msgs []string
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		for _, level := range []string{"FATAL:  ", "ERROR:  ", "LOG:  ", "DETAIL:  ", "HINT:  "} {
			if i := strings.Index(line, level); i >= 0 {
				line = line[i+len(level):]
				break
			}
		}
		if line != "" {
			msgs = append(msgs, line)
		}
	}
	return strings.Join(msgs, "; ")
}

// ensureCert writes server.key and server.crt when missing, not matching,
// not issued by the CA for the server's names, or expiring within
// certRenewBefore. The key is written first: a crash in between leaves a
// pair that does not match, which the next call replaces.
func (m *Manager) ensureCert(root *os.Root, name string) (bool, error) {
	names := certNames(name)
	certPEM, err1 := root.ReadFile(certFile)
	keyPEM, err2 := root.ReadFile(keyFile)
	if err1 == nil && err2 == nil && m.certValid(certPEM, keyPEM, names) {
		return false, nil
	}
	certPEM, keyPEM, err := m.ca.IssueServerCert(names, nil, 0)
	if err != nil {
		return false, err
	}
	if err := writeFileIn(root, keyFile, keyPEM, keyMode, m.uid, m.gid); err != nil {
		return false, err
	}
	if err := writeFileIn(root, certFile, certPEM, certMode, m.uid, m.gid); err != nil {
		return false, err
	}
	return true, nil
}

func (m *Manager) certValid(certPEM, keyPEM []byte, names []string) bool {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || !slices.Equal(slices.Sorted(slices.Values(leaf.DNSNames)), slices.Sorted(slices.Values(names))) {
		return false
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:       m.ca.Pool(),
		DNSName:     names[0],
		CurrentTime: time.Now().Add(certRenewBefore),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err == nil
}

// run makes the postmaster run with the current files: it adopts or
// starts one, restarts it when the spec's restart generation or address
// says so, reloads it when files changed, then ensures the admin role.
func (c *cluster) run(ctx context.Context, m *Manager, changed bool) error {
	spec := c.spec
	p, adopted := c.current(m)
	if p != nil {
		in, err := c.inNamespace(m, p)
		if err != nil {
			return err
		}
		if !in {
			m.log.Warn("postmaster runs outside the server's current namespace; restarting it", "server", c.id, "pid", p.pid)
			if err := c.stop(ctx, m); err != nil {
				return err
			}
			p = nil
		}
	}
	state, err := c.loadState()
	if err != nil {
		return err
	}
	fresh := p == nil // the postmaster starts with the current files
	if p != nil {
		if err := c.waitReady(ctx, m, p, -1); err != nil {
			return err
		}
		if adopted {
			m.log.Info("adopted running postmaster", "server", c.id, "pid", p.pid)
		}
		if spec.RestartGeneration > state.RestartGeneration || c.listenAddr() != spec.Addr.String() {
			m.log.Info("restarting postmaster", "server", c.id, "pid", p.pid,
				"generation", spec.RestartGeneration, "applied_generation", state.RestartGeneration,
				"address", spec.Addr, "listening_on", c.listenAddr())
			if err := c.stop(ctx, m); err != nil {
				return err
			}
			fresh = true
		}
	}
	if fresh {
		if err := c.startApplied(ctx, m, &state); err != nil {
			return err
		}
	}
	c.setState(StateReady, c.proc.pid, "")
	conn, err := m.connect(ctx, c)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if !fresh && (changed || adopted) {
		// An adopted postmaster may have missed files written just
		// before privlinkd stopped, so it is reloaded too.
		if err := reload(ctx, conn); err != nil {
			return err
		}
	}
	if err := ensureAdmin(ctx, conn, spec, &state); err != nil {
		return err
	}
	if err := c.ensureEntra(ctx, conn, spec); err != nil {
		return err
	}
	if err := c.saveState(state); err != nil {
		return err
	}
	if err := c.ensureBouncer(ctx, m, conn, c.requireSecure()); err != nil {
		return fmt.Errorf("pgbouncer: %w", err)
	}
	pending, err := settingsReport(ctx, conn)
	if err != nil {
		return err
	}
	c.setStatus(Status{State: StateReady, PID: c.proc.pid, Addr: spec.Addr, Version: spec.Version, PendingRestart: pending})
	return nil
}

// startApplied starts the postmaster and records that it runs with the
// spec's restart generation.
func (c *cluster) startApplied(ctx context.Context, m *Manager, state *appliedState) error {
	if err := c.start(ctx, m); err != nil {
		return err
	}
	state.RestartGeneration = c.spec.RestartGeneration
	return c.saveState(*state)
}

// current returns the running postmaster: the one watched, or else one
// found through postmaster.pid (adopted tells which).
func (c *cluster) current(m *Manager) (p *proc, adopted bool) {
	if c.proc != nil && c.proc.alive() {
		return c.proc, false
	}
	c.proc = nil
	if p := c.find(m); p != nil {
		c.proc = p
		return p, true
	}
	return nil, false
}

// find returns the cluster's postmaster according to postmaster.pid when
// that process runs, is a postgres binary of an installed version, runs as
// the postgres user with the data directory as its working directory, and
// is not a child of another process of the cluster.
func (c *cluster) find(m *Manager) *proc {
	pf, err := readPidFile(c.dataDir)
	if err != nil {
		return nil
	}
	pid := pf.pid
	st, err := readStat(pid)
	if err != nil || st.state == 'Z' || st.state == 'X' {
		return nil
	}
	if procCwd(pid) != c.dataDir || procCwd(st.ppid) == c.dataDir {
		return nil
	}
	if !m.isPostgres(pid) {
		return nil
	}
	return &proc{pid: pid, start: st.start, started: time.Now()}
}

// inNamespace reports whether p runs in the cluster's namespace as it is
// now (a namespace deleted and created again is another one). It fails
// when the namespace does not exist.
func (c *cluster) inNamespace(m *Manager, p *proc) (bool, error) {
	var want string
	err := m.fabric.Do(c.nsName(m), func() error {
		var err error
		want, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	})
	if err != nil {
		return false, fmt.Errorf("namespace of server (create it with fabric.EnsureService first): %w", err)
	}
	got, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", p.pid))
	if err != nil {
		return false, nil // gone
	}
	return got == want, nil
}

// listenAddr returns the address the running postmaster listens on, from
// postmaster.pid.
func (c *cluster) listenAddr() string {
	pf, err := readPidFile(c.dataDir)
	if err != nil {
		return ""
	}
	return pf.listen
}

// start starts a postmaster inside the server's namespace and waits until
// it accepts connections. Processes left by a dead postmaster are killed
// first, and its stale postmaster.pid removed.
func (c *cluster) start(ctx context.Context, m *Manager) error {
	if err := m.killCluster(c.dataDir, killTimeout); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(c.dataDir, pidFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", pidFile, err)
	}
	logPath := filepath.Join(c.dir, logName)
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	off, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		logf.Close()
		return err
	}
	cmd := exec.Command(filepath.Join(c.bin, "postgres"), "-D", c.dataDir)
	cmd.SysProcAttr = m.sysProcAttr()
	cmd.Env = childEnv
	cmd.Dir = c.dataDir
	cmd.Stdout, cmd.Stderr = logf, logf
	// The child is forked from the locked thread that Do switched into
	// the namespace, so it (and everything it forks) lives there.
	err = m.fabric.Do(c.nsName(m), cmd.Start)
	logf.Close()
	if err != nil {
		return fmt.Errorf("start postmaster in namespace %s (create it with fabric.EnsureService first): %w", c.nsName(m), err)
	}
	p, err := ownChild(cmd, m.poke)
	if err != nil {
		return err
	}
	c.proc = p
	c.setState(StateStarting, p.pid, "")
	m.log.Debug("started postmaster", "server", c.id, "pid", p.pid, "ns", c.nsName(m))
	if err := c.waitReady(ctx, m, p, off); err != nil {
		if errors.Is(err, ErrStartFailed) && p.alive() {
			// Up but not accepting connections: stopped, so that the
			// cluster is in one known state, not running.
			err = errors.Join(err, c.stop(ctx, m))
		}
		return err
	}
	m.log.Info("postmaster ready", "server", c.id, "pid", p.pid, "took", time.Since(p.started).Round(time.Millisecond))
	return nil
}

// waitReady waits until postmaster.pid says p is ready and an admin
// connection succeeds. It fails with a *StartError when p exits (quoting
// the postmaster's log from offset logOff, when not negative) or after
// startTimeout, and with ctx's error when ctx ends first.
func (c *cluster) waitReady(ctx context.Context, m *Manager, p *proc, logOff int64) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	var lastErr error
	for {
		if !p.alive() {
			reason := "it exited (" + p.exitStatus() + ")"
			if logOff >= 0 {
				reason = logTail(filepath.Join(c.dir, logName), logOff) + " (" + p.exitStatus() + ")"
			}
			return &StartError{PID: p.pid, Reason: reason}
		}
		if pf, err := readPidFile(c.dataDir); err == nil && pf.pid == p.pid && pf.status == "ready" {
			conn, err := m.connect(ctx, c)
			if err == nil {
				err = conn.Ping(ctx)
				conn.Close(context.WithoutCancel(ctx))
			}
			if err == nil {
				return nil
			}
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return fmt.Errorf("postmaster %d not ready: %w", p.pid, parent.Err())
			}
			return &StartError{PID: p.pid, Reason: fmt.Sprintf("it did not accept connections within %v (last error: %v)", startTimeout, lastErr)}
		case <-p.done: // nil (never ready) for adopted processes
		case <-t.C:
		}
	}
}

// logTail returns what the postmaster wrote to its log after offset
// (at most the last 2 KiB), as one line.
func logTail(path string, off int64) string {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "(no log)"
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size()-off > 2048 {
		off = st.Size() - 2048
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, off, 1<<20))
	if msg := pgMessages(b); msg != "" {
		return msg
	}
	return "(nothing logged)"
}

// stop stops the cluster's pooler and postmaster, if they run: for the
// postmaster a fast shutdown, then
// an immediate one, then SIGKILL, each after a bound; then it kills what
// is left of the cluster's processes.
func (c *cluster) stop(ctx context.Context, m *Manager) error {
	if err := c.stopBouncer(ctx, m); err != nil {
		return err
	}
	p, _ := c.current(m)
	if p == nil {
		return m.killCluster(c.dataDir, killTimeout)
	}
	c.setState(StateStopping, p.pid, "")
	steps := []struct {
		sig   syscall.Signal
		bound time.Duration
		what  string
	}{
		{syscall.SIGINT, fastStopTimeout, "fast shutdown"},
		{syscall.SIGQUIT, immediateStopTimeout, "immediate shutdown"},
		{syscall.SIGKILL, killTimeout, "SIGKILL"},
	}
	stopped := false
	for _, s := range steps {
		if err := p.signal(s.sig); err != nil {
			return err
		}
		exited, err := waitExit(ctx, p, s.bound)
		if err != nil {
			return fmt.Errorf("stop postmaster %d (%s): %w", p.pid, s.what, err)
		}
		if exited {
			stopped = true
			m.log.Info("postmaster stopped", "server", c.id, "pid", p.pid, "by", s.what)
			break
		}
		m.log.Warn("postmaster did not stop in time", "server", c.id, "pid", p.pid, "by", s.what, "bound", s.bound)
	}
	if !stopped {
		return fmt.Errorf("postmaster %d survives SIGKILL", p.pid)
	}
	c.proc = nil
	return m.killCluster(c.dataDir, killTimeout)
}

// waitExit waits until p exits (true), bound passes (false) or ctx ends.
func waitExit(ctx context.Context, p *proc, bound time.Duration) (bool, error) {
	timer := time.NewTimer(bound)
	defer timer.Stop()
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if !p.alive() {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-timer.C:
			return !p.alive(), nil
		case <-p.done:
		case <-t.C:
		}
	}
}

// pidFileInfo is what postmaster.pid says.
type pidFileInfo struct {
	pid    int
	listen string // first listen address
	status string // "starting", "ready", "stopping"...
}

// readPidFile reads postmaster.pid (without following a link).
func readPidFile(dataDir string) (pidFileInfo, error) {
	f, err := os.OpenFile(filepath.Join(dataDir, pidFile), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return pidFileInfo{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return pidFileInfo{}, err
	}
	lines := strings.Split(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return pidFileInfo{}, fmt.Errorf("%s: bad pid line", pidFile)
	}
	pf := pidFileInfo{pid: pid}
	if len(lines) > 5 {
		pf.listen = strings.TrimSpace(lines[5])
	}
	if len(lines) > 7 {
		pf.status = strings.TrimSpace(lines[7])
	}
	return pf, nil
}

func (c *cluster) loadState() (appliedState, error) {
	var s appliedState
	f, err := os.OpenFile(filepath.Join(c.dir, stateName), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	defer f.Close()
	if err := json.NewDecoder(f).Decode(&s); err != nil {
		return s, fmt.Errorf("read %s: %w", stateName, err)
	}
	return s, nil
}

func (c *cluster) saveState(s appliedState) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(c.dir)
	if err != nil {
		return err
	}
	defer root.Close()
	cur, err := root.ReadFile(stateName)
	if err == nil && bytes.Equal(cur, b) {
		return nil
	}
	return writeFileIn(root, stateName, b, 0o600, 0, 0)
}

// verifierHash identifies an admin verifier in state.json without storing
// it twice.
func verifierHash(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])
}

// ensureDir makes path a directory (not a link) with the given mode and
// owner.
func ensureDir(path string, perm fs.FileMode, uid, gid int) error {
	if err := os.Mkdir(path, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return fixDir(path, func() (*os.File, error) { return os.Open(path) }, perm, uid, gid)
}

// ensureDirIn is ensureDir inside root.
func ensureDirIn(root *os.Root, name string, perm fs.FileMode, uid, gid int) error {
	if err := root.Mkdir(name, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return fixDir(name, func() (*os.File, error) {
		return root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY, 0)
	}, perm, uid, gid)
}

func fixDir(name string, open func() (*os.File, error), perm fs.FileMode, uid, gid int) error {
	f, err := open()
	if err != nil {
		return fmt.Errorf("open directory %s: %w", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", name)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || int(sys.Uid) != uid || int(sys.Gid) != gid {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	if st.Mode().Perm() != perm {
		if err := f.Chmod(perm); err != nil {
			return err
		}
	}
	return nil
}

// writeIfChanged writes name inside root when its content differs.
func writeIfChanged(root *os.Root, name string, data []byte, perm fs.FileMode, uid, gid int) (bool, error) {
	if cur, err := root.ReadFile(name); err == nil && bytes.Equal(cur, data) {
		return false, nil
	}
	if err := writeFileIn(root, name, data, perm, uid, gid); err != nil {
		return false, err
	}
	return true, nil
}
