package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/privlink/privlink/internal/store"
)

// PrincipalTypeServicePrincipal is the only principal type privlink has.
const PrincipalTypeServicePrincipal = "ServicePrincipal"

// RoleAssignmentsType is the ARM resource type of role assignments.
const RoleAssignmentsType = "Microsoft.Authorization/roleAssignments"

// RoleAssignment grants a role to a principal at a scope and below.
type RoleAssignment struct {
	// Name is the assignment's GUID, unique across privlink (Azure: unique
	// in the tenant, whatever the scope).
	Name string `json:"name"`
	// Scope is an ARM scope: "/", "/subscriptions/{s}",
	// "/subscriptions/{s}/resourceGroups/{rg}" or a resource id. Case is
	// preserved; comparisons ignore it.
	Scope string `json:"scope"`
	// RoleDefinitionID is the full role definition id; its last segment is
	// the role GUID.
	RoleDefinitionID string `json:"roleDefinitionId"`
	// PrincipalID is the principal's object id.
	PrincipalID   string    `json:"principalId"`
	PrincipalType string    `json:"principalType"`
	Description   string    `json:"description,omitempty"`
	CreatedOn     time.Time `json:"createdOn"`
	UpdatedOn     time.Time `json:"updatedOn"`
	// CreatedBy and UpdatedBy are object ids of the principals that wrote
	// the assignment.
	CreatedBy string `json:"createdBy,omitempty"`
	UpdatedBy string `json:"updatedBy,omitempty"`
}

// ID returns the assignment's ARM id.
func (ra RoleAssignment) ID() string {
	return roleAssignmentID(ra.Scope, ra.Name)
}

func roleAssignmentID(scope, name string) string {
	return strings.TrimSuffix(scope, "/") + "/providers/Microsoft.Authorization/roleAssignments/" + name
}

// RoleDefinitionGUID returns the role GUID (lowercase) of the assignment.
func (ra RoleAssignment) RoleDefinitionGUID() string {
	g, _ := roleGUIDFromID(ra.RoleDefinitionID)
	return g
}

// ARMRoleAssignment is the ARM JSON shape of a role assignment.
type ARMRoleAssignment struct {
	ID         string                      `json:"id"`
	Name       string                      `json:"name"`
	Type       string                      `json:"type"`
	Properties ARMRoleAssignmentProperties `json:"properties"`
}

// ARMRoleAssignmentProperties are the properties of ARMRoleAssignment.
type ARMRoleAssignmentProperties struct {
	RoleDefinitionID string    `json:"roleDefinitionId"`
	PrincipalID      string    `json:"principalId"`
	PrincipalType    string    `json:"principalType"`
	Scope            string    `json:"scope"`
	Description      *string   `json:"description"`
	Condition        *string   `json:"condition"`
	ConditionVersion *string   `json:"conditionVersion"`
	CreatedOn        time.Time `json:"createdOn"`
	UpdatedOn        time.Time `json:"updatedOn"`
	CreatedBy        *string   `json:"createdBy"`
	UpdatedBy        *string   `json:"updatedBy"`
}

// ARMJSON renders the assignment in ARM's shape.
func (ra RoleAssignment) ARMJSON() ARMRoleAssignment {
	opt := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	return ARMRoleAssignment{
		ID:   ra.ID(),
		Name: ra.Name,
		Type: RoleAssignmentsType,
		Properties: ARMRoleAssignmentProperties{
			RoleDefinitionID: ra.RoleDefinitionID,
			PrincipalID:      ra.PrincipalID,
			PrincipalType:    ra.PrincipalType,
			Scope:            ra.Scope,
			Description:      opt(ra.Description),
			CreatedOn:        ra.CreatedOn,
			UpdatedOn:        ra.UpdatedOn,
			CreatedBy:        opt(ra.CreatedBy),
			UpdatedBy:        opt(ra.UpdatedBy),
		},
	}
}

// scope is a parsed ARM scope: its path segments, lowercased for
// comparison. The root scope has no segments.
type scope []string

