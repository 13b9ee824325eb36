package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/google/uuid"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Private endpoint connections: the server side of the private endpoints
// (Microsoft.Network/privateEndpoints) that target a server. There is no
// create call: the network provider records a connection, through
// RequestConnection, in the transaction that writes the endpoint, and
// removes it, through RemoveConnection, in the one that deletes it. Each
// connection is a child document of its server,
// flexibleServers/{server}/privateEndpointConnections/{endpoint}.{guid},
// that names its endpoint; the endpoint may live in any subscription or
// tenant.
//
// The server's owner approves or rejects a connection with a PUT
// (synchronous 200) and removes it with a DELETE (202, done at once). The
// endpoint's privateLinkServiceConnectionState mirrors the connection's:
// every write here updates the endpoint's document in the same
// transaction (mirror), whatever subscription it is in. States:
//
//	Pending  → Approved | Rejected   (the server's owner)
//	Approved → Rejected              (the server's owner)
//	any      → Disconnected          (the connection deleted, or the server)
//	Rejected | Disconnected → Pending (the endpoint's owner PUTs the
//	                                  endpoint again: a re-request, which
//	                                  Azure cannot do)
//
// Disconnected exists only on the endpoint: the server has no connection
// document any more. description and actionsRequired are always filled in
// (Azure often leaves them empty).

const (
	typeConnection      = "Microsoft.DBforPostgreSQL/flexibleServers/privateEndpointConnections"
	connectionsSegment  = "privateEndpointConnections"
	writeServerAction   = typeServer + "/write"
	maxStateDescription = 1024
)

// Connection statuses, as privateLinkServiceConnectionState.status has
// them on both sides (Disconnected only on the endpoint).
const (
	StatusPending      = "Pending"
	StatusApproved     = "Approved"
	StatusRejected     = "Rejected"
	StatusDisconnected = "Disconnected"
)

// What actionsRequired says in each state, unless the server's owner
// wrote something else.
const (
	actionsNone      = "None"
	actionsPending   = "Approve or reject the connection on the server"
	actionsReRequest = "Re-request the connection by updating the private endpoint, or delete the private endpoint"
)

// ConnectionState is a connection's privateLinkServiceConnectionState,
// the same on the server and on the endpoint.
type ConnectionState struct {
	Status          string `json:"status"`
	Description     string `json:"description"`
	ActionsRequired string `json:"actionsRequired"`
}

// AutoApproved is the state of a connection requested through an
// endpoint's privateLinkServiceConnections by a principal who may write
// the server.
func AutoApproved() ConnectionState {
	return ConnectionState{Status: StatusApproved, Description: "Auto-Approved", ActionsRequired: actionsNone}
}

// AwaitingApproval is the state of a connection that waits for the
// server's owner; the endpoint's requestMessage, when there is one, is
// part of the description.
func AwaitingApproval(requestMessage string) ConnectionState {
	d := "Awaiting approval by the server's owner"
	if m := strings.TrimSpace(requestMessage); m != "" {
		d += ": " + m
	}
	return ConnectionState{Status: StatusPending, Description: d, ActionsRequired: actionsPending}
}

// Disconnected is the state an endpoint shows once its connection is
// gone from the server, for reason.
func Disconnected(reason string) ConnectionState {
	return ConnectionState{Status: StatusDisconnected, Description: reason, ActionsRequired: actionsReRequest}
}

// connectionDoc is a connection's stored document and GET body.
type connectionDoc struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	SystemData *systemData     `json:"systemData,omitempty"`
	Properties connectionProps `json:"properties"`
}

type connectionProps struct {
	GroupIDs          []string        `json:"groupIds"`
	PrivateEndpoint   endpointRef     `json:"privateEndpoint"`
	State             ConnectionState `json:"privateLinkServiceConnectionState"`
	ProvisioningState string          `json:"provisioningState"`
}

type endpointRef struct {
	ID string `json:"id"`
}

