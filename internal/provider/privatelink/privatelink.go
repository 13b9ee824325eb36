// Package privatelink holds what private endpoints and the resources they
// lead to share: the contract a private-link target implements (Kind: its
// type, group IDs, DNS names and how to look one up), the registry of
// those kinds, and the private endpoint connection workflow (states,
// requests, the owner's decisions, removal, and the mirror of each change
// on the endpoint) with the handlers of every target's
// privateEndpointConnections child type.
//
// The network provider's private endpoints reach targets only through
// this package; each target provider (flexible servers today, private
// link services later) registers a Kind and serves ConnectionsType under
// its resource type. One implementation of the workflow serves them all.
package privatelink

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/privlink/privlink/internal/arm"
)

// Target is a private-link resource as a private endpoint sees it.
type Target struct {
	// ID is the resource's ID in its canonical casing.
	ID arm.ResourceID
	// Name is the resource's name as created.
	Name string
	// FQDN is the name clients resolve to reach it, e.g.
	// srv1.postgres.database.azure.com.
	FQDN string
	// Kind is the target's kind.
	Kind *Kind
	// Policy, when set, says which subscriptions may request a connection
	// and whose requests are approved at once (a private link service's
	// visibility and autoApproval); nil leaves it to authorization alone
	// (a flexible server: anyone may request, the approval action
	// approves).
	Policy *Policy
}

// Policy is a target's own say over who connects to it.
type Policy struct {
	// Visibility are the subscriptions that may find the target and
	// request a connection; "*" is every subscription. The target's own
	// subscription always may.
	Visibility []string
	// AutoApproval are the subscriptions whose requests are approved at
	// once.
	AutoApproval []string
	// Home is the target's own subscription.
	Home string
}

// Visible reports whether a private endpoint in subscription sub may find
// and request a connection to the target.
func (p *Policy) Visible(sub string) bool {
	if p == nil || strings.EqualFold(sub, p.Home) {
		return true
	}
	return slices.ContainsFunc(p.Visibility, func(s string) bool { return s == "*" || strings.EqualFold(s, sub) })
}

// AutoApproves reports whether a request from subscription sub is approved
// at once.
func (p *Policy) AutoApproves(sub string) bool {
	return p != nil && slices.ContainsFunc(p.AutoApproval, func(s string) bool { return strings.EqualFold(s, sub) })
}

// Kind is a type of private-link resource, registered by its provider.
type Kind struct {
	// Type is the resource type, e.g. Microsoft.DBforPostgreSQL/flexibleServers.
	Type string
	// Title names the type in messages ("flexible server"); Noun is the
	// short name the connection states use ("server": "Awaiting approval
	// by the server's owner").
	Title, Noun string
	// GroupID is the private link group of every resource of the type
	// (its one group and member); a connection's groupIds name it. A kind
	// without groups (a private link service) leaves it empty: its
	// connections have no groupIds.
	GroupID string
	// LinkIdentifiers says that the kind's connections carry a
	// linkIdentifier: a 32-bit number, chosen when the connection is
	// first requested, that the data path hands the target with each
	// connection (PROXY protocol v2, TLV 0xEE/0x01).
	LinkIdentifiers bool
	// ResolveAlias reads the ID of the resource of the type whose alias is
	// alias (a name consumers may use instead of the ID): ok false when
	// none has it. A kind without aliases leaves it nil.
	ResolveAlias func(r arm.Reader, alias string) (id arm.ResourceID, ok bool, err error)
	// AliasSuffix ends every alias of the kind (".azure.privatelinkservice").
	AliasSuffix string
	// Zone is the private DNS zone the endpoints' records belong in, e.g.
	// privatelink.postgres.database.azure.com.
	Zone string
	// DNSSuffix completes a resource's name into its FQDN when the
	// resource is gone.
	DNSSuffix string
	// Lookup reads the resource id for a private endpoint that targets it:
	// nil when there is none. It reads the store directly: the endpoint's
	// owner may have no right to read the target.
	Lookup func(r arm.Reader, id arm.ResourceID) (*Target, error)
	// PublicAt reads the resource of the type whose public address is
	// addr, with what lets traffic in there (public.go): nil when none.
	// A kind without a public path leaves it nil.
	PublicAt func(r arm.Reader, addr netip.Addr) (*PublicPath, error)
}

// FQDN is the DNS name of the resource named name: "" for a kind whose
// names are no DNS names.
func (k *Kind) FQDN(name string) string {
	if k.DNSSuffix == "" {
		return ""
	}
	return name + "." + k.DNSSuffix
}

// ByAlias returns the kind whose aliases end like alias, nil when none.
func (k *Kinds) ByAlias(alias string) *Kind {
	if k == nil {
		return nil
	}
	for _, kind := range k.kinds {
		if kind.ResolveAlias != nil && kind.AliasSuffix != "" && strings.HasSuffix(strings.ToLower(alias), kind.AliasSuffix) {
			return kind
		}
	}
	return nil
}

// Kinds are the registered kinds of private-link resources.
type Kinds struct {
	kinds []*Kind
}

// NewKinds returns a registry of ks.
func NewKinds(ks ...*Kind) *Kinds { return &Kinds{kinds: ks} }

// Of returns the kind of the resource id, nil when id is no resource of a
// registered kind.
func (k *Kinds) Of(id arm.ResourceID) *Kind {
	if k == nil || id.Scope != nil || id.IsCollection() || id.ResourceGroup == "" || len(id.Names) != 1 {
		return nil
	}
	for _, kind := range k.kinds {
		if strings.EqualFold(kind.Type, id.Type()) {
			return kind
		}
	}
	return nil
}

// All returns the registered kinds.
func (k *Kinds) All() []*Kind {
	if k == nil {
		return nil
	}
	return slices.Clone(k.kinds)
}

// Lookup resolves id to a target of a registered kind: nil (and no error)
// when there is no such resource.
func (k *Kinds) Lookup(r arm.Reader, id arm.ResourceID) (*Target, error) {
	kind := k.Of(id)
	if kind == nil {
		return nil, nil
	}
	t, err := kind.Lookup(r, id)
	if err != nil {
		return nil, fmt.Errorf("look up %s %s: %w", kind.Title, id, err)
	}
	if t != nil {
		t.Kind = kind
	}
	return t, nil
}
