package network

import (
	"net/http"
	"strings"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/provider/privatelink"
)

// Azure's error codes for the rules this provider enforces, all with HTTP
// 400 (404 for NotFound). Where Azure's code for a situation is known it is
// used; the source is noted. "By analogy" marks a code chosen to fit
// Azure's naming where its real one could not be confirmed.
const (
	// Errors quoted in terraform-provider-azurerm and azure-service-operator
	// issues ("Address prefix X of resource Y is not formatted correctly").
	codeInvalidPrefixFormat = "InvalidAddressPrefixFormat"
	// "... has an invalid CIDR notation. For the given prefix length, the
	// address prefix should be ..." (azure-service-operator errhelp; az labs).
	codeInvalidCIDR = "InvalidCIDRNotation"
	// A real Netcfg code (azure-service-operator errhelp); its use for a
	// reserved or overlapping address space is by analogy.
	codeInvalidPrefix = "NetcfgInvalidIPAddressPrefix"
	// "Subnet 'x' is not valid in virtual network 'y'" (azure-cli #28097);
	// used for a too small subnet and a resize under a NIC.
	codeInvalidSubnet = "NetcfgInvalidSubnet"
	// MicrosoftDocs/azure-docs PR #123869 quotes both messages.
	codeSubnetOutsideVNet = "NetcfgSubnetRangeOutsideVnet"
	codeSubnetsOverlap    = "NetcfgSubnetRangesOverlap"
	// Reference §5; terraform-provider-azurerm #334, nav-arm-templates #161.
	codeSubnetInUse = "InUseSubnetCannotBeDeleted"
	// pulumi-azure-native #3051; AKS RP's armerror code list.
	codeNSGInUse = "InUseNetworkSecurityGroupCannotBeDeleted"
	// AKS RP's armerror code list (resourceTypeClientErrorCodes).
	codeRouteTableInUse = "InUseRouteTableCannotBeDeleted"
	codeASGInUse        = "InUseApplicationSecurityGroupCannotBeDeleted" // by analogy
	// aks-engine #2106, terraform-provider-azurerm #11137.
	codeRuleConflict = "SecurityRuleConflict"
	// "Security rule has invalid Priority. Value provided: 50 Allowed range
	// 100-4096." and "... invalid Port range ..." (az network nsg outputs).
	codeRulePriority  = "SecurityRuleInvalidPriority"
	codeRulePortRange = "SecurityRuleInvalidPortRange"
	// "*" in a port range list (terraform module comments quoting Azure).
	codeRulePortRanges = "SecurityRuleParameterContainsInvalidPortRanges"
	// terraform-provider-azurerm #5617 quotes both.
	codeRuleAddressPrefix    = "SecurityRuleInvalidAddressPrefix"
	codeRuleUnsupportedValue = "SecurityRuleParameterContainsUnsupportedValue"
	codeRouteConflict        = "RouteConflict" // by analogy
	// An ASG's members in two virtual networks (asgnet.go): Azure's rule
	// is documented, its code could not be confirmed; by analogy.
	codeASGNetwork = "ApplicationSecurityGroupsNotInSameVirtualNetwork"
	// Azure's "common deployment errors" page (MicrosoftDocs/azure-docs).
	codeIPNotInSubnet = "PrivateIPAddressNotInSubnet"
	codeIPReserved    = "PrivateIPAddressInReservedRange"
	// acs-engine-terraform #10 quotes the message.
	codeIPAllocated = "PrivateIPAddressIsAllocated"
	// azure-docs #88211, karpenter-provider-azure #734.
	codeSubnetFull = "SubnetIsFull"
	// codeNoIPv4Prefix: an IPv4 configuration in a subnet with IPv6
	// prefixes only.
	codeNoIPv4Prefix = "SubnetWithoutIPv4AddressPrefix"
	// Azure's common deployment errors; LinkedInvalidPropertyId is ARM's
	// code for a malformed ID in a reference.
	codeInvalidReference = "InvalidResourceReference"
	codeLinkedInvalidID  = "LinkedInvalidPropertyId"
	// azure-sdk-for-python #18911 (also for tags on a PE's NIC).
	codeManagedNIC = "CannotModifyNicAttachedToPrivateEndpoint"
	// Generic ARM codes.
	codeMissingParameter     = "MissingRequiredParameter"
	codeInvalidRequestFormat = "InvalidRequestFormat" // an enum value Azure cannot deserialize
	codeInvalidParameter     = "InvalidParameter"
	codeChildNotFound        = "NotFound" // reference §5: network child resources
	// privlink's own: a property Azure has and privlink does not serve.
	codeUnsupportedInPrivlink = "FeatureNotSupported"

	// Private endpoints. azure-cli #15136 quotes
	// MissingParameterOnPrivateLinkServiceConnection ("... is missing
	// required parameter 'group Id'"); a terraform-azurerm-container-apps
	// issue (#352) quotes OnlyOneGroupIdPermitted. The others are by
	// analogy with those two.
	codeMissingOnConnection = "MissingParameterOnPrivateLinkServiceConnection"
	codeOneGroupID          = "OnlyOneGroupIdPermitted"
	codeInvalidGroupID      = "InvalidGroupIdOnPrivateLinkServiceConnection"
	codeOneConnection       = "OnlyOnePrivateLinkServiceConnectionPermitted"
	codeEndpointImmutable   = "PrivateEndpointPropertyCannotBeChanged"
	codeDelegatedSubnet     = "PrivateEndpointCreationNotAllowedAsSubnetIsDelegated"
	codeOneZoneGroup        = "OnlyOnePrivateDnsZoneGroupPermitted"
	codeTooManyZoneConfigs  = "PrivateDnsZoneGroupHasTooManyZoneConfigs"
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
		"Property id '%s' at path '%s' is invalid. Expect the fully qualified ID of a %s: %s.",
		ref, target, want, exampleID(want))
}

