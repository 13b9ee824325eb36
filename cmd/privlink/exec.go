package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/azconfig"
	"github.com/privlink/privlink/internal/names"
)

const nicAPIVersion = "2025-01-01"

// nicNamespace resolves a NIC (a resource ID, or a name with -g) to the
// namespace privlinkd built for it, checking through the API that the NIC
// exists and that the caller may read it.
func nicNamespace(ctx context.Context, cfg *azconfig.Config, dataDir, group, target string) (string, error) {
	idStr := target
	if group != "" {
		idStr = fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/networkInterfaces/%s", cfg.Creds.SubscriptionID, group, target)
	}
	id, err := arm.ParseID(idStr)
	if err != nil || !strings.EqualFold(id.Type(), "Microsoft.Network/networkInterfaces") || id.IsCollection() {
		return "", fmt.Errorf("%q is not a network interface ID: pass /subscriptions/.../networkInterfaces/NAME, or -g GROUP NAME", idStr)
	}
	resp, err := call(ctx, cfg, http.MethodGet, id.String()+"?api-version="+nicAPIVersion, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("network interface %s: %s: %s", id, resp.Status, strings.TrimSpace(string(body)))
	}
	var nic struct {
		Properties struct {
			ProvisioningState string `json:"provisioningState"`
			PrivateEndpoint   *struct {
				ID string `json:"id"`
			} `json:"privateEndpoint"`
		} `json:"properties"`
	}
	_ = json.Unmarshal(body, &nic)
	if nic.Properties.PrivateEndpoint != nil {
		return "", fmt.Errorf("%s belongs to private endpoint %s: it has no namespace to run in; use a NIC of your own in the same network", id, nic.Properties.PrivateEndpoint.ID)
	}
	rt, err := names.ReadRuntime(dataDir)
	if err != nil {
		return "", err
	}
	ns := names.Namespace(rt.NetnsPrefix, names.KindNIC, names.Key(id))
	if _, err := os.Stat(names.Path(ns)); err != nil {
		return "", fmt.Errorf("namespace %s of %s does not exist (provisioningState %s): is privlinkd running as root?", ns, id, nic.Properties.ProvisioningState)
	}
	return ns, nil
}

// internetNamespace asks privlinkd for an internet host with addr.
func internetNamespace(ctx context.Context, cfg *azconfig.Config, addr string) (string, error) {
	body, _ := json.Marshal(map[string]string{"address": addr})
	resp, err := call(ctx, cfg, http.MethodPost, "/privlink/v1/internet-hosts", body)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("internet host %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(data)))
	}
	var out struct {
		Namespace string `json:"namespace"`
	}
	if err := json.Unmarshal(data, &out); err != nil || out.Namespace == "" {
		return "", fmt.Errorf("internet host %s: unexpected answer %q", addr, data)
	}
	return out.Namespace, nil
}

// execCmd runs a command inside a NIC's or an internet host's namespace,
// with that network's DNS, by becoming `ip netns exec NS CMD...`: standard
// streams and the exit status are the command's own.
func execCmd(ctx context.Context, cfg *azconfig.Config, dataDir string, args []string) error {
	const use = "usage: privlink exec (NIC_RESOURCE_ID | -g GROUP NIC_NAME | --internet 198.18.X.Y | --site SITE HOST) -- CMD [ARGS...]"
	sep := -1
	for i, a := range args {
		if a == "--" {
			sep = i
			break
		}
	}
	if sep < 0 || sep == len(args)-1 {
		return fmt.Errorf("%s", use)
	}
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	group := fs.String("g", "", "resource group of the NIC (then give its name)")
	internet := fs.String("internet", "", "run as an internet host with this address")
	site := fs.String("site", "", "run on a host of this on-premises site (then give the host's name)")
	if err := fs.Parse(args[:sep]); err != nil {
		return exitCode(2)
	}
	ns, err := resolveNamespace(ctx, cfg, dataDir, *group, *internet, *site, fs.Args(), use)
	if err != nil {
		return err
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return fmt.Errorf("the ip command (Debian's iproute2) is needed: %w", err)
	}
	argv := append([]string{"ip", "netns", "exec", ns}, args[sep+1:]...)
	return syscall.Exec(ip, argv, os.Environ())
}

// netnsCmd prints the namespace of a NIC or an internet host.
func netnsCmd(ctx context.Context, cfg *azconfig.Config, dataDir string, args []string, out io.Writer) error {
	const use = "usage: privlink netns (NIC_RESOURCE_ID | -g GROUP NIC_NAME | --internet 198.18.X.Y | --site SITE HOST)"
	fs := flag.NewFlagSet("netns", flag.ContinueOnError)
	group := fs.String("g", "", "resource group of the NIC (then give its name)")
	internet := fs.String("internet", "", "an internet host's address")
	site := fs.String("site", "", "an on-premises site (then give the host's name)")
	if err := fs.Parse(args); err != nil {
		return exitCode(2)
	}
	ns, err := resolveNamespace(ctx, cfg, dataDir, *group, *internet, *site, fs.Args(), use)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, ns)
	return nil
}

func resolveNamespace(ctx context.Context, cfg *azconfig.Config, dataDir, group, internet, site string, rest []string, use string) (string, error) {
	switch {
	case site != "" && internet == "" && group == "" && len(rest) == 1:
		return siteHostNamespace(ctx, cfg, site, rest[0])
	case site != "":
		return "", fmt.Errorf("%s", use)
	case internet != "" && len(rest) == 0:
		return internetNamespace(ctx, cfg, internet)
	case internet == "" && len(rest) == 1:
		return nicNamespace(ctx, cfg, dataDir, group, rest[0])
	}
	return "", fmt.Errorf("%s", use)
}
