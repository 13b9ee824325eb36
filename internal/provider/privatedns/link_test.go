package privatedns

import (
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/testkit"
)

func TestLinks(t *testing.T) {
	e := newEnv(t, "rg2", "net")
	vnet1 := e.putVNet(sub, "net", "vnet1")
	vnet2 := e.putVNet(sub, "net", "vnet2")
	e.createZone("rg1", "privatelink.postgres.database.azure.com", nil)
	e.createZone("rg1", "contoso.internal", nil)
	e.createZone("rg2", "contoso.internal", nil)
	const pg = "privatelink.postgres.database.azure.com"

	// The network must exist (it is in this store's subscription), and be a network.
	_, err := e.putLink("rg1", pg, "missing", "/subscriptions/"+sub+"/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/nope", false)
	testkit.WantARMError(t, err, http.StatusBadRequest, "BadRequest")
	_, err = e.putLink("rg1", pg, "nogroup", "/subscriptions/"+sub+"/resourceGroups/nogroup/providers/Microsoft.Network/virtualNetworks/v", false)
	testkit.WantARMError(t, err, http.StatusBadRequest, "BadRequest")
	_, err = e.putLink("rg1", pg, "subnet", vnet1+"/subnets/default", false)
	testkit.WantARMError(t, err, http.StatusBadRequest, "BadRequest")
	_, err = e.putLink("rg1", pg, "nsg", "/subscriptions/"+sub+"/resourceGroups/net/providers/Microsoft.Network/networkSecurityGroups/n", false)
	testkit.WantARMError(t, err, http.StatusBadRequest, "BadRequest")
	p, err := e.links.BeginCreateOrUpdate(e.ctx, "rg1", pg, "novnet", armprivatedns.VirtualNetworkLink{Location: ptr("global")}, nil)
	if err == nil {
		_, err = p.PollUntilDone(e.ctx, poll)
	}
	testkit.WantARMError(t, err, http.StatusBadRequest, "BadRequest")
	_, err = e.putLink("rg1", "nozone.com", "l", vnet1, false)
	testkit.WantARMError(t, err, http.StatusNotFound, "ParentResourceNotFound")

	// A registration-enabled link.
	l, err := e.putLink("rg1", pg, "link1", vnet1, true)
	if err != nil {
		t.Fatalf("create link: %v", err)
	}
	lp := deref(l.Properties)
	if deref(l.Name) != "link1" || deref(l.Type) != LinkType || deref(l.Location) != "global" || deref(l.Etag) == "" ||
		deref(deref(lp.VirtualNetwork).ID) != vnet1 || !deref(lp.RegistrationEnabled) ||
		deref(lp.ResolutionPolicy) != armprivatedns.ResolutionPolicyDefault ||
		deref(lp.VirtualNetworkLinkState) != armprivatedns.VirtualNetworkLinkStateCompleted ||
		deref(lp.ProvisioningState) != armprivatedns.ProvisioningStateSucceeded {
		t.Fatalf("link: %s", asJSON(t, l))
	}
	if got := counts(e.getZone("rg1", pg)); got != [3]int64{1, 1, 1} {
		t.Fatalf("zone counts %v, want 1 record set, 1 link, 1 registration link", got)
	}

	// The same network twice in one zone: 409.
	_, err = e.putLink("rg1", pg, "link2", vnet1, false)
	testkit.WantARMError(t, err, http.StatusConflict, "Conflict")
	// A second registration link for the network, in another zone: 409.
	_, err = e.putLink("rg1", "contoso.internal", "reg", vnet1, true)
	testkit.WantARMError(t, err, http.StatusConflict, "Conflict")
	// Without registration it is fine.
	if _, err := e.putLink("rg1", "contoso.internal", "res", vnet1, false); err != nil {
		t.Fatalf("resolution link: %v", err)
	}
	// A second zone of the same name for the same network: 400.
	_, err = e.putLink("rg2", "contoso.internal", "same-name", vnet1, false)
	testkit.WantARMError(t, err, http.StatusBadRequest, "BadRequest")
	if _, err := e.putLink("rg2", "contoso.internal", "other-vnet", vnet2, true); err != nil {
		t.Fatalf("link another network: %v", err)
	}
	// A network of a subscription this store does not know is linked as is.
	foreign := "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/x/providers/Microsoft.Network/virtualNetworks/remote"
	if _, err := e.putLink("rg1", pg, "foreign", foreign, false); err != nil {
		t.Fatalf("link a network of another subscription: %v", err)
	}

	// What the resolver of each network sees.
	rd := arm.ReadOnly(e.ctx, e.st)
	vid, _ := arm.ParseID(vnet1)
	zs, err := LinkedZones(rd, vid)
	if err != nil {
		t.Fatal(err)
	}
	if len(zs) != 2 || zs[0].Name != "contoso.internal" || zs[0].RegistrationEnabled || !zs[0].Zone.Equal(e.zoneID("rg1", "contoso.internal")) ||
		zs[1].Name != pg || !zs[1].RegistrationEnabled {
		t.Fatalf("zones of vnet1: %+v", zs)
	}

	// PUT again keeps the link; changing its network is refused.
	_, err = e.putLink("rg1", pg, "link1", vnet2, true)
	testkit.WantARMError(t, err, http.StatusBadRequest, "BadRequest")

	// PATCH: registration off, policy on; ETags.
	wrong := "00000000-0000-0000-0000-000000000000"
	_, err = e.links.BeginUpdate(e.ctx, "rg1", pg, "link1", armprivatedns.VirtualNetworkLink{}, &armprivatedns.VirtualNetworkLinksClientBeginUpdateOptions{IfMatch: &wrong})
	testkit.WantARMError(t, err, http.StatusPreconditionFailed, "PreconditionFailed")
	_, err = e.links.BeginCreateOrUpdate(e.ctx, "rg1", pg, "link1", armprivatedns.VirtualNetworkLink{
		Location: ptr("global"), Properties: &armprivatedns.VirtualNetworkLinkProperties{VirtualNetwork: &armprivatedns.SubResource{ID: &vnet1}},
	}, &armprivatedns.VirtualNetworkLinksClientBeginCreateOrUpdateOptions{IfNoneMatch: ptr("*")})
	testkit.WantARMError(t, err, http.StatusPreconditionFailed, "PreconditionFailed")
	_, err = e.links.BeginUpdate(e.ctx, "rg1", pg, "link1", armprivatedns.VirtualNetworkLink{
		Properties: &armprivatedns.VirtualNetworkLinkProperties{ResolutionPolicy: ptr(armprivatedns.ResolutionPolicy("Sometimes"))},
	}, nil)
	testkit.WantARMError(t, err, http.StatusBadRequest, "BadRequest")
	up, err := e.links.BeginUpdate(e.ctx, "rg1", pg, "link1", armprivatedns.VirtualNetworkLink{
		Properties: &armprivatedns.VirtualNetworkLinkProperties{RegistrationEnabled: ptr(false), ResolutionPolicy: ptr(armprivatedns.ResolutionPolicy("nxdomainredirect"))},
	}, &armprivatedns.VirtualNetworkLinksClientBeginUpdateOptions{IfMatch: l.Etag})
	if err != nil {
		t.Fatalf("patch link: %v", err)
	}
	patched, err := up.PollUntilDone(e.ctx, poll)
	if err != nil {
		t.Fatalf("patch link: %v", err)
	}
	pp := deref(patched.Properties)
	if deref(pp.RegistrationEnabled) || deref(pp.ResolutionPolicy) != armprivatedns.ResolutionPolicyNxDomainRedirect || deref(patched.Etag) == deref(l.Etag) {
		t.Fatalf("patched link: %s", asJSON(t, patched))
	}
	if got := counts(e.getZone("rg1", pg)); got != [3]int64{1, 2, 0} {
		t.Fatalf("zone counts %v, want 1 record set, 2 links, 0 registration links", got)
	}
	// Registration is now free for another zone.
	if _, err := e.links.BeginUpdate(e.ctx, "rg1", "contoso.internal", "res", armprivatedns.VirtualNetworkLink{
		Properties: &armprivatedns.VirtualNetworkLinkProperties{RegistrationEnabled: ptr(true)},
	}, nil); err != nil {
		t.Fatalf("enable registration on contoso.internal: %v", err)
	}

	// Lists page.
	pager := e.links.NewListPager("rg1", pg, &armprivatedns.VirtualNetworkLinksClientListOptions{Top: ptr[int32](1)})
	var names []string
	pages := 0
	for pager.More() {
		page, err := pager.NextPage(e.ctx)
		if err != nil {
			t.Fatalf("list links: %v", err)
		}
		pages++
		for _, l := range page.Value {
			names = append(names, deref(l.Name))
		}
	}
	if pages != 2 || strings.Join(names, ",") != "foreign,link1" {
		t.Fatalf("links: %d pages, %v", pages, names)
	}

	// A zone with links cannot be deleted.
	err = e.deleteZone("rg1", pg, nil)
	testkit.WantARMError(t, err, http.StatusConflict, "CannotDeleteResource")
	e.deleteLink("rg1", pg, "link1")
	e.deleteLink("rg1", pg, "foreign")
	e.deleteLink("rg1", pg, "foreign") // 204
	if got := counts(e.getZone("rg1", pg)); got != [3]int64{1, 0, 0} {
		t.Fatalf("zone counts %v after deleting links", got)
	}
	if err := e.deleteZone("rg1", pg, nil); err != nil {
		t.Fatalf("delete zone without links: %v", err)
	}
	zs, err = LinkedZones(rd, vid)
	if err != nil || len(zs) != 1 || zs[0].Name != "contoso.internal" {
		t.Fatalf("zones of vnet1 after deletes: %+v %v", zs, err)
	}
}