// parseScope checks that s is "/" or "/subscriptions/{id}[/...]" without
// empty segments (a trailing "/" is tolerated) and returns its lowercased
// segments.
func parseScope(s string) (scope, error) {
	if !strings.HasPrefix(s, "/") {
		return nil, fmt.Errorf("scope %q does not start with /", s)
	}
	t := strings.TrimSuffix(s[1:], "/")
	if t == "" {
		return scope{}, nil
	}
	segs := strings.Split(strings.ToLower(t), "/")
	for _, seg := range segs {
		if seg == "" {
			return nil, fmt.Errorf("scope %q has an empty segment", s)
		}
	}
	if segs[0] == "providers" {
		// Tenant-level provider scopes such as
		// /providers/Microsoft.Management/managementGroups/x: privlink
		// has no such resources but ids under them are well formed.
		return segs, nil
	}
	if segs[0] != "subscriptions" || len(segs) < 2 {
		return nil, fmt.Errorf("scope %q is neither / nor under /subscriptions/{id}", s)
	}
	return segs, nil
}

// covers reports whether an assignment at a applies at target: a equals
// target or is its ancestor, segment by segment.
func (a scope) covers(target scope) bool {
	if len(a) > len(target) {
		return false
	}
	for i := range a {
		if a[i] != target[i] {
			return false
		}
	}
	return true
}

// subscription returns the subscription id of the scope, or "".
func (a scope) subscription() string {
	if len(a) >= 2 && a[0] == "subscriptions" {
		return a[1]
	}
	return ""
}

// keyPrefix is the rbacscope index prefix of every assignment at or below
// the scope.
func (a scope) keyPrefix() string {
	if len(a) == 0 {
		return prefixRBACScope + "/"
	}
	return prefixRBACScope + "/" + strings.Join(a, "/") + "/"
}

func scopeIndexKey(ra RoleAssignment) string {
	return prefixRBACScope + strings.ToLower(ra.ID())
}

func principalIndexKey(ra RoleAssignment) string {
	return prefixRBAC + strings.ToLower(ra.PrincipalID) + "/" + strings.ToLower(ra.Name)
}

// assignmentKeys are the three keys an assignment is stored under: by
// name, by principal (Grants) and by scope (lists, and deletion with the
// scope).
func assignmentKeys(ra RoleAssignment) []string {
	return []string{prefixAssignments + ra.Name, principalIndexKey(ra), scopeIndexKey(ra)}
}

// deleteAssignmentTx removes ra under all its keys.
func deleteAssignmentTx(tx store.Tx, ra RoleAssignment) error {
	for _, key := range assignmentKeys(ra) {
		if err := tx.Delete(key); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete %s: %w", key, err)
		}
	}
	return nil
}

// DeleteRoleAssignmentsUnder deletes, in tx, every role assignment at
// scope or at a scope under it (whole segments: an assignment at group
// "adv2" is not under "adv"), with all its keys. It is the ScopeHook
// (arm.WithScopeHooks) by which assignments go with the resource or
// resource group they hang off, in the transaction that deletes it, as
// in Azure. A malformed scope is an error; the root scope is refused,
// since it would delete every assignment.
func DeleteRoleAssignmentsUnder(tx store.Tx, scope string) error {
	sc, err := parseScope(scope)
	if err != nil {
		return fmt.Errorf("identity: delete role assignments under %q: %w", scope, err)
	}
	if len(sc) == 0 {
		return errors.New("identity: delete role assignments under the root scope: refused")
	}
	kvs, err := tx.List(sc.keyPrefix())
	if err != nil {
		return fmt.Errorf("identity: list role assignments under %s: %w", scope, err)
	}
	for _, kv := range kvs {
		var ra RoleAssignment
		if err := json.Unmarshal(kv.Value, &ra); err != nil {
			return fmt.Errorf("identity: decode %s: %w", kv.Key, err)
		}
		if err := deleteAssignmentTx(tx, ra); err != nil {
			return fmt.Errorf("identity: %w", err)
		}
	}
	return nil
}

