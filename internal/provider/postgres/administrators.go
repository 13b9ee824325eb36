package postgres

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Microsoft Entra administrators (flexibleServers/administrators, named
// by the principal's object id), as in api-version 2025-08-01: each
// becomes a LOGIN role of the server named as the principal, with the
// administrator's rights, that logs in with an access token for the OSS
// RDBMS audience (pgserver's entra.go checks it inside PostgreSQL). A
// write changes the server's Desired record (Desired.Entra) and is
// long-running: its operation is the server's, finished by the
// controller once the role and the server's files match.

const typeAdministrator = "Microsoft.DBforPostgreSQL/flexibleServers/administrators"

// codeEntraDisabled is privlink's code for an administrator written while
// the server's activeDirectoryAuth is Disabled.
const codeEntraDisabled = "AadAuthOperationCannotBePerformedWhenAadAuthIsDisabled"

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// principalTypes are the principal types an administrator may have.
var principalTypes = []string{"User", "Group", "ServicePrincipal"}

// EntraAuth is the part of a server's Desired record that Microsoft Entra
// ID authentication needs; nil while activeDirectoryAuth is Disabled.
type EntraAuth struct {
	// TenantID is authConfig.tenantId: only its tokens log in.
	TenantID string `json:"tenantId"`
	// PasswordAuth is authConfig.passwordAuth == Enabled.
	PasswordAuth bool `json:"passwordAuth"`
	// Admins are the server's administrators, by object id.
	Admins []EntraAdmin `json:"admins,omitempty"`
}

// EntraAdmin is one administrator as the controller applies it.
type EntraAdmin struct {
	ObjectID      string `json:"objectId"`
	PrincipalName string `json:"principalName"`
	PrincipalType string `json:"principalType"`
	TenantID      string `json:"tenantId"`
}

// administratorDoc is an administrator's stored document and GET body.
type administratorDoc struct {
	ID         string              `json:"id"`
	Name       string              `json:"name"`
	Type       string              `json:"type"`
	SystemData *systemData         `json:"systemData,omitempty"`
	Properties administratorsProps `json:"properties"`
}

type administratorsProps struct {
	ObjectID      string `json:"objectId"`
	PrincipalName string `json:"principalName"`
	PrincipalType string `json:"principalType"`
	TenantID      string `json:"tenantId"`
}

type administratorIn struct {
	Properties *struct {
		PrincipalName *string `json:"principalName"`
		PrincipalType *string `json:"principalType"`
		TenantID      *string `json:"tenantId"`
	} `json:"properties"`
}

// entraOf computes what Desired.Entra should be for server doc, from its
// authConfig and its administrators' documents.
func entraOf(r arm.Reader, id arm.ResourceID, doc *serverDoc) (*EntraAuth, error) {
	ac := doc.Properties.AuthConfig
	if ac.ActiveDirectoryAuth != enabled {
		return nil, nil
	}
	admins, err := arm.LoadAll[administratorDoc](r, id.ChildCollection("administrators"))
	if err != nil {
		return nil, err
	}
	e := &EntraAuth{TenantID: ac.TenantID, PasswordAuth: ac.PasswordAuth == enabled}
	for _, a := range admins {
		e.Admins = append(e.Admins, EntraAdmin{
			ObjectID: a.Properties.ObjectID, PrincipalName: a.Properties.PrincipalName,
			PrincipalType: a.Properties.PrincipalType, TenantID: a.Properties.TenantID,
		})
	}
	slices.SortFunc(e.Admins, func(a, b EntraAdmin) int { return strings.Compare(a.ObjectID, b.ObjectID) })
	return e, nil
}

// sameEntra reports whether a and b are the same.
func sameEntra(a, b *EntraAuth) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.TenantID == b.TenantID && a.PasswordAuth == b.PasswordAuth && slices.Equal(a.Admins, b.Admins)
}

func (p *Provider) getAdministrator(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	return getChild[administratorDoc](ctx, p.st, r)
}

func (p *Provider) listAdministrators(ctx context.Context, r *arm.Request) ([]any, error) {
	return listChildren[administratorDoc](ctx, p.st, r)
}

// validateAdministrator checks an administrator body against its server.
func validateAdministrator(objectID string, in *administratorIn, server *serverDoc) (administratorsProps, error) {
	var out administratorsProps
	if !guidRE.MatchString(objectID) {
		return out, errInvalid("objectId", "Invalid value given for parameter objectId: '%s'. An administrator is named by the Microsoft Entra principal's object id, a GUID.", objectID)
	}
	if in.Properties == nil {
		return out, errMissing("properties", "An administrator's properties (principalName, principalType)")
	}
	pr := in.Properties
	name := strings.TrimSpace(str(pr.PrincipalName))
	if name == "" {
		return out, errMissing("properties.principalName", "The Microsoft Entra principal's name (the role it logs in as)")
	}
	if len(name) > 63 || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '"' }) {
		return out, errInvalid("properties.principalName", "Invalid value given for parameter principalName: '%s'. It becomes a PostgreSQL role name: at most 63 bytes, without control characters or double quotes.", name)
	}
	low := strings.ToLower(name)
	if strings.HasPrefix(low, "pg_") || slices.Contains([]string{"postgres", "azure_ad_user", "azure_pg_admin", "azuresu", "public", "replication"}, low) {
		return out, errInvalid("properties.principalName", "Invalid value given for parameter principalName: '%s' is a reserved role name.", name)
	}
	if strings.EqualFold(name, server.Properties.AdministratorLogin) {
		return out, errInvalid("properties.principalName", "Invalid value given for parameter principalName: '%s' is the server's password administrator (administratorLogin); choose another name.", name)
	}
	typ, err := enumValue("properties.principalType", pr.PrincipalType, "", principalTypes)
	if err != nil {
		return out, err
	}
	if typ == "" {
		return out, errMissing("properties.principalType", "The principal's type (User, Group or ServicePrincipal)")
	}
	tenant := strings.ToLower(strings.TrimSpace(str(pr.TenantID)))
	serverTenant := strings.ToLower(server.Properties.AuthConfig.TenantID)
	if tenant == "" {
		tenant = serverTenant
	}
	if tenant != serverTenant {
		return out, errInvalid("properties.tenantId", "Invalid value given for parameter tenantId: '%s'. The server's Microsoft Entra authentication is for tenant '%s' (authConfig.tenantId); an administrator must be of that tenant.", tenant, serverTenant)
	}
	return administratorsProps{ObjectID: strings.ToLower(objectID), PrincipalName: name, PrincipalType: typ, TenantID: tenant}, nil
}

