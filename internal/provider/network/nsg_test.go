package network

import (
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/testkit"
)

// rule is a valid inbound TCP rule with the given name and priority.
func rule(name string, priority int32) *armnetwork.SecurityRule {
	return &armnetwork.SecurityRule{Name: to.Ptr(name), Properties: ruleProps(priority)}
}

func ruleProps(priority int32) *armnetwork.SecurityRulePropertiesFormat {
	return &armnetwork.SecurityRulePropertiesFormat{
		Priority:                 to.Ptr(priority),
		Direction:                to.Ptr(armnetwork.SecurityRuleDirectionInbound),
		Access:                   to.Ptr(armnetwork.SecurityRuleAccessAllow),
		Protocol:                 to.Ptr(armnetwork.SecurityRuleProtocolTCP),
		SourcePortRange:          to.Ptr("*"),
		DestinationPortRange:     to.Ptr("5432"),
		SourceAddressPrefix:      to.Ptr("VirtualNetwork"),
		DestinationAddressPrefix: to.Ptr("*"),
	}
}

func ruleNames(rules []*armnetwork.SecurityRule) string {
	var names []string
	for _, r := range rules {
		names = append(names, str(r.Name))
	}
	return strings.Join(names, ",")
}

func TestNSGLifecycle(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.group("rg2")
	n := e.mustNSG("rg", "NSG1", rule("allow-pg", 100), rule("allow-ssh", 110))
	id := resID("rg", "networkSecurityGroups", "NSG1")
	if str(n.ID) != id || str(n.Type) != typeNSG || str((*string)(n.Properties.ProvisioningState)) != "Succeeded" {
		t.Fatalf("nsg = %s %s", str(n.ID), str(n.Type))
	}
	if got := ruleNames(n.Properties.SecurityRules); got != "allow-pg,allow-ssh" {
		t.Errorf("inline rules = %s", got)
	}
	r0 := n.Properties.SecurityRules[0]
	if str(r0.ID) != id+"/securityRules/allow-pg" || str(r0.Type) != typeRule || len(r0.Properties.SourcePortRanges) != 0 {
		t.Errorf("rule = %s %s", str(r0.ID), str(r0.Type))
	}
	if got := ruleNames(n.Properties.DefaultSecurityRules); got != "AllowVnetInBound,AllowAzureLoadBalancerInBound,DenyAllInBound,AllowVnetOutBound,AllowInternetOutBound,DenyAllOutBound" {
		t.Errorf("default rules = %s", got)
	}

	// Default rules, as in DefaultSecurityRuleGet.json.
	d, err := e.defs.Get(e.ctx, "rg", "nsg1", "allowvnetinbound", nil)
	if err != nil {
		t.Fatal(err)
	}
	dp := d.Properties
	if str(d.ID) != id+"/defaultSecurityRules/AllowVnetInBound" || str(d.Name) != "AllowVnetInBound" ||
		*dp.Priority != 65000 || *dp.Direction != armnetwork.SecurityRuleDirectionInbound || *dp.Access != armnetwork.SecurityRuleAccessAllow ||
		*dp.Protocol != armnetwork.SecurityRuleProtocolAsterisk || str(dp.SourceAddressPrefix) != "VirtualNetwork" ||
		str(dp.DestinationAddressPrefix) != "VirtualNetwork" || str(dp.SourcePortRange) != "*" || str(dp.DestinationPortRange) != "*" ||
		dp.SourcePortRanges == nil || len(dp.SourcePortRanges) != 0 || dp.DestinationAddressPrefixes == nil ||
		str(dp.Description) != "Allow inbound traffic from all VMs in VNET" {
		t.Errorf("default rule = %+v", dp)
	}
	defs := collect(t, e.ctx, e.defs.NewListPager("rg", "nsg1", nil), func(p armnetwork.DefaultSecurityRulesClientListResponse) []*armnetwork.SecurityRule { return p.Value })
	want := map[string]int32{"AllowVnetInBound": 65000, "AllowAzureLoadBalancerInBound": 65001, "DenyAllInBound": 65500,
		"AllowVnetOutBound": 65000, "AllowInternetOutBound": 65001, "DenyAllOutBound": 65500}
	for _, r := range defs {
		if want[str(r.Name)] != *r.Properties.Priority {
			t.Errorf("default rule %s priority %d", str(r.Name), *r.Properties.Priority)
		}
		delete(want, str(r.Name))
	}
	if len(want) != 0 {
		t.Errorf("missing default rules %v", want)
	}
	_, err = e.defs.Get(e.ctx, "rg", "nsg1", "Nope", nil)
	testkit.WantARMError(t, err, 404, "NotFound")

	// Child rules.
	r, err := e.putRule("rg", "nsg1", "Allow-HTTPS", armnetwork.SecurityRule{Properties: &armnetwork.SecurityRulePropertiesFormat{
		Priority: to.Ptr[int32](200), Direction: to.Ptr(armnetwork.SecurityRuleDirection("outbound")), Access: to.Ptr(armnetwork.SecurityRuleAccessDeny),
		Protocol: to.Ptr(armnetwork.SecurityRuleProtocol("tcp")), SourcePortRange: to.Ptr("*"),
		DestinationPortRanges: []*string{to.Ptr("443"), to.Ptr("8000-8080")}, SourceAddressPrefixes: []*string{to.Ptr("10.0.0.0/16"), to.Ptr("192.168.1.1")},
		DestinationAddressPrefix: to.Ptr("Storage.WestEurope"), Description: to.Ptr("no web"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if *r.Properties.Direction != armnetwork.SecurityRuleDirectionOutbound || *r.Properties.Protocol != armnetwork.SecurityRuleProtocolTCP {
		t.Errorf("enums not canonical: %s %s", *r.Properties.Direction, *r.Properties.Protocol)
	}
	g, err := e.rules.Get(e.ctx, "rg", "nsg1", "allow-https", nil)
	if err != nil || str(g.Name) != "Allow-HTTPS" {
		t.Fatalf("get rule = %s %v", str(g.Name), err)
	}
	list := collect(t, e.ctx, e.rules.NewListPager("rg", "nsg1", nil), func(p armnetwork.SecurityRulesClientListResponse) []*armnetwork.SecurityRule { return p.Value })
	if ruleNames(list) != "Allow-HTTPS,allow-pg,allow-ssh" {
		t.Errorf("list rules = %s", ruleNames(list))
	}
	// An NSG PUT without securityRules keeps the rules; with a list it
	// replaces them.
	kept, err := e.putNSG("rg", "nsg1", armnetwork.SecurityGroup{Location: to.Ptr("westeurope"), Tags: map[string]*string{"x": to.Ptr("y")}})
	if err != nil {
		t.Fatal(err)
	}
	if len(kept.Properties.SecurityRules) != 3 || str(kept.Name) != "NSG1" {
		t.Errorf("rules after PUT without rules = %s", ruleNames(kept.Properties.SecurityRules))
	}
	repl := e.mustNSG("rg", "nsg1", rule("allow-pg", 300))
	if ruleNames(repl.Properties.SecurityRules) != "allow-pg" || *repl.Properties.SecurityRules[0].Properties.Priority != 300 {
		t.Errorf("rules after replacing PUT = %s", ruleNames(repl.Properties.SecurityRules))
	}
	del, err := e.rules.BeginDelete(e.ctx, "rg", "nsg1", "allow-pg", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := del.PollUntilDone(e.ctx, poll); err != nil {
		t.Fatal(err)
	}
	_, err = e.rules.Get(e.ctx, "rg", "nsg1", "allow-pg", nil)
	testkit.WantARMError(t, err, 404, "NotFound")

	// Lists, tags, delete.
	e.mustNSG("rg2", "nsg2")
	if l := collect(t, e.ctx, e.nsgs.NewListPager("rg", nil), func(p armnetwork.SecurityGroupsClientListResponse) []*armnetwork.SecurityGroup { return p.Value }); len(l) != 1 {
		t.Errorf("list rg = %d", len(l))
	}
	if l := collect(t, e.ctx, e.nsgs.NewListAllPager(nil), func(p armnetwork.SecurityGroupsClientListAllResponse) []*armnetwork.SecurityGroup { return p.Value }); len(l) != 2 {
		t.Errorf("list all = %d", len(l))
	}
	tg, err := e.nsgs.UpdateTags(e.ctx, "rg", "nsg1", armnetwork.TagsObject{Tags: map[string]*string{"k": to.Ptr("v")}}, nil)
	if err != nil || str(tg.Tags["k"]) != "v" || len(tg.Tags) != 1 {
		t.Fatalf("tags = %v %v", tg.Tags, err)
	}
	if err := e.deleteNSG("rg", "nsg1"); err != nil {
		t.Fatal(err)
	}
	_, err = e.nsgs.Get(e.ctx, "rg", "nsg1", nil)
	testkit.WantARMError(t, err, 404, "ResourceNotFound")
	_, err = e.rules.Get(e.ctx, "rg", "nsg1", "allow-https", nil)
	testkit.WantARMError(t, err, 404, "ParentResourceNotFound")
}

func TestSecurityRuleValidation(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	e.mustNSG("rg", "nsg", rule("existing", 100))
	asg := e.mustASG("rg", "web")
	east := armnetwork.ApplicationSecurityGroup{Location: to.Ptr("eastus")}
	if p, err := e.asgs.BeginCreateOrUpdate(e.ctx, "rg", "east", east, nil); err != nil {
		t.Fatal(err)
	} else if _, err := p.PollUntilDone(e.ctx, poll); err != nil {
		t.Fatal(err)
	}
	mod := func(f func(p *armnetwork.SecurityRulePropertiesFormat)) armnetwork.SecurityRule {
		p := ruleProps(200)
		f(p)
		return armnetwork.SecurityRule{Properties: p}
	}
	long := strings.Repeat("x", 141)
	cases := []struct {
		name   string
		rule   armnetwork.SecurityRule
		code   string
		target string
		words  []string
	}{
		{"no properties", armnetwork.SecurityRule{}, codeMissingParameter, "properties.priority", nil},
		{"no priority", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.Priority = nil }), codeMissingParameter, "properties.priority", nil},
		{"priority too low", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.Priority = to.Ptr[int32](99) }), codeRulePriority, "properties.priority", []string{"99", "100-4096"}},
		{"priority too high", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.Priority = to.Ptr[int32](4097) }), codeRulePriority, "properties.priority", nil},
		{"duplicate priority", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.Priority = to.Ptr[int32](100) }), codeRuleConflict, "properties.priority", []string{"new", "existing"}},
		{"no direction", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.Direction = nil }), codeMissingParameter, "properties.direction", nil},
		{"bad direction", mod(func(p *armnetwork.SecurityRulePropertiesFormat) {
			p.Direction = to.Ptr(armnetwork.SecurityRuleDirection("Sideways"))
		}), codeInvalidRequestFormat, "properties.direction", []string{"Inbound", "Outbound"}},
		{"bad access", mod(func(p *armnetwork.SecurityRulePropertiesFormat) {
			p.Access = to.Ptr(armnetwork.SecurityRuleAccess("Maybe"))
		}), codeInvalidRequestFormat, "properties.access", nil},
		{"no access", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.Access = nil }), codeMissingParameter, "properties.access", nil},
		{"bad protocol", mod(func(p *armnetwork.SecurityRulePropertiesFormat) {
			p.Protocol = to.Ptr(armnetwork.SecurityRuleProtocol("Sctp"))
		}), codeInvalidRequestFormat, "properties.protocol", []string{"Tcp", "Icmp"}},
		{"no protocol", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.Protocol = nil }), codeMissingParameter, "properties.protocol", nil},
		{"long description", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.Description = &long }), codeInvalidParameter, "properties.description", []string{"140"}},
		{"port out of range", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.DestinationPortRange = to.Ptr("65536") }), codeRulePortRange, "properties.destinationPortRange", []string{"65536"}},
		{"port list", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.DestinationPortRange = to.Ptr("80,443") }), codeRulePortRange, "properties.destinationPortRange", nil},
		{"reversed range", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.SourcePortRange = to.Ptr("2000-1000") }), codeRulePortRange, "properties.sourcePortRange", nil},
		{"negative port", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.SourcePortRange = to.Ptr("-1") }), codeRulePortRange, "properties.sourcePortRange", nil},
		{"bad port in ranges", mod(func(p *armnetwork.SecurityRulePropertiesFormat) {
			p.DestinationPortRange, p.DestinationPortRanges = nil, []*string{to.Ptr("80"), to.Ptr("x")}
		}), codeRulePortRange, "properties.destinationPortRanges[1]", nil},
		{"star in ranges", mod(func(p *armnetwork.SecurityRulePropertiesFormat) {
			p.DestinationPortRange, p.DestinationPortRanges = nil, []*string{to.Ptr("*")}
		}), codeRulePortRanges, "properties.destinationPortRanges[0]", nil},
		{"range and ranges", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.DestinationPortRanges = []*string{to.Ptr("80")} }), codeInvalidParameter, "properties.destinationPortRanges", nil},
		{"no port", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.SourcePortRange = nil }), codeMissingParameter, "properties.sourcePortRange", nil},
		{"prefix host bits", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.SourceAddressPrefix = to.Ptr("20.20.20.20/16") }), codeRuleAddressPrefix, "properties.sourceAddressPrefix", []string{"20.20.20.20/16"}},
		{"unknown tag", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.SourceAddressPrefix = to.Ptr("AzureBastionSubnet") }), codeRuleAddressPrefix, "properties.sourceAddressPrefix", nil},
		{"tag in prefixes", mod(func(p *armnetwork.SecurityRulePropertiesFormat) {
			p.SourceAddressPrefix, p.SourceAddressPrefixes = nil, []*string{to.Ptr("10.0.0.0/8"), to.Ptr("Internet")}
		}), codeRuleUnsupportedValue, "properties.sourceAddressPrefixes[1]", []string{"Internet"}},
		{"prefix and prefixes", mod(func(p *armnetwork.SecurityRulePropertiesFormat) {
			p.DestinationAddressPrefixes = []*string{to.Ptr("10.0.0.0/8")}
		}), codeInvalidParameter, "properties.destinationAddressPrefix", nil},
		{"no source", mod(func(p *armnetwork.SecurityRulePropertiesFormat) { p.SourceAddressPrefix = nil }), codeMissingParameter, "properties.sourceAddressPrefix", nil},
		{"prefix and asg", mod(func(p *armnetwork.SecurityRulePropertiesFormat) {
			p.SourceApplicationSecurityGroups = []*armnetwork.ApplicationSecurityGroup{{ID: asg.ID}}
		}), codeInvalidParameter, "properties.sourceAddressPrefix", nil},
		{"missing asg", mod(func(p *armnetwork.SecurityRulePropertiesFormat) {
			p.SourceAddressPrefix = nil
			p.SourceApplicationSecurityGroups = []*armnetwork.ApplicationSecurityGroup{{ID: to.Ptr(resID("rg", "applicationSecurityGroups", "nope"))}}
		}), codeInvalidReference, "properties.sourceApplicationSecurityGroups[0].id", []string{"nope"}},
		{"asg in another region", mod(func(p *armnetwork.SecurityRulePropertiesFormat) {
			p.DestinationAddressPrefix = nil
			p.DestinationApplicationSecurityGroups = []*armnetwork.ApplicationSecurityGroup{{ID: to.Ptr(resID("rg", "applicationSecurityGroups", "east"))}}
		}), codeInvalidReference, "properties.destinationApplicationSecurityGroups[0].id", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.snapshot()
			_, err := e.putRule("rg", "nsg", "new", c.rule)
			e.refused(t, before, err, c.code, c.target, c.words...)
		})
	}
	// The same direction with another priority, the other direction with the
	// same priority, and ASG sources are all fine.
	ok := mod(func(p *armnetwork.SecurityRulePropertiesFormat) {
		p.Priority = to.Ptr[int32](100)
		p.Direction = to.Ptr(armnetwork.SecurityRuleDirectionOutbound)
		p.SourceAddressPrefix = nil
		p.SourceApplicationSecurityGroups = []*armnetwork.ApplicationSecurityGroup{{ID: to.Ptr(strings.ToUpper(str(asg.ID)))}}
	})
	got, err := e.putRule("rg", "nsg", "new", ok)
	if err != nil {
		t.Fatal(err)
	}
	if a := got.Properties.SourceApplicationSecurityGroups; len(a) != 1 || str(a[0].ID) != str(asg.ID) {
		t.Errorf("asg ref = %v, want canonical %s", a, str(asg.ID))
	}

	// Inline rules: conflicts name both rules, targets name the index.
	_, err = e.putNSG("rg", "nsg2", armnetwork.SecurityGroup{Location: to.Ptr("westeurope"), Properties: &armnetwork.SecurityGroupPropertiesFormat{
		SecurityRules: []*armnetwork.SecurityRule{rule("a", 150), rule("b", 160), rule("c", 150)}}})
	wantTarget(t, testkit.WantARMError(t, err, 400, codeRuleConflict), "properties.securityRules[2].properties.priority", "Security rule c conflicts with rule a")
	bad := rule("b", 160)
	bad.Properties.SourcePortRange = to.Ptr("99999")
	_, err = e.putNSG("rg", "nsg2", armnetwork.SecurityGroup{Location: to.Ptr("westeurope"), Properties: &armnetwork.SecurityGroupPropertiesFormat{
		SecurityRules: []*armnetwork.SecurityRule{rule("a", 150), bad}}})
	wantTarget(t, testkit.WantARMError(t, err, 400, codeRulePortRange), "properties.securityRules[1].properties.sourcePortRange")
	_, err = e.putNSG("rg", "nsg2", armnetwork.SecurityGroup{Location: to.Ptr("westeurope"), Properties: &armnetwork.SecurityGroupPropertiesFormat{
		SecurityRules: []*armnetwork.SecurityRule{rule("a", 150), rule("A", 151)}}})
	wantTarget(t, testkit.WantARMError(t, err, 400, codeInvalidParameter), "properties.securityRules[1].name")
	_, err = e.nsgs.Get(e.ctx, "rg", "nsg2", nil)
	testkit.WantARMError(t, err, 404, "ResourceNotFound")
}

