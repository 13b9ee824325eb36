package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/controller"
	"github.com/privlink/privlink/internal/testkit"
)

const adminPassword = "Str0ng-Passw0rd!"

type pgClients struct {
	servers   *armpostgresqlflexibleservers.ServersClient
	firewalls *armpostgresqlflexibleservers.FirewallRulesClient
	configs   *armpostgresqlflexibleservers.ConfigurationsClient
}

func newPGClients(t *testing.T, d *daemon, sub string, cfgOpts ...any) pgClients {
	f, err := armpostgresqlflexibleservers.NewClientFactory(sub, d.cfg.Credential, d.opts())
	if err != nil {
		t.Fatal(err)
	}
	return pgClients{f.NewServersClient(), f.NewFirewallRulesClient(), f.NewConfigurationsClient()}
}

func serverBody() armpostgresqlflexibleservers.Server {
	return armpostgresqlflexibleservers.Server{
		Location: ptr("westeurope"),
		SKU:      &armpostgresqlflexibleservers.SKU{Name: ptr("Standard_B1ms"), Tier: ptr(armpostgresqlflexibleservers.SKUTierBurstable)},
		Properties: &armpostgresqlflexibleservers.ServerProperties{
			Version:                    ptr(armpostgresqlflexibleservers.PostgresMajorVersion("15")),
			AdministratorLogin:         ptr("pgadmin"),
			AdministratorLoginPassword: ptr(adminPassword),
			Storage:                    &armpostgresqlflexibleservers.Storage{StorageSizeGB: ptr[int32](32)},
		},
	}
}

func createServer(t *testing.T, p pgClients, rg, name string) armpostgresqlflexibleservers.Server {
	t.Helper()
	poller, err := p.servers.BeginCreateOrUpdate(ctx(t), rg, name, serverBody(), nil)
	if err != nil {
		t.Fatalf("create server %s: %v", name, err)
	}
	res, err := poller.PollUntilDone(ctx(t), pollOpts)
	if err != nil {
		t.Fatalf("create server %s: %v", name, err)
	}
	return res.Server
}

// server is how a test reaches one server from inside its namespace.
type server struct {
	d    *daemon
	name string
	ns   string
	addr string
}

func serverIn(t *testing.T, d *daemon, rg, name string) server {
	t.Helper()
	id, _ := arm.ParseID("/subscriptions/" + d.creds.SubscriptionID + "/resourceGroups/" + rg + "/providers/Microsoft.DBforPostgreSQL/flexibleServers/" + name)
	s := server{d: d, name: name, ns: d.prefix + "svc-" + controller.FabricID(id)}
	out, err := exec.Command("ip", "-n", s.ns, "-4", "-o", "addr", "show", "dev", "lo").CombinedOutput()
	if err != nil {
		t.Fatalf("server %s namespace %s: %v %s", name, s.ns, err, out)
	}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "169.254.") {
			s.addr = strings.Split(f, "/")[0]
		}
	}
	if s.addr == "" {
		t.Fatalf("server %s has no 169.254 address: %s", name, out)
	}
	return s
}

// psql runs a query as the admin from inside the server's namespace.
func (s server) psql(password, sslmode, query string) (string, error) {
	conn := fmt.Sprintf("host=%s.postgres.database.azure.com hostaddr=%s user=pgadmin dbname=postgres sslmode=%s sslrootcert=%s connect_timeout=5",
		s.name, s.addr, sslmode, filepath.Join(s.d.dataDir, "ca.pem"))
	cmd := exec.Command("ip", "netns", "exec", s.ns, "psql", conn, "-XAtq", "-c", query)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+password)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (s server) mustPSQL(t *testing.T, query string) string {
	t.Helper()
	out, err := s.psql(adminPassword, "verify-full", query)
	if err != nil {
		t.Fatalf("psql %q on %s: %v: %s", query, s.name, err, out)
	}
	return out
}

