package postgres

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/privlink/privlink/internal/testkit"
)

func TestServerLifecycle(t *testing.T) {
	e := newEnv(t)
	e.group("rg1")
	before := time.Now().Add(-time.Second)
	s := e.mustCreate("rg1", "srv1")

	p := s.Properties
	if p == nil || s.ID == nil || s.SKU == nil || s.SystemData == nil {
		t.Fatalf("incomplete server: %+v", s)
	}
	checks := map[string][2]string{
		"id":                  {*s.ID, "/subscriptions/" + sub + "/resourceGroups/rg1/providers/Microsoft.DBforPostgreSQL/flexibleServers/srv1"},
		"name":                {*s.Name, "srv1"},
		"type":                {*s.Type, "Microsoft.DBforPostgreSQL/flexibleServers"},
		"location":            {*s.Location, "westeurope"},
		"state":               {string(*p.State), "Ready"},
		"fqdn":                {*p.FullyQualifiedDomainName, "srv1.postgres.database.azure.com"},
		"version":             {string(*p.Version), "15"},
		"minorVersion":        {*p.MinorVersion, "18"},
		"administratorLogin":  {*p.AdministratorLogin, testLogin},
		"ha.mode":             {string(*p.HighAvailability.Mode), "Disabled"},
		"ha.state":            {string(*p.HighAvailability.State), "NotEnabled"},
		"replicationRole":     {string(*p.ReplicationRole), "None"},
		"availabilityZone":    {*p.AvailabilityZone, "1"},
		"publicNetworkAccess": {string(*p.Network.PublicNetworkAccess), "Enabled"},
		"passwordAuth":        {string(*p.AuthConfig.PasswordAuth), "Enabled"},
		"activeDirectoryAuth": {string(*p.AuthConfig.ActiveDirectoryAuth), "Disabled"},
		"geoRedundantBackup":  {string(*p.Backup.GeoRedundantBackup), "Disabled"},
		"sku.name":            {*s.SKU.Name, "Standard_B1ms"},
		"sku.tier":            {string(*s.SKU.Tier), "Burstable"},
		"storage.tier":        {string(*p.Storage.Tier), "P4"},
		"storage.type":        {string(*p.Storage.Type), "Premium_LRS"},
		"storage.autoGrow":    {string(*p.Storage.AutoGrow), "Disabled"},
		"createdBy":           {*s.SystemData.CreatedBy, "c"},
		"createdByType":       {string(*s.SystemData.CreatedByType), "Application"},
	}
	for k, v := range checks {
		if v[0] != v[1] {
			t.Errorf("%s = %q, want %q", k, v[0], v[1])
		}
	}
	if *p.Backup.BackupRetentionDays != 7 || p.Backup.EarliestRestoreDate == nil || p.Backup.EarliestRestoreDate.Before(before) {
		t.Errorf("backup = %+v", p.Backup)
	}
	if *p.Storage.StorageSizeGB != 32 || *p.Storage.Iops != 120 {
		t.Errorf("storage = %+v", p.Storage)
	}
	if p.AdministratorLoginPassword != nil {
		t.Error("the password came back")
	}
	if p.PrivateEndpointConnections == nil || len(p.PrivateEndpointConnections) != 0 {
		t.Errorf("privateEndpointConnections = %v, want []", p.PrivateEndpointConnections)
	}

	d, ok := e.desired("rg1", "srv1")
	if !ok || d.Name != "srv1" || d.Version != "15" || d.AdminLogin != testLogin || !d.Running || !d.PublicNetworkAccess || d.Generation != 1 {
		t.Fatalf("desired = %+v", d)
	}
	if d.ServiceAddr != netip.MustParseAddr("169.254.1.1") || d.PublicAddr != netip.MustParseAddr("198.18.1.1") {
		t.Errorf("addresses = %s, %s", d.ServiceAddr, d.PublicAddr)
	}
	if !VerifyPassword(d.AdminVerifier, testPassword) || VerifyPassword(d.AdminVerifier, testPassword+"x") {
		t.Error("the verifier does not verify the password")
	}

	got, err := e.servers.Get(e.ctx, "RG1", "srv1", nil)
	if err != nil || *got.ID != *s.ID {
		t.Fatalf("get: %v %v", got.ID, err)
	}
	e.mustCreate("rg1", "srv2")
	e.group("rg2")
	e.mustCreate("rg2", "srv3")
	if n := e.countRG("rg1"); n != 2 {
		t.Errorf("rg1 has %d servers, want 2", n)
	}
	if n := e.countSub(); n != 3 {
		t.Errorf("subscription has %d servers, want 3", n)
	}

	// Tags: synchronous, nothing else moves.
	up, err := e.update("rg1", "srv1", pg.ServerForPatch{Tags: map[string]*string{"env": to.Ptr("test")}})
	if err != nil || *up.Tags["env"] != "test" || *up.Properties.State != pg.ServerStateReady {
		t.Fatalf("update tags: %v %+v", err, up.Tags)
	}
	// SKU and storage.
	up, err = e.update("rg1", "srv1", pg.ServerForPatch{
		SKU: &pg.SKUForPatch{Name: to.Ptr("Standard_D4ds_v5"), Tier: to.Ptr(pg.SKUTierGeneralPurpose)},
		Properties: &pg.ServerPropertiesForPatch{
			Storage: &pg.Storage{StorageSizeGB: to.Ptr[int32](256), AutoGrow: to.Ptr(pg.StorageAutoGrowEnabled)},
		},
	})
	if err != nil {
		t.Fatalf("update sku/storage: %v", err)
	}
	if *up.SKU.Name != "Standard_D4ds_v5" || *up.SKU.Tier != pg.SKUTierGeneralPurpose || *up.Properties.Storage.StorageSizeGB != 256 ||
		*up.Properties.Storage.Tier != "P15" || *up.Properties.Storage.AutoGrow != pg.StorageAutoGrowEnabled || *up.Tags["env"] != "test" {
		t.Errorf("after update: sku %+v storage %+v tags %v", up.SKU, up.Properties.Storage, up.Tags)
	}
	// The tier alone picks its default size name.
	up, err = e.update("rg1", "srv1", pg.ServerForPatch{SKU: &pg.SKUForPatch{Tier: to.Ptr(pg.SKUTierMemoryOptimized)}})
	if err != nil || *up.SKU.Name != "Standard_E2ds_v5" {
		t.Fatalf("update tier: %v %+v", err, up.SKU)
	}
	// A GET echoed back as a PUT changes nothing.
	got, err = e.servers.Get(e.ctx, "rg1", "srv1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.create("rg1", "srv1", got.Server); err != nil {
		t.Fatalf("PUT of the GET body: %v", err)
	}
	if d2, _ := e.desired("rg1", "srv1"); d2.Generation != d.Generation {
		t.Errorf("a no-op PUT bumped the generation to %d", d2.Generation)
	}

	// Stop, start, restart.
	e.action(t, "stop", "rg1", "srv1")
	if st := e.state("rg1", "srv1"); st != pg.ServerStateStopped {
		t.Fatalf("after stop: %s", st)
	}
	if d, _ := e.desired("rg1", "srv1"); d.Running {
		t.Error("stopped server still running in Desired")
	}
	_, err = e.servers.BeginStop(e.ctx, "rg1", "srv1", nil)
	testkit.WantResponseError(t, err, 409, codeNotReady)
	_, err = e.servers.BeginRestart(e.ctx, "rg1", "srv1", nil)
	testkit.WantResponseError(t, err, 409, codeNotReady)
	_, err = e.update("rg1", "srv1", pg.ServerForPatch{SKU: &pg.SKUForPatch{Name: to.Ptr("Standard_E4ds_v5")}})
	testkit.WantResponseError(t, err, 409, codeUnavailable)
	if _, err := e.update("rg1", "srv1", pg.ServerForPatch{Tags: map[string]*string{"env": to.Ptr("stopped")}}); err != nil {
		t.Fatalf("tags of a stopped server: %v", err)
	}
	e.action(t, "start", "rg1", "srv1")
	if st := e.state("rg1", "srv1"); st != pg.ServerStateReady {
		t.Fatalf("after start: %s", st)
	}
	_, err = e.servers.BeginStart(e.ctx, "rg1", "srv1", nil)
	testkit.WantResponseError(t, err, 409, codeNotStopped)
	gen := e.restartGeneration("rg1", "srv1")
	e.action(t, "restart", "rg1", "srv1")
	if st := e.state("rg1", "srv1"); st != pg.ServerStateReady || e.restartGeneration("rg1", "srv1") != gen+1 {
		t.Fatalf("after restart: %s", st)
	}

	// Password change: long-running, a new verifier.
	old, _ := e.desired("rg1", "srv1")
	if _, err := e.update("rg1", "srv1", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{
		AdministratorLoginPassword: to.Ptr("Another-Secret-7")}}); err != nil {
		t.Fatal(err)
	}
	nd, _ := e.desired("rg1", "srv1")
	if nd.Generation != old.Generation+1 || !VerifyPassword(nd.AdminVerifier, "Another-Secret-7") {
		t.Errorf("password change: generation %d→%d", old.Generation, nd.Generation)
	}
	// Public network access.
	up, err = e.update("rg1", "srv1", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{
		Network: &pg.Network{PublicNetworkAccess: to.Ptr(pg.ServerPublicNetworkAccessStateDisabled)}}})
	if err != nil || *up.Properties.Network.PublicNetworkAccess != pg.ServerPublicNetworkAccessStateDisabled {
		t.Fatalf("disable public access: %v", err)
	}
	if d, _ := e.desired("rg1", "srv1"); d.PublicNetworkAccess {
		t.Error("Desired still has public access")
	}
	// The administrator login is immutable.
	_, err = e.update("rg1", "srv1", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{AdministratorLogin: to.Ptr("other")}})
	testkit.WantResponseError(t, err, 400, codeInvalidValue)
	// Storage cannot shrink.
	_, err = e.update("rg1", "srv1", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{Storage: &pg.Storage{StorageSizeGB: to.Ptr[int32](32)}}})
	testkit.WantResponseError(t, err, 400, codeInvalidValue)

	// Delete.
	if err := e.deleteServer("rg1", "srv1"); err != nil {
		t.Fatal(err)
	}
	_, err = e.servers.Get(e.ctx, "rg1", "srv1", nil)
	testkit.WantResponseError(t, err, 404, "ResourceNotFound")
	if _, ok := e.desired("rg1", "srv1"); ok {
		t.Error("Desired record left after delete without a controller")
	}
	if n := e.countSub(); n != 2 {
		t.Errorf("subscription has %d servers after delete, want 2", n)
	}
	// Deleting what is gone is a 204, which the SDK takes.
	if err := e.deleteServer("rg1", "srv1"); err != nil {
		t.Fatal(err)
	}
	_, err = e.servers.BeginStart(e.ctx, "rg1", "srv1", nil)
	testkit.WantResponseError(t, err, 404, "ResourceNotFound")
	_, err = e.update("rg1", "srv1", pg.ServerForPatch{Tags: map[string]*string{}})
	testkit.WantResponseError(t, err, 404, "ResourceNotFound")
	_, err = e.servers.Get(e.ctx, "nogroup", "srv1", nil)
	testkit.WantResponseError(t, err, 404, "ResourceGroupNotFound")
}

