package postgres

import (
	"regexp"
	"slices"
	"strings"
)

// The built-in PgBouncer's server parameters, as Azure lists them
// (learn.microsoft.com, "PgBouncer in Azure Database for PostgreSQL -
// flexible server", and its server parameter table, checked against
// MicrosoftDocs/azure-databases-docs server-parameters-table-pgbouncer.md):
// names, descriptions, defaults, allowed values (pool_mode's lower-case,
// matched in any case) and bounds are Azure's. Azure hides
// pgbouncer.enabled on the Burstable tier; privlink offers it on every
// tier (its tiers are names, not machines). All are
// dynamic: the pooler takes them by reload (pool_mode and the pool sizes
// apply to new server connections), pgbouncer.enabled starts or stops it.
// None is read-only. Azure's pgbouncer.max_prepared_statements is listed
// as Azure lists it (0-5000, default 0), but privlink takes only 0, what
// Debian 12's PgBouncer 1.18 does (it tracks no prepared statements; that
// came in 1.21): a client that sets it to 0 or reads it works, any other
// value is refused saying why. Each documentationLink is Azure's, PgBouncer's
// configuration page.
//
// pgserver reads them from Desired.Settings (the keys keep their
// pgbouncer. prefix; PostgreSQL never sees them).

// SettingPgBouncerEnabled is the configuration that runs the pooler.
const SettingPgBouncerEnabled = "pgbouncer.enabled"

const pgbouncerDocs = "https://www.pgbouncer.org/config.html"

// preparedStatementsWhy says why pgbouncer.max_prepared_statements takes
// only 0.
const preparedStatementsWhy = "privlink's PgBouncer is Debian 12's 1.18, which tracks no prepared statements; max_prepared_statements needs PgBouncer 1.21"

// Azure's allowed values of the two list parameters, as its server
// parameter table writes them (MicrosoftDocs/azure-databases-docs,
// server-parameters-table-pgbouncer.md): stats_users takes role names with
// @ and - (Entra principals' names), ignore_startup_parameters parameter
// names. Neither lets a value end a line of pgbouncer.ini.
const (
	statsUsersAllowed    = `[A-Za-z0-9,@_\-\.]*`
	startupParamsAllowed = `[A-Za-z0-9_\.,]*`
)

var (
	statsUsersRE    = regexp.MustCompile(`^` + statsUsersAllowed + `$`)
	startupParamsRE = regexp.MustCompile(`^` + startupParamsAllowed + `$`)
)

var pgbouncerCatalog = []setting{
	{name: "pgbouncer.default_pool_size", dataType: dtInteger, def: "50", dynamic: true, min: 1, max: 4950,
		description: "How many server connections to allow per user/database pair."},
	{name: SettingPgBouncerEnabled, dataType: dtBoolean, def: "false", dynamic: true, values: []string{"true", "false"},
		description: "Denotes if pgBouncer service is enabled."},
	{name: "pgbouncer.ignore_startup_parameters", dataType: dtString, def: "", dynamic: true, allowed: startupParamsAllowed, check: startupParamsRE.MatchString,
		description: "Comma-separated list of parameters that PgBouncer can ignore, because they will be handled by the admin."},
	{name: "pgbouncer.max_client_conn", dataType: dtInteger, def: "5000", dynamic: true, min: 1, max: 50000,
		description: "Maximum number of client connections allowed."},
	{name: "pgbouncer.max_prepared_statements", dataType: dtInteger, def: "0", dynamic: true, min: 0, max: 5000,
		only: "0", onlyWhy: preparedStatementsWhy, docs: pgbouncerDocs + "#max_prepared_statements",
		description: "When this is set to a non-zero value PgBouncer tracks protocol-level named prepared statements related commands sent by the client in transaction and statement pooling mode."},
	{name: "pgbouncer.min_pool_size", dataType: dtInteger, def: "0", dynamic: true, min: 0, max: 4950,
		description: "Add more server connections to pool if below this number."},
	{name: "pgbouncer.pool_mode", dataType: dtEnumeration, def: "transaction", dynamic: true, values: []string{"session", "transaction", "statement"},
		description: "Specifies when a server connection can be reused by other clients."},
	{name: "pgbouncer.query_wait_timeout", dataType: dtInteger, def: "120", unit: "seconds", dynamic: true, min: 0, max: 86400,
		description: "Maximum time (in seconds) queries are allowed to spend waiting for execution. If the query is not assigned to a server during that time, the client is disconnected."},
	{name: "pgbouncer.server_idle_timeout", dataType: dtInteger, def: "600", unit: "seconds", dynamic: true, min: 0, max: 86400,
		description: "If a server connection has been idle more than this many seconds it will be dropped. If 0 then timeout is disabled."},
	{name: "pgbouncer.stats_users", dataType: dtString, def: "", dynamic: true, allowed: statsUsersAllowed, check: statsUsersRE.MatchString,
		description: "Comma-separated list of database users that are allowed to connect and run read-only queries on the pgBouncer console."},
}

// withPgBouncer returns the catalog base with the PgBouncer parameters,
// sorted by name as Azure lists them.
func withPgBouncer(base []setting) []setting {
	out := slices.Concat(base, pgbouncerCatalog)
	for i := range out {
		if strings.HasPrefix(out[i].name, "pgbouncer.") && out[i].docs == "" {
			out[i].docs = pgbouncerDocs
		}
	}
	slices.SortFunc(out, func(a, b setting) int { return strings.Compare(a.name, b.name) })
	return out
}

// PgBouncerEnabled reports whether d runs the built-in PgBouncer.
func (d *Desired) PgBouncerEnabled() bool { return d.Settings[SettingPgBouncerEnabled] == "true" }
