// Package postgres serves the Microsoft.DBforPostgreSQL control plane of
// Azure Database for PostgreSQL flexible server: servers with their
// start/stop/restart actions, firewall rules, configurations (server
// parameters), private link resources, private endpoint connections
// (connections.go) and name availability.
//
// Handlers validate a request as Azure does and record the desired state in
// one store transaction; they never touch the machine. A server is stored
// twice, in the same transaction: as its ARM document (what a GET returns,
// less what is computed at read time) and as a Desired record
// (desired.go), the contract with the postgres controller, which runs the
// PostgreSQL cluster, reports properties.state and finishes the server's
// long-running operations (controller.go). Server names are unique across
// every subscription and tenant, as their DNS names are (names.go).
//
// Without a controller (WithController not given: tests of this package,
// privlinkd without root) every operation completes at once and a server
// goes straight to Ready or Stopped.
package postgres

import (
	"net/http"
	"slices"
	"strings"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/provider/privatelink"
	"github.com/privlink/privlink/internal/store"
)

// Versions are the api-versions accepted for Microsoft.DBforPostgreSQL
// flexible servers: every stable version Azure published (2021-06-01,
// 2022-12-01, 2024-08-01 and 2025-08-01, what armpostgresqlflexibleservers/v5
// sends) and the public previews up to 2025-08-01 (the az CLI 2.74 sends
// 2025-01-01-preview, and 2023-06-01-preview for endpoint connections;
// 2.45 sends 2022-12-01). The fields privlink serves mean the same in all
// of them; later versions only add fields, and those privlink cannot
// honour (virtual network integration, replicas, high availability, ...)
// are refused by name whatever the version (features.go). Private
// endpoint connections and private link resources exist from
// 2023-06-01-preview on, as in Azure.
var Versions = arm.NewVersionTable(
	"2025-08-01", "2025-06-01-preview", "2025-01-01-preview", "2024-11-01-preview",
	"2024-08-01", "2024-03-01-preview", "2023-12-01-preview", "2023-06-01-preview",
	"2023-03-01-preview", "2022-12-01", "2022-03-08-preview", "2022-01-20-preview",
	"2021-06-01", "2021-06-01-preview",
).Since(typePrivateLink, "2023-06-01-preview").Since(typeConnections, "2023-06-01-preview")

const namespace = "Microsoft.DBforPostgreSQL"

// Resource types, in ARM's canonical casing.
const (
	typeServer       = "Microsoft.DBforPostgreSQL/flexibleServers"
	typeFirewallRule = "Microsoft.DBforPostgreSQL/flexibleServers/firewallRules"
	typeConfig       = "Microsoft.DBforPostgreSQL/flexibleServers/configurations"
	typePrivateLink  = "Microsoft.DBforPostgreSQL/flexibleServers/privateLinkResources"
	typeConnections  = typeServer + "/" + privatelink.Segment
	// typeLocations carries the per-location checkNameAvailability and
	// capabilities actions.
	typeLocations = "Microsoft.DBforPostgreSQL/locations"
)

// DNSSuffix is the zone under which every server has its name.
const DNSSuffix = "postgres.database.azure.com"

// DefaultMajorVersion is the PostgreSQL major version assumed installed
// when WithVersions is not given (Debian 12's).
const DefaultMajorVersion = "15"

// Provider serves Microsoft.DBforPostgreSQL.
type Provider struct {
	st         store.Store
	controller bool
	versions   []string            // installed major versions, ascending
	minor      map[string]string   // major → minor version, when known
	upgrades   map[string][]string // major → majors it can be upgraded to (upgrade.go)
	// entraVersions are the majors that can check Entra tokens; nil: all
	// (upgrade.go, WithEntraVersions).
	entraVersions []string
}

// Option configures a Provider.
type Option func(*Provider)

// New returns the provider over st.
func New(st store.Store, opts ...Option) *Provider {
	p := &Provider{st: st, minor: map[string]string{}}
	for _, o := range opts {
		o(p)
	}
	if len(p.versions) == 0 {
		p.versions = []string{DefaultMajorVersion}
	}
	slices.SortFunc(p.versions, func(a, b string) int { return compareVersions(a, b) })
	return p
}

// WithController says that the postgres controller runs the servers'
// clusters: writes that it must act on leave the server in a transitional
// state (Provisioning, Updating, Starting, Stopping, Restarting) and their
// operations in progress until the controller reports back (Reconciled,
// Deleted in controller.go). Without it everything completes at once.
func WithController() Option { return func(p *Provider) { p.controller = true } }

