package network

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/policy"
	"github.com/privlink/privlink/internal/provider/privatelink"
	"github.com/privlink/privlink/internal/store"
)

// Network watchers (Microsoft.Network/networkWatchers) and the three
// checks of Network Watcher that privlink can answer exactly: IP flow
// verify (what one NIC's security rules do with a flow), next hop (the
// route a flow takes from a subnet), and connectivity check (the whole
// path from a NIC to an address or resource: outbound rules, route,
// inbound rules, and for a private endpoint its connection's approval).
// They are computed from the policy model that programs the kernel
// (internal/policy), so they say what the kernel does; Azure's run probes
// from an agent, these probe nothing (probesSent is 0). A NIC stands where
// Azure wants a virtual machine.

const typeWatcher = "Microsoft.Network/networkWatchers"

func (p *Provider) watchers() tracked[armnetwork.Watcher] {
	return tracked[armnetwork.Watcher]{p: p,
		meta: func(v *armnetwork.Watcher) docMeta {
			return docMeta{id: &v.ID, name: &v.Name, etag: &v.Etag, location: &v.Location, tags: &v.Tags}
		}}
}

func (p *Provider) putWatcher(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	return p.watchers().put(ctx, r, "network watcher", nil, func(_ store.Tx, w putWrite[armnetwork.Watcher]) (*armnetwork.Watcher, error) {
		return &armnetwork.Watcher{ID: ptr(w.id.String()), Name: ptr(w.name), Type: ptr(typeWatcher),
			Location: ptr(w.loc), Tags: w.in.Tags, Etag: ptr(w.etag),
			Properties: &armnetwork.WatcherPropertiesFormat{ProvisioningState: ptr(armnetwork.ProvisioningStateSucceeded)}}, nil
	})
}

// watcherCheck runs a check of the watcher r.ID as a finished long-running
// operation (Azure's are long-running; the answer is ready at once).
func (p *Provider) watcherCheck(ctx context.Context, r *arm.Request, in any, check func(tx store.Tx) (any, error)) (*arm.Response, error) {
	if err := r.Decode(in); err != nil {
		return nil, err
	}
	var op *arm.Operation
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		var w armnetwork.Watcher
		ok, err := arm.Load(tx, r.ID, &w)
		if err != nil {
			return err
		}
		if !ok {
			return arm.NotFound(r.ID)
		}
		result, err := check(tx)
		if err != nil {
			return err
		}
		op, err = arm.StartOperationWithResult(tx, r.ID, str(w.Location), result)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &arm.Response{Status: http.StatusAccepted, Op: op}, nil
}

// targetNIC resolves the NIC a check names (targetNicResourceId, else
// targetResourceId) to its policy network and entries.
func targetNIC(tx store.Tx, field string, raw *string) (*policy.Network, []*policy.NIC, arm.ResourceID, error) {
	id, err := arm.ParseID(strings.TrimSpace(str(raw)))
	if err != nil || !strings.EqualFold(id.Type(), typeNIC) || len(id.Names) != 1 {
		return nil, nil, id, badRequest("InvalidTargetResource", field,
			"'%s' is not the ID of a network interface: privlink's Network Watcher checks start from a NIC (where Azure names a virtual machine).", str(raw))
	}
	n, nics, _, err := nicPolicy(tx, id)
	if err != nil {
		return nil, nil, id, err
	}
	if n == nil || len(nics) == 0 {
		return nil, nil, id, badRequest("NetworkInterfaceNotInSubnet", field, "Network interface %s is in no virtual network.", id)
	}
	return n, nics, id, nil
}

func parseIPField(field, v string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(v))
	if err != nil || !a.Is4() {
		return a, badRequest(codeInvalidParameter, field, "'%s' is not an IPv4 address.", v)
	}
	return a, nil
}

func parsePortField(field, v string, any uint16) (uint16, error) {
	v = strings.TrimSpace(v)
	if v == "*" || v == "" {
		return any, nil
	}
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil {
		return 0, badRequest(codeInvalidParameter, field, "'%s' is not a port (0-65535) or *.", v)
	}
	return uint16(n), nil
}

