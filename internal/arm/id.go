package arm

import (
	"fmt"
	"net/url"
	"strings"
)

// ResourceID is a parsed Azure Resource Manager resource ID.
//
//	/subscriptions/{Subscription}
//	  [/resourceGroups/{ResourceGroup}]
//	  [/providers/{Namespace}/{Types[0]}/{Names[0]}/{Types[1]}/{Names[1]}...]
//
// Literal segments are matched case-insensitively, as ARM does; names keep
// the case in which they were given. A collection (a list URL) has one name
// fewer than it has types. Extension resources (role assignments) carry the
// scope they extend in Scope, and their own provider part in the fields.
type ResourceID struct {
	Subscription  string
	ResourceGroup string
	Namespace     string
	Types         []string
	Names         []string
	// Scope is the ID an extension resource hangs off (a subscription,
	// resource group or resource), nil for ordinary resources.
	Scope *ResourceID
}

// ParseID parses an ARM resource ID or request path (without query).
// Each segment is unescaped once.
func ParseID(path string) (ResourceID, error) {
	segs, err := splitPath(path)
	if err != nil {
		return ResourceID{}, err
	}
	return parseSegments(segs)
}

func splitPath(path string) ([]string, error) {
	path = strings.Trim(path, "/")
	if path == "" {
		return nil, nil
	}
	raw := strings.Split(path, "/")
	segs := make([]string, len(raw))
	for i, s := range raw {
		u, err := url.PathUnescape(s)
		if err != nil {
			return nil, fmt.Errorf("invalid path segment %q: %w", s, err)
		}
		if u == "" {
			return nil, fmt.Errorf("empty path segment in %q", path)
		}
		if strings.ContainsAny(u, "/%") {
			// No ARM name or type holds them, and an ID renders its
			// segments unescaped: "a%2Fb" would come back as two.
			return nil, fmt.Errorf("invalid path segment %q: names cannot contain '/' or '%%'", s)
		}
		segs[i] = u
	}
	return segs, nil
}

func parseSegments(segs []string) (ResourceID, error) {
	var id ResourceID
	if len(segs) < 2 || !strings.EqualFold(segs[0], "subscriptions") {
		return id, fmt.Errorf("resource ID must start with /subscriptions/{subscriptionId}")
	}
	id.Subscription = segs[1]
	rest := segs[2:]
	if len(rest) >= 2 && strings.EqualFold(rest[0], "resourceGroups") {
		id.ResourceGroup = rest[1]
		rest = rest[2:]
	} else if len(rest) == 1 && strings.EqualFold(rest[0], "resourceGroups") {
		// The resource group collection: /subscriptions/{s}/resourceGroups.
		id.Namespace = "Microsoft.Resources"
		id.Types = []string{"resourceGroups"}
		return id, nil
	}
	if len(rest) == 0 {
		return id, nil
	}
	if len(rest) == 1 && strings.EqualFold(rest[0], "resources") {
		// The generic list: /subscriptions/{s}[/resourceGroups/{rg}]/resources.
		id.Namespace = "Microsoft.Resources"
		id.Types = []string{"resources"}
		return id, nil
	}
	if !strings.EqualFold(rest[0], "providers") || len(rest) < 2 {
		return id, fmt.Errorf("expected /providers/{namespace} after the scope, got %q", strings.Join(rest, "/"))
	}
	// An extension resource: a second /providers/ further on.
	for i := 2; i < len(rest); i += 2 {
		if strings.EqualFold(rest[i], "providers") && i+1 < len(rest) {
			scope := id
			scope.Namespace = rest[1]
			scope.Types, scope.Names = pairs(rest[2:i])
			if len(scope.Types) != len(scope.Names) {
				return id, fmt.Errorf("scope of an extension resource must name a resource")
			}
			ext := ResourceID{Subscription: id.Subscription, ResourceGroup: id.ResourceGroup, Scope: &scope}
			ext.Namespace = rest[i+1]
			ext.Types, ext.Names = pairs(rest[i+2:])
			return ext, nil
		}
	}
	id.Namespace = rest[1]
	id.Types, id.Names = pairs(rest[2:])
	return id, nil
}

// pairs splits type/name/type/name[/type] into types and names.
func pairs(s []string) (types, names []string) {
	for i, v := range s {
		if i%2 == 0 {
			types = append(types, v)
		} else {
			names = append(names, v)
		}
	}
	return types, names
}

// IsCollection reports whether the ID names a collection (a list URL).
func (id ResourceID) IsCollection() bool { return len(id.Types) > len(id.Names) }

