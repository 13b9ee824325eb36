package pgserver

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/pki"
	"github.com/privlink/privlink/internal/testkit"
)

// requireVersion skips (or under CI fails) when PostgreSQL version is not
// installed.
func requireVersion(t testing.TB, m *Manager, version string) {
	t.Helper()
	if _, err := m.bin(version); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// testVersion is the PostgreSQL major version tests run: Debian's when
// installed, else the newest installed, unless PRIVLINK_PG_VERSION says
// otherwise.
func testVersion(t testing.TB, m *Manager) string {
	t.Helper()
	if v := os.Getenv("PRIVLINK_PG_VERSION"); v != "" {
		requireVersion(t, m, v)
		return v
	}
	vs := m.Versions()
	if len(vs) == 0 {
		requireVersion(t, m, "15")
	}
	for _, v := range slices.Backward(debianMajors) {
		if slices.Contains(vs, v) {
			return v
		}
	}
	return vs[len(vs)-1]
}

// tWriter sends log lines to t.Log.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelInfo
	switch {
	case isBenchmark(t):
		level = slog.LevelWarn
	case testing.Verbose():
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level}))
}

func isBenchmark(t testing.TB) bool {
	_, ok := t.(*testing.B)
	return ok
}

// env is a test's world: a data directory of its own under /tmp, a CA in
// it, a Fabric with a prefix of its own ("ppg" and 8 hex digits) and a
// Manager. Cleanup stops every postmaster, removes every namespace and
// file, and checks that no process, goroutine or file descriptor is left.
type env struct {
	t       testing.TB
	dataDir string
	caPath  string
	ca      *pki.CA
	fab     *fabric.Fabric
	m       *Manager
	version string
	log     *slog.Logger
	next    atomic.Uint32 // address allocator
}

func newEnv(t testing.TB) *env {
	t.Helper()
	testkit.RequireRoot(t, "pgserver tests run PostgreSQL as the postgres user in network namespaces")
	goroutines := runtime.NumGoroutine()
	// The Go runtime opens its poller (an epoll and an eventfd) the first
	// time a pollable file is used, and keeps it: use one before counting,
	// or a run that happens to open the poller reports both as leaked.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	fdsBefore := openFDs(t)
	fds := len(fdsBefore)
	// Not t.TempDir: its parents are 0700, which the postgres user
	// cannot search.
	dataDir, err := os.MkdirTemp("", "ppg-")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dataDir: dataDir, log: testLogger(t)}
	prefix := "ppg" + randomHex(4) + "-"
	e.fab, err = fabric.New(prefix, e.log)
	if err != nil {
		os.RemoveAll(dataDir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Last: everything is stopped by now.
		if err := e.fab.RemoveStale(func(string) bool { return false }); err != nil {
			t.Errorf("remove namespaces of %s: %v", prefix, err)
		}
		// A backend may outlive its postmaster by a moment on a loaded
		// machine; what must not happen is one that stays.
		left := processesUnder(dataDir)
		for wait := time.Now().Add(10 * time.Second); len(left) > 0 && time.Now().Before(wait); left = processesUnder(dataDir) {
			time.Sleep(50 * time.Millisecond)
		}
		if len(left) > 0 {
			t.Errorf("processes left under %s: %v", dataDir, left)
		}
		if err := os.RemoveAll(dataDir); err != nil {
			t.Errorf("remove %s: %v", dataDir, err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > goroutines {
			buf := make([]byte, 1<<20)
			t.Errorf("goroutines: %d before, %d after:\n%s", goroutines, n, buf[:runtime.Stack(buf, true)])
		}
		if now := openFDs(t); len(now) > fds {
			var added []string
			for fd, target := range now {
				if fdsBefore[fd] != target {
					added = append(added, fd+" → "+target)
				}
			}
			t.Errorf("file descriptors: %d before, %d after; new or changed: %v", fds, len(now), added)
		}
	})
	e.ca, err = pki.LoadOrCreateCA(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	e.caPath = filepath.Join(dataDir, pki.CertFile)
	e.m = e.newManager()
	e.version = testVersion(t, e.m)
	return e
}

// newManager returns a Manager over the env's data directory; cleanup
// stops every postmaster and closes it.
func (e *env) newManager() *Manager {
	e.t.Helper()
	m, err := NewManager(Config{DataDir: e.dataDir, CA: e.ca, Fabric: e.fab, Log: e.log})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := m.StopAll(ctx); err != nil {
			e.t.Errorf("stop all: %v", err)
		}
		m.Close()
	})
	return m
}

