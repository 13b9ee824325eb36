package pgserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Microsoft Entra ID authentication, checked by PostgreSQL itself.
//
// PostgreSQL 15 has no OAuth support (its validators come with 18), but
// Debian builds it with PAM. Roles that are members of EntraGroupRole log
// in through pg_hba's pam method with a PAM service of the server's own
// (/etc/pam.d/privlink-<hash of the cluster directory>): its auth stack is
// pam_script (Debian's libpam-script), which runs the cluster's
// entra-pam/pam_script_auth (root's: pam_script wants that) with the password, that is the access token, in
// PAM_AUTHTOK. (pam_exec's expose_authtok would be the obvious module,
// but it hands a program at most 512 bytes of the password, and a token
// signed with RS256 is about a kilobyte.) The script runs privlink's PAM
// helper (this package's PAMHelperMain, in privlinkd's binary, copied to
// DataDir/pg/bin where the postgres user can run it), which checks the
// token offline against the cluster's entra/keys.json (privlinkd's
// signing keys, issuer, audience, tenant) and entra/principals.csv (role
// name → object id). No login calls privlinkd.
//
// principals.csv is written by PostgreSQL, as the postgres system user,
// by the SECURITY DEFINER function pgaadauth.sync(): COPY of the table
// pgaadauth.principals (role name, role OID, object id, tenant, MFA) for
// the roles that still exist with that OID. privlinkd's Ensure puts the
// server's administrators in the table (and takes out those removed) and
// calls it; pgaadauth_create_principal_with_oid, which an administrator
// calls to make further Entra roles, does the same. So the file follows
// the roles without privlinkd, and a dropped role, or another role
// created later with its name, never matches an old entry.

// EntraSpec turns Microsoft Entra ID authentication on for a server.
type EntraSpec struct {
	// TenantID is the server's tenant (authConfig.tenantId): only its
	// tokens log in.
	TenantID string
	// PasswordAuth keeps SCRAM password logins for roles that are not
	// Entra roles; false refuses them over TCP.
	PasswordAuth bool
	// Admins are the server's Entra administrators: each becomes a LOGIN
	// role with the administrator's rights, member of EntraGroupRole.
	Admins []EntraPrincipal
}

// EntraPrincipal is one Microsoft Entra principal that logs in as a role.
type EntraPrincipal struct {
	// Name is the role name: the principal's name.
	Name string
	// ObjectID is the principal's object id, the token's oid claim.
	ObjectID string
	// TenantID is the principal's tenant, the token's tid claim.
	TenantID string
	// Type is User, Group or ServicePrincipal.
	Type string
}

// EntraGroupRole is the group role of every Entra role, as in Azure:
// pg_hba sends its members to PAM.
const EntraGroupRole = "azure_ad_user"

// EntraAdminRole is the group role of administrators, as in Azure; only
// its members may create Entra roles with the pgaadauth functions.
const EntraAdminRole = "azure_pg_admin"

// PAMHelperCommand is the first argument that makes privlinkd's binary
// run PAMHelperMain.
const PAMHelperCommand = "pam-verify"

// Files of the cluster directory's entra/ (postgres, 0700).
const (
	entraSubdir      = "entra"
	entraScriptDir   = "entra-pam"       // root:root 0755: pam_script refuses scripts not owned by root:root
	entraScript      = "pam_script_auth" // the name pam_script runs
	entraKeysFile    = "keys.json"
	entraPrincipals  = "principals.csv"
	pamServicePrefix = "privlink-"
)

// entraKeys is keys.json: what a token must be signed with and say.
type entraKeys struct {
	Issuer   string          `json:"issuer"`
	Audience string          `json:"audience"`
	TenantID string          `json:"tenantId"`
	Keys     json.RawMessage `json:"keys"` // a JWKS document
}

var (
	guidRE      = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	entraNameRE = regexp.MustCompile(`^[^\x00-\x1f\x7f"]{1,63}$`)
)

