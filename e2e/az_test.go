package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/testkit"
)

// The az CLI, unchanged, drives privlinkd as a new user would: the lines
// `privlink az-setup` prints (az config, az cloud register, az login), then
// the ordinary workflow, each command's exit status checked and its JSON
// where it matters, ending with psql through the private endpoint by name
// and deleting everything with az. az reaches nothing but privlinkd: a
// proxy that refuses and records every request stands for the rest of the
// world (AZURE_CONFIG_DIR is the test's own).
//
// Two clients: Debian 13's az 2.74 (scripts/install-azure-cli, run by
// scripts/test) for the whole workflow, and Debian 12's az 2.45, whose `az
// network` crashes from a packaging bug, for what it can do (az postgres,
// az resource, az group).

// az274 is where scripts/install-azure-cli puts az 2.74.
const az274 = "/opt/privlink/azure-cli/bin/az"

// azBinary returns the az of one release, failing the test when it is
// missing (scripts/test installs both).
func azBinary(t *testing.T, release string) string {
	t.Helper()
	path := map[string]string{"2.74": az274, "2.45": "/usr/bin/az"}[release]
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("az %s not found at %s: run scripts/test, which installs it (scripts/install-azure-cli)", release, path)
	}
	return path
}

// azCLI runs one az release with a configuration directory of its own.
type azCLI struct {
	t     *testing.T
	bin   string // a directory holding "az", first on PATH
	env   []string
	calls *azCalls
}

// azCalls records how long each az command took.
type azCalls struct {
	mu    sync.Mutex
	total time.Duration
	n     int
}

// worldProxy stands for everything but privlinkd: az's HTTPS_PROXY and
// HTTP_PROXY, with NO_PROXY naming privlinkd's address. It refuses every
// request and records where it was going.
type worldProxy struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []string
}

func newWorldProxy(t *testing.T) *worldProxy {
	p := &worldProxy{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen = append(p.seen, r.Method+" "+r.Host+r.URL.Path)
		p.mu.Unlock()
		http.Error(w, "privlink test: az may reach privlinkd only", http.StatusForbidden)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// versionChecks are what az asks the internet on its first start in a
// configuration directory, whatever its configuration: whether a newer
// release exists (azure-cli's core.util.handle_version_update; 2.45
// first checks connectivity to azure.microsoft.com, 2.74 to
// raw.githubusercontent.com). Refused, az carries on.
var versionChecks = []string{"CONNECT azure.microsoft.com:443", "CONNECT raw.githubusercontent.com:443"}

// check fails the test when az reached anything but privlinkd, or when
// the proxy saw none of az's version checks: then az did not go through
// it, and what az reached is unknown.
func (p *worldProxy) check(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !slices.ContainsFunc(p.seen, func(s string) bool { return slices.Contains(versionChecks, s) }) {
		t.Fatalf("the proxy standing for the world saw none of az's first-start version checks %v (it saw %v): az does not go through it", versionChecks, p.seen)
	}
	if beyond := slices.DeleteFunc(slices.Clone(p.seen), func(s string) bool { return slices.Contains(versionChecks, s) }); len(beyond) != 0 {
		t.Fatalf("az reached beyond privlinkd: %v", beyond)
	}
}

// newAzCLI sets up az for the principal of credFile by running, line by
// line, what `privlink az-setup` prints for it.
func newAzCLI(t *testing.T, d *daemon, azPath string, proxy *worldProxy, calls *azCalls, credFile string, setupArgs ...string) *azCLI {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(azPath, filepath.Join(bin, "az")); err != nil {
		t.Fatal(err)
	}
	host := strings.Split(strings.TrimPrefix(d.creds.ARMEndpoint, "https://"), ":")[0]
	env := append(os.Environ(),
		"PATH="+bin+":"+os.Getenv("PATH"),
		"AZURE_CONFIG_DIR="+filepath.Join(dir, "azure"),
		"HTTPS_PROXY="+proxy.srv.URL, "HTTP_PROXY="+proxy.srv.URL, "NO_PROXY="+host,
		"https_proxy="+proxy.srv.URL, "http_proxy="+proxy.srv.URL, "no_proxy="+host,
	)
	a := &azCLI{t: t, bin: bin, env: env, calls: calls}
	setup := d.cli(append([]string{"--credentials", credFile, "az-setup"}, setupArgs...)...)
	sc := bufio.NewScanner(strings.NewReader(setup))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "export "):
			k, v, _ := strings.Cut(strings.TrimPrefix(line, "export "), "=")
			a.env = append(a.env, k+"="+strings.Trim(v, "'"))
		default:
			start := time.Now()
			cmd := exec.Command("bash", "-c", line)
			cmd.Env = a.env
			out, err := cmd.CombinedOutput()
			a.calls.add(time.Since(start))
			if err != nil {
				t.Fatalf("az-setup line %q: %v\n%s", line, err, out)
			}
		}
	}
	return a
}

