package pgserver

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/privlink/privlink/internal/testkit"
)

// TestPgBouncer runs the built-in pooler of a server: logins with the
// server's roles over TLS with its certificate (SCRAM, passthrough to
// PostgreSQL), no superuser nor privlink's own role through it, the
// console for stats_users only, a setting applied by reload, adoption by
// a new Manager, a restart by Run when it dies, the auth function in a
// database made from template0 by Run, and stopping when disabled.
func TestPgBouncer(t *testing.T) {
	if _, err := os.Stat(PgBouncerBinary); err != nil {
		t.Skipf("%s: %v (apt-get install pgbouncer)", PgBouncerBinary, err)
	}
	e := newEnv(t)
	s := e.newServer()
	s.Settings = map[string]string{"pgbouncer.enabled": "true", "pgbouncer.default_pool_size": "3", "pgbouncer.stats_users": "azureuser,watcher"}
	e.ensure(e.m, s)
	pid, err := e.m.PgBouncerPID(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	host := s.Name + ".postgres.database.azure.com"
	bouncer := func(user, password, db string, sqls ...string) (string, error) {
		t.Helper()
		return e.psqlAt(s, PgBouncerPort, db, password, e.verifyFull(host)+" user="+user, sqls...)
	}
	if out, err := bouncer(s.AdminLogin, s.password, "postgres", "SELECT current_user || ' ' || coalesce(inet_client_addr()::text, 'socket')"); err != nil || out != s.AdminLogin+" socket" {
		t.Fatalf("login through pgbouncer: %q, %v; want the admin, over the server's socket", out, err)
	}
	if _, err := bouncer(s.AdminLogin, "wrong", "postgres", "SELECT 1"); err == nil {
		t.Error("a wrong password got in through pgbouncer")
	}
	if _, err := e.psqlAt(s, PgBouncerPort, "postgres", s.password, "host="+host+" sslmode=disable user="+s.AdminLogin, "SELECT 1"); err == nil {
		t.Error("a plain connection got in while require_secure_transport is on")
	}
	// Roles made in SQL log in too; superusers and privlink's role do not.
	// (As postgres: the admin has no CREATEROLE before PostgreSQL 16.)
	c, err := e.m.knownCluster(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := e.m.connect(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{"CREATE ROLE app LOGIN PASSWORD 'app-pw'", "CREATE ROLE watcher LOGIN PASSWORD 'watch-pw'"} {
		if _, err := conn.Exec(t.Context(), sql); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(t.Context())
	if out, err := bouncer("app", "app-pw", "postgres", "SELECT current_user"); err != nil || out != "app" {
		t.Errorf("a role made in SQL through pgbouncer: %q, %v", out, err)
	}
	for _, user := range []string{"postgres", bouncerRole} {
		if _, err := bouncer(user, "", "postgres", "SELECT 1"); err == nil {
			t.Errorf("%s got in through pgbouncer", user)
		}
	}
	// The console: stats users (their verifiers reach auth.txt at the
	// next Ensure), not others.
	e.ensure(e.m, s)
	for _, user := range []struct{ name, pw string }{{s.AdminLogin, s.password}, {"watcher", "watch-pw"}} {
		if out, err := bouncer(user.name, user.pw, "pgbouncer", "SHOW POOLS"); err != nil || !strings.Contains(out, "postgres|app") {
			t.Errorf("SHOW POOLS as stats user %s: %q, %v; want the pool of app", user.name, out, err)
		}
	}
	if _, err := bouncer("app", "app-pw", "pgbouncer", "SHOW POOLS"); err == nil {
		t.Error("SHOW POOLS as app, not in stats_users, succeeded")
	}
	auth, err := os.ReadFile(filepath.Join(e.dataDir, "pg", s.ID, bouncerSubdir, bouncerAuth))
	if err != nil || strings.Contains(string(auth), "watch-pw") || !strings.Contains(string(auth), "SCRAM-SHA-256$") {
		t.Errorf("auth.txt %q (%v): want verifiers, never a password", auth, err)
	}

	// A setting applies by reload: same process.
	s.Settings = maps.Clone(s.Settings)
	s.Settings["pgbouncer.pool_mode"] = "SESSION"
	e.ensure(e.m, s)
	if out, err := bouncer(s.AdminLogin, s.password, "pgbouncer", "SHOW CONFIG"); err != nil || !strings.Contains(out, "pool_mode|session") {
		t.Errorf("SHOW CONFIG after pool_mode SESSION: %v\n%s", err, out)
	}
	if now, _ := e.m.PgBouncerPID(s.ID); now != pid {
		t.Errorf("pgbouncer %d after a reload, was %d", now, pid)
	}

	// A new Manager (a restarted privlinkd) adopts it.
	m2 := e.newManager()
	e.ensure(m2, s)
	if now, err := m2.PgBouncerPID(s.ID); err != nil || now != pid {
		t.Errorf("after a new Manager: pgbouncer %d (%v), want %d adopted", now, err, pid)
	}
	// Run restarts it when it dies.
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- m2.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-runDone })
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, time.Minute, "pgbouncer restarted by Run", func() error {
		now, err := m2.PgBouncerPID(s.ID)
		if err == nil && now == pid {
			return errors.New("still the killed one")
		}
		return err
	})
	testkit.WaitFor(t, time.Minute, "a login through the restarted pgbouncer", func() error {
		_, err := bouncer(s.AdminLogin, s.password, "postgres", "SELECT 1")
		return err
	})

	// A database made from template0 (which lacks the auth function) is
	// given it by Run, with no Ensure: app logs in to it through the
	// pooler.
	c2, err := m2.knownCluster(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := m2.connect(t.Context(), c2)
	if err != nil {
		t.Fatal(err)
	}
	_, err = admin.Exec(t.Context(), "CREATE DATABASE fresh TEMPLATE template0")
	admin.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, time.Minute, "a login through pgbouncer to a database made from template0", func() error {
		_, err := bouncer("app", "app-pw", "fresh", "SELECT 1")
		return err
	})

	// Disabled: stopped, its sessions closed, 6432 refused.
	live, err := e.dialPort(t.Context(), s, PgBouncerPort)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close(context.Background())
	if _, err := live.Exec(t.Context(), "select 1", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("a session through pgbouncer: %v", err)
	}
	s.Settings = map[string]string{"pgbouncer.enabled": "false"}
	e.ensure(m2, s)
	if _, err := live.Exec(t.Context(), "select 1", pgx.QueryExecModeSimpleProtocol); err == nil {
		t.Error("a session through pgbouncer still answers after disabling")
	}
	if _, err := m2.PgBouncerPID(s.ID); !errors.Is(err, errNoBouncer) {
		t.Errorf("pgbouncer after disabling: %v", err)
	}
	if _, err := bouncer(s.AdminLogin, s.password, "postgres", "SELECT 1"); err == nil {
		t.Error("6432 answers after disabling")
	}
}

// TestPgBouncerRefusesBadSettings: a setting pgbouncer would not take is
// ErrInvalid before anything changes.
func TestPgBouncerRefusesBadSettings(t *testing.T) {
	for _, set := range []map[string]string{
		{"pgbouncer.enabled": "maybe"},
		{"pgbouncer.pool_mode": "sometimes"},
		{"pgbouncer.default_pool_size": "-1"},
		{"pgbouncer.max_client_conn": "10; drop"},
		{"pgbouncer.stats_users": "a b"},
		{"pgbouncer.stats_users": "a\nadmin_users = a"},
		{"pgbouncer.stats_users": "a;b"},
		{"pgbouncer.stats_users": "a\"b"},
		{"pgbouncer.listen_addr": "0.0.0.0"},
		{"pgbouncer.max_prepared_statements": "100"},
	} {
		if _, err := bouncerConfigOf(set); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v: %v, want ErrInvalid", set, err)
		}
	}
	cfg, err := bouncerConfigOf(map[string]string{"PgBouncer.Enabled": "true", "pgbouncer.pool_mode": "STATEMENT", "pgbouncer.stats_users": " a, app@tenant ", "work_mem": "8MB",
		"pgbouncer.max_prepared_statements": "0"})
	_, written := cfg.settings["max_prepared_statements"] // 1.18's pgbouncer.ini has no such setting
	if err != nil || !cfg.enabled || cfg.settings["pool_mode"] != "statement" || cfg.settings["stats_users"] != "a,app@tenant" || cfg.settings["default_pool_size"] != "50" || written {
		t.Errorf("good settings: %+v, %v", cfg, err)
	}
}
