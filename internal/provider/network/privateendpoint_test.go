package network

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/testkit"
)

// TestEndpointAutoApproved: an endpoint whose caller may write the server
// is Approved at once, with its NIC, address and customDnsConfigs, and the
// server lists the connection, inline too.
func TestEndpointAutoApproved(t *testing.T) {
	e := newPEEnv(t)
	o := e.as("owner", sub)
	e.group(o, "rg")
	e.network(o, "rg", "vnet")
	e.server(o, "rg", "srv1")
	server := serverIDIn(sub, "rg", "srv1")

	pe := e.mustEndpoint(o, "rg", "pe1", endpointBody(subnetIDIn(sub, "rg", "vnet", "pe"), server, false, ""))
	wantState(t, pe, "Approved", "Auto-Approved")
	if s := connState(pe); str(s.ActionsRequired) != "None" {
		t.Errorf("actionsRequired = %q", str(s.ActionsRequired))
	}
	p := pe.Properties
	if str(pe.ID) != resID("rg", "privateEndpoints", "pe1") || str(pe.Type) != "Microsoft.Network/privateEndpoints" ||
		*p.ProvisioningState != armnetwork.ProvisioningStateSucceeded || len(p.ManualPrivateLinkServiceConnections) != 0 {
		t.Fatalf("endpoint = %+v", pe)
	}
	c := p.PrivateLinkServiceConnections[0]
	if str(c.ID) != resID("rg", "privateEndpoints", "pe1")+"/privateLinkServiceConnections/conn" ||
		str(c.Properties.PrivateLinkServiceID) != server || str(c.Properties.GroupIDs[0]) != "postgresqlServer" {
		t.Errorf("connection = %+v", c.Properties)
	}
	if len(p.NetworkInterfaces) != 1 || !regexp.MustCompile(`/networkInterfaces/pe1\.nic\.[0-9a-f-]{36}$`).MatchString(str(p.NetworkInterfaces[0].ID)) {
		t.Fatalf("networkInterfaces = %v", p.NetworkInterfaces)
	}
	if len(p.CustomDNSConfigs) != 1 || str(p.CustomDNSConfigs[0].Fqdn) != "srv1.postgres.database.azure.com" ||
		len(p.CustomDNSConfigs[0].IPAddresses) != 1 || str(p.CustomDNSConfigs[0].IPAddresses[0]) != "10.0.1.4" {
		t.Errorf("customDnsConfigs = %+v", p.CustomDNSConfigs)
	}

	nicID, _ := arm.ParseID(str(p.NetworkInterfaces[0].ID))
	nic, err := o.nics.Get(e.ctx, "rg", nicID.Name(), nil)
	if err != nil {
		t.Fatal(err)
	}
	np := nic.Properties
	ic := np.IPConfigurations[0]
	if str(np.PrivateEndpoint.ID) != str(pe.ID) || str(ic.Properties.PrivateIPAddress) != "10.0.1.4" ||
		*ic.Properties.PrivateIPAllocationMethod != armnetwork.IPAllocationMethodDynamic ||
		!strings.HasPrefix(str(ic.Name), "privateEndpointIpConfig.") {
		t.Errorf("nic = %+v / %+v", np, ic.Properties)
	}
	if lc := ic.Properties.PrivateLinkConnectionProperties; lc == nil || str(lc.GroupID) != "postgresqlServer" ||
		str(lc.RequiredMemberName) != "postgresqlServer" || len(lc.Fqdns) != 1 || str(lc.Fqdns[0]) != "srv1.postgres.database.azure.com" {
		t.Errorf("privateLinkConnectionProperties = %+v", lc)
	}

	// The server side.
	conns := e.connections(o, "rg", "srv1")
	if len(conns) != 1 {
		t.Fatalf("server connections = %d", len(conns))
	}
	sc := conns[0]
	if !regexp.MustCompile(`^pe1\.[0-9a-f-]{36}$`).MatchString(str(sc.Name)) || str(sc.ID) != server+"/privateEndpointConnections/"+str(sc.Name) ||
		str(sc.Type) != "Microsoft.DBforPostgreSQL/flexibleServers/privateEndpointConnections" ||
		str(sc.Properties.PrivateEndpoint.ID) != str(pe.ID) || *sc.Properties.PrivateLinkServiceConnectionState.Status != pg.PrivateEndpointServiceConnectionStatusApproved ||
		str(sc.Properties.PrivateLinkServiceConnectionState.Description) != "Auto-Approved" || str(sc.Properties.GroupIDs[0]) != "postgresqlServer" ||
		*sc.Properties.ProvisioningState != pg.PrivateEndpointConnectionProvisioningStateSucceeded {
		t.Errorf("server connection = %+v", sc.Properties)
	}
	got, err := o.conns.Get(e.ctx, "rg", "srv1", str(sc.Name), nil)
	if err != nil || str(got.ID) != str(sc.ID) {
		t.Errorf("get connection = %v %v", got.ID, err)
	}
	srv, err := o.servers.Get(e.ctx, "rg", "srv1", nil)
	if err != nil || len(srv.Properties.PrivateEndpointConnections) != 1 || str(srv.Properties.PrivateEndpointConnections[0].ID) != str(sc.ID) {
		t.Errorf("server inline connections = %+v %v", srv.Properties.PrivateEndpointConnections, err)
	}

	// The subnet's back-reference, the lists.
	sn, err := o.subnets.Get(e.ctx, "rg", "vnet", "pe", nil)
	if err != nil || len(sn.Properties.PrivateEndpoints) != 1 || str(sn.Properties.PrivateEndpoints[0].ID) != str(pe.ID) ||
		len(sn.Properties.IPConfigurations) != 1 {
		t.Errorf("subnet = %+v %v", sn.Properties, err)
	}
	byRG := collect(t, e.ctx, o.endpoints.NewListPager("rg", nil), func(p armnetwork.PrivateEndpointsClientListResponse) []*armnetwork.PrivateEndpoint { return p.Value })
	bySub := collect(t, e.ctx, o.endpoints.NewListBySubscriptionPager(nil), func(p armnetwork.PrivateEndpointsClientListBySubscriptionResponse) []*armnetwork.PrivateEndpoint {
		return p.Value
	})
	if len(byRG) != 1 || len(bySub) != 1 || str(byRG[0].ID) != str(pe.ID) || *byRG[0].Properties.ProvisioningState != armnetwork.ProvisioningStateSucceeded {
		t.Errorf("lists = %d %d", len(byRG), len(bySub))
	}

	// An update keeps the address, the NIC and the decision; tags patch.
	body := endpointBody(subnetIDIn(sub, "rg", "vnet", "pe"), server, false, "")
	body.Tags = map[string]*string{"a": to.Ptr("b")}
	pe2 := e.mustEndpoint(o, "rg", "pe1", body)
	if str(pe2.Properties.NetworkInterfaces[0].ID) != str(p.NetworkInterfaces[0].ID) || str(pe2.Properties.CustomDNSConfigs[0].IPAddresses[0]) != "10.0.1.4" ||
		str(pe2.Tags["a"]) != "b" || str(pe2.Etag) == str(pe.Etag) {
		t.Errorf("updated endpoint = %+v", pe2)
	}
	wantState(t, pe2, "Approved", "Auto-Approved")
	if n := len(e.connections(o, "rg", "srv1")); n != 1 {
		t.Errorf("connections after update = %d", n)
	}
	// armnetwork has no PATCH for endpoints; other clients send one.
	code, b, h := e.rawAs("owner", http.MethodPatch, resID("rg", "privateEndpoints", "pe1")+"?api-version=2025-01-01", `{"tags":{"c":"d"}}`)
	var patched armnetwork.PrivateEndpoint
	if err := json.Unmarshal(b, &patched); err != nil || code != http.StatusOK || h.Get("Azure-AsyncOperation") != "" ||
		str(patched.Tags["c"]) != "d" || len(patched.Tags) != 1 || *patched.Properties.ProvisioningState != armnetwork.ProvisioningStateSucceeded {
		t.Errorf("patch = %d %s", code, b)
	}
}

