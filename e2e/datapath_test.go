package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/controller"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/testkit"
)

// psqlIn runs psql as the server's admin from inside a NIC (-g rg nic) or
// an internet host (--internet addr), resolving the server's usual name
// through that network's DNS and verifying its certificate.
func psqlIn(d *daemon, where []string, host, query string) (string, error) {
	return psqlConn(d, where, "host="+host+" user=pgadmin dbname=postgres sslmode=verify-full connect_timeout=5 sslrootcert="+filepath.Join(d.dataDir, "ca.pem"), query)
}

// psqlConn runs psql with the connection string conninfo, as psqlIn.
func psqlConn(d *daemon, where []string, conninfo, query string) (string, error) {
	args := append([]string{"--data-dir", d.dataDir, "exec"}, where...)
	args = append(args, "--", "psql", conninfo, "-XAtq", "-c", query)
	cmd := exec.Command(filepath.Join(binDir, "privlink"), args...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+adminPassword)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// sslRequestIn connects from inside the NIC nicID to addr:5432 and sends
// PostgreSQL's SSLRequest; PostgreSQL answers 'S' (or 'N').
func sslRequestIn(d *daemon, nicID, addr string) error {
	id, err := arm.ParseID(nicID)
	if err != nil {
		return err
	}
	fab, err := fabric.New(d.prefix, nil)
	if err != nil {
		return err
	}
	cx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := fab.DialContext(cx, fab.NamespaceName(fabric.KindNIC, controller.FabricID(id)), "tcp", net.JoinHostPort(addr, "5432"))
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
		return fmt.Errorf("send SSLRequest: %w", err)
	}
	answer := make([]byte, 1)
	if _, err := io.ReadFull(c, answer); err != nil {
		return fmt.Errorf("read the answer to SSLRequest: %w", err)
	}
	if answer[0] != 'S' && answer[0] != 'N' {
		return fmt.Errorf("answer %q to SSLRequest, not PostgreSQL's", answer)
	}
	return nil
}

