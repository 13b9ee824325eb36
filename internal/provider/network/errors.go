package network

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/privlink/privlink/internal/arm"
)

// Azure's error codes for the rules this provider enforces. Where Azure's
// code for a situation is known (from its documentation, SDK error lists or
// errors quoted in public issues) it is used; the others are marked.
const (
	codeInvalidPrefixFormat   = "InvalidAddressPrefixFormat"
	codeInvalidCIDR           = "InvalidCIDRNotation"
	codeInvalidPrefix         = "NetcfgInvalidIPAddressPrefix" // reserved or overlapping address space
	codeInvalidSubnet         = "NetcfgInvalidSubnet"
	codeSubnetOutsideVNet     = "NetcfgSubnetRangeOutsideVnet"
	codeSubnetsOverlap        = "NetcfgSubnetRangesOverlap"
	codeSubnetInUse           = "InUseSubnetCannotBeDeleted"
	codeNSGInUse              = "InUseNetworkSecurityGroupCannotBeDeleted"
	codeRouteTableInUse       = "InUseRouteTableCannotBeDeleted"
	codeASGInUse              = "InUseApplicationSecurityGroupCannotBeDeleted" // by analogy; Azure's code unverified
	codeRuleConflict          = "SecurityRuleConflict"
	codeRulePriority          = "SecurityRuleInvalidPriority"
	codeRulePortRange         = "SecurityRuleInvalidPortRange"
	codeRulePortRanges        = "SecurityRuleParameterContainsInvalidPortRanges"
	codeRuleAddressPrefix     = "SecurityRuleInvalidAddressPrefix"
	codeRuleUnsupportedValue  = "SecurityRuleParameterContainsUnsupportedValue"
	codeRouteConflict         = "RouteConflict" // by analogy; Azure's code unverified
	codeIPNotInSubnet         = "PrivateIPAddressNotInSubnet"
	codeIPReserved            = "PrivateIPAddressInReservedRange"
	codeIPAllocated           = "PrivateIPAddressIsAllocated"
	codeSubnetFull            = "SubnetIsFull"
	codeInvalidReference      = "InvalidResourceReference"
	codeLinkedInvalidID       = "LinkedInvalidPropertyId"
	codeManagedNIC            = "CannotModifyNicAttachedToPrivateEndpoint"
	codeMissingParameter      = "MissingRequiredParameter"
	codeInvalidRequestFormat  = "InvalidRequestFormat"
	codeInvalidParameter      = "InvalidParameter"
	codeChildNotFound         = "NotFound"
	codeUnsupportedInPrivlink = "FeatureNotSupported" // privlink's own: a property Azure has and privlink does not serve
)

func badRequest(code, target, format string, args ...any) *arm.Error {
	return arm.BadRequest(code, target, format, args...)
}

func errMissing(target, what string) error {
	return badRequest(codeMissingParameter, target, "%s is required: set %s.", what, target)
}

func errInvalid(target, format string, args ...any) error {
	return badRequest(codeInvalidParameter, target, format, args...)
}

// errEnum answers a value outside an enum, naming the allowed values.
func errEnum(target, value string, allowed []string) error {
	return badRequest(codeInvalidRequestFormat, target,
		"The value '%s' of %s is not valid. Allowed values: %s.", value, target, strings.Join(allowed, ", "))
}

func errUnsupported(target, format string, args ...any) error {
	return badRequest(codeUnsupportedInPrivlink, target, format, args...)
}

// errChildNotFound is the 404 Azure gives for a missing child resource.
func errChildNotFound(id arm.ResourceID) error {
	return arm.Errorf(http.StatusNotFound, codeChildNotFound, "Resource %s not found.", id)
}

// errInUse lists who holds a resource that cannot go.
func errInUse(code, kind string, id arm.ResourceID, users []string, advice string) error {
	return badRequest(code, "", "%s %s cannot be deleted because it is in use by the following resources: %s. %s",
		kind, id, strings.Join(users, ", "), advice)
}

func errSubnetInUse(subnet arm.ResourceID, users []string) error {
	return badRequest(codeSubnetInUse, "",
		"Subnet %s is in use by %s and cannot be deleted. In order to delete the subnet, delete all the resources within the subnet. See aka.ms/deletesubnet.",
		subnet.Name(), strings.Join(users, ", "))
}

// errRefNotFound is Azure's answer to a reference to a missing resource.
func errRefNotFound(target, ref string, referrer arm.ResourceID) error {
	return badRequest(codeInvalidReference, target,
		"Resource %s referenced by resource %s was not found. Please make sure that the referenced resource exists, and that both resources are in the same region.",
		ref, referrer)
}

func errRefLocation(target, ref, refLoc string, referrer arm.ResourceID, loc string) error {
	return badRequest(codeInvalidReference, target,
		"Resource %s (in %s) referenced by resource %s (in %s) must be in the same region. Create them in one region.",
		ref, refLoc, referrer, loc)
}

func errLinkedID(target, ref, want string) error {
	return badRequest(codeLinkedInvalidID, target,
		"Property id '%s' at path '%s' is invalid. Expect the fully qualified ID of a %s, e.g. /subscriptions/{subscriptionId}/resourceGroups/{group}/providers/%s/{name}.",
		ref, target, want, want)
}

func errManagedNIC(id arm.ResourceID, pe, verb string) error {
	return badRequest(codeManagedNIC, "",
		"Network interface %s is attached to private endpoint %s and can not be %s by user. It is managed by the private endpoint: change or delete the private endpoint instead.",
		id, pe, verb)
}

// plural formats "1 thing" / "2 things".
func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
