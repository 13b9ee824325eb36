package identity

import (
	"strings"
	"time"
)

// GUIDs of the built-in role definitions (Azure's own).
const (
	OwnerRoleID              = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
	ContributorRoleID        = "b24988ac-6180-42a0-ab88-20f7382dd24c"
	ReaderRoleID             = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
	NetworkContributorRoleID = "4d97b98b-1d4f-4787-a291-c67834d212e7"
)

// Permission is one permissions entry of a role definition. Actions and
// NotActions are patterns in which "*" matches any run of characters;
// matching is case-insensitive.
type Permission struct {
	Actions        []string `json:"actions"`
	NotActions     []string `json:"notActions"`
	DataActions    []string `json:"dataActions"`
	NotDataActions []string `json:"notDataActions"`
}

// RoleDefinition is a built-in role.
type RoleDefinition struct {
	ID          string // GUID
	RoleName    string
	Description string
	Permissions []Permission
}

// builtInRoles are Azure's definitions (actions as Azure publishes them).
var builtInRoles = []RoleDefinition{
	{
		ID:          OwnerRoleID,
		RoleName:    "Owner",
		Description: "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
		Permissions: []Permission{{Actions: []string{"*"}}},
	},
	{
		ID:          ContributorRoleID,
		RoleName:    "Contributor",
		Description: "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, manage assignments in Azure Blueprints, or share image galleries.",
		Permissions: []Permission{{
			Actions: []string{"*"},
			NotActions: []string{
				"Microsoft.Authorization/*/Delete",
				"Microsoft.Authorization/*/Write",
				"Microsoft.Authorization/elevateAccess/Action",
				"Microsoft.Blueprint/blueprintAssignments/write",
				"Microsoft.Blueprint/blueprintAssignments/delete",
				"Microsoft.Compute/galleries/share/action",
			},
		}},
	},
	{
		ID:          ReaderRoleID,
		RoleName:    "Reader",
		Description: "View all resources, but does not allow you to make any changes.",
		Permissions: []Permission{{Actions: []string{"*/read"}}},
	},
	{
		ID:          NetworkContributorRoleID,
		RoleName:    "Network Contributor",
		Description: "Lets you manage networks, but not access to them.",
		Permissions: []Permission{{Actions: []string{
			"Microsoft.Authorization/*/read",
			"Microsoft.Insights/alertRules/*",
			"Microsoft.Network/*",
			"Microsoft.ResourceHealth/availabilityStatuses/read",
			"Microsoft.Resources/deployments/*",
			"Microsoft.Resources/subscriptions/resourceGroups/read",
			"Microsoft.Support/*",
		}}},
	},
}

var rolesByID = func() map[string]*RoleDefinition {
	m := make(map[string]*RoleDefinition, len(builtInRoles))
	for i := range builtInRoles {
		m[builtInRoles[i].ID] = &builtInRoles[i]
	}
	return m
}()

// BuiltInRoleDefinitions returns the built-in roles.
func BuiltInRoleDefinitions() []RoleDefinition {
	return append([]RoleDefinition(nil), builtInRoles...)
}

// RoleDefinitionByID finds a built-in role by its GUID or by any full role
// definition id ending in /providers/Microsoft.Authorization/roleDefinitions/{guid}
// (case-insensitive).
func RoleDefinitionByID(id string) (RoleDefinition, bool) {
	guid, ok := roleGUIDFromID(id)
	if !ok {
		return RoleDefinition{}, false
	}
	r, ok := rolesByID[guid]
	if !ok {
		return RoleDefinition{}, false
	}
	return *r, true
}

// RoleDefinitionByName finds a built-in role by roleName (case-insensitive).
func RoleDefinitionByName(name string) (RoleDefinition, bool) {
	for _, r := range builtInRoles {
		if strings.EqualFold(r.RoleName, name) {
			return r, true
		}
	}
	return RoleDefinition{}, false
}

const roleDefinitionsPath = "/providers/microsoft.authorization/roledefinitions/"

// roleGUIDFromID extracts the lowercase GUID from a GUID or a role
// definition id.
func roleGUIDFromID(id string) (string, bool) {
	if IsGUID(id) {
		return strings.ToLower(id), true
	}
	lower := strings.ToLower(id)
	i := strings.LastIndex(lower, roleDefinitionsPath)
	if i < 0 {
		return "", false
	}
	prefix, guid := lower[:i], lower[i+len(roleDefinitionsPath):]
	if !IsGUID(guid) {
		return "", false
	}
	if prefix != "" {
		if _, err := parseScope(prefix); err != nil {
			return "", false
		}
	}
	return guid, true
}

