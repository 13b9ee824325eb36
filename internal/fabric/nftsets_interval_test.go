package fabric

import (
	"net/netip"
	"slices"
	"testing"
)

// TestIntervalSetChanges converges an address set (start and end elements,
// as the policies' sets are) through changes that split an interval,
// merge two and move an end across a kept one, each in place, and checks
// the kernel's set after each: the adjacent spaces of peered networks
// (10.0.0.0/16 and 10.1.0.0/16 merge into one interval) and ASG members
// leaving the middle of a run of addresses make such changes.
func TestIntervalSetChanges(t *testing.T) {
	t.Parallel()
	f := newTestFabric(t)
	ns := mustEnsureNetwork(t, f, "iv", "10.0.1.0/24")
	r, err := f.open(ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	const table, set = "privlink-ivtest", "iv-s"
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	for _, step := range [][]netip.Prefix{
		pfx("10.0.0.0/16", "10.1.0.0/16", "10.2.0.0/16"),                // one interval
		pfx("10.0.0.0/16", "10.2.0.0/16"),                               // split
		pfx("10.0.0.0/16", "10.1.0.0/16", "10.2.0.0/16"),                // merged again
		pfx("10.0.0.0/16", "10.1.0.0/17", "10.2.0.0/16"),                // an end moves inside
		pfx("10.0.1.4/32", "10.0.1.5/32", "10.0.1.6/32"),                // a run of members
		pfx("10.0.1.4/32", "10.0.1.6/32"),                               // the middle one leaves
		pfx("10.0.0.0/8"),                                               // one covering all
		pfx("10.0.0.0/16", "10.1.0.0/16", "10.3.0.0/16", "10.9.9.9/32"), // and apart
	} {
		spec := tableSpec{table: table, ownsChains: true, objPrefix: "iv-", sets: []setSpec{addrSet(set, step)}}
		if res := f.convergeTable(r, spec); res.err != nil {
			t.Fatalf("converge to %v: %v", step, res.err)
		}
		c, err := nftConn(r)
		if err != nil {
			t.Fatal(err)
		}
		st, err := readTable(c, spec)
		c.CloseLasting()
		if err != nil {
			t.Fatal(err)
		}
		got := elementKeys(st.sets[set].elems)
		want := elementKeys(addrSet(set, step).elems)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("after converging to %v the set holds %v, want %v", step, got, want)
		}
	}
}
