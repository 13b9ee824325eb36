package pgserver

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/pki"
)

// Config configures a Manager.
type Config struct {
	// DataDir is privlinkd's data directory. Clusters live under
	// DataDir/pg/<id>/, templates under DataDir/pg/template-<version>/.
	// The postgres system user must be able to search (not read) every
	// directory above DataDir/pg; NewManager makes DataDir itself
	// searchable by the postgres group when it is root's (see NewManager).
	DataDir string
	// CA issues each server's TLS certificate.
	CA *pki.CA
	// Fabric owns the service namespaces postmasters run in.
	Fabric *fabric.Fabric
	// Log receives the Manager's logs; nil discards them.
	Log *slog.Logger
	// BinRoot is where PostgreSQL major versions are installed, one
	// directory per version holding bin/postgres (Debian's layout): a
	// list of such directories separated by ':', the first holding a
	// version winning. Empty means DefaultBinRoot.
	BinRoot string
	// EntraKeys is the JWKS document of the keys Entra tokens are signed
	// with, and EntraIssuer the issuer of a tenant's tokens (identity's
	// JWKS and Issuer): needed by servers with Spec.Entra (entra.go).
	EntraKeys   []byte
	EntraIssuer func(tenantID string) string
	// PAMHelper is an executable that runs PAMHelperMain when its first
	// argument is PAMHelperCommand; empty means this process's own
	// executable (privlinkd).
	PAMHelper string
	// PAMDir is where PAM service files go; empty means /etc/pam.d.
	PAMDir string
}

// DefaultBinRoot is where Debian installs PostgreSQL major versions,
// then where scripts/install-pg-majors installs the majors Debian 12 does
// not ship (see versions.go).
const DefaultBinRoot = "/usr/lib/postgresql:/opt/privlink/pg"

// Port is the TCP port every server listens on, inside its namespace.
const Port = 5432

// Spec is the desired state of one flexible server's PostgreSQL cluster.
type Spec struct {
	// ID is the server's fabric service id (16 hex digits in privlinkd):
	// the cluster lives in DataDir/pg/<ID> and runs in the namespace
	// Fabric.NamespaceName(fabric.KindService, ID). 1-64 of
	// [A-Za-z0-9_-], starting with a letter or digit, not "template-...".
	ID string
	// Name is the server name; the certificate is for
	// <name>.postgres.database.azure.com and
	// <name>.privatelink.postgres.database.azure.com (lower-cased).
	Name string
	// Version is the PostgreSQL major version, such as "15".
	Version string
	// Addr is the server's address inside its namespace (169.254.0.0/16);
	// PostgreSQL listens there only. The namespace must exist with this
	// address (fabric.EnsureService) before Ensure starts the server.
	Addr netip.Addr
	// AdminLogin is the administrator role (LOGIN, CREATEDB, not
	// SUPERUSER; see Manager.Ensure for CREATEROLE).
	AdminLogin string
	// AdminVerifier is the SCRAM-SHA-256 verifier of the administrator's
	// password ("SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>").
	AdminVerifier string
	// Settings are postgresql.conf settings that override DefaultSettings
	// (names are case-insensitive). Two kinds of keys are not PostgreSQL
	// settings: SettingRequireSecureTransport chooses between hostssl-only
	// and host lines in pg_hba.conf, and keys starting with one of
	// IgnoredSettingPrefixes ("pgbouncer.") belong to other parts of
	// privlink and are skipped. Names in ProtectedSettings are refused.
	Settings map[string]string
	// Running tells whether the postmaster should run.
	Running bool
	// RestartGeneration increases whenever the server must restart (a
	// restart action, a change of a static setting). Ensure restarts a
	// running postmaster when RestartGeneration is greater than the
	// generation it last started with.
	RestartGeneration int64
	// Entra, when not nil, lets Microsoft Entra ID principals log in with
	// access tokens (entra.go).
	Entra *EntraSpec
}

// SettingRequireSecureTransport is privlink's (and Azure's) name for
// hostssl-only access: "on" (the default) allows TLS connections only,
// "off" allows plain ones too.
const SettingRequireSecureTransport = "require_secure_transport"

// IgnoredSettingPrefixes are prefixes of Settings keys that other parts of
// privlink handle; they never reach postgresql.conf.
var IgnoredSettingPrefixes = []string{"pgbouncer."}

// DefaultSettings are privlink's defaults for every server, chosen so that
// twenty idle servers fit comfortably in a few GB of memory and disk:
// Spec.Settings override them. Values are as postgresql.conf takes them.
var DefaultSettings = map[string]string{
	"max_connections":          "50",
	"shared_buffers":           "32MB",
	"min_wal_size":             "32MB",
	"max_wal_size":             "256MB",
	"timezone":                 "UTC",
	"log_timezone":             "UTC",
	"log_line_prefix":          "%m [%p] %q%u@%d ",
	"log_rotation_age":         "1d",
	"log_rotation_size":        "0",
	"ssl_min_protocol_version": "TLSv1.2",
}

