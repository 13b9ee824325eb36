// Package authorization serves Microsoft.Authorization: role assignments at
// subscription, resource group and resource scope, and the built-in role
// definitions. The identity service keeps the assignments and evaluates
// them; this package is their ARM face.
package authorization

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/identity"
	"github.com/privlink/privlink/internal/store"
)

// Versions are those the Azure SDKs and the az CLI send for
// Microsoft.Authorization.
var Versions = arm.NewVersionTable("2022-04-01", "2020-10-01-preview", "2020-04-01-preview", "2018-09-01-preview", "2018-01-01-preview", "2015-07-01")

// Provider serves Microsoft.Authorization.
type Provider struct {
	ids *identity.Service
}

// New returns the provider.
func New(ids *identity.Service) *Provider { return &Provider{ids: ids} }

// Types returns the resource types this provider serves.
func (p *Provider) Types() []*arm.ResourceType {
	return []*arm.ResourceType{
		{Type: "Microsoft.Authorization/roleAssignments", APIVersions: Versions.All(), Extension: true,
			Get: p.getAssignment, Put: p.putAssignment, Delete: p.deleteAssignment, List: p.listAssignments},
		{Type: "Microsoft.Authorization/roleDefinitions", APIVersions: Versions.All(), Extension: true,
			Get: p.getDefinition, List: p.listDefinitions},
	}
}

// scopeOf is the scope an assignment or definition URL hangs off.
func scopeOf(id arm.ResourceID) string {
	if id.Scope != nil {
		return id.Scope.String()
	}
	return arm.ResourceID{Subscription: id.Subscription, ResourceGroup: id.ResourceGroup}.String()
}

// scopeExists answers 404 when an assignment's resource group or resource
// scope has no document. It runs in the transaction that writes the
// assignment: a scope deleted meanwhile takes its assignments with it (see
// arm.WithScopeHooks), so one written after that must be refused.
func scopeExists(id arm.ResourceID) func(tx store.Tx) error {
	return func(tx store.Tx) error {
		if id.Scope == nil && id.ResourceGroup == "" {
			return nil // a subscription: identity checks it
		}
		ok, err := arm.ScopeExists(tx, scopeOf(id))
		switch {
		case err != nil:
			return err
		case ok:
			return nil
		case id.Scope == nil:
			return arm.Errorf(http.StatusNotFound, "ResourceGroupNotFound", "Resource group '%s' could not be found.", id.ResourceGroup)
		}
		return arm.NotFound(*id.Scope)
	}
}

