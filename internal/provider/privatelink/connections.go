package privatelink

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/google/uuid"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Private endpoint connections: the target side of the private endpoints
// (Microsoft.Network/privateEndpoints) that lead to a private-link
// resource. There is no create call: the network provider records a
// connection, through RequestConnection, in the transaction that writes
// the endpoint, and removes it, through RemoveConnection, in the one that
// deletes it. Each connection is a child document of its target,
// {target}/privateEndpointConnections/{endpoint}.{guid}, that names its
// endpoint; the endpoint may live in any subscription or tenant.
//
// The target's owner approves or rejects a connection with a PUT
// (synchronous 200) and removes it with a DELETE (202, done at once). The
// endpoint's privateLinkServiceConnectionState mirrors the connection's:
// every write here updates the endpoint's document in the same
// transaction (mirror), whatever subscription it is in. States:
//
//	Pending  → Approved | Rejected   (the target's owner)
//	Approved → Rejected              (the target's owner)
//	any      → Disconnected          (the connection deleted, or the target)
//	Rejected | Disconnected → Pending (the endpoint's owner PUTs the
//	                                  endpoint again: a re-request, which
//	                                  Azure cannot do)
//
// Disconnected exists only on the endpoint: the target has no connection
// document any more. description and actionsRequired are always filled in
// (Azure often leaves them empty).

const (
	// Segment is the child type of a target that holds its connections.
	Segment             = "privateEndpointConnections"
	maxStateDescription = 1024
	typeEndpoint        = "Microsoft.Network/privateEndpoints"
	codeInvalidValue    = "InvalidParameterValue"
	codeMissing         = "MissingRequiredParameter"
)

// Connection statuses, as privateLinkServiceConnectionState.status has
// them on both sides (Disconnected only on the endpoint).
const (
	StatusPending      = "Pending"
	StatusApproved     = "Approved"
	StatusRejected     = "Rejected"
	StatusDisconnected = "Disconnected"
)

// What actionsRequired says in each state, unless the target's owner
// wrote something else (a Pending one: Kind.actionsPending).
const (
	actionsNone      = "None"
	actionsReRequest = "Re-request the connection by updating the private endpoint, or delete the private endpoint"
)

// ConnectionState is a connection's privateLinkServiceConnectionState,
// the same on the target and on the endpoint.
type ConnectionState struct {
	Status          string `json:"status"`
	Description     string `json:"description"`
	ActionsRequired string `json:"actionsRequired"`
}

// AutoApproved is the state of a connection requested through an
// endpoint's privateLinkServiceConnections by a principal who may approve
// it (arm.ApprovalAction on the target).
func AutoApproved() ConnectionState {
	return ConnectionState{Status: StatusApproved, Description: "Auto-Approved", ActionsRequired: actionsNone}
}

// AwaitingApproval is the state of a connection to a resource of kind k
// that waits for the resource's owner; the endpoint's requestMessage,
// when there is one, is part of the description.
func (k *Kind) AwaitingApproval(requestMessage string) ConnectionState {
	d := "Awaiting approval by the " + k.Noun + "'s owner"
	if m := strings.TrimSpace(requestMessage); m != "" {
		d += ": " + m
	}
	return ConnectionState{Status: StatusPending, Description: d, ActionsRequired: "Approve or reject the connection on the " + k.Noun}
}

// Disconnected is the state an endpoint shows once its connection is
// gone from the target, for reason.
func Disconnected(reason string) ConnectionState {
	return ConnectionState{Status: StatusDisconnected, Description: reason, ActionsRequired: actionsReRequest}
}

// connectionDoc is a connection's stored document and GET body.
type connectionDoc struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	SystemData *arm.SystemData `json:"systemData,omitempty"`
	Properties connectionProps `json:"properties"`
}