// PruneRoleAssignments deletes, in one transaction, the assignments whose
// scope exists reports gone, and returns how many went. The daemon runs it
// at start with arm.ScopeExists, so that assignments left behind by
// deletions made before scopes took their assignments with them (or by
// any other path) cannot come back to life when a resource of the same
// name is created.
func (s *Service) PruneRoleAssignments(ctx context.Context, exists func(r store.Tx, scope string) (bool, error)) (int, error) {
	var n int
	_, err := s.st.Txn(ctx, func(tx store.Tx) error {
		n = 0
		kvs, err := tx.List(prefixRBACScope + "/")
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			var ra RoleAssignment
			if err := json.Unmarshal(kv.Value, &ra); err != nil {
				return fmt.Errorf("decode %s: %w", kv.Key, err)
			}
			ok, err := exists(tx, ra.Scope)
			if err != nil {
				return fmt.Errorf("does scope %s exist: %w", ra.Scope, err)
			}
			if ok {
				continue
			}
			if err := deleteAssignmentTx(tx, ra); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("identity: prune role assignments: %w", err)
	}
	return n, nil
}

// CreateRoleAssignment validates and stores ra. Name must be a GUID, the
// role a built-in one, the principal an existing service principal of the
// scope's tenant (as in Entra ID: 400 PrincipalNotFound for a principal of
// another directory), the scope's subscription must exist. CreatedOn/UpdatedOn
// are set now; RoleDefinitionID is canonicalized to the scope's
// subscription. Re-creating an identical assignment (same name, scope,
// role, principal) returns the stored one; anything else that collides is
// an *Error (RoleAssignmentExists, RoleAssignmentUpdateNotPermitted).
//
// Each of checks runs in the transaction that writes the assignment, and
// an error from one refuses it: the ARM layer checks there that the
// scope's resource exists, so that an assignment cannot be written after
// a concurrent deletion of its scope took the others with it.
func (s *Service) CreateRoleAssignment(ctx context.Context, ra RoleAssignment, checks ...func(tx store.Tx) error) (RoleAssignment, error) {
	now := s.now().UTC()
	ra.CreatedOn, ra.UpdatedOn = now, now
	if ra.UpdatedBy == "" {
		ra.UpdatedBy = ra.CreatedBy
	}
	var out RoleAssignment
	_, err := s.st.Txn(ctx, func(tx store.Tx) error {
		for _, check := range checks {
			if err := check(tx); err != nil {
				return err
			}
		}
		r := ra
		existing, err := s.createRoleAssignmentTx(tx, &r)
		if err != nil {
			return err
		}
		if existing != nil {
			out = *existing
		} else {
			out = r
		}
		return nil
	})
	if err != nil {
		return RoleAssignment{}, fmt.Errorf("identity: create role assignment %s: %w", ra.Name, err)
	}
	return out, nil
}

// createRoleAssignmentTx validates *ra, canonicalizes it and writes it
// with its indexes. If an identical assignment exists it writes nothing
// and returns it.
func (s *Service) createRoleAssignmentTx(tx store.Tx, ra *RoleAssignment) (*RoleAssignment, error) {
	if !IsGUID(ra.Name) {
		return nil, armError(http.StatusBadRequest, CodeInvalidRoleAssignmentID,
			"The role assignment ID '%s' is not valid. The role assignment ID must be a GUID.", ra.Name)
	}
	ra.Name = strings.ToLower(ra.Name)
	ra.Scope = strings.TrimSuffix(ra.Scope, "/")
	if ra.Scope == "" {
		ra.Scope = "/"
	}
	sc, err := parseScope(ra.Scope)
	if err != nil {
		return nil, armError(http.StatusBadRequest, CodeInvalidScope, "The scope '%s' is not valid: %v.", ra.Scope, err)
	}
	// The tenant whose directory the principal must belong to.
	var tenantID string
	subID := sc.subscription()
	if subID != "" {
		var sub Subscription
		if err := txGetJSON(tx, prefixSubs+subID, &sub); errors.Is(err, ErrNotFound) {
			return nil, armError(http.StatusNotFound, CodeSubscriptionNotFound, "The subscription '%s' could not be found.", subID)
		} else if err != nil {
			return nil, err
		}
		tenantID = sub.TenantID
	}
	guid, ok := roleGUIDFromID(ra.RoleDefinitionID)
	if _, known := rolesByID[guid]; !ok || !known {
		return nil, armError(http.StatusBadRequest, CodeRoleDefinitionDoesNotExist,
			"The specified role definition with ID '%s' does not exist.", ra.RoleDefinitionID)
	}
	if subID != "" {
		ra.RoleDefinitionID = RoleDefinitionID("/subscriptions/"+subID, guid)
	} else {
		ra.RoleDefinitionID = RoleDefinitionID("/", guid)
	}
	ra.PrincipalID = strings.ToLower(ra.PrincipalID)
	var p principalRecord
	if !IsGUID(ra.PrincipalID) {
		return nil, armError(http.StatusBadRequest, CodePrincipalNotFound, "Principal %s does not exist in the directory %s.", ra.PrincipalID, tenantID)
	}
	// As in Entra ID, the principal must be of the scope's own directory:
	// one of another tenant is unknown there (Azure needs a guest account
	// for it). A scope outside every subscription has no directory to
	// check against.
	err = txGetJSON(tx, prefixPrincipals+ra.PrincipalID, &p)
	if errors.Is(err, ErrNotFound) || err == nil && tenantID != "" && !strings.EqualFold(p.TenantID, tenantID) {
		return nil, armError(http.StatusBadRequest, CodePrincipalNotFound,
			"Principal %s does not exist in the directory %s. Check that you have the correct principal ID.", ra.PrincipalID, tenantID)
	}
	if err != nil {
		return nil, err
	}
	if ra.PrincipalType == "" {
		ra.PrincipalType = PrincipalTypeServicePrincipal
	}
	if ra.PrincipalType != PrincipalTypeServicePrincipal {
		return nil, armError(http.StatusBadRequest, CodeUnmatchedPrincipalType,
			"The PrincipalId '%s' has type '%s', which is different from specified PrincipalType '%s'.",
			ra.PrincipalID, PrincipalTypeServicePrincipal, ra.PrincipalType)
	}

	// Same name: identical is idempotent, anything else is refused.
	var old RoleAssignment
	switch err := txGetJSON(tx, prefixAssignments+ra.Name, &old); {
	case err == nil:
		if strings.EqualFold(old.Scope, ra.Scope) && old.PrincipalID == ra.PrincipalID && old.RoleDefinitionGUID() == guid {
			return &old, nil
		}
		return nil, armError(http.StatusBadRequest, CodeRoleAssignmentUpdateNotPermitted,
			"Tenant ID, application ID, principal ID, and scope are not allowed to be updated.")
	case !errors.Is(err, ErrNotFound):
		return nil, err
	}
	// Same principal, role and scope under another name.
	kvs, err := tx.List(prefixRBAC + ra.PrincipalID + "/")
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		var o RoleAssignment
		if err := json.Unmarshal(kv.Value, &o); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		if strings.EqualFold(o.Scope, ra.Scope) && o.RoleDefinitionGUID() == guid {
			return nil, armError(http.StatusConflict, CodeRoleAssignmentExists, "The role assignment already exists. The ID of the existing role assignment is %s.", o.Name)
		}
	}
	for _, key := range assignmentKeys(*ra) {
		if err := txPutJSON(tx, key, ra); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// GetRoleAssignment returns the assignment name at scope, or ErrNotFound.
func (s *Service) GetRoleAssignment(ctx context.Context, scope, name string) (RoleAssignment, error) {
	var ra RoleAssignment
	err := getJSON(ctx, s.st, prefixRBACScope+strings.ToLower(roleAssignmentID(scope, name)), &ra)
	if err != nil {
		return RoleAssignment{}, fmt.Errorf("identity: role assignment %s at %s: %w", name, scope, err)
	}
	return ra, nil
}

// DeleteRoleAssignment deletes the assignment name at scope, or returns
// ErrNotFound.
func (s *Service) DeleteRoleAssignment(ctx context.Context, scope, name string) error {
	_, err := s.st.Txn(ctx, func(tx store.Tx) error {
		var ra RoleAssignment
		if err := txGetJSON(tx, prefixRBACScope+strings.ToLower(roleAssignmentID(scope, name)), &ra); err != nil {
			return err
		}
		return deleteAssignmentTx(tx, ra)
	})
	if err != nil {
		return fmt.Errorf("identity: delete role assignment %s at %s: %w", name, scope, err)
	}
	return nil
}

// ListRoleAssignments returns the assignments exactly at scope or, if
// atScopeAndBelow, at scope and at every scope under it. ARM's list at a
// scope also shows inherited assignments: add ListInheritedRoleAssignments.
// The result is sorted by id.
func (s *Service) ListRoleAssignments(ctx context.Context, scope string, atScopeAndBelow bool) ([]RoleAssignment, error) {
	sc, err := parseScope(scope)
	if err != nil {
		return nil, armError(http.StatusBadRequest, CodeInvalidScope, "The scope '%s' is not valid: %v.", scope, err)
	}
	prefix := sc.keyPrefix()
	if !atScopeAndBelow {
		prefix += "providers/microsoft.authorization/roleassignments/"
	}
	all, err := listJSON[RoleAssignment](ctx, s.st, prefix)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, ra := range all {
		rs, err := parseScope(ra.Scope)
		if err != nil {
			continue
		}
		if atScopeAndBelow && sc.covers(rs) || !atScopeAndBelow && len(rs) == len(sc) && sc.covers(rs) {
			out = append(out, ra)
		}
	}
	return out, nil
}

// ListInheritedRoleAssignments returns the assignments at the strict
// ancestors of scope (they apply at scope too), root first.
func (s *Service) ListInheritedRoleAssignments(ctx context.Context, scope string) ([]RoleAssignment, error) {
	sc, err := parseScope(scope)
	if err != nil {
		return nil, armError(http.StatusBadRequest, CodeInvalidScope, "The scope '%s' is not valid: %v.", scope, err)
	}
	var out []RoleAssignment
	for n := 0; n < len(sc); n++ {
		anc := "/" + strings.Join(sc[:n], "/")
		if _, err := parseScope(anc); err != nil {
			continue // "/subscriptions" is a path, not a scope
		}
		at, err := s.ListRoleAssignments(ctx, anc, false)
		if err != nil {
			return nil, err
		}
		out = append(out, at...)
	}
	return out, nil
}

// Grants is the set of role assignments of one principal, loaded once per
// request.
type Grants struct {
	principal   Principal
	assignments []grant
}

type grant struct {
	ra    RoleAssignment
	scope scope
	role  *RoleDefinition
}

// Grants loads the principal's role assignments. Assignments naming an
// unknown role or a malformed scope are ignored.
func (s *Service) Grants(ctx context.Context, p Principal) (*Grants, error) {
	if !IsGUID(p.ObjectID) {
		return nil, fmt.Errorf("identity: grants: principal object id %q is not a GUID", p.ObjectID)
	}
	ras, err := listJSON[RoleAssignment](ctx, s.st, prefixRBAC+strings.ToLower(p.ObjectID)+"/")
	if err != nil {
		return nil, fmt.Errorf("identity: grants of %s: %w", p.ObjectID, err)
	}
	g := &Grants{principal: p}
	for _, ra := range ras {
		sc, err := parseScope(ra.Scope)
		role := rolesByID[ra.RoleDefinitionGUID()]
		if err != nil || role == nil {
			s.log.Warn("ignoring unusable role assignment", "name", ra.Name, "scope", ra.Scope, "roleDefinitionId", ra.RoleDefinitionID)
			continue
		}
		g.assignments = append(g.assignments, grant{ra: ra, scope: sc, role: role})
	}
	return g, nil
}

// Principal returns the principal the grants belong to.
func (g *Grants) Principal() Principal { return g.principal }

// Assignments returns the principal's role assignments.
func (g *Grants) Assignments() []RoleAssignment {
	out := make([]RoleAssignment, len(g.assignments))
	for i, a := range g.assignments {
		out[i] = a.ra
	}
	return out
}

// Allowed reports whether some assignment at scope or at an ancestor of it
// (compared case-insensitively, whole segments) has a role permitting
// action, e.g. Allowed("Microsoft.Network/virtualNetworks/write",
// "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v").
// A malformed scope is never allowed.
func (g *Grants) Allowed(action, scopeStr string) bool {
	target, err := parseScope(scopeStr)
	if err != nil {
		return false
	}
	for _, a := range g.assignments {
		if a.scope.covers(target) && a.role.Allows(action) {
			return true
		}
	}
	return false
}

// AnyIn reports whether the principal holds any assignment inside the
// subscription or above it. A principal without one sees nothing of the
// subscription (ARM answers as if it did not exist).
func (g *Grants) AnyIn(subscriptionID string) bool {
	sub := strings.ToLower(subscriptionID)
	for _, a := range g.assignments {
		if len(a.scope) == 0 || a.scope.subscription() == sub {
			return true
		}
	}
	return false
}

// ReadableScopes returns the scopes of the principal's assignments, with
// those covered by another one left out, sorted. Resources outside all of
// them are invisible to the principal; inside, callers still check
// Allowed with the resource type's read action.
func (g *Grants) ReadableScopes() []string {
	var out []string
	for i, a := range g.assignments {
		covered := false
		for j, b := range g.assignments {
			if i == j {
				continue
			}
			// Strictly covered, or an equal scope seen earlier.
			if b.scope.covers(a.scope) && (len(b.scope) < len(a.scope) || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, a.ra.Scope)
		}
	}
	sort.Strings(out)
	return out
}
