// Package dnsresolver serves Microsoft.Network/dnsResolvers, Azure DNS
// Private Resolver, wire-compatible with the armdnsresolver module
// (api-version 2022-07-01): DNS resolvers in a virtual network and their
// inbound endpoints.
//
// An inbound endpoint is a private address in a subnet of the resolver's
// network (delegated to Microsoft.Network/dnsResolvers, /28 to /24, used
// by no other resolver endpoint) that answers DNS exactly as the network's
// own 168.63.129.16 does: the same resolver, the same view (the network's
// private DNS zone links). Its address comes from the network provider's
// allocator (network.AllocateAddress) and counts there as held
// (network.RegisterAddressHolders), so no NIC takes it and its subnet
// cannot be deleted under it. The network controller puts the address on
// the network's router and serves DNS on it (InboundAddresses).
//
// Every resource is one document under its ARM id (arm.Save), in the shape
// a GET returns it, but for dnsResolverState, which GET computes
// (Connected while the network exists).
package dnsresolver

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/dnsresolver/armdnsresolver"
	"github.com/google/uuid"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// APIVersion is the api-version armdnsresolver v1.2.0 sends.
const APIVersion = "2022-07-01"

// Versions are the accepted api-versions.
var Versions = arm.NewVersionTable(APIVersion, "2020-04-01-preview")

// Resource types.
const (
	ResolverType = "Microsoft.Network/dnsResolvers"
	InboundType  = ResolverType + "/inboundEndpoints"
)

// DelegationService is the service a resolver endpoint's subnet must be
// delegated to.
const DelegationService = "Microsoft.Network/dnsResolvers"

const (
	namespace       = "Microsoft.Network"
	resolverSegment = "dnsResolvers"
	inboundSegment  = "inboundEndpoints"
	vnetType        = "Microsoft.Network/virtualNetworks"
	subnetType      = vnetType + "/subnets"
	// Azure's subnet sizes for resolver endpoints.
	minEndpointBits = 24
	maxEndpointBits = 28
)

// Provider serves DNS resolvers and their inbound endpoints.
type Provider struct {
	st store.Store
}

// New returns the provider over st.
func New(st store.Store) *Provider { return &Provider{st: st} }

// Types returns the resource types this provider serves.
func (p *Provider) Types() []*arm.ResourceType {
	v := Versions.All()
	return []*arm.ResourceType{
		{
			Type: ResolverType, APIVersions: v,
			Get: p.getResolver, List: p.listResolvers, Put: p.putResolver, Patch: p.patchResolver, Delete: p.deleteResolver,
			Links: []arm.Link{{Path: "properties.virtualNetwork.id", Type: vnetType, Action: arm.JoinVirtualNetworkAction}},
		},
		{
			Type: InboundType, APIVersions: v,
			Get: p.getInbound, List: p.listInbound, Put: p.putInbound, Patch: p.patchInbound, Delete: p.deleteInbound,
			Links: []arm.Link{{Path: "properties.ipConfigurations[].subnet.id", Type: subnetType, Action: arm.JoinSubnetAction}},
		},
	}
}

// subColl is the collection of one type across a subscription.
func subColl(sub string, types ...string) arm.ResourceID {
	return arm.ResourceID{Subscription: sub, Namespace: namespace, Types: types}
}

// accepted is the answer to a PUT: 201 on create, 200 on update, with an
// operation already Succeeded in Azure-AsyncOperation.
func accepted(created bool, body any, op *arm.Operation) *arm.Response {
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return &arm.Response{Status: status, Body: body, Op: op}
}

func newGUID() *string { return ptr(uuid.NewString()) }

func ptr[T any](v T) *T { return &v }

func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func toAny[T any](vs []T) []any {
	out := make([]any, len(vs))
	for i := range vs {
		out[i] = vs[i]
	}
	return out
}

// normLocation returns ARM's form of a location: "West Europe" → "westeurope".
func normLocation(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
}

var provisioningSucceeded = armdnsresolver.ProvisioningStateSucceeded

func decode(b []byte, v any) error { return json.Unmarshal(b, v) }