// validateEntra checks an EntraSpec.
func validateEntra(spec Spec) error {
	e := spec.Entra
	if e == nil {
		return nil
	}
	if !guidRE.MatchString(e.TenantID) {
		return fmt.Errorf("entra tenant %q: want a GUID: %w", e.TenantID, ErrInvalid)
	}
	seen := map[string]bool{}
	for _, a := range e.Admins {
		low := strings.ToLower(a.Name)
		switch {
		case !entraNameRE.MatchString(a.Name) || len(a.Name) > 63:
			return fmt.Errorf("entra administrator name %q: want 1-63 bytes without control characters or quotes: %w", a.Name, ErrInvalid)
		case strings.HasPrefix(low, "pg_") || slices.Contains(reservedLogins, low) || low == EntraGroupRole || low == EntraAdminRole:
			return fmt.Errorf("entra administrator name %q is reserved: %w", a.Name, ErrInvalid)
		case strings.EqualFold(a.Name, spec.AdminLogin):
			return fmt.Errorf("entra administrator name %q is the password administrator's: %w", a.Name, ErrInvalid)
		case !guidRE.MatchString(a.ObjectID) || !guidRE.MatchString(a.TenantID):
			return fmt.Errorf("entra administrator %q: object and tenant ids must be GUIDs: %w", a.Name, ErrInvalid)
		case seen[a.Name]:
			return fmt.Errorf("entra administrator name %q appears twice: %w", a.Name, ErrInvalid)
		}
		seen[a.Name] = true
	}
	return nil
}

// pamServiceName is the PAM service of a cluster directory: unique per
// data directory and server, so that two privlinkds never share one.
func pamServiceName(clusterDir string) string {
	sum := sha256.Sum256([]byte(clusterDir))
	return pamServicePrefix + hex.EncodeToString(sum[:8])
}

// pamServicePath is the PAM service file of a cluster directory.
func (m *Manager) pamServicePath(c *cluster) string {
	return filepath.Join(m.pamDir, pamServiceName(c.dir))
}

// hbaEntra is what pg_hba.conf needs to know of Entra authentication.
type hbaEntra struct {
	service      string // PAM service
	passwordAuth bool
}

// renderPAMService returns the PAM service file of a cluster.
func renderPAMService(c *cluster) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by privlink for the cluster in %s; removed with it.\n", c.dir)
	b.WriteString("# Microsoft Entra ID logins: the token (PAM_AUTHTOK) checked offline by privlink's helper.\n")
	fmt.Fprintf(&b, "auth     required  pam_script.so dir=%s\n", filepath.Join(c.dir, entraScriptDir))
	b.WriteString("account  required  pam_permit.so\n")
	return []byte(b.String())
}

// renderEntraScript returns entra/pam_script_auth, which pam_script runs.
func renderEntraScript(helper, dir string) []byte {
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	return fmt.Appendf(nil, "#!/bin/sh\n# Written by privlink: checks the Entra ID token in PAM_AUTHTOK for role PAM_USER.\nexec %s %s %s\n",
		q(helper), PAMHelperCommand, q(dir))
}

// installHelper copies the PAM helper binary where the postgres user can
// run it (DataDir/pg/bin, root 0755) when it differs, and returns its path.
func (m *Manager) installHelper() (string, error) {
	m.helperMu.Lock()
	defer m.helperMu.Unlock()
	if m.helperPath != "" {
		return m.helperPath, nil
	}
	src := m.helperSrc
	if src == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("pam helper: %w", err)
		}
		src = exe
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("pam helper: %w", err)
	}
	dir := filepath.Join(m.pgDir, "bin")
	if err := ensureDir(dir, 0o755, 0, 0); err != nil {
		return "", fmt.Errorf("pam helper: %w", err)
	}
	dst := filepath.Join(dir, "privlink-pam")
	if cur, err := os.ReadFile(dst); err != nil || !bytes.Equal(cur, data) {
		tmp := dst + ".tmp"
		if err := os.WriteFile(tmp, data, 0o755); err != nil {
			return "", fmt.Errorf("pam helper: %w", err)
		}
		if err := os.Chmod(tmp, 0o755); err != nil {
			return "", fmt.Errorf("pam helper: %w", err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			return "", fmt.Errorf("pam helper: %w", err)
		}
	}
	m.helperPath = dst
	return dst, nil
}

