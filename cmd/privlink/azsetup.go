package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/privlink/privlink/internal/azconfig"
)

// azSetupCmd prints the shell lines that point the az CLI, unchanged, at
// this privlinkd and sign it in as the credentials' principal:
//
//   - REQUESTS_CA_BUNDLE, so that az (Python requests) trusts privlink's CA;
//   - az config: no telemetry (it would leave the machine), and no MSAL
//     instance discovery (MSAL asks login.microsoftonline.com about any
//     authority it does not know, which cannot work here);
//   - az cloud register with the ARM endpoint: az reads the rest from
//     privlinkd's GET /metadata/endpoints;
//   - az login as the service principal, in its tenant.
//
// az releases without core.instance_discovery (Debian 12's 2.45) ignore
// that setting; for them --adfs registers privlinkd's AD FS shaped
// authority, for which MSAL never does instance discovery.
func azSetupCmd(creds azconfig.Credentials, credsPath string, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("az-setup", flag.ContinueOnError)
	cloudName := fs.String("cloud", "privlink", "the name az gives the cloud")
	adfs := fs.Bool("adfs", false, "for az releases without core.instance_discovery (Debian 12's 2.45): use the AD FS shaped authority")
	if err := fs.Parse(args); err != nil {
		return exitCode(2)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("az-setup takes no arguments, got %q", fs.Args())
	}
	if creds.ClientSecret == "" {
		return fmt.Errorf("credentials %s have no clientSecret: az login needs the principal's secret", credsPath)
	}
	arm := strings.TrimSuffix(creds.ARMEndpoint, "/")
	q := shellQuote
	fmt.Fprintf(out, "# Point the az CLI at privlinkd %s as %s (tenant %s).\n", arm, creds.ClientID, creds.TenantID)
	fmt.Fprintln(out, "# Set AZURE_CONFIG_DIR first to keep this apart from your other az logins.")
	if creds.CAFile != "" {
		fmt.Fprintf(out, "export REQUESTS_CA_BUNDLE=%s\n", q(creds.CAFile))
	}
	if *adfs {
		fmt.Fprintln(out, "az config set core.collect_telemetry=false --only-show-errors")
		fmt.Fprintf(out, "az cloud register -n %s --endpoint-resource-manager %s --endpoint-active-directory %s --only-show-errors\n",
			q(*cloudName), q(arm), q(arm+"/adfs"))
	} else {
		fmt.Fprintln(out, "# az without core.instance_discovery (Debian 12's 2.45): run privlink az-setup --adfs instead.")
		fmt.Fprintln(out, "az config set core.collect_telemetry=false core.instance_discovery=false --only-show-errors")
		fmt.Fprintf(out, "az cloud register -n %s --endpoint-resource-manager %s --only-show-errors\n", q(*cloudName), q(arm))
	}
	fmt.Fprintf(out, "az cloud set -n %s --only-show-errors\n", q(*cloudName))
	fmt.Fprintf(out, "az login --service-principal -u %s -p %s --tenant %s --output none --only-show-errors\n",
		q(creds.ClientID), q(creds.ClientSecret), q(creds.TenantID))
	return nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
