package fabric

import (
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// The nftables objects the fabric keeps in every router namespace.
//
// Table NFTTable (family inet) holds chain NFTForwardChain, a filter chain
// on the forward hook whose policy is drop. Its rules, in order, accept:
//
//	ct state established,related             (replies, ICMP errors)
//	iifname "n*" oifname "n*"                (NIC to NIC inside the network)
//	iifname "n*" oifname "x*"                (NIC to the internet: default outbound)
//	iifname "n*" oifname "p*"                (NIC to a peered network, peering.go)
//	iifname "p*" oifname "n*"                (a peered network to a NIC)
//	iifname "n*" oifname "g*"                (NIC to a VPN gateway, vpngateway.go)
//	iifname "g*" oifname "n*"                (a VPN gateway to a NIC)
//	ct status dnat                           (flows a DNAT rule translated)
//
// Router-side links toward NICs are named RouterLinkName(id), "n" and 12 hex
// digits; other links in a router must not start with "n" (links toward
// service namespaces start with "s", see ServiceLinkNames; the link toward
// the internet router is OutboundLinkName, "x"; toward peered routers,
// PeerLinkName, "p"). Nothing goes from a peering link to another: peering
// is not transitive. So a router forwards
// between its own NICs, from its NICs to the internet (the replies only
// back: established) and, once the data path adds DNAT rules
// (EnsureEndpoints, in chains of its own in the same table, see nat.go),
// the translated flows; nothing else. The fabric converges only this
// chain's rules here: other chains of the table are left alone.
const (
	NFTTable        = "privlink"
	NFTForwardChain = "forward"
)

// ipsDstNAT is the conntrack status bit of a destination-translated flow
// (IPS_DST_NAT).
const ipsDstNAT = 1 << 5

type nftRule struct {
	comment string
	exprs   []expr.Any
}

func routerForwardRules() []nftRule {
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	ctBits := ctBitsSet
	// A comparison shorter than the interface name matches its prefix, as
	// nft's `iifname "n*"`.
	ifPrefix := func(key expr.MetaKey, prefix string) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: key, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(prefix)},
		}
	}
	return []nftRule{
		{"privlink: established", append(ctBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept)},
		{"privlink: nic to nic", slices.Concat(ifPrefix(expr.MetaKeyIIFNAME, nicLinkTag), ifPrefix(expr.MetaKeyOIFNAME, nicLinkTag), []expr.Any{accept})},
		{"privlink: nic to internet", slices.Concat(ifPrefix(expr.MetaKeyIIFNAME, nicLinkTag), ifPrefix(expr.MetaKeyOIFNAME, outboundLinkTag), []expr.Any{accept})},
		{"privlink: nic to peering", slices.Concat(ifPrefix(expr.MetaKeyIIFNAME, nicLinkTag), ifPrefix(expr.MetaKeyOIFNAME, peerLinkTag), []expr.Any{accept})},
		{"privlink: peering to nic", slices.Concat(ifPrefix(expr.MetaKeyIIFNAME, peerLinkTag), ifPrefix(expr.MetaKeyOIFNAME, nicLinkTag), []expr.Any{accept})},
		{"privlink: nic to vpn gateway", slices.Concat(ifPrefix(expr.MetaKeyIIFNAME, nicLinkTag), ifPrefix(expr.MetaKeyOIFNAME, gatewayLinkTag), []expr.Any{accept})},
		{"privlink: vpn gateway to nic", slices.Concat(ifPrefix(expr.MetaKeyIIFNAME, gatewayLinkTag), ifPrefix(expr.MetaKeyOIFNAME, nicLinkTag), []expr.Any{accept})},
		{"privlink: translated", append(ctBits(expr.CtKeySTATUS, ipsDstNAT), accept)},
	}
}

// ctBitsSet matches packets whose conntrack key (state, status) has one
// of the bits of mask set.
func ctBitsSet(key expr.CtKey, mask uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{
			SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(mask),
			Xor:  binaryutil.NativeEndian.PutUint32(0),
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// ensureRouterFilter converges the router's forward chain (see NFTTable).
// When the chain and its rules already match it changes nothing; otherwise
// it (re)creates the table and chain, flushes the chain and adds the rules
// in one atomic batch.
func ensureRouterFilter(r *nsRef) error {
	c, err := nftConn(r)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", r.name, err)
	}
	defer c.CloseLasting()
	want := routerForwardRules()
	ok, err := routerFilterMatches(c, want)
	if err != nil {
		return fmt.Errorf("namespace %s: read nftables: %w", r.name, err)
	}
	if ok {
		return nil
	}
	table := c.AddTable(&nftables.Table{Name: NFTTable, Family: nftables.TableFamilyINet})
	policy := nftables.ChainPolicyDrop
	chain := c.AddChain(&nftables.Chain{
		Name:     NFTForwardChain,
		Table:    table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookForward,
		Priority: nftables.ChainPriorityFilter,
		Policy:   &policy,
	})
	c.FlushChain(chain)
	for _, rule := range want {
		c.AddRule(&nftables.Rule{
			Table:    table,
			Chain:    chain,
			Exprs:    rule.exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, rule.comment),
		})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("namespace %s: install nftables table %s: %w", r.name, NFTTable, err)
	}
	return nil
}

// routerFilterMatches reports whether the forward chain exists as a drop
// policy filter on the forward hook holding exactly the wanted rules (by
// their comments, in order).
func routerFilterMatches(c *nftables.Conn, want []nftRule) (bool, error) {
	chain, err := findChain(c, NFTTable, NFTForwardChain)
	if err != nil || chain == nil {
		return false, err
	}
	if chain.Type != nftables.ChainTypeFilter || chain.Hooknum == nil || *chain.Hooknum != *nftables.ChainHookForward ||
		chain.Priority == nil || *chain.Priority != *nftables.ChainPriorityFilter ||
		chain.Policy == nil || *chain.Policy != nftables.ChainPolicyDrop {
		return false, nil
	}
	comments, err := ruleComments(c, chain)
	if err != nil {
		return false, err
	}
	wantComments := make([]string, len(want))
	for i, r := range want {
		wantComments[i] = r.comment
	}
	return slices.Equal(comments, wantComments), nil
}

// findChain returns the named chain of the inet table, or nil.
func findChain(c *nftables.Conn, table, name string) (*nftables.Chain, error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, err
	}
	for _, ch := range chains {
		if ch.Table.Name == table && ch.Name == name {
			return ch, nil
		}
	}
	return nil, nil
}

// ruleComments returns the comments of chain's rules, in order.
func ruleComments(c *nftables.Conn, chain *nftables.Chain) ([]string, error) {
	rules, err := c.GetRules(chain.Table, chain)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rules))
	for _, r := range rules {
		s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		out = append(out, s)
	}
	return out, nil
}
