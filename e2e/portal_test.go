package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/privlink/privlink/internal/azconfig"
	"github.com/privlink/privlink/internal/identity"
	"github.com/privlink/privlink/internal/testkit"
)

// screenshotsEnv names a directory for the portal's screenshots: set it
// to the repository's docs/ to refresh docs/portal-*.png; without it they
// go to a temporary directory.
const screenshotsEnv = "PRIVLINK_PORTAL_SCREENSHOTS"

// browser is a headless chromium that talks to privlinkd's listener only.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
	// loads are the page load times measured in the browser, by page.
	loads map[string][]time.Duration
}

// newBrowser starts Debian's chromium, headless, as root without its
// sandbox, with a profile of its own. It trusts privlinkd's certificate
// by the SHA-256 of its public key (ignore-certificate-errors-spki-list):
// that key and no other, where ignore-certificate-errors would accept any
// certificate of any host; chromium reads no CA file, and adding
// privlink's CA to an NSS database would need certutil. Every host name
// resolves to nothing, and background networking is off, so chromium
// reaches only 127.0.0.1.
func newBrowser(t *testing.T, d *daemon) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found: run scripts/test, which installs it (apt-get install chromium): %v", err)
	}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("ignore-certificate-errors-spki-list", listenerSPKI(t, d)),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	shots := os.Getenv(screenshotsEnv)
	if shots == "" {
		shots = t.TempDir()
	}
	b := &browser{t: t, ctx: bctx, base: d.creds.ARMEndpoint, shots: shots, loads: map[string][]time.Duration{}}
	// The first action starts the browser; it lives as long as bctx.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

// listenerSPKI is the base64 SHA-256 of the public key of privlinkd's
// certificate, read from a connection verified against its CA.
func listenerSPKI(t *testing.T, d *daemon) string {
	t.Helper()
	pem, err := os.ReadFile(d.creds.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := tls.Dial("tcp", strings.TrimPrefix(d.creds.ARMEndpoint, "https://"), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS to privlinkd: %v", err)
	}
	defer c.Close()
	sum := sha256.Sum256(c.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// run runs actions with a bound; a failure fails the test with what the
// page shows.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v\npage:\n%s", what, err, b.text())
	}
}

// text is the visible text of the page.
func (b *browser) text() string {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
	return s
}

// value evaluates a JavaScript expression.
func (b *browser) value(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

// waitFor waits, bounded, until a JavaScript predicate holds on the page.
// It evaluates the predicate from Go rather than with chromedp.Poll, whose
// execution context goes with a navigation; an evaluation that fails while
// a page is replaced is tried again.
func (b *browser) waitFor(what, predicate string) {
	b.t.Helper()
	var last error
	ok := testkit.Poll(30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("Boolean("+predicate+")"))
		last = err
		return err == nil && v
	})
	if !ok {
		b.t.Fatalf("%s: %s did not hold within 30 s (last error: %v)\npage:\n%s", what, predicate, last, b.text())
	}
}

// loaded records the load time of the page just loaded (the browser's
// navigation timing: from the start of the navigation, redirects
// included, to the end of the load event) under name.
func (b *browser) loaded(name string) {
	b.t.Helper()
	b.waitFor("load of "+name, `performance.getEntriesByType("navigation").length > 0 && performance.getEntriesByType("navigation")[0].loadEventEnd > 0`)
	ms := b.value(`String(performance.getEntriesByType("navigation")[0].duration)`)
	var f float64
	if _, err := fmt.Sscan(ms, &f); err != nil {
		b.t.Fatalf("navigation timing of %s: %q", name, ms)
	}
	b.loads[name] = append(b.loads[name], time.Duration(f*float64(time.Millisecond)))
}

// open navigates to a portal path and records its load time.
func (b *browser) open(name, path string) {
	b.t.Helper()
	b.run("open "+path, chromedp.Navigate(b.base+path))
	b.loaded(name)
}

// screenshot saves the whole page as portal-{name}.png.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, "portal-"+name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// signIn signs in through the form as the principal of cfg.
func (b *browser) signIn(cfg *azconfig.Config) {
	b.t.Helper()
	b.open("sign-in form", "/portal/signin")
	c := cfg.Creds
	b.run("sign in as "+c.ClientID,
		chromedp.SetValue(chromedp.ID("tenant"), c.TenantID),
		chromedp.SetValue(chromedp.ID("client_id"), c.ClientID),
		chromedp.SetValue(chromedp.ID("client_secret"), c.ClientSecret),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("subscriptions")),
	)
	b.loaded("sign-in (POST, redirect, subscriptions)")
	if got := b.value(`document.getElementById("signed-in-as").textContent`); !strings.Contains(got, c.ClientID) {
		b.t.Fatalf("signed in as %q, want %s", got, c.ClientID)
	}
}