// ephemeral stands for "*" as a source port: rules that name source
// ports are rare, and Azure treats a private endpoint's as *.
const ephemeral = 49152

func ruleRef(r policy.Rule) string {
	if r.Default {
		return "defaultSecurityRules/" + r.Name
	}
	return "securityRules/" + r.Name
}

func (p *Provider) ipFlowVerify(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in armnetwork.VerificationIPFlowParameters
	return p.watcherCheck(ctx, r, &in, func(tx store.Tx) (any, error) {
		target := in.TargetNicResourceID
		if strings.TrimSpace(str(target)) == "" {
			target = in.TargetResourceID
		}
		n, nics, id, err := targetNIC(tx, "targetResourceId", target)
		if err != nil {
			return nil, err
		}
		local, err := parseIPField("localIPAddress", str(in.LocalIPAddress))
		if err != nil {
			return nil, err
		}
		remote, err := parseIPField("remoteIPAddress", str(in.RemoteIPAddress))
		if err != nil {
			return nil, err
		}
		var nic *policy.NIC
		for _, c := range nics {
			if c.Addr == local {
				nic = c
			}
		}
		if nic == nil {
			return nil, badRequest(codeInvalidParameter, "localIPAddress", "%s is not an address of network interface %s.", local, id)
		}
		dir := policy.Direction(strOf(in.Direction))
		if dir != policy.Inbound && dir != policy.Outbound {
			return nil, badRequest(codeInvalidParameter, "direction", "The direction '%s' is neither Inbound nor Outbound.", strOf(in.Direction))
		}
		proto := policy.Protocol(strOf(in.Protocol))
		switch strings.ToLower(string(proto)) {
		case "tcp":
			proto = policy.TCP
		case "udp":
			proto = policy.UDP
		default:
			return nil, badRequest(codeInvalidParameter, "protocol", "The protocol '%s' is neither TCP nor UDP.", strOf(in.Protocol))
		}
		lp, err := parsePortField("localPort", str(in.LocalPort), ephemeral)
		if err != nil {
			return nil, err
		}
		rp, err := parsePortField("remotePort", str(in.RemotePort), ephemeral)
		if err != nil {
			return nil, err
		}
		f := policy.Flow{Src: local, Dst: remote, Protocol: proto, SrcPort: lp, DstPort: rp}
		if dir == policy.Inbound {
			f = policy.Flow{Src: remote, Dst: local, Protocol: proto, SrcPort: rp, DstPort: lp}
		}
		res := armnetwork.VerificationIPFlowResult{Access: ptr(armnetwork.AccessAllow)}
		if v := n.Verify(nic, dir, f); v != nil {
			res.RuleName = ptr(ruleRef(v.Rule))
			res.Access = ptr(armnetwork.Access(v.Rule.Access))
		}
		return res, nil
	})
}

func (p *Provider) nextHop(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in armnetwork.NextHopParameters
	return p.watcherCheck(ctx, r, &in, func(tx store.Tx) (any, error) {
		target := in.TargetNicResourceID
		if strings.TrimSpace(str(target)) == "" {
			target = in.TargetResourceID
		}
		n, nics, _, err := targetNIC(tx, "targetResourceId", target)
		if err != nil {
			return nil, err
		}
		if _, err := parseIPField("sourceIPAddress", str(in.SourceIPAddress)); err != nil {
			return nil, err
		}
		dst, err := parseIPField("destinationIPAddress", str(in.DestinationIPAddress))
		if err != nil {
			return nil, err
		}
		route := n.NextHop(nics[0].Subnet, dst)
		res := armnetwork.NextHopResult{NextHopType: ptr(armnetwork.NextHopType(hopName(route.NextHop))), RouteTableID: ptr("System Route")}
		if route.Source == policy.SourceUser {
			res.RouteTableID = ptr(route.Table)
		}
		if route.NextHopIP.IsValid() {
			res.NextHopIPAddress = ptr(route.NextHopIP.String())
		}
		return res, nil
	})
}

