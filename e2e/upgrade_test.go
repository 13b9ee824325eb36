package e2e

import (
	"errors"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/privlink/privlink/internal/testkit"
)

// TestMajorVersionUpgrade upgrades a PostgreSQL 15 server with data, a
// password changed in SQL, a role of its own (app_reader: a password and a
// grant) and a private endpoint, with the official SDK:
// a restore the new major refuses fails the operation and leaves 15
// serving through the endpoint; the upgrade to 17 (a skip, as Azure
// allows) ends Ready, and through the same endpoint and name `select
// version()` shows 17 with the data and both roles' passwords; a downgrade is
// refused. It needs scripts/install-pg-majors' 16 and 17.
func TestMajorVersionUpgrade(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip", "psql",
		"runuser", "/opt/privlink/pg/16/bin/postgres", "/opt/privlink/pg/17/bin/postgres") // scripts/install-pg-majors
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	cx := ctx(t)
	owner := newCustomer(t, d, d.cfg, "owner")
	pg := newPGClients(t, d, d.creds.SubscriptionID)
	createServer(t, pg, "owner", "mvu")
	const changed = "Chang3d-in-SQL!"
	s := serverIn(t, d, "owner", "mvu")
	s.mustPSQL(t, "create table t as select g as id, md5(g::text) as v from generate_series(1, 20000) g")
	s.mustPSQL(t, "create database appdb")
	if out, err := s.psql(adminPassword, "verify-full", "alter role pgadmin password '"+changed+"'"); err != nil {
		t.Fatalf("change the password in SQL: %v: %s", err, out)
	}
	// A role of the user's own, with a password and a grant, made by the
	// superuser over the server's unix socket (privlink's administrator
	// has no CREATEROLE on 15: internal/pgserver adminCreateRole).
	const appPassword = "R3ader-pw!"
	socks, _ := filepath.Glob(filepath.Join(d.dataDir, "pg", "*", "run"))
	if len(socks) != 1 {
		t.Fatalf("the server's socket directory: %q", socks)
	}
	if out, err := exec.Command("runuser", "-u", "postgres", "--", "psql", "-h", socks[0], "-d", "postgres", "-XAtq",
		"-c", "create role app_reader login password '"+appPassword+"'", "-c", "grant select on t to app_reader").CombinedOutput(); err != nil {
		t.Fatalf("create role app_reader: %v: %s", err, out)
	}
	owner.network(t, "10.0.2.0/24")
	owner.endpoint(t, "pe", owner.id("Microsoft.DBforPostgreSQL/flexibleServers", "mvu"), false)
	client := []string{"-g", "owner", "client"}
	const name = "mvu.postgres.database.azure.com"
	through := func(query string) (string, error) {
		return psqlConn(d, client, "host="+name+" user=pgadmin password="+changed+" dbname=postgres sslmode=verify-full connect_timeout=5 sslrootcert="+d.dataDir+"/ca.pem", query)
	}
	const check = "select current_setting('server_version_num')::int / 10000 || ' ' || count(*) || ' ' || sum(length(v)) from t"
	var out string
	if !testkit.Poll(30*time.Second, func() bool {
		out, _ = through(check)
		return out == "15 20000 640000"
	}) {
		t.Fatalf("through the endpoint before the upgrade: %q", out)
	}
	upgrade := func(version string) (armpostgresqlflexibleservers.Server, error) {
		p, err := pg.servers.BeginUpdate(cx, "owner", "mvu", armpostgresqlflexibleservers.ServerForPatch{
			Properties: &armpostgresqlflexibleservers.ServerPropertiesForPatch{Version: ptr(armpostgresqlflexibleservers.PostgresMajorVersion(version))}}, nil)
		if err != nil {
			return armpostgresqlflexibleservers.Server{}, err
		}
		res, err := p.PollUntilDone(cx, pollOpts)
		return res.Server, err
	}
	get := func() armpostgresqlflexibleservers.Server {
		res, err := pg.servers.Get(cx, "owner", "mvu", nil)
		if err != nil {
			t.Fatal(err)
		}
		return res.Server
	}

	// force_parallel_mode is gone from PostgreSQL 16: the restore of
	// appdb's setting fails, and 15 serves on.
	s.psqlAs(t, changed, "alter database appdb set force_parallel_mode = off")
	_, err := upgrade("16")
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.ErrorCode != "MajorVersionUpgradeFailed" || !strings.Contains(err.Error(), "force_parallel_mode") {
		t.Fatalf("upgrade with a setting 16 refuses: %v, want MajorVersionUpgradeFailed naming force_parallel_mode", err)
	}
	if srv := get(); *srv.Properties.Version != "15" || *srv.Properties.State != armpostgresqlflexibleservers.ServerStateReady {
		t.Errorf("after a failed upgrade: version %s state %s, want 15 Ready", *srv.Properties.Version, *srv.Properties.State)
	}
	if out, err := through(check); err != nil || out != "15 20000 640000" {
		t.Fatalf("through the endpoint after a failed upgrade: %v: %q", err, out)
	}
	s.psqlAs(t, changed, "alter database appdb reset force_parallel_mode")

	srv, err := upgrade("17")
	if err != nil {
		t.Fatalf("upgrade to 17: %v", err)
	}
	if *srv.Properties.Version != "17" || *srv.Properties.State != armpostgresqlflexibleservers.ServerStateReady {
		t.Errorf("after the upgrade: version %s state %s, want 17 Ready", *srv.Properties.Version, *srv.Properties.State)
	}
	// The same endpoint and name, right after the poller.
	if out, err := through(check); err != nil || out != "17 20000 640000" {
		t.Fatalf("through the endpoint after the upgrade: %v: %q, want 17 with the data", err, out)
	}
	if out, err := through("select version()"); err != nil || !strings.HasPrefix(out, "PostgreSQL 17.") {
		t.Errorf("select version(): %v: %q", err, out)
	}
	if out, err := psqlConn(d, client, "host="+name+" user=app_reader password="+appPassword+" dbname=postgres sslmode=verify-full connect_timeout=5 sslrootcert="+d.dataDir+"/ca.pem",
		"select count(*) from t"); err != nil || out != "20000" {
		t.Errorf("the role app_reader with its password through the endpoint after the upgrade: %v: %q", err, out)
	}
	if out, err := through("insert into t values (0, 'after'); select count(*) from pg_database where datname = 'appdb'"); err != nil || out != "INSERT 0 1\n1" && out != "1" {
		t.Errorf("write after the upgrade: %v: %q", err, out)
	}

	_, err = upgrade("15")
	testkit.WantResponseError(t, err, http.StatusBadRequest, "MajorVersionDowngradeNotAllowed")
}

// psqlAs runs a query as the admin with password from inside the
// server's namespace and fails the test on error.
func (s server) psqlAs(t *testing.T, password, query string) string {
	t.Helper()
	out, err := s.psql(password, "verify-full", query)
	if err != nil {
		t.Fatalf("psql %q on %s: %v: %s", query, s.name, err, out)
	}
	return out
}
