// Package pgserver runs real PostgreSQL clusters, one per flexible server,
// each inside the server's own network namespace.
//
// A Manager keeps every cluster under DataDir/pg/<id>/:
//
//	DataDir/pg/                  root 0711
//	  template-<version>/        initdb output, copied to create a server (postgres 0700)
//	  .spare-<version>-<random>/ a copy of the template made ahead, renamed into the next server
//	  <id>/                      root 0711
//	    data/                    the data directory (postgres 0700)
//	      conf.d/privlink.conf   settings: privlink's defaults, the server's, then privlink's own
//	      pg_hba.conf            peer for role postgres on the socket, SCRAM over TCP, no trust
//	      pg_ident.conf          system users root and postgres may be role postgres
//	      server.crt, server.key issued by privlink's CA (key postgres 0600)
//	      log/                   the logging collector's files, one per weekday
//	    run/                     the unix socket (postgres 0700)
//	    postmaster.log           the postmaster's stderr before the collector starts
//	    state.json               what privlink applied (restart generation, admin verifier hash)
//
// Creating a server renames a spare copy of the template into place (or
// copies the template when no spare is ready) instead of running initdb,
// which makes create-to-ready a fraction of initdb's time; a new spare is
// copied in the background. A postmaster runs as
// the postgres system user, in a session of its own, started from a thread
// inside the server's namespace (fabric.Do): it listens on TCP only there,
// on the server's address, and on a private unix socket that privlinkd
// (root) uses for administration through peer authentication, without any
// password.
//
// Postmasters outlive privlinkd on purpose: closing a Manager, cancelling
// Run or killing privlinkd leaves them running with their sessions, and a
// new Manager adopts them (through postmaster.pid, checked against the
// process) instead of starting a second one. StopAll stops them.
package pgserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/pki"
)

// Manager runs the PostgreSQL clusters of the servers on this machine. Its
// methods are safe for concurrent use; operations on one server are
// serialised, operations on different servers run in parallel.
type Manager struct {
	log     *slog.Logger
	ca      *pki.CA
	fabric  *fabric.Fabric
	dataDir string
	pgDir   string // DataDir/pg
	uid     int    // of the postgres user
	gid     int

	versions []string          // installed major versions, ascending
	bins     map[string]string // version -> bin directory
	pam      map[string]bool   // version -> its postgres is linked with libpam

	// useInitdb makes new clusters with initdb instead of copying the
	// template (the benchmark's baseline).
	useInitdb bool
	// noSpare turns off spare copies of the template (the benchmark's
	// plain copy).
	noSpare bool

	tmplMu    sync.Mutex
	tmplLocks map[string]*sync.Mutex // per version

	// Entra authentication (entra.go).
	entraKeys   []byte
	entraIssuer func(string) string
	pamDir      string
	helperSrc   string
	helperMu    sync.Mutex
	helperPath  string // installed copy, once made

	wake chan struct{} // pokes Run: a postmaster exited
	done chan struct{} // closed by Close

	mu        sync.Mutex
	clusters  map[string]*cluster
	closed    bool
	running   bool            // Run is running
	refilling map[string]bool // versions whose spare is being made
	ops       sync.WaitGroup  // operations in flight (Ensure, Delete)
	runWG     sync.WaitGroup  // Run
	bg        sync.WaitGroup  // spares being made
}