// writeEntraFiles converges the Entra files of a cluster: entra/ with
// its script and keys, and the PAM service file; or, without Entra, no
// PAM service file. It reports whether pg_hba.conf needs Entra lines and
// with which service.
func (c *cluster) writeEntraFiles(m *Manager, spec Spec) (*hbaEntra, error) {
	svcPath := m.pamServicePath(c)
	if spec.Entra == nil {
		if err := os.Remove(svcPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove PAM service: %w", err)
		}
		return nil, nil
	}
	if len(m.entraKeys) == 0 || m.entraIssuer == nil {
		return nil, fmt.Errorf("entra authentication needs Config.EntraKeys and Config.EntraIssuer: %w", ErrInvalid)
	}
	helper, err := m.installHelper()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(c.dir, entraSubdir)
	if err := ensureDir(dir, 0o700, m.uid, m.gid); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	keys, err := json.Marshal(entraKeys{
		Issuer: m.entraIssuer(spec.Entra.TenantID), Audience: EntraAudience,
		TenantID: strings.ToLower(spec.Entra.TenantID), Keys: m.entraKeys,
	})
	if err != nil {
		return nil, err
	}
	if _, err := writeIfChanged(root, entraKeysFile, keys, 0o600, m.uid, m.gid); err != nil {
		return nil, err
	}
	scripts := filepath.Join(c.dir, entraScriptDir)
	if err := ensureDir(scripts, 0o755, 0, 0); err != nil {
		return nil, err
	}
	sroot, err := os.OpenRoot(scripts)
	if err != nil {
		return nil, err
	}
	defer sroot.Close()
	if _, err := writeIfChanged(sroot, entraScript, renderEntraScript(helper, dir), 0o755, 0, 0); err != nil {
		return nil, err
	}
	want := renderPAMService(c)
	if cur, err := os.ReadFile(svcPath); err != nil || !bytes.Equal(cur, want) {
		if err := os.WriteFile(svcPath+".tmp", want, 0o644); err != nil {
			return nil, fmt.Errorf("write PAM service: %w", err)
		}
		if err := os.Rename(svcPath+".tmp", svcPath); err != nil {
			return nil, fmt.Errorf("write PAM service: %w", err)
		}
	}
	return &hbaEntra{service: pamServiceName(c.dir), passwordAuth: spec.Entra.PasswordAuth}, nil
}

// EntraAudience is the audience of the tokens a server accepts (identity's
// OSSRDBMSAudience; pgserver does not import identity).
const EntraAudience = "https://ossrdbms-aad.database.windows.net"

