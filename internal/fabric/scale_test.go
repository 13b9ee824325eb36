package fabric

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// scaleNetwork is a router with n endpoint translations spread over a few
// services, and a NIC to reach them.
type scaleNetwork struct {
	id, router, nic string
	eps             []EndpointNAT
}

// scaleServices are the services the scale tests translate to, each with
// an echo server greeting as its name.
var scaleServices = []struct{ id, addr string }{
	{"pg1", "169.254.10.2"}, {"pg2", "169.254.10.6"}, {"pg3", "169.254.10.10"}, {"pg4", "169.254.10.14"},
}

func startScaleServices(t *testing.T, f *Fabric) {
	t.Helper()
	for _, s := range scaleServices {
		ns := mustEnsureService(t, f, s.id, s.addr)
		startEcho(t, f, ns, s.addr+":5432", s.id)
	}
}

// newScaleNetwork makes network id with n endpoints, 10.0.2.4 and up, whose SNAT addresses start after snatBase (unique
// among the fabric's endpoints, as the caller must keep them), and a NIC
// 10.0.1.4 in subnet 10.0.1.0/24 (which reaches the endpoints through its
// gateway, so its neighbour table holds one entry, not one per endpoint).
func newScaleNetwork(t *testing.T, f *Fabric, id string, n, snatBase int) *scaleNetwork {
	t.Helper()
	sn := &scaleNetwork{id: id}
	var addrs []string
	for i := range n {
		ep := EndpointNAT{
			Name:     fmt.Sprintf("pe%04d", i),
			Endpoint: netip.AddrFrom4([4]byte{10, 0, byte(2 + i/250), byte(4 + i%250)}),
			Ports:    []uint16{pgPort},
			SNAT:     netip.AddrFrom4([4]byte{169, 254, byte(192 + (snatBase+i+1)/256), byte((snatBase + i + 1) % 256)}),
		}
		svc := scaleServices[i%len(scaleServices)]
		ep.Service, ep.ServiceAddr = svc.id, mustAddr(svc.addr)
		sn.eps = append(sn.eps, ep)
		addrs = append(addrs, ep.Endpoint.String())
	}
	sn.router = mustEnsureNetworkWithEndpoints(t, f, id, []string{"10.0.1.0/24", "10.0.4.0/22", "10.0.2.0/23"}, addrs...)
	sn.nic = mustEnsureNIC(t, f, id+"-c", id, "10.0.1.4/24")
	return sn
}

