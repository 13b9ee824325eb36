package postgres

import (
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/provider/privatelink"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/testkit"
)

// The network provider's side of private endpoints has its own tests
// (internal/provider/network); these drive the server side through the
// functions it calls, with a stand-in endpoint document.

func endpointID(t *testing.T, rg, name string) arm.ResourceID {
	t.Helper()
	id, err := arm.ParseID("/subscriptions/" + sub2 + "/resourceGroups/" + rg + "/providers/Microsoft.Network/privateEndpoints/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// connect stores a stand-in endpoint to server and requests its
// connection with st, as the network provider does.
func (e *env) connect(server, endpoint arm.ResourceID, st privatelink.ConnectionState) *privatelink.Connection {
	e.t.Helper()
	var c *privatelink.Connection
	_, err := e.st.Txn(e.ctx, func(tx store.Tx) error {
		pe := armnetwork.PrivateEndpoint{ID: to.Ptr(endpoint.String()), Name: to.Ptr(endpoint.Name()), Properties: &armnetwork.PrivateEndpointProperties{
			ManualPrivateLinkServiceConnections: []*armnetwork.PrivateLinkServiceConnection{{
				Name: to.Ptr("conn"), Properties: &armnetwork.PrivateLinkServiceConnectionProperties{PrivateLinkServiceID: to.Ptr(server.String()),
					PrivateLinkServiceConnectionState: &armnetwork.PrivateLinkServiceConnectionState{Status: to.Ptr(st.Status)}},
			}},
		}}
		if err := arm.Save(tx, endpoint, &pe); err != nil {
			return err
		}
		target, err := privatelink.NewKinds(Kind).Lookup(tx, server)
		if err != nil {
			return err
		}
		if target == nil {
			return arm.NotFound(server)
		}
		c, err = privatelink.RequestConnection(tx, target, endpoint, st, &arm.Caller{ClientID: "c"})
		return err
	})
	if err != nil || c == nil {
		e.t.Fatalf("connect: %v %v", c, err)
	}
	return c
}

// mirrored is the state the stand-in endpoint shows.
func (e *env) mirrored(endpoint arm.ResourceID) armnetwork.PrivateLinkServiceConnectionState {
	e.t.Helper()
	var pe armnetwork.PrivateEndpoint
	if ok, err := arm.Load(arm.ReadOnly(e.ctx, e.st), endpoint, &pe); err != nil || !ok {
		e.t.Fatalf("load endpoint: %v %v", ok, err)
	}
	return *pe.Properties.ManualPrivateLinkServiceConnections[0].Properties.PrivateLinkServiceConnectionState
}

func TestConnectionsServerSide(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustCreate("rg", "srv1")
	server := serverID(t, "rg", "srv1")
	f, err := pg.NewClientFactory(sub, e.srv.Cred, e.srv.Options)
	if err != nil {
		t.Fatal(err)
	}
	conns := f.NewPrivateEndpointConnectionsClient()

	if tg, err := lookupTarget(arm.ReadOnly(e.ctx, e.st), serverID(t, "RG", "SRV1")); err != nil || tg == nil ||
		tg.ID.String() != server.String() || tg.Name != "srv1" || tg.FQDN != "srv1.postgres.database.azure.com" {
		t.Fatalf("lookupTarget = %+v %v", tg, err)
	}
	if tg, err := lookupTarget(arm.ReadOnly(e.ctx, e.st), serverID(t, "rg", "nosuch")); err != nil || tg != nil {
		t.Fatalf("LookupTarget of nothing = %+v %v", tg, err)
	}

	pe := endpointID(t, "crg", "pe1")
	c := e.connect(server, pe, Kind.AwaitingApproval("hello"))
	if !strings.HasPrefix(c.ID.Name(), "pe1.") || c.State.Status != privatelink.StatusPending || c.State.Description != "Awaiting approval by the server's owner: hello" {
		t.Fatalf("connection = %+v", c)
	}
	got, err := conns.Get(e.ctx, "rg", "srv1", c.ID.Name(), nil)
	if err != nil || str(got.ID) != c.ID.String() || str(got.Properties.PrivateEndpoint.ID) != pe.String() ||
		str(got.SystemData.CreatedBy) != "c" {
		t.Fatalf("get = %+v %v", got, err)
	}
	s, err := e.servers.Get(e.ctx, "rg", "srv1", nil)
	if err != nil || len(s.Properties.PrivateEndpointConnections) != 1 {
		t.Fatalf("inline = %+v %v", s.Properties.PrivateEndpointConnections, err)
	}

	// With a connection, HA and replicas are refused for that reason.
	_, err = e.update("rg", "srv1", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{
		HighAvailability: &pg.HighAvailabilityForPatch{Mode: to.Ptr(pg.HighAvailabilityModeSameZone)}}})
	if re := testkit.WantResponseError(t, err, http.StatusBadRequest, codePrivateEndpoints); !strings.Contains(re.Error(), "private endpoint") {
		t.Errorf("error = %v", re)
	}

	// Approve: mirrored on the endpoint.
	p, err := conns.BeginUpdate(e.ctx, "rg", "srv1", c.ID.Name(), pg.PrivateEndpointConnection{Properties: &pg.PrivateEndpointConnectionProperties{
		PrivateLinkServiceConnectionState: &pg.PrivateLinkServiceConnectionState{Status: to.Ptr(pg.PrivateEndpointServiceConnectionStatusApproved), ActionsRequired: to.Ptr("Rotate the password")}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.PollUntilDone(e.ctx, poll)
	if err != nil || str(res.Properties.PrivateLinkServiceConnectionState.Description) != "Approved by c" ||
		str(res.Properties.PrivateLinkServiceConnectionState.ActionsRequired) != "Rotate the password" {
		t.Fatalf("approve = %+v %v", res.Properties, err)
	}
	if m := e.mirrored(pe); str(m.Status) != privatelink.StatusApproved || str(m.Description) != "Approved by c" || str(m.ActionsRequired) != "Rotate the password" {
		t.Errorf("mirrored = %+v", m)
	}

	// Delete on the server's side: Disconnected, and HA is not-offered again.
	d, err := conns.BeginDelete(e.ctx, "rg", "srv1", c.ID.Name(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.PollUntilDone(e.ctx, poll); err != nil {
		t.Fatal(err)
	}
	if m := e.mirrored(pe); str(m.Status) != privatelink.StatusDisconnected || !strings.Contains(str(m.Description), "deleted on server 'srv1'") {
		t.Errorf("mirrored after delete = %+v", m)
	}
	_, err = e.update("rg", "srv1", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{
		HighAvailability: &pg.HighAvailabilityForPatch{Mode: to.Ptr(pg.HighAvailabilityModeSameZone)}}})
	testkit.WantResponseError(t, err, http.StatusBadRequest, codeFeatureNotSupported)
	_, err = conns.Get(e.ctx, "rg", "srv1", c.ID.Name(), nil)
	testkit.WantResponseError(t, err, http.StatusNotFound, "ResourceNotFound")

	// RemoveConnection, as an endpoint delete does.
	pe2 := endpointID(t, "crg", "pe2")
	e.connect(server, pe2, privatelink.AutoApproved())
	if _, err := e.st.Txn(e.ctx, func(tx store.Tx) error { return privatelink.RemoveConnection(tx, server, pe2) }); err != nil {
		t.Fatal(err)
	}
	if has, err := privatelink.HasConnections(arm.ReadOnly(e.ctx, e.st), server); err != nil || has {
		t.Errorf("HasConnections after RemoveConnection = %v %v", has, err)
	}

	// Deleting the server: Disconnected, the connections go with it.
	pe3 := endpointID(t, "crg", "pe3")
	e.connect(server, pe3, privatelink.AutoApproved())
	if err := e.deleteServer("rg", "srv1"); err != nil {
		t.Fatal(err)
	}
	if m := e.mirrored(pe3); str(m.Status) != privatelink.StatusDisconnected || str(m.Description) != "Server 'srv1' was deleted" || str(m.ActionsRequired) == "" {
		t.Errorf("mirrored after server delete = %+v", m)
	}
	if keys := e.keys("arm/" + sub + "/microsoft.dbforpostgresql:flexibleservers:privateendpointconnections/"); len(keys) != 0 {
		t.Errorf("connection documents left: %v", keys)
	}
	_, err = conns.Get(e.ctx, "rg", "srv1", c.ID.Name(), nil)
	testkit.WantResponseError(t, err, http.StatusNotFound, "ParentResourceNotFound")
}

// TestReplicaFromServerWithEndpoints: createMode Replica, PointInTimeRestore
// and GeoRestore from a server with connections name private endpoints.
func TestReplicaFromServerWithEndpoints(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustCreate("rg", "src")
	e.connect(serverID(t, "rg", "src"), endpointID(t, "crg", "pe1"), Kind.AwaitingApproval(""))
	for _, mode := range []pg.CreateMode{pg.CreateModeReplica, pg.CreateModePointInTimeRestore, pg.CreateModeGeoRestore} {
		body := serverBody()
		body.Properties.CreateMode = to.Ptr(mode)
		body.Properties.SourceServerResourceID = to.Ptr(serverPath("rg", "src"))
		_, err := e.create("rg", "copy", body)
		if re := testkit.WantResponseError(t, err, http.StatusBadRequest, codePrivateEndpoints); !strings.Contains(re.Error(), "properties.sourceServerResourceId") {
			t.Errorf("%s: %v", mode, re)
		}
	}
	// A garbage source falls through to the not-offered answer.
	body := serverBody()
	body.Properties.CreateMode = to.Ptr(pg.CreateModeReplica)
	body.Properties.SourceServerResourceID = to.Ptr("not an id")
	_, err := e.create("rg", "copy", body)
	testkit.WantResponseError(t, err, http.StatusBadRequest, codeFeatureNotSupported)
}
