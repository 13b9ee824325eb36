package fabric

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/policy"
	"golang.org/x/sys/unix"
)

// policyNet is the network the policy tests share: net1 (10.0.0.0/16),
// NICs a (10.0.1.4) and b (10.0.1.5) in subnet s1, c (10.0.2.4) in s2, the
// private endpoint 10.0.2.5 (in s2) translated to pg1, and each NIC's
// servers on ports 8080 and 8081 greeting with their name.
type policyNet struct {
	f              *Fabric
	router         string
	ns             map[string]string // NIC → namespace
	addr           map[string]string // NIC → address
	model          *policy.Network
	nics           map[string]string
	endpointTarget string
}

func newPolicyNet(t *testing.T) *policyNet {
	t.Helper()
	f := newTestFabric(t)
	pn := &policyNet{f: f, ns: map[string]string{}, addr: map[string]string{"a": "10.0.1.4", "b": "10.0.1.5", "c": "10.0.2.4"},
		nics: map[string]string{"a": "a", "b": "b", "c": "c"}, endpointTarget: "10.0.2.5:5432"}
	pn.router = mustEnsureNetworkWithEndpoints(t, f, "net1", []string{"10.0.1.0/24", "10.0.2.0/24"}, "10.0.2.5")
	for _, n := range []string{"a", "b", "c"} {
		pn.ns[n] = mustEnsureNIC(t, f, n, "net1", pn.addr[n]+"/24")
		for _, port := range []string{"8080", "8081"} {
			startEcho(t, f, pn.ns[n], pn.addr[n]+":"+port, n)
		}
	}
	pg1 := mustEnsureService(t, f, "pg1", "169.254.10.2")
	startEcho(t, f, pg1, "169.254.10.2:5432", "pg1")
	mustEnsureEndpoints(t, f, "net1", EndpointNAT{Name: "pe1", Endpoint: mustAddr("10.0.2.5"), Ports: []uint16{pgPort}, Service: "pg1",
		ServiceAddr: mustAddr("169.254.10.2"), SNAT: mustAddr("169.254.1.5")})
	pn.model = &policy.Network{
		ID:    "net1",
		Space: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")},
		Subnets: []*policy.Subnet{
			{ID: "s1", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24")}},
			{ID: "s2", Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.2.0/24")}},
		},
		NICs: []*policy.NIC{
			{ID: "a", Addr: mustAddr("10.0.1.4"), Subnet: "s1"},
			{ID: "b", Addr: mustAddr("10.0.1.5"), Subnet: "s1"},
			{ID: "c", Addr: mustAddr("10.0.2.4"), Subnet: "s2"},
			{ID: "pe1", Addr: mustAddr("10.0.2.5"), Subnet: "s2", Endpoint: true},
		},
		NSGs:        map[string]*policy.NSG{},
		RouteTables: map[string][]*policy.Route{},
	}
	return pn
}

// apply compiles the model and converges the router to it.
func (pn *policyNet) apply(t *testing.T) []Flow {
	t.Helper()
	revoked, err := pn.f.EnsurePolicy("net1", pn.model.Compile(), pn.nics)
	if err != nil {
		t.Fatal(err)
	}
	return revoked
}

func (pn *policyNet) nic(id string) *policy.NIC { return pn.model.NICByID(id) }

// probe is one connection attempt of the truth table.
type probe struct {
	from, to string // NIC names; to "pe1" is the endpoint
	port     uint16
	want     bool
}

// check runs the probes: each real TCP connection must succeed exactly
// when wanted, and the model must decide the same.
func (pn *policyNet) check(t *testing.T, probes ...probe) {
	t.Helper()
	for _, p := range probes {
		dst := pn.addr[p.to]
		if p.to == "pe1" {
			dst = "10.0.2.5"
		}
		v, err := pn.model.Decide(policy.Flow{Src: mustAddr(pn.addr[p.from]), Dst: mustAddr(dst), Protocol: policy.TCP, SrcPort: 40000, DstPort: p.port})
		if err != nil {
			t.Fatal(err)
		}
		if v.Allowed() != p.want {
			t.Errorf("%s → %s:%d: the model says %s, the table wants allowed=%v", p.from, p.to, p.port, v, p.want)
		}
		target := fmt.Sprintf("%s:%d", dst, p.port)
		got, err := call(pn.f, pn.ns[p.from], target, 1500*time.Millisecond)
		switch {
		case p.want && err != nil:
			t.Errorf("%s → %s: %v, want a connection (%s)", p.from, target, err, v)
		case !p.want && err == nil:
			t.Errorf("%s → %s: connected (%q), want none (%s)", p.from, target, got, v)
		}
	}
}

func tcpRule(name string, prio int32, dir policy.Direction, access policy.Access, src policy.Match, port uint16) policy.Rule {
	return policy.Rule{Name: name, Priority: prio, Direction: dir, Access: access, Protocol: policy.TCP,
		Source: src, Dest: policy.Match{Any: true}, DestPorts: []policy.PortRange{{From: port, To: port}}}
}

func prefixes(ps ...string) policy.Match {
	var m policy.Match
	for _, p := range ps {
		m.Prefixes = append(m.Prefixes, netip.MustParsePrefix(p))
	}
	return m
}

// policyHandles returns the handles of every rule of the policy table, by
// chain, and the table's sets.
func policyHandles(t *testing.T, f *Fabric, ns string) (map[string][]uint64, []string) {
	t.Helper()
	c := nftIn(t, f, ns)
	chains, rules := tableRulesIn(t, c, PolicyTable)
	out := map[string][]uint64{}
	for i, ch := range chains {
		out[ch.Name] = []uint64{}
		for _, r := range rules[i] {
			out[ch.Name] = append(out[ch.Name], r.Handle)
		}
	}
	sets, err := setsOf(c, PolicyTable, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name, s := range sets {
		names = append(names, fmt.Sprintf("%s/%d", name, s.ID))
	}
	slices.Sort(names)
	return out, names
}

func sameHandles(a, b map[string][]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestPolicyNSG: an NSG on a subnet and one on a NIC filter real TCP
// between NICs as the model decides (priority, first match, subnet and
// NIC both, default rules), returns pass (stateful), 168.63.129.16 stays
// reachable, and re-applying the same program changes nothing.
func TestPolicyNSG(t *testing.T) {
	t.Parallel()
	pn := newPolicyNet(t)
	all := func(want bool) []probe {
		var out []probe
		for _, from := range []string{"a", "b", "c"} {
			for _, to := range []string{"a", "b", "c"} {
				if from != to {
					out = append(out, probe{from, to, 8080, want}, probe{from, to, 8081, want})
				}
			}
		}
		return out
	}
	pn.apply(t) // no NSG: everything passes
	pn.check(t, all(true)...)

	t.Run("no spoofing", func(t *testing.T) {
		// a sends from b's address: the router drops it (a does not
		// forward), so no NSG rule on a source address can be dodged.
		if out, err := exec.Command("ip", "-n", pn.ns["a"], "addr", "add", "10.0.1.5/32", "dev", "eth0").CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "-n", pn.ns["a"], "addr", "del", "10.0.1.5/32", "dev", "eth0").Run() })
		synFrom := func(src string) error {
			seen := make(chan error, 1)
			go func() { seen <- captureSYN(pn.f, pn.ns["c"], src, "10.0.2.4", 8082, 2*time.Second) }()
			time.Sleep(200 * time.Millisecond) // the capture socket is open
			_ = pn.f.Do(pn.ns["a"], func() error {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: time.Second}
				if c, err := d.Dial("tcp", "10.0.2.4:8082"); err == nil {
					c.Close()
				}
				return nil
			})
			return <-seen
		}
		if err := synFrom("10.0.1.4"); err != nil {
			t.Fatalf("a's own SYN: %v", err)
		}
		if err := synFrom("10.0.1.5"); err == nil {
			t.Error("a's SYN from b's address reached c")
		}
	})

	// Subnet s2's NSG: 8080 from a denied (priority 100), from s1
	// allowed (200), 8081 from anywhere denied but b (b's rule comes
	// first by priority though listed last).
	pn.model.NSGs["nsg-s2"] = &policy.NSG{ID: "nsg-s2", Rules: []policy.Rule{
		tcpRule("deny-a-8080", 100, policy.Inbound, policy.Deny, prefixes("10.0.1.4/32"), 8080),
		tcpRule("allow-s1-8080", 200, policy.Inbound, policy.Allow, prefixes("10.0.1.0/24"), 8080),
		tcpRule("deny-8081", 300, policy.Inbound, policy.Deny, policy.Match{Any: true}, 8081),
		tcpRule("allow-b-8081", 250, policy.Inbound, policy.Allow, prefixes("10.0.1.5/32"), 8081),
	}}
	pn.model.Subnets[1].NSG = "nsg-s2"
	// b's own NSG: nothing in on 8081 from outside the network; out:
	// no 8080 toward c.
	pn.model.NSGs["nsg-b"] = &policy.NSG{ID: "nsg-b", Rules: []policy.Rule{
		tcpRule("deny-out-c-8080", 100, policy.Outbound, policy.Deny, policy.Match{Any: true}, 8080),
	}}
	pn.model.NSGs["nsg-b"].Rules[0].Dest = prefixes("10.0.2.4/32")
	pn.nic("b").NSG = "nsg-b"
	pn.apply(t)
	pn.check(t,
		probe{"a", "c", 8080, false}, // deny-a-8080
		probe{"b", "c", 8080, false}, // b's outbound NSG
		probe{"a", "c", 8081, false}, // deny-8081
		probe{"b", "c", 8081, true},  // allow-b-8081 before deny-8081
		probe{"c", "a", 8080, true},  // s1 has no NSG; c's outbound defaults allow the network
		probe{"c", "b", 8081, true},  // b's inbound: AllowVnetInBound
		probe{"a", "b", 8080, true},
	)

	t.Run("stateful", func(t *testing.T) {
		// c → a is allowed; a → c:8081 is not: a's replies to c pass.
		s := dialSession(t, pn.f, pn.ns["c"], "10.0.1.4:8081")
		if err := s.echo("hello"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("dns is always reachable", func(t *testing.T) {
		pn.model.NSGs["nsg-b"].Rules = append(pn.model.NSGs["nsg-b"].Rules, policy.Rule{Name: "deny-all-out", Priority: 4000,
			Direction: policy.Outbound, Access: policy.Deny, Protocol: policy.Any, Source: policy.Match{Any: true}, Dest: policy.Match{Any: true}})
		pn.apply(t)
		dns := serve(t, pn.f, pn.router, DNSAddr.String()+":0", "dns")
		mustCall(t, pn.f, pn.ns["b"], dns, "dns 10.0.1.5")
		pn.check(t, probe{"b", "a", 8080, false})
	})
	t.Run("idempotent", func(t *testing.T) {
		before, sets := policyHandles(t, pn.f, pn.router)
		pn.apply(t)
		after, setsAfter := policyHandles(t, pn.f, pn.router)
		if !sameHandles(before, after) || !slices.Equal(sets, setsAfter) {
			t.Errorf("the same program rewrote the table:\nbefore %v %v\nafter  %v %v", before, sets, after, setsAfter)
		}
	})
	t.Run("rule changed in place", func(t *testing.T) {
		// Same name and priority, another port: the chain must change.
		pn.model.NSGs["nsg-s2"].Rules[0].DestPorts = []policy.PortRange{{From: 8081, To: 8081}}
		pn.apply(t)
		pn.check(t, probe{"a", "c", 8080, true}, probe{"a", "c", 8081, false})
	})
	t.Run("removed", func(t *testing.T) {
		pn.model.Subnets[1].NSG, pn.nic("b").NSG = "", ""
		pn.apply(t)
		pn.check(t, all(true)...)
		handles, _ := policyHandles(t, pn.f, pn.router)
		for ch := range handles {
			if strings.HasPrefix(ch, "nsg-") {
				t.Errorf("chain %s left after its NSG went", ch)
			}
		}
	})
}

// TestPolicyASG: a rule naming an ASG matches its members; a change of
// members changes set elements only (no rule is rewritten) and takes
// effect at once; a live session that the new members deny is reset.
func TestPolicyASG(t *testing.T) {
	t.Parallel()
	pn := newPolicyNet(t)
	pn.model.NSGs["nsg-s2"] = &policy.NSG{ID: "nsg-s2", Rules: []policy.Rule{
		tcpRule("allow-web", 100, policy.Inbound, policy.Allow, policy.Match{ASGs: []string{"web"}}, 8081),
		tcpRule("deny-8081", 200, policy.Inbound, policy.Deny, policy.Match{Any: true}, 8081),
	}}
	pn.model.Subnets[1].NSG = "nsg-s2"
	pn.nic("a").ASGs = []string{"web"}
	pn.apply(t)
	pn.check(t, probe{"a", "c", 8081, true}, probe{"b", "c", 8081, false}, probe{"b", "c", 8080, true})

	live := dialSession(t, pn.f, pn.ns["a"], "10.0.2.4:8081")
	if err := live.echo("before"); err != nil {
		t.Fatal(err)
	}
	before, sets := policyHandles(t, pn.f, pn.router)
	pn.nic("a").ASGs, pn.nic("b").ASGs = nil, []string{"web"}
	revoked := pn.apply(t)
	after, setsAfter := policyHandles(t, pn.f, pn.router)
	if !sameHandles(before, after) || !slices.Equal(sets, setsAfter) {
		t.Errorf("a change of members rewrote rules or sets:\nbefore %v %v\nafter  %v %v", before, sets, after, setsAfter)
	}
	pn.check(t, probe{"a", "c", 8081, false}, probe{"b", "c", 8081, true})
	if len(revoked) != 1 || revoked[0].Client.Addr() != mustAddr("10.0.1.4") {
		t.Errorf("revoked %v, want a's session", revoked)
	}
	if err := live.echo("after"); !isReset(err) {
		t.Errorf("a's session after it left the ASG: %v, want a reset", err)
	}
}

// TestPolicyEndpoint: a private endpoint's subnet NSG applies to traffic
// to it (on its own address, before the translation) only when the
// subnet's privateEndpointNetworkPolicies enable NSGs; turning them on
// closes a live session that is now denied.
func TestPolicyEndpoint(t *testing.T) {
	t.Parallel()
	pn := newPolicyNet(t)
	pn.model.NSGs["nsg-s2"] = &policy.NSG{ID: "nsg-s2", Rules: []policy.Rule{
		tcpRule("deny-a-pg", 100, policy.Inbound, policy.Deny, prefixes("10.0.1.4/32"), pgPort),
	}}
	pn.model.Subnets[1].NSG = "nsg-s2"
	for _, pol := range []policy.EndpointPolicies{policy.PoliciesDisabled, policy.PoliciesRouteTable} {
		pn.model.Subnets[1].EndpointPolicies = pol
		pn.apply(t)
		pn.check(t, probe{"a", "pe1", pgPort, true}, probe{"b", "pe1", pgPort, true})
	}
	live := dialSession(t, pn.f, pn.ns["a"], pn.endpointTarget)
	if err := live.echo("before"); err != nil {
		t.Fatal(err)
	}
	for _, pol := range []policy.EndpointPolicies{policy.PoliciesNSG, policy.PoliciesEnabled} {
		pn.model.Subnets[1].EndpointPolicies = pol
		pn.apply(t)
		pn.check(t, probe{"a", "pe1", pgPort, false}, probe{"b", "pe1", pgPort, true})
	}
	if err := live.echo("after"); !isReset(err) {
		t.Errorf("a's session after its endpoint's NSG applied: %v, want a reset", err)
	}
	// An ASG on the endpoint works as on a NIC.
	pn.model.NSGs["nsg-s2"].Rules = []policy.Rule{{Name: "deny-to-db", Priority: 100, Direction: policy.Inbound, Access: policy.Deny,
		Protocol: policy.TCP, Source: policy.Match{Any: true}, Dest: policy.Match{ASGs: []string{"db"}}}}
	pn.apply(t)
	pn.check(t, probe{"b", "pe1", pgPort, true})
	pn.nic("pe1").ASGs = []string{"db"}
	pn.apply(t)
	pn.check(t, probe{"b", "pe1", pgPort, false})
}

// TestPolicyRoutes: a user route with next hop None drops a subnet's
// traffic to its prefix; the endpoint's own /32 system route still wins
// unless the endpoint's subnet enables route tables; a VirtualAppliance
// next hop hands the flow to the appliance NIC (which, not forwarding,
// answers nothing: the flow goes no further).
func TestPolicyRoutes(t *testing.T) {
	t.Parallel()
	pn := newPolicyNet(t)
	pn.model.Subnets[0].RouteTable = "rt1"
	pn.model.RouteTables["rt1"] = []*policy.Route{{Name: "drop-s2", Prefix: netip.MustParsePrefix("10.0.2.0/24"), NextHop: policy.HopNone}}
	pn.apply(t)
	pn.check(t, probe{"a", "c", 8080, false}, probe{"a", "pe1", pgPort, true}, probe{"c", "a", 8080, true}, probe{"a", "b", 8080, true})
	pn.model.Subnets[1].EndpointPolicies = policy.PoliciesRouteTable
	pn.apply(t)
	pn.check(t, probe{"a", "pe1", pgPort, false})

	// To the appliance b: a's SYN to c reaches b's eth0.
	pn.model.RouteTables["rt1"] = []*policy.Route{{Name: "via-b", Prefix: netip.MustParsePrefix("10.0.1.4/32"),
		NextHop: policy.HopVirtualAppliance, NextHopIP: mustAddr("10.0.1.5")}}
	pn.model.Subnets[0].RouteTable, pn.model.Subnets[1].RouteTable = "", "rt1" // c's subnet routes via b
	pn.model.Subnets[1].EndpointPolicies = policy.PoliciesDisabled
	pn.apply(t)
	seen := make(chan error, 1)
	go func() { seen <- captureSYN(pn.f, pn.ns["b"], "10.0.2.4", "10.0.1.4", 8080, 5*time.Second) }()
	time.Sleep(200 * time.Millisecond) // the capture socket is open
	v, _ := pn.model.Decide(policy.Flow{Src: mustAddr("10.0.2.4"), Dst: mustAddr("10.0.1.4"), Protocol: policy.TCP, SrcPort: 1, DstPort: 8080})
	if v.Outcome != policy.ToAppliance || v.Appliance != "b" || len(v.Via) != 0 {
		t.Fatalf("model: %s, want ToAppliance b (it does not forward)", v)
	}
	if _, err := call(pn.f, pn.ns["c"], "10.0.1.4:8080", 1500*time.Millisecond); err == nil {
		t.Error("c reached a through an appliance that does not forward")
	}
	if err := <-seen; err != nil {
		t.Errorf("the appliance: %v", err)
	}
	pn.check(t, probe{"a", "c", 8080, true}) // a's subnet has no routes now
	pn.model.Subnets[1].RouteTable = ""
	pn.apply(t)
	pn.check(t, probe{"c", "a", 8080, true})
}

// TestPolicyForwarding: a VirtualAppliance route hands a flow to a NIC
// that forwards (enableIPForwarding: ip_forward in its namespace, no
// anti-spoofing on its link): the flow completes through it, every packet
// of its direction passing the appliance, the destination seeing the
// client's own address; the appliance's own traffic is not sent back to
// it; when it stops forwarding, the flow goes nowhere.
func TestPolicyForwarding(t *testing.T) {
	t.Parallel()
	pn := newPolicyNet(t)
	pn.model.Subnets[1].RouteTable = "rt1" // c's subnet routes a via b
	pn.model.RouteTables["rt1"] = []*policy.Route{{Name: "via-b", Prefix: netip.MustParsePrefix("10.0.1.0/24"),
		NextHop: policy.HopVirtualAppliance, NextHopIP: mustAddr("10.0.1.5")}}
	pn.nic("b").IPForwarding = true
	pn.apply(t)
	v, _ := pn.model.Decide(policy.Flow{Src: mustAddr("10.0.2.4"), Dst: mustAddr("10.0.1.4"), Protocol: policy.TCP, SrcPort: 1, DstPort: 8080})
	if v.Outcome != policy.Delivered || len(v.Via) != 1 || v.Via[0].Appliance != "b" {
		t.Fatalf("model: %s, want Delivered through appliance b", v)
	}
	seen := make(chan error, 1)
	go func() {
		seen <- captureTCP(pn.f, pn.ns["b"], "10.0.2.4", "10.0.1.4", 8080, 5*time.Second, "PSH",
			func(flags byte) bool { return flags&0x08 != 0 })
	}()
	time.Sleep(200 * time.Millisecond) // the capture socket is open
	echoFromC(t, pn, "b")
	if err := <-seen; err != nil {
		t.Errorf("the appliance did not see the flow's data: %v", err)
	}
	// b's own traffic to a (its own subnet, no routes) goes straight.
	pn.check(t, probe{"b", "a", 8080, true})
	// Not forwarding: the flow ends at b.
	pn.nic("b").IPForwarding = false
	pn.apply(t)
	if _, err := call(pn.f, pn.ns["c"], "10.0.1.4:8080", 1500*time.Millisecond); err == nil {
		t.Error("c reached a through an appliance that no longer forwards")
	}
}

// TestPolicyApplianceEndpoint: a route of a's subnet sends the endpoint
// subnet to a forwarding appliance (c): the endpoint's own /32 wins while
// its subnet's policies do not enable route tables (c sees nothing); once
// they do, the flow goes to c untranslated (c sees the endpoint's
// address, not the service's) and completes through it, translated when c
// sends it back; next hop None drops it.
func TestPolicyApplianceEndpoint(t *testing.T) {
	t.Parallel()
	pn := newPolicyNet(t)
	pn.model.Subnets[0].RouteTable = "rt1"
	pn.model.RouteTables["rt1"] = []*policy.Route{{Name: "via-c", Prefix: netip.MustParsePrefix("10.0.2.0/24"),
		NextHop: policy.HopVirtualAppliance, NextHopIP: mustAddr("10.0.2.4")}}
	pn.nic("c").IPForwarding = true
	outcome := func() policy.Outcome {
		v, err := pn.model.Decide(policy.Flow{Src: mustAddr("10.0.1.4"), Dst: mustAddr("10.0.2.5"), Protocol: policy.TCP, SrcPort: 1, DstPort: pgPort})
		if err != nil {
			t.Fatal(err)
		}
		return v.Outcome
	}
	session := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		c, err := pn.f.DialContext(ctx, pn.ns["a"], "tcp", pn.endpointTarget)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil || !strings.HasPrefix(string(buf[:n]), "pg1 ") {
			return fmt.Errorf("greeting %q, %v", buf[:n], err)
		}
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		if n, err := c.Read(buf); err != nil || string(buf[:n]) != "ping\n" {
			return fmt.Errorf("echo %q, %v", buf[:n], err)
		}
		return nil
	}
	// The captures run while the session does.
	through := func(what string, match func(byte) bool) chan error {
		seen := make(chan error, 1)
		go func() {
			seen <- captureTCP(pn.f, pn.ns["c"], "10.0.1.4", "10.0.2.5", pgPort, 3*time.Second, what, match)
		}()
		time.Sleep(200 * time.Millisecond) // the capture socket is open
		return seen
	}
	syn := func(flags byte) bool { return flags&tcpFlagsMask == tcpFlagSYN }
	psh := func(flags byte) bool { return flags&0x08 != 0 }

	pn.apply(t)
	if o := outcome(); o != policy.Delivered {
		t.Errorf("model, policies Disabled: %s, want Delivered", o)
	}
	seen := through("SYN", syn)
	if err := session(); err != nil {
		t.Errorf("a → endpoint, policies Disabled: %v", err)
	}
	if err := <-seen; err == nil {
		t.Error("the appliance saw a's SYN to the endpoint while the endpoint's /32 wins")
	}

	pn.model.Subnets[1].EndpointPolicies = policy.PoliciesRouteTable
	pn.apply(t)
	if o := outcome(); o != policy.Delivered {
		t.Errorf("model, RouteTableEnabled: %s, want Delivered (through the forwarding appliance)", o)
	}
	seenSYN, seenData := through("SYN", syn), through("PSH", psh)
	if err := session(); err != nil {
		t.Errorf("a → endpoint through the appliance: %v", err)
	}
	for _, ch := range []chan error{seenSYN, seenData} {
		if err := <-ch; err != nil {
			t.Errorf("the appliance, RouteTableEnabled: %v", err)
		}
	}
	// The appliance's own traffic and a's to the DNS address stay direct.
	pn.check(t, probe{"c", "pe1", pgPort, true}, probe{"b", "a", 8080, true})

	pn.model.RouteTables["rt1"][0].NextHop, pn.model.RouteTables["rt1"][0].NextHopIP = policy.HopNone, netip.Addr{}
	pn.apply(t)
	if o := outcome(); o != policy.Dropped {
		t.Errorf("model, None: %s, want Dropped", o)
	}
	if err := session(); err == nil {
		t.Error("a → endpoint with next hop None: connected")
	}
	// No appliances: the local table's rule is back at 0.
	if out, err := exec.Command("ip", "-n", pn.router, "rule", "show").CombinedOutput(); err != nil || !strings.Contains(string(out), "0:\tfrom all lookup local") {
		t.Errorf("ip rules without appliances: %v\n%s", err, out)
	}
}

// TestPolicyRemoved: a nil program removes every rule: all passes again.
func TestPolicyRemoved(t *testing.T) {
	t.Parallel()
	pn := newPolicyNet(t)
	pn.model.NSGs["deny"] = &policy.NSG{ID: "deny", Rules: []policy.Rule{tcpRule("deny", 100, policy.Inbound, policy.Deny, policy.Match{Any: true}, 8080)}}
	pn.nic("a").NSG = "deny"
	pn.apply(t)
	pn.check(t, probe{"b", "a", 8080, false})
	if _, err := pn.f.EnsurePolicy("net1", nil, nil); err != nil {
		t.Fatal(err)
	}
	got, err := call(pn.f, pn.ns["b"], "10.0.1.4:8080", 5*time.Second)
	if err != nil || got != "a 10.0.1.5" {
		t.Errorf("b → a after the policies went: %q, %v", got, err)
	}
	if _, err := pn.f.EnsurePolicy("no-such-net", nil, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("a network without router: %v, want ErrNotFound", err)
	}
}

// captureSYN waits, up to bound, for a TCP SYN from src to dst:port to
// arrive on a link of namespace ns (a packet socket, as tcpdump).
func captureSYN(f *Fabric, ns, src, dst string, port uint16, bound time.Duration) error {
	return captureTCP(f, ns, src, dst, port, bound, "SYN", func(flags byte) bool { return flags&tcpFlagsMask == tcpFlagSYN })
}

// captureTCP waits, up to bound, for a TCP segment from src to dst:port
// whose flags match (what names them) on a link of namespace ns.
func captureTCP(f *Fabric, ns, src, dst string, port uint16, bound time.Duration, what string, match func(flags byte) bool) error {
	fd := -1
	err := f.Do(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
		return err
	})
	if err != nil {
		return fmt.Errorf("packet socket in %s: %w", ns, err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	s, d := mustAddr(src).As4(), mustAddr(dst).As4()
	buf := make([]byte, 2048)
	for deadline := time.Now().Add(bound); time.Now().Before(deadline); {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue // the timeout, to look at the deadline
		}
		p := buf[:n]
		if n < 40 || p[9] != unix.IPPROTO_TCP || !bytes.Equal(p[12:16], s[:]) || !bytes.Equal(p[16:20], d[:]) {
			continue
		}
		tcp := p[int(p[0]&0xf)*4:]
		if len(tcp) >= 14 && binary.BigEndian.Uint16(tcp[2:4]) == port && match(tcp[13]) {
			return nil
		}
	}
	return fmt.Errorf("no %s %s → %s:%d within %v", what, src, dst, port, bound)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestPolicyProtocols: rules for ICMP and UDP filter those protocols only,
// and ports of a rule for any protocol apply to TCP and UDP, not ICMP.
func TestPolicyProtocols(t *testing.T) {
	t.Parallel()
	pn := newPolicyNet(t)
	for _, port := range []string{"9000", "9001"} {
		startUDPEcho(t, pn.f, pn.ns["c"], "10.0.2.4:"+port)
	}
	udp := func(port string) error {
		cx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := pn.f.DialContext(cx, pn.ns["a"], "udp", "10.0.2.4:"+port)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		_, err = c.Read(make([]byte, 64))
		return err
	}
	ping := func() error { return pingIn(pn.f, pn.ns["a"], "10.0.2.4", time.Second) }
	expect := func(what string, err error, want bool) {
		t.Helper()
		if (err == nil) != want {
			t.Errorf("%s: %v, want allowed=%v", what, err, want)
		}
	}
	pn.apply(t)
	expect("ping", ping(), true)
	expect("udp 9000", udp("9000"), true)

	pn.model.NSGs["nsg-s2"] = &policy.NSG{ID: "nsg-s2", Rules: []policy.Rule{
		{Name: "deny-icmp", Priority: 100, Direction: policy.Inbound, Access: policy.Deny, Protocol: policy.ICMP, Source: policy.Match{Any: true}, Dest: policy.Match{Any: true}},
		{Name: "deny-udp-9000", Priority: 110, Direction: policy.Inbound, Access: policy.Deny, Protocol: policy.UDP, Source: policy.Match{Any: true}, Dest: policy.Match{Any: true},
			DestPorts: []policy.PortRange{{From: 9000, To: 9000}}},
	}}
	pn.model.Subnets[1].NSG = "nsg-s2"
	pn.apply(t)
	expect("ping", ping(), false)
	expect("udp 9000", udp("9000"), false)
	expect("udp 9001", udp("9001"), true)
	pn.check(t, probe{"a", "c", 8080, true})

	// Any protocol, port 8080: TCP and UDP on 8080, and all ICMP.
	pn.model.NSGs["nsg-s2"].Rules = []policy.Rule{{Name: "deny-8080", Priority: 100, Direction: policy.Inbound, Access: policy.Deny,
		Protocol: policy.Any, Source: policy.Match{Any: true}, Dest: policy.Match{Any: true}, DestPorts: []policy.PortRange{{From: 8080, To: 8080}}}}
	pn.apply(t)
	v, _ := pn.model.Decide(policy.Flow{Src: mustAddr("10.0.1.4"), Dst: mustAddr("10.0.2.4"), Protocol: policy.ICMP})
	expect("ping under an any-protocol rule with ports", ping(), v.Allowed())
	expect("udp 9000 under it", udp("9000"), true)
	pn.check(t, probe{"a", "c", 8080, false}, probe{"a", "c", 8081, true})
}

// TestPolicyRevokesUDPAndICMP: a rule that denies a live UDP flow and an
// ICMP one deletes their conntrack entries, as it does a TCP flow's: the
// UDP socket's next datagram is a new flow, which the rule drops, rather
// than riding its old entry until it times out.
func TestPolicyRevokesUDPAndICMP(t *testing.T) {
	t.Parallel()
	pn := newPolicyNet(t)
	startUDPEcho(t, pn.f, pn.ns["c"], "10.0.2.4:9000")
	pn.apply(t)
	cx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	live, err := pn.f.DialContext(cx, pn.ns["a"], "udp", "10.0.2.4:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	exchange := func() error {
		_ = live.SetDeadline(time.Now().Add(time.Second))
		if _, err := live.Write([]byte("ping")); err != nil {
			return err
		}
		_, err := live.Read(make([]byte, 64))
		return err
	}
	if err := exchange(); err != nil {
		t.Fatalf("the UDP flow before the rule: %v", err)
	}
	if err := pingIn(pn.f, pn.ns["a"], "10.0.2.4", 5*time.Second); err != nil {
		t.Fatalf("ping before the rule: %v", err)
	}

	pn.model.NSGs["nsg-s2"] = &policy.NSG{ID: "nsg-s2", Rules: []policy.Rule{
		{Name: "deny-icmp", Priority: 100, Direction: policy.Inbound, Access: policy.Deny, Protocol: policy.ICMP, Source: policy.Match{Any: true}, Dest: policy.Match{Any: true}},
		{Name: "deny-udp-9000", Priority: 110, Direction: policy.Inbound, Access: policy.Deny, Protocol: policy.UDP, Source: policy.Match{Any: true}, Dest: policy.Match{Any: true},
			DestPorts: []policy.PortRange{{From: 9000, To: 9000}}},
	}}
	pn.model.Subnets[1].NSG = "nsg-s2"
	revoked := pn.apply(t)
	var udp, icmp bool
	for _, fl := range revoked {
		udp = udp || fl.Protocol == policy.UDP && fl.Client == live.LocalAddr().(*net.UDPAddr).AddrPort() && fl.Target == mustAddrPort("10.0.2.4:9000")
		icmp = icmp || fl.Protocol == policy.ICMP && fl.Client.Addr() == mustAddr("10.0.1.4") && fl.Target.Addr() == mustAddr("10.0.2.4")
	}
	if !udp || !icmp {
		t.Errorf("revoked %+v, want the UDP flow (%v) and the ICMP one (%v)", revoked, udp, icmp)
	}
	r, err := pn.f.open(pn.router, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	c, cfs, err := openTable(r)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	for i := range cfs {
		if fl, _, ok := entryFlowOf(&cfs[i]); ok && fl.Protocol != policy.TCP && fl.Target.Addr() == mustAddr("10.0.2.4") {
			t.Errorf("a denied %s flow kept its conntrack entry: %+v", fl.Protocol, fl)
		}
	}
	if err := exchange(); err == nil {
		t.Error("the live UDP flow the rule denies still gets its answers")
	}
}

// startUDPEcho answers each datagram to addr, in namespace ns, with
// itself until the test ends.
func startUDPEcho(t *testing.T, f *Fabric, ns, addr string) {
	t.Helper()
	pc, err := f.ListenUDP(ns, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
}

// pingIn sends an ICMP echo request from namespace ns to dst and waits up
// to bound for its reply.
func pingIn(f *Fabric, ns, dst string, bound time.Duration) error {
	fd := -1
	err := f.Do(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		return err
	})
	if err != nil {
		return fmt.Errorf("icmp socket in %s: %w", ns, err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	id := uint16(time.Now().UnixNano())
	req := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'p', 'l'}
	binary.BigEndian.PutUint16(req[2:], checksum(req, 0))
	to := &unix.SockaddrInet4{Addr: mustAddr(dst).As4()}
	if err := unix.Sendto(fd, req, 0, to); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	for deadline := time.Now().Add(bound); time.Now().Before(deadline); {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil || n < 28 {
			continue
		}
		icmp := buf[int(buf[0]&0xf)*4 : n]
		if icmp[0] == 0 && binary.BigEndian.Uint16(icmp[4:6]) == id {
			return nil
		}
	}
	return fmt.Errorf("no echo reply from %s within %v", dst, bound)
}

// TestPolicyForwardingOnlyWhenChanged: EnsurePolicy sets a NIC's IP
// forwarding when its enableIPForwarding changes or its namespace is new,
// not on every pass: a setting changed behind its back stays until
// ForgetForwarding (the controller's resync), or until the NIC's namespace
// is made again, after which the next pass sets it again.
func TestPolicyForwardingOnlyWhenChanged(t *testing.T) {
	pn := newPolicyNet(t)
	forward := func() string {
		t.Helper()
		var v string
		if err := pn.f.Do(pn.ns["b"], func() error {
			b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
			v = strings.TrimSpace(string(b))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	byHand := func(v string) {
		t.Helper()
		if err := pn.f.Do(pn.ns["b"], func() error { _, err := setSysctl("net/ipv4/ip_forward", v); return err }); err != nil {
			t.Fatal(err)
		}
	}
	pn.nic("b").IPForwarding = true
	pn.apply(t)
	if got := forward(); got != "1" {
		t.Fatalf("enableIPForwarding on: ip_forward %s, want 1", got)
	}
	byHand("0")
	pn.apply(t) // the same program: b is not entered
	if got := forward(); got != "0" {
		t.Errorf("a pass without a change set ip_forward to %s: it entered the NIC's namespace", got)
	}
	pn.f.ForgetForwarding()
	pn.apply(t)
	if got := forward(); got != "1" {
		t.Errorf("after ForgetForwarding: ip_forward %s, want 1", got)
	}
	pn.nic("b").IPForwarding = false
	pn.apply(t)
	if got := forward(); got != "0" {
		t.Errorf("enableIPForwarding off: ip_forward %s, want 0", got)
	}
	// b's namespace made again: the next pass sets it, with no change of
	// the program.
	pn.nic("b").IPForwarding = true
	pn.apply(t)
	if err := pn.f.DeleteNIC("b"); err != nil {
		t.Fatal(err)
	}
	pn.ns["b"] = mustEnsureNIC(t, pn.f, "b", "net1", pn.addr["b"]+"/24")
	if got := forward(); got != "0" {
		t.Fatalf("a new namespace starts with ip_forward %s, want 0", got)
	}
	pn.apply(t)
	if got := forward(); got != "1" {
		t.Errorf("after b's namespace was made again: ip_forward %s, want 1", got)
	}
}

// TestPolicyApplianceInbound: what a VirtualAppliance route hands an
// appliance meets the appliance NIC's inbound NSG (as Azure applies it to
// a network virtual appliance's NIC), whether it forwards or not, held
// against the model: c's subnet routes a's subnet via b; b's NSG denies
// 8081 from c inbound, so c reaches a's 8080 through b and not its 8081,
// while a's own 8081 is open to b and c's traffic to a without the route
// would pass.
func TestPolicyApplianceInbound(t *testing.T) {
	t.Parallel()
	pn := newPolicyNet(t)
	pn.model.Subnets[1].RouteTable = "rt1"
	pn.model.RouteTables["rt1"] = []*policy.Route{{Name: "via-b", Prefix: netip.MustParsePrefix("10.0.1.0/24"),
		NextHop: policy.HopVirtualAppliance, NextHopIP: mustAddr("10.0.1.5")}}
	pn.model.NSGs["nsg-b"] = &policy.NSG{ID: "nsg-b", Rules: []policy.Rule{
		tcpRule("deny-c-8081", 100, policy.Inbound, policy.Deny, prefixes("10.0.2.4/32"), 8081),
	}}
	pn.nic("b").NSG = "nsg-b"
	pn.nic("b").IPForwarding = true
	pn.apply(t)
	pn.check(t,
		probe{"c", "a", 8080, true},  // through b
		probe{"c", "a", 8081, false}, // b's inbound NSG
		probe{"b", "a", 8081, true},  // b's own traffic: a has no NSG
	)
	v, _ := pn.model.Decide(policy.Flow{Src: mustAddr("10.0.2.4"), Dst: mustAddr("10.0.1.4"), Protocol: policy.TCP, SrcPort: 1, DstPort: 8081})
	if r := v.Rule(); v.Outcome != policy.Denied || r == nil || r.Name != "deny-c-8081" || v.Checks[len(v.Checks)-1].NIC != "b" {
		t.Errorf("model: %s, want Denied by deny-c-8081 at appliance b", v)
	}
	// Without the route, b's NSG is not on the way.
	pn.model.Subnets[1].RouteTable = ""
	pn.apply(t)
	pn.check(t, probe{"c", "a", 8081, true})
}
