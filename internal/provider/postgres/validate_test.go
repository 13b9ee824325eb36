package postgres

import (
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/privlink/privlink/internal/testkit"
)

func TestRefusedFeatures(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	cases := []struct {
		name, want, target string
		edit               func(*pg.Server)
	}{
		{"ha", "High availability", "properties.highAvailability.mode", func(s *pg.Server) {
			s.Properties.HighAvailability = &pg.HighAvailability{Mode: to.Ptr(pg.HighAvailabilityModeZoneRedundant)}
		}},
		{"pitr", "Point-in-time restore", "properties.createMode", func(s *pg.Server) {
			s.Properties.CreateMode = to.Ptr(pg.CreateModePointInTimeRestore)
		}},
		{"georestore", "Geo-restore", "properties.createMode", func(s *pg.Server) { s.Properties.CreateMode = to.Ptr(pg.CreateModeGeoRestore) }},
		{"replica", "Read replicas", "properties.createMode", func(s *pg.Server) { s.Properties.CreateMode = to.Ptr(pg.CreateModeReplica) }},
		{"revive", "Reviving a dropped server", "properties.createMode", func(s *pg.Server) { s.Properties.CreateMode = to.Ptr(pg.CreateModeReviveDropped) }},
		{"source", "sourceServerResourceId", "properties.sourceServerResourceId", func(s *pg.Server) {
			s.Properties.SourceServerResourceID = to.Ptr(serverPath("rg", "other"))
		}},
		{"role", "Read replicas", "properties.replicationRole", func(s *pg.Server) { s.Properties.ReplicationRole = to.Ptr(pg.ReplicationRoleAsyncReplica) }},
		{"geobackup", "Geo-redundant backup", "properties.backup.geoRedundantBackup", func(s *pg.Server) {
			s.Properties.Backup = &pg.Backup{GeoRedundantBackup: to.Ptr(pg.GeographicallyRedundantBackupEnabled)}
		}},
		{"vnet", "Virtual network integration", "properties.network.delegatedSubnetResourceId", func(s *pg.Server) {
			s.Properties.Network = &pg.Network{DelegatedSubnetResourceID: to.Ptr("/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s")}
		}},
		{"cmk", "customer-managed keys", "properties.dataEncryption.type", func(s *pg.Server) {
			s.Properties.DataEncryption = &pg.DataEncryption{Type: to.Ptr(pg.DataEncryptionTypeAzureKeyVault)}
		}},
		{"identity", "Managed identities", "identity.type", func(s *pg.Server) {
			s.Identity = &pg.UserAssignedIdentity{Type: to.Ptr(pg.IdentityTypeUserAssigned)}
		}},
		{"cluster", "Elastic clusters", "properties.cluster.clusterSize", func(s *pg.Server) {
			s.Properties.Cluster = &pg.Cluster{ClusterSize: to.Ptr[int32](2)}
		}},
	}
	for _, c := range cases {
		body := serverBody()
		c.edit(&body)
		_, err := e.create("rg", "refused-"+c.name, body)
		re := testkit.WantResponseError(t, err, http.StatusBadRequest, codeFeatureNotSupported)
		if !strings.Contains(re.Error(), c.want) || !strings.Contains(re.Error(), "is not supported by privlink") || !strings.Contains(re.Error(), c.target) {
			t.Errorf("%s: %v", c.name, re)
		}
	}
	// What privlink offers is accepted as Azure spells it.
	ok := serverBody()
	ok.Properties.HighAvailability = &pg.HighAvailability{Mode: to.Ptr(pg.HighAvailabilityMode("Disabled"))}
	ok.Properties.CreateMode = to.Ptr(pg.CreateModeDefault)
	ok.Properties.ReplicationRole = to.Ptr(pg.ReplicationRoleNone)
	ok.Properties.DataEncryption = &pg.DataEncryption{Type: to.Ptr(pg.DataEncryptionTypeSystemManaged)}
	ok.Properties.Backup = &pg.Backup{GeoRedundantBackup: to.Ptr(pg.GeographicallyRedundantBackupDisabled), BackupRetentionDays: to.Ptr[int32](14)}
	ok.Identity = &pg.UserAssignedIdentity{Type: to.Ptr(pg.IdentityTypeNone)}
	if s, err := e.create("rg", "offered", ok); err != nil || *s.Properties.Backup.BackupRetentionDays != 14 {
		t.Fatalf("create with offered features: %v", err)
	}
	// On an existing server: HA, replica promotion, restart with failover
	// (major version upgrades: upgrade_test.go).
	_, err := e.update("rg", "offered", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{
		HighAvailability: &pg.HighAvailabilityForPatch{Mode: to.Ptr(pg.HighAvailabilityModeSameZone)}}})
	testkit.WantResponseError(t, err, http.StatusBadRequest, codeFeatureNotSupported)
	_, err = e.update("rg", "offered", pg.ServerForPatch{Properties: &pg.ServerPropertiesForPatch{
		Replica: &pg.Replica{PromoteMode: to.Ptr(pg.ReadReplicaPromoteModeStandalone)}}})
	testkit.WantResponseError(t, err, http.StatusBadRequest, codeFeatureNotSupported)
	_, err = e.servers.BeginRestart(e.ctx, "rg", "offered", &pg.ServersClientBeginRestartOptions{
		Parameters: &pg.RestartParameter{RestartWithFailover: to.Ptr(true), FailoverMode: to.Ptr(pg.FailoverModePlannedFailover)}})
	re := testkit.WantResponseError(t, err, http.StatusBadRequest, codeFeatureNotSupported)
	if !strings.Contains(re.Error(), "failover") {
		t.Errorf("failover: %v", re)
	}
}

