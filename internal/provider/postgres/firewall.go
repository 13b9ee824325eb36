package postgres

import (
	"context"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Firewall rules: inclusive IPv4 ranges whose addresses may reach the
// server over its public address while publicNetworkAccess is Enabled.
// Each is a child document of its server, which the data path reads to
// build the server's firewall set; writes are synchronous (200, and 202
// or 204 for a DELETE), as nothing has to wait for the data path.

// firewallRuleNameRE is Azure's rule for firewall rule names.
var firewallRuleNameRE = regexp.MustCompile(`^[-\w._]{1,128}$`)

// FirewallRange is one rule as the data path enforces it.
type FirewallRange struct {
	Name       string
	Start, End netip.Addr
}

// FirewallRanges returns the firewall rules of server id, for the data
// path. Rules that do not parse (none do: the handler checks them) are
// left out.
func FirewallRanges(r arm.Reader, id arm.ResourceID) ([]FirewallRange, error) {
	rules, err := arm.LoadAll[firewallRuleDoc](r, id.ChildCollection("firewallRules"))
	if err != nil {
		return nil, err
	}
	out := make([]FirewallRange, 0, len(rules))
	for _, fr := range rules {
		s, err1 := netip.ParseAddr(fr.Properties.StartIPAddress)
		e, err2 := netip.ParseAddr(fr.Properties.EndIPAddress)
		if err1 == nil && err2 == nil {
			out = append(out, FirewallRange{Name: fr.Name, Start: s, End: e})
		}
	}
	return out, nil
}

func (p *Provider) getFirewallRule(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	return getChild[firewallRuleDoc](ctx, p.st, r)
}

func (p *Provider) listFirewallRules(ctx context.Context, r *arm.Request) ([]any, error) {
	return listChildren[firewallRuleDoc](ctx, p.st, r)
}

// getChild answers the GET of a server's child document of type T.
func getChild[T any](ctx context.Context, st store.Store, r *arm.Request) (*arm.Response, error) {
	var doc T
	ok, err := arm.Load(arm.ReadOnly(ctx, st), r.ID, &doc)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errChildNotFound(r.ID)
	}
	return arm.OK(doc), nil
}

// listChildren answers the list of a server's child documents of type T.
func listChildren[T any](ctx context.Context, st store.Store, r *arm.Request) ([]any, error) {
	docs, err := arm.LoadAll[T](arm.ReadOnly(ctx, st), r.ID)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(docs))
	for i := range docs {
		out[i] = docs[i]
	}
	return out, nil
}

// parseRange validates a firewall rule body.
func parseRange(in *firewallRuleIn) (start, end netip.Addr, err error) {
	if in.Properties == nil {
		return start, end, errMissing("properties", "A firewall rule's properties (startIpAddress and endIpAddress)")
	}
	parse := func(target string, v *string) (netip.Addr, error) {
		if v == nil || strings.TrimSpace(*v) == "" {
			return netip.Addr{}, errMissing(target, "The "+strings.TrimPrefix(target, "properties.")+" of a firewall rule")
		}
		a, err := netip.ParseAddr(strings.TrimSpace(*v))
		if err != nil || !a.Is4() {
			return netip.Addr{}, errInvalid(target, "Invalid value given for parameter %s: '%s' is not an IPv4 address. Firewall rules take IPv4 addresses such as 203.0.113.7.",
				strings.TrimPrefix(target, "properties."), *v)
		}
		return a, nil
	}
	if start, err = parse("properties.startIpAddress", in.Properties.StartIPAddress); err != nil {
		return start, end, err
	}
	if end, err = parse("properties.endIpAddress", in.Properties.EndIPAddress); err != nil {
		return start, end, err
	}
	if end.Less(start) {
		return start, end, errInvalid("properties.endIpAddress",
			"Invalid value given for parameter endIpAddress: '%s' comes before startIpAddress '%s'; the end of a range must not be lower than its start.", end, start)
	}
	return start, end, nil
}

func (p *Provider) putFirewallRule(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	name := r.ID.Name()
	if !firewallRuleNameRE.MatchString(name) {
		return nil, errInvalid("firewallRuleName", "Invalid value given for parameter firewallRuleName: '%s'. A firewall rule name has 1 to 128 letters, digits, '-', '_' or '.'.", name)
	}
	var in firewallRuleIn
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	start, end, err := parseRange(&in)
	if err != nil {
		return nil, err
	}
	var out firewallRuleDoc
	_, err = p.st.Txn(ctx, func(tx store.Tx) error {
		server, _, err := p.loadParent(tx, r.ID)
		if err != nil {
			return err
		}
		var cur firewallRuleDoc
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, ""); err != nil {
			return err
		}
		now := time.Now().UTC()
		out = firewallRuleDoc{
			ID: server.ID + "/firewallRules/" + name, Name: name, Type: typeFirewallRule,
			SystemData: newSystemData(r.Caller, now),
			Properties: firewallRuleProps{StartIPAddress: start.String(), EndIPAddress: end.String()},
		}
		if exists {
			out.ID, out.Name = cur.ID, cur.Name // the name keeps its first casing
			if cur.SystemData != nil {
				sd := *cur.SystemData
				touch(&sd, r.Caller, now)
				out.SystemData = &sd
			}
		}
		return arm.Save(tx, r.ID, &out)
	})
	if err != nil {
		return nil, err
	}
	return arm.OK(out), nil
}

func (p *Provider) deleteFirewallRule(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var op *arm.Operation
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		op = nil
		var cur firewallRuleDoc
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, ""); err != nil {
			return err
		}
		if !exists {
			return nil
		}
		var server serverDoc
		if _, err := arm.Load(tx, r.ID.Parent(), &server); err != nil {
			return err
		}
		if err := arm.Delete(tx, r.ID); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, server.Location, true)
		return err
	})
	if err != nil {
		return nil, err
	}
	if op == nil {
		return noContent(), nil
	}
	return &arm.Response{Status: http.StatusAccepted, Op: op}, nil
}
