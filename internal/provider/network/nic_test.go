package network

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/store/etcd"
	"github.com/privlink/privlink/internal/store/etcd/etcdtest"
	"github.com/privlink/privlink/internal/testkit"
)

var macPattern = regexp.MustCompile(`^00-0D-3A-[0-9A-F]{2}-[0-9A-F]{2}-[0-9A-F]{2}$`)

func TestNICLifecycle(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.group("rg2")
	e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/24"))
	nsg := e.mustNSG("rg", "nsg")
	asg := e.mustASG("rg", "web")

	in := nicBody(strings.ToUpper(subnetID("rg", "v", "a")))
	in.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: nsg.ID}
	in.Properties.EnableIPForwarding = to.Ptr(true)
	in.Properties.DNSSettings = &armnetwork.InterfaceDNSSettings{DNSServers: []*string{to.Ptr("10.0.1.10")}}
	in.Properties.IPConfigurations[0].Properties.ApplicationSecurityGroups = []*armnetwork.ApplicationSecurityGroup{{ID: asg.ID}}
	n := e.mustNIC("rg", "Nic1", in)
	id := resID("rg", "networkInterfaces", "Nic1")
	p := n.Properties
	if str(n.ID) != id || str(n.Type) != typeNIC || str((*string)(p.ProvisioningState)) != "Succeeded" || str(p.ResourceGUID) == "" {
		t.Fatalf("nic = %s %s", str(n.ID), str(n.Type))
	}
	if !macPattern.MatchString(str(p.MacAddress)) {
		t.Errorf("macAddress = %q", str(p.MacAddress))
	}
	ic := p.IPConfigurations[0]
	ip := ic.Properties
	if str(ic.ID) != id+"/ipConfigurations/ipconfig1" || str(ic.Type) != typeIPConfig || str(ip.PrivateIPAddress) != "10.0.1.4" ||
		*ip.PrivateIPAllocationMethod != armnetwork.IPAllocationMethodDynamic || !*ip.Primary || *ip.PrivateIPAddressVersion != armnetwork.IPVersionIPv4 ||
		str(ip.Subnet.ID) != subnetID("rg", "v", "a") {
		t.Errorf("ipConfiguration = %s %s %s", str(ic.ID), str(ip.PrivateIPAddress), str(ip.Subnet.ID))
	}
	if !*p.EnableIPForwarding || len(p.DNSSettings.DNSServers) != 1 || str(p.NetworkSecurityGroup.ID) != str(nsg.ID) {
		t.Errorf("properties = %+v", p)
	}

	// A second NIC gets the next address.
	n2 := e.mustNIC("rg2", "nic2", nicBody(subnetID("rg", "v", "a")))
	if ipOf(n2) != "10.0.1.5" || str(n2.Properties.MacAddress) == str(p.MacAddress) {
		t.Errorf("nic2 = %s %s", ipOf(n2), str(n2.Properties.MacAddress))
	}

	// Get, ipConfigurations, lists.
	g, err := e.nics.Get(e.ctx, "rg", "nic1", nil)
	if err != nil || str(g.Name) != "Nic1" || ipOf(g.Interface) != "10.0.1.4" {
		t.Fatalf("get = %s %s %v", str(g.Name), ipOf(g.Interface), err)
	}
	gi, err := e.ipcs.Get(e.ctx, "rg", "nic1", "IPCONFIG1", nil)
	if err != nil || str(gi.Properties.PrivateIPAddress) != "10.0.1.4" {
		t.Fatalf("get ipConfiguration = %v %v", gi, err)
	}
	_, err = e.ipcs.Get(e.ctx, "rg", "nic1", "nope", nil)
	testkit.WantARMError(t, err, 404, "NotFound")
	if l := collect(t, e.ctx, e.ipcs.NewListPager("rg", "nic1", nil), func(p armnetwork.InterfaceIPConfigurationsClientListResponse) []*armnetwork.InterfaceIPConfiguration {
		return p.Value
	}); len(l) != 1 {
		t.Errorf("list ipConfigurations = %d", len(l))
	}
	if l := collect(t, e.ctx, e.nics.NewListPager("rg", nil), func(p armnetwork.InterfacesClientListResponse) []*armnetwork.Interface { return p.Value }); len(l) != 1 {
		t.Errorf("list rg = %d", len(l))
	}
	if l := collect(t, e.ctx, e.nics.NewListAllPager(nil), func(p armnetwork.InterfacesClientListAllResponse) []*armnetwork.Interface { return p.Value }); len(l) != 2 {
		t.Errorf("list all = %d", len(l))
	}

	// GET → PUT round trip keeps the address, MAC and GUID.
	rt := g.Interface
	rt.Properties.EnableIPForwarding = to.Ptr(false)
	u := e.mustNIC("rg", "nic1", rt)
	if ipOf(u) != "10.0.1.4" || str(u.Properties.MacAddress) != str(p.MacAddress) || str(u.Properties.ResourceGUID) != str(p.ResourceGUID) ||
		*u.Properties.EnableIPForwarding || str(u.Etag) == str(n.Etag) {
		t.Errorf("round trip = %s %s", ipOf(u), str(u.Properties.MacAddress))
	}
	// Dynamic → Static on its own address, then a free one.
	st := e.mustNIC("rg", "nic1", staticNIC(subnetID("rg", "v", "a"), "10.0.1.4"))
	if ipOf(st) != "10.0.1.4" || *st.Properties.IPConfigurations[0].Properties.PrivateIPAllocationMethod != armnetwork.IPAllocationMethodStatic {
		t.Errorf("static = %s", ipOf(st))
	}
	st = e.mustNIC("rg", "nic1", staticNIC(subnetID("rg", "v", "a"), "10.0.1.200"))
	if ipOf(st) != "10.0.1.200" {
		t.Errorf("static moved = %s", ipOf(st))
	}
	// .4 is free again and goes to the next Dynamic NIC.
	if n3 := e.mustNIC("rg", "nic3", nicBody(subnetID("rg", "v", "a"))); ipOf(n3) != "10.0.1.4" {
		t.Errorf("nic3 = %s, want the freed 10.0.1.4", ipOf(n3))
	}

	tg, err := e.nics.UpdateTags(e.ctx, "rg", "nic1", armnetwork.TagsObject{Tags: map[string]*string{"a": to.Ptr("b")}}, nil)
	if err != nil || str(tg.Tags["a"]) != "b" || ipOf(tg.Interface) != "10.0.1.200" {
		t.Fatalf("tags = %v %v", tg.Tags, err)
	}
	for _, name := range []string{"nic1", "nic3"} {
		if err := e.deleteNIC("rg", name); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.deleteNIC("rg2", "nic2"); err != nil {
		t.Fatal(err)
	}
	_, err = e.nics.Get(e.ctx, "rg", "nic1", nil)
	testkit.WantARMError(t, err, 404, "ResourceNotFound")
	if n4 := e.mustNIC("rg", "nic4", nicBody(subnetID("rg", "v", "a"))); ipOf(n4) != "10.0.1.4" {
		t.Errorf("after deletes the lowest address is %s, want 10.0.1.4", ipOf(n4))
	}
}

