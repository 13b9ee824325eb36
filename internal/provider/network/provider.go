// Package network serves the Microsoft.Network control plane that private
// endpoints need: virtual networks and their subnets, network security
// groups and their rules, application security groups, route tables and
// their routes, network interfaces with their private addresses, and the
// private endpoints themselves with their private DNS zone groups
// (privateendpoint.go, zonegroup.go), and Standard internal load balancers
// (loadbalancer.go).
//
// Handlers validate a request as Azure does and record the desired state in
// one store transaction; they never touch the machine. Every resource is
// stored as the JSON its GET returns, less what is computed at read time:
// child resources (subnets, security rules, routes) are documents of their
// own and are composed into their parent's inline lists when read, and the
// back-references Azure reports (a subnet's ipConfigurations, an NSG's
// subnets and networkInterfaces, a route table's subnets) are derived from
// the documents that hold the forward reference, so they can never go
// stale. Private addresses are derived the same way: the addresses in use
// in a subnet are the ones the network interface documents hold (addr.go).
package network

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/google/uuid"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/provider/privatelink"
	"github.com/privlink/privlink/internal/store"
)

// Versions are the api-versions accepted for Microsoft.Network: every
// stable version Azure published from 2022-01-01 (the oldest the az CLI
// 2.74 sends) to 2025-01-01 (what armnetwork/v7 sends). Every type served
// here exists in all of them, and the fields privlink reads and writes
// mean the same in each: a version adds fields privlink does not serve
// (and ignores), never a new meaning of one it does.
var Versions = arm.NewVersionTable(
	"2025-01-01", "2024-10-01", "2024-07-01", "2024-05-01", "2024-03-01", "2024-01-01",
	"2023-11-01", "2023-09-01", "2023-06-01", "2023-05-01", "2023-04-01", "2023-02-01",
	"2022-11-01", "2022-09-01", "2022-07-01", "2022-05-01", "2022-01-01",
)

const namespace = "Microsoft.Network"

// Resource types, in ARM's canonical casing.
const (
	typeVNet        = "Microsoft.Network/virtualNetworks"
	typeSubnet      = "Microsoft.Network/virtualNetworks/subnets"
	typeDelegation  = "Microsoft.Network/virtualNetworks/subnets/delegations"
	typeNSG         = "Microsoft.Network/networkSecurityGroups"
	typeRule        = "Microsoft.Network/networkSecurityGroups/securityRules"
	typeDefaultRule = "Microsoft.Network/networkSecurityGroups/defaultSecurityRules"
	typeASG         = "Microsoft.Network/applicationSecurityGroups"
	typeRouteTable  = "Microsoft.Network/routeTables"
	typeRoute       = "Microsoft.Network/routeTables/routes"
	typeNIC         = "Microsoft.Network/networkInterfaces"
	typeIPConfig    = "Microsoft.Network/networkInterfaces/ipConfigurations"
)

// Provider serves Microsoft.Network.
type Provider struct {
	st              store.Store
	materializeNICs bool
	nicSummaries    *arm.Memo[nicSummary] // see (*Provider).newUsage
	// targets are the kinds of resource private endpoints lead to.
	targets *privatelink.Kinds
	// vpnStatus, when set, tells connections' live states, and gateways
	// and connections complete when the VPN controller has made them.
	vpnStatus VPNStatus
}

