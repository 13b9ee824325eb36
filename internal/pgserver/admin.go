package pgserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// adminConnectTimeout bounds one admin connection attempt.
const adminConnectTimeout = 10 * time.Second

// connect opens an admin connection to the cluster: role postgres over
// the unix socket, authenticated by peer credentials (root maps to
// postgres through pg_ident's privlink map), without any password.
func (m *Manager) connect(ctx context.Context, c *cluster) (*pgx.Conn, error) {
	return m.connectDB(ctx, c, "postgres")
}

// connectDB is connect to database db.
func (m *Manager) connectDB(ctx context.Context, c *cluster, db string) (*pgx.Conn, error) {
	if _, err := os.Stat(filepath.Join(c.sockDir, sockName)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no socket in %s: %w", c.sockDir, ErrNotRunning)
		}
		return nil, err
	}
	// Every parameter is explicit, so that PG* variables in privlinkd's
	// environment change nothing that matters.
	cc, err := pgx.ParseConfig("host=" + connQuote(c.sockDir) + " port=" + strconv.Itoa(Port) +
		" user=postgres dbname=" + connQuote(db) + " sslmode=disable")
	if err != nil {
		return nil, fmt.Errorf("admin connection config: %w", err)
	}
	cc.Password = ""
	cc.Fallbacks = nil
	cc.ConnectTimeout = adminConnectTimeout
	cc.RuntimeParams = map[string]string{"application_name": "privlinkd"}
	cc.DefaultQueryExecMode = pgx.QueryExecModeExec
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("admin connection: %w", err)
	}
	return conn, nil
}

// connQuote quotes a libpq connection string value.
func connQuote(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, `'`, `\'`) + "'"
}

// knownCluster returns the cluster entry for id without creating one that
// the Manager has not seen (admin calls may come before Ensure after a
// restart of privlinkd: the paths follow from the id).
func (m *Manager) knownCluster(id string) (*cluster, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.clusters[id]; c != nil {
		return c, nil
	}
	return newCluster(m.pgDir, id), nil
}

// Conn returns an admin connection to server id, as the superuser role
// postgres over the unix socket. The caller closes it. It fails with
// ErrNotRunning when the server does not run.
func (m *Manager) Conn(ctx context.Context, id string) (*pgx.Conn, error) {
	c, err := m.knownCluster(id)
	if err != nil {
		return nil, err
	}
	conn, err := m.connect(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("pgserver: server %s: %w", id, err)
	}
	return conn, nil
}

// Exec runs sql (with args) on server id in database postgres as role
// postgres, over a connection of its own.
func (m *Manager) Exec(ctx context.Context, id, sql string, args ...any) (pgconn.CommandTag, error) {
	conn, err := m.Conn(ctx, id)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tag, err := conn.Exec(ctx, sql, args...)
	if err != nil {
		return tag, fmt.Errorf("pgserver: server %s: %w", id, err)
	}
	return tag, nil
}

// Show returns the current value of setting name on server id, as a new
// session sees it (SHOW).
func (m *Manager) Show(ctx context.Context, id, name string) (string, error) {
	conn, err := m.Conn(ctx, id)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var v string
	if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
		return "", fmt.Errorf("pgserver: server %s: show %s: %w", id, name, err)
	}
	return v, nil
}

// TerminateBackends ends the sessions of server id whose client address
// lies in one of clients, and returns how many it signalled. A terminated
// session's client sees its connection closed at once. Sessions over the
// unix socket (privlinkd's own) have no client address and are never
// terminated.
func (m *Manager) TerminateBackends(ctx context.Context, id string, clients []netip.Prefix) (int, error) {
	if len(clients) == 0 {
		return 0, nil
	}
	nets := make([]string, len(clients))
	for i, p := range clients {
		if !p.IsValid() {
			return 0, fmt.Errorf("pgserver: server %s: terminate backends: invalid prefix: %w", id, ErrInvalid)
		}
		nets[i] = p.Masked().String()
	}
	conn, err := m.Conn(ctx, id)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int
		FROM pg_stat_activity
		WHERE client_addr <<= ANY($1::inet[]) AND pid <> pg_backend_pid()`, nets).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("pgserver: server %s: terminate backends: %w", id, err)
	}
	return n, nil
}

// reload makes the postmaster and every session re-read the configuration
// and returns once the server has done so (pg_conf_load_time moved on in
// this session, which reloads only after the postmaster did), so that new
// sessions see the new values.
func reload(ctx context.Context, conn *pgx.Conn) error {
	var before time.Time
	if err := conn.QueryRow(ctx, "SELECT pg_conf_load_time()").Scan(&before); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		var now time.Time
		if err := conn.QueryRow(ctx, "SELECT pg_conf_load_time()").Scan(&now); err != nil {
			return fmt.Errorf("reload: wait for the configuration to load: %w", err)
		}
		if now.After(before) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("reload: configuration not reloaded: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// settingsReport fails when the configuration files hold a setting that
// PostgreSQL could not apply (other than for want of a restart), and
// returns the settings waiting for a restart.
func settingsReport(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT f.name, coalesce(f.setting, ''), f.error
		FROM pg_file_settings f
		WHERE f.error IS NOT NULL
		  AND NOT EXISTS (SELECT 1 FROM pg_settings s WHERE s.name = f.name AND s.pending_restart)`)
	if err != nil {
		return nil, fmt.Errorf("read file settings: %w", err)
	}
	bad, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var name, value, msg string
		err := r.Scan(&name, &value, &msg)
		return fmt.Sprintf("%s = %q: %s", name, value, msg), err
	})
	if err != nil {
		return nil, fmt.Errorf("read file settings: %w", err)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("settings not applied: %s: %w", strings.Join(bad, "; "), ErrInvalid)
	}
	rows, err = conn.Query(ctx, "SELECT name FROM pg_settings WHERE pending_restart ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("read pending settings: %w", err)
	}
	pending, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read pending settings: %w", err)
	}
	return pending, nil
}