// TestEndpointPending: a manual connection waits with its request message;
// so does an automatic one whose caller may not write the server, and
// that caller cannot approve it.
func TestEndpointPending(t *testing.T) {
	e := newPEEnv(t)
	o, n := e.as("owner", sub), e.as("netadmin", sub)
	e.group(o, "rg")
	e.network(o, "rg", "vnet")
	e.server(o, "rg", "srv1")
	server, subnet := serverIDIn(sub, "rg", "srv1"), subnetIDIn(sub, "rg", "vnet", "pe")

	manual := e.mustEndpoint(o, "rg", "manual", endpointBody(subnet, server, true, "please let team A in"))
	wantState(t, manual, "Pending", "Awaiting approval", "please let team A in")
	if s := connState(manual); str(s.ActionsRequired) != "Approve or reject the connection on the server" {
		t.Errorf("actionsRequired = %q", str(s.ActionsRequired))
	}
	if c := manual.Properties.ManualPrivateLinkServiceConnections[0]; str(c.Properties.RequestMessage) != "please let team A in" ||
		!strings.HasSuffix(str(c.ID), "/manualPrivateLinkServiceConnections/conn") || len(manual.Properties.PrivateLinkServiceConnections) != 0 {
		t.Errorf("manual connection = %+v", c)
	}

	auto := e.mustEndpoint(n, "rg", "byNetadmin", endpointBody(subnet, server, false, ""))
	wantState(t, auto, "Pending", "Awaiting approval")
	if ip := str(auto.Properties.CustomDNSConfigs[0].IPAddresses[0]); ip != "10.0.1.5" {
		t.Errorf("second endpoint's address = %s", ip)
	}
	conns := e.connections(o, "rg", "srv1")
	if len(conns) != 2 {
		t.Fatalf("connections = %d", len(conns))
	}
	var mine string
	for _, c := range conns {
		if strings.HasPrefix(str(c.Name), "byNetadmin.") {
			mine = str(c.Name)
		}
		if *c.Properties.PrivateLinkServiceConnectionState.Status != pg.PrivateEndpointServiceConnectionStatusPending {
			t.Errorf("%s = %s", str(c.Name), *c.Properties.PrivateLinkServiceConnectionState.Status)
		}
	}
	// The network contributor may neither approve nor delete it.
	_, err := e.decide(n, "rg", "srv1", mine, pg.PrivateEndpointServiceConnectionStatusApproved, "")
	testkit.WantARMError(t, err, http.StatusForbidden, "AuthorizationFailed")
	testkit.WantARMError(t, e.deleteConnection(n, "rg", "srv1", mine), http.StatusForbidden, "AuthorizationFailed")
	// Nor may a principal allowed privateEndpointConnections/write but
	// not to write the server: the router lets it through, the handler
	// does not.
	cw := e.as("connwriter", sub)
	_, err = e.decide(cw, "rg", "srv1", mine, pg.PrivateEndpointServiceConnectionStatusApproved, "")
	wantTarget(t, testkit.WantARMError(t, err, http.StatusForbidden, "AuthorizationFailed"), "", "Microsoft.DBforPostgreSQL/flexibleServers/write")
	testkit.WantARMError(t, e.deleteConnection(cw, "rg", "srv1", mine), http.StatusForbidden, "AuthorizationFailed")
	wantState(t, e.getEndpoint(n, "rg", "byNetadmin"), "Pending")
	// The owner approves it.
	sc, err := e.decide(o, "rg", "srv1", mine, pg.PrivateEndpointServiceConnectionStatusApproved, "")
	if err != nil || *sc.Properties.PrivateLinkServiceConnectionState.Status != pg.PrivateEndpointServiceConnectionStatusApproved ||
		str(sc.Properties.PrivateLinkServiceConnectionState.Description) != "Approved by c-owner" ||
		str(sc.Properties.PrivateLinkServiceConnectionState.ActionsRequired) != "None" {
		t.Fatalf("approve = %+v %v", sc.Properties, err)
	}
	wantState(t, e.getEndpoint(n, "rg", "byNetadmin"), "Approved", "Approved by c-owner")
}