func (c *azCalls) add(d time.Duration) {
	c.mu.Lock()
	c.total += d
	c.n++
	c.mu.Unlock()
}

// run runs az with args and -o json and decodes its output into v (when
// not nil); a non-zero exit fails the test.
func (a *azCLI) run(v any, args ...string) {
	a.t.Helper()
	out, errOut, err := a.exec(args...)
	if err != nil {
		a.t.Fatalf("az %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	if v != nil {
		if err := json.Unmarshal(out, v); err != nil {
			a.t.Fatalf("az %s printed no JSON: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func (a *azCLI) exec(args ...string) (stdout, stderr []byte, err error) {
	cmd := exec.Command(filepath.Join(a.bin, "az"), append(args, "-o", "json")...)
	cmd.Env = a.env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	start := time.Now()
	err = cmd.Run()
	a.calls.add(time.Since(start))
	return o.Bytes(), e.Bytes(), err
}

// obj is a JSON object az printed.
type obj = map[string]any

// jget walks a JSON value along a path of keys and indexes ("a.b.0.c").
func jget(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			var i int
			if _, err := fmt.Sscan(k, &i); err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func wantJSON(t *testing.T, what string, v any, path string, want any) {
	t.Helper()
	if got := jget(v, path); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: %s = %v, want %v", what, path, got, want)
	}
}

// newTenantCredentials creates a principal in a new tenant and writes its
// credentials for az-setup.
func (d *daemon) newTenantCredentials(t *testing.T) string {
	t.Helper()
	out := d.cli("--data-dir", d.dataDir, "principal", "create", "--new-tenant", "--name", "team-b")
	f := filepath.Join(t.TempDir(), "team-b.json")
	if err := os.WriteFile(f, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// armTime sums the durations of the requests privlinkd's router logged
// (at debug level) in log.
var armRequestLine = regexp.MustCompile(`msg="arm request" .* duration=(\S+)`)

func armTime(log string) (n int, total time.Duration) {
	for _, m := range armRequestLine.FindAllStringSubmatch(log, -1) {
		if d, err := time.ParseDuration(m[1]); err == nil {
			n++
			total += d
		}
	}
	return n, total
}

// TestAzCLI274 runs the whole workflow with az 2.74.
func TestAzCLI274(t *testing.T) {
	testkit.RequireRoot(t, "privlinkd builds namespaces and runs PostgreSQL", "ip", "psql")
	azPath := azBinary(t, "2.74")
	d := startDaemon(t, "bolt")
	proxy := newWorldProxy(t)
	calls := &azCalls{}
	start := time.Now()
	owner := newAzCLI(t, d, azPath, proxy, calls, filepath.Join(d.dataDir, "credentials.json"))
	teamB := newAzCLI(t, d, azPath, proxy, calls, d.newTenantCredentials(t))

	const (
		zone     = "privatelink.postgres.database.azure.com"
		password = "Az-cli-Pa55word"
		srvType  = "Microsoft.DBforPostgreSQL/flexibleServers"
	)
	srv := "azsrv" + strings.ReplaceAll(d.prefix[4:], "-", "")
	var o obj
	owner.run(&o, "group", "create", "-n", "rg", "-l", "westeurope")
	wantJSON(t, "group create", o, "properties.provisioningState", "Succeeded")
	owner.run(&o, "network", "vnet", "create", "-g", "rg", "-n", "vnet", "--address-prefixes", "10.0.0.0/16",
		"--subnet-name", "clients", "--subnet-prefixes", "10.0.1.0/24")
	wantJSON(t, "vnet create", o, "newVNet.subnets.0.addressPrefix", "10.0.1.0/24")
	owner.run(&o, "network", "vnet", "subnet", "create", "-g", "rg", "--vnet-name", "vnet", "-n", "endpoints",
		"--address-prefixes", "10.0.2.0/24", "--private-endpoint-network-policies", "Enabled")
	wantJSON(t, "subnet create", o, "privateEndpointNetworkPolicies", "Enabled")
	owner.run(nil, "network", "nsg", "create", "-g", "rg", "-n", "nsg")
	owner.run(&o, "network", "nsg", "rule", "create", "-g", "rg", "--nsg-name", "nsg", "-n", "allow-pg", "--priority", "100",
		"--direction", "Inbound", "--access", "Allow", "--protocol", "Tcp", "--destination-port-ranges", "5432",
		"--source-address-prefixes", "10.0.1.0/24")
	wantJSON(t, "nsg rule create", o, "access", "Allow")
	owner.run(&o, "network", "vnet", "subnet", "update", "-g", "rg", "--vnet-name", "vnet", "-n", "endpoints", "--nsg", "nsg")
	if id, _ := jget(o, "networkSecurityGroup.id").(string); !strings.HasSuffix(id, "/networkSecurityGroups/nsg") {
		t.Fatalf("subnet update --nsg: networkSecurityGroup.id = %q", id)
	}
	owner.run(&o, "network", "nic", "create", "-g", "rg", "-n", "client", "--vnet-name", "vnet", "--subnet", "clients")
	wantJSON(t, "nic create", o, "NewNIC.ipConfigurations.0.privateIPAddress", "10.0.1.4")
	owner.run(nil, "network", "private-dns", "zone", "create", "-g", "rg", "-n", zone)
	owner.run(&o, "network", "private-dns", "link", "vnet", "create", "-g", "rg", "-z", zone, "-n", "link", "-v", "vnet", "-e", "false")
	wantJSON(t, "private-dns link create", o, "virtualNetworkLinkState", "Completed")
	owner.run(&o, "network", "private-dns", "record-set", "a", "add-record", "-g", "rg", "-z", zone, "-n", "other", "-a", "10.0.2.99")
	wantJSON(t, "record-set a add-record", o, "aRecords.0.ipv4Address", "10.0.2.99")

	owner.run(&o, "postgres", "flexible-server", "create", "-g", "rg", "-n", srv, "-l", "westeurope",
		"--admin-user", "pgadmin", "--admin-password", password, "--version", "15", "--tier", "Burstable",
		"--sku-name", "Standard_B1ms", "--storage-size", "32", "--public-access", "None", "--yes")
	srvID, _ := o["id"].(string)
	if !strings.HasSuffix(srvID, "/flexibleServers/"+srv) {
		t.Fatalf("flexible-server create printed id %q", srvID)
	}
	owner.manageServer("rg", srv)
	owner.run(&o, "postgres", "flexible-server", "update", "-g", "rg", "-n", srv, "--public-access", "Enabled")
	wantJSON(t, "update --public-access Enabled", o, "network.publicNetworkAccess", "Enabled")
	owner.firewallRule("rg", srv)
	owner.run(&o, "postgres", "flexible-server", "update", "-g", "rg", "-n", srv, "--public-access", "Disabled")
	wantJSON(t, "update --public-access Disabled", o, "network.publicNetworkAccess", "Disabled")

	// The owner's own endpoint is approved at once.
	owner.run(&o, "network", "private-endpoint", "create", "-g", "rg", "-n", "pe", "--vnet-name", "vnet", "--subnet", "endpoints",
		"--private-connection-resource-id", srvID, "--group-id", "postgresqlServer", "--connection-name", "conn")
	wantJSON(t, "private-endpoint create", o, "privateLinkServiceConnections.0.privateLinkServiceConnectionState.status", "Approved")
	wantJSON(t, "private-endpoint create", o, "customDnsConfigs.0.ipAddresses.0", "10.0.2.4")
	owner.run(&o, "network", "private-endpoint", "dns-zone-group", "create", "-g", "rg", "--endpoint-name", "pe", "-n", "default",
		"--private-dns-zone", zone, "--zone-name", "pg")
	wantJSON(t, "dns-zone-group create", o, "privateDnsZoneConfigs.0.name", "pg")

	// Team B, in a tenant of its own, asks; the owner decides.
	teamB.run(nil, "group", "create", "-n", "teamb", "-l", "westeurope")
	teamB.run(nil, "network", "vnet", "create", "-g", "teamb", "-n", "bvnet", "--address-prefixes", "10.1.0.0/16",
		"--subnet-name", "pe", "--subnet-prefixes", "10.1.0.0/24")
	manual := func(name, message string) {
		teamB.run(&o, "network", "private-endpoint", "create", "-g", "teamb", "-n", name, "--vnet-name", "bvnet", "--subnet", "pe",
			"--private-connection-resource-id", srvID, "--group-id", "postgresqlServer", "--connection-name", name,
			"--manual-request", "--request-message", message)
		wantJSON(t, "private-endpoint create --manual-request", o, "manualPrivateLinkServiceConnections.0.privateLinkServiceConnectionState.status", "Pending")
	}
	manual("bpe1", "team B asks for reporting")
	manual("bpe2", "team B asks again")
	var list []any
	pending := map[string]string{} // request message → connection name
	owner.run(&list, "network", "private-endpoint-connection", "list", "-g", "rg", "-n", srv, "--type", srvType)
	if len(list) != 3 {
		t.Fatalf("private-endpoint-connection list: %d connections, want 3: %v", len(list), list)
	}
	for _, c := range list {
		state := jget(c, "properties.privateLinkServiceConnectionState")
		if jget(state, "status") == "Pending" {
			desc, _ := jget(state, "description").(string)
			pending[strings.TrimPrefix(desc, "Awaiting approval by the server's owner: ")] = jget(c, "name").(string)
		}
	}
	c1, c2 := pending["team B asks for reporting"], pending["team B asks again"]
	if c1 == "" || c2 == "" {
		t.Fatalf("the pending connections do not carry team B's messages: %v", list)
	}
	pec := func(verb, name string, extra ...string) obj {
		var out obj
		args := append([]string{"network", "private-endpoint-connection", verb, "-g", "rg", "-n", name,
			"--resource-name", srv, "--type", srvType}, extra...)
		owner.run(&out, args...)
		return out
	}
	wantJSON(t, "private-endpoint-connection show", pec("show", c1), "properties.privateLinkServiceConnectionState.status", "Pending")
	o = pec("approve", c1, "--description", "approved for team B")
	wantJSON(t, "private-endpoint-connection approve", o, "properties.privateLinkServiceConnectionState.status", "Approved")
	wantJSON(t, "private-endpoint-connection approve", o, "properties.privateLinkServiceConnectionState.description", "approved for team B")
	teamB.run(&o, "network", "private-endpoint", "show", "-g", "teamb", "-n", "bpe1")
	wantJSON(t, "team B's endpoint after approval", o, "manualPrivateLinkServiceConnections.0.privateLinkServiceConnectionState.status", "Approved")
	wantJSON(t, "team B's endpoint after approval", o, "manualPrivateLinkServiceConnections.0.privateLinkServiceConnectionState.description", "approved for team B")

	pg := func(verb, name string, extra ...string) obj {
		var out obj
		args := append([]string{"postgres", "flexible-server", "private-endpoint-connection", verb, "-g", "rg", "-s", srv, "-n", name}, extra...)
		owner.run(&out, args...)
		return out
	}
	owner.run(&list, "postgres", "flexible-server", "private-endpoint-connection", "list", "-g", "rg", "-s", srv)
	if len(list) != 3 {
		t.Fatalf("postgres private-endpoint-connection list: %d, want 3", len(list))
	}
	o = pg("approve", c2, "--description", "second one approved")
	wantJSON(t, "postgres private-endpoint-connection approve", o, "privateLinkServiceConnectionState.status", "Approved")
	o = pg("reject", c1, "--description", "reporting is over")
	wantJSON(t, "postgres private-endpoint-connection reject", o, "privateLinkServiceConnectionState.status", "Rejected")
	wantJSON(t, "postgres private-endpoint-connection show", pg("show", c1), "privateLinkServiceConnectionState.description", "reporting is over")
	o = pec("reject", c2, "--description", "no longer")
	wantJSON(t, "private-endpoint-connection reject", o, "properties.privateLinkServiceConnectionState.status", "Rejected")
	owner.run(nil, "network", "private-endpoint-connection", "delete", "-g", "rg", "-n", c1, "--resource-name", srv, "--type", srvType, "--yes")
	owner.run(nil, "postgres", "flexible-server", "private-endpoint-connection", "delete", "-g", "rg", "-s", srv, "-n", c2)
	owner.run(&list, "network", "private-endpoint-connection", "list", "-g", "rg", "-n", srv, "--type", srvType)
	if len(list) != 1 || jget(list, "0.properties.privateEndpoint.id") == nil ||
		!strings.HasSuffix(jget(list, "0.properties.privateEndpoint.id").(string), "/privateEndpoints/pe") {
		t.Fatalf("after deleting team B's connections: %v", list)
	}

	// psql through the owner's endpoint, by the server's name, verify-full,
	// from inside the client NIC (its network's DNS answers from the zone
	// the zone group keeps).
	var psqlOut string
	testkit.WaitFor(t, 30*time.Second, "psql through the endpoint", func() error {
		cmd := exec.Command(filepath.Join(binDir, "privlink"), "--data-dir", d.dataDir, "exec", "-g", "rg", "client", "--",
			"psql", fmt.Sprintf("host=%s.postgres.database.azure.com user=pgadmin dbname=postgres sslmode=verify-full sslrootcert=%s connect_timeout=5",
				srv, filepath.Join(d.dataDir, "ca.pem")),
			"-Atc", "select current_setting('work_mem'), ssl from pg_stat_ssl where pid = pg_backend_pid()")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+password)
		out, err := cmd.CombinedOutput()
		psqlOut = strings.TrimSpace(string(out))
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if psqlOut != "8MB|t" {
		t.Fatalf("psql through the endpoint answered %q, want the parameter az set (8MB) over TLS", psqlOut)
	}

	// Everything goes, with az.
	for _, args := range [][]string{
		{"network", "private-endpoint", "dns-zone-group", "delete", "-g", "rg", "--endpoint-name", "pe", "-n", "default"},
		{"network", "private-endpoint", "delete", "-g", "rg", "-n", "pe"},
		{"network", "nic", "delete", "-g", "rg", "-n", "client"},
		{"network", "vnet", "subnet", "update", "-g", "rg", "--vnet-name", "vnet", "-n", "endpoints", "--nsg", "null"},
		{"network", "nsg", "rule", "delete", "-g", "rg", "--nsg-name", "nsg", "-n", "allow-pg"},
		{"network", "nsg", "delete", "-g", "rg", "-n", "nsg"},
		{"network", "private-dns", "record-set", "a", "remove-record", "-g", "rg", "-z", zone, "-n", "other", "-a", "10.0.2.99"},
		{"network", "private-dns", "link", "vnet", "delete", "-g", "rg", "-z", zone, "-n", "link", "--yes"},
		{"network", "private-dns", "zone", "delete", "-g", "rg", "-n", zone, "--yes"},
		{"network", "vnet", "subnet", "delete", "-g", "rg", "--vnet-name", "vnet", "-n", "endpoints"},
		{"network", "vnet", "delete", "-g", "rg", "-n", "vnet"},
		{"postgres", "flexible-server", "delete", "-g", "rg", "-n", srv, "--yes"},
		{"group", "delete", "-n", "rg", "--yes"},
	} {
		owner.run(nil, args...)
	}
	for _, args := range [][]string{
		{"network", "private-endpoint", "delete", "-g", "teamb", "-n", "bpe1"},
		{"network", "private-endpoint", "delete", "-g", "teamb", "-n", "bpe2"},
		{"network", "vnet", "delete", "-g", "teamb", "-n", "bvnet"},
		{"group", "delete", "-n", "teamb", "--yes"},
	} {
		teamB.run(nil, args...)
	}
	for _, a := range []*azCLI{owner, teamB} {
		var groups []any
		a.run(&groups, "group", "list")
		if len(groups) != 0 {
			t.Fatalf("resource groups left after deleting everything: %v", groups)
		}
	}
	wall := time.Since(start)
	proxy.check(t)
	owner.report(d, "az 2.74 workflow", wall)
}

// TestAzCLI245 drives privlinkd with Debian 12's az 2.45 as far as it
// goes: it signs in through the AD FS shaped authority (it has no
// core.instance_discovery), creates a server with az resource (its
// flexible-server create also creates a database, a type privlink does not
// serve) and manages it with az postgres.
func TestAzCLI245(t *testing.T) {
	testkit.RequireRoot(t, "privlinkd builds namespaces and runs PostgreSQL", "ip")
	azPath := azBinary(t, "2.45")
	d := startDaemon(t, "bolt")
	proxy := newWorldProxy(t)
	calls := &azCalls{}
	start := time.Now()
	a := newAzCLI(t, d, azPath, proxy, calls, filepath.Join(d.dataDir, "credentials.json"), "--adfs")

	srv := "azold" + strings.ReplaceAll(d.prefix[4:], "-", "")
	var o obj
	a.run(&o, "group", "create", "-n", "rg45", "-l", "westeurope")
	wantJSON(t, "group create", o, "properties.provisioningState", "Succeeded")
	body := `{"location":"westeurope","sku":{"name":"Standard_B1ms","tier":"Burstable"},` +
		`"properties":{"administratorLogin":"pgadmin","administratorLoginPassword":"Az-cli-Pa55word","version":"15","storage":{"storageSizeGB":32}}}`
	a.run(&o, "resource", "create", "-g", "rg45", "-n", srv, "--resource-type", "Microsoft.DBforPostgreSQL/flexibleServers",
		"--api-version", "2022-12-01", "--is-full-object", "--properties", body)
	wantJSON(t, "resource create", o, "properties.state", "Ready")
	a.manageServer("rg45", srv)
	a.firewallRule("rg45", srv)
	a.run(nil, "postgres", "flexible-server", "delete", "-g", "rg45", "-n", srv, "--yes")
	a.run(nil, "group", "delete", "-n", "rg45", "--yes")
	wall := time.Since(start)
	proxy.check(t)
	a.report(d, "az 2.45 workflow", wall)
}

// report logs the benchmark of an az workflow (docs/benchmarks.md): its
// wall time, az's commands, privlinkd's share from its access log (the
// router logs each request at debug level with its duration; read once
// privlinkd has stopped, so that the log is complete), and as the
// baseline az's own start-up in the same run: the median of three `az
// account show`, which read only the local profile. It stops d.
func (a *azCLI) report(d *daemon, label string, wall time.Duration) {
	a.t.Helper()
	a.calls.mu.Lock()
	n, inAz := a.calls.n, a.calls.total
	a.calls.mu.Unlock()
	var local []time.Duration
	for range 3 {
		start := time.Now()
		if out, errOut, err := a.exec("account", "show"); err != nil {
			a.t.Fatalf("az account show: %v\n%s%s", err, out, errOut)
		}
		local = append(local, time.Since(start))
	}
	slices.Sort(local)
	d.stop(syscall.SIGTERM)
	requests, inARM := armTime(d.log.String())
	each := inAz / time.Duration(n)
	a.t.Logf("%s: %v wall, %d az commands taking %v (%v each, %.1f× a local `az account show`, %v); "+
		"privlinkd served %d ARM requests in %v: %.2f%% of the wall time, %.2f%% of az's",
		label, wall.Round(time.Millisecond), n, inAz.Round(time.Millisecond), each.Round(time.Millisecond),
		each.Seconds()/local[1].Seconds(), local[1].Round(time.Millisecond),
		requests, inARM.Round(time.Millisecond), 100*inARM.Seconds()/wall.Seconds(), 100*inARM.Seconds()/inAz.Seconds())
}

// manageServer runs on the server srv of group rg the az postgres
// flexible-server commands both releases have (show, list, update --tags,
// stop, start, restart, parameter set and show), checking the states and
// values they print.
func (a *azCLI) manageServer(rg, srv string) {
	t := a.t
	t.Helper()
	fs := func(v any, args ...string) {
		t.Helper()
		a.run(v, append([]string{"postgres", "flexible-server"}, args...)...)
	}
	var o obj
	fs(&o, "show", "-g", rg, "-n", srv)
	wantJSON(t, "flexible-server show", o, "state", "Ready")
	wantJSON(t, "flexible-server show", o, "version", "15")
	wantJSON(t, "flexible-server show", o, "fullyQualifiedDomainName", srv+".postgres.database.azure.com")
	var list []any
	fs(&list, "list", "-g", rg)
	wantJSON(t, "flexible-server list", list, "0.name", srv)
	fs(&o, "update", "-g", rg, "-n", srv, "--tags", "env=test")
	wantJSON(t, "flexible-server update --tags", o, "tags.env", "test")
	fs(nil, "stop", "-g", rg, "-n", srv)
	fs(&o, "show", "-g", rg, "-n", srv)
	wantJSON(t, "flexible-server show after stop", o, "state", "Stopped")
	fs(nil, "start", "-g", rg, "-n", srv)
	fs(nil, "restart", "-g", rg, "-n", srv)
	fs(&o, "show", "-g", rg, "-n", srv)
	wantJSON(t, "flexible-server show after start and restart", o, "state", "Ready")
	fs(&o, "parameter", "set", "-g", rg, "-s", srv, "-n", "work_mem", "--value", "8192")
	wantJSON(t, "parameter set", o, "value", "8192")
	fs(&o, "parameter", "show", "-g", rg, "-s", srv, "-n", "work_mem")
	wantJSON(t, "parameter show", o, "value", "8192")
}

// firewallRule creates, lists and deletes a firewall rule of the server
// srv of group rg.
func (a *azCLI) firewallRule(rg, srv string) {
	t := a.t
	t.Helper()
	var o obj
	a.run(&o, "postgres", "flexible-server", "firewall-rule", "create", "-g", rg, "-n", srv, "--rule-name", "office",
		"--start-ip-address", "198.18.7.9", "--end-ip-address", "198.18.7.9")
	wantJSON(t, "firewall-rule create", o, "startIpAddress", "198.18.7.9")
	wantJSON(t, "firewall-rule create", o, "endIpAddress", "198.18.7.9")
	var list []any
	a.run(&list, "postgres", "flexible-server", "firewall-rule", "list", "-g", rg, "-n", srv)
	wantJSON(t, "firewall-rule list", list, "0.name", "office")
	a.run(nil, "postgres", "flexible-server", "firewall-rule", "delete", "-g", rg, "-n", srv, "--rule-name", "office", "--yes")
	a.run(&list, "postgres", "flexible-server", "firewall-rule", "list", "-g", rg, "-n", srv)
	if len(list) != 0 {
		t.Fatalf("firewall rules after deleting the one: %v", list)
	}
}