func TestNICValidation(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/24", "b=10.0.2.0/24"))
	e.mustVNet("rg", "w", vnetBody("10.1.0.0/16", "c=10.1.1.0/24"))
	east := vnetBody("10.2.0.0/16", "e=10.2.1.0/24")
	east.Location = to.Ptr("eastus")
	e.mustVNet("rg", "east", east)
	holder := e.mustNIC("rg", "holder", staticNIC(subnetID("rg", "v", "a"), "10.0.1.10"))
	a := subnetID("rg", "v", "a")
	mod := func(f func(n *armnetwork.Interface)) armnetwork.Interface {
		n := nicBody(a)
		f(&n)
		return n
	}
	second := func(name, subnet string, primary bool) *armnetwork.InterfaceIPConfiguration {
		return &armnetwork.InterfaceIPConfiguration{Name: to.Ptr(name), Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
			Subnet: &armnetwork.Subnet{ID: to.Ptr(subnet)}, Primary: to.Ptr(primary)}}
	}
	cases := []struct {
		name   string
		nic    armnetwork.Interface
		code   string
		target string
		words  []string
	}{
		{"no ipConfigurations", armnetwork.Interface{Location: to.Ptr("westeurope")}, codeMissingParameter, "properties.ipConfigurations", nil},
		{"nil ipConfiguration", mod(func(n *armnetwork.Interface) { n.Properties.IPConfigurations[0] = nil }), codeMissingParameter, "properties.ipConfigurations[0].name", nil},
		{"no subnet", mod(func(n *armnetwork.Interface) { n.Properties.IPConfigurations[0].Properties.Subnet = nil }), codeMissingParameter, "properties.ipConfigurations[0].properties.subnet.id", nil},
		{"no ipConfiguration properties", mod(func(n *armnetwork.Interface) { n.Properties.IPConfigurations[0].Properties = nil }), codeMissingParameter, "properties.ipConfigurations[0].properties.subnet.id", nil},
		{"missing subnet", staticNIC(subnetID("rg", "v", "zz"), "10.0.1.4"), codeInvalidReference, "properties.ipConfigurations[0].properties.subnet.id", []string{"zz", "was not found"}},
		{"subnet in another region", nicBody(subnetID("rg", "east", "e")), codeInvalidReference, "properties.ipConfigurations[0].properties.subnet.id", []string{"same region"}},
		{"not in subnet", staticNIC(a, "10.0.2.7"), codeIPNotInSubnet, "properties.ipConfigurations[0].properties.privateIPAddress", []string{"10.0.2.7", "10.0.1.0/24"}},
		{"network address", staticNIC(a, "10.0.1.0"), codeIPReserved, "properties.ipConfigurations[0].properties.privateIPAddress", []string{"10.0.1.0"}},
		{"gateway address", staticNIC(a, "10.0.1.1"), codeIPReserved, "properties.ipConfigurations[0].properties.privateIPAddress", nil},
		{"dns address .2", staticNIC(a, "10.0.1.2"), codeIPReserved, "properties.ipConfigurations[0].properties.privateIPAddress", nil},
		{"dns address .3", staticNIC(a, "10.0.1.3"), codeIPReserved, "properties.ipConfigurations[0].properties.privateIPAddress", nil},
		{"broadcast", staticNIC(a, "10.0.1.255"), codeIPReserved, "properties.ipConfigurations[0].properties.privateIPAddress", []string{"10.0.1.0/24"}},
		{"taken", staticNIC(a, "10.0.1.10"), codeIPAllocated, "properties.ipConfigurations[0].properties.privateIPAddress", []string{str(holder.Properties.IPConfigurations[0].ID)}},
		{"static without address", staticNIC(a, ""), codeMissingParameter, "properties.ipConfigurations[0].properties.privateIPAddress", nil},
		{"static not an address", staticNIC(a, "10.0.1"), codeInvalidParameter, "properties.ipConfigurations[0].properties.privateIPAddress", nil},
		{"bad method", mod(func(n *armnetwork.Interface) {
			n.Properties.IPConfigurations[0].Properties.PrivateIPAllocationMethod = to.Ptr(armnetwork.IPAllocationMethod("Sticky"))
		}), codeInvalidRequestFormat, "properties.ipConfigurations[0].properties.privateIPAllocationMethod", nil},
		{"ipv6", mod(func(n *armnetwork.Interface) {
			n.Properties.IPConfigurations[0].Properties.PrivateIPAddressVersion = to.Ptr(armnetwork.IPVersionIPv6)
		}), codeUnsupportedInPrivlink, "properties.ipConfigurations[0].properties.privateIPAddressVersion", nil},
		{"public ip", mod(func(n *armnetwork.Interface) {
			n.Properties.IPConfigurations[0].Properties.PublicIPAddress = &armnetwork.PublicIPAddress{ID: to.Ptr("x")}
		}), codeUnsupportedInPrivlink, "properties.ipConfigurations[0].properties.publicIPAddress", nil},
		{"two primaries", mod(func(n *armnetwork.Interface) {
			n.Properties.IPConfigurations[0].Properties.Primary = to.Ptr(true)
			n.Properties.IPConfigurations = append(n.Properties.IPConfigurations, second("two", a, true))
		}), codeInvalidParameter, "properties.ipConfigurations", []string{"exactly one primary"}},
		{"no primary", mod(func(n *armnetwork.Interface) {
			n.Properties.IPConfigurations = append(n.Properties.IPConfigurations, second("two", a, false))
		}), codeInvalidParameter, "properties.ipConfigurations", nil},
		{"duplicate names", mod(func(n *armnetwork.Interface) {
			n.Properties.IPConfigurations[0].Properties.Primary = to.Ptr(true)
			n.Properties.IPConfigurations = append(n.Properties.IPConfigurations, second("IPCONFIG1", a, false))
		}), codeInvalidParameter, "properties.ipConfigurations[1].name", nil},
		{"two vnets", mod(func(n *armnetwork.Interface) {
			n.Properties.IPConfigurations[0].Properties.Primary = to.Ptr(true)
			n.Properties.IPConfigurations = append(n.Properties.IPConfigurations, second("two", subnetID("rg", "w", "c"), false))
		}), codeInvalidParameter, "properties.ipConfigurations[1].properties.subnet.id", []string{"one virtual network"}},
		{"same static twice", mod(func(n *armnetwork.Interface) {
			n.Properties.IPConfigurations = []*armnetwork.InterfaceIPConfiguration{
				staticNIC(a, "10.0.1.20").Properties.IPConfigurations[0], staticNIC(a, "10.0.1.20").Properties.IPConfigurations[0]}
			n.Properties.IPConfigurations[0].Properties.Primary = to.Ptr(true)
			n.Properties.IPConfigurations[1].Name = to.Ptr("two")
		}), codeIPAllocated, "properties.ipConfigurations[1].properties.privateIPAddress", nil},
		{"missing nsg", mod(func(n *armnetwork.Interface) {
			n.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: to.Ptr(resID("rg", "networkSecurityGroups", "none"))}
		}), codeInvalidReference, "properties.networkSecurityGroup.id", nil},
		{"missing asg", mod(func(n *armnetwork.Interface) {
			n.Properties.IPConfigurations[0].Properties.ApplicationSecurityGroups = []*armnetwork.ApplicationSecurityGroup{{ID: to.Ptr(resID("rg", "applicationSecurityGroups", "none"))}}
		}), codeInvalidReference, "properties.ipConfigurations[0].properties.applicationSecurityGroups[0].id", nil},
		{"other subscription", nicBody(strings.Replace(a, sub, "00000000-0000-0000-0000-0000000000ff", 1)), codeInvalidReference, "properties.ipConfigurations[0].properties.subnet.id", []string{"another subscription"}},
		{"bad dns server", mod(func(n *armnetwork.Interface) {
			n.Properties.DNSSettings = &armnetwork.InterfaceDNSSettings{DNSServers: []*string{to.Ptr("resolver")}}
		}), codeInvalidParameter, "properties.dnsSettings.dnsServers[0]", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.putNIC("rg", "nic", c.nic)
			wantTarget(t, testkit.WantARMError(t, err, 400, c.code), c.target, c.words...)
		})
	}
	// Two ipConfigurations in two subnets of one VNet are fine: a Static one
	// listed after a Dynamic one keeps its address.
	ok := mod(func(n *armnetwork.Interface) {
		n.Properties.IPConfigurations = append(n.Properties.IPConfigurations, staticNIC(a, "10.0.1.4").Properties.IPConfigurations[0])
		n.Properties.IPConfigurations[1].Name = to.Ptr("two")
		n.Properties.IPConfigurations[1].Properties.Primary = to.Ptr(true)
	})
	got, err := e.putNIC("rg", "nic", ok)
	if err != nil {
		t.Fatal(err)
	}
	if a0, a1 := str(got.Properties.IPConfigurations[0].Properties.PrivateIPAddress), str(got.Properties.IPConfigurations[1].Properties.PrivateIPAddress); a0 != "10.0.1.5" || a1 != "10.0.1.4" {
		t.Errorf("addresses = %s %s, want 10.0.1.5 10.0.1.4", a0, a1)
	}
}

