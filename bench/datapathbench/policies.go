package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/bench/internal/benchd"
	"github.com/privlink/privlink/bench/internal/lat"
	"github.com/privlink/privlink/bench/internal/nsclient"
	"github.com/privlink/privlink/bench/internal/sdk"
	"github.com/privlink/privlink/bench/internal/table"
	"github.com/privlink/privlink/internal/fabric"
)

// The --policies mode: the endpoint's subnet has an NSG of policyRules
// rules and the client is one of policyMembers members of an application
// security group; pgbench select-only through the endpoint with the
// subnet's privateEndpointNetworkPolicies Disabled (the NSG ignored for the
// endpoint: the baseline) and Enabled (every connection's first packet
// walks the NSG's rules: policyRules-1 that do not match it, then the
// ASG's allow), rounds alternating; then the time from a security rule's
// PUT to a probe from inside the client NIC seeing the change.
const (
	policyRules   = 100
	policyMembers = 50
	policyNSG     = "policies"
	policyASG     = "clients"
	probeRule     = "probe"
)

// policyCase is one of the two endpoint configurations compared.
type policyCase struct {
	name   string
	policy armnetwork.VirtualNetworkPrivateEndpointNetworkPolicies
}

var policyCases = []policyCase{
	{"policies Disabled", armnetwork.VirtualNetworkPrivateEndpointNetworkPoliciesDisabled},
	{"policies Enabled", armnetwork.VirtualNetworkPrivateEndpointNetworkPoliciesEnabled},
}

// setupPolicies makes the ASG (the client NIC and policyMembers-1 more
// NICs), the NSG and associates it with the endpoints' subnet, policies
// Disabled.
func (b *bench) setupPolicies(ctx context.Context) error {
	start := time.Now()
	asg, err := b.c.CreateASG(ctx, rg, policyASG)
	if err != nil {
		return err
	}
	clients := b.vnetID + "/subnets/clients"
	if _, err := b.c.PutNIC(ctx, rg, "client", sdk.NICBody(clients, asg), nil); err != nil {
		return err
	}
	names := make(chan string)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range names {
				if _, err := b.c.PutNIC(ctx, rg, n, sdk.NICBody(clients, asg), nil); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := 1; i < policyMembers; i++ {
		names <- fmt.Sprintf("member%02d", i)
	}
	close(names)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var rules []*armnetwork.SecurityRule
	for i := range policyRules - 1 {
		rules = append(rules, &armnetwork.SecurityRule{Name: sdk.To(fmt.Sprintf("deny%02d", i)), Properties: tcpRule(int32(100+i),
			armnetwork.SecurityRuleAccessDeny, fmt.Sprintf("10.200.%d.0/24", i), "")})
	}
	rules = append(rules, &armnetwork.SecurityRule{Name: sdk.To("allow-clients"), Properties: tcpRule(4000, armnetwork.SecurityRuleAccessAllow, "", asg)})
	nsg, err := b.c.CreateNSG(ctx, rg, policyNSG, rules)
	if err != nil {
		return err
	}
	if err := b.c.UpdateSubnet(ctx, rg, "vnet", "endpoints", func(p *armnetwork.SubnetPropertiesFormat) {
		p.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: sdk.To(nsg)}
	}); err != nil {
		return err
	}
	fmt.Printf("\npolicies: NSG %s of %d inbound rules on the endpoints' subnet (%d deny rules that match no benchmark flow, then allow from ASG %s to 5432), the ASG of %d NICs (the client's among them): %s\n",
		policyNSG, policyRules, policyRules-1, policyASG, policyMembers, lat.Round(time.Since(start)))
	return nil
}

// tcpRule is an inbound TCP rule to port 5432 from prefix or from asg.
func tcpRule(priority int32, access armnetwork.SecurityRuleAccess, prefix, asg string) *armnetwork.SecurityRulePropertiesFormat {
	p := &armnetwork.SecurityRulePropertiesFormat{Priority: sdk.To(priority), Direction: sdk.To(armnetwork.SecurityRuleDirectionInbound),
		Access: sdk.To(access), Protocol: sdk.To(armnetwork.SecurityRuleProtocolTCP), SourcePortRange: sdk.To("*"),
		DestinationPortRange: sdk.To("5432"), DestinationAddressPrefix: sdk.To("*")}
	if asg != "" {
		p.SourceApplicationSecurityGroups = []*armnetwork.ApplicationSecurityGroup{{ID: sdk.To(asg)}}
	} else {
		p.SourceAddressPrefix = sdk.To(prefix)
	}
	return p
}