// NewManager returns a Manager over cfg.DataDir. It must run as root: it
// runs PostgreSQL as the postgres system user and writes files as that
// user. It finds the installed PostgreSQL major versions (see Versions); a
// machine without any is not an error here (Ensure says what to install).
//
// The postgres user must be able to search the directories above
// DataDir/pg. When DataDir itself is root's and not searchable by it (as
// privlinkd creates it, 0700), NewManager gives it to the postgres group
// with search permission only (g=x): the group can pass through, not list
// or read. A directory above DataDir that the postgres user cannot search
// is an error.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.DataDir == "" || cfg.CA == nil || cfg.Fabric == nil {
		return nil, errors.New("pgserver: Config needs DataDir, CA and Fabric")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "pgserver")
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("pgserver: must run as root to run PostgreSQL as the postgres user (euid %d)", os.Geteuid())
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("pgserver: data directory: %w", err)
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgserver: the postgres system user: %w (apt-get install postgresql-common)", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil || uid == 0 {
		return nil, fmt.Errorf("pgserver: the postgres system user has uid %q gid %q; want a non-root numeric uid", u.Uid, u.Gid)
	}
	binRoot := cfg.BinRoot
	if binRoot == "" {
		binRoot = DefaultBinRoot
	}
	versions, bins, err := findVersions(binRoot)
	if err != nil {
		return nil, err
	}
	if len(versions) == 0 {
		log.Warn("no PostgreSQL installed; servers cannot run", "bin_root", binRoot, "hint", "apt-get install postgresql-15")
	}
	m := &Manager{
		log:         log,
		ca:          cfg.CA,
		fabric:      cfg.Fabric,
		dataDir:     dataDir,
		pgDir:       filepath.Join(dataDir, "pg"),
		uid:         uid,
		gid:         gid,
		versions:    versions,
		bins:        bins,
		pam:         make(map[string]bool, len(versions)),
		tmplLocks:   make(map[string]*sync.Mutex),
		entraKeys:   cfg.EntraKeys,
		entraIssuer: cfg.EntraIssuer,
		pamDir:      cmp.Or(cfg.PAMDir, "/etc/pam.d"),
		helperSrc:   cfg.PAMHelper,
		wake:        make(chan struct{}, 1),
		done:        make(chan struct{}),
		clusters:    make(map[string]*cluster),
		refilling:   make(map[string]bool),
	}
	for v, b := range bins {
		m.pam[v] = linksPAM(filepath.Join(b, "postgres"))
	}
	if err := m.prepareDirs(); err != nil {
		return nil, fmt.Errorf("pgserver: %w", err)
	}
	log.Debug("manager ready", "data_dir", dataDir, "versions", versions, "entra_versions", m.EntraVersions())
	return m, nil
}

