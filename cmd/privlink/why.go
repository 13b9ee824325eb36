package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/azconfig"
)

// The Network Watcher privlink why asks, in the group Azure puts them in.
const (
	watcherGroup  = "NetworkWatcherRG"
	watcherPrefix = "NetworkWatcher_"
)

// whyCmd explains whether a NIC reaches an address and port, and if not,
// what stops it: a security rule (which, of which NSG, which way), a
// route, a missing approval. It asks Network Watcher's connectivity check,
// which privlinkd answers from the same model that programs the kernel;
// it creates the region's watcher first if there is none, as Azure does.
func whyCmd(ctx context.Context, cfg *azconfig.Config, args []string, out io.Writer) error {
	const use = "usage: privlink why (NIC_ID | -g GROUP NIC_NAME) ADDRESS:PORT [--protocol tcp|udp|icmp]"
	fs := flag.NewFlagSet("why", flag.ContinueOnError)
	group := fs.String("g", "", "resource group of the NIC (then give its name)")
	proto := fs.String("protocol", "tcp", "tcp, udp or icmp")
	var pos []string
	for rest := args; len(rest) > 0; {
		if err := fs.Parse(rest); err != nil {
			return exitCode(2)
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if len(pos) != 2 {
		return errors.New(use)
	}
	nicID := pos[0]
	if *group != "" {
		nicID = fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/networkInterfaces/%s", cfg.Creds.SubscriptionID, *group, pos[0])
	}
	id, err := arm.ParseID(nicID)
	if err != nil || !strings.EqualFold(id.Type(), "Microsoft.Network/networkInterfaces") || id.IsCollection() {
		return fmt.Errorf("%q is not a network interface ID: pass /subscriptions/.../networkInterfaces/NAME, or -g GROUP NAME", nicID)
	}
	host, portStr, err := net.SplitHostPort(pos[1])
	if err != nil {
		return fmt.Errorf("%q: want ADDRESS:PORT, e.g. 10.0.2.4:5432", pos[1])
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return fmt.Errorf("%q is not a port", portStr)
	}
	var protocol armnetwork.Protocol
	switch strings.ToLower(*proto) {
	case "tcp":
		protocol = armnetwork.ProtocolTCP
	case "icmp":
		protocol = armnetwork.ProtocolIcmp
	case "udp":
		return errors.New("--protocol udp: Network Watcher's connectivity check has no UDP; privlink why checks tcp and icmp")
	default:
		return fmt.Errorf("--protocol %q: use tcp or icmp", *proto)
	}

	o := cfg.ClientOptions()
	nics, err := armnetwork.NewInterfacesClient(id.Subscription, cfg.Credential, o)
	if err != nil {
		return err
	}
	nic, err := nics.Get(ctx, id.ResourceGroup, id.Name(), nil)
	if err != nil {
		return fmt.Errorf("network interface %s: %w", id, err)
	}
	watcher, err := ensureWatcher(ctx, cfg, id.Subscription, *nic.Location, out)
	if err != nil {
		return err
	}
	watchers, err := armnetwork.NewWatchersClient(id.Subscription, cfg.Credential, o)
	if err != nil {
		return err
	}
	p, err := watchers.BeginCheckConnectivity(ctx, watcherGroup, watcher, armnetwork.ConnectivityParameters{
		Source:      &armnetwork.ConnectivitySource{ResourceID: ptr(id.String())},
		Destination: &armnetwork.ConnectivityDestination{Address: ptr(host), Port: ptr(int32(port))},
		Protocol:    &protocol,
	}, nil)
	if err != nil {
		return fmt.Errorf("connectivity check: %w", err)
	}
	res, err := p.PollUntilDone(ctx, nil)
	if err != nil {
		return fmt.Errorf("connectivity check: %w", err)
	}
	return printWhy(out, id.Name(), pos[1], strings.ToLower(*proto), res.ConnectivityInformation)
}

// ensureWatcher returns the name of the region's watcher, creating its
// group and itself when missing (and saying so).
func ensureWatcher(ctx context.Context, cfg *azconfig.Config, sub, location string, out io.Writer) (string, error) {
	name := watcherPrefix + location
	o := cfg.ClientOptions()
	watchers, err := armnetwork.NewWatchersClient(sub, cfg.Credential, o)
	if err != nil {
		return "", err
	}
	if _, err := watchers.Get(ctx, watcherGroup, name, nil); err == nil {
		return name, nil
	} else if !notFound(err) {
		return "", fmt.Errorf("network watcher %s: %w", name, err)
	}
	groups, err := armresources.NewResourceGroupsClient(sub, cfg.Credential, o)
	if err != nil {
		return "", err
	}
	if _, err := groups.Get(ctx, watcherGroup, nil); notFound(err) {
		if _, err := groups.CreateOrUpdate(ctx, watcherGroup, armresources.ResourceGroup{Location: ptr(location)}, nil); err != nil {
			return "", fmt.Errorf("create resource group %s for Network Watcher: %w", watcherGroup, err)
		}
		fmt.Fprintf(out, "created resource group %s (Network Watcher's, as Azure makes it)\n", watcherGroup)
	} else if err != nil {
		return "", err
	}
	if _, err := watchers.CreateOrUpdate(ctx, watcherGroup, name, armnetwork.Watcher{Location: ptr(location)}, nil); err != nil {
		return "", fmt.Errorf("create network watcher %s: %w", name, err)
	}
	fmt.Fprintf(out, "created network watcher %s in %s\n", name, watcherGroup)
	return name, nil
}

func notFound(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}

// printWhy prints the verdict and what decided it; it exits 1 when the
// destination is unreachable, so scripts can test it.
func printWhy(out io.Writer, from, to, proto string, ci armnetwork.ConnectivityInformation) error {
	reachable := ci.ConnectionStatus != nil && *ci.ConnectionStatus == armnetwork.ConnectionStatusConnected
	verdict := "reachable"
	if !reachable {
		verdict = "unreachable"
	}
	fmt.Fprintf(out, "%s -> %s (%s): %s\n", from, to, proto, verdict)
	for _, h := range ci.Hops {
		where := "at the source"
		switch {
		case h.ID != nil && *h.ID == "destination":
			where = "at the destination"
			if h.Type != nil {
				where += " (" + *h.Type + ")"
			}
		case h.Type != nil && *h.Type == "VirtualAppliance":
			where = fmt.Sprintf("at virtual appliance %s (%s)", deref(h.ResourceID), deref(h.Address))
			fmt.Fprintf(out, "  through virtual appliance %s (%s), which forwards it\n", deref(h.ResourceID), deref(h.Address))
		}
		for _, is := range h.Issues {
			ctx := map[string]string{}
			var keys []string
			for _, kv := range is.Context {
				for k, v := range kv {
					if v != nil {
						ctx[k] = *v
						keys = append(keys, k)
					}
				}
			}
			sort.Strings(keys)
			switch {
			case is.Type != nil && *is.Type == armnetwork.IssueTypeNetworkSecurityRule:
				dir := "inbound"
				if is.Origin != nil && *is.Origin == armnetwork.OriginOutbound {
					dir = "outbound"
				}
				fmt.Fprintf(out, "  %s: security rule %s of %s denies it (%s)\n", where, ctx["RuleName"], ctx["NetworkSecurityGroup"], dir)
			case is.Type != nil && *is.Type == armnetwork.IssueTypeUserDefinedRoute:
				fmt.Fprintf(out, "  %s: the route %s sends it to %s %s\n", where, ctx["Route"], ctx["NextHopType"], ctx["NextHopIpAddress"])
			case is.Type != nil && *is.Type == armnetwork.IssueTypeGuestFirewall && ctx["Access"] == "Allow":
				fmt.Fprintf(out, "  %s: firewall rule %s of %s admits it (from %s, the network's default outbound address)\n",
					where, ctx["FirewallRule"], ctx["Resource"], ctx["SourceAddress"])
			case ctx["Resource"] != "" && ctx["Reason"] != "":
				fmt.Fprintf(out, "  %s: %s%s\n", where, ctx["Reason"], publicHint(*is.Type, ctx["SourceAddress"]))
			case ctx["PrivateEndpointConnection"] != "":
				fmt.Fprintf(out, "  %s: private endpoint %s's connection is %s, not Approved: ask the server's owner to approve it\n",
					where, ctx["PrivateEndpoint"], ctx["PrivateEndpointConnection"])
			default:
				var parts []string
				for _, k := range keys {
					parts = append(parts, k+"="+ctx[k])
				}
				fmt.Fprintf(out, "  %s: %s %s\n", where, deref(is.Type), strings.Join(parts, " "))
			}
		}
	}
	if !reachable {
		return exitCode(1)
	}
	return nil
}

func deref[T ~string](p *T) string {
	if p == nil {
		return ""
	}
	return string(*p)
}

// publicHint says what to do next about a public path that keeps a flow
// out.
func publicHint(typ armnetwork.IssueType, src string) string {
	if typ == armnetwork.IssueTypeGuestFirewall {
		return fmt.Sprintf(" (the server sees the network's default outbound address %s): add a firewall rule that holds it", src)
	}
	return ""
}