// TestDataPath sends real PostgreSQL sessions through private endpoints and
// public access, and withdraws them.
func TestDataPath(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip", "dig")
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	cx := ctx(t)
	owner := newCustomer(t, d, d.cfg, "owner")
	pg := newPGClients(t, d, d.creds.SubscriptionID)
	createServer(t, pg, "owner", "srv1")
	createServer(t, pg, "owner", "srv2")
	serverIn(t, d, "owner", "srv1").mustPSQL(t, "create table whoami as select 'srv1' as name")
	serverIn(t, d, "owner", "srv2").mustPSQL(t, "create table whoami as select 'srv2' as name")
	owner.network(t, "10.0.2.0/24")
	pe := owner.endpointAlone(t, "pe1", owner.id("Microsoft.DBforPostgreSQL/flexibleServers", "srv1"), false)
	// The endpoint's operation finishes once its translation is in place:
	// PostgreSQL answers at its address right after the poller, no retry.
	if err := sslRequestIn(d, owner.id("Microsoft.Network/networkInterfaces", "client"), peIP(pe)); err != nil {
		t.Fatalf("right after the endpoint's operation finished: %v", err)
	}
	owner.zoneGroup(t, "pe1")
	client := []string{"-g", "owner", "client"}
	const srv1 = "srv1.postgres.database.azure.com"

	// The name resolves to the endpoint only once its translation is in
	// place: the first psql after the first answer works, no retry.
	var addr string
	if !testkit.Poll(15*time.Second, func() bool {
		addr = digAs(t, d, "", "owner", "client", srv1)
		return strings.HasPrefix(addr, "10.0.2.")
	}) {
		t.Fatalf("%s never resolved to the endpoint in the network (last: %q)", srv1, addr)
	}
	// Through the endpoint, with verify-full on the usual name: srv1.
	out, err := psqlIn(d, client, srv1, "select name from whoami")
	if err != nil {
		t.Fatalf("psql right after %s resolved to the endpoint %s: %v: %s", srv1, addr, err, out)
	}
	if out != "srv1" {
		t.Errorf("the endpoint led to %q, want srv1", out)
	}
	// Only the approved endpoint's translation exists: srv2's service
	// address and public address are out of reach from the network.
	if out, err := psqlIn(d, client, "srv2.postgres.database.azure.com", "select 1"); err == nil {
		t.Errorf("reached srv2 from a network with an endpoint to srv1 only: %s", out)
	}
	s2 := serverIn(t, d, "owner", "srv2")
	if out, err := psqlIn(d, client, "srv2.postgres.database.azure.com hostaddr="+s2.addr, "select 1"); err == nil {
		t.Errorf("reached srv2's internal address: %s", out)
	}
	// Naming srv2 (host, hence SNI) to srv1's endpoint changes nothing:
	// the translation knows no names. verify-full refuses srv1's
	// certificate for srv2's name; without verification it is srv1.
	if out, err := psqlIn(d, client, "srv2.postgres.database.azure.com hostaddr="+peIP(pe), "select name from whoami"); err == nil {
		t.Errorf("srv2's name through srv1's endpoint passed verify-full: %s", out)
	}
	out, err = psqlConn(d, client, "host=srv2.postgres.database.azure.com hostaddr="+peIP(pe)+" user=pgadmin dbname=postgres sslmode=require connect_timeout=5", "select name from whoami")
	if err != nil || out != "srv1" {
		t.Errorf("srv2's name through srv1's endpoint, sslmode=require: %v: %q, want srv1", err, out)
	}

	// Public access: only sources inside a firewall rule.
	internet := func(addr string) []string { return []string{"--internet", addr} }
	if out, err := psqlIn(d, internet("198.18.7.9"), srv1, "select 1"); err == nil {
		t.Errorf("no firewall rule, yet an internet client got in: %s", out)
	}
	fp, err := pg.firewalls.BeginCreateOrUpdate(cx, "owner", "srv1", "office", armpostgresqlflexibleservers.FirewallRule{
		Properties: &armpostgresqlflexibleservers.FirewallRuleProperties{StartIPAddress: ptr("198.18.7.0"), EndIPAddress: ptr("198.18.7.255")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	if !testkit.Poll(10*time.Second, func() bool {
		out, err = psqlIn(d, internet("198.18.7.9"), srv1, "select client_addr from pg_stat_activity where pid = pg_backend_pid()")
		return err == nil
	}) {
		t.Fatalf("internet client inside the rule: %v: %s", err, out)
	}
	if out != "198.18.7.9" {
		t.Errorf("the server sees the public client as %q, want its real address", out)
	}
	if out, err := psqlIn(d, internet("198.18.8.9"), srv1, "select 1"); err == nil {
		t.Errorf("an internet client outside the rule got in: %s", out)
	}

	// CancelRequest takes the same path to the right backend: psql sends
	// one on SIGINT (privlink exec becomes psql, same PID).
	cargs := append([]string{"--data-dir", d.dataDir, "exec"}, client...)
	cargs = append(cargs, "--", "psql", "host="+srv1+" user=pgadmin dbname=postgres sslmode=verify-full sslrootcert="+filepath.Join(d.dataDir, "ca.pem"), "-XAtq", "-c", "select pg_sleep(60)")
	cancel := exec.Command(filepath.Join(binDir, "privlink"), cargs...)
	cancel.Env = append(os.Environ(), "PGPASSWORD="+adminPassword)
	var cancelOut strings.Builder
	cancel.Stdout, cancel.Stderr = &cancelOut, &cancelOut
	if err := cancel.Start(); err != nil {
		t.Fatal(err)
	}
	sleeping := func() bool {
		out, _ := serverIn(t, d, "owner", "srv1").psql(adminPassword, "verify-full", "select count(*) from pg_stat_activity where query like 'select pg_sleep%'")
		return out == "1"
	}
	if !testkit.Poll(10*time.Second, sleeping) {
		t.Fatal("the session to cancel did not start")
	}
	_ = cancel.Process.Signal(syscall.SIGINT)
	_ = cancel.Wait()
	if !strings.Contains(cancelOut.String(), "canceling statement due to user request") {
		t.Errorf("cancel through the endpoint: %s", cancelOut.String())
	}

	// Revocation: a session open through the endpoint ends when the owner
	// rejects the connection; new ones are refused.
	rejectUnderSession(t, d, owner, client, "host="+srv1, "pe1")
	if out, err := psqlIn(d, client, srv1, "select 1"); err == nil {
		t.Errorf("a new session after rejection: %s", out)
	}
}

// rejectUnderSession starts psql as client (privlink exec arguments) to
// owner's srv1 with connection options conn (host=...), running
// pg_sleep(60); once the server runs it, it rejects the connection of
// endpoint pe, and checks that the session ends.
func rejectUnderSession(t *testing.T, d *daemon, owner *customer, client []string, conn, pe string) {
	t.Helper()
	exited := sleepSession(t, d, nil, client, conn, "60", "owner", "srv1")
	if err := setConnection(t, owner, "srv1", pe, "Rejected"); err != nil {
		t.Fatal(err)
	}
	rejected := time.Now()
	select {
	case <-exited:
		t.Logf("the open session through %s ended %v after the reject call returned", pe, time.Since(rejected))
	case <-time.After(10 * time.Second):
		t.Errorf("the open session through %s survived the rejection", pe)
	}
}

// sleepSession starts psql running select pg_sleep(secs) as pgadmin with
// verify-full to conn, from client (privlink exec's target, after the
// CLI's global flags cli), and waits until the server rg/srv runs it. The
// channel receives psql's exit.
func sleepSession(t *testing.T, d *daemon, cli, client []string, conn, secs, rg, srv string) <-chan error {
	t.Helper()
	args := append(append([]string{"--data-dir", d.dataDir}, cli...), "exec")
	args = append(args, client...)
	args = append(args, "--", "psql", conn+" user=pgadmin dbname=postgres sslmode=verify-full sslrootcert="+filepath.Join(d.dataDir, "ca.pem"),
		"-XAtq", "-c", "select pg_sleep("+secs+")")
	cmd := exec.Command(filepath.Join(binDir, "privlink"), args...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+adminPassword)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	if !testkit.Poll(15*time.Second, func() bool {
		out, _ := serverIn(t, d, rg, srv).psql(adminPassword, "verify-full", "select count(*) from pg_stat_activity where query = 'select pg_sleep("+secs+")'")
		return out == "1"
	}) {
		t.Fatalf("the long session from %v did not start", client)
	}
	return exited
}

// TestQuickstart runs `privlink quickstart` and connects the way it says.
func TestQuickstart(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip", "dig")
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	out := d.cli("--data-dir", d.dataDir, "quickstart", "--server", "qs-e2e", "--password", adminPassword)
	for _, want := range []string{"resource group quickstart", "private endpoint qs-pe", "exec -g quickstart qs-client", "sslmode=verify-full"} {
		if !strings.Contains(out, want) {
			t.Errorf("quickstart output lacks %q:\n%s", want, out)
		}
	}
	var got string
	var err error
	if !testkit.Poll(15*time.Second, func() bool {
		got, err = psqlIn(d, []string{"-g", "quickstart", "qs-client"}, "qs-e2e.postgres.database.azure.com", "select current_user")
		return err == nil
	}) {
		t.Fatalf("connecting as the quickstart says: %v: %s", err, got)
	}
	if got != "pgadmin" {
		t.Errorf("current_user = %q", got)
	}
}

// TestDataPathAcrossTenants: a second tenant's overlapping network gets in
// only once approved; public access rules; sessions survive privlinkd.
func TestDataPathAcrossTenants(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip", "dig")
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	cx := ctx(t)
	owner := newCustomer(t, d, d.cfg, "owner")
	pg := newPGClients(t, d, d.creds.SubscriptionID)
	createServer(t, pg, "owner", "srv1")
	server := owner.id("Microsoft.DBforPostgreSQL/flexibleServers", "srv1")
	const srv1 = "srv1.postgres.database.azure.com"
	owner.network(t, "10.0.2.0/24")
	owner.endpoint(t, "pe-owner", server, false)
	other := newCustomer(t, d, d.principal(true), "other")
	other.network(t, "10.0.2.0/24") // the same addresses as the owner's network
	other.endpoint(t, "pe-other", server, true)
	mine := []string{"-g", "owner", "client"}
	theirs := []string{"--credentials", other.credFile, "exec", "-g", "other", "client"}
	psqlOther := func(query string) (string, error) {
		args := append([]string{"--data-dir", d.dataDir}, theirs...)
		args = append(args, "--", "psql", "host="+srv1+" user=pgadmin dbname=postgres sslmode=verify-full connect_timeout=5 sslrootcert="+filepath.Join(d.dataDir, "ca.pem"), "-XAtq", "-c", query)
		cmd := exec.Command(filepath.Join(binDir, "privlink"), args...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+adminPassword)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	waitOK := func(what string, f func() (string, error)) {
		t.Helper()
		var out string
		var err error
		if !testkit.Poll(15*time.Second, func() bool { out, err = f(); return err == nil }) {
			t.Fatalf("%s: %v: %s", what, err, out)
		}
	}
	waitOK("owner through its endpoint", func() (string, error) { return psqlIn(d, mine, srv1, "select 1") })
	if out, err := psqlOther("select 1"); err == nil {
		t.Fatalf("a Pending endpoint let a session through: %s", out)
	}
	if err := setConnection(t, owner, "srv1", "pe-other", "Approved"); err != nil {
		t.Fatal(err)
	}
	waitOK("other tenant after approval", func() (string, error) { return psqlOther("select 1") })
	// Both at once, and the server tells them apart by SNAT address.
	a, _ := psqlIn(d, mine, srv1, "select inet_client_addr()")
	b, _ := psqlOther("select inet_client_addr()")
	if a == "" || a == b {
		t.Errorf("both networks reach the server as %q and %q; want two different endpoint addresses", a, b)
	}

	// Plaintext gets PostgreSQL's own refusal; another port gets nothing.
	args := append([]string{"--data-dir", d.dataDir, "exec"}, mine...)
	plain := exec.Command(filepath.Join(binDir, "privlink"), append(args, "--", "psql", "host="+srv1+" user=pgadmin dbname=postgres sslmode=disable", "-c", "select 1")...)
	plain.Env = append(os.Environ(), "PGPASSWORD="+adminPassword)
	if out, err := plain.CombinedOutput(); err == nil || !strings.Contains(string(out), "no encryption") {
		t.Errorf("plaintext through the endpoint: %v %s", err, out)
	}
	if out, err := psqlIn(d, mine, srv1+" port=5433", "select 1"); err == nil {
		t.Errorf("another port of the endpoint answered: %s", out)
	}

	// Public access disabled (the server's default here is enabled, with
	// no rule): only endpoints get in, whatever the rules.
	fp, err := pg.firewalls.BeginCreateOrUpdate(cx, "owner", "srv1", "all", armpostgresqlflexibleservers.FirewallRule{
		Properties: &armpostgresqlflexibleservers.FirewallRuleProperties{StartIPAddress: ptr("198.18.0.0"), EndIPAddress: ptr("198.19.255.255")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	waitOK("internet client with a rule", func() (string, error) { return psqlIn(d, []string{"--internet", "198.18.9.9"}, srv1, "select 1") })
	up, err := pg.servers.BeginUpdate(cx, "owner", "srv1", armpostgresqlflexibleservers.ServerForPatch{Properties: &armpostgresqlflexibleservers.ServerPropertiesForPatch{
		Network: &armpostgresqlflexibleservers.Network{PublicNetworkAccess: ptr(armpostgresqlflexibleservers.ServerPublicNetworkAccessStateDisabled)}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	if !testkit.Poll(10*time.Second, func() bool {
		_, err := psqlIn(d, []string{"--internet", "198.18.9.9"}, srv1, "select 1")
		return err != nil
	}) {
		t.Error("public access disabled, yet an internet client still gets in")
	}
	if _, err := psqlIn(d, mine, srv1, "select 1"); err != nil {
		t.Errorf("public access disabled also cut the endpoint: %v", err)
	}

	// A session in use survives kill -9 of privlinkd; new ones work after.
	long := exec.Command(filepath.Join(binDir, "privlink"), append(args, "--", "psql", "host="+srv1+" user=pgadmin dbname=postgres sslmode=verify-full sslrootcert="+filepath.Join(d.dataDir, "ca.pem"),
		"-XAtq", "-c", "select pg_sleep(4)", "-c", "select 'survived'")...)
	long.Env = append(os.Environ(), "PGPASSWORD="+adminPassword)
	var longOut strings.Builder
	long.Stdout, long.Stderr = &longOut, &longOut
	if err := long.Start(); err != nil {
		t.Fatal(err)
	}
	if !testkit.Poll(10*time.Second, func() bool {
		out, _ := serverIn(t, d, "owner", "srv1").psql(adminPassword, "verify-full", "select count(*) from pg_stat_activity where query like 'select pg_sleep%'")
		return out == "1"
	}) {
		t.Fatal("the long session did not start")
	}
	d.restart(syscall.SIGKILL)
	if err := long.Wait(); err != nil || !strings.Contains(longOut.String(), "survived") {
		t.Errorf("a session across kill -9 of privlinkd: %v %s", err, longOut.String())
	}
	waitOK("a new session after the restart", func() (string, error) { return psqlIn(d, mine, srv1, "select 1") })

	// Every endpoint rejected or deleted, public access disabled: nothing.
	if err := setConnection(t, owner, "srv1", "pe-other", "Rejected"); err != nil {
		t.Fatal(err)
	}
	dp, err := owner.pes.BeginDelete(cx, "owner", "pe-owner", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	if !testkit.Poll(10*time.Second, func() bool {
		_, e1 := psqlOther("select 1")
		_, e2 := psqlIn(d, []string{"--internet", "198.18.9.9"}, srv1, "select 1")
		return e1 != nil && e2 != nil
	}) {
		t.Error("with every path withdrawn something still gets in")
	}
}