// TestAddressFollowsChanges checks that the address checks, which read NICs
// through the provider's memo, see an address move and a NIC go.
func TestAddressFollowsChanges(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/24"))
	a := subnetID("rg", "v", "a")
	e.mustNIC("rg", "first", staticNIC(a, "10.0.1.10"))
	_, err := e.putNIC("rg", "second", staticNIC(a, "10.0.1.10"))
	testkit.WantARMError(t, err, 400, codeIPAllocated)

	e.mustNIC("rg", "first", staticNIC(a, "10.0.1.11")) // moves
	e.mustNIC("rg", "second", staticNIC(a, "10.0.1.10"))
	_, err = e.putNIC("rg", "third", staticNIC(a, "10.0.1.11"))
	testkit.WantARMError(t, err, 400, codeIPAllocated)

	p, err := e.nics.BeginDelete(e.ctx, "rg", "first", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PollUntilDone(e.ctx, poll); err != nil {
		t.Fatal(err)
	}
	if third := e.mustNIC("rg", "third", staticNIC(a, "10.0.1.11")); ipOf(third) != "10.0.1.11" {
		t.Errorf("third got %s, want the deleted NIC's 10.0.1.11", ipOf(third))
	}
}

func TestSubnetIsFull(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustVNet("rg", "v", vnetBody("10.0.0.0/24", "tiny=10.0.0.8/29"))
	want := []string{"10.0.0.12", "10.0.0.13", "10.0.0.14"}
	for i, w := range want {
		n := e.mustNIC("rg", fmt.Sprintf("nic%d", i), nicBody(subnetID("rg", "v", "tiny")))
		if ipOf(n) != w {
			t.Errorf("nic%d = %s, want %s", i, ipOf(n), w)
		}
	}
	_, err := e.putNIC("rg", "nic3", nicBody(subnetID("rg", "v", "tiny")))
	wantTarget(t, testkit.WantARMError(t, err, 400, codeSubnetFull), "properties.ipConfigurations[0].properties.subnet.id", "tiny", "10.0.0.8/29", "3 usable addresses")
	if err := e.deleteNIC("rg", "nic1"); err != nil {
		t.Fatal(err)
	}
	if n := e.mustNIC("rg", "nic3", nicBody(subnetID("rg", "v", "tiny"))); ipOf(n) != "10.0.0.13" {
		t.Errorf("nic3 = %s, want the freed 10.0.0.13", ipOf(n))
	}
}

// TestConcurrentAllocation creates NICs in one subnet from many goroutines:
// every one gets an address, and no two the same. bolt serializes writers.
func TestConcurrentAllocation(t *testing.T) {
	concurrentAllocation(t, newEnv(t), 40)
}

// TestConcurrentAllocationEtcd is the same over etcd, whose transactions
// are optimistic: the allocation reads the subscription's NIC documents, so
// two transactions that would hand out one address conflict and one of
// them runs again.
func TestConcurrentAllocationEtcd(t *testing.T) {
	endpoint := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := etcd.New(ctx, etcd.Config{Endpoints: []string{endpoint}, Prefix: "/privlink-test/"})
	if err != nil {
		t.Fatal(err)
	}
	concurrentAllocation(t, newEnvOn(t, st), 24)
}

func concurrentAllocation(t *testing.T, e *env, n int) {
	e.group("rg")
	e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/26"))
	var wg sync.WaitGroup
	addrs := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			nic, err := e.putNIC("rg", fmt.Sprintf("nic%02d", i), nicBody(subnetID("rg", "v", "a")))
			addrs[i], errs[i] = ipOf(nic), err
		}(i)
	}
	wg.Wait()
	seen := map[string]int{}
	for i := range addrs {
		if errs[i] != nil {
			t.Fatalf("nic%02d: %v", i, errs[i])
		}
		if j, dup := seen[addrs[i]]; dup {
			t.Errorf("nic%02d and nic%02d both got %s", i, j, addrs[i])
		}
		seen[addrs[i]] = i
	}
	// They took exactly the n lowest usable addresses, from .4 on.
	for i := 4; i < 4+n; i++ {
		if _, ok := seen[fmt.Sprintf("10.0.1.%d", i)]; !ok {
			t.Errorf("10.0.1.%d was not allocated", i)
		}
	}
	s, err := e.subnet.Get(e.ctx, "rg", "v", "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(s.Properties.IPConfigurations); got != n {
		t.Errorf("subnet lists %d ipConfigurations, want %d", got, n)
	}
}