// TestEndpointCrossTenant: an endpoint of another tenant, in a network of
// its own with the same address space, waits; its owner can neither see
// nor approve the server's connection; the server's owner approves it.
func TestEndpointCrossTenant(t *testing.T) {
	e := newPEEnv(t)
	o, c := e.as("owner", sub), e.as("consumer", sub2)
	e.group(o, "rg")
	e.network(o, "rg", "vnet")
	e.server(o, "rg", "srv1")
	server := serverIDIn(sub, "rg", "srv1")
	own := e.mustEndpoint(o, "rg", "pe-own", endpointBody(subnetIDIn(sub, "rg", "vnet", "pe"), server, false, ""))
	wantState(t, own, "Approved")

	e.group(c, "crg")
	e.network(c, "crg", "cvnet")
	theirs := e.mustEndpoint(c, "crg", "pe-theirs", endpointBody(subnetIDIn(sub2, "crg", "cvnet", "pe"), server, false, "from tenant two"))
	wantState(t, theirs, "Pending", "from tenant two")
	if ip := str(theirs.Properties.CustomDNSConfigs[0].IPAddresses[0]); ip != "10.0.1.4" {
		t.Errorf("address in the consumer's own network = %s, want 10.0.1.4", ip)
	}

	var name string
	for _, sc := range e.connections(o, "rg", "srv1") {
		if strings.EqualFold(str(sc.Properties.PrivateEndpoint.ID), str(theirs.ID)) {
			name = str(sc.Name)
		}
	}
	if name == "" {
		t.Fatal("the server does not list the consumer's connection")
	}
	// The consumer has no role in the server's subscription.
	cs := e.as("consumer", sub)
	_, err := cs.conns.Get(e.ctx, "rg", "srv1", name, nil)
	testkit.WantARMError(t, err, http.StatusForbidden, "AuthorizationFailed")
	_, err = e.decide(cs, "rg", "srv1", name, pg.PrivateEndpointServiceConnectionStatusApproved, "")
	testkit.WantARMError(t, err, http.StatusForbidden, "AuthorizationFailed")
	wantState(t, e.getEndpoint(c, "crg", "pe-theirs"), "Pending")

	if _, err := e.decide(o, "rg", "srv1", name, pg.PrivateEndpointServiceConnectionStatusApproved, "welcome"); err != nil {
		t.Fatal(err)
	}
	wantState(t, e.getEndpoint(c, "crg", "pe-theirs"), "Approved", "welcome")
	wantState(t, e.getEndpoint(o, "rg", "pe-own"), "Approved", "Auto-Approved")

	// Deleting the consumer's resource group takes its connection off the
	// server.
	if err := e.deleteGroup(c, "crg"); err != nil {
		t.Fatal(err)
	}
	if conns := e.connections(o, "rg", "srv1"); len(conns) != 1 || !strings.EqualFold(str(conns[0].Properties.PrivateEndpoint.ID), str(own.ID)) {
		t.Errorf("connections after the consumer's group went = %d", len(conns))
	}
	if kvs, _, err := e.st.List(e.ctx, EndpointDNSIndexPrefix+"/"); err != nil || len(kvs) != 0 {
		t.Errorf("zone group index = %v %v", kvs, err)
	}
}

// TestConnectionStates walks the state machine: reject, re-request,
// approve, approved to rejected, and the transitions that are refused.
func TestConnectionStates(t *testing.T) {
	e := newPEEnv(t)
	o := e.as("owner", sub)
	e.group(o, "rg")
	e.network(o, "rg", "vnet")
	e.server(o, "rg", "srv1")
	body := endpointBody(subnetIDIn(sub, "rg", "vnet", "pe"), serverIDIn(sub, "rg", "srv1"), true, "hello")
	e.mustEndpoint(o, "rg", "pe1", body)
	name := str(e.connections(o, "rg", "srv1")[0].Name)

	sc, err := e.decide(o, "rg", "srv1", name, pg.PrivateEndpointServiceConnectionStatusRejected, "not this one")
	if err != nil || str(sc.Properties.PrivateLinkServiceConnectionState.Description) != "not this one" {
		t.Fatalf("reject = %+v %v", sc.Properties, err)
	}
	pe := e.getEndpoint(o, "rg", "pe1")
	wantState(t, pe, "Rejected", "not this one")
	if s := connState(pe); !strings.Contains(str(s.ActionsRequired), "Re-request") {
		t.Errorf("actionsRequired = %q", str(s.ActionsRequired))
	}
	// A rejected connection cannot be approved on the server's side.
	_, err = e.decide(o, "rg", "srv1", name, pg.PrivateEndpointServiceConnectionStatusApproved, "")
	if b := testkit.WantARMError(t, err, http.StatusBadRequest, "InvalidParameterValue"); b.Target != "properties.privateLinkServiceConnectionState.status" || !strings.Contains(b.Message, "re-request") {
		t.Errorf("error = %+v", b)
	}
	// The endpoint's owner re-requests it.
	wantState(t, e.mustEndpoint(o, "rg", "pe1", body), "Pending", "hello")
	conns := e.connections(o, "rg", "srv1")
	if len(conns) != 1 || str(conns[0].Name) != name || *conns[0].Properties.PrivateLinkServiceConnectionState.Status != pg.PrivateEndpointServiceConnectionStatusPending {
		t.Fatalf("after re-request = %+v", conns)
	}
	if _, err := e.decide(o, "rg", "srv1", name, pg.PrivateEndpointServiceConnectionStatusApproved, ""); err != nil {
		t.Fatal(err)
	}
	wantState(t, e.getEndpoint(o, "rg", "pe1"), "Approved", "Approved by c-owner")
	// Approved cannot go back to Pending; it can be rejected.
	_, err = e.decide(o, "rg", "srv1", name, pg.PrivateEndpointServiceConnectionStatusPending, "")
	testkit.WantARMError(t, err, http.StatusBadRequest, "InvalidParameterValue")
	// Confirming the current status changes nothing.
	sc, err = e.decide(o, "rg", "srv1", name, pg.PrivateEndpointServiceConnectionStatusApproved, "")
	if err != nil || str(sc.Properties.PrivateLinkServiceConnectionState.Description) != "Approved by c-owner" {
		t.Errorf("confirm = %+v %v", sc.Properties, err)
	}
	if _, err := e.decide(o, "rg", "srv1", name, pg.PrivateEndpointServiceConnectionStatusRejected, ""); err != nil {
		t.Fatal(err)
	}
	wantState(t, e.getEndpoint(o, "rg", "pe1"), "Rejected", "Rejected by c-owner")

	// Bad bodies.
	path := serverIDIn(sub, "rg", "srv1") + "/privateEndpointConnections/" + name + "?api-version=2025-08-01"
	for _, c := range []struct{ body, code, target string }{
		{`{"properties":{}}`, "MissingRequiredParameter", "properties.privateLinkServiceConnectionState"},
		{`{"properties":{"privateLinkServiceConnectionState":{}}}`, "MissingRequiredParameter", "properties.privateLinkServiceConnectionState.status"},
		{`{"properties":{"privateLinkServiceConnectionState":{"status":"Disconnected"}}}`, "InvalidParameterValue", "properties.privateLinkServiceConnectionState.status"},
	} {
		code, b, _ := e.rawAs("owner", http.MethodPut, path, c.body)
		var res struct{ Error testkit.ARMError }
		_ = json.Unmarshal(b, &res)
		if code != http.StatusBadRequest || res.Error.Code != c.code || res.Error.Target != c.target {
			t.Errorf("PUT %s = %d %s", c.body, code, b)
		}
	}
	// A connection that does not exist.
	_, err = e.decide(o, "rg", "srv1", "nope.00000000-0000-0000-0000-000000000000", pg.PrivateEndpointServiceConnectionStatusApproved, "")
	testkit.WantARMError(t, err, http.StatusNotFound, "ResourceNotFound")
}