// hopName is a next hop as Network Watcher names it: an endpoint's /32
// and a peering are local traffic there.
func hopName(h policy.NextHopType) string {
	switch h {
	case policy.HopEndpoint, policy.HopPeering:
		return string(policy.HopVnetLocal)
	}
	return string(h)
}

func (p *Provider) connectivityCheck(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in armnetwork.ConnectivityParameters
	return p.watcherCheck(ctx, r, &in, func(tx store.Tx) (any, error) {
		if in.Source == nil {
			return nil, errMissing("source.resourceId", "The source of a connectivity check")
		}
		n, nics, srcID, err := targetNIC(tx, "source.resourceId", in.Source.ResourceID)
		if err != nil {
			return nil, err
		}
		if in.Destination == nil {
			return nil, errMissing("destination", "The destination of a connectivity check (an address or a NIC's resource ID)")
		}
		dst, dstNIC, err := connectivityDestination(tx, n, in.Destination)
		if err != nil {
			return nil, err
		}
		proto := policy.TCP
		port := uint16(0)
		if in.Destination.Port != nil {
			if *in.Destination.Port < 0 || *in.Destination.Port > 65535 {
				return nil, badRequest(codeInvalidParameter, "destination.port", "The port %d is not in 0-65535.", *in.Destination.Port)
			}
			port = uint16(*in.Destination.Port)
		}
		switch strOf(in.Protocol) {
		case "", "Tcp":
		case "Http":
			if port == 0 {
				port = 80
			}
		case "Https":
			if port == 0 {
				port = 443
			}
		case "Icmp":
			proto = policy.ICMP
		default:
			return nil, badRequest(codeInvalidParameter, "protocol", "The protocol '%s' is none of Tcp, Http, Https, Icmp.", strOf(in.Protocol))
		}
		src := nics[0]
		sport := uint16(ephemeral)
		if in.Source.Port != nil && *in.Source.Port > 0 && *in.Source.Port <= 65535 {
			sport = uint16(*in.Source.Port)
		}
		f := policy.Flow{Src: src.Addr, Dst: dst, Protocol: proto, SrcPort: sport, DstPort: port}
		v, err := n.Decide(f)
		if err != nil {
			return nil, err
		}
		var pub *publicHop
		if v.Outcome == policy.ToInternet {
			if pub, err = p.publicHop(tx, n, f); err != nil {
				return nil, err
			}
		}
		return connectivityInfo(tx, n, srcID, src, dst, dstNIC, v, pub)
	})
}

// connectivityDestination resolves a check's destination: an address, or
// a NIC's ID (its first address in the network).
func connectivityDestination(tx store.Tx, n *policy.Network, d *armnetwork.ConnectivityDestination) (netip.Addr, *policy.NIC, error) {
	if raw := strings.TrimSpace(str(d.ResourceID)); raw != "" {
		id, err := arm.ParseID(raw)
		if err == nil {
			if c := n.NICByID(lkey(id.String())); c != nil {
				return c.Addr, c, nil
			}
		}
		return netip.Addr{}, nil, badRequest(codeInvalidParameter, "destination.resourceId",
			"'%s' is not a network interface of the source's virtual network; give destination.address instead.", raw)
	}
	a, err := parseIPField("destination.address", str(d.Address))
	if err != nil {
		return a, nil, err
	}
	return a, n.NICAt(a), nil
}

