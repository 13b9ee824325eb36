package fabric

import (
	"testing"

	"github.com/privlink/privlink/internal/policy"
)

// TestPolicyASGRanges: an ASG whose members are not one address range
// (a at 10.0.1.4 and 10.0.1.9, not b at 10.0.1.5 between them) is an
// interval set of several ranges, programmed whole on a fresh table and
// again after the policies were removed. (Fails when an interval's end is
// sent apart from its start: the kernel refuses the second start with
// EEXIST.)
func TestPolicyASGRanges(t *testing.T) {
	t.Parallel()
	pn := newPolicyNet(t)
	pn.model.NICs = append(pn.model.NICs,
		&policy.NIC{ID: "d", Addr: mustAddr("10.0.1.9"), Subnet: "s1", ASGs: []string{"web"}},
		&policy.NIC{ID: "e", Addr: mustAddr("10.0.1.20"), Subnet: "s1", ASGs: []string{"web"}})
	pn.nic("a").ASGs = []string{"web"}
	pn.model.NSGs["nsg"] = &policy.NSG{ID: "nsg", Rules: []policy.Rule{
		tcpRule("deny-web", 100, policy.Inbound, policy.Deny, policy.Match{ASGs: []string{"web"}}, 8081)}}
	pn.model.Subnets[1].NSG = "nsg"
	for _, round := range []string{"fresh", "after removal"} {
		pn.apply(t)
		pn.check(t, probe{"a", "c", 8081, false}, probe{"b", "c", 8081, true}, probe{"a", "c", 8080, true})
		if _, err := pn.f.EnsurePolicy("net1", nil, pn.nics); err != nil {
			t.Fatalf("%s: remove: %v", round, err)
		}
	}
}
