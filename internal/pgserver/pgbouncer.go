package pgserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// The built-in PgBouncer. While the spec's setting pgbouncer.enabled is
// "true", a pgbouncer process (Debian's, PgBouncerBinary) runs next to the
// postmaster, in the server's namespace, as the postgres system user,
// listening on the server's address at PgBouncerPort. It is privlink's
// child like the postmaster: started from a thread inside the namespace,
// reaped by a goroutine, restarted by Run when it exits, and adopted by a
// new Manager (through its pid file, checked against the process) when
// privlinkd restarts. Its files live in DataDir/pg/<id>/bouncer/ (postgres,
// 0700): pgbouncer.ini, auth.txt, the pid file, its log and its unix
// socket.
//
// Clients authenticate with the server's own roles and passwords: TLS
// with the server's certificate (client_tls_*; required unless
// require_secure_transport is off), then SCRAM-SHA-256 against the role's
// verifier, which pgbouncer fetches through auth_query as the role
// privlink_pgbouncer (LOGIN, no password, reachable only over the server's
// unix socket by peer authentication: pg_hba rejects it over TCP) calling
// a SECURITY DEFINER function that returns the verifier of one role that
// is not a superuser. pgbouncer then logs in to PostgreSQL over the unix
// socket as that role with the SCRAM keys the client proved (SCRAM
// passthrough): no password is ever on disk. The function is kept in
// every database that accepts connections and in template1, so databases
// created later have it.
//
// The admin console (dbname=pgbouncer) is for the roles of
// pgbouncer.stats_users: PgBouncer 1.18 cannot run auth_query for it, so
// privlink keeps their SCRAM verifiers (not passwords) in auth.txt,
// refreshed by every Ensure.
//
// The other pgbouncer.* settings map to pgbouncer.ini settings of the
// same name after the prefix (pool_mode lower-cased); a change is applied
// by SIGHUP (pgbouncer's reload), which takes them all.

// PgBouncerPort is the port the pooler listens on, inside the namespace.
const PgBouncerPort = 6432

// PgBouncerBinary is Debian's pgbouncer.
const PgBouncerBinary = "/usr/sbin/pgbouncer"

// SettingPgBouncerPrefix starts every pooler setting's name.
const SettingPgBouncerPrefix = "pgbouncer."

const (
	bouncerSubdir  = "bouncer"
	bouncerIni     = "pgbouncer.ini"
	bouncerAuth    = "auth.txt"
	bouncerPidFile = "pgbouncer.pid"
	bouncerLog     = "pgbouncer.log"
	// bouncerRole is the role pgbouncer runs auth_query as.
	bouncerRole = "privlink_pgbouncer"
	// bouncerSchema holds the auth_query function in every database.
	bouncerSchema = "privlink_pgbouncer"
	// bouncerStopTimeout bounds pgbouncer's immediate shutdown (SIGTERM)
	// before SIGKILL.
	bouncerStopTimeout = 10 * time.Second
	// bouncerStartTimeout bounds the wait for a started pgbouncer to
	// listen.
	bouncerStartTimeout = 30 * time.Second
)

// bouncerSettings are the pgbouncer.ini settings the spec may set (after
// SettingPgBouncerPrefix), with pgbouncer's own defaults replaced by
// Azure's where Azure's differ.
var bouncerSettings = map[string]string{
	"default_pool_size":         "50",
	"ignore_startup_parameters": "",
	"max_client_conn":           "5000",
	"min_pool_size":             "0",
	"pool_mode":                 "transaction",
	"query_wait_timeout":        "120",
	"server_idle_timeout":       "600",
	"stats_users":               "",
}

// bouncerName is a role or startup parameter name in a pooler setting:
// the characters Azure allows in them (stats_users takes Entra names such
// as app@tenant), none of which ends or comments a pgbouncer.ini line.
var bouncerName = regexp.MustCompile(`^[A-Za-z0-9_@.-]{1,63}$`)

// bouncerConfig is what a spec asks of the pooler.
type bouncerConfig struct {
	enabled  bool
	settings map[string]string // pgbouncer.ini names, validated
	stats    []string          // stats_users, split
}

