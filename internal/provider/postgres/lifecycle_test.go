package postgres

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/testkit"
)

// TestPasswordNeverStored drives every kind of request that carries or
// could echo the password and checks that no response and no stored byte
// contains it, in clear or base64.
func TestPasswordNeverStored(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	const second = "Second-Secret-99"
	forbidden := [][]byte{[]byte(testPassword), []byte(second)}
	for _, pw := range []string{testPassword, second} {
		forbidden = append(forbidden, []byte(base64.StdEncoding.EncodeToString([]byte(pw))))
	}
	check := func(what string, b []byte) {
		t.Helper()
		for _, f := range forbidden {
			if bytes.Contains(b, f) {
				t.Fatalf("%s contains a password: %s", what, b)
			}
		}
	}
	srv := serverPath("rg", "secret")
	create := map[string]any{
		"location": "westeurope", "sku": map[string]any{"name": "Standard_B1ms", "tier": "Burstable"},
		"properties": map[string]any{"administratorLogin": testLogin, "administratorLoginPassword": testPassword},
	}
	responses := []rawResponse{
		e.raw(http.MethodPut, srv, create),
		e.raw(http.MethodPut, srv, create), // the same again: an update
		e.raw(http.MethodPatch, srv, map[string]any{"properties": map[string]any{"administratorLoginPassword": second}}),
		e.raw(http.MethodPatch, srv, map[string]any{"properties": map[string]any{"administratorLoginPassword": "short"}}),
		e.raw(http.MethodGet, srv, nil),
		e.raw(http.MethodGet, "/subscriptions/"+sub+"/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers", nil),
		e.raw(http.MethodGet, "/subscriptions/"+sub+"/providers/Microsoft.DBforPostgreSQL/flexibleServers", nil),
		e.raw(http.MethodGet, "/subscriptions/"+sub+"/resources", nil),
		e.raw(http.MethodPost, srv+"/restart", nil),
	}
	for i, r := range responses {
		if r.status >= 500 {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
		check("a response", r.body)
		for k, v := range r.header {
			check("header "+k, []byte(strings.Join(v, " ")))
		}
	}
	kvs, _, err := e.st.List(e.ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		check("store key "+kv.Key, append([]byte(kv.Key+" "), kv.Value...))
	}
	d, _ := e.desired("rg", "secret")
	if !VerifyPassword(d.AdminVerifier, second) || VerifyPassword(d.AdminVerifier, testPassword) {
		t.Error("the verifier does not hold the new password")
	}
}

// TestGroupDelete: deleting a resource group deletes its servers; without
// a controller their names are free at once.
func TestGroupDelete(t *testing.T) {
	e := newEnv(t)
	e.group("doomed")
	e.mustCreate("doomed", "in-group")
	if _, err := e.putRule("doomed", "in-group", "r", "10.0.0.1", "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.setConfig("doomed", "in-group", "max_connections", to.Ptr("50"), "user-override", false); err != nil {
		t.Fatal(err)
	}
	if err := e.deleteGroup("doomed"); err != nil {
		t.Fatal(err)
	}
	if left := append(e.keys("pg/"), e.keys("arm/"+sub+"/microsoft.dbforpostgresql")...); len(left) != 0 {
		t.Fatalf("left over: %v", left)
	}
	e.group("doomed")
	e.mustCreate("doomed", "in-group")
}

// controllerEnv is an env whose provider waits for a controller, played
// by the test through Reconciled, Failed and Deleted.
func controllerEnv(t *testing.T) *env {
	e := newEnv(t, WithController())
	e.group("rg")
	return e
}

func (e *env) txn(fn func(tx store.Tx) error) {
	e.t.Helper()
	if _, err := e.st.Txn(context.Background(), fn); err != nil {
		e.t.Fatal(err)
	}
}

// reconcile plays the controller: it applies the current generation.
func (e *env) reconcile(rg, name string) {
	e.t.Helper()
	d, ok := e.desired(rg, name)
	if !ok {
		e.t.Fatalf("no desired state for %s", name)
	}
	e.txn(func(tx store.Tx) error {
		ok, err := Reconciled(tx, serverID(e.t, rg, name), d.Generation)
		if err == nil && !ok {
			e.t.Errorf("Reconciled(%d) refused", d.Generation)
		}
		return err
	})
}

// pending polls a poller once and fails if it is done.
func pending[T any](t *testing.T, ctx context.Context, p *runtime.Poller[T]) {
	t.Helper()
	if _, err := p.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if p.Done() {
		t.Fatal("the operation finished without the controller")
	}
}

func finish[T any](t *testing.T, ctx context.Context, p *runtime.Poller[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := p.PollUntilDone(ctx, poll)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestControllerMode(t *testing.T) {
	e := controllerEnv(t)
	p, err := e.servers.BeginCreateOrUpdate(e.ctx, "rg", "ctl", serverBody(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := e.state("rg", "ctl"); st != pg.ServerStateProvisioning {
		t.Fatalf("state %s while provisioning", st)
	}
	pending(t, e.ctx, p)
	// Nothing but tags while it provisions.
	_, err = e.servers.BeginStop(e.ctx, "rg", "ctl", nil)
	testkit.WantResponseError(t, err, http.StatusConflict, codeNotReady)
	_, err = e.servers.BeginUpdate(e.ctx, "rg", "ctl", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{
		Network: &pg.Network{PublicNetworkAccess: to.Ptr(pg.ServerPublicNetworkAccessStateDisabled)}}}, nil)
	testkit.WantResponseError(t, err, http.StatusConflict, codeBusy)
	if _, err := e.update("rg", "ctl", pg.ServerForPatch{Tags: map[string]*string{"t": to.Ptr("1")}}); err != nil {
		t.Fatalf("tags while provisioning: %v", err)
	}
	// A stale generation changes nothing.
	e.txn(func(tx store.Tx) error {
		ok, err := Reconciled(tx, serverID(t, "rg", "ctl"), 0)
		if ok {
			t.Error("Reconciled accepted a stale generation")
		}
		return err
	})
	e.reconcile("rg", "ctl")
	if s := finish(t, e.ctx, p); *s.Properties.State != pg.ServerStateReady || *s.Tags["t"] != "1" {
		t.Fatalf("created: %s", *s.Properties.State)
	}

	// Stop: Stopping until reconciled.
	ps, err := e.servers.BeginStop(e.ctx, "rg", "ctl", nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := e.state("rg", "ctl"); st != pg.ServerStateStopping {
		t.Fatalf("state %s while stopping", st)
	}
	pending(t, e.ctx, ps)
	e.reconcile("rg", "ctl")
	finish(t, e.ctx, ps)
	if st := e.state("rg", "ctl"); st != pg.ServerStateStopped {
		t.Fatalf("state %s after stop", st)
	}
	// Start that fails: the operation fails with the controller's error.
	pst, err := e.servers.BeginStart(e.ctx, "rg", "ctl", nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := e.state("rg", "ctl"); st != pg.ServerStateStarting {
		t.Fatalf("state %s while starting", st)
	}
	d, _ := e.desired("rg", "ctl")
	e.txn(func(tx store.Tx) error {
		_, err := Failed(tx, serverID(t, "rg", "ctl"), d.Generation, arm.Conflict("ClusterFailed", "postgres did not start"))
		return err
	})
	_, err = pst.PollUntilDone(e.ctx, poll)
	testkit.WantResponseError(t, err, http.StatusOK, "ClusterFailed")
	if st := e.state("rg", "ctl"); st != pg.ServerStateStopped {
		t.Fatalf("state %s after a failed start", st)
	}
	// Dynamic configuration: the server's operation waits for a reload.
	e.action2(t, "start", "rg", "ctl")
	pc, err := e.configs.BeginPut(e.ctx, "rg", "ctl", "work_mem", pg.ConfigurationForUpdate{Properties: &pg.ConfigurationProperties{
		Value: to.Ptr("8192"), Source: to.Ptr("user-override")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pending(t, e.ctx, pc)
	e.reconcile("rg", "ctl")
	if c := finish(t, e.ctx, pc); *c.Properties.Value != "8192" {
		t.Errorf("configuration: %+v", c.Properties)
	}

	// Delete: the document goes at once; the name and the Desired record
	// stay until the controller has removed the cluster.
	pd, err := e.servers.BeginDelete(e.ctx, "rg", "ctl", nil)
	if err != nil {
		t.Fatal(err)
	}
	pending(t, e.ctx, pd)
	_, err = e.servers.Get(e.ctx, "rg", "ctl", nil)
	testkit.WantResponseError(t, err, http.StatusNotFound, "ResourceNotFound")
	if _, ok := e.desired("rg", "ctl"); !ok {
		t.Fatal("Desired record gone before the controller removed the cluster")
	}
	_, err = e.create("rg", "ctl", serverBody())
	re := testkit.WantResponseError(t, err, http.StatusConflict, codeNameTaken)
	if !strings.Contains(re.Error(), "being deleted") {
		t.Errorf("recreate while dropping: %v", re)
	}
	res, err := e.names.CheckGlobally(e.ctx, pg.CheckNameAvailabilityRequest{Name: to.Ptr("ctl-x")}, nil)
	if err != nil || !*res.NameAvailable {
		t.Fatal(err)
	}
	e.txn(func(tx store.Tx) error { return Deleted(tx, serverID(t, "rg", "ctl")) })
	finish(t, e.ctx, pd)
	if left := e.keys("pg/"); len(left) != 0 {
		t.Fatalf("left over: %v", left)
	}
	// And the name works again, at once.
	p, err = e.servers.BeginCreateOrUpdate(e.ctx, "rg", "ctl", serverBody(), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.reconcile("rg", "ctl")
	finish(t, e.ctx, p)
}

// action2 runs an action with the test as controller.
func (e *env) action2(t *testing.T, action, rg, name string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.action(t, action, rg, name)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, _ := e.desired(rg, name)
		var doc serverDoc
		if ok, _ := arm.Load(arm.ReadOnly(e.ctx, e.st), serverID(t, rg, name), &doc); ok &&
			doc.Properties.State != stateReady && doc.Properties.State != stateStopped {
			e.txn(func(tx store.Tx) error { _, err := Reconciled(tx, serverID(t, rg, name), d.Generation); return err })
		}
		select {
		case <-done:
			return
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not finish", action)
		}
	}
}

// TestGroupDeleteWithController: the servers of a deleted group keep
// their Desired records and names until the controller removed them.
func TestGroupDeleteWithController(t *testing.T) {
	e := controllerEnv(t)
	p, err := e.servers.BeginCreateOrUpdate(e.ctx, "rg", "grouped", serverBody(), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.reconcile("rg", "grouped")
	finish(t, e.ctx, p)
	before, _ := e.desired("rg", "grouped")
	if err := e.deleteGroup("rg"); err != nil {
		t.Fatal(err)
	}
	after, ok := e.desired("rg", "grouped")
	if !ok || after.Generation <= before.Generation {
		t.Fatalf("Desired after group delete: %v %+v", ok, after)
	}
	if len(e.keys("pg/names/grouped")) != 1 {
		t.Fatal("the name was freed before the cluster was removed")
	}
	if left := e.keys("arm/" + sub + "/microsoft.dbforpostgresql"); len(left) != 0 {
		t.Fatalf("documents left: %v", left)
	}
	e.txn(func(tx store.Tx) error { return Deleted(tx, serverID(t, "rg", "grouped")) })
	if left := e.keys("pg/"); len(left) != 0 {
		t.Fatalf("left over: %v", left)
	}
	if ops := e.keys("ops-pending"); len(ops) != 0 {
		t.Errorf("pending operations left: %v", ops)
	}
}

// TestRecovering: a Ready server whose postmaster does not run reports
// Starting until the controller has brought it back; nothing else changes.
func TestRecovering(t *testing.T) {
	e := controllerEnv(t)
	p, err := e.servers.BeginCreateOrUpdate(e.ctx, "rg", "rec", serverBody(), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.reconcile("rg", "rec")
	finish(t, e.ctx, p)
	id := serverID(t, "rg", "rec")
	recovering := func() bool {
		var changed bool
		e.txn(func(tx store.Tx) error {
			var err error
			changed, err = Recovering(tx, id)
			return err
		})
		return changed
	}
	if !recovering() {
		t.Fatal("Recovering left a Ready server as it was")
	}
	if st := e.state("rg", "rec"); st != pg.ServerStateStarting {
		t.Fatalf("state %s while coming back, want Starting", st)
	}
	if recovering() {
		t.Error("Recovering changed a server already Starting")
	}
	// Not Ready: stop and start wait until it is back.
	_, err = e.servers.BeginStop(e.ctx, "rg", "rec", nil)
	testkit.WantResponseError(t, err, http.StatusConflict, codeNotReady)
	e.reconcile("rg", "rec")
	if st := e.state("rg", "rec"); st != pg.ServerStateReady {
		t.Fatalf("state %s once back, want Ready", st)
	}
	// A stopped server should not run: Recovering leaves it Stopped.
	e.action2(t, "stop", "rg", "rec")
	if recovering() {
		t.Error("Recovering changed a Stopped server")
	}
	if st := e.state("rg", "rec"); st != pg.ServerStateStopped {
		t.Errorf("state %s, want Stopped", st)
	}
}
