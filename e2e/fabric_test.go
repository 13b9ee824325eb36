package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/privatedns/armprivatedns"
	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/names"
	"github.com/privlink/privlink/internal/testkit"
)

// TestFabric materializes networks and NICs as namespaces and checks what
// a program run in a NIC sees: its own network, and its network's DNS.
func TestFabric(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip", "dig")
	for _, backend := range backends(t) {
		t.Run(backend, func(t *testing.T) { testFabric(t, startDaemon(t, backend)) })
	}
}

func testFabric(t *testing.T, d *daemon) {
	c := ctx(t)
	n := newNetClients(t, d)
	createGroup(t, d, "fab")
	sub := func(vnet, name string) string {
		return "/subscriptions/" + d.creds.SubscriptionID + "/resourceGroups/fab/providers/Microsoft.Network/virtualNetworks/" + vnet + "/subnets/" + name
	}
	// Network A with two subnets, network B with the same address space.
	if _, err := putVNet(t, n, "fab", "a", vnetBody("10.0.0.0/16", map[string]string{"s1": "10.0.1.0/24", "s2": "10.0.2.0/24"})); err != nil {
		t.Fatal(err)
	}
	if _, err := putVNet(t, n, "fab", "b", vnetBody("10.0.0.0/16", map[string]string{"s1": "10.0.1.0/24"})); err != nil {
		t.Fatal(err)
	}
	nics := map[string]string{"a1": sub("a", "s1"), "a2": sub("a", "s2"), "b1": sub("b", "s1"), "b2": sub("b", "s1")}
	for _, name := range []string{"a1", "a2", "b1", "b2"} {
		nic, err := putNIC(t, n, "fab", name, nics[name], "")
		if err != nil {
			t.Fatalf("NIC %s: %v", name, err)
		}
		// The poller finishes only once the namespace exists.
		if *nic.Properties.ProvisioningState != armnetwork.ProvisioningStateSucceeded {
			t.Errorf("NIC %s: provisioningState %s after the poller finished", name, *nic.Properties.ProvisioningState)
		}
	}

	// a1 (10.0.1.4) reaches a2 (10.0.2.4) across subnets.
	serve(t, d, "a2", "0.0.0.0:8080", "a2")
	if got := dial(t, d, "a1", "10.0.2.4:8080"); got != "a2" {
		t.Errorf("a1 -> a2: %q", got)
	}
	// B's NICs have the same addresses; each network sees only its own.
	serve(t, d, "b1", "0.0.0.0:8080", "b1")
	if got := dial(t, d, "b2", "10.0.1.4:8080"); got != "b1" {
		t.Errorf("b2 -> 10.0.1.4 reached %q, want b1", got)
	}
	serve(t, d, "a1", "0.0.0.0:8080", "a1")
	if got := dial(t, d, "a2", "10.0.1.4:8080"); got != "a1" {
		t.Errorf("a2 -> 10.0.1.4 reached %q, want a1", got)
	}
	if out, err := dialResult(d, "b1", "10.0.2.4:8080"); err == nil {
		t.Errorf("b1 reached network A's 10.0.2.4: %q", out)
	}

	// The network's DNS answers from zones linked to it.
	z := newDNSClients(t, d)
	zp, err := z.zones.BeginCreateOrUpdate(c, "fab", "contoso.internal", armprivatedns.PrivateZone{Location: ptr("global")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zp.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	vnetA := "/subscriptions/" + d.creds.SubscriptionID + "/resourceGroups/fab/providers/Microsoft.Network/virtualNetworks/a"
	lp, err := z.links.BeginCreateOrUpdate(c, "fab", "contoso.internal", "a", armprivatedns.VirtualNetworkLink{Location: ptr("global"),
		Properties: &armprivatedns.VirtualNetworkLinkProperties{VirtualNetwork: &armprivatedns.SubResource{ID: &vnetA}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lp.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	setA := func(ip string) {
		if _, err := z.records.CreateOrUpdate(c, "fab", "contoso.internal", armprivatedns.RecordTypeA, "db", armprivatedns.RecordSet{
			Properties: &armprivatedns.RecordSetProperties{TTL: ptr[int64](10), ARecords: []*armprivatedns.ARecord{{IPv4Address: &ip}}}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	setA("10.0.1.100")
	waitDig(t, d, "a1", "db.contoso.internal", "10.0.1.100")
	if got := dig(t, d, "b1", "db.contoso.internal"); got != "NXDOMAIN" {
		t.Errorf("network B (not linked) resolves db.contoso.internal: %q", got)
	}
	setA("10.0.1.101")
	waitDig(t, d, "a2", "db.contoso.internal", "10.0.1.101")

	// A zone linked with registration enabled holds the network's NICs.
	zp, err = z.zones.BeginCreateOrUpdate(c, "fab", "reg.internal", armprivatedns.PrivateZone{Location: ptr("global")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zp.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	vnetB := "/subscriptions/" + d.creds.SubscriptionID + "/resourceGroups/fab/providers/Microsoft.Network/virtualNetworks/b"
	lp, err = z.links.BeginCreateOrUpdate(c, "fab", "reg.internal", "b", armprivatedns.VirtualNetworkLink{Location: ptr("global"),
		Properties: &armprivatedns.VirtualNetworkLinkProperties{VirtualNetwork: &armprivatedns.SubResource{ID: &vnetB}, RegistrationEnabled: ptr(true)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lp.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	waitDig(t, d, "b2", "b1.reg.internal", "10.0.1.4")
	rs, err := z.records.Get(c, "fab", "reg.internal", armprivatedns.RecordTypeA, "b2", nil)
	if err != nil || rs.Properties.IsAutoRegistered == nil || !*rs.Properties.IsAutoRegistered {
		t.Errorf("b2's registration record: %v", err)
	}

	// An internet host sees the public view only, and no virtual network.
	out, err := exec.Command(filepath.Join(binDir, "privlink"), "--data-dir", d.dataDir, "exec", "--internet", "198.18.7.9", "--",
		"dig", "+time=2", "+tries=1", "+noall", "+comments", "db.contoso.internal").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "NXDOMAIN") {
		t.Errorf("internet host resolving a private name: %v\n%s", err, out)
	}
	self, _ := os.Executable()
	cmd := exec.Command(filepath.Join(binDir, "privlink"), "--data-dir", d.dataDir, "exec", "--internet", "198.18.7.9", "--", self, "10.0.1.4:8080")
	cmd.Env = append(os.Environ(), helperEnv+"=dial")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("internet host reached a virtual network address: %s", out)
	}

	// A crash, a namespace deleted by hand: privlinkd rebuilds it.
	ns := strings.TrimSpace(d.cli("--data-dir", d.dataDir, "netns", "-g", "fab", "a2"))
	d.stop(syscall.SIGKILL)
	if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns delete %s: %v %s", ns, err, out)
	}
	d.start()
	testkit.WaitFor(t, 30*time.Second, "the deleted namespace back", func() error { _, err := os.Stat(names.Path(ns)); return err })
	serve(t, d, "a2", "0.0.0.0:8081", "a2-again")
	if got := dial(t, d, "a1", "10.0.2.4:8081"); got != "a2-again" {
		t.Errorf("after restart a1 -> a2: %q", got)
	}
	waitDig(t, d, "a2", "db.contoso.internal", "10.0.1.101")

	// Deleting network B (its NICs first) removes all its namespaces.
	nsB := []string{strings.TrimSpace(d.cli("--data-dir", d.dataDir, "netns", "-g", "fab", "b1")), strings.TrimSpace(d.cli("--data-dir", d.dataDir, "netns", "-g", "fab", "b2"))}
	for _, name := range []string{"b1", "b2"} {
		p, err := n.nics.BeginDelete(c, "fab", name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.PollUntilDone(c, pollOpts); err != nil {
			t.Fatal(err)
		}
	}
	vp, err := n.vnets.BeginDelete(c, "fab", "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vp.PollUntilDone(c, pollOpts); err != nil {
		t.Fatal(err)
	}
	// b1's registration went with it.
	testkit.WaitFor(t, 10*time.Second, "b1's registration gone", func() error {
		if _, err := z.records.Get(c, "fab", "reg.internal", armprivatedns.RecordTypeA, "b1", nil); err == nil {
			return errors.New("the record is still there")
		}
		return nil
	})
	routerOf := func(vnet string) string {
		id, _ := arm.ParseID("/subscriptions/" + d.creds.SubscriptionID + "/resourceGroups/fab/providers/Microsoft.Network/virtualNetworks/" + vnet)
		return names.Namespace(d.prefix, names.KindNetwork, names.Key(id))
	}
	nsB = append(nsB, routerOf("b"))
	testkit.WaitFor(t, 30*time.Second, "network B's namespaces gone", func() error {
		for _, name := range nsB {
			if _, err := os.Stat(names.Path(name)); err == nil {
				return fmt.Errorf("%s is still there", name)
			}
		}
		return nil
	})
	if _, err := os.Stat(names.Path(routerOf("a"))); err != nil {
		t.Errorf("network A's router is gone with B's: %v", err)
	}
}

// serve starts a helper listener inside a NIC and stops it when the test
// ends.
func serve(t *testing.T, d *daemon, nic, addr, text string) {
	startHelper(t, d, "serve", nic, addr, text)
}

// startHelper runs a listening helper mode (serve, echo) inside a NIC of
// group fab until it is killed or the test ends.
func startHelper(t *testing.T, d *daemon, mode, nic, addr, text string) *exec.Cmd {
	t.Helper()
	return startHelperIn(t, d, mode, []string{"-g", "fab", nic}, addr, text)
}

// startHelperIn is startHelper where `privlink exec` target says (-g
// GROUP NIC, --site SITE HOST, --internet ADDR).
func startHelperIn(t *testing.T, d *daemon, mode string, target []string, addr, text string) *exec.Cmd {
	t.Helper()
	nic := strings.Join(target, " ")
	self, _ := os.Executable()
	args := append(append([]string{"--data-dir", d.dataDir, "exec"}, target...), "--", self, addr, text)
	cmd := exec.Command(filepath.Join(binDir, "privlink"), args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("listener in %s on %s: %q %v %s", nic, addr, line, err, stderr.String())
	}
	return cmd
}

func dial(t *testing.T, d *daemon, nic, addr string) string {
	t.Helper()
	out, err := dialResult(d, nic, addr)
	if err != nil {
		t.Errorf("dial %s from %s: %v: %s", addr, nic, err, out)
	}
	return out
}

func dialResult(d *daemon, nic, addr string) (string, error) {
	return dialResultIn(d, []string{"-g", "fab", nic}, addr)
}

// dialResultIn is dialResult where `privlink exec` target says.
func dialResultIn(d *daemon, target []string, addr string) (string, error) {
	self, _ := os.Executable()
	args := append(append([]string{"--data-dir", d.dataDir, "exec"}, target...), "--", self, addr)
	cmd := exec.Command(filepath.Join(binDir, "privlink"), args...)
	cmd.Env = append(os.Environ(), helperEnv+"=dial")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// dig resolves name inside a NIC through its network's DNS; it returns the
// addresses, or the status (NXDOMAIN) when there are none.
func dig(t *testing.T, d *daemon, nic, name string) string {
	t.Helper()
	return digAs(t, d, "", "fab", nic, name)
}

// digAs is dig as the principal of a credentials file ("" for the
// default one), for a NIC in resource group rg.
func digAs(t *testing.T, d *daemon, creds, rg, nic, name string) string {
	t.Helper()
	got, err := digResult(d, creds, rg, nic, name)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// digResult is digAs that returns a failure to resolve (no DNS server
// answering, as right after a restart) as an error.
func digResult(d *daemon, creds, rg, nic, name string) (string, error) {
	args := []string{"--data-dir", d.dataDir}
	if creds != "" {
		args = append(args, "--credentials", creds)
	}
	args = append(args, "exec", "-g", rg, nic, "--", "dig", "+time=2", "+tries=1", "+noall", "+answer", "+comments", name)
	out, err := exec.Command(filepath.Join(binDir, "privlink"), args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("dig %s in %s: %v\n%s", name, nic, err, out)
	}
	s := string(out)
	if i := strings.Index(s, "status: "); i >= 0 {
		if status := strings.Fields(s[i+8:])[0]; strings.TrimSuffix(status, ",") != "NOERROR" {
			return strings.TrimSuffix(status, ","), nil
		}
	}
	var addrs []string
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 5 && f[3] == "A" {
			addrs = append(addrs, f[4])
		}
	}
	return strings.Join(addrs, ","), nil
}

// waitDig waits until name resolves to want inside nic: store changes
// reach the DNS through a watch, within milliseconds, not synchronously.
func waitDig(t *testing.T, d *daemon, nic, name, want string) {
	t.Helper()
	waitDigAs(t, d, "", "fab", nic, name, want)
}

func waitDigAs(t *testing.T, d *daemon, creds, rg, nic, name, want string) {
	t.Helper()
	var got string
	var err error
	ok := testkit.Poll(10*time.Second, func() bool { got, err = digResult(d, creds, rg, nic, name); return err == nil && got == want })
	if !ok {
		t.Errorf("dig %s in %s = %q (%v), want %q", name, nic, got, err, want)
	}
}