// TestPostgres runs flexible servers for real and drives them with
// armpostgresqlflexibleservers/v5.
func TestPostgres(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip", "dig")
	if _, err := exec.LookPath("psql"); err != nil {
		t.Fatal("psql not found: run scripts/test, which installs postgresql-15")
	}
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	c := ctx(t)
	createGroup(t, d, "pg")
	p := newPGClients(t, d, d.creds.SubscriptionID)

	srv := createServer(t, p, "pg", "srv1")
	if *srv.Properties.State != armpostgresqlflexibleservers.ServerStateReady || *srv.Properties.FullyQualifiedDomainName != "srv1.postgres.database.azure.com" {
		t.Fatalf("created server: state %v fqdn %v", *srv.Properties.State, *srv.Properties.FullyQualifiedDomainName)
	}
	if srv.Properties.AdministratorLoginPassword != nil {
		t.Error("the password is echoed")
	}
	s := serverIn(t, d, "pg", "srv1")
	if got := s.mustPSQL(t, "select current_user"); got != "pgadmin" {
		t.Errorf("current_user = %q", got)
	}
	// The privatelink name is on the certificate too.
	conn := fmt.Sprintf("host=srv1.privatelink.postgres.database.azure.com hostaddr=%s user=pgadmin dbname=postgres sslmode=verify-full sslrootcert=%s", s.addr, filepath.Join(d.dataDir, "ca.pem"))
	cmd := exec.Command("ip", "netns", "exec", s.ns, "psql", conn, "-XAtqc", "select 1")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+adminPassword)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("verify-full with the privatelink name: %v %s", err, out)
	}
	if out, err := s.psql("wrong-password", "verify-full", "select 1"); err == nil || !strings.Contains(out, "password authentication failed") {
		t.Errorf("wrong password: %v %s", err, out)
	}
	if out, err := s.psql(adminPassword, "disable", "select 1"); err == nil {
		t.Errorf("a plaintext connection was accepted: %s", out)
	}
	s.mustPSQL(t, "create table kept(v text); insert into kept values ('before restart')")

	// Public DNS, as Azure's: the name is a CNAME to the privatelink name,
	// which is the server's public IP from 198.18.0.0/15.
	var out []byte
	var err error
	ok := testkit.Poll(10*time.Second, func() bool {
		out, err = exec.Command(filepath.Join(binDir, "privlink"), "--data-dir", d.dataDir, "exec", "--internet", "198.18.7.9", "--",
			"dig", "+short", "+time=2", "+tries=1", "srv1.postgres.database.azure.com").CombinedOutput()
		return err == nil && strings.Contains(string(out), "srv1.privatelink.postgres.database.azure.com.") && strings.Contains(string(out), "198.18.")
	})
	if !ok {
		t.Errorf("public DNS of srv1 from the internet: %v\n%s", err, out)
	}

	// Settings: a dynamic one applies at once.
	cp, err := p.configs.BeginPut(c, "pg", "srv1", "work_mem", armpostgresqlflexibleservers.ConfigurationForUpdate{
		Properties: &armpostgresqlflexibleservers.ConfigurationProperties{Value: ptr("8192"), Source: ptr("user-override")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	if got := s.mustPSQL(t, "show work_mem"); got != "8MB" {
		t.Errorf("work_mem after update = %q, want 8MB", got)
	}
	_, err = p.configs.BeginPut(c, "pg", "srv1", "work_mem", armpostgresqlflexibleservers.ConfigurationForUpdate{
		Properties: &armpostgresqlflexibleservers.ConfigurationProperties{Value: ptr("lots")}}, nil)
	testkit.WantARMError(t, err, http.StatusBadRequest, "InvalidParameterValue")

	// Firewall rules: stored, validated.
	if _, err := p.firewalls.BeginCreateOrUpdate(c, "pg", "srv1", "office", armpostgresqlflexibleservers.FirewallRule{
		Properties: &armpostgresqlflexibleservers.FirewallRuleProperties{StartIPAddress: ptr("198.18.7.0"), EndIPAddress: ptr("198.18.7.255")}}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = p.firewalls.BeginCreateOrUpdate(c, "pg", "srv1", "bad", armpostgresqlflexibleservers.FirewallRule{
		Properties: &armpostgresqlflexibleservers.FirewallRuleProperties{StartIPAddress: ptr("10.0.0.9"), EndIPAddress: ptr("10.0.0.1")}}, nil)
	testkit.WantARMError(t, err, http.StatusBadRequest, "InvalidParameterValue")

	// Another tenant sees nothing of it.
	other := d.principal(true)
	theirs, _ := armpostgresqlflexibleservers.NewServersClient(d.creds.SubscriptionID, other.Credential, other.ClientOptions())
	_, err = theirs.Get(c, "pg", "srv1", nil)
	testkit.WantARMError(t, err, http.StatusForbidden, "AuthorizationFailed")

	// PostgreSQL listens only inside the server's namespace.
	if out, _ := exec.Command("ss", "-Hltnp").CombinedOutput(); strings.Contains(string(out), "postgres") {
		t.Errorf("a postgres process listens in the host namespace:\n%s", out)
	}

	// kill -9 of the postmaster: the supervisor brings it back.
	pid := postmasterPID(t, d, "pg", "srv1")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !testkit.Poll(30*time.Second, func() bool { _, err := s.psql(adminPassword, "verify-full", "select 1"); return err == nil }) {
		t.Fatal("the server did not come back after kill -9 of its postmaster")
	}

	// A privlinkd restart keeps data and servers.
	d.restart(syscall.SIGTERM)
	if got := s.mustPSQL(t, "select v from kept"); got != "before restart" {
		t.Errorf("after restart: %q", got)
	}

	// Stop, start, restart.
	sp, err := p.servers.BeginStop(c, "pg", "srv1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	if got, _ := p.servers.Get(c, "pg", "srv1", nil); *got.Properties.State != armpostgresqlflexibleservers.ServerStateStopped {
		t.Errorf("after stop: %v", *got.Properties.State)
	}
	if _, err := s.psql(adminPassword, "verify-full", "select 1"); err == nil {
		t.Error("a stopped server answers")
	}
	st, err := p.servers.BeginStart(c, "pg", "srv1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	s.mustPSQL(t, "select 1")

	// Delete and re-create the same name: a fresh server.
	dp, err := p.servers.BeginDelete(c, "pg", "srv1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", s.ns)); err == nil {
		t.Error("the deleted server's namespace is still there")
	}
	createServer(t, p, "pg", "srv1")
	s = serverIn(t, d, "pg", "srv1")
	if out, err := s.psql(adminPassword, "verify-full", "select count(*) from kept"); err == nil {
		t.Errorf("the re-created server has the old server's table: %s", out)
	}
}

// postmasterPID reads a server's postmaster.pid.
func postmasterPID(t *testing.T, d *daemon, rg, name string) int {
	t.Helper()
	id, _ := arm.ParseID("/subscriptions/" + d.creds.SubscriptionID + "/resourceGroups/" + rg + "/providers/Microsoft.DBforPostgreSQL/flexibleServers/" + name)
	b, err := os.ReadFile(filepath.Join(d.dataDir, "pg", controller.FabricID(id), "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// stopPostmasters ends the postmasters the daemon started (they outlive
// privlinkd on purpose).
func stopPostmasters(t *testing.T, d *daemon) {
	if err := d.proc.StopPostmasters(syscall.SIGQUIT, 30*time.Second); err != nil {
		t.Error(err)
	}
}

// TestPostgresTwenty creates 20 servers at once through the API: all
// become Ready and accept a TLS login from inside their namespaces.
func TestPostgresTwenty(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip", "dig")
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	createGroup(t, d, "many")
	p := newPGClients(t, d, d.creds.SubscriptionID)
	const n = 20
	errs := make(chan error, n)
	for i := range n {
		go func() {
			name := fmt.Sprintf("many-%02d", i)
			poller, err := p.servers.BeginCreateOrUpdate(ctx(t), "many", name, serverBody(), nil)
			if err == nil {
				_, err = poller.PollUntilDone(ctx(t), pollOpts)
			}
			if err != nil {
				err = fmt.Errorf("%s: %w", name, err)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		return
	}
	for i := range n {
		s := serverIn(t, d, "many", fmt.Sprintf("many-%02d", i))
		if got := s.mustPSQL(t, "select 1"); got != "1" {
			t.Errorf("%s: %q", s.name, got)
		}
	}
}
