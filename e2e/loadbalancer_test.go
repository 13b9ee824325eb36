package e2e

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/controller"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/testkit"
)

// TestLoadBalancer: a Standard internal load balancer made with the SDK,
// frontend 10.0.1.100:80 → port 8080 of two backend NICs running an echo
// that greets with its name, probed on 8080 every 5 s. Connections from a
// client NIC spread over both; a backend whose listener stops is taken
// out by its probe and gets no new connections, and is put back once it
// listens again; a held connection lives through a kill -9 and a restart
// of privlinkd, and new ones are balanced while it is down (the kernel
// path).
func TestLoadBalancer(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip")
	d := startDaemon(t, "bolt")
	n := newNetClients(t, d)
	createGroup(t, d, "fab")
	sub := d.creds.SubscriptionID
	subnet := "/subscriptions/" + sub + "/resourceGroups/fab/providers/Microsoft.Network/virtualNetworks/lb/subnets/s1"
	if _, err := putVNet(t, n, "fab", "lb", vnetBody("10.0.0.0/16", map[string]string{"s1": "10.0.1.0/24"})); err != nil {
		t.Fatal(err)
	}
	f, err := armnetwork.NewClientFactory(sub, d.cfg.Credential, d.opts())
	if err != nil {
		t.Fatal(err)
	}
	putEchoLB(t, d, n, subnet)
	if _, err := putNIC(t, n, "fab", "client", subnet, ""); err != nil {
		t.Fatal(err)
	}
	pool, err := f.NewLoadBalancerBackendAddressPoolsClient().Get(ctx(t), "fab", "ilb", "be", nil)
	if err != nil || len(pool.Properties.BackendIPConfigurations) != 2 {
		t.Fatalf("pool: %v %+v", err, pool)
	}
	echo := map[string]func(){}
	for _, name := range []string{"be1", "be2"} {
		cmd := startHelper(t, d, "echo", name, "0.0.0.0:8080", name)
		echo[name] = func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	}
	// seen dials the frontend n times from the client and counts the
	// backends that answered.
	seen := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			out, err := dialResult(d, "client", "10.0.1.100:80")
			if err != nil {
				got["error"]++
				continue
			}
			got[out]++
		}
		return got
	}
	testkit.WaitFor(t, 60*time.Second, "connections spread over be1 and be2", func() error {
		if got := seen(16); got["be1"] == 0 || got["be2"] == 0 {
			return fmt.Errorf("16 connections went %v", got)
		}
		return nil
	})
	// be1 stops listening: its probe takes it out.
	echo["be1"]()
	testkit.WaitFor(t, 60*time.Second, "every connection to be2", func() error {
		if got := seen(12); got["be2"] != 12 {
			return fmt.Errorf("12 connections went %v", got)
		}
		return nil
	})
	// Back again.
	startHelper(t, d, "echo", "be1", "0.0.0.0:8080", "be1")
	testkit.WaitFor(t, 60*time.Second, "be1 back in rotation", func() error {
		if got := seen(16); got["be1"] == 0 || got["be2"] == 0 {
			return fmt.Errorf("16 connections went %v", got)
		}
		return nil
	})

	// A held connection lives through kill -9 and a restart.
	fab, err := fabric.New(d.prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	clientID, _ := arm.ParseID("/subscriptions/" + sub + "/resourceGroups/fab/providers/Microsoft.Network/networkInterfaces/client")
	cx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clientNS := fab.NamespaceName(fabric.KindNIC, controller.FabricID(clientID))
	held, err := fab.DialContext(cx, clientNS, "tcp", "10.0.1.100:80")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	r := bufio.NewReader(held)
	roundTrip := func(msg string) error {
		_ = held.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintln(held, msg); err != nil {
			return err
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if strings.TrimSpace(line) == msg {
				return nil
			}
		}
	}
	if err := roundTrip("before"); err != nil {
		t.Fatal(err)
	}
	d.stop(syscall.SIGKILL)
	if err := roundTrip("while down"); err != nil {
		t.Errorf("the held flow while privlinkd is down: %v", err)
	}
	// New connections are balanced by the kernel while privlinkd is down
	// (dialled from the test: the CLI's exec needs the API).
	down := map[string]int{}
	for range 8 {
		c, err := fab.DialContext(cx, clientNS, "tcp", "10.0.1.100:80")
		if err != nil {
			t.Fatalf("a new connection while privlinkd is down: %v", err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			t.Fatalf("a new connection while privlinkd is down: %v", err)
		}
		down[strings.TrimSpace(line)]++
	}
	if down["be1"]+down["be2"] != 8 {
		t.Errorf("8 connections while privlinkd is down went %v", down)
	}
	d.start()
	// Right after the start, before the first probes answer, the
	// router keeps its backends: no connection is refused.
	if got := seen(4); got["error"] != 0 {
		t.Errorf("connections right after the restart: %v", got)
	}
	if err := roundTrip("after restart"); err != nil {
		t.Errorf("the held flow after the restart: %v", err)
	}
	testkit.WaitFor(t, 60*time.Second, "both backends after the restart", func() error {
		if got := seen(16); got["be1"] == 0 || got["be2"] == 0 {
			return fmt.Errorf("16 connections went %v", got)
		}
		return nil
	})
}

// putEchoLB creates, in group fab, the Standard internal load balancer
// "ilb" with frontend 10.0.1.100 in subnet, rule TCP 80 → 8080, probed on
// 8080 every 5 s, and backend NICs be1 and be2 in subnet in its pool. It
// returns the load balancer's ID.
func putEchoLB(t *testing.T, d *daemon, n netClients, subnet string) string {
	t.Helper()
	f, err := armnetwork.NewClientFactory(d.creds.SubscriptionID, d.cfg.Credential, d.opts())
	if err != nil {
		t.Fatal(err)
	}
	lbID := "/subscriptions/" + d.creds.SubscriptionID + "/resourceGroups/fab/providers/Microsoft.Network/loadBalancers/ilb"
	p, err := f.NewLoadBalancersClient().BeginCreateOrUpdate(ctx(t), "fab", "ilb", armnetwork.LoadBalancer{
		Location: ptr("westeurope"), SKU: &armnetwork.LoadBalancerSKU{Name: ptr(armnetwork.LoadBalancerSKUNameStandard)},
		Properties: &armnetwork.LoadBalancerPropertiesFormat{
			FrontendIPConfigurations: []*armnetwork.FrontendIPConfiguration{{Name: ptr("fe"), Properties: &armnetwork.FrontendIPConfigurationPropertiesFormat{
				Subnet: &armnetwork.Subnet{ID: ptr(subnet)}, PrivateIPAllocationMethod: ptr(armnetwork.IPAllocationMethodStatic), PrivateIPAddress: ptr("10.0.1.100")}}},
			BackendAddressPools: []*armnetwork.BackendAddressPool{{Name: ptr("be")}},
			Probes: []*armnetwork.Probe{{Name: ptr("tcp"), Properties: &armnetwork.ProbePropertiesFormat{
				Protocol: ptr(armnetwork.ProbeProtocolTCP), Port: ptr[int32](8080), IntervalInSeconds: ptr[int32](5), ProbeThreshold: ptr[int32](1)}}},
			LoadBalancingRules: []*armnetwork.LoadBalancingRule{{Name: ptr("echo"), Properties: &armnetwork.LoadBalancingRulePropertiesFormat{
				Protocol: ptr(armnetwork.TransportProtocolTCP), FrontendPort: ptr[int32](80), BackendPort: ptr[int32](8080),
				FrontendIPConfiguration: &armnetwork.SubResource{ID: ptr(lbID + "/frontendIPConfigurations/fe")},
				BackendAddressPool:      &armnetwork.SubResource{ID: ptr(lbID + "/backendAddressPools/be")},
				Probe:                   &armnetwork.SubResource{ID: ptr(lbID + "/probes/tcp")}}}},
		}}, nil)
	if err == nil {
		_, err = p.PollUntilDone(ctx(t), pollOpts)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"be1", "be2"} {
		p, err := n.nics.BeginCreateOrUpdate(ctx(t), "fab", name, armnetwork.Interface{Location: ptr("westeurope"),
			Properties: &armnetwork.InterfacePropertiesFormat{IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{Name: ptr("ipconfig1"),
				Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{Subnet: &armnetwork.Subnet{ID: ptr(subnet)},
					LoadBalancerBackendAddressPools: []*armnetwork.BackendAddressPool{{ID: ptr(lbID + "/backendAddressPools/be")}}}}}}}, nil)
		if err == nil {
			_, err = p.PollUntilDone(ctx(t), pollOpts)
		}
		if err != nil {
			t.Fatalf("NIC %s: %v", name, err)
		}
	}
	return lbID
}