// ProtectedSettings are PostgreSQL settings that Spec.Settings may not
// set: privlink sets some of them itself (addresses, sockets, TLS files,
// authentication, log files), and the others would let a server's users
// run programs or load code as the postgres system user on the host, or
// read and write files outside the cluster.
var ProtectedSettings = []string{
	"allow_system_table_modifications",
	"archive_cleanup_command",
	"archive_command",
	"archive_library",
	"cluster_name",
	"config_file",
	"data_directory",
	"dynamic_library_path",
	"external_pid_file",
	"hba_file",
	"ident_file",
	"ignore_checksum_failure",
	"ignore_system_indexes",
	"include",
	"include_dir",
	"include_if_exists",
	"jit_provider",
	"krb_server_keyfile",
	"listen_addresses",
	"local_preload_libraries",
	"log_directory",
	"log_file_mode",
	"log_filename",
	"log_truncate_on_rotation",
	"logging_collector",
	"password_encryption",
	"port",
	"recovery_end_command",
	"restore_command",
	"session_preload_libraries",
	"shared_preload_libraries",
	"ssl",
	"ssl_ca_file",
	"ssl_cert_file",
	"ssl_crl_dir",
	"ssl_crl_file",
	"ssl_key_file",
	"ssl_passphrase_command",
	"ssl_passphrase_command_supports_reload",
	"unix_socket_directories",
	"unix_socket_group",
	"unix_socket_permissions",
	"zero_damaged_pages",
}

// Errors callers can test for with errors.Is.
var (
	// ErrInvalid marks a spec or argument that Ensure refuses; retrying
	// the same spec fails the same way.
	ErrInvalid = errors.New("invalid server spec")
	// ErrVersionNotInstalled marks a spec whose PostgreSQL major version
	// is not installed (see VersionError).
	ErrVersionNotInstalled = errors.New("PostgreSQL version not installed")
	// ErrNotRunning marks an admin call on a server whose postmaster is
	// not running (or not ready).
	ErrNotRunning = errors.New("server not running")
	// ErrStartFailed marks a postmaster that did not come up (see
	// StartError).
	ErrStartFailed = errors.New("postmaster did not come up")
)

// SettingsError says why PostgreSQL refuses a spec's settings (checked
// with postgres -C before they are used; the previous ones stay). It
// unwraps to ErrInvalid.
type SettingsError struct {
	Reason string // what PostgreSQL said
}

func (e *SettingsError) Error() string {
	return "PostgreSQL refuses the settings (kept the previous ones): " + e.Reason
}

// Unwrap returns ErrInvalid.
func (e *SettingsError) Unwrap() error { return ErrInvalid }

// StartError says why a postmaster did not come up: it exited while
// starting (Reason quotes its log: the FATAL line and its hints) or did
// not accept connections within the start bound. Starting it again with
// the same files most likely fails the same way. It unwraps to
// ErrStartFailed.
type StartError struct {
	PID    int    // the postmaster's process id
	Reason string // what the postmaster logged, or the wait that ran out
}

func (e *StartError) Error() string {
	return fmt.Sprintf("postmaster %d did not come up: %s", e.PID, e.Reason)
}

// Unwrap returns ErrStartFailed.
func (e *StartError) Unwrap() error { return ErrStartFailed }

// VersionError says which version is missing, what is installed and how
// to install the missing one. It unwraps to ErrVersionNotInstalled.
type VersionError struct {
	Version   string   // the version asked for
	Installed []string // installed major versions, ascending
}

func (e *VersionError) Error() string {
	inst := "none"
	if len(e.Installed) > 0 {
		inst = strings.Join(e.Installed, ", ")
	}
	return fmt.Sprintf("PostgreSQL %s is not installed; installed: %s; %s", e.Version, inst, installHint(e.Version))
}

// Unwrap returns ErrVersionNotInstalled.
func (e *VersionError) Unwrap() error { return ErrVersionNotInstalled }

var (
	idRE       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	nameRE     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	versionRE  = regexp.MustCompile(`^[1-9][0-9]{0,2}$`)
	loginRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
	verifierRE = regexp.MustCompile(`^SCRAM-SHA-256\$[1-9][0-9]{0,8}:[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}:[A-Za-z0-9+/]+={0,2}$`)
	settingRE  = regexp.MustCompile(`^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$`)
)

// reservedLogins are role names the administrator may not take.
var reservedLogins = []string{
	"postgres", "public", "none", "current_role", "current_user", "session_user",
	"azure_superuser", "azure_pg_admin", "replication",
}