// bouncerConfigOf reads the pooler's settings from a spec's settings.
func bouncerConfigOf(settings map[string]string) (bouncerConfig, error) {
	cfg := bouncerConfig{settings: maps.Clone(bouncerSettings)}
	for k, v := range settings {
		name, ok := strings.CutPrefix(strings.ToLower(k), SettingPgBouncerPrefix)
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if name == "enabled" {
			switch strings.ToLower(v) {
			case "true", "on":
				cfg.enabled = true
			case "false", "off", "":
			default:
				return cfg, fmt.Errorf("setting %s = %q: want true or false: %w", k, v, ErrInvalid)
			}
			continue
		}
		if name == "max_prepared_statements" {
			// Azure's; 0 is what 1.18 does, and 1.18's pgbouncer.ini
			// has no such setting.
			if v != "0" {
				return cfg, fmt.Errorf("setting %s = %q: PgBouncer 1.18 tracks no prepared statements (1.21 does), so only 0: %w", k, v, ErrInvalid)
			}
			continue
		}
		if _, known := bouncerSettings[name]; !known {
			return cfg, fmt.Errorf("setting %s: not a PgBouncer setting privlink offers: %w", k, ErrInvalid)
		}
		switch name {
		case "pool_mode":
			v = strings.ToLower(v)
			if !slices.Contains([]string{"session", "transaction", "statement"}, v) {
				return cfg, fmt.Errorf("setting %s = %q: want session, transaction or statement: %w", k, v, ErrInvalid)
			}
		case "ignore_startup_parameters", "stats_users":
			var names []string
			for n := range strings.SplitSeq(v, ",") {
				if n = strings.TrimSpace(n); n == "" {
					continue
				}
				if !bouncerName.MatchString(n) {
					return cfg, fmt.Errorf("setting %s: %q is not a name: %w", k, n, ErrInvalid)
				}
				names = append(names, n)
			}
			v = strings.Join(names, ",")
			if name == "stats_users" {
				cfg.stats = names
			}
		default:
			if n, err := strconv.ParseUint(v, 10, 31); err != nil || strconv.FormatUint(n, 10) != v {
				return cfg, fmt.Errorf("setting %s = %q: want a whole number: %w", k, v, ErrInvalid)
			}
		}
		cfg.settings[name] = v
	}
	return cfg, nil
}

// renderBouncerIni returns pgbouncer.ini for the cluster c listening on
// addr.
func (c *cluster) renderBouncerIni(cfg bouncerConfig, addr netip.Addr, requireSecure bool) []byte {
	dir := c.bouncerDir()
	sslmode := "require"
	if !requireSecure {
		sslmode = "allow"
	}
	var b strings.Builder
	b.WriteString("; Written by privlink; changes here are overwritten.\n")
	b.WriteString("[databases]\n")
	fmt.Fprintf(&b, "* = host=%s port=%d\n\n", c.sockDir, Port)
	b.WriteString("[pgbouncer]\n")
	fixed := [][2]string{
		{"listen_addr", addr.String()},
		{"listen_port", strconv.Itoa(PgBouncerPort)},
		{"unix_socket_dir", dir},
		{"unix_socket_mode", "0700"},
		{"pidfile", filepath.Join(dir, bouncerPidFile)},
		{"logfile", filepath.Join(dir, bouncerLog)},
		{"auth_type", "scram-sha-256"},
		{"auth_file", filepath.Join(dir, bouncerAuth)},
		{"auth_user", bouncerRole},
		{"auth_query", "SELECT usename, passwd FROM " + bouncerSchema + ".get_auth($1)"},
		{"client_tls_sslmode", sslmode},
		{"client_tls_cert_file", filepath.Join(c.dataDir, certFile)},
		{"client_tls_key_file", filepath.Join(c.dataDir, keyFile)},
		{"client_tls_protocols", "tlsv1.2,tlsv1.3"},
		{"server_tls_sslmode", "disable"},
		{"admin_users", ""},
		{"application_name_add_host", "0"},
	}
	for _, kv := range fixed {
		fmt.Fprintf(&b, "%s = %s\n", kv[0], kv[1])
	}
	for _, k := range slices.Sorted(maps.Keys(cfg.settings)) {
		fmt.Fprintf(&b, "%s = %s\n", k, cfg.settings[k])
	}
	return []byte(b.String())
}

func (c *cluster) bouncerDir() string { return filepath.Join(c.dir, bouncerSubdir) }