type connectionProps struct {
	GroupIDs          []string        `json:"groupIds,omitempty"`
	PrivateEndpoint   endpointRef     `json:"privateEndpoint"`
	State             ConnectionState `json:"privateLinkServiceConnectionState"`
	ProvisioningState string          `json:"provisioningState"`
	// LinkIdentifier is the connection's link ID (Kind.LinkIdentifiers),
	// as Azure shows it: the decimal form of a 32-bit number.
	LinkIdentifier string `json:"linkIdentifier,omitempty"`
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

// Connection is the target side of one private endpoint's connection.
type Connection struct {
	// ID is the connection's ID.
	ID arm.ResourceID
	// Endpoint is the ID of the private endpoint, as stored.
	Endpoint string
	// State is the connection's state.
	State ConnectionState
	// LinkIdentifier is its link ID ("" for a kind without them).
	LinkIdentifier string
}

// ConnectionOf returns the connection of endpoint on target, nil when the
// target has none for it.
func ConnectionOf(r arm.Reader, target, endpoint arm.ResourceID) (*Connection, error) {
	docs, err := loadConnections(r, target)
	if err != nil {
		return nil, err
	}
	for _, d := range docs {
		if strings.EqualFold(d.Properties.PrivateEndpoint.ID, endpoint.String()) {
			return d.public(target), nil
		}
	}
	return nil, nil
}

// ConnectionEndpoint decodes a stored connection document (a target's
// privateEndpointConnections child): its name and its private endpoint's
// ID, as stored. ok is false when the document cannot be decoded or names
// no endpoint.
func ConnectionEndpoint(kv store.KV) (name, endpoint string, ok bool) {
	var d connectionDoc
	if json.Unmarshal(kv.Value, &d) != nil || d.Properties.PrivateEndpoint.ID == "" {
		return "", "", false
	}
	return d.Name, d.Properties.PrivateEndpoint.ID, true
}

// HasConnections reports whether target has any private endpoint
// connection, in any state.
func HasConnections(r arm.Reader, target arm.ResourceID) (bool, error) {
	kvs, err := r.List(arm.CollectionPrefix(target.ChildCollection(Segment)))
	if err != nil {
		return false, fmt.Errorf("list private endpoint connections of %s: %w", target, err)
	}
	return len(kvs) > 0, nil
}

// RequestConnection records, in tx, the connection of endpoint (its ID in
// canonical casing) on target with state st: the endpoint's existing
// connection document is updated, or a new one named
// "{endpoint name}.{guid}" is created. caller is who asks (the
// connection's systemData). The caller writes st on the endpoint itself:
// the endpoint's document is being written in the same transaction.
func RequestConnection(tx store.Tx, target *Target, endpoint arm.ResourceID, st ConnectionState, caller *arm.Caller) (*Connection, error) {
	if target == nil || target.Kind == nil {
		return nil, fmt.Errorf("request connection of %s: no target", endpoint)
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
			ID: target.ID.Child(Segment, name).String(), Name: name, Type: target.Kind.Type + "/" + Segment,
			SystemData: arm.NewSystemData(caller, now),
		}
	} else {
		doc.SystemData.Touch(caller, now)
	}
	link := doc.Properties.LinkIdentifier
	if target.Kind.LinkIdentifiers && link == "" {
		link = newLinkIdentifier()
	}
	doc.Properties = connectionProps{
		PrivateEndpoint: endpointRef{ID: endpoint.String()},
		State:           st, ProvisioningState: "Succeeded", LinkIdentifier: link,
	}
	if target.Kind.GroupID != "" {
		doc.Properties.GroupIDs = []string{target.Kind.GroupID}
	}
	if err := arm.Save(tx, target.ID.Child(Segment, doc.Name), doc); err != nil {
		return nil, err
	}
	return doc.public(target.ID), nil
}