func TestNSGInUse(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	nsg := e.mustNSG("rg", "nsg")
	v := vnetBody("10.0.0.0/16", "a=10.0.1.0/24")
	v.Properties.Subnets[0].Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: nsg.ID}
	e.mustVNet("rg", "v", v)
	err := e.deleteNSG("rg", "nsg")
	wantTarget(t, testkit.WantARMError(t, err, 400, codeNSGInUse), "", subnetID("rg", "v", "a"), "remove the association")

	// Associated with a NIC only.
	e.mustVNet("rg", "v", vnetBody("10.0.0.0/16", "a=10.0.1.0/24"))
	n := nicBody(subnetID("rg", "v", "a"))
	n.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: nsg.ID}
	nic := e.mustNIC("rg", "nic", n)
	g, err := e.nsgs.Get(e.ctx, "rg", "nsg", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Properties.Subnets) != 0 || len(g.Properties.NetworkInterfaces) != 1 || str(g.Properties.NetworkInterfaces[0].ID) != str(nic.ID) {
		t.Errorf("nsg associations: subnets %v nics %v", g.Properties.Subnets, g.Properties.NetworkInterfaces)
	}
	err = e.deleteNSG("rg", "nsg")
	wantTarget(t, testkit.WantARMError(t, err, 400, codeNSGInUse), "", str(nic.ID))
	if err := e.deleteNIC("rg", "nic"); err != nil {
		t.Fatal(err)
	}
	if err := e.deleteNSG("rg", "nsg"); err != nil {
		t.Fatalf("delete unassociated nsg: %v", err)
	}
}
