package postgres

import (
	"fmt"
	"strings"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/provider/privatelink"
)

// features is what a request asks of a server that privlink might not
// offer. Every write of a server (PUT, PATCH, the restart action) fills
// one and passes it to refusedFeature.
type features struct {
	haMode          string // properties.highAvailability.mode
	createMode      string // properties.createMode
	sourceServer    string // properties.sourceServerResourceId
	pointInTime     string // properties.pointInTimeUTC
	replicationRole string // properties.replicationRole
	replicaRole     string // properties.replica.role
	promote         bool   // properties.replica.promoteMode/promoteOption
	geoBackup       string // properties.backup.geoRedundantBackup
	delegatedSubnet string // properties.network.delegatedSubnetResourceId
	privateDNSZone  string // properties.network.privateDnsZoneArmResourceId
	encryption      string // properties.dataEncryption.type
	keyURI          string // properties.dataEncryption.primaryKeyURI
	identity        string // identity.type
	clusterSize     int32  // properties.cluster.clusterSize
	failover        bool   // restart with restartWithFailover
	fromVersion     string // the server's major version, on update
	toVersion       string // the requested major version, on update
}

// featuresOf collects the features a server PUT or PATCH body asks for.
func featuresOf(in *serverIn) features {
	var f features
	if in == nil {
		return f
	}
	if in.Identity != nil {
		f.identity = str(in.Identity.Type)
	}
	pr := in.Properties
	if pr == nil {
		return f
	}
	f.createMode = str(pr.CreateMode)
	f.sourceServer = str(pr.SourceServerResourceID)
	f.pointInTime = str(pr.PointInTimeUTC)
	f.replicationRole = str(pr.ReplicationRole)
	if pr.HighAvailability != nil {
		f.haMode = str(pr.HighAvailability.Mode)
	}
	if pr.Replica != nil {
		f.replicaRole = str(pr.Replica.Role)
		f.promote = str(pr.Replica.PromoteMode) != "" || str(pr.Replica.PromoteOption) != ""
	}
	if pr.Backup != nil {
		f.geoBackup = str(pr.Backup.GeoRedundantBackup)
	}
	if pr.Network != nil {
		f.delegatedSubnet = str(pr.Network.DelegatedSubnetResourceID)
		f.privateDNSZone = str(pr.Network.PrivateDNSZoneArmResourceID)
	}
	if pr.DataEncryption != nil {
		f.encryption = str(pr.DataEncryption.Type)
		f.keyURI = str(pr.DataEncryption.PrimaryKeyURI)
	}
	if pr.Cluster != nil && pr.Cluster.ClusterSize != nil {
		f.clusterSize = *pr.Cluster.ClusterSize
	}
	f.toVersion = strings.TrimSpace(str(pr.Version))
	return f
}

// refusedFeature is the one place that refuses what privlink does not
// offer: high availability, restores (point-in-time, geo, revive), read
// replicas and their promotion, geo-redundant backup, virtual network
// integration, customer-managed keys, managed identities, elastic clusters,
// failover and in-place major version upgrades. The answer is a 400
// naming the feature. r and id (the server) let it consult the server's
// other state: a server with private endpoint connections refuses high
// availability, read replicas, geo-restore and point-in-time restore
// first for that reason, as Azure does (privateEndpointRule).
func refusedFeature(r arm.Reader, id arm.ResourceID, f features) error {
	if err := privateEndpointRule(r, id, f); err != nil {
		return err
	}
	is := func(v string, ok ...string) bool {
		v = strings.TrimSpace(v)
		if v == "" {
			return true
		}
		for _, o := range ok {
			if strings.EqualFold(v, o) {
				return true
			}
		}
		return false
	}
	switch {
	case !is(f.haMode, disabled):
		return refuse("properties.highAvailability.mode", fmt.Sprintf("High availability (mode '%s')", f.haMode), "Use mode Disabled.")
	case !is(f.createMode, "Default", "Create", "Update"):
		what := map[string]string{
			"pointintimerestore": "Point-in-time restore", "georestore": "Geo-restore",
			"replica": "Read replicas", "revivedropped": "Reviving a dropped server",
		}[strings.ToLower(f.createMode)]
		if what == "" {
			return errEnum("properties.createMode", f.createMode, []string{"Default", "Create", "Update"})
		}
		return refuse("properties.createMode", fmt.Sprintf("%s (createMode '%s')", what, f.createMode), "Use createMode Default to create a new server.")
	case f.sourceServer != "":
		return refuse("properties.sourceServerResourceId", "Restores and read replicas (sourceServerResourceId)", "Remove sourceServerResourceId.")
	case f.pointInTime != "":
		return refuse("properties.pointInTimeUTC", "Point-in-time restore (pointInTimeUTC)", "Remove pointInTimeUTC.")
	case !is(f.replicationRole, "None", "Primary"):
		return refuse("properties.replicationRole", fmt.Sprintf("Read replicas (replicationRole '%s')", f.replicationRole), "Use replicationRole None.")
	case !is(f.replicaRole, "None", "Primary"):
		return refuse("properties.replica.role", fmt.Sprintf("Read replicas (replica.role '%s')", f.replicaRole), "Use role None.")
	case f.promote:
		return refuse("properties.replica.promoteMode", "Promoting read replicas (replica.promoteMode)", "This server is no replica.")
	case !is(f.geoBackup, disabled):
		return refuse("properties.backup.geoRedundantBackup", "Geo-redundant backup", "Use geoRedundantBackup Disabled.")
	case f.delegatedSubnet != "" || f.privateDNSZone != "":
		return refuse("properties.network.delegatedSubnetResourceId",
			"Virtual network integration (delegatedSubnetResourceId, privateDnsZoneArmResourceId)", "Reach the server through private endpoints instead.")
	case !is(f.encryption, "SystemManaged") || f.keyURI != "":
		return refuse("properties.dataEncryption.type", "Data encryption with customer-managed keys", "Use dataEncryption type SystemManaged.")
	case !is(f.identity, "None"):
		return refuse("identity.type", fmt.Sprintf("Managed identities (identity.type '%s')", f.identity), "Use identity type None or leave identity out.")
	case f.clusterSize > 1:
		return refuse("properties.cluster.clusterSize", fmt.Sprintf("Elastic clusters (clusterSize %d)", f.clusterSize), "Use clusterSize 1 or leave cluster out.")
	case f.failover:
		return refuse("restartWithFailover", "Restart with failover", "The server has no high availability standby; restart without failover.")
	}
	return nil
}