func (b *browser) signOut() {
	b.t.Helper()
	b.run("sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("signin")))
}

// connSelector selects the Networking blade's row of the connection of
// the endpoint pe.
func connSelector(pe string) string { return `tr[data-connection^="` + pe + `."]` }

// TestPortal drives the web portal in a real browser: the server's owner
// sees a Pending connection from another tenant's endpoint, a Reader of
// the subscription sees it and its approve is refused with the API's
// message, the owner approves it with a description and sees it Approved,
// then psql connects through the endpoint by name; the other tenant sees
// its endpoint's DNS configuration and its network.
func TestPortal(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces and runs chromium as root", "ip", "dig", "psql", "chromium")
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	owner := newCustomer(t, d, d.cfg, "owner")
	pg := newPGClients(t, d, d.creds.SubscriptionID)
	createServer(t, pg, "owner", "srv1")
	server := owner.id("Microsoft.DBforPostgreSQL/flexibleServers", "srv1")
	const fqdn = "srv1.postgres.database.azure.com"

	other := newCustomer(t, d, d.principal(true), "other")
	other.network(t, "10.0.5.0/24")
	other.endpoint(t, "pe-other", server, true)
	readerCfg := d.principal(false)
	assignRole(t, d.cfg, "/subscriptions/"+d.creds.SubscriptionID, objectID(t, readerCfg), identity.ReaderRoleID)

	b := newBrowser(t, d)

	// Not signed in: the portal asks to sign in.
	b.open("sign-in form", "/portal/")
	b.run("sign-in form", chromedp.WaitVisible(chromedp.ID("signin")))
	b.screenshot("signin")

	networking := "/portal/view" + server + "?blade=networking"
	row := connSelector("pe-other")

	// A Reader sees the Pending connection but no buttons; its approve,
	// forged with its own session's CSRF token, is the API's 403, shown.
	b.signIn(readerCfg)
	b.open("server networking blade", networking)
	b.waitFor("Pending connection", `document.querySelector('`+row+` .conn-state') && document.querySelector('`+row+` .conn-state').textContent === "Pending"`)
	if n := b.value(`String(document.querySelectorAll(".conn-approve, .conn-reject, .conn-remove, #fw-add").length)`); n != "0" {
		t.Errorf("the Reader is shown %s action buttons", n)
	}
	b.run("the Reader's forged approve", func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[chromedp.Void](`(() => {
			const csrf = document.querySelector('input[name="csrf"]').value;
			const f = document.createElement("form");
			f.method = "post"; f.action = "/portal/action";
			for (const [k, v] of Object.entries({csrf: csrf, id: `+"`"+server+"/privateEndpointConnections/"+"`"+` + document.querySelector('`+row+`').dataset.connection, action: "approve", description: "by a reader"})) {
				const i = document.createElement("input"); i.type = "hidden"; i.name = k; i.value = v; f.appendChild(i);
			}
			document.body.appendChild(f); f.submit();
		})()`)(ctx, tg)
		return chromedp.Void{}, err
	}, chromedp.WaitVisible(chromedp.ID("error")))
	msg := b.value(`document.getElementById("error").textContent`)
	if !strings.Contains(msg, "AuthorizationFailed") || !strings.Contains(msg, "Microsoft.DBforPostgreSQL/flexibleServers/privateEndpointConnections/write") {
		t.Errorf("the Reader's approve shows %q, want the API's AuthorizationFailed naming the action", msg)
	}
	if got := b.value(`document.querySelector('` + row + ` .conn-state').textContent`); got != "Pending" {
		t.Errorf("after the Reader's approve the connection is %s", got)
	}
	b.screenshot("reader-refused")
	b.signOut()

	// The owner approves with a description and sees it Approved.
	b.signIn(d.cfg)
	b.open("server networking blade", networking)
	b.waitFor("Pending connection", `document.querySelector('`+row+` .conn-state').textContent === "Pending"`)
	b.screenshot("networking-pending")
	b.run("approve",
		chromedp.SetValue(chromedp.CSS(row+" .conn-desc-input"), "Approved in the portal for the other tenant"),
		chromedp.Click(chromedp.CSS(row+" .conn-approve")),
	)
	b.waitFor("Approved connection", `document.querySelector('`+row+` .conn-state') && document.querySelector('`+row+` .conn-state').textContent === "Approved"`)
	b.loaded("approve (POST, redirect, networking blade)")
	if got := b.value(`document.querySelector('` + row + ` .conn-description').textContent`); got != "Approved in the portal for the other tenant" {
		t.Errorf("description shown %q", got)
	}
	if got := other.state(t, "pe-other"); got != "Approved" {
		t.Fatalf("the endpoint's connection after the portal's approve: %s", got)
	}

	// A firewall rule: a long operation whose progress the portal shows
	// until it ends.
	b.run("add a firewall rule",
		chromedp.SetValue(chromedp.ID("fw-name"), "office"),
		chromedp.SetValue(chromedp.ID("fw-start"), "198.18.7.0"),
		chromedp.SetValue(chromedp.ID("fw-end"), "198.18.7.255"),
		chromedp.Click(chromedp.ID("fw-add")),
	)
	b.waitFor("the firewall rule", `(document.getElementById("op-status") && document.getElementById("op-status").textContent === "Succeeded") || (document.getElementById("firewall-rules") && document.getElementById("firewall-rules").textContent.includes("198.18.7.255"))`)
	if b.value(`document.getElementById("op-status") ? "op" : "blade"`) == "op" {
		b.screenshot("operation")
		b.run("back to the blade", chromedp.Click(chromedp.ID("back")), chromedp.WaitVisible(chromedp.ID("firewall-rules")))
	}
	if got := b.value(`document.getElementById("firewall-rules").textContent`); !strings.Contains(got, "office") {
		t.Errorf("firewall rules after adding one: %q", got)
	}
	b.open("server networking blade", networking)
	b.screenshot("networking-approved")

	// psql through the endpoint, by the server's usual name, verify-full.
	waitDigAs(t, d, other.credFile, "other", "client", fqdn, "10.0.5.4")
	var out string
	var err error
	if !testkit.Poll(15*time.Second, func() bool {
		out, err = psqlAs(d, other.credFile, []string{"-g", "other", "client"}, fqdn, "select 'through the endpoint'")
		return err == nil
	}) {
		t.Fatalf("psql through the approved endpoint: %v: %s", err, out)
	}
	if out != "through the endpoint" {
		t.Errorf("psql answered %q", out)
	}

	// The server's overview.
	b.open("server overview", "/portal/view"+server)
	if got := b.value(`document.getElementById("server-fqdn").textContent`); got != fqdn {
		t.Errorf("overview FQDN %q", got)
	}
	if got := b.value(`document.getElementById("server-state").textContent + " " + document.getElementById("server-version").textContent`); got != "Ready 15" {
		t.Errorf("overview state and version %q", got)
	}
	b.screenshot("server")
	b.measure(map[string]string{"subscriptions": "/portal/", "resource group": "/portal/view/subscriptions/" + d.creds.SubscriptionID + "/resourceGroups/owner",
		"server overview": "/portal/view" + server, "server networking blade": networking})
	b.signOut()

	// The other tenant: its endpoint's DNS configuration and its network.
	b.signIn(other.cfg)
	b.open("private endpoint", "/portal/view"+other.id("Microsoft.Network/privateEndpoints", "pe-other"))
	if got := b.value(`document.getElementById("dns-configs").textContent`); !strings.Contains(got, fqdn) || !strings.Contains(got, "10.0.5.4") {
		t.Errorf("DNS configuration shows %q", got)
	}
	if got := b.value(`document.getElementById("zone-groups").textContent`); !strings.Contains(got, "srv1."+plZone) || !strings.Contains(got, "10.0.5.4") {
		t.Errorf("zone group shows %q", got)
	}
	b.screenshot("endpoint")
	b.open("virtual network", "/portal/view"+other.id("Microsoft.Network/virtualNetworks", "vnet"))
	for id, want := range map[string][]string{"subnets": {"clients", "endpoints", "10.0.5.0/24"}, "nics": {"client", "10.0.1.4"}, "endpoints": {"pe-other"}} {
		if got := b.value(`document.getElementById("` + id + `").textContent`); !containsAll(got, want) {
			t.Errorf("network page's %s shows %q, want %q", id, got, want)
		}
	}
	b.screenshot("network")
	b.measure(map[string]string{"private endpoint": "/portal/view" + other.id("Microsoft.Network/privateEndpoints", "pe-other"),
		"virtual network": "/portal/view" + other.id("Microsoft.Network/virtualNetworks", "vnet")})

	b.report()
}