// errTargetID is errLinkedID for a private endpoint's target, which may be
// of any kind of private-link resource.
func errTargetID(target, ref string, kinds *privatelink.Kinds) error {
	all := kinds.All()
	if len(all) == 1 {
		return errLinkedID(target, ref, all[0].Type)
	}
	var types []string
	for _, k := range all {
		types = append(types, k.Type)
	}
	return badRequest(codeLinkedInvalidID, target,
		"Property id '%s' at path '%s' is invalid. Expect the fully qualified ID of a private-link resource, one of: %s.",
		ref, target, strings.Join(types, ", "))
}

// exampleID renders the ID pattern of a resource type, e.g.
// /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/virtualNetworks/{virtualNetworkName}/subnets/{subnetName}.
func exampleID(typ string) string {
	parts := strings.Split(typ, "/")
	var b strings.Builder
	b.WriteString("/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/" + parts[0])
	for _, t := range parts[1:] {
		b.WriteString("/" + t + "/{" + strings.TrimSuffix(t, "s") + "Name}")
	}
	return b.String()
}

func errManagedNIC(id arm.ResourceID, pe, verb string) error {
	return badRequest(codeManagedNIC, "",
		"Network interface %s is attached to private endpoint %s and can not be %s by user. It is managed by the private endpoint: change or delete the private endpoint instead.",
		id, pe, verb)
}

// Private link services. PrivateLinkServiceCannotBeCreatedInSubnetThatHasNetworkPoliciesEnabled
// is quoted by terraform-provider-azurerm issue #25258 (with the message
// "Private link service {id} cannot be created in a subnet {id} since it
// has private link service network policies enabled."); the others are
// by analogy.
const (
	codePLSSubnetPolicies = "PrivateLinkServiceCannotBeCreatedInSubnetThatHasNetworkPoliciesEnabled"
	codeNotVisible        = "PrivateLinkServiceNotVisibleToSubscription"
	codeTooManyNATIPs     = "PrivateLinkServiceIpConfigurationsExceedLimit"
	codePrimaryNATIP      = "PrivateLinkServiceMustHaveOnePrimaryIpConfiguration"
	codeFrontendNotFound  = "InvalidResourceReference"
	codeNotStandardLB     = "PrivateLinkServiceRequiresStandardLoadBalancer"
	codeManagedServiceNIC = "CannotModifyNicAttachedToPrivateLinkService"
	// By analogy with PrivateEndpointNetworkPoliciesCannotBeEnabledOnPrivateEndpointSubnet
	// (quoted in MicrosoftDocs/azure-docs #39634).
	codePLSPoliciesInUse = "PrivateLinkServiceNetworkPoliciesCannotBeEnabledOnPrivateLinkServiceSubnet"
)