// server is a server spec with its password.
type server struct {
	Spec
	password string
}

// newServer returns the spec of a new server (running, with a random
// password) and creates its namespace; cleanup removes the namespace.
func (e *env) newServer() *server {
	e.t.Helper()
	n := e.next.Add(1)
	id := randomHex(8)
	s := &server{
		Spec: Spec{
			ID:                id,
			Name:              "srv-" + id[:6],
			Version:           e.version,
			Addr:              netip.AddrFrom4([4]byte{169, 254, byte(10 + n/200), byte(n%200 + 2)}),
			AdminLogin:        "azureuser",
			Running:           true,
			RestartGeneration: 1,
		},
		password: "pw-" + randomHex(8),
	}
	s.AdminVerifier = scramVerifier(e.t, s.password)
	if err := e.fab.EnsureService(fabric.ServiceSpec{ID: id, Address: netip.PrefixFrom(s.Addr, 32)}); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if err := e.fab.DeleteService(id); err != nil {
			e.t.Errorf("delete namespace of %s: %v", id, err)
		}
	})
	return s
}

func (e *env) ns(s *server) string { return e.fab.NamespaceName(fabric.KindService, s.ID) }

// ensure calls Ensure with a generous bound and fails the test on error.
func (e *env) ensure(m *Manager, s *server) Status {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := m.Ensure(ctx, s.Spec)
	if err != nil {
		e.t.Fatalf("ensure %s: %v", s.ID, err)
	}
	return st
}

// psql runs psql inside the server's namespace with conninfo (host and
// user filled in from the server unless given), each of sqls in a
// transaction of its own, and returns its output.
func (e *env) psql(s *server, password, conninfo string, sqls ...string) (string, error) {
	e.t.Helper()
	return e.psqlAt(s, Port, "postgres", password, conninfo, sqls...)
}

// psqlAt is psql to port and database db.
func (e *env) psqlAt(s *server, port int, db, password, conninfo string, sqls ...string) (string, error) {
	e.t.Helper()
	if !strings.Contains(conninfo, "host=") {
		conninfo = fmt.Sprintf("host=%s.postgres.database.azure.com ", s.Name) + conninfo
	}
	if !strings.Contains(conninfo, "user=") {
		conninfo += " user=" + s.AdminLogin
	}
	conninfo += fmt.Sprintf(" hostaddr=%s port=%d dbname=%s connect_timeout=10", s.Addr, port, db)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := []string{"netns", "exec", e.ns(s), "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", conninfo}
	for _, sql := range sqls {
		args = append(args, "-c", sql)
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "PGPASSWORD=" + password, "PGPASSFILE=/dev/null", "PGSYSCONFDIR=/nonexistent", "HOME=/nonexistent"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql %q: %w: %s", conninfo, err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// verifyFull is the conninfo of a TLS connection verifying the server's
// certificate against privlink's CA.
func (e *env) verifyFull(host string) string {
	return fmt.Sprintf("host=%s sslmode=verify-full sslrootcert=%s", host, e.caPath)
}

// dial opens a session to the server from inside its namespace, through
// fabric.DialContext, verifying its certificate.
func (e *env) dial(ctx context.Context, s *server) (*pgx.Conn, error) {
	return e.dialPort(ctx, s, Port)
}

// dialPort is dial to port (PgBouncerPort: the server's pooler).
func (e *env) dialPort(ctx context.Context, s *server, port int) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(fmt.Sprintf("host=%s.postgres.database.azure.com port=%d user=%s password=%s dbname=postgres sslmode=verify-full sslrootcert=%s",
		s.Name, port, s.AdminLogin, s.password, e.caPath))
	if err != nil {
		return nil, err
	}
	cc.LookupFunc = func(context.Context, string) ([]string, error) { return []string{s.Addr.String()}, nil }
	cc.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return e.fab.DialContext(ctx, e.ns(s), network, addr)
	}
	return pgx.ConnectConfig(ctx, cc)
}

