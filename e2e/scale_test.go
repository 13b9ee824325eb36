package e2e

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/privlink/privlink/internal/testkit"
)

// scaleEndpoints is how many approved endpoints TestManyEndpointsOneNetwork
// puts in one network: well past the 63 or so whose rules once overflowed
// the router's netlink batch, and few enough for CI.
const scaleEndpoints = 100

// TestManyEndpointsOneNetwork puts scaleEndpoints approved endpoints to
// one server in one network, then checks that the router still changes:
// an endpoint created after them takes connections (its name resolves to
// it, a login through it works) and rejecting one of them closes it (its
// live session ends, a new login fails), while the others keep working.
func TestManyEndpointsOneNetwork(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip", "dig")
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	owner := newCustomer(t, d, d.cfg, "owner")
	pg := newPGClients(t, d, d.creds.SubscriptionID)
	createServer(t, pg, "owner", "srv1")
	serverIn(t, d, "owner", "srv1").mustPSQL(t, "create table whoami as select 'srv1' as name")
	owner.network(t, "10.0.2.0/24")
	server := owner.id("Microsoft.DBforPostgreSQL/flexibleServers", "srv1")

	// The endpoints, 8 at a time, as a user's script would.
	addrs := make([]string, scaleEndpoints)
	errs := make(chan error, scaleEndpoints)
	sem := make(chan struct{}, 8)
	cx := ctx(t)
	for i := range scaleEndpoints {
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			pe, err := owner.tryEndpoint(cx, fmt.Sprintf("pe%03d", i), server, false)
			if err != nil {
				errs <- fmt.Errorf("endpoint pe%03d: %w", i, err)
				return
			}
			addrs[i] = peIP(pe)
			errs <- nil
		}()
	}
	for range scaleEndpoints {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	client := []string{"-g", "owner", "client"}
	const srv1 = "srv1.postgres.database.azure.com"
	loginVia := func(addr, query string) (string, error) {
		return psqlConn(d, client, "host="+srv1+" hostaddr="+addr+" user=pgadmin dbname=postgres sslmode=verify-full connect_timeout=5 sslrootcert="+filepath.Join(d.dataDir, "ca.pem"), query)
	}
	// Every one of them takes connections (a sample, to keep CI short).
	for _, i := range []int{0, scaleEndpoints / 2, scaleEndpoints - 1} {
		if out, err := loginVia(addrs[i], "select name from whoami"); err != nil || out != "srv1" {
			t.Errorf("login through pe%03d (%s): %v: %q", i, addrs[i], err, out)
		}
	}

	// One more, with its zone group: once its poller returns it takes
	// connections, and its name resolves to it.
	late := owner.endpoint(t, "pe-late", server, false)
	if err := sslRequestIn(d, owner.id("Microsoft.Network/networkInterfaces", "client"), peIP(late)); err != nil {
		t.Errorf("endpoint created after %d others, right after its operation finished: %v", scaleEndpoints, err)
	}
	if out, err := loginVia(peIP(late), "select name from whoami"); err != nil || out != "srv1" {
		t.Errorf("login through the endpoint created after %d others (%s): %v: %q", scaleEndpoints, peIP(late), err, out)
	}
	waitDigAs(t, d, "", "owner", "client", srv1, peIP(late))
	if out, err := psqlIn(d, client, srv1, "select 1"); err != nil {
		t.Errorf("login by name through the late endpoint: %v: %s", err, out)
	}

	// Rejecting one of the first ones closes it: its live session ends and
	// new logins through it fail; its neighbours keep working.
	victim := 7
	rejectUnderSession(t, d, owner, client, "host="+srv1+" hostaddr="+addrs[victim], fmt.Sprintf("pe%03d", victim))
	if out, err := loginVia(addrs[victim], "select 1"); err == nil {
		t.Errorf("a login through the rejected endpoint pe%03d (%s) succeeded: %s", victim, addrs[victim], out)
	} else {
		t.Logf("login through the rejected endpoint failed as wanted: %s", out)
	}
	for _, i := range []int{victim - 1, victim + 1} {
		if out, err := loginVia(addrs[i], "select 1"); err != nil {
			t.Errorf("login through pe%03d, a neighbour of the rejected one: %v: %s", i, err, out)
		}
	}
}