// templatePrefix starts the names of template directories under DataDir/pg,
// so no server ID may start with it.
const templatePrefix = "template-"

func checkID(id string) error {
	if !idRE.MatchString(id) || strings.HasPrefix(id, templatePrefix) {
		return fmt.Errorf("pgserver: server id %q: want 1-64 of [A-Za-z0-9_-], starting with a letter or digit, not %q: %w", id, templatePrefix+"...", ErrInvalid)
	}
	return nil
}

// serverConfig is a validated Spec turned into what the cluster's files
// hold.
type serverConfig struct {
	name          string            // lower-cased server name
	settings      map[string]string // PostgreSQL settings: defaults overridden by the spec
	requireSecure bool
}

// validate checks spec and returns what the cluster's files are made of.
func validate(spec Spec) (serverConfig, error) {
	if err := checkID(spec.ID); err != nil {
		return serverConfig{}, err
	}
	bad := func(format string, args ...any) (serverConfig, error) {
		return serverConfig{}, fmt.Errorf("pgserver: server %s: %s: %w", spec.ID, fmt.Sprintf(format, args...), ErrInvalid)
	}
	name := strings.ToLower(spec.Name)
	if !nameRE.MatchString(name) {
		return bad("name %q: want 1-63 of [a-z0-9-], not starting or ending with '-'", spec.Name)
	}
	if !versionRE.MatchString(spec.Version) {
		return bad("version %q: want a major version such as 15", spec.Version)
	}
	if !spec.Addr.Is4() || !fabric.ServicePrefix.Contains(spec.Addr) {
		return bad("address %v: want an IPv4 address inside %s", spec.Addr, fabric.ServicePrefix)
	}
	entraOnly := spec.AdminLogin == "" && spec.AdminVerifier == "" && spec.Entra != nil && !spec.Entra.PasswordAuth
	if !entraOnly {
		if !loginRE.MatchString(spec.AdminLogin) || strings.HasPrefix(strings.ToLower(spec.AdminLogin), "pg_") ||
			slices.Contains(reservedLogins, strings.ToLower(spec.AdminLogin)) {
			return bad("admin login %q: want 1-63 of [A-Za-z0-9_] starting with a letter or '_', not starting with pg_ and not a reserved name (or none, on a server with Entra authentication only)", spec.AdminLogin)
		}
		if !verifierRE.MatchString(spec.AdminVerifier) {
			return bad("admin verifier: want a SCRAM-SHA-256 verifier (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)")
		}
	}
	if spec.RestartGeneration < 0 {
		return bad("restart generation %d is negative", spec.RestartGeneration)
	}
	if err := validateEntra(spec); err != nil {
		return serverConfig{}, fmt.Errorf("pgserver: server %s: %w", spec.ID, err)
	}
	cfg := serverConfig{name: name, settings: maps.Clone(DefaultSettings), requireSecure: true}
	for k, v := range spec.Settings {
		key := strings.ToLower(k)
		switch {
		case key == SettingRequireSecureTransport:
			on, ok := parseBool(v)
			if !ok {
				return bad("setting %s = %q: want on or off", k, v)
			}
			cfg.requireSecure = on
			continue
		case slices.ContainsFunc(IgnoredSettingPrefixes, func(p string) bool { return strings.HasPrefix(key, p) }):
			continue
		case !settingRE.MatchString(key):
			return bad("setting name %q is not a PostgreSQL setting name", k)
		case slices.Contains(ProtectedSettings, key):
			return bad("setting %s is managed by privlink and cannot be changed", key)
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return bad("setting %s: value contains control characters", key)
		}
		cfg.settings[key] = v
	}
	return cfg, nil
}

// parseBool accepts the boolean spellings PostgreSQL accepts.
func parseBool(v string) (value, ok bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on", "true", "yes", "1", "t", "y":
		return true, true
	case "off", "false", "no", "0", "f", "n":
		return false, true
	}
	return false, false
}

