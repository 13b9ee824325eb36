package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"

	"github.com/privlink/privlink/internal/testkit"
)

// TestPgBouncer drives the built-in PgBouncer through the configurations
// API and a private endpoint: enabled with default_pool_size 10, pgbench
// -c 50 at 6432 from the client NIC runs while the server shows at most 10
// backends of the pooler for that database and role; privlinkd's restart
// keeps the pooler (same process) and 6432 answering; disabling closes
// 6432.
func TestPgBouncer(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip", "dig", "pgbench", "/usr/sbin/pgbouncer")
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	d.cli("--data-dir", d.dataDir, "quickstart", "--server", "pgb-e2e", "--password", adminPassword)
	p := newPGClients(t, d, d.creds.SubscriptionID)
	where := []string{"-g", "quickstart", "qs-client"}
	host := "pgb-e2e.postgres.database.azure.com"
	conninfo := func(port int) string {
		return fmt.Sprintf("host=%s port=%d user=pgadmin dbname=postgres sslmode=verify-full connect_timeout=5 sslrootcert=%s", host, port, filepath.Join(d.dataDir, "ca.pem"))
	}
	testkit.WaitFor(t, 30*time.Second, "psql through the endpoint at 5432", func() error {
		_, err := psqlConn(d, where, conninfo(5432), "select 1")
		return err
	})
	if out, err := psqlConn(d, where, conninfo(6432), "select 1"); err == nil {
		t.Fatalf("6432 answers before pgbouncer is enabled: %s", out)
	}
	set := func(name, value string) {
		t.Helper()
		poller, err := p.configs.BeginPut(ctx(t), "quickstart", "pgb-e2e", name, armpostgresqlflexibleservers.ConfigurationForUpdate{
			Properties: &armpostgresqlflexibleservers.ConfigurationProperties{Value: ptr(value), Source: ptr("user-override")}}, nil)
		if err == nil {
			_, err = poller.PollUntilDone(ctx(t), pollOpts)
		}
		if err != nil {
			t.Fatalf("%s = %s: %v", name, value, err)
		}
	}
	set("pgbouncer.default_pool_size", "10")
	set("pgbouncer.max_prepared_statements", "0") // Azure's; 1.18's pgbouncer.ini has no such line
	set("pgbouncer.enabled", "true")
	testkit.WaitFor(t, 30*time.Second, "psql through the endpoint at 6432", func() error {
		_, err := psqlConn(d, where, conninfo(6432), "select 1")
		return err
	})
	pid := bouncerPID(t, d)

	// pgbench -c 50 through the pooler; the server sees its backends over
	// the unix socket (client_addr null), the direct session at 5432 does
	// not count itself.
	if out, err := pgbench(d, where, conninfo(5432), "-i", "-s", "1", "-q"); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	bench := exec.Command(filepath.Join(binDir, "privlink"), append([]string{"--data-dir", d.dataDir, "exec"}, append(where,
		"--", "pgbench", "-n", "-S", "-c", "50", "-j", "2", "-T", "15", conninfo(6432))...)...)
	bench.Env = append(os.Environ(), "PGPASSWORD="+adminPassword)
	var benchOut bytes.Buffer
	bench.Stdout, bench.Stderr = &benchOut, &benchOut
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	benchDone := make(chan error, 1)
	go func() { benchDone <- bench.Wait() }()
	count := `select count(*) from pg_stat_activity where usename = 'pgadmin' and datname = 'postgres' and client_addr is null and backend_type = 'client backend'`
	most, samples := 0, 0
	for running := true; running; {
		select {
		case err := <-benchDone:
			running = false
			if err != nil {
				t.Fatalf("pgbench -c 50 at 6432: %v\n%s", err, benchOut.String())
			}
		default:
			out, err := psqlConn(d, where, conninfo(5432), count)
			if err != nil {
				continue
			}
			n, _ := strconv.Atoi(out)
			most, samples = max(most, n), samples+1
		}
	}
	t.Logf("pgbench -c 50 at 6432: %s; at most %d server backends of the pooler over %d samples", lastLine(benchOut.String()), most, samples)
	if !strings.Contains(benchOut.String(), "number of clients: 50") || !strings.Contains(benchOut.String(), "tps = ") {
		t.Errorf("pgbench output:\n%s", benchOut.String())
	}
	if most == 0 || most > 10 {
		t.Errorf("at most %d backends of the pooler while 50 clients ran, want 1 to 10 (default_pool_size)", most)
	}

	// A restart of privlinkd keeps the pooler.
	d.restart(syscall.SIGKILL)
	testkit.WaitFor(t, 30*time.Second, "psql at 6432 after privlinkd's restart", func() error {
		_, err := psqlConn(d, where, conninfo(6432), "select 1")
		return err
	})
	if now := bouncerPID(t, d); now != pid {
		t.Errorf("pgbouncer %d after privlinkd's restart, was %d", now, pid)
	}

	// Disabled: 6432 closes.
	set("pgbouncer.enabled", "false")
	testkit.WaitFor(t, 30*time.Second, "6432 refused after disabling", func() error {
		if out, err := psqlConn(d, where, conninfo(6432), "select 1"); err == nil {
			return fmt.Errorf("still answers: %s", out)
		}
		return nil
	})
	if out, err := psqlConn(d, where, conninfo(5432), "select 1"); err != nil {
		t.Errorf("5432 after disabling pgbouncer: %v: %s", err, out)
	}
}

// pgbench runs pgbench from inside a NIC, as psqlConn runs psql.
func pgbench(d *daemon, where []string, conninfo string, args ...string) (string, error) {
	all := append([]string{"--data-dir", d.dataDir, "exec"}, where...)
	all = append(append(append(all, "--", "pgbench"), args...), conninfo)
	cmd := exec.Command(filepath.Join(binDir, "privlink"), all...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+adminPassword)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// bouncerPID returns the pid of the one server's pgbouncer, from its pid
// file.
func bouncerPID(t *testing.T, d *daemon) int {
	t.Helper()
	pids := d.proc.PgBouncers()
	if len(pids) != 1 {
		t.Fatalf("pgbouncers %v, want one", pids)
	}
	return pids[0]
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