// connectionIn is the body of a connection PUT; everything else a client
// echoes back from a GET is read-only and ignored.
type connectionIn struct {
	Properties *struct {
		State *struct {
			Status          *string `json:"status"`
			Description     *string `json:"description"`
			ActionsRequired *string `json:"actionsRequired"`
		} `json:"privateLinkServiceConnectionState"`
	} `json:"properties"`
}

// Target is a server as a private endpoint sees it.
type Target struct {
	// ID is the server's ID in its canonical casing.
	ID arm.ResourceID
	// Name is the server's name as created.
	Name string
	// FQDN is its DNS name, {name}.postgres.database.azure.com.
	FQDN string
}

// LookupTarget reads server id for a private endpoint that targets it:
// nil when there is no such server. It reads the store directly: the
// endpoint's owner may have no right to read the server.
func LookupTarget(r arm.Reader, id arm.ResourceID) (*Target, error) {
	if !strings.EqualFold(id.Type(), typeServer) || len(id.Names) != 1 || id.ResourceGroup == "" || id.Scope != nil {
		return nil, nil
	}
	var doc serverDoc
	ok, err := arm.Load(r, id, &doc)
	if err != nil || !ok {
		return nil, err
	}
	canon, err := arm.ParseID(doc.ID)
	if err != nil {
		canon = id
	}
	fqdn := doc.Properties.FullyQualifiedDomainName
	if fqdn == "" {
		fqdn = doc.Name + "." + DNSSuffix
	}
	return &Target{ID: canon, Name: doc.Name, FQDN: fqdn}, nil
}

// Connection is the server side of one private endpoint's connection.
type Connection struct {
	// ID is the connection's ID.
	ID arm.ResourceID
	// Endpoint is the ID of the private endpoint, as stored.
	Endpoint string
	// State is the connection's state.
	State ConnectionState
}

// ConnectionOf returns the connection of endpoint on server, nil when the
// server has none for it.
func ConnectionOf(r arm.Reader, server, endpoint arm.ResourceID) (*Connection, error) {
	docs, err := loadConnections(r, server)
	if err != nil {
		return nil, err
	}
	for _, d := range docs {
		if strings.EqualFold(d.Properties.PrivateEndpoint.ID, endpoint.String()) {
			return d.public(server), nil
		}
	}
	return nil, nil
}

// HasConnections reports whether server has any private endpoint
// connection, in any state.
func HasConnections(r arm.Reader, server arm.ResourceID) (bool, error) {
	kvs, err := r.List(arm.CollectionPrefix(server.ChildCollection(connectionsSegment)))
	if err != nil {
		return false, fmt.Errorf("list private endpoint connections of %s: %w", server, err)
	}
	return len(kvs) > 0, nil
}

// RequestConnection records, in tx, the connection of endpoint (its ID in
// canonical casing) on the server target with state st: the endpoint's
// existing connection document is updated, or a new one named
// "{endpoint name}.{guid}" is created. caller is who asks (the
// connection's systemData). The caller writes st on the endpoint itself:
// the endpoint's document is being written in the same transaction.
func RequestConnection(tx store.Tx, target *Target, endpoint arm.ResourceID, st ConnectionState, caller *arm.Caller) (*Connection, error) {
	if target == nil {
		return nil, fmt.Errorf("request connection of %s: no target server", endpoint)
	}
	now := time.Now().UTC()
	docs, err := loadConnections(tx, target.ID)
	if err != nil {
		return nil, err
	}
	var doc *connectionDoc
	for i := range docs {
		if strings.EqualFold(docs[i].Properties.PrivateEndpoint.ID, endpoint.String()) {
			doc = &docs[i]
			break
		}
	}
	if doc == nil {
		name := endpoint.Name() + "." + uuid.NewString()
		doc = &connectionDoc{
			ID: target.ID.Child(connectionsSegment, name).String(), Name: name, Type: typeConnection,
			SystemData: newSystemData(caller, now),
		}
	} else if doc.SystemData != nil {
		touch(doc.SystemData, caller, now)
	}
	doc.Properties = connectionProps{
		GroupIDs: []string{GroupID}, PrivateEndpoint: endpointRef{ID: endpoint.String()},
		State: st, ProvisioningState: "Succeeded",
	}
	id := target.ID.Child(connectionsSegment, doc.Name)
	if err := arm.Save(tx, id, doc); err != nil {
		return nil, err
	}
	return doc.public(target.ID), nil
}