// New returns the provider over st.
func New(st store.Store, opts ...Option) *Provider {
	p := &Provider{st: st, nicSummaries: arm.NewMemo(decodeNICSummary)}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Option configures a Provider.
type Option func(*Provider)

// WithMaterializedNICs says that a controller builds a namespace for each
// NIC and finishes NIC operations once it has: NIC writes then report
// Updating until the namespace exists.
func WithMaterializedNICs() Option { return func(p *Provider) { p.materializeNICs = true } }

// WithTargets names the kinds of private-link resource that private
// endpoints may lead to (without it, none: every endpoint is refused).
func WithTargets(k *privatelink.Kinds) Option { return func(p *Provider) { p.targets = k } }

// Types returns the resource types this provider serves.
func (p *Provider) Types() []*arm.ResourceType {
	v := Versions.All()
	return append([]*arm.ResourceType{
		p.vnets().register(&arm.ResourceType{Type: typeVNet, APIVersions: v, Put: p.putVNet, Links: vnetLinks, BeforeGroupDelete: p.vnetGroupDelete}),
		{Type: typeSubnet, APIVersions: v, Get: p.getSubnet, List: p.listSubnets, Put: p.putSubnet,
			Delete: p.deleteSubnet, Links: subnetLinks},
		p.nsgs().register(&arm.ResourceType{Type: typeNSG, APIVersions: v, Put: p.putNSG, Links: nsgLinks, BeforeGroupDelete: p.nsgGroupDelete}),
		{Type: typeRule, APIVersions: v, Get: p.getRule, List: p.listRules, Put: p.putRule,
			Delete: p.deleteChild, Links: ruleLinks},
		{Type: typeDefaultRule, APIVersions: v, Get: p.getDefaultRule, List: p.listDefaultRules},
		p.asgs().register(&arm.ResourceType{Type: typeASG, APIVersions: v, Put: p.putASG, BeforeGroupDelete: p.asgGroupDelete}),
		p.routeTables().register(&arm.ResourceType{Type: typeRouteTable, APIVersions: v, Put: p.putRouteTable, BeforeGroupDelete: p.routeTableGroupDelete}),
		{Type: typeRoute, APIVersions: v, Get: p.getRoute, List: p.listRoutes, Put: p.putRoute,
			Delete: p.deleteChild},
		p.nics().register(&arm.ResourceType{Type: typeNIC, APIVersions: v, Put: p.putNIC, Links: nicLinks,
			Actions: map[string]arm.Handler{"effectiveNetworkSecurityGroups": p.effectiveNSGs, "effectiveRouteTable": p.effectiveRoutes}}),
		p.watchers().register(&arm.ResourceType{Type: typeWatcher, APIVersions: v, Put: p.putWatcher,
			Actions: map[string]arm.Handler{"ipFlowVerify": p.ipFlowVerify, "nextHop": p.nextHop, "connectivityCheck": p.connectivityCheck}}),
		{Type: typeIPConfig, APIVersions: v, Get: p.getIPConfig, List: p.listIPConfigs},
		p.endpoints().register(&arm.ResourceType{Type: typeEndpoint, APIVersions: v, Put: p.putEndpoint, Links: endpointLinks, BeforeGroupDelete: p.endpointGroupDelete}),
		{Type: typeZoneGroup, APIVersions: v, Get: p.getZoneGroup, List: p.listZoneGroups, Put: p.putZoneGroup,
			Delete: p.deleteZoneGroup, Links: zoneGroupLinks},
	}, slices.Concat(p.lbTypes(), p.serviceTypes(), p.peeringTypes(), p.vpnTypes())...)
}

// settle is the one place that decides how a write to a Microsoft.Network
// resource completes: the provisioningState the resource reports once its
// desired state is recorded, and whether the write's long-running operation
// is already finished then.
//
// Most types have nothing to materialize and settle at once as Succeeded.
// NICs do when a controller materializes them (a namespace per NIC, see
// WithMaterializedNICs): their writes answer Updating (or Deleting) and
// stay in progress until the controller has built or removed the namespace
// and finishes their operations (arm.FinishOperations). Documents are
// always written or removed by the handler; only the completion moves.
// A private endpoint completes with its NIC (privateendpoint.go).
func (p *Provider) settle(id arm.ResourceID, deleting bool) (state armnetwork.ProvisioningState, done bool) {
	if p.materializeNICs && strings.EqualFold(id.Type(), typeNIC) {
		if deleting {
			return armnetwork.ProvisioningStateDeleting, false
		}
		return armnetwork.ProvisioningStateUpdating, false
	}
	if p.vpnStatus != nil && IsVPNType(id) {
		if deleting {
			return armnetwork.ProvisioningStateDeleting, false
		}
		return armnetwork.ProvisioningStateUpdating, false
	}
	return armnetwork.ProvisioningStateSucceeded, true
}

// accepted is the answer to a PUT: 201 on create, 200 on update, with the
// operation the router advertises in Azure-AsyncOperation.
func accepted(created bool, body any, op *arm.Operation) *arm.Response {
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return &arm.Response{Status: status, Body: body, Op: op}
}

// deleted is the answer to a DELETE that removed something.
func deleted(op *arm.Operation) *arm.Response {
	return &arm.Response{Status: http.StatusAccepted, Op: op}
}

// noContent is the answer to a DELETE of something that does not exist.
func noContent() *arm.Response { return &arm.Response{Status: http.StatusNoContent} }

// normLocation returns ARM's form of a location: "West Europe" → "westeurope".
func normLocation(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
}

func ptr[T any](v T) *T { return &v }

// str dereferences a string pointer, "" for nil.
func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// boolOr dereferences a bool pointer, def for nil.
func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

func newGUID() *string { return ptr(uuid.NewString()) }

// lkey is the form in which IDs are compared: ARM IDs are case-insensitive.
func lkey(id string) string { return strings.ToLower(strings.TrimSuffix(id, "/")) }

// subColl is the collection of one type across a subscription, e.g. every
// subnet of every virtual network.
func subColl(sub string, types ...string) arm.ResourceID {
	return arm.ResourceID{Subscription: sub, Namespace: namespace, Types: types}
}

// childColl is the collection of parent's children of one type.
func childColl(parent arm.ResourceID, typ string) arm.ResourceID {
	return parent.Child(typ, "").Collection()
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

// identity returns the canonical ID, the name and the resourceGuid of a
// tracked resource being written: the stored ones on update (the name keeps
// the casing of creation), new ones on create.
func identity(r arm.Reader, req *arm.Request, exists bool, curID, curName string, curGUID *string) (arm.ResourceID, string, *string, error) {
	if !exists {
		id, err := newID(r, req.ID)
		return id, req.ID.Name(), newGUID(), err
	}
	id, err := arm.ParseID(curID)
	if err != nil {
		return id, "", nil, fmt.Errorf("stored resource %s has a bad id %q: %w", req.ID, curID, err)
	}
	if curGUID == nil {
		curGUID = newGUID()
	}
	return id, curName, curGUID, nil
}

// validateEnvelope checks what every tracked resource's PUT carries.
func validateEnvelope(kind string, id arm.ResourceID, location *string, tags map[string]*string) error {
	if err := arm.ValidateNetworkName(kind, id.Name()); err != nil {
		return err
	}
	if err := arm.ValidateLocation(location); err != nil {
		return err
	}
	return arm.ValidateTags(tags)
}

// checkLocation refuses to move an existing resource to another region.
func checkLocation(id arm.ResourceID, cur, want string) error {
	if cur != "" && normLocation(cur) != normLocation(want) {
		return arm.BadRequest("InvalidResourceLocation", "location",
			"The resource '%s' already exists in location '%s' in resource group '%s'. A resource with the same name cannot be created in location '%s'. Delete it first or choose another name.",
			id.Name(), cur, id.ResourceGroup, normLocation(want))
	}
	return nil
}
