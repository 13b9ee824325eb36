package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/arm/armtest"
	"github.com/privlink/privlink/internal/dns"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/fabric/fabrictest"
	"github.com/privlink/privlink/internal/provider/network"
	"github.com/privlink/privlink/internal/provider/resources"
	"github.com/privlink/privlink/internal/store/bolt"
	"github.com/privlink/privlink/internal/testkit"
)

// policyBenchRules is the size of the benchmark's NSG, as in issue 10's
// pgbench benchmark.
const policyBenchRules = 100

// BenchmarkPolicyPass measures one pass of the policy controller
// (Policy.ensure, what its loop runs for a network) over a network whose
// clients subnet has an NSG of 100 rules and two NICs, built through the
// official SDK clients and materialized by the network controller over a
// real fabric. Besides time it reports what the pass committed to the
// kernel, as the kernel tells it (nft monitor in the router's namespace):
// commits/op (nftables transactions) and changes/op (rules, chains, set
// elements added or deleted).
//
//   - unchanged: nothing changed since the last pass (the fingerprint
//     matches: no table read back, no conntrack dump).
//   - forgotten: nothing changed, but the controller forgot what it
//     converged to, as after a privlinkd restart or at the 30 s resync:
//     the table is read back and compared, nothing is written.
//   - one-rule: one rule's port changed by a PUT before the pass (outside
//     the timer): the pass writes that rule's chain.
func BenchmarkPolicyPass(b *testing.B) {
	testkit.RequireRoot(b, "it creates network namespaces", "nft", "ip")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	b.Cleanup(cancel)
	st, err := bolt.Open(filepath.Join(b.TempDir(), "store.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	fab := fabrictest.New(b, "plb", log)
	var all []*arm.ResourceType
	all = append(all, resources.New(st, func() []*arm.ResourceType { return all }).Types()...)
	all = append(all, network.New(st, network.WithMaterializedNICs()).Types()...)
	srv := armtest.NewServer(b, st, all...)
	nw := NewNetwork(st, fab, dns.NewServer(dns.NewCatalog(), log), log)
	nctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := nw.Run(nctx); err != nil {
			b.Errorf("network controller: %v", err)
		}
	})
	b.Cleanup(func() { stop(); wg.Wait() })

	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	sub, cred, opts := armtest.Subscription, srv.Cred, srv.Options
	groups, err := armresources.NewResourceGroupsClient(sub, cred, opts)
	must(err)
	nf, err := armnetwork.NewClientFactory(sub, cred, opts)
	must(err)
	poll := func(err error, done func() error) {
		b.Helper()
		must(err)
		must(done())
	}
	id := func(typ, name string) string {
		return fmt.Sprintf("/subscriptions/%s/resourceGroups/rg/providers/%s/%s", sub, typ, name)
	}
	_, err = groups.CreateOrUpdate(ctx, "rg", armresources.ResourceGroup{Location: to.Ptr("westeurope")}, nil)
	must(err)
	rule := func(i, port int) armnetwork.SecurityRule {
		return armnetwork.SecurityRule{Name: to.Ptr(fmt.Sprintf("r%d", i)), Properties: &armnetwork.SecurityRulePropertiesFormat{
			Priority: to.Ptr(int32(100 + i)), Direction: to.Ptr(armnetwork.SecurityRuleDirectionInbound),
			Access: to.Ptr(armnetwork.SecurityRuleAccessDeny), Protocol: to.Ptr(armnetwork.SecurityRuleProtocolTCP),
			SourceAddressPrefix: to.Ptr(fmt.Sprintf("10.200.%d.0/24", i%256)), SourcePortRange: to.Ptr("*"),
			DestinationAddressPrefix: to.Ptr("*"), DestinationPortRange: to.Ptr(fmt.Sprint(port))}}
	}
	nsg := armnetwork.SecurityGroup{Location: to.Ptr("westeurope"), Properties: &armnetwork.SecurityGroupPropertiesFormat{}}
	for i := range policyBenchRules {
		r := rule(i, 1000+i)
		nsg.Properties.SecurityRules = append(nsg.Properties.SecurityRules, &r)
	}
	np, err := nf.NewSecurityGroupsClient().BeginCreateOrUpdate(ctx, "rg", "nsg", nsg, nil)
	poll(err, func() error { _, err := np.PollUntilDone(ctx, nil); return err })
	vnet := armnetwork.VirtualNetwork{Location: to.Ptr("westeurope"), Properties: &armnetwork.VirtualNetworkPropertiesFormat{
		AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{to.Ptr("10.0.0.0/16")}},
		Subnets: []*armnetwork.Subnet{{Name: to.Ptr("clients"), Properties: &armnetwork.SubnetPropertiesFormat{
			AddressPrefix: to.Ptr("10.0.1.0/24"), NetworkSecurityGroup: &armnetwork.SecurityGroup{ID: to.Ptr(id("Microsoft.Network/networkSecurityGroups", "nsg"))}}}}}}
	vp, err := nf.NewVirtualNetworksClient().BeginCreateOrUpdate(ctx, "rg", "vnet", vnet, nil)
	poll(err, func() error { _, err := vp.PollUntilDone(ctx, nil); return err })
	var nicNS []string
	for _, name := range []string{"a", "b"} {
		nic := armnetwork.Interface{Location: to.Ptr("westeurope"), Properties: &armnetwork.InterfacePropertiesFormat{
			IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{Name: to.Ptr("ipconfig1"), Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
				Subnet: &armnetwork.Subnet{ID: to.Ptr(id("Microsoft.Network/virtualNetworks", "vnet") + "/subnets/clients")}}}}}}
		p, err := nf.NewInterfacesClient().BeginCreateOrUpdate(ctx, "rg", name, nic, nil)
		poll(err, func() error { _, err := p.PollUntilDone(ctx, nil); return err })
		nicID, _ := arm.ParseID(id("Microsoft.Network/networkInterfaces", name))
		nicNS = append(nicNS, fab.NamespaceName(fabric.KindNIC, FabricID(nicID)))
	}
	vnetID, err := arm.ParseID(id("Microsoft.Network/virtualNetworks", "vnet"))
	must(err)
	router := fab.NamespaceName(fabric.KindNetwork, FabricID(vnetID))
	testkit.WaitFor(b, time.Minute, "the router and the NICs' namespaces", func() error {
		for _, ns := range append([]string{router}, nicNS...) {
			if _, err := fab.NamespaceInode(ns); err != nil {
				return err
			}
		}
		return nil
	})

	p := NewPolicy(st, fab, log)
	pass := func() {
		if again, err := p.ensure(ctx, vnetID); err != nil || again != 0 {
			b.Fatalf("policy pass: %v (again in %v)", err, again)
		}
	}
	pass()
	mon := testkit.StartNFTMonitor(b, router)
	rules := nf.NewSecurityRulesClient()
	port := 1000
	for _, c := range []struct {
		name   string
		before func() // outside the timer
	}{
		{"unchanged", nil},
		{"forgotten", func() { p.converged.forgetAll(); fab.ForgetForwarding() }},
		{"one-rule", func() {
			// The PUT's handler stores the rule before it answers;
			// its poller is not needed for the pass to see it.
			port = 3000 - port
			if _, err := rules.BeginCreateOrUpdate(ctx, "rg", "nsg", "r0", rule(0, port), nil); err != nil {
				b.Fatal(err)
			}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			mon.Changes(b)
			b.ResetTimer()
			for range b.N {
				if c.before != nil {
					b.StopTimer()
					c.before()
					b.StartTimer()
				}
				pass()
			}
			b.StopTimer()
			commits, changes := mon.Changes(b)
			b.ReportMetric(float64(commits)/float64(b.N), "commits/op")
			b.ReportMetric(float64(len(changes))/float64(b.N), "changes/op")
		})
	}
}