// connectAll connects from the network's NIC to each of eps, one after
// the other on one thread inside the NIC's namespace, and checks that it
// reaches the translation's service from its SNAT address; it returns
// what failed.
func (sn *scaleNetwork) connectAll(f *Fabric, eps []EndpointNAT) []error {
	var errs []error
	err := f.Do(sn.nic, func() error {
		for _, ep := range eps {
			addr := netip.AddrPortFrom(ep.Endpoint, ep.Ports[0]).String()
			c, err := net.DialTimeout("tcp", addr, hangGuard)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s (%s): %w", ep.Name, addr, err))
				continue
			}
			c.SetDeadline(time.Now().Add(hangGuard))
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if want := ep.Service + " " + ep.SNAT.String(); err != nil || strings.TrimSpace(line) != want {
				errs = append(errs, fmt.Errorf("%s (%s): got %q (%v), want %q", ep.Name, addr, line, err, want))
			}
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return errs
}

// refusedAll checks that no connection from the NIC to eps gets through.
func (sn *scaleNetwork) refusedAll(t *testing.T, f *Fabric, eps []EndpointNAT) {
	t.Helper()
	err := f.Do(sn.nic, func() error {
		for _, ep := range eps {
			addr := netip.AddrPortFrom(ep.Endpoint, ep.Ports[0]).String()
			if c, err := net.DialTimeout("tcp", addr, 1500*time.Millisecond); err == nil {
				c.Close()
				return fmt.Errorf("%s (%s): connected after its withdrawal", ep.Name, addr)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// setSizes returns the number of elements of each data path set in ns, by
// name, and the number of rules of the table.
func setSizes(t testing.TB, f *Fabric, ns string) (map[string]int, int) {
	t.Helper()
	c := nftIn(t, f, ns)
	table := &nftables.Table{Name: NFTTable, Family: nftables.TableFamilyINet}
	sets, err := c.GetSets(table)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, s := range sets {
		elems, err := c.GetSetElements(s)
		if err != nil {
			t.Fatal(err)
		}
		out[s.Name] = len(elems)
	}
	rules := 0
	_, byChain := tableRules(t, c)
	for _, rs := range byChain {
		rules += len(rs)
	}
	return out, rules
}

// every returns the translations of eps whose index i keeps.
func every(eps []EndpointNAT, keep func(i int) bool) []EndpointNAT {
	var out []EndpointNAT
	for i, ep := range eps {
		if keep(i) {
			out = append(out, ep)
		}
	}
	return out
}

// TestThousandTranslationsOneRouter programs 1,000 endpoint translations
// in one router (Azure's limit per network; the rules of some 63 once
// overflowed a netlink message), connects through every one, then
// withdraws every tenth under live sessions: those sessions are reset and
// their endpoints refuse, the others keep working, and the router's rules
// do not grow with its translations.
func TestThousandTranslationsOneRouter(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	startScaleServices(t, f)
	_, emptyRules := func() (map[string]int, int) {
		sn := newScaleNetwork(t, f, "empty", 0, 2000)
		mustEnsureEndpoints(t, f, sn.id)
		return setSizes(t, f, sn.router)
	}()
	sn := newScaleNetwork(t, f, "big", 1000, 0)
	start := time.Now()
	mustEnsureEndpoints(t, f, sn.id, sn.eps...)
	t.Logf("1000 translations programmed in %v", time.Since(start))
	sizes, rules := setSizes(t, f, sn.router)
	t.Logf("sets %v, %d rules (%d with no translation)", sizes, rules, emptyRules)
	for _, set := range []string{"pe-mark", "pe-dnat", "pe-snat", "pe-in", "pe-out"} {
		if sizes[set] != 1000 {
			t.Errorf("set %s has %d elements, want 1000", set, sizes[set])
		}
	}
	if rules != emptyRules {
		t.Errorf("%d rules with 1000 translations, %d with none: rules must not grow with translations", rules, emptyRules)
	}
	if errs := sn.connectAll(f, sn.eps); len(errs) > 0 {
		t.Fatalf("%d of 1000 translations do not work, first: %v", len(errs), errs[:min(5, len(errs))])
	}

	// Live sessions through ten withdrawn and ten kept translations.
	withdrawn := func(i int) bool { return i%10 == 3 }
	var goners, stayers []*session
	for i, ep := range sn.eps {
		if i >= 200 {
			break
		}
		s := dialSession(t, f, sn.nic, netip.AddrPortFrom(ep.Endpoint, ep.Ports[0]).String())
		if withdrawn(i) {
			goners = append(goners, s)
		} else if len(stayers) < 10 {
			stayers = append(stayers, s)
		}
	}
	keep := every(sn.eps, func(i int) bool { return !withdrawn(i) })
	gone := every(sn.eps, withdrawn)
	start = time.Now()
	revoked := mustEnsureEndpoints(t, f, sn.id, keep...)
	t.Logf("withdrew %d of 1000 in %v, revoking %d flows", len(gone), time.Since(start), len(revoked))
	if len(revoked) != len(goners) {
		t.Errorf("revoked %d flows, want the %d sessions through withdrawn translations", len(revoked), len(goners))
	}
	for i, s := range goners {
		if err := s.echo("gone?"); !isReset(err) {
			t.Errorf("session %d through a withdrawn translation: %v, want a reset", i, err)
		}
	}
	for i, s := range stayers {
		if err := s.echo("still here"); err != nil {
			t.Errorf("session %d through a kept translation: %v", i, err)
		}
	}
	sn.refusedAll(t, f, gone[:20])
	if errs := sn.connectAll(f, keep); len(errs) > 0 {
		t.Errorf("%d of the %d kept translations do not work, first: %v", len(errs), len(keep), errs[:min(5, len(errs))])
	}
	for _, fl := range flowsIn(t, f, sn.router) {
		if fl.active() && slices.ContainsFunc(gone, func(ep EndpointNAT) bool { return fl.Target.Addr() == ep.Endpoint }) {
			t.Errorf("a live flow through a withdrawn translation is left: %+v", fl)
		}
	}
	counters, err := f.EndpointCounters(sn.id)
	if err != nil {
		t.Fatal(err)
	}
	if len(counters) != len(keep) || counters[keep[0].Name].Connections == 0 {
		t.Errorf("counters of %d translations (want %d); %s: %+v", len(counters), len(keep), keep[0].Name, counters[keep[0].Name])
	}
}

// TestHundredRouters programs translations in 100 networks' routers (five
// each), connects through all of them, then withdraws every network's
// first translation under a live session: each is reset and refused, the
// rest keep working.
func TestHundredRouters(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	startScaleServices(t, f)
	const networks, each = 100, 5
	var nets []*scaleNetwork
	start := time.Now()
	for n := range networks {
		sn := newScaleNetwork(t, f, fmt.Sprintf("net%03d", n), each, n*each)
		mustEnsureEndpoints(t, f, sn.id, sn.eps...)
		nets = append(nets, sn)
	}
	t.Logf("%d networks with %d translations each in %v", networks, each, time.Since(start))
	var sessions []*session
	for _, sn := range nets {
		if errs := sn.connectAll(f, sn.eps); len(errs) > 0 {
			t.Fatalf("network %s: %v", sn.id, errs)
		}
		sessions = append(sessions, dialSession(t, f, sn.nic, netip.AddrPortFrom(sn.eps[0].Endpoint, pgPort).String()))
	}
	for i, sn := range nets {
		if revoked := mustEnsureEndpoints(t, f, sn.id, sn.eps[1:]...); len(revoked) != 1 {
			t.Errorf("network %s: revoked %+v, want its one session", sn.id, revoked)
		}
		if err := sessions[i].echo("gone?"); !isReset(err) {
			t.Errorf("network %s: session through the withdrawn translation: %v, want a reset", sn.id, err)
		}
	}
	for _, sn := range nets[:10] {
		sn.refusedAll(t, f, sn.eps[:1])
	}
	for _, sn := range nets {
		if errs := sn.connectAll(f, sn.eps[1:]); len(errs) > 0 {
			t.Errorf("network %s after the withdrawal: %v", sn.id, errs)
		}
	}
}

// TestSplitBatches programs a change too large for one batch (the budget
// shrunk to one translation's elements): every translation works after
// it, and a withdrawal split the same way works too.
func TestSplitBatches(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	f.batchBudget = 1
	startScaleServices(t, f)
	sn := newScaleNetwork(t, f, "split", 40, 0)
	f.mu.Lock()
	r, err := f.open(sn.router, nil)
	if err != nil {
		f.mu.Unlock()
		t.Fatal(err)
	}
	mustEnsureEndpoints := func(eps ...EndpointNAT) {
		t.Helper()
		if _, _, errs := f.ensureLinks(r, endpointLinks(sn.id, eps), false); len(errs) > 0 {
			t.Fatal(errs)
		}
		res := f.convergeTable(r, endpointTable(sn.id, eps))
		if res.err != nil {
			t.Fatal(res.err)
		}
		if res.batches < 2 {
			t.Errorf("%d batches: the change was not split", res.batches)
		}
	}
	mustEnsureEndpoints(sn.eps...)
	mustEnsureEndpoints(sn.eps[20:]...)
	r.close()
	f.mu.Unlock()
	if errs := sn.connectAll(f, sn.eps[20:]); len(errs) > 0 {
		t.Errorf("after split batches: %v", errs)
	}
	sn.refusedAll(t, f, sn.eps[:5])
}

// TestWithdrawalFailsClosed makes a router's programming fail (the fault
// hook): a withdrawal that cannot be programmed leaves the path closed (its
// session reset, new connections refused, the mark in the blocked set);
// when even holding it closed fails, the error says the path is open; and
// a later Ensure that succeeds removes it and empties the blocked set.
func TestWithdrawalFailsClosed(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	router, nic, pg1 := pe1Network(t, f)
	startEcho(t, f, pg1, "169.254.10.2:5432", "pg1")
	mustEnsureEndpoints(t, f, "net1", pe1())
	s := dialSession(t, f, nic, "10.0.2.5:5432")
	refuse := errors.New("refused by the test")
	fail := func(points ...FaultPoint) {
		f.SetFaultHook(func(p FaultPoint, ns string) error {
			if ns == router && slices.Contains(points, p) {
				return refuse
			}
			return nil
		})
	}
	t.Cleanup(func() { f.SetFaultHook(nil) })

	fail(FaultProgram)
	revoked, err := f.EnsureEndpoints("net1", nil)
	var te *TranslationError
	if !errors.As(err, &te) || !errors.Is(err, refuse) || !slices.Equal(te.Held, []string{"pe1"}) || len(te.Failed) != 0 {
		t.Fatalf("withdrawal with programming failing: %v (%+v), want pe1 held closed", err, te)
	}
	if len(revoked) != 1 {
		t.Errorf("revoked %+v, want the session: revocation happens whatever the kernel took", revoked)
	}
	if err := s.echo("gone?"); !isReset(err) {
		t.Errorf("session through the failed withdrawal: %v, want a reset", err)
	}
	mustNotConnect(t, f, nic, "10.0.2.5:5432")
	if sizes, _ := setSizes(t, f, router); sizes["pe-dnat"] != 1 || sizes["pe-blocked"] != 1 {
		t.Errorf("sets %v: want pe1's elements left and its mark blocked", sizes)
	}

	// Adding a translation while programming fails: not in place.
	pe2 := EndpointNAT{Name: "pe2", Endpoint: mustAddr("10.0.2.6"), Ports: []uint16{pgPort}, Service: "pg1", ServiceAddr: mustAddr("169.254.10.2"), SNAT: mustAddr("169.254.1.6")}
	mustEnsureNetworkWithEndpoints(t, f, "net1", []string{"10.0.0.0/16"}, "10.0.2.5", "10.0.2.6")
	_, err = f.EnsureEndpoints("net1", []EndpointNAT{pe2})
	if !errors.As(err, &te) || te.Failed["pe2"] == nil || !slices.Contains(te.Held, "pe1") {
		t.Fatalf("adding pe2 while programming fails: %v, want pe2 failed and pe1 still held", err)
	}
	mustNotConnect(t, f, nic, "10.0.2.6:5432")

	// Back, then a withdrawal whose holding closed fails too: the error
	// says pe1 may be open.
	f.SetFaultHook(nil)
	mustEnsureEndpoints(t, f, "net1", pe1())
	if sizes, _ := setSizes(t, f, router); sizes["pe-blocked"] != 0 {
		t.Errorf("sets %v: pe1 back in place, yet still blocked", sizes)
	}
	mustCall(t, f, nic, "10.0.2.5:5432", "pg1 169.254.1.5")
	fail(FaultProgram, FaultBlock)
	_, err = f.EnsureEndpoints("net1", nil)
	if !errors.As(err, &te) || te.Failed["pe1"] == nil || len(te.Held) != 0 {
		t.Fatalf("withdrawal with programming and blocking failing: %v, want pe1 failed (open)", err)
	}

	// The retry that succeeds removes it and unblocks.
	f.SetFaultHook(nil)
	mustEnsureEndpoints(t, f, "net1")
	if sizes, _ := setSizes(t, f, router); sizes["pe-dnat"] != 0 || sizes["pe-blocked"] != 0 || sizes["pe-mark"] != 0 {
		t.Errorf("sets %v after the retry: want all empty", sizes)
	}
	mustNotConnect(t, f, nic, "10.0.2.5:5432")
	mustEnsureEndpoints(t, f, "net1", pe1(), pe2)
	mustCall(t, f, nic, "10.0.2.5:5432", "pg1 169.254.1.5")
	mustCall(t, f, nic, "10.0.2.6:5432", "pg1 169.254.1.6")
}

// TestLegacyTableUpgrade starts from a router whose table has objects of
// the data path before translations became elements (a named counter per
// translation, a set per public path): an Ensure removes them and
// translates as it should.
func TestLegacyTableUpgrade(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	router, nic, pg1 := pe1Network(t, f)
	serve(t, f, pg1, "169.254.10.2:5432", "pg1")
	err := f.Do(router, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		table := c.AddTable(&nftables.Table{Name: NFTTable, Family: nftables.TableFamilyINet})
		c.AddObj(&nftables.NamedObj{Table: table, Name: "pe-pe1-in", Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
		if err := c.AddSet(&nftables.Set{ID: nextSetID(), Table: table, Name: "pe-old-allow", KeyType: nftables.TypeIPAddr, Interval: true}, nil); err != nil {
			return err
		}
		// A set of today's name with yesterday's definition.
		if err := c.AddSet(&nftables.Set{ID: nextSetID(), Table: table, Name: "pe-dnat", KeyType: nftables.TypeIPAddr}, nil); err != nil {
			return err
		}
		return c.Flush()
	})
	if err != nil {
		t.Fatal(err)
	}
	mustEnsureEndpoints(t, f, "net1", pe1())
	mustCall(t, f, nic, "10.0.2.5:5432", "pg1 169.254.1.5")
	dump := tableDump(t, f, router)
	for _, old := range []string{"object pe-pe1-in", "set pe-old-allow"} {
		if strings.Contains(dump, old) {
			t.Errorf("%s left:\n%s", old, dump)
		}
	}
}
