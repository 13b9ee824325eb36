package pgserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/testkit"
)

// TestServer walks one server through its life: create from the template,
// log in over TLS with both names, the security invariants, settings
// (dynamic, static, refused), require_secure_transport, stop and start,
// delete.
func TestServer(t *testing.T) {
	e := newEnv(t)
	s := e.newServer()
	ctx := context.Background()

	t0 := time.Now()
	st := e.ensure(e.m, s)
	t.Logf("create (template %s included) to ready: %v", e.version, time.Since(t0))
	if st.State != StateReady || st.PID == 0 || st.Addr != s.Addr || st.Version != e.version {
		t.Fatalf("status after create: %+v", st)
	}
	c := newCluster(e.m.pgDir, s.ID)

	t.Run("LoginWithBothNames", func(t *testing.T) {
		for _, host := range []string{s.Name + ".postgres.database.azure.com", s.Name + ".privatelink.postgres.database.azure.com"} {
			out, err := e.psql(s, s.password, e.verifyFull(host), "SELECT current_user || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
			if err != nil {
				t.Fatal(err)
			}
			if out != s.AdminLogin+" true" {
				t.Errorf("%s: got %q, want %q", host, out, s.AdminLogin+" true")
			}
		}
	})

	t.Run("WrongNameFailsVerification", func(t *testing.T) {
		_, err := e.psql(s, s.password, e.verifyFull("other.postgres.database.azure.com"), "SELECT 1")
		if err == nil || !strings.Contains(err.Error(), "does not match host name") {
			t.Errorf("connect with another name: %v, want a host name mismatch", err)
		}
	})

	t.Run("WrongPasswordFails", func(t *testing.T) {
		_, err := e.psql(s, "wrong", e.verifyFull(s.Name+".postgres.database.azure.com"), "SELECT 1")
		if err == nil || !strings.Contains(err.Error(), "password authentication failed") {
			t.Errorf("wrong password: %v, want password authentication failed", err)
		}
	})

	t.Run("PlainRefusedWhenSecureTransportRequired", func(t *testing.T) {
		_, err := e.psql(s, s.password, "sslmode=disable", "SELECT 1")
		if err == nil || !strings.Contains(err.Error(), "no encryption") {
			t.Errorf("sslmode=disable: %v, want refused (no encryption)", err)
		}
	})

	t.Run("RolePostgresRefusedOverTCP", func(t *testing.T) {
		_, err := e.psql(s, "", e.verifyFull(s.Name+".postgres.database.azure.com")+" user=postgres", "SELECT 1")
		if err == nil || !strings.Contains(err.Error(), "rejects connection") {
			t.Errorf("role postgres over TCP: %v, want rejected", err)
		}
	})

	t.Run("AdminRole", func(t *testing.T) {
		conninfo := e.verifyFull(s.Name + ".postgres.database.azure.com")
		out, err := e.psql(s, s.password, conninfo, "SELECT rolsuper, rolcreatedb, rolcreaterole, pg_has_role('pg_monitor', 'MEMBER') FROM pg_roles WHERE rolname = current_user")
		if err != nil {
			t.Fatal(err)
		}
		wantCreateRole := map[bool]string{true: "t", false: "f"}[adminCreateRole(e.version)]
		if want := "f|t|" + wantCreateRole + "|t"; out != want {
			t.Errorf("super|createdb|createrole|pg_monitor = %q, want %q", out, want)
		}
		if _, err := e.psql(s, s.password, conninfo, "CREATE TABLE t (i int)", "INSERT INTO t VALUES (1)", "CREATE DATABASE appdb"); err != nil {
			t.Errorf("admin creates a table and a database: %v", err)
		}
		// What would run programs as the postgres system user.
		for _, sql := range []string{
			"GRANT pg_execute_server_program TO " + s.AdminLogin,
			"COPY t TO PROGRAM 'true'",
			"ALTER SYSTEM SET work_mem = '1GB'",
		} {
			if _, err := e.psql(s, s.password, conninfo, sql); err == nil {
				t.Errorf("admin may %s", sql)
			}
		}
	})

	t.Run("SecurityInvariants", func(t *testing.T) {
		checkInvariants(t, e, s, c)
	})

	t.Run("DynamicSetting", func(t *testing.T) {
		s.Settings = map[string]string{"work_mem": "8MB", "log_min_duration_statement": "250"}
		st := e.ensure(e.m, s)
		if st.PID != e.mustStatus(s).PID || len(st.PendingRestart) != 0 {
			t.Errorf("status: %+v", st)
		}
		if v, err := e.m.Show(ctx, s.ID, "work_mem"); err != nil || v != "8MB" {
			t.Errorf("work_mem = %q, %v; want 8MB", v, err)
		}
		out, err := e.psql(s, s.password, e.verifyFull(s.Name+".postgres.database.azure.com"), "SHOW log_min_duration_statement")
		if err != nil || out != "250ms" {
			t.Errorf("log_min_duration_statement in a client session = %q, %v; want 250ms", out, err)
		}
	})

	t.Run("StaticSettingAfterRestartGeneration", func(t *testing.T) {
		before := e.mustStatus(s).PID
		s.Settings["shared_buffers"] = "48MB"
		st := e.ensure(e.m, s)
		if st.PID != before || !slices.Contains(st.PendingRestart, "shared_buffers") {
			t.Errorf("without a restart: %+v, want the same pid and shared_buffers pending", st)
		}
		if v, _ := e.m.Show(ctx, s.ID, "shared_buffers"); v != "32MB" {
			t.Errorf("shared_buffers before the restart = %q, want 32MB", v)
		}
		s.RestartGeneration++
		st = e.ensure(e.m, s)
		if st.PID == before || len(st.PendingRestart) != 0 {
			t.Errorf("after the restart: %+v, want a new pid and nothing pending", st)
		}
		if v, _ := e.m.Show(ctx, s.ID, "shared_buffers"); v != "48MB" {
			t.Errorf("shared_buffers after the restart = %q, want 48MB", v)
		}
		// The same generation again restarts nothing.
		if st2 := e.ensure(e.m, s); st2.PID != st.PID {
			t.Errorf("ensure with the same generation restarted: pid %d -> %d", st.PID, st2.PID)
		}
	})

	t.Run("RefusedSettings", func(t *testing.T) {
		good := s.Settings
		pid := e.mustStatus(s).PID
		for _, bad := range []map[string]string{
			{"work_mem": "lots"},
			{"shared_buffers": "many"},
			{"no_such_setting": "1"},
			{"archive_command": "cp %p /tmp"},
			{"listen_addresses": "*"},
			{"work_mem": "1MB\nlisten_addresses = '*'"},
		} {
			s.Settings = bad
			_, err := e.m.Ensure(ctx, s.Spec)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("settings %q: %v, want ErrInvalid", bad, err)
			}
			if st := e.mustStatus(s); st.State != StateReady || st.PID != pid {
				t.Errorf("status after refused settings %q: %+v", bad, st)
			}
		}
		s.Settings = good
		if st := e.ensure(e.m, s); st.PID != pid || st.State != StateReady {
			t.Errorf("after refused settings: %+v, want ready with pid %d", st, pid)
		}
		if v, _ := e.m.Show(ctx, s.ID, "work_mem"); v != "8MB" {
			t.Errorf("work_mem = %q after refused settings, want 8MB", v)
		}
	})

	t.Run("SecureTransportOff", func(t *testing.T) {
		s.Settings["require_secure_transport"] = "OFF"
		e.ensure(e.m, s)
		out, err := e.psql(s, s.password, "sslmode=disable", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
		if err != nil || out != "f" {
			t.Errorf("sslmode=disable with require_secure_transport off: %q, %v", out, err)
		}
		s.Settings["require_secure_transport"] = "on"
		e.ensure(e.m, s)
		if _, err := e.psql(s, s.password, "sslmode=disable", "SELECT 1"); err == nil {
			t.Error("sslmode=disable works again with require_secure_transport on")
		}
	})

	t.Run("AddressChange", func(t *testing.T) {
		before := e.mustStatus(s).PID
		s.Addr = netip.AddrFrom4([4]byte{169, 254, 99, 7})
		if err := e.fab.EnsureService(fabric.ServiceSpec{ID: s.ID, Address: netip.PrefixFrom(s.Addr, 32)}); err != nil {
			t.Fatal(err)
		}
		st := e.ensure(e.m, s)
		if st.PID == before || st.Addr != s.Addr {
			t.Errorf("after the address change: %+v, want a restarted postmaster on %v", st, s.Addr)
		}
		if _, err := e.psql(s, s.password, e.verifyFull(s.Name+".postgres.database.azure.com"), "SELECT 1"); err != nil {
			t.Errorf("on the new address: %v", err)
		}
	})

	t.Run("NamespaceRecreated", func(t *testing.T) {
		// A namespace deleted and made again is a new one: the postmaster
		// in the old one is unreachable and must move.
		before := e.mustStatus(s).PID
		if err := e.fab.DeleteService(s.ID); err != nil {
			t.Fatal(err)
		}
		if err := e.fab.EnsureService(fabric.ServiceSpec{ID: s.ID, Address: netip.PrefixFrom(s.Addr, 32)}); err != nil {
			t.Fatal(err)
		}
		st := e.ensure(e.m, s)
		if st.PID == before {
			t.Errorf("postmaster %d stayed in the old namespace", before)
		}
		if _, err := e.psql(s, s.password, e.verifyFull(s.Name+".postgres.database.azure.com"), "SELECT 1"); err != nil {
			t.Errorf("in the new namespace: %v", err)
		}
		checkInvariants(t, e, s, c)
	})

	t.Run("StopStart", func(t *testing.T) {
		// An operator's process sitting in the data directory is not the
		// server's: stopping leaves it alone.
		bystander := exec.Command("sleep", "300")
		bystander.Dir = c.dataDir
		if err := bystander.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			bystander.Process.Kill()
			bystander.Wait()
		}()
		s.Running = false
		st := e.ensure(e.m, s)
		if st.State != StateStopped || st.PID != 0 {
			t.Errorf("stopped: %+v", st)
		}
		// A process the stop killed may still be on its way out for a
		// moment (stop, like killCluster, counts the dying as gone); what
		// must not happen is one that stays.
		var pids []int
		if !testkit.Poll(10*time.Second, func() bool {
			pids, _ = clusterPIDs(c.dataDir)
			return slices.Equal(pids, []int{bystander.Process.Pid})
		}) {
			t.Errorf("processes in the data directory of a stopped server: %v, want only the bystander %d", pids, bystander.Process.Pid)
		}
		bystander.Process.Kill()
		if _, err := e.m.Show(ctx, s.ID, "work_mem"); !errors.Is(err, ErrNotRunning) {
			t.Errorf("show on a stopped server: %v, want ErrNotRunning", err)
		}
		s.Running = true
		st = e.ensure(e.m, s)
		if st.State != StateReady {
			t.Errorf("started: %+v", st)
		}
		if _, err := e.psql(s, s.password, e.verifyFull(s.Name+".postgres.database.azure.com"), "SELECT count(*) FROM t"); err != nil {
			t.Errorf("after start: %v", err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		if err := e.m.Delete(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(c.dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after delete: %v", c.dir, err)
		}
		if left := processesUnder(c.dir); len(left) > 0 {
			t.Errorf("processes after delete: %v", left)
		}
		if err := e.m.Delete(ctx, s.ID); err != nil {
			t.Errorf("second delete: %v", err)
		}
	})
}

func (e *env) mustStatus(s *server) Status {
	e.t.Helper()
	st, ok := e.m.Status(s.ID)
	if !ok {
		e.t.Fatalf("no status for %s", s.ID)
	}
	return st
}

// checkInvariants checks what DESIGN.md promises of a running server.
func checkInvariants(t *testing.T, e *env, s *server, c *cluster) {
	pids, err := clusterPIDs(c.dataDir)
	if err != nil || len(pids) < 4 {
		t.Fatalf("processes of the cluster: %v, %v", pids, err)
	}
	pm := postmasters(t, c.dataDir)
	if len(pm) != 1 || pm[0] != e.mustStatus(s).PID {
		t.Fatalf("postmasters %v, want exactly the one of the status (%d)", pm, e.mustStatus(s).PID)
	}

	// Every process runs as postgres, inside the namespace.
	var nsLink string
	if err := e.fab.Do(e.ns(s), func() error {
		var err error
		nsLink, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	hostLink, _ := os.Readlink("/proc/self/ns/net")
	if nsLink == hostLink {
		t.Fatalf("namespace %s is the host's", e.ns(s))
	}
	for _, pid := range pids {
		uids, err := procUIDs(pid)
		if err != nil {
			continue // exited meanwhile
		}
		for _, u := range uids {
			if u != e.m.uid {
				t.Errorf("pid %d runs with uids %v, want all %d (postgres)", pid, uids, e.m.uid)
				break
			}
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && l != nsLink {
			t.Errorf("pid %d is in network namespace %s, want %s (%s)", pid, l, nsLink, e.ns(s))
		}
	}

	// Directories and the key.
	for _, f := range []struct {
		path string
		mode fs.FileMode
		uid  int
	}{
		{c.dir, 0o711, 0},
		{c.dataDir, 0o700, e.m.uid},
		{c.sockDir, 0o700, e.m.uid},
		{filepath.Join(c.dataDir, keyFile), 0o600, e.m.uid},
		{e.m.pgDir, 0o711, 0},
		{e.m.templateDir(e.version), 0o700, e.m.uid},
	} {
		st, err := os.Lstat(f.path)
		if err != nil {
			t.Error(err)
			continue
		}
		if st.Mode().Perm() != f.mode || int(st.Sys().(*syscall.Stat_t).Uid) != f.uid {
			t.Errorf("%s: mode %v uid %d, want %v uid %d", f.path, st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Uid, f.mode, f.uid)
		}
	}

	// TCP: one listener, on the server's address inside the namespace;
	// none of the cluster's sockets listens in the host namespace.
	inodes := socketInodes(pids)
	host, err := hostListeners()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range host {
		if inodes[l.inode] || l.addr.Addr() == s.Addr {
			t.Errorf("listening in the host namespace: %v (inode %s)", l.addr, l.inode)
		}
	}
	var inNS []listener
	if err := e.fab.Do(e.ns(s), func() error {
		var err error
		inNS, err = listeners()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, l := range inNS {
		if inodes[l.inode] {
			ours = append(ours, l.addr.String())
		}
	}
	if want := fmt.Sprintf("%s:%d", s.Addr, Port); len(ours) != 1 || ours[0] != want {
		t.Errorf("listeners of the cluster in its namespace: %v, want [%s]", ours, want)
	}

	// No trust line, in the file or as PostgreSQL read it.
	hba, err := os.ReadFile(filepath.Join(c.dataDir, hbaFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(hba), "trust") {
		t.Errorf("pg_hba.conf has trust:\n%s", hba)
	}
	conn, err := e.m.Conn(context.Background(), s.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var methods []string
	if err := conn.QueryRow(context.Background(), "SELECT array_agg(DISTINCT auth_method) FROM pg_hba_file_rules").Scan(&methods); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(methods, "trust") || len(methods) == 0 {
		t.Errorf("pg_hba_file_rules methods %v", methods)
	}
	var listen, ssl string
	if err := conn.QueryRow(context.Background(), "SELECT current_setting('listen_addresses'), current_setting('ssl')").Scan(&listen, &ssl); err != nil {
		t.Fatal(err)
	}
	if listen != s.Addr.String() || ssl != "on" {
		t.Errorf("listen_addresses %q ssl %q", listen, ssl)
	}
}

// TestSupervisorRestartsKilledPostmaster kills -9 a postmaster (and, after
// a Manager restart, an adopted one) and waits for it to answer again.
func TestSupervisorRestartsKilledPostmaster(t *testing.T) {
	e := newEnv(t)
	s := e.newServer()
	st := e.ensure(e.m, s)
	run := func(m *Manager) func() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}
	killAndWait := func(m *Manager, pid int) int {
		t.Helper()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		var now int
		testkit.WaitFor(t, time.Minute, "postmaster back after kill -9", func() error {
			st, _ := m.Status(s.ID)
			if st.State != StateReady || st.PID == pid {
				return fmt.Errorf("status %+v", st)
			}
			_, err := e.psql(s, s.password, e.verifyFull(s.Name+".postgres.database.azure.com"), "SELECT 1")
			now = st.PID
			return err
		})
		t.Logf("answering again %v after kill -9 of %d (new pid %d)", time.Since(t0).Round(time.Millisecond), pid, now)
		return now
	}

	stop := run(e.m)
	pid := killAndWait(e.m, st.PID)
	stop()

	// A new Manager adopts that postmaster; killed, it is restarted too.
	e.m.Close()
	m2 := e.newManager()
	if st := e.ensure(m2, s); st.PID != pid {
		t.Fatalf("new manager: pid %d, want the adopted %d", st.PID, pid)
	}
	stop = run(m2)
	defer stop()
	killAndWait(m2, pid)
	if pm := postmasters(t, filepath.Join(m2.pgDir, s.ID, dataSubdir)); len(pm) != 1 {
		t.Errorf("postmasters after restarts: %v", pm)
	}
}

// TestAdoption restarts the Manager under a running server: the new one
// adopts the postmaster (same pid, no second one) and an established
// session survives.
func TestAdoption(t *testing.T) {
	e := newEnv(t)
	s := e.newServer()
	ctx := context.Background()
	st := e.ensure(e.m, s)
	session, err := e.dial(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close(ctx)
	if _, err := session.Exec(ctx, "CREATE TEMP TABLE kept (i int)"); err != nil {
		t.Fatal(err)
	}

	if err := e.m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second close: %v, want net.ErrClosed", err)
	}
	if _, err := e.m.Ensure(ctx, s.Spec); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ensure after close: %v, want net.ErrClosed", err)
	}

	m2 := e.newManager()
	if !m2.Running(s.ID) {
		t.Error("a new manager does not see the postmaster left running")
	}
	if m2.Running("no-such-server") {
		t.Error("Running of a server that does not exist")
	}
	st2 := e.ensure(m2, s)
	if st2.PID != st.PID || st2.State != StateReady {
		t.Errorf("after the manager restart: %+v, want ready with pid %d", st2, st.PID)
	}
	if pm := postmasters(t, filepath.Join(m2.pgDir, s.ID, dataSubdir)); len(pm) != 1 || pm[0] != st.PID {
		t.Errorf("postmasters %v, want [%d]", pm, st.PID)
	}
	if _, err := session.Exec(ctx, "INSERT INTO kept VALUES (1)"); err != nil {
		t.Errorf("session across the manager restart: %v", err)
	}
	// Settings still apply to the adopted postmaster.
	s.Settings = map[string]string{"work_mem": "6MB"}
	e.ensure(m2, s)
	if v, _ := m2.Show(ctx, s.ID, "work_mem"); v != "6MB" {
		t.Errorf("work_mem on the adopted postmaster = %q, want 6MB", v)
	}
	if !m2.Running(s.ID) {
		t.Error("Running false for the adopted, ready server")
	}
	// Stopped (as by a reboot): a new manager sees that nothing runs.
	if err := m2.StopAll(ctx); err != nil {
		t.Fatal(err)
	}
	if m2.Running(s.ID) {
		t.Error("Running true after StopAll")
	}
	if m3 := e.newManager(); m3.Running(s.ID) {
		t.Error("a new manager sees a postmaster that was stopped")
	}
}

// TestTerminateBackends ends the sessions of a client address.
func TestTerminateBackends(t *testing.T) {
	e := newEnv(t)
	s := e.newServer()
	ctx := context.Background()
	e.ensure(e.m, s)
	session, err := e.dial(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close(ctx)
	other := netip.MustParsePrefix("10.9.0.0/16")
	if n, err := e.m.TerminateBackends(ctx, s.ID, []netip.Prefix{other}); err != nil || n != 0 {
		t.Errorf("terminate %v: %d, %v; want 0", other, n, err)
	}
	if _, err := session.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("session after terminating others: %v", err)
	}
	// Inside the namespace the client's address is the server's own.
	if n, err := e.m.TerminateBackends(ctx, s.ID, []netip.Prefix{netip.PrefixFrom(s.Addr, 32)}); err != nil || n != 1 {
		t.Errorf("terminate %v: %d, %v; want 1", s.Addr, n, err)
	}
	testkit.WaitFor(t, 10*time.Second, "terminated session fails", func() error {
		if _, err := session.Exec(ctx, "SELECT 1"); err == nil {
			return errors.New("session still works")
		}
		return nil
	})
}

// TestManyServers creates twenty servers at once, checks that all answer,
// and deletes them at once.
func TestManyServers(t *testing.T) {
	e := newEnv(t)
	const n = 20
	servers := make([]*server, n)
	for i := range servers {
		servers[i] = e.newServer()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, s := range servers {
		wg.Go(func() { _, errs[i] = e.m.Ensure(ctx, s.Spec) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d servers created and ready in %v", n, time.Since(t0).Round(time.Millisecond))
	for i, s := range servers {
		wg.Go(func() {
			out, err := e.psql(s, s.password, e.verifyFull(s.Name+".privatelink.postgres.database.azure.com"), "SELECT current_setting('cluster_name')")
			if err == nil && out != s.Name {
				err = fmt.Errorf("server %s answers as %q", s.Name, out)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	for i, s := range servers {
		wg.Go(func() { errs[i] = e.m.Delete(ctx, s.ID) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d servers deleted in %v", n, time.Since(t0).Round(time.Millisecond))
	entries, _ := os.ReadDir(e.m.pgDir)
	for _, en := range entries {
		if !strings.HasPrefix(en.Name(), templatePrefix) && !strings.HasPrefix(en.Name(), ".") {
			t.Errorf("left in %s: %s", e.m.pgDir, en.Name())
		}
	}
}

// TestTemplateOnce makes the template from many goroutines of two
// Managers at once, after a crash left a half-made one: one initdb wins,
// the leftover goes.
func TestTemplateOnce(t *testing.T) {
	e := newEnv(t)
	m2 := e.newManager()
	stale := filepath.Join(e.m.pgDir, "."+templatePrefix+e.version+".tmp-crashed")
	if err := os.MkdirAll(filepath.Join(stale, "base"), 0o700); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	dirs := make([]string, 6)
	errs := make([]error, 6)
	for i := range dirs {
		m := e.m
		if i%2 == 1 {
			m = m2
		}
		wg.Go(func() { dirs[i], errs[i] = m.template(ctx, e.version, m.bins[e.version]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if d != e.m.templateDir(e.version) {
			t.Errorf("template dir %q, want %q", d, e.m.templateDir(e.version))
		}
	}
	left, _ := filepath.Glob(filepath.Join(e.m.pgDir, ".*.tmp-*"))
	if len(left) != 0 {
		t.Errorf("left: %v", left)
	}
	conf, err := os.ReadFile(filepath.Join(dirs[0], mainConfFile))
	if err != nil || !strings.Contains(string(conf), includeLine) {
		t.Errorf("template postgresql.conf lacks the include: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dirs[0], confDir)); err != nil {
		t.Error(err)
	}
}

// TestEnsureErrors checks what Ensure refuses and how it says so.
func TestEnsureErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.newServer()

	spec := s.Spec
	spec.Version = "99"
	_, err := e.m.Ensure(ctx, spec)
	var ve *VersionError
	if !errors.As(err, &ve) || !errors.Is(err, ErrVersionNotInstalled) ||
		!strings.Contains(err.Error(), "PostgreSQL 99 is not installed; installed: "+strings.Join(e.m.Versions(), ", ")+";") {
		t.Errorf("unknown version: %v", err)
	}

	// No namespace: the error says so, and nothing runs.
	spec = s.Spec
	spec.ID = randomHex(8)
	_, err = e.m.Ensure(ctx, spec)
	if err == nil || !errors.Is(err, fabric.ErrNotFound) || !strings.Contains(err.Error(), "EnsureService") {
		t.Errorf("without a namespace: %v", err)
	}
	if st, _ := e.m.Status(spec.ID); st.State != StateFailed {
		t.Errorf("status without a namespace: %+v", st)
	}
	if err := e.m.Delete(ctx, spec.ID); err != nil {
		t.Error(err)
	}

	for name, mutate := range map[string]func(*Spec){
		"id":       func(s *Spec) { s.ID = "../x" },
		"template": func(s *Spec) { s.ID = "template-15" },
		"name":     func(s *Spec) { s.Name = "-x" },
		"addr":     func(s *Spec) { s.Addr = netip.MustParseAddr("10.0.0.4") },
		"login":    func(s *Spec) { s.AdminLogin = "pg_admin" },
		"verifier": func(s *Spec) { s.AdminVerifier = "secret" },
		"setting":  func(s *Spec) { s.Settings = map[string]string{"ssl": "off"} },
	} {
		spec := s.Spec
		mutate(&spec)
		if _, err := e.m.Ensure(ctx, spec); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// unmappableSharedBuffers returns a shared_buffers value that PostgreSQL
// accepts (postgres -C) but cannot allocate at start on this machine:
// twice its memory and swap, which the kernel's overcommit heuristic
// refuses. It skips the test where the kernel would map it anyway
// (vm.overcommit_memory = 1).
func unmappableSharedBuffers(t *testing.T) string {
	t.Helper()
	mode, err := os.ReadFile("/proc/sys/vm/overcommit_memory")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(mode)) == "1" {
		t.Skip("vm.overcommit_memory = 1: the kernel maps any shared memory size, so no shared_buffers value fails the start")
	}
	meminfo, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	var kb int64
	for line := range strings.Lines(string(meminfo)) {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "MemTotal:" || f[0] == "SwapTotal:") {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			kb += n
		}
	}
	gb := 2*kb>>20 + 1
	if gb >= 8192 {
		t.Skipf("%d GB of memory and swap: more than shared_buffers can ask for", kb>>20)
	}
	return fmt.Sprintf("%dGB", gb)
}

// TestStartFailure: settings PostgreSQL accepts but cannot start with (a
// shared_buffers larger than the machine) make Ensure fail at once with a
// StartError that quotes the postmaster's FATAL line; the cluster does not
// run, the supervisor holds back, and Ensure with the previous settings
// brings it back with its data.
func TestStartFailure(t *testing.T) {
	e := newEnv(t)
	s := e.newServer()
	huge := unmappableSharedBuffers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e.ensure(e.m, s)
	if _, err := e.psql(s, s.password, e.verifyFull(s.Name+".postgres.database.azure.com"), "CREATE TABLE kept (v int)", "INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	stop := func() func() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.m.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}()
	defer stop()

	good := s.Spec
	s.Settings = map[string]string{"shared_buffers": huge}
	s.RestartGeneration++
	_, err := e.m.Ensure(ctx, s.Spec)
	var se *StartError
	if !errors.Is(err, ErrStartFailed) || !errors.As(err, &se) {
		t.Fatalf("ensure with shared_buffers = %s: %v, want a StartError", huge, err)
	}
	if !strings.Contains(se.Reason, "could not map anonymous shared memory") {
		t.Errorf("reason %q does not quote the FATAL line", se.Reason)
	}
	if st := e.mustStatus(s); st.State != StateFailed || st.PID != 0 {
		t.Errorf("status after a failed start: %+v", st)
	}
	e.m.mu.Lock()
	c := e.m.clusters[s.ID]
	e.m.mu.Unlock()
	c.mu.Lock()
	held := c.retryAt.After(time.Now())
	c.mu.Unlock()
	if !held {
		t.Error("the supervisor may start the failed settings again at once")
	}
	if pm := postmasters(t, c.dataDir); len(pm) != 0 {
		t.Errorf("postmasters after a failed start: %v", pm)
	}

	// Back to the previous settings, with the restart generation the
	// failed spec had: it starts and has its data.
	good.RestartGeneration = s.RestartGeneration
	s.Spec = good
	if st := e.ensure(e.m, s); st.State != StateReady {
		t.Fatalf("status with the previous settings: %+v", st)
	}
	out, err := e.psql(s, s.password, e.verifyFull(s.Name+".postgres.database.azure.com"), "SELECT v FROM kept")
	if err != nil || out != "42" {
		t.Fatalf("after going back: %q %v", out, err)
	}
	if v, _ := e.m.Show(ctx, s.ID, "shared_buffers"); v == huge {
		t.Errorf("shared_buffers = %s after going back", v)
	}
}
