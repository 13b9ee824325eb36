package network

import (
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/testkit"
)

// snapshot returns every stored key and value.
func (e *env) snapshot() map[string]string {
	e.t.Helper()
	kvs, _, err := e.st.List(e.ctx, "")
	if err != nil {
		e.t.Fatal(err)
	}
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		out[kv.Key] = string(kv.Value)
	}
	return out
}

// refused asserts that a write answered err (400, code, naming target and
// words) and changed no stored key since before.
func (e *env) refused(t *testing.T, before map[string]string, err error, code, target string, words ...string) {
	t.Helper()
	wantTarget(t, testkit.WantARMError(t, err, 400, code), target, words...)
	after := e.snapshot()
	for k, v := range after {
		if w, ok := before[k]; !ok {
			t.Errorf("refused write added %s", k)
		} else if w != v {
			t.Errorf("refused write changed %s", k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			t.Errorf("refused write deleted %s", k)
		}
	}
}

func asgRefs(ids ...*string) []*armnetwork.ApplicationSecurityGroup {
	var out []*armnetwork.ApplicationSecurityGroup
	for _, id := range ids {
		out = append(out, &armnetwork.ApplicationSecurityGroup{ID: id})
	}
	return out
}

func nicInASGs(subnet string, asgs ...*string) armnetwork.Interface {
	n := nicBody(subnet)
	n.Properties.IPConfigurations[0].Properties.ApplicationSecurityGroups = asgRefs(asgs...)
	return n
}

// TestASGOneNetwork: an application security group's members are in one
// virtual network, and so are those of the groups a rule pairs as source
// and destination, whichever is written last (member or rule).
func TestASGOneNetwork(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustVNet("rg", "v1", vnetBody("10.1.0.0/16", "a=10.1.1.0/24"))
	e.mustVNet("rg", "v2", vnetBody("10.2.0.0/16", "a=10.2.1.0/24"))
	web, db, other := e.mustASG("rg", "web"), e.mustASG("rg", "db"), e.mustASG("rg", "other")
	in1, in2 := subnetID("rg", "v1", "a"), subnetID("rg", "v2", "a")
	const asgField = "properties.ipConfigurations[0].properties.applicationSecurityGroups[0].id"

	e.mustNIC("rg", "n1", nicInASGs(in1, web.ID))
	before := e.snapshot()
	_, err := e.putNIC("rg", "n2", nicInASGs(in2, web.ID))
	e.refused(t, before, err, codeASGNetwork, asgField, "virtualNetworks/v1", "virtualNetworks/v2", "ipConfigurations/ipconfig1")
	// A NIC joining a group in its own network is fine, also in a second
	// group; the only member may move (it is not its own conflict).
	e.mustNIC("rg", "n2", nicInASGs(in2, db.ID))
	e.mustNIC("rg", "n3", nicInASGs(in1, other.ID, web.ID))
	if err := e.deleteNIC("rg", "n3"); err != nil {
		t.Fatal(err)
	}
	// n2, db's only member, may move to v1 and back: it is not its own
	// conflict.
	e.mustNIC("rg", "n2", nicInASGs(in1, db.ID))
	e.mustNIC("rg", "n2", nicInASGs(in2, db.ID))

	// A rule pairing web (v1) with db (v2), as a child and inline.
	pair := ruleProps(200)
	pair.SourceAddressPrefix, pair.SourceApplicationSecurityGroups = nil, asgRefs(web.ID)
	pair.DestinationAddressPrefix, pair.DestinationApplicationSecurityGroups = nil, asgRefs(other.ID, db.ID)
	e.mustNSG("rg", "nsg")
	before = e.snapshot()
	_, err = e.putRule("rg", "nsg", "web-to-db", armnetwork.SecurityRule{Properties: pair})
	e.refused(t, before, err, codeASGNetwork, "properties.destinationApplicationSecurityGroups[1].id", "web-to-db", "virtualNetworks/v1", "virtualNetworks/v2")
	_, err = e.putNSG("rg", "nsg", armnetwork.SecurityGroup{Location: to.Ptr("westeurope"), Properties: &armnetwork.SecurityGroupPropertiesFormat{
		SecurityRules: []*armnetwork.SecurityRule{rule("ok", 100), {Name: to.Ptr("web-to-db"), Properties: pair}}}})
	e.refused(t, before, err, codeASGNetwork, "properties.securityRules[1].properties.destinationApplicationSecurityGroups[1].id")

	// Pairing web with other (no members yet) is fine; then other's first
	// member must be in web's network.
	pair.DestinationApplicationSecurityGroups = asgRefs(other.ID)
	if _, err := e.putRule("rg", "nsg", "web-to-other", armnetwork.SecurityRule{Properties: pair}); err != nil {
		t.Fatal(err)
	}
	before = e.snapshot()
	_, err = e.putNIC("rg", "n4", nicInASGs(in2, other.ID))
	e.refused(t, before, err, codeASGNetwork, asgField, "securityRules/web-to-other", "virtualNetworks/v1")
	e.mustNIC("rg", "n4", nicInASGs(in1, other.ID))
}

// TestEndpointASGOneNetwork: a private endpoint joining an application
// security group is held to the same one-network rule as a NIC, and its
// own NIC is not its conflict when it is re-put.
func TestEndpointASGOneNetwork(t *testing.T) {
	e := newPEEnv(t)
	o := e.as("owner", sub)
	e.group(o, "rg")
	e.network(o, "rg", "v1")
	e.network(o, "rg", "v2")
	e.server(o, "rg", "srv1")
	asgs, err := armnetwork.NewApplicationSecurityGroupsClient(sub, token("owner"), e.opts)
	if err != nil {
		t.Fatal(err)
	}
	p, err := asgs.BeginCreateOrUpdate(e.ctx, "rg", "web", armnetwork.ApplicationSecurityGroup{Location: to.Ptr("westeurope")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	web, err := p.PollUntilDone(e.ctx, poll)
	if err != nil {
		t.Fatal(err)
	}
	server := serverIDIn(sub, "rg", "srv1")
	body := func(vnet string) armnetwork.PrivateEndpoint {
		b := endpointBody(subnetIDIn(sub, "rg", vnet, "pe"), server, false, "")
		b.Properties.ApplicationSecurityGroups = asgRefs(web.ID)
		return b
	}
	e.mustEndpoint(o, "rg", "pe1", body("v1"))
	e.mustEndpoint(o, "rg", "pe1", body("v1"))
	_, err = e.putEndpoint(o, "rg", "pe2", body("v2"))
	wantTarget(t, testkit.WantARMError(t, err, 400, codeASGNetwork), "properties.applicationSecurityGroups[0].id", "privateEndpoints/pe1", "virtualNetworks/v2")
	if _, err := o.endpoints.Get(e.ctx, "rg", "pe2", nil); err == nil {
		t.Error("refused endpoint pe2 was stored")
	}
	e.mustEndpoint(o, "rg", "pe2", body("v1"))
}