// Allows reports whether the role permits the control-plane action, e.g.
// "Microsoft.Network/virtualNetworks/write": some entry's Actions match and
// none of that entry's NotActions do.
func (r RoleDefinition) Allows(action string) bool {
	for _, p := range r.Permissions {
		if matchAny(p.Actions, action) && !matchAny(p.NotActions, action) {
			return true
		}
	}
	return false
}

func matchAny(patterns []string, action string) bool {
	for _, p := range patterns {
		if MatchAction(p, action) {
			return true
		}
	}
	return false
}

// MatchAction reports whether an Azure RBAC action pattern matches an
// action. Matching is case-insensitive and "*" matches any run of
// characters, "/" included, wherever it appears: "*/read" matches
// "Microsoft.Network/virtualNetworks/read", "Microsoft.Network/*" matches
// every Microsoft.Network action, "Microsoft.Authorization/*/Write" matches
// "Microsoft.Authorization/roleAssignments/write".
func MatchAction(pattern, action string) bool {
	p, a := strings.ToLower(pattern), strings.ToLower(action)
	// Iterative glob with single-star backtracking: linear in practice.
	pi, ai := 0, 0
	star, mark := -1, 0
	for ai < len(a) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, ai
			pi++
		case pi < len(p) && p[pi] == a[ai]:
			pi++
			ai++
		case star >= 0:
			pi = star + 1
			mark++
			ai = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// ARMRoleDefinition is the ARM JSON shape of a role definition.
type ARMRoleDefinition struct {
	ID         string                      `json:"id"`
	Name       string                      `json:"name"`
	Type       string                      `json:"type"`
	Properties ARMRoleDefinitionProperties `json:"properties"`
}

// ARMRoleDefinitionProperties are the properties of ARMRoleDefinition.
type ARMRoleDefinitionProperties struct {
	RoleName         string       `json:"roleName"`
	Type             string       `json:"type"`
	Description      string       `json:"description"`
	AssignableScopes []string     `json:"assignableScopes"`
	Permissions      []Permission `json:"permissions"`
	CreatedOn        time.Time    `json:"createdOn"`
	UpdatedOn        time.Time    `json:"updatedOn"`
	CreatedBy        *string      `json:"createdBy"`
	UpdatedBy        *string      `json:"updatedBy"`
}

// RoleDefinitionsType is the ARM resource type of role definitions.
const RoleDefinitionsType = "Microsoft.Authorization/roleDefinitions"

// builtInRolesEpoch is a fixed creation time for built-in roles, so that
// their JSON is stable.
var builtInRolesEpoch = time.Date(2015, 2, 2, 21, 55, 9, 0, time.UTC)

// RoleDefinitionID returns the full id of a role definition GUID at a
// scope: scope + "/providers/Microsoft.Authorization/roleDefinitions/" +
// guid, or the tenant-level form for the root scope "" or "/".
func RoleDefinitionID(scope, guid string) string {
	return strings.TrimSuffix(scope, "/") + "/providers/Microsoft.Authorization/roleDefinitions/" + guid
}

// ARMJSON renders the role definition as ARM does when asked at scope
// (e.g. "/subscriptions/{sub}"; "" or "/" for the tenant-level id).
func (r RoleDefinition) ARMJSON(scope string) ARMRoleDefinition {
	perms := make([]Permission, len(r.Permissions))
	for i, p := range r.Permissions {
		perms[i] = Permission{
			Actions:        nonNil(p.Actions),
			NotActions:     nonNil(p.NotActions),
			DataActions:    nonNil(p.DataActions),
			NotDataActions: nonNil(p.NotDataActions),
		}
	}
	return ARMRoleDefinition{
		ID:   RoleDefinitionID(scope, r.ID),
		Name: r.ID,
		Type: RoleDefinitionsType,
		Properties: ARMRoleDefinitionProperties{
			RoleName:         r.RoleName,
			Type:             "BuiltInRole",
			Description:      r.Description,
			AssignableScopes: []string{"/"},
			Permissions:      perms,
			CreatedOn:        builtInRolesEpoch,
			UpdatedOn:        builtInRolesEpoch,
		},
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return append([]string(nil), s...)
}