// adminRoles are the predefined roles the administrator is granted, as
// Azure's azure_pg_admin members have them: read every setting and
// statistic, and signal other non-superuser sessions.
var adminRoles = []string{"pg_monitor", "pg_signal_backend"}

// adminCreateRole reports whether the administrator of a server of this
// major version gets CREATEROLE. Before PostgreSQL 16 a CREATEROLE role
// may grant itself any non-superuser role, pg_execute_server_program and
// pg_write_server_files included, that is run programs and write files as
// the postgres system user on the host (which owns every server's data).
// Since 16 it may grant only roles it holds with ADMIN OPTION.
func adminCreateRole(version string) bool {
	v, _ := strconv.Atoi(version)
	return v >= 16
}

// ensureAdmin creates or corrects the administrator role: LOGIN,
// CREATEDB, CREATEROLE (see adminCreateRole), never SUPERUSER, REPLICATION
// or BYPASSRLS; member of adminRoles; may create in database postgres's
// public schema. Its password is set to the spec's verifier when the role
// is created and whenever the verifier differs from the one last applied
// (so a password changed in SQL is kept until the next reset). Statements
// carrying the verifier are never logged.
func ensureAdmin(ctx context.Context, conn *pgx.Conn, spec Spec, state *appliedState) error {
	login := spec.AdminLogin
	if login == "" {
		return nil // a server with Entra authentication only (validate)
	}
	role := pgx.Identifier{login}.Sanitize()
	var (
		exists   = true
		password *string
	)
	err := conn.QueryRow(ctx, `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, login).Scan(&password)
	if errors.Is(err, pgx.ErrNoRows) {
		exists = false
	} else if err != nil {
		return fmt.Errorf("admin role %s: %w", login, err)
	}
	wantHash := verifierHash(spec.AdminVerifier)
	setPassword := !exists || state.AdminVerifierSHA256 != wantHash || state.AdminLogin != login
	if exists && password != nil && *password == spec.AdminVerifier {
		setPassword = false
	}

	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("admin role %s: %w", login, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	stmts := []string{
		// Keep the verifier out of the server's log, whatever the
		// server's logging settings.
		"SET LOCAL log_statement = 'none'",
		"SET LOCAL log_min_duration_statement = -1",
		"SET LOCAL log_min_error_statement = 'panic'",
	}
	lit := "'" + strings.ReplaceAll(spec.AdminVerifier, "'", "''") + "'"
	switch {
	case !exists:
		stmts = append(stmts, "CREATE ROLE "+role+" WITH LOGIN PASSWORD "+lit)
	case setPassword:
		stmts = append(stmts, "ALTER ROLE "+role+" WITH PASSWORD "+lit)
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("admin role %s: %w", login, err)
		}
	}
	if err := ensureRoleRights(ctx, tx, login, spec.Version, nil); err != nil {
		return fmt.Errorf("admin role %s: %w", login, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("admin role %s: %w", login, err)
	}
	state.AdminVerifierSHA256, state.AdminLogin = wantHash, login
	return nil
}

// ensureRoleRights gives an existing role the administrator's rights, in
// tx: LOGIN, CREATEDB, CREATEROLE (see adminCreateRole), never SUPERUSER,
// REPLICATION or BYPASSRLS; member of adminRoles and of groups; may
// create in database postgres's public schema. The password
// administrator and every Entra administrator get them.
func ensureRoleRights(ctx context.Context, tx pgx.Tx, login, version string, groups []string) error {
	role := pgx.Identifier{login}.Sanitize()
	attrs := "LOGIN NOSUPERUSER CREATEDB NOREPLICATION NOBYPASSRLS INHERIT "
	wantCreateRole := adminCreateRole(version)
	if wantCreateRole {
		attrs += "CREATEROLE"
	} else {
		attrs += "NOCREATEROLE"
	}
	var super, canLogin, createDB, createRole, repl, bypassRLS, inherit bool
	err := tx.QueryRow(ctx, `SELECT rolsuper, rolcanlogin, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolinherit
		FROM pg_roles WHERE rolname = $1`, login).Scan(&super, &canLogin, &createDB, &createRole, &repl, &bypassRLS, &inherit)
	if err != nil {
		return err
	}
	if super || !canLogin || !createDB || createRole != wantCreateRole || repl || bypassRLS || !inherit {
		if _, err := tx.Exec(ctx, "ALTER ROLE "+role+" WITH "+attrs); err != nil {
			return err
		}
	}
	for _, r := range append(slices.Clone(adminRoles), groups...) {
		var member bool
		if err := tx.QueryRow(ctx, "SELECT pg_has_role($1, $2, 'MEMBER')", login, r).Scan(&member); err != nil {
			return err
		}
		if !member {
			if _, err := tx.Exec(ctx, "GRANT "+pgx.Identifier{r}.Sanitize()+" TO "+role); err != nil {
				return fmt.Errorf("grant %s: %w", r, err)
			}
		}
	}
	var canCreate bool
	if err := tx.QueryRow(ctx, "SELECT has_schema_privilege($1, 'public', 'CREATE')", login).Scan(&canCreate); err != nil {
		return err
	}
	if !canCreate {
		if _, err := tx.Exec(ctx, "GRANT ALL ON SCHEMA public TO "+role); err != nil {
			return fmt.Errorf("grant on schema public: %w", err)
		}
	}
	return nil
}