// measure loads each page a few times, with the baseline in each round.
func (b *browser) measure(pages map[string]string) {
	b.t.Helper()
	for range 5 {
		b.open(baseline, "/healthz")
		for name, path := range pages {
			b.open(name, path)
		}
	}
}

// baseline names the load times of /healthz, privlinkd's smallest answer,
// from the same listener in the same browser.
const baseline = "baseline: /healthz"

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// report logs the page load times: the median of each page, and its
// ratio to the baseline's median (docs/benchmarks.md).
func (b *browser) report() {
	median := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2]
	}
	base := median(b.loads[baseline])
	names := make([]string, 0, len(b.loads))
	for n := range b.loads {
		names = append(names, n)
	}
	slices.Sort(names)
	var sb strings.Builder
	fmt.Fprintf(&sb, "page load times in chromium (median of n; ratio to the baseline's median %v):\n", base.Round(10*time.Microsecond))
	for _, n := range names {
		m := median(b.loads[n])
		fmt.Fprintf(&sb, "  %-45s n=%d  %8v  %5.1fx\n", n, len(b.loads[n]), m.Round(10*time.Microsecond), float64(m)/float64(base))
	}
	b.t.Log(sb.String())
}

// psqlAs is psqlIn as the principal of the credentials file creds (a
// NIC of another tenant's network).
func psqlAs(d *daemon, creds string, where []string, host, query string) (string, error) {
	args := append([]string{"--data-dir", d.dataDir, "--credentials", creds, "exec"}, where...)
	args = append(args, "--", "psql", "host="+host+" user=pgadmin dbname=postgres sslmode=verify-full connect_timeout=5 sslrootcert="+filepath.Join(d.dataDir, "ca.pem"), "-XAtq", "-c", query)
	cmd := exec.Command(filepath.Join(binDir, "privlink"), args...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+adminPassword)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
