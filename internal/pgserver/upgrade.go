package pgserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// A major version upgrade (Manager.Upgrade) is a dump and restore into a
// new cluster of the new major, next to the old one:
//
//	DataDir/pg/<id>/
//	  data/            the old cluster, serving until the switch
//	  data.upgrade/    the new cluster, a copy of the new major's template
//	  run.upgrade/     its unix socket (it listens on no TCP address)
//	  data.old/        the old cluster after the switch, until the new one runs
//
// The old cluster refuses connections but privlinkd's during the dump (its
// pg_hba.conf keeps only the local administration line, and every client
// session is closed), so nothing written after the dump is lost. The
// switch renames data to data.old and data.upgrade to data, then starts
// the new major in the server's namespace with privlink's files; if that
// fails the renames are undone and the old cluster serves again, with its
// own files. A crash at any point leaves either data (old or new) or
// data.old, which ensureData puts back; the next Upgrade starts over.
const (
	upgradeData   = "data.upgrade"
	upgradeSock   = "run.upgrade"
	upgradeOld    = "data.old"
	dumpChunkSize = 256 << 10
)

// upgradeHBA is the old cluster's pg_hba.conf while it is dumped: only
// privlinkd's own administration over the unix socket.
var upgradeHBA = []byte("# Written by privlink during a major version upgrade: clients are refused.\n" +
	"local      all       postgres             peer map=" + identMap + "\n")

// UpgradeStep is a step of a major version upgrade, as Upgrade reports it.
type UpgradeStep struct {
	// Step names what is being done: "ReadOnly", "CreateCluster",
	// "DumpRestore", "Switch", "Done".
	Step string
	// Percent is how far the whole upgrade is, 0 to 100.
	Percent int
}

// UpgradeError is a major version upgrade that failed: the old cluster
// serves again, as before. Reason says what failed (for a restore, the
// statement PostgreSQL refused).
type UpgradeError struct {
	From, To string
	Step     string
	Reason   string
}

func (e *UpgradeError) Error() string {
	return fmt.Sprintf("upgrade from PostgreSQL %s to %s failed at %s: %s", e.From, e.To, e.Step, e.Reason)
}

