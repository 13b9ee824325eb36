package network

import (
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/testkit"
)

func TestASGLifecycle(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.group("rg2")
	a := e.mustASG("rg", "Web")
	if str(a.ID) != resID("rg", "applicationSecurityGroups", "Web") || str(a.Type) != typeASG ||
		str((*string)(a.Properties.ProvisioningState)) != "Succeeded" || str(a.Properties.ResourceGUID) == "" {
		t.Fatalf("asg = %+v", a)
	}
	again := e.mustASG("rg", "web")
	if str(again.Name) != "Web" || str(again.Properties.ResourceGUID) != str(a.Properties.ResourceGUID) || str(again.Etag) == str(a.Etag) {
		t.Errorf("update = %s %s %s", str(again.Name), str(again.Properties.ResourceGUID), str(again.Etag))
	}
	e.mustASG("rg2", "db")
	g, err := e.asgs.Get(e.ctx, "rg", "WEB", nil)
	if err != nil || str(g.Name) != "Web" {
		t.Fatalf("get = %v %v", str(g.Name), err)
	}
	if l := collect(t, e.ctx, e.asgs.NewListPager("rg", nil), func(p armnetwork.ApplicationSecurityGroupsClientListResponse) []*armnetwork.ApplicationSecurityGroup {
		return p.Value
	}); len(l) != 1 {
		t.Errorf("list rg = %d", len(l))
	}
	if l := collect(t, e.ctx, e.asgs.NewListAllPager(nil), func(p armnetwork.ApplicationSecurityGroupsClientListAllResponse) []*armnetwork.ApplicationSecurityGroup {
		return p.Value
	}); len(l) != 2 {
		t.Errorf("list all = %d", len(l))
	}
	tg, err := e.asgs.UpdateTags(e.ctx, "rg", "web", armnetwork.TagsObject{Tags: map[string]*string{"tier": to.Ptr("web")}}, nil)
	if err != nil || str(tg.Tags["tier"]) != "web" {
		t.Fatalf("tags = %v %v", tg.Tags, err)
	}
	_, err = e.asgs.UpdateTags(e.ctx, "rg", "nope", armnetwork.TagsObject{}, nil)
	testkit.WantARMError(t, err, 404, "ResourceNotFound")
	_, err = e.putASG("rg", "bad/name%")
	if err == nil {
		t.Error("a bad name was accepted")
	}
	noLoc, err := e.asgs.BeginCreateOrUpdate(e.ctx, "rg", "x", armnetwork.ApplicationSecurityGroup{}, nil)
	if err == nil {
		_, err = noLoc.PollUntilDone(e.ctx, poll)
	}
	testkit.WantARMError(t, err, 400, "LocationRequired")
	_, err = e.asgs.BeginCreateOrUpdate(e.ctx, "rg", "web", armnetwork.ApplicationSecurityGroup{Location: to.Ptr("eastus")}, nil)
	testkit.WantARMError(t, err, 400, "InvalidResourceLocation")

	if err := e.deleteASG("rg", "web"); err != nil {
		t.Fatal(err)
	}
	_, err = e.asgs.Get(e.ctx, "rg", "web", nil)
	testkit.WantARMError(t, err, 404, "ResourceNotFound")
}

func TestASGInUse(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	a := e.mustASG("rg", "web")
	e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/24"))
	n := nicBody(subnetID("rg", "v", "a"))
	n.Properties.IPConfigurations[0].Properties.ApplicationSecurityGroups = []*armnetwork.ApplicationSecurityGroup{{ID: a.ID}}
	nic := e.mustNIC("rg", "nic", n)
	if g := nic.Properties.IPConfigurations[0].Properties.ApplicationSecurityGroups; len(g) != 1 || str(g[0].ID) != str(a.ID) {
		t.Fatalf("nic asgs = %v", g)
	}
	err := e.deleteASG("rg", "web")
	wantTarget(t, testkit.WantARMError(t, err, 400, codeASGInUse), "", str(nic.Properties.IPConfigurations[0].ID))
	if err := e.deleteNIC("rg", "nic"); err != nil {
		t.Fatal(err)
	}
	r := ruleProps(100)
	r.DestinationAddressPrefix = nil
	r.DestinationApplicationSecurityGroups = []*armnetwork.ApplicationSecurityGroup{{ID: a.ID}}
	e.mustNSG("rg", "nsg", &armnetwork.SecurityRule{Name: to.Ptr("to-web"), Properties: r})
	err = e.deleteASG("rg", "web")
	wantTarget(t, testkit.WantARMError(t, err, 400, codeASGInUse), "", "securityRules/to-web")
	if err := e.deleteNSG("rg", "nsg"); err != nil {
		t.Fatal(err)
	}
	if err := e.deleteASG("rg", "web"); err != nil {
		t.Fatalf("delete unused asg: %v", err)
	}
}