// ensureBouncer converges the pooler to the spec's settings once the
// postmaster runs (conn is an admin connection to it); c.mu is held.
func (c *cluster) ensureBouncer(ctx context.Context, m *Manager, conn *pgx.Conn, requireSecure bool) error {
	cfg, err := bouncerConfigOf(c.spec.Settings)
	if err != nil {
		return err
	}
	if !cfg.enabled {
		return c.stopBouncer(ctx, m)
	}
	if _, err := os.Stat(PgBouncerBinary); err != nil {
		return fmt.Errorf("pgbouncer.enabled: %s: %w (apt-get install pgbouncer)", PgBouncerBinary, err)
	}
	if err := ensureDir(c.bouncerDir(), 0o700, m.uid, m.gid); err != nil {
		return err
	}
	if err := ensureBouncerAuth(ctx, m, c, conn); err != nil {
		return err
	}
	auth, err := statsVerifiers(ctx, conn, cfg.stats)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(c.bouncerDir())
	if err != nil {
		return err
	}
	defer root.Close()
	iniChanged, err := writeIfChanged(root, bouncerIni, c.renderBouncerIni(cfg, c.spec.Addr, requireSecure), 0o600, m.uid, m.gid)
	if err != nil {
		return err
	}
	authChanged, err := writeIfChanged(root, bouncerAuth, auth, 0o600, m.uid, m.gid)
	if err != nil {
		return err
	}
	p := c.currentBouncer(m)
	if p != nil {
		if in, err := c.inNamespace(m, p); err != nil || !in || c.bouncerListen() != c.spec.Addr.String() {
			if err := c.stopBouncer(ctx, m); err != nil {
				return err
			}
			p = nil
		}
	}
	if p == nil {
		return c.startBouncer(ctx, m)
	}
	if iniChanged || authChanged {
		m.log.Info("reloading pgbouncer", "server", c.id, "pid", p.pid)
		return p.signal(syscall.SIGHUP)
	}
	return nil
}

// bouncerListen is the address the pooler was started for (recorded next
// to its pid file), "" when unknown.
func (c *cluster) bouncerListen() string {
	b, _ := os.ReadFile(filepath.Join(c.bouncerDir(), bouncerPidFile+".addr"))
	return strings.TrimSpace(string(b))
}

// currentBouncer returns the running pooler: the one watched, or one a
// previous privlinkd started (its pid file names a pgbouncer process of
// the postgres user working in the bouncer directory).
func (c *cluster) currentBouncer(m *Manager) *proc {
	if c.bouncer != nil && c.bouncer.alive() {
		return c.bouncer
	}
	c.bouncer = nil
	b, err := os.ReadFile(filepath.Join(c.bouncerDir(), bouncerPidFile))
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return nil
	}
	st, err := readStat(pid)
	if err != nil || st.state == 'Z' || st.state == 'X' || procCwd(pid) != c.bouncerDir() || procExe(pid) != PgBouncerBinary {
		return nil
	}
	if uids, err := procUIDs(pid); err != nil || len(uids) < 2 || uids[1] != m.uid {
		return nil
	}
	c.bouncer = &proc{pid: pid, start: st.start, started: time.Now()}
	m.log.Info("adopted running pgbouncer", "server", c.id, "pid", pid)
	return c.bouncer
}

// startBouncer starts pgbouncer in the server's namespace and waits until
// it listens.
func (c *cluster) startBouncer(ctx context.Context, m *Manager) error {
	dir := c.bouncerDir()
	os.Remove(filepath.Join(dir, bouncerPidFile))
	logPath := filepath.Join(dir, "stderr.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("pgbouncer: open log: %w", err)
	}
	off, _ := logf.Seek(0, io.SeekEnd)
	cmd := exec.Command(PgBouncerBinary, filepath.Join(dir, bouncerIni))
	cmd.SysProcAttr = m.sysProcAttr()
	cmd.Env = childEnv
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	err = m.fabric.Do(c.nsName(m), cmd.Start)
	logf.Close()
	if err != nil {
		return fmt.Errorf("start pgbouncer in namespace %s: %w", c.nsName(m), err)
	}
	p, err := ownChild(cmd, m.poke)
	if err != nil {
		return err
	}
	c.bouncer = p
	if err := os.WriteFile(filepath.Join(dir, bouncerPidFile+".addr"), []byte(c.spec.Addr.String()+"\n"), 0o600); err != nil {
		return err
	}
	addr := netip.AddrPortFrom(c.spec.Addr, PgBouncerPort).String()
	deadline := time.Now().Add(bouncerStartTimeout)
	for {
		if !p.alive() {
			return &StartError{PID: p.pid, Reason: "pgbouncer exited: " + logTail(logPath, off) + " (" + p.exitStatus() + ")"}
		}
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := m.fabric.DialContext(dctx, c.nsName(m), "tcp", addr)
		cancel()
		if err == nil {
			conn.Close()
			m.log.Info("pgbouncer ready", "server", c.id, "pid", p.pid, "addr", addr)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return &StartError{PID: p.pid, Reason: fmt.Sprintf("pgbouncer did not listen on %s within %v: %v", addr, bouncerStartTimeout, err)}
		}
		time.Sleep(pollInterval)
	}
}