// refuse is the 400 of refusedFeature: the feature, that privlink does
// not offer it, and what to do instead.
func refuse(target, feature, hint string) error {
	return errCode(codeFeatureNotSupported, target, "%s is not supported by privlink. %s", feature, hint)
}

// codePrivateEndpoints is privlink's code (by analogy with Azure's
// feature-specific ones) for a feature a server with private endpoint
// connections cannot have.
const codePrivateEndpoints = "FeatureNotSupportedWithPrivateEndpoints"

// privateEndpointRule refuses, with private endpoints named as the
// reason, what a flexible server with private endpoint connections cannot
// have: high availability, read replicas (on the server itself, or a
// replica created from it), geo-restore and point-in-time restore from it.
// Major version upgrade, Entra ID authentication and pgbouncer stay
// allowed. Without connections the request goes on to the not-offered
// checks.
func privateEndpointRule(r arm.Reader, id arm.ResourceID, f features) error {
	type rule struct{ what, target string }
	var own, fromSource []rule
	set := func(v string, off ...string) bool {
		v = strings.TrimSpace(v)
		for _, o := range off {
			if strings.EqualFold(v, o) {
				return false
			}
		}
		return v != ""
	}
	if set(f.haMode, disabled) {
		own = append(own, rule{fmt.Sprintf("High availability (mode '%s')", f.haMode), "properties.highAvailability.mode"})
	}
	if set(f.replicationRole, "None", "Primary") {
		own = append(own, rule{fmt.Sprintf("Read replicas (replicationRole '%s')", f.replicationRole), "properties.replicationRole"})
	}
	if set(f.replicaRole, "None", "Primary") {
		own = append(own, rule{fmt.Sprintf("Read replicas (replica.role '%s')", f.replicaRole), "properties.replica.role"})
	}
	switch strings.ToLower(strings.TrimSpace(f.createMode)) {
	case "replica":
		fromSource = append(fromSource, rule{"Read replicas (createMode 'Replica')", "properties.sourceServerResourceId"})
	case "georestore":
		fromSource = append(fromSource, rule{"Geo-restore (createMode 'GeoRestore')", "properties.sourceServerResourceId"})
	case "pointintimerestore":
		fromSource = append(fromSource, rule{"Point-in-time restore (createMode 'PointInTimeRestore')", "properties.sourceServerResourceId"})
	}
	if len(own) > 0 && id.Namespace != "" {
		has, err := privatelink.HasConnections(r, id)
		if err != nil {
			return err
		}
		if has {
			return refuseForEndpoints(own[0].target, own[0].what, id.Name())
		}
	}
	if len(fromSource) > 0 {
		src, err := arm.ParseID(strings.TrimSpace(f.sourceServer))
		if err != nil || !strings.EqualFold(src.Type(), typeServer) || len(src.Names) != 1 || src.ResourceGroup == "" {
			return nil // the not-offered checks answer
		}
		has, err := privatelink.HasConnections(r, src)
		if err != nil {
			return err
		}
		if has {
			return refuseForEndpoints(fromSource[0].target, fromSource[0].what, src.Name())
		}
	}
	return nil
}

func refuseForEndpoints(target, feature, server string) error {
	return errCode(codePrivateEndpoints, target,
		"%s is not supported for server '%s' because it has private endpoint connections: a flexible server reached through private endpoints cannot have high availability, read replicas, geo-restore or point-in-time restore.",
		feature, server)
}