func (e *env) action(t *testing.T, action, rg, name string) {
	t.Helper()
	var err error
	switch action {
	case "start":
		p, err2 := e.servers.BeginStart(e.ctx, rg, name, nil)
		if err = err2; err == nil {
			_, err = p.PollUntilDone(e.ctx, poll)
		}
	case "stop":
		p, err2 := e.servers.BeginStop(e.ctx, rg, name, nil)
		if err = err2; err == nil {
			_, err = p.PollUntilDone(e.ctx, poll)
		}
	case "restart":
		p, err2 := e.servers.BeginRestart(e.ctx, rg, name, nil)
		if err = err2; err == nil {
			_, err = p.PollUntilDone(e.ctx, poll)
		}
	}
	if err != nil {
		t.Fatalf("%s %s: %v", action, name, err)
	}
}

func (e *env) state(rg, name string) pg.ServerState {
	e.t.Helper()
	s, err := e.servers.Get(e.ctx, rg, name, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return *s.Properties.State
}

func (e *env) restartGeneration(rg, name string) int64 {
	d, _ := e.desired(rg, name)
	return d.RestartGeneration
}

func (e *env) countRG(rg string) int {
	e.t.Helper()
	n := 0
	pager := e.servers.NewListByResourceGroupPager(rg, nil)
	for pager.More() {
		page, err := pager.NextPage(e.ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, s := range page.Value {
			if !strings.EqualFold(*s.Properties.FullyQualifiedDomainName, *s.Name+".postgres.database.azure.com") {
				e.t.Errorf("listed server %s has fqdn %s", *s.Name, *s.Properties.FullyQualifiedDomainName)
			}
		}
		n += len(page.Value)
	}
	return n
}

func (e *env) countSub() int {
	e.t.Helper()
	n := 0
	pager := e.servers.NewListBySubscriptionPager(nil)
	for pager.More() {
		page, err := pager.NextPage(e.ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		n += len(page.Value)
	}
	return n
}