// DataVersion returns the major version of server id's data directory
// on disk; ok is false when there is none.
func (m *Manager) DataVersion(id string) (version string, ok bool) {
	if checkID(id) != nil {
		return "", false
	}
	c := newCluster(m.pgDir, id)
	b, err := os.ReadFile(filepath.Join(c.dataDir, versionFile))
	if err != nil {
		b, err = os.ReadFile(filepath.Join(c.dir, upgradeOld, versionFile))
	}
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// Upgrade moves server spec.ID from the major version its data holds to
// spec.Version, which must be newer, by pg_dumpall of the old cluster
// restored with psql into a new cluster (see the comment on upgradeData),
// and leaves it Ready with spec as Ensure does. progress (which may be
// nil) hears of each step. A server already on spec.Version only gets
// Ensure. It fails with an *UpgradeError when the upgrade cannot be
// done or fails (then the old cluster serves, with its own files),
// ErrInvalid for a spec it refuses, a *VersionError when a version is not
// installed, and ctx's error (then the next call starts over).
func (m *Manager) Upgrade(ctx context.Context, spec Spec, progress func(UpgradeStep)) (Status, error) {
	if progress == nil {
		progress = func(UpgradeStep) {}
	}
	cfg, newBin, c, release, err := m.enter(spec)
	if err != nil {
		return Status{}, err
	}
	defer release()
	from, ok := m.DataVersion(spec.ID)
	if !ok || from == spec.Version {
		err := c.ensure(ctx, m, spec, cfg, newBin)
		if err != nil {
			err = fmt.Errorf("pgserver: server %s (%s): %w", spec.ID, cfg.name, err)
		}
		return c.getStatus(), err
	}
	fail := func(step, format string, args ...any) error {
		return &UpgradeError{From: from, To: spec.Version, Step: step, Reason: fmt.Sprintf(format, args...)}
	}
	if compareMajors(spec.Version, from) < 0 {
		return c.getStatus(), fail("Check", "a downgrade is not possible")
	}
	oldBin, err := m.bin(from)
	if err != nil {
		return c.getStatus(), fmt.Errorf("pgserver: server %s: %w", spec.ID, err)
	}
	dumpBin := m.dumpBin(from)
	if dumpBin == "" {
		return c.getStatus(), fail("Check", "no pg_dumpall of PostgreSQL %s or newer is installed to dump the server (%s)", from, installHint(from))
	}
	oldSpec := spec
	oldSpec.Version = from
	// The old cluster runs with its files (and comes back from a crash
	// in the middle of a previous attempt).
	if err := c.ensure(ctx, m, oldSpec, cfg, oldBin); err != nil {
		return c.getStatus(), fmt.Errorf("pgserver: server %s: start PostgreSQL %s to upgrade it: %w", spec.ID, from, err)
	}
	t0 := time.Now()
	m.log.Info("major version upgrade starting", "server", spec.ID, "from", from, "to", spec.Version, "dump_tools", dumpBin)
	err = c.upgrade(ctx, m, spec, cfg, from, oldBin, newBin, dumpBin, progress)
	if err != nil {
		m.log.Warn("major version upgrade failed; the old cluster serves again", "server", spec.ID, "from", from, "to", spec.Version, "err", err)
		// Back to the old cluster with its own files (pg_hba.conf too).
		restore := c.ensure(context.WithoutCancel(ctx), m, oldSpec, cfg, oldBin)
		if restore != nil {
			c.fail(restore)
			return c.getStatus(), errors.Join(err, fmt.Errorf("pgserver: server %s: the old cluster does not come back: %w", spec.ID, restore))
		}
		if ctx.Err() != nil {
			return c.getStatus(), fmt.Errorf("pgserver: server %s: upgrade: %w", spec.ID, ctx.Err())
		}
		var ue *UpgradeError
		if !errors.As(err, &ue) {
			err = fail("Upgrade", "%v", err)
		}
		return c.getStatus(), err
	}
	progress(UpgradeStep{Step: "Done", Percent: 100})
	m.log.Info("major version upgrade done", "server", spec.ID, "from", from, "to", spec.Version, "took", time.Since(t0).Round(time.Millisecond))
	return c.getStatus(), nil
}

// upgrade does the steps of Upgrade once the old cluster runs; c.mu is
// held. On failure the caller brings the old cluster back with its files.
func (c *cluster) upgrade(ctx context.Context, m *Manager, spec Spec, cfg serverConfig, from, oldBin, newBin, dumpBin string, progress func(UpgradeStep)) error {
	fail := func(step string, err error) error {
		return &UpgradeError{From: from, To: spec.Version, Step: step, Reason: err.Error()}
	}
	root, err := os.OpenRoot(c.dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, leftover := range []string{upgradeData, upgradeSock} {
		if err := root.RemoveAll(leftover); err != nil {
			return err
		}
	}
	// 1. No client may write while the dump runs.
	progress(UpgradeStep{Step: "ReadOnly", Percent: 5})
	size, err := c.closeToClients(ctx, m)
	if err != nil {
		return fail("ReadOnly", err)
	}
	// 2. The new cluster: the new major's template, on a socket only.
	progress(UpgradeStep{Step: "CreateCluster", Percent: 10})
	tmpl, err := m.template(ctx, spec.Version, newBin)
	if err != nil {
		return fail("CreateCluster", err)
	}
	if err := copyTree(tmpl, root, upgradeData, m.uid, m.gid); err != nil {
		return fail("CreateCluster", fmt.Errorf("copy template: %w", err))
	}
	if err := ensureDirIn(root, upgradeSock, 0o700, m.uid, m.gid); err != nil {
		return fail("CreateCluster", err)
	}
	side := &cluster{id: c.id, dir: c.dir, dataDir: filepath.Join(c.dir, upgradeData), sockDir: filepath.Join(c.dir, upgradeSock)}
	if err := side.writeAdminOnly(m); err != nil {
		return fail("CreateCluster", err)
	}
	if n := len(filepath.Join(side.sockDir, sockName)); n > maxSockLen {
		return fail("CreateCluster", fmt.Errorf("socket path of %d bytes is too long (use a shorter data directory)", n))
	}
	p, err := side.startLocal(ctx, m, newBin)
	if p != nil {
		defer side.stopLocal(m, p)
	}
	if err != nil {
		return fail("CreateCluster", err)
	}
	// 3. Dump and restore, the dump's bytes against the data's size.
	progress(UpgradeStep{Step: "DumpRestore", Percent: 15})
	if err := m.dumpRestore(ctx, c.sockDir, side.sockDir, dumpBin, func(n int64) {
		pct := 15
		if size > 0 {
			pct += int(min(70, 70*n/size))
		}
		progress(UpgradeStep{Step: "DumpRestore", Percent: pct})
	}); err != nil {
		return fail("DumpRestore", err)
	}
	if err := side.stopLocal(m, p); err != nil {
		return fail("DumpRestore", err)
	}
	// 4. The switch: the new cluster in place of the old one.
	progress(UpgradeStep{Step: "Switch", Percent: 90})
	if err := c.stop(ctx, m); err != nil {
		return fail("Switch", err)
	}
	if err := root.RemoveAll(upgradeOld); err != nil {
		return err
	}
	if err := root.Rename(dataSubdir, upgradeOld); err != nil {
		return err
	}
	if err := errors.Join(root.Rename(upgradeData, dataSubdir), syncPath(c.dir)); err != nil {
		return errors.Join(err, c.switchBack(root))
	}
	if err := c.ensure(ctx, m, spec, cfg, newBin); err != nil {
		err = fail("Switch", fmt.Errorf("PostgreSQL %s does not start with the restored data: %w", spec.Version, err))
		return errors.Join(err, c.stop(context.WithoutCancel(ctx), m), c.switchBack(root))
	}
	if err := root.RemoveAll(upgradeOld); err != nil {
		m.log.Warn("removing the old cluster after an upgrade failed", "server", c.id, "err", err)
	}
	root.RemoveAll(upgradeSock)
	return nil
}

// switchBack puts the old cluster (data.old) back as data, removing what
// data holds; c is stopped.
func (c *cluster) switchBack(root *os.Root) error {
	if _, err := root.Lstat(upgradeOld); err != nil {
		return nil
	}
	if err := root.RemoveAll(dataSubdir); err != nil {
		return err
	}
	return errors.Join(root.Rename(upgradeOld, dataSubdir), syncPath(c.dir))
}

// recoverSwitch puts back data.old when data is missing: what a crash in
// the middle of an upgrade's switch leaves.
func recoverSwitch(root *os.Root) (bool, error) {
	if _, err := root.Lstat(dataSubdir); err == nil {
		return false, nil
	}
	if _, err := root.Lstat(filepath.Join(upgradeOld, versionFile)); err != nil {
		return false, nil
	}
	return true, root.Rename(upgradeOld, dataSubdir)
}

// writeAdminOnly writes the pg_hba.conf and pg_ident.conf that let only
// privlinkd (and the postgres user's tools) in, over the unix socket.
func (c *cluster) writeAdminOnly(m *Manager) error {
	root, err := os.OpenRoot(c.dataDir)
	if err != nil {
		return err
	}
	defer root.Close()
	return errors.Join(writeFileIn(root, hbaFile, upgradeHBA, 0o600, m.uid, m.gid),
		writeFileIn(root, identFile, renderIdent(), 0o600, m.uid, m.gid))
}

// closeToClients makes the running cluster refuse every connection but
// privlinkd's and closes every client session; it returns the size of
// its databases (the upgrade's measure of progress).
func (c *cluster) closeToClients(ctx context.Context, m *Manager) (int64, error) {
	if err := c.writeAdminOnly(m); err != nil {
		return 0, err
	}
	conn, err := m.connect(ctx, c)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := reload(ctx, conn); err != nil {
		return 0, err
	}
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`); err != nil {
		return 0, fmt.Errorf("close client sessions: %w", err)
	}
	var size int64
	if err := conn.QueryRow(ctx, `SELECT COALESCE(sum(pg_database_size(datname)), 0)::bigint FROM pg_database WHERE datallowconn`).Scan(&size); err != nil {
		return 0, fmt.Errorf("database sizes: %w", err)
	}
	return size, nil
}

// startLocal starts a postmaster of bin on the cluster's data listening
// on its unix socket only (no TCP address, so it may run in privlinkd's
// namespace) and waits until it accepts connections. It returns the
// process even on failure, for stopLocal.
func (c *cluster) startLocal(ctx context.Context, m *Manager, bin string) (*proc, error) {
	logPath := filepath.Join(c.dir, "upgrade.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_TRUNC|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", c.dataDir,
		"-c", "listen_addresses=", "-c", "unix_socket_directories="+c.sockDir,
		"-c", fmt.Sprintf("port=%d", Port), "-c", "logging_collector=off")
	cmd.SysProcAttr = m.sysProcAttr()
	cmd.Env = childEnv
	cmd.Dir = c.dataDir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start PostgreSQL of %s: %w", bin, err)
	}
	p, err := ownChild(cmd, func() {})
	if err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx, m, p, -1); err != nil {
		return p, fmt.Errorf("%w: %s", err, logTail(logPath, 0))
	}
	return p, nil
}

// stopLocal stops a postmaster startLocal started (fast shutdown, then
// SIGKILL); stopping a stopped one is not an error.
func (c *cluster) stopLocal(m *Manager, p *proc) error {
	if !p.alive() {
		return nil
	}
	if err := p.signal(syscall.SIGINT); err != nil {
		return err
	}
	if ok, _ := waitExit(context.Background(), p, fastStopTimeout); ok {
		return nil
	}
	p.signal(syscall.SIGKILL)
	return m.killCluster(c.dataDir, killTimeout)
}

// dumpRestore pipes pg_dumpall of the cluster at fromSock (roles with
// their SCRAM verifiers, databases, their settings and data) into psql on
// the cluster at toSock, stopping at the first error, both run as the
// postgres user from bin. n hears how many bytes of dump went through.
func (m *Manager) dumpRestore(ctx context.Context, fromSock, toSock, bin string, n func(int64)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dump := exec.CommandContext(ctx, filepath.Join(bin, "pg_dumpall"),
		"-h", fromSock, "-p", fmt.Sprint(Port), "-U", "postgres", "-l", "postgres", "--no-password", "--quote-all-identifiers")
	restore := exec.CommandContext(ctx, filepath.Join(bin, "psql"),
		"-h", toSock, "-p", fmt.Sprint(Port), "-U", "postgres", "-d", "postgres",
		"-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1")
	var dumpErr, restoreErr bytes.Buffer
	for _, cmd := range []*exec.Cmd{dump, restore} {
		cmd.SysProcAttr = m.sysProcAttr()
		cmd.Env = childEnv
		cmd.Dir = "/"
		cmd.WaitDelay = 5 * time.Second
	}
	dump.Stderr, restore.Stderr = &dumpErr, &restoreErr
	restore.Stdout = io.Discard
	out, err := dump.StdoutPipe()
	if err != nil {
		return err
	}
	in, err := restore.StdinPipe()
	if err != nil {
		return err
	}
	if err := restore.Start(); err != nil {
		return fmt.Errorf("start psql: %w", err)
	}
	if err := dump.Start(); err != nil {
		in.Close()
		restore.Wait()
		return fmt.Errorf("start pg_dumpall: %w", err)
	}
	var total atomic.Int64
	last := time.Now()
	counted := io.TeeReader(out, writerFunc(func(b []byte) (int, error) {
		total.Add(int64(len(b)))
		if time.Since(last) > time.Second {
			last = time.Now()
			n(total.Load())
		}
		return len(b), nil
	}))
	_, copyErr := copyDump(in, bufio.NewReaderSize(counted, dumpChunkSize))
	in.Close()
	restoreWait := restore.Wait()
	if restoreWait != nil {
		cancel() // psql stopped at an error: the dump has nowhere to go
	}
	dumpWait := dump.Wait()
	switch {
	case restoreWait != nil:
		return fmt.Errorf("restore refused: %s", lastLines(restoreErr.String(), restoreWait))
	case dumpWait != nil:
		return fmt.Errorf("pg_dumpall: %s", lastLines(dumpErr.String(), dumpWait))
	case copyErr != nil && !errors.Is(copyErr, fs.ErrClosed):
		return fmt.Errorf("dump to restore: %w", copyErr)
	}
	n(total.Load())
	return nil
}

// bootstrapRole is the line of a dump that creates the bootstrap
// superuser, which every new cluster has already (pg_dumpall writes it
// unless dumping for pg_upgrade; psql would stop at its error).
const bootstrapRole = `CREATE ROLE "postgres";`

// copyDump copies a pg_dumpall script to w without the line that creates
// the bootstrap superuser: the roles part, before the first \connect, is
// read line by line, the rest is copied as it comes.
func copyDump(w io.Writer, r *bufio.Reader) (int64, error) {
	var n int64
	for {
		line, err := r.ReadString('\n')
		if strings.TrimRight(line, "\n") != bootstrapRole {
			k, werr := io.WriteString(w, line)
			n += int64(k)
			if werr != nil {
				return n, werr
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if strings.HasPrefix(line, `\connect`) {
			k, err := io.Copy(w, r)
			return n + k, err
		}
	}
}

// writerFunc is an io.Writer of a function.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// lastLines returns the last lines of a tool's stderr (or its exit
// status when it wrote nothing), as one line.
func lastLines(stderr string, err error) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	msg := strings.TrimSpace(strings.Join(lines, " "))
	if msg == "" {
		return err.Error()
	}
	return msg
}
