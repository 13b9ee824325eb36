package network

import (
	"strings"

	"github.com/privlink/privlink/internal/arm"
)

// header is the part of a stored document that references need.
type header struct {
	ID       string `json:"id"`
	Location string `json:"location"`
}

// resolved is a referenced resource that exists.
type resolved struct {
	ID       arm.ResourceID // parsed from the stored ID: canonical casing
	Location string         // the resource's (for a child, its parent's) location
}

// String is the canonical ID.
func (r resolved) String() string { return r.ID.String() }

// resolve checks a {"id": ...} reference made by referrer at target (the
// JSON path of the id, e.g. "properties.subnet.id"): it must be the full ID
// of a resource of type want in the referrer's subscription, and that
// resource must exist. A child resource reports its top-level ancestor's
// location.
func resolve(r arm.Reader, referrer arm.ResourceID, target string, ref *string, want string) (resolved, error) {
	raw := strings.TrimSpace(str(ref))
	id, err := arm.ParseID(raw)
	if raw == "" || err != nil || id.Scope != nil || id.IsCollection() || len(id.Names) == 0 ||
		id.ResourceGroup == "" || !strings.EqualFold(id.Type(), want) {
		return resolved{}, errLinkedID(target, raw, want)
	}
	if !strings.EqualFold(id.Subscription, referrer.Subscription) {
		return resolved{}, errOtherSubscription(target, raw, referrer)
	}
	var h header
	ok, err := arm.Load(r, id, &h)
	if err != nil {
		return resolved{}, err
	}
	if !ok {
		return resolved{}, errRefNotFound(target, raw, referrer)
	}
	canon, err := arm.ParseID(h.ID)
	if err != nil {
		canon = id
	}
	res := resolved{ID: canon, Location: h.Location}
	if len(id.Types) > 1 { // a child: the location is the top-level resource's
		top := canon
		top.Types, top.Names = top.Types[:1], top.Names[:1]
		var th header
		if _, err := arm.Load(r, top, &th); err != nil {
			return resolved{}, err
		}
		res.Location = th.Location
	}
	return res, nil
}

// errOtherSubscription refuses a reference to a resource of another
// subscription than the referrer's.
func errOtherSubscription(target, raw string, referrer arm.ResourceID) error {
	return badRequest(codeInvalidReference, target,
		"Resource %s referenced by resource %s is in another subscription; privlink resolves references within one subscription. Use a resource of subscription %s.",
		raw, referrer, referrer.Subscription)
}

// resolveSameRegion is resolve plus Azure's rule that network resources
// reference only resources in their own region.
func resolveSameRegion(r arm.Reader, referrer arm.ResourceID, location, target string, ref *string, want string) (resolved, error) {
	res, err := resolve(r, referrer, target, ref, want)
	if err != nil {
		return res, err
	}
	if normLocation(res.Location) != normLocation(location) {
		return res, errRefLocation(target, res.String(), res.Location, referrer, location)
	}
	return res, nil
}

// The references each type's body may hold, and the linked action the
// router checks on each (arm.Link). A reference resolved here must be
// declared there: the linked-authorization sweep (daemon tests) sends
// every reference the SDK's model has and fails on one that is stored
// without its check.
var (
	subnetLinks = []arm.Link{
		{Path: "properties.networkSecurityGroup.id", Type: typeNSG, Action: arm.JoinNSGAction},
		{Path: "properties.routeTable.id", Type: typeRouteTable, Action: arm.JoinRouteTableAction},
		{Path: "properties.natGateway.id", Type: "Microsoft.Network/natGateways", Action: arm.JoinNatGatewayAction},
	}
	vnetLinks = append(prefixLinks("properties.subnets[].", subnetLinks),
		arm.Link{Path: "properties.ddosProtectionPlan.id", Type: "Microsoft.Network/ddosProtectionPlans", Action: arm.JoinDDoSPlanAction})
	ruleLinks = []arm.Link{
		{Path: "properties.sourceApplicationSecurityGroups[].id", Type: typeASG, Action: arm.JoinASGRuleAction},
		{Path: "properties.destinationApplicationSecurityGroups[].id", Type: typeASG, Action: arm.JoinASGRuleAction},
	}
	nsgLinks = prefixLinks("properties.securityRules[].", ruleLinks)
	nicLinks = []arm.Link{
		{Path: "properties.networkSecurityGroup.id", Type: typeNSG, Action: arm.JoinNSGAction},
		{Path: "properties.ipConfigurations[].properties.subnet.id", Type: typeSubnet, Action: arm.JoinSubnetAction},
		{Path: "properties.ipConfigurations[].properties.applicationSecurityGroups[].id", Type: typeASG, Action: arm.JoinASGAction},
		{Path: "properties.ipConfigurations[].properties.publicIPAddress.id", Type: "Microsoft.Network/publicIPAddresses", Action: arm.JoinPublicIPAction},
		{Path: "properties.ipConfigurations[].properties.loadBalancerBackendAddressPools[].id", Type: typeLBPool, Action: arm.JoinLBPoolAction},
	}
	lbLinks = []arm.Link{
		{Path: "properties.frontendIPConfigurations[].properties.subnet.id", Type: typeSubnet, Action: arm.JoinSubnetAction},
	}
	// endpointTargetLink is an endpoint's automatic connection: a caller
	// holding the target's approval action is approved at once.
	endpointTargetLink = arm.Link{Path: "properties.privateLinkServiceConnections[].properties.privateLinkServiceId", Action: arm.ApprovalAction, Kind: arm.LinkApproval}
	endpointLinks      = []arm.Link{
		{Path: "properties.subnet.id", Type: typeSubnet, Action: arm.JoinSubnetAction},
		{Path: "properties.applicationSecurityGroups[].id", Type: typeASG, Action: arm.JoinASGAction},
		endpointTargetLink,
		// A manual request always waits for the owner, whatever the
		// caller may do on the target.
		{Path: "properties.manualPrivateLinkServiceConnections[].properties.privateLinkServiceId", Action: arm.ApprovalAction, Kind: arm.LinkApproval},
	}
	zoneGroupLinks = []arm.Link{
		{Path: "properties.privateDnsZoneConfigs[].properties.privateDnsZoneId", Type: "Microsoft.Network/privateDnsZones", Action: arm.JoinPrivateZoneAction},
	}
)

// prefixLinks returns links with their paths under prefix: the links of a
// child type as they appear inline in its parent's body.
func prefixLinks(prefix string, links []arm.Link) []arm.Link {
	out := make([]arm.Link, len(links))
	for i, l := range links {
		l.Path = prefix + l.Path
		out[i] = l
	}
	return out
}