// connectivityInfo renders a verdict as Network Watcher's connectivity
// information: the source hop and the destination hop, each with the
// issues found there; a private endpoint whose connection is not Approved
// is an issue of the platform. Each virtual appliance that forwarded the
// flow (v.Via) is a hop between them, of type VirtualAppliance; an
// outbound rule or a route stops the flow at the hop that sent it.
func connectivityInfo(tx store.Tx, n *policy.Network, srcID arm.ResourceID, src *policy.NIC, dst netip.Addr, dstNIC *policy.NIC, v policy.Verdict, pub *publicHop) (any, error) {
	issueOf := func(sev armnetwork.Severity, origin armnetwork.Origin, typ armnetwork.IssueType, ctx ...[2]string) *armnetwork.ConnectivityIssue {
		var c []map[string]*string
		for _, kv := range ctx {
			c = append(c, map[string]*string{kv[0]: ptr(kv[1])})
		}
		return &armnetwork.ConnectivityIssue{Origin: &origin, Severity: ptr(sev), Type: &typ, Context: c}
	}
	issue := func(origin armnetwork.Origin, typ armnetwork.IssueType, ctx ...[2]string) *armnetwork.ConnectivityIssue {
		return issueOf(armnetwork.SeverityError, origin, typ, ctx...)
	}
	first := &armnetwork.ConnectivityHop{ID: ptr("source"), Type: ptr("Source"), Address: ptr(src.Addr.String()), ResourceID: ptr(srcID.String()),
		NextHopIDs: []*string{ptr("destination")}, Issues: []*armnetwork.ConnectivityIssue{}}
	last := &armnetwork.ConnectivityHop{ID: ptr("destination"), Type: ptr("Destination"), Address: ptr(dst.String()),
		NextHopIDs: []*string{}, Issues: []*armnetwork.ConnectivityIssue{}}
	if dstNIC != nil {
		last.ResourceID, last.Type = ptr(dstNIC.ID), ptr("VirtualNetworkInterface")
	}
	hops := []*armnetwork.ConnectivityHop{first}
	for i, h := range v.Via {
		hop := &armnetwork.ConnectivityHop{ID: ptr(fmt.Sprintf("appliance%d", i+1)), Type: ptr("VirtualAppliance"),
			ResourceID: ptr(h.Appliance), NextHopIDs: []*string{ptr("destination")}, Issues: []*armnetwork.ConnectivityIssue{}}
		if c := n.NICByID(h.Appliance); c != nil {
			hop.Address, hop.ResourceID = ptr(c.Addr.String()), ptr(c.ID)
		}
		hops[len(hops)-1].NextHopIDs = []*string{hop.ID}
		hops = append(hops, hop)
	}
	sender := hops[len(hops)-1] // the hop whose outbound rules and routes decided last
	hops = append(hops, last)
	switch v.Outcome {
	case policy.Denied:
		c := v.Checks[len(v.Checks)-1]
		hop, origin := sender, armnetwork.OriginOutbound
		if c.Direction == policy.Inbound {
			hop, origin = last, armnetwork.OriginInbound
			for i, h := range v.Via { // an appliance's inbound NSG stopped it on its way in
				if h.Appliance == c.NIC {
					hop = hops[i+1]
				}
			}
		}
		hop.Issues = append(hop.Issues, issue(origin, armnetwork.IssueTypeNetworkSecurityRule,
			[2]string{"RuleName", ruleRef(c.Rule)}, [2]string{"NetworkSecurityGroup", c.Applied.NSG}))
	case policy.Dropped, policy.ToAppliance:
		sender.Issues = append(sender.Issues, issue(armnetwork.OriginLocal, armnetwork.IssueTypeUserDefinedRoute,
			[2]string{"Route", v.Route.Prefix.String()}, [2]string{"NextHopType", string(v.Route.NextHop)}, [2]string{"NextHopIpAddress", v.Route.NextHopIP.String()}))
	case policy.Unreachable:
		last.Issues = append(last.Issues, issue(armnetwork.OriginInbound, armnetwork.IssueTypePlatform,
			[2]string{"Reason", "nothing in the network holds " + dst.String()}))
	case policy.ToInternet:
		last.Type = ptr("Internet")
		if pub != nil {
			last.Issues = append(last.Issues, pub.issue(issueOf))
			last.ResourceID = ptr(pub.path.Target.ID.String())
		}
	}
	if dstNIC != nil && dstNIC.Endpoint && v.Outcome == policy.Delivered {
		if status, pe, err := endpointStatusOfNIC(tx, dstNIC.ID); err != nil {
			return nil, err
		} else if status != "Approved" {
			last.Type = ptr("PrivateEndpoint")
			last.Issues = append(last.Issues, issue(armnetwork.OriginInbound, armnetwork.IssueTypePlatform,
				[2]string{"PrivateEndpoint", pe}, [2]string{"PrivateEndpointConnection", status}))
		} else {
			last.Type = ptr("PrivateEndpoint")
		}
	}
	status := armnetwork.ConnectionStatusConnected
	for _, h := range hops {
		for _, is := range h.Issues {
			if is.Severity == nil || *is.Severity == armnetwork.SeverityError {
				status = armnetwork.ConnectionStatusDisconnected
			}
		}
	}
	if !v.Allowed() {
		status = armnetwork.ConnectionStatusDisconnected
	}
	return armnetwork.ConnectivityInformation{Hops: hops, ConnectionStatus: &status,
		ProbesSent: ptr[int32](0), ProbesFailed: ptr[int32](0)}, nil
}