// TestManagedNIC checks that a NIC owned by a private endpoint (written
// here directly, as the private endpoint provider will) cannot be changed
// or deleted by users.
func TestManagedNIC(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/24"))
	nic := e.mustNIC("rg", "pe1.nic.1", nicBody(subnetID("rg", "v", "a")))
	pe := resID("rg", "privateEndpoints", "pe1")
	id, err := arm.ParseID(str(nic.ID))
	if err != nil {
		t.Fatal(err)
	}
	nic.Properties.PrivateEndpoint = &armnetwork.PrivateEndpoint{ID: to.Ptr(pe)}
	if _, err := e.st.Txn(e.ctx, func(tx store.Tx) error { return arm.Save(tx, id, &nic) }); err != nil {
		t.Fatal(err)
	}
	_, err = e.putNIC("rg", "pe1.nic.1", nicBody(subnetID("rg", "v", "a")))
	wantTarget(t, testkit.WantARMError(t, err, 400, codeManagedNIC), "", pe, "can not be modified")
	_, err = e.nics.UpdateTags(e.ctx, "rg", "pe1.nic.1", armnetwork.TagsObject{Tags: map[string]*string{}}, nil)
	testkit.WantARMError(t, err, 400, codeManagedNIC)
	err = e.deleteNIC("rg", "pe1.nic.1")
	wantTarget(t, testkit.WantARMError(t, err, 400, codeManagedNIC), "", "can not be deleted")
	g, err := e.nics.Get(e.ctx, "rg", "pe1.nic.1", nil)
	if err != nil || str(g.Properties.PrivateEndpoint.ID) != pe {
		t.Fatalf("get managed nic = %v %v", g.Properties, err)
	}
	// Its address is held like any other.
	if n := e.mustNIC("rg", "user", nicBody(subnetID("rg", "v", "a"))); ipOf(n) != "10.0.1.5" {
		t.Errorf("user nic = %s", ipOf(n))
	}
}