func TestResourceGroupDelete(t *testing.T) {
	e := newEnv(t, "rg2", "net")
	vnet := e.putVNet(sub, "net", "vnet1")
	e.createZone("rg1", "a.example.com", nil)
	if _, err := e.putLink("rg1", "a.example.com", "l", vnet, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.records.CreateOrUpdate(e.ctx, "rg1", "a.example.com", armprivatedns.RecordTypeA, "x", armprivatedns.RecordSet{
		Properties: &armprivatedns.RecordSetProperties{TTL: ptr[int64](1), ARecords: []*armprivatedns.ARecord{{IPv4Address: ptr("10.0.0.1")}}},
	}, nil); err != nil {
		t.Fatal(err)
	}
	e.createZone("rg2", "b.example.com", nil)

	p, err := e.groups.BeginDelete(e.ctx, "rg1", nil)
	if err == nil {
		_, err = p.PollUntilDone(e.ctx, poll)
	}
	if err != nil {
		t.Fatalf("delete resource group: %v", err)
	}
	rd := arm.ReadOnly(e.ctx, e.st)
	for _, prefix := range []string{"arm/" + strings.ToLower(sub) + "/microsoft.network:privatednszones", LinkIndexPrefix} {
		kvs, err := rd.List(prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range kvs {
			if strings.Contains(kv.Key, "/rg1/") || strings.Contains(kv.Key, "a.example.com") {
				t.Errorf("left behind: %s", kv.Key)
			}
		}
	}
	// The network is free for another registration link.
	if _, err := e.putLink("rg2", "b.example.com", "l", vnet, true); err != nil {
		t.Fatalf("registration link after the group went: %v", err)
	}
}
