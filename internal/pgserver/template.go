package pgserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// templateDir is the template cluster of a version.
func (m *Manager) templateDir(version string) string {
	return filepath.Join(m.pgDir, templatePrefix+version)
}

// template returns the template cluster of version, creating it first if
// needed: initdb (as the postgres user) into a temporary directory, which
// is renamed into place only when complete. Concurrent callers, in this
// process (a mutex per version) or in others (a lock file), wait for one
// initdb; a temporary directory left by a crash is removed by the next
// creation.
func (m *Manager) template(ctx context.Context, version, bin string) (string, error) {
	dir := m.templateDir(version)
	if templateComplete(dir) {
		return dir, nil
	}
	mu := m.templateMutex(version)
	mu.Lock()
	defer mu.Unlock()
	if templateComplete(dir) {
		return dir, nil
	}
	unlock, err := lockFile(ctx, filepath.Join(m.pgDir, "."+templatePrefix+version+".lock"))
	if err != nil {
		return "", fmt.Errorf("pgserver: template %s: %w", version, err)
	}
	defer unlock()
	if templateComplete(dir) {
		return dir, nil
	}
	if err := m.buildTemplate(ctx, version, bin, dir); err != nil {
		return "", fmt.Errorf("pgserver: template %s: %w", version, err)
	}
	return dir, nil
}

// templateComplete reports whether a template directory exists; it is
// only ever renamed into place complete.
func templateComplete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, versionFile))
	return err == nil
}

func (m *Manager) buildTemplate(ctx context.Context, version, bin, dir string) error {
	tmpPrefix := "." + filepath.Base(dir) + ".tmp-"
	stale, _ := filepath.Glob(filepath.Join(m.pgDir, tmpPrefix+"*"))
	for _, s := range stale {
		m.log.Warn("removing template left by an interrupted creation", "dir", s)
		if err := os.RemoveAll(s); err != nil {
			return fmt.Errorf("remove stale %s: %w", s, err)
		}
	}
	tmp := filepath.Join(m.pgDir, tmpPrefix+randomHex(4))
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	t0 := time.Now()
	if err := m.initdb(ctx, bin, tmp); err != nil {
		return err
	}
	// initdb synced the data; privlink's edit and the rename must be
	// durable too before the template is used.
	if err := syncPath(filepath.Join(tmp, mainConfFile)); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	ok = true
	if err := syncPath(m.pgDir); err != nil {
		return err
	}
	m.log.Info("created template cluster", "version", version, "dir", dir, "took", time.Since(t0).Round(time.Millisecond))
	return nil
}

// Spare copies of a template: made in the background after a server is
// created, so that the next creation is a rename instead of a copy.
const (
	sparePrefix    = ".spare-"    // .spare-<version>-<random>: complete
	spareTmpPrefix = ".sparetmp-" // .sparetmp-<version>-<random>: being copied
	// spareTmpStale is the age after which an unfinished spare is taken
	// for a crash's leftover (a copy takes well under a second).
	spareTmpStale = 10 * time.Minute
)

// takeSpare renames a spare copy of version's template to dst and
// reports whether there was one. A rename is atomic, so two takers never
// get the same spare.
func (m *Manager) takeSpare(version, dst string) bool {
	if m.noSpare {
		return false
	}
	spares, _ := filepath.Glob(filepath.Join(m.pgDir, sparePrefix+version+"-*"))
	for _, s := range spares {
		if err := os.Rename(s, dst); err == nil {
			return true
		}
	}
	return false
}

// refillSpare makes a spare copy of version's template in the background,
// unless one exists or is being made. Close waits for it.
func (m *Manager) refillSpare(version, bin string) {
	if m.noSpare {
		return
	}
	m.mu.Lock()
	if m.closed || m.refilling[version] {
		m.mu.Unlock()
		return
	}
	m.refilling[version] = true
	m.bg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.bg.Done()
		defer func() {
			m.mu.Lock()
			delete(m.refilling, version)
			m.mu.Unlock()
		}()
		if err := m.makeSpare(version, bin); err != nil {
			m.log.Warn("making a spare copy of the template failed", "version", version, "err", err)
		}
	}()
}

func (m *Manager) makeSpare(version, bin string) error {
	if spares, _ := filepath.Glob(filepath.Join(m.pgDir, sparePrefix+version+"-*")); len(spares) > 0 {
		return nil
	}
	stale, _ := filepath.Glob(filepath.Join(m.pgDir, spareTmpPrefix+version+"-*"))
	for _, s := range stale {
		if st, err := os.Lstat(s); err == nil && time.Since(st.ModTime()) > spareTmpStale {
			os.RemoveAll(s)
		}
	}
	tmpl, err := m.template(context.Background(), version, bin)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(m.pgDir)
	if err != nil {
		return err
	}
	defer root.Close()
	name := randomHex(4)
	tmp := spareTmpPrefix + version + "-" + name
	if err := copyTree(tmpl, root, tmp, m.uid, m.gid); err != nil {
		root.RemoveAll(tmp)
		return err
	}
	return root.Rename(tmp, sparePrefix+version+"-"+name)
}