// Type returns the resource type, e.g. "Microsoft.Network/virtualNetworks/subnets".
func (id ResourceID) Type() string {
	if id.Namespace == "" {
		if id.ResourceGroup != "" {
			return "Microsoft.Resources/resourceGroups"
		}
		return "Microsoft.Resources/subscriptions"
	}
	return id.Namespace + "/" + strings.Join(id.Types, "/")
}

// Name returns the last name of the ID ("" for a collection or a bare scope).
func (id ResourceID) Name() string {
	if len(id.Names) == 0 || id.IsCollection() {
		if id.Namespace == "" && id.ResourceGroup != "" {
			return id.ResourceGroup
		}
		if id.Namespace == "" {
			return id.Subscription
		}
		return ""
	}
	return id.Names[len(id.Names)-1]
}

// Parent returns the ID of the enclosing resource: a child resource's
// parent, a top-level resource's resource group (or subscription), a
// collection's owner.
func (id ResourceID) Parent() ResourceID {
	p := id.clone()
	switch {
	case p.IsCollection():
		p.Types = p.Types[:len(p.Types)-1]
	case len(p.Types) > 1:
		p.Types = p.Types[:len(p.Types)-1]
		p.Names = p.Names[:len(p.Names)-1]
	case len(p.Types) == 1 && p.Scope != nil:
		return *p.Scope
	case len(p.Types) == 1:
		p.Namespace, p.Types, p.Names = "", nil, nil
	case p.ResourceGroup != "":
		p.ResourceGroup = ""
	}
	if len(p.Types) == 0 && p.Scope == nil {
		p.Namespace = ""
	}
	return p
}

// Child returns the ID of a child resource of this one.
func (id ResourceID) Child(typ, name string) ResourceID {
	c := id.clone()
	c.Types = append(c.Types, typ)
	c.Names = append(c.Names, name)
	return c
}

// Collection returns the ID of the collection this resource belongs to.
func (id ResourceID) Collection() ResourceID {
	c := id.clone()
	if !c.IsCollection() && len(c.Names) > 0 {
		c.Names = c.Names[:len(c.Names)-1]
	}
	return c
}

// ResourceGroupID returns the ID of the resource group the resource is in.
func (id ResourceID) ResourceGroupID() ResourceID {
	return ResourceID{Subscription: id.Subscription, ResourceGroup: id.ResourceGroup}
}

func (id ResourceID) clone() ResourceID {
	c := id
	c.Types = append([]string(nil), id.Types...)
	c.Names = append([]string(nil), id.Names...)
	return c
}

// String renders the ID with ARM's canonical literal segments
// ("subscriptions", "resourceGroups", "providers").
func (id ResourceID) String() string {
	var b strings.Builder
	if id.Scope != nil {
		b.WriteString(id.Scope.String())
	} else {
		b.WriteString("/subscriptions/")
		b.WriteString(id.Subscription)
		if id.ResourceGroup != "" {
			b.WriteString("/resourceGroups/")
			b.WriteString(id.ResourceGroup)
		}
	}
	if id.Namespace == "" {
		return b.String()
	}
	if id.Namespace == "Microsoft.Resources" && len(id.Types) == 1 && id.Types[0] == "resourceGroups" &&
		len(id.Names) == 0 && id.ResourceGroup == "" && id.Scope == nil {
		b.WriteString("/resourceGroups")
		return b.String()
	}
	b.WriteString("/providers/")
	b.WriteString(id.Namespace)
	for i, t := range id.Types {
		b.WriteString("/")
		b.WriteString(t)
		if i < len(id.Names) {
			b.WriteString("/")
			b.WriteString(id.Names[i])
		}
	}
	return b.String()
}

// Equal compares two IDs as ARM does: case-insensitively.
func (id ResourceID) Equal(o ResourceID) bool { return strings.EqualFold(id.String(), o.String()) }

// Contains reports whether o is id itself or lies inside it (a descendant
// scope), comparing whole segments case-insensitively.
func (id ResourceID) Contains(o ResourceID) bool { return ScopeContains(id.String(), o.String()) }

// ScopeContains reports whether scope equals target or is one of its
// ancestors, on whole path segments, case-insensitively.
func ScopeContains(scope, target string) bool {
	s := strings.ToLower(strings.TrimSuffix(scope, "/"))
	t := strings.ToLower(strings.TrimSuffix(target, "/"))
	if s == "" {
		return true
	}
	return t == s || strings.HasPrefix(t, s+"/")
}