// entraSQL creates what Entra roles need in database postgres: the group
// roles, schema pgaadauth with the principals table, pgaadauth.sync()
// (which writes principals.csv) and Azure's
// pgaadauth_create_principal_with_oid. %[1]s is principals.csv's path as
// a literal.
const entraSQL = `
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'azure_ad_user') THEN CREATE ROLE azure_ad_user NOLOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'azure_pg_admin') THEN CREATE ROLE azure_pg_admin NOLOGIN; END IF;
END $$;
CREATE SCHEMA IF NOT EXISTS pgaadauth AUTHORIZATION postgres;
REVOKE ALL ON SCHEMA pgaadauth FROM PUBLIC;
GRANT USAGE ON SCHEMA pgaadauth TO azure_pg_admin;
CREATE TABLE IF NOT EXISTS pgaadauth.principals (
  rolname name PRIMARY KEY,
  roleoid oid NOT NULL,
  objectid uuid NOT NULL,
  tenantid uuid NOT NULL,
  objecttype text NOT NULL,
  mfa boolean NOT NULL DEFAULT false,
  administrator boolean NOT NULL DEFAULT false -- kept by privlink from the server's administrators
);
REVOKE ALL ON pgaadauth.principals FROM PUBLIC;
GRANT SELECT ON pgaadauth.principals TO azure_pg_admin;
CREATE OR REPLACE FUNCTION pgaadauth.sync() RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $f$
BEGIN
  EXECUTE format('COPY (SELECT p.rolname, p.objectid, p.tenantid, p.mfa FROM pgaadauth.principals p JOIN pg_roles r ON r.oid = p.roleoid AND r.rolname = p.rolname ORDER BY 1) TO %%L WITH (FORMAT csv)', %[1]s);
END $f$;
REVOKE ALL ON FUNCTION pgaadauth.sync() FROM PUBLIC;
CREATE OR REPLACE FUNCTION public.pgaadauth_create_principal_with_oid(roleName text, objectId text, objectType text, isAdmin boolean, isMfa boolean)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $f$
DECLARE
  tid uuid;
BEGIN
  IF NOT pg_has_role(session_user, 'azure_pg_admin', 'MEMBER') THEN
    RAISE EXCEPTION 'permission denied to create Entra role "%%"', roleName USING HINT = 'Only members of azure_pg_admin (the server''s administrators) may create Entra roles.';
  END IF;
  IF lower(objectType) NOT IN ('user', 'group', 'service') THEN
    RAISE EXCEPTION 'objectType "%%" is not user, group or service', objectType;
  END IF;
  IF roleName IS NULL OR roleName = '' OR length(roleName) > 63 OR lower(roleName) LIKE 'pg\_%%' OR lower(roleName) IN ('postgres', 'azure_ad_user', 'azure_pg_admin', 'azuresu', 'public') THEN
    RAISE EXCEPTION 'role name "%%" is reserved or invalid', roleName;
  END IF;
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = roleName) THEN
    RAISE EXCEPTION 'role "%%" already exists', roleName;
  END IF;
  SELECT p.tenantid INTO tid FROM pgaadauth.principals p WHERE p.administrator LIMIT 1;
  IF tid IS NULL THEN
    RAISE EXCEPTION 'the server has no Entra administrator, so no tenant to create roles in';
  END IF;
  EXECUTE format('CREATE ROLE %%I LOGIN IN ROLE azure_ad_user', roleName);
  IF isAdmin THEN
    EXECUTE format('ALTER ROLE %%I CREATEDB', roleName);
    EXECUTE format('GRANT azure_pg_admin, pg_monitor, pg_signal_backend TO %%I', roleName);
  END IF;
  INSERT INTO pgaadauth.principals (rolname, roleoid, objectid, tenantid, objecttype, mfa)
    SELECT roleName, r.oid, objectId::uuid, tid, lower(objectType), isMfa FROM pg_roles r WHERE r.rolname = roleName
    ON CONFLICT (rolname) DO UPDATE SET roleoid = EXCLUDED.roleoid, objectid = EXCLUDED.objectid, tenantid = EXCLUDED.tenantid,
      objecttype = EXCLUDED.objecttype, mfa = EXCLUDED.mfa, administrator = false;
  PERFORM pgaadauth.sync();
  RETURN format('Created role for "%%s"', roleName);
END $f$;
REVOKE ALL ON FUNCTION public.pgaadauth_create_principal_with_oid(text, text, text, boolean, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.pgaadauth_create_principal_with_oid(text, text, text, boolean, boolean) TO azure_pg_admin;
CREATE OR REPLACE FUNCTION public.pgaadauth_create_principal(roleName text, isAdmin boolean, isMfa boolean)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $f$
BEGIN
  RAISE EXCEPTION 'privlink cannot look "%%" up in the directory from inside the server', roleName
    USING HINT = 'Give the principal''s object id: SELECT pgaadauth_create_principal_with_oid(roleName, objectId, objectType, isAdmin, isMfa).';
END $f$;
REVOKE ALL ON FUNCTION public.pgaadauth_create_principal(text, boolean, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.pgaadauth_create_principal(text, boolean, boolean) TO azure_pg_admin;
`

