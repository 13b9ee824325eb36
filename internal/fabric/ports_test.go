package fabric

import (
	"net/netip"
	"slices"
	"testing"
)

// bouncerPort is the second port the multi-port tests translate,
// PgBouncer's.
const bouncerPort = 6432

// TestEndpointPorts holds a translation of several ports: each port it
// lists reaches the service's same port, others stay refused, its
// counters add up over its ports, the rule count does not grow with the
// ports, and a port that goes has its live sessions revoked while those of
// the ports that stay keep going.
func TestEndpointPorts(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	router, nic, pg1 := pe1Network(t, f)
	startEcho(t, f, pg1, "169.254.10.2:5432", "pg")
	bouncer := startEcho(t, f, pg1, "169.254.10.2:6432", "bouncer")
	serve(t, f, pg1, "169.254.10.2:5433", "other")

	one := pe1()
	mustEnsureEndpoints(t, f, "net1", one)
	mustCall(t, f, nic, "10.0.2.5:5432", "pg 169.254.1.5")
	mustNotConnect(t, f, nic, "10.0.2.5:6432")
	rulesOne := ruleCount(t, f, router)

	both := pe1()
	both.Ports = []uint16{pgPort, bouncerPort}
	mustEnsureEndpoints(t, f, "net1", both)
	logRuleset(t, router)
	if got := ruleCount(t, f, router); got != rulesOne {
		t.Errorf("%d rules with two ports, %d with one: a port must be set elements only", got, rulesOne)
	}
	mustCall(t, f, nic, "10.0.2.5:5432", "pg 169.254.1.5")
	pgSess := dialSession(t, f, nic, "10.0.2.5:5432")
	bSess := dialSession(t, f, nic, "10.0.2.5:6432")
	if bSess.greeting != "bouncer 169.254.1.5" {
		t.Fatalf("6432 greeting %q, want bouncer from the endpoint's SNAT address", bSess.greeting)
	}
	for _, to := range []string{"10.0.2.5:5433", "169.254.10.2:6432"} {
		mustNotConnect(t, f, nic, to)
	}
	for _, s := range []*session{pgSess, bSess} {
		if err := s.echo("hello"); err != nil {
			t.Fatal(err)
		}
	}
	c, err := f.EndpointCounters("net1")
	if err != nil {
		t.Fatal(err)
	}
	// Connections since the two-port translation: the 5432 call, the
	// 5432 session and the 6432 one (the one-port elements of 5432 stay,
	// with their counts, so 5432 also has the first call).
	if got := c["pe1"]; got.Connections < 3 || got.Active != 2 || got.PacketsIn == 0 || got.PacketsOut == 0 {
		t.Errorf("counters %+v, want the connections of both ports (at least 3) and 2 active", got)
	}

	// 6432 goes: its session is revoked, 5432's stays.
	revoked := mustEnsureEndpoints(t, f, "net1", one)
	if len(revoked) != 1 || revoked[0].Target != netip.MustParseAddrPort("10.0.2.5:6432") {
		t.Errorf("revoked %+v, want the 6432 session alone", revoked)
	}
	if err := bSess.echo("after"); !isReset(err) {
		t.Errorf("6432 session after its port went: %v, want a reset", err)
	}
	if err := bouncer.nextEnd(t); err == nil {
		t.Error("the service's end of the 6432 session did not end")
	}
	if err := pgSess.echo("still"); err != nil {
		t.Errorf("5432 session after 6432 went: %v", err)
	}
	mustNotConnect(t, f, nic, "10.0.2.5:6432")
}

// TestPublicPorts holds the public path's ports as TestEndpointPorts the
// endpoints': each listed port from an allowed source, a port that goes
// revoked.
func TestPublicPorts(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	inside, outside := insideOutside(t, f)
	pg1 := mustEnsureService(t, f, "pg1", "169.254.10.2")
	serve(t, f, pg1, "169.254.10.2:5432", "pg")
	serve(t, f, pg1, "169.254.10.2:6432", "bouncer")
	pub := PublicNAT{Name: "pg1", Public: mustAddr("198.18.0.10"), Ports: []uint16{pgPort, bouncerPort}, Service: "pg1",
		ServiceAddr: mustAddr("169.254.10.2"), Allowed: []AddrRange{PrefixRange(netip.MustParsePrefix("198.18.7.0/24"))}, Enabled: true}
	mustEnsurePublic(t, f, pub)
	mustCall(t, f, inside, "198.18.0.10:5432", "pg 198.18.7.9")
	s := dialSession(t, f, inside, "198.18.0.10:6432")
	if s.greeting != "bouncer 198.18.7.9" {
		t.Fatalf("6432 greeting %q", s.greeting)
	}
	mustNotConnect(t, f, outside, "198.18.0.10:6432")
	c, err := f.PublicCounters()
	if err != nil {
		t.Fatal(err)
	}
	if got := c["pg1"]; got.Connections != 2 || got.Active != 1 {
		t.Errorf("counters %+v, want 2 connections over the two ports, 1 active", got)
	}
	pub.Ports = []uint16{pgPort}
	revoked := mustEnsurePublic(t, f, pub)
	if !slices.ContainsFunc(revoked, func(fl Flow) bool { return fl.Target.Port() == bouncerPort }) {
		t.Errorf("revoked %+v, want the 6432 session", revoked)
	}
	if err := s.echo("after"); !isReset(err) {
		t.Errorf("6432 session after its port went: %v, want a reset", err)
	}
	mustNotConnect(t, f, inside, "198.18.0.10:6432")
	mustCall(t, f, inside, "198.18.0.10:5432", "pg 198.18.7.9")
}

// insideOutside makes the two internet hosts the public path tests use:
// 198.18.7.9, inside the firewall range 198.18.7.0/24 they allow, and
// 198.19.1.1 outside it.
func insideOutside(t testing.TB, f *Fabric) (inside, outside string) {
	t.Helper()
	var err error
	if inside, err = f.EnsureInternetHost(mustAddr("198.18.7.9")); err != nil {
		t.Fatal(err)
	}
	if outside, err = f.EnsureInternetHost(mustAddr("198.19.1.1")); err != nil {
		t.Fatal(err)
	}
	return inside, outside
}

// ruleCount is the number of rules in the data path's table of ns.
func ruleCount(t testing.TB, f *Fabric, ns string) int {
	t.Helper()
	_, rules := tableRules(t, nftIn(t, f, ns))
	n := 0
	for _, rs := range rules {
		n += len(rs)
	}
	return n
}