// TestConnectionDeletes: deleting the connection on the server's side
// leaves the endpoint Disconnected (and it may re-request); deleting the
// endpoint removes the connection; deleting the server leaves its
// endpoints Disconnected, and a new server of the same name takes a
// re-request.
func TestConnectionDeletes(t *testing.T) {
	e := newPEEnv(t)
	o := e.as("owner", sub)
	e.group(o, "rg")
	e.network(o, "rg", "vnet")
	e.server(o, "rg", "srv1")
	body := endpointBody(subnetIDIn(sub, "rg", "vnet", "pe"), serverIDIn(sub, "rg", "srv1"), false, "")
	pe := e.mustEndpoint(o, "rg", "pe1", body)
	name := str(e.connections(o, "rg", "srv1")[0].Name)

	if err := e.deleteConnection(o, "rg", "srv1", name); err != nil {
		t.Fatal(err)
	}
	wantState(t, e.getEndpoint(o, "rg", "pe1"), "Disconnected", "deleted on server 'srv1' by c-owner")
	if n := len(e.connections(o, "rg", "srv1")); n != 0 {
		t.Fatalf("connections = %d", n)
	}
	wantState(t, e.mustEndpoint(o, "rg", "pe1", body), "Pending")
	conns := e.connections(o, "rg", "srv1")
	if len(conns) != 1 || str(conns[0].Name) == name {
		t.Fatalf("re-requested connections = %+v", conns)
	}

	// Deleting the endpoint removes the connection and the NIC.
	if err := e.deleteEndpoint(o, "rg", "pe1"); err != nil {
		t.Fatal(err)
	}
	if n := len(e.connections(o, "rg", "srv1")); n != 0 {
		t.Errorf("connections after endpoint delete = %d", n)
	}
	nicID, _ := arm.ParseID(str(pe.Properties.NetworkInterfaces[0].ID))
	_, err := o.nics.Get(e.ctx, "rg", nicID.Name(), nil)
	testkit.WantARMError(t, err, http.StatusNotFound, "ResourceNotFound")
	sn, _ := o.subnets.Get(e.ctx, "rg", "vnet", "pe", nil)
	if len(sn.Properties.PrivateEndpoints) != 0 || len(sn.Properties.IPConfigurations) != 0 {
		t.Errorf("subnet still lists %v", sn.Properties.PrivateEndpoints)
	}

	// Deleting the server leaves its endpoints Disconnected.
	e.mustEndpoint(o, "rg", "pe2", body)
	if err := e.deleteServer(o, "rg", "srv1"); err != nil {
		t.Fatal(err)
	}
	wantState(t, e.getEndpoint(o, "rg", "pe2"), "Disconnected", "Server 'srv1' was deleted")
	// While the server is gone a PUT keeps the endpoint Disconnected.
	wantState(t, e.mustEndpoint(o, "rg", "pe2", body), "Disconnected", "srv1")
	// A new server of the same name: the endpoint re-requests its
	// connection, which the owner approves.
	e.server(o, "rg", "srv1")
	wantState(t, e.mustEndpoint(o, "rg", "pe2", body), "Pending")
	conns = e.connections(o, "rg", "srv1")
	if len(conns) != 1 {
		t.Fatalf("connections on the new server = %d", len(conns))
	}
	if _, err := e.decide(o, "rg", "srv1", str(conns[0].Name), pg.PrivateEndpointServiceConnectionStatusApproved, ""); err != nil {
		t.Fatal(err)
	}
	wantState(t, e.getEndpoint(o, "rg", "pe2"), "Approved")

	// Deleting the server's resource group also disconnects.
	e.group(o, "dbrg")
	e.server(o, "dbrg", "srv2")
	e.mustEndpoint(o, "rg", "pe3", endpointBody(subnetIDIn(sub, "rg", "vnet", "pe"), serverIDIn(sub, "dbrg", "srv2"), false, ""))
	if err := e.deleteGroup(o, "dbrg"); err != nil {
		t.Fatal(err)
	}
	wantState(t, e.getEndpoint(o, "rg", "pe3"), "Disconnected", "Server 'srv2' was deleted")
}

// TestEndpointHoldsSubnetAndNIC: a subnet with an endpoint cannot be
// deleted, and the endpoint's NIC cannot be changed or deleted by users.
func TestEndpointHoldsSubnetAndNIC(t *testing.T) {
	e := newPEEnv(t)
	o := e.as("owner", sub)
	e.group(o, "rg")
	e.network(o, "rg", "vnet")
	e.server(o, "rg", "srv1")
	pe := e.mustEndpoint(o, "rg", "pe1", endpointBody(subnetIDIn(sub, "rg", "vnet", "pe"), serverIDIn(sub, "rg", "srv1"), false, ""))

	p, err := o.subnets.BeginDelete(e.ctx, "rg", "vnet", "pe", nil)
	if err == nil {
		_, err = p.PollUntilDone(e.ctx, poll)
	}
	b := testkit.WantARMError(t, err, http.StatusBadRequest, "InUseSubnetCannotBeDeleted")
	if !strings.Contains(b.Message, str(pe.ID)) {
		t.Errorf("message %q does not name the endpoint", b.Message)
	}
	pv, err := o.vnets.BeginDelete(e.ctx, "rg", "vnet", nil)
	if err == nil {
		_, err = pv.PollUntilDone(e.ctx, poll)
	}
	testkit.WantARMError(t, err, http.StatusBadRequest, "InUseSubnetCannotBeDeleted")

	nicID, _ := arm.ParseID(str(pe.Properties.NetworkInterfaces[0].ID))
	nic, err := o.nics.Get(e.ctx, "rg", nicID.Name(), nil)
	if err != nil {
		t.Fatal(err)
	}
	pn, err := o.nics.BeginCreateOrUpdate(e.ctx, "rg", nicID.Name(), nic.Interface, nil)
	if err == nil {
		_, err = pn.PollUntilDone(e.ctx, poll)
	}
	testkit.WantARMError(t, err, http.StatusBadRequest, "CannotModifyNicAttachedToPrivateEndpoint")
	_, err = o.nics.UpdateTags(e.ctx, "rg", nicID.Name(), armnetwork.TagsObject{Tags: map[string]*string{"a": to.Ptr("b")}}, nil)
	testkit.WantARMError(t, err, http.StatusBadRequest, "CannotModifyNicAttachedToPrivateEndpoint")
	pd, err := o.nics.BeginDelete(e.ctx, "rg", nicID.Name(), nil)
	if err == nil {
		_, err = pd.PollUntilDone(e.ctx, poll)
	}
	testkit.WantARMError(t, err, http.StatusBadRequest, "CannotModifyNicAttachedToPrivateEndpoint")

	// A resource group with the network, the endpoint and the server goes
	// as a whole.
	if err := e.deleteGroup(o, "rg"); err != nil {
		t.Fatal(err)
	}
	if kvs, _, err := e.st.List(e.ctx, "arm/"+sub+"/"); err != nil || len(kvs) != 0 {
		t.Errorf("left after the group went: %d %v", len(kvs), err)
	}
}

