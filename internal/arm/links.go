package arm

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// Linked authorization. A write that references another resource (a NIC
// naming a subnet, a private endpoint naming a server, a zone group naming
// a private DNS zone) needs, beyond the right to write the resource, a
// right on the referenced one: ARM checks an action such as
// Microsoft.Network/virtualNetworks/subnets/join/action at the referenced
// resource's scope and answers 403 LinkedAuthorizationFailed when the
// caller lacks it. Each resource type declares its references as Links;
// the router checks every declared reference of every PUT and PATCH body
// before the handler runs, so no provider can forget one. The grants of
// the request's auxiliary tokens (Caller.Auxiliary: principals of other
// tenants) count too: a reference to another tenant's resource is
// authorized by a token of that tenant, as in ARM.

// LinkKind is what holding a link's action decides.
type LinkKind int

const (
	// LinkRequired references need the action: without it the write is
	// refused with LinkedAuthorizationFailed.
	LinkRequired LinkKind = iota
	// LinkApproval references (a private endpoint's connection to a
	// private-link resource) are never refused: the action decides
	// whether the connection is approved at once or waits, Pending, for
	// the resource's owner. The provider asks Request.LinkAllowed.
	LinkApproval
)

// ApprovalAction is the action, on a private-link resource, that lets a
// caller's private endpoint connections to it be approved at once, as a
// Link's Action suffix: the resource's type comes before it.
const ApprovalAction = "/privateEndpointConnectionsApproval/action"

// Link declares one reference a resource type's body may hold.
type Link struct {
	// Path is where the reference is in a request body: property names
	// joined by dots, "[]" after an array's name for each of its elements,
	// ending in the property that holds the referenced ID, e.g.
	// "properties.ipConfigurations[].properties.subnet.id".
	Path string
	// Type is the type of the referenced resource, e.g.
	// "Microsoft.Network/virtualNetworks/subnets"; "" for any type (the
	// targets of private endpoints).
	Type string
	// Action is checked on the referenced resource's ID. One that starts
	// with "/" follows the referenced resource's own type (ApprovalAction).
	Action string
	Kind   LinkKind
}

// ActionOn is the action the link needs on the resource ref.
func (l Link) ActionOn(ref ResourceID) string {
	if strings.HasPrefix(l.Action, "/") {
		return ref.Type() + l.Action
	}
	return l.Action
}

// The linked actions Azure checks for the references privlink resolves.
const (
	JoinSubnetAction         = "Microsoft.Network/virtualNetworks/subnets/join/action"
	JoinNSGAction            = "Microsoft.Network/networkSecurityGroups/join/action"
	JoinRouteTableAction     = "Microsoft.Network/routeTables/join/action"
	JoinASGAction            = "Microsoft.Network/applicationSecurityGroups/joinIpConfiguration/action"
	JoinASGRuleAction        = "Microsoft.Network/applicationSecurityGroups/joinNetworkSecurityRule/action"
	JoinPublicIPAction       = "Microsoft.Network/publicIPAddresses/join/action"
	JoinNatGatewayAction     = "Microsoft.Network/natGateways/join/action"
	JoinDDoSPlanAction       = "Microsoft.Network/ddosProtectionPlans/join/action"
	JoinPrivateZoneAction    = "Microsoft.Network/privateDnsZones/join/action"
	JoinVirtualNetworkAction = "Microsoft.Network/virtualNetworks/join/action"
	// JoinLBPoolAction is checked on a load balancer's backend address
	// pool that a NIC's ipConfiguration joins.
	JoinLBPoolAction = "Microsoft.Network/loadBalancers/backendAddressPools/join/action"
)

// LinkedRefs returns the resource IDs that body holds at the link's path,
// with the JSON path of each (array indexes filled in, e.g.
// "properties.ipConfigurations[1].properties.subnet.id"). Values that are
// not strings, and empty strings, are skipped: the provider's validation
// answers them.
func (l Link) LinkedRefs(body any) []LinkedRef {
	var out []LinkedRef
	var walk func(v any, segs []string, at string)
	walk = func(v any, segs []string, at string) {
		if len(segs) == 0 {
			if s, ok := v.(string); ok && strings.TrimSpace(s) != "" {
				out = append(out, LinkedRef{Path: at, Raw: s})
			}
			return
		}
		name, each := strings.CutSuffix(segs[0], "[]")
		obj, ok := v.(map[string]any)
		if !ok {
			return
		}
		child, ok := lookupFold(obj, name)
		if !ok {
			return
		}
		next := join(at, name)
		if !each {
			walk(child, segs[1:], next)
			return
		}
		arr, _ := child.([]any)
		for i, el := range arr {
			walk(el, segs[1:], next+"["+strconv.Itoa(i)+"]")
		}
	}
	walk(body, strings.Split(l.Path, "."), "")
	return out
}

// LinkedRef is one reference found in a body.
type LinkedRef struct {
	Path string // with array indexes
	Raw  string // the ID as sent
}

func join(at, name string) string {
	if at == "" {
		return name
	}
	return at + "." + name
}

// lookupFold finds a JSON property by name, ignoring case as
// encoding/json does when it decodes into a struct.
func lookupFold(obj map[string]any, name string) (any, bool) {
	if v, ok := obj[name]; ok {
		return v, true
	}
	for k, v := range obj {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

// checkLinks refuses a write whose body references a resource through a
// required link without the link's action on that resource.
func checkLinks(t *ResourceType, req *Request, writeAction string) error {
	if len(t.Links) == 0 || len(req.Body) == 0 {
		return nil
	}
	var body any
	if json.Unmarshal(req.Body, &body) != nil {
		return nil // the handler answers a malformed body
	}
	var missing []string
	var scopes []string
	var target string
	for _, l := range t.Links {
		if l.Kind != LinkRequired {
			continue
		}
		for _, ref := range l.LinkedRefs(body) {
			id, err := ParseID(strings.TrimSpace(ref.Raw))
			if err != nil {
				continue // not an ID: the provider's validation says so
			}
			action := l.ActionOn(id)
			if req.Caller.linkAllowed(action, id.String()) {
				continue
			}
			if target == "" {
				target = ref.Path
			}
			missing = append(missing, action)
			scopes = append(scopes, id.String())
		}
	}
	if len(missing) == 0 {
		return nil
	}
	c := req.Caller
	return Errorf(http.StatusForbidden, "LinkedAuthorizationFailed",
		"The client '%s' with object id '%s' has permission to perform action '%s' on scope '%s'; however, it does not have permission to perform action(s) '%s' on the linked scope(s) '%s' (respectively) or the linked scope(s) are invalid. Ask an Owner of the linked scope for a role that grants it (Network Contributor, Contributor or Owner).",
		c.ClientID, c.ObjectID, writeAction, req.ID, strings.Join(missing, ","), strings.Join(scopes, ",")).WithTarget(target)
}

// LinkAllowed reports whether the caller holds link's action on ref: for a
// LinkApproval link, whether a connection to ref is approved at once.
func (r *Request) LinkAllowed(l Link, ref ResourceID) bool {
	return r.Caller.linkAllowed(l.ActionOn(ref), ref.String())
}
