package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/testkit"
)

// TestWhy: `privlink why` says what stops a connection and agrees with a
// real attempt from inside the NIC: a Pending endpoint is unreachable for
// want of approval (and the attempt fails); once approved it is reachable
// (and PostgreSQL answers).
func TestWhy(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip", "dig")
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	owner := newCustomer(t, d, d.cfg, "why")
	owner.network(t, "10.0.2.0/24")
	createServer(t, newPGClients(t, d, d.creds.SubscriptionID), "why", "srv-why")
	pe := owner.endpoint(t, "pe", owner.id("Microsoft.DBforPostgreSQL/flexibleServers", "srv-why"), true)
	addr := peIP(pe) + ":5432"
	client := owner.id("Microsoft.Network/networkInterfaces", "client")

	out, err := d.cliResult("--data-dir", d.dataDir, "why", "-g", "why", "client", addr)
	if err == nil || !strings.Contains(out, "unreachable") || !strings.Contains(out, "Pending, not Approved") {
		t.Errorf("why with a Pending endpoint: %v\n%s", err, out)
	}
	if !strings.Contains(out, "created network watcher NetworkWatcher_westeurope") {
		t.Errorf("why did not say it created the region's watcher:\n%s", out)
	}
	if err := sslRequestIn(d, client, peIP(pe)); err == nil {
		t.Error("why says unreachable, yet PostgreSQL answers through the Pending endpoint")
	}

	if err := setConnection(t, owner, "srv-why", "pe", "Approved"); err != nil {
		t.Fatal(err)
	}
	out, err = d.cliResult("--data-dir", d.dataDir, "why", "-g", "why", "client", addr)
	if err != nil || !strings.Contains(out, "reachable") || strings.Contains(out, "unreachable") || strings.Contains(out, "created") {
		t.Errorf("why with an Approved endpoint: %v\n%s", err, out)
	}
	testkit.WaitFor(t, 10*time.Second, "PostgreSQL answering through the approved endpoint", func() error { return sslRequestIn(d, client, peIP(pe)) })
}