// TestEndpointValidation covers the 400s of an endpoint PUT.
func TestEndpointValidation(t *testing.T) {
	e := newPEEnv(t)
	o := e.as("owner", sub)
	e.group(o, "rg")
	e.network(o, "rg", "vnet")
	e.server(o, "rg", "srv1")
	subnet, server := subnetIDIn(sub, "rg", "vnet", "pe"), serverIDIn(sub, "rg", "srv1")
	conn := "properties.privateLinkServiceConnections[0]"
	for _, c := range []struct {
		name, code, target, word string
		edit                     func(*armnetwork.PrivateEndpoint)
	}{
		{"group id", "InvalidGroupIdOnPrivateLinkServiceConnection", conn + ".properties.groupIds[0]", "postgresqlServer", func(pe *armnetwork.PrivateEndpoint) {
			pe.Properties.PrivateLinkServiceConnections[0].Properties.GroupIDs = []*string{to.Ptr("sqlServer")}
		}},
		{"no group id", "MissingParameterOnPrivateLinkServiceConnection", conn + ".properties.groupIds", "postgresqlServer", func(pe *armnetwork.PrivateEndpoint) {
			pe.Properties.PrivateLinkServiceConnections[0].Properties.GroupIDs = nil
		}},
		{"two group ids", "OnlyOneGroupIdPermitted", conn + ".properties.groupIds", "postgresqlServer", func(pe *armnetwork.PrivateEndpoint) {
			pe.Properties.PrivateLinkServiceConnections[0].Properties.GroupIDs = []*string{to.Ptr("postgresqlServer"), to.Ptr("x")}
		}},
		{"two connections", "OnlyOnePrivateLinkServiceConnectionPermitted", "properties.manualPrivateLinkServiceConnections[0]", "exactly one", func(pe *armnetwork.PrivateEndpoint) {
			pe.Properties.ManualPrivateLinkServiceConnections = pe.Properties.PrivateLinkServiceConnections
		}},
		{"no connection", "MissingRequiredParameter", "properties.privateLinkServiceConnections", "connection", func(pe *armnetwork.PrivateEndpoint) {
			pe.Properties.PrivateLinkServiceConnections = nil
		}},
		{"no target", "MissingParameterOnPrivateLinkServiceConnection", conn + ".properties.privateLinkServiceId", "privateLinkServiceId", func(pe *armnetwork.PrivateEndpoint) {
			pe.Properties.PrivateLinkServiceConnections[0].Properties.PrivateLinkServiceID = nil
		}},
		{"target type", "LinkedInvalidPropertyId", conn + ".properties.privateLinkServiceId", "flexibleServers", func(pe *armnetwork.PrivateEndpoint) {
			pe.Properties.PrivateLinkServiceConnections[0].Properties.PrivateLinkServiceID = to.Ptr(subnet)
		}},
		{"missing server", "InvalidResourceReference", conn + ".properties.privateLinkServiceId", "not found", func(pe *armnetwork.PrivateEndpoint) {
			pe.Properties.PrivateLinkServiceConnections[0].Properties.PrivateLinkServiceID = to.Ptr(serverIDIn(sub2, "x", "nosuch"))
		}},
		{"long message", "InvalidParameter", conn + ".properties.requestMessage", "140", func(pe *armnetwork.PrivateEndpoint) {
			pe.Properties.PrivateLinkServiceConnections[0].Properties.RequestMessage = to.Ptr(strings.Repeat("x", 141))
		}},
		{"no subnet", "MissingRequiredParameter", "properties.subnet.id", "subnet", func(pe *armnetwork.PrivateEndpoint) {
			pe.Properties.Subnet = nil
		}},
		{"missing subnet", "InvalidResourceReference", "properties.subnet.id", "not found", func(pe *armnetwork.PrivateEndpoint) {
			pe.Properties.Subnet.ID = to.Ptr(subnetIDIn(sub, "rg", "vnet", "nosuch"))
		}},
		{"member", "InvalidParameter", "properties.ipConfigurations[0].properties.memberName", "postgresqlServer", func(pe *armnetwork.PrivateEndpoint) {
			pe.Properties.IPConfigurations = []*armnetwork.PrivateEndpointIPConfiguration{{Name: to.Ptr("ip"), Properties: &armnetwork.PrivateEndpointIPConfigurationProperties{
				GroupID: to.Ptr("postgresqlServer"), MemberName: to.Ptr("other"), PrivateIPAddress: to.Ptr("10.0.1.10")}}}
		}},
		{"static outside", "PrivateIPAddressNotInSubnet", "properties.ipConfigurations[0].properties.privateIPAddress", "10.0.9.9", func(pe *armnetwork.PrivateEndpoint) {
			pe.Properties.IPConfigurations = []*armnetwork.PrivateEndpointIPConfiguration{{Name: to.Ptr("ip"), Properties: &armnetwork.PrivateEndpointIPConfigurationProperties{
				GroupID: to.Ptr("postgresqlServer"), MemberName: to.Ptr("postgresqlServer"), PrivateIPAddress: to.Ptr("10.0.9.9")}}}
		}},
		{"location", "InvalidResourceReference", "properties.subnet.id", "same region", func(pe *armnetwork.PrivateEndpoint) {
			pe.Location = to.Ptr("northeurope")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := endpointBody(subnet, server, false, "")
			c.edit(&body)
			_, err := e.putEndpoint(o, "rg", "bad", body)
			wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, c.code), c.target, c.word)
		})
	}
	if _, err := o.endpoints.Get(e.ctx, "rg", "bad", nil); err == nil {
		t.Error("a refused endpoint was stored")
	}
	if n := len(e.connections(o, "rg", "srv1")); n != 0 {
		t.Errorf("refused endpoints left %d connections", n)
	}

	// Static address and custom NIC name.
	body := endpointBody(subnet, server, false, "")
	body.Properties.CustomNetworkInterfaceName = to.Ptr("my-pe-nic")
	body.Properties.IPConfigurations = []*armnetwork.PrivateEndpointIPConfiguration{{Name: to.Ptr("ip"), Properties: &armnetwork.PrivateEndpointIPConfigurationProperties{
		GroupID: to.Ptr("postgresqlServer"), MemberName: to.Ptr("postgresqlServer"), PrivateIPAddress: to.Ptr("10.0.1.10")}}}
	pe := e.mustEndpoint(o, "rg", "static", body)
	if str(pe.Properties.NetworkInterfaces[0].ID) != resID("rg", "networkInterfaces", "my-pe-nic") ||
		str(pe.Properties.CustomDNSConfigs[0].IPAddresses[0]) != "10.0.1.10" || len(pe.Properties.IPConfigurations) != 1 ||
		str(pe.Properties.IPConfigurations[0].Properties.PrivateIPAddress) != "10.0.1.10" || str(pe.Properties.CustomNetworkInterfaceName) != "my-pe-nic" {
		t.Fatalf("static endpoint = %+v", pe.Properties)
	}
	nic, err := o.nics.Get(e.ctx, "rg", "my-pe-nic", nil)
	if err != nil || *nic.Properties.IPConfigurations[0].Properties.PrivateIPAllocationMethod != armnetwork.IPAllocationMethodStatic {
		t.Fatalf("nic = %+v %v", nic, err)
	}
	// The address is taken; the NIC name too.
	body2 := endpointBody(subnet, server, false, "")
	body2.Properties.IPConfigurations = body.Properties.IPConfigurations
	_, err = e.putEndpoint(o, "rg", "other", body2)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, "PrivateIPAddressIsAllocated"), "properties.ipConfigurations[0].properties.privateIPAddress", "10.0.1.10")
	body3 := endpointBody(subnet, server, false, "")
	body3.Properties.CustomNetworkInterfaceName = to.Ptr("my-pe-nic")
	_, err = e.putEndpoint(o, "rg", "other", body3)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, "InvalidParameter"), "properties.customNetworkInterfaceName", "my-pe-nic")

	// What an endpoint is cannot change.
	p2, err := o.vnets.BeginCreateOrUpdate(e.ctx, "rg", "vnet2", vnetBody("10.1.0.0/16", "pe=10.1.1.0/24"), nil)
	if err == nil {
		_, err = p2.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		t.Fatal(err)
	}
	moved := endpointBody(subnetIDIn(sub, "rg", "vnet2", "pe"), server, false, "")
	_, err = e.putEndpoint(o, "rg", "static", moved)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, "PrivateEndpointPropertyCannotBeChanged"), "properties.subnet.id", "subnet")
	e.server(o, "rg", "srv2")
	retarget := endpointBody(subnet, serverIDIn(sub, "rg", "srv2"), false, "")
	retarget.Properties.IPConfigurations = body.Properties.IPConfigurations
	_, err = e.putEndpoint(o, "rg", "static", retarget)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, "PrivateEndpointPropertyCannotBeChanged"), conn+".properties.privateLinkServiceId", "target")
	// Moving the static address within the subnet is fine.
	body.Properties.IPConfigurations[0].Properties.PrivateIPAddress = to.Ptr("10.0.1.11")
	if pe := e.mustEndpoint(o, "rg", "static", body); str(pe.Properties.CustomDNSConfigs[0].IPAddresses[0]) != "10.0.1.11" {
		t.Errorf("moved address = %+v", pe.Properties.CustomDNSConfigs)
	}

	// A delegated subnet takes no endpoint.
	deleg := armnetwork.Subnet{Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr("10.0.2.0/24"),
		Delegations: []*armnetwork.Delegation{{Name: to.Ptr("d"), Properties: &armnetwork.ServiceDelegationPropertiesFormat{ServiceName: to.Ptr("Microsoft.DBforPostgreSQL/flexibleServers")}}}}}
	ps, err := o.subnets.BeginCreateOrUpdate(e.ctx, "rg", "vnet", "delegated", deleg, nil)
	if err == nil {
		_, err = ps.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.putEndpoint(o, "rg", "indelegated", endpointBody(subnetIDIn(sub, "rg", "vnet", "delegated"), server, false, ""))
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, "PrivateEndpointCreationNotAllowedAsSubnetIsDelegated"), "properties.subnet.id", "delegated")
}