// prepareDirs creates DataDir/pg (root 0711) and makes sure the postgres
// user can reach it.
func (m *Manager) prepareDirs() error {
	if err := os.MkdirAll(m.dataDir, 0o700); err != nil {
		return err
	}
	// From / down to DataDir: each must be searchable by postgres.
	var dirs []string
	for d := m.dataDir; ; d = filepath.Dir(d) {
		dirs = append(dirs, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	slices.Reverse(dirs)
	for _, d := range dirs {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if m.searchable(st) {
			continue
		}
		sys := st.Sys().(*syscall.Stat_t)
		if d != m.dataDir || sys.Uid != 0 || sys.Gid != 0 {
			return fmt.Errorf("%s (mode %v, uid %d, gid %d) is not searchable by the postgres user, which must reach %s; allow it (chmod o+x %s) or choose another data directory",
				d, st.Mode().Perm(), sys.Uid, sys.Gid, m.pgDir, d)
		}
		if err := os.Chown(d, 0, m.gid); err != nil {
			return err
		}
		if err := os.Chmod(d, st.Mode().Perm()|0o010); err != nil {
			return err
		}
		m.log.Info("made the data directory searchable by the postgres group", "dir", d, "mode", st.Mode().Perm()|0o010)
	}
	return ensureDir(m.pgDir, 0o711, 0, 0)
}

// searchable reports whether the postgres user may search directory st.
func (m *Manager) searchable(st fs.FileInfo) bool {
	sys := st.Sys().(*syscall.Stat_t)
	perm := st.Mode().Perm()
	switch {
	case int(sys.Uid) == m.uid:
		return perm&0o100 != 0
	case int(sys.Gid) == m.gid:
		return perm&0o010 != 0
	}
	return perm&0o001 != 0
}

// Versions returns the installed PostgreSQL major versions, ascending.
func (m *Manager) Versions() []string { return slices.Clone(m.versions) }

// bin returns the bin directory of version, or a *VersionError.
func (m *Manager) bin(version string) (string, error) {
	if b, ok := m.bins[version]; ok {
		return b, nil
	}
	return "", &VersionError{Version: version, Installed: m.Versions()}
}

func (m *Manager) templateMutex(version string) *sync.Mutex {
	m.tmplMu.Lock()
	defer m.tmplMu.Unlock()
	mu := m.tmplLocks[version]
	if mu == nil {
		mu = new(sync.Mutex)
		m.tmplLocks[version] = mu
	}
	return mu
}

// initdb creates a new data directory at dir with privlink's options
// (peer on the socket, SCRAM on TCP, UTF-8, C.UTF-8, data checksums),
// ending postgresql.conf with the include of conf.d.
func (m *Manager) initdb(ctx context.Context, bin, dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chown(dir, m.uid, m.gid); err != nil {
		return err
	}
	out, err := m.runAsPostgres(ctx, filepath.Join(bin, "initdb"),
		"-D", dir, "-U", "postgres",
		"--auth-local=peer", "--auth-host=scram-sha-256",
		"--encoding=UTF8", "--locale=C.UTF-8", "--data-checksums", "--no-instructions")
	if err != nil {
		return fmt.Errorf("initdb: %w: %s", err, strings.TrimSpace(string(out)))
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := ensureInclude(root, m.uid, m.gid); err != nil {
		return err
	}
	return ensureDirIn(root, confDir, 0o700, m.uid, m.gid)
}

// poke wakes Run (a postmaster this Manager started exited).
func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// begin registers an operation; it fails once the Manager is closed.
func (m *Manager) begin() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("pgserver: %w", net.ErrClosed)
	}
	m.ops.Add(1)
	return nil
}

// lockCluster returns the cluster entry for id, created if needed, with
// its mu held.
func (m *Manager) lockCluster(id string) *cluster {
	for {
		m.mu.Lock()
		c := m.clusters[id]
		if c == nil {
			c = newCluster(m.pgDir, id)
			m.clusters[id] = c
		}
		m.mu.Unlock()
		c.mu.Lock()
		if !c.deleted {
			return c
		}
		c.mu.Unlock() // deleted meanwhile: take the new entry
	}
}

// Ensure converges server spec.ID to spec and returns its status:
//
//   - the cluster is created when missing, by copying the template (which
//     is made once per version by initdb);
//   - its files are written when they differ: conf.d/privlink.conf (see
//     DefaultSettings, ProtectedSettings), pg_hba.conf, pg_ident.conf, and
//     a certificate for the server's names (renewed 30 days before
//     expiry). Settings PostgreSQL refuses fail with ErrInvalid and leave
//     the previous ones in place;
//   - when spec.Running, a postmaster runs in the server's namespace
//     (started, or adopted from a previous privlinkd) and accepts
//     connections when Ensure returns; it is restarted when
//     spec.RestartGeneration exceeds the generation it started with or
//     the address changed, and reloaded when files changed otherwise.
//     Static settings changed without a restart are listed in
//     Status.PendingRestart. The admin role is created or corrected (see
//     ensureAdmin); the admin gets CREATEROLE from PostgreSQL 16 on only;
//   - when not spec.Running, the postmaster is stopped (fast shutdown).
//
// The namespace (fabric.EnsureService) must exist before a server starts.
// Ensure fails with ErrInvalid for a spec it refuses, with a
// *StartError when the postmaster does not come up (then the cluster does
// not run, and Run waits out a back-off before starting it again with the
// same files), with a *VersionError for a version not installed, and with
// net.ErrClosed after Close.
func (m *Manager) Ensure(ctx context.Context, spec Spec) (Status, error) {
	cfg, bin, c, release, err := m.enter(spec)
	if err != nil {
		return Status{}, err
	}
	defer release()
	if err := c.ensure(ctx, m, spec, cfg, bin); err != nil {
		err = fmt.Errorf("pgserver: server %s (%s): %w", spec.ID, cfg.name, err)
		if spec.Running && !errors.Is(err, ErrInvalid) {
			// A refused spec leaves the server as it was (running with
			// what it had); anything else means it does not run right.
			c.fail(err)
			if errors.Is(err, ErrStartFailed) {
				// Run would only start it again with the same files:
				// it waits, which leaves the caller time to change them.
				c.backOff()
			}
		}
		return c.getStatus(), err
	}
	// A successful Ensure starts the restart backoff afresh.
	c.failures, c.retryAt = 0, time.Time{}
	return c.getStatus(), nil
}

// enter starts an operation on server spec.ID: it validates spec, finds
// the bin directory of its version, registers the operation and locks the
// cluster; release ends it.
func (m *Manager) enter(spec Spec) (cfg serverConfig, bin string, c *cluster, release func(), err error) {
	cfg, err = validate(spec)
	if err != nil {
		return cfg, "", nil, nil, err
	}
	bin, err = m.bin(spec.Version)
	if err != nil {
		return cfg, "", nil, nil, fmt.Errorf("pgserver: server %s: %w", spec.ID, err)
	}
	if err := m.checkEntraVersion(spec); err != nil {
		return cfg, "", nil, nil, err
	}
	if err := m.begin(); err != nil {
		return cfg, "", nil, nil, err
	}
	c = m.lockCluster(spec.ID)
	return cfg, bin, c, func() { c.mu.Unlock(); m.ops.Done() }, nil
}

// Status returns what the Manager knows of server id without waiting for
// operations in flight; ok is false for a server it has not seen.
func (m *Manager) Status(id string) (st Status, ok bool) {
	m.mu.Lock()
	c := m.clusters[id]
	m.mu.Unlock()
	if c == nil {
		return Status{}, false
	}
	return c.getStatus(), true
}

// Running reports whether a postmaster of server id runs: the one the
// Manager watches, or, for a server it has not seen yet, one a previous
// privlinkd left running (postmaster.pid, checked as on adoption). It does
// not wait for operations in flight on the server.
func (m *Manager) Running(id string) bool {
	m.mu.Lock()
	c := m.clusters[id]
	m.mu.Unlock()
	if c != nil {
		return c.getStatus().State == StateReady
	}
	return newCluster(m.pgDir, id).find(m) != nil
}

// Delete stops server id (fast shutdown, then immediate, then SIGKILL,
// each after a bound) and removes its directory. Deleting a server that
// does not exist is not an error. The caller removes the namespace
// (fabric.DeleteService) afterwards.
func (m *Manager) Delete(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if err := m.begin(); err != nil {
		return err
	}
	defer m.ops.Done()
	c := m.lockCluster(id)
	defer c.mu.Unlock()
	_, statErr := os.Lstat(c.dir)
	if err := c.stop(ctx, m); err != nil {
		return fmt.Errorf("pgserver: delete server %s: %w", id, err)
	}
	if err := m.removeEntra(c); err != nil {
		return fmt.Errorf("pgserver: delete server %s: %w", id, err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("pgserver: delete server %s: %w", id, err)
	}
	c.deleted = true
	c.setState(StateStopped, 0, "")
	m.mu.Lock()
	if m.clusters[id] == c {
		delete(m.clusters, id)
	}
	m.mu.Unlock()
	if statErr == nil {
		m.log.Info("deleted server", "server", id)
	}
	return nil
}

// StopAll stops every postmaster of DataDir/pg (those this Manager knows
// and those it finds on disk), in parallel, and keeps Run from restarting
// them until the next Ensure. It is for tests and explicit shutdown
// (privlinkd leaves postmasters running when it stops); it works after
// Close too.
func (m *Manager) StopAll(ctx context.Context) error {
	ids := map[string]bool{}
	entries, err := os.ReadDir(m.pgDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pgserver: stop all: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() && checkID(e.Name()) == nil {
			ids[e.Name()] = true
		}
	}
	m.mu.Lock()
	for id := range m.clusters {
		ids[id] = true
	}
	m.mu.Unlock()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for id := range ids {
		wg.Go(func() {
			c := m.lockCluster(id)
			defer c.mu.Unlock()
			c.spec.Running = false
			err := c.stop(ctx, m)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("server %s: %w", id, err))
				mu.Unlock()
				return
			}
			c.setState(StateStopped, 0, "")
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pgserver: stop all: %w", err)
	}
	return nil
}

// Close stops supervising and waits for operations in flight (Ensure,
// Delete, restarts by Run, a spare being copied) to finish. Postmasters keep running, with
// their sessions; a new Manager over the same DataDir adopts them. For a
// postmaster this Manager started, a goroutine stays until it exits, to
// reap it. A second Close returns net.ErrClosed.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return net.ErrClosed
	}
	m.closed = true
	close(m.done)
	m.mu.Unlock()
	m.ops.Wait()
	m.runWG.Wait()
	m.bg.Wait()
	return nil
}