// stopBouncer stops the pooler if it runs: SIGTERM (pgbouncer's
// immediate shutdown, which closes every client and server connection),
// then SIGKILL.
func (c *cluster) stopBouncer(ctx context.Context, m *Manager) error {
	p := c.currentBouncer(m)
	if p == nil {
		return nil
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if err := p.signal(sig); err != nil {
			return err
		}
		exited, err := waitExit(ctx, p, bouncerStopTimeout)
		if err != nil {
			return fmt.Errorf("stop pgbouncer %d: %w", p.pid, err)
		}
		if exited {
			m.log.Info("pgbouncer stopped", "server", c.id, "pid", p.pid, "by", sig)
			c.bouncer = nil
			return nil
		}
	}
	return fmt.Errorf("pgbouncer %d survives SIGKILL", p.pid)
}

// bouncerDown reports whether the pooler should run and does not; c.mu
// is held.
func (c *cluster) bouncerDown(m *Manager) bool {
	if c.deleted || !c.hasSpec || !c.spec.Running || c.proc == nil || !c.proc.alive() {
		return false
	}
	cfg, err := bouncerConfigOf(c.spec.Settings)
	if err != nil || !cfg.enabled {
		return false
	}
	return c.currentBouncer(m) == nil && !time.Now().Before(c.bouncerRetryAt)
}

// restartBouncer starts the pooler again after it exited; c.mu is held.
func (c *cluster) restartBouncer(ctx context.Context, m *Manager) {
	m.log.Warn("pgbouncer is not running; starting it", "server", c.id)
	conn, err := m.connect(ctx, c)
	if err == nil {
		defer conn.Close(context.WithoutCancel(ctx))
		err = c.ensureBouncer(ctx, m, conn, c.requireSecure())
	}
	if err != nil && ctx.Err() == nil {
		c.bouncerRetryAt = time.Now().Add(5 * time.Second)
		m.log.Error("starting pgbouncer failed", "server", c.id, "err", err, "retry_in", "5s")
	}
}

// requireSecure reports the spec's require_secure_transport.
func (c *cluster) requireSecure() bool {
	cfg, err := validate(c.spec)
	return err != nil || cfg.requireSecure
}

// bouncerAuthStale reports whether the running pooler's cluster has a
// database that ensureBouncerAuth has not seen: a directory of data/base/
// (one per database, named by its OID) outside c.bouncerDBs. CREATE
// DATABASE ... TEMPLATE template0 makes one without the auth function
// (template1 has it, template0 takes no changes), and no event trigger
// fires for CREATE DATABASE; reading the directory costs no connection.
// c.mu is held.
func (c *cluster) bouncerAuthStale(m *Manager) bool {
	if c.bouncerDBs == nil || c.currentBouncer(m) == nil || time.Now().Before(c.bouncerDBsRetryAt) {
		return false
	}
	entries, err := os.ReadDir(filepath.Join(c.dataDir, "base"))
	if err != nil {
		return false
	}
	for _, e := range entries {
		if _, err := strconv.ParseUint(e.Name(), 10, 32); err == nil && e.IsDir() && !c.bouncerDBs[e.Name()] {
			return true
		}
	}
	return false
}

// refreshBouncerAuth gives databases made since the last Ensure the auth
// function; c.mu is held. A directory that is still not a database after
// it (a CREATE DATABASE not yet committed, or one a crash left behind) is
// looked at again a few seconds later, not at every tick.
func (c *cluster) refreshBouncerAuth(ctx context.Context, m *Manager) {
	conn, err := m.connect(ctx, c)
	if err == nil {
		defer conn.Close(context.WithoutCancel(ctx))
		err = ensureBouncerAuth(ctx, m, c, conn)
	}
	if err != nil && ctx.Err() == nil {
		m.log.Warn("pgbouncer auth function for new databases", "server", c.id, "err", err)
	}
	c.bouncerDBsRetryAt = time.Now().Add(3 * time.Second)
}

