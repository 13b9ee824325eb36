package postgres

import (
	"encoding/json"
	"time"

	"github.com/privlink/privlink/internal/arm"
)

// The JSON shapes of Microsoft.DBforPostgreSQL 2025-08-01, as the
// armpostgresqlflexibleservers/v5 models read and write them. The provider
// has its own types rather than the SDK's so that the write-only
// administratorLoginPassword exists only in the request types: no document
// or response type has a field that could carry it.

// Server states (properties.state).
const (
	stateReady        = "Ready"
	stateProvisioning = "Provisioning"
	stateUpdating     = "Updating"
	stateStarting     = "Starting"
	stateStopping     = "Stopping"
	stateStopped      = "Stopped"
	stateRestarting   = "Restarting"
	stateDropping     = "Dropping"
)

// Enum values.
const (
	enabled  = "Enabled"
	disabled = "Disabled"
)

// serverDoc is a server's stored ARM document and the body of its GET.
type serverDoc struct {
	ID         string             `json:"id"`
	Name       string             `json:"name"`
	Type       string             `json:"type"`
	Location   string             `json:"location"`
	Tags       map[string]*string `json:"tags,omitempty"`
	SKU        *skuDoc            `json:"sku,omitempty"`
	SystemData *systemData        `json:"systemData,omitempty"`
	Properties serverProps        `json:"properties"`
}

type skuDoc struct {
	Name string `json:"name"`
	Tier string `json:"tier"`
}

type systemData = arm.SystemData

type serverProps struct {
	AdministratorLogin         string               `json:"administratorLogin,omitempty"`
	AuthConfig                 authConfigDoc        `json:"authConfig"`
	AvailabilityZone           string               `json:"availabilityZone,omitempty"`
	Backup                     backupDoc            `json:"backup"`
	DataEncryption             dataEncryptionDoc    `json:"dataEncryption"`
	FullyQualifiedDomainName   string               `json:"fullyQualifiedDomainName"`
	HighAvailability           highAvailabilityDoc  `json:"highAvailability"`
	MaintenanceWindow          maintenanceWindowDoc `json:"maintenanceWindow"`
	MinorVersion               string               `json:"minorVersion,omitempty"`
	Network                    networkDoc           `json:"network"`
	PrivateEndpointConnections []json.RawMessage    `json:"privateEndpointConnections"` // computed at read time
	Replica                    replicaDoc           `json:"replica"`
	ReplicaCapacity            int32                `json:"replicaCapacity"`
	ReplicationRole            string               `json:"replicationRole"`
	State                      string               `json:"state"`
	Storage                    storageDoc           `json:"storage"`
	Version                    string               `json:"version"`
}

type authConfigDoc struct {
	ActiveDirectoryAuth string `json:"activeDirectoryAuth"`
	PasswordAuth        string `json:"passwordAuth"`
	TenantID            string `json:"tenantId,omitempty"`
}

type backupDoc struct {
	BackupRetentionDays int32      `json:"backupRetentionDays"`
	GeoRedundantBackup  string     `json:"geoRedundantBackup"`
	EarliestRestoreDate *time.Time `json:"earliestRestoreDate,omitempty"` // computed at read time
}

type dataEncryptionDoc struct {
	Type string `json:"type"`
}

type highAvailabilityDoc struct {
	Mode  string `json:"mode"`
	State string `json:"state"`
}

type maintenanceWindowDoc struct {
	CustomWindow string `json:"customWindow"`
	DayOfWeek    int32  `json:"dayOfWeek"`
	StartHour    int32  `json:"startHour"`
	StartMinute  int32  `json:"startMinute"`
}

type networkDoc struct {
	PublicNetworkAccess string `json:"publicNetworkAccess"`
}

type replicaDoc struct {
	Role     string `json:"role"`
	Capacity int32  `json:"capacity"`
}

type storageDoc struct {
	AutoGrow      string `json:"autoGrow"`
	Iops          int32  `json:"iops,omitempty"`
	StorageSizeGB int32  `json:"storageSizeGB"`
	Throughput    int32  `json:"throughput,omitempty"`
	Tier          string `json:"tier,omitempty"`
	Type          string `json:"type"`
}

// serverIn is the body of a server PUT (Server) or PATCH (ServerForPatch):
// every field a client may send, all optional here; the handlers decide
// what is required. Read-only fields a client echoes back from a GET are
// not listed and so ignored.
type serverIn struct {
	Location   *string            `json:"location"`
	Tags       map[string]*string `json:"tags"`
	SKU        *skuIn             `json:"sku"`
	Identity   *identityIn        `json:"identity"`
	Properties *serverPropsIn     `json:"properties"`
}

type skuIn struct {
	Name *string `json:"name"`
	Tier *string `json:"tier"`
}

type identityIn struct {
	Type                   *string                    `json:"type"`
	UserAssignedIdentities map[string]json.RawMessage `json:"userAssignedIdentities"`
}

type serverPropsIn struct {
	AdministratorLogin         *string              `json:"administratorLogin"`
	AdministratorLoginPassword *string              `json:"administratorLoginPassword"`
	AuthConfig                 *authConfigIn        `json:"authConfig"`
	AvailabilityZone           *string              `json:"availabilityZone"`
	Backup                     *backupIn            `json:"backup"`
	Cluster                    *clusterIn           `json:"cluster"`
	CreateMode                 *string              `json:"createMode"`
	DataEncryption             *dataEncryptionIn    `json:"dataEncryption"`
	HighAvailability           *highAvailabilityIn  `json:"highAvailability"`
	MaintenanceWindow          *maintenanceWindowIn `json:"maintenanceWindow"`
	Network                    *networkIn           `json:"network"`
	PointInTimeUTC             *string              `json:"pointInTimeUTC"`
	Replica                    *replicaIn           `json:"replica"`
	ReplicationRole            *string              `json:"replicationRole"`
	SourceServerResourceID     *string              `json:"sourceServerResourceId"`
	Storage                    *storageIn           `json:"storage"`
	Version                    *string              `json:"version"`
}

