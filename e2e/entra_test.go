package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/privlink/privlink/internal/controller"
	"github.com/privlink/privlink/internal/pgserver"
	"github.com/privlink/privlink/internal/store/bolt"
	"github.com/privlink/privlink/internal/testkit"
)

const ossRDBMSScope = "https://ossrdbms-aad.database.windows.net/.default"

// TestEntra: Microsoft Entra ID logins checked by PostgreSQL itself, through
// a private endpoint, driven by armpostgresqlflexibleservers/v5 (issue 13).
func TestEntra(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces and PAM services", "ip", "psql")
	if _, err := os.Stat("/lib/x86_64-linux-gnu/security/pam_script.so"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("pam_script.so is missing (apt-get install libpam-script; scripts/deps.sh)")
		}
		t.Skip("pam_script.so is missing (apt-get install libpam-script)")
	}
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	t.Cleanup(func() {
		// A failed test leaves its server: its PAM service file goes too.
		for _, f := range pamServicesOf(t, d) {
			os.Remove(f)
		}
	})
	cx := ctx(t)
	owner := newCustomer(t, d, d.cfg, "entra")
	f, err := armpostgresqlflexibleservers.NewClientFactory(d.creds.SubscriptionID, d.cfg.Credential, d.opts())
	if err != nil {
		t.Fatal(err)
	}
	servers, admins := f.NewServersClient(), f.NewAdministratorsMicrosoftEntraClient()
	pg := newPGClients(t, d, d.creds.SubscriptionID)
	fqdn := *createServer(t, pg, "entra", "entra1").Properties.FullyQualifiedDomainName

	// The default principal (the owner) becomes the administrator.
	adminOID := jwtClaims(t, token(t, d.cfg))["oid"].(string)
	const adminName = "owner-app@privlink"
	addAdmin := func(oid, name string) error {
		p, err := admins.BeginCreateOrUpdate(cx, "entra", "entra1", oid, armpostgresqlflexibleservers.AdministratorMicrosoftEntraAdd{
			Properties: &armpostgresqlflexibleservers.AdministratorMicrosoftEntraPropertiesForAdd{
				PrincipalName: ptr(name), PrincipalType: ptr(armpostgresqlflexibleservers.PrincipalTypeServicePrincipal),
			}}, nil)
		if err != nil {
			return err
		}
		_, err = p.PollUntilDone(cx, pollOpts)
		return err
	}
	wantCode := func(err error, code string) {
		t.Helper()
		var re *azcore.ResponseError
		if !errors.As(err, &re) || re.ErrorCode != code {
			t.Errorf("got %v, want error code %s", err, code)
		}
	}
	patchAuth := func(ad, pw armpostgresqlflexibleservers.MicrosoftEntraAuth) error {
		p, err := servers.BeginUpdate(cx, "entra", "entra1", armpostgresqlflexibleservers.ServerForPatch{
			Properties: &armpostgresqlflexibleservers.ServerPropertiesForPatch{AuthConfig: &armpostgresqlflexibleservers.AuthConfigForPatch{
				ActiveDirectoryAuth: ptr(ad), PasswordAuth: ptr(armpostgresqlflexibleservers.PasswordBasedAuth(pw)),
			}}}, nil)
		if err != nil {
			return err
		}
		_, err = p.PollUntilDone(cx, pollOpts)
		return err
	}
	const on, off = armpostgresqlflexibleservers.MicrosoftEntraAuthEnabled, armpostgresqlflexibleservers.MicrosoftEntraAuthDisabled
	// Bad input: an administrator while Entra authentication is
	// Disabled; both authentications Disabled.
	wantCode(addAdmin(adminOID, adminName), "AadAuthOperationCannotBePerformedWhenAadAuthIsDisabled")
	wantCode(patchAuth(off, off), "InvalidParameterValue")
	if err := patchAuth(on, on); err != nil {
		t.Fatalf("enable Entra authentication: %v", err)
	}
	wantCode(addAdmin("not-a-guid", adminName), "InvalidParameterValue")
	wantCode(addAdmin(adminOID, "pgadmin"), "InvalidParameterValue")
	if err := addAdmin(adminOID, adminName); err != nil {
		t.Fatalf("add administrator: %v", err)
	}
	got, err := admins.Get(cx, "entra", "entra1", adminOID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := got.Properties; *p.PrincipalName != adminName || *p.TenantID != d.creds.TenantID || *p.ObjectID != adminOID {
		t.Errorf("administrator GET: %+v", *p)
	}
	srv, err := servers.Get(cx, "entra", "entra1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ac := srv.Properties.AuthConfig; *ac.ActiveDirectoryAuth != on || *ac.TenantID != d.creds.TenantID {
		t.Errorf("authConfig: %+v", *ac)
	}

	// The endpoint and its name in the client's network.
	owner.network(t, "10.0.2.0/24")
	pe := owner.endpointAlone(t, "pe1", owner.id("Microsoft.DBforPostgreSQL/flexibleServers", "entra1"), false)
	client := []string{"-g", "entra", "client"}
	ns := strings.TrimSpace(d.cli(append([]string{"--data-dir", d.dataDir, "netns"}, client...)...))
	// The usual name would need the network's DNS (privlinkd); the
	// endpoint's address and verify-full on the name need nothing of it.
	// loginAt logs in at hostaddr (the endpoint's address, or the
	// server's public address reached by default outbound).
	loginAt := func(hostaddr, user, password string) (string, error) {
		conn := "host=entra1.postgres.database.azure.com hostaddr=" + hostaddr + " dbname=postgres sslmode=verify-full connect_timeout=5 sslrootcert=" +
			filepath.Join(d.dataDir, "ca.pem") + " user='" + strings.ReplaceAll(user, "'", `\'`) + "'"
		cmd := exec.Command("ip", "netns", "exec", ns, "psql", conn, "-XAtq", "-c", "select current_user")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+password)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	public := publicAddr(t, d, fqdn).String()
	mustLoginAt := func(hostaddr, what, user, password string) {
		t.Helper()
		if out, err := loginAt(hostaddr, user, password); err != nil || out != user {
			t.Fatalf("%s: psql as %s at %s: %v: %s", what, user, hostaddr, err, out)
		}
	}
	refusedAt := func(hostaddr, what, user, password string) {
		t.Helper()
		out, err := loginAt(hostaddr, user, password)
		if err == nil {
			t.Errorf("%s: logged in as %s: %s", what, user, out)
		} else if !strings.Contains(out, "authentication failed") && !strings.Contains(out, "pg_hba.conf rejects") {
			t.Errorf("%s: refused for another reason: %s", what, out)
		}
	}
	mustLogin := func(what, user, password string) { t.Helper(); mustLoginAt(peIP(pe), what, user, password) }
	refused := func(what, user, password string) { t.Helper(); refusedAt(peIP(pe), what, user, password) }

	// A fresh token from the CLI (what az account get-access-token
	// --resource-type oss-rdbms prints) is the password.
	tok := strings.TrimSpace(d.cli("--data-dir", d.dataDir, "token", "--resource-type", "oss-rdbms"))
	if c := jwtClaims(t, tok); c["aud"] != "https://ossrdbms-aad.database.windows.net" || c["oid"] != adminOID || c["tid"] != d.creds.TenantID {
		t.Fatalf("oss-rdbms token claims: %v", c)
	}
	mustLogin("a fresh token", adminName, tok)
	mustLogin("the password administrator, passwordAuth Enabled", "pgadmin", adminPassword)
	refused("an ARM token (another audience)", adminName, token(t, d.cfg))
	refused("the administrator's token for another role", "pgadmin", tok)

	// The public path: the client NIC's default outbound address, let in
	// by a firewall rule, logs in with the same token at the server's
	// public address; PostgreSQL checks it as through the endpoint.
	fw, err := pg.firewalls.BeginCreateOrUpdate(cx, "entra", "entra1", "outbound", armpostgresqlflexibleservers.FirewallRule{
		Properties: &armpostgresqlflexibleservers.FirewallRuleProperties{
			StartIPAddress: ptr(controller.OutboundPool.Addr().String()), EndIPAddress: ptr("198.18.0.255")}}, nil)
	if err == nil {
		_, err = fw.PollUntilDone(cx, pollOpts)
	}
	if err != nil {
		t.Fatalf("firewall rule for default outbound: %v", err)
	}
	testkit.WaitFor(t, 15*time.Second, "a token login at the public address", func() error {
		out, err := loginAt(public, adminName, tok)
		if err == nil && out != adminName {
			err = errors.New(out)
		}
		return err
	})
	refusedAt(public, "an ARM token at the public address", adminName, token(t, d.cfg))

	// No major built without PAM gets Entra: a 15 server with Entra
	// enabled is not upgraded to one, nor is one created with it.
	if installedMajor("16") {
		_, err := servers.BeginUpdate(cx, "entra", "entra1", armpostgresqlflexibleservers.ServerForPatch{
			Properties: &armpostgresqlflexibleservers.ServerPropertiesForPatch{Version: ptr(armpostgresqlflexibleservers.PostgresMajorVersionSixteen)}}, nil)
		wantCode(err, "EntraAuthNotSupportedForVersion")
		if err == nil || !strings.Contains(err.Error(), "properties.version") {
			t.Errorf("upgrade of an Entra server to 16: %v, want the refusal to name properties.version", err)
		}
		body := serverBody()
		body.Properties.Version = ptr(armpostgresqlflexibleservers.PostgresMajorVersionSixteen)
		body.Properties.AuthConfig = &armpostgresqlflexibleservers.AuthConfig{ActiveDirectoryAuth: ptr(on)}
		_, err = servers.BeginCreateOrUpdate(cx, "entra", "entra16", body, nil)
		wantCode(err, "EntraAuthNotSupportedForVersion")
		if _, err := servers.Get(cx, "entra", "entra16", nil); err == nil {
			t.Error("a refused create of a 16 server with Entra left a server")
		}
		mustLogin("a token after the refused upgrade", adminName, tok)
	} else {
		t.Log("PostgreSQL 16 is not installed (scripts/install-pg-majors): no refusal of Entra on 16 to check")
	}

	// The administrator creates an Entra role for another principal with
	// Azure's pgaadauth function; that principal's token logs it in.
	other := d.principal(false)
	otherOID := jwtClaims(t, token(t, other))["oid"].(string)
	const otherName = "reporting-app"
	adminSQL := func(q string) (string, error) {
		conn := "host=entra1.postgres.database.azure.com hostaddr=" + peIP(pe) + " dbname=postgres sslmode=verify-full connect_timeout=5 sslrootcert=" +
			filepath.Join(d.dataDir, "ca.pem") + " user='" + adminName + "'"
		cmd := exec.Command("ip", "netns", "exec", ns, "psql", conn, "-XAtq", "-c", q)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+tok)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := adminSQL("select pgaadauth_create_principal_with_oid('" + otherName + "', '" + otherOID + "', 'service', false, false)"); err != nil {
		t.Fatalf("pgaadauth_create_principal_with_oid: %v: %s", err, out)
	}
	otherTok, err := other.Credential.GetToken(cx, policy.TokenRequestOptions{Scopes: []string{ossRDBMSScope}})
	if err != nil {
		t.Fatal(err)
	}
	mustLogin("a role made by pgaadauth_create_principal_with_oid", otherName, otherTok.Token)
	refused("another principal's token for the administrator", adminName, otherTok.Token)

	// Tokens privlinkd would never issue: signed with its own key (read
	// from the store while it is stopped) but expired or of another
	// tenant, and one signed by another key. Logins need no privlinkd:
	// the first one runs while it is stopped.
	key, kid := signingKey(t, d)
	mustLogin("a fresh token while privlinkd is stopped", adminName, tok)
	d.start()
	now := time.Now()
	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{}
		for k, v := range jwtClaims(t, tok) {
			c[k] = v
		}
		c["iat"], c["nbf"], c["exp"] = now.Unix(), now.Unix(), now.Add(time.Hour).Unix()
		edit(c)
		return c
	}
	sign := func(k *rsa.PrivateKey, c jwt.MapClaims) string {
		tk := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
		tk.Header["kid"] = kid
		s, err := tk.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	mustLogin("a token minted with privlinkd's key", adminName, sign(key, claims(func(jwt.MapClaims) {})))
	refused("an expired token", adminName, sign(key, claims(func(c jwt.MapClaims) {
		c["iat"], c["nbf"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
	})))
	otherTenant := uuid.NewString()
	refused("a token of another tenant", adminName, sign(key, claims(func(c jwt.MapClaims) {
		c["tid"], c["iss"] = otherTenant, strings.Replace(c["iss"].(string), d.creds.TenantID, otherTenant, 1)
	})))
	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	refused("a token signed by another key", adminName, sign(stranger, claims(func(jwt.MapClaims) {})))

	// passwordAuth Disabled: only tokens.
	if err := patchAuth(on, off); err != nil {
		t.Fatalf("disable password authentication: %v", err)
	}
	refused("a password with passwordAuth Disabled", "pgadmin", adminPassword)
	refusedAt(public, "a password at the public address with passwordAuth Disabled", "pgadmin", adminPassword)
	mustLoginAt(public, "a token at the public address with passwordAuth Disabled", adminName, tok)
	mustLogin("a token with passwordAuth Disabled", adminName, tok)

	// Removing the administrator stops its next login; the role made
	// with pgaadauth stays.
	dp, err := admins.BeginDelete(cx, "entra", "entra1", adminOID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	refused("the removed administrator's token", adminName, tok)
	mustLogin("a pgaadauth role after its creator's removal", otherName, otherTok.Token)

	// Deleting the server removes its PAM service from /etc/pam.d.
	if len(pamServicesOf(t, d)) != 1 {
		t.Errorf("PAM services of the server: %v, want one", pamServicesOf(t, d))
	}
	sp, err := servers.BeginDelete(cx, "entra", "entra1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.PollUntilDone(cx, pollOpts); err != nil {
		t.Fatal(err)
	}
	if left := pamServicesOf(t, d); len(left) != 0 {
		t.Errorf("PAM services left after the server's delete: %v", left)
	}
}

// installedMajor reports whether privlinkd finds PostgreSQL major under
// pgserver.DefaultBinRoot.
func installedMajor(major string) bool {
	for _, root := range strings.Split(pgserver.DefaultBinRoot, ":") {
		if _, err := os.Stat(filepath.Join(root, major, "bin", "postgres")); err == nil {
			return true
		}
	}
	return false
}

// pamServicesOf lists the PAM service files of d's servers.
func pamServicesOf(t *testing.T, d *daemon) []string {
	t.Helper()
	files, _ := filepath.Glob("/etc/pam.d/privlink-*")
	var out []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), d.dataDir+"/") {
			out = append(out, f)
		}
	}
	return out
}

// signingKey stops privlinkd, reads its token signing key from the store
// and leaves it stopped (the caller starts it again).
func signingKey(t *testing.T, d *daemon) (*rsa.PrivateKey, string) {
	t.Helper()
	d.stop(syscall.SIGTERM)
	st, err := bolt.Open(filepath.Join(d.dataDir, "privlink.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	kv, err := st.Get(context.Background(), "identity/signing-key")
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		KeyID  string `json:"kid"`
		KeyPEM string `json:"keyPem"`
	}
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode([]byte(rec.KeyPEM))
	if b == nil {
		t.Fatal("signing key: no PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PrivateKey), rec.KeyID
}