// RemoveConnection deletes, in tx, the connection of endpoint on target,
// if there is one. The endpoint is going: nothing is mirrored.
func RemoveConnection(tx store.Tx, target, endpoint arm.ResourceID) error {
	docs, err := loadConnections(tx, target)
	if err != nil {
		return err
	}
	for _, d := range docs {
		if strings.EqualFold(d.Properties.PrivateEndpoint.ID, endpoint.String()) {
			if err := arm.Delete(tx, target.Child(Segment, d.Name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// DisconnectAll shows every endpoint of a target that is going away as
// Disconnected, for reason; the connection documents go with the
// target's.
func DisconnectAll(tx store.Tx, target arm.ResourceID, reason string) error {
	docs, err := loadConnections(tx, target)
	if err != nil {
		return err
	}
	for _, d := range docs {
		if err := mirror(tx, target, d.Properties.PrivateEndpoint.ID, Disconnected(reason)); err != nil {
			return err
		}
	}
	return nil
}

// mirror writes st as the privateLinkServiceConnectionState of the
// private endpoint endpoint (its ID as stored), when that endpoint still
// exists and still targets target. The endpoint may be in any
// subscription; it gets a new etag, as any change of a network resource.
func mirror(tx store.Tx, target arm.ResourceID, endpoint string, st ConnectionState) error {
	id, err := arm.ParseID(endpoint)
	if err != nil || !strings.EqualFold(id.Type(), typeEndpoint) || len(id.Names) != 1 {
		return nil // not an endpoint the network provider recorded: nothing to mirror
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
				!strings.EqualFold(*c.Properties.PrivateLinkServiceID, target.String()) {
				continue
			}
			c.Properties.PrivateLinkServiceConnectionState = &armnetwork.PrivateLinkServiceConnectionState{
				Status: &st.Status, Description: &st.Description, ActionsRequired: &st.ActionsRequired,
			}
			c.Etag = &etag
			changed = true
		}
	}
	if !changed {
		return nil
	}
	pe.Etag = &etag
	return arm.Save(tx, id, &pe)
}

func (d *connectionDoc) public(target arm.ResourceID) *Connection {
	return &Connection{ID: target.Child(Segment, d.Name), Endpoint: d.Properties.PrivateEndpoint.ID, State: d.Properties.State,
		LinkIdentifier: d.Properties.LinkIdentifier}
}

// newLinkIdentifier draws a connection's link ID: a random 32-bit number
// other than 0, in decimal.
func newLinkIdentifier() string {
	var b [4]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on Linux
		}
		if v := binary.LittleEndian.Uint32(b[:]); v != 0 {
			return strconv.FormatUint(uint64(v), 10)
		}
	}
}

// ParseLinkIdentifier reads a stored link ID: ok false when s is none.
func ParseLinkIdentifier(s string) (uint32, bool) {
	v, err := strconv.ParseUint(s, 10, 32)
	return uint32(v), err == nil && v != 0
}

func loadConnections(r arm.Reader, target arm.ResourceID) ([]connectionDoc, error) {
	return arm.LoadAll[connectionDoc](r, target.ChildCollection(Segment))
}

// Views returns a target's connections as its GET shows them inline
// (properties.privateEndpointConnections).
func Views(r arm.Reader, target arm.ResourceID) ([]json.RawMessage, error) {
	docs, err := loadConnections(r, target)
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
		return "", nil, nil, missing(target, "A connection's privateLinkServiceConnectionState")
	}
	st := in.Properties.State
	if st.Status == nil || strings.TrimSpace(*st.Status) == "" {
		return "", nil, nil, missing(target+".status", "The connection's status (Approved or Rejected)")
	}
	allowed := []string{StatusApproved, StatusRejected, StatusPending}
	for _, a := range allowed {
		if strings.EqualFold(strings.TrimSpace(*st.Status), a) {
			status = a
		}
	}
	if status == "" {
		return "", nil, nil, invalid(target+".status", "Invalid value given for parameter %s.status: '%s'. Allowed values: %s.",
			target, *st.Status, strings.Join(allowed, ", "))
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"description", st.Description}, {"actionsRequired", st.ActionsRequired}} {
		if f.v != nil && utf8.RuneCountInString(*f.v) > maxStateDescription {
			return "", nil, nil, invalid(target+"."+f.name, "Invalid value given for parameter %s: it has %d characters; keep it to %d.",
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

// transition applies a decision of the target's owner to the current
// state: Pending may become Approved or Rejected, Approved may become
// Rejected, and a status may be confirmed (updating its texts). A
// Rejected connection stays rejected until its endpoint's owner
// re-requests it.
func (k *Kind) transition(cur ConnectionState, status string, description, actions *string, c *arm.Caller) (ConnectionState, error) {
	const target = "properties.privateLinkServiceConnectionState.status"
	switch {
	case status == cur.Status:
	case cur.Status == StatusPending && (status == StatusApproved || status == StatusRejected):
	case cur.Status == StatusApproved && status == StatusRejected:
	case cur.Status == StatusRejected:
		return cur, invalid(target, "Invalid value given for parameter status: '%s'. The connection was rejected and cannot become %s on the %s's side; the private endpoint's owner can re-request it by updating the private endpoint.", status, status, k.Noun)
	default:
		return cur, invalid(target, "Invalid value given for parameter status: '%s'. A connection that is %s can become Rejected; it cannot go back to %s.", status, cur.Status, status)
	}
	by, _ := c.Name()
	if by == "" {
		by = "the " + k.Noun + "'s owner"
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

func missing(target, what string) error {
	return arm.BadRequest(codeMissing, target, "%s is required: set %s.", what, target)
}

func invalid(target, format string, args ...any) error {
	return arm.BadRequest(codeInvalidValue, target, format, args...)
}

func childNotFound(id arm.ResourceID) error {
	return arm.Errorf(http.StatusNotFound, "ResourceNotFound",
		"The requested resource of type '%s' with name '%s' was not found.", id.Type(), id.Name())
}

// ConnectionLinkIdentifier decodes a stored connection document's private
// endpoint ID and link ID (Kind.LinkIdentifiers). ok is false when it has
// none.
func ConnectionLinkIdentifier(kv store.KV) (endpoint string, link uint32, ok bool) {
	var d connectionDoc
	if json.Unmarshal(kv.Value, &d) != nil || d.Properties.PrivateEndpoint.ID == "" {
		return "", 0, false
	}
	link, ok = ParseLinkIdentifier(d.Properties.LinkIdentifier)
	return d.Properties.PrivateEndpoint.ID, link, ok
}