func (p *Provider) putAdministrator(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in administratorIn
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	var resp *arm.Response
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		resp = nil
		server, sid, err := p.loadParent(tx, r.ID)
		if err != nil {
			return err
		}
		if server.Properties.AuthConfig.ActiveDirectoryAuth != enabled {
			return arm.BadRequest(codeEntraDisabled, "properties.authConfig.activeDirectoryAuth",
				"Microsoft Entra authentication is Disabled on server '%s'; enable it (authConfig.activeDirectoryAuth: Enabled) before adding administrators.", server.Name)
		}
		props, err := validateAdministrator(r.ID.Name(), &in, server)
		if err != nil {
			return err
		}
		var cur administratorDoc
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, ""); err != nil {
			return err
		}
		others, err := arm.LoadAll[administratorDoc](tx, sid.ChildCollection("administrators"))
		if err != nil {
			return err
		}
		for _, o := range others {
			if !strings.EqualFold(o.Properties.ObjectID, props.ObjectID) && strings.EqualFold(o.Properties.PrincipalName, props.PrincipalName) {
				return arm.Conflict("AdministratorNameConflict", "Server '%s' has administrator '%s' (object %s) already; an administrator's principalName is its role and must be unique.",
					server.Name, o.Properties.PrincipalName, o.Properties.ObjectID)
			}
		}
		if err := errServerState(server.Name, server.Properties.State, "Update"); err != nil {
			return err
		}
		now := time.Now().UTC()
		out := administratorDoc{
			ID: server.ID + "/administrators/" + props.ObjectID, Name: props.ObjectID, Type: typeAdministrator,
			SystemData: newSystemData(r.Caller, now), Properties: props,
		}
		if exists && cur.SystemData != nil {
			sd := *cur.SystemData
			touch(&sd, r.Caller, now)
			out.SystemData = &sd
		}
		if err := arm.Save(tx, r.ID, &out); err != nil {
			return err
		}
		op, err := p.applyEntra(tx, sid, server)
		if err != nil {
			return err
		}
		resp = accepted(out, op)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (p *Provider) deleteAdministrator(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var op *arm.Operation
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		op = nil
		var cur administratorDoc
		exists, err := arm.Load(tx, r.ID, &cur)
		if err != nil {
			return err
		}
		if err := r.CheckPreconditions(exists, ""); err != nil {
			return err
		}
		if !exists {
			return nil
		}
		server, sid, err := p.loadParent(tx, r.ID)
		if err != nil {
			return err
		}
		if err := arm.Delete(tx, r.ID); err != nil {
			return err
		}
		op, err = p.applyEntra(tx, sid, server)
		return err
	})
	if err != nil {
		return nil, err
	}
	if op == nil {
		return noContent(), nil
	}
	return &arm.Response{Status: http.StatusAccepted, Op: op}, nil
}

// loadParent loads the server of a child resource.
func (p *Provider) loadParent(tx store.Tx, child arm.ResourceID) (*serverDoc, arm.ResourceID, error) {
	var server serverDoc
	ok, err := arm.Load(tx, child.Parent(), &server)
	if err != nil {
		return nil, child, err
	}
	if !ok {
		return nil, child, arm.Errorf(http.StatusNotFound, "ParentResourceNotFound",
			"Can not perform requested operation on nested resource. Parent resource '%s' not found.", child.Parent().Name())
	}
	sid, err := arm.ParseID(server.ID)
	if err != nil {
		return nil, child, fmt.Errorf("stored server has a bad id %q: %w", server.ID, err)
	}
	return &server, sid, nil
}

// applyEntra records, in tx, the server's Entra state as its documents
// now say (a new generation of its Desired record when it changed) and
// returns the operation that finishes when the controller has applied it
// (at once when nothing changed or without a controller). The server
// shows Updating meanwhile.
func (p *Provider) applyEntra(tx store.Tx, sid arm.ResourceID, server *serverDoc) (*arm.Operation, error) {
	d, err := loadDesiredOf(tx, sid)
	if err != nil {
		return nil, err
	}
	e, err := entraOf(tx, sid, server)
	if err != nil {
		return nil, err
	}
	if sameEntra(d.Entra, e) {
		return arm.StartOperation(tx, sid, server.Location, true)
	}
	d.Entra = e
	if err := saveDesired(tx, sid, d); err != nil {
		return nil, err
	}
	state, done := p.settle(stateUpdating, steadyState(d.Running))
	if err := updateDoc(tx, sid, func(doc *serverDoc) { doc.Properties.State = state }); err != nil {
		return nil, err
	}
	return arm.StartOperation(tx, sid, server.Location, done)
}
