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
	// (its one group and member); a connection's groupIds name it.
	GroupID string
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

// FQDN is the DNS name of the resource named name.
func (k *Kind) FQDN(name string) string { return name + "." + k.DNSSuffix }

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