// scramVerifier computes a SCRAM-SHA-256 verifier for password as
// PostgreSQL stores it (RFC 5802, 4096 iterations).
func scramVerifier(t testing.TB, password string) string {
	t.Helper()
	salt := make([]byte, 16)
	rand.Read(salt)
	const iter = 4096
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iter, b64(salt), b64(stored[:]), b64(mac(salted, "Server Key")))
}

// processesUnder returns the processes whose working directory is under
// dir.
func processesUnder(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd := procCwd(pid)
		if cwd == dir || strings.HasPrefix(cwd, dir+"/") {
			if st, err := readStat(pid); err == nil && st.state != 'Z' {
				out = append(out, fmt.Sprintf("%d(%s)", pid, cwd))
			}
		}
	}
	return out
}

// openFDs returns what each open file descriptor of this process refers
// to, by number.
func openFDs(t testing.TB) map[string]string {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		out[e.Name()] = target
	}
	return out
}

// postmasters returns the postmasters of the cluster at dataDir: its
// processes whose parent is not one of them.
func postmasters(t testing.TB, dataDir string) []int {
	t.Helper()
	pids, err := clusterPIDs(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, pid := range pids {
		st, err := readStat(pid)
		if err != nil || st.state == 'Z' {
			continue
		}
		if procCwd(st.ppid) != dataDir {
			out = append(out, pid)
		}
	}
	return out
}

// listener is a listening TCP socket from /proc/net/tcp{,6}.
type listener struct {
	addr  netip.AddrPort
	inode string
}

// listeners parses the listening sockets of /proc/thread-self/net/tcp and
// tcp6, as seen from the calling thread's network namespace.
func listeners() ([]listener, error) {
	var out []listener
	for _, file := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			if os.IsNotExist(err) {
				continue // no IPv6
			}
			return nil, err
		}
		for i, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if i == 0 || len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			hostPort := strings.SplitN(f[1], ":", 2)
			raw, err := hex.DecodeString(hostPort[0])
			if err != nil {
				return nil, err
			}
			// The kernel prints each 32-bit word in host (little-endian) order.
			for w := 0; w+4 <= len(raw); w += 4 {
				raw[w], raw[w+1], raw[w+2], raw[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
			}
			ip, _ := netip.AddrFromSlice(raw)
			port, err := strconv.ParseUint(hostPort[1], 16, 16)
			if err != nil {
				return nil, err
			}
			out = append(out, listener{addr: netip.AddrPortFrom(ip.Unmap(), uint16(port)), inode: f[9]})
		}
	}
	return out, nil
}

// hostListeners returns the listening sockets of the host namespace (read
// on a locked thread, which fabric never moves).
func hostListeners() ([]listener, error) {
	type res struct {
		l   []listener
		err error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		l, err := listeners()
		c <- res{l, err}
	}()
	r := <-c
	return r.l, r.err
}

// socketInodes returns the inodes of the sockets that pids hold open.
func socketInodes(pids []int) map[string]bool {
	out := map[string]bool{}
	for _, pid := range pids {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
				out[strings.TrimSuffix(ino, "]")] = true
			}
		}
	}
	return out
}
