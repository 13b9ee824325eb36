package privatelink

import (
	"net/netip"
	"strings"
	"testing"
)

// TestPublicPathAdmit: a public path admits a source only by a firewall
// rule holding it (the first such, ends inclusive), on its port, while
// public network access is Enabled and the resource runs; otherwise the
// reason names what keeps the flow out.
func TestPublicPathAdmit(t *testing.T) {
	a := netip.MustParseAddr
	path := func() *PublicPath {
		return &PublicPath{Target: Target{Name: "srv1", Kind: &Kind{Title: "flexible server"}}, Addr: a("198.18.1.4"), Port: 5432,
			PublicNetworkAccess: true, Running: true, Rules: []FirewallRule{
				{Name: "one", Start: a("198.18.0.2"), End: a("198.18.0.2")},
				{Name: "range", Start: a("198.18.0.1"), End: a("198.18.0.9")},
			}}
	}
	for _, c := range []struct {
		name   string
		change func(*PublicPath)
		src    string
		port   uint16
		rule   string // "" when kept out
		reason string
	}{
		{name: "first rule wins", src: "198.18.0.2", port: 5432, rule: "one"},
		{name: "range start", src: "198.18.0.1", port: 5432, rule: "range"},
		{name: "range end", src: "198.18.0.9", port: 5432, rule: "range"},
		{name: "past the range", src: "198.18.0.10", port: 5432, reason: "no firewall rule of flexible server srv1 admits 198.18.0.10"},
		{name: "no rules", change: func(p *PublicPath) { p.Rules = nil }, src: "198.18.0.2", port: 5432,
			reason: "no firewall rule of flexible server srv1 admits 198.18.0.2"},
		{name: "other port", src: "198.18.0.2", port: 80, reason: "listens on port 5432 of 198.18.1.4, not 80"},
		{name: "access disabled", change: func(p *PublicPath) { p.PublicNetworkAccess = false }, src: "198.18.0.2", port: 5432,
			reason: "public network access of flexible server srv1 is Disabled"},
		{name: "stopped", change: func(p *PublicPath) { p.Running = false }, src: "198.18.0.2", port: 5432,
			reason: "flexible server srv1 is stopped"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := path()
			if c.change != nil {
				c.change(p)
			}
			got := p.Admit(a(c.src), c.port)
			switch {
			case c.rule != "" && (!got.Allowed || got.Rule == nil || got.Rule.Name != c.rule):
				t.Errorf("Admit(%s, %d) = %+v, want admitted by %s", c.src, c.port, got, c.rule)
			case c.rule == "" && (got.Allowed || got.Rule != nil || !strings.Contains(got.Reason, c.reason)):
				t.Errorf("Admit(%s, %d) = %+v, want kept out: %q", c.src, c.port, got, c.reason)
			}
		})
	}
}