func (p *Provider) putAssignment(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in struct {
		Properties *struct {
			RoleDefinitionID string `json:"roleDefinitionId"`
			PrincipalID      string `json:"principalId"`
			PrincipalType    string `json:"principalType"`
			Description      string `json:"description"`
		} `json:"properties"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.Properties == nil {
		return nil, arm.InvalidParameter("properties", "The request body needs properties with roleDefinitionId and principalId.")
	}
	if in.Properties.RoleDefinitionID == "" {
		return nil, arm.InvalidParameter("properties.roleDefinitionId", "roleDefinitionId is required: the ID of a role definition, e.g. /subscriptions/{id}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7 (Reader).")
	}
	if in.Properties.PrincipalID == "" {
		return nil, arm.InvalidParameter("properties.principalId", "principalId is required: the object ID of the principal to grant the role to.")
	}
	ra, err := p.ids.CreateRoleAssignment(ctx, identity.RoleAssignment{
		Name: r.ID.Name(), Scope: scopeOf(r.ID), RoleDefinitionID: in.Properties.RoleDefinitionID,
		PrincipalID: in.Properties.PrincipalID, PrincipalType: in.Properties.PrincipalType,
		Description: in.Properties.Description, CreatedBy: r.Caller.ObjectID,
	}, scopeExists(r.ID))
	if err != nil {
		return nil, toARM(err)
	}
	return &arm.Response{Status: http.StatusCreated, Body: ra.ARMJSON()}, nil
}

func (p *Provider) getAssignment(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	ra, err := p.ids.GetRoleAssignment(ctx, scopeOf(r.ID), r.ID.Name())
	if err != nil {
		return nil, notFoundAssignment(err, r.ID)
	}
	return arm.OK(ra.ARMJSON()), nil
}

func (p *Provider) deleteAssignment(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	ra, err := p.ids.GetRoleAssignment(ctx, scopeOf(r.ID), r.ID.Name())
	if errors.Is(err, identity.ErrNotFound) {
		return &arm.Response{Status: http.StatusNoContent}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := p.ids.DeleteRoleAssignment(ctx, scopeOf(r.ID), r.ID.Name()); err != nil && !errors.Is(err, identity.ErrNotFound) {
		return nil, toARM(err)
	}
	return arm.OK(ra.ARMJSON()), nil
}

// listAssignments lists the assignments that apply at the scope and those
// below it, or only those of one principal with $filter=principalId eq
// '{id}' (as az uses).
func (p *Provider) listAssignments(ctx context.Context, r *arm.Request) ([]any, error) {
	filter := r.HTTP.URL.Query().Get("$filter")
	atScope := strings.Contains(filter, "atScope()")
	// As ARM: the assignments that apply at the scope (inherited from
	// above, and at it), plus those below it unless atScope() is asked.
	inherited, err := p.ids.ListInheritedRoleAssignments(ctx, scopeOf(r.ID))
	if err != nil {
		return nil, err
	}
	ras, err := p.ids.ListRoleAssignments(ctx, scopeOf(r.ID), !atScope)
	if err != nil {
		return nil, err
	}
	ras = append(inherited, ras...)
	principal := filterValue(filter, "principalId")
	out := make([]any, 0, len(ras))
	for _, ra := range ras {
		if principal != "" && !strings.EqualFold(ra.PrincipalID, principal) {
			continue
		}
		out = append(out, ra.ARMJSON())
	}
	return out, nil
}

func (p *Provider) getDefinition(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	rd, ok := identity.RoleDefinitionByID(r.ID.Name())
	if !ok {
		return nil, arm.Errorf(http.StatusNotFound, "RoleDefinitionDoesNotExist", "The role definition '%s' does not exist.", r.ID.Name())
	}
	return arm.OK(rd.ARMJSON(scopeOf(r.ID))), nil
}

// listDefinitions lists the built-in roles, or one by $filter=roleName eq 'X'.
func (p *Provider) listDefinitions(ctx context.Context, r *arm.Request) ([]any, error) {
	name := filterValue(r.HTTP.URL.Query().Get("$filter"), "roleName")
	var out []any
	for _, rd := range identity.BuiltInRoleDefinitions() {
		if name != "" && !strings.EqualFold(rd.RoleName, name) {
			continue
		}
		out = append(out, rd.ARMJSON(scopeOf(r.ID)))
	}
	return out, nil
}

// filterValue extracts v from an OData filter "field eq 'v'".
func filterValue(filter, field string) string {
	i := strings.Index(strings.ToLower(filter), strings.ToLower(field)+" eq '")
	if i < 0 {
		return ""
	}
	rest := filter[i+len(field)+5:]
	if j := strings.IndexByte(rest, '\''); j >= 0 {
		return rest[:j]
	}
	return ""
}

func notFoundAssignment(err error, id arm.ResourceID) error {
	if errors.Is(err, identity.ErrNotFound) {
		return arm.Errorf(http.StatusNotFound, "RoleAssignmentNotFound", "The role assignment '%s' is not found.", id.Name())
	}
	return toARM(err)
}

func toARM(err error) error {
	if status, code, msg, ok := identity.AsError(err); ok {
		return &arm.Error{Status: status, Code: code, Message: msg}
	}
	return err
}