// runAsPostgres runs a PostgreSQL tool as the postgres user, in the host
// namespace (it must not open sockets), with a minimal environment, and
// returns its combined output.
func (m *Manager) runAsPostgres(ctx context.Context, path string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.SysProcAttr = m.sysProcAttr()
	cmd.Env = childEnv
	cmd.Dir = "/"
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

// childEnv is the whole environment of PostgreSQL processes: nothing of
// privlinkd's own environment leaks into them.
var childEnv = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "TZ=UTC"}

// sysProcAttr runs a child as the postgres user with no supplementary
// groups, in a session (and process group) of its own, without a parent
// death signal: a postmaster must outlive privlinkd.
func (m *Manager) sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Setsid:     true,
		Credential: &syscall.Credential{Uid: uint32(m.uid), Gid: uint32(m.gid), Groups: []uint32{}},
	}
}

// ensureInclude makes postgresql.conf end with the include of conf.d.
func ensureInclude(root *os.Root, uid, gid int) error {
	cur, err := root.ReadFile(mainConfFile)
	if err != nil {
		return err
	}
	for line := range strings.Lines(string(cur)) {
		if strings.TrimRight(line, "\n") == includeLine {
			return nil
		}
	}
	if len(cur) > 0 && cur[len(cur)-1] != '\n' {
		cur = append(cur, '\n')
	}
	cur = append(cur, "\n"+includeLine+"\n"...)
	return writeFileIn(root, mainConfFile, cur, 0o600, uid, gid)
}

// copyWorkers is how many files copyTree copies at once: creating files
// costs mostly kernel time, which two cores share.
const copyWorkers = 4

// copyTree copies the directory tree src to the new directory dst inside
// root, preserving modes, with every copy owned by uid:gid. Regular files
// are copied in the kernel (copy_file_range), copyWorkers at a time. It
// refuses anything but directories and regular files (a template holds
// nothing else). The copy works on directory file descriptors and never
// follows a link.
func copyTree(src string, root *os.Root, dst string, uid, gid int) error {
	if err := root.Mkdir(dst, 0o700); err != nil {
		return err
	}
	top, err := root.OpenFile(dst, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	// Directories are made first, in order; their files are queued.
	type job struct {
		src  string
		dir  *os.File
		name string
	}
	var (
		jobs []job
		dirs = []*os.File{top}
	)
	defer func() {
		for _, d := range dirs {
			d.Close()
		}
	}()
	var walk func(src string, dst *os.File) error
	walk = func(src string, dst *os.File) error {
		st, err := os.Stat(src)
		if err != nil {
			return err
		}
		if err := errors.Join(dst.Chown(uid, gid), dst.Chmod(st.Mode().Perm())); err != nil {
			return err
		}
		entries, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		for _, e := range entries {
			path := filepath.Join(src, e.Name())
			switch {
			case e.IsDir():
				sub, err := makeDirAt(dst, e.Name())
				if err != nil {
					return err
				}
				dirs = append(dirs, sub)
				if err := walk(path, sub); err != nil {
					return err
				}
			case e.Type().IsRegular():
				jobs = append(jobs, job{src: path, dir: dst, name: e.Name()})
			default:
				return fmt.Errorf("copy %s: unexpected file type %v", path, e.Type())
			}
		}
		return nil
	}
	if err := walk(src, top); err != nil {
		return err
	}
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		mu   sync.Mutex
		errs []error
	)
	for range copyWorkers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				j := jobs[i]
				if err := copyFile(j.src, j.dir, j.name, uid, gid); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// makeDirAt makes the directory name in dir and opens it.
func makeDirAt(dir *os.File, name string) (*os.File, error) {
	if err := unix.Mkdirat(int(dir.Fd()), name, 0o700); err != nil {
		return nil, fmt.Errorf("mkdir %s: %w", name, err)
	}
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// copyFile copies the regular file src to the new file name in the
// directory dir.
func copyFile(src string, dir *os.File, name string, uid, gid int) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	out := os.NewFile(uintptr(fd), name)
	_, err = io.Copy(out, in)
	err = errors.Join(err, out.Chown(uid, gid), out.Chmod(st.Mode().Perm()))
	return errors.Join(err, out.Close())
}

// writeFileIn writes data to name inside root atomically (a new file,
// then a rename over name) with the given mode and owner. It never follows
// a link that the directory's owner may have placed at name.
func writeFileIn(root *os.Root, name string, data []byte, perm fs.FileMode, uid, gid int) error {
	tmp := filepath.Join(filepath.Dir(name), "."+filepath.Base(name)+".privlink-"+randomHex(4))
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	err = errors.Join(err, f.Chown(uid, gid), f.Chmod(perm), f.Sync(), f.Close())
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		root.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// syncPath fsyncs a file or directory.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

// lockFile takes an exclusive flock on path (created if needed) and
// returns its release; it waits for another holder until ctx ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
