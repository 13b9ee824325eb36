package privatelink

import (
	"fmt"
	"net/netip"

	"github.com/privlink/privlink/internal/arm"
)

// PublicPath is how a private-link resource is reached from the internet,
// beside its private endpoints: its public address and port, whether its
// public network access lets anything in, and the firewall rules that say
// who. Network Watcher's connectivity check and `privlink why` read it to
// finish a verdict on a flow that leaves a network for the internet toward
// such an address; the data path enforces the same facts in the kernel.
type PublicPath struct {
	// Target is the resource (its Kind filled in by Kinds.PublicAt).
	Target Target
	// Addr and Port are where it listens on the internet.
	Addr netip.Addr
	Port uint16
	// PublicNetworkAccess is true when the resource's public network
	// access is Enabled.
	PublicNetworkAccess bool
	// Running is false while the resource is stopped (its public path
	// then admits nothing).
	Running bool
	// Rules are its firewall rules, in the order the resource lists them.
	Rules []FirewallRule
}

// FirewallRule admits the sources from Start to End (inclusive).
type FirewallRule struct {
	Name       string
	Start, End netip.Addr
}

// Admission is what a public path does with one connection attempt.
type Admission struct {
	// Allowed: the connection gets through.
	Allowed bool
	// Rule is the firewall rule that admits it (Allowed), nil otherwise.
	Rule *FirewallRule
	// Reason says why a connection that does not get through is kept out:
	// public network access Disabled, the resource stopped, a port
	// nothing listens on, or no firewall rule holding the source.
	Reason string
}

// Admit decides a connection from src (as the resource sees it: after any
// source translation) to port: the first firewall rule, in the order of
// Rules, whose range holds src admits it while public network access is
// Enabled and the resource runs; no rule means no traffic.
func (p *PublicPath) Admit(src netip.Addr, port uint16) Admission {
	switch {
	case !p.PublicNetworkAccess:
		return Admission{Reason: fmt.Sprintf("public network access of %s %s is Disabled", p.Target.Kind.title(), p.Target.Name)}
	case !p.Running:
		return Admission{Reason: fmt.Sprintf("%s %s is stopped", p.Target.Kind.title(), p.Target.Name)}
	case port != p.Port:
		return Admission{Reason: fmt.Sprintf("%s %s listens on port %d of %s, not %d", p.Target.Kind.title(), p.Target.Name, p.Port, p.Addr, port)}
	}
	for i, r := range p.Rules {
		if r.Start.Compare(src) <= 0 && src.Compare(r.End) <= 0 {
			return Admission{Allowed: true, Rule: &p.Rules[i]}
		}
	}
	return Admission{Reason: fmt.Sprintf("no firewall rule of %s %s admits %s", p.Target.Kind.title(), p.Target.Name, src)}
}

func (k *Kind) title() string {
	if k == nil {
		return "resource"
	}
	return k.Title
}

// PublicAt returns the public path of the resource, of any registered
// kind, whose public address is addr: nil (and no error) when none has it.
func (k *Kinds) PublicAt(r arm.Reader, addr netip.Addr) (*PublicPath, error) {
	if k == nil {
		return nil, nil
	}
	for _, kind := range k.kinds {
		if kind.PublicAt == nil {
			continue
		}
		p, err := kind.PublicAt(r, addr)
		if err != nil {
			return nil, fmt.Errorf("look up the %s at %s: %w", kind.Title, addr, err)
		}
		if p != nil {
			p.Target.Kind = kind
			return p, nil
		}
	}
	return nil, nil
}
