package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/privlink/privlink/internal/azconfig"
)

const siteUsage = `usage:
  privlink site create NAME --address-space 192.168.0.0/16 --gateway-ip 198.18.50.1 [--hosts N | --host NAME...]
  privlink site list
  privlink site delete NAME
  privlink site connect NAME --peer 198.18.X.Y --shared-key KEY --remote-space 10.0.0.0/16 [--remote-space ...] [--name c1]
  privlink site disconnect NAME [--name c1]
  privlink site dns NAME --forward privatelink.postgres.database.azure.com=10.0.9.4 [--forward ...] | --clear
  privlink exec --site NAME HOST -- CMD [ARGS...]`

// siteView is the sites API's answer for one site (internal/daemon's
// SiteView; the CLI does not link the daemon).
type siteView struct {
	Name            string `json:"name"`
	AddressSpace    string `json:"addressSpace"`
	GatewayIP       string `json:"gatewayIp"`
	RouterAddress   string `json:"routerAddress"`
	DeviceNamespace string `json:"deviceNamespace"`
	Hosts           []struct {
		Name      string `json:"name"`
		Address   string `json:"address"`
		Namespace string `json:"namespace"`
	} `json:"hosts"`
	Connections []struct {
		Name         string   `json:"name"`
		Peer         string   `json:"peer"`
		RemoteSpaces []string `json:"remoteSpaces"`
		Status       string   `json:"connectionStatus"`
	} `json:"connections"`
	DNSForwards []struct {
		Zone    string `json:"zone"`
		Address string `json:"address"`
	} `json:"dnsForwards"`
	Error string `json:"error"`
}

// stringList is a flag that may be given several times.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// parseWithName parses fs over args, where one positional argument (the
// site's name) may come before or after the flags.
func parseWithName(fs *flag.FlagSet, args []string) (string, []string, error) {
	var pos []string
	for len(args) > 0 {
		if !strings.HasPrefix(args[0], "-") {
			pos = append(pos, args[0])
			args = args[1:]
			continue
		}
		if err := fs.Parse(args); err != nil {
			return "", nil, exitCode(2)
		}
		args = fs.Args()
	}
	if len(pos) == 0 {
		return "", nil, fmt.Errorf("name the site\n%s", siteUsage)
	}
	return pos[0], pos[1:], nil
}

// siteCall sends one request to the sites API and decodes a 2xx answer
// into out (if not nil); any other status is an error with the API's
// message.
func siteCall(ctx context.Context, cfg *azconfig.Config, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		body, _ = json.Marshal(in)
	}
	resp, err := call(ctx, cfg, method, "/privlink/v1/sites"+path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
			return fmt.Errorf("%s: %s", e.Error.Code, e.Error.Message)
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("unexpected answer %q: %w", data, err)
		}
	}
	return nil
}