// endpointStatusOfNIC returns the connection status of the private
// endpoint whose NIC is nic, and the endpoint's ID.
func endpointStatusOfNIC(r arm.Reader, nic string) (string, string, error) {
	id, err := arm.ParseID(nic)
	if err != nil {
		return "", "", nil
	}
	var doc armnetwork.Interface
	if ok, err := arm.Load(r, id, &doc); err != nil || !ok {
		return "", "", err
	}
	peID, err := arm.ParseID(managedBy(&doc))
	if err != nil {
		return "", "", nil
	}
	var pe armnetwork.PrivateEndpoint
	if ok, err := arm.Load(r, peID, &pe); err != nil || !ok {
		return "", peID.String(), err
	}
	_, status, _ := endpointTarget(&pe)
	return status, peID.String(), nil
}

// publicHop is what a private-link resource's public path (its public
// network access and firewall rules) does with a flow that a network's
// policies let out to the internet toward its public address, as the
// resource sees it: from the network's default outbound address.
type publicHop struct {
	path *privatelink.PublicPath
	// outbound is the network's default outbound address (invalid: none).
	outbound netip.Addr
	adm      privatelink.Admission
}

// publicHop looks up the resource whose public address is f's destination
// (nil when none) and decides f there. Only TCP reaches a public path.
func (p *Provider) publicHop(tx store.Tx, n *policy.Network, f policy.Flow) (*publicHop, error) {
	path, err := p.targets.PublicAt(tx, f.Dst)
	if err != nil || path == nil {
		return nil, err
	}
	h := &publicHop{path: path}
	if h.outbound, err = outboundAddress(tx, n.ID); err != nil {
		return nil, err
	}
	switch {
	case !h.outbound.IsValid():
		h.adm.Reason = fmt.Sprintf("virtual network %s has no default outbound address yet", n.ID)
	case f.Protocol != policy.TCP:
		h.adm.Reason = fmt.Sprintf("the public address of %s %s takes TCP only", path.Target.Kind.Title, path.Target.Name)
	default:
		h.adm = path.Admit(h.outbound, f.DstPort)
	}
	return h, nil
}

// issue renders h as the destination hop's issue: a warning naming the
// firewall rule that admits the flow, or an error saying why it is kept
// out (GuestFirewall when no firewall rule admits the source, Platform
// otherwise).
func (h *publicHop) issue(issueOf func(armnetwork.Severity, armnetwork.Origin, armnetwork.IssueType, ...[2]string) *armnetwork.ConnectivityIssue) *armnetwork.ConnectivityIssue {
	ctx := [][2]string{{"Resource", h.path.Target.ID.String()}, {"SourceAddress", h.outbound.String()}}
	if h.adm.Allowed {
		return issueOf(armnetwork.SeverityWarning, armnetwork.OriginInbound, armnetwork.IssueTypeGuestFirewall,
			append(ctx, [2]string{"FirewallRule", h.adm.Rule.Name}, [2]string{"Access", "Allow"})...)
	}
	typ := armnetwork.IssueTypePlatform
	if h.path.PublicNetworkAccess && h.path.Running && h.outbound.IsValid() {
		typ = armnetwork.IssueTypeGuestFirewall
	}
	return issueOf(armnetwork.SeverityError, armnetwork.OriginInbound, typ, append(ctx, [2]string{"Reason", h.adm.Reason})...)
}
