package network

import (
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/testkit"
)

// groupKeys counts the documents the store holds for a resource group.
func (e *env) groupKeys(rg string) []string {
	e.t.Helper()
	kvs, _, err := e.st.List(e.ctx, "arm/"+strings.ToLower(sub)+"/")
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, kv := range kvs {
		if strings.Contains(kv.Key, "/"+strings.ToLower(rg)+"/") {
			out = append(out, kv.Key)
		}
	}
	return out
}

func TestGroupDeleteTakesEverything(t *testing.T) {
	e := newEnv(t)
	e.group("all")
	nsg := e.mustNSG("all", "nsg", rule("r", 100))
	asg := e.mustASG("all", "asg")
	rt, err := e.putTable("all", "rt", armnetwork.RouteTable{Location: to.Ptr("westeurope"), Properties: &armnetwork.RouteTablePropertiesFormat{
		Routes: []*armnetwork.Route{route("d", "0.0.0.0/0", armnetwork.RouteNextHopTypeNone, "")}}})
	if err != nil {
		t.Fatal(err)
	}
	v := vnetBody("10.0.0.0/16", "a=10.0.1.0/24")
	v.Properties.Subnets[0].Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: nsg.ID}
	v.Properties.Subnets[0].Properties.RouteTable = &armnetwork.RouteTable{ID: rt.ID}
	e.mustVNet("all", "v", v)
	n := nicBody(subnetID("all", "v", "a"))
	n.Properties.IPConfigurations[0].Properties.ApplicationSecurityGroups = []*armnetwork.ApplicationSecurityGroup{{ID: asg.ID}}
	e.mustNIC("all", "nic", n)
	if err := e.deleteGroup("all"); err != nil {
		t.Fatalf("delete group: %v", err)
	}
	if keys := e.groupKeys("all"); len(keys) != 0 {
		t.Fatalf("documents left after the group went: %v", keys)
	}
	// The address went with the NIC: a new group, VNet and NIC start over.
	e.group("all")
	e.mustVNet("all", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/24"))
	if nic := e.mustNIC("all", "nic", nicBody(subnetID("all", "v", "a"))); ipOf(nic) != "10.0.1.4" {
		t.Errorf("new nic = %s, want 10.0.1.4", ipOf(nic))
	}
}

func TestGroupDeleteRefusedForForeignUsers(t *testing.T) {
	e := newEnv(t)
	for _, g := range []string{"net", "app", "sec"} {
		e.group(g)
	}
	nsg := e.mustNSG("sec", "nsg")
	asg := e.mustASG("sec", "asg")
	rt, err := e.putTable("sec", "rt", armnetwork.RouteTable{Location: to.Ptr("westeurope")})
	if err != nil {
		t.Fatal(err)
	}
	v := vnetBody("10.0.0.0/16", "a=10.0.1.0/24")
	v.Properties.Subnets[0].Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: nsg.ID}
	e.mustVNet("net", "v", v)
	nic := e.mustNIC("app", "nic", nicBody(subnetID("net", "v", "a")))

	// net's VNet holds app's NIC.
	err = e.deleteGroup("net")
	wantTarget(t, testkit.WantARMError(t, err, 400, codeSubnetInUse), "", str(nic.Properties.IPConfigurations[0].ID))
	// sec's NSG is on net's subnet.
	err = e.deleteGroup("sec")
	code := testkit.WantARMError(t, err, 400, codeNSGInUse)
	wantTarget(t, code, "", subnetID("net", "v", "a"))
	// Nothing went.
	if _, err := e.vnets.Get(e.ctx, "net", "v", nil); err != nil {
		t.Errorf("vnet after refused group delete: %v", err)
	}
	if _, err := e.nsgs.Get(e.ctx, "sec", "nsg", nil); err != nil {
		t.Errorf("nsg after refused group delete: %v", err)
	}
	// One blocker at a time: the route table on the subnet, then the ASG
	// on app's NIC.
	v.Properties.Subnets[0].Properties.NetworkSecurityGroup = nil
	v.Properties.Subnets[0].Properties.RouteTable = &armnetwork.RouteTable{ID: rt.ID}
	e.mustVNet("net", "v", v)
	wantTarget(t, testkit.WantARMError(t, e.deleteGroup("sec"), 400, codeRouteTableInUse), "", subnetID("net", "v", "a"))
	v.Properties.Subnets[0].Properties.RouteTable = nil
	e.mustVNet("net", "v", v)
	n := nicBody(subnetID("net", "v", "a"))
	n.Properties.IPConfigurations[0].Properties.ApplicationSecurityGroups = []*armnetwork.ApplicationSecurityGroup{{ID: asg.ID}}
	e.mustNIC("app", "nic", n)
	wantTarget(t, testkit.WantARMError(t, e.deleteGroup("sec"), 400, codeASGInUse), "", str(nic.Properties.IPConfigurations[0].ID))

	// Deleting app releases everything that blocked.
	if err := e.deleteGroup("app"); err != nil {
		t.Fatalf("delete app: %v", err)
	}
	if err := e.deleteGroup("sec"); err != nil {
		t.Fatalf("delete sec: %v", err)
	}
	s, err := e.subnet.Get(e.ctx, "net", "v", "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Properties.IPConfigurations) != 0 {
		t.Errorf("subnet still lists %v", s.Properties.IPConfigurations)
	}
	if err := e.deleteGroup("net"); err != nil {
		t.Fatalf("delete net: %v", err)
	}
	for _, g := range []string{"net", "app", "sec"} {
		if keys := e.groupKeys(g); len(keys) != 0 {
			t.Errorf("documents left in %s: %v", g, keys)
		}
	}
}