// confQuote quotes v as a postgresql.conf string value.
func confQuote(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// Names of the files privlink writes in a data directory.
const (
	confDir      = "conf.d"
	confFile     = "conf.d/privlink.conf"
	hbaFile      = "pg_hba.conf"
	identFile    = "pg_ident.conf"
	certFile     = "server.crt"
	keyFile      = "server.key"
	mainConfFile = "postgresql.conf"
	pidFile      = "postmaster.pid"
	versionFile  = "PG_VERSION"
	// includeLine ends postgresql.conf, so that conf.d overrides what
	// initdb wrote; postgresql.auto.conf (ALTER SYSTEM, superuser only)
	// still comes after it.
	includeLine = "include_dir = 'conf.d'\t# added by privlink"
	// identMap is the pg_ident map that lets root (privlinkd) and the
	// postgres system user connect as role postgres over the unix socket.
	identMap = "privlink"
)

// renderConf returns conf.d/privlink.conf: the defaults overridden by the
// spec's settings, then the settings privlink owns, last so they win.
func renderConf(cfg serverConfig, addr netip.Addr, sockDir string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by privlink for server %s; changes here are overwritten.\n", cfg.name)
	b.WriteString("\n# Settings of the server (privlink's defaults, then the server's own).\n")
	for _, k := range slices.Sorted(maps.Keys(cfg.settings)) {
		fmt.Fprintf(&b, "%s = %s\n", k, confQuote(cfg.settings[k]))
	}
	b.WriteString("\n# Managed by privlink (ProtectedSettings).\n")
	fixed := [][2]string{
		{"listen_addresses", addr.String()},
		{"port", fmt.Sprint(Port)},
		{"unix_socket_directories", sockDir},
		{"unix_socket_permissions", "0700"},
		{"ssl", "on"},
		{"ssl_cert_file", certFile},
		{"ssl_key_file", keyFile},
		{"password_encryption", "scram-sha-256"},
		{"cluster_name", cfg.name},
		{"logging_collector", "on"},
		{"log_directory", "log"},
		{"log_filename", "postgresql-%a.log"},
		{"log_truncate_on_rotation", "on"},
		{"log_file_mode", "0600"},
	}
	for _, kv := range fixed {
		fmt.Fprintf(&b, "%s = %s\n", kv[0], confQuote(kv[1]))
	}
	return []byte(b.String())
}

// renderHBA returns pg_hba.conf: peer authentication on the unix socket
// for role postgres only (through the privlink ident map), no TCP access
// for role postgres, SCRAM over TLS for every other role, and SCRAM
// without TLS only when secure transport is not required. It never holds
// a trust line.
//
// With Entra authentication (entra != nil), members of EntraGroupRole
// log in through PAM (the token checked by privlink's helper) before
// those lines, and with password authentication disabled every other
// role is refused over TCP.
func renderHBA(requireSecure bool, entra *hbaEntra) []byte {
	var b strings.Builder
	b.WriteString("# Written by privlink; changes here are overwritten.\n")
	b.WriteString("# TYPE    DATABASE  USER      ADDRESS    METHOD\n")
	password := "scram-sha-256"
	if entra != nil && !entra.passwordAuth {
		password = "reject"
	}
	fmt.Fprintf(&b, "local      all       postgres             peer map=%s\n", identMap)
	// The built-in PgBouncer (pgbouncer.go): its auth_query role by peer,
	// and the roles it logs in as with their SCRAM keys, on the socket
	// only root and postgres can reach (refused too when password
	// authentication is disabled: PgBouncer's logins are passwords).
	fmt.Fprintf(&b, "local      all       %s   peer map=%s\n", bouncerRole, identMap)
	fmt.Fprintf(&b, "local      all       all                  %s\n", password)
	b.WriteString("host       all       postgres  0.0.0.0/0  reject\n")
	fmt.Fprintf(&b, "host       all       %s  0.0.0.0/0  reject\n", bouncerRole)
	if entra != nil {
		fmt.Fprintf(&b, "hostssl    all       +%s  0.0.0.0/0  pam pamservice=%s\n", EntraGroupRole, entra.service)
		if !requireSecure {
			fmt.Fprintf(&b, "host       all       +%s  0.0.0.0/0  pam pamservice=%s\n", EntraGroupRole, entra.service)
		}
	}
	fmt.Fprintf(&b, "hostssl    all       all       0.0.0.0/0  %s\n", password)
	if !requireSecure {
		fmt.Fprintf(&b, "host       all       all       0.0.0.0/0  %s\n", password)
	}
	return []byte(b.String())
}

// renderIdent returns pg_ident.conf: the system users root (privlinkd) and
// postgres may connect as role postgres, and postgres (the pooler) as
// its auth_query role.
func renderIdent() []byte {
	var b strings.Builder
	b.WriteString("# Written by privlink; changes here are overwritten.\n")
	b.WriteString("# MAPNAME  SYSTEM-USERNAME  PG-USERNAME\n")
	fmt.Fprintf(&b, "%s   root             postgres\n", identMap)
	fmt.Fprintf(&b, "%s   postgres         postgres\n", identMap)
	fmt.Fprintf(&b, "%s   postgres         %s\n", identMap, bouncerRole)
	return []byte(b.String())
}

// certNames returns the DNS names of a server's certificate.
func certNames(name string) []string {
	return []string{name + ".postgres.database.azure.com", name + ".privatelink.postgres.database.azure.com"}
}