// siteCmd is `privlink site ...`.
func siteCmd(ctx context.Context, cfg *azconfig.Config, args []string, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%s", siteUsage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("site "+sub, flag.ContinueOnError)
	switch sub {
	case "create":
		space := fs.String("address-space", "", "the site's address space, e.g. 192.168.0.0/16")
		gw := fs.String("gateway-ip", "", "the VPN device's public address on the emulated internet, e.g. 198.18.50.1")
		count := fs.Int("hosts", 0, "make N hosts named h1..hN (default 1)")
		var hosts stringList
		fs.Var(&hosts, "host", "a host by name (repeat for more)")
		name, _, err := parseWithName(fs, args)
		if err != nil {
			return err
		}
		if *space == "" || *gw == "" {
			return fmt.Errorf("give --address-space and --gateway-ip\n%s", siteUsage)
		}
		var v siteView
		in := map[string]any{"addressSpace": *space, "gatewayIp": *gw, "hosts": hosts, "hostCount": *count}
		if err := siteCall(ctx, cfg, http.MethodPut, "/"+url.PathEscape(name), in, &v); err != nil {
			return fmt.Errorf("create site %s: %w", name, err)
		}
		fmt.Fprintf(out, "Created site %s: address space %s, router %s (the hosts' gateway and DNS), VPN device %s on the emulated internet.\n",
			v.Name, v.AddressSpace, v.RouterAddress, v.GatewayIP)
		printHosts(out, v)
		fmt.Fprintf(out, "Run a command on a host:   privlink exec --site %s %s -- ip addr\n", v.Name, firstHost(v))
		fmt.Fprintf(out, "Model it in Azure as a local network gateway with gatewayIpAddress %s and addressPrefixes [%s],\n"+
			"then configure the device:  privlink site connect %s --peer AZURE_GATEWAY_IP --shared-key KEY --remote-space 10.0.0.0/16\n",
			v.GatewayIP, v.AddressSpace, v.Name)
		return nil
	case "list":
		if err := fs.Parse(args); err != nil {
			return exitCode(2)
		}
		var list struct {
			Value []siteView `json:"value"`
		}
		if err := siteCall(ctx, cfg, http.MethodGet, "", nil, &list); err != nil {
			return fmt.Errorf("list sites: %w", err)
		}
		if len(list.Value) == 0 {
			fmt.Fprintln(out, "No sites. Make one: privlink site create office --address-space 192.168.0.0/16 --gateway-ip 198.18.50.1")
			return nil
		}
		for _, v := range list.Value {
			fmt.Fprintf(out, "%s: %s, VPN device %s, router and DNS %s\n", v.Name, v.AddressSpace, v.GatewayIP, v.RouterAddress)
			printHosts(out, v)
			for _, c := range v.Connections {
				fmt.Fprintf(out, "  connection %s: peer %s, remote %s: %s\n", c.Name, c.Peer, strings.Join(c.RemoteSpaces, ","), c.Status)
			}
			for _, f := range v.DNSForwards {
				fmt.Fprintf(out, "  dns: %s forwarded to %s\n", f.Zone, f.Address)
			}
			if v.Error != "" {
				fmt.Fprintf(out, "  error: %s\n", v.Error)
			}
		}
		return nil
	case "delete":
		name, _, err := parseWithName(fs, args)
		if err != nil {
			return err
		}
		if err := siteCall(ctx, cfg, http.MethodDelete, "/"+url.PathEscape(name), nil, nil); err != nil {
			return fmt.Errorf("delete site %s: %w", name, err)
		}
		fmt.Fprintf(out, "Deleted site %s: its hosts, router and VPN device (with its tunnels) are gone.\n", name)
		return nil
	case "connect":
		peer := fs.String("peer", "", "the other gateway's public address (an Azure VPN gateway's public IP)")
		key := fs.String("shared-key", "", "the pre-shared key, as the other side's connection has it")
		conn := fs.String("name", "c1", "the connection's name on the device")
		var remote stringList
		fs.Var(&remote, "remote-space", "an address space behind the peer (repeat for more)")
		name, _, err := parseWithName(fs, args)
		if err != nil {
			return err
		}
		if *peer == "" || *key == "" || len(remote) == 0 {
			return fmt.Errorf("give --peer, --shared-key and --remote-space\n%s", siteUsage)
		}
		var v siteView
		in := map[string]any{"peer": *peer, "sharedKey": *key, "remoteSpaces": remote}
		if err := siteCall(ctx, cfg, http.MethodPut, "/"+url.PathEscape(name)+"/connections/"+url.PathEscape(*conn), in, &v); err != nil {
			return fmt.Errorf("connect site %s: %w", name, err)
		}
		status := "Unknown"
		for _, c := range v.Connections {
			if c.Name == *conn {
				status = c.Status
			}
		}
		fmt.Fprintf(out, "Site %s's VPN device %s has connection %s to %s for %s (IKEv2, pre-shared key): %s now.\n",
			name, v.GatewayIP, *conn, *peer, strings.Join(remote, ","), status)
		if status != "Connected" {
			fmt.Fprintf(out, "The tunnel comes up once the other side has a matching connection; `privlink site list` shows its status.\n")
		}
		return nil
	case "disconnect":
		conn := fs.String("name", "c1", "the connection's name on the device")
		name, _, err := parseWithName(fs, args)
		if err != nil {
			return err
		}
		if err := siteCall(ctx, cfg, http.MethodDelete, "/"+url.PathEscape(name)+"/connections/"+url.PathEscape(*conn), nil, nil); err != nil {
			return fmt.Errorf("disconnect site %s: %w", name, err)
		}
		fmt.Fprintf(out, "Site %s's connection %s is gone, with its tunnel.\n", name, *conn)
		return nil
	case "dns":
		var fwd stringList
		fs.Var(&fwd, "forward", "ZONE=ADDRESS: forward the zone's names to the DNS server at ADDRESS (repeat for more)")
		clear := fs.Bool("clear", false, "remove every forwarder")
		name, _, err := parseWithName(fs, args)
		if err != nil {
			return err
		}
		if len(fwd) == 0 && !*clear {
			return fmt.Errorf("give --forward ZONE=ADDRESS or --clear\n%s", siteUsage)
		}
		forwards := []map[string]string{}
		for _, f := range fwd {
			zone, addr, ok := strings.Cut(f, "=")
			if !ok {
				return fmt.Errorf("--forward %q: want ZONE=ADDRESS, e.g. privatelink.postgres.database.azure.com=10.0.9.4", f)
			}
			forwards = append(forwards, map[string]string{"zone": zone, "address": addr})
		}
		var v siteView
		if err := siteCall(ctx, cfg, http.MethodPut, "/"+url.PathEscape(name)+"/dns", map[string]any{"forwards": forwards}, &v); err != nil {
			return fmt.Errorf("set the DNS of site %s: %w", name, err)
		}
		fmt.Fprintf(out, "Site %s's DNS at %s answers public names as the internet does", name, v.RouterAddress)
		for i, f := range v.DNSForwards {
			sep := ", and forwards "
			if i > 0 {
				sep = ", "
			}
			fmt.Fprintf(out, "%s%s to %s", sep, f.Zone, f.Address)
		}
		fmt.Fprintln(out, ".")
		return nil
	}
	return fmt.Errorf("unknown site command %q\n%s", sub, siteUsage)
}

func printHosts(out io.Writer, v siteView) {
	for _, h := range v.Hosts {
		fmt.Fprintf(out, "  host %s: %s (namespace %s)\n", h.Name, h.Address, h.Namespace)
	}
}

func firstHost(v siteView) string {
	if len(v.Hosts) > 0 {
		return v.Hosts[0].Name
	}
	return "HOST"
}

// siteHostNamespace asks privlinkd for the namespace of a site's host.
func siteHostNamespace(ctx context.Context, cfg *azconfig.Config, site, host string) (string, error) {
	var v siteView
	if err := siteCall(ctx, cfg, http.MethodGet, "/"+url.PathEscape(site), nil, &v); err != nil {
		return "", fmt.Errorf("site %s: %w", site, err)
	}
	var names []string
	for _, h := range v.Hosts {
		if h.Name == host {
			return h.Namespace, nil
		}
		names = append(names, h.Name)
	}
	return "", fmt.Errorf("site %s has no host %q: its hosts are %s", site, host, strings.Join(names, ", "))
}