// TestEndpointFull: a full subnet answers SubnetIsFull on the endpoint's
// subnet.
func TestEndpointFull(t *testing.T) {
	e := newPEEnv(t)
	o := e.as("owner", sub)
	e.group(o, "rg")
	p, err := o.vnets.BeginCreateOrUpdate(e.ctx, "rg", "vnet", vnetBody("10.0.0.0/16", "small=10.0.1.0/29"), nil)
	if err == nil {
		_, err = p.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		t.Fatal(err)
	}
	e.server(o, "rg", "srv1")
	body := endpointBody(subnetIDIn(sub, "rg", "vnet", "small"), serverIDIn(sub, "rg", "srv1"), false, "")
	for _, n := range []string{"a", "b", "c"} {
		e.mustEndpoint(o, "rg", n, body)
	}
	_, err = e.putEndpoint(o, "rg", "d", body)
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, "SubnetIsFull"), "properties.subnet.id", "capacity")
}

// TestEndpointWire checks status codes and LRO headers of endpoints and
// server-side connections.
func TestEndpointWire(t *testing.T) {
	e := newPEEnv(t)
	o := e.as("owner", sub)
	e.group(o, "rg")
	e.network(o, "rg", "vnet")
	e.server(o, "rg", "srv1")
	b, err := json.Marshal(endpointBody(subnetIDIn(sub, "rg", "vnet", "pe"), serverIDIn(sub, "rg", "srv1"), true, ""))
	if err != nil {
		t.Fatal(err)
	}
	path := resID("rg", "privateEndpoints", "pe1") + "?api-version=2025-01-01"
	for i, want := range []int{http.StatusCreated, http.StatusOK} {
		code, body, h := e.rawAs("owner", http.MethodPut, path, string(b))
		if code != want || h.Get("Azure-AsyncOperation") == "" || !strings.Contains(string(body), `"provisioningState":"Succeeded"`) {
			t.Fatalf("PUT #%d = %d %v %s", i, code, h, body)
		}
	}
	conns := e.connections(o, "rg", "srv1")
	cpath := serverIDIn(sub, "rg", "srv1") + "/privateEndpointConnections/" + str(conns[0].Name) + "?api-version=2025-08-01"
	code, body, h := e.rawAs("owner", http.MethodPut, cpath, `{"properties":{"privateLinkServiceConnectionState":{"status":"approved"}}}`)
	if code != http.StatusOK || h.Get("Azure-AsyncOperation") != "" || h.Get("Location") != "" || !strings.Contains(string(body), `"status":"Approved"`) {
		t.Errorf("connection PUT = %d %v %s", code, h, body)
	}
	code, _, h = e.rawAs("owner", http.MethodDelete, cpath, "")
	if code != http.StatusAccepted || h.Get("Location") == "" {
		t.Errorf("connection DELETE = %d %v", code, h)
	}
	if code, _, _ := e.rawAs("owner", http.MethodGet, h.Get("Location"), ""); code != http.StatusNoContent {
		t.Errorf("Location of connection DELETE = %d", code)
	}
	if code, _, _ := e.rawAs("owner", http.MethodDelete, cpath, ""); code != http.StatusNoContent {
		t.Errorf("second connection DELETE = %d", code)
	}
	code, _, h = e.rawAs("owner", http.MethodDelete, path, "")
	if code != http.StatusAccepted || h.Get("Location") == "" || h.Get("Azure-AsyncOperation") == "" {
		t.Errorf("endpoint DELETE = %d %v", code, h)
	}
	if code, _, _ := e.rawAs("owner", http.MethodDelete, path, ""); code != http.StatusNoContent {
		t.Errorf("second endpoint DELETE = %d", code)
	}
	if code, _, _ := e.rawAs("owner", http.MethodGet, path, ""); code != http.StatusNotFound {
		t.Errorf("GET deleted endpoint = %d", code)
	}
}