type authConfigIn struct {
	ActiveDirectoryAuth *string `json:"activeDirectoryAuth"`
	PasswordAuth        *string `json:"passwordAuth"`
	TenantID            *string `json:"tenantId"`
}

type backupIn struct {
	BackupRetentionDays *int32  `json:"backupRetentionDays"`
	GeoRedundantBackup  *string `json:"geoRedundantBackup"`
}

type clusterIn struct {
	ClusterSize         *int32  `json:"clusterSize"`
	DefaultDatabaseName *string `json:"defaultDatabaseName"`
}

type dataEncryptionIn struct {
	Type                            *string `json:"type"`
	PrimaryKeyURI                   *string `json:"primaryKeyURI"`
	PrimaryUserAssignedIdentityID   *string `json:"primaryUserAssignedIdentityId"`
	GeoBackupKeyURI                 *string `json:"geoBackupKeyURI"`
	GeoBackupUserAssignedIdentityID *string `json:"geoBackupUserAssignedIdentityId"`
}

type highAvailabilityIn struct {
	Mode                    *string `json:"mode"`
	StandbyAvailabilityZone *string `json:"standbyAvailabilityZone"`
}

type maintenanceWindowIn struct {
	CustomWindow *string `json:"customWindow"`
	DayOfWeek    *int32  `json:"dayOfWeek"`
	StartHour    *int32  `json:"startHour"`
	StartMinute  *int32  `json:"startMinute"`
}

type networkIn struct {
	DelegatedSubnetResourceID   *string `json:"delegatedSubnetResourceId"`
	PrivateDNSZoneArmResourceID *string `json:"privateDnsZoneArmResourceId"`
	PublicNetworkAccess         *string `json:"publicNetworkAccess"`
}

type replicaIn struct {
	Role          *string `json:"role"`
	PromoteMode   *string `json:"promoteMode"`
	PromoteOption *string `json:"promoteOption"`
}

type storageIn struct {
	AutoGrow      *string `json:"autoGrow"`
	Iops          *int32  `json:"iops"`
	StorageSizeGB *int32  `json:"storageSizeGB"`
	Throughput    *int32  `json:"throughput"`
	Tier          *string `json:"tier"`
	Type          *string `json:"type"`
}

// restartIn is the optional body of the restart action (RestartParameter).
type restartIn struct {
	RestartWithFailover *bool   `json:"restartWithFailover"`
	FailoverMode        *string `json:"failoverMode"`
}

// firewallRuleDoc is a firewall rule's stored document and GET body.
type firewallRuleDoc struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	SystemData *systemData       `json:"systemData,omitempty"`
	Properties firewallRuleProps `json:"properties"`
}

type firewallRuleProps struct {
	StartIPAddress string `json:"startIpAddress"`
	EndIPAddress   string `json:"endIpAddress"`
}

type firewallRuleIn struct {
	Properties *struct {
		StartIPAddress *string `json:"startIpAddress"`
		EndIPAddress   *string `json:"endIpAddress"`
	} `json:"properties"`
}

// configDoc is a configuration (server parameter) as a GET returns it.
type configDoc struct {
	ID         string      `json:"id"`
	Name       string      `json:"name"`
	Type       string      `json:"type"`
	SystemData *systemData `json:"systemData,omitempty"`
	Properties configProps `json:"properties"`
}

type configProps struct {
	Value                  string `json:"value"`
	Source                 string `json:"source"`
	Description            string `json:"description"`
	DefaultValue           string `json:"defaultValue"`
	DataType               string `json:"dataType"`
	AllowedValues          string `json:"allowedValues"`
	Unit                   string `json:"unit,omitempty"`
	IsReadOnly             bool   `json:"isReadOnly"`
	IsDynamicConfig        bool   `json:"isDynamicConfig"`
	IsConfigPendingRestart bool   `json:"isConfigPendingRestart"`
	DocumentationLink      string `json:"documentationLink"`
}

// configOverride is the stored document of a configuration the user set:
// only what differs from the catalog (configurations.go).
type configOverride struct {
	ID         string      `json:"id"`
	Name       string      `json:"name"`
	Value      string      `json:"value"`
	SystemData *systemData `json:"systemData,omitempty"`
}

type configIn struct {
	Properties *struct {
		Value  *string `json:"value"`
		Source *string `json:"source"`
	} `json:"properties"`
}

// privateLinkResourceDoc is the one private link resource of a server.
type privateLinkResourceDoc struct {
	ID         string                   `json:"id"`
	Name       string                   `json:"name"`
	Type       string                   `json:"type"`
	Properties privateLinkResourceProps `json:"properties"`
}

type privateLinkResourceProps struct {
	GroupID           string   `json:"groupId"`
	RequiredMembers   []string `json:"requiredMembers"`
	RequiredZoneNames []string `json:"requiredZoneNames"`
}

type nameAvailabilityIn struct {
	Name *string `json:"name"`
	Type *string `json:"type"`
}

type nameAvailability struct {
	NameAvailable bool   `json:"nameAvailable"`
	Reason        string `json:"reason,omitempty"`
	Message       string `json:"message"`
	Name          string `json:"name"`
	Type          string `json:"type"`
}