// TestNICRawBodies sends bodies the SDK would not, to check that nothing
// panics on odd input.
func TestNICRawBodies(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/24"))
	path := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Network/"
	for _, c := range []struct {
		path, body string
		status     int
	}{
		{"networkInterfaces/n", ``, 400},
		{"networkInterfaces/n", `null`, 400},
		{"networkInterfaces/n", `{"location":"westeurope","properties":null}`, 400},
		{"networkInterfaces/n", `{"location":"westeurope","properties":{"ipConfigurations":[null,{}]}}`, 400},
		{"networkInterfaces/n", `{"location":"westeurope","properties":{"ipConfigurations":[{"name":"x","properties":{"subnet":{}}}]}}`, 400},
		{"networkInterfaces/n", `{"location":"westeurope","properties":{"ipConfigurations":[{"name":"x","properties":{"subnet":{"id":null},"applicationSecurityGroups":[null]}}]}}`, 400},
		{"networkInterfaces/n", `{"location":"westeurope","properties":{"dnsSettings":{"dnsServers":[null]},"ipConfigurations":[{"name":"x","properties":{"subnet":{"id":"x"}}}]}}`, 400},
		{"virtualNetworks/v", `{"location":"westeurope","properties":{"addressSpace":{"addressPrefixes":[null]}}}`, 400},
		{"virtualNetworks/v", `{"location":"westeurope","properties":{"addressSpace":{"addressPrefixes":["10.0.0.0/16"]},"subnets":[{"name":"a","properties":{"addressPrefixes":[null]}}]}}`, 400},
		{"virtualNetworks/v/subnets/a", `{"properties":{"addressPrefix":"10.0.1.0/24","delegations":[{"name":"d","properties":null}],"serviceEndpoints":[null]}}`, 400},
		{"networkSecurityGroups/n", `{"location":"westeurope","properties":{"securityRules":[null]}}`, 400},
		{"networkSecurityGroups/n", `{"location":"westeurope","properties":{"securityRules":[{"name":"r","properties":{"priority":100,"direction":"Inbound","access":"Allow","protocol":"*","sourcePortRanges":[null],"destinationPortRange":"*","sourceAddressPrefix":"*","destinationAddressPrefix":"*"}}]}}`, 400},
		{"networkSecurityGroups/n", `{"location":"westeurope","properties":{"securityRules":[{"name":"r","properties":{"priority":"high"}}]}}`, 400},
		{"routeTables/t", `{"location":"westeurope","properties":{"routes":[null]}}`, 400},
		{"routeTables/t", `{"location":"westeurope","properties":{"routes":[{"name":"r","properties":null}]}}`, 400},
		{"applicationSecurityGroups/a", `{"location":"westeurope","properties":null}`, 201},
		{"networkSecurityGroups/n2", `{"location":"westeurope"}`, 201},
		{"routeTables/t2", `{"location":"westeurope","properties":{}}`, 201},
	} {
		code, body := e.raw(http.MethodPut, path+c.path, c.body)
		if code != c.status {
			t.Errorf("PUT %s %s = %d %s, want %d", c.path, c.body, code, body, c.status)
		}
	}
	for _, typ := range []string{"virtualNetworks/v", "networkInterfaces/n", "applicationSecurityGroups/a"} {
		if code, body := e.raw(http.MethodPatch, path+typ, `{"tags":null}`); code >= 500 {
			t.Errorf("PATCH %s = %d %s", typ, code, body)
		}
	}
}

// TestIPv6OnlySubnet: an IPv4 configuration in a subnet with IPv6 prefixes
// only is told what is missing (it used to read "address prefix  ... 0
// usable", an empty prefix).
func TestIPv6OnlySubnet(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	v := vnetBody("10.0.0.0/24", "v4=10.0.0.0/26")
	v.Properties.AddressSpace.AddressPrefixes = append(v.Properties.AddressSpace.AddressPrefixes, to.Ptr("fd00:db8::/48"))
	v.Properties.Subnets = append(v.Properties.Subnets, &armnetwork.Subnet{Name: to.Ptr("v6"),
		Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr("fd00:db8::/64")}})
	e.mustVNet("rg", "v", v)
	_, err := e.putNIC("rg", "nic", nicBody(subnetID("rg", "v", "v6")))
	wantTarget(t, testkit.WantARMError(t, err, 400, codeNoIPv4Prefix), "properties.ipConfigurations[0].properties.subnet.id", "v6", "no IPv4 address prefix")
	e.mustNIC("rg", "nic", nicBody(subnetID("rg", "v", "v4")))
}