// WithVersions sets the PostgreSQL versions installed on this machine, as
// "MAJOR" or "MAJOR.MINOR" (e.g. "15.18"): only those majors can be
// created, and a server reports the minor as properties.minorVersion.
// Entries that are not versions are ignored.
func WithVersions(versions []string) Option {
	return func(p *Provider) {
		for _, v := range versions {
			major, minor, _ := strings.Cut(strings.TrimSpace(v), ".")
			if !isDigits(major) || (minor != "" && !isDigits(minor)) {
				continue
			}
			if !slices.Contains(p.versions, major) {
				p.versions = append(p.versions, major)
			}
			if minor != "" {
				p.minor[major] = minor
			}
		}
	}
}

// Types returns the resource types this provider serves.
func (p *Provider) Types() []*arm.ResourceType {
	v := Versions.All()
	return []*arm.ResourceType{
		{
			Type: typeServer, APIVersions: v,
			Get: p.getServer, List: p.listServers, Put: p.putServer, Patch: p.patchServer, Delete: p.deleteServer,
			Actions:           map[string]arm.Handler{"start": p.startServer, "stop": p.stopServer, "restart": p.restartServer},
			ReadActions:       map[string]arm.Handler{"capabilities": p.serverCapabilities},
			BeforeGroupDelete: p.serverGroupDelete,
			// Virtual network integration is refused (features.go), but
			// its references are checked first, as ARM does.
			Links: []arm.Link{
				{Path: "properties.network.delegatedSubnetResourceId", Type: "Microsoft.Network/virtualNetworks/subnets", Action: arm.JoinSubnetAction},
				{Path: "properties.network.privateDnsZoneArmResourceId", Type: "Microsoft.Network/privateDnsZones", Action: arm.JoinPrivateZoneAction},
			},
		},
		{Type: typeFirewallRule, APIVersions: v, Get: p.getFirewallRule, List: p.listFirewallRules,
			Put: p.putFirewallRule, Delete: p.deleteFirewallRule},
		{Type: typeAdministrator, APIVersions: v, Get: p.getAdministrator, List: p.listAdministrators,
			Put: p.putAdministrator, Delete: p.deleteAdministrator},
		{Type: typeConfig, APIVersions: v, Get: p.getConfig, List: p.listConfigs,
			Put: p.putConfig, Patch: p.putConfig},
		{Type: typePrivateLink, APIVersions: Versions.For(typePrivateLink), Get: p.getPrivateLinkResource, List: p.listPrivateLinkResources},
		privatelink.ConnectionsType(p.st, Kind, Versions.For(typeConnections)),
		// POST /subscriptions/{s}/providers/Microsoft.DBforPostgreSQL/checkNameAvailability:
		// the router resolves an action on a bare namespace to the type
		// named by the namespace alone.
		{Type: namespace, APIVersions: v, NoResourceGroup: true,
			Actions: map[string]arm.Handler{"checkNameAvailability": p.checkNameAvailability}},
		{Type: typeLocations, APIVersions: v, NoResourceGroup: true,
			Actions:     map[string]arm.Handler{"checkNameAvailability": p.checkNameAvailability},
			ReadActions: map[string]arm.Handler{"capabilities": p.locationCapabilities}},
	}
}

// settle decides how a write that changes a server's Desired record
// completes: the state the server reports meanwhile and whether its
// operation is already finished. With a controller the server shows the
// transitional state and the operation waits for it; without one the
// server is at once in its steady state.
func (p *Provider) settle(transitional, steady string) (state string, done bool) {
	if p.controller {
		return transitional, false
	}
	return steady, true
}

// steadyState is the state of a server at rest.
func steadyState(running bool) string {
	if running {
		return stateReady
	}
	return stateStopped
}

// accepted is the answer to a write that a long-running operation
// completes: 202 with the polling headers (the router adds them for Op).
func accepted(body any, op *arm.Operation) *arm.Response {
	return &arm.Response{Status: http.StatusAccepted, Body: body, Op: op}
}

// noContent is the answer to a DELETE of something that does not exist.
func noContent() *arm.Response { return &arm.Response{Status: http.StatusNoContent} }

// normLocation returns ARM's form of a location: "West Europe" → "westeurope".
func normLocation(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
}

// str dereferences a string pointer, "" for nil.
func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// compareVersions orders numeric version strings by value.
func compareVersions(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// groupName returns the resource group's name in the casing it was created
// with, so that new IDs carry it; the request's casing when it cannot tell.
func groupName(r arm.Reader, id arm.ResourceID) (string, error) {
	var rg struct {
		Name string `json:"name"`
	}
	ok, err := arm.Load(r, id.ResourceGroupID(), &rg)
	if err != nil {
		return "", err
	}
	if !ok || rg.Name == "" {
		return id.ResourceGroup, nil
	}
	return rg.Name, nil
}

// newID returns the canonical ID for a resource being created at id.
func newID(r arm.Reader, id arm.ResourceID) (arm.ResourceID, error) {
	rg, err := groupName(r, id)
	if err != nil {
		return id, err
	}
	id.ResourceGroup = rg
	return id, nil
}
