// Package resources serves Microsoft.Resources: resource groups and the
// generic list of every resource in a subscription or group.
package resources

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Versions are the api-versions accepted for Microsoft.Resources: the
// one armresources v1.2.0 sends, and recent ones the az CLI sends.
var Versions = arm.NewVersionTable("2024-11-01", "2024-07-01", "2024-03-01", "2022-09-01", "2021-04-01")

// Provider serves resource groups.
type Provider struct {
	st  store.Store
	all func() []*arm.ResourceType
}

// New returns the provider. types lists every registered resource type, so
// that deleting a group can run each type's cleanup.
func New(st store.Store, types func() []*arm.ResourceType) *Provider {
	return &Provider{st: st, all: types}
}

// Types returns the resource types this provider serves.
func (p *Provider) Types() []*arm.ResourceType {
	return []*arm.ResourceType{
		{
			Type: "Microsoft.Resources/resourceGroups", APIVersions: Versions.All(),
			Get: p.get, List: p.list, Put: p.put, Patch: p.patch, Delete: p.delete,
			NoParentCheck: true,
		},
		{
			Type: "Microsoft.Resources/resources", APIVersions: Versions.All(),
			List: p.listResources, NoParentCheck: true,
		},
	}
}

// rgName is ARM's rule: 1-90 characters of letters, digits, '_', '(', ')',
// '-', '.', not ending in '.'.
var rgName = regexp.MustCompile(`^[-\w._()]{0,89}[-\w_()]$`)

func (p *Provider) get(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var rg armresources.ResourceGroup
	ok, err := arm.Load(arm.ReadOnly(ctx, p.st), r.ID, &rg)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, arm.Errorf(http.StatusNotFound, "ResourceGroupNotFound", "Resource group '%s' could not be found.", r.ID.ResourceGroup)
	}
	if r.HTTP.Method == http.MethodHead {
		return &arm.Response{Status: http.StatusNoContent}, nil
	}
	return arm.OK(rg), nil
}

func (p *Provider) list(ctx context.Context, r *arm.Request) ([]any, error) {
	rgs, err := arm.LoadAll[armresources.ResourceGroup](arm.ReadOnly(ctx, p.st), r.ID)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(rgs))
	for i := range rgs {
		out[i] = rgs[i]
	}
	return out, nil
}

func (p *Provider) put(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	name := r.ID.ResourceGroup
	if !rgName.MatchString(name) {
		return nil, arm.BadRequest("InvalidResourceGroupName", "resourceGroupName",
			"Resource group name '%s' is invalid: 1-90 letters, digits, '_', '(', ')', '-' or '.', not ending in '.'.", name)
	}
	var in armresources.ResourceGroup
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := arm.ValidateLocation(in.Location); err != nil {
		return nil, err
	}
	if err := arm.ValidateTags(in.Tags); err != nil {
		return nil, err
	}
	status := http.StatusCreated
	var out armresources.ResourceGroup
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		var cur armresources.ResourceGroup
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, ""); err != nil {
			return err
		}
		out = armresources.ResourceGroup{
			ID: ptr(r.ID.String()), Name: &name, Type: ptr("Microsoft.Resources/resourceGroups"),
			Location: ptr(normalizeLocation(*in.Location)), Tags: in.Tags, ManagedBy: in.ManagedBy,
			Properties: &armresources.ResourceGroupProperties{ProvisioningState: ptr("Succeeded")},
		}
		status = http.StatusCreated
		if exists {
			status = http.StatusOK
			out.ID, out.Name = cur.ID, cur.Name // the name keeps its first casing
			if !strings.EqualFold(*cur.Location, *out.Location) {
				return arm.Conflict("InvalidResourceGroupLocation",
					"Invalid resource group location '%s'. The Resource group already exists in location '%s'.", *in.Location, *cur.Location)
			}
		}
		return arm.Save(tx, r.ID, &out)
	})
	if err != nil {
		return nil, err
	}
	return &arm.Response{Status: status, Body: out}, nil
}

func (p *Provider) patch(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in armresources.ResourceGroupPatchable
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := arm.ValidateTags(in.Tags); err != nil {
		return nil, err
	}
	var out armresources.ResourceGroup
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		ok, err := arm.Load(tx, r.ID, &out)
		if err != nil {
			return err
		}
		if !ok {
			return arm.Errorf(http.StatusNotFound, "ResourceGroupNotFound", "Resource group '%s' could not be found.", r.ID.ResourceGroup)
		}
		if in.Tags != nil {
			out.Tags = in.Tags
		}
		if in.ManagedBy != nil {
			out.ManagedBy = in.ManagedBy
		}
		return arm.Save(tx, r.ID, &out)
	})
	if err != nil {
		return nil, err
	}
	return arm.OK(out), nil
}

// delete removes the group and everything in it, in one transaction:
// either all of it goes or, when something outside the group still depends
// on a resource in it, nothing does. The role assignments at the group and
// under it go in the same transaction: the daemon's store runs its scope
// hooks on every document deleted (arm.WithScopeHooks).
func (p *Provider) delete(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var op *arm.Operation
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		var rg armresources.ResourceGroup
		ok, err := arm.Load(tx, r.ID, &rg)
		if err != nil {
			return err
		}
		if !ok {
			return arm.Errorf(http.StatusNotFound, "ResourceGroupNotFound", "Resource group '%s' could not be found.", r.ID.ResourceGroup)
		}
		members, err := arm.GroupMembers(tx, r.ID)
		if err != nil {
			return err
		}
		for _, t := range p.all() {
			if t.BeforeGroupDelete == nil {
				continue
			}
			for _, id := range members {
				if strings.EqualFold(id.Type(), t.Type) {
					if err := t.BeforeGroupDelete(tx, id); err != nil {
						return err
					}
				}
			}
		}
		if err := arm.Delete(tx, r.ID); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, *rg.Location, true)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &arm.Response{Status: http.StatusAccepted, Op: op}, nil
}

// listResources answers GET .../resources: every tracked resource in the
// subscription or group, in the generic shape.
func (p *Provider) listResources(ctx context.Context, r *arm.Request) ([]any, error) {
	members, err := arm.AllDocs(arm.ReadOnly(ctx, p.st), r.ID.Subscription, r.ID.ResourceGroup)
	if err != nil {
		return nil, err
	}
	var out []any
	for _, d := range members {
		var v struct {
			ID       string            `json:"id"`
			Name     string            `json:"name"`
			Type     string            `json:"type"`
			Location string            `json:"location"`
			Tags     map[string]string `json:"tags,omitempty"`
		}
		if err := json.Unmarshal(d, &v); err != nil || v.Location == "" || v.Type == "Microsoft.Resources/resourceGroups" {
			continue // only tracked resources have a location
		}
		out = append(out, v)
	}
	return out, nil
}

// normalizeLocation lower-cases a location and drops spaces, as ARM
// returns "westeurope" for "West Europe".
func normalizeLocation(s string) string { return strings.ToLower(strings.ReplaceAll(s, " ", "")) }

func ptr[T any](v T) *T { return &v }
