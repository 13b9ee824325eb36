// Command privlink is privlink's command-line client: it prints tokens,
// calls the ARM API as `az rest` does, and manages principals.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/privlink/privlink/internal/azconfig"
)

const usage = `privlink: the privlink command-line client

Usage:
  privlink token [--resource-type oss-rdbms | --resource URL]
                                          print a bearer token for the principal: for ARM, or for
                                          PostgreSQL logins with Microsoft Entra ID (oss-rdbms), the
                                          password psql takes with user = the administrator's name
  privlink rest METHOD PATH [--body FILE] call the ARM API (like az rest); PATH starts with /subscriptions
  privlink principal create [--new-tenant] [--name NAME]
                                          create a principal with a subscription of its own; prints its credentials
  privlink exec NIC_ID -- CMD [ARGS...]   run CMD inside a NIC's namespace, with its network's DNS
  privlink exec -g GROUP NIC_NAME -- CMD  the same, naming the NIC by group and name
  privlink exec --internet 198.18.X.Y -- CMD
                                          run CMD as a host of the emulated internet with that address
  privlink exec --site SITE HOST -- CMD  run CMD on a host of a simulated on-premises site
  privlink netns (NIC_ID | -g GROUP NIC_NAME | --internet ADDR | --site SITE HOST)
                                          print the namespace name (for ip netns exec)
  privlink why (NIC_ID | -g GROUP NIC_NAME) ADDRESS:PORT [--protocol tcp|icmp]
                                          say whether the NIC reaches ADDRESS:PORT, and if not, the
                                          security rule, route or missing approval that stops it
  privlink site create NAME --address-space 192.168.0.0/16 --gateway-ip 198.18.50.1 [--hosts N | --host NAME...]
                                          simulate an on-premises site: hosts, a router and a VPN device
                                          on the emulated internet; also site list, delete, connect
                                          (an IPsec tunnel from the device), disconnect, dns (forwarders)
  privlink quickstart [-g GROUP] [--server NAME] [--password PW]
                                          build a network, a server and a private endpoint, and
                                          print the psql command that connects through it
  privlink az-setup [--adfs] [--cloud NAME]
                                          print the az cloud register, az config and az login lines
                                          that point the az CLI at privlinkd (--adfs: az 2.45)

Global flags (before the command):
  --data-dir DIR        privlinkd's data directory (default /var/lib/privlink)
  --credentials FILE    credentials file (default DATA/credentials.json, or $PRIVLINK_CREDENTIALS)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		fmt.Fprintf(os.Stderr, "privlink: %v\n", err)
		os.Exit(1)
	}
}

// exitCode ends the program with a status and no further message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("privlink", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	dataDir := fs.String("data-dir", "/var/lib/privlink", "privlinkd's data directory")
	credsPath := fs.String("credentials", os.Getenv("PRIVLINK_CREDENTIALS"), "credentials file")
	if err := fs.Parse(args); err != nil {
		return exitCode(2)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitCode(2)
	}
	if *credsPath == "" {
		*credsPath = filepath.Join(*dataDir, "credentials.json")
	}
	load := func() (*azconfig.Config, error) {
		c, err := azconfig.Load(*credsPath)
		if err != nil {
			return nil, fmt.Errorf("%w (is privlinkd running, and are you root? pass --data-dir or --credentials)", err)
		}
		return azconfig.New(c)
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "token":
		cfg, err := load()
		if err != nil {
			return err
		}
		scope, err := tokenScope(cfg.Scope(), rest)
		if err != nil {
			return err
		}
		tok, err := cfg.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
		if err != nil {
			return fmt.Errorf("get token: %w", err)
		}
		fmt.Fprintln(out, tok.Token)
		return nil
	case "rest":
		cfg, err := load()
		if err != nil {
			return err
		}
		return restCmd(ctx, cfg, rest, out)
	case "principal":
		cfg, err := load()
		if err != nil {
			return err
		}
		return principalCmd(ctx, cfg, rest, out)
	case "quickstart":
		cfg, err := load()
		if err != nil {
			return err
		}
		return quickstartCmd(ctx, cfg, *dataDir, rest, out)
	case "exec", "netns":
		cfg, err := load()
		if err != nil {
			return err
		}
		if cmd == "exec" {
			return execCmd(ctx, cfg, *dataDir, rest)
		}
		return netnsCmd(ctx, cfg, *dataDir, rest, out)
	case "site":
		cfg, err := load()
		if err != nil {
			return err
		}
		return siteCmd(ctx, cfg, rest, out)
	case "why":
		cfg, err := load()
		if err != nil {
			return err
		}
		return whyCmd(ctx, cfg, rest, out)
	case "az-setup":
		c, err := azconfig.Load(*credsPath)
		if err != nil {
			return fmt.Errorf("%w (is privlinkd running, and are you root? pass --data-dir or --credentials)", err)
		}
		return azSetupCmd(c, *credsPath, rest, out)
	case "help", "-h", "--help":
		fmt.Fprint(out, usage)
		return nil
	}
	fs.Usage()
	return fmt.Errorf("unknown command %q", cmd)
}

// restCmd sends one authenticated request and prints the response body.
// It exits 1 on an HTTP error status, after printing the ARM error.
func restCmd(ctx context.Context, cfg *azconfig.Config, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("rest", flag.ContinueOnError)
	bodyFile := fs.String("body", "", "request body: a file, or - for standard input")
	method, path, err := twoArgs(fs, args, "privlink rest METHOD PATH [--body FILE]")
	if err != nil {
		return err
	}
	method = strings.ToUpper(method)
	switch method {
	case http.MethodGet, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodPost, http.MethodHead:
	default:
		return fmt.Errorf("unsupported method %q: use GET, PUT, PATCH, DELETE, POST or HEAD", method)
	}
	var body []byte
	switch *bodyFile {
	case "":
	case "-":
		body, err = io.ReadAll(os.Stdin)
	default:
		body, err = os.ReadFile(*bodyFile)
	}
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	resp, err := call(ctx, cfg, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	for _, h := range []string{"Azure-AsyncOperation", "Location"} {
		if v := resp.Header.Get(h); v != "" {
			fmt.Fprintf(os.Stderr, "%s: %s\n", h, v)
		}
	}
	printJSON(out, data)
	if resp.StatusCode >= 400 {
		fmt.Fprintf(os.Stderr, "privlink: %s %s: %s\n", method, path, resp.Status)
		return exitCode(1)
	}
	return nil
}

// principalCmd creates a principal through privlinkd's admin API.
func principalCmd(ctx context.Context, cfg *azconfig.Config, args []string, out io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("usage: privlink principal create [--new-tenant] [--name NAME]")
	}
	fs := flag.NewFlagSet("principal create", flag.ContinueOnError)
	newTenant := fs.Bool("new-tenant", false, "put the principal in a brand-new tenant")
	name := fs.String("name", "", "display name")
	if err := fs.Parse(args[1:]); err != nil {
		return exitCode(2)
	}
	body, _ := json.Marshal(map[string]any{"newTenant": *newTenant, "displayName": *name})
	resp, err := call(ctx, cfg, http.MethodPost, "/privlink/v1/principals", body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("create principal: %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	printJSON(out, data)
	return nil
}

func call(ctx context.Context, cfg *azconfig.Config, method, path string, body []byte) (*http.Response, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("PATH must start with /, e.g. /subscriptions/%s/resourcegroups?api-version=2021-04-01", cfg.Creds.SubscriptionID)
	}
	tok, err := cfg.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{cfg.Scope()}})
	if err != nil {
		return nil, fmt.Errorf("get token: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(cfg.Creds.ARMEndpoint, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w (is privlinkd running?)", method, path, err)
	}
	return resp, nil
}

func twoArgs(fs *flag.FlagSet, args []string, use string) (string, string, error) {
	// Flags may come before or after the positional arguments.
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return "", "", exitCode(2)
		}
		args = fs.Args()
		if len(args) > 0 {
			pos = append(pos, args[0])
			args = args[1:]
		}
	}
	if len(pos) != 2 {
		return "", "", fmt.Errorf("usage: %s", use)
	}
	return pos[0], pos[1], nil
}

func printJSON(out io.Writer, data []byte) {
	if len(bytes.TrimSpace(data)) == 0 {
		return
	}
	var buf bytes.Buffer
	if json.Indent(&buf, data, "", "  ") == nil {
		buf.WriteByte('\n')
		_, _ = out.Write(buf.Bytes())
		return
	}
	_, _ = out.Write(data)
}

// ossRDBMSResource is the audience of Microsoft Entra ID tokens for
// PostgreSQL logins (az account get-access-token --resource-type
// oss-rdbms).
const ossRDBMSResource = "https://ossrdbms-aad.database.windows.net"

// tokenScope returns the scope the token command asks for: ARM's (arm)
// unless --resource-type oss-rdbms or --resource URL say otherwise.
func tokenScope(arm string, args []string) (string, error) {
	fs := flag.NewFlagSet("privlink token", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	resourceType := fs.String("resource-type", "", "oss-rdbms or arm")
	resource := fs.String("resource", "", "the resource (audience) of the token")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return "", fmt.Errorf("token: usage: privlink token [--resource-type oss-rdbms | --resource URL]")
	}
	switch {
	case *resourceType != "" && *resource != "":
		return "", fmt.Errorf("token: give --resource-type or --resource, not both")
	case *resourceType == "oss-rdbms":
		return ossRDBMSResource + "/.default", nil
	case *resourceType == "arm" || (*resourceType == "" && *resource == ""):
		return arm, nil
	case *resourceType != "":
		return "", fmt.Errorf("token: --resource-type %q: privlink issues tokens for arm and oss-rdbms", *resourceType)
	}
	return strings.TrimSuffix(*resource, "/") + "/.default", nil
}