// ensureBouncerAuth keeps the role and function auth_query uses: the role
// privlink_pgbouncer (LOGIN, no password), and in every database that
// accepts connections (template1 included) the schema privlink_pgbouncer
// with get_auth(name), which returns the verifier of a role that is not a
// superuser (nor privlink_pgbouncer itself). It records the databases it
// saw in c.bouncerDBs (bouncerAuthStale); c.mu is held.
func ensureBouncerAuth(ctx context.Context, m *Manager, c *cluster, conn *pgx.Conn) error {
	role := pgx.Identifier{bouncerRole}.Sanitize()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", bouncerRole).Scan(&exists); err != nil {
		return fmt.Errorf("pgbouncer role: %w", err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE ROLE "+role+" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS PASSWORD NULL"); err != nil {
			return fmt.Errorf("pgbouncer role: %w", err)
		}
	}
	rows, err := conn.Query(ctx, `SELECT oid::text, datname, datallowconn FROM pg_database ORDER BY datname`)
	if err != nil {
		return fmt.Errorf("pgbouncer auth function: %w", err)
	}
	type database struct {
		OID, Name string
		AllowConn bool
	}
	all, err := pgx.CollectRows(rows, pgx.RowToStructByPos[database])
	if err != nil {
		return fmt.Errorf("pgbouncer auth function: %w", err)
	}
	seen := make(map[string]bool, len(all))
	var dbs []string
	for _, d := range all {
		seen[d.OID] = true
		if d.AllowConn {
			dbs = append(dbs, d.Name)
		}
	}
	schema := pgx.Identifier{bouncerSchema}.Sanitize()
	stmts := []string{
		"CREATE SCHEMA IF NOT EXISTS " + schema + " AUTHORIZATION postgres",
		"REVOKE ALL ON SCHEMA " + schema + " FROM PUBLIC",
		`CREATE OR REPLACE FUNCTION ` + schema + `.get_auth(p_usename name) RETURNS TABLE(usename name, passwd text)
			LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
			$$ SELECT rolname, rolpassword FROM pg_catalog.pg_authid
			   WHERE rolname = p_usename AND rolcanlogin AND NOT rolsuper AND rolname <> '` + bouncerRole + `' $$`,
		"REVOKE ALL ON FUNCTION " + schema + ".get_auth(name) FROM PUBLIC",
		"GRANT USAGE ON SCHEMA " + schema + " TO " + role,
		"GRANT EXECUTE ON FUNCTION " + schema + ".get_auth(name) TO " + role,
	}
	for _, db := range dbs {
		dconn, err := m.connectDB(ctx, c, db)
		if err != nil {
			return fmt.Errorf("pgbouncer auth function in database %s: %w", db, err)
		}
		var have bool
		err = dconn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 AND p.proname = 'get_auth')", bouncerSchema).Scan(&have)
		for _, s := range stmts {
			if err != nil || have {
				break
			}
			_, err = dconn.Exec(ctx, s)
		}
		dconn.Close(context.WithoutCancel(ctx))
		if err != nil {
			return fmt.Errorf("pgbouncer auth function in database %s: %w", db, err)
		}
	}
	c.bouncerDBs = seen
	return nil
}

// statsVerifiers returns auth.txt: the SCRAM verifiers of the roles of
// stats_users that exist, can log in and are not superusers, in
// pgbouncer's auth_file format.
func statsVerifiers(ctx context.Context, conn *pgx.Conn, users []string) ([]byte, error) {
	var b strings.Builder
	b.WriteString(";; Written by privlink: SCRAM verifiers of pgbouncer.stats_users (no passwords)\n")
	if len(users) == 0 {
		return []byte(b.String()), nil
	}
	rows, err := conn.Query(ctx, `SELECT rolname, rolpassword FROM pg_authid
		WHERE rolname = ANY($1) AND rolcanlogin AND NOT rolsuper AND rolpassword LIKE 'SCRAM-SHA-256$%' ORDER BY rolname`, users)
	if err != nil {
		return nil, fmt.Errorf("pgbouncer stats users: %w", err)
	}
	type rv struct{ Name, Verifier string }
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[rv])
	if err != nil {
		return nil, fmt.Errorf("pgbouncer stats users: %w", err)
	}
	quote := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
	for _, r := range got {
		fmt.Fprintf(&b, "%s %s\n", quote(r.Name), quote(r.Verifier))
	}
	return []byte(b.String()), nil
}

// errNoBouncer is returned by PgBouncerPID for a server without a pooler.
var errNoBouncer = errors.New("no pgbouncer runs")

// PgBouncerPID returns the pid of server id's pooler, for tests and
// status.
func (m *Manager) PgBouncerPID(id string) (int, error) {
	m.mu.Lock()
	c := m.clusters[id]
	m.mu.Unlock()
	if c == nil {
		c = newCluster(m.pgDir, id)
	} else {
		c.mu.Lock()
		defer c.mu.Unlock()
	}
	if p := c.currentBouncer(m); p != nil {
		return p.pid, nil
	}
	return 0, fmt.Errorf("pgserver: server %s: %w", id, errNoBouncer)
}