// TestEndpointMaterialized: with a NIC controller the PUT answers Updating
// and its operation runs until the controller settles the endpoint's NIC,
// exactly as it settles any NIC.
func TestEndpointMaterialized(t *testing.T) {
	e := newPEEnv(t, WithMaterializedNICs())
	o := e.as("owner", sub)
	e.group(o, "rg")
	e.network(o, "rg", "vnet")
	e.server(o, "rg", "srv1")
	b, err := json.Marshal(endpointBody(subnetIDIn(sub, "rg", "vnet", "pe"), serverIDIn(sub, "rg", "srv1"), false, ""))
	if err != nil {
		t.Fatal(err)
	}
	code, body, h := e.rawAs("owner", http.MethodPut, resID("rg", "privateEndpoints", "pe1")+"?api-version=2025-01-01", string(b))
	if code != http.StatusCreated || !strings.Contains(string(body), `"provisioningState":"Updating"`) {
		t.Fatalf("PUT = %d %s", code, body)
	}
	status := func() string {
		_, b, _ := e.rawAs("owner", http.MethodGet, h.Get("Azure-AsyncOperation"), "")
		var s struct{ Status string }
		_ = json.Unmarshal(b, &s)
		return s.Status
	}
	if s := status(); s != arm.OpInProgress {
		t.Fatalf("operation = %s before the controller settled", s)
	}
	var pe armnetwork.PrivateEndpoint
	_ = json.Unmarshal(body, &pe)
	nicID, _ := arm.ParseID(str(pe.Properties.NetworkInterfaces[0].ID))
	// What the network controller's settle does for a NIC.
	if _, err := e.st.Txn(e.ctx, func(tx store.Tx) error {
		var nic armnetwork.Interface
		if _, err := arm.Load(tx, nicID, &nic); err != nil {
			return err
		}
		setNICState(&nic, armnetwork.ProvisioningStateSucceeded)
		if err := arm.Save(tx, nicID, &nic); err != nil {
			return err
		}
		return arm.FinishOperations(tx, nicID, nil)
	}); err != nil {
		t.Fatal(err)
	}
	if s := status(); s != arm.OpSucceeded {
		t.Fatalf("operation = %s after the controller settled", s)
	}
	if got := e.getEndpoint(o, "rg", "pe1"); *got.Properties.ProvisioningState != armnetwork.ProvisioningStateSucceeded {
		t.Errorf("provisioningState = %s", *got.Properties.ProvisioningState)
	}
}

// TestFeatureMatrix: a server with a private endpoint connection refuses
// HA, replicas and restores for that reason; without one they get the
// not-offered answer; Entra ID, pgbouncer and the version rule are as
// without endpoints.
func TestFeatureMatrix(t *testing.T) {
	e := newPEEnv(t)
	o := e.as("owner", sub)
	e.group(o, "rg")
	e.network(o, "rg", "vnet")
	e.server(o, "rg", "withpe")
	e.server(o, "rg", "plain")
	e.mustEndpoint(o, "rg", "pe1", endpointBody(subnetIDIn(sub, "rg", "vnet", "pe"), serverIDIn(sub, "rg", "withpe"), true, ""))

	patch := func(server string, body pg.ServerForPatch) error {
		p, err := o.servers.BeginUpdate(e.ctx, "rg", server, body, nil)
		if err != nil {
			return err
		}
		_, err = p.PollUntilDone(e.ctx, poll)
		return err
	}
	ha := pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{HighAvailability: &pg.HighAvailabilityForPatch{Mode: to.Ptr(pg.HighAvailabilityModeZoneRedundant)}}}
	b := testkit.WantARMError(t, patch("withpe", ha), http.StatusBadRequest, "FeatureNotSupportedWithPrivateEndpoints")
	wantTarget(t, b, "properties.highAvailability.mode", "private endpoint", "withpe")
	b = testkit.WantARMError(t, patch("plain", ha), http.StatusBadRequest, "FeatureNotSupported")
	if strings.Contains(b.Message, "private endpoint") {
		t.Errorf("not-offered message mentions endpoints: %s", b.Message)
	}

	from := func(mode pg.CreateMode, source string) pg.Server {
		return pg.Server{Location: to.Ptr("westeurope"), Properties: &pg.ServerProperties{
			CreateMode: to.Ptr(mode), SourceServerResourceID: to.Ptr(serverIDIn(sub, "rg", source)), PointInTimeUTC: to.Ptr(time.Now().Add(-time.Hour))}}
	}
	for _, mode := range []pg.CreateMode{pg.CreateModeReplica, pg.CreateModePointInTimeRestore, pg.CreateModeGeoRestore} {
		_, err := e.createServer(o, "rg", "copy", from(mode, "withpe"))
		b := testkit.WantARMError(t, err, http.StatusBadRequest, "FeatureNotSupportedWithPrivateEndpoints")
		wantTarget(t, b, "properties.sourceServerResourceId", "private endpoint")
		_, err = e.createServer(o, "rg", "copy", from(mode, "plain"))
		testkit.WantARMError(t, err, http.StatusBadRequest, "FeatureNotSupported")
	}
	role := pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{ReplicationRole: to.Ptr(pg.ReplicationRoleAsyncReplica)}}
	testkit.WantARMError(t, patch("withpe", role), http.StatusBadRequest, "FeatureNotSupportedWithPrivateEndpoints")

	// Still allowed with endpoints: Entra ID settings, pgbouncer.
	auth := pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{AuthConfig: &pg.AuthConfigForPatch{
		ActiveDirectoryAuth: to.Ptr(pg.MicrosoftEntraAuthEnabled), PasswordAuth: to.Ptr(pg.PasswordBasedAuthEnabled)}}}
	if err := patch("withpe", auth); err != nil {
		t.Errorf("authConfig with endpoints: %v", err)
	}
	pc, err := o.configs.BeginPut(e.ctx, "rg", "withpe", "pgbouncer.enabled", pg.ConfigurationForUpdate{
		Properties: &pg.ConfigurationProperties{Value: to.Ptr("true"), Source: to.Ptr("user-override")}}, nil)
	if err == nil {
		_, err = pc.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		t.Errorf("pgbouncer.enabled with endpoints: %v", err)
	}
	// The major version answer is the same with or without endpoints.
	ver := pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{Version: to.Ptr(pg.PostgresMajorVersionSixteen)}}
	for _, s := range []string{"withpe", "plain"} {
		err := patch(s, ver)
		if err == nil {
			continue // this privlink runs several versions
		}
		var re *azcore.ResponseError
		if !errors.As(err, &re) {
			t.Fatalf("version change on %s: %v", s, err)
		}
		if b := testkit.WantARMError(t, err, http.StatusBadRequest, re.ErrorCode); strings.Contains(b.Message, "private endpoint") {
			t.Errorf("version change on %s blames endpoints: %s", s, b.Message)
		}
	}
}