// RemoveConnection deletes, in tx, the connection of endpoint on server,
// if there is one. The endpoint is going: nothing is mirrored.
func RemoveConnection(tx store.Tx, server, endpoint arm.ResourceID) error {
	docs, err := loadConnections(tx, server)
	if err != nil {
		return err
	}
	for _, d := range docs {
		if strings.EqualFold(d.Properties.PrivateEndpoint.ID, endpoint.String()) {
			if err := arm.Delete(tx, server.Child(connectionsSegment, d.Name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// disconnectAll shows every endpoint of a server that is going away as
// Disconnected; the connection documents go with the server's.
func disconnectAll(tx store.Tx, server arm.ResourceID, name string) error {
	docs, err := loadConnections(tx, server)
	if err != nil {
		return err
	}
	for _, d := range docs {
		reason := fmt.Sprintf("Server '%s' was deleted", name)
		if err := mirror(tx, server, d.Properties.PrivateEndpoint.ID, Disconnected(reason)); err != nil {
			return err
		}
	}
	return nil
}

// mirror writes st as the privateLinkServiceConnectionState of the
// private endpoint endpoint (its ID as stored), when that endpoint still
// exists and still targets server. The endpoint may be in any
// subscription; it gets a new etag, as any change of a network resource.
func mirror(tx store.Tx, server arm.ResourceID, endpoint string, st ConnectionState) error {
	id, err := arm.ParseID(endpoint)
	if err != nil || !strings.EqualFold(id.Type(), "Microsoft.Network/privateEndpoints") || len(id.Names) != 1 {
		return nil // not an endpoint this provider recorded: nothing to mirror
	}
	var pe armnetwork.PrivateEndpoint
	ok, err := arm.Load(tx, id, &pe)
	if err != nil || !ok || pe.Properties == nil {
		return err
	}
	etag := arm.NewETag()
	changed := false
	for _, list := range [][]*armnetwork.PrivateLinkServiceConnection{pe.Properties.PrivateLinkServiceConnections, pe.Properties.ManualPrivateLinkServiceConnections} {
		for _, c := range list {
			if c == nil || c.Properties == nil || c.Properties.PrivateLinkServiceID == nil ||
				!strings.EqualFold(*c.Properties.PrivateLinkServiceID, server.String()) {
				continue
			}
			c.Properties.PrivateLinkServiceConnectionState = &armnetwork.PrivateLinkServiceConnectionState{
				Status: ptr(st.Status), Description: ptr(st.Description), ActionsRequired: ptr(st.ActionsRequired),
			}
			c.Etag = ptr(etag)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	pe.Etag = ptr(etag)
	return arm.Save(tx, id, &pe)
}

func (d *connectionDoc) public(server arm.ResourceID) *Connection {
	return &Connection{ID: server.Child(connectionsSegment, d.Name), Endpoint: d.Properties.PrivateEndpoint.ID, State: d.Properties.State}
}

func loadConnections(r arm.Reader, server arm.ResourceID) ([]connectionDoc, error) {
	return arm.LoadAll[connectionDoc](r, server.ChildCollection(connectionsSegment))
}

// connectionViews returns a server's connections as its GET shows them
// inline (properties.privateEndpointConnections).
func connectionViews(r arm.Reader, serverID string) ([]json.RawMessage, error) {
	id, err := arm.ParseID(serverID)
	if err != nil {
		return nil, fmt.Errorf("stored server has a bad id %q: %w", serverID, err)
	}
	docs, err := loadConnections(r, id)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, 0, len(docs))
	for _, d := range docs {
		b, err := json.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("encode private endpoint connection %s: %w", d.ID, err)
		}
		out = append(out, b)
	}
	return out, nil
}

func (p *Provider) getConnection(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var d connectionDoc
	ok, err := arm.Load(arm.ReadOnly(ctx, p.st), r.ID, &d)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errChildNotFound(r.ID)
	}
	return arm.OK(d), nil
}

func (p *Provider) listConnections(ctx context.Context, r *arm.Request) ([]any, error) {
	docs, err := arm.LoadAll[connectionDoc](arm.ReadOnly(ctx, p.st), r.ID)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(docs))
	for i := range docs {
		out[i] = docs[i]
	}
	return out, nil
}

// decodeConnectionState validates a connection PUT body. Only the state
// is writable; status is required, description and actionsRequired are
// optional (defaults fill them in).
func decodeConnectionState(r *arm.Request) (status string, description, actions *string, err error) {
	var in connectionIn
	if err := r.Decode(&in); err != nil {
		return "", nil, nil, err
	}
	const target = "properties.privateLinkServiceConnectionState"
	if in.Properties == nil || in.Properties.State == nil {
		return "", nil, nil, errMissing(target, "A connection's privateLinkServiceConnectionState")
	}
	st := in.Properties.State
	if st.Status == nil || strings.TrimSpace(*st.Status) == "" {
		return "", nil, nil, errMissing(target+".status", "The connection's status (Approved or Rejected)")
	}
	status, err = enumValue(target+".status", st.Status, "", []string{StatusApproved, StatusRejected, StatusPending})
	if err != nil {
		return "", nil, nil, err
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"description", st.Description}, {"actionsRequired", st.ActionsRequired}} {
		if f.v != nil && utf8.RuneCountInString(*f.v) > maxStateDescription {
			return "", nil, nil, errInvalid(target+"."+f.name, "Invalid value given for parameter %s: it has %d characters; keep it to %d.",
				f.name, utf8.RuneCountInString(*f.v), maxStateDescription)
		}
	}
	return status, trimmed(st.Description), trimmed(st.ActionsRequired), nil
}

func trimmed(s *string) *string {
	if s == nil || strings.TrimSpace(*s) == "" {
		return nil
	}
	t := strings.TrimSpace(*s)
	return &t
}

// putConnection approves or rejects a connection. The router has checked
// the caller's privateEndpointConnections/write on the connection; only a
// principal who may also write the server decides, so an endpoint's owner
// never approves its own connection through a narrower role.
func (p *Provider) putConnection(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	status, description, actions, err := decodeConnectionState(r)
	if err != nil {
		return nil, err
	}
	var out connectionDoc
	_, err = p.st.Txn(ctx, func(tx store.Tx) error {
		server, err := loadParentServer(tx, r.ID)
		if err != nil {
			return err
		}
		serverID, err := arm.ParseID(server.ID)
		if err != nil {
			return fmt.Errorf("stored server %s has a bad id %q: %w", r.ID.Parent(), server.ID, err)
		}
		if err := authorizeDecision(r, serverID); err != nil {
			return err
		}
		ok, err := arm.Load(tx, r.ID, &out)
		if err != nil {
			return err
		}
		if !ok {
			return errChildNotFound(r.ID)
		}
		if err := r.CheckPreconditions(true, ""); err != nil {
			return err
		}
		next, err := transition(out.Properties.State, status, description, actions, r.Caller)
		if err != nil {
			return err
		}
		out.Properties.State = next
		touch(out.SystemData, r.Caller, time.Now().UTC())
		if err := arm.Save(tx, serverID.Child(connectionsSegment, out.Name), &out); err != nil {
			return err
		}
		return mirror(tx, serverID, out.Properties.PrivateEndpoint.ID, next)
	})
	if err != nil {
		return nil, err
	}
	// Synchronous: a PG reply with a polling header would make the SDK
	// poll it (reference §A.4).
	return arm.OK(out), nil
}

// transition applies a decision of the server's owner to the current
// state: Pending may become Approved or Rejected, Approved may become
// Rejected, and a status may be confirmed (updating its texts). A
// Rejected connection stays rejected until its endpoint's owner
// re-requests it.
func transition(cur ConnectionState, status string, description, actions *string, c *arm.Caller) (ConnectionState, error) {
	const target = "properties.privateLinkServiceConnectionState.status"
	switch {
	case status == cur.Status:
	case cur.Status == StatusPending && (status == StatusApproved || status == StatusRejected):
	case cur.Status == StatusApproved && status == StatusRejected:
	case cur.Status == StatusRejected:
		return cur, errInvalid(target, "Invalid value given for parameter status: '%s'. The connection was rejected and cannot become %s on the server's side; the private endpoint's owner can re-request it by updating the private endpoint.", status, status)
	default:
		return cur, errInvalid(target, "Invalid value given for parameter status: '%s'. A connection that is %s can become Rejected; it cannot go back to %s.", status, cur.Status, status)
	}
	by, _ := principal(c)
	if by == "" {
		by = "the server's owner"
	}
	next := ConnectionState{Status: status}
	switch status {
	case StatusApproved:
		next.Description, next.ActionsRequired = "Approved by "+by, actionsNone
	case StatusRejected:
		next.Description, next.ActionsRequired = "Rejected by "+by, actionsReRequest
	default:
		next.Description, next.ActionsRequired = cur.Description, cur.ActionsRequired
	}
	if status == cur.Status && description == nil && actions == nil {
		next = cur // a confirmation (GET, PUT back): nothing changes
	}
	if description != nil {
		next.Description = *description
	}
	if actions != nil {
		next.ActionsRequired = *actions
	}
	return next, nil
}

// deleteConnection removes a connection on the server's side: the
// endpoint shows Disconnected and may re-request it.
func (p *Provider) deleteConnection(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var op *arm.Operation
	_, err := p.st.Txn(ctx, func(tx store.Tx) error {
		op = nil
		var cur connectionDoc
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
		server, err := loadParentServer(tx, r.ID)
		if err != nil {
			return err
		}
		serverID, err := arm.ParseID(server.ID)
		if err != nil {
			return fmt.Errorf("stored server %s has a bad id %q: %w", r.ID.Parent(), server.ID, err)
		}
		if err := authorizeDecision(r, serverID); err != nil {
			return err
		}
		if err := arm.Delete(tx, r.ID); err != nil {
			return err
		}
		by, _ := principal(r.Caller)
		if by == "" {
			by = "the server's owner"
		}
		reason := fmt.Sprintf("The connection was deleted on server '%s' by %s", server.Name, by)
		if err := mirror(tx, serverID, cur.Properties.PrivateEndpoint.ID, Disconnected(reason)); err != nil {
			return err
		}
		op, err = arm.StartOperation(tx, r.ID, server.Location, true)
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

// loadParentServer loads the server of a child resource inside a
// transaction; the router checked it exists, but it may have gone since.
func loadParentServer(tx store.Tx, child arm.ResourceID) (*serverDoc, error) {
	var server serverDoc
	ok, err := arm.Load(tx, child.Parent(), &server)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, arm.Errorf(http.StatusNotFound, "ParentResourceNotFound",
			"Can not perform requested operation on nested resource. Parent resource '%s' not found.", child.Parent().Name())
	}
	return &server, nil
}

// authorizeDecision lets only a principal who may write the server
// approve, reject or delete its connections.
func authorizeDecision(r *arm.Request, server arm.ResourceID) error {
	if MayWriteServer(r.Caller, server) {
		return nil
	}
	c := r.Caller
	if c == nil {
		c = &arm.Caller{}
	}
	return arm.Errorf(http.StatusForbidden, "AuthorizationFailed",
		"The client '%s' with object id '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid. Only a principal who may write the server decides on its private endpoint connections.",
		c.ClientID, c.ObjectID, writeServerAction, server)
}

// MayWriteServer reports whether the caller may write server: such a
// caller's private endpoints to it are approved at once, and only such a
// caller approves or rejects the connections of others.
func MayWriteServer(c *arm.Caller, server arm.ResourceID) bool {
	return c != nil && c.Grants != nil && c.Grants.Allowed(writeServerAction, server.String())
}

func ptr[T any](v T) *T { return &v }