// ensureEntra makes the server's roles match spec.Entra: the pgaadauth
// objects, a LOGIN role per administrator with the administrator's
// rights (ensureRoleRights), member of EntraGroupRole and EntraAdminRole,
// its row in pgaadauth.principals; rows of administrators no longer
// listed go (their roles stay, with their objects, but cannot log in);
// then principals.csv is written.
func (c *cluster) ensureEntra(ctx context.Context, conn *pgx.Conn, spec Spec) error {
	if spec.Entra == nil {
		return nil
	}
	path := filepath.Join(c.dir, entraSubdir, entraPrincipals)
	lit := "'" + strings.ReplaceAll(path, "'", "''") + "'"
	if _, err := conn.Exec(ctx, fmt.Sprintf(entraSQL, lit)); err != nil {
		return fmt.Errorf("entra objects: %w", err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("entra administrators: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	names := make([]string, 0, len(spec.Entra.Admins))
	for _, a := range spec.Entra.Admins {
		names = append(names, a.Name)
		role := pgx.Identifier{a.Name}.Sanitize()
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", a.Name).Scan(&exists); err != nil {
			return fmt.Errorf("entra administrator %s: %w", a.Name, err)
		}
		if !exists {
			if _, err := tx.Exec(ctx, "CREATE ROLE "+role+" WITH LOGIN"); err != nil {
				return fmt.Errorf("entra administrator %s: %w", a.Name, err)
			}
		}
		if err := ensureRoleRights(ctx, tx, a.Name, spec.Version, []string{EntraGroupRole, EntraAdminRole}); err != nil {
			return fmt.Errorf("entra administrator %s: %w", a.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pgaadauth.principals (rolname, roleoid, objectid, tenantid, objecttype, administrator)
			SELECT $1, r.oid, $2::uuid, $3::uuid, $4, true FROM pg_roles r WHERE r.rolname = $1
			ON CONFLICT (rolname) DO UPDATE SET roleoid = EXCLUDED.roleoid, objectid = EXCLUDED.objectid,
			  tenantid = EXCLUDED.tenantid, objecttype = EXCLUDED.objecttype, mfa = false, administrator = true`,
			a.Name, a.ObjectID, a.TenantID, a.Type); err != nil {
			return fmt.Errorf("entra administrator %s: %w", a.Name, err)
		}
	}
	if _, err := tx.Exec(ctx, "DELETE FROM pgaadauth.principals WHERE administrator AND NOT (rolname = ANY($1))", names); err != nil {
		return fmt.Errorf("entra administrators: %w", err)
	}
	if _, err := tx.Exec(ctx, "SELECT pgaadauth.sync()"); err != nil {
		return fmt.Errorf("entra principals file: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("entra administrators: %w", err)
	}
	return nil
}

// removeEntra removes what a cluster has outside its directory: the PAM
// service file.
func (m *Manager) removeEntra(c *cluster) error {
	if err := os.Remove(m.pamServicePath(c)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove PAM service: %w", err)
	}
	return nil
}

// PAMHelperMain is the PAM helper: run by pam_script (through a cluster's
// entra/pam_script_auth) as "<binary> pam-verify DIR" with PAM_USER and
// PAM_AUTHTOK in the environment, it exits 0 when the token lets PAM_USER
// in (VerifyEntraToken) and 1 otherwise, saying why on stderr.
func PAMHelperMain(args []string, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: pam-verify DIR (run by pam_script, PAM_USER and PAM_AUTHTOK set)")
		return 2
	}
	if err := VerifyEntraToken(args[0], os.Getenv("PAM_USER"), os.Getenv("PAM_AUTHTOK")); err != nil {
		fmt.Fprintf(stderr, "privlink pam: %v\n", err)
		return 1
	}
	return 0
}