// setPolicies sets the endpoints' subnet's privateEndpointNetworkPolicies
// and waits until the router's policy table filters the endpoint (Enabled)
// or not (Disabled).
func (b *bench) setPolicies(ctx context.Context, v armnetwork.VirtualNetworkPrivateEndpointNetworkPolicies) error {
	if err := b.c.UpdateSubnet(ctx, rg, "vnet", "endpoints", func(p *armnetwork.SubnetPropertiesFormat) {
		p.PrivateEndpointNetworkPolicies = sdk.To(v)
	}); err != nil {
		return err
	}
	want := v == armnetwork.VirtualNetworkPrivateEndpointNetworkPoliciesEnabled
	router := b.fab.NamespaceName(fabric.KindNetwork, b.vnetFID)
	mark := fmt.Sprintf("to %s in:", b.peAddr)
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, err := nsclient.Command(ctx, router, "nft", "list", "table", "inet", fabric.PolicyTable).CombinedOutput()
		if err == nil && strings.Contains(string(out), mark) == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("privateEndpointNetworkPolicies %s: the router's policy table does not show it after 30s (nft: %v)", v, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// policyRounds runs select-only at 8 clients (each of --clients, really)
// with the policies Disabled and Enabled, alternating which goes first.
func (b *bench) policyRounds(ctx context.Context) (map[int][2][]measurement, error) {
	res := map[int][2][]measurement{}
	fmt.Printf("\n%d rounds of pgbench -S through the endpoint, policies Disabled and Enabled, %s per run (load average %s)\n", b.f.rounds, b.f.duration, benchd.LoadAvg())
	for round := range b.f.rounds {
		order := []int{0, 1}
		if round%2 == 1 {
			order = []int{1, 0}
		}
		for _, c := range b.f.clients {
			r := row{name: "select-only (-S)", args: []string{"-S"}, clients: c}
			ms := res[c]
			var line []string
			for _, i := range order {
				if err := b.setPolicies(ctx, policyCases[i].policy); err != nil {
					return nil, err
				}
				m, err := b.pgbench(ctx, endpoint, r, b.f.duration)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", policyCases[i].name, err)
				}
				ms[i] = append(ms[i], m)
				line = append(line, fmt.Sprintf("%s %.0f tps", policyCases[i].name, m.tps))
			}
			res[c] = ms
			fmt.Fprintf(os.Stderr, "round %d, %d clients: %s; load %s\n", round+1, c, strings.Join(line, ", "), benchd.LoadAvg())
		}
	}
	return res, nil
}

// enforcement is one sample of a rule change's way into the kernel, from
// the start of its PUT.
type enforcement struct {
	deny      bool // the change denied the client (else allowed it again)
	sdk.Times      // the PUT answered, its poller done
	seen      time.Duration
}

// ruleEnforcement, policies Enabled, n times PUTs rule "probe" (priority
// 200: after the deny rules, before the ASG's allow) from the client's
// address to 5432, alternately Deny and Allow, and times until a probe
// inside the client NIC (a TCP connection to the endpoint every 5 ms, its
// socket in the NIC's namespace) sees the change: refused after a Deny,
// connected after an Allow (seeChange). The probe's resolution is its
// 5 ms period.
func (b *bench) ruleEnforcement(ctx context.Context, n int) ([]enforcement, error) {
	if err := b.setPolicies(ctx, armnetwork.VirtualNetworkPrivateEndpointNetworkPoliciesEnabled); err != nil {
		return nil, err
	}
	client := ""
	if nic, err := b.c.NICs.Get(ctx, rg, "client", nil); err != nil {
		return nil, err
	} else if ipc := nic.Properties.IPConfigurations; len(ipc) > 0 && ipc[0].Properties.PrivateIPAddress != nil {
		client = *ipc[0].Properties.PrivateIPAddress
	}
	if client == "" {
		return nil, errors.New("the client NIC has no address")
	}
	target := netip.AddrPortFrom(b.peAddr, 5432).String()
	connects := func() bool {
		dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		c, err := b.fab.DialContext(dctx, b.nicNS, "tcp", target)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	if !connects() {
		return nil, errors.New("rule enforcement: the client does not reach the endpoint before the first change")
	}
	fmt.Printf("\nsecurity rule PUT → enforcement, %d changes (rule %s from %s/32 to 5432, alternately Deny and Allow; probe: a TCP connection from the client NIC every 5 ms)\n", n, probeRule, client)
	var out []enforcement
	for i := range n {
		s := enforcement{deny: i%2 == 0}
		access := armnetwork.SecurityRuleAccessAllow
		if s.deny {
			access = armnetwork.SecurityRuleAccessDeny
		}
		start := time.Now()
		t, err := b.c.PutRule(ctx, rg, policyNSG, probeRule, tcpRule(200, access, client+"/32", ""))
		if err != nil {
			return nil, err
		}
		s.Times = t
		if s.seen, err = b.seeChange(ctx, start, connects, !s.deny); err != nil {
			return nil, fmt.Errorf("rule enforcement %d (%s): %w", i+1, access, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// seeChange starts an attempt (connects) every 5 ms, each in its own
// goroutine, until one answers want, waits for those still out, and
// returns, from start, when the earliest attempt that answered want
// started. Attempts overlap because a denied SYN is dropped: an attempt
// that meets a Deny, or that started before an Allow, ends only at its
// timeout.
func (b *bench) seeChange(ctx context.Context, start time.Time, connects func() bool, want bool) (time.Duration, error) {
	type answer struct {
		at time.Duration
		ok bool
	}
	answers := make(chan answer, 256) // more than can be out at once (a 300 ms timeout, one every 5 ms)
	var wg sync.WaitGroup
	defer wg.Wait()
	first := time.Duration(-1)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	launch := func() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at := time.Since(start)
			answers <- answer{at, connects()}
		}()
	}
	launch()
	for outstanding := 1; outstanding > 0; {
		select {
		case a := <-answers:
			outstanding--
			if a.ok == want && (first < 0 || a.at < first) {
				first = a.at
			}
		case <-tick.C:
			if first < 0 {
				launch()
				outstanding++
			}
		case <-deadline:
			return 0, errors.New("the probe does not see it 30s after the PUT")
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return first, nil
}

// runPolicies is the --policies mode after the common setup.
func (b *bench) runPolicies(ctx context.Context) error {
	if err := b.setupPolicies(ctx); err != nil {
		return err
	}
	// Warm up: a short run each, not counted.
	for _, c := range policyCases {
		if err := b.setPolicies(ctx, c.policy); err != nil {
			return err
		}
		if _, err := b.pgbench(ctx, endpoint, row{args: []string{"-S"}, clients: 8}, 2*time.Second); err != nil {
			return fmt.Errorf("warm-up, %s: %w", c.name, err)
		}
	}
	res, err := b.policyRounds(ctx)
	if err != nil {
		return err
	}
	enf, err := b.ruleEnforcement(ctx, 30)
	if err != nil {
		return err
	}
	fmt.Printf("\nload average at the end: %s\n", benchd.LoadAvg())
	reportPolicies(b.f, res, enf)
	return nil
}

func reportPolicies(f flags, res map[int][2][]measurement, enf []enforcement) {
	med := lat.MedianOf[measurement, float64]
	tps := func(m measurement) float64 { return m.tps }
	fmt.Printf("\n### pgbench -S through the endpoint: NSG of %d rules and an ASG of %d members, policies Enabled vs Disabled (scale %d, -j %d, %s per run, %d rounds)\n\n",
		policyRules, policyMembers, f.scale, f.threads, f.duration, f.rounds)
	ours := cpuPerTx
	table.Header("clients", "Disabled TPS", "Enabled TPS", "Enabled ÷ Disabled (median)", "per round", "goal",
		"CPU per transaction (postgres, pgbench, privlinkd, ksoftirqd), Disabled → Enabled: Disabled ÷ Enabled (median of rounds)")
	for _, c := range f.clients {
		ms := res[c]
		var ratios []float64
		var per []string
		for i := range ms[0] {
			x := ms[1][i].tps / ms[0][i].tps
			ratios = append(ratios, x)
			per = append(per, fmt.Sprintf("%.3f", x))
		}
		mark := "met"
		if lat.Median(ratios) < 0.98 {
			mark = "not met"
		}
		var cpuRatios []float64
		for i := range ms[0] {
			cpuRatios = append(cpuRatios, ours(ms[0][i])/ours(ms[1][i]))
		}
		fmt.Printf("| %d | %.0f | %.0f | **%.3f** | %s | ≥ 0.98: %s | %.0f → %.0f µs: %.3f |\n", c, med(ms[0], tps), med(ms[1], tps),
			lat.Median(ratios), strings.Join(per, ", "), mark, med(ms[0], ours), med(ms[1], ours), lat.Median(cpuRatios))
	}
	fmt.Printf("\n### Security rule PUT → enforcement (%d changes)\n\n", len(enf))
	table.Header("", "p50", "p99 (= max)")
	for _, c := range []struct {
		name string
		v    func(enforcement) time.Duration
	}{
		{"rule PUT answered", func(s enforcement) time.Duration { return s.Answered }},
		{"rule poller done (PollUntilDone)", func(s enforcement) time.Duration { return s.Done }},
		{"**the probe sees the change (from the PUT)**", func(s enforcement) time.Duration { return s.seen }},
		{"**the probe sees the change − poller done**", func(s enforcement) time.Duration { return s.seen - s.Done }},
	} {
		table.Row(c.name, lat.Round(lat.QuantileOf(enf, c.v, 0.5)), lat.Round(lat.QuantileOf(enf, c.v, 0.99)))
	}
}