// TestEndpointOddBodies: malformed and half-empty bodies get a 4xx, never
// a 500 or a panic.
func TestEndpointOddBodies(t *testing.T) {
	e := newPEEnv(t)
	o := e.as("owner", sub)
	e.group(o, "rg")
	e.network(o, "rg", "vnet")
	e.server(o, "rg", "srv1")
	e.mustEndpoint(o, "rg", "pe1", endpointBody(subnetIDIn(sub, "rg", "vnet", "pe"), serverIDIn(sub, "rg", "srv1"), false, ""))
	subnet, server := subnetIDIn(sub, "rg", "vnet", "pe"), serverIDIn(sub, "rg", "srv1")
	q := "?api-version=2025-01-01"
	pe := resID("rg", "privateEndpoints", "odd") + q
	group := resID("rg", "privateEndpoints", "pe1") + "/privateDnsZoneGroups/g" + q
	conn := server + "/privateEndpointConnections/x.y?api-version=2025-08-01"
	for _, c := range []struct{ path, body string }{
		{pe, ``}, {pe, `null`}, {pe, `[]`}, {pe, `{}`}, {pe, `{"location":"westeurope"}`},
		{pe, `{"location":"westeurope","properties":null}`},
		{pe, `{"location":"westeurope","properties":{"subnet":{}}}`},
		{pe, `{"location":"westeurope","properties":{"subnet":{"id":"` + subnet + `"},"privateLinkServiceConnections":[null]}}`},
		{pe, `{"location":"westeurope","properties":{"subnet":{"id":"` + subnet + `"},"privateLinkServiceConnections":[{"name":"c"}]}}`},
		{pe, `{"location":"westeurope","properties":{"subnet":{"id":"` + subnet + `"},"privateLinkServiceConnections":[{"name":"c","properties":{"privateLinkServiceId":"/subscriptions/x","groupIds":[null]}}]}}`},
		{pe, `{"location":"westeurope","properties":{"subnet":{"id":"` + subnet + `"},"privateLinkServiceConnections":[{"name":"c","properties":{"privateLinkServiceId":"` + server + `","groupIds":[null]}}]}}`},
		{pe, `{"location":"westeurope","properties":{"subnet":{"id":"` + subnet + `"},"privateLinkServiceConnections":[{"name":"c","properties":{"privateLinkServiceId":"` + server + `","groupIds":["postgresqlServer"]}}],"ipConfigurations":[null]}}`},
		{pe, `{"location":"westeurope","properties":{"subnet":{"id":"` + subnet + `"},"privateLinkServiceConnections":[{"name":"c","properties":{"privateLinkServiceId":"` + server + `","groupIds":["postgresqlServer"]}}],"ipConfigurations":[{"name":"i","properties":{}}]}}`},
		{pe, `{"location":"westeurope","properties":{"subnet":{"id":"` + subnet + `"},"privateLinkServiceConnections":[{"name":"c","properties":{"privateLinkServiceId":"` + server + `","groupIds":["postgresqlServer"]}}],"applicationSecurityGroups":[null]}}`},
		{pe, `{"location":"westeurope","properties":{"subnet":{"id":"` + subnet + `"},"privateLinkServiceConnections":[{"name":"c","properties":{"privateLinkServiceId":"` + server + `","groupIds":["postgresqlServer"]}}],"applicationSecurityGroups":[{"id":"/x"}]}}`},
		{pe, `{"location":"westeurope","properties":{"subnet":{"id":"` + subnet + `"},"privateLinkServiceConnections":[{"name":"c","properties":{"privateLinkServiceId":"` + server + `","groupIds":["postgresqlServer"]}}],"customNetworkInterfaceName":"-bad-"}}`},
		{pe, `{"location":"westeurope","properties":{"subnet":{"id":"` + subnet + `"},"privateLinkServiceConnections":[{"name":"c","properties":{"privateLinkServiceId":"` + resID("rg", "privateLinkServices", "pls") + `","groupIds":["x"]}}]}}`},
		{group, ``}, {group, `null`}, {group, `{"properties":{"privateDnsZoneConfigs":[null]}}`},
		{group, `{"properties":{"privateDnsZoneConfigs":[{"name":"-x-","properties":{"privateDnsZoneId":"` + zoneIDIn(sub, "rg", "z.example") + `"}}]}}`},
		{conn, ``}, {conn, `null`}, {conn, `{"properties":{"privateLinkServiceConnectionState":{"status":"Approved"}}}`},
	} {
		code, b, _ := e.rawAs("owner", http.MethodPut, c.path, c.body)
		if code < 400 || code >= 500 {
			t.Errorf("PUT %s %s = %d %s", c.path, c.body, code, b)
		}
	}
	if code, b, _ := e.rawAs("owner", http.MethodPatch, resID("rg", "privateEndpoints", "pe1")+q, `null`); code != http.StatusOK && (code < 400 || code >= 500) {
		t.Errorf("PATCH null = %d %s", code, b)
	}
}