func TestServerValidation(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	cases := []struct {
		name, code, target, want string
		edit                     func(*pg.Server)
	}{
		{"version", codeInvalidValue, "properties.version", "PostgreSQL 15", func(s *pg.Server) { s.Properties.Version = to.Ptr(pg.PostgresMajorVersionSeventeen) }},
		{"reserved-login", codeInvalidValue, "properties.administratorLogin", "azure_superuser", func(s *pg.Server) { s.Properties.AdministratorLogin = to.Ptr("Admin") }},
		{"pg-login", codeInvalidValue, "properties.administratorLogin", "pg_", func(s *pg.Server) { s.Properties.AdministratorLogin = to.Ptr("pg_owner") }},
		{"digit-login", codeInvalidValue, "properties.administratorLogin", "start with a letter", func(s *pg.Server) { s.Properties.AdministratorLogin = to.Ptr("1admin") }},
		{"long-login", codeInvalidValue, "properties.administratorLogin", "1 to 63", func(s *pg.Server) { s.Properties.AdministratorLogin = to.Ptr(strings.Repeat("a", 64)) }},
		{"no-login", codeMissingParameter, "properties.administratorLogin", "administrator login", func(s *pg.Server) { s.Properties.AdministratorLogin = nil }},
		{"no-password", codeMissingParameter, "properties.administratorLoginPassword", "password", func(s *pg.Server) { s.Properties.AdministratorLoginPassword = nil }},
		{"weak-password", codePasswordNotComplex, "properties.administratorLoginPassword", "three of the following", func(s *pg.Server) {
			s.Properties.AdministratorLoginPassword = to.Ptr("lowercaseonly")
		}},
		{"login-in-password", codePasswordNotComplex, "properties.administratorLoginPassword", "part of the login", func(s *pg.Server) {
			s.Properties.AdministratorLoginPassword = to.Ptr("My-PGADMIN-pass1")
		}},
		{"sku-mismatch", codeInvalidValue, "sku.name", "Standard_B", func(s *pg.Server) {
			s.SKU = &pg.SKU{Name: to.Ptr("Standard_D2ds_v5"), Tier: to.Ptr(pg.SKUTierBurstable)}
		}},
		{"sku-tier", codeInvalidValue, "sku.tier", "MemoryOptimized", func(s *pg.Server) {
			s.SKU = &pg.SKU{Name: to.Ptr("Standard_B1ms"), Tier: to.Ptr(pg.SKUTier("Premium"))}
		}},
		{"storage-size", codeInvalidValue, "properties.storage.storageSizeGB", "32, 64, 128", func(s *pg.Server) { s.Properties.Storage = &pg.Storage{StorageSizeGB: to.Ptr[int32](100)} }},
		{"storage-tier", codeInvalidValue, "properties.storage.tier", "P10 to P50", func(s *pg.Server) {
			s.Properties.Storage = &pg.Storage{StorageSizeGB: to.Ptr[int32](128), Tier: to.Ptr(pg.AzureManagedDiskPerformanceTierP4)}
		}},
		{"autogrow", codeInvalidValue, "properties.storage.autoGrow", "Enabled, Disabled", func(s *pg.Server) { s.Properties.Storage.AutoGrow = to.Ptr(pg.StorageAutoGrow("Sometimes")) }},
		{"retention", codeInvalidValue, "properties.backup.backupRetentionDays", "7 to 35", func(s *pg.Server) { s.Properties.Backup = &pg.Backup{BackupRetentionDays: to.Ptr[int32](3)} }},
		{"zone", codeInvalidValue, "properties.availabilityZone", "1, 2, 3", func(s *pg.Server) { s.Properties.AvailabilityZone = to.Ptr("4") }},
		{"public-access", codeInvalidValue, "properties.network.publicNetworkAccess", "Enabled, Disabled", func(s *pg.Server) {
			s.Properties.Network = &pg.Network{PublicNetworkAccess: to.Ptr(pg.ServerPublicNetworkAccessState("Maybe"))}
		}},
		{"no-auth", codeInvalidValue, "properties.authConfig", "enable passwordAuth", func(s *pg.Server) {
			s.Properties.AuthConfig = &pg.AuthConfig{PasswordAuth: to.Ptr(pg.PasswordBasedAuthDisabled), ActiveDirectoryAuth: to.Ptr(pg.MicrosoftEntraAuthDisabled)}
		}},
		{"maintenance", codeInvalidValue, "properties.maintenanceWindow.startHour", "0 to 23", func(s *pg.Server) {
			s.Properties.MaintenanceWindow = &pg.MaintenanceWindow{StartHour: to.Ptr[int32](24)}
		}},
		{"location", "LocationRequired", "location", "location", func(s *pg.Server) { s.Location = nil }},
	}
	for _, c := range cases {
		body := serverBody()
		c.edit(&body)
		_, err := e.create("rg", "bad-"+c.name, body)
		re := testkit.WantResponseError(t, err, http.StatusBadRequest, c.code)
		if !strings.Contains(re.Error(), c.want) || !strings.Contains(re.Error(), `"target": "`+c.target+`"`) {
			t.Errorf("%s: %v", c.name, re)
		}
		if strings.Contains(re.Error(), testPassword) {
			t.Errorf("%s: the error quotes the password", c.name)
		}
	}
	if n := e.countSub(); n != 0 {
		t.Errorf("%d servers after refused creates", n)
	}
	if keys := e.keys("pg/"); len(keys) != 0 {
		t.Errorf("refused creates left %v", keys)
	}

	// Entra-only servers need no administrator; their tenant defaults to the caller's.
	body := serverBody()
	body.Properties.AdministratorLogin, body.Properties.AdministratorLoginPassword = nil, nil
	body.Properties.AuthConfig = &pg.AuthConfig{PasswordAuth: to.Ptr(pg.PasswordBasedAuthDisabled), ActiveDirectoryAuth: to.Ptr(pg.MicrosoftEntraAuthEnabled)}
	s, err := e.create("rg", "entra", body)
	if err != nil || *s.Properties.AuthConfig.TenantID != "t" || s.Properties.AdministratorLogin != nil {
		t.Fatalf("entra-only: %v", err)
	}
	// Premium SSD v2 takes IOPS and throughput, no tier.
	body = serverBody()
	body.Properties.Storage = &pg.Storage{Type: to.Ptr(pg.StorageTypePremiumV2LRS), StorageSizeGB: to.Ptr[int32](64), Iops: to.Ptr[int32](5000)}
	s, err = e.create("rg", "premium-v2", body)
	if err != nil || *s.Properties.Storage.Iops != 5000 || *s.Properties.Storage.Throughput != 125 || s.Properties.Storage.Tier != nil {
		t.Fatalf("premium v2: %v %+v", err, s.Properties)
	}
	// Malformed bodies.
	path := serverPath("rg", "junk")
	for _, b := range [][]byte{nil, []byte("{"), []byte(`{"location":"westeurope","properties":{"storage":{"storageSizeGB":"big"}}}`), []byte(`[]`)} {
		r := e.raw(http.MethodPut, path, b)
		if r.status != http.StatusBadRequest {
			t.Errorf("body %q: %d %s", b, r.status, r.body)
		}
	}
}
