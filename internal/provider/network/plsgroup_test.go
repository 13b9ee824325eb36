package network

import (
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/testkit"
)

// TestPrivateLinkServiceGroupDelete: deleting the load balancer's resource
// group (lbs) while a service in another group (svcs) stands on its
// frontend is refused and deletes nothing; once that group (with its
// service) is gone, the load balancer's group goes. The network is in a
// third group (prov), whose NAT subnet the service's NIC uses.
func TestPrivateLinkServiceGroupDelete(t *testing.T) {
	e := newPEEnv(t)
	owner := e.as("owner", sub)
	e.providerIn(owner, armnetwork.VirtualNetworkPrivateLinkServiceNetworkPoliciesDisabled, "lbs")
	e.group(owner, "svcs")
	body := serviceBody(nil, nil)
	body.Properties.LoadBalancerFrontendIPConfigurations[0].ID = to.Ptr(strings.Replace(frontendID(), "/resourceGroups/prov/", "/resourceGroups/lbs/", 1))
	p, err := e.services("owner", sub).BeginCreateOrUpdate(e.ctx, "svcs", "svc", body, nil)
	if err == nil {
		_, err = p.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		t.Fatalf("create the service in group svcs: %v", err)
	}

	err = e.deleteGroup(owner, "lbs")
	wantTarget(t, testkit.WantARMError(t, err, http.StatusBadRequest, codeFrontendInUse), "", "in use by private link service", "/resourceGroups/svcs/", "svc")
	lbc, err := armnetwork.NewLoadBalancersClient(sub, token("owner"), e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lbc.Get(e.ctx, "lbs", "lb", nil); err != nil {
		t.Errorf("the load balancer after a refused group delete: %v", err)
	}
	if _, err := owner.vnets.Get(e.ctx, "prov", "pvnet", nil); err != nil {
		t.Errorf("the provider's network after a refused group delete: %v", err)
	}
	if _, err := owner.groups.Get(e.ctx, "lbs", nil); err != nil {
		t.Errorf("the group after a refused delete: %v", err)
	}
	if got, err := e.services("owner", sub).Get(e.ctx, "svcs", "svc", nil); err != nil || got.Properties == nil ||
		len(got.Properties.LoadBalancerFrontendIPConfigurations) != 1 {
		t.Errorf("the service after a refused group delete: %v", err)
	}

	if err := e.deleteGroup(owner, "svcs"); err != nil {
		t.Fatalf("delete the service's group: %v", err)
	}
	if err := e.deleteGroup(owner, "lbs"); err != nil {
		t.Fatalf("delete the load balancer's group once no service uses it: %v", err)
	}
	if _, err := lbc.Get(e.ctx, "lbs", "lb", nil); err == nil {
		t.Error("the load balancer outlived its group")
	}
}
